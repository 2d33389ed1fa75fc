"""The process group: who am I (rank), how many are we (world size), and the collectives, on MPI.

``mpiexec -n P python train.py`` starts P copies of the same script. Each copy calls :func:`init_process_group`,
which asks MPI (``MPI.COMM_WORLD``) for its rank (0 .. P-1) and the world size P. From then on the copies talk only
through *collectives*, calls that every rank makes in the same order: :func:`all_reduce` (every rank ends with the
sum of everyone's array), :func:`broadcast` (everyone gets rank ``src``'s array) and :func:`barrier`.

**No rank waits forever.** A collective completes only when every rank has called it; a rank that died, hangs or took
another branch would leave the others blocked forever inside MPI. So each collective here starts MPI's non-blocking
version (``Iallreduce``, ``Ibcast``, ``Ibarrier``) and waits by polling ``Request.Test`` against a deadline, the
``timeout`` of :func:`init_process_group` (30 minutes by default, as PyTorch's). When it passes, the waiting rank
raises a ``RuntimeError`` that names the collective, the rank, the world size and the timeout. MPI cannot cancel a
collective that has started, so a process group that timed out also aborts the MPI job when its process exits
(``MPI.COMM_WORLD.Abort``): a plain ``MPI_Finalize`` could wait for the missing rank forever.

Arrays are reduced in place and must be C-contiguous, of dtype float32, float64, int32 or int64. CuPy arrays go
through the host unless ``init_process_group(cuda_aware=True)`` (a CUDA-aware MPI reads device memory), or through
NCCL with ``backend="nccl"`` (:mod:`minidl.distributed._nccl`); both are unverified: no GPU was available.

This is the only file of minidl that imports mpi4py (``import minidl`` never does), and importing it does not start
MPI: :func:`init_process_group` does.
"""

from __future__ import annotations

import atexit
import datetime
import numbers
import sys
import time
import zlib
from typing import Any

import numpy as np

from minidl.backend import is_cupy_array

try:
    import mpi4py

    if "mpi4py.MPI" not in sys.modules:  # (else someone started MPI already, as ``python -m mpi4py`` does)
        mpi4py.rc.initialize = False  # importing starts nothing: MPI starts in init_process_group
        mpi4py.rc.finalize = True  # and, once started, is finalized at exit
    from mpi4py import MPI
except ImportError as err:  # pragma: no cover - the 'dist' extra is installed wherever the tests run
    raise ImportError(
        'minidl.distributed needs mpi4py and an MPI library: pip install "minidl[dist]" (mpi4py and the MPICH '
        f"wheel, which provides mpiexec), or use your cluster's MPI with pip install mpi4py ({err})"
    ) from err

__all__ = [
    "ReduceOp",
    "Work",
    "all_reduce",
    "barrier",
    "broadcast",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_initialized",
    "is_main_process",
]

#: PyTorch's default process-group timeout
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


class ReduceOp:
    """The reductions of :func:`all_reduce`, by PyTorch's names (plain strings: ``op="sum"`` works as well)."""

    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"  # the sum divided by the world size (float arrays only)


_MPI_OPS = {"sum": MPI.SUM, "product": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX, "avg": MPI.SUM}


class _ProcessGroup:
    """What :func:`init_process_group` sets up: the communicator, this rank, the world size, the timeout."""

    def __init__(self, backend: str, comm: Any, timeout: float, cuda_aware: bool) -> None:
        self.backend = backend
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        self.cuda_aware = cuda_aware
        self.nccl: Any = None  # the NCCL communicator when backend == "nccl"
        self.timed_out = False


_group: _ProcessGroup | None = None


def _abort_if_timed_out() -> None:
    """At exit: abort the MPI job if a collective timed out (a pending collective would hang MPI_Finalize)."""
    if _group is not None and _group.timed_out:
        sys.stderr.flush()
        _group.comm.Abort(1)


atexit.register(_abort_if_timed_out)


def _seconds(where: str, timeout: Any) -> float:
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
        raise ValueError(f"{where}: timeout must be a positive number of seconds or a timedelta, got {timeout!r}")
    return float(timeout)


def init_process_group(
    backend: str = "mpi", timeout: datetime.timedelta | float = DEFAULT_TIMEOUT, *, cuda_aware: bool = False
) -> None:
    """Join the process group of this MPI job: rank and world size come from ``MPI.COMM_WORLD``.

    Call it once per process, before any other call of :mod:`minidl.distributed`. Run without ``mpiexec``, the
    process is a group of one (rank 0, world size 1), so the same script runs on a laptop.

    Args:
        backend: ``"mpi"`` (every array type; CuPy arrays through the host unless ``cuda_aware``) or ``"nccl"``
            (CuPy arrays through NCCL, :mod:`minidl.distributed._nccl`; unverified: no GPU was available).
            Default: "mpi".
        timeout: how long a collective waits for the other ranks before raising a ``RuntimeError``, as a
            ``datetime.timedelta`` or seconds. Default: 30 minutes.
        cuda_aware: (keyword only) the MPI library reads GPU memory (a CUDA-aware build), so CuPy arrays are passed
            to MPI as they are (unverified: no GPU was available). Default: False.

    Raises:
        RuntimeError: the group is already initialized. ValueError: an unknown backend or a bad timeout.
    """
    global _group
    where = "init_process_group"
    if _group is not None:
        raise RuntimeError(
            f"minidl.distributed.{where}: the process group is already initialized (rank {_group.rank} of "
            f"{_group.size}); call destroy_process_group() first to start another"
        )
    if backend not in ("mpi", "nccl"):
        raise ValueError(f"minidl.distributed.{where}: backend must be 'mpi' or 'nccl', got {backend!r}")
    seconds = _seconds(f"minidl.distributed.{where}", timeout)
    if not MPI.Is_initialized():
        MPI.Init_thread()
    group = _ProcessGroup(backend, MPI.COMM_WORLD.Dup(), seconds, bool(cuda_aware))
    if backend == "nccl":
        from minidl.distributed import _nccl

        try:
            group.nccl = _nccl.create_communicator(group.comm)
        except BaseException:
            group.comm.Free()
            raise
    _group = group


def destroy_process_group() -> None:
    """Leave the process group (frees its communicator); :func:`init_process_group` may be called again."""
    global _group
    if _group is None:
        return
    group, _group = _group, None
    if group.nccl is not None:
        group.nccl.destroy()
    if not group.timed_out:  # a communicator with a pending collective cannot be freed
        group.comm.Free()


def is_initialized() -> bool:
    """True between :func:`init_process_group` and :func:`destroy_process_group`."""
    return _group is not None


def _require(where: str) -> _ProcessGroup:
    if _group is None:
        raise RuntimeError(
            f"minidl.distributed.{where}: the process group is not initialized; call "
            "minidl.distributed.init_process_group() first (under mpiexec)"
        )
    return _group


def get_rank() -> int:
    """This process's rank, 0 .. world size - 1."""
    return _require("get_rank").rank


def get_world_size() -> int:
    """The number of processes in the group."""
    return _require("get_world_size").size


def is_main_process() -> bool:
    """True on rank 0, and in a process that never called :func:`init_process_group` (a plain single run)."""
    return _group is None or _group.rank == 0


class Work:
    """A collective in flight, as PyTorch's ``Work``: :meth:`wait` until it completes (or the timeout passes).

    ``after`` runs once it has completed (e.g. the division of ``ReduceOp.AVG``, or the copy back from a host buffer).
    """

    def __init__(self, name: str, request: Any, after: Any = None) -> None:
        self.name = name
        self.request = request
        self.after = after
        self.done = False

    def _finish(self) -> None:
        self.done = True
        if self.after is not None:
            self.after()

    def is_completed(self) -> bool:
        """Test once, without blocking (this also lets MPI make progress on it)."""
        if not self.done and self.request.Test():
            self._finish()
        return self.done

    def wait(self) -> bool:
        """Block until the collective has completed on this rank; returns True.

        Raises:
            RuntimeError: the other ranks did not join within the process group's timeout.
        """
        group = _require(self.name)
        deadline = time.monotonic() + group.timeout
        pause = 1e-6
        while not self.is_completed():
            if time.monotonic() > deadline:
                group.timed_out = True
                raise RuntimeError(
                    f"minidl.distributed: {self.name} on rank {group.rank} waited {group.timeout:g} s for the other "
                    f"ranks (world size {group.size}) and gave up: a rank has died, hangs, or did not call "
                    f"{self.name} (every rank must call the same collectives in the same order). The timeout is "
                    "init_process_group(timeout=...); the MPI job is aborted when this process exits"
                )
            time.sleep(pause)  # back off from 1 us to 1 ms: quick for short waits, idle for long ones
            pause = min(2 * pause, 1e-3)
        return True


def _check_array(where: str, array: Any) -> None:
    if not hasattr(array, "dtype") or not hasattr(array, "shape"):
        raise TypeError(
            f"minidl.distributed.{where}: expected a NumPy or CuPy array (it is changed in place), "
            f"got {type(array).__name__}"
        )
    if np.dtype(array.dtype) not in SUPPORTED_DTYPES:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise TypeError(f"minidl.distributed.{where}: expected an array of dtype {names}; got dtype {array.dtype}")
    if not array.flags.c_contiguous:
        raise ValueError(
            f"minidl.distributed.{where}: expected a C-contiguous array (it is reduced in place), got a "
            f"non-contiguous one of shape {tuple(array.shape)}: reduce np.ascontiguousarray(a) and copy the result back"
        )
    if not array.flags.writeable:
        raise ValueError(f"minidl.distributed.{where}: the array is read-only, but the result is written into it")


def _mpi_buffer(group: _ProcessGroup, array: Any) -> tuple[Any, Any]:
    """The buffer MPI reads and writes, and what copies it back into ``array`` afterwards (or None).

    A NumPy array is its own buffer. A CuPy array is too for a CUDA-aware MPI (after the stream has finished
    writing it); otherwise it is copied to the host and back (unverified: no GPU was available)."""
    if not is_cupy_array(array):
        return array, None
    array_module = sys.modules["cupy"]
    if group.cuda_aware:
        array_module.cuda.get_current_stream().synchronize()
        return array, None
    host = array_module.asnumpy(array)

    def copy_back() -> None:
        array[...] = array_module.asarray(host)

    return host, copy_back


def _same_on_every_rank(where: str, group: _ProcessGroup, layout: Any, what: str) -> None:
    """Raise unless every rank passed the same ``layout`` (e.g. a shape and a dtype): one small collective, the
    smallest and the largest code of the layouts (MPI would otherwise reduce the overlap of two shapes, or fail
    deep inside)."""
    if group.size == 1:
        return
    code = zlib.crc32(repr(layout).encode())
    codes = np.array([code, -code], np.int64)
    Work(where, group.comm.Iallreduce(MPI.IN_PLACE, codes, op=MPI.MAX)).wait()
    if codes[0] != -codes[1]:
        raise RuntimeError(
            f"minidl.distributed.{where}: the ranks passed different {what} (rank {group.rank}: {layout}); every "
            f"rank must pass the same"
        )


def all_reduce(array: Any, op: str = ReduceOp.SUM, async_op: bool = False, *, _verify: bool = True) -> Any:
    """Reduce ``array`` over all ranks, in place: afterwards every rank holds the sum (or product, min, max, avg).

    Args:
        array: a C-contiguous NumPy or CuPy array of float32, float64, int32 or int64, the same shape and dtype on
            every rank (checked first with one small collective; ``DistributedDataParallel`` and ``SyncBatchNorm``,
            which check their model once, skip it with ``_verify=False``).
        op: ``ReduceOp.SUM`` (``"sum"``), ``"product"``, ``"min"``, ``"max"`` or ``"avg"`` (the sum divided by the
            world size; float arrays). Default: "sum".
        async_op: return a :class:`Work` at once (call ``.wait()`` before reading ``array``) instead of
            waiting. Default: False.

    Returns:
        ``array`` (or a :class:`Work` when ``async_op``).

    Examples:
        >>> import numpy as np
        >>> from minidl import distributed as dist
        >>> dist.init_process_group()  # run alone: a group of one
        >>> dist.all_reduce(np.array([1.0, 2.0]), op="max")
        array([1., 2.])
        >>> dist.destroy_process_group()
    """
    where = "all_reduce"
    group = _require(where)
    if op not in _MPI_OPS:
        raise ValueError(f"minidl.distributed.{where}: op must be one of {sorted(_MPI_OPS)}, got {op!r}")
    _check_array(where, array)
    if op == "avg" and np.dtype(array.dtype).kind != "f":
        raise TypeError(f"minidl.distributed.{where}: op 'avg' needs a float array, got dtype {array.dtype}")
    if _verify:
        _same_on_every_rank(where, group, (tuple(array.shape), str(array.dtype), op), "shapes, dtypes or ops")
    if group.nccl is not None and is_cupy_array(array):
        work = group.nccl.all_reduce(array, op, group.size)
    else:
        buffer, copy_back = _mpi_buffer(group, array)
        request = group.comm.Iallreduce(MPI.IN_PLACE, buffer, op=_MPI_OPS[op])

        def after() -> None:
            if op == "avg":
                buffer[...] /= group.size
            if copy_back is not None:
                copy_back()

        work = Work(where, request, after)
    if async_op:
        return work
    work.wait()
    return array


def broadcast(array: Any, src: int = 0, async_op: bool = False, *, _verify: bool = True) -> Any:
    """Copy rank ``src``'s ``array`` into ``array`` on every other rank, in place.

    Args:
        array: a C-contiguous NumPy or CuPy array, the same shape and dtype on every rank (checked first, as in
            :func:`all_reduce`).
        src: the rank whose values everyone gets. Default: 0.
        async_op: return a :class:`Work` instead of waiting. Default: False.

    Returns:
        ``array`` (or a :class:`Work` when ``async_op``).
    """
    where = "broadcast"
    group = _require(where)
    if isinstance(src, bool) or not isinstance(src, numbers.Integral) or not 0 <= src < group.size:
        raise ValueError(
            f"minidl.distributed.{where}: src must be a rank in 0..{group.size - 1} (world size {group.size}), "
            f"got {src!r}"
        )
    _check_array(where, array)
    if _verify:
        _same_on_every_rank(where, group, (tuple(array.shape), str(array.dtype), int(src)), "shapes, dtypes or src")
    if group.nccl is not None and is_cupy_array(array):
        work = group.nccl.broadcast(array, int(src))
    else:
        buffer, copy_back = _mpi_buffer(group, array)
        work = Work(where, group.comm.Ibcast(buffer, root=int(src)), copy_back)
    if async_op:
        return work
    work.wait()
    return array


def barrier() -> None:
    """Wait until every rank has reached this call (or the timeout passes)."""
    group = _require("barrier")
    Work("barrier", group.comm.Ibarrier()).wait()
