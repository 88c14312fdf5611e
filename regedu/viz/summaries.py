"""Figures of several panels that sum up a registration."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from ..metrics import dice
from ..warps import jacobian_det, warp_labels
from .common import cpu_tensor, field_tensor, new_figure, spatial_array, symmetric_limit
from .fields import deformation_grid, jacobian_map
from .images import checkerboard, difference, overlay, show_image
from .layout import view_layout

__all__ = ["registration_summary"]


def _batched(x, name: str) -> torch.Tensor:
    """A CPU tensor with batch and channel axes: ``(*spatial)`` -> ``(1, 1, *spatial)``."""
    x = cpu_tensor(x, name)
    return x[None, None] if x.dim() in (2, 3) else x[:1]


def _mean_dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nanmean(dice(a, b)))


def registration_summary(moving, fixed, warped, disp, moving_labels=None, fixed_labels=None,
                         axis: int = -1, index: int | None = None, orientation=False, spacing: int = 4,
                         title: str | None = None, names=None) -> Figure:
    """One figure to end a lesson: the images, the differences before and after, the field.

    Panels: moving | fixed | warped | (warped labels on fixed, or a fixed/warped checkerboard),
    then fixed - moving | fixed - warped (one colour scale) | the deformation grid on the moving
    image | the Jacobian determinant with folds.

    Args:
        moving, fixed, warped: images ``(B, C, *spatial)`` or ``(*spatial)`` of one shape.
        disp: the displacement that made ``warped`` (``warp(moving, disp)``), in voxels.
        moving_labels, fixed_labels: optional label maps; with both, the moving labels are warped
            with ``disp`` and drawn on the fixed image, and the title reports mean Dice before -> after.
        axis, index, orientation: which slice and which layout (:mod:`regedu.viz`).
        spacing: voxels between grid lines.
        title: figure title (default: what was measured).
        names: label names for a legend of the warped-label contours, as in :func:`overlay`
            (a dict ``value -> name`` or a list indexed by value); ``None`` draws no legend.

    Returns:
        the Figure: 8 panels and 3 colour bars (11 axes).
    """
    fig, axes = new_figure(2, 4)
    view = {"axis": axis, "index": index, "orientation": orientation}
    named = {"moving": moving, "fixed": fixed, "warped": warped}
    images = [spatial_array(x, name) for name, x in named.items()]
    low, high = min(v.min() for v in images), max(v.max() for v in images)
    for ax, (name, image) in zip(axes[0, :3], named.items(), strict=True):
        show_image(image, ax, name, vmin=low, vmax=high, **view)
    headline = _labels_panel(axes[0, 3], fixed, warped, disp, moving_labels, fixed_labels, view, names)
    layout = view_layout(images[1].shape, **view)
    shared = symmetric_limit(layout.screen(images[1] - images[0]), layout.screen(images[1] - images[2]))
    difference(fixed, moving, ax=axes[1, 0], vmax=shared, names=("fixed", "moving"), **view,
               title="before: fixed − moving")
    difference(fixed, warped, ax=axes[1, 1], vmax=shared, names=("fixed", "warped"), **view,
               title="after: fixed − warped")
    deformation_grid(disp, spacing, ax=axes[1, 2], image=moving, **view, title="fixed grid on moving")
    jacobian_map(disp, ax=axes[1, 3], **view)
    folding = 100.0 * float((jacobian_det(field_tensor(disp)) <= 0).double().mean())
    fig.suptitle(title or f"registration summary: {headline}folding {folding:.2f}%", fontsize="large")
    return fig


def _labels_panel(ax, fixed, warped, disp, moving_labels, fixed_labels, view, names=None) -> str:
    """Warped labels on the fixed image (with Dice) or a checkerboard; returns a title fragment."""
    if moving_labels is None or fixed_labels is None:
        checkerboard(fixed, warped, ax=ax, **view, title="checkerboard fixed / warped")
        return ""
    moving_labels = _batched(moving_labels, "moving_labels")
    fixed_labels = _batched(fixed_labels, "fixed_labels")
    moved = warp_labels(moving_labels, field_tensor(disp))
    before, after = _mean_dice(moving_labels, fixed_labels), _mean_dice(moved, fixed_labels)
    overlay(fixed, moved, style="contour", names=names, ax=ax, **view,
            title=f"warped labels on fixed\nDice {after:.3f}")
    return f"mean Dice {before:.3f} → {after:.3f}, "
