"""DropPath / StochasticDepth: per-sample and per-batch masks, scaling, eval, gradients, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn.stochastic_depth import drop_path_backward, drop_path_forward
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import seeds

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def test_row_mode_drops_whole_samples_and_scales_the_kept_ones():
    minidl.manual_seed(0)
    x_np = np.random.default_rng(0).uniform(1, 2, (400, 3, 2)).astype(np.float32)
    out = host(nn.DropPath(0.25)(arr(x_np)))
    kept = (out != 0).all(axis=(1, 2))
    assert ((out == 0).all(axis=(1, 2)) | kept).all(), "a sample is dropped or kept as a whole"
    assert_close(out[kept], x_np[kept] / 0.75, atol=1e-6, rtol=1e-6, what="kept samples scaled by 1/(1-p)")
    assert 0.18 < 1 - kept.mean() < 0.32


def test_batch_mode_draws_once_and_scale_by_keep_false_does_not_scale():
    x = arr(np.ones((64, 3), np.float32))
    seen = set()
    for seed in range(20):
        minidl.manual_seed(seed)
        seen.add(tuple(np.unique(host(nn.StochasticDepth(0.5, "batch")(x)))))
    assert seen == {(0.0,), (2.0,)}, "the whole batch is dropped or kept, kept values doubled"
    minidl.manual_seed(0)
    out = host(nn.DropPath(0.5, scale_by_keep=False)(x))
    assert set(np.unique(out)) <= {0.0, 1.0} and 0 < out.mean() < 1


@pytest.mark.parametrize("make", [lambda: nn.DropPath(0.7), lambda: nn.StochasticDepth(0.7, "row")])
def test_eval_and_p_zero_are_the_identity_and_p_one_drops_everything(make):
    x = arr(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    layer = make().eval()
    assert layer(x) is x and layer.backward(arr(np.ones((5, 4), np.float32))).tolist() == np.ones((5, 4)).tolist()
    out, cache = drop_path_forward(x, 0.0)
    assert out is x and cache.mask is None
    out, cache = drop_path_forward(x, 1.0)
    assert not host(out).any() and not host(drop_path_backward(arr(np.ones((5, 4), np.float32)), cache)).any()


@given(seed=seeds, shape=shapes, p=st.floats(0.0, 0.9), mode=st.sampled_from(["row", "batch"]), scale=st.booleans())
def test_gradcheck(seed, shape, p, mode, scale):
    x = arr(np.random.default_rng(seed).standard_normal(shape))
    kwargs = {"p": p, "mode": mode, "scale_by_keep": scale}
    gradcheck.check_function(drop_path_forward, drop_path_backward, [x], kwargs, seed=seed)
    gradcheck.check_module(nn.StochasticDepth(p, mode), x, seed=seed)


@given(seed=seeds, shape=shapes, p=st.floats(0.0, 0.9), mode=st.sampled_from(["row", "batch"]), scale=st.booleans())
def test_torch_parity_with_the_same_mask(seed, shape, p, mode, scale):
    """PyTorch's stochastic depth (torchvision's and timm's code: ``x * noise``, noise = Bernoulli(1 - p) of shape
    (N, 1, ...) or (1, ...), divided by 1 - p when kept > 0 and scale_by_keep) with our mask as its noise."""
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    x_np, dout_np = rng.standard_normal(shape), rng.standard_normal(shape)
    minidl.manual_seed(seed)
    out, cache = drop_path_forward(arr(x_np), p, mode, True, scale)
    dx = drop_path_backward(arr(dout_np), cache)
    t = to_torch(x_np, requires_grad=True)
    if cache.mask is None:
        ref = t * 1.0
    else:
        assert cache.mask.shape == ((shape[0],) if mode == "row" else (1,)) + (1,) * (len(shape) - 1)
        noise = torch.tensor(host(cache.mask), dtype=torch.float64)
        if 1 - p > 0 and scale:
            noise = noise / (1 - p)
        ref = t * noise
    ref.backward(torch.tensor(dout_np))
    assert_close(out, ref, atol=1e-12, rtol=1e-10, what=f"drop_path forward p={p} {mode}")
    assert_close(dx, t.grad, atol=1e-12, rtol=1e-10, what=f"drop_path dx p={p} {mode}")


def test_a_seed_fixes_the_mask_and_the_reprs_are_timm_and_torchvision():
    x = arr(np.ones((32, 2), np.float32))
    minidl.manual_seed(3)
    first = host(nn.DropPath(0.5)(x))
    minidl.manual_seed(3)
    assert (host(nn.DropPath(0.5)(x)) == first).all()
    assert repr(nn.DropPath(0.1)) == "DropPath(drop_prob=0.100)"
    assert repr(nn.StochasticDepth(0.2, "row")) == "StochasticDepth(p=0.2, mode=row)"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.DropPath(1.5), ValueError, r"^DropPath: drop_prob must be <= 1.0, got 1.5"),
        (lambda: nn.DropPath(0.1, scale_by_keep=1), TypeError, r"^DropPath: scale_by_keep must be a bool, got 1"),
        (lambda: nn.StochasticDepth(0.1, "col"), ValueError, r"^StochasticDepth: mode must be 'row' .* got 'col'"),
        (lambda: nn.StochasticDepth(-0.1, "row"), ValueError, r"^StochasticDepth: p must be >= 0.0, got -0.1"),
        (lambda: nn.DropPath(0.5)(arr(np.array(1.0, np.float32))), ValueError,
         r"^DropPath\(drop_prob=0.500\): expected an input with at least 1 dimension, got shape \(\)"),
        (lambda: nn.DropPath(0.5)(arr(np.ones((2, 3), np.int64))), TypeError,
         r"^DropPath\(drop_prob=0.500\): expected a floating-point input .* got dtype int64"),
        (lambda: drop_path_backward(arr(np.ones((3, 3))), drop_path_forward(arr(np.ones((2, 3))), 0.5)[1]),
         ValueError, r"^drop_path_backward: the gradient has shape \(3, 3\) but the forward output had shape \(2, 3\)"),
    ],
)  # fmt: skip
def test_bad_input_names_the_layer_expected_and_received(call, error, match):
    with pytest.raises(error, match=match):
        call()
