"""Data-parallel throughput: the same global batch on 1 process and on P processes (one thread each), and the time
of one allreduce of the model's gradients.

Usage (the 'dist' extra; run it alone, then under mpiexec, and compare the two lines)::

    MINIDL_NUM_THREADS=1 OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_distributed.py
    MINIDL_NUM_THREADS=1 OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 mpiexec -n 2 python benchmarks/bench_distributed.py

What is measured, on the current backend (Numba by default), for ``--model`` (a zoo model: resnet20, cifar_cnn,
...) with a global batch of ``--batch`` random 32x32 images split evenly over the P ranks: ``--warmup`` untimed SGD
steps, then ``--steps`` timed ones through :class:`~minidl.distributed.DistributedDataParallel` (fused, as ``fit``
runs it); the median step time gives images per second (global batch / step time). Then ``--steps`` allreduces of one
float32 buffer of the model's gradient size, alone (the communication a step needs if none of it overlapped the
backward).
Rank 0 prints one JSON line. A busy machine slows every number; the load average is printed with them.
``benchmarks/dist_scaling_model.py predict --measured`` compares these lines with the cost model's prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

import minidl
from minidl import distributed as dist
from minidl import models, nn, optim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=models.list_models(), help="a zoo model")
    parser.add_argument("--batch", type=int, default=128, help="the global batch, split over the ranks")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    dist.init_process_group()
    P, rank = dist.get_world_size(), dist.get_rank()
    if args.batch % P:
        raise SystemExit(f"--batch {args.batch} is not divisible by the {P} ranks")
    minidl.manual_seed(0)
    model = nn.fuse(models.get_model(args.model, num_classes=10), inplace=True)
    ddp = dist.DistributedDataParallel(model)
    optimizer, loss_fn = optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()
    rng = np.random.default_rng(rank)
    be = minidl.get_backend()
    x = be.asarray(rng.standard_normal((args.batch // P, 3, 32, 32)).astype(np.float32))
    y = be.asarray(rng.integers(0, 10, args.batch // P))
    times = []
    for i in range(args.warmup + args.steps):
        dist.barrier()
        start = time.perf_counter()
        ddp.zero_grad()
        loss_fn(ddp(x), y)
        ddp.backward(loss_fn.backward())
        optimizer.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    gradient = np.zeros(sum(p.size for p in ddp.parameters()), np.float32)
    reduce_times = []
    for _ in range(args.steps):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(gradient)
        reduce_times.append(time.perf_counter() - start)
    if rank == 0:
        print(json.dumps({
            "model": args.model, "backend": be.name, "world_size": P, "global_batch": args.batch,
            "step_s": round(step, 4), "images_per_s": round(args.batch / step, 1),
            "gradient_mb": round(gradient.nbytes / 2**20, 3), "buckets": len(ddp.buckets),
            "allreduce_s": round(statistics.median(reduce_times), 5), "load_average": os.getloadavg(),
        }), flush=True)  # fmt: skip
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
