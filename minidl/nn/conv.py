r"""2-D convolution (cross-correlation, as in every deep-learning library); padding is in :mod:`minidl.nn.padding`.

Forward. With the input zero-padded by PH rows and PW columns on each side (``x_pad``), groups G (the C input and
O output channels split into G blocks of Cg = C / G and Og = O / G; output channel o sees only the input channels
of its group g = o // Og), stride (SH, SW) and dilation (DH, DW):

.. math::

    y_{n,o,i,j} = b_o + \sum_{c=0}^{C_g-1} \sum_{p=0}^{K_H-1} \sum_{q=0}^{K_W-1}
        W_{o,c,p,q}\; x^{pad}_{n,\; g C_g + c,\; i S_H + p D_H,\; j S_W + q D_W}

    OH = \lfloor (H + 2 P_H - D_H (K_H - 1) - 1) / S_H \rfloor + 1 \quad (\text{likewise } OW)

im2col turns this into one matrix product. ``x_col = im2col(x)`` has shape (C KH KW, N OH OW): column (n, i, j)
holds the window under output pixel (i, j) of image n, flattened in (c, p, q) order. With the weight as the
(O, C KH KW) matrix ``W_col`` (per group: (Og, Cg KH KW) times that group's rows of ``x_col``),

    Y_col = W_col @ x_col + b          (O, N OH OW), then reshaped/transposed to (N, O, OH, OW)

Backward. Y_col is linear in W_col and in x_col, so with dY_col = dout as (O, N OH OW):

    db     = sum of dout over (n, i, j)                   (the bias is added to every pixel)
    dW_col = dY_col @ x_col^T                              (O, C KH KW), per group
    dx_col = W_col^T @ dY_col                              (C KH KW, N OH OW), per group
    dx     = col2im(dx_col)                                the adjoint of im2col: an input pixel that sits in several
                                                           windows receives the sum of their gradients

im2col/col2im are the NumPy backend's primitives (``minidl/backend/numpy_backend.py``, with their index maps). The pair
is marked ``@kernel("conv2d")``: the Numba backend replaces it as a whole with its own algorithms (im2row chunks,
Winograd, 1 x 1 products: ``minidl/backend/_numba_conv.py``), tested against this reference. The fused pairs built
on it (``conv2d_relu``, ``conv2d_relu6``, ``conv2d_add_relu``) are in ``minidl/nn/conv_fused.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl._deferred import BatchNormReLUOutput
from minidl._dtype import get_default_dtype
from minidl.backend import get_backend
from minidl.nn import init
from minidl.nn._checks import (
    _check_parameter_dtype,
    check_array,
    check_bn_relu_output,
    check_channel_sums,
    check_dx_add,
    check_grad_output,
    check_int,
    check_same_device,
    pair,
)
from minidl.nn._norm_common import channel_sums as _channel_sums_of
from minidl.nn.dispatch import F, is_reference, kernel
from minidl.nn.module import Module, Parameter
from minidl.nn.padding import _PADDING_MODES

__all__ = [
    "Conv2d",
    "conv2d_backward",
    "conv2d_forward",
]


# ---------------------------------------------------------------------------------------------------- conv2d
def _conv_padding(where: str, padding: Any, KH: int, KW: int, DH: int, DW: int, SH: int, SW: int) -> tuple[int, ...]:
    """``padding`` (int, pair, 'same' or 'valid') as (top, bottom, left, right), PyTorch's rule for 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"{where}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if (SH, SW) != (1, 1):
            raise ValueError(
                f"{where}: padding='same' is not supported for strided convolutions, got stride {(SH, SW)}"
            )
        total_h, total_w = DH * (KH - 1), DW * (KW - 1)  # odd totals put the extra row/column at the bottom/right
        return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
    PH, PW = pair(where, "padding", padding, minimum=0)
    return (PH, PH, PW, PW)


class ConvGeometry(NamedTuple):
    """A convolution's sizes, as :func:`conv2d_forward`'s setup checks and derives them (padding on each side)."""

    KH: int
    KW: int
    SH: int
    SW: int
    top: int
    bottom: int
    left: int
    right: int
    DH: int
    DW: int
    groups: int
    OH: int
    OW: int


def _conv2d_setup(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
    *, where: str = "conv2d_forward", channel_sums: Any = None,
) -> ConvGeometry:  # fmt: skip
    """Check :func:`conv2d_forward`'s arguments (errors named ``where``: the pair the caller called); return the
    geometry."""
    if isinstance(x, BatchNormReLUOutput):  # its vectors, then its x as the input
        x = check_bn_relu_output(where, x)
    check_array(where, x, ndim=4)
    check_same_device(where, x, weight, bias)
    check_array(where, weight, ndim=4, what="weight")
    _check_parameter_dtype(where, x, weight.dtype)
    O, Cg, KH, KW = weight.shape
    SH, SW = pair(where, "stride", stride)
    DH, DW = pair(where, "dilation", dilation)
    groups = check_int(where, "groups", groups)
    N, C, H, W = x.shape
    if O % groups:
        raise ValueError(f"{where}: in_channels {C} and out_channels {O} must both be divisible by groups={groups}")
    if C != Cg * groups:
        raise ValueError(
            f"{where}: expected {Cg * groups} channels in dimension 1 of the input, got {C} (input shape "
            f"{tuple(x.shape)}; the weight {tuple(weight.shape)} with groups={groups}: weight shape is "
            "(out_channels, in_channels / groups, KH, KW))"
        )
    if bias is not None:
        check_array(where, bias, ndim=1, dtype=x.dtype, what="bias")
        if bias.shape[0] != O:
            raise ValueError(f"{where}: the bias has shape {tuple(bias.shape)}, expected ({O},) for {O} out channels")
    top, bottom, left, right = _conv_padding(where, padding, KH, KW, DH, DW, SH, SW)
    span_h, span_w = DH * (KH - 1) + 1, DW * (KW - 1) + 1
    if span_h > H + top + bottom or span_w > W + left + right:
        raise ValueError(
            f"{where}: the (dilated) kernel {span_h}x{span_w} is larger than the padded input "
            f"{H + top + bottom}x{W + left + right} (input {H}x{W}, padding {(top, bottom, left, right)})"
        )
    OH = (H + top + bottom - span_h) // SH + 1
    OW = (W + left + right - span_w) // SW + 1
    if channel_sums is not None:
        check_channel_sums(where, channel_sums, O, x, writable=True)
    return ConvGeometry(KH, KW, SH, SW, top, bottom, left, right, DH, DW, groups, OH, OW)


class Conv2dCache(NamedTuple):
    """The cache of :func:`conv2d_forward`."""

    x_col: Any  # im2col of the (extra-padded) input: (C KH KW, N OH OW)
    weight: Any
    has_bias: bool
    x_shape: tuple[int, ...]  # of the input im2col saw
    geometry: ConvGeometry
    extra_pad: Any  # a Pad2dCache when 'same' needed an extra bottom/right row or column, else None


@kernel("conv2d", setup=_conv2d_setup, uses=("pad2d",))
def conv2d_forward(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
    *, channel_sums: Any = None,
) -> tuple[Any, Any]:  # fmt: skip
    r"""2-D convolution (cross-correlation; the derivation is in the module docstring). Returns ``(out, cache)``.

    With :math:`x^{pad}` the input zero-padded by (PH, PW) and g = o // Og the group of output channel o:

    .. math::

        out_{n,o,i,j} = b_o + \sum_{c=0}^{C_g-1} \sum_{p,q} W_{o,c,p,q}\,
            x^{pad}_{n,\; g C_g + c,\; i S_H + p D_H,\; j S_W + q D_W}

    Args:
        x: (N, C, H, W); or a :class:`~minidl.nn.BatchNormReLUOutput`, the output of a BatchNorm+ReLU
            described by its input and vectors (:func:`~minidl.nn.normalization.batch_norm_relu_forward` with
            ``deferred=True``): the convolution's input is then a = max(0, (x - mean) scale + offset), computed
            here first (the reference), or as the Numba backend's F(4x4, 3x3) reads x (``channels_last``, where
            :meth:`~minidl.backend.numpy_backend.NumpyBackend.conv2d_reads_bn_relu`), without writing a to memory.
            :func:`conv2d_backward` gives the gradient of a, which the BatchNorm+ReLU's backward takes.
        weight: (O, C / groups, KH, KW).
        bias: (O,) or None.
        stride, dilation: int or (SH, SW) / (DH, DW). Default: 1.
        padding: int, (PH, PW), ``"valid"`` (none) or ``"same"`` (output size = input size, stride 1 only; an odd
            total goes to the bottom/right, as in PyTorch). Default: 0.
        groups: split channels into this many independent convolutions; ``groups == C`` is depthwise. Default: 1.
        channel_sums: None, or a (3, O) float64 array whose row 0 holds a shift s_o per output channel: the pair
            fills rows 1 and 2 with the sums over (n, i, j) of out - s_o and (out - s_o)^2
            (:func:`~minidl.nn._norm_common.channel_sums`), the statistics of a BatchNorm of ``out``, which takes
            them as its own ``channel_sums`` (:func:`~minidl.nn.normalization.batch_norm_forward`) instead of a pass
            over ``out``. The Numba backend adds them up as its output pass writes ``out`` (F(4x4, 3x3) in its
            compiled loops into a ``channels_last`` output, whether the rules or the autotuner chose it; the other
            algorithms sum ``out`` in one pass after): what :class:`~minidl.nn.ConvBn2d` asks for in training where
            the backend takes them in the output pass (:func:`minidl.nn.fuse`). Default: None.

    Shape:
        - Output: (N, O, OH, OW), OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1, likewise OW.
    Backward:
        :func:`conv2d_backward`: dW = dout_col @ x_col^T, dx = col2im(W_col^T @ dout_col), db = sum of dout.
        The cache keeps ``x_col`` (C KH KW x N OH OW, the im2col memory cost) so backward does not rebuild it
        (the Numba backend's kernel keeps ``x`` instead and rebuilds it a few images at a time).

    Examples:
        >>> import numpy as np
        >>> x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
        >>> out, cache = conv2d_forward(x, w, None)
        >>> out[0, 0]
        array([[4., 4.],
               [4., 4.]])
        >>> dx, dw, db = conv2d_backward(np.ones_like(out), cache)
        >>> dx[0, 0]
        array([[1., 2., 1.],
               [2., 4., 2.],
               [1., 2., 1.]])
        >>> sums = np.zeros((3, 1))  # shift 0: the sums of out and of out^2 (four 4s)
        >>> _ = conv2d_forward(x, w, None, channel_sums=sums)
        >>> sums[1:, 0]
        array([16., 64.])
        >>> from minidl.nn import BatchNormReLUOutput
        >>> a = BatchNormReLUOutput(x - 1.0, np.zeros(1), np.full(1, 2.0), np.zeros(1))  # relu(2 (x - 1)): zeros
        >>> conv2d_forward(a, w, None)[0][0, 0]
        array([[0., 0.],
               [0., 0.]])
    """
    g = _conv2d_setup(x, weight, bias, stride, padding, dilation, groups, channel_sums=channel_sums)
    if isinstance(x, BatchNormReLUOutput):  # a BatchNorm+ReLU's output, described: computed first
        x = x.computed()
    extra_pad = None
    if (g.top, g.left) != (g.bottom, g.right):  # asymmetric ('same' with an even span): the extra row/column first
        x, extra_pad = F.pad2d_forward(x, (0, g.right - g.left, 0, g.bottom - g.top))
    be = get_backend()
    N = x.shape[0]
    O, Cg, KH, KW = weight.shape
    G, Og = g.groups, O // g.groups
    x_col = be.im2col(x, KH, KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)  # (C KH KW, N OH OW)
    w_col = weight.reshape(G, Og, Cg * KH * KW)
    out = w_col @ x_col.reshape(G, Cg * KH * KW, N * g.OH * g.OW)  # (G, Og, N OH OW): one GEMM per group
    out = out.reshape(O, N * g.OH * g.OW)
    if bias is not None:
        out += bias[:, None]
    out = be.xp.ascontiguousarray(out.reshape(O, N, g.OH, g.OW).transpose(1, 0, 2, 3))
    if channel_sums is not None:  # a BatchNorm's statistics of out, for the BatchNorm after this convolution
        _channel_sums_of(out, channel_sums)
    return out, Conv2dCache(x_col, weight, bias is not None, tuple(x.shape), g, extra_pad)


@kernel("conv2d")
def conv2d_backward(dout: Any, cache: Any, *, compute_dw: bool = True, dx_add: Any = None) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`conv2d_forward`: ``(dx, dw, db)`` (``db`` None without bias; ``dw`` None when
    ``compute_dw`` is False, which skips one GEMM for a frozen weight). With ``dx_add``, another gradient of x (x
    also fed other layers, a ResNet block's shortcut: the gradients of a fork add), ``dx + dx_add`` in place of dx
    (the Numba backend adds it as it writes dx where dx and dW run as F(4x4, 3x3) in one region,
    without a pass of its own).

    .. math::

        db_o = \sum_{n,i,j} dout_{n,o,i,j}, \qquad
        dW_{o,c,p,q} = \sum_{n,i,j} dout_{n,o,i,j}\; x^{pad}_{n,\; g C_g + c,\; i S_H + p D_H,\; j S_W + q D_W}

        dx^{pad}_{n,\; g C_g + c,\; h,\; w} = \sum_{o \in g} \sum_{p,q,i,j \,:\, i S_H + p D_H = h,\;
            j S_W + q D_W = w} W_{o,c,p,q}\; dout_{n,o,i,j}

    and dx is dx^pad without its padding; as matrices, dW_col = dout_col @ x_col^T and
    dx = col2im(W_col^T @ dout_col).

    Args:
        dout: the gradient of the output, (N, O, OH, OW).
        cache: :func:`conv2d_forward`'s.
        compute_dw: False skips dW. Default: True.
        dx_add: None, or an array of x's shape and dout's dtype, added to dx. Default: None.

    Shape:
        - dout: (N, O, OH, OW).  - dx: (N, C, H, W); dw: (O, C / groups, KH, KW); db: (O,).

    Examples:
        >>> import numpy as np
        >>> out, cache = conv2d_forward(np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3)), np.zeros(4), stride=2)
        >>> out.shape
        (2, 4, 2, 2)
        >>> dx, dw, db = conv2d_backward(np.ones_like(out), cache)
        >>> dx.shape, dw.shape, db
        ((2, 3, 5, 5), (4, 3, 3, 3), array([8., 8., 8., 8.]))
        >>> shortcut = np.full((2, 3, 5, 5), 0.5)  # x also fed another layer: its gradient of x
        >>> dx_sum, _, _ = conv2d_backward(np.ones_like(out), cache, dx_add=shortcut)
        >>> bool(np.array_equal(dx_sum, dx + shortcut))
        True
    """
    x_col, weight, has_bias, x_shape, g, extra_pad = cache
    O, Cg, KH, KW = weight.shape
    N = x_shape[0]
    check_grad_output("conv2d_backward", dout, (N, O, g.OH, g.OW), weight.dtype)
    be = get_backend()
    G, Og, K, M = g.groups, O // g.groups, Cg * KH * KW, N * g.OH * g.OW
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    dout_col = be.xp.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(G, Og, M)
    dw = None
    if compute_dw:
        dw = (dout_col @ x_col.reshape(G, K, M).transpose(0, 2, 1)).reshape(weight.shape)
    dx_col = weight.reshape(G, Og, K).transpose(0, 2, 1) @ dout_col  # (G, Cg KH KW, N OH OW)
    dx = be.col2im(dx_col.reshape(G * K, M), x_shape, KH, KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
    if extra_pad is not None:
        dx = F.pad2d_backward(dx, extra_pad)
    if dx_add is not None:  # x fed other layers too: their gradient of x adds to this one
        check_dx_add("conv2d_backward", dx_add, dx.shape, dx.dtype)
        dx = dx + dx_add
    return dx, dw, db


def conv_hyperparameters(
    module: Module,
    name: str,
    in_channels: int,
    out_channels: int,
    kernel_size: Any,
    stride: Any,
    dilation: Any,
    groups: int,
) -> None:
    """Check and set what :class:`Conv2d` and :class:`~minidl.nn.conv_transpose.ConvTranspose2d` share (PyTorch's
    ``_ConvNd``): the channel counts, kernel, stride, dilation and groups, which must divide both channel counts."""
    module.in_channels = check_int(name, "in_channels", in_channels)
    module.out_channels = check_int(name, "out_channels", out_channels)
    module.kernel_size = pair(name, "kernel_size", kernel_size)
    module.stride = pair(name, "stride", stride)
    module.dilation = pair(name, "dilation", dilation)
    module.groups = check_int(name, "groups", groups)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by "
            f"groups ({groups})"
        )


def conv_parameters(module: Module, name: str, weight_shape: tuple[int, ...], bias: Any) -> None:
    """Create a convolution's ``weight`` of ``weight_shape`` and, when ``bias``, its ``bias`` (one per output
    channel), in the default dtype on the current backend, and initialize them (``module.reset_parameters()``)."""
    if not isinstance(bias, bool):
        raise TypeError(f"{name}: bias must be a bool, got {bias!r}")
    xp, dtype = get_backend().xp, get_default_dtype()
    module.weight = Parameter(xp.empty(weight_shape, dtype=dtype))
    if bias:
        module.bias = Parameter(xp.empty((module.out_channels,), dtype=dtype))
    else:
        module.register_parameter("bias", None)
    module.reset_parameters()


class Conv2d(Module):
    r"""2-D convolution layer over (N, C, H, W) images (PyTorch's ``nn.Conv2d``).

    .. math::

        y_{n,o,i,j} = b_o + \sum_{c,p,q} W_{o,c,p,q}\, x_{n,\,g C_g + c,\; i S_H + p D_H - P_H,\; j S_W + q D_W - P_W}

    where :math:`C_g = C / groups` input channels feed each output channel, :math:`g = o \,//\, (O / groups)` is the
    group of output channel o, and x is zero outside the image (or padded by ``padding_mode``).

    Args:
        in_channels: C, the number of channels of the input.
        out_channels: O, the number of output channels (filters).
        kernel_size: int or (KH, KW).
        stride: int or (SH, SW). Default: 1.
        padding: int, (PH, PW), ``"same"`` (stride 1 only) or ``"valid"``. Default: 0.
        dilation: int or (DH, DW): spacing between kernel taps. Default: 1.
        groups: both C and O must be divisible by it; ``groups == in_channels`` is a depthwise convolution.
            Default: 1.
        bias: add a learnable bias. Default: True.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``. Default: ``"zeros"``.

    Attributes:
        weight: (O, C / groups, KH, KW), initialized U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
            fan_in = C / groups * KH * KW (PyTorch's kaiming_uniform_(a=sqrt(5))).
        bias: (O,), U(-1/sqrt(fan_in), 1/sqrt(fan_in)); None when ``bias=False``.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, O, OH, OW), OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1, likewise OW.
    Backward:
        db = sum of dout over (n, i, j);  dW = dout_col @ x_col^T;  dx = col2im(W_col^T @ dout_col)
        (per group; see :mod:`minidl.nn.conv`). A non-zero ``padding_mode`` pads first, and its backward adds the
        gradient of every padded copy back onto the pixel it copied.

    Examples:
        >>> import numpy as np
        >>> conv = Conv2d(3, 8, 3, padding=1)
        >>> y = conv(np.zeros((2, 3, 5, 5), np.float32))
        >>> y.shape
        (2, 8, 5, 5)
        >>> conv.backward(np.ones_like(y)).shape, conv.weight.grad.shape
        ((2, 3, 5, 5), (8, 3, 3, 3))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        name = "Conv2d"
        conv_hyperparameters(self, name, in_channels, out_channels, kernel_size, stride, dilation, groups)
        if isinstance(padding, str):
            _conv_padding(name, padding, *self.kernel_size, *self.dilation, *self.stride)  # validates
            self.padding: Any = padding
        else:
            self.padding = pair(name, "padding", padding, minimum=0)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {tuple(_PADDING_MODES)}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        conv_parameters(self, name, (out_channels, in_channels // groups, *self.kernel_size), bias)

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) for the weight, U(+-1/sqrt(fan_in)) for the bias."""
        init.default_layer_init_(self.weight, self.bias)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def _where(self) -> str:
        return f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size})"

    def _sides(self) -> tuple[int, int, int, int]:
        """The padding on each side, (top, bottom, left, right) (``'same'`` resolved for this layer's kernel)."""
        return _conv_padding(self._where(), self.padding, *self.kernel_size, *self.dilation, *self.stride)

    def _padded(self, x: Any) -> tuple[Any, Any, Any]:
        """``(x, padding, pad_cache)``: x padded first for a ``padding_mode`` other than zeros (then padding 0)."""
        if self.padding_mode == "zeros":
            return x, self.padding, None
        if isinstance(x, BatchNormReLUOutput):  # (the copies padding_mode pads with are of its output)
            x = x.computed()
        top, bottom, left, right = self._sides()
        x, pad_cache = F.pad2d_forward(x, (left, right, top, bottom), _PADDING_MODES[self.padding_mode])
        return x, 0, pad_cache

    def forward(self, x: Any, *, channel_sums: Any = None) -> Any:
        """The convolution of x (:func:`conv2d_forward`); ``channel_sums``, a (3, O) float64 array of shifts to fill
        with the per-channel sums of the output, is passed to the pair (what :class:`~minidl.nn.fusion.ConvBn2d`
        hands its BatchNorm in training). x may be a deferred BatchNorm+ReLU's output
        (:class:`~minidl.nn.BatchNormReLUOutput`, as a fused ResNet block hands ``conv2`` in training):
        the pair computes it as it reads it, and ``backward`` returns its gradient."""
        x, padding, pad_cache = self._padded(x)
        bias = None if self.bias is None else self.bias.data
        extra = {} if channel_sums is None else {"channel_sums": channel_sums}
        out, cache = F.conv2d_forward(
            x, self.weight.data, bias, self.stride, padding, self.dilation, self.groups, **extra
        )  # fmt: skip
        self.save_for_backward(cache, pad_cache)
        return out

    def backward(self, dout: Any, *, dx_add: Any = None) -> Any:
        """dx (dW and db accumulate into the parameters' ``.grad``); with ``dx_add`` (x's shape and dtype: another
        gradient of x, which also fed other layers), dx + dx_add: added by the pair :func:`conv2d_backward` where it
        can (zero padding, and the pair is minidl's: one you wrote need not take ``dx_add``), else by
        :func:`~minidl.nn.merge.add_forward` after it. A wrong ``dx_add`` raises before any ``.grad`` changes. With
        backward hooks, they see the convolution's own gradient, and ``dx_add`` is added (and its shape checked)
        after them."""
        cache, pad_cache = self.pop_saved()
        in_pair = dx_add is not None and pad_cache is None and is_reference("conv2d")
        extra = {"dx_add": dx_add} if in_pair else {}
        dx, dw, db = F.conv2d_backward(dout, cache, compute_dw=self.weight.requires_grad, **extra)
        if pad_cache is not None:
            dx = F.pad2d_backward(dx, pad_cache)
        if dx_add is not None and not in_pair:
            check_dx_add(f"{self._where()}.backward", dx_add, dx.shape, dx.dtype)
            dx = F.add_forward(dx, dx_add)[0]
        if dw is not None:
            self.weight.accumulate_grad(dw)
        if db is not None and self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx
