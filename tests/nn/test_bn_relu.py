"""BatchNorm followed by ReLU as one pass: the functional pair, the Numba kernels against the reference, and the
module-level fusion in Sequential and the ResNet blocks (same results as the two layers one after the other)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, models, nn
from minidl.nn import normalization as norm
from minidl.nn.activation import relu_backward, relu_forward
from tests.helpers import arr, host
from tests.strategies import seeds

TOL = {np.float32: {"atol": 5e-4, "rtol": 5e-3}, np.float64: {"atol": 1e-10, "rtol": 1e-9}}


def bn_inputs(rng, shape, affine, dtype):
    C = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, C).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    mean, var = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2.0, C).astype(dtype)
    return x, gamma, beta, mean, var


@given(
    shape=st.sampled_from([(4, 3), (3, 2, 5), (2, 3, 4, 4)]),
    training=st.booleans(),
    affine=st.booleans(),
    seed=seeds,
)
def test_batch_norm_relu_is_relu_of_batch_norm_with_the_same_gradients(shape, training, affine, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, mean, var = (None if a is None else arr(a) for a in bn_inputs(rng, shape, affine, np.float64))
    args = (gamma, beta, mean.copy(), var.copy(), training)
    out, cache = norm.batch_norm_relu_forward(x, *args)
    y, bn_cache = norm.batch_norm_forward(x, gamma, beta, mean.copy(), var.copy(), training)
    ref, mask = relu_forward(y)
    np.testing.assert_allclose(host(out), host(ref), **TOL[np.float64])
    dout = arr(rng.standard_normal(shape))
    got = norm.batch_norm_relu_backward(dout, cache)
    want = norm.batch_norm_backward(relu_backward(dout, mask), bn_cache)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), got, want, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(host(a), host(b), **TOL[np.float64], err_msg=name)


@given(n=st.integers(3, 6), c=st.integers(1, 3), training=st.booleans(), seed=seeds)
def test_batch_norm_relu_functional_gradcheck(n, c, training, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, mean, var = (arr(a) for a in bn_inputs(rng, (n, c, 2, 2), True, np.float64))
    y = norm.batch_norm_forward(x, gamma, beta, mean.copy(), var.copy(), training)[0]
    assume(np.abs(host(y)).min() > 1e-3)  # away from the ReLU's kink

    def f(x, gamma, beta):
        return norm.batch_norm_relu_forward(x, gamma, beta, mean.copy(), var.copy(), training)

    report = gradcheck.check_function(f, norm.batch_norm_relu_backward, [x, gamma, beta])
    assert report.passed, report


# ---------------------------------------------------------------------------------------------- Numba kernels
@given(
    shape=st.sampled_from([(5, 3), (4, 2, 7), (3, 4, 5, 6), (1, 2, 3, 3)]),
    training=st.booleans(),
    affine=st.booleans(),
    special=st.sampled_from(["none", "nan", "zeros"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=seeds,
)
def test_numba_fused_batch_norm_relu_matches_the_reference(shape, training, affine, special, dtype, seed):
    pytest.importorskip("numba")
    rng = np.random.default_rng(seed)
    x, gamma, beta, mean, var = bn_inputs(rng, shape, affine, dtype)
    if special == "nan":
        x.reshape(-1)[rng.integers(0, x.size, 2)] = np.nan
    if special == "zeros" and not training:  # y exactly 0 where x equals the running mean (beta 0): gradient 0
        beta = None if beta is None else np.zeros_like(beta)
        x[0] = mean.reshape((1, -1) + (1,) * (len(shape) - 2))
    results = {}
    for name in ("numpy", "numba"):
        with minidl.use_backend(name):
            m, v = mean.copy(), var.copy()
            out, cache = norm.batch_norm_relu_forward(x, gamma, beta, m, v, training)
            grads = norm.batch_norm_relu_backward(np.ones_like(out) + x * 0.5, cache)
            results[name] = (out, m, v, *grads)
    for label, a, b in zip(
        ("out", "running_mean", "running_var", "dx", "dgamma", "dbeta"), *results.values(), strict=True
    ):
        assert (a is None) == (b is None), label
        if a is not None:
            assert a.dtype == b.dtype, label
            np.testing.assert_allclose(a, b, **TOL[dtype], err_msg=label)


def test_numba_fused_relu_mask_is_the_forwards():
    # the backward recomputes y = (x - mean) inv_std gamma + beta: where the forward's y was 0 or negative the
    # gradient must be exactly 0, where it was positive exactly dout-based, even for y within a rounding of 0
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 4, 8, 8)) * 1e-3).astype(np.float32)
    with minidl.use_backend("numba"):
        out, cache = norm.batch_norm_relu_forward(x, None, None, None, None, True)
        dx, _, _ = norm.batch_norm_relu_backward(np.ones_like(out), cache)
    with minidl.use_backend("numpy"):
        ref_out, ref_cache = norm.batch_norm_relu_forward(x, None, None, None, None, True)
        ref_dx, _, _ = norm.batch_norm_relu_backward(np.ones_like(out), ref_cache)
    np.testing.assert_array_equal(out > 0, ref_out > 0)
    np.testing.assert_allclose(dx, ref_dx, atol=5e-3, rtol=5e-3)


# ---------------------------------------------------------------------------------------------- modules
def _step(model, x, backend):
    with minidl.use_backend(backend):
        model = model.to(backend)
        model.zero_grad()
        out = model(x)
        dx = model.backward(np.ones_like(out))
        return out, dx, {k: p.grad.copy() for k, p in model.named_parameters()}


@pytest.mark.parametrize("kind", ["sequential", "basic_block"])
def test_modules_fuse_batch_norm_relu_with_the_same_results(kind):
    pytest.importorskip("numba")
    minidl.manual_seed(0)
    before = minidl.get_default_dtype()
    minidl.set_default_dtype(np.float64)
    try:
        if kind == "sequential":
            model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
            relu = model[2]
        else:
            model = models.resnet.BasicBlock(4, 4)
            relu = model.relu1
    finally:
        minidl.set_default_dtype(before)
    x = np.random.default_rng(1).standard_normal((3, model_in(model), 6, 6))
    ref = _step(model, x, "numpy")
    relu_forward_calls = []
    original = nn.ReLU.forward
    try:
        nn.ReLU.forward = lambda self, x: relu_forward_calls.append(self) or original(self, x)
        fast = _step(model, x, "numba")
    finally:
        nn.ReLU.forward = original
    assert relu not in relu_forward_calls, "the ReLU after the BatchNorm should run inside the BatchNorm's pass"
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fast[1], ref[1], rtol=1e-9, atol=1e-10)
    for k in ref[2]:
        np.testing.assert_allclose(fast[2][k], ref[2][k], rtol=1e-9, atol=1e-10, err_msg=k)


def model_in(model):
    return 3 if isinstance(model, nn.Sequential) else model.inplanes


def test_a_replaced_activation_is_not_fused_away():
    # a student swapping the block's ReLU for another activation gets that activation
    minidl.manual_seed(0)
    block = models.resnet.BasicBlock(2, 2)
    block.relu1 = nn.GELU()
    seq = nn.Sequential(nn.BatchNorm2d(2), nn.LeakyReLU(0.5))
    x = arr(np.random.default_rng(2).standard_normal((4, 2, 3, 3)).astype(np.float32))
    y = seq(x)
    assert host(y).min() < 0, "LeakyReLU keeps negative values"
    assert seq.backward(arr(np.ones(y.shape, np.float32))).shape == x.shape
    calls = []
    original = nn.GELU.forward
    try:
        nn.GELU.forward = lambda self, x: calls.append(self) or original(self, x)
        block(x)
    finally:
        nn.GELU.forward = original
    assert calls == [block.relu1]


# ---------------------------------------------------------------------------------------------- residual add + ReLU
@given(shape=st.sampled_from([(7,), (3, 4, 5), (2, 3, 4, 4)]), seed=seeds)
def test_add_relu_is_relu_of_the_sum(shape, seed):
    from minidl.nn.activation import add_relu_backward, add_relu_forward

    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    a.reshape(-1)[0], b.reshape(-1)[0] = np.nan, 1.0  # NaN propagates as in relu
    a.reshape(-1)[-1], b.reshape(-1)[-1] = 1.5, -1.5  # exactly 0: gradient 0
    out, cache = add_relu_forward(arr(a), arr(b))
    ref, mask = relu_forward(arr(a + b))
    np.testing.assert_array_equal(host(out), host(ref))
    dout = arr(rng.standard_normal(shape))
    np.testing.assert_array_equal(host(add_relu_backward(dout, cache)), host(relu_backward(dout, mask)))
    with pytest.raises(ValueError, match=r"add_relu_forward: expected two inputs of the same shape and dtype"):
        add_relu_forward(arr(a), arr(b[..., :1]))


def test_resnet_block_ends_with_one_add_relu_pass_and_keeps_the_relu_cache():
    minidl.manual_seed(0)
    block = models.resnet.BasicBlock(3, 3)
    x = arr(np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32))
    y = block(x)
    assert block.relu2._cache is not None, "relu2.backward needs the mask the fused pass saved"
    dx = block.backward(arr(np.ones(y.shape, np.float32)))
    assert dx.shape == x.shape
    assert block.relu2._cache is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_numba_add_relu_matches_the_reference_exactly(dtype):
    pytest.importorskip("numba")
    from minidl.nn.activation import add_relu_forward

    rng = np.random.default_rng(6)
    a, b = (rng.standard_normal((3, 70001)).astype(dtype) for _ in range(2))  # several flat chunks
    a[0, :3] = [np.nan, np.inf, -1.0]
    b[0, :3] = [1.0, -np.inf, 1.0]
    out, mask = minidl.get_backend("numba").add_relu_forward(a, b)
    with minidl.use_backend("numpy"), np.errstate(invalid="ignore"):  # inf + -inf
        ref_out, ref_mask = add_relu_forward(a, b)
    assert out.dtype == ref_out.dtype
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(mask, ref_mask)


# ---------------------------------------------------------------------------------------------- conv-BN folding
def _count_calls(cls, attr, calls):
    original = getattr(cls, attr)

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    return original, counting


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_inference_folds_batch_norm_into_the_convolution(bias, affine):
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=bias), nn.BatchNorm2d(5, affine=affine), nn.ReLU())
    bn = model[1]
    rng = np.random.default_rng(7)
    bn.running_mean[...] = arr(rng.standard_normal(5).astype(np.float32))
    bn.running_var[...] = arr(rng.uniform(0.5, 2.0, 5).astype(np.float32))
    if affine:
        bn.weight.data[...] = arr(rng.uniform(0.5, 1.5, 5).astype(np.float32))
        bn.bias.data[...] = arr(rng.standard_normal(5).astype(np.float32))
    model.eval()
    x = arr(rng.standard_normal((4, 3, 6, 6)).astype(np.float32))
    separate = model[2](bn(model[0](x)))  # layer by layer
    calls = []
    original, counting = _count_calls(nn.BatchNorm2d, "_forward", calls)
    nn.BatchNorm2d._forward = counting
    try:
        with minidl.no_grad():
            folded = model(x)
        assert calls == [], "under no_grad in eval the BatchNorm is folded into the convolution"
        y = model(x)  # gradients enabled: no folding, the backward works
        assert calls == [bn]
        assert model.backward(arr(np.ones(y.shape, np.float32))).shape == x.shape
    finally:
        del nn.BatchNorm2d._forward  # back to the inherited _BatchNorm._forward
    np.testing.assert_allclose(host(folded), host(separate), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host(y), host(separate), rtol=1e-5, atol=1e-5)


def test_no_folding_in_training_without_running_statistics_or_for_another_norm():
    minidl.manual_seed(0)
    x = arr(np.random.default_rng(8).standard_normal((4, 3, 5, 5)).astype(np.float32))
    for model in (
        nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2)),  # training: batch statistics
        nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)).eval(),
    ):
        calls = []
        original, counting = _count_calls(nn.BatchNorm2d, "_forward", calls)
        nn.BatchNorm2d._forward = counting
        try:
            with minidl.no_grad():
                model(x)
        finally:
            del nn.BatchNorm2d._forward  # back to the inherited _BatchNorm._forward
        assert calls == [model[1]]
    with minidl.no_grad(), pytest.raises(ValueError, match="BatchNorm1d"):  # still the unfused error
        nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm1d(2)).eval()(x)


def test_resnet20_inference_is_the_same_folded_or_not():
    minidl.manual_seed(0)
    model = models.resnet20(num_classes=10)
    x = arr(np.random.default_rng(9).standard_normal((2, 3, 32, 32)).astype(np.float32))
    model.train()
    for _ in range(2):  # give the BatchNorms running statistics that are not the identity
        model(x)
    model.eval()
    unfolded = model(x)
    with minidl.no_grad():
        folded = model(x)
    np.testing.assert_allclose(host(folded), host(unfolded), rtol=1e-4, atol=1e-4)


def test_fusion_leaves_subclasses_and_patched_backwards_alone():
    # a BatchNorm subclass runs its own forward; a ReLU whose backward is replaced on the instance sees it called
    class DoubledBatchNorm(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2.0

    minidl.manual_seed(0)
    x = arr(np.random.default_rng(10).standard_normal((4, 3, 5, 5)).astype(np.float32))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), DoubledBatchNorm(4), nn.ReLU())
    for mode in ("train", "eval"):
        getattr(model, mode)()
        with minidl.no_grad():
            np.testing.assert_allclose(host(model(x)), host(model[2](model[1](model[0](x)))), rtol=1e-5, atol=1e-5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    relu, calls = model[2], []
    original = relu.backward
    relu.backward = lambda dout: calls.append(1) or original(dout) * 0
    y = model(x)
    dx = model.backward(arr(np.ones(y.shape, np.float32)))
    assert calls == [1]
    assert not np.any(host(dx)), "the replaced backward (gradient 0) ran"


@pytest.mark.parametrize("training", [True, False])
def test_float16_batch_norm_relu_gradient_follows_the_forward_output(training):
    # float16 runs the kernels in float32; the ReLU then keeps its own mask, so the gradient is zero exactly where
    # the forward's output is (the backward cannot recompute the mask from rounded float16 statistics)
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((16, 6, 3, 3)) * 1e-2).astype(np.float16)
    mean, var = np.zeros(6, np.float16), np.ones(6, np.float16)
    out, cache = norm.batch_norm_relu_forward(arr(x), None, None, arr(mean), arr(var), training)
    dx, _, _ = norm.batch_norm_relu_backward(arr(np.ones(x.shape, np.float16)), cache)
    assert dx.dtype == np.float16
    if not training:  # eval: dx = dout inv_std where out > 0, so exactly the forward's mask
        np.testing.assert_array_equal(host(dx) != 0, host(out) > 0)
