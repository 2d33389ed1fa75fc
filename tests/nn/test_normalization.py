"""Normalization layers: BatchNorm1d/2d, LayerNorm, GroupNorm, InstanceNorm2d and their functional pairs.

Gradient checks (train and eval), PyTorch parity in float64 (forward, every gradient, running statistics over
several steps, eval output after them), state_dict compatibility and train/eval behaviour. Bad input:
``test_normalization_errors.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn import functional as F
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

eps_values = st.floats(min_value=1e-5, max_value=0.5)


def _randomize(module, rng):
    """Random gamma/beta and (positive) running statistics, so checks don't pass by gamma = 1, beta = 0 luck."""
    for p in module.parameters():
        p.data[...] = arr(rng.normal(size=p.shape) + (1.0 if p is module.weight else 0.0))
    if getattr(module, "running_mean", None) is not None:
        module.running_mean[...] = arr(rng.normal(size=module.running_mean.shape))
        module.running_var[...] = arr(rng.uniform(0.5, 2.0, size=module.running_var.shape))
    return module


# ---------------------------------------------------------------------------------------------- gradient checks
@given(
    spatial=st.sampled_from([(), (3,), (2, 3)]),
    n=st.integers(1, 4),
    c=st.integers(1, 3),
    affine=st.booleans(),
    track=st.booleans(),
    training=st.booleans(),
    eps=eps_values,
    seed=seeds,
)
def test_batchnorm_gradcheck_train_and_eval(spatial, n, c, affine, track, training, eps, seed):
    batch_stats = training or not track
    assume(not batch_stats or n * int(np.prod(spatial)) > 1)
    rng = np.random.default_rng(seed)
    cls = nn.BatchNorm2d if len(spatial) == 2 else nn.BatchNorm1d
    bn = _randomize(cls(c, eps=eps, affine=affine, track_running_stats=track).double(), rng)
    bn.train(training)
    x = arr(rng.normal(size=(n, c) + spatial))
    report = gradcheck.check_module(bn, x)
    assert [e.name for e in report.entries] == ["input"] + (["weight", "bias"] if affine else [])


@given(
    normalized_shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
    leading=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
    elementwise_affine=st.booleans(),
    bias=st.booleans(),
    eps=eps_values,
    seed=seeds,
)
def test_layernorm_gradcheck(normalized_shape, leading, elementwise_affine, bias, eps, seed):
    rng = np.random.default_rng(seed)
    ln = _randomize(nn.LayerNorm(normalized_shape, eps=eps, elementwise_affine=elementwise_affine, bias=bias), rng)
    x = arr(rng.normal(size=leading + normalized_shape))
    gradcheck.check_module(ln.double(), x)


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 6),
    groups=st.integers(1, 6),
    spatial=st.sampled_from([(), (3,), (2, 2)]),
    affine=st.booleans(),
    eps=eps_values,
    seed=seeds,
)
def test_groupnorm_gradcheck(n, c, groups, spatial, affine, eps, seed):
    assume(c % groups == 0)
    rng = np.random.default_rng(seed)
    gn = _randomize(nn.GroupNorm(groups, c, eps=eps, affine=affine).double(), rng)
    gradcheck.check_module(gn, arr(rng.normal(size=(n, c) + spatial)))


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    hw=st.sampled_from([(1, 2), (2, 2), (3, 2)]),
    affine=st.booleans(),
    track=st.booleans(),
    training=st.booleans(),
    unbatched=st.booleans(),
    eps=eps_values,
    seed=seeds,
)
def test_instancenorm_gradcheck(n, c, hw, affine, track, training, unbatched, eps, seed):
    rng = np.random.default_rng(seed)
    inorm = _randomize(nn.InstanceNorm2d(c, eps=eps, affine=affine, track_running_stats=track).double(), rng)
    inorm.train(training)
    shape = (c,) + hw if unbatched else (n, c) + hw
    gradcheck.check_module(inorm, arr(rng.normal(size=shape)))


@given(n=st.integers(2, 4), c=st.integers(1, 3), training=st.booleans(), eps=eps_values, seed=seeds)
def test_batch_norm_functional_gradcheck(n, c, training, eps, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta = arr(rng.normal(size=(n, c, 2))), arr(rng.normal(size=c)), arr(rng.normal(size=c))
    running = (arr(rng.normal(size=c)), arr(rng.uniform(0.5, 2, size=c))) if not training else (None, None)

    def forward(x, gamma, beta):  # the arrays to check first (PyTorch's order puts the running statistics there)
        return F.batch_norm_forward(x, *running, gamma, beta, training=training, momentum=0.1, eps=eps)

    gradcheck.check_function(forward, F.batch_norm_backward, [x, gamma, beta])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward_in_training_and_in_eval(training):
    """Each mode on fixed inputs, whatever hypothesis draws: in training dx carries the terms through the batch mean
    and variance (it sums to 0 per channel and, for eps -> 0, is orthogonal to xhat); in eval it is dout * gamma *
    inv_std."""
    rng, eps = np.random.default_rng(11), 1e-12
    x, dout = rng.normal(loc=2.0, size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
    gamma, beta = rng.normal(size=3) + 1.0, rng.normal(size=3)
    mean, var = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
    _, cache = F.batch_norm_forward(arr(x), arr(mean), arr(var), arr(gamma), arr(beta), training=training, eps=eps)
    dx, dgamma, dbeta = (host(g) for g in F.batch_norm_backward(arr(dout), cache))
    if training:
        xhat = (x - x.mean(axis=(0, 2), keepdims=True)) / np.sqrt(x.var(axis=(0, 2), keepdims=True) + eps)
        assert_close(dx.sum(axis=(0, 2)), np.zeros(3), atol=1e-8, what="dx summed per channel (the batch mean's term)")
        assert_close(
            (dx * xhat).sum(axis=(0, 2)), np.zeros(3), atol=1e-8, what="dx . xhat per channel (the variance's term)"
        )

        def forward(x, gamma, beta):
            return F.batch_norm_forward(x, None, None, gamma, beta, training=True, eps=eps)

        gradcheck.check_function(forward, F.batch_norm_backward, [arr(x), arr(gamma), arr(beta)])
    else:
        inv_std = 1 / np.sqrt(var[None, :, None] + eps)
        xhat = (x - mean[None, :, None]) * inv_std
        assert_close(dx, dout * gamma[None, :, None] * inv_std, what="eval dx (constant statistics)")
    assert_close(dgamma, (dout * xhat).sum(axis=(0, 2)), what="dgamma")
    assert_close(dbeta, dout.sum(axis=(0, 2)), what="dbeta")


@given(n=st.integers(1, 3), c=st.integers(1, 4), seed=seeds)
def test_group_layer_instance_functional_gradchecks(n, c, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta = arr(rng.normal(size=(n, c, 3))), arr(rng.normal(size=c)), arr(rng.normal(size=c))
    gradcheck.check_function(
        lambda x, gamma, beta: F.group_norm_forward(x, c, gamma, beta), F.group_norm_backward, [x, gamma, beta]
    )
    gradcheck.check_function(
        lambda x, gamma, beta: F.instance_norm_forward(x, None, None, gamma, beta, eps=1e-3),
        F.instance_norm_backward,
        [x, gamma, beta],
    )
    g2, b2 = arr(rng.normal(size=(c, 3))), arr(rng.normal(size=(c, 3)))
    gradcheck.check_function(
        lambda x, gamma, beta: F.layer_norm_forward(x, (c, 3), gamma, beta), F.layer_norm_backward, [x, g2, b2]
    )


@given(
    n=st.integers(1, 2),
    c=st.integers(1, 6),
    spatial=st.sampled_from([(2,), (2, 2)]),
    size=st.integers(1, 7),
    alpha=st.floats(1e-3, 2.0),
    beta=st.floats(0.1, 1.5),
    k=st.floats(0.5, 3.0),
    seed=seeds,
)
def test_local_response_norm_gradcheck(n, c, spatial, size, alpha, beta, k, seed):
    rng = np.random.default_rng(seed)
    lrn = nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)
    gradcheck.check_module(lrn, arr(rng.normal(size=(n, c) + spatial)))


# ---------------------------------------------------------------------------------------------- PyTorch parity
def _pair(make_ours, make_torch, rng):
    """The same layer in minidl and PyTorch (float64), with random parameters and running statistics."""
    torch = torch_or_skip()
    ours = _randomize(make_ours().double(), rng)
    theirs = make_torch().double()
    theirs.load_state_dict({k: torch.as_tensor(host(v)) for k, v in ours.state_dict().items()})
    return ours, theirs


def _step_and_compare(ours, theirs, x_host, rng, what):
    """One forward and backward in both frameworks; compare the output, dx and every parameter gradient."""
    x = arr(x_host)
    xt = to_torch(x, requires_grad=True)
    out, out_t = ours(x), theirs(xt)
    assert_close(out, out_t, what=f"{what}: forward")
    dout = rng.normal(size=out.shape)
    ours.zero_grad()
    theirs.zero_grad()
    dx = ours.backward(arr(dout))
    out_t.backward(to_torch(dout))
    assert_close(dx, xt.grad, what=f"{what}: dx")
    for (name, p), (name_t, p_t) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert name == name_t
        assert_close(p.grad, p_t.grad, what=f"{what}: d{name}")


def _compare_state(ours, theirs, what):
    state_t = theirs.state_dict()
    assert list(ours.state_dict()) == list(state_t), what
    for key, value in ours.state_dict().items():
        assert_close(np.asarray(host(value), np.float64), state_t[key].double(), what=f"{what}: {key}")


def _train_then_eval(ours, theirs, shape, rng, what, steps=3):
    ours.train()
    theirs.train()
    for step in range(steps):
        _step_and_compare(ours, theirs, rng.normal(loc=1.5, scale=2.0, size=shape), rng, f"{what} train step {step}")
    _compare_state(ours, theirs, what)
    ours.eval()
    theirs.eval()
    _step_and_compare(ours, theirs, rng.normal(size=shape), rng, f"{what} eval")
    _compare_state(ours, theirs, what)  # eval changes nothing


@pytest.mark.parametrize(
    "cls_name, shape",
    [("BatchNorm1d", (5, 3)), ("BatchNorm1d", (4, 3, 6)), ("BatchNorm2d", (3, 4, 5, 2)), ("BatchNorm2d", (2, 2, 1, 1))],
)
@pytest.mark.parametrize("momentum", [0.1, None, 0.0, 1.0])
@pytest.mark.parametrize("affine, track, bias", [(True, True, True), (False, True, True), (True, False, False)])
def test_batchnorm_matches_pytorch(cls_name, shape, momentum, affine, track, bias):
    torch = torch_or_skip()
    rng = np.random.default_rng(0)
    kw = dict(eps=1e-3, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
    ours, theirs = _pair(
        lambda: getattr(nn, cls_name)(shape[1], **kw), lambda: getattr(torch.nn, cls_name)(shape[1], **kw), rng
    )
    _train_then_eval(ours, theirs, shape, rng, f"{cls_name}{shape} {kw}")
    if track:
        assert ours.num_batches_tracked.dtype == np.int64 and int(ours.num_batches_tracked) == 3


@pytest.mark.parametrize(
    "normalized_shape, shape",
    [(4, (3, 4)), ((4,), (2, 3, 4)), ((3, 4), (2, 3, 4)), ((2, 3, 4), (2, 2, 3, 4)), ((2, 3), (2, 3))],
)
@pytest.mark.parametrize("elementwise_affine, bias", [(True, True), (True, False), (False, True)])
def test_layernorm_matches_pytorch(normalized_shape, shape, elementwise_affine, bias):
    torch = torch_or_skip()
    rng = np.random.default_rng(1)
    kw = dict(eps=1e-4, elementwise_affine=elementwise_affine, bias=bias)
    ours, theirs = _pair(
        lambda: nn.LayerNorm(normalized_shape, **kw), lambda: torch.nn.LayerNorm(normalized_shape, **kw), rng
    )
    _train_then_eval(ours, theirs, shape, rng, f"LayerNorm{normalized_shape} {kw}", steps=2)


@pytest.mark.parametrize(
    "groups, shape", [(1, (2, 4, 3, 3)), (2, (2, 4, 3, 3)), (4, (2, 4, 3)), (3, (3, 6)), (2, (1, 4, 2, 2, 2))]
)
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, True)])
def test_groupnorm_matches_pytorch(groups, shape, affine, bias):
    torch = torch_or_skip()
    rng = np.random.default_rng(2)
    kw = dict(eps=1e-5, affine=affine, bias=bias)
    ours, theirs = _pair(
        lambda: nn.GroupNorm(groups, shape[1], **kw), lambda: torch.nn.GroupNorm(groups, shape[1], **kw), rng
    )
    _train_then_eval(ours, theirs, shape, rng, f"GroupNorm({groups}) {shape} {kw}", steps=2)


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (2, 3, 3), (1, 3, 1, 2)])
@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
@pytest.mark.parametrize("affine, track", [(False, False), (True, False), (False, True), (True, True)])
def test_instancenorm_matches_pytorch(shape, momentum, affine, track):
    torch = torch_or_skip()
    rng = np.random.default_rng(3)
    C = shape[-3]
    kw = dict(eps=1e-5, momentum=momentum, affine=affine, track_running_stats=track)
    ours, theirs = _pair(lambda: nn.InstanceNorm2d(C, **kw), lambda: torch.nn.InstanceNorm2d(C, **kw), rng)
    _train_then_eval(ours, theirs, shape, rng, f"InstanceNorm2d{shape} {kw}")


@pytest.mark.parametrize("shape", [(2, 5, 4), (2, 7, 3, 3), (1, 4, 2, 2, 2)])
@pytest.mark.parametrize(
    "size, alpha, beta, k", [(1, 1e-4, 0.75, 1.0), (2, 0.5, 1.0, 2.0), (5, 1.0, 0.5, 1.0), (9, 2.0, 0.75, 0.5)]
)
def test_local_response_norm_matches_pytorch(shape, size, alpha, beta, k):
    torch = torch_or_skip()
    rng = np.random.default_rng(11)
    kw = dict(alpha=alpha, beta=beta, k=k)
    ours, theirs = nn.LocalResponseNorm(size, **kw), torch.nn.LocalResponseNorm(size, **kw)
    assert repr(ours) == repr(theirs) and list(ours.state_dict()) == []
    _step_and_compare(ours, theirs, rng.normal(scale=2.0, size=shape), rng, f"LocalResponseNorm({size}, {kw}) {shape}")


def test_functional_pairs_match_pytorch_functional():
    torch = torch_or_skip()
    TF = torch.nn.functional
    rng = np.random.default_rng(4)
    x_host = rng.normal(size=(3, 4, 2, 3))
    g, b = rng.normal(size=4), rng.normal(size=4)
    rm, rv = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    rm_ours, rv_ours = arr(rm), arr(rv)
    out, _ = F.batch_norm_forward(arr(x_host), rm_ours, rv_ours, arr(g), arr(b), True, 0.3, 1e-4)  # torch's order
    out_t = TF.batch_norm(torch.tensor(x_host), rm_t, rv_t, torch.tensor(g), torch.tensor(b), True, 0.3, 1e-4)
    assert_close(out, out_t, what="batch_norm")
    assert_close(rm_ours, rm_t, what="running_mean")
    assert_close(rv_ours, rv_t, what="running_var")
    out, _ = F.instance_norm_forward(arr(x_host), rm_ours, rv_ours, arr(g), None, True, 0.2, 1e-4)
    out_t = TF.instance_norm(torch.tensor(x_host), rm_t, rv_t, torch.tensor(g), None, True, 0.2, 1e-4)
    assert_close(out, out_t, what="instance_norm")
    assert_close(rm_ours, rm_t, what="instance running_mean")
    assert_close(rv_ours, rv_t, what="instance running_var")
    out, _ = F.group_norm_forward(arr(x_host), 2, None, arr(b), 1e-3)
    assert_close(out, TF.group_norm(torch.tensor(x_host), 2, None, torch.tensor(b), 1e-3), what="group_norm")
    out, _ = F.layer_norm_forward(arr(x_host), (2, 3), None, None, 1e-3)
    assert_close(out, TF.layer_norm(torch.tensor(x_host), (2, 3), None, None, 1e-3), what="layer_norm")


# ---------------------------------------------------------------------------------------------- state_dict
STATE_CONFIGS = [
    ("BatchNorm1d", (3,), {}),
    ("BatchNorm2d", (3,), dict(affine=False)),
    ("BatchNorm2d", (3,), dict(track_running_stats=False)),
    ("BatchNorm2d", (3,), dict(affine=False, track_running_stats=False)),
    ("BatchNorm1d", (3,), dict(bias=False)),
    ("LayerNorm", ((2, 3),), {}),
    ("LayerNorm", (3,), dict(bias=False)),
    ("LayerNorm", (3,), dict(elementwise_affine=False)),
    ("GroupNorm", (2, 4), {}),
    ("GroupNorm", (2, 4), dict(affine=False)),
    ("GroupNorm", (2, 4), dict(bias=False)),
    ("InstanceNorm2d", (3,), {}),
    ("InstanceNorm2d", (3,), dict(affine=True)),
    ("InstanceNorm2d", (3,), dict(track_running_stats=True)),
    ("InstanceNorm2d", (3,), dict(affine=True, track_running_stats=True, bias=False)),
]


@pytest.mark.parametrize("cls_name, args, kwargs", STATE_CONFIGS)
def test_state_dict_keys_shapes_and_repr_match_pytorch(cls_name, args, kwargs):
    torch = torch_or_skip()
    ours, theirs = getattr(nn, cls_name)(*args, **kwargs), getattr(torch.nn, cls_name)(*args, **kwargs)
    assert list(ours.state_dict().keys()) == list(theirs.state_dict().keys())
    for key, value in theirs.state_dict().items():
        assert tuple(ours.state_dict()[key].shape) == tuple(value.shape), key
        assert_close(ours.state_dict()[key], value.numpy(), what=f"initial {key}")
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize(
    "cls_name, args, kwargs, shape",
    [
        ("BatchNorm2d", (3,), {}, (4, 3, 2, 2)),
        ("BatchNorm1d", (3,), dict(momentum=None), (6, 3)),
        ("LayerNorm", ((2, 3),), {}, (4, 2, 3)),
        ("GroupNorm", (2, 4), {}, (3, 4, 2)),
        ("InstanceNorm2d", (3,), dict(affine=True, track_running_stats=True), (2, 3, 3, 3)),
    ],
)
def test_loading_a_trained_pytorch_state_dict_gives_identical_eval_outputs(cls_name, args, kwargs, shape):
    torch = torch_or_skip()
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    theirs = getattr(torch.nn, cls_name)(*args, **kwargs).double()
    opt = torch.optim.SGD(theirs.parameters(), lr=0.5)
    for _ in range(3):  # train a little so weights and running statistics are not their initial values
        opt.zero_grad()
        (theirs(torch.tensor(rng.normal(loc=2.0, size=shape))) * torch.tensor(rng.normal(size=shape))).sum().backward()
        opt.step()
    ours = getattr(nn, cls_name)(*args, **kwargs).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.eval()
    theirs.eval()
    x = rng.normal(size=shape)
    with torch.no_grad():
        expected = theirs(torch.tensor(x))
    assert_close(ours(arr(x)), expected, what=f"{cls_name} eval after load")
    if "num_batches_tracked" in ours.state_dict():
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)


# ---------------------------------------------------------------------------------------------- behaviour
def test_batchnorm_train_vs_eval():
    rng = np.random.default_rng(6)
    bn = nn.BatchNorm2d(2).double()
    x = arr(rng.normal(loc=3.0, scale=2.0, size=(8, 2, 3, 3)))
    y_train = bn(x)
    assert_close(host(y_train).mean(axis=(0, 2, 3)), np.zeros(2), atol=1e-10, what="train output mean")
    stats = {k: host(v).copy() for k, v in bn.state_dict().items()}
    bn.eval()
    y_eval = bn(x)
    expected = (host(x) - stats["running_mean"][None, :, None, None]) / np.sqrt(
        stats["running_var"][None, :, None, None] + 1e-5
    )
    assert_close(y_eval, expected, what="eval uses the running statistics")
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(host(v), stats[k], err_msg=f"eval changed {k}")
    single = arr(rng.normal(size=(1, 2, 1, 1)))  # batch of one value per channel is fine in eval
    assert bn(single).shape == (1, 2, 1, 1)


def test_batchnorm_without_running_stats_uses_batch_statistics_in_eval():
    rng = np.random.default_rng(7)
    bn = nn.BatchNorm1d(3, track_running_stats=False).double()
    assert bn.running_mean is None and bn.running_var is None and bn.num_batches_tracked is None
    x = arr(rng.normal(loc=5.0, size=(6, 3)))
    y_train = host(bn(x))
    bn.eval()
    assert_close(bn(x), y_train, what="eval with track_running_stats=False")


def test_batchnorm_momentum_none_is_the_cumulative_average():
    rng = np.random.default_rng(8)
    bn = nn.BatchNorm1d(2, momentum=None).double()
    batches = [rng.normal(loc=i, size=(5, 2)) for i in range(4)]
    for b in batches:
        bn(arr(b))
    assert_close(bn.running_mean, np.mean([b.mean(axis=0) for b in batches], axis=0), what="running_mean")
    assert_close(bn.running_var, np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0), what="running_var")
    assert int(bn.num_batches_tracked) == 4


def test_per_sample_norms_ignore_the_mode_and_instance_equals_group_norm_with_one_channel_per_group():
    rng = np.random.default_rng(9)
    x = arr(rng.normal(size=(2, 4, 3, 3)))
    for layer in (nn.LayerNorm((4, 3, 3)), nn.GroupNorm(2, 4), nn.InstanceNorm2d(4)):
        layer = _randomize(layer.double(), rng)
        y_train = host(layer(x))
        assert_close(layer.eval()(x), y_train, what=f"{layer} eval == train")
    instance, _ = F.instance_norm_forward(x)
    group, _ = F.group_norm_forward(x, num_groups=4)
    assert_close(instance, group, what="InstanceNorm == GroupNorm(G=C)")
    layer, _ = F.layer_norm_forward(x, (4, 3, 3))
    assert_close(layer, F.group_norm_forward(x, num_groups=1)[0], what="LayerNorm(C,H,W) == GN(1)")


def test_frozen_parameters_grads_accumulate_and_float32_default():
    rng = np.random.default_rng(10)
    bn = nn.BatchNorm2d(2)
    assert bn.weight.dtype == np.float32 and bn.num_batches_tracked.dtype == np.int64
    assert bn.double().num_batches_tracked.dtype == np.int64 and bn.running_var.dtype == np.float64
    x, dout = arr(rng.normal(size=(3, 2, 2, 2))), arr(rng.normal(size=(3, 2, 2, 2)))
    bn(x)
    bn.backward(dout)
    first = host(bn.weight.grad).copy()
    bn(x)
    bn.backward(dout)
    assert_close(bn.weight.grad, 2 * first, what="gradients accumulate")
    bn.zero_grad()
    bn.weight.requires_grad = False
    bn(x)
    bn.backward(dout)
    assert bn.weight.grad is None and bn.bias.grad is not None
    ln = nn.LayerNorm(3)
    assert ln(arr(rng.normal(size=(2, 3)).astype(np.float32))).dtype == np.float32


def test_no_grad_keeps_nothing_for_backward():
    ln = nn.LayerNorm(3).double()
    with minidl.no_grad():
        ln(arr(np.ones((2, 3))))
    with pytest.raises(RuntimeError, match="LayerNorm.backward"):
        ln.backward(arr(np.ones((2, 3))))


def test_instancenorm_channel_mismatch_without_parameters_only_warns_like_pytorch():
    inorm = nn.InstanceNorm2d(3).double()
    with pytest.warns(UserWarning, match="does not match num_features"):
        out = inorm(arr(np.random.default_rng(0).normal(size=(1, 5, 2, 2))))
    assert out.shape == (1, 5, 2, 2)
