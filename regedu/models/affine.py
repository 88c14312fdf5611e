"""AffineNet: a CNN that regresses an affine transform, and Cascade: models applied one after another.

AffineNet reads the concatenated ``(moving, fixed)`` pair with strided convolutions, averages the
features over space (so any input size works, no padding) and maps them with one linear layer to
an affine matrix. The matrix is predicted in *normalised, centred* coordinates, where every axis
runs from -1 to 1 and 0 is the image centre: there, a rotation about the centre or a translation by
a tenth of the image are numbers of the same size, which keeps the regression well conditioned
whatever the image size. :func:`centred_to_voxel_affine` converts it to regedu's convention
(voxel indices of the fixed grid, sampling location ``y = A[:, :, :ndim] @ x + A[:, :, ndim]``).

The last layer starts with tiny weights and a zero bias, so an untrained AffineNet returns the
identity (up to ~1e-4) and training starts from "no motion".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .. import kernels
from ..checks import check_features, check_ndim, check_positive_int
from .base import AffineRegistration, Registration, check_model_inputs, remembers_arguments
from .fast_layers import memory_format_for
from .unet import ConvBlock

__all__ = ["AffineNet", "Cascade", "centred_to_voxel_affine"]


def centred_to_voxel_affine(theta: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Convert an affine on centred, normalised coordinates to one on voxel indices.

    With ``c`` the image centre ``(n - 1) / 2`` and ``s`` the half extent ``(n - 1) / 2`` per axis,
    ``x_hat = (x - c) / s``. If ``theta = [M | t]`` maps ``x_hat -> M x_hat + t``, the same map on
    voxel indices is ``A = [S M S^-1 | c + S t - S M S^-1 c]`` with ``S = diag(s)``.

    Args:
        theta: ``(B, ndim, ndim + 1)``.
        shape: the spatial shape of the fixed grid.

    Returns:
        ``(B, ndim, ndim + 1)`` in regedu's convention (see :mod:`regedu.warps`).
    """
    ndim = theta.shape[1]
    like = {"dtype": theta.dtype, "device": theta.device}
    half = torch.tensor([(n - 1) / 2 if n > 1 else 1.0 for n in shape], **like)
    centre = torch.tensor([(n - 1) / 2 for n in shape], **like)
    linear = half[:, None] * theta[:, :, :ndim] / half[None, :]  # S M S^-1
    offset = centre + half * theta[:, :, ndim] - linear @ centre
    return torch.cat([linear, offset.unsqueeze(-1)], dim=-1)


@remembers_arguments
class AffineNet(nn.Module):
    """Affine registration network, 2D or 3D.

    Args:
        ndim: 2 or 3 spatial dimensions.
        in_channels: channels of each image.
        features: channels of the stride-2 convolutions (each halves the grid).
        init_std: standard deviation of the last layer's initial weights (0 starts exactly at the
            identity, but then no gradient reaches the earlier layers until that layer has moved).

    Call: ``model(moving, fixed)`` with ``(B, in_channels, *spatial)`` images of any size ->
    :class:`~.base.Registration` ``(warped, disp)`` with ``disp = affine_to_disp(A, spatial)``;
    ``model(moving, fixed, return_affine=True)`` -> :class:`~.base.AffineRegistration`
    ``(warped, disp, affine)``, ``affine`` ``(B, ndim, ndim + 1)`` on voxel indices.
    """

    def __init__(self, ndim: int, in_channels: int = 1, features: Sequence[int] = (16, 32, 64, 64, 64),
                 init_std: float = 1e-5, channels_last: bool = True):
        super().__init__()
        self.ndim = check_ndim(ndim)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        features = check_features(features, "features")
        blocks, previous = [], 2 * in_channels
        for channels in features:
            blocks.append(ConvBlock(ndim, previous, channels, stride=2))
            previous = channels
        self.encoder = nn.Sequential(*blocks)
        self.regressor = nn.Linear(previous, ndim * (ndim + 1))
        nn.init.normal_(self.regressor.weight, mean=0.0, std=init_std)
        nn.init.zeros_(self.regressor.bias)
        self.memory_format = memory_format_for(ndim) if channels_last else torch.contiguous_format

    def predict_affine(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """The affine ``(B, ndim, ndim + 1)`` on voxel indices of the fixed grid (no input checks)."""
        x = torch.cat([moving, fixed], dim=1).contiguous(memory_format=self.memory_format)
        pooled = self.encoder(x).mean(dim=tuple(range(2, 2 + self.ndim)))  # (B, features[-1])
        delta = self.regressor(pooled).view(-1, self.ndim, self.ndim + 1)
        identity = torch.eye(self.ndim, self.ndim + 1, dtype=delta.dtype, device=delta.device)
        return centred_to_voxel_affine(identity + delta, moving.shape[2:])

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor,
                return_affine: bool = False) -> Registration | AffineRegistration:
        check_model_inputs(moving, fixed, self, self.ndim, self.in_channels)
        moving, fixed = kernels.broadcast_batch(moving, fixed)
        affine = self.predict_affine(moving, fixed)
        disp = kernels.affine_to_disp(affine, moving.shape[2:])
        warped = kernels.resample(moving, disp)
        if return_affine:
            return AffineRegistration(warped, disp, affine)
        return Registration(warped, disp)


class Cascade(nn.Module):
    """Models applied one after another, e.g. ``Cascade(AffineNet(3), VoxelMorph(3))``.

    Each stage registers the previous stage's output to ``fixed``; the fields are composed
    (``compose(u, v)(x) = v(x) + u(x + v(x))``, see :func:`regedu.warps.compose`) into one total
    displacement, and ``moving`` is warped once with it (no blurring by repeated interpolation).
    Returns :class:`~.base.Registration` ``(warped, disp)`` with ``disp`` the total field.
    """

    def __init__(self, *stages: nn.Module):
        super().__init__()
        if not stages:
            raise ValueError("Cascade needs at least one model, e.g. Cascade(AffineNet(3), VoxelMorph(3)).")
        self.stages = nn.ModuleList(stages)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> Registration:
        current, total = moving, None
        for stage in self.stages:
            _, disp = stage(current, fixed)
            total = disp if total is None else kernels.compose(total, disp)
            current = kernels.resample(moving, total)
        return Registration(current, total)
