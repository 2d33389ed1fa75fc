"""The Numba backend as a whole: a training step on both backends, dtypes other than float32/float64, its thread pool
(``minidl/backend/_threads.py``), and the message when Numba is missing.

The kernels one by one are in ``test_kernels.py`` (every entry of the table against its reference pair) and the
``test_numba_*.py`` files (one algorithm at a time).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import minidl
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

from minidl.backend import _threads  # noqa: E402


# ---------------------------------------------------------------------------------------------------- a training step
def _training_step_on_both_backends(dtype):
    """Loss, input gradient and parameter gradients of one cifar_cnn step (batch 6) on NumPy, then on Numba."""
    from minidl import nn
    from minidl.models import cifar_cnn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 32, 32)).astype(dtype)
    y = rng.integers(0, 10, 6)
    with minidl.use_backend("numpy"):
        minidl.set_default_dtype(dtype)
        minidl.manual_seed(0)
        model = cifar_cnn()
    loss_fn = nn.CrossEntropyLoss()
    results = []
    for name in ("numpy", "numba"):
        with minidl.use_backend(name):
            minidl.manual_seed(1)  # the same dropout mask on both backends
            model.zero_grad()
            loss = loss_fn(model(x), y)
            dx = model.backward(loss_fn.backward())
            results.append((loss, dx, {k: p.grad.copy() for k, p in model.named_parameters()}))
    return results


def test_a_cifar_cnn_training_step_gives_the_same_loss_and_gradients_on_both_backends():
    # float64: the two backends agree to rounding everywhere, through every layer of the backward pass
    (loss, dx, grads), (fast_loss, fast_dx, fast_grads) = _training_step_on_both_backends(np.float64)
    np.testing.assert_allclose(fast_loss, loss, rtol=1e-12)
    np.testing.assert_allclose(fast_dx, dx, rtol=1e-7, atol=1e-12)
    for key, grad in grads.items():
        np.testing.assert_allclose(fast_grads[key], grad, rtol=1e-7, atol=1e-12, err_msg=key)


def test_a_float32_training_step_agrees_within_float32_tolerance():
    # float32: the forward agrees to rounding; behind a max-pool, two values of a window that differ by a rounding
    # error can swap which one is the maximum and send that window's gradient elsewhere (on either backend), so the
    # layers below the last max-pool are compared by the norm of their gradient only
    (loss, dx, grads), (fast_loss, fast_dx, fast_grads) = _training_step_on_both_backends(np.float32)
    np.testing.assert_allclose(fast_loss, loss, rtol=1e-5)
    for key in ("classifier.1.weight", "classifier.1.bias", "features.15.weight", "features.15.bias"):
        np.testing.assert_allclose(fast_grads[key], grads[key], atol=5e-4, rtol=5e-3, err_msg=key)
    for key, grad in [*grads.items(), ("dx", dx)]:
        fast = fast_dx if key == "dx" else fast_grads[key]
        relative = np.linalg.norm(fast - grad) / np.linalg.norm(grad)
        assert relative < 5e-2, f"{key}: relative difference {relative:.3g} of the gradient's norm"


# ---------------------------------------------------------------------------------------------------- dtypes
def test_other_float_dtypes_run_in_float32_and_keep_their_dtype():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    with minidl.use_backend("numba"):
        out, cache = F.conv2d_forward(x, w, None, 1, 1)
        assert isinstance(cache, KernelCache)
        dx, dw, _ = F.conv2d_backward(out, cache)
        pooled, pool_cache = F.max_pool2d_forward(x, 2)
        relu_out, relu_cache = F.relu_forward(x)
    with minidl.use_backend("numpy"):
        ref_out, _ = F.conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), ref_out, atol=2e-2, rtol=2e-2)
    assert dx.dtype == dw.dtype == np.float16
    assert isinstance(pool_cache, KernelCache) and pooled.dtype == np.float16
    assert pool_cache.cache[0].dtype == np.int32  # the argmax offsets, as the reference's
    assert isinstance(relu_cache, KernelCache) and relu_out.dtype == np.float16


# ---------------------------------------------------------------------------------------------------- threads
def test_parallel_for_runs_every_task_once_and_raises_task_errors():
    seen = []
    _threads.parallel_for(lambda worker, task: seen.append(task), 50)
    assert sorted(seen) == list(range(50))

    def fail(worker, task):
        if task == 7:
            raise ValueError("task 7 failed")

    with pytest.raises(ValueError, match="task 7 failed"):
        _threads.parallel_for(fail, 20)


def test_an_error_in_a_pool_thread_is_raised_once_after_every_thread_stopped():
    # the pool's own threads (workers 1 ..) keep a task's exception for the caller, which raises it when the region
    # ends, not again in the next region; the threads are minidl's, named by their worker number, and set_num_threads
    # stops them
    before = minidl.get_num_threads()
    minidl.set_num_threads(3)
    try:
        started, names, finished = threading.Barrier(3), {}, []

        def body(worker, task):
            started.wait(timeout=10)  # three tasks at once: one on each thread
            names[worker] = threading.current_thread().name
            if worker == 2:
                raise KeyError("worker 2 failed")
            time.sleep(0.01)
            finished.append(worker)

        with pytest.raises(KeyError, match="worker 2 failed"):
            _threads.parallel_for(body, 3)
        assert sorted(finished) == [0, 1]  # the others ran to the end before the error was raised
        assert names[1] == "minidl_1" and names[2] == "minidl_2"
        seen = []
        _threads.parallel_for(lambda worker, task: seen.append(task), 9)  # no stale error
        assert sorted(seen) == list(range(9))
        pool_threads = list(_threads._pool.threads)
        minidl.set_num_threads(before)
        assert _threads._pool is None and not any(thread.is_alive() for thread in pool_threads)
    finally:
        minidl.set_num_threads(before)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals")
def test_a_signal_while_the_caller_waits_for_a_worker_leaves_the_pool_in_step():
    # Ctrl-C in a notebook: a signal's exception cuts the caller's wait for a worker short; the caller still waits
    # for the worker, then raises it, and the next region waits for its own workers (no stale lock, no stale error)
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread")

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, handler)
    before = minidl.get_num_threads()
    minidl.set_num_threads(2)
    try:
        both, finished = threading.Barrier(2), []

        def body(worker, task):
            both.wait(timeout=10)  # one task on each thread
            if worker == 1:
                time.sleep(0.3)  # the caller waits for this worker meanwhile, and gets the signal
                finished.append(task)

        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        with pytest.raises(Interrupted):
            _threads.parallel_for(body, 2)
        assert len(finished) == 1  # raised only once the worker was back
        for _ in range(3):
            seen = []

            def slow(worker, task, seen=seen):
                time.sleep(0.01)
                seen.append(task)

            _threads.parallel_for(slow, 6)
            assert sorted(seen) == list(range(6))  # every task done when the region returns
    finally:
        signal.signal(signal.SIGUSR1, previous)
        minidl.set_num_threads(before)


def test_nested_parallel_for_runs_serially_as_the_same_worker():
    pairs = []

    def outer(worker, task):
        _threads.parallel_for(lambda inner_worker, inner_task: pairs.append((worker, inner_worker)), 3)

    _threads.parallel_for(outer, 8)
    assert len(pairs) == 24 and all(w == inner for w, inner in pairs)


def test_parallel_loops_hand_every_task_once_to_the_threads_compiled_loops():
    # parallel_loops calls body(worker, counter) as many times as there are threads (no more than tasks), each call on
    # a free thread; each call's compiled loop takes task numbers from the shared counter with next_task (one atomic
    # add), so every task runs exactly once, whichever thread takes it
    from numba import njit

    from minidl.backend._numba_tasks import next_task

    @njit(nogil=True)
    def take_tasks(counter, num_tasks, runs, by):
        k = next_task(counter)
        while k < num_tasks:
            runs[k] += 1
            by[k] += counter.size  # (more work between two atomic adds)
            k = next_task(counter)

    before = minidl.get_num_threads()
    minidl.set_num_threads(3)
    try:
        for num_tasks in (0, 1, 2, 5, 100_000):
            runs, by, workers = np.zeros(num_tasks, np.int64), np.zeros(num_tasks, np.int64), []

            def body(worker, counter, runs=runs, by=by, workers=workers, num_tasks=num_tasks):
                workers.append(worker)
                take_tasks(counter, num_tasks, runs, by)

            _threads.parallel_loops(body, num_tasks)
            assert len(workers) == min(3, num_tasks) and set(workers) <= {0, 1, 2}
            assert (runs == 1).all() and (by == 1).all()
    finally:
        minidl.set_num_threads(before)


def test_serial_block_runs_every_region_in_the_calling_thread():
    # _threads.serial(): every parallel_for of the block runs in the caller's thread as worker 0, in task order (a
    # nested serial() changes nothing); after the block, even one left by an exception, regions use the pool again
    import threading

    before = minidl.get_num_threads()
    minidl.set_num_threads(2)
    try:
        caller, seen = threading.get_ident(), []
        with _threads.serial():
            assert _threads.in_region()
            _threads.parallel_for(lambda worker, task: seen.append((worker, task, threading.get_ident())), 6)
            with _threads.serial():
                _threads.parallel_for(lambda worker, task: seen.append((worker, task, threading.get_ident())), 2)
        assert seen == [(0, t, caller) for t in range(6)] + [(0, t, caller) for t in range(2)]
        with pytest.raises(ValueError, match="inside"), _threads.serial():
            raise ValueError("inside")
        assert not _threads.in_region()
        with _threads.serial(), pytest.raises(RuntimeError, match="set_num_threads: called inside .* serial"):
            minidl.set_num_threads(1)  # (it would wait for the pool the block holds)
        both = threading.Barrier(2, timeout=30)  # two tasks that each wait for the other: two threads ran them
        _threads.parallel_for(lambda worker, task: both.wait(), 2)
    finally:
        minidl.set_num_threads(before)


def test_serial_blocks_of_two_threads_take_turns():
    # serial() holds the pool as a region does: a second Python thread's block waits for the first's to end (they
    # would share worker 0's scratch buffers), so each block's tasks come out together
    import threading

    order, start = [], threading.Barrier(2, timeout=30)

    def run(name):
        start.wait()
        with _threads.serial():
            _threads.parallel_for(lambda worker, task: (order.append(name), time.sleep(0.001)), 5)

    threads = [threading.Thread(target=run, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(order) == list("aaaaabbbbb") and order in (list("aaaaabbbbb"), list("bbbbbaaaaa")), order


@pytest.mark.parametrize(("N", "one_thread"), [(2, True), (64, False)])
def test_small_convolutions_run_in_the_calling_thread(monkeypatch, N, one_thread):
    # a convolution with few values and multiply-adds (_numba_conv._one_thread_if_small) runs every region of its
    # forward and backward in the calling thread; a bigger one uses the pool. The results are the same bits
    from minidl.backend import _numba_conv

    be = minidl.get_backend("numba")
    before = minidl.get_num_threads()
    minidl.set_num_threads(2)
    regions = []
    original = _threads.parallel_for

    def spy(body, num_tasks, max_threads=None):
        regions.append(_threads.in_region())
        return original(body, num_tasks, max_threads)

    monkeypatch.setattr(_threads, "parallel_for", spy)
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    try:
        with minidl.use_backend("numba"):
            results = []
            for values in (_numba_conv._ONE_THREAD_VALUES, 0):  # as set, and never in one thread
                monkeypatch.setattr(_numba_conv, "_ONE_THREAD_VALUES", values)
                regions.clear()
                out, cache = F.conv2d_forward(x, w, None, 1, 1)
                results.append((out, *F.conv2d_backward(np.ones_like(out), cache)[:2]))
                assert regions and (all(regions) if values and one_thread else not any(regions)), (values, regions)
    finally:
        minidl.set_num_threads(before)
    assert be is minidl.get_backend("numba")
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_pool_works_in_a_forked_child():
    # a DataLoader worker process is a fork: the parent's pool threads do not exist there
    before = minidl.get_num_threads()
    minidl.set_num_threads(2)
    try:
        _threads.parallel_for(lambda worker, task: None, 4)  # the parent's pool is running
        pid = os.fork()
        if pid == 0:  # the child: run a region, report by the exit status
            done = []
            _threads.parallel_for(lambda worker, task: done.append(task), 10)
            os._exit(0 if sorted(done) == list(range(10)) else 1)
        _, status = os.waitpid(pid, 0)
        assert status == 0
    finally:
        minidl.set_num_threads(before)


def test_set_num_threads_validates_and_blas_info_reports():
    with pytest.raises(ValueError, match="positive integer"):
        minidl.set_num_threads(0)
    info = _threads.blas_info()
    assert {"library", "corename", "threads", "OPENBLAS_CORETYPE"} <= set(info)


def test_missing_numba_gives_an_install_hint(monkeypatch):
    import minidl.backend

    for module in ("numba_backend", "_numba_kernels"):  # forget the loaded modules, so the import runs again
        monkeypatch.delitem(sys.modules, f"minidl.backend.{module}", raising=False)
        monkeypatch.delattr(minidl.backend, module, raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" now raises ImportError
    with pytest.raises(ImportError, match=r"pip install numba"):
        import minidl.backend.numba_backend  # noqa: F401


def test_float16_passed_by_keyword_runs_in_float32_too():
    x = np.linspace(-3, 3, 10).astype(np.float16)
    with minidl.use_backend("numba"):
        out, cache = F.sigmoid_forward(x=x)
    assert isinstance(cache, KernelCache) and out.dtype == np.float16
    with minidl.use_backend("numpy"):
        expected = F.sigmoid_forward(x.astype(np.float32))[0]
    np.testing.assert_allclose(out.astype(np.float32), expected, atol=1e-3, rtol=1e-3)
