# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Transfer learning: freeze, fine-tune, lower the learning rate
#
# Follows the MSU deck "Convolutional Neural Networks" (`004`, training procedure) and the transfer-learning slides
# of the Georgia Tech (`002`) and UCLA (`000`, `001`) decks: features learned on a large dataset transfer to a small
# one. With little target data, **freeze** the pretrained layers and train a new head (a fixed feature extractor);
# with more, **fine-tune** everything, the pretrained layers at a **lower learning rate** (a tenth) so that the new,
# randomly initialized head does not wreck them with large early gradients.
#
# The source model is the one minidl ships pretrained: `models.airbench94(weights="cifar10")`, the CIFAR-10
# speedrun network trained on the 50,000 CIFAR-10 training images. The target is **dogs vs. cats photos**, larger
# than CIFAR's 32x32 and never seen by the backbone (it has seen CIFAR's cats and dogs, not these photos). Quick
# mode (the default, `MINIDL_NOTEBOOK_QUICK=1`) trains on 128 photos (64 more to validate) at 32x32 for 2 epochs;
# `MINIDL_NOTEBOOK_QUICK=0` uses all the photos (from `MINIDL_DATA_DIR` or `../shared/data`) at 64x64 for 6 epochs.
# Without the photos, the notebook falls back to the cats and dogs of the CIFAR-10 sample embedded in minidl.

# %%
import hashlib
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minidl
from minidl import models, nn, optim
from minidl import transforms as T
from minidl.data import DataLoader, TensorDataset
from minidl.data.datasets import DogsVsCats
from minidl.data.sample import load_cifar10_sample
from minidl.train import (
    count_parameters,
    evaluate,
    fit,
    freeze,
    param_groups_with_lr,
    replace_head,
    trainable_parameters,
    unfreeze,
)

QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"
DATA_DIR = os.environ.get("MINIDL_DATA_DIR") or ("../shared/data" if Path("../shared/data").is_dir() else None)
SIZE, TRAIN_IMAGES, VAL_IMAGES, EPOCHS = (32, 128, 64, 2) if QUICK else (64, None, None, 6)  # None: all
LR = 2e-3  # AdamW, the head's learning rate
minidl.manual_seed(0)

# %% [markdown]
# ## The shipped weights
#
# The weights are a file inside the package, with torchvision's API: an enum member holds the file's name, its
# SHA-256, the preprocessing it expects (`.transforms()`) and its metadata (`.meta`: classes, test accuracy, the
# command that trained it). Loading checks the SHA-256 first and refuses a changed file.

# %%
weights = models.Airbench94_Weights.CIFAR10
print(f"{weights!r}: {weights.path.name}, {weights.path.stat().st_size / 1e6:.1f} MB")
print("classes:", weights.meta["categories"])
print("accuracy on the 10,000 CIFAR-10 test images:", weights.meta["metrics"]["cifar10_test"]["acc@1"])
print("trained by:", weights.meta["recipe"])
digest = hashlib.sha256(weights.path.read_bytes()).hexdigest()
print(f"SHA-256 {digest[:16]}... matches the manifest: {digest == weights.value.sha256}")

# %% [markdown]
# A sanity check before we rely on it: its accuracy on the 500 CIFAR-10 test images embedded in minidl, with the
# weights' own preprocessing (`ToArray` and `Normalize` with the CIFAR-10 training set's mean and std).

# %%
net = models.airbench94(weights="cifar10")
preprocess = weights.transforms()
_, _, sample_images, sample_labels, _ = load_cifar10_sample()
sample = TensorDataset(np.stack([preprocess(img) for img in sample_images]), np.asarray(sample_labels))
print(f"accuracy on the 500 embedded test images: {evaluate(net, DataLoader(sample, 100))['accuracy']:.3f}")

# %% [markdown]
# ## The target task: dogs vs. cats photos
#
# Each photo is resized (shorter side), centre-cropped to a square and normalized like CIFAR-10, since the backbone
# learned on inputs normalized that way. The images are decoded once into arrays, so that the four recipes below
# train on exactly the same batches.

# %%
to_input = T.Compose([T.Resize(SIZE), T.CenterCrop(SIZE), preprocess])


def as_arrays(dataset, count, seed):
    """``count`` images of ``dataset`` drawn at random (all when None): arrays (N, 3, SIZE, SIZE) and labels (N,)."""
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    pairs = [dataset[int(i)] for i in order]
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])


def cifar_cats_and_dogs(images, labels):
    """The CIFAR-10 sample's cats (3 -> 0) and dogs (5 -> 1), upsampled to SIZE: DogsVsCats's labels."""
    return [(to_input(images[i]), int(labels[i] == 5)) for i in np.flatnonzero(np.isin(labels, (3, 5)))]


try:
    train_photos, val_photos = (DogsVsCats(DATA_DIR, train=t, transform=to_input) for t in (True, False))
    source = "dogs-vs-cats photos"
except FileNotFoundError:
    train_images, train_labels, test_images, test_labels, _ = load_cifar10_sample()
    train_photos = cifar_cats_and_dogs(train_images, train_labels)
    val_photos = cifar_cats_and_dogs(test_images, test_labels)
    source = (
        "FALLBACK (no dogs-vs-cats photos found; the backbone was trained on these very training images, so this run "
        "only shows the mechanics): the CIFAR-10 sample's cats and dogs, upsampled"
    )
x_train, y_train = as_arrays(train_photos, TRAIN_IMAGES, seed=0)
x_val, y_val = as_arrays(val_photos, VAL_IMAGES, seed=1)
print(f"{source}: {len(x_train)} training and {len(x_val)} validation images at {SIZE}x{SIZE}")
print(f"dogs among the training images: {y_train.mean():.0%}, among the validation images: {y_val.mean():.0%}")

# %%
mean, std = np.array(weights.meta["mean"]), np.array(weights.meta["std"])
fig, axes = plt.subplots(1, 8, figsize=(10, 1.6))
for ax, x, y in zip(axes, x_train[:8], y_train[:8], strict=True):
    ax.imshow(np.clip(x.transpose(1, 2, 0) * std + mean, 0, 1))  # undo Normalize to show the image
    ax.set_title(("cat", "dog")[y], fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## From a CIFAR network to a dogs-vs-cats network
#
# Two changes. airbench ends in `MaxPool2d(3)`, a global max only on the 3x3 maps of a 32x32 image:
# `AdaptiveMaxPool2d(1)` is the same at 32x32 and global at any size. And the 10-class head, `linear`, is replaced
# by a new, randomly initialized `Linear(256, 2)`.
#
# Training from scratch needs one step more. airbench's first layer is not learned: its filters are computed from
# the training images (they whiten their 2x2 patches) and then frozen, so a random network would keep random ones
# forever; as airbench's recipe does on CIFAR, we compute them from the target's training images. The pretrained
# network brings its own, computed from CIFAR-10.


# %%
def pretrained_model():
    model = models.airbench94(weights="cifar10")
    model.pool = nn.AdaptiveMaxPool2d(1)  # global max at any image size (the same as MaxPool2d(3) at 32x32)
    replace_head(model, "linear", 2)  # a new Linear(256, 2, bias=False)
    return model


def scratch_model():
    model = models.airbench94(num_classes=2)
    model.pool = nn.AdaptiveMaxPool2d(1)
    nn.init.patch_whitening_(model.whiten.weight, x_train[:500])  # (N, 3, SIZE, SIZE), normalized
    return model


model = pretrained_model()
fixed = [name for name, p in model.named_parameters() if not p.requires_grad]
print(f"frozen by airbench's design: {len(fixed)} tensors ({fixed[0]}, {fixed[1]}, ...)")
print(f"trainable parameters: {count_parameters(model):,} of {count_parameters(model, trainable_only=False):,}")

# %% [markdown]
# Those frozen tensors (the whitening filters and the BatchNorm scales) must stay frozen whatever we do. `freeze`
# adds to them; `unfreeze(model)` would thaw them too, so a schedule that freezes and later unfreezes records them
# first and freezes them again (as `examples/transfer_learning.py` does between its two phases):

# %%
freeze(model, exclude="linear")  # phase 1: the new head only
print(f"head only: {count_parameters(model):,} trainable parameters")
unfreeze(model)  # phase 2: everything ...
freeze(model, fixed)  # ... but what airbench keeps frozen
print(f"all again: {count_parameters(model):,} trainable parameters")

# %% [markdown]
# ## Four recipes, the same batches
#
# Each recipe starts from the same seed (the same new head for the three pretrained ones) and sees the same
# batches in the same order; only what trains, and how fast, differs. AdamW with weight decay 0.05, as in
# `examples/transfer_learning.py`.
#
# | recipe | trainable | learning rate |
# |---|---|---|
# | from scratch | everything, random init (whitening from the target) | 0.002 |
# | feature extractor | the new head only (`freeze(model, exclude="linear")`) | 0.002 |
# | fine-tune, same LR | everything | 0.002 |
# | fine-tune, lower LR | everything | backbone 0.0002, head 0.002 (`param_groups_with_lr`) |
#
# (The feature extractor's BatchNorm layers still update their running statistics on the target images in train
# mode; `minidl.train.freeze_batchnorm` would fix those too.)


# %%
def recipe(name):
    minidl.manual_seed(1)  # the same new head for every pretrained recipe
    model = scratch_model() if name == "from scratch" else pretrained_model()
    if name == "feature extractor":
        freeze(model, exclude="linear")
    if name == "fine-tune, lower LR":
        params = param_groups_with_lr(model, base_lr=LR, backbone_lr_factor=0.1, head_prefixes="linear")
    else:
        params = trainable_parameters(model)  # leaves out the frozen ones
    return model, optim.AdamW(params, lr=LR, weight_decay=5e-2)


results = {}
for name in ("from scratch", "feature extractor", "fine-tune, same LR", "fine-tune, lower LR"):
    model, optimizer = recipe(name)
    history = fit(
        model,
        DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True, seed=0),
        DataLoader(TensorDataset(x_val, y_val), 100),
        nn.CrossEntropyLoss(),
        optimizer,
        epochs=EPOCHS,
        progress=False,
        verbose=False,
        fuse=False,
    )
    results[name] = (history, count_parameters(model))

# %%
print(f"{'recipe':<22}{'trainable':>11}{'best val acc':>14}{'final val acc':>15}")
for name, (history, n_trainable) in results.items():
    print(f"{name:<22}{n_trainable:>11,}{max(history['val_accuracy']):>14.3f}{history['val_accuracy'][-1]:>15.3f}")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, (history, _) in results.items():
    ax.plot(history["epoch"], history["val_accuracy"], "o-", ms=3, label=name)
ax.set(xlabel="epoch", ylabel="cat vs. dog validation accuracy")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# What the lectures lead us to expect: with little target data, the pretrained features start far above
# what a network trained from scratch reaches in a few epochs; the feature extractor, with only 512 parameters to
# train, cannot overfit much but cannot adapt the features either; training everything at the full learning rate
# can lose part of the head start in the first epochs, which the lower backbone learning rate avoids. Read the table
# against this, keeping the noise in mind: in quick mode the validation set has 64 images, so one image is about
# 1.6 points. The full setting (`MINIDL_NOTEBOOK_QUICK=0`) and `examples/transfer_learning.py`
# (augmentation, a frozen-head phase, then fine-tuning with the lower backbone learning rate) give firmer numbers.
