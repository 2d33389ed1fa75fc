r"""LayerScale (Touvron et al. 2021, "Going deeper with Image Transformers", CaiT): a learned per-feature scale.

A residual branch :math:`f(x)` is multiplied by a learned vector :math:`\gamma` of one value per feature, started
small (``init_values=1e-5``), so that a deep network begins close to the identity:
:math:`y = x + \gamma \odot f(x)`. The op is a broadcast multiply along one axis ``dim`` of its input ``x``
(of size D, :math:`\gamma` of shape (D,)):

.. math:: out_{\ldots, d, \ldots} = \gamma_d\; x_{\ldots, d, \ldots}

Backward: out is linear in x and in :math:`\gamma`, so

.. math:: dx_{\ldots, d, \ldots} = \gamma_d\; dout_{\ldots, d, \ldots}, \qquad
    d\gamma_d = \sum_{\text{all indices but } d} dout_{\ldots, d, \ldots}\; x_{\ldots, d, \ldots}

(:math:`\gamma_d` multiplies every element of slice d, so its gradient sums over all of them).

:class:`LayerScale` is timm's (``LayerScale(dim, init_values=1e-5)``, parameter ``gamma``, the last axis: a
transformer's (N, L, D) tokens or a channels-last (N, H, W, C) map). For a per-channel scale of an (N, C, H, W)
map, torchvision's ConvNeXt ``CNBlock.layer_scale`` (stored there with shape (C, 1, 1)), either apply
``LayerScale(C)`` while the block is still channels-last, before its permute back (as timm's ConvNeXt does), or call
the pair on the channel axis: ``F.layer_scale_forward(x, gamma, dim=1)`` with a (C,) ``gamma`` (a torchvision
(C, 1, 1) weight is ``weight.reshape(C)``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl._dtype import get_default_dtype
from minidl.backend import get_backend
from minidl.nn import init
from minidl.nn._checks import (
    _check_parameter_dtype,
    _is_int,
    check_array,
    check_float,
    check_grad_output,
    check_int,
    check_same_device,
)
from minidl.nn.dispatch import F
from minidl.nn.module import Module, Parameter

__all__ = ["LayerScale", "layer_scale_backward", "layer_scale_forward"]


class LayerScaleCache(NamedTuple):
    """The cache of :func:`layer_scale_forward`."""

    x: Any
    gamma: Any
    dim: int  # the axis of x that gamma runs along, in [0, x.ndim)


def _broadcast(gamma: Any, ndim: int, dim: int) -> Any:
    """gamma (D,) reshaped to (1, ..., D, ..., 1) with D on axis ``dim`` of an ``ndim``-D array."""
    return gamma.reshape((1,) * dim + (-1,) + (1,) * (ndim - dim - 1))


def layer_scale_forward(x: Any, gamma: Any, dim: int = -1) -> tuple[Any, Any]:
    r"""``out = x * gamma`` with ``gamma`` (D,) along axis ``dim`` of ``x`` (timm's LayerScale: the last axis).

    .. math:: out_{\ldots, d, \ldots} = \gamma_d\; x_{\ldots, d, \ldots}

    Args:
        x: any shape with ``x.shape[dim] == D``.
        gamma: (D,).
        dim: the axis of ``x`` that ``gamma`` scales. Default: -1 (use 1 for the channels of (N, C, H, W)).

    Returns:
        ``(out, cache)``: out of the shape of x; the cache holds ``(x, gamma, dim)``.

    Shape:
        - Input: (\*, D, \*) with D on axis ``dim``.  - Output: the same.
    Backward:
        dx = dout * gamma;  dgamma = sum of dout * x over every axis but ``dim`` (:func:`layer_scale_backward`).

    Examples:
        >>> out, cache = layer_scale_forward(np.ones((2, 3)), np.array([1.0, 2.0, 3.0]))
        >>> out
        array([[1., 2., 3.],
               [1., 2., 3.]])
    """
    where = "layer_scale_forward"
    check_array(where, x, min_ndim=1)
    check_same_device(where, x, gamma)
    check_array(where, gamma, ndim=1, what="gamma")
    _check_parameter_dtype(where, x, gamma.dtype)
    if not _is_int(dim) or not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"{where}: dim must be an int in [{-x.ndim}, {x.ndim - 1}] for a {x.ndim}-D input, got {dim!r}"
        )
    dim = int(dim) % x.ndim
    if x.shape[dim] != gamma.shape[0]:
        raise ValueError(
            f"{where}: expected the input's dimension {dim} to have size {gamma.shape[0]} (the length of gamma), "
            f"got shape {tuple(x.shape)}"
        )
    return x * _broadcast(gamma, x.ndim, dim), LayerScaleCache(x, gamma, dim)


def layer_scale_backward(dout: Any, cache: Any, *, gamma_grad: bool = True) -> tuple[Any, Any | None]:
    r"""Gradients of :func:`layer_scale_forward`: ``(dx, dgamma)`` (``dgamma`` None when ``gamma_grad`` is False).

    .. math:: dx_{\ldots, d, \ldots} = \gamma_d\; dout_{\ldots, d, \ldots}, \qquad
        d\gamma_d = \sum_{\text{all indices but } d} dout_{\ldots, d, \ldots}\; x_{\ldots, d, \ldots}

    Shape:
        - dout: the shape of x.  - dx: the same; dgamma: (D,).

    Examples:
        >>> out, cache = layer_scale_forward(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([10.0, 100.0]))
        >>> layer_scale_backward(np.ones((2, 2)), cache)
        (array([[ 10., 100.],
               [ 10., 100.]]), array([4., 6.]))
    """
    x, gamma, dim = cache
    check_grad_output("layer_scale_backward", dout, x.shape, x.dtype)
    dx = dout * _broadcast(gamma, x.ndim, dim)
    dgamma = None
    if gamma_grad:
        dgamma = (dout * x).sum(axis=tuple(a for a in range(x.ndim) if a != dim))
    return dx, dgamma


class LayerScale(Module):
    r"""A learned scale per feature of the last axis (timm's ``LayerScale``; CaiT, Touvron et al. 2021).

    .. math:: y_{\ldots, d} = \gamma_d\; x_{\ldots, d}

    Used on a residual branch, ``x + ls(f(x))``, with small ``init_values`` so the block starts near the identity.
    For the channels of an (N, C, H, W) map (ConvNeXt), see :mod:`minidl.nn.layer_scale`.

    Args:
        dim: D, the size of the last axis of the input.
        init_values: the initial value of every :math:`\gamma_d`. Default: 1e-5.
        inplace: accepted for timm compatibility; minidl never overwrites the input. Default: False.

    Attributes:
        gamma: (D,), filled with ``init_values``.

    Shape:
        - Input: (\*, D).  - Output: the same.
    Backward:
        dx = dout * gamma;  dgamma += sum of dout * x over every axis but the last.

    Examples:
        >>> from minidl import nn
        >>> ls = nn.LayerScale(3, init_values=0.5)
        >>> y = ls(np.ones((2, 4, 3), np.float32))
        >>> y[0, 0]
        array([0.5, 0.5, 0.5], dtype=float32)
        >>> ls.backward(np.ones_like(y)).shape, ls.gamma.grad
        ((2, 4, 3), array([8., 8., 8.], dtype=float32))
    """

    def __init__(self, dim: int, init_values: float = 1e-5, inplace: bool = False) -> None:
        super().__init__()
        self.dim = check_int("LayerScale", "dim", dim)
        self.init_values = check_float("LayerScale", "init_values", init_values)
        if not isinstance(inplace, bool):
            raise TypeError(f"LayerScale: inplace must be a bool, got {inplace!r}")
        self.inplace = inplace
        self.gamma = Parameter(get_backend().xp.empty((self.dim,), dtype=get_default_dtype()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every gamma_d = init_values (timm's ``init_values * torch.ones(dim)``)."""
        init.constant_(self.gamma, self.init_values)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, init_values={self.init_values}"

    def forward(self, x: Any) -> Any:
        out, cache = F.layer_scale_forward(x, self.gamma.data, -1)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dgamma = F.layer_scale_backward(dout, cache, gamma_grad=self.gamma.requires_grad)
        if dgamma is not None:
            self.gamma.accumulate_grad(dgamma)
        return dx
