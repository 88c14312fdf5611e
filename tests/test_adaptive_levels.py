"""Issue 12, item 2: every classical method chooses its pyramid depth from the image.

* every classical method of regedu.api.METHODS registers a 33 x 41 x 25 volume and a 20 x 24 slice
  with its default levels (dense, svf and demons refused them with their old fixed `levels=3`);
* on the 2 mm brains the defaults were tuned on (96 x 112, 96 x 112 x 96) the resolved pyramid and
  iterations are the old defaults, and a 2D run gives the same field as the old explicit options;
* an explicit `levels=` keeps its check and error;
* the CLI reaches the affine stage's options (--affine-option) and hands the methods the voxel size
  of the NIfTI header.
"""

from __future__ import annotations

import functools
import importlib

import numpy as np
import pytest
import torch

import regedu
import regedu.api
from regedu import cli
from regedu.classical import demons, register_dense
from regedu.classical.bspline import control_grid_shape, default_control_spacing
from regedu.classical.common import auto_pyramid, plan_pyramid, pyramid_shapes
from regedu.data import save_nifti
from regedu.filters import gaussian_smooth
from regedu.warps import warp

DENSE = importlib.import_module("regedu.classical.dense")
DEMONS = importlib.import_module("regedu.classical.demons")  # the package's `demons` is the function

CLASSICAL = [name for name in regedu.api.METHODS if name not in regedu.api.LEARNED_METHODS]
SMALL_3D = (33, 41, 25)
SMALL_2D = (20, 24)
TUNED = [(96, 112), (96, 112, 96)]  # the 2 mm brains the defaults were tuned on
OLD_LEVELS = 3  # the old fixed default of dense, svf and demons


def smooth_pair(shape, seed=0):
    """A random smooth image (``fixed``) and the same image moved by about 1.5 voxels (``moving``)."""
    generator = torch.Generator().manual_seed(seed)
    fixed = gaussian_smooth(torch.rand(1, 1, *shape, generator=generator), 2.0)
    fixed = (fixed - fixed.min()) / (fixed.max() - fixed.min())
    shift = torch.tensor([1.5, -1.0, 1.0][:len(shape)]).view(1, -1, *([1] * len(shape)))
    moving = warp(fixed, shift.expand(1, len(shape), *shape))
    return moving, fixed


def stage_levels(name, shape, voxel_size=None) -> int:
    """How many loss histories ``name`` returns with its default levels: the automatic pyramid's
    depth per stage (the affine stage of a pipeline first), plus one for a dense refinement."""
    levels = len(auto_pyramid(shape, voxel_size))
    stages = 2 if name == "default" or name.startswith("affine+") else 1
    refinement = 1 if name.endswith("bspline+dense") or name == "default" else 0
    return stages * levels + refinement


def test_every_classical_method_is_covered():
    assert {"rigid", "affine", "dense", "svf", "bspline", "demons", "diffeomorphic_demons", "default",
            "affine+dense", "affine+svf", "affine+demons"} <= set(CLASSICAL)
    assert "voxelmorph" not in CLASSICAL


@pytest.mark.parametrize("name", CLASSICAL)
def test_a_small_volume_registers_with_the_default_levels(name):
    moving, fixed = smooth_pair(SMALL_3D)
    assert len(auto_pyramid(SMALL_3D)) == 2  # 17 x 21 x 13, then the full grid
    with pytest.raises(ValueError, match="shrinks the image"):
        pyramid_shapes(SMALL_3D, OLD_LEVELS)  # what the old default refused
    options = {"iterations": 3, "progress": False}  # few iterations; the levels stay the default
    if name == "default" or name.startswith("affine+"):
        options["affine_options"] = {"iterations": 3}
    if name.endswith("bspline+dense") or name == "default":
        options["refine"] = 3
    result = regedu.register(moving, fixed, method=name, **options)
    assert result.disp.shape == (1, 3, *SMALL_3D) and bool(torch.isfinite(result.disp).all())
    assert len(result.history) == stage_levels(name, SMALL_3D)
    assert all(len(level) == 3 for level in result.history)


@pytest.mark.parametrize("name", CLASSICAL)
def test_a_small_slice_registers_with_every_option_left_default(name):
    moving, fixed = smooth_pair(SMALL_2D, seed=1)
    assert len(auto_pyramid(SMALL_2D)) == 1  # 24 voxels at most: already as coarse as a tuned level
    result = regedu.register(moving, fixed, method=name, progress=False)
    assert result.disp.shape == (1, 2, *SMALL_2D)
    assert len(result.history) == stage_levels(name, SMALL_2D)
    before = float((moving - fixed).square().mean())
    after = float((result.warped - fixed).square().mean())
    assert after < 0.5 * before, f"{name}: mean squared difference {before:.2e} -> {after:.2e}"


@pytest.mark.parametrize("shape", TUNED)
@pytest.mark.parametrize("module", [DENSE, DEMONS], ids=["dense", "demons"])
def test_the_tuned_shapes_resolve_to_the_old_default(module, shape):
    shapes, counts, automatic = plan_pyramid(shape, None, None, module.SCHEDULE)
    assert len(shapes) == OLD_LEVELS and shapes == pyramid_shapes(shape, OLD_LEVELS)
    assert counts == list(module.SCHEDULE) and automatic


class _Planned(Exception):
    """Raised by the spy below once the method has planned its pyramid."""


def _spy_pyramid(monkeypatch, module) -> dict:
    """Replace ``module.PyramidRun`` by one that records the plan and stops before any optimisation."""
    seen = {}

    class Spy(module.PyramidRun):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.update(shapes=self.shapes, counts=self.counts, tolerance=self.tolerance)
            raise _Planned

    monkeypatch.setattr(module, "PyramidRun", Spy)
    return seen


@pytest.mark.parametrize("shape", TUNED)
@pytest.mark.parametrize("method", ["dense", "svf", "demons", "diffeomorphic_demons"])
def test_the_methods_plan_the_old_pyramid_on_the_tuned_shapes(method, shape, monkeypatch):
    module = DEMONS if "demons" in method else DENSE
    seen = _spy_pyramid(monkeypatch, module)
    image = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    with pytest.raises(_Planned):
        regedu.api.METHODS[method](image, image.flip(-1))
    assert seen["shapes"] == pyramid_shapes(shape, OLD_LEVELS)
    assert seen["counts"] == list(module.SCHEDULE)
    if module is DENSE:
        assert seen["tolerance"] == 0  # every default iteration runs, as with the old explicit counts


@pytest.mark.parametrize("function, old", [
    (register_dense, {"levels": 3, "iterations": (100, 50, 20)}),
    (functools.partial(register_dense, diffeomorphic=True), {"levels": 3, "iterations": (100, 50, 20)}),
    (demons, {"levels": 3, "iterations": (100, 50, 25)}),
], ids=["dense", "svf", "demons"])
def test_a_tuned_slice_gives_the_same_field_as_the_old_defaults(function, old):
    moving, fixed = smooth_pair(TUNED[0], seed=2)
    new = function(moving, fixed, progress=False)
    before = function(moving, fixed, progress=False, **old)
    assert [len(level) for level in new.history] == list(old["iterations"])
    torch.testing.assert_close(new.disp, before.disp, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["dense", "svf", "demons", "affine+dense", "affine+svf", "affine+demons"])
def test_an_explicit_levels_keeps_its_check(method):
    moving, fixed = smooth_pair(SMALL_3D)
    message = r"`levels=3` shrinks the image \(33, 41, 25\) to \(9, 11, 7\)"
    with pytest.raises(ValueError, match=message):
        regedu.register(moving, fixed, method=method, levels=3, progress=False)
    with pytest.raises(ValueError, match=message):
        regedu.api.METHODS[method](moving, fixed, levels=3, progress=False)  # the method's own check


@pytest.mark.parametrize("function", [register_dense, demons])
def test_voxel_size_shapes_the_pyramid(function, monkeypatch):
    module = DEMONS if function is demons else DENSE
    seen = _spy_pyramid(monkeypatch, module)
    image = torch.rand(1, 1, 64, 64, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(_Planned):
        function(image, image.flip(-1), voxel_size=(1.0, 1.0, 4.0))
    assert seen["shapes"] == auto_pyramid((64, 64, 16), (1.0, 1.0, 4.0))
    assert seen["shapes"][0][2] == 16  # the thick slices are not coarsened; isotropic would halve them
    assert auto_pyramid((64, 64, 16))[0][2] < 16


# ---------------------------------------------------------------------------
# the command line: the affine stage's options, and the voxel size from the header
# ---------------------------------------------------------------------------


@pytest.fixture
def volumes(tmp_path):
    """A 33 x 41 x 25 pair with anisotropic voxels (1 x 1.25 x 2.5 mm) in NIfTI files."""
    affine = np.diag([1.0, 1.25, 2.5, 1.0])
    moving, fixed = smooth_pair(SMALL_3D, seed=3)
    return {"m": save_nifti(100 * moving, tmp_path / "m.nii.gz", affine),
            "f": save_nifti(100 * fixed, tmp_path / "f.nii.gz", affine), "voxel_size": (1.0, 1.25, 2.5)}


@pytest.fixture
def calls(monkeypatch):
    """Record the options and result of every regedu.api.register and register_affine call."""
    seen = {"register": [], "register_affine": []}

    def spy(name):
        original = getattr(regedu.api, name)

        @functools.wraps(original)
        def recorded(*args, **kwargs):
            result = original(*args, **kwargs)
            seen[name].append((kwargs, result))
            return result

        monkeypatch.setattr(regedu.api, name, recorded)

    spy("register")
    spy("register_affine")
    return seen


def register_cli(volumes, tmp_path, *extra) -> int:
    return cli.main(["register", str(volumes["m"]), str(volumes["f"]), "-o", str(tmp_path / "w.nii.gz"),
                     "--overwrite", *extra])


@pytest.mark.parametrize("method", ["dense", "demons", "affine+svf"])
def test_the_cli_registers_a_small_volume_with_the_default_levels(method, volumes, tmp_path, calls):
    quick = ["--affine-option", "iterations=3"] if method.startswith("affine+") else []
    assert register_cli(volumes, tmp_path, "--method", method, "--option", "iterations=3", *quick) == 0
    (options, result), = calls["register"]
    assert "levels" not in options
    assert len(result.history) == stage_levels(method, SMALL_3D, volumes["voxel_size"])
    assert (tmp_path / "w.nii.gz").exists()


def test_the_cli_hands_the_header_voxel_size_to_the_method(volumes, tmp_path, calls):
    assert register_cli(volumes, tmp_path, "--method", "bspline", "--option", "iterations=3") == 0
    (options, result), = calls["register"]
    assert options["voxel_size"] == volumes["voxel_size"]
    # it reached the method: the control spacing is 16 mm per axis, the pyramid the anisotropic one
    spacing = default_control_spacing(3, volumes["voxel_size"])
    assert spacing == (16.0, 12.8, 6.4)
    assert tuple(result.parameters["control_points"].shape[2:]) == control_grid_shape(SMALL_3D, spacing)
    assert control_grid_shape(SMALL_3D, spacing) != control_grid_shape(SMALL_3D, 8)  # without it
    assert len(result.history) == len(auto_pyramid(SMALL_3D, volumes["voxel_size"]))


def test_the_cli_voxel_size_goes_to_both_stages_and_can_be_overridden(volumes, tmp_path, calls):
    assert register_cli(volumes, tmp_path, "--method", "affine+demons", "--option", "iterations=2",
                        "--affine-option", "iterations=2") == 0
    (affine_options, _), = calls["register_affine"]
    assert affine_options["voxel_size"] == volumes["voxel_size"]
    assert register_cli(volumes, tmp_path, "--method", "affine+demons", "--option", "iterations=2",
                        "--affine-option", "iterations=2", "--option", "voxel_size=(2,2,2)") == 0
    options, _ = calls["register"][-1]
    affine_options, _ = calls["register_affine"][-1]
    assert options["voxel_size"] == affine_options["voxel_size"] == (2, 2, 2)


def test_learned_methods_get_no_voxel_size():
    from regedu.cli.methods import header_voxel_size

    class Pair:
        voxel_size = (1.0, 1.0)

    assert header_voxel_size("voxelmorph", {}, Pair()) == {}
    assert header_voxel_size("dense", {}, Pair()) == {"voxel_size": (1.0, 1.0)}
    assert header_voxel_size("default", {"voxel_size": (2.0, 2.0)}, Pair()) == {"voxel_size": (2.0, 2.0)}


def test_the_cli_reaches_the_affine_stage_options(volumes, tmp_path, calls):
    status = register_cli(volumes, tmp_path, "--method", "affine+dense", "--option", "iterations=2",
                          "--affine-option", "transform=rigid", "--affine-option", "iterations=(4,3)",
                          "--affine-option", "similarity=mse", "--affine-option", "lr=0.02")
    assert status == 0
    (affine_options, affine_result), = calls["register_affine"]
    assert affine_options["transform"] == "rigid" and affine_options["iterations"] == (4, 3)
    assert affine_options["similarity"] == "mse" and affine_options["lr"] == 0.02
    assert [len(level) for level in affine_result.history] == [4, 3]
    (_, result), = calls["register"]
    assert "affine_angles" in result.parameters and "affine_log_scales" not in result.parameters  # rigid
    assert [len(level) for level in result.history] == [4, 3, 2, 2]


def test_an_affine_levels_too_deep_is_refused_by_the_cli(volumes, tmp_path, capsys):
    status = register_cli(volumes, tmp_path, "--method", "affine+dense", "--affine-option", "levels=4")
    err = capsys.readouterr().err
    assert status == 2 and "--affine-option (the affine stage of affine+dense)" in err
    # checked with the header's voxel size: the thick slices are coarsened last (isotropic: (5, 6, 4))
    assert "`levels=4` shrinks the image (33, 41, 25) to (5, 8, 9)" in err
    assert not (tmp_path / "w.nii.gz").exists()
