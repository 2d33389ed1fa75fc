"""The Numba backend: NumPy arrays with compiled hot loops, for fast CPU training (the default when Numba is installed).

Notation (as in ``numpy_backend.py``):
    N: batch size.  C: channels.  H, W: input height and width.
    KH, KW: kernel height and width.  SH, SW: strides.  PH, PW: zero padding on each side.
    DH, DW: dilation.  OH, OW: output height and width, OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1.
    O: output channels.  K = C KH KW.  OHW = OH OW.

Arrays are plain NumPy arrays (``xp`` is ``numpy``), so models, optimizers and data move freely between this backend
and the NumPy reference. What changes is who runs the kernels:

* ``kernels``, the table at the end of this file: the pairs of :mod:`minidl.nn.functional` this backend replaces,
  each a :class:`~minidl.backend.numpy_backend.KernelPair` of methods with the reference pair's arguments (after the
  result of its setup, the validation the reference runs first). The reference in ``minidl/nn`` stays the code
  you read; ``tests/backend/test_kernels.py`` runs every entry against it. Only this table connects the two (see
  :mod:`minidl.nn.dispatch`): nothing in ``minidl/nn`` looks for a kernel by name.

  =====================================  ==================================================================
  ops                                    kernels
  =====================================  ==================================================================
  ``conv2d``, ``conv2d_relu``,           im2row chunks, Winograd F(2x2, 3x3) and F(4x4, 3x3), 1 x 1
  ``conv2d_relu6``,                      products, grouped GEMMs, depthwise loops (``_numba_conv.py``); the
  ``conv2d_add_relu``                    ReLU or ReLU6 (and a residual) in the output pass
  ``max_pool2d``, ``avg_pool2d``,        compiled window loops, parallel over planes (``_numba_pool.py``);
  ``adaptive_avg_pool2d``                global average pooling one sum per plane
  ``batch_norm``, ``batch_norm_relu``,   statistics + normalize + affine (+ ReLU or ReLU6) in one pass per
  ``batch_norm_relu6``                   channel; the backward from x, mask recomputed (``_numba_batchnorm.py``;
                                         channels last: ``_numba_batchnorm_cl.py``)
  ``batch_norm_add_relu``                channels last only: the residual and the ReLU in the normalize pass
                                         (``_numba_batchnorm_cl.py``); other inputs run the reference
  ``layer_norm``, ``group_norm``,        per-row statistics + normalize + affine in one pass
  ``instance_norm``                      (``_numba_norm.py``)
  ``add``, ``relu``, ``add_relu``,       one pass each (``_numba_elementwise.py``, with vectorizable
  ``leaky_relu``, ``hardtanh``,          exp/erfc/tanh from ``_numba_math.py``)
  ``hardswish``, ``sigmoid``, ``tanh``,
  ``elu``, ``silu``, ``gelu``,
  ``softplus``, ``mish``
  ``softmax``                            along the last dimension, rows in parallel: max, exp and sum, divide
                                         (``_numba_softmax.py``)
  ``scaled_dot_product_attention``       the (batch, head) slices' products and softmax in the pool's
                                         workers, without mask or dropout (``_numba_softmax.py``)
  ``linear``                             the one GEMM in blocks of rows and columns (dW: of output
                                         features), in the pool's workers (BLAS holds one thread per call)
  =====================================  ==================================================================

Convolution (im2row chunks, Winograd's F(2x2, 3x3) and F(4x4, 3x3), 1 x 1 products): see ``_numba_conv.py``.

Memory format: given a ``channels_last`` input (:mod:`minidl.memory_format`), these kernels read it as it lies (a
pixel's channels one run) and return a ``channels_last`` output: ``conv2d``, ``conv2d_relu``, ``conv2d_relu6``,
``conv2d_add_relu`` (direct 3 x 3, im2row, Winograd, 1 x 1, depthwise with one filter per channel; not other
grouped ones nor an uneven ``'same'`` padding; dx laid out as x), ``batch_norm``, ``batch_norm_relu``,
``batch_norm_relu6``, ``batch_norm_add_relu``, the elementwise ops when every input is (``add``, ``relu``, ``add_relu``,
``gelu``, ...), ``max_pool2d`` with a 2 x 2 window and stride 2, and ``adaptive_avg_pool2d`` to 1 x 1. Other kernels
copy it to C order first.

Threads: see :mod:`minidl.backend._threads` (one pool of workers, the GEMMs inside them, BLAS held to one thread).
A Winograd chunk runs its transforms and its GEMMs in one compiled call, calling NumPy's OpenBLAS from the kernel
(``_numba_blas.py``; ``MINIDL_KERNEL_GEMM=0``, or another BLAS, runs the steps one by one from Python: the same bits).

Memory: creating the backend tells glibc's malloc to keep freed memory for reuse (see :func:`_keep_freed_memory`;
``MINIDL_MALLOC_TUNING=0`` turns it off), which saves the page faults of a fresh activation every layer. This is a
process-wide setting; the README says so.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from types import MappingProxyType
from typing import Any

import numpy

from minidl.backend import _threads
from minidl.backend._numba_common import _ceil_div, _native_dtypes
from minidl.backend.numpy_backend import KernelPair, NumpyBackend

try:
    from minidl.backend import _numba_kernels as _k
    from minidl.backend._numba_batchnorm import BatchNormKernelsMixin
    from minidl.backend._numba_batchnorm_rows import BatchNormRowsMixin
    from minidl.backend._numba_conv import ConvKernelsMixin, autotune_from_environment
    from minidl.backend._numba_elementwise import ElementwiseKernelsMixin
    from minidl.backend._numba_norm import NormKernelsMixin
    from minidl.backend._numba_pool import PoolKernelsMixin
    from minidl.backend._numba_softmax import AttentionKernelsMixin, SoftmaxKernelsMixin
except ImportError as err:  # numba missing (or broken)
    raise ImportError(
        f"the 'numba' backend needs Numba (fast CPU kernels): pip install numba (a dependency of minidl); "
        f"meanwhile use minidl.set_backend('numpy'). ({err})"
    ) from err

__all__ = ["NumbaBackend"]

_WORKSPACE_BYTES = 64 << 20  # scratch buffers larger than this are allocated per call instead of kept
_FLAT_CHUNK = 1 << 16  # elements per task of the elementwise kernels
_LINEAR_TASKS = 8  # the linear kernels cut x (and dout) into this many blocks of rows ...
_LINEAR_MIN_ROWS = 32  # ... of at least this many rows (and blocks of columns for fewer blocks: _linear_tiles)
_LINEAR_COLUMNS = 64  # the least columns of a block of columns, and rows of dW per task of the backward
_LINEAR_MIN_WORK = 1 << 18  # the least multiply-adds of a block (of rows or columns)


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


class NumbaBackend(
    ConvKernelsMixin,
    PoolKernelsMixin,
    BatchNormKernelsMixin,
    BatchNormRowsMixin,
    NormKernelsMixin,
    ElementwiseKernelsMixin,
    SoftmaxKernelsMixin,
    AttentionKernelsMixin,
    NumpyBackend,
):
    """NumPy arrays with compiled kernels, run in parallel by :mod:`minidl.backend._threads`.

    Its first convolution (or Linear) limits BLAS to one thread per call (the convolution and Linear GEMMs run
    inside the backend's own worker threads; see :mod:`minidl.backend._threads`).
    """

    name = "numba"
    xp: Any = numpy
    device = "cpu"

    def __init__(self) -> None:
        self._parallel_gemm: bool | None = None  # set by the first convolution or linear (see _gemm_threads)
        self._workspace: dict[tuple[Any, ...], Any] = {}
        self._autotune = autotune_from_environment()  # the convolutions' algorithm choice (_numba_conv.py)
        self._autotuned: dict[tuple[Any, ...], tuple[str, dict[str, float]]] = {}
        _keep_freed_memory()
        self.kernels = self._kernel_table()

    def _kernel_table(self) -> Any:
        """The pairs of :mod:`minidl.nn.functional` this backend replaces: op name -> :class:`KernelPair` (forward,
        backward, and the cases it takes). Every entry is tested against its reference pair
        (``tests/backend/test_kernels.py``)."""
        table = {
            "conv2d": KernelPair(self._conv2d_forward, self._conv2d_backward),
            "conv2d_relu": KernelPair(self._conv2d_relu_forward, self._conv2d_relu_backward, self._conv2d_relu_accepts),
            "conv2d_relu6": KernelPair(
                self._conv2d_relu6_forward, self._conv2d_relu6_backward, self._conv2d_relu_accepts
            ),
            "conv2d_add_relu": KernelPair(
                self._conv2d_add_relu_forward, self._conv2d_add_relu_backward, self._conv2d_add_relu_accepts
            ),
            "max_pool2d": KernelPair(self._max_pool2d_forward, self._max_pool2d_backward),
            "avg_pool2d": KernelPair(self._avg_pool2d_forward, self._avg_pool2d_backward),
            "adaptive_avg_pool2d": KernelPair(self._adaptive_avg_pool2d_forward, self._adaptive_avg_pool2d_backward),
            "batch_norm": KernelPair(self._batch_norm_forward, self._batch_norm_backward, self._batch_norm_accepts),
            "batch_norm_relu": KernelPair(
                self._batch_norm_relu_forward, self._batch_norm_backward, self._batch_norm_accepts
            ),
            "batch_norm_relu6": KernelPair(
                self._batch_norm_relu6_forward, self._batch_norm_backward, self._batch_norm_accepts
            ),
            "batch_norm_add_relu": KernelPair(
                self._batch_norm_add_relu_forward, self._batch_norm_add_relu_backward, self._batch_norm_add_relu_accepts
            ),
            "layer_norm": KernelPair(self._layer_norm_forward, self._layer_norm_backward, self._norm_accepts),
            "group_norm": KernelPair(self._group_norm_forward, self._group_norm_backward, self._norm_accepts),
            "instance_norm": KernelPair(
                self._instance_norm_forward, self._instance_norm_backward, self._instance_norm_accepts
            ),
            "relu": KernelPair(self._relu_forward, self._relu_backward),
            "add": KernelPair(self._add_forward, self._add_backward),
            "add_relu": KernelPair(self._add_relu_forward, self._relu_backward),
            "leaky_relu": KernelPair(self._leaky_relu_forward, self._leaky_relu_backward),
            "hardtanh": KernelPair(self._hardtanh_forward, self._hardtanh_backward),
            "hardswish": KernelPair(self._hardswish_forward, self._hardswish_backward),
            "sigmoid": KernelPair(self._sigmoid_forward, self._sigmoid_backward),
            "tanh": KernelPair(self._tanh_forward, self._tanh_backward),
            "elu": KernelPair(self._elu_forward, self._elu_backward),
            "silu": KernelPair(self._silu_forward, self._silu_backward),
            "gelu": KernelPair(self._gelu_forward, self._gelu_backward),
            "softplus": KernelPair(self._softplus_forward, self._softplus_backward),
            "mish": KernelPair(self._mish_forward, self._mish_backward),
            "softmax": KernelPair(self._softmax_forward, self._softmax_backward, self._softmax_accepts),
            "scaled_dot_product_attention": KernelPair(
                self._attention_forward, self._attention_backward, self._attention_accepts, shares=("attn_weights",)
            ),
            "linear": KernelPair(self._linear_forward, self._linear_backward),
        }
        return MappingProxyType(table)

    def _gemm_threads(self) -> int | None:
        """Threads for a region that calls BLAS: all of them once BLAS is held to one thread per call (done at the
        first convolution or linear, not at import); 1 if BLAS cannot be limited (then BLAS keeps its own threads)."""
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

    def _add_in_order(self, parts: Any) -> Any:
        """parts[0] + parts[1] + ... added one after the other (a new array, parts[0]'s shape): the kernels' per-chunk
        partial sums (dW) are added in chunk order, and the chunks depend on the shapes only, so the total does not
        depend on which thread computed what (``parts.sum(axis=0)`` would pair them differently). Slices of the
        total run on the pool's threads (:func:`~minidl.backend._numba_kernels.add_parts_in_order`), each value's sum
        the same in any thread (NumPy's ``total += part``, one part at a time on one thread, took 2-3 ms of a
        ResNet-20 step on the 2-core Intel guest of ``benchmarks/README.md``)."""
        flat = numpy.ascontiguousarray(parts).reshape(parts.shape[0], -1)
        out = numpy.empty(flat.shape[1], dtype=parts.dtype)
        self._flat(_k.add_parts_in_order, out.size, (flat,), (out,))
        return out.reshape(parts.shape[1:])

    @staticmethod
    def _split(total: int, parts: int) -> list[tuple[int, int]]:
        """``total`` items cut into ``parts`` contiguous, nearly equal, non-empty ranges."""
        parts = max(1, min(parts, total))
        return [(total * i // parts, total * (i + 1) // parts) for i in range(parts)]

    def _channel_tasks(self, C: int) -> list[tuple[int, int]]:
        return self._split(C, 4 * _threads.get_num_threads())

    # ------------------------------------------------------------------ linear (nn/linear.py)
    # The reference is one GEMM, out = x_2d @ W^T, which OpenBLAS would run on its own threads; but once the backend
    # holds BLAS to one thread per call (its first convolution: see _threads.py), that GEMM runs on one core. These
    # kernels cut the same products into blocks of rows and columns (dW into blocks of output features)
    # and run them in the pool's workers, one BLAS thread each, as the convolutions do. The blocks depend on the
    # shapes only, so the results do not depend on the thread count.
    @staticmethod
    def _linear_tiles(rows: int, columns: int, inner: int) -> tuple[int, int]:
        """The blocks of a (rows, inner) @ (inner, columns) product, (rows per task, columns per task): up to
        _LINEAR_TASKS blocks of at least _LINEAR_MIN_WORK multiply-adds each (smaller ones cost more to hand out than
        to run). The rows are cut into blocks of at least _LINEAR_MIN_ROWS (a batch of 128 images: 4 blocks of 32);
        where that makes fewer blocks than wanted (a few rows: a small batch, a single vector), each block's columns
        are cut too, into blocks of at least _LINEAR_COLUMNS."""
        tasks = max(1, min(_LINEAR_TASKS, rows * columns * inner // _LINEAR_MIN_WORK))
        row_tasks = max(1, min(tasks, rows // _LINEAR_MIN_ROWS))
        column_tasks = max(1, min(_ceil_div(tasks, row_tasks), columns // _LINEAR_COLUMNS))
        return max(1, _ceil_div(rows, row_tasks)), max(1, _ceil_div(columns, column_tasks))

    def _linear_product(
        self, a: Any, b: Any, out: Any, bias: Any = None, extra: int = 0, extra_task: Any = None
    ) -> None:
        """``out = a @ b (+ bias)`` in the blocks of :meth:`_linear_tiles` in parallel, one BLAS call each, and
        ``extra`` more tasks (``extra_task(worker, i)``, i < extra) in the same parallel loop."""
        rows, columns = out.shape
        row_block, column_block = self._linear_tiles(rows, columns, a.shape[1])
        column_tasks = _ceil_div(columns, column_block)
        tiles = _ceil_div(rows, row_block) * column_tasks

        def body(worker: int, task: int) -> None:
            if task >= tiles:
                extra_task(worker, task - tiles)
                return
            r, c = divmod(task, column_tasks)
            r0, r1 = r * row_block, min(rows, (r + 1) * row_block)
            c0, c1 = c * column_block, min(columns, (c + 1) * column_block)
            numpy.matmul(a[r0:r1], b[:, c0:c1], out=out[r0:r1, c0:c1])
            if bias is not None:
                out[r0:r1, c0:c1] += bias[c0:c1]

        _threads.parallel_for(body, tiles + extra, max_threads=self._gemm_threads())

    def _linear_forward(self, rows: int, x: Any, weight: Any, bias: Any = None) -> tuple[Any, Any]:
        """``(x_2d @ W^T + b, (x, weight, has_bias))``, in blocks in parallel (``rows``: the setup's M)."""
        out_features, in_features = weight.shape
        x2 = numpy.ascontiguousarray(x).reshape(rows, in_features)
        out = numpy.empty((rows, out_features), dtype=numpy.result_type(x, weight))
        self._linear_product(x2, weight.T, out, bias)
        return out.reshape(*x.shape[:-1], out_features), (x, weight, bias is not None)

    def _linear_backward(
        self, dout: Any, cache: Any, *, weight_grad: bool = True, bias_grad: bool = True
    ) -> tuple[Any, Any, Any]:  # fmt: skip
        """``(dx, dw, db)`` of :meth:`_linear_forward`: dx = G W in the blocks of :meth:`_linear_tiles`, dW = G^T X
        in blocks of _LINEAR_COLUMNS output features or more (_LINEAR_MIN_WORK; each block its own rows of dW: no
        partial sums), all in one parallel loop; db = G summed over rows (NumPy)."""
        x, weight, has_bias = cache
        out_features, in_features = weight.shape
        rows = math.prod(x.shape[:-1])
        g = numpy.ascontiguousarray(dout).reshape(rows, out_features)
        x2 = numpy.ascontiguousarray(x).reshape(rows, in_features)
        dx = numpy.empty((rows, in_features), dtype=numpy.result_type(dout, weight))
        dw = numpy.empty((out_features, in_features), dtype=numpy.result_type(dout, x)) if weight_grad else None

        block = max(_LINEAR_COLUMNS, _ceil_div(_LINEAR_MIN_WORK, max(rows * in_features, 1)))

        def weight_block(worker: int, i: int) -> None:
            o0, o1 = i * block, min(out_features, (i + 1) * block)
            numpy.matmul(g[:, o0:o1].T, x2, out=dw[o0:o1])

        self._linear_product(
            g, weight, dx, extra=_ceil_div(out_features, block) if weight_grad else 0, extra_task=weight_block
        )
        db = g.sum(axis=0) if has_bias and bias_grad else None
        return dx.reshape(x.shape), dw, db

    # ------------------------------------------------------------------ im2col / col2im (compiled)
    @_native_dtypes
    def _im2col(self, x: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int) -> Any:
        """:meth:`NumpyBackend.im2col`'s columns ((C KH KW, N OHW)), compiled, parallel over channels (for grouped
        convolutions, see ``_numba_conv.py``)."""
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
    def _col2im(
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
        """:meth:`NumpyBackend.col2im` (the adjoint of im2col), compiled, parallel over channels."""
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
