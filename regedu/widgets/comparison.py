"""Learned (or any) fields against the true one: scores on synthetic pairs, and rows of maps side by side
on one colour scale per column."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import metrics, viz, warps
from ..checks import check_disp, check_image, check_same_shape
from .controls import interactive_figure, make_slider, require_ipywidgets

__all__ = ["field_scores", "network_scores", "field_comparison", "field_comparison_widget"]


# ---------------------------------------------------------------------------
# learned fields against the true one
# ---------------------------------------------------------------------------

_PAIR_KEYS = ("moving", "fixed", "moving_labels", "fixed_labels", "disp")


def _check_pairs(pairs) -> int:
    """Raise unless ``pairs`` is a batch of pairs with labels and a true field; returns ``ndim``."""
    if not isinstance(pairs, Mapping) or any(key not in pairs for key in _PAIR_KEYS):
        got = sorted(pairs) if isinstance(pairs, Mapping) else type(pairs).__name__
        raise ValueError(
            f"`pairs` must be a batch of synthetic pairs with {list(_PAIR_KEYS)} (the true field is `disp`), "
            f"got {got}. Collate items of a regedu.data dataset: "
            f"torch.utils.data.default_collate([dataset[i] for i in range(n)])."
        )
    ndim = check_image(pairs["fixed"], "pairs['fixed']")
    check_disp(pairs["disp"], "pairs['disp']")
    check_same_shape(pairs["fixed"], pairs["moving"], "pairs['fixed']", "pairs['moving']")
    return ndim


@torch.no_grad()
def field_scores(pairs: Mapping, disp: torch.Tensor, hd95: bool = False) -> dict:
    """How good a field is on synthetic pairs whose true field is known: its numbers and its maps.

    Args:
        pairs: a batch of pairs (collated items of :class:`regedu.data.BrainSlicePairs` and
            the like): ``moving``, ``fixed`` ``(B, 1, *spatial)``, integer ``moving_labels``,
            ``fixed_labels`` ``(B, 1, *spatial)`` and the true field ``disp`` ``(B, ndim, *spatial)``
            in voxels.
        disp: the field to judge, ``(B, ndim, *spatial)`` in voxels (pull: fixed -> moving).
        hd95: also measure the HD95 of the warped labels (``scipy`` on the CPU, slower).

    Returns:
        a dict of the maps ``disp``, ``warped`` (the moving image warped), ``warped_labels`` and
        ``error`` (``(B, 1, *spatial)``, the end-point error ``|disp - true|`` at every voxel, in
        voxels), and of ``(B,)`` numbers per pair: ``dice`` (mean over the labels,
        :func:`regedu.metrics.dice`), ``epe`` (mean end-point error inside the fixed brain,
        ``fixed_labels > 0``, :func:`regedu.metrics.end_point_error`), ``folding_percent``
        (share of voxels with det J <= 0, in %), ``min_jacobian`` and, with ``hd95=True``,
        ``hd95`` (voxels, mean over the labels, :func:`regedu.metrics.hd95`).
    """
    _check_pairs(pairs)
    check_disp(disp, "disp")
    check_same_shape(disp, pairs["disp"], "disp", "pairs['disp']")
    warped_labels = warps.warp_labels(pairs["moving_labels"], disp)
    result = {
        "disp": disp,
        "warped": warps.warp(pairs["moving"], disp),
        "warped_labels": warped_labels,
        "error": torch.linalg.vector_norm(disp - pairs["disp"], dim=1, keepdim=True),
        "dice": metrics.dice(warped_labels, pairs["fixed_labels"]).nanmean(dim=1),
        "epe": metrics.end_point_error(disp, pairs["disp"], mask=pairs["fixed_labels"] > 0),
        "folding_percent": 100 * metrics.folding_fraction(disp),
        "min_jacobian": metrics.min_jacobian(disp),
    }
    if hd95:
        result["hd95"] = metrics.hd95(warped_labels, pairs["fixed_labels"]).nanmean(dim=1)
    return result


@torch.no_grad()
def network_scores(model: torch.nn.Module, pairs: Mapping, hd95: bool = False) -> dict:
    """:func:`field_scores` of the field that ``model`` (in eval mode) predicts for ``pairs``.

    ``model(moving, fixed)`` must return ``(warped, disp, ...)`` like every regedu model; the
    pairs are moved to the model's device first.
    """
    _check_pairs(pairs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}; load a shipped "
                        f"one with regedu.models.pretrained(name).")
    device = next(model.parameters()).device
    pairs = {key: value.to(device) if isinstance(value, torch.Tensor) else value
             for key, value in pairs.items()}
    was_training = model.training
    disp = model.eval()(pairs["moving"], pairs["fixed"])[1]
    model.train(was_training)
    return field_scores(pairs, disp.to(pairs["disp"].dtype), hd95)


def _check_field_results(results) -> None:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("`results` must be a non-empty dict {name: field_scores(...)}.")
    for name, result in results.items():
        if not isinstance(result, Mapping) or "error" not in result or "disp" not in result:
            raise ValueError(f"`results[{name!r}]` must come from regedu.widgets.field_scores or "
                             f"network_scores.")


def field_comparison(pairs: Mapping, results: Mapping, index: int = 0, orientation=True, label_names=None,
                     scale_over: Mapping | None = None):
    """One row per field on pair ``index``, with **one colour scale per column** across the rows.

    Columns: the warped moving labels drawn as contours on the fixed image (a legend in the first
    row when ``label_names`` are given), the remaining difference ``fixed - warped``, the
    end-point error map ``|u(x) - u_true(x)|`` and the Jacobian determinant (folds in yellow).
    A panel that scaled itself would make a field with det J in 1 ± 0.001 look as deformed as
    one in 0.5 .. 2, and a small error as large as a big one; here every row is drawn on the
    same scale, so rows can be compared by eye.

    Args:
        pairs: the batch of pairs the results were measured on (see :func:`field_scores`).
        results: ``{row name: field_scores(...) or network_scores(...)}``, in row order.
        index: which pair of the batch to show.
        orientation: panel layout (:mod:`regedu.viz`; ``True`` for a RAS brain section).
        label_names: names of the label values for the legend (e.g. ``regedu.data.TISSUE_NAMES``).
        scale_over: results whose range sets the colour scales (default ``results``): a widget
            that shows a few rows at a time passes all of them, so the scale stays put.

    Returns:
        the Figure.
    """
    _check_pairs(pairs)
    _check_field_results(results)
    scale_over = results if scale_over is None else scale_over
    _check_field_results(scale_over)
    count = pairs["fixed"].shape[0]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"`index` must be a pair of the batch, 0 .. {count - 1}, got {index!r}.")
    item = slice(index, index + 1)
    error_max = max(float(result["error"][item].max()) for result in scale_over.values()) or 1e-3
    low, high = viz.jacobian_range([result["disp"][item] for result in scale_over.values()])
    fixed = pairs["fixed"][item]
    fig, axes = viz.new_figure(len(results), 4, width=4.3 * viz.PANEL_INCHES,
                               height=len(results) * viz.PANEL_INCHES)
    for row, (ax_row, (name, result)) in enumerate(zip(axes, results.items(), strict=True)):
        numbers = f"Dice {float(result['dice'][index]):.3f}" if "dice" in result else ""
        viz.overlay(fixed, result["warped_labels"][item], style="contour", ax=ax_row[0],
                    names=label_names if row == 0 else None, orientation=orientation,
                    title=f"{name}: labels on fixed\n{numbers}")
        viz.difference(fixed, result["warped"][item], ax=ax_row[1], vmax=0.5, orientation=orientation,
                       names=("fixed", "warped"), title="fixed − warped")
        epe = f", brain mean {float(result['epe'][index]):.2f}" if "epe" in result else ""
        viz.show_image(result["error"][item], ax_row[2], f"end-point error (voxels){epe}", cmap="magma",
                       vmin=0, vmax=error_max, orientation=orientation, colorbar=True)
        viz.jacobian_map(result["disp"][item], ax=ax_row[3], orientation=orientation, vmin=low, vmax=high,
                         title=f"det J, min {float(result['min_jacobian'][index]):.2f}"
                         if "min_jacobian" in result else "Jacobian determinant")
    return fig


def field_comparison_widget(pairs: Mapping, results: Mapping, reference: str | None = "true field",
                            orientation=True, label_names=None):
    """A choice among precomputed ``results`` and a pair slider, for :func:`field_comparison`.

    Shows the ``reference`` row (e.g. the true field) above the chosen one, both on the colour
    scales of *all* the results for that pair, so switching the choice never rescales a panel.

    Args:
        pairs: the batch of pairs the results were measured on.
        results: ``{name: field_scores(...)}`` (for example one per shipped model).
        reference: the name of a result always shown on top, or ``None`` for none.
        orientation, label_names: as in :func:`field_comparison`.
    """
    _check_pairs(pairs)
    _check_field_results(results)
    if reference is not None and reference not in results:
        raise ValueError(f"`reference` {reference!r} is not among the results {list(results)}; pass None "
                         f"to show only the chosen one.")
    widgets = require_ipywidgets()
    choices = [name for name in results if name != reference]
    if not choices:
        raise ValueError("`results` must hold at least one result besides the reference.")

    def show(name, index):
        rows = {key: results[key] for key in (reference, name) if key is not None}
        return field_comparison(pairs, rows, index, orientation, label_names, scale_over=results)

    choice = widgets.Dropdown(options=choices, value=choices[0], description="network",
                              style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))
    count = pairs["fixed"].shape[0]
    index = make_slider("IntSlider", "held-out pair", 0, count - 1, 1, 0)
    return interactive_figure(show, name=choice, index=index)
