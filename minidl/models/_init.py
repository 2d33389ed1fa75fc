"""The weight initialization torchvision gives VGG and MobileNetV2, shared by both."""

from __future__ import annotations

from minidl.nn import init
from minidl.nn.conv import Conv2d
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d


def torchvision_init_(model: Module) -> None:
    """Convs ``kaiming_normal_(fan_out, relu)`` with bias 0, BatchNorm weight 1 / bias 0, Linear N(0, 0.01) with
    bias 0, in module order (so a seed gives torchvision's draws)."""
    for m in model.modules():
        if isinstance(m, Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, BatchNorm2d):
            m.reset_parameters()
        elif isinstance(m, Linear):
            init.normal_(m.weight, 0.0, 0.01)
            init.zeros_(m.bias)
