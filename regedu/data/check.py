"""``check_pair``: look at a moving/fixed pair before registering it, and say what may go wrong.

Users call it on their own data (tensors, or paths to NIfTI files). It does not
change anything; it returns a :class:`PairReport` whose ``.warnings`` are plain
sentences, each naming the problem, the numbers behind it and the fix. The
report is printed unless ``verbose=False``.

What is checked, and why it matters:

* NaN or infinite values: every warp and loss turns them into NaN gradients.
* intensities outside ``[0, 1]``: losses and learning rates in regedu assume that range.
* different spatial shapes or orientations: voxel ``x`` of one image must mean
  the same place as voxel ``x`` of the other.
* anisotropic or different voxel spacing: regularisers and convolutions treat
  every axis alike, in voxels.
* a large initial misalignment: low global correlation of the intensities, or
  low Dice of the given label maps, before any registration. Deformable methods
  assume the pair is roughly aligned already (affinely).
* sizes not divisible by the network's down-sampling factor, with the size to pad to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..checks import check_image, check_positive_int
from ..losses import global_ncc
from ..metrics import dice
from .io import load_labels, load_nifti

__all__ = ["check_pair", "PairReport"]


@dataclass
class PairReport:
    """The result of :func:`check_pair`.

    Attributes:
        warnings: one sentence per problem found (empty when all looks fine).
        stats: the numbers measured (shapes, intensity ranges, spacing,
            orientation codes, ``ncc`` and ``dice`` before registration when computed).
    """

    warnings: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no warning was raised."""
        return not self.warnings

    def __len__(self) -> int:
        return len(self.warnings)

    def __iter__(self):
        return iter(self.warnings)

    def __str__(self) -> str:
        count = f"{len(self.warnings)} warning(s)" if self.warnings else "no problems found"
        lines = [f"check_pair: {count}"]
        lines += [f"  {k + 1}. {text}" for k, text in enumerate(self.warnings)]
        lines += [f"  {name}: {value}" for name, value in self.stats.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PairReport({len(self.warnings)} warning(s))"


@dataclass
class _Input:
    """One image of the pair as loaded: tensor, affine (or None) and name for messages."""

    name: str
    image: torch.Tensor
    affine: np.ndarray | None


def _load_image(x, name: str, affine) -> _Input:
    if isinstance(x, (str, Path)):
        image, affine, _ = load_nifti(x)
        return _Input(f"{name} ({Path(x).name})", image, affine)
    check_image(x, name)
    return _Input(name, x, None if affine is None else np.asarray(affine, dtype=np.float64))


def _load_label_map(x, name: str) -> torch.Tensor | None:
    if x is None:
        return None
    if isinstance(x, (str, Path)):
        return load_labels(x).image
    check_image(x, name)
    return x


def check_pair(moving, fixed, *, moving_labels=None, fixed_labels=None, moving_affine=None,
               fixed_affine=None, spacing=None, factor: int = 16, min_ncc: float = 0.3,
               min_dice: float = 0.4, max_anisotropy: float = 1.25, verbose: bool = True) -> PairReport:
    """Diagnose a moving/fixed pair before registration.

    Args:
        moving, fixed: tensors ``(B, C, *spatial)`` or paths to NIfTI files
            (loaded with :func:`regedu.data.load_nifti`, which gives their affines).
        moving_labels, fixed_labels: optional integer label maps (tensors or
            paths) on the same grids; their Dice before registration is reported.
        moving_affine, fixed_affine: ``(4, 4)`` voxel-to-world matrices for tensor
            inputs, when known (orientation and spacing are read from them).
        spacing: voxel size in mm per axis (or one number) for both images, when
            no affine is known.
        factor: the network's down-sampling factor (``2**levels``); sizes should be
            divisible by it.
        min_ncc: warn when the global squared correlation of the intensities
            (``-regedu.losses.global_ncc``, in ``[0, 1]``) is below this.
        min_dice: warn when the mean Dice of the label maps is below this.
        max_anisotropy: warn when the largest voxel side exceeds the smallest by this factor.
        verbose: print the report.

    Returns:
        A :class:`PairReport`; ``len(report)`` is the number of warnings.
    """
    factor = check_positive_int(factor, "factor")
    first = _load_image(moving, "moving", moving_affine)
    second = _load_image(fixed, "fixed", fixed_affine)
    report = PairReport()
    for item in (first, second):
        report.stats[f"{item.name.split()[0]} shape"] = tuple(item.image.shape[2:])
        _check_finite_values(item, report)
        _check_range(item, report)
    same_grid = _check_shapes(first, second, report)
    _check_orientation(first, second, report)
    _check_spacing(first, second, spacing, max_anisotropy, report)
    _check_divisible(first, second, factor, report)
    if same_grid:
        _check_correlation(first, second, min_ncc, report)
        labels = (_load_label_map(moving_labels, "moving_labels"),
                  _load_label_map(fixed_labels, "fixed_labels"))
        if labels[0] is not None and labels[1] is not None:
            _check_dice(*labels, first.image.shape[2:], min_dice, report)
    if verbose:
        print(report)
    return report


def _finite(image: torch.Tensor) -> torch.Tensor:
    """The image as floating values with NaN/inf replaced by 0, for the statistics."""
    values = image if image.is_floating_point() else image.double()
    return torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _check_finite_values(item: _Input, report: PairReport) -> None:
    if not item.image.is_floating_point():
        return
    n_nan = int(torch.isnan(item.image).sum())
    n_inf = int(torch.isinf(item.image).sum())
    if n_nan or n_inf:
        report.warnings.append(
            f"{item.name} contains {n_nan} NaN and {n_inf} infinite values: every warp and loss will "
            f"turn them into NaN. Replace them (torch.nan_to_num) or find where they come from."
        )


def _check_range(item: _Input, report: PairReport) -> None:
    values = _finite(item.image)
    low, high = float(values.min()), float(values.max())
    short = item.name.split()[0]
    report.stats[f"{short} range"] = (round(low, 4), round(high, 4))
    if low < -1e-6 or high > 1 + 1e-6:
        report.warnings.append(
            f"{item.name} intensities span [{low:.4g}, {high:.4g}], outside [0, 1]: normalise with "
            f"regedu.data.normalize_intensity({short}) (percentile clip, then min-max to [0, 1])."
        )
    if high - low <= 0:
        report.warnings.append(f"{item.name} is constant ({low:.4g} everywhere): there is nothing to align.")


def _check_shapes(first: _Input, second: _Input, report: PairReport) -> bool:
    a, b = tuple(first.image.shape[2:]), tuple(second.image.shape[2:])
    if a == b:
        return True
    report.warnings.append(
        f"{first.name} has spatial shape {a} but {second.name} has {b}: voxel x must mean the same place "
        f"in both. Resample the moving image onto the fixed grid with regedu.data.resample_like(moving, "
        f"moving_affine, {b}, fixed_affine) (load_nifti gives the affines)."
    )
    return False


def _check_orientation(first: _Input, second: _Input, report: PairReport) -> None:
    if first.affine is None or second.affine is None:
        return
    codes = ["".join(nib.aff2axcodes(item.affine)) for item in (first, second)]
    report.stats["orientation"] = tuple(codes)
    if codes[0] != codes[1]:
        report.warnings.append(
            f"{first.name} is oriented {codes[0]} but {second.name} is {codes[1]}: the same tensor axis "
            f"points in different anatomical directions. Load both with regedu.data.load_nifti(path) "
            f"(canonical=True, the default) so that both are RAS."
        )


def _spacing_of(item: _Input, spacing, ndim: int) -> tuple[float, ...] | None:
    if item.affine is not None:
        return tuple(float(s) for s in np.sqrt((item.affine[:3, :ndim] ** 2).sum(axis=0)))
    if spacing is None:
        return None
    values = [float(spacing)] * ndim if np.isscalar(spacing) else [float(s) for s in spacing]
    if len(values) != ndim:
        raise ValueError(f"`spacing` must have {ndim} entries (or be one number), got {list(values)}.")
    return tuple(values)


def _check_spacing(first: _Input, second: _Input, spacing, max_anisotropy: float,
                   report: PairReport) -> None:
    found = []
    for item in (first, second):
        voxel = _spacing_of(item, spacing, item.image.dim() - 2)
        found.append(voxel)
        if voxel is None:
            continue
        report.stats[f"{item.name.split()[0]} spacing (mm)"] = tuple(round(s, 4) for s in voxel)
        ratio = max(voxel) / min(voxel)
        if ratio > max_anisotropy:
            sides = " x ".join(f"{s:.3g}" for s in voxel)
            report.warnings.append(
                f"{item.name} has anisotropic voxels ({sides} mm, ratio {ratio:.2f}): regularisers and "
                f"convolutions treat every axis alike, in voxels. Resample to isotropic voxels of "
                f"{min(voxel):.3g} mm with regedu.data.resample_like."
            )
    if found[0] is not None and found[1] is not None and not np.allclose(found[0], found[1], rtol=1e-3):
        report.warnings.append(
            f"the voxel sizes differ: {found[0]} mm ({first.name}) and {found[1]} mm ({second.name}). "
            f"Resample the moving image onto the fixed grid with regedu.data.resample_like."
        )


def _next_multiple(size: int, factor: int) -> int:
    return -(-size // factor) * factor


def _check_divisible(first: _Input, second: _Input, factor: int, report: PairReport) -> None:
    shapes = {tuple(first.image.shape[2:]): first.name}
    shapes.setdefault(tuple(second.image.shape[2:]), second.name)
    for shape, name in shapes.items():
        if all(n % factor == 0 for n in shape):
            continue
        target = tuple(_next_multiple(n, factor) for n in shape)
        whose = name if len(shapes) > 1 else "the images"
        report.warnings.append(
            f"the spatial shape {shape} of {whose} is not divisible by {factor} (the network's "
            f"down-sampling factor): pad to {target} with regedu.data.pad_to_multiple(x, {factor}) "
            f"and crop the result back with regedu.data.unpad."
        )


def _check_correlation(first: _Input, second: _Input, min_ncc: float, report: PairReport) -> None:
    a, b = _finite(first.image), _finite(second.image)
    if a.shape[1] != b.shape[1]:
        return
    dtype = torch.promote_types(a.dtype, b.dtype)
    score = float(-global_ncc(b.to(dtype), a.to(dtype)))
    report.stats["global NCC before"] = round(score, 4)
    if score < min_ncc:
        report.warnings.append(
            f"the global NCC (squared correlation of the intensities) before registration is "
            f"{score:.3f} < {min_ncc}: the images are far apart, or differ in contrast. Deformable "
            f"methods expect a rough (affine) alignment: start with an affine registration "
            f"(regedu.register(moving, fixed, method='affine')) and check both show the same anatomy."
        )


def _integer_labels(labels: torch.Tensor, name: str, report: PairReport) -> torch.Tensor | None:
    if not labels.is_floating_point():
        return labels
    if bool((labels != labels.round()).any()) or not bool(torch.isfinite(labels).all()):
        report.warnings.append(
            f"{name} holds non-integer values, so it is not a label map (Dice skipped). Resample label "
            f"maps with nearest neighbour (regedu.warps.warp_labels), never with linear interpolation."
        )
        return None
    return labels.long()


def _check_dice(moving_labels: torch.Tensor, fixed_labels: torch.Tensor, spatial: Sequence[int],
                min_dice: float, report: PairReport) -> None:
    maps = []
    for labels, name in ((moving_labels, "moving_labels"), (fixed_labels, "fixed_labels")):
        if tuple(labels.shape[2:]) != tuple(spatial) or labels.shape[1] != 1:
            report.warnings.append(
                f"{name} has shape {tuple(labels.shape)} but the images are {tuple(spatial)} with one "
                f"label channel expected: (B, 1, {', '.join(map(str, spatial))}). Dice skipped."
            )
            return
        maps.append(_integer_labels(labels, name, report))
    if maps[0] is None or maps[1] is None:
        return
    scores = dice(maps[0], maps[1])
    if scores.numel() == 0:
        report.warnings.append("the label maps contain no label other than 0 (background): Dice skipped.")
        return
    mean = float(torch.nanmean(scores))
    report.stats["mean Dice before"] = round(mean, 4)
    if mean < min_dice:
        report.warnings.append(
            f"the mean Dice of the label maps before registration is {mean:.3f} < {min_dice}: the "
            f"structures barely overlap. Check that both maps use the same label numbers, then start "
            f"with an affine registration (regedu.register(moving, fixed, method='affine'))."
        )
