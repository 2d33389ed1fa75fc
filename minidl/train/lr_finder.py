r"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's ``lr_find``).

Train for ``num_iter`` mini-batches while the learning rate grows exponentially from ``start_lr`` to ``end_lr``:

.. math:: \eta_i = \eta_{\text{start}} \left(\eta_{\text{end}} / \eta_{\text{start}}\right)^{i / (\text{num\_iter} - 1)}

and record the loss of each step, smoothed by an exponential moving average with bias correction (as Adam corrects
its moments; without it the first values would be pulled towards 0):

.. math:: a_i = \beta a_{i-1} + (1 - \beta)\, L_i, \quad a_{-1} = 0, \qquad \bar L_i = a_i / (1 - \beta^{i+1})

At tiny learning rates nothing happens (a flat curve); then the loss falls, faster and faster; past the largest stable
learning rate it shoots up. The test stops at that divergence (:math:`\bar L_i > \text{diverge\_th} \cdot \min_j
\bar L_j`, or a NaN). A loss that is not finite at the very first step (before any update), or on a batch whose
inputs hold nan/inf, is no divergence: the test raises a ``ValueError`` that counts the batch's non-finite values and
points to :func:`minidl.detect_anomaly`.

A good learning rate is where the loss falls fastest -- clearly before the minimum of the curve, since at the minimum
the learning rate is already almost too large:

* ``"steepest"`` (default): the most negative slope :math:`d\bar L / d\log\eta` before the curve's minimum
  (after it the loss of a diverging network can fall again from a spike: a steep slope at a useless learning rate);
* ``"valley"``: fastai's: two thirds down the longest stretch on which the curve keeps falling, before its minimum;
* ``"minimum"``: a tenth of the learning rate at the curve's minimum (the older rule of thumb).

The model, the optimizer and minidl's RNG are restored afterwards (see :mod:`minidl.train._restore`): the test does
not train the model it examines. Every param group's learning rate is scaled together: group 0 follows the schedule
and the other groups keep their ratio to it (discriminative learning rates stay discriminative).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minidl.nn.module import Module
from minidl.train._restore import restored
from minidl.train.loop import _on_backend, _unpack
from minidl.train.sanity import _non_finite_advice

__all__ = ["LRFinderResult", "lr_find", "suggest_lr"]

_SUGGESTIONS = ("steepest", "valley", "minimum")


def _longest_valley(losses: np.ndarray) -> int:
    """fastai's valley: the index two thirds down the longest strictly decreasing run (as a subsequence)."""
    n = len(losses)
    lengths = np.ones(n, dtype=int)
    previous = np.arange(n)
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i], previous[i] = lengths[j] + 1, previous[j]
    end = int(np.argmax(lengths))
    start = int(previous[end])
    return start + (end - start) * 2 // 3


def suggest_lr(lrs: Any, losses: Any, method: str = "steepest", skip_start: int = 5, skip_end: int = 2) -> float:
    """The learning rate ``method`` picks from a range-test curve (see the module docstring for the methods).

    Args:
        lrs, losses: the curve (the smoothed losses), same length.
        method: ``"steepest"``, ``"valley"`` or ``"minimum"``. Default: "steepest".
        skip_start, skip_end: points ignored at each end (the start is noisy; the end is the divergence).
            Default: 5, 2.

    Examples:
        >>> lrs = np.logspace(-4, 0, 41)
        >>> losses = 1 / (1 + np.exp(4 * (np.log10(lrs) + 2)))   # falls fastest at lr = 1e-2
        >>> float(f"{suggest_lr(lrs, losses):.3g}")
        0.01
    """
    where = "suggest_lr"
    if method not in _SUGGESTIONS:
        raise ValueError(f"{where}: method must be one of {_SUGGESTIONS}, got {method!r}")
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"{where}: lrs and losses must be 1-D of one length, got shapes {lrs.shape}, {losses.shape}")
    keep = slice(skip_start, len(lrs) - skip_end if skip_end else None)
    lrs, losses = lrs[keep], losses[keep]
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(lrs) < 3:
        raise ValueError(
            f"{where}: the curve has {len(lrs)} usable points after skipping {skip_start} at the start and "
            f"{skip_end} at the end; run more iterations (num_iter) or lower start_lr"
        )
    lowest = int(np.argmin(losses))
    if method == "minimum":
        return float(lrs[lowest] / 10)
    # only the part before the minimum: past it the loss may fall again from a spike (a steep slope, a bad lr)
    if lowest < 2 or losses[0] - losses[lowest] <= 1e-6 * abs(losses[0]):
        raise ValueError(
            f"{where}: the smoothed loss never fell (its lowest point, at lr {lrs[lowest]:.2g}, is no lower than its "
            f"start {losses[0]:.4g}); "
            "lower start_lr, or check the model and the loss"
        )
    lrs, losses = lrs[: lowest + 1], losses[: lowest + 1]
    if method == "valley":
        return float(lrs[_longest_valley(losses)])
    slopes = np.gradient(losses, np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


@dataclass
class LRFinderResult:
    """The range test's curve and suggestion.

    Attributes:
        lrs: the learning rate of each step (group 0's). losses: the smoothed losses. raw_losses: the losses as
            measured. suggested_lr: the suggestion (NaN when the smoothed loss never fell). method: how it was
            chosen. diverged: the test stopped early at a divergence (the last point is the divergent one).
        note: why there is no suggestion when ``suggested_lr`` is NaN (e.g. ``"the smoothed loss never fell ..."``);
            ``""`` when there is one.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float] = field(repr=False)
    suggested_lr: float
    method: str
    diverged: bool
    note: str = ""

    def plot(self, path: str | os.PathLike[str] | None = None, ax: Any = None, dpi: int = 120) -> Any:
        """Loss against learning rate (log scale), the suggestion marked.

        The y axis spans the smoothed loss up to the divergence (its lowest to its highest value before the point
        that diverged, with a margin): the diverging point and the noisier raw losses may leave the plot.

        Args:
            path: write the figure there (atomically; ``.png``, ``.svg``, ``.pdf``). Default: None.
            ax: draw into this matplotlib Axes instead of a new figure. Default: None.
            dpi: resolution of raster formats. Default: 120.

        Returns:
            ``path`` as a ``Path`` when given; else the Axes drawn into (``ax``, or the new figure's).
        """
        from minidl.train.plots import _figure, _write

        if ax is None:
            ax = _figure("LRFinderResult.plot", (6.0, 4.0)).add_subplot()
        ax.plot(self.lrs, self.raw_losses, color="0.75", linewidth=0.8, label="loss per step")
        ax.plot(self.lrs, self.losses, color="C0", label="smoothed loss")
        if math.isfinite(self.suggested_lr):
            ax.axvline(self.suggested_lr, color="C3", linestyle="--", label=f"suggested lr {self.suggested_lr:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        before = self.losses[:-1] if self.diverged and len(self.losses) > 1 else self.losses
        finite = [v for v in before if math.isfinite(v)]
        if finite:  # the divergence would flatten the interesting part of the curve: show the curve up to it
            low, high = min(finite), max(finite)
            margin = 0.1 * (high - low) if high > low else 0.05 * abs(high) + 1e-3
            ax.set_ylim(low - margin, high + margin)
        ax.set_title(f"learning-rate range test ({self.method})")
        ax.legend()
        if path is not None:
            return _write(ax.figure, path, dpi)
        return ax


def _cycle(where: str, loader: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError(f"{where}: the loader yielded no batch")


def lr_find(
    model: Module,
    loader: Iterable[Any],
    loss_fn: Any = None,
    optimizer: Any = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    beta: float = 0.98,
    diverge_th: float = 5.0,
    suggestion: str = "steepest",
    skip_start: int = 5,
    skip_end: int = 2,
    verbose: bool = True,
) -> LRFinderResult:
    """Run the learning-rate range test; return the curve and a suggested learning rate (see the module docstring).

    Args:
        model: the model, trained in ``train()`` mode during the test and restored afterwards.
        loader: yields ``(inputs, targets)`` batches; restarted when shorter than ``num_iter``.
        loss_fn: the loss. Default: None (``nn.CrossEntropyLoss()``).
        optimizer: the optimizer to test (restored afterwards). Default: None
            (``optim.SGD(model.parameters(), lr=start_lr, momentum=0.9)``).
        start_lr, end_lr: the range of learning rates. Default: 1e-7, 10.
        num_iter: the most steps. Default: 100.
        beta: the smoothing factor of the loss's moving average. Default: 0.98 (fastai's).
        diverge_th: stop when the smoothed loss exceeds this times its minimum. Default: 5.
        suggestion: ``"steepest"``, ``"valley"`` or ``"minimum"`` (see :func:`suggest_lr`). Default: "steepest".
        skip_start, skip_end: points of the curve ignored by the suggestion. Default: 5, 2.
        verbose: print the suggestion. Default: True.

    Returns:
        An :class:`LRFinderResult` (``.plot(path)`` draws it); when there is no suggestion, ``suggested_lr`` is NaN
        and ``note`` says why (printed too when ``verbose``).

    Raises:
        ValueError: too few steps before the divergence for a suggestion; a loss that is not finite from the first
            step, or on a batch holding nan/inf (the message counts them).

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn, optim
        >>> from minidl.data import DataLoader, TensorDataset
        >>> _ = minidl.manual_seed(0)
        >>> x = np.random.default_rng(0).normal(size=(256, 10)).astype(np.float32)
        >>> loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).astype(np.int64)), batch_size=32, shuffle=True)
        >>> model = nn.Linear(10, 2)
        >>> result = lr_find(model, loader, num_iter=60, start_lr=1e-4, end_lr=100, verbose=False)
        >>> 1e-4 < result.suggested_lr < 100
        True
    """
    where = "lr_find"
    if not (0 < start_lr < end_lr):
        raise ValueError(f"{where}: expected 0 < start_lr < end_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < skip_start + skip_end + 3:
        raise ValueError(
            f"{where}: num_iter must be an int of at least skip_start + skip_end + 3 = {skip_start + skip_end + 3}, "
            f"got {num_iter!r}"
        )
    if not 0 <= beta < 1:
        raise ValueError(f"{where}: beta must be in [0, 1), got {beta!r}")
    if not diverge_th > 1:
        raise ValueError(f"{where}: diverge_th must be greater than 1, got {diverge_th!r}")
    if suggestion not in _SUGGESTIONS:
        raise ValueError(f"{where}: suggestion must be one of {_SUGGESTIONS}, got {suggestion!r}")
    if loss_fn is None:
        from minidl.nn import CrossEntropyLoss

        loss_fn = CrossEntropyLoss()
    given = optimizer
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    diverged = False
    with restored(model, given):
        if optimizer is None:
            from minidl.optim import SGD

            optimizer = SGD(model.parameters(), lr=start_lr, momentum=0.9)
        base = float(optimizer.param_groups[0]["lr"])
        ratios = [float(g["lr"]) / base if base > 0 else 1.0 for g in optimizer.param_groups]
        growth = (end_lr / start_lr) ** (1 / (num_iter - 1))
        batches = _cycle(where, loader)
        model.train()
        average, best = 0.0, math.inf
        for i in range(num_iter):
            lr = start_lr * growth**i
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = lr * ratio
            x, y = _unpack(where, next(batches))
            x, y = _on_backend(x), _on_backend(y)
            model.zero_grad()
            loss = float(loss_fn(model(x), y))
            lrs.append(lr)
            raw.append(loss)
            if not math.isfinite(loss):
                dirty, advice = _non_finite_advice(x, y)
                if i == 0:
                    raise ValueError(
                        f"{where}: the loss was not finite ({loss}) from the first step (at lr {lr:.2g}, before any "
                        f"update), so there is no curve to read; {advice}"
                    )
                if dirty:
                    raise ValueError(
                        f"{where}: the loss of step {i + 1} (at lr {lr:.2g}) was not finite ({loss}) on a batch that "
                        f"holds nan/inf, so it is no divergence; {advice}"
                    )
                smoothed.append(math.inf)
                diverged = True
                break
            average = beta * average + (1 - beta) * loss
            smooth = average / (1 - beta ** (i + 1))
            smoothed.append(smooth)
            best = min(best, smooth)
            if smooth > diverge_th * best:
                diverged = True
                break
            model.backward(loss_fn.backward())
            optimizer.step()
    usable = sum(math.isfinite(v) for v in smoothed[skip_start : len(smoothed) - skip_end])
    if usable < 3:
        raise ValueError(
            f"{where}: the loss {'diverged' if diverged else 'was recorded'} after only {len(lrs)} steps (at lr "
            f"{lrs[-1]:.2g}), too few for a suggestion beyond the {skip_start} + {skip_end} skipped points; lower "
            "start_lr or raise num_iter"
        )
    try:
        suggested, note = suggest_lr(lrs, smoothed, suggestion, skip_start, skip_end), ""
    except ValueError as err:  # the loss never fell: the curve is still worth a look, but there is no suggestion
        suggested, note = math.nan, str(err).removeprefix("suggest_lr: ")
    result = LRFinderResult(lrs, smoothed, raw, suggested, suggestion, diverged, note)
    if verbose:
        stop = f"stopped at lr {lrs[-1]:.2g} (diverged)" if diverged else f"reached end_lr {lrs[-1]:.2g}"
        said = f"no suggestion ({note})" if note else f"suggested lr {suggested:.2g} ({suggestion})"
        print(f"{where}: {said}; {len(lrs)} steps, {stop}")
    return result
