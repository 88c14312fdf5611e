"""A learned lesson's closing check fails when the lesson fails to show its point: each lesson runs
with an untrained network swapped in for every shipped one (``tests/untrained_lessons.py``), and its
closing check must raise ``AssertionError``. The learned lessons are split between this file and
``test_lesson_checks_more.py``.
"""

from __future__ import annotations

import pytest
from untrained_lessons import assert_the_closing_check_fails

LESSONS = ["03_learned_unsupervised", "04_supervised_vs_unsupervised", "06_multiscale",
           "07_3d_brains_and_nifti"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LESSONS)
def test_the_closing_check_fails_with_untrained_models(name):
    assert_the_closing_check_fails(name)
