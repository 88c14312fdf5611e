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

_BRAIN2D = ("VoxelMorph (2D, 96x112 brain sections at 2 mm) trained on varied pairs (every axial level of "
            "the cerebrum, small to large deformations, intensity changes, with or without a head): ")
_LESSON = " (4000 steps, the budget shared by the lessons' models, a third of voxelmorph2d_brain's)"
PRETRAINED = {
    "pyramid2d_brain": "PyramidNet (2D, three U-Nets coarse to fine, 96x112 brain sections at 2 mm) trained "
                       "on the same varied pairs as the VoxelMorph models below: unsupervised, local NCC + "
                       "diffusion (weight 1), 12000 steps; the default 2D model of "
                       "regedu.register(method=\"voxelmorph\")",
    "pyramid3d_brain_run5": "PyramidNet (3D, the 2 mm template's 96x112x96 grid; its three U-Nets work on "
                            "16, 8 and 4 mm grids, field_downsize=2) trained on varied volume pairs (the "
                            "template through two random affine + smooth transforms, intensity changes, "
                            "with or without a head): unsupervised, local NCC + diffusion (weight 1), one "
                            "pair a step, 18100 steps in five runs, each starting from the one before "
                            "(pyramid3d_brain, pyramid3d_brain_long, pyramid3d_brain_longer and "
                            "pyramid3d_brain_longest, not shipped); the default 3D model of "
                            "regedu.register(method=\"voxelmorph\")",
    "voxelmorph2d_brain": _BRAIN2D + "unsupervised, local NCC + diffusion (weight 1), 12000 steps",
    "voxelmorph2d_brain_diff": _BRAIN2D + "unsupervised and diffeomorphic (stationary velocity, 7 "
                               "scaling-and-squaring steps), local NCC + diffusion (weight 1)" + _LESSON,
    "voxelmorph2d_brain_supervised": _BRAIN2D + "supervised by the true field (end-point error)" + _LESSON,
    "voxelmorph2d_brain_labels": _BRAIN2D + "label-supervised: Dice of the warped tissue labels + "
                                 "diffusion (weight 1); no image similarity term" + _LESSON,
    "voxelmorph2d_brain_lambda0.01": _BRAIN2D + "unsupervised, local NCC + diffusion, weight 0.01" + _LESSON,
    "voxelmorph2d_brain_lambda0.1": _BRAIN2D + "unsupervised, local NCC + diffusion, weight 0.1" + _LESSON,
    "voxelmorph2d_brain_lambda1": _BRAIN2D + "unsupervised, local NCC + diffusion with weight 1" + _LESSON,
    "voxelmorph2d_brain_lambda10": _BRAIN2D + "unsupervised, local NCC + diffusion with weight 10" + _LESSON,
    "synthmorph2d": "VoxelMorph (2D, 96x112) trained SynthMorph-style on random label maps with random "
                    "contrasts only (never a brain): squared difference of the warped one-hot label maps "
                    "+ diffusion (weight 0.1), 6000 steps",
    "synthmorph2d_long": "the same as synthmorph2d, trained for 16000 steps (its Dice on brains was still "
                         "rising at 6000); lesson 08's model until synthmorph_pyramid2d_wide_t1",
    "synthmorph_pyramid2d_wide_t1": (
        "PyramidNet (2D, 96x112) with about twice the channels of pyramid2d_brain "
        "(encoder 32, 48, 48; decoder 48, 48, 48, 32, 32) trained SynthMorph-style on "
        "random label maps with random contrasts only (never a brain): squared difference "
        "of the warped one-hot label maps + diffusion (weight 0.1); 12000 steps on pairs "
        "of which a quarter share one contrast (synthmorph_pyramid2d_wide, not shipped), "
        "then 4000 steps at a quarter of the rate on pairs of which half do, which "
        "favours T1 -> T1; lesson 08's model until synthmorph_pyramid2d_wide_mixed_t1"),
    "synthmorph_pyramid2d_wide_mixed_t1": (
        "PyramidNet (2D, 96x112) with about twice the channels of pyramid2d_brain "
        "(encoder 32, 48, 48; decoder 48, 48, 48, 32, 32) trained SynthMorph-style on "
        "random label maps with random contrasts only (never a brain): squared difference "
        "of the warped one-hot label maps + diffusion (weight 0.1); 12000 steps on pairs "
        "of which half share one contrast (synthmorph_pyramid2d_wide_shared), 4000 at a quarter "
        "of the rate on pairs of which a quarter do (synthmorph_pyramid2d_wide_mixed), then 4000 "
        "more on pairs of which half do (neither shipped); the SynthMorph-style model of lesson 08, "
        "run on the pair and its mirror images (regedu.models.FlipAveraged, axes 0 and 1)"),
    "toy_voxelmorph2d": "single-scale VoxelMorph (2D, 64x64) for notebook 06's disk pushed 12 to 20 voxels",
    "toy_voxelmorph2d_diff": "the same, diffeomorphic",
    "toy_pyramid2d": "PyramidNet (3 levels, coarse to fine) for notebook 06's disk pushed 12 to 20 voxels",
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
            f"`python scripts/train_pretrained.py {name}` (a 2D model takes a few hours on a laptop CPU, "
            f"minutes on a GPU; the run can be stopped and continued)."
        )
    return path


def pretrained(name: str = "voxelmorph2d_brain", device=None) -> torch.nn.Module:
    """A shipped model, in eval mode, on ``device`` (default CPU). See :data:`PRETRAINED`."""
    from .checkpoint import load_model

    return load_model(pretrained_path(name), device=device)
