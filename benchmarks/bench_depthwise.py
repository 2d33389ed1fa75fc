"""Depthwise 3 x 3 convolutions at MobileNetV2-CIFAR shapes: the Numba kernel against the reference and PyTorch.

Usage (from a checkout)::

    python benchmarks/bench_depthwise.py                  # batch 128, float32, all cores
    python benchmarks/bench_depthwise.py --threads 2 --repeats 5 --no-numpy

For each shape (N, C, H, W, stride) it times ``F.conv2d_forward`` and ``F.conv2d_backward`` (dx and dW) of a
depthwise convolution (``groups = C``, weight (C, 1, 3, 3), padding 1, with bias) in five ways: the NumPy reference
(``minidl.set_backend("numpy")``: im2col and C thin GEMMs), the Numba backend without its depthwise kernel (the
per-group GEMMs with the compiled im2col, what ran before the kernel), the kernel's plane-by-plane loops only
("planes": without its channels-last layout for narrow outputs and its 3 x 3 rows), the Numba backend's depthwise kernel
as it runs (``minidl/backend/_numba_depthwise.py``), and PyTorch's ``conv2d`` forward and autograd backward on the
same number of threads. Each figure is the fastest of ``--repeats`` runs after one untimed run (on a shared machine
other processes only slow a run down); the ratios are the other column's time over the kernel's (above 1: the
kernel is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

# MobileNetV2 for CIFAR (stride 1 stem): the depthwise layers' channels (expansion 6 of 16..160), sizes and strides
SHAPES = [
    (32, 32, 1), (96, 32, 2), (144, 32, 1), (144, 16, 1), (144, 16, 2), (192, 16, 1), (192, 8, 1), (192, 8, 2),
    (192, 4, 1), (384, 8, 1), (576, 8, 1), (576, 8, 2), (960, 4, 1),
]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="Default: 128")
    parser.add_argument("--threads", type=int, default=None, help="MINIDL_NUM_THREADS and torch threads")
    parser.add_argument("--repeats", type=int, default=5, help="Default: 5")
    parser.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy reference")
    return parser.parse_args(argv)


def best_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: compiles or loads the kernels, allocates
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


@contextlib.contextmanager
def planes_only() -> Iterator[None]:
    """The depthwise kernel with every forward (and dx) plane by plane: no channels-last layout for narrow outputs,
    no 3 x 3 row-at-a-time kernel."""
    from minidl.backend import _numba_depthwise

    narrowest, strides = _numba_depthwise._CHANNELS_LAST_MAX_OW, _numba_depthwise._ROWS_STRIDES
    _numba_depthwise._CHANNELS_LAST_MAX_OW, _numba_depthwise._ROWS_STRIDES = 0, ()
    try:
        yield
    finally:
        _numba_depthwise._CHANNELS_LAST_MAX_OW, _numba_depthwise._ROWS_STRIDES = narrowest, strides


@contextlib.contextmanager
def depthwise_kernel_off(be: Any) -> Iterator[None]:
    """The Numba backend as before its depthwise kernel: a depthwise convolution runs the per-group GEMMs."""
    be._is_depthwise = lambda *args: False  # an instance attribute shadows the method
    try:
        yield
    finally:
        del be._is_depthwise


def minidl_times(backend: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, repeats: int) -> tuple:
    import minidl
    from minidl.nn import functional as F

    with minidl.use_backend(backend):
        out, cache = F.conv2d_forward(x, w, b, stride, 1, 1, x.shape[1])
        dout = np.ones_like(out)
        forward = best_ms(lambda: F.conv2d_forward(x, w, b, stride, 1, 1, x.shape[1]), repeats)
        backward = best_ms(lambda: F.conv2d_backward(dout, cache), repeats)
    return forward, backward


def torch_times(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, repeats: int) -> tuple:
    import torch

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    forward = best_ms(lambda: torch.nn.functional.conv2d(tx, tw, tb, stride, 1, 1, x.shape[1]), repeats)
    out = torch.nn.functional.conv2d(tx, tw, tb, stride, 1, 1, x.shape[1])
    dout = torch.ones_like(out)

    def backward() -> None:
        torch.autograd.grad(out, (tx, tw, tb), dout, retain_graph=True)

    return forward, best_ms(backward, repeats)


def pair(t: tuple) -> str:
    return f"{t[0]:7.2f}/{t[1]:<7.2f}"


def ratio(t: tuple, kernel: tuple) -> str:
    """Another way's forward and backward times over the kernel's."""
    return f"{t[0] / kernel[0]:5.2f}/{t[1] / kernel[1]:<5.2f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["MINIDL_NUM_THREADS"] = str(args.threads)
    import minidl
    from minidl.backend import _threads

    be = minidl.get_backend("numba")
    threads = _threads.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    print(f"depthwise 3x3, padding 1, float32, batch {args.batch}, {threads} threads; fastest ms of {args.repeats}")
    header = (
        f"{'C x H x W, stride':20} {'numpy f/b':>15} {'gemm f/b':>15} {'planes f/b':>15} {'kernel f/b':>15}"
        f" {'torch f/b':>15} {'x numpy':>11} {'x gemm':>11} {'x planes':>11} {'x torch':>11}"
    )
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for C, H, stride in SHAPES:
        x = rng.standard_normal((args.batch, C, H, H)).astype(np.float32)
        w = rng.standard_normal((C, 1, 3, 3)).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        kernel = minidl_times("numba", x, w, b, stride, args.repeats)
        with depthwise_kernel_off(be):
            gemm = minidl_times("numba", x, w, b, stride, args.repeats)
        with planes_only():
            planes = minidl_times("numba", x, w, b, stride, args.repeats)
        numpy_ = (float("nan"),) * 2 if args.no_numpy else minidl_times("numpy", x, w, b, stride, args.repeats)
        torch_ = (float("nan"),) * 2 if torch is None else torch_times(x, w, b, stride, args.repeats)

        name = f"{C}x{H}x{H}, s{stride}"
        print(
            f"{name:20} {pair(numpy_):>15} {pair(gemm):>15} {pair(planes):>15} {pair(kernel):>15} {pair(torch_):>15}"
            f" {ratio(numpy_, kernel):>11} {ratio(gemm, kernel):>11} {ratio(planes, kernel):>11}"
            f" {ratio(torch_, kernel):>11}"
        )


if __name__ == "__main__":
    main()
