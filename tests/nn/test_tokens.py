"""The ViT sequence pairs (minidl.nn.tokens): gradient checks on drawn shapes, PyTorch parity, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import gradcheck
from minidl.nn import functional as F
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip

dims = st.integers(1, 4)


@given(n=dims, length=dims, d=dims, seed=st.integers(0, 2**16))
def test_class_token_gradcheck_and_pytorch_parity(n, length, d, seed):
    rng = np.random.default_rng(seed)
    x, token = arr(rng.normal(size=(n, length, d))), arr(rng.normal(size=(1, 1, d)))
    gradcheck.check_function(F.class_token_forward, F.class_token_backward, [x, token])
    torch = torch_or_skip()
    out, cache = F.class_token_forward(x, token)
    dout = arr(rng.normal(size=out.shape))
    dx, dtoken = F.class_token_backward(dout, cache)
    tx, tt = to_torch(x, True), to_torch(token, True)
    tout = torch.cat([tt.expand(n, -1, -1), tx], dim=1)
    tout.backward(to_torch(dout))
    assert_close(out, tout.detach().numpy(), atol=1e-12)
    assert_close(dx, tx.grad.numpy(), atol=1e-12)
    assert_close(dtoken, tt.grad.numpy(), atol=1e-12)


@given(n=dims, length=dims, d=dims, seed=st.integers(0, 2**16))
def test_position_embedding_gradcheck_and_pytorch_parity(n, length, d, seed):
    rng = np.random.default_rng(seed)
    x, pos = arr(rng.normal(size=(n, length, d))), arr(rng.normal(size=(1, length, d)))
    gradcheck.check_function(F.position_embedding_forward, F.position_embedding_backward, [x, pos])
    torch_or_skip()
    out, cache = F.position_embedding_forward(x, pos)
    dout = arr(rng.normal(size=out.shape))
    dx, dpos = F.position_embedding_backward(dout, cache)
    tx, tp = to_torch(x, True), to_torch(pos, True)
    (tx + tp).backward(to_torch(dout))
    assert_close(out, (tx + tp).detach().numpy(), atol=1e-12)
    assert_close(dx, tx.grad.numpy(), atol=1e-12)
    assert_close(dpos, tp.grad.numpy(), atol=1e-12)


@given(shape=st.lists(dims, min_size=2, max_size=4), data=st.data())  # (a 1-D input gives a 0-d output)
def test_select_gradcheck_and_pytorch_parity(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    index = data.draw(st.integers(-shape[dim], shape[dim] - 1))
    rng = np.random.default_rng(0)
    x = arr(rng.normal(size=shape))
    gradcheck.check_function(F.select_forward, F.select_backward, [x], {"dim": dim, "index": index})
    torch = torch_or_skip()
    out, cache = F.select_forward(x, dim, index)
    dout = arr(np.asarray(rng.normal(size=out.shape)))
    tx = to_torch(x, True)
    tout = torch.select(tx, dim, index)
    tout.backward(to_torch(dout))
    assert_close(out, tout.detach().numpy(), atol=0)
    assert_close(F.select_backward(dout, cache), tx.grad.numpy(), atol=0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: F.class_token_forward(arr(np.zeros((2, 3, 4))), arr(np.zeros((1, 1, 5)))),
            ValueError,
            r"class_token_forward: expected token of shape \(1, 1, 4\), got shape \(1, 1, 5\)",
        ),
        (
            lambda: F.position_embedding_forward(arr(np.zeros((2, 3, 4))), arr(np.zeros((2, 3, 4)))),
            ValueError,
            r"position_embedding_forward: expected pos of shape \(1, 3, 4\), got shape \(2, 3, 4\)",
        ),
        (
            lambda: F.position_embedding_forward(arr(np.zeros((2, 3, 4), np.float32)), arr(np.zeros((1, 3, 4)))),
            TypeError,
            r"position_embedding_forward.*float32.*float64|position_embedding_forward.*float64.*float32",
        ),
        (
            lambda: F.select_forward(arr(np.zeros((2, 3))), 2, 0),
            IndexError,
            r"select_forward: dim 2 is out of range for a 2-D input \(expected -2..1\)",
        ),
        (
            lambda: F.select_forward(arr(np.zeros((2, 3))), 1, 3),
            IndexError,
            r"select_forward: index 3 is out of range for dimension 1 of size 3",
        ),
    ],
)
def test_bad_input_is_refused_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_backward_refuses_a_gradient_of_the_wrong_shape():
    out, cache = F.select_forward(arr(np.zeros((2, 3, 4))), 1, 0)
    with pytest.raises(ValueError, match=r"select_backward: the gradient has shape \(2, 3\)"):
        F.select_backward(arr(np.zeros((2, 3))), cache)
    assert host(out).shape == (2, 4)
