"""The cubic B-spline: the one basis behind free-form deformations and smooth random fields.

Control points sit every ``spacing`` voxels; control point ``k`` along an axis sits at
``x_k = (k - 1) * spacing`` (the first one just outside the image, so that every voxel has its
two neighbours on each side). The value at ``x`` blends the control values ``c_k`` with the cubic
B-spline ``B``:

    f(x) = sum_k B(x / spacing - (k - 1)) c_k          (one axis; a product per axis in 2D/3D)

``B`` is smooth (two continuous derivatives), non-zero on four control points only, and its
shifted copies sum to 1 and reproduce straight lines: constant control values give a constant
field, linear ones a linear field. The blend is separable, so a 2D or 3D field is computed one
axis at a time, each a matrix product with a ``(samples, control points)`` matrix of weights.

Used by :mod:`regedu.classical.bspline` (the registration's transform) and
:mod:`regedu.data.synthetic` (random smooth fields and images). No input checks here: the
callers check theirs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

__all__ = ["cubic_bspline", "control_point_count", "basis_matrix", "voxel_basis_matrix", "blend"]


def cubic_bspline(t: torch.Tensor) -> torch.Tensor:
    """The cubic B-spline ``B(t)``: ``(4 - 6 t^2 + 3 |t|^3) / 6`` for ``|t| < 1``,
    ``(2 - |t|)^3 / 6`` for ``1 <= |t| < 2``, 0 beyond. Elementwise, same shape as ``t``."""
    a = t.abs()
    inner = (4 - 6 * a**2 + 3 * a**3) / 6
    outer = (2 - a).clamp(min=0) ** 3 / 6
    return torch.where(a < 1, inner, outer)


def control_point_count(size: int, spacing: float) -> int:
    """Control points ``spacing`` voxels apart covering voxels ``0 .. size - 1``, with one more
    beyond each end: at ``-spacing, 0, spacing, ...`` up to at least ``size - 1 + spacing``,
    ``ceil((size - 1) / spacing) + 3``."""
    return math.ceil((size - 1) / spacing) + 3


def basis_matrix(positions: torch.Tensor, count: int, spacing: float) -> torch.Tensor:
    """Weights ``(len(positions), count)`` of each of ``count`` control points at each position
    (voxels, ``(N,)``): ``B(position / spacing - (k - 1))``. Each row sums to 1."""
    knots = torch.arange(count, device=positions.device, dtype=positions.dtype) - 1
    return cubic_bspline(positions.unsqueeze(1) / spacing - knots.unsqueeze(0))


@functools.lru_cache(maxsize=64)
def voxel_basis_matrix(size: int, spacing: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """:func:`basis_matrix` at the voxels ``0 .. size - 1`` for :func:`control_point_count`
    control points: ``(size, count)``.

    Cached (the same few sizes and spacings come back in every training batch of synthetic
    data), so the result is shared: read it, never write to it.
    """
    positions = torch.arange(size, device=device, dtype=dtype)
    return basis_matrix(positions, control_point_count(size, spacing), spacing)


def blend(control: torch.Tensor, matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Apply one basis matrix per spatial axis to control values ``(B, C, *counts)``.

    ``matrices[k]`` is ``(samples_k, counts[k])`` (from :func:`basis_matrix`); the result is
    ``(B, C, *samples)``.
    """
    out = control
    for axis, matrix in enumerate(matrices, start=2):
        out = (out.movedim(axis, -1) @ matrix.T).movedim(-1, axis)
    return out
