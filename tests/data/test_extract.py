"""Safe extraction (path traversal, links, devices) and checksum-verified, all-or-nothing downloads."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import urllib.error
import urllib.request
import zipfile

import pytest

from minidl.data.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    check_integrity,
    download_url,
    extract_archive,
    md5sum,
)


def _tar(path, entries):
    """entries: (name, kind, payload) with kind 'file' (payload bytes), 'sym'/'hard' (payload link target), 'fifo'."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = payload or ""
                tf.addfile(info)
    return path


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload, symlink in entries:
            info = zipfile.ZipInfo(name)
            if symlink:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, payload)
    return path


def test_safe_tar_and_zip_extract(tmp_path):
    tar = _tar(tmp_path / "ok.tar.gz", [("d/a.txt", "file", b"alpha"), ("d/link", "sym", "a.txt")])
    out = extract_archive(tar, tmp_path / "out")
    assert (out / "d" / "a.txt").read_bytes() == b"alpha" and os.readlink(out / "d" / "link") == "a.txt"
    z = _zip(tmp_path / "ok.zip", [("x/b.txt", b"beta", False)])
    assert (extract_archive(z, tmp_path / "zout") / "x" / "b.txt").read_bytes() == b"beta"
    gz = tmp_path / "c.txt.gz"
    gz.write_bytes(gzip.compress(b"gamma"))
    assert (extract_archive(gz) / "c.txt").read_bytes() == b"gamma"


@pytest.mark.parametrize(
    "entry, message",
    [
        (("/etc/evil", "file", b"x"), "absolute path"),
        (("../evil", "file", b"x"), "outside"),
        (("d/../../evil", "file", b"x"), "outside"),
        (("d/link", "sym", "../../etc/passwd"), "symlink to '../../etc/passwd'"),
        (("d/link", "sym", "/etc/passwd"), "symlink to '/etc/passwd'"),
        (("d/hard", "hard", "../outside"), "hard link"),
        (("d/fifo", "fifo", None), "device file or FIFO"),
    ],
)
def test_unsafe_tar_refused_and_nothing_written(tmp_path, entry, message):
    tar = _tar(tmp_path / "bad.tar.gz", [("d/first.txt", "file", b"1"), entry])
    target = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(tar, target)
    assert not (target / "d" / "first.txt").exists(), "nothing is extracted when one member is unsafe"
    assert not (tmp_path / "evil").exists() and not (tmp_path / "deep" / "evil").exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        (("/abs.txt", b"x", False), "absolute path"),
        (("../../evil.txt", b"x", False), "outside"),
        (("a/link", b"../../../etc/passwd", True), "symlink"),
    ],
)
def test_unsafe_zip_refused(tmp_path, entry, message):
    z = _zip(tmp_path / "bad.zip", [("a/ok.txt", b"1", False), entry])
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(z, tmp_path / "out")
    assert not (tmp_path / "out" / "a" / "ok.txt").exists()


def test_unknown_archive_type(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("plain")
    with pytest.raises(ValueError, match="not a tar, zip or gzip archive"):
        extract_archive(p)


def test_download_file_url_checks_md5_and_is_atomic(tmp_path):
    src = tmp_path / "src.bin"
    payload = os.urandom(3_000_000)
    src.write_bytes(payload)
    url = src.as_uri()
    dest = tmp_path / "cache"
    path = download_url(url, dest, "data.bin", md5sum(payload))
    assert path.read_bytes() == payload and check_integrity(path, md5sum(payload))
    assert sorted(p.name for p in dest.iterdir()) == ["data.bin"]
    with pytest.raises(ChecksumError, match="expected 0{32}"):
        download_url(url, dest, "other.bin", "0" * 32)
    assert sorted(p.name for p in dest.iterdir()) == ["data.bin"], "a corrupt download leaves no file behind"


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        headers = {"Content-Length": "100"}

        def read(self, n=-1):
            if self.tell() >= 10:
                raise ConnectionResetError("connection reset by peer")
            return super().read(10)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken(b"x" * 100))
    with pytest.raises(DownloadError, match="broke off"):
        download_url("https://example.invalid/f.bin", tmp_path, md5=None)
    assert list(tmp_path.iterdir()) == []


def test_offline_download_error(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError, match="could not download https://example.invalid/f.bin"):
        download_url("https://example.invalid/f.bin", tmp_path)
    assert list(tmp_path.iterdir()) == []
