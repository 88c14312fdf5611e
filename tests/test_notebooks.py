"""The course notebooks: generated from notebooks/build/, complete, clean, each with its solutions.

Running them is nbval's job (``pytest --nbval-lax`` collects every ``.ipynb`` under ``notebooks/``);
these tests check the files themselves.
"""

from __future__ import annotations

import ast
import os
import runpy
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "notebooks" / "build"
sys.path.insert(0, str(BUILD))
from notebook_builder import CHECK_OUTPUT, Notebook  # noqa: E402

COURSE = [
    "00_start_here",
    "01_images_and_warps",
    "02_classical_registration",
    "03_learned_unsupervised",
    "04_supervised_vs_unsupervised",
    "05_diffeomorphic",
    "06_multiscale",
    "07_3d_brains_and_nifti",
    "08_multimodal_and_synthmorph",
    "09_real_data_and_capstone",
]
BUILT = sorted(path.stem for path in BUILD.glob("[0-9][0-9]_*.py"))


def _generated(name: str) -> dict[Path, nbformat.NotebookNode]:
    """Run a builder script without writing, returning the notebooks it would write."""
    captured = {}
    original = Notebook.write
    Notebook.write = lambda self: captured.update(self.notebooks())
    try:
        runpy.run_path(str(BUILD / f"{name}.py"), run_name="__main__")
    finally:
        Notebook.write = original
    return captured


def test_every_course_notebook_has_a_builder():
    assert BUILT == COURSE


@pytest.mark.parametrize("name", BUILT)
def test_committed_notebooks_match_their_builder(name):
    for path, notebook in _generated(name).items():
        assert path.exists(), f"{path} is missing: run python notebooks/build/build_all.py"
        committed = nbformat.read(path, as_version=4)
        assert committed == notebook, f"{path} differs from notebooks/build/{name}.py: rebuild it"


@pytest.mark.parametrize("name", BUILT)
def test_notebooks_are_clean_and_have_exercises(name):
    for path, notebook in _generated(name).items():
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            if cell.source.startswith(CHECK_OUTPUT):  # nbval compares only cells that were "run"
                assert cell.execution_count == 1 and len(cell.outputs) == 1, path
            else:
                assert cell.execution_count is None, path
                assert cell.outputs == [], f"{path}: outputs are committed only for checked cells"
        text = "\n".join(cell.source for cell in notebook.cells)
        assert "Exercise" in text, path
    student = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    opening = student.cells[0].source
    assert opening.startswith("# "), "a notebook opens with its title"
    assert "minutes" in opening, "the opening says how long the notebook takes"
    assert "assert" in student.cells[-1].source, "a notebook ends with a check of what it taught"


def test_builder_refuses_too_few_exercises():
    notebook = Notebook("99_example")
    notebook.markdown("# 99 · example (1 minute)")
    notebook.exercise("Exercise 1", starter="# your code here", solution="x = 1")
    with pytest.raises(ValueError, match="2 to 4 exercises"):
        notebook.notebooks()


def test_builder_is_importable_as_a_module(tmp_path):
    """`python notebooks/build/NN_name.py` runs from any folder: Python puts the script's folder first
    on sys.path, where `import notebook_builder` must find this folder's file and import it on its own.
    Checked in a fresh interpreter started elsewhere, since this test file has imported the builder
    already (through the path it added), and for every builder script."""
    probe = (f"import sys; sys.path.insert(0, {str(BUILD)!r}); import notebook_builder; "
             f"print(notebook_builder.__file__); print(notebook_builder.Notebook.__name__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(BUILD / "notebook_builder.py"), "Notebook"], done.stdout
    for name in BUILT:
        tree = ast.parse((BUILD / f"{name}.py").read_text())
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "notebook_builder" in modules, f"notebooks/build/{name}.py does not import notebook_builder"


def test_the_html_render_covers_the_course_in_order():
    render = runpy.run_path(str(ROOT / "scripts" / "render_course.py"))
    assert [path.stem for path in render["course_notebooks"](False)] == COURSE
    with_solutions = [path.stem for path in render["course_notebooks"](True)]
    assert with_solutions == COURSE + [f"{name}_solutions" for name in COURSE]
