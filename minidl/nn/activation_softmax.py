r"""Softmax and log-softmax along one dimension: the pairs and the Softmax, LogSoftmax modules.

Softmax :math:`p_i = e^{x_i} / \sum_j e^{x_j}` is computed after subtracting :math:`\max_j x_j` (the result does
not change, and :math:`e^{x}` can no longer overflow). Its Jacobian is :math:`\partial p_i / \partial x_j =
p_i (\delta_{ij} - p_j)`, so :math:`dx = p \odot (dout - \sum_j dout_j p_j)`. For log-softmax
:math:`\ell = x - \log\sum_j e^{x_j}`: :math:`dx = dout - p \sum_j dout_j`.

The softmax pair is marked ``@kernel("softmax")``: the Numba backend replaces it, along the last dimension (what
attention's weights use), with compiled loops over the rows in parallel (``minidl/backend/_numba_softmax.py``); along
another dimension the reference runs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._activation_common import _Activation, _xp
from minidl.nn._checks import check_array, check_grad_output, check_int
from minidl.nn.dispatch import F, kernel

__all__ = [
    "LogSoftmax",
    "Softmax",
    "log_softmax_backward",
    "log_softmax_forward",
    "softmax_backward",
    "softmax_forward",
]


# ---------------------------------------------------------------------------------------------- softmax
class SoftmaxCache(NamedTuple):
    """The cache of :func:`softmax_forward` (``out`` = p) and of :func:`log_softmax_forward` (``out`` = log p)."""

    out: Any
    dim: int


def _softmax_dim(where: str, x: Any, dim: int) -> int:
    check_array(where, x, min_ndim=1)
    dim = check_int(where, "dim", dim, minimum=-(2**31))
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{where}: dim {dim} is out of range for a {x.ndim}-D input of shape {tuple(x.shape)}")
    return dim % x.ndim


def _softmax_setup(x: Any, dim: int = -1) -> int:
    """Check :func:`softmax_forward`'s arguments; return ``dim`` in [0, x.ndim)."""
    return _softmax_dim("softmax_forward", x, dim)


@kernel("softmax", setup=_softmax_setup)
def softmax_forward(x: Any, dim: int = -1) -> tuple[Any, Any]:
    r"""Softmax: ``p = exp(x - max) / sum(exp(x - max))`` along ``dim``. Cache: ``(p, dim)``.

    .. math:: p_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j \quad (i, j \text{ along dim})

    Shape:
        - Input: any shape with at least one dimension.  - Output: the same.
    Backward:
        dx = p * (dout - sum(dout * p, dim)).
    Examples:
        >>> softmax_forward(np.zeros((1, 4)), dim=1)[0]
        array([[0.25, 0.25, 0.25, 0.25]])
    """
    dim = _softmax_setup(x, dim)
    e = _xp(x).exp(x - x.max(axis=dim, keepdims=True))
    p = e / e.sum(axis=dim, keepdims=True)
    return p, SoftmaxCache(p, dim)


@kernel("softmax")
def softmax_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of softmax: the Jacobian ``diag(p) - p p^T`` applied to ``dout``, along ``dim``.

    .. math:: dx_i = p_i \Big(dout_i - \sum_j dout_j\, p_j\Big)

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = softmax_forward(np.zeros((1, 2)), dim=1)
        >>> softmax_backward(np.array([[1.0, 0.0]]), cache)  # p = (1/2, 1/2): dx = p (dout - 1/2)
        array([[ 0.25, -0.25]])
    """
    p, dim = cache
    check_grad_output("softmax_backward", dout, p.shape, p.dtype)
    return p * (dout - (dout * p).sum(axis=dim, keepdims=True))


def log_softmax_forward(x: Any, dim: int = -1) -> tuple[Any, Any]:
    r"""Log-softmax: ``y = x - max - log(sum(exp(x - max)))`` along ``dim`` (the log-sum-exp trick). Cache:
    ``(y, dim)``.

    .. math:: y_i = x_i - m - \log \sum_j e^{x_j - m}, \qquad m = \max_j x_j

    Shape:
        - Input: any shape with at least one dimension.  - Output: the same.
    Backward:
        dx = dout - exp(y) * sum(dout, dim).
    Examples:
        >>> log_softmax_forward(np.zeros((1, 2)), dim=1)[0].round(4)
        array([[-0.6931, -0.6931]])
    """
    dim = _softmax_dim("log_softmax_forward", x, dim)
    xp = _xp(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
    return out, SoftmaxCache(out, dim)


def log_softmax_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of log-softmax (``exp(y)`` is the softmax p).

    .. math:: dx_i = dout_i - e^{y_i} \sum_j dout_j

    Shape:
        - dout: the output's shape.  - dx: the same.
    Examples:
        >>> _, cache = log_softmax_forward(np.zeros((1, 2)), dim=1)
        >>> log_softmax_backward(np.array([[1.0, 0.0]]), cache)
        array([[ 0.5, -0.5]])
    """
    out, dim = cache
    check_grad_output("log_softmax_backward", dout, out.shape, out.dtype)
    return dout - _xp(out).exp(out) * dout.sum(axis=dim, keepdims=True)


# ---------------------------------------------------------------------------------------------- modules
class Softmax(_Activation):
    r"""``Softmax(x)_i = exp(x_i) / sum_j exp(x_j)`` along ``dim`` (max-subtracted, so it never overflows).

    .. math:: \mathrm{Softmax}(x)_i = p_i = \frac{e^{x_i}}{\sum_j e^{x_j}}

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

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else check_int(type(self).__name__, "dim", dim, minimum=-(2**31))

    def _hyperparameters(self) -> dict[str, Any]:
        return {"dim": -1 if self.dim is None else self.dim}

    def forward(self, x: Any) -> Any:
        if self.dim is None and getattr(x, "ndim", 0) > 2:  # (the pair checks the rest)
            raise ValueError(
                f"{type(self).__name__}: dim=None is only allowed for 1-D or 2-D inputs, got shape {tuple(x.shape)}; "
                f"pass the dimension explicitly, e.g. {type(self).__name__}(dim=1) for class scores of (N, C, H, W)"
            )
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.softmax_forward(x, -1 if self.dim is None else self.dim)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.softmax_backward(dout, cache)


class LogSoftmax(Softmax):
    r"""``LogSoftmax(x) = x - log(sum_j exp(x_j))`` along ``dim`` (stable log-sum-exp).

    .. math:: \mathrm{LogSoftmax}(x)_i = x_i - \log \sum_j e^{x_j}

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

    def _pair_forward(self, x: Any) -> tuple[Any, Any]:
        return F.log_softmax_forward(x, -1 if self.dim is None else self.dim)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.log_softmax_backward(dout, cache)
