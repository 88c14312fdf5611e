"""One entry point for every registration method: ``register(moving, fixed, method=..., **options)``.

``METHODS`` maps a name to a function ``f(moving, fixed, **options) -> RegistrationResult``.
Adding a method (a learned one, say) is one line: ``METHODS["mine"] = my_function``.
Names of the form ``"affine+X"`` run :func:`~regedu.classical.register_affine` first and
then method ``X`` starting from its affine; the default, ``"default"``, is the classical
pipeline that did best in ``benchmarks/classical.py``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from functools import partial

import torch

from .checks import check_tensor
from .classical import RegistrationResult, demons, register_affine, register_bspline, register_dense
from .warps import warp_labels

__all__ = ["register", "METHODS", "DEFAULT_PIPELINE", "affine_then"]

SHARED_OPTIONS = ("callback", "progress", "device")  # given to both stages of an "affine+X" pipeline


def _accepts(function: Callable, options: dict, method: str) -> None:
    """Raise ``TypeError`` naming the accepted options if ``function`` would not take ``options``."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [name for name, p in parameters.items()
                if p.kind is not inspect.Parameter.VAR_POSITIONAL and name not in ("moving", "fixed")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"method {method!r} does not take the option(s) {unknown}; it accepts {accepted}.")


def affine_then(deformable: Callable) -> Callable:
    """A pipeline: :func:`register_affine`, then ``deformable`` started from its affine.

    The pipeline takes ``deformable``'s options, plus ``affine_options`` (a dict) for the
    affine stage. ``callback``, ``progress`` and ``device`` go to both stages; the callback's
    level counts on through the two stages, and ``history`` holds the affine levels first.
    """

    def pipeline(moving: torch.Tensor, fixed: torch.Tensor, affine_options: dict | None = None,
                 **options) -> RegistrationResult:
        _accepts(deformable, options, "deformable stage")
        if "affine" in options:
            raise ValueError("an 'affine+...' pipeline computes the affine itself: do not pass `affine=`; "
                             "to start from your own affine, call the deformable method alone.")
        affine_options = dict(affine_options or {})
        _accepts(register_affine, affine_options, "affine stage (affine_options)")
        shared = {name: options[name] for name in SHARED_OPTIONS if name in options}
        first = register_affine(moving, fixed, **{**shared, **affine_options})
        callback = options.get("callback")
        if callback is not None:
            offset = len(first.history)
            options["callback"] = lambda level, iteration, loss: callback(level + offset, iteration, loss)
        second = deformable(moving, fixed, affine=first.affine, **options)
        second.history = first.history + second.history
        second.parameters = {**{f"affine_{k}": v for k, v in first.parameters.items()}, **second.parameters}
        return second

    return pipeline


DEFAULT_PIPELINE = "affine+bspline"

METHODS: dict[str, Callable] = {
    "rigid": partial(register_affine, transform="rigid"),
    "affine": register_affine,
    "dense": register_dense,
    "svf": partial(register_dense, diffeomorphic=True),
    "bspline": register_bspline,
    "demons": demons,
    "diffeomorphic_demons": partial(demons, diffeomorphic=True),
}
for _name in ("dense", "svf", "bspline", "demons", "diffeomorphic_demons"):
    METHODS[f"affine+{_name}"] = affine_then(METHODS[_name])
METHODS["default"] = METHODS[DEFAULT_PIPELINE]


def _method_function(method) -> Callable:
    if callable(method):
        return method
    if method not in METHODS:
        raise ValueError(f"unknown registration method {method!r}; choose one of {sorted(METHODS)} "
                         f"(or add yours: regedu.api.METHODS['name'] = function).")
    return METHODS[method]


def register(moving: torch.Tensor, fixed: torch.Tensor, method="default", *,
             moving_labels: torch.Tensor | None = None, **options) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` with any method, classical or learned.

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images (2D or 3D), same spatial shape.
        method: a name from :data:`METHODS` (``"default"`` = ``"affine+bspline"``: affine, then a
            free-form B-spline deformation) or a function ``f(moving, fixed, **options)``.
        moving_labels: optional integer label map ``(B, 1, *spatial)`` of ``moving``; the
            result's ``warped_labels`` then holds it carried onto the fixed grid.
        **options: the method's options, e.g. ``iterations``, ``lr``, ``levels``,
            ``similarity``, ``regulariser``, ``weight``, ``callback(level, iteration, loss)``,
            ``progress``, ``device``; ``affine_options={...}`` for the affine stage of an
            ``"affine+..."`` pipeline. See each function in :mod:`regedu.classical`.

    Returns:
        :class:`~regedu.classical.RegistrationResult`: ``warped``, the total ``disp`` (affine
        included: ``warp(moving, disp)`` is ``warped``), ``affine`` (or ``None``), ``history``
        (loss per iteration per level), ``seconds``, ``method``.
    """
    function = _method_function(method)
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    _accepts(function, options, name)  # pipelines check each stage themselves
    if moving_labels is not None:
        check_tensor(moving_labels, "moving_labels")
    start = time.perf_counter()
    result = function(moving, fixed, **options)
    if moving_labels is not None:
        result.warped_labels = warp_labels(moving_labels.to(result.disp.device), result.disp)
    result.seconds = time.perf_counter() - start
    result.method = name
    return result
