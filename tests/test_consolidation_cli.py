"""Issue 15, item 7: the command as a package (one module per subcommand), pair lists and pair loading in
regedu.data.pairs (one CSV parser for the command and the datasets), a typed check report."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import regedu
from regedu import cli, data
from regedu.data import NiftiPairs, check_pair, save_nifti
from regedu.data import pairs as pair_files

PACKAGE = Path(regedu.__file__).parent
COMMANDS = ("train", "register", "evaluate", "demo")
MAX_LINES = 600
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def test_the_command_is_a_package_with_one_module_per_subcommand():
    modules = {path.stem for path in (PACKAGE / "cli").glob("*.py")}
    assert modules == {"__init__", "common", "methods", *COMMANDS}
    assert not (PACKAGE / "cli.py").exists()
    for name in COMMANDS:
        module = getattr(cli, name)
        assert callable(module.add_parser) and callable(module.run), name
    parser = cli.build_parser()
    for name in COMMANDS:  # each subcommand runs its own module's `run`
        args = parser.parse_args([name, *_required(name)])
        assert args.run is getattr(cli, name).run


def _required(command: str) -> list[str]:
    return {"train": ["--data", "brain2d", "--out", "m.pt"], "register": ["m.nii", "f.nii", "-o", "w.nii"],
            "evaluate": ["pairs.csv"], "demo": []}[command]


def test_the_entry_point_is_still_regedu_cli_main():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'regedu = "regedu.cli:main"' in pyproject
    assert cli.main(["--version"]) == 0


@pytest.mark.parametrize("module", ["cli/__init__.py", "cli/common.py", "cli/methods.py", "cli/train.py",
                                    "cli/register.py", "cli/evaluate.py", "cli/demo.py", "data/pairs.py",
                                    "data/datasets.py", "data/check.py", "models/checkpoint.py", "result.py",
                                    "train.py", "checks.py"])
def test_no_module_of_this_redesign_is_over_600_lines(module):
    assert len((PACKAGE / module).read_text().splitlines()) <= MAX_LINES


def test_old_names_still_work():
    assert cli.Pair is data.NiftiPair and cli.warp_moving is data.warp_moving
    assert cli.read_pair_list is data.read_pair_list
    assert cli._synthetic_data is cli.train.synthetic_data
    assert regedu.data.datasets.read_csv_table is pair_files.read_csv_table
    assert cli.EVALUATION_COLUMNS[0] == "pair" and callable(cli.load_pair)


# ---------------------------------------------------------------------------
# pair lists: one parser
# ---------------------------------------------------------------------------


def test_only_the_pairs_module_reads_csv_files():
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("DictReader", "reader"):
                readers.append(str(path.relative_to(PACKAGE)))
    assert readers == ["data/pairs.py"]


@pytest.fixture()
def folder(tmp_path):
    blob = torch.exp(-((torch.arange(16.0) - 7.5) ** 2) / 20)
    image = (blob[:, None] * blob[None, :])[None, None]
    labels = (image > 0.5).long()
    for name, tensor in (("a", image), ("b", image.roll(1, dims=3)), ("a_labels", labels)):
        save_nifti(tensor, tmp_path / f"{name}.nii.gz", AFFINE)
    return tmp_path


def test_a_pair_list_is_read_the_same_by_the_command_and_the_dataset(folder):
    table = folder / "pairs.csv"
    table.write_text("moving,fixed,moving_labels,fixed_labels\na.nii.gz,b.nii.gz,a_labels.nii.gz,\n"
                     f"{folder / 'b.nii.gz'},a.nii.gz,,\n")
    rows = data.read_pair_list(table)
    assert rows == [{"moving": folder / "a.nii.gz", "fixed": folder / "b.nii.gz",
                     "moving_labels": folder / "a_labels.nii.gz", "fixed_labels": None},
                    {"moving": folder / "b.nii.gz", "fixed": folder / "a.nii.gz", "moving_labels": None,
                     "fixed_labels": None}]
    assert NiftiPairs(table, check=False).pairs == rows == data.collect_pairs(table)


@pytest.mark.parametrize("text, error, message", [
    ("source,target\na.nii.gz,b.nii.gz\n", ValueError, "needs a header row with columns moving,fixed"),
    ("moving,fixed\n", ValueError, "lists no pairs"),
    ("moving,fixed\na.nii.gz,b.nii.gz\n,b.nii.gz\n", ValueError,
     "pair 2 of the pair list has no moving file"),
    ("moving,fixed\na.nii.gz,nowhere.nii.gz\n", FileNotFoundError, "pair 1: the fixed file"),
])
def test_a_bad_pair_list_names_the_pair_and_the_fix(text, error, message, folder):
    table = folder / "bad.csv"
    table.write_text(text)
    with pytest.raises(error, match=message):
        data.read_pair_list(table)
    with pytest.raises(error, match=message):
        NiftiPairs(table)


def test_a_missing_pair_list_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="the pair list .* does not exist"):
        data.read_pair_list(tmp_path / "nowhere.csv")


# ---------------------------------------------------------------------------
# one pair, loaded ready to register
# ---------------------------------------------------------------------------


def test_load_pair_puts_the_moving_image_on_the_fixed_grid_and_says_so(folder):
    shifted = AFFINE.copy()
    shifted[:3, 3] = [4.0, 0.0, 0.0]  # the same image two voxels to the right in the world
    moving = save_nifti(data.load_nifti(folder / "a.nii.gz").image, folder / "shifted.nii.gz", shifted)
    notes, found = [], []
    pair = data.load_pair(moving, folder / "a.nii.gz", warn=found.append, note=notes.append)
    assert len(found) == 1 and "put their voxels in different places" in found[0]
    assert len(notes) == 1 and "resampled the moving image onto the fixed grid" in notes[0]
    assert pair.moving.shape == pair.fixed.shape and pair.moving_original.shape == pair.fixed.shape
    assert pair.voxel_size == (2.0, 2.0)
    with pytest.warns(DeprecationWarning, match="`voxel_size`"):
        assert pair.spacing == pair.voxel_size  # the old name, for one release
    assert not torch.equal(pair.moving, data.rescale_percentiles(pair.moving_original))
    warped = data.warp_moving(pair, torch.zeros(1, 2, 16, 16))
    torch.testing.assert_close(warped[..., 2:, :], data.load_nifti(moving).image[..., :-2, :])
    with warnings.catch_warnings(record=True) as caught:  # in Python, warnings are warnings
        warnings.simplefilter("always")
        data.load_pair(moving, folder / "a.nii.gz")
    assert any("different places" in str(w.message) for w in caught)


def test_load_pair_refuses_what_cannot_be_registered(folder):
    nan = data.load_nifti(folder / "a.nii.gz").image.clone()
    nan[..., 3, 3] = float("nan")
    save_nifti(nan, folder / "nan.nii.gz", AFFINE)
    save_nifti(torch.ones(1, 1, 16, 16), folder / "flat.nii.gz", AFFINE)
    with pytest.raises(ValueError, match="1 NaN or infinite voxels"):
        data.load_pair(folder / "nan.nii.gz", folder / "a.nii.gz")
    with pytest.raises(ValueError, match="same value"):
        data.load_pair(folder / "flat.nii.gz", folder / "a.nii.gz")
    with pytest.raises(ValueError, match="must lie on its image's grid"):
        data.load_pair(folder / "a.nii.gz", folder / "b.nii.gz",
                       moving_labels_path=save_nifti(torch.zeros(1, 1, 8, 8, dtype=torch.long),
                                                     folder / "small_labels.nii.gz", AFFINE))


# ---------------------------------------------------------------------------
# the check report: typed fields, display names only for display
# ---------------------------------------------------------------------------


def test_the_check_report_has_typed_fields(folder):
    report = check_pair(folder / "a.nii.gz", folder / "b.nii.gz", moving_labels=folder / "a_labels.nii.gz",
                        fixed_labels=folder / "a_labels.nii.gz", verbose=False)
    assert report.moving_shape == report.fixed_shape == (16, 16)
    assert report.moving_spacing == report.fixed_spacing == (2.0, 2.0)
    assert report.orientation == ("RAS", "RAS") and report.header_offset == 0.0
    assert 0 < report.ncc <= 1 and report.ncc <= report.ncc_smoothed + 1e-6 and report.dice == 1.0
    assert report.moving_range[1] == pytest.approx(float(data.load_nifti(folder / "a.nii.gz").image.max()))
    assert report.stats["moving spacing (mm)"] == (2.0, 2.0)  # the display names, derived from the fields
    assert report.stats["global NCC before"] == round(report.ncc, 4)


def test_a_report_of_tensors_without_headers_leaves_those_fields_empty():
    image = torch.rand(1, 1, 12, 12)
    report = check_pair(image, image, verbose=False)
    assert report.orientation is None and report.moving_spacing is None and report.header_offset is None
    assert "orientation" not in report.stats and report.dice is None


def test_nothing_reads_the_reports_display_names():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for name in ("spacing (mm)", "global NCC before", "mean Dice before", "header offset (mm)"):
            if path.name != "check.py":
                assert f'stats["{name}' not in text and f"stats.get(\"{name}" not in text, path
