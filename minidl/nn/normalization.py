r"""Normalization layers: BatchNorm and LocalResponseNorm here, the per-sample norms in normalization_group.py.

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minidl
from minidl.nn import init
from minidl.nn._checks import check_array, check_float, check_grad_output, check_int, check_same_device
from minidl.nn.activation import relu_backward, relu_forward
from minidl.nn.module import Module, Parameter

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "GroupNorm",
    "InstanceNorm2d",
    "LayerNorm",
    "LocalResponseNorm",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_relu_backward",
    "batch_norm_relu_forward",
    "group_norm_backward",
    "group_norm_forward",
    "instance_norm_backward",
    "instance_norm_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "local_response_norm_backward",
    "local_response_norm_forward",
]


# ---------------------------------------------------------------------------------------------- shared math
def _normalize(xp: Any, x: Any, axes: tuple[int, ...], eps: float) -> tuple[Any, Any, Any, Any]:
    """Standardize ``x`` over ``axes``: returns ``xhat, mean, var, inv_std`` (the statistics with keepdims)."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)  # biased: divide by M
    inv_std = 1.0 / xp.sqrt(var + eps)
    return xc * inv_std, mean, var, inv_std


def _normalize_backward(dxhat: Any, xhat: Any, inv_std: Any, axes: tuple[int, ...]) -> Any:
    """dx of ``xhat = _normalize(x, axes)`` given dL/dxhat: inv_std * (dxhat - mean(dxhat) - xhat mean(dxhat xhat))."""
    mean_dxhat = dxhat.mean(axis=axes, keepdims=True)
    mean_dxhat_xhat = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


def _channel_view(p: Any, ndim: int) -> Any:
    """A per-channel vector (C,) reshaped to (1, C, 1, ..., 1) so it broadcasts over an ndim-D (N, C, ...) array."""
    return None if p is None else p.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(xhat: Any, gamma: Any, beta: Any) -> Any:
    """y = gamma * xhat + beta (each optional; gamma and beta already broadcastable). Never returns ``xhat`` itself."""
    out = xhat * gamma if gamma is not None else xhat.copy()
    if beta is not None:
        out += beta
    return out


def _affine_backward(dout: Any, xhat: Any, gamma: Any, beta: Any, axes: tuple[int, ...], shape: Any) -> tuple[Any, Any]:
    """dgamma = sum(dout * xhat), dbeta = sum(dout) over ``axes`` (None for an absent parameter), as ``shape``."""
    dgamma = None if gamma is None else (dout * xhat).sum(axis=axes).reshape(shape)
    dbeta = None if beta is None else dout.sum(axis=axes).reshape(shape)
    return dgamma, dbeta


def _check_vector(where: str, name: str, a: Any, shape: tuple[int, ...]) -> None:
    """An optional parameter/statistics array must have exactly ``shape``."""
    if a is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{where}: expected {name} of shape {tuple(shape)}, got shape {tuple(a.shape)}")


def _check_eps_momentum(where: str, eps: float, momentum: float) -> None:
    check_float(where, "eps", eps, low=0.0, low_open=True)
    check_float(where, "momentum", momentum, low=0.0, high=1.0)


def _update_running(running: Any, momentum: float, value: Any) -> None:
    """running <- (1 - momentum) * running + momentum * value, in place (keeping the buffer's dtype)."""
    running[...] = (1.0 - momentum) * running + momentum * value


def _update_running_stats(running_mean: Any, running_var: Any, momentum: float, mean: Any, var: Any, M: int) -> None:
    """Update the running statistics (either buffer may be None) from a batch's mean and biased variance over M
    values each: (C,) per channel, or (N, C) per sample (InstanceNorm: then averaged over the samples, as PyTorch
    does). The running variance gets the unbiased var * M / (M - 1)."""
    if running_mean is not None:
        _update_running(running_mean, momentum, mean if mean.ndim == 1 else mean.mean(axis=0))
    if running_var is not None:
        unbiased = var * (M / (M - 1))
        _update_running(running_var, momentum, unbiased if unbiased.ndim == 1 else unbiased.mean(axis=0))


# ---------------------------------------------------------------------------------------------- batch norm
def batch_norm_forward(
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Any, Any]:
    r"""Batch normalization over every axis but the channel axis 1 (PyTorch's ``F.batch_norm``).

    In training the batch statistics (biased variance) normalize, and ``running_mean``/``running_var`` (when not
    None) are updated in place with the unbiased variance:
    running = (1 - momentum) * running + momentum * batch_statistic. In eval (``training=False``) the running
    statistics normalize and are not changed.

    Args:
        x: input (N, C, *).
        gamma, beta: per-channel scale and shift (C,), or None for none.
        running_mean, running_var: (C,) buffers, or None (required when ``training`` is False).
        training: use (and record) batch statistics, or use the running ones.
        momentum: weight of the new batch in the running average, in [0, 1] (a module turns momentum=None into
            1 / num_batches_tracked, the cumulative average). Default: 0.1.
        eps: added to the variance before the square root. Default: 1e-5.

    Shape:
        - Input: (N, C, *) - Output: the same; M = N * prod(*) values per channel.

    Backward:
        training: dx = (1/M) gamma inv_std (M dout - sum(dout) - xhat sum(dout xhat)) (see the module docstring);
        eval: dx = dout * gamma * inv_std. Both: dgamma = sum(dout * xhat), dbeta = sum(dout) over (N, *).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> out, cache = batch_norm_forward(x, None, None, None, None, training=True, eps=1e-12)
        >>> np.round(out, 6)
        array([[-1., -1.],
               [ 1.,  1.]])
    """
    return _batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu=False)


def batch_norm_relu_forward(
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Any, Any]:
    r"""``relu(batch_norm(x))``: :func:`batch_norm_forward` followed by ReLU, the pattern of every conv-BN-ReLU.

    The same arguments, outputs and running-statistics updates as :func:`batch_norm_forward`, then
    ``relu`` (NaN propagating, as :func:`~minidl.nn.activation.relu_forward`). On the NumPy backend it is exactly
    the two functionals one after the other; a fast backend (Numba) applies the ReLU in the same pass over the
    data, and its backward recomputes the ReLU mask from x instead of keeping it.

    Shape:
        - Input: (N, C, *) - Output: the same (as :func:`batch_norm_forward`).

    Backward:
        g = dout where y > 0 (y the BatchNorm output), else 0; then the BatchNorm backward of g
        (:func:`batch_norm_backward`).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])  # 3 samples of 1 channel
        >>> out, cache = batch_norm_relu_forward(x, None, None, None, None, training=True, eps=1e-12)
        >>> np.round(out, 4)
        array([[0.    ],
               [0.    ],
               [1.3887]])
        >>> dx, _, _ = batch_norm_relu_backward(np.ones_like(x), cache)  # only the third sample passed the ReLU
        >>> np.round(dx, 4)
        array([[ 0.0441],
               [-0.0551],
               [ 0.011 ]])
    """
    return _batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu=True)


def _batch_norm_forward(
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    training: bool,
    momentum: float,
    eps: float,
    relu: bool,
) -> tuple[Any, Any]:
    where = "batch_norm_forward"
    be = check_array(where, x, min_ndim=2)
    xp = be.xp
    _check_eps_momentum(where, eps, momentum)
    C = x.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        _check_vector(where, name, a, (C,))
    axes = (0,) + tuple(range(2, x.ndim))
    M = x.size // C
    gamma_b, beta_b = _channel_view(gamma, x.ndim), _channel_view(beta, x.ndim)
    if training and M <= 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per channel when training, got input shape {tuple(x.shape)}"
        )
    has_running = running_mean is not None and running_var is not None
    fast = getattr(be, "batch_norm_apply", None) is not None and getattr(be, "batch_norm_backward_fused", None)
    if fast and (training or has_running):  # a fast backend's kernels
        return _batch_norm_fused(be, x, gamma, beta, running_mean, running_var, training, momentum, eps, relu)
    if training:
        xhat, mean, var, inv_std = _normalize(xp, x, axes, eps)
        _update_running_stats(running_mean, running_var, momentum, mean.reshape(C), var.reshape(C), M)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{where}: running_mean and running_var are required when training=False")
        inv_std = 1.0 / xp.sqrt(_channel_view(running_var, x.ndim) + eps)
        xhat = (x - _channel_view(running_mean, x.ndim)) * inv_std
    out = _affine(xhat, gamma_b, beta_b)
    mask = None
    if relu:
        out, mask = relu_forward(out)
    return out, (xhat, inv_std, gamma_b, beta_b, axes, bool(training), None, mask)


def _batch_norm_fused(
    be: Any,
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    training: bool,
    momentum: float,
    eps: float,
    relu: bool,
) -> tuple[Any, Any]:
    """:func:`batch_norm_forward` with a fast backend's per-channel kernels (minidl/backend/numba_backend.py):
    the same statistics and running-average updates, normalize + affine (+ ReLU) in one pass, x cached instead of
    xhat (and no ReLU mask: the backward kernel recomputes it)."""
    M = x.size // x.shape[1]
    # the kernels compute in float32/float64; for another dtype (float16) the cached statistics are rounded, so the
    # backward could not recompute the forward's ReLU mask exactly: then the ReLU runs apart and keeps its mask
    relu_in_kernel = relu and x.dtype in (np.float32, np.float64)
    if training:
        out, mean, var, inv_std = be.batch_norm_train(x, gamma, beta, eps, relu_in_kernel)
        _update_running_stats(running_mean, running_var, momentum, mean, var, M)
    else:
        mean = running_mean
        inv_std = (1.0 / be.xp.sqrt(running_var + eps)).astype(x.dtype, copy=False)
        out = be.batch_norm_apply(x, mean, inv_std, gamma, beta, relu_in_kernel)
    mask = None
    if relu and not relu_in_kernel:
        out, mask = relu_forward(out)
    gamma_b, beta_b = _channel_view(gamma, x.ndim), _channel_view(beta, x.ndim)
    fused = (x, mean.copy(), gamma, beta, relu_in_kernel)
    return out, (None, inv_std, gamma_b, beta_b, None, bool(training), fused, mask)


def batch_norm_relu_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    """Gradients of :func:`batch_norm_relu_forward`: ``(dx, dgamma, dbeta)`` (None for an absent gamma/beta)."""
    return batch_norm_backward(dout, cache)


def batch_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    """Gradients of :func:`batch_norm_forward`: ``(dx, dgamma, dbeta)`` (None for an absent gamma/beta)."""
    xhat, inv_std, gamma_b, beta_b, axes, training, fused, relu_mask = cache
    if relu_mask is not None:  # batch_norm_relu_forward with the ReLU apart: first its backward
        dout = relu_backward(dout, relu_mask)
    if fused is not None:  # the forward ran a fast backend's kernels and kept x, mean, gamma, beta
        x, mean, gamma, beta, relu = fused
        be = check_array("batch_norm_backward", dout, what="gradient")
        return be.batch_norm_backward_fused(dout, x, mean, inv_std, gamma, beta, training, relu)
    C = xhat.shape[1]
    dgamma, dbeta = _affine_backward(dout, xhat, gamma_b, beta_b, axes, (C,))
    dxhat = dout * gamma_b if gamma_b is not None else dout
    if training:
        dx = _normalize_backward(dxhat, xhat, inv_std, axes)
    else:
        dx = dxhat * inv_std  # the running statistics are constants: a diagonal Jacobian
    return dx, dgamma, dbeta


def _affine_parameters(module: Module, shape: tuple[int, ...], affine: bool, bias: bool) -> None:
    """Register gamma (``weight``) and beta (``bias``) of ``shape`` on ``module``, or None placeholders."""
    xp, dtype = minidl.get_backend().xp, minidl.get_default_dtype()
    module.register_parameter("weight", Parameter(xp.empty(shape, dtype=dtype)) if affine else None)
    module.register_parameter("bias", Parameter(xp.empty(shape, dtype=dtype)) if affine and bias else None)


def _reset_affine(module: Module) -> None:
    """PyTorch's init: gamma = 1, beta = 0, so the layer starts as a pure standardization."""
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


class _NormBase(Module):
    """What BatchNorm and InstanceNorm share: per-channel gamma/beta and optional running statistics."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = check_int(name, "num_features", num_features)
        self.eps = check_float(name, "eps", eps, low=0.0, low_open=True)
        self.momentum = None if momentum is None else check_float(name, "momentum", momentum, low=0.0, high=1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        be, dtype, C = minidl.get_backend(), minidl.get_default_dtype(), self.num_features
        _affine_parameters(self, (C,), self.affine, bias)
        if self.track_running_stats:
            self.register_buffer("running_mean", be.xp.zeros((C,), dtype=dtype))
            self.register_buffer("running_var", be.xp.ones((C,), dtype=dtype))
            self.register_buffer("num_batches_tracked", be.xp.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """running_mean = 0, running_var = 1, num_batches_tracked = 0."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        """PyTorch's init: weight (gamma) = 1, bias (beta) = 0, so the layer starts as a pure standardization."""
        self.reset_running_stats()
        _reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )

    def _where(self) -> str:
        return f"{type(self).__name__}({self.num_features})"

    def _state_dtype(self) -> Any:
        """The dtype the input must have: the parameters' (or the running statistics'), any float if neither."""
        for a in (self.weight, self.running_mean):
            if a is not None:
                return a.dtype
        return None

    def _check_input(self, x: Any, ndim: int | tuple[int, ...]) -> None:
        where = self._where()
        check_array(where, x, ndim=ndim, channels=self.num_features, dtype=self._state_dtype())
        check_same_device(
            where, x, *(p.data for p in (self.weight, self.bias) if p is not None), self.running_mean, self.running_var
        )


class _BatchNorm(_NormBase):
    _ndim: tuple[int, ...] = ()

    def forward(self, x: Any) -> Any:
        return self._forward(x, relu=False)

    def _forward(self, x: Any, relu: bool) -> Any:
        """The forward; with ``relu``, ``relu(batchnorm(x))`` in one pass (see :mod:`minidl.nn.fusion`)."""
        self._check_input(x, self._ndim)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            if x.size // x.shape[1] <= 1:  # check before counting the batch
                raise ValueError(
                    f"{self._where()}: expected more than 1 value per channel when training, "
                    f"got input shape {tuple(x.shape)}"
                )
            self.num_batches_tracked[...] += 1
            if self.momentum is None:  # cumulative moving average: the k-th batch has weight 1/k
                momentum = 1.0 / float(self.num_batches_tracked)
        # batch statistics in training, and in eval when there are no running statistics
        use_batch_stats = self.training or self.running_mean is None
        out, cache = _batch_norm_forward(
            x,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.running_mean if (not self.training or self.track_running_stats) else None,
            self.running_var if (not self.training or self.track_running_stats) else None,
            use_batch_stats,
            momentum,
            self.eps,
            relu,
        )
        self._save_for_backward((cache, tuple(x.shape), relu))
        return out

    def backward(self, dout: Any) -> Any:
        cache, shape, _ = self._pop_cache()
        check_grad_output(self._where(), dout, shape)
        dx, dgamma, dbeta = batch_norm_backward(dout, cache)
        if self.weight is not None:
            self.weight.accumulate_grad(dgamma)
        if self.bias is not None:
            self.bias.accumulate_grad(dbeta)
        assert dx.shape == dout.shape
        return dx

    def _fused_relu_pending(self) -> bool:
        """Whether the saved forward (not yet consumed by backward) applied a ReLU too."""
        cache = getattr(self, "_cache", None)
        return cache is not None and cache[2]


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
        weight: gamma (C,), initialized to 1.  bias: beta (C,), initialized to 0.
        running_mean (C,) = 0, running_var (C,) = 1, num_batches_tracked (int64 scalar) = 0.

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
        >>> bn(np.ones((2, 8, 4, 4), np.float32)).shape
        (2, 8, 4, 4)
        >>> sorted(bn.state_dict())
        ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']
    """

    _ndim = (4,)


# ---------------------------------------------------------------------------------------------- local response norm
def _channel_window_sum(xp: Any, a: Any, before: int, after: int) -> Any:
    """s[:, c] = a[:, c - before] + ... + a[:, c + after] (channels outside [0, C) count as 0)."""
    C = a.shape[1]
    padded = xp.pad(a, [(0, 0), (before, after)] + [(0, 0)] * (a.ndim - 2))
    out = padded[:, 0:C].copy()
    for d in range(1, before + after + 1):
        out += padded[:, d : d + C]
    return out


def local_response_norm_forward(
    x: Any, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> tuple[Any, Any]:
    r"""Local response normalization (AlexNet): each value divided by the energy of its neighbouring channels.

    .. math:: s_c = k + \frac{\alpha}{n} \sum_{c' = c - \lfloor n/2 \rfloor}^{c + \lfloor (n-1)/2 \rfloor} x_{c'}^2,
        \qquad y_c = x_c\, s_c^{-\beta}

    Args:
        x: input (N, C, *), at least 3-D.  size: n, the number of channels in a window.
        alpha: scale of the sum. Default: 1e-4.  beta: exponent. Default: 0.75.  k: additive constant. Default: 1.

    Shape:
        - Input: (N, C, *) - Output: the same.

    Backward:
        y_c depends on x_j through s_c for every window c containing j (c in [j - floor((n-1)/2), j + floor(n/2)]):
        dx_j = dout_j s_j^(-beta) - (2 alpha beta / n) x_j * sum over those c of dout_c y_c / s_c.

    Examples:
        >>> import numpy as np
        >>> out, _ = local_response_norm_forward(np.ones((1, 3, 1)), size=2, alpha=1.0, beta=1.0, k=1.0)
        >>> out[0, :, 0]  # windows [c - 1, c]: s = 1 + 1/2 for channel 0, 1 + (1 + 1)/2 = 2 for channels 1, 2
        array([0.66666667, 0.5       , 0.5       ])
    """
    where = "local_response_norm_forward"
    be = check_array(where, x, min_ndim=3)
    size = check_int(where, "size", size)
    alpha, beta, k = (check_float(where, name, v) for name, v in (("alpha", alpha), ("beta", beta), ("k", k)))
    s = k + (alpha / size) * _channel_window_sum(be.xp, x * x, size // 2, (size - 1) // 2)
    out = x * s ** (-beta)
    return out, (x, s, out, size, alpha, beta)


def local_response_norm_backward(dout: Any, cache: Any) -> Any:
    """Gradient of :func:`local_response_norm_forward` with respect to x."""
    x, s, out, size, alpha, beta = cache
    be = check_array("local_response_norm_backward", dout)
    back = _channel_window_sum(be.xp, dout * out / s, (size - 1) // 2, size // 2)  # the transposed window
    return dout * s ** (-beta) - (2.0 * alpha * beta / size) * x * back


class LocalResponseNorm(Module):
    r"""Local response normalization across channels (Krizhevsky et al., 2012), as ``torch.nn.LocalResponseNorm``.

    .. math:: y_c = x_c \left(k + \frac{\alpha}{n} \sum_{c' \in \text{window}(c)} x_{c'}^2\right)^{-\beta}

    Args:
        size: n, the number of neighbouring channels in a window.
        alpha: scale. Default: 1e-4.  beta: exponent. Default: 0.75.  k: additive constant. Default: 1.0.

    Shape:
        - Input: (N, C, *) - Output: the same shape.

    Backward:
        dx_j = dout_j s_j^(-beta) - (2 alpha beta / n) x_j sum_{c: j in window(c)} dout_c y_c / s_c.

    Examples:
        >>> import numpy as np
        >>> LocalResponseNorm(5)
        LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=1.0)
        >>> LocalResponseNorm(5)(np.ones((2, 8, 3, 3), np.float32)).shape
        (2, 8, 3, 3)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size = check_int("LocalResponseNorm", "size", size)
        self.alpha = check_float("LocalResponseNorm", "alpha", alpha)
        self.beta = check_float("LocalResponseNorm", "beta", beta)
        self.k = check_float("LocalResponseNorm", "k", k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def forward(self, x: Any) -> Any:
        check_array(f"LocalResponseNorm({self.size})", x, min_ndim=3)
        out, cache = local_response_norm_forward(x, self.size, self.alpha, self.beta, self.k)
        self._save_for_backward((cache, tuple(x.shape)))
        return out

    def backward(self, dout: Any) -> Any:
        cache, shape = self._pop_cache()
        check_grad_output(f"LocalResponseNorm({self.size})", dout, shape)
        dx = local_response_norm_backward(dout, cache)
        assert dx.shape == dout.shape
        return dx


# LayerNorm, GroupNorm and InstanceNorm2d (the per-sample norms) live in normalization_group.py, to keep each file
# under ~500 lines; they use the helpers above, so they are imported last.
from minidl.nn.normalization_group import (  # noqa: E402
    GroupNorm,
    InstanceNorm2d,
    LayerNorm,
    group_norm_backward,
    group_norm_forward,
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
