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
