"""LightVoxelMorph: VoxelMorph with depthwise-separable convolutions and half the channels.

Each 3x3(x3) convolution becomes a per-channel 3x3(x3) convolution followed by a 1x1(x1) one that
mixes channels (see :func:`regedu.models.unet.conv_layer`), and every level has half of
VoxelMorph's channels: about 1/35 of the weights and about half the time on a CPU. Memory is
another matter: a separable block keeps two tensors per convolution for the backward pass, so
training needs about as much memory as VoxelMorph (``benchmarks/results/learned_speed_cpu.md``).
It trains on a laptop CPU, at some cost in accuracy; the call is the same as VoxelMorph's.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import remembers_arguments
from .voxelmorph import VoxelMorph

__all__ = ["LightVoxelMorph"]


@remembers_arguments
class LightVoxelMorph(VoxelMorph):
    """:class:`~.voxelmorph.VoxelMorph` with separable convolutions and fewer channels.

    Same arguments and call as :class:`~.voxelmorph.VoxelMorph`, with other defaults for
    ``encoder`` and ``decoder``, and ``separable=True``.
    """

    def __init__(self, ndim: int, diffeomorphic: bool = False, int_steps: int = 7, int_downsize: int = 2,
                 in_channels: int = 1, encoder: Sequence[int] = (8, 16, 16, 16),
                 decoder: Sequence[int] = (16, 16, 16, 16, 16, 8, 8), padding: str = "replicate",
                 channels_last: bool = True):
        super().__init__(ndim, diffeomorphic, int_steps, int_downsize, in_channels, encoder, decoder,
                         separable=True, padding=padding, channels_last=channels_last)
