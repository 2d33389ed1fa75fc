r"""SqueezeNet (Iandola, Han, Moskewicz, Ashraf, Dally and Keutzer, "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", 2016), torchvision's versions 1.0 and 1.1.

Its building block, the **Fire module**, *squeezes* the channels with a 1x1 convolution and *expands* them again
with 1x1 and 3x3 convolutions side by side, whose outputs are concatenated:

.. math:: s = \mathrm{relu}(W_s * x), \qquad
    y = \big[\, \mathrm{relu}(W_{1\times1} * s),\ \mathrm{relu}(W_{3\times3} * s) \,\big]_{\text{channels}}

There is no linear layer: the classifier is a 1x1 convolution to ``num_classes`` channels, a ReLU and a global
average pooling. Version 1.1 starts with a 3x3 convolution of 64 channels and pools earlier (2.4x less compute,
the same accuracy). The state_dict keys are torchvision's (``features.3.squeeze.weight``,
``features.3.expand3x3.bias``, ``classifier.1.weight``), and so is the initialization: ``kaiming_uniform_`` for the
convolutions, N(0, 0.01) for the final one, zero biases.
"""

from __future__ import annotations

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
from minidl.nn.module import Module
from minidl.nn.pooling import MaxPool2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = ["Fire", "SqueezeNet", "squeezenet1_0", "squeezenet1_1"]


class Fire(Module):
    r"""SqueezeNet's Fire module: a 1x1 squeeze, then 1x1 and 3x3 expansions concatenated (torchvision's names).

    .. math:: y = \big[\, \mathrm{relu}(\mathrm{expand1x1}(s)),\ \mathrm{relu}(\mathrm{expand3x3}(s)) \,\big],
        \qquad s = \mathrm{relu}(\mathrm{squeeze}(x))

    Args:
        inplanes: C, the input channels.
        squeeze_planes: S, the channels after the squeeze.
        expand1x1_planes: E1, the 1x1 expansion's channels.
        expand3x3_planes: E3, the 3x3 expansion's channels (padding 1 keeps H and W).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, E1 + E3, H, W).

    Backward:
        dout splits into its first E1 and its last E3 channels; each goes back through its activation and expansion;
        s fed both expansions, so ds is the sum of the two; dx = squeeze.backward(squeeze_activation.backward(ds)).

    Examples:
        >>> fire = Fire(96, 16, 64, 64)
        >>> y = fire(np.ones((2, 96, 5, 5), np.float32))
        >>> y.shape, fire.backward(np.ones_like(y)).shape
        ((2, 128, 5, 5), (2, 96, 5, 5))
    """

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.inplanes = check_int("Fire", "inplanes", inplanes)
        self.squeeze = Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = ReLU()
        self.expand1x1 = Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = ReLU()
        self.expand3x3 = Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = ReLU()

    def extra_repr(self) -> str:
        e1, e3 = self.expand1x1.out_channels, self.expand3x3.out_channels
        return f"{self.inplanes}, {self.squeeze.out_channels}, {e1}, {e3}"

    def forward(self, x: Any) -> Any:
        s = self.squeeze_activation(self.squeeze(x))
        a = self.expand1x1_activation(self.expand1x1(s))
        b = self.expand3x3_activation(self.expand3x3(s))
        return get_array_module(a).concatenate([a, b], axis=1)

    def backward(self, dout: Any) -> Any:
        e1 = self.expand1x1.out_channels
        ds = self.expand1x1.backward(self.expand1x1_activation.backward(dout[:, :e1]))
        ds = ds + self.expand3x3.backward(self.expand3x3_activation.backward(dout[:, e1:]))  # s fed both: add
        return self.squeeze.backward(self.squeeze_activation.backward(ds))

    def receptive_field_branches(self) -> list[list[Module]]:
        """The two expansions, after the squeeze, for :func:`minidl.summary`'s receptive field."""
        return [[self.squeeze, self.expand1x1], [self.squeeze, self.expand3x3]]


class SqueezeNet(Module):
    """SqueezeNet 1.0 or 1.1 with torchvision's layout (``features``, ``classifier``).

    Args:
        version: ``"1_0"`` or ``"1_1"``. Default: ``"1_0"``.
        num_classes: channels of the final 1x1 convolution. Default: 1000.
        dropout: the dropout probability before it. Default: 0.5.

    Shape:
        - Input: (N, 3, H, W), H and W at least 17 (1.1) or 21 (1.0).  - Output: (N, num_classes).

    Backward:
        flatten, classifier, features: each one's backward on the previous one's result.

    Examples:
        >>> net = SqueezeNet("1_1", num_classes=10)
        >>> y = net(np.zeros((1, 3, 32, 32), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((1, 10), (1, 3, 32, 32))
    """

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = check_int("SqueezeNet", "num_classes", num_classes)
        self.version = version
        if version == "1_0":
            self.features = Sequential(
                Conv2d(3, 96, kernel_size=7, stride=2),
                ReLU(),
                MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            self.features = Sequential(
                Conv2d(3, 64, kernel_size=3, stride=2),
                ReLU(),
                MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"SqueezeNet: version must be '1_0' or '1_1', got {version!r}")
        final_conv = Conv2d(512, num_classes, kernel_size=1)
        self.classifier = Sequential(Dropout(p=dropout), final_conv, ReLU(), AdaptiveAvgPool2d((1, 1)))
        self.flatten = Flatten(1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's init: ``kaiming_uniform_`` (PyTorch's defaults: fan_in, gain sqrt 2) for every conv but
        the final one, N(0, 0.01) for that one, biases 0; in module order, as torchvision draws them."""
        final_conv = self.classifier[1]
        for m in self.modules():
            if isinstance(m, Conv2d):
                if m is final_conv:
                    init.normal_(m.weight, 0.0, 0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return f"version={self.version!r}, num_classes={self.num_classes}"

    def forward(self, x: Any) -> Any:
        return self.flatten(self.classifier(self.features(x)))

    def backward(self, dout: Any) -> Any:
        return self.features.backward(self.classifier.backward(self.flatten.backward(dout)))


def squeezenet1_0(num_classes: int = 1000, **kwargs: Any) -> SqueezeNet:
    """SqueezeNet 1.0: 1,248,424 parameters with 1000 classes, 0.82 GMAC at 224x224 (torchvision's).

    Examples:
        >>> sum(p.size for p in squeezenet1_0().parameters())
        1248424
    """
    return SqueezeNet("1_0", num_classes, **kwargs)


def squeezenet1_1(num_classes: int = 1000, **kwargs: Any) -> SqueezeNet:
    """SqueezeNet 1.1: 1,235,496 parameters with 1000 classes, 0.35 GMAC at 224x224 (torchvision's).

    Examples:
        >>> sum(p.size for p in squeezenet1_1().parameters())
        1235496
    """
    return SqueezeNet("1_1", num_classes, **kwargs)
