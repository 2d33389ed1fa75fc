r"""Per-sample normalization: LayerNorm and GroupNorm (InstanceNorm, the case G = C, is in
:mod:`minidl.nn.normalization_instance`).

Each sample is standardized on its own, so samples never mix and training and eval agree (unless InstanceNorm
tracks running statistics). LayerNorm standardizes over the trailing ``normalized_shape`` dims with an
elementwise affine map. GroupNorm splits the C channels into G groups of C / G and standardizes each group over
its channels and positions (M = C / G * H * W values); InstanceNorm is the case G = C (M = H * W), and LayerNorm
over (C, H, W) the case G = 1 (but with an elementwise rather than per-channel gamma, beta).

Backward: the shared closed form derived in :mod:`minidl.nn.normalization`, with the means over each group:

    dxhat = dout * gamma;  dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

and dgamma = sum(dout * xhat), dbeta = sum(dout) over every axis gamma is broadcast along.

The pairs take PyTorch's argument orders (``F.layer_norm(input, normalized_shape, weight, bias, eps)``, ...) and are
marked ``@kernel``: the Numba backend's kernels (``minidl/backend/_numba_norm.py``) compute statistics,
normalization and affine map in one pass, keeping x and the per-group mean and inv_std instead of xhat. The NumPy
code here is the reference they are tested against.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

from minidl.backend import get_array_module
from minidl.nn._checks import check_array, check_float, check_grad_output, check_int, check_layout, check_params
from minidl.nn._norm_common import (
    _affine,
    _affine_backward,
    _affine_parameters,
    _channel_view,
    _normalize,
    _normalize_backward,
    _reset_affine,
)
from minidl.nn.dispatch import F, kernel
from minidl.nn.module import Module

__all__ = [
    "GroupNorm",
    "LayerNorm",
    "group_norm_backward",
    "group_norm_forward",
    "layer_norm_backward",
    "layer_norm_forward",
]


class NormCache(NamedTuple):
    """The cache of the per-sample norms (:func:`layer_norm_forward`, :func:`group_norm_forward`,
    :func:`instance_norm_forward`)."""

    xhat: Any  # (x - mean) * inv_std, the shape of x
    inv_std: Any  # broadcastable to the groups' layout
    gamma: Any  # the weight, broadcastable to x (or None)
    beta: Any  # the bias, broadcastable to x (or None)
    groups: Any  # LayerNorm: the normalized axes; GroupNorm: G; InstanceNorm: the spatial axes
    input_stats: bool  # the statistics are the input's (False: InstanceNorm with running statistics)


# ---------------------------------------------------------------------------------------------- layer norm
def _as_shape(where: str, normalized_shape: Any) -> tuple[int, ...]:
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, Sequence) or isinstance(normalized_shape, str) or len(normalized_shape) == 0:
        raise TypeError(
            f"{where}: normalized_shape must be an int or a non-empty tuple of ints, got {normalized_shape!r}"
        )
    return tuple(check_int(where, "normalized_shape", d) for d in normalized_shape)


def _layer_norm_setup(
    input: Any, normalized_shape: int | Sequence[int], weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> tuple[int, ...]:
    """Check :func:`layer_norm_forward`'s arguments; return ``normalized_shape`` as a tuple."""
    where = "layer_norm_forward"
    shape = _as_shape(where, normalized_shape)
    check_array(where, input, min_ndim=len(shape))
    if tuple(input.shape[input.ndim - len(shape) :]) != shape:
        raise ValueError(
            f"{where}: expected an input whose last {len(shape)} dimension(s) are {shape} "
            f"(shape (*, {', '.join(map(str, shape))})), got shape {tuple(input.shape)}"
        )
    check_params(where, input, shape, weight=weight, bias=bias)
    check_float(where, "eps", eps, low=0.0, low_open=True)
    return shape


@kernel("layer_norm", setup=_layer_norm_setup)
def layer_norm_forward(
    input: Any, normalized_shape: int | Sequence[int], weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> tuple[Any, Any]:
    r"""Layer normalization: each sample standardized over its trailing ``normalized_shape`` dimensions
    (PyTorch's ``F.layer_norm``, same arguments).

    .. math:: out = \gamma \odot \hat x + \beta, \qquad \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}

    with :math:`\mu, \sigma^2` (biased) over the trailing ``normalized_shape`` dims of each sample, and
    :math:`\gamma, \beta` elementwise of shape ``normalized_shape`` (1 and 0 when None).

    Args:
        input: x, (\*, \*normalized_shape).
        normalized_shape: the trailing dimensions to normalize over (an int for the last one).
        weight, bias: elementwise scale gamma and shift beta of shape ``normalized_shape``, or None. Default: None.
        eps: added to the variance. Default: 1e-5.

    Shape:
        - Input: (\*, \*normalized_shape) - Output: the same; M = prod(normalized_shape) values per group.

    Backward:
        dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) (means over the
        normalized dims); dgamma = sum(dout * xhat), dbeta = sum(dout) over the leading dims.

    Examples:
        >>> import numpy as np
        >>> out, _ = layer_norm_forward(np.array([[1.0, 3.0], [0.0, 10.0]]), 2, eps=1e-12)
        >>> np.round(out, 6)
        array([[-1.,  1.],
               [-1.,  1.]])
    """
    shape = _layer_norm_setup(input, normalized_shape, weight, bias, eps)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    xhat, _, _, inv_std = _normalize(get_array_module(input), input, axes, eps)
    return _affine(xhat, weight, bias), NormCache(xhat, inv_std, weight, bias, axes, True)


@kernel("layer_norm")
def layer_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`layer_norm_forward`: ``(dx, dweight, dbias)`` (None for an absent weight/bias).

    Bars are means over the normalized dims of each sample; the parameter sums run over the leading dims:

    .. math::

        dx = inv\_std \Big(d\hat x - \overline{d\hat x} - \hat x\, \overline{d\hat x\, \hat x}\Big), \qquad
        d\hat x = \gamma\, dout, \qquad d\gamma = \sum dout\, \hat x, \qquad d\beta = \sum dout

    Shape:
        - dout: (\*, \*normalized_shape).  - dx: the same; dweight, dbias: ``normalized_shape``.

    Examples:
        >>> import numpy as np
        >>> out, cache = layer_norm_forward(np.array([[1.0, 2.0, 6.0]]), 3, np.ones(3), np.zeros(3))
        >>> np.round(out, 4)  # mean 3, biased variance 14/3
        array([[-0.9258, -0.4629,  1.3887]])
        >>> dx, dweight, dbias = layer_norm_backward(np.array([[1.0, 0.0, 0.0]]), cache)
        >>> np.round(dx, 4), np.round(dweight, 4) + 0.0, dbias
        (array([[ 0.1763, -0.2204,  0.0441]]), array([-0.9258,  0.    ,  0.    ]), array([1., 0., 0.]))
    """
    xhat, inv_std, gamma, beta, axes, _ = cache
    check_grad_output("layer_norm_backward", dout, xhat.shape, xhat.dtype)
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
        - Input: (\*, \*normalized_shape) - Output: the same shape.

    Backward:
        dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over the
        normalized dims; dgamma = sum(dout * xhat), dbeta = sum(dout), sums over the leading dims.

    Attributes:
        weight: gamma of shape ``normalized_shape``, initialized to 1.
        bias: beta of shape ``normalized_shape``, initialized to 0.

    Examples:
        >>> import numpy as np
        >>> ln = LayerNorm(4)
        >>> ln
        LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)
        >>> y = ln(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32))
        >>> np.round(y, 3)
        array([[-1.342, -0.447,  0.447,  1.342]], dtype=float32)
        >>> ln.backward(np.ones_like(y)).shape, ln.weight.grad.shape
        ((1, 4), (4,))
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

    def _where(self) -> str:
        return f"LayerNorm({self.normalized_shape})"

    def forward(self, x: Any) -> Any:
        weight = None if self.weight is None else self.weight.data
        bias = None if self.bias is None else self.bias.data
        out, cache = F.layer_norm_forward(x, self.normalized_shape, weight, bias, self.eps)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dgamma, dbeta = F.layer_norm_backward(dout, cache)
        _accumulate_affine(self, dgamma, dbeta)
        return dx


def _accumulate_affine(module: Module, dgamma: Any, dbeta: Any) -> None:
    """Add a norm's weight and bias gradients to its parameters (those it has)."""
    if module.weight is not None:
        module.weight.accumulate_grad(dgamma)
    if module.bias is not None:
        module.bias.accumulate_grad(dbeta)


# ---------------------------------------------------------------------------------------------- group norm
def _group_norm_setup(input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> int:
    """Check :func:`group_norm_forward`'s arguments; return G."""
    where = "group_norm_forward"
    check_array(where, input, min_ndim=2)
    G = check_int(where, "num_groups", num_groups)
    C = input.shape[1]
    if C % G != 0:
        raise ValueError(f"{where}: the number of channels ({C}) must be divisible by num_groups ({G})")
    check_params(where, input, (C,), weight=weight, bias=bias)
    check_float(where, "eps", eps, low=0.0, low_open=True)
    return G


@kernel("group_norm", setup=_group_norm_setup)
def group_norm_forward(
    input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> tuple[Any, Any]:
    r"""Group normalization (PyTorch's ``F.group_norm``, same arguments): each sample's channels standardized in
    ``num_groups`` groups.

    .. math:: out = \gamma \odot \hat x + \beta, \qquad \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}

    with :math:`\mu, \sigma^2` (biased) over each group of C / G channels and all positions of each sample, and
    :math:`\gamma_c, \beta_c` per channel (1 and 0 when None).

    Args:
        input: x, (N, C, \*) with C divisible by ``num_groups``.
        num_groups: G.
        weight, bias: per-channel scale gamma and shift beta (C,), or None. Default: None.
        eps: added to the variance. Default: 1e-5.

    Shape:
        - Input: (N, C, \*) - Output: the same; M = C / G * prod(\*) values per group.

    Backward:
        viewing x as (N, G, M): dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
        with means over M; dgamma = sum(dout * xhat), dbeta = sum(dout) over (N, \*).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1.0, 3.0, 0.0, 10.0]])
        >>> np.round(group_norm_forward(x, num_groups=2, eps=1e-12)[0], 6)
        array([[-1.,  1., -1.,  1.]])
    """
    G = _group_norm_setup(input, num_groups, weight, bias, eps)
    x, N = input, input.shape[0]
    x_groups = x.reshape(N, G, x.size // max(N * G, 1))  # (N, G, M)
    xhat_groups, _, _, inv_std = _normalize(get_array_module(x), x_groups, (2,), eps)
    xhat = xhat_groups.reshape(x.shape)
    gamma, beta = _channel_view(weight, x.ndim), _channel_view(bias, x.ndim)
    return _affine(xhat, gamma, beta), NormCache(xhat, inv_std, gamma, beta, G, True)


@kernel("group_norm")
def group_norm_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`group_norm_forward`: ``(dx, dweight, dbias)`` (None for an absent weight/bias).

    Viewing x as (N, G, M), bars are means over the M values of each group; the parameter sums run over (N, \*):

    .. math::

        dx = inv\_std \Big(d\hat x - \overline{d\hat x} - \hat x\, \overline{d\hat x\, \hat x}\Big), \qquad
        d\hat x = \gamma\, dout, \qquad d\gamma = \sum dout\, \hat x, \qquad d\beta = \sum dout

    Shape:
        - dout: (N, C, \*).  - dx: (N, C, \*); dweight, dbias: (C,).

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(2, 4, 3))
        >>> out, cache = group_norm_forward(x, 2, np.ones(4), np.zeros(4))
        >>> dx, dweight, dbias = group_norm_backward(np.ones_like(out), cache)  # a constant shift: dx = 0
        >>> dx.shape, bool(np.allclose(dx, 0)), dbias
        ((2, 4, 3), True, array([6., 6., 6., 6.]))
    """
    xhat, inv_std, gamma, beta, G, _ = cache
    check_grad_output("group_norm_backward", dout, xhat.shape, xhat.dtype)
    N, C = xhat.shape[0], xhat.shape[1]
    param_axes = (0,) + tuple(range(2, xhat.ndim))
    dgamma, dbeta = _affine_backward(dout, xhat, gamma, beta, param_axes, (C,))
    dxhat = dout * gamma if gamma is not None else dout
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
        - Input: (N, C, \*) - Output: the same shape.

    Backward:
        viewing x as (N, G, M): dxhat = dout * gamma; dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat));
        dgamma = sum(dout * xhat), dbeta = sum(dout) over (N, \*).

    Attributes:
        weight: gamma (C,), initialized to 1.
        bias: beta (C,), initialized to 0.

    Examples:
        >>> import numpy as np
        >>> gn = GroupNorm(2, 4)
        >>> gn
        GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)
        >>> y = gn(np.random.default_rng(0).normal(size=(3, 4, 5, 5)).astype(np.float32))
        >>> y.shape, gn.backward(np.ones_like(y)).shape, gn.bias.grad
        ((3, 4, 5, 5), (3, 4, 5, 5), array([75., 75., 75., 75.], dtype=float32))
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

    def _where(self) -> str:
        return f"GroupNorm({self.num_groups}, {self.num_channels})"

    def forward(self, x: Any) -> Any:
        check_layout(self._where(), x, channels=self.num_channels)
        weight = None if self.weight is None else self.weight.data
        bias = None if self.bias is None else self.bias.data
        out, cache = F.group_norm_forward(x, self.num_groups, weight, bias, self.eps)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dgamma, dbeta = F.group_norm_backward(dout, cache)
        _accumulate_affine(self, dgamma, dbeta)
        return dx
