"""Thirion's demons, and the diffeomorphic demons of Vercauteren et al.

Demons do not minimise a loss with a generic optimiser. Each iteration computes a
"force" at every voxel from the intensity difference and the image gradient, the
optical-flow step that would make ``warped`` match ``fixed`` if the images were
linear:

    update = (fixed - warped) * J / (|J|^2 + alpha^2 (fixed - warped)^2)

with ``J`` the gradient (of ``fixed`` in Thirion's version; the mean of the gradients
of ``fixed`` and ``warped`` for the faster *symmetric* forces). The second term of the
denominator bounds every step to ``1 / (2 alpha) = max_step`` voxels. Then:

* *fluid-like* regularisation: the update is smoothed with a Gaussian (``sigma_fluid``);
* the update is added to the field (classic demons) or, for ``diffeomorphic=True``,
  exponentiated (scaling and squaring) and composed with it, so the map stays invertible;
* *diffusion-like* regularisation: the field itself is smoothed (``sigma_diffusion``).

With the pulling convention ``warped(x) = moving(x + disp(x))``, composing the update
``u`` on the fixed side gives ``disp_new = compose(disp, u)`` (``u`` first, then ``disp``).
"""

from __future__ import annotations

import math

import torch

from .. import kernels
from ..checks import check_number
from ..filters import gaussian_smooth
from ..losses import mse
from ..result import RegistrationResult
from .pyramid import Level, PyramidRun

__all__ = ["demons", "demons_update", "match_histogram"]

SCHEDULE = (100, 50, 25)  # default iterations per level, coarse to fine (see demons)
INT_STEPS = 7  # scaling-and-squaring steps of each update's exponential (diffeomorphic demons)


def _spatial_gradient(image: torch.Tensor) -> torch.Tensor:
    """Intensity gradient ``(B, ndim, *spatial)`` of a one-channel image ``(B, 1, *spatial)``,
    central differences (one-sided at the border), in intensity per voxel."""
    ndim = image.dim() - 2
    return torch.cat(torch.gradient(image, dim=tuple(range(2, 2 + ndim))), dim=1)


def demons_update(fixed: torch.Tensor, warped: torch.Tensor, max_step: float = 1.0,
                  symmetric: bool = True) -> torch.Tensor:
    """The demons force ``(B, ndim, *spatial)`` in voxels, each vector at most ``max_step`` long.

    Args:
        fixed, warped: one-channel images ``(B, 1, *spatial)``, intensities in ``[0, 1]``.
        max_step: the longest step, ``1 / (2 alpha)``, in voxels.
        symmetric: use the mean gradient of both images (symmetric / ESM forces) instead of
            the fixed image's gradient alone (Thirion).
    """
    difference = fixed - warped
    gradient = _spatial_gradient(fixed)
    if symmetric:
        gradient = (gradient + _spatial_gradient(warped)) / 2
    alpha = 1 / (2 * max_step)
    denominator = gradient.square().sum(dim=1, keepdim=True) + alpha**2 * difference.square()
    tiny = torch.finfo(fixed.dtype).tiny ** 0.5
    return difference * gradient / denominator.clamp(min=tiny)


def match_histogram(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Give each item of ``image`` the intensity distribution of ``reference`` (quantile matching).

    The voxel with the ``k``-th smallest value in ``image`` takes the ``k``-th smallest value
    of ``reference``: a monotone remapping of intensities, so that demons, which compare raw
    intensities, see the same contrast in both images. Both ``(B, C, *spatial)``, same shape.
    """
    flat = image.flatten(1)
    ranks = flat.argsort(dim=1).argsort(dim=1)
    sorted_reference = reference.expand_as(image).flatten(1).sort(dim=1).values
    return sorted_reference.gather(1, ranks).view_as(image)


def _demons_iteration(disp: torch.Tensor, level: Level, max_step: float, symmetric: bool, sigma_fluid: float,
                      sigma_diffusion: float, diffeomorphic: bool) -> tuple[torch.Tensor, float]:
    """One demons iteration on one pyramid level: returns the new field and the MSE before it.

    The loop runs on checked inputs, so it calls the unchecked kernels (:mod:`regedu.kernels`):
    the divergence check after each iteration (in :func:`demons`) replaces their input checks.
    """
    warped = level.warp(disp)
    update = gaussian_smooth(demons_update(level.fixed, warped, max_step, symmetric), sigma_fluid)
    if diffeomorphic:
        disp = kernels.compose(disp, kernels.integrate(update, INT_STEPS))
    else:
        disp = disp + update
    return gaussian_smooth(disp, sigma_diffusion), float(mse(level.fixed, warped))


def _check_one_channel(moving: torch.Tensor) -> None:
    if moving.shape[1] != 1:
        raise ValueError(
            f"`demons` registers one-channel images, got {moving.shape[1]} channels "
            f"({tuple(moving.shape)}). Select one with x[:, :1] or average them with x.mean(1, keepdim=True)."
        )


def demons(moving: torch.Tensor, fixed: torch.Tensor, *, diffeomorphic: bool = False,
           levels: int | None = None, iterations=None, sigma_fluid: float = 1.0,
           sigma_diffusion: float = 2.0, max_step: float = 1.0, symmetric: bool = True,
           match_intensities: bool = True, voxel_size=None, affine: torch.Tensor | None = None, callback=None,
           progress=None, device=None) -> RegistrationResult:
    """Demons registration of ``moving`` onto ``fixed``, coarse to fine.

    Demons compare intensities directly (sum of squared differences), so both images
    must show the same contrast: intensities are rescaled to ``[0, 1]`` per item and, with
    ``match_intensities``, the moving image's histogram is matched to the fixed one's.

    The pyramid adapts to the image as every classical method's does, so that any size registers
    with no options: the defaults were chosen with 3 levels on 2 mm brains (96 x 112 and
    96 x 112 x 96, which still get exactly those 3 levels and 100, 50, 25 iterations, the schedule
    of the SimpleITK demons they are compared with in ``benchmarks/classical.py``); a small image
    gets fewer levels instead of an error, a large one more (see ``levels``).

    Args:
        moving, fixed: one-channel ``(B, 1, *spatial)`` floating images, 2D or 3D.
        diffeomorphic: compose the exponential of each update (diffeomorphic demons)
            instead of adding the update.
        levels: pyramid levels. ``None`` (default) chooses them from the image size and
            ``voxel_size`` (:func:`~regedu.classical.common.auto_pyramid`: coarsen until the largest
            axis has at most 32 voxels, never below 8 voxels on an axis; 3 levels for a 2 mm brain, 2
            for a 33 x 41 x 25 volume, 1 for a 20 x 24 slice, 4 for a 1 mm brain), or as many as
            ``iterations`` has entries; an int is honoured exactly (an error if the image is too small
            for it).
        iterations: ``None`` (default): 100, 50, 25 iterations from the coarsest level on (anchored at
            the coarsest level, whose voxel size the automatic pyramid keeps about the same for every
            image: a shallower pyramid drops the fine end, a deeper one repeats 25), all of them run
            (demons have no convergence test). One int (every level) or one int per level (coarse
            first) runs exactly that many.
        sigma_fluid: Gaussian width (voxels) for smoothing each update (0: none).
        sigma_diffusion: Gaussian width (voxels) for smoothing the field after each update (0: none).
        max_step: longest update per iteration, in voxels of the current level.
        symmetric: symmetric (ESM) forces rather than Thirion's fixed-image gradient.
        match_intensities: remap the moving intensities onto the fixed image's distribution
            (:func:`match_histogram`) before registering; it undoes global contrast changes.
        voxel_size: mm per spatial axis (e.g. a loaded volume's ``spacing``) for the pyramid: anisotropic
            images are coarsened along their fine axes first. ``None``: isotropic voxels. (The sigmas
            and ``max_step`` stay in voxels.)
        affine, callback, progress, device: see :func:`regedu.classical.register_dense`.
            ``callback(level, iteration, loss)`` receives the mean squared error.

    Returns:
        :class:`RegistrationResult` whose ``history`` holds the MSE before each iteration.
    """
    sigma_fluid = check_number(sigma_fluid, "sigma_fluid")
    sigma_diffusion = check_number(sigma_diffusion, "sigma_diffusion")
    max_step = check_number(max_step, "max_step", strict=True)
    name = "diffeomorphic_demons" if diffeomorphic else "demons"
    run = PyramidRun(moving, fixed, name, levels=levels, iterations=iterations, schedule=SCHEDULE,
                     affine=affine, voxel_size=voxel_size, callback=callback, progress=progress,
                     device=device)
    _check_one_channel(run.input_moving)
    if match_intensities:
        run.moving = match_histogram(run.moving, run.fixed)
    with run, torch.no_grad():
        disp = None
        for level in run.levels():
            disp = level.start_from(disp)
            for iteration in range(level.iterations):
                disp, loss = _demons_iteration(disp, level, max_step, symmetric, sigma_fluid, sigma_diffusion,
                                               diffeomorphic)
                if not math.isfinite(loss) or not bool(torch.isfinite(disp).all()):
                    raise FloatingPointError(
                        f"demons diverged (NaN or infinite values) at pyramid level {level.index}, iteration "
                        f"{iteration}: lower max_step={max_step:g} or smooth more (sigma_fluid)."
                    )
                level.report(loss)
    return run.result(disp, {"displacement": disp})
