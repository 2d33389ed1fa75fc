"""Gradient checks (float64, random directions, training and eval mode) of the lecture architectures' hand-written
blocks: SqueezeExcitation, the SE blocks, Fire, Inception, InceptionAux, TransformInput, DenseLayer, Transition,
ShuffleUnit, PreActBlock, and small whole networks of each family."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import gradcheck, models, nn
from tests.helpers import arr
from tests.models.test_blocks import _check


def _check_block(module, shape, seed, training):
    """test_blocks' check (random BatchNorm statistics, no example near a ReLU kink); a block without a ReLU has
    no kink to avoid."""
    if any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in module.modules()):
        _check(module, shape, seed, training, fixed=True)
        return
    x = arr(np.random.default_rng(seed).standard_normal(shape))
    module = module.to(np.float64).train(training)
    gradcheck.check_module(module, x, mode="random_direction", directions=3, seed=seed, eps=1e-7)


BLOCKS = {
    "SqueezeExcitation": (lambda: models.SqueezeExcitation(6, 2), (2, 6, 3, 3)),
    "SqueezeExcitation(SiLU, Tanh)": (
        lambda: models.SqueezeExcitation(4, 3, activation=nn.SiLU, scale_activation=nn.Tanh),
        (2, 4, 3, 2),
    ),
    "SEBasicBlock": (lambda: models.SEBasicBlock(4, 4), (2, 4, 4, 4)),
    "SEBasicBlock(stride 2)": (
        lambda: models.SEBasicBlock(3, 4, 2, nn.Sequential(models.conv1x1(3, 4, 2), nn.BatchNorm2d(4))),
        (2, 3, 5, 5),
    ),
    "SEBottleneck": (lambda: models.SEBottleneck(8, 2), (2, 8, 3, 3)),
    "Fire": (lambda: models.Fire(4, 2, 3, 3), (2, 4, 4, 4)),
    "Inception": (lambda: models.Inception(4, 2, 2, 3, 1, 2, 2), (2, 4, 4, 4)),
    "InceptionAux": (lambda: models.InceptionAux(3, 4, dropout=0.3), (4, 3, 5, 5)),
    "TransformInput": (models.TransformInput, (2, 3, 2, 2)),
    "DenseLayer": (lambda: models.DenseLayer(3, growth_rate=2, bn_size=2), (2, 3, 4, 4)),
    "DenseLayer(dropout)": (lambda: models.DenseLayer(3, growth_rate=2, bn_size=2, drop_rate=0.2), (2, 3, 4, 4)),
    "Transition": (lambda: models.Transition(4, 2), (2, 4, 4, 4)),
    "ShuffleUnit(stride 1)": (lambda: models.ShuffleUnit(4, 4, 1), (2, 4, 4, 4)),
    "ShuffleUnit(stride 2)": (lambda: models.ShuffleUnit(3, 4, 2), (2, 3, 5, 5)),
    "PreActBlock": (lambda: models.PreActBlock(3, 3), (2, 3, 4, 4)),
    "PreActBlock(projection, dropout)": (lambda: models.PreActBlock(2, 4, 2, dropout=0.3), (2, 2, 5, 5)),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_gradcheck(name, training):
    make, shape = BLOCKS[name]
    minidl.manual_seed(0)
    _check_block(make(), shape, seed=3, training=training)


NETWORKS = {
    "densenet_cifar(tiny)": (
        lambda: models.DenseNet(2, (1, 2), 4, bn_size=2, num_classes=3, stem="cifar"),
        (2, 3, 6, 6),
    ),
    "wide_resnet_cifar(10, 1)": (lambda: models.WideResNet(10, 1, num_classes=3), (2, 3, 6, 6)),
    "se_resnet(tiny)": (
        lambda: models.ResNet(models.SEBasicBlock, [1, 1], num_classes=3, stem="cifar", widths=(4, 8)),
        (2, 3, 6, 6),
    ),
    "shufflenet_v2(tiny)": (lambda: models.ShuffleNetV2([1, 2, 1], [4, 8, 8, 16, 8], num_classes=3), (2, 3, 32, 32)),
    "squeezenet1_1": (lambda: models.squeezenet1_1(num_classes=3, dropout=0.0), (2, 3, 17, 17)),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_small_network_gradcheck(name):
    make, shape = NETWORKS[name]
    minidl.manual_seed(1)
    _check(make(), shape, seed=4, training=True, fixed=True)


def test_se_block_gate_is_the_sigmoid_of_the_bottleneck():
    """The SE output divided by its input is, per image and channel, sigmoid(fc2(relu(fc1(mean over H, W))))."""
    minidl.manual_seed(0)
    se = models.SqueezeExcitation(4, 2).to(np.float64)
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 4, 3, 5))
    z = x.mean(axis=(2, 3))  # (N, C)
    w1, b1 = se.fc1.weight.data[:, :, 0, 0], se.fc1.bias.data
    w2, b2 = se.fc2.weight.data[:, :, 0, 0], se.fc2.bias.data
    gate = 1 / (1 + np.exp(-(np.maximum(z @ w1.T + b1, 0) @ w2.T + b2)))
    np.testing.assert_allclose(se(x), x * gate[:, :, None, None], rtol=1e-12)
    assert list(se.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]  # torchvision's keys
