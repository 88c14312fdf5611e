"""Issue 11: the defaults a user gets for learned registration are the ones measured best on held-out
pairs (README, "Learned registration against ANTs SyNCC and VoxelMorph"): the multiscale PyramidNet for
``regedu.register(method="voxelmorph")`` in 2D and for ``regedu train``, trained on the varied brain pairs
in 2D and 3D; the SynthMorph-style model of lesson 08 is the 16000-step one."""

from __future__ import annotations

import json

import torch

from regedu.api import DEFAULT_MODELS
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


def test_lesson_08s_synthmorph_model_ships_with_its_log():
    assert "synthmorph2d_long" in PRETRAINED
    log = json.loads(pretrained_path("synthmorph2d_long").with_suffix(".log").read_text())
    assert log["steps"] == 16000 and log["config"]["supervision"] == "synthmorph"
    assert log["file"] == "regedu/weights/synthmorph2d_long.pt"
    assert isinstance(pretrained("synthmorph2d_long"), VoxelMorph)
