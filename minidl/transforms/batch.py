r"""Batch-level augmentation that mixes training examples: Mixup, CutMix (pairs) and Mosaic (fours).

Both take a batch ``x`` (N, C, H, W) of the current backend and integer labels ``y`` (N,) (or soft labels (N, K)),
pair every example i with example j = perm[i] of a random permutation, and return the mixed batch and *soft*
targets (N, K) whose rows sum to 1; ``nn.CrossEntropyLoss`` accepts them as class probabilities.

* Mixup (Zhang et al. 2018): :math:`\lambda \sim \mathrm{Beta}(\alpha, \alpha)`,

  .. math:: \tilde x_i = \lambda x_i + (1 - \lambda) x_j, \qquad \tilde y_i = \lambda y_i + (1 - \lambda) y_j

* CutMix (Yun et al. 2019): a box of area about :math:`(1 - \lambda) H W` centred at a uniform pixel (clipped at
  the border) is cut from :math:`x_j` and pasted into :math:`x_i`; the label weight follows the *actual* pasted
  area, :math:`\lambda' = 1 - \frac{(x_2 - x_1)(y_2 - y_1)}{H W}`,
  :math:`\tilde y_i = \lambda' y_i + (1 - \lambda') y_j`.

* Mosaic (the four-image mosaic of YOLOv4, Bochkovskiy et al. 2020, kept at the input size): a centre
  (c_y, c_x) drawn uniformly splits the canvas into four quadrants; quadrant k keeps the pixels *at the same
  place* of its source image (example i for the top-left, three random partners for the others; no resizing),
  and the label weights are the quadrant areas,
  :math:`w = (c_y c_x,\ c_y (W - c_x),\ (H - c_y) c_x,\ (H - c_y)(W - c_x)) / (H W)`,
  :math:`\tilde y_i = \sum_k w_k\, y_{\pi_k(i)}`.

The loss of a mixed batch is the cross-entropy with soft targets, so the backward pass needs nothing new:
:math:`\partial L / \partial z = \mathrm{softmax}(z) - \tilde y` (divided by N for the mean).
Apply them to the collated batch (after the DataLoader), during training only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.backend import get_array_module, to_numpy
from minidl.nn._checks import check_array, check_float, check_int
from minidl.transforms._base import RandomTransform, check_range

__all__ = ["CutMix", "Mixup", "Mosaic"]


def _soft_targets(where: str, y: Any, n: int, num_classes: int | None, be: Any, dtype: Any) -> Any:
    """Labels as (N, K) probabilities on the backend ``be`` (one-hot for class indices)."""
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise TypeError(f"{where}: expected the labels as an array, got {type(y).__name__}")
    y_host = to_numpy(y)
    if y_host.ndim == 1 and np.issubdtype(y_host.dtype, np.integer):
        if num_classes is None:
            raise ValueError(f"{where}: integer labels need num_classes=... to build the soft targets")
        if y_host.shape[0] != n:
            raise ValueError(f"{where}: the batch has {n} examples but the labels have shape {y_host.shape}")
        if n and (y_host.min() < 0 or y_host.max() >= num_classes):
            raise ValueError(
                f"{where}: labels must lie in [0, {num_classes - 1}], got values from {y_host.min()} to {y_host.max()}"
            )
        onehot = np.zeros((n, num_classes), dtype=dtype)
        onehot[np.arange(n), y_host] = 1
        return be.asarray(onehot)
    if y_host.ndim == 2 and np.issubdtype(y_host.dtype, np.floating):
        if y_host.shape[0] != n or (num_classes is not None and y_host.shape[1] != num_classes):
            raise ValueError(f"{where}: expected soft labels of shape ({n}, {num_classes or 'K'}), got {y_host.shape}")
        return be.asarray(y_host.astype(dtype))
    raise ValueError(
        f"{where}: expected integer labels (N,) or probabilities (N, K), got shape {y_host.shape} and "
        f"dtype {y_host.dtype}"
    )


class _MixBase(RandomTransform):
    def __init__(self, alpha: float = 1.0, num_classes: int | None = None, generator: Any = None) -> None:
        where = type(self).__name__
        self.alpha = check_float(where, "alpha", alpha, low=0.0, low_open=True)
        self.num_classes = None if num_classes is None else check_int(where, "num_classes", num_classes, minimum=1)
        self._set_generator(generator)

    def get_params(self, n: int, generator: np.random.Generator | None = None) -> tuple[float, np.ndarray]:
        """``(lam, perm)``: lambda ~ Beta(alpha, alpha) and the partner j = perm[i] of every example."""
        rng = generator if generator is not None else self._rng()
        return float(rng.beta(self.alpha, self.alpha)), rng.permutation(n)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}"


class Mixup(_MixBase):
    r"""Mixup: convex combinations of pairs of examples and of their labels.

    Args:
        alpha: Beta(alpha, alpha) parameter of lambda (1: uniform; small: lambda near 0 or 1). Default: 1.0.
        num_classes: K, needed for integer labels. Default: None.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Shape:
        - Input: x (N, *) float, y (N,) int or (N, K) float.  - Output: x_mix (N, *), y_mix (N, K), rows sum to 1.

    Examples:
        >>> import numpy as np
        >>> x, y = np.ones((4, 3, 8, 8), np.float32), np.array([0, 1, 2, 1])
        >>> xm, ym = Mixup(alpha=0.2, num_classes=3)(x, y)
        >>> xm.shape, ym.shape, np.allclose(ym.sum(axis=1), 1)
        ((4, 3, 8, 8), (4, 3), True)
    """

    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]:
        be = check_array("Mixup", x, min_ndim=2)
        n = x.shape[0]
        targets = _soft_targets("Mixup", y, n, self.num_classes, be, x.dtype)
        lam, perm = self.get_params(n)
        index = be.asarray(perm)
        x_mix = lam * x + (1.0 - lam) * x[index]
        y_mix = lam * targets + (1.0 - lam) * targets[index]
        return x_mix.astype(x.dtype, copy=False), y_mix.astype(x.dtype, copy=False)


class CutMix(_MixBase):
    r"""CutMix: paste a random box of a partner image; labels weighted by the pasted area.

    Args:
        alpha: Beta(alpha, alpha) parameter of lambda. Default: 1.0.
        num_classes: K, needed for integer labels. Default: None.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Shape:
        - Input: x (N, C, H, W) float, y (N,) int or (N, K).  - Output: x_mix (N, C, H, W), y_mix (N, K).

    Examples:
        >>> import numpy as np
        >>> x, y = np.ones((4, 3, 8, 8), np.float32), np.array([0, 1, 2, 1])
        >>> xm, ym = CutMix(num_classes=3)(x, y)
        >>> xm.shape, ym.shape, np.allclose(ym.sum(axis=1), 1)
        ((4, 3, 8, 8), (4, 3), True)
    """

    @staticmethod
    def box(lam: float, H: int, W: int, generator: np.random.Generator) -> tuple[int, int, int, int]:
        """torchvision's box ``(x1, y1, x2, y2)``: half-sides int(0.5 sqrt(1 - lam) W), int(0.5 sqrt(1 - lam) H)
        around a uniform centre, clipped to the image."""
        r_x, r_y = int(generator.integers(0, W)), int(generator.integers(0, H))
        r = 0.5 * math.sqrt(1.0 - lam)
        r_w_half, r_h_half = int(r * W), int(r * H)
        return max(r_x - r_w_half, 0), max(r_y - r_h_half, 0), min(r_x + r_w_half, W), min(r_y + r_h_half, H)

    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]:
        be = check_array("CutMix", x, ndim=4)
        n, _, H, W = x.shape
        targets = _soft_targets("CutMix", y, n, self.num_classes, be, x.dtype)
        rng = self._rng()
        lam, perm = self.get_params(n, rng)
        x1, y1, x2, y2 = self.box(lam, H, W, rng)
        lam_adjusted = 1.0 - (x2 - x1) * (y2 - y1) / (W * H)
        index = be.asarray(perm)
        x_mix = x.copy()
        x_mix[:, :, y1:y2, x1:x2] = x[index][:, :, y1:y2, x1:x2]
        y_mix = lam_adjusted * targets + (1.0 - lam_adjusted) * targets[index]
        return x_mix, y_mix.astype(x.dtype, copy=False)


class Mosaic(RandomTransform):
    r"""Mosaic: four examples in one image, split at a random centre; labels weighted by each quadrant's area.

    Output quadrant k (0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right) of example i is the same region
    of example ``sources[k][i]``, with ``sources[0]`` the identity and ``sources[1:]`` three random permutations.

    Args:
        num_classes: K, needed for integer labels. Default: None.
        center_range: (min, max) fractions of H and W between which the centre (c_y, c_x) is drawn. Default:
            (0.25, 0.75).
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Shape:
        - Input: x (N, C, H, W) float, y (N,) int or (N, K).  - Output: x_mix (N, C, H, W), y_mix (N, K).

    Examples:
        >>> import numpy as np
        >>> x, y = np.ones((4, 3, 8, 8), np.float32), np.array([0, 1, 2, 1])
        >>> xm, ym = Mosaic(num_classes=3)(x, y)
        >>> xm.shape, ym.shape, np.allclose(ym.sum(axis=1), 1)
        ((4, 3, 8, 8), (4, 3), True)
    """

    def __init__(self, num_classes: int | None = None, center_range: Any = (0.25, 0.75), generator: Any = None) -> None:
        self.num_classes = None if num_classes is None else check_int("Mosaic", "num_classes", num_classes, minimum=1)
        self.center_range = check_range("Mosaic", "center_range", center_range, low=0.0, high=1.0)
        self._set_generator(generator)

    def get_params(
        self, n: int, H: int, W: int, generator: np.random.Generator | None = None
    ) -> tuple[int, int, np.ndarray]:
        """``(c_y, c_x, sources)``: the centre, c_y uniform in {floor(min H), ..., floor(max H)} (c_x likewise), and
        the (4, N) source indices of the quadrants (row 0 the identity, rows 1..3 random permutations)."""
        rng = generator if generator is not None else self._rng()
        lo, hi = self.center_range
        c_y = int(rng.integers(math.floor(lo * H), math.floor(hi * H) + 1))
        c_x = int(rng.integers(math.floor(lo * W), math.floor(hi * W) + 1))
        sources = np.stack([np.arange(n)] + [rng.permutation(n) for _ in range(3)])
        return c_y, c_x, sources

    @staticmethod
    def area_weights(c_y: int, c_x: int, H: int, W: int) -> np.ndarray:
        """The four quadrants' area fractions (top-left, top-right, bottom-left, bottom-right); they sum to 1."""
        return np.array([c_y * c_x, c_y * (W - c_x), (H - c_y) * c_x, (H - c_y) * (W - c_x)]) / (H * W)

    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]:
        be = check_array("Mosaic", x, ndim=4)
        n, _, H, W = x.shape
        targets = _soft_targets("Mosaic", y, n, self.num_classes, be, x.dtype)
        c_y, c_x, sources = self.get_params(n, H, W)
        rows = (slice(0, c_y), slice(0, c_y), slice(c_y, H), slice(c_y, H))
        cols = (slice(0, c_x), slice(c_x, W), slice(0, c_x), slice(c_x, W))
        weights = self.area_weights(c_y, c_x, H, W)
        x_mix = x.copy()
        y_mix = get_array_module(targets).zeros_like(targets)
        for k in range(4):
            index = be.asarray(sources[k])
            x_mix[:, :, rows[k], cols[k]] = x[index][:, :, rows[k], cols[k]]
            y_mix += float(weights[k]) * targets[index]
        return x_mix, y_mix.astype(x.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, center_range={self.center_range}"
