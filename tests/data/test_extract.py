"""Safe extraction (path traversal, link chains, links already on disk, hard links, devices, bombs) and
checksum-verified, all-or-nothing downloads."""

from __future__ import annotations

import gzip
import io
import os
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
from tests.data.archives import write_tar, write_zip


def test_safe_tar_and_zip_extract(tmp_path):
    tar = write_tar(tmp_path / "ok.tar.gz", [("d/a.txt", "file", b"alpha"), ("d/link", "sym", "a.txt")])
    out = extract_archive(tar, tmp_path / "out")
    assert (out / "d" / "a.txt").read_bytes() == b"alpha" and os.readlink(out / "d" / "link") == "a.txt"
    z = write_zip(tmp_path / "ok.zip", [("x/b.txt", b"beta", "file")])
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
    tar = write_tar(tmp_path / "bad.tar.gz", [("d/first.txt", "file", b"1"), entry])
    target = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(tar, target)
    assert not (target / "d" / "first.txt").exists(), "nothing is extracted when one member is unsafe"
    assert not (tmp_path / "evil").exists() and not (tmp_path / "deep" / "evil").exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        (("/abs.txt", b"x", "file"), "absolute path"),
        (("../../evil.txt", b"x", "file"), "outside"),
        (("a/link", b"../../../etc/passwd", "sym"), "symlink"),
    ],
)
def test_unsafe_zip_refused(tmp_path, entry, message):
    z = write_zip(tmp_path / "bad.zip", [("a/ok.txt", b"1", "file"), entry])
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


# ------------------------------------------------------------------ link chains, links already on disk, hard links
def _snapshot(root):
    """Every entry under root: path -> ('link', target) / ('file', md5) / ('dir',), links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", md5sum(p))
    return out


def _refused_whole(tmp_path, archive, target, match, **limits):
    """extract_archive refuses the archive and nothing at all changes under tmp_path (inside or outside target)."""
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_archive(archive, target, **limits)
    assert _snapshot(tmp_path) == before, "a refused archive writes nothing, anywhere"


@pytest.mark.parametrize(
    "entries, match",
    [
        (
            [("a", "sym", "x/.."), ("x", "sym", ".")],
            r"member 'a' \(symlink to 'x/\.\.'\) resolves outside .*'x' -> '\.'",
        ),
        ([("l1", "sym", "."), ("l1/l2", "sym", "..")], r"member 'l1/l2' \(symlink to '\.\.'\) resolves outside"),
        ([("d", "dir", None), ("d/up", "sym", ".."), ("d/up/../evil.txt", "file", b"x")], r"'d/up/\.\./evil\.txt'"),
        ([("s", "sym", "t"), ("t", "sym", "s")], r"member 's' .*loop of symlinks"),
        ([("s", "sym", "missing")], r"member 's' .*points to nothing"),
        ([("s", "sym", "x/.."), ("f.txt", "file", b"1")], r"member 's' .*points to nothing"),
        ([("f", "file", b"1"), ("f/g", "file", b"2")], r"member 'f/g' .*passes through the file 'f'"),
    ],
    ids=[
        "a->x/.., x->.",
        "l1->., l1/l2->..",
        "d/up->.. then d/up/..",
        "loop",
        "dangling",
        "x/.. dangling",
        "through file",
    ],
)
def test_tar_symlink_chains_refused_whole(tmp_path, entries, match):
    archive = write_tar(tmp_path / "chain.tar.gz", [("first.txt", "file", b"written first"), *entries])
    (tmp_path / "T").mkdir()
    _refused_whole(tmp_path, archive, tmp_path / "T", match)


def test_zip_symlink_chain_refused_and_safe_zip_symlink_made(tmp_path):
    (tmp_path / "T").mkdir()
    chain = write_zip(tmp_path / "chain.zip", [("a", b"x/..", "sym"), ("x", b".", "sym")])
    _refused_whole(tmp_path, chain, tmp_path / "T", r"member 'a' \(symlink to 'x/\.\.'\) resolves outside")
    entries = [("a", b"x/..", "sym"), ("x", b".", "sym"), ("a/escaped.txt", b"!", "file")]
    chain = write_zip(tmp_path / "chain.zip", entries)
    _refused_whole(tmp_path, chain, tmp_path / "T", r"member 'a/escaped\.txt' \(file\) resolves outside .*'x' -> '\.'")
    ok = write_zip(tmp_path / "ok.zip", [("d/a.txt", b"alpha", "file"), ("d/link", b"a.txt", "sym")])
    out = extract_archive(ok, tmp_path / "T")
    assert os.readlink(out / "d" / "link") == "a.txt" and (out / "d" / "link").read_bytes() == b"alpha"


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize(
    "link, match",
    [("..", r"'a' -> '\.\.' already in the target"), ("/", r"'a' -> '/' already in the target")],
    ids=["relative", "absolute"],
)
def test_members_through_a_link_already_on_disk_refused(tmp_path, fmt, link, match):
    target = tmp_path / "T"
    target.mkdir()
    os.symlink(link, target / "a")
    if fmt == "zip":
        archive = write_zip(tmp_path / "x.zip", [("ok.txt", b"1", "file"), ("a/escaped.txt", b"!", "file")])
    else:
        archive = write_tar(tmp_path / "x.tar.gz", [("ok.txt", "file", b"1"), ("a/escaped.txt", "file", b"!")])
    _refused_whole(tmp_path, archive, target, r"member 'a/escaped\.txt' \(file\) resolves outside .*" + match)
    assert not (tmp_path / "escaped.txt").exists()


def test_link_on_disk_pointing_inside_is_followed_and_a_leaf_link_is_replaced(tmp_path):
    target = tmp_path / "T"
    (target / "real").mkdir(parents=True)
    os.symlink("real", target / "alias")  # a folder link inside the target: writing through it stays inside
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    os.symlink(str(outside), target / "f.txt")  # a link at a member's own path is replaced, never written through
    archive = write_zip(tmp_path / "x.zip", [("alias/in.txt", b"in", "file"), ("f.txt", b"new", "file")])
    extract_archive(archive, target)
    assert (target / "real" / "in.txt").read_bytes() == b"in"
    assert not (target / "f.txt").is_symlink() and (target / "f.txt").read_bytes() == b"new"
    assert outside.read_bytes() == b"precious"


def test_hard_links(tmp_path):
    archive = write_tar(tmp_path / "ok.tar.gz", [("d/a.txt", "file", b"alpha"), ("d/h.txt", "hard", "d/a.txt")])
    out = extract_archive(archive, tmp_path / "T")
    assert (out / "d" / "h.txt").read_bytes() == b"alpha" and os.stat(out / "d" / "h.txt").st_nlink == 2
    (tmp_path / "secret.txt").write_bytes(b"secret")
    for entries, match in [
        ([("h", "hard", "../secret.txt")], r"member 'h' \(hard link to '\.\./secret\.txt'\) resolves outside"),
        ([("h", "hard", "missing.txt")], r"member 'h' .*does not point to a file"),
        ([("s", "sym", "d"), ("d", "dir", None), ("h", "hard", "s")], r"member 'h' .*does not point to a file"),
    ]:
        bad = write_tar(tmp_path / "bad.tar.gz", [("first.txt", "file", b"1"), *entries])
        _refused_whole(tmp_path, bad, tmp_path / "T2", match)


def test_a_later_member_cannot_replace_a_folder(tmp_path):
    bad = write_tar(tmp_path / "bad.tar.gz", [("d/a.txt", "file", b"1"), ("d", "sym", ".")])
    _refused_whole(tmp_path, bad, tmp_path / "T", r"member 'd' .*would replace the folder 'd'")


# ------------------------------------------------------------------------------------------------------ bombs
ZEROS = bytes(8 << 20)  # 8 MiB of zeros compress about 1000x


def test_bomb_ratio_refused_in_tar_zip_and_gz_and_overridable(tmp_path):
    tar = write_tar(tmp_path / "bomb.tar.gz", [("ok.txt", "file", b"1"), ("zeros.bin", "file", ZEROS)])
    _refused_whole(tmp_path, tar, tmp_path / "T", r"member 'zeros\.bin' .* times the archive's .* over max_ratio=200")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", ZEROS)
    _refused_whole(tmp_path, tmp_path / "bomb.zip", tmp_path / "T", r"over max_ratio=200.*pass a larger max_ratio")
    (tmp_path / "zeros.bin.gz").write_bytes(gzip.compress(ZEROS))
    _refused_whole(tmp_path, tmp_path / "zeros.bin.gz", tmp_path / "T", r"member 'zeros\.bin' .*over max_ratio=200")
    out = extract_archive(tar, tmp_path / "T", max_ratio=None)
    assert (out / "zeros.bin").stat().st_size == len(ZEROS)
    out = extract_archive(tmp_path / "zeros.bin.gz", tmp_path / "T", max_ratio=5000)
    assert (out / "zeros.bin").read_bytes() == ZEROS


def test_total_size_limit_and_small_archives_are_not_ratio_checked(tmp_path):
    data = os.urandom(3 << 20)
    tar = write_tar(tmp_path / "big.tar.gz", [("a.bin", "file", data[: 1 << 20]), ("b.bin", "file", data)])
    match = (
        r"member 'b\.bin' \(3,145,728 bytes\) brings the extracted size to 4,202,496 bytes \(4,194,304 of data and 2 "
        r"entries at 4,096 each\), over max_total_size="
    )
    _refused_whole(tmp_path, tar, tmp_path / "T", match, max_total_size=2 << 20)
    assert (extract_archive(tar, tmp_path / "T", max_total_size=None) / "b.bin").read_bytes() == data
    small = write_tar(tmp_path / "small.tar.gz", [("text.txt", "file", b"ab" * 100_000)])  # 200 kB at ~500x
    assert (extract_archive(small, tmp_path / "S") / "text.txt").stat().st_size == 200_000


def test_sizes_are_enforced_while_streaming(tmp_path):
    """A .gz whose trailer declares 100 bytes but which holds 8 MiB: the limit trips while writing, nothing stays."""
    raw = bytearray(gzip.compress(ZEROS))
    raw[-4:] = (100).to_bytes(4, "little")
    (tmp_path / "liar.bin.gz").write_bytes(bytes(raw))
    _refused_whole(tmp_path, tmp_path / "liar.bin.gz", tmp_path / "T", r"member 'liar\.bin' .*over max_ratio=200")


def test_truncated_archive_names_the_file_and_writes_nothing(tmp_path):
    raw = write_tar(tmp_path / "ok.tar.gz", [("a.bin", "file", os.urandom(300_000))]).read_bytes()
    for cut in (len(raw) // 2, len(raw) - 6):  # mid-member, and only the gzip trailer (CRC, size) missing
        (tmp_path / "cut.tar.gz").write_bytes(raw[:cut])
        before = _snapshot(tmp_path)
        with pytest.raises(EOFError, match=r"extract_archive: cannot read .*cut\.tar\.gz: .*truncated or corrupt"):
            extract_archive(tmp_path / "cut.tar.gz", tmp_path / "T")
        assert _snapshot(tmp_path) == before


def test_bad_limits_and_missing_archive(tmp_path):
    archive = write_tar(tmp_path / "ok.tar.gz", [("a.txt", "file", b"1")])
    with pytest.raises(ValueError, match=r"extract_archive: max_ratio must be a positive float or None .*got -1"):
        extract_archive(archive, tmp_path / "T", max_ratio=-1)
    with pytest.raises(ValueError, match=r"extract_archive: max_total_size must be a positive int or None .*'8GB'"):
        extract_archive(archive, tmp_path / "T", max_total_size="8GB")
    with pytest.raises(FileNotFoundError, match=r"extract_archive: no archive at .*nope\.tar\.gz"):
        extract_archive(tmp_path / "nope.tar.gz", tmp_path / "T")


def test_links_already_on_disk_pointing_outside_are_left_alone_unless_used(tmp_path):
    """The user's own links (a cache on another disk) do not block an archive that writes nothing through them."""
    target = tmp_path / "T"
    target.mkdir()
    os.symlink(str(tmp_path), target / "elsewhere")
    archive = write_tar(tmp_path / "ok.tar.gz", [("d/a.txt", "file", b"alpha")])
    assert (extract_archive(archive, target) / "d" / "a.txt").read_bytes() == b"alpha"
    assert os.readlink(target / "elsewhere") == str(tmp_path)


def test_names_differing_only_in_case(tmp_path):
    """Two files README/readme are fine (two files on Linux, one on macOS: no escape either way); a symlink and
    another name equal up to case are not (on a case-insensitive file system the link would be followed)."""
    ok = write_tar(tmp_path / "ok.tar.gz", [("README", "file", b"upper"), ("readme", "file", b"lower")])
    assert (extract_archive(ok, tmp_path / "T") / "README").is_file()
    bad = write_tar(tmp_path / "bad.tar.gz", [("D", "sym", "."), ("d/x.txt", "file", b"1")])
    _refused_whole(tmp_path, bad, tmp_path / "T2", r"member 'd/x\.txt' \(file\) names 'd', which differs only in case")


def test_a_disk_failure_while_renaming_says_how_far_it_got_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    archive = write_tar(tmp_path / "ok.tar.gz", [(f"f{k}.txt", "file", b"%d" % k) for k in range(3)])
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match=r"extract_archive: renaming into .*f1\.txt failed .* after 1 of 3 entries"):
        extract_archive(archive, tmp_path / "T")
    assert sorted(os.listdir(tmp_path / "T")) == ["f0.txt"]


def test_absolute_links_on_disk_are_resolved_physically(tmp_path):
    """``T/l/../x`` through ``l -> ../..`` is outside T even though it reads as ``T/x``; ``T/sub`` is followed."""
    target = tmp_path / "T"
    target.mkdir()
    real = os.path.realpath(target)
    os.symlink("../..", target / "l")
    os.symlink(real + "/l/../x", target / "abs")
    archive = write_tar(tmp_path / "a.tar.gz", [("abs/evil.txt", "file", b"!")])
    _refused_whole(tmp_path, archive, target, r"member 'abs/evil\.txt' \(file\) resolves outside .*'l' -> '\.\./\.\.'")
    os.remove(target / "abs")
    os.symlink(real + "/sub", target / "abs")
    extract_archive(archive, target)
    assert (target / "sub" / "evil.txt").read_bytes() == b"!"


# ------------------------------------------------------------------ entries, empty links, names, the archive itself
def test_max_members_counts_every_entry_and_can_be_lifted(tmp_path):
    """Empty files add nothing to the sizes but each takes an inode: the number of entries has its own limit."""
    entries = [("d", "dir", None), ("d/a", "file", b""), ("d/l", "sym", "a"), ("d/h", "hard", "d/a")]
    archive = write_tar(tmp_path / "many.tar.gz", entries)
    match = r"member 'd/h' is entry number 4, over max_members=3"
    _refused_whole(tmp_path, archive, tmp_path / "T", match, max_members=3)
    assert sorted(os.listdir(extract_archive(archive, tmp_path / "T", max_members=4) / "d")) == ["a", "h", "l"]
    assert (extract_archive(archive, tmp_path / "U", max_members=None) / "d" / "l").is_symlink()


def test_a_member_replaces_a_link_pointing_outside_alike_in_tar_and_zip(tmp_path):
    """``ext -> /outside`` already in the target and a file ``ext`` in the archive: the link is replaced (never
    written through) by a tar as by a zip; tarfile's data filter does not resolve through the link it replaces."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for fmt in ("tar", "zip"):
        target = tmp_path / f"T-{fmt}"
        target.mkdir()
        os.symlink(str(outside), target / "ext")
        if fmt == "tar":
            archive = write_tar(tmp_path / "a.tar.gz", [("ext", "file", b"new")])
        else:
            archive = write_zip(tmp_path / "a.zip", [("ext", b"new", "file")])
        extract_archive(archive, target)
        assert not (target / "ext").is_symlink() and (target / "ext").read_bytes() == b"new", fmt
        assert list(outside.iterdir()) == [], fmt
    # a member written *through* that link is still refused by both
    for archive in (
        write_tar(tmp_path / "b.tar.gz", [("ext2/x.txt", "file", b"!")]),
        write_zip(tmp_path / "b.zip", [("ext2/x.txt", b"!", "file")]),
    ):
        target = tmp_path / "V"
        target.mkdir(exist_ok=True)
        if not os.path.lexists(target / "ext2"):
            os.symlink(str(outside), target / "ext2")
        _refused_whole(tmp_path, archive, target, r"member 'ext2/x\.txt' \(file\) resolves outside .*'ext2' -> ")


def test_the_data_filter_still_refuses_what_a_member_says_on_its_own(tmp_path, monkeypatch):
    """tarfile's data filter is a real second line: were the plan to let an escaping link through, it refuses it."""
    from minidl.data import _extract_plan

    monkeypatch.setattr(_extract_plan._Plan, "check_links", lambda self: None)
    lexical = lambda self, parts, follow_last, base=(): ((*base, *parts), True)  # noqa: E731
    monkeypatch.setattr(_extract_plan._Plan, "resolve", lexical)
    archive = write_tar(tmp_path / "a.tar.gz", [("d/s", "sym", "../../outside")])
    match = r"member 'd/s' is refused by tarfile's data filter, judging it against an empty folder \(.*outside the"
    _refused_whole(tmp_path, archive, tmp_path / "T", match)


def test_colon_names_are_plain_names_on_posix_and_drives_are_refused_on_windows(tmp_path, monkeypatch):
    import ntpath

    archive = write_tar(tmp_path / "a.tar.gz", [("a:notes.txt", "file", b"colon")])
    assert (extract_archive(archive, tmp_path / "T") / "a:notes.txt").read_bytes() == b"colon"
    monkeypatch.setattr(os.path, "splitdrive", ntpath.splitdrive)  # what Windows' os.path says of the name
    _refused_whole(tmp_path, archive, tmp_path / "W", r"member 'a:notes\.txt' starts with the Windows drive 'a:'")


def test_remove_finished_keeps_a_member_extracted_onto_the_archive(tmp_path):
    """``a.tar.gz`` holding ``a.tar.gz``, extracted next to itself: the member replaced the archive and stays."""
    inner = write_tar(tmp_path / "inner.tar.gz", [("x.txt", "file", b"inner")]).read_bytes()
    archive = write_tar(tmp_path / "a.tar.gz", [("a.tar.gz", "file", inner), ("b.txt", "file", b"b")])
    extract_archive(archive, remove_finished=True)
    assert archive.read_bytes() == inner and (tmp_path / "b.txt").read_bytes() == b"b"
    other = write_tar(tmp_path / "c.tar.gz", [("c.txt", "file", b"c")])
    extract_archive(other, remove_finished=True)
    assert not other.exists() and (tmp_path / "c.txt").read_bytes() == b"c"
