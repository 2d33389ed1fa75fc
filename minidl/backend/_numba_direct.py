"""Direct 3 x 3 convolution of the Numba backend, for few input channels (the first layer of a CIFAR network):
forward, and the backward's dx and dW.

Notation as in ``numpy_backend.py`` (N, C, H, W, PH, PW, OH, OW; O output channels). For a 3 x 3, stride-1,
undilated convolution

    out[n, o, oh, ow] = b[o] + sum over c < C and kh, kw < 3 of W[o, c, kh, kw] x_pad[n, c, oh + kh, ow + kw]

On an RGB image (C = 3) the im2row path is a poor fit: its rows are 27 values long, built three values at a time,
the GEMM (images OH OW, 27) @ (27, O) has little work per value it reads, and its (pixels, O) result must then be
transposed into the (N, O, OH, OW) output, a pass as long as the output itself (measured at batch 128, one thread,
AMD Zen 4: 3 -> 16 channels 4.8 ms, 3 -> 64 channels 15-17 ms, half of it the transpose). Here the sum is
computed in place, plane by plane:

* each image is copied into ``xp``, a zero-padded (C, HP, WP) plane (HP = H + 2 PH, WP = W + 2 PW), so no tap
  ever needs a bounds test (from a ``channels_last`` input pixel by pixel, each pixel's C values to their C planes:
  the same planes, so the same results bit for bit);
* an output plane is accumulated in ``acc`` *with rows WP long*, like the padded input: then output pixel
  i = oh WP + ow reads input i + kh WP + kw for tap (kh, kw), the same offset for every pixel, and one plain loop
  over i = 0 .. (OH - 1) WP + OW - 1 does a whole input channel's 9 taps (LLVM vectorizes it: 9 loads, 9
  multiply-adds and one store of ``acc`` per pixel). The WP - OW extra values of each row are computed and never
  read;
* two output channels share each loop (the 9 loaded input values serve both): 1.5x faster than one (measured), four
  run out of registers and are slower;
* the finished plane is copied out row by row into (N, O, OH, OW), with min(relu, relu_max) when ``relu`` (see
  :func:`~minidl.backend._numba_kernels._clamp`).

Measured against im2row (32 x 32, batch 128, forward with ReLU, 2 threads, AMD EPYC Zen 4): 3 -> 16 channels
2.5 -> 1.1 ms, 3 -> 32 4.3 -> 2.1 ms, 3 -> 64 7.8 -> 5.0 ms, 6 -> 32 5.9 -> 3.3 ms; with 8 channels in the two
are even (6.4 ms), with 16 im2row wins: the backend runs this kernel for at most ``_DIRECT_MAX_C`` (6) input
channels (``_numba_conv.py``).

The backward uses the same layout. dx of a stride-1 3 x 3 convolution is itself one, of dout with the flipped,
transposed filters and padding 2 - P, with C (few) output channels: this same kernel. dW is nine dot products per
(output, input) channel pair over the plane (:func:`direct3x3_weight_gradient`). Measured, 3 -> 16 channels at 32 x
32, batch 128, 2 threads: backward 11.5 -> 2.8 ms (dx 6.0 -> 1.5, dW 5.5 -> 1.2); 3 -> 64: 15.6 -> 10.3 ms.

The multiply-adds may be fused (``fastmath`` "contract"; the dot products also reassociated, to vectorize), so the
results differ from the reference's by float roundings (as Winograd's do).
"""

from __future__ import annotations

from numba import njit

from minidl.backend._numba_kernels import _REDUCE, _clamp, _u, image_dims, transpose4


@njit(cache=True, nogil=True, inline="always")
def _taps(wf, k):
    """The 9 taps of one (output channel, input channel) 3 x 3 filter, starting at flat index ``k``."""
    return (
        wf[k], wf[k + _u(1)], wf[k + _u(2)], wf[k + _u(3)], wf[k + _u(4)], wf[k + _u(5)], wf[k + _u(6)],
        wf[k + _u(7)], wf[k + _u(8)],
    )  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def _padded_copy(xf, nhwc, n, C, H, W, PH, PW, xp):
    """Image n of x (flat ``xf``, (N, C, H, W), or (N, H, W, C) with ``nhwc``: a ``channels_last`` batch, each
    pixel's C values copied to their C planes) into the inside of the zero-padded planes ``xp`` (C, HP, WP)."""
    HP, WP = H + 2 * PH, W + 2 * PW
    if nhwc:
        for h in range(H):
            for w in range(W):
                s, d = _u(((n * H + h) * W + w) * C), _u((h + PH) * WP + PW + w)
                for c in range(_u(C)):
                    xp[d + c * _u(HP * WP)] = xf[s + c]
        return
    for c in range(C):
        for h in range(H):
            s, d = _u(((n * C + c) * H + h) * W), _u((c * HP + h + PH) * WP + PW)
            for w in range(_u(W)):
                xp[d + w] = xf[s + w]


@njit(cache=True, nogil=True, fastmath={"contract"})
def direct3x3_forward(x, x_nhwc, weight, bias, has_bias, n0, n1, PH, PW, relu, relu_max, xp, acc, out, nhwc, ot):
    """Images [n0, n1) of out = conv2d(x, weight, bias) (then min(relu, relu_max) with ``relu``) for a 3 x 3,
    stride-1, undilated weight and padding (PH, PW), computed directly (see the module docstring).

    x (N, C, H, W), weight (O, C, 3, 3), bias (O,) (read when has_bias), out (N, O, OH, OW), all C-contiguous;
    with ``x_nhwc`` x is the (N, H, W, C) view of a ``channels_last`` input instead (copied into ``xp`` pixel by
    pixel); with ``nhwc`` out is the (N, OH, OW, O) view of a ``channels_last`` output: each image's planes go to the
    scratch ``ot`` (O OH OW values), then transposed into it in 4 x 4 blocks (written plane by plane with a stride of
    O values, the layer ran 1.5x slower); xp scratch of C (H + 2 PH) (W + 2 PW) values, acc of
    2 (OH - 1) (W + 2 PW) + 2 OW."""
    C, H, W = image_dims(x, x_nhwc)
    O = weight.shape[0]
    OH, OW = (out.shape[1], out.shape[2]) if nhwc else (out.shape[2], out.shape[3])
    HP, WP = H + 2 * PH, W + 2 * PW
    L = _u((OH - 1) * WP + OW)  # an output plane in rows WP long, the last one cut at OW
    xf, wf, of = x.reshape(-1), weight.reshape(-1), out.reshape(-1)
    zero = out.dtype.type(0)
    one, two, row, row2 = _u(1), _u(2), _u(WP), _u(2 * WP)
    for i in range(_u(C * HP * WP)):  # the padding; each image then overwrites the inside
        xp[i] = zero
    for n in range(n0, n1):
        _padded_copy(xf, x_nhwc, n, C, H, W, PH, PW, xp)
        for o in range(0, O, 2):
            p = min(o + 1, O - 1)  # the pair's second channel (o itself when O is odd: computed twice)
            bo = bias[o] if has_bias else zero
            bp = bias[p] if has_bias else zero
            for i in range(L):
                acc[i] = bo
                acc[L + i] = bp
            for c in range(C):
                w0, w1, w2, w3, w4, w5, w6, w7, w8 = _taps(wf, _u((o * C + c) * 9))
                v0, v1, v2, v3, v4, v5, v6, v7, v8 = _taps(wf, _u((p * C + c) * 9))
                s = _u(c * HP * WP)
                for i in range(L):
                    j = s + i  # the pixel's tap (0, 0); (kh, kw) is kh rows and kw values further
                    x0, x1, x2 = xp[j], xp[j + one], xp[j + two]
                    x3, x4, x5 = xp[j + row], xp[j + row + one], xp[j + row + two]
                    x6, x7, x8 = xp[j + row2], xp[j + row2 + one], xp[j + row2 + two]
                    m = L + i  # channel p's value of the pixel
                    acc[i] += w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3 + w4 * x4 + w5 * x5 + w6 * x6 + w7 * x7 + w8 * x8
                    acc[m] += v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3 + v4 * x4 + v5 * x5 + v6 * x6 + v7 * x7 + v8 * x8
            for k in range(2):  # the two planes out, o from acc[:L], p from acc[L:]
                q, first = (o, _u(0)) if k == 0 else (p, L)
                for oh in range(OH):
                    s = first + _u(oh * WP)
                    if nhwc:  # the plane into the image's scratch
                        d = _u((q * OH + oh) * OW)
                        dst = ot
                    else:
                        d = _u(((n * O + q) * OH + oh) * OW)
                        dst = of
                    if relu:
                        for ow in range(_u(OW)):
                            dst[d + ow] = _clamp(acc[s + ow], zero, relu_max)
                    else:
                        for ow in range(_u(OW)):
                            dst[d + ow] = acc[s + ow]
        if nhwc:  # ot (O, OH OW) -> out[n] (OH OW, O)
            transpose4(ot, 0, O, OH * OW, of, n * O * OH * OW)


# ---------------------------------------------------------------------------------------------------- weight gradient
@njit(cache=True, nogil=True, inline="always")
def _add_tap_products(xp, j, row, g, h, acc):
    """``acc`` (18 sums: the 9 taps of one output channel, then of another) plus g and h (the two channels'
    dout at a pixel) times the pixel's 9 input values, xp[j + kh row + kw]."""
    one, two, row2 = _u(1), _u(2), row + row
    x0, x1, x2 = xp[j], xp[j + one], xp[j + two]
    x3, x4, x5 = xp[j + row], xp[j + row + one], xp[j + row + two]
    x6, x7, x8 = xp[j + row2], xp[j + row2 + one], xp[j + row2 + two]
    a0, a1, a2, a3, a4, a5, a6, a7, a8, b0, b1, b2, b3, b4, b5, b6, b7, b8 = acc
    return (
        a0 + g * x0, a1 + g * x1, a2 + g * x2, a3 + g * x3, a4 + g * x4, a5 + g * x5, a6 + g * x6, a7 + g * x7,
        a8 + g * x8, b0 + h * x0, b1 + h * x1, b2 + h * x2, b3 + h * x3, b4 + h * x4, b5 + h * x5, b6 + h * x6,
        b7 + h * x7, b8 + h * x8,
    )  # fmt: skip


# dW[o, c, kh, kw] = sum over n, oh, ow of dout[n, o, oh, ow] x_pad[n, c, oh + kh, ow + kw]. With dout copied into
# rows WP long as well (zeros in the WP - OW extra columns, so they add nothing), tap (kh, kw) is again one offset:
# dW[o, c, kh, kw] = sum over i of dp[o, i] xp[c, i + kh WP + kw], nine dot products over the same i that share the
# loads of dp[o, i] (and, for two output channels, of the nine xp values). "Nothing" holds for finite x only: an
# extra column multiplies a real pixel by 0, and 0 * inf is NaN where the reference's sum is finite. So with
# ``exact`` the sums run row by row over the OW real columns only (2.5x slower: LLVM reduces its vector accumulators
# at the end of every row), which the driver does for a chunk whose fast sums came out inf or NaN.
@njit(cache=True, nogil=True, fastmath=_REDUCE)
def direct3x3_weight_gradient(x, x_nhwc, dout, dout_nhwc, n0, n1, PH, PW, exact, xp, dp, dw):
    """dw[o, c, 3 kh + kw] += the weight gradient of images [n0, n1) of a 3 x 3 stride-1 convolution (see above),
    each image's dot products summed in the arrays' dtype (vectorized) and added into ``dw`` (float64); over the
    padded rows, or with ``exact`` over the output pixels only.

    x (N, C, H, W), dout (N, O, OH, OW), dw (O, C, 9) float64, all C-contiguous; x and dout the (N, H, W, C) and
    (N, OH, OW, O) views of ``channels_last`` arrays with ``x_nhwc`` and ``dout_nhwc``; xp scratch of C (H + 2 PH)
    (W + 2 PW) values, dp of O ((OH - 1) (W + 2 PW) + OW)."""
    C, H, W = image_dims(x, x_nhwc)
    O, OH, OW = image_dims(dout, dout_nhwc)
    HP, WP = H + 2 * PH, W + 2 * PW
    L = _u((OH - 1) * WP + OW)
    xf, df, wf = x.reshape(-1), dout.reshape(-1), dw.reshape(-1)
    zero = x.dtype.type(0)
    one, two, row = _u(1), _u(2), _u(WP)
    for i in range(_u(C * HP * WP)):
        xp[i] = zero
    for i in range(_u(O) * L):  # the extra columns stay zero
        dp[i] = zero
    for n in range(n0, n1):
        _padded_copy(xf, x_nhwc, n, C, H, W, PH, PW, xp)
        if dout_nhwc:  # each pixel's O values to their O rows
            for oh in range(OH):
                for ow in range(OW):
                    s, d = _u(((n * OH + oh) * OW + ow) * O), _u(oh * WP + ow)
                    for o in range(_u(O)):
                        dp[d + o * L] = df[s + o]
        else:
            for o in range(O):  # dout[n, o] into rows WP long
                for oh in range(OH):
                    s, d = _u(((n * O + o) * OH + oh) * OW), _u(o) * L + _u(oh * WP)
                    for ow in range(_u(OW)):
                        dp[d + ow] = df[s + ow]
        for o in range(0, O, 2):
            p = min(o + 1, O - 1)
            do, dq = _u(o) * L, _u(p) * L
            for c in range(C):
                s = _u(c * HP * WP)
                z = zero  # acc: the 9 taps of channel o, then the 9 of channel p
                acc = (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z)
                if exact:
                    for oh in range(OH):
                        base = _u(oh * WP)
                        for ow in range(_u(OW)):
                            i = base + ow
                            acc = _add_tap_products(xp, s + i, row, dp[do + i], dp[dq + i], acc)
                else:
                    for i in range(L):
                        acc = _add_tap_products(xp, s + i, row, dp[do + i], dp[dq + i], acc)
                a0, a1, a2, a3, a4, a5, a6, a7, a8, b0, b1, b2, b3, b4, b5, b6, b7, b8 = acc
                k = _u((o * C + c) * 9)
                wf[k] += a0
                wf[k + one] += a1
                wf[k + two] += a2
                wf[k + _u(3)] += a3
                wf[k + _u(4)] += a4
                wf[k + _u(5)] += a5
                wf[k + _u(6)] += a6
                wf[k + _u(7)] += a7
                wf[k + _u(8)] += a8
                if p != o:
                    k = _u((p * C + c) * 9)
                    wf[k] += b0
                    wf[k + one] += b1
                    wf[k + two] += b2
                    wf[k + _u(3)] += b3
                    wf[k + _u(4)] += b4
                    wf[k + _u(5)] += b5
                    wf[k + _u(6)] += b6
                    wf[k + _u(7)] += b7
                    wf[k + _u(8)] += b8
