"""The unchecked fast path: the computations behind regedu's checked transforms and losses.

Every public function of :mod:`regedu.warps` first checks its inputs (types, shapes, dtypes,
finite values; a finiteness check waits for the GPU) and then calls one of the kernels here
(the losses of :mod:`regedu.losses` likewise, for the pieces they share with other modules).
Code that calls them hundreds of times on inputs it has already checked once (a network's forward
pass, an iteration of a classical method, a training step) calls the kernels directly:

==============================  ==========================================
checked (user-facing)           unchecked kernel (loops)
==============================  ==========================================
``warps.warp`` (bilinear)       :func:`resample`
``warps.compose``               :func:`compose`
``warps.integrate``             :func:`integrate`
``warps.resize_disp``           :func:`resize_disp`
``warps.affine_to_disp``        :func:`affine_to_disp`
``warps.disp_to_grid``          :func:`voxels_to_grid`
``warps.grid_to_disp``          :func:`grid_to_voxels`
``data.pad_to_multiple``        :func:`pad_to_multiple`
``data.unpad``                  :func:`crop`
==============================  ==========================================

plus the small pieces several modules share: :func:`after_affine` (a field followed by an affine),
:func:`one_hot` (label map to indicator maps), :func:`broadcast_batch` (a batch of 1 against
a batch of B), and :func:`standardise` and :func:`squared_correlation`, the two halves of NCC
around its box means (:mod:`regedu.filters`).

The contract is the checked function's, and the caller guarantees it: floating tensors of the
shapes the docstrings give, on one device, finite. Nothing here raises a friendly error; a wrong
input gives torch's own error or a wrong answer. The conventions are docs/DESIGN.md's (see
:mod:`regedu.warps`): fields ``(B, ndim, *spatial)`` in voxels, channel ``k`` along tensor axis
``k``, warps pull, ``compose(u, v)(x) = v(x) + u(x + v(x))``.

``torch.nn.functional.grid_sample`` wants the opposite axis order and coordinates normalised to
``[-1, 1]``; that translation happens here (:func:`voxels_to_grid`, :func:`points_to_grid`,
:func:`grid_to_voxels`) and nowhere else.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "identity_grid",
    "voxels_to_grid",
    "points_to_grid",
    "grid_to_voxels",
    "resample",
    "compose",
    "integrate",
    "resize_disp",
    "downsample_image",
    "affine_to_disp",
    "after_affine",
    "one_hot",
    "broadcast_batch",
    "Padding",
    "padding_for",
    "pad_to_multiple",
    "crop",
    "standardise",
    "squared_correlation",
    "sample_at_points",
]


# ---------------------------------------------------------------------------
# grids, and the one place where grid_sample's coordinates appear
# ---------------------------------------------------------------------------


def identity_grid(shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Voxel-index coordinates of every voxel: ``(ndim, *shape)``.

    ``identity_grid((H, W))[k, i, j]`` is the index along axis ``k`` of voxel
    ``(i, j)``, so ``[0, i, j] == i`` and ``[1, i, j] == j``.
    """
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def _grid_scale(shape: Sequence[int], device, dtype) -> torch.Tensor:
    """Per-axis factor from voxels to grid_sample's [-1, 1] units, in tensor order.

    An axis of length 1 has no extent; its factor is 0 so it samples its only voxel.
    """
    return torch.tensor([2.0 / (n - 1) if n > 1 else 0.0 for n in shape], device=device, dtype=dtype)


def voxels_to_grid(disp: torch.Tensor) -> torch.Tensor:
    """Displacement in voxels ``(B, ndim, *spatial)`` -> sampling grid for grid_sample.

    Returns ``(B, *spatial, ndim)`` with the last axis in grid_sample's reversed
    (x, y[, z]) order and values normalised to ``[-1, 1]`` (align_corners=True).
    Built one axis at a time from a 1-D ramp that broadcasts (see
    :func:`_axis_in_grid_units`), so no full identity grid is ever allocated.
    """
    shifts = disp.unbind(1)  # ndim tensors (B, *spatial), one per axis, tensor order
    columns = [_axis_in_grid_units(shifts[axis], axis) for axis in reversed(range(len(shifts)))]
    return torch.stack(columns, dim=-1)


def _axis_in_grid_units(shift: torch.Tensor, axis: int) -> torch.Tensor:
    """Sampling position along spatial ``axis`` in grid units, for a shift ``(B, *spatial)`` in voxels.

    On an axis of ``n`` voxels, voxel ``i`` moved by ``d`` sits at
    ``-1 + (i + d) * 2 / (n - 1)``. An axis of length 1 has no extent: every
    position is 0, the centre of its only voxel.
    """
    n = shift.shape[1 + axis]
    if n == 1:
        return torch.zeros_like(shift)
    ramp_shape = [1] * shift.dim()
    ramp_shape[1 + axis] = n
    ramp = torch.linspace(-1.0, 1.0, n, device=shift.device, dtype=shift.dtype).view(ramp_shape)
    return torch.add(ramp, shift, alpha=2.0 / (n - 1))


def points_to_grid(points: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Voxel positions ``(B, ndim, *out)`` on a grid ``shape`` -> grid_sample grid ``(B, *out, ndim)``.

    Index ``p`` on an axis of ``n`` voxels sits at ``-1 + p * 2 / (n - 1)``; an axis of length 1
    has no extent, so every position on it reads its only voxel.
    """
    scale = _grid_scale(shape, points.device, points.dtype).view(1, -1, *([1] * (points.dim() - 2)))
    grid = torch.where(scale > 0, points * scale - 1.0, torch.zeros_like(points))
    return grid.movedim(1, -1).flip(-1)


def grid_to_voxels(grid: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`voxels_to_grid`: grid_sample grid ``(B, *spatial, ndim)`` -> displacement
    ``(B, ndim, *spatial)`` in voxels."""
    spatial = grid.shape[1:-1]
    base = _identity_in_grid_units(spatial, grid.device, grid.dtype)
    scale = _grid_scale(spatial, grid.device, grid.dtype)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    disp_grid = (grid - base).flip(-1).movedim(-1, 1)  # (B, ndim, *spatial), tensor order
    view = (1, -1) + (1,) * len(spatial)
    return disp_grid / safe.view(view) * (scale > 0).to(grid.dtype).view(view)


def _identity_in_grid_units(spatial: Sequence[int], device, dtype) -> torch.Tensor:
    """Identity sampling grid in grid_sample units: ``(*spatial, ndim)``, reversed axes."""
    axes = [
        torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) if n > 1
        else torch.zeros(1, device=device, dtype=dtype)
        for n in spatial
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)


# ---------------------------------------------------------------------------
# warping, composing, integrating, resizing fields
# ---------------------------------------------------------------------------


def resample(image: torch.Tensor, disp: torch.Tensor, mode: str = "bilinear",
             padding: str = "border") -> torch.Tensor:
    """Pull ``image`` ``(B, C, *spatial)`` through ``disp`` ``(B, ndim, *spatial)`` (voxels, the
    image's dtype): ``out(x) = image(x + disp(x))``. A batch of 1 broadcasts on either side.

    ``mode`` and ``padding`` are grid_sample's (``"bilinear"``/``"nearest"``; ``"border"``,
    ``"zeros"``, ``"reflection"``); :func:`regedu.warps.warp` is the checked form, whose
    ``"nearest"`` also breaks ties the way ITK does.
    """
    image, grid = broadcast_batch(image, voxels_to_grid(disp))
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=True)


def compose(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Displacement of "warp by ``u``, then by ``v``": ``v(x) + u(x + v(x))``, both
    ``(B, ndim, *spatial)`` in voxels (checked form: :func:`regedu.warps.compose`)."""
    return v + resample(u, v)


def integrate(velocity: torch.Tensor, steps: int) -> torch.Tensor:
    """Displacement of ``exp(velocity)`` by ``steps`` scaling-and-squaring steps
    (checked form, with the explanation: :func:`regedu.warps.integrate`)."""
    disp = velocity / (2 ** steps)
    for _ in range(steps):
        disp = disp + resample(disp, disp)
    return disp


def resize_disp(disp: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A field ``(B, ndim, *spatial)`` resampled to the grid ``shape`` with its values rescaled
    (``d`` voxels on ``n`` become ``d (m - 1) / (n - 1)`` on ``m``); ``disp`` itself when the grid
    is already ``shape``. Checked form: :func:`regedu.warps.resize_disp`."""
    shape = tuple(shape)
    old = disp.shape[2:]
    if tuple(old) == shape:
        return disp
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    resized = F.interpolate(disp, size=shape, mode=mode, align_corners=True)
    factors = [(m - 1) / (n - 1) if n > 1 else 1.0 for m, n in zip(shape, old, strict=True)]
    factors = torch.tensor(factors, device=disp.device, dtype=disp.dtype)
    return resized * factors.view(1, -1, *([1] * len(shape)))


_AVG_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}


def downsample_image(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Shrink ``(B, C, *spatial)`` by an integer ``factor`` per axis, on the same geometry as fields.

    Sizes must be multiples of ``factor``; the result is ``(B, C, *(spatial / factor))``. The image
    is first smoothed with a ``factor + 1`` wide box (against aliasing), then sampled with
    ``align_corners=True`` linear interpolation: first and last voxels stay aligned, the convention
    :func:`resize_disp` uses for fields, so a downsampled image and a resized field match.
    """
    if factor == 1:
        return image
    ndim = image.dim() - 2
    width = factor + 1
    smooth = _AVG_POOL[ndim](image, width, stride=1, padding=width // 2, count_include_pad=False)
    size = [n // factor for n in image.shape[2:]]
    mode = "bilinear" if ndim == 2 else "trilinear"
    return F.interpolate(smooth, size=size, mode=mode, align_corners=True)


# ---------------------------------------------------------------------------
# affines as fields
# ---------------------------------------------------------------------------


def affine_to_disp(A: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Dense displacement ``(B, ndim, *shape)`` of the affine ``A = [M | t]`` ``(B, ndim, ndim + 1)``
    on voxel indices: ``M x + t - x`` at every voxel. Checked form: :func:`regedu.warps.affine_to_disp`."""
    ndim = A.shape[1]
    grid = identity_grid(shape, A.device, A.dtype).reshape(ndim, -1)  # (ndim, N)
    linear = A[:, :, :ndim] - torch.eye(ndim, device=A.device, dtype=A.dtype)
    disp = linear @ grid + A[:, :, ndim:]  # (B, ndim, N)
    return disp.reshape(A.shape[0], ndim, *shape)


def after_affine(disp: torch.Tensor, A: torch.Tensor | None) -> torch.Tensor:
    """Total displacement of "move by ``disp``, then by the affine ``A``" (both on one grid).

    The sampling location is ``A(x + disp(x)) = M x + t + M disp(x)``, so the total is
    ``affine_to_disp(A) + M disp``: exactly ``compose(affine_to_disp(A), disp)`` but without
    interpolating the affine field (exact, also outside the image). ``disp`` ``(B, ndim, *spatial)``
    in voxels, ``A`` ``(B, ndim, ndim + 1)`` (either batch may be 1); ``A=None`` means no affine:
    ``disp`` is returned.
    """
    if A is None:
        return disp
    ndim = disp.shape[1]
    batch = max(disp.shape[0], A.shape[0])
    linear = A[:, :, :ndim].expand(batch, ndim, ndim)
    moved = torch.einsum("bij,bj...->bi...", linear, disp.expand(batch, *disp.shape[1:]))
    return affine_to_disp(A, disp.shape[2:]) + moved


# ---------------------------------------------------------------------------
# label maps and batches
# ---------------------------------------------------------------------------


def one_hot(label_map: torch.Tensor, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Integer label map ``(B, 1, *spatial)`` -> indicator maps ``(B, L, *spatial)`` of ``dtype``:
    channel ``l`` is 1 where the map equals ``values[l]`` (``values`` ``(L,)``, the map's dtype)."""
    view = (1, -1) + (1,) * (label_map.dim() - 2)
    return (label_map == values.view(view)).to(dtype)


def broadcast_batch(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors with a batch of 1 expanded to the largest batch among them (a view, no copy);
    a tensor that already has that batch is returned as it is."""
    batch = max(t.shape[0] for t in tensors)
    return tuple(t if t.shape[0] == batch else t.expand(batch, *t.shape[1:]) for t in tensors)


# ---------------------------------------------------------------------------
# padding to a network's factor, and back
# ---------------------------------------------------------------------------


class Padding(NamedTuple):
    """What :func:`pad_to_multiple` added along each spatial axis: voxels ``before`` and ``after``."""

    before: tuple[int, ...]
    after: tuple[int, ...]


def padding_for(spatial: Sequence[int], multiple: int) -> Padding:
    """The :class:`Padding` that brings each size of ``spatial`` up to the next multiple of ``multiple``.

    The extra voxels are split between both ends (one more at the end when odd), so the image
    stays centred in the padded grid.
    """
    total = [-int(n) % multiple for n in spatial]
    before = tuple(t // 2 for t in total)
    return Padding(before, tuple(t - b for t, b in zip(total, before, strict=True)))


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "constant",
                    value: float = 0.0) -> tuple[torch.Tensor, Padding]:
    """Pad ``x`` ``(B, C, *spatial)`` so every spatial size is a multiple of ``multiple``.

    ``mode`` is ``"constant"`` (fill with ``value``) or ``"replicate"`` (repeat the edge voxel).
    Returns ``(padded, padding)``; ``crop(padded, padding)`` gives ``x`` back exactly. When no axis
    needs padding, ``padded`` is ``x`` itself. Checked form: :func:`regedu.data.pad_to_multiple`.
    """
    padding = padding_for(x.shape[2:], multiple)
    if not any(padding.before) and not any(padding.after):
        return x, padding
    flat = [amount for b, a in zip(reversed(padding.before), reversed(padding.after), strict=True)
            for amount in (b, a)]  # F.pad lists the last axis first
    if mode == "constant":
        return F.pad(x, flat, mode="constant", value=value), padding
    return F.pad(x, flat, mode=mode), padding


def crop(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on any ``(B, C, *spatial)`` tensor on the padded grid (a view).

    A displacement in voxels needs no rescaling: cropping keeps the voxel size.
    """
    if not any(padding.before) and not any(padding.after):
        return x
    sizes = x.shape[2:]
    return x[(..., *(slice(b, n - a) for b, a, n in zip(padding.before, padding.after, sizes, strict=True)))]


# ---------------------------------------------------------------------------
# correlation: the pieces of NCC (regedu.losses.ncc, global_ncc; classical LocalNCC)
# ---------------------------------------------------------------------------


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Give each image ``(B, C, *spatial)`` zero mean and unit variance (per batch item and channel).

    Correlation does not change under ``a * x + b``, but ``eps`` and rounding do:
    after this step ``eps`` is relative to each image's global variance, whatever
    the intensity units, and the local variances ``mean(x**2) - mean(x)**2`` lose
    fewer digits. The ``1e-12`` keeps a constant image constant and its gradient finite.
    """
    spatial = tuple(range(2, x.dim()))
    centred = x - x.mean(dim=spatial, keepdim=True)
    return centred * torch.rsqrt(centred.square().mean(dim=spatial, keepdim=True) + 1e-12)


def squared_correlation(mean_a: torch.Tensor, mean_b: torch.Tensor, mean_aa: torch.Tensor,
                        mean_bb: torch.Tensor, mean_ab: torch.Tensor, eps: float) -> torch.Tensor:
    """Squared correlation ``cov**2 / (var_a * var_b + eps)`` from the means of ``a, b, a*a, b*b, a*b``.

    The means may be local (box means, :func:`regedu.losses.ncc`) or global
    (:func:`regedu.losses.global_ncc`). The result is in ``[0, 1]`` up to rounding. Variances are
    clamped at 0 (rounding can make them slightly negative) and ``eps`` keeps flat regions
    (both variances 0) at a value of 0 with a finite gradient. No square root is
    taken, so no infinite derivative appears.
    """
    cov = mean_ab - mean_a * mean_b
    var_a = (mean_aa - mean_a.square()).clamp(min=0)
    var_b = (mean_bb - mean_b.square()).clamp(min=0)
    return cov.square() / (var_a * var_b + eps)


def sample_at_points(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``field`` ``(B, C, *spatial)`` at ``points`` ``(B, N, ndim)`` -> ``(B, N, C)``.

    Points are voxel coordinates inside the grid. Each value is the weighted
    sum of the ``2**ndim`` voxels around the point, the weight of a corner
    being the product over axes of ``1 - distance`` to it: the same numbers
    as ``warp(..., mode="bilinear")``, for scattered points instead of a grid.
    """
    spatial = field.shape[2:]
    last_index = torch.tensor(spatial, device=points.device) - 1
    lower = points.floor().long().clamp(min=0)
    upper = torch.minimum(lower + 1, last_index)
    fraction = points - lower.to(points.dtype)
    strides = [math.prod(spatial[axis + 1:]) for axis in range(len(spatial))]
    flat = field.flatten(2)  # (B, C, V): voxel (i, j[, k]) sits at i * stride_0 + j * stride_1 (+ k)

    result = torch.zeros(points.shape[:2] + field.shape[1:2], device=field.device, dtype=field.dtype)
    for corner in itertools.product((0, 1), repeat=len(spatial)):
        index = sum((upper if up else lower)[..., axis] * strides[axis] for axis, up in enumerate(corner))
        weight = math.prod(fraction[..., axis] if up else 1 - fraction[..., axis]
                           for axis, up in enumerate(corner))
        values = flat.gather(2, index.unsqueeze(1).expand(-1, field.shape[1], -1))  # (B, C, N)
        result = result + weight.unsqueeze(-1) * values.transpose(1, 2)
    return result
