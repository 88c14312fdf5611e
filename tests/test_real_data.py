"""Real inter-subject pairs (issue 14, lesson 09): finding prepared OASIS folders, the stand-in written in
their layout, and the lesson's closing check.

No real scan is used: the OASIS-style folders are made in ``tmp_path`` the way ``data_scripts`` makes them
(fake neurite subject folders holding synthetic brain slices, then ``prepare_neurite_oasis``), so the code
that reads a real download runs here on small stand-in files.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import nibabel as nib
import numpy as np
import pytest
import torch

import regedu
from regedu import data, metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # data_scripts lives beside regedu

from data_scripts.prepare import prepare_neurite_oasis  # noqa: E402
from data_scripts.registry import SOURCES  # noqa: E402

FAST = {"iterations": (40, 20, 10), "affine_options": {"iterations": (50, 25, 0)}, "progress": False}


def fake_neurite_subjects(raw: Path, count: int = 3, seed: int = 0) -> Path:
    """Subject folders as the neurite-oasis 2D tar holds them (``OASIS_OAS1_000k_MR1/slice_norm.nii.gz``
    and ``slice_seg24.nii.gz``, 2D slices stored (H, W, 1), labels uint8), with synthetic brain slices."""
    brain = data.brain_slice(parcels=True)
    subjects = data.synth_subject(brain.image, brain.labels, batch=count, magnitude=4.0, seed=seed)
    for k in range(count):
        folder = raw / f"OASIS_OAS1_{k + 1:04d}_MR1"
        folder.mkdir(parents=True)
        image = subjects.image[k, 0].numpy()[..., None].astype(np.float32)
        labels = subjects.labels[k, 0].numpy()[..., None].astype(np.uint8)
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "slice_norm.nii.gz")
        nib.save(nib.Nifti1Image(labels, np.eye(4)), folder / "slice_seg24.nii.gz")
    return raw


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory) -> Path:
    """A data root holding ``neurite-oasis-2d/`` exactly as ``python -m data_scripts.fetch`` prepares it."""
    root = tmp_path_factory.mktemp("regedu_data")
    raw = fake_neurite_subjects(root / "raw" / "neurite-oasis-2d")
    prepare_neurite_oasis(raw, root / "neurite-oasis-2d", ndim=2)
    return root


def read_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "pairs.csv", newline="") as stream:
        return list(csv.DictReader(stream))


# ---------------------------------------------------------------------------
# where the data are, and how to get them
# ---------------------------------------------------------------------------


def test_the_dataset_names_are_those_data_scripts_prepares():
    assert set(data.OASIS_DATASETS) == set(SOURCES)


def test_the_fetch_command_names_the_script_the_dataset_and_the_root():
    command = data.fetch_command("neurite-oasis-2d", root="regedu_data")
    assert command == "python -m data_scripts.fetch neurite-oasis-2d --root regedu_data"
    assert (ROOT / "data_scripts" / "fetch.py").is_file()
    command = data.fetch_command("learn2reg-oasis", root="/data")
    assert command.split()[3:] == ["learn2reg-oasis", "--root", "/data"]
    with pytest.raises(ValueError, match="neurite-oasis-2d"):
        data.fetch_command("oasis")


def test_find_oasis_with_an_explicit_root(prepared_root, tmp_path):
    folder = prepared_root / "neurite-oasis-2d"
    assert data.find_oasis("neurite-oasis-2d", root=prepared_root) == folder
    assert data.find_oasis("neurite-oasis-2d", root=folder) == folder  # the prepared folder itself
    assert data.find_oasis("neurite-oasis-3d", root=prepared_root) is None
    assert data.find_oasis("neurite-oasis-2d", root=tmp_path / "nowhere") is None


def test_find_oasis_reads_regedu_data_then_the_working_folder_and_its_parent(prepared_root, tmp_path,
                                                                           monkeypatch):
    folder = prepared_root / "neurite-oasis-2d"
    monkeypatch.setenv("REGEDU_DATA", str(prepared_root))
    monkeypatch.chdir(tmp_path)
    assert data.data_roots() == [prepared_root]
    assert data.find_oasis() == folder
    assert data.data_roots(tmp_path) == [tmp_path]  # an explicit root comes first

    monkeypatch.delenv("REGEDU_DATA")
    repository = tmp_path / "repository"
    (repository / "notebooks").mkdir(parents=True)
    (repository / "regedu_data").symlink_to(prepared_root, target_is_directory=True)
    monkeypatch.chdir(repository / "notebooks")  # where a notebook runs
    assert data.data_roots() == [repository / "notebooks" / "regedu_data", repository / "regedu_data"]
    assert data.find_oasis() == repository / "regedu_data" / "neurite-oasis-2d"
    monkeypatch.chdir(repository)  # where the fetch command runs
    assert data.find_oasis() == repository / "regedu_data" / "neurite-oasis-2d"


def test_find_oasis_skips_a_preparation_that_did_not_finish(tmp_path):
    (tmp_path / "neurite-oasis-2d" / "images").mkdir(parents=True)  # no pairs.csv
    assert data.find_oasis("neurite-oasis-2d", root=tmp_path) is None


# ---------------------------------------------------------------------------
# reading a prepared folder and registering one of its pairs
# ---------------------------------------------------------------------------


def test_a_prepared_folder_loads_and_one_pair_registers(prepared_root):
    folder = data.find_oasis("neurite-oasis-2d", root=prepared_root)
    rows = data.read_pair_list(folder / "pairs.csv")
    assert [(row["moving"].name, row["fixed"].name) for row in rows] == [
        ("OASIS_OAS1_0002_MR1.nii.gz", "OASIS_OAS1_0001_MR1.nii.gz"),
        ("OASIS_OAS1_0003_MR1.nii.gz", "OASIS_OAS1_0002_MR1.nii.gz")]
    pair = data.load_pair(*(rows[0][key] for key in ("moving", "fixed", "moving_labels", "fixed_labels")))
    assert pair.moving.shape == pair.fixed.shape == (1, 1, 96, 112)  # the flat third axis is dropped
    assert pair.fixed_labels.dtype == torch.int64 and pair.voxel_size == (1.0, 1.0)
    assert float(pair.moving.min()) >= 0.0 and float(pair.moving.max()) <= 1.0
    assert sorted(data.NiftiPairs(folder / "pairs.csv")[1]) == ["fixed", "fixed_labels", "moving",
                                                                 "moving_labels"]

    result = regedu.register(pair.moving, pair.fixed, moving_labels=pair.moving_labels,
                             voxel_size=pair.voxel_size, **FAST)
    before = float(metrics.dice(pair.moving_labels, pair.fixed_labels).mean())
    after = float(metrics.dice(result.warped_labels, pair.fixed_labels).mean())
    assert after > before + 0.1, (before, after)


# ---------------------------------------------------------------------------
# the stand-in: the kit's synthetic subjects in the same layout
# ---------------------------------------------------------------------------


def test_the_stand_in_has_the_layout_prepare_writes(prepared_root, tmp_path):
    prepared = prepared_root / "neurite-oasis-2d"
    stand_in = data.write_oasis_stand_in(tmp_path / "neurite-oasis-2d", count=3, seed=0)
    assert stand_in == tmp_path / "neurite-oasis-2d"
    assert sorted(p.name for p in stand_in.iterdir()) == sorted(p.name for p in prepared.iterdir())
    for folder in (prepared, stand_in):
        images = sorted(p.name for p in (folder / "images").iterdir())
        assert images == sorted(p.name for p in (folder / "labels").iterdir()) and len(images) == 3
        rows = read_rows(folder)
        assert list(rows[0]) == ["moving", "fixed", "moving_labels", "fixed_labels"]
        names = [name[: -len(".nii.gz")] for name in images]
        assert rows == [{"moving": f"images/{names[k + 1]}.nii.gz", "fixed": f"images/{names[k]}.nii.gz",
                         "moving_labels": f"labels/{names[k + 1]}.nii.gz",
                         "fixed_labels": f"labels/{names[k]}.nii.gz"} for k in range(2)]


def test_the_stand_in_files_hold_the_synthetic_subjects(tmp_path):
    folder = data.write_oasis_stand_in(tmp_path / "standin", count=2, seed=4)
    brain = data.brain_slice(parcels=True)
    subjects = data.synth_subject(brain.image, brain.labels, batch=2, rotation=5.0, translation=3.0,
                                  magnitude=4.0, seed=4)
    for k, name in enumerate(["standin_0001", "standin_0002"]):
        image = data.load_nifti(folder / "images" / f"{name}.nii.gz")
        labels = data.load_labels(folder / "labels" / f"{name}.nii.gz").image
        torch.testing.assert_close(image.image, subjects.image[k:k + 1])
        assert torch.equal(labels, subjects.labels[k:k + 1])
        assert image.spacing == (2.0, 2.0) and np.allclose(image.affine, brain.affine)
    # two subjects of one template differ: the pair is worth registering
    assert float(metrics.dice(subjects.labels[:1], subjects.labels[1:]).mean()) < 0.9


def test_the_stand_in_is_dimension_generic_and_refuses_to_overwrite(tmp_path):
    folder = data.write_oasis_stand_in(tmp_path / "volumes", count=2, ndim=3, seed=0)
    assert data.load_nifti(folder / "images" / "standin_0001.nii.gz").image.shape == (1, 1, 96, 112, 96)
    with pytest.raises(FileExistsError, match="not empty"):
        data.write_oasis_stand_in(folder, count=2)
    with pytest.raises(ValueError, match="count"):
        data.write_oasis_stand_in(tmp_path / "one", count=1)
    with pytest.raises(ValueError, match="ndim"):
        data.write_oasis_stand_in(tmp_path / "four", ndim=4)


# ---------------------------------------------------------------------------
# lesson 09's closing check fails when the lesson fails to show its point
# ---------------------------------------------------------------------------


def closing_check() -> str:
    notebook = nbformat.read(ROOT / "notebooks" / "09_real_data_and_capstone.ipynb", as_version=4)
    source = notebook.cells[-1].source
    assert source.rstrip().endswith('print("all checks passed")')
    return source


def card(dice: float, hd95: float, tre: float = float("nan"), epe: float = float("nan")) -> dict:
    return {"Dice": dice, "HD95 mm": hd95, "TRE mm": tre, "EPE mm": epe, "folding %": 0.0, "seconds": 1.0}


def lesson_results(tmp_path, classical_dice=0.85, network_dice=0.8, classical_tre=0.5, exact_tre=0.0,
                   source="stand-in") -> dict:
    """What the lesson's cells leave behind, with the numbers the closing check looks at."""
    folder = data.write_oasis_stand_in(tmp_path / "neurite-oasis-2d", count=3)
    methods = {"default": "classical (default)", "voxelmorph": "network",
               "voxelmorph+io": "network + refinement"}
    labels = torch.ones(1, 1, 4, 4, dtype=torch.int64)
    row = {"no registration": card(0.5, 8.0), methods["default"]: card(classical_dice, 2.0),
           methods["voxelmorph"]: card(network_dice, 3.0), methods["voxelmorph+io"]: card(0.85, 2.5)}
    synthetic = {"no registration": card(0.5, 8.0, 8.0, 7.0),
                 "the true field": card(1.0, 0.0, exact_tre, 0.0),
                 methods["default"]: card(0.95, 2.0, classical_tre, 0.4)}
    return {"folder": folder, "SOURCE": source, "oasis": folder if source == "OASIS" else None, "PAIRS": 2,
            "pairs": [SimpleNamespace(moving_labels=labels, fixed_labels=labels)] * 2, "METHODS": methods,
            "cards": [row, row], "mean_cards": row, "synthetic_cards": synthetic}


def test_the_closing_check_passes_when_the_lesson_shows_its_point(tmp_path):
    exec(closing_check(), lesson_results(tmp_path))
    exec(closing_check(), lesson_results(tmp_path / "real", network_dice=0.5, source="OASIS"))


@pytest.mark.parametrize("failure", [
    {"classical_dice": 0.52},                   # registration did not improve overlap
    {"network_dice": 0.51},                     # an untrained network on the stand-in
    {"classical_tre": 6.0},                     # the synthetic pair's landmarks stayed far off
    {"exact_tre": 0.3},                         # the "true field" is not the true field
])
def test_the_closing_check_fails_when_the_lesson_fails(tmp_path, failure):
    with pytest.raises(AssertionError):
        exec(closing_check(), lesson_results(tmp_path, **failure))
