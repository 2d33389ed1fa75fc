r"""Transposed 2-D convolution ("deconvolution", fractionally strided convolution): conv2d's backward, run forward.

Notation as in :mod:`minidl.nn.conv`: N images, stride (SH, SW), padding (PH, PW), dilation (DH, DW), kernel
(KH, KW), G groups. The input x has C = ``in_channels`` channels and H x W pixels; the output y has O =
``out_channels`` channels and OH x OW pixels; the weight has PyTorch's layout (C, O / G, KH, KW).

**The definition.** A transposed convolution is the adjoint (the transpose) of a convolution: take the conv2d ``c``
from O channels of OH x OW to C channels of H x W with the same weight, stride, padding and dilation,
:math:`c(y)_{n,i,h,w} = \sum_{o,p,q} W_{i,o,p,q}\, y^{pad}_{n,o,\,h S_H + p D_H,\,w S_W + q D_W}` (per group). Its
transpose sends x back:

.. math::

    y^{pad}_{n,\,o,\,h S_H + p D_H,\,w S_W + q D_W} \mathrel{+}= W_{i,o,p,q}\; x_{n,i,h,w}
    \quad \text{for every } (i, h, w, p, q) \text{ in o's group}, \qquad y = y^{pad} \text{ cropped by } (P_H, P_W)
    \text{, plus } b_o

each input pixel stamps the kernel, scaled by its value, onto the output at stride S: the output is S times larger.
That is exactly conv2d's **input gradient** with x in the place of dout: in matrix form (conv.py's backward),

.. math:: y = \mathrm{col2im}(W_{col}^T\, X), \qquad X = x \text{ as a } (C, N H W) \text{ matrix}, \quad
    W_{col} = W \text{ as } (C, O K_H K_W) \text{ (per group)}

and the output size is the one whose conv2d gives back H:

.. math:: OH = (H - 1) S_H - 2 P_H + D_H (K_H - 1) + \mathrm{output\_padding}_H + 1 \quad (\text{likewise } OW)

Several OH map to the same H under conv2d's floor (when S > 1); ``output_padding`` (less than S or D) picks one,
adding rows at the bottom and columns at the right.

**Backward.** y is linear in x and in W, so the gradients are adjoints again: the adjoint of conv2d's input gradient
is conv2d itself. With :math:`D = \mathrm{im2col}(dout)` of shape (O KH KW, N H W) (the windows of dout that each
input pixel stamped onto):

.. math::

    dx = \mathrm{conv2d}(dout, W) = W_{col}\, D \ \text{reshaped to } (N, C, H, W), \qquad
    dW_{col} = X\, D^T, \qquad db_o = \sum_{n,i,j} dout_{n,o,i,j}

(per group). The pair reuses the backend's ``im2col`` / ``col2im`` primitives, exactly as :mod:`minidl.nn.conv`:
the forward is conv2d's dx line, the backward is conv2d's forward (dx) and its dW line with x and dout swapped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.backend import get_backend
from minidl.nn import init
from minidl.nn._checks import (
    _check_parameter_dtype,
    _is_int,
    check_array,
    check_grad_output,
    check_int,
    check_same_device,
    pair,
)
from minidl.nn.conv import conv_hyperparameters, conv_parameters
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["ConvTranspose2d", "conv_transpose2d_backward", "conv_transpose2d_forward"]


class ConvTransposeGeometry(NamedTuple):
    """The sizes :func:`conv_transpose2d_forward` checks and derives."""

    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    DH: int
    DW: int
    groups: int
    OH: int  # the output's height and width
    OW: int
    GH: int  # rows and columns of the grid of windows conv2d sees on the output (>= H, W: more with output_padding
    GW: int  # >= stride, possible when dilation > stride; the extra windows stamp zeros)


def _min_output_size(size: int, S: int, P: int, D: int, K: int) -> int:
    """The output size without output_padding: (size - 1) S - 2 P + D (K - 1) + 1."""
    return (size - 1) * S - 2 * P + D * (K - 1) + 1


def _conv_transpose2d_setup(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, output_padding: Any, groups: int, dilation: Any
) -> ConvTransposeGeometry:
    where = "conv_transpose2d_forward"
    check_array(where, x, ndim=4)
    check_same_device(where, x, weight, bias)
    check_array(where, weight, ndim=4, what="weight")
    _check_parameter_dtype(where, x, weight.dtype)
    C, Og, KH, KW = weight.shape
    SH, SW = pair(where, "stride", stride)
    PH, PW = pair(where, "padding", padding, minimum=0)
    OPH, OPW = pair(where, "output_padding", output_padding, minimum=0)
    DH, DW = pair(where, "dilation", dilation)
    groups = check_int(where, "groups", groups)
    N, C_in, H, W = x.shape
    if C % groups:
        raise ValueError(f"{where}: in_channels {C} (weight.shape[0]) must be divisible by groups={groups}")
    if C_in != C:
        raise ValueError(
            f"{where}: expected {C} channels in dimension 1 of the input, got {C_in} (input shape {tuple(x.shape)}; "
            f"the weight {tuple(weight.shape)} is (in_channels, out_channels / groups, KH, KW))"
        )
    for name, op, S, D in (("height", OPH, SH, DH), ("width", OPW, SW, DW)):
        if op >= S and op >= D:
            raise ValueError(
                f"{where}: output_padding must be smaller than either stride or dilation, got output_padding "
                f"{(OPH, OPW)} with stride {(SH, SW)} and dilation {(DH, DW)} (the {name} fails)"
            )
    OH = _min_output_size(H, SH, PH, DH, KH) + OPH
    OW = _min_output_size(W, SW, PW, DW, KW) + OPW
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{where}: the output would be {OH}x{OW} for an input {H}x{W} (kernel {(KH, KW)}, stride {(SH, SW)}, "
            f"padding {(PH, PW)}, dilation {(DH, DW)}); OH = (H - 1) SH - 2 PH + DH (KH - 1) + output_padding + 1 "
            "must be >= 1: use less padding"
        )
    if bias is not None:
        check_array(where, bias, ndim=1, dtype=x.dtype, what="bias")
        if bias.shape[0] != Og * groups:
            raise ValueError(
                f"{where}: the bias has shape {tuple(bias.shape)}, expected ({Og * groups},) for {Og * groups} out "
                "channels"
            )
    GH = (OH + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    GW = (OW + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    return ConvTransposeGeometry(KH, KW, SH, SW, PH, PW, DH, DW, groups, OH, OW, GH, GW)


class ConvTranspose2dCache(NamedTuple):
    """The cache of :func:`conv_transpose2d_forward`."""

    x_mat: Any  # x as (G, C / G, N GH GW), zero-extended to the GH x GW grid
    weight: Any
    has_bias: bool
    x_shape: tuple[int, ...]
    geometry: ConvTransposeGeometry


def conv_transpose2d_forward(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> tuple[Any, Any]:
    r"""Transposed convolution (PyTorch's ``F.conv_transpose2d`` signature): conv2d's input gradient of ``x``.

    .. math::

        y^{pad}_{n,\,o,\,h S_H + p D_H,\,w S_W + q D_W} \mathrel{+}= W_{i,o,p,q}\, x_{n,i,h,w}, \qquad
        out_{n,o} = y^{pad}_{n,o} \text{ cropped by } (P_H, P_W) + b_o

    (i and o in one group), computed as ``col2im(W_col^T @ x_mat)`` (see :mod:`minidl.nn.conv_transpose`).

    Args:
        x: (N, C, H, W).
        weight: (C, O / groups, KH, KW), PyTorch's layout for a transposed convolution.
        bias: (O,) or None.
        stride, padding, dilation: int or pair, those of the convolution this one transposes. Default: 1, 0, 1.
        output_padding: int or pair, rows/columns added at the bottom/right of the output (less than stride or
            dilation). Default: 0.
        groups: blocks of C / groups input and O / groups output channels. Default: 1.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, O, OH, OW), OH = (H - 1) SH - 2 PH + DH (KH - 1) + output_padding + 1, likewise OW.
    Backward:
        dx = conv2d(dout, W);  dW_col = x_mat @ im2col(dout)^T;  db = sum of dout
        (:func:`conv_transpose2d_backward`).

    Examples:
        >>> out, cache = conv_transpose2d_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2)
        >>> out[0, 0]  # each input pixel stamps the 2 x 2 kernel
        array([[1., 1., 1., 1.],
               [1., 1., 1., 1.],
               [1., 1., 1., 1.],
               [1., 1., 1., 1.]])
        >>> conv_transpose2d_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))[0][0, 0]  # overlaps add up
        array([[1., 2., 2., 1.],
               [2., 4., 4., 2.],
               [2., 4., 4., 2.],
               [1., 2., 2., 1.]])
    """
    g = _conv_transpose2d_setup(x, weight, bias, stride, padding, output_padding, groups, dilation)
    be = get_backend()
    N, C, H, W = x.shape
    _, Og, KH, KW = weight.shape
    G, K, M = g.groups, Og * KH * KW, N * g.GH * g.GW
    if (g.GH, g.GW) != (H, W):  # windows beyond the input (output_padding >= stride): they stamp zeros
        grid = be.xp.zeros((N, C, g.GH, g.GW), dtype=x.dtype)
        grid[:, :, :H, :W] = x
        x = grid
    x_mat = be.xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(G, C // G, M)
    cols = weight.reshape(G, C // G, K).transpose(0, 2, 1) @ x_mat  # (G, Og KH KW, N GH GW): W_col^T @ X
    out = be.col2im(cols.reshape(G * K, M), (N, G * Og, g.OH, g.OW), KH, KW, g.SH, g.SW, g.PH, g.PW, g.DH, g.DW)
    if bias is not None:
        out += bias[None, :, None, None]
    return out, ConvTranspose2dCache(x_mat, weight, bias is not None, (N, C, H, W), g)


def conv_transpose2d_backward(dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`conv_transpose2d_forward`: ``(dx, dw, db)`` (``db`` None without bias, ``dw`` None when
    ``compute_dw`` is False).

    With :math:`D = \mathrm{im2col}(dout)` (O KH KW, N H W) and X = x as (C, N H W), per group:

    .. math::

        dx_{n,i,h,w} = \sum_{o,p,q} W_{i,o,p,q}\; dout^{pad}_{n,\,o,\,h S_H + p D_H,\,w S_W + q D_W}
            \quad (= \mathrm{conv2d}(dout, W) = W_{col} D)

        dW_{i,o,p,q} = \sum_{n,h,w} x_{n,i,h,w}\; dout^{pad}_{n,\,o,\,h S_H + p D_H,\,w S_W + q D_W}
            \quad (= X D^T), \qquad db_o = \sum_{n,i,j} dout_{n,o,i,j}

    Shape:
        - dout: (N, O, OH, OW).  - dx: (N, C, H, W); dw: (C, O / groups, KH, KW); db: (O,).

    Examples:
        >>> out, cache = conv_transpose2d_forward(np.ones((2, 4, 3, 3)), np.ones((4, 3, 3, 3)), np.zeros(6),
        ...                                       stride=2, padding=1, output_padding=1, groups=2)
        >>> out.shape
        (2, 6, 6, 6)
        >>> dx, dw, db = conv_transpose2d_backward(np.ones_like(out), cache)
        >>> dx.shape, dw.shape, db
        ((2, 4, 3, 3), (4, 3, 3, 3), array([72., 72., 72., 72., 72., 72.]))
    """
    x_mat, weight, has_bias, x_shape, g = cache
    N, C, H, W = x_shape
    _, Og, KH, KW = weight.shape
    check_grad_output("conv_transpose2d_backward", dout, (N, g.groups * Og, g.OH, g.OW), weight.dtype)
    be = get_backend()
    G, K, M = g.groups, Og * KH * KW, N * g.GH * g.GW
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    dout_col = be.im2col(dout, KH, KW, g.SH, g.SW, g.PH, g.PW, g.DH, g.DW).reshape(G, K, M)  # D: (G, K, N GH GW)
    dx = weight.reshape(G, C // G, K) @ dout_col  # (G, C / G, N GH GW): W_col @ D, conv2d of dout
    dx = dx.reshape(C, N, g.GH, g.GW).transpose(1, 0, 2, 3)[:, :, :H, :W]
    dw = (x_mat @ dout_col.transpose(0, 2, 1)).reshape(weight.shape) if compute_dw else None  # X @ D^T
    return be.xp.ascontiguousarray(dx), dw, db


class ConvTranspose2d(Module):
    r"""Transposed 2-D convolution (PyTorch's ``nn.ConvTranspose2d``): the adjoint of a Conv2d, an up-sampling layer.

    .. math::

        y_{n,o,\,h S_H + p D_H - P_H,\,w S_W + q D_W - P_W} \mathrel{+}= W_{i,o,p,q}\, x_{n,i,h,w}, \qquad
        y_{n,o} \mathrel{+}= b_o

    summed over the input channels i of o's group, every pixel (h, w) and kernel tap (p, q); rows and columns that
    land in the padding are dropped (see :mod:`minidl.nn.conv_transpose` for the derivation as conv2d's backward).

    Args:
        in_channels: C.  out_channels: O.
        kernel_size: int or (KH, KW).
        stride: int or (SH, SW). Default: 1.
        padding: int or (PH, PW): ``dilation * (kernel_size - 1) - padding`` zeros are in effect added around the
            input, as in PyTorch. Default: 0.
        output_padding: int or pair, extra rows/columns at the bottom/right of the output; less than stride or
            dilation. Default: 0.
        groups: C and O must both be divisible by it. Default: 1.
        bias: add a learnable bias. Default: True.
        dilation: int or (DH, DW). Default: 1.
        padding_mode: only ``"zeros"``, as in PyTorch. Default: ``"zeros"``.

    Attributes:
        weight: (C, O / groups, KH, KW), U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = O / groups * KH * KW
            (PyTorch computes the fan from ``weight.shape[1]``, so for this layout it is the output side).
        bias: (O,), from the same distribution; None when ``bias=False``.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, O, OH, OW), OH = (H - 1) SH - 2 PH + DH (KH - 1) + output_padding + 1, likewise OW.
          ``forward(x, output_size=(OH, OW))`` picks the output_padding that gives that size, as PyTorch's.
    Backward:
        dx = conv2d(dout, W) (im2col(dout), one GEMM);  dW = x_mat @ im2col(dout)^T;  db = sum of dout.

    Examples:
        >>> from minidl import nn
        >>> up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        >>> y = up(np.zeros((2, 8, 5, 5), np.float32))
        >>> y.shape
        (2, 4, 10, 10)
        >>> up(np.zeros((2, 8, 5, 5), np.float32), output_size=(9, 9)).shape
        (2, 4, 9, 9)
        >>> up.backward(np.ones((2, 4, 9, 9), np.float32)).shape, up.weight.grad.shape
        ((2, 8, 5, 5), (8, 4, 3, 3))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        name = "ConvTranspose2d"
        conv_hyperparameters(self, name, in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.padding = pair(name, "padding", padding, minimum=0)
        self.output_padding = pair(name, "output_padding", output_padding, minimum=0)
        for op, S, D in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if op >= S and op >= D:
                raise ValueError(
                    f"{name}: output_padding must be smaller than either stride or dilation, got output_padding "
                    f"{self.output_padding} with stride {self.stride} and dilation {self.dilation}"
                )
        if padding_mode != "zeros":
            raise ValueError(f'{name}: only padding_mode="zeros" is supported (as in PyTorch), got {padding_mode!r}')
        self.padding_mode = padding_mode
        conv_parameters(self, name, (in_channels, out_channels // groups, *self.kernel_size), bias)

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) for the weight, U(+-1/sqrt(fan_in)) for the bias, with
        fan_in = weight.shape[1] * KH * KW."""
        init.default_layer_init_(self.weight, self.bias)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def _where(self) -> str:
        return f"ConvTranspose2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size})"

    def _output_padding(self, x: Any, output_size: Any) -> tuple[int, int]:
        """The output_padding that gives ``output_size`` ((OH, OW), or (N, O, OH, OW)), PyTorch's rule: it must lie
        in [min, min + stride - 1] with min the size without output_padding."""
        if output_size is None:
            return self.output_padding
        where = self._where()
        sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else None
        if sizes is None or len(sizes) not in (2, 4) or not all(_is_int(s) for s in sizes):
            raise TypeError(f"{where}: output_size must be (OH, OW) or (N, O, OH, OW) ints, got {output_size!r}")
        if not hasattr(x, "ndim") or x.ndim != 4:
            return self.output_padding  # the pair reports the input
        sizes = sizes[-2:]
        minimum = tuple(
            _min_output_size(x.shape[2 + d], self.stride[d], self.padding[d], self.dilation[d], self.kernel_size[d])
            for d in range(2)
        )
        maximum = tuple(m + s - 1 for m, s in zip(minimum, self.stride, strict=True))
        if any(not lo <= s <= hi for s, lo, hi in zip(sizes, minimum, maximum, strict=True)):
            raise ValueError(
                f"{where}: requested an output size of {tuple(sizes)}, but valid sizes range from {minimum} to "
                f"{maximum} (for an input of {tuple(x.shape[2:])})"
            )
        return (sizes[0] - minimum[0], sizes[1] - minimum[1])

    def forward(self, x: Any, output_size: Any = None) -> Any:
        output_padding = self._output_padding(x, output_size)
        bias = None if self.bias is None else self.bias.data
        out, cache = F.conv_transpose2d_forward(
            x, self.weight.data, bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dw, db = F.conv_transpose2d_backward(dout, cache, compute_dw=self.weight.requires_grad)
        if dw is not None:
            self.weight.accumulate_grad(dw)
        if db is not None and self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx
