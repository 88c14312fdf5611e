"""Turn an extracted dataset into the folder that regedu's NIfTI-folder dataset reads.

The output folder holds::

    images/<case>.nii.gz      one image per case
    labels/<case>.nii.gz      its label map, same file name
    pairs.csv                 header "moving,fixed,moving_labels,fixed_labels", then one
                              pair per line, paths relative to the folder
                              (images/<case>.nii.gz, labels/<case>.nii.gz)

``regedu.data.NiftiPairs("<folder>/pairs.csv")`` reads it as it is.

Files are copied byte for byte (no resampling: ``regedu.data.load_nifti``
reorients on loading). Every image and label header is opened with nibabel and
all shapes are compared before anything is written; the folder is assembled
under a hidden temporary name and renamed into place at the end, so a failed
preparation leaves nothing behind.

Layouts understood:

``neurite-2d`` / ``neurite-3d``
    ``neurite-oasis[.2d].v1.0.tar``: one folder per subject
    (``OASIS_OAS1_0001_MR1/``) holding ``slice_norm.nii.gz`` + ``slice_seg24.nii.gz``
    (2D, 160 x 192) or ``aligned_norm.nii.gz`` + ``aligned_seg35.nii.gz`` (3D,
    160 x 192 x 224). No official pairs: each subject is registered to the next
    one in sorted order (moving = subject k + 1, fixed = subject k), as Learn2Reg does.
``learn2reg``
    ``OASIS_dataset.json`` beside ``imagesTr/`` and ``labelsTr/``: the ``training``
    entries with a label become the cases; ``registration_val`` gives the pairs
    (falling back to consecutive pairs when it is missing).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import NamedTuple

import nibabel as nib

__all__ = ["Case", "prepare", "prepare_neurite_oasis", "prepare_learn2reg_oasis", "write_folder"]

NEURITE_FILES = {
    2: ("slice_norm.nii.gz", "slice_seg24.nii.gz"),
    3: ("aligned_norm.nii.gz", "aligned_seg35.nii.gz"),
}


class Case(NamedTuple):
    """One subject: its output name and the source image and label files."""

    name: str
    image: Path
    label: Path


def prepare(layout: str, source, out, fetch_hint: str = "") -> Path:
    """Prepare ``source`` (an extracted archive) of the given ``layout`` into the folder ``out``."""
    if layout == "neurite-2d":
        return prepare_neurite_oasis(source, out, ndim=2, fetch_hint=fetch_hint)
    if layout == "neurite-3d":
        return prepare_neurite_oasis(source, out, ndim=3, fetch_hint=fetch_hint)
    if layout == "learn2reg":
        return prepare_learn2reg_oasis(source, out, fetch_hint=fetch_hint)
    raise ValueError(f"unknown layout {layout!r}; expected 'neurite-2d', 'neurite-3d' or 'learn2reg'.")


def prepare_neurite_oasis(source, out, ndim: int = 2, fetch_hint: str = "") -> Path:
    """Neurite OASIS subject folders -> ``out`` (see the module docstring)."""
    source = _existing_folder(source)
    image_name, label_name = NEURITE_FILES[ndim]
    images = sorted(source.rglob(image_name))
    if not images:
        raise FileNotFoundError(
            f"no {image_name} found under {source}: this is not an extracted neurite-oasis "
            f"{'2D' if ndim == 2 else '3D'} archive (subject folders OASIS_OAS1_*_MR1/). {fetch_hint}"
        )
    cases = [Case(path.parent.name, path, path.parent / label_name) for path in images]
    return write_folder(cases, _consecutive_pairs(cases), out)


def prepare_learn2reg_oasis(source, out, fetch_hint: str = "") -> Path:
    """Learn2Reg OASIS (``OASIS_dataset.json``, ``imagesTr/``, ``labelsTr/``) -> ``out``."""
    source = _existing_folder(source)
    found = sorted(source.rglob("OASIS_dataset.json"))
    if not found:
        raise FileNotFoundError(
            f"no OASIS_dataset.json found under {source}: this is not an extracted Learn2Reg OASIS "
            f"archive. {fetch_hint}"
        )
    root = found[0].parent
    meta = json.loads(found[0].read_text())
    cases = [Case(_stem(entry["image"]), root / entry["image"], root / entry["label"])
             for entry in meta.get("training", []) if entry.get("label")]
    if not cases:
        raise ValueError(f"{found[0]} lists no training image with a label; nothing to prepare.")
    names = {case.name for case in cases}
    pairs = [(_stem(p["moving"]), _stem(p["fixed"])) for p in meta.get("registration_val", [])
             if _stem(p["moving"]) in names and _stem(p["fixed"]) in names]
    return write_folder(cases, pairs or _consecutive_pairs(cases), out)


def _existing_folder(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder; give the folder the archive was extracted into.")
    if not any(path.iterdir()):
        raise FileNotFoundError(f"{path} is empty; extract the dataset archive into it first.")
    return path


def _stem(relative: str) -> str:
    """``./imagesTr/OASIS_0001_0000.nii.gz`` -> ``OASIS_0001_0000``."""
    name = Path(relative).name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem


def _consecutive_pairs(cases: list[Case]) -> list[tuple[str, str]]:
    """(moving, fixed) = (case k + 1, case k) for every k."""
    return [(cases[k + 1].name, cases[k].name) for k in range(len(cases) - 1)]


def _header_shape(path: Path) -> tuple[int, ...]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: every image needs a label map of the same name.")
    try:
        return tuple(nib.load(str(path)).shape)
    except Exception as err:  # nibabel raises several types for a bad header
        raise ValueError(f"{path} is not a readable NIfTI file ({err}); re-extract the archive.") from err


def _check_shapes(cases: list[Case]) -> None:
    """All images and labels must share one grid: name the first file that does not."""
    reference = _header_shape(cases[0].image)
    for case in cases:
        for path in (case.image, case.label):
            shape = _header_shape(path)
            if shape != reference:
                raise ValueError(
                    f"{path} has shape {shape} but {cases[0].image} has {reference}: the cases are not "
                    f"on one grid. Remove the odd case or resample it (regedu.data.resample_like)."
                )


def write_folder(cases: list[Case], pairs: list[tuple[str, str]], out) -> Path:
    """Copy ``cases`` into ``out/images`` and ``out/labels`` and write ``out/pairs.csv``.

    ``pairs`` holds (moving, fixed) case names. ``out`` must not exist yet (or be
    empty): nothing of the user's is overwritten.
    """
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder or move it away first.")
    _check_shapes(cases)
    staging = out.with_name(f".{out.name}.preparing-{uuid.uuid4().hex[:8]}")
    try:
        for folder in ("images", "labels"):
            (staging / folder).mkdir(parents=True)
        for case in cases:
            shutil.copyfile(case.image, staging / "images" / f"{case.name}.nii.gz")
            shutil.copyfile(case.label, staging / "labels" / f"{case.name}.nii.gz")
        with open(staging / "pairs.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["moving", "fixed", "moving_labels", "fixed_labels"])
            writer.writerows([f"images/{m}.nii.gz", f"images/{f}.nii.gz", f"labels/{m}.nii.gz",
                              f"labels/{f}.nii.gz"] for m, f in pairs)
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
