"""The small CIFAR-10 sample embedded in minidl, so the demo and the tests run offline on real images.

2,000 training images (the first 200 of each class in ``data_batch_1``) and 500 test images (the first 50 of
each class in ``test_batch``), stored as lossless PNG sprites and rebuilt by ``scripts/make_cifar10_sample.py``.
The decoded pixels are checked against the SHA-256 recorded when the sample was built.

Examples:
    >>> from minidl.data.sample import load_cifar10_sample
    >>> x_train, y_train, x_test, y_test, classes = load_cifar10_sample()
    >>> x_train.shape, x_train.dtype, y_train.shape, x_test.shape, classes[3]
    ((2000, 32, 32, 3), dtype('uint8'), (2000,), (500, 32, 32, 3), 'cat')
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

SAMPLE_DIR = Path(__file__).resolve().parent / "_sample"

__all__ = ["SAMPLE_DIR", "load_cifar10_sample"]


def _read_split(meta: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    path = SAMPLE_DIR / f"cifar10_sample_{split}.png"
    with Image.open(path) as img:
        grid = np.asarray(img.convert("RGB"))
    per_row = meta["images_per_row"]
    count = meta[split]["count"]
    rows = grid.shape[0] // 32
    if rows * per_row != count or grid.shape != (rows * 32, per_row * 32, 3):
        raise ValueError(f"{path}: a {grid.shape} sprite does not hold {count} images of 32x32x3")
    images = grid.reshape(rows, 32, per_row, 32, 3).transpose(0, 2, 1, 3, 4).reshape(count, 32, 32, 3)
    images = np.ascontiguousarray(images)
    if hashlib.sha256(images.tobytes()).hexdigest() != meta[split]["sha256"]:
        raise ValueError(
            f"{path}: the decoded pixels do not match the recorded SHA-256; rebuild the sample with "
            "scripts/make_cifar10_sample.py"
        )
    return images, np.asarray(meta[split]["labels"], dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    meta = json.loads((SAMPLE_DIR / "cifar10_sample.json").read_text())
    x_train, y_train = _read_split(meta, "train")
    x_test, y_test = _read_split(meta, "test")
    for a in (x_train, y_train, x_test, y_test):
        a.flags.writeable = False  # cached and shared: callers copy before changing
    return x_train, y_train, x_test, y_test, tuple(meta["classes"])


def load_cifar10_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(x_train, y_train, x_test, y_test, classes)``: uint8 images (N, 32, 32, 3) HWC as in torchvision's
    ``CIFAR10.data``, int64 labels 0-9, and the ten class names. The arrays are read-only (shared cache)."""
    x_train, y_train, x_test, y_test, classes = _load()
    return x_train, y_train, x_test, y_test, list(classes)
