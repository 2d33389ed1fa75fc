"""3 x 3 stride-1 convolutions of the zoo, each way the Numba backend can run them, against PyTorch.

Usage (from a checkout)::

    python benchmarks/bench_winograd.py                   # batch 128, float32, all cores
    python benchmarks/bench_winograd.py --threads 2 --repeats 9
    python benchmarks/bench_winograd.py --threads 2 --channels-last     # as bench_train.py --channels-last runs

For each shape (C -> O channels at H x H, padding 1, with bias; ``SHAPES``: every 3 x 3 stride-1 convolution of the zoo
with 16 or more input channels) it times ``F.conv2d_relu_forward`` (what a folded Conv+BN+ReLU runs in inference) and
``F.conv2d_backward`` (dx and dW) four ways: Winograd's F(2x2, 3x3) (``backend.winograd_tile = 2``), F(4x4, 3x3)
whatever the shape (the thresholds of ``minidl/backend/_numba_winograd_conv.py`` lowered; dW as F(4x4, 3x3) too),
im2row + GEMM (``backend.winograd = False``), and PyTorch's ``conv2d`` + ``relu`` forward (without autograd) and
autograd backward on the same number of threads. minidl's three ways take turns within every repeat, so a slow minute
of a shared machine slows all of them; PyTorch runs its repeats before them, then the script waits half a second
(PyTorch's OpenMP threads keep spinning for a while after a call and would slow whatever runs next). Each figure is the
fastest of ``--repeats`` after one untimed run. The last columns divide each way's time by what the backend runs by
default for that shape (named in the ``default`` column; above 1: the default is faster). These are the measurements
behind the thresholds in ``_numba_winograd_conv.py``, to be taken on each CPU.

``--channels-last`` gives minidl ``channels_last`` inputs and output gradients (:mod:`minidl.memory_format`), as the
models run in ``bench_train.py --channels-last``; ``--torch-channels-last`` does the same for PyTorch
(``torch.channels_last``, its weight too). By default both run contiguous NCHW arrays.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fastest_ms, numba_backend, positive_int, torch_conv_steps, torch_threads  # noqa: E402

# (C, O, H): every 3 x 3 stride-1 convolution of the zoo with 16 or more input channels (H x H in and out, padding
# 1), by model: the CIFAR ResNets, cifar_cnn, airbench94, vgg11_bn (the 3-channel first layers run the direct kernel)
SHAPES = [
    (16, 16, 32), (32, 32, 16), (64, 64, 8),
    (32, 32, 32), (32, 64, 16), (64, 64, 16), (64, 128, 8),
    (24, 64, 31), (64, 64, 15), (64, 256, 15), (256, 256, 7), (256, 256, 3),
    (64, 128, 16), (128, 256, 8), (256, 256, 8), (256, 512, 4), (512, 512, 4), (512, 512, 2),
]  # fmt: skip
WAYS = ("F(2x2)", "F(4x4)", "im2row", "torch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=positive_int, default=128, help="Default: 128")
    parser.add_argument("--threads", type=positive_int, default=None, help="MINIDL_NUM_THREADS and torch threads")
    parser.add_argument("--repeats", type=positive_int, default=7, help="Default: 7")
    parser.add_argument(
        "--channels-last", action="store_true",
        help="minidl's x and dout in channels_last (minidl.memory_format), as bench_train.py --channels-last",
    )  # fmt: skip
    parser.add_argument(
        "--torch-channels-last", action="store_true",
        help="PyTorch's x and weight in torch.channels_last (dout follows), as bench_train.py --torch-channels-last",
    )  # fmt: skip
    return parser.parse_args(argv)


@contextlib.contextmanager
def way(be: Any, name: str) -> Iterator[None]:
    """The Numba backend set to run 3 x 3 stride-1 convolutions the way ``name`` (``WAYS``, not torch)."""
    from minidl.backend import _numba_winograd_conv as wc

    thresholds = ("_WINOGRAD4_MIN_CHANNELS", "_WINOGRAD4_MIN_SIZE", "_WINOGRAD4_MIN_TILES")
    saved = be.winograd, be.winograd_tile, [getattr(wc, t) for t in thresholds]
    be.winograd = name != "im2row"
    be.winograd_tile = 4 if name == "F(4x4)" else 2
    if name == "F(4x4)":
        for t in thresholds:
            setattr(wc, t, 1)
    try:
        yield
    finally:
        be.winograd, be.winograd_tile = saved[0], saved[1]
        for t, value in zip(thresholds, saved[2], strict=True):
            setattr(wc, t, value)


def default_way(be: Any, N: int, C: int, O: int, H: int) -> str:
    if not be._winograd_applies(C, O, 3, 3, 1, 1, 1, 1, 1, 1):
        return "im2row"
    return "F(4x4)" if be._winograd4_applies(N, C, O, H, H) else "F(2x2)"


def steps(
    be: Any, name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, channels_last: bool = False
) -> tuple[Callable[[], Any], ...]:  # fmt: skip
    """(forward, backward) of ``name``: minidl's pair under :func:`way`, or PyTorch's; with ``channels_last``, on
    ``channels_last`` arrays (PyTorch: ``torch.channels_last`` x and weight; dout is laid out as the output)."""
    if name == "torch":  # conv2d + relu without autograd, and conv2d's backward
        return torch_conv_steps(x, w, b, (1, 1), channels_last, relu=True)
    from minidl.memory_format import contiguous
    from minidl.nn import functional as F

    if channels_last:
        x = contiguous(x, "channels_last")

    def forward() -> Any:
        with way(be, name):
            return F.conv2d_relu_forward(x, w, b, 1, 1)

    with way(be, name):
        out, cache = F.conv2d_forward(x, w, b, 1, 1)
    dout = np.ones_like(out)  # laid out as out (order "K"): channels_last when x is

    def backward() -> Any:
        with way(be, name):
            return F.conv2d_backward(dout, cache)

    return forward, backward


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    be, threads = numba_backend(args.threads)
    ways = list(WAYS) if torch_threads(threads) else [w for w in WAYS if w != "torch"]
    layouts = {True: "channels_last", False: "NCHW"}
    torch_layout = layouts[args.torch_channels_last] if "torch" in ways else "not installed"
    print(f"3x3 stride 1, padding 1, float32, batch {args.batch}, {threads} threads; fastest ms of {args.repeats}; "
          f"minidl {layouts[args.channels_last]}, PyTorch {torch_layout}")  # fmt: skip
    print("forward: conv2d_relu (inference); backward: dx + dW; 'x' columns: the way's time over the default's")
    header = f"{'C->O @ H':14} {'default':8}" + "".join(f" {w + ' f/b':>15}" for w in WAYS)
    header += "".join(f" {'x ' + w:>13}" for w in WAYS)
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for C, O, H in SHAPES:
        x = rng.standard_normal((args.batch, C, H, H)).astype(np.float32)
        w = (rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
        b = rng.standard_normal(O).astype(np.float32)
        fwd: dict[str, float] = {}
        bwd: dict[str, float] = {}
        for group in (["torch"] if "torch" in ways else [], [other for other in ways if other != "torch"]):
            fns = {
                name: steps(be, name, x, w, b, args.torch_channels_last if name == "torch" else args.channels_last)
                for name in group
            }
            fwd.update(fastest_ms({k: f for k, (f, _) in fns.items()}, 1, args.repeats))
            bwd.update(fastest_ms({k: g for k, (_, g) in fns.items()}, 1, args.repeats))
            time.sleep(0.5)
        default = default_way(be, args.batch, C, O, H)
        row = f"{f'{C}->{O} @ {H}':14} {default:8}"
        for name in WAYS:
            cell = f"{fwd[name]:7.2f}/{bwd[name]:<7.2f}" if name in fwd else f"{'nan':>7}/{'nan':<7}"
            row += f" {cell:>15}"
        for name in WAYS:
            cell = f"{fwd[name] / fwd[default]:5.2f}/{bwd[name] / bwd[default]:<5.2f}" if name in fwd else "nan/nan"
            row += f" {cell:>13}"
        print(row)


if __name__ == "__main__":
    main()
