"""Lesson 06 (multiscale): the widget's plain function and sliders, and the closing check's thresholds,
which must reject untrained networks and (once the real toy models ship) accept the shipped ones."""

from __future__ import annotations

import re
from pathlib import Path

import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from regedu import data, metrics, models, warps, widgets
from regedu.models.pretrained import WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "notebooks" / "build" / "06_multiscale.py"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


class Still(torch.nn.Module):
    """A 'network' that never moves the image (zero field); counts its calls."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, moving, fixed):
        self.calls += 1
        disp = torch.zeros(moving.shape[0], moving.dim() - 2, *moving.shape[2:], dtype=moving.dtype)
        return moving + 0 * self.weight, disp


class Oracle(torch.nn.Module):
    """A 'network' that returns the true field of notebook 06's pair of a given push."""

    def __init__(self, pair):
        super().__init__()
        self.pair = pair

    def forward(self, moving, fixed):
        return warps.warp(moving, self.pair["disp"]), self.pair["disp"]


# ---------------------------------------------------------------------------
# multiscale_result
# ---------------------------------------------------------------------------


def test_multiscale_result_scores_networks_against_the_true_field():
    pair = data.large_deformation_pair((64, 64), kind="large_warp", magnitude=12.0, seed=0)
    still = Still()
    result = widgets.multiscale_result(12, 1, {"still": still, "oracle": Oracle(pair)}, iterations=2)
    assert set(result) == {"pair", "magnitude", "levels", "coarse_shape", "coarse_push", "coarse_radius",
                           "classical", "networks"}
    torch.testing.assert_close(result["pair"]["disp"], pair["disp"])
    before = metrics.dice(pair["moving_labels"], pair["fixed_labels"]).mean().item()
    motion = pair["disp"].norm(dim=1)[pair["fixed_labels"][:, 0] > 0].mean().item()
    not_moved, perfect = result["networks"]["still"], result["networks"]["oracle"]
    assert not_moved["dice"] == pytest.approx(before) and not_moved["folding"] == 0
    assert not_moved["end_point_error"] == pytest.approx(motion, rel=1e-5)
    assert perfect["end_point_error"] == 0 and perfect["folding"] == 0 and perfect["dice"] > 0.95
    assert before < 0.5  # a 12-voxel push: the disks (radius 10.7) barely overlap


def test_multiscale_result_coarse_grid_shrinks_push_and_radius_alike():
    for levels, shape in [(1, (64, 64)), (4, (9, 9))]:
        result = widgets.multiscale_result(12, levels, iterations=4)
        assert result["coarse_shape"] == shape
        shrink = (shape[0] - 1) / 63
        assert result["coarse_radius"] == pytest.approx(64 / 6 * shrink)
        largest = result["pair"]["disp"].norm(dim=1).max().item()
        assert result["coarse_push"] == pytest.approx(largest * shrink, abs=0.3)


def test_four_levels_reach_a_push_that_one_level_misses():
    one = widgets.multiscale_result(12, 1, iterations=60)["classical"]
    four = widgets.multiscale_result(12, 4, iterations=60)["classical"]
    assert four["dice"] > one["dice"] + 0.3
    assert four["end_point_error"] < one["end_point_error"] / 2
    assert one["folding"] == 0 and four["folding"] == 0


def test_multiscale_result_caches_what_each_piece_depends_on():
    cache, still = {}, Still()
    first = widgets.multiscale_result(8, 2, {"still": still}, iterations=4, cache=cache)
    again = widgets.multiscale_result(8, 2, {"still": still}, iterations=4, cache=cache)
    assert still.calls == 1 and again["classical"] is first["classical"]
    other_levels = widgets.multiscale_result(8, 3, {"still": still}, iterations=4, cache=cache)
    assert still.calls == 1, "a network's result does not depend on the classical levels"
    assert other_levels["classical"] is not first["classical"]
    widgets.multiscale_result(10, 3, {"still": still}, iterations=4, cache=cache)
    assert still.calls == 2


def test_multiscale_result_keeps_the_network_mode():
    still = Still().train()
    widgets.multiscale_result(8, 1, {"still": still}, iterations=2)
    assert still.training


@pytest.mark.parametrize("arguments, error", [
    (dict(magnitude=0, levels=1), ValueError),
    (dict(magnitude="12", levels=1), ValueError),
    (dict(magnitude=12, levels=5), ValueError),   # 64 x 64 allows 4 levels
    (dict(magnitude=12, levels=0), ValueError),
    (dict(magnitude=12, levels=3, iterations=2), ValueError),  # fewer iterations than levels
    (dict(magnitude=12, levels=1, networks=[Still()]), TypeError),
    (dict(magnitude=12, levels=1, networks={"x": "not a model"}), TypeError),
])
def test_multiscale_result_refuses_bad_input(arguments, error):
    with pytest.raises(error):
        widgets.multiscale_result(**arguments)


# ---------------------------------------------------------------------------
# multiscale_widget
# ---------------------------------------------------------------------------


def _sliders(widget) -> dict:
    return {child.description: child for child in widget.children
            if isinstance(child, ipywidgets.FloatSlider | ipywidgets.IntSlider)}


def _scored_panels(fig) -> list[str]:
    """The names of the panels that show a registration with its Dice."""
    return [ax.get_title().split(":")[0] for ax in fig.axes if "Dice" in ax.get_title()]


def test_multiscale_widget_redraws_when_a_slider_moves():
    still = Still()
    widget = widgets.multiscale_widget({"still": still}, magnitude=12, levels=1, iterations=4)
    sliders = _sliders(widget)
    assert set(sliders) == {"push (voxels)", "pyramid levels"}
    assert (sliders["push (voxels)"].min, sliders["push (voxels)"].max) == (2.0, 20.0)
    assert (sliders["pyramid levels"].min, sliders["pyramid levels"].max) == (1, 4)
    assert isinstance(widget.result, Figure)
    assert _scored_panels(widget.result) == ["classical, levels=1", "still"]
    widget.result = None
    sliders["pyramid levels"].value = 4
    assert isinstance(widget.result, Figure), "the widget's callback failed"
    assert "9 x 9" in widget.result.axes[0].get_title()
    assert "levels=4" in widget.result.axes[1].get_title()
    widget.result = None
    sliders["push (voxels)"].value = 6.0
    assert isinstance(widget.result, Figure)
    assert "pushed 6 voxels" in widget.result.texts[0].get_text()
    assert still.calls == 2  # one call per push, none for a change of levels


def test_multiscale_widget_without_networks_has_one_row_and_reuses_a_cache():
    cache = {}
    widgets.multiscale_result(12.0, 1, iterations=4, cache=cache)
    entries = len(cache)
    widget = widgets.multiscale_widget(magnitude=12, levels=1, iterations=4, cache=cache)
    assert _scored_panels(widget.result) == ["classical, levels=1"] and len(cache) == entries


def test_multiscale_widget_refuses_bad_settings():
    with pytest.raises(ValueError):
        widgets.multiscale_widget(max_levels=5)
    with pytest.raises(ValueError):
        widgets.multiscale_widget(max_magnitude=1)
    with pytest.raises(TypeError):
        widgets.multiscale_widget(networks=["not a dict"])


# ---------------------------------------------------------------------------
# the closing check's thresholds
# ---------------------------------------------------------------------------


def _threshold(name: str) -> float:
    """A named threshold of the notebook's closing check, read from its builder."""
    match = re.search(rf"^{name} = ([0-9.e-]+)", BUILDER.read_text(), re.MULTILINE)
    assert match, f"{name} is not defined in {BUILDER.name}"
    return float(match.group(1))


def _held_out(count: int = 16) -> dict:
    pairs = data.LargeDeformationPairs(count, shape=(64, 64), magnitude=20.0, min_magnitude=12.0, seed=1)
    return next(iter(torch.utils.data.DataLoader(pairs, batch_size=count)))


def _lesson_numbers(network, pairs) -> dict:
    """What the lesson measures on held-out pairs: mean Dice of the disk, mean end-point error inside
    the fixed disk and mean folded share."""
    with torch.no_grad():
        _, disp = network.eval()(pairs["moving"], pairs["fixed"])[:2]
    labels = warps.warp_labels(pairs["moving_labels"], disp)
    return {"dice": metrics.dice(labels, pairs["fixed_labels"], labels=[1])[:, 0].mean().item(),
            "error": metrics.end_point_error(disp, pairs["disp"], mask=pairs["fixed_labels"]).mean().item(),
            "folding": metrics.folding_fraction(disp).mean().item()}


def test_closing_check_rejects_untrained_networks():
    pairs = _held_out()
    before = metrics.dice(pairs["moving_labels"], pairs["fixed_labels"], labels=[1])[:, 0].mean().item()
    torch.manual_seed(0)
    pyramid = _lesson_numbers(models.PyramidNet(2, levels=3), pairs)
    single = _lesson_numbers(models.VoxelMorph(2), pairs)
    assert not pyramid["dice"] > before + _threshold("MIN_LEARNED_GAIN")
    assert not single["folding"] > _threshold("MIN_SINGLE_FOLDING")
    assert not single["error"] > _threshold("MIN_ERROR_RATIO") * pyramid["error"]


@pytest.mark.skipif(not (WEIGHTS / "toy_pyramid2d.log").exists(),
                    reason="the toy models in regedu/weights are provisional (no training log yet)")
def test_shipped_toy_models_pass_the_closing_check():
    pairs = _held_out(32)
    before = metrics.dice(pairs["moving_labels"], pairs["fixed_labels"], labels=[1])[:, 0].mean().item()
    single = _lesson_numbers(models.pretrained("toy_voxelmorph2d"), pairs)
    diffeo = _lesson_numbers(models.pretrained("toy_voxelmorph2d_diff"), pairs)
    pyramid = _lesson_numbers(models.pretrained("toy_pyramid2d"), pairs)
    for model in (single, diffeo, pyramid):
        assert model["dice"] > before + _threshold("MIN_LEARNED_GAIN")
    for other in (single, diffeo):
        assert pyramid["dice"] > other["dice"] + _threshold("MIN_PYRAMID_LEAD")
        assert other["error"] > _threshold("MIN_ERROR_RATIO") * pyramid["error"]
    assert pyramid["folding"] < _threshold("MAX_PYRAMID_FOLDING")
    assert single["folding"] > _threshold("MIN_SINGLE_FOLDING")
    assert diffeo["folding"] < _threshold("MAX_DIFF_FOLDING")
