"""An output described instead of computed: what a layer hands the next one to compute as it reads its input.

Imported by the layers (:mod:`minidl.nn`) and the backends alike, so it depends on neither; exported as
:class:`minidl.nn.BatchNormReLUOutput`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy


@dataclasses.dataclass(frozen=True, eq=False)
class BatchNormReLUOutput:
    r"""The output of a BatchNorm+ReLU, described instead of computed: its input x and per-channel vectors (C,) in
    x's dtype, the normalization y = (x - mean) scale + offset (scale = gamma / sqrt(var + eps), offset = beta),

    .. math:: a = \max(0,\; (x - \mu)\, s + o)

    What :func:`~minidl.nn.normalization.batch_norm_relu_forward` returns with ``deferred=True`` (its statistics,
    running averages and cache as ever, without the normalize pass), and what :func:`~minidl.nn.conv.conv2d_forward`
    takes as its input (no other layer does): the convolution computes a as it reads x (the Numba backend's
    F(4x4, 3x3) in its compiled loops: a is never written to memory), where a ResNet block's ``bn1``, ``relu1`` and
    ``conv2`` run in training (:meth:`~minidl.nn.fusion.ConvBn2d.reads_batch_norm_relu`). ``shape``, ``dtype`` and
    ``ndim`` are a's (x's); :meth:`computed` computes a. The vectors may be the BatchNorm's own arrays (its bias; in
    eval mode its running mean), which an optimizer step or a later call changes in place: a convolution that reads
    one keeps a copy for its backward.

    Shape:
        - x: (N, C, \*); mean, scale, offset: (C,).  - a (``shape``, :meth:`computed`): x's.

    Backward:
        None of its own: the convolution that reads it returns the gradient of a, and the BatchNorm+ReLU pair's
        backward (its cache) takes that, as for the computed output.

    Examples:
        >>> import numpy as np
        >>> x = np.array([[[[-1.0]], [[2.0]]]])  # (1, 2, 1, 1)
        >>> a = BatchNormReLUOutput(x, np.zeros(2), np.array([1.0, 3.0]), np.array([0.5, 0.0]))
        >>> a.shape, a.computed().ravel()
        ((1, 2, 1, 1), array([0., 6.]))
    """

    x: Any
    mean: Any
    scale: Any
    offset: Any

    @classmethod
    def of(cls, x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any) -> BatchNormReLUOutput:
        """The description of ``max(0, (x - mean) inv_std gamma + beta)`` from a BatchNorm's (C,) statistics and
        parameters (gamma, beta or None): scale = inv_std gamma, offset = beta (0 without), all in x's dtype. What
        both backends' ``batch_norm_relu_forward(..., deferred=True)`` return (the Numba kernels' scale is this
        product too)."""
        scale = inv_std if gamma is None else inv_std * gamma
        offset = numpy.zeros_like(inv_std) if beta is None else beta
        return cls(x, *(v.astype(x.dtype, copy=False) for v in (mean, scale, offset)))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape)

    @property
    def dtype(self) -> Any:
        return self.x.dtype

    @property
    def ndim(self) -> int:
        return int(self.x.ndim)

    def computed(self) -> Any:
        """a = max(0, (x - mean) scale + offset), a new array of x's shape, dtype and memory layout (NaN
        propagating, as :func:`~minidl.nn.activation.relu_forward`)."""
        view = (1, -1) + (1,) * (self.x.ndim - 2)  # a channel's vector against x's axis 1
        y = (self.x - self.mean.reshape(view)) * self.scale.reshape(view)
        y += self.offset.reshape(view)  # (elementwise: the layout of x)
        y[y <= 0] = 0
        return y
