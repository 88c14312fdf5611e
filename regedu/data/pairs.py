"""Pairs of NIfTI files: which files make the pairs, and one pair loaded ready to register.

The one home of both, shared by :class:`regedu.data.NiftiPairs` (training) and the ``regedu``
command (``register``, ``evaluate``, ``train --data PATH``):

* **pair lists**: :func:`collect_pairs` turns a folder of images, a CSV file (:func:`read_pair_list`)
  or a list of paths into rows ``{"moving", "fixed", "moving_labels", "fixed_labels"}`` of existing
  files (``None`` where a pair has no label map);
* **one pair**: :func:`load_pair` reads, checks and normalises a moving/fixed pair and puts the
  moving image on the fixed grid through the headers when they differ; :func:`warp_moving` carries
  the *original* moving file onto the fixed grid through a field with one interpolation.

Mistakes in the files raise ``FileNotFoundError`` or ``ValueError`` with a message that names the
file and the fix, one line, as the ``regedu`` command prints it.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .check import MAX_LABELS, check_pair
from .io import (
    DegenerateAffineError,
    grid_offset,
    load_labels,
    load_nifti,
    nifti_shape,
    resample_like,
    rescale_percentiles,
    same_grid,
)

__all__ = ["PAIR_KEYS", "collect_pairs", "read_pair_list", "read_csv_table", "pairs_in_folder",
           "NiftiPair", "load_pair", "warp_moving", "read_header_shape", "check_pair_shapes"]

PAIR_KEYS = ("moving", "fixed", "moving_labels", "fixed_labels")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABEL_SUFFIXES = ("_labels", "_seg")
PairRow = dict[str, Path | None]


# ---------------------------------------------------------------------------
# pair lists: a folder, a CSV file or a list of paths -> rows of existing files
# ---------------------------------------------------------------------------


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def _stem(path: Path) -> str:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _label_file(image: Path) -> Path | None:
    """``<name>_labels.nii.gz`` (or ``_seg``, ``.nii``) beside ``image``, if it exists."""
    for suffix in LABEL_SUFFIXES:
        for extension in NIFTI_SUFFIXES:
            candidate = image.with_name(_stem(image) + suffix + extension)
            if candidate.is_file():
                return candidate
    return None


def pairs_in_folder(folder) -> list[PairRow]:
    """Every ordered pair of images in ``folder``, with ``<name>_labels.nii.gz`` (or ``_seg``)
    beside an image taken as its label map."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_nifti(p))
    images = [p for p in files if not _stem(p).endswith(LABEL_SUFFIXES)]
    if len(images) < 2:
        raise ValueError(
            f"the folder {str(folder)!r} holds {len(images)} NIfTI image(s) (.nii or .nii.gz, label maps "
            f"named *_labels or *_seg not counted); a folder of pairs needs at least 2. Put the images "
            f"there, or pass an explicit list or CSV of pairs."
        )
    return [{"moving": m, "fixed": f, "moving_labels": _label_file(m), "fixed_labels": _label_file(f)}
            for m in images for f in images if m != f]


def read_csv_table(path) -> tuple[list[str], list[dict[str, str]]]:
    """``(columns, rows)`` of a CSV file with a header row, as spreadsheets save them.

    UTF-8 with or without the byte-order mark that Excel writes ("CSV UTF-8"), any line ending
    (CRLF, LF, CR); header names and cells are stripped of surrounding spaces. Another encoding
    raises a ``ValueError`` that names the file, the first bad byte and how to re-save it.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = [{key: (value or "").strip() for key, value in row.items() if key is not None}
                    for row in reader]
    except UnicodeDecodeError as error:
        raise ValueError(
            f"the CSV file {str(path)!r} is not UTF-8 text (it holds the byte "
            f"0x{error.object[error.start]:02x}, which UTF-8 does not allow there): save it as UTF-8 (in "
            f"Excel: Save As > 'CSV UTF-8'; or `iconv -f latin1 -t utf-8 in.csv > out.csv`)."
        ) from None
    return columns, rows


def read_pair_list(path, root=None) -> list[PairRow]:
    """The pairs of a CSV file with a header row ``moving,fixed[,moving_labels,fixed_labels]``
    (empty label cells allowed), as rows of existing files; relative paths start at ``root``
    (default: the CSV file's folder)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"the pair list {path} does not exist (expected a CSV file with columns "
                                f"moving,fixed,moving_labels,fixed_labels).")
    columns, table = read_csv_table(path)
    if "moving" not in columns or "fixed" not in columns:
        raise ValueError(
            f"the pair list {str(path)!r} needs a header row with columns moving,fixed (and "
            f"moving_labels,fixed_labels for label maps): the columns 'moving' and 'fixed' are required, "
            f"it has {columns}."
        )
    if not table:
        raise ValueError(f"the pair list {str(path)!r} has a header but lists no pairs: add one row per "
                         f"(moving, fixed) pair.")
    rows = [{key: row.get(key) or None for key in PAIR_KEYS} for row in table]
    return _resolve(rows, Path(root) if root else path.parent, "the pair list's folder")


def _pair_entry(entry) -> dict:
    """A list entry: ``(moving, fixed)``, ``(moving, fixed, moving_labels, fixed_labels)`` or a dict."""
    if isinstance(entry, dict):
        unknown = set(entry) - set(PAIR_KEYS)
        if unknown or "moving" not in entry or "fixed" not in entry:
            raise ValueError(f"a pair dict needs keys 'moving' and 'fixed' (and optionally "
                             f"'moving_labels', 'fixed_labels'), got {sorted(entry)}.")
        return {key: entry.get(key) for key in PAIR_KEYS}
    if isinstance(entry, list | tuple) and len(entry) in (2, 4):
        return dict(zip(PAIR_KEYS, list(entry) + [None] * (4 - len(entry)), strict=True))
    raise ValueError(
        f"each pair must be (moving, fixed), (moving, fixed, moving_labels, fixed_labels) or a dict "
        f"with those keys, got {entry!r}."
    )


def _resolve(pairs: list[dict], root: Path, root_is: str) -> list[PairRow]:
    """Every path of every pair as an absolute ``Path`` that must exist (pairs numbered from 1)."""
    resolved = []
    for number, pair in enumerate(pairs, start=1):
        entry = {}
        for key in PAIR_KEYS:
            value = pair.get(key)
            if value in (None, "") and key in ("moving", "fixed"):
                raise ValueError(f"pair {number} of the pair list has no {key} file.")
            path = None if value in (None, "") else Path(value).expanduser()
            if path is not None and not path.is_absolute():
                path = root / path
            if path is not None and not path.is_file():
                raise FileNotFoundError(
                    f"pair {number}: the {key} file {str(path)!r} does not exist. Check the path (relative "
                    f"paths start at {str(root)!r}, {root_is})."
                )
            entry[key] = path
        resolved.append(entry)
    return resolved


def collect_pairs(pairs, root=None) -> list[PairRow]:
    """Rows ``{"moving", "fixed", "moving_labels", "fixed_labels"}`` of existing files from

    * a folder (:func:`pairs_in_folder`: every ordered pair of its images),
    * a CSV file (:func:`read_pair_list`), or
    * a list of ``(moving, fixed)`` or ``(moving, fixed, moving_labels, fixed_labels)`` paths, or of
      dicts with those keys, relative to ``root`` (default the working directory).
    """
    if isinstance(pairs, str | Path):
        path = Path(pairs).expanduser()
        if path.is_dir():
            return pairs_in_folder(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} does not exist: pass a folder of NIfTI images, a CSV file of pairs, "
                f"or a list of (moving, fixed) paths."
            )
        if _is_nifti(path):
            raise ValueError(f"{str(path)!r} is a single NIfTI file; pass a folder, a CSV of pairs "
                             f"or a list of (moving, fixed) paths.")
        return read_pair_list(path, root)
    if isinstance(pairs, list | tuple):
        if not pairs:
            raise ValueError("`pairs` is empty: give at least one (moving, fixed) pair.")
        return _resolve([_pair_entry(entry) for entry in pairs], Path(root) if root else Path.cwd(),
                        "the `root` argument")
    raise TypeError(
        f"`pairs` must be a folder, a CSV file path or a list of pairs, got {type(pairs).__name__}."
    )


# ---------------------------------------------------------------------------
# checking a pair's files from their headers
# ---------------------------------------------------------------------------


def _read(loader: Callable, path, what: str):
    """``loader(path)``; a header without a usable affine gets the fixes a user has."""
    try:
        return loader(path)
    except DegenerateAffineError:
        raise DegenerateAffineError(
            f"the {what} {path} has a header whose voxel-to-world affine is degenerate (e.g. an all-zero "
            f"sform), so regedu cannot tell where its voxels are. Repair the header, then rerun: with FSL, "
            f"`fslorient -copyqform2sform {path}` if its qform is valid, or `fslcpgeom REFERENCE {path}` to "
            f"copy the geometry of the image it was made from."
        ) from None


def read_header_shape(path, what: str = "image") -> tuple[int, ...]:
    """The spatial shape :func:`~regedu.data.load_nifti` would give ``path``, read from its header
    alone (:func:`~regedu.data.io.nifti_shape`); ``what`` names the file in errors."""
    return _read(nifti_shape, path, what)


def check_pair_shapes(row: PairRow, shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise ``ValueError`` unless moving and fixed have one dimensionality and each label map lies on
    its image's grid (``shapes``: the spatial shape of each file of ``row``, e.g. from headers)."""
    if len(shapes["moving"]) != len(shapes["fixed"]):
        raise ValueError(f"the moving image {row['moving']} is {len(shapes['moving'])}D but the fixed image "
                         f"{row['fixed']} is {len(shapes['fixed'])}D: register two 2D slices or two 3D "
                         f"volumes.")
    for key, image in (("moving_labels", "moving"), ("fixed_labels", "fixed")):
        if key in shapes and shapes[key] != shapes[image]:
            raise ValueError(f"the {key} file {row[key]} has shape {shapes[key]} but its image {row[image]} "
                             f"has {shapes[image]}: a label map must lie on its image's grid.")


# ---------------------------------------------------------------------------
# one pair, loaded ready to register
# ---------------------------------------------------------------------------


@dataclass
class NiftiPair:
    """A moving/fixed pair on the fixed grid, ready to register.

    ``moving`` and ``fixed`` are ``(1, 1, *spatial)`` float32 on the fixed grid, normalised to
    [0, 1] unless asked otherwise (what the method registers); ``moving_labels`` are the moving
    labels on the fixed grid (int64, or ``None``), ``fixed_labels`` the fixed ones; ``affine`` and
    ``voxel_size`` describe the fixed grid (RAS, mm).

    ``moving_original`` is the moving image with its own intensities on its *own* grid, whose
    voxel-to-world matrix is ``moving_affine``, and ``moving_labels_original`` its labels there:
    the outputs are made from them by one interpolation (:func:`warp_moving`). When that grid is
    not the fixed grid, ``moving`` and ``moving_labels`` were resampled onto it through the headers.
    """

    moving: torch.Tensor
    fixed: torch.Tensor
    moving_original: torch.Tensor
    moving_labels: torch.Tensor | None
    fixed_labels: torch.Tensor | None
    affine: np.ndarray
    voxel_size: tuple[float, ...]
    moving_affine: np.ndarray
    moving_labels_original: torch.Tensor | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        """The old name of :attr:`voxel_size` (deprecated)."""
        from ..deprecation import warn_renamed

        warn_renamed("`spacing`", "`voxel_size`")
        return self.voxel_size


def _load_image(path, what: str):
    volume = _read(load_nifti, path, f"{what} image")
    image = volume.image
    if not bool(torch.isfinite(image).all()):
        bad = int((~torch.isfinite(image)).sum())
        raise ValueError(f"the {what} image {path} has {bad} NaN or infinite voxels; registration needs "
                         f"finite intensities: repair the file (e.g. set those voxels to 0).")
    low, high = float(image.min()), float(image.max())
    if low == high:
        raise ValueError(f"the {what} image {path} has the same value ({low:g}) at every voxel: there is "
                         f"nothing to align. Check the file: an empty export, or the wrong volume or file.")
    return volume


def _load_label_map(path, what: str, grid: torch.Tensor, image_path) -> torch.Tensor | None:
    if path is None:
        return None
    labels = _read(load_labels, path, f"{what} labels").image
    if labels.shape[2:] != grid.shape[2:]:
        raise ValueError(
            f"the {what} labels {path} have shape {tuple(labels.shape[2:])} but their image {image_path} "
            f"has {tuple(grid.shape[2:])}: a label map must lie on its image's grid."
        )
    count = int(torch.unique(labels).numel())
    if count > MAX_LABELS:  # per-label metrics (HD95) would run for hours on an image saved as integers
        raise ValueError(
            f"the {what} labels {path} hold {count} distinct values, more than the {MAX_LABELS} an "
            f"anatomical label map has: this looks like an image (or numbered instances), not a label map. "
            f"Give the label map of the {what} image (e.g. a segmentation with one number per structure)."
        )
    return labels


def _python_warning(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def load_pair(moving_path, fixed_path, moving_labels_path=None, fixed_labels_path=None, *,
              normalize: bool = True, method: str | None = None, interface: str = "python",
              warn: Callable[[str], None] | None = None, note: Callable[[str], None] | None = None
              ) -> NiftiPair:
    """Load, normalise and check a pair of NIfTI files for ``method``.

    When the two headers do not put voxel ``x`` at the same place, the moving image (and its labels)
    is resampled onto the fixed grid through the headers for the registration, and a warning says so;
    the originals are kept for the outputs (:func:`warp_moving`). The pair is then checked with
    :func:`~regedu.data.check_pair` (advice worded for ``interface``, ``"python"`` or ``"cli"``).

    Args:
        moving_path, fixed_path: the images; ``moving_labels_path``, ``fixed_labels_path``: their
            label maps, on their images' grids, or ``None``.
        normalize: clip at the 1st and 99th percentile and rescale to [0, 1]
            (:func:`~regedu.data.rescale_percentiles`).
        method: the method to be used, when known (see :func:`~regedu.data.check_pair`).
        warn: called with each warning (default: :func:`warnings.warn`); ``note``: called with
            what was done to the pair (default: nothing).

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable file, non-finite or constant
            intensities, a 2D image with a 3D one, a label map off its image's grid or with more
            values than a label map has.
    """
    warn = warn or _python_warning
    moving_volume, fixed_volume = _load_image(moving_path, "moving"), _load_image(fixed_path, "fixed")
    original, fixed = moving_volume.image, fixed_volume.image
    if original.dim() != fixed.dim():
        raise ValueError(
            f"the moving image {moving_path} is {original.dim() - 2}D {tuple(original.shape[2:])} but the "
            f"fixed image {fixed_path} is {fixed.dim() - 2}D {tuple(fixed.shape[2:])}: register two 2D "
            f"slices or two 3D volumes."
        )
    moving_labels = _load_label_map(moving_labels_path, "moving", original, moving_path)
    fixed_labels = _load_label_map(fixed_labels_path, "fixed", fixed, fixed_path)
    moving = rescale_percentiles(original) if normalize else original
    fixed = rescale_percentiles(fixed) if normalize else fixed
    pair = NiftiPair(moving, fixed, original, moving_labels, fixed_labels, fixed_volume.affine,
                     fixed_volume.spacing, moving_volume.affine, moving_labels_original=moving_labels)
    if not same_grid(moving_volume.affine, original.shape[2:], pair.affine, fixed.shape[2:]):
        warn(_header_warning(moving_volume, fixed_volume, moving_path, fixed_path))
        done = _resample_onto_fixed(pair)
        if note is not None:
            note(done)
    # on the fixed grid for both, as registered; factor=1: the networks pad to their own factor
    report = check_pair(pair.moving, pair.fixed, moving_labels=pair.moving_labels,
                        fixed_labels=pair.fixed_labels, moving_affine=pair.affine, fixed_affine=pair.affine,
                        factor=1, method=method, interface=interface, verbose=False)
    for warning in report.warnings:
        warn(warning)
    return pair


def _header_warning(moving_volume, fixed_volume, moving_path, fixed_path) -> str:
    """What differs between the two grids, and what :func:`load_pair` does about it."""
    shapes = tuple(moving_volume.image.shape[2:]), tuple(fixed_volume.image.shape[2:])
    spacings = [tuple(round(s, 3) for s in volume.spacing) for volume in (moving_volume, fixed_volume)]
    offset = grid_offset(moving_volume.affine, fixed_volume.affine, shapes[1])
    return (f"the headers of {moving_path} and {fixed_path} put their voxels in different places "
            f"(shapes {shapes[0]} and {shapes[1]}, voxel sizes {spacings[0]} and {spacings[1]} mm; voxel x "
            f"of one lies up to {offset:.2f} mm from voxel x of the other): the moving image is registered "
            f"as its header places it in the world, like ITK and ANTs do. If a header is wrong, repair it "
            f"first.")


def _resample_onto_fixed(pair: NiftiPair) -> str:
    """Put the normalised moving image and its labels on the fixed grid for the registration, in place
    (the originals stay on their own grid for the outputs); return a sentence saying so."""
    shape = tuple(pair.fixed.shape[2:])
    pair.moving = resample_like(pair.moving, pair.moving_affine, shape, pair.affine)
    if pair.moving_labels is not None:
        pair.moving_labels = resample_like(pair.moving_labels, pair.moving_affine, shape, pair.affine)
    return (f"resampled the moving image{' and its labels' if pair.moving_labels is not None else ''} onto "
            f"the fixed grid {shape} through the NIfTI affines for the registration; the outputs read the "
            f"original moving file once, through the field and the headers together.")


def warp_moving(pair: NiftiPair, disp: torch.Tensor, labels: bool = False) -> torch.Tensor | None:
    """The original moving image (or, with ``labels``, its label map) carried onto the fixed grid by
    ``disp`` ``(1, ndim, *fixed)`` (voxels of the fixed grid), with one interpolation.

    Fixed voxel ``x`` reads the moving file at the world point of ``x + disp(x)`` on the fixed grid,
    through the moving image's own header (:func:`regedu.data.resample_like` with ``disp=``): what
    ITK and ANTs do with such a field, boundary included (``padding="itk"``: the edge value up to
    half a voxel outside the moving image, 0 farther out). Images: linear; labels: nearest
    neighbour. ``None`` when there are no labels.
    """
    source = pair.moving_labels_original if labels else pair.moving_original
    if source is None:
        return None
    return resample_like(source, pair.moving_affine, tuple(pair.fixed.shape[2:]), pair.affine, disp=disp,
                         padding="itk")
