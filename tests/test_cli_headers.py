"""`regedu register` with the user's own headers, options and messages (issue 13, items 1-5).

* Headers that disagree (origin 6 mm off, rotated 8 degrees, stored flipped) are honoured: the
  outputs read the moving file where its header puts it, and the `--disp` field written in ITK's
  convention reproduces `-o` when SimpleITK applies it to the moving file (ITK's own code).
* Grids that differ are bridged with one interpolation of the original moving image (and labels).
* Every option of both stages is checked before any work; the advice of the warnings speaks the
  command's language and misalignment warnings appear only when they help.

Volumes are tiny (24 x 28 x 20, 48 x 48) and the methods run a few iterations.
"""

from __future__ import annotations

import contextlib
import io as text_io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import regedu.api
from regedu import cli
from regedu.data import check_pair, load_disp, load_labels, load_nifti, resample_like, save_nifti
from regedu.warps import warp, warp_labels

SHAPE = (24, 28, 20)
FIXED_AFFINE = np.array([[1.5, 0, 0, -20.0], [0, 1.5, 0, -25.0], [0, 0, 1.5, 10.0], [0, 0, 0, 1]])
DEMONS = ["--option", "levels=2", "--option", "iterations=(20,10)"]
QUICK = ["--method", "affine+demons", "--affine-option", "levels=2", "--affine-option", "iterations=(30,10)",
         "--option", "levels=2", "--option", "iterations=(10,5)"]


def run(argv) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``regedu *argv``, usable outside a test function."""
    out, err = text_io.StringIO(), text_io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def smooth(shape, seed: int, scale: float = 96.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    coarse = torch.rand(1, 1, *[max(4, n // 4) for n in shape], generator=g)
    return torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True) * scale


def rotated_about_centre(affine: np.ndarray, degrees: float, shape) -> np.ndarray:
    """``affine`` rotated in the world x-y plane about the centre of its grid."""
    a = math.radians(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    centre = np.eye(4)
    centre[:3, 3] = (affine @ np.array([(n - 1) / 2 for n in shape] + [0] * (3 - len(shape)) + [1.0]))[:3]
    return centre @ rotation @ np.linalg.inv(centre) @ affine


def moving_variants() -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """The fixed image shifted 3 voxels, saved with headers that disagree with the fixed one."""
    moving = smooth(SHAPE, 0).roll(3, dims=2)
    offset = FIXED_AFFINE.copy()
    offset[0, 3] += 6.0  # 6 mm to the right
    flipped = FIXED_AFFINE.copy()  # stored right-to-left (LAS), and 6 mm off as well
    flipped[0, 0], flipped[0, 3] = -1.5, FIXED_AFFINE[0, 3] + 1.5 * (SHAPE[0] - 1) + 6.0
    return {"offset": (moving, offset), "rotated": (moving, rotated_about_centre(FIXED_AFFINE, 8.0, SHAPE)),
            "flipped": (moving.flip(2), flipped)}


@pytest.fixture(scope="module")
def header_runs(tmp_path_factory):
    """One `regedu register` per header variant, with the field written in ITK's convention."""
    root = tmp_path_factory.mktemp("headers")
    fixed = save_nifti(smooth(SHAPE, 0), root / "f.nii.gz", FIXED_AFFINE)
    runs = {}
    for name, (array, affine) in moving_variants().items():
        moving = save_nifti(array, root / f"m_{name}.nii.gz", affine)
        out, disp = root / f"w_{name}.nii.gz", root / f"d_{name}.nii.gz"
        status, stdout, stderr = run(["register", moving, fixed, "-o", out, "--disp", disp, "--disp-format",
                                      "itk", *QUICK])
        runs[name] = {"status": status, "err": stderr, "moving": moving, "fixed": fixed, "out": out,
                      "disp": disp}
    return runs


def simpleitk_applies(sitk, moving_path, fixed_path, disp_path, slice_2d: bool = False) -> np.ndarray:
    """The moving file resampled onto the fixed file through the field file, by ITK (linear, 0 outside),
    as an array in the fixed file's voxel order (x, y[, z])."""
    reference = sitk.ReadImage(str(fixed_path), sitk.sitkFloat64)
    moving = sitk.ReadImage(str(moving_path), sitk.sitkFloat64)
    if slice_2d:  # files stored (X, Y, 1) read as 3D; true 2D files (regedu writes those) as 2D
        reference, moving = (image[:, :, 0] if image.GetDimension() == 3 else image
                             for image in (reference, moving))
    field = sitk.DisplacementFieldTransform(sitk.ReadImage(str(disp_path), sitk.sitkVectorFloat64))
    moved = sitk.Resample(moving, reference, field, sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(moved).T


@pytest.mark.parametrize("variant", ["offset", "rotated", "flipped"])
def test_disagreeing_headers_are_warned_about_and_honoured(header_runs, variant):
    result = header_runs[variant]
    assert result["status"] == 0, result["err"]
    assert "regedu: warning: the headers of" in result["err"] and "different places" in result["err"]
    moving = load_nifti(result["moving"])
    disp = load_disp(result["disp"]).image  # read back from ITK's convention
    written = load_nifti(result["out"]).image
    expected = resample_like(moving.image, moving.affine, SHAPE, FIXED_AFFINE, disp=disp, padding="itk")
    torch.testing.assert_close(written, expected, atol=1e-3, rtol=0)
    # registering voxel to voxel, as before, gives another image: the header mattered
    assert float((warp(moving.image, disp) - written).abs().mean()) > 1.0


@pytest.mark.parametrize("variant", ["offset", "rotated", "flipped"])
def test_written_itk_field_reproduces_the_output_in_simpleitk(header_runs, variant):
    sitk = pytest.importorskip("SimpleITK")
    result = header_runs[variant]
    assert result["status"] == 0, result["err"]
    theirs = simpleitk_applies(sitk, result["moving"], result["fixed"], result["disp"])
    ours = load_nifti(result["out"]).image[0, 0].double().numpy()  # the fixed file is RAS: same order
    difference = np.abs(ours - theirs)
    assert difference.max() < 1e-3, (difference.mean(), difference.max())  # range 96, float32 files


def test_2d_itk_field_from_the_command_reproduces_the_output_in_simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    shape = (48, 40)
    affine = np.array([[1.5, 0, 0, -30.0], [0, 1.5, 0, -40.0], [0, 0, 3.0, 12.0], [0, 0, 0, 1]])
    moving_affine = rotated_about_centre(affine, 8.0, shape)
    moving_affine[:3, 3] += [4.5, -3.0, 0.0]
    fixed = save_nifti(smooth(shape, 5), tmp_path / "f.nii.gz", affine)
    moving = save_nifti(smooth(shape, 5).roll(2, dims=3), tmp_path / "m.nii.gz", moving_affine)
    status, _, err = run(["register", moving, fixed, "-o", tmp_path / "w.nii.gz", "--disp",
                          tmp_path / "d.nii.gz", "--disp-format", "itk", "--method", "demons", *DEMONS])
    assert status == 0, err
    theirs = simpleitk_applies(sitk, moving, fixed, tmp_path / "d.nii.gz", slice_2d=True)
    ours = load_nifti(tmp_path / "w.nii.gz").image[0, 0].double().numpy()
    assert np.abs(ours - theirs).max() < 1e-3


def test_outputs_read_the_moving_file_once(tmp_path):
    """A moving image on a finer, offset grid: -o and --labels-out are one interpolation of the original
    files through the written field and the headers; resampling first and warping after is not."""
    fixed_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    moving_affine = np.array([[1.0, 0, 0, 0.7], [0, 1.0, 0, -0.4], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    fixed_shape, moving_shape = (40, 44), (60, 64)
    image = smooth(moving_shape, 3)
    labels = (image / 24).long()  # four bands of intensity, as labels
    paths = {"m": save_nifti(image, tmp_path / "m.nii.gz", moving_affine),
             "ml": save_nifti(labels, tmp_path / "ml.nii.gz", moving_affine),
             "f": save_nifti(resample_like(image, moving_affine, fixed_shape, fixed_affine).roll(1, dims=2),
                             tmp_path / "f.nii.gz", fixed_affine)}
    status, _, err = run(["register", paths["m"], paths["f"], "-o", tmp_path / "w.nii.gz", "--disp",
                          tmp_path / "d.nii.gz", "--labels", paths["ml"], "--labels-out",
                          tmp_path / "wl.nii.gz", "--method", "demons", *DEMONS])
    assert status == 0, err
    assert "resampled the moving image and its labels onto the fixed grid (40, 44)" in err
    disp = load_disp(tmp_path / "d.nii.gz").image
    written = load_nifti(tmp_path / "w.nii.gz").image
    once = resample_like(image, moving_affine, fixed_shape, fixed_affine, disp=disp, padding="itk")
    twice = warp(resample_like(image, moving_affine, fixed_shape, fixed_affine), disp)
    torch.testing.assert_close(written, once, atol=1e-4, rtol=0)
    assert float((written - twice).abs().max()) > 0.2
    written_labels = load_labels(tmp_path / "wl.nii.gz").image
    once_labels = resample_like(labels, moving_affine, fixed_shape, fixed_affine, disp=disp)
    assert torch.equal(written_labels, once_labels)
    twice_labels = warp_labels(resample_like(labels, moving_affine, fixed_shape, fixed_affine), disp)
    assert int((written_labels != twice_labels).sum()) > 0


def test_a_pair_on_one_grid_is_not_resampled(tmp_path):
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    fixed = save_nifti(smooth((40, 44), 1), tmp_path / "f.nii.gz", affine)
    moving = save_nifti(smooth((40, 44), 1).roll(2, dims=2), tmp_path / "m.nii.gz", affine)
    status, _, err = run(["register", moving, fixed, "-o", tmp_path / "w.nii.gz", "--disp",
                          tmp_path / "d.nii.gz", "--method", "demons", *DEMONS])
    assert status == 0, err
    assert "headers" not in err and "resampled" not in err
    disp = load_disp(tmp_path / "d.nii.gz").image
    moving_image = load_nifti(moving).image
    expected = resample_like(moving_image, affine, (40, 44), affine, disp=disp, padding="itk")
    torch.testing.assert_close(load_nifti(tmp_path / "w.nii.gz").image, expected, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------
# options: both stages reachable, all checked before any work
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    """A volume as small as nibabel's anatomical.nii (33 x 41 x 25 at 2 mm) and a shifted copy."""
    root = tmp_path_factory.mktemp("small")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image = smooth((33, 41, 25), 9)
    return {"m": save_nifti(image.roll(3, dims=2), root / "m.nii.gz", affine),
            "f": save_nifti(image, root / "f.nii.gz", affine), "root": root}


BEFORE_READING = {  # with a moving file that does not exist: the option is reported, not the file
    "unknown key": (["--option", "iters=5"], "does not take the option(s) ['iters']"),
    "unknown affine key": (["--affine-option", "spacing=4"], "--affine-option (the affine stage of default) "
                                                             "does not take the option(s) ['spacing']"),
    "bad deformable value": (["--option", "lr=-1"], "--option (the deformable stage of default): `lr` must"),
    "bad affine value": (["--affine-option", "transform=warp"], "`transform` must be one of"),
    "levels and iterations disagree": (["--method", "demons", "--option", "levels=3", "--option",
                                        "iterations=(10,5)"], "(method demons): `iterations` must be"),
    "affine option without an affine stage": (["--method", "demons", "--affine-option", "levels=2"],
                                               "--method demons has none: give its options with --option"),
    "reserved": (["--option", "device='cpu'"], "use --device"),
}


@pytest.mark.parametrize("case", list(BEFORE_READING))
def test_options_are_checked_before_any_file_is_read(case, tmp_path, capsys):
    extra, expected = BEFORE_READING[case]
    status = cli.main(["register", str(tmp_path / "missing.nii.gz"), str(tmp_path / "missing.nii.gz"), "-o",
                       str(tmp_path / "w.nii.gz"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("regedu: error: ")
    assert expected in err[0] and "does not exist" not in err[0]
    assert not (tmp_path / "w.nii.gz").exists()


@pytest.mark.parametrize("flag, stage", [("--option", "the deformable stage"),
                                         ("--affine-option", "the affine stage")])
def test_size_dependent_options_are_checked_before_the_registration(flag, stage, small_pair, tmp_path,
                                                                    capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the registration started")

    monkeypatch.setattr(regedu.api, "register", never)
    status = cli.main(["register", str(small_pair["m"]), str(small_pair["f"]), "-o",
                       str(tmp_path / "w.nii.gz"), flag, "levels=4", flag, "iterations=5"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"{stage} of default" in err and "`levels=4` shrinks the image (33, 41, 25)" in err


def test_both_stages_options_register_a_small_volume(small_pair, tmp_path):
    status, out, err = run(["register", small_pair["m"], small_pair["f"], "-o", tmp_path / "w.nii.gz",
                            "--option", "levels=2", "--option", "iterations=(20,10)", "--affine-option",
                            "levels=2", "--affine-option", "iterations=(40,20)"])
    assert status == 0, err
    fixed = load_nifti(small_pair["f"]).image
    before = float((load_nifti(small_pair["m"]).image - fixed).abs().mean())
    after = float((load_nifti(tmp_path / "w.nii.gz").image - fixed)[..., 4:-4, 4:-4, 4:-4].abs().mean())
    assert after < 0.5 * before


def test_help_and_readme_document_both_stages_options(capsys):
    assert cli.main(["register", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--affine-option KEY=VALUE" in text and "register_affine" in text and "register_bspline" in text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "--affine-option levels=2" in readme and "checked (name and value, for both stages)" in readme


# ---------------------------------------------------------------------------
# misalignment warnings: only when useful, in the command's terms
# ---------------------------------------------------------------------------


def test_misalignment_warning_only_when_it_helps_and_in_command_terms(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    g = torch.Generator().manual_seed(0)
    noise = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 50, 50, generator=g), 3, 1, 1)[..., 1:-1, 1:-1]
    texture = 0.7 * noise + 0.3 * smooth((48, 48), 2, scale=1.0)  # fine texture, like a noisy 2 mm scan
    paths = {"f": save_nifti(texture * 90, tmp_path / "f.nii.gz", affine),
             "shifted": save_nifti(texture.roll(3, dims=2) * 90, tmp_path / "s.nii.gz", affine),
             "unrelated": save_nifti(smooth((48, 48), 4), tmp_path / "u.nii.gz", affine)}
    quick = {"default": ["--option", "iterations=(10,5)", "--affine-option", "iterations=(10,5)"],
             "demons": DEMONS}
    for method in ("default", "demons"):  # the same image, 3 voxels off: no warning, whatever the method
        status, _, err = run(["register", paths["shifted"], paths["f"], "-o", tmp_path / f"w_{method}.nii.gz",
                              "--method", method, *quick[method]])
        assert status == 0, err
        assert "global NCC" not in err
    # the raw correlation alone would have warned
    assert check_pair(paths["shifted"], paths["f"], verbose=False).stats["global NCC before"] < 0.3
    status, _, err = run(["register", paths["unrelated"], paths["f"], "-o", tmp_path / "w.nii.gz", "--method",
                          "demons", *DEMONS])
    assert status == 0, err
    [warning] = [line for line in err.splitlines() if "global NCC" in line]
    assert warning.startswith("regedu: warning:") and "--method default" in warning
    assert "regedu.register" not in warning and "method=" not in warning
