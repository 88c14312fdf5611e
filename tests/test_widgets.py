"""Tests of regedu.widgets: the plain functions give the right numbers, every widget builds and
redraws when a slider moves, and a missing ipywidgets gives a clear error only when a widget is built."""

import importlib
import math
import sys

import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

import regedu
from regedu import losses, metrics, warps, widgets
from regedu.data import random_disp, random_velocity


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def blob(shape, centre=None, width=0.15):
    """A Gaussian blob ``(1, 1, *shape)`` that is ~0 at the border."""
    grid = warps.identity_grid(shape, dtype=torch.float64)
    centre = [(n - 1) / 2 for n in shape] if centre is None else centre
    centre = torch.tensor(centre, dtype=torch.float64).view(-1, *([1] * len(shape)))
    return torch.exp(-((grid - centre) ** 2).sum(0) / (2 * (width * max(shape)) ** 2))[None, None]


def changed(widget, control, value):
    """Set ``control``'s value and return the figure the widget drew in response."""
    widget.result = None
    control.value = value
    assert isinstance(widget.result, Figure), "the widget's callback failed (see the logged warning)"
    return widget.result


# ---------------------------------------------------------------------------
# transform explorer
# ---------------------------------------------------------------------------


def test_transform_explorer_with_defaults_returns_the_image():
    image = torch.rand(2, 1, 12, 15)
    warped, disp = widgets.transform_explorer(image)
    assert disp.shape == (1, 2, 12, 15) and torch.equal(disp, torch.zeros_like(disp))
    torch.testing.assert_close(warped, image, atol=1e-5, rtol=0)


def test_transform_explorer_translation_pulls():
    image = torch.rand(1, 1, 10, 12, dtype=torch.float64)
    warped, disp = widgets.transform_explorer(image, tx=2.0, ty=-1.0)
    assert torch.allclose(disp[0, 0], torch.tensor(2.0, dtype=torch.float64))
    assert torch.allclose(disp[0, 1], torch.tensor(-1.0, dtype=torch.float64))
    # warped(x) = image(x0 + 2, x1 - 1), inside the image
    torch.testing.assert_close(warped[..., :-2, 1:], image[..., 2:, :-1])
    assert warped.dtype == torch.float64


def test_transform_explorer_rotation_by_90_degrees():
    image = torch.rand(1, 1, 9, 9, dtype=torch.float64)
    warped, _ = widgets.transform_explorer(image, angle_deg=90.0)
    # sample location (c0 - (x1 - c1), c1 + (x0 - c0)): warped[i, j] = image[8 - j, i]
    torch.testing.assert_close(warped, torch.rot90(image, k=-1, dims=(2, 3)), atol=1e-9, rtol=0)


def test_transform_explorer_scale_and_deformation():
    image = torch.rand(1, 1, 11, 11, dtype=torch.float64)
    _, disp = widgets.transform_explorer(image, scale=2.0)
    grid = warps.identity_grid((11, 11), dtype=torch.float64)
    torch.testing.assert_close(disp[0], grid - 5.0)  # (scale - 1) * (x - centre)
    _, disp = widgets.transform_explorer(image, deformation=3.0, seed=4)
    expected = random_disp((11, 11), magnitude=3.0, smoothness=16.0, seed=4, dtype=torch.float64)
    torch.testing.assert_close(disp, expected)  # alone, the deformation is the seeded random field
    assert disp.abs().max() == pytest.approx(3.0)


def test_transform_explorer_refuses_volumes_and_bad_scale():
    with pytest.raises(ValueError, match="slice"):
        widgets.transform_explorer(torch.rand(1, 1, 4, 5, 6))
    with pytest.raises(ValueError):
        widgets.transform_explorer(torch.rand(1, 1, 4, 5), scale=0.0)


def test_transform_explorer_widget_updates():
    w = widgets.transform_explorer_widget(torch.rand(1, 1, 16, 16))
    assert isinstance(w, ipywidgets.Widget)
    assert isinstance(w.result, Figure) and len(w.result.axes) == 3
    tx = w.kwargs_widgets[0]
    assert "axis 0" in tx.description and tx.continuous_update is False
    fig = changed(w, tx, 3.0)
    line = fig.axes[2].lines[0]  # the first grid line (row 0) now sits at row 0 + 3
    assert set(line.get_ydata()) == {3.0}


# ---------------------------------------------------------------------------
# similarity landscape
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["mse", "ncc", "global_ncc", "mi", "ngf"])
def test_similarity_landscape_minimal_at_the_true_shift(similarity):
    fixed = blob((24, 24), width=0.12)
    fixed[..., :5, :] = fixed[..., -5:, :] = fixed[..., :, :5] = fixed[..., :, -5:] = 0  # 0 near the border
    moving = torch.roll(fixed, shifts=(2, -3), dims=(2, 3))  # moving(x) = fixed(x - t), t = (2, -3)
    values = widgets.similarity_landscape(fixed, moving, shifts=4, similarity=similarity)
    assert values.shape == (9, 9)
    best = divmod(int(values.argmin()), 9)
    assert (best[0] - 4, best[1] - 4) == (2, -3)
    if similarity == "mse":
        assert float(values[6, 1]) == pytest.approx(0.0, abs=1e-12)
        manual = losses.mse(fixed, warps.warp(moving, torch.zeros(1, 2, 24, 24, dtype=torch.float64)))
        assert float(values[4, 4]) == pytest.approx(float(manual))


def test_similarity_landscape_in_3d_and_with_a_function():
    fixed = blob((10, 10, 10), width=0.15)
    moving = torch.roll(fixed, shifts=(1, 0, -1), dims=(2, 3, 4))
    values = widgets.similarity_landscape(fixed, moving, shifts=[-1, 0, 1],
                                          similarity=lambda f, w: (f - w).abs().mean())
    assert values.shape == (3, 3, 3)
    assert torch.nonzero(values == values.min()).tolist() == [[2, 1, 0]]


def test_similarity_landscape_bad_inputs():
    fixed = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError):
        widgets.similarity_landscape(fixed, fixed, similarity="dice")
    with pytest.raises(ValueError):
        widgets.similarity_landscape(fixed, fixed, shifts=[0.5, 1.0])
    with pytest.raises(ValueError):
        widgets.similarity_landscape(fixed, torch.rand(1, 1, 8, 9))


def test_similarity_landscape_widget_updates():
    fixed = blob((16, 16)).float()
    w = widgets.similarity_landscape_widget(fixed, torch.roll(fixed, 1, dims=2), max_shift=3)
    assert isinstance(w, ipywidgets.Widget)
    choice, shift_range = w.kwargs_widgets
    assert shift_range.value == 3 and isinstance(w.result, Figure)
    fig = changed(w, choice, "ncc")
    assert fig.axes[0].get_title() == "ncc landscape"
    fig = changed(w, shift_range, 2)
    assert fig.axes[0].images[0].get_array().shape == (5, 5)


# ---------------------------------------------------------------------------
# regularisation weight
# ---------------------------------------------------------------------------


def regularisation_results():
    fixed = blob((16, 16)).float()
    results = {}
    for weight, magnitude in ((0.01, 6.0), (0.1, 2.0), (1.0, 0.5)):
        disp = random_disp((16, 16), magnitude=magnitude, smoothness=6.0, seed=1)
        results[weight] = (warps.warp(fixed, disp), disp)
    return fixed, results


def test_regularisation_result_picks_and_measures():
    fixed, results = regularisation_results()
    summary = widgets.regularisation_result(results, 0.01, fixed)
    warped, disp = results[0.01]
    assert summary["warped"] is warped and summary["disp"] is disp
    assert summary["folding_fraction"] == pytest.approx(float(metrics.folding_fraction(disp)[0]))
    assert summary["folding_fraction"] > 0  # 6 voxels over 6: this one folds
    assert summary["sdlogj"] == pytest.approx(float(metrics.sdlogj(disp)[0]))
    assert summary["mse"] == pytest.approx(float(losses.mse(fixed, warped)))
    assert "mse" not in widgets.regularisation_result(results, 1.0)
    with pytest.raises(ValueError, match="0.01"):
        widgets.regularisation_result(results, 0.5)


def test_regularisation_widget_updates():
    fixed, results = regularisation_results()
    w = widgets.regularisation_widget(results, fixed, moving=fixed)
    assert isinstance(w, ipywidgets.Widget) and len(w.result.axes) == 4 + 2  # 4 panels, 2 colour bars
    assert w.result._suptitle.get_text().startswith("weight 0.01:")
    fig = changed(w, w.kwargs_widgets[0], 1.0)
    assert fig._suptitle.get_text().startswith("weight 1:") and "folding 0.00%" in fig._suptitle.get_text()
    without_fixed = widgets.regularisation_widget(results)
    assert len(without_fixed.result.axes) == 3 + 1


# ---------------------------------------------------------------------------
# integration steps
# ---------------------------------------------------------------------------


def test_integration_steps_zero_is_the_velocity_and_more_steps_fold_less():
    velocity = random_velocity((32, 32), magnitude=10.0, smoothness=8.0, seed=0)
    disp, folding = widgets.integration_steps(velocity, 0)
    assert torch.equal(disp, velocity)
    assert folding == pytest.approx(float(metrics.folding_fraction(velocity)[0])) and folding > 0
    disp, folded_after = widgets.integration_steps(velocity, 7)
    torch.testing.assert_close(disp, warps.integrate(velocity, 7))
    assert folded_after < folding / 10


def test_integration_steps_widget_updates():
    velocity = random_velocity((24, 24), magnitude=8.0, smoothness=6.0, seed=2)
    w = widgets.integration_steps_widget(velocity, max_steps=8)
    assert isinstance(w, ipywidgets.Widget)
    _, folding = widgets.integration_steps(velocity, 0)
    assert f"folding {100 * folding:.2f}%" in w.result._suptitle.get_text()
    fig = changed(w, w.kwargs_widgets[0], 6)
    assert fig._suptitle.get_text().startswith("6 steps")


# ---------------------------------------------------------------------------
# slice viewer
# ---------------------------------------------------------------------------


def test_slice_viewer_and_widget():
    volume = blob((8, 9, 10)).float()
    labels = (volume > 0.5).long()
    fig = widgets.slice_viewer(volume, (1, 2, 3), labels)
    assert [ax.get_title() for ax in fig.axes] == ["sagittal, x = 1", "coronal, y = 2", "axial, z = 3"]
    w = widgets.slice_viewer_widget(volume, labels)
    assert isinstance(w, ipywidgets.Widget)
    assert [s.value for s in w.kwargs_widgets] == [4, 4, 5] and [s.max for s in w.kwargs_widgets] == [7, 8, 9]
    fig = changed(w, w.kwargs_widgets[2], 7)
    assert fig.axes[2].get_title() == "axial, z = 7"
    with pytest.raises(ValueError):
        widgets.slice_viewer_widget(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("build", [
    lambda: widgets.transform_explorer_widget(torch.rand(1, 1, 4, 5, 6)),
    lambda: widgets.similarity_landscape_widget(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9)),
    lambda: widgets.integration_steps_widget(torch.rand(1, 3, 8, 8)),
    lambda: widgets.regularisation_widget({}),
])
def test_widgets_check_their_inputs_before_building(build):
    with pytest.raises(ValueError):
        build()


# ---------------------------------------------------------------------------
# without ipywidgets
# ---------------------------------------------------------------------------


def test_import_works_without_ipywidgets_until_a_widget_is_built(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError
    monkeypatch.delitem(sys.modules, "regedu.widgets")
    monkeypatch.setattr(regedu, "widgets", widgets)  # restored afterwards: the import below rebinds it
    fresh = importlib.import_module("regedu.widgets")
    assert fresh is not widgets
    image = torch.rand(1, 1, 8, 8)
    warped, _ = fresh.transform_explorer(image)  # plain functions still work
    assert warped.shape == image.shape
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        fresh.transform_explorer_widget(image)
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        fresh.slice_viewer_widget(torch.rand(1, 1, 4, 4, 4))
    assert math.isfinite(float(fresh.similarity_landscape(image, image, 1).sum()))
