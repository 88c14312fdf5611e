"""The radiological layout: which 2D view of a tensor a figure shows, and how it sits on the screen.

``orientation`` (see :mod:`regedu.viz`) chooses between the matrix layout of ``plt.imshow`` and the
layouts a radiologist reads (patient's right on the image's left, side letters R/L, A/P, S/I).
:func:`view_layout` turns a spatial shape, an ``axis``, an ``index`` and an ``orientation`` into a
:class:`Layout`, which cuts the view out of an array; :func:`show_screen`, :func:`frame_view` and
:func:`panel_title` draw it so that the plot's data coordinates stay voxel indices of the tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.patheffects as path_effects
import numpy as np

from ..checks import check_choice

__all__ = ["RAS_NAMES", "PLANE_NAMES", "Layout", "view_layout", "frame_view", "show_screen", "panel_title"]

_RAS_ENDS = {0: ("L", "R"), 1: ("P", "A"), 2: ("I", "S")}  # letters at the low and high index end
RAS_NAMES = ("x", "y", "z")
PLANE_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}  # the plane across RAS axis k
_ORIENTATIONS = (False, None, True, "radiological", "neurological")


# ---------------------------------------------------------------------------
# layout: which slice, and how it sits on the screen
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
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
            return f"{PLANE_NAMES[self.cut]}, {RAS_NAMES[self.cut]} = {self.index}"
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


def view_layout(shape: Sequence[int], axis=-1, index=None, orientation=False) -> Layout:
    """How to show an array of spatial ``shape`` (2D, or the slice ``index`` across ``axis`` of 3D)."""
    ndim = len(shape)
    style = _check_orientation(orientation)
    cut = _check_axis(axis)
    if ndim == 2 and index is not None:
        raise ValueError(f"`index` picks a slice of a 3D volume; this image is 2D {tuple(shape)}: drop it.")
    index = _check_index(index, shape[cut]) if ndim == 3 else None
    in_plane = (0, 1) if ndim == 2 else tuple(a for a in range(3) if a != cut)
    if style is None:
        return Layout(ndim, cut, index, horizontal=in_plane[1], vertical=in_plane[0], leftwards=False,
                       upwards=False, letters=None, names=(f"axis {in_plane[1]}", f"axis {in_plane[0]}"))
    ras = tuple(a for a in range(3) if a != cut)  # RAS identity of the two in-plane axes
    leftwards = ras[0] == 1 or style == "radiological"  # sagittal: anterior on the left
    low, high = _RAS_ENDS[ras[0]]
    bottom, top = _RAS_ENDS[ras[1]]
    letters = (high, low, bottom, top) if leftwards else (low, high, bottom, top)
    return Layout(ndim, cut, index, horizontal=in_plane[0], vertical=in_plane[1], leftwards=leftwards,
                   upwards=True, letters=letters, names=(RAS_NAMES[ras[0]], RAS_NAMES[ras[1]]))


# ---------------------------------------------------------------------------
# drawing a view
# ---------------------------------------------------------------------------


def frame_view(ax, layout: Layout, screen_shape: Sequence[int]) -> None:
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


def show_screen(ax, screen: np.ndarray, layout: Layout, **options):
    """Show a screen array (rows = vertical axis) with pixel centres at integer data coordinates."""
    rows, cols = screen.shape[:2]
    options.setdefault("interpolation", "nearest")
    image = ax.imshow(screen, origin="lower", extent=(-0.5, cols - 0.5, -0.5, rows - 0.5), **options)
    frame_view(ax, layout, (rows, cols))
    return image


def panel_title(ax, text: str, layout: Layout | None = None) -> None:
    note = layout.note() if layout is not None else ""
    ax.set_title(f"{text}\n{note}" if note else text, fontsize="medium")
