r"""MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov and Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018), with torchvision's structure and state_dict keys.

A standard 3x3 convolution from C to O channels costs :math:`9 C O` multiply-adds per pixel. MobileNets factor it
into a *depthwise* 3x3 convolution (``groups == channels``: each channel filtered on its own, :math:`9 C`) and a
*pointwise* 1x1 convolution (:math:`C O`), about 8-9 times cheaper.

The **inverted residual** block of MobileNetV2 goes thin -> wide -> thin (the reverse of ResNet's bottleneck):

.. math::

    h = \mathrm{relu6}(\mathrm{BN}(W_{\text{expand}} * x)) \quad (1\times1,\ C \to tC), \qquad
    h' = \mathrm{relu6}(\mathrm{BN}(\mathrm{dw}_{3\times3}(h))) \quad (\text{stride } s), \qquad
    y = \mathrm{BN}(W_{\text{project}} * h') + x

The projection back to the thin width has **no** activation (a *linear bottleneck*: a ReLU in a low-dimensional
space destroys information), and the residual is added only when the stride is 1 and C equals the output width.
ReLU6 = min(max(x, 0), 6) keeps activations in a range that survives low-precision arithmetic.

Backward of a block: :math:`dx = \mathrm{conv.backward}(dy) + dy` with the residual (the sum passes ``dy`` to both
terms and the fork at ``x`` adds them), :math:`dx = \mathrm{conv.backward}(dy)` without.

Initialization as torchvision: convs ``kaiming_normal_(mode="fan_out")``, BatchNorm weight 1 / bias 0, the
classifier's Linear N(0, 0.01) with bias 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from minidl.models._init import torchvision_init_
from minidl.nn._checks import check_float, check_int, check_layout
from minidl.nn.activation import ReLU6
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dispatch import F
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = ["Conv2dNormActivation", "InvertedResidual", "MobileNetV2", "make_divisible", "mobilenet_v2"]

# t (expansion), c (output channels), n (blocks), s (stride of the first block): Table 2 of the paper
INVERTED_RESIDUAL_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (hardware-friendly), never more than 10 % down.

    Examples:
        >>> make_divisible(32 * 0.75), make_divisible(24 * 0.5), make_divisible(1280 * 1.4)
        (24, 16, 1792)
    """
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # rounding down must not remove more than 10 %
        new_v += divisor
    return new_v


class Conv2dNormActivation(Sequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> activation, as torchvision's block of that name.

    Args:
        in_channels: C.
        out_channels: O.
        kernel_size: K (odd). Default: 3.
        stride: S. Default: 1.
        groups: ``groups == in_channels == out_channels`` makes the conv depthwise. Default: 1.
        activation_layer: the activation's class; None for none. Default: ReLU6.
        norm_layer: builds the normalization from the channel count (e.g.
            ``functools.partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)`` in MobileNetV3). Default: BatchNorm2d.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, OH, OW), OH = floor((H - 1) / S) + 1 (padding (K - 1) / 2).
    Backward:
        The Sequential's: each layer's backward in reverse.

    Examples:
        >>> import numpy as np
        >>> block = Conv2dNormActivation(8, 8, stride=2, groups=8)  # a depthwise 3x3 stage
        >>> block(np.ones((1, 8, 6, 6), np.float32)).shape, [k for k in block.state_dict()][:2]
        ((1, 8, 3, 3), ['0.weight', '1.weight'])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation_layer: Callable[[], Module] | None = ReLU6,
        norm_layer: Callable[[int], Module] = BatchNorm2d,
    ) -> None:
        kernel_size = check_int("Conv2dNormActivation", "kernel_size", kernel_size)
        layers: list[Module] = [
            Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            norm_layer(out_channels),
        ]
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels


class InvertedResidual(Module):
    r"""MobileNetV2's block: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6, stride) -> 1x1 linear projection (+ x).

    Args:
        inp: C, the input channels.
        oup: O, the output channels.
        stride: stride of the depthwise conv, 1 or 2.
        expand_ratio: t; the hidden width is round(C * t). With t = 1 there is no expansion conv.

    Attributes:
        conv: the Sequential of the branch, keys ``conv.0.0.weight`` (expand conv), ``conv.0.1.*`` (its BN), ...,
            ``conv.2.weight`` / ``conv.3.*`` (projection conv and BN) as in torchvision.
        use_res_connect: True when stride == 1 and C == O (then y = branch(x) + x).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, OH, OW), OH = floor((H - 1) / stride) + 1.
    Backward:
        dx = conv.backward(dy) + dy with the residual, dx = conv.backward(dy) without.

    Examples:
        >>> import numpy as np
        >>> block = InvertedResidual(16, 16, stride=1, expand_ratio=6)
        >>> y = block(np.ones((2, 16, 4, 4), np.float32))
        >>> block.use_res_connect, y.shape, block.backward(np.ones_like(y)).shape
        (True, (2, 16, 4, 4), (2, 16, 4, 4))
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: float) -> None:
        super().__init__()
        self.inp = check_int("InvertedResidual", "inp", inp)
        self.oup = check_int("InvertedResidual", "oup", oup)
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride!r}")
        self.stride = stride
        self.expand_ratio = check_float("InvertedResidual", "expand_ratio", expand_ratio, low=0.0, low_open=True)
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1))  # pointwise expansion
        layers += [
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),  # depthwise
            Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),  # pointwise linear projection
            BatchNorm2d(oup),
        ]
        self.conv = Sequential(*layers)
        self.out_channels = oup

    def extra_repr(self) -> str:
        return f"{self.inp}, {self.oup}, stride={self.stride}, expand_ratio={self.expand_ratio:g}"

    def forward(self, x: Any) -> Any:
        check_layout(f"InvertedResidual({self.extra_repr()})", x, ndim=4, channels=self.inp)
        out = self.conv(x)
        if self.use_res_connect:
            out = F.add_forward(out, x)[0]  # out + x, the residual sum (the sum pair: one pass on Numba's threads)
        return out

    def backward(self, dout: Any) -> Any:
        dx = self.conv.backward(dout)
        if self.use_res_connect:
            dx = F.add_forward(dx, dout)[0]  # the identity branch passes the gradient unchanged; the fork at x adds it
        return dx


class MobileNetV2(Module):
    """MobileNetV2: a 3x3/2 stem conv, 17 inverted residual blocks, a 1x1 conv to 1280, pooling, classifier.

    Args:
        num_classes: outputs. Default: 1000.
        width_mult: multiplies every width (rounded by :func:`make_divisible`). Default: 1.0.
        inverted_residual_setting: rows [t, c, n, s]. Default: the paper's Table 2.
        round_nearest: the channel multiple. Default: 8.
        dropout: dropout before the classifier's Linear. Default: 0.2.
        in_channels: input channels. Default: 3.
        cifar: for 32x32 inputs, stride 1 in the stem and in the second stage (total stride 8 instead of 32, so the
            last feature map is 4x4 rather than 1x1). Default: False.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, num_classes).
    Backward:
        classifier, flatten, avgpool, then ``features`` in reverse (a Sequential).

    Examples:
        >>> import numpy as np
        >>> net = MobileNetV2(num_classes=10, width_mult=0.25, cifar=True)
        >>> net(np.ones((1, 3, 32, 32), np.float32)).shape
        (1, 10)
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: Sequence[Sequence[float]] | None = None,
        round_nearest: int = 8,
        dropout: float = 0.2,
        in_channels: int = 3,
        cifar: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("MobileNetV2", "num_classes", num_classes)
        self.width_mult = check_float("MobileNetV2", "width_mult", width_mult, low=0.0, low_open=True)
        self.in_channels = check_int("MobileNetV2", "in_channels", in_channels)
        round_nearest = check_int("MobileNetV2", "round_nearest", round_nearest)
        setting = INVERTED_RESIDUAL_SETTING if inverted_residual_setting is None else inverted_residual_setting
        if not setting or any(len(row) != 4 for row in setting):
            raise ValueError(f"MobileNetV2: inverted_residual_setting must be rows [t, c, n, s], got {setting!r}")
        self.cifar = bool(cifar)
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[Module] = [Conv2dNormActivation(in_channels, input_channel, stride=1 if cifar else 2)]
        for row, (t, c, n, s) in enumerate(setting):
            output_channel = make_divisible(c * width_mult, round_nearest)
            if cifar and row == 1:
                s = 1  # CIFAR: keep 32x32 through the second stage as well
            for i in range(int(n)):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1))
        self.features = Sequential(*features)
        self.avgpool = AdaptiveAvgPool2d((1, 1))  # torchvision calls the functional form; no state either way
        self.flatten = Flatten(1)
        self.classifier = Sequential(Dropout(p=dropout), Linear(self.last_channel, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's init: convs kaiming_normal_(fan_out), BN 1/0, Linear N(0, 0.01) with bias 0."""
        torchvision_init_(self)  # kaiming with relu's gain, sqrt(2), as torchvision's default leaky_relu(a=0) has

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, width_mult={self.width_mult:g}, cifar={self.cifar}"

    def forward(self, x: Any) -> Any:
        check_layout("MobileNetV2", x, ndim=4, channels=self.in_channels)
        out = self.classifier(self.flatten(self.avgpool(self.features(x))))
        return out

    def backward(self, dout: Any) -> Any:
        d = self.avgpool.backward(self.flatten.backward(self.classifier.backward(dout)))
        return self.features.backward(d)


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, **kwargs: Any) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018): 3,504,872 parameters with 1000 classes, 0.30 GMAC at 224x224.

    Keywords go to :class:`MobileNetV2` (``cifar=True`` for 32x32 inputs, ``dropout``, ``round_nearest``, ...).

    Examples:
        >>> sum(p.size for p in mobilenet_v2(num_classes=10, width_mult=0.5).parameters())
        700490
    """
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, **kwargs)
