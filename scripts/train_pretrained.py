"""Train the small models that ship in ``regedu/weights/`` and write each one's log next to it.

    python scripts/train_pretrained.py                       # every model in regedu.models.PRETRAINED
    python scripts/train_pretrained.py voxelmorph2d_brain    # one of them
    python scripts/train_pretrained.py voxelmorph2d_brain --steps 100 --out /tmp/weights   # a try-out

Training stops at a step count (default 2000 steps of 8 pairs), not at a time, so the shipped
weights do not depend on how busy the machine was; the log says how long it took.

Data: pairs of synthetic subjects of the 2 mm MNI axial slice (``TemplatePairs``,
``"subject_to_subject"``, seeds from 10**6 on), so none of them is one of the benchmark pairs
(``benchmarks/classical.py`` seeds 1000 upwards). Validation: 16 held-out pairs (seed 5 * 10**6),
mean Dice over the 17 geometric parcels. The log records the command, the machine, the
configuration, the loss every 100 steps and the validation Dice.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

from regedu import __version__
from regedu.data import TemplatePairs
from regedu.models import PRETRAINED, VoxelMorph
from regedu.models.pretrained import WEIGHTS
from regedu.train import TrainConfig, evaluate, save_checkpoint, train

TRAIN_SEED = 10**6
VALIDATION_SEED = 5 * 10**6

RECIPES = {
    "voxelmorph2d_brain": {"model": {"ndim": 2}, "train": {"similarity": "ncc", "weight": 1.0}},
    "voxelmorph2d_brain_diff": {"model": {"ndim": 2, "diffeomorphic": True},
                                "train": {"similarity": "ncc", "weight": 1.0}},
}


def pairs(seed: int, length: int) -> TemplatePairs:
    return TemplatePairs(length=length, mode="subject_to_subject", ndim=2, parcels=True, seed=seed)


def train_one(name: str, minutes: float, steps: int, out: Path) -> dict:
    """Train one recipe, save ``out/<name>.pt`` (no optimiser state) and return its summary."""
    recipe = RECIPES[name]
    torch.manual_seed(0)
    model = VoxelMorph(**recipe["model"])
    config = TrainConfig(supervision="unsupervised", steps=steps, minutes=minutes, batch_size=8, lr=1e-3,
                         validate_every=10**9, checkpoint_every=10**9, **recipe["train"])
    validation = pairs(VALIDATION_SEED, 16)
    before = evaluate(model, validation)
    start = time.perf_counter()
    history = train(model, pairs(TRAIN_SEED, 10**7), config, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start
    after = evaluate(model, validation)
    path = save_checkpoint(out / f"{name}.pt", model, optimizer=None, config=config, history=history)
    losses = history.losses
    return {
        "name": name, "description": PRETRAINED[name], "file": str(path), "bytes": path.stat().st_size,
        "model": recipe["model"], "config": {k: v for k, v in vars(config).items()},
        "steps": history.step, "seconds": round(seconds, 1),
        "loss_every_100_steps": [round(sum(losses[i:i + 100]) / len(losses[i:i + 100]), 4)
                                 for i in range(0, len(losses), 100)],
        "validation_before": before, "validation_after": after,
    }


def write_log(summary: dict, out: Path, argv: list[str]) -> None:
    header = {
        "command": "python scripts/train_pretrained.py " + " ".join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "regedu": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    (out / f"{summary['name']}.log").write_text(json.dumps({**header, **summary}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"models to train, from {sorted(RECIPES)} (default: all)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model (default 2000)")
    parser.add_argument("--minutes", type=float, default=None, help="also stop after this many minutes")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"folder (default {WEIGHTS})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(RECIPES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or sorted(RECIPES):
        summary = train_one(name, args.minutes, args.steps, args.out)
        write_log(summary, args.out, argv)
        print(f"{name}: {summary['steps']} steps in {summary['seconds']} s, validation Dice "
              f"{summary['validation_before']['dice']:.3f} -> {summary['validation_after']['dice']:.3f}")


if __name__ == "__main__":
    main()
