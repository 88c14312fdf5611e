"""Tests of regedu.classical: per-pair iterative registration.

Small synthetic pairs (2D mostly, one small 3D case per method family) keep the file fast.
Each method must improve the Dice overlap of a pair it can solve; the affine must recover a
known transform; results must follow DESIGN.md's conventions; bad input must raise clearly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import interpolate

from regedu import metrics, warps
from regedu.classical import (
    RegistrationResult,
    bspline_to_disp,
    control_grid_shape,
    demons,
    demons_update,
    gaussian_smooth,
    match_histogram,
    pyramid_shapes,
    register_affine,
    register_bspline,
    register_dense,
)
from regedu.classical.common import affine_on_grid, after_affine
from regedu.data import large_deformation_pair, random_transform, subject_from_disp, synth_image, synth_labels

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA GPU on this machine"))]
FAST = {"levels": 2, "iterations": 40, "progress": False}


# ---------------------------------------------------------------------------
# test pairs
# ---------------------------------------------------------------------------


def make_pair(shape, seed=0, magnitude=2.0, translation=2.0, rotation=4.0):
    """A SynthMorph-like label map and image, and the same through a known smooth transform."""
    labels = synth_labels(shape, num_labels=6, smoothness=max(shape) / 4, seed=seed)
    image = synth_image(labels, blur=1.0, gamma=0.0, bias=0.0, noise=0.0, seed=seed)
    disp = random_transform(shape, rotation=rotation, scale=0.03, shear=0.0, translation=translation,
                            magnitude=magnitude, smoothness=max(shape) / 3, seed=seed + 1)
    fixed = subject_from_disp(image, labels, disp, gamma=0.0, bias=0.0, noise=0.0)
    return {"moving": image, "moving_labels": labels, "fixed": fixed.image, "fixed_labels": fixed.labels,
            "disp": disp}


@pytest.fixture(scope="module")
def pair2d():
    return make_pair((48, 48))


@pytest.fixture(scope="module")
def pair3d():
    return make_pair((24, 24, 24), seed=3)


def mean_dice(a, b):
    return float(torch.nanmean(metrics.dice(a, b)))


def dice_after(result, pair):
    return mean_dice(warps.warp_labels(pair["moving_labels"], result.disp), pair["fixed_labels"])


def dice_before(pair):
    return mean_dice(pair["moving_labels"], pair["fixed_labels"])


def textured_image(shape, seed=0):
    """A smooth random texture inside an ellipse on a zero background, for affine recovery.

    The background stays in view after a small affine, so the true affine is the optimum.
    """
    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 1, *shape)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    for size in (4, 8):
        coarse = torch.rand(1, 1, *([size] * len(shape)), generator=generator)
        image = image + torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True)
    centre = torch.tensor([(n - 1) / 2 for n in shape]).view(-1, *([1] * len(shape)))
    radius = torch.tensor([0.3 * n for n in shape]).view_as(centre)
    inside = (((warps.identity_grid(shape) - centre) / radius).square().sum(0) < 1).float()
    return image * gaussian_smooth(inside[None, None], 1.0)


# ---------------------------------------------------------------------------
# building blocks: B-spline, smoothing, pyramid, affines on grids
# ---------------------------------------------------------------------------


def test_control_grid_shape():
    assert control_grid_shape((33, 40), 8) == (4 + 3, 5 + 3)
    assert control_grid_shape((10, 10, 10), (3, 4.5, 9)) == (6, 5, 4)


@pytest.mark.parametrize("shape", [(23, 30), (11, 14, 9)])
def test_bspline_constant_control_grid_gives_constant_field(shape):
    ndim = len(shape)
    value = torch.tensor([1.5, -2.0, 0.25][:ndim]).view(1, ndim, *([1] * ndim))
    control = value.expand(1, ndim, *control_grid_shape(shape, 4)).clone()
    field = bspline_to_disp(control, 4, shape)
    torch.testing.assert_close(field, value.expand_as(field))


@pytest.mark.parametrize("shape", [(23, 30), (11, 14, 9)])
def test_bspline_linear_control_grid_gives_linear_field(shape):
    """Control point k along axis a sits at (k - 1) * spacing; values linear in position
    give the same linear function at every voxel (cubic B-splines reproduce lines)."""
    ndim, spacing = len(shape), (3, 5, 4)[: len(shape)]
    slope = torch.tensor([[0.3, -0.1, 0.2], [0.05, 0.4, -0.2], [0.1, 0.0, 0.3]])[:ndim, :ndim]
    offset = torch.tensor([1.0, -2.0, 0.5])[:ndim]

    def linear(points):  # points (ndim, *grid) in voxels -> (ndim, *grid)
        return torch.einsum("ij,j...->i...", slope, points) + offset.view(-1, *([1] * ndim))

    counts = control_grid_shape(shape, spacing)
    knots = [(torch.arange(n, dtype=torch.float32) - 1) * s for n, s in zip(counts, spacing, strict=True)]
    control = linear(torch.stack(torch.meshgrid(*knots, indexing="ij")))[None]
    field = bspline_to_disp(control, spacing, shape)
    expected = linear(warps.identity_grid(shape))[None]
    torch.testing.assert_close(field, expected, atol=1e-4, rtol=1e-5)


def test_bspline_matches_scipy_tensor_product_spline():
    shape, spacing = (21, 17), (4, 3)
    counts = control_grid_shape(shape, spacing)
    control = torch.randn(1, 2, *counts, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    field = bspline_to_disp(control, spacing, shape)
    # knots t_j = (j - 3) * s put the centre of basis function k at (k - 1) * s, as in regedu
    knots = tuple(np.array([(j - 3) * s for j in range(n + 4)], dtype=float) for n, s in zip(counts, spacing,
                                                                                            strict=True))
    points = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    for channel in range(2):
        spline = interpolate.NdBSpline(knots, control[0, channel].numpy(), 3)
        np.testing.assert_allclose(field[0, channel].numpy(), spline(points), atol=1e-10)


# the cubic B-spline basis and Gaussian smoothing are tested in test_consolidation.py
# (regedu.bspline, regedu.filters)


def test_pyramid_shapes_keep_the_corners_and_refuse_tiny_levels():
    assert pyramid_shapes((96, 112, 96), 3) == [(25, 29, 25), (49, 57, 49), (96, 112, 96)]
    assert pyramid_shapes((33, 17), 1) == [(33, 17)]
    with pytest.raises(ValueError, match="fewer levels"):
        pyramid_shapes((32, 32), 4)


@pytest.mark.parametrize("ndim", [2, 3])
def test_affine_on_grid_maps_the_same_points(ndim):
    shape, coarse = (33, 41, 25)[:ndim], (17, 21, 13)[:ndim]
    A = random_transform_affine(shape, ndim)
    A_coarse = affine_on_grid(A, shape, coarse)
    scale = torch.tensor([(m - 1) / (n - 1) for n, m in zip(shape, coarse, strict=True)])
    x = torch.rand(ndim, 5) * torch.tensor(shape).view(-1, 1)
    y = A[0, :, :ndim] @ x + A[0, :, ndim:]
    y_coarse = A_coarse[0, :, :ndim] @ (scale.view(-1, 1) * x) + A_coarse[0, :, ndim:]
    torch.testing.assert_close(y_coarse, scale.view(-1, 1) * y)


def random_transform_affine(shape, ndim):
    angles = [0.2] if ndim == 2 else [0.1, -0.2, 0.15]
    return warps.compose_affine(warps.translation([1.5, -2.0, 0.5][:ndim]),
                                warps.compose_affine(warps.rotation(angles, shape),
                                                     warps.scaling([1.1, 0.9, 1.05][:ndim], shape)))


@pytest.mark.parametrize("ndim", [2, 3])
def test_after_affine_equals_compose_inside_the_image(ndim):
    shape = (24, 28, 20)[:ndim]
    A = random_transform_affine(shape, ndim)
    disp = 0.5 * torch.randn(1, ndim, *shape, generator=torch.Generator().manual_seed(2))
    exact = after_affine(disp, A)
    interpolated = warps.compose(warps.affine_to_disp(A, shape), disp)
    inside = (slice(None), slice(None)) + (slice(6, -6),) * ndim  # both stay inside the grid there
    torch.testing.assert_close(exact[inside], interpolated[inside], atol=1e-4, rtol=1e-4)


def test_demons_update_is_bounded_and_points_downhill():
    fixed = torch.linspace(0, 1, 32).view(1, 1, 32, 1).expand(1, 1, 32, 8).contiguous()
    warped = torch.roll(fixed, 2, dims=2)
    update = demons_update(fixed, warped, max_step=0.5)
    assert float(update.norm(dim=1).max()) <= 0.5 + 1e-6
    # warped(x) = fixed(x - 2) is darker, so sampling further along axis 0 (increasing) helps
    assert float(update[0, 0, 5:-5].mean()) > 0
    torch.testing.assert_close(update[:, 1], torch.zeros_like(update[:, 1]))


def test_match_histogram_takes_the_reference_values_in_the_image_order():
    generator = torch.Generator().manual_seed(4)
    image = torch.rand(2, 1, 9, 11, generator=generator)
    reference = torch.rand(2, 1, 9, 11, generator=generator) ** 3
    matched = match_histogram(image, reference)
    torch.testing.assert_close(matched.flatten(1).sort(dim=1).values, reference.flatten(1).sort(dim=1).values)
    assert torch.equal(matched.flatten(1).argsort(dim=1), image.flatten(1).argsort(dim=1))


# ---------------------------------------------------------------------------
# affine registration recovers a known affine
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
def test_register_affine_recovers_a_known_affine(ndim):
    shape = (48, 56) if ndim == 2 else (28, 32, 24)
    angles = [0.12] if ndim == 2 else [0.08, -0.06, 0.1]
    true = warps.compose_affine(
        warps.translation([2.5, -1.5, 1.0][:ndim]),
        warps.compose_affine(warps.rotation(angles, shape), warps.scaling([1.06, 0.95, 1.03][:ndim], shape)))
    fixed = textured_image(shape, seed=ndim)
    # moving(A(x)) = fixed(x): moving is fixed pulled through the inverse affine
    homogeneous = torch.cat([true[0], torch.eye(ndim + 1)[-1:]])
    inverse = torch.linalg.inv(homogeneous)[:ndim][None]
    moving = warps.warp(fixed, warps.affine_to_disp(inverse, shape), padding="zeros")
    result = register_affine(moving, fixed, similarity="mse", levels=2, iterations=(60, 40), progress=False)
    error = (result.disp - warps.affine_to_disp(true, shape)).norm(dim=1)
    inside = (slice(None),) + (slice(4, -4),) * ndim
    assert float(error[inside].mean()) < 0.25, result.affine
    torch.testing.assert_close(result.affine[0, :, :ndim], true[0, :, :ndim], atol=0.02, rtol=0)


def test_rigid_keeps_an_orthonormal_matrix(pair2d):
    result = register_affine(pair2d["moving"], pair2d["fixed"], transform="rigid", **FAST)
    M = result.affine[0, :, :2]
    torch.testing.assert_close(M @ M.T, torch.eye(2), atol=1e-5, rtol=0)
    assert set(result.parameters) == {"angles", "translation"}


def test_centre_of_mass_initialisation_finds_a_pure_shift():
    fixed = torch.zeros(1, 1, 40, 40)
    fixed[..., 10:20, 12:22] = 1
    moving = torch.roll(fixed, shifts=(7, -5), dims=(2, 3))
    result = register_affine(moving, fixed, transform="rigid", iterations=1, levels=1, lr=1e-6,
                             progress=False)
    torch.testing.assert_close(result.affine[0, :, 2], torch.tensor([7.0, -5.0]), atol=1e-3, rtol=0)


# ---------------------------------------------------------------------------
# every method improves Dice, and its result follows the conventions
# ---------------------------------------------------------------------------

METHODS_2D = {
    "affine": lambda m, f, **kw: register_affine(m, f, **kw),
    "dense": lambda m, f, **kw: register_dense(m, f, **kw),
    "svf": lambda m, f, **kw: register_dense(m, f, diffeomorphic=True, **kw),
    "bspline": lambda m, f, **kw: register_bspline(m, f, control_spacing=6, **kw),
    "demons": lambda m, f, **kw: demons(m, f, **kw),
    "diffeomorphic_demons": lambda m, f, **kw: demons(m, f, diffeomorphic=True, **kw),
}


@pytest.mark.parametrize("name", list(METHODS_2D))
def test_each_method_improves_dice_2d(name, pair2d):
    result = METHODS_2D[name](pair2d["moving"], pair2d["fixed"], **FAST)
    assert isinstance(result, RegistrationResult)
    before, after = dice_before(pair2d), dice_after(result, pair2d)
    assert after > before + 0.1, (before, after)
    # convention: the result's disp reproduces its warped image
    torch.testing.assert_close(warps.warp(pair2d["moving"], result.disp), result.warped)
    assert len(result.history) == FAST["levels"] and all(len(h) == 40 for h in result.history)
    assert result.seconds > 0


@pytest.mark.parametrize("name", ["svf", "bspline", "demons"])
def test_methods_improve_dice_3d(name, pair3d):
    result = METHODS_2D[name](pair3d["moving"], pair3d["fixed"], levels=2, iterations=20, progress=False)
    assert dice_after(result, pair3d) > dice_before(pair3d) + 0.05


@pytest.mark.parametrize("name", ["dense", "bspline", "demons"])
def test_starting_from_an_affine_includes_it_in_disp(name, pair2d):
    first = register_affine(pair2d["moving"], pair2d["fixed"], **FAST)
    result = METHODS_2D[name](pair2d["moving"], pair2d["fixed"], affine=first.affine, **FAST)
    torch.testing.assert_close(result.affine, first.affine)
    torch.testing.assert_close(warps.warp(pair2d["moving"], result.disp), result.warped)
    assert dice_after(result, pair2d) > dice_after(first, pair2d)


@pytest.mark.parametrize("name", ["svf", "diffeomorphic_demons"])
def test_diffeomorphic_variants_do_not_fold_on_a_large_deformation(name):
    toy = large_deformation_pair((48, 48), kind="large_warp", magnitude=8.0)
    result = METHODS_2D[name](toy["moving"], toy["fixed"], levels=3, iterations=60, progress=False)
    dice = mean_dice(warps.warp_labels(toy["moving_labels"], result.disp), toy["fixed_labels"])
    assert dice > mean_dice(toy["moving_labels"], toy["fixed_labels"]) + 0.1
    assert float(metrics.min_jacobian(result.disp)) > 0


def test_similarity_choices_all_run(pair2d):
    for similarity in ("mse", "ncc", "mi", "global_ncc", "ngf"):
        result = register_dense(pair2d["moving"], pair2d["fixed"], similarity=similarity, levels=1,
                                iterations=3, progress=False)
        assert math.isfinite(result.final_loss)
    custom = register_dense(pair2d["moving"], pair2d["fixed"], similarity=lambda f, w: (f - w).abs().mean(),
                            regulariser="bending", levels=1, iterations=3, progress=False)
    assert custom.final_loss > 0


# ---------------------------------------------------------------------------
# batches, callbacks, devices, dtypes
# ---------------------------------------------------------------------------


def test_a_batch_registers_each_pair_like_one_at_a_time(pair2d):
    other = make_pair((48, 48), seed=7)
    moving = torch.cat([pair2d["moving"], other["moving"]])
    fixed = torch.cat([pair2d["fixed"], other["fixed"]])
    both = demons(moving, fixed, **FAST)
    alone = demons(other["moving"], other["fixed"], **FAST)
    torch.testing.assert_close(both.disp[1:], alone.disp, atol=1e-4, rtol=1e-4)
    batched = register_dense(moving, fixed, **FAST)
    assert batched.disp.shape == (2, 2, 48, 48)
    dice = metrics.dice(warps.warp_labels(torch.cat([pair2d["moving_labels"], other["moving_labels"]]),
                                          batched.disp),
                        torch.cat([pair2d["fixed_labels"], other["fixed_labels"]]))
    before = metrics.dice(torch.cat([pair2d["moving_labels"], other["moving_labels"]]),
                          torch.cat([pair2d["fixed_labels"], other["fixed_labels"]]))
    assert bool((torch.nanmean(dice, 1) > torch.nanmean(before, 1)).all())


def test_one_fixed_image_for_a_batch_of_moving_images(pair2d):
    moving = torch.cat([pair2d["moving"], pair2d["moving"].flip(-1)])
    result = register_dense(moving, pair2d["fixed"], levels=1, iterations=2, progress=False)
    assert result.disp.shape[0] == 2 and result.warped.shape == moving.shape


def test_callback_sees_every_iteration(pair2d):
    calls = []
    result = register_bspline(pair2d["moving"], pair2d["fixed"], levels=2, iterations=(3, 5), progress=False,
                              callback=lambda level, iteration, loss: calls.append((level, iteration, loss)))
    assert [(level, iteration) for level, iteration, _ in calls] == \
        [(0, i) for i in range(3)] + [(1, i) for i in range(5)]
    assert [loss for *_, loss in calls] == result.history[0] + result.history[1]


def test_progress_bar_options(pair2d, capsys):
    register_affine(pair2d["moving"], pair2d["fixed"], levels=1, iterations=2, progress=True)
    assert "affine" in capsys.readouterr().err
    with pytest.raises(ValueError, match="progress"):
        register_affine(pair2d["moving"], pair2d["fixed"], levels=1, iterations=2, progress="yes")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["affine", "svf", "bspline", "diffeomorphic_demons"])
def test_results_follow_the_device_and_dtype(device, name, pair2d):
    moving, fixed = pair2d["moving"].double(), pair2d["fixed"].double()
    result = METHODS_2D[name](moving, fixed, levels=1, iterations=2, progress=False, device=device)
    for tensor in (result.warped, result.disp):
        assert tensor.device.type == device and tensor.dtype == torch.float64


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("function", [register_affine, register_dense, register_bspline, demons])
def test_bad_images_raise_clear_errors(function):
    image = torch.rand(1, 1, 32, 32)
    with pytest.raises(ValueError, match="Resample one onto the other"):
        function(image, torch.rand(1, 1, 32, 30))
    with pytest.raises(ValueError, match="Do not mix 2D and 3D"):
        function(image, torch.rand(1, 1, 32, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        function(image, torch.where(image > 0.5, torch.nan, image))
    with pytest.raises(ValueError, match="same value .* at every voxel"):
        function(image, torch.zeros_like(image))
    with pytest.raises(TypeError, match="floating-point"):
        function(image, (image * 10).long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        function(image.numpy(), image)
    with pytest.raises(ValueError, match="batch size"):
        function(torch.rand(2, 1, 32, 32), torch.rand(3, 1, 32, 32))


@pytest.mark.parametrize("options, message", [
    ({"iterations": 0}, "iterations"),
    ({"iterations": -5}, "iterations"),
    ({"iterations": 2.5}, "iterations"),
    ({"levels": 3, "iterations": [10, 10]}, r"one int or a list of 3 ints \(one per pyramid level"),
    ({"iterations": [0, 0, 0]}, "at least one iteration"),
    ({"levels": 0}, "levels"),
    ({"levels": 5, "iterations": 10}, "fewer levels"),
    ({"weight": -1.0}, "weight"),
    ({"weight": float("nan")}, "weight"),
    ({"lr": 0.0}, "lr"),
    ({"similarity": "cosine"}, "similarity"),
    ({"regulariser": "tv"}, "regulariser"),
    ({"affine": torch.eye(3)}, r"\(B, 2, 3\)"),
])
def test_options_that_make_no_sense_raise(options, message, pair2d):
    with pytest.raises(ValueError, match=message):
        register_dense(pair2d["moving"][..., :32, :32], pair2d["fixed"][..., :32, :32], progress=False,
                       **options)


def test_other_bad_options_raise(pair2d):
    moving, fixed = pair2d["moving"], pair2d["fixed"]
    with pytest.raises(ValueError, match="transform"):
        register_affine(moving, fixed, transform="similarity")
    with pytest.raises(ValueError, match="control_spacing"):
        register_bspline(moving, fixed, control_spacing=0)
    with pytest.raises(ValueError, match="max_step"):
        demons(moving, fixed, max_step=0)
    with pytest.raises(ValueError, match="one-channel"):
        demons(moving.expand(1, 2, 48, 48), fixed.expand(1, 2, 48, 48))
    with pytest.raises(ValueError, match="control points"):
        bspline_to_disp(torch.zeros(1, 2, 5, 5), 4, (32, 32))
    with pytest.raises(ValueError, match="`affine` has batch size 3"):
        register_dense(moving.expand(2, 1, 48, 48), fixed, affine=torch.eye(2, 3).expand(3, 2, 3))


def test_a_diverging_run_stops_and_names_the_learning_rate(pair2d):
    with pytest.raises(FloatingPointError, match="learning rate lr=1e\\+30 is probably too large"):
        register_dense(pair2d["moving"], pair2d["fixed"], lr=1e30, levels=1, iterations=5, progress=False)
    fixed = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(FloatingPointError, match="displacement field became NaN .* learning rate lr=1000"):
        register_affine(torch.roll(fixed, 2, -1), fixed, lr=1e3, levels=1, iterations=5, progress=False)
