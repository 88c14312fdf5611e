"""Learned registration models. Every one is called as ``model(moving, fixed)`` and returns
``(warped, disp)`` (a :class:`~regedu.models.base.Registration`), ``disp`` in voxels as everywhere
in regedu, so ``regedu.warps.warp(moving, disp)`` reproduces ``warped``.

* :class:`VoxelMorph` (``diffeomorphic=True`` for the SVF variant) on a :class:`UNet`;
* :class:`LightVoxelMorph`: separable convolutions, fewer channels, for a laptop;
* :class:`PyramidNet`: coarse-to-fine cascade of small U-Nets, for large deformations;
* :class:`AffineNet`: regresses an affine matrix; :class:`Cascade` chains models
  (e.g. ``Cascade(AffineNet(3), VoxelMorph(3))``);
* :class:`FlipAveraged`: a trained model run on mirror images of the pair too, its fields averaged
  (test-time augmentation).
"""

from .affine import AffineNet, Cascade, centred_to_voxel_affine
from .base import AffineRegistration, PyramidRegistration, Registration, VelocityRegistration
from .flips import FlipAveraged, flip_field
from .light import LightVoxelMorph
from .pretrained import PRETRAINED, pretrained, pretrained_path
from .pyramid import PyramidNet
from .unet import UNet
from .voxelmorph import FlowNet, VoxelMorph

__all__ = [
    "VoxelMorph",
    "LightVoxelMorph",
    "PyramidNet",
    "AffineNet",
    "Cascade",
    "FlipAveraged",
    "flip_field",
    "UNet",
    "FlowNet",
    "Registration",
    "VelocityRegistration",
    "AffineRegistration",
    "PyramidRegistration",
    "centred_to_voxel_affine",
    "PRETRAINED",
    "pretrained",
    "pretrained_path",
]
