"""Callbacks: code that :class:`~minidl.train.Trainer` runs at fixed points of training (Keras/Lightning style).

The hooks, in the order the trainer calls them::

    on_train_begin(trainer)
    for each epoch:
        on_epoch_begin(trainer, epoch)
        on_batch_end(trainer, batch_index, batch_logs)      # after optimizer.step() (and a per-batch scheduler step)
        on_epoch_end(trainer, epoch, logs)                  # logs: the epoch's record, also in trainer.history
    on_train_end(trainer)                                   # or, when training raised: on_exception(trainer, error)

Callbacks run in ascending ``order`` (stable); :class:`ModelCheckpoint` has ``order = 100`` so that it runs last and
the checkpoint holds the final state of every other callback. A callback sets ``trainer.stop_training = True`` to
end training after the current epoch. ``state_dict()`` / ``load_state_dict()`` are saved in checkpoints, so an
:class:`EarlyStopping` counter survives a resume.

* :class:`EarlyStopping` stops when the monitored value (``val_loss`` by default) has not improved by ``min_delta``
  for ``patience`` epochs, and puts back a copy of the best epoch's weights at the end.
* :class:`ModelCheckpoint` writes full training checkpoints atomically with :func:`minidl.save`: ``last.npz`` after
  every epoch (what ``fit(..., resume=True)`` reads), ``epoch_NNN.npz`` every ``every_n_epochs`` epochs and
  ``best.npz`` when the monitored value improves. Under :mod:`minidl.distributed` only rank 0 writes them.
* :class:`LearningRateMonitor` records the learning rate of every param group per step or per epoch.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from minidl.nn._checks import check_float, check_int
from minidl.serialization import save

#: the :class:`minidl.train.Trainer` that calls the hooks (named, not imported: ``trainer.py`` imports this file)
Trainer = Any

__all__ = ["Callback", "EarlyStopping", "LearningRateMonitor", "ModelCheckpoint"]


def _on_main_process() -> bool:
    """minidl.distributed: False on the ranks other than 0 of a process group, which neither write files nor print
    (every rank runs the same training loop). True without one; mpi4py is never imported from here."""
    distributed = sys.modules.get("minidl.distributed")
    return distributed is None or distributed.is_main_process()


class Callback:
    """Base class: override the hooks you need; each does nothing by default."""

    #: callbacks run in ascending order (stable for equal values)
    order = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume has restored the state)."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based)."""

    def on_batch_end(self, trainer: Trainer, batch: int, logs: dict[str, Any]) -> None:
        """After each training step; ``logs`` has the batch's ``loss``, ``lr``, ``lrs`` (per group), ``batch_size``."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """After the epoch's training, validation and epoch-level scheduler step; ``logs`` is the epoch's record."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch (or the one at which training was stopped)."""

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        """When training raised (a NaN loss, Ctrl-C, ...), instead of :meth:`on_train_end`; the exception
        propagates afterwards (Lightning's ``on_exception``)."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive a resume, as data :func:`minidl.save` can write."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class _Monitor:
    """Tracks the best value of a logged metric (``mode`` "min" or "max", improvement by more than ``min_delta``)."""

    def __init__(self, where: str, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"{where}: monitor must be the name of a logged metric, got {monitor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"{where}: mode must be 'min' (a loss) or 'max' (an accuracy), got {mode!r}")
        self.where = where
        self.monitor = monitor
        self.mode = mode
        self.min_delta = check_float(where, "min_delta", min_delta, low=0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0

    def value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            raise KeyError(
                f"{self.where}: monitor {self.monitor!r} is not among the logged metrics {sorted(logs)}; "
                "pass a validation loader or monitor a train_* metric"
            )
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def state(self) -> dict[str, Any]:
        return {"best": float(self.best), "best_epoch": int(self.best_epoch)}

    def load(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])


class _MonitoredCallback(Callback):
    """A callback that watches one metric through a :class:`_Monitor` (``self._monitor``)."""

    _monitor: _Monitor

    @property
    def monitor(self) -> str:
        return self._monitor.monitor

    @property
    def best(self) -> float:
        return self._monitor.best

    @property
    def best_epoch(self) -> int:
        return self._monitor.best_epoch


class EarlyStopping(_MonitoredCallback):
    """Stop training when a monitored metric has stopped improving; optionally end with the best weights.

    An epoch *improves* when its value beats the best so far by more than ``min_delta`` (below for ``mode="min"``,
    above for ``"max"``). After ``patience`` epochs in a row without improvement, training stops at the end of the
    epoch. With ``restore_best_weights`` a *copy* of the model's ``state_dict()`` (parameters and buffers such as
    BatchNorm statistics) is kept at every improvement and loaded back when training ends, whether it stopped
    early or ran out of epochs, so the model you get is the one of the best epoch.

    Args:
        monitor: the metric to watch, a key of the epoch logs. Default: "val_loss".
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy). Default: "min".
        patience: epochs without improvement before stopping. Default: 5.
        min_delta: the smallest change that counts as an improvement. Default: 0.0.
        restore_best_weights: load the best epoch's weights when training ends. Default: True.
        verbose: print a line when stopping and when restoring. Default: False.

    Attributes:
        best, best_epoch: the best value and its (1-based) epoch. wait: epochs since the last improvement.
        stopped_epoch: the epoch at which training was stopped (0: not stopped).

    Examples:
        >>> stopper = EarlyStopping(monitor="val_loss", patience=2)
        >>> class FakeTrainer: stop_training = False; model = None
        >>> t = FakeTrainer()
        >>> stopper.restore_best_weights = False
        >>> for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.85, 0.7], start=1):
        ...     stopper.on_epoch_end(t, epoch, {"val_loss": loss})
        ...     if t.stop_training: break
        >>> stopper.stopped_epoch, stopper.best_epoch, stopper.best
        (4, 2, 0.8)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        verbose: bool = False,
    ) -> None:
        self._monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = check_int("EarlyStopping", "patience", patience, minimum=0)
        self.restore_best_weights = bool(restore_best_weights)
        self.verbose = bool(verbose)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_state: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best, self._monitor.best_epoch = value, epoch
            self.wait = 0
            if self.restore_best_weights:
                # a copy: state_dict() returns the live arrays, which the next optimizer step changes in place
                self.best_state = {k: v.copy() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            if self.verbose:
                print(
                    f"EarlyStopping: {self.monitor} has not improved for {self.wait} epochs (best {self.best:.4g} at "
                    f"epoch {self.best_epoch}); stopping after epoch {epoch}"
                )

    def on_train_end(self, trainer: Trainer) -> None:
        if self.restore_best_weights and self.best_state is not None and self.best_epoch != trainer.epoch:
            trainer.model.load_state_dict(self.best_state)
            if self.verbose:
                print(
                    f"EarlyStopping: restored the weights of epoch {self.best_epoch} ({self.monitor} {self.best:.4g})"
                )

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._monitor.state(),
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._monitor.load(state)
        self.wait = int(state["wait"])
        self.stopped_epoch = int(state["stopped_epoch"])
        best = state.get("best_state")
        self.best_state = None if best is None else dict(best)


class ModelCheckpoint(_MonitoredCallback):
    """Save full training checkpoints (model, optimizer, scheduler, epoch, RNG state, history, loader epochs, the
    callbacks' state) with :func:`minidl.save`: atomic, no pickle.

    Files in ``dirpath``:

    * ``last.npz``: after every epoch (when ``save_last``), what ``Trainer.fit(..., resume=True)`` continues from;
    * ``epoch_NNN.npz``: every ``every_n_epochs`` epochs (``epoch_005.npz``, ...); 0 disables them;
    * ``best.npz``: when ``monitor`` improves (when ``save_best``).

    Every file is a complete checkpoint: ``Trainer.load_checkpoint(path)`` or ``fit(..., resume=path)`` continues
    from any of them; ``minidl.load(path)["model"]`` is the model's state dict alone.

    Args:
        dirpath: the folder (created if missing).
        every_n_epochs: period of the numbered checkpoints. Default: 1.
        save_best: keep ``best.npz``. Default: True.
        monitor: the metric deciding "best". Default: "val_loss".
        mode: ``"min"`` or ``"max"``. Default: "min".
        save_last: keep ``last.npz``. Default: True.
        suffix: ``".npz"`` or ``".safetensors"``. Default: ".npz".

    Attributes:
        best, best_epoch: the best value so far and its epoch. saved: paths written, in order.
    """

    order = 100

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        every_n_epochs: int = 1,
        save_best: bool = True,
        monitor: str = "val_loss",
        mode: str = "min",
        save_last: bool = True,
        suffix: str = ".npz",
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_epochs = check_int("ModelCheckpoint", "every_n_epochs", every_n_epochs, minimum=0)
        self.save_best = bool(save_best)
        self.save_last = bool(save_last)
        if suffix not in (".npz", ".safetensors"):
            raise ValueError(f"ModelCheckpoint: suffix must be '.npz' or '.safetensors', got {suffix!r}")
        self.suffix = suffix
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode, 0.0)
        self.saved: list[Path] = []

    @property
    def last_path(self) -> Path:
        return self.dirpath / f"last{self.suffix}"

    @property
    def best_path(self) -> Path:
        return self.dirpath / f"best{self.suffix}"

    def epoch_path(self, epoch: int) -> Path:
        return self.dirpath / f"epoch_{epoch:03d}{self.suffix}"

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        targets = []
        if self.save_best:
            value = self._monitor.value(logs)
            if self._monitor.improved(value):
                self._monitor.best, self._monitor.best_epoch = value, epoch
                targets.append(self.best_path)
        if self.every_n_epochs and epoch % self.every_n_epochs == 0:
            targets.append(self.epoch_path(epoch))
        if self.save_last:
            targets.append(self.last_path)
        if not targets:
            return
        if not _on_main_process():  # minidl.distributed: rank 0 writes, the other ranks hold the same state
            return
        checkpoint = trainer.checkpoint()  # built after the monitor update, so it holds this callback's new state
        for path in targets:
            save(checkpoint, path)
            self.saved.append(path)

    def state_dict(self) -> dict[str, Any]:
        return self._monitor.state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._monitor.load(state)


class LearningRateMonitor(Callback):
    """Record the learning rate of every param group, after every step or every epoch (to plot a schedule).

    Args:
        logging_interval: ``"step"`` (the lr used by each optimizer step) or ``"epoch"`` (the lr at the start of
            each epoch). Default: "step".

    Attributes:
        lrs: one list of per-group learning rates per step (or epoch).
    """

    def __init__(self, logging_interval: str = "step") -> None:
        if logging_interval not in ("step", "epoch"):
            raise ValueError(
                f"LearningRateMonitor: logging_interval must be 'step' or 'epoch', got {logging_interval!r}"
            )
        self.logging_interval = logging_interval
        self.lrs: list[list[float]] = []

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if self.logging_interval == "epoch":
            self.lrs.append([float(g["lr"]) for g in trainer.optimizer.param_groups])

    def on_batch_end(self, trainer: Trainer, batch: int, logs: dict[str, Any]) -> None:
        if self.logging_interval == "step":
            self.lrs.append(list(logs["lrs"]))

    def state_dict(self) -> dict[str, Any]:
        return {"lrs": [list(row) for row in self.lrs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lrs = [[float(v) for v in row] for row in state["lrs"]]
