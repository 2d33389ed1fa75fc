r"""One epoch of training, and evaluation: the loop every course writes, once, readable.

The loop, batch by batch, in PyTorch's order (the learning-rate scheduler steps *after* the optimizer):

.. code-block:: python

    model.train()
    for x, y in loader:
        model.zero_grad()                       # gradients accumulate: clear last batch's
        loss = loss_fn(model(x), y)             # forward; each layer caches what its backward needs
        model.backward(loss_fn.backward())      # backward: fills p.grad of every trainable Parameter
        optimizer.step()                        # theta <- theta - lr * update(grad)
        scheduler.step()                        # per-batch schedules (OneCycleLR); per-epoch ones step after the epoch

:func:`train_one_epoch` is exactly that, plus what one always ends up adding: an optional batch transform
(Mixup/CutMix), weight penalties (``regularization``), gradient clipping, running averages of the loss and the metrics
weighted by batch size, a progress bar, and a clear error when the loss becomes NaN. :func:`evaluate` runs a loader in
``eval()`` mode under ``minidl.no_grad()`` (no caches kept: less memory) and puts every module back in the mode it
was in. :func:`predict` collects the logits (and targets, and optionally the inputs) for confusion matrices and
galleries of mistakes.

A metric is a function ``metric(logits, targets) -> float`` (the batch mean), e.g. :func:`~minidl.train.accuracy` or
``TopKAccuracy(5)``; the epoch value is the sample-weighted mean over the batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import numpy as np

from minidl.backend import get_array_module, get_backend, to_numpy
from minidl.grad_mode import no_grad
from minidl.nn.module import Module
from minidl.nn.utils import clip_grad_norm_
from minidl.train.metrics import AverageMeter, accuracy
from minidl.train.progress import EpochProgress

__all__ = ["current_lrs", "evaluate", "predict", "train_one_epoch"]

Metric = Callable[[Any, Any], float]


def _resolve_metrics(where: str, metrics: Any) -> dict[str, Metric]:
    """``None`` -> ``{"accuracy": accuracy}``; a dict name -> function; a list of functions (named by ``__name__``)."""
    if metrics is None:
        return {"accuracy": accuracy}
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif callable(metrics):
        items = [(getattr(metrics, "__name__", type(metrics).__name__), metrics)]
    else:
        items = [(getattr(m, "__name__", type(m).__name__), m) for m in metrics]
    for name, fn in items:
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(
                f"{where}: metrics must map names to functions metric(logits, targets), got {name!r}: {fn!r}"
            )
        if name == "loss":
            raise ValueError(f"{where}: 'loss' is reserved for the loss; give the metric another name")
    return dict(items)


def _unpack(where: str, batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    kind = (
        f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
    )
    raise TypeError(f"{where}: each batch must be a pair (inputs, targets), got {kind}")


def _on_backend(a: Any) -> Any:
    """``a`` as an array of the current backend (a no-op when it already is one)."""
    be = get_backend()
    return a if get_array_module(a) is be.xp else be.asarray(a)


def _batch_size(x: Any) -> int:
    return int(x.shape[0]) if hasattr(x, "shape") and len(x.shape) else 1


def current_lrs(optimizer: Any) -> list[float]:
    """The learning rate of each param group of ``optimizer`` (what the next ``step()`` uses)."""
    return [float(group["lr"]) for group in optimizer.param_groups]


def _is_plateau(scheduler: Any) -> bool:
    from minidl.optim.lr_scheduler import ReduceLROnPlateau

    return isinstance(scheduler, ReduceLROnPlateau)


def train_one_epoch(
    model: Module,
    loader: Iterable[Any],
    loss_fn: Any,
    optimizer: Any,
    scheduler: Any = None,
    scheduler_step: str = "batch",
    metrics: Any = None,
    progress: bool | str = True,
    clip_grad_norm: float | None = None,
    regularization: Callable[[Module], float] | None = None,
    batch_transform: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    desc: str = "train",
    progress_file: IO[str] | None = None,
    on_batch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for one pass over ``loader``; returns the epoch's mean loss and metrics.

    Args:
        model: the model; put in ``train()`` mode here.
        loader: yields ``(inputs, targets)`` batches (a :class:`~minidl.data.DataLoader`); NumPy batches are moved
            to the current backend.
        loss_fn: ``loss_fn(outputs, targets) -> float`` then ``loss_fn.backward() -> doutputs`` (any minidl loss).
        optimizer: a :class:`minidl.optim.Optimizer`.
        scheduler: a learning-rate scheduler or None. Default: None.
        scheduler_step: ``"batch"``: ``scheduler.step()`` after every ``optimizer.step()`` (OneCycleLR, warm-up);
            ``"epoch"``: once after the last batch (StepLR, CosineAnnealingLR over epochs). Default: "batch".
        metrics: ``{name: metric(logits, targets) -> float}``, a list of such functions, or None for
            ``{"accuracy": accuracy}``; ``{}`` computes none. Default: None.
        progress: show a tqdm bar: True (when the output is a terminal), ``"always"`` or False. Default: True.
        clip_grad_norm: rescale the gradients so that their joint L2 norm is at most this value
            (:func:`minidl.nn.utils.clip_grad_norm_`); the mean norm before clipping is reported as ``grad_norm``.
            Default: None (no clipping).
        regularization: ``regularization(model) -> float``, called after ``backward``: accumulates a penalty's
            gradient into ``p.grad`` and returns its value, added to the reported loss (e.g.
            ``lambda m: l2_penalty(m, 5e-4)``). Default: None.
        batch_transform: ``(x, y) -> (x, y)`` applied to each training batch, e.g. ``Mixup(...)``. Default: None.
        desc: the progress bar's label. Default: "train".
        progress_file: the progress bar's stream. Default: None (stderr).
        on_batch_end: called after each step as ``on_batch_end(batch_index, {"loss": ..., "lr": lr of group 0,
            "lrs": [lr of each group], "batch_size": ...})`` (the lrs that step used).
            Default: None.

    Returns:
        ``{"loss": mean loss, <metric>: mean value, ..., ["grad_norm": ...,] "lr": lr of group 0 at the start of the
        epoch, "samples": N, "time": seconds, "throughput": samples per second}``.

    Raises:
        FloatingPointError: the loss became NaN or infinite (lower the learning rate, clip gradients;
            :func:`minidl.detect_anomaly` names the first layer that made a nan or inf).
    """
    where = "train_one_epoch"
    if scheduler_step not in ("batch", "epoch"):
        raise ValueError(f"{where}: scheduler_step must be 'batch' or 'epoch', got {scheduler_step!r}")
    if scheduler is not None and _is_plateau(scheduler):
        raise TypeError(
            f"{where}: ReduceLROnPlateau needs the monitored metric, step it yourself after validation "
            "(scheduler.step(val_loss)) or let fit() do it"
        )
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"{where}: clip_grad_norm must be a positive number or None, got {clip_grad_norm!r}")
    metric_fns = _resolve_metrics(where, metrics)
    meters = {name: AverageMeter(name) for name in ["loss", *metric_fns]}
    grad_norm = AverageMeter("grad_norm")
    lr_at_start = current_lrs(optimizer)[0]
    model.train()
    start = time.perf_counter()
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    with EpochProgress(total, desc=desc, enabled=progress, file=progress_file) as bar:
        for b, batch in enumerate(loader):
            x, y = _unpack(where, batch)
            x, y = _on_backend(x), _on_backend(y)
            if batch_transform is not None:
                x, y = batch_transform(x, y)
            model.zero_grad()
            out = model(x)
            loss = float(loss_fn(out, y))
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"{where}: the loss became {loss} at batch {b} (lr {current_lrs(optimizer)}); "
                    "lower the learning rate, clip gradients (clip_grad_norm=1.0) or check the inputs; "
                    "to find the first layer that made a nan or inf, run the batch under minidl.detect_anomaly()"
                )
            model.backward(loss_fn.backward())
            if regularization is not None:
                loss += float(regularization(model))
            if clip_grad_norm is not None:
                params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
                grad_norm.update(float(clip_grad_norm_(params, clip_grad_norm)) if params else 0.0)
            optimizer.step()
            lrs_used = current_lrs(optimizer)
            if scheduler is not None and scheduler_step == "batch":
                scheduler.step()
            n = _batch_size(x)
            meters["loss"].update(loss, n)
            for name, fn in metric_fns.items():
                meters[name].update(float(fn(out, y)), n)
            bar.update(n, **{name: m.avg for name, m in meters.items()}, lr=lrs_used[0])
            if on_batch_end is not None:
                on_batch_end(b, {"loss": loss, "lr": lrs_used[0], "lrs": lrs_used, "batch_size": n})
    if scheduler is not None and scheduler_step == "epoch":
        scheduler.step()
    elapsed = time.perf_counter() - start
    logs: dict[str, Any] = {name: m.avg for name, m in meters.items()}
    if clip_grad_norm is not None:
        logs["grad_norm"] = grad_norm.avg
    samples = meters["loss"].count
    logs.update(lr=lr_at_start, samples=samples, time=elapsed, throughput=samples / elapsed if elapsed > 0 else 0.0)
    return logs


class _ModesRestored:
    """Inside the block: ``model.eval()`` and no caching; afterwards every module's own previous mode is back."""

    def __init__(self, model: Module) -> None:
        self.model = model
        self.modes: list[tuple[Module, bool]] = []

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.no_grad = no_grad()
        self.no_grad.__enter__()
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        self.no_grad.__exit__(*exc)
        for module, mode in self.modes:
            module.training = mode


def evaluate(
    model: Module,
    loader: Iterable[Any],
    loss_fn: Any = None,
    metrics: Any = None,
    progress: bool | str = False,
    desc: str = "eval",
    progress_file: IO[str] | None = None,
) -> dict[str, float]:
    """The mean loss and metrics of ``model`` over ``loader``, in eval mode and under ``minidl.no_grad()``.

    Every module's training flag is restored afterwards (so calling it in the middle of training is safe).

    Args:
        model: the model.
        loader: yields ``(inputs, targets)`` batches.
        loss_fn: the loss, or None to compute only the metrics. Default: None.
        metrics: as in :func:`train_one_epoch`. Default: None (``{"accuracy": accuracy}``).
        progress: show a progress bar (True: when the output is a terminal). Default: False.
        desc: the progress bar's label. Default: "eval".
        progress_file: the progress bar's stream. Default: None (stderr).

    Returns:
        ``{"loss": ..., <metric>: ...}`` (sample-weighted means; no ``"loss"`` without ``loss_fn``).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> from minidl.data import DataLoader, TensorDataset
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> x = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
        >>> loader = DataLoader(TensorDataset(x, np.array([0, 1, 0])), batch_size=2)
        >>> sorted(evaluate(model, loader, nn.CrossEntropyLoss()))
        ['accuracy', 'loss']
        >>> model.training
        True
    """
    where = "evaluate"
    metric_fns = _resolve_metrics(where, metrics)
    names = (["loss"] if loss_fn is not None else []) + list(metric_fns)
    meters = {name: AverageMeter(name) for name in names}
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    with (
        _ModesRestored(model),
        EpochProgress(total, desc=desc, enabled=progress, file=progress_file, leave=False) as bar,
    ):
        for batch in loader:
            x, y = _unpack(where, batch)
            x, y = _on_backend(x), _on_backend(y)
            out = model(x)
            n = _batch_size(x)
            if loss_fn is not None:
                meters["loss"].update(float(loss_fn(out, y)), n)
            for name, fn in metric_fns.items():
                meters[name].update(float(fn(out, y)), n)
            bar.update(n, **{name: m.avg for name, m in meters.items()})
    return {name: m.avg for name, m in meters.items()}


def predict(
    model: Module, loader: Iterable[Any], return_inputs: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``model`` over ``loader`` in eval mode (no caching) and collect everything on the host.

    Args:
        model: the model.
        loader: yields ``(inputs, targets)`` batches (not shuffled, to keep the dataset's order).
        return_inputs: also return the inputs (for a gallery of misclassified images). Default: False.

    Returns:
        ``(outputs (N, ...), targets (N, ...))`` as NumPy arrays, or ``(outputs, targets, inputs)``.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> from minidl.data import DataLoader, TensorDataset
        >>> loader = DataLoader(TensorDataset(np.ones((5, 3), np.float32), np.arange(5) % 2), batch_size=2)
        >>> logits, targets = predict(nn.Linear(3, 2), loader)
        >>> logits.shape, targets.tolist()
        ((5, 2), [0, 1, 0, 1, 0])
    """
    outputs, targets, inputs = [], [], []
    with _ModesRestored(model):
        for batch in loader:
            x, y = _unpack("predict", batch)
            outputs.append(to_numpy(model(_on_backend(x))))
            targets.append(to_numpy(y) if hasattr(y, "shape") else np.asarray(y))
            if return_inputs:
                inputs.append(to_numpy(x) if hasattr(x, "shape") else np.asarray(x))
    if not outputs:
        raise ValueError("predict: the loader yielded no batch")
    result = (np.concatenate(outputs), np.concatenate(targets))
    return (*result, np.concatenate(inputs)) if return_inputs else result
