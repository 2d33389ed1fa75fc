"""CIFAR-10 speedrun: Keller Jordan's airbench94 recipe (arXiv 2404.00498) in minidl's public API.

airbench reaches 94 % test accuracy in 9.9 epochs (0.36 PFLOP; 3.8 s on an A100). Every ingredient is a minidl
feature, used here in order (``docs/speedrun.md`` explains each one):

1. the whole training set as one normalized float array, batches drawn by index;
2. ``models.airbench94``: Dirac-initialized convs, frozen-scale BatchNorm, GELU, a fixed 1/9 logit scale;
3. ``nn.init.patch_whitening_``: the first conv whitens 2x2 patches (from 5,000 training images), then stays frozen;
   its bias trains for the first 3 epochs only;
4. label smoothing 0.2 on a summed cross-entropy; Nesterov SGD (momentum 0.85) on two param groups, the BatchNorm
   biases with a 64x learning rate; airbench's decoupled lr / weight decay turned into SGD's;
5. ``optim.lr_scheduler.LambdaLR``: a triangular schedule, 0.2 -> 1 over 23 % of the steps, then down to 0.07;
6. ``optim.Lookahead``: every 5 steps the weights (and BatchNorm statistics) are pulled to their slow average, with
   a weight that grows during training; the average is the final model;
7. ``transforms.AlternatingFlip`` (every image mirrored in every other epoch) and ``transforms.RandomTranslate``
   (2 pixels, reflect padding);
8. test-time augmentation, ``transforms.tta_predict(..., "flip_translate", average="logits")``: 6 views, weighted.

Data: ``--data-dir``, else ``$MINIDL_DATA_DIR``, else minidl's dataset cache; without CIFAR-10 the script trains on
the 2,000 + 500 images embedded in minidl, and says so (a ``--data-dir`` without it is an error). Writes
``history-run<r>.json``/``.csv``, ``curves-run<r>.png`` (with matplotlib), ``model-run<r>.npz`` (each run's weights)
and ``results.json`` to ``--out``; prints one JSON line
per run (``RESULT {...}``).

Usage:
    python examples/speedrun_cifar10.py --quick                 # a few hundred small steps: the CI smoke run
    python examples/speedrun_cifar10.py --data-dir ~/data --runs 2 --out runs/speedrun   # the full recipe, twice
    python examples/speedrun_cifar10.py --widths 128 384 384 --epochs 15                 # airbench95's network
    mpiexec -n 2 python -m mpi4py examples/speedrun_cifar10.py --distributed --quick     # on 2 processes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from _cli import HelpFormatter, add_distributed_arguments, start_distributed

import minidl
from minidl import models, nn, optim, train
from minidl import transforms as T
from minidl.data.datasets import CIFAR10, CIFAR10Sample
from minidl.train.history import atomic_write_text

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # per-channel statistics of the training set
# airbench94's hyperparameters, in its decoupled form (per 1024 examples; see make_optimizer)
HYP = {
    "lr": 11.5,
    "momentum": 0.85,
    "weight_decay": 0.0153,
    "bias_scaler": 64.0,
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,
    "translate": 2,
    "lookahead_every": 5,
}


def load_cifar10(data_dir: str | None, quick: bool) -> tuple[dict[str, np.ndarray], str]:
    """uint8 images (N, 32, 32, 3) and int labels of both splits, and a sentence saying where they came from."""
    try:
        train_set, test_set = CIFAR10(data_dir, True), CIFAR10(data_dir, False)
        source = f"CIFAR-10 from {train_set.root}"
        n_train, n_test = (5000, 1000) if quick else (len(train_set), len(test_set))
    except FileNotFoundError:
        if data_dir is not None:  # asked for by name: not found is an error, not a quiet switch to the sample
            raise
        train_set, test_set = CIFAR10Sample(True), CIFAR10Sample(False)
        source = "the embedded CIFAR-10 sample (CIFAR-10 itself was not found: pass --data-dir or set MINIDL_DATA_DIR)"
        n_train, n_test = len(train_set), len(test_set)
    data = {
        "train_images": train_set.data[:n_train],
        "train_labels": np.asarray(train_set.targets[:n_train], np.int64),
        "test_images": test_set.data[:n_test],
        "test_labels": np.asarray(test_set.targets[:n_test], np.int64),
    }
    return data, f"{source}: {n_train} train / {n_test} test images"


def normalize(images: np.ndarray) -> object:
    """(N, 32, 32, 3) uint8 -> (N, 3, 32, 32) float32, standardized per channel, once, on the current backend."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    x = (x - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None]
    return minidl.get_backend().asarray(np.ascontiguousarray(x))


def make_optimizer(model: nn.Module, batch_size: int) -> optim.SGD:
    """Nesterov SGD with airbench's two param groups.

    airbench states lr and weight decay per 1024 examples, with the step size decoupled from the momentum: for
    constant gradients Nesterov SGD moves (1 + 1 / (1 - momentum)) times the gradient per step, so SGD's lr is the
    stated one over 1024 * (1 + 1 / (1 - momentum)). The weight decay, given as wd / lr per group, is lr-independent.
    """
    kilostep_scale = 1024 * (1 + 1 / (1 - HYP["momentum"]))
    lr = HYP["lr"] / kilostep_scale
    wd = HYP["weight_decay"] * batch_size / kilostep_scale
    lr_biases = lr * HYP["bias_scaler"]
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    norm_biases = [p for name, p in trained if ".norm" in name]  # the BatchNorm biases (their scales are frozen)
    others = [p for name, p in trained if ".norm" not in name]
    groups = [
        {"params": norm_biases, "lr": lr_biases, "weight_decay": wd / lr_biases},
        {"params": others, "lr": lr, "weight_decay": wd / lr},
    ]
    return optim.SGD(groups, momentum=HYP["momentum"], nesterov=True)


def triangular(total_steps: int):
    """The lr factor of step t: 0.2 -> 1 over the first 23 % of the steps, then linearly down to 0.07."""
    warmup = max(1, int(total_steps * 0.23))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.2 + 0.8 * step / warmup
        return 1.0 - 0.93 * (step - warmup) / max(1, total_steps - warmup)

    return factor


def accuracy(model: nn.Module, images: object, labels: np.ndarray, tta: int) -> float:
    """Test accuracy with no TTA (0), the mirror (1), or mirror + two 1-pixel translations (2)."""
    views = ("none", "flip", "flip_translate")[tta]
    model.eval()
    logits = T.tta_predict(model, images, views, batch_size=500, average="logits")
    model.train()
    return float((minidl.to_numpy(logits).argmax(axis=1) == labels).mean())


def train_run(run: int, args: argparse.Namespace, data: dict, out: Path, dist=None) -> tuple[dict, nn.Module]:
    """One run of the recipe. With ``dist`` (``--distributed``) every process draws the same global batches (the
    same seed) and trains on its slice of each, ``index[rank::P]``; DistributedDataParallel averages the gradients
    and SyncBatchNorm the batch statistics, so the P processes take the steps of one process with the global batch.
    """
    seed = args.seed + run
    minidl.manual_seed(seed)
    rng = np.random.default_rng(seed)  # the data order and the flips: the same on every process
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    main_process = rank == 0
    train_images, train_labels = normalize(data["train_images"]), data["train_labels"]
    test_images, test_labels = normalize(data["test_images"]), data["test_labels"]
    n, batch = len(train_labels), args.batch_size
    steps_per_epoch = n // batch  # the last incomplete batch is dropped
    if steps_per_epoch == 0:
        raise SystemExit(f"--batch-size {batch} is larger than the {n} training images")
    total_steps = math.ceil(steps_per_epoch * args.epochs)

    start = time.perf_counter()
    model = models.airbench94(num_classes=10, widths=args.widths)
    nn.init.patch_whitening_(model.whiten.weight, train_images[:5000])
    net = model  # what trains: the model, or its data-parallel wrapper
    if dist:
        if args.sync_bn is not False:
            model = dist.SyncBatchNorm.convert_sync_batchnorm(model)
        net = dist.DistributedDataParallel(model)
    optimizer = make_optimizer(model, batch)
    scheduler = optim.lr_scheduler.LambdaLR(optimizer, triangular(total_steps))
    lookahead = optim.Lookahead(optimizer, k=HYP["lookahead_every"], alpha=1.0, buffers=model.buffers())
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="sum")
    flip = T.AlternatingFlip(n, generator=rng)
    shifts = np.random.default_rng([seed, rank]) if dist else rng  # each process shifts its own images
    translate = T.RandomTranslate(HYP["translate"], padding_mode="reflect", generator=shifts)

    history, step, data_seconds, eval_seconds = train.History(), 0, 0.0, 0.0
    for epoch in range(math.ceil(args.epochs)):
        model.whiten.bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        flip.set_epoch(epoch)
        order = rng.permutation(n)
        loss_sum = correct = seen = 0.0
        for i in range(steps_per_epoch):
            tick = time.perf_counter()
            index = order[i * batch : (i + 1) * batch][rank::world]  # this process's slice of the global batch
            x = translate(flip(train_images[index], index))
            y = train_labels[index]
            data_seconds += time.perf_counter() - tick
            logits = net(x)
            loss = loss_fn(logits, y)
            lookahead.zero_grad()
            # the loss is a sum over the batch and DDP averages over the P processes: x P gives the global sum's
            # gradient, as one process would compute it
            net.backward(loss_fn.backward() * world if world > 1 else loss_fn.backward())
            step += 1
            lookahead.alpha = 1.0 - 0.95**5 * (step / total_steps) ** 3  # the slow weights' pull grows
            lookahead.step()  # SGD step; every 5th step also the Lookahead average
            scheduler.step()
            loss_sum += float(loss)
            correct += float((minidl.to_numpy(logits).argmax(axis=1) == y).sum())
            seen += len(index)
            if step >= total_steps:
                break
        if step >= total_steps:
            lookahead.sync(alpha=0.0)  # the end: the model takes the averaged (slow) weights
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen}
        if main_process and args.val_every and ((epoch + 1) % args.val_every == 0 or step >= total_steps):
            tick = time.perf_counter()
            record["val_accuracy"] = accuracy(model, test_images, test_labels, tta=0)
            eval_seconds += time.perf_counter() - tick
        record.update(lr=optimizer.param_groups[1]["lr"], time=time.perf_counter() - start)
        history.append(record)
        if not main_process:
            continue  # rank 0 evaluates, prints and writes
        history.save(out / f"history-run{run}.json")
        val = f"  val_acc {record['val_accuracy']:.4f}" if "val_accuracy" in record else ""
        print(
            f"run {run} epoch {epoch + 1}/{math.ceil(args.epochs)}  train_loss {record['train_loss']:.4f}  "
            f"train_acc {record['train_accuracy']:.4f}{val}  {record['time']:.0f} s",
            flush=True,
        )
    train_seconds = time.perf_counter() - start - eval_seconds
    if not main_process:
        return {}, model
    tick = time.perf_counter()
    acc = accuracy(model, test_images, test_labels, tta=0)
    acc_tta = accuracy(model, test_images, test_labels, tta=args.tta) if args.tta else acc
    final_eval_seconds = time.perf_counter() - tick
    history.save(out / f"history-run{run}.csv")
    result = {
        "run": run,
        "seed": seed,
        "steps": step,
        "epochs": args.epochs,
        "batch_size": batch,
        "processes": world,
        "widths": list(args.widths),
        "test_accuracy": acc,
        "test_accuracy_tta": acc_tta,
        "tta_level": args.tta,
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "final_eval_seconds": round(final_eval_seconds, 1),
    }
    try:
        train.plot_history(history, out / f"curves-run{run}.png", title=f"airbench94 run {run}")
    except ImportError:
        pass  # matplotlib is optional (pip install minidl[viz])
    return result, model


def _quiet(*args: object, **kwargs: object) -> None:
    """print on the processes other than rank 0 under --distributed."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", help="folder holding CIFAR-10 (default: $MINIDL_DATA_DIR, then the cache)")
    parser.add_argument(
        "--epochs",
        type=float,
        help="passes over the training set, may be fractional (default 9.9, airbench's; --quick: 8 on the sample, "
        "3 on CIFAR-10)",
    )
    parser.add_argument("--batch-size", type=int, help="images per step (default 1024; --quick: 64)")
    parser.add_argument(
        "--widths", type=int, nargs=3, help="channels of the 3 conv groups (default 64 256 256; --quick: 16 32 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of run 0 (run r uses seed + r)")
    parser.add_argument("--runs", type=int, default=1, help="independent runs; the mean accuracy is reported")
    parser.add_argument(
        "--tta", type=int, choices=(0, 1, 2), default=2, help="test-time augmentation: none, mirror, mirror+translate"
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=1,
        help="evaluate (no TTA) every N epochs (and after the last); 0: not during training",
    )
    parser.add_argument(
        "--backend", help="array backend (default: numba where installed): " + ", ".join(minidl.available_backends())
    )
    parser.add_argument("--out", default="runs/speedrun", help="output folder")
    parser.add_argument(
        "--quick", action="store_true", help="a small network on few images: a few hundred steps, for CI"
    )
    add_distributed_arguments(parser)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if args.epochs is not None and not args.epochs > 0:
        parser.error(f"--epochs must be > 0, got {args.epochs}")
    if args.val_every < 0:
        parser.error(f"--val-every must be >= 0, got {args.val_every}")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    args.batch_size = args.batch_size or (64 if args.quick else 1024)
    if args.sync_bn is not None and not args.distributed:
        parser.error("--sync-bn and --no-sync-bn go with --distributed")
    dist = start_distributed(parser, args) if args.distributed else None
    log = _quiet if dist and not dist.is_main_process() else print  # rank 0 prints
    args.widths = tuple(args.widths or ((16, 32, 32) if args.quick else (64, 256, 256)))
    if args.backend:
        minidl.set_backend(args.backend)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    try:
        data, source = load_cifar10(args.data_dir, args.quick)
    except FileNotFoundError as err:
        parser.error(f"--data-dir {args.data_dir}: {err}")
    log(f"data: {source}")
    if args.epochs is None:  # --quick: about 240 steps of 64 on the 2,000-image sample or on 5,000 CIFAR-10 images
        args.epochs = (8.0 if len(data["train_labels"]) <= 2000 else 3.0) if args.quick else 9.9
    log(
        f"airbench94 widths {args.widths}, batch {args.batch_size}, {args.epochs} epochs, {args.runs} run(s), "
        f"TTA level {args.tta}; backend {minidl.get_backend().name}, {minidl.get_num_threads()} threads"
    )
    results = []
    for run in range(args.runs):
        result, model = train_run(run, args, data, out, dist)
        if dist and not dist.is_main_process():
            continue
        results.append(result)
        print("RESULT " + json.dumps(result), flush=True)
        minidl.save(model.state_dict(), out / f"model-run{run}.npz")
    if dist:
        dist.destroy_process_group()
        if not results:  # not rank 0
            return
    accs = [r["test_accuracy_tta"] for r in results]
    summary = {
        "data": source,
        "backend": minidl.get_backend().name,
        "runs": results,
        "mean_test_accuracy_tta": float(np.mean(accs)),
        "std_test_accuracy_tta": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
        "mean_wall_seconds": float(np.mean([r["wall_seconds"] for r in results])),
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2))
    print(
        f"test accuracy: {np.mean([r['test_accuracy'] for r in results]):.4f} without TTA, "
        f"{summary['mean_test_accuracy_tta']:.4f} with TTA level {args.tta} (mean of {len(results)} run(s)); "
        f"wall {summary['mean_wall_seconds']:.0f} s per run; outputs in {out}{os.sep}"
    )


if __name__ == "__main__":
    main()
