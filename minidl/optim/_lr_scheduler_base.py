"""What every learning-rate scheduler shares: the :class:`LRScheduler` base class and its argument helpers.

The schedulers themselves are in :mod:`minidl.optim.lr_scheduler` (and its two halves, ``_lr_scheduler_annealing``
and ``_lr_scheduler_compose``), which all import this file.
"""

from __future__ import annotations

import warnings
from typing import Any

from minidl.optim.optimizer import Optimizer

_ORDER_WARNING = (
    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. Call them in the order "
    "`optimizer.step()` then `lr_scheduler.step()`, else the first value of the learning rate schedule is skipped."
)


def _check_optimizer(where: str, optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{where}: expected a minidl.optim.Optimizer, got {type(optimizer).__name__}")


def _per_group(where: str, name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    """``value`` repeated for each param group, or a list with one value per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{where}: {name} must have one value per param group ({len(optimizer.param_groups)}), got {len(value)}"
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


def _group_lrs(optimizer: Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


class LRScheduler:
    """Base class of the schedulers: subclasses implement ``get_lr()`` (the lrs for ``self.last_epoch``).

    Args:
        optimizer: the optimizer whose learning rates are scheduled.
        last_epoch: index of the last epoch; -1 (default) starts a new schedule. Only set it to resume, after the
            optimizer's state (with ``initial_lr``) was loaded.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        where = type(self).__name__
        _check_optimizer(where, optimizer)
        if not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"{where}: last_epoch must be an int >= -1, got {last_epoch!r}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"{where}: param_groups[{i}] has no 'initial_lr' while resuming with last_epoch={last_epoch};"
                        " load the optimizer's state dict first, or use last_epoch=-1 for a new schedule"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        """Reset the step count and set the lr of the first epoch."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rate of each group for epoch ``self.last_epoch`` (called by ``step``; use get_last_lr())."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr()")

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()`` (or by construction), one per param group."""
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Move to the next epoch (or to ``epoch``, deprecated as in PyTorch) and set the groups' lrs."""
        if self._step_count == 1 and not getattr(self.optimizer, "_opt_called", True):
            warnings.warn(_ORDER_WARNING, UserWarning, stacklevel=2)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(
                "The epoch parameter of `scheduler.step()` is deprecated (as in PyTorch); call step() without it",
                UserWarning,
                stacklevel=2,
            )
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", None)
                values = closed_form() if closed_form is not None else self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = _group_lrs(self.optimizer)

    def _warn_get_lr_outside_step(self) -> None:
        if not getattr(self, "_get_lr_called_within_step", False):
            warnings.warn(
                "To get the last learning rate computed by the scheduler, please use `get_last_lr()`.",
                UserWarning,
                stacklevel=3,
            )

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer, as plain data (save it with the optimizer's state_dict)."""
        return {key: _plain(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes saved by :meth:`state_dict`."""
        self.__dict__.update(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self.get_last_lr()})"


def _plain(value: Any) -> Any:
    """A copy of ``value`` made of lists/dicts (no references shared with the live scheduler)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value
