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
from minidl.backend import get_array_module
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
    """Fill a conv weight (O, C, KH, KW) so the convolution is the identity on the first channels of each group."""
    data = _array(tensor)
    if data.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_ expects a 3-, 4- or 5-D conv weight, got shape {tuple(data.shape)}")
    out_per_group = data.shape[0] // groups
    values = np.zeros(data.shape)
    center = tuple(s // 2 for s in data.shape[2:])
    for g in range(groups):
        for d in range(min(out_per_group, data.shape[1])):
            values[(g * out_per_group + d, d) + center] = 1
    return _fill(tensor, values)


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
