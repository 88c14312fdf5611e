"""Tests for data_scripts: downloads from a local HTTP server, crafted malicious archives, fake datasets.

Nothing here touches the internet: the server runs on 127.0.0.1 in a thread and
serves bytes made in the test; the archives and the OASIS-style folders are
generated in ``tmp_path``.
"""

import csv
import dataclasses
import hashlib
import io as stdio
import json
import os
import socket
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # data_scripts lives beside regedu

from data_scripts import fetch as fetch_cli  # noqa: E402
from data_scripts.download import ChecksumError, DownloadError, download, verify  # noqa: E402
from data_scripts.extract import ExtractionUnavailableError, UnsafeArchiveError, safe_extract  # noqa: E402
from data_scripts.pins import PinFileError  # noqa: E402
from data_scripts.prepare import prepare_learn2reg_oasis, prepare_neurite_oasis  # noqa: E402
from data_scripts.registry import SOURCES  # noqa: E402
from regedu.data import NiftiPairs  # noqa: E402
from regedu.data.io import load_labels, load_nifti  # noqa: E402

PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))


# ---------------------------------------------------------------------------
# a local server that honours (or ignores) Range requests
# ---------------------------------------------------------------------------


class FileServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 and records what it was asked and sent."""

    def __init__(self, files):
        self.files = files
        self.honour_range = True
        self.content_type = "application/octet-stream"
        self.requests = []  # (path, Range header or None)
        self.bytes_sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                body = server.files[self.path]
                start = 0
                requested = self.headers.get("Range")
                if requested and server.honour_range:
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                # count before writing: the client may finish reading before this thread runs again
                server.bytes_sent += len(body) - start
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = FileServer({"/data.bin": PAYLOAD})
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# downloads
# ---------------------------------------------------------------------------


def test_download_and_verify(server, tmp_path):
    dest = download(server.url("/data.bin"), tmp_path / "sub" / "data.bin", sha256=sha(PAYLOAD),
                    md5=hashlib.md5(PAYLOAD).hexdigest(), report=None)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]  # no .part left
    assert server.requests == [("/data.bin", None)]
    # a second call only verifies the file that is there
    download(server.url("/data.bin"), dest, sha256=sha(PAYLOAD), report=None)
    assert len(server.requests) == 1


def test_download_resumes_from_partial_file(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:123_456])
    download(server.url("/data.bin"), dest, sha256=sha(PAYLOAD), report=None)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", "bytes=123456-")]
    assert server.bytes_sent == len(PAYLOAD) - 123_456  # only the missing part travelled


def test_download_restarts_when_server_ignores_range(server, tmp_path):
    server.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes from another file")
    messages = []
    download(server.url("/data.bin"), tmp_path / "data.bin", sha256=sha(PAYLOAD), report=messages.append)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert any("does not support resuming" in m for m in messages)


def test_complete_partial_file_is_finished_without_data(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download(server.url("/data.bin"), tmp_path / "data.bin", sha256=sha(PAYLOAD), report=None)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.bytes_sent == 0  # the server answered 416: nothing left to send


def test_checksum_mismatch_deletes_nothing(server, tmp_path):
    mine = tmp_path / "my_notes.txt"
    mine.write_text("the user's own file")
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=rf"SHA256 mismatch for .*data.bin.part: expected {wrong}, "
                                            rf"got {sha(PAYLOAD)}.*Nothing was deleted"):
        download(server.url("/data.bin"), tmp_path / "data.bin", sha256=wrong, report=None)
    assert not (tmp_path / "data.bin").exists()  # never published under the final name
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD  # kept for inspection
    assert mine.read_text() == "the user's own file"
    # an existing final file with the wrong checksum is reported, not removed
    (tmp_path / "data.bin").write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="MD5 mismatch"):
        download(server.url("/data.bin"), tmp_path / "data.bin", md5="f" * 32, report=None)
    assert (tmp_path / "data.bin").read_bytes() == b"something else"


def test_unknown_checksum_is_printed(server, tmp_path, capsys):
    download(server.url("/data.bin"), tmp_path / "data.bin")
    out = capsys.readouterr().out
    assert f"SHA-256 of data.bin: {sha(PAYLOAD)} (unverified" in out


def test_offline_gives_a_clear_message(tmp_path):
    with socket.socket() as probe:  # a port on which nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=r"could not reach 127.0.0.1.*Are you offline\?.*data.bin"):
        download(f"http://127.0.0.1:{port}/data.bin", tmp_path / "data.bin", report=None, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_web_page(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*missing.bin"):
        download(server.url("/missing.bin"), tmp_path / "missing.bin", report=None)
    server.content_type = "text/html; charset=utf-8"
    with pytest.raises(DownloadError, match="web page"):
        download(server.url("/data.bin"), tmp_path / "data.bin", report=None)
    assert not (tmp_path / "data.bin").exists()


def test_sha256_is_pinned_on_first_use_and_required_after(server, tmp_path):
    pin_file = tmp_path / "downloads" / "sha256-pins.json"
    dest = tmp_path / "downloads" / "data.bin"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    with pytest.raises(ChecksumError, match="MD5 mismatch"):  # a first download failing its MD5 pins nothing
        download(server.url("/data.bin"), dest, md5="0" * 32, pin_file=pin_file, report=None)
    assert not pin_file.exists()
    (tmp_path / "downloads" / "data.bin.part").unlink()
    messages = []
    download(server.url("/data.bin"), dest, md5=md5, pin_file=pin_file, report=messages.append)
    assert "WARNING: no SHA-256 is published or pinned for data.bin. Trust on first use" in messages[0]
    assert "checked against the MD5" in messages[0] and str(pin_file) in messages[0]
    pin = json.loads(pin_file.read_text())["data.bin"]
    assert pin["sha256"] == sha(PAYLOAD) and pin["first_verified_by"] == "md5"
    # later: the same bytes pass without a warning; other bytes (with no MD5 to catch them) are refused
    messages.clear()
    download(server.url("/data.bin"), dest, pin_file=pin_file, report=messages.append)
    assert not any("WARNING" in m for m in messages)
    dest.unlink()
    server.files["/data.bin"] = PAYLOAD[::-1]
    with pytest.raises(ChecksumError, match=rf"SHA256 mismatch.*expected {sha(PAYLOAD)} \(the SHA-256 "
                                            rf"recorded in .*sha256-pins.json when this file was first"):
        download(server.url("/data.bin"), dest, pin_file=pin_file, report=None)
    dest.write_bytes(b"a copy placed by hand")  # the offline route is checked against the pin too
    with pytest.raises(ChecksumError, match="recorded in"):
        download(server.url("/data.bin"), dest, pin_file=pin_file, report=None)
    assert json.loads(pin_file.read_text())["data.bin"]["sha256"] == sha(PAYLOAD)  # the pin did not move


def test_a_source_without_any_checksum_is_pinned_with_a_warning(server, tmp_path):
    pin_file = tmp_path / "pins.json"
    messages = []
    download(server.url("/data.bin"), tmp_path / "data.bin", pin_file=pin_file, report=messages.append)
    assert "NOT checked against anything" in messages[0]
    assert json.loads(pin_file.read_text())["data.bin"]["first_verified_by"] == "nothing"
    pin_file.write_text("{not json")
    with pytest.raises(PinFileError, match="cannot read the SHA-256 pin file .*delete it"):
        download(server.url("/data.bin"), tmp_path / "data.bin", pin_file=pin_file, report=None)


def test_verify_returns_digests(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert verify(path) == {"sha256": sha(b"abc"), "md5": hashlib.md5(b"abc").hexdigest()}


def test_registry_has_no_made_up_checksums():
    for source in SOURCES.values():
        assert source.url.startswith("https://")
        for value, length in ((source.sha256, 64), (source.md5, 32)):
            assert value is None or (len(value) == length and int(value, 16) >= 0)
        if source.sha256 is None:
            assert "pinned on first download" in source.notes


# ---------------------------------------------------------------------------
# safe extraction
# ---------------------------------------------------------------------------


def add_file(tar, name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, stdio.BytesIO(data))


def add_link(tar, name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def make_tar(path, build, mode="w"):
    with tarfile.open(path, mode) as tar:
        build(tar)
    return path


def test_extracts_tar_and_zip(tmp_path):
    archive = make_tar(tmp_path / "ok.tar.gz", lambda t: (add_file(t, "a/b/c.txt", b"hello"),
                                                          add_file(t, "top.txt", b"top")), mode="w:gz")
    written = safe_extract(archive, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == ["a/b/c.txt", "top.txt"]
    assert (tmp_path / "out" / "a" / "b" / "c.txt").read_bytes() == b"hello"
    with zipfile.ZipFile(tmp_path / "ok.zip", "w") as zf:
        zf.writestr("dir/", "")
        zf.writestr("dir/file.nii.gz", b"data")
    safe_extract(tmp_path / "ok.zip", tmp_path / "zipped")
    assert (tmp_path / "zipped" / "dir" / "file.nii.gz").read_bytes() == b"data"


def test_include_filter_and_internal_links(tmp_path):
    def build(tar):
        add_file(tar, "s1/aligned_norm.nii.gz", b"img")
        add_file(tar, "s1/norm.nii.gz", b"big")
        add_link(tar, "s1/alias.nii.gz", "aligned_norm.nii.gz")  # stays inside: allowed
        add_link(tar, "s1/copy.nii.gz", "s1/aligned_norm.nii.gz", kind=tarfile.LNKTYPE)

    archive = make_tar(tmp_path / "a.tar", build)
    safe_extract(archive, tmp_path / "out", include=lambda name: "aligned" in name or "alias" in name)
    extracted = sorted(p.name for p in (tmp_path / "out" / "s1").iterdir())
    assert extracted == ["alias.nii.gz", "aligned_norm.nii.gz"]
    safe_extract(archive, tmp_path / "all")
    assert (tmp_path / "all" / "s1" / "alias.nii.gz").read_bytes() == b"img"
    assert (tmp_path / "all" / "s1" / "copy.nii.gz").read_bytes() == b"img"


MALICIOUS_TARS = {
    "traversal": (lambda t: add_file(t, "data/../../evil.txt"), "'..'"),
    "absolute": (lambda t: add_file(t, "/tmp/regedu_evil.txt"), "absolute path"),
    "absolute symlink": (lambda t: add_link(t, "escape", "/etc"), "outside the destination"),
    "relative symlink out": (lambda t: add_link(t, "escape", "../../outside"), "outside the destination"),
    "hard link out": (lambda t: add_link(t, "hard", "../outside.txt", kind=tarfile.LNKTYPE), "'..'"),
    "hard link absolute": (lambda t: add_link(t, "hard", "/etc/passwd", kind=tarfile.LNKTYPE), "absolute"),
    "fifo": (lambda t: add_link(t, "pipe", "", kind=tarfile.FIFOTYPE), "special file"),
}


@pytest.mark.parametrize("case", list(MALICIOUS_TARS))
def test_malicious_tar_is_refused_and_leaves_nothing(tmp_path, case):
    build, message = MALICIOUS_TARS[case]
    archive = make_tar(tmp_path / "bad.tar", lambda t: (add_file(t, "fine.txt"), build(t)))
    jail = tmp_path / "jail"
    jail.mkdir()
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, jail / "out")
    assert list(jail.iterdir()) == []  # neither the destination nor the staging folder remains
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar", "jail"]
    assert not Path("/tmp/regedu_evil.txt").exists()


def test_link_then_write_through_it_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()

    def build(tar):
        add_link(tar, "inner", "sub")  # harmless on its own
        add_file(tar, "sub/.keep")
        add_link(tar, "sub/up", "..")  # points at the destination root: still inside
        add_file(tar, "sub/up/ok.txt", b"inside")

    safe_extract(make_tar(tmp_path / "ok.tar", build), tmp_path / "out")
    assert (tmp_path / "out" / "ok.txt").read_bytes() == b"inside"
    assert list(outside.iterdir()) == []


def test_a_chain_of_links_leading_outside_is_refused(tmp_path):
    """``d -> x/..`` is inside while ``x`` does not exist; once ``x -> .`` is there, ``d`` is the parent."""
    archive = make_tar(tmp_path / "chain.tar", lambda t: (add_link(t, "d", "x/.."), add_link(t, "x", ".")))
    jail = tmp_path / "jail"
    jail.mkdir()
    with pytest.raises(UnsafeArchiveError, match=r"'d' is a link to 'x/\.\.'.*resolves outside the dest"):
        safe_extract(archive, jail / "out")
    assert list(jail.iterdir()) == []
    # the same links with x -> sub keep d inside: accepted
    fine = make_tar(tmp_path / "fine.tar", lambda t: (add_link(t, "d", "x/.."), add_link(t, "x", "sub"),
                                                      add_file(t, "sub/.keep")))
    safe_extract(fine, jail / "out")
    assert os.path.realpath(jail / "out" / "d") == os.path.realpath(jail / "out")


def test_tar_needs_the_data_filter(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "ok.tar", lambda t: add_file(t, "a.txt"))
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(ExtractionUnavailableError, match=r"no tarfile 'data' extraction filter.*3\.10\.12.*"
                                                         r"extract .*ok.tar yourself into .*out"):
        safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.tar"]


@pytest.mark.parametrize("name, message", [("../evil.txt", "'..'"), ("/abs/evil.txt", "absolute"),
                                           ("..\\evil.txt", "'..'"), ("C:/evil.txt", "absolute")])
def test_malicious_zip_is_refused(tmp_path, name, message):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("fine.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(name), b"evil")
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(tmp_path / "bad.zip", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_zip_symlink_is_refused(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)  # a symbolic link entry
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "out")


def test_extract_refuses_a_used_folder_and_non_archives(tmp_path):
    archive = make_tar(tmp_path / "ok.tar", lambda t: add_file(t, "a.txt"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="used"):
        safe_extract(archive, tmp_path / "used")
    assert (tmp_path / "used" / "mine.txt").read_text() == "keep"
    (tmp_path / "text.tar").write_text("not an archive")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        safe_extract(tmp_path / "text.tar", tmp_path / "out")


# ---------------------------------------------------------------------------
# preparation of OASIS-style folders
# ---------------------------------------------------------------------------


def fake_neurite(root, ndim, subjects=("OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1", "OASIS_OAS1_0004_MR1"),
                 shape=None):
    """Subject folders like the neurite-oasis tars, with tiny volumes (2D slices stored (H, W, 1))."""
    shape = shape or ((8, 10, 1) if ndim == 2 else (6, 7, 5))
    image_name, label_name = ("slice_norm", "slice_seg24") if ndim == 2 else ("aligned_norm", "aligned_seg35")
    rng = np.random.default_rng(0)
    for subject in subjects:
        folder = root / subject
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(rng.random(shape).astype(np.float32), np.eye(4)),
                 folder / f"{image_name}.nii.gz")
        nib.save(nib.Nifti1Image(rng.integers(0, 5, shape).astype(np.uint8), np.eye(4)),
                 folder / f"{label_name}.nii.gz")
    (root / "subjects.txt").write_text("\n".join(subjects))
    return root


def read_pairs(folder):
    with open(folder / "pairs.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize("ndim", [2, 3])
def test_prepare_neurite(tmp_path, ndim):
    source = fake_neurite(tmp_path / "raw", ndim)
    out = prepare_neurite_oasis(source, tmp_path / "prepared", ndim=ndim)
    names = ["OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1", "OASIS_OAS1_0004_MR1"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{n}.nii.gz" for n in names]
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"{n}.nii.gz" for n in names]
    assert read_pairs(out) == [
        {"moving": f"images/{names[1]}.nii.gz", "fixed": f"images/{names[0]}.nii.gz",
         "moving_labels": f"labels/{names[1]}.nii.gz", "fixed_labels": f"labels/{names[0]}.nii.gz"},
        {"moving": f"images/{names[2]}.nii.gz", "fixed": f"images/{names[1]}.nii.gz",
         "moving_labels": f"labels/{names[2]}.nii.gz", "fixed_labels": f"labels/{names[1]}.nii.gz"},
    ]
    image_name = "slice_norm" if ndim == 2 else "aligned_norm"
    original = source / names[0] / f"{image_name}.nii.gz"
    assert (out / "images" / f"{names[0]}.nii.gz").read_bytes() == original.read_bytes()
    image = load_nifti(out / "images" / f"{names[0]}.nii.gz").image
    labels = load_labels(out / "labels" / f"{names[0]}.nii.gz").image
    assert image.shape == labels.shape == ((1, 1, 8, 10) if ndim == 2 else (1, 1, 6, 7, 5))
    assert labels.dtype == torch.int64
    # the folder is what regedu's NIfTI-pair dataset reads, labels included
    item = NiftiPairs(out / "pairs.csv")[1]
    assert sorted(item) == ["fixed", "fixed_labels", "moving", "moving_labels"]
    assert torch.equal(item["moving_labels"], load_labels(out / "labels" / f"{names[2]}.nii.gz").image[0])


def fake_learn2reg(root, cases=(1, 2, 3, 4)):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    training = []
    for k in cases:
        name = f"OASIS_{k:04d}_0000.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((6, 7, 5)).astype(np.float32), np.eye(4)),
                 root / "imagesTr" / name)
        nib.save(nib.Nifti1Image(rng.integers(0, 36, (6, 7, 5)).astype(np.uint8), np.eye(4)),
                 root / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"training": training,
            "registration_val": [{"fixed": "./imagesTr/OASIS_0003_0000.nii.gz",
                                  "moving": "./imagesTr/OASIS_0004_0000.nii.gz"}]}
    (root / "OASIS_dataset.json").write_text(json.dumps(meta))
    return root


def test_prepare_learn2reg(tmp_path):
    source = fake_learn2reg(tmp_path / "raw" / "OASIS")  # the json may sit one folder down
    out = prepare_learn2reg_oasis(tmp_path / "raw", tmp_path / "prepared")
    assert len(list((out / "images").iterdir())) == 4 and len(list((out / "labels").iterdir())) == 4
    assert read_pairs(out) == [{"moving": "images/OASIS_0004_0000.nii.gz",
                                "fixed": "images/OASIS_0003_0000.nii.gz",
                                "moving_labels": "labels/OASIS_0004_0000.nii.gz",
                                "fixed_labels": "labels/OASIS_0003_0000.nii.gz"}]
    assert (out / "labels" / "OASIS_0002_0000.nii.gz").read_bytes() == \
        (source / "labelsTr" / "OASIS_0002_0000.nii.gz").read_bytes()


def test_prepare_errors_name_the_file_and_leave_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*extract"):
        prepare_neurite_oasis(tmp_path / "empty", tmp_path / "out", ndim=2)
    with pytest.raises(FileNotFoundError, match="no slice_norm.nii.gz.*python -m data_scripts.fetch"):
        prepare_neurite_oasis(fake_learn2reg(tmp_path / "l2r"), tmp_path / "out", ndim=2,
                              fetch_hint="Run: python -m data_scripts.fetch neurite-oasis-2d")

    source = fake_neurite(tmp_path / "raw", 3)
    missing = source / "OASIS_OAS1_0002_MR1" / "aligned_seg35.nii.gz"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match="OASIS_OAS1_0002_MR1/aligned_seg35.nii.gz is missing"):
        prepare_neurite_oasis(source, tmp_path / "out", ndim=3)

    odd = fake_neurite(tmp_path / "raw2", 3, subjects=("OASIS_OAS1_0009_MR1",), shape=(6, 7, 4))
    source2 = fake_neurite(tmp_path / "raw3", 3)
    os.replace(odd / "OASIS_OAS1_0009_MR1", source2 / "OASIS_OAS1_0009_MR1")
    with pytest.raises(ValueError, match=r"OASIS_OAS1_0009_MR1.*\(6, 7, 4\).*\(6, 7, 5\)"):
        prepare_neurite_oasis(source2, tmp_path / "out", ndim=3)

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="used"):
        prepare_neurite_oasis(fake_neurite(tmp_path / "raw4", 2), tmp_path / "used", ndim=2)
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["mine.txt"]
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_learn2reg_json_pointing_to_a_missing_file(tmp_path):
    source = fake_learn2reg(tmp_path / "raw")
    (source / "imagesTr" / "OASIS_0003_0000.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="OASIS_0003_0000.nii.gz is missing"):
        prepare_learn2reg_oasis(source, tmp_path / "out")


def test_fetch_end_to_end_from_local_server(tmp_path, capsys, monkeypatch):
    """Tar a fake neurite 2D tree, serve it, and run the command line against the local address."""
    tree = fake_neurite(tmp_path / "tree", 2)
    archive = tmp_path / "neurite-oasis.2d.v1.0.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(tree.rglob("*")):
            tar.add(path, arcname=path.relative_to(tree).as_posix(), recursive=False)
    data = archive.read_bytes()
    srv = FileServer({"/neurite.tar": data})
    srv.thread.start()
    try:
        root = tmp_path / "regedu_data"
        argv = ["neurite-oasis-2d", "--root", str(root), "--url", srv.url("/neurite.tar"),
                "--sha256", sha(data)]
        assert fetch_cli.main(argv) == 0
        prepared = root / "neurite-oasis-2d"
        assert len(read_pairs(prepared)) == 2
        assert (root / "downloads" / "neurite-oasis.2d.v1.0.tar").read_bytes() == data
        assert fetch_cli.main(argv) == 0  # second run: everything is already there
        assert "is ready" in capsys.readouterr().out
        assert len(srv.requests) == 1
        bad = ["neurite-oasis-2d", "--root", str(tmp_path / "other"), "--url", srv.url("/neurite.tar"),
               "--sha256", "1" * 64]
        assert fetch_cli.main(bad) == 1
        assert "SHA256 mismatch" in capsys.readouterr().err
        # without --sha256: the registry's MD5 checks the first download, whose SHA-256 is then pinned
        source = dataclasses.replace(SOURCES["neurite-oasis-2d"], md5=hashlib.md5(data).hexdigest())
        monkeypatch.setitem(SOURCES, "neurite-oasis-2d", source)
        pinned = ["neurite-oasis-2d", "--root", str(tmp_path / "pinned"), "--url", srv.url("/neurite.tar")]
        assert fetch_cli.main(pinned) == 0
        assert "WARNING: no SHA-256 is published or pinned" in capsys.readouterr().out
        pins = json.loads((tmp_path / "pinned" / "downloads" / "sha256-pins.json").read_text())
        assert pins["neurite-oasis.2d.v1.0.tar"]["sha256"] == sha(data)
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
