"""Merge ``bench_train.py`` records of different models, run at the same time on one machine, into one record.

Usage::

    python benchmarks/merge_records.py OUT.json r/airbench94.json r/resnet20.json ... [--note TEXT] [--force]

For a machine with many cores, where each model ran in its own process pinned to its own cores (say
``taskset -c 0,1 python benchmarks/bench_train.py --models resnet20 --threads 2 --rounds 3 --json r/resnet20.json``,
the next model on cores 2,3, and so on, all at once): one record of the whole zoo, which ``compare_bench.py`` reads
like any other. The inputs must come from the same CPU, versions and run settings (frameworks, threads, batch,
warm-up, rounds, fusion), else the merge is refused, naming the field that differs; each model must appear in one
input only. The merged record keeps the first input's machine with the lowest 1-minute load average of the starts
and the highest of the ends, ``args.models`` listing every model, ``args.repeats`` per model (``{model: repeats}``:
the inputs may time different numbers of steps) and ``note`` (say, how the models shared the machine). OUT must not
be one of the inputs, and an existing OUT is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import RecordError, load_record, write_record  # noqa: E402

SAME = ("cpu", "avx512f", "threads", "python", "numpy", "numba", "torch", "minidl_commit", "minidl_dirty")
SAME_ARGS = ("frameworks", "threads", "batch", "warmup", "numpy_repeats", "rounds", "no_fuse")


# what a merge reads beyond what load_record checks: (where, field), where "" is the record itself
READ = (
    ("", "args"), ("", "batches"), ("", "forward_flops_per_image"), ("", "created"),
    ("machine", "loadavg_start"), ("machine", "loadavg_end"), ("args", "models"), ("args", "repeats"),
)  # fmt: skip


def merge(records: list[dict[str, Any]], names: list[str], note: str | None) -> dict[str, Any]:
    """The merged record (see the module docstring); ``names`` name the inputs in error messages."""
    for name, record in zip(names, records, strict=True):
        for where, field in READ:
            if field not in (record.get(where, {}) if where else record):
                raise RecordError(f"{name}: an incomplete bench_train.py record (no {field!r} field)")
    return _merge(records, names, note)


def _merge(records: list[dict[str, Any]], names: list[str], note: str | None) -> dict[str, Any]:
    first = records[0]
    for name, record in zip(names[1:], records[1:], strict=True):
        for where, fields in (("machine", SAME), ("args", SAME_ARGS)):
            for field in fields:
                if record[where].get(field) != first[where].get(field):
                    raise RecordError(
                        f"{name}: {where} {field} is {record[where].get(field)!r}, but {names[0]} has "
                        f"{first[where].get(field)!r}: only records of one machine, one set of versions and one "
                        "run setting merge"
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
    merged["args"]["repeats"] = {m: r["args"]["repeats"] for r in records for m in r["args"]["models"]}
    merged["args"]["json"], merged["args"]["record"] = None, False
    for key in ("batches", "forward_flops_per_image"):
        merged[key] = {k: v for r in records for k, v in r[key].items()}
    merged["results"] = [x for r in records for x in r["results"]]
    merged["ratios"] = [x for r in records for x in r["ratios"]]
    machines = [r["machine"] for r in records]
    merged["machine"]["loadavg_start"] = min((m["loadavg_start"] for m in machines), key=lambda v: v[0])
    merged["machine"]["loadavg_end"] = max((m["loadavg_end"] for m in machines), key=lambda v: v[0])
    if note:
        merged["note"] = note
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the merged record to write")
    parser.add_argument("inputs", type=Path, nargs="+", help="bench_train.py records, one or more models each")
    parser.add_argument("--note", default=None, help="how the runs shared the machine, kept as the record's note")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    try:
        if any(args.out.resolve() == p.resolve() for p in args.inputs):
            raise RecordError(f"{args.out}: the output is also an input; name a new file first (OUT INPUT...)")
        if args.out.exists() and not args.force:
            raise RecordError(f"{args.out}: exists; add --force to replace it (the usage is OUT INPUT...)")
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
