"""Channels-last BatchNorm kernels of the Numba backend (``_numba_batchnorm.py`` has the pairs and the per-channel
kernels; this file, what they run for a ``channels_last`` input).

A 4-D ``channels_last`` input (:mod:`minidl.memory_format`) is read without a copy as rows of C values, one row per
pixel (its memory is (N H W, C)), and gives ``channels_last`` results (out, dx): a channel's values are then spread
over the whole input, so the statistics are per-channel partial sums over fixed chunks of rows, added in chunk order
(the same for any thread count), and the normalization (the backward's dx) is a second pass over the chunks, in the
same parallel region, each thread in one compiled loop per pass (:func:`batch_norm_train_loop`,
:func:`batch_norm_backward_loop`). The arithmetic of a value is the per-channel kernels' (:func:`_bn_y`,
:func:`_masked`), so the ReLU's mask recomputed in the backward is the forward's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from minidl.backend import _threads
from minidl.backend._numba_batchnorm import _bn_y, _masked, statistics_from_sums
from minidl.backend._numba_common import _ceil_div
from minidl.backend._numba_elementwise import relu_backward
from minidl.backend._numba_kernels import _REDUCE, _clamp, _u, fold_tiles, shifted_sums_chunk
from minidl.backend._numba_tasks import atomic_add, atomic_load, failing_stops_waits, next_task, wait_for

# The kernels below read a channels_last input as its M rows of C values (x[n, :, h, w] each: the flat (N, H, W, C)
# view of its memory), one chunk [e0, e1) of those flat values at a time (whole rows), and take the per-channel
# vectors *tiled*: repeated to T = k C values (k whole rows, T about _TILE_VALUES), so that the flat value
# e0 + i T + j belongs to channel j mod C and the inner loops run over T values even for few channels (16 channels:
# 16 rows). The vectors are the rows of one array v: mean, scale = inv_std gamma, offset = beta, inv_std, and the
# backward's a, b. T = 256 ran the backward's sums about 20% faster than T = 128 (serial, 8 MB), T = 512 no faster.
_TILE_VALUES = 256
_ROWS_CHUNK_BYTES = 1 << 19  # input bytes of a chunk of rows (a task); a smaller input is one chunk, run serially
_MEAN, _SCALE, _OFFSET, _INV_STD, _A, _B = range(6)  # the rows of v
_NO_MASK = np.empty(0, dtype=bool)  # the loops' mask argument where there is none (not joined)


@njit(cache=True, nogil=True)
def batch_norm_sums_rows(xf, C, T, e0, e1, part):
    """part[0, c] = sum (x - s_c), part[1, c] = sum (x - s_c)^2 in float64 over the values of channel c in the chunk
    [e0, e1) of the rows ``xf``, s_c = x's first value of channel c: :func:`batch_norm_train`'s sums for one chunk
    (:func:`~minidl.backend._numba_kernels.shifted_sums_chunk`: T accumulators, folded to the C channels). The
    order depends on the shape only."""
    shift = np.empty(T)
    for j in range(T):
        shift[j] = xf[j % C]
    shifted_sums_chunk(xf, shift, C, e0, e1, part)


@njit(cache=True, nogil=True)
def batch_norm_stats_rows(parts, xf, M, eps, gamma, beta, has_gamma, has_beta, mean, var, inv_std, v):
    """The mean, biased variance and inv_std = 1 / sqrt(var + eps) of each channel from the chunks' sums ``parts``
    (chunks, 2, C) of :func:`batch_norm_sums_rows` around x's first values (the rows' first C values), as
    :func:`~minidl.backend._numba_batchnorm.statistics_from_sums` finishes them (added in chunk order, so the same
    for any thread count); and the tiled vectors v for the normalization (:func:`_tile`)."""
    statistics_from_sums(parts, xf, M, eps, mean, var, inv_std)
    _tile(mean, inv_std, gamma, beta, has_gamma, has_beta, v)


@njit(cache=True, nogil=True)
def _tile(mean, inv_std, gamma, beta, has_gamma, has_beta, v):
    """v[_MEAN], v[_SCALE], v[_OFFSET], v[_INV_STD]: mean, scale = inv_std gamma, offset = beta (0 without) and
    inv_std per tile position j (channel j mod C), in v's dtype: the scale and offset of y = (x - mean) scale + offset
    computed as :func:`_normalize_channel` computes them."""
    C = mean.size
    for j in range(v.shape[1]):
        c = j % C
        k = inv_std[c]
        v[_MEAN, j] = mean[c]
        v[_SCALE, j] = k * gamma[c] if has_gamma else k
        v[_OFFSET, j] = beta[c] if has_beta else 0
        v[_INV_STD, j] = k


@njit(cache=True, nogil=True)
def batch_norm_apply_rows(xf, v, relu, relu_max, e0, e1, of):
    """of = (x - mean_c) scale_c + offset_c (then min(relu, relu_max) if ``relu``) over the chunk [e0, e1) of the rows
    ``xf`` (the vectors v tiled): :func:`_normalize_channel`'s arithmetic (:func:`_bn_y`, which the backward's mask
    recomputes exactly) for one chunk of rows."""
    mean, scale, offset = v[_MEAN], v[_SCALE], v[_OFFSET]
    T = mean.size
    zero = of.dtype.type(0)
    for b in range(e0, e1, T):
        base = _u(b)
        n = _u(min(T, e1 - b))
        if relu:
            for j in range(n):
                of[base + j] = _clamp(_bn_y(xf[base + j], mean[j], scale[j], offset[j]), zero, relu_max)
        else:
            for j in range(n):
                of[base + j] = _bn_y(xf[base + j], mean[j], scale[j], offset[j])


@njit(cache=True, nogil=True)
def batch_norm_add_relu_rows(xf, v, rf, e0, e1, of, mf):
    """of = max(0, y + r) and mf = not (y + r <= 0) for y = (x - mean_c) scale_c + offset_c over the chunk [e0, e1)
    of the rows ``xf``, r the residual's rows ``rf`` (laid out as x): the ``batch_norm_add_relu`` pair's normalize
    pass, the BatchNorm's output (:func:`_bn_y`, rounded to x's dtype as it would be stored) summed with the residual
    and put through the ReLU, as :func:`~minidl.backend._numba_elementwise.add_relu_forward` does, in one pass."""
    mean, scale, offset = v[_MEAN], v[_SCALE], v[_OFFSET]
    T = mean.size
    zero = of.dtype.type(0)
    for b in range(e0, e1, T):
        base = _u(b)
        n = _u(min(T, e1 - b))
        for j in range(n):
            y = _bn_y(xf[base + j], mean[j], scale[j], offset[j]) + rf[base + j]
            keep = not (y <= zero)
            mf[base + j] = keep
            of[base + j] = y if keep else zero


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def batch_norm_backward_sums_rows(gf, xf, v, relu, relu_max, C, e0, e1, part, dx, df):
    """part[0, c] = sum(g), part[1, c] = sum(g xhat) in float64 over the values of channel c in the chunk [e0, e1)
    of the rows, g = dout masked and xhat = (x - mean_c) inv_std_c (in x's dtype) as in :func:`batch_norm_backward`
    (the vectors v tiled): its sums for one chunk, accumulated and folded as in :func:`batch_norm_sums_rows`, two
    tiles at a time (they share the loads of the vectors and of the accumulators: 25-35% faster than one tile, four
    no faster). With ``dx`` (eval: constant statistics) also the eval dx, df = g scale_c, while the tiles are in the
    cache."""
    mean, scale, offset, inv_std = v[_MEAN], v[_SCALE], v[_OFFSET], v[_INV_STD]
    T = mean.size
    zero = gf.dtype.type(0)
    unbounded = relu_max == np.inf  # a ReLU (else a ReLU6's bound)
    s1 = np.zeros(T)
    s2 = np.zeros(T)
    b = e0
    while b < e1:
        b0, b1 = _u(b), _u(b + T)
        if b + 2 * T <= e1:
            for j in range(_u(T)):
                m, k, sc, o = mean[j], inv_std[j], scale[j], offset[j]
                x0, x1 = xf[b0 + j], xf[b1 + j]
                g0 = np.float64(_masked(gf[b0 + j], relu, relu_max, unbounded, x0, m, sc, o, zero))
                g1 = np.float64(_masked(gf[b1 + j], relu, relu_max, unbounded, x1, m, sc, o, zero))
                s1[j] += g0 + g1
                s2[j] += g0 * np.float64((x0 - m) * k) + g1 * np.float64((x1 - m) * k)
            n = 2 * T
        else:  # the last tile, maybe partial
            n = min(T, e1 - b)
            for j in range(_u(n)):
                x = xf[b0 + j]
                g = np.float64(_masked(gf[b0 + j], relu, relu_max, unbounded, x, mean[j], scale[j], offset[j], zero))
                s1[j] += g
                s2[j] += g * np.float64((x - mean[j]) * inv_std[j])
        if dx:
            for i in range(b, b + n, T):
                base = _u(i)
                for j in range(_u(min(T, b + n - i))):
                    x = xf[base + j]
                    g = _masked(gf[base + j], relu, relu_max, unbounded, x, mean[j], scale[j], offset[j], zero)
                    df[base + j] = g * scale[j]
        b += n
    fold_tiles(s1, s2, C, part)


@njit(cache=True, nogil=True)
def batch_norm_backward_totals(parts, M, dgamma, dbeta, v):
    """dbeta = sum(g), dgamma = sum(g xhat) per channel from the chunks' sums ``parts`` (chunks, 2, C) of
    :func:`batch_norm_backward_sums_rows`, added in chunk order (so the same for any thread count), and v[_A] =
    dbeta / M, v[_B] = dgamma / M tiled (in v's dtype, as :func:`batch_norm_backward` rounds them)."""
    C = dbeta.size
    for c in range(C):
        s1 = 0.0
        s2 = 0.0
        for k in range(parts.shape[0]):
            s1 += parts[k, 0, c]
            s2 += parts[k, 1, c]
        dbeta[c] = s1
        dgamma[c] = s2
        a = v.dtype.type(s1 / M)
        b = v.dtype.type(s2 / M)
        for j in range(c, v.shape[1], C):
            v[_A, j] = a
            v[_B, j] = b


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def batch_norm_backward_rows(gf, xf, v, relu, relu_max, e0, e1, df):
    """df = scale_c (g - a_c - xhat b_c) over the chunk [e0, e1) of the rows, a = sum(g) / M, b = sum(g xhat) / M
    (g and xhat as in :func:`batch_norm_backward_sums_rows`, the vectors v tiled): :func:`batch_norm_backward`'s
    training dx for one chunk, two tiles at a time (sharing the vectors' loads, as there)."""
    mean, scale, offset, inv_std, a, b = v[_MEAN], v[_SCALE], v[_OFFSET], v[_INV_STD], v[_A], v[_B]
    T = mean.size
    zero = df.dtype.type(0)
    unbounded = relu_max == np.inf
    i = e0
    while i + 2 * T <= e1:
        b0, b1 = _u(i), _u(i + T)
        for j in range(_u(T)):
            m, k, sc, o, aj, bj = mean[j], inv_std[j], scale[j], offset[j], a[j], b[j]
            x0, x1 = xf[b0 + j], xf[b1 + j]
            g0 = _masked(gf[b0 + j], relu, relu_max, unbounded, x0, m, sc, o, zero)
            g1 = _masked(gf[b1 + j], relu, relu_max, unbounded, x1, m, sc, o, zero)
            df[b0 + j] = sc * (g0 - aj - (x0 - m) * k * bj)
            df[b1 + j] = sc * (g1 - aj - (x1 - m) * k * bj)
        i += 2 * T
    for r in range(i, e1, T):  # the last tile or two, the last one maybe partial
        base = _u(r)
        for j in range(_u(min(T, e1 - r))):
            x = xf[base + j]
            g = _masked(gf[base + j], relu, relu_max, unbounded, x, mean[j], scale[j], offset[j], zero)
            df[base + j] = scale[j] * (g - a[j] - (x - mean[j]) * inv_std[j] * b[j])


def _row_chunks(M: int, C: int, itemsize: int) -> list[tuple[int, int]]:
    """The chunks [e0, e1) of the flat values of M rows of C values: whole rows, about _ROWS_CHUNK_BYTES each, their
    number set by the shape only (so are the partial sums, hence the results, for any thread count)."""
    chunks = max(1, min(M, _ceil_div(M * C * itemsize, _ROWS_CHUNK_BYTES)))
    return [(M * i // chunks * C, M * (i + 1) // chunks * C) for i in range(chunks)]


def _tile_size(C: int) -> int:
    """T, the values of a tile: C max(1, _TILE_VALUES // C)."""
    return C * max(1, _TILE_VALUES // C)


# ---------------------------------------------------------------------------------------------------- both passes
# A BatchNorm on rows runs as two passes over the chunks with one step between them: the chunks' sums, the statistics
# (or the gradient's totals) from all of them, then each chunk's normalization (its dx). Each thread of the region
# runs one compiled loop per pass (:func:`minidl.backend._threads.parallel_loops`), with the region's
# shared int64 arrays (:func:`~minidl.backend._numba_tasks.atomic_add`): ``counter``, the first pass's next chunk;
# ``sync``, the first-pass chunks finished (sync[0]) and whether the step between is done (sync[1]); ``claims``, one
# per chunk, which thread normalizes it. The thread that finishes the last first-pass chunk runs the step between; a
# thread with no first-pass chunk left waits for it between its two loops (the wait is the last chunk in flight, then
# the step, about a chunk's time at most: ``wait_for``, which gives the core away on a busy machine). In the second
# pass a thread takes its own first-pass chunks, the latest first (its caches
# still hold them), then the other threads' left, their earliest first. No Python runs between two chunks of a pass
# (where it did, a task's Python took 6-8 us, about 7 % of the BatchNorm kernels' time in a ResNet-56 training step).
@njit(cache=True, nogil=True, inline="always")
def _first_pass_done(sync, n, own, state, k):
    """After this thread's first-pass chunk k: note it as its own, and whether it was the last of the n chunks to
    finish (then this thread runs the step between)."""
    own[state[0]] = k
    state[0] += 1
    return atomic_add(sync, 0, 1) == n - 1


@njit(cache=True, nogil=True, inline="always")
def _between_done(sync):
    """Mark the step between the passes done (the thread that ran it)."""
    atomic_add(sync, 1, 1)


@njit(cache=True, nogil=True)
def _second_pass_chunk(sync, claims, own, state):
    """The next chunk this thread normalizes, or -1 when none is left (called once the step between is done:
    :func:`_both_passes` waits for it): its own first-pass chunks, the latest first, then any chunk not claimed yet,
    the earliest first; -1 at once if another thread failed (sync[1] < 0). ``state``: [own chunks not tried yet, next
    chunk number to try]."""
    if atomic_load(sync, 1) < 0:
        return -1
    while state[0] > 0:
        state[0] -= 1
        k = own[state[0]]
        if atomic_add(claims, k, 1) == 0:
            return k
    while state[1] < claims.size:
        k = state[1]
        state[1] += 1
        if atomic_add(claims, k, 1) == 0:
            return k
    return -1


@njit(cache=True, nogil=True)
def batch_norm_train_loop(
    counter, sync, claims, chunks, own, state, second, xf, C, T, parts, M, eps, gamma, beta, has_gamma, has_beta, mean,
    var, inv_std, v, relu, relu_max, of, rf, mf, joined,
):  # fmt: skip
    """A thread's share of the training forward (see above), in two calls (``second``: False, then True): first
    :func:`batch_norm_sums_rows` of the chunks it takes, and :func:`batch_norm_stats_rows` if it finishes the last;
    then :func:`batch_norm_apply_rows` of the chunks it claims (with ``joined``: :func:`batch_norm_add_relu_rows`,
    the residual's rows ``rf`` and the mask ``mf``). ``own`` and ``state``: the thread's, for both calls."""
    n = chunks.shape[0]
    if second:
        k = _second_pass_chunk(sync, claims, own, state)
        while k >= 0:
            if joined:
                batch_norm_add_relu_rows(xf, v, rf, chunks[k, 0], chunks[k, 1], of, mf)
            else:
                batch_norm_apply_rows(xf, v, relu, relu_max, chunks[k, 0], chunks[k, 1], of)
            k = _second_pass_chunk(sync, claims, own, state)
        return
    k = next_task(counter)
    while k < n:
        batch_norm_sums_rows(xf, C, T, chunks[k, 0], chunks[k, 1], parts[k])
        if _first_pass_done(sync, n, own, state, k):
            batch_norm_stats_rows(parts, xf, M, eps, gamma, beta, has_gamma, has_beta, mean, var, inv_std, v)
            _between_done(sync)
        k = next_task(counter)


@njit(cache=True, nogil=True)
def batch_norm_backward_loop(
    counter, sync, claims, chunks, own, state, second, gf, xf, v, relu, relu_max, C, parts, training, df, M, dgamma,
    dbeta, dout_f, mf, joined,
):  # fmt: skip
    """A thread's share of the backward (see above): for each chunk it takes, with ``joined`` first dz = dout where
    the mask ``mf`` (:func:`~minidl.backend._numba_elementwise.relu_backward`, into ``gf``), then
    :func:`batch_norm_backward_sums_rows` (which writes the eval dx); :func:`batch_norm_backward_totals` if it
    finishes the last; then (the second call, ``second``) in training :func:`batch_norm_backward_rows` of the chunks
    it claims."""
    n = chunks.shape[0]
    if second:
        k = _second_pass_chunk(sync, claims, own, state) if training else -1
        while k >= 0:
            batch_norm_backward_rows(gf, xf, v, relu, relu_max, chunks[k, 0], chunks[k, 1], df)
            k = _second_pass_chunk(sync, claims, own, state)
        return
    k = next_task(counter)
    while k < n:
        e0, e1 = chunks[k, 0], chunks[k, 1]
        if joined:
            relu_backward(dout_f, mf, e0, e1, gf)
        batch_norm_backward_sums_rows(gf, xf, v, relu, relu_max, C, e0, e1, parts[k], not training, df)
        if _first_pass_done(sync, n, own, state, k):
            batch_norm_backward_totals(parts, M, dgamma, dbeta, v)
            _between_done(sync)
        k = next_task(counter)


def _both_passes(chunks: list[tuple[int, int]], loop: Any, first_pass: bool = True) -> None:
    """Run ``loop(counter, sync, claims, bounds, own, state, second)`` (:func:`batch_norm_train_loop` or
    :func:`batch_norm_backward_loop` with its other arguments bound) on the region's threads, ``bounds`` the chunks
    as an (n, 2) int64 array: each thread's first pass, then the wait for the step between
    (:func:`~minidl.backend._numba_tasks.wait_for`: a short spin, then the core given away between tries, so that on
    busy cores a waiting thread does not take the core of the one it waits for), then its second pass. One chunk (an
    input under _ROWS_CHUNK_BYTES) runs in the calling thread, without a region (two tasks would put its second pass
    on another thread, waiting for the first: 2x slower on 16 x 64 x 8 x 8).

    A loop that raises (a chunk's kernel failed: out of memory, say) sets sync[1] to -1 on its way out
    (:func:`~minidl.backend._numba_tasks.failing_stops_waits`), so that the threads waiting for the step between,
    which will never come, stop instead of waiting forever; the region then raises the error
    (:func:`~minidl.backend._threads.parallel_for`).

    Without ``first_pass`` (the statistics and the vectors v came from elsewhere: a convolution's ``channel_sums``)
    the threads run the second pass only: each thread's loop takes the chunks not claimed yet, in order (it has no
    first-pass chunks of its own)."""
    bounds = np.array(chunks, dtype=np.int64).reshape(-1, 2)
    sync, claims = np.zeros(2, dtype=np.int64), np.zeros(len(chunks), dtype=np.int64)

    def run(counter: Any) -> None:
        own, state = np.empty(len(chunks), dtype=np.int64), np.zeros(2, dtype=np.int64)  # the thread's
        with failing_stops_waits(sync):
            if first_pass:
                loop(counter, sync, claims, bounds, own, state, False)
                if not wait_for(sync, 1, 1):
                    return
            loop(counter, sync, claims, bounds, own, state, True)

    if len(chunks) == 1:
        run(np.zeros(1, dtype=np.int64))
        return
    _threads.parallel_loops(lambda worker, counter: run(counter), len(chunks))


@njit(cache=True, nogil=True)
def channel_sums_loop(counter, xf, shift, C, chunks, parts):
    """A thread's share of a convolution's ``channel_sums`` taken in one pass over its output (the rows ``xf``):
    :func:`~minidl.backend._numba_kernels.shifted_sums_chunk` of each chunk of rows it takes (``chunks`` (n, 2)),
    into parts[k]."""
    k = next_task(counter)
    while k < chunks.shape[0]:
        shifted_sums_chunk(xf, shift, C, chunks[k, 0], chunks[k, 1], parts[k])
        k = next_task(counter)
