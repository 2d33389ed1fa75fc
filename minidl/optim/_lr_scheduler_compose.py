r"""Schedulers that combine others (``SequentialLR``, ``ChainedScheduler``) or follow a metric (``ReduceLROnPlateau``).

Import them from :mod:`minidl.optim.lr_scheduler` (this file only keeps that one under ~500 lines).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from minidl.nn._checks import check_float, check_int
from minidl.optim._lr_scheduler_base import LRScheduler, _check_optimizer, _group_lrs, _per_group, _plain
from minidl.optim.optimizer import Optimizer

__all__ = ["ChainedScheduler", "ReduceLROnPlateau", "SequentialLR"]


def _check_schedulers(where: str, optimizer: Optimizer, schedulers: Sequence[Any]) -> None:
    if len(schedulers) < 1:
        raise ValueError(f"{where} expects at least one scheduler, got none")
    for i, scheduler in enumerate(schedulers):
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(f"{where} does not support ReduceLROnPlateau (at index {i}): its step() needs a metric")
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"{where}: schedulers[{i}] is a {type(scheduler).__name__}, not an LRScheduler")
        if scheduler.optimizer is not optimizer:
            raise ValueError(
                f"{where} expects all schedulers to belong to the same optimizer, but schedulers[{i}] "
                f"({type(scheduler).__name__}) has another one"
            )


class SequentialLR(LRScheduler):
    r"""Run schedulers one after another, switching at the given milestones (e.g. warm-up then cosine).

    At milestone :math:`m_i` the scheduler :math:`i + 1` starts from its own epoch 0 (its closed form at 0, i.e.
    its initial lr).

    Args:
        optimizer: the optimizer (the schedulers must all belong to it).
        schedulers: the schedulers, in order.
        milestones: ``len(schedulers) - 1`` epochs at which to switch to the next scheduler.
        last_epoch: the index of the last epoch. Default: -1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> from minidl.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> warmup = LinearLR(opt, start_factor=0.5, total_iters=2)
        >>> sched = SequentialLR(opt, [warmup, CosineAnnealingLR(opt, T_max=2)], milestones=[2])
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(round(sched.get_last_lr()[0], 4)); opt.step(); sched.step()
        >>> lrs
        [0.5, 0.75, 1.0, 0.5, 0.0]
    """

    def __init__(
        self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int], last_epoch: int = -1
    ) -> None:
        _check_optimizer("SequentialLR", optimizer)
        schedulers = list(schedulers)
        _check_schedulers("SequentialLR", optimizer, schedulers)
        milestones = [check_int("SequentialLR", "each milestone", m, minimum=0) for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR expects one milestone fewer than schedulers, got {len(schedulers)} schedulers and "
                f"{len(milestones)} milestones"
            )
        if milestones != sorted(milestones):
            raise ValueError(f"SequentialLR: milestones must be increasing, got {milestones}")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        # Each scheduler's construction already stepped once; undo that and start the first one afresh.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self._recursive_undo(self)
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def _recursive_undo(self, sched: Any) -> None:
        if hasattr(sched, "_schedulers"):
            for s in sched._schedulers:
                self._recursive_undo(s)
        elif hasattr(sched, "last_epoch"):
            sched.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        """Step the scheduler of the current phase (or start the next one at a milestone)."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        state = {k: _plain(v) for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        schedulers = state.pop("_schedulers")
        self.__dict__.update(state)
        for s, saved in zip(self._schedulers, schedulers, strict=True):
            s.load_state_dict(saved)


class ChainedScheduler(LRScheduler):
    r"""Step several schedulers together at every step: their factors multiply (e.g. a constant warm-up factor and
    an exponential decay).

    Args:
        schedulers: the schedulers, stepped in this order.
        optimizer: their optimizer. Default: the first scheduler's.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> from minidl.optim.lr_scheduler import ChainedScheduler, ConstantLR, ExponentialLR
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = ChainedScheduler([ConstantLR(opt, factor=0.5, total_iters=2), ExponentialLR(opt, gamma=0.9)])
        >>> lrs = []
        >>> for _ in range(3):
        ...     lrs.append(round(sched.get_last_lr()[0], 4)); opt.step(); sched.step()
        >>> lrs
        [0.5, 0.45, 0.81]
    """

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None = None) -> None:
        schedulers = list(schedulers)
        if len(schedulers) < 1:
            raise ValueError("ChainedScheduler expects at least one scheduler, got none")
        optimizer = optimizer if optimizer is not None else schedulers[0].optimizer
        _check_optimizer("ChainedScheduler", optimizer)
        _check_schedulers("ChainedScheduler", optimizer, schedulers)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = _group_lrs(optimizer)

    def step(self) -> None:  # type: ignore[override]
        """Step every scheduler once."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = _group_lrs(self.optimizer)

    state_dict = SequentialLR.state_dict
    load_state_dict = SequentialLR.load_state_dict


class ReduceLROnPlateau(LRScheduler):
    r"""Multiply the lr by ``factor`` when a metric (e.g. the validation loss) has stopped improving.

    The metric improves when it beats the best so far by the threshold: :math:`a < best\,(1 - \text{threshold})`
    (mode ``"min"``, ``"rel"``), :math:`a < best - \text{threshold}` (``"abs"``), and mirrored for ``"max"``. After
    more than ``patience`` epochs without improvement the lr becomes :math:`\max(\eta \cdot \text{factor},
    \text{min\_lr})` (unless that changes it by less than ``eps``), then ``cooldown`` epochs pass before bad epochs
    count again.

    Args:
        optimizer: the optimizer.
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy). Default: "min".
        factor: the decay factor, < 1. Default: 0.1.
        patience: epochs without improvement tolerated before decaying. Default: 10.
        threshold: the least improvement that counts. Default: 1e-4.
        threshold_mode: ``"rel"`` or ``"abs"``. Default: "rel".
        cooldown: epochs to wait after a decay before counting bad epochs again. Default: 0.
        min_lr: a lower bound on the lr, or one per param group. Default: 0.
        eps: the least change of lr applied. Default: 1e-8.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=1.0)
        >>> sched = optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5)
        >>> for val_loss in [1.0, 0.9, 0.95, 0.97]:   # two epochs without improvement > patience
        ...     opt.step(); sched.step(val_loss)
        >>> sched.get_last_lr()
        [0.5]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        where = "ReduceLROnPlateau"
        _check_optimizer(where, optimizer)
        self.factor = check_float(where, "factor", factor, low=0.0, high=1.0, high_open=True)
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr = None
            self.min_lrs = [
                check_float(where, "min_lr", m, low=0.0) for m in _per_group(where, "min_lr", optimizer, min_lr)
            ]
        else:
            self.default_min_lr = check_float(where, "min_lr", min_lr, low=0.0)
            self.min_lrs = [self.default_min_lr] * len(optimizer.param_groups)
        self.patience = check_int(where, "patience", patience, minimum=0)
        self.cooldown = check_int(where, "cooldown", cooldown, minimum=0)
        self.eps = check_float(where, "eps", eps, low=0.0)
        self.last_epoch = 0
        self._last_lr = _group_lrs(optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"{where}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{where}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.threshold = check_float(where, "threshold", threshold, low=0.0)
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` improves on ``best`` by more than the threshold."""
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics: Any) -> None:  # type: ignore[override]
        """Record this epoch's metric and decay the lr after ``patience`` epochs without improvement."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(
                f"ReduceLROnPlateau.step expects the monitored metric (a number), got {type(metrics).__name__}"
            ) from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown are ignored
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = _group_lrs(self.optimizer)

    def _reduce_lr(self) -> None:
        if len(self.optimizer.param_groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"ReduceLROnPlateau: the optimizer has {len(self.optimizer.param_groups)} param groups but "
                    f"min_lr gave {len(self.min_lrs)} values; set scheduler.min_lrs to one value per group"
                )
            self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
        for i, group in enumerate(self.optimizer.param_groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr
