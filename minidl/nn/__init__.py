"""Layers, containers and losses: every Module with an explicit forward and backward.

Each layer family lives in one file with its math, its functional pair (``<op>_forward``/``<op>_backward``) and its
Module class. The pairs are reached through one namespace, :mod:`minidl.nn.functional` (``F``): a Module looks its
pair up there at call time, so that is the place a student patches or replaces a pair. This package exports the
Modules, the containers, :func:`fuse` and the penalty helpers; the pairs are deliberately not re-exported here,
so that there is one name to patch, not two.
"""

from minidl._deferred import BatchNormReLUOutput
from minidl.nn import dispatch, functional, init, utils
from minidl.nn.activation import (
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    Mish,
    PReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from minidl.nn.attention import MultiheadAttention
from minidl.nn.containers import Concat, Identity, ModuleDict, ModuleList, Residual, Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.conv_transpose import ConvTranspose2d
from minidl.nn.dropout import Dropout, Dropout2d
from minidl.nn.embedding import Embedding
from minidl.nn.flatten import Flatten
from minidl.nn.fusion import AddReLU, BatchNormReLU1d, BatchNormReLU2d, ConvBn2d, FoldedBatchNorm2d
from minidl.nn.fusion_pass import fuse
from minidl.nn.layer_scale import LayerScale
from minidl.nn.linear import Linear
from minidl.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    DistillationLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from minidl.nn.maxout import Maxout
from minidl.nn.merge import Add, ChannelMul
from minidl.nn.module import IncompatibleKeys, Module, Parameter
from minidl.nn.normalization import BatchNorm1d, BatchNorm2d
from minidl.nn.normalization_group import GroupNorm, LayerNorm
from minidl.nn.normalization_instance import InstanceNorm2d
from minidl.nn.normalization_local import LocalResponseNorm
from minidl.nn.permute import Permute
from minidl.nn.pooling import AvgPool2d, MaxPool2d, pool_output_size
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from minidl.nn.regularization import elastic_net_penalty, l1_penalty, l2_penalty, max_norm_
from minidl.nn.scale import Mul
from minidl.nn.shuffle import ChannelShuffle
from minidl.nn.stochastic_depth import DropPath, StochasticDepth
from minidl.nn.upsample import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

__all__ = [
    "Add", "AddReLU", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool2d", "BCELoss", "BCEWithLogitsLoss",
    "BatchNorm1d", "BatchNorm2d", "BatchNormReLU1d", "BatchNormReLU2d", "BatchNormReLUOutput", "Concat", "Conv2d",
    "ConvBn2d", "CrossEntropyLoss", "DistillationLoss", "Dropout", "Dropout2d", "ELU", "Flatten", "FoldedBatchNorm2d",
    "GELU",
    "GroupNorm", "Hardswish", "Hardtanh", "Identity", "IncompatibleKeys", "InstanceNorm2d", "KLDivLoss", "L1Loss",
    "LayerNorm", "LeakyReLU", "Linear", "LocalResponseNorm", "LogSoftmax", "MSELoss", "MaxPool2d", "Mish",
    "Module", "ModuleDict", "ModuleList", "Mul", "NLLLoss", "Parameter", "Permute", "ReLU", "ReLU6", "Residual",
    "Sequential",
    "SiLU", "Sigmoid", "SmoothL1Loss", "Softmax", "Softplus", "Tanh",
    "ChannelMul", "ChannelShuffle",
    "dispatch", "elastic_net_penalty", "functional", "fuse", "init", "l1_penalty", "l2_penalty", "max_norm_",
    "pool_output_size", "utils",
    "Embedding", "MultiheadAttention",
    "ConvTranspose2d", "DropPath", "Hardsigmoid", "LayerScale", "Maxout", "PReLU", "StochasticDepth", "Upsample",
    "UpsamplingBilinear2d", "UpsamplingNearest2d",
]  # fmt: skip
