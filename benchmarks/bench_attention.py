"""Self-attention forward + backward at ViT-on-CIFAR sizes: minidl (NumPy, Numba backends) against PyTorch, and the
share of the attention softmax, to tell whether a softmax kernel could pay.

Usage (from a checkout)::

    python benchmarks/bench_attention.py                          # N=64, L=65 tokens, E in (64, 192)
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_attention.py --threads 1 --repeats 20

(``--threads`` sets the Numba backend's and PyTorch's threads; OpenBLAS, which runs every matrix product of the NumPy
and Numba backends, reads ``OPENBLAS_NUM_THREADS`` when NumPy is imported, so set it in the environment.)

One step is ``out, _ = mha(x, x, x, need_weights=False)`` and ``mha.backward(dout)`` (float32, batch_first, training
mode, no dropout). Each figure is the fastest of ``--repeats`` steps after a warm-up, the frameworks interleaved (on a
shared machine other processes only slow runs down, so the minimum is the best estimate of the cost). The softmax
row times ``F.softmax_forward`` + ``F.softmax_backward`` on the (N, H, L, L) scores, the most a faster attention
softmax could save; the matmul rows the four batched products of the attention itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fastest_ms  # noqa: E402

CONFIGS = ((64, 4), (192, 3))  # (E, heads): a small and a ViT-Tiny-width model; head size 16 and 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="N. Default: 64")
    parser.add_argument("--tokens", type=int, default=65, help="L (64 patches of 4x4 and a class token). Default: 65")
    parser.add_argument("--threads", type=int, default=None, help="threads of Numba and PyTorch. Default: unchanged")
    parser.add_argument("--warmup", type=int, default=2, help="Default: 2")
    parser.add_argument("--repeats", type=int, default=10, help="Default: 10")
    return parser.parse_args(argv)


def config_steps(e: int, heads: int, n: int, length: int) -> dict[str, Callable[[], object]]:
    """The steps timed for one (E, heads): minidl's MHA on each backend, its softmax and matmuls, PyTorch's MHA."""
    import minidl
    from minidl import nn
    from minidl.nn import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, length, e)).astype(np.float32)
    dout = rng.standard_normal((n, length, e)).astype(np.float32)
    scores = rng.standard_normal((n, heads, length, length)).astype(np.float32)
    q = rng.standard_normal((n, heads, length, e // heads)).astype(np.float32)
    steps: dict[str, Callable[[], object]] = {}

    def mha_step(backend: str) -> Callable[[], object]:
        minidl.set_backend(backend)
        minidl.manual_seed(0)
        mha = nn.MultiheadAttention(e, heads, batch_first=True)

        def step() -> None:
            minidl.set_backend(backend)
            out, _ = mha(x, x, x, need_weights=False)
            mha.backward(dout)

        return step

    for backend in ("numpy", "numba"):
        steps[f"minidl {backend}: MHA fwd+bwd"] = mha_step(backend)
    minidl.set_backend("numpy")

    def softmax() -> None:
        p, cache = F.softmax_forward(scores, -1)
        F.softmax_backward(scores, cache)

    def matmuls() -> None:  # forward Q K^T and P V; backward dV = P^T dO, dP = dO V^T, dQ = dA K, dK = dA^T Q
        s = q @ q.swapaxes(-1, -2)
        s @ q
        s.swapaxes(-1, -2) @ q
        q @ q.swapaxes(-1, -2)
        s @ q
        s.swapaxes(-1, -2) @ q

    steps["  of which softmax f+b"] = softmax
    steps["  of which attention matmuls"] = matmuls
    try:
        import torch
    except ImportError:
        return steps
    t_mha = torch.nn.MultiheadAttention(e, heads, batch_first=True)
    tx = torch.tensor(x, requires_grad=True)
    tdout = torch.tensor(dout)

    def torch_step() -> None:
        out, _ = t_mha(tx, tx, tx, need_weights=False)
        out.backward(tdout)

    steps["torch: MHA fwd+bwd"] = torch_step
    return steps


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["MINIDL_NUM_THREADS"] = str(args.threads)
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    n, length = args.batch, args.tokens
    print(f"self-attention, N={n}, L={length}, float32, threads={args.threads or 'default'}; fastest of {args.repeats}")
    print(f"{'E':>4} {'H':>2} {'step':28} {'ms':>8} {'x numpy':>8}")
    for e, heads in CONFIGS:
        ms = fastest_ms(config_steps(e, heads, n, length), args.warmup, args.repeats)
        base = ms["minidl numpy: MHA fwd+bwd"]
        for name, value in ms.items():
            print(f"{e:4d} {heads:2d} {name:28} {value:8.2f} {value / base:8.2f}")


if __name__ == "__main__":
    main()
