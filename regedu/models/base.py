"""What every registration network shares: its outputs, its input checks, padding and cropping.

Every model in :mod:`regedu.models` is called as ``model(moving, fixed)`` and returns a
:class:`Registration` ``(warped, disp)``, with ``disp`` in regedu's convention (voxels, channel ``k``
along tensor axis ``k``), so that ``warp(moving, disp)`` reproduces ``warped``. Extra outputs (a
velocity, an affine matrix, per-level fields) come only when asked for with a ``return_*`` flag, in
a longer named tuple whose first two fields are the same.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .. import kernels
from ..checks import check_batch, check_finite, check_floating, check_image, check_same_shape
from ..deprecation import warn_renamed

__all__ = [
    "Registration",
    "VelocityRegistration",
    "AffineRegistration",
    "PyramidRegistration",
    "check_model_inputs",
    "broadcast_batch",
    "padding_for",
    "pad_to_multiple",
    "crop",
    "remembers_arguments",
    "PADDING_MODES",
]

PADDING_MODES = {"replicate": "replicate", "zeros": "constant"}  # a model's `padding` -> torch's pad mode


class Registration(NamedTuple):
    """Output of every model: ``warped`` ``(B, C, *spatial)``, ``disp`` ``(B, ndim, *spatial)`` in voxels."""

    warped: torch.Tensor
    disp: torch.Tensor


class VelocityRegistration(NamedTuple):
    """:class:`Registration` plus the stationary ``velocity`` whose exponential is ``disp``.

    ``velocity`` has the layout and units of ``disp`` (voxels of the input grid); regularise it
    instead of ``disp`` when training a diffeomorphic model.
    """

    warped: torch.Tensor
    disp: torch.Tensor
    velocity: torch.Tensor


class AffineRegistration(NamedTuple):
    """:class:`Registration` plus the ``affine`` ``(B, ndim, ndim + 1)`` that produced ``disp``."""

    warped: torch.Tensor
    disp: torch.Tensor
    affine: torch.Tensor


class PyramidRegistration(NamedTuple):
    """:class:`Registration` plus ``levels``: the total field after each level, coarse to fine.

    ``levels[i]`` lives on that level's grid (a quarter, a half, ... of the padded input) in that
    grid's voxels; the last entry is ``disp`` itself.
    """

    warped: torch.Tensor
    disp: torch.Tensor
    levels: list[torch.Tensor]


# ---------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------


def check_model_inputs(moving, fixed, model: nn.Module, ndim: int, channels: int) -> None:
    """Check a ``(moving, fixed)`` pair for a model built for ``ndim``-D images with ``channels`` channels.

    Raises ``TypeError``/``ValueError`` (via :mod:`regedu.checks`) for: non-tensors, images of the
    wrong dimensionality, integer images, different spatial shapes, incompatible batch sizes, a
    wrong channel count, a dtype or device different from the model's weights, NaN or infinity.
    """
    name = type(model).__name__
    for label, image in (("moving", moving), ("fixed", fixed)):
        found = check_image(image, label)
        if found != ndim:
            raise ValueError(
                f"This {name} was built for {ndim}D images, shape (B, C, {_axes(ndim)}), but `{label}` "
                f"is {found}D with shape {tuple(image.shape)}. Build the model with ndim={found}, "
                f"or give it {ndim}D images."
            )
        check_floating(image, label)
        if image.shape[1] != channels:
            raise ValueError(
                f"This {name} expects {channels} channel(s) per image, shape (B, {channels}, "
                f"{_axes(ndim)}), but `{label}` has {image.shape[1]} (shape {tuple(image.shape)}). "
                f"Build the model with in_channels={image.shape[1]}, or select the channels first."
            )
    check_same_shape(moving, fixed, "moving", "fixed")
    check_batch(moving, fixed, "moving", "fixed")
    _check_matches_weights(moving, model, "moving")
    _check_matches_weights(fixed, model, "fixed")
    check_finite(moving, "moving")
    check_finite(fixed, "fixed")


def _axes(ndim: int) -> str:
    return "H, W" if ndim == 2 else "D, H, W"


def _check_matches_weights(image: torch.Tensor, model: nn.Module, label: str) -> None:
    weight = next(model.parameters())
    if image.dtype != weight.dtype:
        raise TypeError(
            f"`{label}` has dtype {image.dtype} but the model's weights are {weight.dtype}. "
            f"Convert one of them, e.g. `{label}.to({weight.dtype})` or `model.to({image.dtype})`."
        )
    if image.device != weight.device:
        raise ValueError(
            f"`{label}` is on {image.device} but the model's weights are on {weight.device}. "
            f"Move one of them, e.g. `{label}.to('{weight.device}')` or `model.to('{image.device}')`."
        )


def broadcast_batch(moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand a batch of 1 to the other's batch size (no copy): :func:`regedu.kernels.broadcast_batch`."""
    return kernels.broadcast_batch(moving, fixed)


# ---------------------------------------------------------------------------
# any input size: pad to the network's factor, crop the field back
# ---------------------------------------------------------------------------


# The one implementation is regedu.kernels (pad_to_multiple, crop), called by the models directly;
# regedu.data.pad_to_multiple / unpad are its checked form. The functions below keep this module's
# older names and return types working.


def padding_for(spatial: Sequence[int], factor: int) -> list[tuple[int, int]]:
    """``(before, after)`` per axis that brings each size up to the next multiple of ``factor``.

    The extra voxels are split between both ends (one more at the end when odd), so the image
    stays centred in the padded grid (:func:`regedu.kernels.padding_for`, as pairs).
    """
    padding = kernels.padding_for(spatial, factor)
    return list(zip(padding.before, padding.after, strict=True))


def pad_to_multiple(x: torch.Tensor, factor: int, mode: str = "replicate"
                    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Deprecated: use :func:`regedu.data.pad_to_multiple` ``(x, factor, mode="replicate")``, which
    returns a :class:`~regedu.kernels.Padding` (this one returns ``(before, after)`` pairs).

    Pads ``(B, C, *spatial)`` so every spatial size is a multiple of ``factor``; ``mode`` is
    ``"replicate"`` (repeat the edge voxel) or ``"constant"`` (zeros). Returns the padded tensor
    and the per-axis ``(before, after)`` padding, for :func:`crop`.
    """
    warn_renamed("`regedu.models.base.pad_to_multiple`",
                 "`regedu.data.pad_to_multiple(x, multiple, mode=...)` (it returns a Padding)")
    padded, padding = kernels.pad_to_multiple(x, factor, mode)
    return padded, list(zip(padding.before, padding.after, strict=True))


def crop(x: torch.Tensor, pads) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on any ``(B, C, *spatial)`` tensor on the padded grid (contiguous).

    ``pads`` is a :class:`~regedu.kernels.Padding` or a list of ``(before, after)`` pairs, one per
    spatial axis. A displacement in voxels needs no rescaling: cropping keeps the voxel size.
    """
    if not isinstance(pads, kernels.Padding):
        pairs = [tuple(pair) for pair in pads]
        pads = kernels.Padding(tuple(b for b, _ in pairs), tuple(a for _, a in pairs))
    cropped = kernels.crop(x, pads)
    return cropped if cropped is x else cropped.contiguous()


def remembers_arguments(cls):
    """Class decorator: keep the constructor's arguments in ``model.config`` (a JSON-able dict).

    A checkpoint stores the class name and this dict, so that :func:`regedu.train.load_model`
    can rebuild the same model before loading its weights.
    """
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        self.config = {name: list(value) if isinstance(value, tuple) else value
                       for name, value in bound.arguments.items() if name != "self"}

    cls.__init__ = __init__
    return cls
