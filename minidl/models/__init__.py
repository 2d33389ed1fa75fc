"""The model zoo: classic CNNs built only from :mod:`minidl.nn` layers, each with its explicit backward.

Every factory takes ``num_classes`` (and torchvision-like keywords). The ImageNet models (VGG, ResNet,
MobileNetV2, AlexNet, GoogLeNet, DenseNet, ResNeXt, wide ResNet, SqueezeNet, ShuffleNet V2) have torchvision's
state_dict keys and shapes, so weights converted with ``scripts/convert_torch_weights.py`` load by name. See
``docs/models.md`` for a table of sizes and costs.

=================  =====================================================================================
family             factories
=================  =====================================================================================
LeNet-5            ``lenet5``
CIFAR CNN          ``cifar_cnn`` (the benchmark network)
airbench           ``airbench94`` (``widths=(128, 384, 384)``: airbench95), the CIFAR-10 speedrun network
VGG                ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19`` (``batch_norm=``, ``cifar=``), ``vgg*_bn``
ResNet (ImageNet)  ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152`` (``cifar=``)
ResNet (CIFAR)     ``resnet20``, ``resnet32``, ``resnet44``, ``resnet56``, ``resnet110``
MobileNetV2        ``mobilenet_v2`` (``width_mult=``, ``cifar=``)
AlexNet            ``alexnet``
GoogLeNet          ``googlenet`` (``aux_logits=``, ``transform_input=``)
DenseNet           ``densenet121``, ``densenet161``, ``densenet169``, ``densenet201``; ``densenet_cifar`` (BC, 32x32)
ResNeXt / WRN      ``resnext50_32x4d``, ``resnext101_32x8d``, ``wide_resnet50_2``, ``wide_resnet101_2``
WRN (CIFAR)        ``wide_resnet_cifar`` (WRN-16-4 by default; ``depth=``, ``widen_factor=``, ``dropout=``)
SqueezeNet         ``squeezenet1_0``, ``squeezenet1_1``
ShuffleNet V2      ``shufflenet_v2_x0_5``, ``shufflenet_v2_x1_0``, ``shufflenet_v2_x1_5``, ``shufflenet_v2_x2_0``
SE-ResNet          ``se_resnet18``, ``se_resnet34``, ``se_resnet50`` (``cifar=``); ``se_resnet20`` (CIFAR)
=================  =====================================================================================

Pretrained CIFAR-10 weights ship with minidl for the models that have a ``weights=`` argument (torchvision's API:
``airbench94(weights="cifar10")``, ``resnet20(weights="cifar10")``, ``cifar_cnn(weights="cifar10")``,
:func:`get_weight`, :func:`get_model_weights`); see :mod:`minidl.models.weights`.

Examples:
    >>> import numpy as np
    >>> from minidl import models
    >>> net = models.get_model("resnet20", num_classes=10)
    >>> net(np.zeros((2, 3, 32, 32), np.float32)).shape
    (2, 10)
    >>> "mobilenet_v2" in models.list_models()
    True
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from minidl.models._blocks import SqueezeExcitation
from minidl.models.airbench import AirbenchConvGroup, AirbenchNet, airbench94
from minidl.models.alexnet import AlexNet, alexnet
from minidl.models.cifar import CifarCNN, cifar_cnn
from minidl.models.convnext import ConvNeXt, convnext_cifar, convnext_tiny
from minidl.models.densenet import (
    DenseBlock,
    DenseLayer,
    DenseNet,
    Transition,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet_cifar,
)
from minidl.models.googlenet import (
    BasicConv2d,
    GoogLeNet,
    GoogLeNetOutputs,
    Inception,
    InceptionAux,
    TransformInput,
    googlenet,
)
from minidl.models.lenet import LeNet5, lenet5
from minidl.models.mobilenet import Conv2dNormActivation, InvertedResidual, MobileNetV2, make_divisible, mobilenet_v2
from minidl.models.mobilenet_v3 import (
    EfficientNet,
    MobileNetV3,
    efficientnet_b0,
    mobilenet_v3_large,
    mobilenet_v3_small,
)
from minidl.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    conv1x1,
    conv3x3,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet101,
    resnet110,
    resnet152,
)
from minidl.models.resnext import resnext50_32x4d, resnext101_32x8d, wide_resnet50_2, wide_resnet101_2
from minidl.models.senet import SEBasicBlock, SEBottleneck, se_resnet18, se_resnet20, se_resnet34, se_resnet50
from minidl.models.shufflenet import (
    ShuffleNetV2,
    ShuffleUnit,
    shufflenet_v2_x0_5,
    shufflenet_v2_x1_0,
    shufflenet_v2_x1_5,
    shufflenet_v2_x2_0,
)
from minidl.models.squeezenet import Fire, SqueezeNet, squeezenet1_0, squeezenet1_1
from minidl.models.vgg import VGG, make_layers, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from minidl.models.vit import VisionTransformer, vit_b_16, vit_b_32, vit_cifar, vit_l_16, vit_l_32
from minidl.models.weights import _BY_MODEL as _WITH_WEIGHTS
from minidl.models.weights import (
    Airbench94_Weights,
    CifarCNN_Weights,
    ResNet20_Weights,
    Weights,
    WeightsEnum,
    get_model_weights,
    get_weight,
)
from minidl.models.wide_resnet import PreActBlock, WideResNet, wide_resnet_cifar
from minidl.nn.module import Module

__all__ = [
    "Airbench94_Weights",
    "CifarCNN_Weights",
    "ResNet20_Weights",
    "Weights",
    "WeightsEnum",
    "get_model_weights",
    "get_weight",
    "AirbenchConvGroup",
    "AirbenchNet",
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "CifarCNN",
    "Conv2dNormActivation",
    "InvertedResidual",
    "LeNet5",
    "MobileNetV2",
    "ResNet",
    "airbench94",
    "cifar_cnn",
    "conv1x1",
    "conv3x3",
    "get_model",
    "lenet5",
    "list_models",
    "make_divisible",
    "make_layers",
    "mobilenet_v2",
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
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "ConvNeXt",
    "EfficientNet",
    "MobileNetV3",
    "VisionTransformer",
    "convnext_cifar",
    "convnext_tiny",
    "efficientnet_b0",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "vit_b_16",
    "vit_b_32",
    "vit_cifar",
    "vit_l_16",
    "vit_l_32",
    "AlexNet",
    "BasicConv2d",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "Fire",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception",
    "InceptionAux",
    "PreActBlock",
    "SEBasicBlock",
    "SEBottleneck",
    "ShuffleNetV2",
    "ShuffleUnit",
    "SqueezeExcitation",
    "SqueezeNet",
    "Transition",
    "TransformInput",
    "WideResNet",
    "alexnet",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet_cifar",
    "googlenet",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "se_resnet18",
    "se_resnet20",
    "se_resnet34",
    "se_resnet50",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "squeezenet1_0",
    "squeezenet1_1",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "wide_resnet_cifar",
]

_MODELS: dict[str, Callable[..., Module]] = {
    f.__name__: f
    for f in (
        lenet5,
        cifar_cnn,
        airbench94,
        vgg11,
        vgg13,
        vgg16,
        vgg19,
        vgg11_bn,
        vgg13_bn,
        vgg16_bn,
        vgg19_bn,
        resnet18,
        resnet34,
        resnet50,
        resnet101,
        resnet152,
        resnet20,
        resnet32,
        resnet44,
        resnet56,
        resnet110,
        mobilenet_v2,
        mobilenet_v3_large,
        mobilenet_v3_small,
        efficientnet_b0,
        convnext_tiny,
        convnext_cifar,
        vit_b_16,
        vit_b_32,
        vit_l_16,
        vit_l_32,
        vit_cifar,
        alexnet,
        googlenet,
        densenet121,
        densenet161,
        densenet169,
        densenet201,
        densenet_cifar,
        resnext50_32x4d,
        resnext101_32x8d,
        wide_resnet50_2,
        wide_resnet101_2,
        wide_resnet_cifar,
        squeezenet1_0,
        squeezenet1_1,
        shufflenet_v2_x0_5,
        shufflenet_v2_x1_0,
        shufflenet_v2_x1_5,
        shufflenet_v2_x2_0,
        se_resnet18,
        se_resnet34,
        se_resnet50,
        se_resnet20,
    )
}


def list_models() -> list[str]:
    """The names :func:`get_model` accepts, sorted.

    Examples:
        >>> list_models()[:4]
        ['airbench94', 'alexnet', 'cifar_cnn', 'convnext_cifar']
    """
    return sorted(_MODELS)


def get_model(name: str, **kwargs: Any) -> Module:
    """Build the model called ``name`` (see :func:`list_models`); keywords go to its factory.

    Raises:
        ValueError: for an unknown name, listing the known ones (and the closest match); for ``weights=`` given to
            a model without shipped weights (``weights=None`` is accepted by every model, as in torchvision).

    Examples:
        >>> get_model("lenet5", num_classes=5).num_classes
        5
        >>> get_model("resnet19")
        Traceback (most recent call last):
        ...
        ValueError: get_model: unknown model 'resnet19' (did you mean 'resnet18'?); available: airbench94, alexnet, ...
    """
    if not isinstance(name, str):
        raise TypeError(f"get_model: name must be a str, got {type(name).__name__}")
    factory = _MODELS.get(name) or _MODELS.get(name.lower())
    if factory is None:
        close = difflib.get_close_matches(name.lower(), list(_MODELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"get_model: unknown model {name!r}{hint}; available: {', '.join(list_models())}")
    if "weights" in kwargs and "weights" not in inspect.signature(factory).parameters:
        if kwargs["weights"] is not None:
            with_weights = sorted(_WITH_WEIGHTS)
            raise ValueError(
                f"get_model: {name!r} has no shipped weights, got weights={kwargs['weights']!r}; models with "
                f"weights: {with_weights}"
            )
        kwargs.pop("weights")  # weights=None: random initialization, what the factory does anyway
    return factory(**kwargs)
