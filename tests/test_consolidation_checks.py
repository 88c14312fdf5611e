"""Issue 15, item 5: every scalar validator lives in regedu.checks, a wrong type is a TypeError, and the
`regedu` command prints only a user's mistakes as one line (a bug keeps its traceback)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import regedu
from regedu import checks, cli, losses
from regedu.classical import common
from regedu.data import random_disp, save_nifti
from regedu.train import TrainConfig, instance_optimize

PACKAGE = Path(regedu.__file__).parent
SCALAR_VALIDATORS = {"check_number", "_check_number", "_positive_number", "check_positive_int",
                     "_positive_int"}


# ---------------------------------------------------------------------------
# the two scalar checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["3", 3.0, True, None, [3]])
def test_an_integer_of_the_wrong_type_is_a_type_error(value):
    with pytest.raises(TypeError, match="`levels` must be an integer >= 1"):
        checks.check_positive_int(value, "levels")


def test_text_that_reads_as_a_number_says_how_to_convert_it():
    with pytest.raises(TypeError, match=r"convert it with int\('3'\)"):
        checks.check_positive_int("3", "levels")
    with pytest.raises(TypeError, match=r"convert it with float\('0.1'\)"):
        checks.check_number("0.1", "lr")


def test_an_integer_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="`levels` must be an integer >= 1, got 0"):
        checks.check_positive_int(0, "levels")
    assert checks.check_positive_int(0, "steps", minimum=0) == 0
    assert type(checks.check_positive_int(np.int64(4), "levels")) is int


@pytest.mark.parametrize("value, strict, message", [
    (math.nan, False, "finite number >= 0"),
    (math.inf, False, "finite number >= 0"),
    (-0.5, False, "finite number >= 0, got -0.5"),
    (0, True, "positive number"),
])
def test_a_number_out_of_range_is_a_value_error(value, strict, message):
    with pytest.raises(ValueError, match=message):
        checks.check_number(value, "weight", strict=strict)


def test_a_number_check_returns_a_float_and_adds_its_hint():
    assert checks.check_number(np.float32(0.5), "lr", strict=True) == 0.5
    assert checks.check_number(-2, "shift", minimum=-3) == -2.0
    with pytest.raises(TypeError, match="`lr` must be a number"):
        checks.check_number(True, "lr")
    with pytest.raises(ValueError, match="got -1. Lower it."):
        checks.check_number(-1, "lr", strict=True, hint="Lower it.")


# ---------------------------------------------------------------------------
# one home: the modules that checked scalars themselves now call regedu.checks
# ---------------------------------------------------------------------------


def _functions_defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_no_module_but_checks_defines_a_scalar_validator():
    exempt = {PACKAGE / "checks.py"}
    defined = {str(path.relative_to(PACKAGE)): _functions_defined(path) & SCALAR_VALIDATORS
               for path in sorted(PACKAGE.rglob("*.py")) if path not in exempt}
    assert {name: found for name, found in defined.items() if found} == {}
    assert common.check_number is checks.check_number  # its old import path still works


@pytest.mark.parametrize("call, error, message", [
    (lambda: TrainConfig(lr="0.1"), TypeError, "`lr` must be a number"),
    (lambda: TrainConfig(steps=2.0), TypeError, "`steps` must be an integer"),
    (lambda: TrainConfig(minutes=0), ValueError, "minutes=None"),
    (lambda: TrainConfig(weight=-1), ValueError, "`weight` must be a finite number >= 0"),
    (lambda: TrainConfig(num_workers=-1), ValueError, "`num_workers` must be an integer >= 0"),
    (lambda: losses.mi(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), sigma=-0.1), ValueError,
     "`sigma` must be a positive number"),
    (lambda: losses.ncc(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), eps="small"), TypeError,
     "`eps` must be a number"),
    (lambda: random_disp((8, 8), magnitude="3", seed=0), TypeError, "`magnitude` must be a number"),
    (lambda: random_disp((8, 8), magnitude=math.nan, seed=0), ValueError, "`magnitude` must be a finite"),
])
def test_the_modules_raise_what_checks_raises(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_instance_optimisation_checks_its_step_count():
    model = regedu.models.VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4))
    image = torch.rand(1, 1, 16, 16)
    with pytest.raises(TypeError, match="`steps` must be an integer >= 0"):
        instance_optimize(model, image, image, steps=1.5)
    with pytest.raises(ValueError, match="`steps` must be an integer >= 0, got -1"):
        instance_optimize(model, image, image, steps=-1)


# ---------------------------------------------------------------------------
# the command: one line for a user's mistake, a traceback for a bug
# ---------------------------------------------------------------------------


@pytest.fixture()
def pair(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    blob = torch.exp(-((torch.arange(24.0) - 11.5) ** 2) / 40)
    image = (blob[:, None] * blob[None, :])[None, None]
    paths = {"moving": tmp_path / "m.nii.gz", "fixed": tmp_path / "f.nii.gz"}
    save_nifti(image, paths["moving"], affine)
    save_nifti(image.roll(1, dims=2), paths["fixed"], affine)
    return paths


def _register(pair, tmp_path) -> list[str]:
    return ["register", str(pair["moving"]), str(pair["fixed"]), "-o", str(tmp_path / "w.nii.gz"),
            "--method", "demons"]


@pytest.mark.parametrize("error", [ValueError("the pair is wrong"), FileNotFoundError("no such file"),
                                   FloatingPointError("the loss became nan")])
def test_a_users_mistake_is_one_line(error, pair, tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(regedu.api, "register", fail)
    status = cli.main(_register(pair, tmp_path))
    err = capsys.readouterr().err
    assert status == 2 and err.strip() == f"regedu: error: {error}"


@pytest.mark.parametrize("bug", [TypeError("unsupported operand type(s)"), RuntimeError("shape mismatch"),
                                 KeyError("disp"), AttributeError("no attribute 'warped'")])
def test_a_bug_keeps_its_traceback_and_leaves_no_locks(bug, pair, tmp_path, monkeypatch):
    def buggy(*args, **kwargs):
        raise bug

    monkeypatch.setattr(regedu.api, "register", buggy)
    monkeypatch.delenv("REGEDU_DEBUG", raising=False)
    with pytest.raises(type(bug)):
        cli.main(_register(pair, tmp_path))
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]  # locks released


def test_a_bug_in_evaluate_is_not_reported_as_a_failed_pair(pair, tmp_path, monkeypatch):
    table = tmp_path / "pairs.csv"
    table.write_text("moving,fixed\nm.nii.gz,f.nii.gz\n")

    def buggy(*args, **kwargs):
        raise TypeError("a bug in the method")

    monkeypatch.setattr(regedu.api, "register", buggy)
    with pytest.raises(TypeError, match="a bug in the method"):
        cli.main(["evaluate", str(table), "--method", "demons"])


def test_the_command_treats_only_user_errors_as_one_line():
    assert not {TypeError, RuntimeError, KeyError, AttributeError} & set(cli.USER_ERRORS)
    assert {ValueError, OSError} <= set(cli.USER_ERRORS)
