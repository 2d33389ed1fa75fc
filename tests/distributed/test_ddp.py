"""DistributedDataParallel in one process (world size 1): the bucketed, overlapped path must give the plain model's
gradients exactly; its bookkeeping (buckets, wrappers, no_sync, unused and shared parameters) and its errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.data import DataLoader, TensorDataset
from minidl.distributed import DistributedDataParallel, DistributedSampler
from minidl.train import fit
from tests.helpers import arr, host


def net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3),
    )  # fmt: skip


def step(model, x, dy):
    model.zero_grad()
    y = model(x)
    dx = model.backward(dy)
    return host(y), host(dx), [host(p.grad) for p in model.parameters()]


@pytest.mark.parametrize("bucket_cap_mb", [25.0, 1e-4])
def test_alone_the_gradients_are_exactly_the_plain_models(group, bucket_cap_mb):
    rng = np.random.default_rng(0)
    plain = net()
    ddp = DistributedDataParallel(copy.deepcopy(plain), bucket_cap_mb=bucket_cap_mb)
    x, dy = (
        arr(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)),
        arr(rng.standard_normal((4, 3)).astype(np.float32)),
    )
    for _ in range(2):
        expected, got = step(plain, x, dy), step(ddp, x, dy)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        for a, b in zip(got[2], expected[2], strict=True):
            np.testing.assert_array_equal(a, b)
    buckets = ddp.buckets
    assert [p for bucket in buckets for p in bucket] == list(ddp.parameters())[::-1]  # backward order
    cap = bucket_cap_mb * 2**20
    for bucket in buckets:  # full up to the cap; a bigger array gets a bucket of its own
        assert sum(p.data.nbytes for p in bucket) <= cap or len(bucket) == 1
    # ~105 bytes: [Linear2 bias, weight, Linear1 bias], [Linear1 weight], [BN bias, weight, conv bias], [conv weight]
    assert [len(b) for b in buckets] == ([8] if bucket_cap_mb == 25.0 else [3, 1, 3, 1])
    assert ddp.overlapped_buckets == len(buckets)  # each started as soon as its layer's backward had returned
    assert all("backward" not in m.__dict__ for m in ddp.modules())  # the wrappers are gone


def test_state_dict_keys_are_prefixed_with_module_as_in_pytorch(group):
    ddp = DistributedDataParallel(nn.Linear(2, 3))
    assert list(ddp.state_dict()) == ["module.weight", "module.bias"]
    plain = nn.Linear(2, 3)
    plain.load_state_dict(ddp.module.state_dict())
    np.testing.assert_array_equal(host(plain.weight.data), host(ddp.module.weight.data))


def test_no_sync_accumulates_and_the_next_backward_averages_everything(group):
    ddp = DistributedDataParallel(nn.Linear(2, 1))
    x, dy = arr(np.ones((1, 2), np.float32)), arr(np.ones((1, 1), np.float32))
    with ddp.no_sync():
        assert not ddp.require_backward_grad_sync
        ddp(x)
        ddp.backward(dy)
    assert ddp.require_backward_grad_sync
    ddp(x)
    ddp.backward(dy)
    np.testing.assert_array_equal(host(ddp.module.bias.grad), [2.0])


def test_a_layer_run_twice_and_a_tied_weight_get_their_full_gradients(group):
    shared = nn.Linear(3, 3)
    tied = nn.Linear(3, 3)
    tied.weight = shared.weight  # weight tying: one Parameter in two modules
    plain = nn.Sequential(shared, nn.Tanh(), shared, nn.Tanh(), tied)
    ddp = DistributedDataParallel(copy.deepcopy(plain), bucket_cap_mb=1e-5)
    rng = np.random.default_rng(2)
    x, dy = arr(rng.standard_normal((2, 3)).astype(np.float32)), arr(rng.standard_normal((2, 3)).astype(np.float32))
    expected, got = step(plain, x, dy), step(ddp, x, dy)
    for a, b in zip(got[2], expected[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_an_unused_parameter_gets_a_zero_gradient(group):
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

        def backward(self, dout):
            return self.used.backward(dout)

    ddp = DistributedDataParallel(TwoHeads(), bucket_cap_mb=1e-5)
    ddp(arr(np.ones((1, 2), np.float32)))
    ddp.backward(arr(np.ones((1, 2), np.float32)))
    np.testing.assert_array_equal(host(ddp.module.unused.weight.grad), np.zeros((2, 2)))
    assert ddp.module.used.bias.grad is not None


def test_a_parameter_frozen_after_wrapping_keeps_no_gradient(group):
    ddp = DistributedDataParallel(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    ddp.module[0].requires_grad_(False)
    ddp(arr(np.ones((1, 2), np.float32)))
    ddp.backward(arr(np.ones((1, 2), np.float32)))
    assert ddp.module[0].weight.grad is None and ddp.module[1].weight.grad is not None


def test_the_wrappers_are_removed_when_the_backward_fails(group):
    ddp = DistributedDataParallel(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    ddp(arr(np.ones((1, 2), np.float32)))
    with pytest.raises(ValueError, match="gradient has shape"):
        ddp.backward(arr(np.ones((1, 3), np.float32)))
    assert all("backward" not in m.__dict__ for m in ddp.modules())


def test_bad_arguments_get_clear_errors(group):
    with pytest.raises(ValueError, match="DistributedDataParallel: ReLU has no parameter that requires a gradient"):
        DistributedDataParallel(nn.ReLU())
    with pytest.raises(TypeError, match="module must be a minidl.nn.Module, got list"):
        DistributedDataParallel([nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number of megabytes, got 0"):
        DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=0)
    with pytest.raises(TypeError, match="already a DistributedDataParallel"):
        DistributedDataParallel(DistributedDataParallel(nn.Linear(2, 2)))


def test_before_init_process_group_ddp_says_so():
    with pytest.raises(RuntimeError, match="DistributedDataParallel: the process group is not initialized"):
        DistributedDataParallel(nn.Linear(2, 2))


def test_fit_trains_the_wrapped_model_like_the_plain_one_and_sets_the_samplers_epoch(group):
    rng = np.random.default_rng(3)
    ds = TensorDataset(rng.standard_normal((32, 3, 8, 8)).astype(np.float32), rng.integers(0, 3, 32))
    histories, models = [], []
    for wrap in (False, True):
        minidl.manual_seed(0)
        model = net()
        trained = DistributedDataParallel(model) if wrap else model
        sampler = DistributedSampler(ds, seed=4)
        loader = DataLoader(ds, batch_size=8, sampler=sampler)
        opt = optim.SGD(trained.parameters(), lr=0.1)
        histories.append(fit(trained, loader, None, nn.CrossEntropyLoss(), opt, epochs=2, verbose=False, fuse=True))
        models.append(model)
        assert sampler.epoch == 1
    assert histories[0]["train_loss"] == histories[1]["train_loss"]
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        np.testing.assert_array_equal(host(a.data), host(b.data))
    assert "ConvBn2d" in repr(models[1])  # fuse=True fused the model inside the wrapper
