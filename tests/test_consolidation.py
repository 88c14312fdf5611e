"""Issue 15: one home per idea, an explicit unchecked layer, one meaning per word, a pyramid driver.

* regedu.bspline, regedu.filters: the B-spline basis and the smoothing filters, against scipy;
* regedu.kernels: the unchecked fast path gives exactly what the checked functions give, and hot
  loops (demons) use it;
* renamed keywords and functions still work, with a DeprecationWarning;
* metrics.mean_dice / mean_dice_after_warp;
* classical.PyramidRun: a new method in about 15 lines;
* no underscored name is imported across modules of regedu (AST walk, with an allow-list).
"""

import ast
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch

import regedu
from regedu import bspline, filters, kernels, losses, metrics, warps
from regedu.classical import PyramidRun, demons, register_bspline, register_dense
from regedu.data import io, synthetic

SHAPES = {2: (17, 20), 3: (9, 11, 10)}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request):
    return request.param


def smooth_field(shape, magnitude=2.0, seed=0, dtype=torch.float64):
    return synthetic.random_disp(shape, magnitude, 6.0, seed=seed, dtype=dtype)


def blob(shape, centre_shift=0.0, dtype=torch.float64):
    """A Gaussian blob ``(1, 1, *shape)``, its centre moved by ``centre_shift`` voxels on every axis."""
    grid = kernels.identity_grid(shape, dtype=dtype)
    centre = torch.tensor([(n - 1) / 2 + centre_shift for n in shape], dtype=dtype)
    distance2 = ((grid - centre.view(-1, *[1] * len(shape))) ** 2).sum(0)
    return torch.exp(-distance2 / (2 * (min(shape) / 6) ** 2))[None, None]


# ---------------------------------------------------------------------------
# regedu.bspline: the one cubic B-spline basis
# ---------------------------------------------------------------------------


def test_cubic_bspline_values_and_partition_of_unity():
    t = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -1.0])
    expected = torch.tensor([2 / 3, 23 / 48, 1 / 6, 1 / 48, 0.0, 0.0, 1 / 6])
    torch.testing.assert_close(bspline.cubic_bspline(t), expected)
    x = torch.linspace(0, 1, 11)
    torch.testing.assert_close(sum(bspline.cubic_bspline(x - k) for k in range(-3, 4)), torch.ones_like(x))


def test_basis_matrix_rows_sum_to_one_and_reproduce_lines():
    size, spacing = 37, 5.0
    weights = bspline.voxel_basis_matrix(size, spacing, None, torch.float64)
    assert weights.shape == (size, bspline.control_point_count(size, spacing)) == (size, 11)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(size, dtype=torch.float64))
    knots = (torch.arange(weights.shape[1], dtype=torch.float64) - 1) * spacing
    torch.testing.assert_close(weights @ knots, torch.arange(size, dtype=torch.float64))


def test_blend_is_separable(ndim):
    """Control values constant along all but the first axis give a field constant along them."""
    shape = SHAPES[ndim]
    counts = [bspline.control_point_count(n, 6.0) for n in shape]
    coarse = torch.randn(1, 1, counts[0], *[1] * (ndim - 1), dtype=torch.float64).expand(1, 1, *counts)
    field = bspline.blend(coarse, [bspline.voxel_basis_matrix(n, 6.0, None, torch.float64) for n in shape])
    assert field.shape == (1, 1, *shape)
    torch.testing.assert_close(field, field[(..., *[slice(0, 1)] * (ndim - 1))].expand_as(field))


def test_synthetic_and_classical_use_the_one_basis():
    """smooth_noise and bspline_to_disp are the same interpolation of the same control values."""
    from regedu.classical.bspline import bspline_to_disp

    shape, spacing = (23, 18), 6.0
    noise = synthetic.smooth_noise(shape, spacing, channels=2, seed=3, dtype=torch.float64)
    generator = synthetic.make_generator(3)
    counts = [bspline.control_point_count(n, spacing) for n in shape]
    control = synthetic.random_normal((1, 2, *counts), generator, dtype=torch.float64)
    torch.testing.assert_close(noise, bspline_to_disp(control, spacing, shape))


# ---------------------------------------------------------------------------
# regedu.filters: Gaussian and box means
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_gaussian_smooth_matches_scipy(ndim, sigma):
    x = torch.rand(1, 1, *SHAPES[ndim], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = scipy.ndimage.gaussian_filter(x[0, 0].numpy(), sigma, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(filters.gaussian_smooth(x, sigma)[0, 0].numpy(), expected, atol=1e-12)


def test_gaussian_smooth_per_axis_and_zero_sigma():
    x = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    torch.testing.assert_close(filters.gaussian_smooth(x, 0), x)
    only_last = filters.gaussian_smooth(x, (0, 1.5))
    expected = scipy.ndimage.gaussian_filter1d(x.numpy(), 1.5, axis=-1, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(only_last.numpy(), expected, atol=1e-12)


def test_gaussian_blur_is_the_checked_gaussian_smooth():
    image = torch.rand(2, 1, 12, 14)
    assert torch.equal(synthetic.gaussian_blur(image, 1.3), filters.gaussian_smooth(image, 1.3))
    assert synthetic.gaussian_blur(image, 0) is image
    with pytest.raises(ValueError, match="sigma"):
        synthetic.gaussian_blur(image, -1.0)
    from regedu.classical import gaussian_smooth  # the old home still works

    assert gaussian_smooth is filters.gaussian_smooth


@pytest.mark.parametrize("box_mean", [filters.box_mean_by_shifts, filters.box_mean_by_pooling,
                                      filters.box_mean_by_sums, filters.box_mean])
@pytest.mark.parametrize("window", [3, 7, 25, "per-axis"])
def test_every_box_mean_is_the_mean_over_the_clipped_window(ndim, box_mean, window):
    shape = (9, 11, 10)[:ndim] if window == 25 else SHAPES[ndim]
    sizes = (window,) * ndim if isinstance(window, int) else (5, 1, 3)[:ndim]
    x = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sums = scipy.ndimage.uniform_filter(x.numpy(), size=(1, 1, *sizes), mode="constant")
    counts = scipy.ndimage.uniform_filter(np.ones(x.shape), size=(1, 1, *sizes), mode="constant")
    result = box_mean(x, sizes)
    assert result.shape == x.shape
    np.testing.assert_allclose(result.numpy(), sums / counts, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# regedu.kernels: the unchecked layer computes what the checked functions compute
# ---------------------------------------------------------------------------


def test_kernels_equal_the_checked_functions(ndim):
    shape = SHAPES[ndim]
    image = torch.rand(2, 2, *shape, dtype=torch.float64)
    u, v = smooth_field(shape, seed=1), smooth_field(shape, seed=2)
    assert torch.equal(kernels.resample(image, u), warps.warp(image, u))
    assert torch.equal(kernels.compose(u, v), warps.compose(u, v))
    assert torch.equal(kernels.integrate(u, 5), warps.integrate(u, 5))
    coarse = tuple(n // 2 + 1 for n in shape)
    assert torch.equal(kernels.resize_disp(u, coarse), warps.resize_disp(u, coarse))
    A = warps.rotation([0.1] * (1 if ndim == 2 else 3), shape, dtype=torch.float64)
    assert torch.equal(kernels.affine_to_disp(A, shape), warps.affine_to_disp(A, shape))
    assert torch.equal(kernels.voxels_to_grid(u), warps.disp_to_grid(u))
    torch.testing.assert_close(kernels.grid_to_voxels(kernels.voxels_to_grid(u)), u)


def test_after_affine_is_compose_with_the_affine_field_inside_the_image(ndim):
    shape = SHAPES[ndim]
    disp = smooth_field(shape, magnitude=0.5)
    A = warps.scaling([1.05] * ndim, shape, dtype=torch.float64)
    inside = tuple(slice(3, n - 3) for n in shape)
    exact = kernels.after_affine(disp, A)
    interpolated = warps.compose(warps.affine_to_disp(A, shape), disp)
    torch.testing.assert_close(exact[(..., *inside)], interpolated[(..., *inside)], atol=1e-10, rtol=0)
    assert kernels.after_affine(disp, None) is disp


def test_one_hot_and_broadcast_batch():
    labels = torch.tensor([[[[0, 2], [5, 2]]]])
    onehot = kernels.one_hot(labels, torch.tensor([0, 2, 5]), torch.float32)
    assert onehot.shape == (1, 3, 2, 2)
    assert torch.equal(onehot.argmax(1, keepdim=True), torch.tensor([[[[0, 1], [2, 1]]]]))
    assert torch.equal(onehot.sum(1), torch.ones(1, 2, 2))
    one, many = torch.rand(1, 2, 3), torch.rand(4, 2, 3)
    a, b = kernels.broadcast_batch(one, many)
    assert a.shape == b.shape == (4, 2, 3) and b is many and torch.equal(a[3], one[0])


@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_one_padding_implementation(ndim, mode):
    x = torch.rand(2, 1, *SHAPES[ndim])
    padded, padding = io.pad_to_multiple(x, 8, mode=mode)
    assert all(n % 8 == 0 for n in padded.shape[2:])
    assert isinstance(padding, kernels.Padding) and io.Padding is kernels.Padding
    assert torch.equal(io.unpad(padded, padding), x)
    flat = [p for b, a in zip(reversed(padding.before), reversed(padding.after), strict=True) for p in (b, a)]
    assert torch.equal(padded, torch.nn.functional.pad(x, flat, mode=mode))
    from regedu.models import base

    with pytest.warns(DeprecationWarning, match="regedu.data.pad_to_multiple"):
        old, pairs = base.pad_to_multiple(x, 8, mode)
    assert torch.equal(old, padded) and pairs == list(zip(padding.before, padding.after, strict=True))
    assert pairs == base.padding_for(x.shape[2:], 8)
    assert torch.equal(base.crop(old, pairs), x) and torch.equal(base.crop(old, padding), x)


def test_demons_loop_runs_on_the_unchecked_kernels(monkeypatch):
    """The checked functions check finiteness (a device sync); demons must not call them per iteration."""
    calls = []
    original = warps.check_finite
    monkeypatch.setattr(warps, "check_finite", lambda *args, **kw: (calls.append(1), original(*args, **kw)))
    moving, fixed = blob((24, 24)).float(), blob((24, 24), 1.5).float()
    for iterations in (2, 20):
        calls.clear()
        demons(moving, fixed, diffeomorphic=True, levels=1, iterations=iterations, progress=False)
        assert len(calls) <= 2  # the final warp of the result, whatever the number of iterations


# ---------------------------------------------------------------------------
# one meaning per word: the new names, and the old ones still working with a warning
# ---------------------------------------------------------------------------


def test_svf_integration_steps_are_int_steps():
    moving, fixed = blob((20, 20)).float(), blob((20, 20), 1.0).float()
    options = dict(diffeomorphic=True, levels=1, iterations=4, progress=False)
    new = register_dense(moving, fixed, int_steps=4, **options)
    with pytest.warns(DeprecationWarning, match="`steps` is deprecated.*`int_steps`"):
        old = register_dense(moving, fixed, steps=4, **options)
    assert torch.equal(new.disp, old.disp)
    assert not torch.equal(new.disp, register_dense(moving, fixed, int_steps=0, **options).disp)
    with pytest.raises(TypeError, match="give only `int_steps`"):
        register_dense(moving, fixed, int_steps=3, steps=4, **options)
    regedu.api.check_options("svf", {"int_steps": 4})
    with pytest.raises(ValueError, match="int_steps"):
        regedu.api.check_options("svf", {"int_steps": -1})


def test_bspline_control_spacing():
    moving, fixed = blob((24, 24)).float(), blob((24, 24), 1.0).float()
    options = dict(levels=1, iterations=3, progress=False)
    new = register_bspline(moving, fixed, control_spacing=6, **options)
    with pytest.warns(DeprecationWarning, match="`spacing`.*`control_spacing`"):
        old = register_bspline(moving, fixed, spacing=6, **options)
    assert torch.equal(new.disp, old.disp)
    assert new.parameters["control_points"].shape[2:] == (7, 7)
    from regedu.classical.bspline import control_grid_shape, default_control_spacing, default_spacing

    with pytest.warns(DeprecationWarning):
        assert control_grid_shape((24, 24), spacing=6) == control_grid_shape((24, 24), 6) == (7, 7)
    with pytest.warns(DeprecationWarning, match="default_control_spacing"):
        assert default_spacing(2, (1.0, 2.0)) == default_control_spacing(2, (1.0, 2.0)) == (16.0, 8.0)
    regedu.api.check_options("bspline", {"control_spacing": 4}, shape=(24, 24))
    with pytest.raises(ValueError, match="control_spacing"):
        regedu.api.check_options("bspline", {"control_spacing": 0}, shape=(24, 24))


def test_voxel_size_in_metrics_and_warps():
    labels = torch.zeros(1, 1, 12, 12, dtype=torch.long)
    labels[..., 3:7, 3:7] = 1
    shifted = labels.roll(2, dims=3)
    new = metrics.hd95(labels, shifted, voxel_size=(1.0, 2.0))
    in_voxels = metrics.hd95(labels, shifted).item()
    assert in_voxels > 0 and new.item() == pytest.approx(2 * in_voxels)  # shifted along axis 1 (2 mm voxels)
    with pytest.warns(DeprecationWarning, match="voxel_size"):
        assert torch.equal(metrics.hd95(labels, shifted, spacing=(1.0, 2.0)), new)
    disp = torch.ones(1, 2, 4, 4)
    with pytest.warns(DeprecationWarning, match="voxel_size"):
        assert torch.equal(warps.disp_to_mm(disp, spacing=(1.0, 3.0)), warps.disp_to_mm(disp, (1.0, 3.0)))
    torch.testing.assert_close(metrics.end_point_error(disp, 0 * disp, voxel_size=(1.0, 3.0)),
                               torch.tensor([math.sqrt(10.0)]))


def test_intensity_rescaling_names_say_what_they_do():
    from regedu.classical.common import normalise_intensities, rescale_min_max

    image = torch.cat([torch.linspace(0, 1, 100), torch.tensor([50.0])]).view(1, 1, 101)[..., None]
    minmax = rescale_min_max(image)
    assert minmax.min() == 0 and minmax.max() == 1 and minmax[0, 0, 99, 0] == pytest.approx(1 / 50)
    clipped = io.rescale_percentiles(image, 1, 99)
    assert clipped[0, 0, 100, 0] == 1 and clipped[0, 0, 99, 0] > 0.99  # the outlier no longer squeezes
    with pytest.warns(DeprecationWarning, match="rescale_min_max"):
        assert torch.equal(normalise_intensities(image), minmax)
    with pytest.warns(DeprecationWarning, match="rescale_percentiles"):
        assert torch.equal(io.normalize_intensity(image, 1, 99), clipped)


# ---------------------------------------------------------------------------
# mean Dice after warping: one home in metrics
# ---------------------------------------------------------------------------


def test_mean_dice_after_warp():
    generator = torch.Generator().manual_seed(0)
    moving = torch.randint(0, 4, (2, 1, 16, 18), generator=generator)
    fixed = torch.randint(0, 4, (2, 1, 16, 18), generator=generator)
    disp = smooth_field((16, 18), seed=5, dtype=torch.float32).expand(2, -1, -1, -1)
    expected = metrics.dice(warps.warp_labels(moving, disp), fixed).nanmean(dim=1)
    assert torch.equal(metrics.mean_dice_after_warp(moving, fixed, disp), expected)
    assert torch.equal(metrics.mean_dice(moving, moving), torch.ones(2, dtype=torch.get_default_dtype()))
    only_first = (moving == 1) & (torch.arange(2).view(2, 1, 1, 1) == 0)  # label 1 in item 0 only
    scores = metrics.mean_dice(only_first.long(), only_first.long(), labels=[1])
    assert scores[0] == 1 and torch.isnan(scores[1])


# ---------------------------------------------------------------------------
# the pyramid driver: a new classical method in about 15 lines
# ---------------------------------------------------------------------------


def _mse_loss(level, field, weight):
    return losses.mse(level.fixed, level.warp(field)) + weight * losses.diffusion(field)


def register_mse(moving, fixed, *, levels=None, iterations=None, lr=0.2, weight=0.1, affine=None,
                 callback=None, progress=False, device=None):
    """A student's method: a dense field under MSE, coarse to fine, written on PyramidRun."""
    with PyramidRun(moving, fixed, "mse_dense", levels=levels, iterations=iterations, schedule=(60, 40),
                    affine=affine, callback=callback, progress=progress, device=device) as run:
        field = None
        for level in run.levels():
            field = level.start_from(field).requires_grad_(True)
            level.minimise(functools.partial(_mse_loss, level, field, weight), [field], lr)
    return run.result(field.detach(), {"displacement": field.detach()})


def test_a_new_method_is_a_loop_over_the_pyramid_driver():
    moving, fixed = blob((32, 32)).float(), blob((32, 32), 2.0).float()
    seen = []
    result = register_mse(moving, fixed, levels=2, iterations=(30, 20),
                          callback=lambda level, iteration, loss: seen.append((level, iteration)))
    assert result.method == "mse_dense" and result.disp.shape == (1, 2, 32, 32)
    assert [len(h) for h in result.history] == [30, 20] and len(seen) == 50 and seen[-1] == (1, 19)
    torch.testing.assert_close(result.warped, warps.warp(moving, result.disp))
    before, after = losses.mse(fixed, moving).item(), losses.mse(fixed, result.warped).item()
    assert after < 0.2 * before
    A = warps.translation([1.0, 0.0], dtype=torch.float32)
    shifted = register_mse(moving, fixed, levels=1, iterations=1, affine=A, lr=1e-9)
    torch.testing.assert_close(shifted.disp, warps.affine_to_disp(A, (32, 32)), atol=1e-6, rtol=0)
    assert shifted.affine is not None


# ---------------------------------------------------------------------------
# no underscored name crosses a module boundary
# ---------------------------------------------------------------------------

# (module that uses it, "source.name") pairs still allowed, each with who removes it. The lead reruns
# this test once every helper of issue 15 is done; an entry that no longer occurs fails the test,
# so the list only shrinks.
ALLOWED_PRIVATE_IMPORTS: set[tuple[str, str]] = set()   # none left: shared helpers are public now

PACKAGE = Path(regedu.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports() -> set[tuple[str, str]]:
    """Every ``(module, "source.name")`` where a module of regedu uses an underscored name of another:
    ``from .x import _name``, or ``x._name`` where ``x`` is a module imported from regedu."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = _module_name(path), path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        modules = {}  # local name -> regedu module it refers to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node.level, node.module)
                if not source.startswith("regedu"):
                    continue
                for alias in node.names:
                    if _is_private(alias.name) and source != module:
                        found.add((module, f"{source}.{alias.name}"))
                    modules[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("regedu"):
                        modules[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _is_private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in modules
                    and modules[node.value.id] != module):
                found.add((module, f"{modules[node.value.id]}.{node.attr}"))
    return found


def test_the_import_walk_finds_a_private_import(tmp_path, monkeypatch):
    """The check itself can fail: a module that imports another's private name is reported."""
    package = tmp_path / "regedu"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("from .. import warps\nfrom ..warps import _hidden\n"
                                          "x = warps._other\n")
    monkeypatch.setattr(regedu, "__file__", str(package / "__init__.py"))
    monkeypatch.setitem(globals(), "PACKAGE", package)
    assert private_imports() == {("regedu.sub.a", "regedu.warps._hidden"),
                                 ("regedu.sub.a", "regedu.warps._other")}


def test_no_private_name_is_imported_across_modules():
    found = private_imports()
    assert found - ALLOWED_PRIVATE_IMPORTS == set(), "underscored names used across modules"
    assert ALLOWED_PRIVATE_IMPORTS - found == set(), "allowed entries that no longer occur: remove them"
