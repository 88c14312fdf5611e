"""torch Datasets of registration pairs: synthetic subjects, SynthMorph pairs, NIfTI files.

Every item is a dict of tensors *without* the batch axis, so a ``DataLoader`` batches them:

* ``moving``, ``fixed``: float32 ``(1, *spatial)`` images in [0, 1];
* ``moving_labels``, ``fixed_labels``: int64 ``(1, *spatial)``, where known;
* ``disp``: float ``(ndim, *spatial)``, the ground truth in voxels, where known, such that
  ``warp(moving, disp)`` is the fixed image (before its intensity changes) and
  ``warp_labels(moving_labels, disp) == fixed_labels``.

Synthetic items are deterministic: item ``i`` is generated from a seed derived from the
dataset's ``seed`` and ``i`` (:func:`item_seed`), so ``ds[i]`` is the same every time, in
every worker process, and a validation set is fixed by its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import warps
from ..checks import (
    check_choice,
    check_index,
    check_number,
    check_positive_int,
    check_range,
    check_shape,
    check_template,
)
from .pairs import collect_pairs, read_csv_table  # noqa: F401  (read_csv_table: its old home was here)
from .samples import brain_slice, brain_volume
from .shapes import large_deformation_pair
from .synthetic import (
    make_generator,
    random_transform,
    random_uniform,
    subject_from_disp,
    synth_image,
    synth_labels,
    uniform_number,
)

__all__ = ["item_seed", "TemplatePairs", "SynthMorphPairs", "LargeDeformationPairs", "NiftiPairs"]


def item_seed(seed: int, index: int) -> int:
    """A seed for item ``index`` of a dataset seeded with ``seed`` (numpy's SeedSequence, so
    neighbouring seeds and indices give unrelated streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


_check_index = check_index  # its old private name here


def without_batch(item: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Drop the batch axis of every tensor and every ``None`` entry."""
    return {key: value[0] for key, value in item.items() if value is not None}


class TemplatePairs(Dataset):
    """Pairs of synthetic subjects made from a template, with the ground-truth field.

    Args:
        length: number of items.
        mode: ``"atlas_to_subject"``: moving is the template (the atlas), fixed a synthetic
            subject, ``disp`` its transform. ``"subject_to_subject"``: moving is a subject
            ``warp(template, d1)``, fixed is that subject moved by a second random transform
            ``d2``, i.e. ``warp(template, compose(d1, d2))`` (one interpolation, as sharp as
            the moving image), and ``disp = d2`` (so the fixed subjects vary about twice as much
            as the moving ones). The fixed labels are ``warp_labels(moving_labels, d2)``, so the
            true field reaches Dice 1; they can differ from the fixed image's edges by a voxel.
        ndim: 2 (axial slice, :func:`~regedu.data.brain_slice`) or 3
            (:func:`~regedu.data.brain_volume`) when ``template`` is ``None``.
        template, template_labels: a ``(1, 1, *spatial)`` image in [0, 1] and an integer map;
            default the MNI brain with tissue labels (``parcels=True``: geometric parcels).
        seed: base seed; item ``i`` uses :func:`item_seed` ``(seed, i)``.
        rotation, scale, shear, translation, magnitude, smoothness: the random transform
            (:func:`~regedu.data.synthetic.random_transform`).
        gamma, bias, noise: intensity changes of each subject
            (:func:`~regedu.data.synthetic.augment_intensity`); the atlas keeps its intensities.
        device: where items are generated and returned. ``None`` (the template's device, CPU by
            default) suits DataLoader workers; for training on a GPU, ``device="cuda"`` with
            ``num_workers=0`` generates far faster than CPU workers. Items do not depend on it.
    """

    def __init__(self, length: int = 64, mode: str = "atlas_to_subject", ndim: int = 2,
                 template: torch.Tensor | None = None, template_labels: torch.Tensor | None = None,
                 parcels: bool = False, seed: int = 0, rotation: float = 5.0, scale: float = 0.05,
                 shear: float = 0.02, translation: float = 3.0, magnitude: float = 3.0,
                 smoothness: float = 16.0, gamma: float = 0.2, bias: float = 0.2, noise: float = 0.02,
                 device=None):
        self.length = check_positive_int(length, "length")
        self.mode = check_choice(mode, "mode", ("atlas_to_subject", "subject_to_subject"))
        if template is None:
            if ndim not in (2, 3):
                raise ValueError(f"`ndim` must be 2 or 3, got {ndim!r}.")
            brain = (brain_slice if ndim == 2 else brain_volume)(parcels=parcels)
            template, template_labels = brain.image, brain.labels
        check_template(template, template_labels)
        device = template.device if device is None else torch.device(device)
        self.template = template.to(device)
        self.template_labels = None if template_labels is None else template_labels.to(device)
        self.seed = seed
        self.transform_options = dict(rotation=rotation, scale=scale, shear=shear, translation=translation,
                                      magnitude=magnitude, smoothness=smoothness)
        self.intensity_options = dict(gamma=gamma, bias=bias, noise=noise)

    def __len__(self) -> int:
        return self.length

    def _random_transform(self, generator) -> torch.Tensor:
        shape = tuple(self.template.shape[2:])
        return random_transform(shape, **self.transform_options, seed=generator, device=self.template.device,
                                dtype=self.template.dtype)

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = check_index(index, self.length)
        generator = make_generator(item_seed(self.seed, index))
        first = self._random_transform(generator)
        if self.mode == "atlas_to_subject":
            fixed = subject_from_disp(self.template, self.template_labels, first, **self.intensity_options,
                                      seed=generator)
            atlas_labels = None if self.template_labels is None else self.template_labels.clone()
            return without_batch({"moving": self.template.clone(), "fixed": fixed.image,
                                   "moving_labels": atlas_labels, "fixed_labels": fixed.labels,
                                   "disp": first})
        second = self._random_transform(generator)
        moving = subject_from_disp(self.template, self.template_labels, first, **self.intensity_options,
                                   seed=generator)
        fixed = subject_from_disp(self.template, None, warps.compose(first, second),
                                  **self.intensity_options, seed=generator)
        fixed_labels = None if moving.labels is None else warps.warp_labels(moving.labels, second)
        return without_batch({"moving": moving.image, "fixed": fixed.image, "moving_labels": moving.labels,
                               "fixed_labels": fixed_labels, "disp": second})


class SynthMorphPairs(Dataset):
    """SynthMorph-style pairs: random label maps, images synthesised from them, known field.

    Item ``i``: a label map from :func:`~regedu.data.synthetic.synth_labels` is the moving
    labels; a random transform ``disp`` (:func:`~regedu.data.synthetic.random_transform`: an
    affine within ``rotation``, ``scale``, ``shear``, ``translation``, after a random
    diffeomorphism whose size is drawn from ``magnitude``) gives the fixed labels
    ``warp_labels(moving_labels, disp)``; each label map gets a random-contrast image
    (:func:`~regedu.data.synthetic.synth_image`), so the network cannot rely on intensities and
    learns from shapes (Hoffmann et al., SynthMorph, IEEE TMI 2022).

    The defaults are chosen for brain sections at 2 mm (``regedu.data.BrainSlicePairs``, whose pairs
    differ by an affine of up to about 7 degrees and 7 % and deformations of up to about 7 voxels).
    ``same_contrast`` is a short-budget training aid, not in the paper: with that probability both
    images of a pair share one random contrast (still random per pair). Those pairs let a network
    learn to match shapes within a few hundred steps; the others, each image with its own contrast,
    teach it to ignore contrast. With ``same_contrast=0`` (the paper's setting) a network trained on a
    CPU for a few thousand steps barely starts to learn (``benchmarks/synthmorph.py`` compares them).

    Args:
        length: number of items. shape: spatial size, 2 or 3 integers.
        num_labels, label_smoothness: of the label maps (see ``synth_labels``'s ``smoothness``).
        rotation, scale, shear, translation: the pair's affine limits (degrees, fraction, fraction,
            voxels); 0 for none.
        magnitude: the pair's deformation size in voxels, a number or a ``(low, high)`` range drawn
            per item; smoothness: its control spacing (voxels).
        same_contrast: probability in [0, 1] that both images share one contrast.
        blur, gamma, bias, noise: of the synthesised images.
        seed: base seed; item ``i`` uses :func:`item_seed` ``(seed, i)``.
        device: where items are generated and returned (default CPU, for DataLoader workers);
            see :class:`TemplatePairs`.
    """

    def __init__(self, length: int = 64, shape: Sequence[int] = (96, 112), num_labels: int = 16,
                 label_smoothness: float | None = None, rotation: float = 10.0, scale: float = 0.1,
                 shear: float = 0.05, translation: float = 6.0,
                 magnitude: float | Sequence[float] = (1.0, 10.0), smoothness: float = 16.0,
                 same_contrast: float = 0.5, blur: float = 1.0, gamma: float = 0.25, bias: float = 0.3,
                 noise: float = 0.05, seed: int = 0, device=None):
        self.length = check_positive_int(length, "length")
        self.shape = check_shape(shape)
        check_positive_int(num_labels, "num_labels", minimum=2)
        self.same_contrast = check_number(same_contrast, "same_contrast")
        if self.same_contrast > 1:
            raise ValueError(f"`same_contrast` is a probability in [0, 1], got {same_contrast!r}.")
        self.magnitude = check_range(magnitude, "magnitude")
        self.seed = seed
        self.device = device
        self.label_options = dict(num_labels=num_labels, smoothness=label_smoothness)
        self.transform_options = dict(rotation=check_number(rotation, "rotation"),
                                      scale=check_number(scale, "scale"), shear=check_number(shear, "shear"),
                                      translation=check_number(translation, "translation"),
                                      smoothness=check_number(smoothness, "smoothness", strict=True))
        self.image_options = dict(num_labels=num_labels, blur=blur, gamma=gamma, bias=bias, noise=noise)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = check_index(index, self.length)
        generator = make_generator(item_seed(self.seed, index))
        moving_labels = synth_labels(self.shape, **self.label_options, seed=generator, device=self.device)
        magnitude = uniform_number(generator, *self.magnitude)
        disp = random_transform(self.shape, **self.transform_options, magnitude=magnitude, seed=generator,
                                device=self.device)
        fixed_labels = warps.warp_labels(moving_labels, disp)
        contrast = None   # each image draws its own grey level per label ...
        if uniform_number(generator, 0, 1) < self.same_contrast:   # ... or both share one contrast
            contrast = random_uniform((1, self.image_options["num_labels"]), generator, moving_labels.device,
                             torch.float32)
        return without_batch({
            "moving": synth_image(moving_labels, **self.image_options, seed=generator, intensities=contrast),
            "fixed": synth_image(fixed_labels, **self.image_options, seed=generator, intensities=contrast),
            "moving_labels": moving_labels, "fixed_labels": fixed_labels, "disp": disp,
        })


class LargeDeformationPairs(Dataset):
    """The large-deformation toy as a dataset: a disk pushed further than its own radius.

    Item ``i`` is :func:`~regedu.data.shapes.large_deformation_pair` of kind ``"large_warp"``:
    a random direction and a displacement of the image centre drawn uniformly between
    ``min_magnitude`` and ``magnitude`` voxels, with the true ``disp`` and the labels (1 inside
    the disk). Single-scale networks, whose receptive field and smooth fields favour small
    motions, do badly here; coarse-to-fine ones do not (notebook 06, ``benchmarks/learned.py``).

    Args:
        length: number of items. shape: spatial size, 2 or 3 integers.
        magnitude, min_magnitude: range of the centre's displacement, in voxels.
        seed: base seed; item ``i`` uses :func:`item_seed` ``(seed, i)``. device: where items are made.
    """

    def __init__(self, length: int = 64, shape: Sequence[int] = (64, 64), magnitude: float = 12.0,
                 min_magnitude: float | None = None, seed: int = 0, device=None):
        self.length = check_positive_int(length, "length")
        self.shape = check_shape(shape)
        self.magnitude = float(magnitude)
        self.min_magnitude = self.magnitude if min_magnitude is None else float(min_magnitude)
        if not 0 <= self.min_magnitude <= self.magnitude:
            raise ValueError(f"need 0 <= min_magnitude <= magnitude, got {self.min_magnitude} and "
                             f"{self.magnitude}.")
        self.seed = seed
        self.device = device

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = check_index(index, self.length)
        seed = item_seed(self.seed, index)
        fraction = float(random_uniform((), make_generator(seed + 1), "cpu", torch.float64))
        magnitude = self.min_magnitude + fraction * (self.magnitude - self.min_magnitude)
        pair = large_deformation_pair(self.shape, "large_warp", magnitude=magnitude, seed=seed,
                                      device=self.device)
        return without_batch(pair)


# ---------------------------------------------------------------------------
# NIfTI files (which files make the pairs: regedu.data.pairs)
# ---------------------------------------------------------------------------


class NiftiPairs(Dataset):
    """Pairs of NIfTI images (with optional label maps), checked when the dataset is built.

    Args:
        pairs: one of (read by :func:`~regedu.data.pairs.collect_pairs`)
            * a list of ``(moving, fixed)`` or ``(moving, fixed, moving_labels, fixed_labels)``
              paths, or of dicts with those keys;
            * a CSV file with a header row ``moving,fixed[,moving_labels,fixed_labels]``
              (empty label cells allowed);
            * a folder: every ordered pair of its images, with ``<name>_labels.nii.gz`` (or
              ``_seg``) beside an image taken as its label map.
        root: folder that relative paths start from (default: the CSV's folder, the folder
            itself, or the working directory for a list).
        normalize: rescale intensities to [0, 1] (percentiles 1-99,
            :func:`~regedu.data.io.rescale_percentiles`).
        pad_multiple: pad every image and label map to a multiple of this size
            (:func:`~regedu.data.io.pad_to_multiple`), e.g. 16 for a 4-level U-Net.
        check: load every file once now (default), so that a missing, unreadable, non-integer
            label map or a shape mismatch is reported at once, naming the file and the fix.

    Items hold ``moving``, ``fixed`` float32 ``(1, *spatial)`` and, where given,
    ``moving_labels``, ``fixed_labels`` int64 ``(1, *spatial)``; files are read when the item
    is asked for (in canonical RAS order, :func:`~regedu.data.io.load_nifti`).
    """

    def __init__(self, pairs, root=None, normalize: bool = True, pad_multiple: int | None = None,
                 check: bool = True):
        self.normalize = normalize
        self.pad_multiple = None if pad_multiple is None else check_positive_int(pad_multiple, "pad_multiple")
        self.pairs = collect_pairs(pairs, root)  # rows of existing files (regedu.data.pairs)
        if check:
            self.check()

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, key: str, path: Path) -> torch.Tensor:
        """One file as ``(1, 1, *spatial)``, preprocessed: images float in [0, 1], labels int64."""
        from .io import load_labels, load_nifti, pad_to_multiple, rescale_percentiles

        if key.endswith("labels"):
            volume = load_labels(path).image
        else:
            volume = load_nifti(path).image
            if self.normalize:
                volume = rescale_percentiles(volume)
        if self.pad_multiple is not None:
            volume, _ = pad_to_multiple(volume, self.pad_multiple)
        return volume

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        pair = self.pairs[check_index(index, len(self.pairs))]
        return {key: self._load(key, path)[0] for key, path in pair.items() if path is not None}

    def check(self) -> None:
        """Load every file once: raise naming the first file that is missing, unreadable, not an
        integer label map, or of another shape than the first image after preprocessing."""
        shapes: dict[Path, tuple[int, ...]] = {}
        reference = None
        for pair in self.pairs:
            for key, path in pair.items():
                if path is None:
                    continue
                if path not in shapes:
                    shapes[path] = tuple(self._load(key, path).shape[2:])
                reference = reference or (path, shapes[path])
                if shapes[path] != reference[1]:
                    raise ValueError(
                        f"{str(path)!r} ({key}) has shape {shapes[path]} after preprocessing but "
                        f"{str(reference[0])!r} has {reference[1]}; every image and label map must share "
                        f"one grid. Resample them onto one reference grid first "
                        f"(regedu.data.io.resample_like), then list the resampled files."
                    )
