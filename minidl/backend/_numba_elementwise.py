r"""Elementwise activation and softmax-cross-entropy kernels of the Numba backend: a mixin of
:class:`~minidl.backend.numba_backend.NumbaBackend`.

Notation:
    x: the activation's input, y = f(x) its output, dout the gradient of the loss with respect to y, dx = dout f'(x)
    (the formulas of ``minidl/nn/activation.py`` and ``activation_smooth.py``).  i: a flat index.
    N: rows (samples) of the logits z (N, C) of a cross-entropy.  C: classes.  t: class indices (N,).

Each activation kernel is one pass over flat elements ``[i0, i1)`` (run in parallel chunks by the backend's
``_flat``), in place of the reference's several NumPy passes (``where``, ``clip``, a temporary per operator). It
computes the same expression, so NaN and inf come out where the reference's do; scalar hyperparameters arrive
converted to the array's dtype (as NumPy converts a Python float in ``x * alpha``); the cache has the reference's
layout, so the NumPy backward accepts the kernel's cache and the other way round.

Transcendental functions come from ``_numba_math.py``: versions of exp, expm1, tanh, log1p and erfc that compile
to vector code (``math.exp`` and friends are scalar libm calls, slower than NumPy's SIMD loops).

Measured at (128, 64, 16, 16) float32, forward + backward, 2 threads, reference NumPy code vs kernel (ms, medians):
leaky_relu 16.4 -> 0.6, hardtanh/relu6 1.4 -> 0.8, hardswish 6.2 -> 0.6, sigmoid 12.3 -> 1.1, elu 18.7 -> 2.8,
silu 14.2 -> 1.4, gelu 167 -> 13.4 (tanh form 12.8 -> 6.1), softplus forward 17.7 -> 3.2, mish 23.8 -> 4.8, tanh
backward 1.1 -> 0.4. Left to NumPy (no kernel): tanh forward (NumPy's SIMD tanh, 0.8, against 2.9) and the
softplus backward (one product, 0.4 either way). Cross-entropy (forward + backward): (512, 1000) 1.40 -> 0.62,
(128, 10) 0.059 -> 0.046.

The cross-entropy kernels work on rows: for class-index targets the coefficient row of ``loss.py``'s docstring is
:math:`a_{n,c} = h_n [c = t_n] + v_n s_c` with :math:`h_n = (1 - \varepsilon) w_{t_n} v_n`, :math:`s = \varepsilon
w / C` and :math:`v_n` = [t_n is not ignored], so no dense (N, C) matrix ``a`` is built: per row, the max m, the
log-sum-exp (its sum in float64), :math:`p = \mathrm{softmax}(z)` and :math:`\ell_n = -\sum_c a_{n,c} \log p_c`;
backward :math:`dz = g_n (\sum_c a_{n,c}\, p - a_n)`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy
from numba import njit

from minidl.backend import _threads
from minidl.backend._numba_common import _ceil_div, _native_dtypes
from minidl.backend._numba_math import _erfc, _exp_le0, _expm1_nonpositive, _log1p_unit, _tanh, _tanh_softplus

_u = numpy.uint64  # unsigned flat indices (see _numba_kernels.py: they let LLVM vectorize)
_REDUCE = {"reassoc", "contract", "nsz"}  # fastmath for sums only (no "nnan"/"ninf": NaN and inf still propagate)
_ROW_ELEMENTS = 1 << 16  # logits per task of the cross-entropy kernels
_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_CUBIC = 0.044715


# ---------------------------------------------------------------------------------------------------- piecewise linear
@njit(cache=True, nogil=True, error_model="numpy")
def leaky_relu_forward(x, negative_slope, i0, i1, out, mask):
    """mask[i] = x[i] > 0; out[i] = x[i] where mask else negative_slope x[i]."""
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        m = v > 0
        mask[start + i] = m
        out[start + i] = v if m else v * negative_slope


@njit(cache=True, nogil=True, error_model="numpy")
def leaky_relu_backward(dout, mask, negative_slope, i0, i1, dx):
    """dx[i] = dout[i] where mask[i] else negative_slope dout[i]."""
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        g = dout[start + i]
        dx[start + i] = g if mask[start + i] else g * negative_slope


@njit(cache=True, nogil=True, error_model="numpy")
def hardtanh_forward(x, min_val, max_val, i0, i1, out, mask):
    """out[i] = clip(x[i], min_val, max_val) (NaN stays NaN); mask[i] = min_val < x[i] < max_val."""
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        mask[start + i] = (v > min_val) and (v < max_val)
        out[start + i] = min_val if v < min_val else (max_val if v > max_val else v)


@njit(cache=True, nogil=True, error_model="numpy")
def mask_backward(dout, mask, i0, i1, dx):
    """dx[i] = dout[i] * mask[i] (a product, as the reference's ``dout * mask``: NaN * 0 is NaN)."""
    one, zero = dx.dtype.type(1), dx.dtype.type(0)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        dx[start + i] = dout[start + i] * (one if mask[start + i] else zero)


@njit(cache=True, nogil=True, error_model="numpy")
def hardswish_forward(x, i0, i1, out):
    """out[i] = x[i] clip(x[i] + 3, 0, 6) / 6."""
    zero, three, six = out.dtype.type(0), out.dtype.type(3), out.dtype.type(6)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        c = v + three
        c = zero if c < zero else (six if c > six else c)
        out[start + i] = v * c / six


@njit(cache=True, nogil=True, error_model="numpy")
def hardswish_backward(dout, x, i0, i1, dx):
    """dx[i] = dout[i] * (0 if x < -3, x / 3 + 1/2 if x <= 3, else 1) (NaN x: slope 1, as the reference's ``where``)."""
    zero, one, half, three = dx.dtype.type(0), dx.dtype.type(1), dx.dtype.type(0.5), dx.dtype.type(3)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        slope = zero if v < -three else (v / three + half if v <= three else one)
        dx[start + i] = dout[start + i] * slope


# ---------------------------------------------------------------------------------------------------- sigmoid, tanh
@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_forward(x, i0, i1, out):
    """out[i] = sigmoid(x[i]) = (1 if x >= 0 else z) / (1 + z), z = e^{-|x|} (no overflow)."""
    T = out.dtype.type
    one = T(1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        z = T(_exp_le0(-abs(v)))
        out[start + i] = (one if v >= 0 else z) / (one + z)


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_backward(dout, y, i0, i1, dx):
    """dx[i] = dout[i] y[i] (1 - y[i])."""
    one = dx.dtype.type(1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = y[start + i]
        dx[start + i] = dout[start + i] * v * (one - v)


@njit(cache=True, nogil=True, error_model="numpy")
def tanh_backward(dout, y, i0, i1, dx):
    """dx[i] = dout[i] (1 - y[i]^2)."""
    one = dx.dtype.type(1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = y[start + i]
        dx[start + i] = dout[start + i] * (one - v * v)


# ---------------------------------------------------------------------------------------------------- smooth
@njit(cache=True, nogil=True, error_model="numpy")
def elu_forward(x, alpha, i0, i1, out, mask):
    """mask[i] = x[i] > 0; out[i] = x[i] where mask else alpha (e^{x[i]} - 1) (expm1, no cancellation)."""
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        m = v > 0
        mask[start + i] = m
        out[start + i] = v if m else alpha * _expm1_nonpositive(numpy.float64(v))


@njit(cache=True, nogil=True, error_model="numpy")
def elu_backward(dout, mask, y, alpha, i0, i1, dx):
    """dx[i] = dout[i] where mask[i] else dout[i] (y[i] + alpha)."""
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        g = dout[start + i]
        dx[start + i] = g if mask[start + i] else g * (y[start + i] + alpha)


@njit(cache=True, nogil=True, error_model="numpy")
def silu_forward(x, i0, i1, out, s):
    """s[i] = sigmoid(x[i]); out[i] = x[i] s[i]."""
    T = out.dtype.type
    one = T(1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        z = T(_exp_le0(-abs(v)))
        sv = (one if v >= 0 else z) / (one + z)
        s[start + i] = sv
        out[start + i] = v * sv


@njit(cache=True, nogil=True, error_model="numpy")
def silu_backward(dout, x, s, i0, i1, dx):
    """dx[i] = dout[i] s[i] (1 + x[i] (1 - s[i]))."""
    one = dx.dtype.type(1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        sv = s[start + i]
        dx[start + i] = dout[start + i] * sv * (one + x[start + i] * (one - sv))


@njit(cache=True, nogil=True, error_model="numpy")
def gelu_forward(x, tanh_form, i0, i1, out):
    """out[i] = x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2; with ``tanh_form``
    0.5 x (1 + tanh(sqrt(2/pi) (xc + 0.044715 xc^3))), xc = clip(x, -100, 100)."""
    T = out.dtype.type
    half, one, hundred = T(0.5), T(1), T(100)
    k, cubic = T(_SQRT_2_OVER_PI), T(_GELU_CUBIC)
    start = _u(i0)
    if tanh_form:
        for i in range(_u(i1 - i0)):
            v = x[start + i]
            c = -hundred if v < -hundred else (hundred if v > hundred else v)
            out[start + i] = half * v * (one + T(_tanh(numpy.float64(k * (c + cubic * c * c * c)))))
    else:
        for i in range(_u(i1 - i0)):
            v = x[start + i]
            out[start + i] = v * T(0.5 * _erfc(-numpy.float64(v) / _SQRT_2))


@njit(cache=True, nogil=True, error_model="numpy")
def gelu_backward(dout, x, tanh_form, i0, i1, dx):
    """dx[i] = dout (Phi(x) + xc phi(xc)), phi the normal density, xc = clip(x, -100, 100); with ``tanh_form``
    and t = tanh(sqrt(2/pi) (xc + 0.044715 xc^3)):
    dx[i] = dout (0.5 (1 + t) + 0.5 xc (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 xc^2))."""
    T = dx.dtype.type
    half, one, hundred = T(0.5), T(1), T(100)
    k, cubic, inv = T(_SQRT_2_OVER_PI), T(_GELU_CUBIC), T(_INV_SQRT_2PI)
    cubic3 = T(3 * _GELU_CUBIC)
    start = _u(i0)
    if tanh_form:
        for i in range(_u(i1 - i0)):
            v = x[start + i]
            c = -hundred if v < -hundred else (hundred if v > hundred else v)
            t = T(_tanh(numpy.float64(k * (c + cubic * c * c * c))))
            slope = half * (one + t) + half * c * (one - t * t) * k * (one + cubic3 * c * c)
            dx[start + i] = dout[start + i] * slope
    else:
        for i in range(_u(i1 - i0)):
            v = x[start + i]
            c = -hundred if v < -hundred else (hundred if v > hundred else v)
            slope = T(0.5 * _erfc(-numpy.float64(v) / _SQRT_2)) + c * inv * T(_exp_le0(-half * c * c))
            dx[start + i] = dout[start + i] * slope


@njit(cache=True, nogil=True, error_model="numpy")
def softplus_forward(x, beta, threshold, i0, i1, out, slope):
    """With b = beta x: out = x and slope = 1 where b > threshold, else out = softplus(b) / beta, slope = sigmoid(b)."""
    T = out.dtype.type
    zero, one = T(0), T(1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        b = v * beta
        if b > threshold:
            out[start + i] = v
            slope[start + i] = one
        else:
            z = T(_exp_le0(-abs(b)))
            out[start + i] = ((b if b > 0 or b != b else zero) + T(_log1p_unit(numpy.float64(z)))) / beta
            slope[start + i] = (one if b >= 0 else z) / (one + z)


@njit(cache=True, nogil=True, error_model="numpy")
def mish_forward(x, i0, i1, out):
    """out[i] = x tanh(softplus(x)) (the factor in float64, see _tanh_softplus)."""
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        w = numpy.float64(v)
        out[start + i] = v * out.dtype.type(_tanh_softplus(w, _exp_le0(-abs(w))))


@njit(cache=True, nogil=True, error_model="numpy")
def mish_backward(dout, x, i0, i1, dx):
    """dx[i] = dout (t + x sigmoid(x) (1 - t^2)), t = tanh(softplus(x)) (the factor in float64)."""
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        w = numpy.float64(x[start + i])
        z = _exp_le0(-abs(w))
        t = _tanh_softplus(w, z)
        s = (1.0 if w >= 0 else z) / (1.0 + z)
        dx[start + i] = dout[start + i] * dx.dtype.type(t + w * s * (1.0 - t * t))


# ---------------------------------------------------------------------------------------------------- cross-entropy
@njit(cache=True, nogil=True, error_model="numpy")
def _row_max(a, start, count):
    """max of a[start : start + count] (count >= 1), NaN if any is NaN (NumPy's ``max``); a NaN flag beside a plain
    maximum, so that the loop vectorizes."""
    m = a[start]
    nan = False
    for c in range(_u(count)):
        v = a[start + c]
        m = v if v > m else m
        nan |= v != v
    return a.dtype.type(numpy.nan) if nan else m


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def _row_sum(a, start, count):
    """sum of a[start : start + count] in float64 (vectorized: the order of the additions is free)."""
    total = 0.0
    for c in range(_u(count)):
        total += a[start + c]
    return total


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def _row_log_likelihood(z, start, count, coefficient, scale, shift):
    """sum_c scale coefficient[c] (z[start + c] - shift) in float64 (0 * inf terms are NaN, as in the reference)."""
    acc = 0.0
    for c in range(_u(count)):
        acc += (coefficient[c] * scale) * (z[start + c] - shift)
    return acc


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_rows(z, t, hard, valid, smooth, r0, r1, p, loss):
    """For rows n in [r0, r1) of z (N, C): m = max_c z (NaN if any), S = sum_c e^{z_c - m} (float64),
    log p_c = z_c - m - log S, p[n] = e^{z - m} / S and loss[n] = -sum_c a_c log p_c with
    a_c = v_n s_c + [c = t_n] h_n (v = valid, h = hard, s = smooth)."""
    C = z.shape[1]
    zf, pf = z.reshape(-1), p.reshape(-1)
    T = p.dtype.type
    zero, one = T(0), T(1)
    for n in range(r0, r1):
        row = _u(n * C)
        m = _row_max(zf, row, C)
        for c in range(_u(C)):
            pf[row + c] = _exp_le0(zf[row + c] - m)
        total = _row_sum(pf, row, C)
        log_total = T(math.log(total))
        inv = 1.0 / total
        for c in range(_u(C)):
            pf[row + c] = pf[row + c] * inv
        shift = m + log_total
        acc = _row_log_likelihood(zf, row, C, smooth, one if valid[n] else zero, shift)
        acc += hard[n] * ((zf[row + _u(t[n])] - m) - log_total)
        loss[n] = -acc


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_rows_backward(p, t, hard, valid, smooth, smooth_sum, g, per_row, r0, r1, dz):
    """dz[n] = g_n (A_n p[n] - a_n) for rows [r0, r1), A_n = sum_c a_c = h_n + v_n sum(s), a as in the forward;
    g_n = g[n] if ``per_row`` (reduction "none") else g[0]."""
    C = p.shape[1]
    pf, df = p.reshape(-1), dz.reshape(-1)
    zero = dz.dtype.type(0)
    for n in range(r0, r1):
        row = _u(n * C)
        gn = g[n] if per_row else g[0]
        rs = valid[n]
        total = hard[n] + (smooth_sum if rs else zero)
        for c in range(_u(C)):
            df[row + c] = (total * pf[row + c] - (smooth[c] if rs else zero)) * gn
        y = _u(t[n])
        df[row + y] = (total * pf[row + y] - ((smooth[y] if rs else zero) + hard[n])) * gn


# ---------------------------------------------------------------------------------------------------- the mixin
def _flat_view(a: Any) -> Any:
    return numpy.ascontiguousarray(a).reshape(-1)


class ElementwiseKernelsMixin:
    """Methods the activation and loss layers look up with ``getattr(backend, name, None)``: each returns what the
    functional of the same name in ``minidl/nn`` returns (the same outputs, the same cache layout)."""

    _flat: Any
    _split: Any

    def _elementwise(
        self, kernel: Any, arrays: tuple[Any, ...], scalars: tuple[Any, ...], outputs: tuple[Any, ...]
    ) -> Any:
        """Run ``kernel(*arrays, *scalars, i0, i1, *outputs)`` over the flat elements; returns the outputs, each an
        array of ``dtype`` (the given dtypes; scalars are converted to the first output's dtype) in the shape of
        ``arrays[0]``."""
        shape = arrays[0].shape
        outs = tuple(numpy.empty(shape, dtype=dtype) for dtype in outputs)
        kind = outs[0].dtype.type
        flat = tuple(_flat_view(a) for a in arrays)
        self._flat(kernel, flat[0].size, (*flat, *(kind(s) for s in scalars)), tuple(o.reshape(-1) for o in outs))
        return outs

    @staticmethod
    def _result_dtype(*arrays: Any) -> Any:
        return numpy.result_type(*(a for a in arrays if a.dtype.kind == "f"))

    # ----------------------------------------------------------------- piecewise linear (activation.py)
    @_native_dtypes
    def leaky_relu_forward(self, x: Any, negative_slope: float = 0.01) -> tuple[Any, Any]:
        """``(out, (mask, negative_slope))``: out = x where x > 0 else negative_slope x, in one pass."""
        out, mask = self._elementwise(leaky_relu_forward, (x,), (negative_slope,), (x.dtype, bool))
        return out, (mask, negative_slope)

    @_native_dtypes
    def leaky_relu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout`` where the mask, else ``negative_slope * dout``."""
        mask, negative_slope = cache
        return self._elementwise(leaky_relu_backward, (dout, mask), (negative_slope,), (dout.dtype,))[0]

    @_native_dtypes
    def hardtanh_forward(self, x: Any, min_val: float = -1.0, max_val: float = 1.0) -> tuple[Any, Any]:
        """``(clip(x, min_val, max_val), mask min_val < x < max_val)`` in one pass (min_val <= max_val)."""
        return self._elementwise(hardtanh_forward, (x,), (min_val, max_val), (x.dtype, bool))

    @_native_dtypes
    def hardtanh_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * mask`` (also ReLU6's backward)."""
        return self._elementwise(mask_backward, (dout, cache), (), (dout.dtype,))[0]

    @_native_dtypes
    def hardswish_forward(self, x: Any) -> tuple[Any, Any]:
        """``(x * clip(x + 3, 0, 6) / 6, x)``."""
        return self._elementwise(hardswish_forward, (x,), (), (x.dtype,))[0], x

    @_native_dtypes
    def hardswish_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * f'(x)``, f' = 0, x / 3 + 1/2 or 1 (x < -3, -3 <= x <= 3, x > 3)."""
        return self._elementwise(hardswish_backward, (dout, cache), (), (self._result_dtype(dout, cache),))[0]

    # ----------------------------------------------------------------- sigmoid, tanh (activation.py)
    @_native_dtypes
    def sigmoid_forward(self, x: Any) -> tuple[Any, Any]:
        """``(y, y)``, y = sigmoid(x) without overflow."""
        out = self._elementwise(sigmoid_forward, (x,), (), (x.dtype,))[0]
        return out, out

    @_native_dtypes
    def sigmoid_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * y * (1 - y)``."""
        return self._elementwise(sigmoid_backward, (dout, cache), (), (self._result_dtype(dout, cache),))[0]

    @_native_dtypes
    def tanh_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * (1 - y^2)``."""
        return self._elementwise(tanh_backward, (dout, cache), (), (self._result_dtype(dout, cache),))[0]

    # ----------------------------------------------------------------- smooth (activation_smooth.py)
    @_native_dtypes
    def elu_forward(self, x: Any, alpha: float = 1.0) -> tuple[Any, Any]:
        """``(out, (mask, out, alpha))``: out = x where x > 0 else alpha (e^x - 1)."""
        out, mask = self._elementwise(elu_forward, (x,), (alpha,), (x.dtype, bool))
        return out, (mask, out, alpha)

    def elu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout`` where the mask, else ``dout * (y + alpha)``."""
        mask, out, alpha = cache
        return self._elu_backward(dout, mask, out, alpha)

    @_native_dtypes  # (on the cache's arrays too: it sees only top-level arguments)
    def _elu_backward(self, dout: Any, mask: Any, out: Any, alpha: float) -> Any:
        return self._elementwise(elu_backward, (dout, mask, out), (alpha,), (self._result_dtype(dout, out),))[0]

    @_native_dtypes
    def silu_forward(self, x: Any) -> tuple[Any, Any]:
        """``(x * s, (x, s))``, s = sigmoid(x)."""
        out, s = self._elementwise(silu_forward, (x,), (), (x.dtype, x.dtype))
        return out, (x, s)

    def silu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * s * (1 + x (1 - s))``."""
        x, s = cache
        return self._silu_backward(dout, x, s)

    @_native_dtypes
    def _silu_backward(self, dout: Any, x: Any, s: Any) -> Any:
        return self._elementwise(silu_backward, (dout, x, s), (), (self._result_dtype(dout, x, s),))[0]

    @_native_dtypes
    def gelu_forward(self, x: Any, approximate: str = "none") -> tuple[Any, Any]:
        """``(x * Phi(x), (x, approximate))`` (exact with Cody's erfc, or the tanh form)."""
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu_forward: approximate must be 'none' or 'tanh', got {approximate!r}")
        out = numpy.empty(x.shape, dtype=x.dtype)
        self._flat(gelu_forward, x.size, (_flat_view(x), approximate == "tanh"), (out.reshape(-1),))
        return out, (x, approximate)

    def gelu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * (Phi(x) + x phi(x))`` (or the tanh form's derivative)."""
        x, approximate = cache
        return self._gelu_backward(dout, x, approximate)

    @_native_dtypes
    def _gelu_backward(self, dout: Any, x: Any, approximate: str) -> Any:
        dx = numpy.empty(dout.shape, dtype=self._result_dtype(dout, x))
        self._flat(gelu_backward, dx.size, (_flat_view(dout), _flat_view(x), approximate != "none"), (dx.reshape(-1),))
        return dx

    @_native_dtypes
    def softplus_forward(self, x: Any, beta: float = 1.0, threshold: float = 20.0) -> tuple[Any, Any]:
        """``(out, slope)``: out = softplus(beta x) / beta and slope = sigmoid(beta x), or x and 1 where
        beta x > threshold."""
        return self._elementwise(softplus_forward, (x,), (beta, threshold), (x.dtype, x.dtype))

    @_native_dtypes
    def mish_forward(self, x: Any) -> tuple[Any, Any]:
        """``(x * tanh(softplus(x)), x)``."""
        return self._elementwise(mish_forward, (x,), (), (x.dtype,))[0], x

    @_native_dtypes
    def mish_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * (t + x sigmoid(x) (1 - t^2))``, t = tanh(softplus(x))."""
        return self._elementwise(mish_backward, (dout, cache), (), (self._result_dtype(dout, cache),))[0]

    # ----------------------------------------------------------------- softmax cross-entropy (loss.py)
    def _cross_entropy_tasks(self, N: int, C: int) -> list[tuple[int, int]]:
        return self._split(N, _ceil_div(N * C, _ROW_ELEMENTS))

    @_native_dtypes
    def softmax_cross_entropy_rows(self, z: Any, t: Any, hard: Any, valid: Any, smooth: Any) -> tuple[Any, Any]:
        """Per-row cross-entropy of logits z (N, C) against a_{n,c} = valid_n smooth_c + [c = t_n] hard_n.

        Args:
            z: (N, C) logits.  t: (N,) class indices in [0, C) (ignored rows: any valid index).
            hard: (N,) (1 - eps) w_{t_n} (0 for ignored rows).  valid: (N,) bool.  smooth: (C,) eps w / C.
        Returns:
            ``(loss, p)``: loss (N,) = -sum_c a_{n,c} log softmax(z_n)_c, and p = softmax(z) (N, C).
        """
        z = numpy.ascontiguousarray(z)
        N, C = z.shape
        dtype = z.dtype
        p = numpy.empty((N, C), dtype=dtype)
        loss = numpy.empty(N, dtype=dtype)
        args = (
            numpy.ascontiguousarray(t, dtype=numpy.int64),
            numpy.ascontiguousarray(hard, dtype=dtype),
            numpy.ascontiguousarray(valid, dtype=bool),
            numpy.ascontiguousarray(smooth, dtype=dtype),
        )
        tasks = self._cross_entropy_tasks(N, C)

        def body(worker: int, task: int) -> None:
            softmax_cross_entropy_rows(z, *args, *tasks[task], p, loss)

        _threads.parallel_for(body, len(tasks))
        return loss, p

    @_native_dtypes
    def softmax_cross_entropy_rows_backward(self, p: Any, t: Any, hard: Any, valid: Any, smooth: Any, g: Any) -> Any:
        """``dz = g_n (A_n p - a_n)`` for the rows of :meth:`softmax_cross_entropy_rows` (same t, hard, valid,
        smooth), A_n = sum_c a_{n,c}; ``g`` a scalar or one value per row (N,)."""
        N, C = p.shape
        per_row = numpy.ndim(g) > 0
        dtype = numpy.result_type(p.dtype, g.dtype) if per_row else p.dtype
        g_arr = numpy.ascontiguousarray(g, dtype=dtype).reshape(-1) if per_row else numpy.full(1, g, dtype=dtype)
        smooth = numpy.ascontiguousarray(smooth, dtype=p.dtype)
        smooth_sum = p.dtype.type(smooth.sum(dtype=numpy.float64))
        dz = numpy.empty((N, C), dtype=dtype)
        args = (
            numpy.ascontiguousarray(t, dtype=numpy.int64),
            numpy.ascontiguousarray(hard, dtype=p.dtype),
            numpy.ascontiguousarray(valid, dtype=bool),
            smooth,
            smooth_sum,
            g_arr,
            per_row,
        )
        p = numpy.ascontiguousarray(p)
        tasks = self._cross_entropy_tasks(N, C)

        def body(worker: int, task: int) -> None:
            softmax_cross_entropy_rows_backward(p, *args, *tasks[task], dz)

        _threads.parallel_for(body, len(tasks))
        return dz
