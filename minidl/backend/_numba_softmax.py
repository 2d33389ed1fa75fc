r"""The Numba backend's softmax kernels: ``softmax`` along the last dimension, rows in parallel; and
``scaled_dot_product_attention``, whose weights are a softmax (:class:`SoftmaxKernelsMixin`, last section).

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

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from minidl.backend import _threads
from minidl.backend._numba_common import _ceil_div, _native_dtypes
from minidl.backend._numba_kernels import _REDUCE, _u
from minidl.backend._numba_math import _exp_le0

_ROW_CHUNK = 1 << 16  # values per task (whole rows, at least one)


def _tasks(split: Any, count: int, each: int) -> list[tuple[int, int]]:
    """[start, end) ranges of ``count`` items (rows, slices) of ``each`` values: about _ROW_CHUNK values per task,
    at least one item. Shapes only decide (so do the results)."""
    return split(count, max(1, min(count, _ceil_div(count * each, _ROW_CHUNK))))


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
        tasks = _tasks(self._split, x2.shape[0], D)
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
        tasks = _tasks(self._split, p2.shape[0], D)
        _threads.parallel_for(lambda worker, k: softmax_rows_backward(p2, g2, *tasks[k], dx), len(tasks))
        return dx.reshape(p.shape)


# ---------------------------------------------------------------------------------------------------- attention
class AttentionCache(NamedTuple):
    """The attention kernel's cache. ``attn_weights`` keeps the reference cache's name for the same values (P, of
    the reference's shape): :class:`~minidl.nn.MultiheadAttention` reads it for ``need_weights``, through the
    :class:`~minidl.nn.dispatch.KernelCache` (the kernel's ``shares``; the other fields are the kernel's own: query,
    key and value flattened, scale in the arrays' dtype)."""

    query: Any  # (B, L, E), the leading dimensions flattened into B, C-contiguous; likewise key, value
    key: Any
    value: Any
    attn_weights: Any  # P, (..., L, S)
    scale: Any  # in the arrays' dtype
    shapes: tuple[tuple[int, ...], ...]  # the query's, key's and value's shapes


class AttentionKernelsMixin:
    """The ``scaled_dot_product_attention`` entry of the backend's kernel table. The reference
    (``minidl/nn/attention_pairs.py``) computes A = scale Q K^T, P = softmax(A), O = P V with NumPy's stacked
    products, one slice of the leading (batch, head) dimensions after the other on one core (BLAS is held to one
    thread per call). Here the slices are cut into tasks that the thread pool runs, each task the same products on its
    slices (one BLAS call per slice, as NumPy's) and the softmax of their rows (:func:`softmax_rows`); the backward
    likewise: dV = P^T dO, dP = dO V^T, dA = scale P (dP - rowsum(dP P)) (:func:`softmax_rows_backward`), dQ = dA K,
    dK = dA^T Q. Without a mask, dropout or grouped heads only (:meth:`_attention_accepts`): those run the reference.
    """

    _split: Any  # NumbaBackend's helpers
    _buffer: Any
    _gemm_threads: Any

    @staticmethod
    def _attention_accepts(
        query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: Any = 0.0, is_causal: Any = False,
        scale: Any = None, enable_gqa: Any = False,
    ) -> bool:  # fmt: skip
        """Floating, non-empty arrays, no mask (nor ``is_causal``), no dropout, no grouped heads. (Arguments the setup
        rejects are accepted: it then names them.)"""
        arrays = (query, key, value)
        if not all(isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size > 0 for a in arrays):
            return False
        if attn_mask is not None or is_causal is not False or enable_gqa is not False:
            return False
        try:
            return float(dropout_p) == 0.0
        except (TypeError, ValueError, OverflowError):
            return True

    def _transposed(self, worker: int, tag: str, a: Any) -> Any:
        """``a`` (b, m, n) as a C-contiguous (b, n, m) in the worker's scratch: NumPy's stacked matmul of a transposed
        view does not hand the transposition to BLAS (512 products of 65 x 32 by 32 x 65: 2.67 ms against 1.45 with a
        contiguous copy, one core), so the kernels copy it first."""
        t = self._buffer(worker, tag, (a.shape[0], a.shape[2], a.shape[1]), a.dtype)
        np.copyto(t, a.transpose(0, 2, 1))
        return t

    @_native_dtypes
    def _attention_forward(self, prepared: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        """``(out, AttentionCache)``: softmax(scale Q K^T) V over the last two dimensions of each slice."""
        _, _, scale, _ = prepared  # (mask, dropout_p, scale, groups) from the setup
        L, E, S = query.shape[-2], query.shape[-1], key.shape[-2]
        q, k = np.ascontiguousarray(query).reshape(-1, L, E), np.ascontiguousarray(key).reshape(-1, S, E)
        v = np.ascontiguousarray(value).reshape(-1, S, value.shape[-1])
        alpha = q.dtype.type(scale)
        p = np.empty((q.shape[0], L, S), dtype=q.dtype)
        out = np.empty((q.shape[0], L, v.shape[-1]), dtype=q.dtype)
        tasks = _tasks(self._split, q.shape[0], L * S)  # slices of L S scores

        def body(worker: int, task: int) -> None:
            b0, b1 = tasks[task]
            a = self._buffer(worker, "attention_a", (b1 - b0, L, S), q.dtype)
            np.matmul(q[b0:b1], self._transposed(worker, "attention_kt", k[b0:b1]), out=a)
            a *= alpha  # A = scale Q K^T, as the reference rounds it
            rows = a.reshape(-1, S)
            # P into its own array: softmax_rows in place would run scalar (LLVM vectorizes its loops only where the
            # input and output do not overlap; in place 3x slower)
            softmax_rows(rows, 0, rows.shape[0], p[b0:b1].reshape(-1, S))
            np.matmul(p[b0:b1], v[b0:b1], out=out[b0:b1])

        _threads.parallel_for(body, len(tasks), max_threads=self._gemm_threads())
        shapes = (query.shape, key.shape, value.shape)
        cache = AttentionCache(q, k, v, p.reshape(*query.shape[:-1], S), alpha, shapes)
        return out.reshape(*query.shape[:-1], v.shape[-1]), cache

    def _attention_backward(self, dout: Any, cache: Any) -> tuple[Any, Any, Any]:
        """``(dquery, dkey, dvalue)`` of :meth:`_attention_forward`."""
        return self._attention_backward_arrays(dout, *cache)

    @_native_dtypes  # (on the cache's arrays too: it sees only top-level arguments)
    def _attention_backward_arrays(
        self, dout: Any, q: Any, k: Any, v: Any, weights: Any, alpha: Any, shapes: Any
    ) -> tuple[Any, Any, Any]:
        B, L, S = q.shape[0], q.shape[1], k.shape[1]
        p = weights.reshape(B, L, S)
        g = np.ascontiguousarray(dout, dtype=q.dtype).reshape(B, L, v.shape[-1])
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        tasks = _tasks(self._split, B, L * S)

        def body(worker: int, task: int) -> None:
            b0, b1 = tasks[task]
            np.matmul(self._transposed(worker, "attention_pt", p[b0:b1]), g[b0:b1], out=dv[b0:b1])  # dV = P^T dO
            dp = self._buffer(worker, "attention_a", (b1 - b0, L, S), q.dtype)
            np.matmul(g[b0:b1], self._transposed(worker, "attention_vt", v[b0:b1]), out=dp)  # dP = dO V^T
            da = self._buffer(worker, "attention_da", (b1 - b0, L, S), q.dtype)
            p_rows = p[b0:b1].reshape(-1, S)
            softmax_rows_backward(p_rows, dp.reshape(-1, S), 0, p_rows.shape[0], da.reshape(-1, S))  # P (dP - ...)
            da *= alpha  # dA
            np.matmul(da, k[b0:b1], out=dq[b0:b1])  # dQ = dA K
            np.matmul(self._transposed(worker, "attention_pt", da), q[b0:b1], out=dk[b0:b1])  # dK = dA^T Q

        _threads.parallel_for(body, len(tasks), max_threads=self._gemm_threads())
        return dq.reshape(shapes[0]), dk.reshape(shapes[1]), dv.reshape(shapes[2])
