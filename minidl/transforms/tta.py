r"""Test-time augmentation: average the model's class probabilities over several views of each test image.

.. math:: p(y \mid x) \approx \frac1V \sum_{v=1}^{V} \mathrm{softmax}\big(f(t_v(x))\big)

ResNet's recipe is 10 crops (4 corners + centre, and the same of the mirror image); the cheapest is the image and
its mirror. Averaging probabilities (not logits) is what the papers report. ``FiveCrop``/``TenCrop`` make the
crops of one image (or of a batch of float arrays) for this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from minidl.backend import get_array_module
from minidl.grad_mode import no_grad
from minidl.nn._checks import check_array, check_int
from minidl.transforms._base import Transform, check_size, image_kind, image_size
from minidl.transforms.geometric import center_crop, crop, hflip, vflip

__all__ = ["FiveCrop", "TenCrop", "five_crop", "ten_crop", "tta_predict", "tta_views"]

_NAMED = ("none", "flip", "fivecrop", "tencrop")


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
) -> Any:
    """Class probabilities averaged over test-time views of a batch.

    The model is only called (``model(x)`` under ``minidl.no_grad()``): put it in evaluation mode first with
    ``model.eval()`` so that dropout is off and batch norm uses its running statistics.

    Args:
        model: a callable mapping (N, C, OH, OW) to logits (N, K).
        images: (N, C, H, W) float array of the current backend, preprocessed like the training data.
        views: ``"none"``, ``"flip"`` (image + mirror), ``"fivecrop"``, ``"tencrop"`` (need ``crop_size``), or a
            list of callables each mapping the batch to a batch. Default: ``"flip"``.
        crop_size: int or (OH, OW) for the crop views. Default: None.
        batch_size: run the model on this many images at a time. Default: None (the whole batch).

    Returns:
        (N, K) probabilities; rows sum to 1.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
        >>> p = tta_predict(model, np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32))
        >>> p.shape, np.allclose(p.sum(axis=1), 1, atol=1e-6)
        ((2, 4), True)
    """
    check_array("tta_predict", images, ndim=4, what="images")
    n = images.shape[0]
    step = n if batch_size is None else check_int("tta_predict", "batch_size", batch_size)
    xp = get_array_module(images)
    chunks = []
    with no_grad():
        for start in range(0, n, max(step, 1)):
            batch = images[start : start + step]
            total = None
            batch_views = tta_views(batch, views, crop_size)
            for view in batch_views:
                logits = model(view)
                if not hasattr(logits, "ndim") or logits.ndim != 2 or logits.shape[0] != len(batch):
                    raise ValueError(
                        f"tta_predict: the model must return logits (N, K) = ({len(batch)}, K), got "
                        f"{getattr(logits, 'shape', type(logits).__name__)}"
                    )
                probs = _softmax(logits)
                total = probs if total is None else total + probs
            chunks.append(total / len(batch_views))
    return chunks[0] if len(chunks) == 1 else xp.concatenate(chunks, axis=0)
