"""Issue 15, item 10: each layer of regedu.models.fast_layers computes what its plain PyTorch
equivalent computes (output and gradients, float64, 2D and 3D), stores the same weights, and the
U-Net built on them keeps the parameter names of the shipped checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regedu.models import unet
from regedu.models.fast_layers import (
    DepthwiseConv,
    DepthwiseConvFunction,
    PointwiseConv,
    memory_format_for,
    upsample_concat_conv,
    upsample_conv,
    upsampling_taps,
)
from regedu.models.unet import UNet

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_MODULE = {2: torch.nn.Conv2d, 3: torch.nn.Conv3d}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request):
    return request.param


def layout(ndim: int, channels_last: bool) -> torch.memory_format:
    return memory_format_for(ndim) if channels_last else torch.contiguous_format


def output_and_gradients(fn, inputs, params=()):
    """``fn(*inputs)`` and the gradients of ``<fn(*inputs), g>`` (``g`` a fixed random tensor) with
    respect to ``inputs`` and ``params``, the inputs copied as new leaves in their memory layout."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    return out, torch.autograd.grad(out, [*leaves, *params], upstream)


def assert_same(fast, plain):
    (out_fast, grads_fast), (out_plain, grads_plain) = fast, plain
    torch.testing.assert_close(out_fast, out_plain)
    assert len(grads_fast) == len(grads_plain)
    for mine, expected in zip(grads_fast, grads_plain, strict=True):
        torch.testing.assert_close(mine, expected)


def nearest_upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


# ---------------------------------------------------------------------------
# 1. upsample, concatenate, convolve in one step
# ---------------------------------------------------------------------------


def test_upsampling_taps_give_the_1d_identity():
    """The docstring's 1D identity: a stride-2 transposed convolution with the summed taps equals
    a convolution of the nearest-upsampled signal."""
    torch.manual_seed(0)
    a, w = torch.randn(1, 1, 9, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    kernel = (upsampling_taps(torch.float64) @ w).view(1, 1, 4)
    torch.testing.assert_close(kernel.flatten(), torch.stack([w[2], w[1] + w[2], w[0] + w[1], w[0]]))
    expected = CONV[1](nearest_upsample(a), w.view(1, 1, 3), padding=1)
    torch.testing.assert_close(F.conv_transpose1d(a, kernel, stride=2, padding=1), expected)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_upsample_conv_equals_upsample_then_conv(ndim, channels_last):
    torch.manual_seed(0)
    low = torch.randn(2, 3, *([5] * ndim), dtype=torch.float64)
    low = low.contiguous(memory_format=layout(ndim, channels_last))
    weight = torch.randn(4, 3, *([3] * ndim), dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)

    def plain(low, weight, bias):
        return CONV[ndim](nearest_upsample(low), weight, bias, padding=1)

    fast = output_and_gradients(upsample_conv, (low, weight, bias))
    assert fast[0].shape == (2, 4, *([10] * ndim))
    assert_same(fast, output_and_gradients(plain, (low, weight, bias)))


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_upsample_concat_conv_equals_upsample_concatenate_conv(ndim, with_bias):
    torch.manual_seed(1)
    low = torch.randn(2, 3, *([4] * ndim), dtype=torch.float64)
    skip = torch.randn(2, 2, *([8] * ndim), dtype=torch.float64)
    weight = torch.randn(5, 3 + 2, *([3] * ndim), dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64)

    def plain(low, skip, weight, bias=None):
        return CONV[ndim](torch.cat([nearest_upsample(low), skip], dim=1), weight, bias, padding=1)

    inputs = (low, skip, weight, bias) if with_bias else (low, skip, weight)
    result = output_and_gradients(upsample_concat_conv, inputs)
    expected = output_and_gradients(plain, inputs)
    assert result[0].shape == (2, 5, *([8] * ndim))
    assert_same(result, expected)


def test_the_old_upsample_conv_name_warns_and_computes_the_same():
    torch.manual_seed(2)
    low, weight = torch.randn(1, 2, 3, 3), torch.randn(3, 2, 3, 3)
    with pytest.warns(DeprecationWarning, match="fast_layers.upsample_conv"):
        old = unet.upsample_conv(low, weight)
    torch.testing.assert_close(old, upsample_conv(low, weight))


# ---------------------------------------------------------------------------
# 2-4. channels-last features, the 1x1 and the depthwise convolution
# ---------------------------------------------------------------------------


def test_memory_format_for_is_channels_last():
    assert memory_format_for(2) == torch.channels_last
    assert memory_format_for(3) == torch.channels_last_3d
    x = torch.zeros(1, 3, 4, 5, 6).contiguous(memory_format=memory_format_for(3))
    assert x.stride()[1] == 1  # the channels of a voxel are next to each other


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_pointwise_conv_is_a_1x1_convolution(ndim, channels_last):
    torch.manual_seed(0)
    module = PointwiseConv(ndim, 3, 4).double()
    x = torch.randn(2, 3, *([6] * ndim), dtype=torch.float64)
    x = x.contiguous(memory_format=layout(ndim, channels_last))
    params = (module.weight, module.bias)
    fast = output_and_gradients(module, (x,), params)
    assert_same(fast, output_and_gradients(lambda x: CONV[ndim](x, module.weight, module.bias), (x,), params))


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_is_a_grouped_convolution(ndim, channels_last, stride):
    torch.manual_seed(0)
    module = DepthwiseConv(ndim, 3, stride).double()
    x = torch.randn(2, 3, *([6] * ndim), dtype=torch.float64)
    x = x.contiguous(memory_format=layout(ndim, channels_last))

    def plain(x):
        return CONV[ndim](x, module.weight, stride=stride, padding=1, groups=3)

    fast = output_and_gradients(module, (x,), (module.weight,))
    assert fast[0].shape == (2, 3, *([6 // stride] * ndim))
    assert_same(fast, output_and_gradients(plain, (x,), (module.weight,)))


def test_depthwise_conv_function_passes_gradcheck(ndim):
    """Against finite differences, not only against PyTorch's own backward."""
    torch.manual_seed(3)
    x = torch.randn(1, 2, *([4] * ndim), dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 1, *([3] * ndim), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(DepthwiseConvFunction.apply, (x, weight))


def test_depthwise_conv_input_gradient_alone():
    """With a frozen weight only the input gradient is computed (and it is still right)."""
    torch.manual_seed(4)
    module = DepthwiseConv(2, 3).double().requires_grad_(False)
    x = torch.randn(1, 3, 5, 7, dtype=torch.float64)
    fast = output_and_gradients(module, (x,))
    assert_same(fast, output_and_gradients(lambda x: CONV[2](x, module.weight, padding=1, groups=3), (x,)))


@pytest.mark.parametrize("stride", [1, 2])
def test_fast_layers_store_and_initialise_weights_like_the_plain_layers(ndim, stride):
    """Same parameter names, shapes and (for one seed) initial values as the nn.ConvNd they replace."""
    pairs = [
        (lambda: DepthwiseConv(ndim, 4, stride),
         lambda: CONV_MODULE[ndim](4, 4, 3, stride, padding=1, groups=4, bias=False)),
        (lambda: PointwiseConv(ndim, 4, 6), lambda: CONV_MODULE[ndim](4, 6, 1)),
    ]
    for fast, plain in pairs:
        torch.manual_seed(7)
        mine = fast().state_dict()
        torch.manual_seed(7)
        reference = plain().state_dict()
        assert list(mine) == list(reference)
        for name in mine:
            torch.testing.assert_close(mine[name], reference[name])


# ---------------------------------------------------------------------------
# the U-Net on top: parameter names unchanged (the shipped checkpoints load)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("separable", [False, True], ids=["full", "separable"])
def test_unet_parameter_names_are_those_of_the_checkpoints(separable):
    model = UNet(2, encoder=(4, 4), decoder=(4, 4, 4, 4), separable=separable)
    convs = ["conv.0.weight", "conv.1.weight", "conv.1.bias"] if separable else ["conv.weight", "conv.bias"]
    blocks = ["encoder.0", "encoder.1", "bottom", "up.0", "up.1", "full_resolution.0"]
    assert list(model.state_dict()) == [f"{block}.{name}" for block in blocks for name in convs]


@pytest.mark.parametrize("separable", [False, True], ids=["full", "separable"])
def test_unet_with_fast_layers_equals_the_plain_unet(ndim, separable):
    """The whole network, fast (fused, channels-last) against plain, in float64."""
    torch.manual_seed(0)
    fast = UNet(ndim, encoder=(4, 6), decoder=(6, 6, 4, 3), separable=separable).double()
    plain = UNet(ndim, encoder=(4, 6), decoder=(6, 6, 4, 3), separable=separable, fused_upsampling=False,
                 channels_last=False).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 2, *([8] * ndim), dtype=torch.float64)
    result = output_and_gradients(fast, (x,), list(fast.parameters()))
    assert_same(result, output_and_gradients(plain, (x,), list(plain.parameters())))
