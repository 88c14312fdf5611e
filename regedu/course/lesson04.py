"""Checked exercises of lesson 04, supervised versus unsupervised
(``notebooks/04_supervised_vs_unsupervised.ipynb``).

ex1: which shipped network is best on each measure (a name per measure, and whether each loss wins
its own measure); ex2: the end-point error on the cuts of a parcellation, where no training label had a
border (a number per field); ex3: the end-point error at tissue borders and inside tissues (two numbers
per network).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regedu import metrics
from regedu.course.feedback import exercise, expect, is_number

NETWORKS = ("supervised", "unsupervised", "label-supervised")
HIGHER_IS_BETTER = {"dice": True, "hd95": False, "epe": False, "tre": False, "folding_percent": False}
OWN_MEASURE = {"supervised": "epe", "label-supervised": "dice"}  # what each loss optimises
RELATIVE = 0.02  # a recomputed end-point error agrees within this share (or 0.01 voxel)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RELATIVE * abs(b) + 0.01


def _best(results, key: str) -> set[str]:
    """The shipped networks with the best mean of ``results[name][key]`` (several when tied)."""
    means = {name: results[name][key].float().mean().item() for name in NETWORKS}
    best = max(means.values()) if HIGHER_IS_BETTER[key] else min(means.values())
    return {name for name, value in means.items() if abs(value - best) < 1e-9}


@exercise(1, right="each measure's winner is named, and the verdict follows from them: a loss need not win "
                   "the measure it optimises")
def ex1(answer, results):
    """answer: {"dice": name, "hd95": name, "epe": name, "tre": name, "folding_percent": name,
    "each_wins_its_own": bool}; results: section 3's scores, to recompute the winners."""
    keys = set(HIGHER_IS_BETTER) | {"each_wins_its_own"}
    expect(isinstance(answer, dict) and set(answer) == keys,
           f"give a dict with the keys {sorted(keys)}: a network's name per measure, and True or False")
    for key, higher in HIGHER_IS_BETTER.items():
        expect(answer[key] in NETWORKS, f"answer[{key!r}] = {answer[key]!r}: pick one of the three shipped "
                                        f"networks, {list(NETWORKS)} (not the true field or no registration)")
        best = _best(results, key)
        if answer[key] in best:
            continue
        way = "higher" if higher else "lower"
        means = {name: round(results[name][key].float().mean().item(), 3) for name in NETWORKS}
        expect(False, f"{key}: {answer[key]} is not the best; {way} is better, and the means are {means}")
    wins = all(answer[key] == name for name, key in OWN_MEASURE.items())
    expect(isinstance(answer["each_wins_its_own"], bool), "answer['each_wins_its_own'] must be True or False")
    expect(answer["each_wins_its_own"] == wins,
           "each_wins_its_own: look at your own answers: does the supervised network win 'epe' and the "
           f"label-supervised one win 'dice'? By them the answer is {wins}")


def _spread(labels: torch.Tensor) -> torch.Tensor:
    """Whether each voxel's 3 x 3 neighbourhood holds more than one label value, ``(B, 1, X, Y)`` bool."""
    labels = labels.float()
    return F.max_pool2d(labels, 3, stride=1, padding=1) != -F.max_pool2d(-labels, 3, stride=1, padding=1)


def _cut_voxels(parcel_labels: torch.Tensor, tissue_labels: torch.Tensor) -> torch.Tensor:
    """The voxels of the brain where one parcel meets another inside a single tissue: ``(B, 1, X, Y)`` bool.

    parcel_labels, tissue_labels: integer maps ``(B, 1, X, Y)`` of the same pairs (17 parcels; 3 tissues).
    A voxel is on a cut when its 3 x 3 neighbourhood holds more than one parcel but only one tissue.
    """
    return _spread(parcel_labels) & ~_spread(tissue_labels) & (tissue_labels > 0)


def _mean_error(disp, true_disp, mask) -> tuple[float, float]:
    """Mean end-point error in ``mask``: over pairs (NaN-free), and pooled over all its voxels."""
    per_pair = metrics.end_point_error(disp, true_disp, mask=mask).nanmean().item()
    error = torch.linalg.vector_norm(disp - true_disp, dim=1, keepdim=True)
    return per_pair, error[mask].mean().item()


@exercise(2, right="on the cuts, where no training label had a border and the images show no edge, the "
                   "networks are compared where no loss pointed any of them")
def ex2(answer, results, parcels, pairs):
    """answer: {name: mean end-point error on the cut voxels} for every row of ``results``; parcels: the
    held-out pairs with 17 parcels; pairs: the same pairs with tissue labels (``test``)."""
    expect(isinstance(answer, dict) and set(answer) == set(results)
           and all(map(is_number, answer.values())),
           f"give a dict of numbers with one entry per row of `results`: {list(results)}")
    tissue, true_disp = pairs["fixed_labels"], pairs["disp"]
    expect(torch.equal(parcels["disp"].to(true_disp.device), true_disp),
           "`parcels` must hold the same pairs as `test`: data.BrainSlicePairs(N_TEST, seed=7, parcels=True)")
    cut = _cut_voxels(parcels["fixed_labels"].to(tissue.device), tissue)
    parcel_borders = _spread(parcels["fixed_labels"].to(tissue.device)) & (tissue > 0)
    for name, given in answer.items():
        disp = results[name]["disp"]
        if any(_close(given, value) for value in _mean_error(disp, true_disp, cut)):
            continue
        expect(not (name == "true field" and given > 0.5),
               f"true field: {given:.3f}; the true field's end-point error is 0 everywhere: measure the "
               "error |disp - true_disp|, not an overlap")
        expect(not _close(given, results[name]["epe"].float().mean().item()),
               f"{name}: {given:.3f} is the end-point error over the whole brain (results[name]['epe']); "
               "keep only the cut voxels")
        expect(not any(_close(given, value) for value in _mean_error(disp, true_disp, parcel_borders)),
               f"{name}: your mask holds every parcel border, tissue borders included (trained borders); "
               "keep the voxels whose 3 x 3 neighbourhood holds two parcels but one tissue")
        expect(False, f"{name}: the mean end-point error on the cut voxels is not {given:.3f}; a cut voxel "
                      "is a brain voxel whose 3 x 3 neighbourhood holds more than one parcel "
                      "(parcels['fixed_labels']) and a single tissue (test['fixed_labels'])")


@exercise(3, right="the errors are split by where they are: at tissue borders, where images and labels show "
                   "the motion, and inside tissues, where a field is set by its regulariser or, for the "
                   "supervised loss, by imitation")
def ex3(answer, results, pairs):
    """answer: {name: (mean EPE at tissue borders, mean EPE inside tissues)} for the three shipped networks
    (other rows of ``results`` may be added); pairs: the held-out pairs (``test``)."""
    expect(isinstance(answer, dict) and set(NETWORKS) <= set(answer) <= set(results),
           f"give a dict {{name: (at borders, inside)}} with at least the three networks {list(NETWORKS)}, "
           "and only rows of `results`")
    labels, true_disp = pairs["fixed_labels"], pairs["disp"]
    brain = labels > 0
    border, inside = brain & _spread(labels), brain & ~_spread(labels)
    for name, given in answer.items():
        expect(isinstance(given, (tuple, list)) and len(given) == 2 and all(map(is_number, given)),
               f"answer[{name!r}] must be a pair of numbers: (EPE at borders, EPE inside)")
        disp = results[name]["disp"]
        at_border = metrics.end_point_error(disp, true_disp, mask=border).nanmean().item()
        within = metrics.end_point_error(disp, true_disp, mask=inside).nanmean().item()
        if _close(given[0], at_border) and _close(given[1], within):
            continue
        expect(not (_close(given[0], within) and _close(given[1], at_border)),
               f"{name}: you swapped the two: give (at borders, inside)")
        expect(_close(given[0], at_border), f"{name}: the mean end-point error at tissue borders is not "
               f"{given[0]:.3f}; a border voxel is a brain voxel whose 3 x 3 neighbourhood holds more than "
               "one label (compare max_pool2d of the labels with minus max_pool2d of minus the labels)")
        expect(False, f"{name}: the mean end-point error inside tissues is not {given[1]:.3f}; inside means "
                      "a brain voxel whose 3 x 3 neighbourhood holds a single label")
