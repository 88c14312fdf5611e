"""A learned lesson's closing check fails when the lesson fails to show its point: each lesson runs
with an untrained network swapped in for every shipped one (``tests/untrained_lessons.py``), and its
closing check must raise ``AssertionError``. The learned lessons are split between this file and
``test_lesson_checks.py`` (07 trains its 3D network live until a 3D model ships).
"""

from __future__ import annotations

import pytest
from untrained_lessons import assert_the_closing_check_fails

LESSONS = ["05_diffeomorphic", "08_multimodal_and_synthmorph", "09_real_data_and_capstone"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LESSONS)
def test_the_closing_check_fails_with_untrained_models(name):
    assert_the_closing_check_fails(name)
