"""The Numba backend's convolution algorithms (``minidl/backend/_numba_conv.py``): what the table-wide test
(``test_kernels.py``) does not pin down, one algorithm at a time.

The compiled im2col/col2im against the NumPy primitives, chunking and row blocks, results independent of the thread
count, Winograd's float32 accuracy and its switch, F(4x4, 3x3)'s dW and when it runs, Winograd's reused scratch and
its weight transforms in one block or many, the direct 3 x 3 for few input channels, the ReLU epilogue, 1 x 1
convolutions for every stride and batch size, and the depthwise kernel (multipliers, an uneven 'same', its
thread-count independence and its cache). Comparisons with the reference pair use ``test_kernels.compare`` (and its
tolerances).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl.backend.numpy_backend import NumpyBackend
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache
from tests.backend.kernel_cases import Case
from tests.backend.test_kernels import assert_independent_of_the_thread_count, compare
from tests.strategies import seeds

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

dtypes = st.sampled_from([np.float32, np.float64])


def fast_be():
    return minidl.get_backend("numba")


def conv_case(x_shape, w_shape, stride, padding, algorithm, *, bias=True, compute_dw=True, dtype=np.float32, seed=0):
    """A ``conv2d`` :class:`Case` with standard normal x, weight and bias."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    params = (("x", x), ("weight", w), ("bias", b), ("stride", stride), ("padding", padding))
    return Case("conv2d", params, 5, {"compute_dw": compute_dw}, dtype, seed + 1, algorithm)


# ---------------------------------------------------------------------------------------------------- im2col
@st.composite
def conv_geometries(draw):
    """x shape and (KH, KW, SH, SW, PH, PW, DH, DW) with at least one output pixel."""
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 9))
    W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 9))
    N, C = draw(st.integers(0, 20)), draw(st.integers(1, 5))
    return (N, C, H, W), (KH, KW, SH, SW, PH, PW, DH, DW)


@given(config=conv_geometries(), dtype=dtypes, seed=seeds)
def test_compiled_im2col_and_col2im_match_the_numpy_primitives(config, dtype, seed):
    shape, geometry = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    reference = NumpyBackend()
    cols = fast_be()._im2col(x, *geometry)
    np.testing.assert_array_equal(cols, reference.im2col(x, *geometry))  # a copy: exact
    assert cols.dtype == dtype
    c = rng.standard_normal(cols.shape).astype(dtype)
    dx = fast_be()._col2im(c, shape, *geometry)
    expected = reference.col2im(c, shape, *geometry)
    assert dx.dtype == expected.dtype and dx.shape == expected.shape
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == np.float32 else {"atol": 1e-12, "rtol": 1e-12}
    np.testing.assert_allclose(dx, expected, **tol)  # sums of overlapping windows, added in another order


# ---------------------------------------------------------------------------------------------------- im2row chunks
@pytest.mark.parametrize("N", [0, 1, 37, 64])
def test_im2row_chunks_of_several_images(N):
    # small images make chunks of several images (and a ragged last chunk); an even kernel with padding 1
    compare(conv_case((N, 2, 4, 5), (3, 2, 2, 2), 1, 1, "im2row", seed=N))


# ---------------------------------------------------------------------------------------------------- direct 3 x 3
@pytest.mark.parametrize(
    ("x_shape", "O", "padding", "dtype"),
    [
        ((40, 3, 32, 32), 16, 1, np.float32),  # a CIFAR stem: several chunks of images
        ((5, 3, 11, 7), 7, 1, np.float64),  # an odd number of output channels (the last pair is one channel twice)
        ((3, 6, 9, 9), 1, 0, np.float32),  # _DIRECT_MAX_C channels in, one out, no padding
        ((2, 1, 3, 5), 4, (3, 0), np.float32),  # padding wider than the kernel on one axis
    ],
)
def test_direct_forward_and_backward(x_shape, O, padding, dtype):
    # the forward is direct, and the backward too for padding up to 2 (test_direct_backward_runs_up_to_padding_2)
    compare(conv_case(x_shape, (O, x_shape[1], 3, 3), 1, padding, "direct", dtype=dtype, seed=O))


@pytest.mark.parametrize(("padding", "direct"), [(0, True), ((2, 1), True), ((3, 1), False)])
def test_direct_backward_runs_up_to_padding_2(monkeypatch, padding, direct):
    # dx is a direct convolution with padding 2 - P: for P <= 2 the backward is direct, for P = 3 im2row's
    be = fast_be()
    calls = []
    original = type(be)._direct_conv_backward

    def spy(self, *args):
        calls.append(args[3:5])  # (PH, PW)
        return original(self, *args)

    monkeypatch.setattr(type(be), "_direct_conv_backward", spy)
    compare(conv_case((4, 3, 7, 6), (5, 3, 3, 3), 1, padding, "direct", seed=7))
    assert calls == ([padding if isinstance(padding, tuple) else (padding, padding)] if direct else [])


def test_direct_weight_gradient_of_an_infinite_pixel():
    # dW sums over the output pixels only: the rows' extra values (computed in the padded layout, never read) would
    # multiply real pixels by 0, and 0 * inf is NaN where the reference's sum is finite (an inf in the last column)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    x[0, 0, 2, 5] = np.inf
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    params = (("x", x), ("weight", w), ("bias", None), ("stride", 1), ("padding", 0))
    compare(Case("conv2d", params, 5, {"compute_dw": True}, np.float32, 2, "direct"))


@pytest.mark.parametrize("O", [4, 24])
def test_im2row_backward_in_row_blocks(O):
    # a 24x24 image has 576 output pixels: with O <= 16 the backward GEMMs run in blocks of 256 rows (256, 256, 64)
    # (7 channels in: fewer would run the forward direct, 8 with O = 24 Winograd)
    compare(conv_case((3, 7, 24, 24), (O, 7, 3, 3), 1, 1, "im2row", bias=False, seed=O))


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "padding"),
    [
        ((24, 3, 6, 6), (4, 3, 3, 2), 1, 1),
        ((24, 3, 6, 6), (5, 3, 3, 3), 1, 1),
        ((40, 8, 9, 7), (12, 8, 3, 3), 1, 1),
        ((37, 16, 32, 32), (16, 16, 3, 3), 1, 1),
        ((33, 64, 9, 13), (64, 64, 3, 3), 1, 1),
        ((32, 256, 8, 8), (256, 256, 3, 3), 1, 1),
        ((40, 8, 12, 12), (4, 8, 1, 1), 2, 0),
        ((40, 24, 4, 4), (16, 24, 1, 1), 1, 0),
    ],
    # winograd-4x4-grouped: 8 chunks whose (36, 256, 256) dU partial sums (9.4 MB each) exceed _DW_BYTES, so dW
    # sums them in 3 fixed groups of chunks
    ids=[
        "im2row",
        "direct",
        "winograd-batch-wide",
        "winograd-chunks",
        "winograd-4x4",
        "winograd-4x4-grouped",
        "pointwise",
        "pointwise-columns",
    ],
)
def test_results_do_not_depend_on_the_thread_count(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    assert_independent_of_the_thread_count("conv2d", x, w, None, stride, padding)


# ---------------------------------------------------------------------------------------------------- Winograd
def winograd_and_switched(x_shape, w_shape, switch, off):
    """``(exact, fast, switched)``: a 3 x 3 convolution (padding 1) in float64 on the reference, in float32 on the
    Numba backend, and again with its attribute ``switch`` set to ``off`` (restored after); each relative to the
    largest exact output."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape) * 0.1
    with minidl.use_backend("numpy"):
        exact = F.conv2d_forward(x, w, None, 1, 1)[0]
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    be = fast_be()
    on = getattr(be, switch)
    with minidl.use_backend("numba"):
        fast = F.conv2d_forward(x32, w32, None, 1, 1)[0]
        try:
            setattr(be, switch, off)
            switched = F.conv2d_forward(x32, w32, None, 1, 1)[0]
        finally:
            setattr(be, switch, on)
    scale = np.abs(exact).max()
    return exact / scale, fast / scale, switched / scale


def test_winograd_is_float32_accurate_and_can_be_turned_off():
    # a resnet20-sized layer: Winograd's result is within a few float32 roundings of the float64 convolution, as
    # F(4x4, 3x3) (what runs there) and as F(2x2, 3x3) (winograd_tile = 2)
    be = fast_be()
    assert be.winograd and be._winograd_applies(16, 16, 3, 3, 1, 1, 1, 1, 1, 1)
    assert be._winograd4_applies(4, 16, 16, 32, 32)
    exact, tile4, im2row = winograd_and_switched((4, 16, 32, 32), (16, 16, 3, 3), "winograd", False)
    assert np.abs(tile4 - exact).max() < 1e-5
    assert np.abs(im2row - exact).max() < 2e-6
    assert not np.array_equal(tile4, im2row), "the switch should change the algorithm (and so the roundings)"
    be.winograd_tile = 2
    try:
        exact, tile2, im2row = winograd_and_switched((4, 16, 32, 32), (16, 16, 3, 3), "winograd", False)
    finally:
        be.winograd_tile = 4
    assert np.abs(tile2 - exact).max() < 2e-6
    assert not np.array_equal(tile2, im2row) and not np.array_equal(tile2, tile4)
    # neither a 5 x 5 kernel, a stride, a dilation, padding 3 nor few channels take the Winograd path
    assert be._winograd_applies(8, 8, 3, 3, 1, 1, 0, 2, 1, 1)
    for args in [
        (8, 8, 5, 5, 1, 1, 1, 1, 1, 1),
        (8, 8, 3, 3, 2, 2, 1, 1, 1, 1),
        (8, 8, 3, 3, 1, 1, 1, 1, 2, 2),
        (8, 8, 3, 3, 1, 1, 3, 3, 1, 1),
        (3, 16, 3, 3, 1, 1, 1, 1, 1, 1),
        (16, 7, 3, 3, 1, 1, 1, 1, 1, 1),
    ]:
        assert not be._winograd_applies(*args), args


def test_winograd_switched_off_still_matches_the_reference():
    be = fast_be()
    try:
        be.winograd = False
        compare(conv_case((5, 8, 9, 7), (12, 8, 3, 3), 1, 1, "im2row"))
    finally:
        be.winograd = True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding"),
    [((40, 32, 4, 4), (24, 32, 3, 3), 1), ((20, 16, 2, 3), (40, 16, 3, 3), 1), ((9, 8, 5, 4), (8, 8, 3, 3), (0, 2))],
    ids=["4x4", "2x3", "uneven"],
)
def test_batch_wide_winograd_matches_the_chunked_one_and_the_reference(monkeypatch, x_shape, w_shape, padding, dtype):
    # few tiles per chunk (small images, many channels): the batch-wide path (_winograd_batched); the chunked path
    # (the threshold at 0) computes the same convolution, both within the reference's tolerances
    from minidl.backend import _numba_winograd_conv

    be = fast_be()
    N, C, H, W = x_shape
    PH, PW = (padding, padding) if isinstance(padding, int) else padding
    TH, TW, nb = be._winograd_tiles(N, C, w_shape[0], H + 2 * PH - 2, W + 2 * PW - 2, np.dtype(dtype).itemsize)
    batched = (N, C, w_shape[0], TH, TW, nb, np.dtype(dtype).itemsize)
    assert be._winograd_batched(*batched), "the case should take the batch-wide path"
    case = conv_case(x_shape, w_shape, 1, padding, "winograd", dtype=dtype, seed=N)
    compare(case)
    x, w, b = (value for _, value in case.params[:3])
    results = []
    for rows in (_numba_winograd_conv._WINOGRAD_MIN_ROWS, 0):
        monkeypatch.setattr(_numba_winograd_conv, "_WINOGRAD_MIN_ROWS", rows)
        assert be._winograd_batched(*batched) == (rows > 0)
        with minidl.use_backend("numba"):
            out, cache = F.conv2d_forward(x, w, b, 1, padding)
            results.append((out, *F.conv2d_backward(np.ones_like(out), cache)))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for batched, chunked in zip(*results, strict=True):
        np.testing.assert_allclose(batched, chunked, rtol=rtol, atol=rtol * np.abs(chunked).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding"),
    [
        ((32, 64, 8, 8), (64, 64, 3, 3), 1),
        ((11, 64, 13, 11), (72, 64, 3, 3), 1),
        ((16, 80, 10, 12), (64, 80, 3, 3), (0, 2)),
        ((33, 17, 11, 9), (17, 17, 3, 3), (0, 2)),
        ((32, 24, 15, 15), (32, 24, 3, 3), 1),
    ],
    ids=["8x8", "odd", "uneven-padding", "17-channels-odd", "24-to-32-channels"],
)
def test_winograd_4x4_tiles_match_the_reference(x_shape, w_shape, padding, dtype):
    # F(4x4, 3x3) (_numba_winograd4.py) for 16+ channels and outputs of 7 x 7 or more: the forward, and dx (itself
    # such a convolution), within the reference's tolerances; tiles sticking out of an odd output are cut
    be = fast_be()
    PH, PW = (padding, padding) if isinstance(padding, int) else padding
    OH, OW = x_shape[2] + 2 * PH - 2, x_shape[3] + 2 * PW - 2
    assert be._winograd4_applies(x_shape[0], x_shape[1], w_shape[0], OH, OW)
    assert be._winograd4_applies(x_shape[0], w_shape[0], x_shape[1], x_shape[2], x_shape[3])  # dx's convolution
    for bias in (True, False):
        compare(conv_case(x_shape, w_shape, 1, padding, "winograd", bias=bias, dtype=dtype, seed=x_shape[2]))


def test_winograd_4x4_tiles_of_a_wide_layer_come_in_bigger_chunks():
    # a layer whose U (36 C O values) is bigger than two chunks' budget gets C O / (C + O) tiles per chunk where the
    # cache budget gives fewer (see _winograd_tiles), here at 7 x 7 (2 x 2 tiles of 4 x 4 per image): 2 images per
    # chunk in F(2x2, 3x3), 4 (the cap at 8 chunks) here; a layer with a smaller U keeps smaller chunks. float32 only:
    # these 1152- and 2304-term sums are beyond the float64 tolerance's absolute part (meant for sums of O(1) values)
    be = fast_be()
    assert be._winograd4_applies(32, 128, 256, 7, 7) and be._winograd4_applies(32, 256, 128, 7, 7)
    assert be._winograd_tiles(32, 128, 256, 7, 7, 4, tile=2)[2] == 2
    assert be._winograd_tiles(32, 128, 256, 7, 7, 4, tile=4) == (2, 2, 4)
    # U of 2.4 MB: no bigger chunks; at least _WINOGRAD4_SPLIT (24) chunks of the 32 images, one image each
    assert be._winograd_tiles(32, 128, 128, 7, 7, 4, tile=4) == (2, 2, 1)
    compare(conv_case((32, 128, 7, 7), (256, 128, 3, 3), 1, 1, "winograd", dtype=np.float32, seed=7))


def test_winograd_4x4_tiles_are_float32_accurate_and_can_be_turned_off():
    # a resnet56 last-stage layer: F(4x4, 3x3) within a few float32 roundings of the float64 convolution (larger
    # ones than F(2x2, 3x3)'s: it multiplies by up to 8 and 1/24), and winograd_tile = 2 goes back to F(2x2, 3x3)
    be = fast_be()
    assert be.winograd_tile == 4 and be._winograd4_applies(32, 64, 64, 8, 8)
    exact, tile4, tile2 = winograd_and_switched((32, 64, 8, 8), (64, 64, 3, 3), "winograd_tile", 2)
    assert np.abs(tile4 - exact).max() < 2e-5
    assert np.abs(tile2 - exact).max() < 2e-6
    assert not np.array_equal(tile4, tile2)
    # neither fewer than 16 channels, an output under 7 x 7 nor fewer than 128 tiles in the batch takes 4 x 4 tiles
    assert be._winograd4_applies(128, 16, 16, 32, 32)  # the CIFAR ResNets' first stage
    for args in [(32, 15, 64, 8, 8), (32, 64, 8, 8, 8), (32, 64, 64, 6, 8), (32, 64, 64, 8, 4), (31, 64, 64, 8, 8)]:
        assert not be._winograd4_applies(*args), args


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("x_shape", "O", "padding"),
    [
        ((9, 16, 13, 11), 16, 1),
        ((8, 17, 10, 9), 24, 0),
        ((8, 17, 9, 10), 24, 0),
        ((7, 24, 9, 14), 17, 2),
        ((6, 32, 15, 15), 32, (0, 2)),
        ((5, 64, 11, 10), 64, 1),
    ],
    ids=[
        "16-channels-13x11",
        "17-to-24-channels-8x7",
        "17-to-24-channels-7x8",  # the last tile row cut, OW a multiple of 4, no padding below: dY's zero rows count
        "24-to-17-channels-11x16",
        "32-channels-13x17",
        "64-channels",
    ],
)
def test_winograd_4x4_weight_gradient_matches_the_float64_reference(x_shape, O, padding, dtype):
    # F(4x4, 3x3)'s dW (_winograd4_weight_gradient: the adjoint transforms of _numba_winograd4.py) on outputs that are
    # not multiples of 4 (the tiles sticking out are cut in the forward, zero in dY here), within a few roundings of
    # the float64 reference's dW, relative to its largest value (measured: float32 2e-6, float64 5e-15)
    be = fast_be()
    N, C, H, W = x_shape
    PH, PW = (padding, padding) if isinstance(padding, int) else padding
    rng = np.random.default_rng(C * O)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((O, C, 3, 3))
    with minidl.use_backend("numpy"):
        out, cache = F.conv2d_forward(x, w, None, 1, padding)
        dout = rng.standard_normal(out.shape)
        exact = F.conv2d_backward(dout, cache)[1]
    assert out.shape[2] % 4 or out.shape[3] % 4
    dw = be._winograd4_weight_gradient(x.astype(dtype), False, dout.astype(dtype), False, w.shape, PH, PW)
    assert dw.dtype == dtype and dw.shape == w.shape
    error = np.abs(dw - exact).max() / np.abs(exact).max()
    assert error < (2e-5 if dtype == np.float32 else 1e-13), f"{x_shape} -> {O}, padding {padding}: {error:.2e}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding", "tile4"),
    [
        ((11, 17, 13, 11), (48, 17, 3, 3), 1, True),
        ((22, 64, 10, 9), (64, 64, 3, 3), (0, 2), True),
        ((33, 17, 11, 9), (17, 17, 3, 3), (0, 2), True),
        ((32, 64, 8, 8), (32, 64, 3, 3), 1, True),
        ((40, 64, 6, 6), (64, 64, 3, 3), 1, False),
        ((30, 12, 10, 10), (12, 12, 3, 3), 1, False),
    ],
    ids=["17-to-48-channels", "64-channels-uneven-padding", "17-channels", "64-to-32-channels", "6x6", "12-channels"],
)
def test_winograd_weight_gradient_takes_4x4_tiles_where_the_forward_does(
    monkeypatch, x_shape, w_shape, padding, tile4, dtype
):  # fmt: skip
    # the backward of a convolution that runs as F(4x4, 3x3) (_winograd4_applies) takes dW as F(4x4, 3x3) too, else
    # as F(2x2, 3x3); both within the reference's tolerances
    from minidl.backend.numba_backend import NumbaBackend

    be = fast_be()
    PH, PW = (padding, padding) if isinstance(padding, int) else padding
    N, C, H, W = x_shape
    OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
    assert be._winograd4_applies(N, C, w_shape[0], OH, OW) == tile4
    calls = []
    original, region = NumbaBackend._winograd_weight_from, NumbaBackend._winograd4_backward

    def spy(self, dU, w_shape):  # dW from dU: 36 planes of F(4x4, 3x3), 16 of F(2x2, 3x3)
        calls.append((dU.view.shape[0], w_shape))
        return original(self, dU, w_shape)

    def spy_region(self, dout, x, weight, *args, **kwargs):  # dx and F(4x4, 3x3)'s dW in one region, dW from dU
        calls.append((36, weight.shape))
        return region(self, dout, x, weight, *args, **kwargs)

    monkeypatch.setattr(NumbaBackend, "_winograd_weight_from", spy)
    monkeypatch.setattr(NumbaBackend, "_winograd4_backward", spy_region)
    compare(conv_case(x_shape, w_shape, 1, padding, "winograd", dtype=dtype, seed=N))
    assert calls == [(36 if tile4 else 16, w_shape)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layouts", ["contiguous", "channels_last", "x-contiguous-dout-channels_last"])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding", "grouped"),
    [
        ((10, 16, 16, 16), (16, 16, 3, 3), 1, False),
        ((12, 16, 15, 13), (24, 16, 3, 3), 0, False),
        ((32, 64, 8, 8), (64, 64, 3, 3), 2, False),
        ((12, 17, 14, 11), (16, 17, 3, 3), (1, 2), False),
        ((16, 16, 16, 16), (16, 16, 3, 3), 1, True),
    ],
    ids=["16-channels", "16-to-24-channels-no-padding", "64-channels-dx-in-dW-chunks", "uneven-padding", "grouped"],
)
@pytest.mark.parametrize("loops", [True, False], ids=["compiled-loops", "task-per-chunk"])
def test_winograd4_dx_and_dw_run_chunk_by_chunk_with_the_same_bits(
    monkeypatch, x_shape, w_shape, padding, grouped, layouts, dtype, loops
):  # fmt: skip
    # where dx and dW both run as F(4x4, 3x3), one region computes a chunk's dx and then its share of dW
    # (_winograd4_backward: each thread's chunks in one compiled loop, or, where _in_loops says no, a task per chunk);
    # the results are the bits of the two run apart (_dx_with, then _dw_with). In the third case dx alone takes 2
    # images per chunk, dW (and so dx with it) 4. Where dW's partial sums are grouped (here made so by a small
    # _DW_BYTES), dx and dW run apart, each in its own region
    from minidl.backend import _numba_winograd_conv
    from minidl.backend.numba_backend import NumbaBackend

    be = fast_be()
    if not loops:
        monkeypatch.setattr(NumbaBackend, "_in_loops", lambda self, *args: False)
    if grouped:
        monkeypatch.setattr(_numba_winograd_conv, "_DW_BYTES", 3 * 36 * 16 * 16 * np.dtype(dtype).itemsize)
    N, C, H, W = x_shape
    PH, PW = (padding, padding) if isinstance(padding, int) else padding
    geometry = (3, 3, 1, 1, PH, PW, 1, 1)
    assert be._backward_algorithms(x_shape, w_shape[0], geometry)[0] == "winograd4"
    rng = np.random.default_rng(C)
    cl = minidl.channels_last
    x_layout = cl if layouts == "channels_last" else minidl.contiguous_format
    dout_layout = minidl.contiguous_format if layouts == "contiguous" else cl
    x = minidl.contiguous(rng.standard_normal(x_shape).astype(dtype), x_layout)
    w = rng.standard_normal(w_shape).astype(dtype)
    with minidl.use_backend("numba"):
        out, cache = F.conv2d_forward(x, w, None, 1, padding)
        dout = minidl.contiguous(rng.standard_normal(out.shape).astype(dtype), dout_layout)
        regions = []
        original = NumbaBackend._winograd4_backward
        monkeypatch.setattr(
            NumbaBackend,
            "_winograd4_backward",
            lambda self, *args, **kwargs: regions.append(args) or original(self, *args, **kwargs),
        )
        dx, dw, _ = F.conv2d_backward(dout, cache)
        # with dx_add (another gradient of x, laid out as x), dx's output pass adds it: the bits of the sum after
        dx_add = minidl.contiguous(rng.standard_normal(x.shape).astype(dtype), x_layout)
        dx_sum, dw_sum, _ = F.conv2d_backward(dout, cache, dx_add=dx_add)
    assert len(regions) == 2 * (not grouped)  # dx and dW in one region, or not
    assert all((args[-1] is None) == (i == 0) for i, args in enumerate(regions))  # dx_add went into the region
    apart_dx = be._dx_with("winograd4", dout, x, w, geometry)
    apart_dw = be._dw_with("winograd4", dout, x, w, geometry)
    np.testing.assert_array_equal(dx, apart_dx)
    np.testing.assert_array_equal(dw, apart_dw)
    np.testing.assert_array_equal(dx_sum, apart_dx + dx_add)
    np.testing.assert_array_equal(dw_sum, apart_dw)
    assert dx.dtype == dw.dtype == dx_sum.dtype == dtype
    assert minidl.suggest_memory_format(dx) == minidl.suggest_memory_format(x)  # (the pair lays dx out as x)
    assert minidl.suggest_memory_format(dx_sum) == minidl.suggest_memory_format(x)


def test_winograd4_backward_raises_a_failed_chunks_error_instead_of_waiting_forever(monkeypatch):
    # dW is finished in the backward's region (weight_gradient_blocks, once every chunk is done: wait_for); a thread
    # whose chunk fails never marks it done, so the others must stop waiting (sync[1] set to -1 on the way out) and
    # the region raise the error. The loop here is Python around the compiled helpers, so that one chunk can fail;
    # the region runs in a thread of its own, so that a hang fails the test instead of hanging the suite
    import threading

    from numba import njit

    from minidl.backend import _numba_winograd4
    from minidl.backend._numba_tasks import atomic_add, next_task

    chunk_done = njit(lambda sync: atomic_add(sync, 0, 1))  # (an intrinsic runs in compiled code only)

    syncs = []

    def loop(counter, N, nb, *args):
        sync = args[-3]  # (then the BatchNorm+ReLU's vectors and whether there is one)
        syncs.append(sync)
        k = next_task(counter)
        while k < (N + nb - 1) // nb:
            if k == 3:
                raise ValueError("chunk 3 failed")
            chunk_done(sync)
            k = next_task(counter)

    monkeypatch.setattr(_numba_winograd4, "backward_chunks", loop)
    rng = np.random.default_rng(0)
    x = minidl.contiguous(rng.standard_normal((32, 16, 16, 16)).astype(np.float32), minidl.channels_last)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    errors = []

    def region():
        with minidl.use_backend("numba"):
            out, cache = F.conv2d_forward(x, w, None, 1, 1)
            try:
                F.conv2d_backward(np.ones_like(out), cache)
            except ValueError as error:
                errors.append(error)

    before = minidl.get_num_threads()
    minidl.set_num_threads(2)
    thread = threading.Thread(target=region, daemon=True)
    thread.start()
    thread.join(timeout=60)
    hung = thread.is_alive()
    if hung:  # release the waiting threads by hand, so that the region frees the pool for the tests after this one
        syncs[0][1] = -1
        thread.join(timeout=60)
    minidl.set_num_threads(before)
    assert not hung, "the region hung"
    assert [str(error) for error in errors] == ["chunk 3 failed"]


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "padding", "groups"),
    [
        ((2, 8, 6, 6), (8, 4, 3, 3), 1, 1, 2),
        ((2, 8, 6, 6), (8, 1, 3, 3), 1, 1, 8),
        ((2, 3, 7, 7), (4, 3, 2, 2), 1, "same", 1),
        ((2, 4, 7, 7), (6, 4, 3, 3), 2, 1, 1),
        ((2, 4, 5, 5), (6, 4, 1, 1), 1, 0, 1),
        ((8, 16, 12, 12), (16, 16, 3, 3), 1, 1, 1),
    ],
    ids=["grouped", "depthwise", "uneven-same", "stride-2", "1x1", "winograd"],
)
@pytest.mark.parametrize("layouts", ["contiguous", "channels_last", "dx_add-contiguous"])
def test_dx_add_is_added_by_every_algorithm_and_dx_keeps_its_layout(x_shape, w_shape, stride, padding, groups, layouts):
    # conv2d_backward(..., dx_add) on the Numba backend: dx + dx_add, the same bits as the sum after, whichever
    # algorithm ran (in dx's output pass, or one more pass), and laid out as the dx without it whatever dx_add's is
    rng = np.random.default_rng(0)
    x_layout = minidl.contiguous_format if layouts == "contiguous" else minidl.channels_last
    add_layout = minidl.channels_last if layouts == "channels_last" else minidl.contiguous_format
    x = minidl.contiguous(rng.standard_normal(x_shape).astype(np.float32), x_layout)
    w = rng.standard_normal(w_shape).astype(np.float32)
    dx_add = minidl.contiguous(rng.standard_normal(x_shape).astype(np.float32), add_layout)
    with minidl.use_backend("numba"):
        out, cache = F.conv2d_forward(x, w, None, stride, padding, 1, groups)
        dout = minidl.contiguous(rng.standard_normal(out.shape).astype(np.float32), x_layout)
        dx, dw, _ = F.conv2d_backward(dout, cache)
        dx_sum, dw_sum, _ = F.conv2d_backward(dout, cache, dx_add=dx_add)
    np.testing.assert_array_equal(dx_sum, dx + dx_add)
    np.testing.assert_array_equal(dw_sum, dw)
    assert minidl.suggest_memory_format(dx_sum) == minidl.suggest_memory_format(dx)  # (dx_add's own layout aside)


def test_winograd_tile_must_be_2_or_4():
    be = fast_be()
    with pytest.raises(ValueError, match=r"NumbaBackend.winograd_tile: expected 2 .* or 4 .*, got 3"):
        be.winograd_tile = 3
    assert be.winograd_tile == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "tile", "batched"),
    [
        ((24, 17, 9, 11), (19, 17, 3, 3), 4, None),
        ((3, 13, 25, 25), (11, 13, 3, 3), 2, False),
        ((40, 13, 3, 5), (11, 13, 3, 3), 2, True),
    ],
    ids=["4x4", "2x2-chunks", "2x2-batch-wide"],
)
def test_winograd_scratch_left_over_from_a_previous_call_does_not_leak(x_shape, w_shape, tile, batched, dtype):
    # the per-worker scratch (_buffer: the channels-last copies of x and dout, "wino_x" and "wino_dy") is reused
    # across calls: filled with NaN after a first run, the same layer (no padding, so the odd OH and OW cut the last
    # tiles, whose missing rows and columns must read as zeros; C and O not multiples of 4) still matches the
    # reference, F(4x4, 3x3) (batched: None, it has no batch-wide path) and F(2x2, 3x3) chunked and batch-wide
    from minidl.backend._numba_winograd_conv import _WINOGRAD_MIN_CHANNELS

    be = fast_be()
    N, C, H, W = x_shape
    OH, OW = H - 2, W - 2
    assert OH % tile and OW % tile and C % 4 and w_shape[0] % 4 and min(C, w_shape[0]) >= _WINOGRAD_MIN_CHANNELS
    itemsize = np.dtype(dtype).itemsize
    TH, TW, nb = be._winograd_tiles(N, C, w_shape[0], OH, OW, itemsize)
    be.winograd_tile = tile
    try:
        assert be._winograd4_applies(N, C, w_shape[0], OH, OW) == (tile == 4)
        assert batched is None or be._winograd_batched(N, C, w_shape[0], TH, TW, nb, itemsize) == batched
        case = conv_case(x_shape, w_shape, 1, 0, "winograd", dtype=dtype, seed=C)
        compare(case)  # allocates the scratch
        for buffer in be._workspace.values():
            buffer.fill(np.nan)
        compare(case)
    finally:
        be.winograd_tile = 4


@pytest.mark.parametrize("C", [6, 8, 16, 24, 32, 40])
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize(("phases", "PH", "PW", "extra"), [(1, 1, 1, 0), (2, 2, 0, 1), (4, 1, 2, 3), (4, 0, 0, 2)])
def test_an_image_copy_writes_the_image_and_nothing_else(nhwc, phases, PH, PW, extra, C):
    # image_copy zeroes the scratch only for a chunk's first image (zero=True): the copy of every image writes each
    # position inside it and none outside, so the next image's copy over the first one's equals a fresh copy (8, 16,
    # 24 and 32 channels last: a pixel's values copied 8 at a time, _load8 and _store8)
    from minidl.backend._numba_kernels import image_copy

    N, H, W = 3, 7, 9
    x = np.random.default_rng(phases).standard_normal((N, C, H, W)).astype(np.float32)
    arg = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x
    Hp, Wp = H + 2 * PH + extra, -(-(W + 2 * PW + extra) // phases)
    chunk = np.full(Hp * phases * Wp * C, np.nan, np.float32)
    image_copy(arg, nhwc, 0, PH, PW, phases, Hp, Wp, chunk, True)
    image_copy(arg, nhwc, 1, PH, PW, phases, Hp, Wp, chunk, False)
    fresh = np.full_like(chunk, np.nan)
    image_copy(arg, nhwc, 1, PH, PW, phases, Hp, Wp, fresh, True)
    np.testing.assert_array_equal(chunk, fresh)
    # and the fresh copy is image 1 zero padded, its columns split by phase (col = w + PW: xt[row, col % phases,
    # col // phases, c])
    padded = np.zeros((Hp, phases * Wp, C), np.float32)
    padded[PH : PH + H, PW : PW + W] = x[1].transpose(1, 2, 0)
    expected = np.stack([padded[:, p::phases] for p in range(phases)], axis=1)
    np.testing.assert_array_equal(fresh.reshape(Hp, phases, Wp, C), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("N", "C", "H", "W", "PH", "PW"),
    [(3, 24, 13, 11, 1, 1), (2, 32, 8, 8, 1, 1), (2, 40, 9, 14, 0, 2), (2, 24, 7, 8, 2, 0), (2, 64, 3, 4, 1, 1)],
    ids=["24-channels-13x11", "32-channels-8x8", "uneven-padding", "padding-2-above", "one-tile-column"],
)
def test_winograd4_tiles_read_from_a_channels_last_image_give_the_copys_bits(N, C, H, W, PH, PW, dtype):
    # from 24 channels on, F(4x4, 3x3)'s input_tiles and output_gradient_tiles read a channels-last image straight,
    # without the padded copy (_columns_from_image, _rows_from_gradient): the same sums in the same order, so V and dM
    # equal the copy's bit for bit (the copy: the same image in NCHW), padding rows and columns included, with the
    # scratch left full of NaN by an earlier call and a chunk starting past image 0. The scratch has the sizes the
    # drivers give it (_winograd4_scratch, _winograd4_dw_scratch), inside NaN guards that no write may reach (Numba
    # does not check bounds), and the values between V's or dM's planes stay untouched too
    from minidl.backend import _numba_winograd4 as w4

    be = fast_be()

    def scratch(size):  # a view of `size` values, with as many NaN on each side (an overrun fails, not crashes)
        return np.full(3 * size, np.nan, dtype)[size : 2 * size]

    def untouched(view):
        outer = view.base
        return np.isnan(outer[: view.size]).all() and np.isnan(outer[2 * view.size :]).all()

    rng = np.random.default_rng(C + H)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    TH, TW = -(-(H + 2 * PH - 2) // 4), -(-(W + 2 * PW - 2) // 4)
    _, xt_, t_, _ = be._winograd4_scratch(0, C, C, N - 1, TH, TW, dtype)
    plane = (N - 1) * TH * TW * C + 5  # images 1 .. N - 1, and 5 values between the planes
    results = []
    for arg, nhwc in ((x, False), (xh, True)):
        xt, t = scratch(xt_.size), scratch(t_.size)
        V = np.full(36 * plane, np.nan, dtype)
        w4.input_tiles(arg, nhwc, 1, N, 1, PH, PW, TH, TW, xt, t, V, plane)
        assert untouched(xt) and untouched(t)
        results.append(V.reshape(36, plane))
    np.testing.assert_array_equal(results[1], results[0])
    assert not np.isnan(results[1][:, : plane - 5]).any() and np.isnan(results[1][:, plane - 5 :]).all()
    # dW's output gradient tiles: dout of the same shape cut into 4 x 4 tiles, the last ones past OH and OW
    TH, TW = -(-H // 4), -(-W // 4)
    _, _, t_, _, yt_ = be._winograd4_dw_scratch(0, C, C, N - 1, TH, TW, dtype)
    plane = (N - 1) * TH * TW * C + 5
    results = []
    for arg, nhwc in ((x, False), (xh, True)):
        yt, t = scratch(yt_.size), scratch(t_.size)
        dM = np.full(36 * plane, np.nan, dtype)
        w4.output_gradient_tiles(arg, nhwc, 1, N, 1, TH, TW, yt, t, dM, plane)
        assert untouched(yt) and untouched(t)
        results.append(dM.reshape(36, plane))
    np.testing.assert_array_equal(results[1], results[0])
    assert not np.isnan(results[1][:, : plane - 5]).any() and np.isnan(results[1][:, plane - 5 :]).all()


def test_winograd_planes_are_not_a_power_of_two_apart():
    # the 16 planes of V, M and U are _PLANE_PAD values further apart than their size (cache sets, see _wino_planes)
    from minidl.backend._numba_winograd_conv import _PLANE_PAD

    planes = fast_be()._wino_planes(None, "", 64, 32, np.float32)
    view, flat, plane = planes.view, planes.flat, planes.plane
    assert view.shape == (16, 64, 32) and plane == 64 * 32 + _PLANE_PAD and flat.size == 16 * plane
    assert view.strides == (plane * 4, 32 * 4, 4) and np.shares_memory(view, flat)
    view[3, 1, 2] = 7.0
    assert flat[3 * plane + 32 + 2] == 7.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize(("O", "C"), [(19, 17), (24, 33)])
def test_winograd_weight_transforms_give_the_same_bits_in_one_block_or_many(monkeypatch, O, C, tile, dtype):
    # U from W and dW from dU (_winograd_weight, _winograd_weight_from) run as one block in the calling thread when
    # they are small (_weight_blocks: at most _WEIGHT_SERIAL_VALUES values; so does every F(2x2, 3x3) layer the other
    # tests run), else in blocks of input channels [c0, c1): with the threshold at 0 these layers take the blocks too,
    # and each value comes out with the same bits (a block that ignores c0, or one dropped, fails it)
    from minidl.backend import _numba_winograd_conv

    be = fast_be()
    count = (tile + 2) ** 2
    rng = np.random.default_rng(C * O + tile)
    w = rng.standard_normal((O, C, 3, 3)).astype(dtype)
    dU = be._wino_planes(None, "", C, O, dtype, count)
    dU.view[...] = rng.standard_normal(dU.view.shape)
    results = []
    for threshold in (_numba_winograd_conv._WEIGHT_SERIAL_VALUES, 0):
        monkeypatch.setattr(_numba_winograd_conv, "_WEIGHT_SERIAL_VALUES", threshold)
        blocks = be._weight_blocks(C, O, count)
        assert (len(blocks) == 1) == (threshold > 0) and blocks[0][0] == 0 and blocks[-1][1] == C, blocks
        U = be._winograd_weight(w, dtype, tile).view.copy()
        dw = be._winograd_weight_from(dU, w.shape)
        assert U.dtype == dw.dtype == dtype and np.isfinite(U).all() and np.isfinite(dw).all()
        results.append((U, dw))
    (U1, dw1), (U2, dw2) = results
    np.testing.assert_array_equal(U2, U1, err_msg=f"F({tile}x{tile}) U of {O} x {C}: blocks against one block")
    np.testing.assert_array_equal(dw2, dw1, err_msg=f"F({tile}x{tile}) dW of {O} x {C}: blocks against one block")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize(
    ("x_shape", "O", "tile", "residual", "one_call"),
    [
        ((9, 16, 12, 12), 24, 4, False, True),
        ((5, 17, 13, 11), 19, 4, True, True),
        ((3, 13, 30, 29), 11, 2, True, True),  # 225 tiles a chunk: not batch-wide
        ((40, 16, 14, 14), 16, 4, False, True),  # dW in 8 chunks, one group (_DW_BYTES at 1 below)
        ((1, 16, 4, 4), 24, 4, True, False),  # chunks of one tile run step by step (numpy.matmul: a gemv)
        ((1, 16, 2, 2), 24, 2, False, False),
    ],
    ids=["4x4", "4x4-residual", "2x2-residual", "4x4-groups", "4x4-one-tile", "2x2-one-tile"],
)
def test_winograd_chunks_in_one_call_give_the_same_bits_as_step_by_step(
    monkeypatch, x_shape, O, tile, residual, one_call, channels_last, dtype
):  # fmt: skip
    # with NumPy's OpenBLAS, a chunk's input transform, GEMMs and output transform (and dW's) run in one compiled call
    # that calls the GEMMs itself (_numba_blas.py); MINIDL_KERNEL_GEMM=0 runs them one by one from Python, the GEMMs by
    # numpy.matmul. The two give the same bits: forward (with a residual and ReLU), dx and dW, F(4x4) and F(2x2); a
    # chunk of a single tile runs step by step either way (one_call False), as numpy.matmul would make its GEMMs gemv's
    from minidl.backend import _numba_blas, _numba_common, _numba_winograd, _numba_winograd4, _numba_winograd_conv

    monkeypatch.delenv("MINIDL_KERNEL_GEMM", raising=False)  # (a shell's setting runs the whole suite one way)
    if _numba_blas.cblas_gemm(dtype) is None:
        pytest.skip("NumPy's BLAS is not the scipy_openblas of its wheels: the chunks run step by step only")
    be = fast_be()
    rng = np.random.default_rng(sum(x_shape) + O)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal((O, x_shape[1], 3, 3)) / 6).astype(dtype)
    shape = (x_shape[0], O, x_shape[2], x_shape[3])
    res = rng.standard_normal(shape).astype(dtype) if residual else None
    dout = rng.standard_normal(shape).astype(dtype)
    if channels_last:
        x, dout = minidl.contiguous(x, minidl.channels_last), minidl.contiguous(dout, minidl.channels_last)
        res = None if res is None else minidl.contiguous(res, minidl.channels_last)
    if x_shape[0] == 40:  # several chunks per group of the dW partial sums: the kernel adds into the group's sum
        monkeypatch.setattr(_numba_common, "_DW_BYTES", 1)
        monkeypatch.setattr(_numba_winograd_conv, "_DW_BYTES", 1)
    name = f"winograd{tile}"
    geometry = (3, 3, 1, 1, 1, 1, 1, 1)
    module = _numba_winograd4 if tile == 4 else _numba_winograd
    calls = []
    # (F(4x4, 3x3)'s forward and dx run their chunks in compiled loops, forward_chunks, which call forward_chunk)
    for kernel in ("forward_chunk", "forward_chunks", "weight_gradient_chunk"):
        if hasattr(module, kernel):
            original = getattr(module, kernel)
            monkeypatch.setattr(module, kernel, lambda *a, _k=kernel, _f=original: (calls.append(_k), _f(*a))[1])
    results = []
    for setting in ("", "0"):
        monkeypatch.setenv("MINIDL_KERNEL_GEMM", setting)
        calls.clear()
        out = be._forward_with(name, x, w, None, geometry, np.inf if residual else None, res)
        results.append((out, be._dx_with(name, dout, x, w, geometry), be._dw_with(name, dout, x, w, geometry)))
        ran = {"forward_chunk", "forward_chunks"} & set(calls) and "weight_gradient_chunk" in calls
        assert bool(ran) == (one_call and setting == ""), (setting, calls)
    for label, one_call, step_by_step in zip(("out", "dx", "dW"), *results, strict=True):
        assert np.isfinite(one_call).all()
        np.testing.assert_array_equal(one_call, step_by_step, err_msg=f"{label}: one call against step by step")
    if x_shape[2] > 2:  # (a 2 x 2 image has fewer pixels than the reference comparison's 3 x 3 window needs)
        compare(conv_case(x_shape, w.shape, 1, 1, "winograd", dtype=dtype, seed=O))  # and the reference, in one call


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_in_kernels_is_numpys_blas_or_nothing(monkeypatch, dtype):
    # cblas_gemm gives NumPy's own cblas_?gemm for float32 and float64 (checked on a small product when found), None
    # for other dtypes, with MINIDL_KERNEL_GEMM=0 and for a BLAS that is not the one in NumPy's wheels (another
    # value of the variable is refused); gemm_planes computes what numpy.matmul does, plane by plane, for matrices
    # of more than one row (numpy.matmul takes a one-row one as a vector: the drivers leave those to it)
    from minidl.backend import _numba_blas, _threads

    monkeypatch.delenv("MINIDL_KERNEL_GEMM", raising=False)
    assert _numba_blas.cblas_gemm(np.float16) is None and _numba_blas.cblas_gemm(np.int32) is None
    monkeypatch.setenv("MINIDL_KERNEL_GEMM", "0")
    assert _numba_blas.cblas_gemm(dtype) is None
    monkeypatch.setenv("MINIDL_KERNEL_GEMM", "yes")
    with pytest.raises(ValueError, match="MINIDL_KERNEL_GEMM must be 0 or 1, got 'yes'"):
        _numba_blas.cblas_gemm(dtype)
    monkeypatch.delenv("MINIDL_KERNEL_GEMM")
    with monkeypatch.context() as m:  # a system OpenBLAS (its integer width unknown), or none at all
        m.setattr(_numba_blas, "_found", {})
        m.setattr(_threads, "_openblas", lambda: (None, None, None, "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"))
        assert _numba_blas.cblas_gemm(dtype) is None
        m.setattr(_numba_blas, "_found", {})
        m.setattr(_threads, "_openblas", lambda: None)
        assert _numba_blas.cblas_gemm(dtype) is None
    gemm = _numba_blas.cblas_gemm(dtype)
    if gemm is None:
        pytest.skip("NumPy's BLAS is not the scipy_openblas of its wheels")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 5, 4)).astype(dtype), rng.standard_normal((3, 4, 6)).astype(dtype)
    c = np.full((3, 5, 6), np.nan, dtype)
    _numba_blas.gemm_planes(gemm, 3, False, 5, 6, 4, a.reshape(-1), 20, b.reshape(-1), 24, c.reshape(-1), 30)
    np.testing.assert_array_equal(c, np.matmul(a, b))
    at = np.ascontiguousarray(a.transpose(0, 2, 1))  # (3, 4, 5): used transposed
    c[...] = np.nan
    _numba_blas.gemm_planes(gemm, 3, True, 5, 6, 4, at.reshape(-1), 20, b.reshape(-1), 24, c.reshape(-1), 30)
    np.testing.assert_array_equal(c, np.matmul(at.transpose(0, 2, 1), b))


# ---------------------------------------------------------------------------------------------------- ReLU epilogue
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "bias", "geometry"),
    [
        ((3, 2, 7, 6), (4, 2, 3, 3), True, (3, 3, 1, 1, 1, 1, 1, 1)),
        ((5, 8, 9, 7), (12, 8, 3, 3), False, (3, 3, 1, 1, 1, 1, 1, 1)),
        ((5, 8, 9, 7), (12, 8, 3, 3), True, (3, 3, 1, 1, 1, 1, 1, 1)),
        ((40, 8, 12, 12), (4, 8, 1, 1), False, (1, 1, 2, 2, 0, 0, 1, 1)),
        ((40, 8, 6, 6), (4, 8, 1, 1), True, (1, 1, 1, 1, 0, 0, 1, 1)),
        ((40, 8, 4, 4), (4, 8, 1, 1), True, (1, 1, 1, 1, 0, 0, 1, 1)),
        ((40, 8, 7, 7), (4, 8, 1, 1), False, (1, 1, 2, 2, 0, 0, 1, 1)),
    ],
    ids=["im2row", "winograd", "winograd-bias", "pointwise", "pointwise-bias", "columns-bias", "columns-strided"],
)
@pytest.mark.parametrize("relu_max", [math.inf, 6.0], ids=["relu", "relu6"])
def test_activation_epilogue_is_the_activation_of_the_output(x_shape, w_shape, bias, geometry, relu_max):
    # the ReLU (ReLU6) applied in the convolution's output pass (conv2d_relu and conv2d_relu6: inference fusion in
    # minidl/nn/fusion.py); inputs scaled so that about a tenth of the outputs exceed 6
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(x_shape) * 2).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    plain = fast_be()._conv2d_dense(x, w, b, *geometry)
    fused = fast_be()._conv2d_dense(x, w, b, *geometry, relu_max=relu_max)
    np.testing.assert_array_equal(fused, np.clip(plain, 0, relu_max))
    assert (plain > 6).mean() > 0.05 and (plain < 0).mean() > 0.2
    KH, KW, SH, SW, PH, PW, DH, DW = geometry
    op = "conv2d_relu" if relu_max == math.inf else "conv2d_relu6"
    with minidl.use_backend("numba"):  # and through the pair
        out, cache = getattr(F, f"{op}_forward")(x, w, b, (SH, SW), (PH, PW), (DH, DW))
        assert isinstance(cache, KernelCache)
        np.testing.assert_array_equal(out, fused)
        dx, dw, db = getattr(F, f"{op}_backward")(np.ones_like(out), cache)
        conv_cache = F.conv2d_forward(x, w, b, (SH, SW), (PH, PW), (DH, DW))[1]
        mask = (plain > 0) & (plain < relu_max)  # the activation's mask is the output's
        masked = F.conv2d_backward(mask.astype(np.float32), conv_cache)
        for got, expected in zip((dx, dw, db), masked, strict=True):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_activation_epilogue(dtype):
    # MobileNetV2's depthwise 3 x 3 layers (stride 1 and 2) with the ReLU6 (and ReLU) in their output pass
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((3, 8, 9, 7)) * 3).astype(dtype)
    w, b = rng.standard_normal((8, 1, 3, 3)).astype(dtype), rng.standard_normal(8).astype(dtype)
    x[0, 0, 0, 0] = np.nan  # NaN stays NaN, as in the reference pairs
    for stride in (1, 2):
        with minidl.use_backend("numba"):
            plain = F.conv2d_forward(x, w, b, stride, 1, 1, 8)[0]
            for op, top in (("conv2d_relu", np.inf), ("conv2d_relu6", 6.0)):
                out, cache = getattr(F, f"{op}_forward")(x, w, b, stride, 1, 1, 8)
                assert isinstance(cache, KernelCache), op
                np.testing.assert_array_equal(out, np.clip(plain, 0, top), err_msg=op)
        assert np.isnan(plain).any() and (plain > 6).any() and (plain < 0).any()


# ---------------------------------------------------------------------------------------------------- 1 x 1
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1), (3, 2)])
@pytest.mark.parametrize("N", [0, 1, 37])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_conv2d_matches_the_reference(stride, N, dtype):
    # 1 x 1 without padding (_numba_pointwise.py): one (O, C) @ (C, OH OW) product per image for outputs of 32 pixels
    # or more, one (O, C) @ (C, images OH OW) product per chunk below that (MobileNetV2's 4 x 4 layers), forward and
    # backward
    for bias, compute_dw in ((True, True), (False, False)):
        options = {"bias": bias, "compute_dw": compute_dw, "dtype": dtype, "seed": N + stride[0]}
        compare(conv_case((N, 6, 13, 17), (5, 6, 1, 1), stride, 0, "pointwise", **options))
        compare(conv_case((N, 6, 5, 6), (5, 6, 1, 1), stride, 0, "pointwise", **options))


# ---------------------------------------------------------------------------------------------------- depthwise
def depthwise_case(x_shape, multiplier, kernel, stride, padding, dilation, **options):
    """A depthwise ``conv2d`` :class:`Case` (groups = C, weight (C multiplier, 1, KH, KW))."""
    case = conv_case(x_shape, (x_shape[1] * multiplier, 1, *kernel), stride, padding, "depthwise", **options)
    params = (*case.params, ("dilation", dilation), ("groups", x_shape[1]))
    return case._replace(params=params, positional=7)


@pytest.mark.parametrize(
    ("x_shape", "multiplier", "kernel", "stride", "padding", "dilation"),
    [
        ((16, 32, 8, 8), 1, (3, 3), 1, 1, 1),  # MobileNetV2's 3 x 3 (a smaller batch): channels last
        ((19, 33, 9, 7), 1, (3, 3), 2, 1, 1),  # channels last at stride 2, 33 channels (the copies' remainders)
        ((3, 36, 5, 5), 1, (3, 3), 1, 0, 1),  # channels last without padding
        ((9, 12, 9, 7), 1, (3, 3), 2, 1, 1),  # 3 x 3, stride 1 or 2, no dilation: a row at a time (phases for 2)
        ((3, 5, 20, 19), 1, (3, 3), 1, 1, 1),
        ((4, 6, 11, 13), 1, (3, 3), 1, 0, 1),
        ((4, 6, 11, 13), 2, (3, 3), 2, 2, 1),  # multiplier 2, stride 2
        ((4, 6, 11, 13), 2, (3, 3), 1, 1, 1),  # multiplier 2 at stride 1: dx by the scattering loops
        ((3, 7, 10, 9), 1, (3, 3), 2, (0, 1), 1),
        ((2, 40, 17, 17), 1, (3, 3), 1, (2, 0), 1),  # 32+ channels but outputs wider than 8: rows
        ((2, 5, 6, 6), 1, (3, 3), 1, 3, 1),  # padding 3: dx by the scattering loops
        ((3, 5, 21, 40), 1, (3, 5), 1, (1, 2), 1),  # not 3 x 3: the per-plane loops
        ((3, 5, 21, 40), 1, (3, 5), 2, (1, 2), 1),
        ((2, 32, 9, 9), 1, (3, 3), 1, 2, 2),  # channels last, dilated
        ((2, 32, 12, 20), 1, (5, 5), (1, 2), 2, 1),  # channels last: more than 9 taps
        ((33, 32, 4, 4), 1, (7, 7), 1, 3, 1),  # channels last, 7 x 7: chunks of 2 images (dW over both), a last of 1
        ((5, 4, 11, 10), 2, (7, 7), 1, 3, 1),  # ConvNeXt's 7 x 7, depth multiplier 2
        ((3, 6, 8, 9), 1, (4, 2), 1, "same", (2, 1)),  # an uneven 'same': the extra row and column are cropped
        ((2, 3, 5, 5), 3, (3, 3), (3, 2), (0, 2), (1, 2)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_conv2d_matches_the_reference(x_shape, multiplier, kernel, stride, padding, dilation, dtype):
    for bias, compute_dw in ((True, True), (False, False)):
        options = {"bias": bias, "compute_dw": compute_dw, "dtype": dtype}
        compare(depthwise_case(x_shape, multiplier, kernel, stride, padding, dilation, **options))


def test_depthwise_backward_with_an_infinite_weight():
    # dx from dout's values only, as the reference: the flipped-filter kernel of stride 1 would also multiply the inf
    # by dout's zero padding (NaN), so a non-finite weight sends dx to the scattering loops
    case = depthwise_case((2, 3, 6, 9), 1, (3, 3), 1, 1, 1, dtype=np.float64)
    w = dict(case.params)["weight"].copy()
    w[0, 0, 0, 0] = np.inf
    compare(case._replace(params=tuple((k, w if k == "weight" else v) for k, v in case.params)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, 1, 1), (2, 1, 1), (1, 0, 2), ((2, 1), (0, 2), 1)])
def test_depthwise_layouts_give_the_same_results(stride, padding, dilation, dtype, monkeypatch):
    # narrow outputs or many taps run channels last (one loop over the channels per tap), 3 x 3 a row at a time
    # (one loop over a row for all nine taps), the rest plane by plane: the same products summed in the same order,
    # so the same bits (and the same ReLU6 epilogue); 13 channels and 11 x 10 images, so that the channels-last copies'
    # 4 x 4 blocks leave rows and columns over on both sides
    from minidl.backend import _numba_depthwise

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 13, 11, 10)) * 3).astype(dtype)
    results = []
    with minidl.use_backend("numba"):
        for layout in ("planes", "channels last", "rows"):  # every convolution one way, then the others
            everything = layout == "channels last"
            monkeypatch.setattr(_numba_depthwise, "_CHANNELS_LAST_MAX_OW", 10**6 if everything else 0)
            monkeypatch.setattr(_numba_depthwise, "_CHANNELS_LAST_MIN_TAPS", 1 if everything else 10**6)
            monkeypatch.setattr(_numba_depthwise, "_CHANNELS_LAST_MIN_C", 1)
            monkeypatch.setattr(_numba_depthwise, "_ROWS_STRIDES", (1, 2) if layout == "rows" else ())
            results.append([])
            for k in (3, 5):
                w = np.random.default_rng(k).standard_normal((13, 1, k, k)).astype(dtype)
                b = np.random.default_rng(k + 10).standard_normal(13).astype(dtype)
                results[-1].append(F.conv2d_forward(x, w, b, stride, padding, dilation, 13)[0])
                results[-1].append(F.conv2d_relu6_forward(x, w, None, stride, padding, dilation, 13)[0])
    for plane, *others in zip(*results, strict=True):
        for other in others:
            np.testing.assert_array_equal(plane, other)


@pytest.mark.parametrize("shape", [(24, 10, 9, 9), (40, 32, 4, 4)], ids=["rows", "channels-last"])
def test_depthwise_results_do_not_depend_on_the_thread_count(shape):
    # channels last: the backward's dW is summed per fixed chunk of images, the chunks in order
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((shape[1], 1, 3, 3)).astype(np.float32)
    assert_independent_of_the_thread_count("conv2d", x, w, None, 1, 1, 1, shape[1])


def test_depthwise_caches_the_input_not_a_column_matrix():
    x = np.random.default_rng(0).standard_normal((4, 8, 6, 6)).astype(np.float32)
    with minidl.use_backend("numba"):
        _, cache = F.conv2d_forward(x, np.ones((8, 1, 3, 3), np.float32), None, 1, 1, 1, 8)
    assert cache.cache[0].shape == x.shape  # the reference keeps im2col's (C KH KW, N OH OW), 9x the input


@pytest.mark.parametrize(
    "x_shape, w_shape, groups, stride",
    [((2, 8, 9, 9), (8, 1, 3, 3), 8, 1), ((2, 16, 8, 8), (16, 16, 3, 3), 1, 1), ((2, 3, 8, 8), (8, 3, 3, 3), 1, 1),
     ((2, 8, 8, 8), (16, 8, 1, 1), 1, 2), ((2, 4, 7, 7), (6, 4, 3, 3), 1, 2)],
    ids=["depthwise", "winograd", "direct", "pointwise", "im2row"],
)  # fmt: skip
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_conv2d_add_relu_in_float16_and_both_layouts(x_shape, w_shape, groups, stride, memory_format):
    # float16 is computed in float32 and cast back (whether the residual joins the output pass or one more pass adds
    # it), within a float16 rounding of the reference; the residual may come in the other layout
    rng = np.random.default_rng(13)
    layout = minidl.channels_last if memory_format == "channels_last" else minidl.contiguous_format
    x = minidl.contiguous(rng.standard_normal(x_shape).astype(np.float16), layout)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float16)
    N, O = x_shape[0], w_shape[0]
    size = (x_shape[2] - 1) // stride + 1
    residual = rng.standard_normal((N, O, size, size)).astype(np.float16)
    pad = w_shape[2] // 2
    expected = F.conv2d_add_relu_forward(x, residual, w, None, stride, pad, 1, groups)[0]
    with minidl.use_backend("numba"):
        out, cache = F.conv2d_add_relu_forward(x, residual, w, None, stride, pad, 1, groups)
        assert isinstance(cache, KernelCache) and out.dtype == np.float16
        dx, dres, dw, db = F.conv2d_add_relu_backward(np.ones_like(out), cache)
    np.testing.assert_allclose(out.astype(np.float32), expected.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert dx.dtype == dres.dtype == dw.dtype == np.float16 and db is None
    np.testing.assert_array_equal(dres, (out > 0).astype(np.float16))


# ---------------------------------------------------------------------------------------------------- the autotuner
#: (x shape, weight shape, stride, padding): a layer of each kind the autotuner chooses for: Winograd's F(2x2, 3x3) by
#: the rules (F(4x4, 3x3), the direct 3 x 3 and im2row besides); F(4x4, 3x3) by the rules; a 1 x 1 stride 2; an RGB
#: stem (direct by the rules; Winograd's with 3 channels besides); 12 channels in, 4 out (im2row by the rules)
TUNED_LAYERS = [
    ((6, 16, 9, 9), (16, 16, 3, 3), 1, 1),
    ((9, 16, 16, 15), (24, 16, 3, 3), 1, 1),
    ((4, 5, 7, 7), (6, 5, 1, 1), 2, 0),
    ((5, 3, 8, 8), (4, 3, 3, 3), 1, 1),
    ((3, 12, 6, 7), (4, 12, 3, 3), 1, 0),
]

#: the methods that show which algorithm ran (called by the dispatchers below them)
_RUNS = {
    "winograd2": ("_winograd_conv", "_winograd_weight_gradient"),
    "winograd4": ("_winograd4_conv", "_winograd4_weight_gradient"),
    "im2row": ("_im2row_conv", "_im2row_conv_backward"),
    "direct": ("_direct_conv", "_direct_conv_backward"),
    "pointwise": ("_pointwise_conv", "_pointwise_conv_backward"),
}


def _force(monkeypatch, be, choices):
    """Make the backend's algorithm choice ``choices[direction]`` ('forward', 'backward', 'dx', 'dw'), checking it is
    one of the algorithms that can run the layer."""

    def tuned(self, about, names, run, result=True):
        name = choices[about["direction"]]
        assert name in names, f"{about['direction']}: {name} is not one of {names}"
        return run(name) if result else name

    monkeypatch.setattr(type(be), "_tuned", tuned)
    monkeypatch.setattr(be, "_autotune", True)


def _ran(monkeypatch, be):
    """Record, per part ('forward', 'dx', 'dw', or 'backward' for one pass of both), the algorithms' methods that
    ran (instance attributes shadow the methods)."""
    seen: dict[str, set[str]] = {}
    part = ["forward"]
    methods = {m for pair in _RUNS.values() for m in pair}
    for method in methods | {"_dx_with", "_dw_with", "_backward_with"}:
        original = getattr(be, method)

        def spy(*args, _original=original, _method=method, **kwargs):
            if _method in ("_dx_with", "_dw_with", "_backward_with"):
                part[0] = {"_dx_with": "dx", "_dw_with": "dw", "_backward_with": "backward"}[_method]
            else:
                seen.setdefault(part[0], set()).add(_method)
            return _original(*args, **kwargs)

        monkeypatch.setattr(be, method, spy)
    return seen, part


def _algorithm_of(methods, backward):
    """The algorithm whose method ran (F(4x4, 3x3) calls F(2x2, 3x3)'s dispatcher first)."""
    names = [name for name, pair in _RUNS.items() if pair[1 if backward else 0] in methods]
    return "winograd4" if "winograd4" in names else (names[0] if len(names) == 1 else names)


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), TUNED_LAYERS)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_every_algorithm_the_autotuner_may_choose_runs_and_matches_the_reference(
    monkeypatch, x_shape, w_shape, stride, padding, memory_format
):
    # each algorithm of each direction (dx and dW apart where Winograd can run the layer, a mix of two algorithms too)
    # runs when chosen, and gives the reference's results
    be = fast_be()
    geometry = (w_shape[2], w_shape[3], stride, stride, padding, padding, 1, 1)
    forward = be._forward_algorithms(x_shape, w_shape[0], geometry)
    backward = be._backward_algorithms(x_shape, w_shape[0], geometry)
    assert len(forward) >= 2 and len(backward) >= 2 and "im2row" in forward and "im2row" in backward
    layout = minidl.channels_last if memory_format == "channels_last" else minidl.contiguous_format
    split = any(name in backward for name in ("winograd2", "winograd4"))
    for i, name in enumerate(forward):
        back = backward[i % len(backward)]
        mix = backward[(i + 1) % len(backward)]  # dW by another algorithm than dx
        choices = {"forward": name, "backward": back, "dx": back, "dw": mix}
        _force(monkeypatch, be, choices)
        case = conv_case(x_shape, w_shape, stride, padding, None, seed=i)
        case = Case(case.op, tuple((k, minidl.contiguous(v, layout) if k == "x" else v) for k, v in case.params),
                    *case[2:])  # fmt: skip
        compare(case)
        seen, part = _ran(monkeypatch, be)
        args, _ = case.call()
        with minidl.use_backend("numba"):
            out, cache = F.conv2d_forward(*args)
            part[0] = "backward"
            F.conv2d_backward(np.ones_like(out), cache)
        monkeypatch.undo()  # (the spies and the forced choice)
        assert _algorithm_of(seen["forward"], False) == name, (name, seen)
        if not split:
            assert _algorithm_of(seen["backward"], True) == back, (back, seen)
        elif back == mix == "im2row":  # both im2row: one pass
            assert _algorithm_of(seen["backward"], True) == "im2row", seen
        else:
            assert _algorithm_of(seen["dx"], back not in _WINOGRAD) == back, (back, seen)
            assert _algorithm_of(seen["dw"], True) == mix, (mix, seen)


_WINOGRAD = ("winograd2", "winograd4")


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), [TUNED_LAYERS[0], *TUNED_LAYERS[2:]])
def test_every_forward_algorithm_adds_a_residual_and_applies_the_relu(monkeypatch, x_shape, w_shape, stride, padding):
    # conv2d_add_relu: in the output pass (Winograd, and the products into a channels_last output) or one more pass
    be = fast_be()
    rng = np.random.default_rng(3)
    geometry = (w_shape[2], w_shape[3], stride, stride, padding, padding, 1, 1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    N, O, size = x_shape[0], w_shape[0], (x_shape[2] + 2 * padding - w_shape[2]) // stride + 1
    residual = rng.standard_normal((N, O, size, (x_shape[3] + 2 * padding - w_shape[3]) // stride + 1)).astype(
        np.float32
    )
    with minidl.use_backend("numpy"):
        expected = F.conv2d_add_relu_forward(x, residual, w, None, stride, padding)[0]
    for name in be._forward_algorithms(x_shape, O, geometry):
        _force(monkeypatch, be, {"forward": name})
        for layout in (minidl.contiguous_format, minidl.channels_last):
            with minidl.use_backend("numba"):
                out, _ = F.conv2d_add_relu_forward(minidl.contiguous(x, layout), residual, w, None, stride, padding)
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4, err_msg=f"{name}, {layout}")


class _Clock:
    """A stand-in for the ``time`` module of ``_numba_conv``: perf_counter advances only by what the fake runs
    take."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def _tuner(monkeypatch, durations):
    """The backend with the autotuner on, an empty table, a fake clock, and a run that takes ``durations[name]``
    seconds, returns the name, counts its calls and sizes a scratch buffer."""
    from minidl.backend import _numba_conv

    be = fast_be()
    clock = _Clock()
    monkeypatch.setattr(_numba_conv, "time", clock)
    monkeypatch.setattr(be, "_autotuned", {})
    monkeypatch.setattr(be, "_autotune", True)
    monkeypatch.setattr(be, "_workspace", {})  # (the scratch buffers: the test's own)
    calls: dict[str, int] = {}

    def run(name):
        calls[name] = calls.get(name, 0) + 1
        be._buffer(0, f"scratch of {name}", (4,), np.float32)
        clock.now += durations[name]
        return name

    return be, run, calls


@pytest.mark.parametrize(
    ("durations", "chosen"),
    [
        ({"rules": 1.0, "other": 0.97, "third": 0.99}, "rules"),  # within _AUTOTUNE_MARGIN (5 %): the rules stay
        ({"rules": 1.0, "other": 0.90, "third": 0.93}, "other"),  # faster by more: the fastest
        ({"rules": 0.5, "other": 0.90, "third": 2.0}, "rules"),
    ],
)
def test_autotune_keeps_the_rules_choice_unless_another_is_faster_by_a_margin(monkeypatch, durations, chosen):
    be, run, calls = _tuner(monkeypatch, durations)
    names = ("rules", "other", "third")
    assert be._tuned({"direction": "forward", "x": (1,)}, names, run) == chosen
    assert calls == {
        "rules": 3 + (chosen == "rules"),
        "other": 3 + (chosen == "other"),
        "third": 3 + (chosen == "third"),
    }  # fmt: skip  (one untimed, two timed; then the chosen's)
    assert {key[1] for key in be._workspace} == {f"scratch of {chosen}"}  # the others' scratch given back
    [result] = be.autotune_results()
    assert result["algorithm"] == chosen and result["direction"] == "forward" and result["x"] == (1,)
    assert result["ms"] == {name: 1e3 * durations[name] for name in names} and result["threads"] >= 1
    calls.clear()
    assert be._tuned({"direction": "forward", "x": (1,)}, names, run, result=False) == chosen  # known: no timing
    assert calls == {}
    assert be._tuned({"direction": "forward", "x": (2,)}, names, run, result=False) == chosen  # a new shape: timed
    assert sum(calls.values()) == 9  # (the name only: the chosen does not run again)
    be._buffer(0, "shared", (64,), np.float32)  # a buffer the tried algorithms grow is the one before, after tuning
    key = (0, "shared", np.dtype(np.float32).str)
    before = be._workspace[key]

    def growing(name):
        be._buffer(0, "shared", (1024,), np.float32)
        return run(name)

    be._tuned({"direction": "forward", "x": (3,)}, names, growing, result=False)
    assert be._workspace[key] is before and before.size == 64


def test_autotune_times_short_runs_for_at_least_a_hundredth_of_a_second(monkeypatch):
    be, run, calls = _tuner(monkeypatch, {"rules": 0.004, "other": 0.0011})
    assert be._tuned({"direction": "forward"}, ("rules", "other"), run, result=False) == "other"
    assert calls == {"rules": 1 + 3, "other": 1 + 10}  # timed until 0.01 s: 3 x 4 ms, 10 x 1.1 ms


def test_autotune_with_real_convolutions_tunes_each_shape_once(monkeypatch):
    be = fast_be()
    runs = []
    original = type(be)._forward_with

    def counted(self, algorithm, *args, **kwargs):
        runs.append(algorithm)
        return original(self, algorithm, *args, **kwargs)

    monkeypatch.setattr(type(be), "_forward_with", counted)
    monkeypatch.setattr(be, "_autotuned", {})
    monkeypatch.setattr(be, "_autotune", True)
    x_shape, w_shape, stride, padding = TUNED_LAYERS[0]
    names = be._forward_algorithms(x_shape, w_shape[0], (3, 3, 1, 1, 1, 1, 1, 1))
    compare(conv_case(x_shape, w_shape, stride, padding, None))  # tunes the forward, dx and dW, then runs them
    assert set(runs) == set(names) and len(runs) >= 3 * len(names) + 1
    results = {r["direction"]: r for r in be.autotune_results()}
    assert set(results) == {"forward", "dx", "dw"}
    for r in results.values():
        assert r["x"] == x_shape and r["weight"] == w_shape and r["geometry"] == (3, 3, 1, 1, 1, 1, 1, 1)
        assert r["channels_last"] is False and r["dtype"] == "float32" and r["algorithm"] in r["ms"]
    assert results["forward"]["epilogue"] is None and set(results["forward"]["ms"]) == set(names)
    runs.clear()
    compare(conv_case(x_shape, w_shape, stride, padding, None, seed=5))  # the same shapes: no more timing
    assert runs == [results["forward"]["algorithm"]]


def test_autotune_is_a_bool_and_its_environment_variable_0_or_1(monkeypatch):
    from minidl.backend._numba_conv import autotune_from_environment

    be = fast_be()
    with pytest.raises(TypeError, match=r"NumbaBackend.autotune: expected True or False, got 1"):
        be.autotune = 1
    assert type(be).autotune.__doc__.startswith("Time the algorithms")
    for value, expected in (("", False), ("0", False), ("1", True)):
        monkeypatch.setenv("MINIDL_AUTOTUNE", value)
        assert autotune_from_environment() is expected
    monkeypatch.setenv("MINIDL_AUTOTUNE", "yes")
    with pytest.raises(ValueError, match="MINIDL_AUTOTUNE must be 0 or 1, got 'yes'"):
        autotune_from_environment()
