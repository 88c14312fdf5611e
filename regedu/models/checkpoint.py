"""Checkpoints: a model, and what trained it, in one file that can never run code.

A checkpoint is a plain dict of tensors and JSON strings, written atomically (a hidden temporary
file, then a rename) and read back with ``torch.load(weights_only=True)``. It holds

* ``model_spec``: the model's class name and constructor arguments (its ``config``), so that
  :func:`load_model` rebuilds the model without the code that made it;
* ``model``: the weights; ``optimizer``: the optimiser's state (empty when not given);
* ``config`` and ``history``: plain dicts (a :class:`regedu.train.TrainConfig` and
  :class:`regedu.train.History` are stored as their fields);
* ``rng``: torch's random state, so that a resumed run draws what the interrupted one would have.

This module needs nothing from :mod:`regedu.train`, which re-exports its functions, so that
:mod:`regedu.models` (the shipped models, :func:`regedu.models.pretrained`) can load a checkpoint
without importing the training loop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import torch

from .affine import AffineNet, Cascade
from .flips import FlipAveraged
from .light import LightVoxelMorph
from .pyramid import PyramidNet
from .unet import UNet
from .voxelmorph import FlowNet, VoxelMorph

__all__ = ["CHECKPOINT_FORMAT", "MODEL_CLASSES", "TEST_TIME_WRAPPERS", "save_checkpoint", "load_checkpoint",
           "load_model", "load_state", "model_spec", "checkpoint_step", "check_same_model"]

CHECKPOINT_FORMAT = 1
MODEL_CLASSES = {cls.__name__: cls for cls in (VoxelMorph, LightVoxelMorph, PyramidNet, AffineNet, Cascade,
                                                UNet, FlowNet)}  # what a checkpoint can rebuild, by name
# test-time wrappers of a trained network, with no weights of their own: checkpoint the network they wrap
TEST_TIME_WRAPPERS = {cls.__name__: cls for cls in (FlipAveraged,)}


def model_spec(model: torch.nn.Module) -> dict:
    """Class name and constructor arguments, so that :func:`load_model` can rebuild the model."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if isinstance(model, tuple(TEST_TIME_WRAPPERS.values())):
        raise ValueError(f"a {type(model).__name__} only wraps a trained network at test time and has no "
                         f"weights of its own: save the network it wraps (its `.network`) and wrap it again "
                         f"after loading.")
    return {"class": type(model).__name__, "config": dict(getattr(model, "config", {}))}


def _as_dict(record) -> dict:
    """A plain dict from a dict, a dataclass instance (its fields) or ``None`` (empty)."""
    if record is None:
        return {}
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return dict(record)


def save_checkpoint(path, model: torch.nn.Module, optimizer=None, config=None, history=None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename) and return its path.

    Args:
        path: the file to write (its folder is created).
        model: the module (unwrapped from ``DistributedDataParallel``).
        optimizer: its optimiser, or ``None``.
        config, history: plain dicts (or dataclasses, stored as their fields), or ``None``.
    """
    from .. import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": CHECKPOINT_FORMAT,
        "regedu_version": __version__,
        "model_spec": json.dumps(model_spec(model)),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "config": json.dumps(_as_dict(config)),
        "history": json.dumps(_as_dict(history)),
        "rng": torch.get_rng_state(),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:  # a file object: a full disk raises OSError(ENOSPC)
            torch.save(payload, handle)
        os.replace(temporary, path)
    except OSError as error:  # name the user's file, not the hidden temporary one
        from ..outputs import write_failure

        raise write_failure(path, error) from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


_UNSAFE_ADVICE = re.compile(  # torch's ways of suggesting to load the file unsafely, or how to allow it
    r"weights_only|safe_globals|trusted source|trust the source|torch\.load|load failed|two options|"
    r"documentation|allowlist|Please use|this file can still be loaded", re.IGNORECASE)


def _load_failure(error: Exception) -> str:
    """What went wrong in ``torch.load(weights_only=True)``, without torch's advice to retry with
    ``weights_only=False`` or to allow the object: a refused checkpoint holds something that could
    run code, and regedu never loads such a file."""
    sentences = re.split(r"(?<=[.!?])\s+|\n+", str(error))
    kept = [s.strip().rstrip(".") for s in sentences if s.strip() and not _UNSAFE_ADVICE.search(s)]
    if "GLOBAL" in str(error):  # torch refused a Python object: say why it is refused, not how to allow it
        kept.append("a regedu checkpoint holds only tensors and text; this file holds other Python "
                    "objects, which regedu never loads, as they could run code")
    return "; ".join(kept) or type(error).__name__


def load_checkpoint(path) -> dict:
    """Read a checkpoint safely (``weights_only=True``) and check it is regedu's; JSON fields
    (``model_spec``, ``config``, ``history``) decoded to plain dicts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: check the path, or train one with `regedu train`.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise ValueError(
            f"{path} is not a readable regedu checkpoint ({type(error).__name__}: {_load_failure(error)}). "
            f"It may be truncated or corrupt, or not a checkpoint at all: retrain, or resume from an "
            f"earlier one."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a regedu checkpoint of format {CHECKPOINT_FORMAT} (found "
            f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__}). "
            f"It was written by another program or another regedu version: retrain it with this one."
        )
    for key in ("model_spec", "config", "history"):
        payload[key] = json.loads(payload[key])
    return payload


def load_model(path_or_module, device=None) -> torch.nn.Module:
    """A model from a checkpoint path (rebuilt from its saved class and arguments, in eval mode),
    or a module as it is; moved to ``device`` when given."""
    if isinstance(path_or_module, torch.nn.Module):
        return path_or_module.to(device) if device is not None else path_or_module
    payload = load_checkpoint(path_or_module)
    spec = payload["model_spec"]
    cls = MODEL_CLASSES.get(spec["class"])
    if cls is None:
        raise ValueError(
            f"{path_or_module} holds a {spec['class']!r}, which this regedu (regedu.models) does not "
            f"have. It was saved by another version: retrain it with this one."
        )
    model = cls(**spec["config"])
    load_state(model, payload["model"], path_or_module)
    model.eval()
    return model.to(device) if device is not None else model


def load_state(model: torch.nn.Module, state: dict, path) -> None:
    """``model.load_state_dict(state)``, a mismatch reported as a ``ValueError`` naming ``path``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"the checkpoint {path} does not fit this {type(model).__name__}: {str(error).splitlines()[0]} "
            f"It was saved from another model or configuration: build the same model, or retrain."
        ) from None


def checkpoint_step(path) -> int:
    """The training step a checkpoint reached (0 when it records none)."""
    return int(load_checkpoint(path)["history"].get("step", 0))


def check_same_model(path, model: torch.nn.Module) -> int:
    """Raise ``ValueError`` unless the checkpoint at ``path`` holds a model of ``model``'s class built
    with the same arguments (so that training can resume from it); return the step it reached."""
    payload = load_checkpoint(path)
    saved, wanted = payload["model_spec"], model_spec(model)
    if saved["class"] != wanted["class"] or saved["config"] != wanted["config"]:
        raise ValueError(
            f"{path} holds a {saved['class']} {saved['config']}, but the model to train is a "
            f"{wanted['class']} {wanted['config']}: resume with the model (and data) it was trained with."
        )
    return int(payload["history"].get("step", 0))
