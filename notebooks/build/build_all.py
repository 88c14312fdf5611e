"""Regenerate every course notebook and its solutions from the scripts in this folder.

    python notebooks/build/build_all.py

Each ``NN_name.py`` here builds ``notebooks/NN_name.ipynb`` and
``notebooks/solutions/NN_name_solutions.ipynb`` (see ``notebook_builder.py``).
"""

from __future__ import annotations

import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent


def course_scripts() -> list[Path]:
    """The builder scripts, in course order."""
    return sorted(path for path in HERE.glob("[0-9][0-9]_*.py"))


def main() -> None:
    for script in course_scripts():
        runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
