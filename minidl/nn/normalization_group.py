r"""Per-sample normalization: LayerNorm, GroupNorm, InstanceNorm (part of :mod:`minidl.nn.normalization`).

Each sample is standardized on its own, so samples never mix and training and eval agree (unless InstanceNorm
tracks running statistics). LayerNorm standardizes over the trailing ``normalized_shape`` dims with an
elementwise affine map. GroupNorm splits the C channels into G groups of C / G and standardizes each group over
its channels and positions (M = C / G * H * W values); InstanceNorm is the case G = C (M = H * W), and LayerNorm
over (C, H, W) the case G = 1 (but with an elementwise rather than per-channel gamma, beta).

Backward: the shared closed form derived in :mod:`minidl.nn.normalization`, with the means over each group:

    dxhat = dout * gamma;  dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

and dgamma = sum(dout * xhat), dbeta = sum(dout) over every axis gamma is broadcast along.

On a fast backend (Numba) the functionals run its kernels instead, found with ``getattr(backend, name, None)``
(``layer_norm_fused``, ``group_norm_fused`` and their ``..._backward_fused``; see ``minidl/backend/_numba_norm.py``):
statistics, normalization and affine map in one pass, with x and the per-group mean and inv_std cached instead of
xhat. The NumPy code here is the reference they are tested against.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

from minidl.nn._checks import check_array, check_float, check_grad_output, check_int, check_same_device
from minidl.nn.module import Module
from minidl.nn.normalization import (
    _affine,
    _affine_backward,
    _affine_parameters,
    _channel_view,
    _check_eps_momentum,
    _check_vector,
    _normalize,
    _normalize_backward,
    _NormBase,
    _reset_affine,
    _update_running_stats,
)

__all__ = [
    "GroupNorm",
    "InstanceNorm2d",
    "LayerNorm",
    "group_norm_backward",
    "group_norm_forward",
    "instance_norm_backward",
    "instance_norm_forward",
    "layer_norm_backward",
    "layer_norm_forward",
]


def _fast_kernel(be: Any, name: str, x: Any, *params: Any) -> Any:
    """A fast backend's kernel ``name`` (minidl/backend/_numba_norm.py), or None to run the NumPy reference: also
    None for an empty input, or parameters of another dtype than x (the reference's output dtype would follow
    them)."""
    kernel = getattr(be, name, None)
    if kernel is None or x.size == 0 or any(p is not None and p.dtype != x.dtype for p in params):
        return None
    return kernel


# ---------------------------------------------------------------------------------------------- layer norm
def _as_shape(where: str, normalized_shape: Any) -> tuple[int, ...]:
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, Sequence) or isinstance(normalized_shape, str) or len(normalized_shape) == 0:
        raise TypeError(
            f"{where}: normalized_shape must be an int or a non-empty tuple of ints, got {normalized_shape!r}"
        )
    return tuple(check_int(where, "normalized_shape", d) for d in normalized_shape)


def layer_norm_forward(
    x: Any, gamma: Any, beta: Any, normalized_shape: int | Sequence[int], eps: float = 1e-5
) -> tuple[Any, Any]:
    r"""Layer normalization: each sample standardized over its trailing ``normalized_shape`` dimensions.

    Args:
        x: input (*, *normalized_shape).
        gamma, beta: elementwise scale and shift of shape ``normalized_shape``, or None.
        normalized_shape: the trailing dimensions to normalize over (an int for the last one).
        eps: added to the variance. Default: 1e-5.

    Shape:
        - Input: (*, *normalized_shape) - Output: the same; M = prod(normalized_shape) values per group.

    Backward:
        dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) (means over the
        normalized dims); dgamma = sum(dout * xhat), dbeta = sum(dout) over the leading dims.

    Examples:
        >>> import numpy as np
        >>> out, _ = layer_norm_forward(np.array([[1.0, 3.0], [0.0, 10.0]]), None, None, 2, eps=1e-12)
        >>> np.round(out, 6)
        array([[-1.,  1.],
               [-1.,  1.]])
    """
    where = "layer_norm_forward"
    shape = _as_shape(where, normalized_shape)
    be = check_array(where, x, min_ndim=len(shape))
    check_float(where, "eps", eps, low=0.0, low_open=True)
    if tuple(x.shape[x.ndim - len(shape) :]) != shape:
        raise ValueError(
            f"{where}: given normalized_shape={shape}, expected input with shape (*, {', '.join(map(str, shape))}), "
            f"but got input of shape {tuple(x.shape)}"
        )
    _check_vector(where, "gamma", gamma, shape)
    _check_vector(where, "beta", beta, shape)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    kernel = _fast_kernel(be, "layer_norm_fused", x, gamma, beta)
    if kernel is not None:  # statistics + normalize + affine in one pass; x cached instead of xhat
        out, mean, inv_std = kernel(x, gamma, beta, math.prod(shape), eps)
        stats_shape = x.shape[: x.ndim - len(shape)] + (1,) * len(shape)
        return out, (None, inv_std.reshape(stats_shape), gamma, beta, axes, (x, mean.reshape(stats_shape)))
    xhat, _, _, inv_std = _normalize(be.xp, x, axes, eps)
    return _affine(xhat, gamma, beta), (xhat, inv_std, gamma, beta, axes, None)


def layer_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    """Gradients of :func:`layer_norm_forward`: ``(dx, dgamma, dbeta)`` (None for an absent gamma/beta)."""
    xhat, inv_std, gamma, beta, axes, fused = cache
    if fused is not None:  # the forward ran a fast backend's kernel and kept x and the mean
        x, mean = fused
        be = check_array("layer_norm_backward", dout, what="gradient")
        kernel = _fast_kernel(be, "layer_norm_backward_fused", x, gamma, dout)
        if kernel is not None:
            return kernel(dout, x, mean, inv_std, gamma, beta is not None, tuple(x.shape[x.ndim - len(axes) :]))
        xhat = (x - mean) * inv_std
    leading = tuple(range(xhat.ndim - len(axes)))
    normalized_shape = tuple(xhat.shape[xhat.ndim - len(axes) :])
    dgamma, dbeta = _affine_backward(dout, xhat, gamma, beta, leading, normalized_shape)
    dxhat = dout * gamma if gamma is not None else dout
    return _normalize_backward(dxhat, xhat, inv_std, axes), dgamma, dbeta


class LayerNorm(Module):
    r"""Layer normalization: every sample standardized over its last dimensions, then an elementwise affine map.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \odot \gamma + \beta

    with the mean and biased variance over the trailing ``normalized_shape`` dims; the same in training and eval.

    Args:
        normalized_shape: the trailing shape to normalize over (an int means the last dimension).
        eps: added to the variance. Default: 1e-5.
        elementwise_affine: learn gamma (``weight``) and beta (``bias``) of shape ``normalized_shape``.
            Default: True.
        bias: learn beta (when ``elementwise_affine``). Default: True.

    Shape:
        - Input: (*, *normalized_shape) - Output: the same shape.

    Backward:
        dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over the
        normalized dims; dgamma = sum(dout * xhat), dbeta = sum(dout), sums over the leading dims.

    Attributes:
        weight: gamma of shape ``normalized_shape``, initialized to 1.  bias: beta, initialized to 0.

    Examples:
        >>> import numpy as np
        >>> ln = LayerNorm(4)
        >>> ln
        LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)
        >>> y = ln(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32))
        >>> np.round(y, 3)
        array([[-1.342, -0.447,  0.447,  1.342]], dtype=float32)
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.normalized_shape = _as_shape("LayerNorm", normalized_shape)
        self.eps = check_float("LayerNorm", "eps", eps, low=0.0, low_open=True)
        self.elementwise_affine = bool(elementwise_affine)
        _affine_parameters(self, self.normalized_shape, self.elementwise_affine, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's init: weight (gamma) = 1, bias (beta) = 0."""
        _reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.bias is not None}"
        )

    def forward(self, x: Any) -> Any:
        where = f"LayerNorm({self.normalized_shape})"
        k = len(self.normalized_shape)
        check_array(where, x, min_ndim=k, dtype=None if self.weight is None else self.weight.dtype)
        if tuple(x.shape[x.ndim - k :]) != self.normalized_shape:
            raise ValueError(
                f"{where}: expected an input whose last {k} dimension(s) are {self.normalized_shape} "
                f"(shape (*, {', '.join(map(str, self.normalized_shape))})), got shape {tuple(x.shape)}"
            )
        params = [p.data for p in (self.weight, self.bias) if p is not None]
        check_same_device(where, x, *params)
        out, cache = layer_norm_forward(
            x,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.normalized_shape,
            self.eps,
        )
        self._save_for_backward((cache, tuple(x.shape)))
        return out

    def backward(self, dout: Any) -> Any:
        cache, shape = self._pop_cache()
        check_grad_output(f"LayerNorm({self.normalized_shape})", dout, shape)
        dx, dgamma, dbeta = layer_norm_backward(dout, cache)
        if self.weight is not None:
            self.weight.accumulate_grad(dgamma)
        if self.bias is not None:
            self.bias.accumulate_grad(dbeta)
        assert dx.shape == dout.shape
        return dx


# ---------------------------------------------------------------------------------------------- group norm
def group_norm_forward(x: Any, gamma: Any, beta: Any, num_groups: int, eps: float = 1e-5) -> tuple[Any, Any]:
    r"""Group normalization (PyTorch's ``F.group_norm``): each sample's channels standardized in ``num_groups`` groups.

    Args:
        x: input (N, C, *) with C divisible by ``num_groups``.
        gamma, beta: per-channel scale and shift (C,), or None.
        num_groups: G.
        eps: added to the variance. Default: 1e-5.

    Shape:
        - Input: (N, C, *) - Output: the same; M = C / G * prod(*) values per group.

    Backward:
        viewing x as (N, G, M): dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
        with means over M; dgamma = sum(dout * xhat), dbeta = sum(dout) over (N, *).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0, 3.0, 0.0, 10.0]])
        >>> np.round(group_norm_forward(x, None, None, num_groups=2, eps=1e-12)[0], 6)
        array([[-1.,  1., -1.,  1.]])
    """
    where = "group_norm_forward"
    be = check_array(where, x, min_ndim=2)
    G = check_int(where, "num_groups", num_groups)
    check_float(where, "eps", eps, low=0.0, low_open=True)
    N, C = x.shape[0], x.shape[1]
    if C % G != 0:
        raise ValueError(f"{where}: the number of channels ({C}) must be divisible by num_groups ({G})")
    _check_vector(where, "gamma", gamma, (C,))
    _check_vector(where, "beta", beta, (C,))
    gamma_b, beta_b = _channel_view(gamma, x.ndim), _channel_view(beta, x.ndim)
    kernel = _fast_kernel(be, "group_norm_fused", x, gamma, beta)
    if kernel is not None:  # statistics + normalize + affine in one pass; x cached instead of xhat
        out, mean, _, inv_std = kernel(x, gamma, beta, G, eps)
        return out, (None, inv_std.reshape(N, G, 1), gamma_b, beta_b, G, (x, mean.reshape(N, G, 1), gamma))
    x_groups = x.reshape(N, G, x.size // max(N * G, 1))  # (N, G, M)
    xhat_groups, _, _, inv_std = _normalize(be.xp, x_groups, (2,), eps)
    xhat = xhat_groups.reshape(x.shape)
    return _affine(xhat, gamma_b, beta_b), (xhat, inv_std, gamma_b, beta_b, G, None)


def group_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    """Gradients of :func:`group_norm_forward`: ``(dx, dgamma, dbeta)`` (None for an absent gamma/beta)."""
    xhat, inv_std, gamma_b, beta_b, G, fused = cache
    if fused is not None:  # the forward ran a fast backend's kernel and kept x, the mean and gamma
        x, mean, gamma = fused
        be = check_array("group_norm_backward", dout, what="gradient")
        kernel = _fast_kernel(be, "group_norm_backward_fused", x, gamma, dout)
        if kernel is not None:
            return kernel(dout, x, mean, inv_std, gamma, beta_b is not None, G)
        xhat = ((x.reshape(mean.shape[0], G, -1) - mean) * inv_std).reshape(x.shape)
    N, C = xhat.shape[0], xhat.shape[1]
    param_axes = (0,) + tuple(range(2, xhat.ndim))
    dgamma, dbeta = _affine_backward(dout, xhat, gamma_b, beta_b, param_axes, (C,))
    dxhat = dout * gamma_b if gamma_b is not None else dout
    group_shape = (N, G, xhat.size // max(N * G, 1))
    dx = _normalize_backward(dxhat.reshape(group_shape), xhat.reshape(group_shape), inv_std, (2,))
    return dx.reshape(xhat.shape), dgamma, dbeta


class GroupNorm(Module):
    r"""Group normalization (Wu and He, 2018): standardize each sample over groups of channels, batch-independent.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \gamma_c + \beta_c

    with the mean and biased variance over each group of C / G channels (and all positions) of each sample.

    Args:
        num_groups: G, which must divide ``num_channels``.
        num_channels: C.
        eps: added to the variance. Default: 1e-5.
        affine: learn per-channel gamma (``weight``) and beta (``bias``). Default: True.
        bias: (keyword only) learn beta when ``affine``. Default: True.

    Shape:
        - Input: (N, C, *) - Output: the same shape.

    Backward:
        viewing x as (N, G, M): dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat));
        dgamma = sum(dout * xhat), dbeta = sum(dout) over (N, *).

    Attributes:
        weight: gamma (C,), initialized to 1.  bias: beta (C,), initialized to 0.

    Examples:
        >>> import numpy as np
        >>> gn = GroupNorm(2, 4)
        >>> gn
        GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)
        >>> gn(np.ones((3, 4, 5, 5), np.float32)).shape
        (3, 4, 5, 5)
    """

    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *, bias: bool = True
    ) -> None:
        super().__init__()
        self.num_groups = check_int("GroupNorm", "num_groups", num_groups)
        self.num_channels = check_int("GroupNorm", "num_channels", num_channels)
        if self.num_channels % self.num_groups != 0:
            raise ValueError(
                f"GroupNorm: num_channels ({self.num_channels}) must be divisible by num_groups ({self.num_groups})"
            )
        self.eps = check_float("GroupNorm", "eps", eps, low=0.0, low_open=True)
        self.affine = bool(affine)
        C = self.num_channels
        _affine_parameters(self, (C,), self.affine, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's init: weight (gamma) = 1, bias (beta) = 0."""
        _reset_affine(self)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )

    def forward(self, x: Any) -> Any:
        where = f"GroupNorm({self.num_groups}, {self.num_channels})"
        dtype = None if self.weight is None else self.weight.dtype
        check_array(where, x, min_ndim=2, channels=self.num_channels, dtype=dtype)
        check_same_device(where, x, *(p.data for p in (self.weight, self.bias) if p is not None))
        out, cache = group_norm_forward(
            x,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.num_groups,
            self.eps,
        )
        self._save_for_backward((cache, tuple(x.shape)))
        return out

    def backward(self, dout: Any) -> Any:
        cache, shape = self._pop_cache()
        check_grad_output(f"GroupNorm({self.num_groups}, {self.num_channels})", dout, shape)
        dx, dgamma, dbeta = group_norm_backward(dout, cache)
        if self.weight is not None:
            self.weight.accumulate_grad(dgamma)
        if self.bias is not None:
            self.bias.accumulate_grad(dbeta)
        assert dx.shape == dout.shape
        return dx


# ---------------------------------------------------------------------------------------------- instance norm
def instance_norm_forward(
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Any, Any]:
    r"""Instance normalization (PyTorch's ``F.instance_norm``): each (sample, channel) standardized over positions.

    With ``use_input_stats`` the statistics are each instance's own (the same math as group norm with G = C);
    ``running_mean``/``running_var`` (when not None) are then updated in place with the batch average of the
    instances' means and unbiased variances. Without it the running statistics normalize, as in BatchNorm's eval.

    Args:
        x: input (N, C, *) with at least one spatial dimension.
        gamma, beta: per-channel scale and shift (C,), or None.
        running_mean, running_var: (C,) buffers, or None (required when ``use_input_stats`` is False).
        use_input_stats: normalize with the instances' statistics (training, or no running statistics).
            Default: True.
        momentum: weight of the new batch in the running averages, in [0, 1]. Default: 0.1.
        eps: added to the variance. Default: 1e-5.

    Shape:
        - Input: (N, C, *) - Output: the same; M = prod(*) values per instance.

    Backward:
        dxhat = dout * gamma; with input statistics dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
        means over the positions; with running statistics dx = dxhat * inv_std. dgamma = sum(dout * xhat),
        dbeta = sum(dout) over (N, *).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[[1.0, 3.0], [0.0, 10.0]]])  # (N, C, L) = (1, 2, 2)
        >>> np.round(instance_norm_forward(x, None, None, None, None, eps=1e-12)[0], 6)
        array([[[-1.,  1.],
                [-1.,  1.]]])
    """
    where = "instance_norm_forward"
    be = check_array(where, x, min_ndim=3)
    _check_eps_momentum(where, eps, momentum)
    N, C = x.shape[0], x.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        _check_vector(where, name, a, (C,))
    axes = tuple(range(2, x.ndim))
    M = x.size // max(N * C, 1)
    gamma_b, beta_b = _channel_view(gamma, x.ndim), _channel_view(beta, x.ndim)
    if use_input_stats and M <= 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {tuple(x.shape)}")
    kernel = _fast_kernel(be, "group_norm_fused", x, gamma, beta) if use_input_stats else None
    if kernel is not None:  # group norm with G = C: one pass, x cached instead of xhat
        out, mean, var, inv_std = kernel(x, gamma, beta, C, eps)
        _update_running_stats(running_mean, running_var, momentum, mean.reshape(N, C), var.reshape(N, C), M)
        stats_shape = (N, C) + (1,) * len(axes)
        fused = (x, mean.reshape(stats_shape), gamma)
        return out, (None, inv_std.reshape(stats_shape), gamma_b, beta_b, axes, True, fused)
    if use_input_stats:
        xhat, mean, var, inv_std = _normalize(be.xp, x, axes, eps)
        _update_running_stats(running_mean, running_var, momentum, mean.reshape(N, C), var.reshape(N, C), M)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{where}: running_mean and running_var are required when use_input_stats=False")
        inv_std = 1.0 / be.xp.sqrt(_channel_view(running_var, x.ndim) + eps)
        xhat = (x - _channel_view(running_mean, x.ndim)) * inv_std
    return _affine(xhat, gamma_b, beta_b), (xhat, inv_std, gamma_b, beta_b, axes, bool(use_input_stats), None)


def instance_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    """Gradients of :func:`instance_norm_forward`: ``(dx, dgamma, dbeta)`` (None for an absent gamma/beta)."""
    xhat, inv_std, gamma_b, beta_b, axes, use_input_stats, fused = cache
    if fused is not None:  # the forward ran a fast backend's group norm kernel (G = C) and kept x, mean, gamma
        x, mean, gamma = fused
        be = check_array("instance_norm_backward", dout, what="gradient")
        kernel = _fast_kernel(be, "group_norm_backward_fused", x, gamma, dout)
        if kernel is not None:
            return kernel(dout, x, mean, inv_std, gamma, beta_b is not None, x.shape[1])
        xhat = (x - mean) * inv_std
    dgamma, dbeta = _affine_backward(dout, xhat, gamma_b, beta_b, (0,) + axes, (xhat.shape[1],))
    dxhat = dout * gamma_b if gamma_b is not None else dout
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
        >>> bool(np.allclose(y.mean(axis=(2, 3)), 0, atol=1e-5))
        True
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
        check_array(where, x, dtype=self._state_dtype())
        if x.ndim not in (3, 4):
            raise ValueError(
                f"{where}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {tuple(x.shape)} ({x.ndim}-D)"
            )
        C = x.shape[x.ndim - 3]
        if C != self.num_features:
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
        check_same_device(
            where, x, *(p.data for p in (self.weight, self.bias) if p is not None), self.running_mean, self.running_var
        )
        unbatched = x.ndim == 3
        out, cache = instance_norm_forward(
            x[None] if unbatched else x,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.running_mean,
            self.running_var,
            self.training or not self.track_running_stats,
            0.0 if self.momentum is None else self.momentum,
            self.eps,
        )
        self._save_for_backward((cache, tuple(x.shape)))
        return out[0] if unbatched else out

    def backward(self, dout: Any) -> Any:
        cache, shape = self._pop_cache()
        check_grad_output(self._where(), dout, shape)
        unbatched = len(shape) == 3
        dx, dgamma, dbeta = instance_norm_backward(dout[None] if unbatched else dout, cache)
        if self.weight is not None:
            self.weight.accumulate_grad(dgamma)
        if self.bias is not None:
            self.bias.accumulate_grad(dbeta)
        dx = dx[0] if unbatched else dx
        assert dx.shape == dout.shape
        return dx
