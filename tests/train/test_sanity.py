"""check_initial_loss and overfit_batch: they pass a healthy model, flag a mis-scaled head and a detached layer, and
leave the model, the optimizer and the RNG as they found them."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import DataLoader, TensorDataset
from minidl.train import check_initial_loss, find_last_linear, overfit_batch


def _data(n=64, d=20, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), (np.arange(n) % classes).astype(np.int64)


def _mlp(d=20, classes=10):
    return nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, classes))


def _snapshot(model):
    return {k: np.array(minidl.to_numpy(v)) for k, v in model.state_dict().items()}


def _assert_same(model, before):
    after = _snapshot(model)
    assert after.keys() == before.keys()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_initial_loss_of_a_healthy_model_is_near_ln_c(capsys):
    minidl.manual_seed(0)
    x, y = _data()
    model = _mlp()
    result = check_initial_loss(model, DataLoader(TensorDataset(x, y), batch_size=16))
    assert result.ok and result.num_classes == 10 and result.expected == pytest.approx(math.log(10))
    assert abs(result.loss - math.log(10)) < 0.1 * math.log(10)
    out = capsys.readouterr().out
    assert out.startswith("check_initial_loss: loss at init ") and ": OK" in out and "ln(10) = 2.303" in out


@pytest.mark.parametrize("scale, ok", [(1, True), (10, False)])
def test_a_mis_scaled_head_is_flagged(capsys, scale, ok):
    from minidl.models import cifar_cnn

    minidl.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 3, 32, 32)).astype(np.float32)
    y = np.arange(16) % 10
    model = cifar_cnn()
    name, head = find_last_linear(model)
    head.weight.data *= scale  # scale 10: the mis-scaled head, logits ten times too large
    before = _snapshot(model)
    result = check_initial_loss(model, (x, y))
    assert result.ok is ok
    if not ok:
        assert result.ratio > 3
        assert "TOO HIGH" in result.verdict and "scale down the last layer's weights" in result.verdict
    assert result.verdict in capsys.readouterr().out
    _assert_same(model, before)  # the check changed nothing (BatchNorm running statistics included)


def test_a_model_that_knows_the_answer_at_init_is_flagged():
    x, y = _data(classes=4)
    model = nn.Linear(20, 4)
    model.weight.data[...] = 0
    model.bias.data[...] = 0
    bias = np.zeros(4, np.float32)
    bias[0] = 10.0  # confident on class 0
    y = np.zeros_like(y)  # a constant target
    model.bias.data[...] = bias
    result = check_initial_loss(model, (x, y), verbose=False)
    assert not result.ok and "TOO LOW" in result.verdict


def test_initial_loss_restores_batchnorm_statistics_and_the_rng():
    minidl.manual_seed(0)
    x, y = _data()
    model = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
    before = _snapshot(model)
    state = minidl.get_rng_state()
    check_initial_loss(model, (x, y), verbose=False)
    _assert_same(model, before)
    assert minidl.get_rng_state() == state and model.training


def test_initial_loss_bad_arguments_are_named():
    x, y = _data()
    with pytest.raises(ValueError, match=r"^check_initial_loss: batches must be a positive int, got 0"):
        check_initial_loss(nn.Linear(20, 10), (x, y), batches=0)
    with pytest.raises(ValueError, match=r"^check_initial_loss: expected the model to return logits \(N, C\)"):
        check_initial_loss(nn.Flatten(0), (x, y))
    with pytest.raises(ValueError, match=r"^check_initial_loss: the loader yielded no batch"):
        check_initial_loss(nn.Linear(20, 10), [])


def test_overfit_batch_succeeds_on_a_healthy_model_and_restores_it(capsys):
    minidl.manual_seed(0)
    x, y = _data(n=16)
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before, opt_before, rng = _snapshot(model), opt.state_dict(), minidl.get_rng_state()
    result = overfit_batch(model, (x, y), lr=1e-2)
    assert result.success and result.ok and result.final_accuracy == 1.0 and 0 < result.steps < 300
    assert result.losses[-1] < result.losses[0]
    assert set(result.grad_norms) == {"0", "2", "4"} and all(v > 0 for v in result.grad_norms.values())
    assert result.no_gradient == [] and result.vanishing == []
    out = capsys.readouterr().out
    assert out.startswith("overfit_batch: reached 100% train accuracy (100%, loss ") and out.rstrip().endswith("OK")
    _assert_same(model, before)
    assert opt.state_dict() == opt_before and minidl.get_rng_state() == rng
    assert all(p.grad is None for p in model.parameters())


class Detach(nn.Module):
    """Passes its input through but returns a zero gradient: everything before it is cut off from the loss."""

    def forward(self, x):
        return x

    def backward(self, dout):
        return np.zeros_like(dout)


def test_overfit_batch_names_the_layers_behind_a_detached_one(capsys):
    minidl.manual_seed(0)
    x, y = _data(n=16)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(20, 64), nn.ReLU()),
        nn.Linear(64, 64),
        Detach(),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    result = overfit_batch(model, (x, y), steps=30, lr=1e-2)
    assert result.no_gradient == [("0.0", "Linear"), ("1", "Linear")]
    assert not result.ok
    assert result.grad_norms["4"] > 0 and result.grad_norms["0.0"] == 0 == result.grad_norms["1"]
    assert "layer '0.0' (Linear) received no gradient: a detached layer or a dead path before it?" in result.verdict
    assert "layer '1' (Linear) received no gradient" in result.verdict
    assert result.verdict in capsys.readouterr().out


def test_overfit_batch_that_fails_says_so():
    minidl.manual_seed(0)
    x, y = _data(n=32)
    model = nn.Linear(20, 10)
    result = overfit_batch(model, (x, y), steps=3, lr=1e-4, verbose=False)
    assert not result.success and not result.ok and result.steps == 3
    assert "did not reach 100% train accuracy" in result.verdict
    assert "every layer received a gradient: try a larger lr or more steps" in result.verdict


def test_frozen_layers_are_not_reported():
    minidl.manual_seed(0)
    x, y = _data(n=16)
    model = _mlp()
    for p in model[0].parameters():
        p.requires_grad = False
    result = overfit_batch(model, (x, y), lr=1e-2, verbose=False)
    assert "0" not in result.grad_norms and result.no_gradient == [] and result.success


def test_overfit_batch_bad_arguments_are_named():
    x, y = _data(n=4)
    with pytest.raises(ValueError, match=r"^overfit_batch: steps must be a positive int, got 0"):
        overfit_batch(nn.Linear(20, 10), (x, y), steps=0)
    with pytest.raises(ValueError, match=r"^overfit_batch: target_accuracy must be in \(0, 1\], got 1.5"):
        overfit_batch(nn.Linear(20, 10), (x, y), target_accuracy=1.5)
    with pytest.raises(TypeError, match=r"^overfit_batch: each batch must be a pair \(inputs, targets\)"):
        overfit_batch(nn.Linear(20, 10), x)


def test_a_num_classes_that_is_not_the_logits_width_is_refused():
    x, y = _data(n=8, d=5, classes=3)
    with pytest.raises(
        ValueError,
        match=r"^check_initial_loss: num_classes=10 does not match the model's logits, which have 3 columns "
        r"\(shape \(8, 3\)\); pass num_classes=3 or leave it None",
    ):
        check_initial_loss(nn.Linear(5, 3), (x, y), num_classes=10, verbose=False)
    with pytest.raises(
        ValueError, match=r"^check_initial_loss: num_classes must be an int of at least 2 \(or None\), got 1"
    ):
        check_initial_loss(nn.Linear(5, 3), (x, y), num_classes=1, verbose=False)
    assert check_initial_loss(nn.Linear(5, 3), (x, y), num_classes=3, verbose=False).num_classes == 3


def test_a_binary_head_with_bce_with_logits_is_compared_with_ln_2():
    minidl.manual_seed(0)
    x, y = _data(n=64, d=20, classes=2)
    target = y[:, None].astype(np.float32)  # (N, 1), as BCEWithLogitsLoss wants for logits (N, 1)
    result = check_initial_loss(nn.Linear(20, 1), (x, target), nn.BCEWithLogitsLoss(), verbose=False)
    assert result.ok and result.num_classes == 2 and result.expected == pytest.approx(math.log(2))
    assert "vs ln(2) = 0.6931 (p = 0.5)" in result.verdict and "OK" in result.verdict
    assert check_initial_loss(nn.Linear(20, 1), (x, target), nn.BCEWithLogitsLoss(), num_classes=2, verbose=False).ok
    with pytest.raises(
        ValueError, match=r"which have 1 column \(shape \(64, 1\)\); pass num_classes=2 \(a binary head\)"
    ):
        check_initial_loss(nn.Linear(20, 1), (x, target), nn.BCEWithLogitsLoss(), num_classes=10, verbose=False)
    with pytest.raises(
        ValueError,
        match=r"^check_initial_loss: the logits have 1 column \(shape \(64, 1\)\), a binary head: .*pass "
        r"loss_fn=nn\.BCEWithLogitsLoss\(\) \(expected loss at init: ln 2 = 0\.6931, p = 0\.5\)",
    ):
        check_initial_loss(nn.Linear(20, 1), (x, y), verbose=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan/inf on purpose
def test_a_non_finite_initial_loss_counts_the_bad_inputs():
    x, y = _data(n=8, d=5, classes=3)
    x[0, 0] = np.nan
    result = check_initial_loss(nn.Linear(5, 3), (x, y), verbose=False)
    assert not result.ok and ": NOT FINITE, the batch's inputs hold 1 non-finite value (1 nan, 0 inf) of 40" in (
        result.verdict
    )
    assert "minidl.detect_anomaly()" in result.verdict and "TOO LOW" not in result.verdict


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan/inf on purpose
def test_overfit_batch_on_nan_inputs_says_the_loss_was_never_finite():
    minidl.manual_seed(0)
    x, y = _data(n=8, d=5, classes=4)
    x[0, 0], x[1, 1] = np.nan, np.inf
    result = overfit_batch(_mlp(5, 4), (x, y), steps=20, verbose=False)
    assert not result.success and not result.ok and result.steps == 0 and math.isnan(result.final_loss)
    assert result.verdict.startswith(
        "overfit_batch: did not reach 100% train accuracy: the loss was not finite (nan) from the first step, before "
        "any update (stopped at step 0 of 20); the batch's inputs hold 2 non-finite values (1 nan, 1 inf) of 40"
    )
    assert "minidl.detect_anomaly()" in result.verdict and "larger lr" not in result.verdict


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan/inf on purpose
def test_overfit_batch_with_a_nan_weight_says_the_batch_is_clean():
    x, y = _data(n=8, d=5, classes=4)
    model = nn.Linear(5, 4)
    model.weight.data[0, 0] = np.nan
    result = overfit_batch(model, (x, y), steps=20, verbose=False)
    assert result.steps == 0 and "the batch holds no nan or inf, so a module or the loss makes them" in result.verdict
    assert "minidl.detect_anomaly()" in result.verdict


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan/inf on purpose
def test_overfit_batch_that_diverges_to_nan_says_so():
    minidl.manual_seed(0)
    x, y = _data(n=16, d=5, classes=4)
    model = nn.Linear(5, 4)
    result = overfit_batch(
        model, (x * 1e3, y), steps=50, optimizer=optim.SGD(model.parameters(), lr=1e36), verbose=False
    )
    assert not result.success and 0 < result.steps < 50 and not math.isfinite(result.final_loss)
    updates = "1 update" if result.steps == 1 else f"{result.steps} updates"
    assert f"the loss became nan after {updates}: the training diverged, try a smaller lr" in result.verdict
    assert "larger lr" not in result.verdict
