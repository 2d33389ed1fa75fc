"""Smoke runs of every example script on tiny data: they run end to end, write their outputs, and the loss falls.

Each script runs in a subprocess exactly as a user starts it (``python examples/<script>.py ...``). The dogs-vs-cats
and MNIST runs need the real data (``$MINIDL_DATA_DIR`` or ``../shared/data``) and skip without it.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from minidl import models

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MINIDL_DATA_DIR", ROOT.parent / "shared" / "data"))


def run(script: str, *args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MINIDL_DATA_DIR"}
    env["MINIDL_DATA_DIR"] = str(cwd / "no-data-here")  # only what the test passes with --data-dir is found
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def losses(history_json: Path) -> list[float]:
    records = json.loads(history_json.read_text())
    records = records["records"] if isinstance(records, dict) else records
    return [r["train_loss"] for r in records]


def needs(*parts: str) -> None:
    if not SHARED.joinpath(*parts).exists():
        pytest.skip(f"real data not found under {SHARED}")


def test_train_cifar10_on_the_embedded_sample(tmp_path):
    out = run("train_cifar10.py", "--epochs", "3", "--batch-size", "64", "--out", "run", cwd=tmp_path)
    assert "embedded CIFAR-10 sample" in out and "final test accuracy" in out
    loss = losses(tmp_path / "run" / "history.json")
    assert loss[-1] < loss[0], loss
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "last.npz").is_file()


def test_train_cifar10_lenet5_takes_colour_images(tmp_path):
    out = run(
        "train_cifar10.py", "--model", "lenet5", "--epochs", "1", "--batch-size", "256", "--out", "run", cwd=tmp_path
    )
    assert "model: lenet5, 62,006 parameters" in out and "final test accuracy" in out  # conv1: 3 * 6 * 25 weights
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_cifar10.py"), "--model", "lenet6"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "--model: unknown model 'lenet6'; choose one of airbench94, alexnet," in proc.stderr
    assert all(f" {name}," in proc.stderr for name in ("cifar_cnn", "lenet5", "resnet20"))


def test_train_cifar10_resumes(tmp_path):
    run("train_cifar10.py", "--epochs", "2", "--batch-size", "256", "--out", "run", cwd=tmp_path)
    out = run("train_cifar10.py", "--epochs", "3", "--batch-size", "256", "--out", "run", "--resume", cwd=tmp_path)
    assert "epoch 3" in out and "epoch 1 " not in out


def test_mnist_mlp(tmp_path):
    needs("mnist", "train-images-idx3-ubyte.gz")
    out = run(
        "mnist_mlp.py", "--data-dir", str(SHARED), "--limit", "3000", "--epochs", "3", "--out", "run", cwd=tmp_path
    )
    loss = losses(tmp_path / "run" / "history.json")
    assert loss[-1] < loss[0], out
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test_accuracy"] > 0.5
    more = run("mnist_mlp.py", "--data-dir", str(SHARED), "--limit", "3000", "--epochs", "4", "--out", "run",
               "--resume", cwd=tmp_path)  # fmt: skip
    assert "resumed from" in more and "epoch 4/4" in more and "epoch 1/4" not in more
    # a 3-epoch cosine resumed with --epochs 4 keeps the checkpoint's schedule, and says so
    assert "warning: --resume: " in more and "follows another learning-rate schedule" in more


def test_train_dogs_vs_cats(tmp_path):
    needs("dogs-vs-cats")
    run(
        "train_dogs_vs_cats.py",
        "--data-dir",
        str(SHARED),
        "--limit",
        "64",
        "--epochs",
        "6",
        "--image-size",
        "32",
        "--width",
        "16",
        "--out",
        "run",
        cwd=tmp_path,
    )
    loss = losses(tmp_path / "run" / "history.json")
    assert loss[-1] < loss[0], loss
    assert set(json.loads((tmp_path / "run" / "results.json").read_text())) >= {"val_accuracy", "val_accuracy_flip_tta"}


def test_transfer_learning(tmp_path):
    """A backbone without shipped weights (resnet32): pretrained on CIFAR-10 here first."""
    needs("dogs-vs-cats")
    args = ["--data-dir", str(SHARED), "--model", "resnet32", "--limit", "64", "--pretrain-epochs", "1",
            "--epochs", "4", "--head-epochs", "1", "--image-size", "32", "--out", "run"]  # fmt: skip
    out = run("transfer_learning.py", *args, cwd=tmp_path)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["dogs_vs_cats_val_accuracy"]) == {"transfer", "scratch"}
    assert "transfer" in out and "scratch" in out
    loss = losses(tmp_path / "run" / "transfer" / "history.json")  # the fine-tuning phase after the head phase
    assert loss[-1] < loss[0], loss
    resumed = run("transfer_learning.py", *args, "--resume", cwd=tmp_path)  # every phase already finished
    assert "resumed from" in resumed and "epoch 1 " not in resumed


def test_transfer_learning_refuses_cifar_cnn_at_another_size(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "transfer_learning.py"), "--model", "cifar_cnn", "--image-size", "64"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "--model cifar_cnn takes 32x32 images only" in proc.stderr
    assert "got --image-size 64" in proc.stderr


def test_transfer_learning_from_the_shipped_airbench94_weights(tmp_path):
    """The default backbone: the shipped weights, a global last pool, frozen-by-design parameters kept frozen."""
    needs("dogs-vs-cats")
    args = ["--data-dir", str(SHARED), "--limit", "64", "--epochs", "2", "--head-epochs", "1", "--image-size", "40",
            "--out", "run"]  # fmt: skip
    out = run("transfer_learning.py", *args, cwd=tmp_path)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"] == "airbench94" and results["pretrained"] == "Airbench94_Weights.CIFAR10"
    shipped = models.Airbench94_Weights.CIFAR10.meta["metrics"]["cifar10_test"]["acc@1"]
    assert results["cifar10_test_accuracy"] == shipped
    assert "with its shipped weights Airbench94_Weights.CIFAR10" in out
    assert set(results["dogs_vs_cats_val_accuracy"]) == {"transfer", "scratch"}


def _speedrun_result(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, out
    return json.loads(lines[0][len("RESULT ") :])


def test_speedrun_smoke_on_the_embedded_sample(tmp_path):
    """One short epoch of the airbench recipe (small widths): every output is written, TTA is reported."""
    out = run("speedrun_cifar10.py", "--quick", "--epochs", "1", "--batch-size", "256", "--out", "run", cwd=tmp_path)
    assert "embedded CIFAR-10 sample" in out and "with TTA level 2" in out
    result = _speedrun_result(out)
    assert result["steps"] == 2000 // 256 and result["widths"] == [16, 32, 32]
    assert 0.0 <= result["test_accuracy"] <= 1.0 and 0.0 <= result["test_accuracy_tta"] <= 1.0
    for name in ("history-run0.json", "history-run0.csv", "model-run0.npz", "results.json"):
        assert (tmp_path / "run" / name).is_file(), name
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["mean_test_accuracy_tta"] == result["test_accuracy_tta"]


@pytest.mark.slow
def test_speedrun_quick(tmp_path):
    """The CI run: a few hundred steps; the loss falls and the network learns (chance is 10 %)."""
    out = run("speedrun_cifar10.py", "--quick", "--out", "run", cwd=tmp_path)
    result = _speedrun_result(out)
    assert result["steps"] == 248
    loss = losses(tmp_path / "run" / "history-run0.json")
    assert loss[-1] < loss[0] - 0.2, loss
    assert result["test_accuracy_tta"] > 0.3, result


def test_speedrun_rejects_bad_flags(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "speedrun_cifar10.py"), "--runs", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "--runs must be at least 1, got 0" in proc.stderr
    text = run("speedrun_cifar10.py", "--help", cwd=tmp_path)
    for flag in ("--backend", "--data-dir", "--epochs", "--batch-size", "--seed", "--runs", "--widths", "--tta"):
        assert flag in text, f"speedrun_cifar10.py --help lacks {flag}"


@pytest.mark.parametrize(
    "script", ["train_cifar10.py", "mnist_mlp.py", "train_dogs_vs_cats.py", "transfer_learning.py"]
)
def test_help_documents_the_common_flags(script, tmp_path):
    text = run(script, "--help", cwd=tmp_path)
    for flag in ("--backend", "--data-dir", "--epochs", "--batch-size", "--lr", "--seed", "--resume", "--out"):
        assert flag in text, f"{script} --help lacks {flag}"


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


@pytest.mark.parametrize(
    "script",
    ["train_cifar10.py", "mnist_mlp.py", "train_dogs_vs_cats.py", "transfer_learning.py", "speedrun_cifar10.py"],
)
def test_every_option_has_help_and_help_shows_its_default(script, monkeypatch):
    def stop(parser, *args, **kwargs):  # the script's parser, caught where it would read the command line
        raise _Parsed(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # as when the script runs: its folder holds _cli.py
    with pytest.raises(_Parsed) as parsed:
        runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    parser = parsed.value.parser
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), script
    formatter = parser._get_formatter()
    for action in parser._actions:
        assert action.help and action.help.strip(), f"{script}: {action.option_strings} has no help text"
        if action.default is not None and action.default is not False and action.default != argparse.SUPPRESS:
            assert "%(default)" in formatter._get_help_string(action), f"{script}: {action.option_strings}"
    assert "(default: " in parser.format_help()


def test_train_cifar10_takes_adamw(tmp_path):
    """``--optimizer adamw`` (ViT, ConvNeXt): the run names it and uses AdamW's default peak lr 1e-3."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_cifar10.py"), "--quick", "--model", "lenet5", "--epochs", "1",
         "--optimizer", "adamw", "--backend", "numpy", "--out", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert ", adamw, peak lr 0.001" in proc.stdout


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("train_cifar10.py", ["--epochs", "0"], "argument --epochs: expected an int >= 1, got 0"),  # (it trained 15)
        ("train_cifar10.py", ["--data-dir", "/nonexistent", "--epochs", "1"], "--data-dir /nonexistent: "),
        ("train_cifar10.py", ["--model", "vit_b_16"], "--model vit_b_16 cannot take CIFAR-10's 32 x 32 images"),
        ("speedrun_cifar10.py", ["--data-dir", "/nonexistent"], "--data-dir /nonexistent: "),
        ("mnist_mlp.py", ["--limit", "0"], "argument --limit: expected an int >= 1, got 0"),
        ("train_dogs_vs_cats.py", ["--limit", "16"], "--limit (16) must be at least --batch-size (32)"),
        ("transfer_learning.py", ["--epochs", "2", "--head-epochs", "5"], "--head-epochs (5) must be less than"),
    ],
)
def test_bad_options_are_refused_before_any_training(script, args, message, tmp_path):
    # (a wrong --data-dir trained on the embedded sample; the others ended in tracebacks, or trained what was not asked)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args], cwd=tmp_path, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


def test_train_cifar10_says_when_a_resume_keeps_another_schedule(tmp_path):
    # the checkpoint's schedule wins (as in PyTorch): extending a 1-epoch run to 2 runs on the old cosine's end
    run("train_cifar10.py", "--quick", "--epochs", "1", "--out", "r", cwd=tmp_path)
    out = run("train_cifar10.py", "--quick", "--epochs", "2", "--out", "r", "--resume", cwd=tmp_path)
    assert "warning: --resume: " in out and "follows another learning-rate schedule" in out and "epoch 2" in out
