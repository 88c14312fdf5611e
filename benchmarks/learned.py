"""Learned registration against ANTs SyNCC: accuracy on held-out brain pairs, and the multiscale toy.

Part 1, brains. Every variant is trained here, for at most ``--minutes`` each, on the kit's default 2D
training data (``regedu.data.BrainSlicePairs``, seeds from 10**6 on; SynthMorph: random label maps), then
registers the same held-out pairs (``--split``: by default ``heldout.py``'s 24 test pairs, made
differently from the training data; ``old``: the first release's 10 pairs) side by side in this process
with ANTs SyNCC and regedu's classical default. Labels are carried the same way for every contender (one-hot,
linearly interpolated); metrics on the fixed grid. Network times are one forward pass per pair (batch 1,
no autograd, after a warm-up); "speed-up" is SyNCC's seconds per pair over the contender's.

Training recipe, the same for every variant: Adam, batches of 4 pairs, learning rate 2e-3 falling
to 0 along a cosine over the time budget (``regedu.train.TrainConfig.schedule="cosine"``), seed 0.
By default the variants train one after the other, each with the whole machine: ``--train-threads``
torch threads (default: all cores) and ``--workers`` data-loading processes (default 1) that
synthesise the next pairs while the network trains. ``--jobs 2`` trains two at a time instead.

Variants: unsupervised (local NCC + diffusion), PyramidNet (the same loss, three U-Nets coarse to fine:
``regedu train``'s default model), diffeomorphic (the same on a stationary velocity,
7 scaling-and-squaring steps at half resolution), supervised (end-point error against the true
field), label-supervised (Dice of the parcels + diffusion), SynthMorph-style (Dice on images
synthesised from random label maps: it never sees a brain), LightVoxelMorph (unsupervised, about
1/35 of the weights), and the unsupervised model refined on each pair by 20 steps of instance
optimisation.

Part 2, the multiscale toy (``regedu.data.LargeDeformationPairs``: a disk of radius 10.7 pushed 12 to
20 voxels, further than its own radius; the setting of notebook 06): single-scale VoxelMorph (plain
and diffeomorphic) against PyramidNet (3 levels), all trained unsupervised (MSE + 0.01 diffusion,
Adam 3e-3) for ``--toy-minutes`` each, scored by Dice on 20 held-out pairs from the same range.
Dice alone can flatter a model that folds space to reach it: read it with the folding column.

    bash benchmarks/setup_peers.sh                      # once: the peers' environment
    benchmarks/.venv/bin/python benchmarks/learned.py --threads 1   # both parts: about 75 minutes
    benchmarks/.venv/bin/python benchmarks/learned.py --quick          # smoke run, measures nothing
    benchmarks/.venv/bin/python benchmarks/learned.py --part toy --toy-minutes 2
    benchmarks/.venv/bin/python benchmarks/learned.py --variants unsupervised supervised --minutes 5
    benchmarks/.venv/bin/python benchmarks/learned.py --part brains --variants --pretrained voxelmorph2d_brain
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch
from classical import (
    REFERENCE,
    Outcome,
    Pair,
    crop_pair,
    make_pairs,
    run_ants,
    run_regedu,
    score,
    set_threads,
    summarise,
)
from common import (
    benchmark_arguments,
    default_output,
    environment,
    format_table,
    resolve_device,
    write_results,
)
from heldout import COUNTS

from regedu import metrics
from regedu.data import BrainSlicePairs, LargeDeformationPairs, SynthMorphPairs
from regedu.models import PRETRAINED, LightVoxelMorph, PyramidNet, VoxelMorph, pretrained
from regedu.train import SCHEDULES, TrainConfig, instance_optimize, load_model, save_checkpoint, train
from regedu.warps import warp_labels

TRAIN_SEED = 10**6
IN_DISTRIBUTION_SEED = 9 * 10**6
MODELS = Path(__file__).resolve().parent / ".models"  # trained variants, kept for a look afterwards
TOY_TRAIN_SEED, TOY_TEST_SEED = 7 * 10**6, 8 * 10**6
COLUMNS = ["method", "train min", "steps", "Dice", "Dice / SyNCC", "HD95 mm", "folding %", "min det J",
           "s/pair", "speed-up"]
TOY_COLUMNS = ["model", "train min", "steps", "Dice before", "Dice", "Dice min", "folding %"]


@dataclass
class Variant:
    """A network and how it is trained."""

    build: Callable[[], torch.nn.Module]
    data: Callable[[], torch.utils.data.Dataset]
    config: dict = field(default_factory=dict)


def brain_pairs() -> BrainSlicePairs:
    """The kit's default 2D training data (``regedu train --data brain2d``)."""
    return BrainSlicePairs(length=10**7, seed=TRAIN_SEED)


def evaluation_pairs(split: str, count: int | None, quick: bool) -> list[Pair]:
    """The pairs every contender registers: a split of ``heldout.py`` (made differently from the
    training data), the first release's pairs (``"old"``), or ``"training"``: pairs from the training
    distribution itself (``BrainSlicePairs`` with an unseen seed), for the in-distribution number."""
    if split == "training":
        made = BrainSlicePairs(length=count or 16, seed=IN_DISTRIBUTION_SEED)
        return [Pair(item["moving"][None], item["fixed"][None], item["moving_labels"][None],
                     item["fixed_labels"][None], (2.0, 2.0)) for item in (made[i] for i in range(len(made)))]
    return make_pairs(2, count or (10 if split == "old" else COUNTS[(split, 2)]), quick, split)


def synthmorph_pairs() -> SynthMorphPairs:
    return SynthMorphPairs(length=10**7, shape=(96, 112), num_labels=16, seed=TRAIN_SEED)


VARIANTS = {
    "unsupervised": Variant(lambda: VoxelMorph(2), brain_pairs, dict(similarity="ncc", weight=1.0)),
    "diffeomorphic": Variant(lambda: VoxelMorph(2, diffeomorphic=True), brain_pairs,
                             dict(similarity="ncc", weight=1.0)),
    "supervised": Variant(lambda: VoxelMorph(2), brain_pairs, dict(supervision="supervised")),
    "label-supervised": Variant(lambda: VoxelMorph(2), brain_pairs, dict(supervision="labels", weight=1.0)),
    "SynthMorph": Variant(lambda: VoxelMorph(2), synthmorph_pairs,
                          dict(supervision="synthmorph", weight=1.0)),
    "light": Variant(lambda: LightVoxelMorph(2), brain_pairs, dict(similarity="ncc", weight=1.0)),
    "pyramid": Variant(lambda: PyramidNet(2), brain_pairs, dict(similarity="ncc", weight=1.0)),
}
LABELS = {"light": "LightVoxelMorph unsupervised", "pyramid": "PyramidNet unsupervised"}  # else VoxelMorph
INSTANCE_STEPS = 20


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------


def train_variant(name: str, variant: Variant, minutes: float, steps: int, device: torch.device,
                  recipe: dict):
    """Train one variant from seed 0; returns ``(model, history)``.

    ``recipe``: the :class:`TrainConfig` fields every variant shares (batch size, learning rate and
    its schedule, data-loading processes).
    """
    torch.manual_seed(0)
    model = variant.build().to(device)
    config = TrainConfig(steps=steps, minutes=minutes, validate_every=10**9, checkpoint_every=10**9,
                         **recipe, **variant.config)
    start = time.perf_counter()
    history = train(model, variant.data(), config, progress=False)
    print(f"trained {name}: {history.step} steps in {time.perf_counter() - start:.0f} s, "
          f"last loss {sum(history.losses[-50:]) / len(history.losses[-50:]):.4f}", flush=True)
    return model.eval(), history


def _train_and_save(name: str, minutes: float, steps: int, device: str, threads: int | None,
                    recipe: dict) -> dict:
    """Train one variant (in a worker process when ``--jobs`` > 1) and save it under MODELS."""
    if threads:
        torch.set_num_threads(threads)
    model, history = train_variant(name, VARIANTS[name], minutes, steps, torch.device(device), recipe)
    path = save_checkpoint(MODELS / f"{name}.pt", model, history=history)
    return {"path": str(path), "minutes": history.seconds / 60, "steps": history.step}


def train_variants(names: list[str], args, device: torch.device) -> dict[str, tuple]:
    """Train every variant: one after the other, or ``--jobs`` at a time in separate processes (each
    with ``--train-threads`` torch threads, default ``cores / jobs``).

    Returns ``{name: (model, minutes, steps)}``.
    """
    threads = args.train_threads or max(1, (os.cpu_count() or 1) // args.jobs)
    recipe = dict(batch_size=args.batch_size, lr=args.lr, schedule=args.schedule, num_workers=args.workers)
    jobs = [(name, args.minutes, args.steps, str(device), threads, recipe) for name in names]
    if args.jobs == 1 or len(jobs) <= 1:
        done = [_train_and_save(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_train_and_save, *zip(*jobs, strict=True)))
    return {name: (load_model(result["path"], device=device), result["minutes"], result["steps"])
            for name, result in zip(names, done, strict=True)}


def run_network(model: torch.nn.Module, device: torch.device, refine_steps: int = 0):
    """A contender: the network's forward pass (optionally refined per pair), timed to the end."""

    def run(pair: Pair) -> Outcome:
        moving, fixed = pair.moving.to(device), pair.fixed.to(device)
        start = time.perf_counter()
        if refine_steps:
            disp = instance_optimize(model, moving, fixed, steps=refine_steps)[1]
        else:
            with torch.no_grad():
                disp = model(moving, fixed)[1]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        disp = disp.float().cpu()
        return Outcome(disp, warp_labels(pair.moving_labels, disp, method="onehot"), seconds, 0.0)

    return run


# ---------------------------------------------------------------------------
# part 1: brains
# ---------------------------------------------------------------------------


def brains(args, device: torch.device) -> list[dict]:
    pairs = evaluation_pairs(args.split, 1 if args.quick else args.pairs, args.quick)
    contenders: dict[str, Callable[[Pair], Outcome]] = {}
    training: dict[str, tuple[float, int]] = {}
    trained = train_variants(args.variants, args, device)
    if args.threads:
        set_threads(args.threads)  # training in this process may have changed torch's
    for name, (model, minutes, steps) in trained.items():
        label = LABELS.get(name, f"VoxelMorph {name}")
        contenders[label] = run_network(model, device)
        training[label] = (minutes, steps)
        if name == "unsupervised":
            label = f"VoxelMorph unsupervised + {INSTANCE_STEPS} it. instance opt."
            contenders[label] = run_network(model, device, refine_steps=INSTANCE_STEPS)
            training[label] = training["VoxelMorph unsupervised"]
    for name in args.pretrained:
        contenders[f"shipped {name}"] = run_network(pretrained(name, device=device), device)
    for path in args.model_files:
        network = load_model(path, device=device)
        contenders[f"{path.stem} ({path.parent.name}/)"] = run_network(network, device)
    contenders["regedu classical default"] = run_regedu("default", device)
    contenders[REFERENCE] = run_ants("SyNCC")
    warmup = crop_pair(pairs[0], size=64)
    for run in contenders.values():
        run(warmup)
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for index, pair in enumerate(pairs):
        for name, run in contenders.items():
            scores[name].append(score(pair, run(pair)))
            s = scores[name][-1]
            print(f"  pair {index}: {name:48s} Dice {s['Dice']:.3f} (before {s['Dice before']:.3f}) "
                  f"folding {s['folding %']:.3f}% {s['s/pair']:.3f} s", flush=True)
    rows = summarise(scores, 2)
    reference = next(row for row in rows if row["method"].endswith(REFERENCE))
    for row in rows:
        row["method"] = row["method"].removeprefix("2D ")
        minutes, steps = training.get(row["method"], ("", ""))
        row["train min"], row["steps"] = minutes, steps
        row["speed-up"] = reference["s/pair"] / row["s/pair"]
    return rows


# ---------------------------------------------------------------------------
# part 2: the multiscale toy
# ---------------------------------------------------------------------------


def toy_models() -> dict[str, Callable[[], torch.nn.Module]]:
    return {"VoxelMorph (single scale)": lambda: VoxelMorph(2),
            "VoxelMorph diffeomorphic (single scale)": lambda: VoxelMorph(2, diffeomorphic=True),
            "PyramidNet (3 levels)": lambda: PyramidNet(2)}


def toy(args, device: torch.device) -> list[dict]:
    minutes = 0.2 if args.quick else args.toy_minutes
    push = dict(shape=(64, 64), magnitude=20.0, min_magnitude=12.0)
    training_data = LargeDeformationPairs(length=10**7, seed=TOY_TRAIN_SEED, **push)
    test = LargeDeformationPairs(length=20, seed=TOY_TEST_SEED, **push)
    batch = {key: torch.stack([test[i][key] for i in range(len(test))]).to(device)
             for key in ("moving", "fixed", "moving_labels", "fixed_labels")}
    before = metrics.dice(batch["moving_labels"], batch["fixed_labels"], labels=[1])[:, 0]
    rows = []
    for name, build in toy_models().items():
        torch.manual_seed(0)
        model = build().to(device)
        config = TrainConfig(similarity="mse", weight=0.01, steps=args.steps, minutes=minutes, batch_size=8,
                             lr=3e-3, validate_every=10**9, checkpoint_every=10**9)
        history = train(model, training_data, config, progress=False)
        model.eval()
        with torch.no_grad():
            disp = model(batch["moving"], batch["fixed"])[1].float()
        warped_labels = warp_labels(batch["moving_labels"], disp)
        dice = metrics.dice(warped_labels, batch["fixed_labels"], labels=[1])[:, 0]
        rows.append({"model": name, "train min": history.seconds / 60, "steps": history.step,
                     "Dice before": float(before.mean()), "Dice": float(dice.mean()),
                     "Dice min": float(dice.min()),
                     "folding %": 100 * float(metrics.folding_fraction(disp).mean())})
        print(format_table(TOY_COLUMNS, rows[-1:]), flush=True)
    return rows


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "brains", "toy"], default="all")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--pretrained", nargs="*", default=[], choices=sorted(PRETRAINED),
                        help="also score the shipped models (trained by scripts/train_pretrained.py)")
    parser.add_argument("--model-files", nargs="*", type=Path, default=[],
                        help="also score these checkpoints (e.g. a model scripts/train_pretrained.py has "
                             "just finished, before it is shipped)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per brain variant")
    parser.add_argument("--toy-minutes", type=float, default=3.0, help="training time per toy model")
    parser.add_argument("--steps", type=int, default=10**6,
                        help="step budget per model (time usually ends first)")
    parser.add_argument("--pairs", type=int, default=None, help="brain pairs (default: all of the split)")
    parser.add_argument("--split", choices=["test", "development", "training", "old"], default="test",
                        help="brain pairs: heldout.py's test or development pairs (made differently from the "
                             "training data), 'training' (16 unseen pairs of the training distribution), or "
                             "'old' (the first release's pairs)")
    parser.add_argument("--batch-size", type=int, default=4, help="brain variants: pairs per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="brain variants: (peak) learning rate")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="brain variants: learning-rate schedule (regedu.train.TrainConfig.schedule)")
    parser.add_argument("--workers", type=int, default=1,
                        help="brain variants: data-loading processes per variant (they make the pairs while "
                             "the network trains)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="variants trained at once, in separate processes (2 on 2 cores: one core each)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every contender when registering the test pairs: torch, and ITK in "
                             "ANTs (default: each library's own)")
    parser.add_argument("--train-threads", type=int, default=None,
                        help="torch threads of each training job (default: cores / --jobs)")
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    if args.quick:
        args.minutes, args.variants = 0.1, args.variants[:2]
    device = resolve_device(args.device)
    parts = ["brains", "toy"] if args.part == "all" else [args.part]
    paragraphs = __doc__.split("\n\n")
    for part in parts:
        if part == "brains":
            columns, rows, title = COLUMNS, brains(args, device), "held-out brain pairs"
        else:
            columns, rows, title = TOY_COLUMNS, toy(args, device), "the multiscale toy"
        print(format_table(columns, rows))
        notes = paragraphs[1] + "\n\n" + paragraphs[2] if part == "brains" else paragraphs[3]
        env = environment(device, ["antspyx", "numpy"])
        env["training minutes per model"] = args.minutes if part == "brains" else args.toy_minutes
        shipped_only = part == "brains" and not args.variants
        name = f"learned_{part}" + (f"_{args.split}" if part == "brains" else "")
        name += "_shipped" if shipped_only else ""
        path = default_output(name, device, args.quick)
        if args.output is not None:
            path = args.output if len(parts) == 1 else args.output.with_name(f"{args.output.stem}_{part}.md")
        write_results(path, f"Learned registration: {title}", notes, columns, rows, env)
        print(f"written to {path}")


if __name__ == "__main__":
    main()
