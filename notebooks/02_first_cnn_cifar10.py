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
# # 2. A first CNN on CIFAR-10: build, train, curves, overfitting
#
# Follows the UCLA decks, "Learning Convolutional Neural Networks (2)" (`000`) and "Learning Deep Learning with
# PyTorch (5)" (`001`): stack convolution, ReLU and pooling blocks, flatten into a classifier, train with
# cross-entropy and SGD with momentum, and read the learning curves. The loss minimised is the mean cross-entropy
# of the softmax of the logits $z$:
#
# $$L = -\frac{1}{N} \sum_{n=1}^{N} \log \frac{e^{z_{n, y_n}}}{\sum_k e^{z_{n,k}}}$$
#
# Settings: quick mode (the default, `MINIDL_NOTEBOOK_QUICK=1`) trains on the 2,000 + 500 CIFAR-10 images
# embedded in minidl for a few epochs; `MINIDL_NOTEBOOK_QUICK=0` trains on the full CIFAR-10 (50,000 + 10,000
# images, found in `MINIDL_DATA_DIR` or `../shared/data`; the embedded sample when it is absent) for 15 epochs.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minidl
from minidl import nn, optim, transforms
from minidl.data import DataLoader, Subset
from minidl.data.datasets import CIFAR10, CIFAR10Sample
from minidl.train import confusion_matrix, fit, per_class_metrics, predict

QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"
DATA_DIR = os.environ.get("MINIDL_DATA_DIR") or ("../shared/data" if Path("../shared/data").is_dir() else None)
EPOCHS = 5 if QUICK else 15
OVERFIT_IMAGES, OVERFIT_EPOCHS = (256, 20) if QUICK else (2000, 40)
minidl.manual_seed(0)

# %% [markdown]
# ## The data
#
# Images are (32, 32, 3) uint8; `ToArray` makes them (3, 32, 32) float32 in [0, 1] and `Normalize` subtracts the
# per-channel mean and divides by the standard deviation of the training set.

# %%
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
to_input = transforms.Compose([transforms.ToArray(), transforms.Normalize(MEAN, STD)])
if not QUICK and DATA_DIR is not None:
    train_set = CIFAR10(DATA_DIR, train=True, transform=to_input)
    test_set = CIFAR10(DATA_DIR, train=False, transform=to_input)
else:
    train_set = CIFAR10Sample(train=True, transform=to_input)
    test_set = CIFAR10Sample(train=False, transform=to_input)
classes = train_set.classes
print(f"{type(train_set).__name__}: {len(train_set)} training and {len(test_set)} test images, classes {classes}")

fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for ax, k in zip(axes.flat, range(0, 16 * 97, 97), strict=True):
    ax.imshow(train_set.data[k % len(train_set)])
    ax.set_title(classes[train_set.targets[k % len(train_set)]], fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## The model
#
# Two blocks of [conv 3x3, ReLU, max-pool 2x2] halve the resolution twice (32 -> 16 -> 8) while the channels grow
# (3 -> 16 -> 32); the classifier is two fully connected layers. `minidl.summary` lists each layer's output shape,
# parameters and multiply-accumulates.


# %%
def make_model():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


model = make_model()
print(minidl.summary(model, (3, 32, 32)))

# %% [markdown]
# ## Training
#
# `fit` runs the loop of `docs/training.md` (zero_grad, forward, loss, backward, step) once per batch and evaluates
# on the test set after each epoch.

# %%
train_loader = DataLoader(train_set, batch_size=64, shuffle=True, seed=0)
test_loader = DataLoader(test_set, batch_size=500)
optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
history = fit(model, train_loader, test_loader, nn.CrossEntropyLoss(), optimizer, epochs=EPOCHS, progress=False)


def plot_curves(history, title):
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = history["epoch"]
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
    ax_loss.plot(epochs, history["val_loss"], "o-", label="test")
    ax_acc.plot(epochs, history["train_accuracy"], "o-", label="train")
    ax_acc.plot(epochs, history["val_accuracy"], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_loss.legend()
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


plot_curves(history, f"{len(train_set)} training images")

# %% [markdown]
# ## Where it errs
#
# The confusion matrix $M_{ij}$ counts test images of class $i$ predicted as class $j$; recall is
# $M_{ii} / \sum_j M_{ij}$ and precision $M_{ii} / \sum_j M_{ji}$.

# %%
logits, targets = predict(model, test_loader)
cm = confusion_matrix(logits, targets, num_classes=10)
print(f"test accuracy: {np.trace(cm) / cm.sum():.3f}")
metrics = per_class_metrics(cm)
print(f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}")
for k, name in enumerate(classes):
    print(f"{name:<12}{metrics['precision'][k]:>10.3f}{metrics['recall'][k]:>10.3f}{metrics['f1'][k]:>10.3f}")

fig, ax = plt.subplots(figsize=(5.5, 5))
ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues")
ax.set_xticks(range(10), classes, rotation=90)
ax.set_yticks(range(10), classes)
ax.set(xlabel="predicted", ylabel="true")
plt.show()

# %% [markdown]
# ## The overfitting picture
#
# The same network trained on a small subset for many epochs, without weight decay: it memorises the training
# images (training loss towards 0, training accuracy towards 1) while the test loss reaches a minimum and climbs
# again. The gap between the curves is the overfitting; the epoch of the minimum is where early stopping would stop.

# %%
minidl.manual_seed(0)
small_model = make_model()
small_loader = DataLoader(Subset(train_set, range(OVERFIT_IMAGES)), batch_size=32, shuffle=True, seed=0)
small_history = fit(
    small_model,
    small_loader,
    test_loader,
    nn.CrossEntropyLoss(),
    optim.SGD(small_model.parameters(), lr=0.02, momentum=0.9),
    epochs=OVERFIT_EPOCHS,
    progress=False,
    verbose=False,
)
best_epoch, best_loss = small_history.best("val_loss")
print(
    f"test loss is lowest at epoch {best_epoch} ({best_loss:.3f}); final: train accuracy "
    f"{small_history['train_accuracy'][-1]:.3f}, test accuracy {small_history['val_accuracy'][-1]:.3f}"
)
plot_curves(small_history, f"{OVERFIT_IMAGES} training images, no regularization")
