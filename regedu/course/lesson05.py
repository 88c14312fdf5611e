"""Checked exercises of lesson 05, diffeomorphic registration (``notebooks/05_diffeomorphic.ipynb``).

ex1: scaling and squaring by hand (a function); ex2: where the raw field and the computed exponential
start to fold (a dict of findings); ex3: which demons keeps further from folding (a method name, judged
on the student's own results); ex4: the symmetrised velocity of the diffeomorphic network (two fields).
"""

from __future__ import annotations

from unittest import mock

import torch

from regedu import data, metrics, warps
from regedu.course.feedback import Wrong, exercise, expect

STRETCHES = (0.5, 1, 2, 3, 4)  # the factors s of exercise 2
DEMONS = ("affine+demons", "affine+diffeomorphic_demons")


def _largest_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two fields of one shape, in voxels."""
    return (a - b).abs().max().item()


@exercise(1, right="scaling by 1 / 2**steps and squaring steps times with compose is warps.integrate")
def ex1(my_integrate):
    """my_integrate(v, steps) -> the displacement of exp(v); judged on small 2D and 3D velocities."""
    expect(callable(my_integrate), "give your function itself: answer = my_integrate (no brackets)")
    for shape, steps in [((24, 28), 7), ((24, 28), 3), ((10, 12, 8), 5)]:
        velocity = data.random_velocity(shape, magnitude=4.0, smoothness=6.0, seed=1)
        kept = velocity.clone()
        expected = warps.integrate(velocity, steps)
        with mock.patch.object(warps, "integrate", side_effect=Wrong(
                "your function calls warps.integrate: build it from division and warps.compose only")):
            found = my_integrate(velocity, steps)
        expect(torch.equal(velocity, kept), "your function changed the velocity it was given (an in-place "
                                            "`v /= ...`?): compute `v / 2**steps` into a new variable")
        expect(isinstance(found, torch.Tensor) and found.shape == velocity.shape,
               f"return a displacement of the velocity's shape {tuple(velocity.shape)}")
        error = _largest_difference(found, expected)
        if error < 1e-4:
            continue
        expect(_largest_difference(found, velocity / 2**steps) > 1e-4,
               "you returned the scaled field only: now square it, `disp = warps.compose(disp, disp)`, "
               "steps times")
        expect(_largest_difference(found, velocity) > 1e-4,
               "your result is v itself (the starter's `return v`? or `disp + disp`, which doubles a "
               "straight line and undoes the scaling): square by composing, `warps.compose(disp, disp)`, "
               "which follows the flow")
        expect(_largest_difference(found, warps.integrate(velocity * 2**steps, steps)) > 1e-3,
               "your result is exp(2**steps v): you squared without scaling first; start from "
               "`v / 2**steps`")
        expect(False, f"with steps={steps} your field differs from warps.integrate by up to {error:.2g} "
                      "voxels (at most 1e-4 allowed): scale once by 1 / 2**steps, then square exactly "
                      "steps times")


def _folds(disp: torch.Tensor) -> bool:
    """Whether a field folds: det J <= 0 at some voxel."""
    return metrics.folding_fraction(disp).item() > 0


def _first(folding: dict[float, bool]) -> float | None:
    """The smallest stretch s that folds, or None if none does."""
    return min((s for s, folds in folding.items() if folds), default=None)


@exercise(2, right="the raw field folds long before its computed exponential, and more squaring steps "
                   "do not stop the computed one folding once the grid cannot represent the flow")
def ex2(answer, velocity):
    """answer: {"raw_folds_from": s, "computed_folds_from": s or None, "more_steps_fix_it": bool}, with s
    among 0.5, 1, 2, 3, 4 (the smallest s that folds); velocity: the lesson's field, to recompute them."""
    keys = {"raw_folds_from", "computed_folds_from", "more_steps_fix_it"}
    expect(isinstance(answer, dict) and set(answer) == keys, f"give a dict with the keys {sorted(keys)}")
    raw = {s: _folds(s * velocity) for s in STRETCHES}
    with_7 = {s: _folds(warps.integrate(s * velocity, 7)) for s in STRETCHES}
    with_12 = {s: _folds(warps.integrate(s * velocity, 12)) for s in STRETCHES}
    expect(answer["raw_folds_from"] == _first(raw),
           "that is not the first s at which the raw field folds: print "
           "`metrics.folding_fraction(s * velocity)` for each s and take the first one above 0")
    expect(answer["computed_folds_from"] is not None or _first(with_7) is None,
           "the exact exponential never folds, but the computed one does: look at the 7-step column "
           "for the large s")
    expect(answer["computed_folds_from"] == _first(with_7),
           "that is not the first s at which warps.integrate(s * velocity, 7) folds: read the 7-step column "
           "from the top")
    fixed_by_steps = any(with_7[s] and not with_12[s] for s in STRETCHES)
    expect(answer["more_steps_fix_it"] == fixed_by_steps,
           "compare the 7-step and 12-step columns where the 7-step one folds: "
           + ("12 steps remove folds there" if fixed_by_steps else
              "12 steps fold as well, so the steps are not the problem: the grid cannot represent regions "
              "squeezed below a voxel"))


@exercise(3, right="composing the exponential of each update keeps the smallest det J further from 0 "
                   "than adding the updates")
def ex3(answer, demons):
    """answer: the method (one of DEMONS) whose smallest det J is larger; demons: method -> its result."""
    expect(isinstance(demons, dict) and set(demons) == set(DEMONS),
           f"register the pair with both methods and keep the results in `demons`, keyed {list(DEMONS)}")
    for method, result in demons.items():
        made_by = getattr(result, "method", None)
        expect(made_by == method,
               f"demons[{method!r}] was made by {made_by!r}: call regedu.register(..., method={method!r})")
    expect(answer in DEMONS, f"answer with one of {list(DEMONS)}, a string")
    smallest = {method: metrics.min_jacobian(result.disp).item() for method, result in demons.items()}
    further = max(smallest, key=smallest.get)
    expect(answer == further,
           f"the smallest det J is {smallest[DEMONS[0]]:+.2f} for {DEMONS[0]} and "
           f"{smallest[DEMONS[1]]:+.2f} for {DEMONS[1]}: folding starts at 0, so the larger one keeps "
           "further from it")


@exercise(4, right="with w = (v1 - v2) / 2 the two directions are exp(w) and exp(-w): inverse-consistent "
                   "by construction")
def ex4(answer, network, pairs):
    """answer: (there, back), the fields of exp(w) and exp(-w) for every pair; network: the diffeomorphic
    network; pairs: a dict with "moving" and "fixed" (B, 1, *spatial), to recompute v1, v2 and w."""
    expect(isinstance(answer, (tuple, list)) and len(answer) == 2, "give two fields: answer = (there, back)")
    there, back = answer
    with torch.no_grad():
        v1 = network(pairs["moving"], pairs["fixed"], return_velocity=True).velocity
        v2 = network(pairs["fixed"], pairs["moving"], return_velocity=True).velocity
        w = (v1 - v2) / 2
        expected_there, expected_back = network.exponential(w), network.exponential(-w)
        own_there = network.exponential(v1)
        half_sum = network.exponential((v1 + v2) / 2)
    expect(isinstance(there, torch.Tensor) and there.shape == expected_there.shape,
           f"`there` must be the fields of all pairs, shape {tuple(expected_there.shape)}")
    tolerance = 1e-3
    expect(_largest_difference(there, half_sum) > tolerance or _largest_difference(there, expected_there)
           < tolerance, "you averaged v1 + v2: v2 points the other way (about -v1), so the sum cancels the "
                        "motion; use w = (v1 - v2) / 2")
    expect(_largest_difference(there, own_there) > tolerance,
           "`there` is exp(v1), the network's own answer: symmetrise first, w = (v1 - v2) / 2")
    expect(_largest_difference(there, expected_there) < tolerance,
           "`there` is not diffeo_net.exponential(w) with w = (v1 - v2) / 2, v1 = the velocity for "
           "(moving, fixed), v2 = the one for (fixed, moving)")
    expect(_largest_difference(back, expected_back) < tolerance,
           "`back` must be diffeo_net.exponential(-w), the same w negated (not a second prediction "
           "net(fixed, moving))")
