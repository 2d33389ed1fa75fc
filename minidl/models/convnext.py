r"""ConvNeXt (Liu, Mao, Wu, Feichtenhofer, Darrell and Xie, "A ConvNet for the 2020s", CVPR 2022), with
torchvision's structure and state_dict keys, and a ConvNeXt-style network for CIFAR-10.

ConvNeXt is a ResNet modernized step by step toward the Swin Transformer's design, every step measured: a
"patchify" stem (a 4x4 convolution with stride 4), stage widths 96/192/384/768 with (3, 3, 9, 3) blocks, and an
inverted-bottleneck block that mixes space and channels separately, as a Transformer block does,

.. math::

    y = x + \mathrm{DropPath}\big(\gamma \odot W_2\, \mathrm{GELU}(W_1\, \mathrm{LN}(\mathrm{dw}_{7\times7}(x)))\big),

with a depthwise 7x7 convolution (the large kernel plays attention's spatial role), one LayerNorm instead of
BatchNorms, a 4x wider MLP made of two 1x1 convolutions (Linear layers on the channels-last map), a single GELU,
a learned per-channel scale :math:`\gamma` started at 1e-6 (LayerScale) and stochastic depth. Downsampling
between stages is its own LayerNorm + 2x2 convolution with stride 2.

**Backward of a block**: the residual sum passes :math:`dy` to both terms, so :math:`dx = dy +
\mathrm{block}^\top(\gamma \odot \mathrm{DropPath}^\top(dy))`, and :math:`d\gamma_c = \sum_{n,h,w} dy'_{n,c,h,w}\,
b_{n,c,h,w}` for the block's output :math:`b` (:func:`~minidl.nn.layer_scale.layer_scale_backward`).

Initialization as torchvision: Conv2d and Linear weights truncated normal with std 0.02, biases 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from minidl.nn import init
from minidl.nn._checks import check_float, check_layout
from minidl.nn.activation_gated import GELU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dispatch import F
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.merge import Add
from minidl.nn.module import Module
from minidl.nn.normalization_group import LayerNorm
from minidl.nn.parameter import Parameter
from minidl.nn.permute import Permute
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d
from minidl.nn.stochastic_depth import StochasticDepth

__all__ = ["CNBlock", "CNBlockConfig", "ConvNeXt", "LayerNorm2d", "convnext_cifar", "convnext_tiny"]

_TO_CHANNELS_LAST, _TO_CHANNELS_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)


class LayerNorm2d(LayerNorm):
    r"""LayerNorm over the channels of an (N, C, H, W) map, each pixel on its own (torchvision's ``LayerNorm2d``):
    permute to channels-last, :func:`~minidl.nn.normalization_group.layer_norm_forward` over C, permute back.

    .. math:: y_{n,:,h,w} = \frac{x_{n,:,h,w} - \mu_{n,h,w}}{\sqrt{\sigma^2_{n,h,w} + \epsilon}} \odot \gamma + \beta

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, H, W).
    Backward:
        The permutes' inverses around LayerNorm's backward.

    Examples:
        >>> ln = LayerNorm2d(4, eps=1e-6)
        >>> y = ln(np.random.default_rng(0).normal(size=(2, 4, 3, 3)).astype(np.float32))
        >>> np.allclose(y.mean(axis=1), 0, atol=1e-5), ln.backward(np.ones_like(y)).shape
        (True, (2, 4, 3, 3))
    """

    def _where(self) -> str:
        return f"LayerNorm2d({self.normalized_shape[0]})"

    def forward(self, x: Any) -> Any:
        check_layout(self._where(), x, ndim=4)
        x, to_last = F.permute_forward(x, _TO_CHANNELS_LAST)
        weight = None if self.weight is None else self.weight.data
        bias = None if self.bias is None else self.bias.data
        y, norm = F.layer_norm_forward(x, self.normalized_shape, weight, bias, self.eps)
        out, to_first = F.permute_forward(y, _TO_CHANNELS_FIRST)
        self.save_for_backward(to_last, norm, to_first)
        return out

    def backward(self, dout: Any) -> Any:
        to_last, norm, to_first = self.pop_saved()
        dy = F.permute_backward(dout, to_first)
        dx, dgamma, dbeta = F.layer_norm_backward(dy, norm)
        if self.weight is not None:
            self.weight.accumulate_grad(dgamma)
        if self.bias is not None:
            self.bias.accumulate_grad(dbeta)
        return F.permute_backward(dx, to_last)


class CNBlock(Module):
    """The ConvNeXt block (module docstring), with torchvision's keys: ``block.0`` (depthwise 7x7), ``block.2``
    (LayerNorm), ``block.3``/``block.5`` (Linear), ``layer_scale`` (C, 1, 1).

    Args:
        dim: C.
        layer_scale: the initial value of every :math:`\\gamma_c`.
        stochastic_depth_prob: the probability that the block's branch is dropped for a sample (training).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, H, W).

    Examples:
        >>> block = CNBlock(8, layer_scale=1e-6, stochastic_depth_prob=0.0)
        >>> y = block(np.ones((2, 8, 5, 5), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((2, 8, 5, 5), (2, 8, 5, 5))
    """

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = Sequential(
            Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute(list(_TO_CHANNELS_LAST)),
            LayerNorm(dim, eps=1e-6),
            Linear(dim, 4 * dim),
            GELU(),
            Linear(4 * dim, dim),
            Permute(list(_TO_CHANNELS_FIRST)),
        )
        self.layer_scale = Parameter(np.full((dim, 1, 1), layer_scale, np.float32))
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.add = Add()

    def forward(self, x: Any) -> Any:
        branch = self.block(x)
        scaled, cache = F.layer_scale_forward(branch, self.layer_scale.data.reshape(-1), dim=1)
        self.save_for_backward(cache)
        return self.add(self.stochastic_depth(scaled), x)

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        d = self.add.backward(dout)  # to the branch and to the shortcut
        dbranch, dgamma = F.layer_scale_backward(self.stochastic_depth.backward(d), cache)
        self.layer_scale.accumulate_grad(dgamma.reshape(self.layer_scale.shape))
        return d + self.block.backward(dbranch)


class CNBlockConfig(NamedTuple):
    """One stage: its width, the width after its downsampling layer (None: the last stage), its block count."""

    input_channels: int
    out_channels: int | None
    num_layers: int


class ConvNeXt(Module):
    """ConvNeXt with torchvision's module names (``features``, ``avgpool``, ``classifier``).

    Args:
        block_setting: the stages, as :class:`CNBlockConfig`.
        stochastic_depth_prob: the largest drop probability; block k of K gets ``p * k / (K - 1)``. Default: 0.
        layer_scale: the initial LayerScale. Default: 1e-6.
        num_classes: classes. Default: 1000.
        stem_kernel: the patchify stem's kernel and stride. Default: 4.
        in_channels: image channels. Default: 3.

    Shape:
        - Input: (N, in_channels, H, W).  - Output: (N, num_classes).

    Examples:
        >>> net = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=3)
        >>> y = net(np.ones((2, 3, 16, 16), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 3), (2, 3, 16, 16))
    """

    def __init__(
        self,
        block_setting: Sequence[CNBlockConfig],
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = 1e-6,
        num_classes: int = 1000,
        stem_kernel: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        where = "ConvNeXt"
        if not block_setting or not all(isinstance(s, CNBlockConfig) for s in block_setting):
            raise TypeError(f"{where}: block_setting must be a non-empty list of CNBlockConfig, got {block_setting!r}")
        check_float(where, "stochastic_depth_prob", stochastic_depth_prob, low=0.0, high=1.0)
        first = block_setting[0].input_channels
        layers: list[Module] = [
            Sequential(
                Conv2d(in_channels, first, kernel_size=stem_kernel, stride=stem_kernel, bias=True),
                LayerNorm2d(first, eps=1e-6),
            )
        ]
        total = sum(cnf.num_layers for cnf in block_setting)
        block_id = 0
        for cnf in block_setting:
            stage = []
            for _ in range(cnf.num_layers):
                p = stochastic_depth_prob * block_id / max(total - 1.0, 1.0)
                stage.append(CNBlock(cnf.input_channels, layer_scale, p))
                block_id += 1
            layers.append(Sequential(*stage))
            if cnf.out_channels is not None:  # downsampling
                layers.append(
                    Sequential(
                        LayerNorm2d(cnf.input_channels, eps=1e-6),
                        Conv2d(cnf.input_channels, cnf.out_channels, kernel_size=2, stride=2),
                    )
                )
        self.features = Sequential(*layers)
        self.avgpool = AdaptiveAvgPool2d(1)
        last = block_setting[-1]
        width = last.out_channels if last.out_channels is not None else last.input_channels
        self.classifier = Sequential(LayerNorm2d(width, eps=1e-6), Flatten(1), Linear(width, num_classes))
        for m in self.modules():
            if isinstance(m, (Conv2d, Linear)):
                init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    init.zeros_(m.bias)

    def forward(self, x: Any) -> Any:
        return self.classifier(self.avgpool(self.features(x)))

    def backward(self, dout: Any) -> Any:
        return self.features.backward(self.avgpool.backward(self.classifier.backward(dout)))


def convnext_tiny(num_classes: int = 1000, stochastic_depth_prob: float = 0.1, **kwargs: Any) -> ConvNeXt:
    """ConvNeXt-T: widths 96/192/384/768, blocks (3, 3, 9, 3); 28,589,128 parameters with 1000 classes.

    Examples:
        >>> from minidl import models
        >>> models.convnext_tiny  # doctest: +ELLIPSIS
        <function convnext_tiny at ...>
    """
    setting = [CNBlockConfig(96, 192, 3), CNBlockConfig(192, 384, 3), CNBlockConfig(384, 768, 9)]
    setting.append(CNBlockConfig(768, None, 3))
    return ConvNeXt(setting, stochastic_depth_prob=stochastic_depth_prob, num_classes=num_classes, **kwargs)


def convnext_cifar(
    num_classes: int = 10,
    widths: Sequence[int] = (64, 128, 256),
    depths: Sequence[int] = (2, 2, 2),
    stochastic_depth_prob: float = 0.1,
    **kwargs: Any,
) -> ConvNeXt:
    """A ConvNeXt-style network for 32x32 images: a 2x2 patchify stem (16x16 maps), stages of ``depths`` blocks at
    ``widths`` (16, 8, 4 pixels), LayerScale 1e-6, stochastic depth up to 0.1.

    Examples:
        >>> from minidl import models
        >>> net = models.convnext_cifar(widths=(8, 16), depths=(1, 1))
        >>> net(np.zeros((2, 3, 32, 32), np.float32)).shape
        (2, 10)
    """
    widths, depths = list(widths), list(depths)
    if not widths or len(widths) != len(depths):
        raise ValueError(f"convnext_cifar: widths {widths} and depths {depths} must be non-empty and of one length")
    setting = [
        CNBlockConfig(w, widths[i + 1] if i + 1 < len(widths) else None, d)
        for i, (w, d) in enumerate(zip(widths, depths, strict=True))
    ]
    kwargs.setdefault("stem_kernel", 2)
    return ConvNeXt(setting, stochastic_depth_prob=stochastic_depth_prob, num_classes=num_classes, **kwargs)
