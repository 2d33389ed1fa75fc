"""Upsample (nearest, bilinear): PyTorch's indices, forward and backward parity, gradient checks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minidl import gradcheck, nn
from minidl.nn.upsample import interpolate_backward, interpolate_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

scale_factors = st.one_of(
    st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 2.5, 0.75, 1.3, 3.7]),
    st.floats(0.3, 4.0).map(lambda s: round(s, 3)),
)


@st.composite
def resize_cases(draw):
    """An input (N, C, H, W) and PyTorch's keyword arguments: a size or a (possibly non-integer) scale factor."""
    N, C, H, W = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    if draw(st.booleans()):
        kwargs = {"size": (draw(st.integers(1, 12)), draw(st.integers(1, 12)))}
    else:
        scale = (draw(scale_factors), draw(scale_factors))
        assume(int(H * scale[0]) >= 1 and int(W * scale[1]) >= 1)
        kwargs = {"scale_factor": scale if scale[0] != scale[1] else scale[0]}
        if draw(st.booleans()):
            kwargs["recompute_scale_factor"] = True
    if mode == "bilinear":
        kwargs["align_corners"] = draw(st.sampled_from([None, False, True]))
    return (N, C, H, W), {"mode": mode, **kwargs}


def _torch_agrees_with_itself(torch, shape, kwargs):
    """PyTorch's float64 nearest forward and its backward use the same source pixel (they differ in a few float
    roundings: at 111 / 3.7 = 29.99999... the forward reads pixel 30 and the backward sends to 29). minidl uses the
    backward's index (float32, as the float32 forward too); such draws are skipped, not compared."""
    if kwargs["mode"] != "nearest":
        return True
    N, C, H, W = shape
    codes = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W).requires_grad_(True)
    out = torch.nn.functional.interpolate(codes, **kwargs)
    weights = torch.tensor(np.random.default_rng(0).uniform(1, 2, out.shape))
    (out * weights).sum().backward()
    scattered = np.zeros(H * W)
    np.add.at(scattered, out.detach().numpy().ravel().astype(np.int64), weights.numpy().ravel())
    return np.allclose(scattered, codes.grad.numpy().ravel())


@given(case=resize_cases(), seed=seeds)
def test_torch_parity_forward_and_backward(case, seed):
    torch = torch_or_skip()
    shape, kwargs = case
    assume(_torch_agrees_with_itself(torch, shape, kwargs))
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal(shape)
    layer = nn.Upsample(**kwargs)
    out = layer(arr(x_np))
    dout_np = rng.standard_normal(host(out).shape)
    dx = layer.backward(arr(dout_np))
    t = to_torch(x_np, requires_grad=True)
    ref = torch.nn.functional.interpolate(t, **kwargs)
    ref.backward(torch.tensor(dout_np))
    assert_close(out, ref, what=f"interpolate forward {shape} {kwargs}")
    assert_close(dx, t.grad, what=f"interpolate dx {shape} {kwargs}")


@pytest.mark.parametrize("size_in", range(1, 40))
def test_nearest_indices_match_pytorch_float32_for_every_size(size_in):
    """The nearest source index, computed in float32 as PyTorch does: every output size up to 90, some scales."""
    torch = torch_or_skip()
    codes = np.arange(size_in, dtype=np.float32).reshape(1, 1, 1, size_in)
    for kwargs in [{"size": (1, n)} for n in range(1, 90)] + [{"scale_factor": (1.0, s)} for s in (0.4, 1.7, 3.7)]:
        if "scale_factor" in kwargs and int(size_in * kwargs["scale_factor"][1]) < 1:
            continue
        ours = host(interpolate_forward(arr(codes), **kwargs)[0])
        ref = torch.nn.functional.interpolate(torch.tensor(codes), **kwargs).numpy()
        assert (ours == ref).all(), (size_in, kwargs)


@given(case=resize_cases(), seed=seeds)
def test_gradcheck(case, seed):
    shape, kwargs = case
    x = arr(np.random.default_rng(seed).standard_normal(shape))
    gradcheck.check_function(interpolate_forward, interpolate_backward, [x], kwargs, mode="random_direction")


def test_the_aliases_and_reprs_are_pytorchs():
    torch = torch_or_skip()
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 4))
    for ours, ref in [
        (nn.UpsamplingNearest2d(scale_factor=2), torch.nn.UpsamplingNearest2d(scale_factor=2)),
        (nn.UpsamplingBilinear2d(size=(5, 7)), torch.nn.UpsamplingBilinear2d(size=(5, 7))),
        (nn.Upsample(scale_factor=(1.5, 2.5), mode="bilinear"),
         torch.nn.Upsample(scale_factor=(1.5, 2.5), mode="bilinear")),
    ]:  # fmt: skip
        assert repr(ours) == repr(ref)
        assert_close(ours(arr(x)), ref(torch.tensor(x)), what=repr(ours))


def test_same_size_is_a_copy_and_the_output_keeps_the_dtype():
    x = arr(np.random.default_rng(0).standard_normal((1, 1, 3, 3)).astype(np.float32))
    for mode in ("nearest", "bilinear"):
        out, cache = interpolate_forward(x, size=3, mode=mode)
        assert out.dtype == np.float32 and (host(out) == host(x)).all()
        assert interpolate_backward(arr(np.ones((1, 1, 3, 3), np.float32)), cache).dtype == np.float32


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.Upsample(), ValueError,
         r"^Upsample: give exactly one of size and scale_factor, got size=None, scale_factor=None"),
        (lambda: nn.Upsample(size=4, scale_factor=2), ValueError,
         r"^Upsample: give exactly one of size and scale_factor"),
        (lambda: nn.Upsample(scale_factor=2, mode="bicubic"), ValueError,
         r"^Upsample: mode must be 'nearest' or 'bilinear', got 'bicubic'"),
        (lambda: nn.Upsample(scale_factor=2, align_corners=True), ValueError,
         r"^Upsample: align_corners can only be set with mode='bilinear', got mode='nearest'"),
        (lambda: nn.Upsample(scale_factor=-2), ValueError, r"^Upsample: scale_factor must be positive, got -2"),
        (lambda: nn.Upsample(size=(2, 2.5)), TypeError,
         r"^Upsample: size must be a positive int or a pair of them, got \(2, 2.5\)"),
        (lambda: nn.Upsample(scale_factor=0.1)(arr(np.zeros((1, 1, 4, 4), np.float32))), ValueError,
         r"^Upsample\(scale_factor=0.1, mode='nearest'\): the output would be 0x0 for an input 4x4 and scale_factor "
         r"0.1; input and output sizes must be at least 1"),
        (lambda: nn.Upsample(scale_factor=2)(arr(np.zeros((1, 4, 4), np.float32))), ValueError,
         r"^Upsample\(scale_factor=2.0, mode='nearest'\): expected a 4-D \(N, C, H, W\) input, got shape \(1, 4, 4\)"),
        (lambda: nn.Upsample(size=3, recompute_scale_factor=True), ValueError,
         r"^Upsample: recompute_scale_factor is only for scale_factor, not for size"),
        (lambda: interpolate_backward(arr(np.ones((1, 1, 3, 3))), interpolate_forward(
            arr(np.ones((1, 1, 2, 2))), scale_factor=2)[1]), ValueError,
         r"^interpolate_backward: the gradient has shape \(1, 1, 3, 3\) but the forward output had shape "
         r"\(1, 1, 4, 4\)"),
    ],
)  # fmt: skip
def test_bad_input_names_the_layer_expected_and_received(call, error, match):
    with pytest.raises(error, match=match):
        call()
