"""Mul: a fixed scaling, its gradient, its dtype, its errors."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import gradcheck, nn
from minidl.nn.scale import mul_backward, mul_forward
from tests.helpers import arr, host


def test_gradcheck_module_and_pair():
    x = arr(np.random.default_rng(0).standard_normal((3, 4)))
    gradcheck.check_module(nn.Mul(-2.5), x)
    gradcheck.check_function(mul_forward, mul_backward, [x], {"scale": 1 / 9})


def test_keeps_dtype_and_values():
    x = arr(np.array([[9.0, -18.0]], np.float32))
    m = nn.Mul(1 / 9)
    y = m(x)
    assert y.dtype == np.float32 and np.allclose(host(y), [[1.0, -2.0]])
    dx = m.backward(arr(np.ones((1, 2), np.float32)))
    assert dx.dtype == np.float32 and np.allclose(host(dx), 1 / 9)
    assert repr(m) == "Mul(scale=0.1111111111111111)"


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match="Mul: scale must be finite, got nan"):
        nn.Mul(float("nan"))
    with pytest.raises(TypeError, match="Mul"):
        nn.Mul("2")
    m = nn.Mul(2.0)
    m(arr(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="mul_backward"):
        m.backward(arr(np.zeros((3, 2), np.float32)))
