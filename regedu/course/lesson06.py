"""Checked exercises of lesson 06, multiscale registration (``notebooks/06_multiscale.ipynb``).

ex1: the share of the C's gap covered with one and with four levels (numbers, judged on the student's
own results); ex2: how many levels the disk's push needs (judged on the student's runs); ex3: which
level of PyramidNet does most of the moving (recomputed from the shipped network).
"""

from __future__ import annotations

import torch

from regedu import metrics, warps
from regedu.course.feedback import exercise, expect

GOOD_DICE = 0.9  # exercise 2: "registers the disk well"


def _check_runs(results, levels: tuple[int, ...], name: str) -> None:
    """results: levels -> a registration result; each must have run with that many pyramid levels."""
    expect(isinstance(results, dict) and set(results) == set(levels),
           f"keep your results in `{name}`, one per number of levels, keyed {list(levels)}")
    for count, result in results.items():
        ran = len(getattr(result, "history", []))
        expect(ran == count, f"{name}[{count}] ran with {ran} pyramid level(s): pass levels={count} to "
                             "regedu.register")


def _covered(warped_labels: torch.Tensor, region: torch.Tensor) -> float:
    """The share (0 to 1) of the pixels of `region` where the warped label map is not background."""
    return (warped_labels > 0)[region].float().mean().item()


@exercise(1, right="four levels cover more of the C's gap than one: the coarse levels make the long, "
                   "non-linear motion short enough to find")
def ex1(answer, results, pair):
    """answer: {1: share, 4: share} of the gap covered (fractions); results: {1: result, 4: result} of
    the C -> O registrations; pair: the C -> O pair (a dict with "moving_labels", "fixed_labels")."""
    _check_runs(results, (1, 4), "c_to_o_results")
    expect(isinstance(answer, dict) and set(answer) == {1, 4},
           "give a dict {1: share with levels=1, 4: share with levels=4}")
    expect(all(0 <= float(share) <= 1 for share in answer.values()),
           "give each share as a fraction between 0 and 1, not a percentage")
    fixed_o, moving_c = pair["fixed_labels"] > 0, pair["moving_labels"] > 0
    gap = fixed_o & ~moving_c
    for levels, result in results.items():
        share = float(answer[levels])
        if abs(share - _covered(result.warped_labels, gap)) < 0.01:
            continue
        expect(abs(share - _covered(result.warped_labels, fixed_o)) > 0.01,
               f"with levels={levels} you measured the share of the whole O; the gap is the part of the O "
               "outside the C, `gap` in the starter")
        expect(abs(share - _covered(pair["moving_labels"], gap)) > 0.01,
               f"with levels={levels} you measured the moving C, which never covers its own gap: measure "
               "`result.warped_labels`")
        expect(False, f"your share for levels={levels} is not the share of the `gap` pixels where the "
                      "warped labels are above 0: `(result.warped_labels > 0)[gap].float().mean()`")


@exercise(2, right="each extra level halves the push on the coarsest grid; the disk is registered once "
                   "that push is about the disk's size there")
def ex2(answer, results, pair):
    """answer: the smallest number of levels whose Dice is above GOOD_DICE (None if none); results:
    {levels: result} of method "svf" for levels 1 to 4; pair: the disk pair (its "fixed_labels")."""
    _check_runs(results, (1, 2, 3, 4), "svf_results")
    budgets = {levels: sum(len(losses) for losses in result.history) for levels, result in results.items()}
    expect(len(set(budgets.values())) == 1,
           f"give every run the same total budget (iterations per level times levels): yours ran {budgets}")
    dice = {levels: metrics.dice(result.warped_labels, pair["fixed_labels"]).mean().item()
            for levels, result in results.items()}
    enough = min((levels for levels, value in dice.items() if value > GOOD_DICE), default=None)
    expect(answer == enough,
           f"your Dice by levels: {', '.join(f'{k}: {v:.2f}' for k, v in dice.items())}; the answer is the "
           f"smallest number of levels whose Dice is above {GOOD_DICE}"
           + (" (None: no run reaches it)" if enough is None else ""))


@exercise(3, right="each level adds to the field of the levels before it: the increase, not the total, "
                   "shows which level moves the disk")
def ex3(answer, network, pair):
    """answer: {"largest_motion": [one per level, voxels of the full grid], "most_moving_level": k};
    network: the PyramidNet; pair: a dict with "moving" and "fixed" (1, 1, *spatial)."""
    expect(isinstance(answer, dict) and set(answer) == {"largest_motion", "most_moving_level"},
           'give a dict with the keys "largest_motion" and "most_moving_level"')
    shape = tuple(pair["fixed"].shape[2:])
    with torch.no_grad():
        levels = network(pair["moving"], pair["fixed"], return_levels=True)[2]
    full = [warps.resize_disp(field, shape).norm(dim=1).max().item() for field in levels]
    own_grid = [field.norm(dim=1).max().item() for field in levels]
    given = [float(value) for value in answer["largest_motion"]]
    expect(len(given) == len(full), f"give one largest motion per level: the network has {len(full)}")
    close = all(abs(a - b) < 0.1 for a, b in zip(given, full, strict=True))
    expect(close or not all(abs(a - b) < 0.1 for a, b in zip(given, own_grid, strict=True)),
           "your motions are in voxels of each level's own grid: bring each field to full resolution with "
           "warps.resize_disp(field, SHAPE), which also rescales its values")
    expect(close, "your largest motions are not those of the level fields at full resolution: "
                  "`warps.resize_disp(field, SHAPE).norm(dim=1).max()` for each field")
    added = [full[0]] + [after - before for before, after in zip(full, full[1:], strict=False)]
    most = max(range(len(added)), key=added.__getitem__)
    expect(answer["most_moving_level"] == most,
           "the level that does most of the moving is the one that adds the most to the largest motion "
           "of the levels before it, not the last level (whose total includes all the others): compare the "
           "increases")
