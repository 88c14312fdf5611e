"""Writing NIfTI files: images, label maps and displacement fields, never over a file by accident and
never half-written."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ...checks import check_choice, check_disp, check_image
from .headers import (
    FIELD_FORMATS,
    NIFTI_INTENT_DISPVECT,
    NIFTI_INTENT_VECTOR,
    RAS_TO_LPS,
    VOXEL_FIELD_NAME,
    affine_matrix,
    check_itk_plane,
)

__all__ = ["save_nifti"]

_SUFFIXES = (".nii.gz", ".nii")


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def _output_path(path, overwrite: bool) -> Path:
    path = Path(path).expanduser()
    if not path.name.endswith(_SUFFIXES):
        raise ValueError(f"{str(path)!r} must end in .nii or .nii.gz so that other tools recognise it.")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"the folder {str(path.parent)!r} does not exist; create it first "
            f"(Path({str(path.parent)!r}).mkdir(parents=True))."
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists already; pass overwrite=True to replace it.")
    return path


def _numpy_for_nifti(tensor: torch.Tensor) -> np.ndarray:
    """CPU numpy copy in a dtype NIfTI stores: floats stay float32/64, integers keep their type."""
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    elif tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    return tensor.numpy()


def save_nifti(tensor: torch.Tensor, path, affine=None, overwrite: bool = False,
               field: str | None = None) -> Path:
    """Write an image, a label map or a displacement field to a NIfTI file.

    Args:
        tensor: an image or integer label map ``(1, 1, *spatial)``, or with
            ``field`` set a displacement ``(1, ndim, *spatial)`` in voxels.
            Floating images are written as float32 (float64 stays float64),
            integer label maps keep their integer dtype, booleans become uint8.
            2D tensors are written as ``(H, W, 1)`` volumes.
        path: the file to write, ending in ``.nii`` or ``.nii.gz``.
        affine: ``(4, 4)`` voxel-to-world matrix of the tensor's grid, e.g. the
            one :func:`load_nifti` returned; ``None`` means 1 mm voxels at the origin.
        overwrite: replace an existing file. Without it an existing ``path``
            raises ``FileExistsError`` and nothing is written.
        field: ``None`` for images and label maps; ``"voxels"``, ``"mm"`` or
            ``"itk"`` for a displacement field (formats in the module docstring).

    Returns:
        The path written. The data go to a temporary file in the same folder
        first and are renamed into place once complete, so an interrupted call
        leaves no partial file.
    """
    path = _output_path(path, overwrite)
    affine = affine_matrix(affine)
    if field is None:
        img = _volume_image(tensor, affine)
    else:
        check_choice(field, "field", FIELD_FORMATS)
        img = _field_image(tensor, affine, field)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    _write_atomically(img, path)
    return path


def _volume_image(tensor, affine: np.ndarray):
    check_image(tensor, "tensor")
    if tensor.shape[:2] != (1, 1):
        raise ValueError(
            f"save_nifti writes one image (1, 1, *spatial) at a time, got shape {tuple(tensor.shape)}. "
            f"Pick one with tensor[i:i + 1, c:c + 1]; for a displacement field pass field='voxels'."
        )
    array = _numpy_for_nifti(tensor[0, 0])  # a 2D image stays 2D (dim[0] = 2): ITK, and so ANTs'
    return nib.Nifti1Image(array, affine, dtype=array.dtype)  # `-d 2`, keep its direction only then


def _field_image(disp, affine: np.ndarray, field: str):
    """Displacement ``(1, ndim, *spatial)`` in voxels -> NIfTI image in the ``field`` format."""
    ndim = check_disp(disp, "disp")
    if disp.shape[0] != 1:
        raise ValueError(
            f"save_nifti writes one field (1, ndim, *spatial) at a time, got {tuple(disp.shape)}."
        )
    voxels = np.moveaxis(disp.detach().cpu().double().numpy()[0], 0, -1)  # (*spatial, ndim)
    if field == "voxels":
        if ndim == 2:
            voxels = voxels[:, :, None, :]
        img = nib.Nifti1Image(voxels.astype(np.float32), affine)
        img.header.set_intent("none", name=VOXEL_FIELD_NAME)
        return img
    if ndim == 2:
        return _itk_2d_field_image(voxels, affine, field, tuple(disp.shape))
    world = voxels @ affine[:3, :3].T  # u_RAS = M @ d at every voxel
    code = NIFTI_INTENT_DISPVECT
    if field == "itk":
        world, code = world @ RAS_TO_LPS, NIFTI_INTENT_VECTOR
    img = nib.Nifti1Image(world[:, :, :, None, :].astype(np.float32), affine)
    img.header.set_intent(code)
    return img


def _itk_2d_field_image(voxels: np.ndarray, affine: np.ndarray, field: str, shape: tuple):
    """A 2D field ``(H, W, 2)`` in voxels -> ITK's 2D layout ``(H, W, 1, 1, 2)``, LPS mm, intent
    'vector': ``u = diag(-1, -1) @ M2 @ d`` with ``M2`` the affine's top-left 2 x 2."""
    if field != "itk":
        raise ValueError(
            f"field={field!r} writes 3-component vectors of 3D volumes; got a 2D field {shape}. "
            f"Save 2D fields with field='voxels' or field='itk'."
        )
    check_itk_plane(affine, "save_nifti(field='itk')")
    lps = (voxels @ affine[:2, :2].T) * RAS_TO_LPS.diagonal()[:2]
    img = nib.Nifti1Image(lps[:, :, None, None, :].astype(np.float32), affine)
    img.header.set_intent(NIFTI_INTENT_VECTOR)
    return img


def _write_atomically(img, path: Path) -> None:
    """Save to a hidden temporary file beside ``path`` and rename it into place."""
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")
    try:
        nib.save(img, str(temporary))
        os.replace(temporary, path)
    except OSError as error:  # name the user's file, not the hidden temporary one
        from ...outputs import write_failure

        raise write_failure(path, error) from None
    finally:
        if temporary.exists():
            temporary.unlink()
