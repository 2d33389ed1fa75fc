"""lr_find: the exponential schedule, the bias-corrected smoothing, the stop at divergence, the restore, and a
suggestion within a factor of 3 of the best fixed learning rate found by a sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import DataLoader, TensorDataset
from minidl.train import lr_find, suggest_lr


def _softmax_regression(seed=0, n=512, d=20, classes=5):
    """A noisy linearly separable 5-class problem: the best fixed SGD learning rate is a few units."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, classes))
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = np.argmax(x @ w + 0.5 * rng.normal(size=(n, classes)), 1).astype(np.int64)
    return x, y


def _loss_after_training(x, y, lr, steps=100, batch_size=32):
    minidl.manual_seed(1)
    model, loss_fn = nn.Linear(x.shape[1], 5), nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, seed=2)
    step = 0
    while step < steps:
        for xb, yb in loader:
            model.zero_grad()
            loss = loss_fn(model(xb), yb)
            if not math.isfinite(loss):
                return math.inf
            model.backward(loss_fn.backward())
            opt.step()
            step += 1
            if step == steps:
                break
    return float(loss_fn(model(x), y))


def test_suggestion_is_within_a_factor_of_3_of_the_best_fixed_lr():
    x, y = _softmax_regression()
    grid = np.logspace(-2, 2, 17)
    best = grid[int(np.argmin([_loss_after_training(x, y, lr) for lr in grid]))]
    assert 0.3 < best < 30, f"the sweep should find a best lr of a few units, got {best}"
    ratios = []
    for seed in range(3):  # without smoothing the suggestion lands 30x off for some of these seeds
        minidl.manual_seed(seed)
        model = nn.Linear(20, 5)
        loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=seed)
        opt = optim.SGD(model.parameters(), lr=1.0)
        result = lr_find(model, loader, optimizer=opt, start_lr=1e-4, end_lr=1e3, num_iter=100, verbose=False)
        ratios.append(result.suggested_lr / best)
    assert all(1 / 3 <= r <= 3 for r in ratios), f"suggested / best lr {best:.3g}: {ratios}"


def test_schedule_is_exponential_and_losses_are_smoothed_with_bias_correction():
    minidl.manual_seed(0)
    x, y = _softmax_regression(n=64)
    model = nn.Linear(20, 5)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)  # 4 batches: cycled 10 times
    result = lr_find(model, loader, start_lr=1e-5, end_lr=1e-1, num_iter=40, beta=0.9, verbose=False)
    assert len(result.lrs) == 40 and not result.diverged  # a range this low never diverges
    np.testing.assert_allclose(result.lrs, 1e-5 * (1e4 ** (np.arange(40) / 39)), rtol=1e-12)
    average, expected = 0.0, []
    for i, loss in enumerate(result.raw_losses):
        average = 0.9 * average + 0.1 * loss
        expected.append(average / (1 - 0.9 ** (i + 1)))
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)
    assert result.losses[0] == result.raw_losses[0]  # bias-corrected: the first value is not pulled towards 0


def test_stops_at_divergence_and_restores_model_optimizer_and_rng(capsys):
    minidl.manual_seed(0)
    x, y = _softmax_regression(n=128)
    model = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 5))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(2):  # give the optimizer some state (momentum buffers) to restore
        model.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    opt_before = {k: np.array(v["momentum_buffer"]) for k, v in opt.state_dict()["state"].items()}
    rng = minidl.get_rng_state()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=0)
    result = lr_find(model, loader, optimizer=opt, start_lr=1e-3, end_lr=1e6, num_iter=100)
    assert result.diverged and len(result.lrs) < 100
    finite = [v for v in result.losses if math.isfinite(v)]
    assert not math.isfinite(result.losses[-1]) or result.losses[-1] > 5 * min(finite)
    assert all(v <= 5 * min(finite[: i + 1]) for i, v in enumerate(finite[:-1]))  # no earlier point diverged
    out = capsys.readouterr().out
    assert out.startswith("lr_find: suggested lr ") and "(diverged)" in out
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert opt.param_groups[0]["lr"] == 0.05
    for k, v in opt.state_dict()["state"].items():
        np.testing.assert_array_equal(v["momentum_buffer"], opt_before[k])
    assert minidl.get_rng_state() == rng and model.training


def test_param_groups_keep_their_ratio():
    minidl.manual_seed(0)
    x, y = _softmax_regression(n=64)
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 5))
    opt = optim.SGD([{"params": model[0].parameters(), "lr": 0.01}, {"params": model[2].parameters(), "lr": 0.1}])
    seen = []
    original_step = opt.step

    def step(*args, **kwargs):
        seen.append([g["lr"] for g in opt.param_groups])
        return original_step(*args, **kwargs)

    opt.step = step
    lr_find(model, [(x, y)], optimizer=opt, start_lr=1e-4, end_lr=1e-2, num_iter=12, verbose=False)
    assert len(seen) == 12 and all(hi == pytest.approx(10 * lo) for lo, hi in seen)
    assert seen[0][0] == pytest.approx(1e-4) and seen[-1][0] == pytest.approx(1e-2)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]


def test_suggestion_methods():
    lrs = np.logspace(-4, 0, 41)
    losses = 1 / (1 + np.exp(4 * (np.log10(lrs) + 2)))  # falls fastest at 1e-2, flattens at 1
    assert suggest_lr(lrs, losses, "steepest") == pytest.approx(1e-2)
    assert suggest_lr(lrs, losses, "minimum", skip_end=0) == pytest.approx(1e-1)
    valley = suggest_lr(lrs, losses, "valley")  # two thirds down the falling stretch from 1e-4 (after skip) to ~1
    assert 1e-2 < valley < 1


def test_suggestion_ignores_a_fall_after_the_minimum():
    """A diverging network's loss can spike and fall again steeply: that slope is past the minimum, not a good lr."""
    lrs = np.logspace(-5, 1, 61)
    log = np.log10(lrs)
    losses = 2.3 - 0.1 * np.clip(log + 4, 0, 2)  # falls gently from 1e-4 to 1e-2 (the minimum)
    losses = np.where(log > -2, 2.1 + 3 * np.exp(-(((log + 1) / 0.3) ** 2)), losses)  # a spike at 1e-1, then down
    assert 1e-4 <= suggest_lr(lrs, losses, "steepest") <= 1e-2
    assert 1e-4 <= suggest_lr(lrs, losses, "valley") <= 1e-2


def test_a_loss_that_never_falls_gives_no_suggestion_but_the_curve(capsys):
    class Detach(nn.Module):
        def forward(self, x):
            return x

        def backward(self, dout):
            return np.zeros_like(dout)

    x, y = _softmax_regression(n=32)
    model = nn.Sequential(nn.Linear(20, 5), Detach())  # no parameter learns: the loss stays where it starts
    result = lr_find(model, [(x, y)], start_lr=1e-3, end_lr=1e3, num_iter=30)
    assert math.isnan(result.suggested_lr) and len(result.lrs) == 30
    assert "lr_find: no suggestion (the smoothed loss never fell (its lowest point, at lr " in capsys.readouterr().out


def test_plot_writes_an_image(tmp_path):
    pytest.importorskip("matplotlib")
    minidl.manual_seed(0)
    x, y = _softmax_regression(n=64)
    result = lr_find(nn.Linear(20, 5), [(x, y)], start_lr=1e-3, end_lr=1e3, num_iter=30, verbose=False)
    path = result.plot(tmp_path / "lr.png")
    assert path == tmp_path / "lr.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = result.plot()
    assert ax.get_xscale() == "log" and len(ax.get_lines()) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, r"^lr_find: expected 0 < start_lr < end_lr, got start_lr=1.0, end_lr=0.1"),
        ({"num_iter": 5}, r"^lr_find: num_iter must be an int of at least skip_start \+ skip_end \+ 3 = 10, got 5"),
        ({"beta": 1.0}, r"^lr_find: beta must be in \[0, 1\), got 1.0"),
        ({"diverge_th": 1}, r"^lr_find: diverge_th must be greater than 1, got 1"),
        (
            {"suggestion": "best"},
            r"^lr_find: suggestion must be one of \('steepest', 'valley', 'minimum'\), got 'best'",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    x, y = _softmax_regression(n=8)
    with pytest.raises(ValueError, match=match):
        lr_find(nn.Linear(20, 5), [(x, y)], **kwargs)


def test_divergence_before_any_suggestion_is_explained():
    x, y = _softmax_regression(n=32)
    with pytest.raises(
        ValueError, match=r"^lr_find: the loss diverged after only \d steps \(at lr .*\), too few for a "
    ):
        lr_find(nn.Linear(20, 5), [(x * 1e4, y)], start_lr=1e3, end_lr=1e9, num_iter=50, verbose=False)


def test_empty_loader_is_named():
    with pytest.raises(ValueError, match=r"^lr_find: the loader yielded no batch"):
        lr_find(nn.Linear(20, 5), [], verbose=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan on purpose
def test_a_loss_that_is_not_finite_from_the_first_step_is_no_divergence():
    x, y = _softmax_regression(n=16)
    x[0, 0] = np.nan
    with pytest.raises(
        ValueError,
        match=r"^lr_find: the loss was not finite \(nan\) from the first step \(at lr 1e-07, before any update\), so "
        r"there is no curve to read; the batch's inputs hold 1 non-finite value \(1 nan, 0 inf\) of 320: .*"
        r"minidl\.detect_anomaly\(\)",
    ):
        lr_find(nn.Linear(20, 5), [(x, y)], num_iter=20, verbose=False)
    model = nn.Linear(20, 5)
    model.weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"from the first step .*; the batch holds no nan or inf, so a module or the"):
        lr_find(model, [(x[1:], y[1:])], num_iter=20, verbose=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_later_batch_with_nan_inputs_is_named_not_taken_for_a_divergence():
    x, y = _softmax_regression(n=16)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(
        ValueError,
        match=r"^lr_find: the loss of step 7 \(at lr .*\) was not finite \(nan\) on a batch that holds nan/inf",
    ):
        lr_find(nn.Linear(20, 5), [(x, y)] * 6 + [(bad, y)], num_iter=20, verbose=False)


def test_the_reason_for_no_suggestion_is_kept_on_the_result():
    class Detach(nn.Module):
        def forward(self, x):
            return x

        def backward(self, dout):
            return np.zeros_like(dout)

    x, y = _softmax_regression(n=32)
    result = lr_find(nn.Sequential(nn.Linear(20, 5), Detach()), [(x, y)], start_lr=1e-3, end_lr=1e3, num_iter=30,
                     verbose=False)  # fmt: skip
    assert math.isnan(result.suggested_lr) and result.note.startswith("the smoothed loss never fell (its lowest point")
    minidl.manual_seed(0)
    fine = lr_find(nn.Linear(20, 5), [(x, y)], start_lr=1e-3, end_lr=1e3, num_iter=30, verbose=False)
    assert math.isfinite(fine.suggested_lr) and fine.note == ""


def test_plot_shows_the_curve_up_to_the_divergence():
    pytest.importorskip("matplotlib")
    from minidl.train import LRFinderResult

    losses = [1.0, 0.8, 0.6, 0.7, 1.5, 2.5, 40.0]  # rises above its start (2.5 > 1.0) before diverging at 40
    lrs = list(np.logspace(-4, 2, len(losses)))
    ax = LRFinderResult(lrs, losses, losses, math.nan, "steepest", True).plot()
    low, high = ax.get_ylim()
    assert low < 0.6 and 2.5 < high < 40, (low, high)
    ax = LRFinderResult(lrs[:-1], losses[:-1], losses[:-1], math.nan, "steepest", False).plot()
    assert ax.get_ylim()[0] < 0.6 and ax.get_ylim()[1] > 2.5
