# ruff: noqa: E501  (one case per line)
"""Bad-input corpus for archives and the CIFAR-10 files: one case per line, none silently accepted.

Each case builds its files under ``tmp_path`` and returns the call to make. The call must raise the given type with a
message that names the function (``extract_archive:``, ``CIFAR10:``), the value received (the member, the link, the
size, the argument) and what was expected (the target folder, the limit, the type), and it must write nothing at all:
the tree under ``tmp_path`` is the same after the call as before.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import os
import tarfile
import zlib

import pytest

from minidl.data.datasets import CIFAR10, cifar
from minidl.data.download import UnsafeArchiveError, extract_archive
from tests.data.archives import write_tar, write_zip

ZEROS = bytes(8 << 20)  # compresses about 1000x: a small bomb


def tar(entries, disk_links=(), **limits):
    """A case: extract a tar.gz of ``entries`` into T/, where ``disk_links`` ((name, target)) already exist."""

    def build(tmp_path, monkeypatch):
        (tmp_path / "T").mkdir()
        for name, target in disk_links:
            os.symlink(target, tmp_path / "T" / name)
        archive = write_tar(tmp_path / "a.tar.gz", [("first.txt", "file", b"written first"), *entries])
        return lambda: extract_archive(archive, tmp_path / "T", **limits)

    return build


def zip_(entries, disk_links=(), **limits):
    def build(tmp_path, monkeypatch):
        (tmp_path / "T").mkdir()
        for name, target in disk_links:
            os.symlink(target, tmp_path / "T" / name)
        archive = write_zip(tmp_path / "a.zip", [("first.txt", b"written first", "file"), *entries])
        return lambda: extract_archive(archive, tmp_path / "T", **limits)

    return build


def raw(name, data, to="T", **limits):
    """A case: extract the file ``name`` holding ``data`` (bytes, or a callable of tmp_path giving them)."""

    def build(tmp_path, monkeypatch):
        path = tmp_path / name
        path.write_bytes(data(tmp_path) if callable(data) else data)
        if to == "T/":
            (tmp_path / "T").write_bytes(b"a file where the target folder should be")
        return lambda: extract_archive(path, tmp_path / "T", **limits)

    return build


def call(**kwargs):
    """A case: extract_archive(**kwargs) on a small valid archive (the arguments are the bad input)."""

    def build(tmp_path, monkeypatch):
        archive = write_tar(tmp_path / "ok.tar.gz", [("a.txt", "file", b"1")])
        arguments = {"from_path": archive, "to_path": tmp_path / "T", **kwargs}
        return lambda: extract_archive(**arguments)

    return build


def _truncated_tar(tmp_path, keep=0.5):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tf:
        info = tarfile.TarInfo("a.bin")
        info.size = 300_000
        tf.addfile(info, io.BytesIO(os.urandom(info.size)))
    return data.getvalue()[: int(len(data.getvalue()) * keep)] if keep < 1 else data.getvalue()[:-6]


def _lying_gz(tmp_path):
    data = bytearray(gzip.compress(ZEROS))
    data[-4:] = (100).to_bytes(4, "little")  # the trailer declares 100 bytes
    return bytes(data)


def _cifar_files(n=2):
    """Member name -> bytes of a tiny CIFAR-10 binary version, and the matching (name, md5) table."""
    files, table = {}, {"train": [], "test": []}
    for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
        data = bytes(range(256)) * (3073 * n // 256) + bytes(3073 * n % 256)
        data = bytes([k % 10 for k in range(n)]) + data[n:]  # any bytes; the first is a label < 10
        files[f"cifar-10-batches-bin/{name}"] = data
        table["test" if name.startswith("test") else "train"].append((name, hashlib.md5(data).hexdigest()))
    return files, table


def cifar10(layout, **kwargs):
    """A case: CIFAR10(root, **kwargs) on a fake copy: 'no batch 4' (archive), 'folder no batch 4', 'truncated'."""

    def build(tmp_path, monkeypatch):
        files, table = _cifar_files()
        patched = copy.deepcopy(cifar._FILES)
        patched["bin"].update(table)
        monkeypatch.setattr(cifar, "_FILES", patched)
        files.pop("cifar-10-batches-bin/data_batch_4.bin")
        if layout == "folder no batch 4":
            for name, data in files.items():
                (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / name).write_bytes(data)
        else:
            path = tmp_path / "cifar-10-binary.tar.gz"
            write_tar(path, [(name, "file", data) for name, data in files.items()])
            if layout == "truncated":
                path.write_bytes(path.read_bytes()[:200])
        return lambda: CIFAR10(kwargs.pop("root", tmp_path), **kwargs)

    return build


OUT = r".*/T\b"  # the target folder, named in the message as what the path should stay inside

# ------------------------------------------------------------------------------------------------------------ corpus
CASES = [
    # link chains: each link is harmless alone, the chain escapes
    pytest.param(tar([("a", "sym", "x/.."), ("x", "sym", ".")]), UnsafeArchiveError, r"^extract_archive: .*member 'a' \(symlink to 'x/\.\.'\) resolves outside" + OUT + r" \(through the symlink 'x' -> '\.'\)", id="tar-chain-a->x/..,x->."),
    pytest.param(tar([("l1", "sym", "."), ("l1/l2", "sym", "..")]), UnsafeArchiveError, r"^extract_archive: .*member 'l1/l2' \(symlink to '\.\.'\) resolves outside" + OUT, id="tar-chain-l1->.,l1/l2->.."),
    pytest.param(tar([("d/up", "sym", ".."), ("d/up/../evil.txt", "file", b"!")]), UnsafeArchiveError, r"^extract_archive: .*member 'd/up/\.\./evil\.txt' \(file\) resolves outside" + OUT + r" \(through the symlink 'd/up' -> '\.\.'\)", id="tar-file-through-earlier-link"),
    pytest.param(tar([("s", "sym", "t"), ("t", "sym", "s")]), UnsafeArchiveError, r"^extract_archive: .*member 's' \(symlink to 't'\) runs into a loop of symlinks", id="tar-link-loop"),
    pytest.param(tar([("s", "sym", "missing")]), UnsafeArchiveError, r"^extract_archive: .*member 's' \(symlink to 'missing'\) points to nothing: 'missing' exists neither in the archive nor in" + OUT, id="tar-dangling-link"),
    pytest.param(tar([("s", "sym", "/etc/passwd")]), UnsafeArchiveError, r"^extract_archive: .*member 's' \(symlink to '/etc/passwd'\) points to an absolute path \(expected a path relative", id="tar-absolute-link"),
    pytest.param(tar([("d/s", "sym", "../../etc/passwd")]), UnsafeArchiveError, r"^extract_archive: .*member 'd/s' \(symlink to '\.\./\.\./etc/passwd'\) resolves outside" + OUT, id="tar-link-outside"),
    pytest.param(tar([("X", "sym", "."), ("a", "sym", "x/..")]), UnsafeArchiveError, r"^extract_archive: .*member 'a' \(symlink to 'x/\.\.'\) names 'x', which differs only in case from the symlink 'X' \(expected distinct names", id="tar-case-twin-in-link-target"),
    pytest.param(tar([("X", "sym", "."), ("x", "file", b"1")]), UnsafeArchiveError, r"^extract_archive: .*member 'x' \(file\) names 'x', which differs only in case from the symlink 'X' \(expected distinct names", id="tar-case-twin-of-a-link"),
    pytest.param(tar([("x", "file", b"1"), ("X", "sym", ".")]), UnsafeArchiveError, r"^extract_archive: .*member 'X' \(symlink to '\.'\) differs only in case from 'x' \(expected distinct names", id="tar-link-case-twin-of-a-file"),
    # member paths
    pytest.param(tar([("s", "sym", "")]), UnsafeArchiveError, r"^extract_archive: .*a\.tar\.gz: member 's' \(symlink to ''\) has an empty target \(expected a path relative to the link's folder\)", id="tar-empty-link"),
    pytest.param(zip_([("d/s", b"", "sym")]), UnsafeArchiveError, r"^extract_archive: .*a\.zip: member 'd/s' \(symlink to ''\) has an empty target \(expected a path relative to the link's folder\)", id="zip-empty-link"),
    pytest.param(tar([("/etc/evil", "file", b"!")]), UnsafeArchiveError, r"^extract_archive: .*member '/etc/evil' has an absolute path \(expected a path relative to" + OUT, id="tar-absolute-member"),
    pytest.param(tar([("d/../../evil", "file", b"!")]), UnsafeArchiveError, r"^extract_archive: .*member 'd/\.\./\.\./evil' \(file\) resolves outside" + OUT, id="tar-dotdot-member"),
    pytest.param(tar([("f", "file", b"1"), ("f/g", "file", b"2")]), UnsafeArchiveError, r"^extract_archive: .*member 'f/g' \(file\) passes through the file 'f'", id="tar-through-a-file"),
    pytest.param(tar([("d/a.txt", "file", b"1"), ("d", "sym", ".")]), UnsafeArchiveError, r"^extract_archive: .*member 'd' \(symlink to '\.'\) would replace the folder 'd' \(expected a file, a link or nothing there\)", id="tar-link-over-folder"),
    pytest.param(tar([("d", "file", b"1"), ("d", "dir", None)]), UnsafeArchiveError, r"^extract_archive: .*member 'd' \(folder\) would replace the file 'd' \(expected a folder or nothing there\)", id="tar-folder-over-file"),
    pytest.param(tar([("d/" + "n" * 300, "file", b"1")]), UnsafeArchiveError, r"^extract_archive: .*member 'd/n{300}' has a name of 300 bytes \(expected at most 255\)", id="tar-name-too-long"),
    pytest.param(tar([("fifo", "fifo", None)]), UnsafeArchiveError, r"^extract_archive: .*member 'fifo' is a device file or FIFO \(expected a file, folder or link\)", id="tar-fifo"),
    # hard links
    pytest.param(tar([("h", "hard", "../secret.txt")]), UnsafeArchiveError, r"^extract_archive: .*member 'h' \(hard link to '\.\./secret\.txt'\) resolves outside" + OUT, id="tar-hardlink-outside"),
    pytest.param(tar([("h", "hard", "missing.txt")]), UnsafeArchiveError, r"^extract_archive: .*member 'h' \(hard link to 'missing\.txt'\) does not point to a file of the archive or the target", id="tar-hardlink-missing"),
    pytest.param(tar([("d", "dir", None), ("h", "hard", "d")]), UnsafeArchiveError, r"^extract_archive: .*member 'h' \(hard link to 'd'\) does not point to a file", id="tar-hardlink-to-folder"),
    # links already on disk in the target
    pytest.param(zip_([("a/escaped.txt", b"!", "file")], disk_links=[("a", "..")]), UnsafeArchiveError, r"^extract_archive: .*member 'a/escaped\.txt' \(file\) resolves outside" + OUT + r" \(through the symlink 'a' -> '\.\.' already in the target\)", id="zip-through-disk-link"),
    pytest.param(zip_([("a/escaped.txt", b"!", "file")], disk_links=[("a", "/tmp")]), UnsafeArchiveError, r"^extract_archive: .*member 'a/escaped\.txt' \(file\) resolves outside" + OUT + r" \(through the symlink 'a' -> '/tmp' already in the target\)", id="zip-through-absolute-disk-link"),
    pytest.param(tar([("a/escaped.txt", "file", b"!")], disk_links=[("a", "..")]), UnsafeArchiveError, r"^extract_archive: .*member 'a/escaped\.txt' \(file\) resolves outside" + OUT + r" \(through the symlink 'a' -> '\.\.' already in the target\)", id="tar-through-disk-link"),
    pytest.param(tar([("x", "sym", ".")], disk_links=[("a", "x/..")]), UnsafeArchiveError, r"^extract_archive: .*the symlink 'a' -> 'x/\.\.' already in the target resolves outside" + OUT + r" \(through the symlink 'x' -> '\.'\) once the archive is extracted", id="tar-link-completing-a-disk-chain"),
    # zip symlinks (zip -y) are links, checked as tar links are
    pytest.param(zip_([("a", b"x/..", "sym"), ("x", b".", "sym")]), UnsafeArchiveError, r"^extract_archive: .*member 'a' \(symlink to 'x/\.\.'\) resolves outside" + OUT, id="zip-chain"),
    pytest.param(zip_([("a/link", b"../../../etc/passwd", "sym")]), UnsafeArchiveError, r"^extract_archive: .*member 'a/link' \(symlink to '\.\./\.\./\.\./etc/passwd'\) resolves outside" + OUT, id="zip-link-outside"),
    pytest.param(zip_([("link", b"x" * 5000, "sym")]), UnsafeArchiveError, r"^extract_archive: .*member 'link' is a symlink whose target is 5,000 bytes long \(expected at most 4,096\)", id="zip-link-too-long"),
    pytest.param(zip_([("/abs.txt", b"!", "file")]), UnsafeArchiveError, r"^extract_archive: .*member '/abs\.txt' has an absolute path \(expected a path relative to" + OUT, id="zip-absolute-member"),
    pytest.param(zip_([("../../evil.txt", b"!", "file")]), UnsafeArchiveError, r"^extract_archive: .*member '\.\./\.\./evil\.txt' \(file\) resolves outside" + OUT, id="zip-dotdot-member"),
    pytest.param(zip_([("secret.txt", b"!", "encrypted")]), ValueError, r"^extract_archive: .*member 'secret\.txt' is encrypted \(expected an unencrypted zip\)", id="zip-encrypted"),
    # bombs
    pytest.param(tar([("zeros.bin", "file", ZEROS)]), UnsafeArchiveError, r"^extract_archive: .*member 'zeros\.bin' \(8,388,608 bytes\) brings the extracted size to 8,396,8\d\d bytes \(8,388,6\d\d of data and 2 entries at 4,096 each\), [\d,]+ times the archive's [\d,]+ bytes, over max_ratio=200 .*pass a larger max_ratio", id="tar-bomb-ratio"),
    pytest.param(zip_([("zeros.bin", ZEROS, "file")]), UnsafeArchiveError, r"^extract_archive: .*member 'zeros\.bin' \(8,388,608 bytes\) .* over max_ratio=200", id="zip-bomb-ratio"),
    pytest.param(raw("zeros.bin.gz", gzip.compress(ZEROS)), UnsafeArchiveError, r"^extract_archive: .*member 'zeros\.bin' \(8,388,608 bytes\) .* over max_ratio=200", id="gz-bomb-ratio"),
    pytest.param(raw("liar.bin.gz", _lying_gz), UnsafeArchiveError, r"^extract_archive: .*member 'liar\.bin' \([\d,]+ bytes\) brings the extracted size to [\d,]+ bytes \([\d,]+ of data and 1 entry at 4,096 each\), .* over max_ratio=200", id="gz-declared-size-lies"),
    pytest.param(tar([("r.bin", "file", os.urandom(3 << 20))], max_total_size=1 << 20), UnsafeArchiveError, r"^extract_archive: .*member 'r\.bin' \(3,145,728 bytes\) brings the extracted size to 3,153,9\d\d bytes \(3,145,7\d\d of data and 2 entries at 4,096 each\), over max_total_size=1,048,576: pass a larger max_total_size", id="tar-total-size"),
    pytest.param(tar([(f"empty{k:04d}", "file", b"") for k in range(3000)]), UnsafeArchiveError, r"^extract_archive: .*a\.tar\.gz: member 'empty\d{4}' \(0 bytes\) brings the extracted size to [\d,]+ bytes \(13 of data and [\d,]+ entries at 4,096 each\), 20\d times the archive's [\d,]+ bytes, over max_ratio=200 \(a decompression or inode bomb\?\)", id="tar-inode-bomb-3000-empty-files"),
    pytest.param(tar([(f"e{k}", "file", b"") for k in range(20)], max_members=10), UnsafeArchiveError, r"^extract_archive: .*a\.tar\.gz: member 'e9' is entry number 11, over max_members=10 \(every entry, even an empty file, takes an inode: an inode bomb\?\): pass a larger max_members", id="tar-too-many-members"),
    pytest.param(zip_([(f"d{k}/", b"", "file") for k in range(5)], max_members=3), UnsafeArchiveError, r"^extract_archive: .*a\.zip: member 'd2/' is entry number 4, over max_members=3 ", id="zip-too-many-folders"),
    # unreadable archives
    pytest.param(raw("cut.tar.gz", _truncated_tar), EOFError, r"^extract_archive: cannot read .*cut\.tar\.gz: .*\(the archive is truncated or corrupt\); nothing was extracted", id="tar-truncated"),
    pytest.param(raw("cut.tar.gz", lambda p: _truncated_tar(p, keep=1)), EOFError, r"^extract_archive: cannot read .*cut\.tar\.gz: .*truncated or corrupt", id="tar-gz-trailer-missing"),
    pytest.param(raw("cut.zip", lambda p: write_zip(p / "z.zip", [("a", os.urandom(1000), "file")]).read_bytes()[:400]), ValueError, r"^extract_archive: .*cut\.zip is named like a \.zip archive but cannot be read as one .*\(expected \.tar, ", id="zip-truncated"),
    pytest.param(raw("bad.gz", b"not gzip at all"), gzip.BadGzipFile, r"^extract_archive: cannot read .*bad\.gz: Not a gzipped file \(b'no', expected", id="gz-not-gzip"),
    pytest.param(raw("notes.txt", b"plain text"), ValueError, r"^extract_archive: .*notes\.txt is not a tar, zip or gzip archive \(expected \.tar, \.tar\.gz", id="unknown-type"),
    # arguments
    pytest.param(raw("ok.txt.gz", gzip.compress(b"1"), to="T/"), NotADirectoryError, r"^extract_archive: to_path .*/T is a file \(expected a folder, or nothing there\)", id="to-path-is-a-file"),
    pytest.param(call(from_path="/nonexistent/a.tar.gz"), FileNotFoundError, r"^extract_archive: no archive at /nonexistent/a\.tar\.gz \(expected an existing file\)", id="missing-archive"),
    pytest.param(call(from_path=123), TypeError, r"^extract_archive: from_path must be a path \(str or os\.PathLike\), got int", id="from-path-int"),
    pytest.param(call(max_ratio=-1), ValueError, r"^extract_archive: max_ratio must be a positive float or None \(no limit\), got -1", id="max-ratio-negative"),
    pytest.param(call(max_ratio=True), ValueError, r"^extract_archive: max_ratio must be a positive float or None \(no limit\), got True", id="max-ratio-bool"),
    pytest.param(call(max_total_size="8GB"), ValueError, r"^extract_archive: max_total_size must be a positive int or None \(no limit\), got '8GB'", id="max-total-size-str"),
    pytest.param(call(max_members=0), ValueError, r"^extract_archive: max_members must be a positive int or None \(no limit\), got 0", id="max-members-zero"),
    pytest.param(call(max_members=1.5), ValueError, r"^extract_archive: max_members must be a positive int or None \(no limit\), got 1\.5", id="max-members-float"),
    pytest.param(call(max_total_size=0), ValueError, r"^extract_archive: max_total_size must be a positive int or None \(no limit\), got 0", id="max-total-size-zero"),
    # the CIFAR-10 files
    pytest.param(cifar10("no batch 4"), FileNotFoundError, r"^CIFAR10: no complete copy: found the archive .*cifar-10-binary\.tar\.gz, which lacks cifar-10-batches-bin/data_batch_4\.bin\.\n", id="cifar-archive-member-missing"),
    pytest.param(cifar10("folder no batch 4"), FileNotFoundError, r"^CIFAR10: no complete copy: found the folder .*cifar-10-batches-bin, which lacks data_batch_4\.bin\.\n", id="cifar-folder-file-missing"),
    pytest.param(cifar10("truncated"), tarfile.ReadError, r"^CIFAR10: cannot read .*cifar-10-binary\.tar\.gz: .*truncated or corrupt.* MD5 c32a1d4ab5d03f1284b67883e8d87530", id="cifar-archive-truncated"),
    pytest.param(cifar10("no batch 4", root=123), TypeError, r"^CIFAR10: root must be a folder path \(str or os\.PathLike\) or None, got int 123$", id="cifar-root-int"),
    pytest.param(cifar10("no batch 4", train="no"), TypeError, r"^CIFAR10: train must be a bool, got str 'no'$", id="cifar-train-str"),
    pytest.param(cifar10("no batch 4", download=1), TypeError, r"^CIFAR10: download must be a bool, got int 1$", id="cifar-download-int"),
]  # fmt: skip


def _tree(root):
    """path -> ('link', target) / ('dir',) / ('file', crc32) for everything under root, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                out[path] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[path] = ("dir",)
            else:
                with open(path, "rb") as f:
                    out[path] = ("file", zlib.crc32(f.read()))
    return out


@pytest.mark.parametrize("build, error, match", CASES)
def test_bad_input_is_refused_and_writes_nothing(tmp_path, monkeypatch, build, error, match):
    (tmp_path / "secret.txt").write_bytes(b"outside the target")
    attempt = build(tmp_path, monkeypatch)
    before = _tree(tmp_path)
    with pytest.raises(error, match=match):
        attempt()
    assert _tree(tmp_path) == before, "a refused input writes nothing, inside the target or outside it"
