"""The compiled loops of the Numba backend (``numba_backend.py`` holds the class that calls them).

Notation (as in ``numpy_backend.py``):
    N: batch size.  C: channels.  H, W: input height and width.
    KH, KW: kernel height and width.  SH, SW: strides.  PH, PW: zero padding on each side.
    DH, DW: dilation.  OH, OW: output height and width, OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1.
    O: output channels of a convolution.  K = C KH KW: rows of the im2col matrix.  OHW = OH OW.
    P: the flat "planes" axis N C of pooling kernels (x viewed as (N C, H, W)).  S: the flat spatial size of a
    BatchNorm input viewed as (N, C, S).

Every kernel is a serial ``@njit(cache=True, nogil=True)`` function that

* takes C-contiguous arrays and ints only (flags such as ``has_bias`` are ints) and writes into preallocated outputs;
* works on a slice of the problem, ``[n0, n1)`` images, ``[c0, c1)`` channels, ``[p0, p1)`` planes or
  ``[i0, i1)`` flat elements, so that :func:`minidl.backend._threads.parallel_for` can run the slices in parallel
  threads (the GIL is released) without two threads ever writing the same element;
* accumulates sums over many elements (BatchNorm statistics and gradients) in float64.

Speed note: the inner loops index flat views (``a.reshape(-1)``) with *unsigned* integers (``_u``). Numba accepts
negative indices like Python (``a[-1]``), so for a signed index it emits a "wrap around if negative" test on every
access, which also stops LLVM from vectorizing the loop; with an unsigned index there is nothing to test, and a copy
loop runs about 10x faster. Every index is computed as a non-negative signed int first, then converted.

Each kernel computes what the NumPy reference method of the same name computes (``numpy_backend.py``, or the
functional in ``minidl/nn`` for batch norm and ReLU); ``tests/backend/test_numba_kernels.py`` checks that.
Compiled code is cached on disk (``cache=True``): the first use compiles for a few seconds, later runs load it.
Set ``NUMBA_DISABLE_JIT=1`` to run (slowly) the same code as plain Python, e.g. in a debugger.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_u = np.uint64  # unsigned flat indices (see the module docstring)
# fastmath without "nnan"/"ninf": float64 sums may be reordered (vectorized); NaN and inf still propagate
_REDUCE = {"reassoc", "contract", "nsz"}


@njit(cache=True, nogil=True, inline="always")
def _valid_range(offset: int, stride: int, size: int, out_size: int) -> tuple[int, int]:
    """The output positions o in [lo, hi) whose input position o * stride + offset lies in [0, size)."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (size - 1 - offset) // stride + 1 if size - 1 - offset >= 0 else 0
    lo = min(lo, out_size)
    hi = max(lo, min(hi, out_size))
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _zero(a, start, count):
    """a[start : start + count] = 0 (a flat, start and count unsigned)."""
    for i in range(count):
        a[start + i] = 0


# ---------------------------------------------------------------------------------------------------- im2col
@njit(cache=True, nogil=True)
def im2col(x, n0, n1, c0, c1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, cols):
    """cols[(c KH + kh) KW + kw, (n - n0) OHW + oh OW + ow] = x_pad[n, c, oh SH + kh DH, ow SW + kw DW]
    for n in [n0, n1), c in [c0, c1); zero where the window reaches into the padding."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P, OHW = cols.shape[1], OH * OW
    xf, cf = x.reshape(-1), cols.reshape(-1)
    for n in range(n0, n1):
        for c in range(c0, c1):
            plane = (n * C + c) * H * W
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    w_offset = kw * DW - PW
                    lo, hi = _valid_range(w_offset, SW, W, OW)
                    for oh in range(OH):
                        h = oh * SH + kh * DH - PH
                        d = _u(row * P + (n - n0) * OHW + oh * OW)
                        if h < 0 or h >= H:
                            _zero(cf, d, _u(OW))
                            continue
                        _zero(cf, d, _u(lo))
                        s = _u(plane + h * W + lo * SW + w_offset)
                        dd = d + _u(lo)
                        if SW == 1:
                            for i in range(_u(hi - lo)):
                                cf[dd + i] = xf[s + i]
                        else:
                            for i in range(_u(hi - lo)):
                                cf[dd + i] = xf[s + i * _u(SW)]
                        _zero(cf, d + _u(hi), _u(OW - hi))


@njit(cache=True, nogil=True)
def col2im(cols, n0, n1, c0, c1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, dx):
    """dx[n, c] = the sum of every column entry that im2col copied from (n, c, h, w), for n in [n0, n1) and c in
    [c0, c1) (overwrites those planes of dx; entries that came from the padding are dropped)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    P, OHW = cols.shape[1], OH * OW
    df, cf = dx.reshape(-1), cols.reshape(-1)
    for n in range(n0, n1):
        for c in range(c0, c1):
            plane = (n * C + c) * H * W
            _zero(df, _u(plane), _u(H * W))
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    w_offset = kw * DW - PW
                    lo, hi = _valid_range(w_offset, SW, W, OW)
                    for oh in range(OH):
                        h = oh * SH + kh * DH - PH
                        if h < 0 or h >= H:
                            continue
                        d = _u(plane + h * W + lo * SW + w_offset)
                        s = _u(row * P + (n - n0) * OHW + oh * OW + lo)
                        if SW == 1:
                            for i in range(_u(hi - lo)):
                                df[d + i] += cf[s + i]
                        else:
                            for i in range(_u(hi - lo)):
                                df[d + i * _u(SW)] += cf[s + i]


@njit(cache=True, nogil=True, inline="always")
def _transpose(src, s0, R, Cc, dst, d0):
    """dst[d0 + c R + r] = src[s0 + r Cc + c]: an (R, Cc) block of a flat array into (Cc, R), in 16 x 16 tiles.

    Inside a tile the loop that touches memory contiguously goes innermost on the side whose other stride is large:
    a power-of-two stride such as 1024 floats (4 KiB) maps every access of the other loop to the same cache set."""
    T = 16
    for r0 in range(0, R, T):
        r1 = min(R, r0 + T)
        for c0 in range(0, Cc, T):
            c1 = min(Cc, c0 + T)
            if R > 4 * Cc:
                for c in range(c0, c1):
                    for r in range(r0, r1):
                        dst[_u(d0 + c * R + r)] = src[_u(s0 + r * Cc + c)]
            else:
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        dst[_u(d0 + c * R + r)] = src[_u(s0 + r * Cc + c)]


# ---------------------------------------------------------------------------------------------------- im2row
# The fused convolution uses the transposed layout, one *row* per output pixel: (images OHW, K) with K ordered
# (kh, kw, c). Built from a channels-last copy of each image (``xt``, (H, W, C)), every (kh, kw) tap is one
# contiguous run of C values, and the GEMMs (rows @ W^T, dout @ rows, dout^T @ W) all have a long first dimension,
# which OpenBLAS runs at near peak (a 32-row W @ cols runs about 30% slower).
@njit(cache=True, nogil=True)
def im2row(x, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, rows):
    """rows[(n - n0) OHW + oh OW + ow, (kh KW + kw) C + c] = x_pad[n, c, oh SH + kh DH, ow SW + kw DW] for n in
    [n0, n1); ``xt`` is scratch for one image, H W C values."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    K, OHW = rows.shape[1], OH * OW
    xf, tf, rf = x.reshape(-1), xt.reshape(-1), rows.reshape(-1)
    for n in range(n0, n1):
        _transpose(xf, n * C * H * W, C, H * W, tf, 0)  # x[n] (C, H W) -> xt (H W, C)
        for oh in range(OH):
            for ow in range(OW):
                r = _u(((n - n0) * OHW + oh * OW + ow) * K)
                w0 = ow * SW - PW
                for kh in range(KH):
                    h = oh * SH + kh * DH - PH
                    d = r + _u(kh * KW * C)
                    if h < 0 or h >= H:
                        _zero(rf, d, _u(KW * C))
                    elif DW == 1 and w0 >= 0 and w0 + KW <= W:  # the KW taps are one run of KW C values
                        s = _u((h * W + w0) * C)
                        for i in range(_u(KW * C)):
                            rf[d + i] = tf[s + i]
                    else:
                        for kw in range(KW):
                            w = w0 + kw * DW
                            if 0 <= w < W:
                                s = _u((h * W + w) * C)
                                for c in range(_u(C)):
                                    rf[d + _u(kw * C) + c] = tf[s + c]
                            else:
                                _zero(rf, d + _u(kw * C), _u(C))


@njit(cache=True, nogil=True)
def row2im(rows, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, dx):
    """The adjoint of :func:`im2row`: dx[n] (overwritten, n in [n0, n1)) = the sum of every row entry copied from
    each input position; ``xt`` is scratch (H W C values)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    K, OHW = rows.shape[1], OH * OW
    df, tf, rf = dx.reshape(-1), xt.reshape(-1), rows.reshape(-1)
    for n in range(n0, n1):
        _zero(tf, _u(0), _u(H * W * C))
        for oh in range(OH):
            for ow in range(OW):
                r = _u(((n - n0) * OHW + oh * OW + ow) * K)
                w0 = ow * SW - PW
                for kh in range(KH):
                    h = oh * SH + kh * DH - PH
                    if h < 0 or h >= H:
                        continue
                    s = r + _u(kh * KW * C)
                    if DW == 1 and w0 >= 0 and w0 + KW <= W:  # one run of KW C values
                        d = _u((h * W + w0) * C)
                        for i in range(_u(KW * C)):
                            tf[d + i] += rf[s + i]
                        continue
                    for kw in range(KW):
                        w = w0 + kw * DW
                        if 0 <= w < W:
                            d = _u((h * W + w) * C)
                            for c in range(_u(C)):
                                tf[d + c] += rf[s + _u(kw * C) + c]
        _transpose(tf, 0, H * W, C, df, n * C * H * W)  # xt (H W, C) -> dx[n] (C, H W)


@njit(cache=True, nogil=True)
def rows_to_nchw(y, n0, n1, bias, has_bias, relu, out):
    """out[n, o, p] = y[(n - n0) OHW + p, o] (+ bias[o]) (then relu, with ``relu``): the GEMM result (images OHW, O)
    into (N, O, OHW)."""
    O, OHW = out.shape[1], out.shape[2]
    yf, of = y.reshape(-1), out.reshape(-1)
    zero = out.dtype.type(0)
    for n in range(n0, n1):
        _transpose(yf, (n - n0) * OHW * O, OHW, O, of, n * O * OHW)
        if has_bias or relu:
            for o in range(O):
                b = bias[o] if has_bias else zero
                d = _u((n * O + o) * OHW)
                if relu:
                    for i in range(_u(OHW)):
                        of[d + i] = _relu(of[d + i] + b, zero)
                else:
                    for i in range(_u(OHW)):
                        of[d + i] += b


@njit(cache=True, nogil=True)
def nchw_to_cols(dout, n0, n1, g):
    """g[o, (n - n0) OHW + p] = dout[n, o, p]: the inverse of :func:`cols_to_nchw` (without the bias)."""
    O, OHW = dout.shape[1], dout.shape[2]
    P = g.shape[1]
    df, gf = dout.reshape(-1), g.reshape(-1)
    for n in range(n0, n1):
        for o in range(O):
            s = _u((n * O + o) * OHW)
            d = _u(o * P + (n - n0) * OHW)
            for i in range(_u(OHW)):
                gf[d + i] = df[s + i]


# ---------------------------------------------------------------------------------------------------- pooling
@njit(cache=True, nogil=True)
def max_pool2d_forward(x, p0, p1, KH, KW, SH, SW, PH, PW, DH, DW, out, argmax):
    """For planes [p0, p1) of x (P, H, W): out = the window maximum, argmax = its offset kh KW + kw.

    -inf padding; the first maximum in (kh, kw) order wins a tie; a NaN wins (the last NaN, like the reference's
    ``(v > best) | isnan(v)`` scan). Windows entirely inside the input (almost all) skip the bounds tests."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    xf, of, af = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    ninf = out.dtype.type(-np.inf)
    for p in range(p0, p1):
        for oh in range(OH):
            h0 = oh * SH - PH
            rows_inside = h0 >= 0 and h0 + (KH - 1) * DH < H
            for ow in range(OW):
                w0 = ow * SW - PW
                o = _u((p * OH + oh) * OW + ow)
                if rows_inside and w0 >= 0 and w0 + (KW - 1) * DW < W:
                    base = _u((p * H + h0) * W + w0)
                    best = xf[base]
                    arg = 0
                    for kh in range(KH):
                        for kw in range(KW):
                            v = xf[base + _u(kh * DH * W + kw * DW)]
                            if v > best or v != v:
                                best = v
                                arg = kh * KW + kw
                else:
                    best = ninf
                    arg = 0
                    for kh in range(KH):
                        h = h0 + kh * DH
                        for kw in range(KW):
                            w = w0 + kw * DW
                            v = xf[_u((p * H + h) * W + w)] if (0 <= h < H and 0 <= w < W) else ninf
                            if kh + kw > 0 and (v > best or v != v):
                                best = v
                                arg = kh * KW + kw
                            elif kh + kw == 0:
                                best = v
                of[o] = best
                af[o] = arg


@njit(cache=True, nogil=True)
def max_pool2d_forward_2x2(x, p0, p1, out, argmax):
    """:func:`max_pool2d_forward` for the common 2 x 2 window, stride 2, no padding, every window inside x.

    With the window size known when compiling, LLVM unrolls the window loops; with runtime KH, KW the same
    kernel runs about 10x slower."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    xf, of, af = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    for p in range(p0, p1):
        for oh in range(OH):
            o = _u((p * OH + oh) * OW)
            for ow in range(OW):
                base = _u((p * H + 2 * oh) * W + 2 * ow)
                best = xf[base]
                arg = 0
                for kh in range(2):
                    for kw in range(2):
                        v = xf[base + _u(kh * W + kw)]
                        if v > best or v != v:
                            best = v
                            arg = kh * 2 + kw
                of[o + _u(ow)] = best
                af[o + _u(ow)] = arg


@njit(cache=True, nogil=True)
def max_pool2d_backward(dout, argmax, p0, p1, KH, KW, SH, SW, PH, PW, DH, DW, dx):
    """dx[p] (overwritten) = the sum of dout over the windows whose maximum sat at each position."""
    H, W = dx.shape[1], dx.shape[2]
    OH, OW = dout.shape[1], dout.shape[2]
    gf, af, df = dout.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    for p in range(p0, p1):
        _zero(df, _u(p * H * W), _u(H * W))
        for oh in range(OH):
            for ow in range(OW):
                o = _u((p * OH + oh) * OW + ow)
                k = af[o]
                h = oh * SH - PH + (k // KW) * DH
                w = ow * SW - PW + (k % KW) * DW
                if 0 <= h < H and 0 <= w < W:
                    df[_u((p * H + h) * W + w)] += gf[o]


@njit(cache=True, nogil=True)
def max_pool2d_backward_2x2(dout, argmax, p0, p1, dx):
    """:func:`max_pool2d_backward` for :func:`max_pool2d_forward_2x2`'s geometry: the windows tile the input without
    overlap, so each of a window's 4 cells is written once (dout at its maximum, 0 elsewhere)."""
    H, W = dx.shape[1], dx.shape[2]
    OH, OW = dout.shape[1], dout.shape[2]
    gf, af, df = dout.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    zero = dx.dtype.type(0)
    for p in range(p0, p1):
        if 2 * OH < H or 2 * OW < W:  # an odd last row or column belongs to no window
            _zero(df, _u(p * H * W), _u(H * W))
        for oh in range(OH):
            o = _u((p * OH + oh) * OW)
            for i in range(2):  # the window's top row (offsets 0, 1), then its bottom row (2, 3): contiguous writes
                row = _u((p * H + 2 * oh + i) * W)
                for ow in range(_u(OW)):
                    k = af[o + ow]
                    g = gf[o + ow]
                    df[row + _u(2) * ow] = g if k == 2 * i else zero
                    df[row + _u(2) * ow + _u(1)] = g if k == 2 * i + 1 else zero


@njit(cache=True, nogil=True)
def avg_pool2d_forward(x, p0, p1, KH, KW, SH, SW, PH, PW, divisor, out):
    """out[p, oh, ow] = (sum of the window, zero padded) / divisor[oh, ow] for planes [p0, p1)."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    xf, of, vf = x.reshape(-1), out.reshape(-1), divisor.reshape(-1)
    for p in range(p0, p1):
        for oh in range(OH):
            for ow in range(OW):
                s = out.dtype.type(0)
                for kh in range(KH):
                    h = oh * SH - PH + kh
                    if 0 <= h < H:
                        for kw in range(KW):
                            w = ow * SW - PW + kw
                            if 0 <= w < W:
                                s += xf[_u((p * H + h) * W + w)]
                of[_u((p * OH + oh) * OW + ow)] = s / vf[_u(oh * OW + ow)]


@njit(cache=True, nogil=True)
def avg_pool2d_backward(dout, p0, p1, KH, KW, SH, SW, PH, PW, divisor, dx):
    """dx[p] (overwritten) = sum over the windows containing each position of dout / divisor."""
    H, W = dx.shape[1], dx.shape[2]
    OH, OW = dout.shape[1], dout.shape[2]
    gf, df, vf = dout.reshape(-1), dx.reshape(-1), divisor.reshape(-1)
    for p in range(p0, p1):
        _zero(df, _u(p * H * W), _u(H * W))
        for oh in range(OH):
            for ow in range(OW):
                g = gf[_u((p * OH + oh) * OW + ow)] / vf[_u(oh * OW + ow)]
                for kh in range(KH):
                    h = oh * SH - PH + kh
                    if 0 <= h < H:
                        for kw in range(KW):
                            w = ow * SW - PW + kw
                            if 0 <= w < W:
                                df[_u((p * H + h) * W + w)] += g


# ---------------------------------------------------------------------------------------------------- batch norm
@njit(cache=True, nogil=True, fastmath=_REDUCE)
def batch_norm_train(x, gamma, beta, has_gamma, has_beta, eps, relu, c0, c1, out, mean, var, inv_std):
    """For channels [c0, c1) of x (N, C, S): the batch mean and biased variance over (N, S), inv_std =
    1 / sqrt(var + eps), and out = (x - mean) inv_std gamma + beta.

    One channel at a time, so its values (N S of them) are still in the core's cache when they are normalized.
    The statistics are sums of (x - s) and (x - s)^2 in float64 around a shift s (the channel's first value), which
    keeps the one-pass variance accurate when the mean is large compared with the spread. With ``relu`` the output
    is relu(out) in the same pass (see :func:`_relu`)."""
    N, C, S = x.shape
    M = N * S
    xf, of = x.reshape(-1), out.reshape(-1)
    for c in range(c0, c1):
        shift = np.float64(xf[_u(c * S)])
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            base = _u((n * C + c) * S)
            for i in range(_u(S)):
                d = np.float64(xf[base + i]) - shift
                s1 += d
                s2 += d * d
        m = s1 / M
        v = max(s2 / M - m * m, 0.0)
        mean[c] = shift + m
        var[c] = v
        inv_std[c] = 1.0 / np.sqrt(v + eps)
        _normalize_channel(xf, c, N, C, S, mean[c], inv_std[c], gamma, beta, has_gamma, has_beta, relu, of)


@njit(cache=True, nogil=True, inline="always")
def _relu(v, zero):
    """v where not (v <= 0) (v > 0 or NaN), else zero (+0): ReLU with NaN propagating, as relu_forward."""
    return v if not (v <= 0) else zero


@njit(cache=True, nogil=True)
def _bn_y(x, m, scale, offset):
    """y = (x - m) scale + offset: one function, without fastmath, so the backward's ReLU mask recomputes exactly the
    forward's y (in a fastmath kernel LLVM may fuse the multiply-add and round differently)."""
    return (x - m) * scale + offset


@njit(cache=True, nogil=True, inline="always")
def _masked(g, relu, x, m, scale, offset, zero):
    """g, or zero when ``relu`` and the forward's y = (x - m) scale + offset was <= 0 (relu_backward's mask)."""
    return zero if relu and _bn_y(x, m, scale, offset) <= 0 else g


@njit(cache=True, nogil=True, inline="always")
def _normalize_channel(xf, c, N, C, S, m, k, gamma, beta, has_gamma, has_beta, relu, of):
    """of = (x - m) k gamma[c] + beta[c] (then relu if ``relu``) over channel c of the flat (N, C, S) x."""
    scale = k * gamma[c] if has_gamma else k
    zero = of.dtype.type(0)
    offset = beta[c] if has_beta else zero
    for n in range(N):
        base = _u((n * C + c) * S)
        if relu:
            for i in range(_u(S)):
                of[base + i] = _relu(_bn_y(xf[base + i], m, scale, offset), zero)
        else:
            for i in range(_u(S)):
                of[base + i] = _bn_y(xf[base + i], m, scale, offset)


@njit(cache=True, nogil=True)
def batch_norm_apply(x, mean, inv_std, gamma, beta, has_gamma, has_beta, relu, c0, c1, out):
    """out = (x - mean[c]) inv_std[c] gamma[c] + beta[c] (then relu if ``relu``) for channels [c0, c1) of x
    (N, C, S)."""
    N, C, S = x.shape
    xf, of = x.reshape(-1), out.reshape(-1)
    for c in range(c0, c1):
        _normalize_channel(xf, c, N, C, S, mean[c], inv_std[c], gamma, beta, has_gamma, has_beta, relu, of)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def batch_norm_backward(
    dout, x, mean, inv_std, gamma, beta, has_gamma, has_beta, training, relu, c0, c1, dx, dgamma, dbeta
):
    """dx, dgamma[c] = sum(g xhat), dbeta[c] = sum(g) for channels [c0, c1) of (N, C, S) arrays, g = dout.

    xhat = (x - mean) inv_std is rebuilt from x. Training: dx = gamma inv_std (g - sum(g)/M - xhat sum(g xhat)/M);
    eval (constant statistics): dx = g gamma inv_std. With ``relu`` the forward was relu(y), y = xhat gamma + beta:
    then g = dout where not (y <= 0), else 0 (relu_backward), with y recomputed exactly as the forward did."""
    N, C, S = x.shape
    M = N * S
    xf, gf, df = x.reshape(-1), dout.reshape(-1), dx.reshape(-1)
    zero = dx.dtype.type(0)
    for c in range(c0, c1):
        m = mean[c]
        k = inv_std[c]
        scale = k * gamma[c] if has_gamma else k  # the forward's y = (x - m) scale + offset
        offset = beta[c] if has_beta else zero
        sum_dout = 0.0
        sum_dout_xhat = 0.0
        for n in range(N):
            base = _u((n * C + c) * S)
            for i in range(_u(S)):
                g = _masked(gf[base + i], relu, xf[base + i], m, scale, offset, zero)
                sum_dout += np.float64(g)
                sum_dout_xhat += np.float64(g) * np.float64((xf[base + i] - m) * k)
        dbeta[c] = sum_dout
        dgamma[c] = sum_dout_xhat
        a = dx.dtype.type(sum_dout / M)  # in x's dtype, like the reference's float32 math
        b = dx.dtype.type(sum_dout_xhat / M)
        for n in range(N):
            base = _u((n * C + c) * S)
            for i in range(_u(S)):
                g = _masked(gf[base + i], relu, xf[base + i], m, scale, offset, zero)
                if training:
                    df[base + i] = scale * (g - a - (xf[base + i] - m) * k * b)
                else:
                    df[base + i] = g * scale


# ---------------------------------------------------------------------------------------------------- relu
@njit(cache=True, nogil=True)
def relu_forward(x, i0, i1, out, mask):
    """mask[i] = not (x[i] <= 0) (True for x > 0 and for NaN), out[i] = x[i] where mask else 0, flat [i0, i1):
    the reference's ``mask = ~(x <= 0); where(mask, x, 0)`` (NaN propagates, as in PyTorch) in one pass."""
    xf, of, mf = x.reshape(-1), out.reshape(-1), mask.reshape(-1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = xf[start + i]
        keep = not (v <= 0)
        mf[start + i] = keep
        of[start + i] = v if keep else 0


@njit(cache=True, nogil=True)
def relu_backward(dout, mask, i0, i1, dx):
    """dx[i] = dout[i] where mask[i] else 0, flat [i0, i1) (the reference's ``dout * mask``, except that a NaN or
    inf in dout stays out of the masked-off entries, as in PyTorch's threshold_backward)."""
    gf, mf, df = dout.reshape(-1), mask.reshape(-1), dx.reshape(-1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        df[start + i] = gf[start + i] if mf[start + i] else 0


@njit(cache=True, nogil=True)
def add_relu_forward(a, b, i0, i1, out, mask):
    """v = a[i] + b[i]; mask[i] = not (v <= 0); out[i] = v where mask else 0, flat [i0, i1): relu_forward(a + b)
    (a residual connection and the ReLU after it) in one pass."""
    af, bf, of, mf = a.reshape(-1), b.reshape(-1), out.reshape(-1), mask.reshape(-1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = af[start + i] + bf[start + i]
        keep = not (v <= 0)
        mf[start + i] = keep
        of[start + i] = v if keep else 0
