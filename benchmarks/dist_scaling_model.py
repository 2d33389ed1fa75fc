r"""The alpha-beta cost model of a data-parallel step, its inputs measured here, and its predictions (docs page:
``docs/distributed_scaling.md``).

One step of P ranks costs the compute of the rank's batch plus the allreduce of the gradient (n bytes), minus the
part of the allreduce that overlaps the backward::

    T(P) = T_compute(b) + T_allreduce(n, P) - overlap
    T_allreduce(n, P) = 2 (P - 1) alpha + 2 (P - 1) / P * n * beta        (ring: reduce-scatter, then allgather)
    0 <= overlap <= min(T_allreduce, T_hide)   T_hide: the backward time left after the first bucket is ready

alpha is the latency of one message (seconds), beta the time per byte (1 / bandwidth). Speedup over one process:

* weak scaling (the per-rank batch b stays, the global batch grows to P b): S(P) = P T_compute(b) / T(P);
* strong scaling (the global batch B stays, each rank computes B / P): S(P) = T_compute(B) / T(P) with
  T_compute(B / P) in T(P).

Three stages; the first two measure (one thread per process), the third computes::

    export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MINIDL_NUM_THREADS=1
    python benchmarks/dist_scaling_model.py compute --models resnet20 cifar_cnn --json runs/compute.json
    mpiexec -n 2 python benchmarks/dist_scaling_model.py network --json runs/network.json
    python benchmarks/dist_scaling_model.py predict --compute runs/compute.json --network runs/network.json \
        --measured runs/bench_distributed.jsonl --json runs/scaling.json --figure docs/img/distributed/scaling.png

``compute`` times a step (forward, backward through DistributedDataParallel in a group of one, SGD step; the model
fused, as ``fit`` runs it) per model at the per-rank batches the predictions need, and T_hide. ``network`` times
ping-pong and allreduce over a sweep of sizes (8 B .. 64 MB) and fits alpha and beta by least squares on relative
errors. ``predict`` prints the markdown table of speedups at P = 2 .. 64 for the measured link and for the assumed
links of :data:`LINKS`, compares P = 2 with ``benchmarks/bench_distributed.py`` runs (JSON lines) if given, and draws
the figure. Only ``network`` needs mpiexec; ``predict`` needs neither MPI nor a model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

NODES = (2, 4, 8, 16, 32, 64)
#: Assumed link parameters (typical values, not measured here): latency alpha (s), seconds per byte beta.
LINKS = {
    "10 GbE (alpha 30 us, 1.25 GB/s)": (30e-6, 1 / 1.25e9),
    "100 Gb/s InfiniBand (alpha 2 us, 12.5 GB/s)": (2e-6, 1 / 12.5e9),
}
WEAK_BATCH, STRONG_BATCH = 128, 512  # per-rank batch of weak scaling; global batch of strong scaling
SIZES = tuple(2**k for k in range(3, 27, 2)) + (2**26,)  # 8 B .. 64 MB


# ---------------------------------------------------------------------------------------------- the model (pure)
def ring_allreduce_time(n_bytes: float, P: int, alpha: float, beta: float) -> float:
    """Seconds of a ring allreduce of ``n_bytes`` over ``P`` ranks: 2 (P-1) messages of n / P bytes each way."""
    if P < 1:
        raise ValueError(f"ring_allreduce_time: P must be at least 1, got {P}")
    return 0.0 if P == 1 else 2 * (P - 1) * alpha + 2 * (P - 1) / P * n_bytes * beta


def step_time(compute: float, allreduce: float, hide: float, overlap: str) -> float:
    """T(P) of one step: ``compute + allreduce - overlap``; ``overlap`` "none" (0) or "full" (min(allreduce, hide))."""
    if overlap not in ("none", "full"):
        raise ValueError(f"step_time: overlap must be 'none' or 'full', got {overlap!r}")
    return compute + allreduce - (min(allreduce, hide) if overlap == "full" else 0.0)


def weak_speedup(P: int, compute: float, hide: float, n_bytes: float, alpha: float, beta: float, overlap: str) -> float:
    """S(P) = P T_compute(b) / T(P) with the per-rank batch b fixed (``compute`` = T_compute(b))."""
    return P * compute / step_time(compute, ring_allreduce_time(n_bytes, P, alpha, beta), hide, overlap)


def strong_speedup(
    P: int, compute_1: float, compute_P: float, hide_P: float, n_bytes: float, alpha: float, beta: float, overlap: str
) -> float:
    """S(P) = T_compute(B) / T(P) with the global batch B fixed: ``compute_1`` = T_compute(B), ``compute_P`` =
    T_compute(B / P) and ``hide_P`` its T_hide."""
    return compute_1 / step_time(compute_P, ring_allreduce_time(n_bytes, P, alpha, beta), hide_P, overlap)


def fit_alpha_beta(sizes: Any, seconds: Any, messages: float, bytes_factor: float) -> tuple[float, float]:
    """Least squares for ``seconds ~ messages * alpha + bytes_factor * size * beta`` on relative errors (each row
    divided by its time, so 8 B and 64 MB weigh alike). Ping-pong (one way): messages 1, bytes_factor 1; ring
    allreduce on P ranks: 2 (P-1) and 2 (P-1) / P."""
    n, t = np.asarray(sizes, np.float64), np.asarray(seconds, np.float64)
    if n.shape != t.shape or n.ndim != 1 or len(n) < 2 or not np.all(t > 0):
        raise ValueError(f"fit_alpha_beta: needs >= 2 sizes and as many positive times, got {n.shape}, {t.shape}")
    A = np.stack([np.full_like(n, messages), bytes_factor * n], axis=1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    return float(alpha), float(beta)


def predict(
    compute: dict[str, Any], links: dict[str, tuple[float, float]], node_speedup: float = 1.0
) -> list[dict[str, Any]]:
    """Speedups at :data:`NODES` for every model of ``compute`` (the ``compute`` stage's record) and link.

    ``compute["models"][name]`` holds ``grad_bytes`` and ``batches``: {per-rank batch: {"step_s", "hide_s"}}, with
    the batches :data:`WEAK_BATCH` and :data:`STRONG_BATCH` / P for P in 1 and :data:`NODES`. ``node_speedup``: a
    what-if, a node that computes that many times faster than the measured process (its times divided by it).
    """
    rows = []
    for name, record in compute["models"].items():
        by_batch = {
            int(b): {k: v[k] / node_speedup for k in ("step_s", "hide_s")} for b, v in record["batches"].items()
        }
        n = record["grad_bytes"]
        for link, (alpha, beta) in links.items():
            for overlap in ("none", "full"):
                weak = by_batch[WEAK_BATCH]
                row = {"model": name, "link": link, "overlap": overlap, "weak": {}, "strong": {}}
                for P in NODES:
                    row["weak"][P] = weak_speedup(P, weak["step_s"], weak["hide_s"], n, alpha, beta, overlap)
                    part = by_batch[STRONG_BATCH // P]
                    row["strong"][P] = strong_speedup(
                        P, by_batch[STRONG_BATCH]["step_s"], part["step_s"], part["hide_s"], n, alpha, beta, overlap
                    )
                rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], scaling: str) -> str:
    """The speedups of ``rows`` (``scaling``: "weak" or "strong") as a markdown table, one row per model and link;
    a cell reads "no overlap - full overlap" where the two bounds differ (to one decimal)."""
    head = "| model | link | " + " | ".join(f"P={P}" for P in NODES) + " |"
    lines = [head, "|" + "---|" * (2 + len(NODES))]
    bounds = {(r["model"], r["link"], r["overlap"]): r[scaling] for r in rows}
    for model, link in dict.fromkeys((r["model"], r["link"]) for r in rows):
        low, high = bounds[model, link, "none"], bounds[model, link, "full"]
        cells = [
            f"{low[P]:.1f}" if f"{low[P]:.1f}" == f"{high[P]:.1f}" else f"{low[P]:.1f}-{high[P]:.1f}" for P in NODES
        ]
        lines.append(f"| {model} | {link} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- measurements
def measure_compute(
    models: list[str], batches: list[int], warmup: int, repeats: int, bucket_cap_mb: float
) -> dict[str, Any]:
    """Median seconds of a training step per model and per-rank batch, in a group of one (no communication), and
    T_hide, the backward time after the first bucket's gradients are all final."""
    import minidl
    from minidl import distributed as dist
    from minidl import models as zoo
    from minidl import nn, optim

    dist.init_process_group()
    be = minidl.get_backend()
    threads = os.environ.get("NUMBA_NUM_THREADS")
    out: dict[str, Any] = {"backend": be.name, "threads": threads, "bucket_cap_mb": bucket_cap_mb, "models": {}}
    for name in models:
        minidl.manual_seed(0)
        model = nn.fuse(zoo.get_model(name, num_classes=10), inplace=True)
        ddp = dist.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)
        last_of_first = ddp.buckets[0][-1]  # its gradient completes bucket 0 (buckets list backward order)
        owner = next(m for m in ddp.module.modules() if any(p is last_of_first for p in m.parameters(recurse=False)))
        ready: list[float] = []
        owner.register_full_backward_hook(lambda *_, ready=ready: ready.append(time.perf_counter()))
        optimizer, loss_fn = optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()
        record: dict[str, Any] = {
            "grad_bytes": int(sum(p.data.nbytes for p in ddp.parameters())),
            "buckets": len(ddp.buckets),
            "batches": {},
        }
        rng = np.random.default_rng(0)
        for batch in batches:
            x = be.asarray(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
            y = be.asarray(rng.integers(0, 10, batch))
            steps, hides = [], []
            for i in range(warmup + repeats):
                ready.clear()
                start = time.perf_counter()
                ddp.zero_grad()
                loss_fn(ddp(x), y)
                ddp.backward(loss_fn.backward())
                backward_end = time.perf_counter()
                optimizer.step()
                if i >= warmup:
                    steps.append(time.perf_counter() - start)
                    hides.append(backward_end - (ready[-1] if ready else backward_end))
            record["batches"][batch] = {"step_s": statistics.median(steps), "hide_s": statistics.median(hides)}
            print(f"{name} batch {batch}: step {record['batches'][batch]['step_s']:.4f} s", file=sys.stderr)
        out["models"][name] = record
    dist.destroy_process_group()
    return out


def measure_network(sizes: tuple[int, ...], seconds_per_size: float) -> dict[str, Any] | None:
    """Ping-pong (rank 0 <-> 1) and allreduce times over ``sizes`` bytes, and alpha, beta fitted to each; None on
    the ranks other than 0."""
    from mpi4py import MPI

    from minidl import distributed as dist

    dist.init_process_group()
    comm, rank, P = MPI.COMM_WORLD, dist.get_rank(), dist.get_world_size()
    if P < 2:
        raise SystemExit("network: run it under mpiexec -n 2 (or more): alone there is no network to measure")
    pingpong, allreduce = [], []
    for size in sizes:
        buffer = np.zeros(size // 4, np.float32)
        repeats = int(max(5, min(200, seconds_per_size / (20e-6 + size / 2e9))))
        times = []
        for _ in range(repeats):  # ping-pong: half the round trip
            comm.Barrier()
            start = time.perf_counter()
            if rank == 0:
                comm.Send(buffer, dest=1)
                comm.Recv(buffer, source=1)
            elif rank == 1:
                comm.Recv(buffer, source=0)
                comm.Send(buffer, dest=0)
            times.append((time.perf_counter() - start) / 2)
        pingpong.append(statistics.median(times))
        times = []
        for _ in range(repeats):  # the collective training uses
            comm.Barrier()
            start = time.perf_counter()
            dist.all_reduce(buffer)
            times.append(time.perf_counter() - start)
        allreduce.append(comm.allreduce(statistics.median(times), op=MPI.MAX))
    dist.destroy_process_group()
    if rank != 0:
        return None
    a_pp, b_pp = fit_alpha_beta(sizes, pingpong, 1, 1)
    a_ar, b_ar = fit_alpha_beta(sizes, allreduce, 2 * (P - 1), 2 * (P - 1) / P)
    return {
        "world_size": P, "sizes": list(sizes), "pingpong_s": pingpong, "allreduce_s": allreduce,
        "pingpong_fit": {"alpha": a_pp, "beta": b_pp}, "allreduce_fit": {"alpha": a_ar, "beta": b_ar},
        "load_average": os.getloadavg(),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------- predict stage
def check_against_measured(
    compute: dict[str, Any], alpha: float, beta: float, measured: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """P = 2 against ``bench_distributed.py`` runs: per model and global batch B, the predicted 2-process throughput
    (T_compute(B / 2) + ring allreduce at the measured alpha, beta; no overlap and full overlap) and the measured
    one (min / median / max over the rounds), with the measured 1-process throughput.

    Per round (the i-th 1-process and the i-th 2-process run of a model), the measured speedup and the one the model
    predicts from that round's 1-process step T_1, with the compute proportional to the batch:
    T_1 / (T_1 / 2 + T_allreduce) (no overlap). This cancels the load of the moment, which the compute stage cannot.
    """
    out = []
    for name in sorted({m["model"] for m in measured}):
        runs = [m for m in measured if m["model"] == name]
        B = runs[0]["global_batch"]
        record = compute["models"].get(name)
        if record is None or str(B // 2) not in {str(b) for b in record["batches"]}:
            continue
        part = {int(b): v for b, v in record["batches"].items()}[B // 2]
        T_ar = ring_allreduce_time(record["grad_bytes"], 2, alpha, beta)
        one = sorted(B / m["step_s"] for m in runs if m["world_size"] == 1)
        two = sorted(B / m["step_s"] for m in runs if m["world_size"] == 2)
        if not one or not two:
            continue
        rounds = zip(
            (m["step_s"] for m in runs if m["world_size"] == 1),
            (m["step_s"] for m in runs if m["world_size"] == 2),
            strict=False,
        )
        per_round = [{"measured": T1 / T2, "predicted": T1 / (T1 / 2 + T_ar)} for T1, T2 in rounds]
        out.append({
            "model": name, "global_batch": B, "allreduce_s": T_ar,
            "predicted_2": {o: B / step_time(part["step_s"], T_ar, part["hide_s"], o) for o in ("none", "full")},
            "measured_1": [one[0], statistics.median(one), one[-1]],
            "measured_2": [two[0], statistics.median(two), two[-1]],
            "speedup_per_round": per_round, "load_average": [m["load_average"][0] for m in runs],
        })  # fmt: skip
    return out


def draw(rows: list[dict[str, Any]], path: Path) -> None:
    """Speedup against P (log-x) per model, weak and strong scaling, per link (full-overlap bound solid, none
    dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = sorted({(r["model"], r["link"]) for r in rows})
    for ax, scaling in zip(axes, ("weak", "strong"), strict=True):
        ax.plot(NODES, NODES, color="0.6", lw=1, label="ideal (S = P)")
        for k, (model, link) in enumerate(series):
            for r in rows:
                if (r["model"], r["link"]) == (model, link):
                    style = "-" if r["overlap"] == "full" else "--"
                    label = f"{model}, {link.split(' (')[0]}" if r["overlap"] == "full" else None
                    ys = [r[scaling][P] for P in NODES]
                    ax.plot(NODES, ys, style, color=colors[k % len(colors)], marker="o", ms=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(NODES, [str(P) for P in NODES])
        ax.set_xlabel("P (nodes, one process each)")
        what = f"per-rank batch {WEAK_BATCH}" if scaling == "weak" else f"global batch {STRONG_BATCH}"
        ax.set_title(f"{scaling} scaling ({what})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("speedup S(P)  (solid: full overlap, dashed: none)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.png")
    fig.savefig(temporary, dpi=80)
    os.replace(temporary, path)
    plt.close(fig)


def write_json(record: dict[str, Any], path: Path) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, path)


def run_predict(args: argparse.Namespace) -> dict[str, Any]:
    compute = json.loads(Path(args.compute).read_text())
    network = json.loads(Path(args.network).read_text()) if args.network else None
    links = dict(LINKS)
    if network:
        fit = network["allreduce_fit"]
        links = {f"this machine, shared memory (alpha {fit['alpha'] * 1e6:.1f} us, {1 / fit['beta'] / 1e9:.1f} GB/s)": (
            fit["alpha"], fit["beta"])} | links  # fmt: skip
    rows = predict(compute, links, args.node_speedup)
    record: dict[str, Any] = {
        "compute": compute, "network": network, "links": links, "node_speedup": args.node_speedup, "predictions": rows
    }  # fmt: skip
    what = f", a node {args.node_speedup:g}x faster than the measured process" if args.node_speedup != 1 else ""
    print(f"## weak scaling (per-rank batch {WEAK_BATCH}{what})\n\n{markdown_table(rows, 'weak')}\n")
    print(f"## strong scaling (global batch {STRONG_BATCH}{what})\n\n{markdown_table(rows, 'strong')}\n")
    if args.measured and network:
        measured = [json.loads(line) for line in Path(args.measured).read_text().splitlines() if line.strip()]
        fit = network["allreduce_fit"]
        record["check"] = check = check_against_measured(compute, fit["alpha"], fit["beta"], measured)
        print("## P = 2 on this machine: predicted vs measured images/s (min / median / max)\n")
        print("| model | global batch | 1 process | 2 processes, measured | predicted (no overlap / full) |")
        print("|---|---|---|---|---|")
        for c in check:
            one, two = (" / ".join(f"{v:.0f}" for v in c[k]) for k in ("measured_1", "measured_2"))
            pred = " / ".join(f"{c['predicted_2'][o]:.0f}" for o in ("none", "full"))
            print(f"| {c['model']} | {c['global_batch']} | {one} | {two} | {pred} |")
        print("\n| model | speedup per round: measured (predicted from the round's 1-process step) |\n|---|---|")
        for c in check:
            rounds = ", ".join(f"{r['measured']:.2f} ({r['predicted']:.2f})" for r in c["speedup_per_round"])
            print(f"| {c['model']} | {rounds} |")
    if args.json:
        write_json(record, Path(args.json))
    if args.figure:
        draw(rows, Path(args.figure))
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    stages = parser.add_subparsers(dest="stage", required=True)
    c = stages.add_parser("compute", help="time a step per model and per-rank batch (no MPI launcher needed)")
    c.add_argument("--models", nargs="+", default=["resnet20", "cifar_cnn"], help="zoo models, e.g. airbench94")
    c.add_argument(
        "--batches", type=int, nargs="+",
        default=sorted({WEAK_BATCH, STRONG_BATCH} | {STRONG_BATCH // P for P in NODES} | {64}),
        help="per-rank batches (the predictions need the weak batch and the strong batch / P for P = 1 .. 64)",
    )  # fmt: skip
    c.add_argument("--warmup", type=int, default=2, help="untimed steps per batch (Numba compiles first)")
    c.add_argument("--repeats", type=int, default=5, help="timed steps per batch (the median is kept)")
    c.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP's bucket size (sets T_hide)")
    c.add_argument("--json", required=True, help="where to write the record")
    n = stages.add_parser("network", help="fit alpha, beta from ping-pong and allreduce (under mpiexec -n 2)")
    n.add_argument("--seconds-per-size", type=float, default=0.2, help="about how long to repeat each size")
    n.add_argument("--json", required=True, help="where rank 0 writes the record")
    p = stages.add_parser("predict", help="the speedup tables, the check at P = 2 and the figure (no MPI)")
    p.add_argument("--compute", required=True, help="the compute stage's JSON")
    p.add_argument("--network", help="the network stage's JSON (adds this machine's link and the check)")
    p.add_argument("--measured", help="bench_distributed.py JSON lines (1 and 2 processes) for the check at P = 2")
    p.add_argument("--node-speedup", type=float, default=1.0, help="what-if: nodes that many times faster")
    p.add_argument("--json", help="write the whole record there")
    p.add_argument("--figure", help="write the speedup figure (PNG) there")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.stage == "compute":
        record = measure_compute(args.models, args.batches, args.warmup, args.repeats, args.bucket_cap_mb)
        record["load_average"] = os.getloadavg()
    elif args.stage == "network":
        record = measure_network(SIZES, args.seconds_per_size)
    else:
        run_predict(args)
        return
    if record is not None:
        write_json(record, Path(args.json))
        print(json.dumps({k: v for k, v in record.items() if k not in ("sizes", "pingpong_s", "allreduce_s")}))


if __name__ == "__main__":
    main()
