r"""The Numba backend's softmax kernels: ``softmax`` along the last dimension, rows in parallel.

The reference (``minidl/nn/activation_softmax.py``) computes, for each row x of D values along ``dim``,

.. math:: p_i = e^{x_i - m} / \sum_j e^{x_j - m}, \quad m = \max_j x_j; \qquad
          dx_i = p_i \big(dout_i - \textstyle\sum_j dout_j p_j\big)

as whole-array NumPy operations, on one core: a max, a subtraction, an exp, a sum and a division, each a pass over
memory (attention's weights in ``vit_cifar``, 128 x 4 heads x 65 x 65 values: 4.9 ms). Here the same formulas run
row by row: per row one pass for the max, one that computes e^{x_i - m} (with :func:`_exp_le0`, vectorized: x - m <= 0)
into the output while summing it, one that divides; the backward one pass for the sum and one for dx. The rows are
cut into tasks of about _FLAT_CHUNK values, run by the backend's thread pool.

The sums run in float64 (the reference's in the array's dtype; reassociated, so that they vectorize: ``_REDUCE``),
the quotient and dx in the array's dtype. NaN and
infinities come out where the reference's do: a NaN or +inf in a row (or a row all -inf) makes the whole row NaN, as
x - m is NaN somewhere and so is the sum; -inf entries of a finite row get 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from minidl.backend import _threads
from minidl.backend._numba_common import _ceil_div, _native_dtypes
from minidl.backend._numba_kernels import _REDUCE, _u
from minidl.backend._numba_math import _exp_le0

_ROW_CHUNK = 1 << 16  # values per task (whole rows, at least one)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REDUCE)
def softmax_rows(x, r0, r1, out):
    """out[r] = exp(x[r] - max x[r]) / sum exp(x[r] - max x[r]) for rows [r0, r1) of x (R, D)."""
    D = _u(x.shape[1])
    xf, of = x.reshape(-1), out.reshape(-1)
    for r in range(r0, r1):
        s = _u(r) * D
        m = xf[s]
        for i in range(D):  # the max (a NaN is not > m: it comes through x - m below)
            v = xf[s + i]
            m = v if v > m else m
        total = 0.0  # float64
        for i in range(D):
            e = _exp_le0(xf[s + i] - m)
            of[s + i] = e
            total += e
        t = of.dtype.type(total)
        for i in range(D):
            of[s + i] = of[s + i] / t


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REDUCE)
def softmax_rows_backward(p, dout, r0, r1, dx):
    """dx[r] = p[r] (dout[r] - sum(dout[r] p[r])) for rows [r0, r1) of p (R, D)."""
    D = _u(p.shape[1])
    pf, gf, df = p.reshape(-1), dout.reshape(-1), dx.reshape(-1)
    for r in range(r0, r1):
        s = _u(r) * D
        total = 0.0  # float64
        for i in range(D):
            total += gf[s + i] * pf[s + i]
        t = df.dtype.type(total)
        for i in range(D):
            df[s + i] = pf[s + i] * (gf[s + i] - t)


class SoftmaxKernelsMixin:
    """The ``softmax`` entry of the backend's kernel table: :meth:`_softmax_forward`, :meth:`_softmax_backward`,
    :meth:`_softmax_accepts`."""

    _split: Any  # NumbaBackend's helper

    def _row_chunks(self, R: int, D: int) -> list[tuple[int, int]]:
        """Rows [r0, r1) per task: about _ROW_CHUNK values each (shapes only decide)."""
        return self._split(R, max(1, min(R, _ceil_div(R * D, _ROW_CHUNK))))

    @staticmethod
    def _softmax_accepts(x: Any, dim: Any = -1) -> bool:
        """Floating, non-empty, along the last dimension (a bad ``dim`` is accepted: the setup then names it)."""
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.size == 0 or x.ndim == 0:
            return False
        try:
            return int(dim) % x.ndim == x.ndim - 1
        except (TypeError, ValueError, OverflowError):  # (OverflowError: int(float("inf")))
            return True

    @_native_dtypes
    def _softmax_forward(self, prepared: Any, x: Any, dim: Any = -1) -> tuple[Any, Any]:
        """``(p, p)``: the softmax of every row of x along its last dimension; the cache is p (as the reference's)."""
        D = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, D)
        out = np.empty_like(x2)
        tasks = self._row_chunks(x2.shape[0], D)
        _threads.parallel_for(lambda worker, k: softmax_rows(x2, *tasks[k], out), len(tasks))
        p = out.reshape(x.shape)
        return p, p

    @_native_dtypes
    def _softmax_backward(self, dout: Any, cache: Any) -> Any:
        """dx = p (dout - sum(dout p)) along the last dimension."""
        p = cache
        D = p.shape[-1]
        p2 = p.reshape(-1, D)
        g2 = np.ascontiguousarray(dout, dtype=p.dtype).reshape(-1, D)
        dx = np.empty_like(p2)
        tasks = self._row_chunks(p2.shape[0], D)
        _threads.parallel_for(lambda worker, k: softmax_rows_backward(p2, g2, *tasks[k], dx), len(tasks))
        return dx.reshape(p.shape)
