"""regedu: a small, readable PyTorch kit for learning medical image registration.

Modules (one concept each): :mod:`regedu.warps` (grids, warping, composition,
integration, affines, Jacobians), :mod:`regedu.losses` (similarity terms and
regularisers), :mod:`regedu.metrics` (Dice, folding, SDlogJ, HD95, TRE) and
:mod:`regedu.checks` (the input validators they share).
"""

from . import checks, losses, metrics, warps

__version__ = "0.1.0"

__all__ = ["checks", "losses", "metrics", "warps", "__version__"]
