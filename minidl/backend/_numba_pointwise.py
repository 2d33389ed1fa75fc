"""1 x 1 convolutions of the Numba backend: a mixin of :class:`~minidl.backend._numba_conv.ConvKernelsMixin`.

Notation as in ``_numba_conv.py``. A 1 x 1 convolution without padding is a matrix product per image,
out[n] = W @ x[n] as (O, C) @ (C, OH OW) (x subsampled for a stride): already in NCHW layout, with no patch matrix
and no transpose. ResNet's projection shortcuts and MobileNet's pointwise layers are such convolutions. Two ways,
chosen by the output's size:

* 32 or more output pixels per image: per chunk of images one stacked product (O, C) @ (images, C, OH OW), then the
  bias (and a folded ReLU or ReLU6) in one compiled pass over the chunk while it is in the cache.
* Fewer (MobileNetV2's 4 x 4 layers): products 16 columns wide are too thin for BLAS. The chunk's images are laid side
  by side, X = x_chunk as (C, images OH OW) (a copy of runs of OH OW values, no transposition), and one product W @ X
  gives the chunk's output as (O, images OH OW), copied back to NCHW with the bias and the activation
  (:func:`~minidl.backend._numba_kernels.cols_to_nchw`). The backward takes the same columns: dW += G @ X^T and
  dX = W^T @ G for G = dout_chunk as (O, images OH OW). Measured on those layers (batch 128, 2 threads, AMD Zen 4),
  against what ran before (im2row forward, the stacked per-image products backward): forward 1.18-1.25x, backward
  1.22-1.47x; at 8 x 8 the stacked products are as fast or faster forward, the columns 1.0-1.1x backward.

A ``channels_last`` input (:mod:`minidl.memory_format`) is already a (pixels, C) matrix per chunk of images: there
the product is rows @ W^T, written straight into a ``channels_last`` output, and the backward likewise
(:meth:`PointwiseKernelsMixin._pointwise_conv_nhwc`).

Each chunk keeps its own dW partial sum, added in chunk order, and the chunks depend on the shapes only, so the
results do not depend on the number of threads.
"""

from __future__ import annotations

from typing import Any

import numpy
from numba import njit

from minidl.backend import _numba_kernels as _k
from minidl.backend import _threads
from minidl.backend._numba_common import (
    _CHUNK_BYTES,
    _MIN_CHUNKS,
    _as_nhwc,
    _ceil_div,
    _empty_nchw,
    _nhwc,
)

# 1 x 1 convolutions with fewer output pixels per image run as one product over the chunk's columns (W @ X, X the
# chunk as (C, images OH OW)) instead of a stack of (O, C) @ (C, OH OW) products this thin (see the module docstring)
_POINTWISE_MIN_OHW = 32
_u = _k._u


# ---------------------------------------------------------------------------------------------------- strided dx
@njit(cache=True, nogil=True)
def strided_scatter(rows, n0, n1, SH, SW, dxh):
    """dxh[n, h, w, :] = rows[((n - n0) OH + h / SH) OW + w / SW, :] where SH divides h and SW divides w, else 0, for
    n in [n0, n1): the gradient of a 1 x 1 convolution of stride (SH, SW) without padding (OH = (H - 1) / SH + 1,
    likewise OW) at the pixels it read (``rows``, as (pixels, C)), scattered into images [n0, n1) of dxh (the
    (N, H, W, C) view of a ``channels_last`` gradient), each value written once. (Zeroing dx first, then assigning
    the strided view, took a serial pass over the whole gradient and NumPy's strided copy: 1.9 -> 1.5 ms for the
    backward of 16 -> 32 channels at 32 x 32, stride 2, batch 128, 2 threads, AMD Zen 4.)"""
    _, H, W, C = dxh.shape
    OH, OW = (H - 1) // SH + 1, (W - 1) // SW + 1
    rf, df = rows.reshape(-1), dxh.reshape(-1)
    zero = dxh.dtype.type(0)
    for n in range(n0, n1):
        for h in range(H):
            for w in range(W):
                d = _u(((n * H + h) * W + w) * C)
                if h % SH == 0 and w % SW == 0:
                    s = _u((((n - n0) * OH + h // SH) * OW + w // SW) * C)
                    for c in range(_u(C)):
                        df[d + c] = rf[s + c]
                else:
                    for c in range(_u(C)):
                        df[d + c] = zero


class PointwiseKernelsMixin:
    """The 1 x 1 convolutions without padding of the ``conv2d`` kernel pair (:meth:`_pointwise_conv` and its
    backward); they use the backend's ``_buffer`` and ``_gemm_threads``."""

    _buffer: Any
    _gemm_threads: Any

    def _pointwise_images(self, N: int, C: int, O: int, OHW: int, itemsize: int) -> int:
        """Images per task: about _CHUNK_BYTES of input and output, and at least _MIN_CHUNKS tasks when possible."""
        return min(max(1, _CHUNK_BYTES // max(1, (C + O) * OHW * itemsize)), max(1, N // _MIN_CHUNKS))

    def _pointwise_conv(
        self, x: Any, weight: Any, bias: Any, SH: int, SW: int, relu_max: float | None = None, residual: Any = None
    ) -> Any:  # fmt: skip
        """``conv2d(x, weight, bias)`` for a (O, C, 1, 1) weight, stride (SH, SW), no padding (+ ``residual``, into a
        ``channels_last`` output only, then min(relu, relu_max) with ``relu_max``): per chunk of images one stacked
        product (O, C) @ (images, C, OH OW), or on outputs of fewer than _POINTWISE_MIN_OHW pixels one product
        (O, C) @ (C, images OH OW) (the chunk's columns: :meth:`_pointwise_columns`)."""
        if _nhwc(x) is not None:
            return self._pointwise_conv_nhwc(x, weight, bias, SH, SW, relu_max, residual)
        assert residual is None, "a C-order output pass takes no residual (_conv2d_dense adds it after)"
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = (H - 1) // SH + 1, (W - 1) // SW + 1
        x = numpy.ascontiguousarray(x)
        w2 = numpy.ascontiguousarray(weight.reshape(O, C))
        out = numpy.empty((N, O, OH, OW), dtype=dtype)
        out3 = out.reshape(N, O, OH * OW)
        nb = self._pointwise_images(N, C, O, OH * OW, x.itemsize)
        b, has_bias = _k.bias_arguments(bias, dtype)
        relu, cap = _k.epilogue(relu_max, dtype)
        by_columns = OH * OW < _POINTWISE_MIN_OHW

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            xs = self._subsampled(worker, x, n0, n1, SH, SW, OH, OW)
            if by_columns:
                y = self._buffer(worker, "pointwise_y", (O, (n1 - n0) * OH * OW), dtype)
                numpy.matmul(w2, self._pointwise_columns(worker, "pointwise_xc", xs), out=y)
                _k.cols_to_nchw(y, n0, n1, b, has_bias, relu, cap, out3)  # with the bias and the activation
                return
            numpy.matmul(w2, xs, out=out3[n0:n1])
            _k.bias_epilogue(out3, n0, n1, b, has_bias, relu, cap)  # one pass while the chunk is in the cache

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out

    def _pointwise_columns(self, worker: int, tag: str, a3: Any) -> Any:
        """``a3`` (images, C, P) as one (C, images P) matrix in the worker's buffer ``tag``: a run of P values per
        image and channel (:func:`~minidl.backend._numba_kernels.nchw_to_cols`)."""
        images, C, P = a3.shape
        cols = self._buffer(worker, tag, (C, images * P), a3.dtype)
        _k.nchw_to_cols(a3, 0, images, cols)
        return cols

    def _subsampled(self, worker: int, x: Any, n0: int, n1: int, SH: int, SW: int, OH: int, OW: int) -> Any:
        """x[n0:n1, :, ::SH, ::SW] as a contiguous (images, C, OH OW) array (a view for stride 1, else a per-worker
        copy)."""
        C = x.shape[1]
        if SH == SW == 1:
            return x[n0:n1].reshape(n1 - n0, C, OH * OW)
        buf = self._buffer(worker, "pointwise_x", (n1 - n0, C, OH, OW), x.dtype)
        numpy.copyto(buf, x[n0:n1, :, ::SH, ::SW])
        return buf.reshape(n1 - n0, C, OH * OW)

    def _pointwise_conv_backward(
        self, dout: Any, x: Any, weight: Any, SH: int, SW: int, compute_dw: bool
    ) -> tuple[Any, Any]:
        """``(dx, dw)`` of :meth:`_pointwise_conv`: per chunk of images dW += sum_n dout[n] @ xs[n]^T and
        dxs = W^T @ dout, scattered back to the positions the stride kept (zeros elsewhere); on outputs of fewer
        than _POINTWISE_MIN_OHW pixels, with the chunk's columns (G = dout_chunk as (O, images OHW), X likewise):
        dW += G @ X^T and dX = W^T @ G, one product each. Each chunk keeps its own dW partial sum, added in chunk
        order, so dW does not depend on the thread count."""
        if _nhwc(dout) is not None or _nhwc(x) is not None:
            return self._pointwise_conv_nhwc_backward(dout, x, weight, SH, SW, compute_dw)
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = dout.shape[2], dout.shape[3]
        x = numpy.ascontiguousarray(x)
        dout3 = numpy.ascontiguousarray(dout).reshape(N, O, OH * OW)
        w2_t = numpy.ascontiguousarray(weight.reshape(O, C).T)
        strided = (SH, SW) != (1, 1)
        dx = (numpy.zeros if strided else numpy.empty)((N, C, H, W), dtype=dtype)
        nb = self._pointwise_images(N, C, O, OH * OW, x.itemsize)
        tasks = _ceil_div(N, nb)
        dw_parts = numpy.zeros((max(tasks, 1), O, C), dtype=dtype) if compute_dw else None
        by_columns = OH * OW < _POINTWISE_MIN_OHW
        no_bias, _ = _k.bias_arguments(None, dtype)
        _, no_cap = _k.epilogue(None, dtype)  # (no activation: a bound the copy never reads)

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            images = n1 - n0
            if strided:  # dx at the positions the stride kept: a scratch, scattered into dx below
                dxs = self._buffer(worker, "pointwise_dx", (images, C, OH, OW), dtype)
                target = dxs.reshape(images, C, OH * OW)
            else:
                target = dx[n0:n1].reshape(images, C, H * W)
            if by_columns:
                g = self._pointwise_columns(worker, "pointwise_g", dout3[n0:n1])
                if compute_dw:
                    xs = self._subsampled(worker, x, n0, n1, SH, SW, OH, OW)
                    numpy.matmul(g, self._pointwise_columns(worker, "pointwise_xc", xs).T, out=dw_parts[task])
                dxc = self._buffer(worker, "pointwise_dxc", (C, images * OH * OW), dtype)
                numpy.matmul(w2_t, g, out=dxc)
                _k.cols_to_nchw(dxc, 0, images, no_bias, False, False, no_cap, target)
            else:
                g = dout3[n0:n1]
                if compute_dw:
                    xs = self._subsampled(worker, x, n0, n1, SH, SW, OH, OW)
                    part = self._buffer(worker, "pointwise_dw", (images, O, C), dtype)
                    numpy.matmul(g, xs.transpose(0, 2, 1), out=part)
                    part.sum(axis=0, out=dw_parts[task])
                numpy.matmul(w2_t, g, out=target)
            if strided:
                dx[n0:n1, :, ::SH, ::SW] = dxs

        _threads.parallel_for(body, tasks, max_threads=self._gemm_threads())
        dw = None
        if compute_dw:
            dw = self._add_in_order(dw_parts).reshape(O, C, 1, 1)
        return dx, dw

    # ------------------------------------------------------------------ channels_last
    def _rows(self, worker: int, xh: Any, n0: int, n1: int, SH: int, SW: int) -> Any:
        """xh[n0:n1, ::SH, ::SW, :] (xh the (N, H, W, C) view of a ``channels_last`` x) as one (pixels, C) matrix:
        a view for stride 1, else a per-worker copy."""
        rows = xh[n0:n1, ::SH, ::SW, :]
        if SH == SW == 1:
            return rows.reshape(-1, xh.shape[3])
        buf = self._buffer(worker, "pointwise_rows", rows.shape, xh.dtype)
        numpy.copyto(buf, rows)
        return buf.reshape(-1, xh.shape[3])

    def _pointwise_conv_nhwc(
        self, x: Any, weight: Any, bias: Any, SH: int, SW: int, relu_max: float | None = None, residual: Any = None
    ) -> Any:  # fmt: skip
        """:meth:`_pointwise_conv` of a ``channels_last`` x, into a ``channels_last`` output: per chunk of images
        out_rows = x_rows @ W^T, (pixels, C) @ (C, O), written in place in the output, then the bias, the residual
        and the activation in one pass (:func:`~minidl.backend._numba_kernels.rows_epilogue`)."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = (H - 1) // SH + 1, (W - 1) // SW + 1
        xh = _nhwc(x)
        w2_t = numpy.ascontiguousarray(weight.reshape(O, C).T)
        out, out_nhwc = _empty_nchw((N, O, OH, OW), dtype, True)
        nb = self._pointwise_images(N, C, O, OH * OW, x.itemsize)
        b, has_bias = _k.bias_arguments(bias, dtype)
        relu, cap = _k.epilogue(relu_max, dtype)
        res, has_res = _k.residual_arguments(residual, True, dtype)

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            y = out_nhwc[n0:n1].reshape(-1, O)
            numpy.matmul(self._rows(worker, xh, n0, n1, SH, SW), w2_t, out=y)
            _k.rows_epilogue(y, b, has_bias, relu, cap, res, has_res, n0 * OH * OW * O)

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out

    def _pointwise_conv_nhwc_backward(
        self, dout: Any, x: Any, weight: Any, SH: int, SW: int, compute_dw: bool
    ) -> tuple[Any, Any]:
        """``(dx, dw)`` of :meth:`_pointwise_conv_nhwc` (x or dout ``channels_last``), dx ``channels_last``: per chunk
        of images, with G_rows = dout_chunk as (pixels, O) and X_rows likewise (each made ``channels_last`` first if
        it was not),
        dW += G_rows^T @ X_rows and dX_rows = G_rows @ W, scattered back to the positions the stride kept (zeros
        elsewhere). Each chunk keeps its own dW partial sum, added in chunk order."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = dout.shape[2], dout.shape[3]
        gh = _as_nhwc(dout.astype(dtype, copy=False))
        xh = _as_nhwc(x) if compute_dw else None  # (N, H, W, C) rows
        w2 = numpy.ascontiguousarray(weight.reshape(O, C))
        strided = (SH, SW) != (1, 1)
        dx, dx_nhwc = _empty_nchw((N, C, H, W), dtype, True)  # (strided: each task writes its images whole)
        nb = self._pointwise_images(N, C, O, OH * OW, x.itemsize)
        tasks = _ceil_div(N, nb)
        dw_parts = numpy.zeros((max(tasks, 1), O, C), dtype=dtype) if compute_dw else None

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            g = gh[n0:n1].reshape(-1, O)
            if compute_dw:
                numpy.matmul(g.T, self._rows(worker, xh, n0, n1, SH, SW), out=dw_parts[task])
            if strided:
                dxs = self._buffer(worker, "pointwise_dx", ((n1 - n0) * OH * OW, C), dtype)
                numpy.matmul(g, w2, out=dxs)
                strided_scatter(dxs, n0, n1, SH, SW, dx_nhwc)
            else:
                numpy.matmul(g, w2, out=dx_nhwc[n0:n1].reshape(-1, C))

        _threads.parallel_for(body, tasks, max_threads=self._gemm_threads())
        dw = None
        if compute_dw:
            dw = self._add_in_order(dw_parts).reshape(O, C, 1, 1)
        return dx, dw
