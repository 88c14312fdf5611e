"""Benchmark: regedu's classical registration against ANTs (SyN, SyNCC) and SimpleITK (affine + demons).

Pairs: the MNI152 2009a template (``regedu.data``, tissue parcels as labels, 2 mm) pushed through
two *independent* random transforms by the synthetic-subject generator (``synth_subject``: a random
affine and diffeomorphism plus intensity changes), one subject moving, one fixed. The pairs are
seeded, so every contender sees the very same images. 2D: axial slices, 96 x 112. 3D: volumes,
96 x 112 x 96.

Every contender maps the moving label map onto the fixed grid with its own label resampler, each
the same kind (linear interpolation of every label's indicator, then the most likely label):
regedu ``warp_labels(method="onehot")``, ANTs ``apply_transforms`` with ``genericLabel``, SimpleITK
``Resample`` with ``sitkLabelLinear``. The metrics are computed by ``regedu.metrics`` on the fixed
grid: mean Dice over the labels ("Dice"), HD95 (mm), and, from the total transform converted to
regedu's convention (a displacement in voxels, ``warp(moving, disp)``), folding fraction, SDlogJ
and the minimum Jacobian determinant. "Dice NN" resamples the labels of every contender with the
same nearest-neighbour ``warp_labels`` through its converted field: it compares the transforms
alone (nearest neighbour costs about 0.01 Dice against label interpolation). Each conversion is
checked on every pair: warping the moving image with the converted field must reproduce the
peer's own linear resampling ("conv. error", mean absolute intensity difference, images in [0, 1]).

    benchmarks/.venv/bin/python benchmarks/classical.py                # CPU: results/classical_cpu.md
    benchmarks/.venv/bin/python benchmarks/classical.py --device cuda  # regedu on the GPU
    benchmarks/.venv/bin/python benchmarks/classical.py --quick        # smoke run: small crops, 1 pair
    benchmarks/.venv/bin/python benchmarks/classical.py --ndim 2 --pairs 4 --methods default SyNCC

On a machine shared with other jobs, set ``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``): torch's
OpenMP threads otherwise spin while they wait for a peer that the OS has descheduled, and a 2D
registration was seen to take 15 times longer with 2 threads than with 1 (ITK's threads, in ANTs
and SimpleITK, do not spin). ANTs' SyNCC runs 2100/1200/1200/20 SyN iterations per level: in 3D it
takes about half an hour per pair on 2 cores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ants
import numpy as np
import SimpleITK as sitk
import torch
from common import (
    benchmark_arguments,
    default_output,
    environment,
    format_table,
    resolve_device,
    write_results,
)
from heldout import COUNTS, heldout_pairs

from regedu import metrics
from regedu.api import LEARNED_METHODS, register
from regedu.data import brain_slice, brain_volume, synth_subject
from regedu.warps import identity_grid, warp, warp_labels

REGEDU_METHODS = ["default", "affine+dense", "affine+svf", "affine+bspline", "affine+demons",
                  "affine+diffeomorphic_demons"]
REFERENCE = "ANTs SyNCC"
SPLIT_NOTES = {
    "test": "heldout.py's test pairs, made differently from the kit's generator; report these",
    "development": "heldout.py's development pairs, where defaults are chosen",
    "old": "the first release's pairs from the kit's own generator, kept for continuity",
}
PAIRS = {2: 10, 3: 3}
SEEDS = {2: 1000, 3: 2000}
QUICK_CROP = {2: (64, 72), 3: (48, 56, 48)}
COLUMNS = ["method", "Dice", "Dice NN", "HD95 mm", "folding %", "SDlogJ", "min det J", "s/pair",
           "Dice / SyNCC", "time / SyNCC", "conv. error"]


@dataclass
class Pair:
    moving: torch.Tensor  # (1, 1, *spatial) float
    fixed: torch.Tensor
    moving_labels: torch.Tensor  # (1, 1, *spatial) int64
    fixed_labels: torch.Tensor
    spacing: tuple[float, ...]  # mm


@dataclass
class Outcome:
    disp: torch.Tensor  # total displacement, voxels of the fixed grid, regedu's convention
    warped_labels: torch.Tensor  # the contender's own label resampling
    seconds: float
    conversion_error: float  # mean |warp(moving, disp) - peer's own resampling| (0 for regedu)


# ---------------------------------------------------------------------------
# pairs
# ---------------------------------------------------------------------------


def make_pairs(ndim: int, count: int, quick: bool, split: str = "old") -> list[Pair]:
    """``count`` seeded pairs: ``split="old"`` the first release's pairs (independent synthetic subjects
    of the 2 mm template, the kit's own generator, 17 parcels); ``"development"`` or ``"test"`` the
    held-out pairs of ``heldout.py``, made differently (tissue labels)."""
    if split != "old":
        made = [Pair(p.moving, p.fixed, p.moving_labels, p.fixed_labels, p.spacing)
                for p in heldout_pairs(split, ndim, count)]
        return [crop_pair(p) for p in made] if quick else made
    crop = QUICK_CROP[ndim] if quick else None
    brain = brain_slice(crop_to=crop, parcels=True) if ndim == 2 else brain_volume(crop_to=crop, parcels=True)
    pairs = []
    for index in range(count):
        seed = SEEDS[ndim] + 2 * index
        moving = synth_subject(brain.image, brain.labels, seed=seed)
        fixed = synth_subject(brain.image, brain.labels, seed=seed + 1)
        pairs.append(Pair(moving.image, fixed.image, moving.labels, fixed.labels, brain.spacing[:ndim]))
    return pairs


def crop_pair(pair: Pair, size: int = 32) -> Pair:
    """The central part of a pair, about half its size but at least ``size`` voxels per axis (for
    warming contenders up cheaply; the pyramids of 3 levels need 32)."""
    spatial = pair.moving.shape[2:]
    lengths = [min(n, max(size, n // 2)) for n in spatial]
    window = (slice(None), slice(None)) + tuple(
        slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(spatial, lengths, strict=True))
    return Pair(pair.moving[window].contiguous(), pair.fixed[window].contiguous(),
                pair.moving_labels[window].contiguous(), pair.fixed_labels[window].contiguous(), pair.spacing)


# ---------------------------------------------------------------------------
# contenders
# ---------------------------------------------------------------------------


def run_regedu(method: str, device: torch.device, model=None, **options) -> Callable[[Pair], Outcome]:
    """A contender: ``regedu.register(method=..., **options)``, timed to the end; ``model`` (a checkpoint
    path) for a learned method other than the shipped default."""
    options = {**options, **({"model": model} if method in LEARNED_METHODS else {"progress": False})}

    def run(pair: Pair) -> Outcome:
        moving, fixed = pair.moving.to(device), pair.fixed.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = register(moving, fixed, method=method, **options)
        disp = result.disp
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        disp = disp.cpu()
        return Outcome(disp, warp_labels(pair.moving_labels, disp, method="onehot"), seconds, 0.0)

    return run


def _to_ants(tensor: torch.Tensor, spacing: Sequence[float]) -> ants.ANTsImage:
    """(1, 1, *spatial) tensor -> ANTs image; array axis k is ITK index axis k, identity direction."""
    return ants.from_numpy(tensor[0, 0].numpy().astype(np.float32), spacing=tuple(spacing))


def _ants_to_disp(transforms: Sequence[str], spacing: Sequence[float], shape: Sequence[int]) -> torch.Tensor:
    """ANTs' ``fwdtransforms`` ``[warp, affine]`` as one displacement in voxels (regedu's convention).

    With origin 0 and identity direction, the physical point of index ``x`` is ``S x``
    (``S = diag(spacing)``) and the warp's vectors are in mm along the index axes. ANTs maps a
    fixed point ``p`` to ``A(p + w(p))`` (the warp first, then the affine ``A(p) = M (p - c) + c + t``),
    so in voxels: ``y = S^-1 A(S (x + w(x) / s))``.
    """
    ndim = len(shape)
    scale = torch.tensor(spacing, dtype=torch.float64)
    warp_mm = torch.from_numpy(ants.image_read(transforms[0]).numpy().astype(np.float64))  # (*shape, ndim)
    points = identity_grid(shape, dtype=torch.float64) + (warp_mm / scale).movedim(-1, 0)
    affine = ants.read_transform(transforms[1])
    parameters = torch.tensor(np.asarray(affine.parameters), dtype=torch.float64)
    matrix, shift = parameters[: ndim * ndim].view(ndim, ndim), parameters[ndim * ndim:]
    centre = torch.tensor(np.asarray(affine.fixed_parameters), dtype=torch.float64)
    physical = points.reshape(ndim, -1) * scale.view(-1, 1)
    mapped = matrix @ (physical - centre.view(-1, 1)) + (centre + shift).view(-1, 1)
    voxels = (mapped / scale.view(-1, 1)).reshape(ndim, *shape)
    return (voxels - identity_grid(shape, dtype=torch.float64))[None].float()


def run_ants(kind: str) -> Callable[[Pair], Outcome]:
    def run(pair: Pair) -> Outcome:
        fixed, moving = _to_ants(pair.fixed, pair.spacing), _to_ants(pair.moving, pair.spacing)
        start = time.perf_counter()
        result = ants.registration(fixed, moving, type_of_transform=kind)
        seconds = time.perf_counter() - start
        transforms = result["fwdtransforms"]
        labels = ants.apply_transforms(fixed, _to_ants(pair.moving_labels.float(), pair.spacing), transforms,
                                       interpolator="genericLabel")
        own = ants.apply_transforms(fixed, moving, transforms, interpolator="linear")
        disp = _ants_to_disp(transforms, pair.spacing, pair.fixed.shape[2:])
        return Outcome(disp, _from_array(labels.numpy()).round().long(), seconds,
                       _conversion_error(pair.moving, disp, _from_array(own.numpy())))

    return run


def _from_array(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))[None, None].float()


def _conversion_error(moving: torch.Tensor, disp: torch.Tensor, peer_warped: torch.Tensor) -> float:
    """Mean |regedu's warp through the converted field - the peer's own resampling|, where both
    sample inside the moving image (peers pad with 0 outside, regedu repeats the border)."""
    ours = warp(moving, disp, padding="zeros")
    return float((ours - peer_warped).abs().mean())


def _to_sitk(tensor: torch.Tensor, spacing: Sequence[float]) -> sitk.Image:
    """(1, 1, *spatial) tensor -> SimpleITK image with ITK index axis k = tensor axis k."""
    image = sitk.GetImageFromArray(tensor[0, 0].numpy().T.copy())  # SimpleITK arrays are (z, y, x)
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image


def _from_sitk(image: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayFromImage(image)
    ndim = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() > 1:
        return array.transpose(*reversed(range(ndim)), ndim)
    return array.T


def sitk_affine(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """Affine registration as in SimpleITK's examples: centre-of-mass initialisation,
    correlation, regular-step gradient descent with physical-shift scales, 3 levels (shrink 4, 2, 1).

    (Plain gradient descent with an estimated learning rate, as in some examples, stopped after
    about 10 iterations and left several of these pairs worse than before: regular steps do not.)
    """
    ndim = fixed.GetDimension()
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(ndim),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsCorrelation()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=200,
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)


def sitk_demons(fixed: sitk.Image, moving: sitk.Image, shrink_factors=(4, 2, 1), iterations=(100, 50, 25),
                sigma: float = 1.0) -> sitk.Image:
    """Fast symmetric-forces demons, coarse to fine (SimpleITK's multiscale demons example):
    each level starts from the previous field resampled onto its grid."""
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetSmoothDisplacementField(True)
    demons.SetStandardDeviations(sigma)
    field = None
    for factor, count in zip(shrink_factors, iterations, strict=True):
        sigma_mm = factor / 2 * fixed.GetSpacing()[0]
        if factor > 1:
            shrink = [factor] * fixed.GetDimension()
            level_fixed = sitk.Shrink(sitk.SmoothingRecursiveGaussian(fixed, sigma_mm), shrink)
            level_moving = sitk.Resample(sitk.SmoothingRecursiveGaussian(moving, sigma_mm), level_fixed)
        else:
            level_fixed, level_moving = fixed, moving
        if field is None:
            field = sitk.Image(level_fixed.GetSize(), sitk.sitkVectorFloat64, fixed.GetDimension())
            field.CopyInformation(level_fixed)
        else:
            field = sitk.Resample(field, level_fixed)
        demons.SetNumberOfIterations(count)
        field = demons.Execute(level_fixed, level_moving, field)
    return field


def run_sitk() -> Callable[[Pair], Outcome]:
    def run(pair: Pair) -> Outcome:
        fixed, moving = _to_sitk(pair.fixed, pair.spacing), _to_sitk(pair.moving, pair.spacing)
        start = time.perf_counter()
        affine = sitk_affine(fixed, moving)
        moved = sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0)
        matched = sitk.HistogramMatching(moved, fixed, 256, 7)  # demons compare raw intensities
        field = sitk_demons(fixed, matched)
        seconds = time.perf_counter() - start
        transform = sitk.CompositeTransform(fixed.GetDimension())
        transform.AddTransform(affine)  # ITK applies the last added first: the field, then the affine
        transform.AddTransform(sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64)))
        moving_labels = sitk.Cast(_to_sitk(pair.moving_labels.float(), pair.spacing), sitk.sitkUInt16)
        labels = sitk.Resample(moving_labels, fixed, transform, sitk.sitkLabelLinear, 0)
        own = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0)
        total_mm = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, fixed.GetSize(),
                                                     fixed.GetOrigin(), fixed.GetSpacing(),
                                                     fixed.GetDirection())
        scale = torch.tensor(pair.spacing, dtype=torch.float64)
        disp = (torch.from_numpy(_from_sitk(total_mm)) / scale).movedim(-1, 0)[None].float()
        return Outcome(disp, _from_array(_from_sitk(labels)).round().long(), seconds,
                       _conversion_error(pair.moving, disp, _from_array(_from_sitk(own))))

    return run


def contenders(names: Sequence[str], device: torch.device) -> dict[str, Callable[[Pair], Outcome]]:
    table = {f"regedu {m}": run_regedu(m, device) for m in REGEDU_METHODS}
    table.update({"ANTs SyN": run_ants("SyN"), "ANTs SyNCC": run_ants("SyNCC"),
                  "SimpleITK affine+demons": run_sitk()})
    if not names:
        return table
    chosen = {}
    for name in names:
        matches = [key for key in table if key == name or key.endswith(" " + name)]
        if not matches:
            raise SystemExit(f"--methods: unknown {name!r}; choose from {list(table)}")
        chosen.update({key: table[key] for key in matches})
    return chosen


# ---------------------------------------------------------------------------
# metrics and the table
# ---------------------------------------------------------------------------


def score(pair: Pair, outcome: Outcome) -> dict[str, float]:
    """Metrics of one contender on one pair, on the fixed grid."""
    labels = sorted(set(torch.unique(pair.fixed_labels).tolist()) - {0})
    dice = metrics.dice(outcome.warped_labels, pair.fixed_labels, labels=labels)
    dice_before = metrics.dice(pair.moving_labels, pair.fixed_labels, labels=labels)
    hd95 = metrics.hd95(outcome.warped_labels, pair.fixed_labels, labels=labels, voxel_size=pair.spacing)
    hd95 = torch.where(torch.isfinite(hd95), hd95, torch.nan)  # a label absent from one side: no distance
    nearest = warp_labels(pair.moving_labels, outcome.disp)
    return {
        "Dice": float(torch.nanmean(dice)),
        "Dice NN": float(torch.nanmean(metrics.dice(nearest, pair.fixed_labels, labels=labels))),
        "HD95 mm": float(torch.nanmean(hd95)),
        "folding %": 100 * float(metrics.folding_fraction(outcome.disp)),
        "SDlogJ": float(metrics.sdlogj(outcome.disp)),
        "min det J": float(metrics.min_jacobian(outcome.disp)),
        "s/pair": outcome.seconds,
        "conv. error": outcome.conversion_error,
        "Dice before": float(torch.nanmean(dice_before)),
    }


def summarise(scores: dict[str, list[dict[str, float]]], ndim: int) -> list[dict[str, object]]:
    rows = []
    for name, per_pair in scores.items():
        row: dict[str, object] = {"method": f"{ndim}D {name}"}
        for key in per_pair[0]:
            row[key] = float(np.mean([s[key] for s in per_pair]))
        row["min det J"] = float(np.min([s["min det J"] for s in per_pair]))
        rows.append(row)
    reference = next((r for r in rows if r["method"].endswith(REFERENCE)), None)
    for row in rows:
        if reference is not None:
            row["Dice / SyNCC"] = row["Dice"] / reference["Dice"]
            row["time / SyNCC"] = row["s/pair"] / reference["s/pair"]
    return rows


def _cache_key(split: str, ndim: int, index: int, name: str) -> str:
    return f"{split} {ndim}D pair {index} {name}"


def load_peer_cache(path: Path | None) -> dict:
    return json.loads(path.read_text()) if path is not None and path.exists() else {}


def run_dimension(ndim: int, count: int, chosen: dict[str, Callable[[Pair], Outcome]], quick: bool,
                  verbose: bool = True, split: str = "old",
                  peer_cache: Path | None = None) -> list[dict[str, object]]:
    """Every contender on every pair. With ``peer_cache`` (a JSON file), the peers' scores (ANTs,
    SimpleITK) are read from it when present and stored in it when computed: 3D SyNCC takes about
    half an hour a pair on 2 cores, so it is measured once and its stored score (time included)
    reused; the table says which rows come from the store."""
    pairs = make_pairs(ndim, count, quick, split)
    cache = load_peer_cache(peer_cache)
    warmup = crop_pair(pairs[0])
    for name, run in chosen.items():  # first calls pay for lazy initialisation: not timed
        if not (peer_cache is not None and _is_peer(name) and
                all(_cache_key(split, ndim, i, name) in cache for i in range(len(pairs)))):
            run(warmup)
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    for index, pair in enumerate(pairs):
        for name, run in chosen.items():  # pairs outside, contenders inside: load hits all alike
            key = _cache_key(split, ndim, index, name)
            if peer_cache is not None and _is_peer(name) and key in cache:
                scores[name].append(cache[key])
            else:
                scores[name].append(score(pair, run(pair)))
                if peer_cache is not None and _is_peer(name) and not quick:
                    cache[key] = scores[name][-1]
                    peer_cache.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
            if verbose:
                s = scores[name][-1]
                print(f"  {ndim}D pair {index}: {name:32s} Dice {s['Dice']:.3f} NN {s['Dice NN']:.3f}"
                      f" (before {s['Dice before']:.3f}) folding {s['folding %']:.3f}%"
                      f" min J {s['min det J']:.3f} {s['s/pair']:.1f} s", flush=True)
    return summarise(scores, ndim)


def _is_peer(name: str) -> bool:
    return name.startswith(("ANTs", "SimpleITK"))


def set_threads(count: int) -> None:
    """Give every contender ``count`` threads: torch, and ITK inside ANTs and SimpleITK."""
    torch.set_num_threads(count)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(count)  # read by ANTs' ITK
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0])
    parser.add_argument("--ndim", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--pairs", type=int, default=None,
                        help="pairs per dimension (default: 10 in 2D, 3 in 3D)")
    parser.add_argument("--methods", nargs="*", default=[],
                        help="contenders to run, e.g. default 'affine+demons' SyNCC (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every contender (default: each library's own, all cores)")
    parser.add_argument("--split", choices=["test", "development", "old"], default="test",
                        help="pairs: the held-out test set (report it), the development set (tune on it), or "
                             "the first release's pairs (kept for continuity); see heldout.py")
    parser.add_argument("--peer-cache", type=Path, default=None,
                        help="JSON file of stored peer scores (ANTs, SimpleITK): reuse them, add new ones")
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    device = resolve_device(args.device)
    chosen = contenders(args.methods, device)
    default_count = PAIRS if args.split == "old" else {n: COUNTS[(args.split, n)] for n in (2, 3)}
    counts = {ndim: 1 if args.quick else (args.pairs or default_count[ndim]) for ndim in args.ndim}
    rows = []
    for ndim in args.ndim:
        rows += run_dimension(ndim, counts[ndim], chosen, args.quick, split=args.split,
                              peer_cache=args.peer_cache)
    print(format_table(COLUMNS, rows))
    before = {row["method"][:2]: row["Dice before"] for row in rows}
    notes = "\n\n".join(__doc__.split("\n\n")[1:3]) + (
        f"\n\nPairs: {', '.join(f'{n}D {c}' for n, c in counts.items())}; means over pairs, except min det J "
        f"(the smallest over pairs). Mean Dice before registration: "
        + ", ".join(f"{key} {value:.3f}" for key, value in before.items()) + ".")
    notes += f"\n\nSplit: {args.split} ({SPLIT_NOTES[args.split]})."
    if args.peer_cache is not None:
        notes += f" Peer rows (ANTs, SimpleITK) read from or stored in {args.peer_cache.name} where present."
    path = args.output or default_output(f"classical_{args.split}", device, args.quick)
    env = environment(device, ["antspyx", "SimpleITK", "numpy"])
    write_results(path, "Classical registration: regedu, ANTs and SimpleITK", notes, COLUMNS, rows, env)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
