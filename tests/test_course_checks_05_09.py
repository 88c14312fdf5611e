"""The checked exercises of lessons 05 to 09 (regedu.course.lesson05 ... lesson09).

For each checker: the starter's ``...`` is "not attempted yet", a right answer computed here from the
package is "right", and a typical mistake is "wrong" with a message that names the mistake. Inputs are
small (and the one shipped model used loads at once), so the file runs in seconds.
"""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

import regedu
from regedu import data, losses, metrics, models, warps, widgets
from regedu.course import lesson05, lesson06, lesson07, lesson08, lesson09


def status(feedback):
    return feedback.status


# ----------------------------------------------------------------------------------------- lesson 05


def scaling_and_squaring(v, steps):
    disp = v / 2**steps
    for _ in range(steps):
        disp = warps.compose(disp, disp)
    return disp


def test_05_ex1_my_integrate():
    assert status(lesson05.ex1.judge(...)) == "not attempted yet"
    assert status(lesson05.ex1.judge(scaling_and_squaring)) == "right"

    def adds(v, steps):
        disp = v / 2**steps
        for _ in range(steps):
            disp = disp + disp
        return disp

    def no_scaling(v, steps):
        disp = v
        for _ in range(steps):
            disp = warps.compose(disp, disp)
        return disp

    def in_place(v, steps):
        v /= 2**steps
        for _ in range(steps):
            v = warps.compose(v, v)
        return v

    mistakes = {adds: "v itself", no_scaling: "without scaling", in_place: "in-place",
                lambda v, steps: v / 2**steps: "scaled field only",
                lambda v, steps: warps.integrate(v, steps): "calls warps.integrate",
                scaling_and_squaring(torch.zeros(1, 2, 4, 4), 1): "function itself"}
    for mistake, named in mistakes.items():
        feedback = lesson05.ex1.judge(mistake)
        assert status(feedback) == "wrong" and named in feedback.message, feedback


@pytest.fixture(scope="module")
def velocity():
    return data.random_velocity((48, 56), magnitude=8.0, smoothness=8.0, seed=0)


def first_folding(fields):
    return next((s for s, disp in fields.items() if metrics.folding_fraction(disp).item() > 0), None)


def test_05_ex2_where_folding_starts(velocity):
    stretches = lesson05.STRETCHES
    raw = first_folding({s: s * velocity for s in stretches})
    computed = first_folding({s: warps.integrate(s * velocity, 7) for s in stretches})
    computed_12 = first_folding({s: warps.integrate(s * velocity, 12) for s in stretches})
    assert raw is not None and computed is not None and raw < computed, "a velocity that shows the point"
    right = {"raw_folds_from": raw, "computed_folds_from": computed,
             "more_steps_fix_it": computed_12 is None or computed_12 > computed}
    assert status(lesson05.ex2.judge(..., velocity)) == "not attempted yet"
    assert status(lesson05.ex2.judge(right, velocity)) == "right"
    never = lesson05.ex2.judge({**right, "computed_folds_from": None}, velocity)
    assert status(never) == "wrong" and "computed one does" in never.message
    late = lesson05.ex2.judge({**right, "raw_folds_from": computed}, velocity)
    assert status(late) == "wrong" and "first s at which the raw field folds" in late.message


def test_05_ex3_demons_choice():
    shape = (24, 28)
    folding_less = SimpleNamespace(method="affine+diffeomorphic_demons",
                                   disp=data.random_velocity(shape, magnitude=1.0, seed=1))
    folding_more = SimpleNamespace(method="affine+demons",
                                   disp=data.random_velocity(shape, magnitude=4.0, seed=1))
    demons = {"affine+demons": folding_more, "affine+diffeomorphic_demons": folding_less}
    further = max(demons, key=lambda name: metrics.min_jacobian(demons[name].disp).item())
    assert further == "affine+diffeomorphic_demons"
    assert status(lesson05.ex3.judge(..., demons)) == "not attempted yet"
    assert status(lesson05.ex3.judge(further, demons)) == "right"
    wrong = lesson05.ex3.judge("affine+demons", demons)
    assert status(wrong) == "wrong" and "folding starts at 0" in wrong.message
    swapped = {"affine+demons": folding_less, "affine+diffeomorphic_demons": folding_more}
    mixed_up = lesson05.ex3.judge(further, swapped)
    assert status(mixed_up) == "wrong" and "was made by" in mixed_up.message


def test_05_ex4_symmetrised_velocity():
    network = models.pretrained("voxelmorph2d_brain_diff")
    pairs = data.BrainSlicePairs(2, seed=7)
    test = {key: torch.stack([pairs[i][key] for i in range(2)]) for key in ("moving", "fixed")}
    with torch.no_grad():
        v1 = network(test["moving"], test["fixed"], return_velocity=True).velocity
        v2 = network(test["fixed"], test["moving"], return_velocity=True).velocity
        w = (v1 - v2) / 2
        right = (network.exponential(w), network.exponential(-w))
        summed = (network.exponential((v1 + v2) / 2), network.exponential(-(v1 + v2) / 2))
        own = (network.exponential(v1), network.exponential(-v1))
        separate = (right[0], network(test["fixed"], test["moving"]).disp)
    assert status(lesson05.ex4.judge(..., network, test)) == "not attempted yet"
    assert status(lesson05.ex4.judge(right, network, test)) == "right"
    for mistake, named in [(summed, "v1 + v2"), (own, "own answer"), (separate, "second prediction")]:
        feedback = lesson05.ex4.judge(mistake, network, test)
        assert status(feedback) == "wrong" and named in feedback.message, feedback


# ----------------------------------------------------------------------------------------- lesson 06


@pytest.fixture(scope="module")
def c_to_o():
    pair = data.large_deformation_pair((64, 64), kind="c_to_o")
    results = {levels: regedu.register(pair["moving"], pair["fixed"], method="dense", levels=levels,
                                       iterations=iterations, moving_labels=pair["moving_labels"],
                                       progress=False)
               for levels, iterations in [(1, (12,)), (4, (4, 3, 3, 2))]}
    return pair, results


def test_06_ex1_gap_covered(c_to_o):
    pair, results = c_to_o
    gap = (pair["fixed_labels"] > 0) & (pair["moving_labels"] == 0)
    right = {levels: (result.warped_labels > 0)[gap].float().mean().item()
             for levels, result in results.items()}
    whole_o = {levels: (result.warped_labels > 0)[pair["fixed_labels"] > 0].float().mean().item()
               for levels, result in results.items()}
    assert status(lesson06.ex1.judge(..., results, pair)) == "not attempted yet"
    assert status(lesson06.ex1.judge(right, results, pair)) == "right"
    for mistake, named in [(whole_o, "whole O"), ({1: 0.0, 4: 0.0}, "moving C"),
                           ({1: 100.0, 4: 100.0}, "percentage")]:
        feedback = lesson06.ex1.judge(mistake, results, pair)
        assert status(feedback) == "wrong" and named in feedback.message, feedback
    one_level = {1: results[1], 4: results[1]}
    feedback = lesson06.ex1.judge(right, one_level, pair)
    assert status(feedback) == "wrong" and "levels=4" in feedback.message


def test_06_ex2_levels_needed():
    pair = data.large_deformation_pair((64, 64), kind="large_warp", magnitude=12.0, seed=0)
    total = 12
    results = {levels: regedu.register(pair["moving"], pair["fixed"], method="svf", levels=levels,
                                       iterations=[total // levels] * levels,
                                       moving_labels=pair["moving_labels"], progress=False)
               for levels in (1, 2, 3, 4)}
    dice = {levels: metrics.dice(r.warped_labels, pair["fixed_labels"]).mean().item()
            for levels, r in results.items()}
    right = min((levels for levels, value in dice.items() if value > lesson06.GOOD_DICE), default=None)
    assert status(lesson06.ex2.judge(..., results, pair)) == "not attempted yet"
    assert status(lesson06.ex2.judge(right, results, pair)) == "right"
    off = 1 if right != 1 else 2
    feedback = lesson06.ex2.judge(off, results, pair)
    assert status(feedback) == "wrong" and "your Dice by levels" in feedback.message
    shorter = regedu.register(pair["moving"], pair["fixed"], method="svf", levels=4, iterations=[2, 2, 2, 2],
                              moving_labels=pair["moving_labels"], progress=False)
    unequal = {**results, 4: shorter}
    feedback = lesson06.ex2.judge(right, unequal, pair)
    assert status(feedback) == "wrong" and "same total budget" in feedback.message


def test_06_ex3_level_that_moves_most():
    network = models.pretrained("toy_pyramid2d")
    held_out = data.LargeDeformationPairs(1, shape=(64, 64), magnitude=20.0, min_magnitude=12.0, seed=1)
    example = {key: value[None] for key, value in held_out[0].items()}
    with torch.no_grad():
        levels = network(example["moving"], example["fixed"], return_levels=True)[2]
    largest = [warps.resize_disp(field, (64, 64)).norm(dim=1).max().item() for field in levels]
    added = [largest[0]] + [b - a for a, b in zip(largest, largest[1:], strict=False)]
    right = {"largest_motion": largest, "most_moving_level": added.index(max(added))}
    assert status(lesson06.ex3.judge(..., network, example)) == "not attempted yet"
    assert status(lesson06.ex3.judge(right, network, example)) == "right"
    own_grid = {**right, "largest_motion": [field.norm(dim=1).max().item() for field in levels]}
    feedback = lesson06.ex3.judge(own_grid, network, example)
    assert status(feedback) == "wrong" and "resize_disp" in feedback.message
    last = {**right, "most_moving_level": len(levels) - 1}
    assert right["most_moving_level"] != len(levels) - 1, "the shipped network's last level only refines"
    feedback = lesson06.ex3.judge(last, network, example)
    assert status(feedback) == "wrong" and "increases" in feedback.message


# ----------------------------------------------------------------------------------------- lesson 07


def test_07_ex1_voxel_of_a_world_point():
    affine = data.brain_volume().affine
    exact = (np.linalg.inv(affine) @ np.array([0.0, 0.0, 0.0, 1.0]))[:3]
    right = tuple(int(round(value)) for value in exact)
    assert status(lesson07.ex1.judge(..., affine)) == "not attempted yet"
    assert status(lesson07.ex1.judge(right, affine)) == "right"
    forward = tuple((affine @ np.array([0.0, 0.0, 0.0, 1.0]))[:3])
    truncated = tuple(int(value) for value in exact)
    assert truncated != right, "MNI (0, 0, 0) lies off the voxel centres, so truncating is a mistake there"
    for mistake, named in [(forward, "inverse"), (truncated, "int()"), (tuple(exact), "integer")]:
        feedback = lesson07.ex1.judge(mistake, affine)
        assert status(feedback) == "wrong" and named in feedback.message, feedback


def test_07_ex2_largest_displacement_in_mm():
    disp = data.random_velocity((12, 14, 12), magnitude=3.0, smoothness=4.0, seed=2)
    spacing = (4.0, 4.0, 4.0)
    voxels = disp.norm(dim=1).max().item()
    right = {"voxels": voxels, "mm": warps.disp_to_mm(disp, spacing).norm(dim=1).max().item()}
    assert status(lesson07.ex2.judge(..., disp, spacing)) == "not attempted yet"
    assert status(lesson07.ex2.judge(right, disp, spacing)) == "right"
    for mistake, named in [({"voxels": voxels, "mm": voxels / 4}, "divided"),
                           ({"voxels": voxels, "mm": voxels * 2}, "registration grid"),
                           ({"voxels": disp.abs().max().item(), "mm": right["mm"]}, "component")]:
        feedback = lesson07.ex2.judge(mistake, disp, spacing)
        assert status(feedback) == "wrong" and named in feedback.message, feedback


def test_07_ex3_flip_is_in_the_header(tmp_path):
    atlas = data.gaussian_blur(data.brain_volume().image, 1.0)[:, :, ::2, ::2, ::2]  # 48 x 56 x 48
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    ras_file = data.save_nifti(atlas, tmp_path / "ras.nii.gz", affine)
    flipped = atlas[0, 0].numpy()[::-1].copy()
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip_x[0, 3] = atlas.shape[2] - 1
    las_file, kept_file = tmp_path / "las.nii.gz", tmp_path / "flipped_ras_header.nii.gz"
    nib.save(nib.Nifti1Image(flipped, affine @ flip_x), las_file)
    nib.save(nib.Nifti1Image(flipped, affine), kept_file)
    images = [nib.load(path) for path in (ras_file, las_file)]
    arrays = [torch.from_numpy(image.get_fdata()).float()[None, None] for image in images]
    told = data.check_pair(*arrays, moving_affine=images[0].affine, fixed_affine=images[1].affine, factor=8,
                           verbose=False)
    kept = data.check_pair(ras_file, kept_file, factor=8, verbose=False)
    right = {"raw_arrays_equal": torch.equal(*arrays),
             "orientation_codes": tuple("".join(nib.aff2axcodes(image.affine)) for image in images),
             "equal_after_load_nifti": torch.equal(*(data.load_nifti(p).image for p in (ras_file, las_file))),
             "check_pair_warns_without_affines": not data.check_pair(*arrays, factor=8, verbose=False).ok,
             "check_pair_warns_with_affines": not told.ok,
             "flip_under_kept_header_caught": not kept.ok}
    assert right["orientation_codes"] == ("RAS", "LAS") and right["check_pair_warns_with_affines"]
    assert not right["check_pair_warns_without_affines"] and not right["flip_under_kept_header_caught"]
    assert status(lesson07.ex3.judge(..., ras_file, las_file)) == "not attempted yet"
    assert status(lesson07.ex3.judge(right, ras_file, las_file)) == "right"
    for key, named in [("raw_arrays_equal", "mirror image"),
                       ("check_pair_warns_without_affines", "nothing about"),
                       ("flip_under_kept_header_caught", "unchanged header")]:
        feedback = lesson07.ex3.judge({**right, key: not right[key]}, ras_file, las_file)
        assert status(feedback) == "wrong" and named in feedback.message, feedback
    swapped = lesson07.ex3.judge({**right, "orientation_codes": ("LAS", "RAS")}, ras_file, las_file)
    assert status(swapped) == "wrong" and "RAS file first" in swapped.message


# ----------------------------------------------------------------------------------------- lesson 08


@pytest.fixture(scope="module")
def contrasts():
    """A small T1 slice, its labels, and a T2-like image of the same anatomy."""
    brain = data.brain_slice()
    t1, labels = brain.image[..., ::2, ::2], brain.labels[..., ::2, ::2]
    return t1, labels, data.t2_like(labels, lesion_intensity=0.75, seed=0)


def test_08_ex1_mi_bins(contrasts):
    t1, _, t2 = contrasts
    shift = torch.zeros(1, 2, *t1.shape[2:])
    shift[:, 0] = 2.0
    t2_shifted = warps.warp(t2, shift)
    mi = {bins: (-float(losses.mi(t1, t2, bins=bins)), -float(losses.mi(t1, t2_shifted, bins=bins)))
          for bins in lesson08.BINS}
    drops = {bins: (aligned - shifted) / aligned for bins, (aligned, shifted) in mi.items()}
    right = {"relative_drop": drops, "best": max(drops, key=drops.get)}
    assert status(lesson08.ex1.judge(..., t1, t2, t2_shifted)) == "not attempted yet"
    assert status(lesson08.ex1.judge(right, t1, t2, t2_shifted)) == "right"
    in_nats = {bins: aligned - shifted for bins, (aligned, shifted) in mi.items()}
    reversed_sign = {bins: -drop for bins, drop in drops.items()}
    worst = min(drops, key=drops.get)
    for mistake, named in [({**right, "relative_drop": in_nats}, "in nats"),
                           ({**right, "relative_drop": reversed_sign}, "negative"),
                           ({**right, "best": worst}, "largest of your relative drops")]:
        feedback = lesson08.ex1.judge(mistake, t1, t2, t2_shifted)
        assert status(feedback) == "wrong" and named in feedback.message, feedback


def test_08_ex2_which_similarities_find_it():
    brain = data.brain_slice()  # the lesson's resolution, where mse and global_ncc miss the alignment
    t1, t2 = brain.image, data.t2_like(brain.labels, lesion_intensity=0.75, seed=0)
    shifts = [-2, 0, 2]
    finds = []
    for name in lesson08.SIMILARITIES:
        values = widgets.similarity_landscape(t1, t2, shifts, similarity=name)
        i, j = divmod(int(values.argmin()), len(shifts))
        if (shifts[i], shifts[j]) == (0, 0):
            finds.append(name)
    misses = [name for name in lesson08.SIMILARITIES if name not in finds]
    assert finds and misses, "the T2-like pair has measures that find the alignment and measures that miss it"
    assert status(lesson08.ex2.judge(..., t1, t2, shifts)) == "not attempted yet"
    assert status(lesson08.ex2.judge(finds, t1, t2, shifts)) == "right"
    too_few = lesson08.ex2.judge(finds[1:], t1, t2, shifts)
    assert status(too_few) == "wrong" and "also have their minimum at zero" in too_few.message
    too_many = lesson08.ex2.judge(finds + misses[:1], t1, t2, shifts)
    assert status(too_many) == "wrong" and "away from zero shift" in too_many.message


def test_08_ex3_ngf_against_mi(contrasts):
    _, labels, _ = contrasts
    shape = tuple(labels.shape[2:])

    def fake_result(seed, magnitude):
        disp = data.random_velocity(shape, magnitude=magnitude, smoothness=8.0, seed=seed)
        return SimpleNamespace(disp=disp, warped_labels=warps.warp_labels(labels, disp))

    fixed_labels = fake_result(0, 3.0).warped_labels
    results = {"mse": fake_result(1, 3.0), "mi": fake_result(2, 1.0)}
    ngf_result = fake_result(3, 2.0)
    dice = {name: metrics.dice(r.warped_labels, fixed_labels, labels=lesson08.TISSUES).mean().item()
            for name, r in [("ngf", ngf_result), ("mi", results["mi"])]}
    assert status(lesson08.ex3.judge(..., ngf_result, results, fixed_labels, labels)) == "not attempted yet"
    assert status(lesson08.ex3.judge(dice, ngf_result, results, fixed_labels, labels)) == "right"
    before = metrics.dice(labels, fixed_labels, labels=lesson08.TISSUES).mean().item()
    unwarped = lesson08.ex3.judge({**dice, "ngf": before}, ngf_result, results, fixed_labels, labels)
    assert status(unwarped) == "wrong" and "before registration" in unwarped.message
    reused = lesson08.ex3.judge(dice, results["mi"], results, fixed_labels, labels)
    assert status(reused) == "wrong" and "register again" in reused.message


# ----------------------------------------------------------------------------------------- lesson 09


def test_09_ex1_worst_structures():
    labels = data.brain_slice(parcels=True).labels
    moving_labels = warps.warp_labels(labels, data.random_velocity(tuple(labels.shape[2:]), magnitude=3.0,
                                                                   seed=1))
    result = SimpleNamespace(warped_labels=warps.warp_labels(moving_labels, data.random_velocity(
        tuple(labels.shape[2:]), magnitude=2.0, seed=2)))
    pair = SimpleNamespace(moving_labels=moving_labels, fixed_labels=labels)
    shared = sorted((set(torch.unique(moving_labels).tolist()) & set(torch.unique(labels).tolist())) - {0})
    assert len(shared) > lesson09.WORST
    dice = metrics.dice(result.warped_labels, labels, labels=shared)[0].tolist()
    order = sorted(range(len(shared)), key=lambda k: dice[k])
    sizes = [int((labels == value).sum()) for value in shared]
    median = sorted(sizes)[len(sizes) // 2]
    worst = [shared[k] for k in order[:lesson09.WORST]]
    right = {"worst": worst, "how_many_small": sum(sizes[k] < median for k in order[:lesson09.WORST])}
    assert status(lesson09.ex1.judge(..., result, pair)) == "not attempted yet"
    assert status(lesson09.ex1.judge(right, result, pair)) == "right"
    best = [shared[k] for k in order[::-1][:lesson09.WORST]]
    for mistake, named in [({**right, "worst": [0] + worst[:-1]}, "background"),
                           ({**right, "worst": best}, "best ones"),
                           ({**right, "worst": worst[::-1]}, "worst first"),
                           ({**right, "how_many_small": right["how_many_small"] + 1}, "median")]:
        feedback = lesson09.ex1.judge(mistake, result, pair)
        assert status(feedback) == "wrong" and named in feedback.message, feedback


def test_09_ex2_capstone_table():
    def card(dice, tre, seconds):
        return {"Dice": dice, "HD95 mm": 2.0, "TRE mm": tre, "EPE mm": tre, "folding %": 0.0,
                "seconds": seconds}

    truth = SimpleNamespace()  # the checker only asks whether the pair has a truth
    measured = {"default": card(0.9, 0.4, 1.5), "voxelmorph+io": card(0.88, 1.2, 0.3)}
    right = {"scorecards": measured, "choice": "default", "decided_by": "TRE mm"}
    assert status(lesson09.ex2.judge(..., truth)) == "not attempted yet"
    assert status(lesson09.ex2.judge(right, truth)) == "right"
    nan = float("nan")
    real = {"default": card(0.8, nan, 1.5), "voxelmorph": card(0.78, nan, 0.1)}
    real_right = {"scorecards": real, "choice": "voxelmorph", "decided_by": "Dice"}
    assert status(lesson09.ex2.judge(real_right)) == "right"
    baseline = {"no registration": card(0.5, 8.0, 0.0), "default": measured["default"]}
    mistakes = [
        ({**right, "scorecards": baseline, "choice": "default"}, truth, "baseline"),
        ({**right, "choice": "affine+svf"}, truth, "one of the two"),
        ({**right, "scorecards": {**measured, "default": card(90.0, 0.4, 1.5)}}, truth, "between 0 and 1"),
        ({**real_right, "scorecards": {**real, "default": card(0.8, 1.0, 1.5)}}, None, "no TRE"),
        ({**real_right, "decided_by": "TRE mm"}, None, "cannot decide"),
    ]
    for mistake, pair_truth, named in mistakes:
        feedback = lesson09.ex2.judge(mistake, pair_truth)
        assert status(feedback) == "wrong" and named in feedback.message, feedback
