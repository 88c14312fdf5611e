"""Oracle tests for regedu.warps: every function against an analytic or independent answer."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch

from regedu import warps as W

SHAPES = {2: (17, 20), 3: (9, 11, 10)}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request):
    return request.param


def smooth_field(shape, magnitude, seed=0, batch=1, dtype=torch.float32, tapered=False):
    """A smooth random displacement (B, ndim, *shape): coarse noise upsampled, test-local helper.

    ``tapered`` multiplies by a bump that vanishes on the border, so that flows never leave the image
    and border padding plays no part.
    """
    g = torch.Generator().manual_seed(seed)
    ndim = len(shape)
    coarse = torch.randn(batch, ndim, *([4] * ndim), generator=g, dtype=dtype)
    mode = "bilinear" if ndim == 2 else "trilinear"
    field = torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True)
    if tapered:
        for axis, n in enumerate(shape):
            bump = torch.sin(torch.linspace(0, math.pi, n, dtype=dtype))
            field = field * bump.view(*([1] * (2 + axis)), n, *([1] * (ndim - axis - 1)))
    return field * magnitude


def smooth_image(shape, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ndim = len(shape)
    coarse = torch.rand(1, 1, *([5] * ndim), generator=g, dtype=dtype)
    mode = "bilinear" if ndim == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True)


def interior(x, margin):
    """Crop `margin` voxels from every spatial border of (B, C, *spatial)."""
    index = (slice(None), slice(None)) + tuple(slice(margin, n - margin) for n in x.shape[2:])
    return x[index]


# --------------------------------------------------------------------------- grids


def test_identity_grid_holds_voxel_indices(ndim):
    shape = SHAPES[ndim]
    grid = W.identity_grid(shape)
    assert grid.shape == (ndim, *shape)
    for k in range(ndim):
        index = [0] * ndim
        index[k] = 5
        assert grid[(k, *index)] == 5
        assert grid[(k,) + (0,) * ndim] == 0


def test_grid_sample_conversion_round_trip(ndim):
    disp = smooth_field(SHAPES[ndim], 3.0, batch=2)
    grid = W.disp_to_grid(disp)
    assert grid.shape == (2, *SHAPES[ndim], ndim)
    torch.testing.assert_close(W.grid_to_disp(grid), disp, atol=1e-5, rtol=0)


def test_grid_sample_conversion_matches_formula():
    # voxel (i, j) displaced by (di, dj) -> grid_sample (x, y) = (2(j+dj)/(W-1) - 1, 2(i+di)/(H-1) - 1)
    disp = torch.zeros(1, 2, 5, 9)
    disp[0, 0, 2, 3], disp[0, 1, 2, 3] = 1.0, -2.0
    grid = W.disp_to_grid(disp)
    torch.testing.assert_close(grid[0, 2, 3], torch.tensor([2 * 1 / 8 - 1, 2 * 3 / 4 - 1]))


# --------------------------------------------------------------------------- warp


def test_zero_field_is_identity(ndim):
    image = torch.rand(2, 3, *SHAPES[ndim])
    out = W.warp(image, torch.zeros(2, ndim, *SHAPES[ndim]))
    torch.testing.assert_close(out, image, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shift", [2, -3])
def test_integer_shift_matches_slicing_on_each_axis(ndim, shift):
    """The channel-order test: channel k must move along tensor axis k."""
    shape = SHAPES[ndim]
    image = torch.rand(1, 1, *shape)
    for axis in range(ndim):
        disp = torch.zeros(1, ndim, *shape)
        disp[:, axis] = shift
        out = W.warp(image, disp)
        n = shape[axis]
        src = slice(shift, n) if shift > 0 else slice(0, n + shift)
        dst = slice(0, n - shift) if shift > 0 else slice(-shift, n)
        out_index = [slice(None)] * (ndim + 2)
        img_index = [slice(None)] * (ndim + 2)
        out_index[2 + axis], img_index[2 + axis] = dst, src
        torch.testing.assert_close(out[tuple(out_index)], image[tuple(img_index)], atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_matches_rot90_2d():
    image = torch.rand(1, 1, 13, 13)
    disp = W.affine_to_disp(W.rotation(math.pi / 2, (13, 13)), (13, 13))
    # pulling with a +90 degree rotation shows the image rotated by -90 degrees
    expected = torch.rot90(image, k=-1, dims=(2, 3))
    torch.testing.assert_close(W.warp(image, disp), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("plane_index, dims", [(0, (3, 4)), (1, (2, 4)), (2, (2, 3))])
def test_rotation_by_90_degrees_matches_rot90_3d(plane_index, dims):
    image = torch.rand(1, 1, 9, 9, 9)
    angles = [0.0, 0.0, 0.0]
    angles[plane_index] = math.pi / 2
    disp = W.affine_to_disp(W.rotation(angles, (9, 9, 9)), (9, 9, 9))
    expected = torch.rot90(image, k=-1, dims=dims)
    torch.testing.assert_close(W.warp(image, disp), expected, atol=1e-4, rtol=0)


def test_bilinear_matches_scipy_map_coordinates(ndim):
    shape = SHAPES[ndim]
    image = torch.rand(1, 1, *shape, dtype=torch.float64)
    disp = smooth_field(shape, 4.0, seed=3, dtype=torch.float64)
    out = W.warp(image, disp, mode="bilinear", padding="border")
    coords = (W.identity_grid(shape, dtype=torch.float64) + disp[0]).numpy()
    expected = scipy.ndimage.map_coordinates(image[0, 0].numpy(), coords, order=1, mode="nearest")
    np.testing.assert_allclose(out[0, 0].numpy(), expected, atol=1e-10)


def test_nearest_mode_returns_input_values(ndim):
    image = torch.rand(1, 1, *SHAPES[ndim])
    out = W.warp(image, smooth_field(SHAPES[ndim], 3.0), mode="nearest")
    assert torch.isin(out, image).all()


def test_zeros_padding_outside(ndim):
    image = torch.ones(1, 1, *SHAPES[ndim])
    disp = torch.full((1, ndim, *SHAPES[ndim]), 100.0)
    assert W.warp(image, disp, padding="zeros").abs().max() == 0
    assert torch.allclose(W.warp(image, disp, padding="border"), image)


def test_batch_of_one_field_broadcasts(ndim):
    image = torch.rand(3, 2, *SHAPES[ndim])
    disp = smooth_field(SHAPES[ndim], 2.0)
    out = W.warp(image, disp)
    assert out.shape == image.shape
    torch.testing.assert_close(out[2:3], W.warp(image[2:3], disp))


def test_warp_follows_dtype(ndim):
    image = torch.rand(1, 1, *SHAPES[ndim], dtype=torch.float64)
    assert W.warp(image, torch.zeros(1, ndim, *SHAPES[ndim], dtype=torch.float64)).dtype == torch.float64


def test_warp_gradcheck(ndim):
    shape = (5, 6) if ndim == 2 else (4, 5, 4)
    image = torch.rand(1, 1, *shape, dtype=torch.float64, requires_grad=True)
    # off-grid sampling points: grid_sample is not differentiable exactly on voxel centres
    disp = (0.3 + 0.4 * torch.rand(1, ndim, *shape, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda i, d: W.warp(i, d, padding="zeros"), (image, disp))


# --------------------------------------------------------------------------- labels


def test_warp_labels_integer_shift(ndim):
    shape = SHAPES[ndim]
    labels = torch.randint(0, 5, (1, 1, *shape))
    disp = torch.zeros(1, ndim, *shape)
    disp[:, -1] = 2
    for method in ("nearest", "onehot"):
        out = W.warp_labels(labels, disp, method=method)
        assert out.dtype == labels.dtype
        torch.testing.assert_close(out[..., :-2], labels[..., 2:])


def test_warp_labels_keeps_label_values(ndim):
    labels = torch.randint(0, 3, (2, 1, *SHAPES[ndim])) * 7
    for method in ("nearest", "onehot"):
        out = W.warp_labels(labels, smooth_field(SHAPES[ndim], 2.5), method=method)
        assert set(out.unique().tolist()) <= {0, 7, 14}


def test_onehot_label_warp_is_smoother_than_nearest():
    # a disk magnified by 2.5: nearest-neighbour gives a staircase boundary, one-hot a rounder one
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    disk = (((yy - 19.5) ** 2 + (xx - 19.5) ** 2) < 8**2).long()[None, None]
    disp = W.affine_to_disp(W.scaling(0.4, (40, 40)), (40, 40))
    exact = ((((yy - 19.5) * 0.4) ** 2 + ((xx - 19.5) * 0.4) ** 2) < 8**2).long()[None, None]
    err_nearest = (W.warp_labels(disk, disp) != exact).sum()
    err_onehot = (W.warp_labels(disk, disp, method="onehot") != exact).sum()
    assert err_onehot < err_nearest


# --------------------------------------------------------------------------- compose and integrate


def test_compose_matches_sequential_warps(ndim):
    shape = (48, 48) if ndim == 2 else (32, 32, 32)
    image = smooth_image(shape)
    u = smooth_field(shape, 3.0, seed=4, tapered=True)
    v = smooth_field(shape, 3.0, seed=5, tapered=True)
    twice = W.warp(W.warp(image, u), v)
    error = (W.warp(image, W.compose(u, v)) - twice).abs().mean()
    error_other_order = (W.warp(image, W.compose(v, u)) - twice).abs().mean()
    assert error < 1e-3  # interpolation error only
    assert error < error_other_order / 4  # and the order of composition matters


def test_compose_of_affines_matches_compose_affine(ndim):
    shape = SHAPES[ndim]
    A = W.compose_affine(W.rotation([0.2] * (1 if ndim == 2 else 3), shape), W.scaling(1.1, shape))
    B = W.translation([1.0] * ndim)
    field = W.compose(W.affine_to_disp(A, shape), W.affine_to_disp(B, shape))
    expected = W.affine_to_disp(W.compose_affine(A, B), shape)
    torch.testing.assert_close(interior(field, 2), interior(expected, 2), atol=1e-4, rtol=0)


def linear_velocity(L, shape):
    """Velocity v(x) = L (x - c) about the centre c, and the exact displacement of exp(v)."""
    ndim = len(shape)
    centre = torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64).view(ndim, *([1] * ndim))
    x = W.identity_grid(shape, dtype=torch.float64) - centre
    velocity = torch.einsum("ij,j...->i...", L, x)
    flow = torch.from_numpy(scipy.linalg.expm(L.numpy())) - torch.eye(ndim, dtype=torch.float64)
    exact = torch.einsum("ij,j...->i...", flow, x)
    return velocity[None], exact[None]


def test_integrating_a_linear_velocity_matches_matrix_exponential(ndim):
    shape = (33, 33) if ndim == 2 else (21, 21, 21)
    g = torch.Generator().manual_seed(7)
    L = 0.15 * torch.randn(ndim, ndim, generator=g, dtype=torch.float64)
    velocity, exact = linear_velocity(L, shape)
    disp = W.integrate(velocity, steps=10)
    # only where the whole flow stays inside the image (border padding is not linear)
    margin = shape[0] // 4
    torch.testing.assert_close(interior(disp, margin), interior(exact, margin), atol=2e-3, rtol=0)


def test_integrate_v_then_minus_v_is_identity(ndim):
    shape = (48, 48) if ndim == 2 else (32, 32, 32)
    v = smooth_field(shape, 3.0, seed=8, dtype=torch.float64, tapered=True)  # up to ~8 voxels
    round_trip = W.compose(W.integrate(v), W.integrate(-v))
    assert round_trip.abs().mean() < 0.01
    assert round_trip.abs().max() < 0.1 * v.abs().max()


def test_integrate_zero_steps_returns_velocity(ndim):
    v = smooth_field(SHAPES[ndim], 1.0)
    torch.testing.assert_close(W.integrate(v, steps=0), v)


def test_integrated_field_does_not_fold(ndim):
    shape = (32, 32) if ndim == 2 else (24, 24, 24)
    v = smooth_field(shape, 6.0 if ndim == 2 else 4.0, seed=9, tapered=True)
    assert (W.jacobian_det(v) <= 0).any()  # used directly as a displacement, v folds
    assert W.jacobian_det(W.integrate(v)).min() > 0  # its exponential does not


# --------------------------------------------------------------------------- affine


def test_affine_identity_gives_zero_field(ndim):
    disp = W.affine_to_disp(W.affine_identity(ndim, batch=2), SHAPES[ndim])
    assert disp.shape == (2, ndim, *SHAPES[ndim])
    assert disp.abs().max() == 0


def test_translation_gives_constant_field(ndim):
    offsets = torch.arange(1.0, ndim + 1)
    disp = W.affine_to_disp(W.translation(offsets), SHAPES[ndim])
    for k in range(ndim):
        assert torch.all(disp[0, k] == offsets[k])


def test_builders_fix_the_image_centre(ndim):
    shape = SHAPES[ndim]
    n_angles = 1 if ndim == 2 else 3
    centre = torch.tensor([(n - 1) / 2 for n in shape])
    for A in (W.rotation([0.3] * n_angles, shape), W.scaling([1.2] * ndim, shape),
              W.shear([0.1] * n_angles, shape)):
        mapped = A[0, :, :ndim] @ centre + A[0, :, ndim]
        torch.testing.assert_close(mapped, centre)


def test_builders_accept_a_batch():
    A = W.rotation(torch.tensor([[0.1], [0.2], [0.3]]), (10, 10))
    assert A.shape == (3, 2, 3)


# --------------------------------------------------------------------------- resize and Jacobian


def test_resize_disp_rescales_values(ndim):
    disp = torch.full((1, ndim, *([9] * ndim)), 2.0)
    resized = W.resize_disp(disp, [17] * ndim)
    assert resized.shape == (1, ndim, *([17] * ndim))
    torch.testing.assert_close(resized, torch.full_like(resized, 4.0))


def test_resize_disp_of_affine_field_is_the_same_transform(ndim):
    small, large = [9] * ndim, [17] * ndim
    A_small = W.compose_affine(W.rotation([0.2] * (1 if ndim == 2 else 3), small), W.scaling(1.1, small))
    # the same physical map on the finer grid has the same linear part about the (shared) centre
    A_large = torch.cat([A_small[:, :, :ndim], torch.zeros(1, ndim, 1)], dim=-1)
    to_centre, from_centre = W.translation([-8.0] * ndim), W.translation([8.0] * ndim)
    A_large = W.compose_affine(from_centre, W.compose_affine(A_large, to_centre))
    torch.testing.assert_close(W.resize_disp(W.affine_to_disp(A_small, small), large),
                               W.affine_to_disp(A_large, large), atol=1e-4, rtol=0)


def test_jacobian_of_affine_field_is_det_A(ndim):
    shape = SHAPES[ndim]
    A = W.compose_affine(W.rotation([0.4] * (1 if ndim == 2 else 3), shape),
                         W.compose_affine(W.scaling(torch.linspace(0.8, 1.3, ndim), shape),
                                          W.shear([0.2] * (1 if ndim == 2 else 3), shape)))
    det = W.jacobian_det(W.affine_to_disp(A, shape))
    assert det.shape == (1, *shape)
    torch.testing.assert_close(det, torch.full_like(det, float(torch.linalg.det(A[0, :, :ndim]))),
                               atol=1e-4, rtol=0)


def test_jacobian_matches_numpy_gradient_reference(ndim):
    shape = SHAPES[ndim]
    disp = smooth_field(shape, 3.0, seed=11, dtype=torch.float64) + torch.rand(1, ndim, *shape,
                                                                                dtype=torch.float64)
    u = disp[0].numpy()
    J = np.empty((ndim, ndim, *shape))
    for i in range(ndim):
        grads = np.gradient(u[i])
        for j in range(ndim):
            J[i, j] = grads[j] + (i == j)
    expected = np.linalg.det(np.moveaxis(J, (0, 1), (-2, -1)))
    np.testing.assert_allclose(W.jacobian_det(disp)[0].numpy(), expected, atol=1e-10)


def test_disp_to_mm_scales_each_axis(ndim):
    disp = torch.ones(1, ndim, *SHAPES[ndim])
    mm = W.disp_to_mm(disp, [1.0, 2.0, 3.0][:ndim])
    for k in range(ndim):
        assert torch.all(mm[0, k] == k + 1)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    image2, disp2 = torch.rand(1, 1, 8, 8), torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*x\[None, None\]"):
        W.warp(torch.rand(8, 8), disp2)
    with pytest.raises(ValueError, match="one channel per spatial axis"):
        W.warp(image2, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="must be 2D"):
        W.warp(image2, torch.zeros(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="resize_disp"):
        W.warp(image2, torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError, match="NaN"):
        W.warp(image2, disp2.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        W.warp(torch.full((1, 1, 8, 8), float("inf")), disp2)
    with pytest.raises(TypeError, match="torch.Tensor.*torch.as_tensor"):
        W.warp(np.zeros((1, 1, 8, 8)), disp2)
    with pytest.raises(TypeError, match="floating-point"):
        W.warp(torch.ones(1, 1, 8, 8, dtype=torch.long), disp2)
    with pytest.raises(ValueError, match="batch size"):
        W.warp(torch.rand(2, 1, 8, 8), torch.zeros(3, 2, 8, 8))
    with pytest.raises(ValueError, match="mode"):
        W.warp(image2, disp2, mode="cubic")
    with pytest.raises(ValueError, match="steps"):
        W.integrate(disp2, steps=-1)
    with pytest.raises(ValueError, match=r"\(B, ndim, ndim \+ 1\)"):
        W.affine_to_disp(torch.eye(2, 3), (8, 8))
    with pytest.raises(ValueError, match="one channel"):
        W.warp_labels(torch.zeros(1, 2, 8, 8, dtype=torch.long), disp2)


# ---------------------------------------------------------------------------
# sample: reading an image at positions of its own grid, for any output grid
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(9, 12), (7, 8, 6)], ids=["2d", "3d"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", ["border", "zeros", "reflection"])
def test_sample_at_identity_plus_disp_is_warp(shape, mode, padding):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, *shape, generator=g, dtype=torch.float64)
    disp = (torch.rand(1, len(shape), *shape, generator=g, dtype=torch.float64) * 2 - 1) * 3
    points = W.identity_grid(shape, dtype=torch.float64)[None] + disp
    torch.testing.assert_close(W.sample(image, points, mode=mode, padding=padding),
                               W.warp(image, disp, mode=mode, padding=padding))


def test_sample_reads_another_grid_exactly():
    """An image linear in the voxel indices is read exactly anywhere inside by bilinear sampling,
    whatever the output grid's shape; nearest sampling copies voxels and keeps integer labels."""
    i, j = torch.meshgrid(torch.arange(10.0, dtype=torch.float64), torch.arange(14.0, dtype=torch.float64),
                          indexing="ij")
    image = (2.0 * i - 0.5 * j + 3.0)[None, None]
    g = torch.Generator().manual_seed(1)
    points = torch.stack([torch.rand(5, 17, generator=g, dtype=torch.float64) * 9,
                          torch.rand(5, 17, generator=g, dtype=torch.float64) * 13])[None]
    out = W.sample(image, points)
    assert out.shape == (1, 1, 5, 17)
    torch.testing.assert_close(out[0, 0], 2.0 * points[0, 0] - 0.5 * points[0, 1] + 3.0)
    labels = (i * 14 + j).long()[None, None]
    nearest = W.sample(labels, points, mode="nearest")
    assert nearest.dtype == torch.long
    expected = (torch.floor(points[0, 0] + 0.5) * 14 + torch.floor(points[0, 1] + 0.5)).long()
    assert torch.equal(nearest[0, 0], expected)


def test_sample_padding_and_errors():
    image = torch.ones(1, 1, 4, 5)
    points = torch.full((1, 2, 3, 3), -3.0)
    assert float(W.sample(image, points, padding="zeros").abs().max()) == 0.0
    assert float(W.sample(image, points, padding="border").min()) == 1.0
    with pytest.raises(ValueError, match="channel"):
        W.sample(image, torch.zeros(1, 3, 3, 3))
    with pytest.raises(ValueError, match="NaN|finite"):
        W.sample(image, torch.full((1, 2, 3, 3), float("nan")))
    with pytest.raises(TypeError, match="floating"):
        W.sample(image.long(), torch.zeros(1, 2, 3, 3))  # integer images only with mode="nearest"
