"""Execute the whole course in full mode and render it to HTML, figures included.

    bash run.sh html                              # the usual way (sets up .venv first)
    python scripts/render_course.py               # every notebook -> course_html/
    python scripts/render_course.py --solutions   # the solutions notebooks too
    python scripts/render_course.py --fast 03_learned_unsupervised   # one notebook, in REGEDU_FAST mode

Each notebook runs top to bottom in a fresh kernel (as a student would run it, without
``REGEDU_FAST`` unless ``--fast``), and ``course_html/index.html`` links the pages with each one's
run time, which is also written to ``course_html/times.json``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import resource
import time
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


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


def render(notebook: Path, out: Path, fast: bool, timeout: int) -> tuple[float, float]:
    """Execute ``notebook`` in a fresh kernel and write its HTML into ``out``.

    Returns the wall-clock seconds and the kernel's CPU seconds: on a busy machine the first
    grows with the load, while the second is about what a single-threaded run takes on an idle core.
    """
    os.environ.pop("REGEDU_FAST", None)  # the kernel inherits this process's environment
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend puts the figures in the page
    if fast:
        os.environ["REGEDU_FAST"] = "1"
    for attempt in (1, 2):
        cells = nbformat.read(notebook, as_version=4)
        cpu_before = _children_cpu_seconds()
        start = time.perf_counter()
        try:
            ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
                cells, {"metadata": {"path": str(notebook.parent)}})
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
    page, _ = HTMLExporter().from_notebook_node(cells)
    (out / f"{notebook.stem}.html").write_text(page)
    return seconds, _children_cpu_seconds() - cpu_before


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
    parser.add_argument("--timeout", type=int, default=900,
                        help="seconds allowed per cell before the notebook is retried once (default 900)")
    args = parser.parse_args()
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
        times[notebook.stem] = render(notebook, args.out.resolve(), args.fast, args.timeout)
        wall, cpu = times[notebook.stem]
        print(f"{notebook.stem}: {wall:.0f} s ({cpu:.0f} s of kernel CPU time)", flush=True)
    write_index(args.out, times, args.fast)
    (args.out / "times.json").write_text(json.dumps(
        {"mode": "fast" if args.fast else "full", "wall_and_cpu_seconds": times, "machine": platform.node(),
         "load_average": os.getloadavg(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
         "cpu_count": os.cpu_count()}, indent=1) + "\n")
    print(f"open {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
