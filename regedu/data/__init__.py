"""Data for registration lessons: offline sample brains, synthetic generators and datasets.

:mod:`~regedu.data.samples` (the MNI template that ships with nilearn),
:mod:`~regedu.data.synthetic` (seeded random fields, affines, label maps, images, subjects and
toy shapes) and :mod:`~regedu.data.datasets` (torch Datasets of registration pairs).
"""

from .check import PairReport, check_pair
from .datasets import LargeDeformationPairs, NiftiPairs, SynthMorphPairs, TemplatePairs, item_seed
from .io import (
    NiftiVolume,
    Padding,
    load_disp,
    load_labels,
    load_nifti,
    normalize_intensity,
    pad_to_multiple,
    resample_like,
    save_nifti,
    unpad,
)
from .samples import TISSUE_NAMES, Brain, brain_label_names, brain_slice, brain_volume, load_brain
from .synthetic import (
    SyntheticSubject,
    augment_intensity,
    disk,
    gaussian_blur,
    integrate_smooth,
    large_deformation_pair,
    letter_c,
    letter_o,
    make_generator,
    random_affine,
    random_disp,
    random_transform,
    random_velocity,
    smooth_noise,
    square,
    subject_from_disp,
    synth_image,
    synth_labels,
    synth_subject,
)

__all__ = [
    # samples
    "Brain",
    "TISSUE_NAMES",
    "brain_label_names",
    "brain_slice",
    "brain_volume",
    "load_brain",
    # synthetic
    "SyntheticSubject",
    "augment_intensity",
    "disk",
    "gaussian_blur",
    "integrate_smooth",
    "large_deformation_pair",
    "letter_c",
    "letter_o",
    "make_generator",
    "random_affine",
    "random_disp",
    "random_transform",
    "random_velocity",
    "smooth_noise",
    "square",
    "subject_from_disp",
    "synth_image",
    "synth_labels",
    "synth_subject",
    # datasets
    "NiftiPairs",
    "SynthMorphPairs",
    "LargeDeformationPairs",
    "TemplatePairs",
    "item_seed",
    # io (NIfTI at the boundary)
    "NiftiVolume",
    "Padding",
    "load_disp",
    "load_labels",
    "load_nifti",
    "normalize_intensity",
    "pad_to_multiple",
    "resample_like",
    "save_nifti",
    "unpad",
    # check
    "PairReport",
    "check_pair",
]
