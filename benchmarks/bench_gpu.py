"""GPU benchmark: minidl on CuPy against PyTorch CUDA (eager, fp32), training and inference images per second.

Usage (on a machine with an NVIDIA GPU, CuPy and a CUDA build of PyTorch)::

    python benchmarks/bench_gpu.py                                   # cifar_cnn and resnet20, batch 128 and 512
    python benchmarks/bench_gpu.py --models resnet20 --batch-sizes 256 --repeats 30 --json gpu.json
    python benchmarks/bench_gpu.py --frameworks minidl               # without PyTorch

What is measured, for each model and batch size, in the same run:

* **train**: one SGD step (momentum 0.9, weight decay 5e-4) on a random 32x32 batch: forward, cross-entropy loss
  read as a Python float (minidl's loss returns one; PyTorch's step calls ``loss.item()`` to match), backward, update;
* **infer**: the forward pass in ``eval()`` mode without gradients (``minidl.no_grad()`` / ``torch.no_grad()``).

Each timing synchronizes the device before reading the clock (``cupy.cuda.Device().synchronize()``,
``torch.cuda.synchronize()``); ``--warmup`` untimed iterations come first (CuPy compiles its elementwise kernels and
cuBLAS picks algorithms on first use), then the median of ``--repeats`` timed iterations is reported. Both frameworks
run the same network with the same weights (PyTorch's copy is loaded from minidl's ``state_dict``); the logits of
the two are compared once and the largest difference is reported. PyTorch runs in strict fp32: TF32 is off for
matmuls and cuDNN convolutions unless ``--torch-tf32`` (CuPy does not use TF32 unless ``CUPY_TF32=1``).

A per-layer table (forward and backward milliseconds of every leaf layer, first batch size) follows; it
synchronizes around every layer, so its total is larger than the step time above.

Without a usable GPU the script stops at once with a message saying what is missing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import benchmark_batch, build_torch, minidl_steps, positive_int, torch_steps  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

MODELS = ("cifar_cnn", "resnet20")
FRAMEWORKS = ("minidl", "torch")


class GpuUnavailable(RuntimeError):
    """No usable GPU for a framework the benchmark was asked to run."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[128, 512])
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--warmup", type=positive_int, default=5, help="untimed iterations first. Default: 5")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed iterations. Default: 20")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    parser.add_argument("--torch-tf32", action="store_true", help="let PyTorch use TF32 (not strict fp32)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def check_gpu(frameworks: list[str]) -> dict[str, Any]:
    """Versions and device names, or :class:`GpuUnavailable` naming what is missing."""
    info: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__}
    if "minidl" in frameworks:
        import minidl

        try:
            be = minidl.get_backend("cupy")
        except (ImportError, RuntimeError) as err:
            raise GpuUnavailable(f"minidl cannot use the GPU: {err}") from None
        cupy = be.xp
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info.update(minidl=minidl.__version__, cupy=cupy.__version__, device=props["name"].decode())
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    if "torch" in frameworks:
        try:
            import torch
        except ImportError:
            raise GpuUnavailable("PyTorch is not installed; install a CUDA build or pass --frameworks minidl") from None
        if not torch.cuda.is_available():
            raise GpuUnavailable(
                f"PyTorch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False); install a "
                "CUDA build of PyTorch or pass --frameworks minidl"
            )
        info.update(torch=torch.__version__, torch_device=torch.cuda.get_device_name())
    return info


# ---------------------------------------------------------------------------------------------------- models
def build_minidl(name: str) -> Any:
    from minidl import models

    return {"cifar_cnn": models.cifar_cnn, "resnet20": models.resnet20}[name](num_classes=10)


def torch_twin(name: str, minidl_model: Any, device: str) -> Any:
    """The PyTorch twin of ``minidl_model`` with its weights and buffers (strict: every key must match)."""
    import torch

    import minidl

    twin = build_torch(name)
    state = {k: torch.from_numpy(np.array(minidl.to_numpy(v))) for k, v in minidl_model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin.to(device)


# ---------------------------------------------------------------------------------------------------- timing
def time_it(fn: Callable[[], Any], synchronize: Callable[[], None], warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, the device synchronized."""
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float], batch: int) -> dict[str, float]:
    median = statistics.median(times)
    return {"median_ms": 1e3 * median, "min_ms": 1e3 * min(times), "img_per_s": batch / median}


def bench_minidl(name: str, batch: int, args: argparse.Namespace) -> tuple[dict[str, Any], Any, Any]:
    import minidl

    be = minidl.set_backend("cupy")
    minidl.manual_seed(0)
    model = build_minidl(name).to("cupy")
    x, y = (be.asarray(a) for a in benchmark_batch(batch))
    train_step, infer = minidl_steps(model, x, y)

    model.train()
    train = time_it(train_step, be.synchronize, args.warmup, args.repeats)
    model.eval()
    inference = time_it(infer, be.synchronize, args.warmup, args.repeats)
    result = {"train": _summary(train, batch), "infer": _summary(inference, batch)}
    return result, model, (x, y)


def bench_torch(
    name: str, batch: int, args: argparse.Namespace, minidl_model: Any, minidl_x: Any = None
) -> tuple[dict[str, Any], Any]:
    """Time the PyTorch twin of ``minidl_model``; with ``minidl_x``, first compare the two models' logits on it."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = args.torch_tf32
    torch.backends.cudnn.allow_tf32 = args.torch_tf32
    model = torch_twin(name, minidl_model, "cuda")
    result: dict[str, Any] = {}
    if minidl_x is not None:  # before either model trains further: same weights, same buffers
        result["max_logit_difference"] = max_logit_difference(minidl_model, model, minidl_x)
    train_step, infer = torch_steps(model, batch, "cuda")
    model.train()
    train = time_it(train_step, torch.cuda.synchronize, args.warmup, args.repeats)
    model.eval()
    inference = time_it(infer, torch.cuda.synchronize, args.warmup, args.repeats)
    result.update(train=_summary(train, batch), infer=_summary(inference, batch))
    return result, model


def max_logit_difference(minidl_model: Any, torch_model: Any, x: Any) -> float:
    """Largest |minidl - PyTorch| over the eval-mode logits of batch ``x`` (same weights and buffers)."""
    import torch

    import minidl

    minidl_model.eval()
    torch_model.eval()
    with minidl.no_grad():
        ours = minidl.to_numpy(minidl_model(x))
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(minidl.to_numpy(x)).cuda()).cpu().numpy()
    return float(np.abs(ours - theirs).max())


# ---------------------------------------------------------------------------------------------------- per layer
def _leaves(model: Any) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in model.named_modules() if name and not any(True for _ in m.children())]


def layer_times_minidl(model: Any, x: Any, y: Any, repeats: int) -> list[dict[str, Any]]:
    """Median forward/backward ms of every leaf layer over ``repeats`` training steps (synchronized per layer)."""
    import minidl
    from minidl import nn

    be = minidl.get_backend("cupy")
    times: dict[str, dict[str, list[float]]] = {}

    def timed(name: str, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            be.synchronize()
            start = time.perf_counter()
            out = fn(*args)
            be.synchronize()
            times.setdefault(name, {"forward": [], "backward": []})[phase].append(time.perf_counter() - start)
            return out

        return run

    leaves = _leaves(model)
    for name, m in leaves:  # instance attributes shadow the class methods; removed again below
        object.__setattr__(m, "forward", timed(name, "forward", m.forward))
        object.__setattr__(m, "backward", timed(name, "backward", m.backward))
    try:
        model.train()
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(repeats + 1):
            loss_fn(model(x), y)
            model.backward(loss_fn.backward())
    finally:
        for _, m in leaves:
            del m.__dict__["forward"], m.__dict__["backward"]
    rows = []
    for name, m in leaves:
        t = times.get(name, {"forward": [0.0], "backward": [0.0]})
        fwd = 1e3 * statistics.median(t["forward"][1:] or t["forward"])
        bwd = 1e3 * statistics.median(t["backward"][1:] or t["backward"])
        rows.append({"layer": name, "type": type(m).__name__, "forward_ms": fwd, "backward_ms": bwd})
    return rows


def layer_times_torch(model: Any, batch: int, repeats: int) -> list[dict[str, Any]]:
    """The same table for the PyTorch twin, from module hooks (synchronized in every hook)."""
    import torch

    times: dict[str, dict[str, list[float]]] = {}
    starts: dict[tuple[str, str], float] = {}
    handles = []

    def mark(name: str, phase: str, begin: bool) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            torch.cuda.synchronize()
            now = time.perf_counter()
            if begin:
                starts[(name, phase)] = now
            else:
                times.setdefault(name, {"forward": [], "backward": []})[phase].append(now - starts[(name, phase)])

        return hook

    leaves = _leaves(model)
    for name, m in leaves:
        handles += [
            m.register_forward_pre_hook(mark(name, "forward", True)),
            m.register_forward_hook(mark(name, "forward", False)),
            m.register_full_backward_pre_hook(mark(name, "backward", True)),
            m.register_full_backward_hook(mark(name, "backward", False)),
        ]
    x = torch.randn(batch, 3, 32, 32, device="cuda", requires_grad=True)  # so the first layer's backward runs too
    y = torch.randint(0, 10, (batch,), device="cuda")
    model.train()
    try:
        for _ in range(repeats + 1):
            torch.nn.functional.cross_entropy(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, m in leaves:
        t = times.get(name, {"forward": [0.0], "backward": [0.0]})
        fwd = 1e3 * statistics.median(t["forward"][1:] or t["forward"] or [0.0])
        bwd = 1e3 * statistics.median(t["backward"][1:] or t["backward"] or [0.0])
        rows.append({"layer": name, "type": type(m).__name__, "forward_ms": fwd, "backward_ms": bwd})
    return rows


def format_layer_table(title: str, rows: list[dict[str, Any]], torch_rows: list[dict[str, Any]] | None) -> str:
    theirs = {r["layer"]: r for r in torch_rows or []}
    header = f"{'layer':<28}{'type':<20}{'fwd ms':>9}{'bwd ms':>9}"
    header += f"{'torch fwd':>11}{'torch bwd':>11}" if torch_rows else ""
    lines = [title, header, "-" * len(header)]
    for r in rows:
        line = f"{r['layer']:<28}{r['type']:<20}{r['forward_ms']:>9.3f}{r['backward_ms']:>9.3f}"
        if torch_rows and r["layer"] in theirs:
            line += f"{theirs[r['layer']]['forward_ms']:>11.3f}{theirs[r['layer']]['backward_ms']:>11.3f}"
        lines.append(line)
    total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    lines.append(f"{'total (synchronized per layer)':<48}{total:>18.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        info = check_gpu(args.frameworks)
    except GpuUnavailable as err:
        print(f"bench_gpu: {err}", file=sys.stderr)
        return 2
    print("bench_gpu:", ", ".join(f"{k} {v}" for k, v in info.items()))
    results: dict[str, Any] = {"info": info, "settings": vars(args) | {"json": str(args.json)}, "runs": [],
                               "layers": {}}  # fmt: skip
    for name in args.models:
        for batch in args.batch_sizes:
            run: dict[str, Any] = {"model": name, "batch": batch}
            minidl_model = xy = None
            if "minidl" in args.frameworks:
                run["minidl"], minidl_model, xy = bench_minidl(name, batch, args)
            if "torch" in args.frameworks:
                if minidl_model is None:  # weights for the twin: a minidl model on the CPU
                    minidl_model = build_minidl(name)
                run["torch"], torch_model = bench_torch(name, batch, args, minidl_model, None if xy is None else xy[0])
            results["runs"].append(run)
            cells = [f"{name:<10} batch {batch:<4}"]
            for fw in FRAMEWORKS:
                if fw in run:
                    cells.append(f"{fw}: train {run[fw]['train']['img_per_s']:9.0f} img/s, "
                                 f"infer {run[fw]['infer']['img_per_s']:9.0f} img/s")  # fmt: skip
            if "max_logit_difference" in run.get("torch", {}):
                cells.append(f"max |logit diff| {run['torch']['max_logit_difference']:.2e}")
            print("  ".join(cells))
            if batch == args.batch_sizes[0] and not args.no_layers:
                rows = layer_times_minidl(minidl_model, *xy, args.repeats) if xy is not None else []
                torch_rows = layer_times_torch(torch_model, batch, args.repeats) if "torch" in run else None
                results["layers"][f"{name}@{batch}"] = {"minidl": rows, "torch": torch_rows}
                if rows:
                    print(format_layer_table(f"\nper-layer times, {name}, batch {batch}:", rows, torch_rows) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"bench_gpu: wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
