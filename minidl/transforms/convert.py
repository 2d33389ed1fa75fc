r"""Chaining transforms, converting images to arrays, and per-channel normalization.

``ToArray`` turns a decoded image (PIL or ``(H, W, C)`` uint8, values 0..255) into the ``(C, H, W)`` float32
array, values in [0, 1], that the layers take (torchvision's ``ToTensor``; minidl has no tensors):

.. math:: x_{c,i,j} = \mathrm{img}_{i,j,c} / 255

``Normalize`` then centres and scales each channel with statistics of the training set (3 numbers each for RGB):

.. math:: y_{c,i,j} = (x_{c,i,j} - \mu_c) / \sigma_c

A transform pipeline is a plain function of one sample; there is nothing to differentiate, so no backward here.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from minidl.backend import get_array_module, to_numpy
from minidl.transforms._base import RandomTransform, Transform, check_probability, image_kind

__all__ = [
    "Compose",
    "Lambda",
    "Normalize",
    "RandomApply",
    "RandomChoice",
    "ToArray",
    "ToPILImage",
    "normalize",
    "to_array",
    "to_pil_image",
]


def to_array(img: Any, dtype: Any = np.float32) -> np.ndarray:
    """A PIL image or an (H, W, C)/(H, W) uint8 array as a (C, H, W) floating array in [0, 1].

    8-bit images are divided by 255; PIL images of modes ``I``/``F`` (32-bit) keep their values, as in torchvision.
    """
    kind = image_kind("to_array", img)
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"to_array: dtype must be a floating dtype, got {np.dtype(dtype)}")
    arr = np.asarray(img)
    if kind == "pil" and img.mode == "P":
        arr = np.asarray(img.convert("RGBA" if "transparency" in img.info else "RGB"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint8:
        out = arr.astype(dtype) / np.asarray(255, dtype=dtype)
    else:  # bool ('1') becomes 0/1; 'I', 'I;16' and 'F' keep their values
        out = arr.astype(dtype)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def to_pil_image(x: Any, mode: str | None = None) -> Image.Image:
    """A (C, H, W) floating array in [0, 1] (clipped) or an (H, W, C) uint8 array as a PIL image."""
    if isinstance(x, Image.Image):
        return x if mode is None else x.convert(mode)
    kind = image_kind("to_pil_image", x, allow_float=True)
    if kind == "float":
        x = to_numpy(x)
        if x.ndim != 3:
            raise ValueError(f"to_pil_image: expected a (C, H, W) array, got shape {x.shape}")
        x = np.clip(np.rint(np.clip(x, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if x.ndim == 3 and x.shape[2] not in (3, 4):
        raise ValueError(f"to_pil_image: {x.shape[2]} channels have no PIL mode (1, 3 or 4 are supported)")
    img = Image.fromarray(np.ascontiguousarray(x))
    return img if mode is None else img.convert(mode)


def normalize(x: Any, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> Any:
    """``(x - mean[c]) / std[c]`` over the channel axis -3 of a floating (..., C, H, W) array (any backend)."""
    if not hasattr(x, "ndim") or not np.issubdtype(np.dtype(x.dtype), np.floating):
        raise TypeError(
            f"Normalize: expected a floating (C, H, W) array (apply ToArray first), got "
            f"{type(x).__name__}{'' if not hasattr(x, 'dtype') else ' of dtype ' + str(x.dtype)}"
        )
    if x.ndim < 3:
        raise ValueError(f"Normalize: expected a (C, H, W) or (N, C, H, W) array, got shape {tuple(x.shape)}")
    channels = x.shape[-3]
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(
            f"Normalize: mean and std need 1 or {channels} values for an input with {channels} channels "
            f"(shape {tuple(x.shape)}), got {len(mean)} and {len(std)}"
        )
    xp = get_array_module(x)
    m = xp.asarray(np.asarray(mean, dtype=np.float64), dtype=x.dtype).reshape(-1, 1, 1)
    s = xp.asarray(np.asarray(std, dtype=np.float64), dtype=x.dtype).reshape(-1, 1, 1)
    if inplace:
        x -= m
        x /= s
        return x
    return (x - m) / s


class Compose(Transform):
    """Apply transforms one after another.

    Args:
        transforms: a list of callables, each taking what the previous one returned.

    Examples:
        >>> import numpy as np
        >>> from minidl import transforms as T
        >>> t = T.Compose([T.ToArray(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
        >>> t(np.full((4, 4, 3), 255, np.uint8))[:, 0, 0]
        array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        if not isinstance(transforms, (list, tuple)):
            raise TypeError(f"Compose: expected a list of transforms, got {type(transforms).__name__}")
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"Compose: transform {i} is a {type(t).__name__}, which is not callable")
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("] + [f"    {t}" for t in self.transforms] + [")"]
        return "\n".join(lines)


class ToArray(Transform):
    """PIL image or (H, W, C) uint8 array -> (C, H, W) float array in [0, 1] (torchvision's ``ToTensor``).

    Args:
        dtype: the output dtype. Default: ``np.float32``.

    Shape:
        - Input: (H, W, C), (H, W) or a PIL image of size (W, H).  - Output: (C, H, W), C = 1 for grayscale.

    Examples:
        >>> import numpy as np
        >>> x = ToArray()(np.zeros((32, 24, 3), np.uint8))
        >>> x.shape, x.dtype
        ((3, 32, 24), dtype('float32'))
    """

    def __init__(self, dtype: Any = np.float32) -> None:
        if not np.issubdtype(np.dtype(dtype), np.floating):
            raise TypeError(f"ToArray: dtype must be a floating dtype, got {np.dtype(dtype)}")
        self.dtype = np.dtype(dtype)

    def __call__(self, img: Any) -> np.ndarray:
        return to_array(img, self.dtype)

    def extra_repr(self) -> str:
        return "" if self.dtype == np.float32 else f"dtype={self.dtype.name}"


class ToPILImage(Transform):
    """(C, H, W) float array in [0, 1] or (H, W, C) uint8 array -> PIL image (for viewing and saving).

    Args:
        mode: convert the result to this PIL mode. Default: None (L, RGB or RGBA by the channel count).
    """

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode

    def __call__(self, x: Any) -> Image.Image:
        return to_pil_image(x, self.mode)

    def extra_repr(self) -> str:
        return "" if self.mode is None else f"mode={self.mode}"


class Normalize(Transform):
    r"""Per-channel standardization of a (C, H, W) float array: ``(x - mean[c]) / std[c]``.

    Args:
        mean: one value per channel (or one for all).  std: one positive value per channel (or one for all).
        inplace: write into the input. Default: False.

    Shape:
        - Input: (C, H, W) or (N, C, H, W), any backend.  - Output: the same.

    Examples:
        >>> import numpy as np
        >>> Normalize([0.5], [0.25])(np.ones((1, 2, 2), np.float32))[0, 0, 0]
        np.float32(2.0)
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        mean = [mean] if isinstance(mean, numbers.Real) else list(mean)
        std = [std] if isinstance(std, numbers.Real) else list(std)
        if not mean or not std:
            raise ValueError("Normalize: mean and std must not be empty")
        for name, values in (("mean", mean), ("std", std)):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                    raise ValueError(f"Normalize: {name} must hold finite numbers, got {values!r}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"Normalize: every std must be > 0 (it divides), got {std!r}")
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise ValueError(f"Normalize: mean has {len(mean)} values but std has {len(std)}")
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.inplace = bool(inplace)

    def __call__(self, x: Any) -> Any:
        return normalize(x, self.mean, self.std, self.inplace)

    def extra_repr(self) -> str:
        return f"mean={list(self.mean)}, std={list(self.std)}"


class Lambda(Transform):
    """Wrap a function of one sample as a transform (note: lambdas cannot be sent to DataLoader worker processes;
    use a named function)."""

    def __init__(self, lambd: Callable[[Any], Any]) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: expected a callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img: Any) -> Any:
        return self.lambd(img)


class RandomApply(RandomTransform):
    """Apply the list of transforms, in order, with probability ``p`` (all or none).

    Args:
        transforms: a list of callables.  p: probability. Default: 0.5.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator).
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]], p: float = 0.5, generator: Any = None) -> None:
        self.transforms = Compose(transforms).transforms
        self.p = check_probability("RandomApply", p)
        self._set_generator(generator)

    def __call__(self, img: Any) -> Any:
        if self._rng().random() >= self.p:
            return img
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(", f"    p={self.p}"] + [f"    {t}" for t in self.transforms] + [")"]
        return "\n".join(lines)


class RandomChoice(RandomTransform):
    """Apply one transform picked at random from a list (e.g. ``RandomChoice([Mixup(...), CutMix(...)])``).

    Args:
        transforms: a list of callables.  p: their probabilities. Default: None (equal).
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator).
    """

    def __init__(
        self, transforms: Sequence[Callable[..., Any]], p: Sequence[float] | None = None, generator: Any = None
    ) -> None:
        self.transforms = Compose(transforms).transforms
        if not self.transforms:
            raise ValueError("RandomChoice: needs at least one transform")
        if p is not None:
            if len(p) != len(self.transforms):
                raise ValueError(f"RandomChoice: {len(self.transforms)} transforms but {len(p)} probabilities")
            if any(float(v) < 0 for v in p) or sum(p) <= 0:
                raise ValueError(f"RandomChoice: probabilities must be >= 0 with a positive sum, got {list(p)}")
            p = [float(v) / sum(p) for v in p]
        self.p = p
        self._set_generator(generator)

    def __call__(self, *args: Any) -> Any:
        i = int(self._rng().choice(len(self.transforms), p=self.p))
        return self.transforms[i](*args)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("] + [f"    {t}" for t in self.transforms] + [f"    p={self.p}", ")"]
        return "\n".join(lines)
