r"""Densely connected networks (Huang, Liu, van der Maaten and Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017): torchvision's ``densenet121/161/169/201`` and the paper's DenseNet-BC for 32x32 images.

In a dense block every layer sees the concatenation of the block's input and of all earlier layers' outputs, and
adds ``growth_rate`` (k) new channels:

.. math:: x_\ell = \big[\, x_{\ell-1},\ H_\ell(x_{\ell-1}) \,\big]_{\text{channels}}, \qquad
    H_\ell = \mathrm{conv}_{3\times3} \circ \mathrm{relu} \circ \mathrm{BN} \circ
    \mathrm{conv}_{1\times1} \circ \mathrm{relu} \circ \mathrm{BN}

(the "BC" bottleneck: the 1x1 conv gives ``bn_size * k`` channels). So a block of L layers turns C channels into
C + L k. Between blocks a *transition* (BN - ReLU - 1x1 conv halving the channels - 2x2 average pooling) shrinks
both the channels and the map.

Backward of a layer. The concatenation hands each part its own slice of the gradient; x also fed :math:`H_\ell`, so

.. math:: dx_{\ell-1} = dx_\ell[:, :C] + H_\ell.\mathrm{backward}\big(dx_\ell[:, C:]\big)

and a block's backward runs its layers in reverse: the gradient of an early feature map collects one term from
every later layer that read it.

torchvision's layer takes the list of earlier maps and concatenates them itself; here each layer returns the
concatenation, which holds the same values in the same order, so the two compute the same numbers. The
state_dict keys are torchvision's (``features.conv0.weight``, ``features.denseblock1.denselayer1.norm1.weight``,
``features.transition1.conv.weight``, ``features.norm5.running_mean``, ``classifier.weight``), and so is the
initialization (convs ``kaiming_normal_``, BN 1 and 0, the classifier's bias 0). Memory-efficient checkpointing
is not implemented: training keeps every layer's concatenated input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.backend import get_array_module
from minidl.nn import init
from minidl.nn._checks import check_int
from minidl.nn.activation import ReLU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling import AvgPool2d, MaxPool2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = [
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "Transition",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet_cifar",
]


class DenseLayer(Module):
    r"""One BC layer of a dense block: it appends ``growth_rate`` channels to its input (torchvision's
    ``_DenseLayer``: ``norm1``, ``relu1``, ``conv1``, ``norm2``, ``relu2``, ``conv2``).

    .. math:: y = [\, x,\ \mathrm{conv_2}(\mathrm{relu}(\mathrm{norm_2}(\mathrm{conv_1}(\mathrm{relu}(
        \mathrm{norm_1}(x)))))) \,]

    Args:
        num_input_features: C.
        growth_rate: k, the channels the layer adds.
        bn_size: the 1x1 bottleneck has ``bn_size * k`` channels.
        drop_rate: dropout probability on the new channels (0: no dropout). Default: 0.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C + k, H, W).

    Backward:
        dx = dy[:, :C] + H.backward(dy[:, C:]) (the input went to the output and into H).

    Examples:
        >>> layer = DenseLayer(16, growth_rate=12, bn_size=4)
        >>> y = layer(np.ones((2, 16, 5, 5), np.float32))
        >>> y.shape, layer.backward(np.ones_like(y)).shape
        ((2, 28, 5, 5), (2, 16, 5, 5))
    """

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_input_features = check_int("DenseLayer", "num_input_features", num_input_features)
        self.growth_rate = check_int("DenseLayer", "growth_rate", growth_rate)
        self.norm1 = BatchNorm2d(num_input_features)
        self.relu1 = ReLU()
        self.conv1 = Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = BatchNorm2d(bn_size * growth_rate)
        self.relu2 = ReLU()
        self.conv2 = Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.dropout = Dropout(drop_rate) if drop_rate > 0 else None

    def extra_repr(self) -> str:
        return f"{self.num_input_features}, growth_rate={self.growth_rate}"

    def forward(self, x: Any) -> Any:
        new = self.conv1(self.relu1(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        if self.dropout is not None:
            new = self.dropout(new)
        return get_array_module(x).concatenate([x, new], axis=1)

    def backward(self, dout: Any) -> Any:
        C = self.num_input_features
        d = dout[:, C:]
        if self.dropout is not None:
            d = self.dropout.backward(d)
        d = self.norm2.backward(self.relu2.backward(self.conv2.backward(d)))
        d = self.norm1.backward(self.relu1.backward(self.conv1.backward(d)))
        return dout[:, :C] + d  # x went to the output unchanged and into the layer: the gradients add

    def receptive_field_branches(self) -> list[list[Module]]:
        """The input passing through and the layer's convolutions, for :func:`minidl.summary`."""
        return [[], [self.conv1, self.conv2]]


class DenseBlock(Sequential):
    """``num_layers`` dense layers, named ``denselayer1``, ``denselayer2``, ... as torchvision's ``_DenseBlock``.

    Args:
        num_layers: L.
        num_input_features: C.
        bn_size, growth_rate, drop_rate: as :class:`DenseLayer`.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C + L * growth_rate, H, W).

    Backward:
        The layers' backward in reverse order (:class:`~minidl.nn.Sequential`).

    Examples:
        >>> block = DenseBlock(3, 8, bn_size=2, growth_rate=4)
        >>> block(np.ones((1, 8, 4, 4), np.float32)).shape, list(block._modules)
        ((1, 20, 4, 4), ['denselayer1', 'denselayer2', 'denselayer3'])
    """

    def __init__(
        self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        for i in range(check_int("DenseBlock", "num_layers", num_layers)):
            layer = DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)


class Transition(Sequential):
    """BN - ReLU - 1x1 conv - 2x2 average pooling between dense blocks (torchvision's ``_Transition``: ``norm``,
    ``relu``, ``conv``, ``pool``).

    Args:
        num_input_features: C.
        num_output_features: O (DenseNet-BC: C / 2).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, floor(H / 2), floor(W / 2)).

    Backward:
        The four layers' backward in reverse order.

    Examples:
        >>> Transition(16, 8)(np.ones((1, 16, 6, 6), np.float32)).shape
        (1, 8, 3, 3)
    """

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = BatchNorm2d(num_input_features)
        self.relu = ReLU()
        self.conv = Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = AvgPool2d(kernel_size=2, stride=2)


class DenseNet(Module):
    """DenseNet-BC with torchvision's layout: ``features`` (stem, dense blocks, transitions, ``norm5``), a ReLU,
    global average pooling and the linear ``classifier``.

    Args:
        growth_rate: k, the channels each layer adds. Default: 32.
        block_config: layers per dense block. Default: (6, 12, 24, 16) (DenseNet-121).
        num_init_features: channels of the stem convolution. Default: 64.
        bn_size: bottleneck width factor (``bn_size * k`` channels in each 1x1 conv). Default: 4.
        drop_rate: dropout after each layer. Default: 0.
        num_classes: outputs of ``classifier``. Default: 1000.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool: ``conv0``, ``norm0``, ``relu0``, ``pool0``) or
            ``"cifar"`` (the paper's 3x3/1 conv ``conv0`` only, for 32x32 images). Default: ``"imagenet"``.
        compression: the transitions keep ``floor(compression * C)`` channels (the "C" of BC). Default: 0.5.

    Shape:
        - Input: (N, 3, H, W).  - Output: (N, num_classes).

    Backward:
        classifier, flatten, avgpool, relu, features (each dense layer: its slice of the gradient plus its
        input's; see :class:`DenseLayer`).

    Examples:
        >>> net = DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=10, stem="cifar")
        >>> y = net(np.zeros((2, 3, 8, 8), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 8, 8))
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        stem: str = "imagenet",
        compression: float = 0.5,
    ) -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"DenseNet: stem must be 'imagenet' or 'cifar', got {stem!r}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"DenseNet: compression must be in (0, 1], got {compression}")
        self.num_classes = check_int("DenseNet", "num_classes", num_classes)
        self.stem = stem
        if stem == "imagenet":
            self.features = Sequential()
            self.features.add_module("conv0", Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False))
            self.features.add_module("norm0", BatchNorm2d(num_init_features))
            self.features.add_module("relu0", ReLU())
            self.features.add_module("pool0", MaxPool2d(kernel_size=3, stride=2, padding=1))
        else:
            self.features = Sequential()
            self.features.add_module("conv0", Conv2d(3, num_init_features, 3, padding=1, bias=False))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                out_features = int(num_features * compression)
                self.features.add_module(f"transition{i + 1}", Transition(num_features, out_features))
                num_features = out_features
        self.features.add_module("norm5", BatchNorm2d(num_features))
        self.relu = ReLU()
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.flatten = Flatten(1)
        self.classifier = Linear(num_features, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's init: convs ``kaiming_normal_`` (PyTorch's defaults: fan_in, gain sqrt 2), BN weight 1 and
        bias 0, the classifier's bias 0 (its weight keeps PyTorch's default)."""
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight)
            elif isinstance(m, BatchNorm2d):
                m.reset_parameters()
            elif isinstance(m, Linear):
                init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return f"stem={self.stem!r}, num_classes={self.num_classes}"

    def forward(self, x: Any) -> Any:
        return self.classifier(self.flatten(self.avgpool(self.relu(self.features(x)))))

    def backward(self, dout: Any) -> Any:
        d = self.avgpool.backward(self.flatten.backward(self.classifier.backward(dout)))
        return self.features.backward(self.relu.backward(d))


def densenet121(num_classes: int = 1000, **kwargs: Any) -> DenseNet:
    """DenseNet-121: k = 32, blocks (6, 12, 24, 16), 64 stem channels; 7,978,856 parameters with 1000 classes,
    2.83 GMAC at 224x224 (torchvision's ``densenet121``).

    Examples:
        >>> sum(p.size for p in densenet121().parameters())
        7978856
    """
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, **kwargs)


def densenet161(num_classes: int = 1000, **kwargs: Any) -> DenseNet:
    """DenseNet-161: k = 48, blocks (6, 12, 36, 24), 96 stem channels; 28,681,000 parameters with 1000 classes."""
    return DenseNet(48, (6, 12, 36, 24), 96, num_classes=num_classes, **kwargs)


def densenet169(num_classes: int = 1000, **kwargs: Any) -> DenseNet:
    """DenseNet-169: k = 32, blocks (6, 12, 32, 32), 64 stem channels; 14,149,480 parameters with 1000 classes."""
    return DenseNet(32, (6, 12, 32, 32), 64, num_classes=num_classes, **kwargs)


def densenet201(num_classes: int = 1000, **kwargs: Any) -> DenseNet:
    """DenseNet-201: k = 32, blocks (6, 12, 48, 32), 64 stem channels; 20,013,928 parameters with 1000 classes."""
    return DenseNet(32, (6, 12, 48, 32), 64, num_classes=num_classes, **kwargs)


def densenet_cifar(num_classes: int = 10, depth: int = 100, growth_rate: int = 12, **kwargs: Any) -> DenseNet:
    """DenseNet-BC for 32x32 images (the paper's section 3 CIFAR setup): a 3x3 stem of 2k channels, three dense
    blocks of (depth - 4) / 6 bottleneck layers, transitions halving the channels. DenseNet-BC-100 (k = 12):
    769,162 parameters with 10 classes, 0.29 GMAC at 32x32.

    Args:
        num_classes: outputs of ``classifier`` (first, as in every factory of the zoo). Default: 10.
        depth: 6n + 4 (100: 16 layers per block). Default: 100.
        growth_rate: k. Default: 12.
        **kwargs: passed to :class:`DenseNet` (``drop_rate``, ``bn_size``, ``compression``).

    Examples:
        >>> net = densenet_cifar(depth=40, growth_rate=12)
        >>> net(np.zeros((2, 3, 32, 32), np.float32)).shape, sum(p.size for p in net.parameters())
        ((2, 10), 176122)
    """
    depth = check_int("densenet_cifar", "depth", depth)
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"densenet_cifar: depth must be 6n + 4 with n >= 1 (e.g. 40, 100, 190), got {depth}")
    n = (depth - 4) // 6
    return DenseNet(growth_rate, (n, n, n), 2 * growth_rate, num_classes=num_classes, stem="cifar", **kwargs)
