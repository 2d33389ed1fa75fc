"""What runs inside a DataLoader worker, and how a transform finds its random generator.

Reproducible augmentation
-------------------------
Every batch gets its own ``numpy.random.Generator``, seeded from ``SeedSequence(entropy, spawn_key=(epoch, 1, b))``
where ``entropy`` comes from the loader's ``seed`` (or, without one, is drawn once per epoch from minidl's global
generator, so ``minidl.manual_seed`` governs it) and ``b`` is the batch index. While the samples of batch ``b`` are
loaded and transformed, **minidl's default generator is that batch generator**:

``minidl._random.use_generator`` sets it as the calling thread's override, which works the same in the main process
(``num_workers=0``), in worker threads and in worker processes.

So a transform just calls ``minidl.default_generator()`` (or ``minidl.data.worker_generator()``) *each time it
draws* -- never once in ``__init__`` -- and its random choices depend only on (seed, epoch, batch index, position in
the batch): the same batches come out whatever ``num_workers`` and whether workers are processes or threads.

A dataset that draws from NumPy's global generator (``np.random.rand()``) or Python's ``random`` instead gets what
PyTorch gives it: a process worker seeds both with its :class:`WorkerInfo` ``seed`` when it starts (a forked worker
would otherwise repeat the parent's draws, the same in every worker and every epoch), so the numbers differ between
workers and epochs but depend on which worker loads which batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import random
import threading
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from minidl import _random

__all__ = ["WorkerInfo", "get_worker_info", "worker_generator"]

_local = threading.local()  # .info: WorkerInfo of this worker (thread or process)


@dataclasses.dataclass
class WorkerInfo:
    """Describes the worker running the current code (PyTorch's ``torch.utils.data.get_worker_info()``).

    Attributes:
        id: worker index in [0, num_workers).
        num_workers: how many workers the loader runs.
        seed: an int seed for this worker, distinct per worker (and per epoch unless ``persistent_workers``), for a
            ``worker_init_fn`` that seeds a library of its own.
        dataset: the worker's copy of the dataset (a copy in a process, the same object in a thread).
        kind: ``"process"`` or ``"thread"``.
    """

    id: int
    num_workers: int
    seed: int
    dataset: Any
    kind: str


def get_worker_info() -> WorkerInfo | None:
    """The :class:`WorkerInfo` of the calling worker, or None in the main process (as in PyTorch)."""
    return getattr(_local, "info", None)


def worker_generator() -> np.random.Generator:
    """The generator augmentation should draw from now: the current batch's generator inside a DataLoader (any
    number of workers), minidl's global generator elsewhere. Same result as ``minidl.default_generator()``.

    Examples:
        >>> import minidl
        >>> worker_generator() is minidl.default_generator()
        True
    """
    return _random.default_generator()


def using_generator(gen: np.random.Generator) -> contextlib.AbstractContextManager[np.random.Generator]:
    """Inside the block, ``minidl.default_generator()`` and :func:`worker_generator` return ``gen`` for this thread."""
    return _random.use_generator(gen)


def batch_generator(entropy: int, epoch: int, batch_index: int) -> np.random.Generator:
    """The generator of batch ``batch_index`` in epoch ``epoch`` (see the module docstring)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(epoch, 1, batch_index))))


class WorkerFailure:
    """An exception raised in a worker, as plain data that crosses a process boundary."""

    def __init__(self, worker: str, where: str, exc: BaseException) -> None:
        self.worker = worker
        self.where = where
        self.exc_type: type | None = type(exc)
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.exc_name = type(exc).__name__

    def __reduce__(self) -> tuple[Any, ...]:
        import pickle

        try:  # the exception class travels by reference; a class defined inside a function cannot
            pickle.dumps(self.exc_type)
            exc_type = self.exc_type
        except Exception:
            exc_type = None
        return (_rebuild_failure, (self.worker, self.where, exc_type, self.text, self.exc_name))

    def to_exception(self) -> BaseException:
        message = (
            f"Caught {self.exc_name} in DataLoader {self.worker} {self.where}.\n"
            f"Original traceback:\n{self.text.rstrip()}"
        )
        if self.exc_type is not None and issubclass(self.exc_type, Exception) and self.exc_type is not KeyError:
            try:
                return self.exc_type(message)
            except Exception:
                pass
        return RuntimeError(message)


def _rebuild_failure(worker: str, where: str, exc_type: type | None, text: str, exc_name: str) -> WorkerFailure:
    f = WorkerFailure.__new__(WorkerFailure)
    f.worker, f.where, f.exc_type, f.text, f.exc_name = worker, where, exc_type, text, exc_name
    return f


def _tag(exc: BaseException, where: str) -> None:
    try:
        exc._minidl_where = where  # type: ignore[attr-defined]
    except AttributeError:  # an exception class with __slots__
        pass


def fetch(dataset: Any, indices: list[int], collate_fn: Callable[[list[Any]], Any], gen: np.random.Generator) -> Any:
    """Load and collate one batch with ``gen`` as the generator; an error names the failing sample index."""
    samples = []
    with using_generator(gen):
        for i in indices:
            try:
                samples.append(dataset[i])
            except Exception as exc:
                _tag(exc, f"while loading sample index {i}")
                raise
        try:
            return collate_fn(samples)
        except Exception as exc:
            _tag(exc, f"while collating the samples {indices[:8]}{'...' if len(indices) > 8 else ''}")
            raise


def worker_loop(
    kind: str,
    worker_id: int,
    num_workers: int,
    dataset: Any,
    collate_fn: Callable[[list[Any]], Any],
    index_queue: Any,
    result_queue: Any,
    done_event: Any,
    worker_init_fn: Callable[[int], None] | None,
    seed: int,
    parent_pid: int | None,
) -> None:
    """Body of a worker: take ``(task_id, entropy, epoch, batch_index, indices)`` from ``index_queue``, put
    ``(task_id, batch or WorkerFailure)`` on ``result_queue``; stop on None, on ``done_event`` or when the parent
    process is gone."""
    name = f"worker {worker_id} ({kind}{', pid ' + str(os.getpid()) if kind == 'process' else ''})"
    _local.info = WorkerInfo(worker_id, num_workers, seed, dataset, kind)
    if kind == "process":  # a forked process starts with the parent's global generators: same draws in every worker
        np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global one is the point; PyTorch seeds it too)
        random.seed(seed)
    try:
        if worker_init_fn is not None:
            try:
                with using_generator(np.random.default_rng(seed)):
                    worker_init_fn(worker_id)
            except Exception as exc:
                result_queue.put((-1, WorkerFailure(name, "in worker_init_fn", exc)))
                return
        while not done_event.is_set():
            try:
                task = index_queue.get(timeout=0.1)
            except queue.Empty:
                if parent_pid is not None and os.getppid() != parent_pid:
                    return  # the main process died: exit instead of lingering as an orphan
                continue
            if task is None:
                return
            task_id, entropy, epoch, batch_index, indices = task
            try:
                data: Any = fetch(dataset, indices, collate_fn, batch_generator(entropy, epoch, batch_index))
            except Exception as exc:
                data = WorkerFailure(name, f"{getattr(exc, '_minidl_where', '')} (batch {batch_index})", exc)
            if done_event.is_set():
                return
            result_queue.put((task_id, data))
    except KeyboardInterrupt:
        pass
    finally:
        if kind == "process" and done_event.is_set():
            result_queue.cancel_join_thread()  # don't block exit on unread results the main process dropped
        _local.info = None
