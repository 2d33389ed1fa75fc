r"""Gated activations :math:`y = x \cdot g(x)`: SiLU (swish), GELU, Mish and Hardswish, and
Hardswish's gate, Hardsigmoid (the others are in :mod:`minidl.nn.activation`, which re-exports these).

===========  =================================================  =================================================
op           forward                                            derivative (what the cache holds)
===========  =================================================  =================================================
silu         :math:`x \sigma(x)`                                :math:`\sigma(x)(1 + x (1 - \sigma(x)))` (x, s)
gelu         :math:`x \Phi(x)`, :math:`\Phi` the normal CDF      :math:`\Phi(x) + x \varphi(x)` (input)
mish         :math:`x \tanh(\mathrm{softplus}(x))`              :math:`t + x \sigma(x) (1 - t^2)` (input)
hardswish    :math:`x \,\mathrm{relu6}(x + 3) / 6`               0, :math:`(2x + 3) / 6` or 1 (input)
hardsigmoid  :math:`\mathrm{relu6}(x + 3) / 6`                  :math:`1/6` on (-3, 3), else 0 (input)
===========  =================================================  =================================================

Each derivative is the product rule, :math:`g(x) + x g'(x)`. :math:`\Phi(x) = \tfrac12 \mathrm{erfc}(-x / \sqrt 2)`,
with the error function of :mod:`minidl.nn._activation_common` (NumPy has none); :math:`\varphi` is the standard
normal density and :math:`t = \tanh(\mathrm{softplus}(x))`. Every backward is :math:`dx = dout \odot f'(x)`.

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
from minidl.nn._checks import check_array, check_grad_output
from minidl.nn.dispatch import F, kernel

__all__ = [
    "GELU",
    "Hardsigmoid",
    "Hardswish",
    "Mish",
    "SiLU",
    "gelu_backward",
    "gelu_forward",
    "hardsigmoid_backward",
    "hardsigmoid_forward",
    "hardswish_backward",
    "hardswish_forward",
    "mish_backward",
    "mish_forward",
    "silu_backward",
    "silu_forward",
]


# ---------------------------------------------------------------------------------------------- silu, gelu, mish
class SiluCache(NamedTuple):
    """The cache of :func:`silu_forward`."""

    x: Any
    s: Any  # sigmoid(x)


_silu_setup = _unary_setup("silu_forward")


@kernel("silu", setup=_silu_setup)
def silu_forward(x: Any) -> tuple[Any, Any]:
    r"""SiLU: ``y = x * sigmoid(x)`` (also called swish). Cache: ``(x, sigmoid(x))``.

    .. math:: y = x\, \sigma(x), \qquad \sigma(x) = \frac{1}{1 + e^{-x}}

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
    r"""The gradient of SiLU, with ``s = sigmoid(x)`` from the cache.

    .. math:: dx = dout \odot s\, (1 + x (1 - s)), \qquad s = \sigma(x)

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = silu_forward(np.array([0.0, 1.0]))
        >>> silu_backward(np.array([1.0, 1.0]), cache).round(4)
        array([0.5   , 0.9277])
    """
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

    .. math:: y = x\, \Phi(x) = \frac{x}{2} \mathrm{erfc}\Big(\frac{-x}{\sqrt 2}\Big), \qquad
              y_{\tanh} = \frac{x}{2} \Big(1 + \tanh\big(\sqrt{2/\pi}\, (x + 0.044715\, x^3)\big)\Big)

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
    r"""The gradient of GELU. Exact: ``dx = dout * (Phi(x) + x phi(x))``, phi the normal density.

    tanh form, with ``u = sqrt(2/pi) (x + 0.044715 x^3)`` and ``t = tanh(u)``:
    ``dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))``.

    .. math:: dx = dout \odot \big(\Phi(x) + x\, \varphi(x)\big), \qquad
              \varphi(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}}

    .. math:: dx_{\tanh} = dout \odot \Big(\frac{1 + t}{2} + \frac{x}{2} (1 - t^2) \sqrt{2/\pi}\,
              (1 + 3 \cdot 0.044715\, x^2)\Big)

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = gelu_forward(np.array([0.0, 1.0]))
        >>> gelu_backward(np.array([1.0, 1.0]), cache).round(4)  # Phi(1) + phi(1) = 0.8413 + 0.2420
        array([0.5   , 1.0833])
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


_mish_setup = _unary_setup("mish_forward")


@kernel("mish", setup=_mish_setup)
def mish_forward(x: Any) -> tuple[Any, Any]:
    r"""Mish: ``y = x * tanh(softplus(x))`` (Misra 2019). Cache: ``x``.

    .. math:: y = x \tanh(\mathrm{softplus}(x)), \qquad \mathrm{softplus}(x) = \log(1 + e^x)

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
    r"""The gradient of Mish, with ``t = tanh(softplus(x))`` (softplus' derivative is the sigmoid).

    .. math:: dx = dout \odot \big(t + x\, \sigma(x) (1 - t^2)\big), \qquad t = \tanh(\mathrm{softplus}(x))

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = mish_forward(np.array([0.0, 1.0]))
        >>> mish_backward(np.array([1.0, 1.0]), cache).round(4)  # at 0: t = tanh(log 2) = 0.6
        array([0.6  , 1.049])
    """
    x = cache
    check_grad_output("mish_backward", dout, x.shape, x.dtype)
    xp = _xp(x)
    t = xp.tanh(_softplus(xp, x))
    return dout * _cast(x, t + x * _sigmoid(xp, x) * (1 - t * t))


_hardswish_setup = _unary_setup("hardswish_forward")


@kernel("hardswish", setup=_hardswish_setup)
def hardswish_forward(x: Any) -> tuple[Any, Any]:
    r"""Hardswish: ``y = x * relu6(x + 3) / 6`` (MobileNetV3). Cache: ``x``.

    .. math:: y = \frac{x \min(\max(x + 3, 0), 6)}{6}

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * f'(x), f' = 0 (x < -3), x / 3 + 1/2 (-3 <= x <= 3), 1 (x > 3).
    Examples:
        >>> hardswish_forward(np.array([-4.0, 0.0, 4.0]))[0]
        array([-0.,  0.,  4.])
    """
    be = _hardswish_setup(x)
    return x * be.xp.clip(x + 3, 0, 6) / 6, x


@kernel("hardswish")
def hardswish_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of Hardswish: 0 for x <= -3, (2x + 3) / 6 for -3 < x < 3, 1 for x >= 3 (PyTorch's rule: at
    the two kinks the outer slope, as its Hardsigmoid's is 0 there).

    .. math:: dx = dout \odot \begin{cases} 0 & x \le -3 \\ (2x + 3) / 6 & -3 < x < 3 \\ 1 & x \ge 3
              \end{cases}

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = hardswish_forward(np.array([-4.0, 0.0, 4.0]))
        >>> hardswish_backward(np.array([1.0, 1.0, 1.0]), cache)
        array([0. , 0.5, 1. ])
    """
    x = cache
    check_grad_output("hardswish_backward", dout, x.shape, x.dtype)
    xp = _xp(x)
    slope = xp.where(x <= -3, 0.0, xp.where(x < 3, x / 3 + 0.5, 1.0))
    return dout * _cast(x, slope)


_hardsigmoid_setup = _unary_setup("hardsigmoid_forward")


def hardsigmoid_forward(x: Any) -> tuple[Any, Any]:
    r"""Hardsigmoid: ``y = relu6(x + 3) / 6``, the gate of Hardswish (MobileNetV3). Cache: ``x``.

    .. math:: y = \begin{cases} 0 & x \le -3 \\ x / 6 + 1/2 & -3 < x < 3 \\ 1 & x \ge 3 \end{cases}

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout / 6 where -3 < x < 3, else 0 (:func:`hardsigmoid_backward`).
    Examples:
        >>> hardsigmoid_forward(np.array([-4.0, 0.0, 1.5, 4.0]))[0]
        array([0.  , 0.5 , 0.75, 1.  ])
    """
    be = _hardsigmoid_setup(x)
    return _cast(x, be.xp.clip(x / 6 + 0.5, 0, 1)), x


def hardsigmoid_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of Hardsigmoid: 1/6 strictly inside (-3, 3), 0 outside and at the corners (PyTorch's rule).

    .. math:: dx = dout \odot \begin{cases} 1/6 & -3 < x < 3 \\ 0 & \text{otherwise} \end{cases}

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = hardsigmoid_forward(np.array([-4.0, -3.0, 0.0, 4.0]))
        >>> hardsigmoid_backward(np.array([6.0, 6.0, 6.0, 6.0]), cache)
        array([0., 0., 1., 0.])
    """
    x = cache
    check_grad_output("hardsigmoid_backward", dout, x.shape, x.dtype)
    return dout * ((x > -3) & (x < 3)) / 6


# ---------------------------------------------------------------------------------------------- modules
class GELU(_Activation):
    r"""``GELU(x) = x * Phi(x)`` with Phi the standard normal CDF (Hendrycks & Gimpel 2016).

    .. math:: \mathrm{GELU}(x) = x\, \Phi(x) = \frac{x}{2} \Big(1 + \mathrm{erf}\big(x / \sqrt 2\big)\Big)

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
    r"""``SiLU(x) = x * sigmoid(x)`` (swish).

    .. math:: \mathrm{SiLU}(x) = x\, \sigma(x) = \frac{x}{1 + e^{-x}}

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


class Mish(_Activation):
    r"""``Mish(x) = x * tanh(softplus(x))`` (Misra 2019).

    .. math:: \mathrm{Mish}(x) = x \tanh\big(\log(1 + e^x)\big)

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


class Hardswish(_Activation):
    r"""``Hardswish(x) = x * relu6(x + 3) / 6`` (Howard et al. 2019, MobileNetV3).

    .. math:: \mathrm{Hardswish}(x) = \frac{x \min(\max(x + 3, 0), 6)}{6}

    Args:
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * (0 if x < -3; x / 3 + 1/2 if -3 <= x <= 3; 1 if x > 3)
    Examples:
        >>> Hardswish()(np.array([-4.0, 0.0, 4.0]))
        array([-0.,  0.,  4.])
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("Hardswish", inplace)

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.hardswish_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.hardswish_backward(dout, cache)


class Hardsigmoid(_Activation):
    r"""``Hardsigmoid(x) = relu6(x + 3) / 6``, a piecewise-linear sigmoid (Howard et al. 2019, MobileNetV3).

    .. math:: \mathrm{Hardsigmoid}(x) = \begin{cases} 0 & x \le -3 \\ x / 6 + 1/2 & -3 < x < 3 \\
              1 & x \ge 3 \end{cases}

    Args:
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout / 6 where -3 < x < 3, else 0
    Examples:
        >>> Hardsigmoid()(np.array([-4.0, 0.0, 4.0]))
        array([0. , 0.5, 1. ])
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("Hardsigmoid", inplace)

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.hardsigmoid_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.hardsigmoid_backward(dout, cache)
