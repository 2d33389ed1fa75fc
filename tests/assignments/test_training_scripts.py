"""The assignments' training scripts run as a student starts them (``python train_cnn.py ...`` in the folder),
on a few hundred images; the full runs and their stated accuracies are in each README.

CIFAR-10 comes from ``$MINIDL_DATA_DIR`` or ``../shared/data`` (the scripts fall back to minidl's embedded sample
without it); the dogs-vs-cats run needs the real images and skips without them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MINIDL_DATA_DIR", REPOSITORY.parent / "shared" / "data"))


def run(assignment: str, script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=REPOSITORY / "assignments" / assignment, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def final_accuracy(output: str) -> float:
    match = re.search(r"final (?:test|validation) accuracy (\d\.\d+)", output)
    assert match, output
    return float(match.group(1))


def test_a1_trains_the_two_layer_net():
    out = run("a1_backprop", "train_two_layer.py", "--data-dir", str(SHARED), "--train-images", "600",
              "--test-images", "200", "--epochs", "2")  # fmt: skip
    assert "data: " in out and 0.0 <= final_accuracy(out) <= 1.0


@pytest.mark.slow
def test_a2_trains_the_cnn():
    out = run("a2_cnn", "train_cnn.py", "--data-dir", str(SHARED), "--train-images", "256", "--test-images", "100",
              "--epochs", "1")  # fmt: skip
    assert "epoch 1: test accuracy" in out and 0.0 <= final_accuracy(out) <= 1.0


@pytest.mark.slow
def test_a2_trains_the_cnn_on_the_student_layers():
    out = run("a2_cnn", "train_cnn.py", "--data-dir", str(SHARED), "--train-images", "64", "--test-images", "50",
              "--epochs", "1", "--my-layers")  # fmt: skip
    assert "backend: numpy" in out and 0.0 <= final_accuracy(out) <= 1.0


@pytest.mark.slow
def test_a3_searches_and_fine_tunes_on_dogs_vs_cats():
    if not (SHARED / "dogs-vs-cats").exists():
        pytest.skip(f"the dogs-vs-cats images are not under {SHARED}")
    out = run("a3_training_craft", "train_transfer.py", "--data-dir", str(SHARED / "dogs-vs-cats"), "--search", "2",
              "--train-images", "200", "--val-images", "100", "--epochs", "2")  # fmt: skip
    assert out.count("trial {") == 2 and 0.0 <= final_accuracy(out) <= 1.0
