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


# ---------------------------------------------------------------------------
# bad input found before any work, with the cause named
# ---------------------------------------------------------------------------


def never_called(moving, fixed, **options):
    pytest.fail("the method ran before the input was checked")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_gpu_that_is_not_there_is_a_clear_error(pair):
    for method in ("affine", "voxelmorph"):
        with pytest.raises(ValueError, match=r"device='cuda'.*no(ne is available| GPU)"):
            register(pair["moving"], pair["fixed"], method=method, device="cuda")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_images_are_named_and_cast_is_suggested(pair, dtype):
    image, target = pair["moving"], pair["fixed"]
    for moving, fixed in ((image.to(dtype), target), (image, target.to(dtype))):
        with pytest.raises(TypeError, match=rf"is {dtype}.*float32.*\.float\(\)"):
            register(moving, fixed, method="affine", progress=False)


def test_an_image_that_requires_grad_is_registered_as_data(pair):
    moving = pair["moving"].clone().requires_grad_(True)
    fixed = pair["fixed"].clone().requires_grad_(True)
    result = register(moving, fixed, method="affine", levels=1, iterations=5, progress=False)
    plain = register(pair["moving"], pair["fixed"], method="affine", levels=1, iterations=5, progress=False)
    assert torch.allclose(result.disp, plain.disp) and not result.disp.requires_grad


@pytest.mark.parametrize("shape, message", [
    ((1, 1, 40, 43), r"must be the label map of `moving`, shape \(1 or 1, 1, 40, 44\), got \(1, 1, 40, 43\)"),
    ((1, 2, 40, 44), r"got \(1, 2, 40, 44\)"),
    ((40, 44), r"got \(40, 44\).*labels\[None, None\]"),
])
def test_wrong_shaped_moving_labels_are_refused_before_the_registration(pair, shape, message):
    labels = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError, match=message):
        register(pair["moving"], pair["fixed"], method=never_called, moving_labels=labels)


def test_float_moving_labels_must_hold_whole_numbers(pair):
    """Integral floats (as nibabel's get_fdata reads label files) are label maps; other floats are not."""
    blurred = pair["moving_labels"].float() + 0.25
    with pytest.raises(ValueError, match=r"not whole numbers \(e\.g\. [\d.]+\).*nearest neighbour"):
        register(pair["moving"], pair["fixed"], method=never_called, moving_labels=blurred)
    quick = {"method": "affine", "levels": 1, "iterations": 5, "progress": False}
    as_floats = register(pair["moving"], pair["fixed"], moving_labels=pair["moving_labels"].double(), **quick)
    as_ints = register(pair["moving"], pair["fixed"], moving_labels=pair["moving_labels"], **quick)
    assert as_floats.warped_labels.dtype == torch.float64
    assert torch.equal(as_floats.warped_labels.long(), as_ints.warped_labels)


def test_every_stage_is_checked_before_any_work(pair):
    """A bad option of a pipeline's second stage stops the run before its affine stage has run."""
    from regedu.api import check_options, starts_with_affine

    moving, fixed = pair["moving"], pair["fixed"]
    calls = []

    def callback(*step):
        calls.append(step)

    with pytest.raises(ValueError, match=r"deformable stage of 'default'.*`spacing`"):
        register(moving, fixed, spacing=-1, callback=callback, progress=False)
    with pytest.raises(ValueError, match=r"deformable stage.*`iterations` must be one int or a list of 3"):
        METHODS["affine+dense"](moving, fixed, levels=3, iterations=(5, 5), callback=callback, progress=False)
    with pytest.raises(ValueError, match=r"affine stage.*`levels=6` shrinks the image \(40, 44\)"):
        register(moving, fixed, affine_options={"levels": 6, "iterations": 5}, callback=callback)
    with pytest.raises(ValueError, match=r"method 'bspline'.*`window` sizes must be odd"):
        register(moving, fixed, method="bspline", window=4, callback=callback)
    with pytest.raises(TypeError, match="affine_options.*must be a dict"):
        register(moving, fixed, affine_options=2)
    assert calls == []
    # the checks need no images; with a shape they include the pyramid
    both = {"levels": 2, "iterations": (5, 5), "affine_options": {"levels": 2, "iterations": (5, 5)}}
    check_options("default", both, (20, 24, 16))
    with pytest.raises(ValueError, match="shrinks"):
        check_options("default", {**both, "levels": 3, "iterations": 5}, (20, 24, 16))
    check_options("default", {**both, "levels": 3, "iterations": 5})  # no shape: the pyramid is not known
    with pytest.raises(ValueError, match=r"--option \(the deformable stage of default\)"):
        check_options("default", {"lr": 0}, interface="cli")
    assert starts_with_affine("default") and starts_with_affine("rigid") and not starts_with_affine("demons")
