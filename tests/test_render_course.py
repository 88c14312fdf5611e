"""The render script guards against notebook executions that hang: ipykernel versions and a watchdog."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from importlib.metadata import version
from pathlib import Path
from queue import Empty

import nbformat
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import render_course  # noqa: E402


def release(text):
    return tuple(int(n) for n in re.findall(r"\d+", text)[:2])


def declared_ipykernel_floor():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    specs = [d for d in dependencies if re.match(r"ipykernel\b", d)]
    assert len(specs) == 1, f"pyproject.toml must require ipykernel once, found {specs}"
    return release(specs[0].split(">=")[1])


def test_the_fixed_ipykernel_is_required_and_installed():
    fixed = render_course.HANGING_IPYKERNEL[1]
    assert declared_ipykernel_floor() >= fixed
    assert f"ipykernel>={fixed[0]}.{fixed[1]}" in (ROOT / "environment.yml").read_text()
    assert render_course.ipykernel_problem(version("ipykernel")) is None  # what the tests' kernels run


@pytest.mark.parametrize("installed", ["7.0.0", "7.1.0", "7.2.0a1", "7.3.0"])
def test_affected_versions_are_refused_with_the_fix(installed):
    problem = render_course.ipykernel_problem(installed)
    assert problem is not None and f"ipykernel {installed} can leave a notebook hanging" in problem
    assert "pip install 'ipykernel>=7.4'" in problem


@pytest.mark.parametrize("installed", ["6.29.5", "6.31.0", "7.4.0", "7.10.1", "8.0.0"])
def test_other_versions_pass(installed):
    assert render_course.ipykernel_problem(installed) is None


def test_a_missing_ipykernel_says_how_to_install_it():
    assert "pip install 'ipykernel>=7.4'" in render_course.ipykernel_problem(None)


def test_render_stops_before_executing_with_an_affected_kernel(monkeypatch, capsys):
    monkeypatch.setattr(render_course, "installed_ipykernel", lambda: "7.3.0")
    monkeypatch.setattr(render_course, "execute", lambda *a, **k: pytest.fail("must not execute"))
    monkeypatch.setattr(sys, "argv", ["render_course.py", "--fast", "00_start_here"])
    with pytest.raises(SystemExit) as stop:
        render_course.main()
    assert stop.value.code == 1
    assert "ipykernel 7.3.0 can leave a notebook hanging" in capsys.readouterr().err


def test_times_only_times_the_notebooks_and_writes_no_pages(monkeypatch, tmp_path, capsys):
    executed = []
    monkeypatch.setattr(render_course, "installed_ipykernel", lambda: "7.4.0")
    monkeypatch.setattr(render_course, "execute", lambda notebook, timeout: executed.append(notebook.stem))
    monkeypatch.setattr(sys, "argv", ["render_course.py", "--times-only", "--out", str(tmp_path),
                                      "00_start_here", "01_images_and_warps"])
    render_course.main()
    assert executed == ["00_start_here", "01_images_and_warps"]
    times = json.loads((tmp_path / "times.json").read_text())
    assert times["mode"] == "full" and list(times["wall_and_cpu_seconds"]) == executed
    assert "gpu" in times  # None on a machine without CUDA, the GPU's name on one with it
    assert not list(tmp_path.glob("*.html"))
    assert "times.json" in capsys.readouterr().out


def test_the_hang_check_measures_how_long_a_request_waited():
    import check_render_hang

    def cell(busy, idle):
        timing = {"iopub.status.busy": f"2026-01-01T00:00:{busy}Z",
                  "iopub.status.idle": f"2026-01-01T00:00:{idle}Z"}
        return nbformat.v4.new_code_cell("x", metadata={"execution": timing})

    cells = [cell("00.000", "01.000"), nbformat.v4.new_markdown_cell("text"), cell("06.000", "06.500"),
             cell("06.510", "09.000")]
    assert check_render_hang.kernel_waits(cells) == (
        "longest wait before a cell started: 5.00 s (cell 2); longest cell: 2.5 s (cell 3)")



class MissedWakeupChannel:
    """A kernel channel whose poll misses the wake-up: it answers only when the poll's time runs out.

    ``get_msg(timeout)`` behaves as pyzmq's asyncio poll does then: a message that arrived after
    ``arrives`` seconds is found only by the final check when ``timeout`` runs out (None: never).
    """

    def __init__(self, arrives: float):
        self.arrives, self.started, self.polls = arrives, time.monotonic(), []

    async def get_msg(self, timeout=None):
        self.polls.append(timeout)
        await asyncio.sleep(60 if timeout is None else timeout)
        if time.monotonic() - self.started >= self.arrives:
            return {"msg_type": "execute_reply"}
        raise Empty


def sliced(channel, poll_slice):
    watcher = render_course.WatchedExecutePreprocessor(poll_slice=poll_slice)
    watcher.slice_waits(channel)
    watcher.slice_waits(channel)  # once per channel
    return watcher


def test_a_missed_wake_up_costs_one_slice_not_the_cell_timeout():
    channel = MissedWakeupChannel(arrives=0.05)
    watcher = sliced(channel, poll_slice=0.1)
    start = time.monotonic()
    assert asyncio.run(channel.get_msg(timeout=120)) == {"msg_type": "execute_reply"}
    assert time.monotonic() - start < 1.0  # unsliced, the poll would have waited the whole 120 s
    assert all(0 <= wait <= 0.1 for wait in channel.polls)
    assert watcher.late_messages == 1


def test_sliced_waits_still_time_out_and_wait_for_ever_when_asked():
    channel = MissedWakeupChannel(arrives=10.0)
    sliced(channel, poll_slice=0.05)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=0.2))
    assert 0.2 <= time.monotonic() - start < 1.0 and len(channel.polls) >= 4

    forever = MissedWakeupChannel(arrives=0.12)
    sliced(forever, poll_slice=0.05)
    assert asyncio.run(forever.get_msg(timeout=None)) == {"msg_type": "execute_reply"}  # as IOPub waits
    assert set(forever.polls) == {0.05}


def test_a_notebook_runs_with_sliced_waits(tmp_path, monkeypatch):
    sliced_channels = []
    slice_waits = render_course.WatchedExecutePreprocessor.slice_waits
    monkeypatch.setattr(render_course.WatchedExecutePreprocessor, "slice_waits",
                        lambda self, channel: (sliced_channels.append(channel), slice_waits(self, channel)))
    notebook = tmp_path / "small.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time; time.sleep(2.5)"),
                                                   nbformat.v4.new_code_cell("print(6 * 7)")]), notebook)
    executed = render_course.execute(notebook, timeout=120)
    assert executed.cells[1].outputs[0]["text"] == "42\n"
    # nbclient's execute_cell is bound to its own async_execute_cell: the subclass must rebind it
    assert sliced_channels and all(channel._regedu_sliced for channel in sliced_channels)


def test_a_cell_with_late_messages_still_renders(monkeypatch):
    """The count goes where nbformat allows a number (``metadata.execution`` holds only strings),
    so the HTML export of a notebook with a late message validates."""
    import nbformat
    from nbclient import NotebookClient

    async def executed(self, cell, cell_index, execution_count=None, store_history=True):
        self.late_messages += 1
        return cell

    monkeypatch.setattr(NotebookClient, "async_execute_cell", executed)
    watcher = render_course.WatchedExecutePreprocessor(poll_slice=0.1)
    watcher.slice_waits = lambda channel: None
    watcher.kc = type("Client", (), {"shell_channel": None, "iopub_channel": None})()
    cell = nbformat.v4.new_code_cell("1")
    asyncio.run(watcher.async_execute_cell(cell, 0))
    notebook = nbformat.v4.new_notebook(cells=[cell])
    nbformat.validate(notebook)
    assert cell.metadata["regedu"]["late_messages"] == 1
