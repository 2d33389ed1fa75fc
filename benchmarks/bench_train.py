"""CPU benchmark: minidl (NumPy and Numba backends) against PyTorch CPU, training and inference images per second.

Usage (from a checkout; PyTorch is optional)::

    python benchmarks/bench_train.py                          # cifar_cnn and resnet20; numpy, numba, torch
    python benchmarks/bench_train.py --models all --frameworks numba torch --rounds 3 --record   # the whole list
    python benchmarks/bench_train.py --frameworks numba torch --repeats 30 --json cpu.json
    python benchmarks/bench_train.py --threads 1 --models cifar_cnn
    python benchmarks/bench_train.py --frameworks numba torch --rounds 3   # on a busy machine
    python benchmarks/bench_train.py --models resnet20 --frameworks numba torch --channels-last   # minidl NHWC
    git worktree add ../before <commit>                                     # then, before against after:
    python benchmarks/bench_train.py --frameworks numba torch --rounds 4 --baseline ../before

Models (``--models``, default ``cifar_cnn resnet20``; ``all`` for every one): ``cifar_cnn``, ``resnet20``,
``resnet56``, ``vgg11_bn`` and ``mobilenet_v2`` (their CIFAR layouts, ``cifar=True``), ``airbench94``, ``vit_cifar``,
each against its PyTorch twin of ``torch_twins.py`` (same layers, same state_dict keys; a test checks equal logits).

What is measured, for each model, a batch of random 32x32 float32 images (128; airbench94 trains on 1024, as its
recipe does; ``--batch`` sets every batch), in the same run:

* **train**: one SGD step (momentum 0.9, weight decay 5e-4): forward, cross-entropy loss read as a Python float,
  backward, update;
* **infer**: the forward pass in ``eval()`` mode without gradients (``minidl.no_grad()`` / ``torch.no_grad()``).

minidl's models run fused, as ``train.fit`` runs them (``minidl.nn.fuse``: BatchNorm+ReLU in one pass, Conv+BN
folded in inference); ``--no-fuse`` times them layer by layer.

``--channels-last`` feeds minidl's models ``minidl.channels_last`` batches (``minidl/memory_format.py``: the Numba
kernels that keep that layout skip their copies between NCHW and a pixel's channels); ``--torch-channels-last`` runs
PyTorch with its ``torch.channels_last`` model and batches. Each is a choice a user makes, so each framework's
figures say which layout it ran.

``--autotune`` runs the Numba backend (not a ``--baseline``) with its convolution autotuner (``MINIDL_AUTOTUNE=1``,
``NumbaBackend.autotune``: each convolution shape's algorithms timed in the first step, the fastest kept; the record
lists its choices under ``autotune``).

``--warmup`` untimed steps come first (Numba loads or compiles its kernels, PyTorch picks its algorithms), then the
median of ``--repeats`` timed steps is reported (the NumPy reference backend, about 100x slower, gets
``--numpy-repeats``). With ``--rounds R`` every framework runs R times, interleaved, and the fastest round counts
(on a shared machine other processes can only slow a run down); the ratio of each minidl backend to PyTorch *within
each round* (img/s, and peak RSS) is printed as min / median / max over the rounds. Achieved GFLOP/s = FLOPs / time
with the FLOPs of ``minidl.summary`` (conv and linear multiply-adds x 2; a training step counts 3x the forward:
forward, input gradient, weight gradient).

Each framework and model runs in its own subprocess, so the peak resident memory (``VmHWM`` on Linux) is that
framework's alone, interpreter and libraries included. Threads: ``--threads`` (default: the cores this process may
use) is given to every framework: ``MINIDL_NUM_THREADS`` (the Numba backend's pool; it holds OpenBLAS to one thread
per call), ``OPENBLAS_NUM_THREADS`` for the NumPy backend, ``torch.set_num_threads`` and ``OMP_NUM_THREADS`` for
PyTorch. On a CPU with AVX-512, ``OPENBLAS_CORETYPE=SkylakeX`` is set for the minidl processes unless it is already
set (OpenBLAS reads it when NumPy loads; older OpenBLAS builds otherwise pick their AVX2 kernels on AMD Zen 4/5).

``--baseline DIR`` adds the Numba backend of another checkout of minidl (say, the commit before a change), run by
that checkout's own ``benchmarks/bench_train.py`` in its own process, interleaved with the others in every round;
the table calls it ``baseline``, and the end of the output gives this checkout's speed over the baseline's within each
round (the same minute), as min / median / max over the rounds. With ``--channels-last`` the baseline is fed
``channels_last`` batches too (its checkout must know the option, 5c9f25a or later: an older one is refused);
before 2026-12-05 it ran in C order, so the numba / baseline figures of records made with both options until then
(``0738Z``) compare the layouts as well as the code.

Other processes on the machine distort the numbers; the load average before and after the run is printed and saved.

``--json PATH`` writes the run as a JSON record (``_record.py`` documents the format: the machine, the versions, the
minidl commit, every figure and every ratio, per round and summarized); ``--record`` writes it to
``benchmarks/history/<UTC date and time>-<cpu>.json``. ``compare_bench.py OLD.json NEW.json`` compares two records.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_MODELS,
    benchmark_batch,
    build_minidl,
    build_torch,
    minidl_steps,
    positive_int,
    torch_steps,
)
from _record import (  # noqa: E402
    available_cores,
    default_record_path,
    has_avx512,
    machine_info,
    make_record,
    print_ratios,
    ratios,
    write_record,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

MODELS = tuple(BENCH_MODELS)
DEFAULT_MODELS = ("cifar_cnn", "resnet20")
FRAMEWORKS = ("numpy", "numba", "torch")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (``bench_pinned.py`` checks the options it passes on with it)."""
    parser = argparse.ArgumentParser(prog="bench_train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", choices=(*MODELS, "all"), default=list(DEFAULT_MODELS),
        help=f"Default: {' '.join(DEFAULT_MODELS)}; 'all': {' '.join(MODELS)}",
    )  # fmt: skip
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--threads", type=positive_int, default=available_cores(), help="Default: available cores")
    parser.add_argument(
        "--batch", type=positive_int, default=None,
        help="the batch of every training step and inference pass. Default: 128, airbench94 trains on 1024",
    )  # fmt: skip
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first. Default: 3")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed steps. Default: 20")
    parser.add_argument("--numpy-repeats", type=positive_int, default=3, help="timed steps, NumPy backend. Default: 3")
    parser.add_argument(
        "--rounds", type=positive_int, default=1, help="run every framework this many times, interleaved. Default: 1"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the run's record to this JSON file")
    parser.add_argument(
        "--record", action="store_true", help="also write the record to benchmarks/history/<date>-<cpu>.json"
    )
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another minidl checkout whose Numba backend to run as 'baseline'"
    )
    parser.add_argument("--no-fuse", action="store_true", help="time minidl's models as built, without nn.fuse")
    parser.add_argument(
        "--channels-last", action="store_true",
        help="feed minidl's models channels_last batches (minidl.memory_format), the baseline's too",
    )  # fmt: skip
    parser.add_argument(
        "--torch-channels-last", action="store_true", help="run PyTorch with torch.channels_last model and batches"
    )
    parser.add_argument(
        "--autotune", action="store_true",
        help="run minidl's Numba backend with its convolution autotuner (MINIDL_AUTOTUNE=1; not the baseline's)",
    )  # fmt: skip
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--infer-batch", type=positive_int, default=None, help=argparse.SUPPRESS)  # (worker only)
    return parser


def model_list(names: list[str]) -> list[str]:
    """``--models`` as a list: every model for ``all``, else the names given, each once, in order."""
    return list(MODELS) if "all" in names else list(dict.fromkeys(names))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.models = model_list(args.models)
    return args


def batches(name: str, args: argparse.Namespace) -> dict[str, int]:
    """The training and inference batch of model ``name``: ``--batch`` if given, else the model's default."""
    spec = BENCH_MODELS[name]
    if args.batch is not None:
        return {"train": args.batch, "infer": args.batch}
    return {"train": spec["train_batch"], "infer": spec["infer_batch"]}


# ---------------------------------------------------------------------------------------------------- models
def forward_flops(name: str) -> int:
    """Forward FLOPs of one 32x32 image (conv and linear multiply-adds x 2), from ``minidl.summary``."""
    import minidl

    minidl.set_backend("numpy")  # (not use_backend: that would load the default backend first)
    return int(minidl.summary(build_minidl(name), (3, 32, 32)).total_flops)


# ---------------------------------------------------------------------------------------------------- timing
def time_steps(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float], batch: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {"median_ms": 1e3 * median, "min_ms": 1e3 * min(times), "img_per_s": batch / median, "n": len(times)}


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program alone (``ru_maxrss`` would start from
    the parent's peak: it is inherited across fork and exec). Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def worker_minidl(backend: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    import minidl

    rss_import = _rss_mb()
    be = minidl.set_backend(backend)
    minidl.manual_seed(0)
    model = build_minidl(name)
    x, y = benchmark_batch(args.batch)
    x_infer = benchmark_batch(args.infer_batch)[0] if args.infer_batch not in (None, args.batch) else None
    train_step, infer = minidl_steps(
        model, x, y, fuse=not args.no_fuse, x_infer=x_infer, channels_last=args.channels_last
    )

    repeats = args.numpy_repeats if backend == "numpy" else args.repeats
    warmup = min(args.warmup, 1) if backend == "numpy" else args.warmup
    model.train()
    train = time_steps(train_step, warmup, repeats)
    model.eval()
    inference = time_steps(infer, warmup, repeats)
    infer_batch = args.infer_batch or args.batch
    result: dict[str, Any] = {"train": _summary(train, args.batch), "infer": _summary(inference, infer_batch)}
    result.update(rss_after_import_mb=rss_import, backend=be.name)
    from minidl.backend import _threads

    result["blas"] = _threads.blas_info()
    if getattr(be, "autotune", False):  # what the autotuner chose for each convolution (in the warm-up steps)
        result["autotune"] = be.autotune_results()
    if backend == "numba":
        result["minidl_threads"] = _threads.get_num_threads()
    return result


def worker_torch(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    rss_import = _rss_mb()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_torch(name)
    infer_batch = args.infer_batch or args.batch
    train_step, infer = torch_steps(model, args.batch, "cpu", infer_batch=infer_batch, channels_last=args.channels_last)
    model.train()
    train = time_steps(train_step, args.warmup, args.repeats)
    model.eval()
    inference = time_steps(infer, args.warmup, args.repeats)
    result: dict[str, Any] = {"train": _summary(train, args.batch), "infer": _summary(inference, infer_batch)}
    result.update(rss_after_import_mb=rss_import, torch_threads=torch.get_num_threads())
    result["torch_config"] = {"mkldnn": torch.backends.mkldnn.is_available(), "cpu_capability": _torch_capability()}
    return result


def _torch_capability() -> str | None:
    import torch

    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return None


def run_worker(framework: str, name: str, args: argparse.Namespace) -> None:
    if framework == "torch":
        result = worker_torch(name, args)
    else:
        result = worker_minidl(framework, name, args)
    result.update(framework=framework, model=name, peak_rss_mb=_rss_mb())
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------- driver
def worker_env(framework: str, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    if framework == "numba":
        env["MINIDL_NUM_THREADS"] = str(threads)
    if framework == "numpy":
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    if framework != "torch" and has_avx512():
        env.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
    return env


def spawn(framework: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    root, worker = (args.baseline.resolve(), "numba") if framework == "baseline" else (ROOT, framework)
    script = root / "benchmarks" / "bench_train.py"
    batch = batches(name, args)
    cmd = [sys.executable, str(script), "--worker", worker, name, "--threads", str(args.threads)]
    cmd += ["--batch", str(batch["train"]), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    if batch["infer"] != batch["train"]:  # (only then: an older baseline checkout does not know the option)
        cmd += ["--infer-batch", str(batch["infer"])]
    cmd += ["--numpy-repeats", str(args.numpy_repeats)]
    if args.no_fuse and framework != "baseline":  # (a baseline checkout runs as its own code does)
        cmd.append("--no-fuse")
    minidl_side = framework in ("numba", "numpy", "baseline")  # (a baseline checkout must know the option)
    if (args.channels_last and minidl_side) or (args.torch_channels_last and framework == "torch"):
        cmd.append("--channels-last")  # (in a worker the option means: this worker's framework)
    env = worker_env(worker, args.threads)
    env.pop("MINIDL_AUTOTUNE", None)  # only as --autotune says (the record's args)
    if args.autotune and framework == "numba":
        env["MINIDL_AUTOTUNE"] = "1"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[len("RESULT ") :]), "framework": framework}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"framework": framework, "model": name, "error": " | ".join(tail) or f"exit code {proc.returncode}"}


def best_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds: the fastest train and infer medians (other processes can only slow a run
    down), the largest peak RSS, and every round's figures under ``rounds``."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1]
    best = dict(max(ok, key=lambda r: r["train"]["img_per_s"]))
    best["infer"] = max((r["infer"] for r in ok), key=lambda t: t["img_per_s"])
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    best["rounds"] = [
        {"train_img_per_s": r["train"]["img_per_s"], "infer_img_per_s": r["infer"]["img_per_s"],
         "peak_rss_mb": r["peak_rss_mb"]}
        for r in ok
    ]  # fmt: skip
    return best


def print_table(results: list[dict[str, Any]], flops: dict[str, int]) -> None:
    header = (
        f"{'model':12} {'framework':9} {'train img/s':>11} {'x torch':>7} {'GFLOP/s':>7} {'infer img/s':>11} "
        f"{'x torch':>7} {'GFLOP/s':>7} {'peak RSS MB':>11} {'x torch':>7}"
    )
    print(header)
    print("-" * len(header))
    torch_rows = {r["model"]: r for r in results if r["framework"] == "torch" and "error" not in r}
    for r in results:
        if "error" in r:
            print(f"{r['model']:12} {r['framework']:9} failed: {r['error']}")
            continue
        ref = torch_rows.get(r["model"])
        train, infer, rss = r["train"]["img_per_s"], r["infer"]["img_per_s"], r["peak_rss_mb"]
        if ref is None:
            vs_torch = ("-", "-", "-")
        else:
            vs_torch = tuple(
                f"{a / b:.2f}" for a, b in ((train, ref["train"]["img_per_s"]), (infer, ref["infer"]["img_per_s"]),
                                            (rss, ref["peak_rss_mb"]))
            )  # fmt: skip
        train_gflops = 3 * flops[r["model"]] * train / 1e9
        infer_gflops = flops[r["model"]] * infer / 1e9
        print(
            f"{r['model']:12} {r['framework']:9} {train:11.0f} {vs_torch[0]:>7} {train_gflops:7.1f} {infer:11.0f} "
            f"{vs_torch[1]:>7} {infer_gflops:7.1f} {rss:11.0f} {vs_torch[2]:>7}"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(*args.worker, args)
        return
    info = machine_info(args.threads)
    frameworks = list(args.frameworks)
    if "torch" in frameworks and info["torch"] is None:
        print("PyTorch is not installed: comparing the minidl backends only")
        frameworks.remove("torch")
    if "numba" in frameworks and info["numba"] is None:
        print("Numba is not installed (pip install numba): skipping the numba backend")
        frameworks.remove("numba")
    if args.baseline is not None:
        script = args.baseline / "benchmarks" / "bench_train.py"
        if not script.is_file():
            raise SystemExit(f"--baseline {args.baseline}: not a minidl checkout (no benchmarks/bench_train.py)")
        if args.channels_last and "--channels-last" not in script.read_text():
            raise SystemExit(
                f"--baseline {args.baseline}: its bench_train.py does not know --channels-last (a checkout before "
                "5c9f25a), so it cannot run the baseline in the same layout: drop --channels-last, or pick a later "
                "baseline"
            )
        frameworks.insert(frameworks.index("numba") + 1 if "numba" in frameworks else 0, "baseline")
    cores = f"{info['cores_available']} cores available, {args.threads} threads, AVX-512: {info['avx512f']}"
    print(f"{info['cpu']}, {cores}")
    versions = f"numpy {info['numpy']}, numba {info['numba']}, torch {info['torch']}"
    print(f"{versions}, float32, minidl commit {info['minidl_commit']}")
    model_batches = {name: batches(name, args) for name in args.models}
    print("batch (train / infer): " + ", ".join(f"{k} {v['train']} / {v['infer']}" for k, v in model_batches.items()))
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in info['loadavg_start'])}")
    flops = {name: forward_flops(name) for name in args.models}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for name in args.models:
            for framework in frameworks:
                print(f"  round {round_ + 1}/{args.rounds}: {name} / {framework} ...", flush=True)
                runs.setdefault((name, framework), []).append(spawn(framework, name, args))
    best = {key: best_of(rounds) for key, rounds in runs.items()}
    results = list(best.values())
    ratio_table = ratios(runs, best, "torch") if "torch" in frameworks else []
    if args.baseline is not None:  # this checkout's Numba backend over the baseline's, within each round
        ratio_table += [r for r in ratios(runs, best, "baseline") if r["framework"] == "numba"]
    info["loadavg_end"] = list(os.getloadavg())
    blas = next((r["blas"] for r in results if r.get("framework") == "numba" and "blas" in r), None)
    if blas:
        print(f"BLAS: {blas['library']} core {blas['corename']} (OPENBLAS_CORETYPE={blas['OPENBLAS_CORETYPE']})")
    print()
    print_table(results, flops)
    print_ratios(ratio_table)
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in info['loadavg_end'])}")
    if args.json or args.record:
        options = {k: v for k, v in vars(args).items() if k not in ("worker", "infer_batch")}  # (worker-only)
        record = make_record(info, options, model_batches, flops, results, ratio_table)
        for path in [p for p in (args.json, default_record_path(record) if args.record else None) if p is not None]:
            write_record(record, path)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
