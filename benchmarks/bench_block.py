"""Why a layer runs slower inside a model than alone: a ResNet stage's pairs in sequence against each pair alone,
and the machine's read bandwidth from memory against its caches.

Usage (from a checkout)::

    python benchmarks/bench_block.py                        # 16 channels at 32 x 32, batch 128, all cores
    python benchmarks/bench_block.py --channels 32 --size 16 --threads 2

**In a stage**: ``--blocks`` ResNet basic blocks of ``--channels`` channels at ``--size`` x ``--size`` (the fused
training step's pairs on the Numba backend, ``channels_last``, as ``nn.fuse`` runs them: conv2d, batch_norm_relu,
conv2d, batch_norm_add_relu; then their backwards in reverse, the fork's gradients added by add_forward), each pair
timed where it runs, median over ``--repeats`` steps. Every array it reads was written by the pair before it or
saved by the forward, as in a model's step, so the working set (the saved activations) is far bigger than the caches.
**Alone**: each pair again on its own, the pairs taking turns, each over 8 inputs (and the caches of their
forwards) made beforehand: 64 MB of x and 64 MB of gradients at 16 x 32 x 32 and batch 128, which a big shared L3
may hold. Median over as many calls as the stage makes.
**Bandwidth**: NumPy's one-thread ``sum`` of a 64 MB and a 1 GB float32 array, and of halves of it on two threads
(GB/s read): the first from the L3 where it is big enough, the second from memory.

On a machine where memory is much slower than the L3, the pairs that only stream memory (the BatchNorms) take up to
twice as long in the stage as alone, and that, not their arithmetic, is what fusing passes over memory would save.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import numba_backend, positive_int  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=positive_int, default=16, help="Default: 16")
    parser.add_argument("--size", type=positive_int, default=32, help="image height and width. Default: 32")
    parser.add_argument("--batch", type=positive_int, default=128, help="Default: 128")
    parser.add_argument("--blocks", type=positive_int, default=6, help="blocks in the stage. Default: 6")
    parser.add_argument("--threads", type=positive_int, default=None, help="Default: all cores")
    parser.add_argument("--repeats", type=positive_int, default=8, help="Default: 8")
    parser.add_argument("--no-bandwidth", action="store_true", help="leave out the bandwidth lines (1 GB of memory)")
    return parser.parse_args(argv)


def read_bandwidth(megabytes: int, threads: int, repeats: int = 5) -> float:
    """GB/s of ``sum`` over a float32 array of ``megabytes`` MB, cut into ``threads`` parts summed at once."""
    a = np.ones((megabytes << 20) // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    with ThreadPoolExecutor(threads) as pool:
        best = min(_timed(lambda: list(pool.map(np.sum, parts))) for _ in range(repeats))
    return a.nbytes / best / 1e9


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _, threads = numba_backend(args.threads)
    import minidl
    from minidl.memory_format import channels_last, contiguous
    from minidl.nn import functional as F

    N, C, H = args.batch, args.channels, args.size
    rng = np.random.default_rng(0)

    def image() -> Any:
        return contiguous(rng.standard_normal((N, C, H, H)).astype(np.float32), channels_last)

    weights = [(rng.standard_normal((C, C, 3, 3)) * (2.0 / (9 * C)) ** 0.5).astype(np.float32) for _ in range(8)]
    stats = (np.zeros(C, np.float32), np.ones(C, np.float32), np.ones(C, np.float32), np.zeros(C, np.float32))
    bn = (*stats, True, 0.1, 1e-5)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Any, *a: Any) -> Any:
        start = time.perf_counter()
        result = fn(*a)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    x0, g0 = image(), image()

    def stage_step() -> None:  # the pairs of --blocks fused basic blocks, forward then backward
        x, saved = x0, []
        for b in range(args.blocks):
            w1, w2 = weights[(2 * b) % 8], weights[(2 * b + 1) % 8]
            y, c1 = timed("conv2d forward", F.conv2d_forward, x, w1, None, 1, 1)
            y, c2 = timed("batch_norm_relu forward", F.batch_norm_relu_forward, y, *bn)
            y, c3 = timed("conv2d forward", F.conv2d_forward, y, w2, None, 1, 1)
            y, c4 = timed("batch_norm_add_relu forward", F.batch_norm_add_relu_forward, y, x, *bn)
            saved.append((c1, c2, c3, c4))
            x = y
        g = g0
        for c1, c2, c3, c4 in reversed(saved):
            d, dres, _, _ = timed("batch_norm_add_relu backward", F.batch_norm_add_relu_backward, g, c4)
            d = timed("conv2d backward", F.conv2d_backward, d, c3)[0]
            d = timed("batch_norm_relu backward", F.batch_norm_relu_backward, d, c2)[0]
            d = timed("conv2d backward", F.conv2d_backward, d, c1)[0]
            g = timed("add forward", F.add_forward, d, dres)[0]

    for _ in range(2):
        stage_step()
    times.clear()
    for _ in range(args.repeats):
        stage_step()
    in_stage = {name: 1e3 * statistics.median(t) for name, t in times.items()}

    # each pair alone, over 8 inputs (and the caches of their forwards) made beforehand, taking turns
    xs, gs = [image() for _ in range(8)], [image() for _ in range(8)]
    conv_caches = [F.conv2d_forward(x, weights[0], None, 1, 1)[1] for x in xs]
    bn_caches = [F.batch_norm_relu_forward(x, *bn)[1] for x in xs]
    add_caches = [F.batch_norm_add_relu_forward(x, g, *bn)[1] for x, g in zip(xs, gs, strict=True)]
    pairs = {
        "conv2d forward": lambda k: F.conv2d_forward(xs[k], weights[0], None, 1, 1),
        "batch_norm_relu forward": lambda k: F.batch_norm_relu_forward(xs[k], *bn),
        "batch_norm_add_relu forward": lambda k: F.batch_norm_add_relu_forward(xs[k], gs[k], *bn),
        "batch_norm_add_relu backward": lambda k: F.batch_norm_add_relu_backward(gs[k], add_caches[k]),
        "conv2d backward": lambda k: F.conv2d_backward(gs[k], conv_caches[k]),
        "batch_norm_relu backward": lambda k: F.batch_norm_relu_backward(gs[k], bn_caches[k]),
        "add forward": lambda k: F.add_forward(xs[k], gs[k]),
    }
    times.clear()
    for r in range(2 + args.repeats * args.blocks):  # as many calls as the stage's (2 untimed rounds first)
        for name, pair in pairs.items():
            timed(name, pair, r % 8)
    alone = {name: 1e3 * statistics.median(t[2:]) for name, t in times.items()}
    print(
        f"{args.blocks} basic blocks of {C} channels at {H} x {H}, batch {N}, float32 channels_last, Numba backend "
        f"(minidl {minidl.__version__}), {threads} thread{'s' if threads > 1 else ''}: ms per call, median of each"
    )
    print(f"{'pair':<30}{'in the stage':>14}{'alone':>10}{'stage / alone':>15}")
    print("-" * 69)
    for name, ms in in_stage.items():
        print(f"{name:<30}{ms:>14.2f}{alone[name]:>10.2f}{ms / alone[name]:>15.2f}")
    if not args.no_bandwidth:
        print("\nread bandwidth (NumPy sum, GB/s):", end="")
        for mb in (64, 1024):
            print(f"  {mb} MB: {read_bandwidth(mb, 1):.1f} (1 thread) {read_bandwidth(mb, 2):.1f} (2)", end="")
        print()


if __name__ == "__main__":
    main()
