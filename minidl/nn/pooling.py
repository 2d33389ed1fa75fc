r"""2-D pooling: max, average, and their adaptive forms (PyTorch's ``nn.MaxPool2d``, ``nn.AvgPool2d``, ...).

Each output pixel summarizes one window of its input channel; channels never mix.

* Max: :math:`y_{n,c,i,j} = \max_{p,q} x^{pad}_{n,c,\,i S_H + p D_H,\,j S_W + q D_W}` with -inf padding.
  Backward: the gradient flows only to the position of each window's maximum (ties: the first one in scan order,
  as in PyTorch): :math:`dx_{n,c,h,w} = \sum_{(i,j):\ \mathrm{argmax}(i,j) = (h,w)} dout_{n,c,i,j}` (a sum: windows
  overlap when the stride is smaller than the kernel).
* Average: :math:`y_{n,c,i,j} = \frac{1}{d_{ij}} \sum_{p,q} x^{pad}_{n,c,\,i S_H + p,\,j S_W + q}` with zero padding,
  :math:`d_{ij}` = the window's cells inside the padded input (``count_include_pad=True``), inside the input only
  (False), or ``divisor_override``. Backward: every cell of the window gets :math:`dout_{n,c,i,j} / d_{ij}`.
* Adaptive: the output size (OH, OW) is given and the windows follow: bin i along H is
  :math:`[\lfloor iH/OH \rfloor, \lceil (i+1)H/OH \rceil)`. Bins may overlap or differ in size by one.

Output size (max and average; average has D = 1):
:math:`OH = \lfloor (H + 2 P_H - D_H (K_H - 1) - 1) / S_H \rfloor + 1` (⌈·⌉ in ``ceil_mode``, where a last window
that would start in the bottom padding is dropped), likewise OW.

The loops over kernel offsets are backend kernels (``minidl.get_backend().max_pool2d_forward``, ...).
"""

from __future__ import annotations

from typing import Any

from minidl.backend import get_array_module
from minidl.nn._checks import check_array, check_grad_output, check_int, pair
from minidl.nn.module import Module

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "MaxPool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool2d_forward",
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
def max_pool2d_forward(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> tuple[Any, Any]:
    """Max over each window. Returns ``(out, cache)``; the cache holds each window's argmax.

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
    be = check_array("max_pool2d_forward", x, ndim=4)
    geometry, OH, OW = _pool_geometry("max_pool2d_forward", x, kernel_size, stride, padding, dilation, ceil_mode)
    out, argmax = be.max_pool2d_forward(x, *geometry, OH, OW)
    return out, (argmax, tuple(x.shape), geometry)


def max_pool2d_backward(dout: Any, cache: Any) -> Any:
    """Gradient of :func:`max_pool2d_forward`: each ``dout`` goes to its window's maximum, the rest get 0."""
    argmax, x_shape, geometry = cache
    check_grad_output("max_pool2d", dout, argmax.shape)
    return check_array("max_pool2d_backward", dout, what="gradient").max_pool2d_backward(
        dout, argmax, x_shape, *geometry
    )


def _max_pool_indices(cache: Any) -> Any:
    """PyTorch's ``return_indices``: the flat position h * W + w in the (unpadded) input of each maximum."""
    argmax, (N, C, H, W), (KH, KW, SH, SW, PH, PW, DH, DW) = cache
    xp = get_array_module(argmax)
    OH, OW = argmax.shape[2], argmax.shape[3]
    h = (xp.arange(OH) * SH - PH)[:, None] + (argmax // KW) * DH
    w = (xp.arange(OW) * SW - PW)[None, :] + (argmax % KW) * DW
    return (h * W + w).astype(xp.int64)


# ---------------------------------------------------------------------------------------------------- average pool
def avg_pool2d_forward(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[Any, Any]:
    """Mean over each window. Returns ``(out, cache)``.

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
    where = "avg_pool2d_forward"
    be = check_array(where, x, ndim=4)
    geometry, OH, OW = _pool_geometry(where, x, kernel_size, stride, padding, 1, ceil_mode)
    if not isinstance(count_include_pad, bool):
        raise TypeError(f"{where}: count_include_pad must be a bool, got {count_include_pad!r}")
    divisor = 0 if divisor_override is None else check_int(where, "divisor_override", divisor_override)
    KH, KW, SH, SW, PH, PW, _, _ = geometry
    hyper = (KH, KW, SH, SW, PH, PW)
    out = be.avg_pool2d_forward(x, *hyper, OH, OW, int(count_include_pad), divisor)
    return out, (tuple(x.shape), tuple(out.shape), hyper, int(count_include_pad), divisor)


def avg_pool2d_backward(dout: Any, cache: Any) -> Any:
    """Gradient of :func:`avg_pool2d_forward`: each window's cells get ``dout / divisor``, overlaps add up."""
    x_shape, out_shape, hyper, count_include_pad, divisor = cache
    check_grad_output("avg_pool2d", dout, out_shape)
    be = check_array("avg_pool2d_backward", dout, what="gradient")
    return be.avg_pool2d_backward(dout, x_shape, *hyper, count_include_pad, divisor)


# ---------------------------------------------------------------------------------------------------- adaptive
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


def adaptive_avg_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, Any]:
    """Mean over each adaptive bin so that the output is (OH, OW) whatever the input size. Returns ``(out, cache)``.

    Args:
        x: (N, C, H, W).
        output_size: int or (OH, OW); an entry None keeps that input dimension.

    Shape:
        - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, h, w] = sum over the bins (i, j) containing (h, w) of dout[n, c, i, j] / (bin height * bin width).

    Examples:
        >>> import numpy as np
        >>> out, cache = adaptive_avg_pool2d_forward(np.arange(6.0).reshape(1, 1, 2, 3), (1, 2))
        >>> out.ravel()  # bins: columns [0, 2) and [1, 3)
        array([2., 3.])
    """
    be = check_array("adaptive_avg_pool2d_forward", x, ndim=4)
    OH, OW = _adaptive_size("adaptive_avg_pool2d_forward", output_size, x.shape[2], x.shape[3])
    out = be.adaptive_avg_pool2d_forward(x, OH, OW)
    return out, (tuple(x.shape), tuple(out.shape))


def adaptive_avg_pool2d_backward(dout: Any, cache: Any) -> Any:
    """Gradient of :func:`adaptive_avg_pool2d_forward`: each bin's gradient spread evenly over its cells."""
    x_shape, out_shape = cache
    check_grad_output("adaptive_avg_pool2d", dout, out_shape)
    return check_array("adaptive_avg_pool2d_backward", dout, what="gradient").adaptive_avg_pool2d_backward(
        dout, x_shape
    )


def adaptive_max_pool2d_forward(x: Any, output_size: Any) -> tuple[Any, Any]:
    """Max over each adaptive bin. Returns ``(out, cache)``; ``cache[0]`` holds PyTorch's flat indices h * W + w.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, argmax(i, j)] += dout[n, c, i, j].

    Examples:
        >>> import numpy as np
        >>> out, cache = adaptive_max_pool2d_forward(np.array([[[[1., 3., 2.]]]]), (1, 2))
        >>> out.ravel(), cache[0].ravel()
        (array([3., 3.]), array([1, 1]))
    """
    be = check_array("adaptive_max_pool2d_forward", x, ndim=4)
    OH, OW = _adaptive_size("adaptive_max_pool2d_forward", output_size, x.shape[2], x.shape[3])
    out, indices = be.adaptive_max_pool2d_forward(x, OH, OW)
    return out, (indices, tuple(x.shape))


def adaptive_max_pool2d_backward(dout: Any, cache: Any) -> Any:
    """Gradient of :func:`adaptive_max_pool2d_forward`: each ``dout`` goes to its bin's maximum."""
    indices, x_shape = cache
    check_grad_output("adaptive_max_pool2d", dout, indices.shape)
    return check_array("adaptive_max_pool2d_backward", dout, what="gradient").adaptive_max_pool2d_backward(
        dout, indices, x_shape
    )


# ---------------------------------------------------------------------------------------------------- modules
class _Pool2d(Module):
    """Shared forward/backward plumbing: validate, call the functional pair, cache, check the gradient."""

    def _where(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _forward(self, x: Any, forward: Any, *args: Any) -> Any:
        where = self._where()
        check_array(where, x, ndim=4)
        try:
            out, cache = forward(x, *args)
        except (ValueError, TypeError) as err:  # name the layer rather than the functional
            raise type(err)(str(err).replace(forward.__name__, where, 1)) from None
        self._save_for_backward((cache, tuple(out.shape)))
        return out, cache

    def _backward(self, dout: Any, backward: Any) -> Any:
        cache, out_shape = self._pop_cache()
        check_grad_output(self._where(), dout, out_shape)
        return backward(dout, cache)


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
        out, cache = self._forward(
            x, max_pool2d_forward, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )
        return (out, _max_pool_indices(cache)) if self.return_indices else out

    def backward(self, dout: Any) -> Any:
        return self._backward(dout, max_pool2d_backward)


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
        out, _ = self._forward(
            x,
            avg_pool2d_forward,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )
        return out

    def backward(self, dout: Any) -> Any:
        return self._backward(dout, avg_pool2d_backward)


class AdaptiveAvgPool2d(_Pool2d):
    r"""Average pooling to a fixed output size (``AdaptiveAvgPool2d(1)`` is global average pooling).

    Bin i along H covers rows :math:`[\lfloor iH/OH \rfloor, \lceil (i+1)H/OH \rceil)`, likewise along W.

    Args:
        output_size: int or (OH, OW); an entry None keeps that input dimension.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, h, w] = sum over the bins (i, j) containing (h, w) of dout[n, c, i, j] / |bin(i, j)|.

    Examples:
        >>> import numpy as np
        >>> gap = AdaptiveAvgPool2d(1)
        >>> gap(np.ones((2, 3, 7, 5), np.float32)).shape
        (2, 3, 1, 1)
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        _adaptive_size("AdaptiveAvgPool2d", output_size, 1, 1)  # validates
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: Any) -> Any:
        return self._forward(x, adaptive_avg_pool2d_forward, self.output_size)[0]

    def backward(self, dout: Any) -> Any:
        return self._backward(dout, adaptive_avg_pool2d_backward)


class AdaptiveMaxPool2d(_Pool2d):
    r"""Max pooling to a fixed output size, over PyTorch's adaptive bins (see :class:`AdaptiveAvgPool2d`).

    Args:
        output_size: int or (OH, OW); an entry None keeps that input dimension.
        return_indices: also return the flat input position h * W + w of each maximum. Default: False.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, argmax(i, j)] += dout[n, c, i, j]; zero elsewhere.

    Examples:
        >>> import numpy as np
        >>> AdaptiveMaxPool2d((2, 1))(np.arange(12, dtype=np.float32).reshape(1, 1, 4, 3))[0, 0]
        array([[ 5.],
               [11.]], dtype=float32)
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
        out, cache = self._forward(x, adaptive_max_pool2d_forward, self.output_size)
        return (out, cache[0]) if self.return_indices else out

    def backward(self, dout: Any) -> Any:
        return self._backward(dout, adaptive_max_pool2d_backward)
