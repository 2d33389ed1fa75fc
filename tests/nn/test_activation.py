"""Activations: gradient checks, PyTorch parity, numerical stability, the error function, bad input."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn import activation as A
from minidl.nn._activation_common import _erf, _erfc
from minidl.nn.dispatch import declared_ops
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.strategies import array_away_from, seeds

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@dataclass
class Spec:
    """One activation: functional pair, Module, the PyTorch reference, hyperparameters and kinks to avoid."""

    name: str
    module: Any  # kwargs -> Module
    torch_fn: Any  # (torch module, tensor, kwargs) -> tensor
    kwargs: Any = field(default_factory=lambda: st.just({}))  # hypothesis strategy of hyperparameters
    kinks: Any = lambda kw: (0.0,)  # noqa: E731  points where the derivative jumps
    # PyTorch's float64 hardsigmoid backward multiplies by 1/6 rounded to float32 (its kernel's constant is
    # ``1.0f / 6.0f``), a relative error of 3e-8; minidl's slope is 1/6 in the input's precision
    torch_dx_rtol: float = 1e-10

    @property
    def forward(self):
        return getattr(A, f"{self.name}_forward")

    @property
    def backward(self):
        return getattr(A, f"{self.name}_backward")


def _hardtanh_kwargs():
    return st.tuples(st.floats(-2, 0.5), st.floats(0.1, 2)).map(lambda t: {"min_val": t[0], "max_val": t[0] + t[1]})


SPECS = [
    Spec("relu", lambda **kw: nn.ReLU(), lambda torch, t, kw: torch.relu(t)),
    Spec(
        "leaky_relu",
        lambda **kw: nn.LeakyReLU(**kw),
        lambda torch, t, kw: torch.nn.functional.leaky_relu(t, **kw),
        st.fixed_dictionaries({"negative_slope": st.floats(0.0, 0.5)}),
    ),
    Spec(
        "elu",
        lambda **kw: nn.ELU(**kw),
        lambda torch, t, kw: torch.nn.functional.elu(t, **kw),
        st.fixed_dictionaries({"alpha": st.floats(0.1, 2.0)}),
    ),
    Spec(
        "gelu",
        lambda **kw: nn.GELU(**kw),
        lambda torch, t, kw: torch.nn.functional.gelu(t, **kw),
        st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}),
        kinks=lambda kw: (),
    ),
    Spec("silu", lambda **kw: nn.SiLU(), lambda torch, t, kw: torch.nn.functional.silu(t), kinks=lambda kw: ()),
    Spec("sigmoid", lambda **kw: nn.Sigmoid(), lambda torch, t, kw: torch.sigmoid(t), kinks=lambda kw: ()),
    Spec("tanh", lambda **kw: nn.Tanh(), lambda torch, t, kw: torch.tanh(t), kinks=lambda kw: ()),
    Spec("relu6", lambda **kw: nn.ReLU6(), lambda torch, t, kw: torch.nn.functional.relu6(t), kinks=lambda kw: (0, 6)),
    Spec(
        "hardtanh",
        lambda **kw: nn.Hardtanh(**kw),
        lambda torch, t, kw: torch.nn.functional.hardtanh(t, **kw),
        _hardtanh_kwargs(),
        kinks=lambda kw: (kw["min_val"], kw["max_val"]),
    ),
    Spec(
        "softplus",
        lambda **kw: nn.Softplus(**kw),
        lambda torch, t, kw: torch.nn.functional.softplus(t, **kw),
        st.fixed_dictionaries({"beta": st.floats(0.5, 3.0), "threshold": st.floats(0.5, 20.0)}),
        kinks=lambda kw: (kw["threshold"] / kw["beta"],),
    ),
    Spec(
        "hardswish",
        lambda **kw: nn.Hardswish(),
        lambda torch, t, kw: torch.nn.functional.hardswish(t),
        kinks=lambda kw: (-3, 3),
    ),
    Spec("mish", lambda **kw: nn.Mish(), lambda torch, t, kw: torch.nn.functional.mish(t), kinks=lambda kw: ()),
    Spec(
        "hardsigmoid",
        lambda **kw: nn.Hardsigmoid(),
        lambda torch, t, kw: torch.nn.functional.hardsigmoid(t),
        kinks=lambda kw: (-3, 3),
        torch_dx_rtol=1e-7,
    ),
]
IDS = [s.name for s in SPECS]


def _input(seed: int, shape: tuple[int, ...], spec: Spec, kw: dict, scale: float = 3.0) -> np.ndarray:
    """Values spread over the interesting range (scale 3 reaches hardswish's and relu6's corners), off the kinks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    for p in spec.kinks(kw):
        near = np.abs(x - p) < 1e-3
        x[near] = p + np.where(x[near] >= p, 2e-3, -2e-3)
    return x


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@given(data=st.data(), seed=seeds, shape=shapes)
def test_functional_gradcheck(spec, data, seed, shape):
    kw = data.draw(spec.kwargs)
    x = arr(_input(seed, shape, spec, kw))
    gradcheck.check_function(spec.forward, spec.backward, [x], kw)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@given(data=st.data(), seed=seeds, shape=shapes)
def test_module_gradcheck(spec, data, seed, shape):
    kw = data.draw(spec.kwargs)
    gradcheck.check_module(spec.module(**kw), arr(_input(seed, shape, spec, kw)))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@given(data=st.data(), seed=seeds, shape=shapes)
def test_torch_parity(spec, data, seed, shape):
    torch = torch_or_skip()
    kw = data.draw(spec.kwargs)
    x_np = _input(seed, shape, spec, kw, scale=5.0)
    dout_np = np.random.default_rng(seed + 1).standard_normal(shape)
    module = spec.module(**kw)
    out = module(arr(x_np))
    dx = module.backward(arr(dout_np))
    t = to_torch(x_np, requires_grad=True)
    ref = spec.torch_fn(torch, t, kw)
    ref.backward(torch.tensor(dout_np))
    assert_close(out, ref, atol=1e-12, rtol=1e-10, what=f"{spec.name} forward {kw}")
    assert_close(dx, t.grad, atol=1e-12, rtol=spec.torch_dx_rtol, what=f"{spec.name} dx {kw}")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_float32_in_float32_out_and_no_warning_at_extremes(spec):
    defaults = {"approximate": "none", "negative_slope": 0.1, "alpha": 1.0}
    kw = {k: v for k, v in defaults.items() if k in spec.forward.__code__.co_varnames}
    x = arr(np.array([-1e30, -1e3, -50.0, -1.0, 0.5, 50.0, 1e3, 1e30], np.float32))
    out, cache = spec.forward(x, **kw)
    dx = spec.backward(arr(np.ones(8, np.float32)), cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32
    assert np.isfinite(host(out)).all() and np.isfinite(host(dx)).all()


def test_stable_sigmoid_softplus_and_logsoftmax_for_huge_inputs():
    x = arr(np.array([-1e300, -745.0, 0.0, 745.0, 1e300]))
    assert_close(A.sigmoid_forward(x)[0], arr([0.0, 0.0, 0.5, 1.0, 1.0]), atol=1e-300)
    sp = host(A.softplus_forward(x)[0])
    assert sp[-1] == 1e300 and sp[0] == 0.0 and abs(sp[2] - math.log(2)) < 1e-15
    logits = arr(np.array([[1e4, 0.0, -1e4]]))
    assert_close(A.log_softmax_forward(logits)[0], arr([[0.0, -1e4, -2e4]]))
    assert_close(A.softmax_forward(logits)[0], arr([[1.0, 0.0, 0.0]]))


# ------------------------------------------------------------------ softmax / log-softmax
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(seed=seeds, shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_softmax_gradcheck_and_parity(name, seed, shape, data):
    torch = torch_or_skip()
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal(shape) * 4
    fwd, bwd = getattr(A, f"{name}_forward"), getattr(A, f"{name}_backward")
    gradcheck.check_function(fwd, bwd, [arr(x_np)], {"dim": dim})
    module = (nn.Softmax if name == "softmax" else nn.LogSoftmax)(dim=dim)
    dout_np = rng.standard_normal(shape)
    out = module(arr(x_np))
    dx = module.backward(arr(dout_np))
    t = to_torch(x_np, requires_grad=True)
    ref = getattr(torch, name)(t, dim=dim)
    ref.backward(torch.tensor(dout_np))
    assert_close(out, ref, what=f"{name} forward dim={dim}")
    assert_close(dx, t.grad, what=f"{name} dx dim={dim}")


def test_softmax_rows_sum_to_one_and_dim_none_rules():
    x = arr(np.random.default_rng(0).standard_normal((3, 5)))
    assert_close(nn.Softmax()(x).sum(axis=1), arr(np.ones(3)))
    assert_close(nn.Softmax()(x), nn.Softmax(dim=-1)(x))
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)" and repr(nn.LogSoftmax()) == "LogSoftmax(dim=None)"
    with pytest.raises(ValueError, match=r"Softmax: dim=None is only allowed for 1-D or 2-D inputs.*\(2, 3, 4\)"):
        nn.Softmax()(arr(np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match=r"LogSoftmax: dim=None"):
        nn.LogSoftmax()(arr(np.zeros((2, 3, 4, 4))))
    with pytest.raises(ValueError, match=r"softmax_forward: dim 2 is out of range for a 2-D input"):
        A.softmax_forward(x, dim=2)


# ------------------------------------------------------------------ the error function
def test_erf_and_erfc_on_a_dense_grid():
    grid = np.linspace(-10, 10, 400_001)
    for ours, ref, tol in ((_erf, math.erf, 1e-15), (_erfc, math.erfc, 2e-15)):
        got = ours(grid)
        expected = np.array([ref(v) for v in grid])
        rel = np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)
        worst = int(np.argmax(rel))
        assert rel[worst] <= tol, f"{ours.__name__}({grid[worst]!r}) = {got[worst]!r}, math gives {expected[worst]!r}"


@given(st.floats(-40, 40, allow_nan=False) | st.floats(-1e-3, 1e-3) | st.sampled_from([0.0, -0.0, 0.46875, 4.0]))
def test_erf_matches_math_on_hypothesis_floats(v):
    x = np.array([v, -v])
    for ours, ref, tol in ((_erf, math.erf, 1e-15), (_erfc, math.erfc, 2e-15)):
        got = ours(x)
        for g, xi in zip(got, x, strict=True):
            expected = ref(float(xi))
            assert abs(g - expected) <= tol * abs(expected) + 1e-320, f"{ours.__name__}({xi!r}) = {g!r} != {expected!r}"


def test_erf_special_values():
    x = np.array([np.inf, -np.inf, 1e300, -1e300, 30.0])
    assert _erf(x).tolist() == [1.0, -1.0, 1.0, -1.0, 1.0]
    assert _erfc(x).tolist() == [0.0, 2.0, 0.0, 2.0, 0.0]
    assert np.isnan(_erf(np.array([np.nan]))).all()


# ------------------------------------------------------------------ modules
def test_module_repr_and_inplace_argument():
    assert repr(nn.ReLU()) == "ReLU()" and repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"
    assert repr(nn.Hardtanh(-2, 2)) == "Hardtanh(min_val=-2.0, max_val=2.0)"
    assert repr(nn.ReLU6()) == "ReLU6()"
    # inplace=True is accepted, but the input is never modified
    x_np = np.array([-1.0, 2.0])
    x = arr(x_np)
    for module in (
        nn.ReLU(True),
        nn.LeakyReLU(inplace=True),
        nn.ELU(inplace=True),
        nn.SiLU(True),
        nn.ReLU6(True),
        nn.Hardtanh(inplace=True),
        nn.Hardswish(True),
        nn.Mish(True),
    ):
        module(x)
        assert_close(x, x_np, what=type(module).__name__)
    assert not list(nn.ReLU().parameters()) and nn.ReLU().state_dict() == {}


def test_module_backward_uses_its_own_cache_and_frees_it():
    relu = nn.ReLU()
    relu(arr(np.array([1.0, -1.0])))
    assert_close(relu.backward(arr(np.array([5.0, 5.0]))), arr([5.0, 0.0]))
    with pytest.raises(RuntimeError, match=r"ReLU.backward\(\) was called without a matching forward"):
        relu.backward(arr(np.array([5.0, 5.0])))
    with minidl.no_grad():
        nn.Sigmoid()(arr(np.zeros(2)))


def test_bad_inputs_and_hyperparameters():
    with pytest.raises(TypeError, match=r"GELU: expected a floating-point input .* got dtype int64"):
        nn.GELU()(arr(np.array([1, 2], np.int64)))
    with pytest.raises(TypeError, match=r"ReLU: expected the input to be an array, got list"):
        nn.ReLU()([1.0, 2.0])
    tanh = nn.Tanh()
    tanh(arr(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"tanh_backward: the gradient has shape \(3, 2\) but the forward output had"):
        tanh.backward(arr(np.zeros((3, 2))))
    with pytest.raises(RuntimeError, match=r"Sigmoid.backward\(\) was called without a matching forward"):
        nn.Sigmoid().backward(arr(np.zeros(2)))
    with pytest.raises(ValueError, match=r"GELU: approximate must be 'none' or 'tanh', got 'erf'"):
        nn.GELU("erf")
    with pytest.raises(ValueError, match=r"gelu_forward: approximate must be"):
        A.gelu_forward(arr(np.zeros(2)), approximate="fast")
    with pytest.raises(ValueError, match=r"Hardtanh: min_val \(2\) must not exceed max_val \(1\)"):
        nn.Hardtanh(2, 1)
    with pytest.raises(ValueError, match=r"Softplus: beta must be > 0.0, got 0.0"):
        nn.Softplus(beta=0)
    with pytest.raises(TypeError, match=r"ReLU: inplace must be a bool, got 'yes'"):
        nn.ReLU("yes")
    with pytest.raises(TypeError, match=r"LeakyReLU: negative_slope must be a real number"):
        nn.LeakyReLU("0.1")


@given(seed=seeds, shape=shapes)
def test_relu_mask_cache_is_bool_and_dx_zero_on_negatives(seed, shape):
    x = arr(array_away_from(np.random.default_rng(seed), shape))
    relu_forward, relu_backward = declared_ops()["relu"]  # the reference pair (a fast backend keeps its own cache)
    out, cache = relu_forward(x)
    assert cache.mask.dtype == np.bool_ and cache.dtype == x.dtype
    dx = relu_backward(arr(np.ones(shape)), cache)
    assert_close(dx, (host(x) > 0).astype(np.float64))
    assert (host(out) >= 0).all() and (host(out)[host(x) > 0] == host(x)[host(x) > 0]).all()


def test_relu_propagates_nan_like_pytorch():
    """A NaN that reaches ReLU must not be hidden as 0 (it would mask a diverging network)."""
    import minidl

    with minidl.use_backend("numpy"):
        out, cache = nn.functional.relu_forward(np.array([np.nan, -1.0, 2.0], np.float32))
        assert np.isnan(out[0]) and out[1] == 0 and out[2] == 2
        dx = nn.functional.relu_backward(np.ones(3, np.float32), cache)
        assert dx.tolist()[1:] == [0.0, 1.0] and dx[0] == 1.0


def test_reference_gelu_in_float16_and_leaky_relu_with_a_numpy_slope_keep_their_dtype():
    # two reference bugs found in review: float16 exact GELU overflowed inside erfc (NaN for |x| > 4.5), and a
    # NumPy float64 slope promoted a float32 LeakyReLU to float64
    with minidl.use_backend("numpy"):
        x16 = np.linspace(-8, 8, 33).astype(np.float16)
        out, cache = A.gelu_forward(x16)
        dx = A.gelu_backward(np.ones_like(x16), cache)
        ref, ref_cache = A.gelu_forward(x16.astype(np.float32))
        assert out.dtype == dx.dtype == np.float16 and not np.isnan(out).any() and not np.isnan(dx).any()
        np.testing.assert_allclose(out.astype(np.float32), ref, atol=2e-3, rtol=2e-3)
        x32 = np.array([-1.0, 2.0], np.float32)
        y, c = A.leaky_relu_forward(x32, np.float64(0.1))
        assert y.dtype == A.leaky_relu_backward(np.ones_like(x32), c).dtype == np.float32


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_hardswish_slope_at_its_kinks_is_pytorchs(backend):
    # PyTorch 2.13: 0 at -3 and 1 at 3 (the outer slopes, as its Hardsigmoid's 0 there); it was -0.5 and 1.5
    if backend == "numba":
        pytest.importorskip("numba")
    with minidl.use_backend(backend):
        _, cache = nn.functional.hardswish_forward(np.array([-3.0, 3.0, -2.5, 2.5]))
        np.testing.assert_allclose(nn.functional.hardswish_backward(np.ones(4), cache), [0.0, 1.0, -1 / 3, 4 / 3])
