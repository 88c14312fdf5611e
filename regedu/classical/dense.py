"""Dense deformable registration: one displacement (or velocity) vector per voxel, optimised per pair.

The unknown is a field on the image grid. Each pyramid level minimises

    similarity(fixed, warp(moving, field)) + weight * regulariser(field)

with Adam, starting from the previous level's field brought to the finer grid by
:func:`regedu.warps.resize_disp` (the first level from zero, or from ``initial_disp``: a network's
field, which is how :func:`regedu.train.instance_optimize` refines it). With
``diffeomorphic=True`` the unknown is a stationary velocity field ``v`` and the displacement is
``integrate(v)`` (scaling and squaring): the map is then smooth and invertible (no folding).
"""

from __future__ import annotations

from functools import partial

import torch

from .. import kernels
from ..checks import check_choice, check_disp, check_finite, check_number, check_positive_int, check_tensor
from ..deprecation import renamed_keyword
from ..result import RegistrationResult
from .common import LR_SCHEDULES, regulariser_function, similarity_function
from .pyramid import Level, PyramidRun

__all__ = ["register_dense"]

SCHEDULE = (100, 50, 20)  # default iterations per level, coarse to fine (see register_dense)
INT_STEPS = 7  # default scaling-and-squaring steps of the diffeomorphic variant ("svf")


def _level_loss(field: torch.Tensor, level: Level, similarity, regulariser, weight: float,
                diffeomorphic: bool, int_steps: int) -> torch.Tensor:
    """Loss on one pyramid level: similarity after warping plus ``weight`` times the regulariser."""
    disp = kernels.integrate(field, int_steps) if diffeomorphic else field
    loss = similarity(level.fixed, level.warp(disp))
    if weight > 0:
        loss = loss + weight * regulariser(field)
    return loss


def _starting_field(initial_disp: torch.Tensor | None, run: PyramidRun,
                    diffeomorphic: bool) -> torch.Tensor | None:
    """``initial_disp`` checked, as a new ``(B, ndim, *spatial)`` tensor on the run's device and in its
    dtype (the caller's tensor is never changed), or ``None`` to start from zero."""
    if initial_disp is None:
        return None
    if diffeomorphic:
        raise ValueError("`initial_disp` is a displacement, but with diffeomorphic=True the unknown is a "
                         "velocity field: drop diffeomorphic=True to refine a displacement, or drop "
                         "initial_disp.")
    check_tensor(initial_disp, "initial_disp")
    check_disp(initial_disp, "initial_disp", ndim=run.ndim, spatial=run.shape)
    if initial_disp.shape[0] not in (1, run.batch):
        raise ValueError(f"`initial_disp` has batch size {initial_disp.shape[0]} but the pair has "
                         f"{run.batch}: give one field per pair, or one field (batch 1) for all.")
    check_finite(initial_disp, "initial_disp")
    start = initial_disp.detach().to(device=run.moving.device, dtype=run.moving.dtype)
    return start.expand(run.batch, *start.shape[1:]).clone(memory_format=torch.contiguous_format)


def register_dense(moving: torch.Tensor, fixed: torch.Tensor, *, diffeomorphic: bool = False,
                   similarity="ncc", window=9, bins: int = 32, regulariser="diffusion", weight: float = 1.0,
                   levels: int | None = None, iterations=None, lr: float = 0.1, lr_schedule: str = "cosine",
                   int_steps: int = INT_STEPS, voxel_size=None, affine: torch.Tensor | None = None,
                   initial_disp: torch.Tensor | None = None, callback=None, progress=None, device=None,
                   steps: int | None = None) -> RegistrationResult:
    """Deformable registration by optimising a dense field, coarse to fine.

    The pyramid adapts to the image as the B-spline's does (:func:`~regedu.classical.register_bspline`),
    so that any size registers with no options: the defaults were tuned with 3 levels on 2 mm brains
    (96 x 112 and 96 x 112 x 96, which still get exactly those 3 levels and 100, 50, 20 iterations); a
    small image gets fewer levels instead of an error, a large one more (see ``levels``).

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images, 2D or 3D, same shape;
            a batch of 1 broadcasts. Intensities are rescaled to ``[0, 1]`` per item
            for the loss only.
        diffeomorphic: optimise a stationary velocity field and integrate it with
            ``int_steps`` scaling-and-squaring steps (no folding), instead of the displacement.
        similarity: a name of :data:`regedu.losses.SIMILARITIES`: ``"ncc"`` (local, ``window``),
            ``"mse"``, ``"mi"`` (``bins``), ``"global_ncc"``, ``"ngf"``; or a callable ``f(fixed, warped)``.
        regulariser: a name of :data:`regedu.losses.REGULARISERS`: ``"diffusion"`` (first
            derivatives), ``"bending"`` (second); or a callable ``f(field)``; applied to the
            optimised field with ``weight >= 0``.
        levels: pyramid levels. ``None`` (default) chooses them from the image size and
            ``voxel_size`` (:func:`~regedu.classical.common.auto_pyramid`, the one rule every classical
            method uses: coarsen until the largest axis has at most 32 voxels, never below 8 voxels on
            an axis; 3 levels for a 2 mm brain, 2 for a 33 x 41 x 25 volume, 1 for a 20 x 24 slice, 4
            for a 1 mm brain), or as many as ``iterations`` has entries; an int is honoured exactly (an
            error if the image is too small for it, e.g. ``levels=3`` for 33 x 41 x 25).
        iterations: ``None`` (default): 100, 50, 20 iterations from the coarsest level on (the schedule
            tuned for 3 levels; it is anchored at the coarsest level, whose voxel size the automatic
            pyramid keeps about the same for every image, so a shallower pyramid drops its fine end and
            a deeper one repeats 20). Every iteration runs: unlike the B-spline and affine methods this
            one does not stop on convergence (its counts were chosen as exact counts, and stopping
            early would change its results). One int (every level) or one int per level (coarse first)
            runs exactly that many.
        lr: Adam step size in voxels (of the current level) per iteration.
        lr_schedule: ``"cosine"`` lowers the step size from ``lr`` to ``lr / 10`` over each level, so
            the field settles; ``"constant"`` keeps ``lr`` (a few steps from a good start, as in
            :func:`regedu.train.instance_optimize`).
        affine: start from this affine ``(B, ndim, ndim + 1)`` (e.g. ``register_affine(...).affine``);
            the result's ``disp`` then includes it.
        initial_disp: start from this displacement ``(B or 1, ndim, *spatial)`` in voxels of the fixed
            grid instead of zero (e.g. a network's field: :func:`regedu.train.instance_optimize`); the
            coarsest level starts from it resampled to its grid. It is the method's own field, applied
            before ``affine``. Not with ``diffeomorphic=True``, whose unknown is a velocity.
        callback, progress, device: see :func:`regedu.classical.register_affine`.
        int_steps: scaling-and-squaring steps of the diffeomorphic variant (VoxelMorph's name).
        voxel_size: mm per spatial axis (e.g. a loaded volume's ``spacing``) for the pyramid: anisotropic
            images are coarsened along their fine axes first. ``None``: isotropic voxels.
        steps: the old name of ``int_steps`` (deprecated: it warns).

    Returns:
        :class:`RegistrationResult`; ``parameters`` holds the optimised field on the fixed
        grid, without the affine: ``"velocity"`` (diffeomorphic) or ``"displacement"``.
    """
    int_steps = renamed_keyword(int_steps, steps, "int_steps", "steps", default=INT_STEPS)
    weight = check_number(weight, "weight")
    lr = check_number(lr, "lr", strict=True)
    check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    int_steps = check_positive_int(int_steps, "int_steps", minimum=0)
    similarity = similarity_function(similarity, window, bins)
    regulariser = regulariser_function(regulariser)
    name = "svf" if diffeomorphic else "dense"
    run = PyramidRun(moving, fixed, name, levels=levels, iterations=iterations, schedule=SCHEDULE,
                     affine=affine, voxel_size=voxel_size, tolerance=0.0, callback=callback,
                     progress=progress, device=device)
    field = _starting_field(initial_disp, run, diffeomorphic)
    with run:
        for level in run.levels():
            field = level.start_from(field).requires_grad_(True)
            level.minimise(partial(_level_loss, field, level, similarity, regulariser, weight, diffeomorphic,
                                   int_steps), [field], lr, lr_schedule=lr_schedule)
    field = field.detach()
    disp = kernels.integrate(field, int_steps) if diffeomorphic else field
    return run.result(disp, {"velocity" if diffeomorphic else "displacement": field})
