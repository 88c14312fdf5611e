"""FlipAveraged (test-time flip averaging): each mirrored prediction is mapped back before the average, so
what a network predicts consistently under mirroring survives and what it does not cancels; and
``regedu.register``'s ``flips`` option runs it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regedu import warps
from regedu.api import register
from regedu.models import FlipAveraged, VoxelMorph, flip_field
from regedu.models.base import Registration


class IndexField(nn.Module):
    """A "network" whose field along axis 0 is the voxel index along axis 0 plus ``offset``, and
    ``shift`` along the other axes, whatever the images; it counts its calls."""

    def __init__(self, offset: float = 0.0, shift: float = 0.0):
        super().__init__()
        self.offset, self.shift, self.calls = offset, shift, 0
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, moving, fixed):
        self.calls += 1
        ndim = moving.dim() - 2
        index = torch.arange(moving.shape[2], dtype=moving.dtype).view(-1, *([1] * (ndim - 1)))
        disp = torch.full((moving.shape[0], ndim, *moving.shape[2:]), self.shift, dtype=moving.dtype)
        disp[:, 0] = index + self.offset + self.weight
        return Registration(warps.warp(moving, disp), disp)


def test_mirroring_a_field_twice_gives_it_back_and_flips_the_mirrored_component():
    disp = torch.randn(2, 3, 5, 6, 7)
    torch.testing.assert_close(flip_field(flip_field(disp, (0, 2)), (0, 2)), disp)
    mirrored = flip_field(disp, (1,))
    torch.testing.assert_close(mirrored[:, 1], -disp[:, 1].flip(2))
    torch.testing.assert_close(mirrored[:, 0], disp[:, 0].flip(2))
    assert flip_field(disp, ()) is disp


def test_the_mirror_consistent_part_survives_and_the_rest_cancels():
    """Along axis 0 a stretch about the centre (index - (n - 1) / 2) is the same field in the mirror; an
    offset or a constant shift along axis 0 is not. Along axis 1 a shift is unchanged by mirroring axis 0."""
    moving = torch.rand(1, 1, 8, 6)
    network = IndexField(offset=3.0, shift=1.5)
    warped, disp = FlipAveraged(network, axes=(0,))(moving, moving)
    centred = torch.arange(8, dtype=torch.float32) - 3.5
    torch.testing.assert_close(disp[0, 0], centred.view(-1, 1).expand(8, 6))
    torch.testing.assert_close(disp[0, 1], torch.full((8, 6), 1.5))
    torch.testing.assert_close(warped, warps.warp(moving, disp))


@pytest.mark.parametrize(("axes", "passes"), [((), 1), ((0,), 2), ((0, 1), 4), ((2, 0, 1), 8)])
def test_every_combination_of_mirrors_is_one_forward_pass(axes, passes):
    network = IndexField()
    image = torch.rand(1, 1, 6, 5, 4)
    FlipAveraged(network, axes)(image, image)
    assert network.calls == passes


def test_no_axes_is_the_network_alone():
    torch.manual_seed(0)
    model = VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4, 4)).eval()
    moving, fixed = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(FlipAveraged(model, ())(moving, fixed).disp, model(moving, fixed).disp)


def test_bad_axes_and_bad_networks_are_refused_clearly():
    with pytest.raises(ValueError, match="distinct spatial axes"):
        FlipAveraged(IndexField(), (0, 0))
    with pytest.raises(ValueError, match="distinct spatial axes"):
        FlipAveraged(IndexField(), (3,))
    with pytest.raises(ValueError, match="distinct spatial axes"):
        FlipAveraged(IndexField(), (True,))
    with pytest.raises(TypeError, match="sequence of spatial axes"):
        FlipAveraged(IndexField(), 0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        FlipAveraged(lambda m, f: (m, f), (0,))
    with pytest.raises(ValueError, match=r"axes of a 2D image \(0 to 1\)"):
        FlipAveraged(IndexField(), (2,))(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_register_runs_the_flip_average_it_is_asked_for():
    torch.manual_seed(0)
    model = VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4, 4)).eval()
    moving, fixed = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        averaged = FlipAveraged(model, (0, 1))(moving, fixed).disp
        alone = model(moving, fixed).disp
    result = register(moving, fixed, method="voxelmorph", model=model, flips=(0, 1))
    torch.testing.assert_close(result.disp, averaged)
    # a model of one's own runs once unless asked; so does the refinement's start
    torch.testing.assert_close(register(moving, fixed, method="voxelmorph", model=model).disp, alone)
    refined = register(moving, fixed, method="voxelmorph+io", model=model, steps=0)
    torch.testing.assert_close(refined.disp, alone)
    assert not model.training  # the caller's mode is kept


def test_register_refuses_bad_flips_with_a_message():
    model = VoxelMorph(2, encoder=(4, 4), decoder=(4, 4, 4, 4))
    image = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match=r"`flips` must be distinct spatial axes of a 2D image \(0 to 1\)"):
        register(image, image, method="voxelmorph", model=model, flips=(2,))
    with pytest.raises(TypeError, match="sequence of spatial axes"):
        register(image, image, method="voxelmorph", model=model, flips=0)

