"""Nearest-neighbour sampling at exact half-voxel positions (issue #12, item 4).

A point half-way between two voxel centres must go to the same side everywhere, like ITK's
NearestNeighborInterpolateImageFunction, which rounds the continuous index half up
(itk::Math::Round: 1.5 -> 2, -1.5 -> -1). Rounding grid_sample's normalised coordinates went
either way from one voxel to the next, dropping some labels and duplicating others.
"""

import numpy as np
import pytest
import torch

from regedu import warps as W
from regedu.data import io

SHAPES = {2: (5, 12), 3: (4, 5, 12)}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request):
    return request.param


def ramp_labels(shape, axis):
    """Labels ``1 .. n`` along ``axis`` (constant across the other axes), ``(1, 1, *shape)`` int64."""
    n = shape[axis]
    view = [1] * len(shape)
    view[axis] = n
    return torch.arange(1, n + 1).view(view).expand(shape).reshape(1, 1, *shape)


def shift_along(shape, axis, amount, dtype=torch.float32):
    """A constant displacement of ``amount`` voxels along ``axis``: ``(1, ndim, *shape)``."""
    disp = torch.zeros(1, len(shape), *shape, dtype=dtype)
    disp[:, axis] = amount
    return disp


def line(labels, axis):
    """The labels along ``axis`` through voxel 0 of the other axes, as a list."""
    index = [0] * (labels.dim() - 2)
    index[axis] = slice(None)
    return labels[(0, 0, *index)].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_half_voxel_shift_of_labels_takes_every_next_label(ndim, dtype):
    # the case: +0.5 voxel on labels 1..12 gave [2, 2, 4, 5, 6, 7, 7, 9, 9, 11, 11, 12]
    shape = SHAPES[ndim]
    for axis in range(ndim):
        labels = ramp_labels(shape, axis)
        n = shape[axis]
        up = W.warp_labels(labels, shift_along(shape, axis, 0.5, dtype))
        assert line(up, axis) == list(range(2, n + 1)) + [n]  # i + 0.5 -> i + 1, border repeats n
        down = W.warp_labels(labels, shift_along(shape, axis, -0.5, dtype))
        assert line(down, axis) == list(range(1, n + 1))  # i - 0.5 -> i: half up
        far = W.warp_labels(labels, shift_along(shape, axis, -2.5, dtype), padding="zeros")
        assert line(far, axis) == [0, 0] + list(range(1, n - 1))  # -2.5 -> -2 (outside), -0.5 -> 0


def test_warp_nearest_mode_breaks_ties_the_same_way(ndim):
    shape = SHAPES[ndim]
    labels = ramp_labels(shape, ndim - 1)
    image = torch.cat([labels, 10 * labels], dim=1).double()  # two channels
    disp = shift_along(shape, ndim - 1, 1.5, torch.float64)
    out = W.warp(image, disp, mode="nearest")
    n = shape[-1]
    assert line(out, ndim - 1) == [float(v) for v in list(range(3, n + 1)) + [n, n]]  # i + 1.5 -> i + 2
    torch.testing.assert_close(out, torch.cat([out[:, :1], 10 * out[:, :1]], dim=1), rtol=0, atol=0)
    torch.testing.assert_close(out[:, :1], W.warp_labels(labels, disp).double(), rtol=0, atol=0)


def test_two_fold_downsampling_picks_every_second_voxel(ndim):
    # a grid of twice the spacing, corners aligned: coarse voxel j sits at fine index 2 j + 0.5
    shape = (8,) * (ndim - 1) + (64,)
    labels = ramp_labels(shape, ndim - 1)
    linear = torch.eye(ndim)
    linear[-1, -1] = 2.0
    offset = torch.zeros(ndim, 1)
    offset[-1] = 0.5
    A = torch.cat([linear, offset], dim=1)[None]
    coarse = W.warp_labels(labels, W.affine_to_disp(A, shape))[..., :32]
    picked = torch.tensor(line(coarse, ndim - 1))
    assert picked.tolist() == list(range(2, 65, 2))  # labels of fine voxels 1, 3, 5, ...: steps of 2
    assert set(picked.diff().tolist()) == {2}


def test_ties_follow_the_label_dtype_and_the_batch():
    labels = torch.stack([ramp_labels((3, 12), 1)[0], 2 * ramp_labels((3, 12), 1)[0]]).to(torch.uint8)
    out = W.warp_labels(labels, shift_along((3, 12), 1, 0.5))  # field batch 1 broadcasts
    assert out.dtype == torch.uint8 and out.shape == labels.shape
    assert out[0, 0, 0].tolist() == list(range(2, 13)) + [12]
    assert out[1, 0, 0].tolist() == [2 * v for v in out[0, 0, 0].tolist()]
    single = W.warp_labels(labels[:1], shift_along((3, 12), 1, 0.5).expand(2, -1, -1, -1))
    assert torch.equal(single, out[:1].expand(2, -1, -1, -1))  # labels batch 1 broadcasts


def test_reflection_padding_matches_grid_sample_away_from_ties(ndim):
    shape = SHAPES[ndim]
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 9, (1, 1, *shape), generator=g)
    disp = (torch.rand(1, ndim, *shape, generator=g, dtype=torch.float64) - 0.5) * 30
    disp = disp.round() + 0.25  # far from ties, so both roundings agree
    expected = torch.nn.functional.grid_sample(
        labels.double(), W.disp_to_grid(disp), mode="nearest", padding_mode="reflection", align_corners=True)
    torch.testing.assert_close(W.warp_labels(labels, disp, padding="reflection"), expected.long())


def test_resample_like_half_voxel_offset_keeps_every_label():
    # the target grid starts 1.5 voxels into the source: ITK gives labels 3 .. 12
    labels = ramp_labels((3, 12), 1)
    target = np.eye(4)
    target[1, 3] = 1.5
    out = io.resample_like(labels, np.eye(4), (3, 10), target)
    assert out[0, 0, 1].tolist() == list(range(3, 13))


def test_resample_like_two_fold_downsampling_steps_by_two():
    labels = ramp_labels((3, 64), 1)
    target = np.eye(4)
    target[1, 1], target[1, 3] = 2.0, 0.5  # 2 mm voxels, corners aligned with the 1 mm grid
    out = io.resample_like(labels, np.eye(4), (3, 32), target)
    assert out[0, 0, 1].tolist() == list(range(2, 65, 2))


# --------------------------------------------------------------------------- SimpleITK oracle


def itk_nearest(labels: torch.Tensor, disp: torch.Tensor, border: bool) -> np.ndarray:
    """SimpleITK's nearest-neighbour resampling of ``labels`` ``(1, 1, *spatial)`` through ``disp``
    (voxels, unit spacing, so voxels are millimetres); ITK's axes are the tensor's reversed."""
    sitk = pytest.importorskip("SimpleITK")
    ndim = disp.shape[1]
    image = sitk.GetImageFromArray(labels[0, 0].numpy().astype(np.int32))
    vectors = disp[0].flip(0).movedim(0, -1).double().numpy()  # (*spatial, ndim), x first
    field = sitk.GetImageFromArray(vectors, isVector=True)
    transform = sitk.DisplacementFieldTransform(ndim)
    transform.SetDisplacementField(field)
    out = sitk.Resample(image, image, transform, sitk.sitkNearestNeighbor, 0.0, sitk.sitkInt32,
                        border)
    return sitk.GetArrayFromImage(out)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_half_integer_fields_match_simpleitk(ndim, padding):
    pytest.importorskip("SimpleITK")
    shape = (9, 11) if ndim == 2 else (7, 9, 8)
    g = torch.Generator().manual_seed(ndim)
    labels = torch.randint(1, 50, (1, 1, *shape), generator=g)
    disp = torch.randint(-8, 9, (1, ndim, *shape), generator=g).double() / 2  # many exact ties
    ours = W.warp_labels(labels, disp, padding=padding)[0, 0].numpy()
    np.testing.assert_array_equal(ours, itk_nearest(labels, disp, border=padding == "border"))
