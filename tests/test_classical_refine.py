"""The default's last stage (a dense refinement after the B-spline) and the fast local NCC it relies on."""

from __future__ import annotations

import pytest
import torch

from regedu import losses, metrics
from regedu.api import DEFAULT_PIPELINE, METHODS, register
from regedu.classical import register_bspline
from regedu.classical.common import similarity_function
from regedu.classical.local_ncc import LocalNCC
from regedu.classical.refine import folding_penalty
from regedu.data import brain_slice, random_disp, subject_from_disp
from regedu.warps import identity_grid, warp_labels

# ---------------------------------------------------------------------------
# LocalNCC: the value and gradient of losses.ncc
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 20, 23), (2, 2, 9, 11, 7), (1, 1, 5, 6)])
@pytest.mark.parametrize("window", [3, 9, 13])
def test_local_ncc_equals_losses_ncc_with_its_gradient(shape, window):
    generator = torch.Generator().manual_seed(0)
    fixed = torch.rand(*shape, generator=generator, dtype=torch.float64)
    warped = torch.rand(*shape, generator=generator, dtype=torch.float64, requires_grad=True)
    ours, reference = LocalNCC(window)(fixed, warped), losses.ncc(fixed, warped, window=window)
    torch.testing.assert_close(ours, reference)
    gradients = [torch.autograd.grad(loss, warped)[0] for loss in (ours, reference)]
    torch.testing.assert_close(*gradients)


def test_local_ncc_broadcasts_a_fixed_batch_of_one():
    fixed, warped = torch.rand(1, 1, 12, 14), torch.rand(3, 1, 12, 14)
    torch.testing.assert_close(LocalNCC(5)(fixed, warped), losses.ncc(fixed, warped, window=5))


def test_local_ncc_recomputes_the_fixed_statistics_when_the_fixed_image_changes():
    loss = LocalNCC(5)
    fixed, warped = torch.rand(1, 1, 12, 14), torch.rand(1, 1, 12, 14)
    loss(fixed, warped)
    fixed.mul_(0.5).add_(torch.rand_like(fixed))  # same tensor, modified in place
    torch.testing.assert_close(loss(fixed, warped), losses.ncc(fixed, warped, window=5))
    other = torch.rand(1, 1, 12, 14)  # another tensor
    torch.testing.assert_close(loss(other, warped), losses.ncc(other, warped, window=5))


def test_ncc_similarity_is_the_local_ncc_and_checks_its_window():
    assert isinstance(similarity_function("ncc", 7), LocalNCC)
    image = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        similarity_function("ncc", 4)(image, image)


# ---------------------------------------------------------------------------
# the dense refinement
# ---------------------------------------------------------------------------


def test_folding_penalty_is_zero_without_folding_and_positive_with_it():
    shape = (16, 18)
    assert float(folding_penalty(torch.zeros(1, 2, *shape))) == 0.0
    flipped = torch.zeros(1, 2, *shape)
    flipped[:, 0] = -2 * identity_grid(shape)[0]  # (x0, x1) -> (-x0, x1): det J = -1 everywhere
    assert float(folding_penalty(flipped)) == pytest.approx((0.1 + 1.0) ** 2, rel=1e-5)


def fine_pair(seed=0):
    """A brain slice and itself through a small deformation that varies over about 6 voxels."""
    brain = brain_slice(crop_to=(64, 64))
    disp = random_disp((64, 64), magnitude=2.0, smoothness=6.0, diffeomorphic=True, seed=seed)
    fixed = subject_from_disp(brain.image.float(), brain.labels, disp, gamma=0.0, bias=0.0, noise=0.0)
    return brain.image.float(), brain.labels, fixed.image, fixed.labels


def test_refinement_follows_a_deformation_finer_than_the_control_grid_without_folding():
    moving, moving_labels, fixed, fixed_labels = fine_pair()
    dice, results = {}, {}
    for refine in (0, 30):
        results[refine] = result = register_bspline(moving, fixed, refine=refine, progress=False)
        warped_labels = warp_labels(moving_labels, result.disp)
        dice[refine] = float(torch.nanmean(metrics.dice(warped_labels, fixed_labels)))
        assert float(metrics.folding_fraction(result.disp)) == 0.0
    assert dice[30] > dice[0] + 0.01, dice
    assert len(results[30].history) == len(results[0].history) + 1  # the refinement's losses come last
    assert 0 < len(results[30].history[-1]) <= 30
    assert results[30].parameters["refinement"].shape == results[30].disp.shape


def test_refinement_option_is_off_for_the_bspline_method_and_on_in_the_default():
    assert DEFAULT_PIPELINE == "affine+bspline+dense" and METHODS["default"] is METHODS[DEFAULT_PIPELINE]
    moving = torch.rand(1, 1, 24, 28)
    fixed = torch.roll(moving, 1, dims=-1)
    plain = register_bspline(moving, fixed, iterations=(3, 2), progress=False)
    assert "refinement" not in plain.parameters and len(plain.history) == 2
    refined = register(moving, fixed, method="bspline+dense", iterations=(3, 2), progress=False)
    assert len(refined.history) == 3 and len(refined.history[-1]) == 30  # explicit iterations: no early stop


@pytest.mark.parametrize("options, error, message", [({"refine": -1}, ValueError, "refine"),
                                                     ({"refine": 2.5}, TypeError, "refine"),
                                                     ({"refine_weight": -1.0}, ValueError, "refine_weight"),
                                                     ({"refine_window": 4}, ValueError, "refine_window")])
def test_bad_refinement_options_stop_the_default_before_any_work(options, error, message):
    image = torch.rand(1, 1, 24, 28)
    calls = []
    with pytest.raises(error, match=message):
        register(image, image, callback=lambda *args: calls.append(args), **options)
    assert calls == []
    with pytest.raises(error, match=message):
        register_bspline(image, image, **options)
