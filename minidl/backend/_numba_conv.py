"""Convolution kernels of the Numba backend: a mixin of :class:`~minidl.backend.numba_backend.NumbaBackend`.

Notation as in ``numpy_backend.py`` (N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW; O output channels;
K = C KH KW; OHW = OH OW). The NumPy reference builds one (K, N OHW) column matrix for the whole batch (151 MB for
the second layer of ``cifar_cnn`` at batch 128) and keeps it for the backward pass. Here no batch-sized matrix
exists, only x is cached, and one of the algorithms below runs, chosen by shape in
:meth:`ConvKernelsMixin._conv2d_dense`:

* **im2row + GEMM per chunk** (any convolution with groups 1). Chunks of a few images (about 2 MB of patch rows,
  at least 16 chunks per batch): *im2row* of the chunk (one row per output pixel, K ordered (kh, kw, c), built from
  a channels-last copy of each image so that each kernel row is one contiguous run) into a per-thread buffer that
  stays in the core's cache, one GEMM ``rows @ W_row^T`` (NumPy's matmul, i.e. BLAS; with the long dimension first
  OpenBLAS runs it near its peak), and a transposed copy into the (N, O, OH, OW) output. The backward rebuilds each
  chunk's rows (cheap next to the two GEMMs) for dW_row += dout_chunk @ rows, then drows = dout_chunk^T @ W_row
  and row2im into dx.
* **Winograd's F(2x2, 3x3)** (``_numba_winograd.py``) for a 3 x 3 stride-1 convolution with 8 or more channels in
  and out (every 3 x 3 layer of the CIFAR ResNets but the first): 16 GEMMs of (tiles, C) @ (C, O), 2.25x fewer
  multiplications than im2row and no patch matrix. For 16 channels this halves the time of the layer: the im2row
  GEMM there has only 16 output columns and runs at a third of the core's peak. Its backward takes dx the same way
  (a stride-1 3 x 3 convolution of dout with the flipped filters) and dW through the adjoint transforms
  (dU = V^T dM per tile position, dW = G^T dU G), 2-2.5x faster than from im2row chunks. The results differ
  from im2row's by float32 roundings; ``backend.winograd = False`` goes back to im2row. Layers with few tiles per
  chunk (small images, many channels: VGG's 512 channels at 4 x 4 and 2 x 2) would re-read a big transformed weight
  for a few rows each; they run *batch-wide*: the transforms over the whole batch, then each of the 16 GEMMs once
  over all its tiles (see :meth:`ConvKernelsMixin._winograd_batched`).
* **Winograd's F(4x4, 3x3)** (``_numba_winograd4.py``) instead, for such a convolution with 64 or more channels in
  and out, outputs of 8 x 8 or more and 128 or more 4 x 4 tiles in the batch (VGG's 128 and 256 channels, the last
  stage of the CIFAR ResNets, at batch 32 and up): 36 GEMMs with 1.78x fewer multiplications than F(2x2, 3x3)'s 16,
  1.3-1.9x faster on those layers at batch 128. Its roundings are larger (float32: 2e-6 to 8e-6 of the largest
  output against 2e-7 to 5e-7; float64: 1e-14 against 1e-15). ``backend.winograd_tile = 2`` keeps F(2x2, 3x3)
  only. The weight gradient stays F(2x2, 3x3)'s.
* **1 x 1 without padding** (ResNet's projection shortcuts, MobileNet's pointwise layers): one stacked product
  (O, C) @ (images, C, OH OW) per chunk of images, already in NCHW layout (x subsampled first for a stride).
* **depthwise** (``groups == C``, weight (O, 1, KH, KW): MobileNet's 3 x 3 layers): direct loops over the output
  planes, KH KW shifted multiply-adds of whole rows, no column matrix (``_numba_depthwise.py``). Other grouped
  convolutions run the reference's per-group GEMMs with the compiled im2col.

Each chunk keeps its own dW partial sum (a fixed group of chunks does, for a big weight), added in order at the
end, and the chunking depends on the shapes only, so results do not depend on the number of threads. In inference
the forward can also apply a ReLU in its output pass (``relu=True``, see ``minidl/nn/fusion.py``).
"""

from __future__ import annotations

from typing import Any

import numpy

from minidl.backend import _numba_kernels as _k
from minidl.backend import _numba_winograd as _wino
from minidl.backend import _numba_winograd4 as _wino4
from minidl.backend import _threads
from minidl.backend._numba_common import _ceil_div, _native_dtypes
from minidl.backend._numba_depthwise import DepthwiseKernelsMixin

_CHUNK_BYTES = 1 << 21  # target size of one chunk's im2row buffer: about a core's L2 cache
_SMALL_O_BLOCK = 256  # rows per backward GEMM call when O <= 16 (measured: the best block for such thin GEMMs)
_MIN_CHUNKS = 16  # chunks a batch is cut into at least (when it has that many images)
_DW_BYTES = 32 << 20  # memory for the per-chunk dW partial sums (chunks are grouped when they would need more)
_WINOGRAD_MIN_CHANNELS = 8  # Winograd convolutions need this many input and output channels (see _winograd_applies)
_WINOGRAD_MIN_ROWS = 128  # tiles per chunk below which Winograd runs batch-wide (see _winograd_batched; measured)
_WINOGRAD_BATCH_BYTES = 128 << 20  # ... and at most this much V and M for the whole batch
_WINOGRAD4_MIN_SIZE = 8  # F(4x4, 3x3) for outputs at least this big (see _winograd4_applies) ...
_WINOGRAD4_MIN_CHANNELS = 64  # ... and at least this many channels in and out (measured: with 16 or 32, no faster)
_WINOGRAD4_MIN_TILES = 128  # ... and at least this many 4 x 4 tiles in the batch (measured: 32 images of 8 x 8 pay)
_PLANE_PAD = 16  # values between two of the 16 planes of a Winograd array (see _wino_planes)


class ConvKernelsMixin(DepthwiseKernelsMixin):
    """The convolution methods of the Numba backend (they use its ``_buffer``, ``_split``, ``_gemm_threads`` and
    compiled ``_im2col``/``_col2im``)."""

    #: run 3 x 3 stride-1 convolutions as Winograd's F(2x2, 3x3) or F(4x4, 3x3) (``_numba_winograd.py``,
    #: ``_numba_winograd4.py``); False: im2row + GEMM
    winograd: bool = True
    #: output tile of the Winograd convolutions: 4 for F(4x4, 3x3) on outputs of 8 x 8 or more, 2 for F(2x2, 3x3) only
    winograd_tile: int = 4

    # ------------------------------------------------------------------ the kernel pairs
    @staticmethod
    def _symmetric(x: Any, g: Any) -> tuple[Any, Any]:
        """``(x, crop)``: x with the extra bottom rows / right columns of an uneven ``'same'`` padding added (then
        padding top/left on both sides is the geometry's), and the input's (H, W) to crop dx back to (else None)."""
        extra_h, extra_w = g.bottom - g.top, g.right - g.left
        if (extra_h, extra_w) == (0, 0):
            return x, None
        return numpy.pad(x, ((0, 0), (0, 0), (0, extra_h), (0, extra_w))), tuple(x.shape[2:])

    def _conv2d_forward(
        self, g: Any, x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
        groups: int = 1,
    ) -> tuple[Any, Any]:  # fmt: skip
        """The ``conv2d`` pair's forward, ``g`` its geometry (the setup's; stride, padding, dilation and groups are
        in it). Cache: ``(x, or x_col with groups other than depthwise, weight, has_bias, g, x_shape, crop)``."""
        return self._conv2d(g, x, weight, bias)

    def _conv2d(self, g: Any, x: Any, weight: Any, bias: Any, relu: bool = False) -> tuple[Any, Any]:
        """:meth:`_conv2d_forward`, and ``conv2d_relu``'s forward with ``relu``."""
        x, crop = self._symmetric(x, g)
        if self._is_depthwise(tuple(x.shape), weight, g.groups):
            geometry = (g.SH, g.SW, g.top, g.left, g.DH, g.DW, g.OH, g.OW)
            out = self._depthwise_conv2d(x, weight, bias, *geometry)
            return out, (x, weight, bias is not None, g, tuple(x.shape), crop)
        if g.groups != 1:
            return self._grouped_conv2d(x, weight, bias, g, crop)
        out = self._conv2d_dense(x, weight, bias, g.KH, g.KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW, relu=relu)
        return out, (x, weight, bias is not None, g, tuple(x.shape), crop)

    def _conv2d_backward(self, dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any]:
        """``(dx, dw, db)`` of :meth:`_conv2d_forward` (``dw`` None when not ``compute_dw``)."""
        x, weight, has_bias, g, _, crop = cache
        db = dout.sum(axis=(0, 2, 3)) if has_bias else None
        if self._is_depthwise(cache[4], weight, g.groups):  # the cache holds x, not x_col
            geometry = (g.SH, g.SW, g.top, g.left, g.DH, g.DW)
            dx, dw = self._depthwise_conv2d_backward(dout, x, weight, *geometry, compute_dw)
        elif g.groups != 1:
            dx, dw = self._grouped_conv2d_backward(dout, cache, compute_dw)
        else:
            geometry = (g.KH, g.KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
            dx, dw = self._conv2d_dense_backward(dout, x, weight, *geometry, compute_dw)
        if crop is not None:  # the extra rows / columns of an uneven 'same' were padding
            dx = numpy.ascontiguousarray(dx[:, :, : crop[0], : crop[1]])
        return dx, dw, db

    @staticmethod
    def _conv2d_relu_accepts(
        x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
    ) -> bool:
        """Groups 1: the ReLU is applied by the dense kernels' output pass."""
        return groups == 1

    def _conv2d_relu_forward(
        self, g: Any, x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
        groups: int = 1,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``relu(conv2d(x))`` with the ReLU in the convolution's output pass. Cache: the convolution's and the
        output (whose positive entries are the ReLU's mask)."""
        out, conv_cache = self._conv2d(g, x, weight, bias, relu=True)
        return out, (conv_cache, out)

    def _conv2d_relu_backward(self, dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any]:
        """``(dx, dw, db)`` of :meth:`_conv2d_relu_forward`: the ReLU's mask from the output, then the conv's."""
        conv_cache, out = cache
        return self._conv2d_backward(numpy.where(out > 0, dout, 0), conv_cache, compute_dw=compute_dw)

    # ------------------------------------------------------------------ grouped convolution (the reference's GEMMs)
    def _grouped_conv2d(self, x: Any, weight: Any, bias: Any, g: Any, crop: Any) -> tuple[Any, Any]:
        """Per group, W_col @ x_col as in ``conv.py``'s reference, with the compiled im2col."""
        N = x.shape[0]
        O, Cg, KH, KW = weight.shape
        G, M = g.groups, N * g.OH * g.OW
        x_col = self._im2col(x, KH, KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
        out = (weight.reshape(G, O // G, Cg * KH * KW) @ x_col.reshape(G, Cg * KH * KW, M)).reshape(O, M)
        if bias is not None:
            out += bias[:, None]
        out = numpy.ascontiguousarray(out.reshape(O, N, g.OH, g.OW).transpose(1, 0, 2, 3))
        return out, (x_col, weight, bias is not None, g, tuple(x.shape), crop)

    def _grouped_conv2d_backward(self, dout: Any, cache: Any, compute_dw: bool) -> tuple[Any, Any]:
        """``(dx, dw)`` of :meth:`_grouped_conv2d`: dW = dout_col @ x_col^T and dx = col2im(W_col^T @ dout_col)."""
        x_col, weight, _, g, x_shape, _ = cache
        O, Cg, KH, KW = weight.shape
        G, K, M = g.groups, Cg * KH * KW, x_shape[0] * g.OH * g.OW
        dout_col = numpy.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(G, O // G, M)
        dw = (dout_col @ x_col.reshape(G, K, M).transpose(0, 2, 1)).reshape(weight.shape) if compute_dw else None
        dx_col = weight.reshape(G, O // G, K).transpose(0, 2, 1) @ dout_col
        dx = self._col2im(dx_col.reshape(G * K, M), x_shape, KH, KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
        return dx, dw

    # ------------------------------------------------------------------ fused convolution (groups == 1)
    def _images_per_chunk(self, N: int, K: int, OHW: int, itemsize: int) -> int:
        """Images per chunk: the im2row buffer near _CHUNK_BYTES, and at least _MIN_CHUNKS chunks when possible (to
        share them among threads). It does not depend on the thread count, so neither do the results."""
        by_cache = max(1, _CHUNK_BYTES // max(1, K * OHW * itemsize))
        return min(by_cache, max(1, N // _MIN_CHUNKS))

    @_native_dtypes
    def _conv2d_dense(
        self, x: Any, weight: Any, bias: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int,
        relu: bool = False,
    ) -> Any:  # fmt: skip
        """``out = conv2d(x, weight, bias)`` (groups 1) as im2row + GEMM per chunk of images; no batch-sized matrix.

        Per chunk: rows = im2row(x_chunk) (images OHW, K) with K in (kh, kw, c) order; y = rows @ W_row^T
        (images OHW, O), W_row the weight as (O, KH KW C); out_chunk = y^T (+ b) in (N, O, OH, OW) layout.

        Args:
            x: (N, C, H, W).  weight: (O, C, KH, KW).  bias: (O,) or None.
            relu: apply ReLU to the output in the same pass (inference: see ``minidl/nn/fusion.py``).
        Returns:
            out: (N, O, OH, OW), what ``conv.py``'s reference (``W_col @ im2col(x) + b``) computes.
        """
        if self._winograd_applies(x.shape[1], weight.shape[0], KH, KW, SH, SW, PH, PW, DH, DW):
            return self._winograd_conv(x, weight, bias, PH, PW, relu)
        if (KH, KW, PH, PW) == (1, 1, 0, 0):
            return self._pointwise_conv(x, weight, bias, SH, SW, relu)
        N, C, H, W = x.shape
        O = weight.shape[0]
        OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
        OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        K, OHW, dtype = C * KH * KW, OH * OW, x.dtype
        x = numpy.ascontiguousarray(x)
        w_row_t = numpy.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(K, O)  # W_row^T, contiguous: faster
        has_bias = bias is not None
        b = numpy.ascontiguousarray(bias) if has_bias else numpy.zeros(1, dtype=dtype)
        out = numpy.empty((N, O, OH, OW), dtype=dtype)
        out3 = out.reshape(N, O, OHW)
        nb = self._images_per_chunk(N, K, OHW, x.itemsize)

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            rows = self._buffer(worker, "rows", ((n1 - n0) * OHW, K), dtype)
            xt = self._buffer(worker, "xt", (C * H * W,), dtype)
            _k.im2row(x, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, rows)
            y = self._buffer(worker, "y", ((n1 - n0) * OHW, O), dtype)
            numpy.matmul(rows, w_row_t, out=y)
            _k.rows_to_nchw(y, n0, n1, b, has_bias, bool(relu), out3)

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out

    @_native_dtypes
    def _conv2d_dense_backward(
        self,
        dout: Any,
        x: Any,
        weight: Any,
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        DH: int,
        DW: int,
        compute_dw: bool = True,
    ) -> tuple[Any, Any]:
        """``(dx, dw)`` of :meth:`_conv2d_dense` (``dw`` None when not ``compute_dw``); the bias gradient is
        the layer's (a sum of ``dout``).

        Per chunk, with G = dout_chunk as (O, images OHW): rows = im2row(x_chunk); dW_row += G @ rows;
        drows = G^T @ W_row; dx_chunk = row2im(drows). Each chunk (or fixed group of chunks, for a big weight)
        has its own dW partial sum, added in order at the end, so dW does not depend on which thread ran what.
        """
        if (KH, KW, PH, PW) == (1, 1, 0, 0):
            return self._pointwise_conv_backward(dout, x, weight, SH, SW, compute_dw)
        N, C, H, W = x.shape
        O = weight.shape[0]
        OH, OW = dout.shape[2], dout.shape[3]
        K, OHW, dtype = C * KH * KW, OH * OW, x.dtype
        x = numpy.ascontiguousarray(x)
        dout3 = numpy.ascontiguousarray(dout).reshape(N, O, OHW)
        w_row = numpy.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(O, K)
        # dx of a stride-1 3 x 3 convolution is itself one (of dout with the flipped, transposed filters, padding
        # 2 - P): Winograd's, when it applies, and then dW too; else the im2row chunks below
        winograd_dx = self._winograd_applies(O, C, KH, KW, SH, SW, 2 - PH, 2 - PW, DH, DW)
        if winograd_dx:  # then dW is Winograd's too (see _winograd_weight_gradient)
            w_flip = numpy.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            dx = self._winograd_conv(numpy.ascontiguousarray(dout), w_flip, None, 2 - PH, 2 - PW)
            dw = self._winograd_weight_gradient(x, dout, weight.shape, PH, PW) if compute_dw else None
            return dx, dw
        dx = numpy.empty((N, C, H, W), dtype=dtype)
        nb = self._images_per_chunk(N, K, OHW, x.itemsize)
        chunks = _ceil_div(N, nb)
        # one dW partial sum per chunk when they fit in _DW_BYTES (fine-grained tasks), else per group of chunks;
        # the grouping follows from the shapes only, and the partials are added in order: deterministic
        groups = self._split(chunks, max(1, min(chunks, _DW_BYTES // (O * K * x.itemsize))))
        dw_parts = numpy.zeros((len(groups), O, K), dtype=dtype) if compute_dw else None  # zeros: an empty batch
        # OpenBLAS runs the two backward GEMMs of a 16-channel layer ~20% faster on blocks of 256 rows than whole
        block = _SMALL_O_BLOCK if O <= 16 else max(1, nb * OHW)

        def body(worker: int, group: int) -> None:
            for chunk in range(*groups[group]):
                n0, n1 = chunk * nb, min(N, (chunk + 1) * nb)
                P = (n1 - n0) * OHW
                if n1 - n0 == 1:
                    g = dout3[n0]  # (O, OHW): already the chunk's G
                else:
                    g = self._buffer(worker, "g", (O, P), dtype)
                    _k.nchw_to_cols(dout3, n0, n1, g)
                rows = self._buffer(worker, "rows", (P, K), dtype)
                xt = self._buffer(worker, "xt", (C * H * W,), dtype)
                if compute_dw:
                    _k.im2row(x, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, rows)
                    for s in range(0, P, block):  # dW += G @ rows, block by block
                        e = min(P, s + block)
                        if chunk == groups[group][0] and s == 0:
                            numpy.matmul(g[:, s:e], rows[s:e], out=dw_parts[group])
                        else:
                            part = self._buffer(worker, "dw", (O, K), dtype)
                            numpy.matmul(g[:, s:e], rows[s:e], out=part)
                            dw_parts[group] += part
                for s in range(0, P, block):  # drows = G^T @ W_row, reusing the rows' buffer
                    e = min(P, s + block)
                    numpy.matmul(g[:, s:e].T, w_row, out=rows[s:e])
                _k.row2im(rows, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, dx)

        _threads.parallel_for(body, len(groups), max_threads=self._gemm_threads())
        dw = None
        if compute_dw:
            dw = dw_parts[0]
            for part in dw_parts[1:]:
                dw += part
            dw = numpy.ascontiguousarray(dw.reshape(O, KH, KW, C).transpose(0, 3, 1, 2))
        return dx, dw

    # ------------------------------------------------------------------ 1 x 1 convolutions
    # A 1 x 1 convolution without padding is a matrix product per image, out[n] = W @ x[n] as (O, C) @ (C, OH OW)
    # (x subsampled for a stride): already in NCHW layout, with no patch matrix and no transpose. ResNet's
    # projection shortcuts and MobileNet's pointwise layers are such convolutions.
    def _pointwise_images(self, N: int, C: int, O: int, OHW: int, itemsize: int) -> int:
        """Images per task: about _CHUNK_BYTES of input and output, and at least _MIN_CHUNKS tasks when possible."""
        return min(max(1, _CHUNK_BYTES // max(1, (C + O) * OHW * itemsize)), max(1, N // _MIN_CHUNKS))

    def _pointwise_conv(self, x: Any, weight: Any, bias: Any, SH: int, SW: int, relu: bool = False) -> Any:
        """``conv2d(x, weight, bias)`` for a (O, C, 1, 1) weight, stride (SH, SW), no padding (then relu with
        ``relu``): per chunk of images one stacked product (O, C) @ (images, C, OH OW)."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = (H - 1) // SH + 1, (W - 1) // SW + 1
        w2 = numpy.ascontiguousarray(weight.reshape(O, C))
        out = numpy.empty((N, O, OH, OW), dtype=dtype)
        out3 = out.reshape(N, O, OH * OW)
        nb = self._pointwise_images(N, C, O, OH * OW, x.itemsize)

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            y = out3[n0:n1]
            numpy.matmul(w2, self._subsampled(worker, x, n0, n1, SH, SW, OH, OW), out=y)
            if bias is not None:
                y += bias[:, None]
            if relu:  # NaN stays NaN, as relu_forward
                numpy.maximum(y, 0, out=y)

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out

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
        dxs = W^T @ dout, scattered back to the positions the stride kept (zeros elsewhere). Each chunk keeps its
        own dW partial sum, added in chunk order, so dW does not depend on the thread count."""
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

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            g = dout3[n0:n1]
            if compute_dw:
                xs = self._subsampled(worker, x, n0, n1, SH, SW, OH, OW)
                part = self._buffer(worker, "pointwise_dw", (n1 - n0, O, C), dtype)
                numpy.matmul(g, xs.transpose(0, 2, 1), out=part)
                part.sum(axis=0, out=dw_parts[task])
            if strided:
                dxs = self._buffer(worker, "pointwise_dx", (n1 - n0, C, OH, OW), dtype)
                numpy.matmul(w2_t, g, out=dxs.reshape(n1 - n0, C, OH * OW))
                dx[n0:n1, :, ::SH, ::SW] = dxs
            else:
                numpy.matmul(w2_t, g, out=dx[n0:n1].reshape(n1 - n0, C, H * W))

        _threads.parallel_for(body, tasks, max_threads=self._gemm_threads())
        dw = None
        if compute_dw:
            dw = dw_parts[0]
            for part in dw_parts[1:]:
                dw += part
            dw = dw.reshape(O, C, 1, 1)
        return dx, dw

    # ------------------------------------------------------------------ Winograd F(2x2, 3x3) (see _numba_winograd.py)
    def _winograd_applies(
        self, C: int, O: int, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int
    ) -> bool:
        """Whether a convolution runs as Winograd's (F(2x2, 3x3), or F(4x4, 3x3) where :meth:`_winograd4_applies`):
        3 x 3, stride 1, no dilation, padding 0 to 2 (what
        the backward's dx convolution needs), and at least ``_WINOGRAD_MIN_CHANNELS`` channels in and out (with
        fewer, the 16 small GEMMs do not pay for the transforms). ``self.winograd = False`` turns it off."""
        return (
            self.winograd
            and (KH, KW, SH, SW, DH, DW) == (3, 3, 1, 1, 1, 1)
            and 0 <= PH <= 2
            and 0 <= PW <= 2
            and min(C, O) >= _WINOGRAD_MIN_CHANNELS
        )

    @staticmethod
    def _winograd_tiles(N: int, C: int, O: int, OH: int, OW: int, itemsize: int) -> tuple[int, int, int]:
        """``(TH, TW, images per chunk)``: 2 x 2 output tiles per column and row, and chunks with about
        _CHUNK_BYTES of V and M (at least _MIN_CHUNKS chunks when possible)."""
        TH, TW = _ceil_div(OH, 2), _ceil_div(OW, 2)
        per_image = 16 * TH * TW * (C + O) * itemsize
        return TH, TW, min(max(1, _CHUNK_BYTES // per_image), max(1, N // _MIN_CHUNKS))

    def _wino_planes(
        self, worker: int | None, tag: str, rows: int, cols: int, dtype: Any, count: int = 16
    ) -> tuple[Any, Any, int]:
        """``(view, flat, plane)``: ``count`` (rows, cols) matrices (V, M, U or their gradients; 16 for F(2x2, 3x3),
        36 for F(4x4, 3x3)) stored ``plane`` values apart in ``flat``, and the (count, rows, cols) view of them the
        GEMMs take. The planes are _PLANE_PAD values
        further apart than their size: the transforms read or write 4 to 16 planes in one loop, and at a distance of
        a power of two (64 KB, 1 MB) those streams all fall in the same few cache sets (U's transform ran 4x slower).
        A per-worker scratch buffer with ``worker``, else a new array."""
        plane = rows * cols + _PLANE_PAD
        if worker is None:
            flat = numpy.empty(count * plane, dtype=dtype)
        else:
            flat = self._buffer(worker, tag, (count * plane,), dtype)
        return flat.reshape(count, plane)[:, : rows * cols].reshape(count, rows, cols), flat, plane

    def _winograd_weight(self, weight: Any) -> tuple[Any, Any, int]:
        """U: the transformed filters as :meth:`_wino_planes` of (C, O) (:func:`_numba_winograd.transform_weight`), in
        parallel over blocks of input channels."""
        O, C = weight.shape[0], weight.shape[1]
        weight = numpy.ascontiguousarray(weight)
        U = self._wino_planes(None, "", C, O, weight.dtype)
        blocks = self._channel_tasks(C)
        _threads.parallel_for(lambda worker, i: _wino.transform_weight(weight, *blocks[i], U[1], U[2]), len(blocks))
        return U

    def _winograd_weight_from(self, dU: Any, w_shape: tuple[int, ...]) -> Any:
        """dW (O, C, 3, 3) from dU, :meth:`_wino_planes` of (C, O) (:func:`_numba_winograd.weight_gradient`), in
        parallel over blocks of input channels."""
        dw = numpy.empty(w_shape, dtype=dU[0].dtype)
        blocks = self._channel_tasks(w_shape[1])
        _threads.parallel_for(lambda worker, i: _wino.weight_gradient(dU[1], dU[2], *blocks[i], dw), len(blocks))
        return dw

    def _winograd_input(self, worker: int, x: Any, n0: int, n1: int, PH: int, PW: int, TH: int, TW: int) -> Any:
        """V: the transformed input tiles of images [n0, n1) as :meth:`_wino_planes` of (tiles, C), in a per-worker
        buffer."""
        V = self._wino_planes(worker, "wino_v", (n1 - n0) * TH * TW, x.shape[1], x.dtype)
        self._input_tiles(worker, x, n0, n1, n0, PH, PW, TH, TW, V)
        return V

    def _input_tiles(self, worker: int, x: Any, n0: int, n1: int, first: int, *geometry: int) -> None:
        """:func:`_numba_winograd.input_tiles` of images [n0, n1) into V (the last argument, :meth:`_wino_planes`)."""
        *geometry, V = geometry
        TH, TW = geometry[2], geometry[3]
        scratch = self._buffer(worker, "wino_x", ((2 * TH + 2) * 2 * (TW + 1) * x.shape[1],), x.dtype)
        _wino.input_tiles(x, n0, n1, first, *geometry, scratch, V[1], V[2])

    # Wide layers on small images (VGG's and airbench's 256-512 channels at 4 x 4 or 2 x 2) have few tiles per image
    # and a big U: a chunk's GEMMs would read the whole U (16 C O values) for a few rows. There the transforms run
    # over the whole batch, in chunks of images, and each of the 16 GEMMs once over all the batch's tiles, one task
    # per tile position xi (dW: dU_xi = V_xi^T dM_xi summed over the batch inside the GEMM, no partial sums).
    def _winograd_batched(self, N: int, C: int, O: int, TH: int, TW: int, nb: int, itemsize: int) -> bool:
        """Whether a Winograd convolution runs batch-wide: when a chunk of ``nb`` images would have fewer than
        _WINOGRAD_MIN_ROWS tiles (rows of its GEMMs), the batch has more than one chunk, and the batch's V and M
        take at most _WINOGRAD_BATCH_BYTES (else they would not stay in the caches either). Shapes only decide."""
        batch_bytes = 16 * N * TH * TW * (C + O) * itemsize
        return nb * TH * TW < _WINOGRAD_MIN_ROWS and N > nb and batch_bytes <= _WINOGRAD_BATCH_BYTES

    def _winograd_batch_input(self, x: Any, nb: int, PH: int, PW: int, TH: int, TW: int) -> Any:
        """V of the whole batch (tiles numbered from image 0), :meth:`_wino_planes` of (N TH TW, C), in parallel over
        chunks of ``nb`` images."""
        N = x.shape[0]
        V = self._wino_planes(None, "", N * TH * TW, x.shape[1], x.dtype)
        self._over_images(N, nb, lambda worker, n0, n1: self._input_tiles(worker, x, n0, n1, 0, PH, PW, TH, TW, V))
        return V

    def _over_images(self, N: int, nb: int, body: Any) -> None:
        """Run ``body(worker, n0, n1)`` over the batch's chunks of ``nb`` images in parallel."""
        _threads.parallel_for(lambda worker, task: body(worker, task * nb, min(N, (task + 1) * nb)), _ceil_div(N, nb))

    def _per_tile_position(self, a: Any, b: Any, out: Any) -> None:
        """out[xi] = a[xi] @ b[xi] for the 16 tile positions, one task (one BLAS call) each."""
        _threads.parallel_for(
            lambda worker, xi: numpy.matmul(a[xi], b[xi], out=out[xi]), 16, max_threads=self._gemm_threads()
        )

    def _winograd_conv(self, x: Any, weight: Any, bias: Any, PH: int, PW: int, relu: bool = False) -> Any:
        """``conv2d(x, weight, bias)`` for a 3 x 3 stride-1 weight (O, C, 3, 3) and padding (PH, PW), as F(2x2, 3x3)
        in chunks of images: input tiles V (16, tiles, C), 16 GEMMs M = V @ U, output tiles into (N, O, OH, OW)
        (batch-wide for few tiles per chunk, see :meth:`_winograd_batched`); as F(4x4, 3x3) where
        :meth:`_winograd4_applies` (:meth:`_winograd4_conv`)."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
        x = numpy.ascontiguousarray(x)
        has_bias = bias is not None
        b = numpy.ascontiguousarray(bias, dtype=dtype) if has_bias else numpy.zeros(1, dtype=dtype)
        if self._winograd4_applies(N, C, O, OH, OW):
            return self._winograd4_conv(x, weight, b, has_bias, PH, PW, relu)
        TH, TW, nb = self._winograd_tiles(N, C, O, OH, OW, x.itemsize)
        U = self._winograd_weight(numpy.ascontiguousarray(weight, dtype=dtype))[0]  # (16, C, O)
        out = numpy.empty((N, O, OH, OW), dtype=dtype)

        def output(worker: int, M: Any, n0: int, n1: int, first: int) -> None:
            yt = self._buffer(worker, "wino_y", (2 * TW * O,), dtype)
            _wino.output_tiles(M[1], M[2], n0, n1, first, TH, TW, b, has_bias, bool(relu), yt, out)

        if self._winograd_batched(N, C, O, TH, TW, nb, x.itemsize):
            V = self._winograd_batch_input(x, nb, PH, PW, TH, TW)
            M = self._wino_planes(None, "", N * TH * TW, O, dtype)
            self._per_tile_position(V[0], U, M[0])
            del V
            self._over_images(N, nb, lambda worker, n0, n1: output(worker, M, n0, n1, 0))
            return out

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            V = self._winograd_input(worker, x, n0, n1, PH, PW, TH, TW)
            M = self._wino_planes(worker, "wino_m", V[0].shape[1], O, dtype)
            numpy.matmul(V[0], U, out=M[0])
            output(worker, M, n0, n1, n0)

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out

    def _winograd_weight_gradient(self, x: Any, dout: Any, w_shape: tuple[int, ...], PH: int, PW: int) -> Any:
        """dW of :meth:`_winograd_conv` (the adjoint of its U): per chunk of images, V = input tiles of x (as in the
        forward), dM = A dY A^T of the output gradient's tiles, dU += V_xi^T @ dM_xi (16 GEMMs); then
        dW = G^T dU G. Each chunk (or fixed group of chunks, for big layers) keeps its dU partial sum, added in order
        (thread-count independent); batch-wide (see :meth:`_winograd_batched`), one GEMM per xi over all tiles."""
        N, C, H, W = x.shape
        O, dtype = w_shape[0], x.dtype
        OH, OW = dout.shape[2], dout.shape[3]
        TH, TW, nb = self._winograd_tiles(N, C, O, OH, OW, x.itemsize)
        x, dout = numpy.ascontiguousarray(x), numpy.ascontiguousarray(dout, dtype=dtype)

        def gradient_tiles(worker: int, dM: Any, n0: int, n1: int, first: int) -> None:
            yt = self._buffer(worker, "wino_dy", (4 * TW * O,), dtype)
            _wino.output_gradient_tiles(dout, n0, n1, first, TH, TW, yt, dM[1], dM[2])

        dU = self._wino_planes(None, "", C, O, dtype)
        if self._winograd_batched(N, C, O, TH, TW, nb, x.itemsize):
            V = self._winograd_batch_input(x, nb, PH, PW, TH, TW)
            dM = self._wino_planes(None, "", N * TH * TW, O, dtype)
            self._over_images(N, nb, lambda worker, n0, n1: gradient_tiles(worker, dM, n0, n1, 0))
            self._per_tile_position(V[0].transpose(0, 2, 1), dM[0], dU[0])
            return self._winograd_weight_from(dU, w_shape)
        chunks = _ceil_div(N, nb)
        # one dU partial sum per chunk, or per fixed group of chunks when they would need more than _DW_BYTES
        groups = self._split(chunks, max(1, min(chunks, _DW_BYTES // (16 * C * O * x.itemsize))))
        dU_parts = numpy.zeros((max(len(groups), 1), 16, C, O), dtype=dtype)

        def body(worker: int, group: int) -> None:
            for chunk in range(*groups[group]):
                n0, n1 = chunk * nb, min(N, (chunk + 1) * nb)
                V = self._winograd_input(worker, x, n0, n1, PH, PW, TH, TW)
                dM = self._wino_planes(worker, "wino_m", V[0].shape[1], O, dtype)
                gradient_tiles(worker, dM, n0, n1, n0)
                if chunk == groups[group][0]:
                    numpy.matmul(V[0].transpose(0, 2, 1), dM[0], out=dU_parts[group])
                else:
                    part = self._buffer(worker, "wino_du", (16, C, O), dtype)
                    numpy.matmul(V[0].transpose(0, 2, 1), dM[0], out=part)
                    dU_parts[group] += part

        _threads.parallel_for(body, len(groups), max_threads=self._gemm_threads())
        total = dU[0]
        numpy.copyto(total, dU_parts[0])
        for part in dU_parts[1:]:
            total += part
        return self._winograd_weight_from(dU, w_shape)

    # ------------------------------------------------------------------ Winograd F(4x4, 3x3) (_numba_winograd4.py)
    def _winograd4_applies(self, N: int, C: int, O: int, OH: int, OW: int) -> bool:
        """Whether a Winograd convolution (see :meth:`_winograd_applies`) uses 4 x 4 output tiles: with
        ``self.winograd_tile == 4``, outputs of at least _WINOGRAD4_MIN_SIZE in both directions (on smaller ones the
        6 x 6 tiles are mostly padding), _WINOGRAD4_MIN_CHANNELS in and out (with fewer, the GEMMs F(4x4, 3x3)
        saves are too small a part of the time to pay for its bigger transforms) and _WINOGRAD4_MIN_TILES tiles in
        the batch (with fewer, its bigger weight transform, done at every call, costs more than the GEMMs save: 8
        images of 8 x 8 at 256 channels ran 1.9x slower). Shapes only decide."""
        tiles = N * _ceil_div(OH, 4) * _ceil_div(OW, 4)
        return (
            self.winograd_tile == 4
            and min(OH, OW) >= _WINOGRAD4_MIN_SIZE
            and min(C, O) >= _WINOGRAD4_MIN_CHANNELS
            and tiles >= _WINOGRAD4_MIN_TILES
        )

    def _winograd4_conv(self, x: Any, weight: Any, b: Any, has_bias: bool, PH: int, PW: int, relu: bool) -> Any:
        """:meth:`_winograd_conv` with F(4x4, 3x3): per chunk of images, input tiles V (36, tiles, C), 36 GEMMs
        M = V @ U, output tiles into (N, O, OH, OW)."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
        TH, TW = _ceil_div(OH, 4), _ceil_div(OW, 4)
        per_image = 36 * TH * TW * (C + O) * x.itemsize
        nb = min(max(1, _CHUNK_BYTES // per_image), max(1, N // _MIN_CHUNKS))
        weight = numpy.ascontiguousarray(weight, dtype=dtype)
        U = self._wino_planes(None, "", C, O, dtype, 36)
        blocks = self._channel_tasks(C)
        _threads.parallel_for(lambda worker, i: _wino4.transform_weight(weight, *blocks[i], U[1], U[2]), len(blocks))
        out = numpy.empty((N, O, OH, OW), dtype=dtype)

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            V = self._wino_planes(worker, "wino_v", (n1 - n0) * TH * TW, C, dtype, 36)
            xt = self._buffer(worker, "wino_x", ((4 * TH + 2) * 4 * (TW + 1) * C,), dtype)
            t = self._buffer(worker, "wino_t", (40 * TW * max(C, O),), dtype)
            _wino4.input_tiles(x, n0, n1, n0, PH, PW, TH, TW, xt, t, V[1], V[2])
            M = self._wino_planes(worker, "wino_m", (n1 - n0) * TH * TW, O, dtype, 36)
            numpy.matmul(V[0], U[0], out=M[0])
            _wino4.output_tiles(M[1], M[2], n0, n1, n0, TH, TW, b, has_bias, bool(relu), t, out)

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out
