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

import os
from collections.abc import Callable
from typing import Any

from minidl.data.datasets._cifar_common import CIFARFiles, Layout, check_images, check_labels, load_dict, to_hwc

__all__ = ["CIFAR100"]

_DIR = "cifar-100-python"
# file name -> md5 (torchvision's table)
_FILES = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}


def _load_dict(data: bytes, where: str) -> dict[str, Any]:
    return load_dict("CIFAR100", data, where)


def _names(d: dict[str, Any], key: str, count: int, where: str) -> list[str]:
    names = d.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        raise ValueError(f"CIFAR100: {where}['{key}'] should list {count} names, got {names!r:.80}")
    out = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    if not all(isinstance(n, str) for n in out):
        raise ValueError(f"CIFAR100: {where}['{key}'] should hold strings, got {names!r:.80}")
    return out


class CIFAR100(CIFARFiles):
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
    archive_names = ("cifar-100-python.tar.gz",)
    archive_glob = "cifar-100-*.tar.gz"
    subfolders = ("cifar-100", "cifar100", "CIFAR100")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train, download = self._split_flags(train, download)
        split = "train" if self.train else "test"
        split_dict, meta_dict = self._find_or_download(split, download)
        where = f"{self.source}:{split}"
        images = check_images("CIFAR100", split_dict, where)
        n = images.shape[0]
        fine = check_labels("CIFAR100", split_dict, "fine_labels", n, where, count=100)
        coarse = check_labels("CIFAR100", split_dict, "coarse_labels", n, where, count=20)
        self._set_classes(_names(meta_dict, "fine_label_names", 100, f"{self.source}:meta"))
        self.coarse_classes = _names(meta_dict, "coarse_label_names", 20, f"{self.source}:meta")
        self.data = to_hwc(images)
        self.targets = fine.tolist()
        self.coarse_targets: list[int] = coarse.tolist()

    def _layouts(self, split: str) -> list[Layout]:
        return [Layout(_DIR, [(name, _FILES[name]) for name in (split, "meta")], _load_dict)]

    def _missing_message(self, split: str) -> str:
        extra = (
            f"\n  or the archive {self.filename} (md5 {self.tgz_md5}) from {self.url} (see "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) in {self.root}"
        )
        return self._not_found([(f"{_DIR}/{name}", _FILES[name]) for name in (split, "meta")], extra)
