r"""Mul: multiply the input by a fixed number, a layer with no parameters.

airbench (Jordan 2024) ends its network with ``Linear(256, 10, bias=False)`` followed by a multiplication by 1/9:
the logits' scale is fixed in the architecture rather than learned, which sets the temperature of the softmax at
the start of training. It is not the same as scaling the Linear weights at initialization: the gradient that
reaches the weights is scaled too, so SGD takes different steps.

.. math:: y = s\,x \qquad\qquad \frac{\partial L}{\partial x} = s\,\frac{\partial L}{\partial y}
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl.nn._checks import check_array, check_float, check_grad_output
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["Mul", "mul_backward", "mul_forward"]


class MulCache(NamedTuple):
    """The cache of :func:`mul_forward`: the factor and the output's shape and dtype (to check ``dout``)."""

    scale: float
    shape: tuple[int, ...]
    dtype: Any


def mul_forward(x: Any, scale: float) -> tuple[Any, Any]:
    r"""Multiply every element by the number ``scale``. Returns ``(out, cache)``.

    .. math:: out = s\,x

    The result keeps the input's dtype (a Python float does not promote a float32 array).

    Shape:
        - Input: (*), any shape.  - Output: (*), the input's shape.
    Backward:
        dx = s * dout.
    Examples:
        >>> import numpy as np
        >>> mul_forward(np.array([3.0, -6.0], np.float32), 1 / 3)[0]
        array([ 1., -2.], dtype=float32)
    """
    check_array("mul_forward", x)
    scale = check_float("mul_forward", "scale", scale)
    out = (x * scale).astype(x.dtype, copy=False)
    return out, MulCache(scale, tuple(out.shape), out.dtype)


def mul_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of :func:`mul_forward`: the upstream gradient times the same factor.

    .. math:: dx = s\,dout

    Shape:
        - dout: the output's shape (*).  - dx: the input's shape (*).
    Examples:
        >>> import numpy as np
        >>> out, cache = mul_forward(np.zeros((2, 3)), 0.5)
        >>> mul_backward(np.ones((2, 3)), cache)
        array([[0.5, 0.5, 0.5],
               [0.5, 0.5, 0.5]])
    """
    check_grad_output("mul_backward", dout, cache.shape, cache.dtype)
    return (dout * cache.scale).astype(dout.dtype, copy=False)


class Mul(Module):
    r"""Multiplies its input by a fixed number ``scale`` (no parameters): airbench's logit scaling.

    .. math:: y = s\,x

    Args:
        scale: the factor s, a finite float.
    Shape:
        - Input: (*), any shape.  - Output: (*), the same shape.
    Backward:
        dx = s * dout.
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> m = nn.Mul(1 / 9)
        >>> y = m(np.full((2, 10), 9.0, np.float32))
        >>> y[0, :3], m.backward(np.ones_like(y))[0, :3]
        (array([1., 1., 1.], dtype=float32), array([0.11111111, 0.11111111, 0.11111111], dtype=float32))
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = check_float("Mul", "scale", scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

    def forward(self, x: Any) -> Any:
        out, cache = F.mul_forward(x, self.scale)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.mul_backward(dout, cache)
