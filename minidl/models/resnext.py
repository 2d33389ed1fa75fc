r"""ResNeXt and wide ResNets for ImageNet: torchvision's :class:`~minidl.models.ResNet` with a wider or grouped
bottleneck, same names and state_dict keys as torchvision's ``resnext50_32x4d`` ... ``wide_resnet101_2``.

Both change only the 3x3 convolution of each :class:`~minidl.models.Bottleneck`, whose width is
``int(planes * width_per_group / 64) * groups``:

* **ResNeXt** (Xie, Girshick, Dollar, Tu and He, "Aggregated Residual Transformations for Deep Neural Networks",
  CVPR 2017): "32x4d" is a 3x3 convolution in 32 groups of 4 channels at ``planes = 64`` (width 128, then 256,
  512, 1024): 32 parallel paths ("cardinality"), at about the cost of ResNet-50.
* **Wide ResNets** (Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016), torchvision's ImageNet version:
  ``width_per_group = 128`` doubles every bottleneck width; the block's output (``4 * planes``) is unchanged.

For the CIFAR WRN-d-k of the paper (pre-activation blocks), see :func:`~minidl.models.wide_resnet_cifar`.
"""

from __future__ import annotations

from typing import Any

from minidl.models.resnet import Bottleneck, ResNet

__all__ = ["resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]


def resnext50_32x4d(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d: Bottleneck x [3, 4, 6, 3], groups 32, width_per_group 4; 25,028,904 parameters with
    1000 classes, 4.23 GMAC at 224x224 (torchvision's ``resnext50_32x4d``).

    Args:
        num_classes: outputs of ``fc``. Default: 1000.
        **kwargs: passed to :class:`~minidl.models.ResNet` (e.g. ``zero_init_residual=True``).

    Examples:
        >>> import numpy as np
        >>> net = resnext50_32x4d(num_classes=10)
        >>> net.layer1[0].conv2  # 32 groups of 4 channels
        Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=32, bias=False)
        >>> net(np.zeros((2, 3, 32, 32), np.float32)).shape
        (2, 10)
    """
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d: Bottleneck x [3, 4, 23, 3], groups 32, width_per_group 8; 88,791,336 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, groups=32, width_per_group=8, **kwargs)


def wide_resnet50_2(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """Wide ResNet-50-2: Bottleneck x [3, 4, 6, 3] with width_per_group 128 (twice ResNet-50's bottleneck width);
    68,883,240 parameters with 1000 classes, 11.4 GMAC at 224x224 (torchvision's ``wide_resnet50_2``).

    Examples:
        >>> from minidl.models import Bottleneck
        >>> Bottleneck(256, 64, width_per_group=128).conv2  # its first block's 3x3 conv: ResNet-50's has 64 channels
        Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    """
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=128, **kwargs)


def wide_resnet101_2(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """Wide ResNet-101-2: Bottleneck x [3, 4, 23, 3] with width_per_group 128; 126,886,696 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, width_per_group=128, **kwargs)
