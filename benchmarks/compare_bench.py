"""Compare two ``bench_train.py`` records: for every model x mode, the old ratio, the new one and the change.

Usage::

    python benchmarks/compare_bench.py benchmarks/history/OLD.json benchmarks/history/NEW.json
    python benchmarks/compare_bench.py OLD.json NEW.json --threshold 5 --fail-on-regression   # in review or CI

The ratio compared is minidl's Numba backend over PyTorch (``--framework``, ``--reference``), summarized over the
rounds of each record by ``--stat`` (``median`` of the per-round ratios by default; ``best`` for the best-of-rounds
figures, ``min`` or ``max``). ``train`` and ``infer`` are img/s ratios (higher is better), ``rss`` the peak-memory
ratio (lower is better). A change worse than ``--threshold`` percent is flagged ``REGRESSION``;
``--fail-on-regression`` then exits with status 1. A file that is not a record is refused (status 2).

Two records only compare well from the same machine, thread count and load: the header prints both machines, and
a warning when the CPUs differ or the settings that change what a ratio measures do (threads, ``--no-fuse``,
``--channels-last``, ``--torch-channels-last``, a model's batch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import MODES, RecordError, load_record  # noqa: E402

STATS = ("median", "best", "min", "max")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="the earlier record (bench_train.py --json / --record)")
    parser.add_argument("new", type=Path, help="the later record")
    parser.add_argument("--framework", default="numba", help="the ratio's numerator. Default: numba")
    parser.add_argument("--reference", default="torch", help="the ratio's denominator. Default: torch")
    parser.add_argument("--stat", choices=STATS, default="median", help="Default: median (of the per-round ratios)")
    parser.add_argument(
        "--threshold", type=float, default=5.0, help="percent worse that counts as a regression. Default: 5"
    )
    parser.add_argument("--fail-on-regression", action="store_true", help="exit with status 1 if one is flagged")
    args = parser.parse_args(argv)
    if args.threshold < 0:
        parser.error(f"--threshold must be >= 0 percent, got {args.threshold}")
    return args


def _table(record: dict[str, Any], framework: str, reference: str, stat: str) -> dict[tuple[str, str], float]:
    return {
        (r["model"], r["mode"]): float(r[stat])
        for r in record["ratios"]
        if r["framework"] == framework and r["reference"] == reference
    }


def _machine(record: dict[str, Any]) -> str:
    m = record["machine"]
    commit = (m.get("minidl_commit") or "no commit")[:10] + (" (modified)" if m.get("minidl_dirty") else "")
    return f"{record.get('created', '?')}  {m.get('cpu', '?')}, {m.get('threads', '?')} threads, minidl {commit}"


#: the options of bench_train.py that change what a ratio measures (a record made before an option existed ran
#: without it)
_SETTINGS = ("no_fuse", "channels_last", "torch_channels_last")


def setting_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between the two records' settings that changes what their ratios measure: the thread count, the
    layout and fusion options, and the batch of each model and mode both records ran ("threads 1 -> 2", ...)."""
    changes = []
    threads = old["machine"].get("threads"), new["machine"].get("threads")
    if threads[0] != threads[1]:
        changes.append(f"threads {threads[0]} -> {threads[1]}")
    for name in _SETTINGS:
        before, after = (bool(record.get("args", {}).get(name, False)) for record in (old, new))
        if before != after:
            changes.append(f"{name} {before} -> {after}")
    for model, batches in old.get("batches", {}).items():
        for mode, batch in batches.items():
            other = new.get("batches", {}).get(model, {}).get(mode, batch)
            if other != batch:
                changes.append(f"{model} {mode} batch {batch} -> {other}")
    return changes


def compare(
    old: dict[str, Any], new: dict[str, Any], args: argparse.Namespace
) -> tuple[list[tuple[str, str, float | None, float | None, float | None, str]], int]:
    """Rows (model, mode, old ratio, new ratio, change in %, flag) and the number of regressions."""
    a = _table(old, args.framework, args.reference, args.stat)
    b = _table(new, args.framework, args.reference, args.stat)
    models = list(dict.fromkeys(m for m, _ in [*a, *b]))
    rows, regressions = [], 0
    for model in models:
        for mode in MODES:
            x, y = a.get((model, mode)), b.get((model, mode))
            if x is None and y is None:
                continue
            change = None if x is None or y is None else 100.0 * (y / x - 1.0)
            worse = change is not None and (change > args.threshold if mode == "rss" else change < -args.threshold)
            flag = "REGRESSION" if worse else ("only in old" if y is None else "only in new" if x is None else "")
            regressions += worse
            rows.append((model, mode, x, y, change, flag))
    return rows, regressions


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        old, new = load_record(args.old), load_record(args.new)
    except RecordError as exc:
        print(f"compare_bench.py: {exc}", file=sys.stderr)
        return 2
    print(f"old: {_machine(old)}\nnew: {_machine(new)}")
    if old["machine"].get("cpu") != new["machine"].get("cpu"):
        print("warning: the records come from different CPUs; their ratios are not comparable as a regression test")
    changes = setting_changes(old, new)
    if changes:
        print(
            f"warning: the records were made with different settings ({', '.join(changes)}); their ratios are not "
            "comparable as a regression test"
        )
    rows, regressions = compare(old, new, args)
    what = f"{args.framework} / {args.reference}, {args.stat} over the rounds"
    print(f"\n{what}; train, infer: img/s (higher is better), rss: peak memory (lower is better)")
    print(f"{'model':12} {'mode':5} {'old':>7} {'new':>7} {'change %':>8}")
    for model, mode, x, y, change, flag in rows:
        cells = [f"{v:7.3f}" if v is not None else f"{'-':>7}" for v in (x, y)]
        pct = f"{change:+8.1f}" if change is not None else f"{'-':>8}"
        print(f"{model:12} {mode:5} {cells[0]} {cells[1]} {pct}  {flag}".rstrip())
    if not rows:
        print(f"(no {args.framework} / {args.reference} ratios in either record)")
    print(f"\n{regressions} regression(s) beyond {args.threshold:g} %")
    return 1 if regressions and args.fail_on_regression else 0


if __name__ == "__main__":
    sys.exit(main())
