"""Lesson 05's package code: metrics.inverse_consistency, the residual of a round trip through two fields."""

from __future__ import annotations

import pytest
import torch

from regedu import metrics, warps

SHAPES = {2: (24, 28), 3: (16, 18, 20)}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def ndim(request) -> int:
    return request.param


def an_affine(ndim: int, dtype=torch.float64) -> torch.Tensor:
    """A rotation, anisotropic scaling and shift about the centre: ``(1, ndim, ndim + 1)``."""
    shape = SHAPES[ndim]
    angles = [0.15] if ndim == 2 else [0.1, -0.05, 0.15]
    linear = warps.compose_affine(warps.rotation(angles, shape, dtype=dtype),
                                  warps.scaling([1.1, 0.95, 1.05][:ndim], shape, dtype=dtype))
    return warps.compose_affine(linear, warps.translation([0.7, -0.4, 0.3][:ndim], dtype=dtype))


def inverse_affine(A: torch.Tensor) -> torch.Tensor:
    """``[M^-1 | -M^-1 t]``: the map that undoes ``y = M x + t``."""
    ndim = A.shape[1]
    M_inv = torch.linalg.inv(A[:, :, :ndim])
    return torch.cat([M_inv, -M_inv @ A[:, :, ndim:]], dim=-1)


def central_mask(shape, margin: int) -> torch.Tensor:
    """``(1, 1, *shape)``: ones but a border ``margin`` voxels wide (where round trips leave the grid)."""
    mask = torch.zeros(1, 1, *shape, dtype=torch.float64)
    mask[(0, 0, *[slice(margin, n - margin) for n in shape])] = 1
    return mask


def test_an_exact_inverse_pair_of_affine_fields_has_zero_residual(ndim):
    shape = SHAPES[ndim]
    A = an_affine(ndim)
    forward = warps.affine_to_disp(A, shape)
    backward = warps.affine_to_disp(inverse_affine(A), shape)
    residual = metrics.inverse_consistency(forward, backward, central_mask(shape, 4))
    assert residual.shape == (1,) and residual.dtype == torch.float64
    assert residual.item() < 1e-9              # linear interpolation is exact for affine fields
    assert metrics.inverse_consistency(backward, forward, central_mask(shape, 4)).item() < 1e-9
    assert metrics.inverse_consistency(forward, forward, central_mask(shape, 4)).item() > 0.5


def test_a_non_inverse_affine_pair_gives_the_residual_computed_from_the_matrices(ndim):
    """The round trip ``x -> A_b (A_f x)`` of two affines, worked out with matrices, not with ``compose``."""
    shape = SHAPES[ndim]
    A_f = an_affine(ndim)
    A_b = warps.compose_affine(warps.shear([0.2, -0.1, 0.1][:ndim - 1 if ndim == 2 else 3], shape,
                                           dtype=torch.float64), inverse_affine(A_f))
    mask = central_mask(shape, 5)
    points = warps.identity_grid(shape, dtype=torch.float64).reshape(ndim, -1)          # (ndim, N)
    there = A_f[0, :, :ndim] @ points + A_f[0, :, ndim:]
    back = A_b[0, :, :ndim] @ there + A_b[0, :, ndim:]
    length = torch.linalg.vector_norm(back - points, dim=0)
    expected = length[mask.flatten() > 0].mean()
    residual = metrics.inverse_consistency(warps.affine_to_disp(A_f, shape), warps.affine_to_disp(A_b, shape),
                                           mask)
    other_order = torch.linalg.vector_norm(A_f[0, :, :ndim] @ (A_b[0, :, :ndim] @ points + A_b[0, :, ndim:])
                                           + A_f[0, :, ndim:] - points, dim=0)[mask.flatten() > 0].mean()
    assert expected > 0.5 and abs(other_order - expected) > 0.01   # the order of the round trip matters
    assert torch.allclose(residual, expected.reshape(1), atol=1e-9)


def test_constant_shifts_leave_their_sum_and_the_batch_broadcasts(ndim):
    shape = SHAPES[ndim]
    shift = torch.zeros(2, ndim, *shape)
    shift[0, 0], shift[0, -1] = 3.0, 4.0            # item 0 goes (3, .., 4), item 1 stays
    back = torch.zeros(1, ndim, *shape)
    back[0, 0] = -3.0                               # undoes the first component only
    residual = metrics.inverse_consistency(shift, back)
    assert torch.allclose(residual, torch.tensor([4.0, 3.0]))
    assert metrics.inverse_consistency(shift[:1], -shift[:1]).abs().item() < 1e-5   # float32 sampling


def test_an_integrated_velocity_is_inverted_by_its_negative_up_to_interpolation():
    """Lesson 05 section 4: exp(-v) inverts exp(v) away from the border, v used as a displacement does not."""
    grid = warps.identity_grid((48, 48), dtype=torch.float64)
    centre = torch.tensor([23.5, 23.5], dtype=torch.float64).view(2, 1, 1)
    swirl = torch.stack([-(grid[1] - centre[1]), grid[0] - centre[0]]) * torch.exp(
        -((grid - centre) ** 2).sum(0) / 150.0) * 0.6
    velocity = swirl.unsqueeze(0)
    mask = central_mask((48, 48), 8)
    exact = metrics.inverse_consistency(warps.integrate(velocity), warps.integrate(-velocity), mask)
    naive = metrics.inverse_consistency(velocity, -velocity, mask)
    assert exact.item() < 0.1 < 0.3 < naive.item()


def test_bad_inputs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="same size"):
        metrics.inverse_consistency(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError, match="forward"):
        metrics.inverse_consistency(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="mask"):
        metrics.inverse_consistency(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), torch.ones(1, 2, 8, 8))
