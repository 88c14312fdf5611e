"""Spatial transforms: grids, warping, composition, integration, affines, Jacobians.

Conventions (see docs/DESIGN.md, they hold everywhere in regedu):

* images are ``(B, C, *spatial)``; ``spatial`` is ``(H, W)`` or ``(D, H, W)``;
* a displacement field ``disp`` is ``(B, ndim, *spatial)`` **in voxels**, and
  channel ``k`` moves along spatial axis ``k`` (tensor order, not x/y/z);
* voxel centres sit at integer indices ``0 .. N-1``;
* warping *pulls*: ``warp(moving, disp)(x) = moving(x + disp(x))``;
* ``compose(u, v)(x) = v(x) + u(x + v(x))``, so
  ``warp(warp(img, u), v) == warp(img, compose(u, v))``;
* an affine ``A`` is ``(B, ndim, ndim + 1)`` acting on voxel indices of the
  fixed grid: the sampling location is ``y = A[:, :, :ndim] @ x + A[:, :, ndim]``.

Each function checks its inputs, then computes with the unchecked kernels of :mod:`regedu.kernels`
(``warp`` with ``resample``; ``compose``, ``integrate``, ``resize_disp``, ``affine_to_disp`` with
their namesakes): the fast path that models, classical loops and training call directly.
``torch.nn.functional.grid_sample`` wants the opposite axis order and coordinates normalised to
``[-1, 1]``; that translation happens in :mod:`regedu.kernels` (``voxels_to_grid``,
``points_to_grid``, ``grid_to_voxels``) and nowhere else. Nearest-neighbour sampling does not use
grid_sample at all (see :func:`_nearest_index`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import kernels
from .checks import (
    check_batch,
    check_choice,
    check_disp,
    check_finite,
    check_floating,
    check_image,
    check_positive_int,
    check_tensor,
)
from .deprecation import renamed_keyword
from .kernels import identity_grid  # defined with the kernels; part of this module's API

__all__ = [
    "identity_grid",
    "warp",
    "warp_labels",
    "sample",
    "compose",
    "integrate",
    "affine_to_disp",
    "affine_identity",
    "rotation",
    "scaling",
    "shear",
    "translation",
    "compose_affine",
    "resize_disp",
    "jacobian_det",
    "disp_to_mm",
    "disp_to_grid",
    "grid_to_disp",
]

_INTERPOLATION = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest"}
_PADDING = ("border", "zeros", "reflection")


# ---------------------------------------------------------------------------
# grid_sample's normalised grids, to compare with libraries that store them
# ---------------------------------------------------------------------------


def disp_to_grid(disp: torch.Tensor) -> torch.Tensor:
    """Public form of the conversion to grid_sample: ``(B, ndim, *s)`` -> ``(B, *s, ndim)``.

    Useful to compare with libraries that store normalised grids.
    """
    check_disp(disp)
    return kernels.voxels_to_grid(disp)


def grid_to_disp(grid: torch.Tensor) -> torch.Tensor:
    """Convert a grid_sample grid ``(B, *spatial, ndim)`` to a displacement in voxels."""
    check_tensor(grid, "grid")
    if grid.dim() not in (4, 5) or grid.shape[-1] != grid.dim() - 2:
        raise ValueError(
            f"`grid` must have shape (B, H, W, 2) or (B, D, H, W, 3), got {tuple(grid.shape)}."
        )
    check_floating(grid, "grid")
    return kernels.grid_to_voxels(grid)


# ---------------------------------------------------------------------------
# warping
# ---------------------------------------------------------------------------


def warp(image: torch.Tensor, disp: torch.Tensor, mode: str = "bilinear",
         padding: str = "border") -> torch.Tensor:
    """Pull ``image`` through ``disp``: ``out(x) = image(x + disp(x))``.

    Args:
        image: ``(B, C, *spatial)`` floating tensor.
        disp: ``(B, ndim, *spatial)`` displacement in voxels (batch 1 broadcasts).
        mode: ``"bilinear"`` (trilinear in 3D) or ``"nearest"`` (a copy of the nearest voxel; a
            point exactly half-way goes to the higher index, like ITK: see :func:`_nearest_index`).
        padding: value outside the image: ``"border"`` repeats the edge voxel,
            ``"zeros"`` gives 0, ``"reflection"`` mirrors.

    Returns:
        ``(B, C, *spatial)``, same dtype and device as ``image``; differentiable
        with respect to both ``image`` and ``disp`` (bilinear mode).
    """
    ndim = check_image(image, "image")
    check_floating(image, "image")
    check_disp(disp, "disp", ndim=ndim, spatial=image.shape[2:])
    check_batch(image, disp, "image", "disp")
    check_choice(mode, "mode", list(_INTERPOLATION))
    check_choice(padding, "padding", _PADDING)
    check_finite(image, "image")
    check_finite(disp, "disp")
    if _INTERPOLATION[mode] == "nearest":
        return _nearest(image, disp, padding)
    return kernels.resample(image, disp.to(image.dtype), _INTERPOLATION[mode], padding)


# ---------------------------------------------------------------------------
# nearest neighbour, with ITK's rule for ties
# ---------------------------------------------------------------------------
#
# grid_sample's "nearest" rounds coordinates that it has normalised to [-1, 1] and back:
# a sampling point exactly half-way between two voxels comes out a hair above or below the
# half, so ties go either way from one voxel to the next (a +0.5 shift of the labels 1..12
# dropped some labels and doubled others). Here the position stays in voxel indices, where
# ``i + 0.5`` is exact, and is rounded half up like ITK's NearestNeighborInterpolateImageFunction
# (itk::Math::Round = RoundHalfIntegerUp: 1.5 -> 2, -1.5 -> -1); the voxel is then read by index.


def _axis_positions(shift: torch.Tensor, axis: int) -> torch.Tensor:
    """Sampling position along spatial ``axis`` in voxel indices: ``i + shift``, ``(B, *spatial)``."""
    n = shift.shape[1 + axis]
    ramp_shape = [1] * shift.dim()
    ramp_shape[1 + axis] = n
    return shift + torch.arange(n, device=shift.device, dtype=shift.dtype).view(ramp_shape)


def _reflect(position: torch.Tensor, n: int) -> torch.Tensor:
    """Fold positions (voxel indices) into ``[0, n - 1]`` by mirroring at the end voxel centres,
    like grid_sample's ``"reflection"`` padding with align_corners=True."""
    if n == 1:
        return torch.zeros_like(position)
    period = 2 * (n - 1)
    folded = torch.remainder(position.abs(), period)
    return torch.where(folded > n - 1, period - folded, folded)


def _nearest_index(positions, shape: Sequence[int], padding: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flat index of the voxel nearest to every sampling point, and whether it lies inside.

    Args:
        positions: one ``(B, *out)`` tensor per axis of ``shape`` (any iterable, consumed once):
            the sampling positions in voxel indices, float32 or float64, freshly allocated
            (they are modified in place).
        shape: spatial shape of the image that is read.
        padding: ``"border"`` (clamp to the edge voxel), ``"zeros"`` or ``"reflection"``.

    Returns:
        ``(B, N)`` int64 indices into the flattened spatial axes of ``shape`` (C order; ``N``
        points), and for ``"zeros"`` a ``(B, N)`` bool mask of the points whose nearest voxel is
        in the image (``None`` otherwise). Ties round half up: ``floor(position + 0.5)``.
    """
    flat, inside = None, None
    for position, n in zip(positions, shape, strict=True):
        if padding == "reflection":
            position = _reflect(position, n)
        index = position.add_(0.5).floor_()
        if padding == "zeros":
            valid = (index >= 0) & (index <= n - 1)
            inside = valid if inside is None else inside.logical_and_(valid)
        index = index.clamp_(0, n - 1).long()
        flat = index if flat is None else flat.mul_(n).add_(index)
    return flat.flatten(1), None if inside is None else inside.flatten(1)


def _working_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 or float64: half-precision coordinates cannot hold ``i + 0.5`` exactly."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _gather_nearest(image: torch.Tensor, index: torch.Tensor, inside: torch.Tensor | None,
                    out_shape: Sequence[int]) -> torch.Tensor:
    """Read ``image`` ``(B or 1, C, *spatial)`` at flat voxel ``index`` ``(B or 1, N)``; 0 where
    ``inside`` is False. Returns ``(B, C, *out_shape)``, ``image``'s dtype."""
    batch, channels = max(image.shape[0], index.shape[0]), image.shape[1]
    values = image.flatten(2).expand(batch, channels, -1)
    out = torch.gather(values, 2, index.unsqueeze(1).expand(batch, channels, -1))
    if inside is not None:
        out = out.masked_fill(~inside.unsqueeze(1), 0)
    return out.view(batch, channels, *out_shape)


def _nearest(image: torch.Tensor, disp: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Unchecked nearest-neighbour pull of ``image`` ``(B, C, *spatial)`` (any dtype, labels too)
    through ``disp`` ``(B, ndim, *spatial)`` in voxels; a batch of 1 broadcasts on either side.

    Every output voxel is an exact copy of one input voxel (or 0 outside, with ``"zeros"``),
    chosen by :func:`_nearest_index`. Same dtype and device as ``image``; differentiable with
    respect to ``image`` only (the choice of voxel has no gradient).
    """
    work = _working_precision(disp.detach())  # the choice of voxel has no gradient
    positions = (_axis_positions(work[:, axis], axis) for axis in range(work.shape[1]))
    index, inside = _nearest_index(positions, image.shape[2:], padding)
    return _gather_nearest(image, index, inside, image.shape[2:])


def warp_labels(labels: torch.Tensor, disp: torch.Tensor, method: str = "nearest",
                padding: str = "border") -> torch.Tensor:
    """Warp an integer label map ``(B, 1, *spatial)`` through ``disp``.

    ``method="nearest"`` takes the label of the nearest voxel (fast, blocky); a sampling point
    exactly half-way between voxels takes the higher one, everywhere alike (ITK's rule), so a
    half-voxel shift or a 2x downsampling neither drops nor duplicates labels.
    ``method="onehot"`` warps each label's indicator bilinearly and takes the
    label with the largest interpolated value: smoother boundaries, one
    interpolation per label present. Returns labels of the input's dtype.
    """
    ndim = check_image(labels, "labels")
    check_disp(disp, "disp", ndim=ndim, spatial=labels.shape[2:])
    check_batch(labels, disp, "labels", "disp")
    check_choice(method, "method", ("nearest", "onehot"))
    check_choice(padding, "padding", _PADDING)
    if labels.shape[1] != 1:
        raise ValueError(
            f"`labels` must have one channel (B, 1, *spatial), got {tuple(labels.shape)}. "
            f"For one-hot maps use warp(one_hot.float(), disp) and take the argmax."
        )
    check_finite(disp, "disp")
    dtype = disp.dtype
    if method == "nearest":
        return _nearest(labels, disp, padding)
    values = torch.unique(labels)
    warped = kernels.resample(kernels.one_hot(labels, values, dtype), disp, "bilinear", padding)
    return values[warped.argmax(dim=1, keepdim=True)].to(labels.dtype)


# ---------------------------------------------------------------------------
# sampling at any positions: an output grid that is not the image's
# ---------------------------------------------------------------------------


def _nearest_at(image: torch.Tensor, points: torch.Tensor, padding: str) -> torch.Tensor:
    """Unchecked nearest-neighbour read of ``image`` ``(B, C, *spatial)`` (any dtype) at ``points``
    ``(B, ndim, *out)`` in its voxel indices, with :func:`_nearest`'s rule (ties round half up)."""
    work = _working_precision(points.detach())
    positions = (work[:, axis].clone() for axis in range(work.shape[1]))
    index, inside = _nearest_index(positions, image.shape[2:], padding)
    return _gather_nearest(image, index, inside, points.shape[2:])


def sample(image: torch.Tensor, points: torch.Tensor, mode: str = "bilinear",
           padding: str = "border") -> torch.Tensor:
    """Read ``image`` at voxel positions of its own grid: ``out(x) = image(points(x))``.

    The general form of :func:`warp`, for an output grid that is not the image's:
    ``warp(image, disp) == sample(image, identity_grid(shape) + disp)``. It interpolates
    once whatever the two grids, so a map between grids (two NIfTI headers, see
    :func:`regedu.data.resample_like`) and a registration's field are applied together.

    Args:
        image: ``(B, C, *spatial)``: floating, or any dtype (a label map) with ``mode="nearest"``.
        points: ``(B, ndim, *out)`` floating positions in voxel indices of ``image``'s grid,
            channel ``k`` along tensor axis ``k`` (a batch of 1 broadcasts); ``out`` is any
            spatial shape of ``image``'s dimension.
        mode: ``"bilinear"`` (trilinear in 3D) or ``"nearest"`` (ties round half up, like
            :func:`warp` and ITK; the output is an exact copy of input voxels).
        padding: value outside the image: ``"border"``, ``"zeros"`` or ``"reflection"``.

    Returns:
        ``(B, C, *out)``, same dtype and device as ``image``.
    """
    ndim = check_image(image, "image")
    check_disp(points, "points", ndim=ndim)
    check_batch(image, points, "image", "points")
    check_choice(mode, "mode", list(_INTERPOLATION))
    check_choice(padding, "padding", _PADDING)
    check_finite(points, "points")
    points = points.to(image.device)
    if _INTERPOLATION[mode] == "nearest":
        return _nearest_at(image, points, padding)
    check_floating(image, "image")
    grid = kernels.points_to_grid(points.to(image.dtype), image.shape[2:])
    image, grid = kernels.broadcast_batch(image, grid)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def compose(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Displacement of "apply ``v`` then ``u``": ``compose(u, v)(x) = v(x) + u(x + v(x))``.

    With pulling warps, ``warp(warp(img, u), v) == warp(img, compose(u, v))`` up to
    interpolation. Both fields ``(B, ndim, *spatial)`` in voxels.
    """
    ndim = check_disp(u, "u")
    check_disp(v, "v", ndim=ndim, spatial=u.shape[2:])
    check_batch(u, v, "u", "v")
    return kernels.compose(u, v)


def integrate(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Displacement of ``exp(velocity)`` by scaling and squaring.

    A stationary velocity field ``(B, ndim, *spatial)`` (voxels per unit time)
    is scaled by ``1 / 2**steps`` (small enough that ``x + v/2**steps`` is
    invertible), then composed with itself ``steps`` times:
    ``phi_{k+1} = phi_k o phi_k``. With ``steps=0`` the velocity is returned as
    the displacement. The result is diffeomorphic when the first scaled step is
    small compared with the field's smoothness.
    """
    check_disp(velocity, "velocity")
    check_positive_int(steps, "steps", minimum=0)
    check_finite(velocity, "velocity")
    return kernels.integrate(velocity, steps)


# ---------------------------------------------------------------------------
# affine transforms
# ---------------------------------------------------------------------------


def _check_affine(A: torch.Tensor) -> int:
    check_tensor(A, "A")
    if A.dim() != 3 or A.shape[1] not in (2, 3) or A.shape[2] != A.shape[1] + 1:
        raise ValueError(
            f"`A` must have shape (B, ndim, ndim + 1), i.e. (B, 2, 3) in 2D or (B, 3, 4) "
            f"in 3D, got {tuple(A.shape)}. Add a batch axis with A[None]."
        )
    check_floating(A, "A")
    return A.shape[1]


def affine_to_disp(A: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Dense displacement ``(B, ndim, *shape)`` of the affine map ``y = M x + t``.

    ``A = [M | t]`` is ``(B, ndim, ndim + 1)`` on voxel indices; the result is
    ``y - x`` at every voxel, ready for :func:`warp`.
    """
    ndim = _check_affine(A)
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"`shape` must have {ndim} entries for a {ndim}D affine, got {shape}.")
    return kernels.affine_to_disp(A, shape)


def affine_identity(ndim: int, batch: int = 1, device=None, dtype=torch.float32) -> torch.Tensor:
    """The identity affine ``[I | 0]``: ``(batch, ndim, ndim + 1)``."""
    eye = torch.eye(ndim, ndim + 1, device=device, dtype=dtype)
    return eye.expand(batch, ndim, ndim + 1).clone()


def _about_centre(linear: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Affine ``[M | c - M c]`` that applies ``M`` about the image centre ``c``."""
    centre = torch.tensor([(n - 1) / 2 for n in shape], device=linear.device, dtype=linear.dtype)
    offset = centre - linear @ centre
    return torch.cat([linear, offset.unsqueeze(-1)], dim=-1)


def _as_batch(values, count: int, device, dtype) -> torch.Tensor:
    """Turn a number, a list of ``count`` numbers or a ``(B, count)`` tensor into ``(B, count)``."""
    t = torch.as_tensor(values, device=device, dtype=dtype)
    if t.dim() == 0:
        t = t.expand(count)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[1] != count:
        raise ValueError(
            f"expected a number, {count} numbers or a (B, {count}) tensor, got shape {tuple(t.shape)}."
        )
    return t


def _plane_rotation(angle: torch.Tensor, ndim: int, axes: tuple[int, int]) -> torch.Tensor:
    """Rotation matrices ``(B, ndim, ndim)`` by ``angle`` (B,) radians in the plane of ``axes``."""
    i, j = axes
    R = torch.eye(ndim, device=angle.device, dtype=angle.dtype).repeat(angle.shape[0], 1, 1)
    c, s = torch.cos(angle), torch.sin(angle)
    R[:, i, i], R[:, i, j], R[:, j, i], R[:, j, j] = c, -s, s, c
    return R


def rotation(angles, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Affine ``(B, ndim, ndim + 1)`` rotating about the image centre, angles in radians.

    2D: one angle, in the plane of axes (0, 1). 3D: three angles, rotations in
    the planes (1, 2), (0, 2) and (0, 1) (about axes 0, 1 and 2), applied in that
    order. Because warps pull, the *image* appears rotated by ``-angle``.
    """
    ndim = len(shape)
    planes = [(0, 1)] if ndim == 2 else [(1, 2), (0, 2), (0, 1)]
    angles = _as_batch(angles, len(planes), device, dtype)
    R = torch.eye(ndim, device=angles.device, dtype=dtype).expand(angles.shape[0], ndim, ndim)
    for k, plane in enumerate(planes):
        R = R @ _plane_rotation(angles[:, k], ndim, plane)
    return _about_centre(R, shape)


def scaling(factors, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Affine scaling each axis by ``factors`` about the image centre (factor > 1 samples farther out,
    so the image appears shrunk)."""
    ndim = len(shape)
    factors = _as_batch(factors, ndim, device, dtype)
    return _about_centre(torch.diag_embed(factors), shape)


def shear(amounts, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Affine shear about the image centre.

    2D: one amount ``s``, ``M = [[1, s], [0, 1]]``. 3D: three amounts filling
    the upper triangle ``M[0, 1], M[0, 2], M[1, 2]``.
    """
    ndim = len(shape)
    pairs = [(i, j) for i in range(ndim) for j in range(i + 1, ndim)]
    amounts = _as_batch(amounts, len(pairs), device, dtype)
    M = torch.eye(ndim, device=amounts.device, dtype=dtype).repeat(amounts.shape[0], 1, 1)
    for k, (i, j) in enumerate(pairs):
        M[:, i, j] = amounts[:, k]
    return _about_centre(M, shape)


def translation(offsets, ndim: int | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Affine translation by ``offsets`` voxels along each axis: samples at ``x + offsets``."""
    offsets = torch.as_tensor(offsets, device=device, dtype=dtype)
    ndim = ndim or offsets.shape[-1]
    offsets = _as_batch(offsets, ndim, device, dtype)
    eye = torch.eye(ndim, device=offsets.device, dtype=dtype).expand(offsets.shape[0], ndim, ndim)
    return torch.cat([eye, offsets.unsqueeze(-1)], dim=-1)


def compose_affine(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Affine equivalent to warping with ``first`` and then with ``second``.

    Like :func:`compose` for fields: the sampling location is
    ``first(second(x))``, so the result is ``first @ second`` in homogeneous form.
    """
    ndim = _check_affine(first)
    if _check_affine(second) != ndim:
        raise ValueError("`first` and `second` must both be 2D or both 3D affines.")
    M = first[:, :, :ndim] @ second[:, :, :ndim]
    t = first[:, :, :ndim] @ second[:, :, ndim:] + first[:, :, ndim:]
    return torch.cat([M, t], dim=-1)


# ---------------------------------------------------------------------------
# resampling fields and their Jacobian
# ---------------------------------------------------------------------------


def resize_disp(disp: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample a field to a new grid ``shape`` and rescale its values.

    A displacement of ``d`` voxels on an axis of ``n`` voxels becomes
    ``d * (m - 1) / (n - 1)`` voxels on an axis of ``m`` voxels (the image
    spans the same physical extent, align_corners=True). Linear interpolation.
    """
    ndim = check_disp(disp)
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"`shape` must have {ndim} entries for a {ndim}D field, got {shape}.")
    return kernels.resize_disp(disp, shape)


def jacobian_det(disp: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``x -> x + disp(x)``: ``(B, *spatial)``.

    Derivatives are central differences inside and one-sided at the border,
    exactly like ``numpy.gradient``. ``det > 1`` means local expansion,
    ``0 < det < 1`` compression, ``det <= 0`` folding (the map is not invertible there).
    """
    ndim = check_disp(disp)
    if min(disp.shape[2:]) < 2:
        raise ValueError(f"`disp` needs at least 2 voxels along every axis, got {tuple(disp.shape[2:])}.")
    return _jacobian_det(disp, ndim)


def _jacobian_det(disp: torch.Tensor, ndim: int) -> torch.Tensor:
    grads = torch.gradient(disp, dim=tuple(range(2, 2 + ndim)))
    # J[i][j] = d(x_i + u_i)/dx_j
    J = [[grads[j][:, i] + (1.0 if i == j else 0.0) for j in range(ndim)] for i in range(ndim)]
    if ndim == 2:
        return J[0][0] * J[1][1] - J[0][1] * J[1][0]
    return (
        J[0][0] * (J[1][1] * J[2][2] - J[1][2] * J[2][1])
        - J[0][1] * (J[1][0] * J[2][2] - J[1][2] * J[2][0])
        + J[0][2] * (J[1][0] * J[2][1] - J[1][1] * J[2][0])
    )


def disp_to_mm(disp: torch.Tensor, voxel_size: Sequence[float] | None = None, *,
               spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Convert a field in voxels to millimetres, given the ``voxel_size`` per axis (mm, tensor
    axis order; ``spacing`` is its old name)."""
    voxel_size = renamed_keyword(voxel_size, spacing, "voxel_size", "spacing")
    ndim = check_disp(disp)
    if voxel_size is None or len(voxel_size) != ndim:
        raise ValueError(f"`voxel_size` must have {ndim} entries (mm per voxel along each axis), "
                         f"got {voxel_size!r}.")
    s = torch.tensor([float(x) for x in voxel_size], device=disp.device, dtype=disp.dtype)
    return disp * s.view(1, -1, *([1] * ndim))

