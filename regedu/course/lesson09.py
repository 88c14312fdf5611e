"""Checked exercises of lesson 09, real data and a capstone (``notebooks/09_real_data_and_capstone.ipynb``).

ex1: the structures that stay hardest to align, and how many of them are small (recomputed from the
student's classical result); ex2, the capstone: the concrete part only (two methods on one pair, each
with a complete scorecard of valid values, a choice that is one of the two and a measure that can decide
it); the justification is open and marked with the rubric of the solutions notebook.
"""

from __future__ import annotations

import math

import torch

from regedu import metrics
from regedu.course.feedback import exercise, expect

WORST = 5  # exercise 1: how many of the worst structures to name
MEASURES = ("Dice", "HD95 mm", "TRE mm", "folding %", "seconds")  # what a capstone scorecard reports


def _shared_labels(moving_labels: torch.Tensor, fixed_labels: torch.Tensor) -> list[int]:
    """The label values, background 0 left out, found in both label maps."""
    moving, fixed = (set(torch.unique(labels).tolist()) for labels in (moving_labels, fixed_labels))
    return sorted((moving & fixed) - {0})


@exercise(1, right="the worst-aligned structures are named and set against their sizes: Dice is harsher on "
                   "small structures, but size is not the only reason a structure aligns badly")
def ex1(answer, result, pair):
    """answer: {"worst": the WORST shared labels with the lowest Dice, worst first, "how_many_small": how
    many of them are smaller (pixels of the fixed map) than the median shared structure}; result: the
    classical result of `pair` (its `warped_labels`); pair: the loaded pair (its two label maps)."""
    expect(isinstance(answer, dict) and set(answer) == {"worst", "how_many_small"},
           'give a dict {"worst": [labels, worst first], "how_many_small": ...}')
    fixed_labels = pair.fixed_labels.cpu()
    shared = _shared_labels(pair.moving_labels.cpu(), fixed_labels)
    per_label = metrics.dice(result.warped_labels.cpu(), fixed_labels, labels=shared)[0].tolist()
    dice = dict(zip(shared, per_label, strict=True))
    worst = [int(label) for label in answer["worst"]]
    expect(0 not in worst, "label 0 is the background, not a structure: score the labels of "
                           "shared_labels(first)")
    expect(all(label in dice for label in worst),
           f"{sorted(set(worst) - set(dice))} are not in both label maps: use shared_labels(first)")
    count = min(WORST, len(shared))
    expect(len(worst) == count, f"name the {count} worst structures")
    lowest, given = sorted(dice.values())[:count], sorted(dice[label] for label in worst)
    expect(given != sorted(dice.values())[-count:] or given == lowest,
           "these are the best ones, the highest Dice: sort the labels by their Dice, lowest first")
    expect(given == lowest,
           "these are not the structures with the lowest Dice: sort the labels by their Dice, lowest first")
    expect([dice[label] for label in worst] == lowest, "list them worst first (lowest Dice first)")
    sizes = {label: int((fixed_labels == label).sum()) for label in shared}
    median = sorted(sizes.values())[len(sizes) // 2]
    small = sum(sizes[label] < median for label in worst)
    expect(answer["how_many_small"] == small,
           f"count the worst structures with fewer pixels in the fixed label map than the median structure "
           f"({median} pixels, the middle of the sorted sizes)")


def _finite(value) -> bool:
    """Whether `value` is a finite number (NaN, "n/a" and None are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@exercise(2, right="two methods measured on one pair with every number in range and a choice between them; "
                   "the justification is yours to write, and the rubric in the solutions marks it")
def ex2(answer, truth=None):
    """answer: {"scorecards": {method: scorecard}, "choice": a method, "decided_by": a measure of
    MEASURES}; truth: the capstone pair's truth, or None for a real pair (then TRE must be n/a, NaN)."""
    expect(isinstance(answer, dict) and set(answer) == {"scorecards", "choice", "decided_by"},
           'give a dict {"scorecards": capstone, "choice": ..., "decided_by": ...}')
    cards = answer["scorecards"]
    expect(isinstance(cards, dict) and len(cards) == 2,
           "put the scorecards of exactly two methods in `capstone` (method -> scorecard)")
    for method, card in cards.items():
        missing = [measure for measure in MEASURES if measure not in card]
        expect(not missing, f"the scorecard of {method!r} lacks {missing}: make it with scorecard(...)")
        expect(_finite(card["seconds"]) and card["seconds"] > 0,
               f"{method!r} took no time: is it a registration? 'no registration' is the baseline, not a "
               "method to choose")
        expect(_finite(card["Dice"]) and 0 <= card["Dice"] <= 1, f"{method!r}: Dice lies between 0 and 1")
        expect(_finite(card["HD95 mm"]) and card["HD95 mm"] >= 0, f"{method!r}: HD95 is a distance, >= 0 mm")
        expect(_finite(card["folding %"]) and 0 <= card["folding %"] <= 100,
               f"{method!r}: folding is a percentage of the pixels, 0 to 100")
        if truth is None:
            expect(not _finite(card["TRE mm"]),
                   f"{method!r} has a TRE on a pair without a truth: with no landmarks' true positions there "
                   "is no TRE; write n/a (NaN)")
        else:
            expect(_finite(card["TRE mm"]) and card["TRE mm"] >= 0,
                   f"{method!r}: the pair has a truth, so report its TRE: scorecard(pair, result, truth)")
    expect(answer["choice"] in cards, f"choose one of the two methods you measured: {list(cards)}")
    expect(answer["decided_by"] in MEASURES, f"name the measure that decides, one of {list(MEASURES)}")
    expect(truth is not None or answer["decided_by"] != "TRE mm",
           "TRE cannot decide on a pair without a truth: it is n/a there")
