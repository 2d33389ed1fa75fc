"""``channel_sums``: the per-channel sums a BatchNorm's statistics come from, filled by ``conv2d_forward`` and taken by
the BatchNorm pairs (``batch_norm``, ``batch_norm_relu``, ``batch_norm_relu6``, ``batch_norm_add_relu``).

The reference computes them with NumPy after the convolution (``minidl/nn/_norm_common.py``: ``channel_sums``,
``statistics_from_sums``); the Numba backend adds them up in F(4x4, 3x3)'s output pass into a ``channels_last``
output and in one pass after the other algorithms. Checked here: the sums are those of the output the pair returns
(which they do not change), for every algorithm, both layouts, float32 and float64; F(4x4, 3x3) takes them without
the pass after; the same bits for any thread count; the BatchNorm pairs given the sums compute what they compute
without them; bad arguments raise errors that name the pair.
"""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl.nn import functional as F
from tests.helpers import arr, host

CL = minidl.channels_last
BACKENDS = ["numpy", "numba"]
# (x shape, weight shape, stride, padding, groups): the algorithm the Numba backend picks for it
CONVS = {
    "F(4x4, 3x3)": ((8, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1),
    "F(2x2, 3x3)": ((4, 8, 12, 12), (8, 8, 3, 3), 1, 1, 1),
    "stride 2 (im2row)": ((4, 16, 16, 16), (32, 16, 3, 3), 2, 1, 1),
    "1x1": ((4, 16, 8, 8), (24, 16, 1, 1), 1, 0, 1),
    "3 input channels (direct)": ((4, 3, 16, 16), (16, 3, 3, 3), 1, 1, 1),
    "depthwise": ((4, 16, 8, 8), (16, 1, 3, 3), 1, 1, 16),
    "grouped": ((4, 16, 8, 8), (16, 4, 3, 3), 1, 1, 4),
}


def expected_sums(out, shift):
    d = host(out).astype(np.float64) - shift[None, :, None, None]
    return d.sum(axis=(0, 2, 3)), (d * d).sum(axis=(0, 2, 3))


def conv_case(name, dtype=np.float32, layout=None, seed=0):
    x_shape, w_shape, stride, padding, groups = CONVS[name]
    rng = np.random.default_rng(seed)
    x = arr((rng.standard_normal(x_shape) + 0.5).astype(dtype))
    if layout == CL:
        x = minidl.contiguous(x, CL)
    w = arr((rng.standard_normal(w_shape) * 0.3).astype(dtype))
    shift = rng.standard_normal(w_shape[0])
    return x, w, (stride, padding, 1, groups), shift


def new_sums(shift):
    sums = np.zeros((3, shift.size))
    sums[0] = shift
    return arr(sums)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", [None, CL], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv2d_fills_the_sums_of_its_output(backend, layout, dtype, name):
    with minidl.use_backend(backend):
        x, w, geometry, shift = conv_case(name, dtype, layout)
        sums = new_sums(shift)
        out, _ = F.conv2d_forward(x, w, None, *geometry, channel_sums=sums)
        plain, _ = F.conv2d_forward(x, w, None, *geometry)
    np.testing.assert_array_equal(host(out), host(plain), err_msg="the sums change the output")
    sums = host(sums)
    np.testing.assert_array_equal(sums[0], shift, err_msg="row 0, the shifts, is read only")
    s1, s2 = expected_sums(out, shift)
    scale = np.abs(s2).max()  # (the sums of the terms' sizes bound the rounding of both)
    np.testing.assert_allclose(sums[1], s1, rtol=0, atol=1e-12 * scale, err_msg=f"{name}: sum (out - shift)")
    np.testing.assert_allclose(sums[2], s2, rtol=1e-12, atol=0, err_msg=f"{name}: sum (out - shift)^2")


def test_f4x4_takes_the_sums_in_its_output_pass(monkeypatch):
    """Into a channels_last output, F(4x4, 3x3) sums the values as it writes them: no pass over the output after (the
    backend's ``_channel_sums``); into a C-order output, and for the other algorithms, that pass runs."""
    be = minidl.get_backend("numba")
    passes = []
    original = type(be)._channel_sums
    monkeypatch.setattr(
        type(be), "_channel_sums", lambda self, out, sums: passes.append(1) or original(self, out, sums)
    )
    with minidl.use_backend("numba"):
        for layout, name, wanted in ((CL, "F(4x4, 3x3)", 0), (None, "F(4x4, 3x3)", 1), (CL, "1x1", 1)):
            passes.clear()
            x, w, geometry, shift = conv_case(name, layout=layout)
            sums = new_sums(shift)
            out, _ = F.conv2d_forward(x, w, None, *geometry, channel_sums=sums)
            assert len(passes) == wanted, f"{name}, {layout}: {len(passes)} passes after the convolution"
            np.testing.assert_allclose(sums[1:], np.stack(expected_sums(out, shift)), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("layout", [None, CL], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("name", ["F(4x4, 3x3)", "1x1"])
def test_the_sums_do_not_depend_on_the_thread_count(layout, name):
    threads = minidl.get_num_threads()
    got = []
    try:
        with minidl.use_backend("numba"):
            x, w, geometry, shift = conv_case(name, layout=layout, seed=3)
            for n in (1, 2, 3):
                minidl.set_num_threads(n)
                sums = new_sums(shift)
                F.conv2d_forward(x, w, None, *geometry, channel_sums=sums)
                got.append(sums)
    finally:
        minidl.set_num_threads(threads)
    for n, sums in zip((2, 3), got[1:], strict=True):
        np.testing.assert_array_equal(sums, got[0], err_msg=f"1 and {n} threads")


def batch_norm_call(pair, x, residual, running, gamma, beta, **extra):
    args = (x, residual) if pair == "batch_norm_add_relu" else (x,)
    return getattr(F, f"{pair}_forward")(*args, *running, gamma, beta, True, 0.1, 1e-5, **extra)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", [None, CL], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("pair", ["batch_norm", "batch_norm_relu", "batch_norm_relu6", "batch_norm_add_relu"])
def test_batch_norm_takes_its_statistics_from_the_convolutions_sums(backend, layout, pair):
    """conv2d_forward's sums (around shifts far from the mean, 0 here) give the BatchNorm the statistics it computes
    itself, up to rounding: the output, the running statistics and every gradient."""
    rng = np.random.default_rng(5)
    with minidl.use_backend(backend):
        x, w, geometry, _ = conv_case("F(4x4, 3x3)", layout=layout, seed=4)
        sums = new_sums(np.zeros(w.shape[0]))
        y, _ = F.conv2d_forward(x, w, None, *geometry, channel_sums=sums)
        residual = minidl.contiguous(
            arr(rng.standard_normal(y.shape).astype(np.float32)), layout or minidl.contiguous_format
        )
        C = y.shape[1]
        gamma, beta = (arr(rng.standard_normal(C).astype(np.float32)) for _ in range(2))
        dout = arr(rng.standard_normal(y.shape).astype(np.float32))
        results = []
        for extra in ({}, {"channel_sums": sums}):
            running = [arr(np.zeros(C, np.float32)), arr(np.ones(C, np.float32))]
            out, cache = batch_norm_call(pair, y, residual, running, gamma, beta, **extra)
            grads = getattr(F, f"{pair}_backward")(dout, cache)
            results.append([out, *running, *grads])
    names = ["out", "running_mean", "running_var", "dx", *(["dresidual"] if pair == "batch_norm_add_relu" else [])]
    for what, got, want in zip([*names, "dgamma", "dbeta"], results[1], results[0], strict=True):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-4, atol=1e-4, err_msg=f"{pair}: {what}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sums_around_a_shift_keep_the_variance_far_from_zero(backend):
    """Values 1000 + 0.01 noise: around a shift near the mean (what ConvBn2d passes: the running mean), the variance
    keeps its digits."""
    rng = np.random.default_rng(6)
    y = (1000 + 0.01 * rng.standard_normal((16, 4, 6, 6))).astype(np.float32)
    shift = np.full(4, 1000.0)
    d = y.astype(np.float64) - 1000.0
    sums = np.stack([shift, d.sum(axis=(0, 2, 3)), (d * d).sum(axis=(0, 2, 3))])
    with minidl.use_backend(backend):
        running_mean, running_var = arr(np.zeros(4, np.float32)), arr(np.ones(4, np.float32))
        F.batch_norm_forward(arr(y), running_mean, running_var, None, None, True, 1.0, 1e-5, channel_sums=arr(sums))
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(host(running_mean), y64.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(host(running_var), y64.var(axis=(0, 2, 3), ddof=1), rtol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_channel_sums_raise_errors_that_name_the_pair(backend):
    with minidl.use_backend(backend):
        x = arr(np.ones((2, 4, 5, 5), np.float32))
        w = arr(np.ones((3, 4, 3, 3), np.float32))
        bad = {
            "a list": ([[0.0] * 3] * 3, TypeError, "must be an array"),
            "float32": (arr(np.zeros((3, 3), np.float32)), ValueError, "got shape (3, 3) and dtype float32"),
            "the input's channels": (arr(np.zeros((3, 4))), ValueError, "got shape (3, 4) and dtype float64"),
            "two rows": (arr(np.zeros((2, 3))), ValueError, "got shape (2, 3)"),
            "a view": (arr(np.zeros((3, 6)))[:, ::2], ValueError, "must be C-contiguous"),
        }
        for what, (sums, error, message) in bad.items():
            with pytest.raises(error, match=r"conv2d_forward: channel_sums \(3, 3\) float64") as info:
                F.conv2d_forward(x, w, None, 1, 1, channel_sums=sums)
            assert message in str(info.value), what
        y = arr(np.ones((2, 3, 5, 5), np.float32))
        running = (arr(np.zeros(3, np.float32)), arr(np.ones(3, np.float32)))
        with pytest.raises(ValueError, match="batch_norm_relu_forward: channel_sums give the batch statistics"):
            F.batch_norm_relu_forward(y, *running, None, None, False, channel_sums=arr(np.zeros((3, 3))))
        with pytest.raises(ValueError, match=r"batch_norm_add_relu_forward: channel_sums \(3, 3\) float64"):
            F.batch_norm_add_relu_forward(y, y, *running, None, None, True, channel_sums=arr(np.zeros((3, 2))))


def test_the_numba_backend_says_where_its_output_pass_takes_the_sums():
    """``conv2d_takes_channel_sums``: F(4x4, 3x3) into a channels_last output, in its compiled loops; and the
    reference never (it sums after the convolution)."""
    be = minidl.get_backend("numba")
    with minidl.use_backend("numba"):
        for name, layout, dtype, wanted in (
            ("F(4x4, 3x3)", CL, np.float32, True),
            ("F(4x4, 3x3)", CL, np.float64, True),
            ("F(4x4, 3x3)", None, np.float32, False),
            ("F(2x2, 3x3)", CL, np.float32, False),
            ("1x1", CL, np.float32, False),
            ("stride 2 (im2row)", CL, np.float32, False),
            ("grouped", CL, np.float32, False),
        ):
            x, w, (stride, padding, dilation, groups), _ = conv_case(name, dtype, layout)
            args = (x, w, (stride, stride), (padding,) * 4, (dilation, dilation), groups)
            assert be.conv2d_takes_channel_sums(*args) is wanted, (name, layout, dtype)
            assert minidl.get_backend("numpy").conv2d_takes_channel_sums(*args) is False


def test_the_autotuned_algorithm_takes_the_sums(monkeypatch):
    """With ``autotune`` on, the candidates are timed without the sums, and the chosen one fills them (in its
    output pass where it is F(4x4, 3x3))."""
    be = minidl.get_backend("numba")
    monkeypatch.setattr(be, "_autotune", True)
    monkeypatch.setattr(be, "_autotuned", {})
    with minidl.use_backend("numba"):
        x, w, geometry, shift = conv_case("F(4x4, 3x3)", layout=CL, seed=7)
        for _ in range(2):  # tuned by the first call, then the choice
            sums = new_sums(shift)
            out, _ = F.conv2d_forward(x, w, None, *geometry, channel_sums=sums)
            np.testing.assert_allclose(sums[1:], np.stack(expected_sums(out, shift)), rtol=1e-10, atol=1e-9)
        assert be._autotuned, "the layer was tuned"
