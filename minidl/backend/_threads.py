"""Threads of the fast CPU backend: one pool of worker threads, and BLAS held to one thread per call.

Why one pool. A convolution step alternates GEMMs (OpenBLAS) with memory-bound kernels (Numba). When both libraries
keep their own thread pools, each pool's idle threads spin for a while after a call, waiting for more work, and steal
the cores from the other pool's threads: on a 2-core machine a conv step can get 10-40x slower. The Numba backend
avoids the fight by owning all the parallelism:

* its kernels are serial ``@njit(nogil=True)`` functions; :func:`parallel_for` runs them on slices of the work
  (images of the batch, channels, flat chunks) in ``get_num_threads()`` threads, the caller's thread included,
  handing out the slices as threads become free (a core shared with another process just takes fewer);
* the GEMMs of a convolution run *inside* those workers, one chunk of images per call, so OpenBLAS is limited to
  one thread per call (done at the backend's first convolution or Linear); a chunk's im2row buffer stays in the
  core's cache between the copy and the GEMM, which is also why chunks are faster than one batch-sized GEMM;
* where a region's tasks are many and short, :func:`parallel_loops` runs each thread's share as one compiled loop,
  which takes the tasks from a shared counter itself (no Python between two tasks).

A side effect: once the Numba backend has run a convolution or a ``Linear``, a GEMM outside them (a user's
``a @ b``, the attention's products) runs on one core. ``Linear`` layers themselves run their products in the pool
(the backend's ``linear`` kernels: blocks of rows). ``set_blas_num_threads(n)`` gives OpenBLAS its threads back at
any time.

Control:

* ``MINIDL_NUM_THREADS``: worker threads (default: the cores this process may run on); :func:`set_num_threads` /
  :func:`get_num_threads` at run time. This is minidl's ``set_num_threads``;
* ``MINIDL_BLAS_THREADS``: BLAS threads per call while the Numba backend runs (default 1, see
  :func:`blas_threads_wanted`);
* BLAS threads are set through ``threadpoolctl`` when it is installed, else through OpenBLAS's own
  ``openblas_set_num_threads`` found in the loaded library (NumPy's wheels ship OpenBLAS); :func:`blas_info`
  says which library and core type are in use. If neither works, convolutions and linear layers run their GEMMs serially
  (BLAS keeps its own threads) and only the memory-bound kernels use the pool.

Examples:
    >>> from minidl.backend import _threads
    >>> _threads.get_num_threads() >= 1
    True
    >>> squares = [0] * 5
    >>> def body(worker, i):
    ...     squares[i] = i * i
    >>> _threads.parallel_for(body, 5)
    >>> squares
    [0, 1, 4, 9, 16]
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy

__all__ = [
    "blas_info",
    "blas_threads_wanted",
    "get_num_threads",
    "in_region",
    "parallel_for",
    "parallel_loops",
    "serial",
    "set_blas_num_threads",
    "set_num_threads",
]

_lock = threading.Lock()  # one parallel region at a time (workers index per-worker buffers by their number)
_local = threading.local()  # .worker: the worker number of the task this thread is running, else None
_pool: _Pool | None = None
_pool_workers = 0  # threads in _pool (the caller's thread is one more)
_num_threads: int | None = None
_blas: Any = None  # the (set, get) pair of OpenBLAS functions, found once


def _after_fork_in_child() -> None:
    """A forked child (a DataLoader worker process) has none of the parent's threads: start with a fresh pool."""
    global _lock, _pool, _pool_workers
    _lock, _pool, _pool_workers = threading.Lock(), None, 0
    _local.worker = None  # (forked inside a task or a serial() block: the child's regions start afresh)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Pool:
    """Worker threads 1 .. n, started once, that run the regions of :func:`parallel_for` with the caller's thread
    (worker 0).

    Each worker waits on its own lock, ``go``, which the caller releases to start a region (after setting
    ``job``); the worker runs the region's loop (:func:`_worker_loop`), keeps the exception it may raise, and
    releases its own lock ``done``, which the caller takes back before the region ends. A region thus costs one
    hand-off to each worker and one back: an empty two-thread region takes about 24 us on a 2-core guest (Intel
    Xeon, Emerald Rapids), where ``concurrent.futures.ThreadPoolExecutor``, which builds a Future, a work item and
    a condition for every call, took 42 us; a ResNet-56 training step runs about 470 regions. The threads are
    daemons, so a program that never shuts the pool down still exits."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.job: tuple[Any, Any, int] | None = None  # (body, counter, num_tasks) of the region running, None: stop
        self.region = 0  # the number of the region running (or last run)
        self.finished = [0] * workers  # the last region each worker finished, marked after it released done
        self.errors: list[BaseException | None] = [None] * workers
        self.go = [threading.Lock() for _ in range(workers)]
        self.done = [threading.Lock() for _ in range(workers)]
        for lock in (*self.go, *self.done):
            lock.acquire()  # both held: a worker waits for go, the caller for done
        self.threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"minidl_{i + 1}", daemon=True) for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def _serve(self, i: int) -> None:
        """Worker i + 1's life: wait for a region, run its loop, report; until ``job`` is None."""
        while True:
            self.go[i].acquire()
            job = self.job
            if job is None:
                return
            region = self.region
            try:
                _worker_loop(job[0], i + 1, job[1], job[2])
            except BaseException as error:  # raised by the caller once every thread has stopped
                self.errors[i] = error
            finally:
                self.done[i].release()
                self.finished[i] = region

    def run(self, body: Callable[[int, int], Any], num_tasks: int, threads: int) -> None:
        """A region on ``threads`` threads: workers 1 .. threads - 1 and the calling thread, as worker 0.

        Every worker started is waited for before this returns or raises, also when a signal's exception (a
        KeyboardInterrupt: Ctrl-C in a notebook) cuts a wait short (:meth:`_wait`); that exception is raised once
        the workers are back. Else a worker would still run this region, or hold its ``done``, when the next starts."""
        counter = itertools.count()  # next() on it is atomic under the GIL
        self.region += 1
        self.job = (body, counter, num_tasks)
        started = 0
        interrupted: BaseException | None = None
        try:
            for i in range(threads - 1):
                self.go[i].release()
                started = i + 1
            _worker_loop(body, 0, counter, num_tasks)  # (its own exception, if any, is raised first)
        finally:
            for i in range(started):
                interrupted = self._wait(i) or interrupted
            self.job = None
            errors = [self.errors[i] for i in range(started)]
            self.errors = [None] * self.workers
        if interrupted is not None:
            raise interrupted
        for error in errors:
            if error is not None:
                raise error

    def _wait(self, i: int) -> BaseException | None:
        """Take back worker i's ``done`` lock for the region running: None, or the exception of a signal that cut
        the wait short. The signal may even come just after the lock was taken, so then: wait until the worker has
        marked the region finished (it does so after releasing the lock), and take the lock if it is still free."""
        try:
            self.done[i].acquire()
            return None
        except BaseException as error:
            while self.finished[i] != self.region:
                try:
                    time.sleep(0.001)
                except BaseException:  # (another Ctrl-C: the first one is raised)
                    pass
            if not self.done[i].locked():
                self.done[i].acquire()
            return error

    def shutdown(self) -> None:
        """Stop the workers (``job`` None wakes each to return) and wait for them."""
        self.job = None
        for lock in self.go:
            lock.release()
        for thread in self.threads:
            thread.join()


def _default_num_threads() -> int:
    value = os.environ.get("MINIDL_NUM_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"MINIDL_NUM_THREADS must be a positive integer, got {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """The number of threads :func:`parallel_for` uses (``MINIDL_NUM_THREADS``, else the available cores)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_num_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (the caller's and n - 1 workers) in the Numba backend's kernels.

    Raises:
        ValueError: ``n`` is not a positive integer.
        RuntimeError: called inside a task of :func:`parallel_for` or a :func:`serial` block (which hold the pool).
    """
    global _num_threads, _pool, _pool_workers
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    if in_region():
        raise RuntimeError(
            "set_num_threads: called inside a parallel region or a serial() block, which holds the thread pool; "
            "call it outside them"
        )
    with _lock:
        if _pool is not None:
            _pool.shutdown()
            _pool, _pool_workers = None, 0
        _num_threads = n


def _worker_loop(body: Callable[[int, int], Any], worker: int, counter: Any, num_tasks: int) -> None:
    """Take task numbers from the shared counter until none are left (dynamic scheduling: a slower core, or one
    shared with another process, simply takes fewer tasks)."""
    _local.worker = worker
    try:
        for task in iter(counter.__next__, None):
            if task >= num_tasks:
                return
            body(worker, task)
    finally:
        _local.worker = None


def in_region() -> bool:
    """Whether the calling thread runs a task of :func:`parallel_for` (where a nested region runs serially)."""
    return getattr(_local, "worker", None) is not None


@contextlib.contextmanager
def serial() -> Iterator[None]:
    """Run every :func:`parallel_for` of the block in the calling thread, as worker 0 (as a region nested in a task
    runs): for work too small to pay for waking the pool's threads. The block holds the pool as a region does (one at
    a time, so worker 0's buffers are the block's; :func:`set_num_threads` inside it raises). Inside a task it changes
    nothing."""
    if in_region():
        yield
        return
    with _lock:
        _local.worker = 0
        try:
            yield
        finally:
            _local.worker = None


def parallel_for(body: Callable[[int, int], Any], num_tasks: int, max_threads: int | None = None) -> None:
    """Call ``body(worker, task)`` for every ``task`` in ``range(num_tasks)``, on up to ``get_num_threads()`` threads
    (and at most ``max_threads``).

    ``worker`` (0 .. threads - 1) identifies the thread, so ``body`` may use per-worker buffers and accumulators;
    worker 0 is the calling thread. Tasks are handed out in order as threads become free. ``body`` should spend its
    time in code that releases the GIL (``@njit(nogil=True)`` kernels, NumPy's matmul). An exception in any task is
    raised here, after every thread has stopped. One region runs at a time (calls from several threads wait for
    each other); called from inside a task, it runs serially in that task's thread, as the same worker.
    """
    global _pool, _pool_workers
    if num_tasks <= 0:
        return
    outer = getattr(_local, "worker", None)
    if outer is not None:  # nested inside a task
        for task in range(num_tasks):
            body(outer, task)
        return
    threads = min(get_num_threads(), num_tasks, max_threads or num_tasks)
    with _lock:
        if threads == 1:
            _worker_loop(body, 0, itertools.count(), num_tasks)
            return
        if _pool is None or _pool_workers < threads - 1:
            if _pool is not None:
                _pool.shutdown()
            _pool_workers = get_num_threads() - 1
            _pool = _Pool(_pool_workers)
        _pool.run(body, num_tasks, threads)


def parallel_loops(body: Callable[[int, Any], Any], num_tasks: int, max_threads: int | None = None) -> None:
    """:func:`parallel_for` for tasks that run in compiled code: instead of one Python call per task, one call
    ``body(worker, counter)`` per thread, where ``counter`` is a one-element int64 array, 0 at the start, shared by
    all the calls. ``body`` hands it to a compiled loop that takes task numbers from it with
    :func:`~minidl.backend._numba_tasks.next_task` until one is ``num_tasks`` or more, so that the threads share the
    tasks as :func:`parallel_for`'s do (each takes the next as it becomes free), with no Python between two of them.
    (Between two Winograd chunks, a :func:`parallel_for` task's Python, its scratch buffers and the kernel call,
    took 20-35 us in a ResNet's training step, 3-4x what it takes alone: the chunk before has evicted the
    interpreter's data from the caches.)

    There are as many calls as :func:`parallel_for` would use threads for ``num_tasks`` tasks; one where the calls
    could not run at the same time (nested in a task, in a :func:`serial` block, one thread). Each call runs on a
    free thread: a thread that comes late may find every task taken (its call returns at once), and one thread may
    run two calls one after the other. So a body may wait for a task another call has *taken* (it is running), never
    for one no call has taken yet.
    """
    counter = numpy.zeros(1, dtype=numpy.int64)
    threads = 1 if in_region() else min(get_num_threads(), num_tasks, max_threads or num_tasks)
    parallel_for(lambda worker, _: body(worker, counter), threads)


# ---------------------------------------------------------------------------------------------------- BLAS threads
def _openblas() -> Any:
    """(set_num_threads, get_num_threads, get_corename) of the OpenBLAS NumPy loaded, or None if none is found."""
    global _blas
    if _blas is not None:
        return _blas or None
    candidates = []
    try:
        with open("/proc/self/maps") as maps:  # the library actually loaded (Linux)
            candidates = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:
        pass
    root = os.path.dirname(os.path.dirname(numpy.__file__))
    candidates += glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) + glob.glob(
        os.path.join(root, "numpy", ".dylibs", "*openblas*")
    )
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (
            ("scipy_openblas", "64_"),
            ("scipy_openblas", ""),
            ("openblas", "64_"),
            ("openblas", ""),
        ):
            try:
                set_fn = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                get_fn = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            except AttributeError:
                continue
            set_fn.argtypes, set_fn.restype, get_fn.restype = [ctypes.c_int], None, ctypes.c_int
            core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            if core is not None:
                core.restype = ctypes.c_char_p
            _blas = (set_fn, get_fn, core, path)
            return _blas
    _blas = False
    return None


def blas_threads_wanted() -> int:
    """BLAS threads per call while the Numba backend runs: ``MINIDL_BLAS_THREADS``, default 1.

    More than 1 together with more than one minidl thread oversubscribes the cores (both pools then fight over
    them); it exists to measure that, or, with ``MINIDL_NUM_THREADS=1``, to let BLAS parallelize each GEMM instead.
    """
    value = os.environ.get("MINIDL_BLAS_THREADS", "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MINIDL_BLAS_THREADS must be a positive integer, got {value!r}")
    return int(value)


def set_blas_num_threads(n: int) -> bool:
    """Limit the BLAS library NumPy uses to ``n`` threads; False if it could not be done (then nothing changed).

    Uses ``threadpoolctl`` when installed (any BLAS), else OpenBLAS's ``openblas_set_num_threads``.
    """
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(limits=n, user_api="blas")
        return True
    except ImportError:
        pass
    blas = _openblas()
    if blas is None:
        return False
    blas[0](int(n))
    return True


def blas_info() -> dict[str, Any]:
    """What runs the GEMMs: library path, OpenBLAS core type and threads (None where unknown), OPENBLAS_CORETYPE."""
    blas = _openblas()
    info: dict[str, Any] = {"library": None, "corename": None, "threads": None}
    if blas is not None:
        set_fn, get_fn, core, path = blas
        info.update(library=os.path.basename(path), threads=int(get_fn()))
        if core is not None:
            info["corename"] = core().decode()
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
    return info
