"""ConvTranspose2d: a loop over the definition, the adjoint of conv2d, gradient checks, PyTorch parity, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minidl import gradcheck, nn
from minidl.nn.conv import conv2d_forward
from minidl.nn.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds


@st.composite
def configs(draw):
    """Shapes and hyperparameters of a valid transposed convolution (output_padding < stride or dilation)."""
    groups = draw(st.integers(1, 3))
    C, O = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True))
    H, W = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sizes = [
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip((H, W), stride, padding, dilation, kernel, output_padding, strict=True)
    ]
    assume(min(sizes) >= 1)
    return dict(N=draw(st.integers(1, 2)), C=C, O=O, H=H, W=W, kernel=kernel, stride=stride, padding=padding,
                output_padding=output_padding, groups=groups, dilation=dilation, bias=draw(st.booleans()))  # fmt: skip


def _arrays(cfg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"]))
    w = rng.standard_normal((cfg["C"], cfg["O"] // cfg["groups"], *cfg["kernel"]))
    b = rng.standard_normal(cfg["O"]) if cfg["bias"] else None
    return x, w, b


def _hyper(cfg):
    return {k: cfg[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}


def conv_transpose2d_naive(x, w, b, stride, padding, output_padding, groups, dilation):
    """Each input pixel stamps its kernel onto the output: out[o, h S + p D - P, w S + q D - P] += W[i, o, p, q] x."""
    N, C, H, W = x.shape
    _, Og, KH, KW = w.shape
    (SH, SW), (PH, PW), (OPH, OPW), (DH, DW) = stride, padding, output_padding, dilation
    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1
    OW = (W - 1) * SW - 2 * PW + DW * (KW - 1) + OPW + 1
    out = np.zeros((N, Og * groups, OH, OW))
    for n, i, h, ww, o, p, q in itertools.product(
        range(N), range(C), range(H), range(W), range(Og), range(KH), range(KW)
    ):
        g = i // (C // groups)
        oh, ow = h * SH + p * DH - PH, ww * SW + q * DW - PW
        if 0 <= oh < OH and 0 <= ow < OW:
            out[n, g * Og + o, oh, ow] += w[i, o, p, q] * x[n, i, h, ww]
    if b is not None:
        out += b[None, :, None, None]
    return out


@given(cfg=configs(), seed=seeds)
def test_forward_matches_the_loop_over_the_definition(cfg, seed):
    x, w, b = _arrays(cfg, seed)
    out, _ = conv_transpose2d_forward(arr(x), arr(w), None if b is None else arr(b), **_hyper(cfg))
    assert_close(out, conv_transpose2d_naive(x, w, b, **_hyper(cfg)), what=str(cfg))


@given(cfg=configs(), seed=seeds)
def test_it_is_the_adjoint_of_conv2d(cfg, seed):
    """<conv_transpose(x), y> = <x, conv2d(y)> with the same weight, stride, padding, dilation and groups."""
    x, w, _ = _arrays(cfg, seed)
    out, _ = conv_transpose2d_forward(arr(x), arr(w), None, **_hyper(cfg))
    y = np.random.default_rng(seed + 1).standard_normal(host(out).shape)
    hyper = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
    conv_y, _ = conv2d_forward(arr(y), arr(w), None, **hyper)
    conv_y = host(conv_y)[:, :, : cfg["H"], : cfg["W"]]  # extra windows of an output_padding >= stride
    assert abs(float((host(out) * y).sum()) - float((x * conv_y).sum())) < 1e-9 * (1 + np.abs(x).sum())


@given(cfg=configs(), seed=seeds)
def test_gradcheck(cfg, seed):
    x, w, b = _arrays(cfg, seed)
    inputs = [arr(x), arr(w)] + ([arr(b)] if b is not None else [None])
    gradcheck.check_function(conv_transpose2d_forward, conv_transpose2d_backward, inputs, _hyper(cfg),
                             mode="random_direction", directions=6)  # fmt: skip


@given(cfg=configs(), seed=seeds)
def test_torch_parity_forward_and_every_gradient(cfg, seed):
    torch = torch_or_skip()
    x, w, b = _arrays(cfg, seed)
    layer = nn.ConvTranspose2d(cfg["C"], cfg["O"], cfg["kernel"], bias=cfg["bias"], **_hyper(cfg)).double()
    layer.weight.data[...] = arr(w)
    if b is not None:
        layer.bias.data[...] = arr(b)
    out = layer(arr(x))
    dout = np.random.default_rng(seed + 1).standard_normal(host(out).shape)
    dx = layer.backward(arr(dout))
    t, tw = to_torch(x, requires_grad=True), to_torch(w, requires_grad=True)
    tb = None if b is None else to_torch(b, requires_grad=True)
    ref = torch.nn.functional.conv_transpose2d(t, tw, tb, **_hyper(cfg))
    ref.backward(torch.tensor(dout))
    assert_close(out, ref, what=f"conv_transpose2d forward {cfg}")
    assert_close(dx, t.grad, what=f"conv_transpose2d dx {cfg}")
    assert_close(layer.weight.grad, tw.grad, what=f"conv_transpose2d dw {cfg}")
    if b is not None:
        assert_close(layer.bias.grad, tb.grad, what=f"conv_transpose2d db {cfg}")


def test_module_matches_pytorch_layout_init_repr_and_output_size():
    torch = torch_or_skip()
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1, groups=2)
    ref = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1, groups=2)
    assert repr(layer) == repr(ref)
    assert tuple(layer.weight.shape) == tuple(ref.weight.shape) == (4, 3, 3, 3)
    bound = 1 / np.sqrt(3 * 3 * 3)  # fan_in from weight.shape[1] * KH * KW, as PyTorch
    assert np.abs(host(layer.weight.data)).max() <= bound and np.abs(host(layer.bias.data)).max() <= bound
    x = arr(np.zeros((1, 4, 5, 5), np.float32))
    assert tuple(layer(x).shape) == (1, 6, 12, 12)
    expected = tuple(ref(torch.zeros(1, 4, 5, 5), output_size=(11, 12)).shape)
    assert tuple(layer(x, output_size=(11, 12)).shape) == expected
    assert tuple(layer(x, output_size=[1, 6, 11, 11]).shape) == (1, 6, 11, 11)
    layer.backward(arr(np.ones((1, 6, 11, 11), np.float32)))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2)(arr(np.zeros((1, 2, 4, 4), np.float32)), output_size=(11, 10)),
         ValueError, r"^ConvTranspose2d\(2, 3, kernel_size=\(3, 3\)\): requested an output size of \(11, 10\), but "
         r"valid sizes range from \(9, 9\) to \(10, 10\) \(for an input of \(4, 4\)\)"),
        (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, output_padding=2), ValueError,
         r"^ConvTranspose2d: output_padding must be smaller than either stride or dilation, got output_padding "
         r"\(2, 2\) with stride \(2, 2\) and dilation \(1, 1\)"),
        (lambda: nn.ConvTranspose2d(2, 3, 3)(arr(np.zeros((1, 3, 4, 4), np.float32))), ValueError,
         r"^ConvTranspose2d\(2, 3, kernel_size=\(3, 3\)\): expected 2 channels in dimension 1 of the input, got 3"),
        (lambda: nn.ConvTranspose2d(2, 3, 1, padding=2)(arr(np.zeros((1, 2, 3, 3), np.float32))), ValueError,
         r"^ConvTranspose2d\(2, 3, kernel_size=\(1, 1\)\): the output would be -1x-1 for an input 3x3"),
        (lambda: nn.ConvTranspose2d(2, 3, 3, groups=2), ValueError,
         r"^ConvTranspose2d: in_channels \(2\) and out_channels \(3\) must be divisible by groups \(2\)"),
        (lambda: nn.ConvTranspose2d(2, 3, 3, padding_mode="reflect"), ValueError,
         r'^ConvTranspose2d: only padding_mode="zeros" is supported \(as in PyTorch\), got \'reflect\''),
        (lambda: nn.ConvTranspose2d(2, 3, 3)(arr(np.zeros((2, 4, 4), np.float32))), ValueError,
         r"^ConvTranspose2d\(2, 3, kernel_size=\(3, 3\)\): expected a 4-D \(N, C, H, W\) input, got shape \(2, 4, 4\)"),
        (lambda: nn.ConvTranspose2d(2, 3, 3)(arr(np.zeros((1, 2, 4, 4), np.float32)), output_size=9), TypeError,
         r"^ConvTranspose2d\(2, 3, .*\): output_size must be \(OH, OW\) or \(N, O, OH, OW\) ints, got 9"),
        (lambda: conv_transpose2d_backward(arr(np.ones((1, 3, 5, 5))), conv_transpose2d_forward(
            arr(np.ones((1, 2, 2, 2))), arr(np.ones((2, 3, 3, 3))))[1]), ValueError,
         r"^conv_transpose2d_backward: the gradient has shape \(1, 3, 5, 5\) but the forward output had shape "
         r"\(1, 3, 4, 4\)"),
    ],
)  # fmt: skip
def test_bad_input_names_the_layer_expected_and_received(call, error, match):
    with pytest.raises(error, match=match):
        call()
