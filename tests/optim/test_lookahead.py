"""Lookahead: the slow/fast update against a loop written from the paper, buffers, state_dict, errors."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from minidl import nn, optim
from tests.helpers import arr, host


def _quadratic_grad(w: np.ndarray) -> np.ndarray:
    return np.array([1.0, 4.0, -2.0]) * w + 0.5  # gradient of a tilted anisotropic quadratic


def test_matches_the_algorithm_written_out():
    """Zhang et al. 2019, Algorithm 1, with Nesterov SGD as the inner optimizer and a changing alpha (airbench)."""
    w0 = np.array([1.0, -2.0, 3.0])
    p = nn.Parameter(arr(w0.copy()))
    inner = optim.SGD([p], lr=0.1, momentum=0.85, nesterov=True)
    la = optim.Lookahead(inner, k=3, alpha=0.5)
    # reference
    fast, slow, buf = w0.copy(), w0.copy(), None
    for t in range(1, 11):
        alpha = 1 - 0.7 * (t / 10) ** 3
        la.alpha = alpha
        la.zero_grad()
        p.grad = arr(_quadratic_grad(host(p.data)))
        la.step()
        g = _quadratic_grad(fast)
        buf = g.copy() if buf is None else 0.85 * buf + g
        fast = fast - 0.1 * (g + 0.85 * buf)
        if t % 3 == 0:
            slow = slow + alpha * (fast - slow)
            fast = slow.copy()
        np.testing.assert_allclose(host(p.data), fast, rtol=1e-12)
    la.sync(alpha=0.0)  # the end of training: the model takes the slow weights
    np.testing.assert_allclose(host(p.data), slow, rtol=1e-12)
    assert la.step_count == 10 and la.param_groups is inner.param_groups


def test_averages_float_buffers_and_leaves_counters_alone():
    bn = nn.BatchNorm2d(2)
    opt = optim.Lookahead(optim.SGD(bn.parameters(), lr=0.1), k=1, alpha=0.25, buffers=bn.buffers())
    x = arr(np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32) + 8.0)
    y = bn(x)
    bn.backward(arr(np.ones(y.shape, np.float32)))
    fast_mean = host(bn.running_mean).copy()
    opt.step()
    np.testing.assert_allclose(host(bn.running_mean), 0.25 * fast_mean, rtol=1e-6)  # slow was 0
    assert int(bn.num_batches_tracked) == 1


def test_state_dict_round_trip_and_errors():
    p = nn.Parameter(arr(np.ones(2)))
    la = optim.Lookahead(optim.SGD([p], lr=0.1, momentum=0.9), k=2, alpha=0.3)
    for _ in range(3):
        p.grad = arr(np.ones(2))
        la.step()
    state = la.state_dict()
    q = nn.Parameter(arr(np.ones(2)))
    other = optim.Lookahead(optim.SGD([q], lr=0.1, momentum=0.9), k=5)
    other.load_state_dict(state)
    assert (other.k, other.alpha, other.step_count) == (2, 0.3, 3)
    np.testing.assert_allclose(host(other.slow[0]), host(la.slow[0]))
    with pytest.raises(TypeError, match="Lookahead: expected a minidl optimizer to wrap, got list"):
        optim.Lookahead([p])
    with pytest.raises(ValueError, match="Lookahead"):
        optim.Lookahead(optim.SGD([p], lr=0.1), alpha=1.5)
    with pytest.raises(ValueError, match=r"Lookahead.load_state_dict: expected 1 slow arrays of shapes \[\(2,\)\]"):
        other.load_state_dict({**state, "slow": [np.ones(3)]})


def test_airbench_param_groups_lambda_lr_and_frozen_parameters_through_lookahead():
    """Two groups with their own lr, one LambdaLR factor for both, a frozen parameter left as it is."""
    bias, weight, frozen = (nn.Parameter(arr(np.ones(2))) for _ in range(3))
    frozen.requires_grad = False
    sgd = optim.SGD(
        [{"params": [bias], "lr": 0.64, "weight_decay": 0.1}, {"params": [weight, frozen], "lr": 0.01}],
        momentum=0.85,
        nesterov=True,
    )
    scheduler = optim.lr_scheduler.LambdaLR(sgd, lambda step: 0.2 + 0.1 * step)
    la = optim.Lookahead(sgd, k=5)
    assert [g["lr"] for g in la.param_groups] == pytest.approx([0.64 * 0.2, 0.01 * 0.2])
    for _ in range(3):
        la.zero_grad()
        for p in (bias, weight, frozen):
            p.grad = arr(np.ones(2))
        la.step()
        scheduler.step()
    assert [g["lr"] for g in la.param_groups] == pytest.approx([0.64 * 0.5, 0.01 * 0.5])
    np.testing.assert_array_equal(host(frozen.data), np.ones(2))
    assert host(bias.data)[0] < host(weight.data)[0] < 1


def _lookahead(momentum=0.9):
    w = nn.Parameter(arr(np.array([1.0, -2.0, 3.0])))
    return w, optim.Lookahead(optim.SGD([w], lr=0.1, momentum=momentum), k=2, alpha=0.5)


def _train(la, w, scheduler, steps):
    lrs = []
    for _ in range(steps):
        la.zero_grad()
        w.grad = arr(_quadratic_grad(host(w.data)))
        la.step()
        scheduler.step()
        lrs.append(la.optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize(
    "make",
    [
        lambda opt: optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        lambda opt: optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step)),
        lambda opt: optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=6),
    ],
    ids=["StepLR", "LambdaLR", "OneCycleLR"],
)
def test_a_scheduler_takes_the_lookahead_and_sets_the_inner_lr(make):
    """As in timm, Lookahead is an Optimizer: a scheduler given the wrapper schedules the inner optimizer's lr, exactly
    as one given the inner optimizer does, and both state dicts round-trip mid-schedule."""
    w, la = _lookahead()
    assert isinstance(la, optim.Optimizer)
    assert la.param_groups is la.optimizer.param_groups and la.defaults is la.optimizer.defaults
    assert la.state is la.optimizer.state
    scheduler = make(la)
    w_ref, la_ref = _lookahead()
    reference = make(la_ref.optimizer)  # the same schedule on the inner optimizer
    assert la.optimizer.param_groups[0]["lr"] == reference.get_last_lr()[0]
    lrs = _train(la, w, scheduler, 3)
    assert lrs == _train(la_ref, w_ref, reference, 3)
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in (la.param_groups[0], la_ref.param_groups[0])]
    assert hyper[0] == hyper[1]  # OneCycleLR's momentum cycle included
    assert len(set(lrs)) > 1 and la.optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0]
    # resume mid-schedule: a new wrapper and scheduler loaded from the state dicts continue identically
    w2, la2 = _lookahead()
    scheduler2 = make(la2)  # PyTorch's order: build both, then load both
    la2.load_state_dict(copy.deepcopy(la.state_dict()))
    scheduler2.load_state_dict(scheduler.state_dict())
    w2.data[...] = w.data
    assert _train(la2, w2, scheduler2, 3) == _train(la, w, scheduler, 3)
    np.testing.assert_array_equal(host(w2.data), host(w.data))
    assert la2.step_count == la.step_count == 6


def test_scheduler_order_warning_follows_the_lookahead_step():
    w, la = _lookahead()
    scheduler = optim.lr_scheduler.StepLR(la, step_size=1)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        scheduler.step()
    w, la = _lookahead()
    scheduler = optim.lr_scheduler.StepLR(la, step_size=1)
    w.grad = arr(np.ones(3))
    la.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler.step()


def test_add_param_group_goes_to_the_inner_optimizer_and_gets_a_slow_copy():
    w, la = _lookahead(momentum=0.0)
    bn = nn.BatchNorm1d(2)
    la = optim.Lookahead(la.optimizer, k=2, alpha=0.5, buffers=bn.buffers())
    v = nn.Parameter(arr(np.array([4.0, 8.0])))
    la.add_param_group({"params": [v], "lr": 0.25})
    assert len(la.optimizer.param_groups) == 2 and la.param_groups[1]["momentum"] == 0.0
    assert len(la.slow) == 4  # w, v, then the running mean and var (num_batches_tracked is an integer)
    np.testing.assert_array_equal(host(la.slow[1]), [4.0, 8.0])
    for _ in range(2):
        la.zero_grad()
        w.grad, v.grad = arr(np.zeros(3)), arr(np.ones(2))
        la.step()
    np.testing.assert_allclose(host(v.data), [4.0 - 0.25, 8.0 - 0.25])  # fast: -0.5 in 2 steps; slow: half of it
    np.testing.assert_array_equal(host(la.slow[1]), host(v.data))
    with pytest.raises(ValueError, match=r"SGD \(param group 2\): some parameters appear in more than one"):
        la.add_param_group({"params": [v]})
    assert len(la.slow) == 4
