"""Figures of displacement fields: deformation grids, direction colours, arrows and Jacobian maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colors
from matplotlib.figure import Figure

from ..checks import check_number, check_positive_int
from ..warps import jacobian_det
from .common import PANEL_INCHES, field_tensor, figure_and_axes, spatial_array, symmetric_limit, to_numpy
from .layout import Layout, frame_view, panel_title, show_screen, view_layout

__all__ = ["FOLD_COLOUR", "GRID_COLOUR", "deformation_grid", "displacement_colour", "displacement_arrows",
           "jacobian_range", "jacobian_map"]

FOLD_COLOUR = "#ffd200"  # folded voxels (det J <= 0): yellow, far from the blue-white-red scale
# the colour bar of jacobian_map, per ndim: what det J measures for the pull map x -> x + disp(x)
_JACOBIAN_LABEL = {2: "det J (moving area per fixed pixel)", 3: "det J (moving volume per fixed voxel)"}
GRID_COLOUR = "tab:orange"


def _field_view(disp, axis: int, index, orientation):
    """``(layout, horizontal component, vertical component, spatial shape)`` of a field's view.

    The components are screen arrays (rows = the vertical axis), in voxels.
    """
    field = to_numpy(field_tensor(disp)[0])
    layout = view_layout(field.shape[1:], axis, index, orientation)
    along_h, along_v = layout.screen(field[layout.horizontal]), layout.screen(field[layout.vertical])
    return layout, along_h, along_v, field.shape[1:]


def _grid_positions(size: int, spacing: int) -> list[int]:
    """Indices ``0, spacing, 2 * spacing, ...`` and the last index ``size - 1``."""
    positions = list(range(0, size, spacing))
    return positions if positions[-1] == size - 1 else positions + [size - 1]


def _underlay(ax, image, layout: Layout, field_shape: Sequence[int]) -> None:
    """Draw ``image`` (if given) beneath a field, checking it matches the field's grid."""
    if image is None:
        return
    volume = spatial_array(image, "image")
    if volume.shape != tuple(field_shape):
        raise ValueError(f"`image` must have the field's spatial shape {tuple(field_shape)}, got "
                         f"{volume.shape}.")
    show_screen(ax, layout.screen(volume), layout, cmap="gray", interpolation="antialiased")


def deformation_grid(disp, spacing: int = 4, ax=None, image=None, axis: int = -1, index: int | None = None,
                     orientation=False, color: str = GRID_COLOUR, linewidth: float = 0.8,
                     title: str = "deformation grid") -> Figure:
    """The lines of the fixed grid, drawn where the warp samples them: at ``x + disp(x)``.

    Warps pull (``warped(x) = moving(x + disp(x))``), so each line of the fixed image's grid
    is drawn through the points of the *moving* image that its voxels read from: pass
    ``image=moving`` to see them on it. A zero field draws straight lines on the grid positions;
    folding shows as lines that cross.

    Args:
        disp: ``(B, ndim, *spatial)`` or ``(ndim, *spatial)`` in voxels.
        spacing: voxels between grid lines (the last index is always drawn too).
        ax: axes to draw into (default: a new figure).
        image: optional ``(B, C, *spatial)`` or ``(*spatial)`` image shown beneath the lines.
        axis, index, orientation: which slice and which layout (:mod:`regedu.viz`).
        color, linewidth: of the lines.
        title: panel title.
    """
    check_positive_int(spacing, "spacing")
    layout, along_h, along_v, spatial = _field_view(disp, axis, index, orientation)
    rows, cols = along_h.shape
    fig, ax = figure_and_axes(ax)
    _underlay(ax, image, layout, spatial)
    horizontal = np.arange(cols)[None, :] + along_h  # data x of every voxel's sampling point
    vertical = np.arange(rows)[:, None] + along_v  # data y
    for row in _grid_positions(rows, spacing):
        ax.plot(horizontal[row, :], vertical[row, :], color=color, linewidth=linewidth)
    for col in _grid_positions(cols, spacing):
        ax.plot(horizontal[:, col], vertical[:, col], color=color, linewidth=linewidth)
    frame_view(ax, layout, (rows, cols))
    panel_title(ax, title, layout)
    return fig


def _on_screen(layout: Layout, along_h: np.ndarray, along_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Components of vectors as seen on screen: right and up (data directions may be flipped)."""
    right = -along_h if layout.leftwards else along_h
    up = along_v if layout.upwards else -along_v
    return right, up


def _direction_colours(right: np.ndarray, up: np.ndarray, largest: float) -> np.ndarray:
    """RGB of on-screen vectors: hue = direction, saturation = length / ``largest`` (white = 0)."""
    hue = (np.arctan2(up, right) / (2 * np.pi)) % 1.0
    saturation = np.clip(np.hypot(right, up) / largest, 0.0, 1.0)
    return colors.hsv_to_rgb(np.stack([hue, saturation, np.ones_like(hue)], axis=-1))


def _colour_wheel(ax) -> None:
    """A small inset showing which colour is which on-screen direction (and that white is 0)."""
    inset = ax.inset_axes([0.72, 0.72, 0.26, 0.26])
    steps = np.linspace(-1, 1, 65)
    right, up = np.meshgrid(steps, steps)  # rows go up with origin="lower"
    wheel = _direction_colours(right, up, 1.0)
    wheel = np.concatenate([wheel, (np.hypot(right, up) <= 1)[..., None].astype(float)], axis=-1)
    inset.imshow(wheel, origin="lower", extent=(-1, 1, -1, 1))
    inset.set_axis_off()
    inset.set_title("direction", fontsize="xx-small", pad=1)


def displacement_colour(disp, ax=None, axis: int = -1, index: int | None = None, orientation=False,
                        title: str = "displacement") -> Figure:
    """The field as colour: hue is the on-screen direction of ``disp``, saturation its length.

    White means no displacement; the most saturated colour is the longest in-plane vector of
    the view, whose length (voxels) the title gives. The inset wheel reads colours as
    directions on the screen, whatever the layout. Arrows point from ``x`` to ``x + disp(x)``,
    where the warp samples the moving image.

    Args:
        disp: ``(B, ndim, *spatial)`` or ``(ndim, *spatial)`` in voxels.
        ax, axis, index, orientation, title: as in :func:`deformation_grid`.

    Returns:
        the Figure (for a new figure, one axes: the wheel is an inset of the panel).
    """
    layout, along_h, along_v, _ = _field_view(disp, axis, index, orientation)
    right, up = _on_screen(layout, along_h, along_v)
    largest = symmetric_limit(np.hypot(right, up))
    fig, ax = figure_and_axes(ax)
    show_screen(ax, _direction_colours(right, up, largest), layout)
    _colour_wheel(ax)
    panel_title(ax, f"{title} (max {largest:.3g} voxels)", layout)
    return fig


def displacement_arrows(disp, step: int = 4, scale: float = 1.0, ax=None, image=None, axis: int = -1,
                        index: int | None = None, orientation=False, color: str = "tab:red",
                        title: str = "displacement arrows") -> Figure:
    """Arrows from ``x`` to ``x + scale * disp(x)`` on every ``step``-th voxel (quiver).

    With ``scale=1`` each arrow ends where the warp samples the moving image for voxel ``x``.
    Arrows are drawn in data coordinates (voxel indices), so their direction is right on
    matplotlib's axes in every layout: with ``orientation=False`` channel 0 moves along the
    rows, i.e. a positive channel 0 points *down* the screen.

    Args:
        disp: ``(B, ndim, *spatial)`` or ``(ndim, *spatial)`` in voxels.
        step: voxels between arrows along each axis.
        scale: arrow length per voxel of displacement (> 0; raise it for tiny fields).
        ax, image, axis, index, orientation: as in :func:`deformation_grid`.
        color, title: of the arrows and the panel.
    """
    check_positive_int(step, "step")
    scale = check_number(scale, "scale", 1e-6)
    layout, along_h, along_v, spatial = _field_view(disp, axis, index, orientation)
    rows, cols = along_h.shape
    fig, ax = figure_and_axes(ax)
    _underlay(ax, image, layout, spatial)
    pick_rows, pick_cols = np.arange(step // 2, rows, step), np.arange(step // 2, cols, step)
    x, y = np.meshgrid(pick_cols, pick_rows)
    u, v = along_h[np.ix_(pick_rows, pick_cols)], along_v[np.ix_(pick_rows, pick_cols)]
    ax.quiver(x, y, u, v, angles="xy", scale_units="xy", scale=1.0 / scale, color=color, width=0.004)
    frame_view(ax, layout, (rows, cols))
    suffix = "" if scale == 1.0 else f", length x{scale:g}"
    panel_title(ax, f"{title}{suffix}", layout)
    return fig


def _jacobian_norm(det: np.ndarray, vmin: float | None = None,
                   vmax: float | None = None) -> colors.TwoSlopeNorm:
    """Blue below 1 (shrinking), white at 1, red above 1 (growing); at least ±0.001 around 1.

    ``vmin``/``vmax`` fix the range (one colour scale for several panels): ``vmin < 1 < vmax``.
    """
    low = min(max(float(det.min()), 0.0), 1.0 - 1e-3) if vmin is None else check_number(vmin, "vmin")
    high = max(float(det.max()), 1.0 + 1e-3) if vmax is None else check_number(vmax, "vmax")
    if not low < 1.0 < high:
        raise ValueError(f"the Jacobian colour scale is centred at det J = 1, so it needs vmin < 1 < vmax, "
                         f"got vmin={low:g}, vmax={high:g}; regedu.viz.jacobian_range(fields) gives a "
                         f"shared one.")
    return colors.TwoSlopeNorm(vmin=low, vcenter=1.0, vmax=high)


def jacobian_range(fields) -> tuple[float, float]:
    """One ``(vmin, vmax)`` for the Jacobian maps of several fields, for :func:`jacobian_map`.

    Panels that scale themselves make a field with det J in 1 ± 0.001 look as deformed as one in
    0.5 .. 2; passing this range to every panel shows them on one colour scale. ``vmin`` is the
    smallest det J over all fields, but at least 0 (folds are painted yellow anyway) and at most
    0.999; ``vmax`` the largest, at least 1.001.

    Args:
        fields: displacement fields ``(B, ndim, *spatial)`` in voxels (a list, or a dict's values);
            of each, the first item counts, the one :func:`jacobian_map` shows (pass
            ``disp[k:k + 1]`` for item ``k``).
    """
    fields = list(fields.values()) if isinstance(fields, Mapping) else list(fields)
    if not fields:
        raise ValueError("`fields` must hold at least one displacement field.")
    dets = [to_numpy(jacobian_det(field_tensor(disp, "fields[i]"))) for disp in fields]
    low = min(max(min(float(det.min()) for det in dets), 0.0), 1.0 - 1e-3)
    high = max(max(float(det.max()) for det in dets), 1.0 + 1e-3)
    return low, high


def _fold_note(shown: int, det: np.ndarray) -> str:
    """How many voxels fold in the view, and which share of the whole field folds."""
    share = 100.0 * float((det <= 0).mean())
    if det.ndim == 2:
        return f"{shown} folds (yellow), {share:.2f}%"
    return f"{shown} folds here (yellow), {share:.2f}% of all"


def jacobian_map(disp, ax=None, axis: int = -1, index: int | None = None, orientation=False,
                 title: str = "Jacobian determinant", vmin: float | None = None,
                 vmax: float | None = None) -> Figure:
    """The Jacobian determinant of ``x -> x + disp(x)``, centred at 1, with folds in yellow.

    ``det J`` is computed on the whole field (:func:`regedu.warps.jacobian_det`) and shown on
    the view. For the pull map ``x -> x + disp(x)`` (fixed -> moving) it is the area (3D: volume)
    of the moving image that one fixed voxel reads, so the anatomy in the warped image is scaled
    by ``1 / det J``: red where ``det J > 1`` (the warped image shows it compressed), white where
    ``det J = 1``, blue where ``0 < det J < 1`` (shown stretched), with a two-slope colour norm
    centred at 1; voxels that fold (``det J <= 0``, the map is not invertible there) are painted
    yellow and counted in the title. The field of ``warps.scaling(2, shape)`` (``affine_to_disp``)
    has ``det J = 4`` in 2D, and the object it warps covers a quarter of its area.

    Args:
        disp: ``(B, ndim, *spatial)`` or ``(ndim, *spatial)`` in voxels.
        ax, axis, index, orientation, title: as in :func:`deformation_grid`.
        vmin, vmax: the colour range (``vmin < 1 < vmax``), to put several panels on one scale
            (:func:`jacobian_range`); default: this view's own range.

    Returns:
        the Figure (for a new figure: the panel and its colour bar).
    """
    field = field_tensor(disp)
    det = to_numpy(jacobian_det(field)[0])  # in the field's own dtype, as regedu.metrics counts folds
    layout = view_layout(det.shape, axis, index, orientation)
    shown = layout.screen(det)
    fig, ax = figure_and_axes(ax, 1.3 * PANEL_INCHES, PANEL_INCHES)
    image = show_screen(ax, shown, layout, cmap="RdBu_r", norm=_jacobian_norm(shown, vmin, vmax))
    fig.colorbar(image, ax=ax, shrink=0.8, label=_JACOBIAN_LABEL[field.shape[1]])
    folded = shown <= 0
    folds = np.ma.masked_array(np.ones_like(shown), mask=~folded)
    show_screen(ax, folds, layout, cmap=colors.ListedColormap([FOLD_COLOUR]), vmin=0, vmax=1, gid="folds")
    panel_title(ax, f"{title}\n{_fold_note(int(folded.sum()), det)}", layout)
    return fig
