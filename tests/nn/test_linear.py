"""Linear: gradient checks, PyTorch parity (leading dimensions), init, accumulation, freezing, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn.linear import linear_backward, linear_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

features = st.integers(1, 5)
leading = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


def _layer(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    minidl.set_default_dtype(np.float64)
    try:
        return nn.Linear(in_features, out_features, bias=bias)
    finally:
        minidl.set_default_dtype(np.float32)


@given(seed=seeds, lead=leading, in_features=features, out_features=features, bias=st.booleans())
def test_module_gradcheck(seed, lead, in_features, out_features, bias):
    minidl.manual_seed(seed)
    layer = _layer(in_features, out_features, bias)
    x = arr(np.random.default_rng(seed).standard_normal(lead + (in_features,)))
    report = gradcheck.check_module(layer, x)
    assert [e.name for e in report.entries] == ["input", "weight"] + (["bias"] if bias else [])


@given(seed=seeds, lead=leading, in_features=features, out_features=features, bias=st.booleans())
def test_functional_gradcheck(seed, lead, in_features, out_features, bias):
    rng = np.random.default_rng(seed)
    x = arr(rng.standard_normal(lead + (in_features,)))
    w = arr(rng.standard_normal((out_features, in_features)))
    b = arr(rng.standard_normal(out_features)) if bias else None
    report = gradcheck.check_function(linear_forward, linear_backward, [x, w, b])
    assert len(report.entries) == (3 if bias else 2)


@given(seed=seeds, lead=leading, in_features=features, out_features=features, bias=st.booleans())
def test_torch_parity_with_leading_dims(seed, lead, in_features, out_features, bias):
    torch = torch_or_skip()
    minidl.manual_seed(seed)
    layer = _layer(in_features, out_features, bias)
    ref = torch.nn.Linear(in_features, out_features, bias=bias, dtype=torch.float64)
    ref.load_state_dict({k: torch.tensor(host(v)) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal(lead + (in_features,))
    dout_np = rng.standard_normal(lead + (out_features,))
    out = layer(arr(x_np))
    dx = layer.backward(arr(dout_np))
    t = to_torch(x_np, requires_grad=True)
    y = ref(t)
    y.backward(torch.tensor(dout_np))
    assert_close(out, y, what="forward")
    assert_close(dx, t.grad, what="dx")
    assert_close(layer.weight.grad, ref.weight.grad, what="dw")
    if bias:
        assert_close(layer.bias.grad, ref.bias.grad, what="db")
    else:
        assert layer.bias is None and "bias" not in layer.state_dict()


def test_state_dict_names_shapes_and_default_init():
    minidl.manual_seed(0)
    layer = nn.Linear(400, 30)
    sd = layer.state_dict()
    assert list(sd) == ["weight", "bias"]
    assert sd["weight"].shape == (30, 400) and sd["bias"].shape == (30,)
    assert sd["weight"].dtype == np.float32 and layer.bias.dtype == np.float32
    bound = 1 / math.sqrt(400)  # U(-1/sqrt(in), 1/sqrt(in)) for both weight and bias, as in PyTorch
    w, b = host(sd["weight"]), host(sd["bias"])
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound  # the std of U(-b, b) is b / sqrt(3)
    assert np.abs(b).max() > 0.5 * bound
    # reproducible with the seed
    minidl.manual_seed(0)
    assert_close(nn.Linear(400, 30).weight.data, w)
    assert repr(layer) == "Linear(in_features=400, out_features=30, bias=True)"
    assert repr(nn.Linear(2, 3, bias=False)) == "Linear(in_features=2, out_features=3, bias=False)"


def test_loads_a_pytorch_state_dict():
    torch = torch_or_skip()
    ref = torch.nn.Linear(6, 4)
    layer = nn.Linear(6, 4)
    layer.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    assert_close(layer(arr(x)), ref(torch.tensor(x)), atol=1e-6, rtol=1e-5)


def test_one_dimensional_input():
    layer = _layer(3, 2)
    x = arr(np.array([1.0, 2.0, 3.0]))
    out = layer(x)
    assert out.shape == (2,)
    dx = layer.backward(arr(np.ones(2)))
    assert dx.shape == (3,) and layer.weight.grad.shape == (2, 3)
    assert_close(layer.weight.grad, np.tile([1.0, 2.0, 3.0], (2, 1)))


def test_gradients_accumulate_over_two_backwards():
    layer = _layer(3, 2)
    rng = np.random.default_rng(1)
    x1, x2 = arr(rng.standard_normal((4, 3))), arr(rng.standard_normal((5, 3)))
    d1, d2 = arr(rng.standard_normal((4, 2))), arr(rng.standard_normal((5, 2)))
    layer(x1)
    layer.backward(d1)
    g1_w, g1_b = host(layer.weight.grad).copy(), host(layer.bias.grad).copy()
    layer(x2)
    layer.backward(d2)
    assert_close(layer.weight.grad, g1_w + host(d2).T @ host(x2))
    assert_close(layer.bias.grad, g1_b + host(d2).sum(0))
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_frozen_layer_leaves_grad_none_but_returns_dx():
    layer = _layer(3, 2).requires_grad_(False)
    x = arr(np.random.default_rng(2).standard_normal((4, 3)))
    layer(x)
    dx = layer.backward(arr(np.ones((4, 2))))
    assert layer.weight.grad is None and layer.bias.grad is None
    assert_close(dx, np.ones((4, 2)) @ host(layer.weight.data))
    # freezing only the weight still trains the bias
    layer.bias.requires_grad = True
    layer(x)
    layer.backward(arr(np.ones((4, 2))))
    assert layer.weight.grad is None
    assert_close(layer.bias.grad, np.full(2, 4.0))


def test_functional_can_skip_parameter_gradients():
    rng = np.random.default_rng(3)
    _, cache = linear_forward(arr(rng.standard_normal((2, 3))), arr(rng.standard_normal((4, 3))), None)
    dx, dw, db = linear_backward(arr(np.ones((2, 4))), cache, weight_grad=False)
    assert dx.shape == (2, 3) and dw is None and db is None


def test_works_in_float64_and_in_a_sequential():
    minidl.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(np.float64)
    x = arr(np.random.default_rng(0).standard_normal((5, 4)))
    gradcheck.check_module(net, x)


def test_bad_inputs():
    layer = nn.Linear(4, 3)
    with pytest.raises(
        ValueError,
        match=r"Linear\(in_features=4, out_features=3\): expected the input's last "
        r"dimension to be in_features=4, got shape \(2, 5\)",
    ):
        layer(arr(np.zeros((2, 5), np.float32)))
    with pytest.raises(
        TypeError,
        match=r"Linear\(in_features=4, out_features=3\): expected a floating-point input"
        r".*int64",
    ):
        layer(arr(np.zeros((2, 4), np.int64)))
    with pytest.raises(TypeError, match=r"the input has dtype float64 but the layer's parameters are float32"):
        layer(arr(np.zeros((2, 4), np.float64)))
    with pytest.raises(ValueError, match=r"expected an input with at least 1 dimension, got shape \(\)"):
        layer(arr(np.float32(1.0)))
    with pytest.raises(RuntimeError, match=r"Linear.backward\(\) was called without a matching forward"):
        layer.backward(arr(np.zeros((2, 3), np.float32)))
    layer(arr(np.zeros((2, 4), np.float32)))
    with pytest.raises(
        ValueError,
        match=r"linear_backward: the gradient has shape \(2, 4\) but the forward output "
        r"had shape \(2, 3\)",
    ):
        layer.backward(arr(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match=r"Linear: in_features must be >= 0, got -1"):
        nn.Linear(-1, 3)
    with pytest.raises(TypeError, match=r"Linear: out_features must be an int, got 2.5"):
        nn.Linear(3, 2.5)
    with pytest.raises(TypeError, match=r"Linear: bias must be a bool, got 'yes'"):
        nn.Linear(3, 2, bias="yes")
    with pytest.raises(
        ValueError,
        match=r"linear_forward: expected the input's last dimension to be in_features=4, got shape \(5,\)",
    ):
        linear_forward(arr(np.zeros(5)), arr(np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"linear_forward: bias must have shape \(3,\), got \(4,\)"):
        linear_forward(arr(np.zeros(4)), arr(np.zeros((3, 4))), arr(np.zeros(4)))
