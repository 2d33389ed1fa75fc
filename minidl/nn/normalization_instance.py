r"""Instance normalization: each (sample, channel) standardized over its positions (style transfer).

The math of group normalization with one channel per group (G = C, M = H * W values per instance), derived in
:mod:`minidl.nn.normalization`; with ``track_running_stats`` the layer also keeps running averages of the instances'
statistics for eval mode, as BatchNorm does. The pair takes PyTorch's ``F.instance_norm`` arguments and is marked
``@kernel``: the Numba backend runs its group-norm kernel with G = C (``minidl/backend/_numba_norm.py``).
"""

from __future__ import annotations

import warnings
from typing import Any

from minidl.backend import get_array_module
from minidl.nn._checks import check_grad_output
from minidl.nn._norm_common import (
    _affine,
    _affine_backward,
    _channel_view,
    _check_statistics_call,
    _normalize,
    _normalize_backward,
    _NormBase,
    _update_running_stats,
)
from minidl.nn.dispatch import F, kernel
from minidl.nn.normalization_group import NormCache, _accumulate_affine

__all__ = ["InstanceNorm2d", "instance_norm_backward", "instance_norm_forward"]


def _instance_norm_setup(
    input: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> None:
    """Check :func:`instance_norm_forward`'s arguments."""
    _check_statistics_call(
        "instance_norm_forward", input, 3, running_mean, running_var, weight, bias, momentum, eps, use_input_stats,
        "use_input_stats", "instance",
    )  # fmt: skip


@kernel("instance_norm", setup=_instance_norm_setup)
def instance_norm_forward(
    input: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Any, Any]:
    r"""Instance normalization (PyTorch's ``F.instance_norm``, same arguments): each (sample, channel) standardized
    over its positions.

    .. math:: out = \gamma \odot \hat x + \beta, \qquad \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}

    with :math:`\mu, \sigma^2` (biased) per (sample, channel) over the positions, or the running statistics.
    With ``use_input_stats`` the statistics are each instance's own (the same math as group norm with G = C);
    ``running_mean``/``running_var`` (when not None) are then updated in place with the batch average of the
    instances' means and unbiased variances. Without it the running statistics normalize, as in BatchNorm's eval.

    Args:
        input: x, (N, C, \*) with at least one spatial dimension.
        running_mean, running_var: (C,) buffers, or None (required when ``use_input_stats`` is False).
            Default: None.
        weight, bias: per-channel scale gamma and shift beta (C,), or None. Default: None.
        use_input_stats: normalize with the instances' statistics (training, or no running statistics).
            Default: True.
        momentum: weight of the new batch in the running averages, in [0, 1]. Default: 0.1.
        eps: added to the variance. Default: 1e-5.

    Shape:
        - Input: (N, C, \*) - Output: the same; M = prod(\*) values per instance.

    Backward:
        dxhat = dout * gamma; with input statistics dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
        means over the positions; with running statistics dx = dxhat * inv_std. dgamma = sum(dout * xhat),
        dbeta = sum(dout) over (N, \*).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[[1.0, 3.0], [0.0, 10.0]]])  # (N, C, L) = (1, 2, 2)
        >>> np.round(instance_norm_forward(x, eps=1e-12)[0], 6)
        array([[[-1.,  1.],
                [-1.,  1.]]])
    """
    _instance_norm_setup(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    x, (N, C) = input, input.shape[:2]
    xp = get_array_module(x)
    axes = tuple(range(2, x.ndim))
    if use_input_stats:
        xhat, mean, var, inv_std = _normalize(xp, x, axes, eps)
        M = x.size // max(N * C, 1)
        _update_running_stats(running_mean, running_var, momentum, mean.reshape(N, C), var.reshape(N, C), M)
    else:
        inv_std = 1.0 / xp.sqrt(_channel_view(running_var, x.ndim) + eps)
        xhat = (x - _channel_view(running_mean, x.ndim)) * inv_std
    gamma, beta = _channel_view(weight, x.ndim), _channel_view(bias, x.ndim)
    return _affine(xhat, gamma, beta), NormCache(xhat, inv_std, gamma, beta, axes, bool(use_input_stats))


@kernel("instance_norm")
def instance_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`instance_norm_forward`: ``(dx, dweight, dbias)`` (None for an absent weight/bias).

    With input statistics, bars are means over the positions of each (sample, channel); the parameter sums run
    over (N, \*). With running statistics (constants) the Jacobian is diagonal: :math:`dx = inv\_std\; d\hat x`.

    .. math::

        dx = inv\_std \Big(d\hat x - \overline{d\hat x} - \hat x\, \overline{d\hat x\, \hat x}\Big), \qquad
        d\hat x = \gamma\, dout, \qquad d\gamma = \sum dout\, \hat x, \qquad d\beta = \sum dout

    Shape:
        - dout: (N, C, \*).  - dx: (N, C, \*); dweight, dbias: (C,).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[[1.0, 2.0, 6.0]]])  # (N, C, L) = (1, 1, 3): mean 3, biased variance 14/3
        >>> out, cache = instance_norm_forward(x, None, None, np.ones(1), np.zeros(1))
        >>> dx, dweight, dbias = instance_norm_backward(np.array([[[1.0, 0.0, 0.0]]]), cache)
        >>> np.round(dx, 4), np.round(dweight, 4), dbias
        (array([[[ 0.1763, -0.2204,  0.0441]]]), array([-0.9258]), array([1.]))
    """
    xhat, inv_std, gamma, beta, axes, use_input_stats = cache
    check_grad_output("instance_norm_backward", dout, xhat.shape, xhat.dtype)
    dgamma, dbeta = _affine_backward(dout, xhat, gamma, beta, (0,) + axes, (xhat.shape[1],))
    dxhat = dout * gamma if gamma is not None else dout
    dx = _normalize_backward(dxhat, xhat, inv_std, axes) if use_input_stats else dxhat * inv_std
    return dx, dgamma, dbeta


class InstanceNorm2d(_NormBase):
    r"""Instance normalization of images: each channel of each sample standardized over (H, W) (style transfer).

    .. math:: y_{n,c} = \frac{x_{n,c} - \mu_{n,c}}{\sqrt{\sigma^2_{n,c} + \varepsilon}} \gamma_c + \beta_c

    By default it has no parameters and uses each instance's statistics in training and eval. With
    ``track_running_stats=True`` it keeps running averages (of the instances' means and unbiased variances, averaged
    over the batch) in training and normalizes with them in eval, as PyTorch does; ``num_batches_tracked`` is kept
    for state_dict compatibility but not counted, and ``momentum=None`` leaves the running statistics unchanged
    (PyTorch's behaviour).

    Args:
        num_features: C.
        eps: added to the variance. Default: 1e-5.
        momentum: weight of the new batch in the running statistics. Default: 0.1.
        affine: learn per-channel gamma (``weight``) and beta (``bias``). Default: False.
        track_running_stats: keep running statistics for eval mode. Default: False.
        bias: (keyword only) learn beta when ``affine``. Default: True.

    Shape:
        - Input: (N, C, H, W) or (C, H, W) - Output: the same shape.

    Backward:
        dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over (H, W)
        (eval with running statistics: dx = dxhat * inv_std); dgamma = sum(dout * xhat), dbeta = sum(dout).

    Examples:
        >>> import numpy as np
        >>> inorm = InstanceNorm2d(3)
        >>> inorm
        InstanceNorm2d(3, eps=1e-05, momentum=0.1, affine=False, bias=False, track_running_stats=False)
        >>> y = inorm(np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32))
        >>> bool(np.allclose(y.mean(axis=(2, 3)), 0, atol=1e-5)), inorm.backward(np.ones_like(y)).shape
        (True, (2, 3, 4, 4))
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, bias=bias)

    def forward(self, x: Any) -> Any:
        where = self._where()
        if hasattr(x, "ndim") and x.ndim not in (3, 4):
            raise ValueError(
                f"{where}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {tuple(x.shape)} ({x.ndim}-D)"
            )
        unbatched = getattr(x, "ndim", 4) == 3
        if hasattr(x, "shape") and x.shape[x.ndim - 3] != self.num_features:
            C = x.shape[x.ndim - 3]
            if self.affine or self.track_running_stats:
                raise ValueError(
                    f"{where}: expected {self.num_features} channels in dimension {x.ndim - 3} of the input, "
                    f"got {C} (shape {tuple(x.shape)})"
                )
            warnings.warn(
                f"{where}: the input's size at dim={x.ndim - 3} ({C}) does not match num_features; it is not used "
                "because affine=False and track_running_stats=False",
                stacklevel=2,
            )
        out, cache = F.instance_norm_forward(
            x[None] if unbatched else x,
            self.running_mean,
            self.running_var,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.training or not self.track_running_stats,
            0.0 if self.momentum is None else self.momentum,
            self.eps,
        )
        self.save_for_backward(cache, unbatched)
        return out[0] if unbatched else out

    def backward(self, dout: Any) -> Any:
        cache, unbatched = self.pop_saved()
        dx, dgamma, dbeta = F.instance_norm_backward(dout[None] if unbatched else dout, cache)
        _accumulate_affine(self, dgamma, dbeta)
        return dx[0] if unbatched else dx
