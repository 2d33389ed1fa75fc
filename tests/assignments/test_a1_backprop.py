"""A1: the solution's two-layer net has the gradients of finite differences, and it learns."""

from __future__ import annotations

import numpy as np

from minidl.gradcheck import numerical_gradient
from tests.assignments.helpers import load_solution


def test_the_two_layer_net_gradients_match_finite_differences():
    layers = load_solution("a1_backprop", "layers")
    rng = np.random.default_rng(0)
    net = layers.TwoLayerNet(5, 6, 3, std=1.0, seed=1)
    x, target = rng.standard_normal((4, 5)), rng.integers(0, 3, 4)
    _, grads = net.loss(x, target)
    for key, value in net.params.items():
        numeric = numerical_gradient(lambda: net.loss(x, target)[0], value)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-5, atol=1e-8, err_msg=key)


def test_the_two_layer_net_fits_a_small_batch():
    layers = load_solution("a1_backprop", "layers")
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((20, 8)), rng.integers(0, 4, 20)
    net = layers.TwoLayerNet(8, 32, 4, std=0.1, seed=0)
    first, _ = net.loss(x, target)
    for _ in range(300):
        loss, grads = net.loss(x, target)
        for key, value in grads.items():
            net.params[key] -= 0.5 * value
    assert loss < 0.1 * first
    assert (net.scores(x).argmax(axis=1) == target).all()
