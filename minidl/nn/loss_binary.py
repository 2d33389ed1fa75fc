r"""Binary cross-entropy, on logits (:class:`BCEWithLogitsLoss`) or on probabilities (:class:`BCELoss`).

For a target :math:`y \in [0, 1]` and a predicted probability :math:`p`, each term is
:math:`\ell_i = -w_i [y_i \log p_i + (1 - y_i) \log(1 - p_i)]`. On logits x, :math:`p = \sigma(x)`, and with
:math:`\log \sigma(x) = -\mathrm{sp}(-x)`, :math:`\log(1 - \sigma(x)) = -\mathrm{sp}(x)` (sp = softplus,
:math:`\log(1 + e^x)`) the loss never takes the log of a sigmoid rounded to 0, and its derivative collapses to
:math:`\sigma(x) - y`. Like the losses of :mod:`minidl.nn.loss_elementwise` (re-exported by :mod:`minidl.nn.loss`)
the cache is the local derivative, and every backward is :math:`dx = \partial \ell / \partial x \odot g`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.nn._checks import check_array
from minidl.nn._loss_common import _as_target, _buffer, _elementwise, _elementwise_backward, _finish, _Loss
from minidl.nn.dispatch import F

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_forward",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward",
]


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
    r"""Binary cross-entropy on logits: ``-w [pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]``, computed stably.

    With ``log sigmoid(x) = -softplus(-x)`` and ``log(1 - sigmoid(x)) = -softplus(x)`` nothing overflows:

    .. math:: \ell_i = w_i \big[\mathrm{pw}_i\, y_i\, \mathrm{sp}(-x_i) + (1 - y_i)\, \mathrm{sp}(x_i)\big],
              \qquad \mathrm{sp}(x) = \log(1 + e^x),

    reduced to :math:`\frac{1}{n} \sum_i \ell_i` (mean, n = numel), :math:`\sum_i \ell_i` (sum) or kept (none);
    w = 1 and pw = 1 when not given.

    Args:
        logits: any shape.  target: probabilities in [0, 1] of the same shape.
        weight: rescaling broadcastable to the input, or None.  pos_weight: weight of the positive term,
            broadcastable to the input (usually (C,) for the last dimension), or None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
    Cache: the local derivative ``w [(pw y + 1 - y) sigmoid(x) - pw y]``.

    Shape:
        - Logits x: any shape.  - Target y: the same shape.  - weight, pos_weight: broadcastable to x.
        - Output: a scalar, or the input's shape for ``"none"``.
    Backward:
        dlogits = g * w [(pw y + 1 - y) sigmoid(x) - pw y] (= g * w (sigmoid(x) - y) without pos_weight),
        g = dout / numel (mean), dout (sum) or dout itself (none).
    Examples:
        >>> loss, cache = binary_cross_entropy_with_logits_forward(np.zeros(2), np.array([0.0, 1.0]))
        >>> round(float(loss), 4)  # log 2
        0.6931
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
    r"""The gradient of BCE on logits: ``g * w (sigmoid(x) - y)`` (with pos_weight: ``g * w ((pw y + 1 - y)
    sigmoid(x) - pw y)``).

    .. math:: dx_i = g_i\, w_i \big[(\mathrm{pw}_i\, y_i + 1 - y_i)\, \sigma(x_i) - \mathrm{pw}_i\, y_i\big],
              \qquad g = \frac{dout}{n} \ (\text{mean}), \quad dout \ (\text{sum, none})

    Shape:
        - dout: a scalar, or the input's shape for ``"none"``.  - dinput: the input's shape.
    Examples:
        >>> _, cache = binary_cross_entropy_with_logits_forward(np.zeros(2), np.array([0.0, 1.0]))
        >>> binary_cross_entropy_with_logits_backward(1.0, cache)  # (sigmoid(0) - y) / 2
        array([ 0.25, -0.25])
    """
    return _elementwise_backward("binary_cross_entropy_with_logits_backward", dout, cache)


def binary_cross_entropy_forward(
    probs: Any, target: Any, weight: Any = None, reduction: str = "mean"
) -> tuple[Any, Any]:
    r"""Binary cross-entropy ``-w [y log p + (1 - y) log(1 - p)]`` for probabilities p in [0, 1] (logs clamped at
    -100, as in PyTorch).

    .. math:: \ell_i = -w_i \big[y_i \max(\log p_i, -100) + (1 - y_i) \max(\log(1 - p_i), -100)\big],

    reduced to :math:`\frac{1}{n} \sum_i \ell_i` (mean, n = numel), :math:`\sum_i \ell_i` (sum) or kept (none).
    Prefer :func:`binary_cross_entropy_with_logits_forward` on logits: it is exact where sigmoid saturates.
    Cache: the local derivative ``w (p - y) / max(p (1 - p), 1e-12)``.

    Shape:
        - Input p: any shape, values in [0, 1].  - Target y: the same shape.  - weight: broadcastable to p.
        - Output: a scalar, or the input's shape for ``"none"``.
    Backward:
        dprobs = g * w (p - y) / max(p (1 - p), 1e-12), g = dout / numel (mean), dout (sum) or dout itself (none).
    Examples:
        >>> loss, cache = binary_cross_entropy_forward(np.array([0.5, 0.5]), np.array([0.0, 1.0]))
        >>> round(float(loss), 4)  # log 2
        0.6931
    """
    where = "binary_cross_entropy_forward"
    xp, target = _elementwise(where, probs, target, reduction)
    if bool(((probs < 0) | (probs > 1)).any()):
        raise ValueError(
            f"{where}: the input must hold probabilities in [0, 1] (got min {float(probs.min()):.4g}, max "
            f"{float(probs.max()):.4g}); apply a sigmoid first, or use BCEWithLogitsLoss on the logits"
        )
    if bool(((target < 0) | (target > 1)).any()):  # as PyTorch: a label of 2 or -1 would give a negative loss
        raise ValueError(
            f"{where}: the target must hold probabilities in [0, 1] (got min {float(target.min()):.4g}, max "
            f"{float(target.max()):.4g}); for class indices use CrossEntropyLoss"
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
    r"""The gradient of BCE on probabilities: ``dprobs = g * w (p - y) / (p (1 - p))``.

    .. math:: dp_i = g_i\, w_i\, \frac{p_i - y_i}{\max(p_i (1 - p_i), 10^{-12})}, \qquad
              g = \frac{dout}{n} \ (\text{mean}), \quad dout \ (\text{sum, none})

    Shape:
        - dout: a scalar, or the input's shape for ``"none"``.  - dinput: the input's shape.
    Examples:
        >>> _, cache = binary_cross_entropy_forward(np.array([0.5, 0.5]), np.array([0.0, 1.0]))
        >>> binary_cross_entropy_backward(1.0, cache)  # (p - y) / (p (1 - p)) / 2
        array([ 1., -1.])
    """
    return _elementwise_backward("binary_cross_entropy_backward", dout, cache)


class BCEWithLogitsLoss(_Loss):
    r"""Binary cross-entropy on logits, stable for any logit (sigmoid and log fused).

    .. math:: L = -\frac{1}{n} \sum_i w_i \big[\mathrm{pw}_i\, y_i \log \sigma(x_i)
              + (1 - y_i) \log(1 - \sigma(x_i))\big]

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
    r"""Binary cross-entropy on probabilities (after a sigmoid). Prefer :class:`BCEWithLogitsLoss` on logits.

    .. math:: L = -\frac{1}{n} \sum_i w_i \big[y_i \log p_i + (1 - y_i) \log(1 - p_i)\big]
              \quad (\text{each log clamped at } -100)

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
