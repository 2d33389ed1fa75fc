"""Embedding: the scatter-add backward, padding_idx, scale_grad_by_freq, float64 parity with PyTorch, bad input."""

# The bad-input cases are one per line, so a failing id points at it: the long lines there are deliberate.
# ruff: noqa: E501

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn import functional as F
from tests.helpers import arr, assert_close, host, torch_or_skip
from tests.strategies import seeds

TOL = dict(atol=1e-10, rtol=1e-10)


@st.composite
def embedding_cases(draw):
    num_embeddings = draw(st.integers(1, 6))
    return dict(
        num_embeddings=num_embeddings,
        embedding_dim=draw(st.integers(0, 4)),
        shape=draw(st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)),
        padding_idx=draw(st.none() | st.integers(-num_embeddings, num_embeddings - 1)),
        scale_grad_by_freq=draw(st.booleans()),
        max_norm=draw(st.none() | st.floats(0.0, 2.0)),
        norm_type=draw(st.sampled_from([1.0, 2.0, 3.5, float("inf")])),
    )


def _embedding(**kw) -> nn.Embedding:
    minidl.set_default_dtype(np.float64)
    try:
        return nn.Embedding(**kw)
    finally:
        minidl.set_default_dtype(np.float32)


@given(case=embedding_cases(), seed=seeds)
def test_matches_pytorch(case, seed):
    """Forward and the table's gradient (repeated indices, padding_idx, scale_grad_by_freq) on drawn shapes."""
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    shape = case.pop("shape")
    assume(case["embedding_dim"] or case["norm_type"] != float("inf"))  # PyTorch: "cannot compute the inf norm"
    ours = _embedding(**case)
    theirs = torch.nn.Embedding(**case, dtype=torch.float64)
    theirs.load_state_dict({k: torch.as_tensor(host(v)) for k, v in ours.state_dict().items()})
    indices = rng.integers(0, case["num_embeddings"], size=shape)
    out = ours(arr(indices))
    ref = theirs(torch.as_tensor(indices))
    assert_close(out, ref, **TOL, what=f"embedding forward {case}")
    assert_close(ours.weight.data, theirs.weight, **TOL, what=f"embedding weight after max_norm {case}")
    dout = rng.standard_normal(out.shape)
    assert ours.backward(arr(dout)) is None
    ref.backward(torch.as_tensor(dout))
    assert_close(ours.weight.grad, theirs.weight.grad, **TOL, what=f"embedding dweight {case}")


@given(case=embedding_cases(), seed=seeds)
def test_gradcheck(case, seed):
    """The true gradient of the table; padding_idx and scale_grad_by_freq then change it on purpose (PyTorch's rules:
    the padding row gets none, each row is divided by its count), which the parity test above checks."""
    rng = np.random.default_rng(seed)
    indices = arr(rng.integers(0, case["num_embeddings"], size=case["shape"]))
    weight = arr(rng.standard_normal((case["num_embeddings"], case["embedding_dim"])))
    # (max_norm rescales rows in place before the lookup, outside the gradient: the parity test checks it)
    gradcheck.check_function(F.embedding_forward, F.embedding_backward, [indices, weight], wrt=[1])
    out, cache = F.embedding_forward(indices, weight)
    dout = arr(rng.standard_normal(out.shape))
    _, full = F.embedding_backward(dout, cache)
    kw = dict(padding_idx=case["padding_idx"], scale_grad_by_freq=case["scale_grad_by_freq"])
    _, cache = F.embedding_forward(indices, weight, **kw)
    _, dweight = F.embedding_backward(dout, cache)
    expected = host(full).copy()
    if case["scale_grad_by_freq"]:
        counts = np.bincount(host(indices).ravel(), minlength=case["num_embeddings"])
        expected /= np.maximum(counts, 1)[:, None]
    if case["padding_idx"] is not None:
        expected[case["padding_idx"]] = 0
    np.testing.assert_allclose(host(dweight), expected, rtol=1e-12, atol=1e-15)


def test_repeated_indices_add_and_padding_row_stays_zero():
    layer = _embedding(num_embeddings=4, embedding_dim=2, padding_idx=-1)
    assert layer.padding_idx == 3 and not host(layer.weight.data[3]).any()
    out = layer(arr(np.array([[1, 3, 1], [1, 0, 3]])))
    layer.backward(arr(np.ones(out.shape)))
    np.testing.assert_array_equal(host(layer.weight.grad), [[1, 1], [3, 3], [0, 0], [0, 0]])
    out = layer(arr(np.array([1])))
    layer.backward(arr(np.ones(out.shape)))  # gradients accumulate
    np.testing.assert_array_equal(host(layer.weight.grad)[1], [4, 4])


def test_max_norm_rescales_only_the_rows_read_and_only_when_too_long():
    layer = _embedding(num_embeddings=3, embedding_dim=2, max_norm=1.0)
    layer.weight.data[...] = [[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]]
    out = layer(arr(np.array([0, 1, 0])))
    np.testing.assert_allclose(host(layer.weight.data), [[0.6, 0.8], [0.3, 0.4], [6.0, 8.0]], rtol=1e-6)
    np.testing.assert_allclose(host(out), [[0.6, 0.8], [0.3, 0.4], [0.6, 0.8]], rtol=1e-6)


def test_output_is_a_copy_and_works_in_a_sequential():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2))
    x = arr(np.array([[0, 4], [2, 2]]))
    y = model(x)
    assert y.shape == (2, 2, 2) and model.backward(arr(np.ones(y.shape, np.float32))) is None
    assert model[0].weight.grad.shape == (5, 3) and model[1].weight.grad.shape == (2, 3)
    out = model[0](x)
    out[...] = 7
    assert not (host(model[0].weight.data) == 7).any()


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize("padding_idx, max_norm", [(None, None), (-2, None), (1, 1.5)])
def test_from_pretrained_matches_pytorch(freeze, padding_idx, max_norm):
    """PyTorch's from_pretrained: the table is the given array itself (not copied; the padding row not zeroed),
    freeze=True sets requires_grad False (no gradient, an optimizer skips it), the other arguments as Embedding's."""
    torch = torch_or_skip()
    table = np.random.default_rng(0).standard_normal((5, 3))
    table[4] *= 3.0  # a long row for max_norm
    kw = dict(freeze=freeze, padding_idx=padding_idx, max_norm=max_norm)
    embeddings = arr(table.copy())
    ours = nn.Embedding.from_pretrained(embeddings, **kw)
    theirs = torch.nn.Embedding.from_pretrained(torch.tensor(table.copy()), **kw)
    assert ours.weight.data is embeddings and ours.weight.dtype == np.float64
    assert ours.weight.requires_grad is theirs.weight.requires_grad is (not freeze)
    assert (ours.num_embeddings, ours.embedding_dim, ours.padding_idx) == (5, 3, theirs.padding_idx)
    assert (ours.max_norm, ours.norm_type, ours.scale_grad_by_freq, ours.sparse) == (max_norm, 2.0, False, False)
    indices = np.array([[4, 1, 3], [3, 0, 1]])
    out = ours(arr(indices))
    ref = theirs(torch.as_tensor(indices))
    assert_close(out, ref, **TOL, what=f"from_pretrained forward {kw}")
    assert_close(ours.weight.data, theirs.weight, **TOL, what=f"from_pretrained weight after max_norm {kw}")
    if padding_idx is not None:  # not zeroed, as in PyTorch
        np.testing.assert_array_equal(host(ours.weight.data)[padding_idx], table[padding_idx])
    dout = np.random.default_rng(1).standard_normal(out.shape)
    ours.backward(arr(dout))
    if freeze:
        assert ours.weight.grad is None
    else:
        ref.backward(torch.as_tensor(dout))
        assert_close(ours.weight.grad, theirs.weight.grad, **TOL, what=f"from_pretrained dweight {kw}")
    opt = minidl.optim.SGD(ours.parameters(), lr=0.5)
    opt.step()  # a frozen table stays as it is; a trained one is the given array, updated in place
    assert_close(embeddings, ours.weight.data, atol=0, rtol=0, what="the table is the given array")
    changed = not np.array_equal(host(embeddings), host(theirs.weight.detach().numpy()))
    assert changed is (not freeze)


def test_from_pretrained_keeps_the_tables_dtype_and_is_a_normal_embedding_after():
    table = np.arange(6, dtype=np.float32).reshape(3, 2)
    layer = nn.Embedding.from_pretrained(arr(table.copy()), freeze=False)
    assert repr(layer) == "Embedding(3, 2)" and layer.weight.dtype == np.float32
    out = layer(arr(np.array([2, 2])))
    layer.backward(arr(np.ones(out.shape, np.float32)))
    np.testing.assert_array_equal(host(layer.weight.grad), [[0, 0], [0, 0], [2, 2]])
    layer.reset_parameters()  # as in PyTorch: a fresh N(0, 1) draw (here into the given array)
    assert not np.array_equal(host(layer.weight.data), table)


NAME = r"^Embedding\(5, 3\)"


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: nn.Embedding(5, 3)(np.array([0.0, 1.0])), TypeError, NAME + r": expected an integer array of indices in \[0, 5\), got dtype float64; convert it with input.astype\(np.int64\)"),
        (lambda: nn.Embedding(5, 3)(np.array([True])), TypeError, NAME + r": expected an integer array of indices in \[0, 5\), got dtype bool"),
        (lambda: nn.Embedding(5, 3)(np.array([[0, 5]])), IndexError, NAME + r": index 5 is out of range: expected indices in \[0, 5\) \(num_embeddings=5\), got values from 0 to 5"),
        (lambda: nn.Embedding(5, 3)(np.array([-1, 2])), IndexError, NAME + r": index -1 is out of range: expected indices in \[0, 5\)"),
        (lambda: nn.Embedding(5, 3)([0, 1]), TypeError, NAME + r": expected the input to be an integer array of indices, got list"),
        (lambda: nn.Embedding(5, 3, padding_idx=5), ValueError, r"^Embedding: padding_idx must be within \[-5, 5\) \(num_embeddings=5\), got 5"),
        (lambda: nn.Embedding(5, 3, max_norm=-1.0), ValueError, r"^Embedding: max_norm must be >= 0.0, got -1.0"),
        (lambda: nn.Embedding(5, 3, max_norm=1.0, norm_type=0), ValueError, r"^Embedding: norm_type must be a number > 0 \(inf allowed\), got 0"),
        (lambda: nn.Embedding(5, 3, sparse=True), NotImplementedError, r"^Embedding: sparse=True is not implemented"),
        (lambda: nn.Embedding(0, 3), ValueError, r"^Embedding: num_embeddings must be >= 1, got 0"),
        (lambda: nn.Embedding.from_pretrained(np.ones(3)), ValueError, r"^Embedding.from_pretrained: expected a 2-D \(num_embeddings, embedding_dim\) array of embeddings, got shape \(3,\) \(1-D\)"),
        (lambda: nn.Embedding.from_pretrained(np.ones((2, 3), np.int64)), TypeError, r"^Embedding.from_pretrained: expected a floating-point embeddings \(float32 or float64\), got dtype int64"),
        (lambda: nn.Embedding.from_pretrained([[1.0, 2.0]]), TypeError, r"^Embedding.from_pretrained: expected the embeddings to be an array, got list"),
        (lambda: nn.Embedding.from_pretrained(np.ones((0, 3))), ValueError, r"^Embedding: num_embeddings must be >= 1, got 0"),
        (lambda: nn.Embedding.from_pretrained(np.ones((2, 3)), freeze="no"), TypeError, r"^Embedding.from_pretrained: freeze must be a bool, got 'no'"),
        (lambda: nn.Embedding.from_pretrained(np.ones((2, 3)), padding_idx=2), ValueError, r"^Embedding: padding_idx must be within \[-2, 2\) \(num_embeddings=2\), got 2"),
        (lambda: nn.Embedding(5, 3, _weight=np.ones((4, 3))), ValueError, r"^Embedding: _weight has shape \(4, 3\), expected \(num_embeddings, embedding_dim\) = \(5, 3\)"),
        (lambda: F.embedding_backward(np.ones((2, 3)), F.embedding_forward(np.array([1]), np.ones((5, 3)))[1]), ValueError, r"^embedding_backward: the gradient has shape \(2, 3\) but the forward output had shape \(1, 3\)"),
        (lambda: F.embedding_backward(np.ones(3), F.embedding_forward(np.array([1]), np.ones((5, 3)))[1]), ValueError, r"^embedding_backward: expected a gradient of shape \(\*input.shape, embedding_dim\) = \(1, D\), got \(3,\)"),
        (lambda: F.embedding_backward(np.ones((1, 3)), (np.array([1]), 5)), TypeError, r"^embedding_backward: expected the cache embedding_forward returned, got tuple"),
    ],
)  # fmt: skip
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
