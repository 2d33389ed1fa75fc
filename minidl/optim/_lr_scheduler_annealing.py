r"""Schedules that anneal the learning rate along a curve: linear, polynomial, cosine, SGDR and one-cycle.

Import them from :mod:`minidl.optim.lr_scheduler` (this file only keeps that one under ~500 lines).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from minidl.nn._checks import check_float, check_int
from minidl.optim._lr_scheduler_base import LRScheduler, _check_optimizer, _group_lrs, _per_group
from minidl.optim.optimizer import Optimizer

__all__ = ["CosineAnnealingLR", "CosineAnnealingWarmRestarts", "LinearLR", "OneCycleLR", "PolynomialLR"]


class LinearLR(LRScheduler):
    r"""Change the lr's factor linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` epochs (the
    usual warm-up): :math:`\eta_t = \eta_0 \left(f_s + (f_e - f_s) \frac{\min(t, T)}{T}\right)`.

    Args:
        optimizer: the optimizer.
        start_factor: :math:`f_s`, in (0, 1]. Default: 1/3.
        end_factor: :math:`f_e`, in [0, 1]. Default: 1.0.
        total_iters: :math:`T`, the number of epochs of the ramp. Default: 5.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(round(sched.get_last_lr()[0], 6)); opt.step(); sched.step()
        >>> lrs
        [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.start_factor = check_float("LinearLR", "start_factor", start_factor, low=0.0, high=1.0, low_open=True)
        self.end_factor = check_float("LinearLR", "end_factor", end_factor, low=0.0, high=1.0)
        self.total_iters = check_int("LinearLR", "total_iters", total_iters, minimum=1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return _group_lrs(self.optimizer)
        # the ratio eta_t / eta_{t-1} of two consecutive values of the linear ramp
        slope = self.end_factor - self.start_factor
        ratio = 1.0 + slope / (self.total_iters * self.start_factor + (self.last_epoch - 1) * slope)
        return [group["lr"] * ratio for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            base_lr
            * (
                self.start_factor
                + (self.end_factor - self.start_factor) * min(self.total_iters, self.last_epoch) / self.total_iters
            )
            for base_lr in self.base_lrs
        ]


class PolynomialLR(LRScheduler):
    r"""Decay the lr polynomially to 0 in ``total_iters`` epochs:
    :math:`\eta_t = \eta_0 \left(1 - \frac{\min(t, T)}{T}\right)^{p}`.

    Args:
        optimizer: the optimizer.
        total_iters: :math:`T`. Default: 5.
        power: :math:`p`. Default: 1.0.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.PolynomialLR(opt, total_iters=4, power=2.0)
        >>> opt.step(); sched.step(); sched.get_last_lr()       # (1 - 1/4)^2
        [0.5625]
    """

    def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1):
        self.total_iters = check_int("PolynomialLR", "total_iters", total_iters, minimum=1)
        self.power = check_float("PolynomialLR", "power", power)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self._is_initial or self.last_epoch > self.total_iters:
            return _group_lrs(self.optimizer)
        decay = ((1.0 - self.last_epoch / self.total_iters) / (1.0 - (self.last_epoch - 1) / self.total_iters)) ** (
            self.power
        )
        return [group["lr"] * decay for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            base_lr * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
            for base_lr in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the initial lr to ``eta_min`` in ``T_max`` epochs (Loshchilov & Hutter 2017,
    without restarts): :math:`\eta_t = \eta_{min} + \frac12(\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))`.

    Computed recursively as PyTorch does, :math:`\eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min})
    \frac{1 + \cos(\pi t / T)}{1 + \cos(\pi (t-1) / T)}`, so it also follows changes made to the lr by other
    schedulers; past ``T_max`` the lr rises again along the cosine (a period of ``2 T_max``).

    Args:
        optimizer: the optimizer.
        T_max: :math:`T_{max}`, the number of epochs to reach ``eta_min``.
        eta_min: :math:`\eta_{min}`. Default: 0.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(round(sched.get_last_lr()[0], 4)); opt.step(); sched.step()
        >>> lrs
        [1.0, 0.8536, 0.5, 0.1464, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = check_int("CosineAnnealingLR", "T_max", T_max, minimum=1)
        self.eta_min = check_float("CosineAnnealingLR", "eta_min", eta_min, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        groups, t, T, eta_min = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return _group_lrs(self.optimizer)
        if self._step_count == 1 and t > 0:  # resumed with last_epoch > 0: the closed form
            return [eta_min + (base_lr - eta_min) * (1 + math.cos(t * math.pi / T)) / 2 for base_lr in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:  # at the bottom of the cosine the ratio below would divide by 0
            return [
                group["lr"] + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                for base_lr, group in zip(self.base_lrs, groups, strict=True)
            ]
        return [
            (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (group["lr"] - eta_min) + eta_min
            for group in groups
        ]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
            for base_lr in self.base_lrs
        ]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts, SGDR (Loshchilov & Hutter 2017).

    .. math:: \eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})\left(1 + \cos\left(\pi\, T_{cur} / T_i\right)\right)

    :math:`T_{cur}` counts the epochs since the last restart; the period starts at :math:`T_0` and is multiplied by
    ``T_mult`` at each restart. ``step(epoch)`` accepts a fractional epoch (``epoch + i / iters_per_epoch``) to
    anneal within an epoch.

    Args:
        optimizer: the optimizer.
        T_0: the first period, in epochs.
        T_mult: the factor of the period after each restart. Default: 1.
        eta_min: :math:`\eta_{min}`. Default: 0.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2)
        >>> lrs = []
        >>> for _ in range(4):
        ...     lrs.append(round(sched.get_last_lr()[0], 4)); opt.step(); sched.step()
        >>> lrs
        [1.0, 0.5, 1.0, 0.5]
    """

    def __init__(
        self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_0 = check_int("CosineAnnealingWarmRestarts", "T_0", T_0, minimum=1)
        self.T_i = self.T_0
        self.T_mult = check_int("CosineAnnealingWarmRestarts", "T_mult", T_mult, minimum=1)
        self.eta_min = check_float("CosineAnnealingWarmRestarts", "eta_min", eta_min, low=0.0)
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        return [
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
            for base_lr in self.base_lrs
        ]

    def step(self, epoch: float | None = None) -> None:
        """Go to the next epoch, or to ``epoch`` (may be fractional)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"CosineAnnealingWarmRestarts.step: expected a non-negative epoch, got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._step_count += 1
        self._get_lr_called_within_step = True
        try:
            values = self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = _group_lrs(self.optimizer)


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin 2018): warm the lr up to ``max_lr``, then anneal it far below the start;
    the momentum moves the opposite way. Stepped after every *batch*.

    Phases (``pct_start`` of the ``total_steps`` for the rise; ``three_phase`` adds a symmetric descent back to
    the initial lr before the final annealing):

    .. math::
        \eta: \frac{\eta_{max}}{\text{div\_factor}} \nearrow \eta_{max} \searrow
            \frac{\eta_{max}}{\text{div\_factor} \cdot \text{final\_div\_factor}}, \qquad
        \mu: \mu_{max} \searrow \mu_{base} \nearrow \mu_{max}

    each along a half cosine, :math:`f(s, e, p) = e + \frac{s - e}{2}(1 + \cos \pi p)` (or linearly).

    Args:
        optimizer: the optimizer.
        max_lr: the peak lr, or one per param group.
        total_steps: the number of steps of the cycle; or give ``epochs`` and ``steps_per_epoch``. Default: None.
        epochs: the number of epochs. Default: None.
        steps_per_epoch: the number of steps (batches) per epoch. Default: None.
        pct_start: the fraction of the cycle spent increasing the lr. Default: 0.3.
        anneal_strategy: ``"cos"`` or ``"linear"``. Default: "cos".
        cycle_momentum: also cycle the momentum (SGD's ``momentum`` or Adam's ``beta1``). Default: True.
        base_momentum: the lowest momentum (at the peak lr), or one per group. Default: 0.85.
        max_momentum: the highest momentum (at the start and the end), or one per group. Default: 0.95.
        div_factor: initial lr = max_lr / div_factor. Default: 25.
        final_div_factor: final lr = initial lr / final_div_factor. Default: 1e4.
        three_phase: use three phases instead of two. Default: False.
        last_epoch: the index of the last step. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
        >>> sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
        >>> lrs = []
        >>> for _ in range(10):
        ...     lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
        >>> round(lrs[0], 4), max(lrs), opt.param_groups[0]["momentum"]
        (0.04, 1.0, 0.95)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.85,
        max_momentum: float | Sequence[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        where = "OneCycleLR"
        _check_optimizer(where, optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            self.total_steps = check_int(where, "total_steps", total_steps, minimum=1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = check_int(where, "epochs", epochs) * check_int(where, "steps_per_epoch", steps_per_epoch)
        else:
            raise ValueError(f"{where}: give either total_steps or both epochs and steps_per_epoch")
        pct_start = check_float(where, "pct_start", pct_start, low=0.0, high=1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{where}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self._anneal_func_type = anneal_strategy
        div_factor = check_float(where, "div_factor", div_factor, low=0.0, low_open=True)
        final_div_factor = check_float(where, "final_div_factor", final_div_factor, low=0.0, low_open=True)
        phases = [
            (float(pct_start * self.total_steps) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
            (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
        ]
        if not three_phase:
            phases = [phases[0], (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        keys = ("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum")
        self._schedule_phases = [dict(zip(keys, phase, strict=True)) for phase in phases]
        max_lrs = [check_float(where, "max_lr", m, low=0.0) for m in _per_group(where, "max_lr", optimizer, max_lr)]
        if last_epoch == -1:
            for lr, group in zip(max_lrs, optimizer.param_groups, strict=True):
                group["initial_lr"] = lr / div_factor
                group["max_lr"] = lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    f"{where}: cycle_momentum=True needs an optimizer with a momentum or betas "
                    f"({type(optimizer).__name__} has neither); pass cycle_momentum=False"
                )
            self.use_beta1 = "betas" in optimizer.defaults
            max_momentums = _per_group(where, "max_momentum", optimizer, max_momentum)
            base_momentums = _per_group(where, "base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for m_max, m_base, group in zip(max_momentums, base_momentums, optimizer.param_groups, strict=True):
                    if self.use_beta1:
                        group["betas"] = (m_max, *group["betas"][1:])
                    else:
                        group["momentum"] = m_max
                    group["max_momentum"] = m_max
                    group["base_momentum"] = m_base
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(
                f"OneCycleLR: tried to step {step_num} times, but the cycle has total_steps={self.total_steps}"
            )
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step_num <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        momentum = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                    break
                start_step = phase["end_step"]
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum
        return lrs
