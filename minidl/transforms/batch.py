r"""Batch-level augmentation that mixes pairs of training examples: Mixup and CutMix.

Both take a batch ``x`` (N, C, H, W) of the current backend and integer labels ``y`` (N,) (or soft labels (N, K)),
pair every example i with example j = perm[i] of a random permutation, and return the mixed batch and *soft*
targets (N, K) whose rows sum to 1; ``nn.CrossEntropyLoss`` accepts them as class probabilities.

* Mixup (Zhang et al. 2018): :math:`\lambda \sim \mathrm{Beta}(\alpha, \alpha)`,

  .. math:: \tilde x_i = \lambda x_i + (1 - \lambda) x_j, \qquad \tilde y_i = \lambda y_i + (1 - \lambda) y_j

* CutMix (Yun et al. 2019): a box of area about :math:`(1 - \lambda) H W` centred at a uniform pixel (clipped at
  the border) is cut from :math:`x_j` and pasted into :math:`x_i`; the label weight follows the *actual* pasted
  area, :math:`\lambda' = 1 - \frac{(x_2 - x_1)(y_2 - y_1)}{H W}`,
  :math:`\tilde y_i = \lambda' y_i + (1 - \lambda') y_j`.

The loss of a mixed batch is the cross-entropy with soft targets, so the backward pass needs nothing new:
:math:`\partial L / \partial z = \mathrm{softmax}(z) - \tilde y` (divided by N for the mean).
Apply them to the collated batch (after the DataLoader), during training only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.backend import to_numpy
from minidl.nn._checks import check_array, check_float, check_int
from minidl.transforms._base import RandomTransform

__all__ = ["CutMix", "Mixup"]


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
