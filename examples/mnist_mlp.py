"""First contact: a two-layer perceptron learns handwritten digits (MNIST) in about a minute.

The whole training loop is written out, so you can read every step: forward, loss, zero_grad, backward, step.

Data: ``--data-dir``, else ``$MINIDL_DATA_DIR``, else minidl's dataset cache; the four official ``*-ubyte.gz``
files (checked against their MD5s) directly in that folder or in an ``mnist/`` or ``MNIST/raw/`` subfolder.

Usage:
    python examples/mnist_mlp.py --data-dir ~/data
    python examples/mnist_mlp.py --epochs 10 --hidden 512
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _cli import HelpFormatter, check_same_schedule, positive_int

import minidl
from minidl import nn, optim, train
from minidl.data import DataLoader, TensorDataset
from minidl.data.datasets import MNIST


def load(data_dir: str | None, train_split: bool, limit: int | None) -> TensorDataset:
    """MNIST as flat float32 vectors standardized with the training set's mean and std (0.1307, 0.3081)."""
    ds = MNIST(data_dir, train=train_split)
    images = np.asarray(ds.data[:limit], dtype=np.float32).reshape(-1, 28 * 28) / 255.0
    labels = np.asarray(ds.targets[:limit], dtype=np.int64)
    return TensorDataset((images - 0.1307) / 0.3081, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", help="folder holding the MNIST files (default: $MINIDL_DATA_DIR, the cache)")
    parser.add_argument("--epochs", type=positive_int, default=5, help="passes over the 60,000 training images")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="images per training batch")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--hidden", type=int, default=256, help="width of the two hidden layers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and the dropout")
    parser.add_argument(
        "--backend", help="array backend (default: numba where installed): " + ", ".join(minidl.available_backends())
    )
    parser.add_argument("--limit", type=positive_int, help="use only the first N images of each split (smoke tests)")
    parser.add_argument("--out", default="runs/mnist-mlp", help="output folder for history, checkpoint and results")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz")
    args = parser.parse_args()

    if args.backend:
        minidl.set_backend(args.backend)
    minidl.manual_seed(args.seed)
    train_set, test_set = load(args.data_dir, True, args.limit), load(args.data_dir, False, args.limit)
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed, device="current")
    test_loader = DataLoader(test_set, 1000, device="current")
    print(f"MNIST: {len(train_set)} train / {len(test_set)} test images; backend {minidl.get_backend().name}")

    model = nn.Sequential(
        nn.Linear(28 * 28, args.hidden),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(args.hidden, args.hidden),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(args.hidden, 10),
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * len(train_loader))
    history = train.History()
    out = Path(args.out)
    checkpoint = out / "checkpoint.npz"
    first_epoch = 1
    if args.resume and checkpoint.is_file():  # everything the next epoch depends on, as saved after the last one
        check_same_schedule(checkpoint, scheduler, print, "--epochs and --batch-size")
        ckpt = minidl.load(checkpoint)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        minidl.set_rng_state(ckpt["rng"])
        train_loader.epoch = ckpt["loader_epoch"]
        history = train.History(ckpt["history"])
        first_epoch = ckpt["epoch"] + 1
        print(f"resumed from {checkpoint} after epoch {ckpt['epoch']}")

    start = time.perf_counter()
    for epoch in range(first_epoch, args.epochs + 1):
        model.train()
        total, correct, seen = 0.0, 0, 0
        for x, y in train_loader:  # the training loop, in full:
            logits = model(x)  # forward
            loss = loss_fn(logits, y)  # mean cross-entropy of the batch (a float)
            model.zero_grad()  # forget the previous step's gradients
            model.backward(loss_fn.backward())  # backward: fills p.grad of every parameter
            opt.step()  # update the parameters
            scheduler.step()
            total += loss * len(y)
            correct += int((minidl.to_numpy(logits).argmax(1) == minidl.to_numpy(y)).sum())
            seen += len(y)
        val = train.evaluate(model, test_loader, loss_fn)  # eval mode, no caching for backward
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / seen,
                "train_accuracy": correct / seen,
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
            }
        )
        print(
            f"epoch {epoch}/{args.epochs}  train loss {total / seen:.4f}  train accuracy {correct / seen:.4f}  "
            f"test accuracy {val['accuracy']:.4f}  ({time.perf_counter() - start:.0f} s)"
        )
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": minidl.get_rng_state(), "loader_epoch": train_loader.epoch, "epoch": epoch,
                 "history": list(history)}  # fmt: skip
        minidl.save(state, checkpoint)  # atomic: a crash mid-save never leaves a broken file
    wall = time.perf_counter() - start
    val = train.evaluate(model, test_loader, loss_fn)

    history.save(out / "history.json")
    results = {
        "test_accuracy": val["accuracy"],
        "epochs": args.epochs,
        "wall_seconds": round(wall, 1),
        "backend": minidl.get_backend().name,
        "train_images": len(train_set),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"final test accuracy: {val['accuracy']:.4f} in {wall:.0f} s")


if __name__ == "__main__":
    main()
