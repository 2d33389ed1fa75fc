r"""Geometric transforms that move pixels without mixing them: flips, padding, crops and resizing.

A crop of size (OH, OW) at (top, left) keeps ``out[i, j] = img[top + i, left + j]``; a horizontal flip keeps
``out[i, j] = img[i, W - 1 - j]``. ``RandomCrop`` with padding P (the CIFAR recipe: pad 4, crop 32) picks top
and left uniformly in {0, ..., H + 2P - OH} and {0, ..., W + 2P - OW}, so the image is shifted by up to P pixels.
``RandomResizedCrop`` (Inception / ResNet on ImageNet) draws a box of area s H W, s ~ U(scale), and aspect ratio
r = w / h with log r ~ U(log ratio), tries 10 times to fit it in the image, falls back to a centre crop, and
resizes the box to the output size.

Flips, pads and crops also accept floating ``(C, H, W)`` arrays (after ToArray); resizing needs an image
(PIL, or an (H, W, C) uint8 array: PIL does the resampling, with antialiasing when shrinking).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from minidl.backend import get_array_module
from minidl.transforms._base import (
    RandomOp,
    RandomTransform,
    Transform,
    check_antialias,
    check_fill,
    check_fill_range,
    check_interpolation,
    check_range,
    check_size,
    fill_per_channel,
    image_kind,
    image_size,
    per_channel_pil,
    pil_filter,
    pil_from_array_like,
    resolve_generator,
)

__all__ = [
    "CenterCrop",
    "Pad",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomVerticalFlip",
    "Resize",
    "center_crop",
    "crop",
    "hflip",
    "pad",
    "resize",
    "resized_crop",
    "vflip",
]

_PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


# ---------------------------------------------------------------------------------------------------- functional
def hflip(img: Any) -> Any:
    """Mirror left-right: ``out[..., i, j] = img[..., i, W - 1 - j]``."""
    kind = image_kind("hflip", img, allow_float=True)
    if kind == "pil":
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    xp = get_array_module(img)
    return xp.ascontiguousarray(img[:, ::-1] if kind == "array" else img[..., ::-1])


def vflip(img: Any) -> Any:
    """Mirror top-bottom: ``out[..., i, j] = img[..., H - 1 - i, j]``."""
    kind = image_kind("vflip", img, allow_float=True)
    if kind == "pil":
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    xp = get_array_module(img)
    return xp.ascontiguousarray(img[::-1] if kind == "array" else img[..., ::-1, :])


def _parse_padding(where: str, padding: Any) -> tuple[int, int, int, int]:
    """torchvision's padding forms as (left, top, right, bottom)."""
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        values: Sequence[Any] = (padding,) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) in (1, 2, 4):
        values = {1: lambda p: tuple(p) * 4, 2: lambda p: tuple(p) * 2, 4: tuple}[len(padding)](padding)
    else:
        raise TypeError(f"{where}: padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}")
    for v in values:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{where}: padding must hold non-negative ints, got {padding!r}")
    left, top, right, bottom = (int(v) for v in values)
    return left, top, right, bottom


def _spatial_axes(kind: str, arr: Any) -> tuple[int, int, int | None]:
    """(row axis, column axis, channel axis or None) of an array of this kind."""
    if kind == "float":
        return arr.ndim - 2, arr.ndim - 1, arr.ndim - 3
    return 0, 1, (2 if arr.ndim == 3 else None)


def pad(img: Any, padding: Any, fill: Any = 0, padding_mode: str = "constant") -> Any:
    """Pad the borders: ``padding`` is an int (all sides), (left/right, top/bottom) or (left, top, right, bottom).

    ``padding_mode``: ``constant`` (``fill``, one number or one per channel), ``edge`` (repeat the border pixel),
    ``reflect`` (mirror without the border pixel: 3 2 | 1 2 3) or ``symmetric`` (with it: 2 1 | 1 2 3).
    """
    kind = image_kind("pad", img, allow_float=True)
    left, top, right, bottom = _parse_padding("pad", padding)
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"pad: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    fill = check_fill("pad", fill)
    if kind == "pil":  # any mode (8-bit, 16-bit, float): pad its values as an (H, W[, C]) array
        return pil_from_array_like(
            _pad_array(np.asarray(img), "array", left, top, right, bottom, fill, padding_mode), img
        )
    return _pad_array(img, kind, left, top, right, bottom, fill, padding_mode)


def _pad_array(img: Any, kind: str, left: int, top: int, right: int, bottom: int, fill: Any, padding_mode: str) -> Any:
    xp = get_array_module(img)
    row_axis, col_axis, channel_axis = _spatial_axes(kind, img)
    if padding_mode != "constant":
        widths = [(0, 0)] * img.ndim
        widths[row_axis], widths[col_axis] = (top, bottom), (left, right)
        return xp.pad(img, widths, mode=padding_mode)
    shape = list(img.shape)
    shape[row_axis] += top + bottom
    shape[col_axis] += left + right
    out = xp.empty(tuple(shape), dtype=img.dtype)
    if channel_axis is None:
        value = fill_per_channel("pad", fill, 1)
        check_fill_range("pad", value, img.dtype)
        out[...] = np.asarray(value[0]).astype(img.dtype)
    else:
        values = fill_per_channel("pad", fill, img.shape[channel_axis])
        check_fill_range("pad", values, img.dtype)
        values = np.asarray(values, dtype=np.float64)
        shape_c = [1] * img.ndim
        shape_c[channel_axis] = -1
        out[...] = xp.asarray(values.astype(img.dtype).reshape(shape_c))
    index = [slice(None)] * img.ndim
    index[row_axis] = slice(top, top + img.shape[row_axis])
    index[col_axis] = slice(left, left + img.shape[col_axis])
    out[tuple(index)] = img
    return out


def crop(img: Any, top: int, left: int, height: int, width: int) -> Any:
    """``out[..., i, j] = img[..., top + i, left + j]`` for i < height, j < width; zero outside the image."""
    kind = image_kind("crop", img, allow_float=True)
    if height < 1 or width < 1:
        raise ValueError(f"crop: height and width must be >= 1, got {(height, width)}")
    if kind == "pil":
        return img.crop((left, top, left + width, top + height))
    H, W = image_size(img, kind)
    row_axis, col_axis, _ = _spatial_axes(kind, img)
    if top < 0 or left < 0 or top + height > H or left + width > W:  # out of bounds: pad with zeros like PIL
        pads = (max(0, -left), max(0, -top), max(0, left + width - W), max(0, top + height - H))
        img = pad(img, pads, 0)
        top, left = top + pads[1], left + pads[0]
    index = [slice(None)] * img.ndim
    index[row_axis] = slice(top, top + height)
    index[col_axis] = slice(left, left + width)
    return get_array_module(img).ascontiguousarray(img[tuple(index)])


def center_crop(img: Any, output_size: Any) -> Any:
    """The central (OH, OW) window (top = round((H - OH) / 2)); pads with zeros when the image is smaller."""
    kind = image_kind("center_crop", img, allow_float=True)
    OH, OW = check_size("center_crop", output_size, "output_size")
    H, W = image_size(img, kind)
    if OH > H or OW > W:
        padding = (
            (OW - W) // 2 if OW > W else 0,
            (OH - H) // 2 if OH > H else 0,
            (OW - W + 1) // 2 if OW > W else 0,
            (OH - H + 1) // 2 if OH > H else 0,
        )
        img = pad(img, padding, 0)
        H, W = image_size(img, kind)
        if (H, W) == (OH, OW):
            return img
    return crop(img, int(round((H - OH) / 2.0)), int(round((W - OW) / 2.0)), OH, OW)


def _resized_size(H: int, W: int, size: Any, max_size: int | None) -> tuple[int, int]:
    """torchvision's rule: an int matches the shorter side (keeping the aspect ratio), a pair is (OH, OW)."""
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    requested = int(size[0] if isinstance(size, (tuple, list)) else size)
    short, long = (W, H) if W <= H else (H, W)
    new_short, new_long = requested, int(requested * long / short)
    if max_size is not None:
        if max_size <= requested:
            raise ValueError(f"resize: max_size = {max_size} must be larger than the requested size {requested}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if W <= H else (new_short, new_long)


def resize(img: Any, size: Any, interpolation: str = "bilinear", max_size: int | None = None) -> Any:
    """Resize an image: ``size`` an int (shorter side -> size, OW = int(size * W / H) when H < W) or (OH, OW)."""
    kind = image_kind("resize", img)
    check_size("resize", size)
    resample = pil_filter(check_interpolation("resize", interpolation))
    OH, OW = _resized_size(*image_size(img, kind), size, max_size)
    if kind == "pil":
        return img.resize((OW, OH), resample)
    return per_channel_pil(img, lambda im, _: im.resize((OW, OH), resample))


def resized_crop(
    img: Any, top: int, left: int, height: int, width: int, size: Any, interpolation: str = "bilinear"
) -> Any:
    """``crop`` then ``resize`` to ``size`` (an int gives a square)."""
    OH, OW = check_size("resized_crop", size)
    return resize(crop(img, top, left, height, width), (OH, OW), interpolation)


# ---------------------------------------------------------------------------------------------------- classes
class Resize(Transform):
    """Resize to ``size``: an int matches the shorter side (aspect ratio kept), a pair (OH, OW) is exact.

    Args:
        size: int or (OH, OW).  interpolation: ``"nearest"``, ``"bilinear"``, ``"bicubic"``, ... Default: bilinear.
        max_size: with an int ``size``, cap on the longer side. Default: None.
        antialias: torchvision's; only True (or None) is available (PIL antialiases when it shrinks). Default: True.

    Shape:
        - Input: (H, W, C) uint8 or PIL.  - Output: shorter side = size, longer = int(size * long / short).

    Examples:
        >>> import numpy as np
        >>> Resize(16)(np.zeros((32, 48, 3), np.uint8)).shape
        (16, 24, 3)
    """

    def __init__(
        self, size: Any, interpolation: str = "bilinear", max_size: int | None = None, antialias: bool | None = True
    ) -> None:
        check_antialias("Resize", antialias)
        if isinstance(size, (tuple, list)) and len(size) == 2:
            self.size: Any = check_size("Resize", size)
        else:
            self.size = check_size("Resize", size)[0]
        self.interpolation = check_interpolation("Resize", interpolation)
        self.max_size = max_size

    def __call__(self, img: Any) -> Any:
        return resize(img, self.size, self.interpolation, self.max_size)

    def extra_repr(self) -> str:
        return f"size={self.size}, interpolation={self.interpolation}, max_size={self.max_size}, antialias=True"


class CenterCrop(Transform):
    """Crop the centre (OH, OW) window (zero-padded when the image is smaller, as torchvision).

    Examples:
        >>> import numpy as np
        >>> CenterCrop(24)(np.zeros((3, 32, 32), np.float32)).shape
        (3, 24, 24)
    """

    def __init__(self, size: Any) -> None:
        self.size = check_size("CenterCrop", size)

    def __call__(self, img: Any) -> Any:
        return center_crop(img, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class Pad(Transform):
    """Pad the borders (see :func:`pad` for the padding forms and modes)."""

    def __init__(self, padding: Any, fill: Any = 0, padding_mode: str = "constant") -> None:
        _parse_padding("Pad", padding)
        self.padding = padding
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"Pad: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.fill, self.padding_mode = check_fill("Pad", fill), padding_mode

    def __call__(self, img: Any) -> Any:
        return pad(img, self.padding, self.fill, self.padding_mode)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode}"


class RandomCrop(RandomTransform):
    """Crop a random (OH, OW) window, after optional padding (the CIFAR recipe: ``RandomCrop(32, padding=4)``).

    Args:
        size: int or (OH, OW).  padding: int, (left/right, top/bottom) or (left, top, right, bottom). Default: None.
        pad_if_needed: pad a too small image (each side by the shortfall, as torchvision). Default: False.
        fill: value (or one per channel) for constant padding. Default: 0.
        padding_mode: ``"constant"``, ``"edge"``, ``"reflect"`` or ``"symmetric"``. Default: ``"constant"``.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Shape:
        - Input: image or (C, H, W) float.  - Output: (OH, OW); top ~ U{0..H + PT + PB - OH}, same for left.

    Examples:
        >>> import numpy as np
        >>> RandomCrop(32, padding=4)(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
    """

    def __init__(
        self,
        size: Any,
        padding: Any = None,
        pad_if_needed: bool = False,
        fill: Any = 0,
        padding_mode: str = "constant",
        generator: Any = None,
    ) -> None:
        self.size = check_size("RandomCrop", size)
        if padding is not None:
            _parse_padding("RandomCrop", padding)
        self.padding = padding
        self.pad_if_needed = bool(pad_if_needed)
        self.fill = check_fill("RandomCrop", fill)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        self._set_generator(generator)

    @staticmethod
    def get_params(
        img: Any, output_size: Any, generator: np.random.Generator | None = None
    ) -> tuple[int, int, int, int]:
        """A random ``(top, left, OH, OW)`` window of ``img``."""
        H, W = image_size(img, image_kind("RandomCrop", img, allow_float=True))
        OH, OW = check_size("RandomCrop", output_size)
        if OH > H or OW > W:
            raise ValueError(
                f"RandomCrop: the crop size {(OH, OW)} is larger than the (padded) image size {(H, W)}; "
                "pass padding=... or pad_if_needed=True"
            )
        if (H, W) == (OH, OW):
            return 0, 0, H, W
        rng = resolve_generator(generator)
        return int(rng.integers(0, H - OH + 1)), int(rng.integers(0, W - OW + 1)), OH, OW

    def __call__(self, img: Any) -> Any:
        kind = image_kind("RandomCrop", img, allow_float=True)
        if self.padding is not None:
            img = pad(img, self.padding, self.fill, self.padding_mode)
        H, W = image_size(img, kind)
        if self.pad_if_needed and W < self.size[1]:
            img = pad(img, (self.size[1] - W, 0), self.fill, self.padding_mode)
        if self.pad_if_needed and H < self.size[0]:
            img = pad(img, (0, self.size[0] - H), self.fill, self.padding_mode)
        top, left, OH, OW = self.get_params(img, self.size, self._rng())
        return crop(img, top, left, OH, OW)

    def extra_repr(self) -> str:
        return f"size={self.size}, padding={self.padding}"


class RandomHorizontalFlip(RandomOp):
    """Mirror left-right with probability ``p``.

    Args:
        p: probability of flipping. Default: 0.5.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> RandomHorizontalFlip(p=1.0)(np.array([[[1], [2], [3]]], np.uint8))[0, :, 0]
        array([3, 2, 1], dtype=uint8)
    """

    allow_float = True

    def _op(self, img: Any) -> Any:
        return hflip(img)


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror top-bottom with probability ``p`` (Default: 0.5)."""

    def _op(self, img: Any) -> Any:
        return vflip(img)


class RandomResizedCrop(RandomTransform):
    r"""Crop a random box of random area and aspect ratio, resized to ``size`` (Inception-style augmentation).

    Each of up to 10 attempts draws :math:`s \sim U(\mathrm{scale})`, :math:`\log r \sim U(\log \mathrm{ratio})`,
    w = round(sqrt(s H W r)), h = round(sqrt(s H W / r)), and keeps the first box that fits, at a uniform position.
    If none fits, the centre crop with the ratio clamped to ``ratio`` (or the whole image) is used.

    Args:
        size: int or (OH, OW).  scale: area fraction range. Default: (0.08, 1.0).
        ratio: aspect ratio (w / h) range. Default: (3/4, 4/3).  interpolation: Default: bilinear.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).
        antialias: (keyword only) torchvision's; only True (or None) is available (PIL antialiases when it shrinks).
            Default: True.

    Shape:
        - Input: (H, W, C) uint8 or PIL.  - Output: (OH, OW).

    Examples:
        >>> import numpy as np
        >>> RandomResizedCrop(24)(np.zeros((40, 30, 3), np.uint8)).shape
        (24, 24, 3)
    """

    def __init__(
        self,
        size: Any,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bilinear",
        generator: Any = None,
        *,
        antialias: bool | None = True,
    ) -> None:
        check_antialias("RandomResizedCrop", antialias)
        self.size = check_size("RandomResizedCrop", size)
        self.scale = check_range("RandomResizedCrop", "scale", scale, low=0.0)
        self.ratio = check_range("RandomResizedCrop", "ratio", ratio, low=0.0)
        if self.scale[1] <= 0 or self.ratio[0] <= 0:
            raise ValueError(f"RandomResizedCrop: scale and ratio must be positive, got {scale!r} and {ratio!r}")
        self.interpolation = check_interpolation("RandomResizedCrop", interpolation)
        self._set_generator(generator)

    @staticmethod
    def get_params(
        img: Any, scale: Sequence[float], ratio: Sequence[float], generator: np.random.Generator | None = None
    ) -> tuple[int, int, int, int]:
        """torchvision's sampling of the box ``(top, left, h, w)``."""
        H, W = image_size(img, image_kind("RandomResizedCrop", img, allow_float=True))
        rng = resolve_generator(generator)
        area = H * W
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= W and 0 < h <= H:
                return int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w
        in_ratio = W / H  # fallback: central crop
        if in_ratio < min(ratio):
            w, h = W, int(round(W / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = H, int(round(H * max(ratio)))
        else:
            w, h = W, H
        h, w = max(h, 1), max(w, 1)  # a tiny image could round to 0 (torchvision would then fail in resize)
        return (H - h) // 2, (W - w) // 2, h, w

    def __call__(self, img: Any) -> Any:
        image_kind("RandomResizedCrop", img)
        top, left, h, w = self.get_params(img, self.scale, self.ratio, self._rng())
        return resized_crop(img, top, left, h, w, self.size, self.interpolation)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, scale={tuple(round(s, 4) for s in self.scale)}, "
            f"ratio={tuple(round(r, 4) for r in self.ratio)}, interpolation={self.interpolation}, antialias=True"
        )
