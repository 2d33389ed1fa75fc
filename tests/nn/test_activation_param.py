"""PReLU (and Hardsigmoid at its corners): gradient checks, PyTorch parity of the output and both gradients, bad input.

Hardsigmoid's gradient check and parity run with the other activations in ``test_activation.py`` (its SPECS)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minidl import gradcheck, nn
from minidl.nn.activation import hardsigmoid_backward, hardsigmoid_forward, prelu_backward, prelu_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import array_away_from, seeds


@st.composite
def prelu_cases(draw):
    """(shape, num_parameters): one slope for any shape, or C slopes for (N, C, *)."""
    shared = draw(st.booleans())
    ndim = draw(st.integers(0 if shared else 2, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    return shape, 1 if shared else shape[1]


@given(seed=seeds, case=prelu_cases())
def test_gradcheck(seed, case):
    shape, num_parameters = case
    assume(shape != ())  # gradcheck hands a 0-D output's backward a Python float (the parity test covers 0-D)
    rng = np.random.default_rng(seed)
    x, weight = arr(array_away_from(rng, shape)), arr(rng.uniform(-0.5, 1.0, num_parameters))
    gradcheck.check_function(prelu_forward, prelu_backward, [x, weight])
    layer = nn.PReLU(num_parameters, init=0.1).double()
    gradcheck.check_module(layer, x)


@given(seed=seeds, case=prelu_cases())
def test_torch_parity_forward_and_both_gradients(seed, case):
    torch = torch_or_skip()
    shape, num_parameters = case
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal(shape) * 3
    x_np.flat[: x_np.size // 3] = 0.0  # the kink: PyTorch's slope there is the weight
    w_np, dout_np = rng.uniform(-0.5, 1.0, num_parameters), rng.standard_normal(shape)
    layer = nn.PReLU(num_parameters).double()
    layer.weight.data[...] = arr(w_np)
    out = layer(arr(x_np))
    dx = layer.backward(arr(dout_np))
    t, tw = to_torch(x_np, requires_grad=True), to_torch(w_np, requires_grad=True)
    ref = torch.nn.functional.prelu(t, tw)
    ref.backward(torch.tensor(dout_np))
    assert_close(out, ref, what=f"prelu forward {shape}")
    assert_close(dx, t.grad, what=f"prelu dx {shape}")
    assert_close(layer.weight.grad, tw.grad, what=f"prelu dweight {shape}")


def test_module_matches_pytorch_defaults():
    layer = nn.PReLU(3)
    assert repr(layer) == "PReLU(num_parameters=3)" and list(layer.state_dict()) == ["weight"]
    assert host(layer.weight.data).tolist() == [0.25] * 3 and layer.weight.dtype == np.float32
    y = layer(arr(np.array([[-4.0, 1.0, -2.0]], np.float32)))
    assert host(y).tolist() == [[-1.0, 1.0, -0.5]]


def test_hardsigmoid_is_zero_and_one_outside_and_its_gradient_zero_at_the_corners():
    x = arr(np.array([-5.0, -3.0, -1.5, 0.0, 3.0, 5.0]))
    out, cache = hardsigmoid_forward(x)
    assert host(out).tolist() == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    assert_close(hardsigmoid_backward(arr(np.ones(6)), cache), arr([0, 0, 1 / 6, 1 / 6, 0, 0]))
    assert repr(nn.Hardsigmoid()) == "Hardsigmoid()"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.PReLU(3)(arr(np.ones((2, 4), np.float32))), ValueError,
         r"^PReLU\(num_parameters=3\): expected 3 channels in dimension 1 of the input \(one per slope; "
         r"num_parameters=3\), got shape \(2, 4\)"),
        (lambda: nn.PReLU(3)(arr(np.ones(3, np.float32))), ValueError,
         r"^PReLU\(num_parameters=3\): expected 3 channels in dimension 1 .* got shape \(3,\)"),
        (lambda: nn.PReLU(2)(arr(np.ones((2, 2)))), TypeError,
         r"^PReLU\(num_parameters=2\): the input has dtype float64 but the layer's parameters are float32"),
        (lambda: nn.PReLU(0), ValueError, r"^PReLU: num_parameters must be >= 1, got 0"),
        (lambda: nn.PReLU(init=None), TypeError, r"^PReLU: init must be a real number, got None"),
        (lambda: prelu_forward(arr(np.ones(2)), arr(np.ones((1, 1)))), ValueError,
         r"^prelu_forward: expected a 1-D weight, got shape \(1, 1\) \(2-D\)"),
        (lambda: nn.Hardsigmoid()(arr(np.ones(2, np.int32))), TypeError,
         r"^Hardsigmoid: expected a floating-point input .* got dtype int32"),
    ],
)  # fmt: skip
def test_bad_input_names_the_layer_expected_and_received(call, error, match):
    with pytest.raises(error, match=match):
        call()
