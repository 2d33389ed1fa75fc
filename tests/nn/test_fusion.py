"""Fusion: the fused pairs (BatchNorm+ReLU, residual add+ReLU, convolution+ReLU) against the pairs they compose, and
``nn.fuse`` (same state_dict keys, same results, training and inference, nothing fused behind the user's back)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, models, nn, optim
from minidl.nn import functional as F
from tests.helpers import JoinSpy, arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

TOL = {np.float32: {"atol": 5e-4, "rtol": 5e-3}, np.float64: {"atol": 1e-10, "rtol": 1e-9}}


def bn_inputs(rng, shape, affine, dtype):
    C = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, C).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    mean, var = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2.0, C).astype(dtype)
    return x, gamma, beta, mean, var


# ---------------------------------------------------------------------------------------------- fused pairs
@pytest.mark.parametrize("activation", ["relu", "relu6"])
@given(
    shape=st.sampled_from([(4, 3), (3, 2, 5), (2, 3, 4, 4)]),
    training=st.booleans(),
    affine=st.booleans(),
    seed=seeds,
)
def test_batch_norm_activation_is_the_activation_of_batch_norm_with_the_same_gradients(
    activation, shape, training, affine, seed
):
    # batch_norm_relu (batch_norm_relu6): batch_norm, then relu (relu6), forward and backward
    rng = np.random.default_rng(seed)
    x, gamma, beta, mean, var = (None if a is None else arr(a) for a in bn_inputs(rng, shape, affine, np.float64))
    if gamma is not None and activation == "relu6":
        gamma = gamma * 6  # outputs beyond 6 too
    op = f"batch_norm_{activation}"
    out, cache = getattr(F, f"{op}_forward")(x, mean.copy(), var.copy(), gamma, beta, training)
    y, bn_cache = F.batch_norm_forward(x, mean.copy(), var.copy(), gamma, beta, training)
    ref, activation_cache = getattr(F, f"{activation}_forward")(y)
    np.testing.assert_allclose(host(out), host(ref), **TOL[np.float64])
    dout = arr(rng.standard_normal(shape))
    got = getattr(F, f"{op}_backward")(dout, cache)
    want = F.batch_norm_backward(getattr(F, f"{activation}_backward")(dout, activation_cache), bn_cache)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), got, want, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(host(a), host(b), **TOL[np.float64], err_msg=name)


@given(n=st.integers(3, 6), c=st.integers(1, 3), training=st.booleans(), seed=seeds)
def test_batch_norm_relu6_functional_gradcheck(n, c, training, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, mean, var = (arr(a) for a in bn_inputs(rng, (n, c, 2, 2), True, np.float64))
    gamma = gamma * 6
    y = host(F.batch_norm_forward(x, mean.copy(), var.copy(), gamma, beta, training)[0])
    assume(np.abs(y).min() > 1e-3 and np.abs(y - 6).min() > 1e-3)  # away from the ReLU6's kinks
    assume((y > 6).any() or training)  # the upper clamp in play (in training a channel's y has a fixed spread)

    def f(x, gamma, beta):
        return F.batch_norm_relu6_forward(x, mean.copy(), var.copy(), gamma, beta, training)

    report = gradcheck.check_function(f, F.batch_norm_relu6_backward, [x, gamma, beta])
    assert report.passed, report


@given(n=st.integers(3, 6), c=st.integers(1, 3), training=st.booleans(), seed=seeds)
def test_batch_norm_relu_functional_gradcheck(n, c, training, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, mean, var = (arr(a) for a in bn_inputs(rng, (n, c, 2, 2), True, np.float64))
    y = F.batch_norm_forward(x, mean.copy(), var.copy(), gamma, beta, training)[0]
    assume(np.abs(host(y)).min() > 1e-3)  # away from the ReLU's kink

    def f(x, gamma, beta):
        return F.batch_norm_relu_forward(x, mean.copy(), var.copy(), gamma, beta, training)

    report = gradcheck.check_function(f, F.batch_norm_relu_backward, [x, gamma, beta])
    assert report.passed, report


def test_a_fused_batch_norm_relu_mask_is_the_forwards():
    # the Numba kernel's backward recomputes y = (x - mean) inv_std gamma + beta instead of storing the ReLU mask:
    # where the forward's y was <= 0 the gradient must be exactly 0, even for y within a rounding of 0
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 4, 8, 8)) * 1e-3).astype(np.float32)
    with minidl.use_backend("numba"):
        out, cache = F.batch_norm_relu_forward(x, None, None, training=True)
        dx, _, _ = F.batch_norm_relu_backward(np.ones_like(out), cache)
    with minidl.use_backend("numpy"):
        ref_out, ref_cache = F.batch_norm_relu_forward(x, None, None, training=True)
        ref_dx, _, _ = F.batch_norm_relu_backward(np.ones_like(out), ref_cache)
    np.testing.assert_array_equal(out > 0, ref_out > 0)
    np.testing.assert_allclose(dx, ref_dx, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("training", [True, False])
def test_float16_batch_norm_relu_gradient_follows_the_forward_output(training):
    # float16 is not one of the kernels' dtypes: the reference runs, and its ReLU keeps its own mask
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((16, 6, 3, 3)) * 1e-2).astype(np.float16)
    mean, var = np.zeros(6, np.float16), np.ones(6, np.float16)
    out, cache = F.batch_norm_relu_forward(arr(x), arr(mean), arr(var), training=training)
    dx, _, _ = F.batch_norm_relu_backward(arr(np.ones(x.shape, np.float16)), cache)
    assert dx.dtype == np.float16
    if not training:  # eval: dx = dout inv_std where out > 0, so exactly the forward's mask
        np.testing.assert_array_equal(host(dx) != 0, host(out) > 0)


@given(shape=st.sampled_from([(7,), (3, 4, 5), (2, 3, 4, 4)]), seed=seeds)
def test_add_relu_is_relu_of_the_sum(shape, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    a.reshape(-1)[0], b.reshape(-1)[0] = np.nan, 1.0  # NaN propagates as in relu
    a.reshape(-1)[-1], b.reshape(-1)[-1] = 1.5, -1.5  # exactly 0: gradient 0
    out, cache = F.add_relu_forward(arr(a), arr(b))
    ref, relu_cache = F.relu_forward(arr(a + b))
    np.testing.assert_array_equal(host(out), host(ref))
    dout = arr(rng.standard_normal(shape))
    np.testing.assert_array_equal(host(F.add_relu_backward(dout, cache)), host(F.relu_backward(dout, relu_cache)))
    with pytest.raises(ValueError, match=r"add_relu_forward: expected two inputs of the same shape and dtype"):
        F.add_relu_forward(arr(a), arr(b[..., :1]))
    zero_d, _ = F.add_relu_forward(arr(np.array(1.5)), arr(np.array(-0.5)))  # (a + b of 0-d arrays is a scalar)
    assert zero_d.shape == () and float(zero_d) == 1.0


def test_add_relu_module_joins_a_residual_block():
    minidl.manual_seed(0)
    join = nn.AddReLU()
    a, b = arr(np.array([1.0, -2.0, 0.5])), arr(np.array([-3.0, 4.0, 0.5]))
    np.testing.assert_array_equal(host(join(a, b)), [0.0, 2.0, 1.0])
    np.testing.assert_array_equal(host(join.backward(arr(np.full(3, 5.0)))), [0.0, 5.0, 5.0])
    with pytest.raises(ValueError, match=r"^AddReLU: expected two inputs of the same shape"):
        join(a, arr(np.ones(2)))
    block = models.resnet.BasicBlock(3, 3)
    x = arr(np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32))
    y = block(x)
    assert block.add._saved and block.relu2._saved, "the block ends with add and relu2, each keeps its cache"
    assert block.backward(arr(np.ones(y.shape, np.float32))).shape == x.shape
    assert not block.add._saved and not block.relu2._saved
    fused = nn.fuse(block)  # add, relu2 -> AddReLU, Identity
    assert type(fused.add) is nn.AddReLU and type(fused.relu2) is nn.Identity
    np.testing.assert_allclose(host(fused(x)), host(block(x)), rtol=1e-5, atol=1e-6)
    assert fused.backward(arr(np.ones(y.shape, np.float32))).shape == x.shape


@given(seed=seeds, activation=st.sampled_from(["relu", "relu6"]), depthwise=st.booleans())
def test_conv2d_activation_pairs_are_the_activation_of_conv2d(seed, activation, depthwise):
    rng = np.random.default_rng(seed)
    groups = 3 if depthwise else 1
    x = arr(rng.standard_normal((2, 3, 5, 5)) * 3)  # outputs on both flat parts of the ReLU6's clamp
    w, b = arr(rng.standard_normal((6, 3 // groups, 3, 3))), arr(rng.standard_normal(6))
    forward, backward = getattr(F, f"conv2d_{activation}_forward"), getattr(F, f"conv2d_{activation}_backward")
    out, cache = forward(x, w, b, 1, 1, 1, groups)
    conv, conv_cache = F.conv2d_forward(x, w, b, 1, 1, 1, groups)
    ref, act_cache = getattr(F, f"{activation}_forward")(conv)
    np.testing.assert_allclose(host(out), host(ref), **TOL[np.float64])
    dout = arr(rng.standard_normal(out.shape))
    want = F.conv2d_backward(getattr(F, f"{activation}_backward")(dout, act_cache), conv_cache)
    for a, b_ in zip(backward(dout, cache), want, strict=True):
        np.testing.assert_allclose(host(a), host(b_), **TOL[np.float64])


@given(seed=seeds, depthwise=st.booleans())
def test_conv2d_relu6_functional_gradcheck(seed, depthwise):
    rng = np.random.default_rng(seed)
    groups = 2 if depthwise else 1
    x, w, b = arr(rng.standard_normal((2, 2, 4, 4)) * 3), arr(rng.standard_normal((2, 2 // groups, 3, 3))), None
    conv = host(F.conv2d_forward(x, w, b, 1, 1, 1, groups)[0])
    assume(np.abs(conv).min() > 1e-3 and np.abs(conv - 6).min() > 1e-3)  # away from the clamp's corners

    def f(x, w):
        return F.conv2d_relu6_forward(x, w, None, 1, 1, 1, groups)

    report = gradcheck.check_function(f, lambda dout, cache: F.conv2d_relu6_backward(dout, cache)[:2], [x, w])
    assert report.passed, report


@pytest.mark.parametrize("op", ["conv2d_relu", "conv2d_relu6"])
@pytest.mark.parametrize("groups", [1, 4], ids=["dense", "depthwise"])
def test_conv2d_activation_pairs_match_pytorch(op, groups):
    torch = torch_or_skip()
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 4, 6, 5)) * 3, rng.standard_normal((8, 4 // groups, 3, 3)), rng.standard_normal(8)
    out, cache = getattr(F, f"{op}_forward")(arr(x), arr(w), arr(b), 2, 1, 1, groups)
    tx, tw, tb = (to_torch(a, requires_grad=True) for a in (x, w, b))
    activation = torch.nn.functional.relu if op == "conv2d_relu" else torch.nn.functional.relu6
    tout = activation(torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1, groups=groups))
    dout = rng.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    assert_close(out, tout, what=f"{op} forward")
    grads = getattr(F, f"{op}_backward")(arr(dout), cache)
    for name, got, expected in zip(("dx", "dw", "db"), grads, (tx, tw, tb), strict=True):
        assert_close(got, expected.grad, what=f"{op} {name}")


@given(seed=seeds, depthwise=st.booleans(), stride=st.sampled_from([1, 2]))
def test_conv2d_add_relu_is_add_relu_of_conv2d_with_the_same_gradients(seed, depthwise, stride):
    rng = np.random.default_rng(seed)
    groups = 3 if depthwise else 1
    x, w, b = (arr(a) for a in (rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((6, 3 // groups, 3, 3)),
                                rng.standard_normal(6)))  # fmt: skip
    conv, conv_cache = F.conv2d_forward(x, w, b, stride, 1, 1, groups)
    residual = arr(rng.standard_normal(conv.shape) * 3)
    out, cache = F.conv2d_add_relu_forward(x, residual, w, b, stride, 1, 1, groups)
    ref, add_relu_cache = F.add_relu_forward(conv, residual)
    np.testing.assert_allclose(host(out), host(ref), **TOL[np.float64])
    dout = arr(rng.standard_normal(out.shape))
    dz = F.add_relu_backward(dout, add_relu_cache)
    want = (F.conv2d_backward(dz, conv_cache)[0], dz, *F.conv2d_backward(dz, conv_cache)[1:])
    for name, a, b_ in zip(("dx", "dresidual", "dw", "db"), F.conv2d_add_relu_backward(dout, cache), want, strict=True):
        np.testing.assert_allclose(host(a), host(b_), **TOL[np.float64], err_msg=name)


@given(seed=seeds)
def test_conv2d_add_relu_functional_gradcheck(seed):
    rng = np.random.default_rng(seed)
    x, w = arr(rng.standard_normal((2, 2, 4, 4))), arr(rng.standard_normal((3, 2, 3, 3)))
    residual = arr(rng.standard_normal((2, 3, 4, 4)) * 2)
    pre = host(F.conv2d_forward(x, w, None, 1, 1)[0]) + host(residual)
    assume(np.abs(pre).min() > 1e-3)  # away from the ReLU's kink

    def f(x, residual, w):
        return F.conv2d_add_relu_forward(x, residual, w, None, 1, 1)

    grads = lambda dout, cache: F.conv2d_add_relu_backward(dout, cache)[:3]  # noqa: E731 (dx, dresidual, dw)
    report = gradcheck.check_function(f, grads, [x, residual, w])
    assert report.passed, report


@pytest.mark.parametrize("groups", [1, 4], ids=["dense", "depthwise"])
def test_conv2d_add_relu_matches_pytorch(groups):
    torch = torch_or_skip()
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((8, 4 // groups, 3, 3)), rng.standard_normal(8)
    residual = rng.standard_normal((2, 8, 3, 3)) * 3
    out, cache = F.conv2d_add_relu_forward(arr(x), arr(residual), arr(w), arr(b), 2, 1, 1, groups)
    tx, tr, tw, tb = (to_torch(a, requires_grad=True) for a in (x, residual, w, b))
    tout = torch.nn.functional.relu(torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1, groups=groups) + tr)
    dout = rng.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    assert_close(out, tout, what="conv2d_add_relu forward")
    grads = F.conv2d_add_relu_backward(arr(dout), cache)
    for name, got, expected in zip(("dx", "dresidual", "dw", "db"), grads, (tx, tr, tw, tb), strict=True):
        assert_close(got, expected.grad, what=f"conv2d_add_relu {name}")


@pytest.mark.parametrize("op", ["batch_norm_relu", "batch_norm_relu6"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_activation_pairs_match_pytorch(op, training):
    torch = torch_or_skip()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 3, 4, 5)) * 2 + 1
    gamma, beta = rng.uniform(1, 5, 3), rng.standard_normal(3) + 1  # outputs beyond 6 too
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    out, cache = getattr(F, f"{op}_forward")(arr(x), arr(mean), arr(var), arr(gamma), arr(beta), training)
    tx, tg, tb = (to_torch(a, requires_grad=True) for a in (x, gamma, beta))
    activation = torch.nn.functional.relu if op == "batch_norm_relu" else torch.nn.functional.relu6
    tm, tv = to_torch(mean), to_torch(var)
    tout = activation(torch.nn.functional.batch_norm(tx, tm, tv, tg, tb, training=training))
    assert (host(out) >= 6).any() or op == "batch_norm_relu"
    dout = rng.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(dout))
    assert_close(out, tout, what=f"{op} forward")
    grads = getattr(F, f"{op}_backward")(arr(dout), cache)
    for name, got, expected in zip(("dx", "dweight", "dbias"), grads, (tx, tg, tb), strict=True):
        assert_close(got, expected.grad, what=f"{op} {name}")


# ---------------------------------------------------------------------------------------------- nn.fuse
def conv_bn_relu_net(affine: bool = True, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1, bias=bias),
        nn.BatchNorm2d(5, affine=affine),
        nn.ReLU(),
        nn.Conv2d(5, 2, 1),
        nn.Flatten(),
        nn.Linear(2 * 6 * 6, 3),
    )


def randomize_statistics(model, rng):
    """Running statistics and BatchNorm parameters that are not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = arr(rng.standard_normal(m.num_features).astype(m.running_mean.dtype))
            m.running_var[...] = arr(rng.uniform(0.5, 2.0, m.num_features).astype(m.running_var.dtype))
            if m.weight is not None:
                m.weight.data[...] = arr(rng.uniform(0.5, 1.5, m.num_features).astype(m.weight.dtype))
                m.bias.data[...] = arr(rng.standard_normal(m.num_features).astype(m.bias.dtype))


def step(model, x):
    """Output, input gradient and parameter gradients of one training step."""
    model.zero_grad()
    out = model(x)
    dx = model.backward(arr(np.ones(out.shape, out.dtype)))
    return host(out), host(dx), {k: host(p.grad) for k, p in model.named_parameters()}


def test_fuse_replaces_the_patterns_and_leaves_identity_in_the_freed_slots():
    minidl.manual_seed(0)
    model = conv_bn_relu_net()
    fused = nn.fuse(model)
    assert [type(m).__name__ for m in fused] == [
        "ConvBn2d", "FoldedBatchNorm2d", "Identity", "Conv2d", "Flatten", "Linear"
    ]  # fmt: skip
    assert fused[1].activation == fused[0].activation == "relu" and fused[0].bn is fused[1]
    assert [type(m).__name__ for m in model] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "Flatten", "Linear"]
    assert list(fused.state_dict()) == list(model.state_dict())
    mlp = nn.fuse(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.BatchNorm1d(6), nn.Linear(6, 2)))
    assert [type(m).__name__ for m in mlp] == ["Linear", "BatchNormReLU1d", "Identity", "BatchNorm1d", "Linear"]
    assert type(nn.fuse(nn.Sequential(nn.BatchNorm2d(2), nn.ReLU()))[0]).__name__ == "BatchNormReLU2d"


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_a_fused_model_trains_and_infers_like_the_original(affine, bias):
    minidl.manual_seed(0)
    rng = np.random.default_rng(7)
    model = conv_bn_relu_net(affine, bias).to(np.float64)
    randomize_statistics(model, rng)
    fused = nn.fuse(model)
    x = arr(rng.standard_normal((4, 3, 6, 6)))
    for a, b in zip(step(fused, x), step(model, x), strict=True):  # training: batch statistics, BN+ReLU pair
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_allclose(a[k], b[k], **TOL[np.float64], err_msg=k)
        else:
            np.testing.assert_allclose(a, b, **TOL[np.float64])
    for key, value in model.state_dict().items():  # the running statistics moved the same way
        np.testing.assert_allclose(host(fused.state_dict()[key]), host(value), **TOL[np.float64], err_msg=key)
    model.eval(), fused.eval()
    with minidl.no_grad():  # inference: the BatchNorm folded into the convolution
        np.testing.assert_allclose(host(fused(x)), host(model(x)), **TOL[np.float64])
    for a, b in zip(step(fused, x), step(model, x), strict=True):  # eval with gradients: no folding
        if not isinstance(a, dict):
            np.testing.assert_allclose(a, b, **TOL[np.float64])


def test_folding_follows_the_live_parameters_and_a_loaded_state_dict():
    minidl.manual_seed(0)
    rng = np.random.default_rng(3)
    model = conv_bn_relu_net().eval()
    fused = nn.fuse(model)
    other = conv_bn_relu_net()
    randomize_statistics(other, rng)
    fused.load_state_dict(other.state_dict())  # the same keys
    other.eval()
    x = arr(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    with minidl.no_grad():
        np.testing.assert_allclose(host(fused(x)), host(other(x)), rtol=1e-4, atol=1e-5)
        fused[1].weight.data[...] *= 2  # a later change of gamma reaches the folded weights
        other[1].weight.data[...] *= 2
        np.testing.assert_allclose(host(fused(x)), host(other(x)), rtol=1e-4, atol=1e-5)


def test_fuse_in_place_keeps_the_parameter_objects_so_the_optimizer_still_trains_them():
    minidl.manual_seed(0)
    model = models.resnet20(num_classes=10)
    params = list(model.parameters())
    opt = optim.SGD(model.parameters(), lr=0.1)
    assert nn.fuse(model, inplace=True) is model
    assert type(model.layer1[0].bn1).__name__ == "FoldedBatchNorm2d"
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    x = arr(np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32))
    before = host(model.layer1[0].bn1.weight.data).copy()
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), np.array([1, 2]))
    model.zero_grad()
    model.backward(loss_fn.backward())
    opt.step()
    assert not np.allclose(host(model.layer1[0].bn1.weight.data), before), "the optimizer updated the fused BN"
    original = models.resnet20(num_classes=10)
    copy = nn.fuse(original)  # not in place: a deep copy
    assert not {id(p) for p in copy.parameters()} & {id(p) for p in original.parameters()}


def test_resnet_blocks_fuse_their_declared_groups_and_match_the_original():
    minidl.manual_seed(0)
    rng = np.random.default_rng(9)
    for model, shape in ((models.resnet20(num_classes=10), (2, 3, 32, 32)), (models.resnet50(10), (2, 3, 64, 64))):
        model = model.to(np.float64)
        randomize_statistics(model, rng)
        fused = nn.fuse(model)
        assert list(fused.state_dict()) == list(model.state_dict())
        block = fused.layer1[0]
        names = {name: type(m).__name__ for name, m in block.named_children()}
        last_relu = "relu2" if "relu3" not in names else "relu3"
        assert names["conv1"] == "ConvBn2d" and names["add"] == "AddReLU" and names[last_relu] == "Identity", names
        assert type(fused.layer2[0].downsample[0]).__name__ == "ConvBn2d"  # the shortcut's Sequential too
        x = arr(rng.standard_normal(shape))
        out, dx, grads = step(fused, x)
        ref_out, ref_dx, ref_grads = step(model, x)
        np.testing.assert_allclose(out, ref_out, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-8, atol=1e-9)
        for k in ref_grads:
            np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-7, atol=1e-9, err_msg=k)
        model.eval(), fused.eval()
        with minidl.no_grad():
            np.testing.assert_allclose(host(fused(x)), host(model(x)), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_a_resnet_block_end_runs_as_one_folded_convolution_in_inference(backend, memory_format, monkeypatch):
    # conv2 (conv3), bn2, add and relu2: one conv2d_add_relu per block, the same outputs as the unfused model
    minidl.manual_seed(0)
    rng = np.random.default_rng(4)
    spy = JoinSpy(monkeypatch, nn.ConvBn2d)
    dtype = np.float64 if backend == "numpy" else np.float32
    for model, shape, blocks in ((models.resnet20(10), (3, 3, 32, 32), 9), (models.resnet50(10), (2, 3, 48, 48), 16)):
        model = model.to(dtype).eval()
        randomize_statistics(model, rng)
        fused = nn.fuse(model)
        assert fused.layer1[0].conv1.joins is None
        last = "conv2" if isinstance(fused.layer1[0], models.resnet.BasicBlock) else "conv3"
        assert getattr(fused.layer1[0], last).joins == ("add", "relu2" if last == "conv2" else "relu3")
        layout = minidl.channels_last if memory_format == "channels_last" else minidl.contiguous_format
        x = minidl.contiguous(arr(rng.standard_normal(shape).astype(dtype)), layout)
        with minidl.use_backend(backend), minidl.no_grad():
            spy.calls = 0
            got = host(fused(x))
            assert spy.calls == blocks
            np.testing.assert_allclose(got, host(model(x)), **TOL[dtype])


def test_the_joined_block_end_runs_only_in_inference_and_with_the_blocks_own_modules(monkeypatch):
    minidl.manual_seed(0)
    rng = np.random.default_rng(5)
    model = models.resnet20(10).to(np.float64)
    randomize_statistics(model, rng)
    fused = nn.fuse(model)
    spy = JoinSpy(monkeypatch, nn.ConvBn2d)
    x = arr(rng.standard_normal((2, 3, 32, 32)))
    out, dx, grads = step(fused, x)  # training: the four modules, with their backward
    ref_out, ref_dx, _ = step(model, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-8, atol=1e-9)
    assert spy.calls == 0
    model.eval(), fused.eval()
    with minidl.no_grad():
        want = host(model(x))
        block = fused.layer1[0]
        handle = block.add.register_forward_hook(lambda *a: None)  # a hook on the Add: it must run, unjoined
        np.testing.assert_allclose(host(fused(x)), want, rtol=1e-8, atol=1e-9)
        assert spy.calls == 8
        handle.remove()
        block.relu2 = nn.ReLU()  # an edited block: unjoined (and its ReLU runs)
        np.testing.assert_allclose(host(fused(x)), want, rtol=1e-8, atol=1e-9)
        assert spy.calls == 8 + 8
    with minidl.no_grad(), pytest.MonkeyPatch.context() as patch:  # a replaced add_relu pair: unjoined
        original = F.add_relu_forward
        patch.setattr(F, "add_relu_forward", lambda a, b: original(a, b))
        np.testing.assert_allclose(host(fused(x)), want, rtol=1e-8, atol=1e-9)
    assert spy.calls == 16
    with minidl.no_grad(), pytest.raises(RuntimeError, match=r"takes a residual only where nn.fuse joined it"):
        fused.layer1[1].conv2(x, x)  # called on its own, not by its block


@pytest.mark.parametrize("hook", ["forward_pre", "forward", "replaced_forward"])
def test_a_hooked_or_replaced_last_convolution_leaves_the_block_end_unjoined(hook, monkeypatch):
    # the joined call would hand the hook two inputs and the summed output: the four modules run instead
    minidl.manual_seed(0)
    model = models.resnet20(10).eval()
    fused = nn.fuse(model)
    spy = JoinSpy(monkeypatch, nn.ConvBn2d)
    conv = fused.layer1[0].conv2
    seen = []
    if hook == "forward_pre":
        conv.register_forward_pre_hook(lambda m, inputs: seen.append(len(inputs)))
    elif hook == "forward":
        conv.register_forward_hook(lambda m, inputs, out: seen.append(len(inputs)))
    else:
        original = conv.forward
        object.__setattr__(conv, "forward", lambda x: seen.append(1) or original(x))
    x = arr(np.random.default_rng(6).standard_normal((2, 3, 32, 32)).astype(np.float32))
    with minidl.no_grad():
        np.testing.assert_allclose(host(fused(x)), host(model(x)), rtol=1e-4, atol=1e-5)
    assert seen == [1] and spy.calls == 8


def test_a_wrong_shortcut_names_the_block_in_joined_inference_too():
    block = nn.fuse(models.resnet.BasicBlock(16, 16, stride=2)).eval()  # stride 2 without a downsample
    x = arr(np.ones((2, 16, 8, 8), np.float32))
    for grad in (True, False):
        with (
            minidl.set_grad_enabled(grad),
            pytest.raises(
                ValueError,
                match=r"^BasicBlock\(16, 16, stride=2\): the "
                r"residual branch gives shape \(2, 16, 4, 4\) .*downsample=",
            ),
        ):
            block(x)


def test_se_blocks_keep_their_groups_their_gate_sits_between_the_batchnorm_and_the_sum():
    minidl.manual_seed(0)
    model = models.se_resnet20(10).eval()
    fused = nn.fuse(model)
    assert fused.layer1[0].conv2.joins is None and type(fused.layer1[0].add).__name__ == "AddReLU"
    x = arr(np.random.default_rng(7).standard_normal((2, 3, 32, 32)).astype(np.float32))
    with minidl.no_grad():
        np.testing.assert_allclose(host(fused(x)), host(model(x)), rtol=1e-4, atol=1e-5)


def test_nothing_but_the_exact_layers_is_fused():
    class DoubledBatchNorm(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2.0

    minidl.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), DoubledBatchNorm(4), nn.ReLU(), nn.BatchNorm2d(4), nn.LeakyReLU(0.5))
    assert [type(m) for m in nn.fuse(seq)] == [type(m) for m in seq]
    block = models.resnet.BasicBlock(2, 2)
    block.relu1 = nn.GELU()  # a student swaps the block's first activation: no BatchNorm+ReLU fusion there
    fused = nn.fuse(block)
    assert type(fused.relu1) is nn.GELU and type(fused.bn1).__name__ == "FoldedBatchNorm2d"
    assert fused.bn1.activation is None
    x = arr(np.random.default_rng(2).standard_normal((4, 2, 3, 3)).astype(np.float32))
    np.testing.assert_allclose(host(fused(x)), host(block(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="fuse: expected a Module, got list"):
        nn.fuse([seq])
    with pytest.raises(TypeError, match="fuse: inplace must be a bool"):
        nn.fuse(seq, inplace=1)


@pytest.mark.parametrize("fused", [False, True])
def test_each_layer_of_a_sequential_can_run_its_own_backward(fused):
    """The issue's reproducer: after a plain forward, calling every child's backward in reverse order works."""
    minidl.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(400, 3))
    if fused:
        m = nn.fuse(m)
    x = arr(np.random.default_rng(0).standard_normal((2, 3, 10, 10)).astype(np.float32))
    out = m(x)
    d = arr(np.ones(out.shape, np.float32))
    for layer in reversed(list(m)):
        d = layer.backward(d)
    assert d.shape == x.shape
    out = m(x)
    np.testing.assert_allclose(host(m.backward(arr(np.ones(out.shape, np.float32)))), host(d), rtol=1e-5, atol=1e-6)


def test_the_training_helpers_fuse_on_a_fast_backend_only_and_can_be_told_not_to():
    from minidl.train import Trainer

    def trainer(**kw):
        model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
        return Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), verbose=False, **kw)

    with minidl.use_backend("numba"):
        assert type(trainer().model[1]).__name__ == "BatchNormReLU1d"
        assert type(trainer(fuse=False).model[1]) is nn.BatchNorm1d
    with minidl.use_backend("numpy"):
        assert type(trainer().model[1]) is nn.BatchNorm1d  # the reference mode runs the layers as written
        assert type(trainer(fuse=True).model[1]).__name__ == "BatchNormReLU1d"
    with pytest.raises(TypeError, match="fuse must be None, True or False"):
        trainer(fuse="yes")


def test_conv_bn_relu6_folds_into_one_convolution_and_trains_like_the_original():
    minidl.manual_seed(0)
    rng = np.random.default_rng(21)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU6(),  # MobileNetV2's layers
        nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU6(),
        nn.Conv2d(6, 4, 1),
        nn.BatchNorm2d(4),
        nn.Hardtanh(0.0, 6.0),  # not a ReLU6: not folded with the conv
    ).to(np.float64)
    randomize_statistics(model, rng)
    for m in model.modules():  # activations well past 6, so the clamp matters
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data[...] += 3.0
    fused = nn.fuse(model)
    assert [type(m).__name__ for m in fused] == [
        "ConvBn2d", "FoldedBatchNorm2d", "Identity", "ConvBn2d", "FoldedBatchNorm2d", "Identity", "ConvBn2d",
        "FoldedBatchNorm2d", "Hardtanh",
    ]  # fmt: skip
    assert fused[0].activation == fused[1].activation == "relu6" and fused[6].activation is None
    assert repr(fused[0]).endswith("folds=BatchNorm2d+ReLU6)") and "activation=relu6" in repr(fused[1])
    assert list(fused.state_dict()) == list(model.state_dict())
    x = arr(rng.standard_normal((4, 3, 6, 6)) * 2)
    for a, b in zip(step(fused, x), step(model, x), strict=True):  # training: the batch_norm_relu6 pass
        for k in a if isinstance(a, dict) else [None]:
            np.testing.assert_allclose(a[k] if k else a, b[k] if k else b, **TOL[np.float64], err_msg=str(k))
    model.eval(), fused.eval()
    seen = []  # the first folded group's output, as the Identity in the ReLU6's slot passes it on
    fused[2].register_forward_hook(lambda module, args, output: seen.append(host(output)))
    with minidl.no_grad():
        np.testing.assert_allclose(host(fused(x)), host(model(x)), **TOL[np.float64])
    assert (seen[0] == 6).mean() > 0.01 and (seen[0] == 0).mean() > 0.01, "both flat parts of the clamp are hit"
    assert "_folded_output" not in fused[4].__dict__, "the folded output was passed on and forgotten"


def test_conv_bn_relu6_folds_in_inference_only():
    minidl.manual_seed(0)
    fused = nn.fuse(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU6()))
    x = arr(np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32))
    calls = []
    original = F.conv2d_relu6_forward
    with pytest.MonkeyPatch.context() as patch:  # a spy on the folded pair (folding checks the BatchNorm's pairs)
        patch.setattr(F, "conv2d_relu6_forward", lambda *a: calls.append(a[0].shape) or original(*a))
        fused(x)  # training: no folding
        fused.eval()
        with minidl.no_grad():
            fused(x)  # inference: one folded convolution
    assert calls == [(2, 2, 5, 5)]


@pytest.mark.parametrize("replaced", ["relu6", "hardtanh"])  # (relu6 is hardtanh(0, 6))
def test_a_replaced_relu6_pair_turns_the_relu6_folding_off(replaced, monkeypatch):
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU6()).eval()
    fused = nn.fuse(model)
    x = arr(np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32))
    calls = []
    original = getattr(F, f"{replaced}_forward")
    monkeypatch.setattr(F, f"{replaced}_forward", lambda y, *a: calls.append(y.shape) or original(y, *a))
    with minidl.no_grad():
        np.testing.assert_allclose(host(fused(x)), host(model(x)), rtol=1e-5, atol=1e-6)
    assert calls == [(2, 3, 3, 3), (2, 3, 3, 3)], "both ran the student's pair: the fused model did not fold"


@pytest.mark.parametrize("op", ["conv2d_relu", "conv2d_relu6"])
def test_grouped_activation_pairs_name_a_bad_input(op):
    # the Numba kernel's accepts() looks at the shapes before the setup checks them: a bad call must still get the
    # reference's message
    w = arr(np.ones((4, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="expected a 4-D"):
        getattr(F, f"{op}_forward")(arr(np.ones(5, np.float32)), w, None, 1, 1, 1, 2)


_COMPOSED = {  # a pair built from others -> a forward call on x (N, 4, H, W)
    "add_relu": lambda x: F.add_relu_forward(x, x.copy()),
    "batch_norm_relu": lambda x: F.batch_norm_relu_forward(x, None, None, training=True),
    "batch_norm_relu6": lambda x: F.batch_norm_relu6_forward(x, None, None, training=True),
    "batch_norm_add_relu": lambda x: F.batch_norm_add_relu_forward(x, x.copy(), None, None, training=True),
    "conv2d_relu": lambda x: F.conv2d_relu_forward(x, np.ones((4, 4, 3, 3), x.dtype), None, 1, 1),
    "conv2d_relu6": lambda x: F.conv2d_relu6_forward(x, np.ones((4, 4, 3, 3), x.dtype), None, 1, 1),
    "conv2d_add_relu": lambda x: F.conv2d_add_relu_forward(x, x.copy(), np.ones((4, 4, 3, 3), x.dtype), None, 1, 1),
}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("op", sorted(_COMPOSED))
def test_a_composed_pairs_backward_names_itself_for_a_bad_gradient(op, backend, channels_last):
    # whether a kernel ran (on Numba, channels_last or not) or the reference, whose first inner pair checks too
    if backend == "numba":
        pytest.importorskip("numba")
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    with minidl.use_backend(backend):
        out, cache = _COMPOSED[op](minidl.contiguous(x, minidl.channels_last) if channels_last else x)
        backward = getattr(F, f"{op}_backward")
        with pytest.raises(ValueError, match=rf"^{op}_backward: the gradient has shape \(2, 4, 3, 2\)"):
            backward(np.ones((2, 4, 3, 2), np.float32), cache)
        with pytest.raises(TypeError, match=rf"^{op}_backward: the gradient has dtype float64"):
            backward(np.ones(out.shape, np.float64), cache)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_fused_mobilenet_v2_infers_like_the_original(backend):
    minidl.manual_seed(0)
    rng = np.random.default_rng(8)
    with minidl.use_backend(backend):
        model = models.mobilenet_v2(num_classes=10)
        randomize_statistics(model, rng)
        fused = nn.fuse(model).eval()
        model.eval()
        kinds = {type(m).__name__ for m in fused.modules()}
        assert "ReLU6" not in kinds and "ConvBn2d" in kinds, "every ReLU6 follows a Conv-BatchNorm: all folded"
        x = arr(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
        with minidl.no_grad():
            np.testing.assert_allclose(host(fused(x)), host(model(x)), rtol=1e-3, atol=1e-3)
