"""regedu.register(..., model="file.pt") loads a checkpoint once per version of the file."""

from __future__ import annotations

import os

import pytest
import torch

from regedu import model_cache
from regedu import train as T
from regedu.api import register
from regedu.models import VoxelMorph

SHAPE = (24, 28)


def tiny_model(seed):
    torch.manual_seed(seed)
    return VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4, 4)).eval()


@pytest.fixture
def pair():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 1, *SHAPE, generator=generator), torch.rand(1, 1, *SHAPE, generator=generator)


@pytest.fixture
def loads(monkeypatch):
    """Counts the checkpoint files torch.load reads; the cache starts empty and is emptied after."""
    model_cache.clear_model_cache()
    count = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        count.append(args[0] if args else kwargs.get("f"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    yield count
    model_cache.clear_model_cache()


def test_a_loop_over_pairs_loads_the_checkpoint_once(pair, loads, tmp_path):
    path = T.save_checkpoint(tmp_path / "tiny.pt", tiny_model(0))
    first = register(*pair, method="voxelmorph", model=path)
    again = register(*pair, method="voxelmorph", model=str(path))  # same file, spelled differently
    assert len(loads) == 1
    assert torch.equal(first.disp, again.disp) and torch.equal(first.warped, again.warped)
    uncached = register(*pair, method="voxelmorph", model=T.load_model(path))
    assert torch.equal(first.disp, uncached.disp)  # the cached network gives what a fresh load gives


def test_a_rewritten_or_touched_file_is_loaded_again(pair, loads, tmp_path):
    path = T.save_checkpoint(tmp_path / "model.pt", tiny_model(0))
    before = register(*pair, method="voxelmorph", model=path)
    T.save_checkpoint(path, tiny_model(1))  # other weights, same name
    after = register(*pair, method="voxelmorph", model=path)
    assert len(loads) == 2
    assert not torch.equal(before.disp, after.disp)
    torch.testing.assert_close(after.disp, register(*pair, method="voxelmorph", model=tiny_model(1)).disp)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touch
    register(*pair, method="voxelmorph", model=path)
    assert len(loads) == 3


def test_devices_are_cached_apart_and_old_models_are_dropped(loads, tmp_path, monkeypatch):
    monkeypatch.setattr(model_cache, "MAX_CACHED_MODELS", 2)
    paths = [T.save_checkpoint(tmp_path / f"m{k}.pt", tiny_model(k)) for k in range(3)]
    for path in paths:
        model_cache.cached_model(path)
    assert len(loads) == 3
    model_cache.cached_model(paths[2])  # still cached
    assert len(loads) == 3
    model_cache.cached_model(paths[0])  # the least recently used was dropped
    assert len(loads) == 4
    model_cache.cached_model(paths[0], device="meta")  # another device is another entry
    assert len(loads) == 5


def test_a_cached_model_is_frozen_and_a_caller_cannot_change_it_for_others(pair, loads, tmp_path):
    path = T.save_checkpoint(tmp_path / "tiny.pt", tiny_model(0))
    network = model_cache.cached_model(path)
    assert not network.training
    assert not any(p.requires_grad for p in network.parameters())
    reference = register(*pair, method="voxelmorph", model=path)
    refined = register(*pair, method="voxelmorph+io", model=path, steps=3)  # optimises its own field only
    assert not network.training and all(p.grad is None for p in network.parameters())
    assert not torch.equal(refined.disp, reference.disp)
    assert torch.equal(register(*pair, method="voxelmorph", model=path).disp, reference.disp)
    assert len(loads) == 1


def test_a_missing_file_is_not_served_from_memory(pair, loads, tmp_path):
    path = T.save_checkpoint(tmp_path / "tiny.pt", tiny_model(0))
    register(*pair, method="voxelmorph", model=path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        register(*pair, method="voxelmorph", model=path)
