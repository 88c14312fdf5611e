"""The ``regedu`` command (also ``python -m regedu``): train, register, evaluate, demo.

Each subcommand is a thin layer over the package: ``train`` over :func:`regedu.train.train`,
``register`` and ``evaluate`` over :func:`regedu.register` (every method in
:data:`regedu.api.METHODS`, classical or learned) with :func:`regedu.data.check_pair` first,
``demo`` over the offline MNI slice and :mod:`regedu.viz`.

Mistakes a user can make (a missing file, a bad option, a shape mismatch, a wrong checkpoint)
end with one line ``regedu: error: ...`` on stderr and exit status 2, never a traceback
(set ``REGEDU_DEBUG=1`` to see the traceback anyway). Results go to stdout; warnings, notes and
progress bars to stderr. No file is overwritten unless ``--overwrite`` (or ``--resume``) says so.

Outputs (:mod:`regedu.outputs`) are claimed before any work, with a lock file beside each (so a
read-only folder, or a second run writing the same file, stops the run at once), and written together
at the end through hidden temporary files: a run leaves all its outputs or none. Inputs are checked up
front as far as headers allow (sizes against the files and against memory, :mod:`regedu.memory`).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
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


def _claim(paths: dict[str, Path], overwrite: bool):
    """Claim checked output paths before any work (:class:`regedu.outputs.OutputSet`): a lock beside
    each (atomic, so two runs cannot both write it; creating it proves the folder is writable) and
    stale temporaries of killed runs removed. ``outputs[option]`` is where to write; ``commit()``
    renames all at once; :func:`main` releases what a failed run leaves."""
    from .outputs import OutputSet

    return OutputSet(paths, overwrite).claim()


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
    from .data import BrainSlicePairs, LargeDeformationPairs, SynthMorphPairs, TemplatePairs

    where = device if device.type == "cuda" else None
    if name == "brain2d":  # every level of the cerebrum, small to large deformations, with or without a head
        return BrainSlicePairs(length, seed=seed, device=where)
    if name == "brain3d":
        return TemplatePairs(length, mode="subject_to_subject", ndim=3, seed=seed, device=where)
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
    _claim({"--out": out}, overwrite=args.overwrite or args.resume)  # locked (and writable) until the end
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

    ``moving`` and ``fixed`` are ``(1, 1, *spatial)`` float32 on the fixed grid, normalised to
    [0, 1] unless asked otherwise (what the method registers); ``moving_labels`` are the moving
    labels on the fixed grid (int64, or ``None``), ``fixed_labels`` the fixed ones; ``affine`` and
    ``spacing`` describe the fixed grid (RAS, mm).

    ``moving_original`` is the moving image with its own intensities on its *own* grid, whose
    voxel-to-world matrix is ``moving_affine``, and ``moving_labels_original`` its labels there:
    the outputs are made from them by one interpolation (:func:`warp_moving`). When that grid is
    not the fixed grid, ``moving`` and ``moving_labels`` were resampled onto it through the headers.
    """

    moving: torch.Tensor
    fixed: torch.Tensor
    moving_original: torch.Tensor
    moving_labels: torch.Tensor | None
    fixed_labels: torch.Tensor | None
    affine: np.ndarray
    spacing: tuple[float, ...]
    moving_affine: np.ndarray
    moving_labels_original: torch.Tensor | None = None


def _read_nifti(loader: Callable, path, what: str):
    """``loader(path)``; a header without a usable affine gets the fixes a command-line user has."""
    from .data.io import DegenerateAffineError

    try:
        return loader(path)
    except DegenerateAffineError:
        raise CommandError(
            f"the {what} {path} has a header whose voxel-to-world affine is degenerate (e.g. an all-zero "
            f"sform), so regedu cannot tell where its voxels are. Repair the header, then rerun: with FSL, "
            f"`fslorient -copyqform2sform {path}` if its qform is valid, or `fslcpgeom REFERENCE {path}` to "
            f"copy the geometry of the image it was made from."
        ) from None


def _load_image(path, what: str):
    from .data import load_nifti

    volume = _read_nifti(load_nifti, path, f"{what} image")
    image = volume.image
    if not bool(torch.isfinite(image).all()):
        bad = int((~torch.isfinite(image)).sum())
        raise CommandError(f"the {what} image {path} has {bad} NaN or infinite voxels; registration needs "
                           f"finite intensities: repair the file (e.g. set those voxels to 0).")
    low, high = float(image.min()), float(image.max())
    if low == high:
        raise CommandError(f"the {what} image {path} has the same value ({low:g}) at every voxel: there is "
                           f"nothing to align. Check the file: an empty export, or the wrong volume or file.")
    return volume


def _load_label_map(path, what: str, grid: torch.Tensor, image_path) -> torch.Tensor | None:
    from .data import load_labels

    if path is None:
        return None
    labels = _read_nifti(load_labels, path, f"{what} labels").image
    if labels.shape[2:] != grid.shape[2:]:
        raise CommandError(
            f"the {what} labels {path} have shape {tuple(labels.shape[2:])} but their image {image_path} "
            f"has {tuple(grid.shape[2:])}: a label map must lie on its image's grid."
        )
    _check_label_count(labels, path, what)
    return labels


def _check_label_count(labels: torch.Tensor, path, what: str) -> None:
    """Refuse a "label map" with more distinct values than any atlas has (an image saved as integers):
    per-label metrics (HD95) would run for hours on it."""
    from .data.check import MAX_LABELS

    count = int(torch.unique(labels).numel())
    if count > MAX_LABELS:
        raise CommandError(
            f"the {what} labels {path} hold {count} distinct values, more than the {MAX_LABELS} an "
            f"anatomical label map has: this looks like an image (or numbered instances), not a label map. "
            f"Give the label map of the {what} image (e.g. a segmentation with one number per structure)."
        )


def _check(pair: Pair, method: str | None):
    from .data import check_pair

    # on the fixed grid for both, as registered; factor=1: the networks pad to their own factor
    return check_pair(pair.moving, pair.fixed, moving_labels=pair.moving_labels,
                      fixed_labels=pair.fixed_labels, moving_affine=pair.affine, fixed_affine=pair.affine,
                      factor=1, method=method, interface="cli", verbose=False)


def load_pair(moving_path, fixed_path, moving_labels_path=None, fixed_labels_path=None,
              normalize: bool = True, warn: Callable[[str], None] = _warn, method: str | None = None) -> Pair:
    """Load, normalise and check a pair for ``method``. When the two headers do not put voxel ``x``
    at the same place, the moving image (and its labels) is resampled onto the fixed grid through the
    headers for the registration, and a warning says so; the originals are kept for the outputs
    (:func:`warp_moving`). Warnings go to ``warn``, in the command's terms."""
    from .data import normalize_intensity, same_grid

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
                fixed_volume.spacing, moving_volume.affine, moving_labels_original=moving_labels)
    if not same_grid(moving_volume.affine, original.shape[2:], pair.affine, fixed.shape[2:]):
        warn(_header_warning(moving_volume, fixed_volume, moving_path, fixed_path))
        _resample_onto_fixed(pair)
    for warning in _check(pair, method).warnings:
        warn(warning)
    return pair


def _header_warning(moving_volume, fixed_volume, moving_path, fixed_path) -> str:
    """What differs between the two grids, and what the command does about it."""
    from .data import grid_offset

    shapes = tuple(moving_volume.image.shape[2:]), tuple(fixed_volume.image.shape[2:])
    spacings = [tuple(round(s, 3) for s in volume.spacing) for volume in (moving_volume, fixed_volume)]
    offset = grid_offset(moving_volume.affine, fixed_volume.affine, shapes[1])
    return (f"the headers of {moving_path} and {fixed_path} put their voxels in different places "
            f"(shapes {shapes[0]} and {shapes[1]}, voxel sizes {spacings[0]} and {spacings[1]} mm; voxel x "
            f"of one lies up to {offset:.2f} mm from voxel x of the other): the moving image is registered "
            f"as its header places it in the world, like ITK and ANTs do. If a header is wrong, repair it "
            f"first.")


def _resample_onto_fixed(pair: Pair) -> None:
    """Put the normalised moving image and its labels on the fixed grid for the registration, in place;
    the originals stay on their own grid for the outputs."""
    from .data import resample_like

    shape = tuple(pair.fixed.shape[2:])
    pair.moving = resample_like(pair.moving, pair.moving_affine, shape, pair.affine)
    if pair.moving_labels is not None:
        pair.moving_labels = resample_like(pair.moving_labels, pair.moving_affine, shape, pair.affine)
    _note(f"resampled the moving image{' and its labels' if pair.moving_labels is not None else ''} onto "
          f"the fixed grid {shape} through the NIfTI affines for the registration; the outputs read the "
          f"original moving file once, through the field and the headers together.")


def warp_moving(pair: Pair, disp: torch.Tensor, labels: bool = False) -> torch.Tensor | None:
    """The original moving image (or, with ``labels``, its label map) carried onto the fixed grid by
    ``disp`` ``(1, ndim, *fixed)`` (voxels of the fixed grid), with one interpolation.

    Fixed voxel ``x`` reads the moving file at the world point of ``x + disp(x)`` on the fixed grid,
    through the moving image's own header (:func:`regedu.data.resample_like` with ``disp=``): what
    ITK and ANTs do with the field that ``--disp`` writes, boundary included (``padding="itk"``:
    the edge value up to half a voxel outside the moving image, 0 farther out). Images: linear;
    labels: nearest neighbour. ``None`` when there are no labels.
    """
    from .data import resample_like

    source = pair.moving_labels_original if labels else pair.moving_original
    if source is None:
        return None
    return resample_like(source, pair.moving_affine, tuple(pair.fixed.shape[2:]), pair.affine, disp=disp,
                         padding="itk")


# ---------------------------------------------------------------------------
# running a method
# ---------------------------------------------------------------------------


RESERVED_OPTIONS = {"device": "--device", "model": "--model", "moving_labels": "--labels",
                    "progress": None, "callback": None}  # set by the command itself


def _method_options(args) -> dict:
    """``--option`` and ``--affine-option`` as :func:`regedu.register`'s options, all checked now,
    before anything is loaded (:func:`regedu.api.check_options`)."""
    from .api import METHODS

    options, affine = dict(args.option), dict(args.affine_option)
    for key in [*options, *affine]:
        if key in RESERVED_OPTIONS:
            flag = RESERVED_OPTIONS[key]
            raise CommandError(f"{key} is set by the command itself, not by --option"
                               + (f": use {flag}." if flag else "."))
    if affine:
        if getattr(METHODS[args.method], "deformable_stage", None) is None:
            raise CommandError(f"--affine-option sets the affine stage of default and the other affine+... "
                               f"methods; --method {args.method} has none: give its options with --option.")
        options["affine_options"] = {**dict(options.get("affine_options") or {}), **affine}
    _check_options(args.method, options)
    return options


def _check_options(method: str, options: dict, shape=None) -> None:
    """:func:`regedu.api.check_options` in the command's words; ``shape`` adds the size-dependent checks."""
    from .api import check_options

    try:
        check_options(method, options, shape, interface="cli")
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from None


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
    """:func:`regedu.register` on the pair; the result on the CPU, ``warped_labels`` made from the
    original moving labels by :func:`warp_moving`."""
    from .api import DEFAULT_MODELS, register

    ndim = pair.fixed.dim() - 2
    if learned and network is None and ndim not in DEFAULT_MODELS:
        raise CommandError(f"--method {method} needs --model for {ndim}D images: regedu ships a pre-trained "
                           f"model for 2D only. Train one: `regedu train --data brain3d --out model.pt`.")
    _check_options(method, options, tuple(pair.fixed.shape[2:]))  # the checks that need the size
    extra = {"model": network} if learned else {"progress": progress}
    with _memory_advice(tuple(pair.fixed.shape[2:]), pair.fixed.shape[1], device, learned):
        result = register(pair.moving, pair.fixed, method=method, device=device, **extra, **options)
    result.disp = result.disp.cpu()
    result.warped = result.warped.cpu()
    result.warped_labels = warp_moving(pair, result.disp, labels=True)  # from the original labels, once
    return result


@contextlib.contextmanager
def _memory_advice(shape: tuple[int, ...], channels: int, device: torch.device, learned: bool):
    """Refuse up front a registration that will not fit in memory (:func:`regedu.memory.check_fits`),
    and turn an allocator failure during it into the same advice: crop or downsample, by how much."""
    from .memory import NotEnoughMemory, available_bytes, check_fits, is_out_of_memory, registration_bytes
    from .memory import not_enough_memory_message as advice

    try:
        check_fits(shape, "this pair", device, channels=channels, learned=learned)
        yield
    except NotEnoughMemory as error:
        raise CommandError(str(error)) from None
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        needed = registration_bytes(shape, channels, learned)
        raise CommandError(advice(shape, "this pair", needed, available_bytes(device), device)
                           + " (the allocator ran out of memory during the registration)") from None


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


def _register_outputs(args):
    """-o, --disp and --labels-out checked and claimed (:func:`_claim`) before any work."""
    if (args.labels is None) != (args.labels_out is None):
        raise CommandError("--labels (the moving image's label map) and --labels-out (where its warped copy "
                           "goes) come together; give both or neither.")
    outputs = {"-o": args.out, "--disp": args.disp, "--labels-out": args.labels_out}
    checked = {option: _output(path, option, args.overwrite) for option, path in outputs.items() if path}
    paths = [path.resolve() for path in checked.values()]
    if len(set(paths)) != len(paths):
        raise CommandError("two outputs name the same file: give -o, --disp and --labels-out other names.")
    return _claim(checked, args.overwrite)


def _check_disp_format(pair: Pair, disp_format: str) -> None:
    """Refuse, before the registration, a --disp-format that cannot hold this pair's field."""
    from .data.io import _check_itk_plane

    if pair.fixed.dim() == 4 and disp_format == "mm":
        raise CommandError("--disp-format mm writes 3-component vectors of 3D volumes; this pair is 2D: use "
                           "--disp-format voxels or itk.")
    if pair.fixed.dim() == 4 and disp_format == "itk":
        try:
            _check_itk_plane(pair.affine, "--disp-format itk")
        except ValueError as error:
            raise CommandError(str(error).replace("field='voxels'", "--disp-format voxels")) from None


def _run_register(args) -> int:
    from .data import save_nifti

    learned = _check_method(args.method, args.model)
    options = _method_options(args)
    outputs = _register_outputs(args)
    device = _device(args.device)
    network = _load_network(args.model, device) if learned else None
    pair = load_pair(args.moving, args.fixed, args.labels, args.fixed_labels, normalize=not args.no_normalize,
                     method=args.method)
    if "--disp" in outputs:
        _check_disp_format(pair, args.disp_format)
    result = _run_method(pair, args.method, learned, network, device, options, progress=None)
    save_nifti(warp_moving(pair, result.disp), outputs["-o"], pair.affine, overwrite=True)
    if "--disp" in outputs:
        save_nifti(result.disp, outputs["--disp"], pair.affine, overwrite=True, field=args.disp_format)
    if "--labels-out" in outputs:
        save_nifti(result.warped_labels.to(torch.int32), outputs["--labels-out"], pair.affine, overwrite=True)
    outputs.commit()  # all outputs appear together, or (on an error above) none
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
    from .data.datasets import read_csv_table

    columns, table = read_csv_table(path)  # UTF-8, with or without Excel's byte-order mark
    if "moving" not in columns or "fixed" not in columns:
        raise CommandError(f"the pair list {path} needs a header row with columns moving,fixed (and "
                           f"moving_labels,fixed_labels for Dice and HD95); it has {columns}.")
    rows = [_pair_row(row, number, path.parent) for number, row in enumerate(table, start=1)]
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
                     normalize=not args.no_normalize, warn=warn, method=args.method)
    result = _run_method(pair, args.method, learned, network, device, _method_options(args), progress=False)
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
    _method_options(args)  # every option checked before any file is read
    out = _output(args.csv, "--csv", args.overwrite, suffixes=(".csv",)) if args.csv else None
    outputs = _claim({"--csv": out}, args.overwrite) if out is not None else None
    pairs = read_pair_list(args.pairs)
    device = _device(args.device)
    _check_pair_files(pairs, args.pairs, device, learned)
    network = _load_network(args.model, device) if learned else None
    rows = _evaluate_pairs(pairs, args, learned, network, device, outputs)
    rows.append(_mean_row(rows))
    print(f"{args.method} on {len(pairs)} pair(s) from {args.pairs}:")
    print(_evaluation_table(rows))
    if outputs is not None:
        _save_rows(rows, outputs)
        print(f"wrote {out}")
    return 0


def _evaluate_pairs(pairs: list[dict], args, learned: bool, network, device, outputs) -> list[dict]:
    """One row per pair. When a pair fails, the rows done so far go to ``--csv`` before the error."""
    rows: list[dict] = []
    for number, row in enumerate(pairs, start=1):
        try:
            rows.append(_evaluate_pair(number, row, args, learned, network, device))
        except (CommandError, *USER_ERRORS) as error:
            if outputs is not None and rows:
                _save_rows(rows, outputs)
                _note(f"wrote the {len(rows)} pair(s) done before pair {number} failed to "
                      f"{outputs.paths['--csv']}.")
            raise CommandError(f"pair {number} ({row['moving'].name}, {row['fixed'].name}): "
                               f"{_one_line(error)}") from error
        _note(f"pair {number}/{len(pairs)} done ({rows[-1]['seconds']:.2f} s)")
    return rows


def _save_rows(rows: list[dict], outputs) -> None:
    """Write ``rows`` to the claimed ``--csv`` (a temporary file, renamed into place when complete)."""
    outputs.write("--csv", lambda temporary: _write_csv(rows, temporary))
    outputs.commit()


def _check_pair_files(pairs: list[dict], pair_list, device: torch.device, learned: bool) -> None:
    """Check every file of the list from its header before any pair is registered: readable NIfTI,
    one 2D or 3D image, moving and fixed of one dimensionality, labels on their image's grid, and a
    registration that fits in memory."""
    from .memory import NotEnoughMemory, check_fits

    for number, row in enumerate(pairs, start=1):
        shapes = {key: _header_shape(file, number, key, pair_list) for key, file in row.items() if file}
        if len(shapes["moving"]) != len(shapes["fixed"]):
            raise CommandError(f"pair {number} of {pair_list}: the moving image {row['moving']} is "
                               f"{len(shapes['moving'])}D but the fixed image {row['fixed']} is "
                               f"{len(shapes['fixed'])}D: register two 2D slices or two 3D volumes.")
        for key, image in (("moving_labels", "moving"), ("fixed_labels", "fixed")):
            if key in shapes and shapes[key] != shapes[image]:
                raise CommandError(f"pair {number} of {pair_list}: the {key} file {row[key]} has shape "
                                   f"{shapes[key]} but its image {row[image]} has {shapes[image]}: a label "
                                   f"map must lie on its image's grid.")
        try:
            check_fits(shapes["fixed"], f"pair {number} ({row['moving']} onto {row['fixed']})", device,
                       learned=learned)
        except NotEnoughMemory as error:
            raise CommandError(str(error)) from None


def _header_shape(file: Path, number: int, key: str, pair_list) -> tuple[int, ...]:
    """The loaded spatial shape of one file of a pair list, from its header; a clear error if unreadable."""
    from .data.io import nifti_shape

    try:
        return _read_nifti(nifti_shape, file, key)
    except (OSError, ValueError, MemoryError) as error:
        raise CommandError(f"pair {number} of {pair_list}, {key}: {_one_line(error)}") from None


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
    outputs = _claim({"--out": out}, args.overwrite)
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
    figure = _demo_figure(pair, results, before)
    outputs.write("--out", lambda temporary: figure.savefig(temporary, dpi=100))
    outputs.commit()
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
    "antsApplyTransforms -t reads (2D: (X, Y, 1, 1, 2), read as a 2D transform by ITK, for slices in "
    "the world x-y plane); mm: 5D (X, Y, Z, 1, 3) vectors in RAS mm, intent 'displacement vector' (3D "
    "only). The field moves fixed voxel x to the world point of x + disp(x), where the moving image is "
    "read through its own header, as ITK does: antsApplyTransforms -i MOVING -r FIXED -t DISP (itk) "
    "reproduces -o even when the two headers differ"
)

OPTION_HELP = (
    "an option of the method (for default and the other affine+... methods: of the deformable stage, "
    "e.g. register_bspline's), repeatable: --option iterations=100 --option spacing=4; values are Python "
    "literals, e.g. iterations=(50,50,20). The options are the keyword arguments of the method's function "
    "(regedu.classical.register_bspline, register_dense, demons, register_affine; "
    "regedu.api.register_learned_io), listed by an error if a key is unknown. Every option is checked "
    "before any file is read"
)
AFFINE_OPTION_HELP = (
    "an option of the affine stage of default and the other affine+... methods "
    "(regedu.classical.register_affine: transform, similarity, levels, iterations, lr, window, bins, init), "
    "repeatable: --affine-option levels=2 --affine-option iterations=(100,50)"
)


def _add_common(parser, method: bool = True) -> None:
    if method:
        parser.add_argument("--method", default="default", metavar="NAME",
                            help="any name in regedu.api.METHODS: classical (default = affine+bspline+dense, "
                                 "affine, dense, svf, bspline, demons, affine+demons, ...) or learned "
                                 "(voxelmorph, voxelmorph+io)")
        parser.add_argument("--model", metavar="MODEL.pt", default=None,
                            help="checkpoint for a learned method (from `regedu train`); default the "
                                 "shipped 2D brain VoxelMorph")
        parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                            help=OPTION_HELP)
        parser.add_argument("--affine-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                            help=AFFINE_OPTION_HELP)
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
    parser.add_argument("--batch-size", type=_positive_int, default=4, help="pairs per step (default 4)")
    parser.add_argument("--lr", type=lambda t: _number(t, 0.0, True), default=2e-3,
                        help="(peak) learning rate (default 0.002)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="cosine",
                        help="learning rate over the run: cosine (default) lowers it from --lr to 0 by the "
                             "end of --steps or --minutes, whichever comes first; constant keeps --lr")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that make the next synthetic pairs while the network trains "
                             "(default: 1 on a multi-core CPU, 0 on a GPU, where pairs are made on the GPU)")
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
            "image's affine. The images are loaded in RAS order (regedu.data.load_nifti). Whenever their "
            "headers put voxel x in different places (shape, voxel size, origin, rotation or flip), a "
            "warning says so and the moving image is registered as its header places it in the world, "
            "like ITK and ANTs do; the outputs read the original moving image once, through the field "
            "and the headers together (one interpolation). The pair is checked with "
            "regedu.data.check_pair first, whose warnings are printed. Every --option and "
            "--affine-option is checked before any file is read. Outputs lie on the fixed grid in RAS "
            "voxel order (the fixed file's own order when it is RAS already, as most are)."))
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
                        help="the classical method to compare (default: default = affine+bspline+dense)")
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


USER_ERRORS = (OSError, ValueError, TypeError, RuntimeError, FloatingPointError, MemoryError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``regedu`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    0: success; 2: a usage or input error (one line on stderr); 130: interrupted.
    """
    from .outputs import open_count, release_all

    claimed_before = open_count()
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
    finally:
        release_all(keep=claimed_before)  # locks and temporaries of this run's outputs; committed files stay


if __name__ == "__main__":
    sys.exit(main())
