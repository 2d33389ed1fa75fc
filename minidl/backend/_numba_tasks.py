"""Counters that the threads of a region share in compiled code: how a thread's compiled loop takes its next task.

:func:`minidl.backend._threads.parallel_for` calls a Python ``body(worker, task)`` for every task. Where the tasks are
many and short (the chunks of a batch, 16-26 per layer), the Python between two of them costs more than it seems
(20-35 us per Winograd chunk in a ResNet's training step: the chunk before has evicted the interpreter's data from
the caches). :func:`~minidl.backend._threads.parallel_loops` instead calls ``body(worker, counter)`` once per thread,
and the body hands ``counter``, a shared one-element int64 array, to a compiled loop::

    k = next_task(counter)
    while k < tasks:
        ...  # task k
        k = next_task(counter)

``next_task`` must give every number to exactly one thread, even when two threads ask at the same moment. NumPy and
Python have no such operation (``counter[0] += 1`` is a load, an add and a store: two threads can load the same
value), but every CPU has one: an *atomic* read-and-add (x86's ``lock xadd``), which no other core can interleave.
Numba's ``@intrinsic`` lets a function write LLVM's IR itself; :func:`atomic_add` and :func:`atomic_load` emit the
atomic instructions. Both are sequentially consistent: what a thread wrote before its atomic add is visible to a
thread that reads the counter after it (the BatchNorm's loops, ``_numba_batchnorm_cl.py``, rely on that between
their two passes).

They take a C-contiguous 1-D int64 array only (an intrinsic sees raw memory: any other array would be read as
int64s), index it without a bounds check or negative wrap-around, and run in compiled code only; under
``NUMBA_DISABLE_JIT=1`` (plain Python, for debugging) the two intrinsics are Python functions doing the same under
one lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from numba import config, njit, types
from numba.extending import intrinsic

_INT64_VECTOR = types.Array(types.int64, 1, "C")


@intrinsic
def atomic_add(typingctx, a, i, value):
    """``a[i] += value`` as one atomic step on the int64 array ``a``; returns a[i] from before the add."""
    if a != _INT64_VECTOR:
        return None  # (Numba then reports that no signature matches)
    sig = types.int64(a, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", builder.gep(array.data, [args[1]]), args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, a, i):
    """``a[i]`` of the int64 array ``a``, read as one atomic step (never kept from an earlier read: a loop that waits
    for another thread's store sees it)."""
    if a != _INT64_VECTOR:
        return None
    sig = types.int64(a, types.intp)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(array.data, [args[1]]), "seq_cst", 8)

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def next_task(counter):
    """The next task number of a region whose threads each run one compiled loop over its tasks: ``counter[0]``,
    incremented in the same atomic step, so that no two threads get the same number and every number is handed out
    once. The loop stops at the first number past its last task."""
    return atomic_add(counter, 0, 1)


_SPINS = 1 << 12  # tries (atomic loads) a waiting thread makes in compiled code before it gives its core away once


@njit(cache=True, nogil=True)
def wait_until(a, i, value, failed, spins):
    """Up to ``spins`` atomic loads of a[i]: 1 as soon as a[i] >= value, -1 if a[failed] < 0 (a thread failed: what
    is waited for may never come), 0 if neither happened."""
    for _ in range(spins):
        if atomic_load(a, i) >= value:
            return 1
        if atomic_load(a, failed) < 0:
            return -1
    return 0


def wait_for(a: Any, i: int, value: int, failed: int = 1) -> bool:
    """Wait until ``a[i] >= value`` (another thread's count, ``a`` a C-contiguous int64 vector): True, or False if
    ``a[failed] < 0``. The wait spins in compiled code for a moment (the other thread is usually about to finish),
    then gives the core away between two tries (``os.sched_yield``): on a machine whose cores are busy with other
    work, a thread spinning without end would take the core of the very thread it waits for (the F(4x4, 3x3)
    backward of 32 channels at 16 x 16, batch 128, took 5.8-5.9 ms against 4.2-4.5 so, with one busy process beside
    it on the 2-core Intel guest; yielding, 4.2-4.3 ms)."""
    while True:
        status = wait_until(a, i, value, failed, _SPINS)
        if status:
            return status > 0
        _give_way()


_give_way = getattr(os, "sched_yield", lambda: time.sleep(0))  # (Windows has no sched_yield)


@contextlib.contextmanager
def failing_stops_waits(a: Any, failed: int = 1) -> Iterator[None]:
    """Around a thread's share of a region whose threads wait for each other's work (:func:`wait_for` with the same
    ``a`` and ``failed``): if it raises, ``a[failed] = -1``, so that the threads waiting for its work (which will
    never come) stop instead of waiting forever; the region then raises the error
    (:func:`~minidl.backend._threads.parallel_for`)."""
    try:
        yield
    except BaseException:
        a[failed] = -1  # (a plain store: the waiting threads' atomic loads see it)
        raise


if config.DISABLE_JIT:  # plain Python (NUMBA_DISABLE_JIT=1, for debugging): the same steps under one lock
    _lock = threading.Lock()  # (next_task, plain Python then, calls these)

    def atomic_add(a, i, value):
        with _lock:
            old = int(a[i])
            a[i] = old + value
        return old

    def atomic_load(a, i):
        with _lock:
            return int(a[i])
