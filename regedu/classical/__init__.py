"""Classical registration: optimise the transform of one pair of images, iteratively.

No training and no network: each function takes ``(moving, fixed)`` and searches
for the transform that makes ``warp(moving, disp)`` look like ``fixed``.

* :func:`register_affine`: rigid or affine, from the centres of mass, by gradient descent;
* :func:`register_dense`: one displacement (or, diffeomorphic, velocity) vector per voxel;
* :func:`register_bspline`: a free-form deformation on a grid of B-spline control points;
* :func:`demons`: Thirion's demons and the diffeomorphic demons.

All run coarse to fine over a resolution pyramid, on the inputs' device, for a
batch of pairs at once, and return a :class:`RegistrationResult` whose ``disp`` is
the total displacement in voxels (docs/DESIGN.md's convention). Every method can start
from an affine (``affine=register_affine(...).affine``); :func:`regedu.register`
chains them for you.

One module per method: ``affine.py``, ``dense.py``, ``bspline.py``, ``demons.py``, each the
body of a loop over the levels of :class:`~regedu.classical.pyramid.PyramidRun` (``pyramid.py``:
checks, pyramid, progress, history and result, so a new method is about 15 lines); the pieces
they share (input checks, pyramid planning, the Adam loop) are in ``common.py``.
"""

from .affine import register_affine
from .bspline import bspline_to_disp, control_grid_shape, cubic_bspline, register_bspline
from .common import RegistrationResult, gaussian_smooth, pyramid_shapes
from .demons import demons, demons_update, match_histogram
from .dense import register_dense
from .pyramid import Level, PyramidRun

__all__ = [
    "RegistrationResult",
    "register_affine",
    "register_dense",
    "register_bspline",
    "demons",
    "demons_update",
    "match_histogram",
    "bspline_to_disp",
    "control_grid_shape",
    "cubic_bspline",
    "gaussian_smooth",
    "pyramid_shapes",
    "PyramidRun",
    "Level",
]
