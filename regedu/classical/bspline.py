"""Free-form deformation: a displacement given by a coarse grid of control points.

Control points sit every ``control_spacing`` voxels of the fixed grid; the displacement at ``x``
blends the control displacements with the cubic B-spline, one axis at a time (the basis and its
properties: :mod:`regedu.bspline`). A constant control grid gives a constant field, a linear one a
linear field, and every field is smooth (two continuous derivatives).

:func:`register_bspline` optimises one control grid on the full-resolution grid; on each pyramid
level the field is the B-spline sampled at that level's voxels (:func:`_basis_matrices`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from ..bspline import basis_matrix, blend, control_point_count, cubic_bspline
from ..checks import check_disp, check_number, check_positive_int, check_window
from ..deprecation import renamed_function, renamed_keyword
from ..result import RegistrationResult
from .common import check_voxel_size, regulariser_function, similarity_function
from .pyramid import Level, PyramidRun
from .refine import refine_dense

__all__ = ["register_bspline", "cubic_bspline", "control_grid_shape", "bspline_to_disp",
           "default_control_spacing", "default_spacing"]

# default iterations per level, coarse to fine, by image dimension (see register_bspline's `iterations`)
SCHEDULE = {2: (50, 50, 20), 3: (50, 50, 10)}
REFINE_ITERATIONS = {2: 30, 3: 20}  # the default pipeline's refinement, by dimension (`refine=None`)
SPACING_VOXELS = 8  # default control-point spacing without a voxel size: tuned on 2 mm brains
SPACING_MM = 16.0  # ... the same distance in millimetres, used when the voxel size is known
REFINE_WINDOW = 5  # default NCC window of the dense refinement (see register_bspline's `refine`)
REFINE_WEIGHT = 1.0  # default weight of its diffusion regulariser


def _spacings(control_spacing, ndim: int) -> tuple[float, ...]:
    """``control_spacing`` (one number or one per axis, voxels) as a tuple of ``ndim`` positive floats."""
    values = [control_spacing] * ndim if isinstance(control_spacing, (int, float)) else list(control_spacing)
    if len(values) != ndim:
        raise ValueError(f"`control_spacing` must be one number or {ndim} numbers (one per axis), "
                         f"got {control_spacing!r}.")
    return tuple(check_number(s, "control_spacing", minimum=0, strict=True) for s in values)


def _given_spacing(control_spacing, spacing):
    """The control spacing of a function whose ``spacing`` keyword became ``control_spacing``."""
    control_spacing = renamed_keyword(control_spacing, spacing, "control_spacing", "spacing")
    if control_spacing is None:
        raise TypeError("missing `control_spacing`: the control-point spacing in voxels (one number or "
                        "one per axis).")
    return control_spacing


def control_grid_shape(shape: Sequence[int], control_spacing=None, *, spacing=None) -> tuple[int, ...]:
    """Number of control points per axis for an image ``shape`` and ``control_spacing`` (voxels).

    Points at ``-s, 0, s, ...`` up to at least ``n - 1 + s``: ``ceil((n - 1) / s) + 3`` per axis
    (:func:`regedu.bspline.control_point_count`). ``spacing`` is the old name of ``control_spacing``.
    """
    spacings = _spacings(_given_spacing(control_spacing, spacing), len(shape))
    return tuple(control_point_count(n, s) for n, s in zip(shape, spacings, strict=True))


def default_control_spacing(ndim: int, voxel_size=None) -> tuple[float, ...]:
    """The default control-point spacing in voxels per axis: ``SPACING_VOXELS`` (8) without a voxel
    size, else ``SPACING_MM`` (16 mm, the same on the 2 mm images it was tuned on) in each axis' voxels,
    so that a 1 mm image gets 16 voxels and the thick slices of a 1 x 1 x 3 mm volume about 5."""
    if voxel_size is None:
        return (float(SPACING_VOXELS),) * ndim
    return tuple(SPACING_MM / size for size in check_voxel_size(voxel_size, ndim))


default_spacing = renamed_function(default_control_spacing, "default_spacing")


def _basis_matrices(control_shape, spacings, shape, sample_shape, device, dtype) -> list[torch.Tensor]:
    """One basis matrix per axis, sampling the field at ``sample_shape`` points spread over ``shape``.

    A coarser ``sample_shape`` (a pyramid level) samples the same extent: point ``i``
    of ``m`` sits at ``i * (n - 1) / (m - 1)`` voxels of the fine grid.
    """
    matrices = []
    for count, s, n, m in zip(control_shape, spacings, shape, sample_shape, strict=True):
        positions = torch.linspace(0, n - 1, m, device=device, dtype=dtype)
        matrices.append(basis_matrix(positions, count, s))
    return matrices


def _blend(control: torch.Tensor, matrices: Sequence[torch.Tensor],
           value_scale: torch.Tensor) -> torch.Tensor:
    """:func:`regedu.bspline.blend` of ``control`` ``(B, ndim, *control_shape)``, times ``value_scale``
    ``(ndim,)``, which converts displacements from fine-grid voxels to sample-grid voxels."""
    return blend(control, matrices) * value_scale.view(1, -1, *([1] * len(matrices)))


def bspline_to_disp(control: torch.Tensor, control_spacing=None, shape: Sequence[int] | None = None, *,
                    spacing=None) -> torch.Tensor:
    """Dense displacement ``(B, ndim, *shape)`` of a B-spline control grid.

    Args:
        control: ``(B, ndim, *control_shape)`` control-point displacements in voxels,
            ``control_shape == control_grid_shape(shape, control_spacing)``.
        control_spacing: distance between control points in voxels, one number or one per axis
            (``spacing``: its old name).
        shape: spatial shape of the image grid.
    """
    control_spacing = _given_spacing(control_spacing, spacing)
    if shape is None:
        raise TypeError("missing `shape`, the spatial shape of the image grid.")
    ndim = check_disp(control, "control")
    shape = tuple(int(n) for n in shape)
    expected = control_grid_shape(shape, control_spacing)
    if tuple(control.shape[2:]) != expected:
        raise ValueError(
            f"`control` must have {expected} control points for an image of shape {shape} with "
            f"control_spacing {control_spacing!r} (see control_grid_shape), got {tuple(control.shape[2:])}."
        )
    options = {"device": control.device, "dtype": control.dtype}
    matrices = _basis_matrices(expected, _spacings(control_spacing, ndim), shape, shape, **options)
    return _blend(control, matrices, torch.ones(ndim, **options))


def _check_window(window, ndim: int, name: str) -> None:
    """Raise naming ``name`` unless ``window`` is one odd int or ``ndim`` odd ints (``TypeError`` for
    a non-integer, ``ValueError`` for a bad size)."""
    try:
        check_window(window, ndim)
    except (TypeError, ValueError) as error:
        raise type(error)(f"`{name}`: {error}") from None


def _level_loss(control, matrices, value_scale, level: Level, similarity, regulariser,
                weight: float) -> torch.Tensor:
    """Loss on one pyramid level: similarity after warping plus ``weight`` times the regulariser."""
    disp = _blend(control, matrices, value_scale)
    loss = similarity(level.fixed, level.warp(disp))
    if weight > 0:
        loss = loss + weight * regulariser(disp)
    return loss


def register_bspline(moving: torch.Tensor, fixed: torch.Tensor, *, control_spacing=None, similarity="ncc",
                     window=9, bins: int = 32, regulariser="bending", weight: float = 1.0,
                     levels: int | None = None, iterations=None, lr: float = 0.1,
                     tolerance: float | None = None, voxel_size=None, refine: int | None = 0,
                     refine_window=REFINE_WINDOW, refine_weight: float = REFINE_WEIGHT,
                     affine: torch.Tensor | None = None, callback=None, progress=None, device=None,
                     spacing=None) -> RegistrationResult:
    """Free-form (cubic B-spline) deformable registration.

    One control grid (``control_spacing`` voxels of the fixed grid apart) is optimised with
    Adam; the image pyramid goes coarse to fine, and on each level the field is the
    B-spline evaluated at that level's voxels. The defaults (after an affine stage,
    this is ``regedu.register``'s default pipeline) were tuned on 2 mm brain pairs in
    ``benchmarks/classical.py``, in 2D and 3D alike; what depends on the image adapts to it
    (levels, iterations, control spacing: see below), so that any size registers with no options.

    Args:
        moving, fixed: ``(B, C, *spatial)`` floating images, 2D or 3D, same shape.
        control_spacing: control-point spacing in voxels (one number or one per axis): larger
            is smoother and faster, smaller follows finer detail. ``None`` (default): 8 voxels,
            or 16 mm per axis when ``voxel_size`` is given (:func:`default_control_spacing`).
        similarity, window, bins: see :func:`regedu.classical.register_dense`.
        regulariser, weight: penalty on the dense field at each level (``"bending"``
            by default: zero for affine motions), with ``weight >= 0``.
        levels: pyramid levels; ``None`` (default) chooses them from the image size and
            ``voxel_size`` (:func:`~regedu.classical.common.auto_pyramid`: coarsen until the largest
            axis has at most 32 voxels, never below 8 on an axis: 3 levels for a 2 mm brain, 2 for a
            33 x 41 x 25 volume), or as many as ``iterations`` has entries; an int is honoured
            exactly (an error if the image is too small for it).
        iterations: ``None`` (default): at most 50, 50, 20 iterations from the coarsest level on
            in 2D, 50, 50, 10 in 3D (the schedules tuned for 3 levels; a shallower pyramid drops
            the fine end, a deeper one repeats the last entry), each level stopping once converged;
            one int (every level) or one per level runs exactly that many. 3D has fewer at full
            resolution, where an iteration costs 8 of the level below: on a development volume
            pair of ``benchmarks/heldout.py`` (96 x 112 x 96, with ``refine=None``) 50, 50, 10 gave
            the Dice of 50, 50, 20 (0.860) in 45 % of the time.
        lr: Adam step in voxels of the full-resolution grid per iteration (the control points
            live there, so a step is the same distance on every level).
        tolerance: a level stops when its mean loss over the last 10 iterations improved on the
            10 before by less than ``tolerance`` (relative; :func:`~regedu.classical.common.converged`).
            ``None``: ``1e-4`` with the default iterations, ``0`` (never stop early) with explicit ones.
        voxel_size: mm per spatial axis (e.g. a loaded volume's ``spacing``), for the automatic
            pyramid (anisotropic images are coarsened along their fine axes first) and the default
            control spacing. ``None``: isotropic voxels, control spacing in voxels.
        refine: after the B-spline levels, at most this many iterations of a dense refinement at
            full resolution (:func:`~regedu.classical.refine.refine_dense`: one displacement per
            voxel added to the B-spline field, for detail finer than the control grid; it stops on
            convergence like a level, and a Jacobian penalty keeps it from folding). ``0``
            (default): none, a pure free-form deformation. ``None``: the default pipeline's, 30
            iterations in 2D and 20 in 3D (:data:`REFINE_ITERATIONS`; on the 3D development pair
            20 after the shorter full-resolution level matched 30 after the longer one).
        refine_window: NCC window of the refinement (voxels; used when ``similarity="ncc"``).
        refine_weight: weight (>= 0) of the refinement field's diffusion regulariser.
        affine, callback, progress, device: see :func:`regedu.classical.register_dense`.
        spacing: the old name of ``control_spacing`` (deprecated: it warns).

    Returns:
        :class:`RegistrationResult`; ``parameters["control_points"]`` is the control grid
        ``(B, ndim, *control_grid_shape(shape, control_spacing))`` (without the affine), and with
        ``refine``, ``parameters["refinement"]`` the dense field ``(B, ndim, *spatial)`` added to
        the B-spline's (``history`` then has one more list, the refinement's, last).
    """
    control_spacing = renamed_keyword(control_spacing, spacing, "control_spacing", "spacing")
    weight = check_number(weight, "weight")
    lr = check_number(lr, "lr", strict=True)
    if refine is not None:
        refine = check_positive_int(refine, "refine", minimum=0)
    refine_weight = check_number(refine_weight, "refine_weight")
    refine_similarity = similarity_function(similarity, refine_window, bins)  # before `similarity` is rebound
    similarity = similarity_function(similarity, window, bins)
    regulariser = regulariser_function(regulariser)
    run = PyramidRun(moving, fixed, "bspline", levels=levels, iterations=iterations, schedule=SCHEDULE,
                     affine=affine, voxel_size=voxel_size, tolerance=tolerance, callback=callback,
                     progress=progress, device=device, extra_iterations=refine or 0)
    if refine is None:
        refine = run.extra_iterations = REFINE_ITERATIONS[run.ndim]
    if control_spacing is None:
        control_spacing = default_control_spacing(run.ndim, voxel_size)
    spacings = _spacings(control_spacing, run.ndim)
    _check_window(refine_window, run.ndim, "refine_window")
    options = {"device": run.moving.device, "dtype": run.moving.dtype}
    control_shape = control_grid_shape(run.shape, spacings)
    control = torch.zeros(run.batch, run.ndim, *control_shape, **options, requires_grad=True)
    with run:
        for level in run.levels():
            matrices = _basis_matrices(control_shape, spacings, run.shape, level.shape, **options)
            scale = [(m - 1) / (n - 1) for n, m in zip(run.shape, level.shape, strict=True)]
            loss = partial(_level_loss, control, matrices, torch.tensor(scale, **options), level, similarity,
                           regulariser, weight)
            level.minimise(loss, [control], lr)
        control = control.detach()
        with torch.no_grad():
            field = bspline_to_disp(control, spacings, run.shape)
        parameters = {"control_points": control}
        if refine > 0:
            refinement, steps = refine_dense(
                run.moving, run.fixed, field, run.affine, iterations=refine, weight=refine_weight, lr=lr,
                similarity=refine_similarity, tolerance=run.tolerance, level=len(run.shapes), bar=run.bar,
                callback=run.callback)
            field, parameters["refinement"] = field + refinement, refinement
            run.history.append(steps)
    return run.result(field, parameters)
