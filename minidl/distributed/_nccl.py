"""The NCCL path for CuPy arrays: ``init_process_group(backend="nccl")``. Unverified: no GPU was available.

On GPUs the gradients live in device memory. Copying them to the host for MPI and back costs two PCIe transfers per
step; NCCL (NVIDIA's collectives library, which CuPy wraps as ``cupy.cuda.nccl``) reduces them where they are, over
NVLink or InfiniBand. MPI still starts the job and tells each process its rank; NCCL only needs one shared secret to
find its peers, the *unique id*, which rank 0 draws (``nccl.get_unique_id()``) and MPI broadcasts. Each process
then builds its ``NcclCommunicator(world_size, unique_id, rank)`` on its own GPU: the ``local rank``-th device of
its node (the ranks that share a node are found with MPI's ``Split_type(COMM_TYPE_SHARED)``).

NCCL calls are queued on a CUDA stream and return at once. :class:`_EventRequest` records a CUDA event after the
call and reports it done when the GPU has passed it, so :class:`~minidl.distributed._comm.Work` waits on NCCL with
the same timeout as on MPI.

This code follows the CuPy documentation (``cupy.cuda.nccl.NcclCommunicator``: ``allReduce(sendbuf, recvbuf,
count, datatype, op, stream)``, ``bcast(buff, count, datatype, root, stream)``) but could not be run here: no GPU
was available. Its tests skip without CuPy and a GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _cupy() -> Any:
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as err:
        raise ImportError(
            "minidl.distributed: backend='nccl' needs CuPy with NCCL (pip install cupy-cuda12x, which loads "
            f"NCCL from the nvidia-nccl-cu12 wheel) and a GPU; use backend='mpi' on CPUs ({err})"
        ) from err
    return cupy, nccl


class _EventRequest:
    """A CUDA event recorded after an NCCL call, with MPI's ``Request.Test`` interface (unverified: no GPU)."""

    def __init__(self, cupy: Any, stream: Any) -> None:
        self.event = cupy.cuda.Event(block=False, disable_timing=True)
        self.event.record(stream)

    def Test(self) -> bool:  # noqa: N802 - MPI's name, so Work treats both alike
        return bool(self.event.done)


class NcclCommunicator:
    """One NCCL communicator per process, on the GPU of its local rank (unverified: no GPU was available)."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        cupy, nccl = _cupy()
        self.cupy, self.nccl = cupy, nccl
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local_rank = local.Get_rank()
        local.Free()
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            raise RuntimeError("minidl.distributed: backend='nccl' found no GPU on this node")
        cupy.cuda.Device(local_rank % count).use()
        unique_id = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        unique_id = comm.bcast(unique_id, root=0)  # bytes (CuPy >= 14) or a tuple of ints: both pickle
        self.comm = nccl.NcclCommunicator(comm.Get_size(), unique_id, comm.Get_rank())
        self.dtypes = {
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.int32): nccl.NCCL_INT32,
            np.dtype(np.int64): nccl.NCCL_INT64,
        }
        self.ops = {"sum": nccl.NCCL_SUM, "product": nccl.NCCL_PROD, "min": nccl.NCCL_MIN, "max": nccl.NCCL_MAX}
        self.ops["avg"] = nccl.NCCL_SUM  # then divided by the world size

    def all_reduce(self, array: Any, op: str, world_size: int) -> Any:
        """Start an in-place NCCL allreduce of a CuPy array on the current stream; returns a Work."""
        from minidl.distributed._comm import Work

        stream = self.cupy.cuda.get_current_stream()
        dtype = self.dtypes[np.dtype(array.dtype)]
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, dtype, self.ops[op], stream.ptr)
        if op == "avg":
            array /= world_size  # queued on the same stream, after the reduction
        return Work("all_reduce", _EventRequest(self.cupy, stream))

    def broadcast(self, array: Any, src: int) -> Any:
        """Start an in-place NCCL broadcast of a CuPy array from rank ``src``; returns a Work."""
        from minidl.distributed._comm import Work

        stream = self.cupy.cuda.get_current_stream()
        self.comm.bcast(array.data.ptr, array.size, self.dtypes[np.dtype(array.dtype)], src, stream.ptr)
        return Work("broadcast", _EventRequest(self.cupy, stream))

    def destroy(self) -> None:
        self.comm.destroy()


def create_communicator(comm: Any) -> NcclCommunicator:
    """The NCCL communicator for ``init_process_group(backend="nccl")`` (unverified: no GPU was available)."""
    return NcclCommunicator(comm)
