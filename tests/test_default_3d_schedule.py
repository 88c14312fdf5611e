"""Issue 12: the default pipeline spends fewer iterations at full resolution in 3D, where one costs
eight of the level below (chosen on the 3D development pair: see regedu.api.DEFAULT_PIPELINE)."""

from __future__ import annotations

import pytest
import torch

from regedu.classical import bspline, register_bspline
from regedu.classical.common import auto_pyramid


class _Planned(Exception):
    pass


@pytest.mark.parametrize("shape, expected", [((96, 112), [50, 50, 20]), ((96, 112, 96), [50, 50, 10])])
def test_the_bspline_schedule_depends_on_the_dimension(shape, expected, monkeypatch):
    seen = {}

    class Spy(bspline.PyramidRun):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["counts"] = self.counts
            raise _Planned

    monkeypatch.setattr(bspline, "PyramidRun", Spy)
    image = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    with pytest.raises(_Planned):
        register_bspline(image, image.flip(-1))
    assert len(auto_pyramid(shape)) == 3 and seen["counts"] == expected


@pytest.mark.parametrize("ndim", [2, 3])
def test_refine_none_runs_the_default_refinement_for_the_dimension(ndim):
    shape = (20,) * ndim
    generator = torch.Generator().manual_seed(1)
    moving, fixed = (torch.rand(1, 1, *shape, generator=generator) for _ in range(2))
    result = register_bspline(moving, fixed, iterations=[2], refine=None, tolerance=0, progress=False)
    assert len(result.history[-1]) == bspline.REFINE_ITERATIONS[ndim]
    assert bspline.REFINE_ITERATIONS[3] < bspline.REFINE_ITERATIONS[2]


def test_refine_zero_is_a_pure_free_form_deformation():
    image = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(2))
    result = register_bspline(image, image.flip(-1), iterations=[2], progress=False)
    assert "refinement" not in result.parameters and len(result.history) == 1
