"""What the normalization layers share: the standardize/affine math, argument checks, and the per-channel base.

BatchNorm (:mod:`minidl.nn.normalization`), LocalResponseNorm (:mod:`minidl.nn.normalization_local`) and
LayerNorm, GroupNorm and InstanceNorm (:mod:`minidl.nn.normalization_group`) all use these; the derivation of the
shared backward is at the top of :mod:`minidl.nn.normalization`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl._dtype import get_default_dtype
from minidl.backend import get_array_module, get_backend
from minidl.nn import init
from minidl.nn._checks import check_array, check_float, check_int, check_params
from minidl.nn.module import Module, Parameter


# ---------------------------------------------------------------------------------------------- shared math
def _normalize(xp: Any, x: Any, axes: tuple[int, ...], eps: float) -> tuple[Any, Any, Any, Any]:
    """Standardize ``x`` over ``axes``: returns ``xhat, mean, var, inv_std`` (the statistics with keepdims)."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)  # biased: divide by M
    inv_std = 1.0 / xp.sqrt(var + eps)
    return xc * inv_std, mean, var, inv_std


def channel_sums(y: Any, sums: Any) -> None:
    r"""Fill rows 1 and 2 of ``sums`` (3, C) float64 with the sums, per channel (axis 1) over every other axis of
    y, of d = y - s and d^2, s = sums[0] the channel's shift (y's values converted to float64 first):

    .. math:: S_1 = \sum (y - s), \qquad S_2 = \sum (y - s)^2

    what a BatchNorm of y needs for its statistics (:func:`statistics_from_sums`); a shift near the channel's mean
    keeps the variance's digits (:func:`sums_keep_the_variance`). ``conv2d_forward``'s ``channel_sums`` (the
    reference; the Numba backend's F(4x4, 3x3) adds them up in its compiled loops as its output pass writes a
    ``channels_last`` y, its other algorithms sum y in one pass after)."""
    xp = get_array_module(y)
    axes = (0,) + tuple(range(2, y.ndim))
    d = y.astype(xp.float64) - _channel_view(sums[0], y.ndim)
    sums[1] = d.sum(axis=axes)
    sums[2] = (d * d).sum(axis=axes)


def statistics_from_sums(sums: Any, M: int) -> tuple[Any, Any]:
    r"""``(mean, var)`` per channel (float64) from the :func:`channel_sums` of M values each: with m = S_1 / M,

    .. math:: \mu = s + m, \qquad \sigma^2 = \max(S_2 / M - m^2,\; 0)

    (the biased variance: the mean of (y - s)^2 less the square of the mean of y - s)."""
    xp = get_array_module(sums)
    m = sums[1] / M
    return sums[0] + m, xp.maximum(sums[2] / M - m * m, 0.0)


def sums_keep_the_variance(sums: Any, M: int, eps: float, dtype: Any) -> bool:
    r"""Whether the :func:`channel_sums` of M values per channel, around their shifts, keep the digits of the
    variance in :func:`statistics_from_sums`: in every channel the squared mean of y - s at most L times the
    variance plus ``eps`` (what the normalization divides by),

    .. math:: (S_1 / M)^2 \le L \, \big(S_2 / M - (S_1 / M)^2 + \varepsilon\big)

    with L = 10^6 for float32 (and float16) results, 10^2 for float64 ones: the difference of the two float64 terms
    then keeps about 10 (14) of their 16 digits, more than the results' dtype holds. A shift further from the mean (a
    running mean far from the batch's, after the data shifted, or outputs that sit far from 0 at the first step)
    loses them, and a NaN or an inf in the sums fails the test too."""
    if M < 2:
        return False
    xp = get_array_module(sums)
    limit = 1e6 if np.dtype(dtype).itemsize <= 4 else 1e2
    with np.errstate(invalid="ignore", over="ignore"):  # (an inf in the sums: a NaN compares False)
        m = sums[1] / M
        return bool(xp.all(m * m <= limit * (sums[2] / M - m * m + eps)))


def sums_argument(channel_sums: Any) -> dict[str, Any]:
    """``{"channel_sums": channel_sums}``, or ``{}`` for None: what a fused pair passes on to the BatchNorm pair it is
    built from (``F.batch_norm_forward``; a replaced one, which need not take the argument, gets none, as the
    module asks for sums only where the pairs are minidl's)."""
    return {} if channel_sums is None else {"channel_sums": channel_sums}


def _normalize_with(xp: Any, x: Any, mean: Any, var: Any, eps: float) -> tuple[Any, Any, Any, Any]:
    """:func:`_normalize` with the statistics given, ``mean`` and ``var`` (C,) per channel (axis 1), in x's dtype:
    returns ``xhat, mean, var, inv_std`` as it does (keepdims)."""
    mean, var = (_channel_view(v.astype(x.dtype), x.ndim) for v in (mean, var))
    inv_std = 1.0 / xp.sqrt(var + eps)
    return (x - mean) * inv_std, mean, var, inv_std


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


def _check_eps_momentum(where: str, eps: float, momentum: float) -> None:
    check_float(where, "eps", eps, low=0.0, low_open=True)
    check_float(where, "momentum", momentum, low=0.0, high=1.0)


def _check_statistics_call(
    where: str, input: Any, min_ndim: int, running_mean: Any, running_var: Any, weight: Any, bias: Any,
    momentum: float, eps: float, own_stats: bool, flag: str, unit: str,
) -> None:  # fmt: skip
    """The checks batch_norm_forward and instance_norm_forward share: the input and its per-channel vectors, eps and
    momentum; with the input's own statistics (``flag`` true) more than one value per ``unit`` (a channel, an
    instance: the variance of one value is 0); without them, the running statistics."""
    check_array(where, input, min_ndim=min_ndim)
    C = input.shape[1]
    check_params(where, input, (C,), weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    _check_eps_momentum(where, eps, momentum)
    if not isinstance(own_stats, (bool, np.bool_)):  # (a truthy string or a None would pick a mode silently)
        raise TypeError(f"{where}: {flag} must be a bool, got {own_stats!r}")
    if (running_mean is None) != (running_var is None):  # (PyTorch refuses it too: half the statistics updated)
        given, missing = ("running_mean", "running_var") if running_var is None else ("running_var", "running_mean")
        raise ValueError(
            f"{where}: running_mean and running_var must both be None or both be arrays, got {given} and {missing}=None"
        )
    if own_stats:
        positions = math.prod(input.shape[2:])  # the values per instance (per channel: N times as many)
        per_unit = positions * (input.shape[0] if unit == "channel" else 1)
        if per_unit <= 1:
            what = "value per channel" if unit == "channel" else "spatial element"
            raise ValueError(
                f"{where}: expected more than 1 {what} when training, got input shape {tuple(input.shape)} "
                f"({per_unit} {'values per channel' if unit == 'channel' else 'spatial elements per instance'})"
            )
        if unit == "instance" and input.shape[0] == 0 and (running_mean is not None or running_var is not None):
            raise ValueError(
                f"{where}: got an empty batch (input shape {tuple(input.shape)}): it has no statistics to update "
                "running_mean and running_var with; skip the empty batch"
            )
    elif running_mean is None or running_var is None:
        raise ValueError(f"{where}: running_mean and running_var are required when {flag}=False")


def _update_running(running: Any, momentum: float, value: Any) -> None:
    """running <- (1 - momentum) * running + momentum * value, in place (keeping the buffer's dtype)."""
    running[...] = (1.0 - momentum) * running + momentum * value


def _update_running_stats(running_mean: Any, running_var: Any, momentum: float, mean: Any, var: Any, M: int) -> None:
    """Update the running statistics (both None, or both arrays) from a batch's mean and biased variance over M
    values each: (C,) per channel, or (N, C) per sample (InstanceNorm: then averaged over the samples, as PyTorch
    does). The running variance gets the unbiased var * M / (M - 1)."""
    if running_mean is not None:
        _update_running(running_mean, momentum, mean if mean.ndim == 1 else mean.mean(axis=0))
    if running_var is not None:
        unbiased = var * (M / (M - 1))
        _update_running(running_var, momentum, unbiased if unbiased.ndim == 1 else unbiased.mean(axis=0))


def _affine_parameters(module: Module, shape: tuple[int, ...], affine: bool, bias: bool) -> None:
    """Register gamma (``weight``) and beta (``bias``) of ``shape`` on ``module``, or None placeholders."""
    xp, dtype = get_backend().xp, get_default_dtype()
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
        be, dtype, C = get_backend(), get_default_dtype(), self.num_features
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
