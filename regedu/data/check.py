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

from ..checks import check_choice, check_image, check_positive_int
from ..classical.common import gaussian_smooth
from ..losses import global_ncc
from ..metrics import dice
from .io import grid_offset, load_labels, load_nifti

__all__ = ["check_pair", "PairReport", "SMOOTHING_SIGMA"]

SMOOTHING_SIGMA = 2.0  # voxels: the smoothing of the coarsest level of a 3-level pyramid (4x smaller)
_ADVICE = {  # interface -> the fixes the warnings suggest, in that interface's words
    "python": {"affine": "start with an affine stage: regedu.register(moving, fixed, method='default') "
                         "(affine, then B-spline)",
               "mi": "similarity='mi'",
               "normalise": "normalise with regedu.data.normalize_intensity({name})"},
    "cli": {"affine": "start with an affine stage: --method default (affine, then B-spline)",
            "mi": "--option similarity=mi",
            "normalise": "leave out --no-normalize"},
}

MAX_LABELS = 5000  # more distinct values than this: not an anatomical label map (atlases have < 1100)


@dataclass
class PairReport:
    """The result of :func:`check_pair`: the warnings, and the numbers measured as typed fields.

    Attributes:
        warnings: one sentence per problem found (empty when all looks fine).
        moving_shape, fixed_shape: spatial shapes.
        moving_range, fixed_range: ``(min, max)`` of the finite intensities.
        orientation: the axis codes of the two affines (e.g. ``("RAS", "RAS")``), when both are known.
        moving_spacing, fixed_spacing: voxel sizes in mm per axis, when known.
        header_offset: largest distance in mm between voxel ``x`` of one header and of the other
            (same shapes, orientations and spacings only).
        ncc, ncc_smoothed: global squared correlation before registration, as the images are and
            smoothed by :data:`SMOOTHING_SIGMA` voxels (same grids only).
        dice: mean Dice of the label maps before registration (when both are given and usable).

    Fields not measured are ``None``. ``stats`` shows the measured ones by name, for display.
    """

    warnings: list[str] = field(default_factory=list)
    moving_shape: tuple[int, ...] | None = None
    fixed_shape: tuple[int, ...] | None = None
    moving_range: tuple[float, float] | None = None
    fixed_range: tuple[float, float] | None = None
    orientation: tuple[str, str] | None = None
    moving_spacing: tuple[float, ...] | None = None
    fixed_spacing: tuple[float, ...] | None = None
    header_offset: float | None = None
    ncc: float | None = None
    ncc_smoothed: float | None = None
    dice: float | None = None

    @property
    def ok(self) -> bool:
        """True when no warning was raised."""
        return not self.warnings

    @property
    def stats(self) -> dict:
        """The measured fields under display names (``"moving spacing (mm)"``, ``"global NCC before"``,
        ...), rounded to 4 decimals; what ``print(report)`` lists."""
        def rounded(values):
            return None if values is None else tuple(round(float(v), 4) for v in values)

        def number(value):
            return None if value is None else round(value, 4)

        named = [("moving shape", self.moving_shape), ("moving range", rounded(self.moving_range)),
                 ("fixed shape", self.fixed_shape), ("fixed range", rounded(self.fixed_range)),
                 ("orientation", self.orientation),
                 ("moving spacing (mm)", rounded(self.moving_spacing)),
                 ("fixed spacing (mm)", rounded(self.fixed_spacing)),
                 ("header offset (mm)", number(self.header_offset)),
                 ("global NCC before", number(self.ncc)),
                 ("global NCC before, smoothed", number(self.ncc_smoothed)),
                 ("mean Dice before", number(self.dice))]
        return {name: value for name, value in named if value is not None}

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
    """One image of the pair as loaded: tensor, affine (or None), name for messages, and its role
    (``"moving"`` or ``"fixed"``: which fields of the report it fills)."""

    name: str
    image: torch.Tensor
    affine: np.ndarray | None
    role: str


def _load_image(x, name: str, affine) -> _Input:
    if isinstance(x, (str, Path)):
        image, affine, _ = load_nifti(x)
        return _Input(f"{name} ({Path(x).name})", image, affine, name)
    check_image(x, name)
    return _Input(name, x, None if affine is None else np.asarray(affine, dtype=np.float64), name)


def _load_label_map(x, name: str) -> torch.Tensor | None:
    if x is None:
        return None
    if isinstance(x, (str, Path)):
        return load_labels(x).image
    check_image(x, name)
    return x


def check_pair(moving, fixed, *, moving_labels=None, fixed_labels=None, moving_affine=None,
               fixed_affine=None, spacing=None, factor: int = 16, min_ncc: float = 0.3,
               min_dice: float = 0.4, max_anisotropy: float = 1.25, method: str | None = None,
               interface: str = "python", verbose: bool = True) -> PairReport:
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
            (``-regedu.losses.global_ncc``, in ``[0, 1]``) is below this, measured on the
            images smoothed by a Gaussian of :data:`SMOOTHING_SIGMA` voxels: what the coarse
            level of a registration pyramid sees, so that a shift of a few voxels, which
            every method recovers, does not count as misaligned (the report's ``ncc`` and ``ncc_smoothed``).
        min_dice: warn when the mean Dice of the label maps is below this.
        max_anisotropy: warn when the largest voxel side exceeds the smallest by this factor.
        method: the registration method to be used, when known (a name from
            :data:`regedu.api.METHODS`). One that starts with an affine stage (``"default"``,
            ``"affine"``, ``"rigid"``, ``"affine+..."``) needs no rough alignment, so the
            misalignment warnings (low NCC, low Dice) are left out; their numbers stay in the report.
        interface: ``"python"`` or ``"cli"``: the advice names Python calls
            (``method='default'``) or the ``regedu`` command's options (``--method default``).
        verbose: print the report.

    Returns:
        A :class:`PairReport`; ``len(report)`` is the number of warnings.
    """
    factor = check_positive_int(factor, "factor")
    check_choice(interface, "interface", list(_ADVICE))
    advice = _misalignment_advice(method, interface)
    first = _load_image(moving, "moving", moving_affine)
    second = _load_image(fixed, "fixed", fixed_affine)
    report = PairReport()
    for item in (first, second):
        setattr(report, f"{item.role}_shape", tuple(item.image.shape[2:]))
        _check_finite_values(item, report)
        _check_range(item, report, interface)
    same_grid = _check_shapes(first, second, report)
    _check_orientation(first, second, report)
    _check_spacing(first, second, spacing, max_anisotropy, report)
    if same_grid:
        _check_headers(first, second, report)
    _check_divisible(first, second, factor, report)
    if same_grid:
        _check_correlation(first, second, min_ncc, report, advice)
        labels = (_load_label_map(moving_labels, "moving_labels"),
                  _load_label_map(fixed_labels, "fixed_labels"))
        if labels[0] is not None and labels[1] is not None:
            _check_dice(*labels, first.image.shape[2:], min_dice, report, advice)
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


def _check_range(item: _Input, report: PairReport, interface: str) -> None:
    values = _finite(item.image)
    low, high = float(values.min()), float(values.max())
    setattr(report, f"{item.role}_range", (low, high))
    if low < -1e-6 or high > 1 + 1e-6:
        fix = _ADVICE[interface]["normalise"].format(name=item.role)
        report.warnings.append(
            f"{item.name} intensities span [{low:.4g}, {high:.4g}], outside [0, 1]: {fix} (percentile "
            f"clip, then min-max to [0, 1])."
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
    report.orientation = (codes[0], codes[1])
    if codes[0] != codes[1]:
        report.warnings.append(
            f"{first.name} is oriented {codes[0]} but {second.name} is {codes[1]}: the same tensor axis "
            f"points in different anatomical directions. Load both with regedu.data.load_nifti(path) "
            f"(canonical=True, the default) so that both are RAS."
        )


def _check_headers(first: _Input, second: _Input, report: PairReport) -> None:
    """Same shape, but do the headers put voxel ``x`` at the same world point? An origin shift or a
    rotation keeps the axis codes and voxel sizes, so only the affines themselves tell."""
    if first.affine is None or second.affine is None:
        return
    codes = report.orientation or ("", "")
    spacings = report.moving_spacing, report.fixed_spacing
    if codes[0] != codes[1] or not np.allclose(spacings[0], spacings[1], rtol=1e-3):
        return  # already reported, with its own fix
    shape = tuple(second.image.shape[2:])
    offset = grid_offset(first.affine, second.affine, shape)
    report.header_offset = float(offset)
    side = float(np.sqrt((second.affine[:3, :len(shape)] ** 2).sum(axis=0)).min())
    if offset > 1e-3 * side:
        report.warnings.append(
            f"the headers put voxel x of {first.name} up to {offset:.3g} mm away from voxel x of "
            f"{second.name} (an origin shift, a rotation or a flip): registering the arrays voxel to "
            f"voxel ignores that. Resample the moving image onto the fixed grid first with "
            f"regedu.data.resample_like(moving, moving_affine, {shape}, fixed_affine)."
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
        setattr(report, f"{item.role}_spacing", voxel)
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


def _misalignment_advice(method: str | None, interface: str) -> dict | None:
    """The fixes a misalignment warning suggests, or ``None`` when ``method`` starts with an affine
    stage (then a rough misalignment is its job, and the warnings would only mislead)."""
    if method is not None:
        from ..api import starts_with_affine  # regedu.api imports the methods; only needed here

        if starts_with_affine(method):
            return None
    return _ADVICE[interface]


def _check_correlation(first: _Input, second: _Input, min_ncc: float, report: PairReport,
                       advice: dict | None) -> None:
    """Global NCC as it is and on smoothed images; warn (with ``advice``) when the smoothed one is low."""
    a, b = _finite(first.image), _finite(second.image)
    if a.shape[1] != b.shape[1]:
        return
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    score = float(-global_ncc(b, a))
    smoothed = float(-global_ncc(gaussian_smooth(b, SMOOTHING_SIGMA), gaussian_smooth(a, SMOOTHING_SIGMA)))
    report.ncc, report.ncc_smoothed = score, smoothed
    if smoothed < min_ncc and advice is not None:
        report.warnings.append(
            f"the global NCC (squared correlation of the intensities) before registration is "
            f"{smoothed:.3f} < {min_ncc} even on images smoothed by {SMOOTHING_SIGMA:g} voxels ({score:.3f} "
            f"as they are): the images are far apart, or differ in contrast. Deformable methods expect a "
            f"rough alignment: {advice['affine']}; check that both show the same anatomy, and for "
            f"different contrasts use {advice['mi']}."
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


def _too_many_labels(maps: Sequence[torch.Tensor], report: PairReport) -> bool:
    """Warn (and return True) when a label map has more than :data:`MAX_LABELS` distinct values."""
    for labels, name in zip(maps, ("moving_labels", "fixed_labels"), strict=True):
        count = int(torch.unique(labels).numel())
        if count > MAX_LABELS:
            report.warnings.append(
                f"{name} holds {count} distinct values, more than the {MAX_LABELS} labels an anatomical "
                f"label map has: it looks like an image (or numbered instances) saved as integers. Dice "
                f"skipped; give the label map of the image instead."
            )
            return True
    return False


def _check_dice(moving_labels: torch.Tensor, fixed_labels: torch.Tensor, spatial: Sequence[int],
                min_dice: float, report: PairReport, advice: dict | None) -> None:
    maps = []
    for labels, name in ((moving_labels, "moving_labels"), (fixed_labels, "fixed_labels")):
        if tuple(labels.shape[2:]) != tuple(spatial) or labels.shape[1] != 1:
            report.warnings.append(
                f"{name} has shape {tuple(labels.shape)} but the images are {tuple(spatial)} with one "
                f"label channel expected: (B, 1, {', '.join(map(str, spatial))}). Dice skipped."
            )
            return
        maps.append(_integer_labels(labels, name, report))
    if maps[0] is None or maps[1] is None or _too_many_labels(maps, report):
        return
    scores = dice(maps[0], maps[1])
    if scores.numel() == 0:
        report.warnings.append("the label maps contain no label other than 0 (background): Dice skipped.")
        return
    mean = float(torch.nanmean(scores))
    report.dice = mean
    if mean < min_dice and advice is not None:
        report.warnings.append(
            f"the mean Dice of the label maps before registration is {mean:.3f} < {min_dice}: the "
            f"structures barely overlap. Check that both maps use the same label numbers, then "
            f"{advice['affine']}."
        )
