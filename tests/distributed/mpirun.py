"""Run a script of ``tests/distributed/scripts`` under ``mpiexec -n K`` and collect what each rank reports.

The scripts run as ``mpiexec -n K python -m mpi4py scripts/<name>.py ...`` (``-m mpi4py``: an uncaught exception on
one rank aborts the whole job instead of leaving the others waiting), one thread per process, with a wall-clock
limit: a hang fails the test instead of the CI job. Each rank reports by writing ``rank<r>.json`` into the folder
``MINIDL_TEST_RESULTS`` names (files, not stdout: the launcher may interleave the ranks' lines).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def mpiexec_or_skip() -> str:
    """The mpiexec beside this Python (the MPICH wheel of the 'dist' extra), or on PATH; skip when there is none."""
    pytest.importorskip(
        "mpi4py", reason='minidl.distributed needs the dist extra: pip install "minidl[dist]"', exc_type=ImportError
    )
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if found is None:
        pytest.skip('no mpiexec found (pip install "minidl[dist]" installs the MPICH wheel, which provides it)')
    return found


def run_mpi(script: str, ranks: int, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n ranks python -m mpi4py scripts/<script> args...``; fails the test if it runs over ``timeout``."""
    mpiexec = mpiexec_or_skip()
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        MINIDL_TEST_BACKEND=env.get("MINIDL_TEST_BACKEND", "numpy"),
        MINIDL_TEST_RESULTS=tempfile.mkdtemp(prefix="minidl-mpi-"),
    )  # fmt: skip
    launcher_options = os.environ.get("MINIDL_MPIEXEC_ARGS", "").split()  # e.g. -disable-auto-cleanup
    python = [sys.executable, "-m", "mpi4py", str(SCRIPTS / script), *args]
    command = [mpiexec, *launcher_options, "-n", str(ranks), *python]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        proc.results_dir = Path(env["MINIDL_TEST_RESULTS"])  # type: ignore[attr-defined]
        return proc
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(command)} ran over {timeout} s (a hang?)\nstdout:\n{err.stdout}\nstderr:\n{err.stderr}")


def results(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """What the ranks reported, sorted by rank; fails with the output if the run failed."""
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    files = sorted(proc.results_dir.glob("rank*.json"))  # type: ignore[attr-defined]
    found = [json.loads(path.read_text()) for path in files]
    shutil.rmtree(proc.results_dir)  # type: ignore[attr-defined]
    return sorted(found, key=lambda r: r["rank"])
