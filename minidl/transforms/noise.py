r"""Transforms on (C, H, W) float arrays (after ToArray): Gaussian noise, random erasing (Cutout), PCA lighting.

* ``GaussianNoise``: :math:`y = x + \epsilon`, :math:`\epsilon \sim N(\mu, \sigma^2)` per pixel, clipped to [0, 1].
* ``RandomErasing`` (Zhong et al. 2017; Cutout, DeVries and Taylor 2017, is the case ``value=0``): with
  probability p, a box of area fraction s ~ U(scale) and aspect ratio r (log r ~ U(log ratio)),
  h = round(sqrt(s H W r)), w = round(sqrt(s H W / r)), is overwritten by ``value`` (or N(0, 1) noise).
* ``Lighting`` (AlexNet's "PCA colour augmentation", Krizhevsky et al. 2012): with the eigenvalues
  :math:`\lambda_k` and eigenvectors :math:`p_k` of the 3x3 covariance of RGB pixel values over the training set,
  every pixel of one image gets the same colour offset

  .. math:: \Delta = [p_1, p_2, p_3]\, [\alpha_1 \lambda_1, \alpha_2 \lambda_2, \alpha_3 \lambda_3]^T,
            \quad \alpha_k \sim N(0, \sigma_\alpha^2)

  so the image changes along the directions in which natural colours vary (illumination), not arbitrary ones.

Every random draw is made on the host from the transform's generator; arrays of another backend get the result
with ``xp.asarray``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._checks import check_float
from minidl.transforms._base import RandomTransform, check_probability, check_range, resolve_generator

__all__ = [
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "GaussianNoise",
    "Lighting",
    "RandomErasing",
    "erase",
    "lighting",
]

#: Eigenvalues and eigenvectors (columns) of the RGB covariance of ImageNet pixels in [0, 1]
#: (fb.resnet.torch's ``Lighting``, used with ``alphastd=0.1``).
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def _check_chw(where: str, x: Any) -> None:
    if not hasattr(x, "ndim") or not hasattr(x, "dtype") or not np.issubdtype(np.dtype(x.dtype), np.floating):
        got = type(x).__name__ + (f" of dtype {x.dtype}" if hasattr(x, "dtype") else "")
        raise TypeError(f"{where}: expected a floating (C, H, W) array (apply ToArray first), got {got}")
    if x.ndim < 3:
        raise ValueError(f"{where}: expected a (C, H, W) array, got shape {tuple(x.shape)}")


def erase(img: Any, i: int, j: int, h: int, w: int, v: Any, inplace: bool = False) -> Any:
    """``img[..., i:i+h, j:j+w] = v`` (``v`` a number, or an array broadcastable to (C, h, w))."""
    _check_chw("erase", img)
    if not inplace:
        img = img.copy()
    img[..., i : i + h, j : j + w] = v
    return img


def lighting(img: Any, alpha: Sequence[float], eigval: Any, eigvec: Any) -> Any:
    """Add ``eigvec @ (alpha * eigval)`` to every pixel of a (3, H, W) float image."""
    _check_chw("lighting", img)
    if img.shape[-3] != 3:
        raise ValueError(f"Lighting: expected 3 (RGB) channels in dimension -3, got shape {tuple(img.shape)}")
    rgb = np.asarray(eigvec, dtype=np.float64) @ (np.asarray(alpha, dtype=np.float64) * np.asarray(eigval))
    xp = get_array_module(img)
    return img + xp.asarray(rgb.astype(img.dtype).reshape(3, 1, 1))


class GaussianNoise(RandomTransform):
    r"""Add i.i.d. Gaussian noise to a float image: :math:`y = \mathrm{clip}(x + \epsilon, 0, 1)`.

    Args:
        mean: mean of the noise. Default: 0.  std: its standard deviation (torchvision's ``sigma``). Default: 0.1.
        clip: clip the result to [0, 1] (turn off after Normalize). Default: True.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Shape:
        - Input: (C, H, W) float (or any floating array).  - Output: the same.

    Examples:
        >>> import numpy as np
        >>> y = GaussianNoise(std=0.05)(np.full((3, 4, 4), 0.5, np.float32))
        >>> y.shape, y.dtype
        ((3, 4, 4), dtype('float32'))
    """

    def __init__(self, mean: float = 0.0, std: float = 0.1, clip: bool = True, generator: Any = None) -> None:
        self.mean = check_float("GaussianNoise", "mean", mean)
        self.std = check_float("GaussianNoise", "std", std, low=0.0)
        self.clip = bool(clip)
        self._set_generator(generator)

    def __call__(self, x: Any) -> Any:
        _check_chw("GaussianNoise", x)
        noise = self._rng().normal(self.mean, self.std, size=tuple(x.shape)).astype(x.dtype)
        xp = get_array_module(x)
        out = x + xp.asarray(noise)
        return xp.clip(out, 0.0, 1.0) if self.clip else out

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}, clip={self.clip}"


class RandomErasing(RandomTransform):
    """Erase a random box with probability ``p`` (Cutout when ``value=0``), torchvision's sampling.

    Up to 10 attempts draw s ~ U(scale), log r ~ U(log ratio), h = round(sqrt(s H W r)), w = round(sqrt(s H W / r))
    and keep the first box with h < H and w < W, at a uniform position; if none fits the image is returned as is.

    Args:
        p: probability of erasing. Default: 0.5.  scale: erased area fraction range. Default: (0.02, 0.33).
        ratio: aspect ratio (h / w) range. Default: (0.3, 3.3).
        value: a number, one number per channel, or ``"random"`` (N(0, 1) noise). Default: 0.
        inplace: write into the input. Default: False.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Shape:
        - Input: (C, H, W) float.  - Output: the same.

    Examples:
        >>> import numpy as np
        >>> y = RandomErasing(p=1.0)(np.ones((3, 32, 32), np.float32))
        >>> bool((y == 0).any()), y.shape
        (True, (3, 32, 32))
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: Sequence[float] = (0.02, 0.33),
        ratio: Sequence[float] = (0.3, 3.3),
        value: Any = 0,
        inplace: bool = False,
        generator: Any = None,
    ) -> None:
        self.p = check_probability("RandomErasing", p)
        self.scale = check_range("RandomErasing", "scale", scale, low=0.0, high=1.0)
        self.ratio = check_range("RandomErasing", "ratio", ratio, low=0.0)
        if self.ratio[0] <= 0:
            raise ValueError(f"RandomErasing: ratio must be positive, got {ratio!r}")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"RandomErasing: value must be a number, a tuple or 'random', got {value!r}")
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(value, (tuple, list)) and value and all(isinstance(v, numbers.Real) for v in value):
            value = tuple(float(v) for v in value)
        else:
            raise TypeError(f"RandomErasing: value must be a number, a tuple or 'random', got {value!r}")
        self.value = value
        self.inplace = bool(inplace)
        self._set_generator(generator)

    @staticmethod
    def get_params(
        img: Any,
        scale: Sequence[float],
        ratio: Sequence[float],
        value: Any = 0,
        generator: np.random.Generator | None = None,
    ) -> tuple[int, int, int, int, Any]:
        """``(i, j, h, w, v)``: the box and the values to write (``(0, 0, H, W, img)`` when nothing fits)."""
        rng = resolve_generator(generator)
        C, H, W = img.shape[-3], img.shape[-2], img.shape[-1]
        area = H * W
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            erase_area = area * rng.uniform(scale[0], scale[1])
            aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            h = int(round(math.sqrt(erase_area * aspect_ratio)))
            w = int(round(math.sqrt(erase_area / aspect_ratio)))
            if not (h < H and w < W):
                continue
            if value == "random":
                v: Any = rng.standard_normal((C, h, w))
            else:
                v = np.asarray(value, dtype=np.float64).reshape(-1, 1, 1)
            return int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w, v
        return 0, 0, H, W, img

    def __call__(self, x: Any) -> Any:
        _check_chw("RandomErasing", x)
        if isinstance(self.value, tuple) and len(self.value) not in (1, x.shape[-3]):
            raise ValueError(
                f"RandomErasing: value has {len(self.value)} entries but the input has "
                f"{x.shape[-3]} channels (shape {tuple(x.shape)})"
            )
        rng = self._rng()
        if rng.random() >= self.p:
            return x
        i, j, h, w, v = self.get_params(x, self.scale, self.ratio, self.value, rng)
        if v is x:
            return x
        xp = get_array_module(x)
        return erase(x, i, j, h, w, xp.asarray(v.astype(x.dtype)), self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value}, inplace={self.inplace}"


class Lighting(RandomTransform):
    """AlexNet's PCA colour noise on a (3, H, W) RGB float image: one offset ``eigvec @ (alpha * eigval)`` per
    image, ``alpha ~ N(0, alphastd^2)`` (3 values).

    Args:
        alphastd: standard deviation of alpha. Default: 0.1.
        eigval: the 3 eigenvalues of the RGB covariance. Default: ImageNet's (pixels in [0, 1]).
        eigvec: the 3x3 matrix of eigenvectors (columns). Default: ImageNet's.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Use :meth:`from_data` (or :func:`~minidl.transforms.fit_pca_lighting`) to fit eigval/eigvec to your data.

    Examples:
        >>> import numpy as np
        >>> Lighting(0.1)(np.full((3, 4, 4), 0.5, np.float32)).shape
        (3, 4, 4)
    """

    def __init__(self, alphastd: float = 0.1, eigval: Any = None, eigvec: Any = None, generator: Any = None) -> None:
        self.alphastd = check_float("Lighting", "alphastd", alphastd, low=0.0)
        eigval = IMAGENET_EIGVAL if eigval is None else np.asarray(eigval, dtype=np.float64)
        eigvec = IMAGENET_EIGVEC if eigvec is None else np.asarray(eigvec, dtype=np.float64)
        if eigval.shape != (3,) or eigvec.shape != (3, 3):
            raise ValueError(
                f"Lighting: eigval must have shape (3,) and eigvec (3, 3), got {eigval.shape} and {eigvec.shape}"
            )
        if not (np.all(np.isfinite(eigval)) and np.all(np.isfinite(eigvec))):
            raise ValueError("Lighting: eigval and eigvec must be finite")
        self.eigval, self.eigvec = eigval.copy(), eigvec.copy()
        self._set_generator(generator)

    @classmethod
    def from_data(cls, data: Any, alphastd: float = 0.1, generator: Any = None) -> Lighting:
        """A ``Lighting`` with the eigenvalues/vectors of the RGB pixel covariance of ``data`` (see
        :func:`~minidl.transforms.fit_pca_lighting`)."""
        from minidl.transforms.fitted import fit_pca_lighting

        eigval, eigvec = fit_pca_lighting(data)
        return cls(alphastd, eigval, eigvec, generator)

    def __call__(self, x: Any) -> Any:
        _check_chw("Lighting", x)
        if x.shape[-3] != 3:
            raise ValueError(f"Lighting: expected 3 (RGB) channels in dimension -3, got shape {tuple(x.shape)}")
        if self.alphastd == 0:
            return x
        alpha = self._rng().normal(0.0, self.alphastd, size=3)
        return lighting(x, alpha, self.eigval, self.eigvec)

    def extra_repr(self) -> str:
        return f"alphastd={self.alphastd}, eigval={np.round(self.eigval, 4).tolist()}"
