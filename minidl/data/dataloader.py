"""DataLoader: batches of a dataset, shuffled reproducibly, loaded and augmented in parallel.

One epoch: the sampler orders the indices 0..N-1 (a fresh permutation per epoch when ``shuffle=True``), cuts them
into batches of ``batch_size`` (the last one shorter unless ``drop_last``), and each batch is fetched (``dataset[i]``
for its indices, with the transform) and collated into arrays.

Randomness. Epoch ``e`` of a loader with ``seed=s`` uses ``SeedSequence(s, spawn_key=(e, 0))`` for the permutation and
``SeedSequence(s, spawn_key=(e, 1, b))`` for the augmentation of batch ``b`` (see :mod:`minidl.data._worker`). Without
``seed``, each epoch draws its ``s`` from minidl's global generator, so ``minidl.manual_seed`` makes the whole run
reproducible. The batches are the same for every ``num_workers`` and ``worker_type``.

Workers. With ``num_workers = K > 0`` the batches are fetched by K workers, processes (``fork`` where available, else
``spawn``) or threads, each with its own task queue; at most ``prefetch_factor * K`` batches are in flight, and they
are yielded in order. An exception in a worker is raised in the main process naming the worker, the sample index and
the original traceback. Workers are shut down when the epoch ends, when the loop is left early (``break``, an
exception, the iterator being garbage-collected) or, with ``persistent_workers``, when the loader is closed or
collected.

Processes or threads? Processes by default, because they are the ones that scale on the CIFAR-10 workload
(``benchmarks/loader_throughput.py``: RandomCrop + flip + ToArray + Normalize on 32x32 arrays). That work is many
small NumPy calls and Python code that hold the GIL (NumPy releases it only inside large array operations), so two
worker threads run no faster than one -- slower, from GIL hand-offs -- while two processes run in parallel and pay
for sending each batch through a pipe (pickled: about 2 ms of main-process CPU for the 1.5 MB of a 128-image CIFAR
batch) and 25-50 ms of start-up per worker. For JPEG pipelines threads are as good: Pillow releases the GIL while
decoding and inside most of its C image operations, and threads start at once and share the dataset; choose them
with ``worker_type="thread"``. Measured figures are in ``benchmarks/README_loader.md``.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import numbers
import os
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from minidl import _random
from minidl.data import _worker
from minidl.data.collate import default_collate
from minidl.data.dataset import _is_index

__all__ = ["DEFAULT_WORKER_TYPE", "DataLoader"]

#: the faster of the two on the benchmark (see the module docstring)
DEFAULT_WORKER_TYPE = "process"


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"DataLoader: {name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"DataLoader: {name} must be >= {minimum}, got {value}")
    return int(value)


class _WorkerPool:
    """K workers (processes or threads) with one task queue each and a shared result queue."""

    def __init__(self, loader: DataLoader, entropy: int, epoch: int) -> None:
        self.kind = loader.worker_type
        self.num_workers = loader.num_workers
        self.timeout = loader.timeout
        self.closed = False
        self.task_counter = itertools.count()
        if self.kind == "process":
            ctx = multiprocessing.get_context(loader.multiprocessing_context)
            self.result_queue: Any = ctx.Queue()
            self.done_event: Any = ctx.Event()
            self.index_queues: list[Any] = [ctx.Queue() for _ in range(self.num_workers)]
            make = ctx.Process
            parent_pid: int | None = os.getpid()
        else:
            self.result_queue = queue.Queue()
            self.done_event = threading.Event()
            self.index_queues = [queue.Queue() for _ in range(self.num_workers)]
            make = threading.Thread
            parent_pid = None
        self.workers: list[Any] = []
        try:
            self._start(loader, entropy, epoch, make, parent_pid)
        except BaseException as exc:
            self.shutdown()
            if self.kind == "process" and loader.multiprocessing_context != "fork" and hasattr(exc, "add_note"):
                exc.add_note(
                    f"DataLoader: with multiprocessing_context={loader.multiprocessing_context!r} the dataset, "
                    "collate_fn and worker_init_fn are pickled to reach the workers; define them at module level"
                )
            raise

    def _start(self, loader: DataLoader, entropy: int, epoch: int, make: Any, parent_pid: int | None) -> None:
        # (the spawn keys of the shuffle and of the batches are (epoch, 0) and (epoch, 1, b))
        for k in range(self.num_workers):
            seed = int(np.random.SeedSequence(entropy, spawn_key=(epoch, 2, k)).generate_state(1)[0])
            args = (
                self.kind, k, self.num_workers, loader.dataset, loader.collate_fn, self.index_queues[k],
                self.result_queue, self.done_event, loader.worker_init_fn, seed, parent_pid,
            )  # fmt: skip
            w = make(target=_worker.worker_loop, args=args, daemon=True, name=f"minidl-DataLoader-worker-{k}")
            w.start()
            self.workers.append(w)

    def put(self, worker_id: int, task: tuple[Any, ...]) -> None:
        self.index_queues[worker_id].put(task)

    def get(self) -> tuple[int, Any]:
        """Next result; raises if a worker died or ``timeout`` passed without a result."""
        start = time.monotonic()
        while True:
            try:
                return self.result_queue.get(timeout=0.5)
            except queue.Empty:
                dead = [(k, w) for k, w in enumerate(self.workers) if not w.is_alive()]
                if dead:
                    k, w = dead[0]
                    code = getattr(w, "exitcode", None)
                    why = f" (killed by signal {-code})" if isinstance(code, int) and code < 0 else ""
                    self.shutdown()
                    raise RuntimeError(
                        f"DataLoader worker {k} ({self.kind}{', pid ' + str(w.pid) if self.kind == 'process' else ''})"
                        f" exited unexpectedly with exit code {code}{why}"
                    ) from None
                if self.timeout > 0 and time.monotonic() - start > self.timeout:
                    self.shutdown()
                    raise RuntimeError(f"DataLoader timed out after {self.timeout} s waiting for a batch") from None

    def shutdown(self) -> None:
        """Stop and join every worker (terminating processes that don't stop in time); idempotent."""
        if self.closed:
            return
        self.closed = True
        self.done_event.set()
        for q in self.index_queues:
            try:
                q.put(None)
            except Exception:  # the queue may be closed already at interpreter exit
                pass
        deadline = time.monotonic() + 5.0
        for w in self.workers:
            w.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.kind == "process":
            for w in self.workers:
                if w.is_alive():
                    w.terminate()
                    w.join(timeout=1.0)
            for q in [*self.index_queues, self.result_queue]:
                q.cancel_join_thread()
                q.close()


def _to_device(batch: Any, backend: Any) -> Any:
    if hasattr(batch, "shape") and hasattr(batch, "dtype"):
        return backend.asarray(batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, backend) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, backend) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, backend) for v in batch)
    return batch


class DataLoader:
    """Iterate over a dataset in batches (PyTorch's ``torch.utils.data.DataLoader``, map-style datasets).

    Args:
        dataset: anything with ``__len__`` and ``__getitem__(i)``.
        batch_size: samples per batch. Default: 1.
        shuffle: a new random order each epoch. Default: False.
        drop_last: drop the last batch when it is shorter than ``batch_size``. Default: False.
        num_workers: 0 loads in the main process; K > 0 uses K parallel workers. Default: 0.
        seed: seed of the shuffling and augmentation (epoch ``e`` of seed ``s`` is always the same). Default: None
            (drawn each epoch from minidl's global generator, see ``minidl.manual_seed``).
        collate_fn: turns a list of samples into a batch. Default: :func:`~minidl.data.default_collate`.
        prefetch_factor: batches fetched ahead per worker. Default: 2.
        persistent_workers: keep the workers alive between epochs (call :meth:`close` or drop the loader to stop
            them). Default: False.
        device: where batches go: None (NumPy arrays as collated), a backend name (``"numpy"``, ``"cupy"``, ...) or
            backend object, or ``"current"`` (``minidl.get_backend()`` at iteration time). Default: None.
        worker_type: ``"process"`` or ``"thread"``. Default: ``DEFAULT_WORKER_TYPE`` (``"process"``).
        multiprocessing_context: ``"fork"``, ``"spawn"`` or ``"forkserver"`` for process workers (with ``spawn``
            the dataset and the functions must be picklable). Default: ``"fork"`` where available, else ``"spawn"``.
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker before it loads. Default: None.
        timeout: seconds to wait for a batch from the workers before raising (0: forever). Default: 0.
        sampler: (keyword only) the indices of an epoch in order, instead of 0..N-1 or a permutation: an iterable
            with ``len()``, iterated once per epoch, e.g. :class:`minidl.distributed.DistributedSampler` (then N is
            ``len(sampler)``); not together with ``shuffle=True``. Default: None.
        batch_sampler: (keyword only) the batches of an epoch as lists of indices (an iterable with ``len()``, e.g.
            batches of similar lengths), instead of ``batch_size``, ``shuffle``, ``sampler`` and ``drop_last``.
            Default: None.
        generator: (keyword only) a ``numpy.random.Generator`` each epoch's seed is drawn from instead of minidl's
            global generator (not with ``seed``; its state is yours: a training checkpoint does not hold it).
            Default: None.
        pin_memory: (keyword only) PyTorch's page-locked batches for GPU copies: minidl has none, and True only
            warns (as PyTorch does without an accelerator). Default: False.

    Shape:
        - ``len(loader)`` = ceil(N / batch_size), or floor(N / batch_size) with ``drop_last``.
        - With ``default_collate``, a dataset of ``(image (C, H, W), label)`` gives ``(images (B, C, H, W),
          labels (B,) int64)`` batches, B = batch_size (the last batch may be smaller).

    Examples:
        >>> from minidl.data import TensorDataset
        >>> ds = TensorDataset(np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5))
        >>> loader = DataLoader(ds, batch_size=2, shuffle=True, seed=0)
        >>> len(loader), [tuple(x.shape) for x, y in loader]
        (3, [(2, 2), (2, 2), (1, 2)])
        >>> sorted(np.concatenate([y for _, y in loader]).tolist())
        [0, 1, 2, 3, 4]
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        *,
        drop_last: bool = False,
        num_workers: int = 0,
        seed: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        prefetch_factor: int = 2,
        persistent_workers: bool = False,
        device: Any = None,
        worker_type: str | None = None,
        multiprocessing_context: str | None = None,
        worker_init_fn: Callable[[int], None] | None = None,
        timeout: float = 0,
        sampler: Any = None,
        batch_sampler: Any = None,
        generator: Any = None,
        pin_memory: bool = False,
    ) -> None:
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: dataset must define __len__ and __getitem__, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if not isinstance(shuffle, bool) or not isinstance(drop_last, bool):
            raise TypeError(
                f"DataLoader: shuffle and drop_last must be bools, got {shuffle!r} and {drop_last!r} (the arguments "
                "after shuffle are keyword-only: PyTorch has a sampler in 4th place, minidl takes sampler= by name)"
            )
        self.shuffle = shuffle
        self.drop_last = drop_last
        if sampler is not None and (shuffle or not hasattr(sampler, "__iter__") or not hasattr(sampler, "__len__")):
            raise ValueError(
                "DataLoader: sampler must be an iterable of indices with len() and excludes shuffle=True (the sampler "
                f"orders the epoch), got sampler={sampler!r} and shuffle={shuffle!r}"
            )
        self.sampler = sampler
        if batch_sampler is not None and (
            batch_size != 1
            or shuffle
            or sampler is not None
            or drop_last
            or not hasattr(batch_sampler, "__iter__")
            or not hasattr(batch_sampler, "__len__")
        ):
            raise ValueError(
                "DataLoader: batch_sampler (an iterable of lists of indices with len(), one list per batch) excludes "
                f"batch_size, shuffle, sampler and drop_last (as in PyTorch), got batch_sampler={batch_sampler!r}, "
                f"batch_size={batch_size}, shuffle={shuffle}, sampler={sampler!r}, drop_last={drop_last}"
            )
        self.batch_sampler = batch_sampler
        self.num_workers = _check_int("num_workers", num_workers, 0)
        if seed is not None:
            seed = _check_int("seed", seed, 0)
        if generator is not None and (seed is not None or not isinstance(generator, np.random.Generator)):
            raise TypeError(
                "DataLoader: generator must be a numpy.random.Generator (each epoch's seed is drawn from it), and not "
                f"together with seed; got generator={type(generator).__name__} and seed={seed!r}"
            )
        self.seed = seed
        self.generator = generator
        if not isinstance(pin_memory, bool):
            raise TypeError(f"DataLoader: pin_memory must be a bool, got {pin_memory!r}")
        if pin_memory:  # (PyTorch warns too when no accelerator would use the pinned pages)
            warnings.warn(
                "DataLoader: pin_memory=True has no effect in minidl: batches are NumPy arrays in ordinary memory; "
                "device= moves them to a backend",
                UserWarning,
                stacklevel=2,
            )
        self.pin_memory = pin_memory
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be a function of a list of samples, got {collate_fn!r}")
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.prefetch_factor = _check_int("prefetch_factor", prefetch_factor, 1)
        if not isinstance(persistent_workers, bool):  # ("no" was read as True)
            raise TypeError(f"DataLoader: persistent_workers must be a bool, got {persistent_workers!r}")
        self.persistent_workers = persistent_workers
        if self.persistent_workers and self.num_workers == 0:
            raise ValueError("DataLoader: persistent_workers=True needs num_workers > 0")
        worker_type = DEFAULT_WORKER_TYPE if worker_type is None else worker_type
        if worker_type not in ("process", "thread"):
            raise ValueError(f"DataLoader: worker_type must be 'process' or 'thread', got {worker_type!r}")
        self.worker_type = worker_type
        methods = multiprocessing.get_all_start_methods()
        if multiprocessing_context is None:
            multiprocessing_context = "fork" if "fork" in methods else "spawn"
        if multiprocessing_context not in methods:
            raise ValueError(
                f"DataLoader: multiprocessing_context must be one of {methods}, got {multiprocessing_context!r}"
            )
        self.multiprocessing_context = multiprocessing_context
        self.worker_init_fn = worker_init_fn
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0:
            raise ValueError(f"DataLoader: timeout must be a number of seconds >= 0, got {timeout!r}")
        self.timeout = float(timeout)
        self.device = device
        if device is not None and device != "current" and not hasattr(device, "asarray"):
            from minidl.backend import get_backend

            get_backend(device)  # fail now on an unknown backend name
        #: epochs started so far; epoch e uses spawn key e (set it to resume a run at a given epoch)
        self.epoch = 0
        self._pool: _WorkerPool | None = None
        self._pool_busy = False
        self._pool_finalizer: Any = None

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return self._batch_count(len(self.dataset) if self.sampler is None else len(self.sampler))

    def _batch_count(self, n: int) -> int:
        """Batches of n indices: floor(n / batch_size) with ``drop_last``, else ceil(n / batch_size)."""
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _epoch_entropy(self) -> int:
        if self.seed is not None:
            return self.seed
        generator = self.generator if self.generator is not None else _random.default_generator()
        return int(generator.integers(2**63))

    def _batches(self, entropy: int, epoch: int) -> Iterator[list[int]]:
        if self.batch_sampler is not None:
            for batch in self.batch_sampler:
                indices = list(batch)
                wrong = next((i for i in indices if not _is_index(i)), None)
                if wrong is not None or not indices:
                    raise TypeError(
                        f"DataLoader: the batch_sampler must yield non-empty lists of int indices, got {batch!r:.80}"
                    )
                yield [int(i) for i in indices]
            return
        n = len(self.dataset)
        if self.sampler is not None:  # all it yields, whatever its len() says (as PyTorch's BatchSampler)
            order = list(self.sampler)
            wrong = next((i for i in order if not _is_index(i)), None)
            if wrong is not None:  # (an int64 array would have truncated 1.7 to sample 1)
                raise TypeError(
                    f"DataLoader: the sampler must yield int indices, got {wrong!r} ({type(wrong).__name__})"
                )
            order = np.asarray(order, dtype=np.int64)
        elif self.shuffle:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(epoch, 0))))
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        for b in range(self._batch_count(len(order))):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()

    def _backend(self) -> Any:
        if self.device is None:
            return None
        from minidl.backend import get_backend

        if self.device == "current":
            return get_backend()
        return self.device if hasattr(self.device, "asarray") else get_backend(self.device)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self.epoch += 1
        entropy = self._epoch_entropy()
        backend = self._backend()
        if self.num_workers == 0:
            return self._iter_main(entropy, epoch, backend)
        return self._iter_workers(entropy, epoch, backend)

    def _iter_main(self, entropy: int, epoch: int, backend: Any) -> Iterator[Any]:
        for b, indices in enumerate(self._batches(entropy, epoch)):
            try:
                batch = _worker.fetch(
                    self.dataset, indices, self.collate_fn, _worker.batch_generator(entropy, epoch, b)
                )
            except Exception as exc:
                if hasattr(exc, "add_note"):
                    exc.add_note(f"(DataLoader: {getattr(exc, '_minidl_where', '')} of batch {b})")
                raise
            yield batch if backend is None else _to_device(batch, backend)

    def _get_pool(self, entropy: int, epoch: int) -> tuple[_WorkerPool, bool]:
        """A pool for one epoch, and whether it is the loader's persistent pool (kept after the epoch)."""
        if self._pool is not None and not self._pool.closed and not self._pool_busy:
            self._pool_busy = True
            return self._pool, True
        pool = _WorkerPool(self, entropy, epoch)
        if self.persistent_workers and (self._pool is None or self._pool.closed):
            self._pool, self._pool_busy = pool, True
            self._pool_finalizer = weakref.finalize(self, pool.shutdown)
            return pool, True
        return pool, False  # no persistence, or the persistent pool serves another live iterator

    def _iter_workers(self, entropy: int, epoch: int, backend: Any) -> Iterator[Any]:
        if len(self) == 0:
            return
        pool, persistent = self._get_pool(entropy, epoch)
        tasks = enumerate(self._batches(entropy, epoch))
        worker_cycle = itertools.cycle(range(pool.num_workers))
        pending: dict[int, int] = {}  # task id -> batch index, for the tasks of this epoch
        ready: dict[int, Any] = {}  # batch index -> result, waiting for its turn
        next_batch = 0
        finished_normally = False

        def submit() -> bool:
            try:
                b, indices = next(tasks)
            except StopIteration:
                return False
            task_id = next(pool.task_counter)
            pending[task_id] = b
            pool.put(next(worker_cycle), (task_id, entropy, epoch, b, indices))
            return True

        try:
            for _ in range(self.prefetch_factor * pool.num_workers):
                if not submit():
                    break
            while pending or ready:
                while next_batch not in ready:
                    task_id, data = pool.get()
                    if task_id == -1 and isinstance(data, _worker.WorkerFailure):
                        raise data.to_exception()
                    if task_id in pending:  # results of an earlier, abandoned epoch are dropped
                        ready[pending.pop(task_id)] = data
                data = ready.pop(next_batch)
                if isinstance(data, _worker.WorkerFailure):
                    raise data.to_exception()
                next_batch += 1
                submit()
                yield data if backend is None else _to_device(data, backend)
            finished_normally = True
        finally:
            if persistent:
                self._pool_busy = False
            if not persistent or (not finished_normally and pending):
                # an early exit leaves tasks queued in persistent workers: start afresh next epoch
                pool.shutdown()
                if self._pool is pool:
                    self._pool = None

    def close(self) -> None:
        """Stop persistent workers now (they are also stopped when the loader is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool, self._pool_busy = None, False

    def __repr__(self) -> str:
        return (
            f"DataLoader(dataset={type(self.dataset).__name__}(len={len(self.dataset)}), "
            f"batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, num_workers={self.num_workers}, seed={self.seed}, "
            f"worker_type={self.worker_type!r})"
        )
