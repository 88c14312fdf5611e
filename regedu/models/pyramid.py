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

With ``field_downsize=k`` the whole pyramid works on both images shrunk ``k`` times (its finest level
is ``k`` times coarser than the input) and the final field is resized back, like
:class:`~.voxelmorph.VoxelMorph`'s option of the same name: the 3D brain model on a CPU thinks on a
4 mm grid (levels at 16, 8 and 4 mm) for 2 mm images.
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
        field_downsize: run the pyramid on images this many times coarser and resize its field back
            (1 = the finest level is the input's grid).

    Call: ``model(moving, fixed)`` -> :class:`~.base.Registration` ``(warped, disp)``;
    ``model(moving, fixed, return_levels=True)`` -> :class:`~.base.PyramidRegistration`
    ``(warped, disp, levels)`` with the total field after each level (for deep supervision or
    figures).
    """

    def __init__(self, ndim: int, levels: int = 3, diffeomorphic: bool = False, int_steps: int = 7,
                 in_channels: int = 1, encoder: Sequence[int] = (16, 32, 32),
                 decoder: Sequence[int] = (32, 32, 32, 16, 16), separable: bool = False,
                 padding: str = "replicate", channels_last: bool = True, fused_upsampling: bool = True,
                 field_downsize: int = 1):
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
        self.field_downsize = check_positive_int(field_downsize, "field_downsize")
        # the coarsest grid is 2 ** (levels - 1) times smaller than the pyramid's own (finest) grid and
        # must still fit its U-Net; inputs whose sizes are multiples of ``factor`` are not padded
        self.grid_factor = 2 ** (levels - 1) * self.nets[0].factor
        self.factor = self.grid_factor * self.field_downsize

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor,
                return_levels: bool = False) -> Registration | PyramidRegistration:
        check_model_inputs(moving, fixed, self, self.ndim, self.in_channels)
        moving, fixed = kernels.broadcast_batch(moving, fixed)
        shrink = self.field_downsize
        if shrink == 1:
            disp, per_level = self._coarse_to_fine(moving, fixed)
        else:
            moving_even, padding = kernels.pad_to_multiple(moving, shrink, self.padding)
            fixed_even, _ = kernels.pad_to_multiple(fixed, shrink, self.padding)
            small, per_level = self._coarse_to_fine(downsample_image(moving_even, shrink),
                                                    downsample_image(fixed_even, shrink))
            disp = kernels.crop(kernels.resize_disp(small, moving_even.shape[2:]), padding).contiguous()
        warped = kernels.resample(moving, disp)
        if return_levels:
            return PyramidRegistration(warped, disp, per_level[:-1] + [disp])
        return Registration(warped, disp)

    def _coarse_to_fine(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, list]:
        """The pyramid on the grid of ``moving`` and ``fixed`` ``(B, C, *spatial)``: the total field
        ``(B, ndim, *spatial)`` and the total after each level, on the padded grids of the levels."""
        moving_padded, padding = kernels.pad_to_multiple(moving, self.grid_factor, self.padding)
        fixed_padded, _ = kernels.pad_to_multiple(fixed, self.grid_factor, self.padding)
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
        return kernels.crop(total, padding).contiguous(), per_level
