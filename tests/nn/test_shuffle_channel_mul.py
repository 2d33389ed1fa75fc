"""ChannelShuffle (the channel_shuffle pair) and ChannelMul (the channel_mul pair): the definitions, float64
gradient checks, PyTorch parity and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import gradcheck, nn
from minidl.nn import functional as F
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip


def naive_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """Output channel k * G + g is input channel g * K + k, written as a loop."""
    C = x.shape[1]
    K = C // groups
    out = np.empty_like(x)
    for g in range(groups):
        for k in range(K):
            out[:, k * groups + g] = x[:, g * K + k]
    return out


@pytest.mark.parametrize(
    ("shape", "groups"), [((2, 6, 3, 4), 2), ((1, 12, 2, 2), 3), ((2, 4, 5), 4), ((3, 5, 2, 2), 1)]
)
def test_channel_shuffle_forward_is_the_definition_and_backward_its_inverse(shape, groups):
    x = np.random.default_rng(0).standard_normal(shape)
    out, cache = F.channel_shuffle_forward(arr(x), groups)
    np.testing.assert_array_equal(host(out), naive_shuffle(x, groups))
    np.testing.assert_array_equal(host(F.channel_shuffle_backward(out, cache)), x)  # a permutation: dx = P^T dout


def test_channel_shuffle_gradcheck():
    x = arr(np.random.default_rng(1).standard_normal((2, 6, 2, 3)))
    gradcheck.check_function(F.channel_shuffle_forward, F.channel_shuffle_backward, [x], {"groups": 3})


@pytest.mark.parametrize("groups", [2, 3])
def test_channel_shuffle_matches_torch(groups):
    torch = torch_or_skip()
    x = np.random.default_rng(2).standard_normal((2, 6, 3, 3))
    xt = to_torch(x, requires_grad=True)
    expected = torch.nn.ChannelShuffle(groups)(xt)
    layer = nn.ChannelShuffle(groups)
    out = layer(arr(x))
    assert_close(out, expected, atol=0, rtol=0, what="ChannelShuffle output")
    dout = np.random.default_rng(3).standard_normal(out.shape)
    expected.backward(torch.from_numpy(dout))
    assert_close(layer.backward(arr(dout)), xt.grad, atol=0, rtol=0, what="ChannelShuffle dx")
    assert repr(layer) == repr(torch.nn.ChannelShuffle(groups))


def test_channel_shuffle_errors():
    message = (
        r"channel_shuffle_forward: the 5 channels \(dimension 1 of shape \(1, 5, 2, 2\)\) do not divide into groups=2"
    )
    with pytest.raises(ValueError, match=message):
        F.channel_shuffle_forward(np.zeros((1, 5, 2, 2)), 2)
    with pytest.raises(ValueError, match=r"at least 3 dimensions, got shape \(4, 6\)"):
        nn.ChannelShuffle(2)(np.zeros((4, 6)))
    with pytest.raises(ValueError, match=r"ChannelShuffle: groups must be"):
        nn.ChannelShuffle(0)
    _, cache = F.channel_shuffle_forward(np.zeros((1, 4, 2, 2)), 2)
    with pytest.raises(ValueError, match=r"channel_shuffle_backward: the gradient has shape \(1, 4, 2\)"):
        F.channel_shuffle_backward(np.zeros((1, 4, 2)), cache)


def test_channel_mul_forward_backward_gradcheck():
    rng = np.random.default_rng(4)
    x, s = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 1, 1))
    out, cache = F.channel_mul_forward(arr(x), arr(s))
    for n in range(2):
        for c in range(3):
            np.testing.assert_array_equal(host(out)[n, c], x[n, c] * s[n, c, 0, 0])
    gradcheck.check_function(F.channel_mul_forward, F.channel_mul_backward, [arr(x), arr(s)])


def test_channel_mul_matches_torch():
    torch = torch_or_skip()
    rng = np.random.default_rng(5)
    x, s = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 1, 1))
    xt, st = to_torch(x, requires_grad=True), to_torch(s, requires_grad=True)
    expected = st * xt  # torchvision's SqueezeExcitation: scale * input
    mul = nn.ChannelMul()
    out = mul(arr(x), arr(s))
    assert_close(out, expected, atol=0, rtol=0, what="ChannelMul output")
    dout = rng.standard_normal(out.shape)
    expected.backward(torch.from_numpy(dout))
    dx, ds = mul.backward(arr(dout))
    assert_close(dx, xt.grad, atol=0, rtol=0, what="ChannelMul dx")
    assert_close(ds, st.grad, atol=1e-14, rtol=1e-12, what="ChannelMul dscale")


def test_channel_mul_never_broadcasts_another_shape():
    x = np.zeros((2, 3, 4, 4))
    message = (
        r"ChannelMul: expected a scale of shape \(N, C, 1, 1\) = \(2, 3, 1, 1\) and dtype float64 for the input of "
        r"shape \(2, 3, 4, 4\), got shape \(1, 3, 1, 1\)"
    )
    with pytest.raises(ValueError, match=message):
        nn.ChannelMul()(x, np.zeros((1, 3, 1, 1)))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 1, 1\) and dtype float32"):
        F.channel_mul_forward(x, np.zeros((2, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"channel_mul_forward: expected a 4-D"):
        F.channel_mul_forward(np.zeros((2, 3)), np.zeros((2, 3, 1, 1)))
    with pytest.raises(RuntimeError, match="ChannelMul.backward"):
        nn.ChannelMul().backward(x)
