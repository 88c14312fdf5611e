"""Run a learned lesson with an untrained network swapped in for every shipped one.

A helper of ``tests/test_lesson_checks.py`` and ``tests/test_lesson_checks_more.py`` (two files, so that
the test workers, which take whole files, share the lessons): nbval runs every notebook with the shipped
models and the closing checks pass; here a lesson runs again (fast mode, as CI runs it) with every
checkpoint load turned into "build the network, keep its initial weights". The lesson's story is then
false (the networks barely move), and its last cell, the closing check, must say so with an
``AssertionError``, while every cell before it still runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

# run first in the kernel: every state dict loaded into a network is ignored, so each "trained"
# model keeps the weights it was built with (VoxelMorph's flow head starts near zero)
SWAP_IN_UNTRAINED = """
import torch as _torch

def _keep_initial_weights(self, state_dict, strict=True, assign=False):
    return _torch.nn.modules.module._IncompatibleKeys([], [])

_torch.nn.Module.load_state_dict = _keep_initial_weights
"""


def run_with_untrained_models(name: str) -> list[nbformat.NotebookNode]:
    """Execute lesson ``name`` (fast mode) after :data:`SWAP_IN_UNTRAINED`; its code cells, with outputs
    (errors are kept in the outputs, not raised).

    The executor is ``scripts/render_course.py``'s, which waits on the kernel's sockets in short slices:
    nbclient's own single long poll can miss the kernel's reply and wait out the whole cell timeout (the
    hang that script's docstring describes), and these tests run nbclient as that script does."""
    from script_loading import load_script

    watched = load_script("scripts/render_course.py", "render_course").WatchedExecutePreprocessor
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(SWAP_IN_UNTRAINED))
    environment = {"REGEDU_FAST": "1", "MPLBACKEND": "Agg"}
    previous = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        watched(timeout=600, kernel_name="python3", allow_errors=True).preprocess(
            notebook, {"metadata": {"path": str(ROOT / "notebooks")}})
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def errors(cell) -> list[str]:
    """The names of the exceptions a cell raised."""
    return [output.ename for output in cell.get("outputs", []) if output.output_type == "error"]


def assert_the_closing_check_fails(name: str) -> None:
    """Run lesson ``name`` with untrained networks: every cell but the last runs, the last raises
    ``AssertionError``."""
    cells = run_with_untrained_models(name)
    for index, cell in enumerate(cells[:-1]):
        assert not errors(cell), f"{name}: code cell {index} failed before the closing check:\n{cell.source}"
    closing = cells[-1]
    assert "all checks passed" in closing.source
    assert errors(closing) == ["AssertionError"], (
        f"{name}: the closing check passed with untrained models, so it does not check the lesson")
