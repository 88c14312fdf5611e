"""scripts/train_pretrained.py: resumable training of the shipped models, logs without machine paths."""

import json

import pytest
import torch
from script_loading import load_script

from regedu.models import PRETRAINED
from regedu.train import load_checkpoint, load_model


def _script():
    return load_script("scripts/train_pretrained.py", "train_pretrained")


def test_every_recipe_is_a_described_shipped_model():
    script = _script()
    assert set(script.RECIPES) == set(PRETRAINED) | set(script.NOT_SHIPPED)
    assert not set(PRETRAINED) & set(script.NOT_SHIPPED)


def test_a_run_cut_short_continues_and_finishes_with_a_clean_log(tmp_path, capsys):
    script = _script()
    weights, checkpoints = tmp_path / "weights", tmp_path / "checkpoints"
    common = ["toy_voxelmorph2d", "--steps", "4", "--checkpoint-every", "2", "--out", str(weights),
              "--checkpoints", str(checkpoints)]
    torch.set_num_threads(1)
    script.main(common + ["--minutes", "0.00001"])  # stops at the first checkpoint
    assert "rerun to continue" in capsys.readouterr().out
    assert load_checkpoint(checkpoints / "toy_voxelmorph2d.ckpt")["history"]["step"] == 2
    assert not (weights / "toy_voxelmorph2d.pt").exists()

    script.main(common)
    assert "4 steps" in capsys.readouterr().out
    model = load_model(weights / "toy_voxelmorph2d.pt")
    assert model(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))[1].shape == (1, 2, 64, 64)
    log_text = (weights / "toy_voxelmorph2d.log").read_text()
    log = json.loads(log_text)
    assert log["steps"] == 4 and log["validation_after"]["dice"] >= 0
    assert str(tmp_path) not in log_text and "/work" not in log_text and "/home" not in log_text
    progress = (checkpoints / "toy_voxelmorph2d.progress").read_text().splitlines()
    assert [json.loads(line).get("step") for line in progress[1:]] == [2, 4]


def test_a_recipe_that_continues_a_shipped_model_starts_from_its_weights_and_says_so(tmp_path, monkeypatch):
    script = _script()
    monkeypatch.setitem(script.CONTINUES_FROM, "toy_voxelmorph2d", "toy_voxelmorph2d")
    weights, checkpoints = tmp_path / "weights", tmp_path / "checkpoints"
    torch.set_num_threads(1)
    script.main(["toy_voxelmorph2d", "--steps", "2", "--out", str(weights),
                 "--checkpoints", str(checkpoints)])
    log = json.loads((weights / "toy_voxelmorph2d.log").read_text())
    shipped = json.loads((script.WEIGHTS / "toy_voxelmorph2d.log").read_text())
    assert log["starts_from"] == "toy_voxelmorph2d"
    # it starts where the shipped model is (same validation pairs), not from a fresh network's Dice
    assert log["validation_before"]["dice"] == pytest.approx(shipped["validation_after"]["dice"], abs=1e-4)
    assert log["validation_before"]["dice"] > shipped["validation_before"]["dice"] + 0.5


def test_a_recipe_that_continues_an_unshipped_model_starts_from_its_finished_weights(tmp_path, monkeypatch):
    script = _script()
    monkeypatch.setattr(script, "WEIGHTS", tmp_path / "shipped")  # nothing shipped
    monkeypatch.setitem(script.CONTINUES_FROM, "toy_voxelmorph2d_diff", "toy_voxelmorph2d")
    out = tmp_path / "finished"
    with pytest.raises(FileNotFoundError, match="train_pretrained.py toy_voxelmorph2d"):
        script._start_weights("toy_voxelmorph2d_diff", out)
    out.mkdir()
    (out / "toy_voxelmorph2d.pt").write_bytes(b"")
    assert script._start_weights("toy_voxelmorph2d_diff", out) == out / "toy_voxelmorph2d.pt"


def test_the_readme_table_lists_finished_models_from_their_logs(tmp_path, capsys):
    script = _script()
    weights = tmp_path / "weights"
    weights.mkdir()
    log = {"steps": 7, "seconds": 120.0, "validation_before": {"dice": 0.25, "folding": 0.0},
           "validation_after": {"dice": 0.75, "folding": 0.001}}
    (weights / "toy_pyramid2d.log").write_text(json.dumps(log))
    script.main(["--table", "--out", str(weights), "--checkpoints", str(tmp_path / "checkpoints")])
    table = capsys.readouterr().out
    assert "| `toy_pyramid2d` | 7 | 2 | 0.250 -> 0.750 | 0.100 |" in table
    assert "| `toy_voxelmorph2d` | not trained yet |" in table


def test_without_names_it_trains_the_shipped_recipes_and_the_unshipped_ones_they_start_from(tmp_path,
                                                                                              monkeypatch):
    script = _script()
    shipped = [n for n in script.RECIPES if n not in script.NOT_SHIPPED]
    # the SynthMorph-style models continue unshipped runs (synthmorph_pyramid2d_wide_t1 one, lesson 08's
    # two): those are trained first; the 3D default continues a chain of four unshipped runs, all trained
    # before it
    starts = {"synthmorph_pyramid2d_wide", "synthmorph_pyramid2d_wide_shared",
              "synthmorph_pyramid2d_wide_mixed", "pyramid3d_brain", "pyramid3d_brain_long",
              "pyramid3d_brain_longer", "pyramid3d_brain_longest"}
    names = script.recipes_to_train(tmp_path)
    assert names == [n for n in script.RECIPES if n in shipped or n in starts]
    assert names.index("synthmorph_pyramid2d_wide") < names.index("synthmorph_pyramid2d_wide_t1")
    assert names.index("pyramid3d_brain_longer") < names.index("pyramid3d_brain_longest")
    assert names.index("pyramid3d_brain_longest") < names.index("pyramid3d_brain_run5")
    # a shipped recipe continuing an unshipped one, itself continuing another: both starts are trained too
    first, second = [n for n in script.RECIPES if n in script.NOT_SHIPPED][:2]
    monkeypatch.setitem(script.CONTINUES_FROM, shipped[0], second)
    monkeypatch.setitem(script.CONTINUES_FROM, second, first)
    wanted = set(shipped) | {first, second} | starts
    assert script.recipes_to_train(tmp_path) == [n for n in script.RECIPES if n in wanted]
    (tmp_path / f"{shipped[1]}.pt").touch()  # finished ones are not trained again
    assert shipped[1] not in script.recipes_to_train(tmp_path)
