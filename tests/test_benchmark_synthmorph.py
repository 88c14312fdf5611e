"""benchmarks/synthmorph.py: a judged SynthMorph-style network is held against the T1 network of its
own architecture, and the targets it prints say whether they are met."""

import sys

import torch
from script_loading import load_script

from regedu.models import PyramidNet, VoxelMorph
from regedu.train import save_checkpoint


def _script():
    return load_script("benchmarks/synthmorph.py", "benchmark_synthmorph")


def test_the_reference_t1_network_has_the_judged_networks_architecture():
    script = _script()
    assert script.same_architecture(PyramidNet(ndim=2)) == "pyramid2d_brain"
    assert script.same_architecture(VoxelMorph(ndim=2)) == "voxelmorph2d_brain"


def test_the_targets_say_false_when_a_network_misses_them(capsys):
    script = _script()
    table = {"judged": {"T1 -> T1": 0.68, "T1 -> T2-like": 0.55},
             "reference": {"T1 -> T1": 0.80, "T1 -> T2-like": 0.40}}
    script.print_targets("judged", "reference", none=0.45, table=table)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].endswith("0.550 >= 0.600: False")          # cross-contrast margin missed
    assert lines[-2].endswith("0.550 >= 0.400: True")
    assert lines[-1].endswith("0.680 >= 0.720: False (0.85x)")  # same-contrast ratio missed


def test_a_judged_checkpoint_is_scored_in_both_contrasts(tmp_path, monkeypatch, capsys):
    script = _script()
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "untrained.pt", PyramidNet(ndim=2))
    monkeypatch.setattr(sys, "argv", ["synthmorph.py", "--pairs", "2", "--model", str(path)])
    torch.set_num_threads(1)
    script.main()
    out = capsys.readouterr().out
    assert f"| {path} (SynthMorph-style) |" in out
    assert "against pyramid2d_brain" in out
    # an untrained network barely moves: it cannot meet the cross-contrast target
    assert "no registration + 0.15:" in out and out.count(": False") >= 1
