"""DataLoader, datasets combinators, collation: semantics, reproducibility, workers (processes and threads)."""

from __future__ import annotations

import collections
import gc
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    Subset,
    TensorDataset,
    default_collate,
    get_worker_info,
    random_split,
    worker_generator,
)

WORKERS = [(0, "process"), (1, "process"), (2, "process"), (1, "thread"), (2, "thread")]


class Noisy(Dataset):
    """Sample i: (i as float32 vector + augmentation noise drawn from minidl's default generator, label i)."""

    def __init__(self, n: int = 37) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        # both routes lead to the batch generator (in a worker thread, default_generator() forwards to it)
        assert worker_generator().bit_generator.state == minidl.default_generator().bit_generator.state
        noise = minidl.default_generator().random(3)
        return (np.full(3, i, np.float32) + noise.astype(np.float32), i)


class FailsAt(Dataset):
    def __init__(self, bad: int, n: int = 40) -> None:
        self.bad, self.n = bad, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i == self.bad:
            raise_deep_inside(i)
        return np.zeros(2, np.float32), i


def raise_deep_inside(i: int) -> None:
    raise ValueError(f"pixel decoder broke on {i}")


class WhoLoads(Dataset):
    """Sample i: (i, worker id or -1, pid, thread id)."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int):
        info = get_worker_info()
        return i, -1 if info is None else info.id, os.getpid(), threading.get_ident()


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("minidl-DataLoader-worker")]


def _no_workers_left() -> bool:
    for _ in range(50):  # joins happen in the shutdown; allow the OS a moment to reap
        gc.collect()
        if not multiprocessing.active_children() and not _worker_threads():
            return True
        time.sleep(0.05)
    return False


def _epoch(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


# ------------------------------------------------------------------------------------------------- batching semantics
@given(
    n=st.integers(1, 40), batch_size=st.integers(1, 12), drop_last=st.booleans(), shuffle=st.booleans(),
    seed=st.integers(0, 2**32),
)  # fmt: skip
def test_batches_cover_the_dataset(n, batch_size, drop_last, shuffle, seed):
    ds = TensorDataset(np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)
    batches = list(loader)
    expected_len = n // batch_size if drop_last else -(-n // batch_size)
    assert len(loader) == len(batches) == expected_len
    for k, (x, y) in enumerate(batches):
        full = k < n // batch_size
        assert x.shape == ((batch_size if full else n % batch_size), 2) and x.dtype == np.float32
        assert y.dtype == np.int64 and np.array_equal(x[:, 0], 2 * y)
    seen = np.concatenate([y for _, y in batches]) if batches else np.zeros(0, np.int64)
    assert len(set(seen.tolist())) == len(seen), "no index twice in one epoch"
    if drop_last:
        assert len(seen) == (n // batch_size) * batch_size
    else:
        assert sorted(seen.tolist()) == list(range(n))
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))


def test_shuffle_reproducible_from_seed_and_new_each_epoch():
    ds = TensorDataset(np.arange(100))
    a, b = DataLoader(ds, batch_size=10, shuffle=True, seed=7), DataLoader(ds, batch_size=10, shuffle=True, seed=7)
    order = lambda loader: np.concatenate([x for (x,) in loader]).tolist()  # noqa: E731
    a1, a2, b1, b2 = order(a), order(a), order(b), order(b)
    assert a1 == b1 and a2 == b2, "the same seed must give the same epochs"
    assert a1 != a2, "each epoch must have a new permutation"
    assert sorted(a1) == sorted(a2) == list(range(100))
    assert order(DataLoader(ds, batch_size=10, shuffle=True, seed=8)) != a1


def test_shuffle_without_seed_follows_manual_seed():
    ds = TensorDataset(np.arange(50))
    order = lambda: np.concatenate([x for (x,) in DataLoader(ds, batch_size=50, shuffle=True)]).tolist()  # noqa: E731
    minidl.manual_seed(3)
    first = [order(), order()]
    minidl.manual_seed(3)
    assert [order(), order()] == first
    assert first[0] != first[1]


@pytest.mark.parametrize("num_workers, worker_type", WORKERS)
def test_augmentation_identical_for_any_workers(num_workers, worker_type):
    ds = Noisy()
    reference = _epoch(DataLoader(ds, batch_size=5, shuffle=True, seed=11))
    loader = DataLoader(ds, batch_size=5, shuffle=True, seed=11, num_workers=num_workers, worker_type=worker_type)
    got = _epoch(loader)
    assert len(got) == len(reference) == 8
    for (x, y), (rx, ry) in zip(got, reference, strict=True):
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(x, rx)
    second = _epoch(loader)
    assert not np.array_equal(np.concatenate([x for x, _ in second]), np.concatenate([x for x, _ in got]))
    noise = np.concatenate([x for x, _ in got]) - np.concatenate([y for _, y in got])[:, None]
    assert noise.std() > 0.1, "samples must not share one noise draw"


def test_global_generator_restored_after_iteration():
    before = minidl.default_generator()
    for workers, kind in [(0, "process"), (2, "thread")]:
        for _ in DataLoader(Noisy(), batch_size=4, num_workers=workers, worker_type=kind, seed=0):
            pass
        assert minidl.default_generator() is before
    assert type(minidl.default_generator()) is np.random.Generator


def test_loader_iterated_in_a_user_thread():
    reference = _epoch(DataLoader(Noisy(), batch_size=4, seed=9))
    out = []
    thread = threading.Thread(target=lambda: out.append(_epoch(DataLoader(Noisy(), batch_size=4, seed=9))))
    before = minidl.default_generator()
    thread.start()
    thread.join()
    for (x, _), (rx, _) in zip(out[0], reference, strict=True):
        np.testing.assert_array_equal(x, rx)
    assert minidl.default_generator() is before


def test_manual_seed_inside_loop_with_thread_workers():
    loader = DataLoader(Noisy(), batch_size=4, num_workers=2, worker_type="thread", seed=1)
    reference = _epoch(DataLoader(Noisy(), batch_size=4, seed=1))
    got = []
    for k, (x, _) in enumerate(loader):
        if k == 2:
            g = minidl.manual_seed(5)  # the training loop reseeds while workers run
        got.append(x.copy())
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate([x for x, _ in reference]))
    assert minidl.default_generator() is g


@pytest.mark.parametrize("num_workers, worker_type", WORKERS[1:])
def test_worker_info(num_workers, worker_type):
    rows = list(DataLoader(WhoLoads(), batch_size=3, num_workers=num_workers, worker_type=worker_type))
    ids = np.concatenate([r[1] for r in rows])
    assert set(ids.tolist()) == set(range(num_workers))
    pids, tids = np.concatenate([r[2] for r in rows]), np.concatenate([r[3] for r in rows])
    if worker_type == "process":
        assert os.getpid() not in pids.tolist()
    else:
        assert set(pids.tolist()) == {os.getpid()} and threading.get_ident() not in tids.tolist()
    assert get_worker_info() is None


def test_batches_in_order_with_uneven_workers():
    class Slow(Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, i):
            if i % 6 == 0:
                time.sleep(0.01)  # makes batches finish out of order
            return i

    for kind in ("process", "thread"):
        out = [b.tolist() for b in DataLoader(Slow(), batch_size=3, num_workers=2, worker_type=kind)]
        assert out == [[i, i + 1, i + 2] for i in range(0, 30, 3)]


def test_bounded_prefetch():
    fetched = []

    class Counting(Dataset):
        def __len__(self):
            return 400

        def __getitem__(self, i):
            fetched.append(i)
            return i

    loader = DataLoader(Counting(), batch_size=4, num_workers=2, worker_type="thread", prefetch_factor=3)
    it = iter(loader)
    next(it)
    time.sleep(0.3)  # give the workers every chance to run ahead; the bound must hold regardless
    assert len(fetched) <= (3 * 2 + 1) * 4
    del it
    assert _no_workers_left()


def test_device_option():
    ds = TensorDataset(np.ones((4, 2), np.float32), np.arange(4))
    x, _ = next(iter(DataLoader(ds, batch_size=4, device="numpy")))
    assert minidl.get_backend("numpy").is_array(x) and x.shape == (4, 2)
    for device in ("current", minidl.get_backend()):  # the backend under test (cupy in a GPU run)
        x, y = next(iter(DataLoader(ds, batch_size=4, device=device)))
        assert minidl.get_backend().is_array(x) and x.shape == (4, 2)
    with pytest.raises(ValueError, match="unknown backend"):
        DataLoader(ds, device="tpu")


# ------------------------------------------------------------------------------------------------- errors in workers
@pytest.mark.parametrize("num_workers, worker_type", WORKERS[1:])
def test_worker_exception_names_sample_and_traceback(num_workers, worker_type):
    loader = DataLoader(FailsAt(13), batch_size=4, num_workers=num_workers, worker_type=worker_type)
    seen = []
    with pytest.raises(ValueError, match="sample index 13") as info:
        for _, y in loader:
            seen.append(y)
    message = str(info.value)
    assert "pixel decoder broke on 13" in message and "raise_deep_inside" in message and "Original traceback" in message
    assert "worker" in message and "(batch 3)" in message
    assert len(seen) == 3, "the batches before the failing one are delivered in order"
    assert _no_workers_left()


def test_main_process_exception_keeps_type_and_adds_note():
    with pytest.raises(ValueError, match="pixel decoder broke on 5") as info:
        list(DataLoader(FailsAt(5), batch_size=4))
    assert any("sample index 5" in note for note in getattr(info.value, "__notes__", ["sample index 5"]))


def test_worker_init_fn_failure_and_success():
    calls = []
    list(DataLoader(Noisy(), batch_size=8, num_workers=2, worker_type="thread", worker_init_fn=calls.append))
    assert sorted(calls) == [0, 1]

    def broken(worker_id):
        raise KeyError("no such config")

    with pytest.raises(RuntimeError, match="worker_init_fn"):
        list(DataLoader(Noisy(), batch_size=8, num_workers=1, worker_type="process", worker_init_fn=broken))
    assert _no_workers_left()


def test_dead_worker_process_is_reported():
    class Dies(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            if get_worker_info() is not None and i == 5:
                os._exit(3)
            return i

    with pytest.raises(RuntimeError, match="exited unexpectedly with exit code 3"):
        list(DataLoader(Dies(), batch_size=2, num_workers=1))
    assert _no_workers_left()


# ------------------------------------------------------------------------------------------------- worker lifetime
@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_no_worker_left_after_break(worker_type):
    loader = DataLoader(Noisy(200), batch_size=4, num_workers=2, worker_type=worker_type)
    for k, _ in enumerate(loader):
        if worker_type == "process":
            assert len(multiprocessing.active_children()) == 2
        else:
            assert len(_worker_threads()) == 2
        if k == 1:
            break
    assert _no_workers_left()
    it = iter(loader)  # a half-consumed iterator dropped by garbage collection
    next(it)
    del it
    assert _no_workers_left()

    def consume():
        for _ in loader:
            raise KeyError("the training step failed")

    with pytest.raises(KeyError):
        consume()
    assert _no_workers_left()


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_persistent_workers(worker_type):
    loader = DataLoader(WhoLoads(), batch_size=4, num_workers=2, worker_type=worker_type, persistent_workers=True)
    pids = lambda: {(p, t) for _, _, ps, ts in loader for p, t in zip(ps.tolist(), ts.tolist(), strict=True)}  # noqa: E731
    first, second = pids(), pids()
    assert first == second, "persistent workers serve every epoch"
    for k, _ in enumerate(loader):
        if k == 1:
            break
    assert [b.tolist() for b, *_ in loader] == [list(range(i, i + 4)) for i in range(0, 24, 4)]
    pairs = list(zip(loader, loader, strict=True))  # two live iterators: the second gets workers of its own
    assert (
        [a[0].tolist() for a, _ in pairs]
        == [b[0].tolist() for _, b in pairs]
        == [list(range(i, i + 4)) for i in range(0, 24, 4)]
    )
    loader.close()
    assert _no_workers_left()
    with pytest.raises(ValueError, match="num_workers > 0"):
        DataLoader(WhoLoads(), persistent_workers=True)


def test_spawn_context():
    ds = TensorDataset(np.arange(12, dtype=np.float32).reshape(6, 2), np.arange(6))
    loader = DataLoader(ds, batch_size=2, num_workers=1, multiprocessing_context="spawn", shuffle=True, seed=2)
    expected = [y.tolist() for _, y in DataLoader(ds, batch_size=2, shuffle=True, seed=2)]
    assert [y.tolist() for _, y in loader] == expected
    assert _no_workers_left()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_empty_epoch(num_workers):
    ds = TensorDataset(np.zeros((3, 2)))
    assert list(DataLoader(ds, batch_size=4, drop_last=True, num_workers=num_workers)) == []
    assert list(DataLoader(TensorDataset(np.zeros((0, 2))), num_workers=num_workers)) == []
    assert _no_workers_left()


def test_bad_arguments():
    ds = TensorDataset(np.zeros(3))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        DataLoader(ds, batch_size=2.0)
    with pytest.raises(ValueError, match="num_workers must be >= 0, got -1"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="worker_type must be 'process' or 'thread', got 'gpu'"):
        DataLoader(ds, worker_type="gpu")
    with pytest.raises(TypeError, match="must define __len__ and __getitem__"):
        DataLoader(object())


# ------------------------------------------------------------------------------------------------- datasets, collate
def test_tensor_subset_concat():
    ds = TensorDataset(np.arange(10) * 2, np.arange(10))
    assert [int(v) for v in ds[-1]] == [18, 9]
    with pytest.raises(ValueError, match="same first dimension; array 0 has 10 rows, array 1 has shape"):
        TensorDataset(np.zeros(10), np.zeros(9))
    with pytest.raises(IndexError, match="index 10 is out of range for a dataset of length 10"):
        ds[10]
    sub = Subset(ds, [3, 1])
    assert [int(sub[i][1]) for i in range(2)] == [3, 1]
    cat = ds + sub
    assert isinstance(cat, ConcatDataset) and len(cat) == 12 and int(cat[11][1]) == 1 and int(cat[9][1]) == 9


@given(n=st.integers(0, 60), fractions=st.booleans(), parts=st.integers(1, 4), seed=st.integers(0, 1000))
def test_random_split_disjoint_and_reproducible(n, fractions, parts, seed):
    ds = TensorDataset(np.arange(n))
    if fractions:
        lengths = [1 / parts] * parts
    else:
        cuts = sorted(np.random.default_rng(seed).integers(0, n + 1, parts - 1).tolist())
        lengths = np.diff([0, *cuts, n]).tolist()
    a = random_split(ds, lengths, generator=seed)
    b = random_split(ds, lengths, generator=np.random.default_rng(seed))
    assert [s.indices for s in a] == [s.indices for s in b]
    everything = [i for s in a for i in s.indices]
    assert sorted(everything) == list(range(n))
    assert max(len(s) for s in a) - min(len(s) for s in a) <= 1 or not fractions


def test_random_split_errors_and_global_seed():
    ds = TensorDataset(np.arange(10))
    with pytest.raises(ValueError, match="add up to 9 but the dataset has 10"):
        random_split(ds, [4, 5])
    with pytest.raises(ValueError, match="add up to 1"):
        random_split(ds, [0.5, 0.4])
    minidl.manual_seed(4)
    first = random_split(ds, [5, 5])[0].indices
    minidl.manual_seed(4)
    assert random_split(ds, [5, 5])[0].indices == first


def test_default_collate_structures():
    Point = collections.namedtuple("Point", "x label")
    batch = default_collate([Point(np.zeros((2, 2), np.float16), np.int32(3)), Point(np.ones((2, 2), np.float16), 4)])
    assert isinstance(batch, Point) and batch.x.shape == (2, 2, 2) and batch.x.dtype == np.float16
    assert batch.label.dtype == np.int64 and batch.label.tolist() == [3, 4]
    d = default_collate([{"a": 1.0, "b": [True, "s"]}, {"a": 2.0, "b": [False, "t"]}])
    assert d["a"].dtype == np.float64 and d["b"][0].dtype == np.bool_ and d["b"][1] == ["s", "t"]
    assert default_collate([np.float32(1), np.float32(2)]).dtype == np.float32
    # numbers by what they all are, not by the first (it truncated [1, 2.7] to [1, 2])
    mixed = default_collate([1, 2.7])
    assert mixed.dtype == np.float64 and mixed.tolist() == [1.0, 2.7]
    assert default_collate([True, 2]).tolist() == [1, 2] and default_collate([True, 2]).dtype == np.int64
    with pytest.raises(TypeError, match=r"default_collate: sample 0 is a number \(int\) but sample 1 is str \('a'\)"):
        default_collate([1, "a"])
    with pytest.raises(ValueError, match=r"sample 0 is ndarray of shape \(3, 4\).*sample 1 is ndarray of shape \(3, 5"):
        default_collate([np.zeros((3, 4)), np.zeros((3, 5))])
    from PIL import Image

    with pytest.raises(TypeError, match="ToArray"):
        default_collate([Image.new("RGB", (2, 2))])


def test_arguments_after_shuffle_are_keyword_only():
    """PyTorch's 4th positional argument is a sampler; a positional object there must not become drop_last."""
    ds = TensorDataset(np.ones((5, 2), np.float32), np.arange(5))
    with pytest.raises(TypeError):
        DataLoader(ds, 2, False, object())
    with pytest.raises(TypeError, match="shuffle and drop_last must be bools"):
        DataLoader(ds, 2, shuffle=1)


class GlobalDraws(Dataset):
    """Sample i: (one draw of NumPy's global generator, one of Python's random, the worker's seed)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        import random

        return np.random.rand(), random.random(), get_worker_info().seed  # noqa: NPY002 (the global one, on purpose)


def test_process_workers_seed_the_global_generators_per_worker_and_per_epoch():
    # a forked worker starts with the parent's global generators: without a seed of its own, every worker (and every
    # epoch) would repeat the same draws (PyTorch seeds them too)
    for seed in (None, 5):
        loader = DataLoader(GlobalDraws(), batch_size=2, num_workers=2, worker_type="process", seed=seed)
        epochs = [[np.concatenate(column).tolist() for column in zip(*loader, strict=True)] for _ in range(2)]
        for numpy_draws, python_draws, _ in epochs:
            assert len(set(numpy_draws)) == len(set(python_draws)) == 8  # no worker repeats another's draws
        assert set(epochs[0][0]).isdisjoint(epochs[1][0])  # another epoch, other draws
        assert len({s for _, _, seeds in epochs for s in seeds}) == 4  # 2 workers x 2 epochs, seed given or not
    assert _no_workers_left()


class LongerThanItSays:
    """A sampler whose len() is less than what it yields."""

    def __iter__(self):
        return iter(range(6))

    def __len__(self) -> int:
        return 3


def test_indices_are_ints_and_the_sampler_yields_every_batch():
    ds = TensorDataset(np.arange(10.0))
    with pytest.raises(TypeError, match=r"DataLoader: the sampler must yield int indices, got 1.7 \(float\)"):
        list(DataLoader(ds, 4, sampler=[1.7, 2.2]))  # (it loaded samples 1 and 2)
    with pytest.raises(TypeError, match=r"Subset: indices must be ints, got 1.7 \(float\)"):
        Subset(ds, [1.7])
    batches = [b[0].tolist() for b in DataLoader(ds, 2, sampler=LongerThanItSays())]
    assert batches == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]  # all it yields (PyTorch's BatchSampler too)


def test_collate_fn_and_persistent_workers_are_checked_when_the_loader_is_built():
    ds = TensorDataset(np.ones(4))
    with pytest.raises(TypeError, match="DataLoader: collate_fn must be a function of a list of samples, got 5"):
        DataLoader(ds, 2, collate_fn=5)  # (it failed at the first batch)
    with pytest.raises(TypeError, match="DataLoader: persistent_workers must be a bool, got 'no'"):
        DataLoader(ds, 2, num_workers=1, persistent_workers="no")  # (read as True)


def test_the_datasets_name_themselves_for_a_bad_index():
    from minidl.data.datasets import CIFAR10Sample

    ds = CIFAR10Sample(train=False)
    with pytest.raises(IndexError, match="CIFAR10Sample: index 500 is out of range for a dataset of length 500"):
        ds[500]
    with pytest.raises(TypeError, match=r"CIFAR10Sample: index must be an int, got 1.5 \(float\)"):
        ds[1.5]
    assert ds[-1][1] == ds[499][1]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batch_sampler_generator_and_pin_memory_as_pytorch_takes_them(num_workers):
    ds = TensorDataset(np.arange(10.0))
    batches = [[0, 1, 2], [5], [9, 8]]
    loader = DataLoader(ds, batch_sampler=batches, num_workers=num_workers)
    assert len(loader) == 3 and [b[0].tolist() for b in loader] == [[0.0, 1.0, 2.0], [5.0], [9.0, 8.0]]
    with pytest.raises(ValueError, match="DataLoader: batch_sampler .* excludes batch_size, shuffle, sampler"):
        DataLoader(ds, 2, batch_sampler=batches)
    with pytest.raises(TypeError, match=r"the batch_sampler must yield non-empty lists of int indices, got \[0.5\]"):
        list(DataLoader(ds, batch_sampler=[[0.5]]))
    orders = [
        [b[0].tolist() for b in DataLoader(ds, 4, shuffle=True, generator=np.random.default_rng(3))] for _ in range(2)
    ]
    assert orders[0] == orders[1]  # each epoch's seed drawn from the generator given
    with pytest.raises(TypeError, match="DataLoader: generator must be a numpy.random.Generator"):
        DataLoader(ds, 2, generator=5)
    with pytest.warns(UserWarning, match="pin_memory=True has no effect in minidl"):
        DataLoader(ds, 2, pin_memory=True)
