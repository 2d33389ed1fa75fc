"""Graph blocks: Sequential, Residual, Concat, Flatten — forward shapes, gradient checks, PyTorch parity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip


def _f64(module):
    return module.to(np.float64)


@given(n=st.integers(1, 3), c=st.integers(1, 4), hw=st.integers(3, 6), seed=st.integers(0, 1000))
def test_residual_identity_shortcut_gradcheck(n, c, hw, seed):
    minidl.manual_seed(seed)
    block = _f64(nn.Residual(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.Tanh())))
    x = arr(np.random.default_rng(seed).normal(size=(n, c, hw, hw)))
    gradcheck.check_module(block, x)


@given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 4), seed=st.integers(0, 1000))
def test_residual_projection_shortcut_gradcheck(n, c, o, seed):
    minidl.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(c, o, 3, stride=2, padding=1), nn.Tanh(), nn.Conv2d(o, o, 3, padding=1))
    block = _f64(nn.Residual(body, shortcut=nn.Conv2d(c, o, 1, stride=2)))
    x = arr(np.random.default_rng(seed).normal(size=(n, c, 6, 6)))
    gradcheck.check_module(block, x)


@given(c=st.integers(1, 3), widths=st.lists(st.integers(1, 3), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_concat_gradcheck(c, widths, seed):
    minidl.manual_seed(seed)
    branches = [nn.Conv2d(c, w, 1) for w in widths] + [nn.Identity()]
    block = _f64(nn.Concat(*branches))
    x = arr(np.random.default_rng(seed).normal(size=(2, c, 3, 3)))
    out = block(x)
    assert out.shape == (2, sum(widths) + c, 3, 3)
    gradcheck.check_module(block, x)


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5), data=st.data())
def test_flatten_gradcheck_any_dims(shape, data):
    nd = len(shape)
    start = data.draw(st.integers(-nd, nd - 1))
    end = data.draw(st.integers(-nd, nd - 1))
    if start % nd > end % nd:
        start, end = end, start
    layer = nn.Flatten(start, end)
    x = arr(np.random.default_rng(0).normal(size=shape))
    out = layer(x)
    assert out.size == x.size and out.ndim == nd - (end % nd - start % nd)
    gradcheck.check_module(layer, x)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=5), data=st.data())
def test_permute_gradcheck_and_pytorch_parity_any_dims(shape, data):
    dims = data.draw(st.permutations(range(len(shape))))
    dims = [d - len(shape) if data.draw(st.booleans()) else d for d in dims]  # negative dims too
    layer = nn.Permute(dims)
    x = arr(np.random.default_rng(0).normal(size=shape))
    out = layer(x)
    assert out.shape == tuple(shape[d] for d in dims)
    gradcheck.check_module(layer, x)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(host(out), torch.tensor(host(x)).permute(dims).numpy())


@pytest.mark.parametrize(
    ("dims", "error", "message"),
    [
        ([0, 0, 1], ValueError, r"Permute: dims must be a permutation of 0..2, got \(0, 0, 1\)"),
        ([0, 3, 1], ValueError, r"Permute: dims must be a permutation of 0..2, got \(0, 3, 1\)"),
        ("021", TypeError, r"Permute: dims must be a sequence of ints \(a permutation\), got '021'"),
        ([0, 1.0, 2], TypeError, r"Permute: dims must hold ints, got \(0, 1.0, 2\)"),
    ],
)
def test_permute_refuses_what_is_not_a_permutation(dims, error, message):
    with pytest.raises(error, match=message):
        nn.Permute(dims)


def test_permute_refuses_an_input_of_another_rank():
    with pytest.raises(ValueError, match=r"Permute\(dims=\[0, 2, 1\]\).*3-D|Permute\(dims=\[0, 2, 1\]\).*ndim"):
        nn.Permute([0, 2, 1])(arr(np.zeros((2, 3), np.float32)))


def test_residual_shape_mismatch_says_what_to_do():
    block = nn.Residual(nn.Conv2d(2, 4, 3, padding=1))
    with pytest.raises(
        ValueError, match=r"body's output has shape \(1, 4, 5, 5\) but the shortcut's has \(1, 2, 5, 5\)"
    ):
        block(arr(np.zeros((1, 2, 5, 5), np.float32)))


def test_concat_mismatched_branches_are_named():
    block = nn.Concat(nn.Conv2d(2, 2, 3), nn.Identity())
    with pytest.raises(ValueError, match="branch 1 returned shape"):
        block(arr(np.zeros((1, 2, 5, 5), np.float32)))


def test_flatten_backward_checks_the_gradient_shape():
    layer = nn.Flatten()
    layer(arr(np.zeros((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match=r"flatten_backward: the gradient has shape \(2, 11\)"):
        layer.backward(arr(np.zeros((2, 11), np.float32)))


def test_residual_block_matches_pytorch():
    torch = torch_or_skip()
    minidl.manual_seed(0)
    conv1, conv2, proj = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(3, 4, 1, 2)
    block = _f64(nn.Residual(nn.Sequential(conv1, nn.ReLU(), conv2), shortcut=proj))
    t_conv = [
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.Conv2d(3, 4, 1, 2),
    ]
    for m, t in zip((conv1, conv2, proj), t_conv, strict=False):
        t.double()
        t.load_state_dict({k: torch.tensor(host(v)) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(2, 3, 7, 7))
    dout = np.random.default_rng(1).normal(size=(2, 4, 4, 4))
    xt = to_torch(x, requires_grad=True)
    yt = t_conv[1](torch.relu(t_conv[0](xt))) + t_conv[2](xt)
    yt.backward(torch.tensor(dout))
    y = block(arr(x))
    dx = block.backward(arr(dout))
    assert_close(y, yt, what="residual forward")
    assert_close(dx, xt.grad, what="residual dx")
    for m, t in zip((conv1, conv2, proj), t_conv, strict=False):
        assert_close(m.weight.grad, t.weight.grad, what="conv weight grad")
