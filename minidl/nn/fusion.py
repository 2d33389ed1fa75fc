r"""Fusion: running two or three layers as one pass over memory, with the same results.

A layer's forward reads its input from memory and writes its output back. For the cheap layers after a convolution
(BatchNorm, ReLU, a residual sum) that traffic *is* the cost, so a CNN step gets faster when consecutive layers
share one pass. minidl keeps every layer a separate module (their state_dict keys, their ``backward``) and fuses at
run time, in the few places where the pattern is certain:

* **BatchNorm -> ReLU** (training and eval): :func:`~minidl.nn.normalization.batch_norm_relu_forward`, the ReLU
  applied inside the normalize loop; its backward recomputes the ReLU mask from x instead of storing it.
* **residual sum -> ReLU** (the end of a ResNet block): :func:`~minidl.nn.activation.add_relu_forward`.
* **Conv2d -> BatchNorm (-> ReLU)** in inference (eval mode under ``minidl.no_grad()``, where no backward will
  run): the BatchNorm is folded into the convolution's weights,

  .. math:: \mathrm{BN}(W * x + b) = (s W) * x + (s (b - \mu) + \beta), \qquad s = \gamma / \sqrt{\sigma^2 +
            \epsilon}

  (per output channel, with the running mean :math:`\mu` and variance :math:`\sigma^2`), so the BatchNorm pass
  disappears, and a ReLU after it is applied in the convolution's own output pass.

:class:`~minidl.nn.Sequential` applies these to its children and the ResNet blocks to their layers. On the NumPy
backend the fused functionals are literally the layers' functionals one after the other; on the Numba backend
they are single kernels; folding changes only float roundings. Nothing is fused when a module is not the plain
PyTorch-like layer (a ReLU replaced by ``nn.GELU()`` runs the GELU; a subclass of BatchNorm2d runs its own
``forward``) or when a module's ``forward`` or ``backward`` is replaced on the instance (as :func:`minidl.summary`
and ``benchmarks/bench_layers.py`` do to watch every layer). A fused pair keeps its cache in the BatchNorm: run the
backward through the container (``Sequential.backward``, the block's ``backward``), not layer by layer.

Examples:
    >>> import numpy as np
    >>> import minidl
    >>> from minidl import nn
    >>> _ = minidl.manual_seed(0)
    >>> block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    >>> with minidl.no_grad():
    ...     fused = block(x)                       # one folded convolution, then the ReLU
    >>> separate = block[2](block[1](block[0](x)))  # the three layers one by one
    >>> bool(np.allclose(fused, separate, atol=1e-5))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minidl.backend import get_array_module
from minidl.grad_mode import is_grad_enabled
from minidl.nn.activation import ReLU, add_relu_forward
from minidl.nn.conv import Conv2d
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm

__all__ = ["backward_bn_relu", "forward_add_relu", "forward_bn_relu", "forward_conv_bn_relu"]


def _plain(module: Module) -> bool:
    """Neither ``forward`` nor ``backward`` replaced on the instance (a wrapper watching or changing the layer must
    see it run)."""
    return "forward" not in module.__dict__ and "backward" not in module.__dict__


def _is_relu(module: Module | None) -> bool:
    return module is not None and type(module) is ReLU and _plain(module)


def _bn_relu_fusable(bn: Module, relu: Module) -> bool:
    """A BatchNorm (the class itself: a subclass may override its forward) followed by a plain ReLU."""
    return type(bn) in (BatchNorm1d, BatchNorm2d) and _plain(bn) and _is_relu(relu)


def _conv_bn_foldable(conv: Module, bn: Module) -> bool:
    """A Conv2d followed by a BatchNorm using its running statistics, with no backward to come."""
    return (
        not is_grad_enabled()
        and type(conv) is Conv2d
        and _plain(conv)
        and type(bn) is BatchNorm2d  # (not a subclass, which may override forward)
        and _plain(bn)
        and not bn.training
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
    )


def _folded(conv: Conv2d, bn: Any) -> tuple[Any, Any]:
    """``(s W, s (b - mean) + beta)`` with s = gamma / sqrt(running_var + eps), per output channel."""
    xp = get_array_module(conv.weight.data)
    scale = 1.0 / xp.sqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.data
    shift = -bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias.data * scale
    if bn.bias is not None:
        shift = shift + bn.bias.data
    dtype = conv.weight.data.dtype
    weight = conv.weight.data * scale.reshape(-1, 1, 1, 1).astype(dtype, copy=False)
    return weight, shift.astype(dtype, copy=False)


def forward_bn_relu(bn: Module, relu: Module, x: Any) -> Any:
    """``relu(bn(x))``: one pass (:func:`~minidl.nn.normalization.batch_norm_relu_forward`) when ``bn`` is a
    BatchNorm and ``relu`` a plain ReLU, else the two modules. The ReLU module then keeps no cache: run the pair's
    backward with :func:`backward_bn_relu`.

    Shape:
        - x: what ``bn`` takes, (N, C, *) - Output: the same.
    """
    if _bn_relu_fusable(bn, relu):
        return bn._forward(x, relu=True)
    return relu(bn(x))


def backward_bn_relu(bn: Module, relu: Module, dout: Any) -> Any:
    """The backward of :func:`forward_bn_relu`: through the fused pass, or through ``relu`` then ``bn``."""
    if isinstance(bn, _BatchNorm) and bn._fused_relu_pending():
        return bn.backward(dout)
    return bn.backward(relu.backward(dout))


def forward_conv_bn_relu(conv: Module, bn: Module, relu: Module | None, x: Any) -> Any:
    """``relu(bn(conv(x)))`` (``bn(conv(x))`` for ``relu`` None): in inference with the BatchNorm folded into the
    convolution's weights, else through :func:`forward_bn_relu` (or the two modules).

    Shape:
        - x: (N, C, H, W), C = ``conv.in_channels`` - Output: (N, O, OH, OW), ``conv``'s output (O = ``bn``'s
          num_features).
    """
    if _conv_bn_foldable(conv, bn):
        if _is_relu(relu):  # the ReLU in the convolution's output pass too
            return conv._forward(x, *_folded(conv, bn), relu=True)
        y = conv._forward(x, *_folded(conv, bn))
        return y if relu is None else relu(y)
    y = conv(x)
    if relu is None:
        return bn(y)
    return forward_bn_relu(bn, relu, y)


def forward_add_relu(relu: Module, a: Any, b: Any) -> Any:
    """``relu(a + b)`` for a ReLU module: one pass (:func:`~minidl.nn.activation.add_relu_forward`), the module
    keeping the cache its own forward would keep, so ``relu.backward`` works as usual. Another activation module,
    or inputs of different shapes or dtypes, are simply ``relu(a + b)``.

    Shape:
        - a, b: the same shape for the one-pass path - Output: that shape.
    """
    if _is_relu(relu) and tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype:
        out, mask = add_relu_forward(a, b)
        relu._save_for_backward((mask, tuple(out.shape)))
        return out
    return relu(a + b)


def fused_forward(modules: Sequence[Module], i: int, x: Any) -> tuple[Any, int]:
    """Run ``modules[i]`` on x, fused with the next one or two when a pattern above starts at ``i``.

    Returns:
        ``(output, number of modules used)``: 3 for conv-BN-ReLU folded, 2 for conv-BN folded or BN-ReLU, else 1.
    """
    nxt = modules[i + 1] if i + 1 < len(modules) else None
    if nxt is not None and _conv_bn_foldable(modules[i], nxt):
        relu = modules[i + 2] if i + 2 < len(modules) and _is_relu(modules[i + 2]) else None
        return forward_conv_bn_relu(modules[i], nxt, relu, x), 2 if relu is None else 3
    if nxt is not None and _bn_relu_fusable(modules[i], nxt):
        return forward_bn_relu(modules[i], nxt, x), 2
    return modules[i](x), 1
