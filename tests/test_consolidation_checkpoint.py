"""Issue 15, item 3: checkpoint files in regedu.models.checkpoint (plain dicts, no import of the training
loop), re-exported by regedu.train; RegistrationResult in regedu.result, for classical and learned methods."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import regedu
from regedu import classical, result, train
from regedu.models import VoxelMorph, checkpoint

PACKAGE = Path(regedu.__file__).parent


def tiny_model(seed: int = 0, **options) -> VoxelMorph:
    torch.manual_seed(seed)
    return VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4), **options)


def test_regedu_train_re_exports_the_same_functions():
    for name in ("save_checkpoint", "load_checkpoint", "load_model", "CHECKPOINT_FORMAT"):
        assert getattr(train, name) is getattr(checkpoint, name), name


def test_a_checkpoint_of_plain_dicts_round_trips(tmp_path):
    model = tiny_model(3)
    config, history = {"lr": 0.01, "steps": 5}, {"step": 5, "losses": [1.0, 0.5]}
    path = checkpoint.save_checkpoint(tmp_path / "sub" / "model.pt", model, config=config, history=history)
    payload = checkpoint.load_checkpoint(path)
    assert payload["config"] == config and payload["history"] == history
    assert payload["model_spec"] == {"class": "VoxelMorph", "config": dict(model.config)}
    loaded = checkpoint.load_model(path)
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert checkpoint.checkpoint_step(path) == 5


def test_dataclasses_are_stored_as_their_fields(tmp_path):
    config, history = train.TrainConfig(steps=7, lr=0.003), train.History(step=7, losses=[2.0])
    as_dataclasses = checkpoint.save_checkpoint(tmp_path / "a.pt", tiny_model(), config=config,
                                                history=history)
    as_dicts = checkpoint.save_checkpoint(tmp_path / "b.pt", tiny_model(), config=dataclasses.asdict(config),
                                          history=dataclasses.asdict(history))
    first, second = checkpoint.load_checkpoint(as_dataclasses), checkpoint.load_checkpoint(as_dicts)
    assert first["config"] == second["config"] == dataclasses.asdict(config)
    assert first["history"] == second["history"] and first["history"]["step"] == 7


def test_check_same_model_says_which_models_differ(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", tiny_model(), history={"step": 12})
    assert checkpoint.check_same_model(path, tiny_model(1)) == 12  # other weights, same model
    with pytest.raises(ValueError, match=r"holds a VoxelMorph .* the model to train is a VoxelMorph"):
        checkpoint.check_same_model(path, tiny_model(diffeomorphic=True))


def test_every_model_class_of_regedu_models_can_be_rebuilt():
    exported = {name for name in regedu.models.__all__
                if isinstance(getattr(regedu.models, name), type)
                and issubclass(getattr(regedu.models, name), torch.nn.Module)}
    # a test-time wrapper (FlipAveraged) has no weights of its own: it is refused, the network saved
    assert exported == set(checkpoint.MODEL_CLASSES) | set(checkpoint.TEST_TIME_WRAPPERS)
    assert not set(checkpoint.MODEL_CLASSES) & set(checkpoint.TEST_TIME_WRAPPERS)


def test_a_test_time_wrapper_is_refused_with_what_to_save_instead(tmp_path):
    wrapped = regedu.models.FlipAveraged(tiny_model(), (0,))
    with pytest.raises(ValueError, match=r"save the network it wraps \(its `.network`\)"):
        checkpoint.save_checkpoint(tmp_path / "wrapped.pt", wrapped)
    assert not (tmp_path / "wrapped.pt").exists()


def _imported_modules(path: Path) -> set[str]:
    """Modules a file imports, relative ones resolved against its package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_checkpoint_module_needs_neither_training_nor_the_models_package():
    imported = _imported_modules(PACKAGE / "models" / "checkpoint.py")
    assert not {name for name in imported if name.startswith(("regedu.train", "regedu.api", "regedu.cli"))}
    assert "regedu.models.pretrained" not in imported
    code = "import sys, regedu.models.checkpoint; print('regedu.train' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_the_command_reads_no_checkpoint_internals():
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        text = path.read_text()
        assert "model_spec" not in text and "load_checkpoint" not in text, path.name


# ---------------------------------------------------------------------------
# the result type
# ---------------------------------------------------------------------------


def test_the_result_type_has_one_home():
    assert classical.RegistrationResult is result.RegistrationResult
    assert classical.common.RegistrationResult is result.RegistrationResult
    assert not _imported_modules(PACKAGE / "result.py") & {"regedu", "regedu.classical", "regedu.models"}


def test_a_result_unpacks_like_a_networks_output():
    warped, disp = torch.rand(1, 1, 4, 4), torch.rand(1, 2, 4, 4)
    found = result.RegistrationResult(warped=warped, disp=disp, history=[[3.0, 2.0], []])
    first, second = found
    assert first is warped and second is disp and found[1] is disp and found[0] is warped
    assert found.final_loss == 2.0


def test_instance_optimisation_returns_a_result_that_unpacks():
    model = tiny_model()
    moving = torch.rand(1, 1, 16, 16)
    fixed = moving.roll(1, dims=2)
    refined = train.instance_optimize(model, moving, fixed, steps=4, lr=0.1, similarity="mse")
    assert isinstance(refined, result.RegistrationResult) and refined.method == "instance_optimize"
    assert len(refined.history) == 1 and len(refined.history[0]) == 4 and refined.seconds > 0
    warped, disp = refined
    assert torch.equal(warped, regedu.warps.warp(moving, disp))
    assert refined[1] is disp
