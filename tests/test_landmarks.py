"""Landmarks with known true positions (regedu.data.landmarks) and the target registration error.

Known answers: a constant shift moves every landmark by that shift, an affine field maps points
exactly (linear interpolation of a linear field), the true field of a synthetic pair has TRE 0 and
carries each landmark to a moving voxel of the same label.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import default_collate

from regedu import data, metrics
from regedu.warps import affine_to_disp, rotation, scaling

SHAPES = {2: (24, 20), 3: (14, 12, 10)}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request) -> int:
    return request.param


def nested_boxes(shape, batch=1) -> torch.Tensor:
    """Label map ``(batch, 1, *shape)``: background 0, a box of 1 with a smaller box of 2 in one corner."""
    labels = torch.zeros(batch, 1, *shape, dtype=torch.long)
    outer = tuple(slice(3, n - 3) for n in shape)
    inner = tuple(slice(3, 3 + (n - 6) // 2) for n in shape)
    labels[(slice(None), 0) + outer] = 1
    labels[(slice(None), 0) + inner] = 2
    return labels


def constant_field(shift, shape, dtype=torch.float64) -> torch.Tensor:
    ndim = len(shape)
    vector = torch.tensor(shift, dtype=dtype)
    return vector.view(1, ndim, *([1] * ndim)).expand(1, ndim, *shape).clone()


def pairwise(points: torch.Tensor) -> torch.Tensor:
    """Distances between the rows of ``points`` ``(N, ndim)``, the diagonal set to infinity."""
    distance = torch.cdist(points, points)
    return distance + torch.diag(torch.full((len(points),), float("inf"), dtype=points.dtype))


# ---------------------------------------------------------------------------
# landmarks
# ---------------------------------------------------------------------------


def test_landmarks_sit_on_labelled_voxels_away_from_the_border(ndim):
    shape = SHAPES[ndim]
    labels = nested_boxes(shape, batch=2)
    points = data.landmarks(labels, count=12, seed=0, margin=4)
    assert points.shape == (2, 12, ndim) and points.dtype == torch.float32
    assert torch.equal(points, points.round()), "landmarks sit at voxel centres"
    index = points.long()
    for item in range(2):
        values = labels[(item, 0) + tuple(index[item, :, axis] for axis in range(ndim))]
        assert bool((values > 0).all())
    upper = torch.tensor(shape) - 1 - 4
    assert bool((points >= 4).all()) and bool((points <= upper).all())


def test_junction_landmarks_see_three_labels_around_them(ndim):
    shape = SHAPES[ndim]
    labels = nested_boxes(shape)
    points = data.landmarks(labels, count=3, seed=1, where="junctions", margin=0)[0].long()
    for point in points:
        around = labels[(0, 0) + tuple(slice(max(p - 1, 0), p + 2) for p in point.tolist())]
        assert len(torch.unique(around)) >= 3, f"{point.tolist()} sees {torch.unique(around).tolist()}"
        assert labels[(0, 0) + tuple(point.tolist())] > 0


def test_landmarks_are_spread_out_over_the_region():
    # farthest-point sampling: no allowed voxel is farther from its nearest landmark than the two
    # closest landmarks are from each other
    labels = nested_boxes((40, 36))
    points = data.landmarks(labels, count=10, seed=3, margin=0, dtype=torch.float64)[0]
    allowed = (labels[0, 0] > 0).nonzero().to(torch.float64)
    covering = torch.cdist(allowed, points).amin(dim=1).max()
    assert float(covering) <= float(pairwise(points).min()) + 1e-9
    assert len({tuple(p) for p in points.tolist()}) == 10, "no landmark twice"


def test_landmarks_follow_the_seed():
    labels = nested_boxes((30, 26))
    same = data.landmarks(labels, count=8, seed=5), data.landmarks(labels, count=8, seed=5)
    assert torch.equal(*same)
    others = [data.landmarks(labels, count=8, seed=seed) for seed in range(6, 10)]
    assert any(not torch.equal(same[0], other) for other in others)


def test_landmarks_accept_a_boolean_mask_and_a_dtype():
    mask = nested_boxes((20, 18)) > 0
    points = data.landmarks(mask, count=4, seed=0, dtype=torch.float64)
    assert points.dtype == torch.float64 and points.shape == (1, 4, 2)


@pytest.mark.parametrize("labels, options, error, message", [
    (torch.zeros(1, 1, 8, 8), {}, TypeError, "integer label map"),
    (torch.zeros(1, 2, 8, 8, dtype=torch.long), {}, ValueError, "one channel"),
    (torch.zeros(8, 8, dtype=torch.long), {}, ValueError, r"\(B, C, H, W\)"),
    (torch.ones(1, 1, 8, 8, dtype=torch.long), {"count": 0}, ValueError, ">= 1"),
    (torch.ones(1, 1, 8, 8, dtype=torch.long), {"count": 2.0}, TypeError, "integer"),
    (torch.ones(1, 1, 8, 8, dtype=torch.long), {"where": "corners"}, ValueError, "inside"),
    (torch.ones(1, 1, 8, 8, dtype=torch.long), {"margin": -1}, ValueError, "margin"),
    (torch.ones(1, 1, 8, 8, dtype=torch.long), {"dtype": torch.long}, TypeError, "floating dtype"),
    (torch.ones(1, 1, 8, 8, dtype=torch.long), {"count": 40}, ValueError, "only 16 voxels"),
    (torch.ones(1, 1, 8, 8, dtype=torch.long), {"where": "junctions"}, ValueError, "only 0 voxels"),
    (torch.zeros(1, 1, 8, 8, dtype=torch.long), {}, ValueError, "labels are all 0"),
])
def test_landmarks_reject_bad_inputs(labels, options, error, message):
    with pytest.raises(error, match=message):
        data.landmarks(labels, **({"count": 3} | options))


# ---------------------------------------------------------------------------
# map_landmarks
# ---------------------------------------------------------------------------


def test_a_constant_shift_moves_every_landmark_by_it(ndim):
    shape = SHAPES[ndim]
    shift = [1.5, -2.25, 0.5][:ndim]
    points = data.landmarks(nested_boxes(shape), count=6, seed=0, dtype=torch.float64)
    mapped = data.map_landmarks(points, constant_field(shift, shape))
    assert torch.allclose(mapped, points + torch.tensor(shift, dtype=torch.float64), atol=1e-12)


def test_landmark_mapping_is_exact_for_affine_fields(ndim):
    shape = SHAPES[ndim]
    angles = 0.3 if ndim == 2 else [0.3, -0.2, 0.1]
    A = rotation(angles, shape, dtype=torch.float64)
    A[:, :, :ndim] = A[:, :, :ndim] @ scaling([1.1] * ndim, shape, dtype=torch.float64)[:, :, :ndim]
    disp = affine_to_disp(A, shape)
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(1, 9, ndim, generator=generator, dtype=torch.float64) * (torch.tensor(shape) - 1)
    corners = torch.tensor(list(itertools.product(*[(0.0, n - 1.0) for n in shape])), dtype=torch.float64)
    points = torch.cat([points, corners[None]], dim=1)  # between voxels, and the grid's corners
    expected = points @ A[0, :, :ndim].T + A[0, :, ndim]
    assert torch.allclose(data.map_landmarks(points, disp), expected, atol=1e-10)


def test_mapping_broadcasts_batches_and_follows_the_field():
    shape = SHAPES[2]
    disp = torch.cat([constant_field([1.0, 0.0], shape), constant_field([0.0, -2.0], shape)]).float()
    points = torch.full((1, 3, 2), 5, dtype=torch.long)  # integer points, one batch for both fields
    mapped = data.map_landmarks(points, disp)
    assert mapped.shape == (2, 3, 2) and mapped.dtype == torch.float32
    assert mapped[0].tolist() == [[6.0, 5.0]] * 3 and mapped[1].tolist() == [[5.0, 3.0]] * 3


@pytest.mark.parametrize("points, disp, message", [
    (torch.full((1, 2, 2), 30.0), torch.zeros(1, 2, 24, 20), "inside the fixed grid"),
    (torch.zeros(1, 2, 3), torch.zeros(1, 2, 24, 20), r"shape \(B, N, 2\)"),
    (torch.zeros(2, 2), torch.zeros(1, 2, 24, 20), r"points\[None\]"),
    (torch.zeros(2, 2, 2), torch.zeros(3, 2, 24, 20), "batch size"),
    (torch.zeros(1, 2, 2), torch.zeros(1, 3, 24, 20), "one channel per spatial axis"),
    (torch.zeros(1, 2, 2), torch.full((1, 2, 24, 20), float("nan")), "NaN"),
])
def test_map_landmarks_rejects_bad_inputs(points, disp, message):
    with pytest.raises(ValueError, match=message):
        data.map_landmarks(points, disp)


# ---------------------------------------------------------------------------
# TRE from landmarks with known positions
# ---------------------------------------------------------------------------


def test_known_shifts_give_known_tre(ndim):
    shape = SHAPES[ndim]
    truth = constant_field([2.0, -1.0, 0.5][:ndim], shape)
    points = data.landmarks(nested_boxes(shape), count=7, seed=2, dtype=torch.float64)
    true_positions = data.map_landmarks(points, truth)
    assert float(metrics.tre(points, true_positions, truth)) == pytest.approx(0.0, abs=1e-12)
    error = {2: [3.0, -4.0], 3: [0.0, 3.0, -4.0]}[ndim]  # 5 voxels long
    wrong = truth + constant_field(error, shape)
    assert float(metrics.tre(points, true_positions, wrong)) == pytest.approx(5.0, rel=1e-12)
    voxel_size = {2: [2.0, 0.5], 3: [1.0, 2.0, 0.5]}[ndim]
    in_mm = float(torch.tensor(error).mul(torch.tensor(voxel_size)).norm())
    assert float(metrics.tre(points, true_positions, wrong, voxel_size=voxel_size)) == pytest.approx(in_mm)


def test_landmark_errors_are_per_landmark_and_average_to_tre(ndim):
    shape = SHAPES[ndim]
    truth = torch.zeros(2, ndim, *shape, dtype=torch.float64)
    points = data.landmarks(nested_boxes(shape), count=5, seed=4, dtype=torch.float64)
    true_positions = data.map_landmarks(points, truth)
    true_positions[1, 3, 0] += 6.0  # one landmark of the second item is 6 voxels from where the field says
    errors = metrics.landmark_errors(points, true_positions, truth)
    assert errors.shape == (2, 5) and errors.dtype == torch.float64
    assert errors[0].tolist() == [0.0] * 5 and errors[1].tolist() == [0.0, 0.0, 0.0, 6.0, 0.0]
    assert torch.allclose(metrics.tre(points, true_positions, truth), errors.mean(dim=1))


def test_the_true_field_of_a_pair_has_tre_zero_and_keeps_labels():
    pairs = data.TemplatePairs(length=2, mode="subject_to_subject", seed=2)
    batch = default_collate([pairs[i] for i in range(2)])
    points = data.landmarks(batch["fixed_labels"], count=15, seed=0, where="junctions")
    true_positions = data.map_landmarks(points, batch["disp"])
    assert metrics.tre(points, true_positions, batch["disp"]).tolist() == [0.0, 0.0]
    assert bool((metrics.tre(points, true_positions, torch.zeros_like(batch["disp"])) > 1).all())
    # the true field carries the fixed labels exactly (nearest neighbour, ties rounded up), so the
    # moving voxel nearest each true position holds the fixed landmark's label
    nearest = (true_positions + 0.5).floor().long()
    for item in range(2):
        fixed_label = batch["fixed_labels"][(item, 0) + tuple(points[item].long().T)]
        moving_label = batch["moving_labels"][(item, 0) + tuple(nearest[item].T)]
        assert torch.equal(fixed_label, moving_label)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_landmarks_and_mapping_follow_the_device():
    labels = nested_boxes((20, 18)).cuda()
    points = data.landmarks(labels, count=4, seed=0)
    assert points.device == labels.device
    cpu_points = data.landmarks(labels.cpu(), count=4, seed=0)
    assert torch.equal(points.cpu(), cpu_points), "the same seed gives the same points on any device"
    mapped = data.map_landmarks(cpu_points, constant_field([1.0, 1.0], (20, 18)).cuda())
    assert mapped.device.type == "cuda" and mapped.dtype == torch.float64


# ---------------------------------------------------------------------------
# lesson 02's closing check: it fails when Dice and TRE do not disagree
# ---------------------------------------------------------------------------


def lesson02_closing_check() -> str:
    from pathlib import Path

    import nbformat

    path = Path(__file__).resolve().parents[1] / "notebooks" / "02_classical_registration.ipynb"
    check = nbformat.read(path, as_version=4).cells[-1].source
    assert check.rstrip().endswith('print("all checks passed")')
    return check


def lesson02_results(flipped_dice: float, flipped_tre: float) -> dict:
    """What lesson 02's cells leave for its closing check: numbers that tell its story, per pair."""
    def per_pair(value):  # Dice and HD95: (pairs, 3 labels)
        return torch.full((2, 3), value)

    def per_item(value):  # TRE: (pairs,)
        return torch.full((2,), value)

    from test_lesson02_depth import depth_results  # what sections 9-13 leave (issue 14, graduate depth)

    pipeline = "default (affine+bspline+dense)"
    return {
        **depth_results(),
        "torch": torch,
        "found": {("same", "mse"): True, ("inverted", "mi"): True, ("inverted", "mse"): False},
        "compared": {"before": per_pair(0.5), "affine": per_pair(0.75), pipeline: per_pair(0.93)},
        "runs": {pipeline: {}},
        "hd95s": {"before": per_pair(3.2), "affine": per_pair(1.7), pipeline: per_pair(1.0)},
        "tres": {"before": per_item(3.0), "affine": per_item(1.1), pipeline: per_item(0.25)},
        "table": [(0.0, 0.76, 0.2, 1.6), (0.1, 0.86, 0.003, 0.8), (1.0, 0.9, 0.0, 0.6),  # weight, Dice,
                  (10.0, 0.81, 0.0, 0.8)],                                                 # folding, TRE
        "folding": {pipeline: 0.0},
        "smallest_det": {0.4: 0.8, 3.0: -0.3},
        "dice_single": 0.64, "dice_pyramid": 0.86,
        "scores": {"default, moving flipped": (per_pair(flipped_dice), per_pair(1.5), per_item(flipped_tre))},
    }


def test_lesson02_closing_check_passes_when_dice_and_tre_disagree():
    exec(lesson02_closing_check(), lesson02_results(flipped_dice=0.8, flipped_tre=36.0))


@pytest.mark.parametrize("flipped_dice, flipped_tre, message", [
    (0.8, 0.3, "TRE says"),     # the flip misplaced no landmark: no disagreement shown
    (0.52, 36.0, "Dice says"),  # Dice saw the flip too: no disagreement shown
])
def test_lesson02_closing_check_fails_without_the_disagreement(flipped_dice, flipped_tre, message):
    with pytest.raises(AssertionError, match=message):
        exec(lesson02_closing_check(), lesson02_results(flipped_dice, flipped_tre))
