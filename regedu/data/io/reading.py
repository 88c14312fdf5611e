"""Reading NIfTI files: images, label maps and displacement fields, reoriented to canonical RAS."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import torch
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from .headers import RAS_TO_LPS, VOXEL_FIELD_NAME, check_itk_plane, voxel_size

__all__ = ["NiftiVolume", "DegenerateAffineError", "load_nifti", "nifti_shape", "load_labels", "load_disp"]

_IDENTITY_ORIENTATION = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
_MAX_GZIP_RATIO = 1100  # DEFLATE inflates by at most about 1032:1
_READ_ERRORS = (
    nib.filebasedimages.ImageFileError,
    nib.spatialimages.HeaderDataError,
    OSError,
    EOFError,
    ValueError,
    zlib.error,
)


class DegenerateAffineError(ValueError):
    """A header whose voxel-to-world affine gives an axis no direction (e.g. an all-zero sform)."""


class NiftiVolume(NamedTuple):
    """What the loaders return; unpacks as ``image, affine, spacing = load_nifti(path)``.

    ``image``: tensor ``(1, C, *spatial)`` (an image, a label map or a field);
    ``affine``: numpy ``(4, 4)`` float64, voxel index -> world RAS mm;
    ``spacing``: voxel size along each tensor axis, in mm.
    """

    image: torch.Tensor
    affine: np.ndarray
    spacing: tuple[float, ...]


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def _input_path(path) -> Path:
    """Return ``path`` as a ``Path``; raise ``FileNotFoundError`` unless it is an existing file."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"NIfTI file {str(path)!r} {what}. Expected a .nii or .nii.gz file; check the path "
            f"(relative paths start at {Path.cwd()})."
        )
    return path


def _unreadable(path: Path, err: Exception) -> ValueError:
    return ValueError(
        f"Could not read {str(path)!r} as NIfTI ({type(err).__name__}: {err}). Expected a complete "
        f".nii or .nii.gz file: re-download or re-export it."
    )


def _open_nifti(path: Path):
    """Open ``path`` with nibabel (header only) and insist that it is NIfTI-1 or NIfTI-2."""
    try:
        img = nib.load(str(path))
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(
            f"{str(path)!r} is a {type(img).__name__}, not a NIfTI file. Convert it first, e.g. "
            f"nibabel.save(nibabel.Nifti1Image(img.get_fdata(), img.affine), 'image.nii.gz')."
        )
    return img


def _read_array(img, path: Path, dtype=None) -> np.ndarray:
    """The voxel values with the header's scaling applied; ``dtype`` forces a float type."""
    _check_declared_size(img, path, np.dtype(dtype).itemsize if dtype is not None else 8)
    try:
        return img.get_fdata(dtype=dtype) if dtype is not None else np.asanyarray(img.dataobj)
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from err


def _declared_bytes(img) -> int:
    """Bytes of voxel data that the header declares: the product of its dimensions times the
    on-disk element size."""
    return int(np.prod([int(n) for n in img.shape], dtype=object)) * img.get_data_dtype().itemsize


def _check_declared_size(img, path: Path, out_itemsize: int) -> None:
    """Refuse, before reading, a file whose header declares more voxel data than the file can hold
    or than memory can take.

    An uncompressed ``.nii`` must hold ``vox_offset`` + the declared bytes exactly; a ``.nii.gz``
    cannot inflate by more than :data:`_MAX_GZIP_RATIO` (DEFLATE's limit is about 1032:1). Memory
    needed: the file's array plus the ``out_itemsize``-byte copy per voxel made from it.
    """
    from ...memory import NotEnoughMemory, available_bytes, describe_bytes

    declared = _declared_bytes(img)
    size = path.stat().st_size
    grid = "x".join(str(int(n)) for n in img.shape)
    what = f"{grid} voxels of {img.get_data_dtype()} ({describe_bytes(declared)})"
    if path.name.lower().endswith(".gz"):
        if declared > _MAX_GZIP_RATIO * size + 2**20:
            raise ValueError(f"{str(path)!r} declares {what} in its header, but a {describe_bytes(size)} "
                             f"gzip file cannot hold that much: the header is wrong or the file was cut "
                             f"short. Re-download or re-export it.")
    elif size < int(img.header["vox_offset"]) + declared:
        raise ValueError(f"{str(path)!r} declares {what} in its header, but the file holds only "
                         f"{describe_bytes(size)}: it is truncated or its header is wrong. Re-download "
                         f"or re-export it.")
    needed = declared + int(np.prod([int(n) for n in img.shape], dtype=object)) * out_itemsize
    available = available_bytes()
    if available is not None and needed > available:
        raise NotEnoughMemory(
            f"reading {str(path)!r} ({what}) needs about {describe_bytes(needed)} of memory but "
            f"{describe_bytes(available)} are free: crop or downsample the volume first (e.g. FSL "
            f"`fslroi`, ANTs `ResampleImage`), or use a machine with more memory."
        )


def _grid_shape(shape: Sequence[int], path: Path, vector_axes: int = 0) -> tuple[int, int, int]:
    """The 3 spatial sizes of a file of ``shape`` whose last ``vector_axes`` axes hold vectors.

    Trailing axes of length 1 after the third are dropped; anything else beyond
    three spatial axes is refused, and so is a grid with fewer than two axes
    longer than one voxel.
    """
    spatial = tuple(int(n) for n in shape[: len(shape) - vector_axes])
    if any(n != 1 for n in spatial[3:]):
        raise ValueError(
            f"{str(path)!r} has shape {tuple(shape)}: {len(spatial)} axes, but regedu expects one 3D "
            f"volume (or a 2D slice). Pick one volume first, e.g. nibabel.load(path).slicer[..., 0], "
            f"and save it as its own file."
        )
    grid = (spatial[:3] + (1, 1, 1))[:3]
    if sum(n > 1 for n in grid) < 2:
        raise ValueError(
            f"{str(path)!r} has shape {tuple(shape)}: fewer than two axes longer than one voxel, "
            f"so it is not a 2D or 3D image."
        )
    return grid


def _reorient(data: np.ndarray, affine: np.ndarray, canonical: bool):
    """Flip/permute the first three axes of ``data`` to the closest RAS orientation.

    Returns ``(data, affine, orientation)``: the reoriented array, the affine of
    its grid, and nibabel's orientation table (row ``i`` says where old axis ``i``
    went and whether it was flipped), which vector fields need.
    """
    orientation = io_orientation(affine) if canonical else _IDENTITY_ORIENTATION
    if np.isnan(orientation).any():
        raise DegenerateAffineError(
            f"the header's voxel-to-world affine {np.round(affine, 4).tolist()} is degenerate (an axis has "
            f"no direction, e.g. an all-zero sform), so the volume cannot be placed in space. Repair the "
            f"header (FSL: `fslorient -copyqform2sform FILE` when its qform is valid, or `fslcpgeom "
            f"REFERENCE FILE` to copy the geometry of the image it belongs to), or load it in the file's "
            f"voxel order with load_nifti(path, canonical=False)."
        )
    shape = data.shape[:3]
    return apply_orientation(data, orientation), affine @ inv_ornt_aff(orientation, shape), orientation


def _drop_flat_axis(data: np.ndarray, affine: np.ndarray):
    """Turn a grid with one axis of length 1 into a 2D one; return ``(data, affine, kept_axes)``.

    The flat axis is moved last and removed from ``data``; the affine's columns are
    reordered to match, so column ``k < 2`` goes with the new axis ``k`` and column 2
    with the dropped one. A 3D grid comes back unchanged with ``kept_axes = (0, 1, 2)``.
    """
    flat = [axis for axis in range(3) if data.shape[axis] == 1]
    if not flat:
        return data, affine, (0, 1, 2)
    kept = tuple(axis for axis in range(3) if axis != flat[0])
    data = np.moveaxis(data, flat[0], 2)[:, :, 0]
    return data, affine[:, list(kept) + [flat[0], 3]], kept


def load_nifti(path, canonical: bool = True) -> NiftiVolume:
    """Load a NIfTI image as a float32 tensor ``(1, 1, *spatial)``.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file holding one 3D volume (trailing axes
            of length 1 are ignored) or a 2D slice (see the module docstring).
        canonical: reorient to the closest RAS orientation (default), so that the
            tensor axes are (x, y, z) = (Right, Anterior, Superior). With ``False``
            the array keeps the file's voxel order.

    Returns:
        ``NiftiVolume(image, affine, spacing)``: ``image`` is float32 on the CPU
        with the header's intensity scaling applied, ``affine`` the ``(4, 4)``
        voxel-to-world (RAS mm) matrix of the returned grid, ``spacing`` the voxel
        size per tensor axis in mm.

    Raises:
        FileNotFoundError: no such file. ValueError: not NIfTI, corrupt or
        truncated, or not a single 2D/3D image (e.g. a 4D time series).
    """
    path = _input_path(path)
    img = _open_nifti(path)
    grid = _grid_shape(img.shape, path)
    data = _read_array(img, path, np.float32).reshape(grid)
    data, affine, _ = _reorient(data, img.affine, canonical)
    data, affine, _ = _drop_flat_axis(data, affine)
    image = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None, None]
    return NiftiVolume(image, affine, voxel_size(affine, data.ndim))


def nifti_shape(path, canonical: bool = True) -> tuple[int, ...]:
    """The spatial shape of the tensor that :func:`load_nifti` would return, from the header alone.

    Reads no voxel data, but checks what can be checked without it: the file is NIfTI, holds one
    2D or 3D image, and is large enough for (and fits in memory with) the grid its header
    declares. Raises like :func:`load_nifti`; used to check a long list of files up front.
    """
    path = _input_path(path)
    img = _open_nifti(path)
    grid = _grid_shape(img.shape, path)
    _check_declared_size(img, path, 4)
    empty = np.broadcast_to(np.zeros((), dtype=np.uint8), grid)  # a view: no voxel is allocated
    oriented, affine, _ = _reorient(empty, img.affine, canonical)
    return tuple(int(n) for n in _drop_flat_axis(oriented, affine)[0].shape)


def load_labels(path, canonical: bool = True) -> NiftiVolume:
    """Load an integer label map as an int64 tensor ``(1, 1, *spatial)``.

    Same grid, orientation and return value as :func:`load_nifti`. Files stored
    as floats are accepted when every value is a whole number (after the
    header's scaling); other floats mean the file is an image, or labels that
    were resampled with linear interpolation, and raise a ``ValueError`` that
    names the file and an offending voxel.
    """
    path = _input_path(path)
    img = _open_nifti(path)
    grid = _grid_shape(img.shape, path)
    raw = _read_array(img, path).reshape(grid)
    values = _integral_labels(raw, path)
    values, affine, _ = _reorient(values, img.affine, canonical)
    values, affine, _ = _drop_flat_axis(values, affine)
    labels = torch.from_numpy(np.ascontiguousarray(values))[None, None]
    return NiftiVolume(labels, affine, voxel_size(affine, values.ndim))


def _integral_labels(raw: np.ndarray, path: Path) -> np.ndarray:
    """``raw`` as int64, or a ``ValueError`` naming ``path`` when a value is not a whole number."""
    if raw.dtype.kind in "biu":
        return raw.astype(np.int64)
    if raw.dtype.kind != "f":
        raise ValueError(f"{str(path)!r} holds {raw.dtype} values; a label map must hold integers.")
    bad = ~np.isfinite(raw) | (raw != np.round(raw))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{str(path)!r} is not a label map: {int(bad.sum())} voxels hold non-integer values "
            f"(e.g. {raw[where]!r} at voxel {where}). If it is an image, load it with load_nifti; "
            f"if labels were resampled with linear interpolation, redo that with nearest neighbour."
        )
    return raw.astype(np.int64)


def load_disp(path, canonical: bool = True) -> NiftiVolume:
    """Load a displacement field written by :func:`save_nifti` (any ``field`` format) or by ITK/ANTs.

    Returns ``NiftiVolume(disp, affine, spacing)`` with ``disp`` ``(1, ndim, *spatial)``
    float32 **in voxels** along the tensor axes, on the same grid that
    :func:`load_nifti` gives an image with the file's header (so ``canonical``
    has the same meaning). Physical fields (``"mm"``, ``"itk"``) are converted
    with the inverse of the formulas in the module docstring.
    """
    path = _input_path(path)
    img = _open_nifti(path)
    voxels = _field_in_file_voxels(img, path)  # (X, Y, Z, 3)
    voxels, affine, orientation = _reorient(voxels, img.affine, canonical)
    voxels = _reorient_vectors(voxels, orientation)
    voxels, affine, kept = _drop_flat_axis(voxels, affine)
    voxels = voxels[..., list(kept)]
    disp = torch.from_numpy(np.ascontiguousarray(np.moveaxis(voxels, -1, 0), dtype=np.float32))[None]
    return NiftiVolume(disp, affine, voxel_size(affine, len(kept)))


def _field_in_file_voxels(img, path: Path) -> np.ndarray:
    """A field file's vectors in voxels of the file's own grid, as ``(X, Y, Z, 3)`` float64."""
    kind, _, name = img.header.get_intent()
    data = _read_array(img, path, np.float64)
    if kind in ("vector", "displacement vector"):
        grid = _grid_shape(data.shape, path, vector_axes=1)
        if kind == "vector" and data.shape[-1] == 2 and grid[2] == 1:
            return _itk_2d_field_in_voxels(data.reshape(grid[:2] + (2,)), img.affine, path)
        if data.shape[-1] != 3 or 1 in grid:
            raise ValueError(
                f"{str(path)!r} holds {data.shape[-1]}-component vectors on a grid of shape {grid}; "
                f"physical fields are read for 3D volumes (3 components) and, in ITK's convention "
                f"(intent 'vector'), for 2D slices (X, Y, 1, 1, 2)."
            )
        world = data.reshape(grid + (3,))
        if kind == "vector":  # ITK/ANTs: LPS millimetres
            world = world @ RAS_TO_LPS
        return world @ np.linalg.inv(img.affine[:3, :3]).T
    if name == VOXEL_FIELD_NAME:
        grid = _grid_shape(data.shape, path, vector_axes=1)
        voxels = data.reshape(grid + (data.shape[-1],))
        if voxels.shape[-1] == 2:  # 2D field on an (H, W, 1) grid: no displacement through the plane
            voxels = np.concatenate([voxels, np.zeros_like(voxels[..., :1])], axis=-1)
        return voxels
    raise ValueError(
        f"{str(path)!r} is not a displacement field regedu can read (intent {kind!r}, name {name!r}, "
        f"shape {tuple(data.shape)}). Expected a file written by regedu.data.save_nifti(..., field=...) "
        f"or an ITK/ANTs warp (5D, intent 'vector')."
    )


def _itk_2d_field_in_voxels(vectors: np.ndarray, affine: np.ndarray, path: Path) -> np.ndarray:
    """ITK's 2D field ``(X, Y, 2)`` in LPS mm -> ``(X, Y, 1, 3)`` voxels of the file's grid
    (the through-plane component is 0): ``d = inv(M2) @ diag(-1, -1) @ u`` with ``M2`` the
    header's top-left 2 x 2."""
    check_itk_plane(affine, repr(str(path)))
    ras = vectors * RAS_TO_LPS.diagonal()[:2]
    voxels = ras @ np.linalg.inv(affine[:2, :2]).T
    return np.concatenate([voxels, np.zeros_like(voxels[..., :1])], axis=-1)[:, :, None, :]


def _reorient_vectors(voxels: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Move vector components along with the axes: old axis ``i`` became axis ``orientation[i, 0]``,
    flipped when ``orientation[i, 1] == -1``, so its component moves there and changes sign."""
    out = np.empty_like(voxels)
    for old_axis, (new_axis, flip) in enumerate(orientation):
        out[..., int(new_axis)] = flip * voxels[..., old_axis]
    return out
