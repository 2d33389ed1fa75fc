"""``DistributedDataParallel``: one model per rank, kept identical by averaging the gradients, as PyTorch's DDP.

Data parallelism in three lines: every rank holds the same model, takes its own slice of the global batch
(:class:`~minidl.distributed.DistributedSampler`), and before the optimizer step the gradients are averaged over the
ranks with an allreduce. Every rank then takes the same step from the same parameters, so the models stay identical
without ever being sent again, and P ranks with batch B compute the step of one process with batch P * B.

Construction broadcasts rank 0's parameters and buffers to every rank (the models may have been initialized from
different seeds). In training, ``broadcast_buffers`` sends rank 0's buffers (BatchNorm's running statistics) again
before each forward, as PyTorch does; with :class:`~minidl.distributed.SyncBatchNorm` they agree anyway.

**Buckets.** One allreduce per parameter would pay the network latency (alpha, microseconds) once per array, and a
ResNet has dozens of small ones; one allreduce of all the gradients at the end would have to wait for the whole
backward. So the gradients are packed into *buckets* of about ``bucket_cap_mb`` megabytes: the parameters in
reverse registration order (the order backward produces their gradients: last layer first) are cut into groups, and
each group is reduced as one contiguous buffer, in one allreduce.

**Overlap.** minidl's backward is explicit: the model's ``backward`` calls each layer's ``backward``, last layer
first. While DDP's backward runs, each layer that owns parameters carries a full backward hook
(``register_full_backward_hook``, :mod:`minidl.nn.hooks`; taken off when the backward returns), which runs when the
layer's backward has returned: the last time in this pass (its saved-values stack is empty: a layer may run several
times per pass), its parameters' gradients are final. When every parameter of a bucket is
final, the bucket is copied into its buffer and a *non-blocking* allreduce (MPI's ``Iallreduce``) starts, and the
backward goes on through the earlier layers while the gradients of the later ones travel. At the end DDP waits for
every bucket, divides by the world size and copies the averages back into ``p.grad``. Buckets are started strictly
in order (bucket 0 first, a ready bucket waits for the ones before it), so every rank issues the same collectives in
the same order, which MPI requires.

MPICH makes progress on a non-blocking collective only inside MPI calls, so after each layer's backward DDP tests
the buckets in flight (``Request.Test``), which moves them along; ``MPICH_ASYNC_PROGRESS=1`` adds a progress thread
instead.

**Unused and shared parameters.** A parameter that gets no gradient in a pass counts as a gradient of zeros, and a
parameter owned by several modules (weight tying) is only known to be final after the whole backward; their buckets
start after the model's backward has returned. Either way the result is right; only the overlap is lost for them.

**Gradient accumulation.** Inside ``with ddp.no_sync():`` the backward only accumulates into ``p.grad``, without
communication; the first backward outside reduces the accumulated gradients.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from minidl.backend import get_array_module
from minidl.distributed import _comm
from minidl.nn.module import Module
from minidl.nn.parameter import Parameter

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients are averaged together: one flat buffer and one allreduce per step."""

    def __init__(self, params: list[Parameter]) -> None:
        self.params = params
        self.slices: list[slice] = []
        start = 0
        for p in params:
            self.slices.append(slice(start, start + p.size))
            start += p.size
        self.buffer = get_array_module(params[0].data).empty(start, dtype=params[0].dtype)
        self.waiting: set[int] = set()  # ids of the parameters whose gradient is not final yet in this pass
        self.work: Any = None  # the allreduce in flight

    def nbytes(self) -> int:
        return int(self.buffer.nbytes)

    def start(self) -> None:
        """Copy the gradients into the buffer (zeros for a parameter without one) and start its allreduce."""
        for p, where in zip(self.params, self.slices, strict=True):
            self.buffer[where] = 0 if p.grad is None else p.grad.reshape(-1)
        self.work = _comm.all_reduce(self.buffer, async_op=True, _verify=False)  # (the model was checked)

    def finish(self, world_size: int) -> None:
        """Wait for the allreduce, divide by the world size and write the averages into ``p.grad``."""
        self.work.wait()
        self.work = None
        self.buffer /= world_size
        for p, where in zip(self.params, self.slices, strict=True):
            if not p.requires_grad:  # frozen since the wrapper was built: it keeps no gradient
                continue
            average = self.buffer[where].reshape(p.shape)
            if p.grad is None:
                p.grad = average.copy()
            else:
                p.grad[...] = average


def _make_buckets(params: list[Parameter], cap_bytes: float) -> list[_Bucket]:
    """Cut ``params`` (already in backward order) into buckets of at most ``cap_bytes`` (a bigger parameter gets a
    bucket of its own), starting a new bucket where the dtype or the array module changes."""
    buckets, current, size = [], [], 0
    for p in params:
        same_kind = not current or (
            p.dtype == current[0].dtype and get_array_module(p.data) is get_array_module(current[0].data)
        )
        if current and (not same_kind or size + p.data.nbytes > cap_bytes):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += p.data.nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training: same initial state on every rank, averaged gradients (PyTorch's
    ``DistributedDataParallel``; the bucketing and the overlap are explained in the module docstring).

    ``ddp(x)`` runs ``module(x)``; ``ddp.backward(dout)`` runs ``module.backward(dout)`` and, while it runs,
    averages the gradients over the ranks bucket by bucket. ``state_dict`` keys start with ``module.`` as in
    PyTorch; save ``ddp.module.state_dict()`` for a checkpoint that loads into the plain model.

    Args:
        module: the model, already on its backend; the process group must be initialized.
        bucket_cap_mb: the size of a bucket in megabytes (2**20 bytes). Default: 25.
        broadcast_buffers: send rank 0's buffers to every rank before each training forward. Default: True.

    Attributes:
        module: the wrapped model. require_backward_grad_sync: False inside :meth:`no_sync`.
        overlapped_buckets: how many buckets the last backward started before the model's backward had returned
            (their communication overlapped the rest of the backward), out of ``len(buckets)``.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, distributed as dist
        >>> dist.init_process_group()  # run alone: a group of one
        >>> ddp = dist.DistributedDataParallel(nn.Linear(3, 2))
        >>> out = ddp(np.ones((4, 3), np.float32))
        >>> dx = ddp.backward(np.ones((4, 2), np.float32))
        >>> ddp.module.bias.grad, sorted(ddp.state_dict())
        (array([4., 4.], dtype=float32), ['module.bias', 'module.weight'])
        >>> dist.destroy_process_group()
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25.0, broadcast_buffers: bool = True) -> None:
        super().__init__()
        where = "DistributedDataParallel"
        if not isinstance(module, Module):
            raise TypeError(f"{where}: module must be a minidl.nn.Module, got {type(module).__name__}")
        if isinstance(module, DistributedDataParallel):
            raise TypeError(f"{where}: the module is already a DistributedDataParallel; wrap the model once")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, numbers.Real) or not bucket_cap_mb > 0:
            raise ValueError(f"{where}: bucket_cap_mb must be a positive number of megabytes, got {bucket_cap_mb!r}")
        if not isinstance(broadcast_buffers, bool):
            raise TypeError(f"{where}: broadcast_buffers must be a bool, got {broadcast_buffers!r}")
        group = _comm._require(where)
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                f"{where}: {type(module).__name__} has no parameter that requires a gradient, so there is nothing to "
                "average; DistributedDataParallel is for models that train"
            )
        self.module = module
        self.bucket_cap_mb = float(bucket_cap_mb)
        self.broadcast_buffers = broadcast_buffers
        self.require_backward_grad_sync = True
        self.world_size = group.size
        self._sync_module_states()
        self._buckets = _make_buckets(params[::-1], self.bucket_cap_mb * 2**20)
        self._bucket_of = {id(p): bucket for bucket in self._buckets for p in bucket.params}
        self._next_bucket = 0  # the next bucket to start in this pass
        self.overlapped_buckets = 0

    # ------------------------------------------------------------------ state
    def _sync_module_states(self) -> None:
        """Check that every rank built the same model (as PyTorch's DDP does), then every rank gets rank 0's
        parameters and buffers."""
        group = _comm._require("DistributedDataParallel")
        layout = [(name, tuple(p.shape), str(p.dtype)) for name, p in self.module.named_parameters()]
        layout += [(name, tuple(b.shape), str(b.dtype)) for name, b in self.module.named_buffers() if b is not None]
        shown = ", ".join(f"{name} {shape}" for name, shape, _ in layout[:3]) + (", ..." if len(layout) > 3 else "")
        try:
            _comm._same_on_every_rank("DistributedDataParallel", group, layout, "models")
        except RuntimeError:
            raise RuntimeError(
                f"DistributedDataParallel: the ranks hold different models (rank {group.rank}: {len(layout)} "
                f"parameters and buffers: {shown}); every rank must build the same model"
            ) from None
        for p in self.module.parameters():
            _comm.broadcast(p.data, src=0, _verify=False)
        self._broadcast_buffers()

    def _broadcast_buffers(self) -> None:
        """Rank 0's buffers to every rank: one broadcast per dtype of all the buffers packed together (a ResNet has
        three buffers per BatchNorm; one collective each would pay the latency, and a wait, dozens of times per
        forward), then unpacked into the buffers in place."""
        groups: dict[Any, list[Any]] = {}
        for _, b in self.module.named_buffers():
            if b is not None and np.dtype(b.dtype) in _comm.SUPPORTED_DTYPES and b.flags.c_contiguous:
                groups.setdefault((np.dtype(b.dtype), type(b)), []).append(b)
        for buffers in groups.values():
            xp = get_array_module(buffers[0])
            flat = xp.concatenate([b.reshape(-1) for b in buffers])
            _comm.broadcast(flat, src=0, _verify=False)
            start = 0
            for b in buffers:
                b[...] = flat[start : start + b.size].reshape(b.shape)
                start += b.size

    # ------------------------------------------------------------------ forward / backward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and self.broadcast_buffers and self.world_size > 1:
            self._broadcast_buffers()
        return self.module(*args, **kwargs)

    def backward(self, dout: Any) -> Any:
        """``module.backward(dout)``, with the gradients averaged over the ranks (unless inside :meth:`no_sync`)."""
        if not self.require_backward_grad_sync:
            return self.module.backward(dout)
        self._next_bucket = 0
        for bucket in self._buckets:
            bucket.waiting = {id(p) for p in bucket.params}
        handles = [
            module.register_full_backward_hook(self._gradients_ready_hook(params))
            for module, params in self._layers_with_own_parameters()
        ]
        try:
            dx = self.module.backward(dout)
        finally:
            for handle in handles:  # take the hooks off again, whatever happened
                handle.remove()
        self.overlapped_buckets = self._next_bucket
        self._start_ready_buckets(all_remaining=True)  # unused or shared parameters: their buckets start now
        for bucket in self._buckets:
            bucket.finish(self.world_size)
        return dx

    def _layers_with_own_parameters(self) -> list[tuple[Module, list[Parameter]]]:
        """Every layer that owns parameters of a bucket, with those parameters. A parameter owned by several modules
        is left out: only the end of the backward tells that it is final."""
        owners: dict[int, int] = {}
        for module in self.module.modules():
            for p in module._parameters.values():
                if p is not None and id(p) in self._bucket_of:
                    owners[id(p)] = owners.get(id(p), 0) + 1
        layers = []
        for module in self.module.modules():
            own = [p for p in module._parameters.values() if p is not None and owners.get(id(p)) == 1]
            if own:
                layers.append((module, own))
        return layers

    def _gradients_ready_hook(self, params: list[Parameter]) -> Any:
        """A full backward hook (:mod:`minidl.nn.hooks`) for the layer owning ``params``: after its backward, mark
        their gradients final if it was the layer's last call in this pass, and start the buckets that are ready."""

        def hook(module: Module, grad_input: Any, grad_output: Any) -> None:
            if not module._saved:  # the layer's last backward in this pass: its parameters' gradients are final
                for p in params:
                    self._bucket_of[id(p)].waiting.discard(id(p))
                self._start_ready_buckets()
            for bucket in self._buckets[: self._next_bucket]:
                bucket.work.is_completed()  # lets MPI move the buckets in flight along

        return hook

    def _start_ready_buckets(self, all_remaining: bool = False) -> None:
        """Start the buckets whose gradients are all final, in bucket order (the same order on every rank)."""
        while self._next_bucket < len(self._buckets):
            bucket = self._buckets[self._next_bucket]
            if bucket.waiting and not all_remaining:
                return
            bucket.start()
            self._next_bucket += 1

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside the block, backward accumulates gradients locally without communicating (gradient accumulation);
        the first backward after it averages everything accumulated."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    @property
    def buckets(self) -> list[list[Parameter]]:
        """The parameters of each bucket, in the order their allreduces start (the last layers' first)."""
        return [list(bucket.params) for bucket in self._buckets]

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        sizes = ", ".join(f"{b.nbytes() / 2**20:.2g}" for b in self._buckets)
        return f"world_size={self.world_size}, bucket_cap_mb={self.bucket_cap_mb:g}, buckets (MB)=[{sizes}]"

    def _where(self) -> str:
        return f"DistributedDataParallel({type(self.module).__name__})"
