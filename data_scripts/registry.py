"""Where each public dataset lives, how to check it, and what you agree to by using it.

URLs and file layouts were taken from the data providers' pages and from code
that uses them (sources in each entry's ``notes``). A checksum is given only
when a published value was found; ``sha256=None`` means none is published: the
first download is checked against the published MD5 where there is one, and its
SHA-256 is then pinned locally (trust on first use, :mod:`data_scripts.pins`) so
that later downloads must match it. Nothing here is a guessed hash.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One downloadable archive and how to prepare it.

    Attributes:
        name: the key used on the command line.
        url: the archive's address.
        filename: the name it is saved under.
        layout: which preparation step reads it (see :mod:`data_scripts.prepare`).
        size: approximate download size, for the user.
        sha256: published SHA-256, or None (pinned on first download: trust on first use).
        md5: published MD5, or None. Checked as well when given.
        notes: provenance of URL and checksums, licence and citation.
    """

    name: str
    url: str
    filename: str
    layout: str
    size: str
    sha256: str | None
    md5: str | None
    notes: str


NEURITE_NOTES = (
    "Neurite OASIS (414 OASIS-1 subjects processed with FreeSurfer and SAMSEG by A. Hoopes and "
    "A. V. Dalca): https://github.com/adalca/medical-datasets/blob/master/neurite-oasis.md, which "
    "publishes the URL and the MD5. Cite HyperMorph (Hoopes et al., MELBA 2022) and OASIS "
    "(Marcus et al., J Cogn Neurosci 2007), and follow the OASIS Data Use Agreement "
    "(https://www.oasis-brains.org). Used by the VoxelMorph tutorials."
)

SOURCES: dict[str, Source] = {
    "neurite-oasis-2d": Source(
        name="neurite-oasis-2d",
        url="https://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/neurite-oasis.2d.v1.0.tar",
        filename="neurite-oasis.2d.v1.0.tar",
        layout="neurite-2d",
        size="24 MB",
        sha256=None,
        md5="c9ae5864f250c7e4b8d83a104e51ae8e",
        notes=NEURITE_NOTES + " 2D: coronal slice 109 of each subject, 160 x 192, 24 labels "
        "(slice_norm.nii.gz, slice_seg24.nii.gz). No published SHA-256 found: the first download is "
        "checked against the published MD5, then its SHA-256 is pinned on first download.",
    ),
    "neurite-oasis-3d": Source(
        name="neurite-oasis-3d",
        url="https://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/neurite-oasis.v1.0.tar",
        filename="neurite-oasis.v1.0.tar",
        layout="neurite-3d",
        size="6.6 GB (only aligned_norm/aligned_seg35 are extracted, about 1.2 GB)",
        sha256="86dd117dda17f736ade8a4088d7e98e066e1181950fe8b406f1a35f7fb743e78",
        md5="081392a8150ff99ab7a64a9ded377835",
        notes=NEURITE_NOTES + " 3D: affinely aligned 160 x 192 x 224 volumes at 1 mm, 35 labels "
        "(aligned_norm.nii.gz, aligned_seg35.nii.gz). SHA-256 as pinned by the torch-em project "
        "(torch_em/data/datasets/medical/oasis.py), which verifies its downloads with it.",
    ),
    "learn2reg-oasis": Source(
        name="learn2reg-oasis",
        url="https://cloud.imi.uni-luebeck.de/s/mFnRMzjpSSLbzxm/download",
        filename="learn2reg_oasis.zip",
        layout="learn2reg",
        size="not published; 414 compressed volumes, expect some GB",
        sha256=None,
        md5=None,
        notes="Learn2Reg OASIS task (https://learn2reg.grand-challenge.org/, Hering et al., IEEE TMI "
        "2022): imagesTr/ and labelsTr/ with OASIS_dataset.json listing the training scans and the "
        "official validation pairs (registration_val). Same OASIS licence and citations as above. "
        "The URL comes from a public helper script that downloads this package; if the share has "
        "moved, take the current link from the Learn2Reg datasets page and pass it with --url. "
        "No published checksum found: the first download cannot be verified; its SHA-256 is pinned on first "
        "download, and later downloads must match it.",
    ),
}
