r"""Shared pieces of the activation files: the error function, stable sigmoid/softplus, the Module base.

GELU's exact form needs the error function, which NumPy lacks: :func:`_erf` / :func:`_erfc` implement W. J. Cody's
rational Chebyshev approximations (Math. Comp. 23, 1969; the ``calerf`` routine behind SciPy), vectorized over
arrays of any backend, with a relative error below about 1e-15 in float64:

* :math:`|x| \le 0.46875`: :math:`\mathrm{erf}(x) = x\, P(x^2) / Q(x^2)`;
* :math:`0.46875 < |x| \le 4`: :math:`\mathrm{erfc}(|x|) = e^{-x^2} R(|x|)`;
* :math:`|x| > 4`: :math:`\mathrm{erfc}(|x|) = \frac{e^{-x^2}}{|x|} \big(\frac{1}{\sqrt\pi} - S(1/x^2)\big)`,

with P, Q, R, S fixed polynomials/rational functions; erf = 1 - erfc above 0.46875 and erf(-x) = -erf(x). Computing
erfc directly (instead of 1 - erf) keeps its relative precision where it is tiny.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.backend import get_array_module
from minidl.nn._checks import check_array, check_grad_output
from minidl.nn.module import Module

# ---------------------------------------------------------------------------------------------- the error function
# W. J. Cody's coefficients: erf(y) = y P(y^2)/Q(y^2) on [0, 0.46875]; erfc(y) = exp(-y^2) R(y) on (0.46875, 4] and
# exp(-y^2) / y (1/sqrt(pi) - S(1/y^2)) beyond 4, with R, S rational functions.
_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_Q = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_ERF_SMALL = 0.46875  # below it erf itself is approximated; above it erfc (no cancellation in 1 - erf)
_ERFC_ZERO = 27.0  # erfc(27) ~ 5e-319: zero in float64


def _erf_small(y: Any) -> Any:
    """erf(y) for 0 <= y <= 0.46875: y * P(y^2) / Q(y^2), evaluated by Horner's rule."""
    z = y * y
    num, den = _A[4] * z, z
    for a, b in zip(_A[:3], _B[:3], strict=True):
        num, den = (num + a) * z, (den + b) * z
    return y * (num + _A[3]) / (den + _B[3])


def _erfc_large(xp: Any, y: Any) -> Any:
    """erfc(y) for y >= 0.46875 (values below are clipped, so compute it anywhere and select with ``where``)."""
    mid = xp.clip(y, _ERF_SMALL, 4.0)
    num, den = _C[8] * mid, mid
    for c, d in zip(_C[:7], _D[:7], strict=True):
        num, den = (num + c) * mid, (den + d) * mid
    r_mid = (num + _C[7]) / (den + _D[7])
    far = xp.clip(y, 4.0, _ERFC_ZERO)
    z = 1.0 / (far * far)
    num, den = _P[5] * z, z
    for p, q in zip(_P[:4], _Q[:4], strict=True):
        num, den = (num + p) * z, (den + q) * z
    r_far = (1.0 / math.sqrt(math.pi) - z * (num + _P[4]) / (den + _Q[4])) / far
    r = xp.where(y <= 4.0, r_mid, r_far)
    # exp(-y^2) split as exp(-s^2) exp(-(y - s)(y + s)) with s = y rounded down to 1/16: keeps full precision
    yc = xp.clip(y, _ERF_SMALL, _ERFC_ZERO)
    s = xp.trunc(yc * 16.0) / 16.0
    out = xp.exp(-s * s) * xp.exp(-(yc - s) * (yc + s)) * r
    return xp.where(y >= _ERFC_ZERO, 0.0, out)


def _erf(x: Any) -> Any:
    r"""The error function :math:`\mathrm{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2} dt`, elementwise (Cody).

    Examples:
        >>> import math
        >>> abs(float(_erf(np.array(0.5))) - math.erf(0.5)) < 1e-16
        True
    """
    xp = _xp(x)
    y = xp.abs(x)
    small = _erf_small(xp.minimum(y, _ERF_SMALL))
    big = 1.0 - _erfc_large(xp, y)
    value = xp.where(y <= _ERF_SMALL, small, big)
    return xp.where(x < 0, -value, value)


def _erfc(x: Any) -> Any:
    """The complementary error function 1 - erf(x), accurate also where it is tiny (large x). A float16 x is
    computed in float32 (the rational approximations' intermediate values overflow float16)."""
    xp = _xp(x)
    if x.dtype == xp.float16:
        x = x.astype(xp.float32)
    y = xp.abs(x)
    small = 1.0 - xp.where(x < 0, -1.0, 1.0) * _erf_small(xp.minimum(y, _ERF_SMALL))
    r = _erfc_large(xp, y)
    return xp.where(y <= _ERF_SMALL, small, xp.where(x < 0, 2.0 - r, r))


def _xp(x: Any) -> Any:
    return get_array_module(x)


def _sigmoid(xp: Any, x: Any) -> Any:
    """1 / (1 + exp(-x)) without overflow: with z = exp(-|x|) <= 1, it is 1/(1+z) for x >= 0 and z/(1+z) else."""
    z = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0, z) / (1.0 + z)


def _softplus(xp: Any, x: Any) -> Any:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), which never overflows."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _cast(x: Any, value: Any) -> Any:
    """Keep the input's dtype (NumPy scalars from Python floats are float64)."""
    return value.astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------------------------- the Module base
def _check_inplace(where: str, inplace: Any) -> bool:
    if not isinstance(inplace, bool):
        raise TypeError(f"{where}: inplace must be a bool, got {inplace!r}")
    return inplace


class _Activation(Module):
    """Shared forward/backward of the activation modules: validate, call the functional pair, cache, check."""

    _forward_fn: Any = None
    _backward_fn: Any = None
    inplace = False

    def _hyperparameters(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Any) -> Any:
        check_array(type(self).__name__, x)
        out, cache = type(self)._forward_fn(x, **self._hyperparameters())
        self._save_for_backward((cache, tuple(x.shape)))
        return out

    def backward(self, dout: Any) -> Any:
        cache, shape = self._pop_cache()
        check_grad_output(type(self).__name__, dout, shape)
        dx = type(self)._backward_fn(dout, cache)
        assert tuple(dx.shape) == shape, f"{type(self).__name__}.backward: dx shape {dx.shape} != input shape {shape}"
        return dx

    def extra_repr(self) -> str:
        parts = [f"{k}={v}" for k, v in self._hyperparameters().items()]
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)
