"""VoxelMorph: a U-Net that reads a (moving, fixed) pair and outputs a displacement (or velocity) field.

Balakrishnan et al., "VoxelMorph: a learning framework for deformable medical image registration",
IEEE TMI 2019; the diffeomorphic variant is Dalca et al., MICCAI 2018 / MedIA 2019.

The pieces, in the order ``forward`` runs them:

1. pad both images to a multiple of the network's factor (``2 ** len(encoder)``), so any size works;
2. :class:`FlowNet`: concatenate ``(moving, fixed)`` along channels, run the :class:`~.unet.UNet`,
   then a 3x3(x3) convolution to ``ndim`` channels (the *flow head*, initialised with tiny weights
   so that an untrained model predicts an almost-zero field: ``warped ~ moving``).
   With ``field_downsize=k`` (> 1) the U-Net reads both images shrunk ``k`` times per axis
   (:func:`regedu.kernels.downsample_image`) and its field is resized back to the input's grid
   (:func:`regedu.kernels.resize_disp`): about ``k ** ndim`` times cheaper, for a smooth field
   (used for 3D brains on a CPU: the 2 mm template's model works on a 4 mm grid);
3. diffeomorphic only: the output is a stationary velocity; it is resized to ``1 / int_downsize``
   of the grid, integrated by scaling and squaring (:func:`regedu.warps.integrate`), and resized back
   (integrating on a coarser grid is ``int_downsize ** ndim`` times cheaper and the velocity is
   smooth anyway);
4. crop the field back to the input's size and warp ``moving`` with it (the same function as
   :func:`regedu.warps.warp`, border padding), so ``warp(moving, disp)`` reproduces ``warped``.

Speed: the U-Net keeps its features channels-last, applies LeakyReLU in place and computes
"upsample, concatenate, convolve" in one step (see :mod:`regedu.models.fast_layers`); integration
runs on the coarser grid. ``benchmarks/learned_speed.py`` compares with VoxelMorph 0.3.4 running the same
network. ``torch.compile`` was tried and is not used: on a CPU (torch 2.13, 96x112x96, one thread)
it took 35-45 s to compile, then made the forward pass slower (2.9 s instead of 1.7 s) and the
training step no faster. On a GPU it may pay off for long training runs: ``torch.compile(model)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .. import kernels
from ..checks import check_choice, check_ndim, check_positive_int
from .base import PADDING_MODES, Registration, VelocityRegistration, check_model_inputs, remembers_arguments
from .unet import UNet, conv_layer

__all__ = ["VoxelMorph", "FlowNet"]


class FlowNet(nn.Module):
    """U-Net + flow head: ``(moving, fixed)`` -> field ``(B, ndim, *spatial)``, in voxels.

    Expects images whose sizes are multiples of ``self.factor`` (the models pad for it).
    ``channels_last`` is passed to the :class:`~.unet.UNet` (a layout choice: same numbers, faster).
    """

    def __init__(self, ndim: int, in_channels: int = 1, encoder: Sequence[int] = (16, 32, 32, 32),
                 decoder: Sequence[int] = (32, 32, 32, 32, 32, 16, 16), separable: bool = False,
                 fused_upsampling: bool = True, channels_last: bool = True, init_std: float = 1e-5):
        super().__init__()
        self.unet = UNet(ndim, 2 * in_channels, encoder, decoder, separable, fused_upsampling, channels_last)
        self.head = conv_layer(ndim, self.unet.out_channels, ndim)  # a plain 3x3(x3) convolution
        nn.init.normal_(self.head.weight, mean=0.0, std=init_std)
        nn.init.zeros_(self.head.bias)
        self.factor = self.unet.factor

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.head(self.unet(torch.cat([moving, fixed], dim=1)))


@remembers_arguments
class VoxelMorph(nn.Module):
    """Unsupervised deformable registration network (VoxelMorph), 2D or 3D.

    Args:
        ndim: 2 or 3 spatial dimensions.
        diffeomorphic: predict a stationary velocity and integrate it (no folding, invertible);
            otherwise the network's output is the displacement itself.
        int_steps: scaling-and-squaring steps (diffeomorphic only), >= 1.
        int_downsize: integrate on a grid this many times coarser (1 = full resolution).
        field_downsize: run the U-Net on images this many times coarser and resize its field back
            (1 = full resolution; 2 is about ``2 ** ndim`` times cheaper, with a smoother field).
        in_channels: channels of each image (1 for grey-level images).
        encoder, decoder: U-Net channels, VoxelMorph's defaults (see :class:`~.unet.UNet`).
        separable: depthwise-separable convolutions (see :class:`~.light.LightVoxelMorph`).
        padding: how images are padded to the network's factor: ``"replicate"`` or ``"zeros"``.
        channels_last: channels-innermost feature layout (faster on CPU and GPU; same numbers).
        fused_upsampling: see :mod:`regedu.models.unet` (same numbers, faster).

    Call: ``model(moving, fixed)`` with ``(B, in_channels, *spatial)`` images of any size ->
    :class:`~.base.Registration` ``(warped, disp)``: ``warped = warp(moving, disp)`` on the fixed
    grid, ``disp`` ``(B, ndim, *spatial)`` in voxels. ``model(moving, fixed, return_velocity=True)``
    (diffeomorphic models) returns :class:`~.base.VelocityRegistration` ``(warped, disp, velocity)``.
    """

    def __init__(self, ndim: int, diffeomorphic: bool = False, int_steps: int = 7, int_downsize: int = 2,
                 in_channels: int = 1, encoder: Sequence[int] = (16, 32, 32, 32),
                 decoder: Sequence[int] = (32, 32, 32, 32, 32, 16, 16), separable: bool = False,
                 padding: str = "replicate", channels_last: bool = True, fused_upsampling: bool = True,
                 field_downsize: int = 1):
        super().__init__()
        self.ndim = check_ndim(ndim)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.diffeomorphic = bool(diffeomorphic)
        self.int_steps = check_positive_int(int_steps, "int_steps", minimum=1 if diffeomorphic else 0)
        self.int_downsize = check_positive_int(int_downsize, "int_downsize")
        self.field_downsize = check_positive_int(field_downsize, "field_downsize")
        self.padding = PADDING_MODES[check_choice(padding, "padding", list(PADDING_MODES))]
        self.net = FlowNet(ndim, in_channels, encoder, decoder, separable, fused_upsampling, channels_last)
        scale = self.int_downsize if self.diffeomorphic else 1
        self.factor = math.lcm(self.net.factor * self.field_downsize, scale)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor,
                return_velocity: bool = False) -> Registration | VelocityRegistration:
        check_model_inputs(moving, fixed, self, self.ndim, self.in_channels)
        if return_velocity and not self.diffeomorphic:
            raise ValueError(
                "return_velocity=True needs a diffeomorphic model: this one predicts the displacement "
                "directly. Build it with VoxelMorph(..., diffeomorphic=True)."
            )
        moving, fixed = kernels.broadcast_batch(moving, fixed)
        moving_padded, padding = kernels.pad_to_multiple(moving, self.factor, self.padding)
        fixed_padded, _ = kernels.pad_to_multiple(fixed, self.factor, self.padding)
        field = self.predict_field(moving_padded, fixed_padded)
        disp = kernels.crop(self.exponential(field) if self.diffeomorphic else field, padding).contiguous()
        warped = kernels.resample(moving, disp)
        if return_velocity:
            return VelocityRegistration(warped, disp, kernels.crop(field, padding).contiguous())
        return Registration(warped, disp)

    def predict_field(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """The network's field (displacement or velocity) ``(B, ndim, *spatial)`` on the grid of the
        padded images ``(B, C, *spatial)``, computed ``field_downsize`` times coarser if asked."""
        if self.field_downsize == 1:
            return self.net(moving, fixed)
        shrink = self.field_downsize
        coarse = self.net(kernels.downsample_image(moving, shrink), kernels.downsample_image(fixed, shrink))
        return kernels.resize_disp(coarse, moving.shape[2:])

    def exponential(self, velocity: torch.Tensor) -> torch.Tensor:
        """Displacement of ``exp(velocity)``, integrated on a grid ``int_downsize`` times coarser.

        ``velocity`` ``(B, ndim, *spatial)``, sizes divisible by ``int_downsize``; returns the same shape.
        """
        shape = tuple(velocity.shape[2:])
        coarse = tuple(n // self.int_downsize for n in shape)
        disp = kernels.integrate(kernels.resize_disp(velocity, coarse), self.int_steps)
        return kernels.resize_disp(disp, shape)
