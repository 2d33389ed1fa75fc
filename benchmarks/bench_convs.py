"""Every distinct convolution of a zoo model, one at a time: minidl's Numba backend against PyTorch in its default
layout and in ``torch.channels_last``.

Usage (from a checkout)::

    python benchmarks/bench_convs.py --model resnet20 --threads 2
    python benchmarks/bench_convs.py --model mobilenet_v2 --threads 2 --repeats 9 --contiguous

The script builds the minidl model (``bench_train.py``'s, unfused), runs one image through it with a forward hook on
every ``Conv2d``, and keeps each distinct convolution (input channels and size, weight, stride, padding, dilation,
groups, bias) with the number of layers that have it. For each it times, at ``--batch`` images, the forward
(``F.conv2d_forward``) and the backward (``F.conv2d_backward``: dx, dW and the bias gradient if any) of minidl fed
``channels_last`` arrays, as ``bench_train.py --channels-last`` runs the models (``--contiguous``: NCHW), and the same
in PyTorch (``conv2d`` without autograd; ``torch.autograd.grad`` of x, the weight and the bias) in its default layout
and in ``torch.channels_last`` (x and weight). Each figure is the fastest of ``--repeats`` after one untimed run;
PyTorch runs first and the script then waits half a second (its OpenMP threads keep spinning for a while after a
call and would slow whatever runs next). The ``x`` columns are PyTorch's time over minidl's (above 1: minidl is
faster); the last row sums every column over the model's layers (each distinct convolution times its count): the
convolutions' share of a training step, without the layers between them.

A layer timed alone runs with its data in the caches more than inside a model; ``bench_layers.py`` times the layers
in place.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_MODELS,
    build_minidl,
    fastest_ms,
    numba_backend,
    positive_int,
    torch_conv_steps,
    torch_threads,
)

COLUMNS = ("minidl", "torch", "torch CL")  # the three ways, in the table's order


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(BENCH_MODELS), default="resnet20", help="Default: resnet20")
    parser.add_argument("--batch", type=positive_int, default=128, help="Default: 128")
    parser.add_argument("--threads", type=positive_int, default=None, help="MINIDL_NUM_THREADS and torch threads")
    parser.add_argument("--repeats", type=positive_int, default=7, help="Default: 7")
    parser.add_argument("--contiguous", action="store_true", help="feed minidl NCHW arrays (default: channels_last)")
    return parser.parse_args(argv)


def model_convolutions(name: str) -> list[tuple[dict[str, Any], int]]:
    """The distinct convolutions of the minidl model ``name``, in the order they first run, each with the number of
    layers that have it: ``({"C", "H", "W", "weight", "stride", "padding", "dilation", "groups", "bias"}, count)``
    (one image through the unfused model, a forward hook on every ``Conv2d``)."""
    from minidl import nn

    model = build_minidl(name)
    model.eval()
    found: dict[tuple[Any, ...], list[Any]] = {}

    def hook(module: Any, args: Any, output: Any) -> None:
        x = args[0]
        conv = {
            "C": x.shape[1], "H": x.shape[2], "W": x.shape[3], "weight": tuple(module.weight.shape),
            "stride": module.stride, "padding": module.padding, "dilation": module.dilation,
            "groups": module.groups, "bias": module.bias is not None,
        }  # fmt: skip
        key = tuple(conv.values())
        found.setdefault(key, [conv, 0])[1] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    model(np.zeros((1, 3, 32, 32), dtype=np.float32))
    for handle in handles:
        handle.remove()
    return [(conv, count) for conv, count in found.values()]


def describe(conv: dict[str, Any]) -> str:
    """``3x3/2 16->32 @ 32`` (kernel, stride when not 1, channels, input size; ``g`` groups when not 1)."""
    O, _, KH, KW = conv["weight"]
    stride = "" if conv["stride"] == (1, 1) else f"/{conv['stride'][0]}"
    size = conv["H"] if conv["H"] == conv["W"] else f"{conv['H']}x{conv['W']}"
    groups = "" if conv["groups"] == 1 else f" g{conv['groups']}"
    return f"{KH}x{KW}{stride} {conv['C']}->{O} @ {size}{groups}"


def arrays(conv: dict[str, Any], batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Random x (batch, C, H, W), weight and bias (None without one) for ``conv``, float32, seed 0."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, conv["C"], conv["H"], conv["W"])).astype(np.float32)
    fan_in = int(np.prod(conv["weight"][1:]))
    w = (rng.standard_normal(conv["weight"]) / np.sqrt(fan_in)).astype(np.float32)
    b = rng.standard_normal(conv["weight"][0]).astype(np.float32) if conv["bias"] else None
    return x, w, b


def steps(
    way: str, conv: dict[str, Any], x: np.ndarray, w: np.ndarray, b: np.ndarray | None, channels_last: bool
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(forward, backward) of ``way`` (``COLUMNS``): minidl's pair on the current backend (``channels_last``: fed
    ``channels_last`` arrays; dout is laid out as the output), or PyTorch's in its default layout (``torch``) or
    in ``torch.channels_last`` (``torch CL``)."""
    geometry = (conv["stride"], conv["padding"], conv["dilation"], conv["groups"])
    if way == "minidl":
        from minidl.memory_format import contiguous
        from minidl.nn import functional as F

        xm = contiguous(x, "channels_last") if channels_last else x
        out, cache = F.conv2d_forward(xm, w, b, *geometry)
        dout = np.ones_like(out)  # laid out as out (order "K")
        return (lambda: F.conv2d_forward(xm, w, b, *geometry)), (lambda: F.conv2d_backward(dout, cache))
    return torch_conv_steps(x, w, b, geometry, way == "torch CL")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    be, threads = numba_backend(args.threads)
    ways = list(COLUMNS) if torch_threads(threads) else ["minidl"]
    layout = "NCHW" if args.contiguous else "channels_last"
    torch_note = "" if "torch" in ways else " (PyTorch not installed)"
    print(f"{args.model}: its convolutions one at a time, float32, batch {args.batch}, {threads} threads, fastest ms "
          f"of {args.repeats}; minidl ({be.name}) {layout}{torch_note}")  # fmt: skip
    print("forward / backward (dx, dW, db); 'x' columns: PyTorch's time over minidl's (above 1: minidl is faster)")
    header = f"{'convolution':24} {'n':>3}" + "".join(f" {c + ' f/b':>15}" for c in COLUMNS)
    header += "".join(f" {'x ' + c:>13}" for c in COLUMNS[1:])
    print(header)
    print("-" * len(header))
    totals = {c: [0.0, 0.0] for c in ways}
    for conv, count in model_convolutions(args.model):
        x, w, b = arrays(conv, args.batch)
        fwd: dict[str, float] = {}
        bwd: dict[str, float] = {}
        for group, pause in ((ways[1:], 0.5), (ways[:1], 0.0)):  # PyTorch's ways (if any), a pause, then minidl
            if group:
                fns = {c: steps(c, conv, x, w, b, not args.contiguous) for c in group}
                fwd.update(fastest_ms({c: f for c, (f, _) in fns.items()}, 1, args.repeats))
                bwd.update(fastest_ms({c: g for c, (_, g) in fns.items()}, 1, args.repeats))
                time.sleep(pause)
        for c in ways:
            totals[c][0] += count * fwd[c]
            totals[c][1] += count * bwd[c]
        print(row(describe(conv), str(count), fwd, bwd))
    print("-" * len(header))
    print(row("all, times n", "", {c: t[0] for c, t in totals.items()}, {c: t[1] for c, t in totals.items()}))


def row(name: str, count: str, fwd: dict[str, float], bwd: dict[str, float]) -> str:
    """A table row: the three ways' forward / backward ms (nan where one did not run) and PyTorch's over minidl's."""
    line = f"{name:24} {count:>3}"
    for c in COLUMNS:
        cell = f"{fwd[c]:7.2f}/{bwd[c]:<7.2f}" if c in fwd else f"{'nan':>7}/{'nan':<7}"
        line += f" {cell:>15}"
    for c in COLUMNS[1:]:
        cell = f"{fwd[c] / fwd['minidl']:5.2f}/{bwd[c] / bwd['minidl']:<5.2f}" if c in fwd else "nan/nan"
        line += f" {cell:>13}"
    return line


if __name__ == "__main__":
    main()
