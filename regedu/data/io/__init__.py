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

The code lives in modules: :mod:`~regedu.data.io.reading` (the loaders),
:mod:`~regedu.data.io.writing` (:func:`save_nifti`), :mod:`~regedu.data.io.resampling`,
:mod:`~regedu.data.io.preprocessing` (intensities, padding) and :mod:`~regedu.data.io.headers`
(affines, voxel sizes and the field formats' codes, which reading and writing share).
"""

import nibabel as nib  # noqa: F401  (regedu.data.io.nib is the nibabel that the readers and writers call)

from .headers import FIELD_FORMATS, check_itk_plane
from .headers import NIFTI_INTENT_DISPVECT as NIFTI_INTENT_DISPVECT  # public too, not in __all__ (as before)
from .headers import NIFTI_INTENT_VECTOR as NIFTI_INTENT_VECTOR
from .headers import VOXEL_FIELD_NAME as VOXEL_FIELD_NAME
from .preprocessing import Padding, normalize_intensity, pad_to_multiple, rescale_percentiles, unpad
from .reading import DegenerateAffineError, NiftiVolume, load_disp, load_labels, load_nifti, nifti_shape
from .resampling import grid_offset, resample_like, same_grid
from .writing import save_nifti

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
    "check_itk_plane",
]
