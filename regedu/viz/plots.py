"""Curves and tables: loss curves (also drawn live in a notebook), Dice per label, similarity
landscapes and joint histograms."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..checks import check_number, check_positive_int
from .common import PANEL_INCHES, cpu_tensor, figure_and_axes, new_figure, spatial_pair, to_numpy

__all__ = ["loss_curve", "dice_per_label", "landscape", "joint_histogram", "LiveLossPlot"]


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
    fig, ax = figure_and_axes(ax, 2 * PANEL_INCHES, 0.8 * PANEL_INCHES)
    _draw_losses(ax, levels, log, smooth, xlabel)
    ax.set_title(title, fontsize="medium")
    return fig


def _dice_groups(dice_table) -> dict[str, np.ndarray]:
    """A Dice table ``(B, L)`` / ``(L,)``, or a dict of them, as ``{name: (B, L) array}``."""
    tables = dice_table if isinstance(dice_table, Mapping) else {"Dice": dice_table}
    groups = {}
    for name, table in tables.items():
        values = to_numpy(cpu_tensor(table, f"dice_table[{name!r}]").double())
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
    fig, ax = figure_and_axes(ax, width, 1.1 * PANEL_INCHES)
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
    values = to_numpy(cpu_tensor(losses, "losses").double())
    shifts = np.asarray(list(shifts), dtype=float)
    if values.ndim != 2 or values.shape != (len(shifts), len(shifts)):
        raise ValueError(f"`losses` must be ({len(shifts)}, {len(shifts)}) for {len(shifts)} shifts, "
                         f"got shape {values.shape}.")
    half = (shifts[1] - shifts[0]) / 2 if len(shifts) > 1 else 0.5
    fig, ax = figure_and_axes(ax, 1.3 * PANEL_INCHES, 1.1 * PANEL_INCHES)
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
    values_a, values_b = spatial_pair(a, b)
    check_positive_int(bins, "bins", minimum=2)
    background = check_number(background, "background", maximum=1.0)
    if isinstance(names, str) or len(names) != 2:
        raise ValueError(f"`names` must be two axis labels (a's, b's), got {names!r}.")
    kept = np.maximum(values_a, values_b) >= background
    counts, _, _ = np.histogram2d(values_a[kept], values_b[kept], bins=bins, range=[[0, 1], [0, 1]])
    fig, ax = figure_and_axes(ax, 1.2 * PANEL_INCHES, PANEL_INCHES)
    image = ax.imshow(np.log1p(counts).T, origin="lower", extent=(0, 1, 0, 1), cmap="magma")
    fig.colorbar(image, ax=ax, shrink=0.8, label="log(1 + voxel count)")
    ax.set_xlabel(f"{names[0]} intensity")
    ax.set_ylabel(f"{names[1]} intensity")
    ax.set_title(title, fontsize="medium")
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
        self.min_interval = check_number(min_interval, "min_interval")
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
