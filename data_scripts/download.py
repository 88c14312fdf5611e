"""Resumable HTTP(S) downloads with checksum verification, standard library only.

``download(url, dest, sha256=..., md5=...)`` writes to ``dest + ".part"`` and
renames it to ``dest`` only once it is complete and its checksums match, so a
file at ``dest`` is always whole. An interrupted download is resumed from the
end of the ``.part`` file with an HTTP ``Range`` request; a server that ignores
ranges simply sends the whole file again. Nothing the user already has is ever
deleted: a mismatching checksum raises :class:`ChecksumError` and leaves every
file where it was, for inspection.

With ``pin_file`` (see :mod:`data_scripts.pins`), a file without a published
SHA-256 is trusted on first use: its first download is checked against the MD5
where one is given, its SHA-256 is recorded in the pin file, and later downloads
must match it.

Why not Pooch: it does not resume. Measured with a local server that drops the
connection half-way through a 20 MiB file, ``pooch.retrieve`` deleted the 10 MiB
it had and the retry fetched all 20 MiB again (30 MiB in all), where this module
kept ``.part`` and fetched the other 10 MiB (20 MiB in all): for the 6.6 GB
neurite 3D archive that is the difference between resuming and starting over.
Pooch also replaces an existing file whose hash differs, where this module
refuses to touch the user's file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from . import pins

# Some data hosts refuse the default "Python-urllib/3.x" agent with a 403 page.
USER_AGENT = "Mozilla/5.0 (compatible; regedu-data-scripts/0.1)"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The file could not be fetched (offline, HTTP error, a web page instead of the file)."""


class ChecksumError(RuntimeError):
    """A downloaded or existing file does not have the published checksum."""


def file_digests(path: Path) -> dict[str, str]:
    """SHA-256 and MD5 of a file, read once in 1 MiB chunks: ``{"sha256": hex, "md5": hex}``."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            sha256.update(chunk)
            md5.update(chunk)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def verify(path: Path, sha256: str | None = None, md5: str | None = None,
           pinned_in: Path | None = None) -> dict[str, str]:
    """Compute ``path``'s digests and compare them with the expected ones that are given.

    Returns the digests. Raises :class:`ChecksumError` naming the file, both
    values and what to do; the file is left in place. ``pinned_in``: the pin file
    the SHA-256 comes from, if it was recorded on first use (named in the error).
    """
    found = file_digests(path)
    for kind, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and found[kind] != expected.lower():
            origin = "" if kind == "md5" or pinned_in is None else (
                f" (the SHA-256 recorded in {pinned_in} when this file was first downloaded: if the "
                f"source really published a new version, delete its entry there to trust it)")
            raise ChecksumError(
                f"{kind.upper()} mismatch for {path}: expected {expected.lower()}{origin}, "
                f"got {found[kind]}. "
                f"The file is incomplete, corrupted, or not the published one (a proxy's error page?). "
                f"Nothing was deleted: inspect it, delete it yourself, and run again to download afresh."
            )
    return found


def download(url: str, dest, sha256: str | None = None, md5: str | None = None, *,
             pin_file=None, user_agent: str = USER_AGENT, timeout: float = 60.0,
             report: Callable[[str], None] | None = print) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download, and verify it.

    Args:
        url: http(s) address of the file.
        dest: where the finished file goes; its folder is created if needed.
        sha256, md5: published checksums (hex), or None when unknown.
        pin_file: where SHA-256 values are pinned on first use (:mod:`data_scripts.pins`).
            With no ``sha256``, the one pinned for ``dest``'s name is required; if there is
            none yet, a warning says so and the SHA-256 of this download is pinned. Without
            ``pin_file`` the computed SHA-256 is only reported.
        user_agent: HTTP User-Agent header.
        timeout: seconds to wait for the server before giving up.
        report: called with progress and result messages (None: silent).

    Returns:
        ``dest`` as a ``Path``. If ``dest`` exists already it is only verified.

    Raises:
        DownloadError: no connection (with an offline hint), an HTTP error, or
            an HTML page where a file was expected. ChecksumError: wrong checksum.
        PinFileError: the pin file cannot be read.
    """
    say = report or (lambda message: None)
    dest = Path(dest).expanduser()
    pinned = pins.pinned_sha256(pin_file, dest.name) if sha256 is None and pin_file is not None else None
    expected = sha256 or pinned
    if expected is None and pin_file is not None:
        say(_first_use_warning(dest.name, md5, pin_file))
    pinned_in = Path(pin_file) if pinned else None
    if dest.exists():
        digests = verify(dest, expected, md5, pinned_in)
        say(f"{dest} is already there and verified.")
    else:
        digests = _fetch_and_verify(url, dest, expected, md5, pinned_in, user_agent, timeout, say)
        say(f"{dest} downloaded and verified." if expected or md5 else f"{dest} downloaded.")
    if expected is None:
        _report_first_sha256(dest, digests["sha256"], url, md5, pin_file, say)
    return dest


def _fetch_and_verify(url, dest: Path, sha256, md5, pinned_in, user_agent, timeout, say) -> dict[str, str]:
    """Fetch into ``dest.part``, verify it, and only then rename it to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    _fetch_into(url, partial, user_agent, timeout, say)
    digests = verify(partial, sha256, md5, pinned_in)
    os.replace(partial, dest)
    return digests


def _first_use_warning(name: str, md5: str | None, pin_file) -> str:
    check = ("checked against the MD5 its source publishes" if md5 else
             "NOT checked against anything (its source publishes no checksum)")
    return (f"WARNING: no SHA-256 is published or pinned for {name}. Trust on first use: this download is "
            f"{check}; its SHA-256 is then recorded in {pin_file}, and every later download or copy of "
            f"{name} must match it. See data_scripts/README.md.")


def _report_first_sha256(dest: Path, sha256: str, url: str, md5: str | None, pin_file, say) -> None:
    if pin_file is None:
        say(f"SHA-256 of {dest.name}: {sha256} (unverified: no published checksum is "
            f"registered for this file; record this value to check later downloads against it).")
        return
    pins.record_pin(pin_file, dest.name, sha256, url, verified_by="md5" if md5 else "nothing")
    say(f"SHA-256 of {dest.name}: {sha256}, pinned in {pin_file}: later downloads must match it.")


def _fetch_into(url: str, partial: Path, user_agent: str, timeout: float,
                say: Callable[[str], None]) -> None:
    """Append the rest of ``url`` to ``partial`` (start from scratch if the server ignores ranges)."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": user_agent}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        say(f"resuming {partial.name} from {offset / 1e6:.1f} MB")
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the partial file is complete
            return
        raise DownloadError(
            f"the server answered HTTP {err.code} ({err.reason}) for {url}. Check the address (the "
            f"registry notes say where it comes from) or try again later; pass --url for a mirror."
        ) from err
    except (TimeoutError, urllib.error.URLError, ConnectionError) as err:
        raise DownloadError(_offline_message(url, partial, err)) from err
    with response:
        _check_not_a_web_page(response, url)
        resumed = offset and response.status == 206
        if offset and not resumed:
            say("the server does not support resuming; downloading the whole file again")
        mode = "ab" if resumed else "wb"
        _copy_stream(response, partial, mode, offset if resumed else 0, say)


def _offline_message(url: str, partial: Path, err: Exception) -> str:
    host = urllib.parse.urlsplit(url).netloc
    return (
        f"could not reach {host} ({getattr(err, 'reason', err)}). Are you offline? These scripts need "
        f"internet access. Without it, download {url} on another machine, copy it to "
        f"{partial.with_suffix('')} and run the same command again: the file will be verified and used."
    )


def _check_not_a_web_page(response, url: str) -> None:
    kind = response.headers.get("Content-Type", "")
    if kind.startswith("text/html"):
        raise DownloadError(
            f"{url} returned a web page (Content-Type {kind!r}) instead of the data file: often a "
            f"login, error or 'access denied' page. Open the address in a browser to see it; if the "
            f"browser gets the file, try another --user-agent."
        )


def _copy_stream(response, partial: Path, mode: str, offset: int, say: Callable[[str], None]) -> None:
    total = response.headers.get("Content-Length")
    expected = offset + int(total) if total and total.isdigit() else None
    done, next_report = offset, offset + 100 * CHUNK
    with open(partial, mode) as out:
        try:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                done += len(chunk)
                if done >= next_report:
                    size = f" of {expected / 1e6:.1f}" if expected else ""
                    say(f"{partial.name}: {done / 1e6:.1f}{size} MB")
                    next_report += 100 * CHUNK
        except (TimeoutError, http.client.IncompleteRead, ConnectionError) as err:
            raise DownloadError(
                f"the download stopped after {done} bytes ({type(err).__name__}); run the same command "
                f"again to resume from {partial}."
            ) from err
    if expected is not None and done != expected:
        raise DownloadError(
            f"the connection closed after {done} of {expected} bytes; run the same command again to "
            f"resume from {partial}."
        )
