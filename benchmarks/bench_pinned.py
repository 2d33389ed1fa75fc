"""Run ``bench_train.py`` for several models at once on a machine with many cores, each model in its own process
pinned to its own cores, and merge their records into one (``merge_records.py``).

Usage (Linux; every option after ``--`` goes to each ``bench_train.py``)::

    python benchmarks/bench_pinned.py --models all --out zoo.json -- --frameworks numba torch --rounds 3
    python benchmarks/bench_pinned.py --models resnet20 resnet56 --record -- --frameworks numba torch \\
        --rounds 3 --channels-last --baseline ../before

Each model gets ``--cores-per-model`` CPUs (default 2, and ``--threads`` that many) of the ones this process may
run on (``os.sched_getaffinity``: logical CPUs, so with hyper-threading two processes may share a physical core),
the lowest first; as many models run at once as there are groups of CPUs, the rest in later waves. The options
after ``--`` are checked with ``bench_train.py``'s own parser before anything starts (``-- --help`` shows them);
``--models``, ``--threads``, ``--json`` and ``--record`` are this script's to set and are refused there. The record
says how the models shared the machine (its ``note``, with ``--note`` added): side by side they share the
last-level cache and the memory bandwidth, so a model's figures can differ from a run alone (the same-run ratios
against PyTorch and ``--baseline`` hold within each process). On the 16-core device machine the whole zoo takes
one wave of 7 processes on 14 CPUs: one command, a few minutes.

A process that fails stops the merge: its last output lines are printed and the exit status is 1. Nothing here
looks at the timings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import BENCH_MODELS  # noqa: E402
from _record import RecordError, default_record_path, load_record, write_record  # noqa: E402
from bench_train import build_parser, model_list  # noqa: E402
from merge_records import merge  # noqa: E402

#: bench_train.py's options this script sets for each process, and what to use instead
OWN = {"models": "give --models before the '--'", "threads": "--cores-per-model sets it", "json": "use --out",
       "record": "give --record before the '--'", "worker": "internal"}  # fmt: skip


def check_passthrough(passthrough: list[str]) -> None:
    """Parse the options for bench_train.py with its own parser (so ``-- --help`` shows its help, and a wrong option
    fails here, before any process starts), and refuse those this script sets, in any spelling argparse accepts
    (``--threads=3``, ``--thread 3``)."""
    parser = build_parser()
    parser.set_defaults(**dict.fromkeys(OWN))
    given = vars(parser.parse_args(passthrough))
    for name, instead in OWN.items():
        if given[name] not in (None, False):
            raise SystemExit(f"bench_pinned.py: --{name} after '--': each process's is set here ({instead})")


def core_groups(cores: list[int], per_model: int) -> list[list[int]]:
    """The available ``cores`` cut into groups of ``per_model`` (the lowest first; a remainder is left idle)."""
    return [cores[i : i + per_model] for i in range(0, len(cores) - per_model + 1, per_model)]


def waves(models: list[str], groups: int) -> list[list[str]]:
    """The models in waves of at most ``groups`` (one group of cores each), in the given order."""
    return [models[i : i + groups] for i in range(0, len(models), groups)]


def _run_wave(models: list[str], groups: list[list[int]], passthrough: list[str], folder: Path) -> list[Path]:
    """Start one bench_train.py per model on its group of cores, wait for all; the records' paths."""
    jobs = []
    for model, cores in zip(models, groups, strict=False):
        out, log = folder / f"{model}.json", folder / f"{model}.log"
        cmd = [sys.executable, str(HERE / "bench_train.py"), *passthrough]
        cmd += ["--models", model, "--threads", str(len(cores)), "--json", str(out)]  # (after: these win)
        print(f"  {model}: cores {','.join(map(str, cores))}", flush=True)
        handle = log.open("w")
        try:
            proc = subprocess.Popen(
                cmd, stdout=handle, stderr=subprocess.STDOUT,
                preexec_fn=lambda c=tuple(cores): os.sched_setaffinity(0, c),
            )  # fmt: skip
        except BaseException:
            handle.close()
            for _, started, other, _, _ in jobs:  # stop the ones already running
                started.kill()
                started.wait()
                other.close()
            raise
        jobs.append((model, proc, handle, out, log))
    failed = []
    for model, proc, handle, _, log in jobs:
        proc.wait()
        handle.close()
        if proc.returncode != 0:
            failed.append((model, proc.returncode, log))
    for model, code, log in failed:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        print(f"bench_pinned.py: {model} exited with {code}; the end of its output:\n{tail}", file=sys.stderr)
    if failed:
        raise SystemExit(1)
    return [out for _, _, _, out, _ in jobs]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="bench_pinned.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [-- bench_train.py options (not --models, --threads, --json, --record)]",
    )  # fmt: skip
    parser.add_argument("--models", nargs="+", default=["all"], choices=[*BENCH_MODELS, "all"])
    parser.add_argument(
        "--cores-per-model", type=int, default=2, help="CPUs (logical: os.sched_getaffinity) and threads per model"
    )
    parser.add_argument("--out", type=Path, help="the merged record to write")
    parser.add_argument("--record", action="store_true", help="write it to benchmarks/history/<date>-<cpu>.json")
    parser.add_argument("--note", default="", help="added to the record's note (how the machine was shared)")
    args = parser.parse_args(own)
    check_passthrough(passthrough)
    if args.out is None and not args.record:
        parser.error("name a record to write: --out FILE, --record, or both")
    if args.cores_per_model < 1:
        parser.error(f"--cores-per-model must be a positive integer, got {args.cores_per_model}")
    if not hasattr(os, "sched_setaffinity"):
        parser.error("pinning processes to cores needs Linux (os.sched_setaffinity)")
    models = model_list(args.models)
    cores = sorted(os.sched_getaffinity(0))
    groups = core_groups(cores, args.cores_per_model)
    if not groups:
        parser.error(f"{len(cores)} CPUs available, fewer than --cores-per-model {args.cores_per_model}")
    plan = waves(models, len(groups))
    per = f"{args.cores_per_model} CPU{'s' if args.cores_per_model > 1 else ''}"
    at_once = min(len(models), len(groups))
    print(f"{len(models)} model(s), {per} each, {at_once} at once: {len(plan)} wave(s)")
    with tempfile.TemporaryDirectory(prefix="bench_pinned_") as tmp:
        paths = []
        for number, wave in enumerate(plan, 1):
            print(f"wave {number}/{len(plan)}", flush=True)
            paths += _run_wave(wave, groups, passthrough, Path(tmp))
        note = (
            f"each model in its own bench_train.py pinned to its own {per} (bench_pinned.py), {at_once} at once of "
            f"{len(cores)} CPUs available, in {len(plan)} wave(s)"
        )
        if at_once > 1:
            note += ": side by side they shared the last-level cache and the memory bandwidth"
        try:
            merged = merge([load_record(p) for p in paths], [p.name for p in paths], f"{note}. {args.note}".strip())
        except RecordError as exc:
            print(f"bench_pinned.py: {exc}", file=sys.stderr)
            return 2
    for path in [p for p in (args.out, default_record_path(merged) if args.record else None) if p is not None]:
        write_record(merged, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
