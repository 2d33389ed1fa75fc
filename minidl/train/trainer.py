"""``Trainer`` and ``fit``: epochs of :func:`train_one_epoch` and :func:`evaluate`, with history, callbacks,
checkpoints and exact resume.

One epoch of ``fit``:

1. ``train_one_epoch`` (the scheduler steps after each ``optimizer.step()`` when ``scheduler_step="batch"``);
2. ``evaluate`` on the validation loader, if there is one;
3. ``scheduler.step()`` when ``scheduler_step="epoch"`` (``ReduceLROnPlateau`` gets the monitored validation value);
4. the epoch's record (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``lr``, ``time``,
   ...) is appended to ``trainer.history`` (and written to ``history_path``);
5. the callbacks' ``on_epoch_end`` (early stopping, checkpoints); ``trainer.stop_training`` ends the run.

**Exact resume.** A checkpoint (written at the end of an epoch by :class:`~minidl.train.ModelCheckpoint`) holds
everything the next epoch depends on: the model's parameters and buffers, the optimizer's state (momentum buffers,
step counts, per-group lrs), the scheduler's state, minidl's global random generator (dropout masks, the loaders'
per-epoch seeds when they have none, Mixup), the loaders' epoch counters (a :class:`~minidl.data.DataLoader`
shuffles epoch ``e`` with ``SeedSequence(seed, spawn_key=(e, 0))`` and augments batch ``b`` with ``(e, 1, b)``, so
restoring ``loader.epoch`` restores the data order and the augmentation), the history and the callbacks' state.
Training 4 epochs straight and training 2, saving, building everything anew, resuming and training 2 more give
bit-identical parameters. Checkpoints are taken between epochs; a run killed mid-epoch resumes from the start of that
epoch.
"""

from __future__ import annotations

import copy
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from minidl._atomic import remove_stale_temp_files
from minidl._random import get_rng_state, set_rng_state
from minidl.backend import get_backend
from minidl.nn.fusion_pass import fuse as fuse_modules
from minidl.nn.module import Module
from minidl.serialization import load
from minidl.train.callbacks import Callback, ModelCheckpoint, _on_main_process
from minidl.train.history import History
from minidl.train.loop import _is_plateau, current_lrs, evaluate, train_one_epoch
from minidl.train.progress import format_metrics

__all__ = ["Trainer", "fit"]

_FORMAT = "minidl-training-checkpoint"


# what each entry of a training checkpoint must be (checked before anything is restored)
_CHECKPOINT_ENTRIES: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "model": (dict,),
    "optimizer": (dict,),
    "scheduler": (dict, type(None)),
    "rng": (dict,),
    "history": (dict,),
    "loaders": (dict,),
    "callbacks": (dict,),
}


def _check_checkpoint(path: Any, ckpt: dict[str, Any]) -> None:
    """Raise a ValueError naming the entry unless ``ckpt`` has every entry of :meth:`Trainer.checkpoint`."""
    missing = [k for k in _CHECKPOINT_ENTRIES if k not in ckpt]
    if missing:
        raise ValueError(
            f"Trainer.load_checkpoint: {path} lacks the entries {missing}; expected a checkpoint written by "
            f"Trainer.save_checkpoint or ModelCheckpoint, with {sorted(_CHECKPOINT_ENTRIES)}"
        )
    for key, types in _CHECKPOINT_ENTRIES.items():
        value = ckpt[key]
        if not isinstance(value, types) or isinstance(value, bool):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise ValueError(
                f"Trainer.load_checkpoint: {path}: entry {key!r} should be {names}, got {type(value).__name__} "
                f"({value!r:.60})"
            )
    if ckpt["epoch"] < 0:
        raise ValueError(f"Trainer.load_checkpoint: {path}: entry 'epoch' should be >= 0, got {ckpt['epoch']}")
    for name, state in ckpt["loaders"].items():  # (restored at the next fit, after the rest: checked now)
        if state is None:
            continue
        epoch, seed = (state.get(k) if isinstance(state, dict) else None for k in ("epoch", "seed"))
        if (
            name not in ("train", "val")
            or not isinstance(state, dict)
            or set(state) != {"epoch", "seed"}
            or isinstance(epoch, bool)
            or not isinstance(epoch, int)
            or epoch < 0
            or (seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)))
        ):
            raise ValueError(
                f"Trainer.load_checkpoint: {path}: entry 'loaders' should map 'train' and 'val' to None or "
                f"{{'epoch': int >= 0, 'seed': int or None}}, got {name!r}: "
                f"{dict(state) if isinstance(state, dict) else state!r:.80}"
            )


def _loader_state(loader: Any) -> dict[str, Any] | None:
    if loader is None or not hasattr(loader, "epoch"):
        return None
    return {"epoch": int(loader.epoch), "seed": getattr(loader, "seed", None)}


class Trainer:
    """Train a model for several epochs: the loop helpers plus history, callbacks, checkpoints and resume.

    Args:
        model: the model.
        loss_fn: the loss (``loss_fn(out, y) -> float``, ``loss_fn.backward()``).
        optimizer: a :class:`minidl.optim.Optimizer`.
        scheduler: a learning-rate scheduler or None. Default: None.
        scheduler_step: ``"epoch"`` (StepLR, CosineAnnealingLR over epochs, ReduceLROnPlateau) or ``"batch"``
            (OneCycleLR, schedules counted in steps). Default: "epoch".
        metrics: as in :func:`train_one_epoch`. Default: None (accuracy).
        callbacks: :class:`Callback` objects. Default: None.
        history_path: write the history there after every epoch (``.csv``, else JSON). Default: None.
        checkpoint_dir: add a ``ModelCheckpoint(checkpoint_dir, every_n_epochs=0, monitor=monitor)`` writing
            ``last.npz`` and ``best.npz`` there (unless a ModelCheckpoint is given in ``callbacks``). Default: None.
        monitor: the metric of the automatic ModelCheckpoint and of ReduceLROnPlateau. Default: "val_loss" (with
            ``"train_loss"`` as the fallback when there is no validation loader).
        progress: progress bars (True: when the output is a terminal; ``"always"``; False). Default: True.
        verbose: print one line of metrics per epoch. Default: True.
        clip_grad_norm, regularization, batch_transform: as in :func:`train_one_epoch`. Default: None.
        log_file: where ``verbose`` lines and progress bars go. Default: None (stdout for lines, stderr for bars).
        fuse: run the model fused, :func:`minidl.nn.fuse` applied in place: BatchNorm+ReLU in one pass, and in
            evaluation Conv2d+BatchNorm2d folded into one convolution. The same Parameter objects (the optimizer
            keeps training them), state_dict keys and results; only the modules that compute change (print the
            model to see them). None: when the current backend has fast kernels (Numba), where fusing pays; False:
            keep the model as built. Default: None.

    Data-parallel training (:mod:`minidl.distributed`): give it a ``DistributedDataParallel`` model and a loader with a
    ``DistributedSampler``. Every rank runs the same loop; the sampler's ``set_epoch`` is called before each epoch;
    only rank 0 prints, shows progress bars and writes the history and the checkpoints. The metrics printed are rank
    0's (its shard of the data).

    Attributes:
        history: the :class:`History`. epoch: epochs completed. stop_training: set by a callback to stop.

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn, optim
        >>> from minidl.data import DataLoader, TensorDataset
        >>> _ = minidl.manual_seed(0)
        >>> x = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int64)
        >>> loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, seed=0)
        >>> model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.5), verbose=False)
        >>> history = trainer.fit(loader, loader, epochs=5)
        >>> history["val_loss"][-1] < history["val_loss"][0], trainer.epoch
        (True, 5)
    """

    def __init__(
        self,
        model: Module,
        loss_fn: Any,
        optimizer: Any,
        scheduler: Any = None,
        scheduler_step: str = "epoch",
        metrics: Any = None,
        callbacks: Sequence[Callback] | None = None,
        history_path: str | os.PathLike[str] | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        monitor: str = "val_loss",
        progress: bool | str = True,
        verbose: bool = True,
        clip_grad_norm: float | None = None,
        regularization: Callable[[Module], float] | None = None,
        batch_transform: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        log_file: IO[str] | None = None,
        fuse: bool | None = None,
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"Trainer: model must be a minidl.nn.Module, got {type(model).__name__}")
        if fuse is not None and not isinstance(fuse, bool):
            raise TypeError(f"Trainer: fuse must be None, True or False, got {fuse!r}")
        if scheduler_step not in ("batch", "epoch"):
            raise ValueError(f"Trainer: scheduler_step must be 'batch' or 'epoch', got {scheduler_step!r}")
        if scheduler is not None and _is_plateau(scheduler) and scheduler_step != "epoch":
            raise ValueError(
                "Trainer: ReduceLROnPlateau steps once per epoch with a metric; use scheduler_step='epoch'"
            )
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer: callbacks must be Callback objects, got {type(cb).__name__}")
        if fuse or (fuse is None and get_backend().kernels):  # (after every check: nothing changes on an error)
            model = fuse_modules(model, inplace=True)
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_step = scheduler_step
        self.metrics = metrics
        self.history_path = None if history_path is None else Path(history_path)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.monitor = monitor
        main = _on_main_process()  # minidl.distributed: only rank 0 prints
        self.progress = progress if main else False
        self.verbose = bool(verbose) and main
        self.clip_grad_norm = clip_grad_norm
        self.regularization = regularization
        self.batch_transform = batch_transform
        self.log_file = log_file
        self._user_callbacks = callbacks
        self.callbacks: list[Callback] = []
        self.history = History()
        self.epoch = 0
        self.stop_training = False
        self.train_loader: Any = None
        self.val_loader: Any = None
        self._loader_states: dict[str, Any] = {}

    # ------------------------------------------------------------------ callbacks
    def _setup_callbacks(self, has_val: bool) -> None:
        callbacks = list(self._user_callbacks)
        if self.checkpoint_dir is not None and not any(isinstance(cb, ModelCheckpoint) for cb in callbacks):
            monitor = self.monitor if has_val or not self.monitor.startswith("val_") else "train_loss"
            callbacks.append(ModelCheckpoint(self.checkpoint_dir, every_n_epochs=0, monitor=monitor))
            self._user_callbacks = callbacks
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)

    def _callback_keys(self) -> list[str]:
        keys, seen = [], {}
        for cb in self._user_callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
        return keys

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue training exactly, as data :func:`minidl.save` writes without pickle."""
        return {
            "format": _FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": get_rng_state(),
            "history": self.history.state_dict(),
            "loaders": {"train": _loader_state(self.train_loader), "val": _loader_state(self.val_loader)},
            "callbacks": {
                k: cb.state_dict() for k, cb in zip(self._callback_keys(), self._user_callbacks, strict=True)
            },
        }

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`checkpoint` to ``path`` atomically (``.npz`` or ``.safetensors``)."""
        from minidl.serialization import save

        save(self.checkpoint(), path)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` or :class:`ModelCheckpoint`: model, optimizer,
        scheduler, RNG state, history, callbacks' state and epoch; the loaders' epochs are set by the next
        :meth:`fit`.

        All or nothing: every entry is checked first, and if one cannot be restored (a ``ValueError`` names the
        file and the entry) the trainer is put back as it was.
        """
        ckpt = load(path)
        if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
            raise ValueError(
                f"Trainer.load_checkpoint: {path} is not a training checkpoint (was it a bare state dict?)"
            )
        _check_checkpoint(path, ckpt)
        backup = copy.deepcopy(self.checkpoint())  # what to put back if an entry cannot be restored
        pending = dict(self._loader_states)
        try:
            self._restore(path, ckpt)
        except BaseException:
            self._restore(path, backup)
            self._loader_states = pending
            raise

    def _restore(self, path: Any, ckpt: dict[str, Any]) -> None:
        def entry(name: str, restore: Callable[[], Any]) -> None:
            try:
                restore()
            except RuntimeError as err:  # load_state_dict's mismatch report (as in PyTorch): keep its type
                raise RuntimeError(
                    f"Trainer.load_checkpoint: {path}: the {name!r} entry cannot be restored: {err}"
                ) from err
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
                raise ValueError(
                    f"Trainer.load_checkpoint: {path}: the {name!r} entry cannot be restored ({type(err).__name__}: "
                    f"{err})"
                ) from err

        if self.scheduler is not None and ckpt["scheduler"] is None:
            raise ValueError(f"Trainer.load_checkpoint: {path} has no scheduler state but the trainer has a scheduler")
        entry("rng", lambda: set_rng_state(ckpt["rng"]))  # (validated before it changes anything)
        entry("model", lambda: self.model.load_state_dict(ckpt["model"]))
        entry("optimizer", lambda: self.optimizer.load_state_dict(ckpt["optimizer"]))
        if self.scheduler is not None:
            entry("scheduler", lambda: self.scheduler.load_state_dict(dict(ckpt["scheduler"])))
        history = History()
        entry("history", lambda: history.load_state_dict(ckpt["history"]))
        self.history = history
        saved = ckpt["callbacks"]
        for key, cb in zip(self._callback_keys(), self._user_callbacks, strict=True):
            if key in saved:
                entry(f"callbacks.{key}", lambda cb=cb, key=key: cb.load_state_dict(dict(saved[key])))
        self._loader_states = {k: v for k, v in ckpt["loaders"].items() if v is not None}
        self.epoch = int(ckpt["epoch"])

    def _restore_loaders(self) -> None:
        for name, loader in (("train", self.train_loader), ("val", self.val_loader)):
            state = self._loader_states.pop(name, None)
            if state is None or loader is None or not hasattr(loader, "epoch"):
                continue
            if getattr(loader, "seed", None) != state.get("seed"):
                warnings.warn(
                    f"Trainer: the {name} loader has seed {getattr(loader, 'seed', None)} but the checkpoint was "
                    f"taken with seed {state.get('seed')}; the data order will differ from the original run",
                    UserWarning,
                    stacklevel=3,
                )
            loader.epoch = int(state["epoch"])

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None = None,
        epochs: int = 1,
        resume: bool | str | os.PathLike[str] | None = False,
    ) -> History:
        """Train until ``epochs`` epochs are completed in total (or a callback stops training).

        Args:
            train_loader: training batches ``(x, y)``.
            val_loader: validation batches, or None. Default: None.
            epochs: the total number of epochs (a resumed run continues up to it). Default: 1.
            resume: False or None (start afresh, even when ``checkpoint_dir`` holds a checkpoint; None as in
                PyTorch Lightning's ``ckpt_path``); True (continue from ``checkpoint_dir/last.npz`` if it exists,
                else start afresh); or the path of a checkpoint (str or ``os.PathLike``). Default: False. A resume
                first removes the temporary files that saves killed mid-write left in the checkpoint folders (see
                :mod:`minidl._atomic`).

        Raises:
            TypeError: ``resume`` is none of these (an int, a list, ...).
            ValueError: ``resume`` is an empty path, or True without a checkpoint folder.
            FileNotFoundError: ``resume`` is a path with no checkpoint.

        Returns:
            The :class:`History` (also ``self.history``).
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"Trainer.fit: epochs must be an int >= 0, got {epochs!r}")
        _check_resume(resume)
        self.train_loader, self.val_loader = train_loader, val_loader
        self._setup_callbacks(val_loader is not None)
        if resume is not False and resume is not None:
            path = self._resume_path(resume)
            self._remove_stale_temp_files(path)
            if path is not None:
                self.load_checkpoint(path)
                self._log(f"resumed from {path} after epoch {self.epoch}")
        self._restore_loaders()
        self.stop_training = False
        try:
            self._call("on_train_begin")
            lines = sys.stdout if self.log_file is None else self.log_file
            for epoch in range(self.epoch + 1, epochs + 1):
                sampler = getattr(train_loader, "sampler", None)
                if hasattr(sampler, "set_epoch"):  # minidl.distributed.DistributedSampler: this epoch's shard
                    sampler.set_epoch(epoch - 1)
                self._call("on_epoch_begin", epoch)
                start = time.perf_counter()
                lrs = current_lrs(self.optimizer)
                train = train_one_epoch(
                    self.model,
                    train_loader,
                    self.loss_fn,
                    self.optimizer,
                    scheduler=self.scheduler if self.scheduler_step == "batch" else None,
                    metrics=self.metrics,
                    progress=self.progress,
                    clip_grad_norm=self.clip_grad_norm,
                    regularization=self.regularization,
                    batch_transform=self.batch_transform,
                    desc=f"epoch {epoch}/{epochs}",
                    progress_file=self.log_file,
                    on_batch_end=lambda b, logs: self._call("on_batch_end", b, logs),
                )
                logs: dict[str, Any] = {"epoch": epoch}
                logs.update(
                    {f"train_{k}": v for k, v in train.items() if k not in ("lr", "samples", "time", "throughput")}
                )
                if val_loader is not None:
                    val = evaluate(
                        self.model,
                        val_loader,
                        self.loss_fn,
                        self.metrics,
                        progress=self.progress,
                        desc=f"epoch {epoch}/{epochs} val",
                        progress_file=self.log_file,
                    )
                    logs.update({f"val_{k}": v for k, v in val.items()})
                logs["lr"] = lrs[0]
                logs.update({f"lr_group{i}": lr for i, lr in enumerate(lrs) if i > 0})
                logs["train_throughput"] = train["throughput"]
                if self.scheduler is not None and self.scheduler_step == "epoch":
                    if _is_plateau(self.scheduler):
                        key = self.monitor if self.monitor in logs else "train_loss"
                        self.scheduler.step(logs[key])
                    else:
                        self.scheduler.step()
                logs["time"] = time.perf_counter() - start
                self.epoch = epoch
                self.history.append(logs)
                self._call("on_epoch_end", epoch, logs)
                if self.history_path is not None and _on_main_process():
                    self.history.save(self.history_path)
                if self.verbose:
                    print(format_metrics(logs), file=lines, flush=True)
                if self.stop_training:
                    break
        except BaseException as err:  # the callbacks undo what they set up (hooks), then the error propagates
            self._call("on_exception", err)
            raise
        self._call("on_train_end")
        return self.history

    def _resume_path(self, resume: Any) -> Path | None:
        if resume is True:
            ckpt = next((cb for cb in self.callbacks if isinstance(cb, ModelCheckpoint)), None)
            if ckpt is None:
                raise ValueError("Trainer.fit: resume=True needs checkpoint_dir (or a ModelCheckpoint callback)")
            if not ckpt.last_path.is_file():
                self._log(f"no checkpoint at {ckpt.last_path}: starting from epoch 1")
                return None
            return ckpt.last_path
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"Trainer.fit: no checkpoint to resume from at {path}")
        return path

    def _remove_stale_temp_files(self, resume_path: Path | None) -> None:
        """Remove the temporary files that saves killed mid-write left in the checkpoint folders."""
        folders = {cb.dirpath for cb in self.callbacks if isinstance(cb, ModelCheckpoint)}
        if resume_path is not None:
            folders.add(resume_path.parent)
        for folder in sorted(folders):
            for stale in remove_stale_temp_files(folder):
                self._log(f"removed {stale}, left behind by a save that was killed mid-write")

    def _log(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stdout if self.log_file is None else self.log_file, flush=True)


def _check_resume(resume: Any) -> None:
    """``resume`` must be False/None, True, or a non-empty path (str or os.PathLike)."""
    if isinstance(resume, bool) or resume is None:
        return
    if not isinstance(resume, (str, os.PathLike)):
        raise TypeError(
            "Trainer.fit: resume must be False or None (start afresh), True (continue from checkpoint_dir/last.npz) "
            f"or a checkpoint path (str or os.PathLike), got {resume!r} ({type(resume).__name__})"
        )
    if os.fspath(resume) in ("", b""):
        raise ValueError(
            f"Trainer.fit: resume is an empty path {resume!r}; expected the path of a checkpoint (e.g. "
            "'checkpoints/last.npz'), True (continue from checkpoint_dir/last.npz), or False/None (start afresh)"
        )


def fit(
    model: Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None,
    loss_fn: Any,
    optimizer: Any,
    epochs: int = 1,
    scheduler: Any = None,
    callbacks: Sequence[Callback] | None = None,
    history_path: str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool | str | os.PathLike[str] | None = False,
    **trainer_kwargs: Any,
) -> History:
    """Train ``model`` for ``epochs`` epochs: ``Trainer(model, loss_fn, optimizer, ...).fit(...)`` in one call.

    ``trainer_kwargs`` go to :class:`Trainer` (``scheduler_step``, ``metrics``, ``progress``, ``verbose``,
    ``clip_grad_norm``, ``regularization``, ``batch_transform``, ``monitor``, ``log_file``, ``fuse``: on a fast backend
    the model is fused in place unless ``fuse=False``). Returns the history.
    """
    trainer = Trainer(
        model,
        loss_fn,
        optimizer,
        scheduler=scheduler,
        callbacks=callbacks,
        history_path=history_path,
        checkpoint_dir=checkpoint_dir,
        **trainer_kwargs,
    )
    return trainer.fit(train_loader, val_loader, epochs=epochs, resume=resume)
