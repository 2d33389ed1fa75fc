"""What the benchmark scripts share: argument parsing helpers, the benchmark models (minidl side, and a lookup of
the PyTorch twins in ``torch_twins.py``) and the timed training and inference steps.

The scripts put this folder on ``sys.path`` and import it, so each still runs as ``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def fastest_ms(steps: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """The fastest time of each step in milliseconds over ``repeats`` runs, the steps taking turns in every repeat
    (a slow minute of a shared machine slows all of them), after ``warmup`` untimed runs of each."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * min(t) for name, t in times.items()}


def torch_threads(threads: int) -> bool:
    """``torch.set_num_threads(threads)`` when PyTorch is installed; whether it is (a script then leaves its PyTorch
    columns out)."""
    try:
        import torch
    except ImportError:
        return False
    torch.set_num_threads(threads)
    return True


def torch_conv_steps(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geometry: tuple[Any, ...], channels_last: bool,
    relu: bool = False,
) -> tuple[Callable[[], Any], Callable[[], Any]]:  # fmt: skip
    """``(forward, backward)`` of PyTorch's ``conv2d`` on copies of x, w and b (b None: no bias), ``geometry`` its
    (stride, padding, dilation, groups) or a prefix of them: the forward without autograd (then a ReLU with
    ``relu``), the backward ``torch.autograd.grad`` of x, w (and b) for a dout of ones, laid out as the output. With
    ``channels_last``, x and w in ``torch.channels_last``."""
    import torch

    tx, tw = torch.tensor(x), torch.tensor(w)
    if channels_last:
        tx, tw = tx.to(memory_format=torch.channels_last), tw.to(memory_format=torch.channels_last)
    tb = None if b is None else torch.tensor(b).requires_grad_()
    inputs = [tx.requires_grad_(), tw.requires_grad_(), *([] if tb is None else [tb])]
    out = torch.nn.functional.conv2d(tx, tw, tb, *geometry)
    dout = torch.ones_like(out)

    def forward() -> Any:
        with torch.no_grad():
            y = torch.nn.functional.conv2d(tx, tw, tb, *geometry)
            return torch.relu(y) if relu else y

    return forward, lambda: torch.autograd.grad(out, inputs, dout, retain_graph=True)


def numba_backend(threads: int | None) -> tuple[Any, int]:
    """``(backend, threads)``: the Numba backend set as minidl's, on ``threads`` threads (``MINIDL_NUM_THREADS``;
    None: as the environment says, else all cores); call it before anything creates the backend."""
    import os

    if threads is not None:
        os.environ["MINIDL_NUM_THREADS"] = str(threads)
    import minidl
    from minidl.backend import _threads

    return minidl.set_backend("numba"), _threads.get_num_threads()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


#: The models the CPU benchmark times: the minidl factory's keywords (CIFAR-sized variants) and the default batch
#: of a training step and of an inference pass (airbench94 trains with batch 1024, as its recipe does).
BENCH_MODELS: dict[str, dict[str, Any]] = {
    "cifar_cnn": {"kwargs": {}, "train_batch": 128, "infer_batch": 128},
    "resnet20": {"kwargs": {}, "train_batch": 128, "infer_batch": 128},
    "resnet56": {"kwargs": {}, "train_batch": 128, "infer_batch": 128},
    "vgg11_bn": {"kwargs": {"cifar": True}, "train_batch": 128, "infer_batch": 128},
    "mobilenet_v2": {"kwargs": {"cifar": True}, "train_batch": 128, "infer_batch": 128},
    "airbench94": {"kwargs": {}, "train_batch": 1024, "infer_batch": 128},
    "vit_cifar": {"kwargs": {}, "train_batch": 128, "infer_batch": 128},
}


def build_minidl(name: str) -> Any:
    """The minidl model ``name`` of :data:`BENCH_MODELS`, 10 classes, on the current backend."""
    from minidl import models

    return getattr(models, name)(num_classes=10, **BENCH_MODELS[name]["kwargs"])


def build_torch(name: str) -> Any:
    """The PyTorch twin of the benchmark model ``name`` (``torch_twins.py``: same layers, same state_dict keys)."""
    import torch_twins

    return torch_twins.build(name)


def benchmark_batch(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The timed batch of every framework: ``batch`` random 32x32 RGB images (float32) and labels in [0, 10),
    seed 0."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, batch)


def torch_steps(
    model: Any, batch: int, device: str, infer_batch: int | None = None, channels_last: bool = False
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(train_step, infer)`` closures timing PyTorch on the workload minidl is timed on: random 32x32 images and
    labels (seed 0), cross-entropy read as a float (minidl's loss is a Python float), SGD momentum 0.9 with weight
    decay 5e-4, and a no-grad forward for inference (on ``infer_batch`` images; default: ``batch``). With
    ``channels_last`` the model and the images are converted to ``torch.channels_last`` first."""
    import torch

    x, y = (torch.from_numpy(a).to(device) for a in benchmark_batch(batch))
    x_infer = x if infer_batch in (None, batch) else torch.from_numpy(benchmark_batch(infer_batch)[0]).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x, x_infer = (a.contiguous(memory_format=torch.channels_last) for a in (x, x_infer))
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
            model(x_infer)

    return train_step, infer


def minidl_steps(
    model: Any, x: Any, y: Any, fuse: bool = True, x_infer: Any = None, channels_last: bool = False
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(train_step, infer)`` closures timing minidl on the workload of :func:`torch_steps`, for the images ``x``
    and labels ``y`` of :func:`benchmark_batch` placed on the model's backend: cross-entropy read as a Python float
    (as every training loop does), SGD momentum 0.9 with weight decay 5e-4, and a forward under
    ``minidl.no_grad()`` for inference on ``x_infer`` (default: ``x``; the caller puts the model in train or eval
    mode).

    With ``fuse`` (what ``train.fit`` does on a fast backend) the model is fused in place first
    (``minidl.nn.fuse(model, inplace=True)``): BatchNorm+ReLU in one pass, and in eval mode Conv+BN folded. With
    ``channels_last`` the images are laid out ``minidl.channels_last`` (:mod:`minidl.memory_format`).
    """
    import minidl
    from minidl import nn, optim

    if channels_last:
        x = minidl.contiguous(x, minidl.channels_last)
        x_infer = None if x_infer is None else minidl.contiguous(x_infer, minidl.channels_last)

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
            model(x if x_infer is None else x_infer)

    return train_step, infer
