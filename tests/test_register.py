"""Tests of regedu.api.register, the one entry point for every registration method."""

from __future__ import annotations

import pytest
import torch

from regedu import metrics, warps
from regedu.api import DEFAULT_PIPELINE, LEARNED_METHODS, METHODS, affine_then, register
from regedu.classical import RegistrationResult, register_dense
from regedu.data import random_transform, subject_from_disp, synth_image, synth_labels

QUICK = {"levels": 2, "iterations": 30, "progress": False}


@pytest.fixture(scope="module")
def pair():
    shape = (40, 44)
    labels = synth_labels(shape, num_labels=5, smoothness=10, seed=11)
    image = synth_image(labels, blur=1.0, gamma=0.0, bias=0.0, noise=0.0, seed=11)
    disp = random_transform(shape, rotation=5.0, scale=0.04, shear=0.0, translation=2.0, magnitude=2.0,
                            smoothness=14, seed=12)
    fixed = subject_from_disp(image, labels, disp, gamma=0.0, bias=0.0, noise=0.0)
    return {"moving": image, "moving_labels": labels, "fixed": fixed.image, "fixed_labels": fixed.labels}


def mean_dice(a, b):
    return float(torch.nanmean(metrics.dice(a, b)))


def test_every_method_in_the_table_runs_and_follows_the_convention(pair):
    before = mean_dice(pair["moving_labels"], pair["fixed_labels"])
    short = {"levels": 2, "iterations": 12, "progress": False}
    for name in METHODS:
        if name in LEARNED_METHODS:  # networks: tests/test_register_learned.py
            continue
        options = {"affine_options": short} if name.startswith("affine+") or name == "default" else {}
        result = register(pair["moving"], pair["fixed"], method=name, moving_labels=pair["moving_labels"],
                          **short, **options)
        assert isinstance(result, RegistrationResult) and result.method == name
        # the total displacement carries the labels and reproduces the warped image
        carried = warps.warp_labels(pair["moving_labels"], result.disp)
        torch.testing.assert_close(result.warped_labels, carried)
        torch.testing.assert_close(warps.warp(pair["moving"], result.disp), result.warped)
        assert mean_dice(result.warped_labels, pair["fixed_labels"]) > before, name
        assert result.seconds > 0


def test_default_is_affine_then_deformable(pair):
    assert METHODS["default"] is METHODS[DEFAULT_PIPELINE]
    result = register(pair["moving"], pair["fixed"], moving_labels=pair["moving_labels"], progress=False)
    assert result.affine is not None and result.affine.shape == (1, 2, 3)
    assert len(result.history) >= 2  # affine levels, then deformable levels
    before = mean_dice(pair["moving_labels"], pair["fixed_labels"])
    assert mean_dice(result.warped_labels, pair["fixed_labels"]) > before + 0.1
    affine_only = warps.affine_to_disp(result.affine, pair["moving"].shape[2:])
    assert float((result.disp - affine_only).abs().max()) > 0.1  # the deformable part is in disp too


def test_pipeline_history_and_callback_levels_run_on_through_both_stages(pair):
    calls = []
    result = register(pair["moving"], pair["fixed"], method="affine+bspline", levels=2, iterations=(4, 3),
                      affine_options={"levels": 2, "iterations": (2, 5)}, progress=False,
                      callback=lambda level, iteration, loss: calls.append((level, iteration)))
    assert [len(h) for h in result.history] == [2, 5, 4, 3]
    expected = [(level, i) for level, count in enumerate([2, 5, 4, 3]) for i in range(count)]
    assert calls == expected
    assert {"affine_angles", "control_points"} <= set(result.parameters)


def test_options_reach_the_method(pair):
    result = register(pair["moving"], pair["fixed"], method="svf", levels=1, iterations=7, progress=False)
    assert [len(h) for h in result.history] == [7] and "velocity" in result.parameters


def test_a_function_can_be_the_method_and_the_table_can_grow(pair):
    def identity_method(moving, fixed, scale=1.0, device=None):
        disp = torch.zeros(moving.shape[0], 2, *moving.shape[2:])
        return RegistrationResult(warped=moving.clone(), disp=disp * scale)

    assert register(pair["moving"], pair["fixed"], method=identity_method).method == "identity_method"
    METHODS["identity"] = identity_method
    try:
        result = register(pair["moving"], pair["fixed"], method="identity", scale=2.0)
        assert result.method == "identity" and float(result.disp.abs().max()) == 0
    finally:
        del METHODS["identity"]


def test_affine_then_builds_a_pipeline_from_any_deformable_method(pair):
    pipeline = affine_then(register_dense)
    result = pipeline(pair["moving"], pair["fixed"], affine_options=QUICK, **QUICK)
    assert result.affine is not None and len(result.history) == 4


def test_device_option_moves_the_inputs(pair):
    result = register(pair["moving"].double(), pair["fixed"].double(), method="affine+demons", device="cpu",
                      affine_options=QUICK, **QUICK)
    assert result.disp.device.type == "cpu" and result.disp.dtype == torch.float64


def test_bad_calls_raise_clear_errors(pair):
    moving, fixed = pair["moving"], pair["fixed"]
    with pytest.raises(ValueError, match="unknown registration method 'syn'.*choose one of"):
        register(moving, fixed, method="syn")
    with pytest.raises(TypeError, match=r"does not take the option\(s\) \['iters'\].*accepts"):
        register(moving, fixed, method="dense", iters=10)
    with pytest.raises(TypeError, match="deformable stage"):
        register(moving, fixed, method="affine+dense", spacing=4)
    with pytest.raises(TypeError, match="affine stage"):
        register(moving, fixed, affine_options={"weight": 1.0})
    with pytest.raises(ValueError, match="computes the affine itself"):
        register(moving, fixed, method="affine+svf", affine=torch.eye(2, 3)[None])
    with pytest.raises(TypeError, match="moving_labels"):
        register(moving, fixed, method="affine", moving_labels=[1, 2], **QUICK)
    with pytest.raises(ValueError, match="Resample one onto the other"):
        register(moving, fixed[..., :30])
