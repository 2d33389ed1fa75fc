r"""Sanity checks before a long training run: the first two steps of Karpathy's recipe, one call each.

* :func:`check_initial_loss`: with small random weights a classifier's logits are near zero, so its softmax is near
  uniform over the C classes and the cross-entropy at initialization is

  .. math:: L_0 = -\ln \tfrac{1}{C} = \ln C \qquad (\ln 10 \approx 2.303 \text{ for CIFAR-10}).

  A loss far above :math:`\ln C` means the logits start large: a mis-scaled head (last-layer weights too big), a bad
  initialization, or unnormalized inputs; the network then spends its first epochs undoing that. A loss far below
  it means the model "knows" the answer before training: look for leaked labels or a constant target. A binary head
  (logits (N, 1)) trained with ``nn.BCEWithLogitsLoss`` starts at :math:`p = \sigma(0) = 0.5`, so at
  :math:`L_0 = \ln 2`; so does a multi-label head (N, C) with that loss (each of the C outputs at 0.5).
* :func:`overfit_batch`: a model that is wired correctly can memorize one small batch (~100 % train accuracy in a
  few hundred steps). If it cannot, something is broken -- a layer whose backward drops the gradient, a frozen
  layer, a wrong loss, a learning rate far off. The per-layer gradient norms of the first step are reported, and the
  layers that received no gradient (or a vanishing one) are named.

Both leave the model as they found it (weights, buffers, gradients, train/eval flags, optimizer state and minidl's
RNG; see :mod:`minidl.train._restore`), print a one-line verdict (``verbose=True``) and return a small dataclass
whose ``ok`` and ``verdict`` a script or a test can check. A loss that is not finite (nan, inf) gets a verdict of its
own: whether the batch holds nan/inf values (counted), and a pointer to :func:`minidl.detect_anomaly`, which names the
first module whose output is not finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minidl.backend import get_array_module
from minidl.grad_mode import no_grad
from minidl.nn.module import Module
from minidl.train._restore import restored
from minidl.train.loop import _on_backend, _unpack
from minidl.train.metrics import accuracy

__all__ = ["InitialLossResult", "OverfitResult", "check_initial_loss", "overfit_batch"]


@dataclass
class InitialLossResult:
    """What :func:`check_initial_loss` measured.

    Attributes:
        loss: the mean loss over the batches seen. expected: :math:`\\ln C` (:math:`\\ln 2` with
            ``BCEWithLogitsLoss``). ratio: ``loss / expected``. num_classes: C (2 for a binary head with one logit).
        ok: ``|loss - expected| <= tolerance * expected`` (False for a loss that is not finite). verdict: the printed
            line.
    """

    loss: float
    expected: float
    ratio: float
    num_classes: int
    ok: bool
    verdict: str


def _is_batch(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "shape")


def _non_finite_advice(x: Any, y: Any) -> tuple[bool, str]:
    """For a loss that is not finite: ``(whether the batch holds nan/inf, a sentence that counts them and says where
    to look next)``. Inputs and floating-point targets are checked (integer class labels cannot be nan)."""
    found = []
    for name, a in (("inputs", x), ("targets", y)):
        if hasattr(a, "dtype") and a.dtype.kind in "fc":
            xp = get_array_module(a)
            bad = int(xp.sum(~xp.isfinite(a)))
            if bad:
                nan = int(xp.sum(xp.isnan(a)))
                values = "value" if bad == 1 else "values"
                found.append(
                    f"the batch's {name} hold {bad} non-finite {values} ({nan} nan, {bad - nan} inf) of {a.size}"
                )
    anomaly = "`with minidl.detect_anomaly():` around the forward names the first module whose output is not finite"
    if found:
        return True, "; ".join(found) + f": clean the data (or find where the nan/inf come from); {anomaly}"
    return False, f"the batch holds no nan or inf, so a module or the loss makes them: {anomaly}"


def _check_columns(where: str, shape: tuple[int, ...], num_classes: int | None, binary_loss: bool) -> None:
    """Refuse a ``num_classes`` that is not the logits' width, and a one-column head without a binary loss."""
    columns = int(shape[1])
    if num_classes is not None and num_classes != columns and not (columns == 1 and num_classes == 2):
        implied = "2 (a binary head)" if columns == 1 else str(columns)
        raise ValueError(
            f"{where}: num_classes={num_classes} does not match the model's logits, which have {columns} "
            f"column{'s' if columns != 1 else ''} (shape {tuple(shape)}); pass num_classes={implied} or leave it None"
        )
    if columns == 1 and not binary_loss:
        raise ValueError(
            f"{where}: the logits have 1 column (shape {tuple(shape)}), a binary head: the cross-entropy over one "
            f"class is 0 whatever the weights; pass loss_fn=nn.BCEWithLogitsLoss() (expected loss at init: "
            f"ln 2 = {math.log(2):.4f}, p = 0.5) with float targets of shape {tuple(shape)}, or give the model 2 "
            "outputs"
        )


def check_initial_loss(
    model: Module,
    data: Any,
    loss_fn: Any = None,
    num_classes: int | None = None,
    batches: int = 4,
    tolerance: float = 0.5,
    verbose: bool = True,
) -> InitialLossResult:
    r"""Compare the loss of an untrained classifier with :math:`\ln C` (uniform predictions over C classes).

    The model runs in its current mode (usually ``train()``) under ``minidl.no_grad()``; its state (BatchNorm running
    statistics included) and minidl's RNG are restored afterwards.

    With ``loss_fn=nn.BCEWithLogitsLoss()`` the expected loss is :math:`\ln 2` (every output at :math:`p = 0.5`):
    a binary head with logits (N, 1), or a multi-label head (N, C); the weights ``weight`` and ``pos_weight`` are
    not taken into account.

    Args:
        model: a classifier producing logits (N, C) (or (N, 1) for a binary head with ``BCEWithLogitsLoss``).
        data: one batch ``(inputs, targets)`` or a loader yielding such batches.
        loss_fn: the loss. Default: None (``nn.CrossEntropyLoss()``).
        num_classes: C, checked against the logits' second dimension (2 for a one-column binary head). Default: None
            (the logits' second dimension).
        batches: how many batches of a loader to average over. Default: 4.
        tolerance: the accepted relative deviation from :math:`\ln C`. Default: 0.5 (a healthy CNN in train mode
            starts at 1.0 to 1.3 times :math:`\ln C`, dropout making the logits noisier; a last layer ten times too
            large gives several times :math:`\ln C`).
        verbose: print the verdict. Default: True.

    Returns:
        An :class:`InitialLossResult`; ``ok`` is False when the loss is off by more than ``tolerance``.

    Raises:
        ValueError: ``num_classes`` differs from the logits' width; logits that are not (N, C); one column of logits
            without ``BCEWithLogitsLoss``; a loader without a batch.

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> x, y = np.random.default_rng(0).normal(size=(64, 20)).astype(np.float32), np.arange(64) % 10
        >>> check_initial_loss(nn.Linear(20, 10), (x, y), verbose=False).ok
        True
        >>> binary = check_initial_loss(nn.Linear(20, 1), (x, (y[:, None] % 2).astype(np.float32)),
        ...                             nn.BCEWithLogitsLoss(), verbose=False)
        >>> binary.ok, binary.num_classes, round(binary.expected, 4)
        (True, 2, 0.6931)
    """
    where = "check_initial_loss"
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"{where}: batches must be a positive int, got {batches!r}")
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"{where}: tolerance must be a positive number, got {tolerance!r}")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise ValueError(f"{where}: num_classes must be an int of at least 2 (or None), got {num_classes!r}")
    from minidl.nn import BCEWithLogitsLoss, CrossEntropyLoss

    if loss_fn is None:
        loss_fn = CrossEntropyLoss()
    binary_loss = isinstance(loss_fn, BCEWithLogitsLoss)
    source: Iterable[Any] = [data] if _is_batch(data) else data
    total, count, columns, advice = 0.0, 0, 0, ""
    with restored(model), no_grad():
        for b, batch in enumerate(source):
            if b >= batches:
                break
            x, y = _unpack(where, batch)
            x, y = _on_backend(x), _on_backend(y)
            logits = model(x)
            if logits.ndim != 2:
                raise ValueError(f"{where}: expected the model to return logits (N, C), got shape {logits.shape}")
            _check_columns(where, logits.shape, num_classes, binary_loss)
            columns = int(logits.shape[1])
            n = int(x.shape[0])
            loss = float(loss_fn(logits, y))
            if not math.isfinite(loss) and not advice:
                advice = _non_finite_advice(x, y)[1]
            total += loss * n
            count += n
    if count == 0:
        raise ValueError(f"{where}: the loader yielded no batch")
    classes = 2 if columns == 1 else columns
    loss, expected = total / count, math.log(2 if binary_loss else classes)
    ratio = loss / expected
    ok = abs(loss - expected) <= tolerance * expected
    reference = f"ln(2) = {expected:.4g} (p = 0.5)" if binary_loss else f"ln({classes}) = {expected:.4g}"
    head = f"{where}: loss at init {loss:.4g} vs {reference} (ratio {ratio:.2f})"
    if not math.isfinite(loss):
        verdict = f"{head}: NOT FINITE, {advice}"
    elif ok and binary_loss:
        verdict = f"{head}: OK, the initial predictions are close to p = 0.5"
    elif ok:
        verdict = f"{head}: OK, the initial predictions are close to uniform over the {classes} classes"
    elif loss > expected:
        verdict = (
            f"{head}: TOO HIGH, the logits at init are too large: scale down the last layer's weights (a mis-scaled "
            "head), check the initialization and that the inputs are normalized"
        )
    else:
        verdict = (
            f"{head}: TOO LOW, the model is confident before training: check the targets (a constant or leaked "
            "label?) and the loss function"
        )
    if verbose:
        print(verdict)
    return InitialLossResult(loss, expected, ratio, classes, ok, verdict)


@dataclass
class OverfitResult:
    """What :func:`overfit_batch` found.

    Attributes:
        success: the train accuracy reached ``target_accuracy`` (with a finite loss). steps: the updates made (0 when
            the loss is not finite from the first step).
        losses, accuracies: per step (before each update). final_loss, final_accuracy: after the last step.
        grad_norms: ``{module name: L2 norm of its parameters' gradients}`` at the first step, for every module that
            holds trainable parameters (``""`` is the model itself).
        no_gradient: the modules whose gradient was zero or absent at the first step (``(name, class name)``).
        vanishing: the modules whose gradient norm was below ``vanish_ratio`` times the largest one.
        ok: ``success`` and every layer received a gradient. verdict: the printed line(s).
    """

    success: bool
    steps: int
    final_loss: float
    final_accuracy: float
    losses: list[float] = field(repr=False)
    accuracies: list[float] = field(repr=False)
    grad_norms: dict[str, float] = field(repr=False)
    no_gradient: list[tuple[str, str]]
    vanishing: list[tuple[str, str]]
    ok: bool
    verdict: str


def _layer_grad_norms(model: Module) -> dict[str, tuple[str, float]]:
    """``{name: (class name, L2 norm)}`` of each module's own trainable parameters' gradients (None grad -> 0)."""
    norms: dict[str, tuple[str, float]] = {}
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not params:
            continue
        squares = 0.0
        for p in params:
            if p.grad is not None:
                g = p.grad
                squares += float(get_array_module(g).sum(g.astype(np.float64) * g))
        norms[name] = (type(module).__name__, math.sqrt(squares))
    return norms


def overfit_batch(
    model: Module,
    batch: Any,
    steps: int = 300,
    lr: float = 1e-3,
    optimizer: Any = None,
    loss_fn: Any = None,
    target_accuracy: float = 1.0,
    vanish_ratio: float = 1e-6,
    verbose: bool = True,
) -> OverfitResult:
    """Train on one batch until it is memorized; name the layers that get no gradient when it is not.

    Training stops as soon as the accuracy on the batch reaches ``target_accuracy``. Afterwards the model, the
    optimizer (when one is passed) and minidl's RNG are restored: the check does not change the model it checks. Turn
    off dropout and augmentation for it (Karpathy: regularization hides a failure to fit). A loss that is not finite
    stops the training: from the first step, the verdict counts the nan/inf in the batch; later, it says the training
    diverged; both point to :func:`minidl.detect_anomaly`.

    Args:
        model: the classifier (logits (N, C)); trained in ``train()`` mode.
        batch: ``(inputs, targets)``, small (e.g. 2 to 32 samples).
        steps: the most optimizer steps. Default: 300.
        lr: the learning rate of the default optimizer. Default: 1e-3.
        optimizer: an optimizer over ``model``'s parameters. Default: None (``optim.Adam(model.parameters(), lr)``).
        loss_fn: the loss. Default: None (``nn.CrossEntropyLoss()``).
        target_accuracy: the train accuracy that counts as memorized. Default: 1.0.
        vanish_ratio: a layer whose first-step gradient norm is below this times the largest layer's is reported
            as vanishing. Default: 1e-6.
        verbose: print the verdict. Default: True.

    Returns:
        An :class:`OverfitResult`.

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> x, y = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32), np.arange(8) % 4
        >>> model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> overfit_batch(model, (x, y), lr=1e-2, verbose=False).success
        True
    """
    where = "overfit_batch"
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{where}: steps must be a positive int, got {steps!r}")
    if not 0 < target_accuracy <= 1:
        raise ValueError(f"{where}: target_accuracy must be in (0, 1], got {target_accuracy!r}")
    x, y = _unpack(where, batch)
    x, y = _on_backend(x), _on_backend(y)
    if loss_fn is None:
        from minidl.nn import CrossEntropyLoss

        loss_fn = CrossEntropyLoss()
    given = optimizer
    losses: list[float] = []
    accuracies: list[float] = []
    first: dict[str, tuple[str, float]] = {}
    with restored(model, given):
        if optimizer is None:
            from minidl.optim import Adam

            optimizer = Adam(model.parameters(), lr=lr)
        model.train()
        for step in range(steps + 1):
            model.zero_grad()
            out = model(x)
            loss = float(loss_fn(out, y))
            losses.append(loss)
            accuracies.append(float(accuracy(out, y)))
            done = accuracies[-1] >= target_accuracy or step == steps
            if not math.isfinite(loss) or (done and step > 0):
                break
            model.backward(loss_fn.backward())
            if step == 0:  # the gradients are diagnosed at the first step even when the batch is already fitted
                first = _layer_grad_norms(model)
            if done:
                break
            optimizer.step()
    taken = len(losses) - 1
    largest = max((norm for _, norm in first.values()), default=0.0)
    no_gradient = [(name, cls) for name, (cls, norm) in first.items() if norm == 0.0]
    vanishing = [(name, cls) for name, (cls, norm) in first.items() if 0.0 < norm < vanish_ratio * largest]
    success = accuracies[-1] >= target_accuracy and math.isfinite(losses[-1])
    head = (
        f"{where}: {'reached' if success else 'did not reach'} {target_accuracy:.0%} train accuracy "
        f"({accuracies[-1]:.0%}, loss {losses[-1]:.4g}) in {taken} steps"
    )
    if not math.isfinite(losses[0]):  # no update was made: the batch or the forward is at fault, not the training
        head = (
            f"{where}: did not reach {target_accuracy:.0%} train accuracy: the loss was not finite ({losses[0]:.4g}) "
            f"from the first step, before any update (stopped at step 0 of {steps})"
        )
    problems = [] if math.isfinite(losses[0]) else [_non_finite_advice(x, y)[1]]
    if math.isfinite(losses[0]) and not math.isfinite(losses[-1]):
        problems.append(
            f"the loss became {losses[-1]:.4g} after {taken} update{'s' if taken != 1 else ''}: the training diverged, "
            "try a smaller lr; "
            "`with minidl.detect_anomaly():` around the forward names the first module whose output is not finite"
        )
    problems += [
        f"layer {name or '(the model)'!r} ({cls}) received no gradient: a detached layer or a dead path before it?"
        for name, cls in no_gradient
    ] + [
        f"layer {name or '(the model)'!r} ({cls}) received a vanishing gradient (norm {first[name][1]:.2e}, "
        f"largest {largest:.2e})"
        for name, cls in vanishing
    ]
    if not problems and not success:
        problems.append("every layer received a gradient: try a larger lr or more steps, and check the loss")
    verdict = head + (": OK" if not problems else "; " + "; ".join(problems))
    if verbose:
        print(verdict)
    return OverfitResult(
        success=success,
        steps=taken,
        final_loss=losses[-1],
        final_accuracy=accuracies[-1],
        losses=losses,
        accuracies=accuracies,
        grad_norms={name: norm for name, (_, norm) in first.items()},
        no_gradient=no_gradient,
        vanishing=vanishing,
        ok=success and not no_gradient and not vanishing,
        verdict=verdict,
    )
