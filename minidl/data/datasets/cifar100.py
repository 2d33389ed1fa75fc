"""CIFAR-100: 60,000 32x32 colour images in 100 fine classes grouped into 20 superclasses (500 train and 100 test
images per class), from the official python-format files.

The official ``cifar-100-python.tar.gz`` holds ``cifar-100-python/train`` (50,000 images), ``test`` (10,000) and
``meta`` (the class names): pickled dicts ``{"data": uint8 (N, 3072), "fine_labels": [int], "coarse_labels": [int],
...}`` and ``{"fine_label_names": [100 str], "coarse_label_names": [20 str]}``. They are read with
:class:`~minidl.data.datasets.RestrictedUnpickler`, which only rebuilds plain data and NumPy arrays (a pickle can
otherwise run arbitrary code), extracted or straight from the archive (members streamed, nothing extracted). Each
file's MD5 is checked against torchvision's table.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minidl.data.datasets._base import VisionDataset, check_bool, missing_files_message, search_dirs
from minidl.data.datasets._restricted_pickle import restricted_loads
from minidl.data.download import ChecksumError, DownloadError, download_url, md5sum

__all__ = ["CIFAR100"]

_DIR = "cifar-100-python"
# file name -> md5 (torchvision's table)
_FILES = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}


def _load_dict(data: bytes, where: str, md5: str) -> dict[str, Any]:
    """MD5-check ``data``, unpickle it with the restricted unpickler and return it with str keys."""
    got = md5sum(data)
    if got != md5:
        raise ChecksumError(
            f"CIFAR100: {where} has MD5 {got}, expected {md5}: the file is corrupt or not the official one"
        )
    d = restricted_loads(data)
    if not isinstance(d, dict):
        raise ValueError(f"CIFAR100: {where} should hold a dict, got {type(d).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _labels(d: dict[str, Any], key: str, n: int, count: int, where: str) -> np.ndarray:
    labels = np.asarray(d.get(key, []), dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"CIFAR100: {where} has {n} images but {labels.shape} {key}")
    if n and (labels.min() < 0 or labels.max() >= count):
        raise ValueError(f"CIFAR100: {where}['{key}'] must lie in [0, {count}), got [{labels.min()}, {labels.max()}]")
    return labels


def _parse_split(d: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = d.get("data")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise ValueError(f"CIFAR100: {where}['data'] should be a uint8 array (N, 3072), got {x!r:.80}")
    n = x.shape[0]
    return x, _labels(d, "fine_labels", n, 100, where), _labels(d, "coarse_labels", n, 20, where)


def _names(d: dict[str, Any], key: str, count: int, where: str) -> list[str]:
    names = d.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        raise ValueError(f"CIFAR100: {where}['{key}'] should list {count} names, got {names!r:.80}")
    out = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    if not all(isinstance(n, str) for n in out):
        raise ValueError(f"CIFAR100: {where}['{key}'] should hold strings, got {names!r:.80}")
    return out


class CIFAR100(VisionDataset):
    """The CIFAR-100 dataset (torchvision's ``CIFAR100``); samples are ``(image, fine_label)``.

    Looks in ``root`` and ``root/cifar-100`` for the folder ``cifar-100-python/`` (``train`` or ``test``, and
    ``meta``), then ``cifar-100-python.tar.gz``, then any ``cifar-100-*.tar.gz`` (read in place).

    Args:
        root: folder holding the files. Default: ``$MINIDL_DATA_DIR`` or ``~/.cache/minidl/datasets``.
        train: the 50,000 training images or the 10,000 test images. Default: True.
        transform: applied to each image (a uint8 (32, 32, 3) HWC array). Default: None.
        target_transform: applied to each label. Default: None.
        download: fetch the official archive into ``root`` if no copy is found (MD5-checked). Default: False.

    Shape:
        - ``data``: uint8 (N, 32, 32, 3), HWC as torchvision; ``targets``: list of N fine labels in [0, 100).
        - sample: ``(image (32, 32, 3) uint8, fine label int)`` before the transform.

    Attributes:
        classes: the 100 fine class names (``"apple"``, ``"aquarium_fish"``, ...). class_to_idx: name -> label.
        coarse_targets: list of N superclass labels in [0, 20) (not in torchvision). coarse_classes: the 20
        superclass names. source: the file or folder the data came from.

    Raises:
        FileNotFoundError: no copy found (the message lists the files and where to put them).
        ChecksumError: a file's MD5 is not the official one.
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    filename = "cifar-100-python.tar.gz"
    tgz_md5 = "eb9058c3a382ffc7106e4002c42a8d85"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train = check_bool("CIFAR100", "train", train)
        download = check_bool("CIFAR100", "download", download)
        split = "train" if self.train else "test"
        found = self._find(split)
        if found is None and download:
            try:
                download_url(self.url, self.root, self.filename, self.tgz_md5)
            except DownloadError as exc:
                raise DownloadError(f"{exc}\n" + self._missing_message(split)) from exc
            found = self._find(split)
        if found is None:
            raise FileNotFoundError(self._missing_message(split))
        split_dict, meta_dict = found
        where = f"{self.source}:{split}"
        images, fine, coarse = _parse_split(split_dict, where)
        self._set_classes(_names(meta_dict, "fine_label_names", 100, f"{self.source}:meta"))
        self.coarse_classes = _names(meta_dict, "coarse_label_names", 20, f"{self.source}:meta")
        self.data = np.ascontiguousarray(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        self.targets: list[int] = fine.tolist()
        self.coarse_targets: list[int] = coarse.tolist()

    def _missing_message(self, split: str) -> str:
        files = [(f"{_DIR}/{name}", _FILES[name]) for name in (split, "meta")]
        extra = (
            f"\n  or the archive {self.filename} (md5 {self.tgz_md5}) from {self.url} (see "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) in {self.root}"
        )
        message = missing_files_message("CIFAR100", self.root, files, extra)
        if self._incomplete:  # say first what was found and what it lacks
            message = "CIFAR100: no complete copy: found " + "; found ".join(self._incomplete) + ".\n" + message
        return message

    def _find(self, split: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        self._incomplete: list[str] = []  # copies with files missing, named when no complete copy is found
        names = (split, "meta")
        for folder in search_dirs(self.root, "cifar-100", "cifar100", "CIFAR100"):
            d = folder / _DIR
            lacking = [name for name in names if not (d / name).is_file()]
            if d.is_dir() and lacking:
                self._incomplete.append(f"the folder {d}, which lacks {', '.join(lacking)}")
            if not lacking:
                self.source = d
                split_dict, meta_dict = (_load_dict((d / n).read_bytes(), str(d / n), _FILES[n]) for n in names)
                return split_dict, meta_dict
            archives = [folder / self.filename] if (folder / self.filename).is_file() else []
            archives += sorted(p for p in folder.glob("cifar-100-*.tar.gz") if p not in archives)
            for archive in archives:
                try:
                    result = self._read_archive(archive, names)
                except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    raise type(exc)(
                        f"CIFAR100: cannot read {archive}: {exc} (the archive is truncated or corrupt: delete it and "
                        f"download it again; the official {self.filename} has MD5 {self.tgz_md5})"
                    ) from exc
                if isinstance(result, str):
                    self._incomplete.append(f"the archive {archive}, which lacks {result}")
                else:
                    self.source = archive
                    return result
        return None

    @staticmethod
    def _read_archive(archive: Path, names: tuple[str, str]) -> tuple[dict[str, Any], dict[str, Any]] | str:
        """Stream the archive's members and load ``cifar-100-python/<name>`` for each name; the names of the missing
        members if it lacks some of them."""
        got: dict[str, dict[str, Any]] = {}
        with tarfile.open(archive, "r|gz") as tf:  # stream: one pass, members in archive order
            for member in tf:
                key = member.name[2:] if member.name.startswith("./") else member.name
                name = key[len(_DIR) + 1 :] if key.startswith(_DIR + "/") else None
                if name not in names or not member.isfile():
                    continue
                f = tf.extractfile(member)
                assert f is not None
                got[name] = _load_dict(f.read(), f"{archive}:{key}", _FILES[name])
                if len(got) == len(names):
                    break
        if len(got) < len(names):
            return ", ".join(f"{_DIR}/{n}" for n in names if n not in got)
        return got[names[0]], got[names[1]]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._apply(self.data[index], self.targets[index])

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"
