r"""Elementwise losses: MSE, L1, smooth L1 and KL divergence (binary cross-entropy is in :mod:`minidl.nn.loss_binary`).

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
kl div (input log q)    :math:`p (\log p - \log q)`                    :math:`-p`
======================  =============================================  ================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._checks import check_float
from minidl.nn._loss_common import _elementwise, _elementwise_backward, _finish, _Loss
from minidl.nn.dispatch import F

__all__ = [
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "SmoothL1Loss",
    "kl_div_backward",
    "kl_div_forward",
    "l1_loss_backward",
    "l1_loss_forward",
    "mse_loss_backward",
    "mse_loss_forward",
    "smooth_l1_loss_backward",
    "smooth_l1_loss_forward",
]


def mse_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    r"""Mean squared error: ``(input - target)^2`` reduced. Cache: the local derivative ``2 (input - target)``.

    .. math:: \ell_i = (x_i - y_i)^2, \qquad L = \frac{1}{n} \sum_i \ell_i \ (\text{mean, } n = \text{numel}),
              \quad \sum_i \ell_i \ (\text{sum}), \quad \ell \ (\text{none})

    Shape:
        - Input x: any shape.  - Target y: the same shape, floating.
        - Output: a scalar, or the input's shape for ``"none"``.
    Backward:
        dinput = 2 (x - y) * g, g = dout / numel (mean), dout (sum) or dout itself (none).
    Examples:
        >>> loss, cache = mse_loss_forward(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
        >>> float(loss)  # (1 + 4) / 2
        2.5
    """
    xp, target = _elementwise("mse_loss_forward", input, target, reduction)
    diff = input - target
    return _finish(xp, diff * diff, 2 * diff, reduction)


def mse_loss_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of the MSE loss: ``dinput = 2 (input - target) * g`` (g = dout / numel for the mean).

    .. math:: dx_i = 2 (x_i - y_i)\, g_i, \qquad g = \frac{dout}{n} \ (\text{mean}), \quad dout \ (\text{sum, none})

    Shape:
        - dout: a scalar, or the input's shape for ``"none"``.  - dinput: the input's shape.
    Examples:
        >>> _, cache = mse_loss_forward(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
        >>> mse_loss_backward(1.0, cache)
        array([1., 2.])
    """
    return _elementwise_backward("mse_loss_backward", dout, cache)


def l1_loss_forward(input: Any, target: Any, reduction: str = "mean") -> tuple[Any, Any]:
    r"""Mean absolute error: ``|input - target|`` reduced. Cache: ``sign(input - target)`` (0 at equality, as in
    PyTorch).

    .. math:: \ell_i = |x_i - y_i|, \qquad L = \frac{1}{n} \sum_i \ell_i \ (\text{mean}), \quad
              \sum_i \ell_i \ (\text{sum}), \quad \ell \ (\text{none})

    Shape:
        - Input x: any shape.  - Target y: the same shape, floating.
        - Output: a scalar, or the input's shape for ``"none"``.
    Backward:
        dinput = sign(x - y) * g, g = dout / numel (mean), dout (sum) or dout itself (none).
    Examples:
        >>> loss, cache = l1_loss_forward(np.array([1.0, -2.0]), np.array([0.0, 0.0]))
        >>> float(loss)
        1.5
    """
    xp, target = _elementwise("l1_loss_forward", input, target, reduction)
    diff = input - target
    return _finish(xp, xp.abs(diff), xp.sign(diff), reduction)


def l1_loss_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of the L1 loss: ``dinput = sign(input - target) * g``.

    .. math:: dx_i = \mathrm{sign}(x_i - y_i)\, g_i, \qquad g = \frac{dout}{n} \ (\text{mean}), \quad
              dout \ (\text{sum, none})

    Shape:
        - dout: a scalar, or the input's shape for ``"none"``.  - dinput: the input's shape.
    Examples:
        >>> _, cache = l1_loss_forward(np.array([1.0, -2.0]), np.array([0.0, 0.0]))
        >>> l1_loss_backward(1.0, cache)
        array([ 0.5, -0.5])
    """
    return _elementwise_backward("l1_loss_backward", dout, cache)


def smooth_l1_loss_forward(input: Any, target: Any, reduction: str = "mean", beta: float = 1.0) -> tuple[Any, Any]:
    r"""Smooth L1 (Huber-like): ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (d = input - target).

    ``beta = 0`` is the L1 loss. Cache: the local derivative ``d / beta`` or ``sign(d)``.

    .. math:: \ell_i = \begin{cases} d_i^2 / (2\beta) & |d_i| < \beta \\ |d_i| - \beta / 2 & \text{otherwise}
              \end{cases}, \qquad d = x - y,

    reduced as in :func:`mse_loss_forward`.

    Shape:
        - Input x: any shape.  - Target y: the same shape, floating.
        - Output: a scalar, or the input's shape for ``"none"``.
    Backward:
        dinput = g * (d / beta if abs(d) < beta else sign(d)), g = dout / numel (mean), dout (sum) or dout (none).
    Examples:
        >>> loss, cache = smooth_l1_loss_forward(np.array([0.5, 3.0]), np.array([0.0, 0.0]))
        >>> float(loss)  # (0.125 + 2.5) / 2
        1.3125
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
    r"""The gradient of the smooth L1 loss: ``dinput = g * (d / beta if abs(d) < beta else sign(d))``.

    .. math:: dx_i = g_i \begin{cases} d_i / \beta & |d_i| < \beta \\ \mathrm{sign}(d_i) & \text{otherwise}
              \end{cases}, \qquad d = x - y

    Shape:
        - dout: a scalar, or the input's shape for ``"none"``.  - dinput: the input's shape.
    Examples:
        >>> _, cache = smooth_l1_loss_forward(np.array([0.5, 3.0]), np.array([0.0, 0.0]))
        >>> smooth_l1_loss_backward(1.0, cache)
        array([0.25, 0.5 ])
    """
    return _elementwise_backward("smooth_l1_loss_backward", dout, cache)


def kl_div_forward(log_q: Any, target: Any, reduction: str = "batchmean", log_target: bool = False) -> tuple[Any, Any]:
    r"""KL divergence :math:`\sum p (\log p - \log q)` with the input given as log-probabilities ``log_q``.

    .. math:: \ell_i = p_i (\log p_i - \log q_i) \ (0 \text{ where } p_i = 0), \qquad
              L = \frac{1}{N} \sum_i \ell_i \ (\text{batchmean}), \quad \frac{1}{n} \sum_i \ell_i \ (\text{mean}),
              \quad \sum_i \ell_i \ (\text{sum})

    with p the target (:math:`p = e^{\mathrm{target}}` when ``log_target``), N = ``log_q.shape[0]``, n = numel.

    Args:
        log_q: log-probabilities, any shape (N, ...).
        target: probabilities p of the same shape (log-probabilities when ``log_target``); terms with p = 0 are 0.
        reduction: ``"batchmean"`` (sum / N: the mathematical KL per sample), ``"sum"``, ``"mean"`` (sum / numel,
            PyTorch's legacy default) or ``"none"``. Default: ``"batchmean"``.
    Cache: the local derivative ``-p``.

    Shape:
        - Input log_q: (N, ...).  - Target: the same shape, floating.
        - Output: a scalar, or the input's shape for ``"none"``.
    Backward:
        dlog_q = -p * g, g = dout / N (batchmean), dout / numel (mean), dout (sum) or dout itself (none).
    Examples:
        >>> loss, cache = kl_div_forward(np.log(np.array([[0.25, 0.75]])), np.array([[0.5, 0.5]]))
        >>> round(float(loss), 4)  # 0.5 log(0.5 / 0.25) + 0.5 log(0.5 / 0.75)
        0.1438
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
    r"""The gradient of the KL divergence with respect to ``log_q``: ``-p * g`` (g = dout / N for ``"batchmean"``).

    .. math:: \frac{\partial L}{\partial \log q_i} = -p_i\, g_i, \qquad g = \frac{dout}{N} \ (\text{batchmean}),
              \quad \frac{dout}{n} \ (\text{mean}), \quad dout \ (\text{sum, none})

    Shape:
        - dout: a scalar, or the input's shape for ``"none"``.  - dinput: the input's shape.
    Examples:
        >>> _, cache = kl_div_forward(np.log(np.array([[0.25, 0.75]])), np.array([[0.5, 0.5]]))
        >>> kl_div_backward(1.0, cache)
        array([[-0.5, -0.5]])
    """
    return _elementwise_backward("kl_div_backward", dout, cache)


class MSELoss(_Loss):
    r"""Mean squared error ``mean((input - target)^2)``.

    .. math:: L = \frac{1}{n} \sum_i (x_i - y_i)^2 \quad (\text{mean; sum: without } 1/n)

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
    r"""Mean absolute error ``mean(|input - target|)``.

    .. math:: L = \frac{1}{n} \sum_i |x_i - y_i| \quad (\text{mean; sum: without } 1/n)

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
    r"""Smooth L1 (Huber with ``delta = beta``, divided by beta): quadratic below ``beta``, linear above.

    .. math:: L = \frac{1}{n} \sum_i \begin{cases} d_i^2 / (2\beta) & |d_i| < \beta \\ |d_i| - \beta / 2 &
              \text{otherwise} \end{cases}, \qquad d = x - y

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.
        beta: where the quadratic part ends; 0 gives the L1 loss. Default: 1.0.
    Shape:
        - Input: any shape.  - Target: the same shape.
    Backward:
        dinput = dout * (d / beta if abs(d) < beta else sign(d)) / numel,  d = input - target
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


class KLDivLoss(_Loss):
    r"""Kullback-Leibler divergence ``KL(target || q)``, the input being log q (log-probabilities).

    .. math:: L = \frac{1}{N} \sum_i p_i (\log p_i - \log q_i) \quad (\text{batchmean; } p = \text{target})

    Args:
        reduction: ``"batchmean"`` (sum / N, the true KL per sample), ``"sum"``, ``"mean"`` (sum / numel) or
            ``"none"``. Default: ``"batchmean"`` (minidl's choice: PyTorch still defaults to ``"mean"``, which it
            warns is not the KL divergence and will change).
        log_target: the target is given as log-probabilities. Default: False.
    Shape:
        - Input: (N, \*).  - Target: the same shape.
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
