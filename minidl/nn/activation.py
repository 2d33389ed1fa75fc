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

The smooth activations (ELU, GELU, SiLU, Softplus, Mish) live in :mod:`minidl.nn.activation_smooth` and are
re-exported here; the error function GELU needs (W. J. Cody's rational approximations, NumPy has none) and the shared
Module base are in :mod:`minidl.nn._activation_common`.

PyTorch's ``inplace=True`` is accepted where PyTorch has it, but minidl never overwrites the input: backward needs
it (or the output), and a new array is always returned.

A fast backend (Numba) supplies one-pass kernels for most of these functionals, looked up with
``getattr(backend, name, None)``; the NumPy code here is their reference (``minidl/backend/_numba_elementwise.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._activation_common import _Activation, _cast, _check_inplace, _sigmoid, _xp
from minidl.nn._checks import check_array, check_float, check_int
from minidl.nn.activation_smooth import *  # noqa: F403  (re-exported: one place to import every activation)
from minidl.nn.activation_smooth import __all__ as _smooth_all

__all__ = [
    "Hardswish",
    "Hardtanh",
    "LeakyReLU",
    "LogSoftmax",
    "ReLU",
    "ReLU6",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "add_relu_backward",
    "add_relu_forward",
    "hardswish_backward",
    "hardswish_forward",
    "hardtanh_backward",
    "hardtanh_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "relu6_backward",
    "relu6_forward",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_backward",
    "softmax_forward",
    "tanh_backward",
    "tanh_forward",
    *_smooth_all,
]


# ---------------------------------------------------------------------------------------------- piecewise linear
def relu_forward(x: Any) -> tuple[Any, Any]:
    """``y = max(x, 0)``. Returns ``(out, cache)``; the cache is the bool mask ``x > 0``."""
    be = check_array("relu_forward", x)
    kernel = getattr(be, "relu_forward", None)  # a fast backend's kernel (minidl/backend/numba_backend.py)
    if kernel is not None:
        return kernel(x)  # the same (out, mask) in one pass
    mask = ~(x <= 0)  # True where x > 0 and where x is NaN, so NaNs propagate as in PyTorch
    return be.xp.where(mask, x, 0), mask


def relu_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * [x > 0]`` (PyTorch's choice at the kink x = 0: gradient 0)."""
    kernel = getattr(check_array("relu_backward", dout, what="gradient"), "relu_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/numba_backend.py)
        return kernel(dout, cache)
    return dout * cache


def add_relu_forward(a: Any, b: Any) -> tuple[Any, Any]:
    """``relu(a + b)``: a residual sum and the ReLU after it (the end of a ResNet block). Returns ``(out, cache)``.

    On the NumPy backend exactly ``relu_forward(a + b)``; a fast backend (Numba) does both in one parallel pass.

    Shape:
        - a, b: the same shape (no broadcasting) - Output: that shape.

    Backward:
        dz = dout * [a + b > 0], the gradient of both a and b (a sum passes its gradient to each term).

    Examples:
        >>> import numpy as np
        >>> out, cache = add_relu_forward(np.array([1.0, -2.0]), np.array([-3.0, 4.0]))
        >>> out
        array([0., 2.])
        >>> add_relu_backward(np.array([5.0, 5.0]), cache)
        array([0., 5.])
    """
    be = check_array("add_relu_forward", a)
    check_array("add_relu_forward", b, what="second input")
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(
            f"add_relu_forward: expected two inputs of the same shape and dtype, got {tuple(a.shape)} {a.dtype} "
            f"and {tuple(b.shape)} {b.dtype}"
        )
    kernel = getattr(be, "add_relu_forward", None)  # a fast backend's kernel (minidl/backend/numba_backend.py)
    if kernel is not None:
        return kernel(a, b)
    return relu_forward(a + b)


def add_relu_backward(dout: Any, cache: Any) -> Any:
    """Gradient of :func:`add_relu_forward` with respect to the sum, hence to each of a and b: ``dout * mask``."""
    return relu_backward(dout, cache)


def leaky_relu_forward(x: Any, negative_slope: float = 0.01) -> tuple[Any, Any]:
    """``y = x`` where ``x > 0``, else ``negative_slope * x``. Cache: ``(mask, negative_slope)``."""
    be = check_array("leaky_relu_forward", x)
    kernel = getattr(be, "leaky_relu_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x, negative_slope)  # the same (out, cache) in one pass
    mask = x > 0
    negative_slope = float(negative_slope)  # a Python float keeps x's dtype (a NumPy float64 would promote it)
    return be.xp.where(mask, x, x * negative_slope), (mask, negative_slope)


def leaky_relu_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout`` where ``x > 0``, else ``negative_slope * dout``."""
    kernel = getattr(check_array("leaky_relu_backward", dout, what="gradient"), "leaky_relu_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    mask, negative_slope = cache
    return _xp(dout).where(mask, dout, dout * float(negative_slope))


def hardtanh_forward(x: Any, min_val: float = -1.0, max_val: float = 1.0) -> tuple[Any, Any]:
    """``y = clip(x, min_val, max_val)``. Cache: the mask ``min_val < x < max_val`` where the slope is 1."""
    be = check_array("hardtanh_forward", x)
    if min_val > max_val:
        raise ValueError(f"hardtanh_forward: min_val ({min_val}) must not exceed max_val ({max_val})")
    kernel = getattr(be, "hardtanh_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x, min_val, max_val)  # the same (out, mask) in one pass
    return _cast(x, be.xp.clip(x, min_val, max_val)), (x > min_val) & (x < max_val)


def hardtanh_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * [min_val < x < max_val]`` (0 in the flat parts and, as in PyTorch, at the corners)."""
    kernel = getattr(check_array("hardtanh_backward", dout, what="gradient"), "hardtanh_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    return dout * cache


def relu6_forward(x: Any) -> tuple[Any, Any]:
    """``y = min(max(x, 0), 6)`` = hardtanh(x, 0, 6) (MobileNetV2). Cache: the mask ``0 < x < 6``."""
    check_array("relu6_forward", x)
    return hardtanh_forward(x, 0.0, 6.0)


def relu6_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * [0 < x < 6]``."""
    kernel = getattr(check_array("relu6_backward", dout, what="gradient"), "hardtanh_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    return dout * cache


def hardswish_forward(x: Any) -> tuple[Any, Any]:
    """``y = x * relu6(x + 3) / 6`` (MobileNetV3). Cache: ``x``."""
    be = check_array("hardswish_forward", x)
    kernel = getattr(be, "hardswish_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x)
    return x * be.xp.clip(x + 3, 0, 6) / 6, x


def hardswish_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * f'(x)``, f' = 0 for x < -3, (2x + 3) / 6 for -3 <= x <= 3, 1 for x > 3 (PyTorch's rule)."""
    kernel = getattr(check_array("hardswish_backward", dout, what="gradient"), "hardswish_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    x = cache
    xp = _xp(x)
    slope = xp.where(x < -3, 0.0, xp.where(x <= 3, x / 3 + 0.5, 1.0))
    return dout * _cast(x, slope)


# ---------------------------------------------------------------------------------------------- sigmoid and tanh
def sigmoid_forward(x: Any) -> tuple[Any, Any]:
    """``y = 1 / (1 + exp(-x))``, stable for large ``|x|``. Cache: ``out``."""
    be = check_array("sigmoid_forward", x)
    kernel = getattr(be, "sigmoid_forward", None)  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
    if kernel is not None:
        return kernel(x)
    out = _cast(x, _sigmoid(be.xp, x))
    return out, out


def sigmoid_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * y * (1 - y)``."""
    kernel = getattr(check_array("sigmoid_backward", dout, what="gradient"), "sigmoid_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py)
        return kernel(dout, cache)
    return dout * cache * (1 - cache)


def tanh_forward(x: Any) -> tuple[Any, Any]:
    """``y = tanh(x)``. Cache: ``out``."""
    be = check_array("tanh_forward", x)
    out = be.xp.tanh(x)
    return out, out


def tanh_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout * (1 - y^2)``."""
    kernel = getattr(check_array("tanh_backward", dout, what="gradient"), "tanh_backward", None)
    if kernel is not None:  # a fast backend's kernel (minidl/backend/_numba_elementwise.py; not for the forward:
        return kernel(dout, cache)  # NumPy's SIMD tanh is faster than the kernel's)
    return dout * (1 - cache * cache)


# ---------------------------------------------------------------------------------------------- softmax
def _softmax_dim(where: str, x: Any, dim: int) -> int:
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{where}: dim {dim} is out of range for a {x.ndim}-D input of shape {tuple(x.shape)}")
    return dim % x.ndim


def softmax_forward(x: Any, dim: int = -1) -> tuple[Any, Any]:
    """``p = exp(x - max) / sum(exp(x - max))`` along ``dim``. Cache: ``(p, dim)``."""
    be = check_array("softmax_forward", x, min_ndim=1)
    dim = _softmax_dim("softmax_forward", x, dim)
    e = be.xp.exp(x - x.max(axis=dim, keepdims=True))
    p = e / e.sum(axis=dim, keepdims=True)
    return p, (p, dim)


def softmax_backward(dout: Any, cache: Any) -> Any:
    """``dx = p * (dout - sum(dout * p, dim))``: the Jacobian ``diag(p) - p p^T`` applied to ``dout``."""
    p, dim = cache
    return p * (dout - (dout * p).sum(axis=dim, keepdims=True))


def log_softmax_forward(x: Any, dim: int = -1) -> tuple[Any, Any]:
    """``y = x - max - log(sum(exp(x - max)))`` along ``dim`` (the log-sum-exp trick). Cache: ``(y, dim)``."""
    be = check_array("log_softmax_forward", x, min_ndim=1)
    dim = _softmax_dim("log_softmax_forward", x, dim)
    shifted = x - x.max(axis=dim, keepdims=True)
    out = shifted - be.xp.log(be.xp.exp(shifted).sum(axis=dim, keepdims=True))
    return out, (out, dim)


def log_softmax_backward(dout: Any, cache: Any) -> Any:
    """``dx = dout - exp(y) * sum(dout, dim)`` (``exp(y)`` is the softmax)."""
    out, dim = cache
    return dout - _xp(out).exp(out) * dout.sum(axis=dim, keepdims=True)


# ---------------------------------------------------------------------------------------------- modules
class ReLU(_Activation):
    """``ReLU(x) = max(x, 0)``.

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

    _forward_fn = staticmethod(relu_forward)
    _backward_fn = staticmethod(relu_backward)

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("ReLU", inplace)


class LeakyReLU(_Activation):
    """``LeakyReLU(x) = x`` for ``x > 0``, else ``negative_slope * x``.

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

    _forward_fn = staticmethod(leaky_relu_forward)
    _backward_fn = staticmethod(leaky_relu_backward)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = check_float("LeakyReLU", "negative_slope", negative_slope)
        self.inplace = _check_inplace("LeakyReLU", inplace)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Hardtanh(_Activation):
    """``Hardtanh(x) = clip(x, min_val, max_val)``.

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

    _forward_fn = staticmethod(hardtanh_forward)
    _backward_fn = staticmethod(hardtanh_backward)

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.min_val = check_float(type(self).__name__, "min_val", min_val)
        self.max_val = check_float(type(self).__name__, "max_val", max_val)
        if self.min_val > self.max_val:
            raise ValueError(f"{type(self).__name__}: min_val ({min_val}) must not exceed max_val ({max_val})")
        self.inplace = _check_inplace(type(self).__name__, inplace)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"min_val": self.min_val, "max_val": self.max_val}


class ReLU6(Hardtanh):
    """``ReLU6(x) = min(max(x, 0), 6)`` (MobileNetV2's activation; Hardtanh(0, 6)).

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


class Hardswish(_Activation):
    """``Hardswish(x) = x * relu6(x + 3) / 6`` (Howard et al. 2019, MobileNetV3).

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

    _forward_fn = staticmethod(hardswish_forward)
    _backward_fn = staticmethod(hardswish_backward)

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _check_inplace("Hardswish", inplace)


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

    _forward_fn = staticmethod(sigmoid_forward)
    _backward_fn = staticmethod(sigmoid_backward)


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

    _forward_fn = staticmethod(tanh_forward)
    _backward_fn = staticmethod(tanh_backward)


class Softmax(_Activation):
    """``Softmax(x)_i = exp(x_i) / sum_j exp(x_j)`` along ``dim`` (max-subtracted, so it never overflows).

    Args:
        dim: the dimension that sums to 1. Default: None, which minidl allows only for 1-D and 2-D inputs and
            reads as ``dim=-1`` (the class dimension of ``(N, C)`` logits, which is also PyTorch's deprecated
            implicit choice there); other inputs need an explicit ``dim`` (PyTorch's implicit rule would pick
            dim 0 for 3-D and dim 1 for 4-D inputs, a classic silent bug).
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = p * (dout - sum(dout * p, dim))
    Examples:
        >>> Softmax(dim=1)(np.zeros((1, 4)))
        array([[0.25, 0.25, 0.25, 0.25]])
    """

    _forward_fn = staticmethod(softmax_forward)
    _backward_fn = staticmethod(softmax_backward)

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else check_int(type(self).__name__, "dim", dim, minimum=-(2**31))

    def _hyperparameters(self) -> dict[str, Any]:
        return {"dim": -1 if self.dim is None else self.dim}

    def forward(self, x: Any) -> Any:
        check_array(type(self).__name__, x, min_ndim=1)
        if self.dim is None and x.ndim > 2:
            raise ValueError(
                f"{type(self).__name__}: dim=None is only allowed for 1-D or 2-D inputs, got shape {tuple(x.shape)}; "
                f"pass the dimension explicitly, e.g. {type(self).__name__}(dim=1) for class scores of (N, C, H, W)"
            )
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``LogSoftmax(x) = x - log(sum_j exp(x_j))`` along ``dim`` (stable log-sum-exp).

    Args:
        dim: the dimension to normalize. Default: None, read as for :class:`Softmax` (1-D/2-D inputs only).
    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout - softmax(x) * sum(dout, dim)
    Examples:
        >>> LogSoftmax(dim=1)(np.zeros((1, 2))).round(4)
        array([[-0.6931, -0.6931]])
    """

    _forward_fn = staticmethod(log_softmax_forward)
    _backward_fn = staticmethod(log_softmax_backward)
