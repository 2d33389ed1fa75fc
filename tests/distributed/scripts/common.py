"""What the mpiexec scripts share: the backend under test, synthetic data, small models, reporting."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import minidl
from minidl import nn
from minidl._atomic import atomic_open
from minidl.data import TensorDataset


def setup() -> None:
    minidl.set_backend(os.environ.get("MINIDL_TEST_BACKEND", "numpy"))
    minidl.set_default_dtype("float32")
    minidl.manual_seed(0)


def report(**values: Any) -> None:
    """Write ``values`` (with a ``rank``) as ``rank<r>.json`` into the folder ``MINIDL_TEST_RESULTS`` names (or print
    them, when run by hand)."""
    folder = os.environ.get("MINIDL_TEST_RESULTS")
    if folder is None:
        print(json.dumps(values), flush=True)
        return
    with atomic_open(Path(folder) / f"rank{values['rank']}.json", where="report") as f:
        f.write(json.dumps(values).encode())


def images(n: int, seed: int = 0) -> TensorDataset:
    """n synthetic 3x16x16 images in 4 classes (class-dependent mean plus noise): enough for a loss to fall."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.int64)
    x = (rng.standard_normal((n, 3, 16, 16)) + 0.5 * y[:, None, None, None]).astype(np.float32)
    return TensorDataset(x, y)


def small_net(batchnorm: bool) -> nn.Module:
    """conv(3->8) [BN] ReLU maxpool conv(8->8) [BN] ReLU, global average, Linear(8 -> 4)."""
    norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), norm(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), norm(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip
