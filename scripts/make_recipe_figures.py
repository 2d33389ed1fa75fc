"""Draw the figures of the training-recipe page (docs/training_recipe.md) into docs/img/recipe/, on CIFAR-10.

Run from the repository root:  python scripts/make_recipe_figures.py [--data-dir ../shared/data] [--backend numba]
Without CIFAR-10 (``--data-dir``, ``$MINIDL_DATA_DIR``, then ``../shared/data`` beside the repository) it uses the
2,000 images of CIFAR-10 embedded in minidl, and says so. It also prints the verdicts of the recipe's checks on the
same model, as the page quotes them. Seeded: a rerun on the same backend draws the same figure. About two minutes on
two CPU cores.

Figures:
    lr_find.png   the learning-rate range test of ``cifar_cnn`` (SGD, momentum 0.9, batches of 64, 150 steps from
                  1e-5 to 10): the loss per step, the smoothed loss and the suggested learning rate.
    search.png    a random search with successive halving over the learning rate and weight decay of a small CNN
                  trained on 10,000 CIFAR-10 images (budgets of 50, 150 and 450 steps of 64 images), score = the
                  loss on 500 test images.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

import minidl
from minidl import nn, optim, train
from minidl import transforms as T
from minidl.data import DataLoader, Subset
from minidl.data.datasets import CIFAR10, CIFAR10Sample
from minidl.models import cifar_cnn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "recipe"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def datasets(data_dir: str | None) -> tuple[object, object, str]:
    tf = T.Compose([T.ToArray(), T.Normalize(MEAN, STD)])
    candidates = [data_dir, os.environ.get("MINIDL_DATA_DIR"), str(ROOT.parent / "shared" / "data")]
    for folder in [c for c in candidates if c]:
        try:
            return CIFAR10(folder, True, tf), CIFAR10(folder, False, tf), f"CIFAR-10 from {folder}"
        except FileNotFoundError:
            continue
    return CIFAR10Sample(True, tf), CIFAR10Sample(False, tf), "the embedded CIFAR-10 sample (CIFAR-10 not found)"


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder holding CIFAR-10")
    parser.add_argument("--backend", default=None, help="array backend (default: numba where installed)")
    parser.add_argument("--skip-search", action="store_true", help="draw only lr_find.png")
    args = parser.parse_args()
    if args.backend or "numba" in minidl.available_backends():
        minidl.set_backend(args.backend or "numba")
    OUT.mkdir(parents=True, exist_ok=True)
    train_set, test_set, source = datasets(args.data_dir)
    print(f"data: {source}; backend {minidl.get_backend().name}")

    # 1. the initial loss and one overfitted batch, on the model the range test examines
    minidl.manual_seed(0)
    model = cifar_cnn()
    loader = DataLoader(Subset(train_set, range(9600)), batch_size=64, shuffle=True, seed=0)
    train.check_initial_loss(model, loader, batches=2)
    images, labels = next(iter(DataLoader(Subset(train_set, range(16)), batch_size=16)))
    model_no_dropout = cifar_cnn(dropout=0.0)
    train.overfit_batch(model_no_dropout, (images, labels), steps=100, lr=1e-3)

    # 2. the learning-rate range test
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    result = train.lr_find(model, loader, optimizer=opt, start_lr=1e-5, end_lr=10, num_iter=150)
    print(f"lr_find.png: {len(result.lrs)} steps, suggested lr {result.suggested_lr:.3g}")
    result.plot(OUT / "lr_find.png", dpi=100)
    if args.skip_search:
        return

    # 3. a random search with successive halving
    x_train, y_train = next(iter(DataLoader(Subset(train_set, range(10000)), batch_size=10000)))
    x_val, y_val = next(iter(DataLoader(Subset(test_set, range(500)), batch_size=500)))
    loss_fn = nn.CrossEntropyLoss()

    def train_fn(config: dict, budget: int) -> float:
        minidl.manual_seed(1)
        net = small_cnn()
        sgd = optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])
        order = np.random.default_rng(2)
        for _ in range(budget):
            idx = order.integers(0, len(x_train), 64)
            net.zero_grad()
            loss = loss_fn(net(x_train[idx]), y_train[idx])
            if not np.isfinite(loss):
                return float("nan")
            net.backward(loss_fn.backward())
            sgd.step()
        with minidl.no_grad():
            net.eval()
            return float(loss_fn(net(x_val), y_val))

    space = {"lr": train.loguniform(1e-4, 1.0), "weight_decay": train.loguniform(1e-6, 1e-2)}
    search = train.random_search(
        train_fn, space, n_trials=9, seed=0, halving=train.SuccessiveHalving(50, 450, eta=3), verbose=True
    )
    print(search.table())
    search.plot(OUT / "search.png", dpi=100)
    print("search.png: best", search.best.config, f"val loss {search.best.score:.3f}")


if __name__ == "__main__":
    main()
