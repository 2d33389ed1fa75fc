r"""VGG networks (Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015), with torchvision's layout and state_dict keys.

VGG showed that depth built only from 3x3 convolutions (padding 1, so the size is kept) and 2x2 max-pools wins:
two stacked 3x3 convs see a 5x5 window, three see 7x7, with fewer parameters (:math:`3 \cdot 9 C^2` against
:math:`49 C^2`) and more nonlinearities. The configurations A, B, D, E of the paper's Table 1 are VGG-11/13/16/19:

==========  ===================================================================================
vgg11 (A)   64 M 128 M 256 256 M 512 512 M 512 512 M
vgg13 (B)   64 64 M 128 128 M 256 256 M 512 512 M 512 512 M
vgg16 (D)   64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M
vgg19 (E)   64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M
==========  ===================================================================================

(a number is a 3x3 conv + ReLU with that many output channels, ``M`` a 2x2/2 max-pool; ``batch_norm=True`` puts a
BatchNorm2d between each conv and its ReLU, torchvision's ``vgg16_bn``.)

ImageNet layout (torchvision): ``features`` (the table), ``avgpool`` = AdaptiveAvgPool2d(7) (a no-op at 224x224,
it lets other sizes reach the 7x7 the classifier expects), ``classifier`` = Linear(25088, 4096) - ReLU - Dropout -
Linear(4096, 4096) - ReLU - Dropout - Linear(4096, num_classes). Keys ``features.0.weight``,
``classifier.0.weight``, ... as torchvision's, so its weights load by name.

CIFAR layout (``cifar=True``, for 32x32 inputs): the same ``features``, whose five pools leave a 512 x 1 x 1 map,
then no pooling and a single ``classifier`` = Linear(512, num_classes) (keys ``classifier.weight`` /
``classifier.bias``), as in the common CIFAR versions of VGG; it needs 32x32 inputs.

Initialization as torchvision: convs ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` with bias 0,
BatchNorm weight 1 / bias 0, Linear N(0, 0.01) with bias 0.

Backward: classifier, flatten, avgpool, features, each a chain whose backward runs its layers in reverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minidl.models._init import torchvision_init_
from minidl.nn._checks import check_int, check_layout
from minidl.nn.activation import ReLU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling import MaxPool2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = [
    "VGG",
    "make_layers",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: Sequence[int | str], batch_norm: bool = False, in_channels: int = 3) -> Sequential:
    """The ``features`` Sequential of a configuration: each int a 3x3 conv (padding 1) [+ BN] + ReLU, "M" a pool.

    Examples:
        >>> make_layers([8, "M"], batch_norm=True)
        Sequential(
          (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
          (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
          (2): ReLU()
          (3): MaxPool2d(...)
        )
    """
    layers: list[Module] = []
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(kernel_size=2, stride=2))
        elif isinstance(v, int) and not isinstance(v, bool) and v > 0:
            layers.append(Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(BatchNorm2d(v))
            layers.append(ReLU())
            in_channels = v
        else:
            raise ValueError(f"make_layers: a configuration entry must be a positive int or 'M', got {v!r}")
    return Sequential(*layers)


class VGG(Module):
    """A VGG network: ``features`` -> ``avgpool`` -> flatten -> ``classifier``.

    Args:
        features: the convolutional part (:func:`make_layers`), ending with 512 channels.
        num_classes: outputs. Default: 1000.
        init_weights: apply torchvision's init (else the layers' PyTorch defaults). Default: True.
        dropout: dropout probability in the ImageNet classifier. Default: 0.5.
        cifar: the 32x32 layout: no avgpool, ``classifier = Linear(512, num_classes)``. Default: False.

    Shape:
        - Input: (N, 3, H, W), H = W = 224 for ImageNet (any size >= 32 works through the adaptive pool);
          32x32 with ``cifar=True``.
        - Output: (N, num_classes).
    Backward:
        classifier, flatten, avgpool (when present), features: each one's backward in reverse order.

    Examples:
        >>> import numpy as np
        >>> net = VGG(make_layers([8, "M", 16, "M", 32, "M", 32, "M", 512, "M"]), num_classes=10, cifar=True)
        >>> y = net(np.ones((2, 3, 32, 32), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 32, 32))
    """

    def __init__(
        self,
        features: Module,
        num_classes: int = 1000,
        init_weights: bool = True,
        dropout: float = 0.5,
        cifar: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(features, Module):
            raise TypeError(f"VGG: features must be a Module, got {type(features).__name__}")
        self.num_classes = check_int("VGG", "num_classes", num_classes)
        self.cifar = bool(cifar)
        self.features = features
        first_conv = next((m for m in features.modules() if isinstance(m, Conv2d)), None)
        self.in_channels = None if first_conv is None else first_conv.in_channels
        if self.cifar:
            self.avgpool = None
            self.flatten = Flatten(1)
            self.classifier: Module = Linear(512, num_classes)
        else:
            self.avgpool = AdaptiveAvgPool2d((7, 7))
            self.flatten = Flatten(1)
            self.classifier = Sequential(
                Linear(512 * 7 * 7, 4096),
                ReLU(),
                Dropout(p=dropout),
                Linear(4096, 4096),
                ReLU(),
                Dropout(p=dropout),
                Linear(4096, num_classes),
            )
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's init: convs kaiming_normal_(fan_out, relu) and bias 0, BN 1/0, Linear N(0, 0.01), bias 0."""
        torchvision_init_(self)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, cifar={self.cifar}"

    def forward(self, x: Any) -> Any:
        check_layout("VGG", x, ndim=4, channels=self.in_channels)
        x = self.features(x)
        if self.avgpool is not None:
            x = self.avgpool(x)
        x = self.flatten(x)
        if self.cifar and x.shape[1] != 512:
            raise ValueError(
                f"VGG(cifar=True): expected 32x32 inputs (a 512 x 1 x 1 feature map), got features of "
                f"{x.shape[1]} values per image; use cifar=False for other sizes"
            )
        out = self.classifier(x)
        return out

    def backward(self, dout: Any) -> Any:
        d = self.flatten.backward(self.classifier.backward(dout))
        if self.avgpool is not None:
            d = self.avgpool.backward(d)
        return self.features.backward(d)


def _vgg(cfg: str, batch_norm: bool, num_classes: int, cifar: bool, kwargs: dict[str, Any]) -> VGG:
    in_channels = kwargs.pop("in_channels", 3)
    return VGG(make_layers(CFGS[cfg], batch_norm, in_channels), num_classes, cifar=cifar, **kwargs)


def vgg11(num_classes: int = 1000, *, batch_norm: bool = False, cifar: bool = False, **kwargs: Any) -> VGG:
    """VGG-11 (configuration A): 132,863,336 parameters with 1000 classes, 7.6 GMAC at 224x224.

    Keywords: ``batch_norm`` (BN after each conv), ``cifar`` (32x32 layout), ``in_channels``, and
    :class:`VGG`'s ``init_weights`` and ``dropout``.
    """
    return _vgg("A", batch_norm, num_classes, cifar, kwargs)


def vgg13(num_classes: int = 1000, *, batch_norm: bool = False, cifar: bool = False, **kwargs: Any) -> VGG:
    """VGG-13 (configuration B): 133,047,848 parameters with 1000 classes, 11.3 GMAC at 224x224."""
    return _vgg("B", batch_norm, num_classes, cifar, kwargs)


def vgg16(num_classes: int = 1000, *, batch_norm: bool = False, cifar: bool = False, **kwargs: Any) -> VGG:
    """VGG-16 (configuration D): 138,357,544 parameters with 1000 classes, 15.5 GMAC at 224x224.

    Args:
        num_classes: outputs of the classifier. Default: 1000.
        batch_norm: BatchNorm after every conv (``vgg16_bn``). Default: False.
        cifar: the 32x32 variant: no 7x7 average pooling, a single Linear(512, num_classes) head. Default: False.
        **kwargs: passed to :class:`VGG`.

    Examples:
        >>> import numpy as np
        >>> vgg16(num_classes=10, cifar=True, batch_norm=True)(np.zeros((1, 3, 32, 32), np.float32)).shape
        (1, 10)
    """
    return _vgg("D", batch_norm, num_classes, cifar, kwargs)


def vgg19(num_classes: int = 1000, *, batch_norm: bool = False, cifar: bool = False, **kwargs: Any) -> VGG:
    """VGG-19 (configuration E): 143,667,240 parameters with 1000 classes, 19.6 GMAC at 224x224."""
    return _vgg("E", batch_norm, num_classes, cifar, kwargs)


def vgg11_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-11 with BatchNorm (torchvision's ``vgg11_bn``): ``vgg11(batch_norm=True)``."""
    return vgg11(num_classes, batch_norm=True, **kwargs)


def vgg13_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-13 with BatchNorm: ``vgg13(batch_norm=True)``."""
    return vgg13(num_classes, batch_norm=True, **kwargs)


def vgg16_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-16 with BatchNorm: ``vgg16(batch_norm=True)``."""
    return vgg16(num_classes, batch_norm=True, **kwargs)


def vgg19_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-19 with BatchNorm: ``vgg19(batch_norm=True)``."""
    return vgg19(num_classes, batch_norm=True, **kwargs)
