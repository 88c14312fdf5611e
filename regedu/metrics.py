"""Evaluation metrics: how good is a registration, and how plausible is its field?

Every metric returns one value per batch item (and per label where labels
apply), as a tensor whose first axis is the batch, computed without gradient
and placed on the input's device. Lower is better for all of them except Dice.

* overlap of label maps: :func:`dice` (1 = perfect, 0 = no overlap), averaged over labels by
  :func:`mean_dice`, after carrying the moving labels through a field by :func:`mean_dice_after_warp`;
* boundary distance of label maps: :func:`hd95` (voxels, or mm with ``voxel_size``);
* landmark distance: :func:`tre` (voxels, or mm with ``voxel_size``), one number per landmark
  from :func:`landmark_errors`;
* distance to a known true field (synthetic pairs): :func:`end_point_error` (voxels, or mm);
* round trip through two fields that should be inverses: :func:`inverse_consistency` (voxels);
* regularity of a displacement field, from its Jacobian determinant
  (:func:`regedu.warps.jacobian_det`): :func:`folding_fraction`,
  :func:`sdlogj`, :func:`min_jacobian`.

Undefined values are NaN, never a made-up number: Dice and HD95 of a label
that neither map contains (HD95 is ``inf`` when only one of them contains it).
Average such tables with ``torch.nanmean``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch
from scipy import ndimage

from . import kernels
from .checks import (
    check_batch,
    check_choice,
    check_disp,
    check_finite,
    check_image,
    check_points,
    check_points_inside,
    check_same_shape,
    check_tensor,
)
from .deprecation import renamed_keyword
from .warps import compose, jacobian_det, warp_labels

__all__ = ["dice", "mean_dice", "mean_dice_after_warp",
           "folding_fraction", "sdlogj", "min_jacobian", "hd95", "tre", "landmark_errors",
           "end_point_error", "inverse_consistency"]

_SDLOGJ_CONVENTIONS = ("clip", "learn2reg")
_LEARN2REG_CROP = 2  # voxels dropped at each border by the Learn2Reg evaluation
_LEARN2REG_SHIFT = 3.0  # added to the determinant by the Learn2Reg evaluation before the log
_LEARN2REG_MAX = 1e9  # upper clip of the Learn2Reg evaluation


# ---------------------------------------------------------------------------
# input checks (composed from regedu.checks)
# ---------------------------------------------------------------------------


def _check_label_map(x, name: str, ndim: int | None = None) -> int:
    """Check an integer (or boolean) label map ``(B, 1, *spatial)``; return ``ndim``."""
    found = check_image(x, name, ndim)
    if x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"`{name}` must be an integer label map (or a boolean mask), got dtype {x.dtype}. "
            f"Label maps read as floats can be converted with `{name}.round().long()`."
        )
    if x.shape[1] != 1:
        raise ValueError(
            f"`{name}` must be a label map with one channel, shape (B, 1, *spatial), got shape "
            f"{tuple(x.shape)}. A one-hot map (B, L, *spatial) converts with "
            f"`{name}.argmax(1, keepdim=True)`."
        )
    return found


def _check_label_pair(a, b) -> tuple[int, int]:
    """Check two label maps that are compared voxel by voxel; return ``(ndim, batch)``."""
    ndim = _check_label_map(a, "a")
    _check_label_map(b, "b", ndim)
    check_same_shape(a, b, "a", "b")
    return ndim, check_batch(a, b, "a", "b")


def _label_values(a: torch.Tensor, b: torch.Tensor, labels) -> list[int]:
    """The label values to score: ``labels`` as a list, or every value but 0 found in ``a`` or ``b``."""
    if labels is None:
        found = set(torch.unique(a).tolist()) | set(torch.unique(b).tolist())
        values = sorted(int(v) for v in found if v != 0)
        if not values:
            raise ValueError(
                "`a` and `b` contain only the background label 0, so there is nothing to score. "
                "Pass labels=[0] to score the background, or check that the right maps were given."
            )
        return values
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        labels = labels.tolist()
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        labels = [labels]
    if not isinstance(labels, Sequence) or len(labels) == 0:
        raise ValueError(f"`labels` must be a non-empty list of integer label values, got {labels!r}.")
    for value in labels:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(
                f"`labels` must contain integer label values, got {value!r} "
                f"({type(value).__name__}) in {list(labels)!r}."
            )
    return [int(v) for v in labels]


def _check_field(disp, name: str = "disp") -> int:
    """Check a finite displacement field ``(B, ndim, *spatial)``; return ``ndim``."""
    ndim = check_disp(disp, name)
    check_finite(disp, name)
    return ndim


def _check_voxel_size(voxel_size, ndim: int) -> tuple[float, ...]:
    """Voxel size per axis in mm: ``None`` -> all 1 (results in voxels), a number -> isotropic."""
    if voxel_size is None:
        return (1.0,) * ndim
    if isinstance(voxel_size, (torch.Tensor, np.ndarray)):
        voxel_size = voxel_size.tolist()
    if isinstance(voxel_size, Real) and not isinstance(voxel_size, bool):
        voxel_size = [voxel_size] * ndim
    if (not isinstance(voxel_size, Sequence) or len(voxel_size) != ndim
            or not all(isinstance(s, Real) and not isinstance(s, bool) for s in voxel_size)):
        raise ValueError(
            f"`voxel_size` must give the voxel size in mm along each of the {ndim} axes, in tensor "
            f"axis order (or one number for isotropic voxels), got {voxel_size!r}."
        )
    values = tuple(float(s) for s in voxel_size)
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"`voxel_size` values must be finite and positive (mm per voxel), got {values}.")
    return values


_check_points, _check_inside = check_points, check_points_inside  # their old private names here


# ---------------------------------------------------------------------------
# overlap
# ---------------------------------------------------------------------------


@torch.no_grad()
def dice(a: torch.Tensor, b: torch.Tensor, labels=None) -> torch.Tensor:
    """Dice overlap of each label: ``2 |A ∩ B| / (|A| + |B|)``, shape ``(B, L)``.

    Args:
        a, b: integer label maps (or boolean masks) ``(B, 1, *spatial)`` on one grid;
            a batch of 1 is compared with every item of the other.
        labels: the label values to score, in the order of the output columns.
            Default: every value found in ``a`` or ``b`` except 0 (background), sorted.

    Returns:
        ``(B, L)`` in the default floating dtype, on the inputs' device. Range
        [0, 1], higher is better: 1 for identical regions, 0 for disjoint ones.
        A label that neither map of an item contains gives NaN (0 / 0: there is
        nothing to overlap); average with ``torch.nanmean`` to skip it.
    """
    _, batch = _check_label_pair(a, b)
    values = torch.tensor(_label_values(a, b, labels), dtype=torch.int64, device=a.device)
    table, column = torch.unique(values, return_inverse=True)  # sorted distinct labels; output -> table
    slot_a = _label_slots(a.expand(batch, *a.shape[1:]), table)
    slot_b = _label_slots(b.expand(batch, *b.shape[1:]), table)
    slots = len(table) + 1  # one slot per label, the last for "a value not scored"
    offset = torch.arange(batch, device=a.device)[:, None] * slots
    count_a = _count_slots(slot_a + offset, batch * slots)
    count_b = _count_slots(slot_b + offset, batch * slots)
    same = slot_a == slot_b
    overlap = _count_slots((slot_a + offset)[same], batch * slots)
    dtype = torch.get_default_dtype()
    scores = 2 * overlap.to(dtype) / (count_a + count_b).to(dtype)
    return scores.view(batch, slots)[:, column]


def _label_slots(label_map: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index of each voxel's label in the sorted ``table`` ``(L,)``, ``L`` where it is not in it.

    ``label_map`` ``(B, 1, *spatial)`` -> ``(B, N)`` int64, ``N`` voxels per item; one binary
    search per voxel, so the cost is ``N log L`` and the memory ``O(N)`` whatever ``L`` is.
    """
    flat = label_map.reshape(label_map.shape[0], -1).to(torch.int64).contiguous()
    slot = torch.searchsorted(table, flat).clamp_(max=len(table) - 1)
    return torch.where(table[slot] == flat, slot, len(table))


def _count_slots(index: torch.Tensor, size: int) -> torch.Tensor:
    """How many times each of ``0 .. size - 1`` occurs in ``index`` (exact int64 counts), ``(size,)``."""
    return torch.bincount(index.flatten(), minlength=size)


@torch.no_grad()
def mean_dice(a: torch.Tensor, b: torch.Tensor, labels=None) -> torch.Tensor:
    """Mean Dice over labels of each item, shape ``(B,)``: :func:`dice` averaged with ``nanmean``.

    ``a``, ``b`` and ``labels`` as in :func:`dice` (default: every label but 0 found in either map).
    A label that neither map of an item contains is left out of that item's mean; an item with no
    label at all gives NaN. ``float(mean_dice(a, b).mean())`` is the usual one-number summary.
    """
    return dice(a, b, labels).nanmean(dim=1)


@torch.no_grad()
def mean_dice_after_warp(moving_labels: torch.Tensor, fixed_labels: torch.Tensor, disp: torch.Tensor,
                         labels=None) -> torch.Tensor:
    """Mean Dice of each item after a registration, shape ``(B,)``: how well ``disp`` carries the
    moving labels onto the fixed ones.

    ``moving_labels`` ``(B or 1, 1, *spatial)`` are warped by ``disp`` ``(B, ndim, *spatial)``, in
    voxels of the fixed grid, with :func:`regedu.warps.warp_labels` (nearest neighbour), then
    compared with ``fixed_labels`` by :func:`mean_dice` (``labels`` as there).
    """
    return mean_dice(warp_labels(moving_labels, disp), fixed_labels, labels)


# ---------------------------------------------------------------------------
# regularity of the field (Jacobian determinant)
# ---------------------------------------------------------------------------


@torch.no_grad()
def folding_fraction(disp: torch.Tensor) -> torch.Tensor:
    """Share of voxels where the map ``x -> x + disp(x)`` folds: ``det J <= 0``, shape ``(B,)``.

    ``disp`` is ``(B, ndim, *spatial)`` in voxels. The result is a fraction in
    [0, 1] (multiply by 100 for the percentage usually reported), 0 for a
    field that nowhere folds; lower is better. The determinant is the same in
    voxel and mm units, so no spacing is needed.
    """
    _check_field(disp)
    folded = jacobian_det(disp) <= 0
    return folded.flatten(1).to(disp.dtype).mean(1)


@torch.no_grad()
def min_jacobian(disp: torch.Tensor) -> torch.Tensor:
    """Smallest Jacobian determinant of ``x -> x + disp(x)`` per item, shape ``(B,)``.

    Positive means the map is locally invertible everywhere (1 = no volume
    change); zero or negative means it folds somewhere.
    """
    _check_field(disp)
    return jacobian_det(disp).flatten(1).amin(1)


@torch.no_grad()
def sdlogj(disp: torch.Tensor, clip: float = 1e-9, convention: str = "clip") -> torch.Tensor:
    """Standard deviation of the log Jacobian determinant, shape ``(B,)``; lower is smoother.

    ``J(x) = det(I + grad disp(x))`` from :func:`regedu.warps.jacobian_det`; the
    standard deviation is taken over all voxels of an item (population
    formula, like ``numpy.std``). 0 for any field with a constant determinant
    (e.g. an affine map), whatever its volume change.

    Two conventions:

    * ``"clip"`` (default): ``std(log(max(J, clip)))`` over every voxel. A folded
      voxel (``J <= 0``) counts as ``log(clip)`` (about -20.7 for 1e-9), so any
      folding makes the value large: report :func:`folding_fraction` beside it.
    * ``"learn2reg"``: the formula of the Learn2Reg challenge evaluation,
      ``std(log(clip(J + 3, clip, 1e9)))`` over the Jacobian cropped by 2 voxels
      at every border (the challenge's finite differences are wrong there). The
      ``+ 3`` keeps the log defined for mildly folded voxels but shrinks the
      number: near ``J = 1``, ``log(J + 3) ~ log 4 + (J - 1) / 4`` while
      ``log J ~ J - 1``, so values are about 4 times smaller than with ``"clip"``.
      Compare only numbers computed with the same convention.

    Args:
        disp: ``(B, ndim, *spatial)`` displacement in voxels (at least 5 voxels
            per axis for ``"learn2reg"``).
        clip: smallest value allowed into the log, > 0.
        convention: ``"clip"`` or ``"learn2reg"``.

    Returns:
        ``(B,)`` in ``disp``'s dtype and device, >= 0.
    """
    _check_field(disp)
    check_choice(convention, "convention", _SDLOGJ_CONVENTIONS)
    if isinstance(clip, bool) or not isinstance(clip, Real) or not 0 < clip < _LEARN2REG_MAX:
        raise ValueError(f"`clip` must be a small positive number such as 1e-9, got {clip!r}.")
    det = jacobian_det(disp)
    if convention == "learn2reg":
        det = _crop_border(det, _LEARN2REG_CROP) + _LEARN2REG_SHIFT
        log_det = torch.log(det.clamp(clip, _LEARN2REG_MAX))
    else:
        log_det = torch.log(det.clamp(min=clip))
    return log_det.flatten(1).std(dim=1, correction=0)


def _crop_border(volume: torch.Tensor, width: int) -> torch.Tensor:
    """Drop ``width`` voxels at both ends of every spatial axis of ``(B, *spatial)``."""
    spatial = volume.shape[1:]
    if min(spatial) <= 2 * width:
        raise ValueError(
            f"the Learn2Reg convention drops {width} voxels at every border, so `disp` needs more "
            f"than {2 * width} voxels along every axis, got spatial shape {tuple(spatial)}. "
            f"Use convention='clip' for small fields."
        )
    return volume[(slice(None),) + (slice(width, -width),) * len(spatial)]


# ---------------------------------------------------------------------------
# boundary distance
# ---------------------------------------------------------------------------


@torch.no_grad()
def hd95(a: torch.Tensor, b: torch.Tensor, labels=None, voxel_size=None, *, spacing=None) -> torch.Tensor:
    """95th-percentile symmetric Hausdorff distance between label surfaces, shape ``(B, L)``.

    For each label, the surface of a region is its voxels that have a face
    neighbour outside it (voxels on the image border included). Every surface
    voxel of ``a`` gets its Euclidean distance to the nearest surface voxel of
    ``b`` (and vice versa); HD95 is the **larger of the two directed 95th
    percentiles** (linear interpolation, like ``numpy.percentile``). This is
    the definition of MONAI, of DeepMind's ``surface-distance`` package and of
    the Learn2Reg evaluation; some tools (e.g. medpy) instead take the 95th
    percentile of both distance sets pooled together, which can be smaller.

    Args:
        a, b: integer label maps (or boolean masks) ``(B, 1, *spatial)`` on one grid.
        labels: label values to score (default: every value but 0 found in ``a`` or ``b``).
        voxel_size: voxel size in mm per axis, in tensor axis order (or one number);
            ``None`` gives distances in voxels.

    Returns:
        ``(B, L)`` in the default floating dtype on the inputs' device; >= 0,
        0 for identical regions, lower is better. A label present in only one
        of the two maps gives ``inf`` (no surface to measure to); a label in
        neither gives NaN. Average with ``torch.nanmean`` after dealing with
        ``inf`` (e.g. ``torch.isfinite``).

    Runs on the CPU with ``scipy.ndimage`` (each label is cropped to the box
    around both regions first, so small structures in large volumes are cheap).
    """
    ndim, batch = _check_label_pair(a, b)
    voxel_size = renamed_keyword(voxel_size, spacing, "voxel_size", "spacing")
    sampling = _check_voxel_size(voxel_size, ndim)
    values = _label_values(a, b, labels)
    maps_a = a.expand(batch, *a.shape[1:])[:, 0].cpu().numpy()
    maps_b = b.expand(batch, *b.shape[1:])[:, 0].cpu().numpy()
    distances = [
        [_hd95_of_masks(maps_a[item] == value, maps_b[item] == value, sampling) for value in values]
        for item in range(batch)
    ]
    return torch.tensor(distances, dtype=torch.get_default_dtype(), device=a.device)


def _hd95_of_masks(mask_a: np.ndarray, mask_b: np.ndarray, sampling: tuple[float, ...]) -> float:
    """HD95 between two boolean masks (numpy, one item): max of the two directed 95th percentiles."""
    if not mask_a.any() and not mask_b.any():
        return math.nan
    if not mask_a.any() or not mask_b.any():
        return math.inf
    box = ndimage.find_objects((mask_a | mask_b).astype(np.int8))[0]
    surface_a, surface_b = _surface(mask_a[box]), _surface(mask_b[box])
    a_to_b = _distance_to(surface_b, sampling)[surface_a]
    b_to_a = _distance_to(surface_a, sampling)[surface_b]
    return float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one face neighbour outside it (or outside the array)."""
    return mask & ~ndimage.binary_erosion(mask)


def _distance_to(surface: np.ndarray, sampling: tuple[float, ...]) -> np.ndarray:
    """Euclidean distance (in units of ``sampling``) from every voxel to the nearest ``surface`` voxel."""
    return ndimage.distance_transform_edt(~surface, sampling=sampling)


# ---------------------------------------------------------------------------
# landmark distance
# ---------------------------------------------------------------------------


@torch.no_grad()
def tre(points_fixed: torch.Tensor, points_moving: torch.Tensor, disp: torch.Tensor,
        voxel_size=None, *, spacing=None) -> torch.Tensor:
    """Target registration error: mean distance between mapped and true landmarks, shape ``(B,)``.

    A fixed landmark ``x`` maps to ``x + disp(x)`` in the moving image (warps
    pull, so ``disp`` on the fixed grid points into the moving image); its
    error is the Euclidean distance to the corresponding moving landmark.
    ``disp`` is interpolated linearly between voxels, exactly as
    :func:`regedu.warps.warp` would sample it. (The Learn2Reg evaluation
    samples it with cubic splines, ``scipy.ndimage.map_coordinates``' default;
    results differ slightly for non-smooth fields.)

    Args:
        points_fixed: ``(B, N, ndim)`` voxel coordinates on the fixed grid, in
            tensor axis order; they must lie inside the grid.
        points_moving: ``(B, N, ndim)`` the corresponding voxel coordinates in the
            moving image (same grid size as the fixed one). On a synthetic pair whose true
            field is known, ``regedu.data.map_landmarks(points_fixed, true_disp)``; landmarks
            to start from: ``regedu.data.landmarks(fixed_labels)``.
        disp: ``(B, ndim, *spatial)`` displacement in voxels.
        voxel_size: voxel size in mm per axis (or one number); ``None`` gives voxels.
        A batch of 1 in any argument is shared by every item.

    Returns:
        ``(B,)`` mean error over the N landmarks, in ``disp``'s dtype and device;
        >= 0, lower is better. :func:`landmark_errors` gives the error of each landmark.
    """
    voxel_size = renamed_keyword(voxel_size, spacing, "voxel_size", "spacing")
    return landmark_errors(points_fixed, points_moving, disp, voxel_size).mean(dim=1)


@torch.no_grad()
def landmark_errors(points_fixed: torch.Tensor, points_moving: torch.Tensor, disp: torch.Tensor,
                    voxel_size=None) -> torch.Tensor:
    """The error of each landmark, shape ``(B, N)``: :func:`tre` before the mean over landmarks.

    ``|x + disp(x) - y|`` for each fixed landmark ``x`` and its moving landmark ``y``, in voxels
    (mm with ``voxel_size``); the arguments are :func:`tre`'s. A mean hides a landmark that is far
    off: look at the largest one too, ``landmark_errors(...).amax(dim=1)``.
    """
    ndim = _check_field(disp)
    _check_points(points_fixed, "points_fixed", ndim)
    _check_points(points_moving, "points_moving", ndim)
    if points_fixed.shape[1] != points_moving.shape[1]:
        raise ValueError(
            f"`points_fixed` and `points_moving` must pair up landmarks one to one, got "
            f"{points_fixed.shape[1]} and {points_moving.shape[1]} landmarks."
        )
    batch = max(check_batch(points_fixed, disp, "points_fixed", "disp"),
                check_batch(points_moving, disp, "points_moving", "disp"),
                check_batch(points_fixed, points_moving, "points_fixed", "points_moving"))
    _check_inside(points_fixed, "points_fixed", disp.shape[2:])
    mm_per_voxel = torch.tensor(_check_voxel_size(voxel_size, ndim), device=disp.device, dtype=disp.dtype)

    fixed = points_fixed.to(disp.device, disp.dtype).expand(batch, -1, -1)
    moving = points_moving.to(disp.device, disp.dtype).expand(batch, -1, -1)
    field = disp.expand(batch, *disp.shape[1:])
    mapped = fixed + _sample_at_points(field, fixed)
    return ((mapped - moving) * mm_per_voxel).norm(dim=-1)


_sample_at_points = kernels.sample_at_points  # its old private name here


@torch.no_grad()
def end_point_error(disp: torch.Tensor, true_disp: torch.Tensor, mask: torch.Tensor | None = None,
                    voxel_size=None) -> torch.Tensor:
    """Mean end-point error of a field against the true one, shape ``(B,)``; 0 is perfect.

    The end-point error at a voxel is the length of ``disp - true_disp`` there: how far the point
    the registration says corresponds lies from the one that really does. Both fields are
    ``(B, ndim, *spatial)`` in voxels; ``voxel_size`` (mm per voxel, tensor axis order) gives the
    result in mm. ``mask`` (``(B, 1, *spatial)`` or ``(1, 1, *spatial)``, nonzero where it counts,
    for example the fixed brain) restricts the mean; an item whose mask is empty gives NaN.
    """
    ndim = _check_field(disp)
    _check_field(true_disp, "true_disp")
    check_same_shape(disp, true_disp, "disp", "true_disp")
    step = torch.tensor(_check_voxel_size(voxel_size, ndim), dtype=disp.dtype, device=disp.device)
    length = torch.linalg.vector_norm((disp - true_disp) * step.view(1, ndim, *([1] * ndim)), dim=1)
    if mask is None:
        return length.flatten(1).mean(1)
    check_tensor(mask, "mask")
    if mask.dim() != disp.dim() or mask.shape[1] != 1 or mask.shape[2:] != disp.shape[2:] \
            or mask.shape[0] not in (1, disp.shape[0]):
        raise ValueError(f"`mask` must be (B, 1, *spatial) or (1, 1, *spatial) matching the field "
                         f"{tuple(disp.shape)}, got {tuple(mask.shape)}.")
    weight = (mask[:, 0] != 0).to(disp.dtype).expand_as(length)
    return (length * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)


@torch.no_grad()
def inverse_consistency(forward: torch.Tensor, backward: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean distance from the identity of a round trip through two fields that should be inverses.

    A voxel ``x`` of ``forward``'s grid goes out with ``forward`` and comes back with ``backward``:
    it lands at ``x + r(x)``, with the residual ``r = regedu.warps.compose(backward, forward)``,
    ``r(x) = forward(x) + backward(x + forward(x))``. In the two readings of ``compose``: as point
    maps, ``r`` is ``backward``'s map applied after ``forward``'s; as image warps,
    ``warp(warp(img, backward), forward) == warp(img, r)`` (warp by ``backward`` first). The result
    is the mean length of ``r`` per item, shape ``(B,)``, in voxels: 0 when ``backward`` inverts
    ``forward`` exactly; lower is better. It measures one round trip; swap the arguments for the
    other one.

    For a registration, ``forward = model(moving, fixed).disp`` (fixed -> moving) and
    ``backward = model(fixed, moving).disp`` (moving -> fixed): the residual then says how far the
    two separate answers are from being each other's inverse (inverse consistency).

    Args:
        forward, backward: ``(B, ndim, *spatial)`` fields in voxels, 2D or 3D, the same grid size
            (a batch of 1 broadcasts).
        mask: ``(B, 1, *spatial)`` or ``(1, 1, *spatial)`` on ``forward``'s grid, nonzero where the
            residual counts (for example the fixed brain). Points that ``forward`` sends out of the
            image read ``backward``'s edge values, so leave the border out; an empty mask gives NaN.
    """
    _check_field(forward, "forward")
    _check_field(backward, "backward")
    if forward.shape[1:] != backward.shape[1:]:
        raise ValueError(f"`forward` and `backward` must be fields on grids of the same size, got shapes "
                         f"{tuple(forward.shape)} and {tuple(backward.shape)}; resample one of them with "
                         f"`regedu.warps.resize_disp` first.")
    residual = compose(backward, forward)
    return end_point_error(residual, torch.zeros_like(residual), mask=mask)
