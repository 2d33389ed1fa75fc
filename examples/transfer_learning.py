"""Transfer learning: reuse a CIFAR-10 backbone for dogs vs cats, and compare with training from scratch.

1. A backbone from the zoo pretrained on CIFAR-10 (``airbench94`` by default, 94 % on CIFAR-10): its weights shipped
   with minidl (``models.airbench94(weights="cifar10")``; ``resnet20`` and ``cifar_cnn`` ship weights too), or
   loaded from ``--pretrained`` (a checkpoint written by ``train_cifar10.py``, or a converted state dict), or, for
   a model without shipped weights, pretrained here for ``--pretrain-epochs`` epochs. Its last pooling is made
   global, so it sees dogs and cats at ``--image-size`` (64x64 by default) and still feeds one feature vector to the
   head: airbench's ``MaxPool2d(3)`` (a global max only on CIFAR's 32x32) becomes ``AdaptiveMaxPool2d(1)``; the
   ResNets already pool globally (``cifar_cnn`` does not: it takes 32x32 only).
2. Transfer: the 10-class head is replaced by a new 2-class one; first the head alone is trained with the
   backbone frozen (``--head-epochs``), then everything is fine-tuned with the backbone at 1/10 of the head's
   learning rate (the lectures' recipe). Parameters the model itself keeps frozen (airbench's whitening filters
   and BatchNorm scales) stay frozen.
3. Scratch: the same architecture, randomly initialized (airbench's whitening filters from the dogs-vs-cats
   training images, as its recipe does), trained for the same total number of epochs.

Both runs see the same images, augmentation and schedule; the script prints their validation accuracies side by
side and writes ``results.json``.

Usage:
    python examples/transfer_learning.py --data-dir ~/data --epochs 8                    # shipped airbench94 weights
    python examples/transfer_learning.py --data-dir ~/data --model resnet20             # shipped resnet20 weights
    python examples/train_cifar10.py --model resnet32 --epochs 30 --out runs/r32       # a backbone you train ...
    python examples/transfer_learning.py --data-dir ~/data --model resnet32 --pretrained runs/r32/checkpoints/last.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _cli import HelpFormatter, positive_int

import minidl
from minidl import models, nn, optim, train
from minidl import transforms as T
from minidl.data import DataLoader, Subset
from minidl.data.datasets import CIFAR10, CIFAR10Sample, DogsVsCats

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def pretrain(
    model: nn.Module,
    data_dir: str | None,
    epochs: int,
    seed: int,
    limit: int | None,
    out: Path,
    resume: bool,
    fuse: bool | None = None,
) -> float:
    """Train ``model`` on CIFAR-10 (or the embedded sample) and return its test accuracy (``fuse``: as in
    ``train.fit``)."""
    augment = T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToArray(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    )
    plain = T.Compose([T.ToArray(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    try:
        train_set, test_set = CIFAR10(data_dir, True, augment), CIFAR10(data_dir, False, plain)
    except FileNotFoundError:
        train_set, test_set = CIFAR10Sample(True, augment), CIFAR10Sample(False, plain)
    if limit:
        train_set, test_set = Subset(train_set, range(limit)), Subset(test_set, range(limit))
    train_loader = DataLoader(
        train_set, min(128, len(train_set)), shuffle=True, drop_last=True, seed=seed, device="current"
    )
    test_loader = DataLoader(test_set, 500, device="current")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * len(train_loader))
    print(f"pretraining on CIFAR-10 ({len(train_set)} images) for {epochs} epochs")
    train.fit(
        model,
        train_loader,
        test_loader,
        nn.CrossEntropyLoss(),
        opt,
        epochs=epochs,
        scheduler=sched,
        scheduler_step="batch",
        checkpoint_dir=out / "checkpoints",
        history_path=out / "history.json",
        resume=resume,
        fuse=fuse,
    )
    return train.evaluate(model, test_loader, nn.CrossEntropyLoss())["accuracy"]


def finetune(
    model: nn.Module,
    loaders: tuple[DataLoader, DataLoader],
    head_epochs: int,
    epochs: int,
    lr: float,
    transfer: bool,
    out: Path,
    resume: bool,
    fuse: bool | None = None,
) -> tuple[float, object]:
    """Train on dogs vs cats; with ``transfer``, head first (backbone frozen), then all with a 1/10 backbone LR.

    Each phase checkpoints into its own folder under ``out``, so ``resume`` continues a phase where it stopped and
    skips the phases already finished."""
    train_loader, val_loader = loaders
    head, _ = train.find_last_linear(model)  # "fc" in a ResNet, "classifier.1" in cifar_cnn, "linear" in airbench
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    history = None
    if transfer and head_epochs:
        fixed = [name for name, p in model.named_parameters() if not p.requires_grad]  # frozen by the model's design
        train.freeze(model, exclude=head)  # only the new head learns at first
        opt = optim.AdamW(train.trainable_parameters(model), lr=lr, weight_decay=5e-2)
        history = train.fit(
            model, train_loader, val_loader, loss_fn, opt, epochs=head_epochs, resume=resume,
            checkpoint_dir=out / "head" / "checkpoints", history_path=out / "head" / "history.json", fuse=fuse,
        )  # fmt: skip
        train.unfreeze(model)
        if fixed:
            train.freeze(model, fixed)  # what the model keeps frozen stays frozen (airbench's whitening, BN scales)
    rest = epochs - (head_epochs if transfer else 0)
    groups = train.param_groups_with_lr(model, lr, backbone_lr_factor=0.1 if transfer else 1.0, head_prefixes=head)
    opt = optim.AdamW(groups, lr=lr, weight_decay=5e-2)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=rest * len(train_loader))
    history = train.fit(
        model, train_loader, val_loader, loss_fn, opt, epochs=rest, scheduler=sched, scheduler_step="batch",
        checkpoint_dir=out / "checkpoints", history_path=out / "history.json", resume=resume, fuse=fuse,
    )  # fmt: skip
    return train.evaluate(model, val_loader, loss_fn)["accuracy"], history


def make_pooling_global(model: nn.Module) -> nn.Module:
    """airbench ends in ``MaxPool2d(3)``: global on its 3x3 maps at 32x32 only. ``AdaptiveMaxPool2d(1)`` is the same
    there and global at any size, so the backbone takes 64x64 images. (The ResNets pool globally already.)"""
    if isinstance(model, models.AirbenchNet):
        model.pool = nn.AdaptiveMaxPool2d(1)
    return model


def has_shipped_weights(name: str) -> bool:
    try:
        models.get_model_weights(name)
    except ValueError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="airbench94", help="backbone from the zoo (a CIFAR model)")
    parser.add_argument("--data-dir", help="folder with CIFAR-10 and the dogs-vs-cats images ($MINIDL_DATA_DIR)")
    parser.add_argument("--pretrained", help="checkpoint or state dict of the backbone trained on CIFAR-10")
    parser.add_argument(
        "--pretrain-epochs", type=int, default=15, help="pretrain here (no --pretrained, no shipped weights)"
    )
    parser.add_argument("--epochs", type=positive_int, default=20, help="dogs-vs-cats epochs, the same for both runs")
    parser.add_argument("--head-epochs", type=positive_int, default=3, help="first epochs with the backbone frozen")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate of the head")
    parser.add_argument("--image-size", type=int, default=64, help="side of the square images the network sees")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per training batch")
    parser.add_argument("--limit", type=positive_int, help="use only N images per split (smoke tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and the augmentation")
    parser.add_argument(
        "--backend", help="array backend (default: numba where installed): " + ", ".join(minidl.available_backends())
    )
    parser.add_argument("--no-fuse", action="store_true", help="run the layers one by one (no nn.fuse on Numba)")
    parser.add_argument("--out", default="runs/transfer", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue every phase from its last checkpoint")
    args = parser.parse_args()
    if args.head_epochs >= args.epochs:
        parser.error(
            f"--head-epochs ({args.head_epochs}) must be less than --epochs ({args.epochs}): both runs train "
            "--epochs in all, the transfer run its first --head-epochs with the backbone frozen"
        )
    if args.limit is not None and args.limit < args.batch_size:
        parser.error(
            f"--limit ({args.limit}) must be at least --batch-size ({args.batch_size}): the training loader "
            "drops its last partial batch, so it would have none"
        )
    if args.model == "cifar_cnn" and args.image_size != 32:
        parser.error(f"--model cifar_cnn takes 32x32 images only (no global pool), got --image-size {args.image_size}")
    out = Path(args.out)
    fuse = False if args.no_fuse else None  # None: nn.fuse on a fast backend (the same results, faster)
    if args.backend:
        minidl.set_backend(args.backend)
    minidl.manual_seed(args.seed)
    start = time.perf_counter()

    if args.pretrained:
        backbone = models.get_model(args.model, num_classes=10)
        state = minidl.load(args.pretrained)
        backbone.load_state_dict(state["model"] if "model" in state else state)
        print(f"backbone: {args.model} from {args.pretrained}")
        cifar_accuracy = None
    elif has_shipped_weights(args.model):
        weights = models.get_model_weights(args.model).DEFAULT  # checked against its SHA-256 when loaded
        backbone = models.get_model(args.model, num_classes=10, weights=weights)
        cifar_accuracy = weights.meta["metrics"]["cifar10_test"]["acc@1"]
        print(f"backbone: {args.model} with its shipped weights {weights!r}, CIFAR-10 test accuracy {cifar_accuracy}")
    else:
        backbone = models.get_model(args.model, num_classes=10)
        cifar_accuracy = pretrain(
            backbone, args.data_dir, args.pretrain_epochs, args.seed, args.limit, out / "pretrain", args.resume, fuse
        )
        print(f"backbone: {args.model} pretrained here, CIFAR-10 test accuracy {cifar_accuracy:.4f}")

    size = args.image_size  # CIFAR statistics: the backbone saw inputs normalized this way
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.35, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.3, 0.3, 0.3, 0.02),
            T.ToArray(),
            T.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )
    val_tf = T.Compose(
        [T.Resize(int(size * 1.14)), T.CenterCrop(size), T.ToArray(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    )
    train_set = DogsVsCats(args.data_dir, train=True, transform=train_tf)
    val_set = DogsVsCats(args.data_dir, train=False, transform=val_tf)
    if args.limit:
        rng = np.random.default_rng(args.seed)
        train_set = Subset(train_set, rng.permutation(len(train_set))[: args.limit].tolist())
        val_set = Subset(val_set, rng.permutation(len(val_set))[: args.limit].tolist())
    loaders = (
        DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, seed=args.seed, device="current"),
        DataLoader(val_set, 100, device="current"),
    )
    print(f"dogs vs cats: {len(train_set)} train / {len(val_set)} validation images at {size}x{size}")

    make_pooling_global(backbone)
    train.replace_head(backbone, None, 2)  # None: the last Linear
    print("== transfer: new head, backbone frozen, then fine-tuned at 1/10 of the head's learning rate")
    transfer_acc, _ = finetune(
        backbone, loaders, args.head_epochs, args.epochs, args.lr, True, out / "transfer", args.resume, fuse
    )
    minidl.manual_seed(args.seed)
    print("== scratch: the same network, randomly initialized")
    scratch = make_pooling_global(models.get_model(args.model, num_classes=2))
    if isinstance(scratch, models.AirbenchNet):  # its recipe: whitening filters from the training images' patches
        plain = DogsVsCats(args.data_dir, train=True, transform=val_tf)  # not augmented
        index = np.random.default_rng(args.seed).permutation(len(plain))[:500]
        nn.init.patch_whitening_(scratch.whiten.weight, np.stack([plain[int(i)][0] for i in index]))
    scratch_acc, _ = finetune(scratch, loaders, 0, args.epochs, args.lr, False, out / "scratch", args.resume, fuse)

    results = {
        "model": args.model,
        "pretrained": args.pretrained or (repr(weights) if has_shipped_weights(args.model) else "here"),
        "cifar10_test_accuracy": cifar_accuracy,
        "dogs_vs_cats_val_accuracy": {"transfer": transfer_acc, "scratch": scratch_acc},
        "epochs": args.epochs,
        "image_size": size,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"validation accuracy after {args.epochs} epochs: transfer {transfer_acc:.4f}  |  scratch {scratch_acc:.4f}")


if __name__ == "__main__":
    main()
