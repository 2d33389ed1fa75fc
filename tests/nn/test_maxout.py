"""Maxout (minidl's own definition; PyTorch has none): a loop over the definition, gradient checks, ties, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import gradcheck, nn
from minidl.nn.maxout import maxout_backward, maxout_forward
from tests.helpers import arr, assert_close, host
from tests.strategies import distinct_values, seeds


def maxout_naive(x: np.ndarray, k: int, dim: int, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``out[..., c, ...] = max_j x[..., c k + j, ...]`` and its gradient, one output element at a time."""
    x_moved = np.moveaxis(x, dim, -1)
    dout_moved = np.moveaxis(dout, dim, -1)
    out = np.empty(x_moved.shape[:-1] + (x_moved.shape[-1] // k,))
    dx = np.zeros_like(x_moved)
    for index in itertools.product(*(range(n) for n in out.shape)):
        *rest, c = index
        pieces = [x_moved[(*rest, c * k + j)] for j in range(k)]
        best = max(range(k), key=lambda j: (pieces[j], -j))  # the first of equal maxima
        out[index] = pieces[best]
        dx[(*rest, c * k + best)] = dout_moved[index]
    return np.moveaxis(out, -1, dim), np.moveaxis(dx, -1, dim)


@st.composite
def maxout_cases(draw):
    ndim = draw(st.integers(1, 4))
    dim = draw(st.integers(-ndim, ndim - 1))
    k = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 3)) for _ in range(ndim)]
    shape[dim] *= k
    return tuple(shape), k, dim


@given(seed=seeds, case=maxout_cases())
def test_forward_and_backward_match_the_loop_over_the_definition(seed, case):
    shape, k, dim = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 3, shape).astype(np.float64)  # small integers: many ties
    out, cache = maxout_forward(arr(x), k, dim)
    dout = rng.standard_normal(host(out).shape)
    expected_out, expected_dx = maxout_naive(x, k, dim % len(shape), dout)
    assert_close(out, expected_out, what=f"maxout forward k={k} dim={dim}")
    assert_close(maxout_backward(arr(dout), cache), expected_dx, what=f"maxout dx k={k} dim={dim}")


@given(seed=seeds, case=maxout_cases())
def test_gradcheck(seed, case):
    shape, k, dim = case
    x = arr(distinct_values(np.random.default_rng(seed), shape))  # no ties: the max is differentiable
    gradcheck.check_function(maxout_forward, maxout_backward, [x], {"num_pieces": k, "dim": dim})
    gradcheck.check_module(nn.Maxout(k, dim), x)


def test_maxout_after_linear_is_the_papers_unit_and_relu_is_a_special_case():
    """h_c(v) = max_j (v W_cj + b_cj): Linear(D, k C) then Maxout(k); with pieces (z, 0) it is ReLU."""
    rng = np.random.default_rng(0)
    v, w, b = rng.standard_normal((5, 4)), rng.standard_normal((6, 4)), rng.standard_normal(6)
    z = v @ w.T + b
    out, _ = maxout_forward(arr(z), 3)
    assert_close(out, np.max(z.reshape(5, 2, 3), axis=2))
    pieces = np.stack([z, np.zeros_like(z)], axis=-1).reshape(5, 12)
    assert_close(maxout_forward(arr(pieces), 2)[0], np.maximum(z, 0))
    assert repr(nn.Maxout(3)) == "Maxout(num_pieces=3, dim=1)"


def test_a_tie_sends_the_gradient_to_the_first_piece():
    out, cache = maxout_forward(arr(np.array([[2.0, 2.0, 1.0, 1.0]])), 2)
    assert host(maxout_backward(arr(np.array([[5.0, 7.0]])), cache)).tolist() == [[5.0, 0.0, 7.0, 0.0]]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.Maxout(4)(arr(np.ones((2, 6), np.float32))), ValueError,
         r"^Maxout\(num_pieces=4, dim=1\): the input's dimension 1 has size 6, which is not a multiple of "
         r"num_pieces=4 \(expected k \* C = 4 \* C entries; input shape \(2, 6\)\)"),
        (lambda: nn.Maxout(2, dim=3)(arr(np.ones((2, 6), np.float32))), ValueError,
         r"^Maxout\(num_pieces=2, dim=3\): dim must be an int in \[-2, 1\] for a 2-D input, got 3"),
        (lambda: nn.Maxout(0), ValueError, r"^Maxout: num_pieces must be >= 1, got 0"),
        (lambda: nn.Maxout(2, dim=1.0), TypeError, r"^Maxout: dim must be an int, got 1.0 \(float\)"),
        (lambda: nn.Maxout(2)(arr(np.ones((2, 6), np.int64))), TypeError,
         r"^Maxout\(num_pieces=2, dim=1\): expected a floating-point input .* got dtype int64"),
        (lambda: maxout_backward(arr(np.ones((2, 6))), maxout_forward(arr(np.ones((2, 6))), 2)[1]), ValueError,
         r"^maxout_backward: the gradient has shape \(2, 6\) but the forward output had shape \(2, 3\)"),
    ],
)  # fmt: skip
def test_bad_input_names_the_layer_expected_and_received(call, error, match):
    with pytest.raises(error, match=match):
        call()
