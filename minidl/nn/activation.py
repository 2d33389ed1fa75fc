r"""Activation functions: elementwise nonlinearities, and softmax / log-softmax along one dimension.

Every elementwise activation :math:`y = f(x)` has the backward :math:`dx = dout \odot f'(x)`, so each op caches
only what its derivative needs, written in the cheapest form:

=============  ===========================================================  ==========================================
op             forward                                                      derivative (cache)
=============  ===========================================================  ==========================================
relu           :math:`\max(x, 0)`                                           :math:`[x > 0]` (a bool mask)
leaky_relu     :math:`x` if :math:`x > 0` else :math:`a x`                  1 or :math:`a` (mask)
elu            :math:`x` if :math:`x > 0` else :math:`\alpha (e^x - 1)`     1 or :math:`y + \alpha` (mask, output)
hardtanh       :math:`\min(\max(x, lo), hi)`; relu6 = hardtanh(0, 6)        :math:`[lo < x < hi]` (mask)
sigmoid        :math:`\sigma(x) = 1 / (1 + e^{-x})`                         :math:`y (1 - y)` (output)
tanh           :math:`\tanh x`                                              :math:`1 - y^2` (output)
silu           :math:`x \sigma(x)`                                          :math:`\sigma(x)(1 + x (1 - \sigma(x)))`
gelu           :math:`x \Phi(x)`, :math:`\Phi` the normal CDF               :math:`\Phi(x) + x \varphi(x)` (input)
softplus       :math:`\frac{1}{\beta} \log(1 + e^{\beta x})`                :math:`\sigma(\beta x)` (the derivative)
hardswish      :math:`x \,\mathrm{relu6}(x + 3) / 6`                        0, :math:`(2x + 3) / 6` or 1 (input)
mish           :math:`x \tanh(\mathrm{softplus}(x))`                        :math:`t + x \sigma(x) (1 - t^2)` (input)
=============  ===========================================================  ==========================================

Softmax :math:`p_i = e^{x_i} / \sum_j e^{x_j}` is computed after subtracting :math:`\max_j x_j` (the result does
not change, and :math:`e^{x}` can no longer overflow). Its Jacobian is :math:`\partial p_i / \partial x_j =
p_i (\delta_{ij} - p_j)`, so :math:`dx = p \odot (dout - \sum_j dout_j p_j)`. For log-softmax
:math:`\ell = x - \log\sum_j e^{x_j}`: :math:`dx = dout - p \sum_j dout_j`.

This file holds the piecewise-linear ones (ReLU, LeakyReLU, Hardtanh, ReLU6). Sigmoid, tanh, ELU and Softplus live
in :mod:`minidl.nn.activation_smooth`, the gated ones :math:`x \cdot g(x)` (SiLU, GELU, Mish, Hardswish) and
Hardsigmoid in :mod:`minidl.nn.activation_gated`, PReLU (a learned slope) in :mod:`minidl.nn.activation_param`,
softmax / log-softmax in :mod:`minidl.nn.activation_softmax`, all re-exported here;
the error function GELU needs (W. J. Cody's rational approximations, NumPy has none) and the shared Module base are
in :mod:`minidl.nn._activation_common`.

PyTorch's ``inplace=True`` is accepted where PyTorch has it, but minidl never overwrites the input: backward needs
it (or the output), and a new array is always returned.

The pairs marked ``@kernel("<op>")`` have a one-pass kernel on the Numba backend (``minidl/backend/
_numba_elementwise.py``, listed in the backend's kernel table); the NumPy code here is the reference they replace and
are tested against (see :mod:`minidl.nn.dispatch`). ReLU6 is hardtanh(0, 6) and has no kernel of its own; it is marked
``@composes("relu6", uses=("hardtanh",))``, so that a pair built on it (``batch_norm_relu6``) runs its kernel only
while both are minidl's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._activation_common import _Activation, _cast, _check_inplace, _unary_setup, _xp
from minidl.nn._checks import check_array, check_float, check_grad_output
from minidl.nn.activation_gated import *  # noqa: F403  (re-exported: one place to import every activation)
from minidl.nn.activation_gated import __all__ as _gated_all
from minidl.nn.activation_param import *  # noqa: F403
from minidl.nn.activation_param import __all__ as _param_all
from minidl.nn.activation_smooth import *  # noqa: F403
from minidl.nn.activation_smooth import __all__ as _smooth_all
from minidl.nn.activation_softmax import *  # noqa: F403
from minidl.nn.activation_softmax import __all__ as _softmax_all
from minidl.nn.dispatch import F, composes, kernel

__all__ = [
    "Hardtanh",
    "LeakyReLU",
    "ReLU",
    "ReLU6",
    "hardtanh_backward",
    "hardtanh_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "relu6_backward",
    "relu6_forward",
    "relu_backward",
    "relu_forward",
    *_gated_all,
    *_param_all,
    *_smooth_all,
    *_softmax_all,
]


# ---------------------------------------------------------------------------------------------- piecewise linear
_relu_setup = _unary_setup("relu_forward")


class MaskCache(NamedTuple):
    """The cache of :func:`relu_forward` and :func:`hardtanh_forward`: where the slope is 1, and the input's dtype
    (the backward checks ``dout`` against it)."""

    mask: Any
    dtype: Any

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def out_dtype(self) -> Any:
        return self.dtype


@kernel("relu", setup=_relu_setup)
def relu_forward(x: Any) -> tuple[Any, Any]:
    r"""ReLU: ``y = max(x, 0)``. Returns ``(out, cache)``; the cache holds the bool mask ``x > 0``.

    .. math:: y = \max(x, 0)

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * [x > 0] (:func:`relu_backward`).
    Examples:
        >>> out, cache = relu_forward(np.array([-1.0, 0.0, 2.0]))
        >>> out
        array([0., 0., 2.])
        >>> relu_backward(np.array([5.0, 5.0, 5.0]), cache)  # the gradient passes where x > 0
        array([0., 0., 5.])
    """
    be = _relu_setup(x)
    mask = ~(x <= 0)  # True where x > 0 and where x is NaN, so NaNs propagate as in PyTorch
    return be.xp.where(mask, x, 0), MaskCache(mask, x.dtype)


@kernel("relu")
def relu_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of ReLU (PyTorch's choice at the kink x = 0: gradient 0).

    .. math:: dx = dout \odot [x > 0]

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = relu_forward(np.array([-1.0, 0.0, 2.0]))
        >>> relu_backward(np.array([3.0, 3.0, 3.0]), cache)
        array([0., 0., 3.])
    """
    mask, dtype = cache
    check_grad_output("relu_backward", dout, mask.shape, dtype)
    return dout * mask


class LeakyReluCache(NamedTuple):
    """The cache of :func:`leaky_relu_forward`."""

    mask: Any  # x > 0
    negative_slope: float
    dtype: Any  # of x


_leaky_relu_setup = _unary_setup("leaky_relu_forward")


@kernel("leaky_relu", setup=_leaky_relu_setup)
def leaky_relu_forward(x: Any, negative_slope: float = 0.01) -> tuple[Any, Any]:
    r"""LeakyReLU: ``y = x`` where ``x > 0``, else ``negative_slope * x``. Cache: ``(mask, negative_slope)``.

    .. math:: y = \begin{cases} x & x > 0 \\ a\, x & x \le 0 \end{cases}, \qquad a = \mathrm{negative\_slope}

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout where x > 0, else negative_slope * dout.
    Examples:
        >>> leaky_relu_forward(np.array([-2.0, 3.0]), 0.1)[0]
        array([-0.2,  3. ])
    """
    be = _leaky_relu_setup(x)
    mask = x > 0
    negative_slope = float(negative_slope)  # a Python float keeps x's dtype (a NumPy float64 would promote it)
    return be.xp.where(mask, x, x * negative_slope), LeakyReluCache(mask, negative_slope, x.dtype)


@kernel("leaky_relu")
def leaky_relu_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of LeakyReLU: ``dout`` where ``x > 0``, else ``negative_slope * dout``.

    .. math:: dx = dout \odot \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = leaky_relu_forward(np.array([-2.0, 3.0]), 0.1)
        >>> leaky_relu_backward(np.array([1.0, 1.0]), cache)
        array([0.1, 1. ])
    """
    mask, negative_slope, dtype = cache
    check_grad_output("leaky_relu_backward", dout, mask.shape, dtype)
    return _xp(dout).where(mask, dout, dout * float(negative_slope))


def _hardtanh_setup(x: Any, min_val: float = -1.0, max_val: float = 1.0) -> Any:
    be = check_array("hardtanh_forward", x)
    if min_val > max_val:
        raise ValueError(f"hardtanh_forward: min_val ({min_val}) must not exceed max_val ({max_val})")
    return be


@kernel("hardtanh", setup=_hardtanh_setup)
def hardtanh_forward(x: Any, min_val: float = -1.0, max_val: float = 1.0) -> tuple[Any, Any]:
    r"""Hardtanh: ``y = clip(x, min_val, max_val)``. Cache: the mask ``min_val < x < max_val`` where the slope is 1.

    .. math:: y = \min(\max(x, \mathrm{min\_val}), \mathrm{max\_val})

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * [min_val < x < max_val].
    Examples:
        >>> hardtanh_forward(np.array([-3.0, 0.5, 3.0]))[0]
        array([-1. ,  0.5,  1. ])
    """
    be = _hardtanh_setup(x, min_val, max_val)
    return _cast(x, be.xp.clip(x, min_val, max_val)), MaskCache((x > min_val) & (x < max_val), x.dtype)


@kernel("hardtanh")
def hardtanh_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of Hardtanh: 0 in the flat parts and, as in PyTorch, at the corners.

    .. math:: dx = dout \odot [\mathrm{min\_val} < x < \mathrm{max\_val}]

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = hardtanh_forward(np.array([-3.0, 0.5, 1.0]))
        >>> hardtanh_backward(np.array([2.0, 2.0, 2.0]), cache)  # 0 at the corner x = max_val
        array([0., 2., 0.])
    """
    mask, dtype = cache
    check_grad_output("hardtanh_backward", dout, mask.shape, dtype)
    return dout * mask


@composes("relu6", uses=("hardtanh",))  # no kernel of its own; a pair built on it follows it to hardtanh
def relu6_forward(x: Any) -> tuple[Any, Any]:
    r"""ReLU6: ``y = min(max(x, 0), 6)`` = hardtanh(x, 0, 6) (MobileNetV2). Cache: the mask ``0 < x < 6``.

    .. math:: y = \min(\max(x, 0), 6)

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * [0 < x < 6] (:func:`hardtanh_backward`).
    Examples:
        >>> relu6_forward(np.array([-1.0, 3.0, 9.0]))[0]
        array([0., 3., 6.])
    """
    return F.hardtanh_forward(x, 0.0, 6.0)


def relu6_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of ReLU6: the backward of hardtanh(x, 0, 6).

    .. math:: dx = dout \odot [0 < x < 6]

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = relu6_forward(np.array([-1.0, 3.0, 9.0]))
        >>> relu6_backward(np.array([1.0, 1.0, 1.0]), cache)
        array([0., 1., 0.])
    """
    return F.hardtanh_backward(dout, cache)


# ---------------------------------------------------------------------------------------------- modules
class ReLU(_Activation):
    r"""``ReLU(x) = max(x, 0)``, elementwise.

    .. math:: \mathrm{ReLU}(x) = \max(x, 0)

    Args:
        inplace: accepted for PyTorch compatibility; minidl never overwrites the input. Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * [x > 0]
    Examples:
        >>> ReLU()(np.array([-1.0, 2.0]))
        array([0., 2.])
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("ReLU", inplace)

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.relu_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.relu_backward(dout, cache)


class LeakyReLU(_Activation):
    r"""``LeakyReLU(x) = x`` for ``x > 0``, else ``negative_slope * x``.

    .. math:: \mathrm{LeakyReLU}(x) = \max(x, 0) + \mathrm{negative\_slope} \cdot \min(x, 0)

    Args:
        negative_slope: slope for negative inputs. Default: 0.01.
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout where x > 0, else negative_slope * dout
    Examples:
        >>> LeakyReLU(0.1)(np.array([-1.0, 2.0]))
        array([-0.1,  2. ])
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = check_float("LeakyReLU", "negative_slope", negative_slope)
        self.inplace = _check_inplace("LeakyReLU", inplace)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.leaky_relu_forward(x, self.negative_slope)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.leaky_relu_backward(dout, cache)


class Hardtanh(_Activation):
    r"""``Hardtanh(x) = clip(x, min_val, max_val)``.

    .. math:: \mathrm{Hardtanh}(x) = \min(\max(x, \mathrm{min\_val}), \mathrm{max\_val})

    Args:
        min_val: lower end of the linear region. Default: -1.0.
        max_val: upper end of the linear region. Default: 1.0.
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * [min_val < x < max_val]
    Examples:
        >>> Hardtanh()(np.array([-3.0, 0.5, 3.0]))
        array([-1. ,  0.5,  1. ])
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.min_val = check_float(type(self).__name__, "min_val", min_val)
        self.max_val = check_float(type(self).__name__, "max_val", max_val)
        if self.min_val > self.max_val:
            raise ValueError(f"{type(self).__name__}: min_val ({min_val}) must not exceed max_val ({max_val})")
        self.inplace = _check_inplace(type(self).__name__, inplace)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"min_val": self.min_val, "max_val": self.max_val}

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.hardtanh_forward(x, self.min_val, self.max_val)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.hardtanh_backward(dout, cache)


class ReLU6(Hardtanh):
    r"""``ReLU6(x) = min(max(x, 0), 6)`` (MobileNetV2's activation; Hardtanh(0, 6)).

    .. math:: \mathrm{ReLU6}(x) = \min(\max(x, 0), 6)

    Args:
        inplace: accepted for PyTorch compatibility (never in place). Default: False.
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * [0 < x < 6]
    Examples:
        >>> ReLU6()(np.array([-1.0, 3.0, 9.0]))
        array([0., 3., 6.])
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.relu6_forward(x)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.relu6_backward(dout, cache)
