"""What every transform shares: the base classes, the image kinds they accept, and argument checks.

Image kinds (decided by type and dtype, never guessed from the shape):

* a PIL image;
* an ``(H, W, C)`` or ``(H, W)`` **uint8** NumPy array: a decoded image, channels last (as ``np.asarray(pil_image)``,
  torchvision's ``CIFAR10.data``);
* a **floating** array ``(..., C, H, W)``: an image after :class:`~minidl.transforms.ToArray`, channels first.

A per-sample transform returns the kind it was given (PIL in, PIL out; array in, array out), as torchvision does.
Random transforms draw from their own ``generator`` when one was given, else from
``minidl.default_generator()`` looked up at call time (so ``minidl.manual_seed`` and the DataLoader's per-worker
seeding apply). Inside a DataLoader with worker processes prefer ``generator=None``: an explicit generator is
copied into every worker, which would then all draw the same numbers.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from minidl import _random
from minidl.nn._checks import check_float, pair

__all__ = ["InterpolationMode", "RandomTransform", "Transform"]


class InterpolationMode:
    """Names of the resampling filters (torchvision's ``InterpolationMode``); plain strings work as well."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


class Transform:
    """Base class: a callable with a torchvision-like ``repr`` built from :meth:`extra_repr`."""

    def __call__(self, img: Any) -> Any:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class RandomTransform(Transform):
    """Base class of the random transforms: ``self.generator`` or minidl's global generator at call time."""

    generator: np.random.Generator | None = None

    def _set_generator(self, generator: Any) -> None:
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"{type(self).__name__}: generator must be a numpy.random.Generator or None, "
                f"got {type(generator).__name__}"
            )
        self.generator = generator

    def _rng(self) -> np.random.Generator:
        return resolve_generator(self.generator)


class RandomOp(RandomTransform):
    """Base class of the transforms that apply one fixed operation, ``self._op(img)``, with probability ``p`` (one
    uniform draw per call). The image is checked first (:func:`image_kind`): 8-bit images only (the colour and
    photometric operations), or also float arrays where ``allow_float`` (the flips).

    Args:
        p: the probability of applying the operation. Default: 0.5.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).
    """

    allow_float: bool = False

    def __init__(self, p: float = 0.5, generator: Any = None) -> None:
        self.p = check_probability(type(self).__name__, p)
        self._set_generator(generator)

    def _op(self, img: Any) -> Any:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __call__(self, img: Any) -> Any:
        image_kind(type(self).__name__, img, allow_float=self.allow_float, eight_bit=not self.allow_float)
        return self._op(img) if self._rng().random() < self.p else img

    def extra_repr(self) -> str:
        return f"p={self.p}"


def resolve_generator(generator: np.random.Generator | None) -> np.random.Generator:
    """``generator``, or minidl's global generator (looked up now, so seeding and per-worker streams apply)."""
    return generator if generator is not None else _random.default_generator()


# ---------------------------------------------------------------------------------------------------- image kinds
# PIL modes whose values are not 8-bit: 16-bit unsigned, 32-bit int and 32-bit float grayscale
HIGH_DEPTH_MODES = {"I;16": "16-bit", "I;16L": "16-bit", "I;16B": "16-bit", "I;16N": "16-bit", "I": "32-bit integer",
                    "F": "32-bit float"}  # fmt: skip
# the memory layout of each (what np.asarray gives, what Image.frombytes takes)
_HIGH_DEPTH_DTYPES = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2", "I": "=i4", "F": "=f4"}


def image_kind(where: str, img: Any, *, allow_float: bool = False, eight_bit: bool = False) -> str:
    """``"pil"``, ``"array"`` (uint8 HWC/HW) or ``"float"`` (float (..., C, H, W)); a clear error otherwise.

    ``eight_bit``: the caller is a colour transform, which works on 8-bit values; a PIL image of a 16- or 32-bit mode
    (``I;16``, ``I``, ``F``) is refused, since PIL would clip its values to 0..255.
    """
    if isinstance(img, Image.Image):
        if eight_bit and img.mode in HIGH_DEPTH_MODES:
            raise TypeError(
                f"{where}: expected an 8-bit image (a PIL image of mode L, RGB, RGBA, ... or a uint8 array), got a "
                f"{HIGH_DEPTH_MODES[img.mode]} PIL image (mode {img.mode!r}), whose values PIL would clip to 0..255; "
                "scale it to 8 bits first (minidl.data.datasets.pil_loader does so for 16-bit files)"
            )
        return "pil"
    if isinstance(img, np.ndarray) or (hasattr(img, "shape") and hasattr(img, "dtype")):
        dtype = np.dtype(img.dtype)
        if dtype == np.uint8 and isinstance(img, np.ndarray):
            if img.ndim not in (2, 3):
                raise ValueError(f"{where}: expected a uint8 image of shape (H, W, C) or (H, W), got shape {img.shape}")
            if img.ndim == 3 and img.shape[2] > 4 and img.shape[0] <= 4:
                raise ValueError(
                    f"{where}: a uint8 array is read as (H, W, C) with channels last, got shape {img.shape}, which "
                    "looks channels-first; use img.transpose(1, 2, 0)"
                )
            if min(img.shape[:2]) < 1:
                raise ValueError(f"{where}: the image is empty (shape {img.shape})")
            return "array"
        if np.issubdtype(dtype, np.floating):
            if not allow_float:
                hint = (
                    "ToArray converts 8-bit images; a float array is converted already (or scale it to uint8)"
                    if where == "to_array"
                    else "apply this transform before ToArray()"
                )
                raise TypeError(
                    f"{where}: expected a PIL image or an (H, W, C) uint8 array, got a {dtype} array of shape "
                    f"{tuple(img.shape)}; {hint}"
                )
            if img.ndim < 3:
                raise ValueError(
                    f"{where}: a floating array is read as (C, H, W) (channels first, after ToArray), "
                    f"got shape {tuple(img.shape)}"
                )
            return "float"
        what = "a PIL image, an (H, W, C) uint8 array" + (" or a floating (C, H, W) array" if allow_float else "")
        raise TypeError(f"{where}: expected {what}, got an array of dtype {dtype}")
    what = "a PIL image or an (H, W, C) uint8 array" + (" or a floating (C, H, W) array" if allow_float else "")
    raise TypeError(f"{where}: expected {what}, got {type(img).__name__}")


def image_size(img: Any, kind: str) -> tuple[int, int]:
    """``(H, W)`` of any image kind."""
    if kind == "pil":
        return img.size[1], img.size[0]
    if kind == "array":
        return int(img.shape[0]), int(img.shape[1])
    return int(img.shape[-2]), int(img.shape[-1])


def image_channels(img: Any, kind: str) -> int:
    if kind == "pil":
        return len(img.getbands())
    if kind == "array":
        return 1 if img.ndim == 2 else int(img.shape[2])
    return int(img.shape[-3])


def to_pil(arr: np.ndarray) -> Image.Image:
    """A uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array as a PIL image (L, RGB, RGBA)."""
    if arr.ndim == 2 or arr.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(arr.reshape(arr.shape[:2])), mode="L")
    if arr.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(arr), mode="RGB" if arr.shape[2] == 3 else "RGBA")
    raise ValueError(f"an image with {arr.shape[2]} channels has no PIL mode (1, 3 or 4 channels are supported)")


def from_pil(pil: Image.Image, like: np.ndarray) -> np.ndarray:
    """The PIL result back as an array with the layout of ``like`` ((H, W) stays 2-D, (H, W, 1) keeps its axis)."""
    out = np.asarray(pil)
    if like.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return np.ascontiguousarray(out)


def pil_from_array_like(arr: np.ndarray, like: Image.Image) -> Image.Image:
    """Rebuild a PIL image of ``like``'s mode (and palette) from an array computed from it."""
    if like.mode in HIGH_DEPTH_MODES:  # Pillow's fromarray refuses mode= for these: rebuild from the raw bytes
        raw = np.ascontiguousarray(arr, dtype=_HIGH_DEPTH_DTYPES[like.mode])
        return Image.frombytes(like.mode, (raw.shape[1], raw.shape[0]), raw.tobytes())
    out = Image.fromarray(np.ascontiguousarray(arr), mode=like.mode)
    if like.mode == "P" and like.getpalette() is not None:
        out.putpalette(like.getpalette())
    return out


def per_channel_pil(arr: np.ndarray, op: Any, fill: Sequence[float] | None = None) -> np.ndarray:
    """Apply ``op(pil_L_image, fill_value) -> pil_L_image`` to each channel of a uint8 HWC/HW array.

    PIL resamples the bands of an image independently, so this equals applying ``op`` to the whole image, and it
    works for any number of channels.
    """
    planes = arr[:, :, None] if arr.ndim == 2 else arr
    outs = []
    for c in range(planes.shape[2]):
        value = None if fill is None else fill[c]
        outs.append(np.asarray(op(Image.fromarray(np.ascontiguousarray(planes[:, :, c]), mode="L"), value)))
    out = np.stack(outs, axis=-1)
    return out[:, :, 0] if arr.ndim == 2 else out


# ---------------------------------------------------------------------------------------------------- argument checks
def check_size(where: str, size: Any, name: str = "size") -> tuple[int, int]:
    """An int or an (H, W) pair of positive ints as ``(H, W)``."""
    if isinstance(size, (tuple, list)) and len(size) == 1:
        size = size[0]
    return pair(where, name, size, minimum=1)


def check_probability(where: str, p: Any) -> float:
    return check_float(where, "p", p, low=0.0, high=1.0)


def check_range(
    where: str, name: str, value: Any, *, low: float | None = None, high: float | None = None
) -> tuple[float, float]:
    """A ``(min, max)`` pair of real numbers with min <= max, within [low, high]."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{where}: {name} must be a (min, max) pair, got {value!r}")
    lo = check_float(where, name, value[0], low=low, high=high)
    hi = check_float(where, name, value[1], low=low, high=high)
    if lo > hi:
        raise ValueError(f"{where}: {name} must be (min, max) with min <= max, got {value!r}")
    return lo, hi


def symmetric_range(where: str, name: str, value: Any, *, low: float | None = None) -> tuple[float, float]:
    """A number d >= 0 as ``(-d, d)``, or a ``(min, max)`` pair."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        d = check_float(where, name, value, low=0.0)
        return -d, d
    return check_range(where, name, value, low=low)


def check_fill(where: str, fill: Any) -> float | tuple[float, ...]:
    """A number or a tuple of numbers (one per channel)."""
    if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
        return float(fill) if not float(fill).is_integer() else int(fill)
    if (
        isinstance(fill, (tuple, list))
        and fill
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in fill)
    ):
        return tuple(float(v) if not float(v).is_integer() else int(v) for v in fill)
    raise TypeError(f"{where}: fill must be a number or a tuple of numbers (one per channel), got {fill!r}")


def check_antialias(where: str, antialias: Any) -> None:
    """torchvision's ``antialias`` (True, its default; None reads as True for PIL images): minidl resizes with PIL,
    which antialiases when it shrinks, so False cannot be honoured and is refused."""
    if antialias is not None and not isinstance(antialias, bool):
        raise TypeError(f"{where}: antialias must be True, False or None, got {antialias!r}")
    if antialias is False:
        raise ValueError(
            f"{where}: antialias=False is not available: minidl resizes with PIL, which antialiases when it shrinks "
            "(torchvision's default, antialias=True)"
        )


def check_fill_range(where: str, values: tuple[float, ...], dtype: Any) -> None:
    """Fill values for an image of ``dtype``: for an integer dtype, integers within its range (a cast would wrap 300
    to 44 in uint8 and truncate 0.5 to 0). Float images take any value."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        return
    info = np.iinfo(dtype)
    if any(not float(v).is_integer() or not info.min <= v <= info.max for v in values):
        what = "an 8-bit image" if dtype == np.uint8 else f"a {dtype} image"
        shown = values[0] if len(set(values)) == 1 else values
        raise ValueError(
            f"{where}: {what} needs fill values that are integers in [{info.min}, {info.max}], got {shown!r}"
        )


def fill_per_channel(where: str, fill: Any, channels: int) -> tuple[float, ...]:
    if isinstance(fill, tuple):
        if len(fill) == 1:
            return fill * channels
        if len(fill) != channels:
            raise ValueError(f"{where}: fill has {len(fill)} values but the image has {channels} channels")
        return fill
    return (fill,) * channels


def check_interpolation(where: str, interpolation: Any) -> str:
    key = str(getattr(interpolation, "value", interpolation)).lower()
    if key not in _PIL_FILTERS:
        raise ValueError(f"{where}: interpolation must be one of {sorted(_PIL_FILTERS)}, got {interpolation!r}")
    return key


def pil_filter(interpolation: str) -> Image.Resampling:
    return _PIL_FILTERS[interpolation]
