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

import threading

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
