"""Real brain images that ship offline: the MNI ICBM 2009a template inside nilearn's wheel.

Source: the **MNI ICBM 2009a nonlinear symmetric** T1 template with its grey- and
white-matter probability maps (Fonov et al., NeuroImage 47:S102, 2009 and 54:313, 2011;
McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University), in the
skull-stripped, 8-bit version that nilearn ships inside its package
(``nilearn/datasets/data/mni_icbm152_*_tal_nlin_sym_09a_converted.nii.gz``, 1 mm, 197 x 233 x 189;
exactly left-right symmetric, as the name ``sym`` says). regedu does not copy the files. Their
licence (the COPYING file of the MNI's ICBM 2009 archives), which asks for this notice in all copies:

    Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal
    Neurological Institute, McGill University. Permission to use, copy, modify, and
    distribute this software and its documentation for any purpose and without fee is
    hereby granted, provided that the above copyright notice appear in all copies. The
    authors and McGill University make no representations about the suitability of this
    software for any purpose. It is provided "as is" without express or implied warranty.

The files are read with nibabel straight from the installed package (``importlib.resources``),
so nothing is downloaded. nilearn's own loaders (``load_mni152_template`` and friends) read the
same local files without the network too (nilearn 0.14), but importing ``nilearn.datasets``
takes seconds and they resample to 2 mm by interpolation; here 2 mm is a 2 x 2 x 2 block average.

What :func:`load_brain` returns, in canonical RAS order (array axes are x = left -> right,
y = posterior -> anterior, z = inferior -> superior, so an axial slice is ``vol[:, :, z]``):

* ``image``: the T1 template scaled to [0, 1], float32 ``(1, 1, X, Y, Z)``;
* ``labels``: int64 ``(1, 1, X, Y, Z)``, tissue classes from the probability maps
  (see :data:`TISSUE_NAMES`), or, with ``parcels=True``, the tissues cut into
  geometric parcels (see :func:`brain_label_names`);
* ``mask``: bool ``(1, 1, X, Y, Z)``, the template's brain mask;
* ``affine``: numpy ``(4, 4)`` voxel index -> MNI millimetres; ``spacing``: mm per axis.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Brain",
    "TISSUE_NAMES",
    "brain_label_names",
    "load_brain",
    "brain_slice",
    "brain_volume",
]

TISSUE_NAMES = {0: "background", 1: "CSF-like", 2: "grey matter", 3: "white matter"}
"""Tissue labels of :func:`load_brain` (``parcels=False``)."""

_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# Geometric parcels (NOT an anatomical atlas): planes in MNI millimetres.
_MIDLINE_X_MM = 0.0  # left hemisphere x < 0, right x >= 0 (RAS)
_CORONAL_CUT_Y_MM = -20.0  # anterior y >= -20 mm (roughly the central sulcus at mid-height)
_AXIAL_CUT_Z_MM = 0.0  # superior z >= 0 mm
_REGIONS = ("anterior-superior", "posterior-superior", "anterior-inferior", "posterior-inferior")
_DEFAULT_SLICE_Z_MM = 10.0  # axial level through the lateral ventricles and basal ganglia
_FIELD_OF_VIEW_MM = (192, 224, 192)  # default crop: (96, 112, 96) voxels at 2 mm


@dataclass(frozen=True)
class Brain:
    """A brain image with its labels, mask and geometry (see the module docstring).

    Tensors are ``(1, 1, *spatial)``: ``(X, Y, Z)`` for a volume, ``(X, Y)`` for an axial slice.
    ``affine`` maps voxel indices ``(i, j, k)`` to MNI mm (for a slice, ``k = 0`` is the slice).
    """

    image: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    affine: np.ndarray
    spacing: tuple[float, ...]
    label_names: dict[int, str]


def brain_label_names(parcels: bool = False) -> dict[int, str]:
    """Name of every label value of :func:`load_brain`.

    ``parcels=False``: :data:`TISSUE_NAMES`. ``parcels=True``: 17 labels, background 0,
    CSF-like 1, then grey matter 2-9 and white matter 10-17, each cut into left/right
    hemispheres (plane x = 0 mm) and four regions by the planes y = -20 mm and z = 0 mm:
    anterior-superior (about frontal lobe), posterior-superior (parietal/occipital),
    anterior-inferior (temporal) and posterior-inferior (occipital/cerebellum). These are
    *geometric* cuts that give Dice more structures to average over; they are not
    anatomical atlas labels.
    """
    if not parcels:
        return dict(TISSUE_NAMES)
    names = {0: "background", 1: "CSF-like"}
    for t, tissue in enumerate(("GM", "WM")):
        for h, side in enumerate(("left", "right")):
            for r, region in enumerate(_REGIONS):
                names[2 + 8 * t + 4 * h + r] = f"{tissue} {side} {region}"
    return names


# ---------------------------------------------------------------------------
# reading and downsampling (cached)
# ---------------------------------------------------------------------------


def _template_folder():
    """Folder of the template files inside the installed nilearn package."""
    try:
        return importlib.resources.files("nilearn") / "datasets" / "data"
    except ModuleNotFoundError:
        raise ImportError(
            "regedu.data.load_brain reads the MNI template that ships with nilearn, which is "
            "not installed. Install it with: pip install nilearn"
        ) from None


def _read_canonical(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One template file as float32 in [0, 1] (stored as uint8) and its affine, in RAS order."""
    import nibabel as nib

    resource = _template_folder() / _FILES[name]
    if not resource.is_file():
        raise FileNotFoundError(
            f"the MNI template file {_FILES[name]} is missing from the nilearn package at "
            f"{_template_folder()}. Reinstall nilearn (pip install --force-reinstall nilearn)."
        )
    with importlib.resources.as_file(resource) as path:
        img = nib.as_closest_canonical(nib.load(path))
        data = np.asarray(img.dataobj, dtype=np.float32) / 255.0
    return data, img.affine.astype(np.float64)


def _halve(volume: np.ndarray) -> np.ndarray:
    """Average 2 x 2 x 2 blocks (zero-padding odd sizes): 1 mm -> 2 mm without aliasing."""
    t = torch.from_numpy(volume)[None, None]
    t = F.pad(t, _odd_padding(volume.shape))
    return F.avg_pool3d(t, kernel_size=2)[0, 0].numpy()


def _odd_padding(shape: Sequence[int]) -> list[int]:
    """F.pad amounts (last axis first) that make every size even by one voxel at the end."""
    padding = []
    for size in reversed(shape):
        padding += [0, size % 2]
    return padding


def _halved_affine(affine: np.ndarray) -> np.ndarray:
    """Affine of the 2 x 2 x 2 block average: voxel ``i`` is centred at old index ``2 i + 0.5``."""
    scale = np.diag([2.0, 2.0, 2.0, 1.0])
    scale[:3, 3] = 0.5
    return affine @ scale


@functools.lru_cache(maxsize=2)
def _load_arrays(resolution: int) -> dict[str, np.ndarray]:
    """T1, GM, WM, mask, tissue labels and the affine at ``resolution`` mm (cached; callers copy)."""
    arrays = {}
    for name in _FILES:
        arrays[name], affine = _read_canonical(name)
    arrays["mask"] = (arrays["t1"] > 0).astype(np.float32)  # the template is skull-stripped
    if resolution == 2:
        arrays = {name: _halve(volume) for name, volume in arrays.items()}
        arrays["t1"] /= arrays["t1"].max()  # block averages lower the peak: back to [0, 1]
        affine = _halved_affine(affine)
    arrays["mask"] = arrays["mask"] >= 0.5
    arrays["affine"] = affine
    arrays["tissues"] = _tissue_labels(arrays.pop("gm"), arrays.pop("wm"), arrays["mask"])
    return arrays


@functools.lru_cache(maxsize=2)
def _load_parcels(resolution: int) -> np.ndarray:
    """Geometric parcels at ``resolution`` mm (cached; callers copy)."""
    arrays = _load_arrays(resolution)
    return _parcel_labels(arrays["tissues"], arrays["affine"])


def _tissue_labels(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Most probable of CSF-like (1 - GM - WM), GM and WM inside the mask; 0 outside (uint8)."""
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    labels = np.ones(gm.shape, dtype=np.uint8)  # ties go to the first class, as in argmax
    labels[(gm > csf) & (gm >= wm)] = 2
    labels[(wm > csf) & (wm > gm)] = 3
    labels[~mask] = 0
    return labels


def _millimetres(shape: Sequence[int], affine: np.ndarray) -> list[np.ndarray]:
    """MNI coordinates (mm) x, y, z of every voxel, as arrays that broadcast to ``shape``."""
    index = [np.arange(n).reshape([-1 if k == axis else 1 for k in range(3)]) for axis, n in enumerate(shape)]
    return [sum(affine[row, k] * index[k] for k in range(3)) + affine[row, 3] for row in range(3)]


def _parcel_labels(tissues: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Cut GM and WM into hemisphere x region parcels (see :func:`brain_label_names`), uint8."""
    x, y, z = _millimetres(tissues.shape, affine)
    right = (x >= _MIDLINE_X_MM).astype(np.uint8)
    posterior = (y < _CORONAL_CUT_Y_MM).astype(np.uint8)
    inferior = (z < _AXIAL_CUT_Z_MM).astype(np.uint8)
    offset = np.broadcast_to(4 * right + posterior + 2 * inferior, tissues.shape)  # region order
    parcels = tissues.copy()
    for tissue, first in ((2, 2), (3, 10)):
        inside = tissues == tissue
        parcels[inside] = first + offset[inside]
    return parcels


# ---------------------------------------------------------------------------
# public loaders
# ---------------------------------------------------------------------------


def _check_resolution(resolution) -> int:
    if resolution not in (1, 2) or isinstance(resolution, bool):
        raise ValueError(
            f"`resolution` must be 1 or 2 (mm), got {resolution!r}. The template ships at 1 mm; "
            f"2 mm averages 2 x 2 x 2 blocks and is 8 times smaller (use it on a CPU)."
        )
    return int(resolution)


def load_brain(resolution: int = 2, parcels: bool = False, device=None) -> Brain:
    """The MNI ICBM 2009a nonlinear symmetric template as a :class:`Brain`, offline.

    Args:
        resolution: 1 (197 x 233 x 189 voxels) or 2 mm (99 x 117 x 95, block averages).
        parcels: ``False`` gives tissue labels (:data:`TISSUE_NAMES`: background 0,
            CSF-like 1, GM 2, WM 3); ``True`` gives 17 geometric parcels
            (:func:`brain_label_names`), not anatomical atlas labels.
        device: where the tensors go (default CPU).

    Returns:
        a :class:`Brain` with ``image`` float32 in [0, 1], ``labels`` int64, ``mask`` bool, all
        ``(1, 1, X, Y, Z)`` in RAS order, the ``affine`` (4, 4) to MNI mm (positive diagonal)
        and the ``spacing`` in mm. Loading is cached; every call returns fresh copies.
        Source and licence: see :mod:`regedu.data.samples`.
    """
    resolution = _check_resolution(resolution)
    arrays = _load_arrays(resolution)

    def tensor(array, dtype):
        return torch.from_numpy(array.copy())[None, None].to(device=device, dtype=dtype)

    labels = _load_parcels(resolution) if parcels else arrays["tissues"]
    affine = arrays["affine"].copy()
    return Brain(
        image=tensor(arrays["t1"], torch.float32),
        labels=tensor(labels, torch.int64),
        mask=tensor(arrays["mask"], torch.bool),
        affine=affine,
        spacing=tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)),
        label_names=brain_label_names(parcels),
    )


def _default_crop(resolution: int, ndim: int) -> tuple[int, ...]:
    return tuple(mm // resolution for mm in _FIELD_OF_VIEW_MM[:ndim])


def _brain_centre(mask: torch.Tensor) -> list[float]:
    """Centre of the mask's bounding box, in voxel indices per spatial axis."""
    inside = torch.nonzero(mask[0, 0])
    return ((inside.min(0).values + inside.max(0).values).double() / 2).tolist()


def _crop_or_pad(volume: torch.Tensor, starts: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """Window ``[start, start + size)`` of the spatial axes of ``(1, 1, *spatial)``, zero outside."""
    out = volume.new_zeros(*volume.shape[:2], *size)
    source, target = [slice(None)] * 2, [slice(None)] * 2
    for start, length, n in zip(starts, size, volume.shape[2:], strict=True):
        lo, hi = max(start, 0), min(start + length, n)
        source.append(slice(lo, max(hi, lo)))
        target.append(slice(lo - start, lo - start + max(hi - lo, 0)))
    out[tuple(target)] = volume[tuple(source)]
    return out


def _check_crop(crop_to, ndim: int, resolution: int) -> tuple[int, ...]:
    if crop_to is None:
        return _default_crop(resolution, ndim)
    crop_to = tuple(crop_to)
    if len(crop_to) != ndim or not all(isinstance(s, int) and s > 0 for s in crop_to):
        raise ValueError(
            f"`crop_to` must be {ndim} positive integers (voxels), got {crop_to!r}. "
            f"Networks that halve the image 4 times need multiples of 16, e.g. "
            f"{_default_crop(resolution, ndim)} at {resolution} mm."
        )
    return crop_to


def _window(brain: Brain, centre: Sequence[float], size: Sequence[int], extra_index: Sequence[int] = ()):
    """Crop/pad every tensor of ``brain`` around ``centre``; shift the affine to the new origin."""
    starts = [int(round(c - (s - 1) / 2)) for c, s in zip(centre, size, strict=True)]
    shift = np.eye(4)
    shift[:3, 3] = list(starts) + list(extra_index)
    return replace(
        brain,
        image=_crop_or_pad(brain.image, starts, size),
        labels=_crop_or_pad(brain.labels, starts, size),
        mask=_crop_or_pad(brain.mask, starts, size),
        affine=brain.affine @ shift,
    )


def brain_volume(resolution: int = 2, crop_to: Sequence[int] | None = None, parcels: bool = False,
                 device=None) -> Brain:
    """The template volume cropped/padded around the brain: tensors ``(1, 1, *crop_to)``.

    ``crop_to=None`` keeps a 192 x 224 x 192 mm field of view: ``(96, 112, 96)`` at 2 mm,
    ``(192, 224, 192)`` at 1 mm, sizes divisible by 16 that hold the whole brain. Other
    arguments as in :func:`load_brain`; the affine follows the crop.
    """
    resolution = _check_resolution(resolution)
    size = _check_crop(crop_to, 3, resolution)
    brain = load_brain(resolution, parcels, device)
    return _window(brain, _brain_centre(brain.mask), size)


def brain_slice(z: int | None = None, resolution: int = 2, crop_to: Sequence[int] | None = None,
                parcels: bool = False, device=None) -> Brain:
    """An axial slice ``vol[:, :, z]`` cropped/padded around the brain: tensors ``(1, 1, *crop_to)``.

    Args:
        z: slice index at this resolution; ``None`` takes the level z = +10 mm (MNI), through
            the lateral ventricles and the basal ganglia.
        resolution: 1 or 2 mm.
        crop_to: in-plane size ``(X, Y)``; the window is centred on the brain's bounding box
            (the same for every slice). ``None`` keeps a 192 x 224 mm field of view, which holds
            the whole brain: ``(96, 112)`` at 2 mm, ``(192, 224)`` at 1 mm (divisible by 16).
        parcels, device: as in :func:`load_brain`.

    Returns:
        a :class:`Brain` with 2D tensors; axis 0 is x (left -> right), axis 1 is y
        (posterior -> anterior). Show it with ``imshow(image[0, 0].T, origin="lower")``.
    """
    resolution = _check_resolution(resolution)
    size = _check_crop(crop_to, 2, resolution)
    brain = load_brain(resolution, parcels, device)
    depth = brain.image.shape[-1]
    if z is None:
        z = int(round((_DEFAULT_SLICE_Z_MM - brain.affine[2, 3]) / brain.affine[2, 2]))
    if isinstance(z, bool) or not isinstance(z, int) or not 0 <= z < depth:
        raise ValueError(
            f"`z` must be an integer slice index in [0, {depth - 1}] at {resolution} mm, got {z!r}. "
            f"Leave it as None for the default level (z = +10 mm)."
        )
    centre = _brain_centre(brain.mask)[:2]
    flat = replace(brain, image=brain.image[..., z], labels=brain.labels[..., z], mask=brain.mask[..., z],
                   spacing=brain.spacing[:2])
    return _window(flat, centre, size, extra_index=[z])
