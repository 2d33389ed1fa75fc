r"""Training-health monitors: callbacks that watch activations, updates, dead ReLUs and gradients while training.

The CS231n deck's advice, "babysit the learning process", as four :class:`~minidl.train.Callback` objects:

* :class:`ActivationStats`: per-layer mean, standard deviation and histogram of the outputs (the deck's init demo:
  with weights drawn at std 0.01 a deep tanh net's activations shrink to 0 layer after layer; at std 1 they saturate
  at +-1; with Xavier init they keep a std of order 0.1-1 throughout).
* :class:`UpdateRatio`: per parameter, :math:`\lVert \Delta W \rVert / \lVert W \rVert` where :math:`\Delta W` is
  the parameter's actual change across ``optimizer.step()`` (learning rate, momentum and weight decay included).
  The rule of thumb: about :math:`10^{-3}`; much lower, the learning rate is too low; much higher, too high.
* :class:`DeadReLU`: per ReLU-like module, the fraction of units (channels, or features) that output 0 for the
  whole batch, and the fraction of outputs that are 0.
* :class:`GradientNorms`: per module with parameters, the norm of its parameters' gradients, and the global norm.

Each records one step in ``every`` (the first step of training included) into its own :class:`History`,
``monitor.history``, one record per recorded step (``{"step": 0, "epoch": 1, "act_std/0": 0.61, ...}``: keys
``<metric>/<module or parameter name>``), and adds the epoch's mean of every such key to the trainer's history at the
end of each epoch (``trainer.history.series("update_ratio")`` is the per-parameter table). Both save and load like
any history, and a checkpoint keeps them (``state_dict``). :mod:`minidl.train.monitor_plots` draws them.

**A module called more than once per forward** (one ``nn.ReLU()`` object used at two places of a ``Sequential``, or
a block applied twice) is recorded once per call, nothing overwritten: its first call of the step under its name
(``act_mean/1``), the second under ``act_mean/1#2``, the third ``act_mean/1#3``, and so on; the keys (and
``ActivationStats.histograms``) follow the order in which the forward ran the calls.

**Hooks.** :class:`ActivationStats` and :class:`DeadReLU` watch the outputs through forward hooks
(:mod:`minidl.nn.hooks`), registered at the start of ``fit`` and removed at its end, also when training raises. A
hook records only a training forward (gradients enabled: the validation pass under ``no_grad`` is not counted) of a
step that is due. A model that :class:`~minidl.train.Trainer` fused (on the Numba backend, unless ``fuse=False``) is
watched as fused: its ReLUs live inside ``BatchNormReLU2d``/``FoldedBatchNorm2d``/``AddReLU`` modules, which count as
ReLU-like, and the ``Identity`` left in their slots has no statistics worth recording. Pass ``fuse=False`` to see every
layer separately; the hooks cost one Python call per watched module and forward, the statistics a pass over the
output on the recorded steps: ``modules=`` and ``every=`` bound both.

:class:`UpdateRatio` and :class:`GradientNorms` need no hook: the first copies the parameters after the step before a
recorded one (so the next ``optimizer.step()`` is the only change between the copy and the measurement), the second
reads ``.grad`` after ``optimizer.step()`` (after clipping, when ``clip_grad_norm`` is set).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.backend import get_array_module, to_numpy
from minidl.grad_mode import is_grad_enabled
from minidl.nn._activation_common import _Activation
from minidl.nn._checks import check_int
from minidl.nn.conv import Conv2d
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.train.callbacks import Callback
from minidl.train.health import dead_and_zero_fractions, is_relu_like, module_name, norm
from minidl.train.history import History

__all__ = ["ActivationStats", "DeadReLU", "GradientNorms", "UpdateRatio"]

Trainer = Any


class _StepMonitor(Callback):
    """Counts training steps, records one in ``every`` into ``self.history`` and adds the epoch means to the trainer's
    history. A subclass measures in :meth:`_measure` (after the step) and prepares in :meth:`_prepare` (after the step
    before a recorded one, or at the start of training)."""

    where = "monitor"

    def __init__(self, every: int) -> None:
        self.every = check_int(self.where, "every", every)
        self.history = History()
        self.step = 0
        self._epoch = 0
        self._epoch_first = 0
        self._armed = False
        self._handles: list[Any] = []

    def _due(self) -> bool:
        return self.step % self.every == 0

    # what subclasses provide
    def _attach(self, model: Module) -> None:
        """Register hooks on ``model``, keeping the handles in ``self._handles``."""

    def _prepare(self, trainer: Trainer) -> None:
        """Before a recorded step."""

    def _measure(self, trainer: Trainer) -> dict[str, float]:
        """After a recorded step: ``{"<metric>/<name>": value}``."""
        raise NotImplementedError

    def detach(self) -> None:
        """Remove the hooks (also done at the end of ``fit``, and when it raises)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.detach()
        self._attach(trainer.model)
        self._armed = self._due()
        if self._armed:
            self._prepare(trainer)

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        self._epoch = epoch
        self._epoch_first = len(self.history)

    def on_batch_end(self, trainer: Trainer, batch: int, logs: dict[str, Any]) -> None:
        if self._armed:
            self.history.append({"step": self.step, "epoch": self._epoch, **self._measure(trainer)})
        self.step += 1
        self._armed = self._due()
        if self._armed:
            self._prepare(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        records = self.history.records[self._epoch_first :]
        sums: dict[str, list[float]] = {}
        for record in records:
            for key, value in record.items():
                if key not in ("step", "epoch"):
                    sums.setdefault(key, []).append(float(value))
        if sums:
            trainer.history.update_last({k: float(np.mean(v)) for k, v in sums.items()})

    def on_train_end(self, trainer: Trainer) -> None:
        self.detach()

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        self.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "history": self.history.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.history = History()
        self.history.load_state_dict(state["history"])


def _default_watched(module: Module) -> bool:
    return isinstance(module, (_Activation, Conv2d, Linear)) or is_relu_like(module)


def _select(where: str, model: Module, modules: Any, default: Any) -> list[tuple[str, Module]]:
    """``(name, module)`` pairs: ``modules`` (names or Module objects of ``model``) or every module ``default``
    accepts."""
    named = [(module_name(n), m) for n, m in model.named_modules()]
    if modules is None:
        return [(n, m) for n, m in named if default(m)]
    by_name = dict(named)
    by_id = {id(m): n for n, m in named}
    chosen: list[tuple[str, Module]] = []
    for item in modules:
        if isinstance(item, Module):
            if id(item) not in by_id:
                raise ValueError(f"{where}: modules contains a {type(item).__name__} that is not part of the model")
            chosen.append((by_id[id(item)], item))
        elif isinstance(item, str):
            if item not in by_name:
                raise ValueError(
                    f"{where}: the model has no module named {item!r}; its modules are {sorted(by_name)[:30]}"
                )
            chosen.append((item, by_name[item]))
        else:
            raise TypeError(f"{where}: modules must be names (str) or Modules of the model, got {item!r}")
    unique: dict[int, tuple[str, Module]] = {}
    for name, module in chosen:  # a module listed twice (by name and as an object) is watched once
        unique.setdefault(id(module), (name, module))
    return list(unique.values())


class _HookMonitor(_StepMonitor):
    """A monitor that reads module outputs through forward hooks (only training forwards of recorded steps)."""

    def __init__(self, every: int, modules: Any) -> None:
        super().__init__(every)
        if modules is not None and (isinstance(modules, (str, Module)) or not hasattr(modules, "__iter__")):
            raise TypeError(
                f"{self.where}: modules must be a list of module names or Modules, or None; got {modules!r}"
            )
        self.modules = None if modules is None else list(modules)
        self.watched: list[str] = []
        self._pending: dict[str, float] = {}
        self._calls: dict[str, int] = {}  # the recorded calls of each watched module in this step

    def _default(self, module: Module) -> bool:
        return _default_watched(module)

    def _attach(self, model: Module) -> None:
        chosen = _select(self.where, model, self.modules, self._default)
        self.watched = [name for name, _ in chosen]
        self._pending, self._calls = {}, {}  # nothing left over from a run that raised mid-step
        for name, module in chosen:
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def hook(module: Module, args: Any, out: Any) -> None:
            if self._armed and is_grad_enabled() and hasattr(out, "shape"):
                self._pending.update(self._output_stats(self._call_name(name), out))

        return hook

    def _call_name(self, name: str) -> str:
        """``name`` for the module's first call in this step, ``name#2``, ``name#3``, ... for the next ones."""
        calls = self._calls.get(name, 0) + 1
        self._calls[name] = calls
        return name if calls == 1 else f"{name}#{calls}"

    def _output_stats(self, name: str, out: Any) -> dict[str, float]:
        raise NotImplementedError

    def _measure(self, trainer: Trainer) -> dict[str, float]:
        pending, self._pending, self._calls = self._pending, {}, {}
        return pending


class ActivationStats(_HookMonitor):
    """Record the mean, standard deviation and histogram of each watched module's output.

    Args:
        every: record one training step in ``every`` (steps counted from the start, the first one recorded).
            Default: 1.
        modules: names (as in ``model.named_modules()``) or Module objects to watch (one listed twice is watched
            once). Default: None (every activation, Conv2d and Linear, and the fused BatchNorm+ReLU modules).
        histogram_bins: bins of each histogram (between the output's min and max); 0 records none. Default: 30.

    Attributes:
        history: per recorded step, ``act_mean/<name>`` and ``act_std/<name>`` (population std, ddof 0); a module
            called k > 1 times in the forward also has ``<name>#2`` ... ``<name>#k`` for its later calls.
        histograms: per recorded step (aligned with ``history``), ``{name: (counts, edges)}`` (NumPy arrays;
            ``counts.sum()`` is the output's number of elements), keyed like ``history`` (``name#2`` included).
        watched: the names of the watched modules (set when training starts).

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn, optim
        >>> from minidl.data import DataLoader, TensorDataset
        >>> from minidl.train import fit, ActivationStats
        >>> _ = minidl.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> data = DataLoader(TensorDataset(np.ones((8, 4), np.float32), np.zeros(8, np.int64)), batch_size=4)
        >>> stats = ActivationStats(every=1)
        >>> h = fit(model, data, None, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), epochs=1,
        ...         callbacks=[stats], verbose=False, progress=False)
        >>> stats.watched, len(stats.history), "act_std/1" in h.keys()
        (['0', '1', '2'], 2, True)
    """

    where = "ActivationStats"

    def __init__(self, every: int = 1, modules: Any = None, histogram_bins: int = 30) -> None:
        super().__init__(every, modules)
        self.histogram_bins = check_int(self.where, "histogram_bins", histogram_bins, minimum=0)
        self.histograms: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
        self._pending_hist: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _output_stats(self, name: str, out: Any) -> dict[str, float]:
        xp = get_array_module(out)
        out64 = out.astype(xp.float64)
        if self.histogram_bins:
            host = to_numpy(out64).ravel()
            finite = host[np.isfinite(host)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            self._pending_hist[name] = np.histogram(
                host, bins=self.histogram_bins, range=(lo, hi if hi > lo else lo + 1)
            )
        return {f"act_mean/{name}": float(xp.mean(out64)), f"act_std/{name}": float(xp.std(out64))}

    def _measure(self, trainer: Trainer) -> dict[str, float]:
        self.histograms.append(self._pending_hist)
        self._pending_hist = {}
        return super()._measure(trainer)

    def state_dict(self) -> dict[str, Any]:
        hists = [{name: {"counts": c, "edges": e} for name, (c, e) in step.items()} for step in self.histograms]
        return {**super().state_dict(), "histograms": hists}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.histograms = [
            {name: (np.asarray(h["counts"]), np.asarray(h["edges"])) for name, h in step.items()}
            for step in state.get("histograms", [])
        ]


class DeadReLU(_HookMonitor):
    """Record, for each ReLU-like module, the fraction of dead units and the fraction of zero outputs.

    A unit is a channel of an (N, C, H, W) output (all positions together) or a feature of an (N, F) output; it is
    dead in a step when it outputs 0 for every sample of the batch.

    Args:
        every: record one training step in ``every``. Default: 1.
        modules: names or Modules to watch. Default: None (every ReLU, ReLU6 and fused ReLU module).

    Attributes:
        history: per recorded step, ``dead_relu/<name>`` and ``relu_zeros/<name>`` (fractions in [0, 1]); a ReLU
            called k > 1 times in the forward (one object used at several places) also has ``<name>#2`` ...
            ``<name>#k`` for its later calls, each measured on that call's output.
        watched: the names of the watched modules (set when training starts).
    """

    where = "DeadReLU"

    def __init__(self, every: int = 1, modules: Any = None) -> None:
        super().__init__(every, modules)

    def _default(self, module: Module) -> bool:
        return is_relu_like(module)

    def _output_stats(self, name: str, out: Any) -> dict[str, float]:
        dead, zeros, _ = dead_and_zero_fractions(out)
        return {f"dead_relu/{name}": dead, f"relu_zeros/{name}": zeros}


class UpdateRatio(_StepMonitor):
    r"""Record :math:`\lVert W_{after} - W_{before} \rVert_2 / \lVert W_{before} \rVert_2` for each trainable
    parameter across ``optimizer.step()`` (the CS231n rule of thumb: around 1e-3).

    For plain SGD the change is ``lr * grad``; with momentum, Adam or weight decay it is whatever the optimizer did,
    since the parameters themselves are compared (copied after the step before each recorded one).

    Args:
        every: record one training step in ``every``. Default: 1.

    Attributes:
        history: per recorded step, ``update_ratio/<parameter name>`` (inf when the parameter was all zeros).
    """

    where = "UpdateRatio"

    def __init__(self, every: int = 1) -> None:
        super().__init__(every)
        self._before: list[tuple[str, Any, Any]] = []

    def _prepare(self, trainer: Trainer) -> None:
        params = trainer.model.named_parameters()
        self._before = [(name, p, p.data.copy()) for name, p in params if p.requires_grad]

    def _measure(self, trainer: Trainer) -> dict[str, float]:
        ratios = {}
        for name, p, before in self._before:
            scale = norm(before)
            change = norm(p.data - before)
            ratios[f"update_ratio/{name}"] = change / scale if scale > 0 else (0.0 if change == 0 else math.inf)
        self._before = []
        return ratios


class GradientNorms(_StepMonitor):
    """Record the L2 norm of each module's parameter gradients (its own parameters, not its children's) and the
    global norm of all of them, after ``optimizer.step()`` (after clipping when the trainer clips).

    Args:
        every: record one training step in ``every``. Default: 1.

    Attributes:
        history: per recorded step, ``grad_norm/<module name>`` and ``grad_norm_total``.
    """

    where = "GradientNorms"

    def __init__(self, every: int = 1) -> None:
        super().__init__(every)

    def _measure(self, trainer: Trainer) -> dict[str, float]:
        norms, total = {}, 0.0
        for name, module in trainer.model.named_modules():
            grads = [p.grad for p in module.parameters(recurse=False) if p.requires_grad and p.grad is not None]
            if grads:
                squared = sum(norm(g) ** 2 for g in grads)
                norms[f"grad_norm/{module_name(name)}"] = math.sqrt(squared)
                total += squared
        norms["grad_norm_total"] = math.sqrt(total)
        return norms
