"""The Numba backend: NumPy arrays with compiled hot loops, for fast CPU training (the default when Numba is installed).

Notation (as in ``numpy_backend.py``):
    N: batch size.  C: channels.  H, W: input height and width.
    KH, KW: kernel height and width.  SH, SW: strides.  PH, PW: zero padding on each side.
    DH, DW: dilation.  OH, OW: output height and width, OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1.
    O: output channels.  K = C KH KW.  OHW = OH OW.

Arrays are plain NumPy arrays (``xp`` is ``numpy``), so models, optimizers and data move freely between this backend
and the NumPy reference. What changes is who runs the kernels:

* The reference kernels of :class:`~minidl.backend.numpy_backend.NumpyBackend`, same signatures, compiled
  (``_numba_kernels.py``): ``im2col``/``col2im``, max and average pooling forward/backward.
* Fused kernels the layers look up with ``getattr(backend, name, None)`` and use instead of their NumPy code (which
  stays in the layer file as the reference they are tested against):

  ==============================================  ==========================================================
  kernel                                          replaces (in ``minidl/nn``)
  ==============================================  ==========================================================
  ``conv2d_forward_fused``, ``..._backward_fused``  im2col + GEMM over the whole batch (``conv.py``, groups 1)
  ``batch_norm_train``, ``batch_norm_apply``      statistics + normalize + affine (+ ReLU) (``normalization.py``)
  ``batch_norm_backward_fused``                   the BatchNorm (+ ReLU) backward, from x instead of a cached xhat
  ``relu_forward``, ``relu_backward``             ``mask = ~(x <= 0)``, ``where(mask, x, 0)``, ``dout * mask``
                                                  (``activation.py``), each in one pass
  ``add_relu_forward``                            ``relu_forward(a + b)``, the end of a residual block
                                                  (``containers.py``)
  ``layer_norm_fused``, ``group_norm_fused``      per-sample norms: statistics + normalize + affine, and their
  (+ ``..._backward_fused``)                      backward (``normalization_group.py``; InstanceNorm as G = C;
                                                  kernels in ``_numba_norm.py``)
  ``leaky_relu_forward``, ``elu_forward``, ...    every other activation's forward and backward in one pass
                                                  (``activation.py``, ``activation_smooth.py``; kernels in
                                                  ``_numba_elementwise.py``, with vectorizable exp/erfc/tanh
                                                  from ``_numba_math.py``)
  ``softmax_cross_entropy_rows`` (+ ``_backward``)  CrossEntropyLoss with class-index targets, row by row
                                                  (``loss.py``)
  ==============================================  ==========================================================

Convolution. The reference builds one (C KH KW, N OHW) column matrix for the whole batch (151 MB for the second
layer of ``cifar_cnn`` at batch 128) and keeps it for the backward pass. The fused kernel loops over chunks of a few
images (about 2 MB of columns, at least 16 chunks per batch): *im2row* of the chunk (the transposed layout, one row
per output pixel, K ordered (kh, kw, c): built from a channels-last copy of each image, each kernel row is one
contiguous run) into a per-thread buffer that stays in the core's cache, one GEMM ``rows @ W_row^T`` (NumPy's
matmul, i.e. BLAS; with the long dimension first OpenBLAS runs it near its peak), and a transposed copy into the
(N, O, OH, OW) output. Backward rebuilds each chunk's rows (cheap next to the two GEMMs) for
dW_row += dout_chunk @ rows, then drows = dout_chunk^T @ W_row and row2im into dx. Only x is cached. Each chunk
keeps its own dW partial sum (a fixed group of chunks does, for a big weight), added in order at the end, and the
chunking depends on the shapes only, so results do not depend on the number of threads.

Winograd. A 3 x 3 stride-1 convolution with 8 or more channels in and out (every 3 x 3 layer of the CIFAR ResNets
but the first) runs instead as Winograd's F(2x2, 3x3) (``_numba_winograd.py``): 16 GEMMs of (tiles, C) @ (C, O)
with 2.25x fewer multiplications than im2row, and no patch matrix. For 16 channels this halves the time of the
layer: the im2row GEMM there has only 16 output columns and runs at a third of the core's peak. Its backward takes dx
the same way (a stride-1 3 x 3 convolution of dout with the flipped filters) and dW from im2row chunks. The results
differ from im2row's by float32 roundings; ``backend.winograd = False`` goes back to im2row for every convolution.

Threads: see :mod:`minidl.backend._threads` (one pool of workers, the GEMMs inside them, BLAS held to one thread).

Memory: creating the backend tells glibc's malloc to keep freed memory for reuse (see :func:`_keep_freed_memory`;
``MINIDL_MALLOC_TUNING=0`` turns it off), which saves the page faults of a fresh activation every layer.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from typing import Any

import numpy

from minidl.backend import _threads
from minidl.backend._numba_common import _ceil_div, _native_dtypes
from minidl.backend.numpy_backend import NumpyBackend

try:
    from minidl.backend import _numba_kernels as _k
    from minidl.backend import _numba_winograd as _wino
    from minidl.backend._numba_elementwise import ElementwiseKernelsMixin
    from minidl.backend._numba_norm import NormKernelsMixin
except ImportError as err:  # numba missing (or broken)
    raise ImportError(
        f"the 'numba' backend needs Numba (fast CPU kernels): pip install numba (a dependency of minidl); "
        f"meanwhile use minidl.set_backend('numpy'). ({err})"
    ) from err

__all__ = ["NumbaBackend"]

_CHUNK_BYTES = 1 << 21  # target size of one chunk's im2row buffer: about a core's L2 cache
_WORKSPACE_BYTES = 64 << 20  # scratch buffers larger than this are allocated per call instead of kept
_SMALL_O_BLOCK = 256  # rows per backward GEMM call when O <= 16 (measured: the best block for such thin GEMMs)
_FLAT_CHUNK = 1 << 16  # elements per task of the elementwise kernels
_MIN_CHUNKS = 16  # chunks a batch is cut into at least (when it has that many images)
_DW_BYTES = 32 << 20  # memory for the per-chunk dW partial sums (chunks are grouped when they would need more)
_WINOGRAD_MIN_CHANNELS = 8  # Winograd convolutions need this many input and output channels (see _winograd_applies)


def _keep_freed_memory() -> bool:
    """Let glibc's malloc reuse the memory of freed activations instead of returning it to the OS (Linux only).

    Every layer allocates its output (MBs) and older ones are freed. By default glibc serves such blocks with a fresh
    ``mmap`` and unmaps them on ``free``, so every new array takes a page fault per 4 KiB page when first written:
    about 5,000 per training step of ``cifar_cnn`` or ``resnet20``. Here blocks up to 32 MB come from the heap
    (``M_MMAP_THRESHOLD``) and freed heap memory is kept for reuse (``M_TRIM_THRESHOLD``): no page faults after the
    first step, 1-15% less CPU time per step, the same peak RSS; the process keeps its peak memory until it exits.
    This changes malloc for the whole process; ``MINIDL_MALLOC_TUNING=0`` (before the backend is created) leaves it
    alone. Returns whether it was done.
    """
    if os.environ.get("MINIDL_MALLOC_TUNING", "").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


class NumbaBackend(NormKernelsMixin, ElementwiseKernelsMixin, NumpyBackend):
    """NumPy arrays with compiled kernels, run in parallel by :mod:`minidl.backend._threads`.

    Its first convolution limits BLAS to one thread per call (the convolution GEMMs run inside the backend's own
    worker threads; see :mod:`minidl.backend._threads`).
    """

    name = "numba"
    xp: Any = numpy
    device = "cpu"

    #: run 3 x 3 stride-1 convolutions as Winograd's F(2x2, 3x3) (see ``_numba_winograd.py``); False: im2row + GEMM
    winograd: bool = True

    def __init__(self) -> None:
        self._parallel_gemm: bool | None = None  # set by the first convolution (see _gemm_threads)
        self._workspace: dict[tuple[Any, ...], Any] = {}
        #: whether glibc's malloc was told to keep freed memory (see _keep_freed_memory)
        self.malloc_tuned = _keep_freed_memory()

    def _gemm_threads(self) -> int | None:
        """Threads for a region that calls BLAS: all of them once BLAS is held to one thread per call (done at the
        first convolution, not at import); 1 if BLAS cannot be limited (then BLAS keeps its own threads)."""
        if self._parallel_gemm is None:
            self._parallel_gemm = _threads.set_blas_num_threads(_threads.blas_threads_wanted())
        return None if self._parallel_gemm else 1

    # ------------------------------------------------------------------ helpers
    def _buffer(self, worker: int, tag: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A scratch array of ``shape`` private to ``worker``, reused across calls (grown when too small).

        Only temporaries that never leave a kernel call live here (columns of a chunk, a GEMM result), so reuse is
        safe: one parallel region runs at a time and each worker number is one thread inside it.
        """
        key = (worker, tag, numpy.dtype(dtype).str)
        size = math.prod(shape)
        if size * numpy.dtype(dtype).itemsize > _WORKSPACE_BYTES:  # a huge image: not worth keeping around
            return numpy.empty(shape, dtype=dtype)
        buf = self._workspace.get(key)
        if buf is None or buf.size < size:
            buf = numpy.empty(max(size, 1), dtype=dtype)
            self._workspace[key] = buf
        return buf[:size].reshape(shape)

    def _flat(self, kernel: Any, size: int, inputs: tuple[Any, ...], outputs: tuple[Any, ...]) -> None:
        """Run an elementwise ``kernel(*inputs, i0, i1, *outputs)`` over ``size`` flat elements in parallel."""

        def body(worker: int, task: int) -> None:
            i0 = task * _FLAT_CHUNK
            kernel(*inputs, i0, min(size, i0 + _FLAT_CHUNK), *outputs)

        _threads.parallel_for(body, _ceil_div(size, _FLAT_CHUNK))

    @staticmethod
    def _split(total: int, parts: int) -> list[tuple[int, int]]:
        """``total`` items cut into ``parts`` contiguous, nearly equal, non-empty ranges."""
        parts = max(1, min(parts, total))
        return [(total * i // parts, total * (i + 1) // parts) for i in range(parts)]

    def _channel_tasks(self, C: int) -> list[tuple[int, int]]:
        return self._split(C, 4 * _threads.get_num_threads())

    # ------------------------------------------------------------------ im2col / col2im (reference signatures)
    @_native_dtypes
    def im2col(self, x: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int) -> Any:
        """Same as :meth:`NumpyBackend.im2col` ((C KH KW, N OHW) columns), compiled, parallel over channels."""
        N, C, H, W = x.shape
        OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
        OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        x = numpy.ascontiguousarray(x)
        cols = numpy.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            c0, c1 = tasks[task]
            _k.im2col(x, 0, N, c0, c1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, cols)

        _threads.parallel_for(body, len(tasks))
        return cols

    @_native_dtypes
    def col2im(
        self,
        cols: Any,
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
        """Same as :meth:`NumpyBackend.col2im` (the adjoint of im2col), compiled, parallel over channels."""
        N, C, H, W = x_shape
        OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
        OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        cols = numpy.ascontiguousarray(cols)
        dx = numpy.empty((N, C, H, W), dtype=cols.dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            c0, c1 = tasks[task]
            _k.col2im(cols, 0, N, c0, c1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, dx)

        _threads.parallel_for(body, len(tasks))
        return dx

    # ------------------------------------------------------------------ fused convolution (groups == 1)
    def _images_per_chunk(self, N: int, K: int, OHW: int, itemsize: int) -> int:
        """Images per chunk: the im2row buffer near _CHUNK_BYTES, and at least _MIN_CHUNKS chunks when possible (to
        share them among threads). It does not depend on the thread count, so neither do the results."""
        by_cache = max(1, _CHUNK_BYTES // max(1, K * OHW * itemsize))
        return min(by_cache, max(1, N // _MIN_CHUNKS))

    @_native_dtypes
    def conv2d_forward_fused(
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
    def conv2d_backward_fused(
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
        """``(dx, dw)`` of :meth:`conv2d_forward_fused` (``dw`` None when not ``compute_dw``); the bias gradient is
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
        # 2 - P): Winograd's, when it applies; the chunks below then only compute dW
        winograd_dx = self._winograd_applies(O, C, KH, KW, SH, SW, 2 - PH, 2 - PW, DH, DW)
        if winograd_dx:
            w_flip = numpy.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            dx = self._winograd_conv(numpy.ascontiguousarray(dout), w_flip, None, 2 - PH, 2 - PW)
            if not compute_dw:
                return dx, None
        else:
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
                if winograd_dx:
                    continue
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
        """Whether a convolution runs as Winograd's F(2x2, 3x3): 3 x 3, stride 1, no dilation, padding 0 to 2 (what
        the backward's dx convolution needs), and at least ``_WINOGRAD_MIN_CHANNELS`` channels in and out (with
        fewer, the 16 small GEMMs do not pay for the transforms). ``self.winograd = False`` turns it off."""
        return (
            self.winograd
            and (KH, KW, SH, SW, DH, DW) == (3, 3, 1, 1, 1, 1)
            and 0 <= PH <= 2
            and 0 <= PW <= 2
            and min(C, O) >= _WINOGRAD_MIN_CHANNELS
        )

    def _winograd_conv(self, x: Any, weight: Any, bias: Any, PH: int, PW: int, relu: bool = False) -> Any:
        """``conv2d(x, weight, bias)`` for a 3 x 3 stride-1 weight (O, C, 3, 3) and padding (PH, PW), as F(2x2, 3x3)
        in chunks of images: input tiles V (16, tiles, C), 16 GEMMs M = V @ U, output tiles into (N, O, OH, OW)."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
        TH, TW = _ceil_div(OH, 2), _ceil_div(OW, 2)
        x = numpy.ascontiguousarray(x)
        U = numpy.empty((16, C, O), dtype=dtype)
        _wino.transform_weight(numpy.ascontiguousarray(weight, dtype=dtype), U)
        has_bias = bias is not None
        b = numpy.ascontiguousarray(bias, dtype=dtype) if has_bias else numpy.zeros(1, dtype=dtype)
        out = numpy.empty((N, O, OH, OW), dtype=dtype)
        per_image = 16 * TH * TW * (C + O) * x.itemsize  # bytes of V and M for one image
        nb = min(max(1, _CHUNK_BYTES // per_image), max(1, N // _MIN_CHUNKS))

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            T = (n1 - n0) * TH * TW
            xt = self._buffer(worker, "wino_x", ((2 * TH + 2) * 2 * (TW + 1) * C,), dtype)
            V = self._buffer(worker, "wino_v", (16, T, C), dtype)
            _wino.input_tiles(x, n0, n1, PH, PW, TH, TW, xt, V)
            M = self._buffer(worker, "wino_m", (16, T, O), dtype)
            numpy.matmul(V, U, out=M)
            yt = self._buffer(worker, "wino_y", (2 * TW * O,), dtype)
            _wino.output_tiles(M, n0, n1, TH, TW, b, has_bias, bool(relu), yt, out)

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out

    # ------------------------------------------------------------------ pooling (reference signatures)
    def _planes(self, P: int) -> list[tuple[int, int]]:
        return self._split(P, 4 * _threads.get_num_threads())

    @_native_dtypes
    def max_pool2d_forward(
        self, x: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int, OH: int, OW: int
    ) -> tuple[Any, Any]:
        """Same as :meth:`NumpyBackend.max_pool2d_forward` (out, int32 argmax offsets), compiled."""
        N, C, H, W = x.shape
        x3 = numpy.ascontiguousarray(x).reshape(N * C, H, W)
        out = numpy.empty((N * C, OH, OW), dtype=x.dtype)
        argmax = numpy.empty((N * C, OH, OW), dtype=numpy.int32)
        tasks = self._planes(N * C)

        common = (KH, KW, SH, SW, PH, PW, DH, DW) == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * OH <= H and 2 * OW <= W

        def body(worker: int, task: int) -> None:
            if common:  # a kernel compiled for this window (see _numba_kernels.max_pool2d_forward_2x2)
                _k.max_pool2d_forward_2x2(x3, *tasks[task], out, argmax)
            else:
                _k.max_pool2d_forward(x3, *tasks[task], KH, KW, SH, SW, PH, PW, DH, DW, out, argmax)

        _threads.parallel_for(body, len(tasks))
        return out.reshape(N, C, OH, OW), argmax.reshape(N, C, OH, OW)

    @_native_dtypes
    def max_pool2d_backward(
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
        """Same as :meth:`NumpyBackend.max_pool2d_backward`, compiled."""
        N, C, H, W = x_shape
        OH, OW = dout.shape[2], dout.shape[3]
        dout3 = numpy.ascontiguousarray(dout).reshape(N * C, OH, OW)
        argmax3 = numpy.ascontiguousarray(argmax).reshape(N * C, OH, OW)
        dx = numpy.empty((N * C, H, W), dtype=dout.dtype)
        tasks = self._planes(N * C)

        common = (KH, KW, SH, SW, PH, PW, DH, DW) == (2, 2, 2, 2, 0, 0, 1, 1) and 2 * OH <= H and 2 * OW <= W

        def body(worker: int, task: int) -> None:
            if common:
                _k.max_pool2d_backward_2x2(dout3, argmax3, *tasks[task], dx)
            else:
                _k.max_pool2d_backward(dout3, argmax3, *tasks[task], KH, KW, SH, SW, PH, PW, DH, DW, dx)

        _threads.parallel_for(body, len(tasks))
        return dx.reshape(N, C, H, W)

    @_native_dtypes
    def avg_pool2d_forward(
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
            _k.avg_pool2d_forward(x3, *tasks[task], KH, KW, SH, SW, PH, PW, divisor, out)

        _threads.parallel_for(body, len(tasks))
        return out.reshape(N, C, OH, OW)

    @_native_dtypes
    def avg_pool2d_backward(
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
            _k.avg_pool2d_backward(dout3, *tasks[task], KH, KW, SH, SW, PH, PW, divisor, dx)

        _threads.parallel_for(body, len(tasks))
        return dx.reshape(N, C, H, W)

    # ------------------------------------------------------------------ batch norm (fused; see normalization.py)
    @staticmethod
    def _ncs(a: Any) -> Any:
        """(N, C, *) as a contiguous (N, C, S) view."""
        a = numpy.ascontiguousarray(a)
        return a.reshape(a.shape[0], a.shape[1], -1)

    @_native_dtypes
    def batch_norm_train(
        self, x: Any, gamma: Any, beta: Any, eps: float, relu: bool = False
    ) -> tuple[Any, Any, Any, Any]:
        """Batch normalization with the batch's statistics over every axis but 1 of (N, C, *) ``x``.

        Returns:
            ``(out, mean, var, inv_std)``: out = (x - mean) * inv_std * gamma + beta (gamma, beta (C,) or None;
            then relu(out) with ``relu``), the (C,) mean and biased variance (accumulated in float64) and
            inv_std = 1 / sqrt(var + eps), all in x's dtype.
        """
        x3 = self._ncs(x)
        C, dtype = x3.shape[1], x.dtype
        out = numpy.empty(x3.shape, dtype=dtype)
        mean, var, inv_std = (numpy.empty(C, dtype=dtype) for _ in range(3))
        g, b = self._affine_vectors(gamma, beta, dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            _k.batch_norm_train(
                x3, g, b, gamma is not None, beta is not None, float(eps), bool(relu), *tasks[task],
                out, mean, var, inv_std,
            )  # fmt: skip

        _threads.parallel_for(body, len(tasks))
        return out.reshape(x.shape), mean, var, inv_std

    @_native_dtypes
    def batch_norm_apply(self, x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, relu: bool = False) -> Any:
        """``out = (x - mean) * inv_std * gamma + beta`` per channel (axis 1) of (N, C, *) ``x`` (then relu(out)
        with ``relu``); the (C,) vectors gamma/beta may be None."""
        x3 = self._ncs(x)
        C, dtype = x3.shape[1], x.dtype
        out = numpy.empty(x3.shape, dtype=dtype)
        g, b = self._affine_vectors(gamma, beta, dtype)
        mean, inv_std = numpy.ascontiguousarray(mean, dtype), numpy.ascontiguousarray(inv_std, dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            _k.batch_norm_apply(
                x3, mean, inv_std, g, b, gamma is not None, beta is not None, bool(relu), *tasks[task], out
            )

        _threads.parallel_for(body, len(tasks))
        return out.reshape(x.shape)

    @_native_dtypes
    def batch_norm_backward_fused(
        self, dout: Any, x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, training: bool, relu: bool = False
    ) -> tuple[Any, Any, Any]:
        """``(dx, dgamma, dbeta)`` of ``out = (x - mean) inv_std gamma + beta`` (None for an absent gamma/beta);
        with ``training`` the statistics are the batch's (the full BatchNorm backward), else constants. With
        ``relu`` the forward's output was relu(out) and ``dout`` its gradient (the mask is recomputed from x)."""
        x3, dout3 = self._ncs(x), self._ncs(dout)
        C, dtype = x3.shape[1], dout.dtype
        dx = numpy.empty(x3.shape, dtype=dtype)
        dgamma = numpy.empty(C, dtype=dtype)
        dbeta = numpy.empty(C, dtype=dtype)
        g, b = self._affine_vectors(gamma, beta, dtype)
        mean, inv_std = numpy.ascontiguousarray(mean, dtype), numpy.ascontiguousarray(inv_std, dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            _k.batch_norm_backward(
                dout3, x3, mean, inv_std, g, b, gamma is not None, beta is not None, bool(training), bool(relu),
                *tasks[task], dx, dgamma, dbeta,
            )  # fmt: skip

        _threads.parallel_for(body, len(tasks))
        return dx.reshape(x.shape), (dgamma if gamma is not None else None), (dbeta if beta is not None else None)

    @staticmethod
    def _affine_vectors(gamma: Any, beta: Any, dtype: Any) -> tuple[Any, Any]:
        """gamma and beta as contiguous arrays of ``dtype`` (a 1-element placeholder for an absent one)."""
        one = numpy.ones(1, dtype=dtype)
        g = one if gamma is None else numpy.ascontiguousarray(gamma, dtype)
        b = one if beta is None else numpy.ascontiguousarray(beta, dtype)
        return g, b

    # ------------------------------------------------------------------ relu (see activation.py)
    @_native_dtypes
    def relu_forward(self, x: Any) -> tuple[Any, Any]:
        """``(out, mask)`` with ``mask = ~(x <= 0)`` (True for x > 0 and NaN) and ``out = where(mask, x, 0)``, the
        reference's two passes in one."""
        xc = numpy.ascontiguousarray(x)
        out = numpy.empty(xc.shape, dtype=x.dtype)
        mask = numpy.empty(xc.shape, dtype=bool)
        self._flat(_k.relu_forward, xc.size, (xc.reshape(-1),), (out.reshape(-1), mask.reshape(-1)))
        return out, mask

    @_native_dtypes
    def relu_backward(self, dout: Any, mask: Any) -> Any:
        """``dout`` where ``mask``, else 0."""
        d = numpy.ascontiguousarray(dout)
        m = numpy.ascontiguousarray(mask)
        dx = numpy.empty(d.shape, dtype=dout.dtype)
        self._flat(_k.relu_backward, d.size, (d.reshape(-1), m.reshape(-1)), (dx.reshape(-1),))
        return dx

    @_native_dtypes
    def add_relu_forward(self, a: Any, b: Any) -> tuple[Any, Any]:
        """``relu_forward(a + b)`` (``(out, mask)``) for two arrays of the same shape and dtype, in one pass."""
        ac, bc = numpy.ascontiguousarray(a), numpy.ascontiguousarray(b)
        out = numpy.empty(ac.shape, dtype=ac.dtype)
        mask = numpy.empty(ac.shape, dtype=bool)
        self._flat(_k.add_relu_forward, ac.size, (ac.reshape(-1), bc.reshape(-1)), (out.reshape(-1), mask.reshape(-1)))
        return out, mask
