"""Figures for registration lessons: slices, overlays, grids, fields, Jacobians and loss curves.

Every function draws with matplotlib and **returns the Figure**; none calls ``plt.show()``, and
all work headless (the Agg backend). Functions that draw one panel take ``ax=`` to draw into an
axes you made (they then return ``ax.figure``). Figures made here are detached from pyplot
(``plt.close(fig)`` right after creation), so a notebook shows each one exactly once: when the
cell returns it or calls ``display(fig)``. In a script, save it with ``fig.savefig("name.png")``.

Inputs are tensors (or numpy arrays) on any device and of any dtype:

* images and label maps: ``(B, C, *spatial)`` or just ``(*spatial)``; the first batch item and
  the first channel are shown;
* displacement fields: ``(B, ndim, *spatial)`` or ``(ndim, *spatial)``, in voxels, channel ``k``
  along spatial axis ``k`` (DESIGN.md).

3D inputs show one slice: the slice ``index`` across spatial ``axis`` (default: the middle slice
across the last axis, which for a brain in RAS order ``(x, y, z)`` is the axial slice
``vol[:, :, z]``). A field on a slice shows its two in-plane components; the component across
the slice is not drawn.

How a slice sits on the screen is set by ``orientation``:

* ``False`` (default): as a matrix, like ``plt.imshow(array)``: axis 0 runs down the rows (its
  index grows downwards), axis 1 along the columns (left to right). Channel 0 of a field moves
  along the rows, i.e. along matplotlib's (inverted) y axis. Right for toy images.
* ``True`` or ``"radiological"``: the tensor is a brain in RAS order (``x`` = left -> right,
  ``y`` = posterior -> anterior, ``z`` = inferior -> superior), shown as a radiologist reads
  it: the patient's right on the image's left (axial and coronal), anterior at the top (axial),
  superior at the top (coronal and sagittal), anterior on the left (sagittal). Small letters
  R/L, A/P, S/I mark the sides. A 2D image is taken to be the slice across ``axis`` (default
  the last: an axial slice ``(x, y)``, as :func:`regedu.data.brain_slice` gives).
* ``"neurological"``: the same, but the patient's left on the image's left.

In every layout, the plot's data coordinates are voxel indices of the tensor, so grid lines and
arrows drawn at ``x + disp(x)`` land on the image where the warp samples it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .checks import check_choice, check_disp, check_image, check_positive_int, check_tensor
from .metrics import dice
from .warps import jacobian_det, warp_labels

__all__ = [
    "new_figure",
    "show_image",
    "show_slices",
    "overlay",
    "checkerboard",
    "difference",
    "deformation_grid",
    "displacement_colour",
    "displacement_arrows",
    "jacobian_map",
    "jacobian_range",
    "loss_curve",
    "dice_per_label",
    "landscape",
    "joint_histogram",
    "registration_summary",
    "three_plane",
    "LiveLossPlot",
]

PANEL_INCHES = 3.2  # width and height of one image panel
FOLD_COLOUR = "#ffd200"  # folded voxels (det J <= 0): yellow, far from the blue-white-red scale
# the colour bar of jacobian_map, per ndim: what det J measures for the pull map x -> x + disp(x)
_JACOBIAN_LABEL = {2: "det J (moving area per fixed pixel)", 3: "det J (moving volume per fixed voxel)"}
GRID_COLOUR = "tab:orange"
_RAS_ENDS = {0: ("L", "R"), 1: ("P", "A"), 2: ("I", "S")}  # letters at the low and high index end
_RAS_NAMES = ("x", "y", "z")
_PLANE_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}  # the plane across RAS axis k
_ORIENTATIONS = (False, None, True, "radiological", "neurological")


# ---------------------------------------------------------------------------
# inputs: tensors to numpy arrays on the CPU
# ---------------------------------------------------------------------------


def _cpu_tensor(x, name: str) -> torch.Tensor:
    """A detached CPU tensor of the same dtype from a tensor or numpy array (booleans become int64)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    check_tensor(x, name)
    x = x.detach().cpu()
    return x.to(torch.int64) if x.dtype == torch.bool else x


def _numpy(x: torch.Tensor) -> np.ndarray:
    """A CPU tensor as a numpy array for drawing: floats as float64 (numpy has no bfloat16)."""
    return (x.double() if x.is_floating_point() else x).numpy()


def _volume(x, name: str) -> np.ndarray:
    """First item and channel of an image or label map, as a numpy array ``(*spatial)``."""
    x = _cpu_tensor(x, name)
    if x.dim() in (2, 3):
        x = x[None, None]
    if x.dim() not in (4, 5):
        raise ValueError(
            f"`{name}` must be an image (B, C, H, W) / (B, C, D, H, W), or its spatial part (H, W) / "
            f"(D, H, W), got shape {tuple(x.shape)}. Index a batch item or channel with x[0] to drop axes."
        )
    check_image(x, name)
    return _numpy(x[0, 0])


def _field_tensor(disp, name: str = "disp") -> torch.Tensor:
    """A field ``(B, ndim, *spatial)`` or ``(ndim, *spatial)`` as a CPU tensor ``(1, ndim, *spatial)``.

    ``(2, H, W)`` and ``(3, D, H, W)`` are read as single fields without a batch axis; a 4-axis
    tensor whose second axis is 2 is a batch of 2D fields.
    """
    disp = _cpu_tensor(disp, name)
    unbatched = disp.dim() in (3, 4) and disp.shape[0] == disp.dim() - 1
    if unbatched and not (disp.dim() == 4 and disp.shape[1] == 2):
        disp = disp[None]
    check_disp(disp, name)
    return disp[:1]


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two images of one spatial shape, as numpy arrays ``(*spatial)``."""
    volume_a, volume_b = _volume(a, "a"), _volume(b, "b")
    if volume_a.shape != volume_b.shape:
        raise ValueError(f"`a` and `b` must share one spatial shape, got {volume_a.shape} and "
                         f"{volume_b.shape}. Resample one onto the other's grid first.")
    return volume_a, volume_b


def _items(images) -> list:
    """A single image, or a list/tuple of images, as a list."""
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def _check_number(value, name: str, low: float = 0.0, high: float = math.inf) -> float:
    """``value`` as a float, raising unless it is a real number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not low <= value <= high:
        raise ValueError(f"`{name}` must be a number in [{low}, {high}], got {value!r}.")
    return float(value)


# ---------------------------------------------------------------------------
# layout: which slice, and how it sits on the screen
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where a 2D view comes from and how it is laid out.

    Data coordinates of the plot are voxel indices: the screen's horizontal data coordinate is
    the index along tensor axis ``horizontal``, the vertical one the index along ``vertical``.
    """

    ndim: int
    cut: int  # 3D: the axis the slice is taken across; 2D: the RAS axis the slice was cut across
    index: int | None  # slice index along ``cut`` (3D only)
    horizontal: int  # tensor spatial axis shown left-right
    vertical: int  # tensor spatial axis shown bottom-top
    leftwards: bool  # the horizontal index grows to the left
    upwards: bool  # the vertical index grows upwards (anatomical) instead of downwards (matrix)
    letters: tuple[str, str, str, str] | None  # side letters: left, right, bottom, top
    names: tuple[str, str]  # axis names for labels: horizontal, vertical

    def screen(self, volume: np.ndarray) -> np.ndarray:
        """The view of a spatial array as ``(vertical, horizontal)``: rows are the vertical axis."""
        plane = volume if self.ndim == 2 else np.take(volume, self.index, axis=self.cut)
        in_plane = [a for a in range(self.ndim) if self.ndim == 2 or a != self.cut]
        return plane if in_plane[0] == self.vertical else plane.T

    def note(self) -> str:
        """Which slice this is, for titles ('' for a 2D image)."""
        if self.ndim == 2:
            return ""
        if self.letters is not None:
            return f"{_PLANE_NAMES[self.cut]}, {_RAS_NAMES[self.cut]} = {self.index}"
        return f"axis {self.cut} = {self.index}"


def _check_orientation(orientation) -> str | None:
    """Normalise ``orientation`` to None (matrix), 'radiological' or 'neurological'."""
    check_choice(orientation, "orientation", _ORIENTATIONS)
    if orientation is True:
        return "radiological"
    return orientation or None


def _check_axis(axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -3 <= axis <= 2:
        raise ValueError(f"`axis` must be a spatial axis 0, 1, 2 (or -3 .. -1), got {axis!r}.")
    return axis % 3


def _check_index(index, size: int) -> int:
    if index is None:
        return size // 2
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < size:
        raise ValueError(f"`index` must be a slice index in [0, {size - 1}], got {index!r}.")
    return int(index)


def _layout(shape: Sequence[int], axis=-1, index=None, orientation=False) -> _Layout:
    """How to show an array of spatial ``shape`` (2D, or the slice ``index`` across ``axis`` of 3D)."""
    ndim = len(shape)
    style = _check_orientation(orientation)
    cut = _check_axis(axis)
    if ndim == 2 and index is not None:
        raise ValueError(f"`index` picks a slice of a 3D volume; this image is 2D {tuple(shape)}: drop it.")
    index = _check_index(index, shape[cut]) if ndim == 3 else None
    in_plane = (0, 1) if ndim == 2 else tuple(a for a in range(3) if a != cut)
    if style is None:
        return _Layout(ndim, cut, index, horizontal=in_plane[1], vertical=in_plane[0], leftwards=False,
                       upwards=False, letters=None, names=(f"axis {in_plane[1]}", f"axis {in_plane[0]}"))
    ras = tuple(a for a in range(3) if a != cut)  # RAS identity of the two in-plane axes
    leftwards = ras[0] == 1 or style == "radiological"  # sagittal: anterior on the left
    low, high = _RAS_ENDS[ras[0]]
    bottom, top = _RAS_ENDS[ras[1]]
    letters = (high, low, bottom, top) if leftwards else (low, high, bottom, top)
    return _Layout(ndim, cut, index, horizontal=in_plane[0], vertical=in_plane[1], leftwards=leftwards,
                   upwards=True, letters=letters, names=(_RAS_NAMES[ras[0]], _RAS_NAMES[ras[1]]))


# ---------------------------------------------------------------------------
# drawing helpers
# ---------------------------------------------------------------------------


def new_figure(rows: int = 1, cols: int = 1, width: float | None = None, height: float | None = None):
    """``(figure, axes)``: a figure with a ``(rows, cols)`` array of axes to fill with ``ax=``.

    Constrained layout, ``PANEL_INCHES`` per panel unless ``width``/``height`` (inches) are given;
    detached from pyplot like every figure here (see the module docstring).
    """
    check_positive_int(rows, "rows")
    check_positive_int(cols, "cols")
    width = width or PANEL_INCHES * cols
    height = height or PANEL_INCHES * rows
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), layout="constrained", squeeze=False)
    plt.close(fig)
    return fig, axes


def _figure_and_axes(ax, width: float | None = None, height: float | None = None):
    """``(figure, ax)``: the given axes, or one new panel."""
    if ax is not None:
        return ax.figure, ax
    fig, axes = new_figure(1, 1, width, height)
    return fig, axes[0, 0]


def _frame(ax, layout: _Layout, screen_shape: Sequence[int]) -> None:
    """Limits, aspect and labels of a view: matrix axes with index labels, or anatomy letters."""
    rows, cols = screen_shape
    ax.set_xlim((cols - 0.5, -0.5) if layout.leftwards else (-0.5, cols - 0.5))
    ax.set_ylim((-0.5, rows - 0.5) if layout.upwards else (rows - 0.5, -0.5))
    ax.set_aspect("equal")
    if layout.letters is None:
        ax.set_xlabel(layout.names[0], fontsize="small")
        ax.set_ylabel(layout.names[1], fontsize="small")
        ax.tick_params(labelsize="x-small")
        return
    ax.set_xticks([])
    ax.set_yticks([])
    if not any(text.get_gid() == "side letter" for text in ax.texts):  # once, however many layers
        _side_letters(ax, layout.letters)


def _side_letters(ax, letters: tuple[str, str, str, str]) -> None:
    """Small white letters with a dark outline at the middle of each side (left, right, bottom, top)."""
    outline = [path_effects.withStroke(linewidth=2, foreground="black")]
    places = [(0.03, 0.5, "left", "center"), (0.97, 0.5, "right", "center"),
              (0.5, 0.03, "center", "bottom"), (0.5, 0.97, "center", "top")]
    for letter, (x, y, ha, va) in zip(letters, places, strict=True):
        ax.text(x, y, letter, transform=ax.transAxes, ha=ha, va=va, color="white", fontsize="small",
                fontweight="bold", path_effects=outline, gid="side letter")


def _imshow(ax, screen: np.ndarray, layout: _Layout, **options):
    """Show a screen array (rows = vertical axis) with pixel centres at integer data coordinates."""
    rows, cols = screen.shape[:2]
    options.setdefault("interpolation", "nearest")
    image = ax.imshow(screen, origin="lower", extent=(-0.5, cols - 0.5, -0.5, rows - 0.5), **options)
    _frame(ax, layout, (rows, cols))
    return image


def _title(ax, text: str, layout: _Layout | None = None) -> None:
    note = layout.note() if layout is not None else ""
    ax.set_title(f"{text}\n{note}" if note else text, fontsize="medium")


def _symmetric_limit(*arrays: np.ndarray) -> float:
    """Largest absolute value over ``arrays`` (a tiny positive number if all are 0)."""
    peak = max(float(np.nanmax(np.abs(a))) if a.size else 0.0 for a in arrays)
    return peak if peak > 0 else 1e-12


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


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
        axis, index, orientation: which slice and which layout (module docstring).
        vmin, vmax: intensity range of the colour map (default: the image's own range).
        colorbar: add a colour bar.
    """
    volume = _volume(image, "image")
    layout = _layout(volume.shape, axis, index, orientation)
    fig, ax = _figure_and_axes(ax)
    shown = _imshow(ax, layout.screen(volume), layout, cmap=cmap, vmin=vmin, vmax=vmax,
                    interpolation="antialiased")
    _title(ax, title, layout)
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


def _draw_labels(ax, screen_labels: np.ndarray, layout: _Layout, alpha: float, style: str,
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
        _imshow(ax, rgba, layout)
    else:
        for value in values:
            ax.contour((screen_labels == value).astype(float), levels=[0.5], colors=[palette[value]],
                       linewidths=1.0)
        _frame(ax, layout, screen_labels.shape)
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
        ax, axis, index, orientation: where and which slice (module docstring).
        title: panel title.
    """
    alpha = _check_number(alpha, "alpha", 0.0, 1.0)
    check_choice(style, "style", ("fill", "contour"))
    volume, label_volume = _volume(image, "image"), _volume(labels, "labels")
    if volume.shape != label_volume.shape:
        raise ValueError(f"`image` and `labels` must share one spatial shape, got {volume.shape} and "
                         f"{label_volume.shape}.")
    if np.issubdtype(label_volume.dtype, np.floating):
        raise TypeError("`labels` must be an integer label map; convert it with labels.round().long().")
    fig, ax = _figure_and_axes(ax)
    layout = _layout(volume.shape, axis, index, orientation)
    _imshow(ax, layout.screen(volume), layout, cmap="gray")
    _draw_labels(ax, layout.screen(label_volume), layout, alpha, style, names)
    _title(ax, title, layout)
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
    volume_a, volume_b = _pair(a, b)
    fig, ax = _figure_and_axes(ax)
    layout = _layout(volume_a.shape, axis, index, orientation)
    board = checkerboard_image(layout.screen(volume_a), layout.screen(volume_b), squares)
    low, high = min(volume_a.min(), volume_b.min()), max(volume_a.max(), volume_b.max())
    _imshow(ax, board, layout, cmap="gray", vmin=low, vmax=high)
    _title(ax, title, layout)
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
    volume_a, volume_b = _pair(a, b)
    fig, ax = _figure_and_axes(ax, 1.3 * PANEL_INCHES, PANEL_INCHES)
    layout = _layout(volume_a.shape, axis, index, orientation)
    diff = volume_a - volume_b
    shown = layout.screen(diff)
    limit = _symmetric_limit(shown) if vmax is None else _check_number(vmax, "vmax", 0.0)
    norm = colors.TwoSlopeNorm(vmin=-max(limit, 1e-12), vcenter=0.0, vmax=max(limit, 1e-12))
    image = _imshow(ax, shown, layout, cmap="RdBu_r", norm=norm)
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"{names[0]} − {names[1]}")
    rms = float(np.sqrt(np.mean(diff**2)))
    _title(ax, title or f"{names[0]} − {names[1]} (RMS {rms:.3g})", layout)
    return fig


# ---------------------------------------------------------------------------
# displacement fields
# ---------------------------------------------------------------------------


def _field_view(disp, axis: int, index, orientation):
    """``(layout, horizontal component, vertical component, spatial shape)`` of a field's view.

    The components are screen arrays (rows = the vertical axis), in voxels.
    """
    field = _numpy(_field_tensor(disp)[0])
    layout = _layout(field.shape[1:], axis, index, orientation)
    along_h, along_v = layout.screen(field[layout.horizontal]), layout.screen(field[layout.vertical])
    return layout, along_h, along_v, field.shape[1:]


def _grid_positions(size: int, spacing: int) -> list[int]:
    """Indices ``0, spacing, 2 * spacing, ...`` and the last index ``size - 1``."""
    positions = list(range(0, size, spacing))
    return positions if positions[-1] == size - 1 else positions + [size - 1]


def _underlay(ax, image, layout: _Layout, field_shape: Sequence[int]) -> None:
    """Draw ``image`` (if given) beneath a field, checking it matches the field's grid."""
    if image is None:
        return
    volume = _volume(image, "image")
    if volume.shape != tuple(field_shape):
        raise ValueError(f"`image` must have the field's spatial shape {tuple(field_shape)}, got "
                         f"{volume.shape}.")
    _imshow(ax, layout.screen(volume), layout, cmap="gray", interpolation="antialiased")


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
        axis, index, orientation: which slice and which layout (module docstring).
        color, linewidth: of the lines.
        title: panel title.
    """
    check_positive_int(spacing, "spacing")
    layout, along_h, along_v, spatial = _field_view(disp, axis, index, orientation)
    rows, cols = along_h.shape
    fig, ax = _figure_and_axes(ax)
    _underlay(ax, image, layout, spatial)
    horizontal = np.arange(cols)[None, :] + along_h  # data x of every voxel's sampling point
    vertical = np.arange(rows)[:, None] + along_v  # data y
    for row in _grid_positions(rows, spacing):
        ax.plot(horizontal[row, :], vertical[row, :], color=color, linewidth=linewidth)
    for col in _grid_positions(cols, spacing):
        ax.plot(horizontal[:, col], vertical[:, col], color=color, linewidth=linewidth)
    _frame(ax, layout, (rows, cols))
    _title(ax, title, layout)
    return fig


def _on_screen(layout: _Layout, along_h: np.ndarray, along_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    largest = _symmetric_limit(np.hypot(right, up))
    fig, ax = _figure_and_axes(ax)
    _imshow(ax, _direction_colours(right, up, largest), layout)
    _colour_wheel(ax)
    _title(ax, f"{title} (max {largest:.3g} voxels)", layout)
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
    scale = _check_number(scale, "scale", 1e-6)
    layout, along_h, along_v, spatial = _field_view(disp, axis, index, orientation)
    rows, cols = along_h.shape
    fig, ax = _figure_and_axes(ax)
    _underlay(ax, image, layout, spatial)
    pick_rows, pick_cols = np.arange(step // 2, rows, step), np.arange(step // 2, cols, step)
    x, y = np.meshgrid(pick_cols, pick_rows)
    u, v = along_h[np.ix_(pick_rows, pick_cols)], along_v[np.ix_(pick_rows, pick_cols)]
    ax.quiver(x, y, u, v, angles="xy", scale_units="xy", scale=1.0 / scale, color=color, width=0.004)
    _frame(ax, layout, (rows, cols))
    suffix = "" if scale == 1.0 else f", length x{scale:g}"
    _title(ax, f"{title}{suffix}", layout)
    return fig


def _jacobian_norm(det: np.ndarray, vmin: float | None = None,
                   vmax: float | None = None) -> colors.TwoSlopeNorm:
    """Blue below 1 (shrinking), white at 1, red above 1 (growing); at least ±0.001 around 1.

    ``vmin``/``vmax`` fix the range (one colour scale for several panels): ``vmin < 1 < vmax``.
    """
    low = min(max(float(det.min()), 0.0), 1.0 - 1e-3) if vmin is None else _check_number(vmin, "vmin")
    high = max(float(det.max()), 1.0 + 1e-3) if vmax is None else _check_number(vmax, "vmax")
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
    dets = [_numpy(jacobian_det(_field_tensor(disp, "fields[i]"))) for disp in fields]
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
    field = _field_tensor(disp)
    det = _numpy(jacobian_det(field)[0])  # in the field's own dtype, as regedu.metrics counts folds
    layout = _layout(det.shape, axis, index, orientation)
    shown = layout.screen(det)
    fig, ax = _figure_and_axes(ax, 1.3 * PANEL_INCHES, PANEL_INCHES)
    image = _imshow(ax, shown, layout, cmap="RdBu_r", norm=_jacobian_norm(shown, vmin, vmax))
    fig.colorbar(image, ax=ax, shrink=0.8, label=_JACOBIAN_LABEL[field.shape[1]])
    folded = shown <= 0
    folds = np.ma.masked_array(np.ones_like(shown), mask=~folded)
    _imshow(ax, folds, layout, cmap=colors.ListedColormap([FOLD_COLOUR]), vmin=0, vmax=1, gid="folds")
    _title(ax, f"{title}\n{_fold_note(int(folded.sum()), det)}", layout)
    return fig


# ---------------------------------------------------------------------------
# curves and tables
# ---------------------------------------------------------------------------


def _levels(history) -> list[list[float]]:
    """A loss history as one list per level: a flat history is a single level.

    Accepts a list of numbers, a list of per-level lists, a 1-D tensor or array, or an object with
    ``.losses`` (a training :class:`~regedu.train.History`) or ``.history`` (a registration result).
    """
    if hasattr(history, "losses"):
        history = history.losses
    elif hasattr(history, "history") and not isinstance(history, (list, tuple)):
        history = history.history
    if isinstance(history, torch.Tensor):
        history = history.detach().cpu().tolist()
    elif isinstance(history, np.ndarray):
        history = history.tolist()
    if not isinstance(history, (list, tuple)):
        raise TypeError(f"`history` must be a list of losses or of per-level lists, got "
                        f"{type(history).__name__}.")
    if all(isinstance(item, (list, tuple)) for item in history) and history:
        return [[float(v) for v in level] for level in history]
    return [[float(v) for v in history]]


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def _draw_losses(ax, levels: list[list[float]], log: bool, smooth: int | None, xlabel: str) -> None:
    """Each level in its own colour on one iteration axis, dashed lines at level boundaries."""
    start = 0
    for number, level in enumerate(levels):
        steps = np.arange(start, start + len(level))
        name = f"level {number}" if len(levels) > 1 else "loss"
        line, = ax.plot(steps, level, linewidth=1.0, alpha=0.5 if smooth else 1.0, label=name)
        if smooth and level:
            ax.plot(steps, _running_mean(np.asarray(level), smooth), color=line.get_color(), linewidth=1.5,
                    label=f"{name}, mean of {smooth}")
        if number > 0:
            ax.axvline(start - 0.5, color="gray", linestyle="--", linewidth=0.8)
        start += len(level)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (lower is better)")
    ax.grid(alpha=0.3)
    if len(levels) > 1 or smooth:
        ax.legend(fontsize="x-small")


def loss_curve(history, ax=None, log: bool = False, smooth: int | None = None, xlabel: str = "iteration",
               title: str = "loss") -> Figure:
    """The loss against iteration; multi-level histories with a dashed line between levels.

    Args:
        history: a list of losses (training), a list of per-level lists (classical registration,
            coarse to fine), a 1-D tensor, or a ``History``/registration result holding one.
        ax: axes to draw into (default: a new figure).
        log: logarithmic loss axis (every loss must then be > 0; NCC and MI losses are negative).
        smooth: also draw the running mean over this many iterations (noisy training losses).
        xlabel, title: axis label and title.
    """
    levels = _levels(history)
    if smooth is not None:
        check_positive_int(smooth, "smooth")
    if log and any(v <= 0 for level in levels for v in level):
        raise ValueError("`log=True` needs every loss > 0, but some are <= 0 (NCC and MI losses are "
                         "negative): use log=False.")
    fig, ax = _figure_and_axes(ax, 2 * PANEL_INCHES, 0.8 * PANEL_INCHES)
    _draw_losses(ax, levels, log, smooth, xlabel)
    ax.set_title(title, fontsize="medium")
    return fig


def _dice_groups(dice_table) -> dict[str, np.ndarray]:
    """A Dice table ``(B, L)`` / ``(L,)``, or a dict of them, as ``{name: (B, L) array}``."""
    tables = dice_table if isinstance(dice_table, Mapping) else {"Dice": dice_table}
    groups = {}
    for name, table in tables.items():
        values = _numpy(_cpu_tensor(table, f"dice_table[{name!r}]").double())
        values = values[None] if values.ndim == 1 else values
        if values.ndim != 2:
            raise ValueError(f"a Dice table must be (B, L), as metrics.dice returns, got {values.shape}.")
        groups[str(name)] = values
    if len({v.shape[1] for v in groups.values()}) != 1:
        raise ValueError("every Dice table must have the same number of labels L (columns).")
    return groups


def _dice_names(names, labels, count: int) -> list[str]:
    """``count`` tick labels from a list of names, or a dict ``value -> name`` with label ``values``."""
    if names is None:
        return [str(v) for v in labels] if labels is not None else [str(i + 1) for i in range(count)]
    if isinstance(names, Mapping):
        values = list(labels) if labels is not None else sorted(v for v in names if v != 0)
        names = [str(names.get(v, v)) for v in values]
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(
            f"the Dice table has {count} labels but {len(names)} names were given. Pass a list of "
            f"{count} names, or a dict with `labels=` the values scored (as given to metrics.dice)."
        )
    return names


def _nan_mean_and_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column, leaving NaN out (an all-NaN column gives NaN)."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=0)
    filled = np.where(valid, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / count
        spread = np.sqrt(np.where(valid, (values - mean) ** 2, 0.0).sum(axis=0) / count)
    return mean, spread


def dice_per_label(dice_table, names=None, labels=None, ax=None, title: str | None = None) -> Figure:
    """Dice of each label: bars (mean over the batch, with its standard deviation), or boxes.

    Args:
        dice_table: ``(B, L)`` from :func:`regedu.metrics.dice` (or ``(L,)``), or a dict of them to
            compare, e.g. ``{"before": dice(moving_labels, fixed_labels), "after": ...}``.
            NaN entries (label absent from both maps) are left out of the means.
        names: one name per column, or a dict ``value -> name`` such as ``brain.label_names``.
        labels: the label values of the columns (needed with a dict of names when not every
            non-zero label was scored).
        ax, title: where to draw and the panel title.

    Returns:
        the Figure: a box per label for one table of several pairs; grouped bars otherwise.
    """
    groups = _dice_groups(dice_table)
    count = next(iter(groups.values())).shape[1]
    tick_names = _dice_names(names, labels, count)
    width = max(2 * PANEL_INCHES, 0.45 * count * len(groups) + 1.5)
    fig, ax = _figure_and_axes(ax, width, 1.1 * PANEL_INCHES)
    positions = np.arange(count)
    if len(groups) == 1 and next(iter(groups.values())).shape[0] > 1:
        values = next(iter(groups.values()))
        columns = [column[~np.isnan(column)] for column in values.T]
        ax.boxplot(columns, positions=positions, widths=0.6, showmeans=True)
    else:
        width = 0.8 / len(groups)
        for k, (name, values) in enumerate(groups.items()):
            offset = (k - (len(groups) - 1) / 2) * width
            mean, spread = _nan_mean_and_std(values)
            error = spread if values.shape[0] > 1 else None
            ax.bar(positions + offset, mean, width, yerr=error, capsize=2, label=name)
        if len(groups) > 1:
            ax.legend(fontsize="x-small")
    slanted = count > 4
    ax.set_xticks(positions, tick_names, rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  fontsize="small")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Dice (1 = perfect overlap)")
    ax.grid(axis="y", alpha=0.3)
    pairs = next(iter(groups.values())).shape[0]
    ax.set_title(title or f"Dice per label ({pairs} pair{'s' if pairs > 1 else ''})", fontsize="medium")
    return fig


def landscape(losses, shifts: Sequence[int], ax=None, title: str = "similarity landscape") -> Figure:
    """A loss map over 2D integer shifts, as :func:`regedu.widgets.similarity_landscape` returns.

    Args:
        losses: ``(S, S)``, ``losses[i, j]`` the loss at a shift of ``shifts[i]`` voxels along axis 0
            and ``shifts[j]`` along axis 1.
        shifts: the ``S`` shift values (increasing, evenly spaced).
        ax, title: where to draw and the panel title.

    The lowest loss is marked with a star; shift ``(0, 0)`` with a cross.
    """
    values = _numpy(_cpu_tensor(losses, "losses").double())
    shifts = np.asarray(list(shifts), dtype=float)
    if values.ndim != 2 or values.shape != (len(shifts), len(shifts)):
        raise ValueError(f"`losses` must be ({len(shifts)}, {len(shifts)}) for {len(shifts)} shifts, "
                         f"got shape {values.shape}.")
    half = (shifts[1] - shifts[0]) / 2 if len(shifts) > 1 else 0.5
    fig, ax = _figure_and_axes(ax, 1.3 * PANEL_INCHES, 1.1 * PANEL_INCHES)
    extent = (shifts[0] - half, shifts[-1] + half, shifts[-1] + half, shifts[0] - half)
    image = ax.imshow(values, extent=extent, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="loss (lower is better)")
    best = np.unravel_index(np.nanargmin(values), values.shape)
    ax.plot(shifts[best[1]], shifts[best[0]], marker="*", color="red", markersize=12, linestyle="none",
            label=f"minimum ({shifts[best[0]]:g}, {shifts[best[1]]:g})")
    ax.plot(0, 0, marker="P", markerfacecolor="white", markeredgecolor="black", markersize=9,
            linestyle="none", label="no shift")
    ax.legend(fontsize="x-small", loc="lower right")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("shift along axis 1 (voxels)")
    ax.set_ylabel("shift along axis 0 (voxels)")
    ax.set_title(title, fontsize="medium")
    return fig


def joint_histogram(a, b, ax=None, bins: int = 48, background: float = 0.05,
                    names: Sequence[str] = ("a", "b"), title: str = "joint histogram") -> Figure:
    """The joint histogram of two images: every voxel ``x`` counted at ``(a(x), b(x))``, log colour scale.

    What mutual information measures: when one intensity predicts the other the counts sit on a
    thin curve or a few tight blobs; when it does not (misaligned images, or a tissue one contrast
    cannot see) they spread out.

    Args:
        a, b: images of one spatial shape (first batch item and channel used; all voxels of a 3D
            volume), intensities in [0, 1] (values outside fall out of the plot's range).
        bins: bins per axis over [0, 1].
        background: voxels where both images are below this are left out (the empty
            background would otherwise dominate the counts); 0 keeps every voxel in range.
        names: axis labels, ``(a's, b's)``: ``a`` along the horizontal axis, ``b`` vertical.
        ax, title: where to draw and the panel title.
    """
    values_a, values_b = _pair(a, b)
    check_positive_int(bins, "bins", minimum=2)
    background = _check_number(background, "background", 0.0, 1.0)
    if isinstance(names, str) or len(names) != 2:
        raise ValueError(f"`names` must be two axis labels (a's, b's), got {names!r}.")
    kept = np.maximum(values_a, values_b) >= background
    counts, _, _ = np.histogram2d(values_a[kept], values_b[kept], bins=bins, range=[[0, 1], [0, 1]])
    fig, ax = _figure_and_axes(ax, 1.2 * PANEL_INCHES, PANEL_INCHES)
    image = ax.imshow(np.log1p(counts).T, origin="lower", extent=(0, 1, 0, 1), cmap="magma")
    fig.colorbar(image, ax=ax, shrink=0.8, label="log(1 + voxel count)")
    ax.set_xlabel(f"{names[0]} intensity")
    ax.set_ylabel(f"{names[1]} intensity")
    ax.set_title(title, fontsize="medium")
    return fig


# ---------------------------------------------------------------------------
# figures of several panels
# ---------------------------------------------------------------------------


def _batched(x, name: str) -> torch.Tensor:
    """A CPU tensor with batch and channel axes: ``(*spatial)`` -> ``(1, 1, *spatial)``."""
    x = _cpu_tensor(x, name)
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
        axis, index, orientation: which slice and which layout (module docstring).
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
    images = [_volume(x, name) for name, x in named.items()]
    low, high = min(v.min() for v in images), max(v.max() for v in images)
    for ax, (name, image) in zip(axes[0, :3], named.items(), strict=True):
        show_image(image, ax, name, vmin=low, vmax=high, **view)
    headline = _labels_panel(axes[0, 3], fixed, warped, disp, moving_labels, fixed_labels, view, names)
    layout = _layout(images[1].shape, **view)
    shared = _symmetric_limit(layout.screen(images[1] - images[0]), layout.screen(images[1] - images[2]))
    difference(fixed, moving, ax=axes[1, 0], vmax=shared, names=("fixed", "moving"), **view,
               title="before: fixed − moving")
    difference(fixed, warped, ax=axes[1, 1], vmax=shared, names=("fixed", "warped"), **view,
               title="after: fixed − warped")
    deformation_grid(disp, spacing, ax=axes[1, 2], image=moving, **view, title="fixed grid on moving")
    jacobian_map(disp, ax=axes[1, 3], **view)
    folding = 100.0 * float((jacobian_det(_field_tensor(disp)) <= 0).double().mean())
    fig.suptitle(title or f"registration summary: {headline}folding {folding:.2f}%", fontsize="large")
    return fig


def _labels_panel(ax, fixed, warped, disp, moving_labels, fixed_labels, view, names=None) -> str:
    """Warped labels on the fixed image (with Dice) or a checkerboard; returns a title fragment."""
    if moving_labels is None or fixed_labels is None:
        checkerboard(fixed, warped, ax=ax, **view, title="checkerboard fixed / warped")
        return ""
    moving_labels = _batched(moving_labels, "moving_labels")
    fixed_labels = _batched(fixed_labels, "fixed_labels")
    moved = warp_labels(moving_labels, _field_tensor(disp))
    before, after = _mean_dice(moving_labels, fixed_labels), _mean_dice(moved, fixed_labels)
    overlay(fixed, moved, style="contour", names=names, ax=ax, **view,
            title=f"warped labels on fixed\nDice {after:.3f}")
    return f"mean Dice {before:.3f} → {after:.3f}, "


def three_plane(volume, index: Sequence[int] | None = None, labels=None, orientation=True, cmap: str = "gray",
                alpha: float = 0.4, crosshair: bool = True, title: str | None = None) -> Figure:
    """Sagittal, coronal and axial views of a 3D volume through one point.

    Args:
        volume: ``(B, C, X, Y, Z)`` or ``(X, Y, Z)``, a brain in RAS order.
        index: the point ``(x, y, z)`` in voxels (default: the middle of the volume).
        labels: optional label map of the same shape, drawn in colour.
        orientation: layout (module docstring); ``True`` (radiological) by default here, since the
            plane names assume RAS axes.
        cmap, alpha: colour map of the image and opacity of the labels.
        crosshair: draw lines where the other two planes cut each view.
        title: figure title.

    Returns:
        the Figure, with three axes: sagittal (across axis 0), coronal (1), axial (2).
    """
    array = _volume(volume, "volume")
    if array.ndim != 3:
        raise ValueError(f"`volume` must be 3D, got spatial shape {array.shape}; show 2D images with "
                         f"show_slices.")
    point = [s // 2 for s in array.shape] if index is None else [int(i) for i in index]
    if len(point) != 3:
        raise ValueError(f"`index` must be a point (x, y, z) of three voxel indices, got {index!r}.")
    label_array = _volume(labels, "labels") if labels is not None else None
    fig, axes = new_figure(1, 3)
    for cut, ax in enumerate(axes[0]):
        layout = _layout(array.shape, cut, point[cut], orientation)
        _imshow(ax, layout.screen(array), layout, cmap=cmap, interpolation="antialiased")
        if label_array is not None:
            _draw_labels(ax, layout.screen(label_array), layout, alpha, "fill")
        if crosshair:
            ax.axvline(point[layout.horizontal], color="tab:cyan", linewidth=0.6, alpha=0.7)
            ax.axhline(point[layout.vertical], color="tab:cyan", linewidth=0.6, alpha=0.7)
        if layout.letters is not None:
            _title(ax, f"{_PLANE_NAMES[cut]}, {_RAS_NAMES[cut]} = {point[cut]}")
        else:
            _title(ax, f"across axis {cut}, index {point[cut]}")
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------
# live loss plot for notebooks
# ---------------------------------------------------------------------------


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where rich output can be updated in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _display_handle(fig):
    """Show ``fig`` in the notebook and return the handle that updates it in place."""
    from IPython.display import display

    return display(fig, display_id=True)


class LiveLossPlot:
    """A loss curve that redraws itself in a notebook while registration or training runs.

    Use it as the callback of classical registration, ``callback(level, iteration, loss)``, or of
    training, ``callback(step, loss)``::

        live = LiveLossPlot()
        result = regedu.register(moving, fixed, method="dense", callback=live)
        live.finish()                      # draw the last points
        viz.loss_curve(live.history)       # or keep the history for later

    Redraws are throttled, through an ``IPython.display`` handle updated in place: after a redraw
    the plot waits ``min_interval`` seconds, or ``DRAW_SHARE_FACTOR`` times as long as the redraw
    took if that is longer, so that drawing never slows the run down much, even on a busy machine
    where a redraw can take longer than ``min_interval`` (``min_interval=0`` redraws at every call).
    Outside Jupyter nothing is shown; the losses are still recorded in :attr:`history`.
    """

    DRAW_SHARE_FACTOR = 4.0  # wait at least this many times a redraw's duration: drawing <= ~20% of the time

    def __init__(self, title: str = "loss", min_interval: float = 0.5, log: bool = False,
                 xlabel: str = "iteration"):
        self.title, self.log, self.xlabel = title, log, xlabel
        self.min_interval = _check_number(min_interval, "min_interval", 0.0)
        self.levels: list[list[float]] = []
        self.multilevel = False
        self.updates = 0  # how many times the plot was (re)drawn
        self._level_id = None
        self._last_draw = -math.inf  # when the last redraw ended
        self._wait = self.min_interval  # seconds from then to the next redraw
        self._figure = None
        self._handle = None

    def __call__(self, *args) -> None:
        """Record a loss: ``(level, iteration, loss)`` or ``(step, loss)``; redraw if it is time."""
        if len(args) == 3:
            level, _, loss = args
            self.multilevel = True
        elif len(args) == 2:
            level, loss = 0, args[1]
        else:
            raise TypeError(f"call as live(level, iteration, loss) or live(step, loss), got {len(args)} "
                            f"arguments.")
        if level != self._level_id or not self.levels:
            self.levels.append([])
            self._level_id = level
        self.levels[-1].append(float(loss))
        if time.monotonic() - self._last_draw >= self._wait:
            self.refresh()

    @property
    def history(self) -> list:
        """Per-level lists after ``(level, iteration, loss)`` calls, else one flat list of losses."""
        if self.multilevel:
            return [list(level) for level in self.levels]
        return [v for level in self.levels for v in level]

    def refresh(self) -> None:
        """Redraw now (in a notebook; does nothing elsewhere)."""
        start = time.monotonic()
        self._last_draw = start
        if not _in_notebook() or not self.levels:
            return
        if self._figure is None:
            self._figure, axes = new_figure(1, 1, 2 * PANEL_INCHES, 0.8 * PANEL_INCHES)
        ax = self._figure.axes[0]
        ax.clear()
        levels = self.levels if self.multilevel else [self.history]
        _draw_losses(ax, levels, self.log and self._positive(), None, self.xlabel)
        ax.set_title(f"{self.title}: {self.levels[-1][-1]:.4g}", fontsize="medium")
        if self._handle is None:
            self._handle = _display_handle(self._figure)
        else:
            self._handle.update(self._figure)
        self.updates += 1
        self._last_draw = time.monotonic()
        if self.min_interval > 0:
            self._wait = max(self.min_interval, self.DRAW_SHARE_FACTOR * (self._last_draw - start))

    def finish(self) -> None:
        """Draw the final state (the last calls may have been skipped by the throttle)."""
        self.refresh()

    def _positive(self) -> bool:
        return all(v > 0 for level in self.levels for v in level)
