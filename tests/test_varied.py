"""Varied 2D brain pairs (regedu.data.varied): every level, orientations, deformations, heads."""

import pytest
import torch

from regedu import metrics, warps
from regedu.data import BrainSlicePairs, add_synthetic_head, brain_section, cerebrum_levels


def test_cerebrum_levels_cover_the_brain_and_drop_its_tips():
    levels = cerebrum_levels("axial")
    assert 50 <= len(levels) <= 75
    assert levels == list(range(levels[0], levels[-1] + 1))  # one contiguous run
    _, _, lowest = brain_section("axial", levels[0])
    _, _, below = brain_section("axial", levels[0] - 3)
    assert lowest.sum() > below.sum()
    assert len(cerebrum_levels("axial", min_fraction=0.9)) < len(levels)


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_sections_have_the_asked_shape_and_brain_inside(orientation):
    image, labels, mask = brain_section(orientation, shape=(96, 112))
    assert image.shape == labels.shape == mask.shape == (1, 1, 96, 112)
    assert labels.dtype == torch.int64 and mask.dtype == torch.bool
    assert set(torch.unique(labels).tolist()) == {0, 1, 2, 3}
    assert image[mask].mean() > 5 * image[~mask].mean()


def test_a_level_outside_the_volume_is_a_clear_error():
    with pytest.raises(ValueError, match="cerebrum_levels"):
        brain_section("axial", 500)
    with pytest.raises(ValueError, match="orientation"):
        brain_section("oblique", 10)


def test_synthetic_head_draws_skull_and_scalp_outside_the_brain_only():
    image, _, mask = brain_section("axial")
    head = add_synthetic_head(image, mask, seed=0)
    assert torch.equal(head[mask], image[mask])
    outside = head[~mask]
    assert outside.max() > 0.45  # bright scalp
    ring = add_synthetic_head(torch.zeros_like(image), mask, seed=0) > 0.3
    assert 0 < ring.float().mean() < 0.3
    assert torch.equal(add_synthetic_head(image, mask, seed=3), add_synthetic_head(image, mask, seed=3))
    with pytest.raises(ValueError, match="mask"):
        add_synthetic_head(image, mask.float())


def test_pairs_carry_the_true_field_and_vary_level_deformation_and_head():
    pairs = BrainSlicePairs(length=12, seed=5)
    items = [pairs[i] for i in range(12)]
    for item in items:
        assert item["moving"].shape == (1, 96, 112) and item["disp"].shape == (2, 96, 112)
        assert 0 <= item["moving"].min() and item["fixed"].max() <= 1
        carried = warps.warp_labels(item["moving_labels"][None], item["disp"][None])
        assert torch.equal(carried[0], item["fixed_labels"])
    brain_areas = {int((item["moving_labels"] > 0).sum()) for item in items}
    assert len(brain_areas) >= 10  # different levels
    sizes = torch.tensor([float(item["disp"].abs().amax()) for item in items])
    assert sizes.max() > 2 * sizes.min()  # small and large deformations
    outside = torch.tensor([float(item["moving"][item["moving_labels"] == 0].mean()) for item in items])
    assert (outside > 0.05).any() and (outside < 0.05).any()  # heads and skull-stripped
    dice = metrics.dice(torch.stack([i["moving_labels"] for i in items]),
                        torch.stack([i["fixed_labels"] for i in items]), labels=[1, 2, 3]).mean()
    assert 0.25 < dice < 0.75  # a real registration problem, not a trivial one


def test_pairs_are_reproducible_and_options_are_checked():
    first, again = BrainSlicePairs(4, seed=1)[2], BrainSlicePairs(4, seed=1)[2]
    assert all(torch.equal(first[key], again[key]) for key in first)
    other = BrainSlicePairs(4, seed=2)[2]
    assert not torch.equal(first["moving"], other["moving"])
    both = BrainSlicePairs(8, orientations=("coronal", "sagittal"), head=0.0, seed=0)
    assert both[0]["moving"].shape == (1, 96, 112)
    with pytest.raises(ValueError, match="orientations"):
        BrainSlicePairs(4, orientations="axial")
    with pytest.raises(ValueError, match="magnitude"):
        BrainSlicePairs(4, magnitude=(5.0, 1.0))
    with pytest.raises(ValueError, match="probability"):
        BrainSlicePairs(4, head=2.0)


def test_regedu_train_brain2d_uses_the_varied_pairs():
    from regedu.cli import _synthetic_data

    data = _synthetic_data("brain2d", 0, 8, torch.device("cpu"))
    assert isinstance(data, BrainSlicePairs)


def test_volume_pairs_are_the_3d_twin():
    from regedu.data import BrainVolumePairs

    item = BrainVolumePairs(length=2, head=1.0, seed=3)[0]
    assert item["moving"].shape == (1, 96, 112, 96) and item["disp"].shape == (3, 96, 112, 96)
    carried = warps.warp_labels(item["moving_labels"][None], item["disp"][None])
    assert torch.equal(carried[0], item["fixed_labels"])
    assert float(item["moving"][item["moving_labels"] == 0].max()) > 0.4  # a head around the brain


def test_dilation_one_axis_at_a_time_equals_the_full_max_pool():
    import torch.nn.functional as F

    from regedu.data.varied import _dilate

    sparse = (torch.rand(2, 1, 12, 14, 10, generator=torch.Generator().manual_seed(0)) > 0.97).float()
    assert torch.equal(_dilate(sparse), F.max_pool3d(sparse, 3, stride=1, padding=1))
    flat = sparse[:, :, :, :, 0]
    assert torch.equal(_dilate(flat), F.max_pool2d(flat, 3, stride=1, padding=1))
