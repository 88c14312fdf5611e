"""A command's output files: claimed before any work, written all together or not at all.

``regedu register -o out.nii.gz --disp disp.nii.gz`` must never leave ``out.nii.gz`` without its
field (a full disk while writing the second), let two runs writing the same file both report
success, or find a read-only folder only after minutes of registration. :class:`OutputSet`
does the bookkeeping:

1. :meth:`OutputSet.claim` (at the start): for each output, create a lock file beside it,
   ``.<name>.regedu-lock``, with ``O_CREAT | O_EXCL`` (atomic: of two runs, exactly one gets
   it; creating it also proves the folder is writable), then check that the output does not
   exist unless overwriting is allowed, and remove what an earlier run killed mid-write left
   behind (hidden ``.<name>.<8 hex>.partial...`` and ``.<name>.<pid>.tmp`` files, older than
   this run). A lock whose process is gone is stale and taken over.
2. :meth:`OutputSet.write`: write one output to a hidden temporary file beside it.
3. :meth:`OutputSet.commit`: rename every temporary onto its output (``os.replace``, atomic
   per file); if a rename fails, remove the outputs this run created.
4. :meth:`OutputSet.release` (always): remove the temporaries not committed and the locks.

Error messages name the user's path, never a hidden temporary file.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["OutputSet", "OutputError", "write_failure", "user_path", "temporary_name", "open_count",
           "release_all"]

LOCK_SUFFIX = ".regedu-lock"
_OPEN: list[OutputSet] = []  # claimed and not yet released, in this process (see release_all)


class OutputError(OSError):
    """An output cannot be claimed or written; the message names it and says what to do.

    ``OutputError(errno, message)``: ``str()`` is the message alone (no ``[Errno N]`` prefix).
    """

    def __str__(self) -> str:
        return str(self.strerror)


def temporary_name(path: Path) -> Path:
    """A hidden temporary file beside ``path`` with the same suffix: ``.<name>.<8 hex>.partial<suffix>``.

    The suffix is kept so that writers that choose the format by it (NIfTI, matplotlib) still do.
    """
    name = path.name
    suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else path.suffix
    return path.with_name(f".{name}.{uuid.uuid4().hex[:8]}.partial{suffix}")


def _stale_pattern(name: str) -> re.Pattern:
    """Hidden files that regedu's writers leave beside ``name`` when killed mid-write."""
    quoted = re.escape(name)
    return re.compile(rf"^\.+{quoted}\.(?:[0-9a-f]{{8}}\.partial.*|\d+\.tmp)$")


_TEMPORARY = re.compile(r"^\.(.+)\.(?:[0-9a-f]{8}\.partial.*|\d+\.tmp)$")


def user_path(path) -> Path:
    """The output a temporary file of ours stands for (``path`` itself when it is not one).

    ``.out.nii.gz.1a2b3c4d.partial.nii.gz`` -> ``out.nii.gz``, also through nested temporaries.
    """
    path = Path(path)
    while (match := _TEMPORARY.match(path.name)) is not None:
        path = path.with_name(match.group(1))
    return path


def write_failure(path, error: OSError, option: str = "") -> OutputError:
    """An :class:`OutputError` for a failed write of ``path``, named by the user's file even when
    ``path`` is one of our hidden temporaries (:func:`user_path`).

    Keeps ``error.errno``; says what the error means for the user and what to do.
    """
    path = user_path(path)
    what = f"{option} {path}" if option else str(path)
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        advice = (f"the disk holding {path.parent} is full (or over quota): free some space, or write to "
                  f"another folder")
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = f"the folder {path.parent} is read-only for you: write to a folder you can write in"
    elif code == errno.ENOENT:
        advice = f"the folder {path.parent} does not exist (any more): create it first"
    else:
        advice = f"{error.strerror or error}; check the folder {path.parent}"
    return OutputError(code or errno.EIO, f"could not write {what}: {advice}.")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def _lock_owner(lock: Path) -> tuple[str, int] | None:
    """``(host, pid)`` written in a lock file, ``None`` when unreadable or malformed."""
    try:
        host, pid = lock.read_text().split()[:2]
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _create_exclusive(path: Path) -> int:
    """Create ``path`` only if it does not exist (atomic); return the descriptor."""
    return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)


class OutputSet:
    """The outputs of one run, ``{option: path}`` (the option names the output in messages).

    Use as ``outputs = OutputSet(paths, overwrite).claim()``; then ``outputs.write(option, writer)``
    for each, ``outputs.commit()`` once all are written, and ``outputs.release()`` in any case
    (also a context manager: leaving the ``with`` block releases).
    """

    def __init__(self, paths: dict[str, Path], overwrite: bool = False):
        self.paths = {option: Path(path) for option, path in paths.items()}
        self.overwrite = overwrite
        self.started = time.time()
        self._locks: list[Path] = []
        self._temporaries: dict[str, Path] = {}

    # -- claiming -----------------------------------------------------------------------------

    def claim(self) -> OutputSet:
        """Lock every output, check it may be written, clean stale temporaries; return ``self``."""
        _OPEN.append(self)
        try:
            for option, path in self.paths.items():
                self._lock(option, path)
                if path.exists() and not self.overwrite:
                    raise OutputError(errno.EEXIST,
                                      f"{option} {path} exists already; pass --overwrite to replace it.")
                self._remove_stale(path)
        except BaseException:
            self.release()
            raise
        return self

    def _lock(self, option: str, path: Path) -> None:
        lock = path.with_name(f".{path.name}{LOCK_SUFFIX}")
        for _ in range(2):
            try:
                handle = _create_exclusive(lock)
            except FileExistsError:
                self._take_over_if_stale(option, path, lock)
                continue
            except OSError as error:
                raise write_failure(path, error, option) from None
            with os.fdopen(handle, "w") as file:
                file.write(f"{socket.gethostname()} {os.getpid()}\n")
            self._locks.append(lock)
            return
        raise OutputError(errno.EBUSY, f"{option} {path}: could not take the lock {lock}; try again.")

    def _take_over_if_stale(self, option: str, path: Path, lock: Path) -> None:
        """Remove ``lock`` when the run that holds it is gone; raise while it is alive."""
        owner = _lock_owner(lock)
        if owner is not None and (owner[0] != socket.gethostname() or _pid_alive(owner[1])):
            raise OutputError(
                errno.EBUSY,
                f"{option} {path} is being written by another regedu run (process {owner[1]} on {owner[0]}): "
                f"wait for it to finish, or choose another file name. If no such run is going on, delete "
                f"{lock}.",
            )
        if owner is None and time.time() - _mtime(lock) < 5.0:
            return  # being written this instant by another run: try again, then see its owner
        lock.unlink(missing_ok=True)

    def _remove_stale(self, path: Path) -> None:
        """Delete temporaries an earlier, killed run left beside ``path`` (older than this run)."""
        pattern = _stale_pattern(path.name)
        try:
            neighbours = list(path.parent.iterdir())
        except OSError:
            return
        for candidate in neighbours:
            if pattern.match(candidate.name) and _mtime(candidate) < self.started:
                candidate.unlink(missing_ok=True)

    # -- writing ------------------------------------------------------------------------------

    def __getitem__(self, option: str) -> Path:
        """Where to write ``option``'s output now: its temporary file (renamed by :meth:`commit`)."""
        return self.temporary(option)

    def __contains__(self, option) -> bool:
        return option in self.paths

    def __iter__(self):
        return iter(self.paths)

    def items(self):
        """``(option, final path)`` pairs, in the order given."""
        return self.paths.items()

    def temporary(self, option: str) -> Path:
        """The hidden temporary file that ``option``'s output is written to before :meth:`commit`."""
        if option not in self._temporaries:
            self._temporaries[option] = temporary_name(self.paths[option])
        return self._temporaries[option]

    def write(self, option: str, writer: Callable[[Path], object]) -> None:
        """Call ``writer(temporary_path)``; an ``OSError`` is reported with the user's path."""
        try:
            writer(self.temporary(option))
        except OSError as error:
            raise write_failure(self.paths[option], error, option) from None

    def commit(self, options: Iterable[str] | None = None) -> None:
        """Rename the written temporaries onto their outputs (all of ``options``, default all written).

        If one rename fails, the outputs created by this commit are removed again, so that a
        rerun does not need ``--overwrite``; files that existed before and were replaced stay replaced.
        """
        chosen = list(self._temporaries) if options is None else list(options)
        created: list[Path] = []
        for option in chosen:
            final = self.paths[option]
            existed = final.exists()
            try:
                os.replace(self._temporaries[option], final)
            except OSError as error:
                for path in created:
                    path.unlink(missing_ok=True)
                raise write_failure(final, error, option) from None
            del self._temporaries[option]
            if not existed:
                created.append(final)

    # -- releasing ----------------------------------------------------------------------------

    def release(self) -> None:
        """Remove uncommitted temporaries and the locks; safe to call more than once."""
        for temporary in self._temporaries.values():
            temporary.unlink(missing_ok=True)
        self._temporaries.clear()
        for lock in self._locks:
            lock.unlink(missing_ok=True)
        self._locks.clear()
        if self in _OPEN:
            _OPEN.remove(self)

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def open_count() -> int:
    """How many :class:`OutputSet` of this process are claimed and not released."""
    return len(_OPEN)


def release_all(keep: int = 0) -> None:
    """Release the :class:`OutputSet` of this process still open, all but the first ``keep``
    (those claimed before the command that ends now, when commands run inside each other)."""
    for outputs in list(_OPEN[keep:]):
        outputs.release()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
