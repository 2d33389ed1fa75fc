"""Normalization layers: bad hyperparameters and bad inputs raise errors that name the layer and the shapes."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import nn
from minidl.nn import functional as F
from tests.helpers import arr


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.BatchNorm2d(3, eps=0.0), "eps must be > 0"),
        (lambda: nn.BatchNorm1d(3, eps=-1e-5), "eps must be > 0"),
        (lambda: nn.BatchNorm2d(3, eps=float("nan")), "eps must be finite"),
        (lambda: nn.LayerNorm(3, eps=float("inf")), "eps must be finite"),
        (lambda: nn.GroupNorm(1, 3, eps=0), "eps must be > 0"),
        (lambda: nn.BatchNorm2d(3, momentum=1.5), "momentum must be <= 1"),
        (lambda: nn.InstanceNorm2d(3, momentum=-0.1), "momentum must be >= 0"),
        (lambda: nn.GroupNorm(3, 4), r"num_channels \(4\) must be divisible by num_groups \(3\)"),
        (lambda: nn.BatchNorm2d(0), "num_features must be >= 1"),
        (lambda: nn.LayerNorm(0), "normalized_shape must be >= 1"),
        (lambda: nn.LocalResponseNorm(0), "size must be >= 1"),
        (lambda: nn.LocalResponseNorm(3, beta=float("nan")), "beta must be finite"),
    ],
)
def test_bad_hyperparameters_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.BatchNorm2d(3.0), "num_features must be an int"),
        (lambda: nn.LayerNorm(()), "non-empty tuple of ints"),
        (lambda: nn.LayerNorm("3"), "non-empty tuple of ints"),
        (lambda: nn.GroupNorm(2, "4"), "num_channels must be an int"),
        (lambda: nn.BatchNorm1d(3, momentum="0.1"), "momentum must be a real number"),
    ],
)
def test_bad_hyperparameter_types_raise_type_errors(make, match):
    with pytest.raises(TypeError, match=match):
        make()


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (lambda: nn.BatchNorm2d(3), (2, 4, 5, 5), r"BatchNorm2d\(3\): expected 3 channels in dimension 1 .* got 4"),
        (lambda: nn.BatchNorm2d(3), (2, 3, 5), r"BatchNorm2d\(3\): expected a 4-D \(N, C, H, W\) input"),
        (lambda: nn.BatchNorm1d(3), (2, 3, 4, 4), r"expected a 2-D \(N, C\) or 3-D \(N, C, L\) input"),
        (lambda: nn.BatchNorm1d(3), (2, 5), "expected 3 channels"),
        (lambda: nn.LayerNorm((3, 4)), (2, 4, 3), r"last 2 dimension\(s\) are \(3, 4\).*got shape \(2, 4, 3\)"),
        (lambda: nn.LayerNorm((3, 4)), (4,), "at least 2 dimensions"),
        (lambda: nn.GroupNorm(2, 4), (2, 6, 3), r"GroupNorm\(2, 4\): expected 4 channels"),
        (lambda: nn.GroupNorm(2, 4), (4,), "at least 2 dimensions"),
        (lambda: nn.InstanceNorm2d(3, affine=True), (2, 4, 3, 3), "expected 3 channels in dimension 1"),
        (
            lambda: nn.InstanceNorm2d(3),
            (2, 3, 3, 3, 3),
            r"InstanceNorm2d\(3\): expected a 3-D \(C, H, W\) or 4-D \(N, C, H, W\) input, got shape \(2, 3, 3, 3, 3\)",
        ),
        (lambda: nn.BatchNorm1d(3), (1, 3), r"BatchNorm1d\(3.*expected more than 1 value per channel when training"),
        (
            lambda: nn.BatchNorm2d(3),
            (1, 3, 1, 1),
            r"BatchNorm2d\(3.*more than 1 value per channel .* input shape \(1, 3, 1, 1\)",
        ),
        (lambda: nn.BatchNorm1d(3, track_running_stats=False).eval(), (1, 3), "more than 1 value per channel"),
        (lambda: nn.InstanceNorm2d(3), (2, 3, 1, 1), "expected more than 1 spatial element when training"),
        (lambda: nn.LocalResponseNorm(3), (2, 3), r"LocalResponseNorm\(3\): expected an? input with at least 3 dim"),
    ],
)
def test_bad_inputs_name_the_layer_and_the_shapes(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer()(arr(np.zeros(shape, np.float32)))


def test_batch_of_one_is_rejected_before_counting_it():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError):
        bn(arr(np.zeros((1, 3), np.float32)))
    assert int(bn.num_batches_tracked) == 0


@pytest.mark.parametrize(
    "layer, shape",
    [
        (lambda: nn.BatchNorm2d(2), (2, 2, 2, 2)),
        (lambda: nn.LayerNorm(3), (2, 3)),
        (lambda: nn.GroupNorm(1, 2), (2, 2, 3)),
        (lambda: nn.InstanceNorm2d(2), (2, 2, 2, 2)),
        (lambda: nn.LocalResponseNorm(2), (2, 3, 2)),
    ],
)
def test_backward_before_forward_bad_dtype_and_bad_grad_shape(layer, shape):
    module = layer()
    name = type(module).__name__
    with pytest.raises(RuntimeError, match=f"{name}.backward\\(\\) was called without a matching forward"):
        module.backward(arr(np.zeros(shape, np.float32)))
    if name not in ("InstanceNorm2d", "LocalResponseNorm"):  # without parameters any float dtype is fine
        with pytest.raises(TypeError, match="the input has dtype float64 but the layer's parameters are float32"):
            module(arr(np.zeros(shape, np.float64)))
    with pytest.raises(TypeError, match="floating-point"):
        module(arr(np.zeros(shape, np.int64)))
    module(arr(np.random.default_rng(0).normal(size=shape).astype(np.float32)))
    with pytest.raises(ValueError, match="the gradient has shape"):
        module.backward(arr(np.zeros((7,), np.float32)))


def test_functional_bad_inputs():
    x = arr(np.random.default_rng(0).normal(size=(4, 3)))
    with pytest.raises(ValueError, match=r"batch_norm_forward: expected weight of shape \(3,\), got shape \(4,\)"):
        F.batch_norm_forward(x, None, None, arr(np.ones(4)), None, True)
    with pytest.raises(ValueError, match="running_mean and running_var are required when training=False"):
        F.batch_norm_forward(x, None, None, None, None, False)
    with pytest.raises(ValueError, match="momentum must be <= 1"):
        F.batch_norm_forward(x, None, None, None, None, True, momentum=2.0)
    stats = arr(np.zeros(3))
    with pytest.raises(ValueError, match="batch_norm_forward: running_mean and running_var must both be None or both"):
        F.batch_norm_forward(x, stats, None, None, None, True)  # (it updated running_mean only)
    with pytest.raises(ValueError, match="instance_norm_forward: running_mean and running_var must both be None"):
        F.instance_norm_forward(arr(np.ones((2, 3, 4))), None, stats, use_input_stats=True)
    for flag in ("yes", None, 1):  # (a truthy string picked a mode silently)
        with pytest.raises(TypeError, match=f"batch_norm_forward: training must be a bool, got {flag!r}"):
            F.batch_norm_forward(x, stats, stats.copy(), None, None, flag)
        with pytest.raises(TypeError, match="batch_norm_add_relu_forward: training must be a bool"):
            F.batch_norm_add_relu_forward(x, x, stats, stats.copy(), None, None, flag)
    with pytest.raises(ValueError, match="eps must be > 0"):
        F.layer_norm_forward(x, 3, None, None, eps=0.0)
    with pytest.raises(ValueError, match=r"layer_norm_forward: expected an input whose last 1 dimension\(s\) are \(4,"):
        F.layer_norm_forward(x, 4)
    with pytest.raises(ValueError, match=r"number of channels \(3\) must be divisible by num_groups \(2\)"):
        F.group_norm_forward(x, 2)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        F.instance_norm_forward(x)
    with pytest.raises(TypeError, match="expected the input to be an array, got list"):
        F.batch_norm_forward([[1.0, 2.0]], None, None, None, None, True)
