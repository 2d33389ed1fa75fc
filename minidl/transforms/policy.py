r"""Policy augmentation: AutoAugment, RandAugment and TrivialAugmentWide, with torchvision's op tables.

All three pick operations from one set of 14 image operations and apply them at a *magnitude* taken from a table
of ``num_bins`` evenly spaced values (``magnitude_bins``); signed operations (shear, translate, rotate and the
colour enhancements) are negated with probability 1/2:

=============  ===========================================  =========================================
operation      what it does at magnitude m                   AutoAugment / RandAugment range (10 / 31 bins)
=============  ===========================================  =========================================
ShearX, Y      affine shear by atan(m) about the corner      m in [0, 0.3]
TranslateX, Y  shift by int(m) pixels                        m in [0, 150/331 W (or H)]
Rotate         rotate by m degrees                           m in [0, 30]
Brightness     ``adjust_brightness(img, 1 + m)``             m in [0, 0.9]
Color          ``adjust_saturation(img, 1 + m)``             m in [0, 0.9]
Contrast       ``adjust_contrast(img, 1 + m)``               m in [0, 0.9]
Sharpness      ``adjust_sharpness(img, 1 + m)``              m in [0, 0.9]
Posterize      ``posterize(img, int(m))``                    m = 8 - round(i / ((bins - 1) / 4))
Solarize       ``solarize(img, m)``                          m in [255, 0]
AutoContrast   ``autocontrast(img)``                         no magnitude
Equalize       ``equalize(img)``                             no magnitude
Invert         ``invert(img)`` (AutoAugment only)            no magnitude
Identity       nothing (RandAugment, TrivialAugmentWide)     no magnitude
=============  ===========================================  =========================================

* **AutoAugment** (Cubuk et al. 2019): a policy is a list of 25 sub-policies learned on a dataset (ImageNet,
  CIFAR-10 or SVHN); each image draws one sub-policy, whose two operations are each applied with their own
  probability at their own magnitude bin (of 10).
* **RandAugment** (Cubuk et al. 2020): ``num_ops`` operations drawn uniformly (with replacement) from the 14 minus
  Invert, all at the one fixed bin ``magnitude`` (of ``num_magnitude_bins``).
* **TrivialAugmentWide** (Müller and Hutter 2021): one operation drawn uniformly, at a magnitude bin drawn uniformly,
  with wider ranges (shear and enhancements 0.99, translate 32 px, rotate 135 degrees, posterize down to 2 bits).

Inputs are PIL images (mode L, RGB, or RGBA) or uint8 (H, W[, C]) arrays; the result has the input's kind.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import numpy as np

from minidl.nn._checks import check_int
from minidl.transforms._base import (
    RandomTransform,
    check_fill,
    check_fill_range,
    check_interpolation,
    fill_per_channel,
    image_channels,
    image_kind,
    image_size,
    resolve_generator,
)
from minidl.transforms.affine import affine, rotate
from minidl.transforms.color import adjust_brightness, adjust_contrast, adjust_saturation, equalize
from minidl.transforms.photometric import adjust_sharpness, autocontrast, invert, posterize, solarize

__all__ = ["AutoAugment", "AutoAugmentPolicy", "RandAugment", "TrivialAugmentWide", "apply_op", "magnitude_bins"]


class AutoAugmentPolicy(Enum):
    """The datasets AutoAugment's policies were learned on (torchvision's ``AutoAugmentPolicy``)."""

    IMAGENET = "imagenet"
    CIFAR10 = "cifar10"
    SVHN = "svhn"


def apply_op(img: Any, op_name: str, magnitude: float, interpolation: str = "nearest", fill: Any = None) -> Any:
    """Apply one policy operation at a signed ``magnitude`` (torchvision's ``_apply_op``; see the table above).

    Examples:
        >>> import numpy as np
        >>> apply_op(np.array([[10, 200]], np.uint8), "Solarize", 128.0)
        array([[10, 55]], dtype=uint8)
    """
    fill = 0 if fill is None else fill
    if op_name == "ShearX":  # the shear angle is atan(m): the image's x moves by m * y
        return affine(img, 0.0, [0, 0], 1.0, [math.degrees(math.atan(magnitude)), 0.0], interpolation, fill, [0, 0])
    if op_name == "ShearY":
        return affine(img, 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(magnitude))], interpolation, fill, [0, 0])
    if op_name == "TranslateX":
        return affine(img, 0.0, [int(magnitude), 0], 1.0, [0.0, 0.0], interpolation, fill)
    if op_name == "TranslateY":
        return affine(img, 0.0, [0, int(magnitude)], 1.0, [0.0, 0.0], interpolation, fill)
    if op_name == "Rotate":
        return rotate(img, magnitude, interpolation, fill=fill)
    if op_name == "Brightness":
        return adjust_brightness(img, 1.0 + magnitude)
    if op_name == "Color":
        return adjust_saturation(img, 1.0 + magnitude)
    if op_name == "Contrast":
        return adjust_contrast(img, 1.0 + magnitude)
    if op_name == "Sharpness":
        return adjust_sharpness(img, 1.0 + magnitude)
    if op_name == "Posterize":
        return posterize(img, int(magnitude))
    if op_name == "Solarize":
        return solarize(img, magnitude)
    if op_name == "AutoContrast":
        return autocontrast(img)
    if op_name == "Equalize":
        return equalize(img)
    if op_name == "Invert":
        return invert(img)
    if op_name == "Identity":
        return img
    raise ValueError(f"apply_op: unknown operation {op_name!r}; expected one of {sorted(_OPS)}")


_OPS = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness",
        "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert", "Identity"}  # fmt: skip


def _linspace(start: float, end: float, steps: int) -> np.ndarray:
    """``steps`` evenly spaced float32 values from ``start`` to ``end`` (as torchvision's ``torch.linspace`` tables,
    to within one float32 rounding)."""
    return np.linspace(start, end, steps).astype(np.float32)


def _posterize_bits(steps: int, levels: int) -> np.ndarray:
    """8 - round(i / ((steps - 1) / levels)): from 8 bits down to 8 - levels."""
    return (8 - np.round(np.arange(steps) / ((steps - 1) / levels))).astype(np.int64)


def magnitude_bins(kind: str, num_bins: int, image_size: tuple[int, int] = (32, 32)) -> dict[str, tuple[Any, bool]]:
    """The op table ``name -> (magnitudes, signed)`` of ``kind`` ``"autoaugment"``, ``"randaugment"`` or
    ``"trivialaugmentwide"``; ``magnitudes`` is an array of ``num_bins`` values, or None for the operations without
    a magnitude. ``image_size`` = (H, W) sets the translate range of the first two.

    Examples:
        >>> table = magnitude_bins("randaugment", 31)
        >>> list(table)[:3], float(table["Rotate"][0][9]), table["Posterize"][0][:5].tolist()
        (['Identity', 'ShearX', 'ShearY'], 9.0, [8, 8, 8, 8, 7])
    """
    # the largest magnitude of each operation (posterize: how many bits it may remove)
    if kind == "trivialaugmentwide":
        shear_max, enhance_max, rotate_max, bits_removed = 0.99, 0.99, 135.0, 6
        translate_x, translate_y = 32.0, 32.0
    elif kind in ("autoaugment", "randaugment"):
        shear_max, enhance_max, rotate_max, bits_removed = 0.3, 0.9, 30.0, 4
        translate_x, translate_y = 150.0 / 331.0 * image_size[1], 150.0 / 331.0 * image_size[0]
    else:
        raise ValueError(f"magnitude_bins: kind must be autoaugment, randaugment or trivialaugmentwide, got {kind!r}")
    table: dict[str, tuple[Any, bool]] = {} if kind == "autoaugment" else {"Identity": (None, False)}
    table.update(
        {
            "ShearX": (_linspace(0.0, shear_max, num_bins), True),
            "ShearY": (_linspace(0.0, shear_max, num_bins), True),
            "TranslateX": (_linspace(0.0, translate_x, num_bins), True),
            "TranslateY": (_linspace(0.0, translate_y, num_bins), True),
            "Rotate": (_linspace(0.0, rotate_max, num_bins), True),
            "Brightness": (_linspace(0.0, enhance_max, num_bins), True),
            "Color": (_linspace(0.0, enhance_max, num_bins), True),
            "Contrast": (_linspace(0.0, enhance_max, num_bins), True),
            "Sharpness": (_linspace(0.0, enhance_max, num_bins), True),
            "Posterize": (_posterize_bits(num_bins, bits_removed), False),
            "Solarize": (_linspace(255.0, 0.0, num_bins), False),
            "AutoContrast": (None, False),
            "Equalize": (None, False),
        }
    )
    if kind == "autoaugment":
        table["Invert"] = (None, False)
    return table


# (operation, probability, magnitude bin of 10 or None): torchvision's tables, from Cubuk et al. 2019, appendix
_POLICIES: dict[AutoAugmentPolicy, list[tuple[tuple[str, float, int | None], tuple[str, float, int | None]]]] = {
    AutoAugmentPolicy.IMAGENET: [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    AutoAugmentPolicy.CIFAR10: [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
    AutoAugmentPolicy.SVHN: [
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)), (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)), (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ],
}  # fmt: skip


class _PolicyBase(RandomTransform):
    """What the three policies share: the interpolation and fill of the geometric operations, the image check, and
    applying one operation at a bin of its table, negated when ``flip`` (signed operations only)."""

    def _setup(self, interpolation: Any, fill: Any, generator: Any) -> None:
        where = type(self).__name__
        self.interpolation = check_interpolation(where, interpolation)
        self.fill = None if fill is None else check_fill(where, fill)
        self._set_generator(generator)

    def _size(self, img: Any) -> tuple[int, int]:
        """(H, W) of an image every operation can take: checked before the draw, so the error does not depend on it."""
        where = type(self).__name__
        kind = image_kind(where, img, eight_bit=True)
        if kind == "pil" and img.mode not in ("L", "RGB", "RGBA"):
            raise ValueError(
                f"{where}: expected a PIL image of mode L, RGB or RGBA, got mode {img.mode!r}; convert it first, e.g. "
                "img.convert('RGB')"
            )
        channels = image_channels(img, kind)
        if channels not in (1, 3, 4):  # (the colour operations take these; only some draws reach them)
            raise ValueError(
                f"{where}: expected an image with 1, 3 or 4 channels, got shape {getattr(img, 'shape', None)}"
            )
        if self.fill is not None:  # (only the geometric operations use it; only some draws reach them)
            check_fill_range(where, fill_per_channel(where, self.fill, channels), np.uint8)
        return image_size(img, kind)

    def _apply(self, img: Any, op_name: str, magnitudes: Any, index: int | None, signed: bool, flip: bool) -> Any:
        magnitude = float(magnitudes[index]) if magnitudes is not None and index is not None else 0.0
        if signed and flip:
            magnitude = -magnitude
        return apply_op(img, op_name, magnitude, self.interpolation, self.fill)


class AutoAugment(_PolicyBase):
    """AutoAugment (Cubuk et al. 2019): apply one randomly chosen learned sub-policy of two operations.

    Args:
        policy: :class:`AutoAugmentPolicy` ``IMAGENET``, ``CIFAR10`` or ``SVHN`` (or its value, ``"cifar10"``).
            Default: ``AutoAugmentPolicy.IMAGENET`` (torchvision's default; use ``CIFAR10`` for CIFAR).
        interpolation: Default: ``"nearest"``.  fill: value(s) of the pixels uncovered by the geometric operations.
            Default: None (0).
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> T = AutoAugment(AutoAugmentPolicy.CIFAR10)
        >>> T(np.zeros((32, 32, 3), np.uint8)).shape, T
        ((32, 32, 3), AutoAugment(policy=AutoAugmentPolicy.CIFAR10, fill=None))
    """

    def __init__(
        self,
        policy: Any = AutoAugmentPolicy.IMAGENET,
        interpolation: str = "nearest",
        fill: Any = None,
        generator: Any = None,
    ) -> None:
        try:
            self.policy = AutoAugmentPolicy(policy)
        except ValueError:
            raise ValueError(
                f"AutoAugment: policy must be an AutoAugmentPolicy (IMAGENET, CIFAR10, SVHN) or one of "
                f"{[p.value for p in AutoAugmentPolicy]}, got {policy!r}"
            ) from None
        self.policies = _POLICIES[self.policy]
        self._setup(interpolation, fill, generator)

    @staticmethod
    def get_params(transform_num: int, generator: np.random.Generator | None = None) -> tuple[int, Any, Any]:
        """``(policy_id, probs, signs)``: the sub-policy, a U(0, 1) draw per operation (applied if <= its
        probability) and a coin per operation (0: negate the magnitude)."""
        rng = resolve_generator(generator)
        return int(rng.integers(transform_num)), rng.random(2), rng.integers(2, size=2)

    def __call__(self, img: Any) -> Any:
        H, W = self._size(img)
        transform_id, probs, signs = self.get_params(len(self.policies), self._rng())
        table = magnitude_bins("autoaugment", 10, (H, W))
        for i, (op_name, p, magnitude_id) in enumerate(self.policies[transform_id]):
            if probs[i] <= p:
                magnitudes, signed = table[op_name]
                img = self._apply(img, op_name, magnitudes, magnitude_id, signed, signs[i] == 0)
        return img

    def extra_repr(self) -> str:
        return f"policy={self.policy}, fill={self.fill}"


class RandAugment(_PolicyBase):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` uniformly drawn operations, all at one magnitude.

    Args:
        num_ops: operations applied one after the other. Default: 2.
        magnitude: the bin index in [0, num_magnitude_bins). Default: 9.
        num_magnitude_bins: Default: 31.  interpolation: Default: ``"nearest"``.  fill: Default: None (0).
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> RandAugment(num_ops=2, magnitude=9)(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        interpolation: str = "nearest",
        fill: Any = None,
        generator: Any = None,
    ) -> None:
        where = "RandAugment"
        self.num_ops = check_int(where, "num_ops", num_ops, minimum=0)
        self.num_magnitude_bins = check_int(where, "num_magnitude_bins", num_magnitude_bins, minimum=2)
        self.magnitude = check_int(where, "magnitude", magnitude, minimum=0)
        if self.magnitude >= self.num_magnitude_bins:
            raise ValueError(
                f"{where}: magnitude is a bin index in [0, num_magnitude_bins) = [0, {self.num_magnitude_bins}), "
                f"got {magnitude}"
            )
        self._setup(interpolation, fill, generator)

    def __call__(self, img: Any) -> Any:
        H, W = self._size(img)
        rng = self._rng()
        table = magnitude_bins("randaugment", self.num_magnitude_bins, (H, W))
        names = list(table)
        for _ in range(self.num_ops):
            op_name = names[int(rng.integers(len(names)))]
            magnitudes, signed = table[op_name]
            flip = bool(rng.integers(2)) if signed else False
            img = self._apply(img, op_name, magnitudes, self.magnitude, signed, flip)
        return img

    def extra_repr(self) -> str:
        return (
            f"num_ops={self.num_ops}, magnitude={self.magnitude}, num_magnitude_bins={self.num_magnitude_bins}, "
            f"interpolation={self.interpolation}, fill={self.fill}"
        )


class TrivialAugmentWide(_PolicyBase):
    """TrivialAugment Wide (Müller and Hutter 2021): one uniformly drawn operation at a uniformly drawn magnitude.

    Args:
        num_magnitude_bins: Default: 31.  interpolation: Default: ``"nearest"``.  fill: Default: None (0).
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> TrivialAugmentWide()(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
    """

    def __init__(
        self, num_magnitude_bins: int = 31, interpolation: str = "nearest", fill: Any = None, generator: Any = None
    ) -> None:
        self.num_magnitude_bins = check_int("TrivialAugmentWide", "num_magnitude_bins", num_magnitude_bins, minimum=2)
        self._setup(interpolation, fill, generator)

    def __call__(self, img: Any) -> Any:
        self._size(img)
        rng = self._rng()
        table = magnitude_bins("trivialaugmentwide", self.num_magnitude_bins)
        names = list(table)
        op_name = names[int(rng.integers(len(names)))]
        magnitudes, signed = table[op_name]
        index = int(rng.integers(len(magnitudes))) if magnitudes is not None else None
        flip = bool(rng.integers(2)) if signed else False
        return self._apply(img, op_name, magnitudes, index, signed, flip)

    def extra_repr(self) -> str:
        return f"num_magnitude_bins={self.num_magnitude_bins}, interpolation={self.interpolation}, fill={self.fill}"
