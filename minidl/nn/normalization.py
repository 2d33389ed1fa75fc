r"""Normalization layers: BatchNorm here, the per-sample norms in normalization_group.py, LRN in normalization_local.py.

BatchNorm, LayerNorm, GroupNorm and InstanceNorm standardize values over some axes, then apply a learned affine map:

.. math::

    \mu = \frac{1}{M} \sum_i x_i, \qquad \sigma^2 = \frac{1}{M} \sum_i (x_i - \mu)^2, \qquad
    \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad y_i = \gamma \hat x_i + \beta

where the sums run over a group of M values. They differ only in which values form a group
(for x of shape (N, C, H, W)):

============  =========================================  ====================
layer         statistics over                            gamma, beta shape
============  =========================================  ====================
BatchNorm2d   (N, H, W) for each channel: M = N * H * W  (C,)
LayerNorm     the trailing ``normalized_shape`` dims     ``normalized_shape``
GroupNorm     (C / G, H, W) for each sample and group    (C,)
InstanceNorm  (H, W) for each sample and channel         (C,)
============  =========================================  ====================

The variance is the biased one (divide by M). BatchNorm and InstanceNorm can also keep *running* estimates of
mean and variance to use at evaluation time; those use the unbiased variance (divide by M - 1), as PyTorch does.

Backward (shared by all four, derived once). Write inv_std = 1 / sqrt(sigma^2 + eps), so xhat_i = (x_i - mu) inv_std,
and let dxhat = dL/dxhat (= dout * gamma). Differentiate with respect to one input x_j of the group::

    d mu / d x_j      = 1/M
    d sigma^2 / d x_j = (2/M)(x_j - mu)              (the terms through mu contain sum_i (x_i - mu) = 0)
    d inv_std / d x_j = -1/2 inv_std^3 d sigma^2 / d x_j = -inv_std^2 xhat_j / M
    d xhat_i / d x_j  = (delta_ij - 1/M) inv_std + (x_i - mu) d inv_std / d x_j
                      = inv_std (delta_ij - 1/M - xhat_i xhat_j / M)

The chain rule dx_j = sum_i dxhat_i * d xhat_i / d x_j then gives the compact closed form::

    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))        (means over the group)

and, for BatchNorm, where gamma is one number per group (dxhat = gamma * dout)::

    dx = (1/M) * gamma * inv_std * (M * dout - sum(dout) - xhat * sum(dout * xhat))

It costs two reductions and a few elementwise products, instead of the M x M Jacobian. The parameter gradients are
dgamma = sum(dout * xhat) and dbeta = sum(dout), summed over every axis gamma is broadcast along. When the
statistics are constants (BatchNorm in eval mode) the Jacobian is diagonal: dx = dout * gamma * inv_std.

LocalResponseNorm (AlexNet) is the odd one out: no statistics, each value is divided by a power of the energy of
its neighbouring channels (see :func:`local_response_norm_forward`).

The BatchNorm pairs take PyTorch's argument order, ``(input, running_mean, running_var, weight, bias, training,
momentum, eps)``, and are marked ``@kernel``: the Numba backend computes the statistics, the normalization and the
affine map (and the ReLU of :func:`batch_norm_relu_forward`, the ReLU6 of :func:`batch_norm_relu6_forward`) in one
pass per channel.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from minidl._deferred import BatchNormReLUOutput
from minidl.backend import get_array_module
from minidl.nn._checks import check_channel_sums, check_grad_output, check_grad_output_of, check_layout
from minidl.nn._norm_common import (
    _affine,
    _affine_backward,
    _channel_view,
    _check_statistics_call,
    _normalize,
    _normalize_backward,
    _normalize_with,
    _NormBase,
    _update_running_stats,
    statistics_from_sums,
    sums_argument,
)
from minidl.nn.dispatch import F, kernel

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_relu6_backward",
    "batch_norm_relu6_forward",
    "batch_norm_relu_backward",
    "batch_norm_relu_forward",
]


# ---------------------------------------------------------------------------------------------- batch norm
class BatchNormCache(NamedTuple):
    """The cache of :func:`batch_norm_forward`."""

    xhat: Any  # (x - mean) * inv_std
    inv_std: Any  # 1 / sqrt(var + eps), broadcastable to x
    gamma: Any  # the weight as (1, C, 1, ...), or None
    beta: Any  # the bias as (1, C, 1, ...), or None
    axes: tuple[int, ...]  # the axes the statistics run over: all but 1
    training: bool  # batch statistics (else constants: the running ones)
    mean: Any = None  # the mean that normalized, broadcastable to x (what a deferred output's vectors need)


def _batch_norm_setup(
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    channel_sums: Any = None,
    where: str = "batch_norm_forward",
) -> None:
    """Check :func:`batch_norm_forward`'s arguments (errors named ``where``: the pair the caller called)."""
    _check_statistics_call(
        where, input, 2, running_mean, running_var, weight, bias, momentum, eps, training, "training", "channel"
    )
    if channel_sums is not None:
        check_channel_sums(where, channel_sums, input.shape[1], input, writable=False)
        if not training:
            raise ValueError(
                f"{where}: channel_sums give the batch statistics, which training=False does not use (it normalizes "
                "with running_mean and running_var); pass channel_sums only with training=True"
            )


# the fused pairs check the same arguments, under their own names
def _batch_norm_relu_setup(*args: Any, deferred: bool = False, **kwargs: Any) -> None:
    """Check :func:`batch_norm_relu_forward`'s arguments: :func:`batch_norm_forward`'s, and ``deferred`` a bool."""
    _batch_norm_setup(*args, **kwargs, where="batch_norm_relu_forward")
    if not isinstance(deferred, bool):
        raise TypeError(f"batch_norm_relu_forward: deferred must be a bool, got {deferred!r}")


_batch_norm_relu6_setup = functools.partial(_batch_norm_setup, where="batch_norm_relu6_forward")


@kernel("batch_norm", setup=_batch_norm_setup)
def batch_norm_forward(
    input: Any,
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
    r"""Batch normalization over every axis but the channel axis 1 (PyTorch's ``F.batch_norm``, same arguments).

    .. math:: out = \gamma \hat x + \beta, \qquad \hat x = (x - \mu)\, inv\_std, \qquad
        inv\_std = 1 / \sqrt{\sigma^2 + \varepsilon}

    with :math:`\mu, \sigma^2` per channel over the M values of (N, \*). In training the batch statistics (biased
    variance) normalize, and ``running_mean``/``running_var`` (when not None) are updated in place with the
    unbiased variance:
    running = (1 - momentum) * running + momentum * batch_statistic. In eval (``training=False``) the running
    statistics normalize and are not changed.

    Args:
        input: x, (N, C, \*).
        running_mean, running_var: (C,) buffers, or None (required when ``training`` is False).
        weight, bias: gamma and beta, per-channel scale and shift (C,), or None for none. Default: None.
        training: use (and record) batch statistics, or use the running ones. Default: False.
        momentum: weight of the new batch in the running average, in [0, 1] (a module turns momentum=None into
            1 / num_batches_tracked, the cumulative average). Default: 0.1.
        eps: added to the variance before the square root. Default: 1e-5.
        channel_sums: (training only) None, or the (3, C) float64 sums of the input's values that the convolution
            which computed it filled (:func:`~minidl.nn.conv.conv2d_forward`'s ``channel_sums``: the shifts s, then
            S1 = sum (x - s) and S2 = sum (x - s)^2 per channel): the batch statistics come from them,
            mean = s + S1 / M and var = S2 / M - (S1 / M)^2 (:func:`~minidl.nn._norm_common.statistics_from_sums`),
            instead of from a pass over the input. The same statistics up to rounding. Default: None.

    Shape:
        - Input: (N, C, \*) - Output: the same; M = N * prod(\*) values per channel.

    Backward:
        training: dx = (1/M) gamma inv_std (M dout - sum(dout) - xhat sum(dout xhat)) (see the module docstring);
        eval: dx = dout * gamma * inv_std. Both: dgamma = sum(dout * xhat), dbeta = sum(dout) over (N, \*).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> out, cache = batch_norm_forward(x, None, None, training=True, eps=1e-12)
        >>> np.round(out, 6)
        array([[-1., -1.],
               [ 1.,  1.]])
        >>> sums = np.array([[0.0, 0.0], [4.0, 40.0], [10.0, 1000.0]])  # shifts 0: sums of x and of x^2
        >>> same, _ = batch_norm_forward(x, None, None, training=True, eps=1e-12, channel_sums=sums)
        >>> bool(np.allclose(same, out))
        True
    """
    _batch_norm_setup(
        input, running_mean, running_var, weight, bias, training, momentum, eps, channel_sums=channel_sums
    )
    x, C = input, input.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        xp = get_array_module(x)
        if channel_sums is None:
            xhat, mean, var, inv_std = _normalize(xp, x, axes, eps)
        else:  # the statistics from the sums the convolution before took as it wrote x
            xhat, mean, var, inv_std = _normalize_with(xp, x, *statistics_from_sums(channel_sums, x.size // C), eps)
        _update_running_stats(running_mean, running_var, momentum, mean.reshape(C), var.reshape(C), x.size // C)
    else:
        inv_std = 1.0 / get_array_module(x).sqrt(_channel_view(running_var, x.ndim) + eps)
        mean = _channel_view(running_mean, x.ndim)
        xhat = (x - mean) * inv_std
    gamma, beta = _channel_view(weight, x.ndim), _channel_view(bias, x.ndim)
    return _affine(xhat, gamma, beta), BatchNormCache(xhat, inv_std, gamma, beta, axes, bool(training), mean)


@kernel("batch_norm")
def batch_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`batch_norm_forward`: ``(dx, dweight, dbias)`` (None for an absent weight/bias).

    Sums per channel over the M values of (N, \*); :math:`\gamma = 1` without a weight (derivation: module docstring).

    .. math::

        dx = \frac{\gamma\, inv\_std}{M} \Big(M\, dout - \sum dout - \hat x \sum dout\, \hat x\Big)
            \ \text{(training)}, \qquad dx = \gamma\, inv\_std\; dout \ \text{(eval)}

        d\gamma = \sum dout\, \hat x, \qquad d\beta = \sum dout

    Shape:
        - dout: (N, C, \*).  - dx: (N, C, \*); dweight, dbias: (C,).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])
        >>> out, cache = batch_norm_forward(x, None, None, np.ones(1), np.zeros(1), training=True)
        >>> np.round(out.ravel(), 4)  # mean 3, biased variance 14/3
        array([-0.9258, -0.4629,  1.3887])
        >>> dx, dweight, dbias = batch_norm_backward(np.array([[1.0], [0.0], [0.0]]), cache)
        >>> np.round(dx.ravel(), 4), np.round(dweight, 4), dbias
        (array([ 0.1763, -0.2204,  0.0441]), array([-0.9258]), array([1.]))
    """
    xhat, inv_std, gamma, beta, axes, training, _ = cache
    check_grad_output("batch_norm_backward", dout, xhat.shape, xhat.dtype)
    C = xhat.shape[1]
    dgamma, dbeta = _affine_backward(dout, xhat, gamma, beta, axes, (C,))
    dxhat = dout * gamma if gamma is not None else dout
    if training:
        dx = _normalize_backward(dxhat, xhat, inv_std, axes)
    else:
        dx = dxhat * inv_std  # the running statistics are constants: a diagonal Jacobian
    return dx, dgamma, dbeta


class BatchNormReluCache(NamedTuple):
    """The cache of :func:`batch_norm_relu_forward` (and :func:`batch_norm_relu6_forward`): the two pairs' caches,
    the BatchNorm's and the activation's."""

    batch_norm: Any
    relu: Any


@kernel("batch_norm_relu", setup=_batch_norm_relu_setup, uses=("batch_norm", "relu"))
def batch_norm_relu_forward(
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    channel_sums: Any = None,
    deferred: bool = False,
) -> tuple[Any, Any]:
    r"""``relu(batch_norm(x))``: :func:`batch_norm_forward` followed by ReLU, the pattern of every conv-BN-ReLU.

    The same arguments, outputs and running-statistics updates as :func:`batch_norm_forward`, then ``relu`` (NaN
    propagating, as :func:`~minidl.nn.activation.relu_forward`). The reference is the two pairs one after the other;
    the Numba backend's kernel applies the ReLU in the normalize pass, and its backward recomputes the ReLU mask from
    x instead of keeping it. :func:`minidl.nn.fuse` puts it in models (``BatchNormReLU2d``).

    .. math:: out = \max(0,\; \gamma \hat x + \beta)

    With ``deferred=True`` the output is not computed: the pair returns a
    :class:`~minidl.nn.BatchNormReLUOutput`, x and the vectors mean, scale = gamma inv_std and
    offset = beta of out = max(0, (x - mean) scale + offset), for a convolution to compute as it reads it
    (:func:`~minidl.nn.conv.conv2d_forward` takes one as its input). The statistics, the running averages and the
    cache are the same, and so is the backward (the gradient of out, which that convolution's backward returns). The
    Numba backend then makes no pass over x at all where the statistics come from ``channel_sums``.

    Shape:
        - Input: (N, C, \*) - Output: the same (as :func:`batch_norm_forward`).

    Backward:
        g = dout where y > 0 (y the BatchNorm output), else 0; then the BatchNorm backward of g
        (:func:`batch_norm_backward`).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])  # 3 samples of 1 channel
        >>> out, cache = batch_norm_relu_forward(x, None, None, training=True, eps=1e-12)
        >>> np.round(out, 4)
        array([[0.    ],
               [0.    ],
               [1.3887]])
        >>> dx, _, _ = batch_norm_relu_backward(np.ones_like(x), cache)  # only the third sample passed the ReLU
        >>> np.round(dx, 4)
        array([[ 0.0441],
               [-0.0551],
               [ 0.011 ]])
        >>> a, _ = batch_norm_relu_forward(x, None, None, training=True, eps=1e-12, deferred=True)
        >>> np.round(a.computed(), 4)  # described, then computed: the same output (up to rounding)
        array([[0.    ],
               [0.    ],
               [1.3887]])
    """
    # bad arguments: errors named after this pair (not batch_norm_forward, which checks them again)
    _batch_norm_relu_setup(
        input, running_mean, running_var, weight, bias, training, momentum, eps, channel_sums=channel_sums,
        deferred=deferred,
    )  # fmt: skip
    out, bn_cache = F.batch_norm_forward(
        input, running_mean, running_var, weight, bias, training, momentum, eps, **sums_argument(channel_sums)
    )
    out, relu_cache = F.relu_forward(out)
    if deferred:  # (the reference computes out all the same, for its caches)
        C = input.shape[1]
        out = BatchNormReLUOutput.of(input, bn_cache.mean.reshape(C), bn_cache.inv_std.reshape(C), weight, bias)
    return out, BatchNormReluCache(bn_cache, relu_cache)


@kernel("batch_norm_relu")
def batch_norm_relu_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`batch_norm_relu_forward`: ``(dx, dweight, dbias)`` (None for an absent weight/bias).

    .. math:: dz = dout \odot [z > 0], \quad z = \gamma \hat x + \beta

    then ``(dx, dweight, dbias) = batch_norm_backward(dz)``.

    Shape:
        - dout: (N, C, \*).  - dx: (N, C, \*); dweight, dbias: (C,).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])
        >>> out, cache = batch_norm_relu_forward(x, None, None, np.ones(1), np.zeros(1), training=True, eps=1e-12)
        >>> dx, dweight, dbias = batch_norm_relu_backward(np.ones_like(x), cache)  # one sample passed the ReLU
        >>> np.round(dweight, 4), dbias
        (array([1.3887]), array([1.]))
    """
    bn_cache, relu_cache = cache
    check_grad_output_of("batch_norm_relu_backward", dout, relu_cache)
    return F.batch_norm_backward(F.relu_backward(dout, relu_cache), bn_cache)


@kernel("batch_norm_relu6", setup=_batch_norm_relu6_setup, uses=("batch_norm", "relu6"))
def batch_norm_relu6_forward(
    input: Any,
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
    r"""``relu6(batch_norm(x))``: :func:`batch_norm_forward` followed by ReLU6, the pattern of MobileNetV2's
    conv-BN-ReLU6 layers in training.

    The same arguments, outputs and running-statistics updates as :func:`batch_norm_forward`, then
    :func:`~minidl.nn.activation.relu6_forward` (hardtanh(0, 6)). The reference is the two pairs one after the other;
    the Numba backend's kernel clamps in the normalize pass, and its backward recomputes the mask from x instead of
    keeping it. :func:`minidl.nn.fuse` runs it for a Conv2d-BatchNorm2d-ReLU6 in training
    (:class:`~minidl.nn.fusion.FoldedBatchNorm2d`).

    .. math:: out = \min(\max(0,\; \gamma \hat x + \beta),\; 6)

    Shape:
        - Input: (N, C, \*) - Output: the same (as :func:`batch_norm_forward`).

    Backward:
        g = dout where 0 < y < 6 (y the BatchNorm output), else 0 (the flat parts and the corners pass nothing); then
        the BatchNorm backward of g (:func:`batch_norm_backward`).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])  # 3 samples of 1 channel
        >>> out, cache = batch_norm_relu6_forward(x, None, None, np.full(1, 3.0), np.full(1, 2.0), training=True,
        ...                                       eps=1e-12)
        >>> np.round(out, 4)  # 3 xhat + 2: -0.78, 0.61 and 6.17 before the clamp
        array([[0.    ],
               [0.6113],
               [6.    ]])
    """
    # bad arguments: errors named after this pair (not batch_norm_forward, which checks them again)
    _batch_norm_relu6_setup(
        input, running_mean, running_var, weight, bias, training, momentum, eps, channel_sums=channel_sums
    )
    out, bn_cache = F.batch_norm_forward(
        input, running_mean, running_var, weight, bias, training, momentum, eps, **sums_argument(channel_sums)
    )
    out, relu6_cache = F.relu6_forward(out)
    return out, BatchNormReluCache(bn_cache, relu6_cache)


@kernel("batch_norm_relu6")
def batch_norm_relu6_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`batch_norm_relu6_forward`: ``(dx, dweight, dbias)`` (None for an absent weight/bias).

    .. math:: dz = dout \odot [0 < z < 6], \quad z = \gamma \hat x + \beta

    then ``(dx, dweight, dbias) = batch_norm_backward(dz)``.

    Shape:
        - dout: (N, C, \*).  - dx: (N, C, \*); dweight, dbias: (C,).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])
        >>> out, cache = batch_norm_relu6_forward(x, None, None, np.full(1, 3.0), np.full(1, 2.0), training=True,
        ...                                       eps=1e-12)
        >>> dx, dweight, dbias = batch_norm_relu6_backward(np.ones_like(x), cache)  # only the second inside (0, 6)
        >>> np.round(dx, 4)
        array([[-0.6613],
               [ 0.8266],
               [-0.1653]])
        >>> np.round(dweight, 4), dbias
        (array([-0.4629]), array([1.]))
    """
    bn_cache, relu6_cache = cache
    check_grad_output_of("batch_norm_relu6_backward", dout, relu6_cache)
    return F.batch_norm_backward(F.relu6_backward(dout, relu6_cache), bn_cache)


class _BatchNorm(_NormBase):
    _ndim: tuple[int, ...] = ()

    def _functional_arguments(self, x: Any) -> tuple[Any, ...]:
        """The arguments after ``input`` of :func:`batch_norm_forward` for this batch: running statistics (in
        training only when tracked), weight, bias, whether to use batch statistics, momentum and eps."""
        check_layout(self._where(), x, ndim=self._ndim, channels=self.num_features)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.momentum is None:
            momentum = 1.0 / (float(self.num_batches_tracked) + 1)  # cumulative average: the k-th batch weighs 1/k
        track = not self.training or self.track_running_stats
        return (
            self.running_mean if track else None,
            self.running_var if track else None,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.training or self.running_mean is None,  # batch statistics in training, and without running ones
            momentum,
            self.eps,
        )

    def _count_batch(self) -> None:
        """After a training forward has succeeded: one more batch in the running statistics."""
        if self.training and self.track_running_stats:
            self.num_batches_tracked[...] += 1

    def forward(self, x: Any) -> Any:
        out, cache = F.batch_norm_forward(x, *self._functional_arguments(x))
        self._count_batch()
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dgamma, dbeta = F.batch_norm_backward(dout, cache)
        self._accumulate(dgamma, dbeta)
        return dx

    def _accumulate(self, dgamma: Any, dbeta: Any) -> None:
        if self.weight is not None:
            self.weight.accumulate_grad(dgamma)
        if self.bias is not None:
            self.bias.accumulate_grad(dbeta)


class BatchNorm1d(_BatchNorm):
    r"""Batch normalization of (N, C) or (N, C, L) input: each channel standardized over the batch (and length).

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \gamma + \beta

    In training the mean and (biased) variance are those of the batch, per channel, and the running estimates are
    updated: running = (1 - momentum) running + momentum * batch statistic (unbiased variance). In eval the running
    estimates normalize instead (unless ``track_running_stats=False``: then always the batch's).

    Args:
        num_features: C.
        eps: added to the variance for numerical stability. Default: 1e-5.
        momentum: weight of the new batch in the running statistics; None for a cumulative (equal-weight) average
            over all batches seen (num_batches_tracked). Default: 0.1.
        affine: learn gamma (``weight``) and beta (``bias``). Default: True.
        track_running_stats: keep ``running_mean``, ``running_var``, ``num_batches_tracked``. Default: True.
        bias: (keyword only) learn beta when ``affine``. Default: True.

    Shape:
        - Input: (N, C) or (N, C, L) - Output: the same shape.

    Backward:
        training: dx = (1/M) gamma inv_std (M dout - sum(dout) - xhat sum(dout xhat)), M = N (* L), sums per
        channel; eval: dx = dout gamma inv_std. dgamma = sum(dout * xhat), dbeta = sum(dout).

    Attributes:
        weight: gamma (C,), initialized to 1.
        bias: beta (C,), initialized to 0.
        running_mean: (C,), initialized to 0.
        running_var: (C,), initialized to 1.
        num_batches_tracked: int64 scalar, initialized to 0.

    Examples:
        >>> import numpy as np
        >>> bn = BatchNorm1d(3)
        >>> y = bn(np.arange(12, dtype=np.float32).reshape(4, 3))  # per-channel means 4.5, 5.5, 6.5
        >>> np.round(y.mean(axis=0), 4), np.round(bn.running_mean, 4), int(bn.num_batches_tracked)
        (array([0., 0., 0.], dtype=float32), array([0.45, 0.55, 0.65], dtype=float32), 1)
    """

    _ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    r"""Batch normalization of images (N, C, H, W): each channel standardized over (N, H, W).

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \gamma + \beta

    Same as :class:`BatchNorm1d` with M = N * H * W values per channel.

    Args:
        num_features: C.
        eps: added to the variance for numerical stability. Default: 1e-5.
        momentum: weight of the new batch in the running statistics; None for a cumulative average. Default: 0.1.
        affine: learn gamma (``weight``) and beta (``bias``). Default: True.
        track_running_stats: keep running statistics for eval mode. Default: True.
        bias: (keyword only) learn beta when ``affine``. Default: True.

    Shape:
        - Input: (N, C, H, W) - Output: (N, C, H, W).

    Backward:
        training: dx = (1/M) gamma inv_std (M dout - sum(dout) - xhat sum(dout xhat)), sums over (N, H, W);
        eval: dx = dout gamma inv_std. dgamma = sum(dout * xhat), dbeta = sum(dout).

    Examples:
        >>> import numpy as np
        >>> bn = BatchNorm2d(8)
        >>> y = bn(np.ones((2, 8, 4, 4), np.float32))
        >>> y.shape, bn.backward(np.ones_like(y)).shape, bn.bias.grad[:2]
        ((2, 8, 4, 4), (2, 8, 4, 4), array([32., 32.], dtype=float32))
        >>> sorted(bn.state_dict())
        ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']
    """

    _ndim = (4,)
