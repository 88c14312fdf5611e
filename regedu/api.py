"""One entry point for every registration method: ``register(moving, fixed, method=..., **options)``.

``METHODS`` maps a name to a function ``f(moving, fixed, **options) -> RegistrationResult``.
Adding a method (a learned one, say) is one line: ``METHODS["mine"] = my_function``.
Names of the form ``"affine+X"`` run :func:`~regedu.classical.register_affine` first and
then method ``X`` starting from its affine; the default, ``"default"``, is the classical
pipeline that did best in ``benchmarks/classical.py``.

Learned methods (:data:`LEARNED_METHODS`) run a trained network instead of an optimisation:
``"voxelmorph"`` is one forward pass of ``model=`` (a checkpoint path or a module; default the
shipped 2D brain VoxelMorph, :func:`regedu.models.pretrained`), ``"voxelmorph+io"`` refines that
network's field on the pair by a few gradient steps (:func:`regedu.train.instance_optimize`).
Any regedu model works as ``model=`` (VoxelMorph, LightVoxelMorph, PyramidNet, AffineNet, Cascade).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from functools import partial

import torch

from .checks import check_tensor
from .classical import RegistrationResult, demons, register_affine, register_bspline, register_dense
from .classical.common import prepare_pair
from .warps import warp, warp_labels

__all__ = ["register", "METHODS", "LEARNED_METHODS", "DEFAULT_PIPELINE", "DEFAULT_MODELS", "affine_then",
           "register_learned", "register_learned_io"]

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


# ---------------------------------------------------------------------------
# learned methods: a trained network, optionally refined on the pair
# ---------------------------------------------------------------------------

DEFAULT_MODELS = {2: "voxelmorph2d_brain"}  # ndim -> shipped model used when `model=None`


def _model_ndim(model: torch.nn.Module) -> int | None:
    """The image dimensionality a model was built for (its own ``ndim`` or its first stage's)."""
    return next((m.ndim for m in model.modules() if isinstance(getattr(m, "ndim", None), int)), None)


def _default_model(ndim: int, device) -> torch.nn.Module:
    from .models import pretrained

    if ndim not in DEFAULT_MODELS:
        raise ValueError(
            f"regedu ships no pre-trained {ndim}D model (only {', '.join(f'{n}D' for n in DEFAULT_MODELS)}): "
            f"pass `model=` a "
            f"checkpoint trained on {ndim}D images (e.g. from `regedu train --data brain3d --out model.pt`) "
            f"or a module."
        )
    return pretrained(DEFAULT_MODELS[ndim], device=device)


def _network(model, ndim: int, device, input_device: torch.device) -> tuple[torch.nn.Module, str]:
    """The module to run and a name for messages, on ``device`` (default: a module stays where it
    is; a checkpoint is loaded onto the inputs' device)."""
    from .train import load_model

    if model is None:
        network, name = _default_model(ndim, device or input_device), f"the shipped {DEFAULT_MODELS[ndim]}"
    elif isinstance(model, (str, os.PathLike)):
        network, name = load_model(model, device=device or input_device), f"the model in {os.fspath(model)}"
    elif isinstance(model, torch.nn.Module):
        network, name = load_model(model, device=device), f"this {type(model).__name__}"
    else:
        raise TypeError(f"`model` must be a checkpoint path, a torch.nn.Module or None (the shipped 2D "
                        f"model), got {type(model).__name__}.")
    if next(network.parameters(), None) is None:
        raise ValueError(f"{name} has no weights: pass a trained registration network.")
    built_for = _model_ndim(network)
    if built_for is not None and built_for != ndim:
        raise ValueError(
            f"{name} ({type(network).__name__}) registers {built_for}D images but the pair is {ndim}D: "
            f"use a model trained on {ndim}D images (regedu train --data "
            f"{'brain3d' if ndim == 3 else 'brain2d'} ...), or give it {built_for}D images."
        )
    return network, name


def _run_network(moving, fixed, model, device, refine: dict | None) -> RegistrationResult:
    """Forward pass (``refine=None``) or instance optimisation with ``refine`` as its options."""
    from .train import instance_optimize

    moving, fixed, ndim = prepare_pair(moving, fixed)
    network, _ = _network(model, ndim, device, moving.device)
    weight = next(network.parameters())
    moving = moving.to(weight.device)
    inputs = moving.to(weight.dtype), fixed.to(device=weight.device, dtype=weight.dtype)
    was_training = network.training
    network.eval()
    try:
        if refine is None:
            with torch.no_grad():
                warped, disp = network(*inputs)[:2]
        else:
            with torch.enable_grad():
                warped, disp = instance_optimize(network, *inputs, **refine)
    finally:
        network.train(was_training)
    disp = disp.detach().to(moving.dtype)
    warped = warped.detach() if warped.dtype == moving.dtype else warp(moving, disp)
    return RegistrationResult(warped=warped, disp=disp)


def register_learned(moving: torch.Tensor, fixed: torch.Tensor, *, model=None, device=None
                     ) -> RegistrationResult:
    """Register with a trained network: one forward pass.

    Args:
        moving, fixed: floating ``(B, C, *spatial)`` images (2D or 3D) of one spatial shape, in
            [0, 1] like the training images (:func:`regedu.data.normalize_intensity`). Any size
            works: regedu's networks pad to their down-sampling factor internally and crop back.
        model: a checkpoint path (from :func:`regedu.train.train` or ``regedu train``), a module
            whose ``forward(moving, fixed)`` returns ``(warped, disp, ...)``, or ``None`` for the
            shipped 2D brain VoxelMorph (:data:`DEFAULT_MODELS`; there is no shipped 3D model).
        device: where to run; a module given as ``model`` is moved there (in place). ``None``: a
            module stays on its device, a checkpoint is loaded onto the inputs' device.

    Returns:
        :class:`~regedu.classical.RegistrationResult` on the device used: ``disp``
        ``(B, ndim, *spatial)`` in voxels and ``warped = warp(moving, disp)``, both in ``moving``'s
        dtype; ``history`` is empty (there are no iterations), ``affine`` is ``None``.
    """
    return _run_network(moving, fixed, model, device, refine=None)


def register_learned_io(moving: torch.Tensor, fixed: torch.Tensor, *, model=None, device=None,
                        steps: int = 50, lr: float = 0.1, similarity: str = "ncc", weight: float = 1.0,
                        regulariser: str = "diffusion") -> RegistrationResult:
    """:func:`register_learned`, then instance optimisation of the network's field on this pair.

    The field is refined by ``steps`` Adam steps (learning rate ``lr``, in voxels) on
    ``similarity + weight * regulariser`` (:func:`regedu.train.instance_optimize`): a few seconds
    buy back most of what a network trained on other data misses on yours.
    """
    refine = {"steps": steps, "lr": lr, "similarity": similarity, "weight": weight,
              "regulariser": regulariser}
    return _run_network(moving, fixed, model, device, refine=refine)


LEARNED_METHODS = ("voxelmorph", "voxelmorph+io")

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
METHODS["voxelmorph"] = register_learned
METHODS["voxelmorph+io"] = register_learned_io


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
            free-form B-spline deformation; ``"voxelmorph"`` and ``"voxelmorph+io"``: a trained
            network, see :func:`register_learned`) or a function ``f(moving, fixed, **options)``.
        moving_labels: optional integer label map ``(B, 1, *spatial)`` of ``moving``; the
            result's ``warped_labels`` then holds it carried onto the fixed grid.
        **options: the method's options, e.g. ``iterations``, ``lr``, ``levels``,
            ``similarity``, ``regulariser``, ``weight``, ``callback(level, iteration, loss)``,
            ``progress``, ``device``; ``affine_options={...}`` for the affine stage of an
            ``"affine+..."`` pipeline. See each function in :mod:`regedu.classical`. Learned
            methods take ``model=`` (checkpoint path or module) and ``device=``.

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
