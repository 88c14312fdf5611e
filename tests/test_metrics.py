"""Tests for regedu.metrics: analytic answers and numpy/scipy references, in 2D and 3D."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from regedu import metrics
from regedu.warps import affine_to_disp, rotation, scaling, warp

SHAPES = {2: (12, 10), 3: (10, 8, 7)}
LOG_CLIP = math.log(1e-9)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request) -> int:
    return request.param


def random_labels(shape, batch=2, classes=4, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (batch, 1, *shape), generator=generator)


def smooth_random_disp(shape, amplitude, batch=2, seed=0, sigma=1.5) -> torch.Tensor:
    """Gaussian-smoothed noise, float64, rescaled so that its largest value is ``amplitude`` voxels."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((batch, len(shape), *shape))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 0) + (sigma,) * len(shape))
    return torch.from_numpy(amplitude * smooth / np.abs(smooth).max())


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return distance2 <= radius ** 2


def as_label_map(*masks: np.ndarray) -> torch.Tensor:
    """Boolean masks ``(*spatial)`` -> label map ``(len(masks), 1, *spatial)`` of label 1."""
    return torch.from_numpy(np.stack(masks)[:, None].astype(np.int64))


def line_labels(shape, values) -> torch.Tensor:
    """A label map ``(1, 1, *shape)`` whose first line along axis 0 holds ``values`` (rest 0)."""
    labels = torch.zeros(1, 1, *shape, dtype=torch.long)
    labels[(0, 0, slice(0, len(values))) + (0,) * (len(shape) - 1)] = torch.tensor(values)
    return labels


# ---------------------------------------------------------------------------
# numpy references, written independently of regedu.warps.jacobian_det
# ---------------------------------------------------------------------------


def jacobian_matrices_numpy(disp: np.ndarray) -> np.ndarray:
    """``(ndim, *spatial)`` field -> ``(*spatial, ndim, ndim)`` with ``J[..., i, j] = d(x_i + u_i)/dx_j``."""
    ndim = disp.shape[0]
    rows = [np.stack(np.gradient(disp[i]), axis=-1) for i in range(ndim)]
    return np.stack(rows, axis=-2) + np.eye(ndim)


def sdlogj_numpy(disp: np.ndarray, clip=1e-9) -> float:
    det = np.linalg.det(jacobian_matrices_numpy(disp))
    return float(np.std(np.log(np.clip(det, clip, None))))


def sdlogj_learn2reg_numpy(disp: np.ndarray) -> float:
    """The Learn2Reg formula: zero-padded central differences, crop 2, log(clip(J + 3, 1e-9, 1e9))."""
    ndim = disp.shape[0]
    kernels = [np.array([-0.5, 0.0, 0.5]).reshape([3 if k == axis else 1 for k in range(ndim)])
               for axis in range(ndim)]
    grad = np.stack([np.stack([ndimage.correlate(disp[i], kernels[j], mode="constant", cval=0.0)
                               for j in range(ndim)], axis=-1) for i in range(ndim)], axis=-2)
    jac = (grad + np.eye(ndim))[(slice(2, -2),) * ndim]
    det = np.linalg.det(jac)
    return float(np.std(np.log(np.clip(det + 3, 1e-9, 1e9))))


def hd95_numpy(mask_a: np.ndarray, mask_b: np.ndarray, spacing) -> float:
    """Uncropped reference: surfaces by erosion, EDT on the whole image, max of directed percentiles."""
    surface_a = mask_a & ~ndimage.binary_erosion(mask_a)
    surface_b = mask_b & ~ndimage.binary_erosion(mask_b)
    a_to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]
    b_to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)[surface_b]
    return max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))


def folding_field(shape, folded_columns=5, flat_columns=2) -> torch.Tensor:
    """``u_0 = -2 x_0`` (det -1) on the first ``folded_columns`` indices of the last axis,
    ``u_0 = -x_0`` (det exactly 0) on the next ``flat_columns``, zero (det 1) elsewhere.

    Only row 0 of ``I + grad u`` differs from the identity, so ``det = 1 + du_0/dx_0``
    exactly, whatever happens across the column boundaries.
    """
    ndim = len(shape)
    x0 = torch.arange(shape[0], dtype=torch.float64).view(-1, *([1] * (ndim - 1))).expand(shape)
    column = torch.arange(shape[-1]).expand(shape)
    slope = torch.where(column < folded_columns, -2.0, 0.0)
    slope = torch.where((column >= folded_columns) & (column < folded_columns + flat_columns), -1.0, slope)
    disp = torch.zeros(1, ndim, *shape, dtype=torch.float64)
    disp[0, 0] = slope * x0
    return disp


# ---------------------------------------------------------------------------
# dice
# ---------------------------------------------------------------------------


def test_dice_of_identical_maps_is_one(ndim):
    labels = random_labels(SHAPES[ndim])
    scores = metrics.dice(labels, labels)
    assert scores.shape == (2, 3)
    assert torch.equal(scores, torch.ones(2, 3))


def test_dice_of_disjoint_regions_is_zero(ndim):
    shape = SHAPES[ndim]
    a = torch.zeros(1, 1, *shape, dtype=torch.long)
    b = torch.zeros_like(a)
    a[:, :, : shape[0] // 2] = 1
    b[:, :, shape[0] // 2:] = 1
    b[:, :, -1] = 2
    assert torch.equal(metrics.dice(a, b), torch.zeros(1, 2))


def test_dice_partial_overlap_hand_computed(ndim):
    shape = SHAPES[ndim]
    # label 1: a has voxels 0-3, b has 1-6 on one line: 3 shared, 2 * 3 / (4 + 6) = 0.6
    # label 2: a has voxels 8-9, b has 7-8: 1 shared, 2 * 1 / (2 + 2) = 0.5
    a = line_labels(shape, [1, 1, 1, 1, 0, 0, 0, 0, 2, 2])
    b = line_labels(shape, [0, 1, 1, 1, 1, 1, 1, 2, 2, 0])
    assert metrics.dice(a, b).tolist() == [[pytest.approx(0.6, abs=1e-7), 0.5]]
    assert metrics.dice(a, b, labels=[2, 1]).tolist() == [[0.5, pytest.approx(0.6, abs=1e-7)]]


def test_dice_default_labels_union_without_background_and_absent_label_is_nan(ndim):
    shape = SHAPES[ndim]
    a = line_labels(shape, [0, 1, 3, 3])
    b = line_labels(shape, [0, 1, 2, 0])
    scores = metrics.dice(a, b)  # columns: labels 1, 2, 3
    assert scores.shape == (1, 3)
    assert scores.tolist() == [[1.0, 0.0, 0.0]]
    with_absent = metrics.dice(a, b, labels=[1, 7])
    assert with_absent[0, 0] == 1.0 and torch.isnan(with_absent[0, 1])
    assert metrics.dice(a, b, labels=5).isnan().all()  # a single int is one label


def test_dice_matches_numpy_reference_and_broadcasts_batch(ndim):
    a = random_labels(SHAPES[ndim], batch=1, seed=1)
    b = random_labels(SHAPES[ndim], batch=3, seed=2)
    scores = metrics.dice(a, b, labels=[0, 1, 2, 3])
    assert scores.shape == (3, 4) and scores.dtype == torch.get_default_dtype()
    a_np, b_np = a.numpy(), b.numpy()
    for item in range(3):
        for column, label in enumerate([0, 1, 2, 3]):
            in_a, in_b = a_np[0] == label, b_np[item] == label
            expected = 2 * np.sum(in_a & in_b) / (np.sum(in_a) + np.sum(in_b))
            assert scores[item, column].item() == pytest.approx(expected, rel=1e-6)


def test_dice_accepts_boolean_masks(ndim):
    shape = SHAPES[ndim]
    a = line_labels(shape, [1, 1, 1, 1]).bool()
    b = line_labels(shape, [0, 1, 1, 1, 1, 1, 1]).bool()
    assert metrics.dice(a, b).tolist() == [[pytest.approx(0.6, abs=1e-7)]]


@pytest.mark.parametrize("a, b, error, message", [
    (torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 6, 6, dtype=torch.long), TypeError, "integer label map"),
    (torch.zeros(1, 2, 6, 6, dtype=torch.long), torch.zeros(1, 2, 6, 6, dtype=torch.long), ValueError,
     "one channel"),
    (torch.zeros(1, 1, 6, 6, dtype=torch.long), torch.zeros(1, 1, 6, 5, dtype=torch.long), ValueError,
     "share one spatial shape"),
    (torch.zeros(1, 1, 6, 6, dtype=torch.long), torch.zeros(1, 1, 6, 6, 6, dtype=torch.long), ValueError,
     "must be 2D"),
    (torch.zeros(2, 1, 6, 6, dtype=torch.long), torch.zeros(3, 1, 6, 6, dtype=torch.long), ValueError,
     "batch size"),
    (torch.zeros(6, 6, dtype=torch.long), torch.zeros(6, 6, dtype=torch.long), ValueError,
     r"x\[None, None\]"),
    (np.zeros((1, 1, 6, 6), dtype=int), torch.zeros(1, 1, 6, 6, dtype=torch.long), TypeError,
     "torch.as_tensor"),
])
def test_label_metrics_reject_bad_maps(a, b, error, message):
    for metric in (metrics.dice, metrics.hd95):
        with pytest.raises(error, match=message):
            metric(a, b, labels=[1])


@pytest.mark.parametrize("labels, error, message", [
    ([1.5], TypeError, "integer label values"),
    ([], ValueError, "non-empty list"),
    ("1", TypeError, "integer label values"),
    (None, ValueError, "only the background"),
])
def test_label_metrics_reject_bad_labels(labels, error, message):
    background = torch.zeros(1, 1, 6, 6, dtype=torch.long)
    for metric in (metrics.dice, metrics.hd95):
        with pytest.raises(error, match=message):
            metric(background, background, labels=labels)


# ---------------------------------------------------------------------------
# folding fraction and min Jacobian
# ---------------------------------------------------------------------------


def test_folding_fraction_is_zero_for_identity_and_small_smooth_field(ndim):
    shape = SHAPES[ndim]
    identity = torch.zeros(2, ndim, *shape)
    assert torch.equal(metrics.folding_fraction(identity), torch.zeros(2))
    angle = 2 * math.pi * torch.arange(shape[0], dtype=torch.float64) / shape[0]
    smooth = torch.zeros(1, ndim, *shape, dtype=torch.float64)
    smooth[0, 0] = 0.5 * torch.sin(angle).view(-1, *([1] * (ndim - 1)))  # |du_0/dx_0| <= 0.31
    assert metrics.folding_fraction(smooth).tolist() == [0.0]
    assert metrics.min_jacobian(smooth).item() > 0.6


def test_folding_fraction_exact_for_a_field_built_to_fold(ndim):
    shape = SHAPES[ndim]
    folded = folding_field(shape, folded_columns=5, flat_columns=2)  # det -1 on 5, det 0 on 2 columns
    disp = torch.cat([folded, torch.zeros_like(folded)])
    fraction = metrics.folding_fraction(disp)
    assert fraction.shape == (2,) and fraction.dtype == torch.float64
    assert fraction.tolist() == [pytest.approx(7 / shape[-1], abs=1e-12), 0.0]
    assert metrics.min_jacobian(disp).tolist() == [-1.0, 1.0]


def test_min_jacobian_of_a_scaling_is_its_volume_change(ndim):
    shape = SHAPES[ndim]
    disp = affine_to_disp(scaling(1.25, shape, dtype=torch.float64), shape)
    assert metrics.min_jacobian(disp).item() == pytest.approx(1.25 ** ndim, rel=1e-12)


# ---------------------------------------------------------------------------
# SDlogJ
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["clip", "learn2reg"])
def test_sdlogj_is_zero_for_an_affine_field_with_constant_det(ndim, convention):
    shape = SHAPES[ndim]
    angles = 0.3 if ndim == 2 else [0.3, -0.2, 0.1]
    A = scaling([1.2, 0.9, 1.1][:ndim], shape, dtype=torch.float64)
    A[:, :, :ndim] = A[:, :, :ndim] @ rotation(angles, shape, dtype=torch.float64)[:, :, :ndim]
    disp = affine_to_disp(A, shape)
    result = metrics.sdlogj(disp, convention=convention)
    assert result.shape == (1,) and result.dtype == torch.float64
    assert result.item() == pytest.approx(0.0, abs=1e-12)


def test_sdlogj_matches_numpy_reference(ndim):
    disp = smooth_random_disp(SHAPES[ndim], amplitude=6.0, seed=3)  # strong enough to fold somewhere
    assert metrics.folding_fraction(disp).min() > 0
    expected = [sdlogj_numpy(field) for field in disp.numpy()]
    assert metrics.sdlogj(disp).tolist() == pytest.approx(expected, rel=1e-10)
    expected_clip = [sdlogj_numpy(field, clip=0.01) for field in disp.numpy()]
    assert metrics.sdlogj(disp, clip=0.01).tolist() == pytest.approx(expected_clip, rel=1e-10)


def test_sdlogj_analytic_for_a_field_folding_on_a_known_share(ndim):
    shape = SHAPES[ndim]
    disp = folding_field(shape, folded_columns=3, flat_columns=0)  # det -1 on a share p, 1 elsewhere
    p = 3 / shape[-1]
    expected = abs(LOG_CLIP) * math.sqrt(p * (1 - p))  # std of a two-valued variable: log(1e-9) and 0
    assert metrics.sdlogj(disp).item() == pytest.approx(expected, rel=1e-12)


def test_sdlogj_learn2reg_matches_the_challenge_formula(ndim):
    disp = smooth_random_disp(SHAPES[ndim], amplitude=6.0, seed=4)
    expected = [sdlogj_learn2reg_numpy(field) for field in disp.numpy()]
    assert metrics.sdlogj(disp, convention="learn2reg").tolist() == pytest.approx(expected, rel=1e-10)


def test_sdlogj_learn2reg_is_about_four_times_smaller_for_small_deformations(ndim):
    # the two conventions see different voxels (learn2reg crops the border): compare on large images
    disp = smooth_random_disp((128, 128) if ndim == 2 else (32, 32, 32), amplitude=0.1, seed=5, sigma=2.0)
    ratio = metrics.sdlogj(disp) / metrics.sdlogj(disp, convention="learn2reg")
    assert ((ratio > 3.5) & (ratio < 4.5)).all(), ratio


@pytest.mark.parametrize("kwargs, message", [
    ({"convention": "l2r"}, "`convention` must be one of"),
    ({"clip": 0.0}, "`clip` must be a small positive number"),
    ({"clip": -1e-9}, "`clip` must be a small positive number"),
    ({"clip": "small"}, "`clip` must be a small positive number"),
])
def test_sdlogj_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        metrics.sdlogj(torch.zeros(1, 2, 8, 8), **kwargs)


def test_sdlogj_learn2reg_needs_room_for_the_crop():
    with pytest.raises(ValueError, match="more than 4 voxels along every axis"):
        metrics.sdlogj(torch.zeros(1, 2, 4, 10), convention="learn2reg")


@pytest.mark.parametrize("disp, error, message", [
    (torch.zeros(1, 3, 8, 8), ValueError, "one channel per spatial axis"),
    (torch.zeros(1, 2, 8, 8, dtype=torch.long), TypeError, "floating-point"),
    (torch.full((1, 2, 8, 8), float("nan")), ValueError, "NaN"),
    (torch.zeros(1, 2, 1, 8), ValueError, "at least 2 voxels"),
    (torch.zeros(2, 8, 8), ValueError, r"\(B, C, H, W\)"),
    ([[0.0]], TypeError, "must be a torch.Tensor"),
])
def test_field_metrics_reject_bad_fields(disp, error, message):
    for metric in (metrics.folding_fraction, metrics.sdlogj, metrics.min_jacobian):
        with pytest.raises(error, match=message):
            metric(disp)


def test_field_metrics_carry_no_gradient(ndim):
    disp = smooth_random_disp(SHAPES[ndim], amplitude=1.0).requires_grad_()
    for metric in (metrics.folding_fraction, metrics.sdlogj, metrics.min_jacobian):
        assert not metric(disp).requires_grad


# ---------------------------------------------------------------------------
# HD95
# ---------------------------------------------------------------------------


def test_hd95_of_a_shape_and_itself_is_zero(ndim):
    labels = random_labels(SHAPES[ndim], seed=6)
    result = metrics.hd95(labels, labels)
    assert result.shape == (2, 3) and result.dtype == torch.get_default_dtype()
    assert torch.equal(result, torch.zeros(2, 3))


@pytest.mark.parametrize("shift", [1, 3])
def test_hd95_of_a_ball_and_the_ball_shifted_by_k_is_about_k(ndim, shift):
    shape, radius = ((40, 40), 8) if ndim == 2 else ((24, 24, 24), 6)
    centre = [n // 2 for n in shape]
    moved = [centre[0] + shift] + centre[1:]
    a = as_label_map(ball(shape, centre, radius))
    b = as_label_map(ball(shape, moved, radius))
    result = metrics.hd95(a, b).item()
    assert abs(result - shift) <= 1.0
    assert metrics.hd95(a, b, voxel_size=2.0).item() == pytest.approx(2 * result, rel=1e-6)
    same_in_mm = metrics.hd95(a, b, voxel_size=np.full(ndim, 2.0)).item()
    assert same_in_mm == metrics.hd95(a, b, voxel_size=torch.full((ndim,), 2.0)).item()
    assert same_in_mm == pytest.approx(2 * result, rel=1e-6)


def test_hd95_is_the_larger_directed_percentile_not_the_pooled_one(ndim):
    # a: one voxel; b: that voxel and one 10 voxels away. Directed a->b: {0}; b->a: {0, 10}.
    # max of directed 95th percentiles = 9.5 (pooling {0, 0, 10} would give 9.0).
    shape = (3,) * (ndim - 2) + (12, 20)
    here = (1,) * (ndim - 2) + (5, 5)
    there = (1,) * (ndim - 2) + (5, 15)
    mask_a = np.zeros(shape, dtype=bool)
    mask_a[here] = True
    mask_b = mask_a.copy()
    mask_b[there] = True
    a, b = as_label_map(mask_a), as_label_map(mask_b)
    assert metrics.hd95(a, b).item() == pytest.approx(9.5, abs=1e-6)
    assert metrics.hd95(b, a).item() == pytest.approx(9.5, abs=1e-6)


def test_hd95_in_mm_uses_the_spacing_of_each_axis(ndim):
    shape = SHAPES[ndim]
    spacing = [2.5, 0.7, 1.3][:ndim]
    for axis in range(ndim):
        start = [2] * ndim
        end = list(start)
        end[axis] += 3
        mask_a, mask_b = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        mask_a[tuple(start)] = True
        mask_b[tuple(end)] = True
        result = metrics.hd95(as_label_map(mask_a), as_label_map(mask_b), voxel_size=spacing)
        assert result.item() == pytest.approx(3 * spacing[axis], rel=1e-6)


def test_hd95_empty_label_is_inf_on_one_side_and_nan_on_both(ndim):
    shape = SHAPES[ndim]
    a = line_labels(shape, [1, 1, 2, 2])
    b = line_labels(shape, [1, 1, 1, 0])
    result = metrics.hd95(a, b, labels=[1, 2, 5])
    # every voxel of a one-voxel-wide line is surface: a = voxels 0-1, b = voxels 0-2 of the line;
    # a -> b: {0, 0}; b -> a: {0, 0, 1}, whose 95th percentile is 0.9 (linear interpolation)
    assert result[0, 0].item() == pytest.approx(0.9, rel=1e-6)
    assert torch.isinf(result[0, 1]) and torch.isnan(result[0, 2])
    assert torch.isinf(metrics.hd95(b, a, labels=[2])).all()


def test_hd95_matches_uncropped_scipy_reference(ndim):
    shape = (20, 18) if ndim == 2 else (12, 11, 10)
    rng = np.random.default_rng(7)
    blobs = ndimage.gaussian_filter(rng.standard_normal((2, *shape)), sigma=(0,) + (2,) * ndim)
    a = torch.from_numpy(np.digitize(blobs[0], [-0.1, 0.1])[None, None])  # labels 0, 1, 2
    b = torch.from_numpy(np.digitize(blobs[1], [-0.1, 0.1])[None, None])
    spacing = [1.5, 1.0, 0.8][:ndim]
    result = metrics.hd95(a, b, labels=[0, 1, 2], voxel_size=spacing)
    expected = [hd95_numpy(a.numpy()[0, 0] == v, b.numpy()[0, 0] == v, spacing) for v in (0, 1, 2)]
    assert result[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_hd95_broadcasts_a_batch_of_one(ndim):
    labels = random_labels(SHAPES[ndim], batch=3, seed=8)
    result = metrics.hd95(labels[:1], labels, labels=[1, 2])
    assert result.shape == (3, 2)
    assert torch.equal(result[0], torch.zeros(2))
    for item in range(3):
        assert torch.equal(result[item], metrics.hd95(labels[:1], labels[item:item + 1], labels=[1, 2])[0])


@pytest.mark.parametrize("spacing, message", [
    ([1.0, 1.0, 1.0], "along each of the 2 axes"),
    ([1.0, -2.0], "finite and positive"),
    ([1.0, float("nan")], "finite and positive"),
    ("1", "along each of the 2 axes"),
    (["1", "1"], "along each of the 2 axes"),
])
def test_hd95_rejects_bad_spacing(spacing, message):
    labels = line_labels((6, 6), [1, 1])
    with pytest.raises(ValueError, match=message):
        metrics.hd95(labels, labels, voxel_size=spacing)


# ---------------------------------------------------------------------------
# TRE
# ---------------------------------------------------------------------------


def landmarks(shape, count=5, batch=1, seed=0, dtype=torch.float64) -> torch.Tensor:
    """Random voxel coordinates inside ``shape``: ``(batch, count, ndim)``."""
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(batch, count, len(shape), generator=generator, dtype=dtype)
    return unit * (torch.tensor(shape, dtype=dtype) - 1)


def test_tre_is_zero_for_zero_disp_and_identical_points(ndim):
    shape = SHAPES[ndim]
    points = landmarks(shape, batch=2)
    result = metrics.tre(points, points, torch.zeros(2, ndim, *shape, dtype=torch.float64))
    assert result.shape == (2,) and torch.equal(result, torch.zeros(2, dtype=torch.float64))


def test_tre_is_exact_for_a_constant_shift(ndim):
    shape = SHAPES[ndim]
    shift = torch.tensor([1.5, -0.5, 2.0][:ndim], dtype=torch.float64)
    disp = shift.view(1, ndim, *([1] * ndim)).expand(1, ndim, *shape).clone()
    points = landmarks(shape, count=7, seed=1)
    assert metrics.tre(points, points + shift, disp).item() == pytest.approx(0.0, abs=1e-12)
    assert metrics.tre(points, points, disp).item() == pytest.approx(shift.norm().item(), rel=1e-12)
    spacing = [0.5, 2.0, 1.5][:ndim]
    in_mm = (shift * torch.tensor(spacing, dtype=torch.float64)).norm().item()
    assert metrics.tre(points, points, disp, voxel_size=spacing).item() == pytest.approx(in_mm, rel=1e-12)


def test_tre_interpolates_an_affine_field_exactly_between_voxels(ndim):
    shape = SHAPES[ndim]
    angles = 0.2 if ndim == 2 else [0.2, 0.1, -0.15]
    A = rotation(angles, shape, dtype=torch.float64)
    disp = affine_to_disp(A, shape)
    corners = torch.tensor([[0.0] * ndim, [n - 1.0 for n in shape]], dtype=torch.float64)
    points = torch.cat([landmarks(shape, count=6, seed=2)[0], corners])[None]
    mapped = points @ A[0, :, :ndim].T + A[0, :, ndim]
    assert metrics.tre(points, mapped, disp).item() == pytest.approx(0.0, abs=1e-10)


def test_tre_samples_the_field_like_warp(ndim):
    shape = SHAPES[ndim]
    disp = smooth_random_disp(shape, amplitude=2.0, batch=1, seed=9)
    offset = torch.tensor([0.3, 0.6, 0.25][:ndim], dtype=torch.float64)
    constant = offset.view(1, ndim, *([1] * ndim)).expand(1, ndim, *shape)
    sampled = warp(disp, constant)  # sampled(x) = disp(x + offset)
    inner = tuple(slice(0, n - 1) for n in shape)  # x + offset stays inside the grid
    grid = torch.stack(torch.meshgrid(*[torch.arange(n - 1.0, dtype=torch.float64) for n in shape],
                                      indexing="ij"), dim=-1).reshape(1, -1, ndim)
    expected = sampled[(0, slice(None)) + inner].norm(dim=0).mean()
    points = grid + offset
    assert metrics.tre(points, points, disp).item() == pytest.approx(expected.item(), rel=1e-9)


def test_tre_broadcasts_batches_and_accepts_integer_points(ndim):
    shape = SHAPES[ndim]
    disp = torch.zeros(3, ndim, *shape)
    disp[1] += 1.0
    disp[2] -= 2.0
    points = torch.ones(1, 4, ndim, dtype=torch.long)
    result = metrics.tre(points, points, disp)
    assert result.dtype == torch.float32
    assert result.tolist() == pytest.approx([0.0, math.sqrt(ndim), 2 * math.sqrt(ndim)], rel=1e-6)


def test_tre_carries_no_gradient():
    disp = torch.zeros(1, 2, 6, 6, requires_grad=True)
    points = torch.ones(1, 2, 2)
    assert not metrics.tre(points, points, disp).requires_grad


@pytest.mark.parametrize("fixed, moving, message", [
    (torch.full((1, 3, 2), 6.0), torch.zeros(1, 3, 2), "inside the fixed grid, 0 .. 5 along axis 0"),
    (torch.full((1, 3, 2), -0.5), torch.zeros(1, 3, 2), "inside the fixed grid"),
    (torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), r"shape \(B, N, 2\)"),
    (torch.zeros(3, 2), torch.zeros(3, 2), r"points_fixed\[None\]"),
    (torch.zeros(1, 0, 2), torch.zeros(1, 0, 2), "N >= 1 landmarks"),
    (torch.zeros(1, 3, 2), torch.zeros(1, 4, 2), "one to one"),
    (torch.zeros(2, 3, 2), torch.zeros(3, 3, 2), "batch size"),
    (torch.full((1, 3, 2), float("nan")), torch.zeros(1, 3, 2), "NaN"),
])
def test_tre_rejects_bad_points(fixed, moving, message):
    with pytest.raises(ValueError, match=message):
        metrics.tre(fixed, moving, torch.zeros(1, 2, 6, 8))


def test_tre_rejects_bad_types_and_spacing():
    points, disp = torch.zeros(1, 3, 2), torch.zeros(1, 2, 6, 8)
    with pytest.raises(TypeError, match="real voxel coordinates"):
        metrics.tre(points.bool(), points, disp)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        metrics.tre([[0.0, 0.0]], points, disp)
    with pytest.raises(ValueError, match="one channel per spatial axis"):
        metrics.tre(points, points, torch.zeros(1, 3, 6, 8))
    with pytest.raises(ValueError, match="finite and positive"):
        metrics.tre(points, points, disp, voxel_size=[1.0, 0.0])


DICE_MANY_LABELS_SCRIPT = """
import resource, sys, time
import torch
from regedu.metrics import dice
torch.set_num_threads(1)
generator = torch.Generator().manual_seed(0)
a = torch.randint(0, 20_001, (1, 1, 400, 400), generator=generator)
b = torch.randint(0, 20_001, (1, 1, 400, 400), generator=generator)
with open("/proc/self/statm") as handle:
    in_use = int(handle.read().split()[0]) * resource.getpagesize()
limit = in_use + 512 * 2**20  # 0.5 GB more address space than the inputs need, no more
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
start = time.perf_counter()
scores = dice(a, b)
print(time.perf_counter() - start)
torch.save({"a": a, "b": b, "scores": scores}, sys.argv[1])
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="measures memory through /proc (Linux)")
def test_dice_with_20000_labels_is_fast_small_and_exact(tmp_path):
    """20,000 labels on a 400 x 400 slice: one pass over the voxels, memory that does not grow with the
    number of labels (run under an address-space limit of 0.5 GB above the inputs), and the same
    scores as Dice computed label by label on a sample of the labels."""
    out = tmp_path / "scores.pt"
    done = subprocess.run([sys.executable, "-c", DICE_MANY_LABELS_SCRIPT, str(out)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 5.0  # seconds
    saved = torch.load(out)
    a, b, scores = saved["a"].numpy(), saved["b"].numpy(), saved["scores"]
    values = sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0})
    assert scores.shape == (1, len(values)) and len(values) > 19_000
    for column in np.random.default_rng(0).choice(len(values), 300, replace=False):
        in_a, in_b = a == values[column], b == values[column]
        expected = 2 * np.sum(in_a & in_b) / (np.sum(in_a) + np.sum(in_b))
        assert scores[0, column].item() == pytest.approx(expected, rel=1e-6)


def test_dice_of_labels_outside_the_list_and_negative_values():
    """Voxels whose value is not scored count for no label; negative and huge label values work."""
    a = torch.tensor([[-5, -5, 7, 2**40, 3, 3]]).view(1, 1, 2, 3)
    b = torch.tensor([[-5, 0, 7, 2**40, 3, 9]]).view(1, 1, 2, 3)
    scores = metrics.dice(a, b, labels=[2**40, -5, 3, 3])
    assert scores.tolist() == [[1.0, pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3)]]
