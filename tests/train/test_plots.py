"""Plots: each renders a PNG atomically; the ImportError without matplotlib names the extra; bad input."""

from __future__ import annotations

import builtins
import os

import numpy as np
import pytest

from minidl.train import History, confusion_matrix, plot_confusion_matrix, plot_history, plot_misclassified

pytest.importorskip("matplotlib", reason="the plots need the viz extra: pip install minidl[viz]")

PNG = b"\x89PNG\r\n\x1a\n"


def _overfitting_history():
    h = History()
    for e in range(1, 13):
        h.append(
            {
                "epoch": e,
                "train_loss": 2.0 / e,
                "val_loss": 2.0 / e + 0.02 * (e - 5) ** 2,
                "train_accuracy": 1 - 0.6 / e,
                "val_accuracy": 0.75 - 0.004 * (e - 6) ** 2,
                "lr": 0.1,
            }
        )
    return h


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def test_plot_history(tmp_path):
    h = _overfitting_history()
    out = plot_history(h, tmp_path / "curves.png", title="overfitting")
    assert out == tmp_path / "curves.png" and _is_png(out)
    h.save(tmp_path / "h.json")
    assert _is_png(plot_history(tmp_path / "h.json", tmp_path / "from_file.png"))
    assert _is_png(plot_history(h.records, tmp_path / "from_list.png"))
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "from_file.png", "from_list.png", "h.json"]  # no temp files
    with pytest.raises(ValueError, match="plot_history: the history is empty"):
        plot_history(History(), tmp_path / "x.png")
    with pytest.raises(ValueError, match="no train_\\*/val_\\* metrics"):
        plot_history([{"epoch": 1, "lr": 0.1}], tmp_path / "x.png")


def test_plot_confusion_matrix(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 10, 300)
    preds = np.where(rng.random(300) < 0.7, targets, rng.integers(0, 10, 300))
    cm = confusion_matrix(preds, targets, 10)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert _is_png(plot_confusion_matrix(cm, names, tmp_path / "cm.png"))
    assert _is_png(plot_confusion_matrix(cm, None, tmp_path / "cm_norm.png", normalize=True))
    with pytest.raises(ValueError, match="3 class names for a 10x10 matrix"):
        plot_confusion_matrix(cm, names[:3], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"cm must be square \(C, C\), got shape \(2, 3\)"):
        plot_confusion_matrix(np.zeros((2, 3)), None, tmp_path / "x.png")


def test_plot_misclassified(tmp_path):
    from minidl.data.sample import load_cifar10_sample

    x, y, _, _, names = load_cifar10_sample()
    x, y = x[:60], y[:60]
    preds = np.where(np.arange(60) % 3 == 0, (y + 1) % 10, y)  # every third image wrong: 20 mistakes
    mean, std = np.array([0.49, 0.48, 0.45]), np.array([0.25, 0.24, 0.26])
    chw = ((x.transpose(0, 3, 1, 2) / 255.0 - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
    assert _is_png(plot_misclassified(chw, preds, y, names, tmp_path / "wrong.png", n=12, mean=mean, std=std))
    assert _is_png(plot_misclassified(x, np.eye(10)[preds], y, None, tmp_path / "wrong_u8.png"))  # HWC uint8, scores
    assert _is_png(plot_misclassified(chw[:, :1], y, y, names, tmp_path / "none.png"))  # grey, nothing wrong
    with pytest.raises(ValueError, match="60 images, 59 predictions and 60 targets"):
        plot_misclassified(chw, preds[:59], y, names, tmp_path / "x.png")


def test_missing_matplotlib_message(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"plot_history needs matplotlib: pip install minidl\[viz\]"):
        plot_history(_overfitting_history(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
