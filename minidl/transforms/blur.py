r"""Gaussian blur (torchvision's ``GaussianBlur`` / ``gaussian_blur``), written out in NumPy.

A kernel of K taps (K odd) samples the Gaussian at the integer offsets :math:`t = -(K-1)/2, \dots, (K-1)/2` and is
normalized to sum to 1:

.. math:: g_\sigma(t) = \frac{e^{-t^2 / 2\sigma^2}}{\sum_{t'} e^{-t'^2 / 2\sigma^2}}, \qquad
          \mathrm{out}_{i,j} = \sum_{p,q} g_{\sigma_y}(p)\, g_{\sigma_x}(q)\, \mathrm{img}_{i+p,\,j+q}

The 2-D kernel is the outer product of the two 1-D kernels, so the blur runs as a pass along the rows and a pass
along the columns. The image is first padded by (K-1)/2 pixels on each side in ``reflect`` mode (3 2 | 1 2 3), so
the output keeps the input size. 8-bit images are blurred in float and rounded back (round half to even);
floating (C, H, W) arrays stay floating.

Notation: ``kernel_size = (KX, KY)`` (width first, as torchvision), ``sigma = (sigma_x, sigma_y)``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._checks import check_float
from minidl.transforms._base import (
    RandomTransform,
    check_range,
    image_kind,
    image_size,
    pil_from_array_like,
    resolve_generator,
)

__all__ = ["GaussianBlur", "gaussian_blur", "gaussian_kernel1d"]


def gaussian_kernel1d(kernel_size: int, sigma: float) -> np.ndarray:
    """The K normalized Gaussian weights at offsets -(K-1)/2 .. (K-1)/2 (float64, summing to 1).

    Examples:
        >>> gaussian_kernel1d(3, 1.0).round(4)
        array([0.2741, 0.4519, 0.2741])
    """
    half = (kernel_size - 1) * 0.5
    t = np.linspace(-half, half, kernel_size)
    pdf = np.exp(-0.5 * (t / sigma) ** 2)
    return pdf / pdf.sum()


def _check_kernel_size(where: str, kernel_size: Any) -> tuple[int, int]:
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size, kernel_size)
    elif isinstance(kernel_size, (tuple, list)) and len(kernel_size) == 1:
        kernel_size = (kernel_size[0], kernel_size[0])
    if not isinstance(kernel_size, (tuple, list)) or len(kernel_size) != 2:
        raise TypeError(f"{where}: kernel_size must be an int or a (KX, KY) pair of ints, got {kernel_size!r}")
    for k in kernel_size:
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k <= 0 or k % 2 == 0:
            raise ValueError(f"{where}: kernel_size must hold odd positive ints, got {tuple(kernel_size)!r}")
    return int(kernel_size[0]), int(kernel_size[1])


def _check_sigma(where: str, sigma: Any, kernel_size: tuple[int, int]) -> tuple[float, float]:
    if sigma is None:  # torchvision's default for the functional: 0.15 K + 0.35
        return kernel_size[0] * 0.15 + 0.35, kernel_size[1] * 0.15 + 0.35
    if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        sigma = (sigma, sigma)
    elif isinstance(sigma, (tuple, list)) and len(sigma) == 1:
        sigma = (sigma[0], sigma[0])
    if not isinstance(sigma, (tuple, list)) or len(sigma) != 2:
        raise TypeError(f"{where}: sigma must be a number or a (sigma_x, sigma_y) pair, got {sigma!r}")
    sx, sy = (check_float(where, "sigma", s, low=0.0, low_open=True) for s in sigma)
    return sx, sy


def _blur_axis(x: Any, kernel: np.ndarray, axis: int) -> Any:
    """Reflect-pad ``x`` along ``axis`` by (K-1)/2 and correlate with ``kernel`` (a K-tap weighted sum)."""
    xp = get_array_module(x)
    half = (len(kernel) - 1) // 2
    widths = [(0, 0)] * x.ndim
    widths[axis] = (half, half)
    padded = xp.pad(x, widths, mode="reflect")
    n = x.shape[axis]
    out = xp.zeros_like(x)
    for t, weight in enumerate(kernel):  # K shifted copies, each weighted by its tap
        out += float(weight) * xp.take(padded, xp.arange(t, t + n), axis=axis)
    return out


def gaussian_blur(img: Any, kernel_size: Any, sigma: Any = None) -> Any:
    """Blur with a normalized Gaussian kernel, reflect-padded so the size is kept.

    Args:
        img: a PIL image, a uint8 (H, W[, C]) array or a floating (..., C, H, W) array.
        kernel_size: KX or (KX, KY), odd positive ints, each at most 2 * (the image's width / height) - 1.
        sigma: sigma or (sigma_x, sigma_y), positive. Default: None (0.15 K + 0.35 per axis, as torchvision).

    Examples:
        >>> import numpy as np
        >>> img = np.zeros((5, 5), np.uint8); img[2, 2] = 255
        >>> gaussian_blur(img, 3, 1.0)[1:4, 1:4]
        array([[19, 32, 19],
               [32, 52, 32],
               [19, 32, 19]], dtype=uint8)
    """
    where = "gaussian_blur"
    kind = image_kind(where, img, allow_float=True, eight_bit=True)
    kx, ky = _check_kernel_size(where, kernel_size)
    sx, sy = _check_sigma(where, sigma, (kx, ky))
    H, W = image_size(img, kind)
    if kx // 2 >= W or ky // 2 >= H:
        raise ValueError(
            f"{where}: reflect padding by (KX // 2, KY // 2) = ({kx // 2}, {ky // 2}) needs an image wider and taller "
            f"than that, got kernel_size ({kx}, {ky}) for an image of H x W = {H} x {W}"
        )
    if kind == "pil":
        if img.mode not in ("L", "LA", "RGB", "RGBA"):
            raise ValueError(
                f"{where}: expected a PIL image of mode L, LA, RGB or RGBA, got mode {img.mode!r}; convert it first, "
                "e.g. img.convert('RGB')"
            )
        return pil_from_array_like(_blur_uint8(np.asarray(img), (kx, ky), (sx, sy)), img)
    if kind == "array":
        return _blur_uint8(img, (kx, ky), (sx, sy))
    x = _blur_axis(img, gaussian_kernel1d(ky, sy), img.ndim - 2)
    return _blur_axis(x, gaussian_kernel1d(kx, sx), img.ndim - 1)


def _blur_uint8(arr: np.ndarray, kernel_size: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Blur a uint8 (H, W[, C]) array in float32 and round back (round half to even, as torchvision)."""
    x = arr.astype(np.float32)
    x = _blur_axis(x, gaussian_kernel1d(kernel_size[1], sigma[1]).astype(np.float32), 0)
    x = _blur_axis(x, gaussian_kernel1d(kernel_size[0], sigma[0]).astype(np.float32), 1)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


class GaussianBlur(RandomTransform):
    """Blur with a Gaussian of standard deviation drawn uniformly from ``sigma`` (the same for both axes).

    Args:
        kernel_size: KX or (KX, KY), odd positive ints.
        sigma: a fixed positive sigma, or a (min, max) range to draw it from. Default: (0.1, 2.0).
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Examples:
        >>> import numpy as np
        >>> GaussianBlur(5, sigma=(0.1, 2.0))(np.zeros((32, 32, 3), np.uint8)).shape
        (32, 32, 3)
        >>> GaussianBlur(3)
        GaussianBlur(kernel_size=(3, 3), sigma=(0.1, 2.0))
    """

    def __init__(self, kernel_size: Any, sigma: Any = (0.1, 2.0), generator: Any = None) -> None:
        self.kernel_size = _check_kernel_size("GaussianBlur", kernel_size)
        if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
            s = check_float("GaussianBlur", "sigma", sigma, low=0.0, low_open=True)
            self.sigma = (s, s)
        elif isinstance(sigma, (tuple, list)):
            lo, hi = check_range("GaussianBlur", "sigma", sigma, low=0.0)
            if lo <= 0:
                raise ValueError(f"GaussianBlur: sigma must be positive: 0 < min <= max, got {sigma!r}")
            self.sigma = (lo, hi)
        else:
            raise TypeError(f"GaussianBlur: sigma must be a positive number or a (min, max) pair, got {sigma!r}")
        self._set_generator(generator)

    @staticmethod
    def get_params(sigma_min: float, sigma_max: float, generator: np.random.Generator | None = None) -> float:
        """sigma ~ U(sigma_min, sigma_max)."""
        return float(resolve_generator(generator).uniform(sigma_min, sigma_max))

    def __call__(self, img: Any) -> Any:
        image_kind("GaussianBlur", img, allow_float=True, eight_bit=True)
        sigma = self.get_params(self.sigma[0], self.sigma[1], self._rng())
        return gaussian_blur(img, self.kernel_size, (sigma, sigma))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}"
