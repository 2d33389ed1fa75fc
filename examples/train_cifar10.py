"""Train a small CNN on CIFAR-10, or on minidl's embedded sample of it when CIFAR-10 is not found.

Where the data comes from, in order: ``--data-dir``, the ``MINIDL_DATA_DIR`` environment variable, minidl's
dataset cache. A folder counts when it holds ``cifar-10-batches-bin/`` (or the python version), or a
``cifar-10-binary.tar.gz``-style archive, directly or in a ``cifar-10/`` subfolder. Without one, the script trains
on the 2,000 + 500 real CIFAR-10 images embedded in minidl and says so.

Usage:
    python examples/train_cifar10.py --quick                 # the README's demo: a couple of minutes on 2 cores
    python examples/train_cifar10.py --data-dir ~/data --epochs 30 --batch-size 128 --lr 0.05
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

import minidl
from minidl import nn, optim


def small_cnn(num_classes: int = 10, width: int = 32) -> nn.Sequential:
    """Two conv-BN-ReLU blocks per stage, max-pool between stages, global average pooling, linear head."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        nn.MaxPool2d(2),
        *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(4 * width, num_classes),
    )


def find_cifar10(data_dir: str | None) -> Path | None:
    """The first candidate folder that holds CIFAR-10 in one of the official formats."""
    candidates = [data_dir, os.environ.get("MINIDL_DATA_DIR")]
    found = []
    for base in filter(None, candidates):
        for folder in (Path(base), Path(base) / "cifar-10"):
            if (
                (folder / "cifar-10-batches-bin").is_dir()
                or (folder / "cifar-10-batches-py").is_dir()
                or any(folder.glob("cifar-10*.tar.gz"))
            ):
                found.append(folder)
    return found[0] if found else None


def load_data(data_dir: str | None, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """uint8 HWC train/test images and labels, and a sentence saying where they came from."""
    folder = find_cifar10(data_dir)
    if folder is not None:
        from minidl.data.datasets import CIFAR10

        train, test = CIFAR10(folder, train=True), CIFAR10(folder, train=False)
        x_train, y_train = np.asarray(train.data), np.asarray(train.targets, np.int64)
        x_test, y_test = np.asarray(test.data), np.asarray(test.targets, np.int64)
        if quick:  # the demo: a class-balanced tenth of CIFAR-10 so it finishes in minutes
            x_train, y_train, x_test, y_test = x_train[:5000], y_train[:5000], x_test[:1000], y_test[:1000]
        source = f"CIFAR-10 from {folder} ({len(x_train)} train / {len(x_test)} test images)"
    else:
        from minidl.data.sample import load_cifar10_sample

        x_train, y_train, x_test, y_test, _ = load_cifar10_sample()
        source = (
            f"the embedded CIFAR-10 sample ({len(x_train)} train / {len(x_test)} test images; "
            "CIFAR-10 itself was not found: pass --data-dir or set MINIDL_DATA_DIR)"
        )
    return x_train, y_train, x_test, y_test, source


def to_float(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> normalized float32 (N, C, H, W)."""
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return (x - mean[:, None, None]) / std[:, None, None]


def augment(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crop with zero padding, and a random horizontal flip, per image (the standard CIFAR recipe)."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty_like(x)
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
    flips = rng.random(n) < 0.5
    for i in range(n):
        top, left = offsets[i]
        crop = padded[i, :, top : top + h, left : left + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Top-1 accuracy, in eval mode and without caching for backward."""
    model.eval()
    be = minidl.get_backend()
    correct = 0
    with minidl.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(be.asarray(x[start : start + batch_size]))
            correct += int((minidl.to_numpy(logits).argmax(1) == y[start : start + batch_size]).sum())
    model.train()
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder holding CIFAR-10 (default: $MINIDL_DATA_DIR)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="passes over the training set (default 15; 8 with --quick)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate of SGD with momentum 0.9")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--width", type=int, default=32, help="channels of the first stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backend",
        default=None,
        help="array backend, one of " + ", ".join(minidl.available_backends()) + " (default: numba if installed)",
    )
    parser.add_argument("--quick", action="store_true", help="the short demo run of the README")
    args = parser.parse_args()
    epochs = args.epochs if args.epochs is not None else (8 if args.quick else 15)

    if args.backend is not None:
        minidl.set_backend(args.backend)
    backend = minidl.get_backend().name
    minidl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train_u8, y_train, x_test_u8, y_test, source = load_data(args.data_dir, args.quick)
    print(f"data: {source}")
    mean = (x_train_u8.reshape(-1, 3).mean(0) / 255.0).astype(np.float32)
    std = (x_train_u8.reshape(-1, 3).std(0) / 255.0).astype(np.float32)
    x_train, x_test = to_float(x_train_u8, mean, std), to_float(x_test_u8, mean, std)

    model = small_cnn(width=args.width)
    print(f"model: small CNN, {sum(p.size for p in model.parameters()):,} parameters, backend {backend}")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    be = minidl.get_backend()

    start = time.perf_counter()
    step = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        total_loss, seen = 0.0, 0
        for i in range(steps_per_epoch):
            # linear warm-up over the first epoch, then cosine decay to zero
            progress = step / (epochs * steps_per_epoch)
            warm = min(1.0, (step + 1) / steps_per_epoch)
            for group in opt.param_groups:
                group["lr"] = args.lr * warm * 0.5 * (1 + math.cos(math.pi * progress))
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            xb = be.asarray(augment(x_train[idx], rng))
            yb = be.asarray(y_train[idx])
            loss = loss_fn(model(xb), yb)
            model.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
            total_loss += loss * len(idx)
            seen += len(idx)
            step += 1
        elapsed = time.perf_counter() - start
        test_acc = evaluate(model, x_test, y_test, 256)
        print(
            f"epoch {epoch:>3}/{epochs}  train loss {total_loss / seen:.3f}  test accuracy {test_acc:.3f}  "
            f"({elapsed:.0f} s, {seen * epoch / elapsed:.0f} img/s)"
        )
    final = evaluate(model, x_test, y_test, 256)
    print(
        f"final test accuracy: {final:.3f} on {len(x_test)} test images after {epochs} epochs "
        f"({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
