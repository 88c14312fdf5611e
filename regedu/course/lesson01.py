"""Checked exercises of lesson 01, images and warps (``notebooks/01_images_and_warps.ipynb``).

ex1: a constant field that moves a square 5 voxels to the right on screen (a field);
ex2: two interpolations against one warp through the composed field (two errors);
ex3: the fixed-point inverse of a contraction and of a folding field (two residuals).
"""

from __future__ import annotations

import math

import torch

from regedu import data, warps
from regedu.classical.affine import centre_of_mass
from regedu.course.feedback import exercise, expect, is_number

INVERSE_STEPS = 20  # exercise 3: fixed-point steps
MAGNITUDES = (4, 16)  # exercise 3: largest displacement of the two fields, voxels


@exercise(1, right="channel 1 holds the displacement along axis 1; -5 there makes every voxel read 5 "
                   "voxels to its left, so the content moves 5 voxels to the right")
def ex1(answer, toy):
    """answer: the field ``(1, 2, X, Y)``; toy: the square image ``(1, 1, X, Y)`` it is tried on."""
    expect(isinstance(answer, torch.Tensor) and answer.shape == (1, 2, *toy.shape[2:]),
           f"give the field itself, a tensor of shape {(1, 2, *toy.shape[2:])}: answer = disp")
    before = centre_of_mass(toy)[0].tolist()
    after = centre_of_mass(warps.warp(toy, answer.to(toy.device, toy.dtype)))[0].tolist()
    down, right = after[0] - before[0], after[1] - before[1]
    expect(abs(down) < 0.1, f"the square moved by {down:+.1f} voxels along axis 0 (up or down on the "
                            "screen): channel 0 of a field moves content along axis 0; use channel 1")
    expect(right > -0.1, f"the square moved {-right:.1f} voxels to the left: a pull reads moving(x + disp), "
                         "so content moves against the field; flip the sign")
    expect(abs(right - 5) < 0.1, f"the square moved {right:+.1f} voxels along axis 1, not +5: make the "
                                 "field the same (constant) value at every voxel")


@exercise(2, right="each bilinear warp blurs; composing the fields first and interpolating the image once "
                   "gives it back almost exactly, since the composed field is almost zero")
def ex2(answer, image):
    """answer: {"two warps": mean |error|, "one warp": mean |error|} against the original image;
    image: the brain slice ``(1, 1, X, Y)``."""
    keys = {"two warps", "one warp"}
    expect(isinstance(answer, dict) and set(answer) == keys and all(map(is_number, answer.values())),
           f"give a dict of two numbers with the keys {sorted(keys)}")
    shape = tuple(image.shape[2:])
    like = {"device": image.device, "dtype": image.dtype}
    forward = warps.affine_to_disp(warps.rotation(math.radians(30), shape, **like), shape)
    backward = warps.affine_to_disp(warps.rotation(math.radians(-30), shape, **like), shape)
    two = (warps.warp(warps.warp(image, forward), backward) - image).abs().mean().item()
    one = (warps.warp(image, warps.compose(forward, backward)) - image).abs().mean().item()
    added = (warps.warp(image, forward + backward) - image).abs().mean().item()
    given_two, given_one = float(answer["two warps"]), float(answer["one warp"])
    expect(abs(given_two - two) < 0.1 * two, f"two warps: your mean |error| {given_two:.4f} is not that of "
           "warp(warp(image, forward), backward) against the original image")
    expect(abs(given_one - added) > 0.1 * added, "one warp: you warped with forward + backward; the sum "
           "reads the second field at the wrong place: warp once with warps.compose(forward, backward)")
    expect(given_one < given_two, "one warp should be closer to the original than two: warp once with "
                                  "warps.compose(forward, backward)")
    expect(given_one < 10 * one + 1e-4, f"one warp: your mean |error| {given_one:.2g} is too large for a "
           "single warp through warps.compose(forward, backward)")


def _residual(field: torch.Tensor, steps: int) -> float:
    """Largest |compose(field, w)| (voxels) after ``steps`` of w = -warp(field, w) from w = 0."""
    inverse = torch.zeros_like(field)
    for _ in range(steps):
        inverse = -warps.warp(field, inverse)
    return warps.compose(field, inverse).abs().max().item()


@exercise(3, right="the 4-voxel field is a contraction (L < 1) and its residual goes to zero; the "
                   "16-voxel field folds (L > 1), no inverse exists there, and the residual stays large")
def ex3(answer, shape):
    """answer: {4: residual, 16: residual}, the largest |compose(u, w)| in voxels after 20 steps;
    shape: the brain slice's spatial shape."""
    expect(isinstance(answer, dict) and set(answer) == set(MAGNITUDES)
           and all(map(is_number, answer.values())),
           f"give a dict {{4: residual, 16: residual}} of numbers, keyed by the magnitudes {MAGNITUDES}")
    for magnitude in MAGNITUDES:
        field = data.random_disp(tuple(shape), magnitude=magnitude, smoothness=16, seed=0)
        expected, given = _residual(field, INVERSE_STEPS), float(answer[magnitude])
        if expected < 1e-3:
            expect(given < 1e-3, f"magnitude {magnitude}: your residual {given:.2g} has not gone to zero; "
                                 f"run the iteration for {INVERSE_STEPS} steps and report the last one")
        else:
            expect(abs(given - expected) < 0.2 * expected,
                   f"magnitude {magnitude}: your residual {given:.3g} is not the largest |compose(u, w)| "
                   f"after {INVERSE_STEPS} steps of the fixed-point iteration (fixed_point_inverse(field, "
                   f"{INVERSE_STEPS}), the last value)")
