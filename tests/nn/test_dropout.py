"""Dropout and Dropout2d: train vs eval, scaling, statistics, seeding, channel masks, gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn.dropout import dropout2d_backward, dropout2d_forward, dropout_backward, dropout_forward
from tests.helpers import arr, assert_close, host
from tests.strategies import seeds

probabilities = st.floats(0.0, 0.95)


def test_train_drops_and_scales_eval_is_identity():
    minidl.manual_seed(0)
    drop = nn.Dropout(p=0.25)
    x_np = np.random.default_rng(0).uniform(1, 2, (50, 40)).astype(np.float32)
    out = host(drop(arr(x_np)))
    kept = out != 0
    assert_close(out[kept], x_np[kept] / 0.75, atol=1e-6, rtol=1e-6, what="kept units scaled by 1/(1-p)")
    assert 0.2 < 1 - kept.mean() < 0.3
    drop.eval()
    assert_close(drop(arr(x_np)), x_np, what="eval mode")
    assert_close(drop.backward(arr(np.ones_like(x_np))), np.ones_like(x_np), what="eval backward")
    drop.train()
    assert (host(drop(arr(x_np))) == 0).any()
    assert repr(drop) == "Dropout(p=0.25, inplace=False)"


def test_mean_is_preserved_statistically():
    minidl.manual_seed(123)
    x = arr(np.ones((400, 500)))
    for p in (0.1, 0.5, 0.8):
        out = host(nn.Dropout(p)(x))
        assert abs(out.mean() - 1.0) < 0.02, f"p={p}: mean {out.mean()}"
        assert abs((out == 0).mean() - p) < 0.01
        out2d = host(nn.Dropout2d(p)(arr(np.ones((200, 100, 2, 2)))))
        assert abs(out2d.mean() - 1.0) < 0.03, f"Dropout2d p={p}: mean {out2d.mean()}"


def test_same_seed_same_mask_and_different_seed_different_mask():
    x = arr(np.ones((8, 16)))
    minidl.manual_seed(5)
    a = host(nn.Dropout()(x))
    minidl.manual_seed(5)
    b = host(nn.Dropout()(x))
    minidl.manual_seed(6)
    c = host(nn.Dropout()(x))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    minidl.manual_seed(5)
    out, _ = dropout_forward(x, 0.5, True)
    np.testing.assert_array_equal(host(out), a)


def test_p_zero_and_p_one():
    x = arr(np.random.default_rng(0).standard_normal((3, 4)))
    for cls in (nn.Dropout, nn.Dropout2d):
        shape = (2, 3, 2, 2) if cls is nn.Dropout2d else (3, 4)
        x = arr(np.random.default_rng(0).standard_normal(shape))
        assert_close(cls(p=0.0)(x), x)
        drop = cls(p=1.0)
        out = drop(x)  # no division by zero (and no RuntimeWarning, which the test config turns into an error)
        assert (host(out) == 0).all() and out.dtype == x.dtype
        assert (host(drop.backward(arr(np.ones(shape)))) == 0).all()


@given(seed=seeds, p=probabilities, shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
def test_gradient_flows_only_through_kept_units(seed, p, shape):
    minidl.manual_seed(seed)
    drop = nn.Dropout(p)
    x_np = np.random.default_rng(seed).uniform(0.5, 1.5, shape)
    out = host(drop(arr(x_np)))
    dout_np = np.random.default_rng(seed + 1).standard_normal(shape)
    dx = host(drop.backward(arr(dout_np)))
    kept = out != 0
    expected = np.where(kept, dout_np / (1 - p), 0.0)
    assert_close(dx, expected, what=f"p={p}")


@given(seed=seeds, p=probabilities, shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
def test_dropout_gradcheck(seed, p, shape):
    x = arr(np.random.default_rng(seed).standard_normal(shape))
    gradcheck.check_module(nn.Dropout(p), x, seed=seed)
    gradcheck.check_function(dropout_forward, dropout_backward, [x], {"p": p, "training": True}, seed=seed)
    gradcheck.check_function(dropout_forward, dropout_backward, [x], {"p": p, "training": False}, seed=seed)


@given(
    seed=seeds, p=probabilities, n=st.integers(1, 3), c=st.integers(1, 4), hw=st.integers(1, 3), four_d=st.booleans()
)
def test_dropout2d_gradcheck(seed, p, n, c, hw, four_d):
    shape = (n, c, hw, hw + 1) if four_d else (n, c, hw + 1)
    x = arr(np.random.default_rng(seed).standard_normal(shape))
    gradcheck.check_module(nn.Dropout2d(p), x, seed=seed)
    gradcheck.check_function(dropout2d_forward, dropout2d_backward, [x], {"p": p}, seed=seed)


@pytest.mark.parametrize("shape", [(4, 6, 5, 3), (4, 6, 5)])
def test_dropout2d_zeros_whole_channels(shape):
    minidl.manual_seed(1)
    drop = nn.Dropout2d(p=0.5)
    x = arr(np.random.default_rng(0).uniform(1, 2, shape))
    out = host(drop(x))
    spatial = tuple(range(2, len(shape)))
    dropped = (out == 0).all(axis=spatial)
    kept = (out != 0).all(axis=spatial)
    assert (dropped | kept).all(), "every channel is either dropped entirely or kept entirely"
    assert dropped.any() and kept.any()
    assert_close(out[kept], host(x)[kept] * 2)
    dx = host(drop.backward(arr(np.ones(shape))))
    assert (dx[dropped] == 0).all() and (dx[kept] == 2).all()
    assert repr(drop) == "Dropout2d(p=0.5, inplace=False)"


def test_dropout_in_a_sequential_follows_train_and_eval():
    minidl.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    x = arr(np.ones((16, 4), np.float32))
    net.eval()
    assert_close(net(x), net(x))
    net.train()
    assert (host(net(x)) == 0).any()
    net.backward(arr(np.ones((16, 4), np.float32)))
    assert net[0].weight.grad is not None


def test_no_grad_keeps_no_mask():
    drop = nn.Dropout()
    with minidl.no_grad():
        drop(arr(np.ones(4)))
    with pytest.raises(RuntimeError, match=r"Dropout.backward\(\) was called without a matching forward"):
        drop.backward(arr(np.ones(4)))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Dropout: dropout probability p must be <= 1.0, got 1.5"):
        nn.Dropout(p=1.5)
    with pytest.raises(ValueError, match=r"Dropout2d: dropout probability p must be >= 0.0, got -0.1"):
        nn.Dropout2d(p=-0.1)
    with pytest.raises(TypeError, match=r"Dropout: dropout probability p must be a real number, got '0.5'"):
        nn.Dropout(p="0.5")
    with pytest.raises(TypeError, match=r"Dropout: inplace must be a bool"):
        nn.Dropout(0.5, inplace=None)
    with pytest.raises(ValueError, match=r"dropout_forward: dropout probability p must be <= 1.0, got 2.0"):
        dropout_forward(arr(np.ones(3)), p=2.0)
    with pytest.raises(
        ValueError,
        match=r"Dropout2d\(p=0.5\): expected a 3-D \(N, C, L\) or 4-D \(N, C, H, W\) "
        r"input, got shape \(2, 3\)",
    ):
        nn.Dropout2d()(arr(np.ones((2, 3))))
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\): expected a floating-point input.*int64"):
        nn.Dropout()(arr(np.ones(3, np.int64)))
    with pytest.raises(RuntimeError, match=r"Dropout2d.backward\(\) was called without a matching forward"):
        nn.Dropout2d().backward(arr(np.ones((1, 1, 1, 1))))
    drop = nn.Dropout()
    drop(arr(np.ones((2, 2))))
    with pytest.raises(ValueError, match=r"dropout_backward: the gradient has shape \(4,\)"):
        drop.backward(arr(np.ones(4)))
