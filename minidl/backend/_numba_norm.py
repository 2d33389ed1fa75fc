"""Per-sample normalization kernels of the Numba backend (LayerNorm, GroupNorm, InstanceNorm): a mixin of
:class:`~minidl.backend.numba_backend.NumbaBackend`.

Notation (as in ``minidl/nn/normalization_group.py``):
    N: batch size.  C: channels.  G: groups.  S: the flat spatial size of an (N, C, *) input.
    R: rows, the groups of values standardized together.  M: values per row.
    K: parameter slots per row (M = K S): a row's values come in K blocks of S, one gamma/beta entry per block.
    P: rows per sample with parameters of their own (1 for LayerNorm, whose rows all share gamma; G; C).

All three layers standardize the rows of x viewed as (R, M), then apply an affine map:

============  ========  ================  =====  ====  =================
layer         R         M                 K      S     gamma, beta
============  ========  ================  =====  ====  =================
LayerNorm     leading   prod(normalized)  M      1     elementwise (M,)
GroupNorm     N G       C / G S           C / G  S     per channel (C,)
InstanceNorm  N C       S                 1      S     per channel (C,)
============  ========  ================  =====  ====  =================

Block k of row r is scaled by gamma[c0 + k] and shifted by beta[c0 + k], c0 = (r mod P) K: the channels of group
r mod G for GroupNorm, channel r mod C for InstanceNorm, the whole elementwise gamma for LayerNorm.

Forward (one row at a time, its M values still in the core's cache when normalized): the mean and biased variance
from float64 sums of (x - s) and (x - s)^2 around a shift s (the row's first value, as in BatchNorm's kernel, so the
one-pass variance stays accurate when the mean is large next to the spread); inv_std = 1 / sqrt(var + eps);
out = (x - mean) inv_std gamma + beta. Only x and the per-row mean and inv_std are kept for the backward, which
rebuilds xhat = (x - mean) inv_std.

Backward: dxhat = dout gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over the row;
dgamma = sum(dout xhat), dbeta = sum(dout) over every row (and position) sharing the parameter. The parameter sums
are float64 partial sums, one per task of rows; the tasks follow from the shapes only and the partials are added in
task order, so the gradients do not depend on the number of threads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from minidl.backend import _threads
from minidl.backend._numba_common import _NATIVE, _native_dtypes
from minidl.backend._numba_kernels import _REDUCE, _u

_TASK_ELEMENTS = 1 << 16  # about this many values per task at least (fewer tasks for small inputs: less overhead)
_MAX_TASKS = 64  # tasks of rows at most (shared by the threads as they become free)
_PARTIAL_BYTES = 16 << 20  # memory for the per-task dgamma/dbeta partial sums (fewer tasks when they would need more)
_PARTIAL_RATIO = 8  # values per parameter slot in a task at least (LayerNorm: rows per task), so that the partial
# sums (two float64 per slot, zeroed and added up) stay small next to the task's rows


# ---------------------------------------------------------------------------------------------------- kernels
@njit(cache=True, nogil=True, fastmath=_REDUCE)
def _shifted_sums(xf, base, M, shift):
    """(sum(d), sum(d^2)) in float64 of d = x - shift over the M values xf[base : base + M] (base, M unsigned)."""
    s1 = 0.0
    s2 = 0.0
    for i in range(M):
        d = np.float64(xf[base + i]) - shift
        s1 += d
        s2 += d * d
    return s1, s2


@njit(cache=True, nogil=True)
def norm_rows_forward(x, gamma, beta, P, S, eps, r0, r1, out, mean, var, inv_std):
    """For rows [r0, r1) of x (R, M): the mean and biased variance of the row, inv_std = 1 / sqrt(var + eps), and
    out = (x - mean) inv_std gamma + beta, block k of row r scaled by gamma[(r mod P) K + k] (K = M / S).

    gamma and beta always exist here (ones and zeros stand in for absent ones: x 1 and + 0 change no value).
    A NaN or inf in a row makes its variance NaN (not clamped to 0), so the row comes out NaN like the reference's."""
    M = x.shape[1]
    K = M // S
    xf, of = x.reshape(-1), out.reshape(-1)
    for r in range(r0, r1):
        base = _u(r * M)
        shift = np.float64(xf[base])
        s1, s2 = _shifted_sums(xf, base, _u(M), shift)
        m = s1 / M
        v = s2 / M - m * m
        if v < 0.0:  # rounding; False for NaN, which must stay
            v = 0.0
        mean[r] = shift + m
        var[r] = v
        inv_std[r] = 1.0 / np.sqrt(v + eps)
        mr = mean[r]  # in x's dtype, like the reference's float32 math
        k = inv_std[r]
        c0 = (r % P) * K
        if S == 1:  # elementwise parameters (LayerNorm)
            for j in range(_u(M)):
                of[base + j] = (xf[base + j] - mr) * k * gamma[_u(c0) + j] + beta[_u(c0) + j]
        else:
            for b in range(K):
                g = gamma[c0 + b]
                h = beta[c0 + b]
                start = base + _u(b * S)
                for i in range(_u(S)):
                    of[start + i] = (xf[start + i] - mr) * k * g + h


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def norm_rows_backward(dout, x, mean, inv_std, gamma, P, S, r0, r1, dx, dgamma, dbeta):
    """dx for rows [r0, r1) of (R, M) arrays, and this task's float64 partial sums dgamma[c] += sum(dout xhat),
    dbeta[c] += sum(dout) over the values scaled by gamma[c] (c = (r mod P) K + block, as in the forward).

    xhat = (x - mean[r]) inv_std[r] is rebuilt from x; dxhat = dout gamma;
    dx = inv_std (dxhat - sum(dxhat)/M - xhat sum(dxhat xhat)/M). gamma is ones when the layer has none."""
    M = x.shape[1]
    K = M // S
    xf, gf, df = x.reshape(-1), dout.reshape(-1), dx.reshape(-1)
    for r in range(r0, r1):
        base = _u(r * M)
        m = mean[r]
        k = inv_std[r]
        c0 = (r % P) * K
        sum_dxhat = 0.0
        sum_dxhat_xhat = 0.0
        if S == 1:
            for j in range(_u(M)):
                g = gf[base + j]
                xhat = (xf[base + j] - m) * k
                dgamma[_u(c0) + j] += np.float64(g) * np.float64(xhat)
                dbeta[_u(c0) + j] += np.float64(g)
                dxhat = np.float64(g * gamma[_u(c0) + j])
                sum_dxhat += dxhat
                sum_dxhat_xhat += dxhat * np.float64(xhat)
        else:
            for b in range(K):
                start = base + _u(b * S)
                s_dout = 0.0
                s_dout_xhat = 0.0
                for i in range(_u(S)):
                    g = np.float64(gf[start + i])
                    s_dout += g
                    s_dout_xhat += g * np.float64((xf[start + i] - m) * k)
                dgamma[c0 + b] += s_dout_xhat
                dbeta[c0 + b] += s_dout
                gam = np.float64(gamma[c0 + b])
                sum_dxhat += gam * s_dout  # dxhat = dout gamma: gamma is constant over the block
                sum_dxhat_xhat += gam * s_dout_xhat
        a = dx.dtype.type(sum_dxhat / M)  # in x's dtype, like the reference's float32 math
        c = dx.dtype.type(sum_dxhat_xhat / M)
        if S == 1:
            for j in range(_u(M)):
                xhat = (xf[base + j] - m) * k
                df[base + j] = k * (gf[base + j] * gamma[_u(c0) + j] - a - xhat * c)
        else:
            for b in range(K):
                gam = gamma[c0 + b]
                start = base + _u(b * S)
                for i in range(_u(S)):
                    xhat = (xf[start + i] - m) * k
                    df[start + i] = k * (gf[start + i] * gam - a - xhat * c)


# ---------------------------------------------------------------------------------------------------- the mixin
class NormKernelsMixin:
    """The kernel pairs of the per-sample norms (entries of the backend's kernel table): ``layer_norm``,
    ``group_norm`` and ``instance_norm`` (group norm with G = C) replace the pairs of
    ``minidl/nn/normalization_group.py``, keeping x and the per-row mean and inv_std instead of xhat.
    """

    _split: Any  # NumbaBackend's helper

    def _row_tasks(self, R: int, M: int, slots: int) -> list[tuple[int, int]]:
        """Rows [r0, r1) per task: about _TASK_ELEMENTS values or more each, at most _MAX_TASKS, and partial sums of
        ``slots`` parameters within _PARTIAL_BYTES. Depends on the shapes only (so do the results)."""
        by_size = R * M // _TASK_ELEMENTS
        by_partials = min(R * M // (_PARTIAL_RATIO * slots), _PARTIAL_BYTES // (16 * slots)) if slots else R
        parts = max(1, min(_MAX_TASKS, by_size, by_partials))
        return self._split(R, parts)

    def _rows_forward(self, x2: Any, gamma: Any, beta: Any, P: int, S: int, eps: float) -> tuple[Any, ...]:
        """(out, mean, var, inv_std) of :func:`norm_rows_forward` over every row of contiguous x2 (R, M)."""
        R, M = x2.shape
        dtype = x2.dtype
        slots = P * (M // S)
        g = np.ones(slots, dtype=dtype) if gamma is None else np.ascontiguousarray(gamma, dtype=dtype).reshape(-1)
        b = np.zeros(slots, dtype=dtype) if beta is None else np.ascontiguousarray(beta, dtype=dtype).reshape(-1)
        out = np.empty((R, M), dtype=dtype)
        mean, var, inv_std = (np.empty(R, dtype=dtype) for _ in range(3))
        tasks = self._row_tasks(R, M, 0)

        def body(worker: int, task: int) -> None:
            norm_rows_forward(x2, g, b, P, S, float(eps), *tasks[task], out, mean, var, inv_std)

        _threads.parallel_for(body, len(tasks))
        return out, mean, var, inv_std

    def _rows_backward(
        self, dout2: Any, x2: Any, mean: Any, inv_std: Any, gamma: Any, has_beta: bool, P: int, S: int
    ) -> tuple[Any, Any, Any]:
        """(dx (R, M), dgamma (P K,) or None, dbeta (P K,) or None) of :func:`norm_rows_backward` over every row."""
        R, M = x2.shape
        dtype = dout2.dtype
        slots = P * (M // S)
        g = np.ones(slots, dtype=dtype) if gamma is None else np.ascontiguousarray(gamma, dtype=dtype).reshape(-1)
        mean = np.ascontiguousarray(mean, dtype=dtype).reshape(-1)
        inv_std = np.ascontiguousarray(inv_std, dtype=dtype).reshape(-1)
        dx = np.empty((R, M), dtype=dtype)
        tasks = self._row_tasks(R, M, slots)
        dgamma_parts = np.zeros((len(tasks), slots))  # float64 partial sums, one row per task; zeros: R = 0
        dbeta_parts = np.zeros((len(tasks), slots))

        def body(worker: int, task: int) -> None:
            norm_rows_backward(
                dout2, x2, mean, inv_std, g, P, S, *tasks[task], dx, dgamma_parts[task], dbeta_parts[task]
            )

        _threads.parallel_for(body, len(tasks))
        dgamma = dgamma_parts.sum(axis=0).astype(dtype) if gamma is not None else None
        dbeta = dbeta_parts.sum(axis=0).astype(dtype) if has_beta else None
        return dx, dgamma, dbeta

    @staticmethod
    def _norm_accepts(input: Any, *args: Any, **kwargs: Any) -> bool:
        """Not for an empty input (the reference handles it)."""
        return isinstance(input, np.ndarray) and input.size > 0

    @_native_dtypes
    def _layer_norm_forward(
        self, prepared: Any, input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5
    ) -> tuple[Any, Any]:
        """Layer normalization over the trailing ``prepared`` (the normalized shape, as a tuple) dimensions.

        Returns:
            ``(out, (x, mean, inv_std, gamma, has_beta, normalized_shape))``: out = (x - mean) inv_std gamma + beta,
            and the (R,) mean and inv_std = 1 / sqrt(var + eps) of each of the R = x.size / M rows.
        """
        shape = prepared
        M = math.prod(shape)
        x2 = np.ascontiguousarray(input).reshape(-1, M)
        out, mean, _, inv_std = self._rows_forward(x2, weight, bias, 1, 1, eps)
        return out.reshape(input.shape), (x2, mean, inv_std, weight, bias is not None, shape)

    def _layer_norm_backward(self, dout: Any, cache: Any) -> tuple[Any, Any, Any]:
        """``(dx, dweight, dbias)`` of :meth:`_layer_norm_forward` (None for an absent weight/bias)."""
        x2, mean, inv_std, gamma, has_beta, shape = cache
        dx, dgamma, dbeta = self._rows_backward_native(
            np.ascontiguousarray(dout).reshape(x2.shape), x2, mean, inv_std, gamma, has_beta, 1, 1
        )
        return (
            dx.reshape(dout.shape),
            None if dgamma is None else dgamma.reshape(shape),
            None if dbeta is None else dbeta.reshape(shape),
        )

    @_native_dtypes
    def _rows_backward_native(self, *args: Any) -> tuple[Any, Any, Any]:
        return self._rows_backward(*args)

    def _group_rows(self, x: Any, G: int) -> tuple[Any, int]:
        """x (N, C, *) as contiguous (N G, C / G S) rows, and S (the positions per channel)."""
        N, C = x.shape[0], x.shape[1]
        S = x.size // max(N * C, 1)
        return np.ascontiguousarray(x).reshape(N * G, (C // G) * S), S

    @_native_dtypes
    def _group_norm_forward(
        self, prepared: Any, input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
    ) -> tuple[Any, Any]:
        """Group normalization of x (N, C, *) with G = ``prepared`` groups: each sample's C / G channel groups
        standardized over their C / G S values, then scaled and shifted per channel.

        Returns:
            ``(out, (rows, mean, inv_std, gamma, has_beta, G, S))`` with the (N G,) mean and inv_std.
        """
        G = prepared
        x2, S = self._group_rows(input, G)
        out, mean, _, inv_std = self._rows_forward(x2, weight, bias, G, S, eps)
        return out.reshape(input.shape), (x2, mean, inv_std, weight, bias is not None, G, S)

    def _group_norm_backward(self, dout: Any, cache: Any) -> tuple[Any, Any, Any]:
        """``(dx, dweight, dbias)`` of :meth:`_group_norm_forward` (None for an absent weight/bias)."""
        x2, mean, inv_std, gamma, has_beta, G, S = cache
        dx, dgamma, dbeta = self._rows_backward_native(
            np.ascontiguousarray(dout).reshape(x2.shape), x2, mean, inv_std, gamma, has_beta, G, S
        )
        return dx.reshape(dout.shape), dgamma, dbeta

    @staticmethod
    def _instance_norm_accepts(
        input: Any,
        running_mean: Any = None,
        running_var: Any = None,
        weight: Any = None,
        bias: Any = None,
        use_input_stats: bool = True,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        """With the instances' own statistics (with running ones it is an affine map: the reference's), in float32
        or float64 (the running statistics are updated in place, which a float16 detour through float32 would lose)."""
        return bool(use_input_stats) and isinstance(input, np.ndarray) and input.size > 0 and input.dtype in _NATIVE

    @_native_dtypes
    def _instance_norm_forward(
        self,
        prepared: Any,
        input: Any,
        running_mean: Any = None,
        running_var: Any = None,
        weight: Any = None,
        bias: Any = None,
        use_input_stats: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> tuple[Any, Any]:
        """Instance normalization with the instances' statistics: group normalization with G = C, plus the update
        of the running statistics (when given) with the batch mean of the instances' means and unbiased variances,
        as the reference does."""
        N, C = input.shape[0], input.shape[1]
        x2, S = self._group_rows(input, C)
        out, mean, var, inv_std = self._rows_forward(x2, weight, bias, C, S, eps)
        if running_mean is not None:
            running_mean[...] = (1.0 - momentum) * running_mean + momentum * mean.reshape(N, C).mean(axis=0)
        if running_var is not None:
            unbiased = var.reshape(N, C).mean(axis=0) * (S / (S - 1))
            running_var[...] = (1.0 - momentum) * running_var + momentum * unbiased
        return out.reshape(input.shape), (x2, mean, inv_std, weight, bias is not None, C, S)

    _instance_norm_backward = _group_norm_backward
