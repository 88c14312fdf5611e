"""Tests for regedu.models: shapes, padding, the displacement convention, gradients, initial state,
overfitting one pair, diffeomorphism, bad inputs, dtype, and the fast paths against the plain ones."""

import math

import pytest
import torch
import torch.nn.functional as F

from regedu import losses, metrics, warps
from regedu.kernels import crop, pad_to_multiple
from regedu.models import (
    AffineNet,
    Cascade,
    LightVoxelMorph,
    PyramidNet,
    UNet,
    VoxelMorph,
    centred_to_voxel_affine,
)

SHAPES = {2: (32, 40), 3: (16, 24, 16)}
ODD_SHAPES = {2: (33, 37), 3: (15, 21, 17)}

MODELS = {
    "voxelmorph": lambda ndim: VoxelMorph(ndim),
    "voxelmorph-diffeo": lambda ndim: VoxelMorph(ndim, diffeomorphic=True),
    "light": lambda ndim: LightVoxelMorph(ndim),
    "voxelmorph-coarse": lambda ndim: VoxelMorph(ndim, field_downsize=2),
    "pyramid": lambda ndim: PyramidNet(ndim),
    "pyramid-diffeo": lambda ndim: PyramidNet(ndim, diffeomorphic=True, int_steps=4),
    "pyramid-coarse": lambda ndim: PyramidNet(ndim, field_downsize=2),
    "affine": lambda ndim: AffineNet(ndim),
    "cascade": lambda ndim: Cascade(AffineNet(ndim), VoxelMorph(ndim)),
}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request):
    return request.param


@pytest.fixture(params=list(MODELS), ids=list(MODELS))
def make_model(request):
    return MODELS[request.param]


def smooth_image(shape, seed=0, batch=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 1, *([5] * len(shape)), generator=g, dtype=dtype)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(coarse, size=shape, mode=mode, align_corners=True)


def disk(shape, centre, radius):
    """Binary disk (B=1, C=1, H, W) as a long label map."""
    grid = warps.identity_grid(shape)
    centre = torch.tensor(centre, dtype=torch.float32).view(-1, 1, 1)
    return ((grid - centre).pow(2).sum(0) <= radius ** 2).long()[None, None]


# --------------------------------------------------------------------------- shapes and convention


def test_every_model_returns_warped_and_disp_of_the_right_shape(make_model, ndim):
    torch.manual_seed(0)
    model = make_model(ndim)
    moving, fixed = smooth_image(SHAPES[ndim], 1, batch=2), smooth_image(SHAPES[ndim], 2, batch=2)
    warped, disp = model(moving, fixed)
    assert warped.shape == moving.shape
    assert disp.shape == (2, ndim, *SHAPES[ndim])
    assert disp.is_contiguous()


def test_odd_sizes_are_padded_and_the_field_cropped_back(make_model, ndim):
    torch.manual_seed(0)
    model = make_model(ndim)
    shape = ODD_SHAPES[ndim]
    warped, disp = model(smooth_image(shape, 1), smooth_image(shape, 2))
    assert warped.shape == (1, 1, *shape)
    assert disp.shape == (1, ndim, *shape)


def test_warp_reproduces_warped(make_model, ndim):
    """The displacement convention: warped = warp(moving, disp), regedu's warp, same padding."""
    torch.manual_seed(0)
    model = make_model(ndim)
    shape = ODD_SHAPES[ndim]
    moving, fixed = smooth_image(shape, 1), smooth_image(shape, 2)
    with torch.no_grad():
        for p in model.parameters():  # a visible, non-trivial field
            p.add_(torch.randn_like(p) * 0.05)
        warped, disp = model(moving, fixed)
    assert disp.abs().max() > 0.1
    torch.testing.assert_close(warps.warp(moving, disp), warped)


def test_crop_undoes_padding_at_the_right_offset(ndim):
    """The field of an odd-sized pair is the network's field on the padded pair, cropped centrally."""
    torch.manual_seed(0)
    model = VoxelMorph(ndim)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    shape = ODD_SHAPES[ndim]
    moving, fixed = smooth_image(shape, 1), smooth_image(shape, 2)
    moving_padded, pads = pad_to_multiple(moving, model.factor, "replicate")
    fixed_padded, _ = pad_to_multiple(fixed, model.factor, "replicate")
    assert all(n % model.factor == 0 for n in moving_padded.shape[2:])
    assert all(abs(before - after) <= 1 for before, after in zip(*pads, strict=True))  # centred
    with torch.no_grad():
        expected = crop(model.net(moving_padded, fixed_padded), pads)
        _, disp = model(moving, fixed)
    torch.testing.assert_close(disp, expected)


def test_batch_of_one_broadcasts(ndim):
    model = VoxelMorph(ndim)
    warped, disp = model(smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2, batch=3))
    assert warped.shape[0] == 3 and disp.shape[0] == 3


# --------------------------------------------------------------------------- initial state and gradients


def test_untrained_voxelmorph_barely_moves(ndim):
    torch.manual_seed(0)
    moving, fixed = smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2)
    for diffeomorphic in (False, True):
        warped, disp = VoxelMorph(ndim, diffeomorphic=diffeomorphic)(moving, fixed)
        assert disp.abs().max() < 1e-2
        torch.testing.assert_close(warped, moving, atol=1e-3, rtol=0)


def test_untrained_affinenet_is_the_identity(ndim):
    torch.manual_seed(0)
    moving, fixed = smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2)
    warped, disp, affine = AffineNet(ndim)(moving, fixed, return_affine=True)
    assert affine.shape == (1, ndim, ndim + 1)
    torch.testing.assert_close(affine, warps.affine_identity(ndim), atol=1e-3, rtol=0)
    assert disp.abs().max() < 1e-2
    torch.testing.assert_close(warped, moving, atol=1e-3, rtol=0)


def test_gradients_reach_every_parameter(make_model, ndim):
    torch.manual_seed(0)
    model = make_model(ndim)
    moving, fixed = smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2)
    warped, disp = model(moving, fixed)
    (losses.mse(fixed, warped) + losses.diffusion(disp)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- learning one pair


def _train_on_shifted_disk(model, steps=100, lr=3e-3):
    """Adam on MSE + 0.01 diffusion for a disk shifted by 3 voxels; returns the quality before/after."""
    torch.manual_seed(0)
    fixed_labels, moving_labels = disk((32, 32), (16, 16), 8), disk((32, 32), (16, 19), 8)
    fixed, moving = (F.avg_pool2d(x.float(), 3, 1, 1) for x in (fixed_labels, moving_labels))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        warped, disp = model(moving, fixed)
        loss = losses.mse(fixed, warped) + 0.01 * losses.diffusion(disp)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        warped, disp = model(moving, fixed)
    return {
        "mse": (losses.mse(fixed, moving).item(), losses.mse(fixed, warped).item()),
        "dice": (metrics.dice(moving_labels, fixed_labels).mean().item(),
                 metrics.dice(warps.warp_labels(moving_labels, disp), fixed_labels).mean().item()),
        "disp": disp,
    }


@pytest.mark.parametrize("diffeomorphic", [False, True], ids=["plain", "diffeo"])
@pytest.mark.parametrize("network", [VoxelMorph, PyramidNet], ids=["voxelmorph", "pyramid"])
def test_model_overfits_a_shifted_disk(network, diffeomorphic):
    result = _train_on_shifted_disk(network(2, diffeomorphic=diffeomorphic))
    mse_before, mse_after = result["mse"]
    dice_before, dice_after = result["dice"]
    assert mse_after < 0.1 * mse_before
    assert dice_before < 0.8 and dice_after > 0.95
    # the disk moved by +3 voxels along axis 1: at its centre the field pulls from 3 voxels further
    assert result["disp"][0, 1, 16, 16].item() == pytest.approx(3.0, abs=0.5)
    if diffeomorphic:
        assert metrics.folding_fraction(result["disp"]).item() == 0.0
        assert warps.jacobian_det(result["disp"]).min() > 0


# --------------------------------------------------------------------------- diffeomorphic pieces


def test_exponential_of_a_constant_velocity_is_that_translation(ndim):
    model = VoxelMorph(ndim, diffeomorphic=True, int_steps=7, int_downsize=2)
    shift = torch.tensor([1.5, -2.0, 0.75][:ndim]).view(1, ndim, *([1] * ndim))
    velocity = shift.expand(1, ndim, *SHAPES[ndim]).contiguous()
    torch.testing.assert_close(model.exponential(velocity), velocity, atol=1e-5, rtol=0)


def test_return_velocity_gives_the_field_that_integrates_to_disp(ndim):
    torch.manual_seed(0)
    model = VoxelMorph(ndim, diffeomorphic=True)
    shape = (16,) * ndim  # a multiple of the network's factor: no padding, so no cropping either
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        warped, disp, velocity = model(smooth_image(shape, 1), smooth_image(shape, 2), return_velocity=True)
    assert velocity.shape == disp.shape
    assert velocity.abs().max() > 0.1
    torch.testing.assert_close(model.exponential(velocity), disp)


def test_return_velocity_on_a_plain_model_says_what_to_do():
    with pytest.raises(ValueError, match="diffeomorphic=True"):
        VoxelMorph(2)(smooth_image((32, 32)), smooth_image((32, 32)), return_velocity=True)


# --------------------------------------------------------------------------- pyramid and cascade


def test_pyramid_returns_one_field_per_level_each_twice_finer(ndim):
    model = PyramidNet(ndim, levels=3)
    result = model(smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2), return_levels=True)
    assert len(result.levels) == 3
    padded = [-(-n // model.factor) * model.factor for n in SHAPES[ndim]]
    for level, field in enumerate(result.levels[:-1]):
        assert field.shape[2:] == tuple(n // 2 ** (2 - level) for n in padded)
    assert result.levels[-1] is result.disp


def test_pyramid_with_one_level_is_a_single_flow_net(ndim):
    torch.manual_seed(0)
    model = PyramidNet(ndim, levels=1)
    moving, fixed = smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2)
    with torch.no_grad():
        _, disp = model(moving, fixed)
        moving_padded, pads = pad_to_multiple(moving, model.factor, "replicate")
        fixed_padded, _ = pad_to_multiple(fixed, model.factor, "replicate")
        torch.testing.assert_close(disp, crop(model.nets[0](moving_padded, fixed_padded), pads))


def test_cascade_composes_the_stage_fields(ndim):
    """Cascade's field is compose(first, second), with the second stage fed the first's output."""
    torch.manual_seed(0)
    first, second = AffineNet(ndim), VoxelMorph(ndim)
    with torch.no_grad():
        for p in list(first.regressor.parameters()) + list(second.net.head.parameters()):
            p.add_(torch.randn_like(p) * 0.02)
    moving, fixed = smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2)
    with torch.no_grad():
        warped, disp = Cascade(first, second)(moving, fixed)
        warped_1, disp_1 = first(moving, fixed)
        _, disp_2 = second(warped_1, fixed)
    assert disp_1.abs().max() > 0.1 and disp_2.abs().max() > 0.01
    torch.testing.assert_close(disp, warps.compose(disp_1, disp_2))
    torch.testing.assert_close(warped, warps.warp(moving, disp))


# --------------------------------------------------------------------------- affine parameterisation


def test_centred_scaling_matches_warps_scaling(ndim):
    shape = SHAPES[ndim]
    factors = torch.tensor([1.2, 0.9, 1.1][:ndim])
    theta = torch.cat([torch.diag(factors), torch.zeros(ndim, 1)], dim=1)[None]
    torch.testing.assert_close(centred_to_voxel_affine(theta, shape), warps.scaling(factors, shape))


def test_centred_rotation_matches_warps_rotation_on_a_square_grid():
    shape = (33, 33)
    angle = 0.3
    c, s = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]])
    torch.testing.assert_close(centred_to_voxel_affine(theta, shape), warps.rotation(angle, shape))


def test_centred_translation_is_in_half_extents(ndim):
    shape = SHAPES[ndim]
    t = torch.tensor([0.5, -0.25, 1.0][:ndim])
    theta = torch.cat([torch.eye(ndim), t[:, None]], dim=1)[None]
    expected = torch.tensor([ti * (n - 1) / 2 for ti, n in zip(t.tolist(), shape, strict=True)])
    A = centred_to_voxel_affine(theta, shape)
    torch.testing.assert_close(A[0, :, ndim], expected)
    torch.testing.assert_close(A[0, :, :ndim], torch.eye(ndim))


# --------------------------------------------------------------------------- fast paths agree with plain ones
# (each fast layer against its plain PyTorch equivalent: tests/test_fast_layers.py)


@pytest.mark.parametrize("option", ["fused_upsampling", "channels_last"])
def test_fast_paths_give_the_plain_results_and_gradients(ndim, option):
    torch.manual_seed(0)
    fast, plain = VoxelMorph(ndim), VoxelMorph(ndim, **{option: False})
    plain.load_state_dict(fast.state_dict())
    moving, fixed = smooth_image(SHAPES[ndim], 1), smooth_image(SHAPES[ndim], 2)
    results = []
    for model in (fast, plain):
        warped, disp = model(moving, fixed)
        (losses.mse(fixed, warped) + disp.square().mean()).backward()
        results.append((disp, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-4)
    for grad_fast, grad_plain in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(grad_fast, grad_plain, atol=1e-6, rtol=1e-3)


# --------------------------------------------------------------------------- dtype and device


def test_float64_model_and_inputs(make_model, ndim):
    model = make_model(ndim).double()
    moving = smooth_image(SHAPES[ndim], 1, dtype=torch.float64)
    fixed = smooth_image(SHAPES[ndim], 2, dtype=torch.float64)
    warped, disp = model(moving, fixed)
    assert warped.dtype == torch.float64 and disp.dtype == torch.float64


# --------------------------------------------------------------------------- bad input


def test_model_of_the_wrong_dimensionality_says_which():
    with pytest.raises(ValueError, match=r"built for 3D images.*ndim=2"):
        VoxelMorph(3)(smooth_image((32, 32)), smooth_image((32, 32)))
    with pytest.raises(ValueError, match=r"built for 2D images.*ndim=3"):
        AffineNet(2)(smooth_image((16, 16, 16)), smooth_image((16, 16, 16)))


def test_shape_mismatch_is_reported(make_model):
    with pytest.raises(ValueError, match="share one spatial shape"):
        make_model(2)(smooth_image((32, 32)), smooth_image((32, 40)))


def test_wrong_channel_count_is_reported():
    image = smooth_image((32, 32))
    with pytest.raises(ValueError, match=r"expects 1 channel.*in_channels=2"):
        VoxelMorph(2)(image.repeat(1, 2, 1, 1), image.repeat(1, 2, 1, 1))
    warped, disp = VoxelMorph(2, in_channels=2)(image.repeat(1, 2, 1, 1), image.repeat(1, 2, 1, 1))
    assert warped.shape == (1, 2, 32, 32) and disp.shape == (1, 2, 32, 32)


def test_integer_images_dtype_mismatch_and_nan_are_reported():
    model, image = VoxelMorph(2), smooth_image((32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        model(image.long(), image.long())
    with pytest.raises(TypeError, match=r"float64.*float32"):
        model(image.double(), image.double())
    broken = image.clone()
    broken[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(broken, image)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="ndim"):
        VoxelMorph(4)
    with pytest.raises(ValueError, match="int_steps"):
        VoxelMorph(2, diffeomorphic=True, int_steps=0)
    with pytest.raises(ValueError, match=r"at least len\(encoder\) \+ 1 = 4"):
        UNet(2, encoder=(8, 8, 8), decoder=(8, 8))
    with pytest.raises(ValueError, match="padding"):
        VoxelMorph(2, padding="mirror")
    with pytest.raises(ValueError, match="Cascade needs"):
        Cascade()


def test_unet_alone_says_which_size_to_pad_to():
    with pytest.raises(ValueError, match=r"multiples of 16.*Pad to \(48, 32\)"):
        UNet(2)(torch.zeros(1, 2, 33, 32))


def test_field_downsize_runs_the_unet_on_a_coarser_grid_and_resizes_its_field(ndim):
    """``field_downsize=2``: the U-Net sees both images shrunk 2x (regedu.kernels.downsample_image) and
    the field is the coarse one resized back, values doubled (regedu.kernels.resize_disp)."""
    from regedu.kernels import downsample_image, resize_disp

    torch.manual_seed(0)
    model = VoxelMorph(ndim, field_downsize=2)
    torch.nn.init.normal_(model.net.head.weight, std=0.05)  # a field worth comparing
    size = model.factor  # the padded grid is the input's own: no padding to undo
    moving, fixed = torch.rand(1, 1, *[size] * ndim), torch.rand(1, 1, *[size] * ndim)
    assert model.factor == 2 * model.net.factor
    with torch.no_grad():
        disp = model(moving, fixed).disp
        coarse = model.net(downsample_image(moving, 2), downsample_image(fixed, 2))
    assert coarse.shape[2:] == (size // 2,) * ndim
    torch.testing.assert_close(disp, resize_disp(coarse, (size,) * ndim))
    assert disp.abs().max() > 0.01


def test_pyramid_field_downsize_runs_the_whole_pyramid_on_a_coarser_grid(ndim):
    """``PyramidNet(field_downsize=2)``: all its levels see both images shrunk 2x, and the field is the
    coarse pyramid's resized back (values doubled); an odd size is first padded to an even one."""
    from regedu.kernels import downsample_image, resize_disp

    torch.manual_seed(0)
    coarse_model = PyramidNet(ndim, field_downsize=2)
    plain_model = PyramidNet(ndim)
    for net in coarse_model.nets:
        torch.nn.init.normal_(net.head.weight, std=0.05)  # a field worth comparing
    plain_model.load_state_dict(coarse_model.state_dict())
    assert coarse_model.factor == 2 * plain_model.factor
    size = coarse_model.factor
    moving, fixed = torch.rand(1, 1, *[size] * ndim), torch.rand(1, 1, *[size] * ndim)
    with torch.no_grad():
        result = coarse_model(moving, fixed, return_levels=True)
        small = plain_model(downsample_image(moving, 2), downsample_image(fixed, 2)).disp
        odd = coarse_model(moving[..., :-1], fixed[..., :-1]).disp
    torch.testing.assert_close(result.disp, resize_disp(small, (size,) * ndim))
    assert result.disp.abs().max() > 0.01
    assert result.levels[-1] is result.disp and len(result.levels) == 3
    assert odd.shape[2:] == (size,) * (ndim - 1) + (size - 1,)


def test_downsample_image_has_one_home():
    from regedu import kernels
    from regedu.models import pyramid

    assert pyramid.downsample_image is kernels.downsample_image
