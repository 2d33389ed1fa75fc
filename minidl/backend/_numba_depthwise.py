"""Depthwise convolution kernels of the Numba backend: a mixin of :class:`~minidl.backend._numba_conv.ConvKernelsMixin`.

Notation as in ``numpy_backend.py`` (N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW); O output channels, a
multiple of C: M = O / C output channels per input channel (the "depth multiplier", usually 1). A convolution is
*depthwise* when ``groups == C`` and the weight is (O, 1, KH, KW): output channel o reads input channel c = o // M
only (MobileNet's 3 x 3 layers, ConvNeXt's 7 x 7):

    out[n, o, oh, ow] = b[o] + sum over (kh, kw) of W[o, 0, kh, kw] x_pad[n, c, oh SH + kh DH, ow SW + kw DW]

The reference runs it as a grouped convolution: an im2col matrix (C KH KW, N OH OW), the size of the input times
KH KW, and C products of a (1 x KH KW) row by a (KH KW x N OH OW) matrix, each far too thin for BLAS to reach
speed. Here each output plane is computed directly, as KH KW shifted multiply-adds of whole rows: for a kernel tap
(kh, kw) and an output row oh, ``out[oh, lo:hi] += W[kh, kw] * x[h, lo SW + off : ... : SW]`` with the column range
[lo, hi) where the tap falls inside the image (no bounds test in the inner loop, which LLVM vectorizes for stride 1).
Nothing but x is cached for the backward.

A **3 x 3** kernel without dilation, stride 1 or 2 (MobileNet's), runs **a row at a time**
(:func:`depthwise3x3_forward`): the input plane copied, zero padded, into a scratch plane (split into its 4 phases
of even and odd rows and columns for stride 2, so that every tap reads a contiguous run), then one loop over each
output row adds all nine taps (the loops above make nine passes over the row, reading and writing it each time).
With stride 1, a multiplier of 1 and finite weights, the backward's dx is the same kernel on dout and the flipped
filters (padding 2 - P); dW reads the same phases: per output row one loop adds dout times each of the nine taps'
runs into nine sums (:func:`depthwise3x3_backward_weight`, on outputs 8 or more wide). Measured (batch 128, 2
threads, AMD Zen 4): the forward 1.4-2x faster than the loops below from 16 x 16 up, the backward 1.2-1.9x at
stride 1; outputs 8 or fewer wide stay faster channels last (figures: ``benchmarks/README.md``).

Rows are short on small images (MobileNetV2's 8 x 8 and 4 x 4 layers: 8 or 4 values per loop), and the loop overhead is
then the cost, one loop per row or per tap and row. With a depth multiplier of 1, 32 or more channels, and outputs 8 or
fewer columns wide or kernels of more than 9 taps (7 x 7), the forward and the backward run **channels last** instead
(``_numba_depthwise_cl.py``: one loop over all C channels per output pixel and tap).

In inference the forward can also apply a ReLU or ReLU6 (``relu_max``, see ``_numba_conv.py``) in its output pass.

Backward, with the same loops read the other way:

    dx[n, c]      += W[o, kh, kw] * dout[n, o] scattered onto the same positions   (each task owns planes (n, c))
    dW[o, kh, kw]  = sum over (n, oh, ow) of dout[n, o, oh, ow] x_pad[n, c, oh SH + kh DH, ow SW + kw DW]
                                                                                    (each task owns channels o)

Row sums of dW are taken in the array's dtype and added up in float64 (channels last: see
``_numba_depthwise_cl.py``). No two threads write the same element, and the split depends on the shapes only, so
results do not depend on the number of threads.
"""

from __future__ import annotations

from typing import Any

import numpy
from numba import njit

from minidl.backend import _threads
from minidl.backend._numba_common import (
    _MIN_CHUNKS,
    _as_nhwc,
    _ceil_div,
    _dims,
    _empty_nchw,
    _kernel_view,
    _native_dtypes,
    _nhwc,
)
from minidl.backend._numba_depthwise_cl import depthwise_backward_channels_last, depthwise_forward_channels_last
from minidl.backend._numba_kernels import _REDUCE, _clamp, _u, _zero, bias_arguments, epilogue

# channels last (measured, see the module docstring): 32+ channels, and outputs 8 or fewer columns wide or 10+ taps
_CHANNELS_LAST_MAX_OW = 8
_CHANNELS_LAST_MIN_TAPS = 10
_CHANNELS_LAST_MIN_C = 32
_ROWS_STRIDES = (1, 2)  # the other 3 x 3 convolutions (no dilation) with these strides: depthwise3x3_forward
_ROWS_MIN_OW_DW = 8  # ... and their dW (depthwise3x3_backward_weight) on outputs at least this wide


@njit(cache=True, nogil=True)
def _valid(K, D, P, S, size_in, size_out):
    """For each kernel tap k < K: the output positions [lo[k], hi[k]) whose input position i S + k D - P lies in
    [0, size_in) (one axis; computed once per call, so the loops below have no bounds tests)."""
    lo, hi = numpy.empty(K, numpy.int64), numpy.empty(K, numpy.int64)
    for k in range(K):
        off = k * D - P
        lo[k] = max(0, -(off // S))  # the first i with i S + off >= 0
        hi[k] = max(lo[k], min(size_out, (size_in - 1 - off) // S + 1))  # past the last i with i S + off < size_in
    return lo, hi


@njit(cache=True, nogil=True)
def depthwise_forward(x, weight, bias, has_bias, q0, q1, SH, SW, PH, PW, DH, DW, relu, relu_max, out):
    """Output planes [q0, q1) of out (N O planes of OH x OW): out = bias + the KH KW shifted rows of x times W (then
    min(relu(out), relu_max) with ``relu``, over the plane while it is in cache: see :func:`_clamp`).

    x (N, C, H, W), weight (O, KH, KW), bias (O,) (read when has_bias), out (N, O, OH, OW), all C-contiguous."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    O, KH, KW = weight.shape
    OH, OW = out.shape[2], out.shape[3]
    M = O // C
    xf, wf, of = x.reshape(-1), weight.reshape(-1), out.reshape(-1)
    zero = out.dtype.type(0)
    row_lo, row_hi = _valid(KH, DH, PH, SH, H, OH)
    col_lo, col_hi = _valid(KW, DW, PW, SW, W, OW)
    for q in range(q0, q1):
        n, o = q // O, q % O
        x_plane = (n * C + o // M) * H * W
        o_plane = q * OH * OW
        b = bias[o] if has_bias else out.dtype.type(0)
        for i in range(OH * OW):
            of[_u(o_plane + i)] = b
        for kh in range(KH):
            for kw in range(KW):
                tap = wf[_u((o * KH + kh) * KW + kw)]
                for oh in range(row_lo[kh], row_hi[kh]):
                    o_row = o_plane + oh * OW
                    x_row = x_plane + (oh * SH + kh * DH - PH) * W + kw * DW - PW  # + ow SW: the tap's input
                    for ow in range(col_lo[kw], col_hi[kw]):
                        of[_u(o_row + ow)] += tap * xf[_u(x_row + ow * SW)]
        if relu:
            for i in range(OH * OW):
                of[_u(o_plane + i)] = _clamp(of[_u(o_plane + i)], zero, relu_max)


@njit(nogil=True, inline="always")
def _nine_taps(y, L, b, w, a0, a1, a2, b0, b1, b2, c0, c1, c2):
    """y[i] = b + w[0] a0[i] + w[1] a1[i] + ... + w[8] c2[i] for i < L, added in that order."""
    w00, w01, w02, w10, w11, w12, w20, w21, w22 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    for i in range(L):
        y[i] = (
            b + w00 * a0[i] + w01 * a1[i] + w02 * a2[i] + w10 * b0[i] + w11 * b1[i] + w12 * b2[i]
            + w20 * c0[i] + w21 * c1[i] + w22 * c2[i]
        )  # fmt: skip


@njit(nogil=True, inline="always")
def _into_phases(xf, start, H, W, S, PH, PW, Lq, Wq, xq):
    """The H x W plane at xf[start:] into the interior of the S x S phases of its zero-padded plane in ``xq``
    (padded row r, column q at row r // S, column q // S of phase (r % S, q % S), each phase Lq = Hq Wq values; see
    :func:`depthwise3x3_forward`). The border is not written: it stays as zeroed."""
    for h in range(H):
        r = h + PH
        row = (r % S * S) * Lq + (r // S) * Wq  # phase (r % S, 0), its row r // S
        src = start + h * W - PW  # + q: padded column q of the row
        if S == 1:  # (a plain copy, which LLVM vectorizes)
            a, z = _u(row + PW), _u(src + PW)
            for k in range(_u(W)):
                xq[a + k] = xf[z + k]
            continue
        for pc in range(S):  # the row's columns q = pc + S k inside the image (PW <= q < W + PW)
            k0 = max(0, -((pc - PW) // S))
            k1 = max(k0, (W + PW - pc + S - 1) // S)
            a, z = _u(row + pc * Lq), _u(src + pc)
            for k in range(_u(k0), _u(k1)):
                xq[a + k] = xf[z + _u(S) * k]


@njit(nogil=True, inline="always")
def _tap(xq, oh, kh, kw, S, Lq, Wq, OW):
    """The OW values of ``xq`` that tap (kh, kw) reads for output row oh (see :func:`depthwise3x3_forward`): a
    contiguous view (LLVM vectorizes a loop over such views; not one of unsigned indices, nor one of strided
    views)."""
    start = (kh % S * S + kw % S) * Lq + (oh + kh // S) * Wq + kw // S
    return xq[start : start + OW]


@njit(cache=True, nogil=True)
def depthwise3x3_forward(x, weight, bias, has_bias, q0, q1, S, PH, PW, relu, relu_max, xq, out):
    """Output planes [q0, q1) of out (N O planes) for a 3 x 3 weight (O, 3, 3), stride S (1 or 2) both ways, no
    dilation, one output row at a time with all nine taps in one loop.

    Each input plane is copied, zero padded, into ``xq`` split into S x S phases (padded row r, column q to phase
    (r % S, q % S), at row r // S, column q // S of that phase's Hq x Wq plane; one phase for stride 1). Output
    (oh, ow) reads tap (kh, kw) at row oh + kh // S, column ow + kw // S of phase (kh % S, kw % S), so for one output
    row each tap's inputs are one contiguous run of xq, and

        out[n, o, oh, :] = b + w00 t00 + w01 t01 + ... + w22 t22      (t_k: tap k's run of OW values)

    is one loop over the row, which LLVM vectorizes (then min(relu, relu_max) with ``relu``). The taps and the bias
    are added in the order of :func:`depthwise_forward`, and the padding's zeros are multiplied as the reference's
    im2col zeros are. Only the planes' interiors are written into xq, so its zero border is set once per call.

    x (N, C, H, W), weight (O, 3, 3), bias (O,) (read when has_bias), out (N, O, OH, OW), all C-contiguous; xq
    scratch of S^2 Hq Wq values (the last tap's run of the last row ends at the last phase's end)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    O = weight.shape[0]
    OH, OW = out.shape[2], out.shape[3]
    M = O // C
    Hq, Wq = -(-(H + 2 * PH) // S), -(-(W + 2 * PW) // S)
    Lq = Hq * Wq  # one phase
    xf = x.reshape(-1)
    zero = out.dtype.type(0)
    _zero(xq, _u(0), _u(S * S * Lq))
    for q in range(q0, q1):
        n, o = q // O, q % O
        if q == q0 or o % M == 0:  # a new input plane: copy it into the phases
            _into_phases(xf, (n * C + o // M) * H * W, H, W, S, PH, PW, Lq, Wq, xq)
        taps = weight[o].reshape(-1)
        b = bias[o] if has_bias else zero
        for oh in range(OH):
            y = out[n, o, oh]
            _nine_taps(
                y, OW, b, taps, _tap(xq, oh, 0, 0, S, Lq, Wq, OW), _tap(xq, oh, 0, 1, S, Lq, Wq, OW),
                _tap(xq, oh, 0, 2, S, Lq, Wq, OW), _tap(xq, oh, 1, 0, S, Lq, Wq, OW), _tap(xq, oh, 1, 1, S, Lq, Wq, OW),
                _tap(xq, oh, 1, 2, S, Lq, Wq, OW), _tap(xq, oh, 2, 0, S, Lq, Wq, OW), _tap(xq, oh, 2, 1, S, Lq, Wq, OW),
                _tap(xq, oh, 2, 2, S, Lq, Wq, OW),
            )  # fmt: skip
            if relu:
                for i in range(OW):
                    y[i] = _clamp(y[i], zero, relu_max)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def depthwise3x3_backward_weight(dout, x, o0, o1, S, PH, PW, xq, dw):
    """Channels [o0, o1) of dw (O, 3, 3), overwritten, for :func:`depthwise3x3_forward`: per image, the input plane
    in the phases of ``xq`` as there, then for each output row ONE loop adds the row of dout times each tap's run
    into nine sums (row sums in the arrays' dtype, their total in float64, as :func:`depthwise_backward_weight`).
    xq: scratch of S^2 Hq Wq values."""
    N, C, H, W = x.shape
    O = dw.shape[0]
    OH, OW = dout.shape[2], dout.shape[3]
    M = O // C
    Hq, Wq = -(-(H + 2 * PH) // S), -(-(W + 2 * PW) // S)
    Lq = Hq * Wq
    xf = x.reshape(-1)
    zero = dw.dtype.type(0)
    _zero(xq, _u(0), _u(S * S * Lq))
    for o in range(o0, o1):
        t = numpy.zeros(9)
        for n in range(N):
            _into_phases(xf, (n * C + o // M) * H * W, H, W, S, PH, PW, Lq, Wq, xq)
            for oh in range(OH):
                g = dout[n, o, oh]
                a0, a1, a2 = (
                    _tap(xq, oh, 0, 0, S, Lq, Wq, OW),
                    _tap(xq, oh, 0, 1, S, Lq, Wq, OW),
                    _tap(xq, oh, 0, 2, S, Lq, Wq, OW),
                )
                b0, b1, b2 = (
                    _tap(xq, oh, 1, 0, S, Lq, Wq, OW),
                    _tap(xq, oh, 1, 1, S, Lq, Wq, OW),
                    _tap(xq, oh, 1, 2, S, Lq, Wq, OW),
                )
                c0, c1, c2 = (
                    _tap(xq, oh, 2, 0, S, Lq, Wq, OW),
                    _tap(xq, oh, 2, 1, S, Lq, Wq, OW),
                    _tap(xq, oh, 2, 2, S, Lq, Wq, OW),
                )
                s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = zero
                for i in range(OW):
                    gi = g[i]
                    s0 += gi * a0[i]
                    s1 += gi * a1[i]
                    s2 += gi * a2[i]
                    s3 += gi * b0[i]
                    s4 += gi * b1[i]
                    s5 += gi * b2[i]
                    s6 += gi * c0[i]
                    s7 += gi * c1[i]
                    s8 += gi * c2[i]
                t[0] += s0
                t[1] += s1
                t[2] += s2
                t[3] += s3
                t[4] += s4
                t[5] += s5
                t[6] += s6
                t[7] += s7
                t[8] += s8
        for k in range(9):
            dw[o, k // 3, k % 3] = t[k]


@njit(cache=True, nogil=True)
def depthwise_backward_input(dout, weight, p0, p1, SH, SW, PH, PW, DH, DW, dx):
    """Input planes [p0, p1) of dx (N C planes of H x W, overwritten): each dout[n, o] of channel c's M outputs,
    times each tap, scattered back onto the positions that tap read."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    O, KH, KW = weight.shape
    OH, OW = dout.shape[2], dout.shape[3]
    M = O // C
    gf, wf, df = dout.reshape(-1), weight.reshape(-1), dx.reshape(-1)
    row_lo, row_hi = _valid(KH, DH, PH, SH, H, OH)
    col_lo, col_hi = _valid(KW, DW, PW, SW, W, OW)
    for p in range(p0, p1):
        n, c = p // C, p % C
        dx_plane = p * H * W
        _zero(df, _u(dx_plane), _u(H * W))
        for o in range(c * M, c * M + M):
            g_plane = (n * O + o) * OH * OW
            for kh in range(KH):
                for kw in range(KW):
                    tap = wf[_u((o * KH + kh) * KW + kw)]
                    for oh in range(row_lo[kh], row_hi[kh]):
                        g_row = g_plane + oh * OW
                        dx_row = dx_plane + (oh * SH + kh * DH - PH) * W + kw * DW - PW
                        for ow in range(col_lo[kw], col_hi[kw]):
                            df[_u(dx_row + ow * SW)] += tap * gf[_u(g_row + ow)]


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def depthwise_backward_weight(dout, x, o0, o1, SH, SW, PH, PW, DH, DW, dw):
    """Channels [o0, o1) of dw (O, KH, KW), overwritten: the sum over images and output pixels of dout times the
    input each tap read (row sums in the arrays' dtype, their total in float64)."""
    N, C, H, W = x.shape
    O, KH, KW = dw.shape
    OH, OW = dout.shape[2], dout.shape[3]
    M = O // C
    gf, xf = dout.reshape(-1), x.reshape(-1)
    row_lo, row_hi = _valid(KH, DH, PH, SH, H, OH)
    col_lo, col_hi = _valid(KW, DW, PW, SW, W, OW)
    for o in range(o0, o1):
        for kh in range(KH):
            for kw in range(KW):
                total = 0.0
                for n in range(N):
                    x_plane = (n * C + o // M) * H * W
                    g_plane = (n * O + o) * OH * OW
                    for oh in range(row_lo[kh], row_hi[kh]):
                        g_row = g_plane + oh * OW
                        x_row = x_plane + (oh * SH + kh * DH - PH) * W + kw * DW - PW
                        s = dw.dtype.type(0)
                        for ow in range(col_lo[kw], col_hi[kw]):
                            s += gf[_u(g_row + ow)] * xf[_u(x_row + ow * SW)]
                        total += s
                dw[o, kh, kw] = total


class DepthwiseKernelsMixin:
    """The depthwise convolution (``groups == C``, weight (O, 1, KH, KW)) of the ``conv2d`` kernel pair."""

    _split: Any

    @staticmethod
    def _is_depthwise(x_shape: tuple[int, ...], weight: Any, groups: int) -> bool:
        """A grouped convolution with one input channel per group: each output channel reads one input channel."""
        return groups > 1 and groups == x_shape[1] and weight.shape[1] == 1

    @staticmethod
    def _depthwise_channels_last(C: int, O: int, OW: int, KH: int, KW: int) -> bool:
        """Whether a depthwise convolution runs channels last, forward and backward: a depth multiplier of 1,
        _CHANNELS_LAST_MIN_C or more channels, and outputs _CHANNELS_LAST_MAX_OW or fewer columns wide (rows too short
        to vectorize) or _CHANNELS_LAST_MIN_TAPS or more taps (many passes over each row). Shapes only decide."""
        narrow_or_big = OW <= _CHANNELS_LAST_MAX_OW or KH * KW >= _CHANNELS_LAST_MIN_TAPS
        return O == C and C >= _CHANNELS_LAST_MIN_C and narrow_or_big

    @_native_dtypes
    def _depthwise_conv2d(
        self, x: Any, weight: Any, bias: Any, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int, OH: int, OW: int,
        relu_max: float | None = None,
    ) -> Any:  # fmt: skip
        """``conv2d(x, weight, bias, groups=C)`` for weight (O, 1, KH, KW): (N, O, OH, OW), parallel over planes (over
        images when it runs channels last); with ``relu_max`` then min(relu(out), relu_max) (+inf: a ReLU, 6: a
        ReLU6) in the same pass."""
        N, C, H, W = x.shape
        O, _, KH, KW = weight.shape
        # a channels_last x: the channels-last kernel, in place
        x, nhwc = _kernel_view(x) if O == C else (numpy.ascontiguousarray(x), False)
        w3 = numpy.ascontiguousarray(weight).reshape(O, KH, KW)
        b, has_bias = bias_arguments(bias, x.dtype)
        out, out_nhwc = _empty_nchw((N, O, OH, OW), x.dtype, nhwc)
        relu, cap = epilogue(relu_max, x.dtype)
        if nhwc or self._depthwise_channels_last(C, O, OW, KH, KW):  # short rows or many taps: channels last
            w_t = numpy.ascontiguousarray(w3.reshape(O, KH * KW).T)
            images = self._split(N, 4 * _threads.get_num_threads())
            target = out_nhwc if nhwc else out

            def by_images(worker: int, task: int) -> None:
                xt = self._buffer(worker, "dw_xt", (1 if nhwc else C * H * W,), x.dtype)
                yt = self._buffer(worker, "dw_yt", (1 if nhwc else O * OH * OW,), x.dtype)
                n0, n1 = images[task]
                depthwise_forward_channels_last(
                    x, w_t, KW, b, has_bias, n0, n1, SH, SW, PH, PW, DH, DW, relu, cap, xt, yt, target, nhwc
                )

            _threads.parallel_for(by_images, len(images))
            return out
        if (KH, KW, DH, DW) == (3, 3, 1, 1) and SH == SW and SH in _ROWS_STRIDES:  # 3 x 3: a row at a time
            Lq = -(-(x.shape[2] + 2 * PH) // SH) * -(-(x.shape[3] + 2 * PW) // SH)
            planes = self._split(N * O, 4 * _threads.get_num_threads())

            def by_rows(worker: int, task: int) -> None:
                xq = self._buffer(worker, "dw_xq", (SH * SH * Lq,), x.dtype)
                depthwise3x3_forward(x, w3, b, has_bias, *planes[task], SH, PH, PW, relu, cap, xq, out)

            _threads.parallel_for(by_rows, len(planes))
            return out
        tasks = self._split(N * O, 4 * _threads.get_num_threads())

        def body(worker: int, task: int) -> None:
            depthwise_forward(x, w3, b, has_bias, *tasks[task], SH, SW, PH, PW, DH, DW, relu, cap, out)

        _threads.parallel_for(body, len(tasks))
        return out

    @_native_dtypes
    def _depthwise_conv2d_backward(
        self, dout: Any, x: Any, weight: Any, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int, compute_dw: bool
    ) -> tuple[Any, Any]:
        """``(dx, dw)`` of :meth:`_depthwise_conv2d` (dw None without ``compute_dw``)."""
        N, C, H, W = x.shape
        O, _, KH, KW = weight.shape
        w3 = numpy.ascontiguousarray(weight).reshape(O, KH, KW)
        xh = _nhwc(x) if O == C else None
        if xh is not None:  # channels_last: read and written in place, dx laid out as x
            return self._depthwise_backward_channels_last(
                _as_nhwc(dout), xh, w3, SH, SW, PH, PW, DH, DW, compute_dw, True
            )
        dout, x = numpy.ascontiguousarray(dout), numpy.ascontiguousarray(x)
        if self._depthwise_channels_last(C, O, dout.shape[3], KH, KW):
            return self._depthwise_backward_channels_last(dout, x, w3, SH, SW, PH, PW, DH, DW, compute_dw)
        dx = numpy.empty((N, C, H, W), dtype=dout.dtype)
        dw = numpy.empty((O, KH, KW), dtype=dout.dtype) if compute_dw else None
        planes = self._split(N * C, 4 * _threads.get_num_threads())
        channels = self._split(O, 4 * _threads.get_num_threads()) if compute_dw else []
        # stride 1, multiplier 1: dx is the convolution of dout with the flipped filters, padded 2 - P (what
        # depthwise3x3_forward computes a row at a time). Not with an inf or NaN weight: that kernel would also
        # multiply it by dout's zero padding (NaN) where the reference multiplies only dout's values.
        three = (KH, KW, DH, DW) == (3, 3, 1, 1)
        dx_by_rows = three and (SH, SW) == (1, 1) and O == C and max(PH, PW) <= 2 and 1 in _ROWS_STRIDES
        dx_by_rows = dx_by_rows and bool(numpy.isfinite(w3).all())
        # dW a row at a time too, but not on rows shorter than _ROWS_MIN_OW_DW (measured: slower at 4 wide)
        dw_by_rows = three and SH == SW and SH in _ROWS_STRIDES and dout.shape[3] >= _ROWS_MIN_OW_DW
        x_phases = -(-(H + 2 * PH) // SH) * -(-(W + 2 * PW) // SH) * SH * SH  # dW's scratch: x's padded phases
        if dx_by_rows:
            flipped = numpy.ascontiguousarray(w3[:, ::-1, ::-1])
            (no_bias, off), cap = bias_arguments(None, dout.dtype), dout.dtype.type(0)
            dout_padded = (dout.shape[2] + 4 - 2 * PH) * (dout.shape[3] + 4 - 2 * PW)

        def body(worker: int, task: int) -> None:
            if task < len(planes) and dx_by_rows:
                xq = self._buffer(worker, "dw_xq", (dout_padded,), dout.dtype)
                depthwise3x3_forward(dout, flipped, no_bias, off, *planes[task], 1, 2 - PH, 2 - PW, False, cap, xq, dx)
            elif task < len(planes):
                depthwise_backward_input(dout, w3, *planes[task], SH, SW, PH, PW, DH, DW, dx)
            elif dw_by_rows:
                xq = self._buffer(worker, "dw_xq_dw", (x_phases,), x.dtype)
                depthwise3x3_backward_weight(dout, x, *channels[task - len(planes)], SH, PH, PW, xq, dw)
            else:
                depthwise_backward_weight(dout, x, *channels[task - len(planes)], SH, SW, PH, PW, DH, DW, dw)

        _threads.parallel_for(body, len(planes) + len(channels))
        return dx, None if dw is None else dw.reshape(weight.shape)

    def _depthwise_backward_channels_last(
        self, dout: Any, x: Any, w3: Any, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int, compute_dw: bool,
        nhwc: bool = False,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``(dx, dw)`` (dw None without ``compute_dw``) of the channels-last forward
        (:func:`~minidl.backend._numba_depthwise_cl.depthwise_backward_channels_last`), in parallel over chunks of
        N // _MIN_CHUNKS images (at least one; at least _MIN_CHUNKS chunks when the batch has that many images), each
        with its own float64 dW partial sum, added in chunk order: the results do not depend on the thread count."""
        N, (C, H, W), (_, OH, OW) = x.shape[0], _dims(x, nhwc), _dims(dout, nhwc)
        KH, KW = w3.shape[1], w3.shape[2]
        dtype = dout.dtype
        w_t = numpy.ascontiguousarray(w3.reshape(C, KH * KW).T)
        dx, dx_nhwc = _empty_nchw((N, C, H, W), dtype, nhwc)
        target = dx_nhwc if nhwc else dx
        nb = max(1, N // _MIN_CHUNKS)
        chunks = _ceil_div(N, nb)
        parts = numpy.zeros((max(1, chunks), KH * KW * C))  # float64; zeros: an empty batch

        def body(worker: int, task: int) -> None:
            scratch = 1 if nhwc else H * W * C  # (channels_last: no copies)
            gt = self._buffer(worker, "dw_gt", (1 if nhwc else OH * OW * C,), dtype)
            xt = self._buffer(worker, "dw_xt", (scratch,), dtype)
            dxt = self._buffer(worker, "dw_dxt", (scratch,), dtype)
            dwt = self._buffer(worker, "dw_dwt", (KH * KW * C,), dtype)
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            depthwise_backward_channels_last(
                dout,
                x,
                w_t,
                KW,
                n0,
                n1,
                SH,
                SW,
                PH,
                PW,
                DH,
                DW,
                compute_dw,
                gt,
                xt,
                dxt,
                dwt,
                parts[task],
                target,
                nhwc,
            )

        _threads.parallel_for(body, chunks)
        if not compute_dw:
            return dx, None
        dw = self._add_in_order(parts).reshape(KH * KW, C).T
        return dx, numpy.ascontiguousarray(dw).astype(dtype).reshape(C, 1, KH, KW)
