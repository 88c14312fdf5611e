"""A dimension-generic U-Net, the backbone of every deformable model in regedu.

The architecture is VoxelMorph's (Balakrishnan et al., IEEE TMI 2019), itself the U-Net of
Ronneberger et al. (MICCAI 2015). For ``encoder=(16, 32, 32, 32)`` and
``decoder=(32, 32, 32, 32, 32, 16, 16)``::

    full   1/2   1/4   1/8   1/16          resolution
    16 ----------------------------------> cat -> 32 -> 16 -> 16     (decoder[4:], full resolution)
          32 ----------------------> cat -> 32                        (decoder[3])
                32 ------------> cat -> 32                            (decoder[2])
                      32 --> cat -> 32                                (decoder[1])
                         pool -> 32                                   (decoder[0], the bottom)

* **Encoder**: at each level a 3x3(x3) convolution, then 2x max pooling. The convolution's output
  is kept as the level's *skip connection*.
* **Bottom**: one convolution on the coarsest grid (``1 / 2 ** len(encoder)`` of the input).
* **Decoder**: at each level, upsample by 2 (nearest neighbour), concatenate the skip connection of
  that level, convolve. The skip connections bring back the fine detail that pooling threw away.
* **Full resolution**: whatever decoder entries remain are extra convolutions.

Every convolution is followed by LeakyReLU(0.2). ``separable=True`` replaces each convolution by a
depthwise-separable pair (:func:`conv_layer`), for a lighter network (:class:`~.light.LightVoxelMorph`).

Speed: the code below says what is computed. Three steps are computed by faster routes that give
the same numbers, all in :mod:`regedu.models.fast_layers` (which explains each and names its plain
PyTorch equivalent): "upsample, concatenate, convolve" in one step (``fused_upsampling=True``),
features stored channels-last (``channels_last=True``), and the two halves of a separable
convolution. Either way the weights, and so the checkpoints, are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_features, check_image, check_ndim, check_positive_int
from ..deprecation import renamed_function
from . import fast_layers
from .fast_layers import DepthwiseConv, PointwiseConv, memory_format_for, upsample_concat_conv

__all__ = ["UNet", "ConvBlock", "UpConvBlock", "conv_layer"]

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
MAX_POOL = {2: F.max_pool2d, 3: F.max_pool3d}
NEGATIVE_SLOPE = 0.2  # of the LeakyReLU after every convolution

# moved to regedu.models.fast_layers; the old name keeps working for one release, with a warning
upsample_conv = renamed_function(fast_layers.upsample_conv, "regedu.models.unet.upsample_conv")


def conv_layer(ndim: int, in_channels: int, out_channels: int, separable: bool = False,
               stride: int = 1) -> nn.Module:
    """A 3x3(x3) convolution ``(B, in, *s) -> (B, out, *s / stride)``, zero-padded by 1 so that at
    stride 1 the spatial size is kept.

    ``separable=True`` gives a depthwise-separable pair: a 3x3(x3) convolution per channel (no bias)
    followed by a 1x1(x1) convolution that mixes the channels. In 3D it has ``(27 + out) / (27 * out)``
    of the full convolution's weights and multiplications (``(9 + out) / (9 * out)`` in 2D), about
    1/10 for ``out = 16``.
    """
    if not separable:
        return CONV[ndim](in_channels, out_channels, 3, stride=stride, padding=1)
    # the fast equivalents of nn.ConvNd(in, in, 3, stride, padding=1, groups=in, bias=False)
    # and nn.ConvNd(in, out, 1), with the same weights
    depthwise = DepthwiseConv(ndim, in_channels, stride)  # (B, in, *s) -> (B, in, *s / stride)
    pointwise = PointwiseConv(ndim, in_channels, out_channels)  # -> (B, out, *s / stride)
    return nn.Sequential(depthwise, pointwise)


class ConvBlock(nn.Module):
    """Convolution + LeakyReLU(0.2): ``(B, in, *s) -> (B, out, *s / stride)``."""

    def __init__(self, ndim: int, in_channels: int, out_channels: int, separable: bool = False,
                 stride: int = 1):
        super().__init__()
        self.conv = conv_layer(ndim, in_channels, out_channels, separable, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place: the convolution's output is not needed by its backward pass, so its memory is reused
        return F.leaky_relu(self.conv(x), NEGATIVE_SLOPE, inplace=True)


class UpConvBlock(nn.Module):
    """One decoder step: upsample ``low`` by 2, concatenate ``skip``, convolve, LeakyReLU(0.2).

    ``low`` ``(B, C_low, *s)`` and ``skip`` ``(B, C_skip, *2s)`` -> ``(B, out, *2s)``. The weights are
    those of one convolution with ``C_low + C_skip`` inputs, the upsampled channels first.
    ``fused=True`` computes the same in one step (:func:`~.fast_layers.upsample_concat_conv`).
    """

    def __init__(self, ndim: int, low_channels: int, skip_channels: int, out_channels: int,
                 separable: bool = False, fused: bool = True):
        super().__init__()
        self.conv = conv_layer(ndim, low_channels + skip_channels, out_channels, separable)
        self.fused = fused and not separable

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.fused:
            out = upsample_concat_conv(low, skip, self.conv.weight, self.conv.bias)
        else:
            up = F.interpolate(low, scale_factor=2, mode="nearest")  # (B, C_low, *2s)
            out = self.conv(torch.cat([up, skip], dim=1))  # (B, C_low + C_skip, *2s) -> (B, out, *2s)
        return F.leaky_relu(out, NEGATIVE_SLOPE, inplace=True)


class UNet(nn.Module):
    """Dimension-generic U-Net: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``.

    Args:
        ndim: 2 or 3 spatial dimensions.
        in_channels: input channels (2 for a concatenated moving/fixed pair of grey images).
        encoder: channels of the convolution at each encoder level; one 2x pooling per entry.
        decoder: channels of the bottom convolution, then of the one after each upsampling
            (``len(encoder)`` of them), then of any extra full-resolution convolutions. Must have
            at least ``len(encoder) + 1`` entries.
        separable: depthwise-separable convolutions (see :func:`conv_layer`), for a lighter network.
        fused_upsampling: compute upsample + concatenate + convolve in one step (same result, faster).
        channels_last: store features channels-innermost, the layout CPU (oneDNN) and GPU (cuDNN)
            convolutions prefer; every block's output is kept in it, because a single operation that
            falls back to the default layout (e.g. a convolution on a tiny grid) would otherwise make
            all later ones convert back and forth. Same numbers either way.

    Attributes:
        factor: ``2 ** len(encoder)``; every spatial size of the input must be a multiple of it.
        out_channels: ``decoder[-1]``.
    """

    def __init__(self, ndim: int, in_channels: int = 2, encoder: Sequence[int] = (16, 32, 32, 32),
                 decoder: Sequence[int] = (32, 32, 32, 32, 32, 16, 16), separable: bool = False,
                 fused_upsampling: bool = True, channels_last: bool = True):
        super().__init__()
        self.ndim = check_ndim(ndim)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        encoder = check_features(encoder, "encoder")
        decoder = check_features(decoder, "decoder")
        levels = len(encoder)
        if len(decoder) < levels + 1:
            raise ValueError(
                f"`decoder` needs at least len(encoder) + 1 = {levels + 1} entries (one at the bottom, "
                f"one after each of the {levels} upsamplings), got {len(decoder)}: {decoder}."
            )
        self.factor = 2 ** levels
        self.out_channels = decoder[-1]
        self.memory_format = memory_format_for(ndim) if channels_last else torch.contiguous_format

        # encoder: level k sees encoder[k - 1] channels (the input's at k = 0), outputs encoder[k]
        inputs = [in_channels, *encoder[:-1]]
        self.encoder = nn.ModuleList(
            ConvBlock(ndim, inputs[k], encoder[k], separable) for k in range(levels)
        )
        self.bottom = ConvBlock(ndim, encoder[-1], decoder[0], separable)
        # decoder: step k upsamples decoder[k] channels and meets the skip of encoder level levels - 1 - k
        self.up = nn.ModuleList(
            UpConvBlock(ndim, low_channels=decoder[k], skip_channels=encoder[levels - 1 - k],
                        out_channels=decoder[k + 1], separable=separable, fused=fused_upsampling)
            for k in range(levels)
        )
        self.full_resolution = nn.ModuleList(
            ConvBlock(ndim, decoder[k - 1], decoder[k], separable) for k in range(levels + 1, len(decoder))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *s) -> (B, out_channels, *s)``, every size in ``s`` a multiple of
        :attr:`factor`. Shapes are given for level ``k`` (``k = 0`` at full resolution)."""
        self._check_input(x)
        x = self.keep_layout(x)
        skips = []
        for block in self.encoder:
            x = self.keep_layout(block(x))  # (B, encoder[k], *s / 2**k)
            skips.append(x)
            x = MAX_POOL[self.ndim](x, 2)  # (B, encoder[k], *s / 2**(k + 1))
        x = self.keep_layout(self.bottom(x))  # (B, decoder[0], *s / factor)
        for block in self.up:
            x = self.keep_layout(block(x, skips.pop()))  # one level finer, the skip of that level
        for block in self.full_resolution:
            x = self.keep_layout(block(x))  # (B, decoder[j], *s)
        return x

    def keep_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` stored in the network's memory layout (channels-last by default; a no-op when it is)."""
        return x.contiguous(memory_format=self.memory_format)

    def _check_input(self, x: torch.Tensor) -> None:
        check_image(x, "x", self.ndim)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects {self.in_channels} input channels, got shape {tuple(x.shape)}."
            )
        spatial = tuple(x.shape[2:])
        if any(n % self.factor for n in spatial):
            target = tuple(-(-n // self.factor) * self.factor for n in spatial)
            raise ValueError(
                f"UNet input sizes must be multiples of {self.factor} (2 ** {len(self.encoder)} poolings), "
                f"got {spatial}. Pad to {target}, e.g. with regedu.data.pad_to_multiple(x, {self.factor}, "
                f"mode='replicate') (it also returns the padding, to crop the output back)."
            )
