"""The one result type of every registration method, classical or learned.

:func:`regedu.register` and every method behind it (the classical ones in :mod:`regedu.classical`,
the learned ones in :mod:`regedu.api`, test-time instance optimisation in :mod:`regedu.train`)
return a :class:`RegistrationResult`. It lives in its own module, importing nothing from regedu, so
that classical methods, learned methods, training and widgets can all reach it without reaching
each other.

A result also unpacks like a network's output, ``warped, disp = result`` (and ``result[1]`` is
``disp``), so code written for ``model(moving, fixed)`` reads a result unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["RegistrationResult"]


@dataclass
class RegistrationResult:
    """What a registration returns.

    Attributes:
        warped: ``(B, C, *spatial)`` the moving image resampled onto the fixed grid,
            exactly ``warp(moving, disp)``.
        disp: ``(B, ndim, *spatial)`` the *total* displacement in voxels of the fixed
            grid (affine part included): ``warp_labels(moving_labels, disp)`` carries
            the moving labels onto the fixed grid.
        affine: ``(B, ndim, ndim + 1)`` the affine part (voxel indices of the fixed grid,
            the convention of ``docs/DESIGN.md``) when the method has one, else ``None``.
        history: loss per iteration, one list per pyramid level (coarse to fine).
        seconds: wall-clock time of the whole run.
        method: name of the method that produced the result.
        parameters: what the method optimised, by name (e.g. ``"velocity"`` for a
            diffeomorphic field, ``"control_points"`` for a B-spline).
        warped_labels: ``(B, 1, *spatial)`` moving labels on the fixed grid, filled in
            by :func:`regedu.register` when it is given ``moving_labels``.
    """

    warped: torch.Tensor
    disp: torch.Tensor
    affine: torch.Tensor | None = None
    history: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    method: str = ""
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)
    warped_labels: torch.Tensor | None = None

    @property
    def final_loss(self) -> float:
        """The last recorded loss (NaN when nothing was recorded)."""
        for level in reversed(self.history):
            if level:
                return level[-1]
        return math.nan

    def __iter__(self):
        """``warped, disp = result``: the pair a network returns (:class:`regedu.models.Registration`)."""
        return iter((self.warped, self.disp))

    def __getitem__(self, index):
        """``result[0]`` is ``warped``, ``result[1]`` is ``disp``, as in a network's output."""
        return (self.warped, self.disp)[index]
