"""Toy shapes for the first lessons (a disk, a square, the letters O and C) and the large-deformation
pairs of notebook 06, seeded like everything in :mod:`regedu.data.synthetic` and dimension-generic:
``shape`` has 2 entries for 2D, 3 for 3D; images ``(1, 1, *shape)`` float in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import warps
from ..checks import check_choice, check_number, check_shape
from .synthetic import make_generator, random_normal

__all__ = ["disk", "square", "letter_o", "letter_c", "large_deformation_pair"]


def _offsets(shape: Sequence[int], centre: Sequence[float] | None, device, dtype) -> torch.Tensor:
    """Voxel coordinates relative to ``centre`` (default: the image centre): ``(ndim, *shape)``."""
    shape = check_shape(shape)
    if centre is None:
        centre = [(n - 1) / 2 for n in shape]
    if len(centre) != len(shape):
        raise ValueError(f"`centre` must have {len(shape)} coordinates (voxels), got {list(centre)}.")
    axes = [torch.arange(n, device=device, dtype=dtype) - c for n, c in zip(shape, centre, strict=True)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def _as_image(inside: torch.Tensor, dtype) -> torch.Tensor:
    return inside.to(dtype)[None, None]


def disk(shape: Sequence[int], radius: float | None = None, centre: Sequence[float] | None = None,
         device=None, dtype=torch.float32) -> torch.Tensor:
    """A disk (2D) or ball (3D): ``(1, 1, *shape)``, 1 inside (distance <= ``radius`` voxels), 0 out.

    ``radius`` defaults to a quarter of the smallest side, ``centre`` to the image centre.
    """
    offsets = _offsets(shape, centre, device, dtype)
    radius = check_number(radius if radius is not None else min(shape) / 4, "radius", 0.0, strict=True)
    return _as_image(offsets.norm(dim=0) <= radius, dtype)


def square(shape: Sequence[int], half_width: float | None = None, centre: Sequence[float] | None = None,
           device=None, dtype=torch.float32) -> torch.Tensor:
    """A square (2D) or cube (3D) of side ``2 * half_width``: ``(1, 1, *shape)`` in {0, 1}.

    ``half_width`` defaults to a quarter of the smallest side, ``centre`` to the image centre.
    """
    offsets = _offsets(shape, centre, device, dtype)
    half = check_number(half_width if half_width is not None else min(shape) / 4, "half_width", 0.0,
                         strict=True)
    return _as_image(offsets.abs().amax(dim=0) <= half, dtype)


def _ring(shape, radius, thickness, centre, device, dtype):
    offsets = _offsets(shape, centre, device, dtype)
    radius = check_number(radius if radius is not None else min(shape) / 4, "radius", 0.0, strict=True)
    thickness = check_number(thickness if thickness is not None else radius / 2, "thickness", 0.0,
                              strict=True)
    distance = offsets.norm(dim=0)
    return offsets, (distance <= radius) & (distance > radius - thickness), thickness


def letter_o(shape: Sequence[int], radius: float | None = None, thickness: float | None = None,
             centre: Sequence[float] | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """An "O": a ring (2D) or spherical shell (3D) of outer ``radius`` and ``thickness`` voxels.

    Defaults: radius a quarter of the smallest side, thickness half the radius.
    """
    _, inside, _ = _ring(shape, radius, thickness, centre, device, dtype)
    return _as_image(inside, dtype)


def letter_c(shape: Sequence[int], radius: float | None = None, thickness: float | None = None,
             gap: float | None = None, centre: Sequence[float] | None = None, device=None,
             dtype=torch.float32) -> torch.Tensor:
    """A "C": the "O" of :func:`letter_o` with a slot of width ``gap`` voxels (default the
    thickness) cut towards increasing axis 1 (in 3D the slot is cut through the shell)."""
    offsets, inside, thickness = _ring(shape, radius, thickness, centre, device, dtype)
    gap = check_number(gap if gap is not None else thickness, "gap", 0.0, strict=True)
    slot = (offsets[1] > 0) & (offsets[0].abs() < gap / 2)
    return _as_image(inside & ~slot, dtype)


def _speed_for_distance(distance: float, width: float) -> float:
    """Peak speed of a Gaussian-bump velocity whose flow carries the bump's centre ``distance``
    voxels in unit time: from ``ds/dt = speed * exp(-s**2 / (2 width**2))``,
    ``speed = integral_0^distance exp(s**2 / (2 width**2)) ds`` (trapezoid rule)."""
    s = torch.linspace(0.0, distance, 1001, dtype=torch.float64)
    return float(torch.trapezoid(torch.exp(s**2 / (2 * width**2)), s))


def _bump_velocity(shape: tuple[int, ...], direction: torch.Tensor, distance: float, width: float,
                   device) -> torch.Tensor:
    """Velocity ``(1, ndim, *shape)`` along the unit ``direction``, a Gaussian bump of ``width``
    voxels centred on the image, whose exponential moves the centre by ``distance`` voxels."""
    offsets = _offsets(shape, None, device, torch.float32)
    bump = torch.exp(-(offsets**2).sum(dim=0) / (2 * width**2))
    speed = _speed_for_distance(distance, width)
    return (speed * bump * direction.view(-1, *[1] * len(shape)))[None]


def large_deformation_pair(shape: Sequence[int] = (64, 64), kind: str = "c_to_o", magnitude: float = 12.0,
                           seed=0, device=None) -> dict[str, torch.Tensor]:
    """A toy pair that single-scale registration gets wrong, with batch axis ``(1, 1, *shape)``.

    ``kind="c_to_o"``: moving is a "C", fixed an "O" (the classic test: closing the gap needs
    a large, very non-linear deformation; no ground truth). ``kind="large_warp"``: moving is
    a disk (ball in 3D) of radius ``min(shape) / 6``; ``disp`` is the exponential of a
    Gaussian-bump velocity (width ``min(shape) / 4``) along a random direction (from ``seed``)
    that moves the image centre by ``magnitude`` voxels (``disp`` there has that length), and
    ``fixed = warp(moving, disp)``: the disk pushed about ``magnitude`` voxels the other way,
    and squashed, further than its own radius at the default.

    Returns a dict with ``moving``, ``fixed`` (float in [0, 1]), ``moving_labels`` and
    ``fixed_labels`` (int64, 1 inside the shape), and for ``"large_warp"`` also ``disp``.
    """
    shape = check_shape(shape)
    check_choice(kind, "kind", ("c_to_o", "large_warp"))
    if kind == "c_to_o":
        radius = min(shape) * 0.3
        moving = letter_c(shape, radius, radius * 0.4, radius * 0.5, device=device)
        fixed = letter_o(shape, radius, radius * 0.4, device=device)
        return {"moving": moving, "fixed": fixed,
                "moving_labels": moving.long(), "fixed_labels": fixed.long()}
    magnitude = check_number(magnitude, "magnitude")
    direction = random_normal(len(shape), make_generator(seed), device, torch.float32)
    direction = direction / direction.norm()
    velocity = _bump_velocity(shape, direction, magnitude, min(shape) / 4, device)
    disp = warps.integrate(velocity, steps=9)
    moving = disk(shape, min(shape) / 6, device=device)
    labels = moving.long()
    return {"moving": moving, "fixed": warps.warp(moving, disp), "moving_labels": labels,
            "fixed_labels": warps.warp_labels(labels, disp), "disp": disp}
