"""FlipAveraged: a trained network run on mirror images of the pair, its fields averaged.

A network trained on data that look the same mirrored (brains are nearly symmetric left to right;
SynthMorph's random label maps have no preferred direction at all) should predict the mirror image of
its field when given the mirror images of the pair. It never does exactly: its errors differ from one
mirror image to the next, and averaging the fields cancels part of them. This is *test-time
augmentation*: no training, no optimisation on the pair, ``2 ** len(axes)`` forward passes instead of
one. Mirroring axis ``a`` of the pair mirrors the field and flips the sign of its ``a`` component, so
each prediction is mapped back that way before the average.

Averaging fields keeps a smooth field smooth, but the mean of diffeomorphisms need not be one: check
``regedu.metrics.folding_fraction`` when the fields disagree a lot.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from .. import kernels
from ..checks import check_image
from .base import Registration

__all__ = ["FlipAveraged", "flip_field", "check_axes"]


def flip_field(disp: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """The mirror image of a displacement field: ``disp`` ``(B, ndim, *spatial)`` in voxels mirrored
    along the spatial ``axes`` (0 is the first spatial axis), with the sign of those components flipped.
    Applying it twice gives ``disp`` back."""
    if not axes:
        return disp
    mirrored = disp.flip([2 + axis for axis in axes])
    sign = torch.ones(disp.shape[1], dtype=disp.dtype, device=disp.device)
    sign[list(axes)] = -1
    return mirrored * sign.view(1, -1, *([1] * (disp.ndim - 2)))


def check_axes(axes, ndim: int = 3, name: str = "axes") -> tuple[int, ...]:
    """``axes`` as a tuple of distinct spatial axes of an ``ndim``-D image (0 to ``ndim - 1``), or a
    ``TypeError``/``ValueError`` that says what was expected (``name`` is the argument's name)."""
    if isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence):
        raise TypeError(f"`{name}` must be a sequence of spatial axes, e.g. (0,) or (), got {axes!r}.")
    axes = tuple(axes)
    if len(set(axes)) != len(axes) or not all(isinstance(a, int) and not isinstance(a, bool)
                                              and 0 <= a < ndim for a in axes):
        raise ValueError(f"`{name}` must be distinct spatial axes of a {ndim}D image (0 to {ndim - 1}), "
                         f"e.g. (0,) to average over left-right mirror images, got {axes}.")
    return axes


def _subsets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes``, the empty one (the pair as given) first."""
    return [subset for size in range(len(axes) + 1) for subset in itertools.combinations(axes, size)]


class FlipAveraged(nn.Module):
    """``network`` applied to the pair and to its mirror images along ``axes``, the fields averaged.

    Args:
        network: a registration network ``forward(moving, fixed) -> (warped, disp, ...)``.
        axes: spatial axes (0 is the first spatial axis) to mirror; every combination is used, so
            ``axes=(0,)`` runs the network twice and ``axes=(0, 1)`` four times. ``()`` is the network
            alone.

    ``forward(moving, fixed)`` takes ``(B, C, *spatial)`` images and returns
    :class:`~.base.Registration` ``(warped, disp)``: ``disp`` ``(B, ndim, *spatial)`` in voxels is the
    mean of the mapped-back fields, ``warped = regedu.warps.warp(moving, disp)``.
    """

    def __init__(self, network: nn.Module, axes: Sequence[int] = (0,)):
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"`network` must be a torch.nn.Module, got {type(network).__name__}.")
        self.network = network
        self.axes = check_axes(axes)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> Registration:
        ndim = check_image(moving, "moving")
        check_image(fixed, "fixed", ndim=ndim)
        check_axes(self.axes, ndim)
        total = None
        for subset in _subsets(self.axes):
            dims = [2 + axis for axis in subset]
            mirrored = (moving.flip(dims), fixed.flip(dims)) if dims else (moving, fixed)
            disp = flip_field(self.network(*mirrored)[1], subset)
            total = disp if total is None else total + disp
        disp = total / 2 ** len(self.axes)
        return Registration(kernels.resample(moving, disp), disp)
