"""L1/L2/elastic-net penalties (value and gradient) and the max-norm constraint."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import nn, optim
from minidl.nn.regularization import elastic_net_penalty, l1_penalty, l2_penalty, max_norm_
from tests.helpers import arr, host, torch_or_skip
from tests.strategies import array_away_from, seeds

shape_lists = st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), min_size=1, max_size=3)


def _torch_penalty(torch, values, l1, l2):
    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    total = sum(l1 * t.abs().sum() + 0.5 * l2 * (t * t).sum() for t in tensors)
    total.backward()
    return float(total.detach()), [t.grad.numpy() for t in tensors]


@given(shapes=shape_lists, l1=st.sampled_from([0.0, 1e-3, 0.5]), l2=st.sampled_from([0.0, 1e-4, 0.3]), seed=seeds)
def test_elastic_net_value_and_gradient_match_torch_autograd(shapes, l1, l2, seed):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    values = [array_away_from(rng, s) for s in shapes]  # |w| is not differentiable at 0
    upstream = [rng.standard_normal(s) for s in shapes]
    params = [nn.Parameter(arr(v)) for v in values]
    for p, g in zip(params, upstream, strict=True):
        p.grad = arr(g.copy())  # gradients of the data loss already there: the penalty's must be added
    value = elastic_net_penalty(params, l1=l1, l2=l2)
    expected_value, expected_grads = _torch_penalty(torch, values, l1, l2)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-15)
    for p, g, dg in zip(params, upstream, expected_grads, strict=True):
        np.testing.assert_allclose(host(p.grad), g + dg, rtol=1e-12, atol=1e-15)


def test_l1_l2_match_numpy_formulas():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4))
    w[0, 0] = 0.0  # the subgradient sign(0) = 0
    p = nn.Parameter(arr(w))
    assert l1_penalty(p, 0.1) == pytest.approx(0.1 * np.abs(w).sum(), rel=1e-12)
    np.testing.assert_allclose(host(p.grad), 0.1 * np.sign(w))
    assert host(p.grad)[0, 0] == 0.0
    q = nn.Parameter(arr(w))
    assert l2_penalty([q], 0.2) == pytest.approx(0.1 * (w**2).sum(), rel=1e-12)
    np.testing.assert_allclose(host(q.grad), 0.2 * w)


def test_frozen_parameters_are_skipped_and_module_accepted():
    model = nn.Linear(3, 2)
    model.bias.requires_grad = False
    w, b = host(model.weight.data).astype(np.float64), host(model.bias.data)
    value = l2_penalty(model, 0.5)
    assert value == pytest.approx(0.25 * (w**2).sum(), rel=1e-5)  # the bias is frozen: not in the value
    assert model.bias.grad is None
    assert model.weight.grad.dtype == np.float32
    np.testing.assert_allclose(host(model.weight.grad), 0.5 * w, rtol=1e-6)
    assert b.shape == (2,)


def test_l2_penalty_equals_coupled_weight_decay():
    """SGD(weight_decay=wd) and SGD() with l2_penalty(wd) added to the gradient follow the same trajectory."""
    rng = np.random.default_rng(1)
    init, targets = rng.standard_normal((4, 3)), rng.standard_normal((20, 4, 3))
    a, b = nn.Parameter(arr(init.copy())), nn.Parameter(arr(init.copy()))
    opt_a = optim.SGD([a], lr=0.1, momentum=0.9, weight_decay=0.05)
    opt_b = optim.SGD([b], lr=0.1, momentum=0.9)
    for target in targets:
        for p, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            p.grad = p.data - arr(target)
        l2_penalty(b, 0.05)
        opt_a.step()
        opt_b.step()
    np.testing.assert_allclose(host(a.data), host(b.data), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("shape", "dim", "norm_type", "max_norm"),
    [((6, 5), 0, 2.0, 1.0), ((4, 3, 3, 3), 0, 2.0, 2.0), ((4, 3, 2, 2), 1, 1.0, 1.5), ((5, 7), -1, 3.0, 0.8)],
)
def test_max_norm_matches_torch_renorm(shape, dim, norm_type, max_norm):
    torch = torch_or_skip()
    w = np.random.default_rng(2).standard_normal(shape)
    p = nn.Parameter(arr(w.copy()))
    data_id = id(p.data)
    assert max_norm_(p, max_norm, dim=dim, norm_type=norm_type) is p
    assert id(p.data) == data_id
    expected = torch.renorm(torch.tensor(w), norm_type, dim, max_norm).numpy()
    np.testing.assert_allclose(host(p.data), expected, rtol=1e-12, atol=1e-15)
    assert not np.allclose(expected, w), "no slice exceeded max_norm: the test would not see a wrong rescaling"


def test_max_norm_on_a_module_leaves_biases():
    model = nn.Linear(10, 4)
    model.weight.data[...] = 3.0
    model.bias.data[...] = 30.0
    max_norm_(model, 1.0)
    norms = np.linalg.norm(host(model.weight.data).astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    np.testing.assert_array_equal(host(model.bias.data), 30.0)
    assert model.weight.data.dtype == np.float32


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: l1_penalty(p, -0.1), ValueError, "l1_penalty: weight must be >= 0.0, got -0.1"),
        (lambda p: l2_penalty(p, float("inf")), ValueError, "l2_penalty: weight must be finite"),
        (lambda p: elastic_net_penalty(p, 0.1, -1.0), ValueError, "elastic_net_penalty: l2 must be >= 0.0"),
        (lambda p: l2_penalty(p.data, 0.1), TypeError, "expected Parameters .* got an array"),
        (lambda p: l1_penalty([p, "w"], 0.1), TypeError, r"parameters\[1\] is a str"),
        (lambda p: max_norm_(p, 0.0), ValueError, "max_norm_: max_norm must be > 0.0"),
        (lambda p: max_norm_(p, 1.0, dim=2), ValueError, r"dim=2 is out of range for a weight of shape \(2, 3\)"),
        (lambda p: max_norm_(p, 1.0, norm_type=-2), ValueError, "norm_type must be > 0.0"),
        (lambda p: max_norm_(["w"], 1.0), TypeError, "item 0 is a str"),
        (
            lambda p: max_norm_(np.ones(3), 1.0),
            ValueError,
            r"at least 2 dimensions \(one slice per output unit\), got shape \(3,\)",
        ),
    ],
)
def test_bad_arguments(call, error, match):
    p = nn.Parameter(arr(np.ones((2, 3))))
    with pytest.raises(error, match=match):
        call(p)
