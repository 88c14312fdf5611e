"""Command line: download, verify, extract and prepare a public dataset.

Run from the repository root::

    python -m data_scripts.fetch --list
    python -m data_scripts.fetch neurite-oasis-2d --root regedu_data

Steps, each skipped when its result is already there (so the command can be
re-run after an interruption, and resumes a partial download):

1. download ``<root>/downloads/<file>`` (resumable, checksums from the registry; a file
   whose source publishes no SHA-256 has it pinned on first download in
   ``<root>/downloads/sha256-pins.json``, see :mod:`data_scripts.pins`);
2. extract it safely into ``<root>/raw/<name>/``;
3. prepare ``<root>/<name>/`` with ``images/``, ``labels/`` and ``pairs.csv``.

The archive is kept (delete it yourself once the folder is prepared).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .download import USER_AGENT, ChecksumError, DownloadError, download
from .extract import ExtractionUnavailableError, UnsafeArchiveError, safe_extract
from .pins import PIN_FILE_NAME, PinFileError
from .prepare import prepare
from .registry import SOURCES, Source

NEURITE_3D_MEMBERS = ("aligned_norm.nii.gz", "aligned_seg35.nii.gz", ".txt")


def member_filter(source: Source):
    """Which archive members to extract: for the 6.6 GB 3D archive only what preparation uses."""
    if source.layout == "neurite-3d":
        return lambda name: name.endswith(NEURITE_3D_MEMBERS)
    return None


def fetch(source: Source, root, url: str | None = None, sha256: str | None = None,
          user_agent: str = USER_AGENT) -> Path:
    """Run the three steps for ``source`` under ``root``; return the prepared folder."""
    root = Path(root).expanduser()
    prepared = root / source.name
    if prepared.is_dir() and (prepared / "pairs.csv").is_file():
        print(f"{prepared} is ready (delete it to prepare it again).")
        return prepared
    # a mirror (--url) must serve the same bytes, so the registry's checksums still apply;
    # an explicit --sha256 replaces them
    checksums = {"sha256": sha256, "md5": None} if sha256 else {"sha256": source.sha256, "md5": source.md5}
    downloads = root / "downloads"
    archive = download(url or source.url, downloads / source.filename, **checksums,
                       pin_file=downloads / PIN_FILE_NAME, user_agent=user_agent)
    raw = root / "raw" / source.name
    if not raw.is_dir() or not any(raw.iterdir()):
        print(f"extracting {archive.name} into {raw} ...")
        safe_extract(archive, raw, include=member_filter(source))
    hint = f"Run: python -m data_scripts.fetch {source.name} --root {root}"
    prepare(source.layout, raw, prepared, fetch_hint=hint)
    print(f"prepared {prepared}: images/, labels/, pairs.csv. Licence and citation: {source.notes}")
    return prepared


def _list_sources() -> None:
    for source in SOURCES.values():
        pinned = "SHA-256 pinned on first download"
        checksum = "SHA-256 " + source.sha256[:12] + "..." if source.sha256 else pinned
        print(f"{source.name:18s} {source.size:20.20s} {checksum}\n    {source.url}\n    {source.notes}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_scripts.fetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", choices=sorted(SOURCES), help="dataset to fetch")
    parser.add_argument("--root", default="regedu_data", help="folder for downloads and data")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    parser.add_argument("--url", help="download from this address instead (a mirror)")
    parser.add_argument("--sha256", help="expected SHA-256 of the archive (replaces the registry's)")
    parser.add_argument("--user-agent", default=USER_AGENT, help="HTTP User-Agent header")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        _list_sources()
        return 0
    try:
        fetch(SOURCES[args.name], args.root, url=args.url, sha256=args.sha256, user_agent=args.user_agent)
    except (DownloadError, ChecksumError, UnsafeArchiveError, ExtractionUnavailableError, PinFileError,
            FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
