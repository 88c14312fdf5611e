"""What every figure of :mod:`regedu.viz` starts from: tensors as numpy arrays, and new panels.

Figures take tensors (or numpy arrays) on any device and of any dtype; these helpers bring the first
batch item and channel to the CPU as numpy arrays, check shapes, and make the figure and the axes a
figure function draws into. A new figure function starts with them (and :mod:`regedu.viz.layout`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..checks import check_disp, check_image, check_positive_int, check_tensor

__all__ = [
    "PANEL_INCHES",
    "cpu_tensor",
    "to_numpy",
    "spatial_array",
    "field_tensor",
    "spatial_pair",
    "new_figure",
    "figure_and_axes",
    "symmetric_limit",
]

PANEL_INCHES = 3.2  # width and height of one image panel


# ---------------------------------------------------------------------------
# inputs: tensors to numpy arrays on the CPU
# ---------------------------------------------------------------------------


def cpu_tensor(x, name: str) -> torch.Tensor:
    """A detached CPU tensor of the same dtype from a tensor or numpy array (booleans become int64)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    check_tensor(x, name)
    x = x.detach().cpu()
    return x.to(torch.int64) if x.dtype == torch.bool else x


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A CPU tensor as a numpy array for drawing: floats as float64 (numpy has no bfloat16)."""
    return (x.double() if x.is_floating_point() else x).numpy()


def spatial_array(x, name: str) -> np.ndarray:
    """First item and channel of an image or label map, as a numpy array ``(*spatial)``."""
    x = cpu_tensor(x, name)
    if x.dim() in (2, 3):
        x = x[None, None]
    if x.dim() not in (4, 5):
        raise ValueError(
            f"`{name}` must be an image (B, C, H, W) / (B, C, D, H, W), or its spatial part (H, W) / "
            f"(D, H, W), got shape {tuple(x.shape)}. Index a batch item or channel with x[0] to drop axes."
        )
    check_image(x, name)
    return to_numpy(x[0, 0])


def field_tensor(disp, name: str = "disp") -> torch.Tensor:
    """A field ``(B, ndim, *spatial)`` or ``(ndim, *spatial)`` as a CPU tensor ``(1, ndim, *spatial)``.

    ``(2, H, W)`` and ``(3, D, H, W)`` are read as single fields without a batch axis; a 4-axis
    tensor whose second axis is 2 is a batch of 2D fields.
    """
    disp = cpu_tensor(disp, name)
    unbatched = disp.dim() in (3, 4) and disp.shape[0] == disp.dim() - 1
    if unbatched and not (disp.dim() == 4 and disp.shape[1] == 2):
        disp = disp[None]
    check_disp(disp, name)
    return disp[:1]


def spatial_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two images of one spatial shape, as numpy arrays ``(*spatial)``."""
    volume_a, volume_b = spatial_array(a, "a"), spatial_array(b, "b")
    if volume_a.shape != volume_b.shape:
        raise ValueError(f"`a` and `b` must share one spatial shape, got {volume_a.shape} and "
                         f"{volume_b.shape}. Resample one onto the other's grid first.")
    return volume_a, volume_b


# ---------------------------------------------------------------------------
# new figures
# ---------------------------------------------------------------------------


def new_figure(rows: int = 1, cols: int = 1, width: float | None = None, height: float | None = None):
    """``(figure, axes)``: a figure with a ``(rows, cols)`` array of axes to fill with ``ax=``.

    Constrained layout, ``PANEL_INCHES`` per panel unless ``width``/``height`` (inches) are given;
    detached from pyplot like every figure here (see :mod:`regedu.viz`).
    """
    check_positive_int(rows, "rows")
    check_positive_int(cols, "cols")
    width = width or PANEL_INCHES * cols
    height = height or PANEL_INCHES * rows
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), layout="constrained", squeeze=False)
    plt.close(fig)
    return fig, axes


def figure_and_axes(ax, width: float | None = None, height: float | None = None):
    """``(figure, ax)``: the given axes, or one new panel."""
    if ax is not None:
        return ax.figure, ax
    fig, axes = new_figure(1, 1, width, height)
    return fig, axes[0, 0]


def symmetric_limit(*arrays: np.ndarray) -> float:
    """Largest absolute value over ``arrays`` (a tiny positive number if all are 0)."""
    peak = max(float(np.nanmax(np.abs(a))) if a.size else 0.0 for a in arrays)
    return peak if peak > 0 else 1e-12
