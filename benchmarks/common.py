"""Shared tools for regedu's benchmarks: timing, peak memory, inputs, tables and result files.

Every benchmark compares regedu with a "peer" (MONAI, ANTs, VoxelMorph...) in one process, on the
same inputs. The rules that make such a comparison fair live here, once:

* :func:`time_interleaved` warms every contender up, then runs them in turn, repeat after repeat,
  alternating who goes first, so that noise from a busy machine hits all of them alike; it reports
  the median, which ignores the odd slow run;
* a timed call ends only when the device has finished (:func:`synchronize` on CUDA);
* :func:`peak_memory` measures what one call needs above what was already held: the CUDA
  allocator's peak on a GPU, the growth of the process's peak resident memory (Linux ``VmHWM``,
  reset before each call) on the CPU, which also counts memory that numpy or C++ libraries
  such as ITK allocate behind torch's back. Run it apart from the timed runs, e.g. after them.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------
# command line shared by every benchmark
# ---------------------------------------------------------------------------


def benchmark_arguments(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes (``--device``, ``--quick``, ...)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1...")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, few repeats: checks that the benchmark runs, measures nothing")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per contender and case")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs per contender before timing")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown file for the results (default: benchmarks/results/<name>_<device>.md)")
    return parser


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, with a clear error when CUDA is asked for but absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU. "
                         f"Run on a GPU machine or use --device cpu.")
    return device


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``fn``, including the device work it queued."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_interleaved(contenders: dict[str, Callable[[], object]], device: torch.device,
                     repeats: int, warmup: int) -> dict[str, list[float]]:
    """Time several functions in turn: ``{name: [seconds per repeat]}``.

    Each function is first called ``warmup`` times untimed (caches, lazy initialisation, the
    CUDA allocator). Then every repeat calls each function once; the order rotates from one
    repeat to the next, so no contender always runs right after the same other one.
    """
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_call(contenders[name], device))
    return times


def auto_repeats(seconds_per_call: float, budget_seconds: float, minimum: int = 5, maximum: int = 50) -> int:
    """How many repeats fit in ``budget_seconds`` for one contender, clamped to ``[minimum, maximum]``."""
    if seconds_per_call <= 0:
        return maximum
    return int(min(maximum, max(minimum, budget_seconds // seconds_per_call)))


def median_ms(seconds: Sequence[float]) -> float:
    """Median of timings given in seconds, in milliseconds."""
    return 1000.0 * statistics.median(seconds)


def spread_ms(seconds: Sequence[float]) -> float:
    """Interquartile range of timings given in seconds, in milliseconds (0 for fewer than 2)."""
    if len(seconds) < 2:
        return 0.0
    quartiles = statistics.quantiles(seconds, n=4)
    return 1000.0 * (quartiles[2] - quartiles[0])


# ---------------------------------------------------------------------------
# peak memory
# ---------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident memory (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _return_free_memory_to_os() -> None:
    """Ask glibc to give the memory it keeps from freed blocks back to the OS (Linux; else no-op).

    glibc keeps freed blocks resident for reuse, so a call that reuses them would need no new
    resident memory and its peak would read as ~0. ``malloc_trim(0)`` releases them first; the
    measured call then has to fault in every page it touches, and the peak sees it all.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(fn: Callable[[], object], device: torch.device) -> tuple[float, str]:
    """Peak memory, in MiB, that one call of ``fn`` needs above what was held before it.

    Returns ``(mebibytes, method)``; ``method`` says what was measured:

    * ``"cuda"``: ``torch.cuda.max_memory_allocated`` growth (tensors only, not the allocator's cache);
    * ``"rss"``: growth of the peak resident set size (Linux), which sees every allocation of the
      process: torch, numpy and C++ libraries alike; freed memory that the C allocator kept is
      handed back first (:func:`_return_free_memory_to_os`) so that reusing it counts too;
    * ``"tracemalloc"``: elsewhere, the Python-level allocations only (numpy arrays included,
      torch tensors not), a lower bound.
    """
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "cuda"
    _return_free_memory_to_os()
    if _reset_peak_rss():
        before = _proc_status_kib("VmRSS")
        fn()
        peak = _proc_status_kib("VmHWM")
        if before is not None and peak is not None:
            return max(peak - before, 0) / 1024, "rss"
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, "tracemalloc"


def process_peak_rss_mib() -> float:
    """Peak resident memory of the whole process so far, in MiB (``resource.getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20  # kB on Linux, bytes on macOS


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


def smooth_field(batch: int, shape: Sequence[int], amplitude: float, seed: int, device: torch.device,
                 dtype: torch.dtype = torch.float32, control_points: int = 6) -> torch.Tensor:
    """A smooth random displacement or velocity field ``(batch, ndim, *shape)``, in voxels.

    Uniform noise on a coarse grid of ``control_points`` per axis, upsampled (linear,
    align_corners) to ``shape``; values lie in ``[-amplitude, amplitude]`` voxels. Seeded, so
    every contender gets the same field.
    """
    ndim = len(shape)
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, ndim, *([control_points] * ndim), generator=generator, dtype=torch.float64)
    coarse = (2 * coarse - 1) * amplitude
    mode = "bilinear" if ndim == 2 else "trilinear"
    field = F.interpolate(coarse, size=tuple(shape), mode=mode, align_corners=True)
    return field.to(device=device, dtype=dtype)


def random_image(batch: int, channels: int, shape: Sequence[int], seed: int,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A seeded image ``(batch, channels, *shape)``: smooth blobs plus a little noise, values in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    ndim = len(shape)
    mode = "bilinear" if ndim == 2 else "trilinear"
    blobs = torch.rand(batch, channels, *([8] * ndim), generator=generator)
    image = F.interpolate(blobs, size=tuple(shape), mode=mode, align_corners=True)
    image = 0.9 * image + 0.1 * torch.rand(image.shape, generator=generator)
    return image.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------


def environment(device: torch.device, packages: Sequence[str] = ()) -> dict[str, object]:
    """What the numbers depend on: versions, device, threads, time, command line."""
    info: dict[str, object] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *(without_machine_paths(a) for a in sys.argv)]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": _device_name(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for package in packages:
        info[package] = _version_of(package)
    return info


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version_of(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def format_table(columns: Sequence[str], rows: Sequence[dict[str, object]], markdown: bool = False) -> str:
    """Rows of ``{column: value}`` as an aligned text table, or as a markdown table.

    Floats are printed with 3 significant digits beyond the integer part (``12.3``, ``0.812``).
    """
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return "" if value is None else str(value)

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(line) + " |" for line in cells]
        return "\n".join(lines)
    widths = [max(len(column), *(len(line[k]) for line in cells)) for k, column in enumerate(columns)]
    def aligned(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) if k == 0 else value.rjust(width)
                         for k, (value, width) in enumerate(zip(values, widths, strict=True)))
    rule = ["-" * width for width in widths]
    return "\n".join([aligned(columns), aligned(rule), *(aligned(line) for line in cells)])


def write_results(path: Path, title: str, notes: str, columns: Sequence[str],
                  rows: Sequence[dict[str, object]], env: dict[str, object]) -> Path:
    """Write a markdown report: title, notes, the table, then everything as a JSON block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"environment": env, "columns": list(columns), "rows": list(rows)}
    text = "\n\n".join([
        f"# {title}",
        notes.strip(),
        format_table(columns, rows, markdown=True),
        "Environment and raw numbers:",
        "```json\n" + json.dumps(payload, indent=2, default=str) + "\n```",
    ])
    path.write_text(text + "\n")
    return path


def without_machine_paths(argument: str) -> str:
    """A command-line argument as a results file may record it: an absolute path becomes its file name."""
    return Path(argument).name if os.path.isabs(argument) else argument


def default_output(name: str, device: torch.device, quick: bool) -> Path:
    """``benchmarks/results/<name>_<device type>.md`` (``..._quick.md`` for smoke runs)."""
    suffix = "_quick" if quick else ""
    return RESULTS_DIR / f"{name}_{device.type}{suffix}.md"
