"""Landmarks with known true positions, for the target registration error (TRE).

A landmark is a point that can be found in both images: in a real study an expert clicks it (the
tip of a ventricle, a vessel branching, a sulcus meeting another). Its target registration error
is how far the registration puts it from where it really is in the other image
(:func:`regedu.metrics.tre`). Landmarks test what Dice cannot: Dice only asks whether the warped
labels cover the fixed ones, so a field that slides tissue along a label border, or maps the left
hemisphere onto the right one, can have a good Dice and a poor TRE.

On a synthetic pair the true field is known, so every point of the fixed image has a known true
position in the moving one:

* :func:`landmarks`: ``count`` well-spread points of a label map, ``(B, N, ndim)`` voxel
  coordinates, inside the labelled region (``where="inside"``) or where three or more labels
  meet (``where="junctions"``: corner-like points, the kind an expert could click in both images);
* :func:`map_landmarks`: fixed points carried through a pull field, ``x + disp(x)``: for the
  true field of a pair, their true positions in the moving image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import kernels
from ..checks import (
    check_batch,
    check_choice,
    check_disp,
    check_finite,
    check_image,
    check_points,
    check_points_inside,
    check_positive_int,
)
from .synthetic import make_generator

__all__ = ["LANDMARK_PLACES", "landmarks", "map_landmarks"]

LANDMARK_PLACES = ("inside", "junctions")
_MAX_POOL = {2: F.max_pool2d, 3: F.max_pool3d}


def _check_labels(labels) -> int:
    """Check an integer label map ``(B, 1, *spatial)``; return ``ndim``."""
    ndim = check_image(labels, "labels")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"`labels` must be an integer label map (or a boolean mask), got dtype "
                        f"{labels.dtype}. Label maps read as floats convert with `labels.round().long()`.")
    if labels.shape[1] != 1:
        raise ValueError(f"`labels` must have one channel, shape (B, 1, *spatial), got "
                         f"{tuple(labels.shape)}. A one-hot map (B, L, *spatial) converts with "
                         f"`labels.argmax(1, keepdim=True)`.")
    return ndim


def _labels_around(labels: torch.Tensor) -> torch.Tensor:
    """How many different label values (background included) each voxel's 3 x ... x 3 neighbourhood holds.

    ``labels`` ``(B, 1, *spatial)`` integer -> ``(B, 1, *spatial)`` integer counts.
    """
    pool = _MAX_POOL[labels.dim() - 2]
    count = torch.zeros_like(labels)
    for value in torch.unique(labels).tolist():
        present = (labels == value).float()
        count += pool(present, 3, stride=1, padding=1).to(labels.dtype)
    return count


def _candidates(labels: torch.Tensor, where: str, margin: int) -> torch.Tensor:
    """Boolean ``(B, *spatial)``: the voxels that may hold a landmark."""
    allowed = labels[:, 0] > 0
    if where == "junctions":
        allowed &= _labels_around(labels)[:, 0] >= 3
    if margin > 0:
        inner = torch.zeros_like(allowed)
        inner[(slice(None),) + tuple(slice(margin, n - margin) for n in labels.shape[2:])] = True
        allowed &= inner
    return allowed


def _spread(candidates: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` rows of ``candidates`` ``(C, ndim)`` spread out by farthest-point sampling.

    The first point is a random candidate; each next one is the candidate farthest from every
    point chosen so far. Returns ``(count, ndim)``, in the order chosen.
    """
    first = int(torch.randint(len(candidates), (1,), generator=generator))
    chosen = [first]
    nearest = (candidates - candidates[first]).norm(dim=1)  # distance to the nearest chosen point
    for _ in range(count - 1):
        farthest = int(nearest.argmax())
        chosen.append(farthest)
        nearest = torch.minimum(nearest, (candidates - candidates[farthest]).norm(dim=1))
    return candidates[chosen]


@torch.no_grad()
def landmarks(labels: torch.Tensor, count: int = 20, seed=None, where: str = "inside", margin: int = 2,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``count`` well-spread landmarks on the labelled region of each item, ``(B, N, ndim)`` voxels.

    Landmarks sit at voxel centres (integer coordinates, in tensor axis order, as every regedu
    point), on voxels whose label is not 0 and at least ``margin`` voxels from the image border.
    They are spread out by farthest-point sampling: the first is drawn at random (``seed``), and
    each next one is the allowed voxel farthest from those already chosen, so ``count`` points
    cover the whole region, its outline included.

    Args:
        labels: ``(B, 1, *spatial)`` integer label map (or boolean mask), 2D or 3D (usually the
            fixed labels).
        count: landmarks per item, N >= 1.
        seed: an int, a ``torch.Generator`` or ``None`` (:func:`regedu.data.make_generator`).
        where: ``"inside"``: any labelled voxel; ``"junctions"``: a labelled voxel whose
            3 x 3 (x 3) neighbourhood holds three or more label values, background included:
            corners where tissues meet, points an expert could find again in the other image.
        margin: voxels kept free at each image border (0 allows the border).
        dtype: floating dtype of the result; the device is ``labels``'.

    Returns:
        ``(B, count, ndim)`` voxel coordinates on ``labels``' grid.
    """
    _check_labels(labels)
    labels = labels.long() if labels.dtype == torch.bool else labels
    check_positive_int(count, "count")
    check_choice(where, "where", LANDMARK_PLACES)
    check_positive_int(margin, "margin", minimum=0)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating dtype (landmarks are positions), got {dtype}.")
    generator = make_generator(seed)
    allowed = _candidates(labels, where, margin).cpu()
    points = []
    for item, mask in enumerate(allowed):
        candidates = mask.nonzero().to(torch.float64)  # (C, ndim) voxel indices
        if len(candidates) < count:
            raise ValueError(
                f"item {item} of `labels` has only {len(candidates)} voxels where a landmark may sit "
                f"(where={where!r}, margin={margin}), fewer than count={count}. Ask for fewer landmarks, "
                f"lower the margin, or use where='inside'." + (" Its labels are all 0." if not
                                                             bool((labels[item] > 0).any()) else ""))
        points.append(_spread(candidates, count, generator))
    return torch.stack(points).to(device=labels.device, dtype=dtype)


@torch.no_grad()
def map_landmarks(points: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """Fixed-image points carried through a pull field: ``x + disp(x)``, ``(B, N, ndim)`` voxels.

    Warps pull (``warp(moving, disp)(x) = moving(x + disp(x))``), so ``disp`` on the fixed grid
    says where each fixed point is found in the moving image. With a pair's **true** field, this
    gives the true moving positions of fixed landmarks; with a registration's field, where the
    registration puts them. ``disp`` is interpolated linearly between voxels, exactly as
    :func:`regedu.metrics.tre` does, so a registration that finds the true field scores TRE 0.

    Args:
        points: ``(B, N, ndim)`` voxel coordinates on the fixed grid (tensor axis order), inside
            the grid.
        disp: ``(B, ndim, *spatial)`` displacement in voxels. A batch of 1 in either argument is
            shared by every item.

    Returns:
        ``(B, N, ndim)`` positions in voxels of the moving image, in ``disp``'s dtype and device.
    """
    ndim = check_disp(disp)
    check_finite(disp, "disp")
    check_points(points, "points", ndim)
    batch = check_batch(points, disp, "points", "disp")
    check_points_inside(points, "points", disp.shape[2:])
    fixed = points.to(disp.device, disp.dtype).expand(batch, -1, -1)
    field = disp.expand(batch, *disp.shape[1:])
    return fixed + kernels.sample_at_points(field, fixed)
