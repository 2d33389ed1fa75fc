"""CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test), from the official files.

Both official formats are read, extracted or straight from the ``.tar.gz`` (members streamed, nothing extracted):

* binary version (``cifar-10-batches-bin/data_batch_{1..5}.bin``, ``test_batch.bin``): 10,000 records of 3,073 bytes
  per file, a label byte then 1,024 red, 1,024 green, 1,024 blue bytes (32x32 planes, row-major);
* python version (``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``): pickled dicts ``{"data": uint8 (10000,
  3072), "labels": [int]}``, read with :class:`RestrictedUnpickler`, which only rebuilds plain data and NumPy arrays
  (a pickle can otherwise run arbitrary code), within a memory budget of 8 x the file's size.

Every data file's MD5 is checked against the official per-file checksum, so a flipped byte is caught whichever
archive (official or repacked) the files came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from minidl.data.dataset import _check_index
from minidl.data.datasets._base import VisionDataset, check_bool
from minidl.data.datasets._cifar_common import CIFARFiles, Layout, check_images, check_labels, load_dict, to_hwc
from minidl.data.datasets._restricted_pickle import RestrictedUnpickler, restricted_loads

__all__ = ["CIFAR10", "CIFAR10Sample", "RestrictedUnpickler", "restricted_loads"]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _parse_python_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_dict("CIFAR10", data, where)
    x = check_images("CIFAR10", d, where)
    return x, check_labels("CIFAR10", d, "labels", x.shape[0], where)


def _parse_binary_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) % 3073:
        raise ValueError(f"CIFAR10: {where} has {len(data)} bytes, not a multiple of the 3073-byte record size")
    records = np.frombuffer(data, np.uint8).reshape(-1, 3073)
    return records[:, 1:], records[:, 0].astype(np.int64)


# (file name, md5) per format and split; the official per-file checksums
_FILES = {
    "py": {
        "dir": "cifar-10-batches-py",
        "train": [
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ],
        "test": [("test_batch", "40351d587109b95175f43aff81a1287e")],
        "parse": _parse_python_batch,
    },
    "bin": {
        "dir": "cifar-10-batches-bin",
        "train": [
            ("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
            ("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
            ("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
            ("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
            ("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
        ],
        "test": [("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d")],
        "parse": _parse_binary_batch,
    },
}


class CIFAR10(CIFARFiles):
    """The CIFAR-10 dataset (torchvision's ``CIFAR10``); samples are ``(image, label)``.

    Looks in ``root`` and ``root/cifar-10`` for, in order: ``cifar-10-batches-py/``, ``cifar-10-batches-bin/``,
    ``cifar-10-python.tar.gz``, ``cifar-10-binary.tar.gz``, then any ``cifar-10-*.tar.gz`` (read in place).

    Args:
        root: folder holding the files. Default: ``$MINIDL_DATA_DIR`` or ``~/.cache/minidl/datasets``.
        train: the 50,000 training images (``data_batch_1..5``) or the 10,000 test images. Default: True.
        transform: applied to each image (a uint8 (32, 32, 3) HWC array). Default: None.
        target_transform: applied to each label. Default: None.
        download: fetch the official binary archive into ``root`` if no copy is found (MD5-checked). Default: False.

    Shape:
        - ``data``: uint8 (N, 32, 32, 3), HWC as torchvision; ``targets``: list of N ints in [0, 10).
        - sample: ``(image (32, 32, 3) uint8, label int)`` before the transform.

    Attributes:
        classes: the ten class names. class_to_idx: name -> label. source: the file or folder the data came from.

    Raises:
        FileNotFoundError: no copy found (the message lists the files and where to put them).
        ChecksumError: a data file's MD5 is not the official one.
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    filename = "cifar-10-binary.tar.gz"
    tgz_md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    archive_names = ("cifar-10-python.tar.gz", "cifar-10-binary.tar.gz")
    archive_glob = "cifar-10-*.tar.gz"
    subfolders = ("cifar-10", "cifar10", "CIFAR10")

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
        self._set_classes(CLASSES)
        parts = self._find_or_download("train" if self.train else "test", download)
        images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        if images.shape[0] == 0:
            raise ValueError(f"CIFAR10: {self.source} holds no images (expected 10,000 per batch file)")
        if labels.min() < 0 or labels.max() >= 10:
            raise ValueError(
                f"CIFAR10: labels of {self.source} must lie in [0, 10), got [{labels.min()}, {labels.max()}]"
            )
        self.data = to_hwc(images)
        self.targets = labels.tolist()

    def _layouts(self, split: str) -> list[Layout]:
        return [Layout(fmt["dir"], fmt[split], fmt["parse"]) for fmt in _FILES.values()]  # python first, then binary

    def _missing_message(self, split: str) -> str:
        binary = _FILES["bin"]
        extra = (
            f"\n  or one of the archives {self.filename} (md5 {self.tgz_md5}) or cifar-10-python.tar.gz (md5 "
            f"c58f30108f718f92721af3b95e74349a) from https://www.cs.toronto.edu/~kriz/cifar.html in {self.root}"
        )
        return self._not_found([(f"{binary['dir']}/{name}", md5) for name, md5 in binary[split]], extra)


class CIFAR10Sample(VisionDataset):
    """The small CIFAR-10 subset embedded in minidl (:func:`minidl.data.sample.load_cifar10_sample`): 2,000 train and
    500 test images of the real dataset, available offline. Same sample format as :class:`CIFAR10`.

    Args:
        train: the training part (2,000 images) or the test part (500). Default: True.
        transform: applied to each image (a uint8 (32, 32, 3) HWC array). Default: None.
        target_transform: applied to each label. Default: None.

    Examples:
        >>> ds = CIFAR10Sample(train=False)
        >>> len(ds), ds[0][0].shape, ds.classes[0]
        (500, (32, 32, 3), 'airplane')
    """

    def __init__(
        self,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        from minidl.data.sample import SAMPLE_DIR, load_cifar10_sample

        super().__init__(SAMPLE_DIR, transform, target_transform)
        self.train = check_bool("CIFAR10Sample", "train", train)
        x_train, y_train, x_test, y_test, classes = load_cifar10_sample()
        self.data = x_train if self.train else x_test
        self.targets: list[int] = (y_train if self.train else y_test).tolist()
        self._set_classes(classes)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = _check_index(type(self).__name__, index, len(self))
        return self._apply(self.data[index], self.targets[index])

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'} (embedded sample)"
