"""Merge ``bench_train.py`` records of different models, run at the same time on one machine, into one record.

Usage::

    python benchmarks/merge_records.py OUT.json r/airbench94.json r/resnet20.json ... [--note TEXT] [--commit SHA]

For a machine with many cores, where each model ran in its own process pinned to its own cores (say
``taskset -c 0,1 python benchmarks/bench_train.py --models resnet20 --threads 2 --rounds 3 --json r/resnet20.json``,
the next model on cores 2,3, and so on, all at once): one record of the whole zoo, which ``compare_bench.py`` reads
like any other. The inputs must come from the same CPU, thread count and versions (else the merge is refused, naming
the field that differs); each model must appear in one input only. The merged record keeps the first input's
machine, with the models' load averages from the earliest start and the latest end, ``args.models`` listing every
model, and ``note`` (say, how the models shared the machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import RecordError, load_record, write_record  # noqa: E402

SAME = ("cpu", "avx512f", "threads", "python", "numpy", "numba", "torch", "minidl_commit", "minidl_dirty")


def merge(records: list[dict[str, Any]], names: list[str], note: str | None) -> dict[str, Any]:
    """The merged record (see the module docstring); ``names`` name the inputs in error messages."""
    first = records[0]
    for name, record in zip(names[1:], records[1:], strict=True):
        for field in SAME:
            if record["machine"].get(field) != first["machine"].get(field):
                raise RecordError(
                    f"{name}: machine {field} is {record['machine'].get(field)!r}, but {names[0]} has "
                    f"{first['machine'].get(field)!r}: only records of one machine and one set of versions merge"
                )
    owner: dict[str, str] = {}
    for name, record in zip(names, records, strict=True):
        for model in record["args"]["models"]:
            if model in owner:
                raise RecordError(f"{name}: model {model!r} is also in {owner[model]}")
            owner[model] = name
    merged = dict(first, machine=dict(first["machine"]), args=dict(first["args"]))
    merged["created"] = max(r["created"] for r in records)
    merged["args"]["models"] = [m for r in records for m in r["args"]["models"]]
    for key in ("batches", "forward_flops_per_image"):
        merged[key] = {k: v for r in records for k, v in r[key].items()}
    merged["results"] = [x for r in records for x in r["results"]]
    merged["ratios"] = [x for r in records for x in r["ratios"]]
    machines = [r["machine"] for r in records]
    merged["machine"]["loadavg_start"] = min((m["loadavg_start"] for m in machines), key=lambda v: v[0])
    merged["machine"]["loadavg_end"] = max((m.get("loadavg_end", [0.0]) for m in machines), key=lambda v: v[0])
    if note:
        merged["note"] = note
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the merged record to write")
    parser.add_argument("inputs", type=Path, nargs="+", help="bench_train.py records, one or more models each")
    parser.add_argument("--note", default=None, help="how the runs shared the machine, kept as the record's note")
    args = parser.parse_args(argv)
    try:
        records = [load_record(p) for p in args.inputs]
        merged = merge(records, [str(p) for p in args.inputs], args.note)
    except RecordError as exc:
        print(f"merge_records.py: {exc}", file=sys.stderr)
        return 2
    write_record(merged, args.out)
    print(f"wrote {args.out}: {len(merged['args']['models'])} models from {len(records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
