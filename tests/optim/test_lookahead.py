"""Lookahead: the slow/fast update against a loop written from the paper, buffers, state_dict, errors."""

from __future__ import annotations

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
