"""What a NIfTI header means to regedu: voxel-to-world affines, voxel sizes, and the codes of the
displacement-field formats (:mod:`regedu.data.io` describes the formats), shared by reading and writing."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FIELD_FORMATS", "NIFTI_INTENT_DISPVECT", "NIFTI_INTENT_VECTOR", "VOXEL_FIELD_NAME", "RAS_TO_LPS",
           "affine_matrix", "voxel_size", "check_itk_plane"]

FIELD_FORMATS = ("voxels", "mm", "itk")
NIFTI_INTENT_DISPVECT = 1006
NIFTI_INTENT_VECTOR = 1007
VOXEL_FIELD_NAME = "regedu-voxels"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def affine_matrix(affine, name: str = "affine") -> np.ndarray:
    """``affine`` as a float64 ``(4, 4)`` voxel-to-world matrix (``None`` -> 1 mm voxels at the origin)."""
    if affine is None:
        return np.eye(4)
    if isinstance(affine, torch.Tensor):
        affine = affine.detach().cpu().numpy()
    matrix = np.asarray(affine, dtype=np.float64)
    if (matrix.shape != (4, 4) or not np.isfinite(matrix).all()
            or not np.allclose(matrix[3], [0, 0, 0, 1]) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12):
        raise ValueError(
            f"`{name}` must be a finite, invertible (4, 4) voxel-to-world matrix with last row "
            f"[0, 0, 0, 1], got {np.array2string(matrix, precision=3)}. Use the affine that "
            f"load_nifti returned for this grid."
        )
    return matrix


def voxel_size(affine: np.ndarray, ndim: int) -> tuple[float, ...]:
    """Voxel size in mm along the first ``ndim`` grid axes: lengths of the affine's columns."""
    return tuple(float(s) for s in np.sqrt((affine[:3, :ndim] ** 2).sum(axis=0)))


def check_itk_plane(affine: np.ndarray, what: str) -> None:
    """ITK reads a 2D image's grid from the header's top-left 2 x 2 (LPS x, y): the slice's two
    axes must lie in the world x-y plane (no z component), or ITK would misplace it."""
    in_plane = affine[:3, :2]
    if np.abs(in_plane[2]).max() > 1e-6 * np.abs(in_plane).max():
        raise ValueError(
            f"{what}: this 2D slice is not in the world x-y plane (its axes have z components "
            f"{in_plane[2].round(4).tolist()} mm per voxel), and ITK places a 2D field with the x, y "
            f"part of the header only. Use field='voxels', or save the field of the 3D volume."
        )
