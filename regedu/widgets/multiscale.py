"""Where single scale breaks (notebook 06): a disk pushed further and further, registered with 1 to 4
pyramid levels and by networks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from .. import metrics, viz, warps
from ..checks import check_device, check_positive_int
from .controls import interactive_figure, make_slider, require_ipywidgets

__all__ = ["multiscale_result", "multiscale_widget"]


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
    from ..api import register

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
    from ..classical import pyramid_shapes
    from ..data.shapes import large_deformation_pair

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
    from ..classical.common import downsample

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
    require_ipywidgets()
    from ..classical import pyramid_shapes

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
    return interactive_figure(show,
                              magnitude=make_slider("FloatSlider", "push (voxels)", 2.0, top, 2.0, start),
                              levels=make_slider("IntSlider", "pyramid levels", 1, max_levels, 1,
                                                 min(max(1, levels), max_levels)))
