"""Issue 14, corrections 1, 7, 9 and 11: the sentences of lessons 00, 01, 02 and 07 hold.

1. det J of the pull map x -> x + u(x) is the moving area read per fixed pixel; the warped anatomy
   scales by 1 / det J (notebook 00, exercise 3: scale 2 gives det J = 4 and a quarter of the area).
7. The fixed-point inverse converges for a contraction (max |grad u| < 1), not for every field that
   does not fold: u(x) = 2x (det J = 9) is not inverted by it.
9. A B-spline free-form deformation can fold: one control point moved far folds it, while control
   points moved less than Choi and Lee's 0.40 control spacings never do.
11. A left-right flip is invisible in the pixels and visible only in the header.
"""

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pytest
import torch

from regedu import data, metrics, viz, warps, widgets
from regedu.classical import bspline_to_disp, control_grid_shape

SHAPE = (96, 112)


@pytest.fixture(scope="module")
def brain():
    return data.brain_slice()


# --- correction 1: what det J measures -------------------------------------------------------------


def test_scale_two_reads_four_pixels_per_pixel_and_quarters_the_area(brain):
    warped, disp = widgets.transform_explorer(brain.image, scale=2.0)
    det = warps.jacobian_det(disp)
    assert torch.allclose(det, torch.full_like(det, 4.0), atol=1e-4)
    mask = brain.mask.float()
    area_ratio = float(warps.warp(mask, disp, mode="nearest").sum() / mask.sum())
    assert abs(area_ratio - 1 / 4) < 0.01  # the warped anatomy scales by 1 / det J, not by det J
    bright = float((warped > 0.1).float().sum() / (brain.image > 0.1).float().sum())
    assert abs(bright - 1 / 4) < 0.02


def test_half_scale_stretches_the_anatomy(brain):
    _, disp = widgets.transform_explorer(brain.image, scale=0.5)
    det = warps.jacobian_det(disp)
    assert torch.allclose(det, torch.full_like(det, 0.25), atol=1e-4)
    mask = brain.mask.float()
    # a fixed pixel reads a quarter pixel: the warped brain is 4 times larger (cut by the image border)
    area_ratio = float(warps.warp(mask, disp, mode="nearest").sum() / mask.sum())
    assert area_ratio > 2.0


@pytest.mark.parametrize("ndim, words", [(2, "moving area per fixed pixel"),
                                         (3, "moving volume per fixed voxel")])
def test_jacobian_colour_bar_says_what_det_j_measures(ndim, words):
    disp = data.random_disp((16,) * ndim, magnitude=2, smoothness=8, seed=0)
    fig = viz.jacobian_map(disp)
    try:
        label = fig.axes[1].get_ylabel()
    finally:
        plt.close(fig)
    assert label.startswith("det J") and words in label
    assert "shrink" not in label and "grow" not in label


# --- correction 7: the fixed-point inverse needs a contraction -------------------------------------


def fixed_point_inverse(field: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[float]]:
    """Notebook 01, section 5: w = -warp(field, w) from w = 0; the largest |compose(field, w)| per step."""
    w, residuals = torch.zeros_like(field), []
    for _ in range(steps):
        w = -warps.warp(field, w)
        residuals.append(float(warps.compose(field, w).abs().max()))
    return w, residuals


def largest_stretch(field: torch.Tensor) -> float:
    """max over voxels of the operator norm of the Jacobian of a (1, 2, X, Y) field."""
    grads = torch.gradient(field[0], dim=(1, 2))
    jacobian = torch.stack(grads, dim=-1).movedim(0, -2)
    return float(torch.linalg.matrix_norm(jacobian, ord=2).max())


def linear_field(factor: float) -> torch.Tensor:
    """u(x) = factor * (x - centre), (1, 2, *SHAPE): the map x -> centre + (1 + factor)(x - centre)."""
    centre = torch.tensor([(n - 1) / 2 for n in SHAPE]).view(2, 1, 1)
    return factor * (warps.identity_grid(SHAPE) - centre).unsqueeze(0)


def test_fixed_point_inverse_fails_for_a_non_folding_field_that_is_not_a_contraction():
    u = linear_field(2.0)  # x -> 3x: det J = 9, no fold, L = 2
    det = warps.jacobian_det(u)
    assert float(det.min()) == pytest.approx(9.0) and float(metrics.folding_fraction(u)) == 0
    assert largest_stretch(u) == pytest.approx(2.0, abs=1e-4)
    _, residuals = fixed_point_inverse(u, 20)
    assert min(residuals) > 10  # the exact inverse, -2x/3, is never approached


def test_fixed_point_inverse_converges_for_a_contraction():
    u = data.random_disp(SHAPE, magnitude=8, smoothness=16, seed=1)  # notebook 01's field u
    assert largest_stretch(u) < 1
    _, residuals = fixed_point_inverse(u, 12)
    assert residuals[-1] < 0.01 < residuals[0]
    assert all(later < earlier for earlier, later in zip(residuals[:-1], residuals[1:], strict=True))
    linear = linear_field(0.5)  # det J = 2.25, L = 0.5: a contraction
    _, residuals = fixed_point_inverse(linear, 30)
    assert residuals[-1] < 1e-3


# --- correction 9: B-spline free-form deformations can fold -----------------------------------------


def test_one_far_moved_control_point_folds_a_bspline_field():
    spacing = 8.0
    control = torch.zeros(1, 2, *control_grid_shape(SHAPE, spacing))
    control[0, 0, 6, 7] = 3.0 * spacing
    field = bspline_to_disp(control, spacing, SHAPE)
    assert float(warps.jacobian_det(field).min()) <= 0
    assert float(metrics.folding_fraction(field)) > 0


@pytest.mark.parametrize("shape, spacing", [((96, 112), 8.0), ((24, 28, 24), 6.0)])
def test_control_points_within_choi_lee_bound_never_fold(shape, spacing):
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        grid = control_grid_shape(shape, spacing)
        control = (2 * torch.rand(1, len(shape), *grid, generator=generator) - 1) * 0.39 * spacing
        field = bspline_to_disp(control, spacing, shape)
        assert float(warps.jacobian_det(field).min()) > 0


# --- correction 11: a flip is invisible in the pixels, visible in the header ------------------------


def test_flip_is_invisible_in_the_pixels_and_visible_in_the_header(tmp_path):
    brain = data.brain_volume()
    image = brain.image[..., ::2, ::2, ::2].contiguous()  # 4 mm, for speed
    affine = brain.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    ras_file = data.save_nifti(image, tmp_path / "ras.nii.gz", affine)
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip_x[0, 3] = image.shape[2] - 1
    las_file = tmp_path / "las.nii.gz"
    nib.save(nib.Nifti1Image(image[0, 0].numpy()[::-1].copy(), affine @ flip_x), las_file)

    raw = [torch.from_numpy(nib.load(path).get_fdata()).float()[None, None] for path in (ras_file, las_file)]
    assert not torch.equal(*raw)
    assert np.corrcoef(raw[0].ravel(), raw[1].ravel())[0, 1] > 0.9  # a mirror image looks the same
    assert [nib.aff2axcodes(nib.load(path).affine) for path in (ras_file, las_file)] == [
        ("R", "A", "S"), ("L", "A", "S")]
    assert torch.equal(data.load_nifti(ras_file).image, data.load_nifti(las_file).image)

    blind = data.check_pair(*raw, factor=8, verbose=False)
    told = data.check_pair(*raw, moving_affine=nib.load(ras_file).affine,
                           fixed_affine=nib.load(las_file).affine, factor=8, verbose=False)
    assert blind.ok and not told.ok and told.orientation == ("RAS", "LAS")

    wrong_file = tmp_path / "flipped_voxels_ras_header.nii.gz"  # voxels flipped, header not: undetectable
    nib.save(nib.Nifti1Image(image[0, 0].numpy()[::-1].copy(), affine), wrong_file)
    assert data.check_pair(ras_file, wrong_file, factor=8, verbose=False).ok
