"""Checkpoints loaded once and kept in memory, for ``regedu.register(..., model="file.pt")`` in a loop.

Loading a checkpoint (unpickling, building the network, copying the weights) costs more than
registering a small pair with it, so :func:`cached_model` keeps the last few loaded models, keyed
by the file's resolved path, modification time, size and inode, the device and the default dtype. A file
that is rewritten (or touched) gets a new key and is loaded again; a file that is deleted is not
served from memory either (its ``stat`` fails first).

The cached modules are shared by every caller that asks for the same key, so they are frozen: in
eval mode, with ``requires_grad=False`` on every parameter. ``regedu.register`` only runs them
(and restores the mode it found, which is eval). Code that wants to train or change a network
must load its own copy with :func:`regedu.train.load_model`, never modify one from this cache.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch

__all__ = ["MAX_CACHED_MODELS", "cached_model", "clear_model_cache"]

MAX_CACHED_MODELS = 4  # least recently used models beyond this are dropped (GPU memory is finite)

_CACHE: OrderedDict[tuple, torch.nn.Module] = OrderedDict()
_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[str, int, int, int]:
    """``(resolved path, modification time in ns, size, inode)``; raises ``OSError`` if there is no file.

    The inode changes when a file is replaced by another (as :func:`regedu.train.save_checkpoint`
    does), even within one tick of a coarse file-system clock.
    """
    status = path.stat()
    return str(path.resolve()), status.st_mtime_ns, status.st_size, status.st_ino


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients on the parameters: nothing a forward pass does can change it."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def cached_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model in checkpoint ``path`` on ``device``, loaded once per version of the file.

    Args:
        path: a checkpoint written by :func:`regedu.train.save_checkpoint` (``regedu train``).
        device: where the model's weights go.

    Returns:
        A frozen module (eval mode, no gradients) shared with other callers: run it, do not
        modify it (see the module docstring).

    Raises:
        The errors of :func:`regedu.train.load_model` (missing file, not a checkpoint, ...).
    """
    from .train import load_model

    path = Path(path).expanduser()
    try:
        file_key = _file_key(path)
    except OSError:
        return load_model(path, device=device)  # no file: load_model says what to do
    key = (*file_key, str(torch.device(device)), torch.get_default_dtype())
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    model = _freeze(load_model(path, device=device))
    if _unchanged(path, file_key):  # a file rewritten while it was read is not cached under the old key
        _remember(key, model)
    return model


def _unchanged(path: Path, file_key: tuple) -> bool:
    try:
        return _file_key(path) == file_key
    except OSError:
        return False


def _remember(key: tuple, model: torch.nn.Module) -> None:
    with _LOCK:
        _CACHE[key] = model
        _CACHE.move_to_end(key)
        while len(_CACHE) > MAX_CACHED_MODELS:
            _CACHE.popitem(last=False)


def clear_model_cache() -> None:
    """Forget every cached model (frees their memory once no one else holds them)."""
    with _LOCK:
        _CACHE.clear()
