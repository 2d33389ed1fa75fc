"""A fused Conv2d-BatchNorm2d in training: the :class:`~minidl.nn.fusion.ConvBn2d` asks ``conv2d_forward`` for the
sums of its output (``channel_sums``) and hands them to its :class:`~minidl.nn.fusion.FoldedBatchNorm2d`, which takes
its batch statistics from them instead of a pass over that output, where the backend adds them up in the
convolution's output pass (Numba: F(4x4, 3x3) into a channels_last output). Checked here: it happens where it
should (a Sequential, both BatchNorms of a ResNet block, the joined one too) and computes what the unfused model
computes; it does not happen on the reference backend, in eval mode, with a hook, with a replaced pair, or for a
convolution called on its own; the sums are taken once and not kept; a running mean far from the batch's mean
leaves the statistics to the BatchNorm.
"""

from __future__ import annotations

import copy
import pickle
import warnings

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

        def spy(module, x, **kwargs):
            sums = original(module, x, **kwargs)
            if kwargs.get("keep"):  # (a look, not a take: a block asking before it defers the BatchNorm)
                return sums
            self.calls += 1
            self.given += sums is not None
            return sums

        monkeypatch.setattr(FoldedBatchNorm2d, "_channel_sums_of", spy)


def conv_bn_relu(seed=0):
    minidl.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten())


def batch(layout, shape=(8, 16, 32, 32), seed=1):
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
                atol = 1e-4 * max(1.0, float(np.abs(w).max()))  # (float32 sums of 8192 terms)
                np.testing.assert_allclose(g, w, rtol=1e-3, atol=atol, err_msg=f"step {step}, result {i}")
    summed = backend == "numba" and layout == minidl.channels_last  # (F(4x4, 3x3)'s output pass takes them)
    assert (spy.given, spy.calls) == (2 if summed else 0, 2)
    assert "_channel_sums" not in fused[1].__dict__, "the sums were taken and forgotten"
    pickle.dumps(fused)
    copy.deepcopy(fused)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_both_batch_norms_of_a_resnet_block_take_the_sums(backend, monkeypatch):
    spy = SumsSpy(monkeypatch)
    with minidl.use_backend(backend):
        minidl.manual_seed(2)
        block = BasicBlock(16, 16).to(backend).train()
        fused = nn.fuse(copy.deepcopy(block)).train()
        x = batch(minidl.channels_last, (8, 16, 16, 16), seed=3)
        want, got = run(block, x), run(fused, x)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        atol = 1e-4 * max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=atol, err_msg=f"result {i}")
    assert (spy.given, spy.calls) == ((2, 2) if backend == "numba" else (0, 2)), "bn1 and the joined bn2"


def test_no_sums_where_the_batch_norm_does_not_take_them(monkeypatch):
    with minidl.use_backend("numba"):
        spy = SumsSpy(monkeypatch)
        fused = nn.fuse(conv_bn_relu().to("numba"))
        x = batch(minidl.channels_last)
        conv = fused[0]
        fused(x)
        assert spy.given == 1, "training, channels_last, F(4x4, 3x3): the sums"
        spy.given = 0
        # eval mode with gradients on: the running statistics, no sums
        fused.eval()
        fused(x)
        assert not conv.sums_for_batch_norm(x) and spy.given == 0
        fused.train()
        # a C-order input: F(4x4, 3x3) would sum its output in a pass after, as dear as the BatchNorm's own
        fused(minidl.contiguous(x))
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
    with minidl.use_backend("numpy"):  # the reference sums after the convolution: no sums asked for
        spy = SumsSpy(monkeypatch)
        nn.fuse(conv_bn_relu())(batch(minidl.channels_last))
        assert (spy.given, spy.calls) == (0, 1)


@pytest.mark.parametrize("running_mean", [np.nan, np.inf, 1e8, -30.0], ids=["nan", "inf", "1e8", "-30"])
def test_a_running_mean_far_from_the_batch_leaves_the_statistics_to_the_batch_norm(running_mean, monkeypatch):
    """The sums are taken around the running mean (0 where it is not finite); where it is far from the batch's mean
    (a diverged or shifted run, or the first step of a layer whose outputs sit far from 0) the difference
    S2 / M - (S1 / M)^2 would lose the variance's digits: the BatchNorm computes its statistics from its input, as
    unfused."""
    with minidl.use_backend("numba"):
        spy = SumsSpy(monkeypatch)
        plain, fused = conv_bn_relu().to("numba").train(), nn.fuse(conv_bn_relu().to("numba")).train()
        for model in (plain, fused):
            model[1].running_mean[:] = running_mean
        x = batch(minidl.channels_last)
        want, got = plain(x), fused(x)
    assert np.isfinite(host(got)).all()
    np.testing.assert_allclose(host(got), host(want), rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(host(fused[1].running_var), host(plain[1].running_var), rtol=1e-5)
    far = running_mean == 1e8  # (NaN and inf: around 0; 30 from a batch of spread about 1 keeps enough digits)
    assert spy.given == (0 if far else 1)


def test_sums_keep_the_variance_where_the_shift_is_near_the_mean():
    from minidl.nn._norm_common import sums_keep_the_variance

    def keeps(values, shift, eps=1e-5, dtype=np.float32):
        d = np.asarray(values, np.float64) - shift
        sums = np.array([[shift], [d.sum()], [(d * d).sum()]])
        return sums_keep_the_variance(sums, d.size, eps, dtype)

    values = 5.0 + np.cos(np.arange(100.0))  # mean about 5, variance about 0.5
    assert keeps(values, 5.0) and keeps(values, 0.0)
    assert not keeps(values, 1e4), "a shift 1e4 from the mean: the difference has no digits left"
    assert keeps(values, 300.0) and not keeps(values, 300.0, dtype=np.float64), "float64 asks for more digits"
    assert keeps(np.full(10, 3.0), 3.0), "one value, at the shift: variance 0, exact"
    assert keeps(np.full(10, 3.0), 3.0 + 1e-12), "near it: what eps adds to the variance dwarfs the rounding"
    assert not keeps(np.full(10, 3.0), 1e5), "far from it: the rounding is above eps"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (an inf in the sums makes no warning)
        assert not keeps([1.0, np.nan], 0.0) and not keeps([1.0, np.inf], 0.0)
    assert not keeps([1.0], 0.0), "one value per channel: no statistics"


def test_a_fused_model_given_a_list_says_what_the_unfused_says():
    """(The backend's question about the sums is asked of arrays only.)"""
    with minidl.use_backend("numba"):
        plain, fused = conv_bn_relu().to("numba").train(), nn.fuse(conv_bn_relu().to("numba")).train()
        x = np.ones((2, 16, 4, 4), np.float32).tolist()
        for model in (plain, fused):
            with pytest.raises(TypeError, match="expected the input to be an array"):
                model(x)
