"""Input validators shared by every regedu module.

Each check raises ``TypeError`` (wrong kind of object) or ``ValueError``
(right kind, wrong content) with a message in three parts: what was
expected, what came, and what to do about it. Modules call these at their
public entry points; hot inner loops call private, unchecked helpers so that
a training step does not pay for the same check seven times.

This is the one home of regedu's validators: a module that needs a scalar
checked (a count, a step size, a weight) calls :func:`check_positive_int` or
:func:`check_number` rather than writing the test again.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch


def _describe(x: torch.Tensor) -> str:
    return f"a {x.dim()}-D tensor of shape {tuple(x.shape)} and dtype {x.dtype}"


def check_tensor(x, name: str) -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        hint = " (convert it with torch.as_tensor(...))" if hasattr(x, "shape") else ""
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}{hint}.")
    return x


def check_image(x, name: str = "image", ndim: int | None = None) -> int:
    """Check an image batch ``(B, C, *spatial)`` with 2 or 3 spatial axes.

    Returns the number of spatial dimensions. Integer images (label maps) are
    accepted; use :func:`check_floating` when a floating tensor is required.
    """
    check_tensor(x, name)
    if x.dim() not in (4, 5):
        raise ValueError(
            f"`{name}` must have shape (B, C, H, W) for 2D or (B, C, D, H, W) for 3D, "
            f"got {_describe(x)}. Add the missing batch/channel axes with "
            f"x[None, None] (single image) or x[:, None] (batch of images)."
        )
    found = x.dim() - 2
    if ndim is not None and found != ndim:
        raise ValueError(
            f"`{name}` must be {ndim}D, i.e. have {ndim + 2} axes (B, C, *spatial), "
            f"got {_describe(x)} ({found}D). Do not mix 2D and 3D inputs."
        )
    return found


def check_floating(x: torch.Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    if not x.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor, got dtype {x.dtype}. "
            f"Convert it with `{name}.float()`."
        )


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` contains NaN or infinity."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(
            f"`{name}` contains {n_nan} NaN and {n_inf} infinite values. "
            f"Replace them first, e.g. with torch.nan_to_num({name}), or find where they come from."
        )


def check_disp(disp, name: str = "disp", ndim: int | None = None,
               spatial: Sequence[int] | None = None) -> int:
    """Check a displacement field ``(B, ndim, *spatial)`` in voxels.

    Returns ``ndim``. ``spatial`` (if given) must match the field's spatial shape.
    """
    found = check_image(disp, name, ndim)
    check_floating(disp, name)
    if disp.shape[1] != found:
        raise ValueError(
            f"`{name}` must have one channel per spatial axis, i.e. shape (B, {found}, "
            f"{', '.join(str(s) for s in disp.shape[2:])}), got {_describe(disp)}: "
            f"{disp.shape[1]} channels for a {found}D field. Channel k is the displacement "
            f"along spatial axis k, in voxels."
        )
    if spatial is not None and tuple(disp.shape[2:]) != tuple(spatial):
        raise ValueError(
            f"`{name}` has spatial shape {tuple(disp.shape[2:])} but the image has "
            f"{tuple(spatial)}. Resample the field with regedu.warps.resize_disp({name}, "
            f"{tuple(spatial)}) or the image onto the field's grid."
        )
    return found


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless two image batches have the same spatial shape."""
    if tuple(a.shape[2:]) != tuple(b.shape[2:]):
        raise ValueError(
            f"`{name_a}` and `{name_b}` must share one spatial shape, got "
            f"{tuple(a.shape[2:])} and {tuple(b.shape[2:])}. Resample one onto the "
            f"other's grid first (for NIfTI files: regedu.data.io.resample_like)."
        )


def check_batch(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> int:
    """Return the common batch size of ``a`` and ``b`` (1 broadcasts)."""
    na, nb = a.shape[0], b.shape[0]
    if na != nb and 1 not in (na, nb):
        raise ValueError(
            f"`{name_a}` has batch size {na} but `{name_b}` has {nb}. Give them the "
            f"same batch size, or a batch size of 1 to apply one to all."
        )
    return max(na, nb)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as ``int``: ``TypeError`` unless it is an integer (``True``, ``3.0`` and
    ``"3"`` are not), ``ValueError`` unless it is ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {value!r} "
                        f"({_kind(value, int)}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_number(value, name: str, minimum: float = 0.0, strict: bool = False, hint: str = "",
                 maximum: float = math.inf) -> float:
    """Return ``value`` as ``float``: ``TypeError`` unless it is a real number (``True`` and
    ``"0.1"`` are not), ``ValueError`` unless it is finite, ``>= minimum`` (``> minimum`` with
    ``strict``) and ``<= maximum``. ``hint`` (a sentence) is added to the ``ValueError``'s message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({_kind(value, float)}).")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (strict and number == minimum) or number > maximum:
        wanted = ("a positive number (finite, > 0)" if strict and minimum == 0
                  else f"a finite number {'>' if strict else '>='} {minimum:g}")
        if maximum < math.inf:
            wanted = f"a number in {'(' if strict else '['}{minimum:g}, {maximum:g}]"
        raise ValueError(f"`{name}` must be {wanted}, got {value!r}." + (f" {hint}" if hint else ""))
    return number


def check_range(value, name: str) -> tuple[float, float]:
    """``value`` as a ``(low, high)`` pair of numbers ``>= 0`` with ``low <= high``; a single number
    means ``(value, value)``. For options drawn at random per item (a deformation's size, say)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        low, high = value, value
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        low, high = value
    else:
        raise TypeError(f"`{name}` must be a number or a (low, high) pair of numbers, got {value!r}.")
    low, high = check_number(low, name), check_number(high, name)
    if low > high:
        raise ValueError(f"`{name}` must be (low, high) with low <= high, got {value!r}.")
    return low, high


def check_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple: a spatial size of 2 (2D) or 3 (3D) integers, each at least 2."""
    if isinstance(shape, torch.Size | list | tuple):
        shape = tuple(shape)
        if len(shape) in (2, 3) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 2
                                        for n in shape):
            return shape
    raise ValueError(
        f"`shape` must be the spatial size, 2 integers (H, W) for 2D or 3 (D, H, W) for 3D, "
        f"each >= 2, got {shape!r}. For an image tensor pass image.shape[2:]."
    )


def check_points(points, name: str, ndim: int) -> None:
    """Check landmarks ``(B, N, ndim)`` given as (integer or floating) voxel coordinates."""
    check_tensor(points, name)
    if points.dim() != 3 or points.shape[-1] != ndim or points.shape[1] == 0:
        raise ValueError(
            f"`{name}` must have shape (B, N, {ndim}): N >= 1 landmarks of {ndim} voxel coordinates "
            f"each, in tensor axis order, got shape {tuple(points.shape)}. "
            f"A single list of landmarks of shape (N, {ndim}) becomes a batch with `{name}[None]`."
        )
    if points.dtype == torch.bool or points.is_complex():
        raise TypeError(f"`{name}` must hold real voxel coordinates, got dtype {points.dtype}.")
    check_finite(points, name)


def check_points_inside(points: torch.Tensor, name: str, spatial: Sequence[int]) -> None:
    """Raise unless every landmark lies inside the grid: ``0 <= p_k <= n_k - 1`` on each axis."""
    for axis, size in enumerate(spatial):
        coordinate = points[..., axis]
        low, high = float(coordinate.min()), float(coordinate.max())
        if low < 0 or high > size - 1:
            raise ValueError(
                f"`{name}` must be voxel coordinates inside the fixed grid, 0 .. {size - 1} along "
                f"axis {axis}, got values from {low:g} to {high:g}. Landmarks in mm must be divided "
                f"by the spacing; landmarks in (x, y, z) order may need their last axis flipped."
            )


def check_channels(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless two image batches have the same number of channels."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`{name_a}` has {a.shape[1]} channels but `{name_b}` has {b.shape[1]}: "
            f"{tuple(a.shape)} and {tuple(b.shape)}. Similarity is computed channel by channel, "
            f"so give both images the same channels (e.g. select one with x[:, :1])."
        )


def check_image_pair(fixed, warped) -> int:
    """Validate ``(fixed, warped)`` for a similarity term; return the number of spatial axes."""
    ndim = check_image(fixed, "fixed")
    check_image(warped, "warped", ndim=ndim)
    check_floating(fixed, "fixed")
    check_floating(warped, "warped")
    check_same_shape(fixed, warped, "fixed", "warped")
    check_batch(fixed, warped, "fixed", "warped")
    check_channels(fixed, warped, "fixed", "warped")
    return ndim


def check_window(window, ndim: int) -> tuple[int, ...]:
    """Turn ``window`` (an odd int, or one odd int per axis) into a tuple of ``ndim`` ints."""
    sizes = tuple(window) if isinstance(window, Sequence) else (window,) * ndim
    if len(sizes) != ndim:
        raise ValueError(
            f"`window` must be one odd int or {ndim} odd ints (one per spatial axis), got {window!r}."
        )
    for size in sizes:
        check_positive_int(size, "window")
        if size % 2 == 0:
            raise ValueError(
                f"`window` sizes must be odd so that each window is centred on its voxel, "
                f"got {window!r}. Use {size + 1} (or {size - 1}) instead of {size}."
            )
    return sizes


def check_ndim(ndim) -> int:
    """``ndim`` of a network: 2 or 3 spatial axes."""
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"`ndim` must be 2 or 3 (the number of spatial axes), got {ndim!r}.")
    return ndim


def check_features(features, name: str) -> tuple[int, ...]:
    """A network's channel counts: a non-empty sequence of positive ints, as a tuple."""
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence) or len(features) == 0:
        raise ValueError(
            f"`{name}` must be a non-empty list of channel counts, e.g. (16, 32), got {features!r}."
        )
    for count in features:
        check_positive_int(count, f"every entry of `{name}`")
    return tuple(features)


def check_template(template: torch.Tensor, labels: torch.Tensor | None) -> None:
    """A template image ``(1, 1, *spatial)`` (floating) and, if given, its integer label map of the
    same shape."""
    check_image(template, "template")
    check_floating(template, "template")
    if template.shape[:2] != (1, 1):
        raise ValueError(
            f"`template` must be one single-channel image (1, 1, *spatial), got {tuple(template.shape)}. "
            f"Use `batch=` for several subjects."
        )
    if labels is not None:
        check_tensor(labels, "template_labels")
        if labels.is_floating_point() or tuple(labels.shape) != tuple(template.shape):
            raise ValueError(
                f"`template_labels` must be an integer map shaped like the template "
                f"{tuple(template.shape)}, got dtype {labels.dtype} and shape {tuple(labels.shape)}. "
                f"Convert a float map with labels.round().long()."
            )


def check_index(index, length: int) -> int:
    """A dataset index as a plain int in ``0 .. length - 1`` (negative indices count from the end)."""
    if isinstance(index, torch.Tensor) and index.numel() == 1:
        index = int(index)
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"dataset index must be an integer, got {type(index).__name__}.")
    if not -length <= index < length:
        raise IndexError(f"index {index} is out of range for a dataset of {length} items.")
    return int(index) % length


def _kind(value, wanted: type) -> str:
    """The type of ``value``, and how to convert it when it is text that reads as a ``wanted``."""
    if isinstance(value, str):
        try:
            wanted(value)
        except ValueError:
            return "text"
        return f"text: convert it with {wanted.__name__}({value!r})"
    return type(value).__name__


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def check_device(device, name: str = "device") -> torch.device | None:
    """``device`` as a ``torch.device`` (``None`` stays ``None``), refusing one this machine lacks.

    Without this, asking for ``"cuda"`` on a machine without a GPU fails deep inside torch with
    an ``AssertionError`` ("Torch not compiled with CUDA enabled").
    """
    if device is None:
        return None
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"`{name}` must be a device such as 'cpu', 'cuda' or 'cuda:0', "
                         f"got {device!r}.") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"`{name}={device!r}` asks for a CUDA GPU, but none is available here "
            f"(torch.cuda.is_available() is False: no GPU, no driver, or a CPU-only torch). Use "
            f"{name}='cpu', or leave `{name}` out to run where the inputs are."
        )
    if found.type == "cuda" and found.index is not None and found.index >= torch.cuda.device_count():
        raise ValueError(f"`{name}={device!r}`: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"numbered from 0.")
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"`{name}={device!r}` asks for Apple's MPS, which is not available here: use "
                         f"{name}='cpu'.")
    return found


def check_precision(x: torch.Tensor, name: str) -> None:
    """Refuse half-precision images: their 3 significant digits cannot register anything.

    In float16 a displacement of 100 voxels moves in steps of 0.06 and small loss changes
    vanish, so an optimisation stalls or diverges whatever the learning rate.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"`{name}` is {x.dtype}, too coarse to register with (about 3 significant digits). Cast "
            f"the images to float32 first: `{name}.float()` (the result can be cast back)."
        )
