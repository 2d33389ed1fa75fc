r"""Merging two branches: the residual sum ``a + b`` (``Add``), the sum with the ReLU after it (the add_relu pair),
and the per-channel product ``x * s`` of a squeeze-and-excitation block (``ChannelMul``).

A ResNet block ends by adding its residual branch to its shortcut and applying a ReLU:

.. math:: z = a + b, \qquad y = \mathrm{relu}(z)

The sum's backward hands ``dout`` to *both* terms unchanged (:math:`\partial z / \partial a = \partial z /
\partial b = 1`), so ``Add.backward`` returns one gradient, the same for a and b; the block adds what its two
branches return, because x fed both (a fork in the forward pass is a sum in the backward pass).

In a block the sum and the ReLU are two modules, ``add`` and a ReLU; :func:`minidl.nn.fuse` turns the pair into one
:class:`~minidl.nn.fusion.AddReLU`, which runs the pair :func:`add_relu_forward`: on the NumPy backend exactly
``relu_forward(add_forward(a, b))``, on the Numba backend one pass over memory (marked ``@kernel``). The block's
last BatchNorm comes just before the sum; :func:`batch_norm_add_relu_forward` is the three in one pair, which a
fused block runs in training (:meth:`~minidl.nn.fusion.FoldedBatchNorm2d.joins_residual`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._checks import check_array, check_grad_output, check_grad_output_of, check_residual
from minidl.nn._norm_common import sums_argument
from minidl.nn.dispatch import F, kernel
from minidl.nn.module import Module
from minidl.nn.normalization import _batch_norm_setup

__all__ = [
    "Add",
    "ChannelMul",
    "add_backward",
    "add_forward",
    "add_relu_backward",
    "add_relu_forward",
    "batch_norm_add_relu_backward",
    "batch_norm_add_relu_forward",
    "channel_mul_backward",
    "channel_mul_forward",
]


def _check_pair(where: str, a: Any, b: Any) -> Any:
    """Two floating arrays of the same shape and dtype (a sum never broadcasts here); returns the backend."""
    be = check_array(where, a)
    check_array(where, b, what="second input")
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        raise ValueError(
            f"{where}: expected two inputs of the same shape and dtype, got {tuple(a.shape)} {a.dtype} "
            f"and {tuple(b.shape)} {b.dtype}"
        )
    return be


class AddCache(NamedTuple):
    """The cache of :func:`add_forward`: what the backward checks ``dout`` against."""

    shape: tuple[int, ...]
    dtype: Any

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def out_dtype(self) -> Any:
        return self.dtype


def _add_setup(a: Any, b: Any) -> Any:
    return _check_pair("add_forward", a, b)


@kernel("add", setup=_add_setup)
def add_forward(a: Any, b: Any) -> tuple[Any, Any]:
    r"""``a + b`` for two arrays of the same shape and dtype. Returns ``(out, cache)``.

    .. math:: out = a + b

    Also what a model's backward uses where one input fed two branches (a ResNet block's x, its body and its
    shortcut): the two gradients add. The Numba backend's kernel runs the sum on the pool's threads.

    Shape:
        - a, b: the same shape (no broadcasting) - Output: that shape.
    Backward:
        da = db = dout (:func:`add_backward` returns it once).
    Examples:
        >>> out, cache = add_forward(np.array([1.0, 2.0]), np.array([3.0, -4.0]))
        >>> out, add_backward(np.array([5.0, 6.0]), cache)
        (array([ 4., -2.]), array([5., 6.]))
    """
    xp = _add_setup(a, b).xp
    return xp.asarray(a + b), AddCache(tuple(a.shape), a.dtype)  # (asarray: 0-d + 0-d is a NumPy scalar)


@kernel("add")
def add_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of each of a and b: ``dout`` itself (returned once).

    .. math:: da = db = dout \qquad (\partial out / \partial a = \partial out / \partial b = 1)

    Shape:
        - dout: the shape of a.  - The gradient: the same.

    Examples:
        >>> out, cache = add_forward(np.ones((2, 3)), np.zeros((2, 3)))
        >>> add_backward(np.full((2, 3), 7.0), cache)
        array([[7., 7., 7.],
               [7., 7., 7.]])
    """
    check_grad_output("add_backward", dout, cache.shape, cache.dtype)
    return dout


class AddReLUCache(NamedTuple):
    """The cache of :func:`add_relu_forward`: the sum's and the ReLU's."""

    add: Any
    relu: Any

    @property
    def out_shape(self) -> Any:  # (the sum's shape and dtype are the output's; None if a replaced pair's cache)
        return getattr(self.add, "out_shape", None)

    @property
    def out_dtype(self) -> Any:
        return getattr(self.add, "out_dtype", None)


def _add_relu_setup(a: Any, b: Any) -> Any:
    return _check_pair("add_relu_forward", a, b)


@kernel("add_relu", setup=_add_relu_setup, uses=("add", "relu"))
def add_relu_forward(a: Any, b: Any) -> tuple[Any, Any]:
    r"""``relu(a + b)``: a residual sum and the ReLU after it (the end of a ResNet block). Returns ``(out, cache)``.

    .. math:: out = \max(0,\; a + b)

    The reference is exactly ``relu_forward(add_forward(a, b))``; the Numba backend's kernel does both in one pass
    over memory.

    Shape:
        - a, b: the same shape (no broadcasting) - Output: that shape.

    Backward:
        dz = dout * [a + b > 0], the gradient of both a and b (a sum passes its gradient to each term).

    Examples:
        >>> out, cache = add_relu_forward(np.array([1.0, -2.0]), np.array([-3.0, 4.0]))
        >>> out
        array([0., 2.])
        >>> add_relu_backward(np.array([5.0, 5.0]), cache)
        array([0., 5.])
    """
    _add_relu_setup(a, b)
    z, add_cache = F.add_forward(a, b)
    out, relu_cache = F.relu_forward(z)
    return out, AddReLUCache(add_cache, relu_cache)


@kernel("add_relu")
def add_relu_backward(dout: Any, cache: Any) -> Any:
    r"""Gradient of :func:`add_relu_forward` with respect to the sum, hence to each of a and b: ``dout * mask``
    (the ReLU's backward, then the sum's, which passes it on).

    .. math:: da = db = dout \odot [a + b > 0]

    Shape:
        - dout: the shape of a.  - The gradient: the same.

    Examples:
        >>> out, cache = add_relu_forward(np.array([[1.0, -2.0, 0.5]]), np.array([[-3.0, 4.0, 0.5]]))
        >>> add_relu_backward(np.array([[5.0, 6.0, 7.0]]), cache)
        array([[0., 6., 7.]])
    """
    check_grad_output_of("add_relu_backward", dout, cache.add)
    return F.add_backward(F.relu_backward(dout, cache.relu), cache.add)


# ---------------------------------------------------------------------------------------------- batch_norm_add_relu
class BatchNormAddReLUCache(NamedTuple):
    """The cache of :func:`batch_norm_add_relu_forward`: the BatchNorm's and the sum-and-ReLU's."""

    batch_norm: Any
    add_relu: Any


def _batch_norm_add_relu_setup(
    input: Any,
    residual: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    channel_sums: Any = None,
) -> None:
    """The BatchNorm's checks, and a residual of the input's shape and dtype, under this pair's name."""
    where = "batch_norm_add_relu_forward"
    _batch_norm_setup(
        input, running_mean, running_var, weight, bias, training, momentum, eps, channel_sums=channel_sums, where=where
    )
    check_residual(where, input, residual, input.shape, "the input's")


@kernel("batch_norm_add_relu", setup=_batch_norm_add_relu_setup, uses=("batch_norm", "add_relu"))
def batch_norm_add_relu_forward(
    input: Any,
    residual: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    channel_sums: Any = None,
) -> tuple[Any, Any]:
    r"""``relu(batch_norm(x) + residual)``: the end of a ResNet block in training, its last BatchNorm, the residual
    sum and the ReLU. Returns ``(out, cache)``.

    .. math:: out = \max(0,\; \gamma \hat x + \beta + r), \qquad
              \hat x = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}}

    (per channel: the batch's statistics in training, the running ones otherwise). The arguments of
    :func:`~minidl.nn.normalization.batch_norm_forward` (and its running-statistics updates), with the residual r
    second (and its ``channel_sums``). The reference is exactly ``add_relu_forward(batch_norm_forward(x, ...),
    residual)``; the Numba backend's
    kernel adds the residual and applies the ReLU in the BatchNorm's normalize pass, so the BatchNorm's output is not
    written and read back before the sum (``channels_last`` inputs; others run the two pairs).

    Shape:
        - input: (N, C, \*).  - residual: the same shape.  - Output: that shape.

    Backward:
        dz = dout * [out > 0] (:func:`add_relu_backward`), the residual's gradient; then dx, dweight, dbias =
        the BatchNorm backward of dz (:func:`~minidl.nn.normalization.batch_norm_backward`).

    Examples:
        >>> x = np.array([[1.0], [2.0], [6.0]])  # 3 samples of 1 channel
        >>> out, cache = batch_norm_add_relu_forward(x, np.array([[1.0], [1.0], [-2.0]]), None, None, training=True)
        >>> np.round(out, 4)  # the BatchNorm gives -0.9258, -0.4629, 1.3887
        array([[0.0742],
               [0.5371],
               [0.    ]])
        >>> dx, dresidual, _, _ = batch_norm_add_relu_backward(np.ones_like(x), cache)
        >>> dresidual  # the third sample's sum was negative
        array([[1.],
               [1.],
               [0.]])
    """
    _batch_norm_add_relu_setup(
        input, residual, running_mean, running_var, weight, bias, training, momentum, eps, channel_sums=channel_sums
    )
    y, bn_cache = F.batch_norm_forward(
        input, running_mean, running_var, weight, bias, training, momentum, eps, **sums_argument(channel_sums)
    )
    out, add_relu_cache = F.add_relu_forward(y, residual)
    return out, BatchNormAddReLUCache(bn_cache, add_relu_cache)


@kernel("batch_norm_add_relu")
def batch_norm_add_relu_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any, Any]:
    r"""Gradients of :func:`batch_norm_add_relu_forward`: ``(dx, dresidual, dweight, dbias)`` (None for an absent
    weight/bias).

    .. math:: dz = dout \odot [\gamma \hat x + \beta + r > 0], \qquad dr = dz, \qquad
              (dx, d\gamma, d\beta) = \mathrm{batch\_norm\_backward}(dz)

    The sum hands dz to both terms: the residual's gradient is dz itself, and the BatchNorm's output's, whose
    backward gives the rest.

    Shape:
        - dout: (N, C, \*).  - dx, dresidual: the same; dweight, dbias: (C,).

    Examples:
        >>> x = np.array([[1.0], [2.0], [6.0]])
        >>> out, cache = batch_norm_add_relu_forward(x, np.zeros_like(x), None, None, np.ones(1), np.zeros(1), True)
        >>> dx, dresidual, dweight, dbias = batch_norm_add_relu_backward(np.ones_like(x), cache)
        >>> dbias  # one sample passed the ReLU (the same as batch_norm_relu with a zero residual)
        array([1.])
    """
    check_grad_output_of("batch_norm_add_relu_backward", dout, cache.add_relu)
    dz = F.add_relu_backward(dout, cache.add_relu)
    dx, dweight, dbias = F.batch_norm_backward(dz, cache.batch_norm)
    return dx, dz, dweight, dbias


class Add(Module):
    r"""``Add()(a, b) = a + b``: the sum of two branches, such as a residual block's body and shortcut.

    .. math:: y = a + b

    A module, so that the sum is a layer of the block (Keras calls it a merging layer) and :func:`minidl.nn.fuse`
    can merge it with the ReLU after it. It has no parameters.

    Shape:
        - a, b: the same shape (no broadcasting).  - Output: that shape.
    Backward:
        da = db = dout: ``backward`` returns it once, the gradient of *each* input.
    Examples:
        >>> add = Add()
        >>> add(np.array([1.0, 2.0]), np.array([3.0, -4.0]))
        array([ 4., -2.])
        >>> add.backward(np.array([1.0, 1.0]))
        array([1., 1.])
    """

    def forward(self, a: Any, b: Any) -> Any:
        out, cache = F.add_forward(a, b)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.add_backward(dout, cache)

    def _where(self) -> str:
        return "Add"


# ---------------------------------------------------------------------------------------------- channel_mul
class ChannelMulCache(NamedTuple):
    """The cache of :func:`channel_mul_forward`: both factors (each one's gradient needs the other)."""

    x: Any  # (N, C, H, W)
    scale: Any  # (N, C, 1, 1)


def channel_mul_forward(x: Any, scale: Any) -> tuple[Any, Any]:
    r"""Scale each channel of each image by its own factor (a squeeze-and-excitation gate). Returns ``(out, cache)``.

    .. math:: out_{n,c,h,w} = x_{n,c,h,w}\, s_{n,c}

    The one broadcast is the explicit one: ``scale`` must be exactly (N, C, 1, 1), one factor per image and channel,
    spread over H and W (PyTorch writes it ``scale * input``).

    Shape:
        - x: (N, C, H, W).  - scale: (N, C, 1, 1), the same dtype.  - Output: (N, C, H, W).
    Backward:
        dx = dout * s (each element through its channel's factor);
        ds_{n,c} = sum over (h, w) of dout_{n,c,h,w} x_{n,c,h,w} (the factor touched H * W elements).
    Examples:
        >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
        >>> out, cache = channel_mul_forward(x, np.array([10.0, -1.0]).reshape(1, 2, 1, 1))
        >>> out[0]
        array([[[ 0., 10.],
                [20., 30.]],
        <BLANKLINE>
               [[-4., -5.],
                [-6., -7.]]])
    """
    where = "channel_mul_forward"
    check_array(where, x, ndim=4)
    check_array(where, scale, ndim=4, what="scale")
    N, C = x.shape[0], x.shape[1]
    if tuple(scale.shape) != (N, C, 1, 1) or scale.dtype != x.dtype:
        raise ValueError(
            f"{where}: expected a scale of shape (N, C, 1, 1) = {(N, C, 1, 1)} and dtype {x.dtype} for the input "
            f"of shape {tuple(x.shape)}, got shape {tuple(scale.shape)} and dtype {scale.dtype}"
        )
    return x * scale, ChannelMulCache(x, scale)


def channel_mul_backward(dout: Any, cache: Any) -> tuple[Any, Any]:
    r"""The gradients of both factors, ``(dx, dscale)``.

    .. math:: dx_{n,c,h,w} = dout_{n,c,h,w}\, s_{n,c}, \qquad ds_{n,c} = \sum_{h,w} dout_{n,c,h,w}\, x_{n,c,h,w}

    Shape:
        - dout: (N, C, H, W).  - dx: (N, C, H, W).  - dscale: (N, C, 1, 1).

    Examples:
        >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
        >>> out, cache = channel_mul_forward(x, np.array([10.0, -1.0]).reshape(1, 2, 1, 1))
        >>> dx, dscale = channel_mul_backward(np.ones((1, 2, 2, 2)), cache)
        >>> dx[0, :, 0, 0], dscale.ravel()  # dscale: 0+1+2+3 and 4+5+6+7
        (array([10., -1.]), array([ 6., 22.]))
    """
    x, scale = cache
    check_grad_output("channel_mul_backward", dout, x.shape, x.dtype)
    return dout * scale, (dout * x).sum(axis=(2, 3), keepdims=True)


class ChannelMul(Module):
    r"""``ChannelMul()(x, scale) = x * scale`` with one factor per image and channel: the gate of a
    squeeze-and-excitation block (:class:`minidl.models.SqueezeExcitation`).

    .. math:: y_{n,c,h,w} = x_{n,c,h,w}\, s_{n,c}

    It has no parameters. Its two inputs have different shapes, so ``backward`` returns both gradients.

    Shape:
        - x: (N, C, H, W).  - scale: (N, C, 1, 1).  - Output: (N, C, H, W).
    Backward:
        ``backward(dout)`` returns ``(dx, dscale)``: dx = dout * s;  ds_{n,c} = sum over (h, w) of dout * x.
    Examples:
        >>> mul = ChannelMul()
        >>> y = mul(np.ones((2, 3, 4, 4)), np.full((2, 3, 1, 1), 0.5))
        >>> dx, dscale = mul.backward(np.ones_like(y))
        >>> y.shape, dx.shape, dscale.shape, float(dscale[0, 0, 0, 0])
        ((2, 3, 4, 4), (2, 3, 4, 4), (2, 3, 1, 1), 16.0)
    """

    def forward(self, x: Any, scale: Any) -> Any:
        out, cache = F.channel_mul_forward(x, scale)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> tuple[Any, Any]:
        (cache,) = self.pop_saved()
        return F.channel_mul_backward(dout, cache)

    def _where(self) -> str:
        return "ChannelMul"
