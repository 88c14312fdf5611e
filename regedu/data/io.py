"""NIfTI files at the boundary of regedu: load, save, resample, normalise, pad.

Physical space (millimetres, orientation) lives here and nowhere else
(docs/DESIGN.md). Everything that leaves this module is a tensor in voxel units:

* :func:`load_nifti` returns the image as ``(1, 1, *spatial)`` float32, reoriented
  by default to the closest canonical RAS orientation (``nibabel.as_closest_canonical``
  does the same): tensor axis 0 runs towards the subject's Right, axis 1
  Anterior, axis 2 Superior, so the spatial axes are (x, y, z). The 4 x 4
  ``affine`` maps voxel indices to world (scanner RAS) millimetres and
  ``spacing`` is the voxel size along each tensor axis, in mm.
* A file whose grid has exactly one axis of length 1 (e.g. a slice stored as
  ``(160, 192, 1)``) loads as a 2D image ``(1, 1, H, W)``. Its affine stays 4 x 4,
  with the columns reordered so that columns 0 and 1 belong to the tensor's
  two axes and column 2 to the dropped, through-plane axis: voxel ``(i, j)`` of
  the tensor sits at ``affine @ (i, j, 0, 1)``.
* :func:`load_labels` does the same for integer label maps.
* :func:`save_nifti` writes images, label maps (integer dtype kept) and
  displacement fields; it never overwrites a file unless ``overwrite=True`` and
  never leaves a partial file (it writes a temporary file in the same folder,
  then renames it with ``os.replace``).
* :func:`resample_like` moves an image onto another grid through world
  coordinates, optionally through a registration's field as well, with one
  interpolation; :func:`same_grid` and :func:`grid_offset` say whether two headers
  put voxel ``x`` at the same place. :func:`rescale_percentiles` maps intensities to ``[0, 1]``,
  :func:`pad_to_multiple` / :func:`unpad` make sizes divisible by a network's
  down-sampling factor and back, exactly.

Displacement fields on disk (``save_nifti(disp, path, affine, field=...)``;
``disp`` is ``(1, ndim, *spatial)`` in voxels, on the grid that ``affine``
describes, and pulls: ``warped(x) = moving(x + disp(x))``):

``field="voxels"``
    regedu's own format, also VoxelMorph's: a 4D array ``(X, Y, Z, ndim)``
    (``Z = 1`` for 2D) of displacements in voxels along the tensor axes, with
    ``intent_name = "regedu-voxels"``. Exact round trip with :func:`load_disp`.
``field="mm"``
    The NIfTI displacement-vector convention (``intent_code = 1006``,
    ``NIFTI_INTENT_DISPVECT``): a 5D array ``(X, Y, Z, 1, 3)`` whose vectors are
    in world RAS millimetres, ``u = M @ d`` with ``M = affine[:3, :3]``. Recent
    ITK (5.3.1+) and Slicer read it and convert RAS to LPS themselves. 3D only.
``field="itk"``
    The ITK / ANTs displacement-field convention, what ``antsRegistration``
    writes as ``*Warp.nii.gz`` and ``antsApplyTransforms -t`` reads: a 5D array
    ``(X, Y, Z, 1, 3)`` (vector in the 5th dimension, time axis of length 1) with
    ``intent_code = 1007`` (``NIFTI_INTENT_VECTOR``), whose vectors are physical
    displacements in millimetres in ITK's **LPS** world frame. ITK reads the
    grid from the RAS header affine and converts it to LPS itself
    (``x_LPS = diag(-1, -1, 1) @ x_RAS``), but it does *not* convert the vector
    values of a ``vector``-intent file, so they must already be LPS:
    ``u_LPS = diag(-1, -1, 1) @ affine[:3, :3] @ d``. ITK's
    ``DisplacementFieldTransform`` maps a point ``p`` of the fixed grid to
    ``p + u(p)`` in the moving image, the same pull convention as regedu, so a
    regedu field saved with the fixed image's affine can be applied with
    ``antsApplyTransforms -d 3 -i moving.nii.gz -r fixed.nii.gz -t disp.nii.gz``;
    ITK reads the moving image at ``p + u(p)`` through the moving file's own
    header, as :func:`resample_like` with ``disp=`` does, whatever its grid.
    2D fields are written as ITK writes them: ``(X, Y, 1, 1, 2)``, intent
    ``vector``, ``u_LPS = diag(-1, -1) @ affine[:2, :2] @ d``; ITK reads them as a
    2D ``DisplacementFieldTransform`` (``antsApplyTransforms -d 2``) whose grid is
    the x, y part of the header, so the slice must lie in the world x-y plane
    (as an axial slice saved by regedu does). The 2D *images* must be true 2D
    NIfTI files (``dim[0] = 2``, what :func:`save_nifti` writes for a 2D tensor):
    ITK reads an ``(X, Y, 1)`` file as a 2D image with the identity direction, so
    a RAS slice would come out mirrored under ``antsApplyTransforms -d 2``
    (measured in ``benchmarks/headers.py``). SimpleITK, reading such a file as 3D
    and slicing it, is unaffected.
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import torch
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from ..checks import (
    check_choice,
    check_disp,
    check_finite,
    check_floating,
    check_image,
    check_positive_int,
)
from ..deprecation import renamed_function
from ..kernels import Padding, crop
from ..kernels import pad_to_multiple as pad_unchecked
from ..warps import identity_grid, sample

__all__ = [
    "NiftiVolume",
    "Padding",
    "load_nifti",
    "load_labels",
    "load_disp",
    "nifti_shape",
    "DegenerateAffineError",
    "save_nifti",
    "resample_like",
    "same_grid",
    "grid_offset",
    "rescale_percentiles",
    "normalize_intensity",
    "pad_to_multiple",
    "unpad",
    "FIELD_FORMATS",
]

FIELD_FORMATS = ("voxels", "mm", "itk")
NIFTI_INTENT_DISPVECT = 1006
NIFTI_INTENT_VECTOR = 1007
VOXEL_FIELD_NAME = "regedu-voxels"
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_IDENTITY_ORIENTATION = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
_SUFFIXES = (".nii.gz", ".nii")
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
    from ..memory import NotEnoughMemory, available_bytes, describe_bytes

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


def _spacing(affine: np.ndarray, ndim: int) -> tuple[float, ...]:
    """Voxel size in mm along the first ``ndim`` grid axes: lengths of the affine's columns."""
    return tuple(float(s) for s in np.sqrt((affine[:3, :ndim] ** 2).sum(axis=0)))


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
    return NiftiVolume(image, affine, _spacing(affine, data.ndim))


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
    return NiftiVolume(labels, affine, _spacing(affine, values.ndim))


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
    return NiftiVolume(disp, affine, _spacing(affine, len(kept)))


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
            world = world @ _RAS_TO_LPS
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


def _check_itk_plane(affine: np.ndarray, what: str) -> None:
    """ITK reads a 2D image's grid from the header's top-left 2 x 2 (LPS x, y): the slice's two
    axes must lie in the world x-y plane (no z component), or ITK would misplace it."""
    in_plane = affine[:3, :2]
    if np.abs(in_plane[2]).max() > 1e-6 * np.abs(in_plane).max():
        raise ValueError(
            f"{what}: this 2D slice is not in the world x-y plane (its axes have z components "
            f"{in_plane[2].round(4).tolist()} mm per voxel), and ITK places a 2D field with the x, y "
            f"part of the header only. Use field='voxels', or save the field of the 3D volume."
        )


def _itk_2d_field_in_voxels(vectors: np.ndarray, affine: np.ndarray, path: Path) -> np.ndarray:
    """ITK's 2D field ``(X, Y, 2)`` in LPS mm -> ``(X, Y, 1, 3)`` voxels of the file's grid
    (the through-plane component is 0): ``d = inv(M2) @ diag(-1, -1) @ u`` with ``M2`` the
    header's top-left 2 x 2."""
    _check_itk_plane(affine, repr(str(path)))
    ras = vectors * _RAS_TO_LPS.diagonal()[:2]
    voxels = ras @ np.linalg.inv(affine[:2, :2]).T
    return np.concatenate([voxels, np.zeros_like(voxels[..., :1])], axis=-1)[:, :, None, :]


def _reorient_vectors(voxels: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Move vector components along with the axes: old axis ``i`` became axis ``orientation[i, 0]``,
    flipped when ``orientation[i, 1] == -1``, so its component moves there and changes sign."""
    out = np.empty_like(voxels)
    for old_axis, (new_axis, flip) in enumerate(orientation):
        out[..., int(new_axis)] = flip * voxels[..., old_axis]
    return out


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


def _affine_matrix(affine, name: str = "affine") -> np.ndarray:
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
    affine = _affine_matrix(affine)
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
        world, code = world @ _RAS_TO_LPS, NIFTI_INTENT_VECTOR
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
    _check_itk_plane(affine, "save_nifti(field='itk')")
    lps = (voxels @ affine[:2, :2].T) * _RAS_TO_LPS.diagonal()[:2]
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
        from ..outputs import write_failure

        raise write_failure(path, error) from None
    finally:
        if temporary.exists():
            temporary.unlink()


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
    voxel_map = _voxel_map(_affine_matrix(affine), _affine_matrix(target_affine, "target_affine"), ndim)
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
        _spacing(_affine_matrix(target_affine), len(target_shape)))


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
    difference = (_affine_matrix(affine) - _affine_matrix(target_affine, "target_affine")) @ homogeneous
    return float(np.sqrt((difference[:3] ** 2).sum(axis=0)).max())


# ---------------------------------------------------------------------------
# intensities and sizes
# ---------------------------------------------------------------------------


def _percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Percentile ``q`` (0-100) of each row of ``values`` ``(R, N)``, interpolated linearly between
    the two nearest order statistics like ``numpy.percentile``; ``kthvalue`` avoids a full sort."""
    count = values.shape[1]
    position = q / 100.0 * (count - 1)
    low = int(np.floor(position))
    weight = position - low
    below = values.kthvalue(low + 1, dim=1).values  # kthvalue counts from 1
    if weight == 0.0:
        return below
    above = values.kthvalue(min(low + 2, count), dim=1).values
    return below * (1.0 - weight) + above * weight


def rescale_percentiles(image: torch.Tensor, low: float = 1.0, high: float = 99.0) -> torch.Tensor:
    """Clip intensities at two percentiles, then rescale them linearly to ``[0, 1]``.

    Per batch item and channel: values below the ``low``-th percentile become 0,
    values above the ``high``-th become 1 (percentiles as ``numpy.percentile``,
    linear interpolation). Clipping first keeps a few very bright voxels (vessels,
    artefacts) from squeezing the rest of the image into a narrow range. A
    constant image maps to zeros. ``low=0, high=100`` is plain min-max scaling (per channel;
    :func:`regedu.classical.common.rescale_min_max` scales each item over all its channels).

    Args:
        image: ``(B, C, *spatial)`` floating tensor, finite.
        low, high: percentiles, ``0 <= low < high <= 100``.

    Returns:
        ``(B, C, *spatial)`` in ``[0, 1]``, same dtype and device.
    """
    check_image(image, "image")
    check_floating(image, "image")
    check_finite(image, "image")
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}.")
    rows = image.reshape(image.shape[0] * image.shape[1], -1)
    lo = _percentile(rows, low)[:, None]
    hi = _percentile(rows, high)[:, None]
    span = hi - lo
    scaled = (torch.minimum(torch.maximum(rows, lo), hi) - lo) / torch.where(span > 0, span, 1.0)
    return scaled.reshape(image.shape)


normalize_intensity = renamed_function(rescale_percentiles, "normalize_intensity")


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0,
                    mode: str = "constant") -> tuple[torch.Tensor, Padding]:
    """Pad every spatial axis of ``x`` to the next multiple of ``multiple``.

    A network that halves the size ``L`` times needs sizes divisible by ``2**L``
    (16 for 4 levels). The padding is split evenly between the two ends (one more
    voxel after when odd) and filled with ``value`` (``mode="constant"``) or with copies of the
    edge voxel (``mode="replicate"``, what regedu's networks do with images); a displacement field
    padded with 0 keeps its meaning, since shifting the grid does not change a displacement.

    Args:
        x: ``(B, C, *spatial)`` image, label map or field.
        multiple: positive integer, e.g. ``2 ** levels``.
        value: fill value (``mode="constant"``).
        mode: ``"constant"`` or ``"replicate"``.

    Returns:
        ``(padded, padding)``; ``unpad(padded, padding)`` gives ``x`` back exactly. When no axis
        needs padding, ``padded`` is ``x`` itself. The checked form of
        :func:`regedu.kernels.pad_to_multiple`.
    """
    check_image(x, "x")
    multiple = check_positive_int(multiple, "multiple")
    check_choice(mode, "mode", ("constant", "replicate"))
    return pad_unchecked(x, multiple, mode, value)


def unpad(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Remove what :func:`pad_to_multiple` added: the exact inverse, ``(B, C, *original)``."""
    ndim = check_image(x, "x")
    before, after = tuple(padding[0]), tuple(padding[1])
    if len(before) != ndim or len(after) != ndim:
        raise ValueError(f"`padding` is for {len(before)} spatial axes but `x` has {ndim}; "
                         f"pass the Padding that pad_to_multiple returned for this tensor.")
    sizes = x.shape[2:]
    if any(b + a > n for b, a, n in zip(before, after, sizes, strict=True)):
        raise ValueError(f"`padding` {padding} removes more voxels than `x` has {tuple(sizes)}.")
    return crop(x, Padding(before, after))
