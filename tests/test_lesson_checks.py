"""A learned lesson's closing check fails when the lesson fails to show its point.

nbval runs every notebook with the shipped models and the closing checks pass. Here each learned
lesson runs again (fast mode, as CI runs it) with every checkpoint load turned into "build the
network, keep its initial weights": an untrained model swapped in for every shipped one. The
lesson's story is then false (the networks barely move), and its last cell, the closing check,
must say so with an ``AssertionError``, while every cell before it still runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
# the lessons rewired onto shipped models (07 trains its 3D network live until a 3D model ships)
LEARNED_LESSONS = [
    "03_learned_unsupervised",
    "04_supervised_vs_unsupervised",
    "05_diffeomorphic",
    "06_multiscale",
    "08_multimodal_and_synthmorph",
    "09_real_data_and_capstone",
]

# run first in the kernel: every state dict loaded into a network is ignored, so each "trained"
# model keeps the weights it was built with (VoxelMorph's flow head starts near zero)
SWAP_IN_UNTRAINED = """
import torch as _torch

def _keep_initial_weights(self, state_dict, strict=True, assign=False):
    return _torch.nn.modules.module._IncompatibleKeys([], [])

_torch.nn.Module.load_state_dict = _keep_initial_weights
"""


def _run_with_untrained_models(name: str) -> list[nbformat.NotebookNode]:
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(SWAP_IN_UNTRAINED))
    environment = {"REGEDU_FAST": "1", "MPLBACKEND": "Agg"}
    previous = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        client = NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(ROOT / "notebooks")}})
        client.execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _errors(cell) -> list[str]:
    return [output.ename for output in cell.get("outputs", []) if output.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNED_LESSONS)
def test_the_closing_check_fails_with_untrained_models(name):
    cells = _run_with_untrained_models(name)
    for index, cell in enumerate(cells[:-1]):
        assert not _errors(cell), f"{name}: code cell {index} failed before the closing check:\n{cell.source}"
    closing = cells[-1]
    assert "all checks passed" in closing.source
    assert _errors(closing) == ["AssertionError"], (
        f"{name}: the closing check passed with untrained models, so it does not check the lesson")
