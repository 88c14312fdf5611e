"""Benchmark: regedu's ``warp`` and ``integrate`` against MONAI's ``Warp`` and ``DVF2DDF``.

Both libraries are called as a user would call them, in one process, on the same inputs and with
the same settings: bilinear (trilinear in 3D) interpolation, border padding, 7 scaling-and-squaring
steps. MONAI's ``Warp`` takes its displacement ("ddf") in voxels, channel ``k`` along spatial axis
``k``, the same convention as regedu, so the very same tensors go to both; before anything is
timed, the script checks that both give the same output (and the same gradients) to 1e-4.

Cases: 2D 256x256 with batch 16, 3D 160x192x224 with batch 1 (a brain MRI at ~1 mm); each
forward only (no autograd graph) and forward + backward (gradient with respect to the field, and
to the image for ``warp``).

    benchmarks/.venv/bin/python benchmarks/warps.py                  # CPU, writes results/warps_cpu.md
    benchmarks/.venv/bin/python benchmarks/warps.py --device cuda    # GPU, writes results/warps_cuda.md
    benchmarks/.venv/bin/python benchmarks/warps.py --quick          # tiny smoke run
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from common import (
    auto_repeats,
    benchmark_arguments,
    default_output,
    environment,
    format_table,
    median_ms,
    peak_memory,
    random_image,
    resolve_device,
    smooth_field,
    spread_ms,
    time_call,
    time_interleaved,
    write_results,
)
from monai.networks.blocks import DVF2DDF, Warp

from regedu.warps import integrate, warp

STEPS = 7
TOLERANCE = 1e-4
KINK_SHARE = 1e-4
COLUMNS = ["case", "regedu ms", "MONAI ms", "ratio", "regedu MiB", "MONAI MiB",
           "output diff", "grad outliers"]


@dataclass(frozen=True)
class Case:
    operation: str  # "warp" or "integrate"
    shape: tuple[int, ...]
    batch: int
    backward: bool

    @property
    def name(self) -> str:
        size = "x".join(str(n) for n in self.shape)
        direction = "fwd+bwd" if self.backward else "fwd"
        return f"{self.operation} {len(self.shape)}D {size} b{self.batch} {direction}"


def cases(quick: bool) -> list[Case]:
    """Every (operation, shape, direction) combination; tiny shapes with ``quick``."""
    shapes = [((32, 32), 2), ((16, 20, 24), 1)] if quick else [((256, 256), 16), ((160, 192, 224), 1)]
    return [Case(operation, shape, batch, backward)
            for shape, batch in shapes
            for operation in ("warp", "integrate")
            for backward in (False, True)]


# ---------------------------------------------------------------------------
# the two contenders for one case, as zero-argument functions
# ---------------------------------------------------------------------------


@dataclass
class Contender:
    run: Callable[[], object]  # the timed call
    result: Callable[[], list[torch.Tensor]]  # output (and gradients) of one call, for the agreement check


def make_contenders(case: Case, device: torch.device) -> dict[str, Contender]:
    """regedu's and MONAI's version of ``case``, on identical inputs."""
    ndim = len(case.shape)
    if case.operation == "warp":
        image = random_image(case.batch, 1, case.shape, seed=0, device=device)
        field = smooth_field(case.batch, case.shape, amplitude=4.0, seed=1, device=device)
        inputs = [image, field]
        regedu_call = partial(warp, mode="bilinear", padding="border")
        monai_call = _quietly(Warp, mode="bilinear", padding_mode="border")
    else:
        velocity = smooth_field(case.batch, case.shape, amplitude=8.0, seed=2, device=device)
        inputs = [velocity]
        regedu_call = partial(integrate, steps=STEPS)
        monai_call = _quietly(DVF2DDF, num_steps=STEPS, mode="bilinear", padding_mode="border")
    output_shape = (case.batch, 1 if case.operation == "warp" else ndim, *case.shape)
    upstream = torch.randn(output_shape, generator=torch.Generator().manual_seed(3)).to(device)
    return {
        "regedu": _contender(regedu_call, inputs, upstream, case.backward),
        "MONAI": _contender(monai_call, inputs, upstream, case.backward),
    }


def _quietly(module_class: type, **options) -> torch.nn.Module:
    """Build a MONAI block without its warning that it uses torch's own grid_sample.

    MONAI has a compiled resampler of its own, used only when MONAI was built from source with
    its C++/CUDA extension; the wheel falls back to ``torch.nn.functional.grid_sample``, the same
    kernel regedu calls, and says so each time a block is built.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample", category=UserWarning)
        return module_class(**options)


def _contender(call: Callable[..., torch.Tensor], inputs: list[torch.Tensor], upstream: torch.Tensor,
               backward: bool) -> Contender:
    """Wrap ``call(*inputs)`` as a forward-only or forward+backward function of no arguments.

    Each contender gets its own leaf copies of the inputs so that gradients never mix. The
    backward pass receives the same fixed ``upstream`` gradient in both libraries (as if a loss
    sat on top), so no reduction kernel is timed with it.
    """
    if not backward:
        return Contender(run=lambda: call(*inputs), result=lambda: [call(*inputs)])
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]

    def forward_backward() -> torch.Tensor:
        for leaf in leaves:
            leaf.grad = None
        output = call(*leaves)
        output.backward(upstream)
        return output

    def result() -> list[torch.Tensor]:
        output = forward_backward().detach()
        return [output, *(leaf.grad for leaf in leaves)]

    return Contender(run=forward_backward, result=result)


def relative_difference(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``|x - reference| / max(1, max|reference|)``, elementwise."""
    return (x - reference).abs() / max(1.0, float(reference.abs().max()))


def check_agreement(case: Case, regedu: list[torch.Tensor], monai: list[torch.Tensor]) -> tuple[float, int]:
    """Stop unless both libraries computed the same thing; return (max output difference, gradient outliers).

    Outputs must agree to ``TOLERANCE`` everywhere. Gradients must agree to ``TOLERANCE`` on all
    but a share ``KINK_SHARE`` of their elements: linear interpolation has a kink at every voxel
    centre, where the derivative with respect to the sampling location jumps, and a sampling
    point within ~1e-7 voxel of a centre falls on either side depending on rounding (regedu and
    MONAI normalise coordinates in a different order). A few such points in millions are
    expected; a real difference of convention would hit most elements.
    """
    output_difference = float(relative_difference(regedu[0], monai[0]).max())
    gradients = list(zip(regedu[1:], monai[1:], strict=True))
    outliers = sum(int((relative_difference(x, y) > TOLERANCE).sum()) for x, y in gradients)
    elements = sum(y.numel() for _, y in gradients)
    if output_difference > TOLERANCE or outliers > KINK_SHARE * elements:
        raise SystemExit(f"{case.name}: regedu and MONAI disagree (output difference "
                         f"{output_difference:.1e}, {outliers} of {elements} gradient elements off by "
                         f"more than {TOLERANCE}); the comparison would not be like with like.")
    return output_difference, outliers


# ---------------------------------------------------------------------------
# running and reporting
# ---------------------------------------------------------------------------


def run_case(case: Case, device: torch.device, repeats: int | None, warmup: int,
             budget_seconds: float) -> tuple[dict[str, object], dict[str, Contender]]:
    """Check agreement, then time both contenders interleaved; one table row."""
    contenders = make_contenders(case, device)
    difference, outliers = check_agreement(case, contenders["regedu"].result(), contenders["MONAI"].result())
    # the agreement check ran each contender once; one timed probe more sizes the repeats
    slowest = max(time_call(c.run, device) for c in contenders.values())
    if repeats is None:
        repeats = auto_repeats(slowest, budget_seconds)
    if slowest > 1.0:  # calls this slow have had their two warm-up runs already
        warmup = 0
    times = time_interleaved({name: c.run for name, c in contenders.items()}, device, repeats, warmup)
    regedu_ms, monai_ms = median_ms(times["regedu"]), median_ms(times["MONAI"])
    row = {
        "case": case.name,
        "regedu ms": regedu_ms,
        "MONAI ms": monai_ms,
        "ratio": regedu_ms / monai_ms,
        "output diff": f"{difference:.1e}",
        "grad outliers": outliers if case.backward else None,
        "repeats": repeats,
        "regedu IQR ms": spread_ms(times["regedu"]),
        "MONAI IQR ms": spread_ms(times["MONAI"]),
    }
    return row, contenders


def _load(env: dict[str, object]) -> str:
    """The 1-minute load average from an environment record, or "unknown"."""
    load = env.get("load_average")
    return f"{load[0]:.1f}" if load else "unknown"


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed runs per contender and case when --repeats is not given")
    args = parser.parse_args()
    device = resolve_device(args.device)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    budget = args.budget if args.budget is not None else (0.5 if args.quick else 15.0)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else None)

    rows, measured = [], []
    print(f"regedu vs MONAI on {device} ({torch.get_num_threads()} threads); medians of interleaved runs")
    for case in cases(args.quick):
        row, contenders = run_case(case, device, repeats, warmup, budget)
        rows.append(row)
        measured.append(contenders)
        print(f"  {row['case']}: regedu {row['regedu ms']:.2f} ms, MONAI {row['MONAI ms']:.2f} ms, "
              f"ratio {row['ratio']:.2f} ({row['repeats']} repeats)", flush=True)
    if not args.no_memory:  # apart from the timings: measuring returns freed memory to the OS first
        for row, contenders in zip(rows, measured, strict=True):
            for name, contender in contenders.items():
                row[f"{name} MiB"], row["memory method"] = peak_memory(contender.run, device)
    del measured

    print()
    print(format_table(COLUMNS, rows))
    env = environment(device, packages=["monai"])
    notes = (
        f"regedu `warp`/`integrate` vs MONAI `Warp`/`DVF2DDF` (bilinear, border padding, {STEPS} steps), "
        f"same inputs, interleaved runs, median wall-clock time per call; ratio = regedu / MONAI "
        f"(< 1: regedu faster). MiB: peak memory one call needs above what was held before it "
        f"(method: {rows[0].get('memory method', 'not measured')}). Checked before timing: output diff, "
        f"the largest difference of the outputs relative to max(1, |MONAI|), is < {TOLERANCE}; grad "
        f"outliers, the gradient elements that differ by more than that, are < {KINK_SHARE:g} of all "
        f"(sampling points on a voxel centre, where linear interpolation has a kink).\n\n"
        f"Device: {env['device_name']}, torch {env['torch']}, MONAI {env['monai']}, "
        f"{env['torch_threads']} threads, load average {_load(env)} on {env['cpu_count']} cores (above the "
        f"core count, other processes competed for the CPU and inflated every time). "
        f"Command: `{env['command']}`."
    )
    output = args.output or default_output("warps", device, args.quick)
    write_results(output, f"warp and integrate: regedu vs MONAI ({device.type})", notes, COLUMNS, rows, env)
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
