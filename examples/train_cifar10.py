"""Train a CNN from the model zoo on CIFAR-10 (or on minidl's embedded sample of it when CIFAR-10 is not found).

Data: ``--data-dir``, else ``$MINIDL_DATA_DIR``, else minidl's dataset cache (``~/.cache/minidl/datasets``); a folder
counts when it (or its ``cifar-10/`` subfolder) holds the binary or python version, extracted or as the ``.tar.gz``.
Without CIFAR-10 the script trains on the 2,000 + 500 real CIFAR-10 images embedded in minidl, and says so.

Recipe: random crop with 4 pixels of padding + horizontal flip (opt-in: Cutout, Mixup, CutMix, label smoothing),
SGD with Nesterov momentum and weight decay, a linear warm-up then cosine decay per step. Writes the history
(JSON and CSV), checkpoints (``last.npz``, ``best.npz``), the learning curves (PNG, if matplotlib is installed) and
``results.json`` to ``--out``; ``--resume`` continues a run exactly where it stopped.

Data-parallel (``--distributed``, needs ``pip install "minidl[dist]"``): under ``mpiexec -n P`` each process trains
on its shard of the data with ``--batch-size / P`` images per step, the gradients are averaged over the processes
(DistributedDataParallel), BatchNorm becomes SyncBatchNorm (``--no-sync-bn``: not), and only rank 0 prints and
writes files. The global batch, so the learning rate, stays that of one process. See docs/distributed.md.

Usage:
    python examples/train_cifar10.py --quick                  # the README's demo: a few minutes on 2 cores
    python examples/train_cifar10.py --data-dir ~/data --model resnet20 --epochs 60 --out runs/r20
    python examples/train_cifar10.py --out runs/r20 --resume  # continue after an interruption
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 mpiexec -n 2 python examples/train_cifar10.py --quick --distributed
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _cli import (
    HelpFormatter,
    add_distributed_arguments,
    check_same_schedule,
    data_parallel,
    evaluate_distributed,
    non_negative_int,
    positive_int,
    start_distributed,
)

import minidl
from minidl import models, nn, optim, train
from minidl import transforms as T
from minidl.data import DataLoader, Subset
from minidl.data.datasets import CIFAR10, CIFAR10Sample

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # per-channel statistics of the training set
# Peak learning rates. cifar_cnn and lenet5 end in a Linear layer on 2,048 (400) raw features, not on globally pooled
# ones: with lr 0.05 their logits explode within a dozen steps, in PyTorch exactly as here.
DEFAULT_LR = {"cifar_cnn": 0.02, "lenet5": 0.02}
# Keywords a zoo model needs for 3-channel 32x32 images: LeNet-5 defaults to 1 channel (digits); GoogLeNet's two
# auxiliary classifiers (training mode) return three outputs, which this script's single loss does not take.
MODEL_KWARGS = {"lenet5": {"in_channels": 3}, "googlenet": {"aux_logits": False}}


def build_datasets(data_dir: str | None, quick: bool, cutout: bool) -> tuple[object, object, str]:
    """Train and test datasets with their transforms, and a sentence saying where the images came from."""
    augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToArray(), T.Normalize(MEAN, STD)]
    if cutout:
        augment.append(T.RandomErasing(p=1.0, scale=(0.0625, 0.0625), ratio=(1.0, 1.0)))  # a 8x8 hole (DeVries 2017)
    train_tf, test_tf = T.Compose(augment), T.Compose([T.ToArray(), T.Normalize(MEAN, STD)])
    try:
        train_set, test_set = CIFAR10(data_dir, True, train_tf), CIFAR10(data_dir, False, test_tf)
        if quick:  # the demo: the first 10,000 training and 2,000 test images
            train_set, test_set = Subset(train_set, range(10000)), Subset(test_set, range(2000))
        source = f"CIFAR-10 from {train_set.dataset.root if quick else train_set.root}"
    except FileNotFoundError:
        if data_dir is not None:  # asked for by name: not found is an error, not a quiet switch to the sample
            raise
        train_set, test_set = CIFAR10Sample(True, train_tf), CIFAR10Sample(False, test_tf)
        source = "the embedded CIFAR-10 sample (CIFAR-10 itself was not found: pass --data-dir or set MINIDL_DATA_DIR)"
    return train_set, test_set, f"{source}: {len(train_set)} train / {len(test_set)} test images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="cifar_cnn", help="a zoo model: " + ", ".join(models.list_models()))
    parser.add_argument("--data-dir", help="folder holding CIFAR-10 (default: $MINIDL_DATA_DIR, then the cache)")
    parser.add_argument(
        "--epochs",
        type=positive_int,
        help="passes over the training set (default 30; --quick: 3 on CIFAR-10, 15 on the sample)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=128,
        help="images per training batch (--distributed: over all processes)",
    )
    parser.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        default="sgd",
        help="SGD with Nesterov momentum 0.9, or AdamW (the usual choice for ViT and ConvNeXt)",
    )
    parser.add_argument(
        "--lr", type=float, help="peak learning rate (default 0.1 for SGD, 0.02 for cifar_cnn and lenet5; AdamW 1e-3)"
    )
    parser.add_argument(
        "--weight-decay", type=float, default=5e-4, help="weight decay (SGD: L2 penalty; AdamW: decoupled, e.g. 0.05)"
    )
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay")
    parser.add_argument(
        "--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy loss (0: off)"
    )
    parser.add_argument("--cutout", action="store_true", help="erase a random 8x8 square of every training image")
    parser.add_argument("--mixup", type=float, default=0.0, help="Mixup alpha (0: off)")
    parser.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha (0: off)")
    parser.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and the augmentation")
    parser.add_argument(
        "--backend", help="array backend (default: numba where installed): " + ", ".join(minidl.available_backends())
    )
    parser.add_argument("--no-fuse", action="store_true", help="run the layers one by one (no nn.fuse on Numba)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/cifar10-<model>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.npz")
    parser.add_argument("--quick", action="store_true", help="the short demo run of the README")
    add_distributed_arguments(parser)
    args = parser.parse_args()
    if args.sync_bn is not None and not args.distributed:
        parser.error("--sync-bn and --no-sync-bn go with --distributed")
    if args.model not in models.list_models():
        parser.error(f"--model: unknown model {args.model!r}; choose one of {', '.join(models.list_models())}")
    try:  # one 32 x 32 image through it, before any data is loaded: the ImageNet models that need more say so now
        with minidl.no_grad():
            models.get_model(args.model, num_classes=10, **MODEL_KWARGS.get(args.model, {})).eval()(
                np.zeros((1, 3, 32, 32), np.float32)
            )
    except (ValueError, TypeError) as err:
        parser.error(f"--model {args.model} cannot take CIFAR-10's 32 x 32 images: {err}")
    lr = args.lr if args.lr is not None else 1e-3 if args.optimizer == "adamw" else DEFAULT_LR.get(args.model, 0.1)
    out = Path(args.out or f"runs/cifar10-{args.model}")
    if args.mixup and args.cutmix:
        parser.error("choose one of --mixup and --cutmix")

    dist = start_distributed(parser, args) if args.distributed else None  # None: one process, as usual
    log = dist.print_on_main if dist else print  # every rank runs this script; rank 0 speaks
    if args.backend:
        minidl.set_backend(args.backend)
    minidl.manual_seed(args.seed)
    try:
        train_set, test_set, source = build_datasets(args.data_dir, args.quick, args.cutout)
    except FileNotFoundError as err:
        parser.error(f"--data-dir {args.data_dir}: {err}")
    log(f"data: {source}")
    epochs = args.epochs or ((15 if isinstance(train_set, CIFAR10Sample) else 3) if args.quick else 30)
    model = models.get_model(args.model, num_classes=10, **MODEL_KWARGS.get(args.model, {}))
    n_params = sum(p.size for p in model.parameters())
    if dist:  # DistributedDataParallel (+ SyncBatchNorm) and this rank's shard of the training set
        model, train_loader = data_parallel(dist, model, train_set, args)
        P = dist.get_world_size()
        synced = any(isinstance(m, dist.SyncBatchNorm) for m in model.modules())
        layout = f" = {P} x {args.batch_size // P} per process" + (", SyncBatchNorm" if synced else "")
    else:
        train_loader = DataLoader(
            train_set,
            args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=args.workers,
            seed=args.seed,
            device="current",
        )
        layout = ""
    # (--distributed: every rank evaluates the whole test set after each epoch, so every rank logs the same numbers)
    test_loader = DataLoader(test_set, 500, num_workers=args.workers, device="current")
    log(
        f"model: {args.model}, {n_params:,} parameters; backend: {minidl.get_backend().name}; "
        f"{epochs} epochs, batch {args.batch_size}{layout}, {args.optimizer}, peak lr {lr}"
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    if args.optimizer == "adamw":
        opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    else:
        opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    steps, warmup = epochs * len(train_loader), max(1, int(args.warmup_epochs * len(train_loader)))
    scheduler = optim.lr_scheduler.SequentialLR(
        opt,
        [
            optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warmup),
            optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps - warmup)),
        ],
        milestones=[warmup],
    )
    mix = T.Mixup(args.mixup, 10) if args.mixup else T.CutMix(args.cutmix, 10) if args.cutmix else None
    if args.resume:
        options = "--epochs, --batch-size and --warmup-epochs"
        check_same_schedule(out / "checkpoints" / "last.npz", scheduler, log, options)

    start = time.perf_counter()
    history = train.fit(
        model,
        train_loader,
        test_loader,
        loss_fn,
        opt,
        epochs=epochs,
        scheduler=scheduler,
        scheduler_step="batch",
        batch_transform=mix,
        history_path=out / "history.json",
        checkpoint_dir=out / "checkpoints",
        fuse=False if args.no_fuse else None,  # None: nn.fuse on a fast backend (the same results, faster)
        monitor="val_accuracy",
        resume=args.resume,
        progress=True,
    )
    wall = time.perf_counter() - start
    if dist:  # each rank evaluates every P-th test image; the sums are all-reduced
        final = evaluate_distributed(dist, model.module, test_set, loss_fn, args.workers)
        if not dist.is_main_process():
            dist.destroy_process_group()
            return
    else:
        final = train.evaluate(model, test_loader, loss_fn)
    history.save(out / "history.csv")
    results = {
        "model": args.model,
        "data": source,
        "epochs": epochs,
        "backend": minidl.get_backend().name,
        "world_size": dist.get_world_size() if dist else 1,
        "global_batch": args.batch_size,
        "test_accuracy": final["accuracy"],
        "test_loss": final["loss"],
        "wall_seconds": round(wall, 1),
        "best_test_accuracy": max(history["val_accuracy"]) if "val_accuracy" in history.keys() else None,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    try:
        train.plot_history(history, out / "curves.png")
    except ImportError:
        pass  # matplotlib is optional (pip install minidl[viz])
    print(
        f"final test accuracy: {final['accuracy']:.4f} on {len(test_set)} test images after {epochs} epochs "
        f"({wall:.0f} s); outputs in {out}{os.sep}"
    )
    if dist:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
