"""The airbench94 recipe, minidl against its PyTorch CPU twin: training images per second and peak memory.

Usage (from a checkout; PyTorch needed for the twin)::

    python benchmarks/bench_airbench.py                                   # 200 steps of batch 1024, 2 rounds
    python benchmarks/bench_airbench.py --steps 20 --rounds 2 --json airbench.json
    python benchmarks/bench_airbench.py --batch-size 256 --steps 5 --warmup 1   # a quick look on a busy machine

Both frameworks train the same network (``minidl.models.airbench94`` and ``benchmarks/airbench_torch.py``, whose
equality in float64 ``tests/models/test_airbench.py`` checks) with the same recipe, on the same batches:

* the driver draws the data order (a permutation per epoch), the alternating flips and the 2-pixel translations
  once, with ``minidl.transforms.AlternatingFlip`` and ``RandomTranslate`` and a seeded generator, and writes the
  augmented batches (CIFAR-10's training images if found, else the embedded 2,000-image sample) to one ``.npy``
  file; it also computes the patch-whitening weight once; both workers read them;
* a timed step is airbench's: forward, label-smoothed summed cross-entropy, backward, Nesterov SGD on two param
  groups, the triangular LambdaLR step, and every 5th step the Lookahead average of weights and BatchNorm statistics;
  the loss is read as a Python float (as every training loop does).

``--warmup`` untimed steps come first (Numba loads its kernels; PyTorch picks its algorithms), then ``--steps`` timed
ones; images/s = batch x steps / their total time. Each framework runs in its own subprocess, so its peak resident
memory (``VmHWM``) is its own, interpreter and libraries included; with ``--rounds R`` they run R times, interleaved,
and the fastest round counts (other processes can only slow a run down). Threads: ``--threads`` (default: the cores
this process may use) for both, as in ``bench_train.py``. The load average before and after is saved: on a shared
machine the numbers are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from _common import positive_int  # noqa: E402
from _record import available_cores, machine_info  # noqa: E402
from bench_train import _rss_mb, worker_env  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=positive_int, default=200, help="timed training steps. Default: 200")
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first. Default: 3")
    parser.add_argument(
        "--rounds", type=positive_int, default=2, help="runs of each framework, interleaved. Default: 2"
    )
    parser.add_argument("--batch-size", type=positive_int, default=1024, help="Default: 1024 (airbench's)")
    parser.add_argument("--widths", type=positive_int, nargs=3, default=(64, 256, 256), help="Default: 64 256 256")
    parser.add_argument("--threads", type=positive_int, default=available_cores(), help="Default: available cores")
    parser.add_argument("--frameworks", nargs="+", choices=("minidl", "torch"), default=["minidl", "torch"])
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $MINIDL_DATA_DIR, the cache)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data order, augmentation and weights")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "FOLDER"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- data
def prepare(args: argparse.Namespace, folder: Path) -> str:
    """Write ``batches.npy`` (steps, B, 3, 32, 32), ``labels.npy`` (steps, B) and ``whiten.npy``; return the source."""
    import minidl
    from minidl import nn
    from minidl import transforms as T
    from minidl.data.datasets import CIFAR10, CIFAR10Sample

    minidl.set_backend("numpy")
    try:
        dataset = CIFAR10(args.data_dir, True)
        source = f"CIFAR-10 from {dataset.root}"
    except FileNotFoundError:
        dataset = CIFAR10Sample(True)
        source = "the embedded 2,000-image CIFAR-10 sample"
    images = dataset.data.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    images = (images - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None]
    labels = np.asarray(dataset.targets, np.int64)
    n, B, total = len(labels), args.batch_size, args.warmup + args.steps
    if B > n:
        raise SystemExit(f"--batch-size {B} is larger than the {n} training images of {source}")
    rng = np.random.default_rng(args.seed)
    flip = T.AlternatingFlip(n, generator=rng)
    translate = T.RandomTranslate(2, generator=rng)
    batches = np.lib.format.open_memmap(folder / "batches.npy", "w+", np.float32, (total, B, 3, 32, 32))
    batch_labels = np.empty((total, B), np.int64)
    step, epoch = 0, 0
    while step < total:  # the example's order: a permutation per epoch, the last incomplete batch dropped
        flip.set_epoch(epoch)
        order = rng.permutation(n)
        for i in range(n // B):
            if step == total:
                break
            index = order[i * B : (i + 1) * B]
            batches[step] = translate(flip(images[index], index))
            batch_labels[step] = labels[index]
            step += 1
        epoch += 1
    batches.flush()
    np.save(folder / "labels.npy", batch_labels)
    whiten = nn.init.patch_whitening_(np.empty((24, 3, 2, 2), np.float32), images[:5000])
    np.save(folder / "whiten.npy", whiten)
    return source


# ---------------------------------------------------------------------------------------------------- workers
def _time(step_fn: Any, args: argparse.Namespace, batches: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    for s in range(args.warmup):
        step_fn(s, batches[s], labels[s])
    times = []
    for s in range(args.warmup, args.warmup + args.steps):
        x = np.ascontiguousarray(batches[s])  # read from the file outside the timed region
        start = time.perf_counter()
        step_fn(s, x, labels[s])
        times.append(time.perf_counter() - start)
    total = sum(times)
    return {
        "steps": len(times),
        "seconds": total,
        "median_step_ms": 1e3 * float(np.median(times)),
        "img_per_s": args.batch_size * len(times) / total,
    }


def _alpha(step: int, total: int) -> float:
    """Lookahead's alpha after ``step`` steps (airbench: decay 0.95**5 * (step / total)**3, alpha = 1 - decay)."""
    return 1.0 - 0.95**5 * (step / total) ** 3


def worker_minidl(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "examples"))
    import speedrun_cifar10 as recipe

    import minidl
    from minidl import models, nn, optim

    rss_import = _rss_mb()
    minidl.manual_seed(args.seed)
    total = args.warmup + args.steps
    model = models.airbench94(widths=tuple(args.widths))
    model.whiten.weight.data[...] = np.load(folder / "whiten.npy")
    optimizer = recipe.make_optimizer(model, args.batch_size)
    scheduler = optim.lr_scheduler.LambdaLR(optimizer, recipe.triangular(total))
    lookahead = optim.Lookahead(optimizer, k=5, alpha=1.0, buffers=model.buffers())
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="sum")
    be = minidl.get_backend()

    def step(s: int, x: np.ndarray, y: np.ndarray) -> None:
        float(loss_fn(model(be.asarray(x)), y))
        lookahead.zero_grad()
        model.backward(loss_fn.backward())
        lookahead.alpha = _alpha(s + 1, total)
        lookahead.step()
        scheduler.step()

    result = _time(step, args, np.load(folder / "batches.npy", mmap_mode="r"), np.load(folder / "labels.npy"))
    from minidl.backend import _threads

    result.update(rss_after_import_mb=rss_import, backend=be.name, threads=_threads.get_num_threads())
    return result


def worker_torch(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import torch
    from airbench_torch import AirbenchTorch, lr_factor, make_optimizer

    rss_import = _rss_mb()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    total = args.warmup + args.steps
    model = AirbenchTorch(widths=tuple(args.widths))
    with torch.no_grad():
        model.whiten.weight.copy_(torch.from_numpy(np.load(folder / "whiten.npy")))
    optimizer = make_optimizer(model, args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total))
    slow = {k: v.clone() for k, v in model.state_dict().items()}  # airbench's LookaheadState
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.2, reduction="sum")

    def step(s: int, x: np.ndarray, y: np.ndarray) -> None:
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (s + 1) % 5 == 0:
            with torch.no_grad():
                for fast, avg in zip(model.state_dict().values(), slow.values(), strict=True):
                    if fast.dtype.is_floating_point:
                        avg.lerp_(fast, _alpha(s + 1, total))
                        fast.copy_(avg)

    result = _time(step, args, np.load(folder / "batches.npy", mmap_mode="r"), np.load(folder / "labels.npy"))
    result.update(rss_after_import_mb=rss_import, threads=torch.get_num_threads())
    return result


def run_worker(args: argparse.Namespace) -> None:
    framework, folder = args.worker
    result = (worker_torch if framework == "torch" else worker_minidl)(args, Path(folder))
    result.update(framework=framework, peak_rss_mb=_rss_mb())
    print("RESULT " + json.dumps(result), flush=True)


def spawn(framework: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, str(folder)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
    cmd += ["--threads", str(args.threads), "--seed", str(args.seed), "--widths", *map(str, args.widths)]
    env = worker_env("torch" if framework == "torch" else "numba", args.threads)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"framework": framework, "error": " | ".join(tail) or f"exit code {proc.returncode}"}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    info = machine_info(args.threads)
    print(f"CPU: {info['cpu']}; {args.threads} threads; load average {info['loadavg_start']}")
    with tempfile.TemporaryDirectory(prefix="bench_airbench-") as tmp:
        folder = Path(tmp)
        source = prepare(args, folder)
        print(f"data: {source}; batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps")
        rounds: dict[str, list[dict[str, Any]]] = {f: [] for f in args.frameworks}
        for r in range(args.rounds):
            for framework in args.frameworks:
                result = spawn(framework, folder, args)
                rounds[framework].append(result)
                shown = "error: " + result["error"] if "error" in result else f"{result['img_per_s']:.1f} img/s"
                print(f"round {r + 1} {framework:6} {shown}", flush=True)
    best = {}
    for framework, results in rounds.items():
        ok = [x for x in results if "error" not in x]
        if ok:
            best[framework] = dict(max(ok, key=lambda x: x["img_per_s"]))
            best[framework]["peak_rss_mb"] = max(x["peak_rss_mb"] for x in ok)
            best[framework]["rounds_img_per_s"] = [x["img_per_s"] for x in ok]
    print(f"\n{'framework':10} {'img/s':>8} {'ms/step':>9} {'peak RSS MB':>12}")
    for framework, b in best.items():
        print(f"{framework:10} {b['img_per_s']:8.1f} {b['median_step_ms']:9.0f} {b['peak_rss_mb']:12.0f}")
    if "minidl" in best and "torch" in best:
        print(f"minidl / torch training throughput: {best['minidl']['img_per_s'] / best['torch']['img_per_s']:.2f}x")
    info["loadavg_end"] = list(os.getloadavg())
    record = {"machine": info, "data": source, "args": {k: v for k, v in vars(args).items() if k != "json"}}
    record.update(best=best, rounds=rounds)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
