r"""2-D pooling: max, average, and their adaptive forms (PyTorch's ``nn.MaxPool2d``, ``nn.AvgPool2d``, ...).

Each output pixel summarizes one window of its input channel; channels never mix.

* Max: :math:`y_{n,c,i,j} = \max_{p,q} x^{pad}_{n,c,\,i S_H + p D_H,\,j S_W + q D_W}` with -inf padding.
  Backward: the gradient flows only to the position of each window's maximum (ties: the first one in scan order,
  as in PyTorch): :math:`dx_{n,c,h,w} = \sum_{(i,j):\ \mathrm{argmax}(i,j) = (h,w)} dout_{n,c,i,j}` (a sum: windows
  overlap when the stride is smaller than the kernel).
* Average: :math:`y_{n,c,i,j} = \frac{1}{d_{ij}} \sum_{p,q} x^{pad}_{n,c,\,i S_H + p,\,j S_W + q}` with zero padding,
  :math:`d_{ij}` = the window's cells inside the padded input (``count_include_pad=True``), inside the input only
  (False), or ``divisor_override``. Backward: every cell of the window gets :math:`dout_{n,c,i,j} / d_{ij}`.
* Adaptive (:mod:`minidl.nn.pooling_adaptive`): the output size (OH, OW) is given and the windows follow: bin i
  along H is :math:`[\lfloor iH/OH \rfloor, \lceil (i+1)H/OH \rceil)`. Bins may overlap or differ in size by one.

Output size (max and average; average has D = 1):
:math:`OH = \lfloor (H + 2 P_H - D_H (K_H - 1) - 1) / S_H \rfloor + 1` (⌈·⌉ in ``ceil_mode``, where a last window
that would start in the bottom padding is dropped), likewise OW.

The loops over kernel offsets are the NumPy backend's primitives (``minidl/backend/numpy_backend.py``). Max and
average pooling are marked ``@kernel``: the Numba backend replaces each pair with compiled loops, tested against it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl.backend import get_array_module, get_backend
from minidl.nn._checks import check_array, check_grad_output, check_int, pair
from minidl.nn.dispatch import F, KernelCache, kernel
from minidl.nn.module import Module

__all__ = [
    "AvgPool2d",
    "MaxPool2d",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "pool_output_size",
]


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length along one axis (see the module docstring).

    Examples:
        >>> pool_output_size(5, 2, 2, 0, 1, False), pool_output_size(5, 2, 2, 0, 1, True)
        (2, 3)
    """
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - span + ((stride - 1) if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # the last window must start inside the input/left pad
        out -= 1
    return out


def _check_window(where: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any, **flags: Any) -> tuple:
    """Validated (KH, KW, SH, SW, PH, PW, DH, DW) (stride None = kernel_size); ``flags`` must be bools."""
    KH, KW = pair(where, "kernel_size", kernel_size)
    SH, SW = (KH, KW) if stride is None else pair(where, "stride", stride)
    PH, PW = pair(where, "padding", padding, minimum=0)
    DH, DW = pair(where, "dilation", dilation)
    if PH > KH // 2 or PW > KW // 2:
        raise ValueError(
            f"{where}: padding should be at most half of the kernel size, got padding {(PH, PW)} for kernel_size "
            f"{(KH, KW)}"
        )
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{where}: {flag} must be a bool, got {value!r}")
    return KH, KW, SH, SW, PH, PW, DH, DW


def _pool_geometry(
    where: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any
) -> tuple[tuple[int, ...], int, int]:
    """Validated (KH, KW, SH, SW, PH, PW, DH, DW) and the output size (OH, OW)."""
    KH, KW, SH, SW, PH, PW, DH, DW = _check_window(where, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)
    H, W = x.shape[2], x.shape[3]
    OH = pool_output_size(H, KH, SH, PH, DH, ceil_mode)
    OW = pool_output_size(W, KW, SW, PW, DW, ceil_mode)
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{where}: the input {H}x{W} is too small for kernel_size {(KH, KW)} with padding {(PH, PW)} and "
            f"dilation {(DH, DW)}: the output would be {OH}x{OW}"
        )
    return (KH, KW, SH, SW, PH, PW, DH, DW), OH, OW


# ---------------------------------------------------------------------------------------------------- max pool
class PoolGeometry(NamedTuple):
    """A pooling window's sizes and the output size, as the setup of the max/avg pooling pairs derives them."""

    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    DH: int
    DW: int
    OH: int
    OW: int


class MaxPool2dCache(NamedTuple):
    """The cache of :func:`max_pool2d_forward`."""

    argmax: Any  # (N, C, OH, OW) int32: the kernel offset kh * KW + kw of each window's maximum
    x_shape: tuple[int, ...]
    geometry: PoolGeometry
    dtype: Any  # of x


def _max_pool2d_setup(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> PoolGeometry:
    """Check :func:`max_pool2d_forward`'s arguments; return the geometry."""
    check_array("max_pool2d_forward", x, ndim=4)
    window, OH, OW = _pool_geometry("max_pool2d_forward", x, kernel_size, stride, padding, dilation, ceil_mode)
    return PoolGeometry(*window, OH, OW)


@kernel("max_pool2d", setup=_max_pool2d_setup)
def max_pool2d_forward(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> tuple[Any, Any]:
    r"""Max over each window. Returns ``(out, cache)``; the cache holds each window's argmax.

    .. math:: out_{n,c,i,j} = \max_{p < K_H,\, q < K_W} x^{pad}_{n,c,\,i S_H + p D_H,\; j S_W + q D_W}
        \quad (x^{pad}: \text{-inf padding})

    Args:
        x: (N, C, H, W).
        kernel_size: int or (KH, KW).
        stride: int or (SH, SW). Default: None (= kernel_size).
        padding: int or (PH, PW), implicit -inf, at most half the kernel. Default: 0.
        dilation: int or (DH, DW). Default: 1.
        ceil_mode: round the output size up instead of down. Default: False.

    Shape:
        - Output: (N, C, OH, OW), OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1 (ceil in ``ceil_mode``).
    Backward:
        dx[n, c, argmax(i, j)] += dout[n, c, i, j] (see :func:`max_pool2d_backward`).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1., 5., 2., 0.], [3., 4., 8., 7.]]).reshape(1, 1, 2, 4)
        >>> out, cache = max_pool2d_forward(x, 2)
        >>> out.ravel()
        array([5., 8.])
        >>> max_pool2d_backward(np.ones_like(out), cache)[0, 0]
        array([[0., 1., 0., 0.],
               [0., 0., 1., 0.]])
    """
    g = _max_pool2d_setup(x, kernel_size, stride, padding, dilation, ceil_mode)
    out, argmax = get_backend().max_pool2d_forward(x, *g)
    return out, MaxPool2dCache(argmax, tuple(x.shape), g, x.dtype)


@kernel("max_pool2d")
def max_pool2d_backward(dout: Any, cache: Any) -> Any:
    r"""Gradient of :func:`max_pool2d_forward`: each ``dout`` goes to its window's maximum, the rest get 0.

    .. math:: dx_{n,c,h,w} = \sum_{(i,j):\ \mathrm{argmax}_{n,c}(i,j) = (h,w)} dout_{n,c,i,j}

    (a sum: overlapping windows can share a maximum; ties go to the first maximum in scan order, as in PyTorch).

    Shape:
        - dout: (N, C, OH, OW).  - dx: (N, C, H, W).

    Examples:
        >>> import numpy as np
        >>> x = np.array([[1., 2., 0.], [0., 9., 3.], [4., 0., 5.]]).reshape(1, 1, 3, 3)
        >>> out, cache = max_pool2d_forward(x, 2, stride=1)
        >>> out[0, 0]
        array([[9., 9.],
               [9., 9.]])
        >>> max_pool2d_backward(np.ones_like(out), cache)[0, 0]
        array([[0., 0., 0.],
               [0., 4., 0.],
               [0., 0., 0.]])
    """
    argmax, x_shape, g, dtype = cache
    check_grad_output("max_pool2d_backward", dout, argmax.shape, dtype)
    return get_backend().max_pool2d_backward(dout, argmax, x_shape, *g[:8])


def _max_pool_indices(cache: Any) -> Any:
    """PyTorch's ``return_indices``: the flat position h * W + w in the (unpadded) input of each maximum (from a
    :class:`MaxPool2dCache`, which the Numba backend's kernel keeps too)."""
    if isinstance(cache, KernelCache):
        cache = cache.cache
    argmax, (N, C, H, W), (KH, KW, SH, SW, PH, PW, DH, DW, _, _) = cache[:3]
    xp = get_array_module(argmax)
    OH, OW = argmax.shape[2], argmax.shape[3]
    h = (xp.arange(OH) * SH - PH)[:, None] + (argmax // KW) * DH
    w = (xp.arange(OW) * SW - PW)[None, :] + (argmax % KW) * DW
    return (h * W + w).astype(xp.int64)


# ---------------------------------------------------------------------------------------------------- average pool
class AvgPool2dCache(NamedTuple):
    """The cache of :func:`avg_pool2d_forward`."""

    x_shape: tuple[int, ...]
    geometry: PoolGeometry  # (dilation 1)
    count_include_pad: int
    divisor_override: int  # 0 for none
    dtype: Any  # of x


def _avg_pool2d_setup(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[PoolGeometry, int]:
    """Check :func:`avg_pool2d_forward`'s arguments; return the geometry and the divisor override (0 for none)."""
    where = "avg_pool2d_forward"
    check_array(where, x, ndim=4)
    window, OH, OW = _pool_geometry(where, x, kernel_size, stride, padding, 1, ceil_mode)
    if not isinstance(count_include_pad, bool):
        raise TypeError(f"{where}: count_include_pad must be a bool, got {count_include_pad!r}")
    divisor = 0 if divisor_override is None else check_int(where, "divisor_override", divisor_override)
    return PoolGeometry(*window, OH, OW), divisor


@kernel("avg_pool2d", setup=_avg_pool2d_setup)
def avg_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[Any, Any]:
    r"""Mean over each window. Returns ``(out, cache)``.

    .. math:: out_{n,c,i,j} = \frac{1}{d_{ij}} \sum_{p < K_H,\, q < K_W} x^{pad}_{n,c,\,i S_H + p,\; j S_W + q}

    with zero padding and :math:`d_{ij}` the number of window cells inside the padded input
    (``count_include_pad``), inside the input only (not ``count_include_pad``), or ``divisor_override``.

    Args:
        x: (N, C, H, W).
        kernel_size: int or (KH, KW).
        stride: int or (SH, SW). Default: None (= kernel_size).
        padding: int or (PH, PW), implicit zeros, at most half the kernel. Default: 0.
        ceil_mode: round the output size up instead of down. Default: False.
        count_include_pad: count the zero padding in the divisor. Default: True.
        divisor_override: divide every window's sum by this instead. Default: None.

    Shape:
        - Output: (N, C, OH, OW), OH = floor((H + 2 PH - KH) / SH) + 1 (ceil in ``ceil_mode``).
    Backward:
        dx[n, c, h, w] = sum over the windows (i, j) containing (h, w) of dout[n, c, i, j] / d_ij.

    Examples:
        >>> import numpy as np
        >>> out, cache = avg_pool2d_forward(np.arange(8.0).reshape(1, 1, 2, 4), 2)
        >>> out.ravel()
        array([2.5, 4.5])
        >>> avg_pool2d_backward(np.ones_like(out), cache)[0, 0]
        array([[0.25, 0.25, 0.25, 0.25],
               [0.25, 0.25, 0.25, 0.25]])
    """
    g, divisor = _avg_pool2d_setup(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    out = get_backend().avg_pool2d_forward(x, *g[:6], g.OH, g.OW, int(count_include_pad), divisor)
    return out, AvgPool2dCache(tuple(x.shape), g, int(count_include_pad), divisor, x.dtype)


@kernel("avg_pool2d")
def avg_pool2d_backward(dout: Any, cache: Any) -> Any:
    r"""Gradient of :func:`avg_pool2d_forward`: each window's cells get ``dout / divisor``, overlaps add up.

    .. math:: dx_{n,c,h,w} = \sum_{(i,j):\ (h,w) \in \mathrm{window}(i,j)} \frac{dout_{n,c,i,j}}{d_{ij}}

    Shape:
        - dout: (N, C, OH, OW).  - dx: (N, C, H, W).

    Examples:
        >>> import numpy as np
        >>> out, cache = avg_pool2d_forward(np.ones((1, 1, 3, 3)), 2, stride=1)
        >>> avg_pool2d_backward(np.ones_like(out), cache)[0, 0]
        array([[0.25, 0.5 , 0.25],
               [0.5 , 1.  , 0.5 ],
               [0.25, 0.5 , 0.25]])
    """
    x_shape, g, count_include_pad, divisor, dtype = cache
    check_grad_output("avg_pool2d_backward", dout, (*x_shape[:2], g.OH, g.OW), dtype)
    return get_backend().avg_pool2d_backward(dout, x_shape, *g[:6], count_include_pad, divisor)


# ---------------------------------------------------------------------------------------------------- modules
class _Pool2d(Module):
    """What the pooling modules share: their name in error messages."""

    def _where(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class MaxPool2d(_Pool2d):
    r"""Max pooling over (N, C, H, W) images.

    .. math:: y_{n,c,i,j} = \max_{p < K_H,\, q < K_W} x_{n,c,\,i S_H + p D_H - P_H,\; j S_W + q D_W - P_W}

    Args:
        kernel_size: int or (KH, KW).
        stride: int or (SH, SW). Default: None (= kernel_size).
        padding: int or (PH, PW), implicit -inf on both sides, at most half the kernel size. Default: 0.
        dilation: int or (DH, DW): spacing between window taps. Default: 1.
        return_indices: also return the flat input position h * W + w of each maximum (for ``MaxUnpool2d``-style
            uses). Default: False.
        ceil_mode: round the output size up (a last, partial window is kept). Default: False.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, C, OH, OW), OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1 (ceil in ``ceil_mode``).
    Backward:
        dx is zero except at each window's maximum, which receives that window's dout (summed over the windows it
        wins). Ties go to the first maximum in row-major order, as in PyTorch.

    Examples:
        >>> import numpy as np
        >>> pool = MaxPool2d(2)
        >>> y = pool(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
        >>> y[0, 0]
        array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
        >>> pool.backward(np.ones_like(y))[0, 0, 1]
        array([0., 1., 0., 1.], dtype=float32)
    """

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        _check_window(
            "MaxPool2d", kernel_size, stride, padding, dilation, return_indices=return_indices, ceil_mode=ceil_mode
        )
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )

    def forward(self, x: Any) -> Any:
        out, cache = F.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        self.save_for_backward(cache)
        return (out, _max_pool_indices(cache)) if self.return_indices else out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.max_pool2d_backward(dout, cache)


class AvgPool2d(_Pool2d):
    r"""Average pooling over (N, C, H, W) images.

    .. math:: y_{n,c,i,j} = \frac{1}{d_{ij}} \sum_{p < K_H,\, q < K_W} x_{n,c,\,i S_H + p - P_H,\; j S_W + q - P_W}

    Args:
        kernel_size: int or (KH, KW).
        stride: int or (SH, SW). Default: None (= kernel_size).
        padding: int or (PH, PW), implicit zeros, at most half the kernel size. Default: 0.
        ceil_mode: round the output size up. Default: False.
        count_include_pad: the divisor d counts padded cells (True) or only input cells (False). Default: True.
        divisor_override: use this divisor for every window. Default: None.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, C, OH, OW), OH = floor((H + 2 PH - KH) / SH) + 1 (ceil in ``ceil_mode``).
    Backward:
        dx[n, c, h, w] = sum over the windows (i, j) that contain (h, w) of dout[n, c, i, j] / d_ij.

    Examples:
        >>> import numpy as np
        >>> pool = AvgPool2d(2)
        >>> y = pool(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
        >>> y[0, 0]
        array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
        >>> float(pool.backward(np.ones_like(y)).sum())
        4.0
    """

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        _check_window(
            "AvgPool2d", kernel_size, stride, padding, 1, ceil_mode=ceil_mode, count_include_pad=count_include_pad
        )
        if divisor_override is not None:
            check_int("AvgPool2d", "divisor_override", divisor_override)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x: Any) -> Any:
        out, cache = F.avg_pool2d_forward(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.avg_pool2d_backward(dout, cache)
