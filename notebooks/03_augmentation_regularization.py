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
# # 3. Augmentation and regularization on dogs vs. cats
#
# Follows the UCLA decks (`000`: augmentation, dropout, batch normalization; `001`: augmentation with the dogs vs.
# cats example) and the regularization part of "Training CNNs" (`003`): a small dataset overfits quickly, and every
# remedy below is measured against **the same baseline** (same data, initialization seed, optimizer and epochs).
#
# Data: the Kaggle dogs vs. cats photos (`cats_and_dogs_filtered`, found in `MINIDL_DATA_DIR` or `../shared/data`)
# resized to 32x32 (quick) or 64x64 (full settings); when they are absent, the cat and dog images of the CIFAR-10
# sample embedded in minidl (200 + 200 for training, 50 + 50 for testing). Quick mode (the default,
# `MINIDL_NOTEBOOK_QUICK=1`) uses at most 400 training images and a few epochs; `MINIDL_NOTEBOOK_QUICK=0` uses all
# of them and trains for 30 epochs.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minidl
from minidl import nn, optim
from minidl import transforms as T
from minidl.data import DataLoader, Dataset
from minidl.data.datasets import CIFAR10Sample, DogsVsCats
from minidl.train import EarlyStopping, fit

QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"
DATA_DIR = os.environ.get("MINIDL_DATA_DIR") or ("../shared/data" if Path("../shared/data").is_dir() else None)
SIZE = 32 if QUICK else 64
MAX_TRAIN, MAX_TEST = (400, 200) if QUICK else (None, None)
EPOCHS = 5 if QUICK else 30
minidl.manual_seed(0)


def take(dataset, limit, seed):
    """Up to ``limit`` (image, label) pairs in a random order, as a (N, SIZE, SIZE, 3) uint8 array and labels."""
    order = np.random.default_rng(seed).permutation(len(dataset))[:limit]
    pairs = [dataset[int(k)] for k in order]
    return np.stack([np.asarray(img) for img, _ in pairs]), np.array([label for _, label in pairs])


try:
    resize = T.Resize((SIZE, SIZE))
    x_train, y_train = take(DogsVsCats(DATA_DIR, train=True, transform=resize), MAX_TRAIN, seed=0)
    x_test, y_test = take(DogsVsCats(DATA_DIR, train=False, transform=resize), MAX_TEST, seed=1)
    source = "dogs vs. cats"
except FileNotFoundError as error:  # no copy of the photos: CIFAR-10's cats (3) and dogs (5), relabelled 0 and 1
    print(error)
    SIZE = 32
    splits = []
    for train in (True, False):
        sample = CIFAR10Sample(train=train)
        keep = np.isin(sample.targets, [3, 5])
        splits.append((sample.data[keep], (np.asarray(sample.targets)[keep] == 5).astype(np.int64)))
    (x_train, y_train), (x_test, y_test) = splits
    source = "the CIFAR-10 sample's cats and dogs"
classes = ["cat", "dog"]
print(
    f"{source}: {len(x_train)} training and {len(x_test)} test images of {SIZE}x{SIZE}, "
    f"{np.mean(y_train == 1):.0%} dogs"
)

# %% [markdown]
# ## An augmentation gallery
#
# The first row: seven training images; each row below: one transform applied to them (one random draw each).
# Geometric transforms (flip, affine) and photometric ones (noise, histogram equalization) act per image; **ZCA
# whitening** and **featurewise standardization** are *fitted* on the training set first: featurewise
# standardization makes every channel zero mean and unit variance, $x' = (x - \mu_c) / \sigma_c$; ZCA decorrelates
# the pixels, $x' = U (\Lambda + \epsilon I)^{-1/2} U^\top (x - \mu)$ with $\Sigma = U \Lambda U^\top$ the pixel
# covariance, which leaves mostly edges (each picture is rescaled to [0, 1] for display, so featurewise
# standardization, a shift and scale per channel, looks almost unchanged). **Random erasing** blanks a rectangle;
# **Mixup** blends two images and their labels, $\tilde x = \lambda x_i + (1 - \lambda) x_j$,
# $\tilde y = \lambda y_i + (1 - \lambda) y_j$ with $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$, and **CutMix**
# pastes a patch of $x_j$ into $x_i$, with $\lambda$ the remaining area.

# %%
to_array = T.ToArray()
float_train = np.stack([to_array(img) for img in x_train])  # (N, 3, SIZE, SIZE) in [0, 1]
featurewise = T.FeaturewiseStandardize().fit(float_train)
STEP = SIZE // 16  # ZCA on 16x16 images: the covariance of 3 * 16 * 16 = 768 pixels (3,072 at 32x32 is slow)
zca = T.ZCAWhitening(eps=1e-2).fit(float_train[:, :, ::STEP, ::STEP])
per_image = {
    "horizontal flip": T.Compose([T.RandomHorizontalFlip(), to_array]),
    "affine": T.Compose([T.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10), to_array]),
    "gaussian noise": T.Compose([to_array, T.GaussianNoise(std=0.1)]),
    "histogram equalization": T.Compose([T.RandomEqualize(p=1.0), to_array]),
    "featurewise standardize": T.Compose([to_array, featurewise]),
    "ZCA whitening (16x16)": T.Compose([to_array, T.Lambda(lambda x: x[:, ::STEP, ::STEP]), zca]),
    "random erasing": T.Compose([to_array, T.RandomErasing(p=1.0)]),
}
batch = float_train[:7]
labels = y_train[:7]
mixed = {"Mixup": T.Mixup(alpha=0.4, num_classes=2), "CutMix": T.CutMix(alpha=1.0, num_classes=2)}


def show(ax, chw):
    """Draw a (C, H, W) float image, rescaled to [0, 1] (standardized and whitened images are not in [0, 1])."""
    img = np.moveaxis(np.asarray(chw, dtype=np.float64), 0, -1)
    ax.imshow((img - img.min()) / max(img.max() - img.min(), 1e-12))
    ax.set_xticks([])
    ax.set_yticks([])


rows = 1 + len(per_image) + len(mixed)
fig, axes = plt.subplots(rows, 7, figsize=(10, 1.5 * rows))
for c in range(7):
    show(axes[0, c], to_array(x_train[c]))
    axes[0, c].set_title(classes[y_train[c]], fontsize=8)
axes[0, 0].set_ylabel("original", rotation=0, ha="right", fontsize=9)
for r, (name, transform) in enumerate(per_image.items(), start=1):
    for c in range(7):
        show(axes[r, c], transform(x_train[c]))
    axes[r, 0].set_ylabel(name, rotation=0, ha="right", fontsize=9)
for r, (name, transform) in enumerate(mixed.items(), start=1 + len(per_image)):
    x_mixed, y_soft = transform(batch, labels)
    for c in range(7):
        show(axes[r, c], x_mixed[c])
        axes[r, c].set_title(f"dog {y_soft[c, 1]:.2f}", fontsize=8)
    axes[r, 0].set_ylabel(name, rotation=0, ha="right", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The baseline and its variants
#
# One network, five changes, each alone:
#
# * **dropout** before the classifier: each activation is zeroed with probability $p = 0.5$ during training and
#   the survivors are scaled by $1 / (1 - p)$;
# * **BatchNorm** after each convolution: $\hat x = (x - \mu_B) / \sqrt{\sigma_B^2 + \epsilon}$, then
#   $\gamma \hat x + \beta$;
# * **L2** and **L1** weight penalties, $\frac{\lambda}{2} \sum \theta^2$ and $\lambda \sum |\theta|$, added to the
#   loss with their gradients (`minidl.nn.l2_penalty`, `l1_penalty`);
# * **early stopping**: keep the weights of the epoch with the lowest validation loss;
# * **augmentation**: random crops (4 pixels of reflection padding) and horizontal flips.


# %%
class ArrayDataset(Dataset):
    """(H, W, 3) uint8 images and their labels, with a per-sample transform."""

    def __init__(self, images, targets, transform):
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(self.images[index]), int(self.targets[index])


MEAN = tuple(float(m) for m in float_train.mean(axis=(0, 2, 3)))
STD = tuple(float(s) for s in float_train.std(axis=(0, 2, 3)))
plain = T.Compose([T.ToArray(), T.Normalize(MEAN, STD)])
augmented = T.Compose(
    [
        T.RandomCrop(SIZE, padding=SIZE // 8, padding_mode="reflect"),
        T.RandomHorizontalFlip(),
        T.ToArray(),
        T.Normalize(MEAN, STD),
    ]
)
test_loader = DataLoader(ArrayDataset(x_test, y_test, plain), batch_size=200)


def make_model(batch_norm=False, dropout=0.0):
    def block(c_in, c_out):
        norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm), *norm, nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 32),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(32 * (SIZE // 8) ** 2, 2),
    )


def weights(model):
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


variants = {
    "baseline": {},
    "dropout 0.5": {"model": {"dropout": 0.5}},
    "BatchNorm": {"model": {"batch_norm": True}},
    "L2 (5e-3)": {"regularization": lambda m: nn.l2_penalty(weights(m), weight=5e-3)},
    "L1 (1e-3)": {"regularization": lambda m: nn.l1_penalty(weights(m), weight=1e-3)},
    "early stopping": {"callbacks": [EarlyStopping(monitor="val_loss", patience=3)]},
    "augmentation": {"transform": augmented},
}
results = {}
for name, options in variants.items():
    minidl.manual_seed(0)  # the same initial weights and batch order for every variant
    model = make_model(**options.get("model", {}))
    train_loader = DataLoader(
        ArrayDataset(x_train, y_train, options.get("transform", plain)), batch_size=32, shuffle=True, seed=0
    )
    history = fit(
        model,
        train_loader,
        test_loader,
        nn.CrossEntropyLoss(),
        optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        epochs=EPOCHS,
        callbacks=options.get("callbacks"),
        regularization=options.get("regularization"),
        progress=False,
        verbose=False,
    )
    final_val = minidl.train.evaluate(model, test_loader, nn.CrossEntropyLoss())  # early stopping restored its best
    results[name] = (history, final_val)

print(f"{'variant':<16}{'epochs':>7}{'train acc':>11}{'test acc':>10}{'test loss':>11}{'gap':>7}")
for name, (history, final_val) in results.items():
    train_acc = history["train_accuracy"][-1]
    print(
        f"{name:<16}{len(history['epoch']):>7}{train_acc:>11.3f}{final_val['accuracy']:>10.3f}"
        f"{final_val['loss']:>11.3f}{train_acc - final_val['accuracy']:>7.3f}"
    )

# %% [markdown]
# The test curves side by side: the baseline's test loss turns up as it overfits; the regularized runs delay or
# flatten that turn (with this few epochs in quick mode the differences are small and partly noise: run with
# `MINIDL_NOTEBOOK_QUICK=0` to see them separate).

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
for name, (history, _) in results.items():
    ax_loss.plot(history["epoch"], history["val_loss"], "o-", ms=3, label=name)
    ax_acc.plot(history["epoch"], history["val_accuracy"], "o-", ms=3, label=name)
ax_loss.set(xlabel="epoch", ylabel="test loss")
ax_acc.set(xlabel="epoch", ylabel="test accuracy")
ax_acc.legend(fontsize=8)
fig.tight_layout()
plt.show()
