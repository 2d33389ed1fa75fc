"""Anomaly detection (``minidl.detect_anomaly`` / ``set_detect_anomaly``): off by default, and when on the first module
whose forward output, returned gradient or parameter gradient holds nan or inf is named by its place in the model."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import minidl
from minidl import models, nn
from tests.helpers import arr, host


class NanInBackward(nn.Module):
    """Passes the input on; its backward puts a nan in the gradient's first entry (a bug to be found)."""

    def forward(self, x):
        self.save_for_backward(x.shape)
        return x

    def backward(self, dout):
        self.pop_saved()
        gx = dout.copy()
        gx.reshape(-1)[0] = np.nan
        return gx


class Block(nn.Module):
    """A parent that calls its children's forward and backward by hand, as the model zoo does."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bad = NanInBackward()
        self.act = nn.Tanh()

    def forward(self, x):
        return self.act(self.bad(self.fc(x)))

    def backward(self, dout):
        return self.fc.backward(self.bad.backward(self.act.backward(dout)))


def _model():
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU()),
            head=nn.Linear(8, 3),
        )
    )


def _x():
    return arr(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))


def test_off_by_default_and_nan_propagates_silently():
    assert minidl.is_anomaly_enabled() is False
    model = _model()
    model.features[2].weight.data[0, 0] = np.nan
    y = model(_x())  # the NaN policy: layers propagate nan, they do not check
    assert np.isnan(host(y)).any()
    assert np.isnan(host(model.backward(arr(np.ones((5, 3), np.float32))))).any()


def test_forward_names_the_first_module_with_nan_output():
    model = _model()
    model.features[2].weight.data[1, 3] = np.nan  # the middle Linear makes one nan per row: 5 in all
    with minidl.detect_anomaly():
        assert minidl.is_anomaly_enabled()
        with pytest.raises(FloatingPointError) as info:
            model(_x())
    message = str(info.value)
    assert message.startswith("detect_anomaly: the forward output of features.2 (Linear(in_features=8, out_features=8")
    assert "holds 5 non-finite values (5 nan, 0 inf) out of 40 (shape (5, 8))" in message
    assert "its inputs held no nan or inf, so this module made them" in message
    assert minidl.is_anomaly_enabled() is False


def test_forward_says_when_the_input_was_already_non_finite():
    x = host(_x())
    x[0, 0] = np.inf
    with minidl.detect_anomaly(), pytest.raises(FloatingPointError, match=r"of features\.0 \(Linear.*its inputs "):
        _model()(arr(x))
    with minidl.detect_anomaly(), pytest.raises(FloatingPointError, match=r"already held 1 non-finite value\(s\)"):
        _model()(arr(x))


def test_backward_names_the_module_whose_gradient_is_nan():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), NanInBackward(), nn.Linear(4, 2))
    x = _x()
    with minidl.detect_anomaly():
        y = model(x)
        with pytest.raises(FloatingPointError) as info:
            model.backward(arr(np.ones(y.shape, np.float32)))
    assert str(info.value) == (
        "detect_anomaly: the gradient returned by backward of 2 (NanInBackward()) holds 1 non-finite values "
        "(1 nan, 0 inf) out of 20 (shape (5, 4)); its incoming gradient (dout) held no nan or inf, so its backward "
        "made them"
    )


def test_backward_through_a_parent_that_calls_its_children_by_hand():
    model = nn.Sequential(OrderedDict(block=Block()))
    with minidl.set_detect_anomaly(True):
        y = model(_x())
        with pytest.raises(FloatingPointError, match=r"gradient returned by backward of block\.bad \(NanInBackward"):
            model.backward(arr(np.ones(y.shape, np.float32)))
    assert not minidl.is_anomaly_enabled()


def test_a_nan_parameter_gradient_is_named():
    layer = nn.Linear(4, 2)
    x = host(_x())
    layer(arr(x))
    layer.weight.grad = arr(np.full((2, 4), np.nan, np.float32))  # left over from an earlier step
    with (
        minidl.detect_anomaly(),
        pytest.raises(FloatingPointError, match=r"gradient of the parameter weight \(Linear\(in_f"),
    ):
        layer.backward(arr(np.ones((5, 2), np.float32)))


def test_a_nan_parameter_gradient_inside_a_model_is_named_by_its_dotted_name():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    y = model(_x())
    model[2].bias.grad = arr(np.full(2, np.nan, np.float32))
    match = (
        r"^detect_anomaly: the gradient of the parameter 2\.bias \(Linear\(in_features=3, out_features=2\)\) "
        r"holds 2 non-finite values \(2 nan, 0 inf\)"
    )
    with minidl.detect_anomaly(), pytest.raises(FloatingPointError, match=match):
        model.backward(arr(np.ones(y.shape, np.float32)))


def test_a_model_zoo_network_reports_the_layer_by_its_dotted_name():
    model = models.resnet20(num_classes=10)
    model.layer2[0].conv1.weight.data[0, 0, 1, 1] = np.nan
    with minidl.detect_anomaly(), pytest.raises(FloatingPointError, match=r"forward output of layer2\.0\.conv1 \("):
        model(arr(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)))


def test_set_detect_anomaly_is_a_switch_and_a_context_manager_and_restores_the_classes():
    owner = next(k for k in nn.ReLU.__mro__ if "backward" in k.__dict__)  # (the activations share one backward)
    relu_backward = owner.__dict__["backward"]
    minidl.set_detect_anomaly(True)
    try:
        assert minidl.is_anomaly_enabled()
        assert owner.__dict__["backward"] is not relu_backward  # the checking wrapper
        with minidl.set_detect_anomaly(False):
            assert not minidl.is_anomaly_enabled()
            assert owner.__dict__["backward"] is relu_backward
        assert minidl.is_anomaly_enabled()
    finally:
        minidl.set_detect_anomaly(False)
    assert owner.__dict__["backward"] is relu_backward
    assert minidl.grad_mode.set_detect_anomaly is minidl.set_detect_anomaly
    with pytest.raises(TypeError, match=r"set_detect_anomaly\(mode\) expects a bool, got 'yes' \(str\)"):
        minidl.set_detect_anomaly("yes")


def test_finite_training_step_is_unchanged_under_anomaly_mode():
    model, loss_fn = _model(), nn.CrossEntropyLoss()
    x, t = _x(), arr(np.array([0, 1, 2, 0, 1]))
    loss = loss_fn(model(x), t)
    gx = model.backward(loss_fn.backward())
    model2 = _model()
    model2.load_state_dict(model.state_dict())
    with minidl.detect_anomaly():
        loss2 = loss_fn(model2(x), t)
        gx2 = model2.backward(loss_fn.backward())
    assert loss == loss2
    np.testing.assert_array_equal(host(gx), host(gx2))
