"""The drawing helpers write PNGs atomically and refuse mismatched shapes with a message naming the function."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.viz import plot_activation_maps, plot_filters, plot_heatmaps, plot_images

pytest.importorskip("matplotlib", reason="the drawings need the viz extra: pip install minidl[viz]")

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def test_each_drawing_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    maps = {"saliency": rng.random((3, 8, 8)), "Grad-CAM": rng.random((3, 8, 8))}
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    assert _is_png(plot_heatmaps(images, maps, tmp_path / "h.png", titles=["a", "b", "c"], mean=mean, std=std))
    assert _is_png(plot_heatmaps(images[:1], maps["saliency"][:1], tmp_path / "h1.png"))
    minidl.manual_seed(0)
    assert _is_png(plot_filters(nn.Sequential(nn.Conv2d(3, 6, 3)), tmp_path / "f.png", title="conv1"))
    assert _is_png(plot_activation_maps(rng.random((1, 10, 4, 4)), tmp_path / "a.png", ncols=5))
    assert _is_png(plot_images(images, tmp_path / "i.png", titles=["x", "y", "z"]))
    assert not list(tmp_path.glob("*.tmp*"))


def test_mismatched_shapes_are_refused(tmp_path):
    images = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"plot_heatmaps: heat map 'cam' has shape \(2, 4, 4\), expected \(N, H, W\)"):
        plot_heatmaps(images, {"cam": np.zeros((2, 4, 4))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="plot_heatmaps: 1 titles for 2 images"):
        plot_heatmaps(images, np.zeros((2, 8, 8)), tmp_path / "x.png", titles=["a"])
    with pytest.raises(ValueError, match=r"plot_activation_maps: maps must be one input's feature maps"):
        plot_activation_maps(np.zeros((2, 3, 4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"plot_images: images must be \(N, C, H, W\)"):
        plot_images(np.zeros((8, 8)), tmp_path / "x.png")
