"""Issue 14: the building blocks of checked exercises (regedu.course.feedback) and the notebook builder's
check cells: untouched means "not attempted yet", a failed expectation says why, a right answer says so."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from regedu.course import Feedback, exercise, expect

BUILD = Path(__file__).resolve().parents[1] / "notebooks" / "build"


@exercise(3, right="a quarter of the area: det J = 4 compresses the anatomy 4 times")
def area_checker(det_j, scale=2.0):
    expect(isinstance(det_j, float), "give det J as a float, e.g. float(value)")
    expect(abs(det_j - scale ** 2) < 0.1, f"det J is {det_j:.2f}: scale stretches both axes")


def test_the_ellipsis_means_not_attempted():
    feedback = area_checker.judge(...)
    assert feedback.status == "not attempted yet" and feedback.exercise == "Exercise 3"
    assert area_checker.not_attempted_text == f"{feedback}\n"


def test_a_failed_expectation_says_why():
    feedback = area_checker.judge(0.25)
    assert feedback.status == "wrong" and "det J is 0.25" in feedback.message


def test_a_crash_inside_the_checker_is_reported_as_wrong_not_raised():
    feedback = area_checker.judge(float("nan"), scale="two")  # the checker's own arithmetic fails
    assert feedback.status == "wrong" and "TypeError" in feedback.message


def test_a_right_answer_prints_the_fixed_right_text(capsys):
    area_checker(4.0)
    assert capsys.readouterr().out == area_checker.right_text
    assert area_checker.judge(4.0) == Feedback("Exercise 3", "right", area_checker.judge(4.0).message)


def test_feedback_refuses_an_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        Feedback("Exercise 1", "almost", "")


def _builder():
    spec = importlib.util.spec_from_file_location("notebook_builder", BUILD / "notebook_builder.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["notebook_builder"] = module
    spec.loader.exec_module(module)
    return module


def test_the_builder_stores_each_variants_expected_check_output(tmp_path):
    builder = _builder()
    nb = builder.Notebook("99_test", checks=__name__)
    nb.markdown("# test")
    for _ in range(2):
        nb.exercise("prompt", starter="answer = ...", solution="answer = 4.0",
                    check="check.area_checker(answer)")
    nb.predict("What is det J for scale=2?", "4")
    student, solution = nb.notebooks().values()
    check_cells = [cell for cell in student.cells if "check.area_checker" in cell.source]
    assert len(check_cells) == 2
    assert check_cells[0].outputs[0]["text"] == area_checker.not_attempted_text
    solved = [cell for cell in solution.cells if "check.area_checker" in cell.source]
    assert solved[0].outputs[0]["text"] == area_checker.right_text
    assert any("<details>" in cell.source for cell in student.cells if cell.cell_type == "markdown")


def test_the_builder_refuses_a_check_it_cannot_find():
    builder = _builder()
    nb = builder.Notebook("99_test", checks=__name__)
    with pytest.raises(ValueError, match="must call a checker"):
        nb.exercise("prompt", starter="answer = ...", solution="answer = 1", check="check.missing(answer)")
