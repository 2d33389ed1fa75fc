"""GEMMs from inside the compiled kernels: NumPy's own BLAS, called by a Numba kernel without the GIL.

Why. A chunk of a Winograd convolution is three steps: the input transform (a Numba kernel), 16 or 36 GEMMs (BLAS)
and the output transform (Numba). Run from Python, as ``_numba_winograd_conv.py`` first did, each step gives up the
GIL and takes it back, and the Python between the steps needs it. With two threads, a thread whose step has ended
waits for the GIL while the other runs its Python, and a thread woken for the GIL starts some 20 us later on a
virtual machine: tasks of a few hundred microseconds lose a good part of their time. The chunk kernels
(``forward_chunk`` and ``weight_gradient_chunk`` in ``_numba_winograd.py`` and ``_numba_winograd4.py``) run the
three steps in one call instead, and call the GEMMs themselves through the function :func:`cblas_gemm` returns,
passed in as an argument (a ctypes function: Numba calls it directly, and the compiled kernels stay cached on disk,
since the function's address is an argument rather than a constant).

Measured (2 threads, AMD Zen 4 guest, F(4x4, 3x3) forward, ``channels_last``, median ms, the three steps from
Python against one kernel call): batch 128 16 channels at 32 x 32 2.62 -> 2.59, 32 at 16 x 16 1.61 -> 1.54, 64 at
8 x 8 1.35 -> 1.25; batch 8 0.44 -> 0.27, 0.39 -> 0.25, 0.45 -> 0.40 (at batch 8 two threads were slower than one,
0.36 ms at 16 channels, and are now faster). The GEMMs are the same calls NumPy makes (``numpy.matmul`` of
C-contiguous float32 / float64 matrices calls ``cblas_sgemm`` / ``cblas_dgemm`` row-major), so the results are
the same bits; but for a matrix of one row NumPy calls the matrix-vector product (``cblas_?gemv``), which adds in
another order, so the drivers run a chunk of a single tile step by step from Python.

Which BLAS. Only the OpenBLAS of NumPy's wheels (``scipy_openblas``, in NumPy's own ``numpy.libs`` folder), whose
symbols say the width of their integer arguments: ``scipy_cblas_sgemm64_`` takes 64-bit integers (NumPy's default
build), ``scipy_cblas_sgemm`` 32-bit ones (``scipy-openblas32``). With another BLAS (MKL, Accelerate, a system
OpenBLAS whose integer width its name does not say, SciPy's copy), or with ``MINIDL_KERNEL_GEMM=0``, :func:`cblas_gemm`
returns None and the drivers run the steps from Python as before. A small product is checked against
``numpy.matmul`` before the function is used (a wrong integer width would crash rather than fail it: the names are
what guarantee the width).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np
from numba import njit

from minidl.backend import _threads

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # the CBLAS enums
_SYMBOLS = (("scipy_cblas_{}gemm64_", ctypes.c_int64), ("scipy_cblas_{}gemm", ctypes.c_int))
_found: dict[str, Any] = {}


def cblas_gemm(dtype: Any) -> Any:
    """NumPy's ``cblas_sgemm`` (float32) or ``cblas_dgemm`` (float64) as a ctypes function for :func:`gemm_planes`,
    or None: another dtype, no such function found (see the module docstring) or ``MINIDL_KERNEL_GEMM=0``."""
    setting = os.environ.get("MINIDL_KERNEL_GEMM", "").strip()
    if setting not in ("", "0", "1"):
        raise ValueError(f"MINIDL_KERNEL_GEMM must be 0 or 1, got {setting!r}")
    if setting == "0":
        return None
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        return None
    if dtype.char not in _found:
        _found[dtype.char] = _load(dtype)
    return _found[dtype.char]


def _load(dtype: np.dtype) -> Any:
    blas = _threads._openblas()
    numpy_libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    if blas is None or os.path.dirname(blas[3]) != numpy_libs or "scipy_openblas" not in os.path.basename(blas[3]):
        return None
    lib = ctypes.CDLL(blas[3])
    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    for pattern, integer in _SYMBOLS:
        fn = getattr(lib, pattern.format("s" if dtype == np.float32 else "d"), None)
        if fn is None:
            continue
        fn.restype = None
        pointer = ctypes.c_void_p  # (order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
        fn.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [real, pointer, integer, pointer, integer]
        fn.argtypes += [real, pointer, integer]
        a = np.arange(6, dtype=dtype).reshape(2, 3)
        b = np.arange(12, dtype=dtype).reshape(3, 4) - 5
        c = np.zeros((2, 4), dtype=dtype)
        fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, 2, 4, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 4, 0.0, c.ctypes.data, 4)
        return fn if np.array_equal(c, a @ b) else None
    return None


@njit(cache=True, nogil=True)
def gemm_planes(gemm, count, trans_a, M, N, K, A, a_plane, B, b_plane, C, c_plane):
    """C_i = op(A_i) @ B_i for the ``count`` planes i of flat arrays (plane i of A starts at A[i a_plane], likewise
    B and C), each a C-contiguous matrix: A_i (M, K), or with ``trans_a`` (K, M) used transposed; B_i (K, N);
    C_i (M, N); by ``gemm``, a :func:`cblas_gemm` of their dtype (row-major, as ``numpy.matmul`` calls it for M > 1).
    Nothing is checked here (no dtype, no bounds): the callers pass arrays of ``gemm``'s dtype that hold the planes."""
    size = A.itemsize
    a, b, c = A.ctypes.data, B.ctypes.data, C.ctypes.data
    lda = M if trans_a else K
    for i in range(count):
        gemm(
            _ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _NO_TRANS, M, N, K, 1.0, a + i * a_plane * size, lda,
            b + i * b_plane * size, N, 0.0, c + i * c_plane * size, N,
        )  # fmt: skip


@njit(cache=True, nogil=True)
def gemm_planes_sum(gemm, count, M, N, K, A, a_plane, B, b_plane, total, scratch, first):
    """A chunk's share of a weight gradient summed over chunks: P_i = A_i^T @ B_i for the ``count`` planes (A_i
    (K, M) used transposed, B_i (K, N), as :func:`gemm_planes` takes them), written into ``total`` (``count``
    contiguous (M, N) matrices) for the ``first`` chunk of a group, else into ``scratch`` (the same shape) and added
    to ``total``: what ``numpy.matmul(..., out=total)``, or ``numpy.matmul(..., out=scratch); total += scratch``,
    computes, the same bits."""
    if first:
        gemm_planes(gemm, count, True, M, N, K, A, a_plane, B, b_plane, total.reshape(-1), M * N)
        return
    gemm_planes(gemm, count, True, M, N, K, A, a_plane, B, b_plane, scratch.reshape(-1), M * N)
    tf, sf = total.reshape(-1), scratch.reshape(-1)
    for i in range(count * M * N):
        tf[i] += sf[i]
