"""The Numba kernels that keep the ``channels_last`` memory format (``minidl/memory_format.py``): given a channels_last
input they compute what they compute for the same values laid out C-contiguous, and return a channels_last output
(and dx laid out as x is).

Convolutions (every algorithm: direct 3 x 3, im2row, Winograd F(2x2, 3x3) chunked and batch-wide, F(4x4, 3x3), 1 x 1
for each stride and output size), their fused ReLU, the elementwise kernels, global average pooling, and a whole
fused ResNet-20 layer by layer. The C-contiguous kernels are checked against the reference in ``test_kernels.py``;
here the channels_last results are checked against theirs: the same copies into the same tiles and rows, so equal
up to the order of a few float32 sums (the 1 x 1 products run as rows @ W^T instead of W @ x).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import models, nn
from minidl.nn import functional as F
from tests.strategies import seeds

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

CL = minidl.channels_last


def to_cl(a):
    return minidl.contiguous(a, CL)


def is_cl(a):
    return minidl.suggest_memory_format(a) == CL


def assert_close(got, want, dtype, what):
    scale = max(float(np.abs(want).max()), 1.0)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    error = float(np.abs(got - want).max()) / scale
    assert error <= tol, f"{what}: {error:.2e} of the largest value"


def conv_both(x_shape, w_shape, stride, padding, dtype=np.float32, relu=False, seed=0):
    """Forward and backward of conv2d (or conv2d_relu) on the Numba backend, for x C-contiguous and channels_last."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    forward, backward = (
        (F.conv2d_relu_forward, F.conv2d_relu_backward) if relu else (F.conv2d_forward, F.conv2d_backward)
    )
    with minidl.use_backend("numba"):
        out, cache = forward(x, w, b, stride, padding)
        dout = rng.standard_normal(out.shape).astype(dtype)
        grads = backward(dout, cache)
        out_cl, cache_cl = forward(to_cl(x), w, b, stride, padding)
        grads_cl = backward(to_cl(dout), cache_cl)
    return (out, *grads), (out_cl, *grads_cl)


# (x shape, weight shape, stride, padding): each runs one algorithm of _numba_conv.py at these shapes
ALGORITHMS = {
    "direct 3x3 (RGB)": ((4, 3, 12, 12), (16, 3, 3, 3), 1, 1),
    "winograd F(2x2) chunks": ((4, 16, 9, 9), (24, 16, 3, 3), 1, 1),
    "winograd F(2x2) batch-wide": ((8, 128, 4, 4), (128, 128, 3, 3), 1, 1),
    "winograd F(4x4)": ((16, 16, 13, 11), (16, 16, 3, 3), 1, 1),
    "winograd F(4x4), no padding": ((16, 16, 14, 14), (32, 16, 3, 3), 1, 0),
    "im2row stride 2": ((6, 16, 11, 11), (32, 16, 3, 3), 2, 1),
    "im2row 5x5": ((3, 5, 10, 9), (7, 5, 5, 5), 1, 2),
    "1x1": ((5, 16, 8, 8), (32, 16, 1, 1), 1, 0),
    "1x1 stride 2": ((5, 16, 9, 9), (32, 16, 1, 1), 2, 0),
    "1x1 stride (3, 2)": ((3, 8, 7, 8), (4, 8, 1, 1), (3, 2), 0),
    "1x1 small output": ((5, 16, 4, 4), (8, 16, 1, 1), 1, 0),
}
# depthwise (groups = C): the channels-last kernel, whatever the shape, reading and writing in place
DEPTHWISE = {
    "depthwise 3x3": ((4, 32, 16, 16), (32, 1, 3, 3), 1, 1),
    "depthwise 3x3 stride 2": ((4, 24, 9, 9), (24, 1, 3, 3), 2, 1),
    "depthwise 5x5, few channels": ((3, 3, 8, 8), (3, 1, 5, 5), 1, 2),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("case", sorted(DEPTHWISE))
def test_depthwise_keeps_channels_last(case, relu, dtype):
    x_shape, w_shape, stride, padding = DEPTHWISE[case]
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    forward, backward = (
        (F.conv2d_relu_forward, F.conv2d_relu_backward) if relu else (F.conv2d_forward, F.conv2d_backward)
    )
    groups = x_shape[1]
    with minidl.use_backend("numba"):
        out, cache = forward(x, w, b, stride, padding, 1, groups)
        dout = rng.standard_normal(out.shape).astype(dtype)
        want = (out, *backward(dout, cache))
        out_cl, cache_cl = forward(to_cl(x), w, b, stride, padding, 1, groups)
        got = (out_cl, *backward(to_cl(dout), cache_cl))
        mixed = backward(dout, cache_cl)  # dout C-contiguous, x channels_last
    for name, a, g in zip(("out", "dx", "dw", "db"), want, got, strict=True):
        assert_close(g, a, dtype, f"{case}: {name}")
    assert_close(mixed[0], want[1], dtype, f"{case}: dx, mixed layouts")
    assert is_cl(out_cl) and is_cl(got[1]) and is_cl(mixed[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_convolution_keeps_channels_last(algorithm, relu, dtype):
    plain, cl = conv_both(*ALGORITHMS[algorithm], dtype=dtype, relu=relu)
    for name, want, got in zip(("out", "dx", "dw", "db"), plain, cl, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert_close(got, want, dtype, f"{algorithm}: {name}")
    assert is_cl(cl[0]), f"{algorithm}: the output is {minidl.suggest_memory_format(cl[0])}"
    assert is_cl(cl[1]), f"{algorithm}: dx is {minidl.suggest_memory_format(cl[1])}"


@given(
    n=st.integers(1, 5), c=st.integers(2, 20), o=st.integers(2, 20), h=st.integers(3, 12), w=st.integers(3, 12),
    k=st.sampled_from([1, 3]), stride=st.integers(1, 2), padding=st.integers(0, 1), seed=seeds,
)  # fmt: skip
def test_convolution_channels_last_any_shape(n, c, o, h, w, k, stride, padding, seed):
    if k == 1:
        padding = 0
    plain, cl = conv_both((n, c, h, w), (o, c, k, k), stride, padding, seed=seed)
    for name, want, got in zip(("out", "dx", "dw", "db"), plain, cl, strict=True):
        assert_close(got, want, np.float32, name)
    assert is_cl(cl[0]) or cl[0].shape[2:] == (1, 1)  # (1 x 1 images have one layout: contiguous_format)
    assert is_cl(cl[1])


def test_winograd_results_are_the_same_bits():
    """Winograd's channels_last copies fill the same tiles: forward, dx and dW equal bit for bit (the direct 3 x 3's
    the same padded planes: the test after this one)."""
    plain, cl = conv_both((16, 16, 16, 16), (16, 16, 3, 3), 1, 1)
    for want, got in zip(plain[:3], cl[:3], strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_3x3_reads_channels_last_with_the_same_bits(padding, dtype):
    """The direct 3 x 3 (few input channels) fills the same padded planes from a channels_last x and dout as from
    C-order ones: forward, dx and dW bit for bit at paddings 0 to 2, with an odd batch (17 images, chunks of one),
    a non-square image, and a NaN in dout (whose chunk's dW is summed again over the output pixels only)."""
    rng = np.random.default_rng(padding)
    x = rng.standard_normal((17, 3, 9, 7)).astype(dtype)
    w = (rng.standard_normal((5, 3, 3, 3)) / 5).astype(dtype)
    with minidl.use_backend("numba"):
        out, cache = F.conv2d_forward(x, w, None, 1, padding)
        dout = rng.standard_normal(out.shape).astype(dtype)
        dout[3, 1, 2, 2] = np.nan
        want = (out, *F.conv2d_backward(dout, cache)[:2])
        out_cl, cache_cl = F.conv2d_forward(to_cl(x), w, None, 1, padding)
        got = (out_cl, *F.conv2d_backward(to_cl(dout), cache_cl)[:2])
    for name, a, b in zip(("out", "dx", "dw"), want, got, strict=True):
        np.testing.assert_array_equal(b, a, err_msg=name)
    assert np.isnan(got[2][1]).all() and np.isfinite(np.delete(got[2], 1, axis=0)).all()  # dout's NaN: channel 1
    assert is_cl(got[0]) and is_cl(got[1])


@pytest.mark.parametrize(
    ("x_shape", "k", "padding"),
    [((16, 16, 12, 12), 3, 1), ((4, 5, 9, 9), 1, 0), ((4, 1, 9, 9), 1, 0), ((4, 1, 9, 9), 3, 1), ((4, 3, 10, 9), 3, 1)],
)
def test_mixed_layouts_in_the_backward(x_shape, k, padding):
    """A channels_last x with a C-contiguous dout (or the reverse) still gives the right gradients (3 x 3 and 1 x 1,
    one input channel too, whose C-contiguous array is in both layouts; RGB: the direct 3 x 3)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((16, x_shape[1], k, k)) / 12).astype(np.float32)
    with minidl.use_backend("numba"):
        for stride in (1, 2):
            out, cache = F.conv2d_forward(x, w, None, stride, padding)
            dout = rng.standard_normal(out.shape).astype(np.float32)
            want = F.conv2d_backward(dout, cache)
            _, cache_cl = F.conv2d_forward(to_cl(x), w, None, stride, padding)
            got = F.conv2d_backward(dout, cache_cl)  # x channels_last, dout not
            for a, b in zip(want[:2], got[:2], strict=True):
                assert_close(b, a, np.float32, f"stride {stride}")
            assert is_cl(got[0])  # dx laid out as x is
            got = F.conv2d_backward(to_cl(dout), cache)  # dout channels_last, x not
            for a, b in zip(want[:2], got[:2], strict=True):
                assert_close(b, a, np.float32, f"stride {stride}")
            assert minidl.is_contiguous(got[0])


@pytest.mark.parametrize("op", ["add", "relu", "add_relu", "leaky_relu", "gelu"])
def test_elementwise_keeps_channels_last(op):
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((3, 5, 4, 6)).astype(np.float32) for _ in range(2))
    forward, backward = getattr(F, f"{op}_forward"), getattr(F, f"{op}_backward")
    args = (x, y) if op in ("add", "add_relu") else (x,)
    with minidl.use_backend("numba"):
        out, cache = forward(*args)
        dx = backward(y, cache)
        out_cl, cache_cl = forward(*map(to_cl, args))
        dx_cl = backward(to_cl(y), cache_cl)
        mixed, _ = forward(*((to_cl(x), y) if op in ("add", "add_relu") else (x[:, :, :, ::-1],)))
    assert np.array_equal(out_cl, out) and np.array_equal(dx_cl, dx)
    assert is_cl(out_cl) and is_cl(dx_cl)
    assert minidl.is_contiguous(mixed)  # inputs in different layouts: C-contiguous, as before
    flipped = x[:, :, :, ::-1]
    if op == "gelu":  # (its reference's erf: compared within a float32 rounding)
        with minidl.use_backend("numpy"):
            assert_close(mixed, F.gelu_forward(flipped)[0], np.float32, "gelu, mixed layouts")
        return
    want = {"add": x + y, "add_relu": np.maximum(x + y, 0), "relu": np.maximum(flipped, 0), "leaky_relu": None}[op]
    if want is None:
        want = np.where(flipped > 0, flipped, np.float32(0.01) * flipped)
    assert np.array_equal(mixed, want)


@pytest.mark.parametrize("shape", [(4, 16, 8, 8), (3, 5, 7, 9), (2, 64, 16, 16)])
def test_max_pool_2x2_keeps_channels_last(shape):
    """The 2 x 2, stride-2 window (odd sizes too: their last row or column is in no window) on a channels_last x:
    out, the indices and dx equal the C-contiguous run's, with ties and a NaN."""
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 3, shape).astype(np.float32)  # small integers: many ties
    x[0, 0, 0, 1] = np.nan
    with minidl.use_backend("numba"):
        out, cache = F.max_pool2d_forward(x, 2)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dx = F.max_pool2d_backward(dout, cache)
        out_cl, cache_cl = F.max_pool2d_forward(to_cl(x), 2)
        dx_cl = F.max_pool2d_backward(to_cl(dout), cache_cl)
        mixed = F.max_pool2d_backward(dout, cache_cl)
        indices, indices_cl = (nn.MaxPool2d(2, return_indices=True)(a)[1] for a in (x, to_cl(x)))
    np.testing.assert_array_equal(out_cl, out)  # (NaN where NaN)
    assert np.array_equal(dx_cl, dx) and np.array_equal(mixed, dx) and np.array_equal(indices_cl, indices)
    assert is_cl(out_cl) and is_cl(dx_cl) and is_cl(mixed)


def test_other_max_pool_windows_take_channels_last_too():
    """A 3 x 3 window, stride 2, padding 1 (no channels-last kernel): the same values, from a copy in C order."""
    x = np.random.default_rng(6).standard_normal((2, 8, 9, 9)).astype(np.float32)
    with minidl.use_backend("numba"):
        want, _ = F.max_pool2d_forward(x, 3, 2, 1)
        got, _ = F.max_pool2d_forward(to_cl(x), 3, 2, 1)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("shape", [(4, 16, 8, 8), (2, 3, 5, 7), (64, 64, 16, 16)])
def test_global_average_pool_of_channels_last(shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with minidl.use_backend("numba"):
        want, cache = F.adaptive_avg_pool2d_forward(x, 1)
        got, cache_cl = F.adaptive_avg_pool2d_forward(to_cl(x), 1)
        dout = np.random.default_rng(2).standard_normal(want.shape).astype(np.float32)
        dx, dx_cl = F.adaptive_avg_pool2d_backward(dout, cache), F.adaptive_avg_pool2d_backward(dout, cache_cl)
    assert got.shape == want.shape == shape[:2] + (1, 1)
    assert_close(got, want, np.float32, "mean")
    assert np.array_equal(dx_cl, dx) and is_cl(dx_cl)  # the gradient keeps the input's layout


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fused_resnet20_inference_stays_channels_last(backend):
    """Every 4-D activation of a fused ResNet-20 in inference is channels_last (Numba), and the logits are those of
    the C-contiguous input (both backends: the reference takes any layout)."""
    minidl.manual_seed(0)
    with minidl.use_backend(backend):
        model = nn.fuse(models.resnet20()).eval()
        x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
        layouts = []
        for name, module in model.named_modules():
            if not list(module.children()):
                module.register_forward_hook(
                    lambda m, inputs, out, name=name: (
                        layouts.append((name, minidl.suggest_memory_format(out)))
                        if getattr(out, "ndim", 0) == 4 and out.shape[1] > 1 and out.shape[2] * out.shape[3] > 1
                        else None
                    )
                )
        with minidl.no_grad():
            want = model(x)
            layouts.clear()
            got = model(to_cl(x))
    assert_close(got, want, np.float32, "logits")
    if backend == "numba":
        assert layouts and all(fmt == CL for _, fmt in layouts), [entry for entry in layouts if entry[1] != CL]
