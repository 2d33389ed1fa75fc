r"""Transforms fitted to a dataset: featurewise standardization, ZCA whitening, PCA lighting statistics.

Call ``fit(data)`` once on the training images, then use the object as a transform (on one (C, H, W) float image
or a batch (N, C, H, W)). ``data`` is an (N, H, W, C) uint8 array (scaled to [0, 1], as ToArray would), an
(N, C, H, W) float array, or a list of images. Statistics are accumulated in float64, 1,024 images at a time.

* ``FeaturewiseStandardize`` (Keras' ``featurewise_center`` + ``featurewise_std_normalization``): per channel
  :math:`\mu_c = \mathrm{mean}_{n,i,j}\, x_{n,c,i,j}`, :math:`\sigma_c = \mathrm{std}_{n,i,j}\, x_{n,c,i,j}`
  (population std), :math:`y = (x - \mu_c) / \sigma_c`. On the fitting data every channel has mean 0, std 1.
* ``ZCAWhitening`` (Bell and Sejnowski 1997; Krizhevsky 2009 on CIFAR): with the images flattened to D = C H W
  features, :math:`\Sigma = \frac1N \sum_n (x_n - \mu)(x_n - \mu)^T = U \mathrm{diag}(S) U^T` and

  .. math:: W_{zca} = U\, \mathrm{diag}\big(1 / \sqrt{S + \epsilon}\big)\, U^T, \qquad y = W_{zca} (x - \mu)

  so the covariance of y is :math:`U \mathrm{diag}(S / (S + \epsilon)) U^T \approx I`. Unlike PCA whitening the
  rotation back by U keeps y looking like an image (edges enhanced). :math:`\epsilon` damps the noisy directions
  of tiny variance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from minidl.backend import get_array_module, to_numpy
from minidl.nn._checks import check_float
from minidl.transforms._base import Transform
from minidl.transforms.convert import Normalize, to_array

__all__ = ["FeaturewiseStandardize", "ZCAWhitening", "fit_pca_lighting"]

_CHUNK = 1024
_MAX_ZCA_FEATURES = 16384


def _chunks(where: str, data: Any) -> Iterator[np.ndarray]:
    """float64 (n, C, H, W) pieces of the data set."""
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError(f"{where}.fit: got an empty list of images")
        for start in range(0, len(data), _CHUNK):
            yield np.stack(
                [
                    to_array(img, np.float64) if not _is_float(img) else np.asarray(to_numpy(img), np.float64)
                    for img in data[start : start + _CHUNK]
                ]
            )
        return
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        raise TypeError(f"{where}.fit: expected an array of images or a list of images, got {type(data).__name__}")
    if data.ndim != 4:
        raise ValueError(
            f"{where}.fit: expected (N, H, W, C) uint8 or (N, C, H, W) float images, got shape {tuple(data.shape)}"
        )
    if len(data) == 0:
        raise ValueError(f"{where}.fit: got no images (shape {tuple(data.shape)})")
    if np.dtype(data.dtype) == np.uint8:
        for start in range(0, len(data), _CHUNK):
            yield np.asarray(to_numpy(data[start : start + _CHUNK]), np.float64).transpose(0, 3, 1, 2) / 255.0
    elif np.issubdtype(np.dtype(data.dtype), np.floating):
        for start in range(0, len(data), _CHUNK):
            yield np.asarray(to_numpy(data[start : start + _CHUNK]), np.float64)
    else:
        raise TypeError(
            f"{where}.fit: expected uint8 (N, H, W, C) or floating (N, C, H, W) images, got dtype {data.dtype}"
        )


def _is_float(img: Any) -> bool:
    return hasattr(img, "dtype") and np.issubdtype(np.dtype(img.dtype), np.floating)


def _per_channel_moments(where: str, data: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel mean and (population) variance, merging chunks with Chan et al.'s parallel formula."""
    count, mean, m2 = 0, None, None
    for chunk in _chunks(where, data):
        values = chunk.transpose(1, 0, 2, 3).reshape(chunk.shape[1], -1)  # (C, n H W)
        n_b, mean_b = values.shape[1], values.mean(axis=1)
        m2_b = ((values - mean_b[:, None]) ** 2).sum(axis=1)
        if mean is None:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        if mean_b.shape != mean.shape:
            raise ValueError(f"{where}.fit: the images do not all have {mean.shape[0]} channels")
        delta, total = mean_b - mean, count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * count * n_b / total
        count = total
    return mean, m2 / count, count


class FeaturewiseStandardize(Transform):
    """Per-channel standardization with the mean and std of a training set: ``fit(data)``, then transform.

    Args:
        eps: floor for the std of a constant channel. Default: 1e-6.

    Attributes:
        mean, std: (C,) float64 arrays after :meth:`fit`.

    Shape:
        - Input: (C, H, W) or (N, C, H, W) float.  - Output: the same.

    Examples:
        >>> import numpy as np
        >>> data = np.random.default_rng(0).random((10, 3, 4, 4))
        >>> y = FeaturewiseStandardize().fit(data)(data)
        >>> np.allclose(y.mean(axis=(0, 2, 3)), 0), np.allclose(y.std(axis=(0, 2, 3)), 1)
        (True, True)
    """

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = check_float("FeaturewiseStandardize", "eps", eps, low=0.0, low_open=True)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, data: Any) -> FeaturewiseStandardize:
        """Compute the per-channel mean and std of ``data``; returns self."""
        mean, var, _ = _per_channel_moments("FeaturewiseStandardize", data)
        self.mean, self.std = mean, np.maximum(np.sqrt(var), self.eps)
        return self

    def to_normalize(self) -> Normalize:
        """The equivalent ``Normalize(mean, std)`` (to put in a Compose pipeline or print)."""
        self._check_fitted()
        return Normalize(self.mean.tolist(), self.std.tolist())

    def _check_fitted(self) -> None:
        if self.mean is None:
            raise RuntimeError("FeaturewiseStandardize: call fit(training_images) before transforming")

    def __call__(self, x: Any) -> Any:
        self._check_fitted()
        return self.to_normalize()(x)

    def extra_repr(self) -> str:
        if self.mean is None:
            return "not fitted"
        return f"mean={np.round(self.mean, 4).tolist()}, std={np.round(self.std, 4).tolist()}"


class ZCAWhitening(Transform):
    r"""ZCA whitening of flattened images: ``y = W_zca (x - mu)`` with ``W_zca = U diag(1 / sqrt(S + eps)) U^T``.

    Args:
        eps: regularizer added to the eigenvalues (for [0, 1] pixels, 1e-2..1e-1 keeps edges, smaller amplifies
            noise). Default: 1e-2.

    Attributes:
        mean: (D,) feature means.  matrix: (D, D) whitening matrix W_zca (symmetric), D = C H W.

    Shape:
        - Input: (C, H, W) or (N, C, H, W) float, as fitted.  - Output: the same.

    Examples:
        >>> import numpy as np
        >>> data = np.random.default_rng(0).standard_normal((500, 1, 2, 2)) * [[[[1.0, 2.0], [3.0, 4.0]]]]
        >>> y = ZCAWhitening(eps=1e-6).fit(data)(data).reshape(500, 4)
        >>> np.allclose(np.cov(y.T, bias=True), np.eye(4), atol=1e-4)
        True
    """

    def __init__(self, eps: float = 1e-2) -> None:
        self.eps = check_float("ZCAWhitening", "eps", eps, low=0.0, low_open=True)
        self.mean: np.ndarray | None = None
        self.matrix: np.ndarray | None = None
        self.image_shape: tuple[int, ...] | None = None
        self._cache: dict[tuple[str, str], tuple[Any, Any]] = {}

    def fit(self, data: Any) -> ZCAWhitening:
        """Estimate the mean and the whitening matrix from ``data``; returns self."""
        first = next(_chunks("ZCAWhitening", data))
        shape = first.shape[1:]
        D = int(np.prod(shape))
        if D > _MAX_ZCA_FEATURES:
            raise ValueError(
                f"ZCAWhitening.fit: D = C*H*W = {D} features need a {D}x{D} covariance matrix; "
                f"at most {_MAX_ZCA_FEATURES} are supported (resize the images first)"
            )
        N, total = 0, np.zeros(D)
        for c in _chunks("ZCAWhitening", data):  # two passes: the mean, then the centred covariance
            if c.shape[1:] != shape:
                raise ValueError(f"ZCAWhitening.fit: the images do not all have shape {shape}")
            N, total = N + len(c), total + c.reshape(len(c), D).sum(axis=0)
        if N < 2:
            raise ValueError(f"ZCAWhitening.fit: needs at least 2 images, got {N}")
        mean = total / N
        cov = np.zeros((D, D))
        for c in _chunks("ZCAWhitening", data):
            centred = c.reshape(len(c), D) - mean
            cov += centred.T @ centred
        cov /= N
        S, U = np.linalg.eigh(cov)
        S = np.maximum(S, 0.0)  # round-off can make tiny eigenvalues negative
        self.mean, self.matrix = mean, (U / np.sqrt(S + self.eps)) @ U.T
        self.image_shape = tuple(int(s) for s in shape)
        self._cache = {}
        return self

    def __call__(self, x: Any) -> Any:
        if self.matrix is None:
            raise RuntimeError("ZCAWhitening: call fit(training_images) before transforming")
        if not _is_float(x):
            raise TypeError(
                f"ZCAWhitening: expected a floating (C, H, W) array (apply ToArray first), got {type(x).__name__}"
            )
        batched = x.ndim == 4
        if tuple(x.shape[1:] if batched else x.shape) != self.image_shape:
            raise ValueError(
                f"ZCAWhitening: fitted on images of shape {self.image_shape}, got input shape {tuple(x.shape)}"
            )
        xp = get_array_module(x)
        key = (xp.__name__, str(x.dtype))
        if key not in self._cache:
            self._cache[key] = (xp.asarray(self.mean.astype(x.dtype)), xp.asarray(self.matrix.astype(x.dtype)))
        mean, matrix = self._cache[key]
        flat = x.reshape(-1, mean.shape[0]) - mean
        return (flat @ matrix).reshape(x.shape)  # W_zca is symmetric: (W (x - mu))^T = (x - mu)^T W

    def __getstate__(self) -> dict[str, Any]:  # do not ship the per-backend copies to worker processes
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def extra_repr(self) -> str:
        return f"eps={self.eps}" + ("" if self.image_shape is not None else ", not fitted")


def fit_pca_lighting(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of the 3x3 covariance of the RGB pixel values of
    ``data`` (pixels scaled to [0, 1]), for :class:`~minidl.transforms.Lighting`.

    Examples:
        >>> import numpy as np
        >>> eigval, eigvec = fit_pca_lighting(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), np.uint8))
        >>> eigval.shape, eigvec.shape, bool(eigval[0] >= eigval[1] >= eigval[2])
        ((3,), (3, 3), True)
    """
    count, mean_sum, outer = 0, np.zeros(3), np.zeros((3, 3))
    for chunk in _chunks("fit_pca_lighting", data):  # two passes: the mean, then the centred covariance
        if chunk.shape[1] != 3:
            raise ValueError(f"fit_pca_lighting: expected RGB images (3 channels), got shape {chunk.shape}")
        mean_sum += chunk.sum(axis=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = mean_sum / count
    for chunk in _chunks("fit_pca_lighting", data):
        pixels = chunk.transpose(1, 0, 2, 3).reshape(3, -1) - mean[:, None]
        outer += pixels @ pixels.T
    eigval, eigvec = np.linalg.eigh(outer / count)
    order = np.argsort(eigval)[::-1]
    return np.maximum(eigval[order], 0.0), eigvec[:, order]
