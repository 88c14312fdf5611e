"""Held-out brain pairs made differently from anything the kit trains or tunes on: a development
set (choose defaults and recipes here) and a test set (report here), in 2D and 3D.

The kit's own generators (``regedu.data.TemplatePairs``, ``BrainSlicePairs``) cut sections of the
**2 mm** template along its voxel grid and push them through a cubic B-spline diffeomorphism after
a random affine, with gamma / B-spline bias / Gaussian noise. These pairs are made another way at
every step, so a method tuned (or a network trained) on the kit's generator meets something new:

* **other slices**: sections are resampled from the **1 mm** template (anti-aliased, then sampled
  at 2 mm) on planes tilted by up to 10 degrees, at levels between the 2 mm grid's, in axial,
  coronal and sagittal orientation; the fixed section lies 0 to 2 mm above or below the moving one
  (through-plane mismatch: like two real subjects, the pair has no exact answer);
* **another deformation model**: each subject gets an affine (rotation up to 5 degrees, scaling up
  to 5 %, shear up to 3 %, translation up to 6 mm) and a velocity made of Gaussian bumps, integrated:
  4 to 12 broad ones (15 to 40 mm) of up to 6 voxels, plus 10 to 25 fine ones (5 to 10 mm) of up to
  2.5 voxels, for the small-scale variation of real anatomy that a coarse transform model cannot
  follow; relative to each other the two images of a pair are misaligned by up to about 10 degrees,
  10 % scale and 10 voxels;
* **other intensities**: a quadratic bias field, a gamma in exp(+-0.4), a random intensity window,
  Rician noise (sigma up to 0.04);
* **skull-stripped and not**: half of the pairs show a synthetic head (thinner CSF, thicker skull
  and scalp than the training generator draws).

Development and test sets use disjoint levels (the cerebrum's axial extent cut into 4 mm bands,
alternately development and test; coronal and sagittal likewise) and disjoint seeds. Labels are
the tissue classes (CSF-like, grey matter, white matter; Dice is their mean), sampled from the 1 mm
label map at each image's own positions.

    from heldout import heldout_pairs
    pairs = heldout_pairs("test", ndim=2)       # 24 pairs, 96 x 112
    pairs = heldout_pairs("development", ndim=3, count=1)   # 96 x 112 x 96

``python benchmarks/heldout.py --figure results/heldout_pairs.png`` draws a few of each.
"""

from __future__ import annotations

import argparse
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from regedu.data import add_synthetic_head, load_brain
from regedu.warps import integrate

SPLITS = {"development": 0, "test": 1}
COUNTS = {("development", 2): 16, ("test", 2): 24, ("development", 3): 1, ("test", 3): 2}
SEEDS = {("development", 2): 31_000, ("test", 2): 47_000, ("development", 3): 53_000, ("test", 3): 61_000}
SHAPE = {2: (96, 112), 3: (96, 112, 96)}
SPACING_MM = 2.0
ORIENTATION_WEIGHTS = {"axial": 0.6, "coronal": 0.2, "sagittal": 0.2}
# plane axes in RAS millimetres: (first image axis, second image axis, normal)
PLANES = {
    "axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "coronal": ((1, 0, 0), (0, 0, 1), (0, 1, 0)),
    "sagittal": ((0, 0, 1), (0, 1, 0), (1, 0, 0)),
}
BAND_MM = 4.0


@dataclass
class Pair:
    """One pair on the fixed image's grid: images ``(1, 1, *shape)`` in [0, 1], int64 labels."""

    moving: torch.Tensor
    fixed: torch.Tensor
    moving_labels: torch.Tensor
    fixed_labels: torch.Tensor
    spacing: tuple[float, ...]
    description: str


@functools.lru_cache(maxsize=1)
def _template_1mm():
    """The 1 mm template, anti-aliased for sampling at 2 mm, as tensors ``(1, 1, X, Y, Z)``."""
    brain = load_brain(resolution=1)
    smooth = ndimage.gaussian_filter(brain.image[0, 0].numpy().astype(np.float64), sigma=0.85)
    image = torch.from_numpy(smooth).float()[None, None]
    to_voxel = np.linalg.inv(brain.affine)
    inside = torch.nonzero(brain.mask[0, 0]).double()
    centre_voxel = (inside.min(0).values + inside.max(0).values) / 2
    centre_mm = brain.affine[:3, :3] @ centre_voxel.numpy() + brain.affine[:3, 3]
    extent_mm = (inside.max(0).values - inside.min(0).values).numpy() * np.diag(brain.affine)[:3]
    return {"image": image, "labels": brain.labels.float(), "mask": brain.mask.float(), "to_voxel": to_voxel,
            "centre": centre_mm, "extent": extent_mm}


def _sample(volume: torch.Tensor, points_mm: torch.Tensor, mode: str) -> torch.Tensor:
    """Values of a ``(1, 1, X, Y, Z)`` template volume at RAS points ``(*shape, 3)`` (mm), zero outside."""
    to_voxel = torch.from_numpy(_template_1mm()["to_voxel"]).to(points_mm)
    voxels = points_mm @ to_voxel[:3, :3].T + to_voxel[:3, 3]
    size = torch.tensor(volume.shape[2:], dtype=voxels.dtype)
    normalised = 2 * voxels / (size - 1) - 1
    grid = normalised.flip(-1).reshape(1, 1, 1, -1, 3).float()  # grid_sample wants (z, y, x) order
    values = F.grid_sample(volume, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return values.reshape(1, 1, *points_mm.shape[:-1])


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """3 x 3 rotation from three small angles (degrees) about x, y, z."""
    a, b, c = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _affine(rng: np.random.Generator, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """A subject's linear part ``(ndim, ndim)`` and translation (mm): rotation <= 5 degrees,
    scaling within 5 %, shear within 3 %, translation within 6 mm."""
    if ndim == 2:
        angle = np.deg2rad(rng.uniform(-5, 5))
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    else:
        rotation = _rotation(rng.uniform(-5, 5, size=3))
    scaling = np.diag(np.exp(rng.uniform(-math.log(1.05), math.log(1.05), size=ndim)))
    shear = np.eye(ndim) + np.triu(rng.uniform(-0.03, 0.03, size=(ndim, ndim)), k=1)
    return rotation @ shear @ scaling, rng.uniform(-6, 6, size=ndim)


def _bump_velocity(rng: np.random.Generator, shape: tuple[int, ...], magnitude: float,
                   count: tuple[int, int] = (4, 12),
                   width_mm: tuple[float, float] = (15, 40)) -> torch.Tensor:
    """A velocity ``(1, ndim, *shape)`` in voxels: ``count`` Gaussian bumps (a range) of
    ``width_mm`` standard deviation (a range), centred in the middle 70 % of the image, scaled so
    the largest component is ``magnitude``."""
    ndim = len(shape)
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (ndim, *shape)
    velocity = torch.zeros(ndim, *shape, dtype=torch.float64)
    for _ in range(rng.integers(count[0], count[1] + 1)):
        centre = torch.tensor([rng.uniform(0.15 * n, 0.85 * n) for n in shape], dtype=torch.float64)
        width = rng.uniform(*width_mm) / SPACING_MM
        weight = torch.exp(-((grid - centre.view(-1, *[1] * ndim)) ** 2).sum(0) / (2 * width**2))
        vector = torch.tensor(rng.normal(size=ndim), dtype=torch.float64)
        velocity += vector.view(-1, *[1] * ndim) * weight
    velocity *= magnitude / velocity.abs().max().clamp(min=1e-12)
    return velocity[None].float()


def _subject_points(rng: np.random.Generator, shape: tuple[int, ...], frame: np.ndarray, origin: np.ndarray,
                    magnitude: float) -> torch.Tensor:
    """RAS points ``(*shape, 3)`` (mm) that a subject's image samples: the image grid (2 mm, centred),
    moved by the subject's deformation and affine, placed by ``frame`` ``(ndim, 3)`` (the image axes
    in RAS) at ``origin`` (mm)."""
    ndim = len(shape)
    broad = _bump_velocity(rng, shape, magnitude)
    fine = _bump_velocity(rng, shape, rng.uniform(0.5, 2.5), count=(10, 25), width_mm=(5, 10))
    disp = integrate(broad + fine, steps=7)[0].double()  # (ndim, *shape), voxels
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij")) + disp
    centre = torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64).view(-1, *[1] * ndim)
    centred_mm = (index - centre) * SPACING_MM
    linear, shift = _affine(rng, ndim)
    moved = torch.einsum("ij,j...->i...", torch.from_numpy(linear), centred_mm)
    moved = moved + torch.from_numpy(shift).view(-1, *[1] * ndim)
    ras = torch.einsum("ia,i...->...a", torch.from_numpy(frame), moved)
    return ras + torch.from_numpy(origin)


def _appearance(rng: np.random.Generator, image: torch.Tensor) -> torch.Tensor:
    """Quadratic bias, gamma, intensity window, Rician noise; result in [0, 1]."""
    shape = image.shape[2:]
    axes = [torch.linspace(-1, 1, n, dtype=torch.float64) for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    bias = sum(rng.uniform(-0.15, 0.15) * g + rng.uniform(-0.1, 0.1) * g**2 for g in grid)
    out = image.double() * torch.exp(bias)
    out = out.clamp(min=0) ** math.exp(rng.uniform(-0.4, 0.4))
    low, high = rng.uniform(0, 0.05), rng.uniform(0.8, 1.0) * float(out.max())
    out = ((out - low) / (high - low)).clamp(0, 1)
    sigma = rng.uniform(0.0, 0.04)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    real = out + sigma * torch.randn(out.shape, generator=generator, dtype=torch.float64)
    imaginary = sigma * torch.randn(out.shape, generator=generator, dtype=torch.float64)
    return torch.sqrt(real**2 + imaginary**2).clamp(0, 1).float()


def _band_levels(split: str, extent_mm: float) -> tuple[float, float]:
    """A level (mm from the brain centre along the normal) in one of this split's 4 mm bands,
    inside the central 70 % of the brain's extent: returns the band's (low, high)."""
    half = 0.35 * extent_mm
    bands = [(lo, lo + BAND_MM) for lo in np.arange(-half, half - BAND_MM, BAND_MM)]
    return [band for number, band in enumerate(bands) if number % 2 == SPLITS[split]]


def _subject(rng: np.random.Generator, points: torch.Tensor, head: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One subject's image (with a head if ``head``, then its own appearance) and tissue labels,
    sampled from the 1 mm template at RAS ``points`` ``(*shape, 3)``."""
    template = _template_1mm()
    image = _sample(template["image"], points, "bilinear").clamp(0, 1)
    if head:
        mask = _sample(template["mask"], points, "nearest") > 0.5
        image = add_synthetic_head(image, mask, gap=1.0, skull=4.0, scalp=4.0, variation=0.2,
                                   seed=int(rng.integers(2**31)))
    labels = _sample(template["labels"], points, "nearest").round().long()
    return _appearance(rng, image), labels


def _pair_2d(split: str, rng: np.random.Generator) -> Pair:
    template = _template_1mm()
    names = list(ORIENTATION_WEIGHTS)
    orientation = names[rng.choice(len(names), p=list(ORIENTATION_WEIGHTS.values()))]
    first, second, normal = (np.array(v, dtype=np.float64) for v in PLANES[orientation])
    tilt = _rotation(rng.uniform(-10, 10, size=3) * np.array([1, 1, 0.5]))
    frame = np.stack([tilt @ first, tilt @ second])
    normal = tilt @ normal
    extent = float(np.abs(template["extent"] @ np.abs(normal)))
    low, high = _band_levels(split, extent)[rng.integers(len(_band_levels(split, extent)))]
    level = rng.uniform(low, high)
    offset = rng.uniform(0, 2) * rng.choice([-1, 1])
    shape = SHAPE[2]
    images, labels = [], []
    head = rng.uniform() < 0.5
    for through_plane in (0.0, offset):
        origin = template["centre"] + (level + through_plane) * normal
        points = _subject_points(rng, shape, frame, origin, magnitude=rng.uniform(0.5, 6.0))
        image, label_map = _subject(rng, points, head)
        images.append(image)
        labels.append(label_map)
    described = (f"{orientation}, level {level:+.1f} mm, fixed {offset:+.1f} mm off-plane, "
                 f"{'head' if head else 'skull-stripped'}")
    return Pair(images[0], images[1], labels[0], labels[1], (SPACING_MM,) * 2, described)


def _pair_3d(split: str, rng: np.random.Generator) -> Pair:
    """A 3D pair: the 1 mm template sampled at 2 mm (96 x 112 x 96) in a tilted frame, per subject."""
    template = _template_1mm()
    shape = SHAPE[3]
    head = rng.uniform() < 0.5
    images, labels = [], []
    for _ in range(2):
        frame = _rotation(rng.uniform(-4, 4, size=3))
        origin = template["centre"] + rng.uniform(-1, 1, size=3)  # off the 2 mm grid
        points = _subject_points(rng, shape, frame, origin, magnitude=rng.uniform(2.0, 6.0))
        image, label_map = _subject(rng, points, head)
        images.append(image)
        labels.append(label_map)
    described = f"3D, {'head' if head else 'skull-stripped'}"
    return Pair(images[0], images[1], labels[0], labels[1], (SPACING_MM,) * 3, described)


def heldout_pairs(split: str, ndim: int = 2, count: int | None = None) -> list[Pair]:
    """The ``split`` ("development" or "test") pairs in 2D or 3D, the same on every machine."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    count = COUNTS[(split, ndim)] if count is None else count
    make = _pair_2d if ndim == 2 else _pair_3d
    return [make(split, np.random.default_rng([SEEDS[(split, ndim)], index])) for index in range(count)]


def _figure(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = heldout_pairs("development", 2, 6) + heldout_pairs("test", 2, 6)
    fig, axes = plt.subplots(2, len(pairs), figsize=(1.6 * len(pairs), 4))
    for column, pair in enumerate(pairs):
        for row, image in enumerate((pair.moving, pair.fixed)):
            axes[row, column].imshow(image[0, 0].T, origin="lower", cmap="gray", vmin=0, vmax=1)
            axes[row, column].axis("off")
        split = "dev " if column < 6 else "test "
        axes[0, column].set_title(split + pair.description.split(",")[0], fontsize=7)
    fig.suptitle("held-out pairs (top: moving, bottom: fixed)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", default=None, help="draw 6 development and 6 test pairs to this file")
    args = parser.parse_args()
    if args.figure:
        _figure(args.figure)
    from regedu import metrics

    for split in SPLITS:
        pairs = heldout_pairs(split, 2)
        before = [float(metrics.dice(p.moving_labels, p.fixed_labels, labels=[1, 2, 3]).mean())
                  for p in pairs]
        print(f"{split}: {len(pairs)} 2D pairs, mean Dice before registration {np.mean(before):.3f}")
