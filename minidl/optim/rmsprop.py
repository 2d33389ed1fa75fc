r"""RMSprop: divide each coordinate's step by a running root-mean-square of its gradients (Hinton, lecture 6e).

.. math::
    v_t &= \alpha\, v_{t-1} + (1 - \alpha)\, g_t^2 \\
    \tilde v_t &= v_t - \bar g_t^2, \quad \bar g_t = \alpha\, \bar g_{t-1} + (1 - \alpha)\, g_t
        \qquad \text{(centered: an estimate of the variance instead of the raw second moment)} \\
    b_t &= \mu\, b_{t-1} + \frac{g_t}{\sqrt{\tilde v_t} + \epsilon}, \quad \theta_t = \theta_{t-1} - \gamma\, b_t
        \qquad \text{(with momentum } \mu > 0\text{; else } \theta_t = \theta_{t-1} - \gamma\,
        \tfrac{g_t}{\sqrt{\tilde v_t} + \epsilon}\text{)}

Note that :math:`\epsilon` is added *after* the square root, and that there is no bias correction (unlike Adam):
with :math:`v_0 = 0` the first steps are large, :math:`\gamma / \sqrt{1 - \alpha}` per coordinate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from minidl.backend import get_array_module
from minidl.nn._checks import check_float
from minidl.optim.optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop, as ``torch.optim.RMSprop``.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \qquad \theta_t = \theta_{t-1} - \gamma\, \frac{g_t}{\sqrt{v_t}
        + \epsilon}

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: learning rate :math:`\gamma`. Default: 1e-2.
        alpha: smoothing constant :math:`\alpha` of the squared-gradient average. Default: 0.99.
        eps: :math:`\epsilon`, added to the root mean square. Default: 1e-8.
        weight_decay: coupled L2 weight decay :math:`\lambda` (adds :math:`\lambda\theta` to the gradient).
            Default: 0.
        momentum: momentum factor :math:`\mu`. Default: 0.
        centered: normalize by an estimate of the gradient's variance instead of its second moment. Default: False.
        maximize: maximize the objective instead of minimizing it. Default: False.

    State (per parameter): ``step``, ``square_avg`` (:math:`v`), ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (:math:`\bar g`, centered).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> opt = optim.RMSprop([w], lr=0.01)
        >>> w.grad = 2 * w.data
        >>> _ = opt.step(); w.data          # first step: lr / sqrt(1 - alpha) = 0.1 per coordinate
        array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        if "alpha" in group:
            group["alpha"] = check_float(where, "alpha", group["alpha"], low=0.0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` when given (evaluated first)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
            for p, grad in self._grads(group):
                xp = get_array_module(p.data)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["square_avg"] = xp.zeros_like(p.data)
                if momentum > 0 and "momentum_buffer" not in state:
                    state["momentum_buffer"] = xp.zeros_like(p.data)
                if group["centered"] and "grad_avg" not in state:
                    state["grad_avg"] = xp.zeros_like(p.data)
                state["step"] += 1
                g = -grad if group["maximize"] else grad
                if group["weight_decay"] != 0:
                    g = g + group["weight_decay"] * p.data
                square_avg = state["square_avg"]
                square_avg *= alpha
                square_avg += (1 - alpha) * (g * g)
                if group["centered"]:
                    grad_avg = state["grad_avg"]
                    grad_avg += (1 - alpha) * (g - grad_avg)
                    avg = xp.sqrt(square_avg - grad_avg * grad_avg)
                else:
                    avg = xp.sqrt(square_avg)
                avg += eps
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf *= momentum
                    buf += g / avg
                    p.data -= lr * buf
                else:
                    p.data -= lr * (g / avg)
        return loss
