"""What CIFAR-10 and CIFAR-100 share: finding the official files, extracted or inside a ``.tar.gz``, checking every
file's MD5 against the official one, downloading the archive, and the message that says what to put where.

The files of a split come in a *layout*: a folder (``cifar-10-batches-bin``, ``cifar-100-python``) that holds named
files, each with its official MD5, and the parser that turns a file's bytes into what the dataset keeps. CIFAR-10 has
two layouts (binary and python), CIFAR-100 one (python). A copy is looked for in ``root`` and in the dataset's
subfolders of it: first each layout's folder, extracted; then the archives, read in place (their members are streamed
in one pass and parsed as they come; nothing is extracted). The python-format files are pickled dicts, read with
:func:`restricted_loads`, which only rebuilds plain data and NumPy arrays (a pickle can otherwise run arbitrary code).
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from minidl.data.dataset import _check_index
from minidl.data.datasets._base import VisionDataset, missing_files_message, search_dirs
from minidl.data.datasets._restricted_pickle import restricted_loads
from minidl.data.download import ChecksumError, DownloadError, download_url, md5sum

__all__ = ["CIFARFiles", "Layout", "check_images", "check_labels", "load_dict", "to_hwc", "verified"]

# what tarfile, gzip and zlib raise on a truncated or corrupt archive
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class Layout(NamedTuple):
    """One way a split's files come: ``folder/<name>`` for each ``(name, md5)`` of ``files``. ``parse(data, where)``
    turns a file's MD5-checked bytes into what the dataset keeps; ``where`` (the path, or ``archive:member``) names
    the file in its error messages."""

    folder: str
    files: list[tuple[str, str]]
    parse: Callable[[bytes, str], Any]


def verified(owner: str, data: bytes, where: str, md5: str) -> bytes:
    """``data`` if its MD5 is ``md5``; a ChecksumError naming ``owner``, the file and both checksums otherwise."""
    got = md5sum(data)
    if got != md5:
        raise ChecksumError(
            f"{owner}: {where} has MD5 {got}, expected {md5}: the file is corrupt or not the official one"
        )
    return data


def load_dict(owner: str, data: bytes, where: str) -> dict[str, Any]:
    """Unpickle ``data`` with the restricted unpickler; the dict it holds, with str keys (the official files were
    written by Python 2, whose str keys come back as bytes)."""
    d = restricted_loads(data)
    if not isinstance(d, dict):
        raise ValueError(f"{owner}: {where} should hold a dict, got {type(d).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def check_images(owner: str, d: dict[str, Any], where: str) -> np.ndarray:
    """``d["data"]``, checked to be uint8 (N, 3072): N images, each 1,024 red, 1,024 green, then 1,024 blue bytes."""
    x = d.get("data")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise ValueError(f"{owner}: {where}['data'] should be a uint8 array (N, 3072), got {x!r:.80}")
    return x


def check_labels(owner: str, d: dict[str, Any], key: str, n: int, where: str, count: int | None = None) -> np.ndarray:
    """``d[key]`` as int64 (n,), one label per image; with ``count``, also checked to lie in [0, count)."""
    labels = np.asarray(d.get(key, []), dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"{owner}: {where} has {n} images but {labels.shape} {key}")
    if count is not None and n and (labels.min() < 0 or labels.max() >= count):
        raise ValueError(f"{owner}: {where}['{key}'] must lie in [0, {count}), got [{labels.min()}, {labels.max()}]")
    return labels


def to_hwc(images: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of three 32x32 planes -> (N, 32, 32, 3), HWC as torchvision, contiguous."""
    return np.ascontiguousarray(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


class CIFARFiles(VisionDataset):
    """Base of :class:`~minidl.data.datasets.CIFAR10` and :class:`~minidl.data.datasets.CIFAR100`: finds a copy
    (:meth:`_find`), downloads the archive (:meth:`_download`), and gives samples ``(data[i], targets[i])``.

    A subclass sets the class attributes below and defines :meth:`_layouts` (where a split's files are) and
    :meth:`_missing_message` (what to put where when no copy is found); its ``__init__`` calls
    ``self._find_or_download(split, download)``.
    """

    url: ClassVar[str]  # the archive that download=True fetches ...
    filename: ClassVar[str]  # ... saved under this name in root
    tgz_md5: ClassVar[str]  # ... and its official MD5
    archive_names: ClassVar[tuple[str, ...]]  # archives looked for by name first, in this order
    archive_glob: ClassVar[str]  # then any archive whose name matches this, in sorted order
    subfolders: ClassVar[tuple[str, ...]]  # folders of root looked in after root itself

    data: np.ndarray
    targets: list[int]

    def _layouts(self, split: str) -> list[Layout]:
        """The layouts that may hold ``split``, in the order they are looked for."""
        raise NotImplementedError(f"{type(self).__name__} must define _layouts(split)")

    def _missing_message(self, split: str) -> str:
        """The FileNotFoundError's message: which files to put where (build it with :meth:`_not_found`)."""
        raise NotImplementedError(f"{type(self).__name__} must define _missing_message(split)")

    def _not_found(self, files: list[tuple[str, str]], extra: str) -> str:
        """:func:`missing_files_message`, preceded by the copies found incomplete and what they lack."""
        owner = type(self).__name__
        message = missing_files_message(owner, self.root, files, extra)
        if self._incomplete:  # say first what was found and what it lacks
            message = f"{owner}: no complete copy: found " + "; found ".join(self._incomplete) + ".\n" + message
        return message

    def _find(self, split: str) -> list[Any] | None:
        """The parsed files of the first complete copy of ``split`` (in the order of its layout's ``files``), with
        ``self.source`` set to its folder or archive; None if there is none. The copies found incomplete are listed
        in ``self._incomplete``."""
        owner = type(self).__name__
        layouts = self._layouts(split)
        self._incomplete: list[str] = []
        for folder in search_dirs(self.root, *self.subfolders):
            for layout in layouts:
                d = folder / layout.folder
                lacking = [name for name, _ in layout.files if not (d / name).is_file()]
                if d.is_dir() and lacking:
                    self._incomplete.append(f"the folder {d}, which lacks {', '.join(lacking)}")
                if not lacking:
                    self.source = d
                    paths = [(str(d / name), md5) for name, md5 in layout.files]
                    return [layout.parse(verified(owner, Path(p).read_bytes(), p, md5), p) for p, md5 in paths]
            archives = [folder / n for n in self.archive_names if (folder / n).is_file()]
            archives += sorted(p for p in folder.glob(self.archive_glob) if p not in archives)
            for archive in archives:
                try:
                    result = self._read_archive(archive, layouts)
                except _ARCHIVE_ERRORS as exc:
                    raise type(exc)(
                        f"{owner}: cannot read {archive}: {exc} (the archive is truncated or corrupt: delete it and "
                        f"download it again; the official {self.filename} has MD5 {self.tgz_md5})"
                    ) from exc
                if isinstance(result, str):
                    self._incomplete.append(f"the archive {archive}, which lacks {result}")
                else:
                    self.source = archive
                    return result
        return None

    def _read_archive(self, archive: Path, layouts: list[Layout]) -> list[Any] | str:
        """Stream the archive's members and parse those of ``layouts``, stopping once one layout is complete: its
        parsed files, or the names of the members it lacks (of the layouts it holds anything of; of all of them if
        it holds nothing of any)."""
        owner = type(self).__name__
        wanted = {f"{layout.folder}/{name}": (md5, layout) for layout in layouts for name, md5 in layout.files}
        got: dict[str, Any] = {}
        layout = None  # the layout of the last member parsed
        seen = set()  # the layout folders the archive holds anything of
        with tarfile.open(archive, "r|gz") as tf:  # stream: one pass, members in archive order
            for member in tf:
                key = member.name[2:] if member.name.startswith("./") else member.name
                seen.update(lay.folder for lay in layouts if key.startswith(lay.folder + "/"))
                if key not in wanted or not member.isfile():
                    continue
                md5, layout = wanted[key]
                f = tf.extractfile(member)
                assert f is not None
                where = f"{archive}:{key}"
                got[key] = layout.parse(verified(owner, f.read(), where, md5), where)
                if all(f"{layout.folder}/{name}" in got for name, _ in layout.files):
                    break
        if layout is None:  # none of the split's files: not a copy of the dataset, or one without this split
            return ", ".join(k for k in wanted if not seen or k.split("/")[0] in seen)
        keys = [f"{layout.folder}/{name}" for name, _ in layout.files]
        if not all(k in got for k in keys):
            return ", ".join(k for k in keys if k not in got)
        return [got[k] for k in keys]

    def _download(self, split: str) -> None:
        """Fetch the official archive into root (MD5-checked); a DownloadError that also says what to put where."""
        try:
            download_url(self.url, self.root, self.filename, self.tgz_md5)
        except DownloadError as exc:
            raise DownloadError(f"{exc}\n" + self._missing_message(split)) from exc

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = _check_index(type(self).__name__, index, len(self))
        return self._apply(self.data[index], self.targets[index])

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"
