"""Tests of regedu.viz: every figure renders headless, and what it draws is where it should be.

The figures are checked through what matplotlib holds (line data, image arrays, norms, texts)
and, for orientation, through the display transform and the rendered pixels.
"""

import io
import math
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver

from regedu import metrics, viz, warps
from regedu.data import brain_slice
from regedu.viz import plots  # LiveLossPlot's home: its notebook hooks are patched there

SHAPES = {2: (13, 17), 3: (9, 11, 12)}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def smooth_image(shape, dtype=torch.float32):
    """A smooth blob ``(1, 1, *shape)`` in [0, 1]."""
    grid = warps.identity_grid(shape, dtype=dtype)
    centre = torch.tensor([(n - 1) / 2 for n in shape], dtype=dtype).view(-1, *([1] * len(shape)))
    return torch.exp(-((grid - centre) ** 2).sum(0) / (0.1 * max(shape) ** 2))[None, None]


def wavy_field(shape, amplitude, dtype=torch.float32):
    """A smooth field ``(1, ndim, *shape)`` along axis 0 that folds when ``amplitude`` is large."""
    grid = warps.identity_grid(shape, dtype=dtype)
    disp = torch.zeros(1, len(shape), *shape, dtype=dtype)
    wave = torch.sin(2 * math.pi * grid[0] / shape[0]) * torch.cos(2 * math.pi * grid[1] / shape[1])
    disp[0, 0] = amplitude * wave
    return disp


def constant_field(shape, axis, value, dtype=torch.float32):
    disp = torch.zeros(1, len(shape), *shape, dtype=dtype)
    disp[0, axis] = value
    return disp


def only_axes(fig):
    return fig.axes[0]


def screen_vector(ax, x, y, u, v):
    """Display-space (pixels, y up) direction of the data vector (u, v) drawn at (x, y)."""
    start, end = ax.transData.transform([[x, y], [x + u, y + v]])
    return end - start


def panel_pixels(fig) -> np.ndarray:
    """The pixels ``(rows, cols, 3)`` in [0, 1] inside the first axes, as seen (row 0 at the top)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(float) / 255
    box = fig.axes[0].get_window_extent()  # display pixels, y up from the bottom
    height = pixels.shape[0]
    top, bottom = height - int(math.ceil(box.y1)), height - int(box.y0)
    return pixels[top + 2:bottom - 2, int(box.x0) + 2:int(math.ceil(box.x1)) - 2]


# ---------------------------------------------------------------------------
# every figure renders, 2D and 3D, returns a Figure with titles
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_figure_renders_with_titles(ndim, dtype):
    shape = SHAPES[ndim]
    image = smooth_image(shape, dtype)
    disp = wavy_field(shape, 1.0, dtype)
    labels = (image > 0.5).long() + (image > 0.8).long()
    warped = warps.warp(image, disp)
    figures = {
        "show_slices": (viz.show_slices([image, warped[0, 0], image.numpy()], titles=["a", "b", "c"]), 3),
        "show_image": (viz.show_image(image, colorbar=True), 2),
        "overlay": (viz.overlay(image, labels, names={1: "outer", 2: "inner"}), 1),
        "overlay_contour": (viz.overlay(image, labels, style="contour"), 1),
        "checkerboard": (viz.checkerboard(image, warped), 1),
        "difference": (viz.difference(image, warped), 2),
        "deformation_grid": (viz.deformation_grid(disp, image=image), 1),
        "displacement_colour": (viz.displacement_colour(disp), 1),
        "displacement_arrows": (viz.displacement_arrows(disp, step=3, image=image), 1),
        "jacobian_map": (viz.jacobian_map(disp), 2),
        "registration_summary": (viz.registration_summary(image, image, warped, disp), 11),
        "summary_labels": (viz.registration_summary(image, image, warped, disp, labels, labels), 11),
    }
    if ndim == 3:
        figures["three_plane"] = (viz.three_plane(image, labels=labels), 3)
    for name, (fig, count) in figures.items():
        assert isinstance(fig, Figure), name
        assert len(fig.axes) == count, name
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>":
                assert ax.get_title(), f"{name}: a panel without a title"
        if dtype == torch.float32:  # drawing is what takes time: once per dimension is enough
            fig.savefig(io.BytesIO(), format="png", dpi=40)
        assert fig.get_size_inches().min() > 1


def test_figures_leave_pyplot_alone_and_never_show(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show() was called"))
    before = plt.get_fignums()
    viz.registration_summary(*(smooth_image((8, 8)),) * 3, wavy_field((8, 8), 1.0))
    viz.loss_curve([1.0, 0.5])
    assert plt.get_fignums() == before  # detached: a notebook shows them once, when returned
    assert matplotlib.get_backend().lower() == "agg"


def test_inputs_with_gradients_and_other_dtypes_are_accepted():
    image = smooth_image((8, 10)).requires_grad_(True)
    disp = wavy_field((8, 10), 0.5).to(torch.float16)
    shown = only_axes(viz.show_image(image)).images[0].get_array()
    np.testing.assert_allclose(shown, image.detach()[0, 0].numpy(), rtol=1e-6)
    jacobian = viz.jacobian_map(disp).axes[0].images[0].get_array()
    expected = warps.jacobian_det(disp.float())[0].numpy()
    np.testing.assert_allclose(jacobian, expected, rtol=2e-3)  # float16 has about 3 significant digits
    grid = only_axes(viz.deformation_grid(disp[0]))  # (ndim, *spatial) without a batch axis
    assert grid.lines and all(np.isfinite(line.get_xydata()).all() for line in grid.lines)
    labels = torch.zeros(8, 10, dtype=torch.bool)
    labels[2:5, 3:7] = True
    rgba = only_axes(viz.overlay(image, labels)).images[1].get_array()
    np.testing.assert_array_equal(rgba[..., 3] > 0, labels.numpy())


def test_ax_argument_draws_into_the_given_axes():
    fig, axes = viz.new_figure(1, 2)
    returned = viz.deformation_grid(wavy_field((8, 8), 1.0), ax=axes[0, 1])
    assert returned is fig
    assert len(axes[0, 1].lines) > 0 and len(axes[0, 0].lines) == 0


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: viz.show_image(torch.zeros(2, 3, 4, 5, 6, 7)), ValueError),
        (lambda: viz.show_image([[0.0]]), TypeError),
        (lambda: viz.show_image(torch.zeros(5, 6), index=2), ValueError),
        (lambda: viz.show_image(torch.zeros(5, 6, 7), index=7), ValueError),
        (lambda: viz.show_image(torch.zeros(5, 6), orientation="upside-down"), ValueError),
        (lambda: viz.show_image(torch.zeros(5, 6, 7), axis=3), ValueError),
        (lambda: viz.show_slices([torch.zeros(5, 6)], titles=["a", "b"]), ValueError),
        (lambda: viz.deformation_grid(torch.zeros(1, 3, 5, 6)), ValueError),
        (lambda: viz.deformation_grid(torch.zeros(1, 2, 5, 6), spacing=0), ValueError),
        (lambda: viz.deformation_grid(torch.zeros(1, 2, 5, 6), image=torch.zeros(5, 7)), ValueError),
        (lambda: viz.difference(torch.zeros(5, 6), torch.zeros(5, 7)), ValueError),
        (lambda: viz.overlay(torch.zeros(5, 6), torch.zeros(5, 6)), TypeError),
        (lambda: viz.overlay(torch.zeros(5, 6), torch.zeros(5, 6).long(), alpha=2), ValueError),
        (lambda: viz.three_plane(torch.zeros(5, 6)), ValueError),
        (lambda: viz.loss_curve([1.0, -1.0], log=True), ValueError),
        (lambda: viz.loss_curve("loss"), TypeError),
        (lambda: viz.dice_per_label(torch.rand(2, 3), names=["a", "b"]), ValueError),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------------------
# orientation: matrix layout and anatomical layouts
# ---------------------------------------------------------------------------


def test_matrix_layout_puts_axis_0_down_the_rows():
    fig = viz.show_image(torch.zeros(13, 17))
    ax = only_axes(fig)
    down = screen_vector(ax, 0, 0, 0, 5)  # 5 voxels along axis 0 (vertical data coordinate)
    right = screen_vector(ax, 0, 0, 5, 0)  # 5 voxels along axis 1
    assert down[1] < 0 and down[0] == 0  # display y grows upwards: axis 0 goes down
    assert right[0] > 0 and right[1] == 0
    assert ax.get_xlabel() == "axis 1" and ax.get_ylabel() == "axis 0"


def test_matrix_layout_matches_plain_imshow_pixels():
    image = torch.zeros(20, 30)
    image[:5, -8:] = 1.0  # top-right corner of the matrix
    pixels = panel_pixels(viz.show_image(image))
    bright = np.argwhere(pixels.mean(-1) > 0.9)
    rows, cols = pixels.shape[:2]
    assert abs(bright.size / 2 / (rows * cols) - 5 * 8 / (20 * 30)) < 0.02  # the block, and nothing else
    assert bright[:, 0].max() < rows * 6 / 20  # top quarter of the panel
    assert bright[:, 1].min() > cols * 21 / 30  # right end


@pytest.mark.parametrize("orientation, left_letter",
                         [(True, "R"), ("radiological", "R"), ("neurological", "L")])
def test_axial_slice_letters_and_directions(orientation, left_letter):
    ax = only_axes(viz.show_image(torch.zeros(12, 14), orientation=orientation))
    letters = [t.get_text() for t in ax.texts]
    assert letters == [left_letter, "L" if left_letter == "R" else "R", "P", "A"]  # left, right, bottom, top
    towards_right = screen_vector(ax, 5, 5, 1, 0)  # +x: towards the patient's right
    towards_anterior = screen_vector(ax, 5, 5, 0, 1)  # +y
    assert (towards_right[0] < 0) == (left_letter == "R")
    assert towards_anterior[1] > 0 and towards_anterior[0] == 0


@pytest.mark.parametrize("draw", [
    lambda: viz.jacobian_map(wavy_field((8, 8), 3.0), orientation=True),
    lambda: viz.overlay(torch.rand(8, 8), torch.ones(8, 8).long(), orientation=True),
    lambda: viz.displacement_arrows(torch.zeros(2, 8, 8), image=torch.rand(8, 8), orientation=True),
])
def test_side_letters_are_drawn_once_per_panel(draw):
    assert [t.get_text() for t in draw().axes[0].texts] == ["R", "L", "P", "A"]


def test_radiological_brain_slice_shows_the_left_hemisphere_on_the_right():
    brain = brain_slice(parcels=True)
    left = [v for v, name in brain.label_names.items() if " left " in name]
    left_mask = torch.isin(brain.labels, torch.tensor(left)).long()
    assert left_mask.sum() > 100
    fig = viz.overlay(torch.zeros_like(brain.image), left_mask, alpha=1.0, orientation=True)
    pixels = panel_pixels(fig)
    coloured = np.argwhere(pixels.std(-1) > 0.1)  # the label colour, on a black image
    assert len(coloured) > 100
    assert (coloured[:, 1] > pixels.shape[1] / 2).mean() > 0.99


@pytest.mark.parametrize(
    "cut, letters, cross",
    [(0, ["A", "P", "I", "S"], (4, 5)), (1, ["R", "L", "I", "S"], (3, 5)), (2, ["R", "L", "P", "A"], (3, 4))],
)
def test_three_plane_views_are_labelled_anatomically(cut, letters, cross):
    volume = torch.zeros(8, 9, 10)
    fig = viz.three_plane(volume, index=(3, 4, 5))
    ax = fig.axes[cut]
    assert [t.get_text() for t in ax.texts] == letters  # left, right, bottom, top
    assert ax.get_title() == f"{['sagittal', 'coronal', 'axial'][cut]}, {'xyz'[cut]} = {(3, 4, 5)[cut]}"
    vertical_line, horizontal_line = ax.lines  # the crosshair: where the other two planes cut
    assert (vertical_line.get_xdata()[0], horizontal_line.get_ydata()[0]) == cross


def test_three_plane_panels_have_the_expected_shapes():
    fig = viz.three_plane(torch.rand(8, 9, 10), orientation=False)
    shapes = [ax.images[0].get_array().shape for ax in fig.axes]
    assert shapes == [(9, 10), (8, 10), (8, 9)]  # rows = the lower remaining axis in matrix layout
    fig = viz.three_plane(torch.rand(8, 9, 10))
    shapes = [ax.images[0].get_array().shape for ax in fig.axes]
    assert shapes == [(10, 9), (10, 8), (9, 8)]  # rows = the upper axis (shown bottom to top)


def test_3d_slice_defaults_to_the_middle_of_the_last_axis():
    volume = torch.zeros(4, 5, 6)
    volume[:, :, 3] = 1.0
    ax = only_axes(viz.show_image(volume))
    assert np.all(ax.images[0].get_array() == 1.0)
    assert "axis 2 = 3" in ax.get_title()
    ax = only_axes(viz.show_image(volume, axis=0, index=1))
    assert ax.images[0].get_array().shape == (5, 6)


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


def test_checkerboard_alternates_tiles():
    a, b = np.zeros((8, 12)), np.ones((8, 12))
    board = viz.checkerboard_image(a, b, squares=4)
    assert board[0, 0] == 0 and board[0, 3] == 1 and board[2, 0] == 1 and board[2, 3] == 0
    assert board.mean() == 0.5
    ax = only_axes(viz.checkerboard(torch.zeros(8, 12), torch.ones(8, 12), squares=4))
    np.testing.assert_array_equal(ax.images[0].get_array(), board)


def test_difference_is_centred_at_zero_with_a_colourbar():
    a = torch.zeros(6, 7)
    a[1, 1] = 0.3
    a[2, 2] = -0.1
    fig = viz.difference(a, torch.zeros(6, 7), names=("fixed", "warped"))
    ax, bar = fig.axes
    norm = ax.images[0].norm
    assert norm.vmin == pytest.approx(-0.3) and norm.vmax == pytest.approx(0.3)
    assert norm(0.0) == pytest.approx(0.5)
    assert bar.get_ylabel() == "fixed − warped"
    assert "RMS" in ax.get_title()
    fig = viz.difference(torch.ones(3, 3), torch.ones(3, 3))  # identical: still a valid norm
    assert fig.axes[0].images[0].norm(0.0) == pytest.approx(0.5)


def test_overlay_colours_exactly_the_labelled_voxels():
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[2:5, 3:8] = 1
    labels[6:9, 1:4] = 4
    ax = only_axes(viz.overlay(torch.rand(10, 10), labels, alpha=0.5, names={1: "one", 4: "four"}))
    rgba = ax.images[1].get_array()
    np.testing.assert_array_equal(rgba[..., 3] > 0, labels.numpy() > 0)
    assert np.all(rgba[labels.numpy() > 0, 3] == 0.5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["one", "four"]


# ---------------------------------------------------------------------------
# fields
# ---------------------------------------------------------------------------


def grid_lines(ax):
    """Horizontal lines as {y: x-extent} and vertical lines as {x: y-extent}, from the line data."""
    horizontal, vertical = {}, {}
    for line in ax.lines:
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        if np.all(y == y[0]):
            horizontal[float(y[0])] = (x.min(), x.max())
        else:
            assert np.all(x == x[0]), "a zero field must draw straight lines"
            vertical[float(x[0])] = (y.min(), y.max())
    return horizontal, vertical


@pytest.mark.parametrize("ndim", [2, 3])
def test_zero_field_grid_lines_sit_on_the_grid(ndim):
    shape = SHAPES[ndim]
    ax = only_axes(viz.deformation_grid(torch.zeros(1, ndim, *shape), spacing=4))
    horizontal, vertical = grid_lines(ax)
    rows, cols = shape[0], shape[1]  # matrix layout: rows = axis 0, columns = axis 1 (3D: slice across 2)
    assert sorted(horizontal) == sorted(set(range(0, rows, 4)) | {rows - 1})
    assert sorted(vertical) == sorted(set(range(0, cols, 4)) | {cols - 1})
    assert all(extent == (0, cols - 1) for extent in horizontal.values())
    assert all(extent == (0, rows - 1) for extent in vertical.values())


def test_grid_lines_move_by_the_displacement():
    disp = constant_field((9, 9), axis=0, value=1.5)
    horizontal, vertical = grid_lines(only_axes(viz.deformation_grid(disp, spacing=4)))
    assert sorted(horizontal) == [1.5, 5.5, 9.5]  # x + disp(x): rows 0, 4, 8 pulled from 1.5 voxels further
    assert all(extent == (1.5, 9.5) for extent in vertical.values())


def test_grid_lines_in_anatomical_layout_use_x_across_and_y_up():
    disp = constant_field((9, 11), axis=1, value=2.0)  # along y: anterior
    horizontal, vertical = grid_lines(only_axes(viz.deformation_grid(disp, spacing=4, orientation=True)))
    assert sorted(vertical) == [0, 4, 8]  # constant x
    assert sorted(horizontal) == [2.0, 6.0, 10.0, 12.0]  # y = 0, 4, 8, 10, moved by 2


@pytest.mark.parametrize("ndim", [2, 3])
def test_arrows_along_axis_0_point_down_the_screen(ndim):
    shape = SHAPES[ndim]
    ax = only_axes(viz.displacement_arrows(constant_field(shape, axis=0, value=2.0), step=4))
    quiver = next(c for c in ax.collections if isinstance(c, Quiver))
    assert np.all(quiver.U == 0) and np.all(quiver.V == 2.0)
    x, y = quiver.X[0], quiver.Y[0]
    direction = screen_vector(ax, x, y, quiver.U[0], quiver.V[0])
    assert direction[1] < 0 and abs(direction[0]) < 1e-9  # matplotlib's y axis is inverted: down
    fig = viz.displacement_arrows(constant_field(shape, axis=1, value=2.0), step=4)
    quiver = next(c for c in only_axes(fig).collections if isinstance(c, Quiver))
    assert screen_vector(only_axes(fig), 0, 0, quiver.U[0], quiver.V[0])[0] > 0  # axis 1: to the right


def test_arrow_start_points_and_true_length():
    ax = only_axes(viz.displacement_arrows(constant_field((8, 12), axis=1, value=3.0), step=4))
    quiver = next(c for c in ax.collections if isinstance(c, Quiver))
    assert sorted(set(quiver.X.tolist())) == [2, 6, 10] and sorted(set(quiver.Y.tolist())) == [2, 6]
    assert quiver.scale == 1.0 and quiver.scale_units == "xy"  # arrow = disp in voxels


def test_arrows_in_radiological_layout():
    ax = only_axes(viz.displacement_arrows(constant_field((8, 8), axis=0, value=2.0), orientation=True))
    quiver = next(c for c in ax.collections if isinstance(c, Quiver))
    assert screen_vector(ax, 4, 4, quiver.U[0], quiver.V[0])[0] < 0  # towards the patient's right: left


def test_displacement_colour_hue_is_the_screen_direction():
    rgb = only_axes(viz.displacement_colour(constant_field((6, 6), axis=1, value=2.0))).images[0].get_array()
    np.testing.assert_allclose(rgb[3, 3], [1.0, 0.0, 0.0], atol=1e-9)  # right: hue 0, red
    rgb = only_axes(viz.displacement_colour(constant_field((6, 6), axis=0, value=-2.0))).images[0].get_array()
    np.testing.assert_allclose(rgb[3, 3], colors.hsv_to_rgb([0.25, 1, 1]), atol=1e-9)  # up: hue 0.25
    rgb = only_axes(viz.displacement_colour(torch.zeros(1, 2, 6, 6))).images[0].get_array()
    np.testing.assert_allclose(rgb, 1.0)  # no displacement: white
    ax = only_axes(viz.displacement_colour(constant_field((6, 6), axis=0, value=2.0)))
    assert len(ax.child_axes) == 1  # the colour wheel
    assert "max 2 voxels" in ax.get_title()


@pytest.mark.parametrize("ndim", [2, 3])
def test_jacobian_map_centred_at_one_and_folds_counted(ndim):
    shape = (16, 16) if ndim == 2 else (16, 16, 5)
    disp = wavy_field(shape, 4.0)
    det = warps.jacobian_det(disp)[0]
    shown = det if ndim == 2 else det[:, :, 2]
    fig = viz.jacobian_map(disp)
    ax = fig.axes[0]
    norm = ax.images[0].norm
    assert isinstance(norm, colors.TwoSlopeNorm) and norm.vcenter == 1.0 and norm(1.0) == 0.5
    assert norm.vmin <= shown.min().clamp(min=0) + 1e-12 and norm.vmax >= shown.max() - 1e-12
    folds = next(im for im in ax.images if im.get_gid() == "folds")
    assert int((shown <= 0).sum()) > 0
    assert np.ma.count(folds.get_array()) == int((shown <= 0).sum())
    np.testing.assert_array_equal(~np.ma.getmaskarray(folds.get_array()), (shown <= 0).numpy())
    assert colors.to_hex(folds.cmap(1.0)) == colors.to_hex(viz.FOLD_COLOUR)
    percent = 100 * float(metrics.folding_fraction(disp)[0])
    assert f"{percent:.2f}%" in ax.get_title()
    assert fig.axes[1].get_ylabel().startswith("det J")


def test_jacobian_map_without_folds_highlights_nothing():
    ax = viz.jacobian_map(torch.zeros(1, 2, 8, 8)).axes[0]
    folds = next(im for im in ax.images if im.get_gid() == "folds")
    assert np.ma.count(folds.get_array()) == 0
    assert ax.images[0].norm(1.0) == 0.5


# ---------------------------------------------------------------------------
# curves, tables, summaries
# ---------------------------------------------------------------------------


def test_loss_curve_flat_and_per_level():
    ax = only_axes(viz.loss_curve([3.0, 2.0, 1.0]))
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [3.0, 2.0, 1.0])
    ax = only_axes(viz.loss_curve([[3.0, 2.0], [1.5, 1.2, 1.1], [1.0]]))
    curves = [line for line in ax.lines if line.get_label().startswith("level")]
    assert [list(line.get_xdata()) for line in curves] == [[0, 1], [2, 3, 4], [5]]
    boundaries = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"]
    assert boundaries == [1.5, 4.5]
    assert ax.get_xlabel() == "iteration" and "loss" in ax.get_ylabel()


def test_loss_curve_accepts_tensors_histories_and_smoothing():
    class History:
        losses = [4.0, 2.0, 3.0, 1.0]

    ax = only_axes(viz.loss_curve(History(), smooth=2))
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [4.0, 3.0, 2.5, 2.0])
    ax = only_axes(viz.loss_curve(torch.tensor([1.0, 0.5]), log=True))
    assert ax.get_yscale() == "log"


def test_dice_per_label_bars_boxes_and_groups():
    table = torch.tensor([[0.5, 0.7, float("nan")]])
    ax = only_axes(viz.dice_per_label(table, names=["a", "b", "c"]))
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, [0.5, 0.7, np.nan])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    ax = only_axes(viz.dice_per_label(torch.rand(5, 3), names={0: "bg", 1: "x", 2: "y", 3: "z"}))
    assert len(ax.patches) == 0 and len(ax.lines) > 0  # boxes for several pairs
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    before, after = torch.full((4, 2), 0.4), torch.full((4, 2), 0.8)
    ax = only_axes(viz.dice_per_label({"before": before, "after": after}, names=["p", "q"]))
    np.testing.assert_allclose(sorted(p.get_height() for p in ax.patches), [0.4, 0.4, 0.8, 0.8])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["before", "after"]


def test_landscape_marks_the_minimum():
    shifts = [-2, -1, 0, 1, 2]
    values = torch.ones(5, 5)
    values[3, 0] = 0.0  # shift (1, -2)
    ax = viz.landscape(values, shifts).axes[0]
    star = next(line for line in ax.lines if line.get_marker() == "*")
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (-2, 1)


def test_registration_summary_reports_dice_and_folding():
    image = smooth_image((16, 16))
    labels = (image > 0.5).long()
    disp = constant_field((16, 16), axis=0, value=2.0)
    moving = warps.warp(image, -disp)
    moving_labels = warps.warp_labels(labels, -disp)
    warped = warps.warp(moving, disp)
    fig = viz.registration_summary(moving, image, warped, disp, moving_labels, labels)
    before = float(metrics.dice(moving_labels, labels).mean())
    after = float(metrics.dice(warps.warp_labels(moving_labels, disp), labels).mean())
    assert f"mean Dice {before:.3f} → {after:.3f}" in fig._suptitle.get_text()
    assert "folding 0.00%" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert titles[:3] == ["moving", "fixed", "warped"]
    before_ax, after_ax = fig.axes[4], fig.axes[5]
    assert before_ax.images[0].norm.vmax == after_ax.images[0].norm.vmax  # one scale for both


# ---------------------------------------------------------------------------
# live loss plot
# ---------------------------------------------------------------------------


class FakeHandle:
    def __init__(self):
        self.updates = 0

    def update(self, fig):
        assert isinstance(fig, Figure)
        self.updates += 1


def test_live_loss_plot_records_without_showing_outside_jupyter():
    live = viz.LiveLossPlot(min_interval=0.0)
    for level in range(2):
        for iteration in range(3):
            live(level, iteration, torch.tensor(1.0 / (iteration + 1 + level)))
    live.finish()
    assert live.history == [pytest.approx([1.0, 0.5, 1 / 3]), pytest.approx([0.5, 1 / 3, 0.25])]
    assert live.updates == 0
    training = viz.LiveLossPlot()
    training(1, 0.9)
    training(2, 0.8)
    assert training.history == [0.9, 0.8]
    with pytest.raises(TypeError):
        training(0.5)
    assert isinstance(viz.loss_curve(live.history), Figure)


def test_live_loss_plot_updates_in_place_and_throttles(monkeypatch):
    handle = FakeHandle()
    shown = []
    monkeypatch.setattr(plots, "_in_notebook", lambda: True)
    monkeypatch.setattr(plots, "_display_handle", lambda fig: shown.append(fig) or handle)
    live = viz.LiveLossPlot(min_interval=0.0)
    for step in range(4):
        live(step, 1.0 / (step + 1))
    assert len(shown) == 1 and handle.updates == 3  # displayed once, then updated in place
    assert "0.25" in shown[0].axes[0].get_title()
    slow = viz.LiveLossPlot(min_interval=3600.0)
    for step in range(50):
        slow(0, step, float(50 - step))
    assert slow.updates == 1  # the first call draws, the rest wait for the interval
    slow.finish()
    assert slow.updates == 2
    np.testing.assert_array_equal(shown[-1].axes[0].lines[0].get_ydata(), np.arange(50, 0, -1))


def test_live_loss_plot_waits_longer_when_drawing_is_slow(monkeypatch):
    """A redraw slower than ``min_interval`` (a busy machine) must not make every call redraw."""
    handle = FakeHandle()
    monkeypatch.setattr(plots, "_in_notebook", lambda: True)
    monkeypatch.setattr(plots, "_display_handle", lambda fig: handle)
    draw = plots._draw_losses

    def slow_draw(*args):
        time.sleep(0.1)
        draw(*args)

    monkeypatch.setattr(plots, "_draw_losses", slow_draw)
    live = viz.LiveLossPlot(min_interval=0.01)
    for step in range(10):
        live(step, 1.0 / (step + 1))
    assert live.updates <= 2  # the first call draws, then it waits about 4 x 0.1 s
    assert live._wait >= viz.LiveLossPlot.DRAW_SHARE_FACTOR * 0.1
