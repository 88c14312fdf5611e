"""The checked exercises of lessons 00 to 04 (regedu.course.lesson00 .. lesson04): an untouched
exercise is "not attempted yet", a right answer (computed here from the package) is "right", and a
typical mistake is "wrong" with a message that names it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from regedu import data, metrics, models, train, warps, widgets
from regedu.course import lesson00, lesson01, lesson02, lesson03, lesson04


def _status(feedback, expected: str, *words: str) -> None:
    """Assert a Feedback's status, and that its message holds each of ``words`` (case-insensitive)."""
    assert feedback.status == expected, str(feedback)
    for word in words:
        assert word.lower() in feedback.message.lower(), str(feedback)


# ---------------------------------------------------------------------------
# lesson 00: start here
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def brain():
    return data.brain_slice()


def test_lesson00_ex1_slider_sign(brain):
    _status(lesson00.ex1.judge(..., brain.image), "not attempted yet")
    _status(lesson00.ex1.judge((5.0, 0.0), brain.image), "right")
    _status(lesson00.ex1.judge((-5.0, 0.0), brain.image), "wrong", "patient's right", "-tx")
    _status(lesson00.ex1.judge((0.0, 5.0), brain.image), "wrong", "axis 1")
    _status(lesson00.ex1.judge((3.0, 0.0), brain.image), "wrong", "should move by -5")
    _status(lesson00.ex1.judge(5.0, brain.image), "wrong", "(tx, ty)")


def _rotation_answer(image):
    """What exercise 2 asks, computed from the package: share outside and padding difference."""
    warped, disp = widgets.transform_explorer(image, angle_deg=90)
    where = warps.identity_grid(image.shape[2:]) + disp[0]
    last = torch.tensor(image.shape[2:]).view(2, 1, 1) - 1
    outside = float(((where < 0) | (where > last)).any(dim=0).float().mean())
    return outside, float((warped - warps.warp(image, disp, padding="zeros")).abs().max())


def test_lesson00_ex2_rotation_corners(brain):
    right = {"whole slice": _rotation_answer(brain.image),
             "tight crop": _rotation_answer(brain.image[..., 20:76, 20:92])}
    _status(lesson00.ex2.judge(..., brain.image), "not attempted yet")
    _status(lesson00.ex2.judge(right, brain.image), "right")
    in_percent = {name: (100 * share, difference) for name, (share, difference) in right.items()}
    _status(lesson00.ex2.judge(in_percent, brain.image), "wrong", "not a percentage")
    swapped = {"whole slice": right["tight crop"], "tight crop": right["whole slice"]}
    _status(lesson00.ex2.judge(swapped, brain.image), "wrong", "whole slice", "outside the image")
    _status(lesson00.ex2.judge({"whole slice": right["whole slice"]}, brain.image), "wrong", "tight crop")


def test_lesson00_ex3_det_j_is_the_area_each_fixed_pixel_reads(brain):
    warped, disp = widgets.transform_explorer(brain.image, scale=2.0)
    mask = brain.mask.float()
    ratio = float(warps.warp(mask, disp, mode="nearest").sum() / mask.sum())
    det_j = float(warps.jacobian_det(disp).mean())
    _status(lesson00.ex3.judge(..., brain.mask), "not attempted yet")
    _status(lesson00.ex3.judge({"area_ratio": ratio, "det_j": det_j}, brain.mask), "right")
    _status(lesson00.ex3.judge({"area_ratio": 4.0, "det_j": det_j}, brain.mask), "wrong", "did not grow")
    _status(lesson00.ex3.judge({"area_ratio": ratio, "det_j": ratio}, brain.mask), "wrong",
            "area of the warped brain")
    _status(lesson00.ex3.judge({"area_ratio": ratio, "det_j": math.sqrt(det_j)}, brain.mask), "wrong",
            "jacobian_det")


# ---------------------------------------------------------------------------
# lesson 01: images and warps
# ---------------------------------------------------------------------------


def test_lesson01_ex1_a_constant_field_moves_content_against_it():
    toy = data.square((64, 64), half_width=8, centre=(32, 24))
    disp = torch.zeros(1, 2, 64, 64)
    _status(lesson01.ex1.judge(..., toy), "not attempted yet")
    disp[:, 1] = -5.0
    _status(lesson01.ex1.judge(disp, toy), "right")
    _status(lesson01.ex1.judge(-disp, toy), "wrong", "to the left", "flip the sign")
    _status(lesson01.ex1.judge(disp.flip(1), toy), "wrong", "axis 0", "channel 1")
    _status(lesson01.ex1.judge(disp[0], toy), "wrong", "shape")


def test_lesson01_ex2_compose_then_interpolate_once(brain):
    image, shape = brain.image, tuple(brain.image.shape[2:])
    forward = warps.affine_to_disp(warps.rotation(math.radians(30), shape), shape)
    backward = warps.affine_to_disp(warps.rotation(math.radians(-30), shape), shape)

    def error(warped):
        return float((warped - image).abs().mean())

    two = error(warps.warp(warps.warp(image, forward), backward))
    one = error(warps.warp(image, warps.compose(forward, backward)))
    added = error(warps.warp(image, forward + backward))
    _status(lesson01.ex2.judge(..., image), "not attempted yet")
    _status(lesson01.ex2.judge({"two warps": two, "one warp": one}, image), "right")
    _status(lesson01.ex2.judge({"two warps": two, "one warp": added}, image), "wrong", "forward + backward")
    _status(lesson01.ex2.judge({"two warps": one, "one warp": two}, image), "wrong", "two warps")


def test_lesson01_ex3_a_folding_field_has_no_fixed_point_inverse(brain):
    shape = tuple(brain.image.shape[2:])

    def residual(magnitude, steps):
        field = data.random_disp(shape, magnitude=magnitude, smoothness=16, seed=0)
        inverse = torch.zeros_like(field)
        for _ in range(steps):
            inverse = -warps.warp(field, inverse)
        return float(warps.compose(field, inverse).abs().max())

    right = {4: residual(4, 20), 16: residual(16, 20)}
    _status(lesson01.ex3.judge(..., shape), "not attempted yet")
    _status(lesson01.ex3.judge(right, shape), "right")
    _status(lesson01.ex3.judge({4: residual(4, 1), 16: right[16]}, shape), "wrong", "has not gone to zero")
    _status(lesson01.ex3.judge({4: right[4], 16: 0.5 * right[16]}, shape), "wrong", "magnitude 16")
    _status(lesson01.ex3.judge({"4": right[4], "16": right[16]}, shape), "wrong", "keyed by the magnitudes")


# ---------------------------------------------------------------------------
# lesson 02: classical registration (a pair at half resolution, to keep it fast)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair():
    return default_collate([data.TemplatePairs(length=1, mode="subject_to_subject", seed=2)[0]])


@pytest.fixture(scope="module")
def small_pair(pair):
    return {"moving": F.avg_pool2d(pair["moving"], 2), "fixed": F.avg_pool2d(pair["fixed"], 2),
            "moving_labels": pair["moving_labels"][..., ::2, ::2],
            "fixed_labels": pair["fixed_labels"][..., ::2, ::2]}


def test_lesson02_ex1_where_each_landscape_is_lowest(small_pair):
    fixed, shifts = small_pair["fixed"], list(range(-3, 4))
    offset = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, *fixed.shape[2:])
    inverted = 1 - warps.warp(fixed, -offset)
    right, highest = {}, {}
    for name in widgets.SIMILARITIES:
        values = widgets.similarity_landscape(fixed, inverted, shifts, name)
        for found, index in ((right, values.argmin()), (highest, values.argmax())):
            row, column = divmod(int(index), len(shifts))
            found[name] = (shifts[row], shifts[column])
    _status(lesson02.ex1.judge(..., fixed, inverted, shifts), "not attempted yet")
    _status(lesson02.ex1.judge(right, fixed, inverted, shifts), "right")
    _status(lesson02.ex1.judge({**right, "mse": highest["mse"]}, fixed, inverted, shifts), "wrong",
            "mse", "highest", "argmin")
    _status(lesson02.ex1.judge({**right, "mi": right["mi"][::-1]}, fixed, inverted, shifts), "wrong",
            "mi", "swapped the two axes")
    # the same-contrast image's minimum for mse is the true shift, where the inverted landscape peaks
    _status(lesson02.ex1.judge({name: (2, -1) for name in right}, fixed, inverted, shifts), "wrong",
            "mse", "highest")
    elsewhere = next(shift for shift in [(0, 0), (1, 1)] if shift not in (right["ngf"], highest["ngf"]))
    _status(lesson02.ex1.judge({**right, "ngf": elsewhere}, fixed, inverted, shifts), "wrong",
            "ngf", "is not at", "lowest value")


def test_lesson02_ex2_mi_registers_across_contrasts(pair):
    """The checker judges warped label maps: here made with the pair's true field (what a registration
    that works reaches), a shift the wrong way (what MSE does across contrasts) and part of the field."""
    moving_labels, fixed_labels, true_disp = pair["moving_labels"], pair["fixed_labels"], pair["disp"]
    aligned = warps.warp_labels(moving_labels, true_disp)
    dragged = warps.warp_labels(moving_labels, true_disp + torch.tensor([12.0, -12.0]).view(1, 2, 1, 1))
    partly = warps.warp_labels(moving_labels, 0.7 * true_disp)
    right = {"mse": dragged, "mi": aligned, "choice": "mi"}
    _status(lesson02.ex2.judge(..., moving_labels, fixed_labels), "not attempted yet")
    _status(lesson02.ex2.judge(right, moving_labels, fixed_labels), "right")
    swapped = {"mse": aligned, "mi": dragged, "choice": "mi"}
    _status(lesson02.ex2.judge(swapped, moving_labels, fixed_labels), "wrong", "swap")
    _status(lesson02.ex2.judge({**right, "mse": partly}, moving_labels, fixed_labels), "wrong", "1 - fixed")
    _status(lesson02.ex2.judge({**right, "mi": moving_labels}, moving_labels, fixed_labels), "wrong",
            "barely changed")
    _status(lesson02.ex2.judge({**right, "choice": "mse"}, moving_labels, fixed_labels), "wrong", "T2")
    _status(lesson02.ex2.judge({**right, "mi": aligned[0]}, moving_labels, fixed_labels), "wrong",
            "warped_labels")


def test_lesson02_ex3_the_full_budget_reproduces_section_5(small_pair):
    section5 = metrics.dice(small_pair["moving_labels"], small_pair["fixed_labels"])  # stands for section 5's
    full = float(section5.nanmean())
    right = {4: (full - 0.05, 1.0), 2: (full - 0.01, 2.0), 1: (full, 4.0)}
    _status(lesson02.ex3.judge(..., section5), "not attempted yet")
    _status(lesson02.ex3.judge(right, section5), "right")
    _status(lesson02.ex3.judge({**right, 1: (full - 0.1, 4.0)}, section5), "wrong", "section 5")
    in_percent = {key: (100 * dice, seconds) for key, (dice, seconds) in right.items()}
    _status(lesson02.ex3.judge(in_percent, section5), "wrong", "between 0 and 1")
    _status(lesson02.ex3.judge(dict.fromkeys(right, (full, 1.0)), section5), "wrong", "same Dice")
    _status(lesson02.ex3.judge({0.25: right[4], 0.5: right[2], 1: right[1]}, section5), "wrong", "divisor")


# ---------------------------------------------------------------------------
# lesson 03: learned registration without labels (the shipped network loads in a blink)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def network():
    return models.pretrained("voxelmorph2d_brain")


@pytest.fixture(scope="module")
def held_out():
    pairs = data.BrainSlicePairs(1, seed=7)
    return default_collate([pairs[0]])


def _dice(moving_labels, fixed_labels, disp) -> float:
    return float(metrics.dice(warps.warp_labels(moving_labels, disp), fixed_labels).nanmean())


def test_lesson03_ex1_instance_optimisation(network, held_out):
    moving, fixed = held_out["moving"], held_out["fixed"]
    moving_labels, fixed_labels = held_out["moving_labels"], held_out["fixed_labels"]
    classical = SimpleNamespace(warped_labels=warps.warp_labels(moving_labels, held_out["disp"]))  # stand-in
    with torch.no_grad():
        alone = _dice(moving_labels, fixed_labels, network(moving, fixed).disp)
    refined_disp = train.instance_optimize(network, moving, fixed, steps=50).disp
    refined = _dice(moving_labels, fixed_labels, refined_disp)
    right = {"network": alone, "refined": refined, "classical": 1.0}
    _status(lesson03.ex1.judge(..., network, held_out, classical), "not attempted yet")
    _status(lesson03.ex1.judge(right, network, held_out, classical), "right")
    _status(lesson03.ex1.judge({**right, "refined": alone}, network, held_out, classical), "wrong",
            "instance_optimize returns (warped, disp)")
    before = float(metrics.dice(moving_labels, fixed_labels).nanmean())
    _status(lesson03.ex1.judge({**right, "network": before}, network, held_out, classical), "wrong",
            "network alone")
    _status(lesson03.ex1.judge({**right, "classical": alone}, network, held_out, classical), "wrong",
            "classical[0]")


def test_lesson03_ex2_larger_motions_than_in_training(network):
    hard_pairs = data.BrainSlicePairs(1, seed=11, rotation=25.0, translation=10.0, magnitude=(10.0, 14.0))
    hard = default_collate([hard_pairs[0]])
    before = metrics.dice(hard["moving_labels"], hard["fixed_labels"]).nanmean(1).tolist()
    with torch.no_grad():
        disp = network(hard["moving"], hard["fixed"]).disp
    found = _dice(hard["moving_labels"], hard["fixed_labels"], disp)
    perfect = _dice(hard["moving_labels"], hard["fixed_labels"], hard["disp"])  # stands for the classical
    scores = {"shipped network": {"dice": found + 0.2}, "classical (affine + B-spline)": {"dice": perfect}}
    right = {"before": before, "network": [found], "classical": [perfect], "suffers more": "network"}
    _status(lesson03.ex2.judge(..., network, scores), "not attempted yet")
    _status(lesson03.ex2.judge(right, network, scores), "right")
    _status(lesson03.ex2.judge({**right, "suffers more": "classical"}, network, scores), "wrong",
            "loses more", "network")
    _status(lesson03.ex2.judge({**right, "classical": [found]}, network, scores), "wrong", "network's Dice")
    _status(lesson03.ex2.judge({**right, "network": before}, network, scores), "wrong", "pretrained(moving")
    _status(lesson03.ex2.judge({**right, "before": [before[0] + 0.1]}, network, scores), "wrong", "seed=11")
    _status(lesson03.ex2.judge({**right, "network": found}, network, scores), "wrong", "lists of numbers")


def test_lesson03_ex3_two_predictions_are_not_inverses(network, held_out):
    moving, fixed = held_out["moving"], held_out["fixed"]
    with torch.no_grad():
        u, v = network(moving, fixed).disp, network(fixed, moving).disp

    def mean_length(field):
        return float(torch.linalg.vector_norm(field, dim=1).mean())

    right = {"mean_length": mean_length(u), "round_trip": mean_length(warps.compose(v, u))}
    _status(lesson03.ex3.judge(..., network, held_out), "not attempted yet")
    _status(lesson03.ex3.judge(right, network, held_out), "right")
    other_way = {**right, "round_trip": mean_length(warps.compose(u, v))}
    _status(lesson03.ex3.judge(other_way, network, held_out), "right")
    _status(lesson03.ex3.judge({**right, "round_trip": mean_length(u + v)}, network, held_out), "wrong",
            "added the two fields")
    components = {**right, "round_trip": float(warps.compose(v, u).abs().mean())}
    _status(lesson03.ex3.judge(components, network, held_out), "wrong", "length of each vector")
    _status(lesson03.ex3.judge({**right, "mean_length": float(u.abs().mean())}, network, held_out), "wrong",
            "vector_norm")


# ---------------------------------------------------------------------------
# lesson 04: supervised versus unsupervised (two held-out pairs, the shipped networks)
# ---------------------------------------------------------------------------

SHIPPED = {"supervised": "voxelmorph2d_brain_supervised", "unsupervised": "voxelmorph2d_brain_lambda1",
           "label-supervised": "voxelmorph2d_brain_labels"}
MEASURES = {"dice": max, "hd95": min, "epe": min, "tre": min, "folding_percent": min}


@pytest.fixture(scope="module")
def lesson04_results():
    """What lesson 04's section 3 leaves: the pairs, their parcels, and the scores of every field."""
    pairs = data.BrainSlicePairs(2, seed=7)
    test = default_collate([pairs[i] for i in range(2)])
    parcel_pairs = data.BrainSlicePairs(2, seed=7, parcels=True)
    parcels = default_collate([parcel_pairs[i] for i in range(2)])
    results = {"no registration": widgets.field_scores(test, torch.zeros_like(test["disp"]), hd95=True),
               "true field": widgets.field_scores(test, test["disp"], hd95=True)}
    for name, file in SHIPPED.items():
        results[name] = widgets.network_scores(models.pretrained(file), test, hd95=True)
    points = data.landmarks(test["fixed_labels"], 20, seed=0, where="junctions")
    true_points = data.map_landmarks(points, test["disp"])
    for score in results.values():
        score["tre"] = metrics.tre(points, true_points, score["disp"])
    return test, parcels, results


def test_lesson04_ex1_which_network_wins_where(lesson04_results):
    _, _, results = lesson04_results
    right = {key: pick(SHIPPED, key=lambda name: float(results[name][key].mean()))
             for key, pick in MEASURES.items()}
    right["each_wins_its_own"] = right["epe"] == "supervised" and right["dice"] == "label-supervised"
    _status(lesson04.ex1.judge(..., results), "not attempted yet")
    _status(lesson04.ex1.judge(right, results), "right")
    worst_hd95 = max(SHIPPED, key=lambda name: float(results[name]["hd95"].mean()))
    _status(lesson04.ex1.judge({**right, "hd95": worst_hd95}, results), "wrong", "hd95", "lower is better")
    _status(lesson04.ex1.judge({**right, "epe": "true field"}, results), "wrong", "three shipped networks")
    verdict = {**right, "each_wins_its_own": not right["each_wins_its_own"]}
    _status(lesson04.ex1.judge(verdict, results), "wrong", "each_wins_its_own", "your own answers")


def _holds_several(labels):
    labels = labels.float()
    return F.max_pool2d(labels, 3, stride=1, padding=1) != -F.max_pool2d(-labels, 3, stride=1, padding=1)


def test_lesson04_ex2_end_point_error_on_the_cuts(lesson04_results):
    test, parcels, results = lesson04_results
    tissue = test["fixed_labels"]
    cut = _holds_several(parcels["fixed_labels"]) & ~_holds_several(tissue) & (tissue > 0)
    every_border = _holds_several(parcels["fixed_labels"]) & (tissue > 0)

    def on(mask):
        return {name: float(metrics.end_point_error(score["disp"], test["disp"], mask=mask).nanmean())
                for name, score in results.items()}

    right = on(cut)
    _status(lesson04.ex2.judge(..., results, parcels, test), "not attempted yet")
    _status(lesson04.ex2.judge(right, results, parcels, test), "right")
    pooled = {name: float(score["error"][cut].mean()) for name, score in results.items()}
    _status(lesson04.ex2.judge(pooled, results, parcels, test), "right")  # pooled over pairs: also right
    whole_brain = {**right, "unsupervised": float(results["unsupervised"]["epe"].mean())}
    _status(lesson04.ex2.judge(whole_brain, results, parcels, test), "wrong", "whole brain")
    borders = {**right, "label-supervised": on(every_border)["label-supervised"]}
    _status(lesson04.ex2.judge(borders, results, parcels, test), "wrong", "tissue borders included")
    overlap = {**right, "true field": 1.0}
    _status(lesson04.ex2.judge(overlap, results, parcels, test), "wrong", "true field", "not an overlap")
    missing = {name: value for name, value in right.items() if name != "true field"}
    _status(lesson04.ex2.judge(missing, results, parcels, test), "wrong", "one entry per row")


def test_lesson04_ex3_errors_at_borders_and_inside(lesson04_results):
    test, _, results = lesson04_results
    labels = test["fixed_labels"]
    brain = labels > 0
    border, inside = brain & _holds_several(labels), brain & ~_holds_several(labels)

    def epe(name, mask):
        return float(metrics.end_point_error(results[name]["disp"], test["disp"], mask=mask).mean())

    right = {name: (epe(name, border), epe(name, inside)) for name in SHIPPED}
    _status(lesson04.ex3.judge(..., results, test), "not attempted yet")
    _status(lesson04.ex3.judge(right, results, test), "right")
    with_none = {**right, "no registration": (epe("no registration", border), epe("no registration", inside))}
    _status(lesson04.ex3.judge(with_none, results, test), "right")
    _status(lesson04.ex3.judge({**right, "supervised": right["supervised"][::-1]}, results, test), "wrong",
            "swapped")
    whole_ring = _holds_several(labels)  # the border also outside the brain: a typical slip
    outside_too = {**right, "unsupervised": (epe("unsupervised", whole_ring), right["unsupervised"][1])}
    _status(lesson04.ex3.judge(outside_too, results, test), "wrong", "tissue borders")
    _status(lesson04.ex3.judge({"unsupervised": right["unsupervised"]}, results, test), "wrong", "three")
