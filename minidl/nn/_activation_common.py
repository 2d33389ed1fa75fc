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

from minidl import _erf_coefficients as cody
from minidl.backend import get_array_module
from minidl.nn._checks import check_array
from minidl.nn.module import Module

# ---------------------------------------------------------------------------------------------- the error function
# W. J. Cody's coefficients (minidl/_erf_coefficients.py, shared with the Numba kernels): erf(y) = y P(y^2)/Q(y^2) on
# [0, 0.46875]; erfc(y) = exp(-y^2) R(y) on (0.46875, 4] and exp(-y^2) / y (1/sqrt(pi) - S(1/y^2)) beyond 4.


def _erf_small(y: Any) -> Any:
    """erf(y) for 0 <= y <= 0.46875: y * P(y^2) / Q(y^2), evaluated by Horner's rule."""
    z = y * y
    num, den = cody.A[4] * z, z
    for a, b in zip(cody.A[:3], cody.B[:3], strict=True):
        num, den = (num + a) * z, (den + b) * z
    return y * (num + cody.A[3]) / (den + cody.B[3])


def _erfc_large(xp: Any, y: Any) -> Any:
    """erfc(y) for y >= 0.46875 (values below are clipped, so compute it anywhere and select with ``where``)."""
    mid = xp.clip(y, cody.ERF_SMALL, 4.0)
    num, den = cody.C[8] * mid, mid
    for c, d in zip(cody.C[:7], cody.D[:7], strict=True):
        num, den = (num + c) * mid, (den + d) * mid
    r_mid = (num + cody.C[7]) / (den + cody.D[7])
    far = xp.clip(y, 4.0, cody.ERFC_ZERO)
    z = 1.0 / (far * far)
    num, den = cody.P[5] * z, z
    for p, q in zip(cody.P[:4], cody.Q[:4], strict=True):
        num, den = (num + p) * z, (den + q) * z
    r_far = (1.0 / math.sqrt(math.pi) - z * (num + cody.P[4]) / (den + cody.Q[4])) / far
    r = xp.where(y <= 4.0, r_mid, r_far)
    # exp(-y^2) split as exp(-s^2) exp(-(y - s)(y + s)) with s = y rounded down to 1/16: keeps full precision
    yc = xp.clip(y, cody.ERF_SMALL, cody.ERFC_ZERO)
    s = xp.trunc(yc * 16.0) / 16.0
    out = xp.exp(-s * s) * xp.exp(-(yc - s) * (yc + s)) * r
    return xp.where(y >= cody.ERFC_ZERO, 0.0, out)


def _erf(x: Any) -> Any:
    r"""The error function :math:`\mathrm{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2} dt`, elementwise (Cody).

    Examples:
        >>> import math
        >>> abs(float(_erf(np.array(0.5))) - math.erf(0.5)) < 1e-16
        True
    """
    xp = _xp(x)
    y = xp.abs(x)
    small = _erf_small(xp.minimum(y, cody.ERF_SMALL))
    big = 1.0 - _erfc_large(xp, y)
    value = xp.where(y <= cody.ERF_SMALL, small, big)
    return xp.where(x < 0, -value, value)


def _erfc(x: Any) -> Any:
    """The complementary error function 1 - erf(x), accurate also where it is tiny (large x). A float16 x is
    computed in float32 (the rational approximations' intermediate values overflow float16)."""
    xp = _xp(x)
    if x.dtype == xp.float16:
        x = x.astype(xp.float32)
    y = xp.abs(x)
    small = 1.0 - xp.where(x < 0, -1.0, 1.0) * _erf_small(xp.minimum(y, cody.ERF_SMALL))
    r = _erfc_large(xp, y)
    return xp.where(y <= cody.ERF_SMALL, small, xp.where(x < 0, 2.0 - r, r))


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


def _unary_setup(where: str) -> Any:
    """The setup of an elementwise pair ``<op>_forward(x, *hyperparameters)``: x must be a floating array of the
    current backend (the backend is returned)."""

    def setup(x: Any, *hyperparameters: Any, **named: Any) -> Any:
        return check_array(where, x)

    setup.__name__ = f"{where}_setup"
    return setup


class _Activation(Module):
    """What the activation modules share: forward runs the op's pair, saves its cache, backward runs the other half.

    A subclass names its pair in two one-line methods, ``_pair_forward(x)`` (e.g. ``F.relu_forward(x)``) and
    ``_pair_backward(dout, cache)``, and its hyperparameters (for the repr) in ``_hyperparameters()``.
    """

    inplace = False

    def _hyperparameters(self) -> dict[str, Any]:
        return {}

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        raise NotImplementedError

    def forward(self, x: Any) -> Any:
        out, cache = self._pair_forward(x)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return self._pair_backward(dout, cache)

    def _where(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        parts = [f"{k}={v}" for k, v in self._hyperparameters().items()]
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)
