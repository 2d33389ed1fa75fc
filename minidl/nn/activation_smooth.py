r"""Smooth activations: sigmoid, tanh, ELU and Softplus (the gated SiLU, GELU, Mish are in
:mod:`minidl.nn.activation_gated`, the rest in :mod:`minidl.nn.activation`, which re-exports these).

===========  =================================================  =================================================
op           forward                                            derivative (what the cache holds)
===========  =================================================  =================================================
sigmoid      :math:`\sigma(x) = 1 / (1 + e^{-x})`                :math:`y (1 - y)` (output)
tanh         :math:`\tanh x`                                     :math:`1 - y^2` (output)
elu          :math:`x` if :math:`x > 0` else                    1 or :math:`y + \alpha` (mask, output)
             :math:`\alpha (e^x - 1)`
softplus     :math:`\frac{1}{\beta} \log(1 + e^{\beta x})`       :math:`\sigma(\beta x)` (the derivative itself)
===========  =================================================  =================================================

Every backward is :math:`dx = dout \odot f'(x)`. Exponentials only ever see arguments that cannot overflow
(:math:`e^{\min(x, 0)}`, :math:`e^{-|x|}`).

PyTorch's ``inplace=True`` is accepted where PyTorch has it, but minidl never overwrites the input.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._activation_common import _Activation, _cast, _check_inplace, _sigmoid, _softplus, _unary_setup, _xp
from minidl.nn._checks import check_float, check_grad_output
from minidl.nn.dispatch import F, kernel

__all__ = [
    "ELU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "elu_backward",
    "elu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softplus_backward",
    "softplus_forward",
    "tanh_backward",
    "tanh_forward",
]


# ---------------------------------------------------------------------------------------------- sigmoid and tanh
_sigmoid_setup = _unary_setup("sigmoid_forward")


@kernel("sigmoid", setup=_sigmoid_setup)
def sigmoid_forward(x: Any) -> tuple[Any, Any]:
    r"""Sigmoid: ``y = 1 / (1 + exp(-x))``, stable for large ``|x|``. Cache: ``out``.

    .. math:: y = \sigma(x) = \frac{1}{1 + e^{-x}}

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
    r"""The gradient of the sigmoid, from its output y.

    .. math:: dx = dout \odot y \odot (1 - y)

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = sigmoid_forward(np.array([0.0]))
        >>> sigmoid_backward(np.array([1.0]), cache)  # 0.5 * (1 - 0.5)
        array([0.25])
    """
    check_grad_output("sigmoid_backward", dout, cache.shape, cache.dtype)
    return dout * cache * (1 - cache)


_tanh_setup = _unary_setup("tanh_forward")


@kernel("tanh", setup=_tanh_setup)
def tanh_forward(x: Any) -> tuple[Any, Any]:
    r"""Tanh: ``y = tanh(x)``. Cache: ``out``.

    .. math:: y = \tanh x = \frac{e^x - e^{-x}}{e^x + e^{-x}}

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
    r"""The gradient of tanh, from its output y.

    .. math:: dx = dout \odot (1 - y^2)

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = tanh_forward(np.array([0.0]))
        >>> tanh_backward(np.array([2.0]), cache)
        array([2.])
    """
    check_grad_output("tanh_backward", dout, cache.shape, cache.dtype)
    return dout * (1 - cache * cache)


# ---------------------------------------------------------------------------------------------- elu, softplus
class EluCache(NamedTuple):
    """The cache of :func:`elu_forward`."""

    mask: Any  # x > 0
    out: Any
    alpha: float


_elu_setup = _unary_setup("elu_forward")


@kernel("elu", setup=_elu_setup)
def elu_forward(x: Any, alpha: float = 1.0) -> tuple[Any, Any]:
    r"""ELU: ``y = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``. Cache: ``(mask, out, alpha)``.

    .. math:: y = \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0 \end{cases}

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
    r"""The gradient of ELU: ``dout`` where ``x > 0``, else ``dout * alpha * exp(x) = dout * (y + alpha)``.

    .. math:: dx = dout \odot \begin{cases} 1 & x > 0 \\ y + \alpha & x \le 0 \end{cases}

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = elu_forward(np.array([0.0, 2.0]))
        >>> elu_backward(np.array([1.0, 1.0]), cache)  # at x = 0: y + alpha = 0 + 1
        array([1., 1.])
    """
    mask, out, alpha = cache
    check_grad_output("elu_backward", dout, out.shape, out.dtype)
    return _xp(dout).where(mask, dout, dout * (out + alpha))


_softplus_setup = _unary_setup("softplus_forward")


@kernel("softplus", setup=_softplus_setup)
def softplus_forward(x: Any, beta: float = 1.0, threshold: float = 20.0) -> tuple[Any, Any]:
    r"""Softplus: ``y = log(1 + exp(beta x)) / beta``, and ``y = x`` where ``beta x > threshold`` (PyTorch's
    linear tail). Cache: the derivative ``sigmoid(beta x)`` (1 on the linear tail).

    .. math:: y = \begin{cases} \frac{1}{\beta} \log(1 + e^{\beta x}) & \beta x \le \mathrm{threshold} \\
              x & \beta x > \mathrm{threshold} \end{cases}

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
    r"""The gradient of Softplus: ``dout * sigmoid(beta x)`` (``dout`` on the linear tail), cached by the forward.

    .. math:: dx = dout \odot \sigma(\beta x) \quad (dx = dout \text{ where } \beta x > \mathrm{threshold})

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = softplus_forward(np.array([0.0, 30.0]))
        >>> softplus_backward(np.array([1.0, 1.0]), cache)
        array([0.5, 1. ])
    """
    check_grad_output("softplus_backward", dout, cache.shape, cache.dtype)
    return dout * cache


# ---------------------------------------------------------------------------------------------- modules
class ELU(_Activation):
    r"""``ELU(x) = x`` for ``x > 0``, else ``alpha * (exp(x) - 1)`` (Clevert et al. 2015).

    .. math:: \mathrm{ELU}(x) = \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0 \end{cases}

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


class Softplus(_Activation):
    r"""``Softplus(x) = log(1 + exp(beta x)) / beta``, linear (``= x``) where ``beta x > threshold``.

    .. math:: \mathrm{Softplus}(x) = \frac{1}{\beta} \log(1 + e^{\beta x})

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


class Sigmoid(_Activation):
    r"""``Sigmoid(x) = 1 / (1 + exp(-x))``, computed without overflow for large ``|x|``.

    .. math:: \sigma(x) = \frac{1}{1 + e^{-x}}

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
    r"""``Tanh(x) = tanh(x)``, elementwise.

    .. math:: \tanh x = \frac{e^x - e^{-x}}{e^x + e^{-x}}

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
