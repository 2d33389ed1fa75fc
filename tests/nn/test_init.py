"""Initializers: sample statistics match the formulas; gains and fans match PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.nn import init
from tests.helpers import torch_or_skip

SHAPES = [(512, 256), (128, 64, 3, 3), (64, 16, 5, 5)]


def _fans(shape):
    rf = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * rf, shape[0] * rf


def _assert_moments(w, mean, std, bound=None):
    n = w.size
    # the sample mean of n draws has std std/sqrt(n): allow 5 of those; the sample std is within a few percent
    assert abs(float(w.mean()) - mean) < 5 * std / math.sqrt(n)
    assert float(w.std()) == pytest.approx(std, rel=0.03)
    if bound is not None:
        assert float(np.abs(w).max()) <= bound


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier_uniform_and_normal(shape, gain):
    fan_in, fan_out = _fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    minidl.manual_seed(0)
    _assert_moments(init.xavier_uniform_(np.empty(shape), gain), 0.0, std, bound=math.sqrt(3) * std)
    _assert_moments(init.xavier_normal_(np.empty(shape), gain), 0.0, std)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity,a", [("relu", 0.0), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5))])
def test_kaiming_uniform_and_normal(shape, mode, nonlinearity, a):
    fan = _fans(shape)[0 if mode == "fan_in" else 1]
    std = init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    minidl.manual_seed(1)
    _assert_moments(init.kaiming_uniform_(np.empty(shape), a, mode, nonlinearity), 0.0, std, bound=math.sqrt(3) * std)
    _assert_moments(init.kaiming_normal_(np.empty(shape), a, mode, nonlinearity), 0.0, std)


def test_uniform_normal_constant_and_trunc_normal():
    minidl.manual_seed(2)
    _assert_moments(init.uniform_(np.empty((200, 200)), -2.0, 2.0), 0.0, 4 / math.sqrt(12), bound=2.0)
    _assert_moments(init.normal_(np.empty((200, 200)), 1.0, 0.5), 1.0, 0.5)
    w = init.trunc_normal_(np.empty((200, 200)), 0.0, 1.0, -1.0, 1.0)
    assert w.min() >= -1.0 and w.max() <= 1.0
    assert init.constant_(np.empty(3), 0.25).tolist() == [0.25] * 3
    assert init.zeros_(np.ones(2)).tolist() == [0, 0] and init.ones_(np.zeros(2)).tolist() == [1, 1]


def test_orthogonal_and_eye_and_dirac():
    w = init.orthogonal_(np.empty((6, 10)))
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-10)
    assert np.array_equal(init.eye_(np.empty((2, 3))), np.eye(2, 3))
    conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
    init.dirac_(conv.weight)
    x = np.random.default_rng(0).normal(size=(1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(minidl.to_numpy(conv(minidl.get_backend().asarray(x))), x, atol=1e-6)


def test_initializers_accept_parameters_and_are_seeded():
    p = nn.Parameter(np.empty((4, 4), np.float32))
    minidl.manual_seed(3)
    first = init.kaiming_normal_(p).data.copy()
    minidl.manual_seed(3)
    assert np.array_equal(init.kaiming_normal_(p).data, first)
    assert p.dtype == np.float32


def test_errors_are_clear():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(np.empty(5))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_uniform_(np.empty((2, 2)), mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match="expected an array or a Parameter"):
        init.normal_([1.0, 2.0])


@pytest.mark.parametrize(
    "nonlinearity,param",
    [
        ("linear", None),
        ("conv2d", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("selu", None),
    ],
)
def test_gains_match_pytorch(nonlinearity, param):
    torch = torch_or_skip()
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param))


@pytest.mark.parametrize("shape", SHAPES + [(10, 3, 7)])
def test_fans_match_pytorch(shape):
    torch = torch_or_skip()
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == expected


def test_default_layer_init_bounds_match_pytorch_formula():
    minidl.manual_seed(4)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    assert float(np.abs(layer.weight.data).max()) <= bound and float(np.abs(layer.bias.data).max()) <= bound
    assert float(layer.weight.data.std()) == pytest.approx(bound / math.sqrt(3), rel=0.03)


# ------------------------------------------------------------------------------------- dirac_ and patch whitening
@pytest.mark.parametrize("shape, groups", [((4, 2, 3, 3), 1), ((6, 2, 3), 2), ((8, 4, 3, 3, 3), 2), ((3, 5, 3, 3), 1)])
def test_dirac_matches_torch(shape, groups):
    torch = pytest.importorskip("torch")
    mine = init.dirac_(np.full(shape, 7.0), groups=groups)
    ref = torch.full(shape, 7.0)
    torch.nn.init.dirac_(ref, groups=groups)
    assert np.array_equal(mine, ref.numpy())


def test_dirac_rejects_groups_that_do_not_divide():
    with pytest.raises(
        ValueError, match="dirac_: groups must be a positive int that divides the 6 output channels, got 4"
    ):
        init.dirac_(np.zeros((6, 2, 3, 3)), groups=4)


def _patches(x: np.ndarray, k: int) -> np.ndarray:
    """Every k x k patch, flattened in (c, p, q) order: a loop reference."""
    N, C, H, W = x.shape
    return np.array(
        [x[n, :, i : i + k, j : j + k].ravel() for n in range(N) for i in range(H - k + 1) for j in range(W - k + 1)]
    )


def test_patch_covariance_matches_a_loop():
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 6))
    p = _patches(x, 2)
    np.testing.assert_allclose(init.patch_covariance(x, 2), p.T @ p / len(p), rtol=1e-12)


def test_patch_whitening_decorrelates_the_patches():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 3, 10, 10))
    x[:, 1] += 0.8 * x[:, 0]  # correlated channels
    x[:, :, :, 1:] += 0.5 * x[:, :, :, :-1]  # and neighbouring pixels
    w = init.patch_whitening_(np.empty((24, 3, 2, 2)), x, eps=0.0)
    np.testing.assert_allclose(w[:12], -w[12:])
    p = _patches(x, 2)
    z = p @ w[:12].reshape(12, -1).T  # what the conv computes on every patch
    np.testing.assert_allclose(z.T @ z / len(z), np.eye(12), atol=1e-8)
    # eps damps: the variances become lambda / (lambda + eps) < 1, smallest for the weakest direction
    damped = init.patch_whitening_(np.empty((12, 3, 2, 2)), x, eps=0.5)
    v = np.diag((p @ damped.reshape(12, -1).T).T @ (p @ damped.reshape(12, -1).T) / len(p))
    assert np.all(v < 1) and np.all(np.diff(v) < 0)


def test_patch_whitening_matches_airbench_up_to_signs():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((20, 3, 8, 8)).astype(np.float32)
    t = torch.tensor(x)  # airbench's get_patches / get_whitening_parameters, written out
    patches = t.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2).double()
    flat = patches.reshape(len(patches), -1)
    values, vectors = torch.linalg.eigh(flat.T @ flat / len(flat))
    ref = (vectors.T.reshape(12, 3, 2, 2).flip(0) / torch.sqrt(values.flip(0) + 5e-4).view(-1, 1, 1, 1)).numpy()
    mine = init.patch_whitening_(np.empty((24, 3, 2, 2)), x)[:12]
    signs = np.sign((mine * ref).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(mine, ref * signs[:, None, None, None], rtol=1e-6, atol=1e-8)


def test_patch_whitening_errors():
    x = np.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"O = C\*KH\*KW = 12 or 2\*12 = 24 output channels, got O = 16"):
        init.patch_whitening_(np.empty((16, 3, 2, 2)), x)
    with pytest.raises(ValueError, match=r"patch_whitening_: the weight expects 3 input channels .* \(2, 1, 8, 8\)"):
        init.patch_whitening_(np.empty((24, 3, 2, 2)), np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="patch_covariance: expected images as an .N, C, H, W. float array"):
        init.patch_covariance(np.zeros((2, 8, 8, 3), np.uint8), 2)
