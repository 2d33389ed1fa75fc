"""What the benchmark scripts share: argument parsing helpers and the PyTorch twins of the benchmark models.

The scripts put this folder on ``sys.path`` and import it, so each still runs as ``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_torch(name: str) -> Any:
    """PyTorch twins of minidl's ``cifar_cnn`` and ``resnet20`` (same layers, same state_dict keys)."""
    from torch import nn

    def triple(c_in: int, c_out: int) -> list[Any]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    if name == "cifar_cnn":

        class CifarCNN(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features = nn.Sequential(
                    *triple(3, 32), *triple(32, 32), nn.MaxPool2d(2), *triple(32, 64), *triple(64, 64),
                    nn.MaxPool2d(2), *triple(64, 128), nn.MaxPool2d(2),
                )  # fmt: skip
                self.flatten = nn.Flatten(1)
                self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(128 * 4 * 4, 10))

            def forward(self, x: Any) -> Any:
                return self.classifier(self.flatten(self.features(x)))

        return CifarCNN()

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:  # projection shortcut: 1x1 conv + BN
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            self.relu2 = nn.ReLU()

        def forward(self, x: Any) -> Any:
            out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.relu2(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet20(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU()
            c_in = 16
            for i, width in enumerate((16, 32, 64)):
                blocks = [BasicBlock(c_in if j == 0 else width, width, 2 if i > 0 and j == 0 else 1) for j in range(3)]
                self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
                c_in = width
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.flatten = nn.Flatten(1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(self.flatten(self.avgpool(x)))

    return ResNet20()


def benchmark_batch(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The timed batch of every framework: ``batch`` random 32x32 RGB images (float32) and labels in [0, 10),
    seed 0."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, batch)


def torch_steps(model: Any, batch: int, device: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(train_step, infer)`` closures timing PyTorch on the workload minidl is timed on: random 32x32 images and
    labels (seed 0), cross-entropy read as a float (minidl's loss is a Python float), SGD momentum 0.9 with weight
    decay 5e-4, and a no-grad forward for inference."""
    import torch

    x, y = (torch.from_numpy(a).to(device) for a in benchmark_batch(batch))
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.item()
        loss.backward()
        opt.step()

    def infer() -> None:
        with torch.no_grad():
            model(x)

    return train_step, infer


def minidl_steps(model: Any, x: Any, y: Any, fuse: bool = True) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(train_step, infer)`` closures timing minidl on the workload of :func:`torch_steps`, for the images ``x``
    and labels ``y`` of :func:`benchmark_batch` placed on the model's backend: cross-entropy read as a Python float
    (as every training loop does), SGD momentum 0.9 with weight decay 5e-4, and a forward under
    ``minidl.no_grad()`` for inference (the caller puts the model in train or eval mode).

    With ``fuse`` (what ``train.fit`` does on a fast backend) the model is fused in place first
    (``minidl.nn.fuse(model, inplace=True)``): BatchNorm+ReLU in one pass, and in eval mode Conv+BN folded.
    """
    import minidl
    from minidl import nn, optim

    if fuse:
        model = nn.fuse(model, inplace=True)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step() -> None:
        loss_fn(model(x), y)
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()

    def infer() -> None:
        with minidl.no_grad():
            model(x)

    return train_step, infer
