"""What one kernel of the Numba backend buys a model: its steps with the kernel and with the reference pair it stands
for, taking turns in one process.

Usage (from a checkout)::

    python benchmarks/bench_kernel_ab.py --model resnet56 --op add --threads 2
    python benchmarks/bench_kernel_ab.py --model mobilenet_v2 --op add --op relu --mode infer

The model's step (``bench_train.py``'s, fused, batch ``--batch``) runs ``--steps`` times with the backend's kernel
table as it is ("with"), then ``--steps`` times with the ``--op`` entries taken out of it ("without": those pairs
run their reference code, as on the NumPy backend), and so on for ``--rounds`` rounds, the order swapped every round;
the first step of each turn is not timed. A slow minute of a shared machine then slows both arms, which separate
processes (``bench_train.py --baseline``) cannot promise: on a host whose speed drifts by 10 % between runs, a change
of a few per cent shows here and not there. Prints the median and the fastest step of each arm and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import benchmark_batch, build_minidl, minidl_steps, numba_backend, positive_int  # noqa: E402
from bench_train import time_steps  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20", help="a bench_train.py model. Default: resnet20")
    parser.add_argument("--op", action="append", required=True, help="a kernel table entry (repeat for several)")
    parser.add_argument("--mode", choices=("train", "infer"), default="train", help="Default: train")
    parser.add_argument("--batch", type=positive_int, default=128, help="Default: 128")
    parser.add_argument("--threads", type=positive_int, default=None, help="Default: all cores")
    parser.add_argument("--rounds", type=positive_int, default=10, help="Default: 10")
    parser.add_argument("--steps", type=positive_int, default=3, help="steps per arm and round. Default: 3")
    parser.add_argument("--contiguous", action="store_true", help="feed NCHW batches (default: channels_last)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backend, threads = numba_backend(args.threads)
    unknown = [op for op in args.op if op not in backend.kernels]
    if unknown:
        raise SystemExit(f"bench_kernel_ab.py: no such entry in the Numba backend's kernel table: {unknown}")
    import minidl

    minidl.manual_seed(0)
    model = build_minidl(args.model)
    x, y = benchmark_batch(args.batch)
    train, infer = minidl_steps(model, x, y, fuse=True, channels_last=not args.contiguous)
    step = train if args.mode == "train" else infer
    model.train(args.mode == "train")
    full = backend.kernels
    arms = {"with": full, "without": types.MappingProxyType({k: v for k, v in full.items() if k not in args.op})}
    times: dict[str, list[float]] = {name: [] for name in arms}
    try:
        for r in range(args.rounds):
            for name in list(arms) if r % 2 == 0 else list(arms)[::-1]:
                backend.kernels = arms[name]
                times[name] += time_steps(step, 1, args.steps)  # (the first step after a switch untimed)
    finally:
        backend.kernels = full
    median = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    fastest = {name: 1e3 * min(t) for name, t in times.items()}
    print(
        f"{args.model} {args.mode}, batch {args.batch}, {threads} thread{'s' if threads > 1 else ''}, "
        f"with and without the kernel{'s' if len(args.op) > 1 else ''} {', '.join(args.op)}: "
        f"{args.rounds} rounds of {args.steps} steps each"
    )
    print(f"{'':10}{'median ms':>12}{'fastest ms':>12}")
    for name in arms:
        print(f"{name:10}{median[name]:>12.1f}{fastest[name]:>12.1f}")
    print(
        f"without / with: {median['without'] / median['with']:.3f} (medians), "
        f"{fastest['without'] / fastest['with']:.3f} (fastest)"
    )


if __name__ == "__main__":
    main()
