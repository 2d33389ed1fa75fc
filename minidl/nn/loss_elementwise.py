r"""Elementwise losses: MSE, L1, smooth L1, binary cross-entropy (on logits or probabilities), KL divergence.

Each compares ``input`` and ``target`` of the same shape term by term, :math:`\ell_i = f(x_i, y_i)`, then reduces.
The cache is the local derivative :math:`\partial \ell_i / \partial x_i`, so every backward is the same line:
:math:`dx = \partial \ell / \partial x \odot g`, with g = dout (sum), dout / numel (mean) or dout itself (none).

======================  =============================================  ================================================
loss                    :math:`\ell_i`                                 :math:`\partial \ell_i / \partial x_i`
======================  =============================================  ================================================
mse                     :math:`(x - y)^2`                              :math:`2 (x - y)`
l1                      :math:`|x - y|`                                :math:`\mathrm{sign}(x - y)`
smooth l1 (beta)        :math:`d^2 / 2\beta` if :math:`|d| < \beta`    :math:`d / \beta` or :math:`\mathrm{sign}(d)`
                        else :math:`|d| - \beta / 2`
bce with logits         :math:`y\,\mathrm{sp}(-x) + (1-y)\,\mathrm{sp}(x)`  :math:`\sigma(x) - y`
bce                     :math:`-y \log p - (1 - y) \log(1 - p)`        :math:`(p - y) / (p (1 - p))`
kl div (input log q)    :math:`p (\log p - \log q)`                    :math:`-p`
======================  =============================================  ================================================

(sp = softplus, :math:`\log(1 + e^x)`: the logits form never takes the log of a rounded-to-0 sigmoid.)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from minidl.nn._checks import check_array, check_float
from minidl.nn._loss_common import _as_target, _buffer, _check_reduction, _float_target, _Loss, _reduce, _reduced_dout
from minidl.nn.dispatch import F

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "SmoothL1Loss",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_forward",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward",
    "kl_div_backward",
    "kl_div_forward",
    "l1_loss_backward",
    "l1_loss_forward",
    "mse_loss_backward",
    "mse_loss_forward",
    "smooth_l1_loss_backward",
    "smooth_l1_loss_forward",
]


def _elementwise(where: str, input: Any, target: Any, reduction: str, allowed=("none", "mean", "sum")):
    _check_reduction(where, reduction, allowed)
    be = check_array(where, input)
    return be.xp, _float_target(where, be, input, target)


def _finish(xp: Any, losses: Any, local_grad: Any, reduction: str, denominator: float | None = None):
    denominator = float(losses.size) if denominator is None else denominator
    cache = ElementwiseLossCache(local_grad, reduction, denominator, tuple(losses.shape))
    return _reduce(xp, losses, reduction, denominator), cache


class ElementwiseLossCache(NamedTuple):
    """The cache of an elementwise loss: its local derivative and how it was reduced."""

    local_grad: Any  # d loss_i / d input_i
    reduction: str
    denominator: float  # of the mean
    shape: tuple[int, ...]  # of the per-term losses (what reduction "none" returns)


def _elementwise_backward(where: str, dout: Any, cache: Any) -> Any:
    local_grad, reduction, denominator, shape = cache
    return local_grad * _reduced_dout(where, dout, reduction, denominator, shape)


def mse_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """``(input - target)^2`` reduced. Cache: the local derivative ``2 (input - target)``."""
    xp, target = _elementwise("mse_loss_forward", input, target, reduction)
    diff = input - target
    return _finish(xp, diff * diff, 2 * diff, reduction)


def mse_loss_backward(dout: Any, cache: Any) -> Any:
    """``dinput = 2 (input - target) * g`` (g = dout / numel for the mean)."""
    return _elementwise_backward("mse_loss_backward", dout, cache)


def l1_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    """``|input - target|`` reduced. Cache: ``sign(input - target)`` (0 at equality, as in PyTorch)."""
    xp, target = _elementwise("l1_loss_forward", input, target, reduction)
    diff = input - target
    return _finish(xp, xp.abs(diff), xp.sign(diff), reduction)


def l1_loss_backward(dout: Any, cache: Any) -> Any:
    """``dinput = sign(input - target) * g``."""
    return _elementwise_backward("l1_loss_backward", dout, cache)


def smooth_l1_loss_forward(input: Any, target: Any, reduction: str = "mean", beta: float = 1.0) -> tuple[Any, Any]:
    """Huber-like: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (d = input - target).

    ``beta = 0`` is the L1 loss. Cache: the local derivative ``d / beta`` or ``sign(d)``.
    """
    where = "smooth_l1_loss_forward"
    beta = check_float(where, "beta", beta, low=0.0)
    xp, target = _elementwise(where, input, target, reduction)
    d = input - target
    ad = xp.abs(d)
    if beta == 0:
        return _finish(xp, ad, xp.sign(d), reduction)
    quadratic = ad < beta
    losses = xp.where(quadratic, 0.5 * d * d / beta, ad - 0.5 * beta)
    return _finish(xp, losses, xp.where(quadratic, d / beta, xp.sign(d)), reduction)


def smooth_l1_loss_backward(dout: Any, cache: Any) -> Any:
    """``dinput = g * (d / beta if |d| < beta else sign(d))``."""
    return _elementwise_backward("smooth_l1_loss_backward", dout, cache)


def _broadcast_weight(where: str, be: Any, name: str, value: Any, input: Any) -> Any:
    if value is None:
        return None
    value = _as_target(where, be, value)
    try:
        shape = np.broadcast_shapes(tuple(value.shape), tuple(input.shape))
    except ValueError:
        shape = None
    if shape != tuple(input.shape):
        raise ValueError(
            f"{where}: {name} of shape {tuple(value.shape)} does not broadcast to the input's "
            f"shape {tuple(input.shape)}"
        )
    return value.astype(input.dtype, copy=False)


def binary_cross_entropy_with_logits_forward(
    logits: Any, target: Any, weight: Any = None, reduction: str = "mean", pos_weight: Any = None
) -> tuple[Any, Any]:
    r"""``-w [pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]``, computed stably from the logits x.

    With ``log sigmoid(x) = -softplus(-x)`` and ``log(1 - sigmoid(x)) = -softplus(x)`` nothing overflows:
    loss = w [pw y softplus(-x) + (1 - y) softplus(x)].

    Args:
        logits: any shape.  target: probabilities in [0, 1] of the same shape.
        weight: rescaling broadcastable to the input, or None.  pos_weight: weight of the positive term,
            broadcastable to the input (usually (C,) for the last dimension), or None.
    Cache: the local derivative ``w [(pw y + 1 - y) sigmoid(x) - pw y]``.
    """
    where = "binary_cross_entropy_with_logits_forward"
    xp, target = _elementwise(where, logits, target, reduction)
    be = check_array(where, logits)
    w = _broadcast_weight(where, be, "weight", weight, logits)
    pw = _broadcast_weight(where, be, "pos_weight", pos_weight, logits)
    e = xp.exp(-xp.abs(logits))  # in (0, 1]: never overflows
    log1p_e = xp.log1p(e)
    softplus_pos = xp.maximum(logits, 0) + log1p_e  # softplus(x) = log(1 + exp(x))
    softplus_neg = xp.maximum(-logits, 0) + log1p_e  # softplus(-x)
    sig = xp.where(logits >= 0, 1.0, e) / (1.0 + e)
    positive = target if pw is None else pw * target
    losses = positive * softplus_neg + (1 - target) * softplus_pos
    local = (positive + 1 - target) * sig - positive
    if w is not None:
        losses, local = losses * w, local * w
    return _finish(xp, losses, local, reduction)


def binary_cross_entropy_with_logits_backward(dout: Any, cache: Any) -> Any:
    """``dlogits = g * w (sigmoid(x) - y)`` (with pos_weight: ``g * w ((pw y + 1 - y) sigmoid(x) - pw y)``)."""
    return _elementwise_backward("binary_cross_entropy_with_logits_backward", dout, cache)


def binary_cross_entropy_forward(
    probs: Any, target: Any, weight: Any = None, reduction: str = "mean"
) -> tuple[Any, Any]:
    """``-w [y log p + (1 - y) log(1 - p)]`` for probabilities p in [0, 1] (logs clamped at -100, as in PyTorch).

    Prefer :func:`binary_cross_entropy_with_logits_forward` on logits: it is exact where sigmoid saturates.
    Cache: the local derivative ``w (p - y) / max(p (1 - p), 1e-12)``.
    """
    where = "binary_cross_entropy_forward"
    xp, target = _elementwise(where, probs, target, reduction)
    if bool(((probs < 0) | (probs > 1)).any()):
        raise ValueError(
            f"{where}: the input must hold probabilities in [0, 1] (got min {float(probs.min()):.4g}, max "
            f"{float(probs.max()):.4g}); apply a sigmoid first, or use BCEWithLogitsLoss on the logits"
        )
    w = _broadcast_weight(where, check_array(where, probs), "weight", weight, probs)
    floor = math.exp(-100.0)
    log_p = xp.maximum(xp.log(xp.maximum(probs, floor)), -100.0)
    log_1mp = xp.maximum(xp.log(xp.maximum(1 - probs, floor)), -100.0)
    losses = -(target * log_p + (1 - target) * log_1mp)
    local = (probs - target) / xp.maximum(probs * (1 - probs), 1e-12)
    if w is not None:
        losses, local = losses * w, local * w
    return _finish(xp, losses, local, reduction)


def binary_cross_entropy_backward(dout: Any, cache: Any) -> Any:
    """``dprobs = g * w (p - y) / (p (1 - p))``."""
    return _elementwise_backward("binary_cross_entropy_backward", dout, cache)


def kl_div_forward(log_q: Any, target: Any, reduction: str = "batchmean", log_target: bool = False) -> tuple[Any, Any]:
    r"""KL divergence :math:`\sum p (\log p - \log q)` with the input given as log-probabilities ``log_q``.

    Args:
        log_q: log-probabilities, any shape (N, ...).
        target: probabilities p of the same shape (log-probabilities when ``log_target``); terms with p = 0 are 0.
        reduction: ``"batchmean"`` (sum / N: the mathematical KL per sample), ``"sum"``, ``"mean"`` (sum / numel,
            PyTorch's legacy default) or ``"none"``. Default: ``"batchmean"``.
    Cache: the local derivative ``-p``.
    """
    where = "kl_div_forward"
    xp, target = _elementwise(where, log_q, target, reduction, ("none", "batchmean", "mean", "sum"))
    if log_target:
        p = xp.exp(target)
        losses = p * (target - log_q)
    else:
        positive = target > 0
        losses = xp.where(positive, target * (xp.log(xp.where(positive, target, 1)) - log_q), -target * log_q)
        p = target
    if reduction == "batchmean":
        batch = log_q.shape[0] if log_q.ndim else 1
        loss, cache = _finish(xp, losses, -p, "mean", float(batch))
        return loss, cache
    return _finish(xp, losses, -p, reduction)


def kl_div_backward(dout: Any, cache: Any) -> Any:
    """``dlog_q = -p * g`` (g = dout / N for ``"batchmean"``)."""
    return _elementwise_backward("kl_div_backward", dout, cache)


class MSELoss(_Loss):
    """Mean squared error ``mean((input - target)^2)``.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
    Shape:
        - Input: any shape.  - Target: the same shape (floating).
    Backward:
        dinput = 2 (input - target) * dout / numel   (for the mean)
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> nn.MSELoss()(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
        2.5
    """

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.mse_loss_forward(input, target, self.reduction)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.mse_loss_backward(dout, cache)


class L1Loss(_Loss):
    """Mean absolute error ``mean(|input - target|)``.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
    Shape:
        - Input: any shape.  - Target: the same shape.
    Backward:
        dinput = sign(input - target) * dout / numel
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> nn.L1Loss()(np.array([1.0, -2.0]), np.array([0.0, 0.0]))
        1.5
    """

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.l1_loss_forward(input, target, self.reduction)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.l1_loss_backward(dout, cache)


class SmoothL1Loss(_Loss):
    """Smooth L1 (Huber with ``delta = beta``, divided by beta): quadratic below ``beta``, linear above.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
        beta: where the quadratic part ends; 0 gives the L1 loss. Default: 1.0.
    Shape:
        - Input: any shape.  - Target: the same shape.
    Backward:
        ``dinput = dout * (d / beta if |d| < beta else sign(d)) / numel``,  d = input - target
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> nn.SmoothL1Loss()(np.array([0.5, 3.0]), np.array([0.0, 0.0]))
        1.3125
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = check_float("SmoothL1Loss", "beta", beta, low=0.0)

    def _arguments(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "beta": self.beta}

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.smooth_l1_loss_forward(input, target, self.reduction, self.beta)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.smooth_l1_loss_backward(dout, cache)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, stable for any logit (sigmoid and log fused).

    Args:
        weight: rescaling broadcastable to the input, or None. Default: None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
        pos_weight: weight of the positive examples, broadcastable to the input (e.g. (C,) for multi-label
            (N, C)), or None. Default: None.
    Shape:
        - Input: any shape.  - Target: the same shape, values in [0, 1].
    Backward:
        dlogits = dout * w ((pw y + 1 - y) sigmoid(x) - pw y) / numel   (= w (sigmoid(x) - y) without pos_weight)
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> round(nn.BCEWithLogitsLoss()(np.zeros(3), np.array([0.0, 1.0, 1.0])), 4)  # ln 2
        0.6931
    """

    def __init__(self, weight: Any = None, *, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _buffer("BCEWithLogitsLoss", weight))
        self.register_buffer("pos_weight", _buffer("BCEWithLogitsLoss", pos_weight))

    def _arguments(self) -> dict[str, Any]:
        return {"weight": self.weight, "reduction": self.reduction, "pos_weight": self.pos_weight}

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.binary_cross_entropy_with_logits_forward(input, target, self.weight, self.reduction, self.pos_weight)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.binary_cross_entropy_with_logits_backward(dout, cache)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities (after a sigmoid). Prefer :class:`BCEWithLogitsLoss` on logits.

    Args:
        weight: rescaling broadcastable to the input, or None. Default: None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
    Shape:
        - Input: any shape, values in [0, 1].  - Target: the same shape.
    Backward:
        dinput = dout * w (p - y) / max(p (1 - p), 1e-12) / numel
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> round(nn.BCELoss()(np.array([0.5, 0.5]), np.array([0.0, 1.0])), 4)
        0.6931
    """

    def __init__(self, weight: Any = None, *, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _buffer("BCELoss", weight))

    def _arguments(self) -> dict[str, Any]:
        return {"weight": self.weight, "reduction": self.reduction}

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.binary_cross_entropy_forward(input, target, self.weight, self.reduction)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.binary_cross_entropy_backward(dout, cache)


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence ``KL(target || q)``, the input being log q (log-probabilities).

    Args:
        reduction: ``"batchmean"`` (sum / N, the true KL per sample), ``"sum"``, ``"mean"`` (sum / numel) or
            ``"none"``. Default: ``"batchmean"`` (minidl's choice: PyTorch still defaults to ``"mean"``, which it
            warns is not the KL divergence and will change).
        log_target: the target is given as log-probabilities. Default: False.
    Shape:
        - Input: (N, \\*).  - Target: the same shape.
    Backward:
        dinput = -p * dout / N   (p = target, or exp(target) with ``log_target``)
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> nn.KLDivLoss()(np.log(np.full((1, 2), 0.5)), np.array([[0.5, 0.5]]))
        0.0
    """

    def __init__(self, reduction: str = "batchmean", log_target: bool = False) -> None:
        super().__init__(reduction)
        if not isinstance(log_target, bool):
            raise TypeError(f"KLDivLoss: log_target must be a bool, got {log_target!r}")
        self.log_target = log_target

    def _reductions(self) -> tuple[str, ...]:
        return ("none", "batchmean", "mean", "sum")

    def _arguments(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "log_target": self.log_target}

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.kl_div_forward(input, target, self.reduction, self.log_target)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.kl_div_backward(dout, cache)
