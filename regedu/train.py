"""One training loop for every registration network and every kind of supervision.

A model is any ``torch.nn.Module`` whose ``forward(moving, fixed)`` returns ``(warped, disp)``
(regedu.models all do). A dataset yields dicts with ``moving`` and ``fixed`` and, depending on
the supervision, ``moving_labels``/``fixed_labels`` or the true ``disp`` (regedu.data's datasets).

Supervision (``TrainConfig.supervision``):

* ``"unsupervised"``: ``similarity(fixed, warped) + weight * regulariser(disp)``, the terms named
  in the one registry of :mod:`regedu.losses` (:data:`~regedu.losses.SIMILARITIES`,
  :data:`~regedu.losses.REGULARISERS`);
* ``"supervised"``: end-point error against the true field (synthetic pairs);
* ``"labels"``: Dice loss between the fixed labels and the warped moving labels
  (weak supervision) ``+ weight * regulariser``;
* ``"synthmorph"``: the squared difference of the warped and fixed one-hot label maps
  (:func:`regedu.losses.label_mse`) ``+ weight * regulariser``, meant for images synthesised from
  random label maps (:class:`regedu.data.SynthMorphPairs`), which makes the model contrast-invariant.

Checkpoints are plain dicts of tensors and JSON strings, written atomically, and loaded with
``torch.load(weights_only=True)``: a checkpoint can never run code. Their reading and writing lives
in :mod:`regedu.models.checkpoint`; :func:`save_checkpoint`, :func:`load_checkpoint` and
:func:`load_model` are the same functions, re-exported here.

Distributed: run the same script under ``torchrun --nproc_per_node=N``; the loop notices
``WORLD_SIZE > 1``, joins the process group (NCCL on GPUs, gloo on CPUs), wraps the model in
``DistributedDataParallel`` and gives each process its share of every batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from . import kernels, losses, metrics
from .checks import check_choice, check_image, check_number, check_positive_int
from .classical.dense import register_dense
from .models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_model, load_state, save_checkpoint
from .result import RegistrationResult

__all__ = ["TrainConfig", "History", "train", "learning_rate", "evaluate", "instance_optimize",
           "save_checkpoint", "load_checkpoint", "load_model", "compute_loss", "CHECKPOINT_FORMAT"]

SUPERVISIONS = ("unsupervised", "supervised", "labels", "synthmorph")
SCHEDULES = ("constant", "cosine")
SIMILARITIES = losses.SIMILARITIES  # the one registry of regedu.losses, under its old names here
REGULARISERS = losses.REGULARISERS


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints as JSON).

    ``similarity`` and ``regulariser`` are names from :data:`regedu.losses.SIMILARITIES` and
    :data:`regedu.losses.REGULARISERS` (each term with its default options).
    ``steps`` and ``minutes`` both stop training, whichever comes first (``minutes=None``: no time
    limit). ``weight`` multiplies the regulariser (unused by ``"supervised"``). ``amp`` is automatic
    mixed precision (bfloat16), used on GPUs only, ``None`` meaning "on when the model is on a GPU".

    ``schedule`` shapes the learning rate: ``"constant"`` keeps ``lr``; ``"cosine"`` lowers it from
    ``lr`` to 0 along half a cosine over the run, where "the run" is whichever budget runs out first
    (the fraction of ``steps`` done or of ``minutes`` spent). Ending at a small learning rate lets the
    weights settle instead of jittering around the minimum, and so tolerates a higher peak ``lr``:
    ``benchmarks/learned.py`` trains with 2e-3 and batches of 4 this way.
    """

    supervision: str = "unsupervised"
    similarity: str = "ncc"
    regulariser: str = "diffusion"
    weight: float = 1.0
    lr: float = 1e-3
    schedule: str = "constant"
    batch_size: int = 8
    steps: int = 1000
    minutes: float | None = None
    seed: int = 0
    validate_every: int = 100
    checkpoint_every: int = 200
    num_workers: int = 0
    amp: bool | None = None

    def __post_init__(self):
        check_choice(self.supervision, "supervision", SUPERVISIONS)
        check_choice(self.similarity, "similarity", list(losses.SIMILARITIES))  # names only: saved as JSON
        check_choice(self.regulariser, "regulariser", list(losses.REGULARISERS))
        check_choice(self.schedule, "schedule", SCHEDULES)
        for name in ("steps", "batch_size", "validate_every", "checkpoint_every"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.num_workers, "num_workers", minimum=0)
        if self.minutes is not None:
            check_number(self.minutes, "minutes", strict=True,
                         hint="It is a time budget: use minutes=None to stop by the step count alone.")
        check_number(self.weight, "weight")
        check_number(self.lr, "lr", strict=True)


@dataclasses.dataclass
class History:
    """What a run produced: loss per step, validation Dice at intervals, seconds spent."""

    step: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)
    validation: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------
# the loss of one batch
# ---------------------------------------------------------------------------


def _label_values(*label_maps: torch.Tensor) -> torch.Tensor:
    return torch.unique(torch.cat([m.flatten() for m in label_maps]))


def _loss_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype a loss of ``tensors`` is computed in: their common dtype (float64 stays float64),
    except float32 for float16 and bfloat16, the outputs of mixed precision (``autocast``), whose
    3 significant digits cannot hold a sum over many voxels."""
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def compute_loss(model: torch.nn.Module, batch: dict, config: TrainConfig) -> torch.Tensor:
    """Loss of one batch under ``config.supervision`` (scalar tensor to minimise), in the common dtype
    of the batch and the model's outputs (float64 stays float64), or float32 when that is float16 or
    bfloat16 (mixed precision)."""
    moving, fixed = batch["moving"], batch["fixed"]
    warped, disp = model(moving, fixed)[:2]
    regulariser = losses.regulariser(config.regulariser)
    if config.supervision == "unsupervised":
        dtype = _loss_dtype(fixed, warped, disp)
        similarity = losses.similarity(config.similarity)(fixed.to(dtype), warped.to(dtype))
        return similarity + config.weight * regulariser(disp.to(dtype))
    if config.supervision == "supervised":
        _require(batch, "disp", config.supervision)
        dtype = _loss_dtype(disp, batch["disp"])
        return losses.endpoint_error(disp.to(dtype), batch["disp"].to(dtype))
    _require(batch, "moving_labels", config.supervision)
    _require(batch, "fixed_labels", config.supervision)
    disp = disp.to(_loss_dtype(disp))
    values = _label_values(batch["moving_labels"], batch["fixed_labels"])
    moving_onehot = kernels.one_hot(batch["moving_labels"], values, disp.dtype)
    fixed_onehot = kernels.one_hot(batch["fixed_labels"], values, disp.dtype)
    warped_onehot = kernels.resample(moving_onehot, disp)
    if config.supervision == "synthmorph":
        # every voxel of every label counts the same; with many random labels it starts learning far
        # sooner than a mean of per-label Dice scores (VoxelMorph's SynthMorph training made that switch)
        return losses.label_mse(fixed_onehot, warped_onehot) + config.weight * regulariser(disp)
    # leave the background channel out: it dominates the volume and says little
    dice = losses.dice_loss(fixed_onehot[:, 1:], warped_onehot[:, 1:])
    return dice + config.weight * regulariser(disp)


def _require(batch: dict, key: str, supervision: str) -> None:
    if key not in batch:
        raise ValueError(
            f"supervision={supervision!r} needs `{key}` in every batch, but the dataset gives only "
            f"{sorted(batch)}. Use a dataset that provides it (e.g. regedu.data.TemplatePairs) or another "
            f"supervision."
        )


# ---------------------------------------------------------------------------
# seeding, devices, distributed
# ---------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and GPU) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _distributed() -> tuple[int, int]:
    """(rank, world size), joining the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()}


def _batch_indices(length: int, batch_size: int, seed: int, start_step: int, rank: int, world: int):
    """Dataset indices of every batch from ``start_step`` on, forever.

    The data are a stream of shuffled epochs (epoch ``e`` is the permutation drawn from
    ``seed + e``), cut into batches of ``batch_size``; a resumed run starts exactly where the
    interrupted one stopped, without loading the batches it skips. Under DDP, process ``rank``
    takes every ``world``-th item of each batch, so the processes share one batch.
    """
    position = start_step * batch_size
    epoch, offset = divmod(position, length)
    batch: list[int] = []
    while True:
        order = torch.randperm(length, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        for index in order[offset:]:
            batch.append(index)
            if len(batch) == batch_size:
                yield batch[rank::world]
                batch = []
        epoch, offset = epoch + 1, 0


def _loader(dataset: Dataset, config: TrainConfig, start_step: int, rank: int, world: int) -> DataLoader:
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty: give it at least one pair.")
    if config.batch_size % world:
        raise ValueError(f"`batch_size` {config.batch_size} must be divisible by the {world} processes.")
    batches = _batch_indices(len(dataset), config.batch_size, config.seed, start_step, rank, world)
    return DataLoader(dataset, batch_sampler=batches, num_workers=config.num_workers)


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, batch_size: int = 8,
             max_items: int | None = None) -> dict:
    """Mean Dice over labels and pairs, mean folding fraction, seconds per pair, on a labelled dataset."""
    was_training = model.training
    model.eval()
    device = _model_device(model)
    count = len(dataset) if max_items is None else min(max_items, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(count))
    dice_values, folding, seconds = [], [], 0.0
    for batch in DataLoader(subset, batch_size=batch_size):
        batch = _to_device(batch, device)
        start = time.perf_counter()
        _, disp = model(batch["moving"], batch["fixed"])[:2]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
        dice_values.append(metrics.mean_dice_after_warp(batch["moving_labels"], batch["fixed_labels"],
                                                        disp.float()))
        folding.append(metrics.folding_fraction(disp.float()))
    model.train(was_training)
    return {"dice": float(torch.cat(dice_values).mean()), "folding": float(torch.cat(folding).mean()),
            "seconds_per_pair": seconds / max(count, 1)}


def train(model: torch.nn.Module, dataset: Dataset, config: TrainConfig | None = None, *,
          validation: Dataset | None = None, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True,
          callback: Callable[[int, float], None] | None = None, until: int | None = None,
          **options) -> History:
    """Train ``model`` on ``dataset``; returns the :class:`History`.

    Args:
        model: any module with ``forward(moving, fixed) -> (warped, disp, ...)``; trained on its
            current device.
        dataset: yields dicts (see the module docstring).
        config: a :class:`TrainConfig`; keyword ``options`` override its fields
            (``train(model, ds, steps=200, weight=0.5)``).
        validation: a labelled dataset; mean Dice is evaluated every ``config.validate_every`` steps.
        checkpoint: file to save to every ``config.checkpoint_every`` steps and at the end.
        resume: continue from ``checkpoint`` if it exists (model, optimiser, step, history).
        progress: show a tqdm progress bar with the current loss.
        callback: ``callback(step, loss)`` after every step (live plots in notebooks).
        until: stop after this step although ``config.steps`` is larger, to train a long run in
            pieces (``resume=True`` continues it): the learning-rate schedule still spans
            ``config.steps``, so the pieces together are the same run as one call.
    """
    config = dataclasses.replace(config or TrainConfig(), **options)
    rank, world = _distributed()
    seed_everything(config.seed + rank)
    device = _model_device(model)
    use_amp = device.type == "cuda" and (config.amp is None or config.amp)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = History()
    if resume and checkpoint is not None and Path(checkpoint).exists():
        history = _resume(checkpoint, model, optimizer)
    network = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    batches = iter(_loader(dataset, config, history.step, rank, world))
    bar = _progress_bar(config, history, enabled=progress and rank == 0)
    budget = 60 * config.minutes if config.minutes else math.inf
    start = time.monotonic() - history.seconds
    last = config.steps if until is None else min(int(until), config.steps)
    model.train()
    while history.step < last:
        elapsed = _agreed_seconds(time.monotonic() - start, world, device) if config.minutes else 0.0
        if elapsed >= budget:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, history.step, elapsed)
        batch = _to_device(next(batches), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = compute_loss(network, batch, config)
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"the training loss became {float(loss.detach())} at step {history.step}: lower the learning "
                f"rate (now {config.lr}) or the regulariser weight, and check the inputs for NaNs."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.step += 1
        history.losses.append(float(loss.detach()))
        history.seconds = time.monotonic() - start
        _after_step(model, optimizer, config, history, validation, checkpoint, bar, callback, rank)
    if bar is not None:
        bar.close()
    if checkpoint is not None and rank == 0:
        save_checkpoint(checkpoint, model, optimizer, config, history)
    return history


def learning_rate(config: TrainConfig, step: int, seconds: float) -> float:
    """The learning rate of ``step`` after ``seconds`` of training, under ``config.schedule``."""
    if config.schedule == "constant":
        return config.lr
    done = step / config.steps
    if config.minutes:
        done = max(done, seconds / (60 * config.minutes))
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


def _agreed_seconds(seconds: float, world: int, device: torch.device) -> float:
    """Seconds of training that every process agrees on (the largest of their clocks).

    Under DDP each process reads its own clock; deciding "time is up" or the learning rate from it
    would let one process stop a step early (the others then wait for it forever) or give the
    replicas different learning rates (their weights drift apart).
    """
    if world == 1:
        return seconds
    clock = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(clock, op=dist.ReduceOp.MAX)
    return float(clock)


def _after_step(model, optimizer, config, history, validation, checkpoint, bar, callback, rank) -> None:
    loss = history.losses[-1]
    if validation is not None and rank == 0 and history.step % config.validate_every == 0:
        history.validation.append((history.step, evaluate(model, validation)["dice"]))
    if checkpoint is not None and rank == 0 and history.step % config.checkpoint_every == 0:
        save_checkpoint(checkpoint, model, optimizer, config, history)
    if bar is not None:
        postfix = {"loss": f"{loss:.4f}"}
        if history.validation:
            postfix["val dice"] = f"{history.validation[-1][1]:.3f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
    if callback is not None:
        callback(history.step, loss)


def _resume(path, model, optimizer) -> History:
    payload = load_checkpoint(path)
    load_state(model, payload["model"], path)
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"])
    saved = payload["history"]
    return History(step=saved["step"], losses=list(saved["losses"]),
                   validation=[tuple(v) for v in saved["validation"]], seconds=saved["seconds"])


def _progress_bar(config: TrainConfig, history: History, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.steps, initial=history.step, desc="training", unit="step", dynamic_ncols=True)


# ---------------------------------------------------------------------------
# test-time instance optimisation
# ---------------------------------------------------------------------------


def instance_optimize(model: torch.nn.Module, moving: torch.Tensor, fixed: torch.Tensor, steps: int = 50,
                      lr: float = 0.1, similarity: str = "ncc", weight: float = 1.0,
                      regulariser: str = "diffusion", *, callback: Callable | None = None,
                      progress: bool | None = False) -> RegistrationResult:
    """Refine a network's field on one pair: :func:`~regedu.classical.register_dense` started from it.

    The network's prediction is the starting displacement (``initial_disp``) of a one-level
    :func:`~regedu.classical.register_dense` of ``steps`` Adam iterations on
    ``similarity + weight * regulariser`` over the displacement itself (voxels). It is the classical
    loop, with its checks: a bad ``lr`` or name is refused, a diverging run stops with a
    ``FloatingPointError`` that suggests a smaller ``lr``, the loss of every step is recorded and
    ``callback`` sees it. As there, the intensities are rescaled to ``[0, 1]`` for the loss. The step
    size stays ``lr`` (``lr_schedule="constant"``): from a network's field, a few steps at full size
    go further than a decaying schedule (about 0.01 more Dice on the shipped 2D model's pairs).

    Args:
        model: a network ``forward(moving, fixed) -> (warped, disp, ...)`` on the images' device and
            dtype (e.g. a float64 model for float64 images).
        moving, fixed: ``(B, C, *spatial)`` floating images.
        steps: Adam iterations; 0 returns the network's field as it is.
        lr: the step size, in voxels.
        similarity, regulariser: names from :data:`regedu.losses.SIMILARITIES` and
            :data:`regedu.losses.REGULARISERS` (or callables, as :func:`~regedu.classical.register_dense`).
        weight: the regulariser's weight (>= 0).
        callback: ``callback(level, iteration, loss)`` after every step (``level`` is 0).
        progress: a progress bar: ``True``, ``False`` (the default) or ``None`` (only past 2 seconds).

    Returns:
        :class:`~regedu.result.RegistrationResult` in the images' dtype, on their device (``history``:
        the loss of every step, one level; ``method``: ``"instance_optimize"``), which unpacks like
        the model's output: ``warped, disp = instance_optimize(...)``.
    """
    ndim = check_image(moving, "moving")
    check_image(fixed, "fixed", ndim=ndim)
    steps = check_positive_int(steps, "steps", minimum=0)
    start = time.perf_counter()
    with torch.no_grad():
        disp = model(moving, fixed)[1].detach()
    if steps == 0:  # nothing to optimise; the names are checked all the same
        losses.similarity(similarity)
        losses.regulariser(regulariser)
        disp = disp.to(moving.dtype)
        result = RegistrationResult(warped=kernels.resample(moving, disp), disp=disp, history=[[]])
    else:
        result = register_dense(moving, fixed, similarity=similarity, regulariser=regulariser, weight=weight,
                                levels=1, iterations=steps, lr=lr, lr_schedule="constant", initial_disp=disp,
                                callback=callback, progress=progress)
    result.seconds = time.perf_counter() - start
    result.method = "instance_optimize"
    return result
