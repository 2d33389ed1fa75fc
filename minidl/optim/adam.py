r"""The Adam family: Adam, AdamW (decoupled weight decay), Adamax (infinity norm) and NAdam (Nesterov momentum).

Adam (Kingma & Ba 2015) keeps two exponential moving averages per parameter, of the gradient (the first moment
:math:`m`, a momentum) and of its square (the second moment :math:`v`), and scales each coordinate's step by
:math:`1/\sqrt{v}`: coordinates with large or noisy gradients take smaller steps. With :math:`g_t` the gradient:

.. math::
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \\
    \hat m_t &= \frac{m_t}{1 - \beta_1^t}, \qquad \hat v_t = \frac{v_t}{1 - \beta_2^t}
        \qquad \text{(bias correction: } m_0 = v_0 = 0 \text{ pulls early averages towards 0)} \\
    \theta_t &= \theta_{t-1} - \gamma\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

**Weight decay, coupled or decoupled.** Adam's ``weight_decay`` adds :math:`\lambda\theta` to the gradient (an L2
penalty), which then passes through the :math:`1/\sqrt{v}` scaling: weights with large gradients are barely
decayed. AdamW (Loshchilov & Hutter 2019) *decouples* it: :math:`\theta \leftarrow \theta (1 - \gamma\lambda)`
before the Adam step, so every weight shrinks at the same rate. This is what most modern training uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from minidl.backend import get_array_module
from minidl.nn._checks import check_float
from minidl.optim.optimizer import Optimizer

__all__ = ["Adam", "AdamW", "Adamax", "NAdam"]


def _moment_state(state: dict[str, Any], p: Any, *names: str) -> None:
    """Allocate the step counter and zero moment buffers of ``p`` on its first step."""
    if len(state) == 0:
        xp = get_array_module(p.data)
        state["step"] = 0
        for name in names:
            state[name] = xp.zeros_like(p.data)


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        \theta_t = \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\, \frac{m_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    With ``amsgrad`` (Reddi et al. 2018) the denominator uses :math:`v^{max}_t = \max(v^{max}_{t-1}, v_t)`, so the
    effective step size never grows back.

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: learning rate :math:`\gamma`. Default: 1e-3.
        betas: :math:`(\beta_1, \beta_2)`, the decay rates of the two moving averages, each in [0, 1).
            Default: (0.9, 0.999).
        eps: :math:`\epsilon`, added to the denominator for numerical stability. Default: 1e-8.
        weight_decay: :math:`\lambda`. Default: 0.
        amsgrad: use the AMSGrad variant. Default: False.
        maximize: maximize the objective instead of minimizing it. Default: False.
        decoupled_weight_decay: decay the weights directly, :math:`\theta \leftarrow \theta(1-\gamma\lambda)`, as
            AdamW does, instead of adding :math:`\lambda\theta` to the gradient. Default: False.

    State (per parameter): ``step`` (int), ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`), and
    ``max_exp_avg_sq`` with amsgrad.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> opt = optim.Adam([w], lr=0.1)
        >>> w.grad = 2 * w.data
        >>> _ = opt.step()
        >>> w.data        # the first Adam step moves each coordinate by about lr, whatever the gradient's scale
        array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` when given (evaluated first)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
            for p, grad in self._grads(group):
                xp = get_array_module(p.data)
                state = self.state[p]
                _moment_state(state, p, "exp_avg", "exp_avg_sq")
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                step = state["step"]
                g = -grad if group["maximize"] else grad
                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.data *= 1 - lr * weight_decay  # AdamW: shrink the weights, outside the adaptive scaling
                    else:
                        g = g + weight_decay * p.data  # L2: the decay passes through 1/sqrt(v)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m += (1 - beta1) * (g - m)  # = beta1 * m + (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * (g * g)
                step_size = lr / (1 - beta1**step)
                bias_correction2_sqrt = math.sqrt(1 - beta2**step)
                if amsgrad:
                    xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    denom = xp.sqrt(state["max_exp_avg_sq"]) / bias_correction2_sqrt + eps
                else:
                    denom = xp.sqrt(v) / bias_correction2_sqrt + eps
                p.data -= step_size * (m / denom)
        return loss


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``.

    .. math::
        \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda), \quad \text{then the Adam step with } g_t
        \text{ (no } \lambda\theta \text{ term in the moments)}

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: learning rate :math:`\gamma`. Default: 1e-3.
        betas: :math:`(\beta_1, \beta_2)`. Default: (0.9, 0.999).
        eps: :math:`\epsilon`. Default: 1e-8.
        weight_decay: decoupled weight decay :math:`\lambda`. Default: 1e-2.
        amsgrad: use the AMSGrad variant. Default: False.
        maximize: maximize the objective instead of minimizing it. Default: False.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0]))
        >>> opt = optim.AdamW([w], lr=0.1, weight_decay=0.5)
        >>> w.grad = np.array([0.0])        # no gradient: only the decay acts, w * (1 - 0.1 * 0.5)
        >>> _ = opt.step(); w.data
        array([0.95])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        group["decoupled_weight_decay"] = True  # AdamW always decouples (also after loading a state dict)


class Adamax(Optimizer):
    r"""Adamax, Adam with the infinity norm (Kingma & Ba 2015, section 7), as ``torch.optim.Adamax``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \quad
        \theta_t = \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}\, \frac{m_t}{u_t}

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: learning rate :math:`\gamma`. Default: 2e-3.
        betas: :math:`(\beta_1, \beta_2)`. Default: (0.9, 0.999).
        eps: :math:`\epsilon`. Default: 1e-8.
        weight_decay: coupled L2 weight decay :math:`\lambda`. Default: 0.
        maximize: maximize the objective instead of minimizing it. Default: False.

    State (per parameter): ``step``, ``exp_avg`` (:math:`m`), ``exp_inf`` (:math:`u`).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> opt = optim.Adamax([w], lr=0.1)
        >>> w.grad = 2 * w.data
        >>> _ = opt.step(); w.data
        array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` when given (evaluated first)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p, grad in self._grads(group):
                xp = get_array_module(p.data)
                state = self.state[p]
                _moment_state(state, p, "exp_avg", "exp_inf")
                state["step"] += 1
                g = -grad if group["maximize"] else grad
                if weight_decay != 0:
                    g = g + weight_decay * p.data
                m, u = state["exp_avg"], state["exp_inf"]
                m += (1 - beta1) * (g - m)
                u *= beta2
                xp.maximum(u, xp.abs(g) + eps, out=u)  # the exponentially weighted infinity norm
                clr = lr / (1 - beta1 ** state["step"])
                p.data -= clr * (m / u)
        return loss


class NAdam(Optimizer):
    r"""NAdam, Adam with Nesterov momentum (Dozat 2016), as ``torch.optim.NAdam``.

    The momentum coefficient warms up, :math:`\mu_t = \beta_1 (1 - \frac12 0.96^{t\psi})` (:math:`\psi` is
    ``momentum_decay``), and the step looks one momentum step ahead:

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        d_t = \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        \theta_t &= \theta_{t-1} - \gamma \frac{1 - \mu_t}{1 - \prod_{i \le t}\mu_i} \frac{g_t}{d_t}
                   - \gamma \frac{\mu_{t+1}}{1 - \prod_{i \le t+1}\mu_i} \frac{m_t}{d_t}

    Args:
        params: Parameters or param groups (dicts) to optimize.
        lr: learning rate :math:`\gamma`. Default: 2e-3.
        betas: :math:`(\beta_1, \beta_2)`. Default: (0.9, 0.999).
        eps: :math:`\epsilon`. Default: 1e-8.
        weight_decay: :math:`\lambda`. Default: 0.
        momentum_decay: :math:`\psi`. Default: 4e-3.
        decoupled_weight_decay: decay the weights directly (as AdamW, "NAdamW") instead of adding
            :math:`\lambda\theta` to the gradient. Default: False.
        maximize: maximize the objective instead of minimizing it. Default: False.

    State (per parameter): ``step``, ``mu_product`` (float), ``exp_avg``, ``exp_avg_sq``.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> opt = optim.NAdam([w], lr=0.1)
        >>> w.grad = 2 * w.data
        >>> _ = opt.step(); np.round(w.data, 4)
        array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        super()._check_group(group, where)
        if "momentum_decay" in group:
            group["momentum_decay"] = check_float(where, "momentum_decay", group["momentum_decay"], low=0.0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` when given (evaluated first)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p, grad in self._grads(group):
                xp = get_array_module(p.data)
                state = self.state[p]
                if len(state) == 0:
                    _moment_state(state, p, "exp_avg", "exp_avg_sq")
                    state["mu_product"] = 1.0
                state["step"] += 1
                step = state["step"]
                g = -grad if group["maximize"] else grad
                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.data *= 1 - lr * weight_decay
                    else:
                        g = g + weight_decay * p.data
                mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * group["momentum_decay"]))
                mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * group["momentum_decay"]))
                state["mu_product"] *= mu
                mu_product, mu_product_next = state["mu_product"], state["mu_product"] * mu_next
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m += (1 - beta1) * (g - m)
                v *= beta2
                v += (1 - beta2) * (g * g)
                denom = xp.sqrt(v / (1 - beta2**step)) + eps
                p.data -= (lr * (1.0 - mu) / (1.0 - mu_product)) * (g / denom)
                p.data -= (lr * mu_next / (1.0 - mu_product_next)) * (m / denom)
        return loss
