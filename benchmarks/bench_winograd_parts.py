"""Where the time of a Winograd F(4x4, 3x3) convolution goes: its steps one by one, on one core.

Usage (from a checkout)::

    python benchmarks/bench_winograd_parts.py               # batch 128, float32
    python benchmarks/bench_winograd_parts.py --repeats 50

For every 3 x 3 stride-1 convolution of the zoo that the Numba backend runs as F(4x4, 3x3) at batch ``--batch``
(``bench_winograd.SHAPES``), it takes one chunk of images (as many as the backend puts in one, ``nb``) and times, on
one thread (OpenBLAS held to one thread too) with the chunk in the core's caches, each step of the forward and of
the weight gradient (dx is the forward's steps again, on dout with the flipped filters):

* **forward**: ``copy in`` (image by image into the zero-padded, channels-last scratch:
  ``_numba_kernels.padded_image``, a transposition), ``transform in`` (the two passes of B^T d B:
  ``_numba_winograd4.input_tiles`` minus the copy), ``GEMMs`` (the 36 products V_xi U_xi), ``transform out``
  (A^T m A: ``output_tiles`` minus its last step), ``copy out`` (its last step, ``_numba_kernels.tile_row_to_nchw``:
  the output rows from channels last back to NCHW, a transposition);
* **dW**: ``copy in`` and ``transform in`` of x again, ``copy dout`` (dout's images channels last), ``transform dout``
  (A dY A^T: ``output_gradient_tiles`` minus its copy), ``GEMMs`` (the 36 products V_xi^T dM_xi).

Each figure is the fastest of ``--repeats`` runs, in microseconds per chunk; ``layout`` is the share of the step's
time spent in the copies (the transpositions between NCHW and channels last), ``sum x chunks`` what the steps add up
to for the whole batch on one core, next to the layer itself timed whole on ``--threads`` (the same chunks, run by
the thread pool, with the batch in memory rather than in the caches, and with what the steps leave out: the weight
transform and the output's allocation, at every call). The steps run the backend's own kernels; only
the loops that call the two copies image by image and row by row, as the transforms do, are this script's.

This says whether a layer is bound by its arithmetic or by its copies on the CPU at hand: on a CPU whose GEMMs run
faster (two AVX-512 FMA units per core), the copies and transforms are a bigger share of the same layer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fastest_ms, numba_backend, positive_int  # noqa: E402
from bench_winograd import SHAPES  # noqa: E402

FORWARD = ("copy in", "transform in", "GEMMs", "transform out", "copy out")
WEIGHT = ("copy in", "transform in", "copy dout", "transform dout", "GEMMs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=positive_int, default=128, help="Default: 128")
    parser.add_argument("--threads", type=positive_int, default=None, help="for the whole layer. Default: all cores")
    parser.add_argument("--repeats", type=positive_int, default=20, help="Default: 20")
    return parser.parse_args(argv)


def fastest_us(fn: Callable[[], Any], repeats: int) -> float:
    return 1e3 * fastest_ms({"": fn}, 1, repeats)[""]


def _copies() -> tuple[Any, Any]:
    """Compiled loops over a chunk calling the kernels' two copies as ``input_tiles`` and ``output_tiles`` do:
    ``padded_image`` image by image, ``tile_row_to_nchw`` output row by output row (called from Python one call at a
    time, each would pay several microseconds of dispatch)."""
    from numba import njit

    from minidl.backend._numba_kernels import _u, padded_image, tile_row_to_nchw

    @njit(nogil=True)
    def images_channels_last(x, n0, n1, PH, PW, Hp, Wp, xt):  # pragma: no cover - compiled
        for n in range(n0, n1):
            padded_image(x, n, PH, PW, 4, Hp, Wp, xt)

    @njit(nogil=True)
    def rows_to_nchw(t, y, n0, n1, TH, TW, bias, relu_max, out):  # pragma: no cover - compiled
        O, OH, OW = out.shape[1], out.shape[2], out.shape[3]
        of = out.reshape(-1)
        no_res = of[:1]  # (no residual: never read)
        L = _u(TW * O)
        for n in range(n0, n1):
            for th in range(TH):
                for i in range(min(4, OH - 4 * th)):
                    row = 4 * th + i
                    tile_row_to_nchw(
                        t, y + _u(4 * i) * L, 4, TW, n, row, bias, True, True, relu_max, of, O, OH, OW, no_res, False
                    )

    return images_channels_last, rows_to_nchw


def layer_arrays(N: int, C: int, O: int, H: int) -> tuple[np.ndarray, ...]:
    """x (N, C, H, H), a weight (O, C, 3, 3) of unit output scale, a bias (O,) and a dout (N, O, H, H), float32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = (rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
    return x, w, rng.standard_normal(O).astype(np.float32), rng.standard_normal((N, O, H, H)).astype(np.float32)


def parts(be: Any, N: int, C: int, O: int, H: int, repeats: int, copies: tuple[Any, Any]) -> dict[str, Any]:
    """The steps of one chunk of the forward and of dW, microseconds each (see the module docstring)."""
    from minidl.backend import _numba_winograd4 as w4

    images_channels_last, rows_to_nchw = copies
    x, w, bias, dout = layer_arrays(N, C, O, H)
    TH, TW, nb = be._winograd_tiles(N, C, O, H, H, 4, tile=4)
    nb = min(nb, N)
    cap = np.float32(np.inf)
    U = be._winograd_weight(w, np.float32, tile=4)
    V, xt, t, M, yt = be._winograd4_dw_scratch(0, C, O, nb, TH, TW, np.float32)  # (dW's buffers: the forward's too)
    w4.input_tiles(x, False, 0, nb, 0, 1, 1, TH, TW, xt, t, V.flat, V.plane)
    out = np.empty((N, O, H, H), np.float32)
    dU = np.empty((36, C, O), np.float32)
    y = np.uint64(24 * TW * O)  # where output_tiles keeps its output rows in t
    no_sums = (np.zeros(1), np.zeros(1), np.zeros(1), False)  # output_tiles' shift, s1, s2, has_sums: none

    def time_of(fn: Callable[[], Any]) -> float:
        return fastest_us(fn, repeats)

    copy = time_of(lambda: images_channels_last(x, 0, nb, 1, 1, 4 * TH + 2, TW + 1, xt))
    input_tiles = time_of(lambda: w4.input_tiles(x, False, 0, nb, 0, 1, 1, TH, TW, xt, t, V.flat, V.plane))
    gemms = time_of(lambda: np.matmul(V.view, U.view, out=M.view))
    output_tiles = time_of(
        lambda: w4.output_tiles(
            M.flat, M.plane, 0, nb, 0, TH, TW, bias, True, True, cap, t, out, False, out, False, *no_sums
        )
    )
    copy_out = time_of(lambda: rows_to_nchw(t, y, 0, nb, TH, TW, bias, cap, out))
    copy_dy = time_of(lambda: images_channels_last(dout, 0, nb, 0, 0, 4 * TH, TW, yt))
    dm = time_of(lambda: w4.output_gradient_tiles(dout, False, 0, nb, 0, TH, TW, yt, t, M.flat, M.plane))
    du = time_of(lambda: np.matmul(V.view.transpose(0, 2, 1), M.view, out=dU))
    of_x = {"copy in": copy, "transform in": max(0.0, input_tiles - copy)}  # both need x's tiles
    forward = {**of_x, "GEMMs": gemms, "transform out": max(0.0, output_tiles - copy_out), "copy out": copy_out}
    weight = {**of_x, "copy dout": copy_dy, "transform dout": max(0.0, dm - copy_dy), "GEMMs": du}
    return {"nb": nb, "chunks": -(-N // nb), "forward": forward, "weight": weight}


def whole_layer_ms(N: int, C: int, O: int, H: int, repeats: int) -> tuple[float, float]:
    """(forward, dW) of the layer on the thread pool, fastest ms."""
    import minidl
    from minidl.nn import functional as F

    x, w, b, dout = layer_arrays(N, C, O, H)
    be = minidl.get_backend()
    forward = fastest_us(lambda: F.conv2d_relu_forward(x, w, b, 1, 1), repeats) / 1e3
    weight = fastest_us(lambda: be._winograd4_weight_gradient(x, False, dout, False, w.shape, 1, 1), repeats) / 1e3
    return forward, weight


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    be, threads = numba_backend(args.threads)
    from minidl.backend import _threads

    _threads.set_blas_num_threads(1)  # one thread per GEMM, as the backend holds it (MINIDL_BLAS_THREADS: 1)
    shapes = [(C, O, H) for C, O, H in SHAPES if be._winograd4_applies(args.batch, C, O, H, H)]
    copies = _copies()
    print(f"Winograd F(4x4, 3x3), float32, batch {args.batch}: one chunk of nb images on one core, us (fastest of")
    print(f"{args.repeats} runs); 'layout': the copies' share; 'whole': the layer on {threads} threads, ms")
    measured = []  # each shape's steps and whole layer, measured once for both tables
    for C, O, H in shapes:
        whole = whole_layer_ms(args.batch, C, O, H, max(3, args.repeats // 4))
        measured.append((C, O, H, parts(be, args.batch, C, O, H, args.repeats, copies), whole))
    for title, names, key, i in (
        ("forward (conv2d + bias + ReLU)", FORWARD, "forward", 0),
        ("weight gradient", WEIGHT, "weight", 1),
    ):
        header = f"{'C->O @ H':14} {'nb':>3}" + "".join(f" {n:>14}" for n in names)
        header += f" {'layout':>7} {'sum x chunks':>13} {'whole':>7}"
        print(f"\n{title}\n{header}\n{'-' * len(header)}")
        for C, O, H, p, whole in measured:
            steps = p[key]
            total = sum(steps.values())
            copied = sum(v for k, v in steps.items() if k.startswith("copy"))
            row = f"{f'{C}->{O} @ {H}':14} {p['nb']:3d}" + "".join(f" {steps[n]:14.1f}" for n in names)
            row += f" {100 * copied / total:6.0f}% {total * p['chunks'] / 1e3:10.2f} ms {whole[i]:7.2f}"
            print(row)


if __name__ == "__main__":
    main()
