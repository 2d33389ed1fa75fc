"""minidl's own fast and naive code, checked with minidl.testing against the reference pairs.

* The Numba backend's kernels: each wrapped to run on the Numba backend (check_pair itself runs on NumPy).
* The loop references of tests/nn/naive.py: the forward values, with the reference's backward.
"""

from __future__ import annotations

import functools
import inspect

import pytest

import minidl
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache
from minidl.testing import check_pair
from tests.nn import naive

EXAMPLES = 8


def on_numba(op, ran):
    """The pair F.<op>_forward/_backward run on the Numba backend; ``ran`` counts the calls its kernel served."""
    reference = getattr(F, f"{op}_forward")

    @functools.wraps(reference)
    def forward(*args, **kwargs):
        with minidl.use_backend("numba"):
            out, cache = reference(*args, **kwargs)
        ran.append(isinstance(cache, KernelCache))
        return out, cache

    def backward(dout, cache):
        with minidl.use_backend("numba"):
            return getattr(F, f"{op}_backward")(dout, cache)

    forward.__signature__ = inspect.signature(reference)
    return forward, backward


@pytest.mark.parametrize("op", ["relu", "conv2d", "max_pool2d", "avg_pool2d", "batch_norm"])
def test_the_numba_kernel_conforms_to_the_reference_pair(op):
    pytest.importorskip("numba")
    ran = []
    forward, backward = on_numba(op, ran)
    check_pair(forward, backward, op, max_examples=EXAMPLES, gradcheck=False)
    assert any(ran), f"the Numba backend's {op} kernel never ran (it declined every configuration)"


def conv2d_naive_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The 7-loop convolution's output, with the reference's cache (the loops have no backward of their own)."""
    out = naive.conv2d_naive(x, weight, bias, (stride, stride), (padding,) * 4, (dilation, dilation), groups)
    return out, F.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)[1]


def max_pool2d_naive_forward(x, kernel_size, stride=None, padding=0, dilation=1):
    s = kernel_size if stride is None else stride
    out, _ = naive.max_pool2d_naive(x, (kernel_size,) * 2, (s, s), (padding,) * 2, (dilation,) * 2, False)
    return out, F.max_pool2d_forward(x, kernel_size, stride, padding, dilation)[1]


def avg_pool2d_naive_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    s = kernel_size if stride is None else stride
    out = naive.avg_pool2d_naive(x, (kernel_size,) * 2, (s, s), (padding,) * 2, ceil_mode, count_include_pad)
    return out, F.avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad)[1]


@pytest.mark.parametrize(
    ("forward", "op"),
    [
        (conv2d_naive_forward, "conv2d"),
        (max_pool2d_naive_forward, "max_pool2d"),
        (avg_pool2d_naive_forward, "avg_pool2d"),
    ],
)
def test_the_naive_loops_conform_to_the_reference_pair(forward, op):
    check_pair(forward, getattr(F, f"{op}_backward"), op, max_examples=EXAMPLES)
