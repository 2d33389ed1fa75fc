"""Channels-last depthwise kernels of the Numba backend (``_numba_depthwise.py`` says when they run).

Notation as in ``_numba_depthwise.py``; a depth multiplier of 1 (O = C). On small images (MobileNetV2's 8 x 8 and
4 x 4 layers) a plane's rows are 8 or 4 values long, too short to vectorize, and with many taps (ConvNeXt's 7 x 7) the
loops make many passes over each row. Channels last, each image is copied to (H W, C) and for each output pixel and
tap one multiply-add runs over all C channels (a long, vectorized loop), then the result is copied back to (C, OH OW):
:func:`depthwise_forward_channels_last`. The same products are summed in the same order as the per-plane loops, so the
forward gives the same bits either way. With fewer than 32 channels that loop is too short (measured: 4 channels of
64 x 64 with 7 x 7 taps ran 5.6x slower channels last). Measured: 960 channels at 4 x 4 and 576 at 8 x 8 ran 2-4x
faster channels last than plane by plane (``benchmarks/README.md``).

The backward of such a layer runs channels last too (:func:`depthwise_backward_channels_last`): per image, dout and x
copied to (pixels, C), then per output pixel and tap one loop over the channels adds into dx's pixel and one into the
image's dW (its sums in the arrays' dtype, added into a float64 partial sum per fixed chunk of images; the chunks are
added in order, so the result does not depend on the thread count). Measured (batch 128, 2 threads, AMD Zen 4),
against the rows and per-plane loops: 960 channels at 4 x 4 15.8 -> 5.3 ms, 384 at 8 x 8 11.0 -> 6.6 ms, 576 at
8 x 8 stride 2 11.3 -> 5.4 ms, 192 at 16 x 16 stride 2 10.6 -> 7.1 ms; 7 x 7 kernels 2.5-8.7x faster at 16 x 16 and
smaller, even at 56 x 56 (0.95x); outputs 16 wide with 3 x 3 ran 1.2-2.4x slower channels last, so they keep the rows.

Which (output pixel, tap) pairs fall inside the image is computed once per call (:func:`_taps_inside`), for the
forward and the backward alike, so the loops have no bounds tests.
"""

from __future__ import annotations

import numpy
from numba import njit

from minidl.backend._numba_kernels import _REDUCE, _clamp, _u, _zero, image_dims, transpose4


@njit(cache=True, nogil=True)
def _taps_inside(C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW):
    """The (output pixel, tap) pairs whose input pixel lies inside the image, in the order pixel, kh, kw:
    ``(first, pixel, tap)``, the pairs of output pixel p being j in [first[p], first[p + 1]), each reading input
    pixel h W + w, which starts at ``pixel[j]`` = (h W + w) C of a channels-last image, through tap kh KW + kw, whose
    C weights start at ``tap[j]`` = (kh KW + kw) C. Computed once per call (shapes only), so the channels-last loops
    below have no bounds tests."""
    first = numpy.zeros(OH * OW + 1, numpy.int64)
    pixel = numpy.empty(OH * OW * KH * KW, numpy.int64)
    tap = numpy.empty(OH * OW * KH * KW, numpy.int64)
    j = 0
    for oh in range(OH):
        for ow in range(OW):
            for kh in range(KH):
                h = oh * SH + kh * DH - PH
                if h < 0 or h >= H:
                    continue
                for kw in range(KW):
                    w = ow * SW + kw * DW - PW
                    if 0 <= w < W:
                        pixel[j], tap[j] = (h * W + w) * C, (kh * KW + kw) * C
                        j += 1
            first[oh * OW + ow + 1] = j
    return first, pixel, tap


@njit(cache=True, nogil=True)
def depthwise_forward_channels_last(
    x, weight_t, KW, bias, has_bias, n0, n1, SH, SW, PH, PW, DH, DW, relu, relu_max, xt, yt, out, nhwc
):  # fmt: skip
    """Images [n0, n1) of out, for a depth multiplier of 1 (O = C), channels last: x[n] copied as (H W, C) into
    ``xt``; each output pixel's C values = bias + the sum over the taps (kh, kw) that fall inside the image of
    weight_t[kh KW + kw] (C,) times that input pixel's C values, each a loop over the channels (long, vectorized),
    into ``yt`` (OH OW, C); then min(relu, relu_max) with ``relu``, and yt into out[n] (C, OH OW). The same
    products and sums in the same order as :func:`~minidl.backend._numba_depthwise.depthwise_forward`, so the same
    results.

    x (N, C, H, W), weight_t (KH KW, C) (the weight transposed), bias (C,) (read when has_bias), out (N, C, OH, OW),
    all C-contiguous; xt and yt scratch of H W C and OH OW C values. With ``nhwc``, x and out are the (N, H, W, C) and
    (N, OH, OW, C) views of ``channels_last`` arrays: read and written in place, no transposition and no scratch."""
    C, H, W = image_dims(x, nhwc)
    KH = weight_t.shape[0] // KW
    OH, OW = image_dims(out, nhwc)[1:]
    xf, wf, of = x.reshape(-1), weight_t.reshape(-1), out.reshape(-1)
    zero = out.dtype.type(0)
    L = _u(C)
    first, pixel, tap = _taps_inside(C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW)
    for n in range(n0, n1):
        if nhwc:  # the image's pixels and the output's are already rows of C values
            src, s0, dst, d0 = xf, _u(n * H * W * C), of, _u(n * OH * OW * C)
        else:
            transpose4(xf, n * C * H * W, C, H * W, xt, 0)  # x[n] (C, H W) -> xt (H W, C)
            src, s0, dst, d0 = xt, _u(0), yt, _u(0)
        for p in range(OH * OW):
            d = d0 + _u(p) * L
            if has_bias:
                for c in range(L):
                    dst[d + c] = bias[c]
            else:
                for c in range(L):
                    dst[d + c] = zero
            for j in range(first[p], first[p + 1]):
                s, t = s0 + _u(pixel[j]), _u(tap[j])
                for c in range(L):
                    dst[d + c] += wf[t + c] * src[s + c]
            if relu:
                for c in range(L):
                    dst[d + c] = _clamp(dst[d + c], zero, relu_max)
        if not nhwc:
            transpose4(yt, 0, OH * OW, C, of, n * C * OH * OW)  # yt (OH OW, C) -> out[n] (C, OH OW)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def depthwise_backward_channels_last(
    dout, x, weight_t, KW, n0, n1, SH, SW, PH, PW, DH, DW, compute_dw, gt, xt, dxt, dwt, dw_part, dx, nhwc
):  # fmt: skip
    """dx[n] for images [n0, n1), and with ``compute_dw`` their dW summed into ``dw_part`` (KH KW C float64 values,
    (tap, channel) order), for :func:`depthwise_forward_channels_last` (depth multiplier 1), channels last: dout[n]
    copied as (OH OW, C) into ``gt`` (and x[n] as (H W, C) into ``xt``); for each output pixel and tap inside the image
    one loop over the C channels adds weight_t[tap] times the pixel's dout into dx's pixel (``dxt``, (H W, C)) and
    the pixel's dout times the input pixel into the image's dW (``dwt``, (KH KW, C), the arrays' dtype, added to
    ``dw_part`` per image); then dxt into dx[n] (C, H W). The same loops as the forward, read the other way:

        dx[n, c, h, w] = sum over the (pixel, tap) pairs that read (h, w) of weight[c, tap] dout[n, c, pixel]
        dW[c, tap]     = sum over images and pixels of dout[n, c, pixel] x[n, c, the pixel's input at tap]

    dout (N, C, OH, OW), x and dx (N, C, H, W), weight_t (KH KW, C) (the weight transposed), all C-contiguous. With
    ``nhwc``, dout, x and dx are the (N, OH, OW, C), (N, H, W, C) views of ``channels_last`` arrays, read and written in
    place (no transposition)."""
    C, H, W = image_dims(x, nhwc)
    KH = weight_t.shape[0] // KW
    OH, OW = image_dims(dout, nhwc)[1:]
    gf, xf, wf, df = dout.reshape(-1), x.reshape(-1), weight_t.reshape(-1), dx.reshape(-1)
    L = _u(C)
    first, pixel, tap = _taps_inside(C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW)
    for n in range(n0, n1):
        if nhwc:  # dout's, x's and dx's pixels are already rows of C values
            gs, g0, xs, x0, ds, e0 = gf, _u(n * OH * OW * C), xf, _u(n * H * W * C), df, _u(n * H * W * C)
        else:
            transpose4(gf, n * C * OH * OW, C, OH * OW, gt, 0)  # dout[n] (C, OH OW) -> gt (OH OW, C)
            if compute_dw:
                transpose4(xf, n * C * H * W, C, H * W, xt, 0)  # x[n] (C, H W) -> xt (H W, C)
            gs, g0, xs, x0, ds, e0 = gt, _u(0), xt, _u(0), dxt, _u(0)
        _zero(ds, e0, _u(H * W * C))
        if compute_dw:
            _zero(dwt, _u(0), _u(KH * KW * C))
        for p in range(OH * OW):
            g = g0 + _u(p) * L
            for j in range(first[p], first[p + 1]):
                s, t = _u(pixel[j]), _u(tap[j])
                for c in range(L):
                    ds[e0 + s + c] += wf[t + c] * gs[g + c]
                if compute_dw:
                    for c in range(L):
                        dwt[t + c] += gs[g + c] * xs[x0 + s + c]
        if not nhwc:
            transpose4(dxt, 0, H * W, C, df, n * C * H * W)  # dxt (H W, C) -> dx[n] (C, H W)
        if compute_dw:
            for i in range(_u(KH * KW * C)):
                dw_part[i] += dwt[i]
