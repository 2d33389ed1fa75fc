"""LayerScale and its pair: gradient checks, PyTorch parity on any axis, the per-channel (ConvNeXt) use, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import gradcheck, nn
from minidl.nn.layer_scale import layer_scale_backward, layer_scale_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@given(seed=seeds, shape=shapes, data=st.data())
def test_gradcheck_on_any_axis(seed, shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    x, gamma = arr(rng.standard_normal(shape)), arr(rng.standard_normal(shape[dim]))
    gradcheck.check_function(layer_scale_forward, layer_scale_backward, [x, gamma], {"dim": dim})


@given(seed=seeds, shape=shapes)
def test_module_gradcheck(seed, shape):
    rng = np.random.default_rng(seed)
    layer = nn.LayerScale(shape[-1], init_values=0.3).double()
    layer.gamma.data[...] = arr(rng.standard_normal(shape[-1]))
    gradcheck.check_module(layer, arr(rng.standard_normal(shape)))


@given(seed=seeds, shape=shapes, data=st.data())
def test_torch_parity_forward_and_both_gradients(seed, shape, data):
    torch = torch_or_skip()
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    x_np, g_np, dout_np = rng.standard_normal(shape), rng.standard_normal(shape[dim]), rng.standard_normal(shape)
    out, cache = layer_scale_forward(arr(x_np), arr(g_np), dim)
    dx, dgamma = layer_scale_backward(arr(dout_np), cache)
    t, tg = to_torch(x_np, requires_grad=True), to_torch(g_np, requires_grad=True)
    view = [1] * len(shape)
    view[dim] = -1
    ref = t * tg.reshape(view)
    ref.backward(torch.tensor(dout_np))
    assert_close(out, ref, what=f"layer_scale forward dim={dim}")
    assert_close(dx, t.grad, what=f"layer_scale dx dim={dim}")
    assert_close(dgamma, tg.grad, what=f"layer_scale dgamma dim={dim}")


def test_module_matches_timm_layout_and_init_and_accumulates():
    layer = nn.LayerScale(4)
    assert tuple(layer.gamma.shape) == (4,) and np.all(host(layer.gamma.data) == np.float32(1e-5))
    assert repr(layer) == "LayerScale(dim=4, init_values=1e-05)"
    assert list(layer.state_dict()) == ["gamma"]
    x = arr(np.ones((2, 3, 4), np.float32))
    layer(x)
    layer.backward(x)
    layer(x)
    layer.backward(x)
    assert_close(layer.gamma.grad, arr(np.full(4, 12.0, np.float32)), what="two backward passes add up")
    layer.gamma.requires_grad = False
    layer.zero_grad()
    layer(x)
    layer.backward(x)
    assert layer.gamma.grad is None


def test_a_per_channel_scale_of_nchw_maps_as_convnext_uses_it():
    """torchvision's CNBlock: ``layer_scale`` (C, 1, 1) times the block's (N, C, H, W) output = the pair on dim=1."""
    rng = np.random.default_rng(0)
    x, gamma = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(3)
    out, _ = layer_scale_forward(arr(x), arr(gamma), dim=1)
    assert_close(out, arr(gamma.reshape(3, 1, 1) * x))
    channels_last, _ = layer_scale_forward(arr(x.transpose(0, 2, 3, 1)), arr(gamma))  # or channels-last, then permute
    assert_close(host(channels_last).transpose(0, 3, 1, 2), out)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.LayerScale(4)(arr(np.ones((2, 3), np.float32))), ValueError,
         r"^LayerScale\(dim=4, init_values=1e-05\): expected the input's dimension 1 to have size 4 \(the length of "
         r"gamma\), got shape \(2, 3\)"),
        (lambda: nn.LayerScale(3)(arr(np.ones((2, 3)))), TypeError,
         r"^LayerScale\(dim=3, .*\): the input has dtype float64 but the layer's parameters are float32"),
        (lambda: nn.LayerScale(0), ValueError, r"^LayerScale: dim must be >= 1, got 0"),
        (lambda: nn.LayerScale(3, init_values="a"), TypeError, r"^LayerScale: init_values must be a real number"),
        (lambda: layer_scale_forward(arr(np.ones((2, 3))), arr(np.ones(3)), dim=2), ValueError,
         r"^layer_scale_forward: dim must be an int in \[-2, 1\] for a 2-D input, got 2"),
        (lambda: layer_scale_forward(arr(np.ones((2, 3))), arr(np.ones((3, 1)))), ValueError,
         r"^layer_scale_forward: expected a 1-D gamma, got shape \(3, 1\)"),
    ],
)  # fmt: skip
def test_bad_input_names_the_layer_expected_and_received(call, error, match):
    with pytest.raises(error, match=match):
        call()
