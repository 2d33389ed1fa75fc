r"""Test-time augmentation: average the model's class probabilities over several views of each test image.

.. math:: p(y \mid x) \approx \frac1V \sum_{v=1}^{V} \mathrm{softmax}\big(f(t_v(x))\big)

ResNet's recipe is 10 crops (4 corners + centre, and the same of the mirror image); the cheapest is the image and
its mirror. Averaging probabilities (not logits) is what the papers report. airbench (arXiv 2404.00498) averages
*logits* over 6 views with weights (``views="flip_translate"``, ``average="logits"``): the image and its mirror
(1/4 each) and the image shifted one pixel down-right and one up-left (reflect padding), each with its mirror (1/8
each):

.. math:: z(x) = \sum_v w_v\, f(t_v(x)), \qquad \sum_v w_v = 1 ``FiveCrop``/``TenCrop`` make the
crops of one image (or of a batch of float arrays) for this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from minidl.backend import get_array_module
from minidl.grad_mode import no_grad
from minidl.nn._checks import check_array, check_int
from minidl.transforms._base import Transform, check_size, image_kind, image_size
from minidl.transforms.batch_geometric import translate
from minidl.transforms.geometric import center_crop, crop, hflip, vflip

__all__ = ["FiveCrop", "TenCrop", "five_crop", "ten_crop", "tta_predict", "tta_views"]

_NAMED = ("none", "flip", "flip_translate", "fivecrop", "tencrop")
# the weights of airbench's 6 views: the image and its mirror, then each of the two shifted images and its mirror
_FLIP_TRANSLATE_WEIGHTS = (0.25, 0.25, 0.125, 0.125, 0.125, 0.125)


def five_crop(img: Any, size: Any) -> tuple[Any, Any, Any, Any, Any]:
    """The four corner crops and the centre crop: (top-left, top-right, bottom-left, bottom-right, centre)."""
    kind = image_kind("five_crop", img, allow_float=True)
    OH, OW = check_size("five_crop", size)
    H, W = image_size(img, kind)
    if OH > H or OW > W:
        raise ValueError(f"five_crop: the crop size {(OH, OW)} is larger than the image size {(H, W)}")
    return (
        crop(img, 0, 0, OH, OW),
        crop(img, 0, W - OW, OH, OW),
        crop(img, H - OH, 0, OH, OW),
        crop(img, H - OH, W - OW, OH, OW),
        center_crop(img, (OH, OW)),
    )


def ten_crop(img: Any, size: Any, vertical_flip: bool = False) -> tuple[Any, ...]:
    """``five_crop`` of the image and of its mirror image (flipped left-right, or top-bottom if asked)."""
    flipped = vflip(img) if vertical_flip else hflip(img)
    return five_crop(img, size) + five_crop(flipped, size)


class FiveCrop(Transform):
    """The 4 corner crops and the centre crop, as a tuple (test-time augmentation; see ``tta_predict``).

    Examples:
        >>> import numpy as np
        >>> [c.shape for c in FiveCrop(2)(np.zeros((1, 3, 3), np.float32))][:2]
        [(1, 2, 2), (1, 2, 2)]
    """

    def __init__(self, size: Any) -> None:
        self.size = check_size("FiveCrop", size)

    def __call__(self, img: Any) -> tuple[Any, ...]:
        return five_crop(img, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class TenCrop(Transform):
    """``FiveCrop`` of the image and of its mirror image: a tuple of 10 crops (ResNet's test-time recipe).

    Args:
        size: int or (OH, OW).  vertical_flip: mirror top-bottom instead of left-right. Default: False.
    """

    def __init__(self, size: Any, vertical_flip: bool = False) -> None:
        self.size = check_size("TenCrop", size)
        self.vertical_flip = bool(vertical_flip)

    def __call__(self, img: Any) -> tuple[Any, ...]:
        return ten_crop(img, self.size, self.vertical_flip)

    def extra_repr(self) -> str:
        return f"size={self.size}, vertical_flip={self.vertical_flip}"


def tta_views(images: Any, views: str | Sequence[Callable[[Any], Any]] = "flip", crop_size: Any = None) -> list[Any]:
    """The list of augmented batches ``[t_1(x), ..., t_V(x)]`` that :func:`tta_predict` feeds the model."""
    if isinstance(views, str):
        if views not in _NAMED:
            raise ValueError(f"tta_predict: views must be one of {_NAMED} or a list of callables, got {views!r}")
        if views == "none":
            return [images]
        if views == "flip":
            return [images, hflip(images)]
        if views == "flip_translate":
            # output pixel (i, j) = input pixel (i - 1, j - 1), then (i + 1, j + 1): reflect-padded shifts of 1
            down_right, up_left = translate(images, -1, -1), translate(images, 1, 1)
            return [images, hflip(images), down_right, hflip(down_right), up_left, hflip(up_left)]
        if crop_size is None:
            raise ValueError(f"tta_predict: views={views!r} needs crop_size=(OH, OW)")
        size = check_size("tta_predict", crop_size, "crop_size")
        return list(five_crop(images, size) if views == "fivecrop" else ten_crop(images, size))
    views = list(views)
    if not views or not all(callable(v) for v in views):
        raise TypeError("tta_predict: views must be a name or a non-empty list of callables (batch -> batch)")
    return [v(images) for v in views]


def _softmax(z: Any) -> Any:
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tta_predict(
    model: Callable[[Any], Any],
    images: Any,
    views: str | Sequence[Callable[[Any], Any]] = "flip",
    *,
    crop_size: Any = None,
    batch_size: int | None = None,
    weights: Sequence[float] | None = None,
    average: str = "probs",
) -> Any:
    """Class probabilities (or logits) averaged over test-time views of a batch.

    The model is only called (``model(x)`` under ``minidl.no_grad()``): put it in evaluation mode first with
    ``model.eval()`` so that dropout is off and batch norm uses its running statistics.

    Args:
        model: a callable mapping (N, C, OH, OW) to logits (N, K).
        images: (N, C, H, W) float array of the current backend, preprocessed like the training data.
        views: ``"none"``, ``"flip"`` (image + mirror), ``"flip_translate"`` (airbench's 6 views, weighted
            1/4, 1/4, 1/8, 1/8, 1/8, 1/8 unless ``weights`` is given), ``"fivecrop"``, ``"tencrop"`` (need
            ``crop_size``), or a list of callables each mapping the batch to a batch. Default: ``"flip"``.
        crop_size: int or (OH, OW) for the crop views. Default: None.
        batch_size: run the model on this many images at a time. Default: None (the whole batch).
        weights: one non-negative weight per view, summing to 1. Default: None (equal weights, except
            ``"flip_translate"``).
        average: ``"probs"`` (softmax of each view, then the weighted mean) or ``"logits"`` (the weighted mean of
            the logits, as airbench). Default: ``"probs"``.

    Returns:
        (N, K) probabilities whose rows sum to 1, or (N, K) logits for ``average="logits"``.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
        >>> p = tta_predict(model, np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32))
        >>> p.shape, np.allclose(p.sum(axis=1), 1, atol=1e-6)
        ((2, 4), True)
        >>> tta_predict(model, np.zeros((2, 3, 8, 8), np.float32), "flip_translate", average="logits").shape
        (2, 4)
    """
    check_array("tta_predict", images, ndim=4, what="images")
    if average not in ("probs", "logits"):
        raise ValueError(f"tta_predict: average must be 'probs' or 'logits', got {average!r}")
    n = images.shape[0]
    step = n if batch_size is None else check_int("tta_predict", "batch_size", batch_size)
    xp = get_array_module(images)
    if weights is None and views == "flip_translate":
        weights = _FLIP_TRANSLATE_WEIGHTS
    chunks = []
    with no_grad():
        for start in range(0, n, max(step, 1)):
            batch = images[start : start + step]
            total = None
            batch_views = tta_views(batch, views, crop_size)
            view_weights = _check_weights(weights, len(batch_views))
            for view, weight in zip(batch_views, view_weights, strict=True):
                logits = model(view)
                if not hasattr(logits, "ndim") or logits.ndim != 2 or logits.shape[0] != len(batch):
                    raise ValueError(
                        f"tta_predict: the model must return logits (N, K) = ({len(batch)}, K), got "
                        f"{getattr(logits, 'shape', type(logits).__name__)}"
                    )
                term = weight * (_softmax(logits) if average == "probs" else logits)
                total = term if total is None else total + term
            chunks.append(total.astype(logits.dtype, copy=False))
    return chunks[0] if len(chunks) == 1 else xp.concatenate(chunks, axis=0)


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """One weight per view: equal ones by default; given ones must be >= 0 and sum to 1."""
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(
            f"tta_predict: weights must be {count} non-negative numbers (one per view) summing to 1, got {weights!r}"
        )
    return values
