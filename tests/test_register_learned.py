"""Learned methods in regedu.register: a network's forward pass (and its instance optimisation)
returns the same RegistrationResult, in the same convention, as the classical methods.

The networks are tiny and built here (untrained, or trained for a few steps on the test pair);
the shipped weights are used only where the default model itself is what is tested.
"""

from __future__ import annotations

import pytest
import torch

from regedu import metrics, warps
from regedu import train as T
from regedu.api import LEARNED_METHODS, METHODS, register
from regedu.classical import RegistrationResult
from regedu.data import random_transform, subject_from_disp, synth_image, synth_labels
from regedu.models import AffineNet, VoxelMorph, pretrained_path

SHAPE = (40, 44)


@pytest.fixture(scope="module")
def pair():
    labels = synth_labels(SHAPE, num_labels=4, smoothness=10, seed=3)
    image = synth_image(labels, blur=1.0, gamma=0.0, bias=0.0, noise=0.0, seed=3)
    disp = random_transform(SHAPE, rotation=3.0, scale=0.03, shear=0.0, translation=1.5, magnitude=2.0,
                            smoothness=14, seed=4)
    fixed = subject_from_disp(image, labels, disp, gamma=0.0, bias=0.0, noise=0.0)
    return {"moving": image, "moving_labels": labels, "fixed": fixed.image, "fixed_labels": fixed.labels}


def tiny_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return VoxelMorph(2, encoder=(8, 8), decoder=(8, 8, 8, 8), **kwargs)


@pytest.fixture(scope="module")
def trained(pair):
    """A tiny VoxelMorph trained for a few steps on the test pair (seconds)."""
    model = tiny_model()
    item = {key: value[0] for key, value in pair.items()}
    T.train(model, [item], steps=40, batch_size=1, lr=1e-2, similarity="mse", weight=0.01, progress=False)
    return model.eval()


def mean_dice(a, b):
    return float(torch.nanmean(metrics.dice(a, b)))


def test_learned_methods_are_in_the_table():
    assert set(LEARNED_METHODS) <= set(METHODS)


@pytest.mark.parametrize("method", LEARNED_METHODS)
def test_result_follows_the_convention(pair, method):
    model = tiny_model().train()
    options = {"steps": 3} if method.endswith("+io") else {}
    result = register(pair["moving"], pair["fixed"], method=method, model=model,
                      moving_labels=pair["moving_labels"], **options)
    assert isinstance(result, RegistrationResult) and result.method == method
    assert result.disp.shape == (1, 2, *SHAPE) and result.warped.shape == (1, 1, *SHAPE)
    torch.testing.assert_close(warps.warp(pair["moving"], result.disp), result.warped)
    torch.testing.assert_close(result.warped_labels, warps.warp_labels(pair["moving_labels"], result.disp))
    # a forward pass has no iterations; +io records the loss of each of its 3 steps, one level
    assert [len(level) for level in result.history] == ([] if method == "voxelmorph" else [3])
    assert result.affine is None and result.seconds > 0
    assert model.training  # the caller's mode is restored
    assert all(p.grad is None for p in model.parameters())  # the network itself is not trained


def test_a_briefly_trained_network_improves_dice(pair, trained):
    before = mean_dice(pair["moving_labels"], pair["fixed_labels"])
    result = register(pair["moving"], pair["fixed"], method="voxelmorph", model=trained,
                      moving_labels=pair["moving_labels"])
    assert mean_dice(result.warped_labels, pair["fixed_labels"]) > before + 0.02


def test_instance_optimisation_improves_on_the_forward_pass(pair):
    model = tiny_model()  # untrained: an almost-zero field, which the refinement must improve
    forward = register(pair["moving"], pair["fixed"], method="voxelmorph", model=model,
                       moving_labels=pair["moving_labels"])
    refined = register(pair["moving"], pair["fixed"], method="voxelmorph+io", model=model, steps=40,
                       similarity="mse", weight=0.01, moving_labels=pair["moving_labels"])
    assert (mean_dice(refined.warped_labels, pair["fixed_labels"])
            > mean_dice(forward.warped_labels, pair["fixed_labels"]) + 0.02)


def test_a_checkpoint_path_gives_the_same_result_as_the_module(pair, trained, tmp_path):
    path = T.save_checkpoint(tmp_path / "tiny.pt", trained)
    from_module = register(pair["moving"], pair["fixed"], method="voxelmorph", model=trained)
    from_path = register(pair["moving"], pair["fixed"], method="voxelmorph", model=path)
    torch.testing.assert_close(from_path.disp, from_module.disp)
    from_string = register(pair["moving"], pair["fixed"], method="voxelmorph", model=str(path), device="cpu")
    torch.testing.assert_close(from_string.disp, from_module.disp)


def test_any_size_any_dtype_and_other_models(pair):
    odd = (37, 41)  # not a multiple of the network's factor: it pads and crops back
    moving, fixed = pair["moving"][..., :37, :41].double(), pair["fixed"][..., :37, :41].double()
    result = register(moving, fixed, method="voxelmorph", model=tiny_model())
    assert result.disp.shape == (1, 2, *odd) and result.disp.dtype == torch.float64
    torch.testing.assert_close(warps.warp(moving, result.disp), result.warped)
    torch.manual_seed(0)
    affine = register(pair["moving"], pair["fixed"], method="voxelmorph", model=AffineNet(2, features=(4, 4)))
    assert affine.disp.shape == (1, 2, *SHAPE)


def test_the_default_model_is_the_shipped_2d_pyramid(pair):
    from regedu.api import DEFAULT_MODELS
    from regedu.model_cache import cached_model
    from regedu.models import PyramidNet

    name = DEFAULT_MODELS[2]
    try:
        path = pretrained_path(name)
    except FileNotFoundError:
        with pytest.raises(FileNotFoundError, match=f"train_pretrained.py {name}"):
            register(pair["moving"], pair["fixed"], method="voxelmorph")
        return
    result = register(pair["moving"], pair["fixed"], method="voxelmorph")
    assert result.disp.shape == (1, 2, *SHAPE)
    assert isinstance(cached_model(path), PyramidNet)  # the shipped file, loaded once and kept


def test_bad_calls_raise_clear_errors(pair, tmp_path):
    moving, fixed = pair["moving"], pair["fixed"]
    volume = torch.rand(1, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="registers 2D images but the pair is 3D"):
        register(volume, volume, method="voxelmorph", model=tiny_model())
    with pytest.raises(TypeError, match="`model` must be a checkpoint path"):
        register(moving, fixed, method="voxelmorph", model=42)
    with pytest.raises(TypeError, match=r"does not take the option\(s\) \['iterations'\]"):
        register(moving, fixed, method="voxelmorph", model=tiny_model(), iterations=5)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        register(moving, fixed, method="voxelmorph", model=tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable regedu checkpoint"):
        register(moving, fixed, method="voxelmorph", model=corrupt)
    with pytest.raises(ValueError, match="expects 1 channel"):
        register(moving.expand(1, 2, *SHAPE), fixed.expand(1, 2, *SHAPE), method="voxelmorph",
                 model=tiny_model())
    with pytest.raises(ValueError, match="must share one spatial shape"):
        register(moving, fixed[..., :30], method="voxelmorph", model=tiny_model())
    with pytest.raises(ValueError, match="`steps` must be an integer"):
        register(moving, fixed, method="voxelmorph+io", model=tiny_model(), steps=-1)
