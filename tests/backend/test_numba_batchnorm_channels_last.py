"""The Numba backend's BatchNorm kernels on ``channels_last`` inputs (``minidl/backend/_numba_batchnorm_cl.py``, run
by ``_numba_batchnorm_rows.py``).

A channels_last input is read as rows of C values, with the statistics summed over fixed chunks of rows; the results
must be those of the same values laid out C-contiguous (the per-channel kernels, which ``test_kernels.py`` checks
against the reference) up to the order of the float64 sums, and laid out channels_last themselves: out, dx (also for
a C-contiguous dout), for ``batch_norm``, ``batch_norm_relu`` and ``batch_norm_relu6``, training and eval, with and
without the affine map. Also: results that do not depend on the number of threads, statistics accurate far from zero,
the other layouts left on the per-channel path, and the threads' compiled loops through the two passes: every chunk
taken once, the step between run once, and a failed chunk's error raised instead of a hang.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import minidl
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

from minidl.backend import _numba_batchnorm, _numba_batchnorm_cl, _numba_batchnorm_rows  # noqa: E402  (needs numba)

CL = minidl.channels_last
OPS = ("batch_norm", "batch_norm_relu", "batch_norm_relu6")
NAMES = ("out", "dx", "dgamma", "dbeta", "running_mean", "running_var")
# (shape, dtype): the 8 x 8 images make one chunk of rows, 3 x 5 x 7 x 9 tiles of 255 values that do not divide the
# rows (tails everywhere), the 128 x 16 x 32 x 32 batch 16 chunks of 8,192 rows
SHAPES = {
    "4x16x8x8 float32": ((4, 16, 8, 8), np.float32),
    "3x5x7x9 float32": ((3, 5, 7, 9), np.float32),
    "3x5x7x9 float64": ((3, 5, 7, 9), np.float64),
    "128x16x32x32 float32": ((128, 16, 32, 32), np.float32),
    "16x40x9x9 float64": ((16, 40, 9, 9), np.float64),
}


def to_cl(a):
    return minidl.contiguous(a, CL)


def is_cl(a):
    return minidl.suggest_memory_format(a) == CL


def fast_be():
    return minidl.get_backend("numba")


def make_inputs(shape, dtype, affine=True, seed=0, mean=0.5, spread=2.0):
    """x, dout, gamma, beta (None without ``affine``) and running statistics, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * spread + mean).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma = (rng.standard_normal(C) + 1).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    running = (rng.standard_normal(C).astype(dtype), (rng.random(C) + 0.5).astype(dtype))
    return x, dout, gamma, beta, running


def away_from_kinks(x, dout, gamma, beta, running, training, eps=1e-5):
    """dout, 0 where the BatchNorm output y (in float64) is within 1e-3 of a kink of the ReLU6 (0 or 6): there the two
    layouts' last-bit differences in the statistics could put y on either side (a gradient of dout or 0)."""
    x64 = x.astype(np.float64)
    axes = (0, 2, 3)
    if training:
        mean, var = x64.mean(axis=axes), x64.var(axis=axes)
    else:
        mean, var = (r.astype(np.float64) for r in running)
    y = (x64 - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps)
    if gamma is not None:
        y = y * gamma[:, None, None]
    if beta is not None:
        y = y + beta[:, None, None]
    near = (np.abs(y) < 1e-3) | (np.abs(y - 6) < 1e-3)
    return np.where(near, 0, dout).astype(dout.dtype)


def run(op, x, dout, gamma, beta, running, training, momentum=0.1):
    """(out, dx, dgamma, dbeta, running_mean, running_var) of ``F.<op>`` on the Numba backend (the running statistics
    fresh copies, updated in training); asserts that the kernel ran."""
    running_mean, running_var = (r.copy() for r in running)
    with minidl.use_backend("numba"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN inputs
        out, cache = getattr(F, f"{op}_forward")(
            x, running_mean, running_var, gamma, beta, training=training, momentum=momentum
        )
        assert isinstance(cache, KernelCache), f"{op}: the Numba kernel did not run"
        dx, dgamma, dbeta = getattr(F, f"{op}_backward")(dout, cache)
    return out, dx, dgamma, dbeta, running_mean, running_var


def assert_close(got, want, dtype, what):
    """float32: 1e-5 relative, and 1e-6 of the largest value absolute (dx and the sums cancel); float64: 1e-12."""
    if want is None:
        assert got is None, f"{what}: expected None"
        return
    assert got.shape == want.shape and got.dtype == want.dtype, f"{what}: {got.shape} {got.dtype}"
    scale = max(float(np.abs(want).max()), 1.0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol / 10 * scale, err_msg=what)


# ---------------------------------------------------------------------------------------------------- the results
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no affine"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_channels_last_matches_c_contiguous_and_stays_channels_last(name, op, training, affine):
    shape, dtype = SHAPES[name]
    x, dout, gamma, beta, running = make_inputs(shape, dtype, affine)
    if op != "batch_norm":
        dout = away_from_kinks(x, dout, gamma, beta, running, training)
    want = run(op, x, dout, gamma, beta, running, training)
    got = run(op, to_cl(x), to_cl(dout), gamma, beta, running, training)
    assert is_cl(got[0]) and is_cl(got[1]), "out and dx should be channels_last"
    assert not is_cl(want[0]) and want[0].flags.c_contiguous, "a C-contiguous input keeps C-contiguous results"
    for what, g, w in zip(NAMES, got, want, strict=True):
        assert_close(g, w, dtype, f"{name} {op} training={training}: {what}")
    if op == "batch_norm_relu":
        assert got[0].min() >= 0
    if op == "batch_norm_relu6":
        assert got[0].min() >= 0 and got[0].max() <= 6


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_only_a_gamma_or_only_a_beta(training):
    shape, dtype = (6, 12, 5, 7), np.float32
    x, dout, gamma, beta, running = make_inputs(shape, dtype, seed=3)
    for g, b in ((gamma, None), (None, beta)):
        want = run("batch_norm", x, dout, g, b, running, training)
        got = run("batch_norm", to_cl(x), to_cl(dout), g, b, running, training)
        for what, gv, wv in zip(NAMES, got, want, strict=True):
            assert_close(gv, wv, dtype, f"gamma={g is not None} beta={b is not None}: {what}")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_one_of_x_and_dout_channels_last(training):
    shape, dtype = (5, 24, 6, 6), np.float32
    x, dout, gamma, beta, running = make_inputs(shape, dtype, seed=4)
    dout = away_from_kinks(x, dout, gamma, beta, running, training)
    want = run("batch_norm_relu", x, dout, gamma, beta, running, training)
    # x channels_last, dout C-contiguous: dout is converted, dx channels_last
    got = run("batch_norm_relu", to_cl(x), dout, gamma, beta, running, training)
    assert is_cl(got[0]) and is_cl(got[1])
    for what, g, w in zip(NAMES, got, want, strict=True):
        assert_close(g, w, dtype, f"x channels_last, dout not: {what}")
    # x C-contiguous, dout channels_last: the per-channel kernels, C-contiguous results
    got = run("batch_norm_relu", x, to_cl(dout), gamma, beta, running, training)
    assert got[1].flags.c_contiguous
    for what, g, w in zip(NAMES, got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=f"x C-contiguous, dout channels_last: {what}")


def test_float16_is_computed_in_float32_and_stays_channels_last():
    """(The functional leaves float16 to the reference; the backend's methods compute it in float32.)"""
    x, dout, gamma, beta, _ = make_inputs((4, 8, 6, 6), np.float16, seed=5)
    be = fast_be()
    got = be._batch_norm_train(to_cl(x), gamma, beta, 1e-5)
    want = be._batch_norm_train(x, gamma, beta, 1e-5)
    assert is_cl(got[0]) and got[0].dtype == np.float16
    dx, dgamma, dbeta = be._batch_norm_backward_channels(to_cl(dout), to_cl(x), want[1], want[3], gamma, beta, True)
    dx_want, dgamma_want, dbeta_want = be._batch_norm_backward_channels(dout, x, want[1], want[3], gamma, beta, True)
    assert is_cl(dx) and dx.dtype == np.float16
    for what, g, w in zip(
        ("out", "mean", "var", "inv_std", "dx", "dgamma", "dbeta"),
        (*got, dx, dgamma, dbeta),
        (*want, dx_want, dgamma_want, dbeta_want),
        strict=True,
    ):
        np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=2e-3, atol=2e-3, err_msg=what)


def test_nan_spoils_only_its_channel():
    shape, dtype = (8, 6, 5, 5), np.float32
    x, dout, gamma, beta, running = make_inputs(shape, dtype, seed=6)
    x[3, 2, 1, 4] = np.nan
    want = run("batch_norm", x, dout, gamma, beta, running, True)
    got = run("batch_norm", to_cl(x), to_cl(dout), gamma, beta, running, True)
    for what, g, w in zip(("out", "dx"), got, want, strict=False):
        assert np.isnan(g[:, 2]).all(), f"{what}: channel 2 has the NaN"
        others = np.delete(np.arange(shape[1]), 2)
        assert np.isfinite(g[:, others]).all(), f"{what}: the other channels stay finite"
        assert_close(g[:, others], w[:, others], dtype, what)


# ---------------------------------------------------------------------------------------------------- threads
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(128, 16, 32, 32), (160, 20, 13, 11)])
def test_results_do_not_depend_on_the_number_of_threads(shape, op, training):
    x, dout, gamma, beta, running = make_inputs(shape, np.float32, seed=7, mean=3.0)
    x, dout = to_cl(x), to_cl(dout)
    M, C = x.size // shape[1], shape[1]
    assert len(_numba_batchnorm_cl._row_chunks(M, C, 4)) > 2, "the case should make several chunks"
    results = []
    threads = minidl.get_num_threads()
    try:
        for n in (1, 2, 3):
            minidl.set_num_threads(n)
            results.append(run(op, x, dout, gamma, beta, running, training))
    finally:
        minidl.set_num_threads(threads)
    for n, result in zip((2, 3), results[1:], strict=True):
        for what, a, b in zip(NAMES, results[0], result, strict=True):
            np.testing.assert_array_equal(b, a, err_msg=f"{op}: {what} with 1 and {n} threads")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("shape", "dtype"), [SHAPES["128x16x32x32 float32"], SHAPES["3x5x7x9 float64"]])
def test_batch_norm_add_relu_backward_takes_the_relu_in_its_first_pass(shape, dtype, training):
    """The kernel of ``batch_norm_add_relu``'s backward masks dout in the BatchNorm's sums pass and writes dz there
    (the residual's gradient), which its second pass reads: the bits of the ReLU's backward kernel followed by the
    BatchNorm's, over one chunk of rows or several, at any thread count. A NaN of dout where the ReLU was off stays
    out, as in relu_backward."""
    x, dout, gamma, beta, running = make_inputs(shape, dtype, seed=11)
    residual = np.random.default_rng(12).standard_normal(shape).astype(dtype)
    x, residual, dout = to_cl(x), to_cl(residual), to_cl(dout)
    be = fast_be()
    threads = minidl.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            minidl.set_num_threads(n)
            with minidl.use_backend("numba"):
                out, cache = F.batch_norm_add_relu_forward(
                    x, residual, *(r.copy() for r in running), gamma, beta, training
                )
                assert isinstance(cache, KernelCache)
                bn_cache, mask = cache.cache
                dout[tuple(i[0] for i in np.nonzero(~mask))] = np.nan  # the ReLU was off there: no gradient
                got = F.batch_norm_add_relu_backward(dout, cache)
            dz = be._relu_backward(dout, mask)
            dx, dgamma, dbeta = be._batch_norm_backward(dz, bn_cache)
            want = (dx, dz, dgamma, dbeta)
            for what, g, w in zip(("dx", "dresidual", "dgamma", "dbeta"), got, want, strict=True):
                np.testing.assert_array_equal(g, w, err_msg=f"{what}, {n} thread(s)")
            assert is_cl(got[0]) and is_cl(got[1]) and np.isfinite(got[0]).all()
            results.append(got)
    finally:
        minidl.set_num_threads(threads)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------------- accuracy
def test_statistics_are_accurate_far_from_zero():
    """x = 1000 + noise 0.01: the sums around each channel's first value keep the variance (a naive float32
    E[x^2] - E[x]^2 would lose it entirely), as the per-channel kernel does."""
    rng = np.random.default_rng(8)
    x = (1000 + 0.01 * rng.standard_normal((32, 8, 12, 12))).astype(np.float32)
    x64 = x.astype(np.float64)
    out, mean, var, inv_std = fast_be()._batch_norm_train(to_cl(x), None, None, 1e-5)
    assert is_cl(out)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-3)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(x64.var(axis=(0, 2, 3)) + 1e-5), rtol=1e-3)
    c_out, c_mean, c_var, c_inv_std = fast_be()._batch_norm_train(x, None, None, 1e-5)
    np.testing.assert_allclose(var, c_var, rtol=1e-5)
    np.testing.assert_allclose(out, c_out, rtol=1e-4, atol=1e-4)
    # through the functional: the running variance gets the unbiased batch variance
    running_mean, running_var = np.zeros(8, np.float32), np.ones(8, np.float32)
    with minidl.use_backend("numba"):
        F.batch_norm_forward(to_cl(x), running_mean, running_var, training=True, momentum=1.0)
    np.testing.assert_allclose(running_var, x64.var(axis=(0, 2, 3), ddof=1), rtol=1e-3)


# ---------------------------------------------------------------------------------------------------- other layouts
@pytest.mark.parametrize(
    "shape",
    [(6, 5), (4, 5, 7), (3, 5, 4, 6), (4, 1, 5, 5), (5, 7, 1, 1)],
    ids=["2-D", "3-D", "4-D", "one channel", "1x1 images"],
)
def test_other_layouts_take_the_per_channel_kernel(shape):
    """2-D, 3-D and C-contiguous 4-D inputs, and 4-D ones that are both layouts but not channels_last by their
    strides (a plain one-channel array, 1 x 1 images), keep the per-channel kernel bit for bit (its results do not
    depend on how the channels are split into tasks) and C-contiguous results."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    if 1 in shape[1:]:
        x = to_cl(x) if shape[2:] == (1, 1) else x  # 1 x 1 images: to_cl keeps them; one channel: plain
        assert minidl.is_contiguous(x, CL) and minidl.is_contiguous(x) and not is_cl(x)
    C = shape[1]
    gamma, beta = (rng.standard_normal(C) + 1).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    out, mean, var, inv_std = fast_be()._batch_norm_train(x, gamma, beta, 1e-5, 6.0)
    x3 = np.ascontiguousarray(x).reshape(shape[0], C, -1)
    want = [np.empty(x3.shape, np.float32), *(np.empty(C, np.float32) for _ in range(3))]
    relu, cap = True, np.float32(6.0)
    _numba_batchnorm.batch_norm_train(x3, gamma, beta, True, True, 1e-5, relu, cap, 0, C, want[0], *want[1:])
    assert out.flags.c_contiguous and out.shape == shape
    for what, g, w in zip(("out", "mean", "var", "inv_std"), (out, mean, var, inv_std), want, strict=True):
        np.testing.assert_array_equal(g.reshape(w.shape), w, err_msg=what)


# ---------------------------------------------------------------------------------------------------- the region
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_both_passes_take_every_chunk_once_and_run_the_step_between_once(monkeypatch, threads, training):
    # each thread's compiled loop takes first-pass chunks from the shared counter; the thread that finishes the last
    # runs the step between (the statistics, the gradient's totals); the second pass (not in the eval backward)
    # claims every chunk. Here the region's counters once it is over, for a forward and a backward with small
    # chunks (a chunk left out would leave np.empty's garbage in the results, which match those of the default
    # chunks here and the reference's in the tests above)
    monkeypatch.setattr(_numba_batchnorm_cl, "_ROWS_CHUNK_BYTES", 1 << 12)
    x, dout, gamma, beta, running = make_inputs((7, 16, 9, 11), np.float32, seed=8)
    x, dout = to_cl(x), to_cl(dout)
    seen = []
    original = _numba_batchnorm_cl._both_passes

    def spy(chunks, loop):
        shared = []

        def recorded(counter, sync, claims, bounds, own, state, second):
            shared[:] = counter, sync, claims
            loop(counter, sync, claims, bounds, own, state, second)

        original(chunks, recorded)
        counter, sync, claims = shared
        seen.append((len(chunks), int(counter[0]), sync.tolist(), claims.tolist()))

    monkeypatch.setattr(_numba_batchnorm_rows, "_both_passes", spy)
    before = minidl.get_num_threads()
    try:
        minidl.set_num_threads(threads)
        want = run("batch_norm_relu", x, dout, gamma, beta, running, training)
    finally:
        minidl.set_num_threads(before)
    assert len(seen) == (2 if training else 1)  # the training forward's region, and the backward's
    for n, counter, sync, claims in seen:
        assert n > 3
        assert counter >= n and sync == [n, 1]  # every chunk taken and finished once; the step between ran once
        # every chunk claimed (a claim adds 1: the thread that found 0 normalized it; eval backward: no second pass)
        assert all(c >= 1 for c in claims) if training else claims == [0] * n
    minidl.set_num_threads(before)
    got = run("batch_norm_relu", x, dout, gamma, beta, running, training)  # default chunks: the same results
    for what, g, w in zip(NAMES, got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=what)


def test_both_passes_raise_a_failed_chunks_error_instead_of_waiting_forever():
    # a loop that raises in its first pass never lets the step between run; the threads that wait for it in their
    # second pass must stop (sync[1] set to -1 on the way out), and the region raises the error. The loop here is
    # written in Python around the compiled helpers, so that one chunk can fail; the region runs in a thread of its
    # own, so that a hang fails the test instead of the suite
    from minidl.backend._numba_tasks import next_task

    def loop(counter, sync, claims, bounds, own, state, second):
        n = bounds.shape[0]
        if second:
            while _numba_batchnorm_cl._second_pass_chunk(sync, claims, own, state) >= 0:
                pass
            return
        k = next_task(counter)
        while k < n:
            if k == 3:
                raise ValueError("chunk 3 failed")
            _numba_batchnorm_cl._first_pass_done(sync, n, own, state, k)
            k = next_task(counter)

    errors = []

    def region():
        try:
            _numba_batchnorm_cl._both_passes([(8 * k, 8 * k + 8) for k in range(6)], loop)
        except ValueError as error:
            errors.append(error)

    before = minidl.get_num_threads()
    try:
        minidl.set_num_threads(2)
        thread = threading.Thread(target=region, daemon=True)
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the region hung"
    finally:
        minidl.set_num_threads(before)
    assert [str(error) for error in errors] == ["chunk 3 failed"]
