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
# # 5. The training recipe: preprocessing, initialization, sanity checks, LR, hyperparameter search
#
# Follows "Lecture 6: Training CNNs and CNN Architectures" (`003`): data preprocessing (subtract the mean, divide by
# the standard deviation), weight initialization judged by the **activation statistics of every layer**, then the
# deck's steps for choosing hyperparameters: *check the initial loss*, *overfit a small sample*, *find a learning
# rate that makes the loss go down*, then a coarse **random search** (Bergstra and Bengio, 2012).
#
# Each step is one call of a `minidl.train` tool (`check_initial_loss`, `overfit_batch`, `lr_find`,
# `random_search`); the page [the training recipe](../training_recipe.md) documents them. Quick mode (the default,
# `MINIDL_NOTEBOOK_QUICK=1`) uses the CIFAR-10 sample embedded in minidl and a handful of trials;
# `MINIDL_NOTEBOOK_QUICK=0` uses the full CIFAR-10 (from `MINIDL_DATA_DIR` or `../shared/data`; the sample when
# absent), a longer sweep and 20 trials of 2 epochs.

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
from minidl.train import check_initial_loss, fit, loguniform, lr_find, narrow, overfit_batch, random_search

QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"
DATA_DIR = os.environ.get("MINIDL_DATA_DIR") or ("../shared/data" if Path("../shared/data").is_dir() else None)
SWEEP_STEPS, TRIALS, TRIAL_EPOCHS, TRIAL_IMAGES = (40, 6, 1, 1000) if QUICK else (200, 20, 2, 10000)
minidl.manual_seed(0)
if not QUICK and DATA_DIR is not None:
    raw_train, raw_test = (CIFAR10(DATA_DIR, train=t) for t in (True, False))
else:
    raw_train, raw_test = (CIFAR10Sample(train=t) for t in (True, False))

# %% [markdown]
# ## 1. Preprocessing
#
# Zero-centre each channel and scale it to unit variance with statistics of the *training* set only, here estimated
# on 2,000 of its images (the test set is normalized with the same numbers): $x' = (x - \mu_c) / \sigma_c$.

# %%
pixels = np.asarray(raw_train.data[:2000], dtype=np.float64) / 255  # (N, 32, 32, 3)
mean, std = pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2))
print("per-channel mean (R, G, B):", np.round(mean, 4), " std:", np.round(std, 4))
normalized = (pixels - mean) / std
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for c, colour in enumerate("rgb"):
    axes[0].hist(pixels[..., c].ravel(), bins=50, histtype="step", color=colour)
    axes[1].hist(normalized[..., c].ravel(), bins=50, histtype="step", color=colour)
axes[0].set_title("raw pixels in [0, 1]")
axes[1].set_title("after (x - mean) / std")
plt.show()
to_input = T.Compose([T.ToArray(), T.Normalize(tuple(mean), tuple(std))])
raw_train.transform = raw_test.transform = to_input
train_set, test_set = raw_train, raw_test

# %% [markdown]
# ## 2. Initialization: watch the activations layer by layer
#
# The deck's experiment: a stack of six 512-wide layers fed with normalized images. With $W \sim 0.01\,
# \mathcal{N}(0, 1)$ and tanh the activations shrink towards 0 layer after layer (and so do the gradients); with
# $0.05\,\mathcal{N}(0, 1)$ they pile up at $\pm 1$ in the first layers (tanh saturates, its gradient vanishes);
# Kaiming, $W \sim \mathcal{N}(0, 2 / D_{in})$, keeps the spread of ReLU activations constant with depth.

# %%
x_batch = np.stack([train_set[k][0] for k in range(256)]).reshape(256, -1)  # (256, 3072)


def deep_net(init, activation):
    layers, width = [], x_batch.shape[1]
    for _ in range(6):
        linear = nn.Linear(width, 512)
        init(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
        width = 512
    return nn.Sequential(*layers)


setups = {
    "W = 0.01 randn, tanh": (lambda w: nn.init.normal_(w, std=0.01), nn.Tanh),
    "W = 0.05 randn, tanh": (lambda w: nn.init.normal_(w, std=0.05), nn.Tanh),
    "Kaiming, ReLU": (lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), nn.ReLU),
}
fig, axes = plt.subplots(len(setups), 6, figsize=(13, 2 * len(setups)), sharey="row")
print(f"{'setup':<22}" + "".join(f"{'layer ' + str(k + 1) + ' std':>14}" for k in range(6)))
for row, (name, (init, activation)) in enumerate(setups.items()):
    h, stds = x_batch, []
    with minidl.no_grad():
        for k, layer in enumerate(deep_net(init, activation)):
            h = minidl.to_numpy(layer(h))
            if k % 2 == 1:  # after each activation
                axes[row, k // 2].hist(h.ravel(), bins=40, range=(-1, 1) if "tanh" in name else (0, 3))
                axes[row, k // 2].set_title(f"layer {k // 2 + 1}", fontsize=8)
                stds.append(h.std())
    axes[row, 0].set_ylabel(name, fontsize=8)
    print(f"{name:<22}" + "".join(f"{s:>14.4f}" for s in stds))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Sanity checks
#
# **Check the initial loss.** With $K$ classes and small random weights the softmax is close to uniform, so the
# cross-entropy starts near $\ln K$ ($\ln 10 \approx 2.303$). **Overfit a small sample.** Without regularization
# the model must reach 100% training accuracy on a few dozen images; if it cannot, something is wrong before any
# tuning. `minidl.train.check_initial_loss` and `minidl.train.overfit_batch` run each check in one call, print a
# verdict and leave the model as it was (their source, `minidl/train/sanity.py`, is a short read).


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
        nn.Linear(32 * 8 * 8, 10),
    )


minidl.manual_seed(0)
model = make_model()
initial = check_initial_loss(model, DataLoader(Subset(train_set, range(500)), batch_size=250))

# a mis-scaled head: the same network with its last layer's weights multiplied by 20
loud = make_model()
loud[-1].weight.data *= 20
_ = check_initial_loss(loud, DataLoader(Subset(train_set, range(500)), batch_size=250))

# %%
tiny_x, tiny_y = next(iter(DataLoader(Subset(train_set, range(32)), batch_size=32)))
overfit = overfit_batch(model, (tiny_x, tiny_y), steps=200, lr=3e-3)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(overfit.losses, label="loss")
ax.plot(overfit.accuracies, label="accuracy")
ax.set(xlabel="step on the same 32 images", title="overfitting one batch")
ax.legend()
plt.show()

# %% [markdown]
# ## 4. Find a learning rate that makes the loss go down
#
# The learning-rate range test (Smith, 2017; fastai's `lr_find`): starting from the model as it is, raise the
# learning rate geometrically over a few dozen batches and record the loss of each, smoothed. The loss falls fastest
# somewhere before it explodes; `lr_find` suggests the learning rate where the smoothed loss falls most steeply,
# stops once the loss has diverged, and puts the model and the optimizer back as they were.

# %%
minidl.manual_seed(0)
model = make_model()
finder = lr_find(
    model,
    DataLoader(train_set, batch_size=64, shuffle=True, seed=0),
    optimizer=optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
    start_lr=1e-5,
    end_lr=1.0,
    num_iter=SWEEP_STEPS,
)
finder.plot()
plt.show()

# %% [markdown]
# ## 5. Random search
#
# Sample the learning rate and the weight decay **log-uniformly** (`loguniform(3e-4, 0.3)` draws
# $\log_{10} \eta \sim U(-3.5, -0.5)$), train each configuration briefly and compare validation accuracy. Random
# search tries a new value of every hyperparameter in every trial, where a grid repeats the same few (the deck's
# Bergstra and Bengio figure): with one important hyperparameter out of two, $n$ random trials explore $n$ values
# of it, a grid only $\sqrt{n}$. Then search again, **coarse to fine**, in a narrower range around the best trial
# (`narrow`).

# %%
search_train = DataLoader(
    Subset(train_set, range(min(TRIAL_IMAGES, len(train_set)))), batch_size=64, shuffle=True, seed=0
)
search_val = DataLoader(test_set, batch_size=500)


def train_trial(config):
    minidl.manual_seed(0)
    model = make_model()
    optimizer = optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])
    history = fit(
        model,
        search_train,
        search_val,
        nn.CrossEntropyLoss(),
        optimizer,
        epochs=TRIAL_EPOCHS,
        progress=False,
        verbose=False,
    )
    return history["val_accuracy"][-1]


space = {"lr": loguniform(3e-4, 0.3), "weight_decay": loguniform(1e-5, 1e-2)}
coarse = random_search(train_trial, space, n_trials=TRIALS, seed=0, mode="max", verbose=False)
print(coarse.table())
coarse.plot()
plt.show()

# %%
fine = random_search(
    train_trial, narrow(space, coarse.best.config, factor=3), n_trials=TRIALS, seed=1, mode="max", verbose=False
)
print(fine.table(top=5))
