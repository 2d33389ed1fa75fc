r"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"): drop a whole residual branch.

In a residual block :math:`y = x + f(x)`, stochastic depth replaces the branch :math:`f(x)` by
:math:`m\, f(x) / (1 - p)` during training, with one Bernoulli draw :math:`m \sim \mathrm{Bernoulli}(1 - p)` per
*sample* (mode ``"row"``: for that sample the block is the identity) or one per *batch* (mode ``"batch"``: the whole
batch skips the branch). Applied to the branch's output ``z`` (any shape (N, \*)):

.. math:: out_{n,\ldots} = \frac{m_n\, z_{n,\ldots}}{1 - p}, \qquad m_n \sim \mathrm{Bernoulli}(1 - p)

(:math:`m_n = m` for every n in mode ``"batch"``). Dividing by the keep probability :math:`1 - p` keeps
:math:`E[out] = z`, so evaluation needs no rescaling (timm's ``scale_by_keep=False`` skips that division; for
:math:`p = 1` every branch is dropped and nothing is divided). In ``eval()`` mode the op is the identity.

Backward: the mask is a constant, so :math:`dz = m \odot dout / (1 - p)`, per sample: a dropped sample's branch
receives no gradient.

Two Modules share the pair ``drop_path_forward`` / ``drop_path_backward``: :class:`DropPath` (timm's name and
signature, ``DropPath(drop_prob=0.0, scale_by_keep=True)``, mode "row") and :class:`StochasticDepth` (torchvision's,
``StochasticDepth(p, mode)``). Masks are drawn on the host from ``minidl.manual_seed``'s generator, as Dropout's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from minidl._random import default_generator
from minidl.nn._checks import check_array, check_float, check_grad_output
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["DropPath", "StochasticDepth", "drop_path_backward", "drop_path_forward"]

_MODES = ("row", "batch")


class DropPathCache(NamedTuple):
    """The cache of :func:`drop_path_forward`."""

    mask: Any  # the bool keep-mask, (N, 1, ..., 1) or (1, ..., 1); None when the forward was the identity
    scale: float  # 1 / (1 - p), or 1 without scale_by_keep or for p = 1
    shape: tuple[int, ...]  # of x (and of the output)
    dtype: Any  # of x


def _check_mode(where: str, mode: Any) -> str:
    if mode not in _MODES:
        raise ValueError(f"{where}: mode must be 'row' (one draw per sample) or 'batch' (one draw), got {mode!r}")
    return mode


def drop_path_forward(
    x: Any, p: float = 0.0, mode: str = "row", training: bool = True, scale_by_keep: bool = True
) -> tuple[Any, Any]:
    r"""Stochastic depth: zero whole samples (``"row"``) or the whole batch (``"batch"``) with probability ``p``.

    .. math:: out_{n,\ldots} = \frac{m_n\, x_{n,\ldots}}{1 - p}, \qquad m_n \sim \mathrm{Bernoulli}(1 - p)

    (one :math:`m` for the batch in mode ``"batch"``; no division without ``scale_by_keep`` or for p = 1).

    Args:
        x: (N, \*), the output of a residual branch.
        p: probability of dropping, in [0, 1]. Default: 0.0.
        mode: ``"row"`` (one draw per sample) or ``"batch"`` (one draw for all). Default: ``"row"``.
        training: False (or p = 0) returns ``x`` itself. Default: True.
        scale_by_keep: divide the kept samples by 1 - p. Default: True.

    Returns:
        ``(out, cache)``; the cache holds the bool keep-mask ((N, 1, ..., 1) or (1, ..., 1)) and the scale.

    Shape:
        - Input: (N, \*).  - Output: the same.
    Backward:
        dx = dout * mask / (1 - p) (:func:`drop_path_backward`).

    Examples:
        >>> import minidl
        >>> _ = minidl.manual_seed(0)
        >>> out, cache = drop_path_forward(np.ones((6, 2)), p=0.5)
        >>> cache.mask.shape, sorted(set(out.ravel().tolist()))  # whole rows: dropped, or kept and doubled
        ((6, 1), [0.0, 2.0])
    """
    where = "drop_path_forward"
    be = check_array(where, x, min_ndim=1)
    p = check_float(where, "drop probability p", p, low=0.0, high=1.0)
    mode = _check_mode(where, mode)
    if not isinstance(training, bool) or not isinstance(scale_by_keep, bool):
        raise TypeError(f"{where}: training and scale_by_keep must be bools, got {training!r} and {scale_by_keep!r}")
    if not training or p == 0:
        return x, DropPathCache(None, 1.0, tuple(x.shape), x.dtype)
    mask_shape = ((x.shape[0],) if mode == "row" else (1,)) + (1,) * (x.ndim - 1)
    keep = default_generator().random(mask_shape, dtype=np.float32) >= p  # P(keep) = 1 - p; never when p = 1
    mask = be.asarray(keep)
    scale = 1.0 / (1.0 - p) if scale_by_keep and p < 1 else 1.0
    out = x * mask
    if scale != 1.0:
        out *= scale
    return out, DropPathCache(mask, scale, tuple(x.shape), x.dtype)


def drop_path_backward(dout: Any, cache: Any) -> Any:
    r"""``dx = dout * mask / (1 - p)``: a dropped sample gets no gradient (``dx = dout`` for the identity).

    .. math:: dx_{n,\ldots} = \frac{m_n\; dout_{n,\ldots}}{1 - p}

    Shape:
        - dout: (N, \*), the shape of x.  - dx: the same.

    Examples:
        >>> import minidl
        >>> _ = minidl.manual_seed(0)
        >>> out, cache = drop_path_forward(np.ones((6, 2)), p=0.5)
        >>> dx = drop_path_backward(np.ones((6, 2)), cache)
        >>> bool((dx == out).all())  # the same mask and scale
        True
    """
    mask, scale, shape, dtype = cache
    check_grad_output("drop_path_backward", dout, shape, dtype)
    if mask is None:
        return dout
    dx = dout * mask
    if scale != 1.0:
        dx *= scale
    return dx


class DropPath(Module):
    r"""Drop path (stochastic depth per sample), timm's ``DropPath``: zero a residual branch for some samples.

    .. math:: y_{n,\ldots} = \frac{m_n\, x_{n,\ldots}}{1 - p}, \quad m_n \sim \mathrm{Bernoulli}(1 - p)
        \ \text{(training)}, \qquad y = x \ \text{(eval)}

    with :math:`p` = ``drop_prob``. Put it on the branch, before the addition: ``x + drop_path(f(x))``.

    Args:
        drop_prob: probability of dropping a sample's branch, in [0, 1]. Default: 0.0.
        scale_by_keep: divide the kept samples by 1 - drop_prob. Default: True.

    Shape:
        - Input: (N, \*).  - Output: the same.
    Backward:
        dx = dout * mask[n] / (1 - p)   (dx = dout in eval mode)

    Examples:
        >>> import minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> drop = nn.DropPath(0.5)
        >>> y = drop(np.ones((4, 3), np.float32))
        >>> bool(((y == 0).all(axis=1) | (y == 2).all(axis=1)).all())  # whole samples
        True
        >>> bool((drop.backward(np.ones_like(y)) == y).all())
        True
    """

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = check_float("DropPath", "drop_prob", drop_prob, low=0.0, high=1.0)
        if not isinstance(scale_by_keep, bool):
            raise TypeError(f"DropPath: scale_by_keep must be a bool, got {scale_by_keep!r}")
        self.scale_by_keep = scale_by_keep

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"  # timm's repr

    def forward(self, x: Any) -> Any:
        out, cache = F.drop_path_forward(x, self.drop_prob, "row", self.training, self.scale_by_keep)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.drop_path_backward(dout, cache)


class StochasticDepth(Module):
    r"""Stochastic depth, torchvision's ``StochasticDepth(p, mode)``: drop a residual branch per sample or per batch.

    .. math:: y_{n,\ldots} = \frac{m_n\, x_{n,\ldots}}{1 - p}, \quad m_n \sim \mathrm{Bernoulli}(1 - p)
        \ \text{(training)}, \qquad y = x \ \text{(eval)}

    with one :math:`m_n` per sample in mode ``"row"`` and one :math:`m` for the whole batch in mode ``"batch"``.

    Args:
        p: probability of dropping, in [0, 1].
        mode: ``"row"`` or ``"batch"``.

    Shape:
        - Input: (N, \*).  - Output: the same.
    Backward:
        dx = dout * mask / (1 - p)   (dx = dout in eval mode)

    Examples:
        >>> import minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> y = nn.StochasticDepth(0.5, "batch")(np.ones((4, 3), np.float32))
        >>> sorted(set(y.ravel().tolist())) in ([0.0], [2.0])  # the whole batch: dropped, or kept and doubled
        True
    """

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = check_float("StochasticDepth", "p", p, low=0.0, high=1.0)
        self.mode = _check_mode("StochasticDepth", mode)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"  # torchvision's repr

    def forward(self, x: Any) -> Any:
        out, cache = F.drop_path_forward(x, self.p, self.mode, self.training)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.drop_path_backward(dout, cache)
