"""A toy 3-class problem shared by the training tests: 1x4x4 "images", a small MLP with BatchNorm and dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import nn
from minidl.data import DataLoader, Dataset
from minidl.transforms import GaussianNoise


class Blobs(Dataset):
    """Sample i: a (1, 4, 4) float32 image around one of 3 class centres, plus a random augmentation (noise drawn
    from minidl's default generator, i.e. the DataLoader's per-batch generator), and its label."""

    def __init__(self, n: int = 48, seed: int = 0, transform: Any = None) -> None:
        centres = np.random.default_rng(123).standard_normal((3, 1, 4, 4)).astype(np.float32) * 1.5  # shared
        rng = np.random.default_rng(seed)
        self.y = rng.integers(0, 3, n).astype(np.int64)
        self.x = (centres[self.y] + 0.5 * rng.standard_normal((n, 1, 4, 4))).astype(np.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.int64]:
        x = self.x[i] if self.transform is None else self.transform(self.x[i])
        return x, self.y[i]


def loaders(
    n: int = 48, batch_size: int = 8, seed: int | None = 1, augment: bool = True
) -> tuple[DataLoader, DataLoader]:
    transform = GaussianNoise(std=0.1, clip=False) if augment else None
    # batches on the backend under test, so a hand-written loop works on every backend (cupy in a GPU run)
    train = DataLoader(Blobs(n, transform=transform), batch_size=batch_size, shuffle=True, seed=seed, device="current")
    val = DataLoader(Blobs(24, seed=5), batch_size=batch_size, device="current")
    return train, val


def mlp(dropout: float = 0.3, batchnorm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(16, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3)]
    return nn.Sequential(*layers)
