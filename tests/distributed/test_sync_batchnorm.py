"""SyncBatchNorm in one process: exactly BatchNorm where nothing is synchronized, and its pair (the sums formulation)
against BatchNorm's pair. The two-rank equivalence runs under mpiexec (test_mpiexec.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from minidl import nn
from minidl.distributed import SyncBatchNorm, sync_batch_norm_backward, sync_batch_norm_forward
from minidl.nn.normalization import batch_norm_backward, batch_norm_forward
from tests.helpers import arr, host


def alone(a):
    """The sum over the ranks of a group of one: the array itself (what all_reduce does at world size 1)."""
    return a


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (4, 3, 5, 6)])
@pytest.mark.parametrize("with_group", [False, True])
def test_where_nothing_is_synchronized_it_is_exactly_batchnorm(shape, with_group, request):
    if with_group:
        request.getfixturevalue("group")  # world size 1: nothing to synchronize
    rng = np.random.default_rng(0)
    bn = (nn.BatchNorm1d if len(shape) < 4 else nn.BatchNorm2d)(3)
    bn.weight.data[...] = arr(rng.standard_normal(3).astype(np.float32))
    sync = SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(bn))
    assert type(sync) is SyncBatchNorm
    for _ in range(2):
        x = arr(rng.standard_normal(shape).astype(np.float32))
        dy = arr(rng.standard_normal(shape).astype(np.float32))
        assert np.array_equal(host(sync(x)), host(bn(x)))
        assert np.array_equal(host(sync.backward(dy)), host(bn.backward(dy)))
    for key, value in bn.state_dict().items():
        assert np.array_equal(host(sync.state_dict()[key]), host(value)), key
    assert np.array_equal(host(sync.weight.grad), host(bn.weight.grad))
    bn.eval(), sync.eval()
    assert np.array_equal(host(sync(x)), host(bn(x)))


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 6), (1, 2, 3, 3)])
def test_the_pair_with_global_sums_matches_batchnorms_pair(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 3 + 2
    gamma, beta, dy = rng.standard_normal(3)[: shape[1]], rng.standard_normal(shape[1]), rng.standard_normal(shape)
    running = [np.zeros(shape[1]), np.ones(shape[1])]
    expected_running = [np.zeros(shape[1]), np.ones(shape[1])]
    out, cache = sync_batch_norm_forward(x, *running, gamma, beta, 0.1, 1e-5, alone)
    expected, expected_cache = batch_norm_forward(x, *expected_running, gamma, beta, True, 0.1, 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(running, expected_running, rtol=1e-10, atol=1e-12)
    for got, want in zip(sync_batch_norm_backward(dy, cache), batch_norm_backward(dy, expected_cache), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_the_pair_reduces_once_forward_and_once_backward_with_the_documented_layout():
    calls = []

    def record(a):
        calls.append(a.copy())
        return a

    x = np.arange(12.0).reshape(3, 2, 2)  # N = 3, C = 2, L = 2: M = 6 values per channel
    out, cache = sync_batch_norm_forward(x, None, None, None, None, 0.1, 1e-5, record)
    sync_batch_norm_backward(np.ones_like(x), cache)
    assert len(calls) == 2
    sums = x.transpose(1, 0, 2).reshape(2, -1)
    np.testing.assert_array_equal(calls[0], [*sums.sum(1), *(sums**2).sum(1), 6])  # [S1 (C), S2 (C), M]
    np.testing.assert_allclose(calls[1], [6, 6, 0, 0], atol=1e-12)  # [sum dy (C), sum dy xhat (C)]


def test_convert_sync_batchnorm_shares_parameters_and_buffers_and_keeps_the_rest():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    )
    net.eval()
    weight, running_mean = net[1].weight, net[1].running_mean
    converted = SyncBatchNorm.convert_sync_batchnorm(net)
    assert converted is net and type(net[1]) is SyncBatchNorm and type(net[3][1]) is SyncBatchNorm
    assert net[1].weight is weight and net[1].running_mean is running_mean and not net[1].training
    assert type(net[0]) is nn.Conv2d and list(net.state_dict()) == list(converted.state_dict())
    with pytest.raises(ValueError, match="only process_group=None"):
        SyncBatchNorm.convert_sync_batchnorm(net, process_group="pg")


def test_bad_input_is_named():
    with pytest.raises(
        ValueError, match=r"sync_batch_norm_forward: expected more than 1 value per channel over all ranks"
    ):
        sync_batch_norm_forward(np.ones((1, 2)), None, None, None, None, 0.1, 1e-5, alone)
    with pytest.raises(ValueError, match="sync_batch_norm_forward"):
        sync_batch_norm_forward(np.ones((4, 2)), None, None, np.ones(3), None, 0.1, 1e-5, alone)
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(4\)"):
        SyncBatchNorm(4)(np.ones((2, 3, 4, 4), np.float32))
