"""Intensities and sizes before registration: percentile rescaling to [0, 1], and padding to a multiple
of a network's down-sampling factor (and back, exactly)."""

from __future__ import annotations

import numpy as np
import torch

from ...checks import check_choice, check_finite, check_floating, check_image, check_positive_int
from ...deprecation import renamed_function
from ...kernels import Padding, crop
from ...kernels import pad_to_multiple as pad_unchecked

__all__ = ["Padding", "rescale_percentiles", "normalize_intensity", "pad_to_multiple", "unpad"]


# ---------------------------------------------------------------------------
# intensities and sizes
# ---------------------------------------------------------------------------


def _percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Percentile ``q`` (0-100) of each row of ``values`` ``(R, N)``, interpolated linearly between
    the two nearest order statistics like ``numpy.percentile``; ``kthvalue`` avoids a full sort."""
    count = values.shape[1]
    position = q / 100.0 * (count - 1)
    low = int(np.floor(position))
    weight = position - low
    below = values.kthvalue(low + 1, dim=1).values  # kthvalue counts from 1
    if weight == 0.0:
        return below
    above = values.kthvalue(min(low + 2, count), dim=1).values
    return below * (1.0 - weight) + above * weight


def rescale_percentiles(image: torch.Tensor, low: float = 1.0, high: float = 99.0) -> torch.Tensor:
    """Clip intensities at two percentiles, then rescale them linearly to ``[0, 1]``.

    Per batch item and channel: values below the ``low``-th percentile become 0,
    values above the ``high``-th become 1 (percentiles as ``numpy.percentile``,
    linear interpolation). Clipping first keeps a few very bright voxels (vessels,
    artefacts) from squeezing the rest of the image into a narrow range. A
    constant image maps to zeros. ``low=0, high=100`` is plain min-max scaling (per channel;
    :func:`regedu.classical.common.rescale_min_max` scales each item over all its channels).

    Args:
        image: ``(B, C, *spatial)`` floating tensor, finite.
        low, high: percentiles, ``0 <= low < high <= 100``.

    Returns:
        ``(B, C, *spatial)`` in ``[0, 1]``, same dtype and device.
    """
    check_image(image, "image")
    check_floating(image, "image")
    check_finite(image, "image")
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}.")
    rows = image.reshape(image.shape[0] * image.shape[1], -1)
    lo = _percentile(rows, low)[:, None]
    hi = _percentile(rows, high)[:, None]
    span = hi - lo
    scaled = (torch.minimum(torch.maximum(rows, lo), hi) - lo) / torch.where(span > 0, span, 1.0)
    return scaled.reshape(image.shape)


normalize_intensity = renamed_function(rescale_percentiles, "normalize_intensity")


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0,
                    mode: str = "constant") -> tuple[torch.Tensor, Padding]:
    """Pad every spatial axis of ``x`` to the next multiple of ``multiple``.

    A network that halves the size ``L`` times needs sizes divisible by ``2**L``
    (16 for 4 levels). The padding is split evenly between the two ends (one more
    voxel after when odd) and filled with ``value`` (``mode="constant"``) or with copies of the
    edge voxel (``mode="replicate"``, what regedu's networks do with images); a displacement field
    padded with 0 keeps its meaning, since shifting the grid does not change a displacement.

    Args:
        x: ``(B, C, *spatial)`` image, label map or field.
        multiple: positive integer, e.g. ``2 ** levels``.
        value: fill value (``mode="constant"``).
        mode: ``"constant"`` or ``"replicate"``.

    Returns:
        ``(padded, padding)``; ``unpad(padded, padding)`` gives ``x`` back exactly. When no axis
        needs padding, ``padded`` is ``x`` itself. The checked form of
        :func:`regedu.kernels.pad_to_multiple`.
    """
    check_image(x, "x")
    multiple = check_positive_int(multiple, "multiple")
    check_choice(mode, "mode", ("constant", "replicate"))
    return pad_unchecked(x, multiple, mode, value)


def unpad(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Remove what :func:`pad_to_multiple` added: the exact inverse, ``(B, C, *original)``."""
    ndim = check_image(x, "x")
    before, after = tuple(padding[0]), tuple(padding[1])
    if len(before) != ndim or len(after) != ndim:
        raise ValueError(f"`padding` is for {len(before)} spatial axes but `x` has {ndim}; "
                         f"pass the Padding that pad_to_multiple returned for this tensor.")
    sizes = x.shape[2:]
    if any(b + a > n for b, a, n in zip(before, after, sizes, strict=True)):
        raise ValueError(f"`padding` {padding} removes more voxels than `x` has {tuple(sizes)}.")
    return crop(x, Padding(before, after))
