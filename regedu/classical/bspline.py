"""Free-form deformation: a displacement given by a coarse grid of control points.

Control points sit every ``spacing`` voxels of the fixed grid; control point ``k``
along an axis sits at ``x_k = (k - 1) * spacing`` (the first one just outside the
image, so that every voxel has its four neighbours on each side). The displacement
at ``x`` blends the control displacements ``c_k`` with the cubic B-spline ``B``:

    disp(x) = sum_k B(x / spacing - (k - 1)) c_k          (one axis; a product per axis in 2D/3D)

``B`` is smooth (two continuous derivatives), non-zero on four control points only,
and its shifted copies sum to 1 and reproduce straight lines: a constant control
grid gives a constant field, a linear one a linear field. The blend is separable,
so the field is computed one axis at a time, each a matrix product with a
``(voxels, control points)`` matrix of basis weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import partial

import torch

from .. import losses
from ..checks import check_disp, check_positive_int
from ..warps import warp
from .common import (
    RegistrationResult,
    affine_on_grid,
    after_affine,
    check_initial_affine,
    check_number,
    check_voxel_size,
    convergence_tolerance,
    downsample,
    normalise_intensities,
    optimise_level,
    plan_pyramid,
    prepare_pair,
    progress_bar,
    regulariser_function,
    similarity_function,
    warp_in_loop,
)
from .refine import refine_dense

__all__ = ["register_bspline", "cubic_bspline", "control_grid_shape", "bspline_to_disp", "default_spacing"]

SCHEDULE = (50, 50, 20)  # default iterations per level, coarse to fine (see register_bspline)
SPACING_VOXELS = 8  # default control-point spacing without a voxel size: tuned on 2 mm brains
SPACING_MM = 16.0  # ... the same distance in millimetres, used when the voxel size is known
REFINE_WINDOW = 5  # default NCC window of the dense refinement (see register_bspline's `refine`)
REFINE_WEIGHT = 1.0  # default weight of its diffusion regulariser


def cubic_bspline(t: torch.Tensor) -> torch.Tensor:
    """The cubic B-spline ``B(t)``: ``(4 - 6 t^2 + 3 |t|^3) / 6`` for ``|t| < 1``,
    ``(2 - |t|)^3 / 6`` for ``1 <= |t| < 2``, 0 beyond. Elementwise, same shape as ``t``."""
    a = t.abs()
    inner = (4 - 6 * a**2 + 3 * a**3) / 6
    outer = (2 - a).clamp(min=0) ** 3 / 6
    return torch.where(a < 1, inner, outer)


def _spacings(spacing, ndim: int) -> tuple[float, ...]:
    """``spacing`` (one number or one per axis, voxels) as a tuple of ``ndim`` positive floats."""
    values = [spacing] * ndim if isinstance(spacing, (int, float)) else list(spacing)
    if len(values) != ndim:
        raise ValueError(f"`spacing` must be one number or {ndim} numbers (one per axis), got {spacing!r}.")
    return tuple(check_number(s, "spacing", minimum=0, strict=True) for s in values)


def control_grid_shape(shape: Sequence[int], spacing) -> tuple[int, ...]:
    """Number of control points per axis for an image ``shape`` and control ``spacing`` (voxels).

    Points at ``-spacing, 0, spacing, ...`` up to at least ``n - 1 + spacing``:
    ``ceil((n - 1) / spacing) + 3`` per axis.
    """
    spacings = _spacings(spacing, len(shape))
    return tuple(math.ceil((n - 1) / s) + 3 for n, s in zip(shape, spacings, strict=True))


def default_spacing(ndim: int, voxel_size=None) -> tuple[float, ...]:
    """The default control-point spacing in voxels per axis: ``SPACING_VOXELS`` (8) without a voxel
    size, else ``SPACING_MM`` (16 mm, the same on the 2 mm images it was tuned on) in each axis' voxels,
    so that a 1 mm image gets 16 voxels and the thick slices of a 1 x 1 x 3 mm volume about 5."""
    if voxel_size is None:
        return (float(SPACING_VOXELS),) * ndim
    return tuple(SPACING_MM / size for size in check_voxel_size(voxel_size, ndim))


def _basis_matrix(positions: torch.Tensor, count: int, spacing: float) -> torch.Tensor:
    """Weights ``(len(positions), count)`` of each control point at each position (voxels)."""
    knots = torch.arange(count, device=positions.device, dtype=positions.dtype) - 1
    return cubic_bspline(positions.unsqueeze(1) / spacing - knots.unsqueeze(0))


def _basis_matrices(control_shape, spacings, shape, sample_shape, device, dtype) -> list[torch.Tensor]:
    """One basis matrix per axis, sampling the field at ``sample_shape`` points spread over ``shape``.

    A coarser ``sample_shape`` (a pyramid level) samples the same extent: point ``i``
    of ``m`` sits at ``i * (n - 1) / (m - 1)`` voxels of the fine grid.
    """
    matrices = []
    for count, s, n, m in zip(control_shape, spacings, shape, sample_shape, strict=True):
        positions = torch.linspace(0, n - 1, m, device=device, dtype=dtype)
        matrices.append(_basis_matrix(positions, count, s))
    return matrices


def _blend(control: torch.Tensor, matrices: Sequence[torch.Tensor],
           value_scale: torch.Tensor) -> torch.Tensor:
    """Apply one basis matrix per spatial axis to ``control`` ``(B, ndim, *control_shape)``.

    ``value_scale`` ``(ndim,)`` converts displacements from fine-grid voxels to sample-grid voxels.
    """
    field = control
    for axis, matrix in enumerate(matrices, start=2):
        field = (field.movedim(axis, -1) @ matrix.T).movedim(-1, axis)
    return field * value_scale.view(1, -1, *([1] * len(matrices)))


def bspline_to_disp(control: torch.Tensor, spacing, shape: Sequence[int]) -> torch.Tensor:
    """Dense displacement ``(B, ndim, *shape)`` of a B-spline control grid.

    Args:
        control: ``(B, ndim, *control_shape)`` control-point displacements in voxels,
            ``control_shape == control_grid_shape(shape, spacing)``.
        spacing: distance between control points in voxels, one number or one per axis.
        shape: spatial shape of the image grid.
    """
    ndim = check_disp(control, "control")
    shape = tuple(int(n) for n in shape)
    expected = control_grid_shape(shape, spacing)
    if tuple(control.shape[2:]) != expected:
        raise ValueError(
            f"`control` must have {expected} control points for an image of shape {shape} with "
            f"spacing {spacing!r} (see control_grid_shape), got {tuple(control.shape[2:])}."
        )
    options = {"device": control.device, "dtype": control.dtype}
    matrices = _basis_matrices(expected, _spacings(spacing, ndim), shape, shape, **options)
    return _blend(control, matrices, torch.ones(ndim, **options))


def _check_window(window, ndim: int, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``window`` is one odd int or ``ndim`` odd ints."""
    try:
        losses._window_sizes(window, ndim)
    except ValueError as error:
        raise ValueError(f"`{name}`: {error}") from None


def _level_loss(control, matrices, value_scale, moving, fixed, affine, similarity, regulariser,
                weight: float) -> torch.Tensor:
    """Loss on one pyramid level: similarity after warping plus ``weight`` times the regulariser."""
    disp = _blend(control, matrices, value_scale)
    loss = similarity(fixed, warp_in_loop(moving, after_affine(disp, affine)))
    if weight > 0:
        loss = loss + weight * regulariser(disp)
    return loss


def register_bspline(moving: torch.Tensor, fixed: torch.Tensor, *, spacing=None, similarity="ncc", window=9,
                     bins: int = 32, regulariser="bending", weight: float = 1.0, levels: int | None = None,
                     iterations=None, lr: float = 0.1, tolerance: float | None = None, voxel_size=None,
                     refine: int = 0, refine_window=REFINE_WINDOW, refine_weight: float = REFINE_WEIGHT,
                     affine: torch.Tensor | None = None, callback=None, progress=None,
                     device=None) -> RegistrationResult:
    """Free-form (cubic B-spline) deformable registration.

    One control grid (``spacing`` voxels of the fixed grid apart) is optimised with
    Adam; the image pyramid goes coarse to fine, and on each level the field is the
    B-spline evaluated at that level's voxels. The defaults (after an affine stage,
    this is ``regedu.register``'s default pipeline) were tuned on 2 mm brain pairs in
    ``benchmarks/classical.py``, in 2D and 3D alike; what depends on the image adapts to it
    (levels, iterations, spacing: see below), so that any size registers with no options.

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images, 2D or 3D, same shape.
        spacing: control-point spacing in voxels (one number or one per axis): larger
            is smoother and faster, smaller follows finer detail. ``None`` (default): 8 voxels,
            or 16 mm per axis when ``voxel_size`` is given (:func:`default_spacing`).
        similarity, window, bins: see :func:`regedu.classical.register_dense`.
        regulariser, weight: penalty on the dense field at each level (``"bending"``
            by default: zero for affine motions), with ``weight >= 0``.
        levels: pyramid levels; ``None`` (default) chooses them from the image size and
            ``voxel_size`` (:func:`~regedu.classical.common.auto_pyramid`: coarsen until the largest
            axis has at most 32 voxels, never below 8 on an axis: 3 levels for a 2 mm brain, 2 for a
            33 x 41 x 25 volume), or as many as ``iterations`` has entries; an int is honoured
            exactly (an error if the image is too small for it).
        iterations: ``None`` (default): at most 50, 50, 20 iterations from the coarsest level on
            (the schedule tuned for 3 levels; a shallower pyramid drops its fine end, a deeper one
            repeats 20), each level stopping once converged; one int (every level) or one per
            level runs exactly that many.
        lr: Adam step in voxels of the full-resolution grid per iteration (the control points
            live there, so a step is the same distance on every level).
        tolerance: a level stops when its mean loss over the last 10 iterations improved on the
            10 before by less than ``tolerance`` (relative; :func:`~regedu.classical.common.converged`).
            ``None``: ``1e-4`` with the default iterations, ``0`` (never stop early) with explicit ones.
        voxel_size: mm per spatial axis (e.g. a loaded volume's ``spacing``), for the automatic
            pyramid (anisotropic images are coarsened along their fine axes first) and spacing.
            ``None``: isotropic voxels, spacing in voxels.
        refine: after the B-spline levels, at most this many iterations of a dense refinement at
            full resolution (:func:`~regedu.classical.refine.refine_dense`: one displacement per
            voxel added to the B-spline field, for detail finer than the control grid; it stops on
            convergence like a level, and a Jacobian penalty keeps it from folding). ``0``
            (default): none, a pure free-form deformation. ``regedu.register``'s default pipeline
            uses 30.
        refine_window: NCC window of the refinement (voxels; used when ``similarity="ncc"``).
        refine_weight: weight (>= 0) of the refinement field's diffusion regulariser.
        affine, callback, progress, device: see :func:`regedu.classical.register_dense`.

    Returns:
        :class:`RegistrationResult`; ``parameters["control_points"]`` is the control grid
        ``(B, ndim, *control_grid_shape(shape, spacing))`` (without the affine), and with
        ``refine``, ``parameters["refinement"]`` the dense field ``(B, ndim, *spatial)`` added to
        the B-spline's (``history`` then has one more list, the refinement's, last).
    """
    start = time.perf_counter()
    moving, fixed, ndim = prepare_pair(moving, fixed, device)
    spacings = _spacings(default_spacing(ndim, voxel_size) if spacing is None else spacing, ndim)
    weight = check_number(weight, "weight")
    lr = check_number(lr, "lr", strict=True)
    refine = check_positive_int(refine, "refine", minimum=0)
    refine_weight = check_number(refine_weight, "refine_weight")
    _check_window(refine_window, ndim, "refine_window")
    affine = check_initial_affine(affine, moving, fixed)
    shape = tuple(fixed.shape[2:])
    shapes, counts, automatic = plan_pyramid(shape, levels, iterations, SCHEDULE, voxel_size)
    tolerance = convergence_tolerance(tolerance, automatic)
    refine_similarity = similarity_function(similarity, refine_window, bins)  # before `similarity` is rebound
    similarity = similarity_function(similarity, window, bins)
    regulariser = regulariser_function(regulariser)
    moving_01, fixed_01 = normalise_intensities(moving), normalise_intensities(fixed)
    options = {"device": moving.device, "dtype": moving.dtype}

    batch = max(moving.shape[0], fixed.shape[0])
    control_shape = control_grid_shape(shape, spacings)
    control = torch.zeros(batch, ndim, *control_shape, **options, requires_grad=True)
    history = []
    with progress_bar(sum(counts) + refine, progress, "bspline") as bar:
        for level, (level_shape, count) in enumerate(zip(shapes, counts, strict=True)):
            matrices = _basis_matrices(control_shape, spacings, shape, level_shape, **options)
            value_scale = torch.tensor([(m - 1) / (n - 1) for n, m in zip(shape, level_shape, strict=True)],
                                       **options)
            level_affine = None if affine is None else affine_on_grid(affine, shape, level_shape)
            level_loss = partial(_level_loss, control, matrices, value_scale,
                                 downsample(moving_01, level_shape), downsample(fixed_01, level_shape),
                                 level_affine, similarity, regulariser, weight)
            history.append(optimise_level(level_loss, [control], count, lr, level, callback, bar,
                                          tolerance=tolerance))
        control = control.detach()
        with torch.no_grad():
            field = bspline_to_disp(control, spacings, shape)
        parameters = {"control_points": control}
        if refine > 0:
            refinement, steps = refine_dense(
                moving_01, fixed_01, field, affine, iterations=refine, weight=refine_weight, lr=lr,
                similarity=refine_similarity, tolerance=tolerance,
                level=len(shapes), bar=bar, callback=callback)
            field, parameters["refinement"] = field + refinement, refinement
            history.append(steps)

    with torch.no_grad():
        disp = after_affine(field, affine)
        warped = warp(moving, disp)
    return RegistrationResult(
        warped=warped, disp=disp, affine=affine, history=history, seconds=time.perf_counter() - start,
        method="bspline", parameters=parameters,
    )
