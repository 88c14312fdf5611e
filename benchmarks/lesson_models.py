"""The lessons' shipped 2D brain models side by side on held-out pairs of their training distribution.

    python benchmarks/lesson_models.py            # 32 pairs of BrainSlicePairs, seed 7 (as notebook 04)

Prints, per model, the mean Dice over the tissue labels, the mean end-point error inside the fixed
brain (voxels), the folded share of the grid (%) and the smallest Jacobian determinant over all pairs.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import default_collate

from regedu import data, metrics, models, warps

LESSON_MODELS = ["supervised", "labels", "lambda0.01", "lambda0.1", "lambda1", "lambda10", "diff"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    pairs = data.BrainSlicePairs(args.pairs, seed=args.seed)
    batch = default_collate([pairs[i] for i in range(args.pairs)])
    brain = batch["fixed_labels"] > 0
    before = metrics.dice(batch["moving_labels"], batch["fixed_labels"]).nanmean(1).mean()
    no_motion = metrics.end_point_error(torch.zeros_like(batch["disp"]), batch["disp"], brain).mean()
    print("| model | Dice | EPE in brain (voxels) | folding % | smallest det J |\n|---|---|---|---|---|")
    print(f"| no registration | {before:.3f} | {no_motion:.2f} | 0 | 1 |")
    for name in LESSON_MODELS:
        try:
            model = models.pretrained(f"voxelmorph2d_brain_{name}")
        except FileNotFoundError:
            print(f"| voxelmorph2d_brain_{name} | not shipped yet | | | |")
            continue
        with torch.no_grad():
            disp = model(batch["moving"], batch["fixed"])[1]
        dice = metrics.dice(warps.warp_labels(batch["moving_labels"], disp), batch["fixed_labels"]).nanmean(1)
        epe = metrics.end_point_error(disp, batch["disp"], brain)
        print(f"| voxelmorph2d_brain_{name} | {dice.mean():.3f} | {epe.mean():.2f} | "
              f"{100 * metrics.folding_fraction(disp).mean():.3f} | {metrics.min_jacobian(disp).min():.2f} |")


if __name__ == "__main__":
    main()
