r"""MobileNetV3 (Howard et al., "Searching for MobileNetV3", ICCV 2019) and EfficientNet-B0 (Tan and Le,
"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019), with torchvision's structure
and state_dict keys.

Both are built from MobileNetV2's inverted residual (1x1 expand, depthwise k x k, 1x1 linear projection; see
:mod:`minidl.models.mobilenet`) with a **squeeze-and-excitation** gate after the depthwise convolution
(:class:`~minidl.models._blocks.SqueezeExcitation`). They differ in what a search chose:

* MobileNetV3 (found by platform-aware architecture search, then NetAdapt) mixes ReLU and **hard-swish**,
  :math:`x\,\mathrm{relu6}(x + 3) / 6`, a cheap stand-in for swish; its SE gate uses the **hard-sigmoid**
  :math:`\mathrm{relu6}(x + 3) / 6`; BatchNorm with eps 1e-3 and momentum 0.01.
* EfficientNet-B0 (found by a search over accuracy and FLOPs; B1-B7 scale its depth, width and resolution together)
  uses SiLU (swish) everywhere, an SE gate of a quarter of the block's *input* width, and **stochastic depth** on
  the residual blocks (block k of K dropped with probability 0.2 k / K while training).

Backward of a block: with the residual, :math:`dx = dy + \mathrm{block}^\top(\mathrm{DropPath}^\top(dy))`; without,
:math:`dx = \mathrm{block}^\top(dy)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.models._blocks import SqueezeExcitation
from minidl.models.mobilenet import Conv2dNormActivation, make_divisible
from minidl.nn import init
from minidl.nn._checks import check_float, check_layout
from minidl.nn.activation import Hardsigmoid, Hardswish, ReLU, Sigmoid, SiLU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.merge import Add
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d
from minidl.nn.stochastic_depth import StochasticDepth

__all__ = [
    "EfficientNet",
    "InvertedResidualConfig",
    "InvertedResidualSE",
    "MBConvConfig",
    "MobileNetV3",
    "efficientnet_b0",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]


class InvertedResidualConfig(NamedTuple):
    """One block of MobileNetV3 (the paper's Tables 1 and 2): input width, kernel, expanded width, output width,
    whether it has an SE gate, its activation (``"RE"``: ReLU, ``"HS"``: hard-swish), stride."""

    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    activation: str
    stride: int


class MBConvConfig(NamedTuple):
    """One stage of EfficientNet-B0: expand ratio, kernel, stride of its first block, input and output widths,
    number of blocks."""

    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int


class InvertedResidualSE(Module):
    """An inverted residual with an SE gate (MobileNetV3's block and EfficientNet's MBConv): ``block`` is a
    Sequential of [1x1 expand,] depthwise, [SE,] 1x1 projection, as torchvision's ``block.0``, ``block.1``, ....

    Args:
        input_channels, expanded_channels, out_channels: C, E, O.
        kernel, stride: the depthwise convolution's.
        activation: the class of the expand and depthwise activations.
        squeeze_channels: the SE bottleneck width (None: no SE gate).
        se_activation, se_scale_activation: the SE block's activation classes.
        norm_layer: builds the BatchNorms.
        stochastic_depth_prob: drop probability of the residual branch (EfficientNet); None: no such module.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, OH, OW), OH = floor((H - 1) / stride) + 1.

    Examples:
        >>> block = InvertedResidualSE(8, 16, 8, kernel=3, stride=1, activation=Hardswish, squeeze_channels=8)
        >>> y = block(np.ones((2, 8, 5, 5), np.float32))
        >>> block.use_res_connect, y.shape, block.backward(np.ones_like(y)).shape
        (True, (2, 8, 5, 5), (2, 8, 5, 5))
    """

    def __init__(
        self,
        input_channels: int,
        expanded_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        activation: Callable[[], Module],
        squeeze_channels: int | None,
        se_activation: Callable[[], Module] = ReLU,
        se_scale_activation: Callable[[], Module] = Hardsigmoid,
        norm_layer: Callable[[int], Module] = BatchNorm2d,
        stochastic_depth_prob: float | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidualSE: stride must be 1 or 2, got {stride!r}")
        self.input_channels = input_channels
        self.use_res_connect = stride == 1 and input_channels == out_channels
        layers: list[Module] = []
        if expanded_channels != input_channels:
            layers.append(Conv2dNormActivation(input_channels, expanded_channels, 1, 1, 1, activation, norm_layer))
        layers.append(
            Conv2dNormActivation(
                expanded_channels, expanded_channels, kernel, stride, expanded_channels, activation, norm_layer
            )
        )
        if squeeze_channels is not None:
            layers.append(SqueezeExcitation(expanded_channels, squeeze_channels, se_activation, se_scale_activation))
        layers.append(Conv2dNormActivation(expanded_channels, out_channels, 1, 1, 1, None, norm_layer))
        self.block = Sequential(*layers)
        if stochastic_depth_prob is not None:
            self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.add = Add() if self.use_res_connect else None
        self.out_channels = out_channels

    def forward(self, x: Any) -> Any:
        check_layout(type(self).__name__, x, ndim=4, channels=self.input_channels)
        out = self.block(x)
        if not self.use_res_connect:
            return out
        if "stochastic_depth" in self._modules:
            out = self.stochastic_depth(out)
        return self.add(out, x)

    def backward(self, dout: Any) -> Any:
        if not self.use_res_connect:
            return self.block.backward(dout)
        d = self.add.backward(dout)  # to the branch and to the shortcut
        if "stochastic_depth" in self._modules:
            d_branch = self.stochastic_depth.backward(d)
        else:
            d_branch = d
        return d + self.block.backward(d_branch)


def _init_like_torchvision(model: Module) -> None:
    """Convs kaiming_normal_(fan_out) with bias 0, BatchNorms weight 1 / bias 0, in module order, as torchvision's
    MobileNetV3 and EfficientNet (each then initializes its Linear layers its own way)."""
    for m in model.modules():
        if isinstance(m, Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, BatchNorm2d):
            m.reset_parameters()


class MobileNetV3(Module):
    """MobileNetV3 with torchvision's module names (``features``, ``avgpool``, ``classifier``).

    Args:
        inverted_residual_setting: the blocks, as :class:`InvertedResidualConfig`.
        last_channel: the width of the classifier's hidden layer.
        num_classes: classes. Default: 1000.
        dropout: in the classifier. Default: 0.2.

    Shape:
        - Input: (N, 3, H, W).  - Output: (N, num_classes).

    Examples:
        >>> from minidl import models
        >>> net = models.mobilenet_v3_small(num_classes=10)
        >>> y = net(np.ones((2, 3, 32, 32), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 32, 32))
    """

    def __init__(
        self,
        inverted_residual_setting: Sequence[InvertedResidualConfig],
        last_channel: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_float("MobileNetV3", "dropout", dropout, low=0.0, high=1.0, high_open=True)
        norm_layer = functools.partial(BatchNorm2d, eps=0.001, momentum=0.01)
        first = inverted_residual_setting[0].input_channels
        layers: list[Module] = [Conv2dNormActivation(3, first, 3, 2, 1, Hardswish, norm_layer)]
        for cnf in inverted_residual_setting:
            activation = Hardswish if cnf.activation == "HS" else ReLU
            squeeze = make_divisible(cnf.expanded_channels // 4, 8) if cnf.use_se else None
            layers.append(
                InvertedResidualSE(
                    cnf.input_channels,
                    cnf.expanded_channels,
                    cnf.out_channels,
                    cnf.kernel,
                    cnf.stride,
                    activation,
                    squeeze,
                    norm_layer=norm_layer,
                )
            )
        last_in = inverted_residual_setting[-1].out_channels
        layers.append(Conv2dNormActivation(last_in, 6 * last_in, 1, 1, 1, Hardswish, norm_layer))
        self.features = Sequential(*layers)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten(1)
        self.classifier = Sequential(
            Linear(6 * last_in, last_channel), Hardswish(), Dropout(dropout), Linear(last_channel, num_classes)
        )
        _init_like_torchvision(self)
        for m in self.classifier:
            if isinstance(m, Linear):
                init.normal_(m.weight, 0.0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x: Any) -> Any:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))

    def backward(self, dout: Any) -> Any:
        return self.features.backward(self.avgpool.backward(self.flatten.backward(self.classifier.backward(dout))))


def _v3_setting(arch: str, width_mult: float) -> tuple[list[InvertedResidualConfig], int]:
    def c(channels: int) -> int:
        return make_divisible(channels * width_mult, 8)

    def b(i: int, k: int, e: int, o: int, se: bool, act: str, s: int) -> InvertedResidualConfig:
        return InvertedResidualConfig(c(i), k, c(e), c(o), se, act, s)

    if arch == "large":
        setting = [
            b(16, 3, 16, 16, False, "RE", 1), b(16, 3, 64, 24, False, "RE", 2), b(24, 3, 72, 24, False, "RE", 1),
            b(24, 5, 72, 40, True, "RE", 2), b(40, 5, 120, 40, True, "RE", 1), b(40, 5, 120, 40, True, "RE", 1),
            b(40, 3, 240, 80, False, "HS", 2), b(80, 3, 200, 80, False, "HS", 1), b(80, 3, 184, 80, False, "HS", 1),
            b(80, 3, 184, 80, False, "HS", 1), b(80, 3, 480, 112, True, "HS", 1), b(112, 3, 672, 112, True, "HS", 1),
            b(112, 5, 672, 160, True, "HS", 2), b(160, 5, 960, 160, True, "HS", 1), b(160, 5, 960, 160, True, "HS", 1),
        ]  # fmt: skip
        return setting, c(1280)
    setting = [
        b(16, 3, 16, 16, True, "RE", 2), b(16, 3, 72, 24, False, "RE", 2), b(24, 3, 88, 24, False, "RE", 1),
        b(24, 5, 96, 40, True, "HS", 2), b(40, 5, 240, 40, True, "HS", 1), b(40, 5, 240, 40, True, "HS", 1),
        b(40, 5, 120, 48, True, "HS", 1), b(48, 5, 144, 48, True, "HS", 1), b(48, 5, 288, 96, True, "HS", 2),
        b(96, 5, 576, 96, True, "HS", 1), b(96, 5, 576, 96, True, "HS", 1),
    ]  # fmt: skip
    return setting, c(1024)


def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0, **kwargs: Any) -> MobileNetV3:
    """MobileNetV3-Large: 5,483,032 parameters with 1000 classes (0.22 GMAC at 224x224)."""
    setting, last = _v3_setting("large", width_mult)
    return MobileNetV3(setting, last, num_classes=num_classes, **kwargs)


def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0, **kwargs: Any) -> MobileNetV3:
    """MobileNetV3-Small: 2,542,856 parameters with 1000 classes (0.06 GMAC at 224x224)."""
    setting, last = _v3_setting("small", width_mult)
    return MobileNetV3(setting, last, num_classes=num_classes, **kwargs)


class EfficientNet(Module):
    """EfficientNet (V1) with torchvision's module names (``features``, ``avgpool``, ``classifier``).

    Args:
        setting: the stages, as :class:`MBConvConfig`.
        dropout: before the classifier's Linear.
        stochastic_depth_prob: the largest drop probability; block k of K gets ``p * k / K``. Default: 0.2.
        num_classes: classes. Default: 1000.

    Shape:
        - Input: (N, 3, H, W).  - Output: (N, num_classes).

    Examples:
        >>> net = EfficientNet([MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(6, 3, 2, 8, 16, 2)], 0.2, num_classes=3)
        >>> y = net(np.ones((2, 3, 16, 16), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 3), (2, 3, 16, 16))
    """

    def __init__(
        self,
        setting: Sequence[MBConvConfig],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        check_float("EfficientNet", "stochastic_depth_prob", stochastic_depth_prob, low=0.0, high=1.0)
        first = setting[0].input_channels
        layers: list[Module] = [Conv2dNormActivation(3, first, 3, 2, 1, SiLU)]
        total = sum(cnf.num_layers for cnf in setting)
        block_id = 0
        for cnf in setting:
            stage = []
            for i in range(cnf.num_layers):
                c_in = cnf.input_channels if i == 0 else cnf.out_channels
                expanded = make_divisible(c_in * cnf.expand_ratio, 8)
                stage.append(
                    InvertedResidualSE(
                        c_in,
                        expanded,
                        cnf.out_channels,
                        cnf.kernel,
                        cnf.stride if i == 0 else 1,
                        SiLU,
                        max(1, c_in // 4),
                        se_activation=SiLU,
                        se_scale_activation=Sigmoid,
                        stochastic_depth_prob=stochastic_depth_prob * block_id / total,
                    )
                )
                block_id += 1
            layers.append(Sequential(*stage))
        last_in = setting[-1].out_channels
        layers.append(Conv2dNormActivation(last_in, 4 * last_in, 1, 1, 1, SiLU))
        self.features = Sequential(*layers)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten(1)
        self.classifier = Sequential(Dropout(dropout), Linear(4 * last_in, num_classes))
        _init_like_torchvision(self)
        head = self.classifier[1]
        init_range = 1.0 / math.sqrt(head.out_features)
        init.uniform_(head.weight, -init_range, init_range)
        init.zeros_(head.bias)

    def forward(self, x: Any) -> Any:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))

    def backward(self, dout: Any) -> Any:
        return self.features.backward(self.avgpool.backward(self.flatten.backward(self.classifier.backward(dout))))


def efficientnet_b0(num_classes: int = 1000, dropout: float = 0.2, **kwargs: Any) -> EfficientNet:
    """EfficientNet-B0: 5,288,548 parameters with 1000 classes (0.39 GMAC at 224x224)."""
    setting = [
        MBConvConfig(1, 3, 1, 32, 16, 1), MBConvConfig(6, 3, 2, 16, 24, 2), MBConvConfig(6, 5, 2, 24, 40, 2),
        MBConvConfig(6, 3, 2, 40, 80, 3), MBConvConfig(6, 5, 1, 80, 112, 3), MBConvConfig(6, 5, 2, 112, 192, 4),
        MBConvConfig(6, 3, 1, 192, 320, 1),
    ]  # fmt: skip
    return EfficientNet(setting, dropout, num_classes=num_classes, **kwargs)
