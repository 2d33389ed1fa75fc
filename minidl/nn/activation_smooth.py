r"""Smooth activations: sigmoid, tanh, ELU, GELU, SiLU (swish), Softplus and Mish (the rest are in
:mod:`minidl.nn.activation`).

===========  =================================================  =================================================
op           forward                                            derivative (what the cache holds)
===========  =================================================  =================================================
sigmoid      :math:`\sigma(x) = 1 / (1 + e^{-x})`                :math:`y (1 - y)` (output)
tanh         :math:`\tanh x`                                     :math:`1 - y^2` (output)
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
from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._activation_common import (
    _Activation,
    _cast,
    _check_inplace,
    _erfc,
    _sigmoid,
    _softplus,
    _unary_setup,
    _xp,
)
from minidl.nn._checks import check_array, check_float, check_grad_output
from minidl.nn.dispatch import F, kernel

__all__ = [
    "ELU",
    "GELU",
    "Mish",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "elu_backward",
    "elu_forward",
    "gelu_backward",
    "gelu_forward",
    "mish_backward",
    "mish_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "silu_backward",
    "silu_forward",
    "softplus_backward",
    "softplus_forward",
    "tanh_backward",
    "tanh_forward",
]


# ---------------------------------------------------------------------------------------------- sigmoid and tanh
_sigmoid_setup = _unary_setup("sigmoid_forward")


@kernel("sigmoid", setup=_sigmoid_setup)
def sigmoid_forward(x: Any) -> tuple[Any, Any]:
    """``y = 1 / (1 + exp(-x))``, stable for large ``|x|``. Cache: ``out``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * y * (1 - y).
    Examples:
        >>> sigmoid_forward(np.array([0.0, -1000.0]))[0]
        array([0.5, 0. ])
    """
    be = _sigmoid_setup(x)
    out = _cast(x, _sigmoid(be.xp, x))
    return out, out


@kernel("sigmoid")
def sigmoid_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * y * (1 - y)``."""
    check_grad_output("sigmoid_backward", dout, cache.shape, cache.dtype)
    return dout * cache * (1 - cache)


_tanh_setup = _unary_setup("tanh_forward")


@kernel("tanh", setup=_tanh_setup)
def tanh_forward(x: Any) -> tuple[Any, Any]:
    """``y = tanh(x)``. Cache: ``out``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * (1 - y^2).
    Examples:
        >>> tanh_forward(np.array([0.0]))[0]
        array([0.])
    """
    be = _tanh_setup(x)
    out = be.xp.tanh(x)
    return out, out


@kernel("tanh")
def tanh_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * (1 - y^2)``."""
    check_grad_output("tanh_backward", dout, cache.shape, cache.dtype)
    return dout * (1 - cache * cache)


# ---------------------------------------------------------------------------------------------- elu, silu, gelu
class EluCache(NamedTuple):
    """The cache of :func:`elu_forward`."""

    mask: Any  # x > 0
    out: Any
    alpha: float


_elu_setup = _unary_setup("elu_forward")


@kernel("elu", setup=_elu_setup)
def elu_forward(x: Any, alpha: float = 1.0) -> tuple[Any, Any]:
    """``y = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``. Cache: ``(mask, out, alpha)``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout where x > 0, else dout * (y + alpha).
    Examples:
        >>> elu_forward(np.array([-1.0, 2.0]))[0].round(4)
        array([-0.6321,  2.    ])
    """
    xp = _elu_setup(x).xp
    mask = x > 0
    out = xp.where(mask, x, alpha * xp.expm1(xp.minimum(x, 0)))  # minimum: exp never sees the large positives
    out = _cast(x, out)
    return out, EluCache(mask, out, alpha)


@kernel("elu")
def elu_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout`` where ``x > 0``, else ``dout * alpha * exp(x) = dout * (y + alpha)``."""
    mask, out, alpha = cache
    check_grad_output("elu_backward", dout, out.shape, out.dtype)
    return _xp(dout).where(mask, dout, dout * (out + alpha))


class SiluCache(NamedTuple):
    """The cache of :func:`silu_forward`."""

    x: Any
    s: Any  # sigmoid(x)


_silu_setup = _unary_setup("silu_forward")


@kernel("silu", setup=_silu_setup)
def silu_forward(x: Any) -> tuple[Any, Any]:
    """``y = x * sigmoid(x)`` (also called swish). Cache: ``(x, sigmoid(x))``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * s * (1 + x (1 - s)), s = sigmoid(x).
    Examples:
        >>> silu_forward(np.array([0.0, 1.0]))[0].round(4)
        array([0.    , 0.7311])
    """
    s = _cast(x, _sigmoid(_silu_setup(x).xp, x))
    return x * s, SiluCache(x, s)


@kernel("silu")
def silu_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    x, s = cache
    check_grad_output("silu_backward", dout, x.shape, x.dtype)
    return dout * s * (1 + x * (1 - s))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GeluCache(NamedTuple):
    """The cache of :func:`gelu_forward`."""

    x: Any
    approximate: str


def _gelu_setup(x: Any, approximate: str = "none") -> Any:
    be = check_array("gelu_forward", x)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu_forward: approximate must be 'none' or 'tanh', got {approximate!r}")
    return be


@kernel("gelu", setup=_gelu_setup)
def gelu_forward(x: Any, approximate: str = "none") -> tuple[Any, Any]:
    r"""GELU, ``y = x * Phi(x)``; ``approximate="tanh"`` uses ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Phi(x) = erfc(-x / sqrt(2)) / 2 (the same as (1 + erf(x / sqrt 2)) / 2, without cancellation for x << 0).
    Cache: ``(x, approximate)``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * (Phi(x) + x phi(x)) (see :func:`gelu_backward` for the tanh form).
    Examples:
        >>> gelu_forward(np.array([0.0, 1.0]))[0].round(4)
        array([0.    , 0.8413])
    """
    xp = _gelu_setup(x, approximate).xp
    if approximate == "none":
        out = x * _cast(x, 0.5 * _erfc(-x / math.sqrt(2.0)))
    else:
        xc = xp.clip(x, -100, 100)  # tanh(u) is exactly +-1 long before: keeps x^3 from overflowing
        out = 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (xc + 0.044715 * xc * xc * xc)))
    return out, GeluCache(x, approximate)


@kernel("gelu")
def gelu_backward(dout: Any, cache: Any) -> Any:
    r"""Exact: ``dx = dout * (Phi(x) + x phi(x))``, phi the normal density.

    tanh form, with ``u = sqrt(2/pi) (x + 0.044715 x^3)`` and ``t = tanh(u)``:
    ``dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))``.
    """
    x, approximate = cache
    check_grad_output("gelu_backward", dout, x.shape, x.dtype)
    xp = _xp(x)
    xc = xp.clip(x, -100, 100)  # beyond, phi(x) = 0 and tanh(u) = +-1 exactly; avoids overflow in x * x
    if approximate == "none":
        slope = 0.5 * _erfc(-x / math.sqrt(2.0)) + xc * _INV_SQRT_2PI * xp.exp(-0.5 * xc * xc)
    else:
        t = xp.tanh(_SQRT_2_OVER_PI * (xc + 0.044715 * xc * xc * xc))
        slope = 0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * xc * xc)
    return dout * _cast(x, slope)


_softplus_setup = _unary_setup("softplus_forward")


@kernel("softplus", setup=_softplus_setup)
def softplus_forward(x: Any, beta: float = 1.0, threshold: float = 20.0) -> tuple[Any, Any]:
    """``y = log(1 + exp(beta x)) / beta``, and ``y = x`` where ``beta x > threshold`` (PyTorch's linear tail).

    Cache: the derivative ``sigmoid(beta x)`` (1 on the linear tail).

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * sigmoid(beta x) (dout on the linear tail).
    Examples:
        >>> softplus_forward(np.array([0.0, 30.0]))[0].round(4)
        array([ 0.6931, 30.    ])
    """
    xp = _softplus_setup(x).xp
    bx = x * beta
    linear = bx > threshold
    out = xp.where(linear, x, _softplus(xp, bx) / beta)
    return _cast(x, out), _cast(x, xp.where(linear, 1.0, _sigmoid(xp, bx)))


@kernel("softplus")
def softplus_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * sigmoid(beta x)`` (``dout`` on the linear tail)."""
    check_grad_output("softplus_backward", dout, cache.shape, cache.dtype)
    return dout * cache


_mish_setup = _unary_setup("mish_forward")


@kernel("mish", setup=_mish_setup)
def mish_forward(x: Any) -> tuple[Any, Any]:
    """``y = x * tanh(softplus(x))`` (Misra 2019). Cache: ``x``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * (t + x sigmoid(x) (1 - t^2)), t = tanh(softplus(x)).
    Examples:
        >>> mish_forward(np.array([0.0, 1.0]))[0].round(4)
        array([0.    , 0.8651])
    """
    xp = _mish_setup(x).xp
    return x * _cast(x, xp.tanh(_softplus(xp, x))), x


@kernel("mish")
def mish_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * (t + x * sigmoid(x) * (1 - t^2))`` with ``t = tanh(softplus(x))``."""
    x = cache
    check_grad_output("mish_backward", dout, x.shape, x.dtype)
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

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = check_float("ELU", "alpha", alpha)
        self.inplace = _check_inplace("ELU", inplace)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.elu_forward(x, self.alpha)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.elu_backward(dout, cache)


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

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _hyperparameters(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.gelu_forward(x, self.approximate)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.gelu_backward(dout, cache)


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

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("SiLU", inplace)

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.silu_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.silu_backward(dout, cache)


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

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = check_float("Softplus", "beta", beta, low=0.0, low_open=True)
        self.threshold = check_float("Softplus", "threshold", threshold)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.softplus_forward(x, self.beta, self.threshold)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.softplus_backward(dout, cache)


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

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("Mish", inplace)

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.mish_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.mish_backward(dout, cache)


class Sigmoid(_Activation):
    """``Sigmoid(x) = 1 / (1 + exp(-x))``, computed without overflow for large ``|x|``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * y * (1 - y)
    Examples:
        >>> Sigmoid()(np.array([0.0, -1000.0]))
        array([0.5, 0. ])
    """

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.sigmoid_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.sigmoid_backward(dout, cache)


class Tanh(_Activation):
    """``Tanh(x) = tanh(x)``.

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * (1 - y^2)
    Examples:
        >>> Tanh()(np.array([0.0])).tolist()
        [0.0]
    """

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.tanh_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.tanh_backward(dout, cache)
