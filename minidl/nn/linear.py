r"""The fully connected (affine) layer.

.. math:: y = x W^T + b, \qquad y_{n,o} = b_o + \sum_i x_{n,i} W_{o,i}

with :math:`W` of shape (out_features, in_features), PyTorch's layout. Any leading dimensions are treated as a
batch: an input (N, \*, in_features) is flattened to (M, in_features), M = N times the product of \*, multiplied,
and reshaped back.

Backward, with :math:`G` = dout flattened to (M, out_features) and :math:`X` = x flattened to (M, in_features):

.. math::
    dx = G W, \qquad dW = G^T X, \qquad db = \textstyle\sum_m G_{m,:}

(each row of the batch contributes to dW and db, hence the sums over m).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from minidl._dtype import get_default_dtype
from minidl.backend import get_backend
from minidl.nn import init
from minidl.nn._checks import _check_parameter_dtype, check_array, check_grad_output, check_int, check_same_device
from minidl.nn.dispatch import F, kernel
from minidl.nn.module import Module, Parameter

__all__ = ["Linear", "linear_backward", "linear_forward"]


class LinearCache(NamedTuple):
    """The cache of :func:`linear_forward`."""

    x: Any
    weight: Any
    has_bias: bool


def _linear_setup(x: Any, weight: Any, bias: Any | None = None) -> int:
    """Validate :func:`linear_forward`'s arguments; returns M, the rows of the (M, in_features) product."""
    where = "linear_forward"
    check_array(where, x, min_ndim=1)
    check_same_device(where, x, weight, bias)
    check_array(where, weight, ndim=2, what="weight")
    _check_parameter_dtype(where, x, weight.dtype)
    out_features, in_features = weight.shape
    if x.shape[-1] != in_features:
        raise ValueError(
            f"{where}: expected the input's last dimension to be in_features={in_features}, got shape "
            f"{tuple(x.shape)} (last dimension {x.shape[-1]}; in_features is weight.shape[1])"
        )
    if bias is not None:
        check_array(where, bias, ndim=1, dtype=weight.dtype, what="bias")
        if tuple(bias.shape) != (out_features,):
            raise ValueError(f"{where}: bias must have shape ({out_features},), got {tuple(bias.shape)}")
    return math.prod(x.shape[:-1])  # M: one (M, in) @ (in, out) product (a 3-D @ 2-D matmul is a slow loop)


@kernel("linear", setup=_linear_setup)
def linear_forward(x: Any, weight: Any, bias: Any | None = None) -> tuple[Any, Any]:
    r"""``out = x @ weight.T + bias`` over the last dimension of ``x``.

    .. math:: out_{m,o} = b_o + \sum_i x_{m,i} W_{o,i} \qquad (m \text{ runs over the leading dimensions})

    Args:
        x: (N, \*, in_features) input (also a single (in_features,) vector, as in PyTorch).
        weight: (out_features, in_features).
        bias: (out_features,) or None.

    Returns:
        ``(out, cache)``: out of shape (N, \*, out_features); the cache holds ``(x, weight, has_bias)``.

    Shape:
        - Input: (N, \*, in_features).  - Output: (N, \*, out_features).
    Backward:
        dx = dout @ W;  dW = dout_2d^T @ x_2d;  db = dout_2d summed over rows (:func:`linear_backward`).

    Examples:
        >>> import numpy as np
        >>> out, cache = linear_forward(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4))
        >>> out.shape
        (2, 4)
    """
    rows = _linear_setup(x, weight, bias)
    out_features, in_features = weight.shape
    out = (x.reshape(rows, in_features) @ weight.T).reshape(*x.shape[:-1], out_features)
    if bias is not None:
        out += bias
    return out, LinearCache(x, weight, bias is not None)


@kernel("linear")
def linear_backward(
    dout: Any, cache: Any, *, weight_grad: bool = True, bias_grad: bool = True
) -> tuple[Any, Any | None, Any | None]:
    r"""Gradients of :func:`linear_forward`.

    With G = dout as (M, out_features) and X = x as (M, in_features) (leading dimensions flattened):

    .. math:: dx = G W, \qquad dW = G^T X, \qquad db = \textstyle\sum_m G_{m,:}

    Args:
        dout: (N, \*, out_features), the gradient of the loss with respect to ``out``.
        cache: from :func:`linear_forward`.
        weight_grad, bias_grad: set False to skip computing dw / db (frozen parameters); they come back as None.

    Returns:
        ``(dx, dw, db)``: dx = dout @ W (shape of x); dw = dout_2d^T @ x_2d (out_features, in_features);
        db = dout_2d summed over rows (out_features,), or None without a bias.

    Shape:
        - dout: (N, \*, out_features).  - dx: (N, \*, in_features); dw: (out_features, in_features);
          db: (out_features,).

    Examples:
        >>> import numpy as np
        >>> x, w = np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
        >>> out, cache = linear_forward(x, w, np.zeros(2))
        >>> out
        array([[1., 5.]])
        >>> dx, dw, db = linear_backward(np.array([[1.0, 10.0]]), cache)
        >>> dx, dw, db
        (array([[ 1., 10., 10.]]), array([[ 1.,  2.,  3.],
               [10., 20., 30.]]), array([ 1., 10.]))
    """
    where = "linear_backward"
    if not isinstance(cache, tuple) or len(cache) != 3:
        raise TypeError(
            f"{where}: expected the cache linear_forward returned, (x, weight, has_bias), got {cache!r:.80}"
        )
    x, weight, has_bias = cache
    out_features, in_features = weight.shape
    if x.shape[-1:] != (in_features,):
        raise ValueError(
            f"{where}: the cache's x has shape {tuple(x.shape)} but its weight has shape {tuple(weight.shape)}; "
            f"expected x's last dimension to be in_features={in_features} (pass the cache linear_forward returned)"
        )
    check_grad_output(where, dout, (*x.shape[:-1], out_features), weight.dtype)
    rows = math.prod(x.shape[:-1])
    dout_2d = dout.reshape(rows, out_features)
    dx = (dout_2d @ weight).reshape(x.shape)
    dw = dout_2d.T @ x.reshape(rows, in_features) if weight_grad else None
    db = dout_2d.sum(axis=0) if has_bias and bias_grad else None
    return dx, dw, db


class Linear(Module):
    r"""Applies ``y = x W^T + b`` to the last dimension of the input.

    .. math:: y_{m,o} = b_o + \sum_i x_{m,i} W_{o,i}

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn an additive bias. Default: True.

    Attributes:
        weight: (out_features, in_features), initialized from U(-1/sqrt(in_features), 1/sqrt(in_features))
            (PyTorch's default: ``kaiming_uniform_(a=sqrt(5))``).
        bias: (out_features,), from the same U(-1/sqrt(in_features), 1/sqrt(in_features)); None if ``bias=False``.

    Shape:
        - Input: (N, \*, in_features), any number of leading dimensions (also (in_features,)).
        - Output: (N, \*, out_features).

    Backward:
        dx = dout @ W;  dW += dout_2d^T @ x_2d;  db += sum of dout_2d over rows  (x_2d, dout_2d: leading dims
        flattened). Frozen parameters (``requires_grad=False``) are skipped.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> layer = nn.Linear(4, 3)
        >>> layer
        Linear(in_features=4, out_features=3, bias=True)
        >>> y = layer(np.ones((2, 5, 4), np.float32))
        >>> y.shape
        (2, 5, 3)
        >>> layer.backward(np.ones_like(y)).shape, layer.weight.grad.shape
        ((2, 5, 4), (3, 4))
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, minimum=0)
        self.out_features = check_int("Linear", "out_features", out_features, minimum=0)
        if not isinstance(bias, bool):
            raise TypeError(f"Linear: bias must be a bool, got {bias!r}")
        xp, dtype = get_backend().xp, get_default_dtype()
        self.weight = Parameter(xp.empty((self.out_features, self.in_features), dtype=dtype))
        if bias:
            self.bias = Parameter(xp.empty((self.out_features,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: W and b from U(-k, k), k = 1/sqrt(in_features) (``kaiming_uniform_``, a=sqrt 5)."""
        if self.in_features == 0:  # nothing to draw a fan from; PyTorch leaves such tensors empty as well
            init.zeros_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)
            return
        init.default_layer_init_(self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def _where(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features})"

    def forward(self, x: Any) -> Any:
        bias = None if self.bias is None else self.bias.data
        out, cache = F.linear_forward(x, self.weight.data, bias)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dw, db = F.linear_backward(
            dout,
            cache,
            weight_grad=self.weight.requires_grad,
            bias_grad=self.bias is not None and self.bias.requires_grad,
        )
        if dw is not None:
            self.weight.accumulate_grad(dw)
        if db is not None:
            self.bias.accumulate_grad(db)
        return dx
