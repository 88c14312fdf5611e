"""Execute the whole course in full mode and render it to HTML, figures included.

    bash run.sh html                              # the usual way (sets up .venv first)
    python scripts/render_course.py               # every notebook -> course_html/
    python scripts/render_course.py --solutions   # the solutions notebooks too
    python scripts/render_course.py --fast 03_learned_unsupervised   # one notebook, in REGEDU_FAST mode
    python scripts/render_course.py --times-only  # time the course (course_html/times.json), no pages

Each notebook runs top to bottom in a fresh kernel (as a student would run it, without
``REGEDU_FAST`` unless ``--fast``), and ``course_html/index.html`` links the pages with each one's
run time, which is also written to ``course_html/times.json`` (with the GPU's name when the notebooks
ran on one).

Hangs: ipykernel 7.0 to 7.3 write each shell reply raw on the socket that a ZMQStream reads
requests from; a request that arrives while a reply is being sent can then stay unread, so the
kernel sits idle while the client waits for ever (ipykernel issues #1554 and #1529, fixed in 7.4;
seen here as ``bash run.sh html`` and ``jupyter nbconvert --execute`` hanging now and then).
pyproject.toml requires ``ipykernel>=7.4`` and this script refuses to start with an affected
version. That is not enough: with 7.4.0, 2 of 20 fast-mode runs of ``01_images_and_warps`` had
the request after the widget cell start about one cell timeout late, and ipykernel 6.31 did the
same (3 of 20 runs, 119.4 s with a 120 s timeout), so going back to 6.x is no fix. The wait ends
when the client's poll for the widget cell's reply times out (sent + 120 s): the reply was there,
but the client's pyzmq asyncio poll missed the socket's wake-up. So ``WatchedExecutePreprocessor``
waits on the kernel's sockets in ``POLL_SLICE``-second polls, each ending with a fresh check of the
socket; a cell that still runs past ``--timeout`` gets the notebook one more try in a new kernel.
``scripts/check_render_hang.py`` executes a notebook many times in a row to check.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import resource
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


# [first affected, first fixed) releases of ipykernel: see the module docstring
HANGING_IPYKERNEL = ((7, 0), (7, 4))


def ipykernel_problem(installed: str | None) -> str | None:
    """Why this ipykernel version can hang a render (with the command that fixes it), or None."""
    if installed is None:
        return f"ipykernel is not installed: run `{sys.executable} -m pip install 'ipykernel>=7.4'`."
    release = tuple(int(number) for number in re.findall(r"\d+", installed)[:2])
    if HANGING_IPYKERNEL[0] <= release < HANGING_IPYKERNEL[1]:
        return (f"ipykernel {installed} can leave a notebook hanging (an idle kernel that never reads an "
                f"execute request; fixed in 7.4). Upgrade it: `{sys.executable} -m pip install "
                f"'ipykernel>=7.4'` (`bash run.sh html` does it for you).")
    return None


def installed_ipykernel() -> str | None:
    """The version of ipykernel that the ``python3`` kernel of this interpreter runs."""
    try:
        return version("ipykernel")
    except PackageNotFoundError:
        return None


def course_notebooks(solutions: bool) -> list[Path]:
    """The notebooks in course order (then their solutions, if asked)."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if solutions:
        found += sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*.ipynb"))
    return found


def _children_cpu_seconds() -> float:
    """CPU time (user + system) of the finished child processes of this one: the kernels."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def render(notebook: Path, out: Path, fast: bool, timeout: int,
           write_html: bool = True) -> tuple[float, float]:
    """Execute ``notebook`` in a fresh kernel and write its HTML into ``out`` (unless not ``write_html``).

    Returns the wall-clock seconds and the kernel's CPU seconds: on a busy machine the first
    grows with the load, while the second is about what a single-threaded run takes on an idle core.
    """
    os.environ.pop("REGEDU_FAST", None)  # the kernel inherits this process's environment
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend puts the figures in the page
    if fast:
        os.environ["REGEDU_FAST"] = "1"
    for attempt in (1, 2):
        cpu_before = _children_cpu_seconds()
        start = time.perf_counter()
        try:
            cells = execute(notebook, timeout)
            break
        except CellTimeoutError:
            # a kernel that stops answering (seen now and then on a heavily loaded machine): one more go
            if attempt == 2:
                raise SystemExit(f"{notebook.name}: a cell ran past --timeout {timeout} s twice") from None
            print(f"{notebook.name}: a cell ran past {timeout} s; restarting the notebook in a new kernel",
                  flush=True)
        except CellExecutionError as error:
            seconds = time.perf_counter() - start
            raise SystemExit(f"{notebook.name} failed after {seconds:.0f} s:\n{error}") from None
    seconds = time.perf_counter() - start
    cpu_seconds = _children_cpu_seconds() - cpu_before
    if write_html:
        page, _ = HTMLExporter().from_notebook_node(cells)
        (out / f"{notebook.stem}.html").write_text(page)
    return seconds, cpu_seconds


# seconds the client waits on a kernel socket before it looks again (see the module docstring)
POLL_SLICE = 1.0


class WatchedExecutePreprocessor(ExecutePreprocessor):
    """nbconvert's executor, waiting on the kernel's sockets in short slices instead of one long poll.

    nbclient waits for a cell's ``execute_reply`` with one poll of the shell socket as long as the
    cell timeout. pyzmq's asyncio poll wakes on the socket's edge-triggered file descriptor, and now
    and then that wake-up is missed: the reply sits in the socket until the poll times out, when
    pyzmq checks the socket once more and finds it. Here every wait on the shell and IOPub channels
    is cut into polls of ``poll_slice`` seconds, each of which ends with that check, so a missed
    wake-up costs at most ``poll_slice``. Each one caught (a message found only when a slice ran
    out) is counted in the cell's ``metadata["regedu"]["late_messages"]`` and on stderr (not in
    ``metadata.execution``, whose values nbformat requires to be strings).
    """

    def __init__(self, poll_slice: float = POLL_SLICE, **kwargs):
        super().__init__(**kwargs)
        self.poll_slice = poll_slice
        self.late_messages = 0

    def slice_waits(self, channel) -> None:
        """Make ``channel.get_msg(timeout)`` poll in slices of ``poll_slice`` seconds (once per channel)."""
        if getattr(channel, "_regedu_sliced", False):
            return
        whole_wait = channel.get_msg

        async def get_msg(timeout=None):
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                wait = self.poll_slice if deadline is None else min(self.poll_slice,
                                                                     max(0.0, deadline - time.monotonic()))
                start = time.monotonic()
                try:
                    msg = await whole_wait(timeout=wait)
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
                    continue
                # the poll's timer ends it at `wait` s at the earliest; a message that woke it came before
                if wait > 0 and time.monotonic() - start >= wait:
                    self.late_messages += 1  # there all along: only the final check of the poll saw it
                return msg

        channel.get_msg = get_msg
        channel._regedu_sliced = True

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self.slice_waits(self.kc.shell_channel)
        self.slice_waits(self.kc.iopub_channel)
        late = self.late_messages
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            if self.late_messages > late:
                cell.metadata.setdefault("regedu", {})["late_messages"] = self.late_messages - late
                print(f"render_course: cell {cell_index}: {self.late_messages - late} message(s) from the "
                      f"kernel found only by a poll's final check (a missed wake-up)", file=sys.stderr,
                      flush=True)

    # nbclient binds execute_cell to its own async_execute_cell: rebind it to the one above
    execute_cell = run_sync(async_execute_cell)


def execute(notebook: Path, timeout: int, kernel_name: str = "python3") -> nbformat.NotebookNode:
    """Run ``notebook`` top to bottom in a fresh kernel started in its folder; return it with outputs.

    nbclient (under nbconvert's ExecutePreprocessor) waits for the kernel's ``kernel_info`` reply
    before it sends the first cell; ``WatchedExecutePreprocessor`` waits on the kernel's sockets in
    short slices. Raises ``CellTimeoutError`` when a cell runs past ``timeout`` seconds and
    ``CellExecutionError`` when one fails.
    """
    cells = nbformat.read(notebook, as_version=4)
    WatchedExecutePreprocessor(timeout=timeout, kernel_name=kernel_name).preprocess(
        cells, {"metadata": {"path": str(notebook.parent)}})
    return cells


def gpu_name() -> str | None:
    """The GPU the notebooks run on (they use the first CUDA device when there is one), or None."""
    import torch  # here, not at the top: the rest of this script needs no torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def write_index(out: Path, times: dict[str, tuple[float, float]], fast: bool) -> None:
    rows = "\n".join(f'<tr><td><a href="{html.escape(name)}.html">{html.escape(name)}</a></td>'
                     f"<td>{wall:.0f} s</td><td>{cpu:.0f} s</td></tr>" for name, (wall, cpu) in times.items())
    mode = "fast mode (REGEDU_FAST=1)" if fast else "full mode"
    (out / "index.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>regedu course</title><h1>regedu course</h1>"
        f"<p>Executed in {mode} on {html.escape(platform.node())}.</p>"
        f"<table><tr><th>notebook</th><th>run time</th><th>kernel CPU time</th></tr>{rows}</table>\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: the whole course)")
    parser.add_argument("--solutions", action="store_true", help="render the solutions notebooks too")
    parser.add_argument("--fast", action="store_true", help="REGEDU_FAST=1 (small sizes, for a quick look)")
    parser.add_argument("--out", type=Path, default=ROOT / "course_html",
                        help="folder (default course_html/)")
    parser.add_argument("--times-only", action="store_true",
                        help="execute and time the notebooks without writing HTML (times.json only)")
    parser.add_argument("--timeout", type=int, default=900,
                        help="seconds allowed per cell before the notebook is retried once (default 900)")
    args = parser.parse_args()
    problem = ipykernel_problem(installed_ipykernel())
    if problem:
        parser.exit(1, f"render_course.py: {problem}\n")
    notebooks = course_notebooks(args.solutions)
    if args.names:
        chosen = [path for path in notebooks if path.stem in args.names]
        missing = sorted(set(args.names) - {path.stem for path in chosen})
        if missing:
            parser.error(f"no notebook named {missing}; the course has {[p.stem for p in notebooks]}")
        notebooks = chosen
    args.out.mkdir(parents=True, exist_ok=True)
    times = {}
    for notebook in notebooks:
        times[notebook.stem] = render(notebook, args.out.resolve(), args.fast, args.timeout,
                                      write_html=not args.times_only)
        wall, cpu = times[notebook.stem]
        print(f"{notebook.stem}: {wall:.0f} s ({cpu:.0f} s of kernel CPU time)", flush=True)
    if not args.times_only:
        write_index(args.out, times, args.fast)
    (args.out / "times.json").write_text(json.dumps(
        {"mode": "fast" if args.fast else "full", "wall_and_cpu_seconds": times, "machine": platform.node(),
         "gpu": gpu_name(),
         "load_average": os.getloadavg(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
         "cpu_count": os.cpu_count()}, indent=1) + "\n")
    print(f"times: {args.out / 'times.json'}" if args.times_only else f"open {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
