"""``minidl.memory_format``: the layout helpers (PyTorch's names), their errors, and that the reference computes the
same values from either layout."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl.nn import functional as F


def test_contiguous_and_is_contiguous():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    y = minidl.contiguous(x, minidl.channels_last)
    assert y.shape == x.shape and np.array_equal(y, x)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous and not y.flags.c_contiguous
    assert minidl.is_contiguous(y, minidl.channels_last) and not minidl.is_contiguous(y)
    assert minidl.contiguous(y, minidl.channels_last) is y  # no copy when already so
    z = minidl.contiguous(y)
    assert z.flags.c_contiguous and np.array_equal(z, x)
    assert minidl.contiguous(x) is x


def test_suggest_memory_format():
    x = np.zeros((2, 3, 4, 5))
    assert minidl.suggest_memory_format(x) == minidl.contiguous_format
    assert minidl.suggest_memory_format(minidl.contiguous(x, minidl.channels_last)) == minidl.channels_last
    # one channel: both layouts are contiguous, and the strides tell them apart (as in PyTorch): the array that
    # contiguous(x, channels_last) makes is channels_last (so a network from one channel, MNIST's, can run so)
    plain = np.zeros((2, 1, 4, 5))
    made = minidl.contiguous(plain, minidl.channels_last)
    assert made is not plain and made.strides == (160, 8, 40, 8)
    for a in (plain, made):
        assert minidl.is_contiguous(a) and minidl.is_contiguous(a, minidl.channels_last)
    assert minidl.suggest_memory_format(plain) == minidl.contiguous_format
    assert minidl.suggest_memory_format(made) == minidl.channels_last
    assert minidl.contiguous(made, minidl.channels_last) is made
    images_1x1 = np.zeros((2, 3, 1, 1))  # 1 x 1 images: one layout
    assert minidl.contiguous(images_1x1, minidl.channels_last) is images_1x1
    assert minidl.suggest_memory_format(np.zeros((2, 3))) == minidl.contiguous_format
    assert minidl.suggest_memory_format(x[:, :, ::2]) == minidl.contiguous_format  # neither: gaps


def test_errors_name_the_function_and_the_value():
    with pytest.raises(ValueError, match=r"contiguous: memory_format must be .* got 'nhwc'"):
        minidl.contiguous(np.zeros((1, 2, 3, 4)), "nhwc")
    with pytest.raises(ValueError, match=r"is_contiguous: channels_last is a layout of 4-D .* got shape \(2, 3\)"):
        minidl.is_contiguous(np.zeros((2, 3)), minidl.channels_last)
    with pytest.raises(ValueError, match=r"contiguous: channels_last is a layout of 4-D .* got shape \(5,\)"):
        minidl.contiguous(np.zeros(5), minidl.channels_last)
    with pytest.raises(TypeError, match=r"contiguous: expected a NumPy or CuPy array, got list"):
        minidl.contiguous([[1.0, 2.0]], minidl.channels_last)
    with pytest.raises(TypeError, match=r"is_contiguous: expected a NumPy or CuPy array, got list"):
        minidl.is_contiguous([1.0, 2.0])
    assert minidl.contiguous(np.float32(1)).shape == ()  # (a 0-d array keeps its shape)


def test_the_reference_takes_either_layout():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 6))
    w = rng.standard_normal((3, 4, 3, 3))
    with minidl.use_backend("numpy"):
        want, cache = F.conv2d_forward(x, w, None, 1, 1)
        got, cache_cl = F.conv2d_forward(minidl.contiguous(x, minidl.channels_last), w, None, 1, 1)
        dout = rng.standard_normal(want.shape)
        grads = F.conv2d_backward(dout, cache)
        grads_cl = F.conv2d_backward(minidl.contiguous(dout, minidl.channels_last), cache_cl)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert grads[2] is None and grads_cl[2] is None  # (no bias)
    for a, b in zip(grads[:2], grads_cl[:2], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
