r"""Colour transforms on 8-bit images: brightness, contrast, saturation, hue, grayscale, histogram equalization.

Brightness, contrast and saturation blend the image with a *degenerate* image (PIL's ``ImageEnhance``):

.. math:: \mathrm{out} = \mathrm{clip}_{[0, 255]}\big(f\, \mathrm{img} + (1 - f)\, \mathrm{degenerate}\big)

with the degenerate image black (brightness), the mean gray level (contrast) or the grayscale image (saturation);
f = 1 leaves the image unchanged. Hue rotates the H channel of HSV by ``hue_factor`` of a full turn.
Grayscale is the ITU-R 601-2 luma ``L = 0.299 R + 0.587 G + 0.114 B`` (PIL's ``convert("L")``).
Histogram equalization maps each channel through its cumulative histogram so that the levels are used evenly.

Inputs are PIL images or (H, W, C) uint8 arrays (RGB, or one channel where colour plays no part); arrays go through
PIL and come back as arrays of the same layout.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from minidl.nn._checks import check_float
from minidl.transforms._base import (
    RandomOp,
    RandomTransform,
    Transform,
    from_pil,
    image_channels,
    image_kind,
    per_channel_pil,
    resolve_generator,
    to_pil,
)

__all__ = [
    "ColorJitter",
    "Equalize",
    "Grayscale",
    "RandomEqualize",
    "RandomGrayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "equalize",
    "rgb_to_grayscale",
]


def _through_pil(where: str, img: Any, op: Any) -> Any:
    """Apply ``op(pil) -> pil`` to a PIL image, or to a uint8 array (converted to PIL and back)."""
    kind = image_kind(where, img, eight_bit=True)
    if kind == "pil":
        try:
            return op(img)
        except ValueError as err:  # e.g. ImageEnhance on a palette ("P") or bilevel ("1") image
            raise ValueError(
                f"{where}: expected a PIL image of mode L, LA, RGB or RGBA, got mode {img.mode!r}, which PIL cannot "
                f"adjust ({err}); convert it first, e.g. img.convert('RGB')"
            ) from None
    if image_channels(img, kind) not in (1, 3, 4):
        raise ValueError(f"{where}: expected an image with 1, 3 or 4 channels, got shape {img.shape}")
    return from_pil(op(to_pil(img)), img)


def _check_factor(where: str, factor: Any) -> float:
    return check_float(where, "factor", factor, low=0.0)


def adjust_brightness(img: Any, brightness_factor: float) -> Any:
    """``clip(f * img)``: 0 gives black, 1 the original, 2 twice as bright."""
    f = _check_factor("adjust_brightness", brightness_factor)
    return _through_pil("adjust_brightness", img, lambda im: ImageEnhance.Brightness(im).enhance(f))


def adjust_contrast(img: Any, contrast_factor: float) -> Any:
    """``clip(f * img + (1 - f) * mean_gray)``: 0 gives a uniform gray, 1 the original."""
    f = _check_factor("adjust_contrast", contrast_factor)
    return _through_pil("adjust_contrast", img, lambda im: ImageEnhance.Contrast(im).enhance(f))


def adjust_saturation(img: Any, saturation_factor: float) -> Any:
    """``clip(f * img + (1 - f) * gray(img))``: 0 gives the grayscale image, 1 the original."""
    f = _check_factor("adjust_saturation", saturation_factor)
    return _through_pil("adjust_saturation", img, lambda im: ImageEnhance.Color(im).enhance(f))


def _hue_pil(im: Image.Image, hue_factor: float) -> Image.Image:
    if im.mode in ("L", "1", "I", "F", "LA"):
        return im  # no colour to rotate
    alpha = im.getchannel("A") if im.mode == "RGBA" else None
    h, s, v = im.convert("RGB").convert("HSV").split()
    shift = int(hue_factor * 255) % 256  # the H channel wraps around: a turn is 256 levels
    h = Image.fromarray(((np.asarray(h, dtype=np.int32) + shift) % 256).astype(np.uint8), mode="L")
    out = Image.merge("HSV", (h, s, v)).convert("RGB")
    if alpha is not None:
        out.putalpha(alpha)
    return out.convert(im.mode) if out.mode != im.mode else out


def adjust_hue(img: Any, hue_factor: float) -> Any:
    """Rotate the hue by ``hue_factor`` (in [-0.5, 0.5]) of a full turn; 0 leaves the image unchanged."""
    f = check_float("adjust_hue", "hue_factor", hue_factor, low=-0.5, high=0.5)
    if f == 0:  # the RGB -> HSV -> RGB round trip is lossy by a few levels: skip it when there is nothing to do
        image_kind("adjust_hue", img, eight_bit=True)
        return img.copy()
    return _through_pil("adjust_hue", img, lambda im: _hue_pil(im, f))


def rgb_to_grayscale(img: Any, num_output_channels: int = 1) -> Any:
    """ITU-R 601-2 luma ``L = 299/1000 R + 587/1000 G + 114/1000 B``, repeated ``num_output_channels`` (1 or 3)
    times."""
    if num_output_channels not in (1, 3):
        raise ValueError(f"rgb_to_grayscale: num_output_channels must be 1 or 3, got {num_output_channels!r}")
    kind = image_kind("rgb_to_grayscale", img, eight_bit=True)
    if kind == "pil":
        try:
            gray = img.convert("L")
        except ValueError as err:  # e.g. "conversion from LAB to L not supported"
            raise ValueError(
                f"rgb_to_grayscale: expected a PIL image that converts to L (L, RGB, RGBA, P, CMYK, YCbCr, ...), got "
                f"mode {img.mode!r} ({err}); convert it first, e.g. img.convert('RGB')"
            ) from None
        return gray if num_output_channels == 1 else gray.convert("RGB")
    channels = image_channels(img, kind)
    if channels not in (1, 3, 4):
        raise ValueError(f"rgb_to_grayscale: expected 1, 3 or 4 channels, got shape {img.shape}")
    gray = np.asarray(to_pil(img).convert("L"))
    if img.ndim == 2 and num_output_channels == 1:
        return np.ascontiguousarray(gray)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], num_output_channels, axis=2))


def equalize(img: Any) -> Any:
    """Histogram equalization of each channel (``PIL.ImageOps.equalize``)."""
    kind = image_kind("equalize", img, eight_bit=True)
    if kind == "pil":
        if img.mode == "RGBA":  # equalize the colour, keep the transparency
            out = ImageOps.equalize(img.convert("RGB"))
            out.putalpha(img.getchannel("A"))
            return out
        if img.mode not in ("L", "RGB"):
            raise ValueError(f"equalize: PIL mode {img.mode!r} is not supported (L, RGB or RGBA)")
        return ImageOps.equalize(img)
    return per_channel_pil(img, lambda im, _: ImageOps.equalize(im))


def _jitter_range(
    name: str,
    value: Any,
    center: float = 1.0,
    bound: tuple[float, float] = (0.0, float("inf")),
    clip_first_on_zero: bool = True,
) -> tuple[float, float] | None:
    """torchvision's ``ColorJitter._check_input``: a number v gives [center - v, center + v]; None = off."""
    where = "ColorJitter"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = check_float(where, name, value, low=0.0)
        lo, hi = center - v, center + v
        if clip_first_on_zero:
            lo = max(lo, 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = check_float(where, name, value[0]), check_float(where, name, value[1])
    else:
        raise TypeError(f"{where}: {name} must be a number or a (min, max) pair, got {value!r}")
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(
            f"{where}: {name} values must satisfy {bound[0]} <= min <= max <= {bound[1]}, got ({lo}, {hi})"
        )
    return None if lo == hi == center else (lo, hi)


class ColorJitter(RandomTransform):
    """Randomly change brightness, contrast, saturation and hue, applied in a random order (as torchvision).

    Args:
        brightness: b (factor ~ U(max(0, 1 - b), 1 + b)) or (min, max). Default: 0 (off).
        contrast: same form as brightness. Default: 0.  saturation: same form. Default: 0.
        hue: h in [0, 0.5] (shift ~ U(-h, h) of a turn) or (min, max) in [-0.5, 0.5]. Default: 0.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> img = np.full((8, 8, 3), 100, np.uint8)
        >>> ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)(img).shape
        (8, 8, 3)
        >>> ColorJitter(brightness=0.4)
        ColorJitter(brightness=(0.6, 1.4), contrast=None, saturation=None, hue=None)
    """

    def __init__(
        self, brightness: Any = 0, contrast: Any = 0, saturation: Any = 0, hue: Any = 0, generator: Any = None
    ) -> None:
        self.brightness = _jitter_range("brightness", brightness)
        self.contrast = _jitter_range("contrast", contrast)
        self.saturation = _jitter_range("saturation", saturation)
        self.hue = _jitter_range("hue", hue, center=0.0, bound=(-0.5, 0.5), clip_first_on_zero=False)
        self._set_generator(generator)

    @staticmethod
    def get_params(
        brightness: Any, contrast: Any, saturation: Any, hue: Any, generator: np.random.Generator | None = None
    ) -> tuple[np.ndarray, Any, Any, Any, Any]:
        """``(order, b, c, s, h)``: a permutation of the four operations and their factors (None when off)."""
        rng = resolve_generator(generator)
        order = rng.permutation(4)
        factors = [
            None if r is None else float(rng.uniform(r[0], r[1])) for r in (brightness, contrast, saturation, hue)
        ]
        return (order, *factors)

    def __call__(self, img: Any) -> Any:
        image_kind("ColorJitter", img, eight_bit=True)
        order, b, c, s, h = self.get_params(self.brightness, self.contrast, self.saturation, self.hue, self._rng())
        for fn_id in order:
            if fn_id == 0 and b is not None:
                img = adjust_brightness(img, b)
            elif fn_id == 1 and c is not None:
                img = adjust_contrast(img, c)
            elif fn_id == 2 and s is not None:
                img = adjust_saturation(img, s)
            elif fn_id == 3 and h is not None:
                img = adjust_hue(img, h)
        return img

    def extra_repr(self) -> str:
        return f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, hue={self.hue}"


class Grayscale(Transform):
    """Convert to grayscale (ITU-R 601-2 luma), with 1 or 3 identical output channels.

    Examples:
        >>> import numpy as np
        >>> Grayscale(3)(np.zeros((4, 4, 3), np.uint8)).shape
        (4, 4, 3)
    """

    def __init__(self, num_output_channels: int = 1) -> None:
        if num_output_channels not in (1, 3) or isinstance(num_output_channels, bool):
            raise ValueError(f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels!r}")
        self.num_output_channels = int(num_output_channels)

    def __call__(self, img: Any) -> Any:
        return rgb_to_grayscale(img, self.num_output_channels)

    def extra_repr(self) -> str:
        return f"num_output_channels={self.num_output_channels}"


class RandomGrayscale(RandomOp):
    """Convert to grayscale with probability ``p`` (Default: 0.1), keeping the number of channels: the gray level in
    each colour channel, and an alpha channel (RGBA, LA) as it was (so that a batch's images keep one shape)."""

    def __init__(self, p: float = 0.1, generator: Any = None) -> None:
        super().__init__(p, generator)

    def _op(self, img: Any) -> Any:
        if isinstance(img, Image.Image):
            if img.mode in ("L", "LA"):  # gray already
                return img.copy()
            if img.mode == "RGBA":
                out = rgb_to_grayscale(img.convert("RGB"), 3)
                out.putalpha(img.getchannel("A"))
                return out
            return rgb_to_grayscale(img, 3)
        channels = 1 if img.ndim == 2 else img.shape[2]
        if channels == 4:  # (H, W, 4): the colour to gray, the alpha kept
            gray = rgb_to_grayscale(np.ascontiguousarray(img[:, :, :3]), 3)
            return np.ascontiguousarray(np.concatenate([gray, img[:, :, 3:]], axis=2))
        return rgb_to_grayscale(img, 1 if channels == 1 else 3)


class Equalize(Transform):
    """Histogram equalization of each channel (``PIL.ImageOps.equalize``): spreads the used levels over 0..255."""

    def __call__(self, img: Any) -> Any:
        return equalize(img)


class RandomEqualize(RandomOp):
    """Histogram equalization with probability ``p`` (Default: 0.5)."""

    def _op(self, img: Any) -> Any:
        return equalize(img)
