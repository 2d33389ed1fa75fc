r"""Smooth activations: ELU, GELU, SiLU (swish), Softplus and Mish (the rest are in :mod:`minidl.nn.activation`).

===========  =================================================  =================================================
op           forward                                            derivative (what the cache holds)
===========  =================================================  =================================================
elu          :math:`x` if :math:`x > 0` else                    1 or :math:`y + \alpha` (mask, output)
             :math:`\alpha (e^x - 1)`
silu         :math:`x \sigma(x)`                                :math:`\sigma(x)(1 + x (1 - \sigma(x)))` (x, s)
gelu         :math:`x \Phi(x)`, :math:`\Phi` the normal CDF      :math:`\Phi(x) + x \varphi(x)` (input)
softplus     :math:`\frac{1}{\beta} \log(1 + e^{\beta x})`       :math:`\sigma(\beta x)` (the derivative itself)
mish         :math:`x \tanh(\mathrm{softplus}(x))`              :math:`t + x \sigma(x) (1 - t^2)` (input)
===========  =================================================  =================================================

:math:`\Phi(x) = \tfrac12 \mathrm{erfc}(-x / \sqrt 2)`, with the error function of
:mod:`minidl.nn._activation_common` (NumPy has none). Every backward is :math:`dx = dout \odot f'(x)`. Exponentials
only ever see arguments that cannot overflow (:math:`e^{\min(x, 0)}`, :math:`e^{-|x|}`).

PyTorch's ``inplace=True`` is accepted where PyTorch has it, but minidl never overwrites the input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._activation_common import _Activation, _cast, _check_inplace, _erfc, _sigmoid, _softplus, _xp
from minidl.nn._checks import check_array, check_float

__all__ = [
    "ELU",
    "GELU",
    "Mish",
    "SiLU",
    "Softplus",
    "elu_backward",
    "elu_forward",
    "gelu_backward",
    "gelu_forward",
    "mish_backward",
    "mish_forward",
    "silu_backward",
    "silu_forward",
    "softplus_backward",
    "softplus_forward",
]


def elu_forward(x: Any, alpha: float = 1.0) -> tuple[Any, Any]:
    """``y = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``. Cache: ``(mask, out, alpha)``."""
    be = check_array("elu_forward", x)
    kernel = getattr(be, "elu_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x, alpha)  # the same (out, cache) in one pass
    xp = be.xp
    mask = x > 0
    out = xp.where(mask, x, alpha * xp.expm1(xp.minimum(x, 0)))  # minimum: exp never sees the large positives
    return _cast(x, out), (mask, out, alpha)


def elu_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout`` where ``x > 0``, else ``dout * alpha * exp(x) = dout * (y + alpha)``."""
    kernel = getattr(check_array("elu_backward", dout, what="gradient"), "elu_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    mask, out, alpha = cache
    return _xp(dout).where(mask, dout, dout * (out + alpha))


def silu_forward(x: Any) -> tuple[Any, Any]:
    """``y = x * sigmoid(x)`` (also called swish). Cache: ``(x, sigmoid(x))``."""
    be = check_array("silu_forward", x)
    kernel = getattr(be, "silu_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x)
    s = _cast(x, _sigmoid(be.xp, x))
    return x * s, (x, s)


def silu_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    kernel = getattr(check_array("silu_backward", dout, what="gradient"), "silu_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    x, s = cache
    return dout * s * (1 + x * (1 - s))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_forward(x: Any, approximate: str = "none") -> tuple[Any, Any]:
    r"""GELU, ``y = x * Phi(x)``; ``approximate="tanh"`` uses ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Phi(x) = erfc(-x / sqrt(2)) / 2 (the same as (1 + erf(x / sqrt 2)) / 2, without cancellation for x << 0).
    Cache: ``(x, approximate)``.
    """
    be = check_array("gelu_forward", x)
    xp = be.xp
    kernel = getattr(be, "gelu_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x, approximate)
    if approximate == "none":
        out = x * _cast(x, 0.5 * _erfc(-x / math.sqrt(2.0)))
    elif approximate == "tanh":
        xc = xp.clip(x, -100, 100)  # tanh(u) is exactly +-1 long before: keeps x^3 from overflowing
        out = 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (xc + 0.044715 * xc * xc * xc)))
    else:
        raise ValueError(f"gelu_forward: approximate must be 'none' or 'tanh', got {approximate!r}")
    return out, (x, approximate)


def gelu_backward(dout: Any, cache: Any) -> Any:
    r"""Exact: ``dx = dout * (Phi(x) + x phi(x))``, phi the normal density.

    tanh form, with ``u = sqrt(2/pi) (x + 0.044715 x^3)`` and ``t = tanh(u)``:
    ``dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))``.
    """
    x, approximate = cache
    kernel = getattr(check_array("gelu_backward", dout, what="gradient"), "gelu_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    xp = _xp(x)
    xc = xp.clip(x, -100, 100)  # beyond, phi(x) = 0 and tanh(u) = +-1 exactly; avoids overflow in x * x
    if approximate == "none":
        slope = 0.5 * _erfc(-x / math.sqrt(2.0)) + xc * _INV_SQRT_2PI * xp.exp(-0.5 * xc * xc)
    else:
        t = xp.tanh(_SQRT_2_OVER_PI * (xc + 0.044715 * xc * xc * xc))
        slope = 0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * xc * xc)
    return dout * _cast(x, slope)


def softplus_forward(x: Any, beta: float = 1.0, threshold: float = 20.0) -> tuple[Any, Any]:
    """``y = log(1 + exp(beta x)) / beta``, and ``y = x`` where ``beta x > threshold`` (PyTorch's linear tail).

    Cache: the derivative ``sigmoid(beta x)`` (1 on the linear tail).
    """
    be = check_array("softplus_forward", x)
    kernel = getattr(be, "softplus_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x, beta, threshold)
    xp = be.xp
    bx = x * beta
    linear = bx > threshold
    out = xp.where(linear, x, _softplus(xp, bx) / beta)
    return _cast(x, out), _cast(x, xp.where(linear, 1.0, _sigmoid(xp, bx)))


def softplus_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * sigmoid(beta x)`` (``dout`` on the linear tail)."""
    return dout * cache


def mish_forward(x: Any) -> tuple[Any, Any]:
    """``y = x * tanh(softplus(x))`` (Misra 2019). Cache: ``x``."""
    be = check_array("mish_forward", x)
    kernel = getattr(be, "mish_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x)
    return x * _cast(x, be.xp.tanh(_softplus(be.xp, x))), x


def mish_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * (t + x * sigmoid(x) * (1 - t^2))`` with ``t = tanh(softplus(x))``."""
    kernel = getattr(check_array("mish_backward", dout, what="gradient"), "mish_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    x = cache
    xp = _xp(x)
    t = xp.tanh(_softplus(xp, x))
    return dout * _cast(x, t + x * _sigmoid(xp, x) * (1 - t * t))


class ELU(_Activation):
    """``ELU(x) = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)`` (Clevert et al. 2015).

    Args:
        alpha: the negative saturation value. Default: 1.0.
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout where x > 0, else dout * (y + alpha)
    Examples:
        >>> ELU()(np.array([0.0, 1.0])).round(4)
        array([0., 1.])
    """

    _forward_fn = staticmethod(elu_forward)
    _backward_fn = staticmethod(elu_backward)

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = check_float("ELU", "alpha", alpha)
        self.inplace = _check_inplace("ELU", inplace)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class GELU(_Activation):
    """``GELU(x) = x * Phi(x)`` with Phi the standard normal CDF (Hendrycks & Gimpel 2016).

    Args:
        approximate: ``"none"`` (exact, with erf) or ``"tanh"`` (the tanh approximation). Default: ``"none"``.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * (Phi(x) + x * phi(x)), phi the normal density (see :func:`gelu_backward` for ``"tanh"``)
    Examples:
        >>> GELU()(np.array([0.0, 1.0])).round(4)
        array([0.    , 0.8413])
    """

    _forward_fn = staticmethod(gelu_forward)
    _backward_fn = staticmethod(gelu_backward)

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _hyperparameters(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Activation):
    """``SiLU(x) = x * sigmoid(x)`` (swish).

    Args:
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * s * (1 + x (1 - s)), s = sigmoid(x)
    Examples:
        >>> SiLU()(np.array([0.0, 1.0])).round(4)
        array([0.    , 0.7311])
    """

    _forward_fn = staticmethod(silu_forward)
    _backward_fn = staticmethod(silu_backward)

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("SiLU", inplace)


class Softplus(_Activation):
    """``Softplus(x) = log(1 + exp(beta x)) / beta``, linear (``= x``) where ``beta x > threshold``.

    Args:
        beta: sharpness. Default: 1.0.
        threshold: above ``beta x > threshold`` the function is taken as linear. Default: 20.0.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * sigmoid(beta x)   (dout on the linear tail)
    Examples:
        >>> Softplus()(np.array([0.0, 30.0])).round(4)
        array([ 0.6931, 30.    ])
    """

    _forward_fn = staticmethod(softplus_forward)
    _backward_fn = staticmethod(softplus_backward)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = check_float("Softplus", "beta", beta, low=0.0, low_open=True)
        self.threshold = check_float("Softplus", "threshold", threshold)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}


class Mish(_Activation):
    """``Mish(x) = x * tanh(softplus(x))`` (Misra 2019).

    Args:
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * (t + x * sigmoid(x) * (1 - t^2)), t = tanh(softplus(x))
    Examples:
        >>> Mish()(np.array([0.0, 1.0])).round(4)
        array([0.    , 0.8651])
    """

    _forward_fn = staticmethod(mish_forward)
    _backward_fn = staticmethod(mish_backward)

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("Mish", inplace)
