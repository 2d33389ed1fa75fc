"""A fused Conv2d-BatchNorm2d in training: the :class:`~minidl.nn.fusion.ConvBn2d` asks ``conv2d_forward`` for the
sums of its output (``channel_sums``) and hands them to its :class:`~minidl.nn.fusion.FoldedBatchNorm2d`, which takes
its batch statistics from them instead of a pass over that output. Checked here: it happens where it should (a
Sequential, both BatchNorms of a ResNet block, the joined one too) and computes what the unfused model computes;
it does not happen in eval mode, with a hook, with a replaced pair, or for a convolution called on its own; the
sums are taken once and not kept.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.models.resnet_blocks import BasicBlock
from minidl.nn import functional as F
from minidl.nn.fusion import FoldedBatchNorm2d
from tests.helpers import arr, host


class SumsSpy:
    """Counts the BatchNorm calls that got their ConvBn2d's sums (``FoldedBatchNorm2d._channel_sums_of``, patched on
    the class so that the instances stay plain)."""

    def __init__(self, monkeypatch):
        self.given = 0
        self.calls = 0
        original = FoldedBatchNorm2d._channel_sums_of

        def spy(module, x):
            sums = original(module, x)
            self.calls += 1
            self.given += sums is not None
            return sums

        monkeypatch.setattr(FoldedBatchNorm2d, "_channel_sums_of", spy)


def conv_bn_relu(seed=0):
    minidl.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten())


def batch(layout, shape=(6, 8, 10, 10), seed=1):
    x = arr(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    return minidl.contiguous(x, layout)


def run(model, x):
    """A training step's forward and backward: the output, dx, the parameters' gradients and the buffers."""
    model.zero_grad()
    out = model(x)
    dx = model.backward(arr(np.cos(np.arange(out.size)).reshape(out.shape).astype(np.float32)))
    grads = [host(p.grad) for p in model.parameters()]
    return [host(out), host(dx), *grads, *(host(b) for b in model.buffers())]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("layout", [minidl.contiguous_format, minidl.channels_last])
def test_the_batch_norm_takes_its_statistics_from_the_convolutions_sums(backend, layout, monkeypatch):
    spy = SumsSpy(monkeypatch)
    with minidl.use_backend(backend):
        x = batch(layout)
        plain = conv_bn_relu().to(backend).train()
        fused = nn.fuse(conv_bn_relu().to(backend)).train()
        for step in range(2):  # the second step's sums are around the running mean the first one updated
            want, got = run(plain, x), run(fused, x)
            for i, (g, w) in enumerate(zip(got, want, strict=True)):
                np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5, err_msg=f"step {step}, result {i}")
    assert (spy.given, spy.calls) == (2, 2)
    assert "_channel_sums" not in fused[1].__dict__, "the sums were taken and forgotten"
    pickle.dumps(fused)
    copy.deepcopy(fused)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_both_batch_norms_of_a_resnet_block_take_the_sums(backend, monkeypatch):
    spy = SumsSpy(monkeypatch)
    with minidl.use_backend(backend):
        minidl.manual_seed(2)
        block = BasicBlock(8, 8).to(backend).train()
        fused = nn.fuse(copy.deepcopy(block)).train()
        x = batch(minidl.channels_last, (4, 8, 9, 9), seed=3)
        want, got = run(block, x), run(fused, x)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5, err_msg=f"result {i}")
    assert (spy.given, spy.calls) == (2, 2), "bn1 and the joined bn2"


def test_no_sums_where_the_batch_norm_does_not_take_them(monkeypatch):
    spy = SumsSpy(monkeypatch)
    fused = nn.fuse(conv_bn_relu())
    x = batch(minidl.contiguous_format)
    conv = fused[0]
    # eval mode with gradients on: the running statistics, no sums
    fused.eval()
    fused(x)
    assert not conv.sums_for_batch_norm() and spy.given == 0
    fused.train()
    # a convolution called on its own (a slice): no BatchNorm after it in its caller
    y = conv(x)
    assert "_channel_sums" not in fused[1].__dict__
    fused[1](y)
    # a hook on the convolution could change the output after the sums were taken
    handle = conv.register_forward_hook(lambda module, args, out: None)
    fused(x)
    handle.remove()
    # a replaced BatchNorm pair need not take channel_sums
    original = F.batch_norm_relu_forward
    monkeypatch.setattr(F, "batch_norm_relu_forward", lambda *a, **k: original(*a, **k))
    fused(x)
    monkeypatch.undo()
    assert spy.given == 0
    spy = SumsSpy(monkeypatch)
    fused(x)  # and back to the sums
    assert spy.given == 1


def test_a_running_mean_that_is_not_finite_does_not_spoil_the_batch_statistics():
    """The sums are taken around the running mean; where it holds a NaN or an inf (a diverged batch left it there),
    around 0: the batch statistics stay the batch's, as unfused."""
    plain, fused = conv_bn_relu().train(), nn.fuse(conv_bn_relu()).train()
    for model in (plain, fused):
        bn = model[1]
        bn.running_mean[:2] = (np.nan, np.inf)
    x = batch(minidl.contiguous_format)
    want, got = plain(x), fused(x)
    assert np.isfinite(host(got)).all()
    np.testing.assert_allclose(host(got), host(want), rtol=2e-4, atol=2e-5)
