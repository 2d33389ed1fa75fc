"""benchmarks/bench_airbench.py: the batches both frameworks train on follow the data order and augmentation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from minidl.data.datasets import CIFAR10Sample

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_airbench", ROOT / "benchmarks" / "bench_airbench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepared_batches_are_flipped_and_translated_training_images(tmp_path):
    bench = _bench()
    args = bench.parse_args(["--batch-size", "64", "--steps", "2", "--warmup", "1", "--data-dir", str(tmp_path / "no")])
    source = bench.prepare(args, tmp_path)
    assert "embedded" in source
    batches, labels = np.load(tmp_path / "batches.npy"), np.load(tmp_path / "labels.npy")
    assert batches.shape == (3, 64, 3, 32, 32) and labels.shape == (3, 64)
    assert np.load(tmp_path / "whiten.npy").shape == (24, 3, 2, 2)
    sample = CIFAR10Sample(True)
    images = sample.data.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    images = (images - np.array(bench.MEAN, np.float32)[:, None, None]) / np.array(bench.STD, np.float32)[:, None, None]
    rng = np.random.default_rng(args.seed)  # the draws in prepare's order: the flip bits, then the epoch's permutation
    rng.random(len(images))
    order = rng.permutation(len(images))
    assert np.array_equal(labels[0], np.asarray(sample.targets)[order[:64]])
    padded = np.pad(images[order[:64]], ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    for k in range(64):
        views = [padded[k, :, 2 + dy : 34 + dy, 2 + dx : 34 + dx] for dy in range(-2, 3) for dx in range(-2, 3)]
        views += [v[:, :, ::-1] for v in views]
        assert any(np.array_equal(batches[0, k], v) for v in views), k
