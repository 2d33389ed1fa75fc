"""Pictures of a training run: learning curves, the confusion matrix, a gallery of misclassified images.

* :func:`plot_history`: train vs validation loss and accuracy per epoch -- the overfitting picture: when the
  training curve keeps improving while the validation curve flattens or turns, the gap between them is the amount of
  overfitting (the best validation epoch is marked).
* :func:`plot_confusion_matrix`: which classes are mistaken for which (rows: true class, columns: predicted).
* :func:`plot_misclassified`: the images the model got wrong, with predicted and true labels.

matplotlib is an optional dependency (``pip install minidl[viz]``), imported only when a plot is drawn. The figures
are drawn with matplotlib's object API on the Agg canvas (no window, no global pyplot state) and written atomically as
PNG (or any format matplotlib knows from the file suffix).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minidl.backend import to_numpy
from minidl.train.history import History, atomic_write_bytes
from minidl.train.metrics import as_class_indices

__all__ = ["plot_confusion_matrix", "plot_history", "plot_misclassified"]


def _figure(where: str, figsize: tuple[float, float]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"{where} needs matplotlib: pip install minidl[viz]") from None
    return Figure(figsize=figsize, layout="constrained")


def _write(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=(path.suffix.lstrip(".").lower() or "png"), dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue(), "minidl.train.plots")
    return path


def _records(history: Any) -> History:
    if isinstance(history, History):
        return history
    if isinstance(history, (str, os.PathLike)):
        return History.load(history)
    return History(history)


def plot_history(
    history: History | Sequence[dict[str, Any]] | str | os.PathLike[str],
    path: str | os.PathLike[str],
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Learning curves: one panel per metric (loss, accuracy, ...), training and validation together.

    Args:
        history: a :class:`History`, a list of per-epoch records, or the path of a saved history.
        path: the image file (``.png``, ``.svg``, ``.pdf``).
        title: a title over the panels. Default: None.
        dpi: resolution of raster formats. Default: 120.

    Returns:
        ``path`` as a ``Path``.

    Examples:
        >>> import os, tempfile
        >>> h = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + 0.05 * e, "train_accuracy": 1 - 0.5 / e,
        ...       "val_accuracy": 0.6} for e in range(1, 6)]
        >>> out = plot_history(h, os.path.join(tempfile.mkdtemp(), "curves.png"))  # doctest: +SKIP
    """
    h = _records(history)
    if len(h) == 0:
        raise ValueError("plot_history: the history is empty")
    keys = h.keys()
    epochs = h["epoch"] if "epoch" in keys else list(range(1, len(h) + 1))
    metrics = []
    for key in keys:
        for prefix in ("train_", "val_"):
            if (
                key.startswith(prefix)
                and key[len(prefix) :] not in metrics
                and key[len(prefix) :] not in ("throughput", "grad_norm")
            ):
                metrics.append(key[len(prefix) :])
    if not metrics:
        raise ValueError(f"plot_history: no train_*/val_* metrics in the history (keys {keys})")
    fig = _figure("plot_history", (5.0 * len(metrics), 3.8))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for prefix, label, style in (("train_", "train", "-o"), ("val_", "validation", "-s")):
            if prefix + metric in keys:
                ax.plot(epochs, h[prefix + metric], style, markersize=3, label=label)
        if "val_" + metric in keys:
            values = np.asarray(h["val_" + metric], dtype=float)
            if np.isfinite(values).any():
                best = int(np.nanargmin(values) if "loss" in metric else np.nanargmax(values))
                ax.axvline(epochs[best], color="gray", linestyle=":", linewidth=1)
                ax.annotate(
                    f"best val\nepoch {epochs[best]}",
                    (epochs[best], values[best]),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                    color="gray",
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _write(fig, path, dpi)


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str] | None,
    path: str | os.PathLike[str],
    normalize: bool = False,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted) with the counts (or row fractions) written in.

    Args:
        cm: the (C, C) matrix of :func:`~minidl.train.confusion_matrix`.
        class_names: C labels, or None for 0..C-1.
        path: the image file.
        normalize: show each row as fractions (per-class recall on the diagonal). Default: False.
        title: the title. Default: None ("confusion matrix" with the accuracy).
        dpi: resolution. Default: 120.
    """
    cm = np.asarray(to_numpy(cm))
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: cm must be square (C, C), got shape {cm.shape}")
    c = cm.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for a {c}x{c} matrix")
    counts = cm.astype(np.float64)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    size = max(4.0, 0.55 * c + 2.0)
    fig = _figure("plot_confusion_matrix", (size + 1.0, size))
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(c), names, rotation=45, ha="right")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = counts.sum()
    acc = np.trace(counts) / total if total else 0.0
    rows_note = ", rows normalized: recall on the diagonal" if normalize else ""
    ax.set_title(title or f"confusion matrix (accuracy {acc:.3f}, N = {int(total)}{rows_note})")
    if c <= 30:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(c):
            for j in range(c):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shown[i, j] > threshold else "black",
                )
    return _write(fig, path, dpi)


def _displayable(images: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """(N, H, W, 3|1) floats in [0, 1] from (N, C, H, W) floats, (N, H, W, C) uint8 or (N, H, W) arrays."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None] if x.dtype == np.uint8 else x[:, None]
    if x.ndim != 4:
        raise ValueError(
            f"plot_misclassified: images must be (N, C, H, W), (N, H, W, C) uint8 or (N, H, W); got {x.shape}"
        )
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    x = x.astype(np.float64)
    if mean is not None or std is not None:
        m = np.asarray(0.0 if mean is None else mean, np.float64).reshape(1, -1, 1, 1)
        s = np.asarray(1.0 if std is None else std, np.float64).reshape(1, -1, 1, 1)
        x = x * s + m
    else:  # unknown normalization: stretch each image to [0, 1]
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        hi = x.max(axis=(1, 2, 3), keepdims=True)
        x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
    return np.clip(x.transpose(0, 2, 3, 1), 0.0, 1.0)


def plot_misclassified(
    images: Any,
    preds: Any,
    targets: Any,
    class_names: Sequence[str] | None,
    path: str | os.PathLike[str],
    n: int = 25,
    mean: Any = None,
    std: Any = None,
    dpi: int = 120,
) -> Path:
    """A grid of the first ``n`` misclassified images, each titled "predicted (true)" in red.

    Args:
        images: (N, C, H, W) floats (as fed to the model), (N, H, W, C) uint8 or (N, H, W).
        preds: predicted classes (N,) or logits (N, C).
        targets: class indices (N,) or probability rows (N, C).
        class_names: labels of the classes, or None for the indices.
        path: the image file.
        n: the most images to show. Default: 25.
        mean, std: the per-channel ``Normalize`` values to undo; without them each image is stretched to [0, 1].
            Default: None.
        dpi: resolution. Default: 120.
    """
    x = np.asarray(to_numpy(images)) if hasattr(images, "shape") else np.asarray(images)
    p = as_class_indices("plot_misclassified", "preds", preds)
    t = as_class_indices("plot_misclassified", "targets", targets)
    if not (len(x) == len(p) == len(t)):
        raise ValueError(f"plot_misclassified: {len(x)} images, {len(p)} predictions and {len(t)} targets")
    wrong = np.flatnonzero(p != t)[: max(int(n), 0)]

    def name(k: int) -> str:
        return str(k) if class_names is None else str(class_names[k])

    cols = max(1, min(5, len(wrong)))
    rows = max(1, math.ceil(len(wrong) / cols))
    fig = _figure("plot_misclassified", (max(2.0 * cols, 4.5), 2.2 * rows + 0.3))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    shown = _displayable(x[wrong], mean, std) if len(wrong) else np.zeros((0, 1, 1, 3))
    for ax in axes:
        ax.axis("off")
    for ax, i, img in zip(axes, wrong, shown, strict=False):
        ax.imshow(
            img[..., 0] if img.shape[-1] == 1 else img,
            cmap="gray" if img.shape[-1] == 1 else None,
            interpolation="nearest",
        )
        ax.set_title(f"{name(p[i])}\n(true {name(t[i])})", fontsize=8, color="tab:red")
    if len(wrong) == 0:
        axes[0].text(0.5, 0.5, "no misclassified image", ha="center", va="center")
    fig.suptitle(f"misclassified: {int((p != t).sum())} of {len(p)} (showing {len(wrong)})")
    return _write(fig, path, dpi)
