"""Checked exercises of lesson 07, 3D brains and NIfTI files (``notebooks/07_3d_brains_and_nifti.ipynb``).

ex1: the voxel at a world coordinate (an index, from the affine's inverse); ex2: a displacement's largest
length in voxels and in mm; ex3: what tells a left-right flip apart (the findings of five small
experiments, recomputed from the two files).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from regedu import data, warps
from regedu.course.feedback import exercise, expect


@exercise(1, right="the inverse of the affine takes millimetres back to voxel indices")
def ex1(answer, affine, world=(0.0, 0.0, 0.0)):
    """answer: the voxel index (i, j, k), integers, nearest to `world` (mm) under `affine` (4, 4)."""
    affine = np.asarray(affine, dtype=float)
    exact = (np.linalg.inv(affine) @ np.array([*world, 1.0]))[:3]
    expect(isinstance(answer, (tuple, list, np.ndarray, torch.Tensor)) and len(answer) == 3,
           "give the voxel as three indices (i, j, k), e.g. a tuple")
    given = [float(value) for value in answer]
    expect(not np.allclose(given, (affine @ np.array([*world, 1.0]))[:3]),
           "you multiplied by the affine, which takes voxel indices to mm; to go from mm to voxels use its "
           "inverse, np.linalg.inv(brain.affine)")
    expect(all(value == int(value) for value in given),
           f"round each index to an integer: a voxel index is whole (yours: {tuple(given)})")
    expect(not np.array_equal(given, np.floor(exact)) or np.array_equal(np.floor(exact), np.round(exact)),
           "int() cuts the decimals off; round to the nearest voxel instead: int(round(i))")
    expect(np.array_equal(given, np.round(exact)),
           "that voxel is not at the given point: multiply np.linalg.inv(affine) by the point with a 1 "
           "appended, [x, y, z, 1], and keep the first three values")


@exercise(2, right="a displacement in voxels times the voxel spacing is the displacement in millimetres")
def ex2(answer, disp, spacing):
    """answer: {"voxels": largest length in voxels, "mm": the same in mm}; disp: the field (B, 3, *spatial)
    in voxels of the registration grid; spacing: that grid's voxel size in mm per axis."""
    expect(isinstance(answer, dict) and set(answer) == {"voxels", "mm"},
           'give a dict {"voxels": ..., "mm": ...}')
    disp = disp.detach().cpu()
    voxels = disp.norm(dim=1).max().item()
    mm = warps.disp_to_mm(disp, spacing).norm(dim=1).max().item()
    given_voxels, given_mm = float(answer["voxels"]), float(answer["mm"])
    expect(abs(given_voxels - disp.abs().max().item()) > 1e-3 or abs(voxels - disp.abs().max().item()) < 1e-3,
           "that is the largest single component; a displacement's length is its norm over the channel "
           "axis, disp.norm(dim=1)")
    expect(abs(given_voxels - voxels) < 1e-3,
           "your length in voxels is not the largest of disp.norm(dim=1) of the classical result's field")
    expect(abs(given_mm - voxels / spacing[0]) > 1e-3,
           "you divided by the spacing: each voxel is spacing mm long, so millimetres = voxels x spacing")
    expect(abs(given_mm - mm) < 1e-3,
           f"your length in mm is not that of warps.disp_to_mm(disp, reg_spacing): the field lives on the "
           f"registration grid, whose voxels are {tuple(spacing)} mm")


FLIP_KEYS = ("raw_arrays_equal", "orientation_codes", "equal_after_load_nifti",
             "check_pair_warns_without_affines", "check_pair_warns_with_affines",
             "flip_under_kept_header_caught")


def _codes(affine) -> str:
    return "".join(nib.aff2axcodes(affine))


def _flip_facts(ras_file, las_file) -> dict:
    """What the five experiments of exercise 3 find, recomputed from the two files."""
    images = [nib.load(path) for path in (ras_file, las_file)]
    arrays = [torch.from_numpy(image.get_fdata()).float()[None, None] for image in images]
    loaded = [data.load_nifti(path).image for path in (ras_file, las_file)]
    blind = data.check_pair(*arrays, factor=8, verbose=False)
    told = data.check_pair(*arrays, moving_affine=images[0].affine, fixed_affine=images[1].affine, factor=8,
                           verbose=False)
    with tempfile.TemporaryDirectory() as folder:
        flipped = Path(folder) / "flipped_voxels_kept_header.nii.gz"
        nib.save(nib.Nifti1Image(images[0].get_fdata()[::-1].copy(), images[0].affine), flipped)
        kept = data.check_pair(ras_file, flipped, factor=8, verbose=False)
    return {"raw_arrays_equal": torch.equal(*arrays),
            "orientation_codes": (_codes(images[0].affine), _codes(images[1].affine)),
            "equal_after_load_nifti": torch.equal(*loaded),
            "check_pair_warns_without_affines": not blind.ok, "check_pair_warns_with_affines": not told.ok,
            "flip_under_kept_header_caught": not kept.ok}


@exercise(3, right="the pixels of a flipped brain look right and correlate highly; only the header says "
                   "which side is which, so load through it and keep it with the data")
def ex3(answer, ras_file, las_file):
    """answer: a dict with FLIP_KEYS (five booleans and the pair of orientation codes, RAS file first);
    ras_file, las_file: the two files of the exercise."""
    expect(isinstance(answer, dict) and set(answer) == set(FLIP_KEYS),
           f"give a dict with the keys {FLIP_KEYS}")
    facts = _flip_facts(ras_file, las_file)
    codes = tuple("".join(code) for code in answer["orientation_codes"])
    expect(answer["raw_arrays_equal"] == facts["raw_arrays_equal"],
           "(a) compare the raw arrays with np.array_equal or torch.equal: the LAS file stores the same "
           "world image in the other voxel order along x, so its array is the mirror image")
    expect(codes == facts["orientation_codes"],
           "(b) read nib.aff2axcodes(nib.load(path).affine) of each file, the RAS file first, e.g. "
           "('RAS', 'LPS')")
    expect(answer["equal_after_load_nifti"] == facts["equal_after_load_nifti"],
           "(c) data.load_nifti reads each header and reorders the voxels to RAS: compare the two tensors it "
           "returns")
    expect(answer["check_pair_warns_without_affines"] == facts["check_pair_warns_without_affines"],
           "(d) without affines, check_pair sees two arrays and nothing about orientation: did that report "
           "warn (report.ok is False when it warns)?")
    expect(answer["check_pair_warns_with_affines"] == facts["check_pair_warns_with_affines"],
           "(d) given the affines, check_pair compares the orientations they record: did that report warn?")
    expect(answer["flip_under_kept_header_caught"] == facts["flip_under_kept_header_caught"],
           "(e) voxels flipped under an unchanged header: same codes, same grid, a high correlation. Did "
           "check_pair of the two paths warn (report.ok)?")
