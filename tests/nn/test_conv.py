"""Conv2d and its functional pair: naive reference, gradient checks, PyTorch parity, padding modes, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn.conv import conv2d_backward, conv2d_forward
from minidl.nn.padding import pad2d_backward, pad2d_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.nn.naive import conv2d_naive
from tests.strategies import seeds


@st.composite
def conv_configs(draw, max_hw=6):
    """Shapes and hyperparameters of a valid convolution, drawn together."""
    groups = draw(st.integers(1, 3))
    C, O = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(
        st.one_of(
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
            st.just("valid"),
            st.just("same") if stride == (1, 1) else st.just((0, 0)),
        )
    )
    span_h, span_w = dilation[0] * (KH - 1) + 1, dilation[1] * (KW - 1) + 1
    if padding == "same":  # total padding span - 1: any size fits
        total_h, total_w = span_h - 1, span_w - 1
    else:
        total_h, total_w = (0, 0) if padding == "valid" else (2 * padding[0], 2 * padding[1])
    H = draw(st.integers(max(1, span_h - total_h), max(max_hw, span_h)))
    W = draw(st.integers(max(1, span_w - total_w), max(max_hw, span_w)))
    return dict(
        N=draw(st.integers(1, 2)),
        C=C,
        O=O,
        H=H,
        W=W,
        kernel=(KH, KW),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
    )


def _torch_padding(padding):
    """(top, bottom, left, right) as the naive reference wants, from an int, a pair, 'same' or 'valid'."""
    if isinstance(padding, int):
        return (padding,) * 4
    return (padding[0], padding[0], padding[1], padding[1])


def _naive_padding(cfg):
    if cfg["padding"] == "valid":
        return (0, 0, 0, 0)
    if cfg["padding"] == "same":
        (KH, KW), (DH, DW) = cfg["kernel"], cfg["dilation"]
        th, tw = DH * (KH - 1), DW * (KW - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    return _torch_padding(cfg["padding"])


def _arrays(cfg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"]))
    w = rng.standard_normal((cfg["O"], cfg["C"] // cfg["groups"], *cfg["kernel"]))
    b = rng.standard_normal(cfg["O"]) if cfg["bias"] else None
    return x, w, b


def _hyper(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])


@given(cfg=conv_configs(), seed=seeds)
def test_forward_matches_naive_loops(cfg, seed):
    x, w, b = _arrays(cfg, seed)
    out, _ = conv2d_forward(arr(x), arr(w), None if b is None else arr(b), **_hyper(cfg))
    expected = conv2d_naive(x, w, b, cfg["stride"], _naive_padding(cfg), cfg["dilation"], cfg["groups"])
    assert_close(out, expected, what=f"conv2d {cfg}")


@given(cfg=conv_configs(max_hw=5), seed=seeds)
def test_functional_gradcheck(cfg, seed):
    x, w, b = _arrays(cfg, seed)
    inputs = [arr(x), arr(w)] + ([arr(b)] if b is not None else [])

    def forward(x, w, b=None):
        return conv2d_forward(x, w, b, **_hyper(cfg))

    gradcheck.check_function(forward, conv2d_backward, inputs, names=["x", "weight", "bias"][: len(inputs)])


@given(cfg=conv_configs(max_hw=5), mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]), seed=seeds)
def test_module_gradcheck(cfg, mode, seed):
    pad = _naive_padding(cfg)
    assume(mode == "zeros" or max(pad) < min(cfg["H"], cfg["W"]))  # reflect needs padding < size
    minidl.manual_seed(seed)
    conv = nn.Conv2d(cfg["C"], cfg["O"], cfg["kernel"], bias=cfg["bias"], padding_mode=mode, **_hyper(cfg))
    conv.to(np.float64)
    x = np.random.default_rng(seed).standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"]))
    gradcheck.check_module(conv, arr(x))


CONFIGS = {
    "plain": dict(C=3, O=4, kernel=3, stride=1, padding=1, dilation=1, groups=1),
    "stride2": dict(C=3, O=5, kernel=3, stride=2, padding=1, dilation=1, groups=1),
    "dilation2": dict(C=2, O=3, kernel=3, stride=1, padding=2, dilation=2, groups=1),
    "depthwise": dict(C=4, O=4, kernel=3, stride=1, padding=1, dilation=1, groups=4),
    "depthwise_multiplier": dict(C=3, O=6, kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=1, groups=3),
    "groups2": dict(C=4, O=6, kernel=(2, 3), stride=(1, 2), padding=(0, 1), dilation=(2, 1), groups=2),
    "same_odd": dict(C=3, O=2, kernel=3, stride=1, padding="same", dilation=1, groups=1),
    "same_even": dict(C=2, O=3, kernel=(4, 2), stride=1, padding="same", dilation=(1, 3), groups=1),
    "valid_1x1": dict(C=5, O=2, kernel=1, stride=1, padding="valid", dilation=1, groups=1),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_pytorch_forward_and_gradients(name, bias):
    torch = torch_or_skip()
    cfg = dict(CONFIGS[name])
    C, O, kernel = cfg.pop("C"), cfg.pop("O"), cfg.pop("kernel")
    minidl.manual_seed(1)
    conv = nn.Conv2d(C, O, kernel, bias=bias, **cfg).to(np.float64)
    ref = torch.nn.Conv2d(C, O, kernel, bias=bias, **cfg).double()
    ref.load_state_dict({k: torch.tensor(host(v)) for k, v in conv.state_dict().items()})
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, C, 7, 6))
    out = conv(arr(x))
    tx = to_torch(x, requires_grad=True)
    tout = ref(tx)
    dout = rng.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    assert_close(out, tout, what=f"{name} forward")
    assert_close(conv.backward(arr(dout)), tx.grad, what=f"{name} dx")
    assert_close(conv.weight.grad, ref.weight.grad, what=f"{name} dw")
    if bias:
        assert_close(conv.bias.grad, ref.bias.grad, what=f"{name} db")
    assert repr(conv) == repr(ref)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, (2, 1), "same"])
def test_padding_modes_match_pytorch(mode, padding):
    torch = torch_or_skip()
    minidl.manual_seed(0)
    conv = nn.Conv2d(2, 3, (3, 4), padding=padding, padding_mode=mode).to(np.float64)
    ref = torch.nn.Conv2d(2, 3, (3, 4), padding=padding, padding_mode=mode).double()
    ref.load_state_dict({k: torch.tensor(host(v)) for k, v in conv.state_dict().items()})
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 6))
    tx = to_torch(x, requires_grad=True)
    tout = ref(tx)
    dout = np.random.default_rng(4).standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    assert_close(conv(arr(x)), tout, what=f"{mode} forward")
    assert_close(conv.backward(arr(dout)), tx.grad, what=f"{mode} dx")
    assert_close(conv.weight.grad, ref.weight.grad, what=f"{mode} dw")


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad2d_matches_pytorch_and_gradchecks(mode):
    torch = torch_or_skip()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    pad = (2, 1, 0, 3)  # left, right, top, bottom
    out, cache = pad2d_forward(arr(x), pad, mode)
    assert_close(out, torch.nn.functional.pad(to_torch(x), pad, mode=mode), what=f"pad2d {mode}")
    gradcheck.check_function(lambda x: pad2d_forward(x, pad, mode), pad2d_backward, [arr(x)])


def test_pad2d_rejects_padding_wider_than_the_input():
    with pytest.raises(ValueError, match="reflect padding .* smaller than the input size 3"):
        pad2d_forward(arr(np.zeros((1, 1, 3, 3))), (3, 0, 0, 0), "reflect")
    with pytest.raises(ValueError, match="mode must be one of"):
        pad2d_forward(arr(np.zeros((1, 1, 3, 3))), (1, 1, 1, 1), "zeros")


def test_default_init_bounds_and_dtype():
    conv = nn.Conv2d(16, 32, 3, groups=2)
    bound = 1 / math.sqrt(16 // 2 * 9)
    w, b = host(conv.weight.data), host(conv.bias.data)
    assert w.shape == (32, 8, 3, 3) and w.dtype == np.float32 and b.shape == (32,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound  # U(-a, a) has std a / sqrt(3)


def test_state_dict_keys_and_shapes_follow_pytorch():
    assert {k: tuple(v.shape) for k, v in nn.Conv2d(3, 8, (3, 5), groups=1).state_dict().items()} == {
        "weight": (8, 3, 3, 5),
        "bias": (8,),
    }
    assert list(nn.Conv2d(4, 4, 3, groups=4, bias=False).state_dict()) == ["weight"]


def test_gradients_accumulate_and_frozen_weight_gets_none():
    conv = nn.Conv2d(2, 3, 3, padding=1).to(np.float64)
    x = arr(np.random.default_rng(0).standard_normal((2, 2, 4, 4)))
    dout = arr(np.random.default_rng(1).standard_normal((2, 3, 4, 4)))
    conv(x)
    dx1 = conv.backward(dout)
    g1 = host(conv.weight.grad).copy()
    conv(x)
    conv.backward(dout)
    assert_close(conv.weight.grad, 2 * g1, what="accumulated weight grad")
    conv.zero_grad()
    conv.weight.requires_grad = False
    conv(x)
    assert_close(conv.backward(dout), dx1, what="dx with a frozen weight")
    assert conv.weight.grad is None and conv.bias.grad is not None


def test_float32_forward_is_close_to_float64():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    out = conv(arr(x))
    assert out.dtype == np.float32
    w, b = host(conv.weight.data).astype(np.float64), host(conv.bias.data).astype(np.float64)
    expected = conv2d_naive(x.astype(np.float64), w, b, (2, 2), (1, 1, 1, 1), (1, 1), 1)
    assert_close(out, expected, atol=1e-5, rtol=1e-4, what="float32 conv")


def test_backward_before_forward_and_under_no_grad_raise():
    conv = nn.Conv2d(1, 1, 3)
    with pytest.raises(RuntimeError, match=r"Conv2d.backward\(\) was called without a matching forward"):
        conv.backward(arr(np.zeros((1, 1, 1, 1), np.float32)))
    with minidl.no_grad():
        conv(arr(np.zeros((1, 1, 3, 3), np.float32)))
    with pytest.raises(RuntimeError, match="without a matching forward"):
        conv.backward(arr(np.zeros((1, 1, 1, 1), np.float32)))


def test_bad_input_gets_a_clear_error():
    conv = nn.Conv2d(3, 4, 3)
    good = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(
        ValueError, match=r"Conv2d\(3, 4, kernel_size=\(3, 3\)\): expected a 4-D .* got shape \(3, 5, 5\)"
    ):
        conv(arr(good[0]))
    with pytest.raises(ValueError, match="expected 3 channels in dimension 1 of the input, got 2"):
        conv(arr(good[:, :2]))
    with pytest.raises(TypeError, match="the input has dtype float64 but the layer's parameters are float32"):
        conv(arr(good.astype(np.float64)))
    with pytest.raises(TypeError, match="expected a floating-point input .* got dtype int64"):
        conv(arr(good.astype(np.int64)))
    with pytest.raises(TypeError, match="expected the input to be an array, got list"):
        conv(good.tolist())
    with pytest.raises(ValueError, match=r"the \(dilated\) kernel 3x3 is larger than the padded input 2x5"):
        conv(arr(np.zeros((1, 3, 2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"the \(dilated\) kernel 5x5 is larger"):
        nn.Conv2d(3, 4, 3, dilation=2)(arr(np.zeros((1, 3, 4, 4), np.float32)))
    conv(arr(good))
    with pytest.raises(ValueError, match=r"backward: the gradient has shape \(2, 4, 2, 2\) but the forward output"):
        conv.backward(arr(np.zeros((2, 4, 2, 2), np.float32)))


def test_bad_hyperparameters_get_a_clear_error():
    with pytest.raises(ValueError, match=r"in_channels \(4\) and out_channels \(6\) must be divisible by groups \(4\)"):
        nn.Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="kernel_size must be >= 1, got 0"):
        nn.Conv2d(3, 4, 0)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair of ints, got 2.5"):
        nn.Conv2d(3, 4, 2.5)
    with pytest.raises(ValueError, match="stride must be >= 1, got -1"):
        nn.Conv2d(3, 4, 3, stride=-1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        nn.Conv2d(3, 4, 3, padding=-1)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be an int, a pair, 'same' or 'valid', got 'full'"):
        nn.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(TypeError, match="in_channels must be an int, got 3.0"):
        nn.Conv2d(3.0, 4, 3)


def test_functional_rejects_mismatched_weight_and_groups():
    x = arr(np.zeros((1, 4, 5, 5)))
    with pytest.raises(
        ValueError,
        match=r"expected 2 channels in dimension 1 of the input, got 4 .* the weight \(2, 1, 3, 3\) with groups=2",
    ):
        conv2d_forward(x, arr(np.zeros((2, 1, 3, 3))), None, groups=2)
    with pytest.raises(ValueError, match="in_channels 4 and out_channels 3 must both be divisible by groups=2"):
        conv2d_forward(x, arr(np.zeros((3, 2, 3, 3))), None, groups=2)
    with pytest.raises(TypeError, match="the input has dtype float64 but the layer's parameters are float32"):
        conv2d_forward(x, arr(np.zeros((2, 4, 3, 3), np.float32)), None)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\), expected \(2,\)"):
        conv2d_forward(x, arr(np.zeros((2, 4, 3, 3))), arr(np.zeros(3)))


@pytest.mark.parametrize(("kernel", "padding"), [(3, 1), (2, "same")], ids=["padding-1", "uneven-same"])
def test_backward_adds_dx_add_to_dx(kernel, padding):
    # conv2d_backward(..., dx_add=a): dx + a (x fed other layers too, a ResNet block's shortcut: the gradients of a
    # fork add), the same bits as the sum after; dW unchanged. 'same' with an even kernel pads unevenly (the extra
    # row and column's backward runs before the sum)
    rng = np.random.default_rng(0)
    x = arr(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = arr(rng.standard_normal((4, 3, kernel, kernel)).astype(np.float32))
    out, cache = conv2d_forward(x, w, None, 1, padding)
    dout = arr(rng.standard_normal(out.shape).astype(np.float32))
    dx_add = arr(rng.standard_normal(x.shape).astype(np.float32))
    dx, dw, _ = conv2d_backward(dout, cache)
    dx_sum, dw_sum, _ = conv2d_backward(dout, conv2d_forward(x, w, None, 1, padding)[1], dx_add=dx_add)
    np.testing.assert_array_equal(host(dx_sum), host(dx) + host(dx_add))
    np.testing.assert_array_equal(host(dw_sum), host(dw))


def test_backward_rejects_a_dx_add_not_shaped_and_typed_as_x():
    rng = np.random.default_rng(0)
    x = arr(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = arr(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    out, cache = conv2d_forward(x, w, None, 1, 1)
    dout = arr(np.ones(out.shape, np.float32))
    with pytest.raises(ValueError, match=r"conv2d_backward: dx_add .* shape \(1, 3, 6, 6\) .* x's shape \(2, "):
        conv2d_backward(dout, cache, dx_add=arr(np.ones((1, 3, 6, 6), np.float32)))  # (not broadcast)
    with pytest.raises(ValueError, match=r"conv2d_backward: dx_add .* dtype float64, .* gradient's dtype float32"):
        conv2d_backward(dout, cache, dx_add=arr(np.ones((2, 3, 6, 6))))  # (not cast)


def test_module_backward_adds_dx_add_after_a_padding_mode_and_with_a_pair_you_wrote(monkeypatch):
    # Conv2d.backward(dout, dx_add): dx + dx_add; with padding_mode 'reflect' the padding's backward comes between
    # the pair and the sum, and a conv2d_backward of your own (without dx_add) still runs: the sum comes after it
    from minidl.nn import functional

    rng = np.random.default_rng(0)
    x = arr(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    dout = arr(rng.standard_normal((2, 4, 6, 6)).astype(np.float32))
    dx_add = arr(rng.standard_normal(x.shape).astype(np.float32))
    for padding_mode in ("zeros", "reflect"):
        conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode=padding_mode)
        conv(x)
        dx = conv.backward(dout)
        conv(x)
        np.testing.assert_array_equal(host(conv.backward(dout, dx_add=dx_add)), host(dx) + host(dx_add))
    original = functional.conv2d_backward
    calls = []

    def yours(dout, cache, *, compute_dw=True):
        calls.append(compute_dw)
        return original(dout, cache, compute_dw=compute_dw)

    monkeypatch.setattr(functional, "conv2d_backward", yours)  # (so the forward runs the reference too)
    conv(x)
    dx = conv.backward(dout)
    conv(x)
    np.testing.assert_array_equal(host(conv.backward(dout, dx_add=dx_add)), host(dx) + host(dx_add))
    assert calls == [True, True]


def test_module_backward_with_hooks_adds_dx_add_after_them_and_checks_it_before_any_grad_changes():
    # with a backward hook the hook sees the convolution's own gradient and dx_add comes after it; a wrong dx_add
    # (here with padding_mode 'reflect', where Conv2d.backward adds it itself) raises before .grad changes
    rng = np.random.default_rng(0)
    x = arr(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    dout = arr(rng.standard_normal((2, 4, 6, 6)).astype(np.float32))
    dx_add = arr(rng.standard_normal(x.shape).astype(np.float32))
    conv = nn.Conv2d(3, 4, 3, padding=1)
    conv(x)
    dx = host(conv.backward(dout))
    seen = []
    conv.register_full_backward_hook(lambda m, grad_input, grad_output: seen.append(host(grad_input[0])))
    conv(x)
    np.testing.assert_array_equal(host(conv.backward(dout, dx_add=dx_add)), dx + host(dx_add))
    np.testing.assert_array_equal(seen[0], dx)
    reflect = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    reflect(x)
    with pytest.raises(ValueError, match=r"Conv2d\(.*\)\.backward: dx_add .* shape \(2, 3, 6, 5\)"):
        reflect.backward(dout, dx_add=arr(np.ones((2, 3, 6, 5), np.float32)))
    assert reflect.weight.grad is None and reflect.bias.grad is None
    reflect(x)
    with pytest.raises(TypeError, match=r"dx_add .* must be an array, got float"):
        reflect.backward(dout, dx_add=1.0)
