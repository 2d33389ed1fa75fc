"""The one atomic file writer of minidl: checkpoints, histories, plots, augmentation grids and downloads use it.

``with atomic_open(path, where="minidl.save") as f: f.write(data)`` writes to a temporary file beside ``path``,
flushes it to disk, then renames it over ``path`` (``os.replace`` is atomic), so a crash mid-write leaves the
previous file intact. An exception inside the block removes the temporary file and leaves ``path`` untouched.

Temporary files are named ``.<target name>.<host>.<pid>.<random>.minidl-tmp``; a target name over 180 bytes is
shortened there to its first characters, ``~`` and 10 hex digits of its MD5, so that the temporary name (about 38
bytes longer) fits the file system's 255 whenever the target's own name does. A process killed mid-write (``kill
-9``, power cut) cannot remove its own; the next write to the same target removes those whose writer is gone (same
host, and no process has that PID any more), and :func:`remove_stale_temp_files` does it for a whole folder (a
resumed training run calls it on its checkpoint folder). The temporary file of a writer that is still running, in
this or another process, is never touched; neither are those written from another host (their writer cannot be
checked from here). On Windows no liveness check is made, so nothing is removed there.

Permissions: a new file gets ``0o666`` minus the process umask, as ``open(path, "w")`` gives; a file that is
replaced keeps its mode.

Symlinks: when ``path`` is a symlink, the file it points to is replaced (atomically, beside it) and the link stays, as
``open(path, "w")`` would write through it; replacing the link itself by a regular file would lose it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_SUFFIX", "atomic_open", "atomic_write", "remove_stale_temp_files"]

TEMP_SUFFIX = ".minidl-tmp"
_HOST = hashlib.md5(socket.gethostname().encode(), usedforsecurity=False).hexdigest()[:8]
_TEMP_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$"
)


_TARGET_MAX = 180  # bytes of the target's name kept in its temporary names (the rest adds about 38 bytes)


def _temp_target(target: str) -> str:
    """``target`` as its temporary names spell it: whole when it is short enough, else a prefix, ``~`` and a hash."""
    if len(os.fsencode(target)) <= _TARGET_MAX:
        return target
    digest = hashlib.md5(os.fsencode(target), usedforsecurity=False).hexdigest()[:10]
    prefix = target
    while len(os.fsencode(prefix)) > _TARGET_MAX - 11:
        prefix = prefix[:-1]
    return f"{prefix}~{digest}"


def _temp_name(target: str) -> str:
    return f".{_temp_target(target)}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _writer_is_gone(pid: int) -> bool:
    """True when no process has ``pid`` (so a temporary file it was writing is an orphan)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return False
    if pid == os.getpid():
        return False  # another thread of this process may be writing it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: the process exists (another user's)
        return False
    return False


def remove_stale_temp_files(folder: str | os.PathLike[str], target: str | None = None) -> list[Path]:
    """Remove the temporary files of atomic writes into ``folder`` whose writer is dead; return their paths.

    Args:
        folder: where the targets are.
        target: only the temporary files of this file name (e.g. ``"last.npz"``). Default: None (all of them).
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or (target is not None and match["target"] != _temp_target(target)):
            continue
        if match["host"] != _HOST or not _writer_is_gone(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):  # another process cleaned it first
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], where: str) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; renamed over ``path`` when the block ends without error.

    Args:
        path: the target file; its folder is created if missing.
        where: the public function writing (named in error messages), e.g. ``"minidl.save"``.

    Raises:
        IsADirectoryError: ``path`` is a folder (or a link to one).
        NotADirectoryError: a parent of ``path`` is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{where}: expected the path of a file, got the folder {path}")
    if path.is_symlink():  # replace the file it points to, beside that file; the link stays
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(
            f"{where}: cannot create the folder {path.parent} for {path.name}: a part of that path is a file"
        ) from None
    remove_stale_temp_files(path.parent, path.name)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)  # a replaced file keeps its permissions, as with open()
    except FileNotFoundError:
        mode = None
    while True:
        tmp = path.parent / _temp_name(path.name)
        try:  # 0o666 is reduced by the umask, exactly as open() does
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, where: str) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, where) as f:
        f.write(data)
