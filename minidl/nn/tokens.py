r"""The sequence glue of a Vision Transformer: the class token, the position embedding, and picking one token.

A ViT turns an image into a sequence of L patch embeddings (N, L, D), then

1. puts a learned **class token** in front, :math:`z = [c; x]` of shape (N, 1 + L, D) (:func:`class_token_forward`),
2. adds a learned **position embedding** :math:`P` of shape (1, 1 + L, D) to every sample
   (:func:`position_embedding_forward`),
3. runs the encoder, and reads the class token's output, :math:`y = z_{:, 0}` (:func:`select_forward`), for the
   classifier head.

Each is a pair whose backward is short. The one idea they share: a value used by every sample of the batch (the
token :math:`c`, the embedding :math:`P`) receives the **sum** of the gradients of all its uses,

.. math:: \frac{\partial L}{\partial c} = \sum_n \frac{\partial L}{\partial z_{n,0}}, \qquad
          \frac{\partial L}{\partial P} = \sum_n \frac{\partial L}{\partial z_{n}},

and picking token 0 passes its gradient back to that token only (the others' gradient is zero).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.backend import get_array_module
from minidl.nn._checks import check_array, check_grad_output, check_int, check_params

__all__ = [
    "class_token_backward",
    "class_token_forward",
    "position_embedding_backward",
    "position_embedding_forward",
    "select_backward",
    "select_forward",
]


class TokenCache(NamedTuple):
    """The cache of :func:`class_token_forward` and :func:`position_embedding_forward`: the output's shape and
    dtype."""

    out_shape: tuple[int, ...]
    dtype: Any


def class_token_forward(x: Any, token: Any) -> tuple[Any, Any]:
    r"""Put the token in front of every sequence of the batch. Returns ``(out, cache)``.

    .. math:: out_{n,0,:} = token_{0,0,:}, \qquad out_{n,1+l,:} = x_{n,l,:}

    Shape:
        - x: (N, L, D).  - token: (1, 1, D).  - Output: (N, 1 + L, D).
    Backward:
        dx = dout[:, 1:]; dtoken = sum over n of dout[n, 0] (shape (1, 1, D)).
    Examples:
        >>> out, cache = class_token_forward(np.zeros((2, 3, 4)), np.ones((1, 1, 4)))
        >>> out.shape, out[:, 0, 0]
        ((2, 4, 4), array([1., 1.]))
    """
    where = "class_token_forward"
    be = check_array(where, x, ndim=3)
    check_params(where, x, (1, 1, x.shape[2]), token=token)
    xp = be.xp
    out = xp.concatenate([xp.broadcast_to(token, (x.shape[0], 1, x.shape[2])), x], axis=1)
    return out, TokenCache(tuple(out.shape), x.dtype)


def class_token_backward(dout: Any, cache: Any) -> tuple[Any, Any]:
    r"""The gradients of the sequence and of the token: ``(dx, dtoken)``.

    .. math:: dx_{n,l,:} = dout_{n,1+l,:}, \qquad dtoken_{0,0,:} = \sum_n dout_{n,0,:}

    Shape:
        - dout: (N, 1 + L, D).  - dx: (N, L, D).  - dtoken: (1, 1, D).

    Examples:
        >>> out, cache = class_token_forward(np.zeros((2, 3, 4)), np.ones((1, 1, 4)))
        >>> dx, dtoken = class_token_backward(np.ones((2, 4, 4)), cache)
        >>> dx.shape, dtoken
        ((2, 3, 4), array([[[2., 2., 2., 2.]]]))
    """
    check_grad_output("class_token_backward", dout, cache.out_shape, cache.dtype)
    return dout[:, 1:], dout[:, :1].sum(axis=0, keepdims=True)


def position_embedding_forward(x: Any, pos: Any) -> tuple[Any, Any]:
    r"""Add the position embedding to every sample of the batch. Returns ``(out, cache)``.

    .. math:: out_{n,l,:} = x_{n,l,:} + pos_{0,l,:}

    Shape:
        - x: (N, L, D).  - pos: (1, L, D), the same L and D (nothing else is broadcast).  - Output: (N, L, D).
    Backward:
        dx = dout; dpos = sum over n of dout[n] (shape (1, L, D)).
    Examples:
        >>> out, cache = position_embedding_forward(np.zeros((2, 3, 1)), np.arange(3.0).reshape(1, 3, 1))
        >>> out[1, :, 0]
        array([0., 1., 2.])
    """
    where = "position_embedding_forward"
    check_array(where, x, ndim=3)
    check_params(where, x, (1, x.shape[1], x.shape[2]), pos=pos)
    return x + pos, TokenCache(tuple(x.shape), x.dtype)


def position_embedding_backward(dout: Any, cache: Any) -> tuple[Any, Any]:
    r"""The gradients of the input and of the embedding: ``(dx, dpos)``.

    .. math:: dx = dout, \qquad dpos_{0,l,:} = \sum_n dout_{n,l,:}

    Shape:
        - dout: (N, L, D).  - dx: (N, L, D).  - dpos: (1, L, D).

    Examples:
        >>> out, cache = position_embedding_forward(np.zeros((2, 3, 1)), np.zeros((1, 3, 1)))
        >>> dx, dpos = position_embedding_backward(np.ones((2, 3, 1)), cache)
        >>> dpos[0, :, 0]
        array([2., 2., 2.])
    """
    check_grad_output("position_embedding_backward", dout, cache.out_shape, cache.dtype)
    return dout, dout.sum(axis=0, keepdims=True)


class SelectCache(NamedTuple):
    """The cache of :func:`select_forward`."""

    x_shape: tuple[int, ...]
    dim: int
    index: int
    out_shape: tuple[int, ...]
    dtype: Any


def select_forward(x: Any, dim: int, index: int) -> tuple[Any, Any]:
    r"""The slice of ``x`` at ``index`` along ``dim``, that dimension removed (``torch.select``; ``x[:, 0]`` is
    ``select(x, 1, 0)``). Returns ``(out, cache)``.

    .. math:: out_{\dots} = x_{\dots,\,index,\,\dots} \quad (\text{index in dimension } dim)

    Shape:
        - Input: :math:`(s_0, \dots, s_{k-1})`.  - Output: the same without dimension ``dim``.
    Backward:
        dx = zeros of x's shape, with dout placed at ``index`` along ``dim``.
    Examples:
        >>> out, cache = select_forward(np.arange(6.0).reshape(1, 3, 2), 1, 0)
        >>> out
        array([[0., 1.]])
    """
    where = "select_forward"
    check_array(where, x, min_ndim=1)
    dim = check_int(where, "dim", dim, minimum=-x.ndim)
    if dim >= x.ndim:
        raise IndexError(
            f"{where}: dim {dim} is out of range for a {x.ndim}-D input (expected -{x.ndim}..{x.ndim - 1})"
        )
    dim %= x.ndim
    size = x.shape[dim]
    index = check_int(where, "index", index, minimum=-size)
    if index >= size:
        raise IndexError(f"{where}: index {index} is out of range for dimension {dim} of size {size}")
    index %= size
    out = get_array_module(x).asarray(x[(slice(None),) * dim + (index,)])  # (asarray: a 1-D x gives a 0-d array)
    return out, SelectCache(tuple(x.shape), dim, index, tuple(out.shape), x.dtype)


def select_backward(dout: Any, cache: Any) -> Any:
    r"""Scatter the gradient back into a zero array of the input's shape, at ``index`` along ``dim``.

    .. math:: dx_{\dots,\,i,\,\dots} = dout_{\dots} \text{ if } i = index \text{ else } 0

    Shape:
        - dout: the output's shape.  - dx: the input's shape.

    Examples:
        >>> out, cache = select_forward(np.zeros((1, 3, 2)), 1, 0)
        >>> select_backward(np.ones((1, 2)), cache)[0]
        array([[1., 1.],
               [0., 0.],
               [0., 0.]])
    """
    check_grad_output("select_backward", dout, cache.out_shape, cache.dtype)
    dx = get_array_module(dout).zeros(cache.x_shape, dout.dtype)
    dx[(slice(None),) * cache.dim + (cache.index,)] = dout
    return dx
