"""Checked exercises of lesson 03, learned registration without labels
(``notebooks/03_learned_unsupervised.ipynb``).

ex1: instance optimisation after the network (three Dice on the first held-out pair);
ex2: pairs with larger motions than in training (Dice per pair, and which method loses more);
ex3: the network registers a pair both ways (a field's mean length and its round-trip error).
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from regedu import data, metrics, train, warps
from regedu.course.feedback import exercise, expect, is_number

DICE_TOLERANCE = 0.01  # a recomputed Dice agrees within this much (GPU kernels are not bit-exact)
REFINE_STEPS = 50  # exercise 1
HARD_MOTIONS = dict(seed=11, rotation=25.0, translation=10.0, magnitude=(10.0, 14.0))  # exercise 2
RELATIVE = 0.02  # exercise 3: a recomputed length agrees within this share


def _numbers(answer, keys, what: str) -> dict:
    """The answer as ``{key: float}`` after checking it is a dict of numbers with exactly ``keys``."""
    expect(isinstance(answer, dict) and set(answer) == set(keys) and all(map(is_number, answer.values())),
           f"give a dict of numbers with the keys {sorted(keys)}: {what}")
    return {key: float(value) for key, value in answer.items()}


def _mean_dice(moving_labels, fixed_labels, disp) -> float:
    return metrics.dice(warps.warp_labels(moving_labels, disp), fixed_labels).nanmean().item()


@exercise(1, right="the three Dice are measured right: weigh what 50 steps on the pair itself add to the "
                   "network's field against what the classical pipeline reaches, and at what cost in time")
def ex1(answer, network, pairs, classical_result):
    """answer: {"network": Dice, "refined": Dice, "classical": Dice} on the first held-out pair;
    network: the shipped network; pairs: the held-out batch (``test``); classical_result: ``classical[0]``."""
    given = _numbers(answer, ("network", "refined", "classical"), "the mean Dice of each field")
    moving, fixed = pairs["moving"][:1], pairs["fixed"][:1]
    moving_labels, fixed_labels = pairs["moving_labels"][:1], pairs["fixed_labels"][:1]
    with torch.no_grad():
        alone = _mean_dice(moving_labels, fixed_labels, network(moving, fixed).disp)
    expect(abs(given["network"] - alone) < DICE_TOLERANCE,
           f"the network alone: its mean Dice on the first held-out pair is not {given['network']:.3f}; "
           "warp the moving labels with `pretrained(moving, fixed).disp` and compare with the fixed labels")
    classical = metrics.dice(classical_result.warped_labels, fixed_labels).nanmean().item()
    expect(abs(given["classical"] - classical) < DICE_TOLERANCE,
           f"classical: classical[0]'s mean Dice is not {given['classical']:.3f}; use classical[0].disp or "
           "classical[0].warped_labels against the first pair's fixed labels")
    _, refined_disp = train.instance_optimize(network, moving, fixed, steps=REFINE_STEPS)
    refined = _mean_dice(moving_labels, fixed_labels, refined_disp)
    if abs(given["refined"] - refined) < DICE_TOLERANCE:
        return
    expect(abs(given["refined"] - alone) > 1e-6,
           "your refined Dice is the network's: instance_optimize returns (warped, disp), score its disp")
    expect(False,
           f"refined: {REFINE_STEPS} steps of train.instance_optimize(pretrained, moving, fixed, "
           f"steps={REFINE_STEPS}) give a field whose mean Dice is not {given['refined']:.3f}")


@exercise(2, right="the Dice per pair are right and the verdict follows from them; to explain it, ask which "
                   "method learned its motions from examples and which optimises each pair from scratch")
def ex2(answer, network, scores):
    """answer: {"before": [Dice per hard pair], "network": [...], "classical": [...],
    "suffers more": "network" or "classical"}; network: the shipped network; scores: section 6's table,
    whose "shipped network" and "classical (affine + B-spline)" Dice are the in-distribution ones."""
    keys = {"before", "network", "classical", "suffers more"}
    expect(isinstance(answer, dict) and set(answer) == keys, f"give a dict with the keys {sorted(keys)}")
    lists = {key: answer[key] for key in ("before", "network", "classical")}
    expect(all(isinstance(values, (list, tuple)) and values and all(map(is_number, values))
               for values in lists.values()),
           "answer['before'], ['network'] and ['classical'] must be lists of numbers, one mean Dice per pair")
    count = len(lists["before"])
    expect(all(len(values) == count for values in lists.values()), "give one Dice per hard pair in each list")
    device = next(network.parameters()).device
    hard_pairs = data.BrainSlicePairs(count, device=device, **HARD_MOTIONS)
    hard = default_collate([hard_pairs[i] for i in range(count)])
    before = metrics.dice(hard["moving_labels"], hard["fixed_labels"]).nanmean(1)
    expect(torch.allclose(torch.tensor(lists["before"]), before.cpu(), atol=DICE_TOLERANCE),
           f"before: the Dice of the {count} hard pair(s) without registration are not the ones you gave; "
           "make the pairs with data.BrainSlicePairs(n, seed=11, rotation=25.0, translation=10.0, "
           "magnitude=(10.0, 14.0))")
    with torch.no_grad():
        disp = network(hard["moving"], hard["fixed"]).disp
    found = metrics.dice(warps.warp_labels(hard["moving_labels"], disp), hard["fixed_labels"]).nanmean(1)
    expect(torch.allclose(torch.tensor(lists["network"]), found.cpu(), atol=DICE_TOLERANCE),
           "network: the shipped network's Dice on the hard pairs are not "
           f"{[round(value, 3) for value in lists['network']]}: register them with pretrained(moving, fixed)")
    expect(all(0 <= value <= 1 for value in lists["classical"]), "classical: a Dice lies between 0 and 1")
    expect(not torch.allclose(torch.tensor(lists["classical"]), found.cpu(), atol=1e-4),
           "classical: these are the network's Dice; register each hard pair with regedu.register")
    drop = {"network": scores["shipped network"]["dice"] - sum(lists["network"]) / count,
            "classical": scores["classical (affine + B-spline)"]["dice"] - sum(lists["classical"]) / count}
    larger = max(drop, key=drop.get)
    expect(answer["suffers more"] == larger,
           f"by your numbers the {larger} loses more Dice against its score on ordinary held-out pairs "
           f"(section 6's table): {drop['network']:.3f} for the network, {drop['classical']:.3f} for the "
           "classical pipeline; put the one that loses more in answer['suffers more']")


def _mean_length(field: torch.Tensor) -> float:
    """Mean length of a field's vectors ``(B, ndim, *spatial)``, in voxels."""
    return torch.linalg.vector_norm(field, dim=1).mean().item()


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RELATIVE * abs(b) + 1e-3


@exercise(3, right="both lengths are right: the round trip does not come back to its start, since two "
                   "separate predictions are not each other's inverse; compare its error with the "
                   "displacement itself")
def ex3(answer, network, pairs):
    """answer: {"mean_length": mean |u|, "round_trip": mean |compose(v, u)|} in voxels, u =
    network(moving, fixed) and v = network(fixed, moving) on the first held-out pair; network, pairs:
    the shipped network and the held-out batch, to recompute them."""
    given = _numbers(answer, ("mean_length", "round_trip"), "mean |u| and the mean round-trip error")
    moving, fixed = pairs["moving"][:1], pairs["fixed"][:1]
    with torch.no_grad():
        u, v = network(moving, fixed).disp, network(fixed, moving).disp
    expect(_close(given["mean_length"], _mean_length(u)),
           f"mean |u| is not {given['mean_length']:.3f} voxels: the mean over the voxels of the length of "
           "each vector, torch.linalg.vector_norm(u, dim=1).mean()")
    round_trips = [_mean_length(warps.compose(v, u)), _mean_length(warps.compose(u, v))]
    if any(_close(given["round_trip"], value) for value in round_trips):
        return
    expect(not _close(given["round_trip"], _mean_length(u + v)),
           "you added the two fields: u + v reads v at x, not where u sends x; compose them, "
           "warps.compose(v, u)(x) = u(x) + v(x + u(x))")
    expect(not _close(given["round_trip"], warps.compose(v, u).abs().mean().item()),
           "you averaged the components of the round trip; take the length of each vector, "
           "torch.linalg.vector_norm(round_trip, dim=1), then its mean")
    expect(False, f"the mean round-trip error is not {given['round_trip']:.3f} voxels: compose the two "
                  "predictions, warps.compose(v, u), and take the mean length of the result")
