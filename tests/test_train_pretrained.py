"""scripts/train_pretrained.py: resumable training of the shipped models, logs without machine paths."""

import importlib.util
import json
from pathlib import Path

import torch

from regedu.models import PRETRAINED
from regedu.train import load_checkpoint, load_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_pretrained.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_pretrained", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_recipe_is_a_described_shipped_model():
    script = _script()
    assert set(script.RECIPES) == set(PRETRAINED)


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
