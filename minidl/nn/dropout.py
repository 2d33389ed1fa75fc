r"""Dropout (Srivastava et al. 2014): zero each unit with probability p during training.

*Inverted* dropout, as in PyTorch: the kept units are scaled by :math:`1/(1-p)` at training time,

.. math:: y = \frac{m \odot x}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p),

so :math:`E[y] = x` and evaluation needs no rescaling: in ``eval()`` mode dropout is the identity. ``Dropout2d``
draws one :math:`m` per *channel* (:math:`m_{n,c}` broadcast over H and W), zeroing whole feature maps, which suits
convolutional features whose neighbouring pixels are strongly correlated (Tompson et al. 2015).

Backward: the mask is a constant, so :math:`dx = m \odot dout / (1 - p)`: gradient flows only through the kept
units. With :math:`p = 1` every unit is dropped and :math:`y = 0`, :math:`dx = 0` (no division by zero).

Masks are drawn on the host from ``minidl.manual_seed``'s generator (so a seed fixes them on every backend) and
then moved to the input's backend.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from minidl._random import default_generator
from minidl.nn._checks import check_array, check_float, check_grad_output
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = [
    "Dropout",
    "Dropout2d",
    "dropout2d_backward",
    "dropout2d_forward",
    "dropout_backward",
    "dropout_forward",
]


def _check_p(where: str, p: Any) -> float:
    return check_float(where, "dropout probability p", p, low=0.0, high=1.0)


class DropoutCache(NamedTuple):
    """The cache of :func:`dropout_forward` and :func:`dropout2d_forward`."""

    mask: Any  # the bool keep-mask (broadcastable to x), or None when the forward was the identity
    scale: float  # 1 / (1 - p), or 0 for p = 1
    shape: tuple[int, ...]  # of x (and of the output)
    dtype: Any  # of x


def _masked(be: Any, x: Any, p: float, mask_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """Draw the keep-mask of ``mask_shape`` (broadcastable to x) and apply it: ``(out, cache)``."""
    keep = default_generator().random(mask_shape, dtype=np.float32) >= p  # P(keep) = 1 - p; never when p = 1
    mask = be.asarray(keep)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    out = x * mask
    out *= scale
    return out, DropoutCache(mask, scale, tuple(x.shape), x.dtype)


def dropout_forward(x: Any, p: float = 0.5, training: bool = True) -> tuple[Any, Any]:
    r"""Inverted dropout: each element is zeroed with probability ``p``, the rest scaled by ``1 / (1 - p)``.

    .. math:: out = \frac{m \odot x}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p)

    (out = 0 for p = 1).

    Args:
        x: input of any shape.
        p: probability of dropping an element, in [0, 1]. Default: 0.5.
        training: False (or p = 0) returns ``x`` itself. Default: True.

    Returns:
        ``(out, cache)``; the cache holds the bool keep-mask and the scale 1/(1-p) (mask None for the identity).

    Shape:
        - Input: any shape.  - Output: the same.
    Backward:
        dx = dout * mask / (1 - p) (:func:`dropout_backward`).

    Examples:
        >>> import minidl
        >>> _ = minidl.manual_seed(0)
        >>> out, cache = dropout_forward(np.ones(6), p=0.5)
        >>> sorted(set(out.tolist()))
        [0.0, 2.0]
    """
    be = check_array("dropout_forward", x)
    p = _check_p("dropout_forward", p)
    if not training or p == 0:
        return x, DropoutCache(None, 1.0, tuple(x.shape), x.dtype)
    return _masked(be, x, p, tuple(x.shape))


def _masked_backward(where: str, dout: Any, cache: Any) -> Any:
    mask, scale, shape, dtype = cache
    check_grad_output(where, dout, shape, dtype)
    if mask is None:
        return dout
    dx = dout * mask
    dx *= scale
    return dx


def dropout_backward(dout: Any, cache: Any) -> Any:
    r"""``dx = dout * mask / (1 - p)`` (``dx = dout`` when forward was the identity).

    .. math:: dx = \frac{m \odot dout}{1 - p} \quad (dx = 0 \text{ for } p = 1)

    Shape:
        - dout: the shape of x.  - dx: the same.

    Examples:
        >>> import minidl
        >>> _ = minidl.manual_seed(0)
        >>> out, cache = dropout_forward(np.ones(6), p=0.5)
        >>> dx = dropout_backward(np.ones(6), cache)
        >>> bool((dx == out).all())  # the same mask and scale
        True
    """
    return _masked_backward("dropout_backward", dout, cache)


def dropout2d_forward(x: Any, p: float = 0.5, training: bool = True) -> tuple[Any, Any]:
    r"""Channel dropout: each channel ``x[n, c]`` is zeroed entirely with probability ``p``; kept ones are scaled.

    .. math:: out_{n,c,h,w} = \frac{m_{n,c}\, x_{n,c,h,w}}{1 - p}, \qquad m_{n,c} \sim \mathrm{Bernoulli}(1 - p)

    Args:
        x: (N, C, H, W); a 3-D input is read as (N, C, L), as PyTorch 2 does (it zeros ``x[n, c, :]``).
        p: probability of dropping a channel, in [0, 1]. Default: 0.5.
        training: False (or p = 0) returns ``x`` itself. Default: True.

    Returns:
        ``(out, cache)``; the cache holds the keep-mask of shape (N, C, 1, 1) and the scale (None for the identity).

    Shape:
        - Input: (N, C, H, W) or (N, C, L).  - Output: the same.
    Backward:
        dx = dout * mask[n, c] / (1 - p) (:func:`dropout2d_backward`).

    Examples:
        >>> import minidl
        >>> _ = minidl.manual_seed(0)
        >>> out, cache = dropout2d_forward(np.ones((2, 3, 4, 4)), p=0.5)
        >>> cache.mask.shape, out.shape
        ((2, 3, 1, 1), (2, 3, 4, 4))
        >>> bool(((out == 0).all(axis=(2, 3)) | (out == 2).all(axis=(2, 3))).all())  # whole channels
        True
    """
    be = check_array("dropout2d_forward", x, ndim=(3, 4))
    p = _check_p("dropout2d_forward", p)
    if not training or p == 0:
        return x, DropoutCache(None, 1.0, tuple(x.shape), x.dtype)
    return _masked(be, x, p, tuple(x.shape[:2]) + (1,) * (x.ndim - 2))


def dropout2d_backward(dout: Any, cache: Any) -> Any:
    r"""``dx = dout * mask / (1 - p)`` with the (N, C, 1, 1) channel mask broadcast over the spatial dimensions.

    .. math:: dx_{n,c,h,w} = \frac{m_{n,c}\; dout_{n,c,h,w}}{1 - p} \quad (dx = 0 \text{ for } p = 1)

    Shape:
        - dout: (N, C, H, W) or (N, C, L).  - dx: the same.

    Examples:
        >>> import minidl
        >>> _ = minidl.manual_seed(0)
        >>> out, cache = dropout2d_forward(np.ones((2, 3, 4, 4)), p=0.5)
        >>> dx = dropout2d_backward(np.full((2, 3, 4, 4), 3.0), cache)
        >>> dx.shape, bool((dx == 3 * out).all())
        ((2, 3, 4, 4), True)
    """
    return _masked_backward("dropout2d_backward", dout, cache)


class Dropout(Module):
    r"""Zeroes each element with probability ``p`` in training mode and scales the others by ``1 / (1 - p)``.

    .. math:: y = \frac{m \odot x}{1 - p}, \quad m_i \sim \mathrm{Bernoulli}(1 - p) \ \text{(training)}, \qquad
        y = x \ \text{(eval)}

    Args:
        p: probability of an element to be zeroed. Default: 0.5.
        inplace: accepted for PyTorch compatibility; minidl never overwrites the input (a new array is returned).
            Default: False.

    Shape:
        - Input: any shape.  - Output: the same.

    Backward:
        dx = dout * mask / (1 - p)   (in eval mode, dx = dout)

    Examples:
        >>> import numpy as np
        >>> import minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> drop = nn.Dropout(p=0.5)
        >>> y = drop(np.ones((2, 4), np.float32))
        >>> sorted(set(y.ravel().tolist()))  # dropped, or kept and doubled
        [0.0, 2.0]
        >>> bool((drop.backward(np.ones_like(y)) == y).all())  # the same mask and scale
        True
        >>> drop.eval()(np.ones(3, np.float32))
        array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = _check_p(type(self).__name__, p)
        if not isinstance(inplace, bool):
            raise TypeError(f"{type(self).__name__}: inplace must be a bool, got {inplace!r}")
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"

    def _where(self) -> str:
        return f"{type(self).__name__}(p={self.p})"

    def forward(self, x: Any) -> Any:
        out, cache = F.dropout_forward(x, self.p, self.training)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.dropout_backward(dout, cache)


class Dropout2d(Dropout):
    r"""Zeroes whole channels: each ``x[n, c]`` is dropped with probability ``p`` in training mode.

    .. math:: y_{n,c} = \frac{m_{n,c}\, x_{n,c}}{1 - p}, \quad m_{n,c} \sim \mathrm{Bernoulli}(1 - p)
        \ \text{(training)}, \qquad y = x \ \text{(eval)}

    Args:
        p: probability of a channel to be zeroed. Default: 0.5.
        inplace: accepted for PyTorch compatibility (never in place). Default: False.

    Shape:
        - Input: (N, C, H, W), or (N, C, L) read as PyTorch 2 reads a 3-D input.  - Output: the same.

    Backward:
        dx = dout * mask[n, c] / (1 - p)   (the same channel mask; dx = dout in eval mode)

    Examples:
        >>> import numpy as np
        >>> import minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> y = nn.Dropout2d(p=0.5)(np.ones((2, 3, 4, 4), np.float32))
        >>> bool(((y == 0).all(axis=(2, 3)) | (y == 2).all(axis=(2, 3))).all())  # whole channels
        True
    """

    def forward(self, x: Any) -> Any:
        out, cache = F.dropout2d_forward(x, self.p, self.training)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.dropout2d_backward(dout, cache)
