"""Extract tar and zip archives without letting a member write, or point, outside the destination.

Archives from the internet can contain members named ``../../.bashrc`` or
``/etc/cron.d/job``, a symbolic link ``data -> /home/you`` followed by a file
``data/notes.txt``, or a chain of links that are harmless one by one
(``d -> x/..``, then ``x -> .``) but lead outside together. :func:`safe_extract`
refuses all of these:

* tar archives are extracted by the standard library with its ``"data"``
  extraction filter (Python 3.10.12, 3.11.4, 3.12 and later; on older Pythons
  extraction is refused with a message saying what to do), which refuses links
  and files that leave the destination, devices, FIFOs and other special files,
  and drops permissions and owners that data do not need. Before it, regedu
  refuses any member or hard-link name that is absolute or contains ``..``
  (the filter would only strip a leading ``/``); after the whole archive is
  extracted, every symbolic link is resolved again and must stay inside the
  destination, which catches chains of links that no single member reveals;
* zip archives (which have no standard filter) are refused if a member name is
  absolute or contains ``..``, or if a member is a symbolic link; files are
  written by this module.

Everything is extracted into a hidden staging folder next to the destination
that is renamed into place once all checks passed, so a refused or failed
extraction leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

__all__ = ["UnsafeArchiveError", "ExtractionUnavailableError", "safe_extract"]


class UnsafeArchiveError(ValueError):
    """An archive member would be written, or would point, outside the destination, or is a special file."""


class ExtractionUnavailableError(RuntimeError):
    """This Python cannot extract tar archives safely (no ``tarfile`` ``"data"`` filter)."""


def safe_extract(archive, dest, include: Callable[[str], bool] | None = None) -> list[Path]:
    """Extract ``archive`` (.tar, .tar.gz, .zip) into the new folder ``dest``.

    Args:
        archive: the archive file.
        dest: a folder that does not exist yet (or is empty).
        include: optional filter on member names; only files (and links) for which
            it returns True are extracted, e.g. ``lambda name: name.endswith(".nii.gz")``.

    Returns:
        The extracted files and links (paths inside ``dest``), in archive order.

    Raises:
        UnsafeArchiveError: a member is unsafe (nothing is left behind).
        ExtractionUnavailableError: a tar archive on a Python without the ``"data"`` filter.
        FileExistsError: ``dest`` exists and is not empty. ValueError: not an archive.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"{dest} exists and is not an empty folder; extract into a new folder, or move it away first."
        )
    staging = dest.with_name(f".{dest.name}.extracting-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        written = _extract_any(archive, staging, include, dest)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [dest / path.relative_to(staging) for path in written]


def _extract_any(archive: Path, root: Path, include, dest: Path) -> list[Path]:
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, root, include)
    if tarfile.is_tarfile(archive):
        return _extract_tar(archive, root, include, dest)
    raise ValueError(f"{archive} is neither a tar nor a zip archive; was the download complete?")


def _check_name(name: str, member: str) -> None:
    """Refuse an absolute name (``/x``, ``C:\\x``) or one with a ``..`` part, naming ``member``."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")):
        raise UnsafeArchiveError(f"archive member {member!r} has an absolute path ({name!r}); refusing.")
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {member!r} contains '..' in {name!r} (path traversal); "
                                 f"refusing.")


# ---------------------------------------------------------------------------
# tar: the standard library's "data" filter, plus name checks before and a link check after
# ---------------------------------------------------------------------------


def _require_data_filter(archive: Path, dest: Path) -> None:
    if not hasattr(tarfile, "data_filter"):
        version = ".".join(map(str, sys.version_info[:3]))
        raise ExtractionUnavailableError(
            f"this Python ({version}) has no tarfile 'data' extraction filter, which these scripts need "
            f"to extract {archive.name} safely (Python 3.10.12, 3.11.4, 3.12 and later have it). Use a "
            f"newer Python, or extract {archive} yourself into {dest} and run the same command again."
        )


def _refusal(error: tarfile.FilterError) -> UnsafeArchiveError:
    """The ``"data"`` filter's verdict on a member, in this module's words."""
    member = error.tarinfo
    if isinstance(error, tarfile.SpecialFileError):
        reason = "is a device, FIFO or other special file"
    elif isinstance(error, (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError)):
        reason = f"is a link to {member.linkname!r}, outside the destination"
    elif isinstance(error, tarfile.OutsideDestinationError):
        reason = "would be written outside the destination (through a link)"
    else:
        reason = f"was refused by tarfile's 'data' filter ({error})"
    return UnsafeArchiveError(f"archive member {member.name!r} {reason}; refusing.")


def _check_hard_link_source(root: Path, member: tarfile.TarInfo) -> None:
    """A hard link must name a regular file already extracted from this archive."""
    source = os.path.realpath(root / member.linkname)
    if not (_inside(source, root) and os.path.isfile(source) and not (root / member.linkname).is_symlink()):
        raise UnsafeArchiveError(
            f"archive member {member.name!r} links to {member.linkname!r}, which is not a file extracted "
            f"from this archive; refusing."
        )


def _extract_tar(archive: Path, root: Path, include, dest: Path) -> list[Path]:
    _require_data_filter(archive, dest)
    written: list[Path] = []

    def accept(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        _check_name(member.name, member.name)
        if member.islnk():
            _check_name(member.linkname, member.name)
        if include is not None and not member.isdir() and not include(member.name):
            return None
        try:
            member = tarfile.data_filter(member, path)
        except tarfile.FilterError as error:
            raise _refusal(error) from None
        if member.islnk():
            _check_hard_link_source(root, member)
        if not member.isdir():
            written.append(root / member.name)
        return member

    with tarfile.open(archive) as tar:
        tar.extractall(root, filter=accept)
    _check_links_inside(root)
    return written


def _inside(path, root: Path) -> bool:
    top = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(path), top]) == top


def _check_links_inside(root: Path) -> None:
    """Resolve every symbolic link under ``root`` now that all exist; refuse one that leaves ``root``."""
    for folder, folders, files in os.walk(root):  # does not descend into linked folders
        for name in folders + files:
            path = Path(folder, name)
            if path.is_symlink() and not _inside(path, root):
                raise UnsafeArchiveError(
                    f"archive member {path.relative_to(root).as_posix()!r} is a link to "
                    f"{os.readlink(path)!r}, which, with the other links of the archive, resolves outside "
                    f"the destination (to {os.path.realpath(path)}); refusing."
                )


# ---------------------------------------------------------------------------
# zip: no links at all, checked names, files written here
# ---------------------------------------------------------------------------


def _write_file(target: Path, source) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target


def _extract_zip(archive: Path, root: Path, include) -> list[Path]:
    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(
                    f"archive member {info.filename!r} is a symbolic link; links in zip files are refused."
                )
            _check_name(info.filename, info.filename)
            if include is not None and not info.is_dir() and not include(info.filename):
                continue
            target = root.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                with zf.open(info) as source:
                    written.append(_write_file(target, source))
    return written
