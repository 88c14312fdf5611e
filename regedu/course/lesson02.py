"""Checked exercises of lesson 02, classical registration (``notebooks/02_classical_registration.ipynb``).

ex1: where each similarity's landscape has its minimum on the inverted contrast (a shift per measure);
ex2: MSE against MI for an affine registration across contrasts (two warped label maps and a choice);
ex3: accuracy against time for the default pipeline (Dice and seconds per iteration budget).
"""

from __future__ import annotations

import torch

from regedu import metrics, widgets
from regedu.course.feedback import exercise, expect, is_number

ALIGNS = 0.1  # exercise 2: a registration that aligns gains at least this much mean Dice over none
SAME_PIPELINE = 0.01  # exercise 3: the full budget's Dice matches section 5's within this much
FRACTIONS = (4, 2, 1)  # exercise 3: the deformable iterations divided by these


def _where(values: torch.Tensor, index: int, shifts) -> tuple[int, int]:
    """The (axis 0, axis 1) shift of a landscape ``(S, S)`` at its flat ``index``."""
    row, column = divmod(index, len(shifts))
    return shifts[row], shifts[column]


@exercise(1, right="only MSE misses the true shift across contrasts: ncc and global_ncc square the "
                   "correlation, so a negated image matches as well as the original, and mi and ngf are "
                   "built for different contrasts")
def ex1(answer, fixed, inverted, shifts):
    """answer: {measure: (shift along axis 0, along axis 1) of the landscape's minimum} for every measure
    of widgets.SIMILARITIES; fixed, inverted, shifts: the lesson's images and shifts, to recompute them."""
    names = set(widgets.SIMILARITIES)
    expect(isinstance(answer, dict) and set(answer) == names,
           f"give a dict with one entry per measure of widgets.SIMILARITIES: {sorted(names)}")
    shifts = list(shifts)
    for name in widgets.SIMILARITIES:
        given = answer[name]
        expect(isinstance(given, (tuple, list)) and len(given) == 2,
               f"answer[{name!r}] must be a pair of shifts, (along axis 0, along axis 1)")
        given = tuple(int(value) for value in given)
        values = widgets.similarity_landscape(fixed, inverted, shifts, name)
        lowest = _where(values, int(values.argmin()), shifts)
        if given == lowest:
            continue
        expect(given != _where(values, int(values.argmax()), shifts),
               f"{name}: {given} is where the landscape is highest; every regedu similarity is a loss, "
               "lower is better: use argmin")
        expect(given != lowest[::-1], f"{name}: you swapped the two axes; divmod(index, len(shifts)) gives "
                                      "(row, column) = (shift along axis 0, shift along axis 1)")
        expect(False, f"{name}: the minimum of its landscape for `fixed` against `inverted` is not at "
                      f"{given} (did you use the same-contrast image?); compute widgets.similarity_landscape("
                      f"fixed, inverted, shifts, {name!r}) and take the shift of its lowest value")


def _labels_of(result) -> torch.Tensor:
    """The warped labels of a registration result, or the label map itself."""
    return getattr(result, "warped_labels", result)


@exercise(2, right="MSE compares raw intensities, so across contrasts it aligns the wrong things; MI only "
                   "needs one intensity to predict the other: use MI (or another multimodal measure) for a "
                   "T1 onto a T2")
def ex2(answer, moving_labels, fixed_labels):
    """answer: {"mse": warped labels, "mi": warped labels, "choice": "mse" or "mi"}, the warped labels
    (or the registration results) of the first pair registered onto ``1 - fixed``; moving_labels,
    fixed_labels: that pair's label maps ``(1, 1, X, Y)``."""
    keys = {"mse", "mi", "choice"}
    expect(isinstance(answer, dict) and set(answer) == keys, f"give a dict with the keys {sorted(keys)}: the "
           "two registrations' warped labels (result.warped_labels) and the similarity you would choose")
    dice = {}
    for name in ("mse", "mi"):
        labels = _labels_of(answer[name])
        expect(isinstance(labels, torch.Tensor) and labels.shape == fixed_labels.shape,
               f"answer[{name!r}] must be the registration's warped labels, shape "
               f"{tuple(fixed_labels.shape)}: pass moving_labels=moving_labels to regedu.register and give "
               "result.warped_labels")
        dice[name] = metrics.dice(labels.to(fixed_labels.device), fixed_labels).nanmean().item()
    before = metrics.dice(moving_labels, fixed_labels).nanmean().item()
    expect(dice["mse"] < dice["mi"], f"your 'mse' labels overlap better (Dice {dice['mse']:.3f}) than "
                                     f"your 'mi' labels ({dice['mi']:.3f}): did you swap the two?")
    expect(dice["mse"] < before + ALIGNS, f"MSE improved the overlap (Dice {before:.3f} -> "
                                          f"{dice['mse']:.3f}): register onto the inverted image "
                                          "`1 - fixed`, not onto `fixed`")
    expect(dice["mi"] > before + ALIGNS, f"your MI registration barely changed the overlap (Dice "
                                         f"{before:.3f} -> {dice['mi']:.3f}): run regedu.register(moving, "
                                         "1 - fixed, method='affine', similarity='mi', ...)")
    expect(answer["choice"] == "mi", "which of the two would you trust with a T1 and a T2 (different "
                                     "contrasts)? Put its name, 'mse' or 'mi', in answer['choice']")


@exercise(3, right="each budget's Dice and time are measured on all pairs; the full budget reproduces "
                   "section 5's default pipeline")
def ex3(answer, section5_dice):
    """answer: {4: (mean Dice, seconds), 2: (...), 1: (...)}, the default pipeline with the deformable
    iterations divided by 4, 2 and 1; section5_dice: the default pipeline's Dice in section 5
    (``compared["default (affine+bspline+dense)"]``, pairs x labels), which the full budget reproduces."""
    expect(isinstance(answer, dict) and set(answer) == set(FRACTIONS),
           "give a dict keyed by the divisor, {4: (Dice, seconds), 2: (...), 1: (...)}")
    for fraction in FRACTIONS:
        given = answer[fraction]
        expect(isinstance(given, (tuple, list)) and len(given) == 2 and all(map(is_number, given)),
               f"answer[{fraction}] must be a pair of numbers: (mean Dice, seconds)")
        expect(0 <= given[0] <= 1 and given[1] > 0, f"answer[{fraction}] = {tuple(given)}: the mean Dice "
                                                    "lies between 0 and 1 and the time is positive")
    expected = float(section5_dice.nanmean())
    expect(abs(answer[1][0] - expected) < SAME_PIPELINE,
           f"with all the iterations your mean Dice is {answer[1][0]:.3f}, but section 5 ran the same "
           f"pipeline on the same pairs and got {expected:.3f}: register moving_all onto fixed_all with "
           "iterations=ITERATIONS and affine_options=dict(iterations=AFFINE_ITERATIONS)")
    expect(len({answer[fraction][0] for fraction in FRACTIONS}) > 1,
           "your three budgets give the same Dice: pass the scaled list, e.g. [max(1, n // 4) for n in "
           "ITERATIONS], as `iterations`")
