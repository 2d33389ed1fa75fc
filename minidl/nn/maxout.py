r"""Maxout (Goodfellow, Warde-Farley, Mirza, Courville and Bengio 2013, "Maxout Networks", ICML).

A maxout unit takes the maximum of k affine pieces, :math:`h_c(v) = \max_{j < k} (v^T W_{\cdot, c, j} + b_{c, j})`:
a learned convex piecewise-linear activation (ReLU is the case k = 2 with one piece fixed at 0). As in the paper, and
as the course decks draw it, the k C pieces come from an ordinary layer with k C outputs (a ``Linear(D, k * C)`` or
a ``Conv2d(C_in, k * C, ...)``), and **Maxout is then the max over groups of k consecutive channels**. PyTorch has
no Maxout layer; this is minidl's own definition, ``Maxout(num_pieces, dim=1)``. With
:math:`z` the input, of size k C on axis ``dim``:

.. math:: y_{\ldots, c, \ldots} = \max_{0 \le j < k}\; z_{\ldots,\, c k + j,\, \ldots}, \qquad c = 0, \ldots, C - 1

so output channel c reads input channels ck, ..., ck + k - 1 (a ``reshape`` of axis ``dim`` into (C, k) and a max
over the k).

Backward: the max is locally the piece that attains it, :math:`j^* = \arg\max_j z_{ck + j}` (kept by the forward),
so the gradient is routed to that piece and the others get none:

.. math:: dz_{\ldots,\, c k + j,\, \ldots} = [\,j = j^*_{\ldots, c, \ldots}\,]\; dout_{\ldots, c, \ldots}

With ties the first maximal piece gets the gradient (``argmax``'s rule, as PyTorch's max pooling). The test suite
compares this pair with a loop over the definition (``tests/nn/test_maxout.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.backend import get_array_module
from minidl.nn._checks import _is_int, check_array, check_grad_output, check_int
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["Maxout", "maxout_backward", "maxout_forward"]


class MaxoutCache(NamedTuple):
    """The cache of :func:`maxout_forward`."""

    argmax: Any  # (..., C, ...): the winning piece j* of each output element, int
    x_shape: tuple[int, ...]
    dim: int  # in [0, ndim)
    num_pieces: int
    dtype: Any  # of x


def _grouped_shape(shape: tuple[int, ...], dim: int, num_pieces: int) -> tuple[int, ...]:
    """``shape`` with axis ``dim`` (size k C) split into (C, k)."""
    return shape[:dim] + (shape[dim] // num_pieces, num_pieces) + shape[dim + 1 :]


def maxout_forward(x: Any, num_pieces: int, dim: int = 1) -> tuple[Any, Any]:
    r"""Maxout: the max over each group of ``num_pieces`` consecutive entries of axis ``dim``. Cache: the argmax.

    .. math:: out_{\ldots, c, \ldots} = \max_{0 \le j < k}\; x_{\ldots,\, c k + j,\, \ldots}, \qquad k =
        \mathrm{num\_pieces}

    Args:
        x: any shape with ``x.shape[dim]`` = k C, a multiple of ``num_pieces``.
        num_pieces: k, the pieces each output takes the max of.
        dim: the axis holding the k C pieces. Default: 1 (the channels of (N, k C) or (N, k C, H, W)).

    Shape:
        - Input: (\*, k C, \*) with k C on axis ``dim``.  - Output: (\*, C, \*).
    Backward:
        dx = dout routed to the winning piece of each group, 0 to the others (:func:`maxout_backward`).

    Examples:
        >>> out, cache = maxout_forward(np.array([[1.0, 5.0, -2.0, -1.0]]), num_pieces=2)
        >>> out
        array([[ 5., -1.]])
    """
    where = "maxout_forward"
    check_array(where, x, min_ndim=1)
    num_pieces = check_int(where, "num_pieces", num_pieces)
    if not _is_int(dim) or not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"{where}: dim must be an int in [{-x.ndim}, {x.ndim - 1}] for a {x.ndim}-D input, got {dim!r}"
        )
    dim = int(dim) % x.ndim
    if x.shape[dim] % num_pieces:
        raise ValueError(
            f"{where}: the input's dimension {dim} has size {x.shape[dim]}, which is not a multiple of "
            f"num_pieces={num_pieces} (expected k * C = {num_pieces} * C entries; input shape {tuple(x.shape)})"
        )
    grouped = x.reshape(_grouped_shape(tuple(x.shape), dim, num_pieces))  # (..., C, k, ...)
    argmax = grouped.argmax(axis=dim + 1)
    out = grouped.max(axis=dim + 1)
    return out, MaxoutCache(argmax, tuple(x.shape), dim, num_pieces, x.dtype)


def maxout_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of Maxout: each ``dout`` goes to the piece that won its max (the first one on a tie).

    .. math:: dx_{\ldots,\, c k + j,\, \ldots} = [\,j = j^*_{\ldots, c, \ldots}\,]\; dout_{\ldots, c, \ldots}, \qquad
        j^* = \arg\max_j x_{\ldots,\, c k + j,\, \ldots}

    Shape:
        - dout: (\*, C, \*).  - dx: (\*, k C, \*), the shape of x.

    Examples:
        >>> out, cache = maxout_forward(np.array([[1.0, 5.0, -2.0, -1.0]]), num_pieces=2)
        >>> maxout_backward(np.array([[10.0, 20.0]]), cache)
        array([[ 0., 10.,  0., 20.]])
    """
    argmax, x_shape, dim, num_pieces, dtype = cache
    check_grad_output("maxout_backward", dout, argmax.shape, dtype)
    xp = get_array_module(dout)
    pieces = xp.arange(num_pieces).reshape((num_pieces,) + (1,) * (len(x_shape) - dim - 1))
    winner = xp.expand_dims(argmax, dim + 1) == pieces  # (..., C, k, ...): one True per group
    dx = winner * xp.expand_dims(dout, dim + 1)
    return dx.reshape(x_shape)


class Maxout(Module):
    r"""Maxout over groups of ``num_pieces`` consecutive channels (minidl's own; Goodfellow et al. 2013).

    .. math:: y_{\ldots, c, \ldots} = \max_{0 \le j < k}\; x_{\ldots,\, c k + j,\, \ldots}, \qquad k =
        \mathrm{num\_pieces}

    Follow a layer with k C outputs by ``Maxout(k)`` to get C maxout units, as in the paper:
    ``nn.Sequential(nn.Linear(D, k * C), nn.Maxout(k))``. PyTorch has no equivalent; see :mod:`minidl.nn.maxout`.

    Args:
        num_pieces: k, the affine pieces per unit.
        dim: the axis that holds the k C pieces. Default: 1 (channels).

    Shape:
        - Input: (N, k C, \*) (k C on axis ``dim``).  - Output: (N, C, \*).
    Backward:
        dx = dout at the winning piece of each group (the first on a tie), 0 at the others.

    Examples:
        >>> from minidl import nn
        >>> maxout = nn.Maxout(num_pieces=3)
        >>> y = maxout(np.random.default_rng(0).normal(size=(2, 12, 5, 5)))
        >>> y.shape
        (2, 4, 5, 5)
        >>> float(maxout.backward(np.ones_like(y)).sum(axis=1).max())  # one winner in each of the 4 groups
        4.0
    """

    def __init__(self, num_pieces: int, dim: int = 1) -> None:
        super().__init__()
        self.num_pieces = check_int("Maxout", "num_pieces", num_pieces)
        if not _is_int(dim):
            raise TypeError(f"Maxout: dim must be an int, got {dim!r} ({type(dim).__name__})")
        self.dim = int(dim)

    def extra_repr(self) -> str:
        return f"num_pieces={self.num_pieces}, dim={self.dim}"

    def forward(self, x: Any) -> Any:
        out, cache = F.maxout_forward(x, self.num_pieces, self.dim)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.maxout_backward(dout, cache)
