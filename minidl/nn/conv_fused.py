r"""The fused convolution pairs: a convolution and what follows it in one pair, each with the plain pairs it is built
from as its reference (``minidl/nn/conv.py`` has the convolution's derivation).

* ``conv2d_relu``: relu(conv2d(x)), and ``conv2d_relu6``: relu6(conv2d(x)), what :func:`minidl.nn.fuse` runs for a
  folded Conv2d-BatchNorm2d-ReLU (ReLU6) in inference;
* ``conv2d_add_relu``: relu(conv2d(x) + residual), the end of a ResNet block in inference (its last convolution,
  the shortcut added, the ReLU).

The Numba backend replaces each as a whole (``minidl/backend/_numba_conv.py``): the activation, and the residual,
are applied in the convolution's own output pass.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from minidl.nn._checks import check_grad_output_of, check_residual
from minidl.nn.conv import ConvGeometry, _conv2d_setup
from minidl.nn.dispatch import F, kernel

__all__ = [
    "conv2d_add_relu_backward",
    "conv2d_add_relu_forward",
    "conv2d_relu6_backward",
    "conv2d_relu6_forward",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
]


# the fused pairs check the same arguments, under their own names
_conv2d_relu_setup = functools.partial(_conv2d_setup, where="conv2d_relu_forward")
_conv2d_relu6_setup = functools.partial(_conv2d_setup, where="conv2d_relu6_forward")


def _conv2d_add_relu_setup(
    x: Any, residual: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
    groups: int = 1,
) -> ConvGeometry:  # fmt: skip
    """Check :func:`conv2d_add_relu_forward`'s arguments: the convolution's, and a residual of the convolution
    output's shape and dtype (a sum never broadcasts here); return the geometry."""
    where = "conv2d_add_relu_forward"
    g = _conv2d_setup(x, weight, bias, stride, padding, dilation, groups, where=where)
    check_residual(where, x, residual, (x.shape[0], weight.shape[0], g.OH, g.OW), "the convolution's output")
    return g


class ConvReluCache(NamedTuple):
    """The cache of :func:`conv2d_relu_forward` and :func:`conv2d_relu6_forward`: the two pairs' caches (the
    convolution's, the activation's)."""

    conv: Any
    relu: Any


@kernel("conv2d_relu", setup=_conv2d_relu_setup, uses=("conv2d", "relu"))
def conv2d_relu_forward(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
) -> tuple[Any, Any]:
    r"""``relu(conv2d(x))``: a convolution and the ReLU after it (what :func:`minidl.nn.fuse` runs for a folded
    Conv2d-BatchNorm2d-ReLU in inference). The reference is the two pairs one after the other; the Numba backend's
    kernel applies the ReLU in the convolution's own output pass.

    .. math:: out = \max(0,\; \mathrm{conv2d}(x, W, b))

    Shape:
        - As :func:`conv2d_forward`.
    Backward:
        dconv = dout * [conv2d(x) > 0], then :func:`conv2d_backward` of it.

    Examples:
        >>> import numpy as np
        >>> out, _ = conv2d_relu_forward(np.ones((1, 1, 2, 2)), -np.ones((1, 1, 1, 1)), np.array([3.0]))
        >>> out[0, 0]
        array([[2., 2.],
               [2., 2.]])
    """
    # bad arguments: errors named after this pair (not conv2d_forward, which checks them again)
    _conv2d_relu_setup(x, weight, bias, stride, padding, dilation, groups)
    out, conv_cache = F.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    out, relu_cache = F.relu_forward(out)
    return out, ConvReluCache(conv_cache, relu_cache)


@kernel("conv2d_relu")
def conv2d_relu_backward(dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`conv2d_relu_forward`: ``(dx, dw, db)`` as :func:`conv2d_backward`'s.

    .. math:: dz = dout \odot [z > 0], \quad z = \mathrm{conv2d}(x, W, b)

    then ``(dx, dw, db) = conv2d_backward(dz)``.

    Shape:
        - As :func:`conv2d_backward`: dout (N, O, OH, OW); dx (N, C, H, W); dw (O, C / groups, KH, KW); db (O,).

    Examples:
        >>> import numpy as np
        >>> out, cache = conv2d_relu_forward(np.ones((1, 1, 2, 2)), np.array([[[[1.0]]], [[[-1.0]]]]), None)
        >>> dx, dw, db = conv2d_relu_backward(np.ones_like(out), cache)
        >>> dx[0, 0], dw.ravel()
        (array([[1., 1.],
               [1., 1.]]), array([4., 0.]))
    """
    conv_cache, relu_cache = cache
    check_grad_output_of("conv2d_relu_backward", dout, relu_cache)
    return F.conv2d_backward(F.relu_backward(dout, relu_cache), conv_cache, compute_dw=compute_dw)


@kernel("conv2d_relu6", setup=_conv2d_relu6_setup, uses=("conv2d", "hardtanh"))
def conv2d_relu6_forward(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
) -> tuple[Any, Any]:
    r"""``relu6(conv2d(x))``: a convolution and the ReLU6 after it (what :func:`minidl.nn.fuse` runs for a folded
    Conv2d-BatchNorm2d-ReLU6 in inference: MobileNetV2's layers). The reference is the two pairs one after the other
    (ReLU6 is hardtanh(0, 6)); the Numba backend's kernel clamps in the convolution's own output pass.

    .. math:: out = \min(\max(0,\; \mathrm{conv2d}(x, W, b)),\; 6)

    Shape:
        - As :func:`conv2d_forward`.
    Backward:
        dconv = dout * [0 < conv2d(x) < 6], then :func:`conv2d_backward` of it.

    Examples:
        >>> import numpy as np
        >>> out, _ = conv2d_relu6_forward(np.ones((1, 1, 1, 3)), np.ones((1, 1, 1, 1)), np.array([3.0]))
        >>> out  # conv2d gives 4: inside (0, 6)
        array([[[[4., 4., 4.]]]])
        >>> conv2d_relu6_forward(np.ones((1, 1, 1, 1)), np.full((1, 1, 1, 1), 9.0), None)[0].ravel()
        array([6.])
    """
    # bad arguments: errors named after this pair (not conv2d_forward, which checks them again)
    _conv2d_relu6_setup(x, weight, bias, stride, padding, dilation, groups)
    out, conv_cache = F.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    out, clamp_cache = F.hardtanh_forward(out, 0.0, 6.0)
    return out, ConvReluCache(conv_cache, clamp_cache)


@kernel("conv2d_relu6")
def conv2d_relu6_backward(dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`conv2d_relu6_forward`: ``(dx, dw, db)`` as :func:`conv2d_backward`'s.

    .. math:: dz = dout \odot [0 < z < 6], \quad z = \mathrm{conv2d}(x, W, b)

    then ``(dx, dw, db) = conv2d_backward(dz)`` (the flat parts of the clamp pass no gradient, nor its corners).

    Shape:
        - As :func:`conv2d_backward`: dout (N, O, OH, OW); dx (N, C, H, W); dw (O, C / groups, KH, KW); db (O,).

    Examples:
        >>> import numpy as np
        >>> x, w = np.array([[[[1.0, 2.0, 8.0]]]]), np.ones((1, 1, 1, 1))
        >>> out, cache = conv2d_relu6_forward(x, w, None)  # 8 is clamped to 6: no gradient there
        >>> dx, dw, db = conv2d_relu6_backward(np.ones_like(out), cache)
        >>> dx.ravel(), dw.ravel()
        (array([1., 1., 0.]), array([3.]))
    """
    conv_cache, clamp_cache = cache
    check_grad_output_of("conv2d_relu6_backward", dout, clamp_cache)
    return F.conv2d_backward(F.hardtanh_backward(dout, clamp_cache), conv_cache, compute_dw=compute_dw)


class ConvAddReluCache(NamedTuple):
    """The cache of :func:`conv2d_add_relu_forward`: the convolution's and the sum-and-ReLU's."""

    conv: Any
    add_relu: Any


@kernel("conv2d_add_relu", setup=_conv2d_add_relu_setup, uses=("conv2d", "add_relu"))
def conv2d_add_relu_forward(
    x: Any, residual: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
    groups: int = 1,
) -> tuple[Any, Any]:  # fmt: skip
    r"""``relu(conv2d(x) + residual)``: the end of a ResNet block, its last convolution (with the BatchNorm folded in,
    in inference), the shortcut added and the ReLU, as one pair (what :func:`minidl.nn.fuse` runs there; PyTorch's
    quantization fuses the same ``conv-add-relu``). The reference is :func:`conv2d_forward` then
    :func:`~minidl.nn.merge.add_relu_forward`; the Numba backend's kernel adds the residual and applies the ReLU
    in the convolution's own output pass (Winograd, and the im2row and 1 x 1 products into a ``channels_last``
    output; the other algorithms add it in one more pass), so there the convolution's output is not stored and read
    back.

    .. math:: out = \max\big(0,\; \mathrm{conv2d}(x, W, b) + r\big)

    Args:
        x, weight, bias, stride, padding, dilation, groups: as :func:`conv2d_forward`'s.
        residual: r, the shortcut: the convolution output's shape (N, O, OH, OW) and dtype.

    Shape:
        - x: (N, C, H, W); residual and output: (N, O, OH, OW), as :func:`conv2d_forward`'s output.
    Backward:
        dz = dout * [conv2d(x) + r > 0]; dr = dz (a sum passes its gradient to each term), and
        ``(dx, dw, db) = conv2d_backward(dz)``.

    Examples:
        >>> import numpy as np
        >>> x, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1))
        >>> residual = np.array([[[[-3.0, 0.5], [-0.5, 2.0]]]])
        >>> out, cache = conv2d_add_relu_forward(x, residual, w)  # relu(1 + r)
        >>> out[0, 0]
        array([[0. , 1.5],
               [0.5, 3. ]])
        >>> dx, dres, dw, db = conv2d_add_relu_backward(np.ones_like(out), cache)
        >>> dres[0, 0], dw.ravel()
        (array([[0., 1.],
               [1., 1.]]), array([3.]))
    """
    # bad arguments: errors named after this pair (not conv2d_forward, which checks them again)
    _conv2d_add_relu_setup(x, residual, weight, bias, stride, padding, dilation, groups)
    out, conv_cache = F.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    out, add_relu_cache = F.add_relu_forward(out, residual)
    return out, ConvAddReluCache(conv_cache, add_relu_cache)


@kernel("conv2d_add_relu")
def conv2d_add_relu_backward(dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any, Any]:
    r"""Gradients of :func:`conv2d_add_relu_forward`: ``(dx, dresidual, dw, db)``, in the order of its inputs
    (``dw`` None when not ``compute_dw``, ``db`` None without a bias).

    .. math:: dz = dout \odot [z + r > 0], \quad z = \mathrm{conv2d}(x, W, b); \qquad dr = dz

    then ``(dx, dw, db) = conv2d_backward(dz)``.

    Shape:
        - dout, dresidual: (N, O, OH, OW); dx (N, C, H, W); dw (O, C / groups, KH, KW); db (O,).

    Examples:
        >>> import numpy as np
        >>> x, residual, w = np.ones((1, 1, 1, 2)), np.array([[[[1.0, -5.0]]]]), np.ones((1, 1, 1, 1))
        >>> out, cache = conv2d_add_relu_forward(x, residual, w)
        >>> dx, dres, dw, db = conv2d_add_relu_backward(np.ones_like(out), cache)
        >>> dx.ravel(), dres.ravel(), dw.ravel(), db
        (array([1., 0.]), array([1., 0.]), array([1.]), None)
    """
    conv_cache, add_relu_cache = cache
    check_grad_output_of("conv2d_add_relu_backward", dout, add_relu_cache)
    dz = F.add_relu_backward(dout, add_relu_cache)
    dx, dw, db = F.conv2d_backward(dz, conv_cache, compute_dw=compute_dw)
    return dx, dz, dw, db
