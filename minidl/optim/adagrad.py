r"""Adagrad and Adadelta: per-coordinate step sizes from the history of squared gradients.

**Adagrad** (Duchi et al. 2011) divides by the root of the *sum* of all past squared gradients, so a coordinate's
step size only decreases; rarely-updated coordinates (sparse features) keep large steps:

.. math::
    s_t = s_{t-1} + g_t^2, \qquad
    \theta_t = \theta_{t-1} - \frac{\gamma}{1 + (t-1)\eta}\, \frac{g_t}{\sqrt{s_t} + \epsilon}

(:math:`\eta` is ``lr_decay``.) **Adadelta** (Zeiler 2012) replaces the sum by a moving average and the learning
rate by a moving RMS of the past updates, so that the update has the units of the parameter:

.. math::
    v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
    \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \quad
    u_t = \rho u_{t-1} + (1-\rho) \Delta_t^2, \quad \theta_t = \theta_{t-1} - \gamma \Delta_t
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from minidl.backend import get_array_module
from minidl.nn._checks import check_float
from minidl.optim.optimizer import Optimizer

__all__ = ["Adadelta", "Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad, as ``torch.optim.Adagrad``.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \frac{\gamma}{1 + (t-1)\eta}\,
        \frac{g_t}{\sqrt{s_t} + \epsilon}, \qquad s_0 = \text{initial\_accumulator\_value}

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: learning rate :math:`\gamma`. Default: 1e-2.
        lr_decay: :math:`\eta`. Default: 0.
        weight_decay: coupled L2 weight decay :math:`\lambda`. Default: 0.
        initial_accumulator_value: :math:`s_0`. Default: 0.
        eps: :math:`\epsilon`. Default: 1e-10.
        maximize: maximize the objective instead of minimizing it. Default: False.

    State (per parameter, created for every parameter at construction, as in PyTorch): ``step``, ``sum``
    (:math:`s`).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> opt = optim.Adagrad([w], lr=0.1)
        >>> w.grad = 2 * w.data
        >>> _ = opt.step(); w.data          # first step: lr * g / |g|
        array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": maximize,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        for name in ("lr_decay", "initial_accumulator_value"):
            if name in group:
                group[name] = check_float(where, name, group[name], low=0.0)

    def _init_state(self, p: Any, group: dict[str, Any]) -> None:
        state = self.state[p]
        if len(state) == 0:
            xp = get_array_module(p.data)
            state["step"] = 0
            state["sum"] = xp.full_like(p.data, group["initial_accumulator_value"])

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` when given (evaluated first)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            for p, grad in self._grads(group):
                xp = get_array_module(p.data)
                self._init_state(p, group)  # a group added later with add_param_group
                state = self.state[p]
                state["step"] += 1
                g = -grad if group["maximize"] else grad
                if group["weight_decay"] != 0:
                    g = g + group["weight_decay"] * p.data
                clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
                state["sum"] += g * g
                std = xp.sqrt(state["sum"])
                std += group["eps"]
                p.data -= clr * (g / std)
        return loss


class Adadelta(Optimizer):
    r"""Adadelta, as ``torch.optim.Adadelta``.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad \Delta_t = \sqrt{\frac{u_{t-1} + \epsilon}{v_t + \epsilon}}\, g_t,
        \quad u_t = \rho u_{t-1} + (1-\rho) \Delta_t^2, \quad \theta_t = \theta_{t-1} - \gamma \Delta_t

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: coefficient :math:`\gamma` that scales the update. Default: 1.0.
        rho: decay rate :math:`\rho` of both running averages, in [0, 1]. Default: 0.9.
        eps: :math:`\epsilon`, added inside both square roots. Default: 1e-6.
        weight_decay: coupled L2 weight decay :math:`\lambda`. Default: 0.
        maximize: maximize the objective instead of minimizing it. Default: False.

    State (per parameter): ``step``, ``square_avg`` (:math:`v`), ``acc_delta`` (:math:`u`).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> opt = optim.Adadelta([w])
        >>> w.grad = 2 * w.data
        >>> _ = opt.step(); np.round(w.data, 5)     # tiny first steps: sqrt(eps / (0.1 g^2)) * g
        array([ 0.99684, -1.99684])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        if "rho" in group:
            group["rho"] = check_float(where, "rho", group["rho"], low=0.0, high=1.0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` when given (evaluated first)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            rho, eps = group["rho"], group["eps"]
            for p, grad in self._grads(group):
                xp = get_array_module(p.data)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["square_avg"] = xp.zeros_like(p.data)
                    state["acc_delta"] = xp.zeros_like(p.data)
                state["step"] += 1
                g = -grad if group["maximize"] else grad
                if group["weight_decay"] != 0:
                    g = g + group["weight_decay"] * p.data
                square_avg, acc_delta = state["square_avg"], state["acc_delta"]
                square_avg *= rho
                square_avg += (1 - rho) * (g * g)
                std = xp.sqrt(square_avg + eps)
                delta = xp.sqrt(acc_delta + eps)
                delta /= std
                delta *= g
                acc_delta *= rho
                acc_delta += (1 - rho) * (delta * delta)
                p.data -= group["lr"] * delta
        return loss
