"""Dense deformable registration: one displacement (or velocity) vector per voxel, optimised per pair.

The unknown is a field on the image grid. Each pyramid level minimises

    similarity(fixed, warp(moving, field)) + weight * regulariser(field)

with Adam, starting from the previous level's field brought to the finer grid by
:func:`regedu.warps.resize_disp`. With ``diffeomorphic=True`` the unknown is a
stationary velocity field ``v`` and the displacement is ``integrate(v)`` (scaling
and squaring): the map is then smooth and invertible (no folding).
"""

from __future__ import annotations

from functools import partial

import torch

from .. import kernels
from ..checks import check_number, check_positive_int
from ..deprecation import renamed_keyword
from ..result import RegistrationResult
from .common import regulariser_function, similarity_function
from .pyramid import Level, PyramidRun

__all__ = ["register_dense"]

SCHEDULE = (100, 50, 20)  # default iterations per level, coarse to fine
INT_STEPS = 7  # default scaling-and-squaring steps of the diffeomorphic variant ("svf")


def _level_loss(field: torch.Tensor, level: Level, similarity, regulariser, weight: float,
                diffeomorphic: bool, int_steps: int) -> torch.Tensor:
    """Loss on one pyramid level: similarity after warping plus ``weight`` times the regulariser."""
    disp = kernels.integrate(field, int_steps) if diffeomorphic else field
    loss = similarity(level.fixed, level.warp(disp))
    if weight > 0:
        loss = loss + weight * regulariser(field)
    return loss


def register_dense(moving: torch.Tensor, fixed: torch.Tensor, *, diffeomorphic: bool = False,
                   similarity="ncc", window=9, bins: int = 32, regulariser="diffusion", weight: float = 1.0,
                   levels: int = 3, iterations=SCHEDULE, lr: float = 0.1, int_steps: int = INT_STEPS,
                   affine: torch.Tensor | None = None, callback=None, progress=None,
                   device=None, steps: int | None = None) -> RegistrationResult:
    """Deformable registration by optimising a dense field, coarse to fine.

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images, 2D or 3D, same shape;
            a batch of 1 broadcasts. Intensities are rescaled to ``[0, 1]`` per item
            for the loss only.
        diffeomorphic: optimise a stationary velocity field and integrate it with
            ``int_steps`` scaling-and-squaring steps (no folding), instead of the displacement.
        similarity: ``"ncc"`` (local, ``window``), ``"mse"``, ``"mi"`` (``bins``),
            ``"global_ncc"``, ``"ngf"`` or a callable ``f(fixed, warped)``.
        regulariser: ``"diffusion"`` (first derivatives), ``"bending"`` (second) or a
            callable ``f(field)``; applied to the optimised field with ``weight >= 0``.
        levels, iterations: pyramid levels, and one int or one int per level (coarse first).
        lr: Adam step size in voxels (of the current level) per iteration.
        affine: start from this affine ``(B, ndim, ndim + 1)`` (e.g. ``register_affine(...).affine``);
            the result's ``disp`` then includes it.
        callback, progress, device: see :func:`regedu.classical.register_affine`.
        int_steps: scaling-and-squaring steps of the diffeomorphic variant (VoxelMorph's name).
        steps: the old name of ``int_steps`` (deprecated: it warns).

    Returns:
        :class:`RegistrationResult`; ``parameters`` holds the optimised field on the fixed
        grid, without the affine: ``"velocity"`` (diffeomorphic) or ``"displacement"``.
    """
    int_steps = renamed_keyword(int_steps, steps, "int_steps", "steps", default=INT_STEPS)
    weight = check_number(weight, "weight")
    lr = check_number(lr, "lr", strict=True)
    int_steps = check_positive_int(int_steps, "int_steps", minimum=0)
    similarity = similarity_function(similarity, window, bins)
    regulariser = regulariser_function(regulariser)
    name = "svf" if diffeomorphic else "dense"
    with PyramidRun(moving, fixed, name, levels=levels, iterations=iterations, schedule=SCHEDULE,
                    affine=affine, callback=callback, progress=progress, device=device) as run:
        field = None
        for level in run.levels():
            field = level.start_from(field).requires_grad_(True)
            level.minimise(partial(_level_loss, field, level, similarity, regulariser, weight, diffeomorphic,
                                   int_steps), [field], lr)
    field = field.detach()
    disp = kernels.integrate(field, int_steps) if diffeomorphic else field
    return run.result(disp, {"velocity" if diffeomorphic else "displacement": field})
