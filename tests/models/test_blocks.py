"""Gradient checks (float64, random directions) of the zoo's hand-written blocks: BasicBlock, Bottleneck,
InvertedResidual and a whole small ResNet / MobileNetV2, in training mode (batch statistics) and eval mode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, models, nn
from tests.helpers import arr, host
from tests.strategies import seeds


def _randomize_bn(module, rng):
    """Non-trivial BatchNorm affine parameters and running statistics (so eval mode is not the identity)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[...] = arr(1 + 0.3 * rng.standard_normal(m.num_features))
            m.bias.data[...] = arr(0.2 * rng.standard_normal(m.num_features))
            m.running_mean[...] = arr(0.1 * rng.standard_normal(m.num_features))
            m.running_var[...] = arr(0.5 + rng.uniform(size=m.num_features))
    return module


def _kink_distance(module, x) -> float:
    """How close any ReLU / ReLU6 input of ``module(x)`` comes to a kink (0, or 6 for ReLU6): central differences
    across a kink measure neither one-sided slope, so examples that come within the step's reach are skipped."""
    distances: list[float] = []
    activations = [m for m in module.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    for m in activations:
        kinks = (0.0, 6.0) if isinstance(m, nn.ReLU6) else (0.0,)

        def forward(inp, original=m.forward, kinks=kinks):
            distances.append(min(float(np.abs(host(inp) - k).min()) for k in kinks))
            return original(inp)

        object.__setattr__(m, "forward", forward)  # an instance attribute shadows the method for this call only
    try:
        with minidl.no_grad():
            module(x)
    finally:
        for m in activations:
            m.__dict__.pop("forward", None)
    return min(distances)


def _check(module, x_shape, seed, training, fixed=False):
    rng = np.random.default_rng(seed)
    module = _randomize_bn(module.to(np.float64), rng).train(training)
    x = arr(rng.standard_normal(x_shape))
    # a step of 1e-7 moves any pre-activation by far less than 1e-5
    distance = _kink_distance(module, x)
    if fixed:  # a fixed example: must not sit near a kink
        assert distance > 1e-5, f"the fixed example has a ReLU input {distance:.2e} from a kink"
    else:
        assume(distance > 1e-5)
    gradcheck.check_module(module, x, mode="random_direction", directions=3, seed=seed, eps=1e-7)


@given(
    inplanes=st.integers(1, 4),
    planes=st.integers(1, 4),
    stride=st.sampled_from([1, 2]),
    hw=st.integers(3, 6),
    training=st.booleans(),
    seed=seeds,
)
def test_basic_block_gradcheck(inplanes, planes, stride, hw, training, seed):
    minidl.manual_seed(seed)
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(models.conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    block = models.BasicBlock(inplanes, planes, stride, downsample)
    _check(block, (2, inplanes, hw, hw), seed, training)


@given(
    inplanes=st.integers(2, 8),
    planes=st.integers(1, 3),
    stride=st.sampled_from([1, 2]),
    groups=st.sampled_from([1, 2]),
    training=st.booleans(),
    seed=seeds,
)
def test_bottleneck_gradcheck(inplanes, planes, stride, groups, training, seed):
    minidl.manual_seed(seed)
    downsample = None
    if stride != 1 or inplanes != 4 * planes:
        downsample = nn.Sequential(models.conv1x1(inplanes, 4 * planes, stride), nn.BatchNorm2d(4 * planes))
    block = models.Bottleneck(inplanes, planes, stride, downsample, groups=groups)  # width = planes * groups
    _check(block, (2, inplanes, 5, 5), seed, training)


@given(
    inp=st.integers(1, 6),
    oup=st.integers(1, 6),
    stride=st.sampled_from([1, 2]),
    expand_ratio=st.sampled_from([1, 2, 6]),
    training=st.booleans(),
    seed=seeds,
)
def test_inverted_residual_gradcheck(inp, oup, stride, expand_ratio, training, seed):
    minidl.manual_seed(seed)
    block = models.InvertedResidual(inp, oup, stride, expand_ratio)
    assert block.use_res_connect == (stride == 1 and inp == oup)
    _check(block, (2, inp, 5, 5), seed, training)


def test_inverted_residual_without_expansion_has_no_expand_conv():
    block = models.InvertedResidual(8, 8, 1, expand_ratio=1)
    assert [type(m).__name__ for m in block.conv] == ["Conv2dNormActivation", "Conv2d", "BatchNorm2d"]
    assert block.conv[0][0].groups == 8  # depthwise


def test_small_resnet_and_mobilenet_gradcheck():
    minidl.manual_seed(0)
    resnet = models.ResNet(models.BasicBlock, [1, 1], num_classes=3, stem="cifar", widths=(4, 8))
    _check(resnet, (2, 3, 8, 8), 0, training=True, fixed=True)
    setting = [[1, 4, 1, 1], [2, 6, 2, 2]]
    mobilenet = models.MobileNetV2(num_classes=3, width_mult=0.25, inverted_residual_setting=setting, dropout=0.0)
    _check(mobilenet, (2, 3, 16, 16), 1, training=True, fixed=True)  # last map 4x4: BN over 32 values per channel


@pytest.mark.parametrize("block_type", ["basic", "bottleneck"])
def test_the_shortcut_gradient_joins_conv1s_backward_and_its_hooks_still_see_conv1s_own(block_type):
    # a block's dx = conv1's dx + the shortcut's gradient, summed by conv1.backward(..., dx_add=...); a backward
    # hook on conv1 must see conv1's own gradient (grad_input without the shortcut's), and the block's dx is the same
    minidl.manual_seed(0)
    block = models.BasicBlock(4, 4) if block_type == "basic" else models.Bottleneck(16, 4)
    block = block.to(np.float64)
    rng = np.random.default_rng(0)
    x = arr(rng.standard_normal((2, block.inplanes, 5, 5)))
    y = block(x)
    g = arr(rng.standard_normal(y.shape))
    dx = host(block.backward(g))
    seen = []
    block.conv1.register_full_backward_hook(lambda m, gin, gout: seen.append(host(gin[0])))
    y = block(x)
    np.testing.assert_allclose(host(block.backward(g)), dx, rtol=1e-12, atol=1e-12)
    dz = np.where(host(y) > 0, host(g), 0.0)  # the identity shortcut's gradient: relu's mask of the block output
    np.testing.assert_allclose(seen[0] + dz, dx, rtol=1e-12, atol=1e-12)
