r"""``cifar_cnn``: the small VGG-style network minidl's CIFAR-10 benchmarks and examples train.

Three stages of 3x3 convolutions (padding 1, no bias: a BatchNorm follows, whose beta plays the bias) with
BatchNorm and ReLU, each ending in a 2x2 max-pool, then dropout and one linear layer:

==============================================  ==============  ===========  ============
layer                                           output          parameters   MACs
==============================================  ==============  ===========  ============
conv 3x3 3->32, BN, ReLU                        32 x 32 x 32    864 + 64     884,736
conv 3x3 32->32, BN, ReLU, max-pool 2           32 x 16 x 16    9,216 + 64   9,437,184
conv 3x3 32->64, BN, ReLU                       64 x 16 x 16    18,432 + 128 4,718,592
conv 3x3 64->64, BN, ReLU, max-pool 2           64 x 8 x 8      36,864 + 128 9,437,184
conv 3x3 64->128, BN, ReLU, max-pool 2          128 x 4 x 4     73,728 + 256 4,718,592
flatten, dropout 0.5, linear 2048->10           10              20,490       20,480
==============================================  ==============  ===========  ============

In all 160,234 parameters and 29.2 MMAC = 58.4 MFLOP per 32x32 image (``minidl.summary``, FLOPs = 2 MACs).

Initialization: the layers' PyTorch defaults (convs U(+-1/sqrt(fan_in)), BN weight 1 / bias 0, Linear
U(+-1/sqrt(in_features))).

Backward: classifier (Linear, then Dropout's mask), flatten (a reshape), then ``features`` in reverse.
"""

from __future__ import annotations

from typing import Any

from minidl.models.weights import CifarCNN_Weights, load_pretrained
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

__all__ = ["CifarCNN", "cifar_cnn"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[Module]:
    return [Conv2d(in_channels, out_channels, 3, padding=1, bias=False), BatchNorm2d(out_channels), ReLU()]


class CifarCNN(Module):
    """The benchmark CNN for 32x32 colour images (see the module docstring for the table).

    Args:
        num_classes: outputs. Default: 10.
        in_channels: input channels. Default: 3.
        dropout: dropout probability before the linear layer. Default: 0.5.

    Attributes:
        features: Sequential of 18 layers (5 conv-BN-ReLU triples and 3 max-pools); keys ``features.0.weight``,
            ``features.1.*``, ...
        classifier: Sequential(Dropout, Linear(2048, num_classes)) (keys ``classifier.1.weight``/``.bias``).

    Shape:
        - Input: (N, C, 32, 32).  - Output: (N, num_classes).
    Backward:
        features.backward(flatten.backward(classifier.backward(dout))).

    Examples:
        >>> import numpy as np
        >>> net = CifarCNN()
        >>> y = net(np.zeros((2, 3, 32, 32), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 32, 32))
        >>> sum(p.size for p in net.parameters())
        160234
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = check_int("CifarCNN", "num_classes", num_classes)
        self.in_channels = check_int("CifarCNN", "in_channels", in_channels)
        self.features = Sequential(
            *_conv_bn_relu(in_channels, 32),
            *_conv_bn_relu(32, 32),
            MaxPool2d(2),  # 32x32 -> 16x16
            *_conv_bn_relu(32, 64),
            *_conv_bn_relu(64, 64),
            MaxPool2d(2),  # 16x16 -> 8x8
            *_conv_bn_relu(64, 128),
            MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.flatten = Flatten(1)
        self.classifier = Sequential(Dropout(p=dropout), Linear(128 * 4 * 4, num_classes))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    def forward(self, x: Any) -> Any:
        check_layout("CifarCNN", x, ndim=4, channels=self.in_channels)
        if hasattr(x, "shape") and tuple(x.shape[2:]) != (32, 32):
            raise ValueError(f"CifarCNN: expected 32x32 images, got shape {tuple(x.shape)}")
        out = self.classifier(self.flatten(self.features(x)))
        return out

    def backward(self, dout: Any) -> Any:
        return self.features.backward(self.flatten.backward(self.classifier.backward(dout)))


def cifar_cnn(num_classes: int = 10, *, weights: CifarCNN_Weights | str | None = None, **kwargs: Any) -> CifarCNN:
    """The CIFAR-10 benchmark CNN: 160,234 parameters, 58.4 MFLOP per 32x32 image.

    Args:
        num_classes: outputs of the classifier. Default: 10.
        weights: ``None`` (random), or :class:`~minidl.models.weights.CifarCNN_Weights` ``.CIFAR10`` (also given as
            ``"cifar10"`` or ``"DEFAULT"``): the shipped weights trained by ``examples/train_cifar10.py``, checked
            against their SHA-256. Default: None.
        **kwargs: passed to :class:`CifarCNN` (``in_channels``, ``dropout``).

    Examples:
        >>> import numpy as np
        >>> net = cifar_cnn()
        >>> net(np.zeros((4, 3, 32, 32), np.float32)).shape, sum(p.size for p in net.parameters())
        ((4, 10), 160234)
    """
    weights = CifarCNN_Weights.verify(weights, "cifar_cnn")
    model = CifarCNN(num_classes, **kwargs)
    if weights is not None:
        load_pretrained(model, weights, "cifar_cnn")
    return model
