"""The shipped 3D network against ANTs SyNCC and regedu's classical default, on held-out 3D brain pairs.

``heldout.py``'s 3D test pairs (96 x 112 x 96 at 2 mm, made differently from the network's training data:
the 1 mm template resampled in a tilted frame, Gaussian-bump deformations, other intensities) are registered
by ``regedu.register(method="voxelmorph")`` (the shipped 3D model,
``regedu.api.DEFAULT_MODELS[3]``, or a checkpoint given with ``--model-file``; its fields averaged over the
pair and its left-right mirror image, ``--flips``, as ``regedu.register`` does for the shipped model, and
in one pass), the same refined by instance optimisation (``"voxelmorph+io"``, from one pass), regedu's
classical default and ANTs SyNCC, with ``classical.py``'s scoring (labels carried one-hot, linearly;
metrics on the fixed grid). SyNCC takes about 25 minutes to over an hour a pair on 2 cores, so its score
(time included) is read from ``--peer-cache`` when stored there by an earlier run of this or
``classical.py`` on the same pair; the notes say so.

Times: the network's per-pair time is one call of ``regedu.register`` with the model already loaded (the
first call, on a cropped pair, loads and caches it and is not timed); the load time (reading the file and
building the model) is measured separately, as the median of ``--repeats`` fresh loads. One 3D pair timed
once is noisy on a shared CPU (the same refinement took 1.8 s and 2.2 s in two runs), so each regedu
contender registers the pair ``--timed-runs`` times (default 3; the results are identical) and the table
gives the median time.

    benchmarks/.venv/bin/python benchmarks/learned3d.py --threads 2 \\
        --peer-cache benchmarks/results/peers_cache.json
    benchmarks/.venv/bin/python benchmarks/learned3d.py --quick --model-file MODEL.pt  # smoke run
    benchmarks/.venv/bin/python benchmarks/learned3d.py --split development --no-ants \\
        --compare scripts/checkpoints/finished/pyramid3d_brain_long.pt     # choose between two models
    benchmarks/.venv/bin/python benchmarks/learned3d.py --io-steps 5 10 # shorter refinements too
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import torch
from classical import COLUMNS, SPLIT_NOTES, run_ants, run_dimension, run_regedu, set_threads
from common import (
    benchmark_arguments,
    default_output,
    environment,
    format_table,
    resolve_device,
    write_results,
)

from regedu.api import DEFAULT_FLIPS, DEFAULT_MODELS
from regedu.models import pretrained_path
from regedu.train import load_model


def median_timed(run, runs: int):
    """A contender that registers each pair ``runs`` times and reports the median time."""
    def timed(pair):
        outcomes = [run(pair) for _ in range(runs)]
        return dataclasses.replace(outcomes[-1], seconds=statistics.median(o.seconds for o in outcomes))
    return timed


def load_seconds(path: Path, device: torch.device, repeats: int) -> float:
    """Median seconds to read a checkpoint and build its model (no cache)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_model(path, device=device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1, help="test pairs (SyNCC is stored for the first)")
    parser.add_argument("--split", choices=["test", "development"], default="test")
    parser.add_argument("--model-file", type=Path, default=None,
                        help="a 3D checkpoint to score instead of the shipped default")
    parser.add_argument("--threads", type=int, default=None, help="threads for every contender")
    parser.add_argument("--peer-cache", type=Path, default=None,
                        help="JSON file of stored peer scores (classical.py's): reuse them, add new ones")
    parser.add_argument("--no-classical", action="store_true", help="leave regedu's classical default out")
    parser.add_argument("--no-ants", action="store_true",
                        help="leave ANTs SyNCC out (a pair it has not been stored for costs it an hour)")
    parser.add_argument("--io-steps", type=int, nargs="*", default=[],
                        help="also refine the field with these numbers of steps (50, the default, always)")
    parser.add_argument("--timed-runs", type=int, default=3,
                        help="registrations of each pair per regedu contender; the median time is reported")
    parser.add_argument("--compare", type=Path, nargs="*", default=[],
                        help="more 3D checkpoints, each scored alone and refined, beside the first")
    parser.add_argument("--flips", type=int, nargs="*", default=list(DEFAULT_FLIPS[3]),
                        help="axes the network's fields are flip-averaged over (default: the shipped "
                             f"model's, {DEFAULT_FLIPS[3]}; a one-pass row is added); refinements start "
                             "from one pass, as in regedu.register")
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    device = resolve_device(args.device)
    model_path = args.model_file or pretrained_path(DEFAULT_MODELS[3])
    flips = tuple(args.flips)
    chosen = {"regedu voxelmorph": run_regedu("voxelmorph", device, model=args.model_file, flips=flips),
              "regedu voxelmorph+io": run_regedu("voxelmorph+io", device, model=args.model_file)}
    if flips:
        chosen["regedu voxelmorph (one pass)"] = run_regedu("voxelmorph", device, model=args.model_file,
                                                            flips=())
    for steps in args.io_steps:
        chosen[f"regedu voxelmorph+io ({steps} steps)"] = run_regedu("voxelmorph+io", device,
                                                                    model=args.model_file, steps=steps)
    for other in args.compare:
        chosen[f"regedu voxelmorph ({other.stem})"] = run_regedu("voxelmorph", device, model=other,
                                                                 flips=flips)
        chosen[f"regedu voxelmorph+io ({other.stem})"] = run_regedu("voxelmorph+io", device, model=other)
    if not args.no_classical:
        chosen["regedu default"] = run_regedu("default", device)
    chosen = {name: median_timed(run, args.timed_runs) for name, run in chosen.items()}
    if not args.no_ants:
        chosen["ANTs SyNCC"] = run_ants("SyNCC")
    rows = run_dimension(3, args.pairs, chosen, args.quick, split=args.split, peer_cache=args.peer_cache)
    loading = load_seconds(model_path, device, args.repeats or 5)
    print(format_table(COLUMNS, rows))
    print(f"model load: {loading:.3f} s ({model_path.name})")
    notes = "\n\n".join(__doc__.split("\n\n")[1:3]) + (
        f"\n\nModel: `{model_path.name}`, loaded in {loading:.3f} s (median of {args.repeats or 5}); its "
        f"fields flip-averaged over axes {flips} ({2 ** len(flips)} forward passes, "
        f"`regedu.models.FlipAveraged`; the one-pass row without; the refinements start from one pass). "
        f"regedu's times: the median of {args.timed_runs} registrations of each pair. "
        f"Pairs: {args.pairs} of the {args.split} split ({SPLIT_NOTES[args.split]}). Mean Dice before "
        f"registration: {rows[0]['Dice before']:.3f}.")
    if args.peer_cache is not None and not args.no_ants:
        notes += f" The ANTs row is read from or stored in {args.peer_cache.name}."
    path = args.output or default_output(f"learned3d_{args.split}", device, args.quick)
    env = environment(device, ["antspyx", "numpy"])
    env["model load seconds"] = loading
    write_results(path, "The shipped 3D network against ANTs SyNCC and the classical default", notes, COLUMNS,
                  rows, env)


if __name__ == "__main__":
    main()
