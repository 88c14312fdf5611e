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
