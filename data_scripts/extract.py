"""Extract tar and zip archives without letting a member write outside the destination.

Archives from the internet can contain members named ``../../.bashrc`` or
``/etc/cron.d/job``, or a symbolic link ``data -> /home/you`` followed by a file
``data/notes.txt``. Python's ``extractall`` writes all of these where they
point. :func:`safe_extract` checks every member before writing it and refuses:

* absolute paths (``/x``, ``C:\\x``) and any path containing ``..``;
* symbolic links that are absolute or resolve outside the destination, hard
  links to anything outside the archive, and links in zip files;
* devices, FIFOs and other special files;
* any member whose final location, once links already extracted are followed,
  is outside the destination.

Files are written by this code (never by ``extractall``) with default
permissions, into a hidden staging folder next to the destination that is
renamed into place once everything succeeded, so a failed extraction leaves
nothing half-done behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

__all__ = ["UnsafeArchiveError", "safe_extract"]


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination folder, or is a special file."""


def safe_extract(archive, dest, include: Callable[[str], bool] | None = None) -> list[Path]:
    """Extract ``archive`` (.tar, .tar.gz, .zip) into the new folder ``dest``.

    Args:
        archive: the archive file.
        dest: a folder that does not exist yet (or is empty).
        include: optional filter on member names; only files (and links) for which
            it returns True are extracted, e.g. ``lambda name: name.endswith(".nii.gz")``.

    Returns:
        The extracted files (paths inside ``dest``), in archive order.

    Raises:
        UnsafeArchiveError: a member is unsafe (nothing is left behind).
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
        written = _extract_any(archive, staging, include)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [dest / path.relative_to(staging) for path in written]


def _extract_any(archive: Path, root: Path, include) -> list[Path]:
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, root, include)
    if tarfile.is_tarfile(archive):
        return _extract_tar(archive, root, include)
    raise ValueError(f"{archive} is neither a tar nor a zip archive; was the download complete?")


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _member_target(root: Path, name: str) -> Path:
    """Where member ``name`` goes inside ``root``; raise :class:`UnsafeArchiveError` if it leaves it."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; refusing to extract it.")
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} contains '..' (path traversal); refusing.")
    target = root.joinpath(*parts)
    if not _inside(target, root):
        raise UnsafeArchiveError(
            f"archive member {name!r} would be written outside the destination through a link; refusing."
        )
    return target


def _write_file(target: Path, source) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    return target


def _extract_tar(archive: Path, root: Path, include) -> list[Path]:
    written = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if include is not None and not member.isdir() and not include(member.name):
                continue
            target = _member_target(root, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                written.append(_write_file(target, tar.extractfile(member)))
            elif member.issym():
                written.append(_make_symlink(root, target, member))
            elif member.islnk():
                written.append(_copy_hard_link(root, target, member))
            else:
                raise UnsafeArchiveError(
                    f"archive member {member.name!r} is a device, FIFO or other special file; refusing."
                )
    return written


def _make_symlink(root: Path, target: Path, member: tarfile.TarInfo) -> Path:
    link = member.linkname
    if PurePosixPath(link).is_absolute() or not _inside(target.parent / link, root):
        raise UnsafeArchiveError(
            f"archive member {member.name!r} is a link to {link!r}, outside the destination; refusing."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(link, target)
    return target


def _copy_hard_link(root: Path, target: Path, member: tarfile.TarInfo) -> Path:
    """A hard link names another member of the archive: copy that file (already extracted)."""
    source = _member_target(root, member.linkname)
    if not source.is_file():
        raise UnsafeArchiveError(
            f"archive member {member.name!r} links to {member.linkname!r}, which is not a file "
            f"extracted from this archive; refusing."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _extract_zip(archive: Path, root: Path, include) -> list[Path]:
    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(
                    f"archive member {info.filename!r} is a symbolic link; links in zip files are refused."
                )
            if include is not None and not info.is_dir() and not include(info.filename):
                continue
            target = _member_target(root, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                with zf.open(info) as source:
                    written.append(_write_file(target, source))
    return written
