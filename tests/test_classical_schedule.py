"""The classical default adapts to the image (issue #12, items 2 and 3).

* the pyramid depth, iterations and control spacing follow the image size and voxel size, so a
  small volume (33 x 41 x 25, like nibabel's anatomical.nii) and an anisotropic one register with
  no options, while explicit ``levels`` are still honoured (or refused with the same clear error);
* a level stops once its loss has converged when the iterations are the defaults;
* the step size across levels: iterations added at the full resolution refine a converged rigid
  or affine solution instead of throwing it away (Adam's restarted first step used to).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regedu import metrics, warps
from regedu.api import register
from regedu.classical import pyramid_shapes, register_affine, register_bspline
from regedu.classical.affine import level_learning_rates
from regedu.classical.bspline import default_control_spacing
from regedu.classical.common import MIN_LEVEL_SIZE, auto_pyramid, converged, plan_pyramid
from regedu.data import brain_slice, brain_volume, random_transform, subject_from_disp


def mean_dice(a, b):
    return float(torch.nanmean(metrics.dice(a, b)))


def small_brain(shape=(33, 41, 25), pool=(2, 2, 2)):
    """The 2 mm template, cropped to ``shape * pool`` voxels and block-averaged by ``pool``: a whole
    low-resolution head of ``shape`` voxels (image in [0, 1], tissue labels picked every ``pool``)."""
    brain = brain_volume(crop_to=[n * p for n, p in zip(shape, pool, strict=True)])
    image = F.avg_pool3d(brain.image.float(), kernel_size=pool)
    labels = brain.labels[..., ::pool[0], ::pool[1], ::pool[2]].long()
    return image / image.max(), labels


def deformed_pair(image, labels, seed=0):
    """``moving`` is ``image``; ``fixed`` is it through a known affine + smooth deformation."""
    shape = image.shape[2:]
    disp = random_transform(shape, rotation=4.0, scale=0.04, shear=0.0, translation=1.5, magnitude=1.5,
                            smoothness=max(shape) / 3, seed=seed)
    fixed = subject_from_disp(image, labels, disp, gamma=0.0, bias=0.0, noise=0.0)
    return {"moving": image, "moving_labels": labels, "fixed": fixed.image, "fixed_labels": fixed.labels}


# ---------------------------------------------------------------------------
# the pyramid and the iterations chosen from the image
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(96, 112), (96, 112, 96)])
def test_auto_pyramid_of_a_2mm_brain_is_the_tuned_one(shape):
    assert auto_pyramid(shape) == pyramid_shapes(shape, 3)
    assert auto_pyramid(shape, voxel_size=(2.0,) * len(shape)) == pyramid_shapes(shape, 3)


def test_auto_pyramid_of_a_1mm_brain_adds_a_level_with_the_same_coarsest_one():
    shapes = auto_pyramid((192, 224, 192))
    assert len(shapes) == 4 and shapes[0] == pyramid_shapes((96, 112, 96), 3)[0]


def test_auto_pyramid_fits_a_small_volume():
    with pytest.raises(ValueError, match="fewer levels"):  # what the fixed default used to do
        pyramid_shapes((33, 41, 25), 3)
    shapes = auto_pyramid((33, 41, 25), voxel_size=(2.0, 2.0, 2.0))
    assert len(shapes) >= 2 and shapes[-1] == (33, 41, 25)
    assert all(min(level) >= MIN_LEVEL_SIZE for level in shapes)
    assert max(shapes[0]) <= 32


def test_auto_pyramid_coarsens_the_fine_axes_of_an_anisotropic_volume_first():
    shapes = auto_pyramid((192, 224, 64), voxel_size=(1.0, 1.0, 3.0))
    assert shapes[-2] == (97, 113, 64)  # 2 mm in-plane, the 3 mm slices left alone
    assert shapes[0] == (25, 29, 25)  # about 8 mm on every axis
    # without the voxel size the slices shrink as fast as the rest, down to 8 voxels
    assert auto_pyramid((192, 224, 64))[0][2] == 9


def test_explicit_levels_and_iterations_are_honoured():
    shapes, counts, automatic = plan_pyramid((96, 112), 2, None, (100, 50, 0))
    assert len(shapes) == 2 and counts == [100, 50] and automatic
    shapes, counts, automatic = plan_pyramid((96, 112), None, (7, 8, 9, 10), (100, 50, 0))
    assert len(shapes) == 4 and counts == [7, 8, 9, 10] and not automatic
    _, counts, _ = plan_pyramid((192, 224), None, None, (50, 50, 20))
    assert counts == [50, 50, 20, 20]  # anchored at the coarsest level
    moving, _ = small_brain()
    with pytest.raises(ValueError, match="fewer levels"):
        register_affine(moving, moving.flip(-1), levels=3, progress=False)
    with pytest.raises(ValueError, match="voxel_size"):
        register_affine(moving, moving.flip(-1), voxel_size=(2.0, 2.0), progress=False)


def test_default_control_spacing_is_16_mm_when_the_voxel_size_is_known():
    assert default_control_spacing(3) == (8.0, 8.0, 8.0)
    assert default_control_spacing(3, (2.0, 2.0, 2.0)) == (8.0, 8.0, 8.0)
    torch.testing.assert_close(torch.tensor(default_control_spacing(3, (1.0, 1.0, 3.0))),
                               torch.tensor([16.0, 16.0, 16.0 / 3]))


# ---------------------------------------------------------------------------
# small and anisotropic volumes register with the defaults
# ---------------------------------------------------------------------------


def test_default_registers_a_small_volume_with_no_options():
    image, labels = small_brain()
    pair = deformed_pair(image, labels)
    before = mean_dice(pair["moving_labels"], pair["fixed_labels"])
    result = register(pair["moving"], pair["fixed"], moving_labels=pair["moving_labels"])
    assert len(result.history) == 5  # two affine levels, two B-spline levels, the dense refinement
    assert all(len(level) > 0 for level in result.history[:2] + result.history[-1:])
    after = mean_dice(result.warped_labels, pair["fixed_labels"])
    assert after > before + 0.1, (before, after)


@pytest.mark.parametrize("voxel_size", [None, (2.0, 2.0, 6.0)])
def test_default_registers_an_anisotropic_volume(voxel_size):
    image, labels = small_brain(shape=(40, 48, 14), pool=(1, 1, 3))  # 2 x 2 x 6 mm voxels
    pair = deformed_pair(image, labels, seed=1)
    before = mean_dice(pair["moving_labels"], pair["fixed_labels"])
    options = {} if voxel_size is None else {"voxel_size": voxel_size}
    result = register(pair["moving"], pair["fixed"], moving_labels=pair["moving_labels"], **options)
    assert mean_dice(result.warped_labels, pair["fixed_labels"]) > before + 0.1


# ---------------------------------------------------------------------------
# stopping on convergence
# ---------------------------------------------------------------------------


def test_converged_needs_two_windows_and_compares_their_means():
    flat = [-1.0] * 20
    assert not converged(flat[:19], 1e-4) and converged(flat, 1e-4)
    assert not converged(flat, 0.0)  # tolerance 0: never
    falling = [-1.0 - 0.01 * i for i in range(20)]
    assert not converged(falling, 1e-4)
    # an oscillating loss that still improves on average is not converged
    zigzag = [-1.0 - 0.002 * i + (0.05 if i == 19 else 0.0) for i in range(20)]
    assert not converged(zigzag, 1e-4)


def test_default_iterations_stop_on_convergence_explicit_ones_run_in_full():
    brain = brain_slice()
    fixed = brain.image
    moving = warps.warp(fixed, warps.affine_to_disp(warps.translation([[1.5, -2.0]]), fixed.shape[2:]))
    automatic = register_affine(moving, fixed, progress=False)
    assert [len(h) for h in automatic.history][2] == 0  # the default skips the full resolution
    assert len(automatic.history[0]) < 100  # the coarsest level converged before its 100 iterations
    full = register_affine(moving, fixed, iterations=(100, 50, 0), progress=False)
    assert [len(h) for h in full.history] == [100, 50, 0]
    never_stops = register_affine(moving, fixed, tolerance=0, progress=False)
    assert [len(h) for h in never_stops.history] == [100, 50, 0]
    bspline = register_bspline(moving, fixed, iterations=(5, 5, 30), tolerance=0.5, progress=False)
    assert len(bspline.history[2]) == 20  # an explicit tolerance applies to explicit iterations too


# ---------------------------------------------------------------------------
# the step size across levels
# ---------------------------------------------------------------------------


def test_level_learning_rates_follow_the_voxel_size_of_each_level():
    rates = level_learning_rates(0.01, [(25, 29), (49, 57), (96, 112)])
    torch.testing.assert_close(torch.tensor(rates), torch.tensor([0.01, 0.005, 0.01 * 24 / 95]))
    assert level_learning_rates(0.01, [(33, 17)]) == [0.01]


@pytest.mark.parametrize("transform", ["rigid", "affine"])
def test_added_full_resolution_iterations_refine_a_converged_solution(transform):
    # a brain slice moved by a known shift: the coarse levels find it; the full resolution, when
    # given iterations, must stay there (Adam's first step there used to raise the loss by a third)
    brain = brain_slice()
    fixed = brain.image
    shape = fixed.shape[2:]
    shift = torch.tensor([[6.6, -5.4]])
    moving = warps.warp(fixed, warps.affine_to_disp(warps.translation(-shift), shape))
    truth = warps.affine_to_disp(warps.translation(shift), shape)
    for iterations in ((100, 50, 0), (100, 50, 50)):
        result = register_affine(moving, fixed, transform, iterations=iterations, progress=False)
        error = float((result.disp - truth).norm(dim=1).mean())
        assert error < 0.25, (iterations, error)
    finest = result.history[-1]
    rise = (max(finest[:10]) - finest[0]) / abs(finest[0])
    assert rise < 0.01, finest[:10]
