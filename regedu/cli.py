"""The ``regedu`` command (also ``python -m regedu``): train, register, evaluate, demo.

Each subcommand is a thin layer over the package: ``train`` over :func:`regedu.train.train`,
``register`` and ``evaluate`` over :func:`regedu.register` (every method in
:data:`regedu.api.METHODS`, classical or learned) with :func:`regedu.data.check_pair` first,
``demo`` over the offline MNI slice and :mod:`regedu.viz`.

Mistakes a user can make (a missing file, a bad option, a shape mismatch, a wrong checkpoint)
end with one line ``regedu: error: ...`` on stderr and exit status 2, never a traceback
(set ``REGEDU_DEBUG=1`` to see the traceback anyway). Results go to stdout; warnings, notes and
progress bars to stderr. No file is overwritten unless ``--overwrite`` (or ``--resume``) says so.
"""

from __future__ import annotations

import argparse
import ast
import csv
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["main", "build_parser", "CommandError"]

PROG = "regedu"
SYNTHETIC_DATA = ("brain2d", "brain3d", "synthmorph2d", "synthmorph3d", "shapes2d")
MODELS = ("voxelmorph", "voxelmorph-diff", "pyramid", "affine", "light")
LOSSES = {  # --loss -> (TrainConfig.supervision, TrainConfig.similarity)
    "ncc": ("unsupervised", "ncc"),
    "mse": ("unsupervised", "mse"),
    "mi": ("unsupervised", "mi"),
    "supervised": ("supervised", "ncc"),
    "dice": ("labels", "ncc"),
    "synthmorph": ("synthmorph", "ncc"),
}
DEFAULT_WEIGHT = {"mse": 0.01}  # regulariser weight per --loss (VoxelMorph's values); else 1.0
SYNTHETIC_PAIRS = 10_000  # pairs in a synthetic training set (generated on the fly, never stored)
VALIDATION_PAIRS = {2: 16, 3: 4}
VALIDATION_SEED = 10_000  # validation pairs use seed + this, so they never meet the training pairs
UNLIMITED_STEPS = 10**9  # --minutes without --steps
DEMO_SEED = 7  # the synthetic subject of `regedu demo`
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


class CommandError(Exception):
    """A mistake the user can fix: printed as ``regedu: error: <message>``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (``regedu: error: ...``), not a usage block."""

    def error(self, message):
        raise CommandError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------
# small helpers: option types, devices, output paths, printing
# ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _number(text: str, minimum: float, strict: bool, hint: str = "") -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise argparse.ArgumentTypeError(f"must be a number {relation} {minimum:g}, got {text!r}{hint}")
    return value


def _minutes(text: str) -> float:
    return _number(text, 0.0, True, ": give a positive time budget, or leave --minutes out to stop by "
                                    "--steps alone")


def _option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, value), the value read as a Python literal when it is one."""
    key, equals, raw = text.partition("=")
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"must look like KEY=VALUE (e.g. iterations=100), got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def _device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when there is one, else the CPU) or a torch device name that works here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: no CUDA GPU is available here; use --device cpu (or auto).")
    return device


def _output(path, option: str, overwrite: bool, suffixes: Sequence[str] = NIFTI_SUFFIXES) -> Path:
    """Check an output path before any work is done: suffix, existing folder, no silent overwrite."""
    path = Path(path).expanduser()
    if suffixes and not path.name.lower().endswith(tuple(suffixes)):
        raise CommandError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}.")
    if path.is_dir():
        raise CommandError(f"{option} {path} is a folder; give a file name.")
    if not path.parent.is_dir():
        raise CommandError(f"{option} {path}: the folder {path.parent} does not exist; create it first.")
    if path.exists() and not overwrite:
        raise CommandError(f"{option} {path} exists already; pass --overwrite to replace it.")
    return path


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"{PROG}: {_one_line(message)}", file=sys.stderr)


def _format(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table, left-aligned first columns, right-aligned numbers."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if not _numeric(c) else str(c).rjust(w)
                         for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _numeric(cell) -> bool:
    try:
        float(cell)
        return True
    except (TypeError, ValueError):
        return cell in ("-", "inf")


# ---------------------------------------------------------------------------
# regedu train
# ---------------------------------------------------------------------------


def _synthetic_data(name: str, seed: int, length: int, device: torch.device):
    """One of the built-in training sets (items generated on ``device`` when it is a GPU)."""
    from .data import LargeDeformationPairs, SynthMorphPairs, TemplatePairs

    where = device if device.type == "cuda" else None
    if name in ("brain2d", "brain3d"):
        return TemplatePairs(length, mode="subject_to_subject", ndim=int(name[-2]), seed=seed, device=where)
    if name in ("synthmorph2d", "synthmorph3d"):
        shape = (96, 112) if name == "synthmorph2d" else (96, 112, 96)
        return SynthMorphPairs(length, shape=shape, seed=seed, device=where)
    # shapes2d: a disk pushed 4 to 12 voxels by a smooth warp, 64 x 64 (for the multiscale model)
    return LargeDeformationPairs(length, shape=(64, 64), magnitude=12.0, min_magnitude=4.0, seed=seed,
                                 device=where)


def _training_data(data: str, seed: int, device: torch.device):
    """``(training set, validation set or None, description)`` for ``--data``."""
    from .data import NiftiPairs

    if data in SYNTHETIC_DATA:
        train_set = _synthetic_data(data, seed, SYNTHETIC_PAIRS, device)
        ndim = train_set[0]["moving"].dim() - 1
        validation = _synthetic_data(data, seed + VALIDATION_SEED, VALIDATION_PAIRS[ndim], device)
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
            f"(--data {', '.join(SYNTHETIC_DATA)}), not --data {data}; use --loss ncc, mse, mi or dice."
        )
    raise CommandError(
        f"--loss {loss} needs label maps for both images of every pair, but --data {data} has none: put "
        f"<image>_labels.nii.gz beside each image (or add moving_labels,fixed_labels columns to the CSV), "
        f"or use --loss ncc, mse or mi."
    )


def _build_model(name: str, ndim: int, channels: int) -> torch.nn.Module:
    from . import models

    if name == "voxelmorph":
        return models.VoxelMorph(ndim, in_channels=channels)
    if name == "voxelmorph-diff":
        return models.VoxelMorph(ndim, diffeomorphic=True, in_channels=channels)
    if name == "pyramid":
        return models.PyramidNet(ndim, in_channels=channels)
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
    out = _output(args.out, "--out", overwrite=args.overwrite or args.resume, suffixes=())
    if args.resume and args.overwrite:
        raise CommandError("--resume continues the checkpoint in --out, --overwrite starts afresh: pick one.")
    return out


def _resumed_step(out: Path, resume: bool, model: torch.nn.Module, name: str) -> int:
    """The step the checkpoint in ``out`` reached (0 when training starts afresh); raises if it
    holds another model than the one ``--model`` builds."""
    from .train import load_checkpoint

    if not resume:
        return 0
    if not out.exists():
        _note(f"no checkpoint at {out} yet: training starts from scratch.")
        return 0
    payload = load_checkpoint(out)
    saved = payload["model_spec"]
    if saved["class"] != type(model).__name__ or saved["config"] != dict(getattr(model, "config", {})):
        raise CommandError(
            f"{out} holds a {saved['class']} {saved['config']}, but --model {name} builds a "
            f"{type(model).__name__} {getattr(model, 'config', {})}: resume with the --model (and data) "
            f"it was trained with."
        )
    step = int(payload["history"].get("step", 0))
    _note(f"resuming from {out} at step {step}.")
    return step


def _train_config(args, loss: str):
    """The :class:`~regedu.train.TrainConfig` the options describe."""
    from .train import TrainConfig

    supervision, similarity = LOSSES[loss]
    return TrainConfig(supervision=supervision, similarity=similarity,
                       weight=args.weight if args.weight is not None else DEFAULT_WEIGHT.get(loss, 1.0),
                       lr=args.lr, schedule=args.schedule, batch_size=args.batch_size,
                       steps=args.steps or (UNLIMITED_STEPS if args.minutes else 1000),
                       minutes=args.minutes, seed=args.seed, checkpoint_every=args.checkpoint_every)


def _announce(args, model, described: str, item: dict, loss: str, config, device) -> None:
    size = "x".join(str(n) for n in item["moving"].shape[1:])
    count = sum(p.numel() for p in model.parameters())
    regulariser = "" if config.supervision == "supervised" else f" + {config.weight:g} x diffusion"
    print(f"training {type(model).__name__} ({item['moving'].dim() - 1}D, {count:,} weights) on {described}, "
          f"{size} voxels; loss {loss}{regulariser}, batch {config.batch_size}, lr {config.lr:g}, "
          f"{_budget(args.steps, args.minutes)}, on {device}")


def _run_train(args) -> int:
    from .train import train

    out = _check_train_output(args)
    device = _device(args.device)
    train_set, validation, described = _training_data(args.data, args.seed, device)
    item = train_set[0]
    loss = args.loss or ("synthmorph" if args.data.startswith("synthmorph") else "ncc")
    _check_supervision(loss, item, args.data)
    config = _train_config(args, loss)
    torch.manual_seed(args.seed)
    model = _build_model(args.model, item["moving"].dim() - 1, item["moving"].shape[0]).to(device)
    start = _resumed_step(out, args.resume, model, args.model)
    _announce(args, model, described, item, loss, config, device)
    bar = _TrainingBar(None if config.steps == UNLIMITED_STEPS else config.steps, start, args.minutes)
    try:
        history = train(model, train_set, config, validation=validation, checkpoint=out, resume=args.resume,
                        progress=False, callback=bar)
    except KeyboardInterrupt:
        bar.close()
        _note(f"interrupted. {out} holds the last checkpoint (saved every {args.checkpoint_every} steps); "
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


# ---------------------------------------------------------------------------
# loading a pair of NIfTI files the way `register` and `evaluate` do
# ---------------------------------------------------------------------------


@dataclass
class Pair:
    """A moving/fixed pair on the fixed grid, ready to register.

    ``moving`` and ``fixed`` are ``(1, 1, *spatial)`` float32, normalised to [0, 1] unless asked
    otherwise; ``moving_original`` is the moving image with its own intensities on the same grid
    (what the warped output is made from); labels are int64 or ``None``; ``affine`` and
    ``spacing`` describe the fixed grid (RAS, mm).
    """

    moving: torch.Tensor
    fixed: torch.Tensor
    moving_original: torch.Tensor
    moving_labels: torch.Tensor | None
    fixed_labels: torch.Tensor | None
    affine: np.ndarray
    spacing: tuple[float, ...]


def _load_image(path, what: str):
    from .data import load_nifti

    volume = load_nifti(path)
    image = volume.image
    if not bool(torch.isfinite(image).all()):
        bad = int((~torch.isfinite(image)).sum())
        raise CommandError(f"the {what} image {path} has {bad} NaN or infinite voxels; registration needs "
                           f"finite intensities: repair the file (e.g. set those voxels to 0).")
    return volume


def _load_label_map(path, what: str, grid: torch.Tensor, image_path) -> torch.Tensor | None:
    from .data import load_labels

    if path is None:
        return None
    labels = load_labels(path).image
    if labels.shape[2:] != grid.shape[2:]:
        raise CommandError(
            f"the {what} labels {path} have shape {tuple(labels.shape[2:])} but their image {image_path} "
            f"has {tuple(grid.shape[2:])}: a label map must lie on its image's grid."
        )
    return labels


def _needs_resampling(report) -> bool:
    """What ``check_pair`` recommends: resample the moving image onto the fixed grid when their
    shapes or voxel sizes differ (same tolerance as check_pair)."""
    stats = report.stats
    if stats.get("moving shape") != stats.get("fixed shape"):
        return True
    spacings = stats.get("moving spacing (mm)"), stats.get("fixed spacing (mm)")
    return None not in spacings and not np.allclose(spacings[0], spacings[1], rtol=1e-3)


def _check(moving, fixed, moving_labels, fixed_labels, moving_affine, fixed_affine):
    from .data import check_pair

    # factor=1: regedu's networks pad to their own factor, so no size needs padding by hand
    return check_pair(moving, fixed, moving_labels=moving_labels, fixed_labels=fixed_labels,
                      moving_affine=moving_affine, fixed_affine=fixed_affine, factor=1, verbose=False)


def load_pair(moving_path, fixed_path, moving_labels_path=None, fixed_labels_path=None,
              normalize: bool = True, warn: Callable[[str], None] = _warn) -> Pair:
    """Load, normalise and check a pair; resample the moving image onto the fixed grid when
    :func:`regedu.data.check_pair` says that is the fix. Warnings go to ``warn``."""
    from .data import normalize_intensity

    moving_volume, fixed_volume = _load_image(moving_path, "moving"), _load_image(fixed_path, "fixed")
    original, fixed = moving_volume.image, fixed_volume.image
    if original.dim() != fixed.dim():
        raise CommandError(
            f"the moving image {moving_path} is {original.dim() - 2}D {tuple(original.shape[2:])} but the "
            f"fixed image {fixed_path} is {fixed.dim() - 2}D {tuple(fixed.shape[2:])}: register two 2D "
            f"slices or two 3D volumes."
        )
    moving_labels = _load_label_map(moving_labels_path, "moving", original, moving_path)
    fixed_labels = _load_label_map(fixed_labels_path, "fixed", fixed, fixed_path)
    moving = normalize_intensity(original) if normalize else original
    fixed = normalize_intensity(fixed) if normalize else fixed
    pair = Pair(moving, fixed, original, moving_labels, fixed_labels, fixed_volume.affine,
                fixed_volume.spacing)
    report = _check(moving, fixed, moving_labels, fixed_labels, moving_volume.affine, fixed_volume.affine)
    for warning in report.warnings:
        warn(warning)
    if _needs_resampling(report):
        _resample_onto_fixed(pair, moving_volume.affine)
        again = _check(pair.moving, fixed, pair.moving_labels, fixed_labels, pair.affine, pair.affine)
        for warning in again.warnings:
            if warning not in report.warnings:
                warn(warning)
    return pair


def _resample_onto_fixed(pair: Pair, moving_affine: np.ndarray) -> None:
    """Move the moving image (both versions) and its labels onto the fixed grid, in place."""
    from .data import resample_like

    shape = tuple(pair.fixed.shape[2:])
    pair.moving = resample_like(pair.moving, moving_affine, shape, pair.affine)
    pair.moving_original = resample_like(pair.moving_original, moving_affine, shape, pair.affine)
    if pair.moving_labels is not None:
        pair.moving_labels = resample_like(pair.moving_labels, moving_affine, shape, pair.affine)
    _note(f"resampled the moving image{' and its labels' if pair.moving_labels is not None else ''} onto "
          f"the fixed grid {shape} through the NIfTI affines, as check_pair suggests.")


# ---------------------------------------------------------------------------
# running a method
# ---------------------------------------------------------------------------


def _check_method(method: str, model) -> bool:
    """Raise for an unknown method or ``--model`` with a classical one; return True if learned."""
    from .api import LEARNED_METHODS, METHODS

    if method not in METHODS:
        raise CommandError(f"unknown --method {method!r}; choose one of {', '.join(sorted(METHODS))}.")
    learned = method in LEARNED_METHODS
    if model is not None and not learned:
        raise CommandError(f"--model is for the learned methods ({', '.join(LEARNED_METHODS)}), but --method "
                           f"{method} is classical: drop --model, or use --method voxelmorph.")
    return learned


def _load_network(model_path, device: torch.device):
    """The checkpoint in ``--model`` loaded once (``None``: the method's default, loaded by it)."""
    from .train import load_model

    return None if model_path is None else load_model(model_path, device=device)


def _run_method(pair: Pair, method: str, learned: bool, network, device: torch.device, options: dict,
                progress: bool | None):
    """:func:`regedu.register` on the pair; the result on the CPU."""
    from .api import DEFAULT_MODELS, register

    ndim = pair.fixed.dim() - 2
    if learned and network is None and ndim not in DEFAULT_MODELS:
        raise CommandError(f"--method {method} needs --model for {ndim}D images: regedu ships a pre-trained "
                           f"model for 2D only. Train one: `regedu train --data brain3d --out model.pt`.")
    extra = {"model": network} if learned else {"progress": progress}
    result = register(pair.moving, pair.fixed, method=method, moving_labels=pair.moving_labels,
                      device=device, **extra, **options)
    result.disp = result.disp.cpu()
    result.warped = result.warped.cpu()
    if result.warped_labels is not None:
        result.warped_labels = result.warped_labels.cpu()
    return result


def _mean_dice(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    from .metrics import dice

    if a is None or b is None:
        return None
    return float(torch.nanmean(dice(a, b)))


def _mean_hd95(a: torch.Tensor | None, b: torch.Tensor | None, spacing) -> float | None:
    """Mean HD95 (mm) over the labels in either map; ``inf`` when a label is missing from one."""
    from .metrics import hd95

    if a is None or b is None:
        return None
    return float(torch.nanmean(hd95(a, b, spacing=spacing)))


def _folding_percent(disp: torch.Tensor) -> float:
    from .metrics import folding_fraction

    return 100.0 * float(folding_fraction(disp.float()).mean())


# ---------------------------------------------------------------------------
# regedu register
# ---------------------------------------------------------------------------


def _register_outputs(args) -> dict[str, Path]:
    if (args.labels is None) != (args.labels_out is None):
        raise CommandError("--labels (the moving image's label map) and --labels-out (where its warped copy "
                           "goes) come together; give both or neither.")
    outputs = {"-o": args.out, "--disp": args.disp, "--labels-out": args.labels_out}
    checked = {option: _output(path, option, args.overwrite) for option, path in outputs.items() if path}
    paths = [path.resolve() for path in checked.values()]
    if len(set(paths)) != len(paths):
        raise CommandError("two outputs name the same file: give -o, --disp and --labels-out other names.")
    return checked


def _run_register(args) -> int:
    from .data import save_nifti
    from .warps import warp

    learned = _check_method(args.method, args.model)
    outputs = _register_outputs(args)
    device = _device(args.device)
    network = _load_network(args.model, device) if learned else None
    pair = load_pair(args.moving, args.fixed, args.labels, args.fixed_labels, normalize=not args.no_normalize)
    if pair.fixed.dim() == 4 and args.disp_format != "voxels":
        raise CommandError(f"--disp-format {args.disp_format} writes physical vectors of 3D volumes; "
                           f"this pair is 2D: use --disp-format voxels.")
    result = _run_method(pair, args.method, learned, network, device, dict(args.option), progress=None)
    save_nifti(warp(pair.moving_original, result.disp), outputs["-o"], pair.affine, overwrite=True)
    if "--disp" in outputs:
        save_nifti(result.disp, outputs["--disp"], pair.affine, overwrite=True, field=args.disp_format)
    if "--labels-out" in outputs:
        save_nifti(result.warped_labels.to(torch.int32), outputs["--labels-out"], pair.affine, overwrite=True)
    _report_registration(args, pair, result, outputs)
    return 0


def _report_registration(args, pair: Pair, result, outputs: dict[str, Path]) -> None:
    print(f"registered {args.moving} onto {args.fixed} with {args.method} in {result.seconds:.2f} s; "
          f"folding {_folding_percent(result.disp):.3f} % of voxels")
    before = _mean_dice(pair.moving_labels, pair.fixed_labels)
    if before is not None:
        after = _mean_dice(result.warped_labels, pair.fixed_labels)
        print(f"mean Dice of the label maps: {before:.3f} before, {after:.3f} after")
    for option, path in outputs.items():
        what = {"-o": "warped image", "--disp": f"displacement ({args.disp_format})",
                "--labels-out": "warped labels"}[option]
        print(f"wrote {path} ({what})")


# ---------------------------------------------------------------------------
# regedu evaluate
# ---------------------------------------------------------------------------

EVALUATION_COLUMNS = ("pair", "moving", "fixed", "dice_before", "dice_after", "hd95_mm", "folding_percent",
                      "seconds")


def read_pair_list(path) -> list[dict[str, Path | None]]:
    """Rows of a CSV file with columns ``moving,fixed[,moving_labels,fixed_labels]``; relative paths
    start at the CSV file's folder. Every named file must exist."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CommandError(f"the pair list {path} does not exist (expected a CSV file with columns "
                           f"moving,fixed,moving_labels,fixed_labels).")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "moving" not in columns or "fixed" not in columns:
            raise CommandError(f"the pair list {path} needs a header row with columns moving,fixed (and "
                               f"moving_labels,fixed_labels for Dice and HD95); it has {columns}.")
        rows = [_pair_row(row, number, path.parent) for number, row in enumerate(reader, start=1)]
    if not rows:
        raise CommandError(f"the pair list {path} has a header but no pairs; add one row per pair.")
    return rows


def _pair_row(row: dict, number: int, root: Path) -> dict[str, Path | None]:
    entry = {}
    for key in ("moving", "fixed", "moving_labels", "fixed_labels"):
        value = (row.get(key) or "").strip()
        if not value:
            if key in ("moving", "fixed"):
                raise CommandError(f"pair {number} of the pair list has no {key} file.")
            entry[key] = None
            continue
        file = Path(value).expanduser()
        file = file if file.is_absolute() else root / file
        if not file.is_file():
            raise CommandError(f"pair {number}: the {key} file {file} does not exist (relative paths start "
                               f"at the pair list's folder, {root}).")
        entry[key] = file
    return entry


def _evaluate_pair(number: int, row: dict, args, learned: bool, network, device) -> dict:
    def warn(message):
        _warn(f"pair {number}: {message}")

    pair = load_pair(row["moving"], row["fixed"], row["moving_labels"], row["fixed_labels"],
                     normalize=not args.no_normalize, warn=warn)
    result = _run_method(pair, args.method, learned, network, device, dict(args.option), progress=False)
    return {
        "pair": number, "moving": row["moving"].name, "fixed": row["fixed"].name,
        "dice_before": _mean_dice(pair.moving_labels, pair.fixed_labels),
        "dice_after": _mean_dice(result.warped_labels, pair.fixed_labels),
        "hd95_mm": _mean_hd95(result.warped_labels, pair.fixed_labels, pair.spacing),
        "folding_percent": _folding_percent(result.disp), "seconds": result.seconds,
    }


def _mean_row(rows: list[dict]) -> dict:
    mean = {"pair": "mean", "moving": "", "fixed": ""}
    for key in EVALUATION_COLUMNS[3:]:
        values = [row[key] for row in rows if row[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean


def _evaluation_table(rows: list[dict]) -> str:
    header = ["pair", "moving", "fixed", "Dice before", "Dice after", "HD95 mm", "folding %", "seconds"]
    digits = {"dice_before": 3, "dice_after": 3, "hd95_mm": 2, "folding_percent": 3, "seconds": 2}
    cells = [[str(row["pair"]), row["moving"], row["fixed"], *(_format(row[k], d) for k, d in digits.items())]
             for row in rows]
    return _table(header, cells)


def _write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EVALUATION_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row[key] is None else row[key] for key in EVALUATION_COLUMNS})


def _run_evaluate(args) -> int:
    learned = _check_method(args.method, args.model)
    out = _output(args.csv, "--csv", args.overwrite, suffixes=(".csv",)) if args.csv else None
    pairs = read_pair_list(args.pairs)
    device = _device(args.device)
    network = _load_network(args.model, device) if learned else None
    rows = []
    for number, row in enumerate(pairs, start=1):
        rows.append(_evaluate_pair(number, row, args, learned, network, device))
        _note(f"pair {number}/{len(pairs)} done ({rows[-1]['seconds']:.2f} s)")
    rows.append(_mean_row(rows))
    print(f"{args.method} on {len(pairs)} pair(s) from {args.pairs}:")
    print(_evaluation_table(rows))
    if out is not None:
        _write_csv(rows, out)
        print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------
# regedu demo
# ---------------------------------------------------------------------------


def _demo_pair() -> dict[str, torch.Tensor]:
    """The MNI axial slice (moving) and a synthetic subject made from it (fixed), with labels."""
    from .data import brain_slice, synth_subject

    brain = brain_slice()
    subject = synth_subject(brain.image, brain.labels, seed=DEMO_SEED)
    return {"moving": brain.image, "fixed": subject.image, "moving_labels": brain.labels,
            "fixed_labels": subject.labels}


def _demo_figure(pair: dict, results: dict, before: float):
    """One row per method: warped image, warped labels on the fixed image, grid, Jacobian."""
    from . import viz

    fig, axes = viz.new_figure(len(results), 5)
    view = {"orientation": True}
    firsts = [("moving: MNI slice", pair["moving"]), ("fixed: synthetic subject", pair["fixed"])]
    for row, (name, result) in enumerate(results.items()):
        title, image = firsts[row % 2]
        viz.show_image(image, ax=axes[row, 0], title=title, **view)
        viz.show_image(result.warped, ax=axes[row, 1], title=f"warped: {name}", **view)
        dice = _mean_dice(result.warped_labels, pair["fixed_labels"])
        viz.overlay(pair["fixed"], result.warped_labels, style="contour", ax=axes[row, 2], **view,
                    title=f"{name}: labels on fixed\nDice {dice:.3f}")
        viz.deformation_grid(result.disp, 4, ax=axes[row, 3], image=pair["moving"], **view,
                             title=f"{name}: grid on moving")
        viz.jacobian_map(result.disp, ax=axes[row, 4], **view)
    fig.suptitle(f"regedu demo: MNI slice onto a synthetic subject (mean Dice before {before:.3f})")
    return fig


def _run_demo(args) -> int:
    from .api import register
    from .models import pretrained

    out = _output(args.out, "--out", args.overwrite, suffixes=FIGURE_SUFFIXES)
    if _check_method(args.method, None):
        raise CommandError(f"--method chooses the classical method the demo compares with VoxelMorph; "
                           f"{args.method} is learned.")
    device = _device(args.device)
    network = pretrained("voxelmorph2d_brain", device=device)  # fails at once if the weights are missing
    pair = _demo_pair()
    before = _mean_dice(pair["moving_labels"], pair["fixed_labels"])
    results = {}
    for name, options in ((args.method, {"progress": None}), ("voxelmorph", {"model": network})):
        result = register(pair["moving"], pair["fixed"], method=name, moving_labels=pair["moving_labels"],
                          device=device, **options)
        results[name] = result
        result.disp, result.warped = result.disp.cpu(), result.warped.cpu()
        result.warped_labels = result.warped_labels.cpu()
    rows = [[name, _format(before), _format(_mean_dice(r.warped_labels, pair["fixed_labels"])),
             _format(_folding_percent(r.disp)), f"{r.seconds:.3f}"] for name, r in results.items()]
    print("MNI axial slice (96 x 112, 2 mm) onto a synthetic subject, tissue labels:")
    print(_table(["method", "Dice before", "Dice after", "folding %", "seconds"], rows))
    _demo_figure(pair, results, before).savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------

DISP_HELP = (
    "write the displacement field here (.nii or .nii.gz), on the fixed grid with its affine. Pull "
    "convention: warped(x) = moving(x + disp(x)). Layout with --disp-format voxels (default): a 4D "
    "array (X, Y, Z, ndim), Z = 1 for 2D, of displacements in voxels along the axes of the fixed "
    "grid in RAS order, intent name 'regedu-voxels' (VoxelMorph's layout; read it back with "
    "regedu.data.load_disp); itk: 5D (X, Y, Z, 1, 3) vectors in LPS mm, intent 'vector', what "
    "antsApplyTransforms -t reads (3D only); mm: 5D (X, Y, Z, 1, 3) vectors in RAS mm, intent "
    "'displacement vector' (3D only)"
)


def _add_common(parser, method: bool = True) -> None:
    if method:
        parser.add_argument("--method", default="default", metavar="NAME",
                            help="any name in regedu.api.METHODS: classical (default = affine+bspline, "
                                 "affine, dense, svf, bspline, demons, affine+demons, ...) or learned "
                                 "(voxelmorph, voxelmorph+io)")
        parser.add_argument("--model", metavar="MODEL.pt", default=None,
                            help="checkpoint for a learned method (from `regedu train`); default the "
                                 "shipped 2D brain VoxelMorph")
        parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                            help="an option of the method, repeatable, e.g. --option iterations=100 "
                                 "--option weight=0.5 (see the method's docstring)")
        parser.add_argument("--no-normalize", action="store_true",
                            help="register the intensities as they are (default: clip at the 1st and 99th "
                                 "percentile and rescale to [0, 1], as the networks were trained)")
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist")


def _add_train(commands) -> None:
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
    parser.add_argument("--model", default="voxelmorph", choices=MODELS, help="network (default voxelmorph)")
    parser.add_argument("--loss", choices=list(LOSSES), default=None,
                        help="ncc, mse, mi: unsupervised similarity + weight x diffusion; supervised: "
                             "end-point error to the true field (synthetic data); dice: Dice of the warped "
                             "labels + weight x diffusion; synthmorph: the same, on synthmorph data "
                             "(default: synthmorph for synthmorph data, else ncc)")
    parser.add_argument("--weight", type=lambda t: _number(t, 0.0, False), default=None,
                        help="regulariser weight (default 0.01 for mse, else 1)")
    parser.add_argument("--steps", type=_positive_int, default=None,
                        help="optimiser steps (default 1000, or no step limit with --minutes)")
    parser.add_argument("--minutes", type=_minutes, default=None, help="time budget in minutes")
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="pairs per step (default 8)")
    parser.add_argument("--lr", type=lambda t: _number(t, 0.0, True), default=1e-3,
                        help="learning rate (default 0.001)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="learning rate over the run: constant keeps --lr (default); cosine lowers it "
                             "to 0 by the end of --steps or --minutes, whichever comes first (with --lr "
                             "0.002 --batch-size 4: the recipe of benchmarks/learned.py)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--checkpoint-every", type=_positive_int, default=200,
                        help="save every N steps (default 200)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--out", "-o", required=True, metavar="MODEL.pt", help="checkpoint to write")
    _add_common(parser, method=False)
    parser.set_defaults(run=_run_train)


def _add_register(commands) -> None:
    parser = commands.add_parser(
        "register", help="register two NIfTI images", description=(
            "Register MOVING onto FIXED (NIfTI, 2D or 3D) with any method and write the warped image, "
            "and optionally the displacement and the warped labels, on the fixed grid with the fixed "
            "image's affine. The images are loaded in RAS order (regedu.data.load_nifti) and checked "
            "with regedu.data.check_pair first, whose warnings are printed; if their shapes or voxel "
            "sizes differ, the moving image is resampled onto the fixed grid through the affines, as "
            "check_pair suggests. Outputs lie on the fixed grid in RAS voxel order (the fixed file's "
            "own order when it is RAS already, as most are)."))
    parser.add_argument("moving", help="moving image (.nii or .nii.gz)")
    parser.add_argument("fixed", help="fixed image (.nii or .nii.gz)")
    parser.add_argument("-o", "--out", required=True, metavar="WARPED.nii.gz",
                        help="the moving image, with its own intensities, warped onto the fixed grid")
    parser.add_argument("--disp", metavar="DISP.nii.gz", help=DISP_HELP)
    parser.add_argument("--disp-format", choices=("voxels", "itk", "mm"), default="voxels",
                        help="layout of --disp (default voxels)")
    parser.add_argument("--labels", metavar="MOVING_LABELS.nii.gz", help="label map of the moving image")
    parser.add_argument("--labels-out", metavar="WARPED_LABELS.nii.gz",
                        help="where the warped --labels go (nearest neighbour, int32)")
    parser.add_argument("--fixed-labels", metavar="FIXED_LABELS.nii.gz",
                        help="label map of the fixed image: prints the mean Dice before and after")
    _add_common(parser)
    parser.set_defaults(run=_run_register)


def _add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate", help="evaluate a method on a list of labelled pairs", description=(
            "Register every pair of a CSV list (columns moving,fixed,moving_labels,fixed_labels; "
            "relative paths start at the CSV's folder; label columns may be empty) and print mean "
            "Dice before and after, HD95 (mm, mean over labels, inf when a label vanishes), folding "
            "(% of voxels with det J <= 0) and seconds per pair, with a mean row."))
    parser.add_argument("pairs", metavar="PAIRS.csv", help="the pair list")
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    _add_common(parser)
    parser.set_defaults(run=_run_evaluate)


def _add_demo(commands) -> None:
    parser = commands.add_parser(
        "demo", help="register a built-in brain pair, classical vs learned", description=(
            "Register the MNI axial slice that ships with regedu onto a synthetic subject made from it, "
            "with a classical method and with the shipped pre-trained VoxelMorph; print Dice before "
            "and after and seconds for both, and write a figure. Works offline."))
    parser.add_argument("--out", "-o", default="regedu_demo.png", metavar="FIGURE.png",
                        help="figure to write (default regedu_demo.png; .png, .pdf, .svg or .jpg)")
    parser.add_argument("--method", default="default", metavar="NAME",
                        help="the classical method to compare (default: default = affine+bspline)")
    _add_common(parser, method=False)
    parser.set_defaults(run=_run_demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``regedu`` command, with its four subcommands."""
    from . import __version__

    parser = _Parser(prog=PROG, description=(
        "regedu: medical image registration, classical and learned, for teaching and experiments."),
        epilog="Run `regedu COMMAND --help` for the options of each command. Errors print one line; "
               "set REGEDU_DEBUG=1 for the full traceback.")
    parser.add_argument("--version", action="version", version=f"regedu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for add in (_add_train, _add_register, _add_evaluate, _add_demo):
        add(commands)
    return parser


USER_ERRORS = (OSError, ValueError, TypeError, RuntimeError, FloatingPointError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``regedu`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    0: success; 2: a usage or input error (one line on stderr); 130: interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, *USER_ERRORS) as error:
        if os.environ.get("REGEDU_DEBUG") and not isinstance(error, CommandError):
            raise
        print(f"{PROG}: error: {_one_line(error) or type(error).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
