"""Seeded synthetic data: random fields and affines, label maps, images and subjects (the toy shapes
of the first lessons are in :mod:`regedu.data.shapes`).

Every generator takes ``seed``: an ``int`` (same int, same output), a ``torch.Generator``
(advanced as numbers are drawn, so successive calls differ) or ``None`` (fresh randomness
from torch's global generator, reproducible under ``torch.manual_seed``). Random numbers
are drawn on the generator's device (the CPU for an int or ``None``) and then moved to
``device``, so one seed gives the same data on a CPU and on a GPU.

Everything is dimension-generic: ``shape`` has 2 entries for 2D, 3 for 3D, and outputs follow
docs/DESIGN.md: images ``(B, 1, *shape)`` float in [0, 1], label maps ``(B, 1, *shape)`` int64,
displacements ``(B, ndim, *shape)`` in voxels with ``warp(moving, disp)(x) = moving(x + disp(x))``.

Smooth random fields are cubic B-spline free-form deformations: Gaussian noise on a coarse
grid of control points ``smoothness`` voxels apart, interpolated with the cubic B-spline
(separably, one matrix product per axis), so a field is smooth (C2) at any size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import bspline, kernels, warps
from ..checks import (
    check_floating,
    check_image,
    check_number,
    check_positive_int,
    check_shape,
    check_template,
)
from ..filters import gaussian_smooth

__all__ = [
    "make_generator",
    "random_normal",
    "random_uniform",
    "uniform_number",
    "smooth_noise",
    "random_velocity",
    "random_disp",
    "integrate_smooth",
    "random_affine",
    "random_transform",
    "augment_intensity",
    "gaussian_blur",
    "SyntheticSubject",
    "synth_subject",
    "subject_from_disp",
    "synth_labels",
    "synth_image",
    "T2_INTENSITIES",
    "t2_like",
]


# ---------------------------------------------------------------------------
# seeds and argument checks
# ---------------------------------------------------------------------------


def make_generator(seed=None) -> torch.Generator:
    """A ``torch.Generator`` from ``seed``: an int seeds a new CPU generator, a generator is
    returned as it is, ``None`` seeds a new one from torch's global random state."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(
            f"`seed` must be an int, a torch.Generator or None, got {type(seed).__name__}. "
            f"Pass e.g. seed=0 for a reproducible result."
        )
    return torch.Generator().manual_seed(seed)


def random_normal(size, generator: torch.Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal numbers of shape ``size``, drawn on the generator's device, then moved to
    ``device`` (so one seed gives the same numbers on a CPU and a GPU)."""
    return torch.randn(size, generator=generator, device=generator.device).to(device=device, dtype=dtype)


def random_uniform(size, generator: torch.Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform numbers in [0, 1) of shape ``size``, drawn like :func:`random_normal`."""
    return torch.rand(size, generator=generator, device=generator.device).to(device=device, dtype=dtype)


def uniform_number(generator: torch.Generator, low: float, high: float) -> float:
    """One number uniform in [low, high) from ``generator`` (a random setting: a magnitude, a choice)."""
    return low + (high - low) * float(random_uniform((), generator, "cpu", torch.float64))


def _dtype_of(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating torch dtype such as torch.float32, got {dtype!r}.")
    return dtype


# ---------------------------------------------------------------------------
# smooth random fields: cubic B-spline interpolation of coarse noise
# ---------------------------------------------------------------------------


def _bspline_upsample(coarse: torch.Tensor, shape: Sequence[int], spacing: float) -> torch.Tensor:
    """Interpolate control values ``(B, C, *counts)`` to ``(B, C, *shape)`` with the cubic B-spline
    (:mod:`regedu.bspline`), one axis at a time."""
    return bspline.blend(coarse, [bspline.voxel_basis_matrix(n, spacing, coarse.device, coarse.dtype)
                                  for n in shape])


def smooth_noise(shape: Sequence[int], smoothness: float, channels: int = 1, batch: int = 1, seed=None,
                 device=None, dtype=torch.float32) -> torch.Tensor:
    """Smooth random images ``(batch, channels, *shape)``: unit Gaussian noise on control
    points ``smoothness`` voxels apart, cubic B-spline interpolated (values about N(0, 0.5))."""
    shape = check_shape(shape)
    spacing = check_number(smoothness, "smoothness", 0.0, strict=True)
    check_positive_int(channels, "channels")
    check_positive_int(batch, "batch")
    generator = make_generator(seed)
    counts = [bspline.control_point_count(n, spacing) for n in shape]
    coarse = random_normal((batch, channels, *counts), generator, device, _dtype_of(dtype))
    return _bspline_upsample(coarse, shape, spacing)


def _scale_to_max(field: torch.Tensor, magnitude: float) -> torch.Tensor:
    """Scale each batch item so that its largest absolute value is ``magnitude``."""
    peak = field.abs().flatten(1).amax(dim=1).clamp(min=torch.finfo(field.dtype).tiny)
    return field * (magnitude / peak).view(-1, *([1] * (field.dim() - 1)))


def random_velocity(shape: Sequence[int], magnitude: float = 4.0, smoothness: float = 16.0, batch: int = 1,
                    seed=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """A smooth random stationary velocity field ``(batch, ndim, *shape)``, in voxels.

    Args:
        shape: spatial size, ``(H, W)`` or ``(D, H, W)``.
        magnitude: the largest absolute component of each field, in voxels.
        smoothness: control-point spacing in voxels: larger is smoother, and the field's
            gradient is roughly ``magnitude / smoothness``.
        batch, seed, device, dtype: how many fields, the seed (module docstring), where, which float.
    """
    shape = check_shape(shape)
    magnitude = check_number(magnitude, "magnitude")
    field = smooth_noise(shape, smoothness, len(shape), batch, seed, device, dtype)
    return _scale_to_max(field, magnitude)


def random_disp(shape: Sequence[int], magnitude: float = 4.0, smoothness: float = 16.0,
                diffeomorphic: bool = False, steps: int = 7, batch: int = 1, seed=None, device=None,
                dtype=torch.float32) -> torch.Tensor:
    """A smooth random displacement field ``(batch, ndim, *shape)``, in voxels.

    ``diffeomorphic=False``: the B-spline field of :func:`random_velocity` used directly as the
    displacement (largest component = ``magnitude``); it folds (Jacobian determinant <= 0)
    when ``magnitude`` is large compared with ``smoothness``. ``diffeomorphic=True``: that
    field is a velocity integrated by scaling and squaring (:func:`regedu.warps.integrate`,
    ``steps``), which does not fold; the displacement is then about, not exactly,
    ``magnitude``. See :func:`integrate_smooth` for the grid it is integrated on.
    """
    velocity = random_velocity(shape, magnitude, smoothness, batch, seed, device, dtype)
    if not diffeomorphic:
        return velocity
    return integrate_smooth(velocity, smoothness, steps)


def integrate_smooth(velocity: torch.Tensor, smoothness: float, steps: int = 7) -> torch.Tensor:
    """:func:`regedu.warps.integrate` of a velocity that varies over ``smoothness`` voxels, on a
    coarser grid: spacing at most ``round(smoothness / 8)`` voxels (1: the velocity's own grid).

    The velocity is resized to the coarse grid (:func:`regedu.warps.resize_disp`, which also
    rescales its values), integrated there, and the displacement resized back, as VoxelMorph
    integrates at half resolution. For a B-spline field of 4 voxels this moves the result by
    about 0.01 voxel on average (0.2 at most) and is 4 (2D) or 8 (3D) times faster at
    ``smoothness=16``.
    """
    factor = max(1, round(smoothness / 8))
    shape = tuple(velocity.shape[2:])
    if factor == 1:
        return warps.integrate(velocity, steps)
    coarse = tuple(max(2, math.ceil((n - 1) / factor) + 1) for n in shape)
    disp = warps.integrate(warps.resize_disp(velocity, coarse), steps)
    return warps.resize_disp(disp, shape)


def random_affine(shape: Sequence[int], rotation: float = 10.0, scale: float = 0.1, shear: float = 0.05,
                  translation: float = 5.0, batch: int = 1, seed=None, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """A random affine ``(batch, ndim, ndim + 1)`` about the image centre (docs/DESIGN.md's convention).

    The sampling location is ``T R H S x``: scaling ``S``, then shear ``H``, rotation ``R``
    and translation ``T``, built with :mod:`regedu.warps` (``scaling``, ``shear``,
    ``rotation``, ``translation``, ``compose_affine``). Each parameter is drawn uniformly:

    Args:
        rotation: angles in ``[-rotation, rotation]`` **degrees** (one in 2D, three in 3D).
        scale: factor per axis in ``[1 / (1 + scale), 1 + scale]`` (uniform in log scale).
        shear: each off-diagonal shear in ``[-shear, shear]``.
        translation: offset per axis in ``[-translation, translation]`` voxels.
        batch, seed, device, dtype: as in :func:`random_velocity`.
    """
    shape = check_shape(shape)
    ndim = len(shape)
    limits = {name: check_number(value, name) for name, value in
              (("rotation", rotation), ("scale", scale), ("shear", shear), ("translation", translation))}
    check_positive_int(batch, "batch")
    counts = {"rotation": 1 if ndim == 2 else 3, "scale": ndim, "shear": 1 if ndim == 2 else 3,
              "translation": ndim}
    generator = make_generator(seed)
    uniform = random_uniform((batch, sum(counts.values())), generator, device, _dtype_of(dtype)) * 2 - 1
    rotations, log_scales, shears, offsets = uniform.split(list(counts.values()), dim=1)
    kwargs = {"device": uniform.device, "dtype": dtype}
    matrices = [
        warps.translation(offsets * limits["translation"], ndim, **kwargs),
        warps.rotation(torch.deg2rad(rotations * limits["rotation"]), shape, **kwargs),
        warps.shear(shears * limits["shear"], shape, **kwargs),
        warps.scaling(torch.exp(log_scales * math.log1p(limits["scale"])), shape, **kwargs),
    ]
    result = matrices[0]
    for matrix in matrices[1:]:
        result = warps.compose_affine(result, matrix)
    return result


def random_transform(shape: Sequence[int], rotation: float = 5.0, scale: float = 0.05, shear: float = 0.02,
                     translation: float = 3.0, magnitude: float = 3.0, smoothness: float = 16.0,
                     steps: int = 7, batch: int = 1, seed=None, device=None,
                     dtype=torch.float32) -> torch.Tensor:
    """Displacement ``(batch, ndim, *shape)`` of a random affine after a random diffeomorphism.

    The sampling location is ``A(x + u(x))`` with ``A = [M | t]`` from :func:`random_affine`
    and ``u`` from :func:`random_disp` (diffeomorphic), so the displacement is computed
    exactly, without interpolation: ``M x + t - x + M u(x)`` (:func:`regedu.kernels.after_affine`).
    Its Jacobian determinant is ``det(M) * det(I + grad u) > 0``: it does not fold.
    """
    generator = make_generator(seed)
    A = random_affine(shape, rotation, scale, shear, translation, batch, generator, device, dtype)
    u = random_disp(shape, magnitude, smoothness, True, steps, batch, generator, device, dtype)
    return kernels.after_affine(u, A)


# ---------------------------------------------------------------------------
# intensities
# ---------------------------------------------------------------------------


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``(B, C, *spatial)`` with a Gaussian of standard deviation ``sigma`` voxels.

    Separable (one 1D convolution per axis), edges replicated; ``sigma=0`` returns the input.
    The checked form of :func:`regedu.filters.gaussian_smooth`.
    """
    check_image(image, "image")
    check_floating(image, "image")
    sigma = check_number(sigma, "sigma")
    if sigma == 0:
        return image
    return gaussian_smooth(image, sigma)


def _per_item(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, ...)`` to broadcast over ``(B, C, *spatial)``."""
    return values.view(-1, *([1] * (ndim + 1)))


def augment_intensity(image: torch.Tensor, gamma: float = 0.2, bias: float = 0.2,
                      bias_smoothness: float | None = None, noise: float = 0.02, seed=None) -> torch.Tensor:
    """Random MRI-like intensity changes of an image in [0, 1]; the result is in [0, 1].

    In order: a gamma curve ``x ** exp(gamma * N(0, 1))`` (one per item); a smooth
    multiplicative bias field ``exp(b(x))`` with ``max |b| = bias`` (control points
    ``bias_smoothness`` voxels apart, default a quarter of the largest side) followed by
    division by the item's maximum; Gaussian noise of standard deviation ``noise``, clamped
    to [0, 1]. A zero amount skips its step. ``image`` is ``(B, C, *spatial)``, values in [0, 1].
    """
    ndim = check_image(image, "image")
    check_floating(image, "image")
    gamma = check_number(gamma, "gamma")
    bias = check_number(bias, "bias")
    noise = check_number(noise, "noise")
    generator = make_generator(seed)
    batch, spatial = image.shape[0], tuple(image.shape[2:])
    out = image.clamp(0, 1)
    if gamma > 0:
        exponent = torch.exp(gamma * random_normal(batch, generator, image.device, image.dtype))
        out = out ** _per_item(exponent, ndim)
    if bias > 0:
        spacing = bias_smoothness if bias_smoothness is not None else max(spatial) / 4
        field = smooth_noise(spatial, spacing, 1, batch, generator, image.device, image.dtype)
        out = out * torch.exp(_scale_to_max(field, bias))
        peak = out.flatten(1).amax(dim=1).clamp(min=torch.finfo(out.dtype).tiny)
        out = out / _per_item(peak, ndim)
    if noise > 0:
        out = (out + noise * random_normal(out.shape, generator, image.device, image.dtype)).clamp(0, 1)
    return out


# ---------------------------------------------------------------------------
# synthetic subjects from a template
# ---------------------------------------------------------------------------


@dataclass
class SyntheticSubject:
    """A template pushed through a known transform.

    ``deformed = warp(template, disp)`` (before intensity changes), ``image`` is ``deformed``
    after intensity changes, ``labels = warp_labels(template_labels, disp)`` (``None`` without
    template labels). Shapes ``(B, 1, *spatial)``; ``disp`` is ``(B, ndim, *spatial)``.
    """

    image: torch.Tensor
    labels: torch.Tensor | None
    disp: torch.Tensor
    deformed: torch.Tensor


def _default_template(ndim: int, device):
    from .samples import brain_slice, brain_volume

    if ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2 (axial brain slice) or 3 (brain volume), got {ndim!r}.")
    brain = brain_slice(device=device) if ndim == 2 else brain_volume(device=device)
    return brain.image, brain.labels


_check_template = check_template  # its old private name here


def synth_subject(template: torch.Tensor | None = None, template_labels: torch.Tensor | None = None,
                  ndim: int = 2, batch: int = 1, rotation: float = 5.0, scale: float = 0.05,
                  shear: float = 0.02, translation: float = 3.0, magnitude: float = 3.0,
                  smoothness: float = 16.0, gamma: float = 0.2, bias: float = 0.2, noise: float = 0.02,
                  seed=None, device=None) -> SyntheticSubject:
    """Synthetic subjects: the template through a random affine and diffeomorphism, then
    random intensity changes, with the ground-truth displacement.

    Args:
        template: ``(1, 1, *spatial)`` image in [0, 1]; ``None`` takes the MNI brain
            (:func:`~regedu.data.brain_slice` for ``ndim=2``, :func:`~regedu.data.brain_volume`
            for ``ndim=3``, tissue labels) on ``device``.
        template_labels: integer ``(1, 1, *spatial)`` map carried along, or ``None``.
        ndim: 2 or 3, used only when ``template`` is ``None``.
        batch: number of subjects.
        rotation, scale, shear, translation, magnitude, smoothness: the transform, as in
            :func:`random_transform` (degrees, fraction, fraction, voxels, voxels, voxels).
        gamma, bias, noise: the intensity changes of :func:`augment_intensity`.
        seed, device: see the module docstring.

    Returns:
        a :class:`SyntheticSubject`: ``image`` / ``deformed`` ``(batch, 1, *spatial)``,
        ``labels`` (int, or ``None``), ``disp`` ``(batch, ndim, *spatial)`` with
        ``warp(template, disp) == deformed`` and ``warp_labels(template_labels, disp) == labels``.
    """
    if template is None:
        template, template_labels = _default_template(ndim, device)
    _check_template(template, template_labels)
    device = template.device if device is None else device
    template = template.to(device)
    generator = make_generator(seed)
    disp = random_transform(tuple(template.shape[2:]), rotation, scale, shear, translation, magnitude,
                            smoothness, batch=batch, seed=generator, device=device, dtype=template.dtype)
    return subject_from_disp(template, template_labels, disp, gamma, bias, noise, generator)


def subject_from_disp(template: torch.Tensor, template_labels: torch.Tensor | None, disp: torch.Tensor,
                      gamma: float = 0.2, bias: float = 0.2, noise: float = 0.02,
                      seed=None) -> SyntheticSubject:
    """The subject ``warp(template, disp)`` (labels with ``warp_labels``) after
    :func:`augment_intensity`: the second half of :func:`synth_subject`, for a ``disp``
    ``(B, ndim, *spatial)`` you already have (e.g. a composition of two transforms)."""
    _check_template(template, template_labels)
    deformed = warps.warp(template.to(disp.device), disp)
    labels = None if template_labels is None else warps.warp_labels(template_labels.to(disp.device), disp)
    image = augment_intensity(deformed, gamma, bias, None, noise, seed)
    return SyntheticSubject(image=image, labels=labels, disp=disp, deformed=deformed)


# ---------------------------------------------------------------------------
# SynthMorph-style label maps and images
# ---------------------------------------------------------------------------


def synth_labels(shape: Sequence[int], num_labels: int = 16, smoothness: float | None = None,
                 magnitude: float | None = None, warp_smoothness: float | None = None, batch: int = 1,
                 seed=None, device=None) -> torch.Tensor:
    """SynthMorph-style random label maps ``(batch, 1, *shape)``, int64 in ``0 .. num_labels - 1``.

    ``num_labels`` smooth noise images (control points ``smoothness`` voxels apart, default
    an eighth of the largest side) are warped by one random diffeomorphism (largest velocity
    ``magnitude``, default ``smoothness``; control spacing ``warp_smoothness``, default
    ``smoothness``) that makes the shapes irregular; each voxel takes the label of the
    largest image (argmax). Labels may be absent from a small map.
    """
    shape = check_shape(shape)
    check_positive_int(num_labels, "num_labels", minimum=2)
    spacing = smoothness if smoothness is not None else max(shape) / 8
    magnitude = magnitude if magnitude is not None else spacing
    warp_spacing = warp_smoothness if warp_smoothness is not None else spacing
    generator = make_generator(seed)
    images = smooth_noise(shape, spacing, num_labels, batch, generator, device)
    disp = random_disp(shape, magnitude, warp_spacing, True, batch=batch, seed=generator, device=device)
    return warps.warp(images, disp).argmax(dim=1, keepdim=True)


def _checked_intensities(intensities, batch: int, count: int) -> torch.Tensor:
    """``intensities`` of :func:`synth_image`, checked: a floating ``(batch or 1, count)`` tensor."""
    if not isinstance(intensities, torch.Tensor) or not intensities.is_floating_point():
        raise TypeError(f"`intensities` must be a floating tensor (B, num_labels), got "
                        f"{type(intensities).__name__}.")
    if intensities.ndim != 2 or intensities.shape[0] not in (1, batch) or intensities.shape[1] != count:
        raise ValueError(f"`intensities` must have shape ({batch} or 1, {count}): one grey level per label, "
                         f"got {tuple(intensities.shape)}.")
    return intensities


def synth_image(labels: torch.Tensor, num_labels: int | None = None, blur: float = 1.0, gamma: float = 0.25,
                bias: float = 0.3, noise: float = 0.05, seed=None, dtype=torch.float32,
                intensities: torch.Tensor | None = None) -> torch.Tensor:
    """An image synthesised from a label map, in [0, 1] (SynthMorph's contrast randomisation).

    Each label gets a random intensity, uniform in [0, 1] and drawn per batch item (so
    before blurring every label is one constant intensity); the image is then blurred with
    a Gaussian of ``blur`` voxels and passed through :func:`augment_intensity`
    (``gamma``, ``bias``, ``noise``). ``labels`` is an integer map ``(B, 1, *spatial)``
    with values in ``0 .. num_labels - 1`` (default: its maximum + 1). ``intensities``
    ``(B or 1, num_labels)`` in [0, 1] gives the grey levels instead (one contrast for two
    images, each still with its own bias and noise). Output ``(B, 1, *spatial)`` on the
    labels' device.
    """
    check_image(labels, "labels")
    if labels.is_floating_point() or labels.shape[1] != 1:
        raise ValueError(
            f"`labels` must be an integer label map (B, 1, *spatial), got dtype {labels.dtype} and "
            f"shape {tuple(labels.shape)}. Convert a float map with labels.round().long()."
        )
    smallest, largest = int(labels.min()), int(labels.max())
    count = largest + 1 if num_labels is None else check_positive_int(num_labels, "num_labels")
    if smallest < 0 or largest >= count:
        raise ValueError(
            f"`labels` must lie in 0 .. {count - 1} (num_labels={count}), got values from {smallest} "
            f"to {largest}. Relabel them, e.g. with torch.unique(labels, return_inverse=True)."
        )
    generator = make_generator(seed)
    batch = labels.shape[0]
    if intensities is None:
        intensities = random_uniform((batch, count), generator, labels.device, _dtype_of(dtype))
    else:
        intensities = _checked_intensities(intensities, batch, count).to(labels.device, _dtype_of(dtype))
    image = torch.gather(intensities.expand(batch, count), 1, labels.flatten(1).long()).view(labels.shape)
    image = gaussian_blur(image, blur)
    return augment_intensity(image, gamma, bias, None, noise, generator)


# ---------------------------------------------------------------------------
# a second MRI contrast of the same anatomy, made from its tissue labels
# ---------------------------------------------------------------------------


T2_INTENSITIES = (0.0, 1.0, 0.5, 0.25)
"""T2-like grey level of each tissue of :data:`regedu.data.TISSUE_NAMES` (background, CSF-like,
grey matter, white matter): fluid brightest and white matter darkest, the reverse of T1's order."""


def _lesion_patches(tissue: torch.Tensor, share: float, smoothness: float, generator) -> torch.Tensor:
    """Bool ``(B, 1, *spatial)``: the voxels of ``tissue`` (bool, same shape) where a smooth random
    image (control points ``smoothness`` voxels apart) is in its top ``share`` within that tissue,
    so the patches cover about that share of the tissue in every item."""
    spatial = tuple(tissue.shape[2:])
    field = smooth_noise(spatial, smoothness, 1, tissue.shape[0], generator, tissue.device)
    patches = torch.zeros_like(tissue)
    if share == 0:
        return patches
    for item in range(tissue.shape[0]):
        values = field[item][tissue[item]]
        if values.numel() > 0:
            patches[item] = tissue[item] & (field[item] >= torch.quantile(values, 1 - share))
    return patches


def _check_unit_interval(value, name: str) -> float:
    value = check_number(value, name)
    if value > 1:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}.")
    return value


def t2_like(labels: torch.Tensor, intensities: Sequence[float] = T2_INTENSITIES, lesions: float = 0.12,
            lesion_intensity: float = 0.75, lesion_label: int = 3, lesion_smoothness: float | None = None,
            partial_volume: float = 0.8, gamma: float = 0.1, bias: float = 0.2, noise: float = 0.02,
            seed=None, dtype=torch.float32) -> torch.Tensor:
    """A T2-weighted-like MRI synthesised from tissue labels: a second contrast of the same anatomy.

    Made from the labels, not by remapping a T1's grey levels, so a T1 intensity does not fix the
    T2-like one (their joint histogram is not a thin curve, as it is for real pairs of scans):

    1. **tissue contrast**: each voxel takes ``intensities[label]`` (default
       :data:`T2_INTENSITIES`: CSF-like bright, grey matter mid, white matter dark);
    2. **a tissue T1 cannot separate**: lesion-like patches, smooth random blobs about
       ``lesion_smoothness`` voxels across covering a share ``lesions`` of label ``lesion_label``
       (white matter), take ``lesion_intensity`` instead (bright, like the white-matter
       hyperintensities of small-vessel disease). A T1 image of the same labels (the template)
       has ordinary white matter there. The patches are drawn first, so for an int ``seed``
       they depend only on the labels, ``lesions``, ``lesion_smoothness`` and the seed: the same
       call with ``partial_volume=0, gamma=0, bias=0, noise=0`` shows exactly where they are;
    3. **partial volume**: a voxel near a boundary holds several tissues and shows their mix: a
       Gaussian blur of ``partial_volume`` voxels of the piecewise-constant image (the same as
       weighting each tissue's intensity by its blurred share of the voxel);
    4. **its own scanner effects**: :func:`augment_intensity` with ``gamma``, ``bias`` and
       ``noise`` drawn from ``seed``, independent of any other image's.

    Args:
        labels: integer tissue map ``(B, 1, *spatial)`` (2D or 3D), values in
            ``0 .. len(intensities) - 1`` (e.g. :func:`regedu.data.brain_slice`'s labels, or a
            pair's warped ``fixed_labels``).
        intensities: grey level in [0, 1] of each label value; pass others for another contrast
            (e.g. a FLAIR-like one with dark fluid).
        lesions: share of ``lesion_label`` covered by patches, in [0, 1] (0: none).
        lesion_intensity: grey level of the patches, in [0, 1].
        lesion_label: the label value the patches lie in.
        lesion_smoothness: control-point spacing of the patches' random image, in voxels
            (default a fourteenth of the largest side: 8 voxels for 96 x 112).
        partial_volume: standard deviation of the blur, in voxels (0: hard edges).
        gamma, bias, noise: of :func:`augment_intensity` (0 skips a step).
        seed: int, generator or None (module docstring). dtype: floating dtype of the result.

    Returns:
        ``(B, 1, *spatial)`` in [0, 1], of ``dtype``, on the labels' device.
    """
    check_image(labels, "labels")
    if labels.is_floating_point() or labels.shape[1] != 1:
        raise ValueError(
            f"`labels` must be an integer label map (B, 1, *spatial), got dtype {labels.dtype} and "
            f"shape {tuple(labels.shape)}. Convert a float map with labels.round().long()."
        )
    if isinstance(intensities, str) or not isinstance(intensities, Sequence) or len(intensities) < 2:
        raise ValueError(f"`intensities` must be a sequence of at least 2 grey levels in [0, 1], one per "
                         f"label value, got {intensities!r}.")
    levels = [_check_unit_interval(value, "intensities") for value in intensities]
    smallest, largest = int(labels.min()), int(labels.max())
    if smallest < 0 or largest >= len(levels):
        raise ValueError(
            f"`labels` must lie in 0 .. {len(levels) - 1} (one of the {len(levels)} `intensities`), got "
            f"values from {smallest} to {largest}. Pass one intensity per label value."
        )
    share = _check_unit_interval(lesions, "lesions")
    lesion_level = _check_unit_interval(lesion_intensity, "lesion_intensity")
    if isinstance(lesion_label, bool) or not isinstance(lesion_label, int):
        raise TypeError(f"`lesion_label` must be an int label value, got {type(lesion_label).__name__}.")
    spatial = tuple(labels.shape[2:])
    smoothness = lesion_smoothness if lesion_smoothness is not None else max(spatial) / 14
    smoothness = check_number(smoothness, "lesion_smoothness", 0.0, strict=True)
    partial_volume = check_number(partial_volume, "partial_volume")
    dtype = _dtype_of(dtype)
    generator = make_generator(seed)
    table = torch.tensor(levels, device=labels.device, dtype=dtype)
    image = table[labels.long()]
    patches = _lesion_patches(labels == lesion_label, share, smoothness, generator)
    image = torch.where(patches, torch.tensor(lesion_level, device=labels.device, dtype=dtype), image)
    image = gaussian_blur(image, partial_volume)
    return augment_intensity(image, gamma, bias, None, noise, generator)


_MOVED_TO_SHAPES = ("disk", "square", "letter_o", "letter_c", "large_deformation_pair")


def __getattr__(name: str):
    """The toy shapes' old home: ``regedu.data.synthetic.disk`` and the others still work (they live in
    :mod:`regedu.data.shapes`, imported here only when asked for, so the two modules import no circle)."""
    if name in _MOVED_TO_SHAPES:
        from . import shapes
        return getattr(shapes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
