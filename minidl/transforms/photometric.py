r"""Point and sharpness operations on 8-bit images: sharpness, posterize, solarize, autocontrast, invert.

Each works on every channel independently (PIL's ``ImageOps`` / ``ImageEnhance``, as torchvision does for PIL
images), through a lookup table ``out = lut[img]`` except sharpness:

* ``invert``: :math:`\mathrm{out} = 255 - \mathrm{img}`.
* ``posterize(bits)``: keep the ``bits`` high bits, :math:`\mathrm{out} = \mathrm{img}\ \&\ (256 - 2^{8 - bits})`.
* ``solarize(threshold)``: invert the levels at or above the threshold, ``img if img < threshold else 255 - img``.
* ``autocontrast``: stretch each channel's used range [lo, hi] to [0, 255],
  :math:`\mathrm{out} = \lfloor (\mathrm{img} - lo)\, 255 / (hi - lo) \rfloor` (unchanged when lo = hi).
* ``adjust_sharpness(f)``: blend with the image smoothed by the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13
  (the border pixels are kept), :math:`\mathrm{out} = \mathrm{clip}(f\, \mathrm{img} + (1 - f)\,
  \mathrm{smooth})`: f = 0 blurs, 1 leaves the image unchanged, 2 sharpens.

Inputs are PIL images (mode L, RGB, or RGBA, whose alpha is kept) or uint8 (H, W) / (H, W, C) arrays, processed
channel by channel; the result has the input's kind.
"""

from __future__ import annotations

import numbers
from typing import Any

from PIL import ImageEnhance, ImageOps

from minidl.nn._checks import check_float
from minidl.transforms._base import RandomOp, image_kind, per_channel_pil

__all__ = [
    "RandomAdjustSharpness",
    "RandomAutocontrast",
    "RandomInvert",
    "RandomPosterize",
    "RandomSolarize",
    "adjust_sharpness",
    "autocontrast",
    "invert",
    "posterize",
    "solarize",
]


def per_band(where: str, img: Any, op: Any) -> Any:
    """Apply ``op(pil_image) -> pil_image`` (a per-channel operation) to a PIL image of mode L or RGB (RGBA: to the
    colour, keeping the alpha), or to each channel of a uint8 array."""
    kind = image_kind(where, img, eight_bit=True)
    if kind == "array":
        return per_channel_pil(img, lambda plane, _: op(plane))
    if img.mode in ("L", "RGB"):
        return op(img)
    if img.mode == "RGBA":
        out = op(img.convert("RGB"))
        out.putalpha(img.getchannel("A"))
        return out
    raise ValueError(
        f"{where}: expected a PIL image of mode L, RGB or RGBA, got mode {img.mode!r}; convert it first, e.g. "
        "img.convert('RGB')"
    )


def _check_bits(where: str, bits: Any) -> int:
    if not isinstance(bits, numbers.Integral) or isinstance(bits, bool) or not 0 <= bits <= 8:
        raise ValueError(f"{where}: bits must be an int in [0, 8], got {bits!r}")
    return int(bits)


def adjust_sharpness(img: Any, sharpness_factor: float) -> Any:
    """Blend with a smoothed copy (``PIL.ImageEnhance.Sharpness``): 0 blurs, 1 leaves the image unchanged, 2 sharpens.

    Examples:
        >>> import numpy as np
        >>> img = np.zeros((5, 5), np.uint8); img[2, 2] = 130
        >>> adjust_sharpness(img, 0.0)[1:4, 1:4]  # the smoothing kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13
        array([[10, 10, 10],
               [10, 50, 10],
               [10, 10, 10]], dtype=uint8)
    """
    f = check_float("adjust_sharpness", "sharpness_factor", sharpness_factor, low=0.0)
    return per_band("adjust_sharpness", img, lambda im: ImageEnhance.Sharpness(im).enhance(f))


def posterize(img: Any, bits: int) -> Any:
    """Keep the ``bits`` (0..8) most significant bits of each value: ``img & (256 - 2 ** (8 - bits))``.

    Examples:
        >>> import numpy as np
        >>> posterize(np.array([[0, 37, 100, 255]], np.uint8), 2)
        array([[  0,   0,  64, 192]], dtype=uint8)
    """
    b = _check_bits("posterize", bits)
    mask = 256 - 2 ** (8 - b)  # PIL's ImageOps.posterize, which refuses bits=0: the same table for bits 1..8
    lut = [i & mask for i in range(256)]
    return per_band("posterize", img, lambda im: im.point(lut * len(im.getbands())))


def solarize(img: Any, threshold: float) -> Any:
    """Invert the values at or above ``threshold``: ``img if img < threshold else 255 - img``.

    Examples:
        >>> import numpy as np
        >>> solarize(np.array([[0, 127, 128, 255]], np.uint8), 128)
        array([[  0, 127, 127,   0]], dtype=uint8)
    """
    t = check_float("solarize", "threshold", threshold)
    return per_band("solarize", img, lambda im: ImageOps.solarize(im, t))


def autocontrast(img: Any) -> Any:
    """Stretch each channel's range [lo, hi] to [0, 255] (``PIL.ImageOps.autocontrast``): the darkest value
    becomes 0 and the brightest 255 (PIL computes ``int(v * scale - lo * scale)``, scale = 255 / (hi - lo), in float,
    which can leave it at 254); a constant channel is left unchanged.

    Examples:
        >>> import numpy as np
        >>> autocontrast(np.array([[50, 100, 150]], np.uint8))
        array([[  0, 127, 255]], dtype=uint8)
    """
    return per_band("autocontrast", img, ImageOps.autocontrast)


def invert(img: Any) -> Any:
    """``255 - img`` (the negative).

    Examples:
        >>> import numpy as np
        >>> invert(np.array([[0, 100, 255]], np.uint8))
        array([[255, 155,   0]], dtype=uint8)
    """
    return per_band("invert", img, ImageOps.invert)


class RandomAdjustSharpness(RandomOp):
    """Adjust the sharpness by ``sharpness_factor`` (see :func:`adjust_sharpness`) with probability ``p``.

    Args:
        sharpness_factor: 0 blurs, 1 leaves the image unchanged, 2 sharpens twice as much.
        p: Default: 0.5.  generator: a ``numpy.random.Generator``. Default: None (minidl's global generator).

    Examples:
        >>> import numpy as np
        >>> RandomAdjustSharpness(2.0, p=1.0)(np.zeros((8, 8, 3), np.uint8)).shape
        (8, 8, 3)
    """

    def __init__(self, sharpness_factor: float, p: float = 0.5, generator: Any = None) -> None:
        self.sharpness_factor = check_float("RandomAdjustSharpness", "sharpness_factor", sharpness_factor, low=0.0)
        super().__init__(p, generator)

    def _op(self, img: Any) -> Any:
        return adjust_sharpness(img, self.sharpness_factor)

    def extra_repr(self) -> str:
        return f"sharpness_factor={self.sharpness_factor}, p={self.p}"


class RandomPosterize(RandomOp):
    """Keep ``bits`` (0..8) bits per channel (see :func:`posterize`) with probability ``p`` (Default: 0.5)."""

    def __init__(self, bits: int, p: float = 0.5, generator: Any = None) -> None:
        self.bits = _check_bits("RandomPosterize", bits)
        super().__init__(p, generator)

    def _op(self, img: Any) -> Any:
        return posterize(img, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, p={self.p}"


class RandomSolarize(RandomOp):
    """Invert the values at or above ``threshold`` (see :func:`solarize`) with probability ``p`` (Default: 0.5)."""

    def __init__(self, threshold: float, p: float = 0.5, generator: Any = None) -> None:
        self.threshold = check_float("RandomSolarize", "threshold", threshold)
        super().__init__(p, generator)

    def _op(self, img: Any) -> Any:
        return solarize(img, self.threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, p={self.p}"


class RandomAutocontrast(RandomOp):
    """Stretch each channel to [0, 255] (see :func:`autocontrast`) with probability ``p`` (Default: 0.5)."""

    def _op(self, img: Any) -> Any:
        return autocontrast(img)


class RandomInvert(RandomOp):
    """Invert the image (see :func:`invert`) with probability ``p`` (Default: 0.5)."""

    def _op(self, img: Any) -> Any:
        return invert(img)
