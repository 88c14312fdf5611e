"""Lesson 03 (learned registration without labels): the label legend of contour figures, the
wording issue 14 corrected, and a closing check that fails when the lesson fails to show its point."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from regedu import losses, viz

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_learned_unsupervised.ipynb"


def _labels() -> torch.Tensor:
    labels = torch.zeros(20, 24, dtype=torch.long)
    labels[2:9, 3:12] = 1
    labels[11:18, 4:10] = 3
    return labels


# ---------------------------------------------------------------------------
# a legend for label contours
# ---------------------------------------------------------------------------


def test_contour_legend_has_one_line_per_label_in_the_contour_colour():
    fig = viz.overlay(torch.rand(20, 24), _labels(), style="contour", names={1: "one", 3: "three"})
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["one", "three"]
    handles = legend.legend_handles
    assert all(isinstance(handle, Line2D) for handle in handles), "contours are lines, so is their legend"
    contour_colours = [tuple(np.ravel(c.get_edgecolor())[:3]) for c in ax.collections]
    legend_colours = [tuple(matplotlib.colors.to_rgb(handle.get_color())) for handle in handles]
    np.testing.assert_allclose(legend_colours, contour_colours)


def test_fill_legend_keeps_colour_patches_and_no_names_means_no_legend():
    filled = viz.overlay(torch.rand(20, 24), _labels(), names=["bg", "one", "two", "three"]).axes[0]
    assert all(isinstance(handle, Patch) for handle in filled.get_legend().legend_handles)
    assert [t.get_text() for t in filled.get_legend().get_texts()] == ["one", "three"]
    assert viz.overlay(torch.rand(20, 24), _labels(), style="contour").axes[0].get_legend() is None


def test_registration_summary_names_the_warped_label_contours():
    moving, fixed = torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24)
    labels = _labels()[None, None]
    disp = torch.zeros(1, 2, 20, 24)
    names = {0: "background", 1: "one", 2: "two", 3: "three"}
    fig = viz.registration_summary(moving, fixed, moving, disp, labels, labels, names=names)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    assert [t.get_text() for t in legends[0].get_texts()] == ["one", "three"]
    plain = viz.registration_summary(moving, fixed, moving, disp, labels, labels)
    assert all(ax.get_legend() is None for ax in plain.axes)


# ---------------------------------------------------------------------------
# issue 14: what the lesson says
# ---------------------------------------------------------------------------


def test_ncc_is_minus_the_squared_correlation():
    """A window covering the whole image from every voxel makes ncc the global statistic, which
    must be minus the *squared* correlation coefficient; an inverted image scores the same."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 12, 10, generator=generator, dtype=torch.float64)
    y = x + 0.8 * torch.randn(1, 1, 12, 10, generator=generator, dtype=torch.float64)
    rho = np.corrcoef(x.flatten().numpy(), y.flatten().numpy())[0, 1]
    whole = (2 * 12 - 1, 2 * 10 - 1)
    assert float(losses.ncc(x, y, window=whole)) == pytest.approx(-rho**2, rel=1e-6)
    assert float(losses.ncc(x, -y, window=whole)) == pytest.approx(-rho**2, rel=1e-6)


def _source(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells)


def test_lesson_text_says_what_ncc_is_and_does_not_promise_invertible_networks():
    text = " ".join(_source(nbformat.read(NOTEBOOK, as_version=4)).split())
    assert "`losses.ncc` is minus the **squared** local correlation" in text
    assert "invertible by construction" not in text
    assert "is still not, in general, the inverse of" in text


# ---------------------------------------------------------------------------
# the closing check fails when the lesson does not show its point
# ---------------------------------------------------------------------------


def _closing_check() -> str:
    cell = nbformat.read(NOTEBOOK, as_version=4).cells[-1]
    assert cell.cell_type == "code" and 'print("all checks passed")' in cell.source
    return cell.source


def _lesson_that_worked() -> dict:
    """The names the closing check reads, with values of a lesson that showed its point."""
    history = type("History", (), {})()
    history.step, history.losses = 200, [-0.20] * 100 + [-0.26] * 100
    return {
        "torch": torch, "FAST": False, "WEIGHTS": [0.01, 0.1, 1.0, 10.0], "history": history,
        "first_tenth": -0.20, "last_tenth": -0.26, "speedup": 120.0,
        "scores": {"before (no registration)": {"dice": 0.50},
                   "shipped network": {"dice": 0.85}, "classical (affine + B-spline)": {"dice": 0.90}},
        "tradeoff": {0.01: {"dice": 0.73, "folding_percent": 1.0, "sdlogj": 0.30},
                     0.1: {"dice": 0.76, "folding_percent": 0.04, "sdlogj": 0.20},
                     1.0: {"dice": 0.76, "folding_percent": 0.0, "sdlogj": 0.10},
                     10.0: {"dice": 0.68, "folding_percent": 0.0, "sdlogj": 0.04}},
    }


def _run(namespace: dict) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(_closing_check(), namespace)  # noqa: S102 - the lesson's own cell, on made-up numbers
    return printed.getvalue()


def test_closing_check_passes_when_the_lesson_worked():
    assert _run(_lesson_that_worked()).strip() == "all checks passed"


def _untrained(lesson):
    lesson["scores"]["shipped network"]["dice"] = lesson["scores"]["before (no registration)"]["dice"]


def _no_folds_at_small_weight(lesson):
    lesson["tradeoff"][0.01]["folding_percent"] = 0.0


def _folds_at_weight_one(lesson):
    lesson["tradeoff"][1.0]["folding_percent"] = 0.05


def _slow_network(lesson):
    lesson["speedup"] = 3.0


def _loss_did_not_fall(lesson):
    lesson["first_tenth"], lesson["last_tenth"] = -0.20, -0.19


def _no_trade_off(lesson):   # the four networks all the same (e.g. one file copied four times)
    for weight in lesson["WEIGHTS"]:
        lesson["tradeoff"][weight] = dict(lesson["tradeoff"][1.0])


def _dice_best_at_smallest_weight(lesson):   # what the lesson says does not happen
    lesson["tradeoff"][0.01]["dice"] = 0.80


@pytest.mark.parametrize("spoil", [_untrained, _no_folds_at_small_weight, _folds_at_weight_one, _slow_network,
                                   _loss_did_not_fall, _no_trade_off, _dice_best_at_smallest_weight])
def test_closing_check_fails_when_the_lesson_does_not_show_its_point(spoil):
    lesson = _lesson_that_worked()
    spoil(lesson)
    with pytest.raises(AssertionError):
        _run(lesson)
