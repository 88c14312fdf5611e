"""Sliders that explore one idea each: a transform, a similarity landscape, a regulariser's weight,
scaling-and-squaring steps, and the three planes of a volume (each beside its plain function)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import torch

from .. import losses, metrics, viz, warps
from ..checks import (
    check_disp,
    check_floating,
    check_image,
    check_number,
    check_positive_int,
    check_same_shape,
)
from ..data.synthetic import random_disp
from .controls import check_2d, interactive_figure, make_slider, require_ipywidgets

__all__ = [
    "SIMILARITIES",
    "transform_explorer",
    "transform_explorer_widget",
    "similarity_landscape",
    "similarity_landscape_widget",
    "regularisation_result",
    "regularisation_widget",
    "integration_steps",
    "integration_steps_widget",
    "slice_viewer",
    "slice_viewer_widget",
]


SIMILARITIES: dict[str, Callable] = losses.SIMILARITIES
"""Similarity losses by name, as offered by :func:`similarity_landscape` (all: lower is better): the
one registry, :data:`regedu.losses.SIMILARITIES`."""


# ---------------------------------------------------------------------------
# transform explorer
# ---------------------------------------------------------------------------


def transform_explorer(image: torch.Tensor, tx: float = 0.0, ty: float = 0.0, angle_deg: float = 0.0,
                       scale: float = 1.0, deformation: float = 0.0, seed: int = 0,
                       smoothness: float = 16.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp a 2D image with a translation, a rotation, a scaling and a smooth random deformation.

    The sampling location of voxel ``x`` is ``A(x + d(x))``: first the random deformation ``d``
    (:func:`regedu.data.random_disp`, largest component ``deformation`` voxels), then the affine
    ``A = T R S`` (scaling ``S`` and rotation ``R`` about the image centre, translation ``T``).
    Warps pull, so the image appears moved the *opposite* way: by ``-tx``, rotated by
    ``-angle_deg`` and shrunk when ``scale > 1`` (DESIGN.md).

    Args:
        image: ``(B, C, H, W)`` floating image.
        tx, ty: translation in voxels along axis 0 and axis 1 (x and y of a RAS brain slice).
        angle_deg: rotation angle in degrees, in the plane of axes (0, 1).
        scale: scaling factor (> 0) of the sampling grid.
        deformation: largest displacement of the random deformation, in voxels (0: none).
        seed, smoothness: seed and control-point spacing (voxels) of the random deformation.

    Returns:
        ``(warped, disp)``: the warped image ``(B, C, H, W)`` and the total displacement
        ``(1, 2, H, W)`` in voxels, on the image's device and dtype. All defaults give ``disp = 0``
        and ``warped == image``.
    """
    check_2d(image, "image", "transform_explorer")
    check_floating(image, "image")
    scale = check_number(scale, "scale", 1e-3)
    deformation = check_number(deformation, "deformation")
    shape = tuple(image.shape[2:])
    like = {"device": image.device, "dtype": image.dtype}
    rotate_and_scale = warps.compose_affine(warps.rotation(math.radians(angle_deg), shape, **like),
                                            warps.scaling(scale, shape, **like))
    affine = warps.compose_affine(warps.translation([tx, ty], 2, **like), rotate_and_scale)
    disp = warps.affine_to_disp(affine, shape)
    if deformation > 0:
        bend = random_disp(shape, magnitude=deformation, smoothness=smoothness, seed=seed, **like)
        disp = warps.compose(disp, bend)
    return warps.warp(image, disp), disp


def _transform_figure(image, warped, disp, orientation, spacing: int):
    fig, axes = viz.new_figure(1, 3)
    viz.show_image(image, axes[0, 0], "image (moving)", orientation=orientation)
    viz.show_image(warped, axes[0, 1], "warped = image(x + u(x))", orientation=orientation)
    viz.deformation_grid(disp, spacing, ax=axes[0, 2], image=image, orientation=orientation,
                         title="fixed grid, where it samples the image")
    return fig


def transform_explorer_widget(image: torch.Tensor, orientation=False, seed: int = 0, spacing: int = 6):
    """Sliders for :func:`transform_explorer`: shows the image, the warped image and the grid.

    Args:
        image: ``(B, C, H, W)`` floating image.
        orientation: layout of the panels (see :mod:`regedu.viz`; ``True`` for a RAS brain slice).
        seed: seed of the random deformation (the same shape at every magnitude).
        spacing: voxels between grid lines.
    """
    check_2d(image, "image", "transform_explorer_widget")
    check_floating(image, "image")
    limit = float(round(max(image.shape[2:]) / 4))

    def show(tx, ty, angle_deg, scale, deformation):
        warped, disp = transform_explorer(image, tx, ty, angle_deg, scale, deformation, seed)
        return _transform_figure(image, warped, disp, orientation, spacing)

    return interactive_figure(
        show,
        tx=make_slider("FloatSlider", "tx: shift along axis 0 (voxels)", -limit, limit, 0.5, 0.0),
        ty=make_slider("FloatSlider", "ty: shift along axis 1 (voxels)", -limit, limit, 0.5, 0.0),
        angle_deg=make_slider("FloatSlider", "rotation (degrees)", -90.0, 90.0, 1.0, 0.0),
        scale=make_slider("FloatSlider", "scale", 0.5, 2.0, 0.05, 1.0),
        deformation=make_slider("FloatSlider", "deformation (voxels)", 0.0, 12.0, 0.5, 0.0),
    )


# ---------------------------------------------------------------------------
# similarity landscape
# ---------------------------------------------------------------------------


def _shift_values(shifts) -> list[int]:
    """``shifts`` as a list of integers: an int ``R`` means ``-R .. R``."""
    if isinstance(shifts, int) and not isinstance(shifts, bool):
        check_positive_int(shifts, "shifts", minimum=0)
        return list(range(-shifts, shifts + 1))
    values = list(shifts)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"`shifts` must be an integer R (for -R .. R) or a list of integers, "
                         f"got {shifts!r}.")
    return values


@torch.no_grad()
def similarity_landscape(fixed: torch.Tensor, moving: torch.Tensor, shifts=5,
                         similarity="mse") -> torch.Tensor:
    """The similarity loss of ``fixed`` and the moving image shifted by every integer shift.

    ``losses[i, j]`` (2D) is ``similarity(fixed, warp(moving, s))`` for the constant
    displacement ``s = (shifts[i], shifts[j])`` voxels along axes 0 and 1 (3D: three indices).
    Because warps pull, ``warp(moving, s)(x) = moving(x + s)``: if ``moving`` is ``fixed``
    moved by ``t`` voxels (``moving(x) = fixed(x - t)``), a good similarity is lowest at ``s = t``.

    Args:
        fixed, moving: ``(B, C, *spatial)`` floating images of one shape.
        shifts: an integer ``R`` for the shifts ``-R .. R``, or a list of integer shifts.
        similarity: a name in :data:`regedu.losses.SIMILARITIES` (``"mse"``, ``"ncc"``,
            ``"global_ncc"``, ``"mi"``, ``"ngf"``), each with its default options, or a function
            ``(fixed, warped) -> scalar loss``.

    Returns:
        ``(S,) * ndim`` losses for ``S`` shifts, on the images' device and dtype.
        It costs ``S ** ndim`` warps and losses: keep ``S`` small in 3D.
    """
    ndim = check_image(fixed, "fixed")
    check_image(moving, "moving", ndim)
    check_same_shape(fixed, moving, "fixed", "moving")
    check_floating(moving, "moving")
    loss = losses.similarity(similarity)
    values = _shift_values(shifts)
    out = torch.empty((len(values),) * ndim, device=fixed.device, dtype=fixed.dtype)
    for position in itertools.product(range(len(values)), repeat=ndim):
        shift = torch.tensor([values[i] for i in position], device=moving.device, dtype=moving.dtype)
        disp = shift.view(1, ndim, *([1] * ndim)).expand(1, ndim, *moving.shape[2:])
        out[position] = loss(fixed, warps.warp(moving, disp))
    return out


def _profiles(ax, landscape: torch.Tensor, shifts: Sequence[int]) -> None:
    """The loss along each axis through the lowest loss: how wide is the valley around it?"""
    values = landscape.detach().cpu()
    row, col = divmod(int(values.argmin()), values.shape[1])
    ax.plot(shifts, values[:, col].tolist(), marker=".", label=f"along axis 0 (axis 1 at {shifts[col]})")
    ax.plot(shifts, values[row, :].tolist(), marker=".", label=f"along axis 1 (axis 0 at {shifts[row]})")
    ax.set_xlabel("shift (voxels)")
    ax.set_ylabel("loss (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    ax.set_title("profiles through the minimum", fontsize="medium")


def similarity_landscape_widget(fixed: torch.Tensor, moving: torch.Tensor, max_shift: int = 10):
    """A similarity choice and a shift range for :func:`similarity_landscape` of two 2D images.

    Shows the loss map over shifts (lowest loss starred) and its profiles along each axis.
    """
    check_2d(fixed, "fixed", "similarity_landscape_widget")
    check_image(moving, "moving", ndim=2)
    check_same_shape(fixed, moving, "fixed", "moving")
    check_positive_int(max_shift, "max_shift")
    widgets = require_ipywidgets()

    def show(similarity, shift_range):
        shifts = _shift_values(shift_range)
        values = similarity_landscape(fixed, moving, shifts, similarity)
        fig, axes = viz.new_figure(1, 2, 2.6 * viz.PANEL_INCHES, 1.1 * viz.PANEL_INCHES)
        viz.landscape(values, shifts, ax=axes[0, 0], title=f"{similarity} landscape")
        _profiles(axes[0, 1], values, shifts)
        return fig

    choice = widgets.Dropdown(options=list(SIMILARITIES), value="mse", description="similarity")
    return interactive_figure(show, similarity=choice,
                              shift_range=make_slider("IntSlider", "largest shift (voxels)", 1, max_shift, 1,
                                                      min(5, max_shift)))


# ---------------------------------------------------------------------------
# regularisation weight
# ---------------------------------------------------------------------------


def _check_results(results) -> None:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("`results` must be a non-empty dict {weight: (warped, disp)}.")


def regularisation_result(results: Mapping, weight, fixed: torch.Tensor | None = None) -> dict:
    """One entry of precomputed results over regulariser weights, with its numbers.

    Args:
        results: ``{weight: (warped, disp)}``, e.g. from ``register_dense`` run at each weight.
        weight: the key to show.
        fixed: the fixed image; if given, the MSE between it and ``warped`` is measured too.

    Returns:
        a dict with ``warped``, ``disp`` and, averaged over the batch, ``folding_fraction``
        (share of voxels with det J <= 0), ``sdlogj`` (:func:`regedu.metrics.sdlogj`) and, with
        ``fixed``, ``mse`` (:func:`regedu.losses.mse`).
    """
    _check_results(results)
    if weight not in results:
        raise ValueError(f"`weight` {weight!r} is not among the results; choose one of {sorted(results)}.")
    warped, disp = results[weight]
    summary = {
        "warped": warped,
        "disp": disp,
        "folding_fraction": float(metrics.folding_fraction(disp).mean()),
        "sdlogj": float(metrics.sdlogj(disp).mean()),
    }
    if fixed is not None:
        summary["mse"] = float(losses.mse(fixed, warped))
    return summary


def _regularisation_figure(summary: dict, weight, fixed, moving, orientation):
    panels = 3 + (fixed is not None)
    fig, axes = viz.new_figure(1, panels)
    row = list(axes[0])
    viz.show_image(summary["warped"], row.pop(0), "warped", orientation=orientation)
    if fixed is not None:
        viz.difference(fixed, summary["warped"], ax=row.pop(0), names=("fixed", "warped"),
                       orientation=orientation)
    viz.deformation_grid(summary["disp"], ax=row.pop(0), image=moving, orientation=orientation)
    viz.jacobian_map(summary["disp"], ax=row.pop(0), orientation=orientation)
    mse = f"MSE {summary['mse']:.4g}, " if "mse" in summary else ""
    fig.suptitle(f"weight {weight:g}: {mse}folding {100 * summary['folding_fraction']:.2f}%, "
                 f"SDlogJ {summary['sdlogj']:.3f}")
    return fig


def regularisation_widget(results: Mapping, fixed: torch.Tensor | None = None,
                          moving: torch.Tensor | None = None, orientation=False):
    """A slider over the regulariser weights of precomputed ``{weight: (warped, disp)}`` results.

    Shows the warped image, its difference to ``fixed`` (if given), the grid (on ``moving`` if
    given) and the Jacobian determinant, with the numbers of :func:`regularisation_result`.
    """
    _check_results(results)
    widgets = require_ipywidgets()
    weights = sorted(results)

    def show(weight):
        summary = regularisation_result(results, weight, fixed)
        return _regularisation_figure(summary, weight, fixed, moving, orientation)

    slider = widgets.SelectionSlider(options=[(f"{w:g}", w) for w in weights], value=weights[0],
                                     description="regulariser weight", continuous_update=False,
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="420px"))
    return interactive_figure(show, weight=slider)


# ---------------------------------------------------------------------------
# scaling and squaring
# ---------------------------------------------------------------------------


def integration_steps(velocity: torch.Tensor, steps: int) -> tuple[torch.Tensor, float]:
    """Integrate a stationary velocity field with ``steps`` squarings; how much does it fold?

    Returns ``(disp, folding)``: :func:`regedu.warps.integrate` of ``velocity`` (``steps=0``
    returns the velocity itself as the displacement) and the share of voxels where it folds
    (:func:`regedu.metrics.folding_fraction`, mean over the batch, in [0, 1]).
    """
    disp = warps.integrate(velocity, steps)
    return disp, float(metrics.folding_fraction(disp).mean())


def integration_steps_widget(velocity: torch.Tensor, max_steps: int = 10, image: torch.Tensor | None = None,
                             orientation=False, spacing: int = 4):
    """A slider over the number of scaling-and-squaring steps of :func:`integration_steps`.

    Shows the deformation grid (on ``image`` if given) and the Jacobian determinant, with the
    folding percentage: 0 steps uses the velocity as a displacement and may fold; more steps
    approach the diffeomorphic ``exp(velocity)``.
    """
    check_disp(velocity, "velocity")
    check_positive_int(max_steps, "max_steps")
    require_ipywidgets()

    def show(steps):
        disp, folding = integration_steps(velocity, steps)
        fig, axes = viz.new_figure(1, 2)
        viz.deformation_grid(disp, spacing, ax=axes[0, 0], image=image, orientation=orientation)
        viz.jacobian_map(disp, ax=axes[0, 1], orientation=orientation)
        how = f"velocity / {2 ** steps} squared {steps} times" if steps else "velocity used as displacement"
        fig.suptitle(f"{steps} steps ({how}): folding {100 * folding:.2f}%")
        return fig

    return interactive_figure(show, steps=make_slider("IntSlider", "scaling and squaring steps", 0, max_steps,
                                                      1, 0))


# ---------------------------------------------------------------------------
# three-plane viewer
# ---------------------------------------------------------------------------


def slice_viewer(volume: torch.Tensor, index: Sequence[int], labels: torch.Tensor | None = None,
                 orientation=True):
    """The sagittal, coronal and axial views of ``volume`` through the point ``index = (x, y, z)``.

    A plain call of :func:`regedu.viz.three_plane`; returns its Figure.
    """
    return viz.three_plane(volume, index=index, labels=labels, orientation=orientation)


def slice_viewer_widget(volume: torch.Tensor, labels: torch.Tensor | None = None, orientation=True):
    """Three sliders (one per axis) for a three-plane view of a 3D volume ``(B, C, X, Y, Z)``."""
    check_image(volume, "volume", ndim=3)
    require_ipywidgets()
    if orientation:
        names = ("x (sagittal slice)", "y (coronal slice)", "z (axial slice)")
    else:
        names = ("axis 0", "axis 1", "axis 2")

    def show(first, second, third):
        return slice_viewer(volume, (first, second, third), labels, orientation)

    sliders = [make_slider("IntSlider", name, 0, size - 1, 1, size // 2)
               for name, size in zip(names, volume.shape[2:], strict=True)]
    return interactive_figure(show, first=sliders[0], second=sliders[1], third=sliders[2])
