"""check_layer: a module class is compared with minidl's over drawn configurations."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import nn
from minidl.nn import functional as F
from minidl.testing import ConformanceError, check_layer
from minidl.testing._hypothesis import QUICK_EXAMPLES

EXAMPLES = 6


@pytest.mark.parametrize(
    "reference", [nn.Linear, nn.ReLU, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d, nn.Dropout]
)
def test_a_subclass_that_changes_nothing_conforms(reference):
    candidate = type(f"My{reference.__name__}", (reference,), {})
    report = check_layer(candidate, reference, max_examples=EXAMPLES)
    assert report.examples == EXAMPLES + QUICK_EXAMPLES and report.candidate == f"My{reference.__name__}"


class ConvForgetsBiasGrad(nn.Conv2d):
    def backward(self, dout):
        cache, _ = self.pop_saved()
        dx, dw, _ = F.conv2d_backward(dout, cache)
        self.weight.accumulate_grad(dw)
        return dx


def test_a_module_that_forgets_a_parameter_gradient_is_named():
    with pytest.raises(ConformanceError) as info:
        check_layer(ConvForgetsBiasGrad, nn.Conv2d, max_examples=EXAMPLES, fixed={"bias": True})
    assert info.value.function == "ConvForgetsBiasGrad.backward"
    assert str(info.value).startswith("ConvForgetsBiasGrad.backward: bias.grad is None, but the reference returns an "
                                      "array of shape (1,)")  # fmt: skip


class BatchNormAlwaysTraining(nn.BatchNorm2d):
    def forward(self, x):
        self.training = True  # ignores eval mode: normalizes with batch statistics
        return super().forward(x)


def test_eval_mode_is_checked():
    with pytest.raises(ConformanceError) as info:
        check_layer(BatchNormAlwaysTraining, nn.BatchNorm2d, max_examples=EXAMPLES)
    assert info.value.config["training"] is False
    assert info.value.what in ("the output", "running_mean after the forward pass")


def test_a_module_without_checks_is_refused():
    with pytest.raises(ValueError, match=r"no checks registered for the module Tanh; known modules: \["):
        check_layer(nn.Tanh, nn.Tanh)


class LinearWrongShape(nn.Linear):
    def forward(self, x):
        return super().forward(x)[:, :1]  # drops output features; its backward then fails on the shape


def test_the_forward_output_is_compared_before_the_backward_runs():
    with pytest.raises(ConformanceError) as info:
        check_layer(LinearWrongShape, nn.Linear, max_examples=EXAMPLES)
    assert info.value.function == "LinearWrongShape.forward" and info.value.what == "the output"
    assert "has shape" in str(info.value)


class LinearFloat32(nn.Linear):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias)
        self.weight = nn.Parameter(np.zeros((out_features, in_features), np.float32))


def test_parameters_in_a_hard_coded_float32_are_named():
    with pytest.raises(ConformanceError) as info:
        check_layer(LinearFloat32, nn.Linear, max_examples=EXAMPLES)
    assert str(info.value).startswith(
        "LinearFloat32: weight has dtype float32, but parameters and buffers must follow minidl.get_default_dtype() "
        "(float64 during the check)"
    )


class ReLUInPlace(nn.ReLU):
    def forward(self, x):
        out = super().forward(x)
        x[x < 0] = 0
        return out


def test_a_module_that_modifies_its_input_is_named():
    with pytest.raises(ConformanceError, match=r"^ReLUInPlace.forward: modified its input x in place;"):
        check_layer(ReLUInPlace, nn.ReLU, max_examples=EXAMPLES)


def test_max_examples_must_be_a_positive_int():
    with pytest.raises(ValueError, match=r"check_layer: max_examples must be a positive int, got 0"):
        check_layer(nn.ReLU, nn.ReLU, max_examples=0)
