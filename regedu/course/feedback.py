"""The three answers a checked exercise can give: not attempted yet, wrong (and why), right.

An instructor writes a checker as a plain function of the student's answer that states what a right
answer must satisfy with :func:`expect`, and returns nothing when all hold::

    @exercise(2, right="the warped brain covers a quarter of its area: det J = 4 means 4x compression")
    def ex2(det_j):
        expect(isinstance(det_j, float), "give det J as a float, e.g. float(...)")
        expect(abs(det_j - 4.0) < 0.1, f"det J is {det_j:.2f}; scale=2 stretches both axes: what is 2 x 2?")

``ex2(...)`` (the Ellipsis the starter cell holds) prints "not attempted yet"; an answer that fails an
``expect`` prints "wrong: <the message>"; an answer for which the checker itself raises prints "wrong:
checking your answer raised <error>" (a wrong type, say), so a student never sees a traceback from the
checker. The printed line is also returned as a :class:`Feedback` by ``ex2.judge(answer)`` for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

NOT_ATTEMPTED_HINT = "replace the `...` in the cell above with your answer and run both cells again"
STATUSES = ("not attempted yet", "wrong", "right")


class Wrong(Exception):
    """Raised by :func:`expect` inside a checker: the answer misses what the message says."""


@dataclass(frozen=True)
class Feedback:
    """What a checker says about one answer.

    exercise: the exercise's title, e.g. "Exercise 2". status: one of :data:`STATUSES`.
    message: why it is wrong, or what a right answer shows, or how to start.
    """

    exercise: str
    status: str
    message: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def __str__(self) -> str:
        return f"{self.exercise}: {self.status}: {self.message}"


def is_number(value: Any) -> bool:
    """Whether ``value`` is a plain Python number (an int or a float, not a bool): what a checker asks
    for when the exercise says "give a number" (a tensor must be turned into one with ``float(...)``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def expect(condition: Any, why: str) -> None:
    """Inside a checker: the answer is wrong, because of ``why``, unless ``condition`` holds."""
    if not condition:
        raise Wrong(why)


def exercise(number: int, right: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Turn ``judge(answer, ...)`` (raises :class:`Wrong` via :func:`expect`) into a checker that prints.

    number: the exercise's number in its lesson. right: what a right answer shows (printed after
    "right:"; fixed text, no measured numbers, so a notebook can check it). The checker keeps the
    judge's arguments; its first argument is the answer, and ``...`` (the starter's placeholder)
    means not attempted.
    The checker has ``.judge(...) -> Feedback`` (no printing), and ``.not_attempted_text`` and
    ``.right_text``: the lines it prints in those cases (the notebook builder stores them as the
    expected output of the check cell).
    """
    title = f"Exercise {number}"
    not_attempted = Feedback(title, "not attempted yet", NOT_ATTEMPTED_HINT)

    def decorate(judge: Callable[..., None]) -> Callable[..., None]:
        def judged(answer: Any, *args: Any, **kwargs: Any) -> Feedback:
            if answer is ...:
                return not_attempted
            try:
                judge(answer, *args, **kwargs)
            except Wrong as reason:
                return Feedback(title, "wrong", str(reason))
            except Exception as error:  # noqa: BLE001 - a student's odd answer must not crash the checker
                why = f"checking your answer raised {type(error).__name__}: {error}"
                return Feedback(title, "wrong", why)
            return Feedback(title, "right", right)

        @wraps(judge)
        def checker(answer: Any, *args: Any, **kwargs: Any) -> None:
            print(judged(answer, *args, **kwargs))

        checker.judge = judged
        checker.not_attempted_text = f"{not_attempted}\n"
        checker.right_text = f"{Feedback(title, 'right', right)}\n"
        return checker

    return decorate
