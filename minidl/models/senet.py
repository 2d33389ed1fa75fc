r"""SE-ResNets (Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018): ResNets whose blocks reweight their
channels with a :class:`~minidl.models.SqueezeExcitation` gate.

The SE block sits at the end of the residual branch, *before* the sum with the shortcut (the paper's Figure 3):

.. math:: y = \mathrm{relu}\big(\mathrm{SE}(F(x)) + s(x)\big), \qquad
    \mathrm{SE}(u) = u \odot \sigma\big(W_2\,\mathrm{relu}(W_1\,\mathrm{avgpool}(u))\big)

with the squeeze width C / 16 (the paper's reduction ratio r = 16, at least 1 channel). Everything else is
torchvision's ResNet (:mod:`minidl.models.resnet`): the blocks here are :class:`~minidl.models.BasicBlock` and
:class:`~minidl.models.Bottleneck` with one more child, ``se``, so the keys are torchvision's plus
``layer1.0.se.fc1.weight`` and the like. torchvision has no SE-ResNet, so there are no torchvision weights to load:
these models are for training (``se_resnet20`` on CIFAR-10 costs about as much as ``resnet20``).

Backward of a block: the SE block's backward (see :class:`~minidl.models.SqueezeExcitation`) runs between the
sum's and the last BatchNorm's.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.models._blocks import SqueezeExcitation
from minidl.models.resnet import BasicBlock, Bottleneck, ResNet
from minidl.nn.module import Module

__all__ = ["SEBasicBlock", "SEBottleneck", "se_resnet18", "se_resnet20", "se_resnet34", "se_resnet50"]


def _squeeze_channels(channels: int, reduction: int) -> int:
    return max(1, channels // reduction)


class SEBasicBlock(BasicBlock):
    r""":class:`~minidl.models.BasicBlock` with a squeeze-and-excitation gate on the residual branch.

    .. math:: y = \mathrm{relu}(\mathrm{se}(\mathrm{bn_2}(\mathrm{conv_2}(\mathrm{relu}(\mathrm{bn_1}(
              \mathrm{conv_1}(x)))))) + \mathrm{downsample}(x))

    Args:
        inplanes, planes, stride, downsample: as :class:`~minidl.models.BasicBlock`.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, planes, OH, OW), OH = floor((H - 1) / stride) + 1, likewise OW.

    Backward:
        dz = add.backward(relu2.backward(dy)); d = se.backward(dz); then bn2, conv2, relu1, bn1, conv1 in reverse;
        dx = d + (downsample.backward(dz) if downsample else dz).

    Examples:
        >>> block = SEBasicBlock(16, 16)
        >>> y = block(np.ones((2, 16, 4, 4), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((2, 16, 4, 4), (2, 16, 4, 4))
    """

    #: the SENet paper's reduction ratio r: the gate's bottleneck has C / r channels
    reduction = 16

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Module | None = None) -> None:
        super().__init__(inplanes, planes, stride, downsample)
        self.se = SqueezeExcitation(planes, _squeeze_channels(planes, self.reduction))

    # the gate runs between bn2 and the sum: bn2 and add are not back to back (no joined block end)
    fusion_groups = (("conv1", "bn1", "relu1"), ("conv2", "bn2"), ("add", "relu2"))

    def forward(self, x: Any) -> Any:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu2(self.add(out, self._shortcut(x, out.shape)))

    def backward(self, dout: Any) -> Any:
        dz = self.add.backward(self.relu2.backward(dout))
        d = self.conv2.backward(self.bn2.backward(self.se.backward(dz)))
        d = self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))
        return d + self._shortcut_backward(dz)


class SEBottleneck(Bottleneck):
    r""":class:`~minidl.models.Bottleneck` with a squeeze-and-excitation gate on the residual branch.

    .. math:: y = \mathrm{relu}(\mathrm{se}(\mathrm{bn_3}(\mathrm{conv_3}(\ldots))) + \mathrm{downsample}(x))

    Args:
        inplanes, planes, stride, downsample, groups, width_per_group: as :class:`~minidl.models.Bottleneck`.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, 4 * planes, OH, OW), OH = floor((H - 1) / stride) + 1.

    Backward:
        dz = add.backward(relu3.backward(dy)); d = se.backward(dz); then the body's layers in reverse;
        dx = d + (downsample.backward(dz) if downsample else dz).

    Examples:
        >>> block = SEBottleneck(64, 16)
        >>> y = block(np.ones((2, 64, 4, 4), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((2, 64, 4, 4), (2, 64, 4, 4))
    """

    reduction = 16

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Module | None = None,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__(inplanes, planes, stride, downsample, groups, width_per_group)
        channels = planes * self.expansion
        self.se = SqueezeExcitation(channels, _squeeze_channels(channels, self.reduction))

    # the gate runs between bn3 and the sum: bn3 and add are not back to back (no joined block end)
    fusion_groups = (("conv1", "bn1", "relu1"), ("conv2", "bn2", "relu2"), ("conv3", "bn3"), ("add", "relu3"))

    def forward(self, x: Any) -> Any:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu3(self.add(out, self._shortcut(x, out.shape)))

    def backward(self, dout: Any) -> Any:
        dz = self.add.backward(self.relu3.backward(dout))
        d = self.conv3.backward(self.bn3.backward(self.se.backward(dz)))
        d = self.conv2.backward(self.bn2.backward(self.relu2.backward(d)))
        d = self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))
        return d + self._shortcut_backward(dz)


def _stem(cifar: bool) -> str:
    return "cifar" if cifar else "imagenet"


def se_resnet18(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-18: SEBasicBlock x [2, 2, 2, 2]; 11,778,592 parameters with 1000 classes (ResNet-18 + 89,080).

    Args:
        num_classes: outputs of ``fc``. Default: 1000.
        cifar: the 3x3/1 stem without max-pool, for 32x32 images. Default: False.
        **kwargs: passed to :class:`~minidl.models.ResNet`.

    Examples:
        >>> net = se_resnet18(num_classes=10, cifar=True)
        >>> net(np.zeros((1, 3, 32, 32), np.float32)).shape
        (1, 10)
    """
    return ResNet(SEBasicBlock, [2, 2, 2, 2], num_classes, stem=_stem(cifar), **kwargs)


def se_resnet34(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-34: SEBasicBlock x [3, 4, 6, 3]; 21,958,868 parameters with 1000 classes."""
    return ResNet(SEBasicBlock, [3, 4, 6, 3], num_classes, stem=_stem(cifar), **kwargs)


def se_resnet50(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """SE-ResNet-50: SEBottleneck x [3, 4, 6, 3]; 28,088,024 parameters with 1000 classes (the paper: 28.1M)."""
    return ResNet(SEBottleneck, [3, 4, 6, 3], num_classes, stem=_stem(cifar), **kwargs)


def se_resnet20(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """CIFAR SE-ResNet-20: :func:`~minidl.models.resnet20` with SE blocks (16/32/64 channels, gates of 1/2/4).

    Args:
        num_classes: outputs of the final Linear. Default: 10.
        **kwargs: passed to :class:`~minidl.models.ResNet`.

    Examples:
        >>> net = se_resnet20()
        >>> y = net(np.zeros((2, 3, 32, 32), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 32, 32))
    """
    return ResNet(SEBasicBlock, [3, 3, 3], num_classes, stem="cifar", widths=(16, 32, 64), **kwargs)
