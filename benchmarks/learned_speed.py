"""Benchmark: speed and peak memory of regedu's learned models against VoxelMorph 0.3.4 (PyTorch).

Contenders, all called as ``model(moving, fixed) -> (warped, disp)`` on the same inputs, batch 1:

* ``regedu``: ``regedu.models.VoxelMorph(3)``, VoxelMorph's features (encoder 16, 32, 32, 32; decoder
  32, 32, 32, 32, 32, 16, 16), LeakyReLU(0.2), nearest upsampling, max pooling;
* ``voxelmorph``: ``voxelmorph.nn.models.VxmPairwise`` 0.3.4 set up as the same network, with the
  package's own blocks (see :class:`PeerVoxelMorph`): ``nb_features=[[16, 32, 32, 32], [32, 32, 32,
  32]]``, ``LeakyReLU(0.2, inplace=True)``, ``upsample_mode="nearest"``; its U-Net has no option for
  the two extra full-resolution convolutions (32 -> 16 -> 16), so two of neurite's ``ConvBlock``s are
  put in front of its output layer. Its head is a 1x1 convolution to 3 channels followed by a 3x3x3
  one (3 -> 3), regedu's a single 3x3x3 convolution (16 -> 3): before timing, the peer's weights are
  copied into regedu's model (the two heads folded into one) and the script checks that both give
  the same displacement, so the two compute the same function;
* ``light``: ``regedu.models.LightVoxelMorph(3)`` and ``pyramid``: ``regedu.models.PyramidNet(3)``
  (regedu only, no peer counterpart).

Settings: ``plain`` (the network outputs the displacement) and ``diffeo`` (it outputs a velocity,
integrated with 7 scaling-and-squaring steps at half resolution). VxmPairwise 0.3.4 integrates
only at full resolution, so for ``diffeo`` the peer is wrapped the way VoxelMorph's ``VxmDense``
did it, with the package's own ``ResizeDisplacementField`` (x0.5, x2) and
``IntegrateVelocityField(steps=7)`` modules; its displacement then differs from regedu's (vxm
rescales the field by exactly 0.5 and 2 on resize, regedu by ``(m - 1) / (n - 1)``, and pads with
zeros where regedu repeats the border), which the "field diff" column shows; the script checks
that regedu's own pieces with those two choices (:func:`integrate_like_voxelmorph`) reproduce the
peer's displacement to 1e-4 voxels, so nothing else differs.

Modes: ``fwd`` (inference, no autograd graph) and ``fwd+bwd`` (a training step without the
optimiser: ``mse(fixed, warped) + 0.01 * diffusion(disp)``, then ``backward``).

Timing: all contenders of a case run in one process, interleaved (``common.time_interleaved``),
median. Peak memory: each (contender, shape, setting, mode) runs in a fresh subprocess: one
warm-up call, then one measured call, reported as how much the peak resident memory grew during
it above what the process held just before (``common.peak_memory``: Linux ``VmHWM`` after
handing freed memory back to the OS; on CUDA, the allocator's peak).

    benchmarks/.venv/bin/python benchmarks/learned_speed.py            # writes results/learned_speed_cpu.md
    benchmarks/.venv/bin/python benchmarks/learned_speed.py --quick    # tiny smoke run, measures nothing
    benchmarks/.venv/bin/python benchmarks/learned_speed.py --shapes 96x112x96 --settings plain \\
        --contenders regedu voxelmorph --no-memory                     # a subset
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import neurite as ne
import torch
import torch.nn.functional as F
import voxelmorph as vxm
from common import (
    benchmark_arguments,
    default_output,
    environment,
    format_table,
    median_ms,
    peak_memory,
    random_image,
    resolve_device,
    spread_ms,
    time_interleaved,
    write_results,
)
from torch import nn

from regedu.kernels import resample
from regedu.losses import diffusion, mse
from regedu.models import LightVoxelMorph, PyramidNet, VoxelMorph

SHAPES = ["96x112x96", "160x192x224"]
QUICK_SHAPES = ["32x48x32"]
SETTINGS = ["plain", "diffeo"]
MODES = ["fwd", "fwd+bwd"]
CONTENDERS = ["regedu", "voxelmorph", "light", "pyramid"]
STEPS, DOWNSIZE = 7, 2
ENCODER, DECODER = (16, 32, 32, 32), (32, 32, 32, 32, 32, 16, 16)
FIELD_TOLERANCE = 1e-4  # voxels, plain setting: the same network must give the same field
COLUMNS = ["case", "regedu s", "voxelmorph s", "speed-up", "regedu MiB", "voxelmorph MiB",
           "light s", "pyramid s", "light MiB", "pyramid MiB", "field max", "field diff"]


# ---------------------------------------------------------------------------
# the peer, set up as VoxelMorph's network with voxelmorph 0.3.4's own parts
# ---------------------------------------------------------------------------


class PeerVoxelMorph(nn.Module):
    """VxmPairwise (0.3.4) with VoxelMorph's features; ``forward(moving, fixed) -> (warped, disp)``."""

    def __init__(self, diffeomorphic: bool):
        super().__init__()
        activation = nn.LeakyReLU(0.2, inplace=True)
        self.pairwise = vxm.nn.models.VxmPairwise(
            ndim=3, source_channels=1, target_channels=1,
            nb_features=[list(ENCODER), list(DECODER[:len(ENCODER)])],
            activations=activation, integration_steps=0,  # integration is done below, at half resolution
            unet_kwargs={"upsample_mode": "nearest"},
        )
        # its up blocks output DECODER[1:4] and repeat the last for the full-resolution one: DECODER[4]
        levels = len(ENCODER)
        assert DECODER[levels] == DECODER[levels - 1], "VxmPairwise cannot express this decoder"
        extra = [ne.nn.modules.ConvBlock(3, a, b, activation=activation)
                 for a, b in zip(DECODER[levels:-1], DECODER[levels + 1:], strict=True)]
        output_layer = ne.nn.modules.ConvBlock(3, DECODER[-1], 3, kernel_size=1, padding=0)
        self.pairwise.model.out_layer = nn.Sequential(*extra, output_layer)
        self.diffeomorphic = diffeomorphic
        if diffeomorphic:
            self.shrink = vxm.nn.modules.ResizeDisplacementField(1 / DOWNSIZE)
            self.integrate = vxm.nn.modules.IntegrateVelocityField(steps=STEPS)
            self.grow = vxm.nn.modules.ResizeDisplacementField(DOWNSIZE)
            self.transformer = vxm.nn.modules.SpatialTransformer()

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.diffeomorphic:
            disp, warped = self.pairwise(moving, fixed, return_warped_source=True)
            return warped, disp
        velocity = self.pairwise(moving, fixed, return_field_type="velocity")
        disp = self.grow(self.integrate(self.shrink(velocity)))
        return self.transformer(moving, disp), disp

    def convolutions(self) -> list[nn.Module]:
        """The peer's convolutions in the order data meets them (U-Net, output layer, flow layer)."""
        unet = self.pairwise.model
        convs = [block.conv_block.conv0 for block in unet.downsampling_conv_blocks]
        convs.append(unet.lowest_resolution_conv_block.conv0)
        convs += [block.conv_block.conv0 for block in unet.upsampling_conv_blocks]
        convs += [block.conv0 for block in unet.out_layer]
        return convs + [self.pairwise.flow_layer.conv0]


@torch.no_grad()
def copy_peer_weights(peer: PeerVoxelMorph, ours: VoxelMorph) -> None:
    """Give ``ours`` the peer's weights, so both compute the same function.

    The peer's head (1x1 conv 16 -> 3, then 3x3x3 conv 3 -> 3) is one linear map; with the 1x1
    bias at zero (see :func:`build_models`) it is exactly the 3x3x3 convolution 16 -> 3 with weight
    ``sum_c W3[o, c, k] * W1[c, i]``, which is regedu's head.
    """
    unet = ours.net.unet
    ours_convs = [block.conv for block in unet.encoder] + [unet.bottom.conv]
    ours_convs += [block.conv for block in unet.up] + [block.conv for block in unet.full_resolution]
    *peer_convs, one_by_one, flow = peer.convolutions()
    for mine, theirs in zip(ours_convs, peer_convs, strict=True):
        mine.weight.copy_(theirs.weight)
        mine.bias.copy_(theirs.bias)
    if one_by_one.bias.abs().max() > 0:
        raise ValueError("the peer's 1x1 output layer needs a zero bias for its head to fold into one conv")
    folded = torch.einsum("ocxyz,ci->oixyz", flow.weight, one_by_one.weight[:, :, 0, 0, 0])
    ours.net.head.weight.copy_(folded)
    ours.net.head.bias.copy_(flow.bias)


@torch.no_grad()
def visible_field(peer: PeerVoxelMorph, moving: torch.Tensor, fixed: torch.Tensor, voxels: float = 4) -> None:
    """Scale the peer's tiny initial flow layer (std 1e-5) so that its largest field value is ``voxels``."""
    velocity = peer.pairwise(moving, fixed, return_field_type="velocity")
    peer.pairwise.flow_layer.conv0.weight.mul_(voxels / float(velocity.abs().max()))


# ---------------------------------------------------------------------------
# contenders
# ---------------------------------------------------------------------------


def build_models(names: list[str], setting: str, moving: torch.Tensor,
                 fixed: torch.Tensor) -> dict[str, nn.Module]:
    """The contenders for one setting; regedu's VoxelMorph gets the peer's weights."""
    diffeo = setting == "diffeo"
    options = {"diffeomorphic": diffeo, "int_steps": STEPS} if diffeo else {}
    models: dict[str, nn.Module] = {}
    torch.manual_seed(0)
    if "regedu" in names or "voxelmorph" in names:
        peer = PeerVoxelMorph(diffeo).to(moving.device)
        with torch.no_grad():  # no bias before the 3x3x3 flow layer, so that the two heads fold into one
            peer.pairwise.model.out_layer[-1].conv0.bias.zero_()
        visible_field(peer, moving, fixed)
        ours = VoxelMorph(3, int_downsize=DOWNSIZE, encoder=ENCODER, decoder=DECODER, **options)
        copy_peer_weights(peer, ours.to(moving.device))
    for name in names:
        if name == "regedu":
            models[name] = ours
        elif name == "voxelmorph":
            models[name] = peer
        elif name == "light":
            models[name] = LightVoxelMorph(3, int_downsize=DOWNSIZE, **options)
        elif name == "pyramid":
            models[name] = PyramidNet(3, **options)
        else:
            raise SystemExit(f"unknown contender {name!r}; choose from {CONTENDERS}")
    return {name: model.to(moving.device) for name, model in models.items()}


def make_call(model: nn.Module, moving: torch.Tensor, fixed: torch.Tensor, mode: str):
    """A zero-argument function running one inference (``fwd``) or one training step's passes."""
    if mode == "fwd":
        def forward():
            with torch.no_grad():
                return model(moving, fixed)
        return forward

    def forward_backward():
        model.zero_grad(set_to_none=True)
        warped, disp = model(moving, fixed)
        (mse(fixed, warped) + 0.01 * diffusion(disp)).backward()
    return forward_backward


def field_difference(models: dict[str, nn.Module], moving: torch.Tensor,
                     fixed: torch.Tensor) -> tuple[float | None, float | None]:
    """Largest displacement of regedu's field and largest difference from the peer's, in voxels."""
    if "regedu" not in models or "voxelmorph" not in models:
        return None, None
    with torch.no_grad():
        _, ours = models["regedu"](moving, fixed)
        _, theirs = models["voxelmorph"](moving, fixed)
    return float(ours.abs().max()), float((ours - theirs).abs().max())


def check_same_function(models: dict[str, nn.Module], setting: str, difference: float | None,
                        moving: torch.Tensor, fixed: torch.Tensor, shape: str) -> None:
    """Stop unless regedu and voxelmorph compute the same thing.

    plain: the same displacement. diffeo: the displacements differ by design (see the docstring);
    the check is that regedu's own pieces, given voxelmorph's two choices, reproduce the peer.
    """
    if difference is None:
        return
    if setting == "diffeo":
        peer = models["voxelmorph"]
        with torch.no_grad():
            velocity = peer.pairwise(moving, fixed, return_field_type="velocity")
            difference = float((integrate_like_voxelmorph(velocity) - peer(moving, fixed)[1]).abs().max())
    if difference > FIELD_TOLERANCE:
        raise SystemExit(f"{shape} {setting}: regedu's and voxelmorph's fields differ by {difference:.2e} "
                         f"voxels with the same weights; the comparison would not be like with like.")


def integrate_like_voxelmorph(velocity: torch.Tensor) -> torch.Tensor:
    """regedu's resize + scaling and squaring, with voxelmorph's choices: values scaled by exactly
    1/2 and 2 on resizing (regedu: (m - 1) / (n - 1)), zero padding when resampling (regedu: border)."""
    def resize(field: torch.Tensor, factor: float) -> torch.Tensor:
        return F.interpolate(field * factor, scale_factor=factor, mode="trilinear", align_corners=True)

    disp = resize(velocity, 1 / DOWNSIZE) / 2 ** STEPS
    for _ in range(STEPS):
        disp = disp + resample(disp, disp, padding="zeros")
    return resize(disp, DOWNSIZE)


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split("x"))


def inputs(shape: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    size = parse_shape(shape)
    return random_image(1, 1, size, seed=0, device=device), random_image(1, 1, size, seed=1, device=device)


# ---------------------------------------------------------------------------
# memory: one fresh process per measurement
# ---------------------------------------------------------------------------


def measure_memory_here(name: str, setting: str, shape: str, mode: str, device: torch.device) -> dict:
    """Peak memory of one call after one warm-up call, in this (fresh) process.

    Printed as JSON by ``--memory-of``. The warm-up call makes the measured one a steady-state
    call (as in a training loop) for every contender alike: one-time allocations such as oneDNN's
    kernel caches are not counted.
    """
    moving, fixed = inputs(shape, device)
    model = build_models([name], setting, moving, fixed)[name]
    call = make_call(model, moving, fixed, mode)
    call()
    mib, method = peak_memory(call, device)
    return {"mib": mib, "method": method}


def measure_memory(name: str, setting: str, shape: str, mode: str, device: torch.device) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--device", str(device),
               "--threads", str(torch.get_num_threads()), "--memory-of", name, setting, shape, mode]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"memory measurement failed: {' '.join(command)}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# running and reporting
# ---------------------------------------------------------------------------


def run(args, device: torch.device) -> list[dict]:
    rows = []
    for shape in args.shapes:
        moving, fixed = inputs(shape, device)
        big = parse_shape(shape)[0] * parse_shape(shape)[1] * parse_shape(shape)[2] > 4_000_000
        repeats = args.repeats or (2 if args.quick else 3)
        warmup = args.warmup if args.warmup is not None else (0 if big else 1)
        for setting in args.settings:
            models = build_models(args.contenders, setting, moving, fixed)
            largest, difference = field_difference(models, moving, fixed)
            check_same_function(models, setting, difference, moving, fixed, shape)
            for mode in args.modes:
                calls = {name: make_call(model, moving, fixed, mode) for name, model in models.items()}
                times = time_interleaved(calls, device, repeats, warmup)
                row = {"case": f"{shape} {setting} {mode}", "repeats": repeats, "warmup": warmup,
                       "field max": largest,
                       "field diff": None if difference is None else f"{difference:.1e}"}
                for name, seconds in times.items():
                    row[f"{name} s"] = median_ms(seconds) / 1000
                    row[f"{name} IQR s"] = spread_ms(seconds) / 1000
                if "regedu s" in row and "voxelmorph s" in row:
                    row["speed-up"] = row["voxelmorph s"] / row["regedu s"]
                rows.append(row)
                print("  " + ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}"
                                       for k, v in row.items() if "IQR" not in k), flush=True)
            del models
    if not args.no_memory:
        for row in rows:
            shape, setting, mode = row["case"].split(" ")
            for name in args.contenders:
                result = measure_memory(name, setting, shape, mode, device)
                row[f"{name} MiB"], row["memory method"] = result["mib"], result["method"]
                print(f"  {row['case']} {name}: {result['mib']:.0f} MiB", flush=True)
    return rows


def main() -> None:
    parser = benchmark_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=None, help=f"DxHxW sizes (default {SHAPES})")
    parser.add_argument("--settings", nargs="+", default=SETTINGS, choices=SETTINGS)
    parser.add_argument("--contenders", nargs="+", default=CONTENDERS, choices=CONTENDERS)
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--memory-of", nargs=4, metavar=("CONTENDER", "SETTING", "SHAPE", "MODE"),
                        help=argparse.SUPPRESS)  # internal: one memory measurement, in a subprocess
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(measure_memory_here(*args.memory_of, device=device)))
        return
    args.shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)

    print(f"regedu vs voxelmorph {vxm.__version__} on {device} ({torch.get_num_threads()} threads); "
          f"medians of interleaved runs")
    rows = run(args, device)
    print()
    print(format_table(COLUMNS, rows))
    env = environment(device, packages=["voxelmorph", "neurite"])
    notes = " ".join([
        "Seconds per call (median of interleaved runs in one process, batch 1) and peak memory",
        "(MiB above what the process held before the call; a fresh subprocess per cell, one warm-up",
        f"call then the measured one; method: {rows[0].get('memory method', 'not measured')}).",
        "speed-up = voxelmorph s / regedu s (> 1: regedu faster). regedu and voxelmorph run the same",
        "network with the same weights (VoxelMorph's features 16,32,32,32 / 32,32,32,32,32,16,16);",
        "field max is the largest displacement regedu's model gives, field diff the largest difference",
        "of the two displacements, in voxels (plain: checked < 1e-4; diffeo: differs by design, see",
        "the script's docstring, which says how the script checks that nothing else differs).",
        "light = LightVoxelMorph, pyramid = PyramidNet (regedu only).",
        f"diffeo: {STEPS} scaling-and-squaring steps at 1/{DOWNSIZE} resolution. fwd = inference",
        "without autograd; fwd+bwd = MSE + 0.01 diffusion, backward.",
    ]) + (
        f"\n\nDevice: {env['device_name']}, torch {env['torch']}, voxelmorph {env['voxelmorph']}, "
        f"neurite {env['neurite']}, {env['torch_threads']} threads, load average "
        f"{env['load_average']}. Command: `{env['command']}`."
    )
    output = args.output or default_output("learned_speed", device, args.quick)
    write_results(output, f"Learned models: regedu vs voxelmorph {vxm.__version__} ({device.type})",
                  notes, COLUMNS, rows, env)
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
