"""Permute: reorder the dimensions of an array, e.g. NCHW to NHWC so that a LayerNorm or a Linear acts on channels.

ConvNeXt's block runs its depthwise convolution in (N, C, H, W), then ``Permute([0, 2, 3, 1])`` so that LayerNorm
and the two Linear layers see channels last, and ``Permute([0, 3, 1, 2])`` back (torchvision's
``torchvision.ops.Permute``). Its backward applies the inverse permutation: permuting moves no values, so each
input cell's gradient is the gradient of the one output cell it went to.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl.nn._checks import check_array, check_grad_output
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["Permute", "permute_backward", "permute_forward"]


class PermuteCache(NamedTuple):
    """The cache of :func:`permute_forward`."""

    inverse: tuple[int, ...]
    out_shape: tuple[int, ...]
    dtype: Any


def _check_dims(where: str, dims: Any) -> tuple[int, ...]:
    if isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
        raise TypeError(f"{where}: dims must be a sequence of ints (a permutation), got {dims!r}")
    dims = tuple(dims)
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"{where}: dims must hold ints, got {dims!r}")
    if sorted(d % len(dims) if -len(dims) <= d < len(dims) else d for d in dims) != list(range(len(dims))):
        raise ValueError(f"{where}: dims must be a permutation of 0..{len(dims) - 1}, got {dims!r}")
    return tuple(d % len(dims) for d in dims)


def permute_forward(x: Any, dims: Any) -> tuple[Any, Any]:
    r"""Reorder the dimensions of ``x``: output dimension ``i`` is input dimension ``dims[i]``. Returns
    ``(out, cache)``.

    .. math:: out_{i_0, \dots, i_{k-1}} = x_{j_0, \dots, j_{k-1}} \quad\text{with}\quad j_{dims[d]} = i_d

    Shape:
        - Input: any k-D shape :math:`(s_0, \dots, s_{k-1})`.  - Output: :math:`(s_{dims[0]}, \dots,
          s_{dims[k-1]})`.
    Backward:
        dx = dout permuted by the inverse permutation (``np.argsort(dims)``).
    Examples:
        >>> import numpy as np
        >>> permute_forward(np.zeros((2, 3, 4, 5)), (0, 2, 3, 1))[0].shape
        (2, 4, 5, 3)
    """
    where = "permute_forward"
    dims = _check_dims(where, dims)
    check_array(where, x, ndim=len(dims))
    out = x.transpose(dims)
    inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
    return out, PermuteCache(inverse, tuple(out.shape), x.dtype)


def permute_backward(dout: Any, cache: Any) -> Any:
    r"""Permute the gradient back with the inverse permutation.

    .. math:: dx_{j_0, \dots, j_{k-1}} = dout_{i_0, \dots, i_{k-1}} \quad\text{with}\quad j_{dims[d]} = i_d

    Shape:
        - dout: the output's shape.  - dx: the input's shape.

    Examples:
        >>> import numpy as np
        >>> out, cache = permute_forward(np.zeros((2, 3, 4)), (2, 0, 1))
        >>> permute_backward(np.ones((4, 2, 3)), cache).shape
        (2, 3, 4)
    """
    check_grad_output("permute_backward", dout, cache.out_shape, cache.dtype)
    return dout.transpose(cache.inverse)


class Permute(Module):
    r"""Reorders the dimensions of its input (torchvision's ``torchvision.ops.Permute``; ``x.permute(dims)``).

    .. math:: y_{i_0, \dots, i_{k-1}} = x_{j_0, \dots, j_{k-1}} \quad\text{with}\quad j_{dims[d]} = i_d

    Args:
        dims: the permutation: output dimension ``d`` is input dimension ``dims[d]``.
    Shape:
        - Input: :math:`(s_0, \dots, s_{k-1})`.  - Output: :math:`(s_{dims[0]}, \dots, s_{dims[k-1]})`.
    Backward:
        dx = dout permuted by the inverse permutation.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> to_nhwc = nn.Permute([0, 2, 3, 1])
        >>> y = to_nhwc(np.zeros((2, 3, 4, 5), np.float32))
        >>> y.shape, to_nhwc.backward(np.ones_like(y)).shape
        ((2, 4, 5, 3), (2, 3, 4, 5))
    """

    def __init__(self, dims: Any) -> None:
        super().__init__()
        self.dims = _check_dims("Permute", dims)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"

    def forward(self, x: Any) -> Any:
        out, cache = F.permute_forward(x, self.dims)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.permute_backward(dout, cache)
