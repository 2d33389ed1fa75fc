r"""Elementwise activation kernels of the Numba backend: a mixin of :class:`~minidl.backend.numba_backend.NumbaBackend`.

Notation:
    x: the activation's input, y = f(x) its output, dout the gradient of the loss with respect to y, dx = dout f'(x)
    (the formulas of ``minidl/nn/activation.py``, ``activation_smooth.py``, ``activation_gated.py``).  i: a flat index.

Each activation kernel is one pass over flat elements ``[i0, i1)`` (run in parallel chunks by the backend's
``_flat``), in place of the reference's several NumPy passes (``where``, ``clip``, a temporary per operator). It
computes the same expression, so NaN and inf come out where the reference's do; scalar hyperparameters arrive
converted to the array's dtype (as NumPy converts a Python float in ``x * alpha``). The mixin's ``_<op>_forward`` /
``_<op>_backward`` methods are the kernel pairs of the backend's table (``numba_backend.py``): the reference pair's
arguments, after the setup's result.

Transcendental functions come from ``_numba_math.py``: versions of exp, expm1, tanh, log1p and erfc that compile
to vector code (``math.exp`` and friends are scalar libm calls, slower than NumPy's SIMD loops). They compute in
float64, except exp and GELU's Phi(x), which have float32 versions for float32 arrays (twice as many values per
vector, and shorter polynomials: GELU's kernels are 3.5x faster with them, to about 1e-6 relative).

Measured at (128, 64, 16, 16) float32, forward + backward, 2 threads, reference NumPy code vs kernel (ms, medians):
leaky_relu 16.4 -> 0.6, hardtanh/relu6 1.4 -> 0.8, hardswish 6.2 -> 0.6, sigmoid 12.3 -> 1.1, elu 18.7 -> 2.8, silu
14.2 -> 1.4, gelu 167 -> 3.8 (13.4 with the float64 erfc; PyTorch 3.8; tanh form 12.8 -> 5.1), softplus forward 17.7
-> 3.2, mish 23.8 -> 4.8, tanh backward 1.1 -> 0.4. Inside the tanh and softplus pairs NumPy does one half (no
kernel): tanh forward (NumPy's SIMD tanh, 0.8, against 2.9) and the softplus backward (one product, 0.4 either way).
Softmax cross-entropy has no kernel: a row kernel measured (128, 10) 0.059 -> 0.046 ms forward + backward (and (512,
1000) 1.40 -> 0.62), nothing next to a training step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy
from numba import njit

from minidl.backend._numba_common import _empty_nchw, _native_dtypes, _nhwc
from minidl.backend._numba_math import (
    _erfc,
    _exp_le0,
    _expm1_nonpositive,
    _log1p_unit,
    _normal_cdf_float32,
    _tanh,
    _tanh_softplus,
)

_u = numpy.uint64  # unsigned flat indices (see _numba_kernels.py: they let LLVM vectorize)
_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_CUBIC = 0.044715


# ---------------------------------------------------------------------------------------------------- relu
@njit(cache=True, nogil=True)
def relu_forward(x, i0, i1, out, mask):
    """mask[i] = not (x[i] <= 0) (True for x > 0 and for NaN), out[i] = x[i] where mask else 0, flat [i0, i1):
    the reference's ``mask = ~(x <= 0); where(mask, x, 0)`` (NaN propagates, as in PyTorch) in one pass."""
    xf, of, mf = x.reshape(-1), out.reshape(-1), mask.reshape(-1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = xf[start + i]
        keep = not (v <= 0)
        mf[start + i] = keep
        of[start + i] = v if keep else 0


@njit(cache=True, nogil=True)
def relu_backward(dout, mask, i0, i1, dx):
    """dx[i] = dout[i] where mask[i] else 0, flat [i0, i1) (the reference's ``dout * mask``, except that a NaN or
    inf in dout stays out of the masked-off entries, as in PyTorch's threshold_backward)."""
    gf, mf, df = dout.reshape(-1), mask.reshape(-1), dx.reshape(-1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        df[start + i] = gf[start + i] if mf[start + i] else 0


@njit(cache=True, nogil=True)
def add_forward(a, b, i0, i1, out):
    """out[i] = a[i] + b[i], flat [i0, i1): the reference's ``a + b`` (a residual sum, or the gradients of a fork),
    run by the pool's threads instead of NumPy's one."""
    af, bf, of = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        of[start + i] = af[start + i] + bf[start + i]


@njit(cache=True, nogil=True)
def add_relu_forward(a, b, i0, i1, out, mask):
    """v = a[i] + b[i]; mask[i] = not (v <= 0); out[i] = v where mask else 0, flat [i0, i1): relu_forward(a + b)
    (a residual connection and the ReLU after it) in one pass."""
    af, bf, of, mf = a.reshape(-1), b.reshape(-1), out.reshape(-1), mask.reshape(-1)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = af[start + i] + bf[start + i]
        keep = not (v <= 0)
        mf[start + i] = keep
        of[start + i] = v if keep else 0


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
    """dx[i] = dout[i] * (0 if x <= -3, x / 3 + 1/2 if x < 3, else 1) (NaN x: slope 1, as the reference's ``where``)."""
    zero, one, half, three = dx.dtype.type(0), dx.dtype.type(1), dx.dtype.type(0.5), dx.dtype.type(3)
    start = _u(i0)
    for i in range(_u(i1 - i0)):
        v = x[start + i]
        slope = zero if v <= -three else (v / three + half if v < three else one)
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


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
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
    elif isinstance(half, numpy.float32):  # float32 arithmetic (see _normal_cdf_float32)
        for i in range(_u(i1 - i0)):
            v = x[start + i]
            out[start + i] = v * _normal_cdf_float32(v)[0]
    else:
        for i in range(_u(i1 - i0)):
            v = x[start + i]
            out[start + i] = v * T(0.5 * _erfc(-numpy.float64(v) / _SQRT_2))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
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
    elif isinstance(half, numpy.float32):
        for i in range(_u(i1 - i0)):
            v = x[start + i]
            c = -hundred if v < -hundred else (hundred if v > hundred else v)
            cdf, gauss = _normal_cdf_float32(v)
            dx[start + i] = dout[start + i] * (cdf + c * inv * gauss)
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


# ---------------------------------------------------------------------------------------------------- the mixin
def _flat_view(a: Any) -> Any:
    return numpy.ascontiguousarray(a).reshape(-1)


class ElementwiseKernelsMixin:
    """The activations' kernel pairs (entries of the backend's kernel table): each ``_<op>_forward(prepared, x,
    ...)`` returns the reference's output and a cache for its ``_<op>_backward(dout, cache)``."""

    _flat: Any

    def _elementwise(
        self, kernel: Any, arrays: tuple[Any, ...], scalars: tuple[Any, ...], outputs: tuple[Any, ...]
    ) -> Any:
        """Run ``kernel(*arrays, *scalars, i0, i1, *outputs)`` over the flat elements; returns the outputs, each an
        array of ``dtype`` (the given dtypes; scalars are converted to the first output's dtype, bools stay bools) in
        the shape of ``arrays[0]``: ``channels_last`` when every array is (:mod:`minidl.memory_format`; the kernels
        run over the arrays' memory in its own order, the same for all), else C-contiguous."""
        shape = arrays[0].shape
        kind = numpy.dtype(outputs[0]).type
        args = tuple(s if isinstance(s, bool) else kind(s) for s in scalars)
        views = tuple(_nhwc(a) for a in arrays)
        if all(v is not None for v in views):  # all channels_last: the same flat order, and the outputs keep it
            pairs = tuple(_empty_nchw(shape, dtype, True) for dtype in outputs)
            flat = tuple(v.reshape(-1) for v in views)
            self._flat(kernel, flat[0].size, (*flat, *args), tuple(h.reshape(-1) for _, h in pairs))
            return tuple(out for out, _ in pairs)
        outs = tuple(numpy.empty(shape, dtype=dtype) for dtype in outputs)
        flat = tuple(_flat_view(a) for a in arrays)
        self._flat(kernel, flat[0].size, (*flat, *args), tuple(o.reshape(-1) for o in outs))
        return outs

    # ----------------------------------------------------------------- relu (activation.py)
    @_native_dtypes
    def _relu_forward(self, prepared: Any, x: Any) -> tuple[Any, Any]:
        """``(out, mask)`` with ``mask = ~(x <= 0)`` (True for x > 0 and NaN) and ``out = where(mask, x, 0)``, the
        reference's two passes in one."""
        out, mask = self._elementwise(relu_forward, (x,), (), (x.dtype, bool))
        return out, mask

    @_native_dtypes
    def _relu_backward(self, dout: Any, mask: Any) -> Any:
        """``dout`` where ``mask``, else 0."""
        return self._elementwise(relu_backward, (dout, mask), (), (dout.dtype,))[0]

    @_native_dtypes
    def _add_forward(self, prepared: Any, a: Any, b: Any) -> tuple[Any, Any]:
        """``a + b`` for two arrays of the same shape and dtype, over the pool's threads; no cache (the backward
        passes dout on)."""
        return self._elementwise(add_forward, (a, b), (), (a.dtype,))[0], None

    @staticmethod
    def _add_backward(dout: Any, cache: Any) -> Any:
        """The gradient of each term of :meth:`_add_forward`: ``dout`` itself (returned once, as the reference)."""
        return dout

    @_native_dtypes
    def _add_relu_forward(self, prepared: Any, a: Any, b: Any) -> tuple[Any, Any]:
        """``relu_forward(a + b)`` (``(out, mask)``) for two arrays of the same shape and dtype, in one pass."""
        out, mask = self._elementwise(add_relu_forward, (a, b), (), (a.dtype, bool))
        return out, mask

    # ----------------------------------------------------------------- piecewise linear (activation.py)
    @_native_dtypes
    def _leaky_relu_forward(self, prepared: Any, x: Any, negative_slope: float = 0.01) -> tuple[Any, Any]:
        """``(out, (mask, negative_slope))``: out = x where x > 0 else negative_slope x, in one pass."""
        out, mask = self._elementwise(leaky_relu_forward, (x,), (negative_slope,), (x.dtype, bool))
        return out, (mask, negative_slope)

    def _leaky_relu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout`` where the mask, else ``negative_slope * dout``."""
        mask, negative_slope = cache
        return self._masked_slope(dout, mask, negative_slope)

    @_native_dtypes
    def _masked_slope(self, dout: Any, mask: Any, negative_slope: float) -> Any:
        return self._elementwise(leaky_relu_backward, (dout, mask), (negative_slope,), (dout.dtype,))[0]

    @_native_dtypes
    def _hardtanh_forward(self, prepared: Any, x: Any, min_val: float = -1.0, max_val: float = 1.0) -> tuple[Any, Any]:
        """``(clip(x, min_val, max_val), mask min_val < x < max_val)`` in one pass (min_val <= max_val)."""
        return self._elementwise(hardtanh_forward, (x,), (min_val, max_val), (x.dtype, bool))

    @_native_dtypes
    def _hardtanh_backward(self, dout: Any, mask: Any) -> Any:
        """``dout * mask`` (also ReLU6's backward)."""
        return self._elementwise(mask_backward, (dout, mask), (), (dout.dtype,))[0]

    @_native_dtypes
    def _hardswish_forward(self, prepared: Any, x: Any) -> tuple[Any, Any]:
        """``(x * clip(x + 3, 0, 6) / 6, x)``."""
        return self._elementwise(hardswish_forward, (x,), (), (x.dtype,))[0], x

    @_native_dtypes
    def _hardswish_backward(self, dout: Any, x: Any) -> Any:
        """``dout * f'(x)``, f' = 0, x / 3 + 1/2 or 1 (x < -3, -3 <= x <= 3, x > 3)."""
        return self._elementwise(hardswish_backward, (dout, x), (), (dout.dtype,))[0]

    # ----------------------------------------------------------------- sigmoid, tanh (activation.py)
    @_native_dtypes
    def _sigmoid_forward(self, prepared: Any, x: Any) -> tuple[Any, Any]:
        """``(y, y)``, y = sigmoid(x) without overflow."""
        out = self._elementwise(sigmoid_forward, (x,), (), (x.dtype,))[0]
        return out, out

    @_native_dtypes
    def _sigmoid_backward(self, dout: Any, y: Any) -> Any:
        """``dout * y * (1 - y)``."""
        return self._elementwise(sigmoid_backward, (dout, y), (), (dout.dtype,))[0]

    def _tanh_forward(self, prepared: Any, x: Any) -> tuple[Any, Any]:
        """``(y, y)``, y = tanh(x): NumPy's own (its SIMD tanh is faster than a kernel's)."""
        out = numpy.tanh(x)
        return out, out

    @_native_dtypes
    def _tanh_backward(self, dout: Any, y: Any) -> Any:
        """``dout * (1 - y^2)``."""
        return self._elementwise(tanh_backward, (dout, y), (), (dout.dtype,))[0]

    # ----------------------------------------------------------------- smooth, gated (activation_smooth/_gated.py)
    @_native_dtypes
    def _elu_forward(self, prepared: Any, x: Any, alpha: float = 1.0) -> tuple[Any, Any]:
        """``(out, (mask, out, alpha))``: out = x where x > 0 else alpha (e^x - 1)."""
        out, mask = self._elementwise(elu_forward, (x,), (alpha,), (x.dtype, bool))
        return out, (mask, out, alpha)

    def _elu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout`` where the mask, else ``dout * (y + alpha)``."""
        return self._elu_backward_arrays(dout, *cache)

    @_native_dtypes  # (on the cache's arrays too: it sees only top-level arguments)
    def _elu_backward_arrays(self, dout: Any, mask: Any, out: Any, alpha: float) -> Any:
        return self._elementwise(elu_backward, (dout, mask, out), (alpha,), (dout.dtype,))[0]

    @_native_dtypes
    def _silu_forward(self, prepared: Any, x: Any) -> tuple[Any, Any]:
        """``(x * s, (x, s))``, s = sigmoid(x)."""
        out, s = self._elementwise(silu_forward, (x,), (), (x.dtype, x.dtype))
        return out, (x, s)

    def _silu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * s * (1 + x (1 - s))``."""
        return self._silu_backward_arrays(dout, *cache)

    @_native_dtypes
    def _silu_backward_arrays(self, dout: Any, x: Any, s: Any) -> Any:
        return self._elementwise(silu_backward, (dout, x, s), (), (dout.dtype,))[0]

    @_native_dtypes
    def _gelu_forward(self, prepared: Any, x: Any, approximate: str = "none") -> tuple[Any, Any]:
        """``(x * Phi(x), (x, approximate))`` (exact: Cody's erfc in float64, Numerical Recipes' fit for float32; or
        the tanh form)."""
        out = self._elementwise(gelu_forward, (x,), (approximate == "tanh",), (x.dtype,))[0]
        return out, (x, approximate)

    def _gelu_backward(self, dout: Any, cache: Any) -> Any:
        """``dout * (Phi(x) + x phi(x))`` (or the tanh form's derivative)."""
        return self._gelu_backward_arrays(dout, *cache)

    @_native_dtypes
    def _gelu_backward_arrays(self, dout: Any, x: Any, approximate: str) -> Any:
        return self._elementwise(gelu_backward, (dout, x), (approximate != "none",), (dout.dtype,))[0]

    @_native_dtypes
    def _softplus_forward(self, prepared: Any, x: Any, beta: float = 1.0, threshold: float = 20.0) -> tuple[Any, Any]:
        """``(out, slope)``: out = softplus(beta x) / beta and slope = sigmoid(beta x), or x and 1 where
        beta x > threshold."""
        return self._elementwise(softplus_forward, (x,), (beta, threshold), (x.dtype, x.dtype))

    def _softplus_backward(self, dout: Any, slope: Any) -> Any:
        """``dout * slope``: one NumPy product (a kernel is no faster)."""
        return dout * slope

    @_native_dtypes
    def _mish_forward(self, prepared: Any, x: Any) -> tuple[Any, Any]:
        """``(x * tanh(softplus(x)), x)``."""
        return self._elementwise(mish_forward, (x,), (), (x.dtype,))[0], x

    @_native_dtypes
    def _mish_backward(self, dout: Any, x: Any) -> Any:
        """``dout * (t + x sigmoid(x) (1 - t^2))``, t = tanh(softplus(x))."""
        return self._elementwise(mish_backward, (dout, x), (), (dout.dtype,))[0]
