"""A BatchNorm+ReLU deferred to the convolution after it: ``batch_norm_relu_forward(..., deferred=True)`` describes
its output (:class:`~minidl.nn.BatchNormReLUOutput`) instead of computing it, ``conv2d_forward`` takes
that description as its input and computes the output as it reads x (Numba: F(4x4, 3x3) in its compiled loops,
forward and backward), and a fused ResNet ``BasicBlock`` in training hands ``bn1`` to ``conv2`` that way
(:meth:`~minidl.nn.fusion.ConvBn2d.reads_batch_norm_relu`). Checked here: the pairs compute what the chain
BatchNorm+ReLU then convolution computes, on both backends, in both layouts and dtypes, with the gradient of the chain
(gradcheck); the block defers where it should and trains as it does without deferring; it does not defer with a
hook, in eval mode, under anomaly detection, with a replaced pair, on the reference backend or for a C-order input;
bad descriptions raise.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.gradcheck import check_function
from minidl.models import resnet_blocks
from minidl.models.resnet_blocks import BasicBlock
from minidl.nn import BatchNormReLUOutput
from minidl.nn import functional as F
from minidl.nn.fusion import FoldedBatchNorm2d


def batch(shape, layout, dtype=np.float32, seed=0, loc=0.0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype) + dtype(loc)
    return minidl.contiguous(x, layout)


def bn_arguments(C, dtype, seed=1):
    rng = np.random.default_rng(seed)
    gamma, beta = rng.uniform(0.5, 2.0, C).astype(dtype), rng.standard_normal(C).astype(dtype)
    return np.zeros(C, dtype), np.ones(C, dtype), gamma, beta


def close(got, want, rtol):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("layout", [minidl.contiguous_format, minidl.channels_last])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", ["training", "training-with-sums", "eval"])
def test_a_deferred_output_describes_what_the_pair_computes(backend, layout, dtype, how):
    with minidl.use_backend(backend):
        x = batch((4, 8, 6, 6), layout, dtype, loc=0.3)
        mean, var, gamma, beta = bn_arguments(8, dtype)
        training = how != "eval"
        extra = {}
        if how == "training-with-sums":
            sums = np.zeros((3, 8))
            F.conv2d_forward(x, np.eye(8, dtype=dtype).reshape(8, 8, 1, 1), channel_sums=sums)  # x's own sums
            extra["channel_sums"] = sums
        plain_stats, deferred_stats = (mean.copy(), var.copy()), (mean.copy(), var.copy())
        out, cache = F.batch_norm_relu_forward(x, *plain_stats, gamma, beta, training, **extra)
        a, deferred_cache = F.batch_norm_relu_forward(x, *deferred_stats, gamma, beta, training, deferred=True, **extra)
        assert isinstance(a, BatchNormReLUOutput) and a.x is x
        assert a.shape == x.shape and a.dtype == dtype and a.ndim == 4
        assert all(v.shape == (8,) and v.dtype == dtype for v in (a.mean, a.scale, a.offset))
        computed = a.computed()
        assert minidl.suggest_memory_format(computed) == layout
        close(computed, out, 1e-6 if dtype == np.float32 else 1e-13)
        for p, q in zip(plain_stats, deferred_stats, strict=True):  # the same running averages
            np.testing.assert_array_equal(p, q)
        dout = batch(x.shape, layout, dtype, seed=2)
        plain_grads, deferred_grads = (F.batch_norm_relu_backward(dout, c) for c in (cache, deferred_cache))
        for p, q in zip(plain_grads, deferred_grads, strict=True):
            np.testing.assert_array_equal(p, q)  # the same cache: the same backward


# (C, H, N, read): whether F(4x4, 3x3) reads it in its compiled loops on Numba (channels_last); 9 x 9: tiles that
# stick out of the image
SHAPES = [(16, 32, 16, True), (32, 16, 16, True), (8, 8, 4, False), (24, 9, 32, True)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("layout", [minidl.contiguous_format, minidl.channels_last])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, H, N, read", SHAPES, ids=[f"{c}x{h}x{h}-batch{n}" for c, h, n, _ in SHAPES])
def test_a_convolution_of_a_deferred_output_convolves_its_computed_output(backend, layout, dtype, C, H, N, read):
    with minidl.use_backend(backend):
        z = batch((N, C, H, H), layout, dtype, loc=0.2)
        a, _ = F.batch_norm_relu_forward(z, *bn_arguments(C, dtype), True, deferred=True)
        weight = (0.1 * np.random.default_rng(3).standard_normal((C, C, 3, 3))).astype(dtype)
        sums, computed_sums = np.zeros((3, C)), np.zeros((3, C))
        out, cache = F.conv2d_forward(a, weight, None, 1, 1, channel_sums=sums)
        want, want_cache = F.conv2d_forward(a.computed(), weight, None, 1, 1, channel_sums=computed_sums)
        reads = minidl.get_backend().conv2d_reads_bn_relu(z, weight, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        assert reads == (backend == "numba" and layout == minidl.channels_last and read)
        rtol = 2e-5 if dtype == np.float32 else 1e-12
        close(out, want, rtol)
        close(sums, computed_sums, rtol)
        dout = batch(out.shape, layout, dtype, seed=4)
        dx, dw, _ = F.conv2d_backward(dout, cache)  # the gradient of the BatchNorm+ReLU's output
        want_dx, want_dw, _ = F.conv2d_backward(dout, want_cache)
        close(dx, want_dx, rtol)
        close(dw, want_dw, rtol)
        assert minidl.suggest_memory_format(out) == minidl.suggest_memory_format(want)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_chain_of_a_deferred_batch_norm_relu_and_a_convolution_has_the_gradient_of_its_values(backend):
    """gradcheck of z -> batch_norm_relu (deferred) -> conv2d: the convolution's backward gives the gradient of the
    BatchNorm+ReLU's output, which that pair's backward takes. On Numba, a channels_last batch of 16 channels at
    16 x 16, batch 8: F(4x4, 3x3) reads it in its compiled loops."""

    def forward(z, gamma, beta, weight):
        a, bn_cache = F.batch_norm_relu_forward(z, None, None, gamma, beta, True, deferred=True)
        out, conv_cache = F.conv2d_forward(a, weight, None, 1, 1)
        return out, (bn_cache, conv_cache)

    def backward(dout, caches):
        bn_cache, conv_cache = caches
        da, dweight, _ = F.conv2d_backward(dout, conv_cache)
        dz, dgamma, dbeta = F.batch_norm_relu_backward(da, bn_cache)
        return dz, dgamma, dbeta, dweight

    with minidl.use_backend(backend):
        z = batch((8, 16, 16, 16), minidl.channels_last, np.float64, loc=0.1)
        _, _, gamma, beta = bn_arguments(16, np.float64)
        weight = 0.1 * np.random.default_rng(5).standard_normal((16, 16, 3, 3))
        if backend == "numba":
            assert minidl.get_backend().conv2d_reads_bn_relu(z, weight, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        report = check_function(forward, backward, [z, gamma, beta, weight], mode="random_direction", directions=6)
    assert report.passed and len(report.entries) == 4, report


def test_the_numba_backend_reads_it_where_f4x4_runs_in_its_compiled_loops():
    be = minidl.get_backend("numba")
    w = np.zeros((16, 16, 3, 3), np.float32)
    x = batch((32, 16, 32, 32), minidl.channels_last)
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert be.conv2d_reads_bn_relu(x, w, *geometry)
    assert not be.conv2d_reads_bn_relu(minidl.contiguous(x), w, *geometry), "C order: not in those loops"
    assert not be.conv2d_reads_bn_relu(x.astype(np.float16), w.astype(np.float16), *geometry)
    assert not be.conv2d_reads_bn_relu(x, w, (2, 2), (1, 1, 1, 1), (1, 1), 1), "stride 2: not Winograd"
    assert not be.conv2d_reads_bn_relu(x, np.zeros((16, 8, 3, 3), np.float32), (1, 1), (1, 1, 1, 1), (1, 1), 2)
    assert not be.conv2d_reads_bn_relu(x, np.zeros((16, 16, 1, 1), np.float32), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert not minidl.get_backend("numpy").conv2d_reads_bn_relu(x, w, *geometry), "the reference computes it first"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_conv2d_with_another_padding_mode_pads_the_computed_output(backend):
    with minidl.use_backend(backend):
        minidl.manual_seed(0)
        conv = nn.Conv2d(16, 8, 3, padding=1, padding_mode="reflect").to(backend)
        z = batch((2, 16, 8, 8), minidl.channels_last, loc=0.1)
        a, _ = F.batch_norm_relu_forward(z, *bn_arguments(16, np.float32), True, deferred=True)
        other = copy.deepcopy(conv)
        got, want = conv(a), other(a.computed())
        close(got, want, 1e-6)
        close(conv.backward(np.ones_like(got)), other.backward(np.ones_like(want)), 1e-6)
        close(conv.weight.grad, other.weight.grad, 1e-5)


def test_bad_deferred_outputs_and_arguments_raise():
    z = batch((2, 4, 5, 5), minidl.contiguous_format)
    w = np.zeros((4, 4, 3, 3), np.float32)
    good = BatchNormReLUOutput(z, *(np.zeros(4, np.float32) for _ in range(3)))
    with pytest.raises(ValueError, match=r"conv2d_forward: the BatchNorm\+ReLU output's scale must be \(4,\)"):
        F.conv2d_forward(dataclasses.replace(good, scale=np.zeros(3, np.float32)), w)
    with pytest.raises(ValueError, match=r"offset must be \(4,\) of x's dtype float32, got shape \(4,\) and dtype"):
        F.conv2d_forward(dataclasses.replace(good, offset=np.zeros(4)), w)
    with pytest.raises(ValueError, match="conv2d_forward: expected"):
        F.conv2d_forward(dataclasses.replace(good, x=z[0]), w)
    with pytest.raises(TypeError, match="batch_norm_relu_forward: deferred must be a bool, got 'yes'"):
        F.batch_norm_relu_forward(z, None, None, training=True, deferred="yes")
    bn = nn.fuse(nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU6()))[1]
    assert isinstance(bn, FoldedBatchNorm2d)
    with pytest.raises(RuntimeError, match=r"defers only a BatchNorm\+ReLU \(activation 'relu'\), not .* 'relu6'"):
        bn.defer(z)
    relu_bn = nn.fuse(nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval())[1]
    with minidl.no_grad(), pytest.raises(RuntimeError, match="does not defer in inference"):
        relu_bn.defer(z)
    with pytest.raises(TypeError, match=r"ReLU: expected an array, got a BatchNormReLUOutput .* \.computed\(\)"):
        nn.ReLU()(good)  # only a convolution takes one


# ---------------------------------------------------------------------------------------------- the ResNet block
class DeferSpy:
    """Counts the deferred BatchNorms (``FoldedBatchNorm2d.defer``, patched on the class: instances stay plain)."""

    def __init__(self, monkeypatch):
        self.count = 0
        original = FoldedBatchNorm2d.defer

        def spy(module, x):
            self.count += 1
            return original(module, x)

        monkeypatch.setattr(FoldedBatchNorm2d, "defer", spy)


def resnet_stage(seed=0):
    minidl.manual_seed(seed)
    stem = (nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    return nn.Sequential(*stem, BasicBlock(16, 16), BasicBlock(16, 16))


def train(model, x, steps):
    """Steps of plain SGD; each step's output, dx, gradients and buffers."""
    results = []
    for _ in range(steps):
        model.zero_grad()
        out = model(x)
        dx = model.backward(np.cos(np.arange(out.size, dtype=np.float32)).reshape(out.shape) * 0.1)
        results.append([out, dx, *(p.grad.copy() for p in model.parameters()), *(b.copy() for b in model.buffers())])
        for p in model.parameters():
            p.data -= 0.05 * p.grad
    return results


def test_a_fused_resnet_block_defers_bn1_to_conv2_and_trains_as_it_does_without(monkeypatch):
    x = batch((16, 3, 16, 16), minidl.channels_last, seed=6)
    with minidl.use_backend("numba"):
        unfused = resnet_stage().to("numba").train()
        deferring = nn.fuse(resnet_stage().to("numba")).train()
        not_deferring = copy.deepcopy(deferring)
        spy = DeferSpy(monkeypatch)
        got = train(deferring, x, 3)
        assert spy.count == 2 * 3, "both blocks, every step"
        monkeypatch.setattr(resnet_blocks, "reads_batch_norm_relu", lambda *args: False)
        want = train(not_deferring, x, 3)
        assert spy.count == 2 * 3
        unfused_results = train(unfused, x, 3)
    for step in range(3):
        for g, w, u in zip(got[step], want[step], unfused_results[step], strict=True):
            close(g, w, 1e-5)  # (the same arithmetic: in practice the same bits)
            close(g, u, 2e-3)  # the unfused model: other roundings (sums, folds), 3 steps of them
    assert all(not block._saved for block in (deferring[3], deferring[4])), "backward took what forward saved"


def test_no_deferral_where_it_must_not(monkeypatch):
    x = batch((16, 3, 16, 16), minidl.channels_last, seed=7)
    spy = DeferSpy(monkeypatch)
    with minidl.use_backend("numba"):
        model = nn.fuse(resnet_stage().to("numba")).train()
        block = model[3]

        def step(m=model, inp=x):
            out = m(inp)
            m.backward(np.ones_like(out))

        step()
        assert spy.count == 2
        spy.count = 0
        for module in (block.bn1, block.relu1, block.conv2):  # a hook sees what runs unfused
            handle = module.register_forward_hook(lambda m, args, out: None)
            step()
            handle.remove()
        assert spy.count == 3, "the other block still defers"
        spy.count = 0
        step(inp=minidl.contiguous(x))  # C order: F(4x4, 3x3) would not read it in its compiled loops
        with minidl.detect_anomaly():
            step()
        model.eval()
        step()  # eval mode with gradients on: running statistics
        model.train()
        original = F.batch_norm_relu_forward
        monkeypatch.setattr(F, "batch_norm_relu_forward", lambda *a, **k: original(*a, **k))
        step()  # a replaced pair need not take deferred
        monkeypatch.undo()
        spy = DeferSpy(monkeypatch)
        assert spy.count == 0
        step()
        assert spy.count == 2, "and back"
    with minidl.use_backend("numpy"):  # the reference would compute the output first: nothing to save
        spy.count = 0
        step(nn.fuse(resnet_stage()).train())
        assert spy.count == 0


@pytest.mark.parametrize("algorithm", ["im2row", "direct"])
def test_a_backward_the_autotuner_runs_another_way_reads_the_computed_output(algorithm, monkeypatch):
    """The forward ran as F(4x4, 3x3) reading the BatchNorm+ReLU; the autotuner may time another algorithm faster for
    dx and dW (on another machine, or a loaded one): that backward must read a, computed first, not x. (The tuner's
    choice forced here.)"""
    be = minidl.get_backend("numba")
    z = batch((16, 16, 16, 16), minidl.channels_last, loc=0.2, seed=8)
    weight = (0.1 * np.random.default_rng(9).standard_normal((16, 16, 3, 3))).astype(np.float32)
    tuned = type(be)._tuned

    def choose(self, about, names, run, result=True):
        if not result and about["direction"] in ("dx", "dw") and algorithm in names:
            return algorithm
        return tuned(self, about, names, run, result)

    monkeypatch.setattr(type(be), "_tuned", choose)
    monkeypatch.setattr(be, "_autotune", True)
    monkeypatch.setattr(be, "_autotuned", {})
    with minidl.use_backend("numba"):
        a, _ = F.batch_norm_relu_forward(z, *bn_arguments(16, np.float32), True, deferred=True)
        F.conv2d_forward(a.computed(), weight, None, 1, 1)  # (the forward tuned: F(4x4, 3x3) here)
        assert be.conv2d_reads_bn_relu(z, weight, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        out, cache = F.conv2d_forward(a, weight, None, 1, 1)
        want, want_cache = F.conv2d_forward(a.computed(), weight, None, 1, 1)
        dout = batch(out.shape, minidl.channels_last, seed=10)
        grads, want_grads = F.conv2d_backward(dout, cache), F.conv2d_backward(dout, want_cache)
        for got, expected in zip(grads[:2], want_grads[:2], strict=True):  # dx (of a) and dW
            close(got, expected, 2e-5)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_convolution_keeps_the_vectors_it_read(backend):
    """Between the forward and the backward the BatchNorm's buffers and parameters may change in place (an
    optimizer step, another forward, load_state_dict): the backward reads what the forward read."""
    with minidl.use_backend(backend):
        z = batch((16, 16, 16, 16), minidl.channels_last, loc=0.3, seed=11)
        mean, var, gamma, beta = bn_arguments(16, np.float32)
        a, _ = F.batch_norm_relu_forward(z, mean, var, gamma, beta, False, deferred=True)  # eval: the running mean
        weight = (0.1 * np.random.default_rng(12).standard_normal((16, 16, 3, 3))).astype(np.float32)
        dout = np.ones((16, 16, 16, 16), np.float32)
        _, before, _ = F.conv2d_backward(dout, F.conv2d_forward(a, weight, None, 1, 1)[1])
        cache = F.conv2d_forward(a, weight, None, 1, 1)[1]
        mean += 1.0
        beta -= 0.5
        _, after, _ = F.conv2d_backward(dout, cache)
    np.testing.assert_array_equal(after, before)
