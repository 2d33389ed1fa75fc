"""fit/Trainer: the loss falls, callbacks (EarlyStopping, ModelCheckpoint, LearningRateMonitor), schedulers, and exact
resume (4 epochs straight == 2 epochs, checkpoint, new objects, 2 more)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.optim import lr_scheduler
from minidl.train import (
    Callback,
    EarlyStopping,
    History,
    LearningRateMonitor,
    ModelCheckpoint,
    Trainer,
    fit,
)
from minidl.transforms import Mixup
from tests.train.toy import loaders, mlp


def _state(model):
    return {k: minidl.to_numpy(v).copy() for k, v in model.state_dict().items()}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


class Scripted(Callback):
    """Overwrites logs['val_loss'] with scripted values (runs before EarlyStopping) and snapshots the weights."""

    def __init__(self, values):
        self.values = list(values)
        self.snapshots = {}

    def on_epoch_end(self, trainer, epoch, logs):
        logs["val_loss"] = self.values[epoch - 1]
        self.snapshots[epoch] = _state(trainer.model)


def test_fit_loss_falls_and_history_file(tmp_path):
    train, val = loaders(n=96, augment=False)
    model = mlp(dropout=0.0)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    log = io.StringIO()
    history = fit(
        model,
        train,
        val,
        nn.CrossEntropyLoss(),
        opt,
        epochs=6,
        history_path=tmp_path / "h.csv",
        progress=False,
        log_file=log,
    )
    assert len(history) == 6 and history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0] and history["val_accuracy"][-1] > 0.8
    assert {"train_accuracy", "val_accuracy", "lr", "time", "train_throughput"} <= set(history.keys())
    assert History.load(tmp_path / "h.csv") == history
    lines = log.getvalue().splitlines()
    assert len(lines) == 6 and lines[0].startswith("epoch 1  train_loss ")


def test_early_stopping_stops_at_the_right_epoch_and_restores_best_weights():
    train, val = loaders()
    model = mlp()
    script = Scripted([1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6])
    stopper = EarlyStopping(monitor="val_loss", patience=3)
    trainer = Trainer(
        model,
        nn.CrossEntropyLoss(),
        optim.SGD(model.parameters(), lr=0.1),
        callbacks=[script, stopper],
        progress=False,
        verbose=False,
    )
    history = trainer.fit(train, val, epochs=7)
    # best at epoch 2; epochs 3, 4, 5 without improvement -> stop after epoch 5
    assert len(history) == 5 and trainer.epoch == 5
    assert (stopper.best_epoch, stopper.best, stopper.stopped_epoch) == (2, 0.8, 5)
    _assert_same_state(_state(model), script.snapshots[2])  # the weights of epoch 2, BN statistics included
    assert not np.array_equal(script.snapshots[2]["1.weight"], script.snapshots[5]["1.weight"])


def _run_stopper(values, **kw):
    class T:
        stop_training = False
        model = mlp()

    stopper, t = EarlyStopping(restore_best_weights=False, **kw), T()
    for epoch, v in enumerate(values, start=1):
        stopper.on_epoch_end(t, epoch, {"val_loss": v, "val_accuracy": v})
        if t.stop_training:
            return epoch, stopper
    return None, stopper


def test_early_stopping_min_delta_mode_and_nan():
    # improvements must beat the best by more than min_delta: 0.9 is not enough after 1.0, 0.8 is
    stop, s = _run_stopper([1.0, 0.9, 0.8, 0.75, 0.72], patience=2, min_delta=0.15)
    assert (stop, s.best_epoch) == (5, 3)
    stop, s = _run_stopper([0.5, 0.6, 0.6, 0.55, 0.7], monitor="val_accuracy", mode="max", patience=2)
    assert (stop, s.best_epoch, s.best) == (4, 2, 0.6)
    stop, s = _run_stopper([1.0, float("nan"), float("nan")], patience=2)
    assert (stop, s.best_epoch) == (3, 1)
    stop, s = _run_stopper([3.0, 2.0, 1.0], patience=0)  # patience 0: stop at the first epoch without improvement
    assert stop is None
    assert _run_stopper([3.0, 3.0], patience=0)[0] == 2


def test_model_checkpoint_files(tmp_path, monkeypatch):
    train, val = loaders()
    model = mlp()
    script = Scripted([1.0, 0.5, 0.7, 0.6])
    ckpt = ModelCheckpoint(tmp_path / "ckpt", every_n_epochs=2, monitor="val_loss")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    Trainer(model, nn.CrossEntropyLoss(), opt, sched, callbacks=[ckpt, script], progress=False, verbose=False).fit(
        train, val, epochs=4
    )
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["best.npz", "epoch_002.npz", "epoch_004.npz", "last.npz"]
    best = minidl.load(tmp_path / "ckpt" / "best.npz")
    assert best["epoch"] == 2 and ckpt.best_epoch == 2  # ModelCheckpoint ran after Scripted despite the list order
    _assert_same_state(dict(best["model"]), script.snapshots[2])
    last = minidl.load(tmp_path / "ckpt" / "last.npz")
    assert last["epoch"] == 4 and last["loaders"]["train"] == {"epoch": 4, "seed": 1}
    _assert_same_state(dict(last["model"]), _state(model))
    assert last["scheduler"]["last_epoch"] == 4 and len(last["history"]["records"]) == 4
    assert set(last) >= {"optimizer", "rng", "callbacks"}
    assert last["optimizer"]["param_groups"][0]["lr"] == opt.param_groups[0]["lr"]
    # a crash while writing the next checkpoint leaves the previous one intact and no temporary file behind
    before = (tmp_path / "ckpt" / "last.npz").read_bytes()

    def crash(fd):
        raise OSError("killed mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    trainer = Trainer(
        model,
        nn.CrossEntropyLoss(),
        opt,
        callbacks=[ModelCheckpoint(tmp_path / "ckpt", save_best=False)],
        progress=False,
        verbose=False,
    )
    with pytest.raises(OSError, match="killed mid-write"):
        trainer.fit(train, val, epochs=5)
    monkeypatch.undo()
    assert (tmp_path / "ckpt" / "last.npz").read_bytes() == before
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["best.npz", "epoch_002.npz", "epoch_004.npz", "last.npz"]


@pytest.mark.parametrize("loader_seed, mixup", [(1, False), (None, True)])
def test_exact_resume(tmp_path, loader_seed, mixup):
    """4 epochs straight == 2 epochs, checkpoint, everything rebuilt (other seed), resume, 2 more: bitwise."""

    def build(seed):
        minidl.manual_seed(seed)
        model = mlp(dropout=0.3)
        train, val = loaders(seed=loader_seed, augment=True)  # shuffle=True, GaussianNoise augmentation
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
        callbacks = [EarlyStopping(patience=10), LearningRateMonitor("step")]
        trainer = Trainer(
            model,
            nn.CrossEntropyLoss(),
            opt,
            sched,
            callbacks=callbacks,
            progress=False,
            verbose=False,
            checkpoint_dir=tmp_path / f"run{seed}",
            batch_transform=Mixup(0.4, 3) if mixup else None,
        )
        return trainer, train, val

    straight, train, val = build(0)
    straight.fit(train, val, epochs=4)

    first, train, val = build(0)
    first.fit(train, val, epochs=2)
    os.replace(tmp_path / "run0", tmp_path / "run7")  # the second run finds the checkpoint in its own folder
    resumed, train, val = build(7)  # other initial weights and RNG state: all must come from the checkpoint
    resumed.fit(train, val, epochs=4, resume=True)

    _assert_same_state(_state(resumed.model), _state(straight.model))
    s_opt, r_opt = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert s_opt["param_groups"] == r_opt["param_groups"]
    for i in s_opt["state"]:
        np.testing.assert_array_equal(s_opt["state"][i]["momentum_buffer"], r_opt["state"][i]["momentum_buffer"])
    assert resumed.scheduler.state_dict() == straight.scheduler.state_dict()
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed.history[key] == straight.history[key], key
    assert resumed.callbacks[0].wait == straight.callbacks[0].wait
    assert resumed.callbacks[1].lrs == straight.callbacks[1].lrs and len(straight.callbacks[1].lrs) == 24
    assert train.epoch == 4


def test_rng_state_after_resume_matches(tmp_path):
    def build(seed):
        minidl.manual_seed(seed)
        model = mlp()
        train, val = loaders(seed=None)
        opt = optim.SGD(model.parameters(), lr=0.05)
        return (
            Trainer(model, nn.CrossEntropyLoss(), opt, progress=False, verbose=False, checkpoint_dir=tmp_path),
            train,
            val,
        )

    t, train, val = build(0)
    t.fit(train, val, epochs=3)
    rng_straight = minidl.get_rng_state()
    t, train, val = build(0)
    t.fit(train, val, epochs=1)
    t, train, val = build(5)
    t.fit(train, val, epochs=3, resume=tmp_path / "last.npz")
    assert minidl.get_rng_state() == rng_straight


def test_schedulers_through_fit():
    train, val = loaders()
    model = mlp(batchnorm=False)
    opt = optim.SGD(model.parameters(), lr=0.01)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.5)  # improving = halving
    history = fit(
        model, train, val, nn.CrossEntropyLoss(), opt, epochs=3, scheduler=plateau, progress=False, verbose=False
    )
    assert history["lr"] == [0.01, 0.01, 0.005]  # epoch 1 sets the best; epoch 2 does not halve it: lr * 0.5

    model = mlp()
    opt = optim.SGD(
        [{"params": list(model.parameters())[:2], "lr": 0.01}, {"params": list(model.parameters())[2:]}], lr=0.1
    )
    cycle = lr_scheduler.OneCycleLR(opt, max_lr=[0.01, 0.1], total_steps=2 * len(train))
    monitor = LearningRateMonitor("step")
    history = fit(
        model,
        train,
        None,
        nn.CrossEntropyLoss(),
        opt,
        epochs=2,
        scheduler=cycle,
        callbacks=[monitor],
        scheduler_step="batch",
        progress=False,
        verbose=False,
    )
    reference_opt = optim.SGD(mlp().parameters(), lr=0.1)  # the schedule of group 1, stepped by hand
    reference = lr_scheduler.OneCycleLR(reference_opt, max_lr=[0.1], total_steps=2 * len(train))
    expected = []
    for _ in range(2 * len(train)):
        expected.append(reference_opt.param_groups[0]["lr"])
        reference_opt.step()
        reference.step()
    assert [row[1] for row in monitor.lrs] == expected
    assert history["lr_group1"] == [expected[0], expected[len(train)]]
    assert history["lr"] == [row[0] for row in monitor.lrs][:: len(train)]
    assert "lr_group1" in history.keys() and "val_loss" not in history.keys()


def test_trainer_errors(tmp_path):
    train, val = loaders()
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        Trainer(model, nn.CrossEntropyLoss(), opt, verbose=False, progress=False).fit(train, val, 1, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        Trainer(model, nn.CrossEntropyLoss(), opt, verbose=False).fit(train, val, 1, resume=tmp_path / "x.npz")
    with pytest.raises(KeyError, match="monitor 'val_loss' is not among the logged metrics"):
        fit(
            model,
            train,
            None,
            nn.CrossEntropyLoss(),
            opt,
            1,
            callbacks=[EarlyStopping()],
            progress=False,
            verbose=False,
        )
    minidl.save(model.state_dict(), tmp_path / "weights.npz")
    with pytest.raises(ValueError, match="is not a training checkpoint"):
        Trainer(model, nn.CrossEntropyLoss(), opt).load_checkpoint(tmp_path / "weights.npz")
    with pytest.raises(TypeError, match="callbacks must be Callback objects"):
        Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=[print])
    with pytest.raises(ValueError, match="ReduceLROnPlateau steps once per epoch"):
        Trainer(model, nn.CrossEntropyLoss(), opt, lr_scheduler.ReduceLROnPlateau(opt), scheduler_step="batch")
    # resume=True with an empty checkpoint folder starts afresh
    history = fit(
        model,
        train,
        val,
        nn.CrossEntropyLoss(),
        opt,
        1,
        checkpoint_dir=tmp_path / "new",
        resume=True,
        progress=False,
        verbose=False,
    )
    assert len(history) == 1 and (tmp_path / "new" / "last.npz").is_file()


def test_on_exception_is_called_instead_of_on_train_end_when_training_raises():
    calls = []

    class Watch(Callback):
        def on_train_end(self, trainer):
            calls.append("end")

        def on_exception(self, trainer, exception):
            calls.append(type(exception).__name__)

    class NanLoss(nn.CrossEntropyLoss):
        def forward(self, logits, targets):
            return float("nan")

    model = mlp()
    train_loader, _ = loaders()
    with pytest.raises(FloatingPointError, match="the loss became nan"):
        fit(model, train_loader, None, NanLoss(), optim.SGD(model.parameters(), lr=0.1), 1, callbacks=[Watch()],
            verbose=False, progress=False)  # fmt: skip
    assert calls == ["FloatingPointError"]
    fit(model, train_loader, None, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), 1,
        callbacks=[Watch()], verbose=False, progress=False)  # fmt: skip
    assert calls == ["FloatingPointError", "end"]


def test_resume_none_means_no_resume_and_bad_values_are_refused(tmp_path):
    """resume=None starts afresh, as resume=False does (the meaning of None in PyTorch Lightning's ckpt_path and the
    Hugging Face Trainer's resume_from_checkpoint), even with a checkpoint in checkpoint_dir."""

    def run(resume):
        minidl.manual_seed(0)
        train, val = loaders()
        model = mlp()
        opt = optim.SGD(model.parameters(), lr=0.1)
        history = fit(model, train, val, nn.CrossEntropyLoss(), opt, 2, checkpoint_dir=tmp_path, resume=resume,
                      progress=False, verbose=False)  # fmt: skip
        return history, _state(model)

    fresh, fresh_state = run(False)
    assert (tmp_path / "last.npz").is_file()
    for resume in (None, False):
        history, state = run(resume)
        assert history["epoch"] == [1, 2] and history["train_loss"] == fresh["train_loss"]
        _assert_same_state(state, fresh_state)
    train, val = loaders()
    model = mlp()
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), verbose=False)
    accepted = (
        r"Trainer.fit: resume must be False or None \(start afresh\), True \(continue from checkpoint_dir/last.npz\) "
        r"or a checkpoint path \(str or os.PathLike\), got "
    )
    for bad, shown in ((1, r"1 \(int\)"), (0, r"0 \(int\)"), ([tmp_path], r"\[.*\] \(list\)")):
        with pytest.raises(TypeError, match=accepted + shown):
            trainer.fit(train, val, 1, resume=bad)
    with pytest.raises(ValueError, match=r"Trainer.fit: resume is an empty path ''; expected the path of a checkpoint"):
        trainer.fit(train, val, 1, resume="")
    assert trainer.epoch == 0 and len(trainer.history) == 0
