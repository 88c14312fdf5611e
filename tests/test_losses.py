"""Oracle tests for regedu.losses: analytic answers, numpy references and the multimodal properties."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from regedu import losses as L

SHAPES = {2: (24, 28), 3: (12, 14, 16)}
TINY = {2: (5, 6), 3: (4, 5, 3)}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request):
    return request.param


def textured_image(shape, seed=0, smoothing=1.0, batch=1, dtype=torch.float64):
    """Gaussian-smoothed noise rescaled to [0, 1]: (batch, 1, *shape), test-local helper."""
    rng = np.random.default_rng(seed)
    images = [scipy.ndimage.gaussian_filter(rng.random(shape), smoothing, mode="wrap") for _ in range(batch)]
    stack = np.stack(images)[:, None]
    stack = (stack - stack.min()) / (stack.max() - stack.min())
    return torch.as_tensor(stack, dtype=dtype)


def crop(x, start, size):
    """Spatial crop of (B, C, *spatial): the same `size` box starting at `start` on every axis."""
    return x[(slice(None), slice(None)) + tuple(slice(start, start + n) for n in size)]


def coordinates(shape, dtype=torch.float64):
    """Voxel-index coordinates (ndim, *shape), built independently of regedu.warps."""
    axes = [torch.arange(n, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


# --------------------------------------------------------------------------- mse


def test_mse_zero_for_identical_and_matches_numpy(ndim):
    a = textured_image(SHAPES[ndim], seed=0, batch=2)
    b = textured_image(SHAPES[ndim], seed=1, batch=2)
    assert L.mse(a, a).item() == 0.0
    assert L.mse(a, b).item() == pytest.approx(np.mean((a.numpy() - b.numpy()) ** 2), rel=1e-12)


def test_mse_broadcasts_a_batch_of_one():
    a = textured_image(SHAPES[2], seed=0, batch=1)
    b = textured_image(SHAPES[2], seed=1, batch=3)
    assert L.mse(a, b).item() == pytest.approx(L.mse(a.expand(3, -1, -1, -1), b).item(), rel=1e-12)


# --------------------------------------------------------------------------- ncc


def ncc_reference(fixed, warped, window, eps):
    """Brute force local NCC: standardise each image, then two-pass statistics of every (clipped) window."""
    standardise = lambda x: (x - x.mean()) / np.sqrt(x.var() + 1e-12)  # noqa: E731
    fixed, warped = standardise(np.asarray(fixed, np.float64)), standardise(np.asarray(warped, np.float64))
    values = []
    for index in np.ndindex(fixed.shape):
        box = tuple(slice(max(0, i - w // 2), i + w // 2 + 1) for i, w in zip(index, window, strict=True))
        a, b = fixed[box], warped[box]
        da, db = a - a.mean(), b - b.mean()
        cov, var_a, var_b = (da * db).mean(), (da * da).mean(), (db * db).mean()
        values.append(cov**2 / (var_a * var_b + eps))
    return -np.mean(values)


@pytest.mark.parametrize("gain, offset", [(0.5, 0.2), (3.0, -1.0), (-2.0, 0.7)])
def test_ncc_is_minus_one_for_a_linear_intensity_change(ndim, gain, offset):
    image = textured_image(SHAPES[ndim], seed=0, smoothing=0.5, dtype=torch.float32)
    assert L.ncc(image, gain * image + offset).item() == pytest.approx(-1.0, abs=1e-4)
    assert L.global_ncc(image, gain * image + offset).item() == pytest.approx(-1.0, abs=1e-4)


def test_ncc_is_far_from_minus_one_for_unrelated_images(ndim):
    a = textured_image(SHAPES[ndim], seed=0, smoothing=0.5)
    b = textured_image(SHAPES[ndim], seed=1, smoothing=0.5)
    value = L.ncc(a, b).item()
    assert -1.0 <= value < 0.0
    assert value > -0.3
    assert L.ncc(a, b) > L.ncc(a, a)


@pytest.mark.parametrize("level_fixed, level_warped", [(0.3, 0.7), (1000.0, -3000.0), (0.0, 0.0)])
def test_ncc_is_finite_with_finite_gradient_on_constant_images(ndim, level_fixed, level_warped):
    shape = SHAPES[ndim]
    fixed = torch.full((1, 1, *shape), level_fixed, requires_grad=True)
    warped = torch.full((1, 1, *shape), level_warped, requires_grad=True)
    for loss in (L.ncc, L.global_ncc):
        value = loss(fixed, warped)
        (grad_fixed, grad_warped) = torch.autograd.grad(value, (fixed, warped))
        assert value.item() == pytest.approx(0.0, abs=1e-6)
        assert torch.isfinite(grad_fixed).all() and torch.isfinite(grad_warped).all()


@pytest.mark.parametrize("units", [255.0, 4095.0])
def test_ncc_does_not_depend_on_intensity_units(ndim, units):
    """Float32 images with flat plateaus and a few bright voxels, in [0, 1] and in scanner-like units."""
    g = torch.Generator().manual_seed(0)
    shape = SHAPES[ndim]
    fixed = torch.full((1, 1, *shape), 0.31)
    fixed[:, :, shape[0] // 2:] = 0.83
    fixed += 0.2 * (torch.rand(fixed.shape, generator=g) > 0.97)
    warped = torch.full((1, 1, *shape), 0.47)
    warped[:, :, :, shape[1] // 2:] = 0.12
    for loss in (L.ncc, L.global_ncc):
        in_unit_range = loss(fixed, warped).item()
        scaled = loss(units * fixed, units * warped + 7).item()
        assert -1 <= scaled <= 0
        assert scaled == pytest.approx(in_unit_range, abs=1e-5)


def test_ncc_flat_region_beside_texture_keeps_gradient_finite(ndim):
    image = textured_image(SHAPES[ndim], seed=0).float()
    image[(0, 0) + (slice(0, SHAPES[ndim][0] // 2),)] = 0.25  # half of the image is flat
    warped = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(L.ncc(image, warped), warped)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("window", [3, 5, "per-axis"])
def test_ncc_matches_brute_force_reference(ndim, window):
    shape = (7, 9) if ndim == 2 else (5, 6, 7)
    sizes = {3: (3,) * ndim, 5: (5,) * ndim, "per-axis": (3, 5) if ndim == 2 else (3, 1, 5)}[window]
    fixed = textured_image(shape, seed=0, smoothing=0.7, batch=2)
    warped = 0.6 * fixed + 0.4 * textured_image(shape, seed=1, smoothing=0.7, batch=2)
    eps = 1e-3  # large enough to matter, so that its placement is tested too
    expected = np.mean([ncc_reference(fixed[i, 0], warped[i, 0], sizes, eps) for i in range(2)])
    argument = window if isinstance(window, int) else sizes
    assert L.ncc(fixed, warped, window=argument, eps=eps).item() == pytest.approx(expected, rel=1e-10)


# the box means behind ncc (regedu.filters) are tested against scipy in test_consolidation.py


def test_ncc_with_a_window_covering_the_image_equals_global_ncc(ndim):
    shape = TINY[ndim]
    fixed = textured_image(shape, seed=0, batch=2)
    warped = textured_image(shape, seed=3, batch=2) + 0.5 * fixed
    whole = tuple(2 * n - 1 for n in shape)
    assert L.ncc(fixed, warped, window=whole).item() == pytest.approx(L.global_ncc(fixed, warped).item(),
                                                                      rel=1e-10)


def test_ncc_is_averaged_channel_by_channel():
    a = textured_image(SHAPES[2], seed=0)
    b = textured_image(SHAPES[2], seed=1)
    two_channels = L.ncc(torch.cat([a, a], 1), torch.cat([a, b], 1))
    assert two_channels.item() == pytest.approx((L.ncc(a, a).item() + L.ncc(a, b).item()) / 2, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_similarity_losses_follow_the_input_dtype(dtype):
    a = textured_image(SHAPES[2], seed=0, dtype=dtype)
    b = textured_image(SHAPES[2], seed=1, dtype=dtype)
    for loss in (L.mse, L.ncc, L.global_ncc, L.mi, L.ngf):
        value = loss(a, b)
        assert value.dtype == dtype and value.shape == ()


# --------------------------------------------------------------------------- mi


def discrete_mi(a, b, bins):
    """Mutual information (nats) of two arrays of bin indices, from numpy's 2D histogram."""
    joint, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins, range=[[0, bins], [0, bins]])
    joint = joint / joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


def test_mi_with_a_narrow_kernel_is_the_discrete_mutual_information(ndim):
    bins = 8
    rng = np.random.default_rng(0)
    a = rng.integers(0, bins, SHAPES[ndim])
    b = np.where(rng.random(SHAPES[ndim]) < 0.6, (a * 3) % bins, rng.integers(0, bins, SHAPES[ndim]))
    as_image = lambda k: torch.as_tensor(k / (bins - 1), dtype=torch.float64)[None, None]  # noqa: E731
    value = L.mi(as_image(a), as_image(b), bins=bins, sigma=1e-3 / (bins - 1), max_voxels=None)
    assert value.item() == pytest.approx(-discrete_mi(a, b, bins), rel=1e-9)


def test_mi_prefers_the_aligned_pair(ndim):
    size = SHAPES[ndim]
    image = textured_image(tuple(n + 6 for n in size), seed=0, smoothing=1.5)
    fixed = crop(image, 3, size)
    aligned, shifted = L.mi(fixed, crop(image, 3, size)), L.mi(fixed, crop(image, 0, size))
    assert aligned.item() < shifted.item() - 0.2
    assert L.mi(fixed, crop(image, 3, size), normalized=True) < L.mi(fixed, crop(image, 0, size),
                                                                         normalized=True)


def test_mi_is_unchanged_by_an_intensity_inversion(ndim):
    size = SHAPES[ndim]
    image = textured_image(tuple(n + 6 for n in size), seed=0, smoothing=1.5)
    fixed, moved = crop(image, 3, size), crop(image, 1, size)
    for normalized in (False, True):
        same = L.mi(fixed, moved, normalized=normalized).item()
        assert L.mi(fixed, 1 - moved, normalized=normalized).item() == pytest.approx(same, rel=1e-9)


def test_mi_ranges(ndim):
    bins = 16
    a = textured_image(SHAPES[ndim], seed=0)
    b = textured_image(SHAPES[ndim], seed=1)
    for x, y in ((a, a), (a, b)):
        value = L.mi(x, y, bins=bins).item()
        assert -math.log(bins) <= value <= 0
        assert -2 <= L.mi(x, y, bins=bins, normalized=True).item() <= -1
    assert L.mi(a, torch.full_like(a, 0.4)).item() == pytest.approx(0.0, abs=1e-12)


def test_mi_clamps_intensities_to_the_unit_interval():
    a = textured_image(SHAPES[2], seed=0) * 1.6 - 0.3
    b = textured_image(SHAPES[2], seed=1)
    assert L.mi(a, b).item() == pytest.approx(L.mi(a.clamp(0, 1), b).item(), rel=1e-12)


def test_mi_sampling_is_seeded_and_close_to_the_full_estimate():
    a = textured_image((40, 40), seed=0, smoothing=1.5)
    b = 1 - a + 0.1 * textured_image((40, 40), seed=1)
    full = L.mi(a, b, max_voxels=None).item()
    sampled = L.mi(a, b, max_voxels=800, seed=3).item()
    assert L.mi(a, b, max_voxels=800, seed=3).item() == sampled
    assert L.mi(a, b, max_voxels=800, seed=4).item() != sampled
    assert sampled == pytest.approx(full, rel=0.1)
    assert L.mi(a, b, max_voxels=1600).item() == full  # no sampling when the image is small enough


# --------------------------------------------------------------------------- ngf


def test_ngf_of_ramps_is_analytic(ndim):
    grid = coordinates(SHAPES[ndim])[:, None]  # (ndim, 1, *shape) with batch axis
    ramp0, ramp1 = grid[0:1] * 0.1, grid[1:2] * 0.1  # gradients 0.1 e_0 and 0.1 e_1
    eps = 0.05
    parallel = 0.1**4 / (0.1**2 + eps**2) ** 2
    assert L.ngf(ramp0, ramp0, eps=eps).item() == pytest.approx(-parallel, rel=1e-12)
    assert L.ngf(ramp0, -ramp0, eps=eps).item() == pytest.approx(-parallel, rel=1e-12)
    assert L.ngf(ramp0, ramp1, eps=eps).item() == pytest.approx(0.0, abs=1e-15)


def test_ngf_is_optimal_for_identical_edges_under_shifts(ndim):
    size = SHAPES[ndim]
    image = textured_image(tuple(n + 4 for n in size), seed=0, smoothing=1.5)
    fixed = crop(image, 2, size)
    values = {shift: L.ngf(fixed, crop(image, 2 + shift, size)).item() for shift in (-2, -1, 0, 1, 2)}
    assert min(values, key=values.get) == 0
    assert -1 <= values[0] < values[1] <= 0


def test_ngf_ignores_contrast_inversion(ndim):
    a = textured_image(SHAPES[ndim], seed=0)
    b = textured_image(SHAPES[ndim], seed=1)
    assert L.ngf(a, 1 - b).item() == pytest.approx(L.ngf(a, b).item(), rel=1e-12)
    assert L.ngf(a, 1 - a).item() == pytest.approx(L.ngf(a, a).item(), rel=1e-12)


def test_ngf_gradients_match_numpy():
    a = textured_image((9, 10), seed=0)
    b = textured_image((9, 10), seed=1)
    eps = 0.05
    ga, gb = np.gradient(a[0, 0].numpy()), np.gradient(b[0, 0].numpy())
    dot = ga[0] * gb[0] + ga[1] * gb[1]
    expected = -np.mean(dot**2 / ((ga[0] ** 2 + ga[1] ** 2 + eps**2) * (gb[0] ** 2 + gb[1] ** 2 + eps**2)))
    assert L.ngf(a, b, eps=eps).item() == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- regularisers


def random_matrix(ndim, seed):
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(ndim, ndim)), dtype=torch.float64)


def linear_field(matrix, shape, offset=0.5):
    """u(x) = M x + t as (1, ndim, *shape)."""
    grid = coordinates(shape)
    return (torch.einsum("ij,j...->i...", matrix, grid) + offset)[None]


def test_diffusion_zero_for_a_constant_field(ndim):
    levels = torch.arange(1.0, 3.0, dtype=torch.float64).view(2, 1, *[1] * ndim)
    disp = levels * torch.ones(2, ndim, *SHAPES[ndim], dtype=torch.float64)
    assert L.diffusion(disp).item() == 0.0


def test_diffusion_of_a_linear_field_is_the_squared_matrix_norm(ndim):
    matrix = random_matrix(ndim, seed=ndim)
    disp = linear_field(matrix, SHAPES[ndim])
    assert L.diffusion(disp).item() == pytest.approx(float((matrix**2).sum()), rel=1e-10)


def test_diffusion_matches_numpy_differences(ndim):
    disp = textured_image(SHAPES[ndim], seed=0, batch=ndim).transpose(0, 1).contiguous()  # (1, ndim, ...)
    field = disp[0].numpy()
    expected = sum(np.mean(np.sum(np.diff(field, axis=1 + k) ** 2, axis=0)) for k in range(ndim))
    assert L.diffusion(disp).item() == pytest.approx(expected, rel=1e-12)


def test_bending_zero_for_a_linear_field(ndim):
    disp = linear_field(random_matrix(ndim, seed=5), SHAPES[ndim])
    assert L.bending(disp).item() == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("a", [0.5, -0.03])
def test_bending_of_a_quadratic_field(ndim, a):
    """u_0 = a x_0**2: d2u_0/dx_0**2 = 2a everywhere, every other second derivative 0, so E = (2a)**2."""
    grid = coordinates(SHAPES[ndim])
    disp = torch.zeros(1, ndim, *SHAPES[ndim], dtype=torch.float64)
    disp[0, 0] = a * grid[0] ** 2
    disp[0, ndim - 1] += 0.3 * grid[1] - 2.0  # an affine part changes nothing
    assert L.bending(disp).item() == pytest.approx(4 * a**2, rel=1e-12)


def test_bending_of_a_mixed_quadratic_field(ndim):
    """u_1 = b x_0 x_last: the mixed derivative is b and counts twice: E = 2 b**2."""
    grid = coordinates(SHAPES[ndim])
    b = 0.2
    disp = torch.zeros(1, ndim, *SHAPES[ndim], dtype=torch.float64)
    disp[0, 1] = b * grid[0] * grid[ndim - 1]
    assert L.bending(disp).item() == pytest.approx(2 * b**2, rel=1e-12)


# --------------------------------------------------------------------------- dice_loss and endpoint error


def box_labels(shape, boxes):
    """Integer label map (1, 1, *shape): label k + 1 inside boxes[k] (a start and a stop per axis)."""
    labels = torch.zeros(1, 1, *shape, dtype=torch.long)
    for value, (start, stop) in enumerate(boxes, start=1):
        labels[(0, 0) + tuple(slice(s, e) for s, e in zip(start, stop, strict=True))] = value
    return labels


def one_hot(labels, count):
    return torch.nn.functional.one_hot(labels[:, 0], count).movedim(-1, 1).double()


def test_dice_loss_zero_for_identical_and_one_for_disjoint(ndim):
    shape = SHAPES[ndim]
    labels = box_labels(shape, [((1,) * ndim, (5,) * ndim), ((6,) * ndim, (10,) * ndim)])
    seg = one_hot(labels, 3)
    assert L.dice_loss(seg, seg).item() == pytest.approx(0.0, abs=1e-12)
    disjoint = torch.stack([seg[:, 1], seg[:, 2], seg[:, 0]], dim=1)  # every label moved elsewhere
    assert L.dice_loss(seg, disjoint).item() == pytest.approx(1.0, abs=1e-6)  # 1 - eps / (voxels + eps)


def test_dice_loss_counts_a_label_absent_from_both_maps_as_perfect(ndim):
    shape = SHAPES[ndim]
    seg = one_hot(box_labels(shape, [((1,) * ndim, (5,) * ndim)]), 2)
    with_absent_label = torch.cat([seg, torch.zeros_like(seg[:, :1])], dim=1)
    moved = torch.cat([seg.roll(2, dims=2), torch.zeros_like(seg[:, :1])], dim=1)
    assert L.dice_loss(with_absent_label, with_absent_label).item() == pytest.approx(0.0, abs=1e-12)
    two_labels = L.dice_loss(seg, seg.roll(2, dims=2)).item()
    assert L.dice_loss(with_absent_label, moved).item() == pytest.approx(two_labels * 2 / 3, rel=1e-9)


def test_dice_loss_of_overlapping_boxes_is_analytic(ndim):
    shape = SHAPES[ndim]
    a = one_hot(box_labels(shape, [((0,) * ndim, (4,) * ndim)]), 2)[:, 1:]
    b = one_hot(box_labels(shape, [((2,) + (0,) * (ndim - 1), (6,) + (4,) * (ndim - 1))]), 2)[:, 1:]
    # two 4**ndim boxes sharing half their voxels: Dice = 1/2
    assert L.dice_loss(a, b).item() == pytest.approx(0.5, rel=1e-6)


def test_dice_loss_one_hot_encodes_integer_label_maps(ndim):
    shape = SHAPES[ndim]
    fixed = box_labels(shape, [((1,) * ndim, (5,) * ndim), ((3,) * ndim, (9,) * ndim)])
    moving = box_labels(shape, [((2,) * ndim, (6,) * ndim), ((3,) * ndim, (8,) * ndim)])
    expected = L.dice_loss(one_hot(fixed, 3), one_hot(moving, 3)).item()
    assert L.dice_loss(fixed, one_hot(moving, 3)).item() == pytest.approx(expected, rel=1e-12)
    assert L.dice_loss(fixed, moving).item() == pytest.approx(expected, rel=1e-6)  # float32 default
    only_two = L.dice_loss(fixed, moving, labels=[2]).item()
    assert only_two == pytest.approx(L.dice_loss(one_hot(fixed, 3)[:, 2:], one_hot(moving, 3)[:, 2:]).item(),
                                     rel=1e-6)


def test_endpoint_error_of_a_constant_offset(ndim):
    offset = (3.0, 4.0) if ndim == 2 else (1.0, 2.0, 2.0)  # lengths 5 and 3
    true_disp = torch.zeros(2, ndim, *SHAPES[ndim])
    disp = true_disp + torch.tensor(offset).view(1, ndim, *[1] * ndim)
    assert L.endpoint_error(disp, true_disp).item() == pytest.approx(5.0 if ndim == 2 else 3.0, rel=1e-6)


def test_endpoint_error_zero_with_finite_gradient_for_identical_fields(ndim):
    disp = torch.randn(1, ndim, *TINY[ndim], requires_grad=True)
    value = L.endpoint_error(disp, disp.detach().clone())
    (grad,) = torch.autograd.grad(value, disp)
    assert value.item() == 0.0 and torch.isfinite(grad).all()


# --------------------------------------------------------------------------- gradients


def tiny_pair(ndim, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 1, *TINY[ndim])
    make = lambda: (0.1 + 0.8 * torch.rand(shape, generator=g, dtype=torch.float64)).requires_grad_()  # noqa: E731
    return make(), make()


SIMILARITY = {
    "mse": L.mse,
    "ncc": lambda f, w: L.ncc(f, w, window=3, eps=1e-3),
    "global_ncc": L.global_ncc,
    "mi": lambda f, w: L.mi(f, w, bins=6),
    "nmi": lambda f, w: L.mi(f, w, bins=6, normalized=True),
    "ngf": lambda f, w: L.ngf(f, w, eps=0.1),
}


@pytest.mark.parametrize("name", list(SIMILARITY))
def test_gradcheck_similarity(ndim, name):
    fixed, warped = tiny_pair(ndim)
    # mi's softmax and batched products are slow on a busy CPU: check it along random directions
    fast = name in ("mi", "nmi")
    assert torch.autograd.gradcheck(SIMILARITY[name], (fixed, warped), fast_mode=fast)


@pytest.mark.parametrize("name", ["diffusion", "bending"])
def test_gradcheck_regularisers(ndim, name):
    disp = torch.randn(2, ndim, *TINY[ndim], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(getattr(L, name), (disp,))


def test_gradcheck_dice_and_endpoint_error(ndim):
    fixed, warped = tiny_pair(ndim)
    probabilities = torch.softmax(torch.randn(2, 3, *TINY[ndim], dtype=torch.float64), 1).requires_grad_()
    labels = torch.randint(0, 3, (2, 1, *TINY[ndim]))
    assert torch.autograd.gradcheck(lambda p: L.dice_loss(labels, p), (probabilities,))
    disp, true = (torch.randn(2, ndim, *TINY[ndim], dtype=torch.float64, requires_grad=True)
                  for _ in range(2))
    assert torch.autograd.gradcheck(L.endpoint_error, (disp, true))


# --------------------------------------------------------------------------- bad input


IMAGE = torch.rand(2, 1, 8, 9)
IMAGE_3D = torch.rand(2, 1, 6, 8, 9)
DISP = torch.zeros(2, 2, 8, 9)

BAD_INPUTS = {
    "3 axes": (lambda: L.mse(IMAGE[0], IMAGE), ValueError, r"must have shape \(B, C, H, W\)"),
    "2D with 3D": (lambda: L.ncc(IMAGE, IMAGE_3D), ValueError, "Do not mix 2D and 3D"),
    "shape mismatch": (lambda: L.ncc(IMAGE, IMAGE[..., :7]), ValueError, "must share one spatial shape"),
    "integer image": (lambda: L.mi(IMAGE, (IMAGE * 9).long()), TypeError, "must be a floating-point"),
    "channels": (lambda: L.ngf(IMAGE, IMAGE.repeat(1, 2, 1, 1)), ValueError, "has 1 channels but"),
    "batch": (lambda: L.mse(IMAGE, IMAGE.repeat(2, 1, 1, 1)[:3]), ValueError, "batch size 2"),
    "not a tensor": (lambda: L.mse(IMAGE.numpy(), IMAGE), TypeError, "must be a torch.Tensor"),
    "even window": (lambda: L.ncc(IMAGE, IMAGE, window=4), ValueError, "must be odd.*Use 5"),
    "window length": (lambda: L.ncc(IMAGE, IMAGE, window=(3, 3, 3)), ValueError, "one per spatial axis"),
    "window zero": (lambda: L.ncc(IMAGE, IMAGE, window=0), ValueError, "integer >= 1"),
    "window float": (lambda: L.ncc(IMAGE, IMAGE, window=9.0), TypeError, "integer >= 1, got 9.0"),
    "ncc eps": (lambda: L.ncc(IMAGE, IMAGE, eps=0), ValueError, "positive number"),
    "one bin": (lambda: L.mi(IMAGE, IMAGE, bins=1), ValueError, "`bins` must be an integer >= 2"),
    "sigma": (lambda: L.mi(IMAGE, IMAGE, sigma=-0.1), ValueError, "`sigma` must be a positive number"),
    "max_voxels": (lambda: L.mi(IMAGE, IMAGE, max_voxels=0), ValueError, "`max_voxels` must be"),
    "ngf flat axis": (lambda: L.ngf(IMAGE[..., :1], IMAGE[..., :1]), ValueError, "at least 2 voxels"),
    "disp channels": (lambda: L.diffusion(DISP[:, :1]), ValueError, "one channel per spatial axis"),
    "integer disp": (lambda: L.bending(DISP.long()), TypeError, "must be a floating-point"),
    "bending size": (lambda: L.bending(DISP[..., :2]), ValueError, "at least 3 voxels"),
    "disp axes": (lambda: L.diffusion(DISP[0]), ValueError, r"must have shape \(B, C, H, W\)"),
    "epe shapes": (lambda: L.endpoint_error(DISP, DISP[..., :5]), ValueError, "must share one spatial shape"),
    "epe channels": (lambda: L.endpoint_error(DISP, DISP.repeat(1, 2, 1, 1)), ValueError, "one channel per"),
    "dice channels": (lambda: L.dice_loss(IMAGE.repeat(1, 3, 1, 1), IMAGE.repeat(1, 2, 1, 1)), ValueError,
                      "3 channels but"),
    "dice label map": (lambda: L.dice_loss(torch.zeros(2, 2, 8, 9, dtype=torch.long), IMAGE), ValueError,
                       "integer tensor with 2 channels"),
    "dice shapes": (lambda: L.dice_loss(IMAGE, IMAGE[..., :4]), ValueError, "must share one spatial shape"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_a_clear_error(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
