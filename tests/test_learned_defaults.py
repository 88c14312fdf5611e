"""Issue 11: the defaults a user gets for learned registration are the ones measured best on held-out
pairs (README, "Learned registration against ANTs SyNCC and VoxelMorph"): the multiscale PyramidNet for
``regedu.register(method="voxelmorph")`` in 2D and 3D and for ``regedu train``, trained on the varied
brain pairs in 2D and 3D; the SynthMorph-style model of lesson 08 is the wide multiscale one."""

from __future__ import annotations

import json

import torch

from regedu.api import DEFAULT_MODELS, register
from regedu.cli import build_parser
from regedu.cli.train import _build_model, synthetic_data
from regedu.data import BrainSlicePairs, BrainVolumePairs
from regedu.models import PRETRAINED, PyramidNet, VoxelMorph, pretrained, pretrained_path


def test_the_default_2d_model_is_the_shipped_pyramid():
    assert DEFAULT_MODELS[2] == "pyramid2d_brain"
    model = pretrained("pyramid2d_brain")
    assert isinstance(model, PyramidNet) and model.ndim == 2 and model.levels == 3
    log = json.loads(pretrained_path("pyramid2d_brain").with_suffix(".log").read_text())
    assert log["steps"] == 12000 and log["config"]["similarity"] == "ncc"
    # trained as the single-scale VoxelMorph it replaces: same data, loss, weight and budget
    single = json.loads(pretrained_path("voxelmorph2d_brain").with_suffix(".log").read_text())
    shared = ("supervision", "similarity", "regulariser", "weight", "lr", "schedule", "batch_size", "steps")
    for key in shared:
        assert log["config"][key] == single["config"][key], key


def test_regedu_train_defaults_to_the_pyramid_on_varied_data():
    args = build_parser().parse_args(["train", "--data", "brain2d", "--out", "model.pt"])
    assert args.model == "pyramid"
    assert isinstance(_build_model(args.model, 2, 1), PyramidNet)
    assert isinstance(_build_model("voxelmorph", 2, 1), VoxelMorph)
    assert isinstance(synthetic_data("brain2d", 0, 4, torch.device("cpu")), BrainSlicePairs)
    assert isinstance(synthetic_data("brain3d", 0, 4, torch.device("cpu")), BrainVolumePairs)
    in_3d = _build_model(args.model, 3, 1)  # the shipped 3D model's layout
    assert isinstance(in_3d, PyramidNet) and in_3d.field_downsize == 2


def test_the_default_3d_model_is_the_shipped_pyramid_on_a_coarser_grid():
    assert DEFAULT_MODELS[3] == "pyramid3d_brain_longer"
    model = pretrained("pyramid3d_brain_longer")
    assert isinstance(model, PyramidNet) and model.ndim == 3 and model.field_downsize == 2
    chain = ["pyramid3d_brain", "pyramid3d_brain_long", "pyramid3d_brain_longer"]
    logs = [json.loads(pretrained_path(name).with_suffix(".log").read_text()) for name in chain]
    assert logs[-1]["file"] == "regedu/weights/pyramid3d_brain_longer.pt"
    assert all(log["config"]["similarity"] == "ncc" for log in logs)
    assert logs[0]["validation_after"]["dice"] > logs[0]["validation_before"]["dice"] + 0.2
    # each model continued the previous one's training and kept improving on the same validation pairs
    for previous, log, name in zip(logs[:-1], logs[1:], chain[:-1], strict=True):
        assert log["starts_from"] == name
        assert log["validation_before"]["dice"] == previous["validation_after"]["dice"]
        assert log["validation_after"]["dice"] > log["validation_before"]["dice"] + 0.02
        assert log["validation_after"]["folding"] < 0.001


def test_register_uses_the_3d_model_on_a_volume():
    """One varied training-like pair: the shipped network moves it and raises its label overlap."""
    from regedu import metrics

    pair = BrainVolumePairs(1, seed=7)[0]
    result = register(pair["moving"][None], pair["fixed"][None], method="voxelmorph",
                      moving_labels=pair["moving_labels"][None])
    assert result.disp.shape == (1, 3, 96, 112, 96)
    before = metrics.dice(pair["moving_labels"][None], pair["fixed_labels"][None]).mean()
    after = metrics.dice(result.warped_labels, pair["fixed_labels"][None]).mean()
    assert after > before + 0.05


def test_lesson_08s_synthmorph_model_ships_with_its_log():
    """The wide SynthMorph-style pyramid: 12000 steps of an unshipped recipe, then 4000 of its own."""
    name = "synthmorph_pyramid2d_wide_t1"
    assert name in PRETRAINED
    log = json.loads(pretrained_path(name).with_suffix(".log").read_text())
    assert log["steps"] == 4000 and log["config"]["supervision"] == "synthmorph"
    assert log["starts_from"] == "synthmorph_pyramid2d_wide" and log["file"] == f"regedu/weights/{name}.pt"
    assert log["description"] == PRETRAINED[name]
    model = pretrained(name)
    narrow = pretrained("pyramid2d_brain")
    assert isinstance(model, PyramidNet)
    assert sum(p.numel() for p in model.parameters()) > 2 * sum(p.numel() for p in narrow.parameters())
    # the earlier single-scale model stays shipped (the README's tables compare it)
    assert isinstance(pretrained("synthmorph2d_long"), VoxelMorph)


def test_the_shipped_weights_stay_within_20_mb_together():
    """Issue 11: every shipped model, all together, at most 20 MB (logs are a few kB)."""
    total = sum(pretrained_path(name).stat().st_size for name in PRETRAINED)
    assert total <= 20 * 10**6, f"the shipped weights take {total / 1e6:.1f} MB, over the 20 MB budget"
