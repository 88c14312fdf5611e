"""What every classical (per-pair, iterative) method shares.

* :class:`RegistrationResult`, the one result type of every method (from :mod:`regedu.result`);
* :func:`prepare_pair`, the input checks of a ``(moving, fixed)`` pair;
* :func:`plan_pyramid` (with :func:`auto_pyramid` and :func:`pyramid_shapes`) and
  :func:`downsample`, the resolution pyramid, its depth and iterations chosen from the image
  (size and voxel size) unless given;
* :func:`rescale_min_max`, intensities to ``[0, 1]`` for the losses;
* :func:`gaussian_smooth`, separable Gaussian smoothing of images and fields (from :mod:`regedu.filters`);
* :func:`similarity_function`, from a name (``"ncc"``...) to a loss;
* :func:`affine_on_grid` and :func:`after_affine` (from :mod:`regedu.kernels`), to start a
  deformable registration from an affine one;
* :func:`optimise_level`, one level of gradient descent with Adam, which
  records the loss, calls the callback, moves the progress bar, stops on
  convergence when asked (:func:`converged`) and stops a run that diverges.

The pyramid driver that strings these together for a method, level by level, is
:class:`~regedu.classical.pyramid.PyramidRun`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import losses
from ..checks import (
    check_batch,
    check_device,
    check_finite,
    check_floating,
    check_image,
    check_number,
    check_positive_int,
    check_precision,
    check_same_shape,
    check_tensor,
)
from ..deprecation import renamed_function
from ..filters import gaussian_smooth  # its home is regedu.filters; re-exported here
from ..kernels import after_affine, resample  # after_affine's home is regedu.kernels; re-exported here
from ..result import RegistrationResult  # its home; re-exported here and by regedu.classical
from .local_ncc import LocalNCC

__all__ = [
    "RegistrationResult",
    "prepare_pair",
    "rescale_min_max",
    "normalise_intensities",
    "pyramid_shapes",
    "auto_pyramid",
    "plan_pyramid",
    "check_voxel_size",
    "downsample",
    "gaussian_smooth",
    "similarity_function",
    "regulariser_function",
    "affine_on_grid",
    "after_affine",
    "optimise_level",
    "converged",
    "convergence_tolerance",
    "warp_in_loop",
    "per_level",
    "check_number",
    "check_initial_affine",
    "progress_bar",
]

Callback = Callable[[int, int, float], None]

SIMILARITIES = losses.SIMILARITIES  # the one registry (regedu.losses), under its old names here
REGULARISERS = losses.REGULARISERS

MIN_LEVEL_SIZE = 8  # the coarsest pyramid level keeps at least this many voxels per axis
COARSEST_SIZE = 32  # an automatic pyramid coarsens until its largest axis has at most this many voxels
MAX_LEVELS = 6  # ... or until it has this many levels
CONVERGENCE_WINDOW = 10  # iterations over which the relative loss change is measured
CONVERGENCE_TOLERANCE = 1e-4  # relative loss change over the window that counts as converged
LR_SCHEDULES = ("cosine", "constant")  # step size over a level: decaying to lr / 10, or lr throughout


# ---------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------


def _check_contrast(image: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if an item of ``image`` has one value everywhere (e.g. all zeros)."""
    flat = image.reshape(image.shape[0], -1)
    value_range = flat.amax(dim=1) - flat.amin(dim=1)
    flat_items = torch.nonzero(value_range <= 0).flatten().tolist()
    if flat_items:
        item = flat_items[0]
        raise ValueError(
            f"`{name}` item {item} has the same value ({float(flat[item, 0]):g}) at every voxel: "
            f"there is nothing to align. Check that the image was loaded correctly (not empty, "
            f"not all zeros) before registering it."
        )


def prepare_pair(moving, fixed, device=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Check a ``(moving, fixed)`` pair and move it to ``device``; return ``(moving, fixed, ndim)``.

    Both must be floating ``(B, C, *spatial)`` batches of the same dimension (2D or 3D),
    spatial shape and channels, finite, with some contrast; a batch of 1 broadcasts
    against the other. float16 and bfloat16 are refused (cast to float32). ``device=None``
    keeps the inputs where they are (``fixed`` follows ``moving``); a device this machine
    lacks is refused. The dtype is ``moving``'s; both come back detached (an input that
    requires grad is read, never optimised).
    """
    check_tensor(moving, "moving")
    check_tensor(fixed, "fixed")
    ndim = check_image(moving, "moving")
    check_image(fixed, "fixed", ndim=ndim)
    check_floating(moving, "moving")
    check_floating(fixed, "fixed")
    check_same_shape(moving, fixed, "moving", "fixed")
    check_batch(moving, fixed, "moving", "fixed")
    if moving.shape[1] != fixed.shape[1]:
        raise ValueError(
            f"`moving` has {moving.shape[1]} channels but `fixed` has {fixed.shape[1]}. Give both "
            f"the same channels, e.g. select one with x[:, :1]."
        )
    check_precision(moving, "moving")
    check_precision(fixed, "fixed")
    device = moving.device if device is None else check_device(device)
    moving = moving.detach().to(device)  # the images are data, never optimised: no autograd history
    fixed = fixed.detach().to(device=device, dtype=moving.dtype)
    for image, name in ((moving, "moving"), (fixed, "fixed")):
        check_finite(image, name)
        _check_contrast(image, name)
    return moving, fixed, ndim


def check_initial_affine(affine, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor | None:
    """Validate the ``affine=`` option of a deformable method: ``None`` or ``(B, ndim, ndim + 1)``.

    ``moving`` and ``fixed`` are the checked pair. Returns the affine on ``moving``'s device and
    dtype, detached (a deformable method does not optimise it further).
    """
    if affine is None:
        return None
    ndim = moving.dim() - 2
    expected = (ndim, ndim + 1)
    if not isinstance(affine, torch.Tensor) or affine.dim() != 3 or tuple(affine.shape[1:]) != expected:
        got = tuple(affine.shape) if isinstance(affine, torch.Tensor) else type(affine).__name__
        raise ValueError(
            f"`affine` must be a (B, {ndim}, {ndim + 1}) matrix on voxel indices of the fixed grid "
            f"(e.g. register_affine(...).affine), got {got}."
        )
    batch = max(moving.shape[0], fixed.shape[0])
    check_batch(affine, moving.expand(batch, *moving.shape[1:]), "affine", "the image pair")
    return affine.detach().to(device=moving.device, dtype=moving.dtype)


def per_level(iterations, levels: int) -> list[int]:
    """Iterations per pyramid level, coarse to fine.

    ``iterations`` is one int for every level, or a sequence of ``levels`` ints
    (``0`` skips a level) with at least one iteration in all.
    """
    levels = check_positive_int(levels, "levels")
    if isinstance(iterations, int) and not isinstance(iterations, bool):
        return [check_positive_int(iterations, "iterations")] * levels
    if not isinstance(iterations, Sequence) or len(iterations) != levels:
        raise ValueError(
            f"`iterations` must be one int or a list of {levels} ints (one per pyramid level, "
            f"coarse to fine), got {iterations!r}."
        )
    counts = [check_positive_int(n, "iterations per level", minimum=0) for n in iterations]
    if sum(counts) == 0:
        raise ValueError(f"`iterations` must contain at least one iteration, got {iterations!r}.")
    return counts


# ---------------------------------------------------------------------------
# intensities, smoothing and the pyramid
# ---------------------------------------------------------------------------


def rescale_min_max(image: torch.Tensor) -> torch.Tensor:
    """Rescale each batch item linearly to ``[0, 1]``: its minimum (over channels and voxels) to 0,
    its maximum to 1. No clipping: compare :func:`regedu.data.rescale_percentiles`.

    Losses and learning rates then mean the same thing whatever the scanner's units.
    """
    dims = tuple(range(1, image.dim()))
    low = image.amin(dim=dims, keepdim=True)
    high = image.amax(dim=dims, keepdim=True)
    return (image - low) / (high - low)


normalise_intensities = renamed_function(rescale_min_max, "normalise_intensities")


def check_voxel_size(voxel_size, ndim: int) -> tuple[float, ...]:
    """``voxel_size`` (mm per spatial axis, e.g. a NIfTI volume's ``spacing``) as ``ndim`` positive
    floats; ``None`` means isotropic voxels, ``(1.0,) * ndim``."""
    if voxel_size is None:
        return (1.0,) * ndim
    try:
        values = [float(v) for v in voxel_size]
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != ndim:
        raise ValueError(
            f"`voxel_size` must give {ndim} numbers (mm per spatial axis, in tensor order, e.g. a loaded "
            f"volume's .spacing) or be None for isotropic voxels, got {voxel_size!r}."
        )
    return tuple(check_number(v, "voxel_size", strict=True) for v in values)


def _coarsened(shape: Sequence[int], sizes: Sequence[float], k: int, clamp: bool) -> tuple[int, ...]:
    """Shape ``k`` halvings above ``shape``: voxels of about ``min(sizes) * 2**k`` on every axis.

    An axis whose voxels are already at least that size keeps its length (anisotropic images
    are coarsened along their fine axes first); the others shrink by ``target / size``, keeping
    the first and last voxel centres in place: ``n -> ceil((n - 1) / factor) + 1``. With
    ``clamp``, no axis drops below ``MIN_LEVEL_SIZE`` voxels (or its own length if shorter).
    """
    target = min(sizes) * 2**k
    level = []
    for n, size in zip(shape, sizes, strict=True):
        factor = max(1.0, target / size)
        m = math.ceil((n - 1) / factor - 1e-9) + 1
        level.append(max(m, min(n, MIN_LEVEL_SIZE)) if clamp else m)
    return tuple(level)


def pyramid_shapes(shape: Sequence[int], levels: int, voxel_size=None) -> list[tuple[int, ...]]:
    """Spatial shape of each pyramid level, coarse to fine; the last is ``shape``.

    Each level halves the voxel count along every axis, keeping the first and
    last voxel centres in place (align_corners): ``n -> ceil((n - 1) / 2**k) + 1``.
    With ``voxel_size`` (mm per axis), each level doubles the *smallest* voxel size and an
    axis whose voxels are already that large is left alone (see :func:`_coarsened`).
    ``levels`` is what the caller asked for: a level smaller than ``MIN_LEVEL_SIZE`` voxels
    on an axis is an error, not silently dropped (:func:`auto_pyramid` chooses instead).
    """
    levels = check_positive_int(levels, "levels")
    sizes = check_voxel_size(voxel_size, len(shape))
    shapes = []
    for k in reversed(range(levels)):
        level_shape = _coarsened(shape, sizes, k, clamp=False)
        if k > 0 and min(level_shape) < MIN_LEVEL_SIZE:
            raise ValueError(
                f"`levels={levels}` shrinks the image {tuple(shape)} to {level_shape} at the "
                f"coarsest level; keep at least {MIN_LEVEL_SIZE} voxels per axis: use fewer levels "
                f"(or leave `levels` unset to let the method choose)."
            )
        shapes.append(level_shape)
    return shapes


def auto_pyramid(shape: Sequence[int], voxel_size=None) -> list[tuple[int, ...]]:
    """A pyramid chosen from the image: level shapes, coarse to fine; the last is ``shape``.

    Levels are added (each doubling the smallest voxel size, as in :func:`pyramid_shapes`)
    until the coarsest level's largest axis has at most ``COARSEST_SIZE`` (32) voxels, up to
    ``MAX_LEVELS``; no axis drops below ``MIN_LEVEL_SIZE`` (8) voxels, and a level that would
    change nothing is not added. So a 2 mm brain (96 x 112 x 96) gets the 3 levels the defaults
    were tuned with (coarsest 25 x 29 x 25), a 1 mm brain 4 with the same coarsest level, a
    33 x 41 x 25 volume 2 (coarsest 17 x 21 x 13), and a 1 x 1 x 3 mm volume is first coarsened
    in-plane only, until its voxels are about as large as the thick slices.
    """
    sizes = check_voxel_size(voxel_size, len(shape))
    levels = 1
    while levels < MAX_LEVELS:
        coarsest = _coarsened(shape, sizes, levels - 1, clamp=True)
        coarser = _coarsened(shape, sizes, levels, clamp=True)
        if max(coarsest) <= COARSEST_SIZE or coarser == coarsest:
            break
        levels += 1
    return [_coarsened(shape, sizes, k, clamp=True) for k in reversed(range(levels))]


def _default_counts(schedule: Sequence[int], levels: int) -> list[int]:
    """A method's default iterations for ``levels`` levels, from its tuned ``schedule`` (coarse first).

    The schedule is anchored at the coarsest level, whose voxel size :func:`auto_pyramid` keeps
    about the same for every image: fewer levels drop entries at the fine end, more levels repeat
    the last entry.
    """
    return [schedule[min(k, len(schedule) - 1)] for k in range(levels)]


def plan_pyramid(shape: Sequence[int], levels, iterations, schedule: Sequence[int],
                 voxel_size=None) -> tuple[list[tuple[int, ...]], list[int], bool]:
    """Level shapes (coarse to fine) and iterations per level for a method's options.

    Args:
        shape: the image's spatial shape.
        levels: ``None`` (chosen from the image by :func:`auto_pyramid`; or, when
            ``iterations`` is a list, as many levels as it has entries) or an int (exactly that
            many, refused if the image is too small: :func:`pyramid_shapes`).
        iterations: ``None`` (the method's tuned ``schedule``, adapted to the number of levels by
            :func:`_default_counts`), one int for every level, or one int per level.
        schedule: the method's default iterations per level, coarse to fine.
        voxel_size: mm per axis, or ``None`` for isotropic voxels.

    Returns:
        ``(shapes, counts, automatic)``; ``automatic`` is True when the iteration counts are the
        default ones, which are maximum counts (the levels stop on convergence), not exact ones.
    """
    if levels is None and isinstance(iterations, Sequence) and not isinstance(iterations, str):
        levels = len(iterations)
    if levels is None:
        shapes = auto_pyramid(shape, voxel_size)
    else:
        shapes = pyramid_shapes(shape, levels, voxel_size)
    if iterations is None:
        return shapes, _default_counts(schedule, len(shapes)), True
    return shapes, per_level(iterations, len(shapes)), False


def downsample(image: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Image ``(B, C, *spatial)`` on a coarser grid ``shape``: Gaussian smoothing, then linear
    interpolation (align_corners). The smoothing width is half the shrink factor, which keeps
    detail finer than the new voxels from aliasing."""
    spatial = image.shape[2:]
    if tuple(spatial) == tuple(shape):
        return image
    factors = [(n - 1) / max(m - 1, 1) for n, m in zip(spatial, shape, strict=True)]
    smoothed = gaussian_smooth(image, [f / 2 if f > 1 else 0.0 for f in factors])
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(smoothed, size=tuple(shape), mode=mode, align_corners=True)


# ---------------------------------------------------------------------------
# similarity and regularisation
# ---------------------------------------------------------------------------


def similarity_function(similarity, window=9, bins: int = 32) -> Callable:
    """Turn ``similarity`` into a loss ``f(fixed, warped)`` to minimise.

    ``similarity`` is a name from the one registry, :data:`regedu.losses.SIMILARITIES`
    (``"mse"``, ``"ncc"`` with ``window``, ``"global_ncc"``, ``"mi"`` with ``bins``, ``"ngf"``), looked
    up by :func:`regedu.losses.similarity`, or a callable ``f(fixed, warped) -> scalar`` used as it
    is. ``"ncc"`` becomes a :class:`~regedu.classical.local_ncc.LocalNCC`: the value of
    :func:`regedu.losses.ncc`, about twice as fast in a loop with one fixed image.
    """
    loss = losses.similarity(similarity, window=window, bins=bins)
    if isinstance(similarity, str) and losses.SIMILARITIES[similarity] is losses.ncc:
        return LocalNCC(window)  # the same value, faster in a loop
    return loss


def regulariser_function(regulariser) -> Callable:
    """Turn ``regulariser`` (a name from :data:`regedu.losses.REGULARISERS`, ``"diffusion"`` or
    ``"bending"``, or a callable ``f(disp)``) into a loss: :func:`regedu.losses.regulariser`."""
    return losses.regulariser(regulariser)


# ---------------------------------------------------------------------------
# starting a deformable registration from an affine one
# ---------------------------------------------------------------------------


def affine_on_grid(A: torch.Tensor, shape: Sequence[int], new_shape: Sequence[int]) -> torch.Tensor:
    """The affine ``A`` (voxel indices of a grid ``shape``) expressed on a grid ``new_shape``.

    Both grids cover the same extent with the first and last voxel centres in place,
    so index ``x`` on ``shape`` is index ``s * x`` on ``new_shape``, with
    ``s = (m - 1) / (n - 1)`` per axis. Hence ``M' = S M S^-1`` and ``t' = S t``.
    """
    ndim = A.shape[1]
    scale = torch.tensor([(m - 1) / (n - 1) for n, m in zip(shape, new_shape, strict=True)],
                         device=A.device, dtype=A.dtype)
    linear = scale.view(-1, 1) * A[:, :, :ndim] / scale.view(1, -1)
    return torch.cat([linear, scale.view(-1, 1) * A[:, :, ndim:]], dim=-1)


def warp_in_loop(image: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """:func:`regedu.warps.warp` (bilinear, border padding) for loops that warp at every iteration.

    The inputs were checked once on entry, so only the field's finiteness is checked here,
    and a field that turned NaN or infinite raises ``FloatingPointError`` (a diverging run,
    reported with its cause by :func:`optimise_level`), never reaches ``grid_sample``:
    its backward pass can crash the process on NaN coordinates.
    """
    if not bool(torch.isfinite(disp).all()):
        raise FloatingPointError("the displacement field became NaN or infinite")
    return resample(image, disp.to(image.dtype))


# ---------------------------------------------------------------------------
# gradient descent, one pyramid level at a time
# ---------------------------------------------------------------------------


def progress_bar(total: int, progress: bool | None, description: str):
    """A tqdm bar over ``total`` iterations.

    ``progress=True`` shows it at once, ``False`` never, ``None`` only if the run
    lasts longer than 2 seconds (tqdm's ``delay``).
    """
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"`progress` must be True, False or None (automatic), got {progress!r}.")
    return tqdm(total=total, desc=description, disable=progress is False,
                delay=2.0 if progress is None else 0.0, leave=progress is True)


def _divergence_error(what: str, level: int, iteration: int, lr: float) -> FloatingPointError:
    return FloatingPointError(
        f"The optimisation diverged: {what} at pyramid level {level}, "
        f"iteration {iteration}. The learning rate lr={lr:g} is probably too large: "
        f"try lr={lr / 10:g}."
    )


def _adam(parameters: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam, with its fused implementation (one kernel for all the updates) where this torch has one."""
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # older torch: fused Adam is CUDA-only
        return torch.optim.Adam(parameters, lr=lr)


def _step_size(lr: float, iteration: int, iterations: int, warmup: int, lr_schedule: str = "cosine") -> float:
    """Learning rate at ``iteration`` of ``iterations``: a cosine from ``lr`` down to ``lr / 10``
    (``lr_schedule="cosine"``) or ``lr`` throughout (``"constant"``), times a linear ramp
    ``(iteration + 1) / (warmup + 1)`` over the first ``warmup`` iterations."""
    ramp = min(1.0, (iteration + 1) / (warmup + 1))
    if lr_schedule == "constant":
        return lr * ramp
    progress = iteration / max(iterations - 1, 1)
    return lr * ramp * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def converged(history: Sequence[float], tolerance: float, window: int = CONVERGENCE_WINDOW) -> bool:
    """Whether the loss stopped improving: its mean over the last ``window`` iterations is lower
    than over the ``window`` before by less than ``tolerance`` times its magnitude (``tolerance <= 0``:
    never). Means, not single values: Adam's early steps make the loss oscillate, and a value that
    happens to sit above the one ``window`` steps before does not mean the level is done. Needs
    ``2 * window`` losses, so a level runs at least that long (or its full count when shorter)."""
    if tolerance <= 0 or len(history) < 2 * window:
        return False
    before = sum(history[-2 * window:-window]) / window
    now = sum(history[-window:]) / window
    return before - now <= tolerance * max(abs(before), 1e-12)


def convergence_tolerance(tolerance, automatic: bool) -> float:
    """The tolerance a level stops at (:func:`converged`): ``tolerance`` if given (a number >= 0),
    else ``CONVERGENCE_TOLERANCE`` for a method's default iteration counts (``automatic``: they
    are maximum counts) and 0 (run every iteration) for counts the caller chose."""
    if tolerance is None:
        return CONVERGENCE_TOLERANCE if automatic else 0.0
    return check_number(tolerance, "tolerance")


def optimise_level(loss_function: Callable[[], torch.Tensor], parameters: list[torch.Tensor],
                   iterations: int, lr: float, level: int, callback: Callback | None, bar, *,
                   warmup: int = 0, tolerance: float = 0.0, reported_lr: float | None = None,
                   lr_schedule: str = "cosine") -> list[float]:
    """Minimise ``loss_function()`` over ``parameters`` with Adam; return the loss per iteration.

    Adam scales every step to about ``lr`` in each parameter's own units, so ``lr`` reads
    as "how far a parameter may move per iteration". The step size follows a cosine from
    ``lr`` down to ``lr / 10`` over the level, so the parameters settle instead of jittering
    by ``lr`` around the optimum; ``lr_schedule="constant"`` keeps ``lr`` (for a few steps from a
    good start, which a decay would only shorten). ``warmup > 0`` ramps it up linearly over the
    first ``warmup`` iterations: Adam restarts on every level with empty moment estimates, and its
    first steps are then about ``lr`` long whatever the gradient, enough to throw a solution that a
    coarser level had converged to out of its basin; the ramp lets the moments learn that the
    gradient is small (or noisy) first. With ``tolerance > 0`` the level stops early once the loss has
    converged (:func:`converged`); the bar still advances by the whole level. After each step
    ``callback(level, iteration, loss)`` is called and the bar advances. A NaN or infinite loss
    or parameter stops the run with a ``FloatingPointError`` instead of returning garbage; its
    message names ``reported_lr`` (the user's option, when ``lr`` was scaled for this level).
    """
    reported_lr = lr if reported_lr is None else reported_lr
    optimizer = _adam(parameters, lr)
    history = []
    for iteration in range(iterations):
        optimizer.param_groups[0]["lr"] = _step_size(lr, iteration, iterations, warmup, lr_schedule)
        optimizer.zero_grad(set_to_none=True)
        try:
            loss = loss_function()
        except FloatingPointError as error:
            raise _divergence_error(str(error), level, iteration, reported_lr) from error
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _divergence_error("the loss became NaN or infinite", level, iteration, reported_lr)
        loss.backward()
        optimizer.step()
        if not all(bool(torch.isfinite(p).all()) for p in parameters):
            raise _divergence_error("a parameter became NaN or infinite", level, iteration, reported_lr)
        history.append(value)
        if callback is not None:
            callback(level, iteration, value)
        bar.update()
        if converged(history, tolerance):
            bar.update(iterations - iteration - 1)
            break
    return history
