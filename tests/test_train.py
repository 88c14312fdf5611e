"""The training loop: every supervision learns, checkpoints round-trip and resume exactly, DDP matches."""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import Dataset, default_collate

from regedu import train as T
from regedu import warps
from regedu.models import VoxelMorph

SHAPE = (32, 32)


def blob(centre, shape=SHAPE, radius=6.0):
    grid = warps.identity_grid(shape)
    c = torch.tensor(centre, dtype=torch.float32).view(2, 1, 1)
    return torch.exp(-((grid - c) ** 2).sum(0) / (2 * radius**2))[None]


class ShiftedBlobs(Dataset):
    """Tiny pairs: a blob and the same blob shifted by up to 3 voxels, with labels and the true field."""

    def __init__(self, length=8, seed=0, nan=False):
        g = torch.Generator().manual_seed(seed)
        self.shifts = torch.randint(-3, 4, (length, 2), generator=g).float()
        self.nan = nan

    def __len__(self):
        return len(self.shifts)

    def __getitem__(self, i):
        shift = self.shifts[i]
        moving = blob((15.5, 15.5))
        fixed = blob((15.5 + shift[0], 15.5 + shift[1]))
        # fixed(x) = moving(x - shift): the true pulling field is -shift everywhere
        disp = -shift.view(2, 1, 1).expand(2, *SHAPE).clone()
        if self.nan:  # a broken ground truth: the loss becomes NaN
            disp = disp * float("nan")
        return {"moving": moving, "fixed": fixed, "moving_labels": (moving > 0.5).long(),
                "fixed_labels": (fixed > 0.5).long(), "disp": disp}


def small_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return VoxelMorph(2, encoder=(8, 8), decoder=(8, 8, 8, 8), **kwargs)


@pytest.mark.parametrize("supervision, similarity, factor", [
    ("unsupervised", "mse", 0.5), ("unsupervised", "ncc", None), ("supervised", "mse", 0.5),
    ("labels", "mse", 0.5)])
def test_every_supervision_learns(supervision, similarity, factor):
    data = ShiftedBlobs(length=4)
    batch = default_collate([data[i] for i in range(4)])
    config = T.TrainConfig(supervision=supervision, similarity=similarity, weight=0.01, lr=1e-2, batch_size=4,
                           steps=40)
    model = small_model()
    with torch.no_grad():
        before = float(T.compute_loss(model, batch, config))
    history = T.train(model, data, config, progress=False)
    with torch.no_grad():
        after = float(T.compute_loss(model, batch, config))
    assert history.step == 40 and len(history.losses) == 40
    if factor is None:  # ncc lives in [-1, 0] and starts near -0.94 on blobs
        assert after < before - 0.01
    else:
        assert after < factor * before


def test_validation_dice_improves_and_evaluate_reports():
    model = small_model()
    before = T.evaluate(model, ShiftedBlobs(seed=1))
    history = T.train(model, ShiftedBlobs(), validation=ShiftedBlobs(seed=1), steps=80, batch_size=4, lr=3e-3,
                      supervision="supervised", validate_every=40, progress=False)
    assert [step for step, _ in history.validation] == [40, 80]
    after = T.evaluate(model, ShiftedBlobs(seed=1))
    assert 0 <= before["dice"] <= 1 and after["dice"] > before["dice"]
    assert after["seconds_per_pair"] > 0


def test_callback_and_time_budget():
    seen = []
    history = T.train(small_model(), ShiftedBlobs(), steps=10_000, minutes=0.02, batch_size=2,
                      callback=lambda step, loss: seen.append(step), progress=False)
    assert 0 < history.step < 10_000
    assert seen == list(range(1, history.step + 1))


def test_cosine_schedule_falls_from_lr_to_zero_by_steps_or_minutes():
    by_steps = T.TrainConfig(lr=1e-3, schedule="cosine", steps=100)
    assert T.learning_rate(by_steps, 0, 0.0) == pytest.approx(1e-3)
    assert T.learning_rate(by_steps, 50, 0.0) == pytest.approx(5e-4)
    assert T.learning_rate(by_steps, 100, 0.0) == pytest.approx(0.0, abs=1e-12)
    rates = [T.learning_rate(by_steps, step, 0.0) for step in range(101)]
    assert all(a >= b for a, b in zip(rates[:-1], rates[1:], strict=True))
    # with a time budget, whichever budget is further along decides
    by_time = T.TrainConfig(lr=1e-3, schedule="cosine", steps=10**6, minutes=2.0)
    assert T.learning_rate(by_time, 10, 60.0) == pytest.approx(5e-4)
    assert T.learning_rate(by_time, 10, 500.0) == pytest.approx(0.0, abs=1e-12)
    assert T.learning_rate(T.TrainConfig(lr=1e-3), 99, 1e4) == 1e-3  # constant is the default
    with pytest.raises(ValueError, match="schedule"):
        T.TrainConfig(schedule="linear-ish")


def test_training_applies_the_schedule(monkeypatch):
    seen = []

    class Spy(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", Spy)
    T.train(small_model(), ShiftedBlobs(), steps=4, batch_size=2, lr=1e-2, schedule="cosine", progress=False)
    assert seen == pytest.approx([1e-2 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])


def test_checkpoint_round_trip(tmp_path):
    model = small_model(diffeomorphic=True, int_downsize=1)
    path = tmp_path / "model.pt"
    T.train(model, ShiftedBlobs(), steps=3, batch_size=2, checkpoint=path, progress=False)
    loaded = T.load_model(path)
    assert isinstance(loaded, VoxelMorph) and loaded.diffeomorphic
    item = ShiftedBlobs()[0]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(item["moving"][None], item["fixed"][None]).disp,
                                   model(item["moving"][None], item["fixed"][None]).disp)
    payload = T.load_checkpoint(path)
    assert payload["config"]["steps"] == 3 and payload["history"]["step"] == 3
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    options = dict(batch_size=2, lr=3e-3, checkpoint_every=2, progress=False)
    straight = small_model()
    T.train(straight, ShiftedBlobs(length=5), steps=6, **options)

    interrupted = small_model()
    path = tmp_path / "run.pt"
    T.train(interrupted, ShiftedBlobs(length=5), steps=4, checkpoint=path, **options)
    resumed = small_model(seed=123)  # different initial weights: everything must come from the checkpoint
    history = T.train(resumed, ShiftedBlobs(length=5), steps=6, checkpoint=path, resume=True, **options)
    assert history.step == 6 and len(history.losses) == 6
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_cosine_run_trained_in_pieces_is_the_same_run(tmp_path):
    options = dict(batch_size=2, lr=3e-3, steps=6, schedule="cosine", checkpoint_every=100, progress=False)
    straight = small_model()
    T.train(straight, ShiftedBlobs(length=5), **options)

    pieces = small_model()
    path = tmp_path / "run.pt"
    first = T.train(pieces, ShiftedBlobs(length=5), checkpoint=path, until=2, **options)
    assert first.step == 2
    assert T.load_checkpoint(path)["history"]["step"] == 2
    resumed = small_model(seed=123)
    T.train(resumed, ShiftedBlobs(length=5), checkpoint=path, resume=True, until=5, **options)
    history = T.train(resumed, ShiftedBlobs(length=5), checkpoint=path, resume=True, until=50, **options)
    assert history.step == 6  # `until` never goes past `steps`
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    model = small_model()
    T.train(model, ShiftedBlobs(), steps=1, batch_size=4, progress=False)
    if rank == 0:
        torch.save(model.state_dict(), out)
    torch.distributed.destroy_process_group()


def _ddp_timed_worker(rank, world, port, out):
    """DDP with a time budget and the cosine schedule: each process saves its step count and weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    model = small_model()
    history = T.train(model, ShiftedBlobs(), steps=10**6, minutes=0.03, schedule="cosine", batch_size=4,
                      progress=False)
    torch.save({"step": history.step, "model": model.state_dict()}, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_step_matches_single_process(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    single = small_model()
    T.train(single, ShiftedBlobs(), steps=1, batch_size=4, progress=False)
    distributed = torch.load(out, weights_only=True)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(distributed[name], value, atol=1e-6, rtol=1e-4)


def test_distributed_time_budget_stops_every_process_at_the_same_step(tmp_path):
    out = tmp_path / "timed"
    mp.spawn(_ddp_timed_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    first, second = (torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1))
    assert first["step"] == second["step"] > 0
    for name, value in first["model"].items():  # same learning rate every step: the replicas agree
        torch.testing.assert_close(second["model"][name], value)


def test_instance_optimization_improves_the_pair():
    model = small_model()
    item = ShiftedBlobs()[1]
    moving, fixed = item["moving"][None], item["fixed"][None]
    with torch.no_grad():
        before = torch.mean((model(moving, fixed).warped - fixed) ** 2)
    warped, disp = T.instance_optimize(model, moving, fixed, steps=40, lr=0.2, similarity="mse", weight=0.01)
    assert disp.shape == (1, 2, *SHAPE)
    assert torch.mean((warped - fixed) ** 2) < 0.5 * before


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="minutes"):
        T.TrainConfig(minutes=0)
    with pytest.raises(ValueError, match="supervision"):
        T.TrainConfig(supervision="magic")
    with pytest.raises(ValueError, match="empty"):
        T.train(small_model(), ShiftedBlobs(length=0), steps=1, progress=False)
    with pytest.raises(FloatingPointError, match="learning rate"):
        T.train(small_model(), ShiftedBlobs(nan=True), steps=1, supervision="supervised", progress=False)
    with pytest.raises(ValueError, match="needs `disp`"):
        data = [{k: v for k, v in ShiftedBlobs()[0].items() if k != "disp"}]
        T.train(small_model(), data, steps=1, batch_size=1, supervision="supervised", progress=False)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        T.load_model(corrupt)
    with pytest.raises(FileNotFoundError, match="regedu train"):
        T.load_model(tmp_path / "missing.pt")
    path = tmp_path / "small.pt"
    T.save_checkpoint(path, small_model())
    with pytest.raises(ValueError, match="does not fit"):
        T.train(VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4)), ShiftedBlobs(), steps=1, checkpoint=path,
                resume=True, progress=False)


class _RunsCode:
    """Unpickling this would create a file: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_refused_checkpoint_is_not_reported_with_torchs_advice_to_load_it_unsafely(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "malicious.pt"
    torch.save({"format": T.CHECKPOINT_FORMAT, "payload": _RunsCode(marker)}, path)
    with pytest.raises(ValueError) as caught:
        T.load_checkpoint(path)
    message = str(caught.value)
    assert "weights_only" not in message and "safe_globals" not in message and "trusted" not in message
    assert "not a readable regedu checkpoint" in message and "never loads" in message
    assert not marker.exists()


def test_a_full_disk_during_a_checkpoint_names_the_checkpoint(tmp_path, monkeypatch):
    import errno

    def disk_full(payload, handle):
        handle.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(T.torch, "save", disk_full)
    path = tmp_path / "model.pt"
    with pytest.raises(OSError, match=f"could not write {path}: the disk holding .* is full") as caught:
        T.save_checkpoint(path, small_model())
    assert ".tmp" not in str(caught.value) and list(tmp_path.iterdir()) == []
