"""Benchmark: does generating synthetic data on the fly keep up with training?

Times regedu's synthetic generators at lesson sizes and compares each with one training step
(forward, backward, optimiser step) of a VoxelMorph-sized U-Net on the same size, the network a
lesson would train on those data. A ratio below 1 means one data-loader worker produces a batch
faster than the model consumes it; on a 2-core CPU the worker and the training share the cores,
so below ~0.5 is comfortable. Generation is timed with one torch thread, as a DataLoader
worker runs (``--data-threads``), training with torch's default thread count.

Cases (default): batches of 8 2D subjects at 96 x 112 (synth_subject from the brain slice, and
the two Datasets, item by item as a DataLoader calls them), one 3D subject and one 3D SynthMorph
pair at 96 x 112 x 96. The network is a stand-in written here (the real models live in
regedu.models): encoder 16-32-32-32 with stride-2 convolutions, decoder 32-32-32-32-32-16-16 with
skip connections (VoxelMorph-1's sizes), loss ``mse(fixed, warp(moving, flow)) + 0.01 diffusion``.

Needs only the kit's own environment:

    .venv/bin/python benchmarks/data_generation.py                 # CPU: results/data_generation_cpu.md
    .venv/bin/python benchmarks/data_generation.py --device cuda   # GPU
    .venv/bin/python benchmarks/data_generation.py --quick         # tiny smoke run
    OMP_NUM_THREADS=2 taskset -c 0,1 .venv/bin/python benchmarks/data_generation.py   # a 2-core laptop
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import (
    benchmark_arguments,
    default_output,
    environment,
    format_table,
    median_ms,
    resolve_device,
    spread_ms,
    time_interleaved,
    write_results,
)

from regedu import losses
from regedu.data import SynthMorphPairs, TemplatePairs, brain_slice, brain_volume, synth_subject
from regedu.warps import warp

COLUMNS = ["case", "data ms", "data spread ms", "train step ms", "ratio"]
ENCODER = (16, 32, 32, 32)
DECODER = (32, 32, 32, 32)
EXTRA = (32, 16, 16)


class TinyUNet(nn.Module):
    """A VoxelMorph-1-sized U-Net: ``(moving, fixed)`` -> displacement ``(B, ndim, *spatial)``."""

    def __init__(self, ndim: int):
        super().__init__()
        conv = getattr(nn, f"Conv{ndim}d")
        self.down = nn.ModuleList()
        channels = [2]
        for width in ENCODER:
            self.down.append(conv(channels[-1], width, 3, stride=2, padding=1))
            channels.append(width)
        self.up = nn.ModuleList()
        width_in = ENCODER[-1]
        for level, width in enumerate(DECODER):
            skip = channels[-1 - level] if level else 0  # the encoder output at this scale
            self.up.append(conv(width_in + skip, width, 3, padding=1))
            width_in = width
        self.extra = nn.ModuleList()
        width_in = DECODER[-1] + channels[0]
        for width in EXTRA:
            self.extra.append(conv(width_in, width, 3, padding=1))
            width_in = width
        self.flow = conv(width_in, ndim, 3, padding=1)
        nn.init.normal_(self.flow.weight, std=1e-5)
        nn.init.zeros_(self.flow.bias)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        x = torch.cat([moving, fixed], dim=1)
        skips = [x]
        for layer in self.down:
            x = F.leaky_relu(layer(x), 0.2)
            skips.append(x)
        for level, layer in enumerate(self.up):
            if level:
                x = torch.cat([x, skips[-1 - level]], dim=1)
            x = F.leaky_relu(layer(x), 0.2)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = torch.cat([x, skips[0]], dim=1)
        for layer in self.extra:
            x = F.leaky_relu(layer(x), 0.2)
        return self.flow(x)


def training_step(shape: tuple[int, ...], batch: int, device: torch.device) -> Callable[[], None]:
    """One optimiser step of :class:`TinyUNet` on random images of ``shape``."""
    model = TinyUNet(len(shape)).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    moving = torch.rand(batch, 1, *shape, generator=generator).to(device)
    fixed = torch.rand(batch, 1, *shape, generator=generator).to(device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        flow = model(moving, fixed)
        loss = losses.mse(fixed, warp(moving, flow)) + 0.01 * losses.diffusion(flow)
        loss.backward()
        optimiser.step()

    return step


Case = tuple[str, tuple[int, ...], int, Callable[[], object]]


def data_cases(quick: bool, device: torch.device) -> list[Case]:
    """``(name, shape, batch, generate)`` for every generator timed."""
    shape2, shape3 = ((32, 48), (32, 32, 32)) if quick else ((96, 112), (96, 112, 96))
    batch = 2 if quick else 8
    slice_ = brain_slice(crop_to=shape2, device=device)
    volume = brain_volume(crop_to=shape3, device=device)
    counter = iter(range(10**9))
    atlas_pairs = TemplatePairs(10**6, "atlas_to_subject", template=slice_.image.cpu(),
                                template_labels=slice_.labels.cpu())
    subject_pairs = TemplatePairs(10**6, "subject_to_subject", template=slice_.image.cpu(),
                                  template_labels=slice_.labels.cpu())
    synthmorph2 = SynthMorphPairs(10**6, shape=shape2)
    synthmorph3 = SynthMorphPairs(10**6, shape=shape3)

    def items(dataset):
        return lambda: [dataset[next(counter)] for _ in range(batch)]

    cases = [
        (f"2D synth_subject x{batch} {shape2}", shape2, batch,
         lambda: synth_subject(slice_.image, slice_.labels, batch=batch, seed=next(counter))),
        (f"2D TemplatePairs atlas x{batch}", shape2, batch, items(atlas_pairs)),
        (f"2D TemplatePairs subject x{batch}", shape2, batch, items(subject_pairs)),
        (f"2D SynthMorphPairs x{batch}", shape2, batch, items(synthmorph2)),
        (f"3D synth_subject x1 {shape3}", shape3, 1,
         lambda: synth_subject(volume.image, volume.labels, seed=next(counter))),
        ("3D SynthMorphPairs x1", shape3, 1, lambda: synthmorph3[next(counter)]),
    ]
    if device.type == "cuda":  # the Datasets generating on the GPU themselves (num_workers=0)
        subject_pairs_gpu = TemplatePairs(10**6, "subject_to_subject", template=slice_.image,
                                          template_labels=slice_.labels, device=device)
        synthmorph2_gpu = SynthMorphPairs(10**6, shape=shape2, device=device)
        synthmorph3_gpu = SynthMorphPairs(10**6, shape=shape3, device=device)
        cases += [
            (f"2D TemplatePairs subject x{batch} on {device}", shape2, batch, items(subject_pairs_gpu)),
            (f"2D SynthMorphPairs x{batch} on {device}", shape2, batch, items(synthmorph2_gpu)),
            (f"3D SynthMorphPairs x1 on {device}", shape3, 1, lambda: synthmorph3_gpu[next(counter)]),
        ]
    return cases


def time_with_threads(fn: Callable[[], object], threads: int, device: torch.device, repeats: int,
                      warmup: int) -> list[float]:
    """Seconds per call of ``fn`` with torch limited to ``threads`` CPU threads."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return time_interleaved({"fn": fn}, device, repeats, warmup)["fn"]
    finally:
        torch.set_num_threads(default)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--data-threads", type=int, default=1,
                        help="CPU threads while generating (default 1, what a DataLoader worker gets)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    repeats = args.repeats or (2 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else 1
    steps: dict[tuple[tuple[int, ...], int], list[float]] = {}
    rows = []
    for name, shape, batch, generate in data_cases(args.quick, device):
        if (shape, batch) not in steps:
            step = training_step(shape, batch, device)
            steps[(shape, batch)] = time_interleaved({"step": step}, device, repeats, warmup)["step"]
        data = time_with_threads(generate, args.data_threads, device, repeats, warmup)
        step_ms = median_ms(steps[(shape, batch)])
        rows.append({"case": name, "data ms": median_ms(data), "data spread ms": spread_ms(data),
                     "train step ms": step_ms, "ratio": median_ms(data) / step_ms})
        print(format_table(COLUMNS, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_table(COLUMNS, rows))
    notes = (
        "Data generation time per batch against one training step of a VoxelMorph-sized U-Net "
        "(batch as in the case name). Ratio = data ms / train step ms: below 1, one DataLoader "
        f"worker keeps up. Generation runs with {args.data_threads} torch thread(s) (a DataLoader "
        f"worker gets 1), the training step with torch's default ({torch.get_num_threads()}). "
        "The Datasets generate on the CPU, as in DataLoader workers, except in rows 'on cuda' "
        "(Dataset(device=...), num_workers=0); synth_subject runs on --device."
    )
    env = environment(device)
    output = args.output or default_output("data_generation", device, args.quick)
    written = write_results(output, "Synthetic data generation vs training", notes, COLUMNS, rows, env)
    print(f"\nwrote {written}")


if __name__ == "__main__":
    main()
