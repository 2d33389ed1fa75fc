r"""Activations with a learned parameter: PReLU (He et al. 2015, "Delving Deep into Rectifiers").

PReLU is LeakyReLU with a learned negative slope :math:`a_c`, one per channel (``num_parameters = C``, channel axis
1 as in PyTorch) or one shared by all (``num_parameters = 1``):

.. math:: y_{n,c,\ldots} = \begin{cases} x_{n,c,\ldots} & x_{n,c,\ldots} > 0 \\
    a_c\, x_{n,c,\ldots} & x_{n,c,\ldots} \le 0 \end{cases}

Backward: for each element :math:`\partial y / \partial x` is 1 or :math:`a_c`, and :math:`\partial y / \partial a_c`
is 0 or :math:`x`, so

.. math:: dx = dout \odot \begin{cases} 1 & x > 0 \\ a_c & x \le 0 \end{cases}, \qquad
    da_c = \sum_{n, \ldots \,:\, x_{n,c,\ldots} \le 0} dout_{n,c,\ldots}\; x_{n,c,\ldots}

(:math:`a_c` is shared by every element of channel c, hence the sum; with one parameter it sums over everything).
At :math:`x = 0` the slope is :math:`a`, as in PyTorch (that element adds :math:`0` to :math:`da`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl._dtype import get_default_dtype
from minidl.backend import get_array_module, get_backend
from minidl.nn import init
from minidl.nn._checks import (
    _check_parameter_dtype,
    check_array,
    check_float,
    check_grad_output,
    check_int,
    check_same_device,
)
from minidl.nn.dispatch import F
from minidl.nn.module import Module, Parameter

__all__ = ["PReLU", "prelu_backward", "prelu_forward"]


class PReLUCache(NamedTuple):
    """The cache of :func:`prelu_forward`."""

    x: Any
    weight: Any  # (num_parameters,)


def _slope(weight: Any, ndim: int) -> Any:
    """The weight shaped to broadcast against an ``ndim``-D input: (1, C, 1, ..., 1), or () for one slope (the
    output keeps the input's shape, also a 0-D one)."""
    if weight.shape[0] == 1:
        return weight.reshape(())
    return weight.reshape((1, -1) + (1,) * (ndim - 2))


def prelu_forward(x: Any, weight: Any) -> tuple[Any, Any]:
    r"""PReLU: ``y = x`` where ``x > 0``, else ``weight[c] * x`` (c the index on axis 1). Cache: ``(x, weight)``.

    .. math:: y_{n,c,\ldots} = \max(x_{n,c,\ldots}, 0) + a_c \min(x_{n,c,\ldots}, 0)

    Args:
        x: any shape; with more than one slope, (N, C, \*) with C = ``weight.shape[0]``.
        weight: (1,) (one slope for all) or (C,) (one per channel of axis 1).

    Shape:
        - Input: (N, C, \*) (any shape with one slope).  - Output: the same.
    Backward:
        dx = dout where x > 0, else a_c * dout;  da_c = sum of dout * x where x <= 0 (:func:`prelu_backward`).

    Examples:
        >>> out, cache = prelu_forward(np.array([[-2.0, 3.0], [-4.0, 1.0]]), np.array([0.5, 0.25]))
        >>> out
        array([[-1.,  3.],
               [-2.,  1.]])
    """
    where = "prelu_forward"
    be = check_array(where, x)
    check_same_device(where, x, weight)
    check_array(where, weight, ndim=1, what="weight")
    _check_parameter_dtype(where, x, weight.dtype)
    num_parameters = weight.shape[0]
    if num_parameters != 1:
        channels = x.shape[1] if x.ndim >= 2 else 1
        if channels != num_parameters:
            raise ValueError(
                f"{where}: expected {num_parameters} channels in dimension 1 of the input (one per slope; "
                f"num_parameters={num_parameters}), got shape {tuple(x.shape)}"
            )
    return be.xp.where(x > 0, x, x * _slope(weight, x.ndim)), PReLUCache(x, weight)


def prelu_backward(dout: Any, cache: Any, *, weight_grad: bool = True) -> tuple[Any, Any | None]:
    r"""Gradients of :func:`prelu_forward`: ``(dx, dweight)`` (``dweight`` None when ``weight_grad`` is False).

    .. math:: dx = dout \odot \begin{cases} 1 & x > 0 \\ a_c & x \le 0 \end{cases}, \qquad
        da_c = \sum_{n, \ldots \,:\, x_{n,c,\ldots} \le 0} dout_{n,c,\ldots}\; x_{n,c,\ldots}

    Shape:
        - dout: the shape of x.  - dx: the same; dweight: (num_parameters,).

    Examples:
        >>> out, cache = prelu_forward(np.array([-2.0, 0.0, 2.0]), np.array([0.25]))
        >>> prelu_backward(np.ones(3), cache)  # the slope a at x = 0, as PyTorch
        (array([0.25, 0.25, 1.  ]), array([-2.]))
    """
    x, weight = cache
    check_grad_output("prelu_backward", dout, x.shape, x.dtype)
    xp = get_array_module(x)
    positive = x > 0
    dx = xp.where(positive, dout, dout * _slope(weight, x.ndim))
    dweight = None
    if weight_grad:
        contribution = xp.where(positive, 0, dout * x)
        if weight.shape[0] == 1:
            dweight = contribution.sum().reshape(1)
        else:
            dweight = contribution.sum(axis=tuple(a for a in range(x.ndim) if a != 1))
        dweight = dweight.astype(weight.dtype, copy=False)
    return dx, dweight


class PReLU(Module):
    r"""``PReLU(x) = max(0, x) + a * min(0, x)`` with a learned slope ``a``, shared or one per channel (axis 1).

    .. math:: \mathrm{PReLU}(x)_{n,c,\ldots} = \max(0, x_{n,c,\ldots}) + a_c \min(0, x_{n,c,\ldots})

    Args:
        num_parameters: 1 (one slope for every channel) or C, the channels of the input (axis 1). Default: 1.
        init: the initial value of every slope. Default: 0.25.

    Attributes:
        weight: (num_parameters,), filled with ``init``. (Do not use weight decay on it, as He et al. advise.)

    Shape:
        - Input: (N, C, \*) with C = num_parameters when it is not 1 (any shape with one slope).
        - Output: the same.
    Backward:
        dx = dout where x > 0, else a_c * dout;  da_c += sum of dout * x over the entries of channel c with x <= 0.

    Examples:
        >>> from minidl import nn
        >>> prelu = nn.PReLU()
        >>> y = prelu(np.array([[-4.0, 2.0]], np.float32))
        >>> y
        array([[-1.,  2.]], dtype=float32)
        >>> prelu.backward(np.ones_like(y)), prelu.weight.grad
        (array([[0.25, 1.  ]], dtype=float32), array([-4.], dtype=float32))
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        super().__init__()
        self.num_parameters = check_int("PReLU", "num_parameters", num_parameters)
        self.init = check_float("PReLU", "init", init)
        self.weight = Parameter(get_backend().xp.empty((self.num_parameters,), dtype=get_default_dtype()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every slope = ``init`` (PyTorch's ``init.constant_(self.weight, self.init)``)."""
        init.constant_(self.weight, self.init)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"

    def forward(self, x: Any) -> Any:
        out, cache = F.prelu_forward(x, self.weight.data)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dweight = F.prelu_backward(dout, cache, weight_grad=self.weight.requires_grad)
        if dweight is not None:
            self.weight.accumulate_grad(dweight)
        return dx
