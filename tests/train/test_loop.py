"""train_one_epoch / evaluate / predict: same result as the ten-line loop, lr stepping order, modes, progress bar."""

from __future__ import annotations

import importlib
import io
import math
import warnings

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import DataLoader, TensorDataset
from minidl.nn.regularization import l2_penalty
from minidl.optim import lr_scheduler
from minidl.train import EpochProgress, TopKAccuracy, accuracy, evaluate, predict, train_one_epoch
from minidl.transforms import Mixup
from tests.train.toy import Blobs, loaders, mlp


def _params(model):
    return {k: minidl.to_numpy(v).copy() for k, v in model.state_dict().items()}


def test_matches_the_ten_line_loop_bitwise():
    minidl.manual_seed(3)
    model_a = mlp()
    train, _ = loaders()
    opt_a = optim.SGD(model_a.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng_state = minidl.get_rng_state()
    logs = train_one_epoch(model_a, train, loss_fn, opt_a, progress=False)

    minidl.manual_seed(3)
    model_b = mlp()
    train, _ = loaders()
    opt_b = optim.SGD(model_b.parameters(), lr=0.1, momentum=0.9)
    assert minidl.get_rng_state() == rng_state
    losses, sizes = [], []
    model_b.train()
    for x, y in train:
        opt_b.zero_grad()
        loss = loss_fn(model_b(x), y)
        model_b.backward(loss_fn.backward())
        opt_b.step()
        losses.append(loss)
        sizes.append(len(y))
    for k, v in _params(model_a).items():
        np.testing.assert_array_equal(v, _params(model_b)[k], err_msg=k)
    assert logs["loss"] == pytest.approx(np.average(losses, weights=sizes), rel=1e-12)
    assert set(logs) == {"loss", "accuracy", "lr", "samples", "time", "throughput"}
    assert logs["samples"] == 48 and logs["lr"] == 0.1 and 0 <= logs["accuracy"] <= 1


def _record_lrs(opt):
    """Wrap opt.step to record the lr of every step (the value the update used)."""
    used = []
    step = opt.step

    def recording_step(*a, **k):
        used.append(opt.param_groups[0]["lr"])
        return step(*a, **k)

    opt.step = recording_step
    return used


@pytest.mark.parametrize("mode", ["batch", "epoch"])
def test_scheduler_stepping_order(mode):
    # 24 samples / batch 8 = 3 batches per epoch, 3 epochs
    loader = DataLoader(Blobs(24), batch_size=8, shuffle=True, seed=0)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=1.0)
    if mode == "batch":
        sched = lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
        expected = [0.5**s for s in range(9)]
    else:
        sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
        expected = [1.0] * 3 + [1.0 * 0.1] * 3 + [1.0 * 0.1 * 0.1] * 3  # PyTorch's recursive form: lr * gamma
    used = _record_lrs(opt)
    epoch_lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch's "scheduler.step() before optimizer.step()" warning must not fire
        for _ in range(3):
            epoch_lrs.append(
                train_one_epoch(model, loader, nn.CrossEntropyLoss(), opt, sched, scheduler_step=mode, progress=False)[
                    "lr"
                ]
            )
    assert used == expected
    assert epoch_lrs == [expected[0], expected[3], expected[6]]
    assert sched.last_epoch == (9 if mode == "batch" else 3)


def test_evaluate_restores_every_mode_and_keeps_no_cache():
    model = mlp()
    _, val = loaders()
    model.train()
    model[4].eval()  # a module deliberately in eval mode (dropout off) stays so
    before = [m.training for m in model.modules()]
    logs = evaluate(model, val, nn.CrossEntropyLoss(), {"accuracy": accuracy, "top2": TopKAccuracy(2)})
    assert [m.training for m in model.modules()] == before
    assert all(not m._saved for m in model.modules())
    assert minidl.is_grad_enabled()
    # the same numbers by hand, in eval mode
    model.eval()
    with minidl.no_grad():
        xs, ys = zip(*list(val), strict=True)
        logits = np.concatenate([minidl.to_numpy(model(x)) for x in xs])
    y = np.concatenate([minidl.to_numpy(v) for v in ys])
    assert logs["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    assert logs["top2"] >= logs["accuracy"]
    out, targets, inputs = predict(model, val, return_inputs=True)
    np.testing.assert_allclose(out, logits, rtol=1e-6)
    assert targets.tolist() == y.tolist() and inputs.shape == (24, 1, 4, 4)
    assert set(evaluate(model, val, metrics={})) == set()
    assert set(evaluate(model, val)) == {"accuracy"}


def test_progress_bar_silent_off_a_terminal_and_forced_on():
    train, val = loaders()
    model, stream = mlp(), io.StringIO()
    opt = optim.SGD(model.parameters(), lr=0.05)
    train_one_epoch(model, train, nn.CrossEntropyLoss(), opt, progress=True, progress_file=stream)
    evaluate(model, val, nn.CrossEntropyLoss(), progress=True, progress_file=stream)
    assert stream.getvalue() == ""  # StringIO is not a TTY
    train_one_epoch(model, train, nn.CrossEntropyLoss(), opt, progress="always", progress_file=stream, desc="ep 1")
    text = stream.getvalue()
    assert "ep 1" in text and "img/s=" in text and "lr=0.05" in text and "loss=" in text and "accuracy=" in text
    with pytest.raises(ValueError, match="EpochProgress: enabled must be True, False or 'always'"):
        EpochProgress(3, enabled="yes")


def test_progress_bar_shown_in_a_notebook(monkeypatch, capsys):
    """In a Jupyter kernel (tqdm.auto draws a widget) the bar is watched although its stream is not a terminal."""
    progress = importlib.import_module("minidl.train.progress")
    monkeypatch.setattr(progress, "_NOTEBOOK", True)
    with EpochProgress(3, enabled=True) as bar:
        assert not bar.disabled
    with EpochProgress(3, enabled=True, file=io.StringIO()) as bar:  # an explicit stream decides as elsewhere
        assert bar.disabled
    with EpochProgress(3, enabled=False) as bar:
        assert bar.disabled
    monkeypatch.setattr(progress, "_NOTEBOOK", False)
    with EpochProgress(3, enabled=True) as bar:  # capsys: sys.stderr is not a terminal
        assert bar.disabled
    capsys.readouterr()


def test_clipping_regularization_and_mixup():
    x = np.random.default_rng(0).standard_normal((8, 1, 4, 4)).astype(np.float32)
    y = np.arange(8) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    loss_fn = nn.CrossEntropyLoss()

    def fresh():
        minidl.manual_seed(1)
        model = mlp(dropout=0.0)
        return model, optim.SGD(model.parameters(), lr=1.0)

    model, opt = fresh()
    start = _params(model)
    logs = train_one_epoch(model, loader, loss_fn, opt, clip_grad_norm=1e-6, progress=False)
    moved = math.sqrt(
        sum(
            float(((_params(model)[k] - v) ** 2).sum())
            for k, v in start.items()
            if "running" not in k and "num_batches" not in k
        )
    )
    assert logs["grad_norm"] > 1e-3 and moved < 1.5e-6  # lr 1 * clipped norm 1e-6, up to float32 rounding

    model, opt = fresh()
    plain = train_one_epoch(model, loader, loss_fn, opt, progress=False)["loss"]
    model, opt = fresh()
    penalty = l2_penalty(model, 0.1)
    model.zero_grad()
    regularized = train_one_epoch(
        model, loader, loss_fn, opt, regularization=lambda m: l2_penalty(m, 0.1), progress=False
    )["loss"]
    assert regularized == pytest.approx(plain + penalty, rel=1e-6)

    model, opt = fresh()
    logs = train_one_epoch(model, loader, loss_fn, opt, batch_transform=Mixup(alpha=0.4, num_classes=3), progress=False)
    assert math.isfinite(logs["loss"]) and 0 <= logs["accuracy"] <= 1


def test_errors_are_clear():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    train, _ = loaders()
    with pytest.raises(ValueError, match="scheduler_step must be 'batch' or 'epoch', got 'step'"):
        train_one_epoch(model, train, nn.CrossEntropyLoss(), opt, scheduler_step="step")
    with pytest.raises(TypeError, match="ReduceLROnPlateau needs the monitored metric"):
        train_one_epoch(model, train, nn.CrossEntropyLoss(), opt, lr_scheduler.ReduceLROnPlateau(opt))
    with pytest.raises(TypeError, match=r"each batch must be a pair \(inputs, targets\), got a tuple of length 3"):
        train_one_epoch(model, [(1, 2, 3)], nn.CrossEntropyLoss(), opt, progress=False)
    with pytest.raises(ValueError, match="'loss' is reserved"):
        evaluate(model, train, metrics={"loss": accuracy})
    bad = np.full((8, 1, 4, 4), np.nan, np.float32)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(FloatingPointError, match="the loss became nan at batch 0"):
        train_one_epoch(linear, [(bad, np.zeros(8, np.int64))], nn.CrossEntropyLoss(), opt, progress=False)
    with pytest.raises(ValueError, match="clip_grad_norm must be a positive number"):
        train_one_epoch(model, train, nn.CrossEntropyLoss(), opt, clip_grad_norm=0)
