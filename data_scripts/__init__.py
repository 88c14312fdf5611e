"""Fetch and prepare public registration datasets, for users who have internet.

Nothing in regedu needs these scripts: the lessons run offline on the data that
ships with the package. When you want real pairs of brains, run from the
repository root::

    python -m data_scripts.fetch --list
    python -m data_scripts.fetch neurite-oasis-2d --root regedu_data

and read the prepared folder with ``regedu.data.NiftiPairs("regedu_data/neurite-oasis-2d/pairs.csv")``:
it holds ``images/*.nii.gz``, ``labels/*.nii.gz`` (same file names) and a
``pairs.csv`` with columns ``moving,fixed,moving_labels,fixed_labels`` (paths
relative to the folder).

Modules (standard library plus nibabel/numpy only):

* :mod:`data_scripts.registry`: where each dataset lives, its checksums and licence;
* :mod:`data_scripts.download`: resumable HTTP downloads with SHA-256/MD5 checks;
* :mod:`data_scripts.pins`: SHA-256 values pinned on first download where none is published;
* :mod:`data_scripts.extract`: archive extraction (tarfile's ``"data"`` filter, plus checks)
  that refuses path traversal, absolute paths and links leaving the destination;
* :mod:`data_scripts.prepare`: turn an extracted dataset into the folder format above;
* :mod:`data_scripts.fetch`: the command line that chains the three steps.
"""
