"""Small pre-trained models that ship with the kit, so a lesson can show a good result at once.

Each file in ``regedu/weights/`` is an ordinary regedu checkpoint written by
``scripts/train_pretrained.py`` (the command and its log sit next to it, ``<name>.log``); load one
with :func:`pretrained` and use it like any model you trained yourself.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["PRETRAINED", "pretrained", "pretrained_path"]

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

PRETRAINED = {
    "voxelmorph2d_brain": "VoxelMorph (2D, 96x112 axial MNI slices at 2 mm), unsupervised: local NCC + "
                          "diffusion, trained on synthetic subject-to-subject pairs",
    "voxelmorph2d_brain_diff": "the same, diffeomorphic (stationary velocity, 7 scaling-and-squaring steps)",
}


def pretrained_path(name: str) -> Path:
    """The checkpoint file of a shipped model; raises ``ValueError`` for an unknown name and
    ``FileNotFoundError`` (saying how to make it) when the file is missing."""
    if name not in PRETRAINED:
        raise ValueError(f"no pre-trained model {name!r}; the kit ships {sorted(PRETRAINED)}.")
    path = WEIGHTS / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from this installation; recreate it with "
            f"`python scripts/train_pretrained.py {name}` (about 10 minutes on a CPU)."
        )
    return path


def pretrained(name: str = "voxelmorph2d_brain", device=None) -> torch.nn.Module:
    """A shipped model, in eval mode, on ``device`` (default CPU). See :data:`PRETRAINED`."""
    from ..train import load_model

    return load_model(pretrained_path(name), device=device)
