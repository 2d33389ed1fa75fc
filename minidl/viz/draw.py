"""Drawing the explanations: heat maps over images, filter grids, feature maps, synthesized class images.

matplotlib is optional (``pip install minidl[viz]``), imported only here, when a figure is drawn; figures are drawn
on the Agg canvas (no window) and written atomically, like :mod:`minidl.train.plots`. The inputs are NumPy arrays
(what :mod:`minidl.viz.explain` returns) or arrays of any backend.

* :func:`plot_heatmaps`: one row per image, the image then each heat map (saliency, SmoothGrad, Grad-CAM, ...)
  drawn over it.
* :func:`plot_filters`: the first convolution's filters (:func:`~minidl.viz.filter_grid`).
* :func:`plot_activation_maps`: the channels of one image's feature maps.
* :func:`plot_images`: a row of images, e.g. class-model visualizations.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minidl.backend import to_numpy
from minidl.train.plots import _displayable, _figure, _write
from minidl.viz.explain import filter_grid

__all__ = ["plot_activation_maps", "plot_filters", "plot_heatmaps", "plot_images"]


def _images(where: str, images: Any, mean: Any, std: Any) -> np.ndarray:
    x = np.asarray(to_numpy(images))
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.dtype != np.uint8:
        x = x[None]  # one (C, H, W) image
    if x.ndim != 4:
        raise ValueError(f"{where}: images must be (N, C, H, W) or one (C, H, W), got shape {x.shape}")
    return _displayable(x, mean, std)


def _show(ax: Any, img: np.ndarray) -> None:
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_heatmaps(
    images: Any,
    heatmaps: Mapping[str, Any] | Any,
    path: str | os.PathLike[str],
    titles: Sequence[str] | None = None,
    mean: Any = None,
    std: Any = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    dpi: int = 120,
) -> Path:
    """Each image, then each of its heat maps drawn over it (``alpha``-blended, colour map ``cmap``).

    Args:
        images: (N, C, H, W) normalized images (as fed to the model) or (N, H, W, C) uint8.
        heatmaps: ``{"Grad-CAM": (N, H, W), "saliency": (N, H, W), ...}`` (one column each), or one (N, H, W) array.
            Each map is scaled to [0, 1] per image for display.
        path: the image file.
        titles: a title per image (e.g. "cat (p=0.93)"). Default: None.
        mean, std: the per-channel normalization to undo for display. Default: None (each image stretched).
        alpha: opacity of the heat map. Default: 0.5.  cmap: matplotlib colour map. Default: "jet".
        dpi: Default: 120.
    """
    where = "plot_heatmaps"
    shown = _images(where, images, mean, std)
    maps = dict(heatmaps) if isinstance(heatmaps, Mapping) else {"heat map": heatmaps}
    n, h, w = shown.shape[:3]
    for name, m in list(maps.items()):
        m = np.asarray(to_numpy(m), dtype=np.float64)
        if m.shape != (n, h, w):
            raise ValueError(f"{where}: heat map {name!r} has shape {m.shape}, expected (N, H, W) = {(n, h, w)}")
        lo, hi = m.min(axis=(1, 2), keepdims=True), m.max(axis=(1, 2), keepdims=True)
        maps[name] = np.where(hi > lo, (m - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    if titles is not None and len(titles) != n:
        raise ValueError(f"{where}: {len(titles)} titles for {n} images")
    cols = 1 + len(maps)
    fig = _figure(where, (1.7 * cols, 1.7 * n + 0.3))
    for i in range(n):
        ax = fig.add_subplot(n, cols, i * cols + 1)
        _show(ax, shown[i])
        if titles is not None:
            ax.set_ylabel(titles[i], fontsize=7)
        if i == 0:
            ax.set_title("image", fontsize=8)
        for j, (name, m) in enumerate(maps.items()):
            ax = fig.add_subplot(n, cols, i * cols + j + 2)
            _show(ax, shown[i])
            ax.imshow(m[i], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
            if i == 0:
                ax.set_title(name, fontsize=8)
    return _write(fig, path, dpi)


def plot_filters(
    conv_or_model: Any, path: str | os.PathLike[str], ncols: int | None = None, title: str | None = None, dpi: int = 120
) -> Path:
    """The filters of a Conv2d (or of a model's first Conv2d), each scaled to [0, 1] (:func:`filter_grid`)."""
    grid = filter_grid(conv_or_model, ncols=ncols)
    fig = _figure("plot_filters", (4.0, 4.0 * grid.shape[0] / grid.shape[1] + 0.3))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return _write(fig, path, dpi)


def plot_activation_maps(
    maps: Any,
    path: str | os.PathLike[str],
    max_channels: int = 32,
    ncols: int = 8,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """The channels of one input's feature maps, (C, h, w) or (1, C, h, w) (:func:`~minidl.viz.activation_maps`),
    each with its own grey scale (black: its minimum, white: its maximum)."""
    where = "plot_activation_maps"
    m = np.asarray(to_numpy(maps), dtype=np.float64)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(f"{where}: maps must be one input's feature maps (C, h, w) or (1, C, h, w), got {m.shape}")
    m = m[:max_channels]
    rows = math.ceil(len(m) / ncols)
    fig = _figure(where, (1.2 * ncols, 1.2 * rows + 0.3))
    for i, channel in enumerate(m):
        ax = fig.add_subplot(rows, ncols, i + 1)
        ax.imshow(channel, cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return _write(fig, path, dpi)


def plot_images(
    images: Any,
    path: str | os.PathLike[str],
    titles: Sequence[str] | None = None,
    mean: Any = None,
    std: Any = None,
    dpi: int = 120,
) -> Path:
    """A row of images (N, C, H, W), e.g. class-model visualizations (``mean``/``std``: the normalization to undo;
    None: each image stretched to [0, 1])."""
    where = "plot_images"
    shown = _images(where, images, mean, std)
    if titles is not None and len(titles) != len(shown):
        raise ValueError(f"{where}: {len(titles)} titles for {len(shown)} images")
    fig = _figure(where, (1.6 * len(shown), 1.9))
    for i, img in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), i + 1)
        _show(ax, img)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return _write(fig, path, dpi)
