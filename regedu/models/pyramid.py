"""PyramidNet: coarse-to-fine registration with one small U-Net per resolution (LapIRN's idea).

Mok and Chung, "Large deformation diffeomorphic image registration with Laplacian pyramid
networks", MICCAI 2020, in a simplified form. A single-scale VoxelMorph sees a displacement of
many voxels as many small, unrelated local differences; on a grid 4 times coarser the same motion
is 4 times shorter and easy to see. So:

1. level 0 registers the images downsampled 4x (for ``levels=3``) and outputs a field there;
2. each next level upsamples the field so far to its grid (2x finer, values doubled by
   :func:`regedu.warps.resize_disp`), warps its own moving image with it, and predicts a
   *residual* field that registers what is left;
3. the residual is composed with the field so far: ``total = compose(total, residual)``, i.e.
   ``residual(x) + total(x + residual(x))`` (see :func:`regedu.warps.compose`).

With ``diffeomorphic=True`` every residual is the exponential of a velocity (scaling and
squaring on that level's grid); a composition of diffeomorphisms is one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .. import kernels
from ..checks import check_choice, check_ndim, check_positive_int
from ..kernels import downsample_image
from .base import PADDING_MODES, PyramidRegistration, Registration, check_model_inputs, remembers_arguments
from .voxelmorph import FlowNet

__all__ = ["PyramidNet", "downsample_image"]  # downsample_image lives in regedu.kernels


@remembers_arguments
class PyramidNet(nn.Module):
    """Multiscale (coarse-to-fine) registration network, 2D or 3D.

    Args:
        ndim: 2 or 3 spatial dimensions.
        levels: number of resolutions, each 2x finer than the last; the finest is the input's.
        diffeomorphic: each level predicts a velocity, integrated with ``int_steps`` steps.
        int_steps: scaling-and-squaring steps per level (diffeomorphic only).
        in_channels: channels of each image.
        encoder, decoder: channels of each level's U-Net (smaller than VoxelMorph's: each level
            only has to find what the coarser ones left).
        separable, padding, channels_last, fused_upsampling: as in :class:`~.voxelmorph.VoxelMorph`.

    Call: ``model(moving, fixed)`` -> :class:`~.base.Registration` ``(warped, disp)``;
    ``model(moving, fixed, return_levels=True)`` -> :class:`~.base.PyramidRegistration`
    ``(warped, disp, levels)`` with the total field after each level (for deep supervision or
    figures).
    """

    def __init__(self, ndim: int, levels: int = 3, diffeomorphic: bool = False, int_steps: int = 7,
                 in_channels: int = 1, encoder: Sequence[int] = (16, 32, 32),
                 decoder: Sequence[int] = (32, 32, 32, 16, 16), separable: bool = False,
                 padding: str = "replicate", channels_last: bool = True, fused_upsampling: bool = True):
        super().__init__()
        self.ndim = check_ndim(ndim)
        self.levels = check_positive_int(levels, "levels")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.diffeomorphic = bool(diffeomorphic)
        self.int_steps = check_positive_int(int_steps, "int_steps", minimum=1 if diffeomorphic else 0)
        self.padding = PADDING_MODES[check_choice(padding, "padding", list(PADDING_MODES))]
        self.nets = nn.ModuleList(
            FlowNet(ndim, in_channels, encoder, decoder, separable, fused_upsampling, channels_last)
            for _ in range(levels)
        )
        # the coarsest grid is 2 ** (levels - 1) times smaller and must still fit its U-Net
        self.factor = 2 ** (levels - 1) * self.nets[0].factor

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor,
                return_levels: bool = False) -> Registration | PyramidRegistration:
        check_model_inputs(moving, fixed, self, self.ndim, self.in_channels)
        moving, fixed = kernels.broadcast_batch(moving, fixed)
        moving_padded, padding = kernels.pad_to_multiple(moving, self.factor, self.padding)
        fixed_padded, _ = kernels.pad_to_multiple(fixed, self.factor, self.padding)
        total, per_level = None, []
        for level, net in enumerate(self.nets):
            shrink = 2 ** (self.levels - 1 - level)
            moving_level = downsample_image(moving_padded, shrink)
            fixed_level = downsample_image(fixed_padded, shrink)
            if total is not None:
                total = kernels.resize_disp(total, moving_level.shape[2:])
                moving_level = kernels.resample(moving_level, total)
            residual = net(moving_level, fixed_level)
            if self.diffeomorphic:
                residual = kernels.integrate(residual, self.int_steps)
            total = residual if total is None else kernels.compose(total, residual)
            per_level.append(total)
        disp = kernels.crop(total, padding).contiguous()
        warped = kernels.resample(moving, disp)
        if return_levels:
            return PyramidRegistration(warped, disp, per_level[:-1] + [disp])
        return Registration(warped, disp)
