r"""Is the gradient reaching every layer? :func:`gradient_flow_report` answers with one forward and backward.

Karpathy's recipe and the CS231n deck ask you to look before you train: a network whose early layers get gradients
100 times smaller than its last layer learns only at the top (vanishing gradients: deep sigmoid/tanh stacks, bad
init); one whose gradients grow toward the input diverges (exploding); a ReLU whose unit outputs 0 for every sample
passes no gradient and never recovers (a dead ReLU: a large negative bias, a too-large learning rate); a parameter
that never receives a gradient is not trained at all (a branch cut off from the loss, a layer defined but not
called). minidl's explicit backward makes each of these a number you can read:

* **per-layer gradient norms**: for each module that holds parameters, in the order the forward called them,
  :math:`\lVert \partial L / \partial W \rVert_2`, :math:`\lVert W \rVert_2` and their ratio (the whole module's
  parameters together when it has no ``weight``);
* **unused parameters**: ``.grad`` still None after the backward, or all zeros; frozen ones (``requires_grad=False``)
  are listed apart, since that is on purpose;
* **dead ReLUs**: for every ReLU-like module (``ReLU``, ``ReLU6`` and the fused ``BatchNormReLU``/``AddReLU``/
  ``FoldedBatchNorm2d`` with an activation), through a forward hook: the fraction of *units* that output 0 for every
  sample of the batch (a unit: a channel of an (N, C, H, W) output, all positions together; a feature of an (N, F)
  output), and the fraction of all outputs that are 0.

The verdict flags: *vanishing* when the first layer's weight-gradient norm is more than 100 times smaller than the
last layer's, *exploding* when it is more than 100 times larger (or a gradient is not finite while the loss is),
*dead ReLUs* when a ReLU has more than half of its units dead, and *unused parameters*. A loss that is not finite
makes every gradient nan, so it is reported instead of the gradient trend: with the count of the batch's nan/inf
values and a pointer to :func:`minidl.detect_anomaly`.

Nothing is left changed: the parameters' ``.grad`` (the same arrays), the buffers (BatchNorm's running statistics)
and the hooks are as before the call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from minidl.backend import get_array_module, get_backend
from minidl.grad_mode import is_grad_enabled
from minidl.nn.activation import ReLU, ReLU6
from minidl.nn.fusion import AddReLU, BatchNormReLU1d, BatchNormReLU2d, FoldedBatchNorm2d
from minidl.nn.module import Module
from minidl.train.sanity import _non_finite_advice

__all__ = ["GradientFlowReport", "LayerGradient", "ReluStats", "gradient_flow_report", "is_relu_like"]

#: thresholds of the verdict
VANISHING_FACTOR = 100.0
DEAD_RELU_LIMIT = 0.5


def is_relu_like(module: Module) -> bool:
    """Whether ``module``'s output is a ReLU's (0 where the unit is off): ReLU, ReLU6, and the fused modules that end
    in a ReLU (:class:`~minidl.nn.BatchNormReLU2d`, ``BatchNormReLU1d``, :class:`~minidl.nn.AddReLU`,
    :class:`~minidl.nn.FoldedBatchNorm2d` with an ``activation``)."""
    if isinstance(module, (ReLU, ReLU6, BatchNormReLU1d, BatchNormReLU2d, AddReLU)):
        return True
    return isinstance(module, FoldedBatchNorm2d) and module.activation is not None


def module_name(name: str) -> str:
    """The name of a module in reports and history keys: ``named_modules``' name, ``(model)`` for the root."""
    return name or "(model)"


def norm(a: Any) -> float:
    """The L2 norm of an array of any backend, accumulated in float64, as a Python float."""
    xp = get_array_module(a)
    a64 = a.astype(xp.float64) if a.dtype != xp.float64 else a
    return float(xp.sqrt(xp.sum(a64 * a64)))


def dead_and_zero_fractions(out: Any) -> tuple[float, float, int]:
    """``(dead units / units, zero outputs / outputs, units)`` of a batch of ReLU outputs (N, C, ...) or (N, F): a
    unit (a channel, or a feature) is dead when it outputs 0 for every sample and position of the batch."""
    xp = get_array_module(out)
    if out.ndim < 2:
        raise ValueError(f"dead-ReLU statistics need a batch of outputs (N, C, ...), got shape {tuple(out.shape)}")
    off = out == 0
    alive_somewhere = xp.any(off == 0, axis=tuple(i for i in range(out.ndim) if i != 1))
    units = int(out.shape[1])
    return float(units - int(xp.sum(alive_somewhere))) / units, float(xp.mean(off)), units


@contextmanager
def kept_model_state(model: Module, mode: bool | None = None) -> Iterator[None]:
    """Inside the block the parameters' ``.grad`` are None (so what a backward leaves there is its own), and the
    model is in ``mode`` (``train(mode)``; None: unchanged); on leaving, the ``.grad`` arrays, each module's training
    flag and the buffers' values (BatchNorm running statistics, updated in place by a training forward) are back."""
    params = list(model.parameters())
    grads = [p.grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.copy()) for _, b in model.named_buffers() if b is not None and hasattr(b, "copy")]
    try:
        for p in params:
            p.grad = None
        if mode is not None:
            model.train(mode)
        yield
    finally:
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        for module, training in modes:
            module.training = training
        for live, saved in buffers:
            live[...] = saved


@dataclass
class LayerGradient:
    """One module with parameters: its name, class, and norms (``grad_norm`` and ``weight_norm`` of its ``weight``,
    else of all its parameters together; ``ratio = grad_norm / weight_norm``, inf when the weight is 0)."""

    name: str
    kind: str
    grad_norm: float
    weight_norm: float
    ratio: float


@dataclass
class ReluStats:
    """One ReLU-like module: ``dead`` (fraction of units off for the whole batch), ``zeros`` (fraction of outputs that
    are 0), ``units`` (channels or features)."""

    name: str
    dead: float
    zeros: float
    units: int


@dataclass
class GradientFlowReport:
    """What :func:`gradient_flow_report` found; ``print(report)`` shows the table and the verdict.

    Attributes:
        loss: the batch loss.
        layers: :class:`LayerGradient` per module with parameters, in the order the forward called them.
        relus: :class:`ReluStats` per ReLU-like module, in call order.
        unused: names of trainable parameters whose ``.grad`` stayed None (no gradient reached them).
        zero_grad: names of trainable parameters whose gradient is exactly 0 everywhere.
        frozen: names of parameters with ``requires_grad=False``.
        warnings: the verdict's findings, one sentence each (empty: healthy).
    """

    loss: float
    layers: list[LayerGradient] = field(default_factory=list)
    relus: list[ReluStats] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    zero_grad: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No finding."""
        return not self.warnings

    def verdict(self) -> str:
        """One line per finding, or that the gradient reaches every layer."""
        if self.healthy:
            return "verdict: healthy (gradients reach every layer, no vanishing/exploding trend, no dead ReLU layer)"
        return "\n".join(f"verdict: {w}" for w in self.warnings)

    def __str__(self) -> str:
        width = max([len(layer.name) for layer in self.layers] + [len(r.name) for r in self.relus] + [5])
        lines = [f"gradient flow (loss {self.loss:.4g})", f"{'layer':<{width}}  {'|grad|':>10}  {'|W|':>10}  ratio"]
        for layer in self.layers:
            lines.append(
                f"{layer.name:<{width}}  {layer.grad_norm:>10.3e}  {layer.weight_norm:>10.3e}  {layer.ratio:.2e}"
                f"  ({layer.kind})"
            )
        if self.relus:
            lines.append(f"{'relu':<{width}}  {'dead':>10}  {'zeros':>10}  units")
            lines += [f"{r.name:<{width}}  {r.dead:>10.1%}  {r.zeros:>10.1%}  {r.units}" for r in self.relus]
        if self.frozen:
            lines.append(f"frozen (requires_grad=False): {', '.join(self.frozen)}")
        lines.append(self.verdict())
        return "\n".join(lines)


def _layer_norms(name: str, module: Module) -> LayerGradient | None:
    params = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad and p.grad is not None]
    if not params:
        return None
    chosen = [p for n, p in params if n == "weight"] or [p for _, p in params]
    grad_norm = math.sqrt(sum(norm(p.grad) ** 2 for p in chosen))
    weight_norm = math.sqrt(sum(norm(p.data) ** 2 for p in chosen))
    ratio = grad_norm / weight_norm if weight_norm > 0 else math.inf
    return LayerGradient(module_name(name), type(module).__name__, grad_norm, weight_norm, ratio)


def _findings(report: GradientFlowReport, batch: tuple[Any, Any]) -> list[str]:
    found = []
    norms = [layer.grad_norm for layer in report.layers]
    if not math.isfinite(report.loss):  # every gradient is then nan: the cause is before the backward
        found.append(f"non-finite loss ({report.loss}) from the first forward: {_non_finite_advice(*batch)[1]}")
    elif any(not math.isfinite(v) for v in norms):
        bad = [layer.name for layer in report.layers if not math.isfinite(layer.grad_norm)]
        found.append(f"exploding: non-finite gradients in {', '.join(bad)}")
    elif len(norms) >= 2:
        first, last = report.layers[0], report.layers[-1]
        if first.grad_norm * VANISHING_FACTOR < last.grad_norm:
            found.append(
                f"vanishing: the first layer {first.name} gets a gradient norm of {first.grad_norm:.2e}, more than "
                f"{VANISHING_FACTOR:.0f}x smaller than the last layer {last.name} ({last.grad_norm:.2e})"
            )
        elif first.grad_norm > VANISHING_FACTOR * last.grad_norm:
            found.append(
                f"exploding: the first layer {first.name} gets a gradient norm of {first.grad_norm:.2e}, more than "
                f"{VANISHING_FACTOR:.0f}x larger than the last layer {last.name} ({last.grad_norm:.2e})"
            )
    for r in report.relus:
        if r.dead > DEAD_RELU_LIMIT:
            found.append(f"dead ReLUs: {r.name} has {r.dead:.0%} of its {r.units} units at 0 for the whole batch")
    if report.unused:
        found.append(f"unused parameters (no gradient reached them): {', '.join(report.unused)}")
    if report.zero_grad:
        found.append(f"parameters whose gradient is exactly 0: {', '.join(report.zero_grad)}")
    return found


def gradient_flow_report(
    model: Module, batch: tuple[Any, Any], loss_fn: Any = None, verbose: bool = True
) -> GradientFlowReport:
    """Per-layer gradient norms, parameters that received no gradient and dead-ReLU fractions, from one forward and
    backward of ``model`` on ``batch``, with a short verdict (see the module docstring for the thresholds).

    The model runs in the mode it is in (``train()`` for what training sees: BatchNorm on batch statistics, dropout
    on); its ``.grad``, buffers and hooks are left as they were. The hooks it puts on the layers for that one step
    keep a fused model (:func:`minidl.nn.fuse`) from joining a ResNet block's end (the results are the same, the step
    a little slower).

    Args:
        model: the model.
        batch: ``(inputs, targets)``; NumPy arrays are moved to the current backend.
        loss_fn: ``loss_fn(outputs, targets) -> float`` and ``loss_fn.backward()``. Default: None
            (``nn.CrossEntropyLoss()``).
        verbose: print the table and the verdict. Default: True.

    Returns:
        A :class:`GradientFlowReport`.

    Raises:
        RuntimeError: called under ``minidl.no_grad()`` (no backward is possible).

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn
        >>> from minidl.train import gradient_flow_report
        >>> _ = minidl.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
        >>> report = gradient_flow_report(model, (x, np.arange(16) % 3), verbose=False)
        >>> [layer.name for layer in report.layers], report.unused, report.healthy
        (['0', '2'], [], True)
    """
    if not isinstance(model, Module):
        raise TypeError(f"gradient_flow_report: model must be a minidl.nn.Module, got {type(model).__name__}")
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"gradient_flow_report: batch must be a pair (inputs, targets), got {type(batch).__name__}")
    if not is_grad_enabled():
        raise RuntimeError("gradient_flow_report: gradients are disabled (minidl.no_grad()); call it outside no_grad")
    if loss_fn is None:
        from minidl.nn.loss import CrossEntropyLoss

        loss_fn = CrossEntropyLoss()
    be = get_backend()
    x, y = (v if get_array_module(v) is be.xp else be.asarray(v) for v in batch)
    names = {id(m): n for n, m in model.named_modules()}
    called: dict[int, Module] = {}  # modules with parameters or ReLU-like, in the order of their first call
    relu_outputs: dict[int, list[Any]] = {}

    def record(module: Module, args: Any, out: Any) -> None:
        called.setdefault(id(module), module)
        if is_relu_like(module):
            relu_outputs.setdefault(id(module), []).append(out)

    watched = [m for m in model.modules() if is_relu_like(m) or any(True for _ in m.parameters(recurse=False))]
    handles = [m.register_forward_hook(record) for m in watched]
    try:
        with kept_model_state(model):
            loss = float(loss_fn(model(x), y))
            model.backward(loss_fn.backward())
            report = GradientFlowReport(loss=loss)
            for key, module in called.items():
                layer = _layer_norms(names[key], module)
                if layer is not None:
                    report.layers.append(layer)
                for out in relu_outputs.get(key, []):
                    dead, zeros, units = dead_and_zero_fractions(out)
                    report.relus.append(ReluStats(module_name(names[key]), dead, zeros, units))
            for name, p in model.named_parameters():
                if not p.requires_grad:
                    report.frozen.append(name)
                elif p.grad is None:
                    report.unused.append(name)
                elif not bool(get_array_module(p.grad).any(p.grad != 0)):
                    report.zero_grad.append(name)
    finally:
        for handle in handles:
            handle.remove()
    report.warnings = _findings(report, (x, y))
    if verbose:
        print(report)
    return report
