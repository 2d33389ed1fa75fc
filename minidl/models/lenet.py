r"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning Applied to Document Recognition",
Proc. IEEE 1998): the convolutional network that read cheques, and the first one most courses build.

On a 32x32 image (the paper's 28x28 digits padded by 2; here ``padding=2`` in the first conv does the same for
MNIST's 28x28):

======  ==================================  ============  ======================
layer   operation                           output        parameters
======  ==================================  ============  ======================
C1      conv 5x5, 6 maps                    6 x 28 x 28   6 (25 C + 1)
S2      2x2 pooling, stride 2               6 x 14 x 14   0
C3      conv 5x5, 16 maps                   16 x 10 x 10  16 (6 25 + 1) = 2,416
S4      2x2 pooling, stride 2               16 x 5 x 5    0
C5      5x5 conv on 5x5 maps = FC 400->120  120           48,120
F6      fully connected 120 -> 84           84            10,164
output  fully connected 84 -> K             K             85 K
======  ==================================  ============  ======================

61,706 parameters for C = 1 and K = 10; 0.42 MMAC per 32x32 image.

Two variants:

* ``classic=False`` (default, the modern version): ReLU and max-pooling.
* ``classic=True``: tanh and average pooling, closer to 1998. Still simplified: the paper's subsampling layers had
  a trainable scale and bias per map, C3 connected each map to only some of S2's maps (a fixed table), the
  activation was the scaled :math:`1.7159 \tanh(2x/3)`, and the output layer was made of Euclidean RBF units. Here
  pooling has no parameters, C3 sees all six maps, tanh is plain and the output is a Linear layer (logits for a
  cross-entropy loss).

Initialization: the layers' PyTorch defaults (U(+-1/sqrt(fan_in)) for weights and biases).

Backward: classifier, flatten, features: each one's backward in reverse order.
"""

from __future__ import annotations

from typing import Any

from minidl.nn._checks import check_int, check_layout
from minidl.nn.activation import ReLU, Tanh
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.pooling import AvgPool2d, MaxPool2d

__all__ = ["LeNet5", "lenet5"]


class LeNet5(Module):
    """LeNet-5: two 5x5 conv + pooling stages, then three fully connected layers.

    Args:
        num_classes: K, the outputs. Default: 10.
        in_channels: C (1 for digits, 3 for colour images). Default: 1.
        classic: tanh + average pooling instead of ReLU + max-pooling. Default: False.
        padding: zero padding of the first conv: 0 for 32x32 inputs, 2 for 28x28 (MNIST). Default: 0.

    Shape:
        - Input: (N, C, S, S) with S = 32 - 2 * padding (32 with padding 0, 28 with padding 2).
        - Output: (N, num_classes).
    Backward:
        classifier.backward, then flatten's (a reshape), then features.backward (each a chain run in reverse).

    Examples:
        >>> import numpy as np
        >>> net = LeNet5(padding=2)
        >>> y = net(np.zeros((4, 1, 28, 28), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((4, 10), (4, 1, 28, 28))
        >>> sum(p.size for p in net.parameters())
        61706
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, classic: bool = False, padding: int = 0) -> None:
        super().__init__()
        self.num_classes = check_int("LeNet5", "num_classes", num_classes)
        self.in_channels = check_int("LeNet5", "in_channels", in_channels)
        self.padding = check_int("LeNet5", "padding", padding, minimum=0)
        if self.padding > 15:
            raise ValueError(
                f"LeNet5: padding must be at most 15 (it sets the input size 32 - 2 * padding), got {padding}"
            )
        self.classic = bool(classic)
        activation = Tanh if self.classic else ReLU
        pool = AvgPool2d if self.classic else MaxPool2d
        self.features = Sequential(
            Conv2d(in_channels, 6, kernel_size=5, padding=self.padding),  # C1
            activation(),
            pool(2),  # S2
            Conv2d(6, 16, kernel_size=5),  # C3
            activation(),
            pool(2),  # S4
        )
        self.flatten = Flatten(1)
        self.classifier = Sequential(
            Linear(16 * 5 * 5, 120),  # C5 (a 5x5 conv over the 5x5 maps of S4 in the paper: the same thing)
            activation(),
            Linear(120, 84),  # F6
            activation(),
            Linear(84, num_classes),  # output
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, in_channels={self.in_channels}, classic={self.classic}, "
            f"padding={self.padding}"
        )

    def forward(self, x: Any) -> Any:
        check_layout("LeNet5", x, ndim=4, channels=self.in_channels)
        size = 32 - 2 * self.padding
        if hasattr(x, "shape") and tuple(x.shape[2:]) != (size, size):
            raise ValueError(
                f"LeNet5(padding={self.padding}): expected {size}x{size} images, got shape {tuple(x.shape)}; "
                "use padding=2 for 28x28 images (MNIST) and padding=0 for 32x32"
            )
        out = self.classifier(self.flatten(self.features(x)))
        return out

    def backward(self, dout: Any) -> Any:
        return self.features.backward(self.flatten.backward(self.classifier.backward(dout)))


def lenet5(num_classes: int = 10, in_channels: int = 1, *, classic: bool = False, padding: int = 0) -> LeNet5:
    """LeNet-5 (LeCun et al. 1998): 61,706 parameters for 1 input channel and 10 classes.

    Args:
        num_classes: outputs. Default: 10.
        in_channels: input channels. Default: 1.
        classic: tanh + average pooling as in the paper, else ReLU + max pooling. Default: False.
        padding: of the first conv: 0 for 32x32 inputs, 2 for 28x28 (MNIST). Default: 0.

    Examples:
        >>> import numpy as np
        >>> lenet5(padding=2)(np.zeros((2, 1, 28, 28), np.float32)).shape
        (2, 10)
    """
    return LeNet5(num_classes, in_channels, classic=classic, padding=padding)
