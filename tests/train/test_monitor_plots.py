"""The monitor plots: each writes a PNG from a monitor, a History or a saved history; empty input is refused."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import DataLoader, TensorDataset
from minidl.train import (
    ActivationStats,
    DeadReLU,
    GradientNorms,
    History,
    UpdateRatio,
    fit,
    plot_activation_stats,
    plot_dead_relu,
    plot_gradient_norms,
    plot_update_ratios,
)

pytest.importorskip("matplotlib", reason="the plots need the viz extra: pip install minidl[viz]")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def monitors():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).astype(np.int64)), batch_size=8, device="current")
    ms = [ActivationStats(), UpdateRatio(), DeadReLU(), GradientNorms()]
    history = fit(model, loader, None, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), 2,
                  callbacks=ms, verbose=False, progress=False)  # fmt: skip
    return ms, history


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def test_each_plot_writes_a_png(tmp_path, monitors):
    (stats, ratios, dead, norms), history = monitors
    assert _is_png(plot_activation_stats(stats, tmp_path / "a.png"))
    assert _is_png(plot_activation_stats(stats, tmp_path / "a_last.png", record=-1, title="last step"))
    assert _is_png(plot_update_ratios(ratios, tmp_path / "u.png"))
    assert _is_png(plot_update_ratios(history, tmp_path / "u_epochs.png"))  # the per-epoch means
    assert _is_png(plot_dead_relu(dead, tmp_path / "d.png"))
    dead.history.save(tmp_path / "dead.json")
    assert _is_png(plot_dead_relu(tmp_path / "dead.json", tmp_path / "d2.png"))
    assert _is_png(plot_gradient_norms(norms, tmp_path / "g.png"))


def test_missing_series_and_bad_arguments(tmp_path, monitors):
    (stats, ratios, _, _), _ = monitors
    with pytest.raises(ValueError, match="plot_update_ratios: the history is empty"):
        plot_update_ratios(History(), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"plot_dead_relu: the history has no dead_relu/\.\.\. or relu_zeros/\.\.\."):
        plot_dead_relu(ratios, tmp_path / "x.png")
    with pytest.raises(TypeError, match="plot_activation_stats: expected an ActivationStats monitor"):
        plot_activation_stats(ratios, tmp_path / "x.png")
    with pytest.raises(IndexError, match="plot_activation_stats: record 99 is out of range for 8 recorded steps"):
        plot_activation_stats(stats, tmp_path / "x.png", record=99)


def test_a_shared_relu_shows_once_per_call_in_forward_order(tmp_path, monkeypatch):
    import minidl.train.monitor_plots as monitor_plots

    minidl.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 8), relu, nn.Linear(8, 8), relu, nn.Linear(8, 2))
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).astype(np.int64)), batch_size=8, device="current")
    stats, dead = ActivationStats(histogram_bins=5), DeadReLU()
    fit(model, loader, None, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), 1,
        callbacks=[stats, dead], verbose=False, progress=False, fuse=False)  # fmt: skip
    figures = []
    write = monitor_plots._write
    monkeypatch.setattr(monitor_plots, "_write", lambda fig, path, dpi: figures.append(fig) or write(fig, path, dpi))
    assert _is_png(plot_activation_stats(stats, tmp_path / "a.png"))
    mean_axes, *hist_axes = [ax for ax in figures[0].axes if ax.get_title() != "" and "std" not in ax.get_title()]
    assert [t.get_text() for t in mean_axes.get_xticklabels()] == ["0", "1", "2", "1#2", "4"]
    assert [ax.get_title() for ax in hist_axes] == ["0", "1", "2", "1#2", "4"]
    assert _is_png(plot_dead_relu(dead, tmp_path / "d.png"))
    assert sorted(line.get_label() for line in figures[1].axes[0].get_lines()) == ["1", "1#2"]
