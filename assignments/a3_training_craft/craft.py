"""Assignment 3: the craft of training. Data augmentation, transfer learning, hyperparameter search.

You bring the data: the Dogs vs. Cats images (e.g. Kaggle's ``cats_and_dogs_filtered``) in a folder of your own,
passed to ``train_transfer.py --data-dir``. Nothing in this assignment contains those images.

Grade yourself with ``python -m minidl.assignments grade . --quick``. Do not change the signatures; write your code
where ``raise NotImplementedError`` stands.
"""

from __future__ import annotations

import numpy as np

from minidl import nn
from minidl import transforms as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------- 1. augmentation
def random_crop_flip(image, size, padding, rng):
    """Pad a (C, H, W) image with ``padding`` zeros on every side, cut a random ``size`` x ``size`` window out of it
    (every position equally likely, the last one included), and flip it left-right with probability 1/2.

    Args:
        image: (C, H, W) array.  size: the crop's side, at most H + 2 padding and W + 2 padding.
        padding: zeros added on each side.  rng: a ``numpy.random.Generator``: draw every random number from it.

    Returns:
        a (C, size, size) array.
    """
    # BEGIN SOLUTION
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    top = int(rng.integers(0, padded.shape[1] - size + 1))
    left = int(rng.integers(0, padded.shape[2] - size + 1))
    crop = padded[:, top : top + size, left : left + size]
    if rng.random() < 0.5:
        crop = crop[:, :, ::-1]
    return np.ascontiguousarray(crop)
    # END SOLUTION


def train_transform(size):
    """minidl.transforms for training images (PIL images in, (3, size, size) float32 arrays out): a random resized
    crop to ``size``, a random horizontal flip, ToArray, and Normalize with MEAN and STD."""
    # BEGIN SOLUTION
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToArray(), T.Normalize(MEAN, STD)])
    # END SOLUTION


def eval_transform(size):
    """The deterministic counterpart for validation: Resize the short side to ``size * 8 // 7``, CenterCrop
    ``size``, ToArray, Normalize with MEAN and STD."""
    # BEGIN SOLUTION
    return T.Compose([T.Resize(size * 8 // 7), T.CenterCrop(size), T.ToArray(), T.Normalize(MEAN, STD)])
    # END SOLUTION


# -------------------------------------------------------------------------------------- 2. transfer learning
def replace_head(model, num_classes):
    """Replace ``model.fc`` (a zoo ResNet's classifier) by a new ``nn.Linear`` with the same number of inputs and
    ``num_classes`` outputs; leave every other layer as it is. Returns the model."""
    # BEGIN SOLUTION
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
    # END SOLUTION


def freeze_all_but_head(model):
    """Stop every parameter outside ``model.fc`` from training (``requires_grad = False``); keep ``model.fc``'s
    trainable. Returns the number of trainable parameter values left."""
    # BEGIN SOLUTION
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("fc.")
    return sum(p.size for p in model.parameters() if p.requires_grad)
    # END SOLUTION


# ------------------------------------------------------------------------------------ 3. hyperparameter search
def sample_config(rng):
    """One random-search draw: ``{"lr": ..., "weight_decay": ..., "batch_size": ...}``, the learning rate
    log-uniform in [1e-4, 1e-1], the weight decay log-uniform in [1e-6, 1e-3], the batch size one of 32, 64, 128."""
    # BEGIN SOLUTION
    return {
        "lr": float(10 ** rng.uniform(-4, -1)),
        "weight_decay": float(10 ** rng.uniform(-6, -3)),
        "batch_size": int(rng.choice([32, 64, 128])),
    }
    # END SOLUTION


def random_search(objective, n_trials, rng):
    """Evaluate ``objective(config)`` (a validation accuracy: higher is better) on ``n_trials`` configurations from
    :func:`sample_config`. Returns ``(best_config, best_score, trials)``, trials the list of (config, score) in
    the order they ran."""
    # BEGIN SOLUTION
    trials = []
    for _ in range(n_trials):
        config = sample_config(rng)
        trials.append((config, float(objective(config))))
    best_config, best_score = max(trials, key=lambda trial: trial[1])
    return best_config, best_score, trials
    # END SOLUTION
