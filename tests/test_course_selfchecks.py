"""Issue 14: every lesson checks the student. Each exercise has a check cell (nbval verifies that it
prints "not attempted yet" in the untouched student notebook and "right" in the solutions notebook),
and each lesson asks at least one predict-then-reveal question."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "notebooks" / "build"
sys.path.insert(0, str(BUILD))
from notebook_builder import Notebook  # noqa: E402

LESSONS = sorted(path.stem for path in BUILD.glob("[0-9][0-9]_*.py"))


def _described(name: str) -> Notebook:
    """The Notebook a builder describes, without writing it."""
    captured = []
    original = Notebook.write
    Notebook.write = lambda self: captured.append(self)
    try:
        runpy.run_path(str(BUILD / f"{name}.py"), run_name="__main__")
    finally:
        Notebook.write = original
    return captured[0]


@pytest.mark.parametrize("name", LESSONS)
def test_every_exercise_is_checked_and_the_lesson_asks_for_a_prediction(name):
    notebook = _described(name)
    assert notebook.checks is not None, f"{name}: Notebook(..., checks='regedu.course.lesson{name[:2]}')"
    assert notebook.checks.__name__ == f"regedu.course.lesson{name[:2]}"
    assert notebook._checked_exercises == notebook._exercises, f"{name}: an exercise has no check="
    assert notebook._predictions >= 1, f"{name}: ask at least one nb.predict(...) question"


@pytest.mark.parametrize("name", LESSONS)
def test_untouched_exercises_say_not_attempted_and_solutions_say_right(name):
    student, solutions = _described(name).notebooks().values()
    for notebook, status in ((student, "not attempted yet"), (solutions, "right")):
        checks = [cell for cell in notebook.cells if cell.cell_type == "code" and "check.ex" in cell.source
                  and cell.outputs]
        assert checks, name
        for cell in checks:
            assert f": {status}: " in cell.outputs[0]["text"], (name, cell.source)
