"""Figures of images: one slice, a row of slices, labels on an image, checkerboards, differences,
and the three planes of a brain volume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..checks import check_choice, check_number, check_positive_int
from .common import PANEL_INCHES, figure_and_axes, new_figure, spatial_array, spatial_pair, symmetric_limit
from .layout import PLANE_NAMES, RAS_NAMES, Layout, frame_view, panel_title, show_screen, view_layout

__all__ = ["show_image", "show_slices", "overlay", "checkerboard_image", "checkerboard", "difference",
           "three_plane"]


def _items(images) -> list:
    """A single image, or a list/tuple of images, as a list."""
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def show_image(image, ax=None, title: str = "image", cmap: str = "gray", axis: int = -1,
               index: int | None = None, orientation=False, vmin: float | None = None,
               vmax: float | None = None, colorbar: bool = False) -> Figure:
    """One image in one panel.

    Args:
        image: ``(B, C, *spatial)`` or ``(*spatial)`` (first item and channel shown); a 3D image
            shows the slice ``index`` across ``axis``.
        ax: axes to draw into (default: a new figure).
        title: panel title (the slice is added below it for 3D images).
        cmap: matplotlib colour map.
        axis, index, orientation: which slice and which layout (:mod:`regedu.viz`).
        vmin, vmax: intensity range of the colour map (default: the image's own range).
        colorbar: add a colour bar.
    """
    volume = spatial_array(image, "image")
    layout = view_layout(volume.shape, axis, index, orientation)
    fig, ax = figure_and_axes(ax)
    shown = show_screen(ax, layout.screen(volume), layout, cmap=cmap, vmin=vmin, vmax=vmax,
                    interpolation="antialiased")
    panel_title(ax, title, layout)
    if colorbar:
        fig.colorbar(shown, ax=ax, shrink=0.8)
    return fig


def show_slices(images, titles: Sequence[str] | None = None, cmap: str = "gray", axis: int = -1,
                index: int | None = None, orientation=False, vmin: float | None = None,
                vmax: float | None = None, colorbar: bool = False) -> Figure:
    """A row of images, one panel each (see :func:`show_image` for the arguments).

    Args:
        images: one image or a list of images, each ``(B, C, *spatial)`` or ``(*spatial)``.
        titles: one title per image (default ``"image 0"``, ``"image 1"``, ...).
        cmap, axis, index, orientation, vmin, vmax, colorbar: as in :func:`show_image`, for every panel.

    Returns:
        the Figure, with one axes per image (plus one per colour bar).
    """
    images = _items(images)
    titles = list(titles) if titles is not None else [f"image {i}" for i in range(len(images))]
    if len(titles) != len(images):
        raise ValueError(f"give one title per image: {len(images)} images but {len(titles)} titles.")
    fig, axes = new_figure(1, len(images))
    for ax, image, title in zip(axes[0], images, titles, strict=True):
        show_image(image, ax, title, cmap, axis, index, orientation, vmin, vmax, colorbar)
    return fig


def _label_colours(count: int) -> np.ndarray:
    """RGB colour of label values ``0 .. count - 1`` (value 0, background, is never drawn)."""
    pairs = plt.get_cmap("tab20").colors
    palette = np.array(pairs[::2] + pairs[1::2])  # the 10 strong colours first, then their light partners
    return np.array([palette[(value - 1) % len(palette)] for value in range(count)])


def _label_names(names, values: Sequence[int]) -> list[str]:
    """Names of label ``values`` from a dict ``value -> name`` or a list indexed by value."""
    if isinstance(names, Mapping):
        return [str(names.get(v, v)) for v in values]
    return [str(names[v]) if 0 <= v < len(names) else str(v) for v in values]


def _label_legend(ax, values: Sequence[int], names, palette: np.ndarray, style: str = "fill") -> None:
    """A legend of label ``values`` beside ``ax``: colour patches for fills, lines for contours."""
    labelled = zip(values, _label_names(names, values), strict=True)
    if style == "contour":
        handles = [Line2D([], [], color=palette[v], linewidth=1.5, label=name) for v, name in labelled]
    else:
        handles = [Patch(color=palette[v], label=name) for v, name in labelled]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small",
              frameon=False, borderaxespad=0.0)


def _draw_labels(ax, screen_labels: np.ndarray, layout: Layout, alpha: float, style: str,
                 names=None) -> list[int]:
    """Draw a screen label map as colours (``style="fill"``) or outlines (``"contour"``).

    Returns the label values drawn (0, the background, never is).
    """
    values = [int(v) for v in np.unique(screen_labels) if v != 0]
    palette = _label_colours(int(screen_labels.max(initial=0)) + 1)
    if style == "fill":
        rgba = np.zeros(screen_labels.shape + (4,))
        inside = screen_labels > 0
        rgba[inside, :3] = palette[screen_labels[inside]]
        rgba[inside, 3] = alpha
        show_screen(ax, rgba, layout)
    else:
        for value in values:
            ax.contour((screen_labels == value).astype(float), levels=[0.5], colors=[palette[value]],
                       linewidths=1.0)
        frame_view(ax, layout, screen_labels.shape)
    if names is not None and values:
        _label_legend(ax, values, names, palette, style)
    return values


def overlay(image, labels, alpha: float = 0.4, style: str = "fill", names=None, ax=None, axis: int = -1,
            index: int | None = None, orientation=False, title: str = "labels on image") -> Figure:
    """An image with a label map drawn on top, one colour per label value (0 is background, not drawn).

    Args:
        image: ``(B, C, *spatial)`` or ``(*spatial)``.
        labels: integer label map of the same spatial shape, ``(B, 1, *spatial)`` or ``(*spatial)``.
        alpha: opacity of the label colours, in [0, 1] (``style="fill"``).
        style: ``"fill"`` (translucent colours) or ``"contour"`` (outlines of each label).
        names: label names for a legend: a dict ``value -> name`` (e.g. ``brain.label_names``)
            or a list indexed by value; ``None`` draws no legend.
        ax, axis, index, orientation: where and which slice (:mod:`regedu.viz`).
        title: panel title.
    """
    alpha = check_number(alpha, "alpha", maximum=1.0)
    check_choice(style, "style", ("fill", "contour"))
    volume, label_volume = spatial_array(image, "image"), spatial_array(labels, "labels")
    if volume.shape != label_volume.shape:
        raise ValueError(f"`image` and `labels` must share one spatial shape, got {volume.shape} and "
                         f"{label_volume.shape}.")
    if np.issubdtype(label_volume.dtype, np.floating):
        raise TypeError("`labels` must be an integer label map; convert it with labels.round().long().")
    fig, ax = figure_and_axes(ax)
    layout = view_layout(volume.shape, axis, index, orientation)
    show_screen(ax, layout.screen(volume), layout, cmap="gray")
    _draw_labels(ax, layout.screen(label_volume), layout, alpha, style, names)
    panel_title(ax, title, layout)
    return fig


def checkerboard_image(a: np.ndarray, b: np.ndarray, squares: int = 8) -> np.ndarray:
    """Tiles of ``a`` and ``b`` (2D arrays of one shape) in a ``squares x squares`` checkerboard.

    The tile at row ``i``, column ``j`` comes from ``a`` when ``i + j`` is even, else from ``b``.
    """
    rows, cols = a.shape
    tile_row = np.arange(rows) * squares // rows
    tile_col = np.arange(cols) * squares // cols
    from_a = (tile_row[:, None] + tile_col[None, :]) % 2 == 0
    return np.where(from_a, a, b)


def checkerboard(a, b, squares: int = 8, ax=None, axis: int = -1, index: int | None = None,
                 orientation=False, title: str = "checkerboard") -> Figure:
    """Alternating squares of two images: edges that continue across squares are aligned.

    Args:
        a, b: images of one spatial shape, ``(B, C, *spatial)`` or ``(*spatial)`` (e.g. fixed and warped).
        squares: number of squares along each side of the view.
        ax, axis, index, orientation, title: as in :func:`overlay`.
    """
    check_positive_int(squares, "squares")
    volume_a, volume_b = spatial_pair(a, b)
    fig, ax = figure_and_axes(ax)
    layout = view_layout(volume_a.shape, axis, index, orientation)
    board = checkerboard_image(layout.screen(volume_a), layout.screen(volume_b), squares)
    low, high = min(volume_a.min(), volume_b.min()), max(volume_a.max(), volume_b.max())
    show_screen(ax, board, layout, cmap="gray", vmin=low, vmax=high)
    panel_title(ax, title, layout)
    return fig


def difference(a, b, ax=None, vmax: float | None = None, names: tuple[str, str] = ("a", "b"), axis: int = -1,
               index: int | None = None, orientation=False, title: str | None = None) -> Figure:
    """The intensity difference ``a - b`` with a diverging colour map centred at 0, and a colour bar.

    Red where ``a`` is brighter, blue where ``b`` is, white where they agree. The title gives the
    root mean square of the difference over the whole image (all slices).

    Args:
        a, b: images of one spatial shape, ``(B, C, *spatial)`` or ``(*spatial)``.
        vmax: the colour scale spans ``[-vmax, vmax]`` (default: the largest ``|a - b|`` in the view);
            give two panels one ``vmax`` to compare them.
        names: what ``a`` and ``b`` are, for the title and the colour bar, e.g. ``("fixed", "warped")``.
        ax, axis, index, orientation: as in :func:`overlay`.
        title: panel title (default ``"a - b"`` with the names).
    """
    volume_a, volume_b = spatial_pair(a, b)
    fig, ax = figure_and_axes(ax, 1.3 * PANEL_INCHES, PANEL_INCHES)
    layout = view_layout(volume_a.shape, axis, index, orientation)
    diff = volume_a - volume_b
    shown = layout.screen(diff)
    limit = symmetric_limit(shown) if vmax is None else check_number(vmax, "vmax")
    norm = colors.TwoSlopeNorm(vmin=-max(limit, 1e-12), vcenter=0.0, vmax=max(limit, 1e-12))
    image = show_screen(ax, shown, layout, cmap="RdBu_r", norm=norm)
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"{names[0]} − {names[1]}")
    rms = float(np.sqrt(np.mean(diff**2)))
    panel_title(ax, title or f"{names[0]} − {names[1]} (RMS {rms:.3g})", layout)
    return fig


def three_plane(volume, index: Sequence[int] | None = None, labels=None, orientation=True, cmap: str = "gray",
                alpha: float = 0.4, crosshair: bool = True, title: str | None = None) -> Figure:
    """Sagittal, coronal and axial views of a 3D volume through one point.

    Args:
        volume: ``(B, C, X, Y, Z)`` or ``(X, Y, Z)``, a brain in RAS order.
        index: the point ``(x, y, z)`` in voxels (default: the middle of the volume).
        labels: optional label map of the same shape, drawn in colour.
        orientation: layout (:mod:`regedu.viz`); ``True`` (radiological) by default here, since the
            plane names assume RAS axes.
        cmap, alpha: colour map of the image and opacity of the labels.
        crosshair: draw lines where the other two planes cut each view.
        title: figure title.

    Returns:
        the Figure, with three axes: sagittal (across axis 0), coronal (1), axial (2).
    """
    array = spatial_array(volume, "volume")
    if array.ndim != 3:
        raise ValueError(f"`volume` must be 3D, got spatial shape {array.shape}; show 2D images with "
                         f"show_slices.")
    point = [s // 2 for s in array.shape] if index is None else [int(i) for i in index]
    if len(point) != 3:
        raise ValueError(f"`index` must be a point (x, y, z) of three voxel indices, got {index!r}.")
    label_array = spatial_array(labels, "labels") if labels is not None else None
    fig, axes = new_figure(1, 3)
    for cut, ax in enumerate(axes[0]):
        layout = view_layout(array.shape, cut, point[cut], orientation)
        show_screen(ax, layout.screen(array), layout, cmap=cmap, interpolation="antialiased")
        if label_array is not None:
            _draw_labels(ax, layout.screen(label_array), layout, alpha, "fill")
        if crosshair:
            ax.axvline(point[layout.horizontal], color="tab:cyan", linewidth=0.6, alpha=0.7)
            ax.axhline(point[layout.vertical], color="tab:cyan", linewidth=0.6, alpha=0.7)
        if layout.letters is not None:
            panel_title(ax, f"{PLANE_NAMES[cut]}, {RAS_NAMES[cut]} = {point[cut]}")
        else:
            panel_title(ax, f"across axis {cut}, index {point[cut]}")
    if title:
        fig.suptitle(title)
    return fig
