"""Running one registration method on a loaded pair, as ``register``, ``evaluate`` and ``demo`` do.

Options are checked before anything is loaded (:func:`method_options`), the pair is loaded by
:func:`regedu.data.load_pair`, and :func:`run_method` calls :func:`regedu.register` within a check
that it fits in memory. The measures printed (mean Dice, mean HD95, folding) are defined here once.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from .common import CommandError, note, warn

__all__ = ["RESERVED_OPTIONS", "method_options", "check_options", "check_method", "load_network", "load_pair",
           "header_voxel_size", "run_method", "memory_advice", "mean_dice", "mean_hd95", "folding_percent"]

RESERVED_OPTIONS = {"device": "--device", "model": "--model", "moving_labels": "--labels",
                    "progress": None, "callback": None}  # set by the command itself


def method_options(args) -> dict:
    """``--option`` and ``--affine-option`` as :func:`regedu.register`'s options, all checked now,
    before anything is loaded (:func:`regedu.api.check_options`)."""
    from ..api import METHODS

    options, affine = dict(args.option), dict(args.affine_option)
    for key in [*options, *affine]:
        if key in RESERVED_OPTIONS:
            flag = RESERVED_OPTIONS[key]
            raise CommandError(f"{key} is set by the command itself, not by --option"
                               + (f": use {flag}." if flag else "."))
    if affine:
        if getattr(METHODS[args.method], "deformable_stage", None) is None:
            raise CommandError(f"--affine-option sets the affine stage of default and the other affine+... "
                               f"methods; --method {args.method} has none: give its options with --option.")
        options["affine_options"] = {**dict(options.get("affine_options") or {}), **affine}
    check_options(args.method, options)
    return options


def check_options(method: str, options: dict, shape=None) -> None:
    """:func:`regedu.api.check_options` in the command's words; ``shape`` adds the size-dependent checks.
    A wrong type here is the user's (``--option iterations=ten``), so it is a :class:`CommandError`."""
    from ..api import check_options as check

    try:
        check(method, options, shape, interface="cli")
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from None


def check_method(method: str, model) -> bool:
    """Raise for an unknown method or ``--model`` with a classical one; return True if learned."""
    from ..api import LEARNED_METHODS, METHODS

    if method not in METHODS:
        raise CommandError(f"unknown --method {method!r}; choose one of {', '.join(sorted(METHODS))}.")
    learned = method in LEARNED_METHODS
    if model is not None and not learned:
        raise CommandError(f"--model is for the learned methods ({', '.join(LEARNED_METHODS)}), but --method "
                           f"{method} is classical: drop --model, or use --method voxelmorph.")
    return learned


def load_network(model_path, device: torch.device):
    """The checkpoint in ``--model`` loaded once (``None``: the method's default, loaded by it)."""
    from ..models.checkpoint import load_model

    return None if model_path is None else load_model(model_path, device=device)


def load_pair(moving_path, fixed_path, moving_labels_path=None, fixed_labels_path=None,
              normalize: bool = True, warn=warn, method: str | None = None):
    """:func:`regedu.data.load_pair` with the command's advice, warnings (``warn``) and notes."""
    from ..data.pairs import load_pair as load

    return load(moving_path, fixed_path, moving_labels_path, fixed_labels_path, normalize=normalize,
                method=method, interface="cli", warn=warn, note=note)


def header_voxel_size(method: str, options: dict, pair) -> dict:
    """``options`` plus ``voxel_size=pair.voxel_size`` (the fixed header's voxel size, mm per axis in
    tensor order) when the method takes a voxel size and ``--option voxel_size=...`` did not set one.

    Every classical method takes it (for ``affine+...`` pipelines, both stages): it shapes the
    automatic pyramid (anisotropic volumes are coarsened along their fine axes first) and the
    B-spline's default control spacing (16 mm). Learned methods do not take it."""
    from ..api import METHODS

    function = METHODS[method]
    stage = getattr(function, "deformable_stage", function)  # a pipeline shares it with both stages
    if "voxel_size" in options or "voxel_size" not in inspect.signature(stage).parameters:
        return options
    return {**options, "voxel_size": tuple(float(size) for size in pair.voxel_size)}


def run_method(pair, method: str, learned: bool, network, device: torch.device, options: dict,
               progress: bool | None):
    """:func:`regedu.register` on a :class:`regedu.data.NiftiPair`; the result on the CPU,
    ``warped_labels`` made from the original moving labels by :func:`regedu.data.warp_moving`.
    A classical method gets the fixed header's voxel size (:func:`header_voxel_size`)."""
    from ..api import register
    from ..data.pairs import warp_moving

    options = header_voxel_size(method, options, pair)
    check_options(method, options, tuple(pair.fixed.shape[2:]))  # the checks that need the size
    extra = {"model": network} if learned else {"progress": progress}
    with memory_advice(tuple(pair.fixed.shape[2:]), pair.fixed.shape[1], device, learned):
        result = register(pair.moving, pair.fixed, method=method, device=device, **extra, **options)
    result.disp = result.disp.cpu()
    result.warped = result.warped.cpu()
    result.warped_labels = warp_moving(pair, result.disp, labels=True)  # from the original labels, once
    return result


@contextlib.contextmanager
def memory_advice(shape: tuple[int, ...], channels: int, device: torch.device, learned: bool):
    """Refuse up front a registration that will not fit in memory (:func:`regedu.memory.check_fits`),
    and turn an allocator failure during it into the same advice: crop or downsample, by how much."""
    from ..memory import NotEnoughMemory, available_bytes, check_fits, is_out_of_memory, registration_bytes
    from ..memory import not_enough_memory_message as advice

    try:
        check_fits(shape, "this pair", device, channels=channels, learned=learned)
        yield
    except NotEnoughMemory as error:
        raise CommandError(str(error)) from None
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        needed = registration_bytes(shape, channels, learned)
        raise CommandError(advice(shape, "this pair", needed, available_bytes(device), device)
                           + " (the allocator ran out of memory during the registration)") from None


def mean_dice(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    """Mean Dice over the labels of two label maps of one pair (:func:`regedu.metrics.mean_dice`);
    ``None`` when one is missing."""
    from ..metrics import mean_dice as mean_dice_per_item

    if a is None or b is None:
        return None
    return float(mean_dice_per_item(a, b).mean())


def mean_hd95(a: torch.Tensor | None, b: torch.Tensor | None, voxel_size) -> float | None:
    """Mean HD95 (mm, with ``voxel_size`` in mm) over the labels in either map; ``inf`` when a label
    is missing from one."""
    from ..metrics import hd95

    if a is None or b is None:
        return None
    return float(torch.nanmean(hd95(a, b, voxel_size=voxel_size)))


def folding_percent(disp: torch.Tensor) -> float:
    """Percentage of voxels where the field folds (det J <= 0)."""
    from ..metrics import folding_fraction

    return 100.0 * float(folding_fraction(disp.float()).mean())
