r"""ShuffleNet V2 (Ma, Zhang, Zheng and Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018), torchvision's ``shufflenet_v2_x0_5`` ... ``shufflenet_v2_x2_0``.

Each unit works on half of the channels and shuffles them afterwards, so that the next unit's halves mix both:

* stride 1: split the C channels into two halves :math:`x_1, x_2`; keep :math:`x_1` as it is and send :math:`x_2`
  through ``branch2`` (1x1 conv - BN - ReLU - depthwise 3x3 conv - BN - 1x1 conv - BN - ReLU);
* stride 2: both branches see the whole input: ``branch1`` (depthwise 3x3/2 - BN - 1x1 - BN - ReLU) and
  ``branch2`` (with its depthwise conv at stride 2), each giving half of the output channels;

then concatenate the two halves and interleave them with a channel shuffle of 2 groups
(:class:`~minidl.nn.ChannelShuffle`):

.. math:: y = \mathrm{shuffle}_2\big([\,x_1,\ \mathrm{branch2}(x_2)\,]\big) \quad\text{or}\quad
    y = \mathrm{shuffle}_2\big([\,\mathrm{branch1}(x),\ \mathrm{branch2}(x)\,]\big)

The state_dict keys are torchvision's (``conv1.0.weight``, ``stage2.0.branch1.0.weight``,
``stage2.1.branch2.3.weight``, ``conv5.1.running_var``, ``fc.weight``); torchvision leaves PyTorch's default
initialization, and so does minidl. The global pooling is a mean over H and W (``AdaptiveAvgPool2d(1)`` here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.backend import get_array_module
from minidl.nn._checks import check_int
from minidl.nn.activation import ReLU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling import MaxPool2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d
from minidl.nn.shuffle import ChannelShuffle

__all__ = [
    "ShuffleNetV2",
    "ShuffleUnit",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]


def _depthwise(channels: int, stride: int) -> Conv2d:
    """3x3 depthwise convolution (one filter per channel, ``groups = channels``), no bias."""
    return Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, groups=channels, bias=False)


class ShuffleUnit(Module):
    r"""A ShuffleNet V2 unit (torchvision calls it ``InvertedResidual``): two branches on the channel halves (stride
    1) or on the whole input (stride 2), concatenated, then a channel shuffle of 2 groups.

    .. math:: y = \mathrm{shuffle}_2([x_{:C/2},\ \mathrm{branch2}(x_{C/2:})]) \ (\text{stride } 1), \qquad
        y = \mathrm{shuffle}_2([\mathrm{branch1}(x),\ \mathrm{branch2}(x)]) \ (\text{stride } 2)

    Args:
        inp: C, the input channels.
        oup: O, the output channels (even; with stride 1, O = C).
        stride: 1 or 2 (torchvision accepts up to 3).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, OH, OW), OH = floor((H - 1) / stride) + 1, likewise OW.

    Backward:
        d = shuffle.backward(dy), then split into its halves d1, d2 (O / 2 channels each). Stride 1:
        dx = [d1, branch2.backward(d2)] (the kept half passes its gradient through). Stride 2: both branches read
        all of x, so dx = branch1.backward(d1) + branch2.backward(d2).

    Examples:
        >>> unit = ShuffleUnit(24, 48, stride=2)
        >>> y = unit(np.ones((2, 24, 8, 8), np.float32))
        >>> y.shape, unit.backward(np.ones_like(y)).shape
        ((2, 48, 4, 4), (2, 24, 8, 8))
    """

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.inp = check_int("ShuffleUnit", "inp", inp)
        self.oup = check_int("ShuffleUnit", "oup", oup)
        self.stride = check_int("ShuffleUnit", "stride", stride)
        if not 1 <= stride <= 3:
            raise ValueError(f"ShuffleUnit: stride must be 1, 2 or 3, got {stride}")
        branch_features = oup // 2
        if oup % 2 != 0 or (stride == 1 and inp != 2 * branch_features):
            raise ValueError(
                f"ShuffleUnit: expected an even oup and, with stride 1, inp == oup (the halves pass through), "
                f"got inp={inp}, oup={oup}, stride={stride}"
            )
        if stride > 1:
            self.branch1 = Sequential(
                _depthwise(inp, stride),
                BatchNorm2d(inp),
                Conv2d(inp, branch_features, kernel_size=1, bias=False),
                BatchNorm2d(branch_features),
                ReLU(),
            )
        else:
            self.branch1 = None
        self.branch2 = Sequential(
            Conv2d(inp if stride > 1 else branch_features, branch_features, kernel_size=1, bias=False),
            BatchNorm2d(branch_features),
            ReLU(),
            _depthwise(branch_features, stride),
            BatchNorm2d(branch_features),
            Conv2d(branch_features, branch_features, kernel_size=1, bias=False),
            BatchNorm2d(branch_features),
            ReLU(),
        )
        self.shuffle = ChannelShuffle(2)

    def extra_repr(self) -> str:
        return f"{self.inp}, {self.oup}, stride={self.stride}"

    def forward(self, x: Any) -> Any:
        xp = get_array_module(x)
        if self.stride == 1:
            half = x.shape[1] // 2
            out = xp.concatenate([x[:, :half], self.branch2(x[:, half:])], axis=1)
        else:
            out = xp.concatenate([self.branch1(x), self.branch2(x)], axis=1)
        return self.shuffle(out)

    def backward(self, dout: Any) -> Any:
        d = self.shuffle.backward(dout)
        half = self.oup // 2
        if self.stride == 1:  # x1 went to the output unchanged: its gradient is d's first half
            return get_array_module(d).concatenate([d[:, :half], self.branch2.backward(d[:, half:])], axis=1)
        return self.branch1.backward(d[:, :half]) + self.branch2.backward(d[:, half:])  # x fed both branches

    def receptive_field_branches(self) -> list[list[Module]]:
        """The branches, for :func:`minidl.summary`'s receptive field (``[]``: the half that passes through)."""
        return [[] if self.branch1 is None else [self.branch1], [self.branch2]]


class ShuffleNetV2(Module):
    """ShuffleNet V2 with torchvision's layout: ``conv1`` (3x3/2), ``maxpool``, ``stage2``-``stage4``, ``conv5``
    (1x1), global average pooling, ``fc``.

    Args:
        stages_repeats: units per stage (3 stages), e.g. ``[4, 8, 4]``.
        stages_out_channels: output channels of conv1, the three stages and conv5 (5 numbers).
        num_classes: outputs of ``fc``. Default: 1000.

    Shape:
        - Input: (N, 3, H, W).  - Output: (N, num_classes). The map shrinks by 32 (224 -> 7).

    Backward:
        fc, flatten, avgpool, conv5, the stages in reverse, maxpool, conv1.

    Examples:
        >>> net = ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 128], num_classes=10)
        >>> y = net(np.zeros((2, 3, 32, 32), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 32, 32))
    """

    def __init__(
        self, stages_repeats: Sequence[int], stages_out_channels: Sequence[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        stages_repeats, stages_out_channels = list(stages_repeats), list(stages_out_channels)
        if len(stages_repeats) != 3:
            raise ValueError(f"ShuffleNetV2: expected stages_repeats as a list of 3 ints, got {stages_repeats}")
        if len(stages_out_channels) != 5:
            raise ValueError(
                f"ShuffleNetV2: expected stages_out_channels as a list of 5 ints, got {stages_out_channels}"
            )
        self.num_classes = check_int("ShuffleNetV2", "num_classes", num_classes)
        input_channels, output_channels = 3, stages_out_channels[0]
        self.conv1 = Sequential(
            Conv2d(input_channels, output_channels, 3, 2, 1, bias=False), BatchNorm2d(output_channels), ReLU()
        )
        input_channels = output_channels
        self.maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (repeats, output_channels) in enumerate(zip(stages_repeats, stages_out_channels[1:4], strict=True)):
            units = [ShuffleUnit(input_channels, output_channels, 2)]
            units += [ShuffleUnit(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            self.add_module(f"stage{i + 2}", Sequential(*units))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = Sequential(
            Conv2d(input_channels, output_channels, 1, 1, 0, bias=False), BatchNorm2d(output_channels), ReLU()
        )
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten(1)
        self.fc = Linear(output_channels, num_classes)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    def forward(self, x: Any) -> Any:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(self.flatten(self.avgpool(self.conv5(x))))

    def backward(self, dout: Any) -> Any:
        d = self.conv5.backward(self.avgpool.backward(self.flatten.backward(self.fc.backward(dout))))
        d = self.stage2.backward(self.stage3.backward(self.stage4.backward(d)))
        return self.conv1.backward(self.maxpool.backward(d))


def shufflenet_v2_x0_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 0.5x: 1,366,792 parameters with 1000 classes, 40 MMAC at 224x224."""
    return ShuffleNetV2([4, 8, 4], [24, 48, 96, 192, 1024], num_classes)


def shufflenet_v2_x1_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 1.0x: 2,278,604 parameters with 1000 classes, 145 MMAC at 224x224 (torchvision's).

    Examples:
        >>> sum(p.size for p in shufflenet_v2_x1_0().parameters())
        2278604
    """
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes)


def shufflenet_v2_x1_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 1.5x: 3,503,624 parameters with 1000 classes, 296 MMAC at 224x224."""
    return ShuffleNetV2([4, 8, 4], [24, 176, 352, 704, 1024], num_classes)


def shufflenet_v2_x2_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 2.0x: 7,393,996 parameters with 1000 classes, 583 MMAC at 224x224."""
    return ShuffleNetV2([4, 8, 4], [24, 244, 488, 976, 2048], num_classes)
