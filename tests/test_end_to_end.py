"""End to end on real images: a small CNN starts at loss ln(10) and overfits one fixed batch of 32 images."""

from __future__ import annotations

import math

import numpy as np

import minidl
from minidl import nn, optim
from minidl.data.sample import load_cifar10_sample
from tests.helpers import arr, host


def small_cnn() -> nn.Sequential:
    """conv-BN-ReLU-pool x2, then linear: the network of the issue."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    )


def _batch(n: int = 32):
    x_train, y_train, *_ = load_cifar10_sample()
    x = x_train[:n].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    x = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
    return arr(x), arr(y_train[:n])


def test_initial_loss_is_ln10_and_one_batch_is_overfit():
    minidl.manual_seed(0)
    model = small_cnn()
    # a near-uniform initial prediction: shrink the classifier's weights, as many init schemes do for the last layer
    model[-1].weight.data *= 0.1
    x, y = _batch()
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(60):
        loss = loss_fn(model(x), y)
        losses.append(loss)
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    assert abs(losses[0] - math.log(10)) < 0.15, f"initial loss {losses[0]:.3f} should be about ln(10) = 2.303"
    model.eval()
    with minidl.no_grad():
        accuracy = float((host(model(x)).argmax(1) == host(y)).mean())
    assert accuracy == 1.0, f"train accuracy {accuracy:.2f} after 60 steps; losses {losses[::10]}"
    assert losses[-1] < 0.05


def test_gradients_of_the_whole_network_pass_a_random_direction_check():
    minidl.manual_seed(1)
    model = small_cnn().to(np.float64)
    x, _ = _batch(4)
    # Real images have flat regions (saturated sky, walls) whose conv outputs are exactly equal: max-pool ties,
    # where the derivative does not exist. A jitter of 1e-3, far above the probe step, breaks the ties.
    x = x.astype(np.float64) + arr(np.random.default_rng(2).normal(scale=1e-3, size=x.shape))
    minidl.gradcheck.check_module(model, x, mode="random_direction", directions=3)
