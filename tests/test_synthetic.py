"""regedu.data.synthetic: seeded random fields, affines, label maps, images, subjects, toy shapes."""

import math

import pytest
import torch

from regedu import warps
from regedu.data import shapes
from regedu.data import synthetic as S

SHAPES = {2: (40, 48), 3: (20, 24, 22)}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="no CUDA device on this machine"))]


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def shape(request):
    return SHAPES[request.param]


def _interior(x: torch.Tensor, margin: int) -> torch.Tensor:
    return x[(..., *[slice(margin, -margin)] * (x.dim() - 2))]


# ---------------------------------------------------------------------------
# seeds and B-splines
# ---------------------------------------------------------------------------


def test_make_generator():
    a, b = S.make_generator(3), S.make_generator(3)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    g = torch.Generator().manual_seed(1)
    assert S.make_generator(g) is g
    torch.manual_seed(0)
    first = torch.rand(3, generator=S.make_generator(None))
    torch.manual_seed(0)
    assert torch.equal(first, torch.rand(3, generator=S.make_generator(None)))
    with pytest.raises(TypeError, match="seed"):
        S.make_generator(1.5)


# the cubic B-spline basis itself is tested in test_consolidation.py (regedu.bspline)


# ---------------------------------------------------------------------------
# random fields
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_disp_shape_dtype_device_and_magnitude(shape, device, dtype):
    disp = S.random_disp(shape, magnitude=3.0, smoothness=8.0, batch=2, seed=0, device=device, dtype=dtype)
    assert disp.shape == (2, len(shape), *shape)
    assert disp.dtype == dtype and disp.device.type == device
    peaks = disp.abs().flatten(1).amax(dim=1)
    assert torch.allclose(peaks, torch.full_like(peaks, 3.0))


def test_random_disp_same_on_every_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: nothing to compare the CPU with")
    cpu = S.random_disp((16, 20), seed=4)
    gpu = S.random_disp((16, 20), seed=4, device="cuda")
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)


@pytest.mark.parametrize("diffeomorphic", [False, True])
def test_random_disp_reproducible(shape, diffeomorphic):
    first = S.random_disp(shape, seed=1, diffeomorphic=diffeomorphic)
    assert torch.equal(first, S.random_disp(shape, seed=1, diffeomorphic=diffeomorphic))
    assert not torch.allclose(first, S.random_disp(shape, seed=2, diffeomorphic=diffeomorphic))
    generator = torch.Generator().manual_seed(1)
    assert torch.equal(first, S.random_disp(shape, seed=generator, diffeomorphic=diffeomorphic))
    assert not torch.allclose(first, S.random_disp(shape, seed=generator, diffeomorphic=diffeomorphic))


def test_large_fields_fold_unless_diffeomorphic(shape):
    options = dict(magnitude=8.0, smoothness=6.0, batch=2, seed=3)
    plain = S.random_disp(shape, **options)
    assert float(warps.jacobian_det(plain).min()) < 0  # the raw B-spline field folds
    diffeo = S.random_disp(shape, diffeomorphic=True, **options)
    assert float(warps.jacobian_det(diffeo).min()) > 0  # its exponential does not
    velocity = S.random_velocity(shape, **options)
    assert torch.equal(S.integrate_smooth(velocity, 6.0), diffeo)
    assert torch.equal(warps.integrate(velocity), diffeo)  # smoothness 6: integrated on its own grid


@pytest.mark.parametrize("smoothness", [16.0, 24.0])
def test_integration_on_a_coarser_grid_is_close(shape, smoothness):
    velocity = S.random_velocity(shape, magnitude=4.0, smoothness=smoothness, batch=2, seed=8,
                                 dtype=torch.float64)
    fine = warps.integrate(velocity)
    coarse = S.integrate_smooth(velocity, smoothness)
    error = (coarse - fine).abs()  # voxels, for a field of about 4 voxels
    assert float(error.max()) < 0.2 and float(error.mean()) < 0.03
    assert float(warps.jacobian_det(coarse).min()) > 0


def test_random_velocity_is_smooth():
    velocity = S.random_velocity((64, 64), magnitude=4.0, smoothness=16.0, seed=0, dtype=torch.float64)
    gradient = torch.stack(torch.gradient(velocity, dim=(2, 3))).abs().max()
    assert float(gradient) < 4.0 / 16.0 * 3  # about magnitude / smoothness, not noise


# ---------------------------------------------------------------------------
# affines
# ---------------------------------------------------------------------------


def test_random_affine_field_has_jacobian_det_of_the_matrix(shape):
    ndim = len(shape)
    A = S.random_affine(shape, rotation=20, scale=0.2, shear=0.1, translation=4, batch=3, seed=0,
                        dtype=torch.float64)
    assert A.shape == (3, ndim, ndim + 1)
    det = warps.jacobian_det(warps.affine_to_disp(A, shape))
    expected = torch.linalg.det(A[:, :, :ndim]).view(3, *[1] * ndim)
    assert torch.allclose(det, expected.expand_as(det), atol=1e-10)


def test_random_affine_parameters(shape):
    ndim = len(shape)
    eye = warps.affine_identity(ndim, 4)
    assert torch.allclose(S.random_affine(shape, 0, 0, 0, 0, batch=4, seed=1), eye, atol=1e-6)
    rigid = S.random_affine(shape, rotation=30, scale=0, shear=0, translation=0, batch=4, seed=1,
                            dtype=torch.float64)
    M = rigid[:, :, :ndim]
    assert torch.allclose(M @ M.transpose(1, 2), torch.eye(ndim, dtype=torch.float64).expand(4, -1, -1))
    centre = torch.tensor([(n - 1) / 2 for n in shape], dtype=torch.float64)
    assert torch.allclose(M @ centre + rigid[:, :, ndim], centre.expand(4, -1))  # rotates about the centre
    cosine = (torch.diagonal(M, dim1=1, dim2=2).sum(1) - (ndim - 2)) / 2  # trace = 1 + 2 cos (3D)
    assert float(torch.rad2deg(torch.arccos(cosine.clamp(-1, 1))).max()) <= 30 * math.sqrt(ndim) + 1e-6
    scaled = S.random_affine(shape, rotation=0, scale=0.2, shear=0, translation=0, batch=16, seed=2)
    factors = torch.diagonal(scaled[:, :, :ndim], dim1=1, dim2=2)
    assert float(factors.min()) >= 1 / 1.2 - 1e-6 and float(factors.max()) <= 1.2 + 1e-6
    shifted = S.random_affine(shape, rotation=0, scale=0, shear=0, translation=5, batch=16, seed=3)
    assert float(shifted[:, :, ndim].abs().max()) <= 5 + 1e-5
    assert float(shifted[:, :, ndim].abs().max()) > 2.5  # draws spread over the range


def test_random_affine_reproducible(shape):
    assert torch.equal(S.random_affine(shape, seed=5), S.random_affine(shape, seed=5))
    assert not torch.allclose(S.random_affine(shape, seed=5), S.random_affine(shape, seed=6))


def test_random_transform_is_the_affine_after_the_diffeomorphism(shape):
    ndim = len(shape)
    disp = S.random_transform(shape, magnitude=3.0, smoothness=8.0, batch=2, seed=7, dtype=torch.float64)
    generator = S.make_generator(7)  # the same draws, in the same order
    A = S.random_affine(shape, 5.0, 0.05, 0.02, 3.0, batch=2, seed=generator, dtype=torch.float64)
    u = S.random_disp(shape, 3.0, 8.0, True, batch=2, seed=generator, dtype=torch.float64)
    by_interpolation = warps.compose(warps.affine_to_disp(A, shape), u)
    assert torch.allclose(_interior(disp, 4), _interior(by_interpolation, 4), atol=1e-8)
    # det J = det(M) det(I + grad u): finite differences of linear maps are exact
    expected_det = torch.linalg.det(A[:, :, :ndim]).view(2, *[1] * ndim) * warps.jacobian_det(u)
    assert torch.allclose(warps.jacobian_det(disp), expected_det, atol=1e-10)
    assert float(warps.jacobian_det(disp).min()) > 0


# ---------------------------------------------------------------------------
# intensities
# ---------------------------------------------------------------------------


# gaussian_blur is the checked form of regedu.filters.gaussian_smooth: tested in test_consolidation.py


def test_augment_intensity(shape):
    image = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(S.augment_intensity(image, 0, 0, noise=0, seed=0), image)
    for options in [dict(gamma=0.5, bias=0, noise=0), dict(gamma=0, bias=0.5, noise=0),
                    dict(gamma=0, bias=0, noise=0.1), dict()]:
        out = S.augment_intensity(image, **options, seed=1)
        assert out.shape == image.shape
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        assert torch.equal(out, S.augment_intensity(image, **options, seed=1))
        assert not torch.equal(out, S.augment_intensity(image, **options, seed=2))
    gamma_only = S.augment_intensity(image, gamma=0.5, bias=0, noise=0, seed=1)
    order = image.flatten(1).argsort(dim=1)  # a gamma curve keeps the order of intensities
    assert bool((gamma_only.flatten(1).gather(1, order).diff(dim=1) >= 0).all())
    grey = torch.full((1, 1, 64, 64), 0.5)
    noisy = S.augment_intensity(grey, gamma=0, bias=0, noise=0.05, seed=3)
    assert float((noisy - grey).std()) == pytest.approx(0.05, rel=0.1)


# ---------------------------------------------------------------------------
# synthetic subjects
# ---------------------------------------------------------------------------


def test_synth_subject_default_brain_slice():
    from regedu.data import brain_slice

    brain = brain_slice()
    subject = S.synth_subject(batch=3, seed=0)
    assert subject.image.shape == subject.labels.shape == (3, 1, 96, 112)
    assert subject.disp.shape == (3, 2, 96, 112)
    assert subject.labels.dtype == torch.int64
    assert torch.equal(subject.labels, warps.warp_labels(brain.labels, subject.disp))
    assert torch.equal(subject.deformed, warps.warp(brain.image, subject.disp))
    assert float(subject.image.min()) >= 0 and float(subject.image.max()) <= 1
    assert float(warps.jacobian_det(subject.disp).min()) > 0


@pytest.mark.parametrize("device", DEVICES)
def test_synth_subject_custom_template(shape, device):
    template = shapes.disk(shape) * 0.8 + shapes.square(shape, min(shape) / 3) * 0.2
    labels = (template * 10).round().long()
    subject = S.synth_subject(template, labels, batch=2, magnitude=2.0, smoothness=8.0, seed=4, device=device)
    assert subject.image.device.type == subject.disp.device.type == subject.labels.device.type == device
    assert subject.disp.shape == (2, len(shape), *shape)
    assert torch.equal(subject.labels, warps.warp_labels(labels.to(device), subject.disp))
    assert torch.allclose(subject.deformed, warps.warp(template.to(device), subject.disp))
    assert float(warps.jacobian_det(subject.disp).min()) > 0
    again = S.synth_subject(template, labels, batch=2, magnitude=2.0, smoothness=8.0, seed=4, device=device)
    assert torch.equal(subject.image, again.image) and torch.equal(subject.disp, again.disp)
    other = S.synth_subject(template, labels, batch=2, magnitude=2.0, smoothness=8.0, seed=5, device=device)
    assert not torch.allclose(subject.disp, other.disp)
    assert S.synth_subject(template, seed=0).labels is None


def test_synth_subject_rejects_bad_templates():
    with pytest.raises(ValueError, match="one single-channel image"):
        S.synth_subject(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="integer map"):
        S.synth_subject(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        S.synth_subject(torch.ones(1, 1, 16, 16, dtype=torch.long))


# ---------------------------------------------------------------------------
# SynthMorph-style label maps and images
# ---------------------------------------------------------------------------


def test_synth_labels(shape):
    labels = S.synth_labels(shape, num_labels=8, batch=2, seed=0)
    assert labels.shape == (2, 1, *shape) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < 8
    assert torch.unique(labels[0]).numel() >= 4  # several structures, not one blob
    assert torch.equal(labels, S.synth_labels(shape, num_labels=8, batch=2, seed=0))
    assert not torch.equal(labels, S.synth_labels(shape, num_labels=8, batch=2, seed=1))


def test_synth_image_one_intensity_per_label_before_blur(shape):
    labels = S.synth_labels(shape, num_labels=6, batch=2, seed=0)
    flat = S.synth_image(labels, blur=0, gamma=0, bias=0, noise=0, seed=1)
    assert flat.shape == labels.shape and flat.dtype == torch.float32
    for b in range(2):
        values = [torch.unique(flat[b][labels[b] == v]) for v in torch.unique(labels[b])]
        assert all(v.numel() == 1 for v in values)
        assert len(set(float(v) for v in values)) == len(values)  # distinct labels, distinct intensities
    assert not torch.equal(flat[0][labels[0] == 0].unique(), flat[1][labels[1] == 0].unique())


def test_synth_image_range_and_reproducibility(shape):
    labels = S.synth_labels(shape, num_labels=6, seed=0)
    image = S.synth_image(labels, seed=2)
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    assert torch.equal(image, S.synth_image(labels, seed=2))
    assert not torch.equal(image, S.synth_image(labels, seed=3))
    assert S.synth_image(labels, seed=2, dtype=torch.float64).dtype == torch.float64


def test_synth_image_rejects_bad_labels():
    with pytest.raises(ValueError, match="integer label map"):
        S.synth_image(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="0 .. 3"):
        S.synth_image(torch.full((1, 1, 8, 8), 5), num_labels=4)
    with pytest.raises(ValueError, match="0 .. "):
        S.synth_image(torch.full((1, 1, 8, 8), -1))


# ---------------------------------------------------------------------------
# toy shapes
# ---------------------------------------------------------------------------


def test_disk_and_ball_volume():
    assert float(shapes.disk((101, 101), radius=20).sum()) == pytest.approx(math.pi * 20**2, rel=0.01)
    ball = float(shapes.disk((41, 41, 41), radius=12).sum())
    assert ball == pytest.approx(4 / 3 * math.pi * 12**3, rel=0.02)


def test_square_and_cube(shape):
    ndim = len(shape)
    centre = [n // 2 for n in shape]
    cube = shapes.square(shape, half_width=3, centre=centre)
    assert cube.shape == (1, 1, *shape) and cube.dtype == torch.float32
    assert float(cube.sum()) == 7**ndim
    assert float(cube[(0, 0, *centre)]) == 1


def test_letters(shape):
    ndim = len(shape)
    radius, thickness = min(shape) * 0.4, 3.0
    o = shapes.letter_o(shape, radius, thickness)
    c = shapes.letter_c(shape, radius, thickness, gap=4.0)
    inner = shapes.disk(shape, radius - thickness)
    assert torch.equal(o, shapes.disk(shape, radius) - inner)
    assert bool((c <= o).all()) and float(c.sum()) < float(o.sum())
    centre = [(n - 1) / 2 for n in shape]
    in_slot = [round(centre[0]), round(centre[1] + radius - 1)] + [round(x) for x in centre[2:]]
    in_ring = [round(centre[0]), round(centre[1] - radius + 1)] + [round(x) for x in centre[2:]]
    assert float(o[(0, 0, *in_slot)]) == 1 and float(c[(0, 0, *in_slot)]) == 0
    assert float(c[(0, 0, *in_ring)]) == 1
    assert ndim in (2, 3)


def test_large_deformation_pairs():
    pair = shapes.large_deformation_pair((64, 64), kind="c_to_o")
    assert set(pair) == {"moving", "fixed", "moving_labels", "fixed_labels"}
    assert pair["moving"].shape == (1, 1, 64, 64) and pair["moving_labels"].dtype == torch.int64
    assert float(pair["moving"].sum()) < float(pair["fixed"].sum())
    warped = shapes.large_deformation_pair((64, 64), kind="large_warp", magnitude=12.0, seed=0)
    disp = warped["disp"]
    centre = disp[0, :, 31:33, 31:33].mean(dim=(1, 2))  # the image centre is at (31.5, 31.5)
    assert float(centre.norm()) == pytest.approx(12.0, abs=0.3)  # the requested magnitude, > 10 voxels
    assert float(warps.jacobian_det(disp).min()) > 0
    assert torch.equal(warped["fixed"], warps.warp(warped["moving"], disp))
    assert torch.equal(warped["fixed_labels"], warps.warp_labels(warped["moving_labels"], disp))
    overlap = float((warped["moving"] * warped["fixed"]).sum() / warped["moving"].sum())
    assert overlap < 0.4  # moved further than its radius 10.7 (two such disks 12 apart overlap 33 %)
    three_d = shapes.large_deformation_pair((32, 32, 32), kind="large_warp", magnitude=6, seed=1)
    assert three_d["disp"].shape == (1, 3, 32, 32, 32)
    centre = three_d["disp"][0, :, 15:17, 15:17, 15:17].mean(dim=(1, 2, 3))
    assert float(centre.norm()) == pytest.approx(6.0, abs=0.3)
    other = shapes.large_deformation_pair((32, 32, 32), kind="large_warp", magnitude=6, seed=2)
    assert not torch.allclose(other["disp"], three_d["disp"])  # the seed picks the direction


# ---------------------------------------------------------------------------
# argument errors
# ---------------------------------------------------------------------------


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="2 integers"):
        S.random_disp((16,))
    with pytest.raises(ValueError, match="smoothness"):
        S.random_disp((16, 16), smoothness=0)
    with pytest.raises(ValueError, match="magnitude"):
        S.random_disp((16, 16), magnitude=-1)
    with pytest.raises(TypeError, match="seed"):
        S.random_affine((16, 16), seed="0")
    with pytest.raises(ValueError, match="kind"):
        shapes.large_deformation_pair(kind="spiral")
    with pytest.raises(TypeError, match="dtype"):
        S.random_disp((16, 16), dtype=torch.int32)


def test_the_toy_shapes_old_home_still_offers_them():
    from regedu.data.synthetic import disk, large_deformation_pair

    assert disk is shapes.disk and large_deformation_pair is shapes.large_deformation_pair
    with pytest.raises(AttributeError, match="no attribute"):
        S.no_such_shape  # noqa: B018
