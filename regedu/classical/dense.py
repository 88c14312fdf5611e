"""Dense deformable registration: one displacement (or velocity) vector per voxel, optimised per pair.

The unknown is a field on the image grid. Each pyramid level minimises

    similarity(fixed, warp(moving, field)) + weight * regulariser(field)

with Adam, starting from the previous level's field brought to the finer grid by
:func:`regedu.warps.resize_disp`. With ``diffeomorphic=True`` the unknown is a
stationary velocity field ``v`` and the displacement is ``integrate(v)`` (scaling
and squaring): the map is then smooth and invertible (no folding).
"""

from __future__ import annotations

import time
from functools import partial

import torch

from ..checks import check_positive_int
from ..warps import integrate, resize_disp, warp
from .common import (
    RegistrationResult,
    affine_on_grid,
    after_affine,
    check_initial_affine,
    check_number,
    downsample,
    normalise_intensities,
    optimise_level,
    per_level,
    prepare_pair,
    progress_bar,
    pyramid_shapes,
    regulariser_function,
    similarity_function,
    warp_in_loop,
)

__all__ = ["register_dense"]


def _level_loss(field: torch.Tensor, moving, fixed, affine, similarity, regulariser, weight: float,
                diffeomorphic: bool, steps: int) -> torch.Tensor:
    """Loss on one pyramid level: similarity after warping plus ``weight`` times the regulariser."""
    disp = integrate(field, steps) if diffeomorphic else field
    warped = warp_in_loop(moving, after_affine(disp, affine))
    loss = similarity(fixed, warped)
    if weight > 0:
        loss = loss + weight * regulariser(field)
    return loss


def register_dense(moving: torch.Tensor, fixed: torch.Tensor, *, diffeomorphic: bool = False,
                   similarity="ncc", window=9, bins: int = 32, regulariser="diffusion", weight: float = 1.0,
                   levels: int = 3, iterations=(100, 50, 20), lr: float = 0.1, steps: int = 7,
                   affine: torch.Tensor | None = None, callback=None, progress=None,
                   device=None) -> RegistrationResult:
    """Deformable registration by optimising a dense field, coarse to fine.

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images, 2D or 3D, same shape;
            a batch of 1 broadcasts. Intensities are rescaled to ``[0, 1]`` per item
            for the loss only.
        diffeomorphic: optimise a stationary velocity field and integrate it with
            ``steps`` scaling-and-squaring steps (no folding), instead of the displacement.
        similarity: ``"ncc"`` (local, ``window``), ``"mse"``, ``"mi"`` (``bins``),
            ``"global_ncc"``, ``"ngf"`` or a callable ``f(fixed, warped)``.
        regulariser: ``"diffusion"`` (first derivatives), ``"bending"`` (second) or a
            callable ``f(field)``; applied to the optimised field with ``weight >= 0``.
        levels, iterations: pyramid levels, and one int or one int per level (coarse first).
        lr: Adam step size in voxels (of the current level) per iteration.
        affine: start from this affine ``(B, ndim, ndim + 1)`` (e.g. ``register_affine(...).affine``);
            the result's ``disp`` then includes it.
        callback, progress, device: see :func:`regedu.classical.register_affine`.

    Returns:
        :class:`RegistrationResult`; ``parameters`` holds the optimised field on the fixed
        grid, without the affine: ``"velocity"`` (diffeomorphic) or ``"displacement"``.
    """
    start = time.perf_counter()
    moving, fixed, ndim = prepare_pair(moving, fixed, device)
    weight = check_number(weight, "weight")
    lr = check_number(lr, "lr", strict=True)
    steps = check_positive_int(steps, "steps", minimum=0)
    counts = per_level(iterations, levels)
    affine = check_initial_affine(affine, moving, fixed)
    shape = tuple(fixed.shape[2:])
    shapes = pyramid_shapes(shape, levels)
    similarity = similarity_function(similarity, window, bins)
    regulariser = regulariser_function(regulariser)
    moving_01, fixed_01 = normalise_intensities(moving), normalise_intensities(fixed)

    batch = max(moving.shape[0], fixed.shape[0])
    field = torch.zeros(batch, ndim, *shapes[0], device=moving.device, dtype=moving.dtype)
    history = []
    name = "svf" if diffeomorphic else "dense"
    with progress_bar(sum(counts), progress, name) as bar:
        for level, (level_shape, count) in enumerate(zip(shapes, counts, strict=True)):
            field = resize_disp(field.detach(), level_shape).requires_grad_(True)
            level_affine = None if affine is None else affine_on_grid(affine, shape, level_shape)
            level_loss = partial(_level_loss, field, downsample(moving_01, level_shape),
                                 downsample(fixed_01, level_shape), level_affine, similarity, regulariser,
                                 weight, diffeomorphic, steps)
            history.append(optimise_level(level_loss, [field], count, lr, level, callback, bar))

    with torch.no_grad():
        field = field.detach()
        disp = after_affine(integrate(field, steps) if diffeomorphic else field, affine)
        warped = warp(moving, disp)
    return RegistrationResult(
        warped=warped, disp=disp, affine=affine, history=history, seconds=time.perf_counter() - start,
        method=name, parameters={"velocity" if diffeomorphic else "displacement": field},
    )
