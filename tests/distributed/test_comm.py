"""The process group and its collectives, in one process (world size 1), and their errors."""

from __future__ import annotations

import datetime
import subprocess
import sys

import numpy as np
import pytest

from minidl import distributed as dist
from tests.distributed.mpirun import ROOT

NOT_INITIALIZED = (
    "minidl.distributed.all_reduce: the process group is not initialized; call "
    "minidl.distributed.init_process_group() first (under mpiexec)"
)


def test_import_minidl_never_imports_mpi4py():
    code = "import sys, minidl, minidl.train, minidl.nn; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_without_mpi4py_the_import_error_says_what_to_install():
    code = "import sys; sys.modules['mpi4py'] = None; import minidl.distributed"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0
    assert 'ImportError: minidl.distributed needs mpi4py and an MPI library: pip install "minidl[dist]"' in out.stderr


def test_a_collective_before_init_process_group_says_so():
    assert not dist.is_initialized() and dist.is_main_process()
    with pytest.raises(RuntimeError) as err:
        dist.all_reduce(np.ones(2))
    assert str(err.value) == NOT_INITIALIZED
    with pytest.raises(RuntimeError, match="get_rank: the process group is not initialized"):
        dist.get_rank()


def test_alone_the_group_has_one_rank_and_the_collectives_return_the_array(group):
    assert (group.get_rank(), group.get_world_size()) == (0, 1)
    assert group.is_initialized() and group.is_main_process()
    a = np.array([1.0, -2.0, 3.0], np.float32)
    for op in ("sum", "avg", "max", "min", "product"):
        assert group.all_reduce(a, op=op) is a
        np.testing.assert_array_equal(a, [1.0, -2.0, 3.0])
    b = np.arange(6, dtype=np.int64).reshape(2, 3)
    work = group.all_reduce(b, async_op=True)
    assert isinstance(work, group.Work) and work.wait() and work.is_completed()
    assert group.broadcast(b, src=0) is b
    group.barrier()
    np.testing.assert_array_equal(b, np.arange(6).reshape(2, 3))


def test_bad_arguments_get_clear_errors(group):
    with pytest.raises(
        ValueError, match=r"all_reduce: op must be one of \['avg', 'max', 'min', 'product', 'sum'\], got 'mean'"
    ):
        group.all_reduce(np.ones(2), op="mean")
    with pytest.raises(
        TypeError, match="all_reduce: expected an array of dtype float32, float64, int32, int64; got dtype float16"
    ):
        group.all_reduce(np.ones(2, np.float16))
    with pytest.raises(ValueError, match=r"all_reduce: expected a C-contiguous array .* shape \(3,\)"):
        group.all_reduce(np.ones((3, 2))[:, 0])
    readonly = np.ones(2)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="all_reduce: the array is read-only"):
        group.all_reduce(readonly)
    with pytest.raises(TypeError, match="all_reduce: expected a NumPy or CuPy array .* got list"):
        group.all_reduce([1.0, 2.0])
    with pytest.raises(TypeError, match="op 'avg' needs a float array, got dtype int32"):
        group.all_reduce(np.ones(2, np.int32), op="avg")
    with pytest.raises(ValueError, match=r"broadcast: src must be a rank in 0..0 \(world size 1\), got 1"):
        group.broadcast(np.ones(2), src=1)
    with pytest.raises(RuntimeError, match=r"already initialized \(rank 0 of 1\)"):
        group.init_process_group()


def test_init_process_group_checks_its_arguments():
    with pytest.raises(ValueError, match="backend must be 'mpi' or 'nccl', got 'gloo'"):
        dist.init_process_group("gloo")
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds or a timedelta, got -1"):
        dist.init_process_group(timeout=-1)
    assert not dist.is_initialized()
    dist.init_process_group(timeout=datetime.timedelta(seconds=5))
    try:
        assert dist._comm._group.timeout == 5.0
    finally:
        dist.destroy_process_group()


def test_the_ring_allreduce_alone_returns_the_array_and_refuses_what_it_cannot_write(group):
    a = np.arange(7.0)
    assert group.ring_all_reduce(a) is a
    np.testing.assert_array_equal(a, np.arange(7.0))
    with pytest.raises(TypeError, match="ring_all_reduce: expected a writeable C-contiguous NumPy array"):
        group.ring_all_reduce(np.ones((3, 2))[:, 0])


def test_save_on_main_writes_and_print_on_main_prints_alone(tmp_path, capsys, group):
    group.save_on_main({"w": np.ones(2, np.float32)}, tmp_path / "w.npz")
    assert (tmp_path / "w.npz").is_file()
    group.print_on_main("hello")
    assert capsys.readouterr().out == "hello\n"


def test_the_nccl_backend_needs_cupy_and_says_so():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="backend='nccl' needs CuPy with NCCL"):
            dist.init_process_group("nccl")
        assert not dist.is_initialized()
    else:  # pragma: no cover - unverified: no GPU was available
        pytest.skip("CuPy is installed: the NCCL path needs a GPU test under mpiexec")


def test_a_cupy_array_goes_through_the_host_once_each_way(group, monkeypatch):
    """On the CPU stand-in for CuPy (tests/gpu/fake_cupy.py): one download before the reduction, one upload after,
    and the array stays a device array. The real GPU paths (CUDA-aware MPI, NCCL) are unverified: no GPU was
    available."""
    from tests.gpu.fake_cupy import make_fake_cupy

    cupy = make_fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    a = cupy.asarray(np.array([1.0, 2.0], np.float32))
    uploads = len(cupy.uploads)
    assert group.all_reduce(a, op="avg") is a
    assert type(a) is cupy.ndarray and a.get().tolist() == [1.0, 2.0]
    assert len(cupy.syncs) == 2 and len(cupy.uploads) == uploads + 1  # (a.get() above is the second sync)
    group.broadcast(a, src=0)
    assert len(cupy.uploads) == uploads + 2
