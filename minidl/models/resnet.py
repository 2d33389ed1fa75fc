r"""Residual networks (He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

A residual block learns a correction :math:`F(x)` to its input instead of a whole mapping:

.. math:: y = \mathrm{relu}\big(F(x) + s(x)\big), \qquad s(x) = x \text{ or } \mathrm{BN}(W_{1\times1} * x)

where :math:`s` is the identity when :math:`F` keeps the shape, and a 1x1 convolution (with the block's stride)
plus BatchNorm when it changes the channels or the resolution (the paper's "option B" projection shortcut).

* **BasicBlock** (ResNet-18/34 and the CIFAR ResNets): :math:`F = \mathrm{BN}(\mathrm{conv}_{3\times3}(
  \mathrm{relu}(\mathrm{BN}(\mathrm{conv}_{3\times3}(x)))))`.
* **Bottleneck** (ResNet-50/101/152): 1x1 conv down to ``width`` channels, 3x3 conv (carrying the stride, as in
  torchvision's "ResNet v1.5"; the paper put it on the first 1x1), 1x1 conv up to ``4 * planes``.

The blocks, their backward and their fused ends are in ``resnet_blocks.py``.

Two families share one :class:`ResNet` class:

* ImageNet (224x224): a 7x7/2 stem conv and a 3x3/2 max-pool, then four stages of 64/128/256/512 ``planes``;
  state_dict keys exactly torchvision's (``conv1.weight``, ``layer1.0.conv1.weight``,
  ``layer2.0.downsample.0.weight``, ``fc.weight``, ...), so torchvision weights load by name.
* CIFAR (32x32, the paper's section 4.2): a 3x3 stem conv, no max-pool, three stages of 16/32/64 channels with
  n blocks each (depth 6n + 2: resnet20/32/44/56/110) and option-B shortcuts.

Initialization as torchvision: every conv ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, BatchNorm
weight 1 and bias 0, the final Linear keeps PyTorch's default U(+-1/sqrt(in_features)); with
``zero_init_residual=True`` the last BatchNorm of each block starts at weight 0, so each block starts as the
identity (Goyal et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minidl.models.resnet_blocks import BasicBlock, Bottleneck, conv1x1, conv3x3
from minidl.models.weights import ResNet20_Weights, load_pretrained
from minidl.nn import init
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

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "conv1x1",
    "conv3x3",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
]


class ResNet(Module):
    """A residual network: stem, stages of residual blocks, global average pooling, a linear classifier.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`, or a subclass (SE-ResNet's blocks).
        layers: blocks per stage, e.g. ``[2, 2, 2, 2]`` (ResNet-18) or ``[3, 3, 3]`` (ResNet-20).
        num_classes: outputs of ``fc``. Default: 1000.
        zero_init_residual: start the last BatchNorm of each block at weight 0. Default: False.
        groups: groups of the Bottleneck's 3x3 conv (ResNeXt). Default: 1.
        width_per_group: Bottleneck width per group (wide ResNets use 128). Default: 64.
        in_channels: C of the input images. Default: 3.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv, no pooling).
            Default: ``"imagenet"``.
        widths: ``planes`` of each stage; stage i > 0 starts with stride 2. Default: (64, 128, 256, 512).

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, num_classes). The spatial size shrinks by 4 in the ImageNet stem and by 2 at each later
          stage (224 -> 56 -> 28 -> 14 -> 7); global average pooling then accepts any size.

    Backward:
        fc, flatten, avgpool, the stages in reverse, maxpool, relu, bn1, conv1: each layer's backward on the
        previous one's result (see :class:`BasicBlock` for the blocks).

    Examples:
        >>> import numpy as np
        >>> net = ResNet(BasicBlock, [1, 1, 1], num_classes=10, stem="cifar", widths=(8, 16, 32))
        >>> y = net(np.ones((2, 3, 16, 16), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 16, 16))
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        in_channels: int = 3,
        stem: str = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        if not (isinstance(block, type) and issubclass(block, (BasicBlock, Bottleneck))):
            raise TypeError(f"ResNet: block must be BasicBlock or Bottleneck (or a subclass), got {block!r}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"ResNet: stem must be 'imagenet' or 'cifar', got {stem!r}")
        layers, widths = list(layers), list(widths)
        if not layers or len(layers) != len(widths):
            raise ValueError(f"ResNet: layers {layers} and widths {widths} must be non-empty and of the same length")
        for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
            check_int("ResNet", f"layers[{i}]", n)
            check_int("ResNet", f"widths[{i}]", w)
        if issubclass(block, BasicBlock) and (groups != 1 or width_per_group != 64):
            raise ValueError("ResNet: BasicBlock only supports groups=1 and width_per_group=64 (as torchvision)")
        self.num_classes = check_int("ResNet", "num_classes", num_classes)
        self.in_channels = check_int("ResNet", "in_channels", in_channels)
        self.groups = check_int("ResNet", "groups", groups)
        self.width_per_group = check_int("ResNet", "width_per_group", width_per_group)
        self.stem = stem
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_channels, self.inplanes)
        self.bn1 = BatchNorm2d(self.inplanes)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else None
        self.num_stages = len(layers)
        for i, (blocks, planes) in enumerate(zip(layers, widths, strict=True)):
            self.add_module(f"layer{i + 1}", self._make_layer(block, planes, blocks, stride=1 if i == 0 else 2))
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.flatten = Flatten(1)
        self.fc = Linear(widths[-1] * block.expansion, num_classes)
        self.reset_parameters(zero_init_residual)

    def _make_layer(self, block: Any, planes: int, blocks: int, stride: int) -> Sequential:
        """One stage: the first block changes stride/channels (with a projection shortcut), the rest keep them."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), BatchNorm2d(planes * block.expansion)
            )
        extra = (
            {} if issubclass(block, BasicBlock) else {"groups": self.groups, "width_per_group": self.width_per_group}
        )
        stage = [block(self.inplanes, planes, stride, downsample, **extra)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes, **extra) for _ in range(1, blocks)]
        return Sequential(*stage)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """torchvision's init: convs kaiming_normal_(fan_out, relu), BN weight 1 / bias 0, fc PyTorch's default."""
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BatchNorm2d):
                m.reset_parameters()
            elif isinstance(m, Linear):
                m.reset_parameters()
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    init.zeros_(m.bn2.weight)

    def stages(self) -> list[Sequential]:
        """The residual stages ``layer1``, ``layer2``, ... in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def extra_repr(self) -> str:
        return f"stem={self.stem!r}, num_classes={self.num_classes}"

    fusion_groups = (("conv1", "bn1", "relu"),)

    def forward(self, x: Any) -> Any:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages():
            x = stage(x)
        return self.fc(self.flatten(self.avgpool(x)))

    def backward(self, dout: Any) -> Any:
        d = self.avgpool.backward(self.flatten.backward(self.fc.backward(dout)))
        for stage in reversed(self.stages()):
            d = stage.backward(d)
        if self.maxpool is not None:
            d = self.maxpool.backward(d)
        return self.conv1.backward(self.bn1.backward(self.relu.backward(d)))


# ---------------------------------------------------------------------------------------------- ImageNet ResNets
def resnet18(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2]; 11,689,512 parameters with 1000 classes, 1.82 GMAC at 224x224.

    Args:
        num_classes: outputs of ``fc``. Default: 1000.
        cifar: swap the stem for a 3x3/1 conv without max-pool (the common 32x32 variant, 11.2M parameters with 10
            classes, 0.56 GMAC at 32x32). Default: False.
        **kwargs: passed to :class:`ResNet`.

    Examples:
        >>> import numpy as np
        >>> resnet18(num_classes=2)(np.zeros((1, 3, 64, 64), np.float32)).shape
        (1, 2)
    """
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, stem="cifar" if cifar else "imagenet", **kwargs)


def resnet34(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3]; 21,797,672 parameters with 1000 classes, 3.67 GMAC at 224x224."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, stem="cifar" if cifar else "imagenet", **kwargs)


def resnet50(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 (v1.5): Bottleneck x [3, 4, 6, 3]; 25,557,032 parameters with 1000 classes, 4.09 GMAC."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stem="cifar" if cifar else "imagenet", **kwargs)


def resnet101(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-101 (v1.5): Bottleneck x [3, 4, 23, 3]; 44,549,160 parameters with 1000 classes, 7.80 GMAC."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, stem="cifar" if cifar else "imagenet", **kwargs)


def resnet152(num_classes: int = 1000, *, cifar: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-152 (v1.5): Bottleneck x [3, 8, 36, 3]; 60,192,808 parameters with 1000 classes, 11.5 GMAC."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, stem="cifar" if cifar else "imagenet", **kwargs)


# ---------------------------------------------------------------------------------------------- CIFAR ResNets
def _cifar_resnet(n: int, num_classes: int, kwargs: dict[str, Any]) -> ResNet:
    return ResNet(BasicBlock, [n, n, n], num_classes, stem="cifar", widths=(16, 32, 64), **kwargs)


def resnet20(num_classes: int = 10, *, weights: ResNet20_Weights | str | None = None, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-20 (He et al. section 4.2, n = 3, option-B shortcuts): 272,474 parameters, 41 MMAC at 32x32.

    Args:
        num_classes: outputs of the final Linear. Default: 10.
        weights: ``None`` (random), or :class:`~minidl.models.weights.ResNet20_Weights` ``.CIFAR10`` (also given as
            ``"cifar10"`` or ``"DEFAULT"``): the shipped weights trained by ``examples/train_cifar10.py``, checked
            against their SHA-256. Default: None.
        **kwargs: passed to :class:`ResNet` (e.g. ``zero_init_residual=True``).

    Examples:
        >>> import numpy as np
        >>> net = resnet20()
        >>> net(np.zeros((2, 3, 32, 32), np.float32)).shape, sum(p.size for p in net.parameters())
        ((2, 10), 272474)
    """
    weights = ResNet20_Weights.verify(weights, "resnet20")
    model = _cifar_resnet(3, num_classes, kwargs)
    if weights is not None:
        load_pretrained(model, weights, "resnet20")
    return model


def resnet32(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-32 (n = 5): 466,906 parameters with 10 classes, 69 MMAC at 32x32."""
    return _cifar_resnet(5, num_classes, kwargs)


def resnet44(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-44 (n = 7): 661,338 parameters with 10 classes, 97 MMAC at 32x32."""
    return _cifar_resnet(7, num_classes, kwargs)


def resnet56(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-56 (n = 9): 855,770 parameters with 10 classes, 126 MMAC at 32x32."""
    return _cifar_resnet(9, num_classes, kwargs)


def resnet110(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-110 (n = 18): 1,730,714 parameters with 10 classes, 253 MMAC at 32x32."""
    return _cifar_resnet(18, num_classes, kwargs)
