"""gradient_flow_report: norms equal a direct computation, dead ReLUs and unused parameters are found, the model is
left as it was."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.train import gradient_flow_report
from tests.helpers import arr, host


def _batch(n=32, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return arr(rng.standard_normal((n, features))), arr(rng.integers(0, classes, n))


def _mlp(hidden=8):
    minidl.manual_seed(0)
    return nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3))


def test_norms_equal_a_direct_forward_backward():
    model = _mlp().double()
    x, y = _batch()
    report = gradient_flow_report(model, (x, y), verbose=False)
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss = float(loss_fn(model(x), y))
    model.backward(loss_fn.backward())
    assert report.loss == pytest.approx(loss, rel=1e-12)
    assert [layer.name for layer in report.layers] == ["0", "2", "4"]
    for layer in report.layers:
        w = model[int(layer.name)].weight
        grad, weight = np.linalg.norm(host(w.grad)), np.linalg.norm(host(w.data))
        assert layer.grad_norm == pytest.approx(grad, rel=1e-10)
        assert layer.weight_norm == pytest.approx(weight, rel=1e-10)
        assert layer.ratio == pytest.approx(grad / weight, rel=1e-10)
    assert report.healthy and report.unused == [] and report.frozen == []


def test_dead_relu_fraction_is_the_number_of_units_off_for_the_whole_batch():
    model = _mlp().double()
    bias = host(model[2].bias.data).copy()
    bias[:6], bias[6:] = -1e3, 1e3  # 6 of 8 units of the second ReLU never fire, 2 always do
    model[2].bias.data[...] = arr(bias)
    report = gradient_flow_report(model, _batch(), verbose=False)
    second = report.relus[1]
    assert (second.name, second.units, second.dead, second.zeros) == ("3", 8, 0.75, 0.75)
    assert report.relus[0].dead < 0.5
    assert any(w.startswith("dead ReLUs: 3 has 75%") for w in report.warnings), report.warnings


def test_dead_channels_of_a_conv_relu():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 2)).double()
    bias = host(model[0].bias.data).copy()
    bias[:1] = -1e3
    model[0].bias.data[...] = arr(bias)
    x = arr(np.random.default_rng(1).standard_normal((8, 1, 5, 5)))
    report = gradient_flow_report(model, (x, arr(np.arange(8) % 2)), verbose=False)
    assert report.relus[0].dead == 0.25 and report.relus[0].units == 4


class Detached(nn.Module):
    """Runs ``inner`` in forward but passes the gradient around it: inner's parameters never get one."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return x + self.inner(x)

    def backward(self, dout):
        return dout


class WithSpare(nn.Module):
    """``body`` runs; ``spare`` is defined but never called."""

    def __init__(self, body):
        super().__init__()
        self.body = body
        self.spare = nn.Linear(3, 3)

    def forward(self, x):
        return self.body(x)

    def backward(self, dout):
        return self.body.backward(dout)


def test_unused_frozen_and_detached_parameters_are_listed():
    minidl.manual_seed(0)
    model = WithSpare(nn.Sequential(nn.Linear(6, 6), Detached(nn.Linear(6, 6)), nn.Linear(6, 3))).double()
    model.body[0].requires_grad_(False)
    report = gradient_flow_report(model, _batch(), verbose=False)
    assert report.unused == ["body.1.inner.weight", "body.1.inner.bias", "spare.weight", "spare.bias"]
    assert report.frozen == ["body.0.weight", "body.0.bias"]
    assert [layer.name for layer in report.layers] == ["body.2"]
    assert any("unused parameters" in w and "body.1.inner.weight" in w for w in report.warnings)


def test_vanishing_gradients_of_a_deep_sigmoid_net_are_flagged():
    minidl.manual_seed(0)
    layers = []
    for _ in range(8):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 3)).double()
    x, y = arr(np.random.default_rng(0).standard_normal((32, 16))), arr(np.arange(32) % 3)
    report = gradient_flow_report(model, (x, y), verbose=False)
    assert report.layers[0].grad_norm * 100 < report.layers[-1].grad_norm
    assert report.warnings and report.warnings[0].startswith("vanishing: the first layer 0")


def test_the_model_is_left_as_it_was(capsys):
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    earlier = [arr(np.full(p.shape, 7.0)) for p in model.parameters()]
    for p, g in zip(model.parameters(), earlier, strict=True):
        p.grad = g
    running = host(model[1].running_mean).copy()
    report = gradient_flow_report(model, _batch())
    assert all(p.grad is g for p, g in zip(model.parameters(), earlier, strict=True))
    assert all(float(host(p.grad).min()) == 7.0 for p in model.parameters())
    np.testing.assert_array_equal(host(model[1].running_mean), running)
    assert all(not m._forward_hooks for m in model.modules())
    out = capsys.readouterr().out
    assert out.startswith("gradient flow (loss") and "verdict: healthy" in out and str(report) in out


def test_bad_calls_name_the_function():
    model = _mlp()
    with pytest.raises(TypeError, match="gradient_flow_report: batch must be a pair"):
        gradient_flow_report(model, _batch()[0])
    with minidl.no_grad(), pytest.raises(RuntimeError, match="gradient_flow_report: gradients are disabled"):
        gradient_flow_report(model, _batch())


def test_verbose_false_prints_nothing_like_the_other_checks(capsys):
    report = gradient_flow_report(_mlp().double(), _batch(), verbose=False)
    assert capsys.readouterr().out == "" and report.healthy
    with pytest.raises(TypeError, match="print_report"):  # renamed to verbose, as in check_initial_loss and lr_find
        gradient_flow_report(_mlp().double(), _batch(), print_report=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan on purpose
def test_a_non_finite_loss_is_traced_to_the_batch_not_called_exploding():
    x, y = _batch()
    bad = host(x).copy()
    bad[0, 0], bad[5, 1], bad[6, 2] = np.nan, np.nan, -np.inf
    report = gradient_flow_report(_mlp().double(), (arr(bad), y), verbose=False)
    assert report.warnings[0].startswith(
        "non-finite loss (nan) from the first forward: the batch's inputs hold 3 non-finite values (2 nan, 1 inf) of "
        "192: clean the data"
    )
    assert "minidl.detect_anomaly()" in report.warnings[0]
    assert not any(w.startswith("exploding") for w in report.warnings)
    model = _mlp().double()
    model[2].weight.data[0, 0] = np.inf
    clean = gradient_flow_report(model, _batch(), verbose=False)
    assert "the batch holds no nan or inf, so a module or the loss makes them" in clean.warnings[0]
