"""``examples/train_cifar10.py --distributed`` under ``mpiexec -n 2`` on the embedded CIFAR-10 sample (skipped where
the 'dist' extra is absent), and alone, where it is a group of one.

The runs are one epoch on the NumPy backend (no JIT compilation to wait for); LeNet-5 keeps them to seconds, and the
``slow`` run trains cifar_cnn, whose BatchNorms become SyncBatchNorm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.mpirun import mpiexec_or_skip

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "examples" / "train_cifar10.py")


def launch(
    ranks: int | None, *args: str, cwd: Path, timeout: float = 300.0, script: str = SCRIPT
) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n ranks python -m mpi4py train_cifar10.py args`` (``ranks=None``: plain ``python``), one thread per
    process, with no CIFAR-10 to find (so the embedded sample)."""
    env = {k: v for k, v in os.environ.items() if k != "MINIDL_DATA_DIR"}
    env.update(
        OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", MINIDL_NUM_THREADS="1", MINIDL_DATA_DIR=str(cwd / "no-data-here"),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )  # fmt: skip
    python = [sys.executable, "-m", "mpi4py", script, *args] if ranks else [sys.executable, script, *args]
    command = [mpiexec_or_skip(), "-n", str(ranks), *python] if ranks else python
    try:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(command)} ran over {timeout} s (a hang?)\nstdout:\n{err.stdout}\nstderr:\n{err.stderr}")


def check_run(proc: subprocess.CompletedProcess[str], out: Path, world_size: int) -> dict:
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    # rank 0 alone prints: each line once
    assert proc.stdout.count("data: the embedded CIFAR-10 sample") == 1, proc.stdout
    assert proc.stdout.count("final test accuracy") == 1, proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert (results["world_size"], results["global_batch"]) == (world_size, 128)
    # the final accuracy, from the sharded evaluation, is the last epoch's val_accuracy of the whole test set
    history = json.loads((out / "history.json").read_text())
    records = history["records"] if isinstance(history, dict) else history
    assert results["test_accuracy"] == pytest.approx(records[-1]["val_accuracy"], abs=1e-9)
    assert (out / "checkpoints" / "last.npz").is_file() and (out / "history.csv").is_file()
    return results


def test_two_processes_share_the_global_batch_and_rank_0_writes(tmp_path):
    proc = launch(2, "--quick", "--distributed", "--model", "lenet5", "--epochs", "1", "--backend", "numpy",
                  "--out", "run", cwd=tmp_path)  # fmt: skip
    check_run(proc, tmp_path / "run", 2)
    assert "batch 128 = 2 x 64 per process, sgd, peak lr" in proc.stdout  # LeNet-5 has no BatchNorm to synchronize


def test_without_mpiexec_distributed_is_a_group_of_one(tmp_path):
    proc = launch(None, "--quick", "--distributed", "--model", "lenet5", "--epochs", "1", "--backend", "numpy",
                  "--out", "run", cwd=tmp_path)  # fmt: skip
    check_run(proc, tmp_path / "run", 1)
    assert "batch 128 = 1 x 128 per process" in proc.stdout


def test_a_global_batch_that_does_not_divide_stops_every_rank_with_one_message(tmp_path):
    proc = launch(2, "--distributed", "--batch-size", "127", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    message = (
        "--batch-size 127 is the global batch and must be divisible by the 2 processes (each takes batch-size / 2 "
        "images per step); try --batch-size 126"
    )
    assert proc.stderr.count(message) == 1, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_sync_bn_needs_distributed(tmp_path):
    proc = launch(None, "--no-sync-bn", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "--sync-bn and --no-sync-bn go with --distributed" in proc.stderr


@pytest.mark.slow
def test_quick_distributed_cifar_cnn_with_syncbatchnorm(tmp_path):
    proc = launch(2, "--quick", "--distributed", "--epochs", "1", "--backend", "numpy", "--out", "run", cwd=tmp_path)
    check_run(proc, tmp_path / "run", 2)
    assert "batch 128 = 2 x 64 per process, SyncBatchNorm" in proc.stdout


def test_the_speedrun_trains_on_two_processes_and_rank_0_reports(tmp_path):
    """``speedrun_cifar10.py --distributed``: the same global batches sliced over 2 processes (DDP, SyncBatchNorm);
    rank 0 alone prints and writes, and the run takes as many steps as on one process."""
    speedrun = str(ROOT / "examples" / "speedrun_cifar10.py")
    args = ("--quick", "--epochs", "1", "--tta", "0", "--backend", "numpy")
    one = launch(None, *args, "--out", "one", cwd=tmp_path, script=speedrun)
    two = launch(2, *args, "--distributed", "--out", "two", cwd=tmp_path, script=speedrun)
    for proc in (one, two):
        assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert proc.stdout.count("RESULT ") == 1, proc.stdout
    runs = [json.loads((tmp_path / name / "results.json").read_text())["runs"][0] for name in ("one", "two")]
    assert [r["processes"] for r in runs] == [1, 2]
    assert runs[0]["steps"] == runs[1]["steps"] and runs[0]["batch_size"] == runs[1]["batch_size"] == 64
    assert 0.0 <= runs[1]["test_accuracy"] <= 1.0
