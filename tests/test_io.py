"""Tests for regedu.data.io: NIfTI round trips on a real file, field conventions, resampling, padding.

References are independent of the code under test: nibabel's own reorientation
(``as_closest_canonical``), hand-derived world coordinates, ``scipy.ndimage.affine_transform``
and ``numpy.percentile``.
"""

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage
import torch

from regedu.data import io
from regedu.warps import warp

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
ANATOMICAL = NIBABEL_DATA / "anatomical.nii"  # big-endian int16, 2 mm, LAS orientation
SHAPES = {2: (9, 12), 3: (7, 8, 6)}
LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request):
    return request.param


def smooth_image(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, *([4] * len(shape)), generator=g, dtype=dtype)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True)


def random_field(shape, magnitude=1.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, len(shape), *shape, generator=g) * 2 - 1) * magnitude


def las_affine():
    """A non-canonical grid: x flipped (L), anisotropic voxels, an offset."""
    return np.array([[-2.0, 0, 0, 10], [0, 3.0, 0, -5], [0, 0, 4.0, 7], [0, 0, 0, 1]])


def oblique_affine():
    """A 30 degree rotation about z with 1.5/2/2.5 mm voxels and an offset."""
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 2.0, 2.5])
    affine[:3, 3] = [-20.0, 4.0, 11.0]
    return affine


# ---------------------------------------------------------------------------
# loading and saving images and label maps
# ---------------------------------------------------------------------------


def test_load_matches_nibabel_canonical_reference():
    volume = io.load_nifti(ANATOMICAL)
    reference = nib.as_closest_canonical(nib.load(ANATOMICAL))
    assert volume.image.shape == (1, 1, *reference.shape)
    assert volume.image.dtype == torch.float32
    np.testing.assert_array_equal(volume.image[0, 0].numpy(), reference.get_fdata())
    np.testing.assert_allclose(volume.affine, reference.affine)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.spacing == (2.0, 2.0, 2.0)


def test_canonical_keeps_every_voxel_at_its_world_position():
    original = nib.load(ANATOMICAL)
    assert nib.aff2axcodes(original.affine) == ("L", "A", "S")  # the file is stored LAS
    canonical = io.load_nifti(ANATOMICAL)
    raw = io.load_nifti(ANATOMICAL, canonical=False)
    np.testing.assert_array_equal(raw.image[0, 0].numpy(), original.get_fdata())
    nx = original.shape[0]
    for i, j, k in [(0, 0, 0), (3, 17, 9), (nx - 1, 40, 24)]:
        world = original.affine @ [i, j, k, 1]
        flipped = (nx - 1 - i, j, k)  # LAS -> RAS flips the first axis
        np.testing.assert_allclose(canonical.affine @ [*flipped, 1], world)
        assert canonical.image[0, 0][flipped] == raw.image[0, 0, i, j, k]


def test_round_trip_keeps_data_and_affine(tmp_path):
    volume = io.load_nifti(ANATOMICAL)
    written = io.save_nifti(volume.image, tmp_path / "anat.nii.gz", volume.affine)
    again = io.load_nifti(written)
    assert torch.equal(again.image, volume.image)
    np.testing.assert_allclose(again.affine, volume.affine)
    assert again.spacing == volume.spacing
    # the file is canonical now; loaded raw it is the same array
    assert torch.equal(io.load_nifti(written, canonical=False).image, volume.image)


def test_labels_round_trip_keeps_integer_dtype(tmp_path):
    labels = io.load_labels(ANATOMICAL)  # int16 on disk: whole numbers, a valid label map
    assert labels.image.dtype == torch.int64
    reference = nib.as_closest_canonical(nib.load(ANATOMICAL)).get_fdata()
    np.testing.assert_array_equal(labels.image[0, 0].numpy(), reference)
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        path = io.save_nifti((labels.image % 100).to(dtype), tmp_path / f"{dtype}.nii.gz", labels.affine)
        assert nib.load(path).get_data_dtype() == torch.empty(0, dtype=dtype).numpy().dtype
        assert torch.equal(io.load_labels(path).image, labels.image % 100)


def test_saved_dtypes(tmp_path):
    image = smooth_image(SHAPES[3])
    assert nib.load(io.save_nifti(image, tmp_path / "f32.nii")).get_data_dtype() == np.float32
    assert nib.load(io.save_nifti(image.double(), tmp_path / "f64.nii")).get_data_dtype() == np.float64
    assert nib.load(io.save_nifti(image.half(), tmp_path / "f16.nii")).get_data_dtype() == np.float32
    mask = io.save_nifti(image > 0.5, tmp_path / "mask.nii")
    assert nib.load(mask).get_data_dtype() == np.uint8
    assert torch.equal(io.load_labels(mask).image, (image > 0.5).long())


def test_default_affine_is_one_millimetre_at_origin(tmp_path):
    path = io.save_nifti(smooth_image(SHAPES[3]), tmp_path / "a.nii.gz")
    np.testing.assert_allclose(nib.load(path).affine, np.eye(4))


def test_2d_round_trip(tmp_path):
    image = smooth_image(SHAPES[2])
    affine = np.diag([0.5, 0.7, 3.0, 1.0])
    path = io.save_nifti(image, tmp_path / "slice.nii.gz", affine)
    assert nib.load(path).shape == SHAPES[2]  # dim[0] = 2: ITK keeps a 2D file's direction
    again = io.load_nifti(path)
    assert torch.equal(again.image, image)
    np.testing.assert_allclose(again.affine, affine)
    assert again.spacing == pytest.approx((0.5, 0.7))


def test_flat_middle_axis_loads_as_2d_with_matching_affine(tmp_path):
    """A coronal slice stored (X, 1, Z): tensor (X, Z), affine columns reordered."""
    data = np.arange(5 * 7, dtype=np.float32).reshape(5, 1, 7)
    affine = np.array([[1.0, 0, 0, 3], [0, 2.0, 0, 4], [0, 0, 1.5, 5], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "coronal.nii.gz")
    image, new_affine, spacing = io.load_nifti(tmp_path / "coronal.nii.gz")
    assert image.shape == (1, 1, 5, 7)
    assert spacing == (1.0, 1.5)
    for i, k in [(0, 0), (4, 6), (2, 3)]:
        assert image[0, 0, i, k] == data[i, 0, k]
        np.testing.assert_allclose(new_affine @ [i, k, 0, 1], affine @ [i, 0, k, 1])
    # saving the 2D tensor with that affine and loading again gives the same tensor and affine
    path = io.save_nifti(image, tmp_path / "again.nii.gz", new_affine)
    again = io.load_nifti(path)
    assert torch.equal(again.image, image)
    np.testing.assert_allclose(again.affine, new_affine)


def test_trailing_singleton_axes_are_ignored(tmp_path):
    data = np.random.default_rng(0).random((4, 5, 6, 1), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    assert io.load_nifti(tmp_path / "v.nii").image.shape == (1, 1, 4, 5, 6)


# ---------------------------------------------------------------------------
# bad input: each error names the file and says what to do
# ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.nii.gz"):
        io.load_nifti(tmp_path / "nothere.nii.gz")


@pytest.mark.parametrize("name", ["notes.nii", "notes.nii.gz"])
def test_not_nifti(tmp_path, name):
    (tmp_path / name).write_text("these are not voxels\n" * 40)
    with pytest.raises(ValueError, match=f"{name}.*re-download or re-export"):
        io.load_nifti(tmp_path / name)


@pytest.mark.parametrize("name", ["cut.nii", "cut.nii.gz"])
def test_truncated_file(tmp_path, name):
    full = tmp_path / f"full_{name}"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4)), full)
    blob = full.read_bytes()
    (tmp_path / name).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=name):
        io.load_nifti(tmp_path / name)


def test_other_format_is_refused():
    with pytest.raises(ValueError, match="analyze.hdr.*not a NIfTI"):
        io.load_nifti(NIBABEL_DATA / "analyze.hdr")


def test_4d_volume_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.float32), np.eye(4)), tmp_path / "series.nii.gz")
    with pytest.raises(ValueError, match=r"series.nii.gz.*\(4, 5, 6, 3\).*slicer"):
        io.load_nifti(tmp_path / "series.nii.gz")


def test_float_labels_are_refused_but_integral_floats_accepted(tmp_path):
    values = np.random.default_rng(1).integers(0, 5, (4, 5, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / "ok.nii.gz")
    assert torch.equal(io.load_labels(tmp_path / "ok.nii.gz").image[0, 0], torch.from_numpy(values).long())
    values[1, 2, 3] = 2.5
    nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / "blurred.nii.gz")
    with pytest.raises(ValueError, match=r"blurred.nii.gz.*non-integer.*2.5.*\(1, 2, 3\)"):
        io.load_labels(tmp_path / "blurred.nii.gz")


def test_save_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "keep.nii.gz"
    first = smooth_image(SHAPES[3], seed=0)
    io.save_nifti(first, path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="keep.nii.gz.*overwrite=True"):
        io.save_nifti(smooth_image(SHAPES[3], seed=1), path)
    assert path.read_bytes() == before
    io.save_nifti(smooth_image(SHAPES[3], seed=1), path, overwrite=True)
    assert torch.equal(io.load_nifti(path).image, smooth_image(SHAPES[3], seed=1))


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "kept.nii.gz"
    io.save_nifti(smooth_image(SHAPES[3]), path)
    before = path.read_bytes()

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(io.nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_nifti(smooth_image(SHAPES[3], seed=3), path, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        io.save_nifti(smooth_image(SHAPES[3], seed=3), tmp_path / "new.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.nii.gz"]
    assert path.read_bytes() == before


def test_save_checks_path_and_affine(tmp_path):
    image = smooth_image(SHAPES[3])
    with pytest.raises(ValueError, match="image.png.*.nii"):
        io.save_nifti(image, tmp_path / "image.png")
    with pytest.raises(FileNotFoundError, match="missing"):
        io.save_nifti(image, tmp_path / "missing" / "a.nii.gz")
    with pytest.raises(ValueError, match="affine"):
        io.save_nifti(image, tmp_path / "a.nii.gz", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="one image"):
        io.save_nifti(image.expand(2, 1, *SHAPES[3]), tmp_path / "a.nii.gz")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# displacement fields
# ---------------------------------------------------------------------------


def test_voxel_field_round_trip(tmp_path, ndim):
    disp = random_field(SHAPES[ndim])
    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    path = io.save_nifti(disp, tmp_path / "disp.nii.gz", affine, field="voxels")
    assert nib.load(path).shape == (*SHAPES[ndim], *([1] if ndim == 2 else []), ndim)
    again = io.load_disp(path)
    torch.testing.assert_close(again.image, disp)
    np.testing.assert_allclose(again.affine, affine)


@pytest.mark.parametrize(
    "voxel_step, expected_lps",
    [((1, 0, 0), (2.0, 0, 0)),   # +i is towards Left on this grid: RAS x = -2, LPS x = +2
     ((0, 1, 0), (0, -3.0, 0)),  # +j is Anterior: RAS y = +3, LPS y = -3
     ((0, 0, 1), (0, 0, 4.0))],  # +k is Superior in both frames
)
def test_itk_field_analytic_constant_steps(tmp_path, voxel_step, expected_lps):
    shape = (4, 5, 3)
    disp = torch.tensor(voxel_step, dtype=torch.float32).view(1, 3, 1, 1, 1).expand(1, 3, *shape)
    path = io.save_nifti(disp, tmp_path / "warp.nii.gz", las_affine(), field="itk")
    img = nib.load(path)
    assert img.shape == (*shape, 1, 3)  # vector in the 5th dimension, time axis of length 1
    assert img.header.get_intent()[0] == "vector"
    assert int(img.header["intent_code"]) == 1007
    np.testing.assert_allclose(img.affine, las_affine())
    vectors = img.get_fdata()[:, :, :, 0, :]
    np.testing.assert_allclose(vectors, np.broadcast_to(expected_lps, vectors.shape), atol=1e-6)


def test_itk_field_maps_points_like_itk(tmp_path):
    """ITK reads the grid as p_LPS = F A i and transforms a point by adding the vector: the result must be
    the moving image's voxel i + d in the same LPS frame, for an oblique grid and a random field."""
    shape = (4, 5, 3)
    disp = random_field(shape, magnitude=2.0, seed=4)
    affine = oblique_affine()
    img = nib.load(io.save_nifti(disp, tmp_path / "warp.nii.gz", affine, field="itk"))
    u_lps = img.get_fdata()[:, :, :, 0, :]
    d = disp[0].double().numpy()
    for index in [(0, 0, 0), (3, 4, 2), (1, 2, 1)]:
        i = np.array(index, dtype=float)
        p_lps = LPS @ (img.affine @ [*i, 1])[:3]
        q_lps = LPS @ (affine @ [*(i + d[(slice(None), *index)]), 1])[:3]
        np.testing.assert_allclose(p_lps + u_lps[index], q_lps, atol=1e-4)


def test_mm_field_is_ras_displacement_vector(tmp_path):
    disp = random_field((4, 5, 3), seed=5)
    affine = oblique_affine()
    img = nib.load(io.save_nifti(disp, tmp_path / "ras.nii.gz", affine, field="mm"))
    assert int(img.header["intent_code"]) == 1006
    expected = np.einsum("ij,jxyz->xyzi", affine[:3, :3], disp[0].double().numpy())
    np.testing.assert_allclose(img.get_fdata()[:, :, :, 0, :], expected, atol=1e-4)


@pytest.mark.parametrize("field", ["voxels", "mm", "itk"])
def test_load_disp_reorients_vectors_with_the_grid(tmp_path, field):
    """Reorienting commutes with warping: warp the canonical image with the canonical field and compare with
    the canonical version of the warp done on the stored (LAS) grid."""
    shape = (6, 7, 5)
    image = smooth_image(shape, seed=2)
    disp = random_field(shape, magnitude=1.2, seed=6)
    affine = las_affine()
    io.save_nifti(image, tmp_path / "image.nii.gz", affine)
    io.save_nifti(warp(image, disp), tmp_path / "warped.nii.gz", affine)
    io.save_nifti(disp, tmp_path / "disp.nii.gz", affine, field=field)
    canonical_image = io.load_nifti(tmp_path / "image.nii.gz").image
    canonical_disp, disp_affine, _ = io.load_disp(tmp_path / "disp.nii.gz")
    np.testing.assert_allclose(disp_affine, io.load_nifti(tmp_path / "image.nii.gz").affine)
    expected = io.load_nifti(tmp_path / "warped.nii.gz").image
    torch.testing.assert_close(warp(canonical_image, canonical_disp), expected, atol=1e-5, rtol=1e-5)
    # on this grid only the first axis flips, so its component changes sign
    torch.testing.assert_close(canonical_disp[:, 0], -disp[:, 0].flip(1), atol=1e-5, rtol=1e-5)


def test_field_errors(tmp_path):
    with pytest.raises(ValueError, match="3D volumes.*field='voxels' or field='itk'"):
        io.save_nifti(random_field(SHAPES[2]), tmp_path / "a.nii.gz", field="mm")
    with pytest.raises(ValueError, match="field"):
        io.save_nifti(random_field(SHAPES[3]), tmp_path / "a.nii.gz", field="ants")
    with pytest.raises(ValueError, match="channel"):
        io.save_nifti(random_field(SHAPES[3])[:, :2], tmp_path / "a.nii.gz", field="voxels")
    with pytest.raises(ValueError, match="anatomical.nii.*not a displacement field"):
        io.load_disp(ANATOMICAL)


# ---------------------------------------------------------------------------
# resampling through world coordinates
# ---------------------------------------------------------------------------


def test_resample_onto_own_grid_is_identity(ndim):
    image = smooth_image(SHAPES[ndim])
    affine = oblique_affine()
    out = io.resample_like(image, affine, SHAPES[ndim], affine)
    torch.testing.assert_close(out, image)


def test_resample_to_canonical_grid_equals_reorientation():
    raw = io.load_nifti(ANATOMICAL, canonical=False)
    canonical = io.load_nifti(ANATOMICAL)
    # float64: intensities reach 3e4, float32 grid coordinates would blur the last digits
    out = io.resample_like(raw.image.double(), raw.affine, canonical.image.shape[2:], canonical.affine)
    torch.testing.assert_close(out, canonical.image.double())


def test_resample_world_translation_shifts_voxels(ndim):
    shape = SHAPES[ndim]
    image = smooth_image(shape)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    target = affine.copy()
    target[:3, 3] = [4.0, -3.0, 0.0] if ndim == 2 else [4.0, -3.0, 8.0]  # +2, -1 (, +2) voxels
    out = io.resample_like(image, affine, shape, target)
    shift = [2, -1, 2][:ndim]
    expected = torch.zeros_like(image)
    dst = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, shape, strict=True))
    src = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shift, shape, strict=True))
    expected[(..., *dst)] = image[(..., *src)]
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("padding, scipy_mode", [("zeros", "grid-constant"), ("border", "nearest")])
def test_resample_matches_scipy_on_an_oblique_coarser_grid(ndim, padding, scipy_mode):
    shape = SHAPES[ndim]
    image = smooth_image(shape, seed=3, dtype=torch.float64)
    affine = np.diag([1.0, 1.2, 1.5, 1.0])
    target_affine = oblique_affine()
    target_affine[:3, 3] = [1.0, -4.0, 0.0]
    if ndim == 2:  # keep the target in the source plane: rotation about the through-plane axis only
        target_affine[2, :3] = [0.0, 0.0, 1.5]
    target_shape = tuple(n - 2 for n in shape)
    out = io.resample_like(image, affine, target_shape, target_affine, padding=padding)
    full = np.linalg.inv(affine) @ target_affine
    keep = list(range(ndim))
    expected = scipy.ndimage.affine_transform(
        image[0, 0].numpy(), full[keep][:, keep], offset=full[keep, 3], output_shape=target_shape,
        order=1, mode=scipy_mode, cval=0.0)
    np.testing.assert_allclose(out[0, 0].numpy(), expected, atol=1e-10)


def test_resample_labels_stay_integer_and_match_scipy_nearest():
    g = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 6, (1, 1, 8, 9, 7), generator=g)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    target_affine = oblique_affine()
    target_affine[:3, :3] /= 2.0
    target_affine[:3, 3] = [3.1, 0.2, 0.3]
    out = io.resample_like(labels, affine, (6, 7, 5), target_affine)
    assert out.dtype == labels.dtype
    full = np.linalg.inv(affine) @ target_affine
    expected = scipy.ndimage.affine_transform(labels[0, 0].numpy(), full[:3, :3], offset=full[:3, 3],
                                              output_shape=(6, 7, 5), order=0, mode="grid-constant")
    np.testing.assert_array_equal(out[0, 0].numpy(), expected)


def test_resample_errors():
    labels = torch.zeros(1, 1, 4, 5, dtype=torch.long)
    with pytest.raises(TypeError, match="nearest"):
        io.resample_like(labels, np.eye(4), (4, 5), np.eye(4), mode="bilinear")
    tilted = np.eye(4)
    tilted[2, 0] = 0.5  # the target slice leaves the source plane
    with pytest.raises(ValueError, match="plane"):
        io.resample_like(labels.float(), np.eye(4), (4, 5), tilted)
    with pytest.raises(ValueError, match="target_shape"):
        io.resample_like(labels.float(), np.eye(4), (4, 5, 6), np.eye(4))


# ---------------------------------------------------------------------------
# intensities and sizes
# ---------------------------------------------------------------------------


def test_normalize_intensity_matches_numpy_percentiles():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 2, 9, 11, 5, generator=g, dtype=torch.float64) * 100 + 30
    out = io.normalize_intensity(image, low=2.0, high=97.0)
    for b in range(2):
        for c in range(2):
            values = image[b, c].numpy()
            lo, hi = np.percentile(values, [2.0, 97.0])
            expected = (np.clip(values, lo, hi) - lo) / (hi - lo)
            np.testing.assert_allclose(out[b, c].numpy(), expected, atol=1e-12)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0


def test_normalize_intensity_edge_cases():
    flat = torch.full((1, 1, 4, 4), 7.0)
    assert torch.equal(io.normalize_intensity(flat), torch.zeros_like(flat))
    ramp = torch.arange(10.0).view(1, 1, 2, 5)
    torch.testing.assert_close(io.normalize_intensity(ramp, 0, 100), ramp / 9)
    with pytest.raises(ValueError, match="low < high"):
        io.normalize_intensity(ramp, 50, 10)
    with pytest.raises(TypeError, match="float"):
        io.normalize_intensity(ramp.long())
    with pytest.raises(ValueError, match="NaN"):
        io.normalize_intensity(torch.tensor([[[[float("nan"), 1.0]]]]))


@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_pad_to_multiple_is_exactly_undone(ndim, multiple):
    x = random_field(SHAPES[ndim], seed=9)
    padded, padding = io.pad_to_multiple(x, multiple, value=0.0)
    assert all(n % multiple == 0 for n in padded.shape[2:])
    assert all(n - m < multiple for n, m in zip(padded.shape[2:], SHAPES[ndim], strict=True))
    assert torch.equal(io.unpad(padded, padding), x)
    assert float(padded.abs().sum()) == pytest.approx(float(x.abs().sum()))  # only zeros were added


def test_pad_splits_evenly():
    padded, padding = io.pad_to_multiple(torch.ones(1, 1, 13, 16), 16, value=-1.0)
    assert padded.shape == (1, 1, 16, 16)
    assert padding == io.Padding(before=(1, 0), after=(2, 0))
    assert torch.equal(padded[0, 0, :1], -torch.ones(1, 16))
    assert torch.equal(padded[0, 0, 14:], -torch.ones(2, 16))


def test_unpad_errors():
    with pytest.raises(ValueError, match="Padding that pad_to_multiple returned"):
        io.unpad(torch.ones(1, 1, 4, 4), io.Padding((1, 1, 1), (0, 0, 0)))
    with pytest.raises(ValueError, match="removes more"):
        io.unpad(torch.ones(1, 1, 4, 4), io.Padding((3, 0), (2, 0)))


# ---------------------------------------------------------------------------
# 2D fields in ITK's convention, one interpolation through headers and a field
# ---------------------------------------------------------------------------


def axial_affine(degrees=8.0):
    """A 2D slice in the world x-y plane, rotated and with unequal voxel sides (ITK reads it as 2D)."""
    a = math.radians(degrees)
    return np.array([[1.5 * math.cos(a), -2.0 * math.sin(a), 0, -30.0],
                     [1.5 * math.sin(a), 2.0 * math.cos(a), 0, 20.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1]])


def test_2d_itk_field_layout_and_round_trip(tmp_path):
    disp = random_field((10, 13), seed=5)
    affine = axial_affine()
    io.save_nifti(disp, tmp_path / "d.nii.gz", affine, field="itk")
    img = nib.load(tmp_path / "d.nii.gz")
    assert img.shape == (10, 13, 1, 1, 2) and img.header.get_intent()[0] == "vector"
    # u_LPS = diag(-1, -1) @ M2 @ d at one voxel, by hand
    d = disp[0, :, 4, 7].double().numpy()
    expected = np.array([-1.0, -1.0]) * (affine[:2, :2] @ d)
    np.testing.assert_allclose(np.asarray(img.dataobj)[4, 7, 0, 0], expected, rtol=1e-5, atol=1e-5)
    back = io.load_disp(tmp_path / "d.nii.gz")
    assert back.image.shape == (1, 2, 10, 13) and np.allclose(back.affine, affine)
    torch.testing.assert_close(back.image, disp, atol=1e-5, rtol=1e-5)


def test_2d_itk_field_needs_an_axial_slice(tmp_path):
    coronal = np.array([[1.5, 0, 0, 0], [0, 0, 2.0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1.0]])  # axis 1 along z
    with pytest.raises(ValueError, match="not in the world x-y plane.*field='voxels'"):
        io.save_nifti(random_field((10, 13)), tmp_path / "d.nii.gz", coronal, field="itk")
    field = nib.Nifti1Image(np.zeros((10, 13, 1, 1, 2), np.float32), coronal)
    field.header.set_intent("vector")
    nib.save(field, tmp_path / "coronal.nii.gz")
    with pytest.raises(ValueError, match="not in the world x-y plane"):
        io.load_disp(tmp_path / "coronal.nii.gz")


def test_2d_itk_field_is_applied_by_simpleitk_like_warp(tmp_path):
    """Our 2D field read by SimpleITK as a 2D DisplacementFieldTransform moves the image as warp does;
    a 2D field written by SimpleITK, read by load_disp, moves it as SimpleITK does."""
    sitk = pytest.importorskip("SimpleITK")
    image, disp, affine = 100 * smooth_image((30, 36), seed=2), random_field((30, 36), 2.5, 3), axial_affine()
    io.save_nifti(image, tmp_path / "i.nii.gz", affine)
    io.save_nifti(disp, tmp_path / "d.nii.gz", affine, field="itk")
    reference = sitk.ReadImage(str(tmp_path / "i.nii.gz"), sitk.sitkFloat64)
    assert reference.GetDimension() == 2  # a true 2D NIfTI: ITK (and ANTs' -d 2) keep its direction
    field = sitk.ReadImage(str(tmp_path / "d.nii.gz"), sitk.sitkVectorFloat64)
    assert field.GetDimension() == 2
    moved = sitk.Resample(reference, reference, sitk.DisplacementFieldTransform(field), sitk.sitkLinear, 0.0)
    theirs = torch.from_numpy(sitk.GetArrayFromImage(moved).T.copy())[None, None].float()
    ours = io.resample_like(image, affine, (30, 36), affine, disp=disp, padding="itk")
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0)
    assert float((warp(image, disp) - theirs).abs().max()) > 1.0  # the field moves voxels out of the image

    # the other way: a field made by SimpleITK
    values = np.random.default_rng(0).normal(0.0, 1.5, (36, 30, 2))  # sitk arrays are (y, x, component)
    made = sitk.GetImageFromArray(values, isVector=True)
    made.CopyInformation(reference)
    sitk.WriteImage(made, str(tmp_path / "sitk.nii.gz"))
    loaded = io.load_disp(tmp_path / "sitk.nii.gz")
    moved = sitk.Resample(reference, reference, sitk.DisplacementFieldTransform(made), sitk.sitkLinear, 0.0)
    theirs = torch.from_numpy(sitk.GetArrayFromImage(moved).T.copy())[None, None].float()
    ours = io.resample_like(image, affine, (30, 36), affine, disp=loaded.image, padding="itk")
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0)


def test_resample_through_a_field_is_warp_on_one_grid(ndim):
    shape = SHAPES[ndim]
    image, disp = smooth_image(shape, seed=1), random_field(shape, 2.0, seed=2)
    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = [3.0, -4.0, 5.0]
    for padding in ("zeros", "border"):
        torch.testing.assert_close(io.resample_like(image, affine, shape, affine, disp=disp, padding=padding),
                                   warp(image, disp, padding=padding), atol=1e-5, rtol=1e-5)


def test_resample_through_a_field_and_headers_interpolates_once():
    """A linear ramp is interpolated exactly by one linear interpolation, so the result must equal the
    ramp evaluated at the world point of x + disp(x); resampling first and warping after does not."""
    source_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    target_affine = np.array([[1.5, 0, 0, 0.25], [0, 1.5, 0, 0.5], [0, 0, 1.5, 0], [0, 0, 0, 1]])
    source_shape, target_shape = (40, 44), (24, 26)
    i, j = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in source_shape], indexing="ij")
    ramp = torch.from_numpy(3.0 * i + 2.0 * j)[None, None]  # value at world point (x, y): 3 x + 2 y
    disp = random_field(target_shape, 1.2, seed=4).double()
    ti, tj = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in target_shape], indexing="ij")
    x = 1.5 * (ti + disp[0, 0].numpy()) + 0.25
    y = 1.5 * (tj + disp[0, 1].numpy()) + 0.5
    inside = (x > 1) & (y > 1) & (x < 38) & (y < 42)
    assert inside.mean() > 0.8
    once = io.resample_like(ramp, source_affine, target_shape, target_affine, disp=disp)
    np.testing.assert_allclose(once[0, 0].numpy()[inside], (3.0 * x + 2.0 * y)[inside], atol=1e-9)
    # a smooth but curved image tells one interpolation from two
    curved = torch.sin(ramp / 7.0)
    once = io.resample_like(curved, source_affine, target_shape, target_affine, disp=disp)[0, 0].numpy()
    twice = warp(io.resample_like(curved, source_affine, target_shape, target_affine), disp)[0, 0].numpy()
    exact = np.sin((3.0 * x + 2.0 * y) / 7.0)
    assert np.abs(once - exact)[inside].max() < 0.5 * np.abs(twice - exact)[inside].max()


def test_itk_padding_keeps_the_edge_for_half_a_voxel():
    image = torch.full((1, 1, 5, 6), 7.0)
    shift = torch.zeros(1, 2, 5, 6)
    shift[:, 0] = torch.tensor([0.0, 0.0, 0.0, 1.4, 1.6])[:, None]  # rows 3, 4 read 4.4 and 5.6
    moved = io.resample_like(image, np.eye(4), (5, 6), np.eye(4), disp=shift, padding="itk")
    assert torch.equal(moved[0, 0, :, 0], torch.tensor([7.0, 7.0, 7.0, 7.0, 0.0]))
    zeros = io.resample_like(image, np.eye(4), (5, 6), np.eye(4), disp=shift, padding="zeros")
    assert 0.0 < float(zeros[0, 0, 3, 0]) < 7.0  # grid_sample's zeros blends the last half voxel


def test_same_grid_and_grid_offset():
    affine = np.array([[1.5, 0, 0, -20.0], [0, 1.5, 0, -25.0], [0, 0, 1.5, 10.0], [0, 0, 0, 1]])
    shape = (24, 28, 20)
    assert io.same_grid(affine, shape, affine.copy(), shape)
    assert not io.same_grid(affine, shape, affine, (24, 28, 21))
    shifted = affine.copy()
    shifted[:3, 3] += [6.0, 0, 0]
    assert io.grid_offset(shifted, affine, shape) == pytest.approx(6.0)
    assert not io.same_grid(shifted, shape, affine, shape)
    a = math.radians(8.0)
    rotation = np.eye(4)
    rotation[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    corners = [affine @ np.array([i, j, k, 1.0]) for i in (0, 23) for j in (0, 27) for k in (0, 19)]
    expected = max(np.linalg.norm(rotation @ c - c) for c in corners)
    assert io.grid_offset(rotation @ affine, affine, shape) == pytest.approx(expected)
    nudged = affine.copy()
    nudged[:3] += 1e-6
    assert io.same_grid(nudged, shape, affine, shape)  # within the tolerance


def test_resample_field_errors():
    image = smooth_image((8, 8))
    with pytest.raises(ValueError, match="target grid"):
        io.resample_like(image, np.eye(4), (8, 9), np.eye(4), disp=torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="padding"):
        io.resample_like(image, np.eye(4), (8, 8), np.eye(4), padding="mirror")


# ---------------------------------------------------------------------------
# faults: headers that declare more than the file holds, full disks
# ---------------------------------------------------------------------------


def declared_only(path: Path, shape, body: bytes) -> Path:
    """A NIfTI file whose header declares ``shape`` uint8 voxels but that holds only ``body``."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape(shape)
    data = header.binaryblock + b"\0" * 4 + body
    if path.name.endswith(".gz"):
        import gzip

        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_a_grid_larger_than_the_file_is_refused_before_reading(tmp_path, name):
    """2048^3 declared in a file of a few hundred bytes: one clear error, no attempt to allocate 32 GB."""
    path = declared_only(tmp_path / name, (2048, 2048, 2048), b"\0" * 100)
    for load in (io.load_nifti, io.load_labels, io.nifti_shape):
        with pytest.raises(ValueError, match=r"declares 2048x2048x2048 voxels of uint8 \(8\.0 GB\)"):
            load(path)


def test_a_file_that_fits_on_disk_but_not_in_memory_is_refused(tmp_path, monkeypatch):
    import regedu.memory

    path = declared_only(tmp_path / "full.nii", (40, 40, 40), b"\0" * 40**3)
    assert io.load_nifti(path).image.shape == (1, 1, 40, 40, 40)
    monkeypatch.setattr(regedu.memory, "available_bytes", lambda device=None: 100_000)
    message = r"full\.nii.*needs about 312\.5 kB of memory but 97\.7 kB are free"
    with pytest.raises(MemoryError, match=message):
        io.load_nifti(path)


def test_nifti_shape_reads_the_shape_load_nifti_gives_from_the_header(tmp_path):
    assert io.nifti_shape(ANATOMICAL) == tuple(io.load_nifti(ANATOMICAL).image.shape[2:])
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((9, 1, 7), dtype=np.float32), las_affine()), flat)
    assert io.nifti_shape(flat) == tuple(io.load_nifti(flat).image.shape[2:]) == (9, 7)


def test_a_full_disk_is_reported_with_the_users_path(tmp_path, monkeypatch):
    import errno

    def disk_full(img, filename):
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    monkeypatch.setattr(io.nib, "save", disk_full)
    path = tmp_path / "out.nii.gz"
    with pytest.raises(OSError, match="could not write .*out.nii.gz: the disk holding .* is full") as caught:
        io.save_nifti(smooth_image(SHAPES[2]), path)
    assert ".partial" not in str(caught.value) and caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_degenerate_affine_says_how_to_repair_the_header(tmp_path):
    img = nib.Nifti1Image(np.ones((6, 5, 4), dtype=np.float32), None)
    img.set_sform(np.zeros((4, 4)), code=1)
    path = tmp_path / "zero_sform.nii.gz"
    nib.save(img, path)
    with pytest.raises(io.DegenerateAffineError, match="fslorient -copyqform2sform"):
        io.load_nifti(path)
    assert io.load_nifti(path, canonical=False).image.shape == (1, 1, 6, 5, 4)
