"""Real inter-subject pairs: find the prepared OASIS folders, or write a stand-in in their layout.

regedu ships no real scans. With internet, ``data_scripts`` (in the repository, beside ``regedu/``)
downloads the OASIS brains once and prepares them; from the repository root::

    python -m data_scripts.fetch neurite-oasis-2d --root regedu_data

prepares ``regedu_data/neurite-oasis-2d/`` (:func:`fetch_command` writes this line for any dataset
and root)::

    images/<case>.nii.gz      one image per subject
    labels/<case>.nii.gz      its label map, same file name
    pairs.csv                 moving,fixed,moving_labels,fixed_labels (paths relative to the folder)

which :func:`regedu.data.read_pair_list`, :func:`regedu.data.load_pair` and
:class:`regedu.data.NiftiPairs` read as it is. This module adds the two steps around them:

* :func:`find_oasis`: where a prepared folder is, looking under :func:`data_roots` (an explicit
  root, else ``$REGEDU_DATA``, else ``regedu_data`` in the working folder or its parent, since a
  notebook runs in ``notebooks/`` and the fetch command in the repository root);
* :func:`write_oasis_stand_in`: the kit's own synthetic subjects written in that same layout, so
  that the code which reads real files runs without them (offline, in the tests). A stand-in is
  not real data: its subjects are all one template moved by smooth random transforms.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from ..checks import check_choice, check_positive_int
from .io import save_nifti
from .samples import brain_slice, brain_volume
from .synthetic import synth_subject

__all__ = ["OASIS_DATASETS", "DATA_ROOT_VARIABLE", "DEFAULT_DATA_ROOT", "fetch_command", "data_roots",
           "find_oasis", "write_oasis_stand_in"]

OASIS_DATASETS = ("neurite-oasis-2d", "neurite-oasis-3d", "learn2reg-oasis")
"""The prepared folders ``data_scripts.fetch`` makes (its registry's names, kept in step by a test)."""
DATA_ROOT_VARIABLE = "REGEDU_DATA"
DEFAULT_DATA_ROOT = "regedu_data"
PAIR_COLUMNS = ("moving", "fixed", "moving_labels", "fixed_labels")


def fetch_command(name: str = "neurite-oasis-2d", root=DEFAULT_DATA_ROOT) -> str:
    """The command, run in the repository root, that downloads and prepares ``name`` under ``root``."""
    check_choice(name, "name", OASIS_DATASETS)
    return f"python -m data_scripts.fetch {name} --root {root}"


def data_roots(root=None) -> list[Path]:
    """The folders that may hold prepared datasets, in the order :func:`find_oasis` tries them.

    ``root`` when given; else the environment variable ``REGEDU_DATA`` when set; else
    ``regedu_data`` in the working folder, then in its parent (a notebook runs in ``notebooks/``,
    while the fetch command writes ``regedu_data`` in the repository root).
    """
    if root is not None:
        return [Path(root).expanduser()]
    if os.environ.get(DATA_ROOT_VARIABLE):
        return [Path(os.environ[DATA_ROOT_VARIABLE]).expanduser()]
    here = Path.cwd()
    return [here / DEFAULT_DATA_ROOT, here.parent / DEFAULT_DATA_ROOT]


def find_oasis(name: str = "neurite-oasis-2d", root=None) -> Path | None:
    """The prepared folder of dataset ``name`` (one holding ``pairs.csv``), or ``None``.

    Looks for ``<root>/<name>/pairs.csv`` under each of :func:`data_roots` (``root`` itself may
    also be the prepared folder). A folder without ``pairs.csv`` is a preparation that did not
    finish and is skipped: run :func:`fetch_command`'s command again.
    """
    check_choice(name, "name", OASIS_DATASETS)
    for base in data_roots(root):
        for folder in (base / name, base):
            if folder.name == name and (folder / "pairs.csv").is_file():
                return folder
    return None


def _template(ndim: int, parcels: bool, device):
    """The MNI template at 2 mm: the axial slice (2D) or the volume (3D), and its voxel-to-mm affine."""
    brain = brain_slice(parcels=parcels, device=device) if ndim == 2 else brain_volume(parcels=parcels,
                                                                                       device=device)
    return brain.image, brain.labels, brain.affine


def write_oasis_stand_in(folder, count: int = 6, ndim: int = 2, seed: int = 0, parcels: bool = True,
                         rotation: float = 5.0, translation: float = 3.0, magnitude: float = 4.0,
                         device=None) -> Path:
    """Write ``count`` synthetic subjects into ``folder`` in the layout of a prepared OASIS folder.

    Each subject is the MNI template at 2 mm (the axial slice of :func:`~regedu.data.brain_slice`,
    96 x 112, for ``ndim=2``; the volume of :func:`~regedu.data.brain_volume` for ``ndim=3``) moved
    by its own random affine and smooth deformation, with its own intensity changes
    (:func:`~regedu.data.synth_subject`; ``rotation`` in degrees, ``translation`` and
    ``magnitude`` in voxels), its labels (the 17 geometric parcels, or the 3 tissues with
    ``parcels=False``) carried along. The files hold only what a real dataset holds: images and
    label maps, no field. Pairs are consecutive subjects, moving = subject k + 1 and fixed =
    subject k, as ``data_scripts`` pairs the neurite OASIS subjects.

    Args:
        folder: where to write; it must not exist yet, or be empty.
        count: subjects, at least 2 (``count - 1`` pairs).
        seed: the random transforms' seed (the same seed writes the same files).

    Returns:
        ``folder``, holding ``images/standin_<k>.nii.gz``, ``labels/standin_<k>.nii.gz`` (int16,
        k = 1 .. count) and ``pairs.csv``.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder} exists and is not empty; give a new folder for the stand-in.")
    check_positive_int(count, "count", minimum=2)
    check_choice(ndim, "ndim", (2, 3))
    template, labels, affine = _template(ndim, parcels, device)
    subjects = synth_subject(template, labels, batch=count, rotation=rotation, translation=translation,
                             magnitude=magnitude, seed=seed)
    names = [f"standin_{k:04d}" for k in range(1, count + 1)]
    for part in ("images", "labels"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        image, labels = subjects.image[index:index + 1], subjects.labels[index:index + 1]
        save_nifti(image.cpu(), folder / "images" / f"{name}.nii.gz", affine)
        save_nifti(labels.to(torch.int16).cpu(), folder / "labels" / f"{name}.nii.gz", affine)
    with open(folder / "pairs.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(PAIR_COLUMNS)
        for moving, fixed in zip(names[1:], names[:-1], strict=True):  # moving = subject k + 1, fixed = k
            writer.writerow([f"images/{moving}.nii.gz", f"images/{fixed}.nii.gz", f"labels/{moving}.nii.gz",
                             f"labels/{fixed}.nii.gz"])
    return folder
