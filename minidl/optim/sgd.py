r"""Stochastic gradient descent with momentum, Nesterov momentum and (coupled) weight decay.

With learning rate :math:`\gamma`, momentum :math:`\mu`, dampening :math:`\tau` and weight decay :math:`\lambda`,
one step on a parameter :math:`\theta` with gradient :math:`g` is (PyTorch's formulation):

.. math::
    g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \qquad (-\ \text{when maximize}) \\
    b_t &\leftarrow \begin{cases} g_t & t = 1 \\ \mu\, b_{t-1} + (1 - \tau)\, g_t & t > 1 \end{cases} \\
    g_t &\leftarrow g_t + \mu\, b_t \ \text{(nesterov)} \quad\text{or}\quad g_t \leftarrow b_t \ \text{(momentum)} \\
    \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t

The momentum buffer is the velocity: a running sum of past gradients, so steps grow along directions the gradients
agree on and cancel along those where they oscillate. PyTorch puts :math:`\gamma` outside the buffer (Sutskever et
al. 2013 put it inside); the two differ only when the learning rate changes during training.

Weight decay here is *coupled*: :math:`\lambda\theta` is added to the gradient, which is exactly the gradient of an
L2 penalty :math:`\frac{\lambda}{2}\lVert\theta\rVert^2` on the loss (see :mod:`minidl.nn.regularization`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from minidl.backend import get_array_module
from minidl.nn._checks import check_float
from minidl.optim.optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    .. math::
        b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad \theta_t = \theta_{t-1} - \gamma\,(g_t + \mu b_t \text{ or } b_t)

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: learning rate :math:`\gamma`. Default: 1e-3.
        momentum: momentum factor :math:`\mu`. Default: 0.
        dampening: dampening :math:`\tau` of the gradient added to the momentum buffer. Default: 0.
        weight_decay: coupled L2 weight decay :math:`\lambda` (added to the gradient). Default: 0.
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening = 0). Default: False.
        maximize: maximize the objective instead of minimizing it. Default: False.

    State (per parameter): ``momentum_buffer`` (same shape as the parameter), when momentum != 0.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> opt = optim.SGD([w], lr=0.1, momentum=0.9)
        >>> for _ in range(2):
        ...     opt.zero_grad()
        ...     w.grad = 2 * w.data      # gradient of f(w) = |w|^2
        ...     opt.step()
        >>> w.data                       # 1 -> 0.8 -> 0.8 - 0.1 * (0.9 * 2 + 1.6) = 0.46
        array([ 0.46, -0.92])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        group["dampening"] = check_float(where, "dampening", group.get("dampening", 0.0))
        if group.get("nesterov") and (group.get("momentum", 0) <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"{where}: Nesterov momentum requires a momentum > 0 and zero dampening, got momentum="
                f"{group.get('momentum')} and dampening={group['dampening']}"
            )

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` when given (evaluated first)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            for p, grad in self._grads(group):
                xp = get_array_module(p.data)
                d_p = -grad if maximize else grad
                if weight_decay != 0:
                    d_p = d_p + weight_decay * p.data  # a new array: p.grad itself is left untouched
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:  # first step: the buffer starts at the gradient (no dampening)
                        buf = xp.array(d_p, copy=True)
                        state["momentum_buffer"] = buf
                    else:
                        buf *= momentum
                        buf += (1 - dampening) * d_p
                    d_p = d_p + momentum * buf if nesterov else buf
                p.data -= lr * d_p  # in place: p.data stays the same array
        return loss
