"""What every classical (per-pair, iterative) method shares.

* :class:`RegistrationResult`, the one result type of every method;
* :func:`prepare_pair`, the input checks of a ``(moving, fixed)`` pair;
* :func:`pyramid_shapes` and :func:`downsample`, the resolution pyramid;
* :func:`gaussian_smooth`, separable Gaussian smoothing of images and fields;
* :func:`similarity_function`, from a name (``"ncc"``...) to a loss;
* :func:`affine_on_grid` and :func:`after_affine`, to start a deformable
  registration from an affine one;
* :func:`optimise_level`, one level of gradient descent with Adam, which
  records the loss, calls the callback, moves the progress bar and stops a
  run that diverges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import losses
from ..checks import (
    check_batch,
    check_choice,
    check_finite,
    check_floating,
    check_image,
    check_positive_int,
    check_same_shape,
    check_tensor,
)
from ..warps import _resample, affine_to_disp

__all__ = [
    "RegistrationResult",
    "prepare_pair",
    "normalise_intensities",
    "pyramid_shapes",
    "downsample",
    "gaussian_smooth",
    "similarity_function",
    "regulariser_function",
    "affine_on_grid",
    "after_affine",
    "optimise_level",
    "warp_in_loop",
    "per_level",
    "check_number",
    "check_initial_affine",
    "progress_bar",
]

Callback = Callable[[int, int, float], None]

SIMILARITIES = {
    "mse": lambda fixed, warped, window, bins: losses.mse(fixed, warped),
    "ncc": lambda fixed, warped, window, bins: losses.ncc(fixed, warped, window=window),
    "global_ncc": lambda fixed, warped, window, bins: losses.global_ncc(fixed, warped),
    "mi": lambda fixed, warped, window, bins: losses.mi(fixed, warped, bins=bins),
    "ngf": lambda fixed, warped, window, bins: losses.ngf(fixed, warped),
}
REGULARISERS = {"diffusion": losses.diffusion, "bending": losses.bending}

MIN_LEVEL_SIZE = 8  # the coarsest pyramid level keeps at least this many voxels per axis


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------


@dataclass
class RegistrationResult:
    """What a registration returns.

    Attributes:
        warped: ``(B, C, *spatial)`` the moving image resampled onto the fixed grid,
            exactly ``warp(moving, disp)``.
        disp: ``(B, ndim, *spatial)`` the *total* displacement in voxels of the fixed
            grid (affine part included): ``warp_labels(moving_labels, disp)`` carries
            the moving labels onto the fixed grid.
        affine: ``(B, ndim, ndim + 1)`` the affine part (voxel indices of the fixed grid,
            DESIGN.md convention) when the method has one, else ``None``.
        history: loss per iteration, one list per pyramid level (coarse to fine).
        seconds: wall-clock time of the whole run.
        method: name of the method that produced the result.
        parameters: what the method optimised, by name (e.g. ``"velocity"`` for a
            diffeomorphic field, ``"control_points"`` for a B-spline).
        warped_labels: ``(B, 1, *spatial)`` moving labels on the fixed grid, filled in
            by :func:`regedu.register` when it is given ``moving_labels``.
    """

    warped: torch.Tensor
    disp: torch.Tensor
    affine: torch.Tensor | None = None
    history: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    method: str = ""
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)
    warped_labels: torch.Tensor | None = None

    @property
    def final_loss(self) -> float:
        """The last recorded loss (NaN when nothing was recorded)."""
        for level in reversed(self.history):
            if level:
                return level[-1]
        return math.nan


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
    against the other. ``device=None`` keeps the inputs where they are (``fixed`` follows
    ``moving``); the dtype is ``moving``'s.
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
    device = moving.device if device is None else torch.device(device)
    moving = moving.to(device)
    fixed = fixed.to(device=device, dtype=moving.dtype)
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


def check_number(value, name: str, minimum: float = 0.0, strict: bool = False) -> float:
    """Return ``value`` as ``float``; raise ``ValueError`` unless finite and ``>= minimum``
    (``> minimum`` with ``strict``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        relation = ">" if strict else ">="
        raise ValueError(f"`{name}` must be a finite number {relation} {minimum:g}, got {value!r}.")
    return float(value)


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


def normalise_intensities(image: torch.Tensor) -> torch.Tensor:
    """Rescale each batch item to ``[0, 1]`` (min-max over channels and voxels).

    Losses and learning rates then mean the same thing whatever the scanner's units.
    """
    dims = tuple(range(1, image.dim()))
    low = image.amin(dim=dims, keepdim=True)
    high = image.amax(dim=dims, keepdim=True)
    return (image - low) / (high - low)


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    """1D Gaussian ``exp(-x**2 / (2 sigma**2))`` sampled on ``-3 sigma .. 3 sigma``, summing to 1."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-x.square() / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_smooth(x: torch.Tensor, sigma) -> torch.Tensor:
    """Gaussian smoothing of ``x`` ``(B, C, *spatial)`` over its spatial axes.

    ``sigma`` in voxels, one number or one per spatial axis (0 leaves that axis alone).
    The Gaussian is separable, so it runs as one 1D convolution per axis; the image
    is extended by repeating its border voxels. Same shape, dtype and device as ``x``.
    """
    ndim = x.dim() - 2
    sigmas = [float(sigma)] * ndim if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
    for axis, s in enumerate(sigmas, start=2):
        if s <= 0:
            continue
        kernel = _gaussian_kernel(s, x.device, x.dtype)
        radius = kernel.numel() // 2
        moved = x.movedim(axis, -1)
        rows = moved.reshape(-1, 1, moved.shape[-1])
        rows = F.pad(rows, (radius, radius), mode="replicate")
        rows = F.conv1d(rows, kernel.view(1, 1, -1))
        x = rows.reshape(moved.shape).movedim(-1, axis)
    return x


def pyramid_shapes(shape: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Spatial shape of each pyramid level, coarse to fine; the last is ``shape``.

    Each level halves the voxel count along every axis, keeping the first and
    last voxel centres in place (align_corners): ``n -> ceil((n - 1) / 2**k) + 1``.
    """
    levels = check_positive_int(levels, "levels")
    shapes = []
    for k in reversed(range(levels)):
        level_shape = tuple(math.ceil((n - 1) / 2**k) + 1 for n in shape)
        if k > 0 and min(level_shape) < MIN_LEVEL_SIZE:
            raise ValueError(
                f"`levels={levels}` shrinks the image {tuple(shape)} to {level_shape} at the "
                f"coarsest level; keep at least {MIN_LEVEL_SIZE} voxels per axis: use fewer levels."
            )
        shapes.append(level_shape)
    return shapes


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

    ``similarity`` is a name from :data:`SIMILARITIES` (``"mse"``, ``"ncc"`` with
    ``window``, ``"global_ncc"``, ``"mi"`` with ``bins``, ``"ngf"``) or a callable
    ``f(fixed, warped) -> scalar`` used as it is.
    """
    if callable(similarity):
        return similarity
    check_choice(similarity, "similarity", list(SIMILARITIES))
    term = SIMILARITIES[similarity]
    return lambda fixed, warped: term(fixed, warped, window, bins)


def regulariser_function(regulariser) -> Callable:
    """Turn ``regulariser`` (``"diffusion"``, ``"bending"`` or a callable ``f(disp)``) into a loss."""
    if callable(regulariser):
        return regulariser
    check_choice(regulariser, "regulariser", list(REGULARISERS))
    return REGULARISERS[regulariser]


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


def after_affine(disp: torch.Tensor, A: torch.Tensor | None) -> torch.Tensor:
    """Total displacement of "move by ``disp``, then by the affine ``A``" (both on one grid).

    The sampling location is ``A(x + disp(x)) = M x + t + M disp(x)``, so the total is
    ``affine_to_disp(A) + M disp``: exactly ``warps.compose(affine_to_disp(A), disp)``
    but without interpolating the affine field (exact, also outside the image).
    ``A=None`` means no affine: ``disp`` is returned.
    """
    if A is None:
        return disp
    ndim = disp.shape[1]
    batch = max(disp.shape[0], A.shape[0])
    linear = A[:, :, :ndim].expand(batch, ndim, ndim)
    moved = torch.einsum("bij,bj...->bi...", linear, disp.expand(batch, *disp.shape[1:]))
    return affine_to_disp(A, disp.shape[2:]) + moved


def warp_in_loop(image: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """:func:`regedu.warps.warp` (bilinear, border padding) for loops that warp at every iteration.

    The inputs were checked once on entry, so only the field's finiteness is checked here,
    and a field that turned NaN or infinite raises ``FloatingPointError`` (a diverging run,
    reported with its cause by :func:`optimise_level`), never reaches ``grid_sample``:
    its backward pass can crash the process on NaN coordinates.
    """
    if not bool(torch.isfinite(disp).all()):
        raise FloatingPointError("the displacement field became NaN or infinite")
    return _resample(image, disp.to(image.dtype))


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


def optimise_level(loss_function: Callable[[], torch.Tensor], parameters: list[torch.Tensor],
                   iterations: int, lr: float, level: int, callback: Callback | None, bar) -> list[float]:
    """Minimise ``loss_function()`` over ``parameters`` with Adam; return the loss per iteration.

    Adam scales every step to about ``lr`` in each parameter's own units, so ``lr`` reads
    as "how far a parameter may move per iteration". The step size follows a cosine from
    ``lr`` down to ``lr / 10`` over the level, so the parameters settle instead of jittering
    by ``lr`` around the optimum. After each step ``callback(level, iteration, loss)`` is
    called and the bar advances. A NaN or infinite loss or parameter stops the run with a
    ``FloatingPointError`` instead of returning garbage.
    """
    optimizer = _adam(parameters, lr)
    history = []
    for iteration in range(iterations):
        progress = iteration / max(iterations - 1, 1)
        optimizer.param_groups[0]["lr"] = lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        optimizer.zero_grad(set_to_none=True)
        try:
            loss = loss_function()
        except FloatingPointError as error:
            raise _divergence_error(str(error), level, iteration, lr) from error
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _divergence_error("the loss became NaN or infinite", level, iteration, lr)
        loss.backward()
        optimizer.step()
        if not all(bool(torch.isfinite(p).all()) for p in parameters):
            raise _divergence_error("a parameter became NaN or infinite", level, iteration, lr)
        history.append(value)
        if callback is not None:
            callback(level, iteration, value)
        bar.update()
    return history
