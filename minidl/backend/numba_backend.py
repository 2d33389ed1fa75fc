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
  ``conv2d_forward_fused``, ``..._backward_fused``  im2col + GEMM over the whole batch (``conv.py``, groups 1;
                                                  three algorithms in ``_numba_conv.py``)
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

Convolution (im2row chunks, Winograd's F(2x2, 3x3), 1 x 1 products): see ``_numba_conv.py``.

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
    from minidl.backend._numba_conv import ConvKernelsMixin
    from minidl.backend._numba_elementwise import ElementwiseKernelsMixin
    from minidl.backend._numba_norm import NormKernelsMixin
except ImportError as err:  # numba missing (or broken)
    raise ImportError(
        f"the 'numba' backend needs Numba (fast CPU kernels): pip install numba (a dependency of minidl); "
        f"meanwhile use minidl.set_backend('numpy'). ({err})"
    ) from err

__all__ = ["NumbaBackend"]

_WORKSPACE_BYTES = 64 << 20  # scratch buffers larger than this are allocated per call instead of kept
_FLAT_CHUNK = 1 << 16  # elements per task of the elementwise kernels


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


class NumbaBackend(ConvKernelsMixin, NormKernelsMixin, ElementwiseKernelsMixin, NumpyBackend):
    """NumPy arrays with compiled kernels, run in parallel by :mod:`minidl.backend._threads`.

    Its first convolution limits BLAS to one thread per call (the convolution GEMMs run inside the backend's own
    worker threads; see :mod:`minidl.backend._threads`).
    """

    name = "numba"
    xp: Any = numpy
    device = "cpu"

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
    # one flat pass each, run by ElementwiseKernelsMixin._elementwise like every other activation
    @_native_dtypes
    def relu_forward(self, x: Any) -> tuple[Any, Any]:
        """``(out, mask)`` with ``mask = ~(x <= 0)`` (True for x > 0 and NaN) and ``out = where(mask, x, 0)``, the
        reference's two passes in one."""
        out, mask = self._elementwise(_k.relu_forward, (x,), (), (x.dtype, bool))
        return out, mask

    @_native_dtypes
    def relu_backward(self, dout: Any, mask: Any) -> Any:
        """``dout`` where ``mask``, else 0."""
        return self._elementwise(_k.relu_backward, (dout, mask), (), (dout.dtype,))[0]

    @_native_dtypes
    def add_relu_forward(self, a: Any, b: Any) -> tuple[Any, Any]:
        """``relu_forward(a + b)`` (``(out, mask)``) for two arrays of the same shape and dtype, in one pass."""
        out, mask = self._elementwise(_k.add_relu_forward, (a, b), (), (a.dtype, bool))
        return out, mask
