"""Gradient clipping and parameter vectors against torch.nn.utils."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import nn
from minidl.nn import utils
from tests.helpers import arr, host, torch_or_skip

SHAPES = [(3, 4), (5,), (2, 2, 3), (1,)]


def _params_and_torch(rng, shapes=SHAPES, none_at=(3,), scale=1.0):
    torch = torch_or_skip()
    ours, theirs = [], []
    for i, shape in enumerate(shapes):
        w, g = rng.standard_normal(shape), scale * rng.standard_normal(shape)
        p = nn.Parameter(arr(w))
        t = torch.tensor(w, requires_grad=True)
        if i not in none_at:  # a parameter without a gradient is skipped
            p.grad = arr(g)
            t.grad = torch.tensor(g)
        ours.append(p)
        theirs.append(t)
    return ours, theirs


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = torch_or_skip()
    ours, theirs = _params_and_torch(np.random.default_rng(0))
    total = utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=float(norm_type))
    assert isinstance(total, float)
    np.testing.assert_allclose(total, float(expected), rtol=1e-12)
    for p, t in zip(ours, theirs, strict=True):
        assert (p.grad is None) == (t.grad is None)
        if p.grad is not None:
            np.testing.assert_allclose(host(p.grad), t.grad.numpy(), rtol=1e-12, atol=1e-15)


@given(
    shapes=st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4),
    max_norm=st.floats(0.01, 10.0),
    norm_type=st.sampled_from([1.0, 2.0, 2.5, math.inf]),
    scale=st.sampled_from([1e-3, 1.0, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_clip_grad_norm_random(shapes, max_norm, norm_type, scale, seed):
    torch = torch_or_skip()
    ours, theirs = _params_and_torch(np.random.default_rng(seed), shapes, none_at=(), scale=scale)
    total = utils.clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    np.testing.assert_allclose(total, float(expected), rtol=1e-12)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(host(p.grad), t.grad.numpy(), rtol=1e-12, atol=1e-15)
    clipped = utils.get_total_norm([p.grad for p in ours], norm_type)
    assert clipped <= max_norm * (1 + 1e-9) or total <= max_norm


def test_get_total_norm_and_clip_grads_with_norm_match_torch():
    torch = torch_or_skip()
    ours, theirs = _params_and_torch(np.random.default_rng(1), none_at=())
    total = utils.get_total_norm([p.grad for p in ours], 3.0)
    expected = torch.nn.utils.get_total_norm([t.grad for t in theirs], 3.0)
    np.testing.assert_allclose(total, float(expected), rtol=1e-12)
    utils.clip_grads_with_norm_(ours, 0.1, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 0.1, expected)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(host(p.grad), t.grad.numpy(), rtol=1e-12)


def test_clip_grad_value_matches_torch():
    torch = torch_or_skip()
    ours, theirs = _params_and_torch(np.random.default_rng(2))
    ids = [id(p.grad) for p in ours]
    utils.clip_grad_value_(ours, 0.3)
    torch.nn.utils.clip_grad_value_(theirs, 0.3)
    for p, t in zip(ours, theirs, strict=True):
        if p.grad is not None:
            np.testing.assert_array_equal(host(p.grad), t.grad.numpy())
    assert [id(p.grad) for p in ours] == ids  # in place


def test_nonfinite_norm():
    p = nn.Parameter(arr(np.zeros(3)))
    p.grad = arr(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(RuntimeError, match="total norm of order 2.0 for gradients from `parameters` is non-finite"):
        utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(host(p.grad), [1.0, np.nan, 2.0])  # nothing was scaled
    assert math.isnan(utils.clip_grad_norm_(p, 1.0))  # as in PyTorch: scaled by the nan coefficient


def test_no_gradients_module_and_float32():
    model = nn.Linear(3, 2)
    assert utils.clip_grad_norm_(model, 1.0) == 0.0
    model.weight.grad = arr(np.full((2, 3), 10.0, np.float32))
    total = utils.clip_grad_norm_(model.parameters(), 1.0)
    np.testing.assert_allclose(total, math.sqrt(600.0), rtol=1e-6)
    assert model.weight.grad.dtype == np.float32
    np.testing.assert_allclose(float(np.linalg.norm(host(model.weight.grad))), 1.0, rtol=1e-5)


def test_parameters_to_vector_round_trip_matches_torch():
    torch = torch_or_skip()
    ours, theirs = _params_and_torch(np.random.default_rng(3))
    vec = utils.parameters_to_vector(ours)
    np.testing.assert_array_equal(host(vec), torch.nn.utils.parameters_to_vector(theirs).detach().numpy())
    ids = [id(p.data) for p in ours]
    utils.vector_to_parameters(arr(np.arange(vec.shape[0], dtype=np.float64)), ours)
    assert [id(p.data) for p in ours] == ids
    np.testing.assert_array_equal(host(utils.parameters_to_vector(ours)), np.arange(vec.shape[0]))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: utils.clip_grad_norm_(p, 1.0, norm_type=0), ValueError, "norm_type must be > 0"),
        (lambda p: utils.clip_grad_norm_(p, 1.0, norm_type="two"), TypeError, "norm_type must be a number or 'inf'"),
        (lambda p: utils.clip_grad_norm_(p, -1.0), ValueError, "clip_grad_norm_: max_norm must be >= 0.0"),
        (lambda p: utils.clip_grad_norm_([p.data], 1.0), TypeError, r"parameters\[0\] is a ndarray"),
        (lambda p: utils.clip_grad_norm_(p.data, 1.0), TypeError, "got an array"),
        (lambda p: utils.clip_grad_value_(p, -0.1), ValueError, "clip_value must be >= 0.0"),
        (lambda p: utils.vector_to_parameters(np.zeros(4), [p]), ValueError, "the vector has 4 entries"),
        (lambda p: utils.vector_to_parameters(np.zeros((3, 1)), [p]), TypeError, "expected a 1-D array"),
    ],
)
def test_bad_arguments(call, error, match):
    p = nn.Parameter(np.zeros(3))
    p.grad = np.ones(3)
    with pytest.raises(error, match=match):
        call(p)
