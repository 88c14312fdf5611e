"""One entry point for every registration method: ``register(moving, fixed, method=..., **options)``.

``METHODS`` maps a name to a function ``f(moving, fixed, **options) -> RegistrationResult``.
Adding a method (a learned one, say) is one line: ``METHODS["mine"] = my_function``.
Names of the form ``"affine+X"`` run :func:`~regedu.classical.register_affine` first and
then method ``X`` starting from its affine; the default, ``"default"``, is the classical
pipeline that did best in ``benchmarks/classical.py`` (:data:`DEFAULT_PIPELINE`, explained there).

Learned methods (:data:`LEARNED_METHODS`) run a trained network instead of an optimisation:
``"voxelmorph"`` is one forward pass of ``model=`` (a checkpoint path or a module; default the
shipped brain model of the images' dimension, :data:`DEFAULT_MODELS`: a multiscale VoxelMorph,
``PyramidNet``, in 2D and, thinking on a 2x coarser grid, in 3D; the 3D one runs twice, on the pair and its
left-right mirror image, its fields averaged: ``flips``, :data:`DEFAULT_FLIPS`), ``"voxelmorph+io"`` refines
that network's field on the pair by a few gradient steps (:func:`regedu.train.instance_optimize`).
In every name ``+`` means "then, starting from the previous stage's result": ``"affine+bspline"``
is the affine registration, then the B-spline from its affine; ``"voxelmorph+io"`` is the network,
then instance optimisation (io) from its field.

Option names keep one meaning across methods: ``int_steps`` is the number of scaling-and-squaring
steps (``"svf"``), ``steps`` a number of optimiser steps (``"voxelmorph+io"``), ``control_spacing``
the B-spline's control-point spacing in voxels and ``voxel_size`` the image's voxel size in mm. The
older ``steps`` of ``"svf"`` and ``spacing`` of the B-spline still work, with a ``DeprecationWarning``.
Any regedu model works as ``model=`` (VoxelMorph, LightVoxelMorph, PyramidNet, AffineNet, Cascade).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from functools import partial

import torch

from .checks import check_choice, check_device, check_positive_int, check_tensor
from .classical import RegistrationResult, demons, register_affine, register_bspline, register_dense
from .classical.affine import TRANSFORMS
from .classical.bspline import REFINE_ITERATIONS, control_grid_shape
from .classical.common import (
    LR_SCHEDULES,
    check_number,
    per_level,
    prepare_pair,
    pyramid_shapes,
    regulariser_function,
    similarity_function,
)
from .warps import warp, warp_labels

__all__ = ["register", "METHODS", "LEARNED_METHODS", "DEFAULT_PIPELINE", "DEFAULT_MODELS", "DEFAULT_FLIPS",
           "affine_then",
           "register_learned", "register_learned_io", "check_options", "starts_with_affine"]

# given to both stages of an "affine+X" pipeline
SHARED_OPTIONS = ("callback", "progress", "device", "voxel_size")


def _accepts(function: Callable, options: dict, method: str) -> None:
    """Raise ``TypeError`` naming the accepted options if ``function`` would not take ``options``;
    ``method`` names it in the message (e.g. ``"method 'demons'"``)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [name for name, p in parameters.items()
                if p.kind is not inspect.Parameter.VAR_POSITIONAL and name not in ("moving", "fixed")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{method} does not take the option(s) {unknown}; it accepts {accepted}.")


def affine_then(deformable: Callable) -> Callable:
    """A pipeline: :func:`register_affine`, then ``deformable`` started from its affine.

    The pipeline takes ``deformable``'s options, plus ``affine_options`` (a dict) for the
    affine stage. ``callback``, ``progress`` and ``device`` go to both stages; the callback's
    level counts on through the two stages, and ``history`` holds the affine levels first.
    """

    def pipeline(moving: torch.Tensor, fixed: torch.Tensor, affine_options: dict | None = None,
                 **options) -> RegistrationResult:
        shape = tuple(fixed.shape[2:]) if isinstance(fixed, torch.Tensor) and fixed.dim() in (4, 5) else None
        check_options(pipeline, {**options, "affine_options": affine_options}, shape)  # both stages, first
        affine_options = dict(affine_options or {})
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

    pipeline.__name__ = f"affine_then_{getattr(deformable, '__name__', 'deformable')}"
    pipeline.deformable_stage = deformable  # what check_options and starts_with_affine look at
    return pipeline


# ---------------------------------------------------------------------------
# checking a method's options before any work starts
# ---------------------------------------------------------------------------

_NUMBERS = {"lr": True, "weight": False, "sigma_fluid": False, "sigma_diffusion": False,
            "max_step": True, "refine_weight": False}  # option -> must be strictly positive (else >= 0)
_FLAGS = ("diffeomorphic", "symmetric", "match_intensities")
_CHOICES = {"transform": TRANSFORMS, "init": ("com", "identity"), "lr_schedule": LR_SCHEDULES}
_STAGE_NAMES = {  # interface -> how messages name (a method, a pipeline's affine stage, its deformable stage)
    "python": ("method {name!r}", "the affine stage of {name!r} (affine_options)",
               "the deformable stage of {name!r}"),
    "cli": ("--option (method {name})", "--affine-option (the affine stage of {name})",
            "--option (the deformable stage of {name})"),
}


def _stages(function: Callable, options: dict, name: str, interface: str) -> list[tuple[str, Callable, dict]]:
    """``(label, stage function, its options)`` for each stage ``function`` runs.

    A pipeline from :func:`affine_then` has two: :func:`register_affine` with ``affine_options``
    (plus the options shared by both stages), then its deformable method with the rest.
    """
    main, affine, second = (label.format(name=name) for label in _STAGE_NAMES[interface])
    deformable = getattr(function, "deformable_stage", None)
    if deformable is None:
        return [(main, function, dict(options))]
    options = dict(options)
    affine_options = options.pop("affine_options", None) or {}
    if not isinstance(affine_options, dict):
        raise TypeError(f"{affine}: `affine_options` must be a dict of register_affine's options, "
                        f"e.g. {{'levels': 2}}, got {affine_options!r}.")
    shared = {key: options[key] for key in SHARED_OPTIONS if key in options}
    if "affine" in options:
        raise ValueError(f"{main}: an 'affine+...' pipeline computes the affine itself: do not pass "
                         f"`affine=`; to start from your own affine, call the deformable method alone.")
    return [(affine, register_affine, {**shared, **affine_options}), (second, deformable, options)]


def _is_classical(function: Callable) -> bool:
    """Whether ``function`` (or the function a ``partial`` wraps) is one of :mod:`regedu.classical`'s,
    or :func:`register_learned_io`, whose optimisation options are :func:`register_dense`'s."""
    function = getattr(function, "func", function)
    module = getattr(function, "__module__", "") or ""
    return function is register_learned_io or module.startswith("regedu.classical")


def _concrete_iterations(value) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, (list, tuple))


def _check_pyramid(given: dict, defaults: dict, shape) -> None:
    """``levels`` and ``iterations`` as the method will combine them, and the pyramid on ``shape``.

    A default the method adapts by itself (not a number or a list) is left to the method.
    """
    if "levels" not in given and "iterations" not in given:
        return
    if "levels" in given:
        check_positive_int(given["levels"], "levels")
    levels = given.get("levels", defaults.get("levels"))
    iterations = given.get("iterations", defaults.get("iterations"))
    if "iterations" not in given and isinstance(iterations, (list, tuple)) and len(iterations) != levels:
        raise ValueError(f"`levels={levels}` needs `iterations` for {levels} levels (its default, "
                         f"{tuple(iterations)}, has {len(iterations)}): give both, e.g. levels={levels}, "
                         f"iterations={tuple(iterations[-levels:]) if levels <= len(iterations) else 50}.")
    if _concrete_iterations(iterations) and isinstance(levels, int):
        per_level(iterations, levels)
    elif "iterations" in given:
        per_level(iterations, len(iterations) if isinstance(iterations, (list, tuple)) else 1)
    if levels is None and "iterations" in given and isinstance(iterations, (list, tuple)):
        levels = len(iterations)  # a method that chooses its depth takes one level per entry
    if shape is not None and ("levels" in given or isinstance(levels, int) and "iterations" in given):
        pyramid_shapes(shape, levels, given.get("voxel_size"))


def _check_similarity(given: dict, defaults: dict, shape) -> None:
    """The similarity name, and its ``window`` (and a B-spline's ``refine_window``) and ``bins`` tried
    on a tiny image of ``shape``'s dimension."""
    if not {"similarity", "window", "bins", "refine_window"} & set(given):
        return
    similarity = given.get("similarity", defaults.get("similarity", "ncc"))
    bins = given.get("bins", defaults.get("bins", 32))
    windows = [given.get("window", defaults.get("window", 9))]
    if "refine_window" in given or "refine_window" in defaults:
        windows.append(given.get("refine_window", defaults.get("refine_window")))
    losses = [similarity_function(similarity, window, bins) for window in windows]
    if "bins" in given:
        check_positive_int(given["bins"], "bins", minimum=2)
    if shape is not None and not callable(similarity):
        probe = torch.linspace(0.0, 1.0, 4 ** len(shape)).reshape(1, 1, *([4] * len(shape)))
        with torch.no_grad():
            losses[0](probe, probe)
            for loss in losses[1:]:
                try:
                    loss(probe, probe)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"`refine_window`: {error}") from None


def _check_values(given: dict, defaults: dict, shape) -> None:
    """Every value in ``given`` that a classical method checks itself, checked the same way, now."""
    for key, strict in _NUMBERS.items():
        if key in given:
            check_number(given[key], key, strict=strict)
    for key in _FLAGS:
        if key in given and not isinstance(given[key], bool):
            raise ValueError(f"`{key}` must be True or False, got {given[key]!r}.")
    for key, choices in _CHOICES.items():
        if key in given:
            check_choice(given[key], key, choices)
    for key in ("int_steps", "steps", "refine"):  # `steps`: svf's old name of int_steps
        if key in given and not (key == "refine" and given[key] is None):  # refine=None: by dimension
            check_positive_int(given[key], key, minimum=0)
    if "progress" in given and not any(given["progress"] is value for value in (True, False, None)):
        raise ValueError(f"`progress` must be True, False or None (automatic), got {given['progress']!r}.")
    if "regulariser" in given:
        regulariser_function(given["regulariser"])
    for key in ("control_spacing", "spacing"):  # `spacing`: the B-spline's old name of control_spacing
        spacing = given.get(key)
        if spacing is None:
            continue
        if shape is not None:
            try:
                control_grid_shape(shape, spacing)
            except ValueError as error:  # name the option as the user spelt it
                raise ValueError(f"`{key}`: {error}") from None
        elif isinstance(spacing, (int, float)):
            check_number(spacing, key, strict=True)
    _check_pyramid(given, defaults, shape)
    _check_similarity(given, defaults, shape)


def check_options(method, options: dict, shape=None, *, interface: str = "python") -> None:
    """Check every option of ``method``, for every stage it runs, before any work starts.

    :func:`register` calls it first, so a misspelt key or a bad value stops the run at once,
    also one meant for the second stage of a pipeline (which would otherwise surface only
    after the affine stage had run). The values of the classical methods are checked with the
    methods' own rules, and so are the optimisation options of ``"voxelmorph+io"`` (they are
    :func:`register_dense`'s); a learned method's model is checked when it runs.

    Args:
        method: a name from :data:`METHODS` or a function ``f(moving, fixed, **options)``.
        options: the options as they would be passed to :func:`register`, e.g.
            ``{"levels": 2, "affine_options": {"levels": 2}}``.
        shape: the images' spatial shape when known: then the checks that depend on it run too
            (pyramid depth, window and control spacing per axis).
        interface: ``"python"`` or ``"cli"``: whether messages name the options as keyword
            arguments or as the ``regedu`` command's ``--option`` / ``--affine-option``.

    Raises:
        TypeError: an option a stage does not take (the message lists those it does).
        ValueError: a value that stage would refuse, with the stage named.
    """
    check_choice(interface, "interface", list(_STAGE_NAMES))
    function = _method_function(method)
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    shape = None if shape is None else tuple(int(n) for n in shape)
    for label, stage, given in _stages(function, options, name, interface):
        _accepts(stage, given, label)
        if not _is_classical(stage):
            continue
        defaults = {key: p.default for key, p in inspect.signature(stage).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        try:
            _check_values(given, defaults, shape)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{label}: {error}") from None


DEFAULT_PIPELINE = "affine+bspline+dense"
"""The classical default, ``METHODS["default"]``: three stages, each for one scale of motion.

1. :func:`~regedu.classical.register_affine`: the global misalignment (rotation, scale, shear,
   translation), from the centres of mass, on the coarse pyramid levels only.
2. :func:`~regedu.classical.register_bspline`: a cubic B-spline free-form deformation with
   control points 8 voxels (16 mm) apart, coarse to fine: the smooth, large deformations (up to
   about 10 voxels); local NCC over 9 voxels, bending energy (it did not fold on the benchmark
   pairs, though nothing bounds its control points); at most 50, 50, 20 iterations per level in 2D,
   50, 50, 10 in 3D.
3. its ``refine=None`` (at most 30 iterations in 2D, 20 in 3D: ``DEFAULT_REFINE``): a dense
   displacement added to the B-spline's at full resolution
   (:func:`~regedu.classical.refine.refine_dense`); NCC over 5 voxels, a diffusion regulariser and
   a penalty on Jacobian determinants below 0.1: the anatomy that varies over a few voxels, which
   the 8-voxel grid cannot follow.

Every stage stops on convergence, and the pyramid, iterations and control spacing adapt to the
image size and voxel size (see each function). Chosen on the development split of
``benchmarks/heldout.py`` (16 2D pairs made differently from the kit's generator, with fine-scale
deformations; one thread, side by side with ANTs SyNCC, Dice 0.742): stages 1 and 2 alone reach
Dice 0.746; a control spacing halved to 4 voxels on the last level 0.753, a grid refined down to
2 voxels 0.753 and folds; another NCC window per level or weaker bending changed little. The
dense stage reached 0.761 for about 12 % more iterations (0.760 with the Jacobian penalty, which
took folding from 0.006 % to 0), and 0.911 on the first release's pairs (0.908 without it). Its
cost is paid back by :class:`~regedu.classical.local_ncc.LocalNCC`, the NCC of every iteration
computed about twice as fast (the fixed image's local statistics kept, a cumulative-sum box filter).
In 3D (the development volume pair, 96 x 112 x 96, one thread) the 2D schedule reached Dice 0.860;
fewer iterations at full resolution, where one costs eight of the level below (10 for the B-spline's
last level, 20 for the refinement), gave 0.860 in 45 % of the time; dropping the refinement 0.839.
"""
DEFAULT_REFINE = REFINE_ITERATIONS  # iterations (at most) of the default's dense refinement, by dimension


# ---------------------------------------------------------------------------
# learned methods: a trained network, optionally refined on the pair
# ---------------------------------------------------------------------------

# ndim -> the shipped model used when `model=None`
DEFAULT_MODELS = {2: "pyramid2d_brain", 3: "pyramid3d_brain_run5"}
# ndim -> the axes the shipped model's fields are flip-averaged over by "voxelmorph" when `flips=None`
# (regedu.models.FlipAveraged), chosen on the development pairs. 3D (benchmarks/learned3d.py --split
# development): averaging over left-right mirror images (axis 0) took Dice from 0.779 to 0.790 for a second
# forward pass (0.28 -> 0.73 s on 2 threads); mirroring the other axes, which the training brains never
# were, lowered it. 2D (benchmarks/synthmorph.py --seed 11): averaging lowered pyramid2d_brain's T1 -> T1
# Dice (0.842 -> 0.836), so it runs once. "voxelmorph+io" starts from one pass: on the 3D development pair,
# 6 refinement steps from the averaged start reached Dice 0.836, from one pass 0.834, 0.4 s sooner
# (`flips=(0,)` asks for the averaged start).
DEFAULT_FLIPS = {2: (), 3: (0,)}


def _model_ndim(model: torch.nn.Module) -> int | None:
    """The image dimensionality a model was built for (its own ``ndim`` or its first stage's)."""
    return next((m.ndim for m in model.modules() if isinstance(getattr(m, "ndim", None), int)), None)


def _default_model(ndim: int, device) -> torch.nn.Module:
    from .model_cache import cached_model
    from .models import pretrained_path

    if ndim not in DEFAULT_MODELS:
        raise ValueError(
            f"regedu ships no pre-trained {ndim}D model (only {', '.join(f'{n}D' for n in DEFAULT_MODELS)}): "
            f"pass `model=` a "
            f"checkpoint trained on {ndim}D images (e.g. from `regedu train --data brain3d --out model.pt`) "
            f"or a module."
        )
    return cached_model(pretrained_path(DEFAULT_MODELS[ndim]), device=device)


def _network(model, ndim: int, device, input_device: torch.device) -> tuple[torch.nn.Module, str]:
    """The module to run and a name for messages, on ``device`` (default: a module stays where it
    is; a checkpoint is loaded onto the inputs' device, once per version of the file: see
    :mod:`regedu.model_cache`)."""
    from .model_cache import cached_model
    from .train import load_model

    if model is None:
        network, name = _default_model(ndim, device or input_device), f"the shipped {DEFAULT_MODELS[ndim]}"
    elif isinstance(model, (str, os.PathLike)):
        network, name = cached_model(model, device=device or input_device), f"the model in {os.fspath(model)}"
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


def _flip_axes(flips, model, ndim: int, refined: bool) -> tuple[int, ...]:
    """The axes to flip-average over: ``flips`` as given, or for ``None`` the shipped default's
    (:data:`DEFAULT_FLIPS`) when ``model`` is ``None`` and the field is not ``refined``, else none."""
    from .models.flips import check_axes

    if flips is None:
        return DEFAULT_FLIPS[ndim] if model is None and not refined else ()
    return check_axes(flips, ndim, name="flips")


def _run_network(moving, fixed, model, device, refine: dict | None, flips=None) -> RegistrationResult:
    """Forward pass (``refine=None``) or instance optimisation with ``refine`` as its options
    (then the result keeps its loss ``history``), of the network flip-averaged over ``flips``."""
    from .models import FlipAveraged
    from .train import instance_optimize

    moving, fixed, ndim = prepare_pair(moving, fixed)
    check_device(device)
    axes = _flip_axes(flips, model, ndim, refined=refine is not None)
    network, _ = _network(model, ndim, device, moving.device)
    weight = next(network.parameters())
    moving = moving.to(weight.device)
    inputs = moving.to(weight.dtype), fixed.to(device=weight.device, dtype=weight.dtype)
    was_training = network.training
    network.eval()
    predict = FlipAveraged(network, axes) if axes else network
    history = []
    try:
        if refine is None:
            with torch.no_grad():
                warped, disp = predict(*inputs)[:2]
        else:
            with torch.enable_grad():
                refined = instance_optimize(predict, *inputs, **refine)
            warped, disp, history = refined.warped, refined.disp, refined.history
    finally:
        network.train(was_training)
    disp = disp.detach().to(moving.dtype)
    warped = warped.detach() if warped.dtype == moving.dtype else warp(moving, disp)
    return RegistrationResult(warped=warped, disp=disp, history=history)


def register_learned(moving: torch.Tensor, fixed: torch.Tensor, *, model=None, device=None, flips=None
                     ) -> RegistrationResult:
    """Register with a trained network: one forward pass (two for the shipped 3D model, see ``flips``).

    Args:
        moving, fixed: floating ``(B, C, *spatial)`` images (2D or 3D) of one spatial shape, in
            [0, 1] like the training images (:func:`regedu.data.normalize_intensity`). Any size
            works: regedu's networks pad to their down-sampling factor internally and crop back.
        model: a checkpoint path (from :func:`regedu.train.train` or ``regedu train``), a module
            whose ``forward(moving, fixed)`` returns ``(warped, disp, ...)``, or ``None`` for the
            shipped 2D or 3D brain model (:data:`DEFAULT_MODELS`).
            A checkpoint is loaded once and kept, frozen, until the file changes
            (:mod:`regedu.model_cache`), so a loop over pairs pays the load once.
        device: where to run; a module given as ``model`` is moved there (in place). ``None``: a
            module stays on its device, a checkpoint is loaded onto the inputs' device.
        flips: spatial axes along which the pair is also mirrored, the network's fields mapped back
            and averaged (test-time augmentation, :class:`regedu.models.FlipAveraged`:
            ``2 ** len(flips)`` forward passes); ``()`` for one pass. ``None``: the shipped model's
            choice (:data:`DEFAULT_FLIPS`: left-right, axis 0, in 3D; none in 2D) when ``model`` is
            ``None``, and one pass for any other model.

    Returns:
        :class:`~regedu.classical.RegistrationResult` on the device used: ``disp``
        ``(B, ndim, *spatial)`` in voxels and ``warped = warp(moving, disp)``, both in ``moving``'s
        dtype; ``history`` is empty (there are no iterations), ``affine`` is ``None``.
    """
    return _run_network(moving, fixed, model, device, refine=None, flips=flips)


def register_learned_io(moving: torch.Tensor, fixed: torch.Tensor, *, model=None, device=None, flips=None,
                        steps: int = 50, lr: float = 0.1, similarity: str = "ncc", weight: float = 1.0,
                        regulariser: str = "diffusion", callback=None, progress: bool | None = False
                        ) -> RegistrationResult:
    """:func:`register_learned`, then instance optimisation of the network's field on this pair.

    The field is refined by ``steps`` Adam steps (learning rate ``lr``, in voxels) on
    ``similarity + weight * regulariser`` (:func:`regedu.train.instance_optimize`, which is
    :func:`~regedu.classical.register_dense` started from the network's field): a few seconds buy
    back most of what a network trained on other data misses on yours. ``similarity`` and
    ``regulariser`` are names from :data:`regedu.losses.SIMILARITIES` and
    :data:`regedu.losses.REGULARISERS`; ``callback(level, iteration, loss)`` sees every step and
    the result's ``history`` holds their losses (one level); ``progress`` as in the classical methods
    (default: no bar). The network runs in its own dtype (a float64 model refines in float64). The
    refinement starts from one forward pass unless ``flips`` names axes to average over (as in
    :func:`register_learned`; ``None`` is one pass here, also for the shipped 3D model: see
    :data:`DEFAULT_FLIPS`).
    """
    refine = {"steps": steps, "lr": lr, "similarity": similarity, "weight": weight,
              "regulariser": regulariser, "callback": callback, "progress": progress}
    return _run_network(moving, fixed, model, device, refine=refine, flips=flips)


LEARNED_METHODS = ("voxelmorph", "voxelmorph+io")

METHODS: dict[str, Callable] = {
    "rigid": partial(register_affine, transform="rigid"),
    "affine": register_affine,
    "dense": register_dense,
    "svf": partial(register_dense, diffeomorphic=True),
    "bspline": register_bspline,
    "bspline+dense": partial(register_bspline, refine=None),  # the default's deformable stages
    "demons": demons,
    "diffeomorphic_demons": partial(demons, diffeomorphic=True),
}
for _name in ("dense", "svf", "bspline", "bspline+dense", "demons", "diffeomorphic_demons"):
    METHODS[f"affine+{_name}"] = affine_then(METHODS[_name])
METHODS["default"] = METHODS[DEFAULT_PIPELINE]
METHODS["voxelmorph"] = register_learned
METHODS["voxelmorph+io"] = register_learned_io


def starts_with_affine(method) -> bool:
    """Whether ``method`` (a name from :data:`METHODS` or a function) aligns the pair affinely first:
    ``"rigid"``, ``"affine"`` and every ``"affine+..."`` pipeline, ``"default"`` included. Such a
    method needs no rough alignment beforehand."""
    function = _method_function(method)
    return (getattr(function, "deformable_stage", None) is not None
            or getattr(function, "func", function) is register_affine)


def _method_function(method) -> Callable:
    if callable(method):
        return method
    if method not in METHODS:
        raise ValueError(f"unknown registration method {method!r}; choose one of {sorted(METHODS)} "
                         f"(or add yours: regedu.api.METHODS['name'] = function).")
    return METHODS[method]


def _check_moving_labels(labels, moving) -> None:
    """``moving_labels`` must be a label map ``(1 or B, 1, *spatial)`` of ``moving`` with whole-number
    values; checked before the registration, not when its field is applied at the end."""
    if labels is None:
        return
    check_tensor(labels, "moving_labels")
    spatial = tuple(moving.shape[2:]) if isinstance(moving, torch.Tensor) else None
    batch = moving.shape[0] if isinstance(moving, torch.Tensor) and moving.dim() > 0 else 1
    if spatial is not None and (labels.dim() != len(spatial) + 2 or labels.shape[1] != 1
                                or tuple(labels.shape[2:]) != spatial or labels.shape[0] not in (1, batch)):
        raise ValueError(
            f"`moving_labels` must be the label map of `moving`, shape (1 or {batch}, 1, "
            f"{', '.join(map(str, spatial))}), got {tuple(labels.shape)}. Give the labels on the moving "
            f"image's grid, with one channel (a single map: labels[None, None])."
        )
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        bad = labels[labels != labels.round()]
        raise ValueError(
            f"`moving_labels` holds {bad.numel()} values that are not whole numbers (e.g. "
            f"{float(bad[0]):g}), so it is not a label map: labels resampled with linear interpolation mix "
            f"neighbouring labels. "
            f"Resample label maps with nearest neighbour (regedu.warps.warp_labels), or pass integers."
        )


def register(moving: torch.Tensor, fixed: torch.Tensor, method="default", *,
             moving_labels: torch.Tensor | None = None, **options) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` with any method, classical or learned.

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images (2D or 3D), same spatial shape.
        method: a name from :data:`METHODS` (``"default"`` = ``"affine+bspline+dense"``: affine,
            a free-form B-spline deformation, then a dense refinement at full resolution, see
            :data:`DEFAULT_PIPELINE`; ``"voxelmorph"`` and ``"voxelmorph+io"``: a trained
            network, see :func:`register_learned`) or a function ``f(moving, fixed, **options)``.
        moving_labels: optional label map ``(B, 1, *spatial)`` of ``moving`` (batch 1 or
            ``moving``'s, ``moving``'s spatial shape, checked before any work): an integer
            tensor, or a floating one whose values are all whole numbers (as nibabel's
            ``get_fdata`` reads label files); other floats (labels resampled with linear
            interpolation) are refused. The result's ``warped_labels`` then holds it carried
            onto the fixed grid, in its own dtype.
        **options: the method's options, e.g. ``iterations``, ``lr``, ``levels``,
            ``similarity``, ``regulariser``, ``weight``, ``callback(level, iteration, loss)``,
            ``progress``, ``device``; ``affine_options={...}`` for the affine stage of an
            ``"affine+..."`` pipeline. See each function in :mod:`regedu.classical`. Learned
            methods take ``model=`` (checkpoint path or module) and ``device=``. All are
            checked (:func:`check_options`) before any work starts.

    Returns:
        :class:`~regedu.classical.RegistrationResult`: ``warped``, the total ``disp`` (affine
        included: ``warp(moving, disp)`` is ``warped``), ``affine`` (or ``None``), ``history``
        (loss per iteration per level), ``seconds``, ``method``.
    """
    function = _method_function(method)
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    shape = tuple(fixed.shape[2:]) if isinstance(fixed, torch.Tensor) and fixed.dim() in (4, 5) else None
    check_options(method, options, shape)  # every stage's options, before any work
    check_device(options.get("device"))
    _check_moving_labels(moving_labels, moving)
    start = time.perf_counter()
    result = function(moving, fixed, **options)
    if moving_labels is not None:
        result.warped_labels = warp_labels(moving_labels.to(result.disp.device), result.disp)
    result.seconds = time.perf_counter() - start
    result.method = name
    return result
