"""Assignment 2, part 6: a small CNN for CIFAR-10, built from minidl's modules (train it with train_cnn.py).

:func:`use_my_layers` runs minidl's modules on *your* pairs from layers.py: inside it, ``nn.Conv2d`` calls
``conv_forward_im2col``, ``nn.MaxPool2d`` calls ``max_pool_forward``, and so on (minidl's layers look their pairs
up in ``minidl.nn.functional`` at call time; see docs/design.md, section 3). Your pairs run in NumPy loops, so
training with them is slower than with minidl's kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from minidl import nn
from minidl.nn import functional as F


def build_cnn(num_classes=10):
    """Three blocks of [Conv2d 3x3 (padding 1) - BatchNorm2d - ReLU - MaxPool2d(2)] with 32, 64 and 128 channels,
    then Flatten, Dropout(0.3) and a Linear layer to ``num_classes`` scores; input (N, 3, 32, 32).

    Returns:
        an ``nn.Sequential``.
    """
    # BEGIN SOLUTION
    layers = []
    channels = [3, 32, 64, 128]
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    layers += [nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 4 * 4, num_classes)]
    return nn.Sequential(*layers)
    # END SOLUTION


def _square(where, value):
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    if a != b:
        raise ValueError(f"{where}: layers.py handles square values only, got {value}")
    return a


@contextlib.contextmanager
def use_my_layers(layers) -> Iterator[None]:
    """Inside the block minidl's Conv2d, MaxPool2d, BatchNorm2d and Dropout compute with the pairs of ``layers``
    (your layers.py module). Only what layers.py supports is accepted (square kernels, stride and padding;
    no dilation or groups)."""

    def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if _square("conv", dilation) != 1 or groups != 1:
            raise ValueError("conv: layers.py has no dilation or groups")
        return layers.conv_forward_im2col(x, weight, bias, _square("conv", stride), _square("conv", padding))

    def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        if _square("max_pool", padding) != 0 or _square("max_pool", dilation) != 1 or ceil_mode:
            raise ValueError("max_pool: layers.py has no padding, dilation or ceil_mode")
        stride = None if stride is None else _square("max_pool", stride)
        return layers.max_pool_forward(x, _square("max_pool", kernel_size), stride)

    pairs = {
        "conv2d": (conv2d_forward, lambda dout, cache, compute_dw=True: layers.conv_backward_im2col(dout, cache)),
        "max_pool2d": (max_pool2d_forward, layers.max_pool_backward),
        "batch_norm": (layers.batchnorm_forward, layers.batchnorm_backward),
        "dropout": (layers.dropout_forward, layers.dropout_backward),
    }
    saved = {op: (getattr(F, f"{op}_forward"), getattr(F, f"{op}_backward")) for op in pairs}
    try:
        for op, (forward, backward) in pairs.items():
            setattr(F, f"{op}_forward", forward)
            setattr(F, f"{op}_backward", backward)
        yield
    finally:
        for op, (forward, backward) in saved.items():
            setattr(F, f"{op}_forward", forward)
            setattr(F, f"{op}_backward", backward)
