"""Execute one notebook many times in a row, as ``render_course.py`` does, and report any hang.

    OMP_NUM_THREADS=1 python scripts/check_render_hang.py                 # the longest notebook, 20 runs
    python scripts/check_render_hang.py 03_learned_unsupervised --runs 5 --cell-timeout 120
    python scripts/check_render_hang.py --kernel python3 --full          # full mode instead of REGEDU_FAST=1

Each run starts a fresh kernel in a child process and executes the notebook with
``render_course.execute`` (no retry, so a hang is counted, not hidden). A run is a hang
when a cell runs past ``--cell-timeout`` (nbclient then interrupts and stops the kernel)
or the whole run passes ``--run-timeout`` (the child and its kernel are killed). The
versions of the Jupyter packages involved are printed with the result; the exit status
is 1 if any run hung or failed. Each run's line ends with how many kernel messages
``render_course``'s sliced polls caught late (missed wake-ups that used to cost a cell timeout).
It costs CPU: about runs x one execution.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the longest notebook in fast mode: 74 s (30 s of kernel CPU) on a loaded 2-core machine, with
# 07_3d_brains_and_nifti next (70 s); measured with `render_course.py --fast` (its times.json)
DEFAULT_NOTEBOOK = "08_multimodal_and_synthmorph"
PACKAGES = ("ipykernel", "jupyter_client", "nbclient", "nbconvert", "pyzmq", "tornado", "ipython")
HANG_EXIT = 3  # the child's exit status when a cell timed out


def package_versions() -> str:
    """``name version`` of each Jupyter package that takes part in an execution."""
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _stamp(cell, key: str) -> datetime | None:
    text = cell.get("metadata", {}).get("execution", {}).get(key)
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def kernel_waits(cells) -> str:
    """From nbclient's per-cell timing (kernel clock): the longest time the kernel took to start a cell
    after finishing the one before (milliseconds normally; long when a request sat unread) and the
    longest cell."""
    wait, longest, previous_idle = (0.0, None), (0.0, None), None
    for index, cell in enumerate(cells):
        busy, idle = _stamp(cell, "iopub.status.busy"), _stamp(cell, "iopub.status.idle")
        if busy is None or idle is None:
            continue
        if previous_idle is not None:
            wait = max(wait, ((busy - previous_idle).total_seconds(), index), key=lambda pair: pair[0])
        longest = max(longest, ((idle - busy).total_seconds(), index), key=lambda pair: pair[0])
        previous_idle = idle
    return (f"longest wait before a cell started: {wait[0]:.2f} s (cell {wait[1]}); "
            f"longest cell: {longest[0]:.1f} s (cell {longest[1]})")


def run_once(notebook: Path, cell_timeout: int, kernel: str) -> int:
    """Child process: one execution; exit 0 (ran), ``HANG_EXIT`` (a cell timed out) or 1 (failed)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from nbclient.exceptions import CellTimeoutError
    from nbconvert.preprocessors import CellExecutionError
    from render_course import execute

    try:
        executed = execute(notebook, cell_timeout, kernel_name=kernel)
        late = sum(cell.get("metadata", {}).get("regedu", {}).get("late_messages", 0)
                   for cell in executed.cells)
        print(f"{kernel_waits(executed.cells)}; messages caught late by the sliced polls: {late}", flush=True)
    except CellTimeoutError as error:
        print(f"a cell ran past {cell_timeout} s: {str(error).splitlines()[0]}", flush=True)
        return HANG_EXIT
    except CellExecutionError as error:
        print(f"a cell failed: {str(error).splitlines()[-1] if str(error) else error!r}", flush=True)
        return 1
    return 0


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc; kernels run in their own session, so killpg misses them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    for pid in [*_descendants(process.pid), process.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def run_child(notebook: Path, args: argparse.Namespace) -> tuple[str, float, str]:
    """One execution in a child process: ``(verdict, seconds, last line of its output)``."""
    command = [sys.executable, __file__, str(notebook), "--one", "--cell-timeout", str(args.cell_timeout),
               "--kernel", args.kernel]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(process)
        return "HANG", time.perf_counter() - start, f"the run passed --run-timeout {args.run_timeout} s"
    seconds = time.perf_counter() - start
    last = (output.strip().splitlines() or [""])[-1]
    verdict = {0: "ok", HANG_EXIT: "HANG"}.get(process.returncode, "FAILED")
    return verdict, seconds, last


def find_notebook(name: str) -> Path:
    """A course notebook by name (``01_images_and_warps``), or any ``.ipynb`` file by path."""
    if name.endswith(".ipynb") and Path(name).is_file():
        return Path(name).resolve()
    path = ROOT / "notebooks" / f"{name.removesuffix('.ipynb')}.ipynb"
    if not path.is_file():
        names = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        raise SystemExit(f"no notebook {path}; the course has {names}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", nargs="?", default=DEFAULT_NOTEBOOK,
                        help="course notebook name without .ipynb, or the path of any .ipynb file")
    parser.add_argument("--runs", type=int, default=20, help="consecutive executions (default 20)")
    parser.add_argument("--cell-timeout", type=int, default=180,
                        help="seconds a cell may run before the run counts as a hang (default 180)")
    parser.add_argument("--run-timeout", type=int, default=600,
                        help="seconds a whole run may take before it is killed as a hang (default 600)")
    parser.add_argument("--kernel", default="python3", help="kernel spec name (default python3)")
    parser.add_argument("--full", action="store_true", help="full mode (default: REGEDU_FAST=1)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    notebook = find_notebook(args.notebook)
    if args.one:
        return run_once(notebook, args.cell_timeout, args.kernel)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    os.environ.pop("MPLBACKEND", None)  # as render_course.py: the kernel's inline backend
    if args.full:
        os.environ.pop("REGEDU_FAST", None)
    else:
        os.environ["REGEDU_FAST"] = "1"
    print(f"{notebook.name}, {'full' if args.full else 'fast'} mode, {args.runs} runs; {package_versions()}",
          flush=True)
    verdicts = []
    for run in range(1, args.runs + 1):
        verdict, seconds, last = run_child(notebook, args)
        verdicts.append(verdict)
        print(f"run {run:2d}/{args.runs}: {verdict} in {seconds:.0f} s ({last})", flush=True)
    counts = {name: verdicts.count(name) for name in ("ok", "HANG", "FAILED")}
    print(f"{args.runs} runs: {counts['ok']} ok, {counts['HANG']} hung, {counts['FAILED']} failed")
    return 0 if counts["ok"] == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
