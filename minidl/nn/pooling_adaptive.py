r"""Adaptive pooling: the output size is given and the windows follow (PyTorch's ``nn.AdaptiveAvgPool2d``,
``nn.AdaptiveMaxPool2d``; ``AdaptiveAvgPool2d(1)`` is global average pooling).

Bin i along H covers rows :math:`[\lfloor iH/OH \rfloor, \lceil (i+1)H/OH \rceil)`, likewise along W: bins may
overlap or differ in size by one. Average: the mean of each bin; backward spreads each output's gradient evenly over
its bin. Max: the maximum of each bin (ties: the first, NaN propagates); backward routes each gradient to it.

The loops are the NumPy backend's primitives (``minidl/backend/numpy_backend.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl.backend import get_backend
from minidl.nn._checks import check_array, check_grad_output, check_int
from minidl.nn.dispatch import F, kernel
from minidl.nn.pooling import _Pool2d

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool2d_forward",
]


def _adaptive_size(where: str, output_size: Any, H: int | None = None, W: int | None = None) -> tuple[Any, Any]:
    """``output_size`` (int, or pair whose entries may be None = keep the input size) as (OH, OW)."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        oh, ow = output_size
    else:
        oh = ow = output_size
    if oh is None and ow is None and not isinstance(output_size, (tuple, list)):
        raise TypeError(f"{where}: output_size must be an int or a pair of ints (entries may be None), got None")
    oh = H if oh is None else check_int(where, "output_size", oh)
    ow = W if ow is None else check_int(where, "output_size", ow)
    return oh, ow


def _adaptive_arguments(where: str, x: Any, output_size: Any) -> tuple[Any, int, int]:
    """Validate the arguments of an adaptive pool (``where`` names it); returns ``(backend, OH, OW)``. A bin needs at
    least one value, so H and W must not be 0 (PyTorch refuses them too)."""
    be = check_array(where, x, ndim=4)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{where}: expected an input with non-empty H and W, got shape {tuple(x.shape)}")
    OH, OW = _adaptive_size(where, output_size, x.shape[2], x.shape[3])
    return be, OH, OW


class AdaptivePoolCache(NamedTuple):
    """The cache of :func:`adaptive_avg_pool2d_forward` and :func:`adaptive_max_pool2d_forward`."""

    indices: Any  # (N, C, OH, OW) flat input positions h * W + w of the maxima (max pooling), else None
    x_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    dtype: Any  # of x


def _adaptive_avg_setup(x: Any, output_size: Any) -> tuple[Any, int, int]:
    """The setup of :func:`adaptive_avg_pool2d_forward` (what the seam runs before a kernel): ``(backend, OH, OW)``."""
    return _adaptive_arguments("adaptive_avg_pool2d_forward", x, output_size)


@kernel("adaptive_avg_pool2d", setup=_adaptive_avg_setup)
def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, Any]:
    r"""Mean over each adaptive bin so that the output is (OH, OW) whatever the input size. Returns ``(out, cache)``.

    With the bins :math:`R_i = [\lfloor iH/OH \rfloor, \lceil (i+1)H/OH \rceil)`, :math:`C_j` likewise along W:

    .. math:: out_{n,c,i,j} = \frac{1}{|R_i|\,|C_j|} \sum_{h \in R_i} \sum_{w \in C_j} x_{n,c,h,w}

    Args:
        x: (N, C, H, W).
        output_size: int or (OH, OW); an entry None keeps that input dimension.

    Shape:
        - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, h, w] = sum over the bins (i, j) containing (h, w) of dout[n, c, i, j] / :math:`(|R_i|\,|C_j|)`
        (:func:`adaptive_avg_pool2d_backward`).

    The Numba backend's kernel (``minidl/backend/_numba_pool.py``) computes the same sums, compiled, where the bins
    are blocks (global average pooling included).

    Examples:
        >>> import numpy as np
        >>> out, cache = adaptive_avg_pool2d_forward(np.arange(6.0).reshape(1, 1, 2, 3), (1, 2))
        >>> out.ravel()  # bins: columns [0, 2) and [1, 3)
        array([2., 3.])
    """
    be, OH, OW = _adaptive_avg_setup(x, output_size)
    out = be.adaptive_avg_pool2d_forward(x, OH, OW)
    return out, AdaptivePoolCache(None, tuple(x.shape), tuple(out.shape), x.dtype)


@kernel("adaptive_avg_pool2d")
def adaptive_avg_pool2d_backward(dout: Any, cache: Any) -> Any:
    r"""Gradient of :func:`adaptive_avg_pool2d_forward`: each bin's gradient spread evenly over its cells.

    .. math:: dx_{n,c,h,w} = \sum_{i:\, h \in R_i} \; \sum_{j:\, w \in C_j} \frac{dout_{n,c,i,j}}{|R_i|\,|C_j|}

    Shape:
        - dout: (N, C, OH, OW).  - dx: (N, C, H, W).

    Examples:
        >>> import numpy as np
        >>> out, cache = adaptive_avg_pool2d_forward(np.arange(6.0).reshape(1, 1, 2, 3), (1, 2))
        >>> adaptive_avg_pool2d_backward(np.ones_like(out), cache)[0, 0]  # column 1 is in both bins
        array([[0.25, 0.5 , 0.25],
               [0.25, 0.5 , 0.25]])
    """
    _, x_shape, out_shape, dtype = cache
    check_grad_output("adaptive_avg_pool2d_backward", dout, out_shape, dtype)
    return get_backend().adaptive_avg_pool2d_backward(dout, x_shape)


def adaptive_max_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, Any]:
    r"""Max over each adaptive bin. Returns ``(out, cache)``; ``cache.indices`` holds PyTorch's flat indices
    h * W + w of the maxima. With the bins :math:`R_i = [\lfloor iH/OH \rfloor, \lceil (i+1)H/OH \rceil)`,
    :math:`C_j` likewise along W (ties: the first maximum; NaN propagates):

    .. math:: out_{n,c,i,j} = \max_{h \in R_i,\; w \in C_j} x_{n,c,h,w}

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, argmax(i, j)] += dout[n, c, i, j].

    Examples:
        >>> import numpy as np
        >>> out, cache = adaptive_max_pool2d_forward(np.array([[[[1., 3., 2.]]]]), (1, 2))
        >>> out.ravel(), cache.indices.ravel()
        (array([3., 3.]), array([1, 1]))
    """
    be, OH, OW = _adaptive_arguments("adaptive_max_pool2d_forward", x, output_size)
    out, indices = be.adaptive_max_pool2d_forward(x, OH, OW)
    return out, AdaptivePoolCache(indices, tuple(x.shape), tuple(out.shape), x.dtype)


def adaptive_max_pool2d_backward(dout: Any, cache: Any) -> Any:
    r"""Gradient of :func:`adaptive_max_pool2d_forward`: each ``dout`` goes to its bin's maximum.

    .. math:: dx_{n,c,h,w} = \sum_{(i,j):\ \mathrm{argmax}_{n,c}(i,j) = (h,w)} dout_{n,c,i,j}

    Shape:
        - dout: (N, C, OH, OW).  - dx: (N, C, H, W).

    Examples:
        >>> import numpy as np
        >>> out, cache = adaptive_max_pool2d_forward(np.array([[[[1., 3., 2.]]]]), (1, 2))
        >>> adaptive_max_pool2d_backward(np.array([[[[1., 10.]]]]), cache).ravel()  # both bins' maximum is x[1]
        array([ 0., 11.,  0.])
    """
    indices, x_shape, out_shape, dtype = cache
    check_grad_output("adaptive_max_pool2d_backward", dout, out_shape, dtype)
    return get_backend().adaptive_max_pool2d_backward(dout, indices, x_shape)


# ---------------------------------------------------------------------------------------------------- modules
class AdaptiveAvgPool2d(_Pool2d):
    r"""Average pooling to a fixed output size (``AdaptiveAvgPool2d(1)`` is global average pooling).

    Bin i along H covers rows :math:`R_i = [\lfloor iH/OH \rfloor, \lceil (i+1)H/OH \rceil)`, likewise
    :math:`C_j` along W:

    .. math:: y_{n,c,i,j} = \frac{1}{|R_i|\,|C_j|} \sum_{h \in R_i} \sum_{w \in C_j} x_{n,c,h,w}

    Args:
        output_size: int or (OH, OW); an entry None keeps that input dimension.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, h, w] = sum over the bins (i, j) containing (h, w) of dout[n, c, i, j] / :math:`|R_i|\,|C_j|`.

    Examples:
        >>> import numpy as np
        >>> gap = AdaptiveAvgPool2d(1)
        >>> y = gap(np.ones((2, 3, 7, 5), np.float32))
        >>> y.shape
        (2, 3, 1, 1)
        >>> gap.backward(np.ones_like(y))[0, 0, 0]  # 1 / (7 * 5) to every cell
        array([0.02857143, 0.02857143, 0.02857143, 0.02857143, 0.02857143], dtype=float32)
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        _adaptive_size("AdaptiveAvgPool2d", output_size, 1, 1)  # validates
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: Any) -> Any:
        out, cache = F.adaptive_avg_pool2d_forward(x, self.output_size)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.adaptive_avg_pool2d_backward(dout, cache)


class AdaptiveMaxPool2d(_Pool2d):
    r"""Max pooling to a fixed output size, over PyTorch's adaptive bins :math:`R_i \times C_j` (see
    :class:`AdaptiveAvgPool2d`); ties go to the first maximum, NaN propagates.

    .. math:: y_{n,c,i,j} = \max_{h \in R_i,\; w \in C_j} x_{n,c,h,w}

    Args:
        output_size: int or (OH, OW); an entry None keeps that input dimension.
        return_indices: also return the flat input position h * W + w of each maximum. Default: False.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, argmax(i, j)] += dout[n, c, i, j]; zero elsewhere.

    Examples:
        >>> import numpy as np
        >>> pool = AdaptiveMaxPool2d((2, 1))
        >>> y = pool(np.arange(12, dtype=np.float32).reshape(1, 1, 4, 3))
        >>> y[0, 0]
        array([[ 5.],
               [11.]], dtype=float32)
        >>> pool.backward(np.ones_like(y))[0, 0]
        array([[0., 0., 0.],
               [0., 0., 1.],
               [0., 0., 0.],
               [0., 0., 1.]], dtype=float32)
    """

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        _adaptive_size("AdaptiveMaxPool2d", output_size, 1, 1)  # validates
        if not isinstance(return_indices, bool):
            raise TypeError(f"AdaptiveMaxPool2d: return_indices must be a bool, got {return_indices!r}")
        self.output_size = output_size
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: Any) -> Any:
        out, cache = F.adaptive_max_pool2d_forward(x, self.output_size)
        self.save_for_backward(cache)
        return (out, cache.indices) if self.return_indices else out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.adaptive_max_pool2d_backward(dout, cache)
