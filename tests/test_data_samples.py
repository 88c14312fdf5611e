"""regedu.data.samples: the MNI template that ships inside nilearn, offline."""

import socket
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from regedu.data import TISSUE_NAMES, brain_label_names, brain_slice, brain_volume, load_brain, samples


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("regedu.data.samples tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _index_to_mm(affine, index):
    return affine[:3, :3] @ np.asarray(index, dtype=float) + affine[:3, 3]


def test_loads_offline_without_cache(no_network):
    samples._load_arrays.cache_clear()
    samples._load_parcels.cache_clear()
    brain = load_brain(2, parcels=True)
    assert brain.image.shape == (1, 1, 99, 117, 95)


@pytest.mark.parametrize("resolution, shape", [(1, (197, 233, 189)), (2, (99, 117, 95))])
def test_load_brain_shapes_types_and_ranges(resolution, shape):
    brain = load_brain(resolution)
    assert brain.image.shape == brain.labels.shape == brain.mask.shape == (1, 1, *shape)
    assert brain.image.dtype == torch.float32
    assert brain.labels.dtype == torch.int64
    assert brain.mask.dtype == torch.bool
    assert float(brain.image.min()) == 0.0 and float(brain.image.max()) == 1.0
    assert sorted(torch.unique(brain.labels).tolist()) == sorted(TISSUE_NAMES) == [0, 1, 2, 3]
    assert torch.equal(brain.mask, brain.labels > 0)
    assert brain.spacing == (float(resolution),) * 3
    assert brain.label_names == TISSUE_NAMES


@pytest.mark.parametrize("resolution", [1, 2])
def test_affine_is_canonical_ras(resolution):
    affine = load_brain(resolution).affine
    assert affine.shape == (4, 4)
    assert np.all(np.diag(affine)[:3] > 0)
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    assert np.allclose(affine[:3, :3], np.eye(3) * resolution)


def test_one_mm_matches_the_file_read_by_nibabel():
    path = samples._template_folder() / samples._FILES["t1"]
    img = nib.as_closest_canonical(nib.load(str(path)))
    expected = np.asarray(img.dataobj, dtype=np.float32) / 255.0
    brain = load_brain(1)
    np.testing.assert_array_equal(brain.image[0, 0].numpy(), expected)
    np.testing.assert_allclose(brain.affine, img.affine)


def test_one_mm_tissues_are_the_argmax_of_csf_gm_wm():
    folder = samples._template_folder()
    gm, wm = (np.asarray(nib.load(str(folder / samples._FILES[k])).dataobj, dtype=np.float32) / 255
              for k in ("gm", "wm"))
    brain = load_brain(1)
    csf = np.clip(1 - gm - wm, 0, 1)
    expected = np.argmax(np.stack([csf, gm, wm]), axis=0) + 1
    expected[~brain.mask[0, 0].numpy()] = 0
    np.testing.assert_array_equal(brain.labels[0, 0].numpy(), expected)


def test_two_mm_is_the_block_average_of_one_mm():
    fine, coarse = load_brain(1), load_brain(2)
    padded = np.pad(fine.image[0, 0].numpy(), [(0, 1), (0, 1), (0, 1)])  # 198 x 234 x 190
    blocks = padded.reshape(99, 2, 117, 2, 95, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(coarse.image[0, 0].numpy(), blocks / blocks.max(), atol=1e-6)
    # a 2 mm voxel sits at the centre of its eight 1 mm voxels
    children = [_index_to_mm(fine.affine, (2 * 10 + a, 2 * 20 + b, 2 * 30 + c))
                for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    np.testing.assert_allclose(_index_to_mm(coarse.affine, (10, 20, 30)), np.mean(children, axis=0))


def test_cache_returns_fresh_copies():
    first = load_brain(2)
    first.image.fill_(5.0)
    first.labels.fill_(7)
    second = load_brain(2)
    assert float(second.image.max()) == 1.0
    assert int(second.labels.max()) == 3


def test_missing_nilearn_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "nilearn", None)  # makes `import nilearn` fail
    samples._load_arrays.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install nilearn"):
            load_brain(2)
    finally:
        samples._load_arrays.cache_clear()


def test_parcels_refine_the_tissues_by_geometric_rules():
    tissues, parcels = load_brain(2), load_brain(2, parcels=True)
    names = brain_label_names(parcels=True)
    assert parcels.label_names == names and len(names) == 18
    assert sorted(torch.unique(parcels.labels).tolist()) == list(range(18))
    as_tissue = torch.tensor([0, 1] + [2] * 8 + [3] * 8)[parcels.labels]
    assert torch.equal(as_tissue, tissues.labels)
    # left parcels lie at x < 0 mm (RAS), right ones at x >= 0; the template is symmetric
    x_mm = (torch.arange(99) * parcels.affine[0, 0] + parcels.affine[0, 3]).view(1, 1, -1, 1, 1)
    for value, name in names.items():
        inside = parcels.labels == value
        if "left" in name:
            assert float(x_mm.expand_as(inside)[inside].max()) < 0
            right = parcels.labels == value + 4
            assert abs(int(inside.sum()) - int(right.sum())) < 0.05 * int(inside.sum())
        if "right" in name:
            assert float(x_mm.expand_as(inside)[inside].min()) >= 0


def test_brain_slice_default_is_the_axial_level_10_mm_around_the_brain():
    volume, brain = load_brain(2), brain_slice()
    assert brain.image.shape == brain.labels.shape == brain.mask.shape == (1, 1, 96, 112)
    assert brain.spacing == (2.0, 2.0)
    z_mm = _index_to_mm(brain.affine, (0, 0, 0))[2]
    assert abs(z_mm - 10.0) <= 1.0
    origin = _index_to_mm(brain.affine, (0, 0, 0))  # where the slice's voxel (0, 0) sits in the volume
    sx, sy, z = np.linalg.solve(volume.affine[:3, :3], origin - volume.affine[:3, 3]).round().astype(int)
    # every brain voxel of that slice is kept, and the voxel values follow the affine
    assert int(brain.mask.sum()) == int(volume.mask[..., z].sum()) > 0
    for i, j in [(48, 56), (20, 70), (70, 30)]:
        assert brain.image[0, 0, i, j] == volume.image[0, 0, i + sx, j + sy, z]
        assert brain.labels[0, 0, i, j] == volume.labels[0, 0, i + sx, j + sy, z]


def test_brain_slice_options():
    assert brain_slice(z=30, crop_to=(64, 80)).image.shape == (1, 1, 64, 80)
    assert brain_slice(resolution=1).image.shape == (1, 1, 192, 224)
    assert int(brain_slice(parcels=True).labels.max()) > 3
    with pytest.raises(ValueError, match="slice index"):
        brain_slice(z=95)
    with pytest.raises(ValueError, match="crop_to"):
        brain_slice(crop_to=(96, 112, 96))
    with pytest.raises(ValueError, match="resolution"):
        load_brain(3)


def test_brain_volume_keeps_the_whole_brain():
    full, brain = load_brain(2), brain_volume()
    assert brain.image.shape == (1, 1, 96, 112, 96)
    assert all(s % 16 == 0 for s in brain.image.shape[2:])
    assert int(brain.mask.sum()) == int(full.mask.sum())
    assert float(brain.image.sum()) == pytest.approx(float(full.image.sum()), rel=1e-6)
    start = np.linalg.solve(full.affine[:3, :3], brain.affine[:3, 3] - full.affine[:3, 3]).round().astype(int)
    i, j, k = 48, 56, 48
    assert brain.labels[0, 0, i, j, k] == full.labels[0, 0, i + start[0], j + start[1], k + start[2]]
    assert nib.aff2axcodes(brain.affine) == ("R", "A", "S")


def test_brain_follows_the_device_argument():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    brain = brain_slice(device=device)
    assert brain.image.device.type == brain.labels.device.type == device
