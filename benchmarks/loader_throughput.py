"""DataLoader throughput: images per second with augmentation, for 0/1/2 workers, processes and threads.

Two workloads:

* CIFAR-10 (the real training set when found under ``--data-dir`` / ``$MINIDL_DATA_DIR`` / ``../shared/data``, else the
  embedded 2,000-image sample): ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToArray()``,
  ``Normalize`` at batch 128 -- small arrays, Python-bound per-sample work;
* Dogs vs. Cats JPEGs (skipped when absent): ``RandomResizedCrop(128)``, ``RandomHorizontalFlip()``,
  ``ColorJitter(0.4, 0.4, 0.4)``, ``ToArray()`` at batch 32 -- JPEG decoding dominates.

Each run starts a fresh loader; the rate is measured from the first batch to the last (steady state) and the time to
the first batch (worker start-up, fork or thread) is reported separately. Every round runs all configurations once,
``--repeats`` rounds, and the medians are reported. Prints a table and a JSON line (also to ``--json`` if given).

Usage::

    python benchmarks/loader_throughput.py            # full settings
    python benchmarks/loader_throughput.py --quick    # fewer batches and repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import minidl  # noqa: E402
from minidl import transforms as T  # noqa: E402
from minidl.data import DataLoader  # noqa: E402
from minidl.data.datasets import CIFAR10, CIFAR10Sample, DogsVsCats  # noqa: E402

CONFIGS = [(0, "main"), (1, "process"), (2, "process"), (1, "thread"), (2, "thread")]
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _data_dir(arg: str | None) -> Path | None:
    for candidate in (arg, os.environ.get("MINIDL_DATA_DIR"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def run_once(dataset, batch_size: int, batches: int, workers: int, kind: str, seed: int) -> tuple[float, float]:
    """(images/s after the first batch, seconds to the first batch) of a fresh loader delivering ``batches``."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True, seed=seed, num_workers=workers,
        worker_type="process" if kind == "main" else kind,
    )  # fmt: skip
    start = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter()
    images = 0
    for k, (x, _) in enumerate(it):
        images += len(x)
        if k + 2 == batches:
            break
    rate = images / (time.perf_counter() - first)
    del it, loader
    return rate, first - start


def measure(dataset, batch_size: int, batches: int, repeats: int) -> list[dict]:
    """Median over ``repeats`` rounds; each round runs every configuration once, so that load changes on a shared
    machine hit all configurations alike."""
    runs: dict[tuple[int, str], list[tuple[float, float]]] = {c: [] for c in CONFIGS}
    for r in range(repeats):
        for workers, kind in CONFIGS:
            runs[(workers, kind)].append(run_once(dataset, batch_size, batches, workers, kind, seed=r))
    return [
        {
            "workers": workers, "kind": kind, "img_per_s": statistics.median(rate for rate, _ in runs[(workers, kind)]),
            "first_batch_s": statistics.median(t for _, t in runs[(workers, kind)]),
            "runs": [rate for rate, _ in runs[(workers, kind)]],
        }
        for workers, kind in CONFIGS
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and repeats")
    parser.add_argument("--data-dir", default=None, help="folder with cifar-10/ and dogs-vs-cats/")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    cifar_batches, dogs_batches = (40, 12) if args.quick else (150, 40)
    minidl.manual_seed(0)
    root = _data_dir(args.data_dir)

    results: dict = {
        "machine": {
            "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
            "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "settings": {"repeats": repeats, "cifar_batches": cifar_batches, "dogs_batches": dogs_batches},
    }  # fmt: skip
    cifar_tf = T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToArray(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    )
    try:
        cifar = CIFAR10(root, train=True, transform=cifar_tf) if root else None
    except (FileNotFoundError, OSError):
        cifar = None
    source = "CIFAR-10 train (real)" if cifar is not None else "CIFAR-10 embedded sample"
    cifar = cifar or CIFAR10Sample(train=True, transform=cifar_tf)
    results["cifar10"] = {"source": source, "batch_size": 128, "rows": measure(cifar, 128, cifar_batches, repeats)}

    try:
        dogs = DogsVsCats(root, train=True) if root else None
    except (FileNotFoundError, OSError):
        dogs = None
    if dogs is not None:
        dogs.transform = T.Compose(
            [T.RandomResizedCrop(128), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4), T.ToArray()]
        )
        rows = measure(dogs, 32, dogs_batches, repeats)
        results["dogs_vs_cats"] = {"source": str(dogs.source), "batch_size": 32, "rows": rows}

    print(f"machine: {results['machine']}")
    for key in ("cifar10", "dogs_vs_cats"):
        if key not in results:
            print(f"\n{key}: data not found, skipped")
            continue
        block = results[key]
        print(f"\n{key} ({block['source']}, batch {block['batch_size']})")
        print(f"{'workers':>8} {'kind':>8} {'img/s (median)':>15} {'first batch (s)':>16}   runs (img/s)")
        for row in block["rows"]:
            runs = ", ".join(f"{r:.0f}" for r in row["runs"])
            rate, first = row["img_per_s"], row["first_batch_s"]
            print(f"{row['workers']:>8} {row['kind']:>8} {rate:>15.0f} {first:>16.3f}   [{runs}]")
    line = json.dumps(results)
    print("\nJSON: " + line)
    if args.json:
        Path(args.json).write_text(line + "\n")


if __name__ == "__main__":
    main()
