"""Downloads that are checksum-verified and never half-done, and archive extraction that cannot escape its folder.

* :func:`download_url` streams a URL into a temporary file next to the target while computing its MD5, checks the
  MD5 and only then renames the file into place (``os.replace`` is atomic), so an interrupted or corrupted download
  never passes for a complete one.
* :func:`extract_archive` unpacks ``.tar``/``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz``/``.zip``/``.gz`` after
  checking every member like tarfile's ``filter="data"``: absolute paths, ``..`` escapes, links pointing outside the
  target, device files and FIFOs are refused with :class:`UnsafeArchiveError` before anything is written.
* :func:`default_root`: where datasets live when no ``root`` is given: ``$MINIDL_DATA_DIR``, else
  ``~/.cache/minidl/datasets``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ChecksumError",
    "DownloadError",
    "UnsafeArchiveError",
    "check_integrity",
    "default_root",
    "download_url",
    "extract_archive",
    "md5sum",
]

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's MD5 differs from the expected one (corrupt, truncated or a different version)."""


class DownloadError(OSError):
    """A download failed (offline, HTTP error, ...); the message says where to put the files by hand."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder (or is a device file)."""


def default_root() -> Path:
    """``$MINIDL_DATA_DIR`` if set, else ``~/.cache/minidl/datasets``."""
    env = os.environ.get("MINIDL_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minidl" / "datasets"


def md5sum(source: str | os.PathLike | IO[bytes] | bytes) -> str:
    """Hex MD5 of a file path, an open binary file (read to its end) or bytes.

    Examples:
        >>> md5sum(b"minidl")
        'e05a211ebb70bc619f1c328ea5fa9503'
    """
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    else:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_integrity(path: str | os.PathLike, md5: str | None = None) -> bool:
    """True if ``path`` is a file and (when ``md5`` is given) its MD5 is ``md5``."""
    if not os.path.isfile(path):
        return False
    return md5 is None or md5sum(path) == md5.lower()


def download_url(
    url: str, root: str | os.PathLike, filename: str | None = None, md5: str | None = None, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``root/filename`` unless a file with the right MD5 is already there.

    The bytes go to a temporary file in ``root`` (its MD5 computed on the way), which is renamed to ``filename`` only
    when the MD5 matches; on any failure the temporary file is removed.

    Args:
        url: http(s):// or file:// URL.
        root: target folder (created if missing).
        filename: name of the saved file. Default: the last component of the URL.
        md5: expected hex MD5. Default: None (not checked; only for files without a published checksum).
        timeout: socket timeout in seconds. Default: 60.

    Returns:
        the path of the complete file.

    Raises:
        DownloadError: the URL could not be read (offline, HTTP error, ...).
        ChecksumError: the downloaded bytes have another MD5.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / (filename or posixpath.basename(url.split("?")[0]))
    if check_integrity(path, md5):
        return path
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=root)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DownloadError(f"could not download {url}: {exc}") from exc
            with response:
                total = int(response.headers.get("Content-Length") or 0) if hasattr(response, "headers") else 0
                progress = _progress(total, path.name)
                try:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except OSError as exc:
                            raise DownloadError(f"the download of {url} broke off: {exc}") from exc
                        if not chunk:
                            break
                        digest.update(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress.update(len(chunk))
                finally:
                    if progress is not None:
                        progress.close()
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise ChecksumError(
                f"the file downloaded from {url} has MD5 {digest.hexdigest()}, expected {md5}: it is corrupt or "
                f"incomplete; nothing was saved"
            )
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return path


def _progress(total: int, name: str) -> Any:
    try:
        from tqdm.auto import tqdm  # a widget in a Jupyter notebook, text elsewhere
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total or None, unit="B", unit_scale=True, desc=name, disable=None)


# ----------------------------------------------------------------------------------------------------- extraction
def _inside(target: str, relative: str) -> bool:
    """True if ``target/relative`` (normalized, without touching the disk) stays inside ``target``."""
    full = os.path.normpath(os.path.join(target, relative))
    return full == target or full.startswith(target + os.sep)


def _check_name(archive: str, name: str, target: str) -> None:
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if not _inside(target, name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {target}; refusing to extract")


def _check_tar_members(archive: str, members: Iterable[tarfile.TarInfo], target: str) -> None:
    for m in members:
        _check_name(archive, m.name, target)
        if m.issym() or m.islnk():
            # a symlink's target is relative to the link's folder, a hard link's to the archive root
            base = os.path.dirname(m.name) if m.issym() else ""
            if os.path.isabs(m.linkname) or not _inside(target, os.path.join(base, m.linkname)):
                kind = "symlink" if m.issym() else "hard link"
                raise UnsafeArchiveError(
                    f"{archive}: member {m.name!r} is a {kind} to {m.linkname!r}, outside {target}; refusing to extract"
                )
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: member {m.name!r} is a device file or FIFO (tar type {m.type!r}); refusing to extract"
            )


def _check_zip_members(archive: str, infos: Iterable[zipfile.ZipInfo], zf: zipfile.ZipFile, target: str) -> None:
    for info in infos:
        _check_name(archive, info.filename, target)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            link = zf.read(info).decode("utf-8", "replace")
            if os.path.isabs(link) or not _inside(target, os.path.join(os.path.dirname(info.filename), link)):
                raise UnsafeArchiveError(
                    f"{archive}: member {info.filename!r} is a symlink to {link!r}, outside {target}; refusing to "
                    "extract"
                )


def extract_archive(
    from_path: str | os.PathLike, to_path: str | os.PathLike | None = None, remove_finished: bool = False
) -> Path:
    """Safely unpack an archive into ``to_path`` (default: its folder) and return ``to_path``.

    Every member is checked first; if any is unsafe nothing is extracted. Tar archives are then extracted with
    ``filter="data"`` where Python supports it, as a second line of defence.

    Args:
        from_path: the archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tbz2``, ``.tar.xz``, ``.zip`` or a
            single-file ``.gz``).
        to_path: target folder. Default: the archive's folder.
        remove_finished: delete the archive afterwards. Default: False.

    Raises:
        UnsafeArchiveError: a member with an absolute path, a ``..`` escape, a link pointing outside ``to_path``, or
            a device file/FIFO.
        ValueError: an unknown archive type.
    """
    from_path = Path(from_path)
    to_path = Path(to_path) if to_path is not None else from_path.parent
    to_path.mkdir(parents=True, exist_ok=True)
    target = os.path.realpath(to_path)
    name = from_path.name.lower()
    if zipfile.is_zipfile(from_path):
        with zipfile.ZipFile(from_path) as zf:
            infos = zf.infolist()
            _check_zip_members(str(from_path), infos, zf, target)
            zf.extractall(target)
    elif name.endswith(".gz") and not name.endswith((".tar.gz", ".tgz")) and not tarfile.is_tarfile(from_path):
        out = Path(target) / from_path.name[:-3]
        with gzip.open(from_path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    elif tarfile.is_tarfile(from_path):
        with tarfile.open(from_path, "r:*") as tf:
            members = tf.getmembers()
            _check_tar_members(str(from_path), members, target)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(target, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706
                tf.extractall(target, members=members)
    else:
        raise ValueError(f"extract_archive: {from_path} is not a tar, zip or gzip archive")
    if remove_finished:
        from_path.unlink()
    return Path(target)
