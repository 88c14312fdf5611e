"""Where the SynthMorph-style networks lose T1 -> T1 Dice: the affine part of their error, or the rest.

    python benchmarks/synthmorph_gap.py                        # development pairs (seed 11)
    python benchmarks/synthmorph_gap.py --model a.pt --model b.pt

On ``benchmarks/synthmorph.py``'s held-out brain pairs, for each network and contrast:

* **Dice** and its **margin over no registration** with the standard error of that margin over the
  pairs (is a target met by more than chance?);
* **affine gain**: an affine map is fitted (least squares, inside the brain) to the network's field
  and to the true one; the gain is how much of the true linear motion (rotation, scaling, shear)
  the network's linear part carries, 1 when all of it (projection of one onto the other);
* **Dice with the affine error removed**: the network's field minus the affine map fitted to its
  error (network - true field) inside the brain, an oracle no network has: the Dice the network
  would reach if its only error were the local one.

If removing the affine error leaves a network short of a target, the gap is local detail, not a
global misalignment that an affine pre-alignment would fix.
"""

from __future__ import annotations

import argparse

import torch
from synthmorph import TISSUES, held_out

from regedu import kernels, metrics, models, warps
from regedu.train import load_model

NETWORKS = ("pyramid2d_brain", "synthmorph_pyramid2d_wide_t1")


def affine_basis(shape) -> torch.Tensor:
    """``(prod(shape), ndim + 1)``: each voxel's coordinates (voxels) and a 1, the design matrix of an
    affine fit."""
    coordinates = kernels.identity_grid(shape, dtype=torch.float64).flatten(1).T
    return torch.cat([coordinates, torch.ones(len(coordinates), 1, dtype=torch.float64)], 1)


def fitted_affine(disp: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """The affine displacement ``(ndim, *spatial)`` closest (least squares over the voxels where ``inside``
    ``(*spatial)`` is true) to one field ``disp`` ``(ndim, *spatial)``, in voxels."""
    basis = affine_basis(disp.shape[1:])
    values = disp.reshape(disp.shape[0], -1).T.double()
    keep = inside.flatten()
    coefficients = torch.linalg.lstsq(basis[keep], values[keep]).solution
    return (basis @ coefficients).T.reshape(disp.shape).to(disp.dtype)


def affine_gain(disp: torch.Tensor, true: torch.Tensor, inside: torch.Tensor) -> float:
    """How much of the true fields' linear motion the fields ``disp`` carry, over a batch
    ``(B, ndim, *spatial)``: the projection of their affine parts (translation removed) onto the true
    ones', 1 when they match, 0 when the networks' carry none of it."""
    along, length = 0.0, 0.0
    for field, target, mask in zip(disp, true, inside, strict=True):
        mine, theirs = fitted_affine(field, mask), fitted_affine(target, mask)
        mine = mine[:, mask] - mine[:, mask].mean(1, keepdim=True)  # the linear part, about the centroid
        theirs = theirs[:, mask] - theirs[:, mask].mean(1, keepdim=True)
        along += float((mine * theirs).sum())
        length += float((theirs * theirs).sum())
    return along / length


def without_affine_error(disp: torch.Tensor, true: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """``disp`` ``(B, ndim, *spatial)`` with the affine map fitted to its error (``disp - true``) taken
    away, pair by pair: the oracle field whose only error is the local one."""
    return torch.stack([field - fitted_affine(field - target, mask)
                        for field, target, mask in zip(disp, true, inside, strict=True)])


def pair_dice(batch: dict, disp: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean Dice over the tissues of each pair warped by ``disp``."""
    warped = warps.warp_labels(batch["moving_labels"], disp)
    return metrics.dice(warped, batch["fixed_labels"], labels=TISSUES).mean(1)


@torch.no_grad()
def diagnose(model, batch: dict, fixed: torch.Tensor) -> dict[str, float]:
    """One network, one contrast: Dice, margin over no registration and its standard error, affine
    gain, and Dice with the affine error removed."""
    model.eval()
    disp = model(batch["moving"], fixed)[1]
    inside = batch["fixed_labels"][:, 0] > 0
    dice = pair_dice(batch, disp)
    margins = dice - pair_dice(batch, torch.zeros_like(disp))
    return {"dice": float(dice.mean()), "margin": float(margins.mean()),
            "margin_se": float(margins.std() / len(margins) ** 0.5),
            "gain": affine_gain(disp, batch["disp"], inside),
            "oracle": float(pair_dice(batch, without_affine_error(disp, batch["disp"], inside)).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=11, help="11: the development pairs")
    parser.add_argument("--model", action="append", default=[],
                        help="a checkpoint to diagnose as well (repeatable)")
    args = parser.parse_args()
    batch, fixed = held_out(args.pairs, args.seed)
    networks = {name: models.pretrained(name) for name in NETWORKS}
    networks.update({path: load_model(path) for path in args.model})
    print(f"# Where the T1 -> T1 Dice goes: {args.pairs} held-out BrainSlicePairs (seed {args.seed})\n")
    print("| network | contrast | Dice | above no registration (s.e.) | affine gain | "
          "Dice, affine error removed |\n|---|---|---|---|---|---|")
    for name, model in networks.items():
        for contrast, image in fixed.items():
            row = diagnose(model, batch, image)
            print(f"| {name} | {contrast} | {row['dice']:.3f} | {row['margin']:+.3f} "
                  f"({row['margin_se']:.3f}) | {row['gain']:.2f} | {row['oracle']:.3f} |")


if __name__ == "__main__":
    main()
