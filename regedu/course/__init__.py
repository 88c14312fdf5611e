"""Checked exercises: feedback for a student, lesson by lesson.

Each lesson has a module here (``regedu.course.lesson03`` and so on) with one checker per exercise.
In a notebook::

    from regedu.course import lesson03 as check
    ...
    answer = ...            # the exercise cell: the student replaces ``...`` with their answer
    check.ex1(answer)       # prints "Exercise 1: not attempted yet ...", "... wrong: <why>" or "... right"

A checker never raises on a wrong answer: it says what is wrong and how to look for the mistake. The
building blocks (:class:`Feedback`, :func:`exercise`, :func:`expect`, :func:`is_number`) live in
:mod:`regedu.course.feedback`, for an instructor who adds an exercise.
"""

from regedu.course.feedback import NOT_ATTEMPTED_HINT, Feedback, Wrong, exercise, expect, is_number

__all__ = ["NOT_ATTEMPTED_HINT", "Feedback", "Wrong", "exercise", "expect", "is_number"]
