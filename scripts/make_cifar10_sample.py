"""Build the small CIFAR-10 sample embedded in the package (minidl/data/_sample/).

The sample lets the demo and the tests run offline on real images. It takes the first ``--train-per-class``
images of each class from the official training batches and the first ``--test-per-class`` of each class from
the test batch, in file order, so the result is deterministic. Member files are checked against the official
md5s before use.

Storage: each split is one lossless PNG sprite (a grid of 50 images per row), about 40 % smaller than a
compressed ``.npz`` of the same pixels, plus ``cifar10_sample.json`` with the labels, the class names and the
SHA-256 of each split's pixel array so the loader can verify what it decodes.

Usage:
    python scripts/make_cifar10_sample.py --archive ../shared/data/cifar-10/cifar-10-binary-rebuilt.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

# Official md5s of the binary version's member files.
MEMBER_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
PER_ROW = 50
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_member(archive: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of one binary batch inside the archive."""
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.getmember(f"cifar-10-batches-bin/{name}")
        data = tar.extractfile(member).read()
    digest = hashlib.md5(data).hexdigest()
    if digest != MEMBER_MD5[name]:
        raise ValueError(f"{name}: md5 {digest} differs from the official {MEMBER_MD5[name]}")
    records = np.frombuffer(data, np.uint8).reshape(-1, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def first_per_class(images: np.ndarray, labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
    return images[keep], labels[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=Path("../shared/data/cifar-10/cifar-10-binary-rebuilt.tar.gz"))
    parser.add_argument("--out", type=Path, default=Path("minidl/data/_sample"))
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    args = parser.parse_args()

    train_x, train_y = read_member(args.archive, "data_batch_1.bin")
    if args.train_per_class > 900:  # data_batch_1 has at least 937 images of each class
        more_x, more_y = read_member(args.archive, "data_batch_2.bin")
        train_x, train_y = np.concatenate([train_x, more_x]), np.concatenate([train_y, more_y])
    test_x, test_y = read_member(args.archive, "test_batch.bin")
    x_train, y_train = first_per_class(train_x, train_y, args.train_per_class)
    x_test, y_test = first_per_class(test_x, test_y, args.test_per_class)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"classes": CLASSES, "images_per_row": PER_ROW, "source": "CIFAR-10 binary version, first images per class"}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        write_atomic(args.out / f"cifar10_sample_{split}.png", sprite_png(x))
        meta[split] = {"count": len(x), "labels": y.tolist(), "sha256": hashlib.sha256(x.tobytes()).hexdigest()}
    write_atomic(args.out / "cifar10_sample.json", json.dumps(meta).encode())
    total = sum(f.stat().st_size for f in args.out.glob("cifar10_sample*"))
    print(f"wrote {args.out}: {len(x_train)} train + {len(x_test)} test images, {total / 1e6:.1f} MB")


def sprite_png(images: np.ndarray) -> bytes:
    """(N, 32, 32, 3) uint8 -> PNG bytes of a grid with PER_ROW images per row (N a multiple of PER_ROW)."""
    from PIL import Image

    rows = len(images) // PER_ROW
    grid = images.reshape(rows, PER_ROW, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, PER_ROW * 32, 3)
    out = io.BytesIO()
    Image.fromarray(grid).save(out, "PNG", optimize=True)
    return out.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
