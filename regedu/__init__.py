"""regedu: a small, readable PyTorch kit for learning medical image registration.

Modules (one concept each): :mod:`regedu.warps` (grids, warping, composition, integration,
affines, Jacobians), :mod:`regedu.losses` (similarity terms and regularisers),
:mod:`regedu.metrics` (Dice, folding, SDlogJ, HD95, TRE), :mod:`regedu.checks` (the input
validators they share), :mod:`regedu.kernels` (the unchecked fast path behind warps and losses, for
loops), :mod:`regedu.filters` (Gaussian and box smoothing), :mod:`regedu.bspline` (the cubic
B-spline basis), :mod:`regedu.data` (offline brain, synthetic data, NIfTI, datasets),
:mod:`regedu.classical` (per-pair optimisation), :mod:`regedu.models` and :mod:`regedu.train`
(learned registration), :mod:`regedu.viz` and :mod:`regedu.widgets` (figures and sliders,
imported on demand because they load matplotlib and ipywidgets).

``regedu.register(moving, fixed, method=...)`` is the one entry point for every method.
"""

__version__ = "0.1.0"

from . import checks, losses, metrics, warps  # noqa: E402  (the version must exist first)
from .api import register  # noqa: E402

__all__ = ["checks", "losses", "metrics", "warps", "register", "__version__"]
