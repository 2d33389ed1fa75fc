"""BatchNorm kernels of the Numba backend: a mixin of :class:`~minidl.backend.numba_backend.NumbaBackend`.

Notation: x (N, C, S), S the flat spatial size; M = N S values per channel. The kernel pairs ``batch_norm``,
``batch_norm_relu`` and ``batch_norm_relu6`` replace the reference pairs of ``minidl/nn/normalization.py`` (the same
arguments, PyTorch's order): statistics, normalization and affine map (and the ReLU or ReLU6) in one pass per
channel, parallel over channels, keeping x and the mean instead of xhat; the backward rebuilds xhat (and the
activation's mask) from x.

A 4-D ``channels_last`` input (:mod:`minidl.memory_format`) takes the kernels of ``_numba_batchnorm_cl.py`` (rows of
C values, one per pixel; the methods that run them are
:class:`~minidl.backend._numba_batchnorm_rows.BatchNormRowsMixin`, the backend's other BatchNorm mixin). 2-D and
other inputs, and C-contiguous ones, take the per-channel kernels here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from minidl._deferred import BatchNormReLUOutput
from minidl.backend import _threads
from minidl.backend._numba_common import _NATIVE, _native_dtypes, _nhwc
from minidl.backend._numba_kernels import _REDUCE, _clamp, _u, epilogue


@njit(cache=True, nogil=True, inline="always")
def _finish_statistics(shift, s1, s2, M, eps):
    """``(mean, var, inv_std)`` of M values from their sums around ``shift``, s1 = sum (x - shift) and
    s2 = sum (x - shift)^2 (float64): mean = shift + s1 / M, var = s2 / M - (s1 / M)^2 (the biased variance; at
    least 0), inv_std = 1 / sqrt(var + eps)."""
    m = s1 / M
    v = max(s2 / M - m * m, 0.0)
    return shift + m, v, 1.0 / np.sqrt(v + eps)


@njit(cache=True, nogil=True)
def statistics_from_sums(parts, shift, M, eps, mean, var, inv_std):
    """mean, var, inv_std of each channel c from the shifted sums of its M values: ``parts`` (chunks, 2, C) the
    chunks' sums around shift[c] (:func:`~minidl.backend._numba_kernels.shifted_sums_rows`, folded), added in chunk
    order (so the same for any thread count), then :func:`_finish_statistics`; the results in their arrays' dtype."""
    for c in range(mean.size):
        s1 = 0.0
        s2 = 0.0
        for k in range(parts.shape[0]):
            s1 += parts[k, 0, c]
            s2 += parts[k, 1, c]
        mean[c], var[c], inv_std[c] = _finish_statistics(np.float64(shift[c]), s1, s2, M, eps)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def batch_norm_train(x, gamma, beta, has_gamma, has_beta, eps, relu, relu_max, c0, c1, out, mean, var, inv_std):
    """For channels [c0, c1) of x (N, C, S): the batch mean and biased variance over (N, S), inv_std =
    1 / sqrt(var + eps), and out = (x - mean) inv_std gamma + beta.

    One channel at a time, so its values (N S of them) are still in the core's cache when they are normalized.
    The statistics are sums of (x - s) and (x - s)^2 in float64 around a shift s (the channel's first value), which
    keeps the one-pass variance accurate when the mean is large compared with the spread. With ``relu`` the output
    is min(relu(out), relu_max) in the same pass (+inf: a ReLU, 6: a ReLU6; see
    :func:`~minidl.backend._numba_kernels._clamp`)."""
    N, C, S = x.shape
    M = N * S
    xf, of = x.reshape(-1), out.reshape(-1)
    for c in range(c0, c1):
        shift = np.float64(xf[_u(c * S)])
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            base = _u((n * C + c) * S)
            for i in range(_u(S)):
                d = np.float64(xf[base + i]) - shift
                s1 += d
                s2 += d * d
        mean[c], var[c], inv_std[c] = _finish_statistics(shift, s1, s2, M, eps)
        _normalize_channel(xf, c, N, C, S, mean[c], inv_std[c], gamma, beta, has_gamma, has_beta, relu, relu_max, of)


@njit(cache=True, nogil=True)
def _bn_y(x, m, scale, offset):
    """y = (x - m) scale + offset: one function, without fastmath, so the backward's ReLU mask recomputes exactly the
    forward's y (in a fastmath kernel LLVM may fuse the multiply-add and round differently)."""
    return (x - m) * scale + offset


@njit(cache=True, nogil=True, inline="always")
def _masked(g, relu, relu_max, unbounded, x, m, scale, offset, zero):
    """g, or zero where the forward's activation of y = (x - m) scale + offset passes no gradient: with ``relu`` and
    relu_max +inf (``unbounded``) where y <= 0 (relu_backward's mask: a NaN passes), with a finite relu_max (6:
    ReLU6) where not 0 < y < relu_max (hardtanh_backward's mask: a NaN does not). One expression for both, without a
    branch on relu_max (with one, the ReLU's backward ran 10% slower)."""
    if not relu:
        return g
    y = _bn_y(x, m, scale, offset)
    keep = (not (y <= 0)) & (unbounded | (y < relu_max))  # (bitwise: no branch in the vectorized loop)
    return g if keep else zero


@njit(cache=True, nogil=True, inline="always")
def _normalize_channel(xf, c, N, C, S, m, k, gamma, beta, has_gamma, has_beta, relu, relu_max, of):
    """of = (x - m) k gamma[c] + beta[c] (then min(relu, relu_max) if ``relu``) over channel c of the flat (N, C, S)
    x."""
    scale = k * gamma[c] if has_gamma else k
    zero = of.dtype.type(0)
    offset = beta[c] if has_beta else zero
    for n in range(N):
        base = _u((n * C + c) * S)
        if relu:
            for i in range(_u(S)):
                of[base + i] = _clamp(_bn_y(xf[base + i], m, scale, offset), zero, relu_max)
        else:
            for i in range(_u(S)):
                of[base + i] = _bn_y(xf[base + i], m, scale, offset)


@njit(cache=True, nogil=True)
def batch_norm_apply(x, mean, inv_std, gamma, beta, has_gamma, has_beta, relu, relu_max, c0, c1, out):
    """out = (x - mean[c]) inv_std[c] gamma[c] + beta[c] (then min(relu, relu_max) if ``relu``) for channels
    [c0, c1) of x (N, C, S)."""
    N, C, S = x.shape
    xf, of = x.reshape(-1), out.reshape(-1)
    for c in range(c0, c1):
        _normalize_channel(xf, c, N, C, S, mean[c], inv_std[c], gamma, beta, has_gamma, has_beta, relu, relu_max, of)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def batch_norm_backward(
    dout, x, mean, inv_std, gamma, beta, has_gamma, has_beta, training, relu, relu_max, c0, c1, dx, dgamma, dbeta
):
    """dx, dgamma[c] = sum(g xhat), dbeta[c] = sum(g) for channels [c0, c1) of (N, C, S) arrays, g = dout.

    xhat = (x - mean) inv_std is rebuilt from x. Training: dx = gamma inv_std (g - sum(g)/M - xhat sum(g xhat)/M);
    eval (constant statistics): dx = g gamma inv_std. With ``relu`` the forward was min(relu(y), relu_max),
    y = xhat gamma + beta: then g = dout where the activation passes a gradient, else 0 (see :func:`_masked`), with y
    recomputed exactly as the forward did."""
    N, C, S = x.shape
    M = N * S
    xf, gf, df = x.reshape(-1), dout.reshape(-1), dx.reshape(-1)
    zero = dx.dtype.type(0)
    unbounded = relu_max == np.inf  # a ReLU (else a ReLU6's bound)
    for c in range(c0, c1):
        m = mean[c]
        k = inv_std[c]
        scale = k * gamma[c] if has_gamma else k  # the forward's y = (x - m) scale + offset
        offset = beta[c] if has_beta else zero
        sum_dout = 0.0
        sum_dout_xhat = 0.0
        for n in range(N):
            base = _u((n * C + c) * S)
            for i in range(_u(S)):
                g = _masked(gf[base + i], relu, relu_max, unbounded, xf[base + i], m, scale, offset, zero)
                sum_dout += np.float64(g)
                sum_dout_xhat += np.float64(g) * np.float64((xf[base + i] - m) * k)
        dbeta[c] = sum_dout
        dgamma[c] = sum_dout_xhat
        a = dx.dtype.type(sum_dout / M)  # in x's dtype, like the reference's float32 math
        b = dx.dtype.type(sum_dout_xhat / M)
        for n in range(N):
            base = _u((n * C + c) * S)
            for i in range(_u(S)):
                g = _masked(gf[base + i], relu, relu_max, unbounded, xf[base + i], m, scale, offset, zero)
                if training:
                    df[base + i] = scale * (g - a - (xf[base + i] - m) * k * b)
                else:
                    df[base + i] = g * scale


# ---------------------------------------------------------------------------------------------------- the mixin
def _statistics_of(sums: Any, M: int, eps: float, dtype: Any) -> tuple[Any, Any, Any]:
    """``(mean, var, inv_std)``, (C,) in ``dtype``, from a convolution's ``channel_sums`` (3, C) of M values per
    channel (:func:`statistics_from_sums`)."""
    C = sums.shape[1]
    mean, var, inv_std = (np.empty(C, dtype=dtype) for _ in range(3))
    statistics_from_sums(sums[1:].reshape(1, 2, C), sums[0], M, float(eps), mean, var, inv_std)
    return mean, var, inv_std


class BatchNormKernelsMixin:
    """The kernel pairs ``batch_norm``, ``batch_norm_relu`` and ``batch_norm_relu6`` (entries of the backend's kernel
    table); a ``channels_last`` input goes to the ``_rows`` methods of
    :class:`~minidl.backend._numba_batchnorm_rows.BatchNormRowsMixin`."""

    _channel_tasks: Any
    _batch_norm_train_rows: Any
    _batch_norm_apply_rows: Any
    _batch_norm_backward_rows: Any

    @staticmethod
    def _batch_norm_accepts(input: Any, *args: Any, **kwargs: Any) -> bool:
        """float32 and float64, the dtypes the kernels compute in: the running statistics are updated in place, and
        a ReLU mask recomputed from rounded float16 statistics could differ from the forward's."""
        return isinstance(input, np.ndarray) and input.dtype in _NATIVE and input.size > 0

    def _batch_norm_forward(
        self, prepared: Any, input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
        training: bool = False, momentum: float = 0.1, eps: float = 1e-5, *, channel_sums: Any = None,
        relu_max: float | None = None, joined: Any = None, deferred: bool = False,
    ) -> tuple[Any, Any]:  # fmt: skip
        """The ``batch_norm`` pair's forward (``batch_norm_relu``'s with ``relu_max`` +inf, ``batch_norm_relu6``'s
        with 6): the same statistics and running-average updates as the reference (from ``channel_sums`` where
        given: the normalize pass only). Cache: ``(x, mean, inv_std, weight, bias, training, relu_max)``.
        ``joined``: for ``batch_norm_add_relu`` (a ``channels_last`` x), the (N, H, W, C) views of the residual and
        of the mask to fill (``_numba_batchnorm_cl.py``). ``deferred`` (``batch_norm_relu``'s): the output is
        described, not computed (:class:`~minidl.nn.BatchNormReLUOutput`, its vectors the kernels'
        own, :func:`_tile`'s): with ``channel_sums`` no pass over x at all."""
        x = input
        if training:
            out, mean, var, inv_std = self._batch_norm_train(
                x, weight, bias, eps, relu_max, joined, channel_sums, normalize=not deferred
            )  # fmt: skip
            M = x.size // x.shape[1]  # running = (1 - momentum) running + momentum statistic (unbiased variance)
            if running_mean is not None:
                running_mean[...] = (1.0 - momentum) * running_mean + momentum * mean
            if running_var is not None:
                running_var[...] = (1.0 - momentum) * running_var + momentum * (var * (M / (M - 1)))
        else:
            mean = running_mean
            inv_std = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)
            out = None if deferred else self._batch_norm_apply(x, mean, inv_std, weight, bias, relu_max, joined)
        if deferred:  # (its scale inv_std gamma as _tile computes the kernels')
            out = BatchNormReLUOutput.of(x, np.asarray(mean), np.asarray(inv_std), weight, bias)
        return out, (x, mean.copy(), inv_std, weight, bias, bool(training), relu_max)

    def _batch_norm_backward(self, dout: Any, cache: Any) -> tuple[Any, Any, Any]:
        """``(dx, dweight, dbias)`` of :meth:`_batch_norm_forward` (None for an absent weight/bias)."""
        return self._batch_norm_backward_channels(dout, *cache)

    def _batch_norm_relu_forward(
        self, prepared: Any, *args: Any, deferred: bool = False, **kwargs: Any
    ) -> tuple[Any, Any]:  # fmt: skip
        """``relu(batch_norm(x))``, the ReLU in the normalize pass; its backward recomputes the mask from x.
        ``deferred``: the output described, not computed (see :meth:`_batch_norm_forward`)."""
        return self._batch_norm_forward(prepared, *args, **kwargs, relu_max=math.inf, deferred=deferred)

    def _batch_norm_relu6_forward(self, prepared: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """``relu6(batch_norm(x))``, the ReLU6 in the normalize pass; its backward recomputes the mask from x. (Run as
        a BatchNorm and then a separate ReLU6 pass, forward and backward, the ReLU6 took about a tenth of
        MobileNetV2's training step: 118 ms of 1,130 at batch 128, 2 threads, AMD Zen 4.)"""
        return self._batch_norm_forward(prepared, *args, **kwargs, relu_max=6.0)

    # ------------------------------------------------------------------ the compiled passes, over ranges of channels
    @staticmethod
    def _ncs(a: Any) -> Any:
        """(N, C, *) as a contiguous (N, C, S) view."""
        a = np.ascontiguousarray(a)
        return a.reshape(a.shape[0], a.shape[1], -1)

    @_native_dtypes
    def _batch_norm_train(
        self, x: Any, gamma: Any, beta: Any, eps: float, relu_max: float | None = None, joined: Any = None,
        sums: Any = None, normalize: bool = True,
    ) -> tuple[Any, Any, Any, Any]:  # fmt: skip
        """Batch normalization with the batch's statistics over every axis but 1 of (N, C, *) ``x``: computed here,
        or from ``sums`` (the (3, C) ``channel_sums`` of the convolution that wrote x: its shifts and the shifted
        sums of its values, :func:`statistics_from_sums`), which leave the normalize pass only.

        Returns:
            ``(out, mean, var, inv_std)``: out = (x - mean) * inv_std * gamma + beta (gamma, beta (C,) or None;
            then min(relu(out), relu_max) with ``relu_max``), the (C,) mean and biased variance (accumulated in
            float64) and inv_std = 1 / sqrt(var + eps), all in x's dtype; out is ``channels_last`` when x is. Without
            ``normalize``, out is None where the statistics came from ``sums`` (no pass over x at all).
        """
        if sums is not None and not normalize:  # a deferred output: the statistics alone, no pass over x
            return None, *_statistics_of(sums, x.size // x.shape[1], eps, x.dtype)
        xh = _nhwc(x)
        if xh is not None:
            return self._batch_norm_train_rows(xh, gamma, beta, eps, relu_max, joined, sums)
        assert joined is None, "batch_norm_add_relu runs on channels_last inputs only (its accepts)"
        if sums is not None:
            mean, var, inv_std = _statistics_of(sums, x.size // x.shape[1], eps, x.dtype)
            return self._batch_norm_apply(x, mean, inv_std, gamma, beta, relu_max), mean, var, inv_std
        x3 = self._ncs(x)
        C, dtype = x3.shape[1], x.dtype
        out = np.empty(x3.shape, dtype=dtype)
        mean, var, inv_std = (np.empty(C, dtype=dtype) for _ in range(3))
        g, b = self._affine_vectors(gamma, beta, dtype)
        relu, cap = epilogue(relu_max, dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            batch_norm_train(
                x3, g, b, gamma is not None, beta is not None, float(eps), relu, cap, *tasks[task],
                out, mean, var, inv_std,
            )  # fmt: skip

        _threads.parallel_for(body, len(tasks))
        return out.reshape(x.shape), mean, var, inv_std

    @_native_dtypes
    def _batch_norm_apply(
        self, x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, relu_max: float | None = None, joined: Any = None
    ) -> Any:
        """``out = (x - mean) * inv_std * gamma + beta`` per channel (axis 1) of (N, C, *) ``x`` (then
        min(relu(out), relu_max) with ``relu_max``); the (C,) vectors gamma/beta may be None. ``channels_last``
        when x is."""
        xh = _nhwc(x)
        if xh is not None:
            return self._batch_norm_apply_rows(xh, mean, inv_std, gamma, beta, relu_max, joined)
        assert joined is None, "batch_norm_add_relu runs on channels_last inputs only (its accepts)"
        x3 = self._ncs(x)
        C, dtype = x3.shape[1], x.dtype
        out = np.empty(x3.shape, dtype=dtype)
        g, b = self._affine_vectors(gamma, beta, dtype)
        mean, inv_std = np.ascontiguousarray(mean, dtype), np.ascontiguousarray(inv_std, dtype)
        relu, cap = epilogue(relu_max, dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            batch_norm_apply(x3, mean, inv_std, g, b, gamma is not None, beta is not None, relu, cap, *tasks[task], out)

        _threads.parallel_for(body, len(tasks))
        return out.reshape(x.shape)

    @_native_dtypes
    def _batch_norm_backward_channels(
        self, dout: Any, x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, training: bool,
        relu_max: float | None = None,
    ) -> tuple[Any, Any, Any]:  # fmt: skip
        """``(dx, dgamma, dbeta)`` of ``out = (x - mean) inv_std gamma + beta`` (None for an absent gamma/beta);
        with ``training`` the statistics are the batch's (the full BatchNorm backward), else constants. With
        ``relu_max`` the forward's output was min(relu(out), relu_max) and ``dout`` its gradient (the mask is
        recomputed from x). ``channels_last`` x: dx is too (dout converted if it was not)."""
        xh = _nhwc(x)
        if xh is not None:
            return self._batch_norm_backward_rows(dout, xh, mean, inv_std, gamma, beta, training, relu_max)
        x3, dout3 = self._ncs(x), self._ncs(dout)
        C, dtype = x3.shape[1], dout.dtype
        dx = np.empty(x3.shape, dtype=dtype)
        dgamma = np.empty(C, dtype=dtype)
        dbeta = np.empty(C, dtype=dtype)
        g, b = self._affine_vectors(gamma, beta, dtype)
        mean, inv_std = np.ascontiguousarray(mean, dtype), np.ascontiguousarray(inv_std, dtype)
        relu, cap = epilogue(relu_max, dtype)
        tasks = self._channel_tasks(C)

        def body(worker: int, task: int) -> None:
            batch_norm_backward(
                dout3, x3, mean, inv_std, g, b, gamma is not None, beta is not None, bool(training), relu, cap,
                *tasks[task], dx, dgamma, dbeta,
            )  # fmt: skip

        _threads.parallel_for(body, len(tasks))
        return dx.reshape(x.shape), (dgamma if gamma is not None else None), (dbeta if beta is not None else None)

    @staticmethod
    def _affine_vectors(gamma: Any, beta: Any, dtype: Any) -> tuple[Any, Any]:
        """gamma and beta as contiguous arrays of ``dtype`` (a 1-element placeholder for an absent one)."""
        one = np.ones(1, dtype=dtype)
        g = one if gamma is None else np.ascontiguousarray(gamma, dtype)
        b = one if beta is None else np.ascontiguousarray(beta, dtype)
        return g, b
