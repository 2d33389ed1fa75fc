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
# # 6. Normalization layers compared
#
# Follows the normalization slides of the MSU deck (`004`) and of "Training CNNs" (`003`): every normalization
# layer computes $\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}$, then $y = \gamma \hat x + \beta$; they differ
# only in **which elements share $\mu$ and $\sigma^2$**, for an activation of shape $(N, C, H, W)$:
#
# | layer | statistics over | depends on the batch |
# |---|---|---|
# | `BatchNorm2d(C)` | $(N, H, W)$, one pair per channel | yes (running averages at test time) |
# | `LayerNorm((C, H, W))` | $(C, H, W)$, one pair per sample | no |
# | `InstanceNorm2d(C)` | $(H, W)$, one pair per sample and channel | no |
# | `GroupNorm(G, C)` | $(C / G, H, W)$, one pair per sample and group of channels | no |
# | `LocalResponseNorm(n)` (AlexNet) | divides by $(k + \frac{\alpha}{n} \sum_{n \text{ channels}} x^2)^\beta$ | no |
#
# The same small CNN is trained with each, from the same seed, then BatchNorm and GroupNorm again with a tiny batch,
# where BatchNorm's batch statistics become noisy. Quick mode (the default, `MINIDL_NOTEBOOK_QUICK=1`) trains on
# 1,000 images of the CIFAR-10 sample embedded in minidl for 3 epochs (too short for the differences to be more than
# noise); `MINIDL_NOTEBOOK_QUICK=0` on the full CIFAR-10 (from `MINIDL_DATA_DIR` or `../shared/data`; the sample
# when absent) for 10 epochs.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minidl
from minidl import nn, optim
from minidl import transforms as T
from minidl.data import DataLoader, Subset
from minidl.data.datasets import CIFAR10, CIFAR10Sample
from minidl.train import fit

QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"
DATA_DIR = os.environ.get("MINIDL_DATA_DIR") or ("../shared/data" if Path("../shared/data").is_dir() else None)
EPOCHS, TRAIN_IMAGES, SMALL_BATCH_IMAGES = (3, 1000, 400) if QUICK else (10, None, 10000)
to_input = T.Compose([T.ToArray(), T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
if not QUICK and DATA_DIR is not None:
    train_set, test_set = (CIFAR10(DATA_DIR, train=t, transform=to_input) for t in (True, False))
else:
    train_set, test_set = (CIFAR10Sample(train=t, transform=to_input) for t in (True, False))
if TRAIN_IMAGES is not None:
    train_set = Subset(train_set, range(TRAIN_IMAGES))
print(f"{len(train_set)} training images, {len(test_set)} test images")

# %% [markdown]
# ## What each layer normalizes
#
# One batch with a different scale per channel through each layer (untrained, so $\gamma = 1$, $\beta = 0$): the
# mean and standard deviation over the axes it normalizes are 0 and 1.

# %%
minidl.manual_seed(0)
x = np.random.default_rng(0).normal(3.0, 2.0, size=(8, 6, 5, 5)) * np.arange(1, 7)[None, :, None, None]
x = x.astype(np.float32)
layers = {
    "BatchNorm2d": (nn.BatchNorm2d(6), (0, 2, 3)),
    "LayerNorm": (nn.LayerNorm((6, 5, 5)), (1, 2, 3)),
    "InstanceNorm2d": (nn.InstanceNorm2d(6), (2, 3)),
    "GroupNorm(2 groups)": (nn.GroupNorm(2, 6), None),
}
print(f"{'layer':<22}{'axes':<16}{'max |mean|':>12}{'max |std - 1|':>15}")
for name, (layer, axes) in layers.items():
    y = minidl.to_numpy(layer(x))
    if axes is None:  # groups of 3 channels: (N, G, C / G, H, W)
        y, axes = y.reshape(8, 2, 3, 5, 5), (2, 3, 4)
    print(
        f"{name:<22}{str(axes):<16}{np.abs(y.mean(axis=axes)).max():>12.2e}{np.abs(y.std(axis=axes) - 1).max():>15.2e}"
    )

# %% [markdown]
# ## Training with each


# %%
def make_model(norm):
    """Three conv blocks; ``norm(C, size)`` returns the normalization layer after a convolution (or None)."""
    layers, c_in, size = [], 3, 32
    for c_out in (16, 32, 64):
        layer = norm(c_out, size)
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=layer is None)]
        layers += [layer] if layer is not None else []
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        c_in, size = c_out, size // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 10))


norms = {
    "none": lambda c, s: None,
    "BatchNorm2d": lambda c, s: nn.BatchNorm2d(c),
    "LayerNorm": lambda c, s: nn.LayerNorm((c, s, s)),
    "InstanceNorm2d": lambda c, s: nn.InstanceNorm2d(c, affine=True),
    "GroupNorm(4)": lambda c, s: nn.GroupNorm(4, c),
    "LocalResponseNorm(5)": lambda c, s: nn.LocalResponseNorm(5),
}


def run(name, batch_size, images=None):
    minidl.manual_seed(0)
    model = make_model(norms[name])
    data = train_set if images is None else Subset(train_set, range(min(images, len(train_set))))
    history = fit(
        model,
        DataLoader(data, batch_size=batch_size, shuffle=True, seed=0),
        DataLoader(test_set, 500),
        nn.CrossEntropyLoss(),
        optim.SGD(model.parameters(), lr=0.02 * batch_size / 64, momentum=0.9),
        epochs=EPOCHS,
        progress=False,
        verbose=False,
    )
    return history


results = {name: run(name, batch_size=64) for name in norms}
print(f"{'normalization':<22}{'train loss':>11}{'train acc':>11}{'test acc':>10}")
for name, history in results.items():
    print(
        f"{name:<22}{history['train_loss'][-1]:>11.3f}{history['train_accuracy'][-1]:>11.3f}"
        f"{history['val_accuracy'][-1]:>10.3f}"
    )
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
for name, history in results.items():
    ax_loss.plot(history["epoch"], history["train_loss"], "o-", ms=3, label=name)
    ax_acc.plot(history["epoch"], history["val_accuracy"], "o-", ms=3, label=name)
ax_loss.set(xlabel="epoch", ylabel="training loss")
ax_acc.set(xlabel="epoch", ylabel="test accuracy")
ax_acc.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Small batches
#
# With 4 images per batch, BatchNorm's $\mu$ and $\sigma^2$ are estimated from 4 values per pixel position and
# channel; at test time it uses running averages of those noisy estimates. GroupNorm does not look across the batch
# and is unaffected (Wu and He, 2018). The learning rate is scaled with the batch size (linear scaling rule); both
# batch sizes train on the same subset for the same number of epochs. In quick mode (400 images, 3 epochs) the
# runs are too short for the comparison to mean more than noise; the full settings use 10,000 images and 10 epochs.

# %%
print(f"{SMALL_BATCH_IMAGES} training images")
for name in ("BatchNorm2d", "GroupNorm(4)"):
    accuracies = [run(name, batch_size, SMALL_BATCH_IMAGES)["val_accuracy"][-1] for batch_size in (64, 4)]
    print(f"{name:<14} batch 64: test acc {accuracies[0]:.3f}   batch 4: test acc {accuracies[1]:.3f}")
