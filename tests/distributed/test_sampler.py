"""DistributedSampler: shards that partition each epoch's permutation, PyTorch's padding, and the DataLoader's
``sampler=``."""

from __future__ import annotations

import numpy as np
import pytest

from minidl.data import DataLoader, TensorDataset
from minidl.distributed import DistributedSampler
from tests.helpers import torch_or_skip


def shards(n, P, **kwargs):
    return [list(DistributedSampler(range(n), num_replicas=P, rank=r, **kwargs)) for r in range(P)]


@pytest.mark.parametrize(("n", "P"), [(10, 1), (10, 2), (10, 3), (10, 4), (2, 4), (0, 2), (1001, 4)])
def test_the_shards_interleave_to_the_padded_permutation(n, P):
    parts = shards(n, P, seed=7)
    lengths = {len(p) for p in parts}
    assert len(lengths) <= 1  # equal shards
    total = len(parts[0]) * P if parts else 0
    interleaved = [parts[i % P][i // P] for i in range(total)]  # rank r took every P-th index from r
    permutation = interleaved[:n]
    assert sorted(permutation) == list(range(n))  # every sample once, then the padding repeats the first ones
    assert interleaved[n:] == (permutation * P)[: total - n]


def test_drop_last_cuts_the_tail_instead():
    parts = shards(10, 4, shuffle=False, drop_last=True)
    assert parts == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert len(DistributedSampler(range(10), 4, 0, drop_last=True)) == 2


def test_set_epoch_reshuffles_the_same_way_on_every_rank():
    first, again = shards(50, 2, seed=1), shards(50, 2, seed=1)
    assert first == again
    samplers = [DistributedSampler(range(50), 2, r, seed=1) for r in range(2)]
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert second != first
    assert sorted(second[0] + second[1]) == list(range(50))


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("n", "P"), [(10, 3), (10, 4), (3, 5), (17, 2), (16, 4)])
def test_the_indices_are_pytorchs_without_shuffling(n, P, drop_last):
    torch_or_skip()
    from torch.utils.data import DistributedSampler as TorchSampler

    for r in range(P):
        theirs = TorchSampler(list(range(n)), num_replicas=P, rank=r, shuffle=False, drop_last=drop_last)
        ours = DistributedSampler(range(n), num_replicas=P, rank=r, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs), (n, P, r, drop_last)


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match=r"rank must be in 0..1 \(num_replicas 2\), got 2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be an int >= 1, got 0"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="dataset must have a length, got int"):
        DistributedSampler(4, num_replicas=1, rank=0)
    with pytest.raises(
        RuntimeError,
        match=r"DistributedSampler \(num_replicas=None or rank=None\): the process group is not initialized",
    ):
        DistributedSampler(range(4))
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        DistributedSampler(range(4), 1, 0).set_epoch(-1)


def test_without_arguments_it_takes_the_process_groups_rank_and_size(group):
    sampler = group.DistributedSampler(range(5), shuffle=False)
    assert (sampler.num_replicas, sampler.rank, list(sampler)) == (1, 0, [0, 1, 2, 3, 4])


def test_a_dataloader_batches_in_the_samplers_order():
    ds = TensorDataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, seed=3)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(loader) == 3
    assert np.concatenate([y for _, y in loader]).tolist() == list(sampler)
    with pytest.raises(
        ValueError, match="sampler must be an iterable of indices with len\\(\\) and excludes shuffle=True"
    ):
        DataLoader(ds, batch_size=2, shuffle=True, sampler=sampler)
