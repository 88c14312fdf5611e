"""regedu.data.datasets: synthetic-subject pairs, SynthMorph pairs and pairs of NIfTI files."""

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from regedu import metrics, warps
from regedu.data import NiftiPairs, SynthMorphPairs, TemplatePairs, item_seed
from regedu.data import synthetic as S

KEYS = {"moving", "fixed", "moving_labels", "fixed_labels", "disp"}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def _assert_same_items(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _small_template(shape):
    template = S.disk(shape, min(shape) / 3) * 0.6 + S.disk(shape, min(shape) / 6) * 0.4
    return template, (template * 10).round().long()


def test_item_seed_depends_on_both_numbers():
    seeds = {item_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150
    assert item_seed(4, 7) == item_seed(4, 7)


# ---------------------------------------------------------------------------
# TemplatePairs
# ---------------------------------------------------------------------------


def test_atlas_to_subject_on_the_brain_slice():
    ds = TemplatePairs(length=5, mode="atlas_to_subject", seed=0)
    assert len(ds) == 5
    item = ds[2]
    assert set(item) == KEYS
    assert item["moving"].shape == item["fixed"].shape == (1, 96, 112)
    assert item["moving_labels"].dtype == item["fixed_labels"].dtype == torch.int64
    assert item["disp"].shape == (2, 96, 112)
    assert torch.equal(item["moving"], ds.template[0])
    fixed_labels = warps.warp_labels(item["moving_labels"][None], item["disp"][None])
    assert torch.equal(fixed_labels[0], item["fixed_labels"])
    assert float(item["fixed"].min()) >= 0 and float(item["fixed"].max()) <= 1


@pytest.mark.parametrize("ndim", [2, 3])
def test_subject_to_subject_ground_truth(ndim):
    shape = (40, 48) if ndim == 2 else (24, 28, 24)
    template, labels = _small_template(shape)
    ds = TemplatePairs(length=4, mode="subject_to_subject", template=template, template_labels=labels,
                       magnitude=2.0, smoothness=8.0, gamma=0, bias=0, noise=0, seed=1)
    item = ds[1]
    assert set(item) == KEYS and item["disp"].shape == (ndim, *shape)
    moving, fixed, disp = item["moving"][None], item["fixed"][None], item["disp"][None]
    assert torch.equal(warps.warp_labels(item["moving_labels"][None], disp)[0], item["fixed_labels"])
    # without intensity changes, warping moving by the true field gives fixed up to interpolation
    error_true = float(_interior(warps.warp(moving, disp) - fixed, 3).abs().mean())
    error_none = float(_interior(moving - fixed, 3).abs().mean())
    assert error_true < 0.25 * error_none
    assert float(warps.jacobian_det(disp).min()) > 0


def _interior(x, margin):
    return x[(..., *[slice(margin, -margin)] * (x.dim() - 2))]


def test_template_pairs_are_deterministic_per_index():
    ds = TemplatePairs(length=3, mode="subject_to_subject", seed=5)
    first = ds[0]
    _assert_same_items(first, ds[0])
    _assert_same_items(first, TemplatePairs(length=3, mode="subject_to_subject", seed=5)[0])
    assert not torch.equal(first["disp"], ds[1]["disp"])
    other_seed = TemplatePairs(length=3, mode="subject_to_subject", seed=6)
    assert not torch.equal(first["disp"], other_seed[0]["disp"])
    _assert_same_items(ds[-1], ds[2])
    with pytest.raises(IndexError):
        ds[3]


def test_template_pairs_batch_with_a_dataloader():
    loader = DataLoader(TemplatePairs(length=4, seed=0, parcels=True), batch_size=2)
    batch = next(iter(loader))
    assert batch["moving"].shape == batch["fixed"].shape == (2, 1, 96, 112)
    assert batch["disp"].shape == (2, 2, 96, 112)
    assert int(batch["moving_labels"].max()) > 3  # parcels, not just tissues
    dice_true = metrics.dice(warps.warp_labels(batch["moving_labels"], batch["disp"]), batch["fixed_labels"])
    assert float(torch.nanmean(dice_true)) == 1.0


@CUDA
def test_synthetic_datasets_generate_on_the_gpu_the_same_items():
    template, labels = _small_template((32, 40))
    for make in (lambda device: TemplatePairs(2, "subject_to_subject", template=template,
                                              template_labels=labels, device=device),
                 lambda device: SynthMorphPairs(2, shape=(32, 40), device=device)):
        on_cpu, on_gpu = make(None)[1], make("cuda")[1]
        assert all(value.device.type == "cuda" for value in on_gpu.values())
        assert torch.allclose(on_cpu["disp"], on_gpu["disp"].cpu(), atol=1e-4)
        labels_agree = (on_cpu["fixed_labels"] == on_gpu["fixed_labels"].cpu()).float().mean()
        assert float(labels_agree) > 0.99  # rounding may move a voxel or two at a boundary


def test_template_pairs_arguments():
    with pytest.raises(ValueError, match="mode"):
        TemplatePairs(mode="subject_to_atlas")
    with pytest.raises(ValueError, match="ndim"):
        TemplatePairs(ndim=4)
    with pytest.raises(ValueError, match="length"):
        TemplatePairs(length=0)


# ---------------------------------------------------------------------------
# SynthMorphPairs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(48, 56), (16, 20, 16)], ids=["2d", "3d"])
def test_synthmorph_pairs(shape):
    ds = SynthMorphPairs(length=3, shape=shape, num_labels=8, magnitude=3.0, smoothness=8.0, seed=0)
    item = ds[0]
    assert set(item) == KEYS
    assert item["moving"].shape == item["fixed"].shape == item["moving_labels"].shape == (1, *shape)
    assert item["disp"].shape == (len(shape), *shape)
    assert int(item["moving_labels"].max()) < 8
    fixed_labels = warps.warp_labels(item["moving_labels"][None], item["disp"][None])
    assert torch.equal(fixed_labels[0], item["fixed_labels"])
    for key in ("moving", "fixed"):
        assert float(item[key].min()) >= 0 and float(item[key].max()) <= 1
    assert float(warps.jacobian_det(item["disp"][None]).min()) > 0
    _assert_same_items(item, ds[0])
    assert not torch.equal(item["moving_labels"], ds[1]["moving_labels"])
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["moving"].shape == (3, 1, *shape)


def test_synthmorph_arguments():
    with pytest.raises(ValueError, match="shape"):
        SynthMorphPairs(shape=(64,))
    with pytest.raises(ValueError, match="num_labels"):
        SynthMorphPairs(num_labels=1)


# ---------------------------------------------------------------------------
# NiftiPairs
# ---------------------------------------------------------------------------

SHAPE = (10, 12, 8)


def _save(path, array, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        _save(tmp_path / f"{name}.nii.gz", (rng.random(SHAPE) * 300).astype(np.float32))
        _save(tmp_path / f"{name}_labels.nii.gz", rng.integers(0, 4, SHAPE).astype(np.uint8))
    return tmp_path


def test_folder_gives_every_ordered_pair_with_labels(folder):
    ds = NiftiPairs(folder)
    assert len(ds) == 6
    item = ds[0]
    assert set(item) == {"moving", "fixed", "moving_labels", "fixed_labels"}
    assert item["moving"].shape == item["moving_labels"].shape == (1, *SHAPE)
    assert item["moving"].dtype == torch.float32 and item["moving_labels"].dtype == torch.int64
    assert float(item["moving"].min()) == 0 and float(item["moving"].max()) == 1  # normalised
    expected = np.asarray(nib.load(str(folder / "a_labels.nii.gz")).dataobj)
    np.testing.assert_array_equal(item["moving_labels"][0].numpy(), expected)
    assert torch.equal(ds[0]["moving"], ds[0]["moving"])
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["fixed"].shape == (2, 1, *SHAPE)


def test_list_and_csv_of_pairs(folder):
    pairs = [("a.nii.gz", "b.nii.gz"), ("b.nii.gz", "c.nii.gz", "b_labels.nii.gz", None)]
    listed = NiftiPairs(pairs, root=folder)
    assert len(listed) == 2
    assert set(listed[0]) == {"moving", "fixed"}
    assert set(listed[1]) == {"moving", "fixed", "moving_labels"}
    (folder / "pairs.csv").write_text(
        "moving,fixed,moving_labels,fixed_labels\n"
        "a.nii.gz,c.nii.gz,a_labels.nii.gz,c_labels.nii.gz\n"
        f"{folder / 'b.nii.gz'},a.nii.gz,,\n"
    )
    from_csv = NiftiPairs(folder / "pairs.csv")
    assert len(from_csv) == 2
    assert set(from_csv[0]) == {"moving", "fixed", "moving_labels", "fixed_labels"}
    assert set(from_csv[1]) == {"moving", "fixed"}
    assert torch.equal(from_csv[1]["fixed"], listed[0]["moving"])
    dicts = NiftiPairs([{"moving": folder / "a.nii.gz", "fixed": folder / "b.nii.gz"}])
    assert torch.equal(dicts[0]["fixed"], listed[0]["fixed"])


def test_nifti_pairs_preprocessing(folder):
    ds = NiftiPairs(folder, pad_multiple=16, normalize=False)
    item = ds[0]
    assert item["moving"].shape == item["moving_labels"].shape == (1, 16, 16, 16)
    assert float(item["moving"].max()) > 1  # raw intensities kept


def test_nifti_pairs_are_reoriented_to_ras(tmp_path):
    array = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])  # a file stored left-to-right reversed (LAS)
    _save(tmp_path / "las.nii.gz", array, flipped)
    _save(tmp_path / "ras.nii.gz", array[::-1].copy())
    item = NiftiPairs([("las.nii.gz", "ras.nii.gz")], root=tmp_path, normalize=False)[0]
    assert torch.equal(item["moving"], item["fixed"])


def test_empty_or_missing_inputs_get_clear_errors(tmp_path, folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds 0 NIfTI image"):
        NiftiPairs(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        NiftiPairs(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        NiftiPairs([("a.nii.gz", "missing.nii.gz")], root=folder)
    with pytest.raises(ValueError, match="empty"):
        NiftiPairs([])
    (folder / "bad.csv").write_text("source,target\na.nii.gz,b.nii.gz\n")
    with pytest.raises(ValueError, match="'moving' and 'fixed'"):
        NiftiPairs(folder / "bad.csv")
    (folder / "none.csv").write_text("moving,fixed\n")
    with pytest.raises(ValueError, match="lists no pairs"):
        NiftiPairs(folder / "none.csv")
    with pytest.raises(ValueError, match="each pair"):
        NiftiPairs([("a.nii.gz",)], root=folder)
    with pytest.raises(TypeError, match="pairs"):
        NiftiPairs(3)


def test_bad_files_are_named_up_front(folder):
    _save(folder / "float_labels.nii.gz", np.full(SHAPE, 0.5, dtype=np.float32))
    with pytest.raises(ValueError, match="float_labels.nii.gz"):
        NiftiPairs([("a.nii.gz", "b.nii.gz", "float_labels.nii.gz", None)], root=folder)
    _save(folder / "small.nii.gz", np.ones((10, 12, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="small.nii.gz.*shape"):
        NiftiPairs([("a.nii.gz", "small.nii.gz")], root=folder)
    (folder / "broken.nii.gz").write_bytes(b"not a nifti file")
    with pytest.raises(ValueError, match="broken.nii.gz"):
        NiftiPairs([("a.nii.gz", "broken.nii.gz")], root=folder)
    unchecked = NiftiPairs([("a.nii.gz", "broken.nii.gz")], root=folder, check=False)
    with pytest.raises(ValueError, match="broken.nii.gz"):
        unchecked[0]


def test_large_deformation_pairs_items_are_seeded_toys_with_their_field():
    from regedu.data import LargeDeformationPairs
    from regedu.warps import warp

    dataset = LargeDeformationPairs(length=6, shape=(48, 48), magnitude=10.0, min_magnitude=5.0, seed=3)
    item = dataset[2]
    assert set(item) == {"moving", "fixed", "moving_labels", "fixed_labels", "disp"}
    assert item["moving"].shape == (1, 48, 48) and item["disp"].shape == (2, 48, 48)
    assert torch.equal(item["fixed"], dataset[2]["fixed"])  # deterministic
    assert torch.allclose(warp(item["moving"][None], item["disp"][None])[0], item["fixed"], atol=1e-5)
    largest = [float(dataset[i]["disp"].norm(dim=0).max()) for i in range(len(dataset))]
    assert all(4.5 <= value <= 11.5 for value in largest) and max(largest) - min(largest) > 0.5
    with pytest.raises(ValueError, match="min_magnitude"):
        LargeDeformationPairs(min_magnitude=20.0)
