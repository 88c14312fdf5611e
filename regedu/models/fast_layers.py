"""Fast layers: faster routes to what plain PyTorch layers compute, used by the U-Net.

:mod:`regedu.models.unet` is written like the paper (convolve, pool, upsample, concatenate,
convolve); wherever PyTorch's plain route is slow, it calls a layer of this module instead. Each one
computes what the plain layer named beside it computes, up to float rounding, with weights stored
the same way (so models and their checkpoints do not change), and ``tests/test_fast_layers.py``
checks it against that plain layer, output and gradients, in 2D and 3D.
``benchmarks/learned_speed.py`` times the whole network against VoxelMorph's own.

1. **Upsample, concatenate, convolve in one step** (:func:`upsample_concat_conv`, built on
   :func:`upsample_conv`). Plain equivalent:
   ``conv(torch.cat([F.interpolate(low, scale_factor=2, mode="nearest"), skip], 1), weight, padding=1)``.
   A 3x3 convolution of a nearest-upsampled image is a stride-2 transposed convolution of the small
   image with a 4x4 kernel whose taps are sums of the 3x3 taps (:func:`upsampling_taps`, combined per
   axis by one ``einsum``): the upsampled tensor is never built, and each output voxel costs
   ``2 ** ndim`` instead of ``3 ** ndim`` multiplications per pair of channels (8 instead of 27 in
   3D). A convolution is linear in its input channels, so the concatenation is not built either: the
   skip connection is convolved with its own slice of the same weight and the two results are added.
2. **Channels-last features** (:func:`memory_format_for`). Plain equivalent: the default layout,
   ``(B, C, *spatial)`` contiguous. Storing the channels of a voxel next to each other is the layout
   that oneDNN (CPU) and cuDNN (GPU) convolutions prefer; a network whose tensors are already stored
   that way skips a conversion before and after each convolution. Same values, other strides.
3. **A 1x1 convolution as a matrix product** (:class:`PointwiseConv`). Plain equivalent:
   ``nn.Conv3d(in_channels, out_channels, 1)``. On a channels-last tensor the channels of each voxel
   are contiguous, so the convolution is one ``F.linear`` on a ``(B, *spatial, C)`` view: no copy,
   none of the layout conversions a general convolution routine may make.
4. **A depthwise convolution with a faster input gradient** (:class:`DepthwiseConv`). Plain
   equivalent: ``nn.Conv3d(C, C, 3, padding=1, groups=C, bias=False)``. The gradient of a stride-1
   convolution with respect to its input is the convolution of the output gradient with the
   spatially flipped kernel; PyTorch's CPU backward of a depthwise convolution computes it about 5
   times slower than that forward convolution, so :class:`DepthwiseConvFunction` computes it as one.

The learned path has one more choice made for speed, outside the network: the box mean behind
local NCC is computed by shifted sums on a CPU and by average pooling on a GPU. It lives with its
plain equivalents, where :func:`regedu.losses.ncc` and the classical methods find it:
:func:`regedu.filters.box_mean`.

No input checks here: the modules that call these layers check their inputs.
"""

from __future__ import annotations

import string

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "memory_format_for",
    "upsampling_taps",
    "upsample_conv",
    "upsample_concat_conv",
    "PointwiseConv",
    "DepthwiseConv",
    "DepthwiseConvFunction",
]

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
CONV_FUNCTION = {2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE_FUNCTION = {2: F.conv_transpose2d, 3: F.conv_transpose3d}


# ---------------------------------------------------------------------------
# 1. upsample, concatenate, convolve in one step
# ---------------------------------------------------------------------------


def upsampling_taps(dtype: torch.dtype, device=None) -> torch.Tensor:
    """``(4, 3)`` matrix mapping the 3 taps of a convolution to the 4 taps of the transposed kernel
    that gives the same result on the image before nearest upsampling.

    In 1D, with ``y = nearest_upsample(a)`` and ``z = conv(y, [w0, w1, w2], padding=1)``:
    ``z[2p] = w0 a[p-1] + (w1 + w2) a[p]`` and ``z[2p+1] = (w0 + w1) a[p] + w2 a[p+1]``, which is a
    stride-2, padding-1 transposed convolution of ``a`` with the kernel ``[w2, w1 + w2, w0 + w1, w0]``.
    """
    return torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=dtype, device=device)


def upsample_conv(low: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(nearest_upsample(low, 2), weight, bias, padding=1)`` without building the upsampled tensor.

    Args:
        low: ``(B, C_in, *s)``.
        weight: ``(C_out, C_in, 3, 3[, 3])`` convolution weight.
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(B, C_out, *(2 * s))``. The transposed kernel is rebuilt from ``weight`` at every call, so
        gradients reach ``weight`` as usual.
    """
    ndim = low.dim() - 2
    taps = upsampling_taps(weight.dtype, weight.device)
    new = string.ascii_lowercase[:ndim]  # the 4-tap index of each axis
    old = string.ascii_lowercase[ndim:2 * ndim]  # the 3-tap index of each axis
    per_axis = ",".join(f"{n}{o}" for n, o in zip(new, old, strict=True))
    # convolution weight (out, in, 3, ...) -> transposed-convolution weight (in, out, 4, ...)
    kernel = torch.einsum(f"{per_axis},OI{old}->IO{new}", *([taps] * ndim), weight)
    return CONV_TRANSPOSE_FUNCTION[ndim](low, kernel, bias, stride=2, padding=1)


def upsample_concat_conv(low: torch.Tensor, skip: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(cat([nearest_upsample(low, 2), skip], dim=1), weight, bias, padding=1)``, building neither
    the upsampled nor the concatenated tensor.

    Args:
        low: ``(B, C_low, *s)``, the decoder's features one level down.
        skip: ``(B, C_skip, *2s)``, the skip connection.
        weight: ``(C_out, C_low + C_skip, 3, 3[, 3])``, the upsampled channels first.
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(B, C_out, *2s)``.
    """
    split = low.shape[1]
    out = upsample_conv(low, weight[:, :split])
    skip_conv = CONV_FUNCTION[skip.dim() - 2](skip, weight[:, split:], bias, padding=1)
    return out.add_(skip_conv)


# ---------------------------------------------------------------------------
# 2. channels-last features
# ---------------------------------------------------------------------------


def memory_format_for(ndim: int) -> torch.memory_format:
    """The channels-last layout of an ``ndim``-D image batch (channels stored innermost)."""
    return torch.channels_last if ndim == 2 else torch.channels_last_3d


# ---------------------------------------------------------------------------
# 3. a 1x1 convolution as a matrix product
# ---------------------------------------------------------------------------


class PointwiseConv(nn.Module):
    """A 1x1(x1) convolution ``(B, in, *s) -> (B, out, *s)``: the same linear map at every voxel.

    Computes what ``nn.Conv3d(in_channels, out_channels, 1)`` (``nn.Conv2d`` in 2D) computes, with
    its weights stored the same way and initialised the same way. On a channels-last input it is one
    ``F.linear`` on a view; on any other layout it is PyTorch's convolution.
    """

    def __init__(self, ndim: int, in_channels: int, out_channels: int):
        super().__init__()
        self.ndim = ndim
        reference = CONV[ndim](in_channels, out_channels, 1)  # PyTorch's default initialisation
        self.weight = nn.Parameter(reference.weight.detach().clone())  # (out, in, 1, 1[, 1])
        self.bias = nn.Parameter(reference.bias.detach().clone())  # (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous(memory_format=memory_format_for(self.ndim)):
            return CONV_FUNCTION[self.ndim](x, self.weight, self.bias)
        # (B, in, *s) viewed as (B, *s, in) without a copy, mapped to (B, *s, out), viewed back
        return F.linear(x.movedim(1, -1), self.weight.flatten(1), self.bias).movedim(-1, 1)


# ---------------------------------------------------------------------------
# 4. a depthwise convolution with a faster input gradient
# ---------------------------------------------------------------------------


class DepthwiseConvFunction(torch.autograd.Function):
    """Depthwise 3x3(x3) convolution (stride 1, zero padding 1), ``(B, C, *s) -> (B, C, *s)``, whose
    input gradient is computed as a forward convolution with the flipped kernel.

    ``DepthwiseConvFunction.apply(x, weight)`` with ``weight`` ``(C, 1, 3, 3[, 3])``. The weight
    gradient is PyTorch's own.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return CONV_FUNCTION[x.dim() - 2](x, weight, padding=1, groups=x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        ndim, channels = x.dim() - 2, x.shape[1]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(tuple(range(2, 2 + ndim)))
            grad_x = CONV_FUNCTION[ndim](grad, flipped, padding=1, groups=channels)
        if ctx.needs_input_grad[1]:
            ones = [1] * ndim
            grad_weight = torch.ops.aten.convolution_backward(
                grad, x, weight, None, ones, ones, ones, False, [0] * ndim, channels, [False, True, False]
            )[1]
        return grad_x, grad_weight


class DepthwiseConv(nn.Module):
    """One 3x3(x3) convolution per channel: ``(B, C, *s) -> (B, C, *s / stride)``.

    Computes what ``nn.Conv3d(C, C, 3, stride, padding=1, groups=C, bias=False)`` (``nn.Conv2d`` in
    2D) computes, with its weight stored and initialised the same way. At stride 1 it runs
    :class:`DepthwiseConvFunction`; at other strides, where the flipped-kernel identity does not
    hold as such, PyTorch's convolution.
    """

    def __init__(self, ndim: int, channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        reference = CONV[ndim](channels, channels, 3, stride, padding=1, groups=channels, bias=False)
        self.weight = nn.Parameter(reference.weight.detach().clone())  # (C, 1, 3, 3[, 3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return DepthwiseConvFunction.apply(x, self.weight)
        return CONV_FUNCTION[x.dim() - 2](x, self.weight, stride=self.stride, padding=1, groups=x.shape[1])
