"""Tell dogs from cats: a small CNN trained from scratch on real JPEG photos.

Data: the Kaggle "Dogs vs. Cats" images, either in the Kaggle layout (``train/cat.123.jpg``) or in folders
(``train/cats``, ``train/dogs``, ``validation/cats``, ``validation/dogs``), as a folder or straight from a zip, under
``--data-dir`` (or ``$MINIDL_DATA_DIR``, or a ``dogs-vs-cats/`` subfolder of either). minidl cannot download these
images: their terms forbid republishing them. Get them from Kaggle.

Recipe: RandomResizedCrop + horizontal flip + ColorJitter (the small-data augmentation of the lectures), a 4-stage
conv-BN-ReLU-maxpool network with global average pooling, AdamW with a one-cycle schedule; validation accuracy with
and without flip test-time augmentation; a gallery of misclassified validation images.

Usage:
    python examples/train_dogs_vs_cats.py --data-dir ~/data --epochs 40
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _cli import HelpFormatter, positive_int

import minidl
from minidl import nn, optim, train
from minidl import transforms as T
from minidl.data import DataLoader, Subset
from minidl.data.datasets import DogsVsCats

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the usual ImageNet statistics


def small_cnn(num_classes: int = 2, width: int = 32) -> nn.Sequential:
    """Four stages of conv3x3-BN-ReLU (two convs in the wider stages) and 2x2 max-pooling, then a global average."""

    def stage(c_in: int, c_out: int, convs: int) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [
                nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        return [*layers, nn.MaxPool2d(2)]

    w = width
    return nn.Sequential(
        *stage(3, w, 1),
        *stage(w, 2 * w, 1),
        *stage(2 * w, 4 * w, 2),
        *stage(4 * w, 8 * w, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(8 * w, num_classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", help="folder (or zip) with the dogs-vs-cats images (default: $MINIDL_DATA_DIR)")
    parser.add_argument("--epochs", type=positive_int, default=40, help="passes over the training images")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per training batch")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate of the one-cycle schedule")
    parser.add_argument("--weight-decay", type=float, default=5e-2, help="AdamW decoupled weight decay")
    parser.add_argument("--image-size", type=int, default=96, help="side of the square images the network sees")
    parser.add_argument("--width", type=int, default=32, help="channels of the first stage")
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers (threads: Pillow decodes without the GIL)"
    )
    parser.add_argument("--limit", type=positive_int, help="use only N training and N validation images (smoke tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and the augmentation")
    parser.add_argument(
        "--backend", help="array backend (default: numba where installed): " + ", ".join(minidl.available_backends())
    )
    parser.add_argument("--no-fuse", action="store_true", help="run the layers one by one (no nn.fuse on Numba)")
    parser.add_argument("--out", default="runs/dogs-vs-cats", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.npz")
    args = parser.parse_args()
    if args.limit is not None and args.limit < args.batch_size:
        parser.error(
            f"--limit ({args.limit}) must be at least --batch-size ({args.batch_size}): the training loader "
            "drops its last partial batch, so it would have none"
        )

    if args.backend:
        minidl.set_backend(args.backend)
    minidl.manual_seed(args.seed)
    size = args.image_size
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.35, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02),
            T.ToArray(),
            T.Normalize(MEAN, STD),
        ]
    )
    val_tf = T.Compose([T.Resize(int(size * 1.14)), T.CenterCrop(size), T.ToArray(), T.Normalize(MEAN, STD)])
    train_set = DogsVsCats(args.data_dir, train=True, transform=train_tf)
    val_set = DogsVsCats(args.data_dir, train=False, transform=val_tf)
    classes = train_set.classes
    if args.limit:
        rng = np.random.default_rng(args.seed)  # a class-balanced random subset
        train_set = Subset(train_set, rng.permutation(len(train_set))[: args.limit].tolist())
        val_set = Subset(val_set, rng.permutation(len(val_set))[: args.limit].tolist())
    print(f"dogs vs cats: {len(train_set)} train / {len(val_set)} validation images at {size}x{size}")
    kw = dict(num_workers=args.workers, worker_type="thread", device="current")
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, seed=args.seed, **kw)
    val_loader = DataLoader(val_set, 100, **kw)

    model = small_cnn(len(classes), args.width)
    print(
        f"model: small CNN, {sum(p.size for p in model.parameters()):,} parameters; backend {minidl.get_backend().name}"
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * len(train_loader))

    out = Path(args.out)
    start = time.perf_counter()
    history = train.fit(
        model,
        train_loader,
        val_loader,
        loss_fn,
        opt,
        epochs=args.epochs,
        scheduler=scheduler,
        scheduler_step="batch",
        history_path=out / "history.json",
        checkpoint_dir=out / "checkpoints",
        fuse=False if args.no_fuse else None,  # None: nn.fuse on a fast backend (the same results, faster)
        monitor="val_accuracy",
        resume=args.resume,
    )
    wall = time.perf_counter() - start

    # final validation accuracy, plain and with flip test-time augmentation; collect the mistakes for the gallery
    model.eval()
    correct = correct_tta = 0
    wrong_images, wrong_preds, wrong_targets = [], [], []
    for x, y in val_loader:
        probs = T.tta_predict(model, x, "none")
        probs_tta = T.tta_predict(model, x, "flip")
        pred, pred_tta, y = probs.argmax(1), probs_tta.argmax(1), minidl.to_numpy(y)
        correct += int((minidl.to_numpy(pred) == y).sum())
        correct_tta += int((minidl.to_numpy(pred_tta) == y).sum())
        miss = minidl.to_numpy(pred) != y
        wrong_images.append(minidl.to_numpy(x)[miss])
        wrong_preds.append(minidl.to_numpy(pred)[miss])
        wrong_targets.append(y[miss])
    accuracy, accuracy_tta = correct / len(val_set), correct_tta / len(val_set)
    results = {
        "val_accuracy": accuracy,
        "val_accuracy_flip_tta": accuracy_tta,
        "epochs": args.epochs,
        "image_size": size,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "wall_seconds": round(wall, 1),
        "backend": minidl.get_backend().name,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    try:
        train.plot_history(history, out / "curves.png")
        train.plot_misclassified(
            np.concatenate(wrong_images),
            np.concatenate(wrong_preds),
            np.concatenate(wrong_targets),
            classes,
            out / "misclassified.png",
            mean=MEAN,
            std=STD,
        )
    except ImportError:
        pass  # matplotlib is optional (pip install minidl[viz])
    print(
        f"validation accuracy: {accuracy:.4f} ({accuracy_tta:.4f} with flip TTA) on {len(val_set)} images "
        f"after {args.epochs} epochs ({wall:.0f} s); outputs in {out}/"
    )


if __name__ == "__main__":
    main()
