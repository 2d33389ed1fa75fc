"""Visual explanations: saliency equals a finite-difference derivative, SmoothGrad is the mean of noisy saliencies,
Grad-CAM of a model trained in the test finds the bright square, class-model visualization raises the class score,
filter grids and activation maps equal the weights and outputs they show."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.viz import (
    activation_maps,
    class_model_visualization,
    filter_grid,
    grad_cam,
    resize_bilinear,
    saliency,
    smooth_grad,
)
from tests.helpers import arr, host

SIZE, SQUARE = 16, 4


def squares(n, rng):
    """Noise images (N, 1, 16, 16); label 1 has a bright 4x4 square at a random place (its top-left corner)."""
    x = 0.3 * rng.standard_normal((n, 1, SIZE, SIZE))
    y = rng.integers(0, 2, n)
    corners = rng.integers(0, SIZE - SQUARE + 1, (n, 2))
    for i in np.flatnonzero(y):
        r, c = corners[i]
        x[i, 0, r : r + SQUARE, c : c + SQUARE] += 2.0
    return x.astype(np.float32), y, corners


def square_net():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained (a few seconds) to tell images with a bright square from noise."""
    minidl.manual_seed(0)
    rng = np.random.default_rng(0)
    model = square_net()
    opt = optim.Adam(model.parameters(), lr=0.02)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(60):
        x, y, _ = squares(32, rng)
        model.zero_grad()
        loss_fn(model(arr(x)), arr(y))
        model.backward(loss_fn.backward())
        opt.step()
    x, y, corners = squares(200, np.random.default_rng(1))
    with minidl.no_grad():
        accuracy = float((host(model.eval()(arr(x))).argmax(1) == y).mean())
    model.train()
    assert accuracy > 0.95, accuracy
    return model


def _smooth_net():
    """float64, tanh (no kinks): finite differences are exact to ~1e-8."""
    minidl.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4)).double()


def test_saliency_is_the_derivative_of_the_class_score():
    model = _smooth_net()
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    target = np.array([3, 1])
    s = saliency(model, arr(x), target)
    assert s.gradient.shape == x.shape and s.map.shape == (2, 5, 5)
    np.testing.assert_array_equal(s.map, np.abs(s.gradient).max(axis=1))

    def score(xs, n):
        with minidl.no_grad():
            return float(host(model.eval()(arr(xs)))[n, target[n]])

    eps = 1e-6
    for n, c, i, j in [(0, 0, 0, 0), (0, 1, 2, 3), (1, 0, 4, 1), (1, 1, 2, 2)]:
        plus, minus = x.copy(), x.copy()
        plus[n, c, i, j] += eps
        minus[n, c, i, j] -= eps
        numeric = (score(plus, n) - score(minus, n)) / (2 * eps)
        assert s.gradient[n, c, i, j] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_the_model_is_left_as_it_was():
    model = _smooth_net()
    model.train()
    grads = [arr(np.full(p.shape, 3.0)) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g
    x = arr(np.random.default_rng(0).standard_normal((1, 2, 5, 5)))
    saliency(model, x, 0)
    grad_cam(model, x, 0, "1")
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is g and float(host(g).max()) == 3.0 for p, g in zip(model.parameters(), grads, strict=True))
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_smooth_grad_is_the_mean_of_noisy_saliencies():
    model = _smooth_net()
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    sg = smooth_grad(model, arr(x), [0, 2], n_samples=4, noise_level=0.2, seed=7)
    noise = np.random.default_rng(7).standard_normal((4, *x.shape))
    sigma = 0.2 * (x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True))
    maps = [saliency(model, arr(x + noise[s] * sigma), [0, 2]) for s in range(4)]
    np.testing.assert_allclose(sg.map, np.mean([m.map for m in maps], axis=0), rtol=1e-12)
    np.testing.assert_allclose(sg.gradient, np.mean([m.gradient for m in maps], axis=0), rtol=1e-12, atol=1e-15)
    assert not np.allclose(sg.map, saliency(model, arr(x), [0, 2]).map, rtol=1e-3)


def test_grad_cam_puts_its_peak_on_the_square(trained):
    x, y, corners = squares(120, np.random.default_rng(2))
    x, corners = x[y == 1], corners[y == 1]
    result = grad_cam(trained, arr(x), 1, trained[3])
    assert result.cam.shape == (len(x), SIZE, SIZE) and result.raw.shape == (len(x), SIZE, SIZE)
    assert result.cam.min() >= 0 and np.allclose(result.cam.max(axis=(1, 2)), 1.0)
    hits = 0
    for cam, (r, c) in zip(result.cam, corners, strict=True):
        i, j = np.unravel_index(cam.argmax(), cam.shape)
        hits += (r - 1 <= i <= r + SQUARE) and (c - 1 <= j <= c + SQUARE)
    assert hits / len(x) >= 0.9, f"the peak is on the square for {hits} of {len(x)} images"


def test_grad_cam_weights_are_the_mean_gradient_of_the_layer(trained):
    x, _, _ = squares(3, np.random.default_rng(3))
    result = grad_cam(trained, arr(x), 1, "3")
    model = trained.eval()
    A = host(model[:4](arr(x)))
    # the head after the layer is avg-pool + linear: d s_1 / d A_k = W_1k / (h w) everywhere
    W = host(model[6].weight.data)
    trained.train()
    np.testing.assert_allclose(result.weights, np.tile(W[1] / (SIZE * SIZE), (3, 1)), rtol=1e-5)
    np.testing.assert_allclose(result.raw, np.maximum(np.einsum("k,nkij->nij", W[1] / SIZE**2, A), 0), rtol=1e-4)


def test_class_model_visualization_raises_the_class_score(trained):
    result = class_model_visualization(trained, 1, (1, SIZE, SIZE), steps=40, lr=0.1, seed=0)
    assert result.image.shape == (1, SIZE, SIZE) and len(result.scores) == 41
    assert result.scores[-1] > result.scores[0] + 2.0, result.scores[::10]


def test_filter_grid_tiles_each_filter_scaled_to_0_1():
    minidl.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3)
    conv.weight.data[4] = 0.25  # a constant filter is drawn grey
    grid = filter_grid(conv, ncols=3, padding=1)
    assert grid.shape == (2 * 4 - 1, 3 * 4 - 1, 3)
    w = host(conv.weight.data).transpose(0, 2, 3, 1).astype(np.float64)
    for o in range(4):
        r, c = divmod(o, 3)
        tile = grid[4 * r : 4 * r + 3, 4 * c : 4 * c + 3]
        np.testing.assert_allclose(tile, (w[o] - w[o].min()) / (w[o].max() - w[o].min()))
    np.testing.assert_array_equal(grid[4:7, 4:7], 0.5)
    assert np.all(grid[3] == 1.0)  # padding
    gray = filter_grid(nn.Sequential(nn.ReLU(), nn.Conv2d(2, 4, 3)))  # the first Conv2d; C=2: one row per filter
    assert gray.shape == (4 * 4 - 1, 2 * 4 - 1)


def test_activation_maps_equal_the_layer_output(trained):
    x, _, _ = squares(4, np.random.default_rng(4))
    maps = activation_maps(trained, arr(x), "1")
    with minidl.no_grad():
        expected = host(trained.eval()[:2](arr(x)))
    trained.train()
    np.testing.assert_array_equal(maps, expected)
    assert trained.training


def test_resize_bilinear_matches_pytorch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).standard_normal((2, 4, 5))
    for size in [(16, 20), (7, 3), (4, 5)]:
        expected = torch.nn.functional.interpolate(torch.from_numpy(a)[:, None], size=size, mode="bilinear")
        np.testing.assert_allclose(resize_bilinear(a, size), expected[:, 0].numpy(), rtol=1e-12, atol=1e-12)


def test_bad_input_names_the_function_and_what_was_expected():
    model = _smooth_net()
    x = arr(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"saliency: target must be a class index or N=1 class indices, got \[0, 1\]"):
        saliency(model, x, [0, 1])
    with pytest.raises(ValueError, match="saliency: target .7. out of range for 4 classes"):
        saliency(model, x, 7)
    with pytest.raises(TypeError, match="saliency: x has dtype float32 but the model's parameters are float64"):
        saliency(model, arr(np.zeros((1, 2, 5, 5), np.float32)), 0)
    with pytest.raises(ValueError, match="grad_cam: the model has no module named 'conv9'"):
        grad_cam(model, x, 0, "conv9")
    with pytest.raises(ValueError, match=r"grad_cam: layer '3' outputs shape \(1, 4\); Grad-CAM needs feature maps"):
        grad_cam(model, x, 0, "3")
    with minidl.no_grad(), pytest.raises(RuntimeError, match="smooth_grad: needs a backward pass"):
        smooth_grad(model, x, 0)
    with pytest.raises(ValueError, match="filter_grid: the model has no Conv2d"):
        filter_grid(nn.Linear(2, 2))
