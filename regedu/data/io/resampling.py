"""Resampling through world coordinates: an image onto another grid (and through a registration's
field) with one interpolation, and whether two headers put voxel ``x`` at the same place."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...checks import check_choice, check_disp, check_finite, check_image, check_positive_int
from ...warps import identity_grid, sample
from .headers import affine_matrix, voxel_size

__all__ = ["resample_like", "same_grid", "grid_offset"]


# ---------------------------------------------------------------------------
# resampling through world coordinates
# ---------------------------------------------------------------------------


def _voxel_map(affine: np.ndarray, target_affine: np.ndarray, ndim: int) -> np.ndarray:
    """Affine ``[M | t]`` ``(ndim, ndim + 1)`` taking target voxel indices to source voxel indices.

    World point of target voxel ``x``: ``target_affine @ x``; the source voxel at that
    point: ``inv(affine) @ target_affine @ x``. In 2D the through-plane index must stay 0.
    """
    full = np.linalg.inv(affine) @ target_affine
    if ndim == 2 and not np.allclose(full[2, [0, 1, 3]], 0.0, atol=1e-3):
        raise ValueError(
            "the target 2D grid does not lie in the plane of the source slice (its voxels map to "
            f"through-plane index {full[2, [0, 1, 3]].round(3).tolist()} x (i, j, 1)); resample in 3D."
        )
    columns = list(range(ndim)) + [3]
    return full[:ndim][:, columns]


def _sampling_points(voxel_map: np.ndarray, target_shape: Sequence[int], disp: torch.Tensor | None,
                     device, dtype) -> torch.Tensor:
    """Voxel positions in the source grid read for each target voxel: ``(B, ndim, *target_shape)``.

    Target voxel ``x`` is moved by ``disp`` (voxels of the target grid, or not at all when
    ``None``) and then mapped by ``voxel_map`` ``[M | t]``: ``M (x + disp(x)) + t``.
    """
    ndim = len(target_shape)
    A = torch.as_tensor(voxel_map, device=device, dtype=dtype)
    where = identity_grid(target_shape, device=device, dtype=dtype)[None]
    if disp is not None:
        where = where + disp.to(device=device, dtype=dtype)
    moved = torch.einsum("ij,bj...->bi...", A[:, :ndim], where)
    return moved.add_(A[:, ndim].view(1, ndim, *([1] * ndim)))


def _check_target_disp(disp, ndim: int, target_shape: tuple[int, ...]) -> None:
    """``disp`` must be ``None`` or a field ``(B, ndim, *target_shape)`` on the target grid."""
    if disp is None:
        return
    check_disp(disp, "disp", ndim=ndim)
    if tuple(disp.shape[2:]) != target_shape:
        raise ValueError(
            f"`disp` must lie on the target grid {target_shape} (it is the registration's field on "
            f"the fixed grid), got spatial shape {tuple(disp.shape[2:])}."
        )
    check_finite(disp, "disp")


def resample_like(image: torch.Tensor, affine, target_shape: Sequence[int], target_affine,
                  mode: str | None = None, padding: str = "zeros", disp: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Resample ``image`` onto another grid through world coordinates, optionally through a field.

    Each voxel ``x`` of the target grid is mapped to world millimetres with
    ``target_affine``, then to a (fractional) voxel of ``image``'s grid with the
    inverse of ``affine``; ``image`` is sampled there with :func:`regedu.warps.sample`.
    With ``disp`` (a registration's field on the target grid, in target voxels) the
    target voxel is first moved to ``x + disp(x)``: ``out(x) = image(V(x + disp(x)))``
    with ``V`` the voxel-to-voxel map of the two headers. That is how ITK and ANTs apply
    a displacement field between two images with their own headers
    (``antsApplyTransforms -i image -r target -t disp``), and it interpolates ``image``
    once, however different the grids.

    Args:
        image: ``(B, C, *spatial)`` floating image, or an integer label map ``(B, 1, *spatial)``.
        affine: ``(4, 4)`` voxel-to-world matrix of ``image``'s grid.
        target_shape: spatial shape of the new grid (2 or 3 sizes, like ``image``).
        target_affine: ``(4, 4)`` voxel-to-world matrix of the new grid.
        mode: ``"bilinear"`` (trilinear in 3D) or ``"nearest"``; default bilinear for
            images and nearest for integer label maps (the only mode they accept).
        padding: value outside ``image``: ``"zeros"`` (default; the last half voxel blends
            towards 0), ``"border"`` (the edge value everywhere outside), or ``"itk"``: the
            edge value up to half a voxel beyond the edge voxel centres (the image's extent),
            0 farther out, as ITK's and ANTs' resampling does.
        disp: optional ``(1 or B, ndim, *target_shape)`` displacement in voxels of the target
            grid (pull convention); ``None`` resamples without moving.

    Returns:
        ``(B, C, *target_shape)``, dtype and device of ``image``.
    """
    ndim = check_image(image, "image")
    target_shape = tuple(check_positive_int(int(n), "target_shape") for n in target_shape)
    if len(target_shape) != ndim:
        raise ValueError(f"`target_shape` must have {ndim} sizes for a {ndim}D image, got {target_shape}.")
    check_choice(padding, "padding", ("zeros", "border", "itk"))
    _check_target_disp(disp, ndim, target_shape)
    is_labels = not image.is_floating_point()
    mode = mode or ("nearest" if is_labels else "bilinear")
    check_choice(mode, "mode", ("bilinear", "nearest"))
    if is_labels and mode != "nearest":
        raise TypeError(f"integer label maps can only be resampled with mode='nearest', got {mode!r}. "
                        f"For an image, convert it with image.float().")
    voxel_map = _voxel_map(affine_matrix(affine), affine_matrix(target_affine, "target_affine"), ndim)
    dtype = image.dtype if not is_labels else torch.float32  # labels: positions only pick a voxel
    points = _sampling_points(voxel_map, target_shape, disp, image.device, dtype)
    if padding != "itk":
        return sample(image, points, mode=mode, padding=padding)
    moved = sample(image, points, mode=mode, padding="border")
    return moved.masked_fill(~_within_extent(points, image.shape[2:]).unsqueeze(1), 0)


def _within_extent(points: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(B, *out)`` bool: whether each position ``(B, ndim, *out)`` lies within half a voxel of the
    grid ``shape``'s voxel centres along every axis (ITK's ``IsInsideBuffer``)."""
    inside = None
    for axis, n in enumerate(shape):
        valid = (points[:, axis] >= -0.5) & (points[:, axis] < n - 0.5)
        inside = valid if inside is None else inside & valid
    return inside


def same_grid(affine, shape: Sequence[int], target_affine, target_shape: Sequence[int],
              tolerance: float = 1e-3) -> bool:
    """Whether two grids coincide: same shape, and every voxel at the same world position.

    ``tolerance`` is a fraction of the smallest voxel side. When this is ``False``, voxel
    ``x`` of one image is not voxel ``x`` of the other (a different size, spacing, origin,
    rotation or flip in the headers) and an image must be resampled through the headers
    (:func:`resample_like`) before the two can be compared voxel by voxel.
    """
    if tuple(shape) != tuple(target_shape):
        return False
    return grid_offset(affine, target_affine, target_shape) <= tolerance * min(
        voxel_size(affine_matrix(target_affine), len(target_shape)))


def grid_offset(affine, target_affine, target_shape: Sequence[int]) -> float:
    """Largest distance in mm between the world positions of voxel ``x`` under two headers.

    Measured over the voxels of a grid ``target_shape`` (at its corners, where an affine
    difference is largest): 0 when the headers agree, the origin shift for a translated
    header, and up to the image's extent for a flipped one.
    """
    ndim = len(target_shape)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in target_shape], indexing="ij")).reshape(ndim, -1)
    homogeneous = np.zeros((4, corners.shape[1]))
    homogeneous[:ndim], homogeneous[3] = corners, 1.0
    difference = (affine_matrix(affine) - affine_matrix(target_affine, "target_affine")) @ homogeneous
    return float(np.sqrt((difference[:3] ** 2).sum(axis=0)).max())
