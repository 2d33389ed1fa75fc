r"""Wide residual networks for CIFAR (Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016): WRN-d-k.

A WRN is a pre-activation ResNet (He et al., "Identity Mappings in Deep Residual Networks", 2016) made shallower
and k times wider: a 3x3 stem of 16 channels, three stages of n = (d - 4) / 6 blocks with 16k, 32k and 64k
channels (strides 1, 2, 2), then BN - ReLU - global average pooling - linear. WRN-16-4 (n = 2, 64/128/256
channels) has 2.75M parameters and trains on CIFAR-10 to about 95% in the paper.

A **pre-activation block** puts BatchNorm and ReLU *before* each convolution, with optional dropout between the
two convolutions (the paper's WRN-d-k-dropout):

.. math:: a = \mathrm{relu}(\mathrm{bn_1}(x)), \qquad
    y = \mathrm{conv_2}\big(\mathrm{dropout}(\mathrm{relu}(\mathrm{bn_2}(\mathrm{conv_1}(a))))\big) + s

where the shortcut :math:`s` is x itself when the shape is kept, and the 1x1 convolution ``shortcut`` of the
*pre-activated* a when the channels or the stride change (as in the authors' code). Nothing follows the sum: the
identity path runs from the input to the output untouched.

Backward of a block, with :math:`dy` the gradient of y: the sum hands dy to both terms; the body gives
:math:`da` through conv2, dropout, relu, bn2, conv1; with a projection, :math:`da` also collects
``shortcut.backward(dy)`` and :math:`dx` = bn1.backward(relu.backward(da)); without one,
:math:`dx = dy + \mathrm{bn_1.backward}(\mathrm{relu.backward}(da))`.

Initialization as the authors' code: convs ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, BN weight 1
and bias 0, the Linear bias 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn import init
from minidl.nn._checks import check_int
from minidl.nn.activation import ReLU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.merge import Add
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = ["PreActBlock", "WideResNet", "wide_resnet_cifar"]


class PreActBlock(Module):
    r"""A pre-activation residual block with two 3x3 convolutions (WRN's "B(3,3)" block).

    .. math:: y = \mathrm{conv_2}(\mathrm{dropout}(\mathrm{relu_2}(\mathrm{bn_2}(\mathrm{conv_1}(a))))) + s,
        \qquad a = \mathrm{relu_1}(\mathrm{bn_1}(x)),\quad s = x \text{ or } \mathrm{shortcut}(a)

    Args:
        in_planes: C.
        out_planes: O.
        stride: of ``conv1`` and of the shortcut. Default: 1.
        dropout: the probability between the convolutions (0: none). Default: 0.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, OH, OW), OH = floor((H - 1) / stride) + 1, likewise OW.

    Backward:
        dbody = add.backward(dy), then conv2, dropout, relu2, bn2, conv1 in reverse gives da;
        with a projection: da += shortcut.backward(dy), dx = bn1.backward(relu1.backward(da));
        without: dx = dy + bn1.backward(relu1.backward(da)).

    Examples:
        >>> block = PreActBlock(16, 32, stride=2)
        >>> y = block(np.ones((2, 16, 8, 8), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((2, 32, 4, 4), (2, 16, 8, 8))
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_planes = check_int("PreActBlock", "in_planes", in_planes)
        self.out_planes = check_int("PreActBlock", "out_planes", out_planes)
        self.stride = check_int("PreActBlock", "stride", stride)
        self.bn1 = BatchNorm2d(in_planes)
        self.relu1 = ReLU()
        self.conv1 = Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_planes)
        self.relu2 = ReLU()
        self.dropout = Dropout(dropout) if dropout > 0 else None
        self.conv2 = Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        projection = in_planes != out_planes or stride != 1
        self.shortcut = Conv2d(in_planes, out_planes, 1, stride=stride, bias=False) if projection else None
        self.add = Add()

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"

    def forward(self, x: Any) -> Any:
        a = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(a)))
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.conv2(out)
        return self.add(out, x if self.shortcut is None else self.shortcut(a))

    def backward(self, dout: Any) -> Any:
        dz = self.add.backward(dout)  # the sum hands dout to the body and to the shortcut
        d = self.conv2.backward(dz)
        if self.dropout is not None:
            d = self.dropout.backward(d)
        da = self.conv1.backward(self.bn2.backward(self.relu2.backward(d)))
        if self.shortcut is not None:  # the projection read a: its gradient joins the body's
            return self.bn1.backward(self.relu1.backward(da + self.shortcut.backward(dz)))
        return dz + self.bn1.backward(self.relu1.backward(da))  # the identity carried dz to x

    def receptive_field_branches(self) -> list[list[Module]]:
        """Body and shortcut, for :func:`minidl.summary`'s receptive field (``[]`` is the identity)."""
        return [[self.conv1, self.conv2], [] if self.shortcut is None else [self.shortcut]]


class WideResNet(Module):
    """WRN-depth-k for 32x32 images: ``conv1``, ``block1``-``block3`` (each a Sequential of :class:`PreActBlock`),
    ``bn``, ``relu``, global average pooling, ``fc``.

    Args:
        depth: 6n + 4. Default: 16.
        widen_factor: k. Default: 4.
        num_classes: outputs of ``fc``. Default: 10.
        dropout: inside every block. Default: 0.

    Shape:
        - Input: (N, 3, H, W).  - Output: (N, num_classes). The map shrinks by 4 (32 -> 8).

    Backward:
        fc, flatten, avgpool, relu, bn, the stages in reverse, conv1.

    Examples:
        >>> net = WideResNet(depth=10, widen_factor=1)
        >>> y = net(np.zeros((2, 3, 16, 16), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 16, 16))
    """

    def __init__(self, depth: int = 16, widen_factor: int = 4, num_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        depth = check_int("WideResNet", "depth", depth)
        self.widen_factor = check_int("WideResNet", "widen_factor", widen_factor)
        self.num_classes = check_int("WideResNet", "num_classes", num_classes)
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        self.depth = depth
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False)
        in_planes = widths[0]
        for i, (planes, stride) in enumerate(zip(widths[1:], (1, 2, 2), strict=True)):
            blocks = [PreActBlock(in_planes if j == 0 else planes, planes, stride if j == 0 else 1, dropout)
                      for j in range(n)]  # fmt: skip
            self.add_module(f"block{i + 1}", Sequential(*blocks))
            in_planes = planes
        self.bn = BatchNorm2d(in_planes)
        self.relu = ReLU()
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten(1)
        self.fc = Linear(in_planes, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Convs ``kaiming_normal_(fan_out, relu)``, BN weight 1 and bias 0, the Linear bias 0."""
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BatchNorm2d):
                m.reset_parameters()
            elif isinstance(m, Linear):
                init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, widen_factor={self.widen_factor}, num_classes={self.num_classes}"

    def forward(self, x: Any) -> Any:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.flatten(self.avgpool(self.relu(self.bn(x)))))

    def backward(self, dout: Any) -> Any:
        d = self.bn.backward(self.relu.backward(self.avgpool.backward(self.flatten.backward(self.fc.backward(dout)))))
        return self.conv1.backward(self.block1.backward(self.block2.backward(self.block3.backward(d))))


def wide_resnet_cifar(num_classes: int = 10, depth: int = 16, widen_factor: int = 4, **kwargs: Any) -> WideResNet:
    """WRN-depth-widen_factor for CIFAR; the defaults give WRN-16-4: 2,748,890 parameters with 10 classes,
    0.39 GMAC at 32x32.

    Args:
        num_classes: outputs (first, as in every factory of the zoo). Default: 10.
        depth: 6n + 4. Default: 16.
        widen_factor: k. Default: 4.
        **kwargs: passed to :class:`WideResNet` (``dropout``; the paper uses 0.3).

    Examples:
        >>> net = wide_resnet_cifar()
        >>> net(np.zeros((1, 3, 32, 32), np.float32)).shape, sum(p.size for p in net.parameters())
        ((1, 10), 2748890)
    """
    return WideResNet(depth, widen_factor, num_classes, **kwargs)
