"""The targets of data-parallel training, run under ``mpiexec -n K`` (skipped where the 'dist' extra is absent).

* equivalence: 2 ranks x batch 64 reach the parameters of 1 process x batch 128 after 20 SGD steps, without
  BatchNorm and with SyncBatchNorm (parameters and running statistics); plain BatchNorm is the control that differs;
* the ring allreduce equals ``MPI.Allreduce`` for 1 to 4 ranks, odd sizes and four dtypes;
* reliability: a rank that dies or skips a collective ends the job with a clear error, never a hang;
* ``fit`` trains a DistributedDataParallel model, printing and writing files on rank 0 only.
"""

from __future__ import annotations

import pytest

from tests.distributed.mpirun import results, run_mpi
from tests.helpers import TEST_BACKEND

TIMEOUT_MESSAGE = "minidl.distributed: {op} on rank 0 waited 1 s for the other ranks (world size 2) and gave up"


# On the NumPy backend both runs compute with the same pairs: they agree to float32 rounding. On Numba the reference's
# BatchNorm2d runs Numba's kernel while SyncBatchNorm runs its own pair; the two round differently, and 20 SGD steps
# amplify that to ~3e-4, as much as the 1-process reference on NumPy and on Numba differ from each other.
TOLERANCE = {"plain": 1e-5, "bn": 1e-5 if TEST_BACKEND == "numpy" else 2e-3}


@pytest.fixture(scope="module")
def equivalence():
    """One mpiexec run trains the three variants (each against its own 1-process reference); per rank, per variant."""
    return results(run_mpi("equivalence.py", 2, "plain", "bn", "bn-unsynced"))


@pytest.mark.parametrize("model", ["plain", "bn"])
def test_two_ranks_of_batch_64_take_the_steps_of_one_process_of_batch_128(equivalence, model):
    assert [r["rank"] for r in equivalence] == [0, 1]
    ranks = [r[model] for r in equivalence]
    for rank, r in enumerate(ranks):
        assert r["keys"] == (16 if model == "bn" else 6)  # bn: the running statistics are compared too
        assert r["max_rel"] < TOLERANCE[model], f"rank {rank}: {r['worst_key']} differs by {r['max_abs']:.3g} ({r})"
        assert r["buckets"] == 3 and r["overlapped"] >= 1, r  # some allreduces started during the backward
    # the reference loss is the mean of the two ranks' half-batch losses (each rank sees its half)
    first = (ranks[0]["loss_first"] + ranks[1]["loss_first"]) / 2
    assert first == pytest.approx(ranks[0]["reference_loss_first"], rel=1e-5)
    assert ranks[0]["loss_last"] < ranks[0]["loss_first"]


def test_plain_batchnorm_under_ddp_differs_from_one_process_which_is_what_syncbatchnorm_fixes(equivalence):
    """The control: each rank normalizing with its own half-batch statistics gives another model."""
    for r in equivalence:
        assert r["bn-unsynced"]["max_rel"] > 1e-3, r


def test_the_ring_allreduce_equals_mpi_allreduce_for_1_to_4_ranks():
    reports = results(run_mpi("ring.py", 4))
    assert [r["rank"] for r in reports] == [0, 1, 2, 3]
    for r in reports:
        sizes = [int(P) for P in r["by_size"]]
        assert sizes == list(range(r["rank"] + 1, 5))  # rank k belongs to the groups of k + 1 .. 4 ranks
        for P, cases in r["by_size"].items():
            assert len(cases) == 20
            for case, (worst, scale) in cases.items():
                if case.startswith("int"):
                    assert worst == 0, (P, case, worst)
                else:  # the ring adds in another order: the last bits may differ
                    eps = 1.2e-7 if case.startswith("float32") else 2.3e-16
                    assert worst <= 4 * int(P) * scale * eps, (P, case, worst)


@pytest.mark.parametrize("op", ["all_reduce", "broadcast", "barrier", "ddp"])
def test_a_rank_that_skips_a_collective_makes_the_other_raise_a_clear_timeout_error(op):
    proc = run_mpi("timeout.py", 2, op, "1", timeout=60)
    assert proc.returncode != 0
    expected = TIMEOUT_MESSAGE.format(op="all_reduce" if op == "ddp" else op)
    assert f"RuntimeError: {expected}" in proc.stderr, proc.stderr
    assert "rank 0 was not stopped" not in proc.stdout


def test_killing_a_rank_mid_training_ends_the_job_through_the_launcher():
    proc = run_mpi("kill.py", 2, "30", timeout=60)
    assert proc.returncode != 0
    assert "finished all steps" not in proc.stdout
    assert "Killed (signal 9)" in proc.stdout + proc.stderr  # MPICH's mpiexec names the rank that died


def test_killing_a_rank_ends_the_job_where_the_launcher_leaves_the_others_running(monkeypatch):
    """With ``-disable-auto-cleanup`` mpiexec does not stop rank 0: MPICH's own failure detection or minidl's
    timeout (2 s here; then its RuntimeError is printed) must end it, and the job must not hang (run_mpi's limit)."""
    monkeypatch.setenv("MINIDL_MPIEXEC_ARGS", "-disable-auto-cleanup")
    proc = run_mpi("kill.py", 2, "2", timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "finished all steps" not in output
    if "RuntimeError" in output:  # (when MPI noticed the death first, rank 0 ended with MPI's error instead)
        assert "RuntimeError: minidl.distributed: all_reduce on rank 0 waited 2 s" in output, output


@pytest.mark.parametrize("variant", ["sync", "fused"])
def test_fit_trains_a_ddp_model_and_only_rank_0_prints_and_writes(tmp_path, variant):
    ranks = results(run_mpi("fit.py", 2, str(tmp_path), variant))
    assert ranks[0]["printed"] > 0 and ranks[1]["printed"] == 0
    for r in ranks:
        assert r["epochs"] == 2 and r["sampler_epoch"] == 1  # fit called set_epoch(0), then set_epoch(1)
        assert r["parameter_spread"] == 0.0  # the same model on every rank
        assert r["files"] == ["checkpoints/best.npz", "checkpoints/last.npz", "history.json"]
    if variant == "sync":
        assert ranks[0]["buffer_spread"] == 0.0  # SyncBatchNorm: the same running statistics everywhere
        assert "SyncBatchNorm" in ranks[0]["model"]
    else:
        assert "FoldedBatchNorm2d" in ranks[0]["model"]  # fit fused the model inside the wrapper


def test_ranks_that_pass_different_shapes_dtypes_or_models_get_a_clear_error_on_every_rank():
    reports = results(run_mpi("mismatch.py", 2, timeout=90))
    for rank, report in enumerate(reports):
        messages = report["messages"]
        shape = (3 + rank,)
        assert messages["all_reduce shape"] == (
            f"minidl.distributed.all_reduce: the ranks passed different shapes, dtypes or ops (rank {rank}: "
            f"({shape}, 'float32', 'sum')); every rank must pass the same"
        )
        assert (
            f"(rank {rank}: ((3,), '{'float32' if rank == 0 else 'float64'}', 'sum'))" in messages["all_reduce dtype"]
        )
        assert messages["broadcast shape"].startswith("minidl.distributed.broadcast: the ranks passed different")
        assert messages["ddp models"] == (
            f"DistributedDataParallel: the ranks hold different models (rank {rank}: 2 parameters and buffers: "
            f"weight ({2 + rank}, 3), bias ({2 + rank},)); every rank must build the same model"
        )
        assert report["after"] == [2.0, 2.0]
