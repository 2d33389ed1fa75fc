"""Downloads that are checksum-verified and never half-done, and archive extraction that cannot escape its folder.

* :func:`download_url` streams a URL into a temporary file next to the target while computing its MD5, checks the
  MD5 and only then renames the file into place (``os.replace`` is atomic, through :func:`minidl._atomic.atomic_open`),
  so an interrupted or corrupted download never passes for a complete one.
* :func:`extract_archive` (defined in :mod:`minidl.data.extract`) unpacks ``.tar``/``.tar.gz``/``.tgz``/
  ``.tar.bz2``/``.tar.xz``/``.zip``/``.gz`` after resolving every member's final path, links included: an archive
  with a member that would land outside the target, or that expands past the size limits, is refused whole with
  :class:`UnsafeArchiveError` before anything is written.
* :func:`default_root`: where datasets live when no ``root`` is given: ``$MINIDL_DATA_DIR``, else
  ``~/.cache/minidl/datasets``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from minidl._atomic import atomic_open
from minidl.data.extract import UnsafeArchiveError, extract_archive

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
    digest = hashlib.md5(usedforsecurity=False)
    with atomic_open(path, "download_url") as out:  # removed again on any failure, the MD5 check's included
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
    return path


def _progress(total: int, name: str) -> Any:
    try:
        from tqdm.auto import tqdm  # a widget in a Jupyter notebook, text elsewhere
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total or None, unit="B", unit_scale=True, desc=name, disable=None)
