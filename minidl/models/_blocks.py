r"""Blocks several model families share: the squeeze-and-excitation block (SE-ResNet here; MobileNetV3 and
EfficientNet use it too).

Squeeze-and-excitation (Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018) lets a block reweight its
own channels from a summary of the whole image: *squeeze* each channel to its mean, *excite* through a small
bottleneck (two 1x1 convolutions, C -> S -> C) to one gate per channel, and multiply each channel by its gate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._checks import check_int
from minidl.nn.activation import ReLU, Sigmoid
from minidl.nn.conv import Conv2d
from minidl.nn.merge import ChannelMul
from minidl.nn.module import Module
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = ["SqueezeExcitation"]


class SqueezeExcitation(Module):
    r"""Squeeze-and-excitation block, as ``torchvision.ops.SqueezeExcitation`` (same names: ``fc1``, ``fc2``).

    .. math::

        z_{n,c} = \frac{1}{HW} \sum_{h,w} x_{n,c,h,w}, \qquad
        s = \sigma\big(W_2\, \delta(W_1 z + b_1) + b_2\big), \qquad
        y_{n,c,h,w} = s_{n,c}\, x_{n,c,h,w}

    with :math:`W_1` (S x C) and :math:`W_2` (C x S) the 1x1 convolutions ``fc1`` and ``fc2``, :math:`\delta` the
    ``activation`` (ReLU) and :math:`\sigma` the ``scale_activation`` (Sigmoid). The product is the module ``mul``
    (:class:`minidl.nn.ChannelMul`); it has no parameters, so the state_dict keys are torchvision's
    (``fc1.weight``, ``fc1.bias``, ``fc2.weight``, ``fc2.bias``).

    Args:
        input_channels: C.
        squeeze_channels: S, the bottleneck width (the SENet paper uses C / 16).
        activation: the class of the activation after ``fc1``. Default: :class:`~minidl.nn.ReLU`.
        scale_activation: the class of the activation giving the gates. Default: :class:`~minidl.nn.Sigmoid`.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, H, W).

    Backward:
        x feeds two paths, the product and the squeeze, so its gradient is the sum of two terms:
        (dx1, ds) = mul.backward(dy) (dx1 = dy * s, ds = sum over (h, w) of dy * x);
        dx = dx1 + avgpool.backward(fc1.backward(activation.backward(fc2.backward(scale_activation.backward(ds))))).

    Examples:
        >>> se = SqueezeExcitation(8, 2)
        >>> y = se(np.ones((2, 8, 4, 4), np.float32))
        >>> y.shape, se.backward(np.ones_like(y)).shape, sum(p.size for p in se.parameters())  # 8*2+2 + 2*8+8
        ((2, 8, 4, 4), (2, 8, 4, 4), 42)
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[[], Module] = ReLU,
        scale_activation: Callable[[], Module] = Sigmoid,
    ) -> None:
        super().__init__()
        self.input_channels = check_int("SqueezeExcitation", "input_channels", input_channels)
        self.squeeze_channels = check_int("SqueezeExcitation", "squeeze_channels", squeeze_channels)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()
        self.mul = ChannelMul()
        for name in ("activation", "scale_activation"):
            if not isinstance(getattr(self, name), Module):
                raise TypeError(f"SqueezeExcitation: {name} must build a Module, got {getattr(self, name)!r}")

    def extra_repr(self) -> str:
        return f"{self.input_channels}, {self.squeeze_channels}"

    def forward(self, x: Any) -> Any:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return self.mul(x, scale)

    def backward(self, dout: Any) -> Any:
        dx, dscale = self.mul.backward(dout)
        d = self.fc1.backward(self.activation.backward(self.fc2.backward(self.scale_activation.backward(dscale))))
        return dx + self.avgpool.backward(d)  # x fed the product and the squeeze: the gradients add

    def receptive_field_branches(self) -> list[list[Module]]:
        """The gate is global (it sees the whole image) but spatially constant: for :func:`minidl.summary` the
        block keeps the receptive field (the identity)."""
        return [[]]
