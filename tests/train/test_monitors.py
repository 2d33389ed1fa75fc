"""The training-health monitors: what they record equals a direct computation, their hooks come off, their series
survive save/load, and the deck's init demo shows in the activation statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import DataLoader, TensorDataset
from minidl.train import ActivationStats, Callback, DeadReLU, GradientNorms, History, Trainer, UpdateRatio, fit
from tests.helpers import arr, host


def _data(n=16, features=6, batch_size=8, dtype=np.float64):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, features)).astype(dtype), rng.integers(0, 3, n)
    return x, y, DataLoader(TensorDataset(x, y), batch_size=batch_size, device="current")


def _mlp():
    minidl.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).double()


def _fit(model, loader, callbacks, lr=0.1, epochs=1, **kwargs):
    opt = optim.SGD(model.parameters(), lr=lr)
    return fit(model, loader, None, nn.CrossEntropyLoss(), opt, epochs, callbacks=callbacks, verbose=False,
               progress=False, fuse=False, **kwargs)  # fmt: skip


def test_activation_stats_equal_the_layer_outputs():
    model = _mlp()
    x, _, loader = _data()
    stats = ActivationStats(every=1, histogram_bins=7)
    history = _fit(model, loader, [stats], lr=0.0)  # lr 0: the outputs can be recomputed after training
    assert stats.watched == ["0", "1", "2", "3", "4"]
    assert len(stats.history) == 2 and stats.history["step"] == [0, 1]
    for step, record in enumerate(stats.history):
        h = arr(x[8 * step : 8 * step + 8])
        for i in range(5):
            h = model[i](h)
            out = host(h)
            assert record[f"act_mean/{i}"] == pytest.approx(out.mean(), rel=1e-12, abs=1e-15)
            assert record[f"act_std/{i}"] == pytest.approx(out.std(), rel=1e-12)
            counts, edges = stats.histograms[step][str(i)]
            assert counts.sum() == out.size
            np.testing.assert_array_equal(counts, np.histogram(out, bins=7, range=(out.min(), out.max()))[0])
    epoch_mean = np.mean(stats.history["act_std/3"])
    assert history["act_std/3"] == [pytest.approx(epoch_mean, rel=1e-12)]


def test_update_ratio_is_lr_times_grad_norm_over_weight_norm_for_sgd():
    model = _mlp()
    x, y, loader = _data(n=8)
    before = {name: host(p.data).copy() for name, p in model.named_parameters()}
    probe = _mlp()
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(probe(arr(x)), arr(y))
    probe.backward(loss_fn.backward())
    ratios = UpdateRatio()
    _fit(model, loader, [ratios], lr=0.05)
    record = ratios.history.records[0]
    for name, p in probe.named_parameters():
        expected = 0.05 * np.linalg.norm(host(p.grad)) / np.linalg.norm(before[name])
        assert record[f"update_ratio/{name}"] == pytest.approx(expected, rel=1e-9), name


def test_update_ratio_sees_what_momentum_does():
    model = _mlp()
    _, _, loader = _data(n=24)
    ratios = UpdateRatio(every=1)
    snapshots = []

    class Snap(Callback):
        def on_batch_end(self, trainer, batch, logs):
            snapshots.append(host(trainer.model[0].weight.data).copy())

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    first = host(model[0].weight.data).copy()
    fit(model, loader, None, nn.CrossEntropyLoss(), opt, 1, callbacks=[ratios, Snap()], verbose=False, progress=False)
    previous = [first, *snapshots[:-1]]
    for record, w0, w1 in zip(ratios.history, previous, snapshots, strict=True):
        assert record["update_ratio/0.weight"] == pytest.approx(np.linalg.norm(w1 - w0) / np.linalg.norm(w0))


def test_gradient_norms_and_dead_relu():
    model = _mlp()
    model[2].bias.data[...] = arr(np.r_[np.full(4, -1e3), np.full(4, 1e3)])  # half of the ReLU's units are dead
    _, _, loader = _data()
    norms, dead = GradientNorms(every=1), DeadReLU(every=1)
    _fit(model, loader, [norms, dead], lr=0.0)
    assert dead.watched == ["3"] and dead.history["dead_relu/3"] == [0.5, 0.5]
    assert dead.history["relu_zeros/3"] == [0.5, 0.5]
    last = norms.history.records[-1]
    for i in (0, 2, 4):  # lr 0: the grads left after the last step are those of the last batch
        layer = model[i]
        expected = math.sqrt(sum(np.linalg.norm(host(p.grad)) ** 2 for p in (layer.weight, layer.bias)))
        assert last[f"grad_norm/{i}"] == pytest.approx(expected, rel=1e-12)
    total = math.sqrt(sum(last[f"grad_norm/{i}"] ** 2 for i in (0, 2, 4)))
    assert last["grad_norm_total"] == pytest.approx(total, rel=1e-12)


def test_every_records_one_step_in_every_and_counts_across_epochs():
    model = _mlp()
    _, _, loader = _data(n=24)  # 3 steps per epoch
    stats = ActivationStats(every=2, modules=["1", model[3]], histogram_bins=0)
    history = _fit(model, loader, [stats], epochs=2)
    assert stats.history["step"] == [0, 2, 4] and stats.history["epoch"] == [1, 1, 2]
    assert stats.watched == ["1", "3"] and stats.histograms == [{}, {}, {}]
    assert sorted(history.series("act_std")) == ["1", "3"]


def test_hooks_are_removed_after_fit_and_when_it_raises():
    model = _mlp()
    _, _, loader = _data()
    monitors = [ActivationStats(), DeadReLU()]
    _fit(model, loader, monitors)
    assert all(not m._forward_hooks for m in model.modules())

    class Boom(nn.CrossEntropyLoss):
        def backward(self):
            raise KeyboardInterrupt

    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyboardInterrupt):
        fit(model, loader, None, Boom(), opt, 1, callbacks=monitors, verbose=False, progress=False)
    assert all(not m._forward_hooks for m in model.modules())


def test_validation_forwards_are_not_recorded():
    model = _mlp()
    _, _, loader = _data()
    stats = ActivationStats(every=1)
    fit(model, loader, loader, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), 1, callbacks=[stats],
        verbose=False, progress=False)  # fmt: skip
    assert len(stats.history) == 2 and len(stats.histograms) == 2


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_series_and_checkpoint_state_round_trip(tmp_path, suffix):
    model = _mlp()
    _, _, loader = _data()
    stats, ratios = ActivationStats(histogram_bins=5), UpdateRatio()
    history = _fit(model, loader, [stats, ratios], epochs=2)
    history.save(tmp_path / f"h{suffix}")
    assert History.load(tmp_path / f"h{suffix}") == history
    stats.history.save(tmp_path / f"s{suffix}")
    assert History.load(tmp_path / f"s{suffix}") == stats.history
    minidl.save(stats.state_dict(), tmp_path / "state.npz")
    again = ActivationStats()
    again.load_state_dict(minidl.load(tmp_path / "state.npz"))
    assert again.step == 4 and again.history == stats.history
    for a, b in zip(again.histograms, stats.histograms, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name][0], b[name][0])
            np.testing.assert_array_equal(a[name][1], b[name][1])


def _deep_tanh(init_std):
    minidl.manual_seed(0)
    layers = []
    for _ in range(8):
        linear = nn.Linear(64, 64, bias=False)
        if init_std is None:
            nn.init.xavier_normal_(linear.weight)
        else:
            nn.init.normal_(linear.weight, std=init_std)
        layers += [linear, nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(64, 3))


@pytest.mark.parametrize("init_std", [0.01, None])
def test_the_init_demo_shows_in_the_activation_stats(init_std):
    model = _deep_tanh(init_std)
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.zeros(64, np.int64)), batch_size=64, device="current")
    stats = ActivationStats(modules=[str(2 * i + 1) for i in range(8)])
    _fit(model, loader, [stats], lr=0.0)
    stds = [stats.history.records[0][f"act_std/{2 * i + 1}"] for i in range(8)]
    if init_std == 0.01:  # each layer multiplies the std by about 0.01 * sqrt(64) = 0.08
        assert stds[-1] < 1e-6 and all(b < a for a, b in zip(stds, stds[1:], strict=False))
    else:  # Xavier keeps the std of order 0.1-1 through the depth
        assert all(0.1 < s < 1.0 for s in stds), stds


def test_a_fused_model_is_watched_through_its_fused_relus():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 2))  # fmt: skip
    x = np.random.default_rng(0).standard_normal((8, 1, 5, 5)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.arange(8) % 2), batch_size=4, device="current")
    dead = DeadReLU()
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), callbacks=[dead],
                      verbose=False, progress=False, fuse=True)  # fmt: skip
    trainer.fit(loader, epochs=1)
    assert dead.watched == ["1"] and type(model[1]).__name__ == "FoldedBatchNorm2d"
    assert len(dead.history) == 2


def test_bad_arguments_name_the_monitor():
    with pytest.raises(ValueError, match="ActivationStats: every must be >= 1"):
        ActivationStats(every=0)
    with pytest.raises(TypeError, match="DeadReLU: modules must be a list"):
        DeadReLU(modules="3")
    model = _mlp()
    _, _, loader = _data()
    with pytest.raises(ValueError, match="ActivationStats: the model has no module named 'nope'"):
        _fit(model, loader, [ActivationStats(modules=["nope"])])


def test_a_resumed_run_continues_the_monitor_series(tmp_path):
    _, _, loader = _data()  # 2 steps per epoch

    def run(epochs, resume):
        model, stats = _mlp(), ActivationStats(histogram_bins=3)
        trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), callbacks=[stats],
                          checkpoint_dir=tmp_path, verbose=False, progress=False, fuse=False)  # fmt: skip
        trainer.fit(loader, epochs=epochs, resume=resume)
        return stats, trainer

    first, _ = run(1, False)
    assert first.history["step"] == [0, 1]
    resumed, trainer = run(2, True)
    assert resumed.history["step"] == [0, 1, 2, 3] and resumed.history["epoch"] == [1, 1, 2, 2]
    assert len(resumed.histograms) == 4 and resumed.history.records[:2] == first.history.records
    assert "act_std/1" in trainer.history.records[0] and "act_std/1" in trainer.history.records[1]


def test_a_module_called_twice_per_forward_records_each_call():
    """One ReLU object used twice in the Sequential: its first call is recorded under ``1``, its second under
    ``1#2`` (nothing overwritten), in the order the forward ran them."""
    minidl.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(6, 8), relu, nn.Linear(8, 8), relu, nn.Linear(8, 3)).double()
    model[2].weight.data[...] = 0.0
    model[2].bias.data[...] = arr(np.r_[np.full(4, -1.0), np.full(4, 1.0)])  # the second call: half the units dead
    x, _, loader = _data()
    stats, dead = ActivationStats(every=1, histogram_bins=4), DeadReLU(every=1)
    history = _fit(model, loader, [stats, dead], lr=0.0)
    assert stats.watched == ["0", "1", "2", "4"] and dead.watched == ["1"]
    names = ["0", "1", "2", "1#2", "4"]
    for step, record in enumerate(stats.history):
        assert [k for k in record if k.startswith("act_mean/")] == [f"act_mean/{n}" for n in names]
        assert list(stats.histograms[step]) == names
        h = arr(x[8 * step : 8 * step + 8])
        for i, name in enumerate(names):
            h = model[i](h)
            out = host(h)
            assert record[f"act_mean/{name}"] == pytest.approx(out.mean(), rel=1e-12, abs=1e-15), name
            assert record[f"act_std/{name}"] == pytest.approx(out.std(), rel=1e-12, abs=1e-15), name
            assert stats.histograms[step][name][0].sum() == out.size
    assert dead.history["dead_relu/1#2"] == [0.5, 0.5] and dead.history["relu_zeros/1#2"] == [0.5, 0.5]
    assert dead.history["relu_zeros/1"] != dead.history["relu_zeros/1#2"]
    assert sorted(history.series("dead_relu")) == ["1", "1#2"]
    assert history["act_std/1#2"] == [pytest.approx(np.mean(stats.history["act_std/1#2"]), rel=1e-12)]


def test_a_module_listed_twice_is_watched_once():
    model = _mlp()
    _, _, loader = _data()
    stats = ActivationStats(modules=["3", model[3]], histogram_bins=0)
    _fit(model, loader, [stats])
    assert stats.watched == ["3"] and sorted(stats.history.series("act_std")) == ["3"]
