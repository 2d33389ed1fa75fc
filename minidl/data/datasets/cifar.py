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

import gzip
import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minidl.data.datasets._base import VisionDataset, check_bool, missing_files_message, search_dirs
from minidl.data.datasets._restricted_pickle import RestrictedUnpickler, restricted_loads
from minidl.data.download import ChecksumError, DownloadError, download_url, md5sum

__all__ = ["CIFAR10", "CIFAR10Sample", "RestrictedUnpickler", "restricted_loads"]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _parse_python_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = restricted_loads(data)
    if not isinstance(d, dict):
        raise ValueError(f"CIFAR10: {name} should hold a dict, got {type(d).__name__}")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    x, y = d.get("data"), d.get("labels")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise ValueError(f"CIFAR10: {name}['data'] should be a uint8 array (N, 3072), got {x!r:.80}")
    labels = np.asarray(y, dtype=np.int64)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"CIFAR10: {name} has {x.shape[0]} images but {labels.shape} labels")
    return x, labels


def _parse_binary_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) % 3073:
        raise ValueError(f"CIFAR10: {name} has {len(data)} bytes, not a multiple of the 3073-byte record size")
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


def _verified(data: bytes, where: str, md5: str) -> bytes:
    got = md5sum(data)
    if got != md5:
        raise ChecksumError(
            f"CIFAR10: {where} has MD5 {got}, expected {md5}: the file is corrupt or not the official one"
        )
    return data


class CIFAR10(VisionDataset):
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

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train = check_bool("CIFAR10", "train", train)
        download = check_bool("CIFAR10", "download", download)
        self._set_classes(CLASSES)
        split = "train" if self.train else "test"
        found = self._find(split)
        if found is None and download:
            try:
                download_url(self.url, self.root, self.filename, self.tgz_md5)
            except DownloadError as exc:
                raise DownloadError(
                    f"{exc}\n" + self._missing_message(split) + "\n(the binary archive's MD5 is " + self.tgz_md5 + ")"
                ) from exc
            found = self._find(split)
        if found is None:
            raise FileNotFoundError(self._missing_message(split))
        images, labels = found
        if images.shape[0] == 0 or labels.min() < 0 or labels.max() >= 10:
            raise ValueError(
                f"CIFAR10: labels of {self.source} must lie in [0, 10), got [{labels.min()}, {labels.max()}]"
            )
        self.data = np.ascontiguousarray(images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        self.targets: list[int] = labels.tolist()

    def _missing_message(self, split: str) -> str:
        files = [(f"{fmt['dir']}/{name}", md5) for fmt in (_FILES["bin"], _FILES["py"]) for name, md5 in fmt[split]]
        extra = (
            f"\n  or one of the archives {self.filename} (md5 {self.tgz_md5}) or cifar-10-python.tar.gz (md5 "
            f"c58f30108f718f92721af3b95e74349a) from https://www.cs.toronto.edu/~kriz/cifar.html in {self.root}"
        )
        message = missing_files_message("CIFAR10", self.root, files[: len(_FILES["bin"][split])], extra)
        if self._incomplete:  # say first what was found and what it lacks
            message = "CIFAR10: no complete copy: found " + "; found ".join(self._incomplete) + ".\n" + message
        return message

    def _find(self, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        self._incomplete: list[str] = []  # copies with files missing, named when no complete copy is found
        for folder in search_dirs(self.root, "cifar-10", "cifar10", "CIFAR10"):
            for fmt in _FILES.values():
                d = folder / fmt["dir"]
                lacking = [name for name, _ in fmt[split] if not (d / name).is_file()]
                if d.is_dir() and lacking:
                    self._incomplete.append(f"the folder {d}, which lacks {', '.join(lacking)}")
                if not lacking:
                    self.source = d
                    parts = [fmt["parse"](_verified((d / n).read_bytes(), str(d / n), m), n) for n, m in fmt[split]]
                    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            archives = [folder / n for n in self.archive_names if (folder / n).is_file()]
            archives += sorted(p for p in folder.glob("cifar-10-*.tar.gz") if p not in archives)
            for archive in archives:
                try:
                    result = self._read_archive(archive, split)
                except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    raise type(exc)(
                        f"CIFAR10: cannot read {archive}: {exc} (the archive is truncated or corrupt: delete it and "
                        f"download it again; the official {self.filename} has MD5 {self.tgz_md5})"
                    ) from exc
                if isinstance(result, str):
                    self._incomplete.append(f"the archive {archive}, which lacks {result}")
                elif result is not None:
                    self.source = archive
                    return result
        return None

    @staticmethod
    def _read_archive(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray] | str | None:
        """Stream the archive's members and parse the ones of ``split``; None if it holds no CIFAR-10 folder, the
        names of the missing members if it lacks some of them."""
        wanted: dict[str, tuple[str, Any, str]] = {}
        for fmt in _FILES.values():
            for name, md5 in fmt[split]:
                wanted[f"{fmt['dir']}/{name}"] = (md5, fmt["parse"], fmt["dir"])
        got: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        fmt_dir = None
        seen = set()  # the CIFAR-10 folders the archive holds anything of
        with tarfile.open(archive, "r|gz") as tf:  # stream: one pass, members in archive order
            for member in tf:
                key = member.name[2:] if member.name.startswith("./") else member.name
                seen.update(fmt["dir"] for fmt in _FILES.values() if key.startswith(fmt["dir"] + "/"))
                if key not in wanted or not member.isfile():
                    continue
                md5, parse, fmt_dir = wanted[key]
                f = tf.extractfile(member)
                assert f is not None
                got[key] = parse(_verified(f.read(), f"{archive}:{key}", md5), key)
                if all(k in got for k in wanted if k.startswith(fmt_dir + "/")):
                    break
        if fmt_dir is None:  # none of the split's files: not a CIFAR-10 archive, or one without this split
            return ", ".join(k for k in wanted if k.split("/")[0] in seen) or None
        keys = [k for k in wanted if k.startswith(fmt_dir + "/")]
        if not all(k in got for k in keys):
            return ", ".join(k for k in keys if k not in got)
        return np.concatenate([got[k][0] for k in keys]), np.concatenate([got[k][1] for k in keys])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._apply(self.data[index], self.targets[index])

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


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
        return self._apply(self.data[index], self.targets[index])

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'} (embedded sample)"
