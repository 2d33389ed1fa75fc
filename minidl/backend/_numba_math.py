"""Vectorizable elementary functions for the Numba kernels of ``_numba_elementwise.py``.

``math.exp``/``tanh``/``erfc`` compile to scalar libm calls (4-17 ns per element: Numba has no SVML here), several
times slower than NumPy's SIMD loops, so an activation kernel built on them loses to a reference that is one
``np.tanh``. These versions compile to vector code inside the kernels' loops (``inline="always"``):

* :func:`_exp_le0`: e^x for x <= 0 (the only exponentials the activations and the softmax need: e^{-|x|},
  e^{z - max z}, e^{-x^2/2}): Cody-Waite reduction x = k ln 2 + r, a Taylor polynomial for e^r, and 2^k built from
  exponent bits; in float32 arithmetic for a float32 x (:func:`_exp_sum_nonpositive_float32`, which also takes the
  exponent as an unrounded sum a + b);
* :func:`_expm1_nonpositive`, :func:`_tanh`, :func:`_log1p_unit` (log(1 + z) on [0, 1]);
* :func:`_erfc`: the reference's own W. J. Cody approximations (``minidl/nn/_activation_common.py``), in float64;
  :func:`_normal_cdf_float32`, GELU's Phi(x) and e^{-x^2/2} for a float32 x in float32 arithmetic (3.5x faster;
  x^2 split exactly with :func:`_fma_float32`, LLVM's fused multiply-add);
* :func:`_tanh_softplus`: Mish's tanh(softplus(x)) as a rational function of e^{-|x|}.

The float64 versions agree with libm to a few ulp (GELU's with the reference's erf to about 1e-14), the float32
ones to about 1e-6 relative;
``tests/backend/test_numba_elementwise.py`` checks them down to subnormal results.
"""

from __future__ import annotations

import math

import numpy
from llvmlite import ir
from numba import config, njit, types
from numba.extending import intrinsic

from minidl import _erf_coefficients as cody  # Cody's erf coefficients

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with trailing zero bits: k _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_EXP_MIN = -745.2  # e^x rounds to 0 in float64 below about -745.13
# the float32 version's constants, float32 scalars so that its arithmetic stays in float32 (8 lanes per AVX2 vector)
_F32 = numpy.float32
_LOG2E_F, _HALF_F = _F32(_LOG2E), _F32(0.5)
_LN2_HI_F, _LN2_LO_F = _F32(0.693359375), _F32(-2.12194440e-4)  # Cephes' split: k _LN2_HI_F exact for |k| < 2^15
_EXP_MIN_F = _F32(-104.0)  # e^x rounds to 0 in float32 below about -103.97
_TAYLOR_F = tuple(_F32(1.0 / math.factorial(n)) for n in range(8))


# ---------------------------------------------------------------------------------------------------- exp
@intrinsic
def _float64_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bits are the int64 ``bits`` (a bitcast, which LLVM vectorizes)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _exp_nonpositive(x):
    """e^x for float64 x <= 0 (NaN stays NaN, -inf gives 0), to about 1 ulp, in code LLVM vectorizes.

    ``math.exp`` is a scalar libm call (no SVML here): about 4-9 ns per element against about 1 ns for this. Every
    exponential of these kernels has a non-positive argument (e^{-|x|}, e^{z - max z}, e^{-x^2/2}), so only the
    lower range is handled: x = k ln 2 + r with k = round(x / ln 2) and |r| <= ln(2) / 2 (Cody and Waite's two-part
    ln 2), e^r by its Taylor polynomial of degree 12 (remainder below 2e-16 relative), and 2^k = 2^{k1} 2^{k2}
    built from exponent bits (two factors, so that subnormal results down to e^{-745} come out right).
    """
    xc = x if x > _EXP_MIN else _EXP_MIN
    k = math.floor(xc * _LOG2E + 0.5)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ki = numpy.int64(k)
    k1 = ki >> 1
    y = p * _float64_from_bits((k1 + 1023) << 52) * _float64_from_bits((ki - k1 + 1023) << 52)
    if x != x:
        return x
    return y if x > _EXP_MIN else 0.0


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bits are the int32 ``bits``."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _fma_float32(typingctx, a, b, c):
    """a b + c for float32 a, b, c, rounded once (LLVM's ``fma``, which it vectorizes): with h = a b rounded,
    _fma_float32(a, b, -h) is that rounding's error exactly (unless the product underflows), so a b = h +
    _fma_float32(a, b, -h)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fma, args)

    return sig, codegen


if config.DISABLE_JIT:  # plain Python (NUMBA_DISABLE_JIT=1, for debugging): the same bit casts through NumPy

    def _float64_from_bits(bits):
        return numpy.int64(bits).view(numpy.float64)

    def _float32_from_bits(bits):
        return numpy.int32(bits).view(numpy.float32)

    def _fma_float32(a, b, c):  # (a float32 product is exact in float64; the sum then rounds twice, rarely apart)
        return numpy.float32(numpy.float64(a) * numpy.float64(b) + numpy.float64(c))


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _exp_nonpositive_float32(x):
    """e^x for float32 x <= 0 in float32 arithmetic, as :func:`_exp_nonpositive` with Cephes' float32 split of ln 2
    and the Taylor polynomial of degree 7 (remainder below 6e-9 relative: float32 rounding dominates):
    :func:`_exp_sum_nonpositive_float32` of x and -0 (the same bits as computing it for x alone: x + -0 is x, also
    for x = -0, so LLVM drops those additions)."""
    return _exp_sum_nonpositive_float32(x, _F32(-0.0))


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _exp_sum_nonpositive_float32(a, b):
    """e^(a + b) for float32 a and b with a + b <= 0, in float32 arithmetic, without rounding the sum: k = round((a + b)
    / ln 2) (the rounded sum is good enough for k), then r = ((a - k ln2_hi) - k ln2_lo) + b, e^r by its Taylor
    polynomial and 2^k from exponent bits (two factors, for subnormal results). a - k ln2_hi is exact where |a| is
    large (the two are within a factor of 2 of each other), so a may be as large as the exponents get (about -110:
    GELU's -x^2 / 2) and the error is that of r, with |b| up to about 2. NaN gives NaN, a sum at or below -104 (-inf
    too) gives 0."""
    c = _TAYLOR_F
    total = a + b
    inside = total > _EXP_MIN_F
    ac = a if inside else _EXP_MIN_F
    bc = b if inside else _F32(-0.0)
    k = numpy.floor((total if inside else _EXP_MIN_F) * _LOG2E_F + _HALF_F)  # (ac + bc)
    r = ((ac - k * _LN2_HI_F) - k * _LN2_LO_F) + bc
    p = c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    ki = numpy.int32(k)
    k1 = ki >> numpy.int32(1)
    bias = numpy.int32(127)
    shift = numpy.int32(23)
    y = p * _float32_from_bits((k1 + bias) << shift) * _float32_from_bits((ki - k1 + bias) << shift)
    if total != total:
        return total
    return y if inside else _F32(0.0)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _exp_le0(x):
    """e^x for x <= 0 in x's precision: float32 arithmetic for a float32 x, else float64 (the type test is resolved
    when the kernel is compiled)."""
    if isinstance(x, numpy.float32):
        return _exp_nonpositive_float32(x)
    return _exp_nonpositive(numpy.float64(x))


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _expm1_nonpositive(x):
    """e^x - 1 for float64 x <= 0 (NaN stays NaN, -inf gives -1), vectorizable: for x > -ln(2)/2 the Taylor series
    x (1 + x/2 + x^2/6 + ... + x^12/13!) (no cancellation; remainder below 1e-17 relative), else e^x - 1 (there
    |e^x - 1| > 0.29, so the subtraction loses nothing)."""
    p = 1.0 / 6227020800.0
    p = p * x + 1.0 / 479001600.0
    p = p * x + 1.0 / 39916800.0
    p = p * x + 1.0 / 3628800.0
    p = p * x + 1.0 / 362880.0
    p = p * x + 1.0 / 40320.0
    p = p * x + 1.0 / 5040.0
    p = p * x + 1.0 / 720.0
    p = p * x + 1.0 / 120.0
    p = p * x + 1.0 / 24.0
    p = p * x + 1.0 / 6.0
    p = p * x + 0.5
    p = p * x + 1.0
    return x * p if x > -0.34657359027997264 else _exp_le0(x) - 1.0


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _tanh(x):
    """tanh(x) for float64 x as copysign(-m / (2 + m), x) with m = e^{-2|x|} - 1 (vectorizable; relative error
    a few ulp, also for tiny |x| where m ~ -2|x|; +-inf give +-1, NaN stays NaN)."""
    m = _expm1_nonpositive(-2.0 * abs(x))
    return math.copysign(-m / (2.0 + m), x)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _log1p_unit(z):
    """log(1 + z) for float64 z in [0, 1] (e^{-|x|} of softplus), vectorizable: 2 atanh(s) with s = z / (2 + z) in
    [0, 1/3], by its series 2 (s + s^3/3 + ... + s^33/33) (remainder below 1e-17 relative; NaN stays NaN)."""
    s = z / (2.0 + z)
    s2 = s * s
    p = 1.0 / 33.0
    for k in range(31, 0, -2):
        p = p * s2 + 1.0 / k
    return 2.0 * s * p


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _erfc(x):
    """erfc(x) = 1 - erf(x) for float64 x, vectorizable: the reference's W. J. Cody approximations
    (``minidl/nn/_activation_common.py``, same coefficients, same branches), every branch computed and one selected
    (instead of libm's scalar ``math.erfc``, about 10 ns per element); NaN stays NaN, erfc(-inf) = 2, erfc(inf) = 0."""
    y = abs(x)
    ys = y if y < cody.ERF_SMALL else cody.ERF_SMALL
    z = ys * ys
    num, den = cody.A[4] * z, z
    for i in range(3):
        num, den = (num + cody.A[i]) * z, (den + cody.B[i]) * z
    erf_small = ys * (num + cody.A[3]) / (den + cody.B[3])
    mid = y if y < 4.0 else 4.0
    mid = mid if mid > cody.ERF_SMALL else cody.ERF_SMALL
    num, den = cody.C[8] * mid, mid
    for i in range(7):
        num, den = (num + cody.C[i]) * mid, (den + cody.D[i]) * mid
    r_mid = (num + cody.C[7]) / (den + cody.D[7])
    far = y if y < cody.ERFC_ZERO else cody.ERFC_ZERO
    far = far if far > 4.0 else 4.0
    w = 1.0 / (far * far)
    num, den = cody.P[5] * w, w
    for i in range(4):
        num, den = (num + cody.P[i]) * w, (den + cody.Q[i]) * w
    r_far = (1.0 / math.sqrt(math.pi) - w * (num + cody.P[4]) / (den + cody.Q[4])) / far
    r = r_mid if y <= 4.0 else r_far
    # exp(-y^2) as exp(-s^2) exp(-(y - s)(y + s)), s = y rounded down to 1/16 (the reference's split)
    yc = y if y < cody.ERFC_ZERO else cody.ERFC_ZERO
    yc = yc if yc > cody.ERF_SMALL else cody.ERF_SMALL
    s = numpy.floor(yc * 16.0) / 16.0
    large = _exp_le0(-s * s) * _exp_le0(-(yc - s) * (yc + s)) * r
    large = 0.0 if y >= cody.ERFC_ZERO else large
    value = (
        (1.0 + erf_small if x < 0 else 1.0 - erf_small) if y <= cody.ERF_SMALL else (2.0 - large if x < 0 else large)
    )
    return x if x != x else value


# Numerical Recipes' Chebyshev fit of erfc (Press et al., "Numerical Recipes", 2nd ed., section 6.2, ``erfcc``):
# erfc(z) = t exp(-z^2 + P(t)) for z >= 0, t = 1 / (1 + z / 2), P of degree 9 with these coefficients (P(t)[0] first),
# fractional error below 1.2e-7 for every z >= 0: one formula, no branches, float32 precision.
_ERFC_NR = tuple(
    _F32(c)
    for c in (
        -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
        -0.82215223, 0.17087277,
    )
)  # fmt: skip
_X_MAX_F = _F32(14.9)  # |x| beyond which Phi(-|x|) and e^{-x^2/2} are below float32's smallest subnormal


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _normal_cdf_float32(x):
    """``(Phi(x), e^{-x^2/2})`` for a float32 x in float32 arithmetic: Phi the standard normal CDF,
    Phi(x) = erfc(-x / sqrt 2) / 2, relative error about 1e-6 down to float32's smallest normal results (GELU and
    its derivative for float32 inputs, about 3.5x faster than :func:`_erfc` in float64; NaN gives NaN, Phi(-inf) = 0,
    Phi(inf) = 1).

    With z = |x| / sqrt 2 and t = 1 / (1 + z / 2), erfc(z) = t e^{-z^2} e^{P(t)} (``_ERFC_NR``), one exponential of
    -z^2 + P(t). z^2 = x^2 / 2 is not rounded as a whole (its rounding error would be multiplied by up to 110 in the
    exponent): x^2 = h + l exactly, h the rounded product and l its error (:func:`_fma_float32`), so that -z^2 + P(t)
    = -h / 2 + (P(t) - l / 2), the first term exact and large, the second small, which
    :func:`_exp_sum_nonpositive_float32` adds without rounding the sum. P(t) = ln(erfc(z) / t) + z^2 is <= 0 for
    every z (up to the fit's error, at z = 0), so every exponential has a non-positive argument. (An earlier version
    split x^2 with |x| rounded to a multiple of 1/16, as Cody does, and took two exponentials: 94 instructions per 8
    values against 68, 1.2x slower, the same accuracy.)"""
    y = abs(x)
    y = y if y < _X_MAX_F else _X_MAX_F  # NaN becomes _X_MAX_F here: restored at the end
    half = _F32(0.5)
    h = y * y
    a = -half * h  # -x^2 / 2 = a + d exactly
    d = -half * _fma_float32(y, y, -h)
    t = _F32(1.0) / (_F32(1.0) + half * _F32(0.7071067811865476) * y)
    c = _ERFC_NR
    p = c[9]
    for k in range(8, -1, -1):
        p = p * t + c[k]
    p = p if p < _F32(0.0) else _F32(0.0)
    lower = half * t * _exp_sum_nonpositive_float32(a, d + p)  # Phi(-|x|) = erfc(z) / 2
    gauss = _exp_sum_nonpositive_float32(a, d)  # (a forward without it skips this exponential)
    cdf = lower if x <= _F32(0.0) else _F32(1.0) - lower
    if x != x:
        return x, x
    return cdf, gauss


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _tanh_softplus(w, u):
    """tanh(softplus(w)) for float64 w with u = e^{-|w|}, without log or tanh: with E = e^w, tanh(log(1 + E)) =
    E (E + 2) / (E (E + 2) + 2), which is n / (n + 2) with n = u (u + 2) for w <= 0 and, divided through by E^2,
    (1 + 2u) / (1 + 2u + 2u^2) for w > 0 (no overflow, no cancellation; NaN stays NaN)."""
    n = u * (u + 2.0)
    return (1.0 + 2.0 * u) / (1.0 + 2.0 * u + 2.0 * u * u) if w > 0 else n / (n + 2.0)
