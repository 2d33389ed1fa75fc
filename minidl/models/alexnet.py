r"""AlexNet (Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NeurIPS 2012), in torchvision's version: the single-GPU variant of Krizhevsky's "One weird trick" paper (2014),
64-192-384-256-256 channels, without the local response normalization, with an adaptive average pooling to 6x6
before the classifier.

::

    features    conv 11x11/4 (64) - relu - maxpool 3/2 - conv 5x5 (192) - relu - maxpool 3/2
                - conv 3x3 (384) - relu - conv 3x3 (256) - relu - conv 3x3 (256) - relu - maxpool 3/2
    avgpool     AdaptiveAvgPool2d(6)                                       (224x224 input: 256 x 6 x 6)
    classifier  dropout - linear 9216 -> 4096 - relu - dropout - linear 4096 -> 4096 - relu - linear -> classes

Of the 61.1M parameters, 58.6M are in the three linear layers; of the 0.71 GMAC, 0.66 G are in the convolutions:
the lecture's point that the parameters sit in the classifier and the compute in the features.

The state_dict keys are torchvision's (``features.0.weight`` ... ``features.10.bias``, ``classifier.1.weight``,
``classifier.4.weight``, ``classifier.6.weight``), and so is the initialization: PyTorch's default for every layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._checks import check_int
from minidl.nn.activation import ReLU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.pooling import MaxPool2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = ["AlexNet", "alexnet"]


class AlexNet(Module):
    """AlexNet with torchvision's layout (``features``, ``avgpool``, ``classifier``).

    Args:
        num_classes: outputs of the last linear layer. Default: 1000.
        dropout: the dropout probability before each of the first two linear layers. Default: 0.5.

    Shape:
        - Input: (N, 3, H, W) with H, W >= 63 (the three poolings need a 1x1 map at the end).
        - Output: (N, num_classes).

    Backward:
        classifier, flatten, avgpool, features: each one's backward on the previous one's result.

    Examples:
        >>> net = AlexNet(num_classes=10)
        >>> y = net(np.zeros((1, 3, 63, 63), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((1, 10), (1, 3, 63, 63))
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = check_int("AlexNet", "num_classes", num_classes)
        self.features = Sequential(
            Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            ReLU(),
            MaxPool2d(kernel_size=3, stride=2),
            Conv2d(64, 192, kernel_size=5, padding=2),
            ReLU(),
            MaxPool2d(kernel_size=3, stride=2),
            Conv2d(192, 384, kernel_size=3, padding=1),
            ReLU(),
            Conv2d(384, 256, kernel_size=3, padding=1),
            ReLU(),
            Conv2d(256, 256, kernel_size=3, padding=1),
            ReLU(),
            MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        self.flatten = Flatten(1)
        self.classifier = Sequential(
            Dropout(p=dropout),
            Linear(256 * 6 * 6, 4096),
            ReLU(),
            Dropout(p=dropout),
            Linear(4096, 4096),
            ReLU(),
            Linear(4096, num_classes),
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    def forward(self, x: Any) -> Any:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))

    def backward(self, dout: Any) -> Any:
        return self.features.backward(self.avgpool.backward(self.flatten.backward(self.classifier.backward(dout))))


def alexnet(num_classes: int = 1000, **kwargs: Any) -> AlexNet:
    """AlexNet: 61,100,840 parameters with 1000 classes, 0.71 GMAC at 224x224 (torchvision's ``alexnet``).

    Args:
        num_classes: outputs of the last linear layer. Default: 1000.
        **kwargs: passed to :class:`AlexNet` (``dropout``).

    Building it draws 61M random weights (seconds); :class:`AlexNet` has a runnable example.
    """
    return AlexNet(num_classes, **kwargs)
