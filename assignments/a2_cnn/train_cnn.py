"""Assignment 2, part 6: train build_cnn() on CIFAR-10 within a CPU time budget, and report the test accuracy.

Target (the reference solution on a 2-core CPU, Numba backend): see README.md for the accuracy and budget.

Data: ``--data-dir``, else ``$MINIDL_DATA_DIR``, else minidl's dataset cache; without CIFAR-10 the script falls back
to the 2,000 + 500 images embedded in minidl (``CIFAR10Sample``) and says so.

Usage:
    python train_cnn.py --data-dir ~/data               # the graded run: budget and accuracy as in README.md
    python train_cnn.py --data-dir ~/data --my-layers   # the same model computing with your layers.py (slower)
"""

from __future__ import annotations

import argparse
import contextlib
import time

import cnn
import layers

import minidl
from minidl import nn, optim, train
from minidl import transforms as T
from minidl.data import DataLoader, Subset
from minidl.data.datasets import CIFAR10, CIFAR10Sample

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def datasets(data_dir, train_images, test_images):
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToArray(), T.Normalize(MEAN, STD)])
    test_tf = T.Compose([T.ToArray(), T.Normalize(MEAN, STD)])
    try:
        train_set, test_set = CIFAR10(data_dir, True, train_tf), CIFAR10(data_dir, False, test_tf)
        source = "CIFAR-10"
    except FileNotFoundError:
        train_set, test_set = CIFAR10Sample(True, train_tf), CIFAR10Sample(False, test_tf)
        source = "the embedded CIFAR-10 sample (CIFAR-10 not found: pass --data-dir or set MINIDL_DATA_DIR)"
    train_set = Subset(train_set, range(min(train_images, len(train_set))))
    test_set = Subset(test_set, range(min(test_images, len(test_set))))
    return train_set, test_set, f"{source}: {len(train_set)} train / {len(test_set)} test images"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="stop after the epoch that passes it")
    parser.add_argument("--my-layers", action="store_true", help="compute with layers.py (NumPy backend)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    minidl.manual_seed(args.seed)
    if args.my_layers:
        minidl.set_backend("numpy")
    train_set, test_set, source = datasets(args.data_dir, args.train_images, args.test_images)
    print(f"data: {source}; backend: {minidl.get_backend().name}")
    train_loader = DataLoader(train_set, 64, shuffle=True, drop_last=True, seed=args.seed)
    test_loader = DataLoader(test_set, 500)
    model = cnn.build_cnn()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * len(train_loader))
    start = time.perf_counter()
    with cnn.use_my_layers(layers) if args.my_layers else contextlib.nullcontext():
        for epoch in range(args.epochs):
            train.train_one_epoch(
                model, train_loader, loss_fn, opt, scheduler=scheduler, scheduler_step="batch", progress=False
            )
            result = train.evaluate(model, test_loader, loss_fn, progress=False)
            minutes = (time.perf_counter() - start) / 60
            print(f"epoch {epoch + 1}: test accuracy {result['accuracy']:.4f}, {minutes:.1f} min")
            if minutes > args.budget_minutes:
                print(f"stopped: past the budget of {args.budget_minutes} min")
                break
    print(f"final test accuracy {result['accuracy']:.4f} after {minutes:.1f} min")


if __name__ == "__main__":
    main()
