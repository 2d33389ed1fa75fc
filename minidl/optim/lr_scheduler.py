r"""Learning-rate schedules, with PyTorch's names, arguments and step order (``torch.optim.lr_scheduler``).

A scheduler rewrites ``group["lr"]`` of every param group of its optimizer. The order is PyTorch's:

.. code-block:: python

    scheduler = StepLR(opt, step_size=30)   # construction sets the lr of epoch 0 (and group["initial_lr"])
    for epoch in range(100):
        train_one_epoch(...)                # opt.step() inside
        scheduler.step()                    # *after* the optimizer: moves to the lr of the next epoch

``last_epoch`` counts the calls to ``step()`` (``0`` after construction); ``get_last_lr()`` is the list of the
current learning rates, one per param group. Most schedules are computed *recursively* from the current lr, as
PyTorch does (so that several schedulers can be chained and the results match PyTorch's to the last bits); the
closed form :math:`\eta_t` given in each docstring is what the recursion computes. ``state_dict()`` holds plain
Python data (numbers, lists, dicts, strings) and no optimizer, so it can be saved without pickle.

Common recipes:

* step decay (ResNet on ImageNet): ``MultiStepLR(opt, milestones=[30, 60, 90], gamma=0.1)``;
* warm-up then cosine: ``SequentialLR(opt, [LinearLR(opt, 0.01, total_iters=5), CosineAnnealingLR(opt, 95)],
  milestones=[5])``;
* one-cycle (super-convergence, Smith 2018): ``OneCycleLR(opt, max_lr=0.1, total_steps=epochs * len(loader))``,
  stepped after every batch;
* ``ReduceLROnPlateau(opt, factor=0.1, patience=10)`` stepped with the validation loss, ``step(val_loss)``.
"""

from __future__ import annotations

import types
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Any

from minidl.nn._checks import check_float, check_int
from minidl.optim._lr_scheduler_annealing import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    LinearLR,
    OneCycleLR,
    PolynomialLR,
)
from minidl.optim._lr_scheduler_base import LRScheduler, _check_optimizer, _group_lrs, _per_group, _plain
from minidl.optim._lr_scheduler_compose import ChainedScheduler, ReduceLROnPlateau, SequentialLR
from minidl.optim.optimizer import Optimizer

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]


class _LambdaMixin:
    """state_dict/load_state_dict for schedulers holding user functions (skipped; callable objects' __dict__ kept)."""

    lr_lambdas: list[Callable[[int], float]]

    def _set_lambdas(self, where: str, optimizer: Optimizer, lr_lambda: Any) -> None:
        _check_optimizer(where, optimizer)
        self.lr_lambdas = _per_group(where, "lr_lambda", optimizer, lr_lambda)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"{where}: lr_lambda must be a function of the epoch, got {type(fn).__name__}")

    def state_dict(self) -> dict[str, Any]:
        state = {key: _plain(v) for key, v in self.__dict__.items() if key not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [
            None if isinstance(fn, types.FunctionType) else dict(fn.__dict__) for fn in self.lr_lambdas
        ]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        lambdas = state.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        self.__dict__.update(state)
        for fn, saved in zip(self.lr_lambdas, lambdas, strict=True):
            if saved is not None:
                fn.__dict__.update(saved)


class LambdaLR(_LambdaMixin, LRScheduler):
    r"""The initial lr times a function of the epoch: :math:`\eta_t = \eta_0 \cdot \lambda(t)`.

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the epoch (int) returning a factor, or a list of them (one per param group).
        last_epoch: the index of the last epoch. Default: -1.

    ``state_dict()`` does not contain the functions (as in PyTorch): recreate them before loading.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5 ** epoch)
        >>> for _ in range(2):
        ...     opt.step(); sched.step()
        >>> sched.get_last_lr()
        [0.25]
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Any, last_epoch: int = -1) -> None:
        self._set_lambdas("LambdaLR", optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        return [base_lr * fn(self.last_epoch) for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]


class MultiplicativeLR(_LambdaMixin, LRScheduler):
    r"""Multiply the lr by a function of the epoch at every step: :math:`\eta_t = \eta_{t-1} \cdot \lambda(t)`.

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the epoch returning a factor, or a list of them (one per param group).
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.MultiplicativeLR(opt, lambda epoch: 0.9)
        >>> opt.step(); sched.step(); sched.get_last_lr()
        [0.9]
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Any, last_epoch: int = -1) -> None:
        self._set_lambdas("MultiplicativeLR", optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self._is_initial:
            return _group_lrs(self.optimizer)
        return [
            group["lr"] * fn(self.last_epoch)
            for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups, strict=True)
        ]


class StepLR(LRScheduler):
    r"""Decay the lr by ``gamma`` every ``step_size`` epochs: :math:`\eta_t = \eta_0\, \gamma^{\lfloor t / s \rfloor}`.

    Args:
        optimizer: the optimizer.
        step_size: :math:`s`, the period of the decay, in epochs.
        gamma: the decay factor. Default: 0.1.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
        >>> lrs
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = check_int("StepLR", "step_size", step_size, minimum=1)
        self.gamma = check_float("StepLR", "gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _group_lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    r"""Decay the lr by ``gamma`` at each milestone: :math:`\eta_t = \eta_0\, \gamma^{\#\{m \le t\}}`.

    Args:
        optimizer: the optimizer.
        milestones: the epochs at which to decay (a milestone listed twice decays twice).
        gamma: the decay factor. Default: 0.1.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.1)
        >>> lrs = []
        >>> for _ in range(4):
        ...     lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
        >>> lrs
        [1.0, 0.1, 0.1, 0.01]
    """

    def __init__(
        self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        milestones = list(milestones)
        for m in milestones:
            check_int("MultiStepLR", "each milestone", m, minimum=0)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = check_float("MultiStepLR", "gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        count = self.milestones.count(self.last_epoch)
        if count == 0:
            return _group_lrs(self.optimizer)
        return [group["lr"] * self.gamma**count for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** bisect_right(self.milestones, self.last_epoch) for base_lr in self.base_lrs]


class ConstantLR(LRScheduler):
    r"""Multiply the lr by ``factor`` for the first ``total_iters`` epochs: :math:`\eta_t = \eta_0 \cdot
    (\text{factor if } t < T \text{ else } 1)`.

    Args:
        optimizer: the optimizer.
        factor: the factor, in (0, 1]. Default: 1/3.
        total_iters: :math:`T`. Default: 5.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=2)
        >>> lrs = []
        >>> for _ in range(3):
        ...     lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
        >>> lrs
        [0.5, 0.5, 1.0]
    """

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1):
        self.factor = check_float("ConstantLR", "factor", factor, low=0.0, high=1.0, low_open=True)
        self.total_iters = check_int("ConstantLR", "total_iters", total_iters, minimum=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in self.optimizer.param_groups]
        if self.last_epoch != self.total_iters:
            return _group_lrs(self.optimizer)
        return [group["lr"] * (1.0 / self.factor) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            base_lr * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
            for base_lr in self.base_lrs
        ]


class ExponentialLR(LRScheduler):
    r"""Decay the lr by ``gamma`` every epoch: :math:`\eta_t = \eta_0\, \gamma^t`.

    Args:
        optimizer: the optimizer.
        gamma: the decay factor.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
        >>> opt.step(); sched.step(); opt.step(); sched.step(); sched.get_last_lr()
        [0.25]
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_float("ExponentialLR", "gamma", gamma, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self._is_initial:
            return _group_lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma**self.last_epoch for base_lr in self.base_lrs]
