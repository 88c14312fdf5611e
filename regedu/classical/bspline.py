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

from ..checks import check_disp
from ..warps import warp
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

__all__ = ["register_bspline", "cubic_bspline", "control_grid_shape", "bspline_to_disp"]


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


def _level_loss(control, matrices, value_scale, moving, fixed, affine, similarity, regulariser,
                weight: float) -> torch.Tensor:
    """Loss on one pyramid level: similarity after warping plus ``weight`` times the regulariser."""
    disp = _blend(control, matrices, value_scale)
    loss = similarity(fixed, warp_in_loop(moving, after_affine(disp, affine)))
    if weight > 0:
        loss = loss + weight * regulariser(disp)
    return loss


def register_bspline(moving: torch.Tensor, fixed: torch.Tensor, *, spacing=8, similarity="ncc", window=9,
                     bins: int = 32, regulariser="bending", weight: float = 1.0, levels: int = 3,
                     iterations=(50, 50, 20), lr: float = 0.1, affine: torch.Tensor | None = None,
                     callback=None, progress=None, device=None) -> RegistrationResult:
    """Free-form (cubic B-spline) deformable registration.

    One control grid (``spacing`` voxels of the fixed grid apart) is optimised with
    Adam; the image pyramid goes coarse to fine, and on each level the field is the
    B-spline evaluated at that level's voxels. The defaults (after an affine stage,
    this is ``regedu.register``'s default pipeline) were tuned on 2 mm brain pairs in
    ``benchmarks/classical.py``, in 2D and 3D alike.

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images, 2D or 3D, same shape.
        spacing: control-point spacing in voxels (one number or one per axis): larger
            is smoother and faster, smaller follows finer detail.
        similarity, window, bins: see :func:`regedu.classical.register_dense`.
        regulariser, weight: penalty on the dense field at each level (``"bending"``
            by default: zero for affine motions), with ``weight >= 0``.
        levels, iterations, lr: pyramid levels, iterations (one int or one per level),
            Adam step in voxels per iteration.
        affine, callback, progress, device: see :func:`regedu.classical.register_dense`.

    Returns:
        :class:`RegistrationResult`; ``parameters["control_points"]`` is the control grid
        ``(B, ndim, *control_grid_shape(shape, spacing))`` (without the affine).
    """
    start = time.perf_counter()
    moving, fixed, ndim = prepare_pair(moving, fixed, device)
    spacings = _spacings(spacing, ndim)
    weight = check_number(weight, "weight")
    lr = check_number(lr, "lr", strict=True)
    counts = per_level(iterations, levels)
    affine = check_initial_affine(affine, moving, fixed)
    shape = tuple(fixed.shape[2:])
    shapes = pyramid_shapes(shape, levels)
    similarity = similarity_function(similarity, window, bins)
    regulariser = regulariser_function(regulariser)
    moving_01, fixed_01 = normalise_intensities(moving), normalise_intensities(fixed)
    options = {"device": moving.device, "dtype": moving.dtype}

    batch = max(moving.shape[0], fixed.shape[0])
    control_shape = control_grid_shape(shape, spacings)
    control = torch.zeros(batch, ndim, *control_shape, **options, requires_grad=True)
    history = []
    with progress_bar(sum(counts), progress, "bspline") as bar:
        for level, (level_shape, count) in enumerate(zip(shapes, counts, strict=True)):
            matrices = _basis_matrices(control_shape, spacings, shape, level_shape, **options)
            value_scale = torch.tensor([(m - 1) / (n - 1) for n, m in zip(shape, level_shape, strict=True)],
                                       **options)
            level_affine = None if affine is None else affine_on_grid(affine, shape, level_shape)
            level_loss = partial(_level_loss, control, matrices, value_scale,
                                 downsample(moving_01, level_shape), downsample(fixed_01, level_shape),
                                 level_affine, similarity, regulariser, weight)
            history.append(optimise_level(level_loss, [control], count, lr, level, callback, bar))

    with torch.no_grad():
        control = control.detach()
        disp = after_affine(bspline_to_disp(control, spacings, shape), affine)
        warped = warp(moving, disp)
    return RegistrationResult(
        warped=warped, disp=disp, affine=affine, history=history, seconds=time.perf_counter() - start,
        method="bspline", parameters={"control_points": control},
    )
