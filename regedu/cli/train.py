"""``regedu train``: train a registration network on built-in synthetic data or on NIfTI pairs.

A thin layer over :func:`regedu.train.train`: the options become a
:class:`~regedu.train.TrainConfig`, ``--data`` a dataset, ``--model`` a network; the checkpoint
in ``--out`` is saved every ``--checkpoint-every`` steps, and ``--resume`` continues it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..losses import SIMILARITIES
from .common import (
    PROG,
    CommandError,
    add_common,
    check_output,
    claim,
    device_from,
    minutes,
    note,
    number,
    positive_int,
)

__all__ = ["SYNTHETIC_DATA", "MODELS", "LOSSES", "UNSUPERVISED_LOSSES", "synthetic_data", "add_parser", "run"]

SYNTHETIC_DATA = ("brain2d", "brain3d", "synthmorph2d", "synthmorph3d", "shapes2d")
MODELS = ("voxelmorph", "voxelmorph-diff", "pyramid", "affine", "light")
UNSUPERVISED_LOSSES = tuple(SIMILARITIES)  # every similarity of the one registry, regedu.losses
LOSSES = {  # --loss -> (TrainConfig.supervision, TrainConfig.similarity)
    **{name: ("unsupervised", name) for name in UNSUPERVISED_LOSSES},
    "supervised": ("supervised", "ncc"),
    "dice": ("labels", "ncc"),
    "synthmorph": ("synthmorph", "ncc"),
}
DEFAULT_WEIGHT = {"mse": 0.01, "synthmorph": 0.1}  # regulariser weight per --loss (mse: VoxelMorph's value;
# synthmorph: the shipped synthmorph2d recipe's); else 1.0
SYNTHETIC_PAIRS = 10_000  # pairs in a synthetic training set (generated on the fly, never stored)
VALIDATION_PAIRS = {2: 16, 3: 4}
VALIDATION_SEED = 10_000  # validation pairs use seed + this, so they never meet the training pairs
UNLIMITED_STEPS = 10**9  # --minutes without --steps


def synthetic_data(name: str, seed: int, length: int, device: torch.device):
    """One of the built-in training sets (items generated on ``device`` when it is a GPU)."""
    from ..data import BrainSlicePairs, BrainVolumePairs, LargeDeformationPairs, SynthMorphPairs

    where = device if device.type == "cuda" else None
    if name == "brain2d":  # every level of the cerebrum, small to large deformations, with or without a head
        return BrainSlicePairs(length, seed=seed, device=where)
    if name == "brain3d":  # the same variety for the whole 2 mm volume (the shipped 3D model's data)
        return BrainVolumePairs(length, seed=seed, device=where)
    if name in ("synthmorph2d", "synthmorph3d"):
        shape = (96, 112) if name == "synthmorph2d" else (96, 112, 96)
        return SynthMorphPairs(length, shape=shape, seed=seed, device=where)
    # shapes2d: a disk pushed 4 to 12 voxels by a smooth warp, 64 x 64 (for the multiscale model)
    return LargeDeformationPairs(length, shape=(64, 64), magnitude=12.0, min_magnitude=4.0, seed=seed,
                                 device=where)


def _training_data(data: str, seed: int, device: torch.device):
    """``(training set, validation set or None, description)`` for ``--data``."""
    from ..data import NiftiPairs

    if data in SYNTHETIC_DATA:
        train_set = synthetic_data(data, seed, SYNTHETIC_PAIRS, device)
        ndim = train_set[0]["moving"].dim() - 1
        validation = synthetic_data(data, seed + VALIDATION_SEED, VALIDATION_PAIRS[ndim], device)
        return train_set, validation, f"{data} ({SYNTHETIC_PAIRS} synthetic pairs, made on the fly)"
    path = Path(data).expanduser()
    if not path.exists():
        raise CommandError(
            f"--data {data!r} is neither one of {', '.join(SYNTHETIC_DATA)} nor an existing folder or CSV "
            f"file of NIfTI pairs (CSV columns moving,fixed[,moving_labels,fixed_labels])."
        )
    pairs = NiftiPairs(path)
    return pairs, None, f"{path} ({len(pairs)} NIfTI pairs)"


def _check_supervision(loss: str, item: dict, data: str) -> None:
    """Fail before training when the data lack what ``--loss`` needs."""
    needs = {"supervised": ("disp",), "dice": ("moving_labels", "fixed_labels"),
             "synthmorph": ("moving_labels", "fixed_labels")}.get(loss, ())
    missing = [key for key in needs if key not in item]
    if not missing:
        return
    if "disp" in missing:
        raise CommandError(
            f"--loss supervised needs the true displacement of every pair, which only synthetic data have "
            f"(--data {', '.join(SYNTHETIC_DATA)}), not --data {data}; use --loss "
            f"{', '.join(UNSUPERVISED_LOSSES)} or dice."
        )
    raise CommandError(
        f"--loss {loss} needs label maps for both images of every pair, but --data {data} has none: put "
        f"<image>_labels.nii.gz beside each image (or add moving_labels,fixed_labels columns to the CSV), "
        f"or use --loss {', '.join(UNSUPERVISED_LOSSES)}."
    )


def _build_model(name: str, ndim: int, channels: int) -> torch.nn.Module:
    from .. import models

    if name == "voxelmorph":
        return models.VoxelMorph(ndim, in_channels=channels)
    if name == "voxelmorph-diff":
        return models.VoxelMorph(ndim, diffeomorphic=True, in_channels=channels)
    if name == "pyramid":  # in 3D the shipped model's layout: the pyramid thinks on a 2x coarser grid
        return models.PyramidNet(ndim, in_channels=channels, field_downsize=2 if ndim == 3 else 1)
    if name == "affine":
        return models.AffineNet(ndim, in_channels=channels)
    return models.LightVoxelMorph(ndim, in_channels=channels)


class _TrainingBar:
    """A tqdm progress bar fed by the training loop's callback: steps, loss, elapsed time."""

    def __init__(self, total: int | None, initial: int, minutes: float | None):
        from tqdm import tqdm

        budget = f", {minutes:g} min budget" if minutes else ""
        self.bar = tqdm(total=total, initial=initial, desc=f"training{budget}", unit="step",
                        dynamic_ncols=True, file=sys.stderr)

    def __call__(self, step: int, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _check_train_output(args) -> Path:
    out = check_output(args.out, "--out", overwrite=args.overwrite or args.resume, suffixes=())
    if args.resume and args.overwrite:
        raise CommandError("--resume continues the checkpoint in --out, --overwrite starts afresh: pick one.")
    claim({"--out": out}, overwrite=args.overwrite or args.resume)  # locked (and writable) until the end
    return out


def _resumed_step(out: Path, resume: bool, model: torch.nn.Module) -> int:
    """The step the checkpoint in ``out`` reached (0 when training starts afresh); raises if it
    holds another model than the one ``--model`` builds
    (:func:`regedu.models.checkpoint.check_same_model`)."""
    from ..models.checkpoint import check_same_model

    if not resume:
        return 0
    if not out.exists():
        note(f"no checkpoint at {out} yet: training starts from scratch.")
        return 0
    step = check_same_model(out, model)
    note(f"resuming from {out} at step {step}.")
    return step


def _train_config(args, loss: str):
    """The :class:`~regedu.train.TrainConfig` the options describe."""
    from ..train import TrainConfig

    supervision, similarity = LOSSES[loss]
    return TrainConfig(supervision=supervision, similarity=similarity,
                       weight=args.weight if args.weight is not None else DEFAULT_WEIGHT.get(loss, 1.0),
                       lr=args.lr, schedule=args.schedule, batch_size=args.batch_size,
                       num_workers=_workers(args),
                       steps=args.steps or (UNLIMITED_STEPS if args.minutes else 1000),
                       minutes=args.minutes, seed=args.seed, checkpoint_every=args.checkpoint_every)


def _workers(args) -> int:
    """Data-loading processes: ``--workers``, else 1 for synthetic data on a multi-core CPU."""
    if args.workers is not None:
        if args.workers < 0:
            raise CommandError(f"--workers must be 0 or more, got {args.workers}")
        return args.workers
    on_gpu = str(args.device).startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    synthetic = args.data in SYNTHETIC_DATA
    return 1 if synthetic and not on_gpu and (os.cpu_count() or 1) > 1 else 0


def _announce(args, model, described: str, item: dict, loss: str, config, device) -> None:
    size = "x".join(str(n) for n in item["moving"].shape[1:])
    count = sum(p.numel() for p in model.parameters())
    regulariser = "" if config.supervision == "supervised" else f" + {config.weight:g} x diffusion"
    print(f"training {type(model).__name__} ({item['moving'].dim() - 1}D, {count:,} weights) on {described}, "
          f"{size} voxels; loss {loss}{regulariser}, batch {config.batch_size}, lr {config.lr:g}, "
          f"{_budget(args.steps, args.minutes)}, on {device}")


def run(args) -> int:
    """Run ``regedu train`` with the parsed ``args``; return the exit status."""
    from ..train import train

    out = _check_train_output(args)
    device = device_from(args.device)
    train_set, validation, described = _training_data(args.data, args.seed, device)
    item = train_set[0]
    loss = args.loss or ("synthmorph" if args.data.startswith("synthmorph") else "ncc")
    _check_supervision(loss, item, args.data)
    config = _train_config(args, loss)
    torch.manual_seed(args.seed)
    model = _build_model(args.model, item["moving"].dim() - 1, item["moving"].shape[0]).to(device)
    start = _resumed_step(out, args.resume, model)
    _announce(args, model, described, item, loss, config, device)
    bar = _TrainingBar(None if config.steps == UNLIMITED_STEPS else config.steps, start, args.minutes)
    try:
        history = train(model, train_set, config, validation=validation, checkpoint=out, resume=args.resume,
                        progress=False, callback=bar)
    except KeyboardInterrupt:
        bar.close()
        note(f"interrupted. {out} holds the last checkpoint (saved every {args.checkpoint_every} steps); "
             f"continue with the same command and --resume.")
        return 130
    except BaseException:
        bar.close()  # so that the error starts on a line of its own
        raise
    bar.close()
    _report_training(history, out)
    return 0


def _budget(steps: int | None, minutes: float | None) -> str:
    if steps and minutes:
        return f"up to {steps} steps or {minutes:g} min"
    return f"{minutes:g} min" if minutes else f"{steps or 1000} steps"


def _report_training(history, out: Path) -> None:
    last = np.mean(history.losses[-20:]) if history.losses else math.nan
    validation = f", validation Dice {history.validation[-1][1]:.3f}" if history.validation else ""
    print(f"saved the model to {out} (step {history.step}, {history.seconds:.1f} s, "
          f"loss {last:.4f} over the last steps{validation})")
    print(f"use it: {PROG} register MOVING FIXED --method voxelmorph --model {out} -o warped.nii.gz")


def add_parser(commands) -> None:
    """Add ``train`` to the subcommands."""
    parser = commands.add_parser(
        "train", help="train a registration network", description=(
            "Train a registration network and save it as a checkpoint. Built-in data are generated "
            "offline from the MNI template or from random label maps; PATH is a folder of NIfTI "
            "images (every ordered pair; <name>_labels.nii.gz beside an image is its label map) or a "
            "CSV file with columns moving,fixed[,moving_labels,fixed_labels]. Training stops after "
            "--steps or --minutes, whichever comes first, saving to --out every --checkpoint-every "
            "steps and at the end; --resume continues an interrupted run."))
    parser.add_argument("--data", required=True, metavar="{" + ",".join(SYNTHETIC_DATA) + ",PATH}",
                        help="training pairs")
    parser.add_argument("--model", default="pyramid", choices=MODELS,
                        help="network (default pyramid: three U-Nets, coarse to fine, the best measured on "
                             "held-out brain pairs; voxelmorph: the classic single-scale network)")
    parser.add_argument("--loss", choices=list(LOSSES), default=None,
                        help=f"{', '.join(UNSUPERVISED_LOSSES)}: unsupervised similarity "
                             f"(regedu.losses.SIMILARITIES) + weight x diffusion; supervised: "
                             "end-point error to the true field (synthetic data); dice: Dice of the warped "
                             "labels + weight x diffusion; synthmorph: squared difference of the warped "
                             "one-hot label maps (regedu.losses.label_mse) + weight x diffusion, on "
                             "synthmorph data "
                             "(default: synthmorph for synthmorph data, else ncc)")
    parser.add_argument("--weight", type=lambda t: number(t, 0.0, False), default=None,
                        help="regulariser weight (default 0.01 for mse, 0.1 for synthmorph, else 1)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="optimiser steps (default 1000, or no step limit with --minutes)")
    parser.add_argument("--minutes", type=minutes, default=None, help="time budget in minutes")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="pairs per step (default 4)")
    parser.add_argument("--lr", type=lambda t: number(t, 0.0, True), default=2e-3,
                        help="(peak) learning rate (default 0.002)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="cosine",
                        help="learning rate over the run: cosine (default) lowers it from --lr to 0 by the "
                             "end of --steps or --minutes, whichever comes first; constant keeps --lr")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that make the next synthetic pairs while the network trains "
                             "(default: 1 on a multi-core CPU, 0 on a GPU, where pairs are made on the GPU)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=200,
                        help="save every N steps (default 200)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--out", "-o", required=True, metavar="MODEL.pt", help="checkpoint to write")
    add_common(parser, method=False)
    parser.set_defaults(run=run)
