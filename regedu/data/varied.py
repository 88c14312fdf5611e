"""Varied brain pairs, 2D and 3D, for training networks that work beyond one slice and one generator.

A network trained on one axial slice of one template, pushed through one kind of deformation,
registers that slice well and every other image badly. :class:`BrainSlicePairs` draws each pair
from a different place and makes it differently:

* **every level of the cerebrum**: a section of the 2 mm MNI volume at any axial level where
  the brain is at least a quarter of its largest extent (:func:`cerebrum_levels`), and, as an
  option, coronal and sagittal sections too (:func:`brain_section`);
* **small to large deformations**: each subject of the pair gets a random affine (rotation,
  scaling, shear, translation) after a smooth diffeomorphism whose size and smoothness are
  drawn per subject (:func:`~regedu.data.synthetic.random_transform`); the fixed subject is the
  moving one moved by its own transform, so the motion between moving and fixed stays within one
  subject's limits (from under a voxel to about the largest ``magnitude`` plus the affine);
* **intensity variation**: gamma, a smooth bias field and noise
  (:func:`~regedu.data.synthetic.augment_intensity`), plus a random blur (a coarser scanner);
* **skull-stripped or not**: the template is skull-stripped; with probability ``head`` a
  synthetic head (CSF gap, dark skull, bright scalp, :func:`add_synthetic_head`) is drawn around
  the brain of both images of the pair.

:class:`BrainVolumePairs` does the same in 3D with the whole 2 mm volume (96 x 112 x 96).

Items follow :mod:`regedu.data.datasets`: dicts of ``moving``, ``fixed`` ``(1, *shape)`` in
[0, 1], ``moving_labels``, ``fixed_labels`` int64 ``(1, *shape)`` and the true ``disp``
``(ndim, *shape)`` in voxels, with ``warp_labels(moving_labels, disp) == fixed_labels``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .. import warps
from ..checks import check_choice, check_image, check_index, check_number, check_positive_int, check_range
from .datasets import item_seed, without_batch
from .samples import brain_volume
from .synthetic import (
    augment_intensity,
    gaussian_blur,
    make_generator,
    random_transform,
    random_uniform,
    smooth_noise,
    subject_from_disp,
    uniform_number,
)

__all__ = ["ORIENTATIONS", "cerebrum_levels", "brain_section", "add_synthetic_head", "BrainSlicePairs",
           "BrainVolumePairs"]

ORIENTATIONS = ("axial", "coronal", "sagittal")
_SLICED_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # RAS volume axes x, y, z


@functools.lru_cache(maxsize=2)
def _volume(parcels: bool):
    """The 2 mm template volume (96 x 112 x 96), loaded once per process."""
    return brain_volume(resolution=2, parcels=parcels)


def cerebrum_levels(orientation: str = "axial", min_fraction: float = 0.25) -> list[int]:
    """Slice indices of the 2 mm template volume (96 x 112 x 96) whose brain area is at least
    ``min_fraction`` of the largest section's in that orientation.

    For axial sections this keeps the cerebrum from the temporal lobes to the vertex (about
    z = -50 to +74 mm, 63 levels) and drops the tips where only a few voxels of brain remain.
    """
    check_choice(orientation, "orientation", ORIENTATIONS)
    fraction = check_number(min_fraction, "min_fraction")
    mask = _volume(False).mask[0, 0]
    axis = _SLICED_AXIS[orientation]
    other = tuple(a for a in range(3) if a != axis)
    area = mask.sum(dim=other).double()
    return [int(i) for i in torch.nonzero(area >= fraction * area.max()).flatten()]


def _fit(section: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Centre-crop or zero-pad the last two axes of ``section`` to ``shape``."""
    out = section.new_zeros(*section.shape[:-2], *shape)
    source, target = [], []
    for have, want in zip(section.shape[-2:], shape, strict=True):
        start = (have - want) // 2
        lo, hi = max(start, 0), min(start + want, have)
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[(..., *target)] = section[(..., *source)]
    return out


def _cut(volume: torch.Tensor, orientation: str, level: int) -> torch.Tensor:
    """Section ``(1, 1, a, b)`` of a ``(1, 1, X, Y, Z)`` RAS volume. Axial: (x, y); coronal:
    (x, z); sagittal: (z, y), turned so that its longer side is the second axis, like an
    axial slice's."""
    section = volume.select(2 + _SLICED_AXIS[orientation], level)
    return section.transpose(-1, -2) if orientation == "sagittal" else section


def brain_section(orientation: str = "axial", level: int | None = None, shape: Sequence[int] = (96, 112),
                  parcels: bool = False, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A section of the 2 mm template: ``(image, labels, mask)``, each ``(1, 1, *shape)``.

    Args:
        orientation: ``"axial"`` (x, y), ``"coronal"`` (x, z) or ``"sagittal"`` (z, y).
        level: index along the sliced axis of the 96 x 112 x 96 volume; ``None`` the middle of
            :func:`cerebrum_levels`.
        shape: output size; the section is centre-cropped or zero-padded to it.
        parcels: labels are the 17 geometric parcels instead of the tissue classes.
        device: where the tensors go.

    Returns:
        image float32 in [0, 1], labels int64, mask bool.
    """
    check_choice(orientation, "orientation", ORIENTATIONS)
    brain = _volume(bool(parcels))
    size = brain.image.shape[2 + _SLICED_AXIS[orientation]]
    if level is None:
        levels = cerebrum_levels(orientation)
        level = levels[len(levels) // 2]
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < size:
        raise ValueError(f"`level` must be an integer in [0, {size - 1}] for {orientation} sections, "
                         f"got {level!r}. cerebrum_levels({orientation!r}) lists the useful ones.")
    if len(shape) != 2 or not all(isinstance(n, int) and n >= 8 for n in shape):
        raise ValueError(f"`shape` must be two integers >= 8, got {shape!r}.")
    parts = [_fit(_cut(t, orientation, level), shape).to(device)
             for t in (brain.image, brain.labels, brain.mask)]
    return parts[0], parts[1], parts[2]


def _dilate(grown: torch.Tensor) -> torch.Tensor:
    """One 3x3(x3) binary dilation of ``(B, 1, *spatial)`` 0/1 values, one axis at a time (three
    neighbours per axis instead of 27 at once: the same result, several times faster in 3D)."""
    for axis in range(2, grown.dim()):
        n = grown.shape[axis]
        wider = grown.clone()
        behind = torch.maximum(grown.narrow(axis, 1, n - 1), grown.narrow(axis, 0, n - 1))
        wider.narrow(axis, 1, n - 1).copy_(behind)  # each voxel takes its lower neighbour's value
        ahead = torch.maximum(wider.narrow(axis, 0, n - 1), grown.narrow(axis, 1, n - 1))
        wider.narrow(axis, 0, n - 1).copy_(ahead)  # ... and its upper neighbour's
        grown = wider
    return grown


def _distance_outside(mask: torch.Tensor, reach: int) -> torch.Tensor:
    """Chessboard distance (voxels) from ``mask`` ``(B, 1, *spatial)``, capped at ``reach + 1``:
    the number of 3x3(x3) dilations it takes to reach each voxel."""
    grown = mask.to(torch.float32)
    distance = torch.zeros_like(grown)
    for _ in range(reach + 1):
        distance = distance + (grown == 0)
        grown = _dilate(grown)
    return distance


def add_synthetic_head(image: torch.Tensor, mask: torch.Tensor, gap: float = 1.5, skull: float = 3.0,
                       scalp: float = 3.0, variation: float = 0.3, seed=None) -> torch.Tensor:
    """Draw a T1-like head around a skull-stripped brain: an image with CSF, skull and scalp.

    Outside ``mask``, by distance from the brain (voxels): a dark CSF gap of width ``gap``, the
    skull (bone: dark in T1) of width ``skull``, then the scalp (fat: bright in T1) of width
    ``scalp``, then air. Widths vary smoothly around the head by a factor ``1 +- variation``
    and the layers' intensities are drawn per item (skull 0.02-0.15, scalp 0.5-0.9); edges are
    softened by a blur of 0.7 voxel. Inside the mask the image is unchanged.

    Args:
        image: ``(B, 1, *spatial)`` in [0, 1], zero outside the brain.
        mask: bool ``(B, 1, *spatial)`` (or broadcastable batch 1), the brain.
        gap, skull, scalp: mean widths in voxels. variation: relative spread of the widths.
        seed: int, generator or None (see :mod:`regedu.data.synthetic`).

    Returns:
        ``(B, 1, *spatial)`` in [0, 1], on the image's device and dtype.
    """
    ndim = check_image(image, "image")
    if mask.dtype != torch.bool or mask.shape[1:] != image.shape[1:]:
        raise ValueError(f"`mask` must be a bool tensor shaped like the image {tuple(image.shape)}, "
                         f"got {mask.dtype} {tuple(mask.shape)}.")
    widths = [check_number(w, name, 0.0) for w, name in ((gap, "gap"), (skull, "skull"), (scalp, "scalp"))]
    variation = check_number(variation, "variation")
    generator = make_generator(seed)
    batch, spatial = image.shape[0], tuple(image.shape[2:])
    reach = math.ceil(sum(widths) * (1 + variation)) + 1
    distance = _distance_outside(mask.expand(batch, *mask.shape[1:]), reach).to(image.dtype)
    wobble = 1 + variation * smooth_noise(spatial, max(spatial) / 4, 1, batch, generator, image.device,
                                          image.dtype).clamp(-1, 1)
    edges = torch.cumsum(torch.tensor(widths, device=image.device, dtype=image.dtype), 0)
    levels = random_uniform((batch, 2), generator, image.device, image.dtype)
    skull_value = 0.02 + 0.13 * levels[:, 0]
    scalp_value = 0.5 + 0.4 * levels[:, 1]
    view = (batch,) + (1,) * (ndim + 1)
    head = torch.zeros_like(image)
    in_skull = (distance > edges[0] * wobble) & (distance <= edges[1] * wobble)
    in_scalp = (distance > edges[1] * wobble) & (distance <= edges[2] * wobble)
    head = torch.where(in_skull, skull_value.view(view), head)
    head = torch.where(in_scalp, scalp_value.view(view), head)
    head = gaussian_blur(head, 0.7)
    return torch.where(mask, image, head).clamp(0, 1)


class _VariedPairs(Dataset):
    """What the 2D and 3D datasets share: two random transforms of one template, then each image's
    own intensity changes and blur. Subclasses set ``shape`` and define ``_template(generator)``."""

    def _set_options(self, length, parcels, rotation, scale, shear, translation, magnitude, smoothness, gamma,
                     bias, noise, blur, head, seed, device) -> None:
        self.length = check_positive_int(length, "length")
        self.parcels = bool(parcels)
        self.affine = dict(rotation=check_number(rotation, "rotation"), scale=check_number(scale, "scale"),
                           shear=check_number(shear, "shear"),
                           translation=check_number(translation, "translation"))
        self.magnitude = check_range(magnitude, "magnitude")
        self.smoothness = check_range(smoothness, "smoothness")
        if self.smoothness[0] <= 0:
            raise ValueError(f"`smoothness` must be > 0, got {smoothness!r}.")
        self.gamma, self.bias = check_number(gamma, "gamma"), check_number(bias, "bias")
        self.noise, self.blur = check_number(noise, "noise"), check_number(blur, "blur")
        self.head = check_number(head, "head")
        if self.head > 1:
            raise ValueError(f"`head` is a probability in [0, 1], got {head!r}.")
        self.seed = seed
        self.device = device

    def __len__(self) -> int:
        return self.length

    def _with_head(self, image: torch.Tensor, mask: torch.Tensor, generator) -> torch.Tensor:
        """``image`` with a synthetic head around the brain, with probability ``self.head``."""
        if uniform_number(generator, 0, 1) < self.head:
            return add_synthetic_head(image, mask, seed=generator)
        return image

    def _transform(self, generator) -> torch.Tensor:
        magnitude = uniform_number(generator, *self.magnitude)
        smoothness = float(round(uniform_number(generator, *self.smoothness)))
        return random_transform(self.shape, **self.affine, magnitude=magnitude, smoothness=smoothness,
                                seed=generator, device=self.device)

    def _appearance(self, image: torch.Tensor, generator) -> torch.Tensor:
        """Intensity changes and blur of one image."""
        noise = uniform_number(generator, 0, self.noise)
        image = augment_intensity(image, self.gamma, self.bias, None, noise, generator)
        return gaussian_blur(image, uniform_number(generator, 0, self.blur))

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = check_index(index, self.length)
        generator = make_generator(item_seed(self.seed, index))
        template, labels = self._template(generator)
        first, second = self._transform(generator), self._transform(generator)
        moving = subject_from_disp(template, labels, first, 0.0, 0.0, 0.0, generator)
        fixed = subject_from_disp(template, None, warps.compose(first, second), 0.0, 0.0, 0.0, generator)
        return without_batch({
            "moving": self._appearance(moving.image, generator),
            "fixed": self._appearance(fixed.image, generator),
            "moving_labels": moving.labels,
            "fixed_labels": warps.warp_labels(moving.labels, second),
            "disp": second,
        })


class BrainSlicePairs(_VariedPairs):
    """Varied 2D brain pairs (see the module docstring), with the ground-truth field.

    Item ``i``: a section of the template (orientation and level drawn from ``orientations``
    and :func:`cerebrum_levels`), with a synthetic head with probability ``head``; a first
    random transform ``d1`` makes the moving subject, a second ``d2`` moves it to the fixed
    subject (``fixed = warp(template, compose(d1, d2))``, one interpolation), ``disp = d2``.
    Each image then gets its own intensity changes and blur.

    Args:
        length: number of items.
        orientations: any of ``"axial"``, ``"coronal"``, ``"sagittal"``.
        shape: image size (default 96 x 112, the 2 mm axial field of view).
        parcels: 17 geometric parcels as labels instead of the 3 tissue classes.
        rotation, scale, shear, translation: each subject's affine limits (degrees, fraction,
            fraction, voxels); the pair's relative affine, ``disp``'s, stays within them.
        magnitude, smoothness: ``(low, high)`` ranges, in voxels, of each subject's smooth
            deformation size and control spacing, drawn per subject (the spacing rounded to
            whole voxels, so the B-spline weights are computed once per spacing).
        gamma, bias: of :func:`~regedu.data.synthetic.augment_intensity`; noise: the largest
            noise standard deviation (drawn per image in [0, noise]); blur: largest Gaussian
            blur in voxels (drawn per image in [0, blur]).
        head: probability that a pair shows a head around the brain (0: always skull-stripped).
        seed: base seed; item ``i`` uses :func:`~regedu.data.datasets.item_seed` ``(seed, i)``.
        device: where items are made (default CPU, for DataLoader workers).
    """

    def __init__(self, length: int = 64, orientations: Sequence[str] = ("axial",),
                 shape: Sequence[int] = (96, 112), parcels: bool = False, rotation: float = 7.0,
                 scale: float = 0.07, shear: float = 0.04, translation: float = 4.0,
                 magnitude: float | Sequence[float] = (0.5, 7.0),
                 smoothness: float | Sequence[float] = (10.0, 24.0), gamma: float = 0.3, bias: float = 0.3,
                 noise: float = 0.04, blur: float = 1.0, head: float = 0.5, seed: int = 0, device=None):
        if isinstance(orientations, str) or not orientations:
            raise ValueError(f"`orientations` must be a non-empty list from {ORIENTATIONS}, got "
                             f"{orientations!r}.")
        self.orientations = tuple(check_choice(o, "orientation", ORIENTATIONS) for o in orientations)
        self.levels = {o: cerebrum_levels(o) for o in self.orientations}
        self.shape = tuple(shape)
        self._set_options(length, parcels, rotation, scale, shear, translation, magnitude, smoothness, gamma,
                          bias, noise, blur, head, seed, device)

    def _template(self, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A random section, with a head drawn around it with probability ``self.head``."""
        orientation = self.orientations[int(uniform_number(generator, 0, len(self.orientations)))]
        levels = self.levels[orientation]
        level = levels[int(uniform_number(generator, 0, len(levels)))]
        image, labels, mask = brain_section(orientation, level, self.shape, self.parcels, self.device)
        return self._with_head(image, mask, generator), labels


class BrainVolumePairs(_VariedPairs):
    """Varied 3D brain pairs: the whole 2 mm template volume (96 x 112 x 96), with or without a
    synthetic head, through two random transforms of random size, with intensity changes and blur,
    and the ground-truth field; the 3D twin of :class:`BrainSlicePairs` (same arguments, less
    ``orientations`` and ``shape``). Items are ``(1, 96, 112, 96)``; making one takes about a
    second on a CPU core, a few milliseconds on a GPU (``device="cuda"``).
    """

    def __init__(self, length: int = 16, parcels: bool = False, rotation: float = 7.0, scale: float = 0.07,
                 shear: float = 0.04, translation: float = 4.0,
                 magnitude: float | Sequence[float] = (0.5, 7.0),
                 smoothness: float | Sequence[float] = (12.0, 32.0), gamma: float = 0.3, bias: float = 0.3,
                 noise: float = 0.04, blur: float = 1.0, head: float = 0.5, seed: int = 0, device=None):
        self.shape = tuple(_volume(False).image.shape[2:])
        self._set_options(length, parcels, rotation, scale, shear, translation, magnitude, smoothness, gamma,
                          bias, noise, blur, head, seed, device)

    def _template(self, generator) -> tuple[torch.Tensor, torch.Tensor]:
        brain = _volume(self.parcels)
        image, labels, mask = (t.to(self.device) for t in (brain.image, brain.labels, brain.mask))
        return self._with_head(image, mask, generator), labels
