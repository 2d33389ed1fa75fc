"""The Numba backend's linear kernels (``NumbaBackend._linear_forward``/``_linear_backward``): what the table-wide
test (``test_kernels.py``) draws only now and then, pinned down. Every way a product is cut into blocks (rows, or
columns for a few rows; dW's blocks of output features), with a bias and dW, against the reference pair (with the
least work per block lowered to 1 multiply-add, so that small arrays make many blocks, and at the size of a layer);
the blocks; results independent of the thread count."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl.backend import numba_backend
from tests.backend.kernel_cases import Case
from tests.backend.test_kernels import assert_independent_of_the_thread_count, compare

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")


def linear_case(lead, in_features, out_features, *, dtype=np.float32, bias=True, seed=0):
    """A ``linear`` :class:`Case` with standard normal x, weight and bias, dW and db computed."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, in_features)).astype(dtype)
    w = rng.standard_normal((out_features, in_features)).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype) if bias else None
    params = (("x", x), ("weight", w), ("bias", b))
    return Case("linear", params, 3, {"weight_grad": True, "bias_grad": True}, dtype, seed + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("lead", "in_features", "out_features"),
    [
        ((300,), 7, 65),  # 8 blocks of 38 rows (the last 34); dW in 2 blocks
        ((2, 150), 130, 130),  # the same rows from 3-d x; dW in 3 blocks
        ((70,), 5, 3),  # 2 blocks of 35 rows
        ((40,), 9, 300),  # one block of rows (fewer than 64), cut into 4 blocks of 75 columns
        ((5,), 130, 700),  # a few rows: y in 8 blocks of 88 columns, dx in 2 of 65
        ((1,), 200, 130),  # a batch of one
        ((32,), 65, 1),  # as many rows as one block holds: the columns' blocks, one column
    ],
)
def test_products_of_several_blocks_match_the_reference(lead, in_features, out_features, dtype, monkeypatch):
    monkeypatch.setattr(numba_backend, "_LINEAR_MIN_WORK", 1)  # blocks as small as the rules allow
    compare(linear_case(lead, in_features, out_features, dtype=dtype, seed=in_features))


@pytest.mark.parametrize(("lead", "in_features", "out_features"), [((256,), 512, 300), ((4,), 1024, 2048)])
def test_products_of_the_size_of_a_layer_match_the_reference(lead, in_features, out_features):
    compare(linear_case(lead, in_features, out_features))


def test_the_blocks():
    tiles = minidl.get_backend("numba")._linear_tiles
    assert tiles(128, 256, 512) == (32, 128)  # a batch of 128: 4 blocks of 32 rows, each cut in 2
    assert tiles(4096, 256, 256) == (512, 256)  # 8 blocks of rows
    assert tiles(8192, 4, 16) == (4096, 4)  # 2 blocks: at least 2^18 multiply-adds each
    assert tiles(128, 10, 64) == (128, 10)  # one block
    assert tiles(32, 4096, 4096) == (32, 512)  # few rows: 8 blocks of columns ...
    assert tiles(33, 4096, 4096) == (33, 512)
    assert tiles(100, 4096, 4096) == (34, 1366)  # 3 x 3 blocks
    assert tiles(1, 4096, 4096) == (1, 512)
    assert tiles(1, 100, 4096) == (1, 100)  # ... of at least 64 columns and 2^18 multiply-adds
    assert tiles(0, 10, 10) == (1, 10)  # an empty batch: no tasks


@pytest.mark.parametrize("lead", [(300,), (4,)], ids=["blocks-of-rows", "blocks-of-columns"])
def test_results_do_not_depend_on_the_thread_count(lead):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((*lead, 130)).astype(np.float32)
    w = rng.standard_normal((700, 130)).astype(np.float32)
    assert_independent_of_the_thread_count("linear", x, w, rng.standard_normal(700).astype(np.float32))
