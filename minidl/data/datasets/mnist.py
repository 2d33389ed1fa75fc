"""MNIST and Fashion-MNIST: 70,000 28x28 grayscale images in 10 classes (60,000 train, 10,000 test).

Both come as four gzip'd IDX files. IDX format: a big-endian header ``0x00 0x00 <type> <ndim>``, then ``ndim``
big-endian int32 sizes, then the values (type ``0x08`` = unsigned byte): images are (N, 28, 28), labels (N,). Each
file's MD5 is checked against the official checksum (torchvision's list).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minidl.data.dataset import _check_index
from minidl.data.datasets._base import VisionDataset, missing_files_message, search_dirs
from minidl.data.download import ChecksumError, DownloadError, download_url, md5sum

__all__ = ["MNIST", "FashionMNIST", "read_idx"]

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}


def read_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse (uncompressed) IDX bytes into an array.

    Examples:
        >>> read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])).tolist()
        [7, 8, 9]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{name}: not an IDX file (header bytes {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{name}: an IDX file of shape {shape} should have {expected} bytes, got {len(data)}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


class MNIST(VisionDataset):
    """The MNIST handwritten digits (torchvision's ``MNIST``); samples are ``(image, label)``.

    Looks for the four ``.gz`` files (or their un-gzipped versions) in ``root``, ``root/mnist``, ``root/MNIST/raw``
    (torchvision's layout).

    Args:
        root: folder holding the files. Default: ``$MINIDL_DATA_DIR`` or ``~/.cache/minidl/datasets``.
        train: the 60,000 training images or the 10,000 test images. Default: True.
        transform: applied to each image (a uint8 (28, 28) array). Default: None.
        target_transform: applied to each label. Default: None.
        download: fetch the files (MD5-checked) into ``root`` if they are missing. Default: False.

    Shape:
        - ``data``: uint8 (N, 28, 28); ``targets``: int64 (N,) in [0, 10).
        - sample: ``(image (28, 28) uint8, label int)`` before the transform.

    Raises:
        FileNotFoundError: files missing (the message lists them with their MD5 and where to put them).
        ChecksumError: a file's MD5 is not the official one.
    """

    mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine"]  # fmt: skip
    subfolders = ("mnist", "MNIST/raw")

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
        self._set_classes(self.classes)
        files = self.resources[:2] if self.train else self.resources[2:]
        self.source = folder = self._find_or_download(files, download)
        images = self._read(folder, *files[0])
        labels = self._read(folder, *files[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{type(self).__name__}: images {images.shape} and labels {labels.shape} do not match")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(f"{type(self).__name__}: labels must lie in [0, {len(self.classes)})")
        self.data: np.ndarray = images
        self.targets: np.ndarray = labels.astype(np.int64)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = _check_index(type(self).__name__, index, len(self))
        return self._apply(self.data[index], int(self.targets[index]))

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"

    def _missing_message(self, files: list[tuple[str, str]]) -> str:
        return missing_files_message(
            type(self).__name__, self.root, files, f"\n  (downloadable from {self.mirrors[0]})"
        )

    def _find(self, files: list[tuple[str, str]]) -> Path | None:
        for folder in search_dirs(self.root, *self.subfolders):
            if all((folder / f).is_file() or (folder / f[:-3]).is_file() for f, _ in files):
                return folder
        return None

    def _read(self, folder: Path, filename: str, md5: str) -> np.ndarray:
        path = folder / filename
        if path.is_file():
            raw = path.read_bytes()
            got = md5sum(raw)
            if got != md5:
                raise ChecksumError(
                    f"{type(self).__name__}: {path} has MD5 {got}, expected {md5}: the file is corrupt or incomplete"
                )
            try:
                data = gzip.decompress(raw)
            except (OSError, EOFError) as exc:
                raise ValueError(f"{type(self).__name__}: {path} is not a valid gzip file: {exc}") from exc
        else:  # an un-gzipped copy: no official checksum to compare with, the IDX header checks the size
            path = folder / filename[:-3]
            data = path.read_bytes()
        return read_idx(data, str(path))

    def _download(self, files: list[tuple[str, str]]) -> None:
        target = self.root / self.subfolders[-1]
        for filename, md5 in files:
            errors = []
            for mirror in self.mirrors:
                try:
                    download_url(mirror + filename, target, filename, md5)
                    break
                except (DownloadError, ChecksumError) as exc:
                    errors.append(str(exc))
            else:
                raise DownloadError("\n".join(errors) + "\n" + self._missing_message(files))


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST (torchvision's ``FashionMNIST``): the MNIST format with 10 clothing classes.

    Same arguments and attributes as :class:`MNIST`; looks in ``root``, ``root/fashion-mnist`` and
    ``root/FashionMNIST/raw``.
    """

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]  # fmt: skip
    subfolders = ("fashion-mnist", "FashionMNIST/raw")
