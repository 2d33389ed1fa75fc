"""The Numba backend's softmax and attention kernels (``minidl/backend/_numba_softmax.py``) beyond the kernel cases
of ``test_kernels.py``: results independent of the thread count, and MultiheadAttention's weights read from the
attention kernel's cache."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache
from tests.backend.test_kernels import assert_independent_of_the_thread_count

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")


@pytest.mark.parametrize("shape", [(300, 250), (2, 4, 65, 65), (3, 70_000)])
def test_softmax_does_not_depend_on_the_thread_count(shape):
    # rows cut into tasks of about _ROW_CHUNK values (several here); each row's sums in one thread, in one order
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 4
    assert_independent_of_the_thread_count("softmax", x, -1)


def test_attention_does_not_depend_on_the_thread_count():
    # 512 (batch, head) slices of 65 queries and keys: 34 tasks, each slice in one of them
    q, k, v = (np.random.default_rng(i).standard_normal((128, 4, 65, 32)).astype(np.float32) for i in range(3))
    assert_independent_of_the_thread_count("scaled_dot_product_attention", q, k, v)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_returns_the_kernels_weights_as_the_references(need_weights):
    # MultiheadAttention reads the weights from the pair's cache: the kernel's keeps them under the reference's name
    from minidl import nn

    x = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    results = []
    for backend in ("numpy", "numba"):
        with minidl.use_backend(backend):
            minidl.manual_seed(0)
            attention = nn.MultiheadAttention(8, 2, batch_first=True)
            out, weights = attention(x, x, x, need_weights=need_weights)
            results.append((out, weights, attention.backward(np.ones_like(out))))
    (out0, w0, d0), (out1, w1, d1) = results
    np.testing.assert_allclose(out1, out0, rtol=1e-5, atol=1e-6)
    assert (w1 is None) == (not need_weights)
    if need_weights:
        np.testing.assert_allclose(w1, w0, rtol=1e-5, atol=1e-6)
    for a, b in zip(d1, d0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_kernel_cache_reads_through_only_the_fields_its_kernel_names():
    q = np.ones((1, 2, 3), np.float32)
    with minidl.use_backend("numba"):
        _, cache = F.scaled_dot_product_attention_forward(q, q, q)
    assert isinstance(cache, KernelCache)
    np.testing.assert_allclose(cache.attn_weights, np.full((1, 2, 2), 0.5, np.float32))  # the kernel's field
    with pytest.raises(AttributeError, match="KernelCache has no attribute 'softmax': the scaled_dot_product"):
        cache.softmax  # the reference's cache has it, the kernel's not


def test_attention_computes_float16_in_float32_and_keeps_its_weights():
    # _native_dtypes sees only top-level arguments: the backward's cache arrays (float16) must reach it as such, and
    # the forward's cast back must keep the cache a NamedTuple (MultiheadAttention reads attn_weights through it)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, n, 4)).astype(np.float16) for n in (5, 6, 6))
    dout = rng.standard_normal((2, 3, 5, 4)).astype(np.float16)
    results = []
    for backend in ("numpy", "numba"):
        with minidl.use_backend(backend):
            out, cache = F.scaled_dot_product_attention_forward(q, k, v)
            results.append((out, cache.attn_weights, *F.scaled_dot_product_attention_backward(dout, cache)))
    assert isinstance(cache, KernelCache)
    for a, b in zip(results[1], results[0], strict=True):
        assert a.dtype == b.dtype == np.float16 and a.shape == b.shape
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", ["query", "key", "value", "scale", "shapes"])
def test_a_kernel_cache_does_not_read_through_fields_that_differ_from_the_references(name):
    # the attention kernel's query/key/value are flattened to (B, L, E), its scale is in the arrays' dtype, its shapes
    # are its own: only attn_weights holds the reference's values under the reference's name
    q = np.ones((2, 3, 4, 5), np.float32)
    with minidl.use_backend("numba"):
        _, cache = F.scaled_dot_product_attention_forward(q, q, q)
    assert isinstance(cache, KernelCache)
    with pytest.raises(AttributeError, match=f"KernelCache has no attribute {name!r}"):
        getattr(cache, name)
