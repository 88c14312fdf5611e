"""Losses for registration: image similarity terms and displacement regularisers.

Every function returns a **scalar tensor to minimise** (lower is better), in the
dtype and on the device of its inputs, differentiable with respect to them.

Similarity terms take ``(fixed, warped)``: two floating image batches
``(B, C, *spatial)`` with the same channels and spatial shape (a batch of 1
broadcasts against the other). Channels are compared channel by channel.
Regularisers take a displacement ``disp`` ``(B, ndim, *spatial)`` in voxels.

===================  ======================  ===========================
loss                 range                   best value
===================  ======================  ===========================
``mse``              ``[0, inf)``            0, identical images
``ncc``              ``[-1, 0]``             -1, locally linear relation
``global_ncc``       ``[-1, 0]``             -1, globally linear relation
``mi``               ``[-log(bins), 0]``     more negative = more shared
                                             information
``mi(normalized)``   ``[-2, -1]``            -2, one image determines the other
``ngf``              ``[-1, 0]``             -1, all edges parallel
``diffusion``        ``[0, inf)``            0, constant field
``bending``          ``[0, inf)``            0, affine field
``dice_loss``        ``[0, 1]``              0, identical segmentations
``endpoint_error``   ``[0, inf)`` voxels     0, identical fields
===================  ======================  ===========================

Every name that a method, a training run, a widget or the command line accepts comes from one
registry here: :data:`SIMILARITIES` and :data:`REGULARISERS`, looked up with :func:`similarity`
and :func:`regulariser` (a clear ``ValueError`` lists the choices). Adding a term is one line,
``losses.SIMILARITIES["mine"] = my_loss``, and the methods, training and widgets accept it.

Input checks use :mod:`regedu.checks` and cost no device synchronisation, so the
losses can be called at every training step. They do not look for NaN. The filters and the
pieces shared with other modules live in :mod:`regedu.filters` (box means) and
:mod:`regedu.kernels` (standardising, squared correlation, one-hot, batch broadcasting).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import torch

from .checks import (
    check_batch,
    check_channels,
    check_disp,
    check_image,
    check_image_pair,
    check_number,
    check_positive_int,
    check_same_shape,
    check_window,
)
from .filters import box_mean
from .kernels import broadcast_batch, one_hot, squared_correlation, standardise

__all__ = [
    "mse",
    "ncc",
    "global_ncc",
    "mi",
    "ngf",
    "diffusion",
    "bending",
    "dice_loss",
    "label_mse",
    "endpoint_error",
    "SIMILARITIES",
    "REGULARISERS",
    "similarity",
    "regulariser",
]


# ---------------------------------------------------------------------------
# input checks shared by the similarity terms
# ---------------------------------------------------------------------------


def _check_min_size(x: torch.Tensor, name: str, minimum: int, why: str) -> None:
    """Raise ``ValueError`` if a spatial axis of ``x`` is shorter than ``minimum`` voxels."""
    if min(x.shape[2:]) < minimum:
        raise ValueError(
            f"`{name}` needs at least {minimum} voxels along every spatial axis {why}, "
            f"got spatial shape {tuple(x.shape[2:])}. Use a larger image or field."
        )


# ---------------------------------------------------------------------------
# mean squared error
# ---------------------------------------------------------------------------


def mse(fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
    """Mean squared intensity difference, ``mean((fixed - warped)**2)``.

    Args:
        fixed, warped: ``(B, C, *spatial)`` floating images.

    Returns:
        Scalar in ``[0, inf)`` (squared intensity units); 0 for identical images.
        Only sensible when both images share one intensity scale (same modality).
    """
    _check_image_pair(fixed, warped)
    return (fixed - warped).square().mean()


# ---------------------------------------------------------------------------
# normalised cross-correlation
# ---------------------------------------------------------------------------


# their old private names here
_check_channels, _check_image_pair, _window_sizes = check_channels, check_image_pair, check_window


def ncc(fixed: torch.Tensor, warped: torch.Tensor, window=9, eps: float = 1e-8) -> torch.Tensor:
    """Local normalised cross-correlation, returned negative: ``-mean(cc)``.

    Each image is first standardised (zero mean, unit variance over the whole
    image). Then at every voxel ``cc = cov**2 / (var_fixed * var_warped + eps)``
    is the squared correlation coefficient of the two images inside a ``window``
    box centred on the voxel (clipped to the image at the border); the loss is
    minus its mean over voxels, channels and batch.

    Args:
        fixed, warped: ``(B, C, *spatial)`` floating images, in any intensity units.
        window: box size in voxels, an odd int or one odd int per spatial axis.
        eps: added to the product of local variances (in units of the global
            variances). Windows where both local standard deviations are below
            about ``eps ** 0.25`` times the image's global one (1% for the
            default) count as flat: they give ``cc ~ 0`` with a finite gradient.
            Much smaller values let float32 rounding noise through.

    Returns:
        Scalar in ``[-1, 0]``: -1 when ``warped = a * fixed + b`` in every window
        (any ``a != 0``), 0 for no local linear relation or flat images.
        Robust to local contrast and brightness changes; for one modality.
    """
    ndim = _check_image_pair(fixed, warped)
    sizes = _window_sizes(window, ndim)
    eps = check_number(eps, "eps", strict=True)
    a, b = broadcast_batch(standardise(fixed), standardise(warped))
    channels = a.shape[1]
    # the five local means in one call: (B, 5 * C, *spatial)
    means = box_mean(torch.cat([a, b, a * a, b * b, a * b], dim=1), sizes)
    return -squared_correlation(*means.split(channels, dim=1), eps).mean()


def global_ncc(fixed: torch.Tensor, warped: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Whole-image normalised cross-correlation, returned negative: ``-mean(cc)``.

    After standardising each image as in :func:`ncc`,
    ``cc = cov**2 / (var_fixed * var_warped + eps)`` is the squared correlation
    coefficient over all voxels of one image (per batch item and channel); the
    loss is minus its mean over batch and channels. It equals :func:`ncc` with a window
    covering the whole image from every voxel (``2 * size - 1`` per axis).

    Args:
        fixed, warped: ``(B, C, *spatial)`` floating images, in any intensity units.
        eps: added to the variance product, see :func:`ncc`.

    Returns:
        Scalar in ``[-1, 0]``: -1 when ``warped = a * fixed + b`` (``a != 0``), 0 for
        uncorrelated or constant images.
    """
    _check_image_pair(fixed, warped)
    eps = check_number(eps, "eps", strict=True)
    a, b = broadcast_batch(standardise(fixed), standardise(warped))
    spatial = tuple(range(2, a.dim()))
    means = [x.mean(dim=spatial) for x in (a, b, a * a, b * b, a * b)]
    return -squared_correlation(*means, eps).mean()


# ---------------------------------------------------------------------------
# mutual information
# ---------------------------------------------------------------------------


def _flatten_pairs(fixed: torch.Tensor, warped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, *spatial)`` pair -> two ``(B * C, N)`` tensors of voxel values."""
    a, b = broadcast_batch(fixed, warped)
    return a.reshape(a.shape[0] * a.shape[1], -1), b.reshape(b.shape[0] * b.shape[1], -1)


def _sample_voxels(a: torch.Tensor, b: torch.Tensor, max_voxels: int | None,
                   seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep ``max_voxels`` random voxel positions (the same in ``a`` and ``b``) if there are more.

    Positions are drawn uniformly with replacement (cheap for millions of voxels;
    the few duplicates do not matter for a histogram). ``seed`` makes the draw
    repeatable; ``seed=None`` draws from torch's global generator.
    """
    count = a.shape[1]
    if max_voxels is None or count <= max_voxels:
        return a, b
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    index = torch.randint(count, (max_voxels,), generator=generator).to(a.device)
    return a[:, index], b[:, index]


def _parzen_weights(values: torch.Tensor, centres: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian Parzen weights of each value for each bin: ``(M, N)`` -> ``(M, N, bins)``.

    Each voxel's weights sum to 1 (a softmax over bins of ``-(v - c)**2 / (2 sigma**2)``,
    which stays finite however small ``sigma`` is).
    """
    logits = -(values.unsqueeze(-1) - centres).square() / (2 * sigma**2)
    return torch.softmax(logits, dim=-1)


def _entropy(p: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Shannon entropy ``-sum p log p`` in nats over ``dims`` (``0 log 0 = 0``)."""
    tiny = torch.finfo(p.dtype).tiny
    return -(p * torch.log(p + tiny)).sum(dim=dims)


def mi(fixed: torch.Tensor, warped: torch.Tensor, bins: int = 32, sigma: float | None = None,
       normalized: bool = False, max_voxels: int | None = 100_000, seed: int | None = 0) -> torch.Tensor:
    """Mutual information from a Parzen-window joint histogram, returned negative.

    Each voxel adds a Gaussian bump (width ``sigma``) around its intensity to
    ``bins`` bins with centres evenly spaced on ``[0, 1]``, so the joint
    histogram ``p(f, w)`` is a smooth, differentiable function of the intensities.
    ``MI = H(f) + H(w) - H(f, w)`` (nats) is large when knowing one intensity
    predicts the other, whatever the mapping between them: a term for images of
    different modalities.

    Args:
        fixed, warped: ``(B, C, *spatial)`` floating images with intensities in
            ``[0, 1]``. Values outside are **clamped** to ``[0, 1]`` (and get no
            gradient); rescale images first, e.g. ``(x - x.min()) / (x.max() - x.min())``.
        bins: number of histogram bins per image (>= 2).
        sigma: Gaussian width in intensity units; default half the bin spacing,
            ``0.5 / (bins - 1)``.
        normalized: return ``-(H(f) + H(w)) / H(f, w)`` (Studholme's normalised MI,
            less sensitive to how much of the images overlap) instead of ``-MI``.
        max_voxels: above this many voxels per image, estimate the histogram from
            ``max_voxels`` random voxels (the same in both images) to bound memory,
            which is ``O(B * C * max_voxels * bins)``. ``None`` uses every voxel.
        seed: seed of that draw (the same voxels at every call); ``None`` draws new
            voxels at every call from torch's global generator.

    Returns:
        Scalar: ``-MI`` in ``[-log(bins), 0]`` (0 for independent images), or
        ``-NMI`` in ``[-2, -1]`` with ``normalized=True``; mean over batch and channels.
    """
    _check_image_pair(fixed, warped)
    bins = check_positive_int(bins, "bins", minimum=2)
    sigma = 0.5 / (bins - 1) if sigma is None else check_number(sigma, "sigma", strict=True)
    if max_voxels is not None:
        check_positive_int(max_voxels, "max_voxels")
    a, b = _flatten_pairs(fixed, warped)
    a, b = _sample_voxels(a, b, max_voxels, seed)
    centres = torch.linspace(0, 1, bins, device=a.device, dtype=a.dtype)
    weights_a = _parzen_weights(a.clamp(0, 1), centres, sigma)  # (M, N, bins)
    weights_b = _parzen_weights(b.clamp(0, 1), centres, sigma)
    joint = weights_a.transpose(1, 2) @ weights_b / a.shape[1]  # (M, bins, bins), sums to 1
    entropy_a = _entropy(joint.sum(dim=2), dims=(1,))
    entropy_b = _entropy(joint.sum(dim=1), dims=(1,))
    entropy_joint = _entropy(joint, dims=(1, 2))
    if normalized:
        return -((entropy_a + entropy_b) / entropy_joint.clamp(min=torch.finfo(a.dtype).eps)).mean()
    return -(entropy_a + entropy_b - entropy_joint).mean()


# ---------------------------------------------------------------------------
# normalised gradient fields
# ---------------------------------------------------------------------------


def ngf(fixed: torch.Tensor, warped: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Normalised gradient fields, returned negative: ``-mean(cos2)``.

    At every voxel, ``cos2 = (g_f . g_w)**2 / ((|g_f|**2 + eps**2) (|g_w|**2 + eps**2))``
    is the squared cosine of the angle between the intensity gradients ``g`` of the
    two images (central differences, one-sided at the border, like ``numpy.gradient``),
    damped where a gradient is weaker than ``eps``. Edges count as aligned whether
    the contrast is the same or inverted, so this suits different modalities.
    The usual NGF distance of Haber and Modersitzki is ``1 + ngf``.

    Args:
        fixed, warped: ``(B, C, *spatial)`` floating images, at least 2 voxels per axis.
        eps: edge threshold in intensity units per voxel: gradients much weaker
            than ``eps`` (noise, flat regions) count as no edge. Choose it near
            the noise level (the default suits intensities in ``[0, 1]``).

    Returns:
        Scalar in ``[-1, 0]``: near -1 when every voxel has a strong gradient in
        both images and they are parallel or antiparallel; 0 where edges are
        perpendicular or absent.
    """
    ndim = _check_image_pair(fixed, warped)
    _check_min_size(fixed, "fixed", 2, "to take intensity gradients")
    eps = check_number(eps, "eps", strict=True)
    a, b = broadcast_batch(fixed, warped)
    spatial = tuple(range(2, 2 + ndim))
    grad_a = torch.stack(torch.gradient(a, dim=spatial))  # (ndim, B, C, *spatial)
    grad_b = torch.stack(torch.gradient(b, dim=spatial))
    dot = (grad_a * grad_b).sum(dim=0)
    norm2_a = grad_a.square().sum(dim=0) + eps**2
    norm2_b = grad_b.square().sum(dim=0) + eps**2
    return -(dot.square() / (norm2_a * norm2_b)).mean()


# ---------------------------------------------------------------------------
# regularisers of a displacement field
# ---------------------------------------------------------------------------


def _difference(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Forward difference ``x[i + 1] - x[i]`` along tensor axis ``axis`` (one voxel shorter)."""
    n = x.shape[axis]
    return x.narrow(axis, 1, n - 1) - x.narrow(axis, 0, n - 1)


def diffusion(disp: torch.Tensor) -> torch.Tensor:
    """Diffusion regulariser: mean squared first derivative, ``mean_x sum_ik (du_i/dx_k)**2``.

    Derivatives are forward differences ``u(x + e_k) - u(x)``, each averaged over
    the voxels where it is defined (``N_k - 1`` along its axis), then summed over
    components ``i`` and axes ``k``; averaged over the batch.

    Args:
        disp: ``(B, ndim, *spatial)`` displacement in voxels, >= 2 voxels per axis.

    Returns:
        Scalar in ``[0, inf)`` (voxels per voxel, squared): 0 for a constant field,
        exactly ``sum(M**2)`` for a linear field ``u(x) = M x + t``.
    """
    ndim = check_disp(disp)
    _check_min_size(disp, "disp", 2, "for a first difference")
    return sum(_difference(disp, 2 + k).square().sum(dim=1).mean() for k in range(ndim))


def bending(disp: torch.Tensor) -> torch.Tensor:
    """Bending energy: ``mean_x sum_i [sum_k (d2u_i/dx_k2)**2 + 2 sum_{k<l} (d2u_i/dx_k dx_l)**2]``.

    Second derivatives are finite differences that are exact for quadratic
    fields: ``u(x + e_k) - 2 u(x) + u(x - e_k)`` along an axis (``N_k - 2`` voxels)
    and ``u(x + e_k + e_l) - u(x + e_k) - u(x + e_l) + u(x)`` across two axes.
    Each squared derivative is averaged over the voxels where it is defined, then
    they are summed over components and axis pairs; averaged over the batch.

    Args:
        disp: ``(B, ndim, *spatial)`` displacement in voxels, >= 3 voxels per axis.

    Returns:
        Scalar in ``[0, inf)``: 0 for any affine field ``u(x) = M x + t``; exactly
        ``4 a**2`` for ``u_0 = a x_0**2`` and ``2 b**2`` for ``u_0 = b x_0 x_1``.
    """
    ndim = check_disp(disp)
    _check_min_size(disp, "disp", 3, "for a second difference")
    energy = 0
    for k in range(ndim):
        first = _difference(disp, 2 + k)
        energy = energy + _difference(first, 2 + k).square().sum(dim=1).mean()
        for l in range(k + 1, ndim):
            energy = energy + 2 * _difference(first, 2 + l).square().sum(dim=1).mean()
    return energy


# ---------------------------------------------------------------------------
# supervised losses: segmentations and true fields
# ---------------------------------------------------------------------------


def _check_label_map(seg: torch.Tensor, name: str) -> None:
    """An integer segmentation must be a label map with one channel."""
    if seg.shape[1] != 1:
        raise ValueError(
            f"`{name}` is an integer tensor with {seg.shape[1]} channels, shape {tuple(seg.shape)}. "
            f"Give a label map (B, 1, *spatial) of integers, or one-hot / probability maps "
            f"(B, L, *spatial) as a floating tensor ({name}.float())."
        )


def _as_probabilities(fixed_seg: torch.Tensor, warped_seg: torch.Tensor,
                      labels: Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return both segmentations as floating ``(B, L, *spatial)`` maps (integer maps one-hot)."""
    floating = [s for s in (fixed_seg, warped_seg) if s.is_floating_point()]
    dtype = floating[0].dtype if floating else torch.get_default_dtype()
    if labels is None:
        if floating:
            labels = range(floating[0].shape[1])
        else:
            labels = torch.unique(torch.cat([fixed_seg.flatten(), warped_seg.flatten()])).tolist()
    converted = []
    for seg, name in ((fixed_seg, "fixed_seg"), (warped_seg, "warped_seg")):
        if not seg.is_floating_point():
            _check_label_map(seg, name)
            values = torch.as_tensor(list(labels), device=seg.device, dtype=seg.dtype)
            seg = one_hot(seg, values, dtype)
        converted.append(seg)
    return converted[0], converted[1]


def dice_loss(fixed_seg: torch.Tensor, warped_seg: torch.Tensor,
              labels: Sequence[int] | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Soft Dice loss, ``1 - mean Dice`` over batch and labels.

    Per batch item and label, ``Dice = (2 sum(f * w) + eps) / (sum(f) + sum(w) + eps)``
    with ``f, w`` the label's maps. Every channel counts, background included:
    pass ``seg[:, 1:]`` to leave channel 0 out.

    Args:
        fixed_seg, warped_seg: floating one-hot or probability maps ``(B, L, *spatial)``
            (values in ``[0, 1]``, e.g. a warped one-hot map), or integer label maps
            ``(B, 1, *spatial)``, which are one-hot encoded with ``labels``.
        labels: label value of each channel, used to one-hot integer maps. Default:
            ``0 .. L-1`` when the other input is a floating ``(B, L, ...)`` map, or every
            value present when both are integer maps.
        eps: smoothing; a label absent from both maps has Dice 1.

    Returns:
        Scalar in ``[0, 1]``: 0 for identical one-hot maps, 1 for disjoint ones.
    """
    ndim = check_image(fixed_seg, "fixed_seg")
    check_image(warped_seg, "warped_seg", ndim=ndim)
    check_same_shape(fixed_seg, warped_seg, "fixed_seg", "warped_seg")
    check_batch(fixed_seg, warped_seg, "fixed_seg", "warped_seg")
    eps = check_number(eps, "eps", strict=True)
    f, w = broadcast_batch(*_as_probabilities(fixed_seg, warped_seg, labels))
    _check_channels(f, w, "fixed_seg (one-hot)", "warped_seg (one-hot)")
    spatial = tuple(range(2, 2 + ndim))
    overlap = (f * w).sum(dim=spatial)
    total = f.sum(dim=spatial) + w.sum(dim=spatial)
    return 1 - ((2 * overlap + eps) / (total + eps)).mean()


def label_mse(fixed_seg: torch.Tensor, warped_seg: torch.Tensor,
              labels: Sequence[int] | None = None) -> torch.Tensor:
    """Squared difference of two one-hot (or probability) label maps, summed over labels and
    averaged over batch and voxels: SynthMorph's label loss as VoxelMorph now trains it.

    Unlike :func:`dice_loss`, which averages one score per label whatever its size, every voxel
    counts the same here, so large structures weigh more. For one-hot maps the value is twice the
    share of voxels whose labels disagree.

    Args:
        fixed_seg, warped_seg: as for :func:`dice_loss` (floating ``(B, L, *spatial)`` maps, or
            integer label maps ``(B, 1, *spatial)`` one-hot encoded with ``labels``).
        labels: as for :func:`dice_loss`.

    Returns:
        Scalar in ``[0, 2]``: 0 for identical maps.
    """
    ndim = check_image(fixed_seg, "fixed_seg")
    check_image(warped_seg, "warped_seg", ndim=ndim)
    check_same_shape(fixed_seg, warped_seg, "fixed_seg", "warped_seg")
    check_batch(fixed_seg, warped_seg, "fixed_seg", "warped_seg")
    f, w = broadcast_batch(*_as_probabilities(fixed_seg, warped_seg, labels))
    _check_channels(f, w, "fixed_seg (one-hot)", "warped_seg (one-hot)")
    return (f - w).square().sum(dim=1).mean()


def endpoint_error(disp: torch.Tensor, true_disp: torch.Tensor) -> torch.Tensor:
    """Mean end-point error: Euclidean distance between two fields, averaged over voxels.

    ``mean_x |disp(x) - true_disp(x)|``, the loss of supervised registration
    when the true field is known (e.g. synthetic deformations).

    Args:
        disp, true_disp: ``(B, ndim, *spatial)`` displacements in voxels (batch 1 broadcasts).

    Returns:
        Scalar in ``[0, inf)`` voxels; 0 for identical fields. Where the two agree
        exactly its gradient is taken as 0.
    """
    ndim = check_disp(disp)
    check_disp(true_disp, "true_disp", ndim=ndim)
    check_same_shape(disp, true_disp, "disp", "true_disp")
    check_batch(disp, true_disp, "disp", "true_disp")
    return torch.linalg.vector_norm(disp - true_disp, dim=1).mean()


# ---------------------------------------------------------------------------
# the registry: every loss that can be chosen by name
# ---------------------------------------------------------------------------

SIMILARITIES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": mse,
    "ncc": ncc,
    "global_ncc": global_ncc,
    "mi": mi,
    "ngf": ngf,
}
"""Similarity terms by name, each ``f(fixed, warped, **options) -> scalar`` to minimise: the one list
that the classical methods, training (:class:`regedu.train.TrainConfig`), instance optimisation,
the widgets and the command line accept."""

REGULARISERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "diffusion": diffusion,
    "bending": bending,
}
"""Regularisers of a displacement by name, each ``f(disp) -> scalar`` to minimise."""


def _lookup(table: dict[str, Callable], name, kind: str, registry: str, signature: str) -> Callable:
    """``table[name]``; a callable ``name`` is returned as it is; anything else raises ``ValueError``."""
    if callable(name):
        return name
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"`{kind}` must be one of {list(table)} (regedu.losses.{registry}) or a function "
                         f"{signature}, got {name!r}.")
    return table[name]


def _options_of(function: Callable) -> list[str]:
    """The keyword options of a similarity term: its parameters after ``(fixed, warped)``."""
    return list(inspect.signature(function).parameters)[2:]


def similarity(name, **options) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The similarity term ``name`` as a loss ``f(fixed, warped)``, with ``options`` bound.

    ``similarity("ncc", window=5)(fixed, warped)`` is ``ncc(fixed, warped, window=5)``. One call
    can configure whichever term is chosen: an option that the chosen term does not take but
    another term does is left out (``similarity("mse", window=5)`` is :func:`mse`), so a method
    can pass its ``window`` and ``bins`` whatever the user picked. The values are checked when
    the loss is called.

    Args:
        name: a key of :data:`SIMILARITIES` (``"mse"``, ``"ncc"``, ``"global_ncc"``, ``"mi"``,
            ``"ngf"``), or a function ``f(fixed, warped) -> scalar``, returned as it is (options
            are then not used).
        **options: keyword options of the terms, e.g. ``window`` (:func:`ncc`), ``bins`` (:func:`mi`),
            ``eps``.

    Raises:
        ValueError: ``name`` is not in :data:`SIMILARITIES` (the message lists them).
        TypeError: an option that no similarity term takes (the message lists each term's options).
    """
    term = _lookup(SIMILARITIES, name, "similarity", "SIMILARITIES", "f(fixed, warped) -> scalar loss")
    if callable(name):
        return term
    accepted = {key: _options_of(function) for key, function in SIMILARITIES.items()}
    unknown = sorted(set(options) - {option for names in accepted.values() for option in names})
    if unknown:
        listing = "; ".join(f"{key}: {', '.join(names) or 'none'}" for key, names in accepted.items())
        raise TypeError(f"no similarity term takes the option(s) {unknown}. Their options are: {listing}.")
    kept = {key: value for key, value in options.items() if key in accepted[name]}
    return functools.partial(term, **kept) if kept else term


def regulariser(name) -> Callable[[torch.Tensor], torch.Tensor]:
    """The regulariser ``name`` as a loss ``f(disp)``.

    Args:
        name: a key of :data:`REGULARISERS` (``"diffusion"``, ``"bending"``), or a function
            ``f(disp) -> scalar``, returned as it is.

    Raises:
        ValueError: ``name`` is not in :data:`REGULARISERS` (the message lists them).
    """
    return _lookup(REGULARISERS, name, "regulariser", "REGULARISERS", "f(disp) -> scalar loss")
