"""Data for registration lessons: offline sample brains, synthetic generators and datasets.

:mod:`~regedu.data.samples` (the MNI template that ships with nilearn),
:mod:`~regedu.data.synthetic` (seeded random fields, affines, label maps, images, subjects and
toy shapes), :mod:`~regedu.data.datasets` (torch Datasets of registration pairs) and
:mod:`~regedu.data.varied` (varied 2D brain pairs: every level, orientation, deformation size,
contrast, with or without a head, for networks that generalise), :mod:`~regedu.data.pairs` (which
NIfTI files make the pairs, and one pair loaded ready to register), :mod:`~regedu.data.check`
(what may go wrong with a pair, before registering it), :mod:`~regedu.data.landmarks`
(landmarks with known true positions, for the target registration error) and
:mod:`~regedu.data.oasis` (the prepared OASIS folders of real pairs, or a stand-in in their layout).
"""

from .check import PairReport, check_pair
from .datasets import LargeDeformationPairs, NiftiPairs, SynthMorphPairs, TemplatePairs, item_seed
from .io import (
    NiftiVolume,
    Padding,
    grid_offset,
    load_disp,
    load_labels,
    load_nifti,
    normalize_intensity,
    pad_to_multiple,
    resample_like,
    rescale_percentiles,
    same_grid,
    save_nifti,
    unpad,
)
from .landmarks import LANDMARK_PLACES, landmarks, map_landmarks
from .oasis import OASIS_DATASETS, data_roots, fetch_command, find_oasis, write_oasis_stand_in
from .pairs import NiftiPair, collect_pairs, load_pair, read_pair_list, warp_moving
from .samples import TISSUE_NAMES, Brain, brain_label_names, brain_slice, brain_volume, load_brain
from .shapes import disk, large_deformation_pair, letter_c, letter_o, square
from .synthetic import (
    T2_INTENSITIES,
    SyntheticSubject,
    augment_intensity,
    gaussian_blur,
    integrate_smooth,
    make_generator,
    random_affine,
    random_disp,
    random_transform,
    random_velocity,
    smooth_noise,
    subject_from_disp,
    synth_image,
    synth_labels,
    synth_subject,
    t2_like,
)
from .varied import (
    ORIENTATIONS,
    BrainSlicePairs,
    BrainVolumePairs,
    add_synthetic_head,
    brain_section,
    cerebrum_levels,
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
    "T2_INTENSITIES",
    "t2_like",
    # varied 2D brain pairs
    "ORIENTATIONS",
    "BrainSlicePairs",
    "BrainVolumePairs",
    "add_synthetic_head",
    "brain_section",
    "cerebrum_levels",
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
    "rescale_percentiles",
    "pad_to_multiple",
    "resample_like",
    "same_grid",
    "grid_offset",
    "save_nifti",
    "unpad",
    # landmarks with known true positions (target registration error)
    "LANDMARK_PLACES",
    "landmarks",
    "map_landmarks",
    # check
    "PairReport",
    "check_pair",
    # pairs of NIfTI files: lists of pairs, and one pair loaded ready to register
    "NiftiPair",
    "collect_pairs",
    "load_pair",
    "read_pair_list",
    "warp_moving",
    # real inter-subject pairs: prepared OASIS folders, or a stand-in in their layout
    "OASIS_DATASETS",
    "data_roots",
    "fetch_command",
    "find_oasis",
    "write_oasis_stand_in",
]
