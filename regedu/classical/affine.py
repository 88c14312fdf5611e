"""Rigid and affine registration by gradient descent over a resolution pyramid.

The affine is not optimised as a raw matrix (its entries have very different
units: a translation in voxels, a rotation without unit). Instead it is built
from parameters that each mean one thing, all of order 0.01 per step:

* rotation angles in radians (1 in 2D, 3 in 3D), about the image centre;
* log-scales, one per axis (``exp(0) = 1``: no scaling), affine only;
* shears (1 in 2D, 3 in 3D), affine only;
* a translation in *fractions of the image extent* per axis (0.01 moves by 1%
  of the image), so one learning rate fits every image size and every pyramid level.

The sampling location is ``y = R H S (x - c) + c + t`` (rotation, shear and scaling
about the centre ``c``, then the translation), i.e. the matrix ``A = [M | c - M c + t]``
of docs/DESIGN.md's convention, acting on voxel indices of the fixed grid.

Step sizes across the pyramid. A step of ``lr`` in these units moves the image by a fixed
fraction of its extent, which is twice as many voxels on each finer level: on the full
resolution of a 1 mm brain slice, Adam's first step (about ``lr`` whatever the gradient, since
its moments restart empty) moved a solution that the coarse levels had converged to within
0.05 voxel by about 3 voxels, and on a real pair with a rougher similarity landscape it did
not come back. So each level's ``lr`` is scaled by its voxel size relative to the coarsest
level (:func:`level_learning_rates`: a step moves about as many voxels of *its* level on
every level), and every level after the first ramps its step size up over its first
iterations (``warmup`` in :func:`~regedu.classical.common.optimise_level`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from .. import kernels
from ..checks import check_choice, check_number
from ..result import RegistrationResult
from ..warps import compose_affine, identity_grid, rotation, scaling, shear, translation
from .common import affine_on_grid, similarity_function
from .pyramid import Level, PyramidRun

__all__ = ["register_affine", "AffineParameters", "centre_of_mass", "level_learning_rates"]

TRANSFORMS = ("rigid", "affine")
SCHEDULE = (100, 50, 0)  # default iterations per level, coarse to fine (see register_affine)
WARMUP = 10  # iterations over which a level after the first ramps its step size up (at most)


@dataclass
class AffineParameters:
    """The optimised parameters of a rigid or affine transform, each ``(B, k)``.

    ``log_scales`` and ``shears`` are ``None`` for a rigid transform.
    """

    angles: torch.Tensor  # radians, (B, 1) in 2D, (B, 3) in 3D
    translation: torch.Tensor  # fractions of the image extent, (B, ndim)
    log_scales: torch.Tensor | None = None  # (B, ndim)
    shears: torch.Tensor | None = None  # (B, 1) in 2D, (B, 3) in 3D

    def tensors(self) -> list[torch.Tensor]:
        """The parameter tensors that exist (for the optimiser)."""
        return [t for t in (self.angles, self.translation, self.log_scales, self.shears) if t is not None]

    def to_affine(self, shape) -> torch.Tensor:
        """The matrix ``(B, ndim, ndim + 1)`` on voxel indices of a grid of spatial ``shape``."""
        options = {"device": self.angles.device, "dtype": self.angles.dtype}
        A = rotation(self.angles, shape, **options)
        if self.log_scales is not None:
            A = compose_affine(A, compose_affine(shear(self.shears, shape, **options),
                                                 scaling(self.log_scales.exp(), shape, **options)))
        extent = torch.tensor([n - 1 for n in shape], **options)
        return compose_affine(translation(self.translation * extent, **options), A)


def centre_of_mass(image: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre of each batch item, ``(B, ndim)`` in voxel indices.

    ``image`` is ``(B, C, *spatial)`` with non-negative intensities (channels are summed).
    """
    ndim = image.dim() - 2
    weights = image.sum(dim=1).flatten(1)  # (B, N)
    grid = identity_grid(image.shape[2:], image.device, image.dtype).reshape(ndim, -1)  # (ndim, N)
    return weights @ grid.T / weights.sum(dim=1, keepdim=True)


def initial_parameters(moving: torch.Tensor, fixed: torch.Tensor, transform: str,
                       init: str) -> AffineParameters:
    """Identity parameters, with ``init="com"`` a translation that aligns the centres of mass.

    ``moving`` and ``fixed`` are intensity-normalised ``(B, C, *spatial)`` images.
    """
    ndim = moving.dim() - 2
    batch = max(moving.shape[0], fixed.shape[0])
    zeros = partial(torch.zeros, device=moving.device, dtype=moving.dtype)
    shift = zeros(batch, ndim)
    if init == "com":
        # the fixed centre must sample the moving centre: y = x + (com_moving - com_fixed)
        extent = torch.tensor([n - 1 for n in moving.shape[2:]], device=moving.device, dtype=moving.dtype)
        shift = shift + (centre_of_mass(moving) - centre_of_mass(fixed)) / extent
    angle_count = 1 if ndim == 2 else 3
    params = AffineParameters(angles=zeros(batch, angle_count), translation=shift)
    if transform == "affine":
        params.log_scales = zeros(batch, ndim)
        params.shears = zeros(batch, angle_count)
    for tensor in params.tensors():
        tensor.requires_grad_(True)
    return params


def level_learning_rates(lr: float, shapes) -> list[float]:
    """Adam's step size on each pyramid level (``shapes``, coarse to fine): ``lr`` on the coarsest,
    scaled on the others by their voxel size relative to it.

    The parameters move the image by fractions of its extent, so one step of ``lr`` is
    ``lr * (n - 1)`` voxels on an axis of ``n`` voxels: twice as many on each finer level. The
    scale ``min over axes of (n_coarsest - 1) / (n_level - 1)`` (about ``2**-k`` for the ``k``-th
    level above the coarsest) makes a step move at most as many voxels of its own level as on
    the coarsest one, so a finer level refines a solution instead of jumping away from it.
    """
    coarsest = shapes[0]
    scales = []
    for level_shape in shapes:
        ratios = [(c - 1) / (n - 1) for c, n in zip(coarsest, level_shape, strict=True) if n > 1]
        scales.append(min(ratios, default=1.0))
    return [lr * scale for scale in scales]


def _level_loss(params: AffineParameters, level: Level, similarity) -> torch.Tensor:
    """Similarity of the level's ``fixed`` and ``moving`` warped by the current affine."""
    A = affine_on_grid(params.to_affine(level.run.shape), level.run.shape, level.shape)
    return similarity(level.fixed, level.warp(kernels.affine_to_disp(A, level.shape)))


def register_affine(moving: torch.Tensor, fixed: torch.Tensor, transform: str = "affine",
                    similarity="ncc", *, levels: int | None = None, iterations=None, lr: float = 0.01,
                    window=9, bins: int = 32, init: str = "com", tolerance: float | None = None,
                    voxel_size=None, callback=None, progress=None, device=None) -> RegistrationResult:
    """Rigid or affine registration of ``moving`` onto ``fixed``.

    Starts from the translation that aligns the centres of mass (``init="com"``) or
    from the identity (``init="identity"``), then minimises ``similarity`` with Adam,
    coarse to fine over a pyramid of ``levels`` levels (each halves the resolution).

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images, 2D or 3D, same shape;
            a batch of 1 broadcasts against the other. Intensities are rescaled to
            ``[0, 1]`` per item for the loss only.
        transform: ``"rigid"`` (rotation and translation) or ``"affine"`` (plus
            scaling and shear).
        similarity: ``"ncc"`` (local, ``window``), ``"global_ncc"``, ``"mse"``, ``"mi"``
            (``bins``), ``"ngf"`` or a callable ``f(fixed, warped)`` to minimise.
        levels: pyramid levels. ``None`` (default) chooses them from the image size and
            ``voxel_size`` (:func:`~regedu.classical.common.auto_pyramid`: coarsen until the
            largest axis has at most 32 voxels, never below 8 voxels on an axis; 3 levels for a
            2 mm brain, 2 for a 33 x 41 x 25 volume, 4 for a 1 mm brain), or as many as
            ``iterations`` has entries; an int is honoured exactly (an error if the image is
            too small for it).
        iterations: ``None`` (default): at most 100 iterations on the coarsest level, 50 on the
            next and none finer, each level stopping once it has converged. This skips the
            full resolution of a 2 mm brain: it costs the most (by far in 3D) and moves an affine
            by a fraction of a voxel, which a deformable stage absorbs; give it iterations (e.g.
            ``(100, 50, 25)``) when the affine is the final result. One int (every level) or one
            int per level (coarse first) runs exactly that many.
        lr: Adam step size on the coarsest level (radians, log-scale, shear, fraction of the image
            per step); finer levels scale it by their voxel size (:func:`level_learning_rates`)
            and ramp it up over their first iterations, so added iterations refine a converged
            solution instead of throwing it away.
        tolerance: a level stops when its mean loss over the last 10 iterations improved on the
            10 before by less than ``tolerance`` (relative; :func:`~regedu.classical.common.converged`).
            ``None``: ``1e-4`` with the default iterations, ``0`` (never stop early) with explicit ones.
        voxel_size: mm per spatial axis (e.g. a loaded volume's ``spacing``) for the automatic
            pyramid: anisotropic images are coarsened along their fine axes first. ``None``:
            isotropic.
        callback: called as ``callback(level, iteration, loss)`` after every step.
        progress: tqdm bar: ``True``, ``False``, or ``None`` (only for runs over 2 s).
        device: where to run (default: ``moving``'s device).

    Returns:
        :class:`RegistrationResult` with ``affine`` ``(B, ndim, ndim + 1)``, ``disp`` its
        displacement field and ``warped = warp(moving, disp)``; ``parameters`` holds the
        angles, log-scales, shears and translation (fractions of the extent).
    """
    check_choice(transform, "transform", TRANSFORMS)
    check_choice(init, "init", ("com", "identity"))
    lr = check_number(lr, "lr", strict=True)
    loss_of = similarity_function(similarity, window, bins)
    with PyramidRun(moving, fixed, transform, levels=levels, iterations=iterations, schedule=SCHEDULE,
                    voxel_size=voxel_size, tolerance=tolerance, callback=callback, progress=progress,
                    device=device) as run:
        params = initial_parameters(run.moving, run.fixed, transform, init)
        started = False  # whether a coarser level has moved the parameters yet
        for level, level_lr in zip(run.levels(), level_learning_rates(lr, run.shapes), strict=True):
            if level.iterations == 0:
                continue
            warmup = min(WARMUP, level.iterations // 4) if started else 0
            level.minimise(partial(_level_loss, params, level, loss_of), params.tensors(), level_lr,
                           warmup=warmup, reported_lr=lr)
            started = True
    with torch.no_grad():
        A = params.to_affine(run.shape)
    named = {"angles": params.angles, "translation": params.translation,
             "log_scales": params.log_scales, "shears": params.shears}
    parameters = {k: v.detach() for k, v in named.items() if v is not None}
    return run.result(kernels.affine_to_disp(A, run.shape), parameters, affine=A)
