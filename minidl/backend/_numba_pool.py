"""Pooling kernels of the Numba backend: a mixin of :class:`~minidl.backend.numba_backend.NumbaBackend`.

Notation (as in ``numpy_backend.py``): N, C, H, W; KH, KW kernel; SH, SW stride; PH, PW padding; DH, DW dilation;
OH, OW the output size. P: the flat "planes" axis N C (x viewed as (N C, H, W)).

The kernels compute what the NumPy backend's primitives compute for the reference pairs ``max_pool2d`` and
``avg_pool2d`` (``minidl/nn/pooling.py``): the same window loops, compiled, each task a range of planes, with a
specialization for the common 2 x 2 / stride 2 max pooling; and ``adaptive_avg_pool2d``
(``minidl/nn/pooling_adaptive.py``) where its bins are blocks (global average pooling included). The kernel pairs take
the reference's arguments after its setup's result (the window geometry and output size).
"""

from __future__ import annotations

from typing import Any

import numpy
from numba import njit

from minidl.backend import _threads
from minidl.backend._numba_common import _as_nhwc, _empty_nchw, _native_dtypes, _nhwc
from minidl.backend._numba_kernels import _REDUCE, _u, _zero


@njit(cache=True, nogil=True)
def max_pool2d_forward(x, p0, p1, KH, KW, SH, SW, PH, PW, DH, DW, out, argmax):
    """For planes [p0, p1) of x (P, H, W): out = the window maximum, argmax = its offset kh KW + kw.

    -inf padding; the first maximum in (kh, kw) order wins a tie; a NaN wins (the last NaN, like the reference's
    ``(v > best) | isnan(v)`` scan). Windows entirely inside the input (almost all) skip the bounds tests."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    xf, of, af = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    ninf = out.dtype.type(-numpy.inf)
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


@njit(nogil=True, inline="always")
def _window_2x2_nhwc(n, oh, ow, OH, OW, H, W, C):
    """Where output pixel (n, oh, ow) and its 2 x 2 window's four input pixels start in flat (N, OH, OW, C) and
    (N, H, W, C) arrays: ``(o, p00, p01, p10, p11)``, each the start of a run of C values."""
    o = _u(((n * OH + oh) * OW + ow) * C)
    p00 = _u(((n * H + 2 * oh) * W + 2 * ow) * C)
    p10 = p00 + _u(W * C)
    return o, p00, p00 + _u(C), p10, p10 + _u(C)


@njit(cache=True, nogil=True)
def max_pool2d_forward_2x2_nhwc(x, n0, n1, out, argmax):
    """:func:`max_pool2d_forward_2x2` for images [n0, n1) of a ``channels_last`` input: x (N, H, W, C), out and
    argmax (N, OH, OW, C), the views of channels_last arrays. Each window's four pixels are four runs of C values,
    compared channel by channel in the same (kh, kw) order, with the same tie and NaN rules (a loop over C
    channels, vectorized)."""
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = out.shape[1], out.shape[2]
    xf, of, af = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    L = _u(C)
    for n in range(n0, n1):
        for oh in range(OH):
            for ow in range(OW):
                o, p00, p01, p10, p11 = _window_2x2_nhwc(n, oh, ow, OH, OW, H, W, C)
                for c in range(L):
                    best = xf[p00 + c]
                    arg = 0
                    v = xf[p01 + c]
                    if v > best or v != v:
                        best, arg = v, 1
                    v = xf[p10 + c]
                    if v > best or v != v:
                        best, arg = v, 2
                    v = xf[p11 + c]
                    if v > best or v != v:
                        best, arg = v, 3
                    of[o + c] = best
                    af[o + c] = arg


@njit(cache=True, nogil=True)
def max_pool2d_backward_2x2_nhwc(dout, argmax, n0, n1, dx):
    """:func:`max_pool2d_backward_2x2` for images [n0, n1) of ``channels_last`` arrays: dout and argmax
    (N, OH, OW, C), dx (N, H, W, C) views; each of a window's four pixels written once, a run of C values."""
    H, W, C = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = dout.shape[1], dout.shape[2]
    gf, af, df = dout.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    zero = dx.dtype.type(0)
    L = _u(C)
    for n in range(n0, n1):
        if 2 * OH < H or 2 * OW < W:  # an odd last row or column belongs to no window
            _zero(df, _u(n * H * W * C), _u(H * W * C))
        for oh in range(OH):
            for ow in range(OW):
                o, p00, p01, p10, p11 = _window_2x2_nhwc(n, oh, ow, OH, OW, H, W, C)
                for c in range(L):
                    k, g = af[o + c], gf[o + c]
                    df[p00 + c] = g if k == 0 else zero
                    df[p01 + c] = g if k == 1 else zero
                    df[p10 + c] = g if k == 2 else zero
                    df[p11 + c] = g if k == 3 else zero


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


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def global_avg_pool2d(x, p0, p1, out):
    """out[p] = the mean of row p of x (P, S), for rows [p0, p1): global average pooling of P = N C planes of S = H W
    values, each contiguous. The sum may be reordered (``_REDUCE``: vectorized); it runs in x's dtype, as NumPy's
    mean does."""
    S = x.shape[1]
    xf = x.reshape(-1)
    for p in range(p0, p1):
        s = x.dtype.type(0)
        base = _u(p * S)
        for i in range(_u(S)):
            s += xf[base + i]
        out[p] = s / S


@njit(cache=True, nogil=True)
def global_avg_pool2d_nhwc(x, n0, n1, acc, out):
    """out[n, c] = the mean of x[n, :, c] for images [n0, n1) of x (N, S, C), the (N, H W, C) view of a
    ``channels_last`` input: each pixel's C values one run, added into ``acc`` (C values of x's dtype, as NumPy's mean
    sums), one pixel after the other."""
    S, C = x.shape[1], x.shape[2]
    xf = x.reshape(-1)
    for n in range(n0, n1):
        for c in range(C):
            acc[c] = 0
        for i in range(S):
            base = _u((n * S + i) * C)
            for c in range(C):
                acc[c] += xf[base + _u(c)]
        for c in range(C):
            out[n, c] = acc[c] / S


_GLOBAL_POOL_SERIAL = 1 << 16  # inputs of at most this many values are pooled globally in the calling thread


# ---------------------------------------------------------------------------------------------------- the mixin
class PoolKernelsMixin:
    """The kernel pairs ``max_pool2d``, ``avg_pool2d`` and ``adaptive_avg_pool2d`` (entries of the backend's kernel
    table)."""

    _split: Any
    _avg_pool_divisor: Any

    def _planes(self, P: int) -> list[tuple[int, int]]:
        return self._split(P, 4 * _threads.get_num_threads())

    def _max_pool2d_forward(
        self, g: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
        ceil_mode: bool = False,
    ) -> tuple[Any, Any]:  # fmt: skip
        """The ``max_pool2d`` pair's forward, ``g`` its geometry: ``(out, (argmax, x_shape, g))``, the reference's
        cache layout (``return_indices`` reads it)."""
        out, argmax = self._max_pool_planes(x, *g)
        return out, (argmax, tuple(x.shape), g)

    def _max_pool2d_backward(self, dout: Any, cache: Any) -> Any:
        argmax, x_shape, g = cache
        return self._max_pool_planes_backward(dout, argmax, x_shape, *g[:8])

    def _avg_pool2d_forward(
        self, prepared: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
        count_include_pad: bool = True, divisor_override: int | None = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """The ``avg_pool2d`` pair's forward; ``prepared`` is (geometry, divisor override or 0)."""
        g, divisor = prepared
        out = self._avg_pool_planes(x, *g[:6], g.OH, g.OW, int(count_include_pad), divisor)
        return out, (tuple(x.shape), g, int(count_include_pad), divisor)

    def _avg_pool2d_backward(self, dout: Any, cache: Any) -> Any:
        x_shape, g, count_include_pad, divisor = cache
        return self._avg_pool_planes_backward(dout, x_shape, *g[:6], count_include_pad, divisor)

    def _adaptive_avg_pool2d_forward(self, prepared: Any, x: Any, output_size: Any) -> tuple[Any, Any]:
        """The ``adaptive_avg_pool2d`` pair's forward (``prepared``: the setup's (backend, OH, OW)); cache: x's shape.
        Compiled where the bins are blocks (OH divides H and OW divides W; global average pooling is one): the
        average pool with an (H / OH, W / OW) window and stride, whose windows all hold their full count, and
        global pooling by its own loop (:func:`global_avg_pool2d`); other bins run the reference's averaging
        matrices (the NumPy backend's primitive). The reference's reshape-mean reduces small strided axes slowly:
        MobileNetV2's global pool of 1280 x 4 x 4 at batch 128 took 3.2 ms (PyTorch: 0.5 ms), the average-pool
        kernel 2.0 ms, :func:`global_avg_pool2d` 0.21 ms (2 threads, AMD Zen 4)."""
        _, OH, OW = prepared
        N, C, H, W = x.shape
        if (OH, OW) == (1, 1):
            out = self._global_avg_pool(x)
        elif H % OH == 0 and W % OW == 0:
            out = self._avg_pool_planes(x, H // OH, W // OW, H // OH, W // OW, 0, 0, OH, OW, 1, 0)
        else:
            out = self.adaptive_avg_pool2d_forward(x, OH, OW)
        return out, (tuple(x.shape), _nhwc(x) is not None)

    def _adaptive_avg_pool2d_backward(self, dout: Any, cache: Any) -> Any:
        """The reference's backward (the NumPy backend's primitive: each gradient spread evenly over its bin); for a
        ``channels_last`` input of global pooling, dx is channels_last too (dout / (H W) at every pixel)."""
        x_shape, nhwc = cache
        N, C, H, W = x_shape
        if nhwc and dout.shape[2:] == (1, 1):
            dx, dx_nhwc = _empty_nchw(x_shape, dout.dtype, True)
            dx_nhwc[...] = (dout.reshape(N, 1, 1, C) / (H * W)).astype(dout.dtype, copy=False)
            return dx
        return self.adaptive_avg_pool2d_backward(dout, x_shape)

    @_native_dtypes
    def _global_avg_pool(self, x: Any) -> Any:
        """(N, C, 1, 1): the mean of each (H, W) plane (:func:`global_avg_pool2d`), in parallel over planes (a small
        input in one task, in this thread: handing out a parallel region costs about 70 us)."""
        N, C, H, W = x.shape
        xh = _nhwc(x)
        if xh is not None:  # channels_last: sums over the pixels' runs of C values, in parallel over images
            out = numpy.empty((N, C), dtype=x.dtype)
            tasks = self._planes(N) if x.size > _GLOBAL_POOL_SERIAL else [(0, N)]

            def body(worker: int, task: int) -> None:
                acc = self._buffer(worker, "pool_acc", (C,), x.dtype)
                global_avg_pool2d_nhwc(xh.reshape(N, H * W, C), *tasks[task], acc, out)

            _threads.parallel_for(body, len(tasks))
            return out.reshape(N, C, 1, 1)
        x2 = numpy.ascontiguousarray(x).reshape(N * C, H * W)
        out = numpy.empty(N * C, dtype=x.dtype)
        tasks = self._planes(N * C) if x2.size > _GLOBAL_POOL_SERIAL else [(0, N * C)]
        _threads.parallel_for(lambda worker, task: global_avg_pool2d(x2, *tasks[task], out), len(tasks))
        return out.reshape(N, C, 1, 1)

    # ------------------------------------------------------------------ the compiled loops, over ranges of planes
    @_native_dtypes
    def _max_pool_planes(
        self, x: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int, OH: int, OW: int
    ) -> tuple[Any, Any]:
        """Same as :meth:`NumpyBackend.max_pool2d_forward` (out, int32 argmax offsets), compiled; a 2 x 2, stride-2
        window over a ``channels_last`` x gives ``channels_last`` out and argmax (:func:`max_pool2d_forward_2x2_nhwc`),
        other windows copy it to C order."""
        N, C, H, W = x.shape
        common = (KH, KW, SH, SW, PH, PW, DH, DW) == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * OH <= H and 2 * OW <= W
        xh = _nhwc(x) if common else None
        if xh is not None:
            out, out_h = _empty_nchw((N, C, OH, OW), x.dtype, True)
            argmax, argmax_h = _empty_nchw((N, C, OH, OW), numpy.int32, True)
            images = self._split(N, 4 * _threads.get_num_threads())
            _threads.parallel_for(
                lambda worker, task: max_pool2d_forward_2x2_nhwc(xh, *images[task], out_h, argmax_h), len(images)
            )
            return out, argmax
        x3 = numpy.ascontiguousarray(x).reshape(N * C, H, W)
        out = numpy.empty((N * C, OH, OW), dtype=x.dtype)
        argmax = numpy.empty((N * C, OH, OW), dtype=numpy.int32)
        tasks = self._planes(N * C)

        def body(worker: int, task: int) -> None:
            if common:  # a kernel compiled for this window (see max_pool2d_forward_2x2)
                max_pool2d_forward_2x2(x3, *tasks[task], out, argmax)
            else:
                max_pool2d_forward(x3, *tasks[task], KH, KW, SH, SW, PH, PW, DH, DW, out, argmax)

        _threads.parallel_for(body, len(tasks))
        return out.reshape(N, C, OH, OW), argmax.reshape(N, C, OH, OW)

    @_native_dtypes
    def _max_pool_planes_backward(
        self,
        dout: Any,
        argmax: Any,
        x_shape: tuple[int, ...],
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        DH: int,
        DW: int,
    ) -> Any:
        """Same as :meth:`NumpyBackend.max_pool2d_backward`, compiled; ``channels_last`` (dx too) where the forward
        ran so (its argmax is)."""
        N, C, H, W = x_shape
        OH, OW = dout.shape[2], dout.shape[3]
        common = (KH, KW, SH, SW, PH, PW, DH, DW) == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * OH <= H and 2 * OW <= W
        argmax_h = _nhwc(argmax) if common else None
        if argmax_h is not None:
            gh = _as_nhwc(dout)
            dx, dx_h = _empty_nchw((N, C, H, W), dout.dtype, True)
            images = self._split(N, 4 * _threads.get_num_threads())
            _threads.parallel_for(
                lambda worker, task: max_pool2d_backward_2x2_nhwc(gh, argmax_h, *images[task], dx_h), len(images)
            )
            return dx
        dout3 = numpy.ascontiguousarray(dout).reshape(N * C, OH, OW)
        argmax3 = numpy.ascontiguousarray(argmax).reshape(N * C, OH, OW)
        dx = numpy.empty((N * C, H, W), dtype=dout.dtype)
        tasks = self._planes(N * C)

        def body(worker: int, task: int) -> None:
            if common:
                max_pool2d_backward_2x2(dout3, argmax3, *tasks[task], dx)
            else:
                max_pool2d_backward(dout3, argmax3, *tasks[task], KH, KW, SH, SW, PH, PW, DH, DW, dx)

        _threads.parallel_for(body, len(tasks))
        return dx.reshape(N, C, H, W)

    @_native_dtypes
    def _avg_pool_planes(
        self,
        x: Any,
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        OH: int,
        OW: int,
        count_include_pad: int,
        divisor_override: int,
    ) -> Any:
        """Same as :meth:`NumpyBackend.avg_pool2d_forward` (the same divisors), compiled."""
        N, C, H, W = x.shape
        divisor = self._avg_pool_divisor(
            H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override, x.dtype
        )
        x3 = numpy.ascontiguousarray(x).reshape(N * C, H, W)
        out = numpy.empty((N * C, OH, OW), dtype=x.dtype)
        tasks = self._planes(N * C)

        def body(worker: int, task: int) -> None:
            avg_pool2d_forward(x3, *tasks[task], KH, KW, SH, SW, PH, PW, divisor, out)

        _threads.parallel_for(body, len(tasks))
        return out.reshape(N, C, OH, OW)

    @_native_dtypes
    def _avg_pool_planes_backward(
        self,
        dout: Any,
        x_shape: tuple[int, ...],
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        count_include_pad: int,
        divisor_override: int,
    ) -> Any:
        """Same as :meth:`NumpyBackend.avg_pool2d_backward`, compiled."""
        N, C, H, W = x_shape
        OH, OW = dout.shape[2], dout.shape[3]
        divisor = self._avg_pool_divisor(
            H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override, dout.dtype
        )
        dout3 = numpy.ascontiguousarray(dout).reshape(N * C, OH, OW)
        dx = numpy.empty((N * C, H, W), dtype=dout.dtype)
        tasks = self._planes(N * C)

        def body(worker: int, task: int) -> None:
            avg_pool2d_backward(dout3, *tasks[task], KH, KW, SH, SW, PH, PW, divisor, dx)

        _threads.parallel_for(body, len(tasks))
        return dx.reshape(N, C, H, W)
