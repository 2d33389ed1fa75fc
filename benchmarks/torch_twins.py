"""PyTorch twins of the models ``bench_train.py`` times: the same layers under the same module names as the minidl
model, so ``load_state_dict`` carries the weights from one to the other by name.

==============  =====================================================  ==========================================
name            minidl model                                           twin
==============  =====================================================  ==========================================
cifar_cnn       ``models.cifar_cnn(num_classes=10)``                   :func:`cifar_cnn`
resnet20        ``models.resnet20(num_classes=10)``                    ``cifar_resnet(3)``
resnet56        ``models.resnet56(num_classes=10)``                    ``cifar_resnet(9)``
vgg11_bn        ``models.vgg11_bn(num_classes=10, cifar=True)``        :func:`vgg11_bn_cifar`
mobilenet_v2    ``models.mobilenet_v2(num_classes=10, cifar=True)``    :func:`mobilenet_v2_cifar`
airbench94      ``models.airbench94(num_classes=10)``                  ``airbench_torch.AirbenchTorch``
vit_cifar       ``models.vit_cifar(num_classes=10)``                   :func:`vit_cifar`
==============  =====================================================  ==========================================

The twins are written here in plain PyTorch, after torchvision's code (torchvision is not needed).
``tests/models/test_bench_twins.py`` copies each minidl model's ``state_dict`` into its twin and checks that both
give the same logits in float64. The weights the twins start from are PyTorch's defaults (a benchmark's timing does
not depend on them).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

__all__ = ["TWINS", "build", "cifar_cnn", "cifar_resnet", "mobilenet_v2_cifar", "vgg11_bn_cifar", "vit_cifar"]


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


# ---------------------------------------------------------------------------------------------------- cifar_cnn
class CifarCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(3, 32), *_conv_bn_relu(32, 32), nn.MaxPool2d(2), *_conv_bn_relu(32, 64),
            *_conv_bn_relu(64, 64), nn.MaxPool2d(2), *_conv_bn_relu(64, 128), nn.MaxPool2d(2),
        )  # fmt: skip
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(128 * 4 * 4, num_classes))

    def forward(self, x: Any) -> Any:
        return self.classifier(self.flatten(self.features(x)))


def cifar_cnn(num_classes: int = 10) -> CifarCNN:
    return CifarCNN(num_classes)


# ---------------------------------------------------------------------------------------------------- CIFAR ResNets
class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:  # projection shortcut: 1x1 conv + BN
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu2 = nn.ReLU()

    def forward(self, x: Any) -> Any:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    """He et al. 2015, section 4.2: a 3x3 stem of 16 channels, three stages of ``n`` basic blocks (16, 32, 64
    channels, projection shortcuts), global average pooling, a Linear: 6n + 2 layers."""

    def __init__(self, n: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        c_in = 16
        for i, width in enumerate((16, 32, 64)):
            blocks = [BasicBlock(c_in if j == 0 else width, width, 2 if i > 0 and j == 0 else 1) for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Any) -> Any:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def cifar_resnet(n: int, num_classes: int = 10) -> CifarResNet:
    """ResNet-(6n + 2): ``cifar_resnet(3)`` is resnet20, ``cifar_resnet(9)`` resnet56."""
    return CifarResNet(n, num_classes)


# ---------------------------------------------------------------------------------------------------- VGG-11-BN
VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGGCifar(nn.Module):
    """torchvision's VGG ``features`` with BatchNorm; the CIFAR head of ``minidl.models.VGG(cifar=True)``: the five
    pools leave 512 x 1 x 1, then one Linear(512, num_classes)."""

    def __init__(self, cfg: list[Any], num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: Any) -> Any:
        return self.classifier(self.flatten(self.features(x)))


def vgg11_bn_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(VGG11, num_classes)


# ---------------------------------------------------------------------------------------------------- MobileNetV2
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, groups=groups, bias=False)
        super().__init__(conv, nn.BatchNorm2d(c_out), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel_size=1))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),  # linear projection
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Any) -> Any:
        return self.conv(x) + x if self.use_res_connect else self.conv(x)


class MobileNetV2Cifar(nn.Module):
    """torchvision's MobileNetV2 (width 1) with ``minidl.models.MobileNetV2(cifar=True)``'s change for 32x32
    images: stride 1 in the stem and in the second stage (the last feature map is 4x4)."""

    # t, c, n, s as minidl's INVERTED_RESIDUAL_SETTING, the second row's stride 2 -> 1
    SETTING = [
        [1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
    ]  # fmt: skip

    def __init__(self, num_classes: int = 10, dropout: float = 0.2) -> None:
        super().__init__()
        c_in, last = _make_divisible(32), _make_divisible(1280)
        features: list[nn.Module] = [Conv2dNormActivation(3, c_in, stride=1)]
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, expand_ratio=t))
                c_in = c
        features.append(Conv2dNormActivation(c_in, last, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))

    def forward(self, x: Any) -> Any:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def mobilenet_v2_cifar(num_classes: int = 10) -> MobileNetV2Cifar:
    return MobileNetV2Cifar(num_classes)


# ---------------------------------------------------------------------------------------------------- ViT
class EncoderBlock(nn.Module):
    """torchvision's pre-norm encoder block: x' = x + attention(LN1(x)); y = x' + MLP(LN2(x'))."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, hidden_dim), nn.Dropout(0.0)
        )

    def forward(self, input: Any) -> Any:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        blocks = OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim)) for i in range(num_layers)
        )
        self.layers = nn.Sequential(blocks)
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: Any) -> Any:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """torchvision's VisionTransformer (``conv_proj``, ``class_token``, ``encoder``, ``heads.head``)."""

    def __init__(
        self, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
        num_classes: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / (3 * patch_size * patch_size)))
        nn.init.zeros_(self.conv_proj.bias)

    def forward(self, x: Any) -> Any:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (N, D, H/P, W/P) -> (N, L, D)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def vit_cifar(num_classes: int = 10) -> VisionTransformer:
    """``minidl.models.vit_cifar()``: 32x32 images, patch 4, 6 layers, 4 heads, D = 128, MLP 256."""
    return VisionTransformer(32, 4, 6, 4, 128, 256, num_classes)


# ---------------------------------------------------------------------------------------------------- lookup
def _airbench94(num_classes: int = 10) -> nn.Module:
    from airbench_torch import AirbenchTorch  # (benchmarks/ on sys.path, as for this module)

    return AirbenchTorch(num_classes)


TWINS = {
    "cifar_cnn": cifar_cnn,
    "resnet20": lambda num_classes=10: cifar_resnet(3, num_classes),
    "resnet56": lambda num_classes=10: cifar_resnet(9, num_classes),
    "vgg11_bn": vgg11_bn_cifar,
    "mobilenet_v2": mobilenet_v2_cifar,
    "airbench94": _airbench94,
    "vit_cifar": vit_cifar,
}


def build(name: str, num_classes: int = 10) -> nn.Module:
    """The PyTorch twin of the benchmark model ``name`` (a key of :data:`TWINS`)."""
    if name not in TWINS:
        raise ValueError(f"torch_twins.build: no PyTorch twin of {name!r}; the twins are {', '.join(TWINS)}")
    return TWINS[name](num_classes)
