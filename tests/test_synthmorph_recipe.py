"""The pieces of the SynthMorph-style recipe: the label loss, shared-contrast pairs, the pair's transform."""

from __future__ import annotations

import pytest
import torch

from regedu import kernels, losses, warps
from regedu.data import SynthMorphPairs, synth_image
from regedu.train import TrainConfig, compute_loss

PLAIN = dict(blur=0.0, gamma=0.0, bias=0.0, noise=0.0)   # images that are exactly one grey level per label


def _labels() -> torch.Tensor:
    labels = torch.zeros(1, 1, 12, 16, dtype=torch.long)
    labels[..., 2:8, 3:9] = 1
    labels[..., 6:11, 10:15] = 2
    return labels


# ---------------------------------------------------------------------------
# losses.label_mse
# ---------------------------------------------------------------------------


def test_label_mse_is_twice_the_share_of_voxels_whose_labels_disagree():
    fixed = _labels()
    moved = torch.roll(fixed, shifts=2, dims=3)
    disagree = (fixed != moved).float().mean()
    assert float(losses.label_mse(fixed, moved)) == pytest.approx(2 * float(disagree))
    assert float(losses.label_mse(fixed, fixed)) == 0


def test_label_mse_on_one_hot_maps_matches_integer_maps_and_has_a_gradient():
    fixed = _labels()
    values = torch.tensor([0, 1, 2])
    fixed_onehot = kernels.one_hot(fixed, values, torch.float64)
    disp = torch.zeros(1, 2, 12, 16, dtype=torch.float64, requires_grad=True)
    warped = kernels.resample(kernels.one_hot(torch.roll(fixed, 1, 3), values, torch.float64), disp + 0.3)
    loss = losses.label_mse(fixed_onehot, warped)
    loss.backward()
    assert loss.dtype == torch.float64 and disp.grad.abs().sum() > 0
    shifted = torch.roll(fixed, 1, 3)
    assert float(losses.label_mse(fixed, shifted)) == pytest.approx(
        float(losses.label_mse(fixed_onehot, kernels.one_hot(shifted, values, torch.float64))))


def test_label_mse_refuses_mismatched_maps():
    with pytest.raises(ValueError, match="shape"):
        losses.label_mse(_labels(), _labels()[..., :8])


def test_synthmorph_supervision_trains_on_label_mse_plus_the_regulariser():
    class Still(torch.nn.Module):   # a "network" that returns a fixed field
        def __init__(self, disp):
            super().__init__()
            self.disp = disp

        def forward(self, moving, fixed):
            return kernels.resample(moving, self.disp), self.disp

    pairs = SynthMorphPairs(2, shape=(24, 28), seed=0)
    batch = {key: torch.stack([pairs[i][key] for i in range(2)]) for key in pairs[0]}
    config = TrainConfig(supervision="synthmorph", weight=0.5)
    zero = torch.zeros(2, 2, 24, 28)
    assert float(compute_loss(Still(zero), batch, config)) == pytest.approx(
        float(losses.label_mse(batch["fixed_labels"], batch["moving_labels"])), abs=1e-6)
    true = batch["disp"]
    with_truth = float(compute_loss(Still(true), batch, config))
    without = float(compute_loss(Still(zero), batch, config))
    assert with_truth < without, "the true field lowers the label loss"
    values = torch.unique(torch.cat([batch["moving_labels"].flatten(), batch["fixed_labels"].flatten()]))
    warped = kernels.resample(kernels.one_hot(batch["moving_labels"], values, torch.float32), true)
    manual = losses.label_mse(kernels.one_hot(batch["fixed_labels"], values, torch.float32), warped) \
        + 0.5 * losses.diffusion(true)
    assert with_truth == pytest.approx(float(manual), rel=1e-5)


# ---------------------------------------------------------------------------
# SynthMorphPairs: shared contrast, the pair's transform
# ---------------------------------------------------------------------------


def _grey_levels(image: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    return {int(v): float(image[labels == v].mean()) for v in torch.unique(labels)}


def test_same_contrast_one_gives_both_images_one_grey_level_per_label():
    pairs = SynthMorphPairs(3, shape=(32, 40), same_contrast=1.0, seed=1, **PLAIN)
    for i in range(3):
        item = pairs[i]
        moving = _grey_levels(item["moving"], item["moving_labels"])
        fixed = _grey_levels(item["fixed"], item["fixed_labels"])
        shared = set(moving) & set(fixed)
        assert shared and all(moving[v] == pytest.approx(fixed[v], abs=1e-6) for v in shared)


def test_same_contrast_zero_gives_each_image_its_own_contrast():
    item = SynthMorphPairs(1, shape=(32, 40), same_contrast=0.0, seed=1, **PLAIN)[0]
    moving = _grey_levels(item["moving"], item["moving_labels"])
    fixed = _grey_levels(item["fixed"], item["fixed_labels"])
    assert any(abs(moving[v] - fixed[v]) > 0.05 for v in set(moving) & set(fixed))


def test_no_affine_and_no_deformation_give_a_zero_field_and_equal_labels():
    item = SynthMorphPairs(1, shape=(20, 24), rotation=0, scale=0, shear=0, translation=0, magnitude=0,
                           seed=2)[0]
    assert torch.count_nonzero(item["disp"]) == 0
    assert torch.equal(item["moving_labels"], item["fixed_labels"])


def test_the_pair_transform_does_not_fold_and_its_size_follows_magnitude():
    small = SynthMorphPairs(4, shape=(48, 56), rotation=0, scale=0, shear=0, translation=0, magnitude=1.0)
    large = SynthMorphPairs(4, shape=(48, 56), rotation=0, scale=0, shear=0, translation=0, magnitude=8.0)
    for i in range(4):
        assert float(warps.jacobian_det(large[i]["disp"][None]).min()) > 0
        assert large[i]["disp"].norm(dim=0).max() > small[i]["disp"].norm(dim=0).max()


@pytest.mark.parametrize("options, error, match", [
    (dict(same_contrast=1.5), ValueError, "same_contrast"),
    (dict(same_contrast=-0.1), ValueError, "same_contrast"),
    (dict(magnitude=(5.0, 2.0)), ValueError, "low <= high"),
    (dict(magnitude="large"), TypeError, "magnitude"),
    (dict(smoothness=0), ValueError, "smoothness"),
])
def test_synthmorph_pairs_refuse_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        SynthMorphPairs(2, shape=(16, 16), **options)


def test_synth_image_takes_given_grey_levels_and_checks_them():
    labels = _labels()
    image = synth_image(labels, 3, intensities=torch.tensor([[0.1, 0.5, 0.9]]), seed=0, **PLAIN)
    assert _grey_levels(image, labels) == pytest.approx({0: 0.1, 1: 0.5, 2: 0.9})
    with pytest.raises(ValueError, match="one grey level per label"):
        synth_image(labels, 3, intensities=torch.rand(1, 4))
    with pytest.raises(TypeError, match="floating"):
        synth_image(labels, 3, intensities=[[0.1, 0.5, 0.9]])
