"""Tests for regedu.data.check.check_pair: one test per problem it must report, and silence on a good pair."""

import math

import nibabel as nib
import numpy as np
import pytest
import torch

from regedu.data.check import PairReport, check_pair
from regedu.data.io import save_nifti


def smooth_image(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, *([4] * len(shape)), generator=g)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True)


def box_labels(shape, start, size, value=1):
    labels = torch.zeros(1, 1, *shape, dtype=torch.long)
    labels[(0, 0, *(slice(s, s + size) for s in start))] = value
    return labels


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def shape(request):
    return (32, 16) if request.param == 2 else (16, 16, 32)


def run(*args, **kwargs) -> PairReport:
    return check_pair(*args, verbose=False, **kwargs)


def test_good_pair_gives_no_warning(shape):
    fixed = smooth_image(shape)
    moving = fixed.roll(1, dims=2)
    labels = box_labels(shape, [4] * len(shape), 8)
    report = run(moving, fixed, moving_labels=labels.roll(1, dims=2), fixed_labels=labels, spacing=1.0)
    assert report.ok and len(report) == 0 and list(report) == []
    assert report.stats["global NCC before"] > 0.5
    assert report.stats["mean Dice before"] == pytest.approx(7 / 8)  # boxes of 8 shifted by 1
    assert "no problems found" in str(report)


def test_intensity_range(shape):
    fixed = smooth_image(shape) * 200 - 50
    report = run(fixed.clone(), fixed)
    messages = [w for w in report if "outside [0, 1]" in w]
    assert len(messages) == 2
    assert "normalize_intensity" in messages[0]
    low, high = float(fixed.min()), float(fixed.max())
    assert f"{low:.4g}" in messages[1] and f"{high:.4g}" in messages[1]


def test_nans_are_reported(shape):
    fixed = smooth_image(shape)
    moving = fixed.clone()
    moving[(0, 0, *([1] * len(shape)))] = float("nan")
    moving[(0, 0, *([2] * len(shape)))] = float("inf")
    report = run(moving, fixed)
    assert any("moving contains 1 NaN and 1 infinite" in w for w in report)
    assert report.stats["moving range"][1] <= 1.0  # statistics ignore the bad voxels


def test_shape_mismatch_says_how_to_resample():
    report = run(smooth_image((16, 16)), smooth_image((16, 32)))
    [message] = [w for w in report if "spatial shape" in w and "resample_like" in w]
    assert "(16, 16)" in message and "(16, 32)" in message
    assert "global NCC before" not in report.stats  # not computed across grids


def test_orientation_mismatch():
    image = smooth_image((16, 16, 16))
    las = np.diag([-1.0, 1.0, 1.0, 1.0])
    report = run(image, image, moving_affine=las, fixed_affine=np.eye(4))
    [message] = [w for w in report if "oriented" in w]
    assert "LAS" in message and "RAS" in message and "load_nifti" in message


def test_anisotropic_and_different_spacing():
    image = smooth_image((16, 16, 16))
    report = run(image, image, spacing=(1.0, 1.0, 3.0))
    assert sum("anisotropic voxels (1 x 1 x 3 mm, ratio 3.00)" in w for w in report) == 2
    report = run(image, image, moving_affine=np.diag([2.0, 2.0, 2.0, 1.0]), fixed_affine=np.eye(4))
    assert any("voxel sizes differ" in w for w in report)
    assert not any("anisotropic" in w for w in report)


@pytest.mark.parametrize("factor, target", [(16, (32, 32)), (4, (20, 32)), (2, None)])
def test_divisibility_names_the_size_to_pad_to(factor, target):
    image = smooth_image((20, 30))
    report = run(image, image, factor=factor)
    messages = [w for w in report if "not divisible" in w]
    if target is None:
        assert messages == []
    else:
        [message] = messages
        assert f"pad to {target}" in message and f"pad_to_multiple(x, {factor})" in message


def test_low_correlation_is_a_misalignment_warning(shape):
    fixed = smooth_image(shape, seed=0)
    g = torch.Generator().manual_seed(1)
    unrelated = torch.rand(1, 1, *shape, generator=g)
    report = run(unrelated, fixed)
    [message] = [w for w in report if "global NCC" in w]
    assert "affine" in message
    a = unrelated.flatten().double() - unrelated.double().mean()
    b = fixed.flatten().double() - fixed.double().mean()
    squared_correlation = float((a @ b) ** 2 / ((a @ a) * (b @ b)))
    assert report.stats["global NCC before"] == pytest.approx(squared_correlation, abs=1e-4)


def test_low_dice_is_a_misalignment_warning(shape):
    image = smooth_image(shape)
    ndim = len(shape)
    moving_labels = box_labels(shape, [0] * ndim, 8)
    fixed_labels = box_labels(shape, [8] * ndim, 8)  # same label, no overlap
    report = run(image, image, moving_labels=moving_labels, fixed_labels=fixed_labels)
    [message] = [w for w in report if "Dice" in w]
    assert "0.000" in message
    assert report.stats["mean Dice before"] == 0.0


def test_label_problems_are_reported():
    image = smooth_image((16, 16))
    labels = box_labels((16, 16), (2, 2), 6)
    report = run(image, image, moving_labels=labels.float() * 0.5, fixed_labels=labels)
    assert any("non-integer" in w and "warp_labels" in w for w in report)
    report = run(image, image, moving_labels=labels[..., :8], fixed_labels=labels)
    assert any("moving_labels has shape" in w for w in report)


def test_paths_are_loaded_in_canonical_orientation(tmp_path):
    """Files stored LAS and RAS load as RAS: no orientation warning, and the warning text names the file."""
    image = smooth_image((16, 16, 16)) * 1000
    labels = box_labels((16, 16, 16), (2, 3, 4), 8)
    las = np.diag([-1.0, 1.0, 1.0, 1.0])
    las[0, 3] = 15.0  # same world box as the RAS grid
    save_nifti(image.flip(2), tmp_path / "moving.nii.gz", las)
    save_nifti(labels.flip(2), tmp_path / "moving_seg.nii.gz", las)
    save_nifti(image, tmp_path / "fixed.nii.gz", np.eye(4))
    save_nifti(labels, tmp_path / "fixed_seg.nii.gz", np.eye(4))
    assert nib.aff2axcodes(nib.load(tmp_path / "moving.nii.gz").affine) == ("L", "A", "S")
    report = run(tmp_path / "moving.nii.gz", str(tmp_path / "fixed.nii.gz"),
                 moving_labels=tmp_path / "moving_seg.nii.gz", fixed_labels=tmp_path / "fixed_seg.nii.gz")
    assert report.stats["orientation"] == ("RAS", "RAS")
    assert report.stats["mean Dice before"] == 1.0
    assert report.stats["global NCC before"] == pytest.approx(1.0, abs=1e-6)
    assert [w for w in report if "moving (moving.nii.gz) intensities" in w]
    assert len(report) == 2  # only the two intensity ranges


def test_verbose_prints_the_report(capsys):
    image = smooth_image((16, 16)) * 3
    report = check_pair(image, image)
    printed = capsys.readouterr().out
    assert printed.strip() == str(report)
    assert printed.startswith(f"check_pair: {len(report)} warning(s)")
    assert repr(report) == f"PairReport({len(report)} warning(s))"


def test_bad_arguments_raise():
    image = smooth_image((16, 16))
    with pytest.raises(ValueError, match="factor"):
        run(image, image, factor=0)
    with pytest.raises(ValueError, match="spacing"):
        run(image, image, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        run(image[0], image)
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        run("missing.nii.gz", image)
    assert math.isfinite(run(image, image).stats["global NCC before"])


def textured_image(shape, seed=0):
    """Fine texture (noise blurred over about one voxel), like a noisy 2 mm scan: its raw global
    correlation falls fast with a shift of a few voxels."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 1, *shape, generator=g)
    ndim = len(shape)
    kernel = torch.ones(1, 1, *([3] * ndim)) / 3**ndim
    conv = torch.nn.functional.conv2d if ndim == 2 else torch.nn.functional.conv3d
    coarse = smooth_image(shape, seed)
    return 0.7 * conv(noise, kernel, padding=1) + 0.3 * coarse


def test_a_shift_of_three_voxels_is_not_a_misalignment(shape):
    fixed = textured_image(shape)
    moving = fixed.roll(3, dims=2)
    report = run(moving, fixed, spacing=1.0)
    assert report.stats["global NCC before"] < 0.3  # the raw measure alone would have warned
    assert report.stats["global NCC before, smoothed"] > 0.3
    assert not [w for w in report if "global NCC" in w]


def test_misalignment_warnings_follow_the_method_and_speak_the_interface(shape):
    fixed = smooth_image(shape, seed=0)
    unrelated = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(1))
    ndim = len(shape)
    labels = (box_labels(shape, [0] * ndim, 8), box_labels(shape, [8] * ndim, 8))
    for method in (None, "demons", "bspline"):
        report = run(unrelated, fixed, moving_labels=labels[0], fixed_labels=labels[1], method=method)
        [ncc, dice] = [w for w in report if "global NCC" in w or "Dice" in w]
        assert "method='default'" in ncc and "similarity='mi'" in ncc and "--method" not in ncc
        assert "method='default'" in dice
        report = run(unrelated, fixed, moving_labels=labels[0], fixed_labels=labels[1], method=method,
                     interface="cli")
        [ncc, dice] = [w for w in report if "global NCC" in w or "Dice" in w]
        assert "--method default" in ncc and "--option similarity=mi" in ncc and "regedu.register" not in ncc
        assert "--method default" in dice and "regedu.register" not in dice
    for method in ("default", "affine", "rigid", "affine+demons"):  # they align the pair affinely first
        report = run(unrelated, fixed, moving_labels=labels[0], fixed_labels=labels[1], method=method)
        assert not [w for w in report if "global NCC" in w or "Dice" in w]
        assert report.stats["global NCC before, smoothed"] < 0.3 and report.stats["mean Dice before"] == 0.0
    with pytest.raises(ValueError, match="unknown registration method 'syn'"):
        run(unrelated, fixed, method="syn")
    with pytest.raises(ValueError, match="interface"):
        run(unrelated, fixed, interface="gui")


def test_range_advice_speaks_the_interface():
    image = smooth_image((16, 16)) * 100
    [python] = [w for w in run(image, image.clamp(0, 1)) if "outside [0, 1]" in w]
    [command] = [w for w in run(image, image.clamp(0, 1), interface="cli") if "outside [0, 1]" in w]
    assert "normalize_intensity" in python and "--no-normalize" in command and "regedu." not in command


def test_headers_that_disagree_are_reported_even_with_equal_axis_codes():
    """Same array, shape, voxel size and axis codes; only the origin (6 mm) or a rotation (8 degrees)
    differs: voxel x is not the same place, which comparing axis codes alone misses."""
    image = smooth_image((16, 16, 16))
    fixed_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    shifted = fixed_affine.copy()
    shifted[0, 3] = 6.0
    a = math.radians(8.0)
    rotated = fixed_affine.copy()
    rotated[:2, :2] = 1.5 * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    for moving_affine, offset in ((shifted, 6.0), (rotated, None)):
        report = run(image, image, moving_affine=moving_affine, fixed_affine=fixed_affine)
        assert report.stats["orientation"] == ("RAS", "RAS")
        [message] = [w for w in report if "headers put voxel x" in w]
        assert "resample_like(moving, moving_affine, (16, 16, 16), fixed_affine)" in message
        if offset is not None:
            assert report.stats["header offset (mm)"] == pytest.approx(offset)
    report = run(image, image, moving_affine=fixed_affine, fixed_affine=fixed_affine.copy())
    assert report.ok and report.stats["header offset (mm)"] == 0.0


def test_a_label_map_with_absurdly_many_values_is_reported_not_scored():
    """10,000 distinct values on a 100 x 100 slice is an image saved as integers: warn, skip Dice."""
    image = smooth_image((100, 100))
    many = torch.arange(10_000).view(1, 1, 100, 100)
    few = torch.ones(1, 1, 100, 100, dtype=torch.long)
    report = check_pair(image, image, moving_labels=many, fixed_labels=few, verbose=False)
    assert any("moving_labels holds 10000 distinct values" in w and "Dice skipped" in w for w in report)
    assert "mean Dice before" not in report.stats
