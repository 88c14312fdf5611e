"""Sliders for the lessons: thin ipywidgets wrappers over plain functions.

For every widget factory ``X_widget(...)`` there is a plain function that computes what the
widget shows (tested directly, usable without a notebook), and :mod:`regedu.viz` draws it:

* :func:`transform_explorer` / :func:`transform_explorer_widget`: translation, rotation,
  scale and a smooth random deformation, built from :mod:`regedu.warps`;
* :func:`similarity_landscape` / :func:`similarity_landscape_widget`: a similarity loss at
  every integer shift of the moving image (:mod:`regedu.losses`);
* :func:`regularisation_result` / :func:`regularisation_widget`: precomputed results over a
  range of regulariser weights, with their field statistics (:mod:`regedu.metrics`);
* :func:`integration_steps` / :func:`integration_steps_widget`: scaling and squaring with
  more or fewer steps, and how much the field folds;
* :func:`slice_viewer` / :func:`slice_viewer_widget`: a three-plane viewer of a 3D volume;
* :func:`multiscale_result` / :func:`multiscale_widget`: a disk pushed further and further,
  registered with 1 to 4 pyramid levels (and by networks): where single scale breaks.
* :func:`field_scores` / :func:`network_scores`, :func:`field_comparison` /
  :func:`field_comparison_widget`: learned (or any) fields on synthetic pairs with a known true
  field, their Dice, end-point error and folding, side by side on one colour scale per column.

A factory returns the widget without displaying it: make it the last line of a cell (or call
``display(widget)``). Sliders update when released, not while dragged. ``ipywidgets`` is imported
only when a widget is built; without it, building one raises an ``ImportError`` that says how to
install it, and the plain functions still work.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import torch

from . import losses, metrics, viz, warps
from .checks import (
    check_device,
    check_disp,
    check_floating,
    check_image,
    check_positive_int,
    check_same_shape,
    check_tensor,
)
from .data.synthetic import random_disp

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
    "multiscale_result",
    "multiscale_widget",
    "field_scores",
    "network_scores",
    "field_comparison",
    "field_comparison_widget",
]

SIMILARITIES: dict[str, Callable] = losses.SIMILARITIES
"""Similarity losses by name, as offered by :func:`similarity_landscape` (all: lower is better): the
one registry, :data:`regedu.losses.SIMILARITIES`."""


# ---------------------------------------------------------------------------
# the ipywidgets boundary
# ---------------------------------------------------------------------------


def _ipywidgets():
    """The ipywidgets module, or an ImportError that says how to get it."""
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError(
            "regedu's interactive widgets need ipywidgets, which is not installed: "
            "pip install ipywidgets (then restart the kernel). The plain functions of "
            "regedu.widgets (e.g. transform_explorer) work without it."
        ) from error
    return ipywidgets


def _display(fig) -> None:
    from IPython.display import display

    display(fig)


def _interactive(show: Callable, **controls):
    """An ``ipywidgets.interactive`` that draws ``show(**values)`` and displays the figure.

    The widget's ``.result`` is the last figure drawn.
    """
    widgets = _ipywidgets()

    def update(**values):
        fig = show(**values)
        _display(fig)
        return fig

    return widgets.interactive(update, **controls)


def _slider(kind: str, description: str, low, high, step, value):
    """A slider of ``ipywidgets.<kind>`` that updates on release, with a readable description."""
    widgets = _ipywidgets()
    return getattr(widgets, kind)(min=low, max=high, step=step, value=value, description=description,
                                  continuous_update=False, style={"description_width": "initial"},
                                  layout=widgets.Layout(width="420px"))


def _check_2d(image, name: str, what: str) -> None:
    """Raise unless ``image`` is a 2D batch ``(B, C, H, W)``, saying how to get a slice from a volume."""
    check_tensor(image, name)
    if image.dim() == 5:
        raise ValueError(
            f"{what} works on 2D images (B, C, H, W), but `{name}` is a 3D volume of shape "
            f"{tuple(image.shape)}. Pass a slice: `{name}[..., z]`, or regedu.data.brain_slice().image."
        )
    check_image(image, name, ndim=2)


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
    _check_2d(image, "image", "transform_explorer")
    check_floating(image, "image")
    scale = viz._check_number(scale, "scale", 1e-3)
    deformation = viz._check_number(deformation, "deformation", 0.0)
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
    _check_2d(image, "image", "transform_explorer_widget")
    check_floating(image, "image")
    limit = float(round(max(image.shape[2:]) / 4))

    def show(tx, ty, angle_deg, scale, deformation):
        warped, disp = transform_explorer(image, tx, ty, angle_deg, scale, deformation, seed)
        return _transform_figure(image, warped, disp, orientation, spacing)

    return _interactive(
        show,
        tx=_slider("FloatSlider", "tx: shift along axis 0 (voxels)", -limit, limit, 0.5, 0.0),
        ty=_slider("FloatSlider", "ty: shift along axis 1 (voxels)", -limit, limit, 0.5, 0.0),
        angle_deg=_slider("FloatSlider", "rotation (degrees)", -90.0, 90.0, 1.0, 0.0),
        scale=_slider("FloatSlider", "scale", 0.5, 2.0, 0.05, 1.0),
        deformation=_slider("FloatSlider", "deformation (voxels)", 0.0, 12.0, 0.5, 0.0),
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
    _check_2d(fixed, "fixed", "similarity_landscape_widget")
    check_image(moving, "moving", ndim=2)
    check_same_shape(fixed, moving, "fixed", "moving")
    check_positive_int(max_shift, "max_shift")
    widgets = _ipywidgets()

    def show(similarity, shift_range):
        shifts = _shift_values(shift_range)
        values = similarity_landscape(fixed, moving, shifts, similarity)
        fig, axes = viz.new_figure(1, 2, 2.6 * viz.PANEL_INCHES, 1.1 * viz.PANEL_INCHES)
        viz.landscape(values, shifts, ax=axes[0, 0], title=f"{similarity} landscape")
        _profiles(axes[0, 1], values, shifts)
        return fig

    choice = widgets.Dropdown(options=list(SIMILARITIES), value="mse", description="similarity")
    return _interactive(show, similarity=choice,
                        shift_range=_slider("IntSlider", "largest shift (voxels)", 1, max_shift, 1,
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
    widgets = _ipywidgets()
    weights = sorted(results)

    def show(weight):
        summary = regularisation_result(results, weight, fixed)
        return _regularisation_figure(summary, weight, fixed, moving, orientation)

    slider = widgets.SelectionSlider(options=[(f"{w:g}", w) for w in weights], value=weights[0],
                                     description="regulariser weight", continuous_update=False,
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="420px"))
    return _interactive(show, weight=slider)


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
    _ipywidgets()

    def show(steps):
        disp, folding = integration_steps(velocity, steps)
        fig, axes = viz.new_figure(1, 2)
        viz.deformation_grid(disp, spacing, ax=axes[0, 0], image=image, orientation=orientation)
        viz.jacobian_map(disp, ax=axes[0, 1], orientation=orientation)
        how = f"velocity / {2 ** steps} squared {steps} times" if steps else "velocity used as displacement"
        fig.suptitle(f"{steps} steps ({how}): folding {100 * folding:.2f}%")
        return fig

    return _interactive(show, steps=_slider("IntSlider", "scaling and squaring steps", 0, max_steps, 1, 0))


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
    _ipywidgets()
    if orientation:
        names = ("x (sagittal slice)", "y (coronal slice)", "z (axial slice)")
    else:
        names = ("axis 0", "axis 1", "axis 2")

    def show(first, second, third):
        return slice_viewer(volume, (first, second, third), labels, orientation)

    sliders = [_slider("IntSlider", name, 0, size - 1, 1, size // 2)
               for name, size in zip(names, volume.shape[2:], strict=True)]
    return _interactive(show, first=sliders[0], second=sliders[1], third=sliders[2])


# ---------------------------------------------------------------------------
# where single scale breaks (notebook 06)
# ---------------------------------------------------------------------------


def _split_iterations(total: int, levels: int) -> list[int]:
    """``total`` iterations shared by ``levels`` levels, coarse to fine, the remainder to the coarsest."""
    share, extra = divmod(total, levels)
    return [share + (level < extra) for level in range(levels)]


def _cached(cache: dict | None, key: tuple, compute: Callable):
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _toy_scores(pair: dict, warped: torch.Tensor, disp: torch.Tensor, warped_labels: torch.Tensor) -> dict:
    """A registration of the disk pair and its numbers (means over the batch)."""
    return {
        "warped": warped, "disp": disp, "warped_labels": warped_labels,
        "dice": float(metrics.dice(warped_labels, pair["fixed_labels"]).mean()),
        "end_point_error": float(metrics.end_point_error(disp, pair["disp"], pair["fixed_labels"]).mean()),
        "folding": float(metrics.folding_fraction(disp).mean()),
    }


def _classical_toy(pair: dict, levels: int, iterations: int) -> dict:
    from .api import register

    result = register(pair["moving"], pair["fixed"], method="dense", levels=levels,
                      iterations=_split_iterations(iterations, levels), moving_labels=pair["moving_labels"],
                      progress=False)
    return _toy_scores(pair, result.warped, result.disp, result.warped_labels)


def _network_toy(pair: dict, network: torch.nn.Module) -> dict:
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            warped, disp = network(pair["moving"], pair["fixed"])[:2]
    finally:
        network.train(was_training)
    return _toy_scores(pair, warped, disp, warps.warp_labels(pair["moving_labels"], disp))


def _check_networks(networks) -> dict:
    if networks is None:
        return {}
    if not isinstance(networks, Mapping) or not all(isinstance(net, torch.nn.Module)
                                                    for net in networks.values()):
        raise TypeError("`networks` must be a dict {name: model}, e.g. "
                        "{'PyramidNet': regedu.models.pretrained('toy_pyramid2d')}, or None.")
    return dict(networks)


def _networks_device(networks: dict, device) -> torch.device:
    device = check_device(device)
    if device is not None:
        return device
    for network in networks.values():
        for parameter in network.parameters():
            return parameter.device
    return torch.device("cpu")


def multiscale_result(magnitude: float, levels: int, networks: Mapping | None = None, iterations: int = 60,
                      shape: Sequence[int] = (64, 64), seed: int = 0, device=None,
                      cache: dict | None = None) -> dict:
    """Where single scale breaks: the disk pushed ``magnitude`` voxels, registered with ``levels`` levels.

    The pair is :func:`regedu.data.large_deformation_pair` of kind ``"large_warp"`` (a disk of radius
    ``min(shape) / 6`` pushed ``magnitude`` voxels, with its true field). It is registered by classical
    ``"dense"`` registration with ``levels`` pyramid levels sharing ``iterations`` iterations (the same
    total for every ``levels``), and by each of ``networks`` (``{name: model}``, e.g. the shipped toy
    models of notebook 06), whose result does not depend on ``levels``.

    Args:
        magnitude: the push at the image centre, in voxels (> 0).
        levels: classical pyramid levels, 1 (single scale) up to what ``shape`` allows (4 for 64 x 64).
        networks: models taking ``(moving, fixed)`` and returning ``(warped, disp, ...)``; or ``None``.
        iterations: classical iterations, all levels together.
        shape, seed: the pair's grid and direction. device: where the pair is made (default: the
            networks' device, else the CPU).
        cache: a dict kept between calls (a widget's redraws) so that nothing is computed twice; each
            entry is keyed by what it depends on. Use one cache per set of networks.

    Returns:
        a dict with ``pair``, ``magnitude``, ``levels``; ``coarse_shape`` (the coarsest grid),
        ``coarse_push`` (the true field's largest motion there) and ``coarse_radius`` (the disk's radius
        there), both in that grid's voxels: the coarsest level finds the way while the push there is
        not much longer than the radius; ``classical`` and ``networks`` (``{name: ...}``), each a dict with
        ``warped``, ``disp``, ``warped_labels`` and the numbers ``dice`` (of the disk), ``end_point_error``
        (mean inside the fixed disk, voxels; :func:`regedu.metrics.end_point_error`) and ``folding``
        (share of voxels with det J <= 0).
    """
    from .classical import pyramid_shapes
    from .data.synthetic import large_deformation_pair

    if isinstance(magnitude, bool) or not isinstance(magnitude, int | float) or not magnitude > 0:
        raise ValueError(f"`magnitude` must be a push in voxels > 0, got {magnitude!r}.")
    check_positive_int(levels, "levels")
    check_positive_int(iterations, "iterations", minimum=levels)
    networks = _check_networks(networks)
    device = _networks_device(networks, device)
    shape = tuple(shape)
    coarse_shape = pyramid_shapes(shape, levels)[0]
    magnitude = float(magnitude)
    where = (magnitude, shape, seed, str(device))
    pair = _cached(cache, ("pair", *where), lambda: large_deformation_pair(
        shape, kind="large_warp", magnitude=magnitude, seed=seed, device=device))
    shrink = (min(coarse_shape) - 1) / (min(shape) - 1)
    coarse_push = float(warps.resize_disp(pair["disp"], coarse_shape).norm(dim=1).max())
    return {
        "pair": pair, "magnitude": magnitude, "levels": levels, "coarse_shape": coarse_shape,
        "coarse_push": coarse_push, "coarse_radius": min(shape) / 6 * shrink,
        "classical": _cached(cache, ("classical", levels, iterations, *where),
                             lambda: _classical_toy(pair, levels, iterations)),
        "networks": {name: _cached(cache, ("network", name, id(network), *where),
                                   lambda network=network: _network_toy(pair, network))
                     for name, network in networks.items()},
    }


def _toy_title(name: str, scores: dict) -> str:
    return (f"{name}: Dice {scores['dice']:.2f}\nerror {scores['end_point_error']:.1f} vx, "
            f"folding {100 * scores['folding']:.1f}%")


def _multiscale_figure(result: dict):
    from .classical.common import downsample

    pair, networks = result["pair"], result["networks"]
    cols = max(3, len(networks))
    fig, axes = viz.new_figure(1 + bool(networks), cols)
    for ax in axes.flat:
        ax.set_axis_off()
    coarse = result["coarse_shape"]
    viz.difference(downsample(pair["fixed"], coarse), downsample(pair["moving"], coarse), ax=axes[0, 0],
                   vmax=1.0, names=("fixed", "moving"),
                   title=f"coarsest grid {coarse[0]} x {coarse[1]}: push {result['coarse_push']:.1f} vx,\n"
                         f"disk radius {result['coarse_radius']:.1f} vx")
    classical = result["classical"]
    viz.overlay(classical["warped"], pair["fixed_labels"], style="contour", ax=axes[0, 1],
                title=_toy_title(f"classical, levels={result['levels']}", classical))
    viz.deformation_grid(classical["disp"], spacing=4, ax=axes[0, 2], image=pair["moving"],
                         title=f"levels={result['levels']}: grid on moving")
    for col, (name, scores) in enumerate(networks.items()):
        viz.overlay(scores["warped"], pair["fixed_labels"], style="contour", ax=axes[1, col],
                    title=_toy_title(name, scores))
    fig.suptitle(f"disk (radius {min(pair['moving'].shape[2:]) / 6:.1f} voxels) pushed "
                 f"{result['magnitude']:g} voxels; warped image with the fixed outline")
    return fig


def multiscale_widget(networks: Mapping | None = None, max_magnitude: float = 20.0, max_levels: int = 4,
                      magnitude: float = 12.0, levels: int = 1, iterations: int = 60,
                      shape: Sequence[int] = (64, 64), seed: int = 0, device=None, cache: dict | None = None):
    """Two sliders, the push magnitude and the number of pyramid levels, over :func:`multiscale_result`.

    Shows the pair at the coarsest level (do the disks overlap there?), the classical result and its
    grid, and each of ``networks`` on the same pair. Magnitudes run from 2 to ``max_magnitude`` in
    steps of 2 voxels; each new view costs one classical registration (a second or two on a laptop CPU
    at the default 60 iterations) and is cached in ``cache`` (pass the dict used by earlier
    :func:`multiscale_result` calls to reuse them).
    """
    _ipywidgets()
    from .classical import pyramid_shapes

    pyramid_shapes(tuple(shape), check_positive_int(max_levels, "max_levels"))  # refuses too many levels
    if isinstance(max_magnitude, bool) or not isinstance(max_magnitude, int | float) or max_magnitude < 2:
        raise ValueError(f"`max_magnitude` must be a push in voxels >= 2, got {max_magnitude!r}.")
    networks = _check_networks(networks)
    cache = {} if cache is None else cache

    def show(magnitude, levels):
        result = multiscale_result(magnitude, levels, networks, iterations=iterations, shape=shape, seed=seed,
                                   device=device, cache=cache)
        return _multiscale_figure(result)

    top = 2.0 * math.floor(max_magnitude / 2)
    start = min(max(2.0, 2.0 * round(magnitude / 2)), top)
    return _interactive(show, magnitude=_slider("FloatSlider", "push (voxels)", 2.0, top, 2.0, start),
                        levels=_slider("IntSlider", "pyramid levels", 1, max_levels, 1,
                                       min(max(1, levels), max_levels)))


# ---------------------------------------------------------------------------
# learned fields against the true one
# ---------------------------------------------------------------------------

_PAIR_KEYS = ("moving", "fixed", "moving_labels", "fixed_labels", "disp")


def _check_pairs(pairs) -> int:
    """Raise unless ``pairs`` is a batch of pairs with labels and a true field; returns ``ndim``."""
    if not isinstance(pairs, Mapping) or any(key not in pairs for key in _PAIR_KEYS):
        got = sorted(pairs) if isinstance(pairs, Mapping) else type(pairs).__name__
        raise ValueError(
            f"`pairs` must be a batch of synthetic pairs with {list(_PAIR_KEYS)} (the true field is `disp`), "
            f"got {got}. Collate items of a regedu.data dataset: "
            f"torch.utils.data.default_collate([dataset[i] for i in range(n)])."
        )
    ndim = check_image(pairs["fixed"], "pairs['fixed']")
    check_disp(pairs["disp"], "pairs['disp']")
    check_same_shape(pairs["fixed"], pairs["moving"], "pairs['fixed']", "pairs['moving']")
    return ndim


@torch.no_grad()
def field_scores(pairs: Mapping, disp: torch.Tensor, hd95: bool = False) -> dict:
    """How good a field is on synthetic pairs whose true field is known: its numbers and its maps.

    Args:
        pairs: a batch of pairs (collated items of :class:`regedu.data.BrainSlicePairs` and
            the like): ``moving``, ``fixed`` ``(B, 1, *spatial)``, integer ``moving_labels``,
            ``fixed_labels`` ``(B, 1, *spatial)`` and the true field ``disp`` ``(B, ndim, *spatial)``
            in voxels.
        disp: the field to judge, ``(B, ndim, *spatial)`` in voxels (pull: fixed -> moving).
        hd95: also measure the HD95 of the warped labels (``scipy`` on the CPU, slower).

    Returns:
        a dict of the maps ``disp``, ``warped`` (the moving image warped), ``warped_labels`` and
        ``error`` (``(B, 1, *spatial)``, the end-point error ``|disp - true|`` at every voxel, in
        voxels), and of ``(B,)`` numbers per pair: ``dice`` (mean over the labels,
        :func:`regedu.metrics.dice`), ``epe`` (mean end-point error inside the fixed brain,
        ``fixed_labels > 0``, :func:`regedu.metrics.end_point_error`), ``folding_percent``
        (share of voxels with det J <= 0, in %), ``min_jacobian`` and, with ``hd95=True``,
        ``hd95`` (voxels, mean over the labels, :func:`regedu.metrics.hd95`).
    """
    _check_pairs(pairs)
    check_disp(disp, "disp")
    check_same_shape(disp, pairs["disp"], "disp", "pairs['disp']")
    warped_labels = warps.warp_labels(pairs["moving_labels"], disp)
    result = {
        "disp": disp,
        "warped": warps.warp(pairs["moving"], disp),
        "warped_labels": warped_labels,
        "error": torch.linalg.vector_norm(disp - pairs["disp"], dim=1, keepdim=True),
        "dice": metrics.dice(warped_labels, pairs["fixed_labels"]).nanmean(dim=1),
        "epe": metrics.end_point_error(disp, pairs["disp"], mask=pairs["fixed_labels"] > 0),
        "folding_percent": 100 * metrics.folding_fraction(disp),
        "min_jacobian": metrics.min_jacobian(disp),
    }
    if hd95:
        result["hd95"] = metrics.hd95(warped_labels, pairs["fixed_labels"]).nanmean(dim=1)
    return result


@torch.no_grad()
def network_scores(model: torch.nn.Module, pairs: Mapping, hd95: bool = False) -> dict:
    """:func:`field_scores` of the field that ``model`` (in eval mode) predicts for ``pairs``.

    ``model(moving, fixed)`` must return ``(warped, disp, ...)`` like every regedu model; the
    pairs are moved to the model's device first.
    """
    _check_pairs(pairs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}; load a shipped "
                        f"one with regedu.models.pretrained(name).")
    device = next(model.parameters()).device
    pairs = {key: value.to(device) if isinstance(value, torch.Tensor) else value
             for key, value in pairs.items()}
    was_training = model.training
    disp = model.eval()(pairs["moving"], pairs["fixed"])[1]
    model.train(was_training)
    return field_scores(pairs, disp.to(pairs["disp"].dtype), hd95)


def _check_field_results(results) -> None:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("`results` must be a non-empty dict {name: field_scores(...)}.")
    for name, result in results.items():
        if not isinstance(result, Mapping) or "error" not in result or "disp" not in result:
            raise ValueError(f"`results[{name!r}]` must come from regedu.widgets.field_scores or "
                             f"network_scores.")


def field_comparison(pairs: Mapping, results: Mapping, index: int = 0, orientation=True, label_names=None,
                     scale_over: Mapping | None = None):
    """One row per field on pair ``index``, with **one colour scale per column** across the rows.

    Columns: the warped moving labels drawn as contours on the fixed image (a legend in the first
    row when ``label_names`` are given), the remaining difference ``fixed - warped``, the
    end-point error map ``|u(x) - u_true(x)|`` and the Jacobian determinant (folds in yellow).
    A panel that scaled itself would make a field with det J in 1 ± 0.001 look as deformed as
    one in 0.5 .. 2, and a small error as large as a big one; here every row is drawn on the
    same scale, so rows can be compared by eye.

    Args:
        pairs: the batch of pairs the results were measured on (see :func:`field_scores`).
        results: ``{row name: field_scores(...) or network_scores(...)}``, in row order.
        index: which pair of the batch to show.
        orientation: panel layout (:mod:`regedu.viz`; ``True`` for a RAS brain section).
        label_names: names of the label values for the legend (e.g. ``regedu.data.TISSUE_NAMES``).
        scale_over: results whose range sets the colour scales (default ``results``): a widget
            that shows a few rows at a time passes all of them, so the scale stays put.

    Returns:
        the Figure.
    """
    _check_pairs(pairs)
    _check_field_results(results)
    scale_over = results if scale_over is None else scale_over
    _check_field_results(scale_over)
    count = pairs["fixed"].shape[0]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"`index` must be a pair of the batch, 0 .. {count - 1}, got {index!r}.")
    item = slice(index, index + 1)
    error_max = max(float(result["error"][item].max()) for result in scale_over.values()) or 1e-3
    low, high = viz.jacobian_range([result["disp"][item] for result in scale_over.values()])
    fixed = pairs["fixed"][item]
    fig, axes = viz.new_figure(len(results), 4, width=4.3 * viz.PANEL_INCHES,
                               height=len(results) * viz.PANEL_INCHES)
    for row, (ax_row, (name, result)) in enumerate(zip(axes, results.items(), strict=True)):
        numbers = f"Dice {float(result['dice'][index]):.3f}" if "dice" in result else ""
        viz.overlay(fixed, result["warped_labels"][item], style="contour", ax=ax_row[0],
                    names=label_names if row == 0 else None, orientation=orientation,
                    title=f"{name}: labels on fixed\n{numbers}")
        viz.difference(fixed, result["warped"][item], ax=ax_row[1], vmax=0.5, orientation=orientation,
                       names=("fixed", "warped"), title="fixed − warped")
        epe = f", brain mean {float(result['epe'][index]):.2f}" if "epe" in result else ""
        viz.show_image(result["error"][item], ax_row[2], f"end-point error (voxels){epe}", cmap="magma",
                       vmin=0, vmax=error_max, orientation=orientation, colorbar=True)
        viz.jacobian_map(result["disp"][item], ax=ax_row[3], orientation=orientation, vmin=low, vmax=high,
                         title=f"det J, min {float(result['min_jacobian'][index]):.2f}"
                         if "min_jacobian" in result else "Jacobian determinant")
    return fig


def field_comparison_widget(pairs: Mapping, results: Mapping, reference: str | None = "true field",
                            orientation=True, label_names=None):
    """A choice among precomputed ``results`` and a pair slider, for :func:`field_comparison`.

    Shows the ``reference`` row (e.g. the true field) above the chosen one, both on the colour
    scales of *all* the results for that pair, so switching the choice never rescales a panel.

    Args:
        pairs: the batch of pairs the results were measured on.
        results: ``{name: field_scores(...)}`` (for example one per shipped model).
        reference: the name of a result always shown on top, or ``None`` for none.
        orientation, label_names: as in :func:`field_comparison`.
    """
    _check_pairs(pairs)
    _check_field_results(results)
    if reference is not None and reference not in results:
        raise ValueError(f"`reference` {reference!r} is not among the results {list(results)}; pass None "
                         f"to show only the chosen one.")
    widgets = _ipywidgets()
    choices = [name for name in results if name != reference]
    if not choices:
        raise ValueError("`results` must hold at least one result besides the reference.")

    def show(name, index):
        rows = {key: results[key] for key in (reference, name) if key is not None}
        return field_comparison(pairs, rows, index, orientation, label_names, scale_over=results)

    choice = widgets.Dropdown(options=choices, value=choices[0], description="network",
                              style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))
    count = pairs["fixed"].shape[0]
    return _interactive(show, name=choice, index=_slider("IntSlider", "held-out pair", 0, count - 1, 1, 0))
