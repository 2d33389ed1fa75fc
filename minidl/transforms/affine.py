r"""Affine and perspective warps: rotation, translation, scaling, shear, and a random perspective (resampled by PIL,
as torchvision does for PIL images).

An affine warp maps each output pixel back to the input point it samples from. With the centre
c = (W / 2, H / 2), translation t, scale s, rotation a and shears (sx, sy), torchvision's forward map is

.. math:: M = T(t)\, C\, R(a)\, S(s)\, Sh_y(s_y)\, Sh_x(s_x)\, C^{-1}

and PIL is handed :math:`M^{-1}` (output -> input). Pixels that come from outside the image get ``fill``.
``rotate`` turns counter-clockwise for a positive angle (``PIL.Image.rotate``); ``affine``'s angle is clockwise in
image coordinates (y pointing down), as in torchvision.

A perspective warp (a homography) maps the output pixel (x, y) to the input point

.. math:: \Big(\frac{a x + b y + c}{g x + h y + 1},\ \frac{d x + e y + f}{g x + h y + 1}\Big)

whose 8 coefficients are the solution of the 8 linear equations that send the four ``endpoints`` (corners of the
output) to the four ``startpoints`` (corners of the input).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from minidl.nn._checks import check_float
from minidl.transforms._base import (
    RandomTransform,
    check_fill,
    check_fill_range,
    check_interpolation,
    check_probability,
    check_range,
    fill_per_channel,
    image_channels,
    image_kind,
    image_size,
    per_channel_pil,
    pil_filter,
    resolve_generator,
    symmetric_range,
)

__all__ = [
    "RandomAffine",
    "RandomPerspective",
    "RandomRotation",
    "affine",
    "inverse_affine_matrix",
    "perspective",
    "perspective_coefficients",
    "rotate",
]


def _pil_fill(img: Image.Image, fill: Any) -> Any:
    bands = len(img.getbands())
    values = fill_per_channel("fill", check_fill("fill", fill), bands)
    if img.mode in ("F", "I"):
        return values[0] if bands == 1 else values
    check_fill_range("fill", values, np.uint16 if img.mode.startswith("I;16") else np.uint8)
    ints = tuple(int(round(v)) for v in values)
    return ints[0] if bands == 1 else ints


def _apply(img: Any, kind: str, op: Any, fill: Any) -> Any:
    """Run ``op(pil_image, fill)`` on a PIL image, or channel by channel on a uint8 array."""
    if kind == "pil":
        return op(img, _pil_fill(img, fill))
    values = fill_per_channel("fill", check_fill("fill", fill), image_channels(img, kind))
    check_fill_range("fill", values, np.uint8)
    return per_channel_pil(img, op, tuple(int(round(v)) for v in values))


def rotate(
    img: Any,
    angle: float,
    interpolation: str = "nearest",
    expand: bool = False,
    center: Sequence[float] | None = None,
    fill: Any = 0,
) -> Any:
    """Rotate by ``angle`` degrees counter-clockwise about ``center`` (default: the image centre).

    ``expand=True`` enlarges the output to hold the whole rotated image.
    """
    kind = image_kind("rotate", img)
    resample = pil_filter(check_interpolation("rotate", interpolation))
    center = None if center is None else tuple(center)
    return _apply(img, kind, lambda im, f: im.rotate(float(angle), resample, bool(expand), center, fillcolor=f), fill)


def inverse_affine_matrix(
    center: Sequence[float], angle: float, translate: Sequence[float], scale: float, shear: Sequence[float]
) -> list[float]:
    """torchvision's ``_get_inverse_affine_matrix``: the 6 coefficients of M^-1 (output -> input) for PIL."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    # RSS without scaling (its determinant is 1)
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    # RSS^-1 * C^-1 * T^-1, then C * (...)
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty)
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def affine(
    img: Any,
    angle: float,
    translate: Sequence[float],
    scale: float,
    shear: Any,
    interpolation: str = "nearest",
    fill: Any = 0,
    center: Sequence[float] | None = None,
) -> Any:
    """Affine warp keeping the image size: rotate by ``angle`` (clockwise), scale, shear (degrees; a number or
    (x, y)), then translate by ``translate`` = (tx, ty) pixels."""
    kind = image_kind("affine", img)
    if scale <= 0:
        raise ValueError(f"affine: scale must be positive, got {scale}")
    if isinstance(shear, numbers.Real):
        shear = (float(shear), 0.0)
    if len(shear) == 1:
        shear = (float(shear[0]), 0.0)
    H, W = image_size(img, kind)
    center = (W * 0.5, H * 0.5) if center is None else tuple(center)
    matrix = inverse_affine_matrix(center, angle, translate, scale, shear)
    resample = pil_filter(check_interpolation("affine", interpolation))
    return _apply(
        img, kind, lambda im, f: im.transform((W, H), Image.Transform.AFFINE, matrix, resample, fillcolor=f), fill
    )


class RandomRotation(RandomTransform):
    """Rotate by an angle drawn uniformly from ``degrees`` (counter-clockwise for positive angles).

    Args:
        degrees: d (range (-d, d)) or (min, max).  interpolation: Default: ``"nearest"`` (torchvision's default).
        expand: enlarge the output to hold the rotated image. Default: False.
        center: (x, y) centre of rotation. Default: None (image centre).
        fill: value, or one per channel, for the uncovered corners. Default: 0.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> RandomRotation(30)(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
    """

    def __init__(
        self,
        degrees: Any,
        interpolation: str = "nearest",
        expand: bool = False,
        center: Sequence[float] | None = None,
        fill: Any = 0,
        generator: Any = None,
    ) -> None:
        self.degrees = symmetric_range("RandomRotation", "degrees", degrees)
        self.interpolation = check_interpolation("RandomRotation", interpolation)
        self.expand = bool(expand)
        if center is not None and (not isinstance(center, (tuple, list)) or len(center) != 2):
            raise ValueError(f"RandomRotation: center must be an (x, y) pair, got {center!r}")
        self.center = center
        self.fill = check_fill("RandomRotation", fill)
        self._set_generator(generator)

    @staticmethod
    def get_params(degrees: Sequence[float], generator: np.random.Generator | None = None) -> float:
        rng = resolve_generator(generator)
        return float(rng.uniform(degrees[0], degrees[1]))

    def __call__(self, img: Any) -> Any:
        image_kind("RandomRotation", img)
        angle = self.get_params(self.degrees, self._rng())
        return rotate(img, angle, self.interpolation, self.expand, self.center, self.fill)

    def extra_repr(self) -> str:
        return (
            f"degrees={self.degrees}, interpolation={self.interpolation}, expand={self.expand}, "
            f"center={self.center}, fill={self.fill}"
        )


class RandomAffine(RandomTransform):
    """Random rotation, translation, scaling and shear in one resampling (so the image is blurred only once).

    Args:
        degrees: d (range (-d, d)) or (min, max); 0 for none.
        translate: (a, b): tx ~ U(-a W, a W), ty ~ U(-b H, b H), rounded to pixels. Default: None.
        scale: (min, max) scale factor range. Default: None (1).
        shear: s (x-shear in (-s, s)), (min, max) for x, or (xmin, xmax, ymin, ymax). Default: None.
        interpolation: Default: ``"nearest"``.  fill: Default: 0.  center: Default: None (image centre).
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1))(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
    """

    def __init__(
        self,
        degrees: Any,
        translate: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
        shear: Any = None,
        interpolation: str = "nearest",
        fill: Any = 0,
        center: Sequence[float] | None = None,
        generator: Any = None,
    ) -> None:
        where = "RandomAffine"
        self.degrees = symmetric_range(where, "degrees", degrees)
        if translate is not None:
            translate = check_range(where, "translate", translate, low=0.0, high=1.0)
        self.translate = translate
        if scale is not None:
            scale = check_range(where, "scale", scale, low=0.0)
            if scale[0] <= 0:
                raise ValueError(f"{where}: scale must be positive, got {scale!r}")
        self.scale = scale
        if shear is not None:
            if isinstance(shear, (tuple, list)) and len(shear) == 4:
                shear = check_range(where, "shear", shear[:2]) + check_range(where, "shear", shear[2:])
            else:
                shear = symmetric_range(where, "shear", shear)
        self.shear = shear
        self.interpolation = check_interpolation(where, interpolation)
        self.fill = check_fill(where, fill)
        self.center = center
        self._set_generator(generator)

    @staticmethod
    def get_params(
        degrees: Sequence[float],
        translate: Sequence[float] | None,
        scale_ranges: Sequence[float] | None,
        shears: Sequence[float] | None,
        img_size: Sequence[int],
        generator: np.random.Generator | None = None,
    ) -> tuple[float, tuple[int, int], float, tuple[float, float]]:
        """torchvision's draw: ``(angle, (tx, ty), scale, (shear_x, shear_y))``; ``img_size`` is (W, H)."""
        rng = resolve_generator(generator)
        angle = float(rng.uniform(degrees[0], degrees[1]))
        if translate is not None:
            max_dx, max_dy = float(translate[0] * img_size[0]), float(translate[1] * img_size[1])
            translations = (int(round(rng.uniform(-max_dx, max_dx))), int(round(rng.uniform(-max_dy, max_dy))))
        else:
            translations = (0, 0)
        scale = float(rng.uniform(scale_ranges[0], scale_ranges[1])) if scale_ranges is not None else 1.0
        shear_x = shear_y = 0.0
        if shears is not None:
            shear_x = float(rng.uniform(shears[0], shears[1]))
            if len(shears) == 4:
                shear_y = float(rng.uniform(shears[2], shears[3]))
        return angle, translations, scale, (shear_x, shear_y)

    def __call__(self, img: Any) -> Any:
        H, W = image_size(img, image_kind("RandomAffine", img))
        angle, translations, scale, shear = self.get_params(
            self.degrees, self.translate, self.scale, self.shear, (W, H), self._rng()
        )
        return affine(img, angle, translations, scale, shear, self.interpolation, self.fill, self.center)

    def extra_repr(self) -> str:
        parts = [f"degrees={self.degrees}"]
        for name in ("translate", "scale", "shear"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)}")
        parts.append(f"interpolation={self.interpolation}")
        if self.fill != 0:
            parts.append(f"fill={self.fill}")
        return ", ".join(parts)


def perspective_coefficients(
    startpoints: Sequence[Sequence[float]], endpoints: Sequence[Sequence[float]]
) -> list[float]:
    """The 8 coefficients (a, b, c, d, e, f, g, h) of the homography that sends each of the four ``endpoints`` to
    its ``startpoint`` (output -> input, as PIL wants them); solved in float64 and rounded to float32, as torchvision.

    Examples:
        >>> corners = [[0, 0], [9, 0], [9, 9], [0, 9]]
        >>> perspective_coefficients(corners, corners)
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    """
    for name, points in (("startpoints", startpoints), ("endpoints", endpoints)):
        if len(points) != 4 or any(len(p) != 2 for p in points):
            raise ValueError(f"perspective: {name} must be four (x, y) corners, got {points!r}")
    a = np.zeros((8, 8))
    for i, ((x, y), (u, v)) in enumerate(zip(endpoints, startpoints, strict=True)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
    b = np.asarray(startpoints, dtype=np.float64).reshape(8)
    try:
        coeffs = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"perspective: the corners {endpoints!r} define no perspective map (three of them are on one line)"
        ) from None
    return coeffs.astype(np.float32).tolist()


def perspective(
    img: Any,
    startpoints: Sequence[Sequence[float]],
    endpoints: Sequence[Sequence[float]],
    interpolation: str = "bilinear",
    fill: Any = 0,
) -> Any:
    """Warp so that the four ``startpoints`` corners (top-left, top-right, bottom-right, bottom-left, as (x, y)) of
    the input land on the ``endpoints``; the size is kept and uncovered pixels get ``fill``.

    Examples:
        >>> import numpy as np
        >>> img = np.arange(16, dtype=np.uint8).reshape(4, 4)
        >>> corners = [[0, 0], [3, 0], [3, 3], [0, 3]]
        >>> bool((perspective(img, corners, corners, "nearest") == img).all())
        True
    """
    kind = image_kind("perspective", img)
    coeffs = perspective_coefficients(startpoints, endpoints)
    resample = pil_filter(check_interpolation("perspective", interpolation))
    H, W = image_size(img, kind)
    return _apply(
        img,
        kind,
        lambda im, f: im.transform((W, H), Image.Transform.PERSPECTIVE, coeffs, resample, fillcolor=f),
        0 if fill is None else fill,
    )


class RandomPerspective(RandomTransform):
    """With probability ``p``, move each corner inwards by a random amount and warp the image to match.

    Each corner moves by up to ``distortion_scale`` times half the width (horizontally) and half the height
    (vertically), drawn as torchvision's ``get_params``.

    Args:
        distortion_scale: in [0, 1]; 0 leaves the image unchanged. Default: 0.5.
        p: Default: 0.5.  interpolation: Default: ``"bilinear"``.  fill: value(s) of the uncovered pixels. Default: 0.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> RandomPerspective(0.3, p=1.0)(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
    """

    def __init__(
        self,
        distortion_scale: float = 0.5,
        p: float = 0.5,
        interpolation: str = "bilinear",
        fill: Any = 0,
        generator: Any = None,
    ) -> None:
        where = "RandomPerspective"
        self.distortion_scale = check_float(where, "distortion_scale", distortion_scale, low=0.0, high=1.0)
        self.p = check_probability(where, p)
        self.interpolation = check_interpolation(where, interpolation)
        self.fill = check_fill(where, 0 if fill is None else fill)
        self._set_generator(generator)

    @staticmethod
    def get_params(
        width: int, height: int, distortion_scale: float, generator: np.random.Generator | None = None
    ) -> tuple[list[list[int]], list[list[int]]]:
        """``(startpoints, endpoints)``: the image corners and the moved corners (top-left, top-right, bottom-right,
        bottom-left)."""
        rng = resolve_generator(generator)
        dx, dy = int(distortion_scale * (width // 2)), int(distortion_scale * (height // 2))

        def near_start(extent: int) -> int:  # 0 .. extent, inclusive
            return int(rng.integers(0, extent + 1))

        def near_end(size: int, extent: int) -> int:  # size - 1 - extent .. size - 1, inclusive
            return int(rng.integers(size - extent - 1, size))

        topleft = [near_start(dx), near_start(dy)]
        topright = [near_end(width, dx), near_start(dy)]
        botright = [near_end(width, dx), near_end(height, dy)]
        botleft = [near_start(dx), near_end(height, dy)]
        startpoints = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
        return startpoints, [topleft, topright, botright, botleft]

    def __call__(self, img: Any) -> Any:
        H, W = image_size(img, image_kind("RandomPerspective", img))
        rng = self._rng()
        if rng.random() >= self.p:
            return img
        startpoints, endpoints = self.get_params(W, H, self.distortion_scale, rng)
        return perspective(img, startpoints, endpoints, self.interpolation, self.fill)

    def extra_repr(self) -> str:
        return f"distortion_scale={self.distortion_scale}, p={self.p}, interpolation={self.interpolation}"
