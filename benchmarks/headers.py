"""Benchmark: the field of `regedu register --disp-format itk`, applied by ANTs and SimpleITK, against `-o`.

Issue 13, item 1. The moving and fixed files hold images of the same size and voxel size, but their
headers disagree: the moving origin 6 mm off ("offset"), the moving header rotated 8 degrees about
the centre of the grid in the world x-y plane ("rotated"), the moving array stored right-to-left
(LAS instead of RAS) and 6 mm off ("flipped+offset"); in 2D, a slice whose header is rotated 8
degrees and moved (4.5, -3) mm ("2D rotated+offset"). The images come from the MNI template that
ships with regedu (``regedu.data``, 2 mm, intensities scaled to about [0, 100]): a 3D window of
48 x 56 x 48 voxels and the axial slice at z = +10 mm, 64 x 72; the moving image is the same
anatomy 3 voxels further along y (a window cut 3 voxels off, no wrap-around), so the registration
has the header's displacement and a real shift to find.

Each case runs the command in-process (``regedu.cli.main``)::

    regedu register moving.nii.gz fixed.nii.gz -o out.nii.gz --disp disp.nii.gz --disp-format itk

with the default method (affine, then B-spline) unless ``--method`` says otherwise, and then
applies the written field the documented way, linear interpolation, 0 outside:

* ANTs (antspyx): ``ants.apply_transforms(fixed, moving, [disp], interpolator="linear")`` on the
  files read with ``ants.image_read(path, dimension=ndim)``, which is what
  ``antsApplyTransforms -d ndim -i moving -r fixed -t disp`` does. regedu saves 2D images as true 2D
  NIfTI files (dim[0] = 2), which ITK reads with their direction. A second 2D row shows ANTs on
  (X, Y, 1) copies of the same files, as many other tools save slices: ITK's reader, asked for a 2D
  image, drops the direction of such a file and keeps its origin, which mirrors a RAS slice;
* SimpleITK: ``Resample(moving, fixed, DisplacementFieldTransform(disp), sitkLinear, 0)``.

The table gives, per case, the mean and max absolute difference between each tool's image and
the CLI's ``-o``, in intensity units, with the intensity range of the moving image beside them.
"mean" and "max" are over the fixed voxels whose sampling point (through the field and both
headers) lies within the moving image's voxel centres ("inside %" of the grid), where every
resampler interpolates the same four or eight voxels; "max all" is over the whole fixed grid, edge
included (the CLI pads the way ITK
does: the edge value up to half a voxel beyond the last voxel centre, 0 farther out, so the two
should agree there too, except for points within rounding distance of that half-voxel line).
"old" is the behaviour before the fix, for contrast: the same field applied voxel to voxel,
ignoring the moving header (``warp(moving, disp)`` on the moving array in RAS order, what the
command used to write), against the CLI's ``-o``, over the voxels where both the header-aware and
the voxel-to-voxel sampling points lie inside. "fit" is the mean |image - fixed| over the inside
voxels, before (the moving image resampled through the headers only) and after registration
(``-o``); it shows that the registration itself did its job.

    benchmarks/.venv/bin/python benchmarks/headers.py                  # CPU: results/headers_cpu.md
    benchmarks/.venv/bin/python benchmarks/headers.py --quick          # results/headers_cpu_quick.md
    OMP_NUM_THREADS=1 benchmarks/.venv/bin/python benchmarks/headers.py --threads 1   # a busy 2-core machine
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from common import default_output, environment, format_table, resolve_device, write_results

from regedu import cli
from regedu.data import brain_slice, brain_volume, load_disp, load_nifti, resample_like, save_nifti
from regedu.warps import identity_grid, warp

SHAPES = {3: (48, 56, 48), 2: (64, 72)}
SHIFT = 3  # voxels along y between the moving and the fixed anatomy
SCALE = 100.0  # template intensities [0, 1] -> about [0, 100]
QUICK_OPTIONS = ["--affine-option", "levels=2", "--affine-option", "iterations=(30,10)",
                 "--option", "levels=2", "--option", "iterations=(10,5)"]
COLUMNS = ["case", "range", "warned", "CLI s", "fit before", "fit after", "inside %",
           "ANTs mean", "ANTs max", "ANTs max all", "SITK mean", "SITK max", "SITK max all",
           "old mean", "old max"]


@dataclass
class Case:
    name: str
    moving: torch.Tensor  # (1, 1, *spatial), the array as stored in the moving file
    moving_affine: np.ndarray  # its header
    fixed: torch.Tensor
    fixed_affine: np.ndarray


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


def rotated_about_centre(affine: np.ndarray, degrees: float, shape: Sequence[int]) -> np.ndarray:
    """``affine`` rotated by ``degrees`` in the world x-y plane about the world centre of its grid."""
    a = math.radians(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    centre = np.eye(4)
    index = [(n - 1) / 2 for n in shape] + [0.0] * (3 - len(shape)) + [1.0]
    centre[:3, 3] = (affine @ np.array(index))[:3]
    return centre @ rotation @ np.linalg.inv(centre) @ affine


def shifted(affine: np.ndarray, millimetres: Sequence[float]) -> np.ndarray:
    moved = affine.copy()
    moved[:3, 3] += np.asarray(millimetres, dtype=float)
    return moved


def template_pair(ndim: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(moving, fixed, fixed affine)``: two windows of the template, 3 voxels apart along y."""
    shape = SHAPES[ndim]
    wide = (shape[0], shape[1] + SHIFT, *shape[2:])
    brain = brain_volume(crop_to=wide) if ndim == 3 else brain_slice(crop_to=wide)
    image = brain.image * SCALE
    fixed = image[:, :, :, SHIFT:].contiguous()
    moving = image[:, :, :, :-SHIFT].contiguous()
    step = np.eye(4)
    step[1, 3] = SHIFT
    return moving, fixed, brain.affine @ step


def make_cases(ndims: Sequence[int]) -> list[Case]:
    cases = []
    if 3 in ndims:
        moving, fixed, affine = template_pair(3)
        shape = SHAPES[3]
        flipped = affine.copy()  # stored right-to-left (LAS): file voxel i is RAS voxel n - 1 - i
        flipped[:3, 0] = -affine[:3, 0]
        flipped[:3, 3] = affine[:3, 3] + affine[:3, 0] * (shape[0] - 1) + [6.0, 0.0, 0.0]
        cases += [Case("3D offset 6 mm", moving, shifted(affine, [6.0, 0, 0]), fixed, affine),
                  Case("3D rotated 8 deg", moving, rotated_about_centre(affine, 8.0, shape), fixed, affine),
                  Case("3D flipped (LAS) + 6 mm", moving.flip(2), flipped, fixed, affine)]
    if 2 in ndims:
        moving, fixed, affine = template_pair(2)
        moved = shifted(rotated_about_centre(affine, 8.0, SHAPES[2]), [4.5, -3.0, 0.0])
        cases.append(Case("2D rotated 8 deg + offset", moving, moved, fixed, affine))
    return cases


# ---------------------------------------------------------------------------
# the command, and the peers applying its field
# ---------------------------------------------------------------------------


def run_command(argv: Sequence[str]) -> tuple[int, str, float]:
    """``(exit status, stderr, seconds)`` of ``regedu *argv``, run in this process."""
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = cli.main([str(a) for a in argv])
    return status, err.getvalue(), time.perf_counter() - start


def ants_applies(moving: Path, fixed: Path, disp: Path, ndim: int) -> np.ndarray:
    """antsApplyTransforms -d ndim -i moving -r fixed -t disp (linear, 0 outside), in the fixed file's
    voxel order."""
    reference = ants.image_read(str(fixed), dimension=ndim)
    image = ants.image_read(str(moving), dimension=ndim)
    return ants.apply_transforms(reference, image, [str(disp)], interpolator="linear").numpy()


def stacked_copy(path: Path) -> Path:
    """The 2D image file ``path`` rewritten as an (X, Y, 1) NIfTI file, same affine.

    ITK's reader, asked for a 2D image (``-d 2``), takes the direction of a 2D file from the top-left
    2 x 2 of its header, but gives an (X, Y, 1) file the identity direction (origin and spacing kept):
    a slice saved in RAS (direction diag(-1, -1) in ITK's LPS) comes out mirrored about its origin.
    """
    img = nib.load(str(path))
    stacked = nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, None], img.affine)
    stacked.set_qform(img.affine, code=1)
    stacked.set_sform(img.affine, code=1)
    copy = path.with_name(path.name.replace(".nii.gz", "_xy1.nii.gz"))
    nib.save(stacked, str(copy))
    return copy


def sitk_applies(moving: Path, fixed: Path, disp: Path, ndim: int) -> np.ndarray:
    """SimpleITK resampling through the field file (linear, 0 outside), in the fixed file's voxel order."""
    reference = sitk.ReadImage(str(fixed), sitk.sitkFloat64)
    image = sitk.ReadImage(str(moving), sitk.sitkFloat64)
    if ndim == 2:
        reference, image = (i[:, :, 0] if i.GetDimension() == 3 else i for i in (reference, image))
    field = sitk.DisplacementFieldTransform(sitk.ReadImage(str(disp), sitk.sitkVectorFloat64))
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, field, sitk.sitkLinear, 0.0)).T


def sampling_points(disp: torch.Tensor, moving_affine: np.ndarray, fixed_affine: np.ndarray) -> torch.Tensor:
    """Where fixed voxel x reads the moving image through the field and both headers: moving voxel
    indices ``inv(A_moving) A_fixed (x + disp(x))``, ``(ndim, *fixed)`` (RAS-ordered arrays)."""
    ndim = disp.shape[1]
    full = np.linalg.inv(moving_affine) @ fixed_affine
    columns = [*range(ndim), 3]
    matrix = torch.from_numpy(full[:ndim][:, columns])
    where = identity_grid(disp.shape[2:], dtype=torch.float64) + disp[0].double()
    return torch.einsum("ij,j...->i...", matrix[:, :ndim], where) + matrix[:, ndim].view(-1, *[1] * ndim)


def inside(points: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Whether each point lies within the voxel centres ``[0, n - 1]`` of a grid ``shape``."""
    ok = torch.ones(points.shape[1:], dtype=torch.bool)
    for axis, n in enumerate(shape):
        ok &= (points[axis] >= 0) & (points[axis] <= n - 1)
    return ok


Row = dict[str, object]


def measure(case: Case, folder: Path, method: str, extra: Sequence[str], device: str) -> list[Row]:
    """One run of the command on ``case``, and the comparisons: one row (3D); two in 2D, ANTs given
    2D copies of the image files, then the files as written."""
    ndim = case.fixed.dim() - 2
    slug = case.name.split()[1].replace("(", "").replace(")", "")
    moving_path = save_nifti(case.moving, folder / f"moving_{ndim}d_{slug}.nii.gz", case.moving_affine)
    fixed_path = save_nifti(case.fixed, folder / f"fixed_{ndim}d.nii.gz", case.fixed_affine, overwrite=True)
    out, disp_path = folder / f"out_{ndim}d_{slug}.nii.gz", folder / f"disp_{ndim}d_{slug}.nii.gz"
    status, err, seconds = run_command(["register", moving_path, fixed_path, "-o", out, "--disp", disp_path,
                                        "--disp-format", "itk", "--method", method, "--device", device,
                                        *extra])
    if status != 0:
        raise SystemExit(f"{case.name}: regedu register failed ({status}):\n{err}")
    ours = load_nifti(out).image[0, 0].double()  # the fixed file is RAS: the same voxel order as the peers'
    moving = load_nifti(moving_path)  # RAS order, as the command loads it
    fixed = load_nifti(fixed_path)
    disp = load_disp(disp_path).image  # back from ITK's convention to voxels of the fixed grid
    points = sampling_points(disp, moving.affine, fixed.affine)
    mask = inside(points, moving.image.shape[2:])
    old_mask = mask & inside(identity_grid(disp.shape[2:], dtype=torch.float64) + disp[0].double(),
                             moving.image.shape[2:])
    old = warp(moving.image.double(), disp.double())[0, 0]  # voxel to voxel: the moving header ignored
    before = resample_like(moving.image, moving.affine, fixed.image.shape[2:], fixed.affine)[0, 0].double()
    fixed_image = fixed.image[0, 0].double()
    row: dict[str, object] = {
        "case": case.name,
        "range": float(case.moving.max() - case.moving.min()),
        "warned": "yes" if "headers of" in err and "different places" in err else "no",
        "CLI s": seconds,
        "fit before": float((before - fixed_image)[mask].abs().mean()),
        "fit after": float((ours - fixed_image)[mask].abs().mean()),
        "inside %": 100 * float(mask.double().mean()),
    }
    row["old mean"] = float((old - ours)[old_mask].abs().mean())
    row["old max"] = float((old - ours)[old_mask].abs().max())

    def compare(peer: str, theirs: np.ndarray, into: dict[str, object]) -> None:
        image = torch.from_numpy(np.ascontiguousarray(theirs)).double().reshape(ours.shape)
        difference = (image - ours).abs()
        into[f"{peer} mean"] = float(difference[mask].mean())
        into[f"{peer} max"] = float(difference[mask].max())
        into[f"{peer} max all"] = float(difference.max())
        into[f"{peer} mean all"] = float(difference.mean())

    compare("SITK", sitk_applies(moving_path, fixed_path, disp_path, ndim), row)
    if ndim == 3:
        compare("ANTs", ants_applies(moving_path, fixed_path, disp_path, ndim), row)
        return [row]
    compare("ANTs", ants_applies(moving_path, fixed_path, disp_path, ndim), row)
    stacked: dict[str, object] = {"case": "2D, ANTs reading (X, Y, 1) copies", "range": row["range"]}
    copies = stacked_copy(moving_path), stacked_copy(fixed_path)
    compare("ANTs", ants_applies(*copies, disp_path, ndim), stacked)
    return [row, stacked]


def set_threads(count: int) -> None:
    """``count`` threads for torch and for ITK (inside ANTs and SimpleITK)."""
    torch.set_num_threads(count)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(count)  # read by ANTs' ITK
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="device of the registration: cpu (default), cuda...")
    parser.add_argument("--quick", action="store_true", help="a few iterations per stage: checks the script")
    parser.add_argument("--method", default="default", help="--method of regedu register (default: default)")
    parser.add_argument("--ndim", type=int, nargs="+", default=[3, 2], choices=[2, 3])
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and ITK")
    parser.add_argument("--keep", type=Path, default=None, help="keep the NIfTI files in this folder")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default: benchmarks/results/headers_<device>.md)")
    args = parser.parse_args()
    if args.threads:
        set_threads(args.threads)
    device = resolve_device(args.device)
    extra = QUICK_OPTIONS if args.quick else []
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for case in make_cases(args.ndim):
            measured = measure(case, folder, args.method, extra, args.device)
            rows += measured
            print("\n".join(format_table(COLUMNS, measured).splitlines()[2:]), flush=True)
    print(format_table(COLUMNS, rows))
    quick = " with few iterations (--quick)" if args.quick else ""
    notes = "\n\n".join(__doc__.split("\n\n")[1:7])
    notes += (f"\n\nMethod: `--method {args.method}`{quick}. "
              "Mean differences over the whole grid (edge included), ANTs: "
              + ", ".join(f"{row['ANTs mean all']:.2g}" for row in rows) + "; SimpleITK: "
              + ", ".join(f"{row['SITK mean all']:.2g}" for row in rows if "SITK mean all" in row) + ".")
    if 2 in args.ndim:
        notes += ("\n\nThe row \"2D, ANTs reading (X, Y, 1) copies\" is ANTs on the same images stored "
                  "(X, Y, 1), as many tools save slices: ITK's 2D reader gives such a file the identity "
                  "direction (a RAS slice's is diag(-1, -1) in ITK's LPS) and keeps its origin, so ANTs "
                  "reads both slices mirrored about their origins; the field file (X, Y, 1, 1, 2) keeps "
                  "its direction. `antsApplyTransforms -d 2` needs 2D image files (dim[0] = 2).")
    path = args.output or default_output("headers", device, args.quick)
    env = environment(device, ["antspyx", "SimpleITK", "nibabel", "numpy"])
    write_results(path, "Header cases: the CLI's ITK field applied by ANTs and SimpleITK", notes, COLUMNS,
                  rows, env)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
