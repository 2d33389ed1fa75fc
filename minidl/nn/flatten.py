"""Flatten: reshape a range of dimensions into one, the bridge between convolutional features and a Linear head.

Its backward is the inverse reshape: flattening moves no values, so the gradient of each output cell is the
gradient of the one input cell it came from.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl.nn._checks import check_array, check_grad_output, check_int
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["Flatten", "flatten_backward", "flatten_forward"]


class FlattenCache(NamedTuple):
    """The cache of :func:`flatten_forward`."""

    x_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    dtype: Any


def flatten_forward(x: Any, start_dim: int = 1, end_dim: int = -1) -> tuple[Any, Any]:
    r"""Merge dimensions ``start_dim..end_dim`` into one. Returns ``(out, cache)``; the cache holds the shapes.

    A reshape: with the defaults on (N, C, H, W), in row-major order,

    .. math:: out_{n,\,(c H + h) W + w} = x_{n,c,h,w}

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C * H * W) with the defaults.
    Backward:
        dx = dout.reshape(x.shape).
    Examples:
        >>> import numpy as np
        >>> flatten_forward(np.zeros((2, 3, 4)))[0].shape
        (2, 12)
    """
    where = "flatten_forward"
    start_dim = check_int(where, "start_dim", start_dim, minimum=-(2**31))
    end_dim = check_int(where, "end_dim", end_dim, minimum=-(2**31))
    # dimension d exists when ndim >= d + 1 (d >= 0) or ndim >= -d (d < 0)
    check_array(where, x, min_ndim=max(d + 1 if d >= 0 else -d for d in (start_dim, end_dim)))
    nd = x.ndim
    s, e = start_dim % nd, end_dim % nd
    if s > e:
        raise ValueError(f"{where}: start_dim {start_dim} comes after end_dim {end_dim} for a {nd}-D input")
    merged = 1
    for d in x.shape[s : e + 1]:
        merged *= d
    out = x.reshape(tuple(x.shape[:s]) + (merged,) + tuple(x.shape[e + 1 :]))
    return out, FlattenCache(tuple(x.shape), tuple(out.shape), x.dtype)


def flatten_backward(dout: Any, cache: Any) -> Any:
    r"""Reshape the gradient back to the input's shape: ``dx = dout.reshape(x.shape)``.

    .. math:: dx_{n,c,h,w} = dout_{n,\,(c H + h) W + w}

    Shape:
        - dout: the output's shape, (N, C * H * W) with the defaults.  - dx: the input's, (N, C, H, W).

    Examples:
        >>> import numpy as np
        >>> out, cache = flatten_forward(np.zeros((2, 3, 4)))
        >>> flatten_backward(np.arange(24.0).reshape(2, 12), cache)[1, 2]
        array([20., 21., 22., 23.])
    """
    check_grad_output("flatten_backward", dout, cache.out_shape, cache.dtype)
    return dout.reshape(cache.x_shape)


class Flatten(Module):
    r"""Flattens dimensions ``start_dim`` to ``end_dim`` into one (PyTorch's defaults keep the batch dimension).

    .. math:: y_{n,\,(c H + h) W + w} = x_{n,c,h,w} \qquad \text{(the defaults on (N, C, H, W))}

    Args:
        start_dim: first dimension to merge. Default: 1.
        end_dim: last dimension to merge. Default: -1.
    Shape:
        - Input: (N, C, H, W).  - Output: (N, C * H * W) with the defaults.
    Backward:
        dx = dout.reshape(x.shape)

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> flat = nn.Flatten()
        >>> y = flat(np.zeros((2, 3, 4, 5), np.float32))
        >>> y.shape, flat.backward(np.ones_like(y)).shape
        ((2, 60), (2, 3, 4, 5))
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = check_int("Flatten", "start_dim", start_dim, minimum=-(2**31))
        self.end_dim = check_int("Flatten", "end_dim", end_dim, minimum=-(2**31))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x: Any) -> Any:
        out, cache = F.flatten_forward(x, self.start_dim, self.end_dim)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.flatten_backward(dout, cache)
