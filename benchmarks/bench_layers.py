"""Where the time of a minidl training step (or inference pass) goes: forward and backward milliseconds of every
layer.

Usage (from a checkout)::

    python benchmarks/bench_layers.py                            # cifar_cnn on the Numba backend, batch 128
    python benchmarks/bench_layers.py --backend numpy --repeats 2
    python benchmarks/bench_layers.py --model resnet20 --threads 1
    python benchmarks/bench_layers.py --no-fuse                  # every layer on its own (no nn.fuse)
    python benchmarks/bench_layers.py --channels-last            # a channels_last batch (minidl.memory_format)
    python benchmarks/bench_layers.py --model vgg11_bn --mode infer --torch   # inference, layer by layer vs PyTorch

Every leaf layer's ``forward`` and ``backward`` are timed (the layers' classes wrapped with a clock, so that the
model runs its fused shortcuts as it does untimed, see ``_clock_classes``) for ``--repeats`` steps after ``--warmup``
untimed ones; the table gives the median milliseconds of each, the share of the step, and for the convolution and
linear layers the achieved GFLOP/s (forward: 2 MACs; backward: 4 MACs, the input and the weight gradient). The
last lines sum the layers by type. The step total is measured separately, without the wrappers.

``--model`` takes every model of ``bench_train.py`` (``_common.BENCH_MODELS``, the same CIFAR-sized variants).
``--mode infer`` times the forward of the model in ``eval()`` mode under ``no_grad`` (BatchNorm folded into the
convolutions), and ``--torch`` adds, for inference, the PyTorch twin's layers (``torch_twins.py``: the same module
names), timed in the same process with forward hooks, each PyTorch forward right after a minidl one (interleaved, so a
busy neighbour slows both alike; with an untimed 50 ms pause between the two, see ``_settle``), and the ratio of each
layer's time (PyTorch over minidl: above 1, minidl is faster). The twin's layers are PyTorch's own (a BatchNorm and a
ReLU stay separate layers), so compare the sums by type and the step totals as much as single rows.

The model is fused first, as ``train.fit`` fuses it (``minidl.nn.fuse``: a Conv2d, BatchNorm2d, ReLU (or ReLU6)
run is a ``ConvBn2d`` row and a ``FoldedBatchNorm2d`` row that applies the activation, the activation's slot an
``Identity``; a residual sum and its ReLU an ``AddReLU`` row; in inference a ResNet block's last convolution also
runs its BatchNorm, the sum and the ReLU, ``conv2d_add_relu``, so those three have no row there); ``--no-fuse``
times every layer of the model as built.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_MODELS, build_minidl, build_torch, positive_int  # noqa: E402

_SETTLE_S = 0.05  # untimed pause after each PyTorch forward (see _settle)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(BENCH_MODELS), default="cifar_cnn")
    parser.add_argument("--mode", choices=("train", "infer"), default="train", help="Default: train")
    parser.add_argument("--torch", action="store_true", help="with --mode infer: PyTorch's layers too (torch_twins)")
    parser.add_argument("--backend", default="numba", help="minidl backend. Default: numba")
    parser.add_argument("--batch", type=positive_int, default=128, help="Default: 128")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="MINIDL_NUM_THREADS (Numba). Default: all cores"
    )
    parser.add_argument("--warmup", type=positive_int, default=2, help="Default: 2")
    parser.add_argument("--repeats", type=positive_int, default=5, help="Default: 5")
    parser.add_argument("--no-fuse", action="store_true", help="time the layers as built, without nn.fuse")
    parser.add_argument(
        "--channels-last", action="store_true", help="feed minidl's model a channels_last batch (minidl.memory_format)"
    )
    args = parser.parse_args(argv)
    if args.torch and args.mode != "infer":
        parser.error("--torch times PyTorch's layers in inference only: add --mode infer")
    return args


def conv_linear_macs(module: Any, out_shape: tuple[int, ...]) -> int:
    """Multiply-adds of a Conv2d or Linear forward producing ``out_shape`` (0 for other layers)."""
    kind = type(module).__name__
    if kind in ("Conv2d", "ConvBn2d"):  # (ConvBn2d is a Conv2d that may fold the next BatchNorm in)
        O, C_per_group, KH, KW = module.weight.shape
        return int(np.prod(out_shape)) * C_per_group * KH * KW
    if kind == "Linear":
        return int(np.prod(out_shape[:-1])) * module.in_features * module.out_features
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["MINIDL_NUM_THREADS"] = str(args.threads)
    import minidl
    from minidl import nn

    be = minidl.set_backend(args.backend)
    minidl.manual_seed(0)
    model = build_minidl(args.model)
    torch_model = _torch_twin(args, model) if args.torch else None
    if not args.no_fuse:
        model = nn.fuse(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    if args.channels_last:  # (PyTorch's twin keeps its own default layout)
        x = minidl.contiguous(x, minidl.channels_last)
    y = rng.integers(0, 10, args.batch)
    loss_fn = nn.CrossEntropyLoss()
    train = args.mode == "train"

    def step() -> None:
        if train:
            loss_fn(model(x), y)
            model.zero_grad()
            model.backward(loss_fn.backward())
        else:
            with minidl.no_grad():
                model(x)

    model.train(train)
    torch_forward = _torch_forward(torch_model, x) if torch_model is not None else None
    steps: list[float] = []
    torch_steps: list[float] = []
    for i in range(args.warmup + args.repeats):  # minidl and PyTorch in turn
        ms = _clock(step)
        if i >= args.warmup:
            steps.append(ms)
        if torch_forward is not None:
            _settle()
            ms = _clock(torch_forward)
            if i >= args.warmup:
                torch_steps.append(ms)
            _settle()
    step_ms = statistics.median(steps)
    torch_step_ms = statistics.median(torch_steps) if torch_steps else 0.0
    leaves = _leaves(model)
    times: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"forward": [], "backward": []})
    shapes: dict[str, tuple[int, ...]] = {}
    restore = _clock_classes(leaves, times, shapes)
    torch_times: dict[str, list[float]] = defaultdict(list)
    handles = _torch_hooks(torch_model, torch_times) if torch_model is not None else []
    try:
        for _ in range(args.repeats):
            step()
            if torch_forward is not None:
                _settle()
                torch_forward()
                _settle()
    finally:
        restore()
        for handle in handles:
            handle.remove()
    torch_ms = {name: 1e3 * statistics.median(t) for name, t in torch_times.items()}

    fused = ("as built" if args.no_fuse else "fused") + (", channels_last" if args.channels_last else "")
    print(
        f"{args.model} ({fused}, {args.mode}), backend {be.name}, batch {args.batch}, threads {_threads_used(be)}: "
        f"{'step' if train else 'forward'} {step_ms:.1f} ms"
        + (f"; PyTorch forward {torch_step_ms:.1f} ms" if torch_model else "")
    )
    last = f"{'torch ms':>9} {'x':>5}" if torch_model else f"{'GFLOP/s f/b':>12}"
    header = f"{'layer':22} {'type':18} {'output':18} {'fwd ms':>8} {'bwd ms':>8} {'% step':>7} {last}"
    print(header)
    print("-" * len(header))
    by_type: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, m in leaves:
        t = times.get(name)
        if t is None or not t["forward"]:
            continue
        fwd = 1e3 * statistics.median(t["forward"])
        bwd = 1e3 * statistics.median(t["backward"]) if t["backward"] else 0.0
        kind = type(m).__name__
        by_type[kind][0] += fwd
        by_type[kind][1] += bwd
        macs = conv_linear_macs(m, shapes[name])
        if torch_model is not None:
            theirs = torch_ms.get(name)
            tail = "" if theirs is None else f"{theirs:9.2f} " + (f"{theirs / fwd:5.2f}" if fwd >= 0.01 else "     ")
        elif macs and fwd and bwd:
            tail = f"{2 * macs / fwd / 1e6:5.0f}/{4 * macs / bwd / 1e6:<5.0f}"
        else:
            tail = f"{2 * macs / fwd / 1e6:5.0f}/{'':5}" if macs and fwd else ""  # (inference: the forward only)
        share = 100 * (fwd + bwd) / step_ms
        shape = "x".join(map(str, shapes[name][1:]))
        print(f"{name:22} {kind:18} {shape:18} {fwd:8.2f} {bwd:8.2f} {share:6.1f}% {tail:>12}")
    print("-" * len(header))
    layer_sum = sum(f + b for f, b in by_type.values())
    for kind, (fwd, bwd) in sorted(by_type.items(), key=lambda kv: -sum(kv[1])):
        print(f"{'all ' + kind:22} {'':18} {'':18} {fwd:8.2f} {bwd:8.2f} {100 * (fwd + bwd) / step_ms:6.1f}%")
    if torch_model is not None:
        for kind, total in sorted(_sum_by_type(torch_model, torch_ms).items(), key=lambda kv: -kv[1]):
            print(f"{'PyTorch ' + kind:41} {total:8.2f}")
    what = "step" if train else "forward"
    print(f"{'sum of layers':60} {layer_sum:8.1f} ms of a {step_ms:.1f} ms {what} (the rest: loss, Python, containers)")


def _clock(fn: Any) -> float:
    """Milliseconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def _leaves(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of the modules without children (minidl or PyTorch), in order."""
    return [(name, m) for name, m in model.named_modules() if name and not any(True for _ in m.children())]


def _clock_classes(
    leaves: list[tuple[str, Any]], times: dict[str, dict[str, list[float]]], shapes: dict[str, tuple[int, ...]]
) -> Any:
    """Wrap ``forward`` and ``backward`` of the leaves' classes with a clock that appends each leaf's seconds to
    ``times[name][phase]`` (found by the module's id; its output shape to ``shapes``); returns the function that
    puts the classes back. Through the classes, not the instances: a module with a ``forward`` of its own is one
    ``nn.fuse`` neither folds nor joins, so instance wrappers would time another computation than the one that runs.
    A module that is not called (the BatchNorm, Add and ReLU of a joined block end, which the module before them
    runs) gets no row; a call inside a timed call of the same module (``ConvBn2d.forward`` calling
    ``Conv2d.forward``) is not timed twice."""
    names = {id(m): name for name, m in leaves}
    running: set[tuple[int, str]] = set()
    saved = []

    def clocked(fn: Any, phase: str) -> Any:
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = (id(self), phase)
            if id(self) not in names or key in running:
                return fn(self, *args, **kwargs)
            running.add(key)
            start = time.perf_counter()
            try:
                out = fn(self, *args, **kwargs)
            finally:
                running.discard(key)
            times[names[id(self)]][phase].append(time.perf_counter() - start)
            if phase == "forward":
                shapes[names[id(self)]] = tuple(out.shape)
            return out

        return run

    for cls in {type(m) for _, m in leaves}:
        for phase in ("forward", "backward"):
            saved.append((cls, phase, cls.__dict__.get(phase)))
            setattr(cls, phase, clocked(getattr(cls, phase), phase))

    def restore() -> None:
        for cls, phase, own in reversed(saved):
            if own is None:
                delattr(cls, phase)
            else:
                setattr(cls, phase, own)

    return restore


def _settle() -> None:
    """Wait, untimed, between the two frameworks' passes, for the idle threads of the one that just ran to stop
    polling for work (PyTorch's OpenMP threads do that for a while after each call): without the pause, on 2 cores
    they took about 10 ms of the next minidl forward (``resnet20`` inference 67.5 ms alone, 77 ms right after
    PyTorch's, its first convolutions twice as slow)."""
    time.sleep(_SETTLE_S)


def _torch_twin(args: argparse.Namespace, model: Any) -> Any:
    """The PyTorch twin of ``model`` with its (random) weights, in eval mode, on ``args.threads`` threads."""
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    twin = build_torch(args.model)
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in model.state_dict().items()}
    twin.load_state_dict({k: state[k].to(v.dtype) for k, v in twin.state_dict().items()})
    return twin.eval()


def _torch_forward(twin: Any, x: np.ndarray) -> Any:
    """A closure running the twin's forward on ``x`` without gradients."""
    import torch

    xt = torch.from_numpy(x)

    def forward() -> None:
        with torch.no_grad():
            twin(xt)

    return forward


def _torch_hooks(twin: Any, times: dict[str, list[float]]) -> list[Any]:
    """Forward hooks appending each leaf's seconds to ``times[name]``; returns their handles (to remove)."""
    starts: dict[str, float] = {}
    handles = []
    for name, m in _leaves(twin):
        handles.append(
            m.register_forward_pre_hook(lambda _m, _i, name=name: starts.__setitem__(name, time.perf_counter()))
        )
        handles.append(
            m.register_forward_hook(
                lambda _m, _i, _o, name=name: times[name].append(time.perf_counter() - starts[name])
            )
        )
    return handles


def _sum_by_type(twin: Any, torch_ms: dict[str, float]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for name, m in _leaves(twin):
        totals[type(m).__name__] += torch_ms.get(name, 0.0)
    return totals


def _threads_used(be: Any) -> str:
    if be.name != "numba":
        return os.environ.get("OPENBLAS_NUM_THREADS", "BLAS default")
    from minidl.backend import _threads

    return str(_threads.get_num_threads())


if __name__ == "__main__":
    main()
