r"""``SyncBatchNorm``: BatchNorm whose statistics are those of the *global* batch, over all ranks.

With data parallelism each rank sees B of the P * B samples of a step. A plain BatchNorm normalizes with its own B
samples' mean and variance, so P ranks do not compute what one process with the whole batch would. SyncBatchNorm
makes them do so, at the price of two small allreduces per layer and step (2 C + 1 and 2 C numbers).

**Forward.** The mean and variance per channel over the M = sum_r M_r values of all ranks (M_r = N_r * H * W on
rank r) need only three sums, which add across ranks::

    S1 = sum x,  S2 = sum x^2,  M        (local sums, then ONE allreduce of [S1 (C), S2 (C), M])
    mean = S1 / M,   var = S2 / M - mean^2 (biased),   inv_std = 1 / sqrt(var + eps)

The sums are taken in float64 (``var = E[x^2] - mean^2`` cancels digits; float64 keeps float32 inputs exact to their
own precision). Then each rank normalizes its own values, ``xhat = (x - mean) inv_std``, ``y = gamma xhat + beta``,
and updates the running statistics with the global mean and the unbiased ``var * M / (M - 1)``, identically on
every rank.

**Backward.** BatchNorm's closed form (derived in :mod:`minidl.nn.normalization`) is::

    dx = (1/M) gamma inv_std (M dy - sum dy - xhat sum(dy xhat))

where the sums run over the whole group of M values, i.e. over all ranks, because every x_j of the group moved the
shared mean and variance. So each rank computes its local [sum dy (C), sum dy xhat (C)], ONE allreduce adds them,
and each rank applies the formula to its own dy and xhat. The parameter gradients stay local,
dgamma = sum_local dy xhat and dbeta = sum_local dy: :class:`~minidl.distributed.DistributedDataParallel`
averages them over the ranks with every other gradient.

Why the unscaled local dy: each rank's loss is the mean over its B samples, and DDP averages the parameter
gradients, which makes the step the gradient of the mean loss over all P * B samples, as one process would take.

At world size 1 (or in eval mode, or with no process group) there is nothing to synchronize and the module runs
exactly :func:`~minidl.nn.normalization.batch_norm_forward`, as BatchNorm does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._checks import check_array, check_grad_output, check_params
from minidl.nn._norm_common import _affine, _affine_backward, _channel_view, _check_eps_momentum, _update_running
from minidl.nn.dispatch import F
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm

__all__ = ["SyncBatchNorm", "sync_batch_norm_backward", "sync_batch_norm_forward"]

# sums one float64 array over all ranks, in place
SumOverRanks = Callable[[Any], Any]


class SyncBatchNormCache(NamedTuple):
    """The cache of :func:`sync_batch_norm_forward`."""

    xhat: Any  # (x - mean) * inv_std, this rank's values
    inv_std: Any  # (1, C, 1, ...), from the global statistics
    gamma: Any  # (1, C, 1, ...) or None
    beta: Any  # (1, C, 1, ...) or None
    axes: tuple[int, ...]  # all axes but 1
    count: int  # M, the number of values per channel over all ranks
    sum_over_ranks: SumOverRanks


def sync_batch_norm_forward(
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any,
    bias: Any,
    momentum: float,
    eps: float,
    sum_over_ranks: SumOverRanks,
) -> tuple[Any, SyncBatchNormCache]:
    r"""Training-mode batch normalization with the statistics of the global batch (see the module docstring).

    .. math:: \mu = \frac{\sum_r S_{1,r}}{M}, \quad \sigma^2 = \frac{\sum_r S_{2,r}}{M} - \mu^2, \quad
        out = \gamma\, \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} + \beta

    Args:
        input: x, (N, C, \*), this rank's part of the batch (N may differ between ranks, even be 0).
        running_mean, running_var: (C,) buffers updated in place, or None.
        weight, bias: gamma and beta (C,), or None.
        momentum: weight of this batch in the running statistics.
        eps: added to the variance.
        sum_over_ranks: sums a float64 array over all ranks in place (``dist.all_reduce``); called once.

    Shape:
        - Input: (N, C, \*) - Output: the same.

    Backward:
        :func:`sync_batch_norm_backward`: one more allreduce, of [sum dy, sum dy xhat].

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])
        >>> out, cache = sync_batch_norm_forward(x, None, None, None, None, 0.1, 1e-5, lambda a: a)  # one rank
        >>> np.round(out.ravel(), 4)
        array([-0.9258, -0.4629,  1.3887])
    """
    where = "sync_batch_norm_forward"
    check_array(where, input, min_ndim=2)
    C = input.shape[1]
    check_params(where, input, (C,), weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    _check_eps_momentum(where, eps, momentum)
    xp, x = get_array_module(input), input
    axes = (0,) + tuple(range(2, x.ndim))
    local_count = x.size // C if C else 0
    sums = xp.concatenate(
        [x.sum(axis=axes, dtype=np.float64), (x.astype(np.float64) ** 2).sum(axis=axes), xp.array([local_count], float)]
    )
    sum_over_ranks(sums)  # [S1 (C), S2 (C), M]: the one communication of the forward
    M = int(round(float(sums[-1])))
    if M <= 1:
        raise ValueError(
            f"{where}: expected more than 1 value per channel over all ranks when training, got {M} (input shape "
            f"{tuple(x.shape)} on this rank)"
        )
    mean = sums[:C] / M
    var = xp.maximum(sums[C : 2 * C] / M - mean * mean, 0.0)  # biased; rounding could make it slightly negative
    inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
    if running_mean is not None:
        _update_running(running_mean, momentum, mean.astype(running_mean.dtype))
    if running_var is not None:
        _update_running(running_var, momentum, (var * (M / (M - 1))).astype(running_var.dtype))
    inv_std = _channel_view(inv_std, x.ndim)
    xhat = (x - _channel_view(mean.astype(x.dtype), x.ndim)) * inv_std
    gamma, beta = _channel_view(weight, x.ndim), _channel_view(bias, x.ndim)
    return _affine(xhat, gamma, beta), SyncBatchNormCache(xhat, inv_std, gamma, beta, axes, M, sum_over_ranks)


def sync_batch_norm_backward(dout: Any, cache: SyncBatchNormCache) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`sync_batch_norm_forward`: ``(dx, dweight, dbias)``; dweight and dbias are this rank's.

    .. math::

        dx = \frac{\gamma\, inv\_std}{M} \Big(M\, dout - \sum_{\text{all ranks}} dout
            - \hat x \sum_{\text{all ranks}} dout\, \hat x\Big), \qquad
        d\gamma = \sum_{\text{local}} dout\, \hat x, \qquad d\beta = \sum_{\text{local}} dout

    Shape:
        - dout: (N, C, \*). - dx: (N, C, \*); dweight, dbias: (C,).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0], [2.0], [6.0]])
        >>> out, cache = sync_batch_norm_forward(x, None, None, np.ones(1), np.zeros(1), 0.1, 1e-5, lambda a: a)
        >>> dx, dweight, dbias = sync_batch_norm_backward(np.array([[1.0], [0.0], [0.0]]), cache)
        >>> np.round(dx.ravel(), 4), np.round(dweight, 4), dbias
        (array([ 0.1763, -0.2204,  0.0441]), array([-0.9258]), array([1.]))
    """
    xhat, inv_std, gamma, beta, axes, M, sum_over_ranks = cache
    check_grad_output("sync_batch_norm_backward", dout, xhat.shape, xhat.dtype)
    xp, C = get_array_module(dout), xhat.shape[1]
    local_sum_dy = dout.sum(axis=axes, dtype=np.float64)
    local_sum_dy_xhat = (dout * xhat).sum(axis=axes, dtype=np.float64)
    sums = xp.concatenate([local_sum_dy, local_sum_dy_xhat])
    sum_over_ranks(sums)  # [sum dy (C), sum dy xhat (C)] over all ranks: the one communication of the backward
    sum_dy = _channel_view(sums[:C].astype(dout.dtype), dout.ndim)
    sum_dy_xhat = _channel_view(sums[C:].astype(dout.dtype), dout.ndim)
    scale = inv_std / M if gamma is None else gamma * inv_std / M
    dx = scale * (M * dout - sum_dy - xhat * sum_dy_xhat)
    dgamma, dbeta = _affine_backward(dout, xhat, gamma, beta, axes, (C,))
    return dx, dgamma, dbeta


def _sum_over_ranks(array: Any) -> Any:
    from minidl.distributed._comm import all_reduce

    return all_reduce(array, _verify=False)  # (every rank's BatchNorm has the same channels)


def _synchronizing(module: Module) -> bool:
    from minidl.distributed import _comm

    return module.training and _comm.is_initialized() and _comm.get_world_size() > 1


class SyncBatchNorm(_BatchNorm):
    r"""Batch normalization with the statistics of the global batch over all ranks (PyTorch's ``SyncBatchNorm``).

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \gamma + \beta

    with E and Var over (N, \*) of *every* rank's batch in training (two allreduces per step, see the module
    docstring). In eval mode, at world size 1 and without a process group it is exactly
    :class:`~minidl.nn.BatchNorm2d` (BatchNorm1d for (N, C) and (N, C, L) input). Build it with
    :meth:`convert_sync_batchnorm` from a model with BatchNorm layers.

    Args:
        num_features: C.
        eps: added to the variance. Default: 1e-5.
        momentum: weight of the new batch in the running statistics; None for a cumulative average. Default: 0.1.
        affine: learn gamma (``weight``) and beta (``bias``). Default: True.
        track_running_stats: keep running statistics for eval mode. Default: True.
        bias: (keyword only) learn beta when ``affine``. Default: True.

    Shape:
        - Input: (N, C, \*) with 0 to 3 trailing dimensions - Output: the same.

    Backward:
        dx = (1/M) gamma inv_std (M dy - sum dy - xhat sum dy xhat), the sums over all ranks (one allreduce);
        dgamma = sum dy xhat and dbeta = sum dy over this rank's values (DDP averages them).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> net = SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
        >>> net[1]
        SyncBatchNorm(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
        >>> net(np.ones((2, 3, 5, 5), np.float32)).shape  # no process group: exactly BatchNorm2d
        (2, 4, 3, 3)
    """

    _ndim = (2, 3, 4, 5)

    def forward(self, x: Any) -> Any:
        if not _synchronizing(self):
            return super().forward(x)
        running_mean, running_var, weight, bias, _, momentum, eps = self._functional_arguments(x)
        out, cache = sync_batch_norm_forward(x, running_mean, running_var, weight, bias, momentum, eps, _sum_over_ranks)
        self._count_batch()
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        if isinstance(cache, SyncBatchNormCache):
            dx, dgamma, dbeta = sync_batch_norm_backward(dout, cache)
        else:
            dx, dgamma, dbeta = F.batch_norm_backward(dout, cache)
        self._accumulate(dgamma, dbeta)
        return dx

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """Replace every BatchNorm1d/BatchNorm2d in ``module`` (or ``module`` itself) by a SyncBatchNorm that shares
        its Parameter objects and buffers, as PyTorch's; returns the converted module.

        Args:
            module: a model or a BatchNorm layer.
            process_group: only None (the whole group) is supported. Default: None.
        """
        if process_group is not None:
            raise ValueError("SyncBatchNorm.convert_sync_batchnorm: only process_group=None (all ranks) is supported")
        if type(module) in (BatchNorm1d, BatchNorm2d):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            for name in ("weight", "bias"):
                converted.register_parameter(name, module._parameters[name])
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                converted.register_buffer(name, module._buffers[name])
            converted.training = module.training
            return converted
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = cls.convert_sync_batchnorm(child)
        return module
