"""A ResNet block's end in training: the pair ``batch_norm_add_relu`` (relu(batch_norm(x) + residual)) against the
pairs it composes, its gradients and PyTorch; and ``nn.fuse``'s training join, where the block hands the shortcut
to its last BatchNorm (the same results as the unjoined and the unfused block, only where nothing would notice)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, models, nn
from minidl.nn import functional as F
from tests.helpers import JoinSpy, arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

TOL = {np.float32: {"atol": 5e-4, "rtol": 5e-3}, np.float64: {"atol": 1e-10, "rtol": 1e-9}}


def bn_args(rng, C, training, dtype=np.float64):
    """running_mean, running_var, weight, bias, training, momentum, eps."""
    mean, var = arr(rng.standard_normal(C).astype(dtype)), arr(rng.uniform(0.5, 2.0, C).astype(dtype))
    weight, bias = arr(rng.uniform(0.5, 1.5, C).astype(dtype)), arr(rng.standard_normal(C).astype(dtype))
    return mean, var, weight, bias, training, 0.1, 1e-5


# ---------------------------------------------------------------------------------------------- the pair
@given(seed=seeds, training=st.booleans(), shape=st.sampled_from([(4, 3), (2, 3, 5), (3, 4, 5, 6)]))
def test_batch_norm_add_relu_is_add_relu_of_batch_norm_with_the_same_gradients(seed, training, shape):
    rng = np.random.default_rng(seed)
    x, residual = arr(rng.standard_normal(shape) * 2 + 1), arr(rng.standard_normal(shape))
    args = bn_args(rng, shape[1], training)
    ref_args = (arr(host(args[0]).copy()), arr(host(args[1]).copy()), *args[2:])
    out, cache = F.batch_norm_add_relu_forward(x, residual, *args)
    y, bn_cache = F.batch_norm_forward(x, *ref_args)
    ref, add_relu_cache = F.add_relu_forward(y, residual)
    np.testing.assert_allclose(host(out), host(ref), **TOL[np.float64])
    for updated, expected in zip(args[:2], ref_args[:2], strict=True):  # the running statistics, updated alike
        np.testing.assert_allclose(host(updated), host(expected), **TOL[np.float64])
    dout = arr(rng.standard_normal(shape))
    dz = F.add_relu_backward(dout, add_relu_cache)
    dx, dweight, dbias = F.batch_norm_backward(dz, bn_cache)
    got = F.batch_norm_add_relu_backward(dout, cache)
    for name, a, b in zip(("dx", "dresidual", "dweight", "dbias"), got, (dx, dz, dweight, dbias), strict=True):
        np.testing.assert_allclose(host(a), host(b), **TOL[np.float64], err_msg=name)


@given(seed=seeds)
def test_batch_norm_add_relu_functional_gradcheck(seed):
    rng = np.random.default_rng(seed)
    x, residual = arr(rng.standard_normal((4, 2, 3, 3))), arr(rng.standard_normal((4, 2, 3, 3)))
    weight, bias = arr(rng.uniform(0.5, 1.5, 2)), arr(rng.standard_normal(2))
    pre = host(F.batch_norm_forward(x, None, None, weight, bias, True)[0]) + host(residual)
    assume(np.abs(pre).min() > 1e-3)  # away from the ReLU's kink

    def f(x, residual, weight, bias):
        return F.batch_norm_add_relu_forward(x, residual, None, None, weight, bias, True)

    report = gradcheck.check_function(f, F.batch_norm_add_relu_backward, [x, residual, weight, bias])
    assert report.passed, report


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_add_relu_matches_pytorch(training):
    torch = torch_or_skip()
    rng = np.random.default_rng(7)
    x, residual = rng.standard_normal((8, 3, 4, 5)) * 2 + 1, rng.standard_normal((8, 3, 4, 5))
    mean, var, weight, bias = (
        rng.standard_normal(3),
        rng.uniform(0.5, 2, 3),
        rng.uniform(0.5, 1.5, 3),
        rng.standard_normal(3),
    )
    running = (arr(mean.copy()), arr(var.copy()))
    out, cache = F.batch_norm_add_relu_forward(arr(x), arr(residual), *running, arr(weight), arr(bias), training, 0.1)
    tx, tr, tw, tb = (to_torch(a, requires_grad=True) for a in (x, residual, weight, bias))
    t_running = (to_torch(mean.copy()), to_torch(var.copy()))
    tout = torch.relu(torch.nn.functional.batch_norm(tx, *t_running, tw, tb, training, 0.1) + tr)
    dout = rng.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    assert_close(out, tout, what="batch_norm_add_relu forward")
    for name, got, expected in zip(("running_mean", "running_var"), running, t_running, strict=True):
        assert_close(got, expected, what=name)
    grads = F.batch_norm_add_relu_backward(arr(dout), cache)
    for name, got, expected in zip(("dx", "dresidual", "dweight", "dbias"), grads, (tx, tr, tw, tb), strict=True):
        assert_close(got, expected.grad, what=f"batch_norm_add_relu {name}")


def test_batch_norm_add_relu_names_a_residual_of_another_shape_or_dtype():
    x = arr(np.ones((2, 3, 4, 4), np.float32))
    for residual, what in ((np.ones((2, 3, 4, 5), np.float32), r"\(2, 3, 4, 5\)"), (np.ones(x.shape), "float64")):
        with pytest.raises(ValueError, match=rf"^batch_norm_add_relu_forward: .*{what}"):
            F.batch_norm_add_relu_forward(x, arr(residual), None, None, training=True)


# ---------------------------------------------------------------------------------------------- the training join
def training_step(model, x):
    """Output, input gradient, parameter gradients and running statistics after one training step."""
    model.zero_grad()
    out = model(x)
    dx = model.backward(arr(np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)))
    grads = {k: host(p.grad) for k, p in model.named_parameters()}
    return host(out), host(dx), grads, {k: host(b) for k, b in model.named_buffers()}


def assert_same_step(got, want, tol, buffers=True):
    """The same output, gradients and (``buffers``: after the same number of steps) running statistics."""
    for i, name in enumerate(("output", "input gradient")):
        np.testing.assert_allclose(got[i], want[i], **tol, err_msg=name)
    for part in (2, 3) if buffers else (2,):
        assert got[part].keys() == want[part].keys()
        for key in want[part]:
            np.testing.assert_allclose(got[part][key], want[part][key], **tol, err_msg=key)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_a_resnet_block_end_runs_as_one_batch_norm_pass_in_training(backend, memory_format, monkeypatch):
    # bn2 (bn3), add and relu2 (relu3): one batch_norm_add_relu per block, as the unfused model computes
    minidl.manual_seed(0)
    spy = JoinSpy(monkeypatch, nn.FoldedBatchNorm2d)
    dtype = np.float64 if backend == "numpy" else np.float32
    layout = minidl.channels_last if memory_format == "channels_last" else minidl.contiguous_format
    for model, shape, blocks in ((models.resnet20(10), (3, 3, 32, 32), 9), (models.resnet50(10), (2, 3, 48, 48), 16)):
        model = model.to(dtype)
        fused = nn.fuse(model)
        last = "bn2" if isinstance(fused.layer1[0], models.resnet.BasicBlock) else "bn3"
        assert getattr(fused.layer1[0], last).joins == ("add", "relu2" if last == "bn2" else "relu3")
        assert fused.layer1[0].bn1.joins is None
        x = minidl.contiguous(arr(np.random.default_rng(4).standard_normal(shape).astype(dtype)), layout)
        with minidl.use_backend(backend):
            spy.calls = 0
            got = training_step(fused, x)
            assert spy.calls == blocks
            assert_same_step(got, training_step(model, x), TOL[dtype])


def test_the_join_gives_the_bits_of_the_unjoined_fused_block_on_numba(monkeypatch):
    # the kernel computes the BatchNorm's output as batch_norm's does, then the sum and the ReLU as add_relu's
    minidl.manual_seed(0)
    fused = nn.fuse(models.resnet20(10))
    x = minidl.contiguous(arr(np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)),
                          minidl.channels_last)  # fmt: skip
    with minidl.use_backend("numba"):
        joined = training_step(fused, x)
        original = F.batch_norm_add_relu_forward
        monkeypatch.setattr(F, "batch_norm_add_relu_forward", lambda *a, **k: original(*a, **k))  # not the pair
        unjoined = training_step(fused, x)
    assert_same_step(joined, unjoined, {"atol": 0, "rtol": 0})


def test_the_training_join_runs_only_with_the_blocks_own_plain_modules(monkeypatch):
    minidl.manual_seed(0)
    model = models.resnet20(10).to(np.float64)
    fused = nn.fuse(model)
    spy = JoinSpy(monkeypatch, nn.FoldedBatchNorm2d)
    x = arr(np.random.default_rng(5).standard_normal((2, 3, 32, 32)))
    want = training_step(model, x)
    block = fused.layer1[0]
    handle = block.add.register_forward_hook(lambda *a: None)  # a hook on the Add: it must run, unjoined
    assert_same_step(training_step(fused, x), want, TOL[np.float64])
    assert spy.calls == 8
    handle.remove()
    with pytest.MonkeyPatch.context() as patch:  # a replaced add_relu pair: no block joins
        original = F.add_relu_forward
        patch.setattr(F, "add_relu_forward", lambda a, b: original(a, b))
        assert_same_step(training_step(fused, x), want, TOL[np.float64], buffers=False)  # (a second step)
    assert spy.calls == 8
    block.relu2 = nn.ReLU()  # an edited block: unjoined (and its ReLU runs)
    assert_same_step(training_step(fused, x), want, TOL[np.float64], buffers=False)
    assert spy.calls == 16
    with pytest.raises(RuntimeError, match=r"takes a residual only where nn.fuse joined it"):
        fused.layer1[1].bn2(x, x)  # called on its own, not by its block


def test_eval_mode_with_gradients_joins_with_the_running_statistics(monkeypatch):
    # eval mode, gradients on (a validation pass that keeps them): the ConvBn2d does not fold, the BatchNorm joins
    minidl.manual_seed(0)
    model = models.resnet20(10).to(np.float64).eval()
    fused = nn.fuse(model)
    spy = JoinSpy(monkeypatch, nn.FoldedBatchNorm2d)
    x = arr(np.random.default_rng(6).standard_normal((2, 3, 32, 32)))
    assert_same_step(training_step(fused, x), training_step(model, x), TOL[np.float64])
    assert spy.calls == 9
    with minidl.no_grad():  # inference: the convolution joins instead (its own spy in test_fusion.py)
        np.testing.assert_allclose(host(fused(x)), host(model(x)), **TOL[np.float64])
    assert spy.calls == 9


def test_a_joined_batch_norm_returns_the_gradients_of_both_inputs(monkeypatch):
    minidl.manual_seed(0)
    block = nn.fuse(models.resnet.BasicBlock(4, 4))
    spy = JoinSpy(monkeypatch, nn.FoldedBatchNorm2d)
    x = arr(np.random.default_rng(3).standard_normal((2, 4, 5, 5)).astype(np.float32))
    out = block(x)
    assert spy.calls == 1
    saved = {"bn2": None}
    original = block.bn2.backward
    object.__setattr__(block.bn2, "backward", lambda dout: saved.__setitem__("bn2", original(dout)) or saved["bn2"])
    block.backward(arr(np.ones(out.shape, out.dtype)))
    dx, dresidual = saved["bn2"]
    assert dx.shape == dresidual.shape == out.shape
    np.testing.assert_array_equal(host(dresidual), host(out) > 0)  # ones where the sum passed the ReLU


def test_a_block_subclass_with_its_own_forward_still_runs_the_blocks_backward():
    # only BasicBlock.forward saves which branch it took: a forward of one's own joins nothing, and backward knows
    class MyBlock(models.resnet.BasicBlock):
        def forward(self, x):
            out = self.relu1(self.bn1(self.conv1(x)))
            return self.relu2(self.add(self.bn2(self.conv2(out)), x))

    minidl.manual_seed(0)
    mine, theirs = MyBlock(4, 4), models.resnet.BasicBlock(4, 4)
    theirs.load_state_dict(mine.state_dict())
    x = arr(np.random.default_rng(8).standard_normal((2, 4, 5, 5)).astype(np.float32))
    want = training_step(theirs, x)
    assert_same_step(training_step(mine, x), want, TOL[np.float32])
    assert_same_step(training_step(nn.fuse(mine), x), want, TOL[np.float32], buffers=False)  # (a second step)
