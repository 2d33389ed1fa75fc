"""Pictures of the training-health monitors (:mod:`minidl.train.monitors`).

* :func:`plot_activation_stats`: the CS231n init demo: per-layer mean and std of the activations at one recorded
  step, and one histogram per layer. Healthy: the std stays of the same order from layer to layer and the histograms
  keep their spread; with a too-small init the std shrinks toward 0 with depth and the histograms collapse onto a
  spike at 0; with a too-large one tanh/sigmoid histograms pile up at the saturation values.
* :func:`plot_update_ratios`: ``||update|| / ||W||`` per parameter over training, on a log axis with the 1e-3 line.
  Curves far below it (1e-5): the learning rate is too low for that layer; far above (1e-1): too high.
* :func:`plot_dead_relu`: the fraction of dead units per ReLU; one that climbs toward 1 is a layer dying.
* :func:`plot_gradient_norms`: per-layer and global gradient norms (log axis): a first layer orders of magnitude
  below the last is vanishing; spikes are the steps clipping would catch.

Each takes the monitor (its per-step history), a :class:`~minidl.train.History` (per step, or the trainer's
per-epoch history with the epoch means) or the path of a saved history, and writes the figure atomically (matplotlib
is optional: ``pip install minidl[viz]``). A module called more than once per forward (a shared ``nn.ReLU()``) is
drawn once per call, as the monitors record it: ``1`` for its first call, ``1#2`` for its second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from minidl.train.history import History
from minidl.train.plots import _figure, _records, _write

__all__ = ["plot_activation_stats", "plot_dead_relu", "plot_gradient_norms", "plot_update_ratios"]

MAX_LINES = 12


def _history(where: str, source: Any) -> History:
    history = source.history if hasattr(source, "history") and isinstance(source.history, History) else source
    h = _records(history)
    if len(h) == 0:
        raise ValueError(f"{where}: the history is empty (did training run with the monitor?)")
    return h


def _plot_series(
    where: str,
    source: Any,
    path: str | os.PathLike[str],
    prefixes: list[str],
    ylabel: str,
    log: bool,
    title: str | None,
    dpi: int,
    reference: float | None = None,
    totals: tuple[str, ...] = (),
    keep: Any = None,
) -> Path:
    h = _history(where, source)
    series = {prefix: {k: v for k, v in h.series(prefix).items() if keep is None or keep(k)} for prefix in prefixes}
    if not any(series.values()) and not any(k in h for k in totals):
        raise ValueError(f"{where}: the history has no {' or '.join(p + '/...' for p in prefixes)} series")
    xkey = "step" if "step" in h else "epoch"
    x = h[xkey] if xkey in h else list(range(1, len(h) + 1))
    fig = _figure(where, (6.4 * len(prefixes), 4.0))
    for i, prefix in enumerate(prefixes):
        ax = fig.add_subplot(1, len(prefixes), i + 1)
        items = list(series[prefix].items())
        for name, values in items[:MAX_LINES]:
            ax.plot(x, values, label=name, lw=1.2)
        for key in totals:
            if key in h:
                ax.plot(x, h[key], label=key, color="black", lw=2.0)
        if reference is not None:
            ax.axhline(reference, color="grey", ls="--", lw=1.0, label=f"{reference:g}")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(xkey)
        ax.set_ylabel(ylabel if len(prefixes) == 1 else prefix)
        ax.grid(True, alpha=0.3)
        more = f" (first {MAX_LINES} of {len(items)})" if len(items) > MAX_LINES else ""
        ax.legend(fontsize=7, ncol=2, title=more or None, title_fontsize=7)
    if title:
        fig.suptitle(title)
    return _write(fig, path, dpi)


def plot_update_ratios(
    source: Any,
    path: str | os.PathLike[str],
    title: str | None = None,
    dpi: int = 120,
    reference: float = 1e-3,
    include_bias: bool = False,
) -> Path:
    """``update_ratio/<parameter>`` over steps (or epochs), log scale, with a dashed line at ``reference``.

    Args:
        source: an :class:`~minidl.train.UpdateRatio`, a :class:`~minidl.train.History` or a saved history's path.
        path: the image file. title: a title. Default: None. dpi: Default: 120.
        reference: the rule-of-thumb ratio drawn as a line. Default: 1e-3.
        include_bias: also draw the parameters whose name ends in ``bias`` (the rule of thumb is about weights;
            a bias starting at 0 has a large ratio). Default: False.
    """
    keep = None if include_bias else (lambda name: not name.endswith("bias"))
    return _plot_series(
        "plot_update_ratios", source, path, ["update_ratio"], "||update|| / ||W||", True, title, dpi, reference,
        keep=keep,
    )  # fmt: skip


def plot_dead_relu(source: Any, path: str | os.PathLike[str], title: str | None = None, dpi: int = 120) -> Path:
    """``dead_relu/<module>`` (fraction of dead units) and ``relu_zeros/<module>`` (fraction of zero outputs).

    Args:
        source: a :class:`~minidl.train.DeadReLU`, a History or a path. path: the image file. title, dpi: as above.
    """
    return _plot_series("plot_dead_relu", source, path, ["dead_relu", "relu_zeros"], "fraction", False, title, dpi)


def plot_gradient_norms(source: Any, path: str | os.PathLike[str], title: str | None = None, dpi: int = 120) -> Path:
    """``grad_norm/<module>`` per layer and ``grad_norm_total`` (thick black), log scale.

    Args:
        source: a :class:`~minidl.train.GradientNorms`, a History or a path. path: the image file. title, dpi.
    """
    return _plot_series(
        "plot_gradient_norms",
        source,
        path,
        ["grad_norm"],
        "gradient norm",
        True,
        title,
        dpi,
        None,
        ("grad_norm_total",),
    )


def plot_activation_stats(
    stats: Any,
    path: str | os.PathLike[str],
    record: int = 0,
    max_layers: int = 10,
    same_range: bool = True,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """The init demo: mean and std of each watched layer's output at one recorded step, and their histograms,
    in the order the forward ran them (a module called twice appears twice: ``name`` and ``name#2``).

    Args:
        stats: an :class:`~minidl.train.ActivationStats` after training.
        path: the image file.
        record: which recorded step (an index into ``stats.history``; -1: the last). Default: 0 (the first step,
            the network as initialized).
        max_layers: at most this many histograms (the first ones). Default: 10.
        same_range: draw every histogram over the same x range (the union of theirs), so that a layer whose
            outputs collapse toward 0 shows as a spike, as in the deck; False: each over its own range. Default: True.
        title: a title. Default: None. dpi: Default: 120.
    """
    where = "plot_activation_stats"
    if not hasattr(stats, "histograms"):
        raise TypeError(f"{where}: expected an ActivationStats monitor, got {type(stats).__name__}")
    h = _history(where, stats)
    if not -len(h) <= record < len(h):
        raise IndexError(f"{where}: record {record} is out of range for {len(h)} recorded steps")
    row = h.records[record]
    names = [key[len("act_mean/") :] for key in row if key.startswith("act_mean/")]
    means = [row[f"act_mean/{n}"] for n in names]
    stds = [row[f"act_std/{n}"] for n in names]
    hists = stats.histograms[record] if stats.histograms else {}
    shown = [n for n in names if n in hists][:max_layers]
    ncols = max(len(shown), 2)
    fig = _figure(where, (max(1.5 * ncols, 8.0), 5.0))
    grid = fig.add_gridspec(2, ncols)
    for col, (values, label) in enumerate(((means, "mean"), (stds, "std"))):
        ax = fig.add_subplot(grid[0, col * ncols // 2 : (col + 1) * ncols // 2])
        ax.plot(range(len(names)), values, "o-")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_title(f"activation {label} per layer (step {row.get('step', record)})", fontsize=9)
        ax.grid(True, alpha=0.3)
    lows = [float(np.asarray(hists[n][1])[0]) for n in shown]
    highs = [float(np.asarray(hists[n][1])[-1]) for n in shown]
    for col, name in enumerate(shown):
        counts, edges = hists[name]
        ax = fig.add_subplot(grid[1, col])
        ax.stairs(np.asarray(counts), np.asarray(edges), fill=True)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        if same_range:
            ax.set_xlim(min(lows), max(highs))
    if title:
        fig.suptitle(title)
    return _write(fig, path, dpi)
