"""metrics.end_point_error: the distance to a known true field, per item, in voxels or mm."""

import pytest
import torch

from regedu import metrics


def test_a_constant_error_of_three_four_is_five_voxels_and_scales_with_spacing():
    true = torch.randn(2, 2, 6, 7)
    wrong = true + torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    assert torch.allclose(metrics.end_point_error(wrong, true), torch.full((2,), 5.0))
    assert torch.allclose(metrics.end_point_error(wrong, true, voxel_size=(2.0, 1.0)),
                          torch.full((2,), (36.0 + 16.0) ** 0.5))
    assert torch.equal(metrics.end_point_error(true, true), torch.zeros(2))


def test_the_mask_restricts_the_mean_and_an_empty_mask_gives_nan():
    true = torch.zeros(2, 3, 4, 4, 4)
    disp = torch.zeros(2, 3, 4, 4, 4)
    disp[:, 0, 0] = 2.0                      # wrong only in the first plane
    mask = torch.zeros(2, 1, 4, 4, 4)
    mask[0, 0, 0] = 1                        # item 0 counts the wrong plane only
    error = metrics.end_point_error(disp, true, mask)
    assert error[0] == 2.0 and torch.isnan(error[1])
    assert torch.allclose(metrics.end_point_error(disp, true), torch.full((2,), 0.5))


def test_mismatched_fields_and_masks_are_refused_with_a_message():
    with pytest.raises(ValueError, match="spatial shape"):
        metrics.end_point_error(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="mask"):
        metrics.end_point_error(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4))
