"""The `regedu` command end to end, in-process (regedu.cli.main), on NIfTI files made here.

Sizes are tiny (48 x 48, a few training steps) so the whole file takes seconds; the demo runs
with the fast demons method and is skipped only when the shipped weights are absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from regedu import cli, metrics
from regedu import train as T
from regedu.data import (
    load_disp,
    load_labels,
    load_nifti,
    random_transform,
    save_nifti,
    subject_from_disp,
    synth_image,
    synth_labels,
)
from regedu.models import pretrained_path

SHAPE = (48, 48)
AFFINE = np.array([[1.5, 0, 0, -30.0], [0, 1.5, 0, -40.0], [0, 0, 1.5, 12.0], [0, 0, 0, 1]])


def mean_dice(a, b):
    return float(torch.nanmean(metrics.dice(a, b)))


def run(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``regedu *argv``."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 2D moving/fixed pair with label maps, pair lists, and a few broken files."""
    root = tmp_path_factory.mktemp("cli")
    labels = synth_labels(SHAPE, num_labels=4, smoothness=10, seed=3)
    image = synth_image(labels, blur=1.0, gamma=0.0, bias=0.0, noise=0.0, seed=3)
    disp = random_transform(SHAPE, rotation=3.0, scale=0.03, shear=0.0, translation=1.5, magnitude=2.0,
                            smoothness=14, seed=4)
    fixed = subject_from_disp(image, labels, disp, gamma=0.0, bias=0.0, noise=0.0)
    paths = {name: root / f"{name}.nii.gz" for name in ("m", "m_labels", "f", "f_labels")}
    for name, tensor in (("m", 100 * image), ("m_labels", labels), ("f", 100 * fixed.image),
                         ("f_labels", fixed.labels)):
        save_nifti(tensor, paths[name], AFFINE)
    # the moving image on a larger grid: 2 voxels of background more on each side, same world positions
    shifted = AFFINE.copy()
    shifted[:3, 3] -= AFFINE[:3, :3] @ [2, 2, 0]
    pad = (2, 2, 2, 2)
    paths["m_big"] = save_nifti(100 * torch.nn.functional.pad(image, pad), root / "m_big.nii.gz", shifted)
    paths["m_big_labels"] = save_nifti(torch.nn.functional.pad(labels, pad), root / "m_big_labels.nii.gz",
                                       shifted)
    nan = (100 * image).clone()
    nan[..., 5, 5] = float("nan")
    paths["nan"] = save_nifti(nan, root / "nan.nii.gz", AFFINE)
    paths["volume"] = save_nifti(torch.rand(1, 1, 16, 16, 16), root / "volume.nii.gz")
    paths["text"] = root / "text.nii.gz"
    paths["text"].write_text("not an image")
    paths["corrupt"] = root / "corrupt.pt"
    paths["corrupt"].write_bytes(b"not a checkpoint")
    header = "moving,fixed,moving_labels,fixed_labels\n"
    lists = {"one": "m.nii.gz,f.nii.gz,m_labels.nii.gz,f_labels.nii.gz\n",
             "pairs": "m.nii.gz,f.nii.gz,m_labels.nii.gz,f_labels.nii.gz\nf.nii.gz,m.nii.gz,f_labels.nii.gz,"
                      "m_labels.nii.gz\n",
             "unlabelled": "m.nii.gz,f.nii.gz,,\n",
             "missing": "nowhere.nii.gz,f.nii.gz,,\n"}
    for name, rows in lists.items():
        paths[name] = root / f"{name}.csv"
        paths[name].write_text(header + rows)
    paths["bad_header"] = root / "bad_header.csv"
    paths["bad_header"].write_text("a,b\nm.nii.gz,f.nii.gz\n")
    paths["root"] = root
    return paths


@pytest.fixture(scope="module")
def model(files):
    """A VoxelMorph trained by `regedu train` for a few steps on the test pair (`--model voxelmorph`: the
    default is PyramidNet, tests/test_learned_defaults.py)."""
    path = files["root"] / "model.pt"
    status = cli.main(["train", "--data", str(files["one"]), "--model", "voxelmorph", "--steps", "30",
                       "--batch-size", "1", "--lr", "0.003", "--out", str(path)])
    assert status == 0
    return path


def test_train_saves_a_checkpoint_and_resumes(files, model, tmp_path, capsys):
    assert T.load_checkpoint(model)["history"]["step"] == 30
    copy = tmp_path / "copy.pt"
    copy.write_bytes(model.read_bytes())
    status, out, err = run(["train", "--data", files["one"], "--model", "voxelmorph", "--steps", "33",
                            "--batch-size", "1", "--lr", "0.003", "--schedule", "cosine", "--out", copy,
                            "--resume"], capsys)
    assert status == 0 and "resuming from" in err and "step 30" in err
    assert f"saved the model to {copy} (step 33" in out and "regedu register" in out
    payload = T.load_checkpoint(copy)
    assert payload["history"]["step"] == 33 and payload["model_spec"]["class"] == "VoxelMorph"
    assert payload["config"]["schedule"] == "cosine" and payload["config"]["lr"] == 0.003


def check_outputs(files, tmp_path):
    """The outputs lie on the fixed grid with its affine, and the warped labels overlap better."""
    fixed = nib.load(files["f"])
    for name in ("w", "wl"):
        written = nib.load(tmp_path / f"{name}.nii.gz")
        assert written.shape == fixed.shape and np.allclose(written.affine, fixed.affine)
    disp = load_disp(tmp_path / "d.nii.gz")
    assert disp.image.shape == (1, 2, *SHAPE) and np.allclose(disp.affine, fixed.affine)
    assert np.asarray(nib.load(tmp_path / "wl.nii.gz").dataobj).dtype == np.int32
    fixed_labels = load_labels(files["f_labels"]).image
    before = mean_dice(load_labels(files["m_labels"]).image, fixed_labels)
    after = mean_dice(load_labels(tmp_path / "wl.nii.gz").image, fixed_labels)
    assert after > before + 0.03


def register_args(files, tmp_path, *extra, moving="m", labels="m_labels"):
    return ["register", files[moving], files["f"], "-o", tmp_path / "w.nii.gz", "--disp",
            tmp_path / "d.nii.gz", "--labels", files[labels], "--labels-out", tmp_path / "wl.nii.gz",
            "--fixed-labels", files["f_labels"], *extra]


def test_register_with_a_classical_method(files, tmp_path, capsys):
    status, out, err = run(register_args(files, tmp_path, "--method", "demons"), capsys)
    assert status == 0, err
    assert "with demons" in out and "mean Dice of the label maps" in out and "wrote" in out
    check_outputs(files, tmp_path)
    # the warped image keeps the moving image's intensities, not the normalised ones (in [0, 1])
    moving_max = float(load_nifti(files["m"]).image.max())
    assert 0.9 * moving_max < float(load_nifti(tmp_path / "w.nii.gz").image.max()) <= moving_max + 1e-4


@pytest.mark.parametrize("terminal", [True, False])
def test_register_draws_a_progress_bar_only_on_a_terminal(files, tmp_path, capsys, monkeypatch, terminal):
    """A bar on a terminal (shown when the run lasts over 2 s); none into a pipe, where it would litter
    a log or a notebook's captured output."""
    from regedu.cli import register as command

    seen = {}
    real_run_method = command.run_method

    def spy(*args, progress, **kwargs):
        seen["progress"] = progress
        return real_run_method(*args, progress=progress, **kwargs)

    monkeypatch.setattr(command, "run_method", spy)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    status, _, err = run(register_args(files, tmp_path, "--method", "affine"), capsys)
    assert status == 0, err
    assert seen["progress"] is (None if terminal else False)


def test_register_with_the_trained_model(files, model, tmp_path, capsys):
    status, out, err = run(register_args(files, tmp_path, "--method", "voxelmorph", "--model", model), capsys)
    assert status == 0, err
    check_outputs(files, tmp_path)


def test_register_resamples_when_check_pair_says_so(files, tmp_path, capsys):
    status, out, err = run(register_args(files, tmp_path, "--method", "demons", moving="m_big",
                                         labels="m_big_labels"), capsys)
    assert status == 0, err
    assert "regedu: warning: the headers of" in err and "shapes (52, 52) and (48, 48)" in err
    assert "resampled the moving image and its labels onto the fixed grid (48, 48)" in err
    check_outputs(files, tmp_path)


def test_register_does_not_overwrite_unless_asked(files, tmp_path, capsys):
    out_path = tmp_path / "w.nii.gz"
    out_path.write_bytes(b"precious")
    status, _, err = run(["register", files["m"], files["f"], "-o", out_path, "--method", "affine",
                          "--option", "iterations=5"], capsys)
    assert status == 2 and "exists already; pass --overwrite" in err and out_path.read_bytes() == b"precious"
    status, _, err = run(["register", files["m"], files["f"], "-o", out_path, "--method", "affine",
                          "--option", "iterations=5", "--overwrite"], capsys)
    assert status == 0, err
    assert nib.load(out_path).shape == SHAPE  # a 2D image is written as a true 2D NIfTI


def test_evaluate_prints_a_table_and_writes_a_csv(files, model, tmp_path, capsys):
    table = tmp_path / "table.csv"
    status, out, err = run(["evaluate", files["pairs"], "--method", "voxelmorph", "--model", model,
                            "--csv", table], capsys)
    assert status == 0, err
    for column in ("Dice before", "Dice after", "HD95 mm", "folding %", "seconds", "mean"):
        assert column in out
    rows = table.read_text().strip().splitlines()
    assert rows[0] == ",".join(cli.EVALUATION_COLUMNS)
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "mean"]
    first = dict(zip(cli.EVALUATION_COLUMNS, rows[1].split(","), strict=True))
    assert first["moving"] == "m.nii.gz" and float(first["dice_after"]) > float(first["dice_before"])
    assert float(first["hd95_mm"]) >= 0 and float(first["folding_percent"]) >= 0
    assert float(first["seconds"]) > 0


def test_evaluate_without_labels_leaves_dice_empty(files, tmp_path, capsys):
    table = tmp_path / "table.csv"
    status, out, err = run(["evaluate", files["unlabelled"], "--method", "affine", "--option", "iterations=5",
                            "--csv", table], capsys)
    assert status == 0, err
    first = dict(zip(cli.EVALUATION_COLUMNS, table.read_text().splitlines()[1].split(","), strict=True))
    assert first["dice_before"] == first["dice_after"] == first["hd95_mm"] == ""


def test_demo_writes_a_figure(tmp_path, capsys):
    try:
        pretrained_path("voxelmorph2d_brain")
    except FileNotFoundError:
        pytest.skip("the shipped weights regedu/weights/voxelmorph2d_brain.pt are absent "
                    "(make them with scripts/train_pretrained.py)")
    figure = tmp_path / "demo.png"
    status, out, err = run(["demo", "--method", "demons", "--out", figure], capsys)
    assert status == 0, err
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "demons" in out and "voxelmorph" in out and "Dice before" in out and f"wrote {figure}" in out


def test_demo_without_the_shipped_weights_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.modules["regedu.models.pretrained"], "WEIGHTS", tmp_path)
    status, out, err = run(["demo", "--out", tmp_path / "demo.png"], capsys)
    assert status == 2 and not (tmp_path / "demo.png").exists()
    assert err.startswith("regedu: error:") and "scripts/train_pretrained.py voxelmorph2d_brain" in err


BAD_CALLS = {
    "no command": ([], "required"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "missing moving": (["register", "{root}/nowhere.nii.gz", "{f}", "-o", "{tmp}/w.nii.gz"],
                       "does not exist"),
    "missing -o": (["register", "{m}", "{f}"], "required: -o/--out"),
    "not NIfTI": (["register", "{text}", "{f}", "-o", "{tmp}/w.nii.gz"], "Could not read"),
    "NaN": (["register", "{nan}", "{f}", "-o", "{tmp}/w.nii.gz"], "NaN or infinite"),
    "2D with 3D": (["register", "{m}", "{volume}", "-o", "{tmp}/w.nii.gz"], "is 2D (48, 48) but the fixed"),
    "unknown method": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--method", "syn"],
                       "unknown --method 'syn'"),
    "model with classical": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--method", "demons",
                              "--model", "{corrupt}"], "--model is for the learned methods"),
    "corrupt checkpoint": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--method", "voxelmorph",
                            "--model", "{corrupt}"], "not a readable regedu checkpoint"),
    "missing checkpoint": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--method", "voxelmorph",
                            "--model", "{tmp}/none.pt"], "no checkpoint at"),
    "bad output name": (["register", "{m}", "{f}", "-o", "{tmp}/w.png"], "must end in .nii.gz or .nii"),
    "output folder": (["register", "{m}", "{f}", "-o", "{tmp}/no/w.nii.gz"], "does not exist; create it"),
    "labels alone": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--labels", "{m_labels}"],
                     "come together"),
    "labels off grid": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--labels", "{m_big_labels}",
                         "--labels-out", "{tmp}/wl.nii.gz"], "must lie on its image's grid"),
    "unknown option": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--method", "demons", "--option",
                        "iters=5"], "does not take the option(s) ['iters']"),
    "bad option": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--option", "5"], "KEY=VALUE"),
    "evaluate option checked first": (["evaluate", "{root}/nowhere.csv", "--affine-option", "weight=1"],
                                      "--affine-option (the affine stage of default) does not take"),
    "2D mm field": (["register", "{m}", "{f}", "-o", "{tmp}/w.nii.gz", "--disp", "{tmp}/d.nii.gz",
                     "--disp-format", "mm"], "use --disp-format voxels or itk"),
    "zero minutes": (["train", "--data", "brain2d", "--minutes", "0", "--out", "{tmp}/m.pt"],
                     "argument --minutes: must be a number > 0"),
    "zero steps": (["train", "--data", "{one}", "--steps", "0", "--out", "{tmp}/m.pt"], "positive integer"),
    "unknown data": (["train", "--data", "{root}/nowhere", "--out", "{tmp}/m.pt"], "is neither one of"),
    "unknown model": (["train", "--data", "{one}", "--model", "unet", "--out", "{tmp}/m.pt"],
                      "invalid choice"),
    "supervised on files": (["train", "--data", "{one}", "--loss", "supervised", "--out", "{tmp}/m.pt"],
                            "needs the true displacement"),
    "dice without labels": (["train", "--data", "{unlabelled}", "--loss", "dice", "--out", "{tmp}/m.pt"],
                            "needs label maps"),
    "existing checkpoint": (["train", "--data", "{one}", "--out", "{corrupt}"], "exists already"),
    "resume another model": (["train", "--data", "{one}", "--model", "light", "--resume", "--out",
                              "{tmp}/model.pt"], "holds a VoxelMorph"),
    "bad device": (["train", "--data", "{one}", "--device", "toaster", "--out", "{tmp}/m.pt"],
                   "is not a device"),
    "missing pair list": (["evaluate", "{root}/nowhere.csv"], "does not exist"),
    "bad pair list": (["evaluate", "{bad_header}"], "needs a header row with columns moving,fixed"),
    "missing listed file": (["evaluate", "{missing}"], "pair 1: the moving file"),
    "csv suffix": (["evaluate", "{pairs}", "--csv", "{tmp}/table.txt"], "must end in .csv"),
    "learned demo method": (["demo", "--method", "voxelmorph", "--out", "{tmp}/d.png"], "is learned"),
    "demo suffix": (["demo", "--out", "{tmp}/demo.gif"], "must end in .png"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_is_one_line_and_exit_status_2(case, files, model, tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(model.read_bytes())
    names = {key: str(value) for key, value in files.items()} | {"tmp": str(tmp_path)}
    argv, expected = BAD_CALLS[case]
    status, out, err = run([part.format(**names) for part in argv], capsys)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("regedu: error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err and out == ""


def test_help_and_the_console_script():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "regedu", "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("train", "register", "evaluate", "demo"):
        assert command in done.stdout
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'regedu = "regedu.cli:main"' in pyproject


def test_register_help_documents_the_field_layout(capsys):
    status, out, _ = run(["register", "--help"], capsys)
    assert status == 0 and "(X, Y, Z, ndim)" in out and "warped(x) = moving(x + disp(x))" in out


# ---------------------------------------------------------------------------
# faults and bad input: memory, outputs, messages that name the file and the fix
# ---------------------------------------------------------------------------


def affine_args(files, tmp_path, *extra):
    return ["register", files["m"], files["f"], "-o", tmp_path / "w.nii.gz", "--method", "affine",
            "--option", "iterations=5", *extra]


def one_error_line(status, out, err) -> str:
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("regedu: error: ") and "Traceback" not in err, err
    return lines[0]


def huge_header_file(path: Path, body: bytes = b"\0" * 64) -> Path:
    """A NIfTI file whose header declares a 2048^3 uint8 grid (8 GB) but that holds ``body`` only."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape((2048, 2048, 2048))
    header.set_sform(np.eye(4), code=1)
    data = header.binaryblock + b"\0" * 4 + body  # 348-byte header, 4-byte extension flag, voxels
    if path.name.endswith(".gz"):
        import gzip

        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_header_declaring_a_huge_grid_is_refused_before_reading(files, tmp_path, suffix, capsys):
    huge = huge_header_file(tmp_path / f"huge{suffix}")
    line = one_error_line(*run(["register", huge, files["f"], "-o", tmp_path / "w.nii.gz"], capsys))
    assert str(huge) in line and "2048x2048x2048" in line and "Re-download or re-export" in line


def test_a_label_map_with_absurdly_many_labels_is_refused(tmp_path, capsys):
    shape = (100, 100)
    image = torch.rand(1, 1, *shape)
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("m", "f", "ml", "fl")}
    save_nifti(image, paths["m"], AFFINE)
    save_nifti(image.flip(-1), paths["f"], AFFINE)
    save_nifti(torch.arange(10_000).view(1, 1, *shape), paths["ml"], AFFINE)  # 10,000 distinct values
    save_nifti(torch.ones(1, 1, *shape, dtype=torch.long), paths["fl"], AFFINE)
    line = one_error_line(*run(["register", paths["m"], paths["f"], "-o", tmp_path / "w.nii.gz", "--labels",
                                paths["ml"], "--labels-out", tmp_path / "wl.nii.gz", "--fixed-labels",
                                paths["fl"], "--method", "affine"], capsys))
    assert str(paths["ml"]) in line and "10000 distinct values" in line and "not a label map" in line


def test_a_pair_that_will_not_fit_in_memory_says_crop_or_downsample(files, tmp_path, monkeypatch, capsys):
    """48 x 48 float32 is 9 kB: reading it fits in 300 kB, registering it (about 150x) does not."""
    import regedu.api
    import regedu.memory

    monkeypatch.setattr(regedu.memory, "available_bytes", lambda device=None: 300_000)
    monkeypatch.setattr(regedu.api, "register", lambda *a, **k: pytest.fail("registered anyway"))
    line = one_error_line(*run(affine_args(files, tmp_path), capsys))
    assert "48x48 voxels" in line and "Crop both images" in line and "downsample them 3x per axis" in line
    assert "to 16x16 voxels" in line and not (tmp_path / "w.nii.gz").exists()


def test_running_out_of_memory_during_the_registration_gives_the_same_advice(files, tmp_path, monkeypatch,
                                                                              capsys):
    import regedu.api

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 7340032000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(regedu.api, "register", out_of_memory)
    line = one_error_line(*run(affine_args(files, tmp_path), capsys))
    assert "DefaultCPUAllocator" not in line and "Crop both images" in line and "downsample" in line


def test_two_runs_writing_the_same_output_cannot_both_succeed(files, tmp_path, monkeypatch, capsys):
    """A second run starts while the first registers: it must refuse at once, not replace the file."""
    import regedu.api

    register, second = regedu.api.register, {}

    def register_while_another_run_starts(*args, **kwargs):
        second["status"] = cli.main([str(a) for a in affine_args(files, tmp_path)])
        second["err"] = capsys.readouterr().err
        second["still locked"] = (tmp_path / ".w.nii.gz.regedu-lock").exists()  # the first run's claim
        return register(*args, **kwargs)

    monkeypatch.setattr(regedu.api, "register", register_while_another_run_starts)
    status, out, err = run(affine_args(files, tmp_path), capsys)
    assert status == 0, err
    assert second["status"] == 2 and "being written by another regedu run" in second["err"], second
    assert str(tmp_path / "w.nii.gz") in second["err"] and second["still locked"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.nii.gz"]  # the lock is gone with the run


def test_a_dead_runs_lock_and_temporaries_are_cleaned_up(files, tmp_path, capsys):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    import socket

    (tmp_path / ".w.nii.gz.regedu-lock").write_text(f"{socket.gethostname()} {finished.stdout.strip()}\n")
    stale = [tmp_path / ".w.nii.gz.0a1b2c3d.partial.nii.gz", tmp_path / "..w.nii.gz.0a1b2c3d.partial.nii.gz"
             ".9f8e7d6c.partial.nii.gz"]
    keep = [tmp_path / ".other.nii.gz.0a1b2c3d.partial.nii.gz", tmp_path / ".w.nii.gz.notes"]
    for path in stale + keep:
        path.write_bytes(b"half a file")
        os.utime(path, (1e9, 1e9))  # written long before this run
    status, out, err = run(affine_args(files, tmp_path), capsys)
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["w.nii.gz", *(p.name for p in keep)])


def test_a_failed_disp_write_leaves_no_output_and_names_the_users_file(files, tmp_path, monkeypatch, capsys):
    import errno

    import regedu.data.io as io

    save = io.nib.save

    def disk_full_for_the_field(img, filename):
        if "d.nii.gz" in str(filename):
            Path(filename).write_bytes(b"partial")  # the disk filled up in the middle of the write
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return save(img, filename)

    monkeypatch.setattr(io.nib, "save", disk_full_for_the_field)
    argv = affine_args(files, tmp_path, "--disp", tmp_path / "d.nii.gz")
    line = one_error_line(*run(argv, capsys))
    assert f"could not write {tmp_path / 'd.nii.gz'}: the disk" in line and "is full" in line
    assert ".partial" not in line
    assert list(tmp_path.iterdir()) == []  # neither -o nor a hidden temporary nor a lock
    monkeypatch.setattr(io.nib, "save", save)
    status, out, err = run(argv, capsys)  # the rerun needs no --overwrite
    assert status == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {"w.nii.gz", "d.nii.gz"}


READ_ONLY_RUNS = {
    "register": ["register", "{m}", "{f}", "-o", "{ro}/w.nii.gz", "--method", "affine"],
    "evaluate": ["evaluate", "{one}", "--method", "affine", "--csv", "{ro}/table.csv"],
    "train": ["train", "--data", "{one}", "--steps", "3", "--batch-size", "1", "--out", "{ro}/model.pt"],
    "demo": ["demo", "--method", "demons", "--out", "{ro}/demo.png"],
}


@pytest.mark.parametrize("command", list(READ_ONLY_RUNS))
def test_a_read_only_output_folder_is_found_before_any_work(command, files, tmp_path, monkeypatch, capsys):
    """A read-only file system (EROFS, simulated: the tests may run as root, whom chmod does not stop)."""
    import errno

    import regedu.api
    import regedu.train

    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_open = os.open

    def open_on_a_read_only_folder(path, flags, *args, **kwargs):
        if Path(path).parent == read_only and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_on_a_read_only_folder)
    monkeypatch.setattr(regedu.api, "register", lambda *a, **k: pytest.fail("registered before the check"))
    monkeypatch.setattr(regedu.train, "train", lambda *a, **k: pytest.fail("trained before the check"))
    names = {key: str(value) for key, value in files.items()} | {"ro": str(read_only)}
    line = one_error_line(*run([part.format(**names) for part in READ_ONLY_RUNS[command]], capsys))
    assert f"{read_only} is read-only" in line and ".regedu-lock" not in line


def test_an_all_zero_image_is_named_by_its_file(files, tmp_path, capsys):
    empty = save_nifti(torch.zeros(1, 1, *SHAPE), tmp_path / "empty.nii.gz", AFFINE)
    line = one_error_line(*run(["register", empty, files["f"], "-o", tmp_path / "w.nii.gz"], capsys))
    assert f"the moving image {empty} has the same value (0) at every voxel" in line and "item 0" not in line


def test_an_all_zero_sform_gets_advice_the_command_line_can_follow(files, tmp_path, capsys):
    img = nib.load(files["m"])
    broken = nib.Nifti1Image(np.asarray(img.dataobj), None)
    broken.set_sform(np.zeros((4, 4)), code=1)
    broken.set_qform(None, code=0)
    nib.save(broken, tmp_path / "zero_sform.nii.gz")
    line = one_error_line(*run(["register", tmp_path / "zero_sform.nii.gz", files["f"], "-o",
                                tmp_path / "w.nii.gz"], capsys))
    assert str(tmp_path / "zero_sform.nii.gz") in line and "fslorient -copyqform2sform" in line
    assert "canonical=False" not in line


def test_evaluate_accepts_a_csv_saved_by_excel(files, tmp_path, capsys):
    """Excel's "CSV UTF-8": a byte-order mark and CRLF line ends."""
    table = files["root"] / "excel.csv"
    table.write_bytes("\ufeffmoving,fixed,moving_labels,fixed_labels\r\nm.nii.gz,f.nii.gz,,\r\n".encode())
    status, out, err = run(["evaluate", table, "--method", "affine", "--option", "iterations=5"], capsys)
    assert status == 0, err
    assert "m.nii.gz" in out


def test_evaluate_names_a_csv_that_is_not_utf8(files, capsys):
    table = files["root"] / "latin1.csv"
    table.write_bytes("moving,fixed\nm.nii.gz,f.nii.gz # Région\n".encode("latin-1"))
    line = one_error_line(*run(["evaluate", table, "--method", "affine"], capsys))
    assert str(table) in line and "not UTF-8" in line and "CSV UTF-8" in line


def test_evaluate_checks_every_file_before_the_first_pair(files, monkeypatch, capsys):
    import regedu.api

    table = files["root"] / "late_bad.csv"
    table.write_text("moving,fixed\nm.nii.gz,f.nii.gz\nm.nii.gz,f.nii.gz\nm.nii.gz,text.nii.gz\n")
    monkeypatch.setattr(regedu.api, "register", lambda *a, **k: pytest.fail("a pair ran before the check"))
    line = one_error_line(*run(["evaluate", table, "--method", "affine"], capsys))
    assert f"pair 3 of {table}" in line and str(files["text"]) in line and "Could not read" in line


def test_evaluate_writes_the_rows_done_when_a_pair_fails(files, tmp_path, monkeypatch, capsys):
    import regedu.api

    register, calls = regedu.api.register, []

    def fail_on_the_second_pair(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("something went wrong in this pair")
        return register(*args, **kwargs)

    monkeypatch.setattr(regedu.api, "register", fail_on_the_second_pair)
    table = tmp_path / "table.csv"
    status, out, err = run(["evaluate", files["pairs"], "--method", "affine", "--option", "iterations=5",
                            "--csv", table], capsys)
    assert status == 2 and "pair 2 (f.nii.gz, m.nii.gz): something went wrong" in err.splitlines()[-1]
    assert f"wrote the 1 pair(s) done before pair 2 failed to {table}" in err
    rows = table.read_text().strip().splitlines()
    assert rows[0] == ",".join(cli.EVALUATION_COLUMNS) and len(rows) == 2 and rows[1].startswith("1,m.nii.gz")
