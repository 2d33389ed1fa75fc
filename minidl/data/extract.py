"""Archive extraction that cannot write outside its folder, and cannot fill the disk.

:func:`extract_archive` works in three passes, so that a bad archive is refused whole, before anything is written:

1. **Plan.** Every member's final path is resolved component by component in a *virtual view* of the target folder:
   the entries the archive created before it (folders, files, symlinks, hard links) laid over what is already on
   disk (``os.lstat``/``os.readlink``). Symlinks are followed the way the kernel follows them (``x/..`` is the
   parent of wherever ``x`` points), so a chain such as ``a -> x/..`` followed by ``x -> .`` is seen for what it is.
   A member is refused, and the archive with it, when its path leaves the target (``..``, an absolute path, a link
   of the archive or one already on disk pointing outside), when it is a device file or FIFO, when a symlink of
   the archive does not resolve, once every member is in place, to an existing entry inside the target, or when the
   archive expands past the size limits below. A symlink already in the target that the archive's entries would
   make resolve outside it (``a -> x/..`` on disk, ``x -> .`` in the archive) refuses the archive too. A symlink
   with an empty target is refused. For tar members, tarfile's own ``data_filter`` runs as well, as a second line of
   defence for what each member says on its own (absolute names and link targets, names and links that leave the
   folder as written, device files): it runs against an empty folder, because on disk it would resolve through a
   link that the member replaces. A member may replace a file or a link already there (even a link pointing
   outside: the link is replaced, never written through, in a tar as in a zip), never a folder. A symlink may not
   share its name, up to case, with another entry of the archive (on a case-insensitive file system ``X -> .`` would
   answer for ``x``).
2. **Write.** Each file's bytes are streamed into a hidden temporary file next to its destination, counting the
   bytes actually produced (the declared sizes of a zip or a ``.gz`` can lie). Any failure (a limit reached while
   streaming, a truncated or corrupt archive, a full disk) removes those temporary files and the folders this pass
   created, and nothing is extracted.
3. **Commit.** The temporary files and links are renamed onto their destinations (``os.replace``: atomic, and it
   replaces a symlink at the destination instead of writing through it).

Writes go to the *resolved* paths, which contain no symlink at all, so nothing is ever written through a link.
Hard links become hard links to the extracted file (a copy where the file system has none). A zip member whose
``external_attr`` marks a symlink (``zip -y`` on Unix) becomes a symlink, as ``unzip`` makes it, checked as a tar
symlink is.

Names are POSIX paths: ``a:notes.txt`` is a plain name on Linux and macOS; on Windows a name starting with a drive
(``C:``) is refused.

Size limits (bombs): the sum of the members' sizes may not exceed ``max_total_size`` (default
:data:`MAX_TOTAL_SIZE`, 8 GiB; CIFAR-10's 170 MB archive expands to 185 MB), and may not exceed ``max_ratio``
times the archive's size (default :data:`MAX_RATIO`, 200: JPEG and CIFAR archives expand about 1.1x, MNIST's
``.gz`` files 5x, text about 10x, a file of zeros about 1000x). The ratio is not checked while the total stays under
:data:`RATIO_FLOOR` (1 MiB): an archive that small cannot fill a disk. Pass a larger value, or ``None`` for no
limit, to extract an archive you trust.

Entries (inode bombs): an empty file or a folder has no bytes but takes an inode and a directory entry, so every
entry counts :data:`ENTRY_SIZE` (4 KiB, one block of the file system) toward both limits, on top of its bytes: a
186 KB ``.tar.gz`` of 30,000 empty files counts 123 MB, 660 times its size, and is refused; Kaggle's dogs-vs-cats
``train.zip`` (25,000 JPEGs, about 545 MB) counts about 650 MB, 1.2 times. And the number of entries may not exceed
``max_members`` (default :data:`MAX_MEMBERS`, 1,000,000): real datasets hold up to about 120,000 files (IMDB's
``aclImdb`` 100,000, COCO's ``train2017.zip`` 118,287, Tiny ImageNet 120,000), so 100,000 would be too tight; pass
``None`` for an archive you trust.

A ``.tar.gz`` is decompressed twice (once to plan, once to write), the price of refusing before writing anything.
"""

from __future__ import annotations

import gzip
import lzma
import os
import secrets
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO

from minidl.data._extract_plan import _CHUNK, ENTRY_SIZE, RATIO_FLOOR, UnsafeArchiveError, _Member, _Plan, _run

__all__ = [
    "ENTRY_SIZE",
    "MAX_MEMBERS",
    "MAX_RATIO",
    "MAX_TOTAL_SIZE",
    "RATIO_FLOOR",
    "UnsafeArchiveError",
    "extract_archive",
]

MAX_TOTAL_SIZE = 8 << 30
MAX_RATIO = 200.0
MAX_MEMBERS = 1_000_000
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


# ---------------------------------------------------------------------------------------------- archive formats
def _safe_mode(mode: int) -> int | None:
    """PEP 706's rule for files: no setuid/setgid/sticky, no group/other write, executable only if the owner's is,
    always readable and writable by the owner. None (the default permissions) for a mode of 0."""
    if not mode & 0o777:
        return None
    mode &= 0o755
    return (mode if mode & 0o100 else mode & ~0o111) | 0o600


def _tar_members(tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tf.getmembers():
        if info.isdir():
            kind = "dir"
        elif info.isreg():
            kind = "file"
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        else:
            kind = "special"
        opener = (lambda i=info: tf.extractfile(i)) if kind == "file" else _nothing
        size = info.size if kind == "file" else 0
        members.append(_Member(info.name, kind, size, info.linkname, _safe_mode(info.mode), opener))
    return members


def _data_filter(tf: tarfile.TarFile, archive: Path, target: str) -> None:
    """tarfile's own ``filter="data"`` checks (PEP 706), run on every member once ours passed: a second line.

    They run against a folder that does not exist (``target/.minidl-data-filter-<random>``), so that they judge what
    each member says on its own: an absolute name or link target, a name or a link that leaves the folder as
    written, a device file. Against ``target`` itself they would resolve through a link already on disk that the
    member replaces (``ext -> /outside`` and a member ``ext``), and refuse what the writer does safely; what is on disk
    is the plan's job, which resolves it the way the writer writes."""
    if not hasattr(tarfile, "data_filter"):  # pragma: no cover - a Python without PEP 706
        return
    empty = os.path.join(target, f".minidl-data-filter-{secrets.token_hex(8)}")
    for info in tf.getmembers():
        try:
            tarfile.data_filter(info, empty)
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(
                f"extract_archive: {archive}: member {info.name!r} is refused by tarfile's data filter, judging it "
                f"against an empty folder ({exc}); refusing the whole archive, nothing was extracted"
            ) from None


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list[_Member]:
    members = []
    for info in zf.infolist():
        if info.flag_bits & 0x1:
            raise ValueError(
                f"extract_archive: {archive}: member {info.filename!r} is encrypted (expected an unencrypted zip); "
                "nothing was extracted"
            )
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:  # zip -y on Unix: the member's bytes are the link's target
            if info.file_size > 4096:
                raise UnsafeArchiveError(
                    f"extract_archive: {archive}: member {info.filename!r} is a symlink whose target is "
                    f"{info.file_size:,} bytes long (expected at most 4,096); refusing the whole archive, nothing was "
                    "extracted"
                )
            link = zf.read(info).decode("utf-8", "surrogateescape")
            members.append(_Member(info.filename, "symlink", 0, link, None, _nothing))
        elif info.is_dir() or kind == stat.S_IFDIR:
            members.append(_Member(info.filename, "dir", 0, "", None, _nothing))
        elif kind not in (0, stat.S_IFREG):
            members.append(_Member(info.filename, "special", 0, "", None, _nothing))
        else:
            opener = lambda i=info: zf.open(i)  # noqa: E731
            members.append(_Member(info.filename, "file", info.file_size, "", _safe_mode(mode), opener))
    return members


def _nothing() -> IO[bytes]:  # pragma: no cover - folders and links have no bytes to read
    raise AssertionError("extract_archive: a folder or link has no content")


def _has_members(path: Path) -> bool:
    with tarfile.open(path, "r:*") as tf:
        return tf.next() is not None


def _gzip_member(path: Path, name: str) -> _Member:
    with open(path, "rb") as f:  # ISIZE: the uncompressed size modulo 2**32, as declared in the trailer
        magic = f.read(2)
        if magic != b"\x1f\x8b":
            raise gzip.BadGzipFile(f"Not a gzipped file ({magic!r}, expected b'\\x1f\\x8b')")
        f.seek(-4, os.SEEK_END)
        declared = int.from_bytes(f.read(4), "little")
    return _Member(name, "file", declared, "", None, lambda: gzip.open(path, "rb"))


def _named(exc: BaseException, archive: Path) -> BaseException:
    """The same exception type, with a message naming the archive."""
    message = (
        f"extract_archive: cannot read {archive}: {exc} (the archive is truncated or corrupt); nothing was extracted"
    )
    try:
        return type(exc)(message)
    except Exception:  # pragma: no cover - an exception type with another constructor
        return ValueError(message)


def _check_limit(name: str, value: object, kind: type) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not value > 0:
        raise ValueError(
            f"extract_archive: {name} must be a positive {kind.__name__} or None (no limit), got {value!r}"
        )


def extract_archive(
    from_path: str | os.PathLike,
    to_path: str | os.PathLike | None = None,
    remove_finished: bool = False,
    *,
    max_total_size: int | None = MAX_TOTAL_SIZE,
    max_ratio: float | None = MAX_RATIO,
    max_members: int | None = MAX_MEMBERS,
) -> Path:
    """Safely unpack an archive into ``to_path`` (default: its folder) and return ``to_path``'s real path.

    Every member is resolved and checked, and the sizes added up, before anything is written (see the module's
    docstring); a single bad member refuses the whole archive.

    Args:
        from_path: the archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tbz2``, ``.tar.xz``, ``.zip`` or a
            single-file ``.gz``).
        to_path: target folder (created, once the archive passed every check, if missing). Default: the archive's
            folder.
        remove_finished: delete the archive afterwards, unless a member was extracted onto the archive's own path
            (``a.tar`` holding ``a.tar``, extracted next to itself): that member replaced the archive and is kept.
            Default: False.
        max_total_size: most bytes the archive may expand to, each entry counting ``ENTRY_SIZE`` (4 KiB) on top of
            its bytes; None: no limit. Default: ``MAX_TOTAL_SIZE`` (8 GiB).
        max_ratio: most times the archive's size it may expand to (checked above 1 MiB); None: no limit.
            Default: ``MAX_RATIO`` (200).
        max_members: most entries (files, folders, links) the archive may hold; None: no limit.
            Default: ``MAX_MEMBERS`` (1,000,000).

    Raises:
        UnsafeArchiveError: a member that would land outside ``to_path`` (absolute path, ``..``, a link of the
            archive or of the target), a device file/FIFO, a symlink that does not resolve inside ``to_path``, or
            an archive past a size limit or ``max_members``. The message names the member.
        FileNotFoundError: ``from_path`` does not exist.  NotADirectoryError: ``to_path`` is a file.
        ValueError: an unknown archive type or a bad limit. The type tarfile, zipfile or gzip raise for a truncated
            or corrupt archive, with the archive's name.
    """
    if not isinstance(from_path, (str, os.PathLike)):
        raise TypeError(
            f"extract_archive: from_path must be a path (str or os.PathLike), got {type(from_path).__name__}"
        )
    _check_limit("max_total_size", max_total_size, int)
    _check_limit("max_ratio", max_ratio, float)
    _check_limit("max_members", max_members, int)
    from_path = Path(from_path)
    if not from_path.is_file():
        raise FileNotFoundError(f"extract_archive: no archive at {from_path} (expected an existing file)")
    to_path = Path(to_path) if to_path is not None else from_path.parent
    if to_path.exists() and not to_path.is_dir():
        raise NotADirectoryError(f"extract_archive: to_path {to_path} is a file (expected a folder, or nothing there)")
    target = os.path.realpath(to_path)  # made only once the archive passed every check
    plan = _Plan(from_path, target, max_total_size, max_ratio, max_members)
    name = from_path.name.lower()
    # a plain .gz is one compressed file (a .gz of zeros also reads as an empty tar); a tar named .gz is still a tar
    single_gz = name.endswith(".gz") and not name.endswith((".tar.gz", ".tgz")) and len(name) > 3
    try:
        if zipfile.is_zipfile(from_path):
            with zipfile.ZipFile(from_path) as zf:
                _run(plan, _zip_members(zf, from_path))
        elif tarfile.is_tarfile(from_path) and not (single_gz and not _has_members(from_path)):
            with tarfile.open(from_path, "r:*") as tf:
                members = _tar_members(tf)
                if tf.fileobj is not None:  # read to the end: a truncated or corrupt stream fails here, not midway
                    while tf.fileobj.read(_CHUNK):
                        pass
                _run(plan, members, lambda: _data_filter(tf, from_path, target))
        elif single_gz:
            _run(plan, [_gzip_member(from_path, from_path.name[:-3])])
        else:
            kind = next((k for k in (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz") if name.endswith(k)), None)
            why = f"is named like a {kind} archive but cannot be read as one (truncated or corrupt?)" if kind else ""
            raise ValueError(
                f"extract_archive: {from_path} {why or 'is not a tar, zip or gzip archive'} (expected .tar, .tar.gz, "
                ".tgz, .tar.bz2, .tar.xz, .zip or .gz)"
            )
    except _READ_ERRORS as exc:
        raise _named(exc, from_path) from exc
    if remove_finished and not plan.wrote(os.path.realpath(from_path)):
        from_path.unlink()
    return Path(target)
