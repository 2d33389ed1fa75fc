r"""Weight initialization, in place, with PyTorch's names and formulas (``torch.nn.init``).

Fans: for a Linear weight (out_features, in_features), fan_in = in_features and fan_out = out_features; for a
conv weight (O, C/groups, KH, KW), fan_in = C/groups * KH * KW and fan_out = O * KH * KW (the receptive field).

* Xavier/Glorot (tanh, sigmoid): Var[W] = gain^2 * 2 / (fan_in + fan_out).
* Kaiming/He (ReLU family): Var[W] = gain^2 / fan, fan = fan_in ("fan_in" mode keeps forward activations' variance)
  or fan_out ("fan_out" keeps backward gradients' variance); gain = sqrt(2 / (1 + a^2)) for leaky_relu.
* A uniform U(-b, b) has variance b^2 / 3, so b = sqrt(3) * std.

Every function accepts an array or a :class:`~minidl.nn.Parameter`, writes into it, and returns it. Random draws
come from ``minidl.manual_seed``'s generator unless ``generator`` is given.

Examples:
    >>> import numpy as np
    >>> import minidl
    >>> from minidl.nn import init
    >>> _ = minidl.manual_seed(0)
    >>> w = init.kaiming_normal_(np.empty((256, 512), np.float32), nonlinearity="relu")
    >>> round(float(w.std()), 2)  # sqrt(2 / 512) = 0.0625
    0.06
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl._random import default_generator
from minidl.backend import get_array_module, to_numpy
from minidl.nn._checks import pair
from minidl.nn.module import Parameter

__all__ = [
    "calculate_gain",
    "constant_",
    "dirac_",
    "eye_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "patch_covariance",
    "patch_whitening_",
    "trunc_normal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_LINEAR_GAINS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def _array(tensor: Any) -> Any:
    data = tensor.data if isinstance(tensor, Parameter) else tensor
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        raise TypeError(f"init: expected an array or a Parameter, got {type(tensor).__name__}")
    return data


def _fill(tensor: Any, values: np.ndarray) -> Any:
    data = _array(tensor)
    xp = get_array_module(data)
    data[...] = values if xp is np else xp.asarray(values, dtype=data.dtype)
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table).

    linear/conv/sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + slope^2)) (slope 0.01 by default);
    selu: 3/4; gelu and silu are not in PyTorch's table and raise like it.
    """
    if nonlinearity in _LINEAR_GAINS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor: Any) -> tuple[int, int]:
    shape = _array(tensor).shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need an array with at least 2 dimensions, got shape {tuple(shape)}")
    receptive_field = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(tensor: Any, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _rng(generator: np.random.Generator | None) -> np.random.Generator:
    return default_generator() if generator is None else generator


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Fill with U(a, b)."""
    return _fill(tensor, _rng(generator).uniform(a, b, size=_array(tensor).shape))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Fill with N(mean, std^2)."""
    return _fill(tensor, _rng(generator).normal(mean, std, size=_array(tensor).shape))


def trunc_normal_(
    tensor: Any,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: np.random.Generator | None = None,
) -> Any:
    """Fill with N(mean, std^2) truncated to [a, b] (redrawing values outside)."""
    rng = _rng(generator)
    shape = _array(tensor).shape
    values = rng.normal(mean, std, size=shape)
    bad = (values < a) | (values > b)
    while bad.any():
        values[bad] = rng.normal(mean, std, size=int(bad.sum()))
        bad = (values < a) | (values > b)
    return _fill(tensor, values)


def constant_(tensor: Any, val: float) -> Any:
    """Fill with ``val``."""
    _array(tensor)[...] = val
    return tensor


def zeros_(tensor: Any) -> Any:
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor: Any) -> Any:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def eye_(tensor: Any) -> Any:
    """Fill a 2-D array with the identity matrix."""
    data = _array(tensor)
    if data.ndim != 2:
        raise ValueError(f"eye_ expects a 2-D array, got shape {tuple(data.shape)}")
    return _fill(tensor, np.eye(*data.shape))


def dirac_(tensor: Any, groups: int = 1) -> Any:
    """Fill a conv weight (O, C, KH, KW) with the Dirac delta: the convolution passes its input through unchanged.

    As ``torch.nn.init.dirac_``: the weight is zeroed, then in each of the ``groups`` blocks of O / groups output
    channels, output channel d of the block gets a 1 at the kernel's centre of input channel d, for
    d < min(O / groups, C). The remaining output channels (when O / groups > C) stay zero. Works for 3-, 4- and 5-D
    weights (Conv1d/2d/3d layouts).

    Examples:
        >>> import numpy as np
        >>> w = dirac_(np.empty((2, 2, 3, 3), np.float32))
        >>> w[0, 0], float(w[0, 1].sum()), float(w[1, 1, 1, 1])
        (array([[0., 0., 0.],
               [0., 1., 0.],
               [0., 0., 0.]], dtype=float32), 0.0, 1.0)
    """
    data = _array(tensor)
    if data.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_ expects a 3-, 4- or 5-D conv weight, got shape {tuple(data.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or data.shape[0] % groups != 0:
        raise ValueError(
            f"dirac_: groups must be a positive int that divides the {data.shape[0]} output channels, got {groups!r}"
        )
    out_per_group = data.shape[0] // groups
    values = np.zeros(data.shape)
    center = tuple(s // 2 for s in data.shape[2:])
    for g in range(groups):
        for d in range(min(out_per_group, data.shape[1])):
            values[(g * out_per_group + d, d) + center] = 1
    return _fill(tensor, values)


def patch_covariance(images: Any, kernel_size: Any) -> np.ndarray:
    r"""The (uncentred) covariance of all KH x KW patches of a batch of images, in float64.

    Every patch (stride 1, no padding) is flattened in the conv weight's (c, p, q) order to a vector
    :math:`v \in \mathbb{R}^{D}`, D = C KH KW, and

    .. math:: \Sigma = \frac{1}{P} \sum_{\text{patches}} v v^T \qquad (P = N \cdot OH \cdot OW \text{ patches})

    Accumulated 256 images at a time, so 50,000 CIFAR images need no more than a few tens of MB.

    Args:
        images: (N, C, H, W) float array (NumPy or CuPy), normalized as the network will see it.
        kernel_size: int or (KH, KW).
    Returns:
        (D, D) float64 NumPy array.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((8, 3, 6, 6))
        >>> patch_covariance(x, 2).shape
        (12, 12)
    """
    where = "patch_covariance"
    KH, KW = pair(where, "kernel_size", kernel_size)
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise TypeError(f"{where}: expected images as an (N, C, H, W) float array, got {type(images).__name__}")
    if images.ndim != 4 or not np.issubdtype(np.dtype(images.dtype), np.floating):
        raise ValueError(
            f"{where}: expected images as an (N, C, H, W) float array, got shape {tuple(images.shape)} and dtype "
            f"{images.dtype}"
        )
    N, C, H, W = images.shape
    if N == 0 or H < KH or W < KW:
        raise ValueError(f"{where}: need at least one image of at least {KH}x{KW} pixels, got shape {images.shape}")
    OH, OW = H - KH + 1, W - KW + 1
    D = C * KH * KW
    total = np.zeros((D, D))
    for start in range(0, N, 256):
        x = np.asarray(to_numpy(images[start : start + 256]), dtype=np.float64)
        # (n, C, KH*KW, OH, OW): patch element (c, p, q) of the patch at (i, j) is x[n, c, i + p, j + q]
        cols = np.stack([x[:, :, p : p + OH, q : q + OW] for p in range(KH) for q in range(KW)], axis=2)
        flat = cols.transpose(0, 3, 4, 1, 2).reshape(-1, D)
        total += flat.T @ flat
    return total / (N * OH * OW)


def patch_whitening_(tensor: Any, images: Any, eps: float = 5e-4) -> Any:
    r"""Set a KH x KW conv weight so that it whitens the images' patches (airbench's first layer, arXiv 2404.00498).

    With the patch covariance :math:`\Sigma = U \operatorname{diag}(\lambda) U^T` (:func:`patch_covariance`,
    eigenvalues in decreasing order, D = C KH KW of them), the D filters

    .. math:: w_k = \frac{u_k}{\sqrt{\lambda_k + \epsilon}}, \qquad k = 1, \dots, D

    (each reshaped to (C, KH, KW)) map every patch v to coordinates :math:`w_k^T v` whose covariance is
    :math:`\operatorname{diag}(\lambda_k / (\lambda_k + \epsilon)) \approx I`: decorrelated and of unit
    variance. With O = 2 D output channels the weight is :math:`(w_1, \dots, w_D, -w_1, \dots, -w_D)` (both signs,
    so that a GELU after it keeps the information of either sign); with O = D, only the first half. The
    eigenvectors' signs are those ``numpy.linalg.eigh`` returns. airbench freezes this weight
    (``requires_grad_(False)``) and trains only the bias.

    Args:
        tensor: conv weight (O, C, KH, KW) with O = C KH KW or 2 C KH KW, an array or Parameter.
        images: (N, C, H, W) float training images, normalized as the network sees them (airbench: the first 5,000).
        eps: added to the eigenvalues; damps the directions of tiny variance. Default: 5e-4.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((16, 3, 8, 8))
        >>> w = patch_whitening_(np.empty((24, 3, 2, 2)), x)
        >>> bool(np.allclose(w[:12], -w[12:]))
        True
    """
    where = "patch_whitening_"
    data = _array(tensor)
    eps = float(eps)
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"{where}: eps must be a finite number >= 0, got {eps}")
    if data.ndim != 4:
        raise ValueError(f"{where}: expected a conv weight (O, C, KH, KW), got shape {tuple(data.shape)}")
    O, C, KH, KW = data.shape
    D = C * KH * KW
    if O not in (D, 2 * D):
        raise ValueError(
            f"{where}: a {C}-channel {KH}x{KW} weight whitens with O = C*KH*KW = {D} or 2*{D} = {2 * D} output "
            f"channels, got O = {O}"
        )
    if getattr(images, "ndim", None) == 4 and images.shape[1] != C:
        raise ValueError(f"{where}: the weight expects {C} input channels but images have shape {tuple(images.shape)}")
    eigenvalues, eigenvectors = np.linalg.eigh(patch_covariance(images, (KH, KW)))
    order = np.argsort(eigenvalues)[::-1]  # largest variance first, as airbench
    eigenvalues, eigenvectors = np.clip(eigenvalues[order], 0.0, None), eigenvectors[:, order]
    filters = (eigenvectors / np.sqrt(eigenvalues + eps)).T.reshape(D, C, KH, KW)
    return _fill(tensor, filters if O == D else np.concatenate([filters, -filters]))


def orthogonal_(tensor: Any, gain: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Fill with a (semi-)orthogonal matrix (Saxe et al. 2013), rows flattened past the first dimension."""
    data = _array(tensor)
    if data.ndim < 2:
        raise ValueError(f"orthogonal_ expects at least 2 dimensions, got shape {tuple(data.shape)}")
    rows = data.shape[0]
    cols = data.size // rows
    flat = _rng(generator).normal(size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(data.shape))


def xavier_uniform_(tensor: Any, gain: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Any, gain: float = 1.0, generator: np.random.Generator | None = None) -> Any:
    """Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(
    tensor: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: np.random.Generator | None = None,
) -> Any:
    """He uniform: U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Any,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: np.random.Generator | None = None,
) -> Any:
    """He normal: N(0, std^2), std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)


def default_layer_init_(weight: Any, bias: Any | None) -> None:
    """PyTorch's default for Linear and Conv: W ~ kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    and the bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)
