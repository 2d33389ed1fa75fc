"""Assignment 3: transfer learning and random search on Dogs vs. Cats, with your craft.py.

Bring the images yourself (nothing here embeds them): ``--data-dir`` is a folder (or zip) holding the Dogs vs.
Cats layout (``train/cats``, ``train/dogs``, ``validation/...``; Kaggle's ``cats_and_dogs_filtered`` works).

1. ``--search N``: random search (craft.random_search) of N short runs on a subset, each scored by validation
   accuracy.
2. Then the best (or the given) configuration trains a resnet20 whose head craft.replace_head replaced: first the
   head alone (craft.freeze_all_but_head), then everything. ``--backbone`` loads CIFAR-10 weights (a checkpoint of
   ``examples/train_cifar10.py --model resnet20``); without it the backbone starts from scratch.

Usage:
    python train_transfer.py --data-dir ~/data/dogs-vs-cats --search 6
    python train_transfer.py --data-dir ~/data/dogs-vs-cats --backbone runs/r20/checkpoints/best.npz
"""

from __future__ import annotations

import argparse

import craft
import numpy as np

import minidl
from minidl import models, nn, optim, train
from minidl.data import DataLoader, Subset
from minidl.data.datasets import DogsVsCats

SIZE = 32


def loaders(data_dir, batch_size, train_images, val_images, seed):
    train_set = DogsVsCats(data_dir, True, craft.train_transform(SIZE))
    val_set = DogsVsCats(data_dir, False, craft.eval_transform(SIZE))
    rng = np.random.default_rng(seed)
    # random subsets: the files are sorted by class, so the first ones would all be cats
    train_set = Subset(train_set, rng.permutation(len(train_set))[:train_images].tolist())
    val_set = Subset(val_set, np.random.default_rng(0).permutation(len(val_set))[:val_images].tolist())
    return DataLoader(train_set, batch_size, shuffle=True, drop_last=True, seed=seed), DataLoader(val_set, 200)


def build(backbone):
    model = models.resnet20()
    if backbone:
        state = minidl.load(backbone)
        model.load_state_dict(state.get("model", state))
    return craft.replace_head(model, 2)


def run(config, args, epochs, train_images):
    """Train with ``config`` and return the validation accuracy."""
    minidl.manual_seed(args.seed)
    train_loader, val_loader = loaders(args.data_dir, config["batch_size"], train_images, args.val_images, args.seed)
    model, loss_fn = build(args.backbone), nn.CrossEntropyLoss()
    for phase, phase_epochs in (("head", max(1, epochs // 3)), ("all", epochs - max(1, epochs // 3))):
        if phase == "head":
            craft.freeze_all_but_head(model)
        else:
            model.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = optim.SGD(params, lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])
        for _ in range(phase_epochs):
            train.train_one_epoch(model, train_loader, loss_fn, opt, progress=False)
    return train.evaluate(model, val_loader, loss_fn)["accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="your Dogs vs. Cats folder or zip")
    parser.add_argument("--backbone", default=None, help="CIFAR-10 resnet20 weights to start from")
    parser.add_argument("--search", type=int, default=0, help="random-search trials before the final run")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = {"lr": 0.01, "weight_decay": 5e-4, "batch_size": 64}
    if args.search:
        best, score, trials = craft.random_search(
            lambda c: run(c, args, epochs=2, train_images=args.train_images // 4),
            args.search,
            np.random.default_rng(args.seed),
        )
        for c, s in trials:
            print(f"trial {c}: validation accuracy {s:.3f}")
        config = best
        print(f"best: {best} ({score:.3f})")
    accuracy = run(config, args, args.epochs, args.train_images)
    print(f"final validation accuracy {accuracy:.4f} with {config}")


if __name__ == "__main__":
    main()
