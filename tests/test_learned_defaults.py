"""Issue 11: the defaults a user gets for learned registration are the ones measured best on held-out
pairs (README, "Learned registration against ANTs SyNCC and VoxelMorph"): the multiscale PyramidNet for
``regedu.register(method="voxelmorph")`` in 2D and 3D and for ``regedu train``, trained on the varied
brain pairs in 2D and 3D (in 3D flip-averaged); the SynthMorph-style model of lesson 08 is the wide
multiscale one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_loading import load_script

from regedu.api import DEFAULT_FLIPS, DEFAULT_MODELS, register
from regedu.cli import build_parser
from regedu.cli.train import _build_model, synthetic_data
from regedu.data import BrainSlicePairs, BrainVolumePairs
from regedu.models import PRETRAINED, FlipAveraged, PyramidNet, VoxelMorph, pretrained, pretrained_path

CHECKPOINTS = Path(__file__).resolve().parents[1] / "scripts" / "checkpoints"


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


def _progress(name: str) -> tuple[dict, float]:
    """A training run's first progress line (where it started) and its last validation Dice."""
    lines = [json.loads(line) for line in (CHECKPOINTS / f"{name}.progress").read_text().splitlines()]
    return lines[0], [line["validation_dice"] for line in lines if "validation_dice" in line][-1]


def test_the_default_3d_model_is_the_shipped_pyramid_on_a_coarser_grid():
    name = "pyramid3d_brain_run5"
    assert DEFAULT_MODELS[3] == name
    model = pretrained(name)
    assert isinstance(model, PyramidNet) and model.ndim == 3 and model.field_downsize == 2
    log = json.loads(pretrained_path(name).with_suffix(".log").read_text())
    assert log["file"] == f"regedu/weights/{name}.pt" and log["description"] == PRETRAINED[name]
    assert log["config"]["similarity"] == "ncc" and log["validation_after"]["folding"] < 0.001
    # five runs, each continuing the one before on the same validation pairs and improving on them
    # (the four before are not shipped; their progress files record them)
    chain = ["pyramid3d_brain", "pyramid3d_brain_long", "pyramid3d_brain_longer", "pyramid3d_brain_longest",
             name]
    continues_from = load_script("scripts/train_pretrained.py", "train_pretrained").CONTINUES_FROM
    first, reached = _progress(chain[0])
    assert reached > first["validation_before"]["dice"] + 0.2
    for previous, current in zip(chain[:-1], chain[1:], strict=True):
        start, after = _progress(current)
        assert start["starts_from"] == previous == continues_from[current]
        # the same weights scored again (pyramid3d_brain_longest finished on a GPU under bfloat16
        # autocast, its successor started on a CPU in float32: 0.7945 against 0.7946)
        assert start["validation_before"]["dice"] == pytest.approx(reached, abs=5e-4)
        assert after > reached + 0.005  # the last run, at half the rate, added 0.008; the others 0.02-0.08
        reached = after
    assert log["validation_after"]["dice"] == pytest.approx(reached, abs=1e-4)


def test_register_uses_the_3d_model_on_a_volume():
    """One varied training-like pair: the shipped network moves it and raises its label overlap; its
    fields are averaged over the pair and its left-right mirror image (DEFAULT_FLIPS), as chosen on the
    development pair, and a refinement starts from one pass."""
    from regedu import metrics

    pair = BrainVolumePairs(1, seed=7)[0]
    moving, fixed = pair["moving"][None], pair["fixed"][None]
    result = register(moving, fixed, method="voxelmorph", moving_labels=pair["moving_labels"][None])
    assert result.disp.shape == (1, 3, 96, 112, 96)
    before = metrics.dice(pair["moving_labels"][None], pair["fixed_labels"][None]).mean()
    after = metrics.dice(result.warped_labels, pair["fixed_labels"][None]).mean()
    assert after > before + 0.05
    assert DEFAULT_FLIPS[3] == (0,) and DEFAULT_FLIPS[2] == ()
    network = pretrained(DEFAULT_MODELS[3]).eval()
    with torch.no_grad():
        torch.testing.assert_close(result.disp, FlipAveraged(network, (0,))(moving, fixed).disp)
        one_pass = network(moving, fixed).disp
    assert float((result.disp - one_pass).abs().amax()) > 0.1  # the average is not the one pass
    refined = register(moving, fixed, method="voxelmorph+io", steps=0)
    torch.testing.assert_close(refined.disp, one_pass)


def test_lesson_08s_synthmorph_model_ships_with_its_log():
    """The wide SynthMorph-style pyramid: two unshipped runs (12000 and 4000 steps), then 4000 of its own."""
    name = "synthmorph_pyramid2d_wide_mixed_t1"
    assert name in PRETRAINED
    log = json.loads(pretrained_path(name).with_suffix(".log").read_text())
    assert log["steps"] == 4000 and log["config"]["supervision"] == "synthmorph"
    assert log["starts_from"] == "synthmorph_pyramid2d_wide_mixed"
    assert log["file"] == f"regedu/weights/{name}.pt" and log["description"] == PRETRAINED[name]
    # the chain, as train_pretrained.py reproduces it (each run validates on pairs of its own recipe's
    # kind, so one run's last validation Dice is not the next one's first)
    continues_from = load_script("scripts/train_pretrained.py", "train_pretrained").CONTINUES_FROM
    chain = ["synthmorph_pyramid2d_wide_shared", "synthmorph_pyramid2d_wide_mixed", name]
    assert chain[0] not in continues_from  # trained from scratch
    for previous, current in zip(chain[:-1], chain[1:], strict=True):
        assert continues_from[current] == previous == _progress(current)[0]["starts_from"]
    model = pretrained(name)
    narrow = pretrained("pyramid2d_brain")
    assert isinstance(model, PyramidNet)
    assert sum(p.numel() for p in model.parameters()) > 2 * sum(p.numel() for p in narrow.parameters())
    # the earlier SynthMorph-style models stay shipped (the README's tables and benchmarks compare them)
    assert isinstance(pretrained("synthmorph2d_long"), VoxelMorph)
    assert isinstance(pretrained("synthmorph_pyramid2d_wide_t1"), PyramidNet)


def test_the_shipped_weights_stay_within_20_mb_together():
    """Issue 11: every shipped model, all together, at most 20 MB (logs are a few kB)."""
    total = sum(pretrained_path(name).stat().st_size for name in PRETRAINED)
    assert total <= 20 * 10**6, f"the shipped weights take {total / 1e6:.1f} MB, over the 20 MB budget"
