r"""Structured occlusion: GridMask and Hide-and-Seek hide regions of the image so the network must use all of it.

Both build a boolean (H, W) mask ``hide`` and set the hidden pixels of every channel to ``fill``.

* **GridMask** (Chen et al. 2020, "GridMask Data Augmentation"): a grid of square holes. With the unit d drawn
  uniformly from ``d_range`` and l = ceil(ratio d), every unit (a d x d cell) keeps a band of width l along its top
  and its left and hides the remaining (d - l) x (d - l) square, so on an image whose sides are multiples of d the
  hidden fraction is exactly :math:`(1 - l/d)^2` (about :math:`(1 - r)^2`). The grid starts at a random offset
  (delta_y, delta_x) in {0, ..., d - 1}^2 and can be turned by a random angle; as in the paper's code, the mask is
  drawn on a square of side ceil(sqrt(H^2 + W^2)) (so no corner is lost when turned) and its centre is cut out.

  .. math:: \mathrm{hide}_{y,x} = [(y - \delta_y) \bmod d \ge l] \wedge [(x - \delta_x) \bmod d \ge l]

* **Hide-and-Seek** (Singh and Lee 2017, "Hide-and-Seek: Forcing a Network to be Meticulous for Weakly-supervised
  Object and Action Localization"): the image is cut into S x S patches, S drawn from ``grid_sizes`` (S = 0: no
  hiding), and each patch (the last row and column may be smaller) is hidden independently with probability
  ``hide_prob``. The paper fills hidden patches with the dataset's mean pixel, so that the statistics the network
  sees at training and at test time match: on normalized (C, H, W) arrays that mean is 0.

Inputs: PIL images (mode L, LA, RGB or RGBA), uint8 (H, W[, C]) arrays, or floating (..., C, H, W) arrays (after
``ToArray``); the result has the input's kind. ``fill`` is one number or one per channel; for 8-bit images it must
be an integer in [0, 255].
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from minidl.backend import get_array_module
from minidl.nn._checks import check_float, check_int
from minidl.transforms._base import (
    RandomTransform,
    check_fill,
    check_fill_range,
    check_probability,
    fill_per_channel,
    image_channels,
    image_kind,
    image_size,
    pil_from_array_like,
    resolve_generator,
)

__all__ = ["GridMask", "HideAndSeek", "apply_mask"]


def _kind(where: str, img: Any) -> str:
    """The image kind; PIL images must be of mode L, LA, RGB or RGBA (a palette index or a 16-bit value is no level
    to fill with)."""
    kind = image_kind(where, img, allow_float=True, eight_bit=True)
    if kind == "pil" and img.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(
            f"{where}: expected a PIL image of mode L, LA, RGB or RGBA, got mode {img.mode!r}; convert it first, e.g. "
            "img.convert('RGB')"
        )
    return kind


def apply_mask(img: Any, hide: np.ndarray, fill: Any = 0) -> Any:
    """Set the pixels where the boolean (H, W) ``hide`` is True to ``fill`` (one number or one per channel), in
    every channel; returns a new image of the input's kind.

    Examples:
        >>> import numpy as np
        >>> hide = np.array([[True, False], [False, False]])
        >>> apply_mask(np.full((2, 2, 3), 9, np.uint8), hide, (1, 2, 3))[0, 0]
        array([1, 2, 3], dtype=uint8)
    """
    return _masked("apply_mask", img, hide, fill)


def _masked(where: str, img: Any, hide: np.ndarray, fill: Any) -> Any:
    """:func:`apply_mask`, with errors naming ``where``."""
    kind = _kind(where, img)
    H, W = image_size(img, kind)
    hide = np.asarray(hide)
    if hide.dtype != np.bool_ or hide.shape != (H, W):
        raise ValueError(
            f"{where}: expected a boolean mask of shape (H, W) = ({H}, {W}), got {hide.dtype} {hide.shape}"
        )
    values = fill_per_channel(where, check_fill(where, fill), image_channels(img, kind))
    if kind == "float":
        xp = get_array_module(img)
        fill_chw = xp.asarray(np.asarray(values, dtype=img.dtype).reshape(-1, 1, 1))
        return xp.where(xp.asarray(hide), fill_chw, img).astype(img.dtype, copy=False)
    check_fill_range(where, values, np.uint8)
    arr = np.array(img)  # a copy, for PIL images and arrays alike
    if arr.ndim == 2:
        arr[hide] = int(values[0])
    else:
        arr[hide] = np.asarray(values, dtype=np.uint8)
    return pil_from_array_like(arr, img) if kind == "pil" else arr


def _check_d_range(where: str, d_range: Any) -> tuple[int, int]:
    if (
        not isinstance(d_range, (tuple, list))
        or len(d_range) != 2
        or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in d_range)
        or not 2 <= d_range[0] <= d_range[1]
    ):
        raise ValueError(
            f"{where}: d_range must be a (d_min, d_max) pair of ints with 2 <= d_min <= d_max, got {d_range!r}"
        )
    return int(d_range[0]), int(d_range[1])


class GridMask(RandomTransform):
    r"""GridMask (Chen et al. 2020): with probability ``p``, hide a grid of (d - l) x (d - l) squares, one per d x d
    unit, l = ceil(ratio d), d drawn uniformly from ``d_range`` (inclusive).

    Args:
        d_range: (d_min, d_max), the unit size in pixels (the paper: (96, 224) on 224-pixel ImageNet images).
        ratio: r in [0, 1], the kept fraction of a unit's side; about (1 - r)^2 of the image is hidden.
            Default: 0.6 (the paper's ImageNet setting).
        rotate: the grid turns by an angle drawn from {0, 1, ..., rotate - 1} degrees (the paper's code); 1: never.
            Default: 1.
        p: probability of applying it. Default: 0.8 (the paper's final probability).
        fill: the value of the hidden pixels, one number or one per channel. Default: 0.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> out = GridMask((4, 4), ratio=0.5, p=1.0)(np.full((8, 8), 255, np.uint8))
        >>> float((out == 0).mean())  # (1 - 2/4)^2 of the image
        0.25
    """

    def __init__(
        self,
        d_range: Sequence[int],
        ratio: float = 0.6,
        rotate: int = 1,
        p: float = 0.8,
        fill: Any = 0,
        generator: Any = None,
    ) -> None:
        where = "GridMask"
        self.d_range = _check_d_range(where, d_range)
        self.ratio = check_float(where, "ratio", ratio, low=0.0, high=1.0)
        self.rotate = check_int(where, "rotate", rotate, minimum=1)
        self.p = check_probability(where, p)
        self.fill = check_fill(where, fill)
        self._set_generator(generator)

    @staticmethod
    def get_params(
        H: int,
        W: int,
        d_range: Sequence[int],
        ratio: float,
        rotate: int = 1,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """The boolean (H, W) mask of the hidden pixels: d, then the offsets (delta_y, delta_x), then the angle."""
        rng = resolve_generator(generator)
        d = int(rng.integers(d_range[0], d_range[1] + 1))
        kept = math.ceil(d * ratio)
        delta_y, delta_x = int(rng.integers(d)), int(rng.integers(d))
        angle = int(rng.integers(rotate))
        side = math.ceil(math.sqrt(H * H + W * W))
        t = np.arange(side)
        hide = ((t - delta_y) % d >= kept)[:, None] & ((t - delta_x) % d >= kept)[None, :]
        if angle:
            turned = Image.fromarray(hide.astype(np.uint8) * 255, mode="L").rotate(angle, Image.Resampling.NEAREST)
            hide = np.asarray(turned) > 0
        top, left = (side - H) // 2, (side - W) // 2
        return np.ascontiguousarray(hide[top : top + H, left : left + W])

    def __call__(self, img: Any) -> Any:
        H, W = image_size(img, _kind("GridMask", img))
        rng = self._rng()
        if rng.random() >= self.p:
            return img
        return _masked("GridMask", img, self.get_params(H, W, self.d_range, self.ratio, self.rotate, rng), self.fill)

    def extra_repr(self) -> str:
        return f"d_range={self.d_range}, ratio={self.ratio}, rotate={self.rotate}, p={self.p}, fill={self.fill}"


class HideAndSeek(RandomTransform):
    """Hide-and-Seek (Singh and Lee 2017): cut the image into S x S patches, S drawn from ``grid_sizes``, and hide
    each patch with probability ``hide_prob``.

    Args:
        grid_sizes: patch sides S in pixels to draw from; 0 means no hiding. Default: (0, 16, 32, 44, 56) (the
            paper's code, for 224-pixel images; e.g. (0, 4, 8, 16) for 32-pixel CIFAR images).
        hide_prob: probability of hiding each patch. Default: 0.5.
        fill: the value of the hidden pixels (the paper: the dataset's mean pixel; 0 after ``Normalize``). Default: 0.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> out = HideAndSeek(grid_sizes=(4,), hide_prob=1.0)(np.ones((3, 8, 8), np.float32))
        >>> float(out.max())
        0.0
    """

    def __init__(
        self,
        grid_sizes: Sequence[int] = (0, 16, 32, 44, 56),
        hide_prob: float = 0.5,
        fill: Any = 0,
        generator: Any = None,
    ) -> None:
        where = "HideAndSeek"
        if (
            not isinstance(grid_sizes, (tuple, list))
            or not grid_sizes
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in grid_sizes)
        ):
            raise ValueError(f"{where}: grid_sizes must be a non-empty sequence of ints >= 0, got {grid_sizes!r}")
        self.grid_sizes = tuple(int(s) for s in grid_sizes)
        self.hide_prob = check_float(where, "hide_prob", hide_prob, low=0.0, high=1.0)
        self.fill = check_fill(where, fill)
        self._set_generator(generator)

    @staticmethod
    def get_params(
        H: int, W: int, grid_sizes: Sequence[int], hide_prob: float, generator: np.random.Generator | None = None
    ) -> np.ndarray:
        """The boolean (H, W) mask of the hidden pixels: S, then one U(0, 1) draw per patch (row-major; hidden when
        below ``hide_prob``)."""
        rng = resolve_generator(generator)
        size = grid_sizes[int(rng.integers(len(grid_sizes)))]
        if size == 0:
            return np.zeros((H, W), dtype=bool)
        patches = rng.random((math.ceil(H / size), math.ceil(W / size))) < hide_prob
        return np.ascontiguousarray(patches.repeat(size, axis=0).repeat(size, axis=1)[:H, :W])

    def __call__(self, img: Any) -> Any:
        H, W = image_size(img, _kind("HideAndSeek", img))
        hide = self.get_params(H, W, self.grid_sizes, self.hide_prob, self._rng())
        return _masked("HideAndSeek", img, hide, self.fill) if hide.any() else img

    def extra_repr(self) -> str:
        return f"grid_sizes={self.grid_sizes}, hide_prob={self.hide_prob}, fill={self.fill}"
