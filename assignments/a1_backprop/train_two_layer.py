"""Assignment 1: train TwoLayerNet on CIFAR-10 (flattened pixels) with minibatch SGD and report the accuracy.

Data: ``--data-dir``, else ``$MINIDL_DATA_DIR``, else minidl's dataset cache; without CIFAR-10 the script falls back
to the 2,000 + 500 images embedded in minidl (``CIFAR10Sample``) and says so. README.md states the target.

Usage:
    python train_two_layer.py --data-dir ~/data
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from layers import TwoLayerNet

from minidl.data.datasets import CIFAR10, CIFAR10Sample


def load_arrays(data_dir, train_images, test_images):
    """(x_train, y_train, x_test, y_test): float64 rows of 3072 pixels, centred by the training mean."""
    try:
        train_set, test_set, source = CIFAR10(data_dir, True), CIFAR10(data_dir, False), "CIFAR-10"
    except FileNotFoundError:
        train_set, test_set = CIFAR10Sample(True), CIFAR10Sample(False)
        source = "the embedded CIFAR-10 sample (CIFAR-10 not found: pass --data-dir or set MINIDL_DATA_DIR)"

    def arrays(dataset, n):
        n = min(n, len(dataset))
        x = np.stack([np.asarray(dataset[i][0], dtype=np.float64).reshape(-1) for i in range(n)]) / 255.0
        y = np.array([int(dataset[i][1]) for i in range(n)])
        return x, y

    x_train, y_train = arrays(train_set, train_images)
    x_test, y_test = arrays(test_set, test_images)
    mean = x_train.mean(axis=0)
    return x_train - mean, y_train, x_test - mean, y_test, f"{source}: {len(x_train)} train / {len(x_test)} test"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x_train, y_train, x_test, y_test, source = load_arrays(args.data_dir, args.train_images, args.test_images)
    print(f"data: {source}")
    net = TwoLayerNet(x_train.shape[1], args.hidden, 10, std=1e-2, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            batch = order[i : i + args.batch_size]
            loss, grads = net.loss(x_train[batch], y_train[batch])
            for key, value in grads.items():
                net.params[key] -= args.lr * value
        accuracy = float((net.scores(x_test).argmax(axis=1) == y_test).mean())
        print(f"epoch {epoch + 1}: loss {loss:.3f}, test accuracy {accuracy:.4f}, {time.perf_counter() - start:.0f} s")
    print(f"final test accuracy {accuracy:.4f} after {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
