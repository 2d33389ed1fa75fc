"""The benchmark history: the JSON record ``bench_train.py --json PATH`` (or ``--record``) writes, the machine it
describes, the per-round ratios against PyTorch, and the check ``compare_bench.py`` runs before it reads a record.

A record (``"format": "minidl-bench-train"``, ``"version": 1``)::

    {
      "format": "minidl-bench-train", "version": 1, "created": "2026-12-03T12:30:00Z",
      "machine": {"cpu": ..., "avx512f": ..., "cores_available": ..., "threads": ..., "python": ..., "numpy": ...,
                  "numba": ..., "torch": ..., "minidl_commit": ... (null without git), "minidl_dirty": ...,
                  "platform": ..., "loadavg_start": [1, 5, 15 min], "loadavg_end": [...]},
      "args": {the command line's options},
      "batches": {model: {"train": ..., "infer": ...}},
      "forward_flops_per_image": {model: ...},
      "results": [one per model x framework: the best round's "train"/"infer" figures (median_ms, min_ms,
                  img_per_s, n), "peak_rss_mb", and "rounds": [every round's train/infer img/s and peak RSS]],
      "ratios": [one per model x framework x reference x mode: {"model", "framework", "reference", "mode"
                 ("train", "infer" or "rss"), "per_round": [...], "min", "median", "max", "best", "rounds"}]
    }

A ratio is framework / reference: img/s over img/s for ``train`` and ``infer`` (higher is better), peak RSS over
peak RSS for ``rss`` (lower is better). ``per_round`` pairs the runs of the same round (the same minute, so the
machine's load mostly cancels); ``best`` divides the best-of-rounds figures (fastest round, largest peak RSS).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FORMAT = "minidl-bench-train"
VERSION = 1
MODES = ("train", "infer", "rss")
HISTORY = Path(__file__).resolve().parent / "history"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- machine
def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(root: Path = ROOT) -> tuple[str | None, bool | None]:
    """(``git rev-parse HEAD``, whether tracked files differ from it) of the checkout at ``root``; (None, None)
    without git or outside a repository."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True,
            timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip(), (bool(status.stdout.strip()) if status.returncode == 0 else None)


def machine_info(threads: int) -> dict[str, Any]:
    import numpy as np

    commit, dirty = git_commit()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "avx512f": has_avx512(),
        "cores_available": available_cores(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "minidl_commit": commit,
        "minidl_dirty": dirty,
        "loadavg_start": list(os.getloadavg()),
    }
    for name in ("numba", "torch"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    return info


# ---------------------------------------------------------------------------------------------------- ratios
def _value(run: dict[str, Any], mode: str) -> float:
    return run["peak_rss_mb"] if mode == "rss" else run[mode]["img_per_s"]


def ratios(
    runs: dict[tuple[str, str], list[dict[str, Any]]], best: dict[tuple[str, str], dict[str, Any]], reference: str
) -> list[dict[str, Any]]:
    """framework / ``reference`` for every model, framework and mode: per round (runs of the same round index,
    both without error), min / median / max of those, and the ratio of the best-of-rounds figures."""
    out = []
    for (model, framework), rounds in runs.items():
        ref_rounds = runs.get((model, reference))
        if framework == reference or ref_rounds is None:
            continue
        pairs = [(a, b) for a, b in zip(rounds, ref_rounds, strict=True) if "error" not in a and "error" not in b]
        if not pairs:
            continue
        a_best, b_best = best[(model, framework)], best[(model, reference)]
        for mode in MODES:
            per_round = [_value(a, mode) / _value(b, mode) for a, b in pairs]
            out.append({
                "model": model, "framework": framework, "reference": reference, "mode": mode,
                "per_round": per_round, "min": min(per_round), "median": statistics.median(per_round),
                "max": max(per_round), "best": _value(a_best, mode) / _value(b_best, mode),
                "rounds": len(per_round),
            })  # fmt: skip
    return out


def print_ratios(table: list[dict[str, Any]]) -> None:
    """One line per model x framework x reference: min / median / max of the per-round ratios, and the best-of."""
    if not table:
        return
    print("\nper-round ratios, min / median / max (best of rounds); train and infer: img/s, rss: peak memory")
    header = f"  {'model':12} {'framework':9} {'over':8} {'mode':5} {'min':>6} {'median':>6} {'max':>6} {'best':>6}"
    print(header)
    for r in table:
        print(
            f"  {r['model']:12} {r['framework']:9} {r['reference']:8} {r['mode']:5} {r['min']:6.3f} "
            f"{r['median']:6.3f} {r['max']:6.3f} {r['best']:6.3f}  ({r['rounds']} rounds)"
        )


# ---------------------------------------------------------------------------------------------------- records
def make_record(
    info: dict[str, Any],
    args: dict[str, Any],
    batches: dict[str, dict[str, int]],
    flops: dict[str, int],
    results: list[dict[str, Any]],
    ratio_table: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items()},
        "batches": batches,
        "forward_flops_per_image": flops,
        "results": results,
        "ratios": ratio_table,
    }


def cpu_slug(cpu: str) -> str:
    """``AMD EPYC 9R14 96-Core Processor`` -> ``amd-epyc-9r14-96-core-processor`` (at most 48 characters)."""
    return re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:48].rstrip("-") or "unknown-cpu"


def default_record_path(record: dict[str, Any]) -> Path:
    """``benchmarks/history/<UTC date and time>-<cpu slug>.json``, e.g. ``2026-12-03T1230Z-amd-epyc-...json``."""
    created = record["created"]  # 2026-12-03T12:30:00Z -> 2026-12-03T1230Z (minutes: runs of a day stay apart)
    stamp = f"{created[:10]}T{created[11:13]}{created[14:16]}Z"
    return HISTORY / f"{stamp}-{cpu_slug(record['machine']['cpu'])}.json"


def write_record(record: dict[str, Any], path: Path) -> None:
    """Write the record atomically (a temporary file in the same folder, then renamed), creating the folder."""
    sys.path.insert(0, str(ROOT))
    from minidl._atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(record, indent=2) + "\n").encode(), "bench_train.py --json")


class RecordError(ValueError):
    """A file that is not a ``bench_train.py`` record."""


def load_record(path: Path) -> dict[str, Any]:
    """Read and check a record; a :class:`RecordError` naming the file and what is wrong otherwise."""
    try:
        record = json.loads(Path(path).read_text())
    except OSError as exc:
        raise RecordError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a bench_train.py record (not JSON: {exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RecordError(
            f'{path}: not a bench_train.py record (expected "format": "{FORMAT}", got {found!r}); records are '
            "written by python benchmarks/bench_train.py --json PATH or --record"
        )
    if record.get("version") != VERSION:
        raise RecordError(f"{path}: record version {record.get('version')!r}, this script reads version {VERSION}")
    for key, kind in (("machine", dict), ("ratios", list), ("results", list)):
        if not isinstance(record.get(key), kind):
            raise RecordError(f"{path}: a bench_train.py record needs {key!r} ({kind.__name__}), it has none")
    need = {"model", "framework", "reference", "mode", "min", "median", "max", "best"}
    for i, row in enumerate(record["ratios"]):
        missing = sorted(need - set(row)) if isinstance(row, dict) else sorted(need)
        if missing or row["mode"] not in MODES:
            raise RecordError(f"{path}: ratios[{i}] is not a ratio entry (missing {missing}, mode in {MODES})")
    return record
