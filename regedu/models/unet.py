"""A dimension-generic U-Net, the backbone of every deformable model in regedu.

Architecture (VoxelMorph's, Balakrishnan et al. 2019), for ``encoder=(16, 32, 32, 32)`` and
``decoder=(32, 32, 32, 32, 32, 16, 16)``::

    full   1/2   1/4   1/8   1/16          resolution
    16 ----------------------------------> cat -> 32 -> 16 -> 16     (decoder[4:], full resolution)
          32 ----------------------> cat -> 32                        (decoder[3])
                32 ------------> cat -> 32                            (decoder[2])
                      32 --> cat -> 32                                (decoder[1])
                         pool -> 32                                   (decoder[0], the bottom)

Each encoder level is a 3x3(x3) convolution followed by 2x max pooling; the convolution's output is
kept as the skip connection. The decoder starts at the bottom with one convolution, then at each
level upsamples (nearest neighbour, factor 2), concatenates the skip connection and convolves.
Whatever decoder entries remain are extra convolutions at full resolution. Every convolution is
followed by LeakyReLU(0.2).

Speed (see ``benchmarks/learned_speed.py``): "upsample, concatenate, convolve" is done without
building the upsampled or the concatenated tensor. A 3x3 convolution of a nearest-upsampled image
equals a stride-2 transposed convolution of the small image with a 4x4 kernel made of sums of the
3x3 taps (:func:`upsample_conv`), which costs 8 instead of 27 multiplications per output voxel; the
skip connection gets its own convolution with the other input channels of the same weight, and the
two results are added. The weights, and so the checkpoints, are those of the plain formulation
(``UNet(..., fused_upsampling=False)`` computes it the plain way; the tests check that both agree).
Features are stored channels-last (``channels_last=True``) and LeakyReLU works in place. The
separable variant uses :class:`DepthwiseConv` and :class:`PointwiseConv`, which compute what
PyTorch's grouped and 1x1 convolutions compute, by faster routes on the CPU.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_features, check_image, check_ndim, check_positive_int

__all__ = [
    "UNet", "ConvBlock", "UpConvBlock", "PointwiseConv", "DepthwiseConv", "conv_layer", "upsample_conv",
]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_MAX_POOL = {2: F.max_pool2d, 3: F.max_pool3d}
_CONV_TRANSPOSE = {2: F.conv_transpose2d, 3: F.conv_transpose3d}
_CONV_FUNCTION = {2: F.conv2d, 3: F.conv3d}
NEGATIVE_SLOPE = 0.2


def memory_format_for(ndim: int) -> torch.memory_format:
    """Channels-last layout for a ``ndim``-D image batch (channels stored innermost)."""
    return torch.channels_last if ndim == 2 else torch.channels_last_3d


def conv_layer(ndim: int, in_channels: int, out_channels: int, separable: bool = False,
               stride: int = 1) -> nn.Module:
    """A 3x3(x3) convolution, zero-padded so that (at stride 1) the spatial size is kept.

    ``separable=True`` gives a depthwise-separable pair: a 3x3(x3) convolution per channel
    (``groups=in_channels``, no bias) followed by a 1x1(x1) convolution that mixes channels: in 3D
    it costs ``(27 + out) / (27 * out)`` of the full convolution's weights and multiplications
    (``(9 + out) / (9 * out)`` in 2D), i.e. about 1/10 for ``out = 16``.
    """
    conv = _CONV[ndim]
    if not separable:
        return conv(in_channels, out_channels, 3, stride=stride, padding=1)
    if stride == 1:
        depthwise = DepthwiseConv(ndim, in_channels)
    else:
        depthwise = conv(in_channels, in_channels, 3, stride, padding=1, groups=in_channels, bias=False)
    return nn.Sequential(depthwise, PointwiseConv(ndim, in_channels, out_channels))


class _DepthwiseConvFunction(torch.autograd.Function):
    """Depthwise 3x3(x3) convolution (stride 1, zero padding 1) with a faster input gradient.

    The gradient of a stride-1 convolution with respect to its input is the convolution of the
    output gradient with the spatially flipped kernel. PyTorch's CPU routine for depthwise
    convolutions computes it about 5 times slower than that forward convolution, so it is done
    here as such; the weight gradient is PyTorch's.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _CONV_FUNCTION[x.dim() - 2](x, weight, padding=1, groups=x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        ndim, channels = x.dim() - 2, x.shape[1]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(tuple(range(2, 2 + ndim)))
            grad_x = _CONV_FUNCTION[ndim](grad, flipped, padding=1, groups=channels)
        if ctx.needs_input_grad[1]:
            ones = [1] * ndim
            grad_weight = torch.ops.aten.convolution_backward(
                grad, x, weight, None, ones, ones, ones, False, [0] * ndim, channels, [False, True, False]
            )[1]
        return grad_x, grad_weight


class DepthwiseConv(nn.Module):
    """One 3x3(x3) convolution per channel (``groups=channels``, no bias): ``(B, C, *s) -> (B, C, *s)``.

    Weights are stored like ``nn.Conv3d(C, C, 3, groups=C, bias=False)``'s; see
    :class:`_DepthwiseConvFunction` for why it is not simply that module.
    """

    def __init__(self, ndim: int, channels: int):
        super().__init__()
        reference = _CONV[ndim](channels, channels, 3, padding=1, groups=channels, bias=False)
        self.weight = nn.Parameter(reference.weight.detach().clone())  # PyTorch's default initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DepthwiseConvFunction.apply(x, self.weight)


class PointwiseConv(nn.Module):
    """A 1x1(x1) convolution ``(B, in, *s) -> (B, out, *s)``: the same linear map at every voxel.

    Weights are stored like ``nn.Conv3d(in, out, 1)``'s. On a channels-last tensor the channels of a
    voxel are contiguous, so the convolution is one matrix product (``F.linear``) on a view, with no
    copy and none of the layout conversions a general convolution routine may make.
    """

    def __init__(self, ndim: int, in_channels: int, out_channels: int):
        super().__init__()
        self.ndim = ndim
        reference = _CONV[ndim](in_channels, out_channels, 1)  # PyTorch's default initialisation
        self.weight = nn.Parameter(reference.weight.detach().clone())
        self.bias = nn.Parameter(reference.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous(memory_format=memory_format_for(self.ndim)):
            return _CONV_FUNCTION[self.ndim](x, self.weight, self.bias)
        return F.linear(x.movedim(1, -1), self.weight.flatten(1), self.bias).movedim(-1, 1)


class ConvBlock(nn.Module):
    """Convolution + LeakyReLU(0.2): ``(B, in, *s) -> (B, out, *s / stride)``."""

    def __init__(self, ndim: int, in_channels: int, out_channels: int, separable: bool = False,
                 stride: int = 1):
        super().__init__()
        self.conv = conv_layer(ndim, in_channels, out_channels, separable, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place: the convolution's output is not needed by its backward pass, so its memory is reused
        return F.leaky_relu(self.conv(x), NEGATIVE_SLOPE, inplace=True)


def _upsampling_taps(dtype: torch.dtype, device) -> torch.Tensor:
    """``(4, 3)`` matrix mapping 3 convolution taps to the 4 taps of the equivalent transposed kernel.

    In 1D, with ``y = nearest_upsample(a)`` and ``z = conv(y, [w0, w1, w2])``:
    ``z[2p] = w0 a[p-1] + (w1 + w2) a[p]`` and ``z[2p+1] = (w0 + w1) a[p] + w2 a[p+1]``, which is a
    stride-2, padding-1 transposed convolution of ``a`` with the kernel ``[w2, w1 + w2, w0 + w1, w0]``.
    """
    return torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=dtype, device=device)


def upsample_conv(low: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(nearest_upsample(low, 2), weight, padding=1)`` without building the upsampled tensor.

    Args:
        low: ``(B, C_in, *s)``.
        weight: ``(C_out, C_in, 3, 3[, 3])`` convolution weight.
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(B, C_out, *(2 * s))``; equal to the plain computation up to float rounding. The kernel
        is rebuilt from ``weight`` at every call, so gradients reach ``weight`` as usual.
    """
    ndim = low.dim() - 2
    taps = _upsampling_taps(weight.dtype, weight.device)
    axes = string.ascii_lowercase[:ndim]  # new tap index per axis
    old = string.ascii_lowercase[ndim:2 * ndim]  # original tap index per axis
    pairs = ",".join(f"{a}{o}" for a, o in zip(axes, old, strict=True))
    # conv weight (out, in, taps) -> transposed-conv weight (in, out, taps)
    kernel = torch.einsum(f"{pairs},OI{old}->IO{axes}", *([taps] * ndim), weight)
    return _CONV_TRANSPOSE[ndim](low, kernel, bias, stride=2, padding=1)


class UpConvBlock(nn.Module):
    """Upsample ``low`` by 2, concatenate ``skip``, convolve, LeakyReLU(0.2).

    ``(B, C_low, *s)`` and ``(B, C_skip, *2s)`` -> ``(B, out, *2s)``. The weights are those of one
    convolution with ``C_low + C_skip`` inputs (upsampled channels first), whichever way it is
    computed (see the module docstring).
    """

    def __init__(self, ndim: int, low_channels: int, skip_channels: int, out_channels: int,
                 separable: bool = False, fused: bool = True):
        super().__init__()
        self.low_channels = low_channels
        self.conv = conv_layer(ndim, low_channels + skip_channels, out_channels, separable)
        self.fused = fused and not separable

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.fused:
            out = self._fused(low, skip)
        else:
            up = F.interpolate(low, scale_factor=2, mode="nearest")
            out = self.conv(torch.cat([up, skip], dim=1))
        return F.leaky_relu(out, NEGATIVE_SLOPE, inplace=True)

    def _fused(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        weight, split = self.conv.weight, self.low_channels
        out = upsample_conv(low, weight[:, :split])
        skip_conv = _CONV_FUNCTION[skip.dim() - 2](skip, weight[:, split:], self.conv.bias, padding=1)
        return out.add_(skip_conv)


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
        self.memory_format = memory_format_for(ndim) if channels_last else torch.contiguous_format
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

        self.encoder = nn.ModuleList()
        previous = in_channels
        for channels in encoder:
            self.encoder.append(ConvBlock(ndim, previous, channels, separable))
            previous = channels
        self.bottom = ConvBlock(ndim, previous, decoder[0], separable)
        self.up = nn.ModuleList(
            UpConvBlock(ndim, low_channels=decoder[k], skip_channels=encoder[levels - 1 - k],
                        out_channels=decoder[k + 1], separable=separable, fused=fused_upsampling)
            for k in range(levels)
        )
        self.full_resolution = nn.ModuleList(
            ConvBlock(ndim, decoder[k - 1], decoder[k], separable) for k in range(levels + 1, len(decoder))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        layout = self.memory_format
        x = x.contiguous(memory_format=layout)
        skips = []
        for block in self.encoder:
            x = self._run(block, x)
            skips.append(x)
            x = _MAX_POOL[self.ndim](x, 2)
        x = self._run(self.bottom, x)
        for block in self.up:
            x = self._run(block, x, skips.pop())
        for block in self.full_resolution:
            x = self._run(block, x)
        return x

    def _run(self, block: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        """``block(*inputs)``, its output kept in the UNet's memory layout."""
        return block(*inputs).contiguous(memory_format=self.memory_format)

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
                f"got {spatial}. Pad to {target}, e.g. with regedu.models.base.pad_to_multiple(x, "
                f"{self.factor})."
            )
