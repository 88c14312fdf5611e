"""The pyramid driver: everything a classical method does around its own optimisation.

Every classical method registers coarse to fine. Before the first level it checks the pair and
its starting affine, plans the pyramid (depth and iterations chosen from the image unless given)
and rescales the intensities to ``[0, 1]``; on each level it downsamples both images, brings its
transform to the level's grid and optimises it, with a progress bar, a callback and a loss
history; at the end it warps the moving image with the total field (the starting affine
included) and returns a :class:`~regedu.result.RegistrationResult`.

:class:`PyramidRun` does all of that except the method's own part, which is the body of a loop
over the levels it generates (:meth:`PyramidRun.levels`). A new method is then about 15 lines,
here a dense field under MSE:

.. code-block:: python

    def register_mse(moving, fixed, *, levels=None, iterations=None, lr=0.1, weight=1.0,
                     affine=None, callback=None, progress=None, device=None):
        with PyramidRun(moving, fixed, "mse_dense", levels=levels, iterations=iterations,
                        schedule=(100, 50, 20), affine=affine, callback=callback,
                        progress=progress, device=device) as run:
            field = None
            for level in run.levels():
                field = level.start_from(field).requires_grad_(True)

                def loss(level=level, field=field):
                    return losses.mse(level.fixed, level.warp(field)) + weight * losses.diffusion(field)

                level.minimise(loss, [field], lr)
        return run.result(field.detach(), {"displacement": field.detach()})

:func:`~regedu.classical.register_affine`, :func:`~regedu.classical.register_dense`,
:func:`~regedu.classical.register_bspline` and :func:`~regedu.classical.demons` are written this way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property

import torch

from .. import kernels
from ..result import RegistrationResult
from ..warps import warp
from .common import (
    affine_on_grid,
    check_initial_affine,
    convergence_tolerance,
    downsample,
    optimise_level,
    plan_pyramid,
    prepare_pair,
    progress_bar,
    rescale_min_max,
    warp_in_loop,
)

__all__ = ["PyramidRun", "Level"]


class PyramidRun:
    """One classical registration, coarse to fine: use it as ``with PyramidRun(...) as run:``.

    Creating it checks the pair (:func:`~regedu.classical.common.prepare_pair`) and the starting
    ``affine`` (:func:`~regedu.classical.common.check_initial_affine`) and plans the pyramid
    (:func:`~regedu.classical.common.plan_pyramid`); entering it opens the progress bar.

    Args:
        moving, fixed: the pair as the user gave it, ``(B, C, *spatial)``.
        name: the method's name, for the progress bar and the result.
        levels, iterations, schedule, voxel_size: as in :func:`~regedu.classical.common.plan_pyramid`
            (``schedule``: the method's default iterations per level, coarse to fine, or a dict of
            them by image dimension, ``{2: ..., 3: ...}``).
        affine: ``None`` or the ``(B, ndim, ndim + 1)`` affine the method starts from; every
            level's :meth:`Level.warp` and the result apply it after the method's field.
        tolerance: the levels' convergence tolerance, as in
            :func:`~regedu.classical.common.convergence_tolerance`.
        callback, progress, device: the method's options of the same names.
        extra_iterations: iterations the method runs after the levels (its bar counts them too).

    Attributes:
        moving, fixed: the pair on ``device``, intensities rescaled to ``[0, 1]`` per item
            (a method may replace them before its first level, e.g. after histogram matching).
        input_moving: the moving image as given (on ``device``): the result warps it.
        shape, ndim, batch: the fixed grid's spatial shape, its dimension, the pair's batch.
        shapes, counts: each level's shape and iterations, coarse to fine.
        affine, tolerance, callback, bar: as above (``bar``, the tqdm bar, once entered).
        history: the loss per iteration, one list per level so far.
    """

    def __init__(self, moving, fixed, name: str, *, levels, iterations,
                 schedule: Sequence[int] | Mapping[int, Sequence[int]],
                 affine=None, voxel_size=None, tolerance=None, callback: Callable | None = None,
                 progress=None, device=None, extra_iterations: int = 0):
        self.start = time.perf_counter()
        self.input_moving, fixed, self.ndim = prepare_pair(moving, fixed, device)
        self.affine = check_initial_affine(affine, self.input_moving, fixed)
        self.shape = tuple(fixed.shape[2:])
        if isinstance(schedule, Mapping):  # a schedule per image dimension
            schedule = schedule[self.ndim]
        self.shapes, self.counts, automatic = plan_pyramid(self.shape, levels, iterations, schedule,
                                                           voxel_size)
        self.tolerance = convergence_tolerance(tolerance, automatic)
        self.moving, self.fixed = rescale_min_max(self.input_moving), rescale_min_max(fixed)
        self.batch = max(self.input_moving.shape[0], fixed.shape[0])
        self.name, self.callback, self.progress = name, callback, progress
        self.extra_iterations = extra_iterations
        self.history: list[list[float]] = []
        self.bar = None

    def __enter__(self) -> PyramidRun:
        self.bar = progress_bar(sum(self.counts) + self.extra_iterations, self.progress, self.name)
        return self

    def __exit__(self, *exception) -> None:
        self.bar.close()

    def levels(self) -> Iterator[Level]:
        """The pyramid's levels, coarse to fine, each a :class:`Level` (its history starts empty)."""
        for index, (shape, count) in enumerate(zip(self.shapes, self.counts, strict=True)):
            level = Level(self, index, shape, count)
            self.history.append(level.history)
            yield level

    def result(self, field: torch.Tensor, parameters: dict[str, torch.Tensor],
               affine: torch.Tensor | None = None) -> RegistrationResult:
        """The run's :class:`~regedu.result.RegistrationResult` for the method's final ``field``.

        ``field`` ``(B, ndim, *spatial)`` is the displacement on the full grid in voxels, without
        the starting affine: the result's ``disp`` is it followed by that affine
        (:func:`regedu.kernels.after_affine`), and ``warped`` the moving image warped with it.
        ``affine`` replaces the starting affine in the result (an affine method's own).
        """
        with torch.no_grad():
            disp = kernels.after_affine(field, self.affine)
            warped = warp(self.input_moving, disp)
        return RegistrationResult(
            warped=warped, disp=disp, affine=self.affine if affine is None else affine,
            history=self.history, seconds=time.perf_counter() - self.start, method=self.name,
            parameters=parameters,
        )


class Level:
    """One pyramid level of a :class:`PyramidRun`, as the method's loop body sees it.

    Attributes:
        index: 0 for the coarsest level.
        shape: this level's spatial shape.
        iterations: its iterations (at most: a level stops on convergence when the run's
            tolerance is > 0).
        history: its loss per iteration (filled by :meth:`minimise` or :meth:`report`).
    """

    def __init__(self, run: PyramidRun, index: int, shape: tuple[int, ...], iterations: int):
        self.run, self.index, self.shape, self.iterations = run, index, shape, iterations
        self.history: list[float] = []

    @cached_property
    def moving(self) -> torch.Tensor:
        """The rescaled moving image on this level's grid (:func:`~regedu.classical.common.downsample`)."""
        return downsample(self.run.moving, self.shape)

    @cached_property
    def fixed(self) -> torch.Tensor:
        """The rescaled fixed image on this level's grid."""
        return downsample(self.run.fixed, self.shape)

    @cached_property
    def affine(self) -> torch.Tensor | None:
        """The run's starting affine on this level's grid (:func:`~.common.affine_on_grid`)."""
        run = self.run
        return None if run.affine is None else affine_on_grid(run.affine, run.shape, self.shape)

    def start_from(self, field: torch.Tensor | None) -> torch.Tensor:
        """The previous level's ``field`` brought to this grid (:func:`regedu.kernels.resize_disp`,
        detached), or zeros ``(B, ndim, *shape)`` on the first level (``field=None``)."""
        if field is None:
            run = self.run
            return run.moving.new_zeros(run.batch, run.ndim, *self.shape)
        return kernels.resize_disp(field.detach(), self.shape)

    def warp(self, disp: torch.Tensor) -> torch.Tensor:
        """This level's moving image warped by ``disp`` (voxels of this grid) followed by the starting
        affine, for the loss (:func:`~regedu.classical.common.warp_in_loop`: NaN raises)."""
        return warp_in_loop(self.moving, kernels.after_affine(disp, self.affine))

    def minimise(self, loss: Callable[[], torch.Tensor], parameters: list[torch.Tensor], lr: float, *,
                 warmup: int = 0, reported_lr: float | None = None,
                 lr_schedule: str = "cosine") -> list[float]:
        """Minimise ``loss()`` over ``parameters`` with Adam for this level's iterations
        (:func:`~regedu.classical.common.optimise_level`, with the run's callback, bar and tolerance;
        ``lr_schedule``: ``"cosine"`` or ``"constant"``); return (and record) the loss per iteration."""
        run = self.run
        self.history.extend(optimise_level(loss, parameters, self.iterations, lr, self.index, run.callback,
                                           run.bar, warmup=warmup, tolerance=run.tolerance,
                                           reported_lr=reported_lr, lr_schedule=lr_schedule))
        return self.history

    def report(self, loss: float) -> None:
        """Record one iteration's ``loss`` for a method with its own loop: history, callback, bar."""
        self.history.append(loss)
        if self.run.callback is not None:
            self.run.callback(self.index, len(self.history) - 1, loss)
        self.run.bar.update()
