"""The Numba backend's elementwise activation and softmax-cross-entropy kernels against the NumPy reference.

Every kernel is called through the functional it replaces (``run_on("numba", ...)`` vs ``run_on("numpy", ...)``) for
the hooked ones, and directly as a backend method for all (the unhooked ones must be right too). Inputs include NaN,
+-inf, +-0 and values far out (|x| up to 200), whose results (NaN, inf, 0) must come out exactly where the
reference's do; finite values agree within float32 tolerance (atol 5e-4 / rtol 5e-3) or tightly in float64.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl.nn import activation as A
from minidl.nn import loss as L
from tests.strategies import seeds

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

TOL = {np.float32: {"atol": 5e-4, "rtol": 5e-3}, np.float64: {"atol": 1e-10, "rtol": 1e-9}}
dtypes = st.sampled_from([np.float32, np.float64])
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 200.0, -200.0, 3.0, -3.0, 20.0]


def fast_be():
    return minidl.get_backend("numba")


def run_on(name, fn, *args, **kwargs):
    with minidl.use_backend(name), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the reference's NaN/inf warnings
        return fn(*args, **kwargs)


def close(actual, expected, dtype, what):
    """Same dtype and shape, NaN and +-inf at the same places, finite values within TOL[dtype]."""
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions")
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(actual[infinite], expected[infinite], err_msg=f"{what}: inf values")
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], **TOL[dtype], err_msg=what)


def activation_input(rng, size, dtype, scale):
    x = (rng.standard_normal(size) * scale).astype(dtype)
    x[rng.integers(0, size, len(SPECIAL))] = SPECIAL
    return x


# (name, strategy of the hyperparameters passed after x)
ACTIVATIONS = {
    "leaky_relu": st.tuples(st.floats(-2.0, 2.0)),
    "hardtanh": st.tuples(st.floats(-3.0, 0.0), st.floats(0.0, 7.0)),
    "relu6": st.just(()),
    "hardswish": st.just(()),
    "sigmoid": st.just(()),
    "tanh": st.just(()),
    "elu": st.tuples(st.floats(0.1, 2.0)),
    "silu": st.just(()),
    "gelu": st.tuples(st.sampled_from(["none", "tanh"])),
    "softplus": st.tuples(st.floats(0.25, 4.0), st.floats(1.0, 30.0)),
    "mish": st.just(()),
}
KERNEL = {"relu6": "hardtanh"}  # relu6 is hardtanh(0, 6)


@st.composite
def activation_cases(draw):
    name = draw(st.sampled_from(sorted(ACTIVATIONS)))
    return name, draw(ACTIVATIONS[name])


@given(
    case=activation_cases(), size=st.integers(1, 150_000), scale=st.sampled_from([1.0, 8.0]), dtype=dtypes, seed=seeds
)
def test_activation_kernels_match_the_reference(case, size, scale, dtype, seed):
    """Each backend method, forward and backward, against the reference functional on the NumPy backend."""
    name, hyper = case
    rng = np.random.default_rng(seed)
    x = activation_input(rng, size, dtype, scale)
    dout = rng.standard_normal(size).astype(dtype)
    forward, backward = getattr(A, f"{name}_forward"), getattr(A, f"{name}_backward")
    ref_out, ref_cache = run_on("numpy", forward, x, *hyper)
    ref_dx = run_on("numpy", backward, dout, ref_cache)
    kernel = KERNEL.get(name, name)
    hyper_kernel = (0.0, 6.0) if name == "relu6" else hyper
    kernel_forward = getattr(fast_be(), f"{kernel}_forward", None)  # None: NumPy's is faster (tanh)
    out, cache = kernel_forward(x, *hyper_kernel) if kernel_forward else (ref_out, ref_cache)
    what = f"{name}{hyper} size {size} scale {scale} {np.dtype(dtype).name}"
    close(out, ref_out, dtype, f"{what}: forward")
    # the cache has the reference's layout, so either backward accepts the other's cache
    for ref_part, part in zip(_arrays(ref_cache), _arrays(cache), strict=True):
        assert part.dtype == ref_part.dtype and part.shape == ref_part.shape
        if part.dtype == np.bool_:
            np.testing.assert_array_equal(part, ref_part, err_msg=f"{what}: mask")
        else:
            close(part, ref_part, dtype, f"{what}: cache")
    kernel_backward = getattr(fast_be(), f"{kernel}_backward", None)  # None: NumPy's is as fast (softplus)
    if kernel_backward is not None:
        close(kernel_backward(dout, cache), ref_dx, dtype, f"{what}: backward")
        close(kernel_backward(dout, ref_cache), ref_dx, dtype, f"{what}: backward (ref cache)")


def _arrays(cache):
    parts = cache if isinstance(cache, tuple) else (cache,)
    return [p for p in parts if isinstance(p, np.ndarray)]


@given(case=activation_cases(), dtype=dtypes, seed=seeds)
def test_activation_functionals_on_numba_match_numpy(case, dtype, seed):
    """The functionals themselves (hooked or not) on the Numba backend, on a (N, C, H, W) batch."""
    name, hyper = case
    rng = np.random.default_rng(seed)
    x = activation_input(rng, 3 * 4 * 5 * 6, dtype, 4.0).reshape(3, 4, 5, 6)
    dout = rng.standard_normal(x.shape).astype(dtype)
    forward, backward = getattr(A, f"{name}_forward"), getattr(A, f"{name}_backward")
    out, cache = run_on("numba", forward, x, *hyper)
    ref_out, ref_cache = run_on("numpy", forward, x, *hyper)
    close(out, ref_out, dtype, f"{name}{hyper}: forward")
    close(run_on("numba", backward, dout, cache), run_on("numpy", backward, dout, ref_cache), dtype, f"{name}: dx")


def test_exact_gelu_kernel_agrees_with_the_reference_erf_in_float64():
    """math.erfc against minidl's own erfc (Cody's approximations): relative 1e-10 over the whole range."""
    x = np.concatenate([np.linspace(-40, 40, 200_001), [-1e-300, 1e-300, 5e-5, -5e-5]])
    out, cache = fast_be().gelu_forward(x, "none")
    ref_out, _ = run_on("numpy", A.gelu_forward, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-300)
    dout = np.ones_like(x)
    np.testing.assert_allclose(
        fast_be().gelu_backward(dout, cache), run_on("numpy", A.gelu_backward, dout, cache), rtol=1e-10, atol=1e-300
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorized_exponentials_over_the_whole_range(dtype):
    """The kernels' own exp (through sigmoid: e^{-|x|}) down to the subnormals and zero, and expm1/tanh (ELU, tanh)
    near 0 where they must keep their relative precision."""
    limit = 110.0 if dtype == np.float32 else 750.0
    x = np.concatenate([np.linspace(-limit, limit, 100_001), np.geomspace(1e-30, 1e-3, 1000)]).astype(dtype)
    x = np.concatenate([x, -x[-1000:]])
    x64 = x.astype(np.float64)
    z = np.exp(-np.abs(x64))
    expected = {"sigmoid": np.where(x64 >= 0, 1.0, z) / (1 + z), "tanh": np.tanh(x64)}
    expected["elu"] = np.where(x64 > 0, x64, np.expm1(np.minimum(x64, 0)))
    tiny = np.finfo(dtype).tiny
    for name, exact in expected.items():
        out = _tanh_of(x) if name == "tanh" else getattr(fast_be(), f"{name}_forward")(x)[0]
        relative = np.abs(out - exact) / np.maximum(np.abs(exact), tiny)
        assert relative.max() < (2e-6 if dtype == np.float32 else 1e-14), f"{name}: worst relative {relative.max():.3g}"


def _tanh_of(x):
    """The kernels' tanh (_numba_math._tanh, used by GELU's tanh form) over an array, in x's dtype."""
    from numba import njit

    from minidl.backend._numba_math import _tanh

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = _tanh(np.float64(x[i]))

    out = np.empty_like(x)
    apply(x, out)
    return out


def test_activation_kernels_keep_float16():
    x = np.linspace(-5, 5, 101).astype(np.float16)
    for name in ("leaky_relu", "sigmoid", "silu", "gelu", "elu", "hardswish"):
        out, cache = run_on("numba", getattr(A, f"{name}_forward"), x)
        dx = run_on("numba", getattr(A, f"{name}_backward"), x, cache)
        assert out.dtype == dx.dtype == np.float16, name
        ref, ref_cache = run_on("numpy", getattr(A, f"{name}_forward"), x.astype(np.float32))
        np.testing.assert_allclose(out.astype(np.float32), ref, atol=1e-2, rtol=1e-2, err_msg=name)


def _forward_backward(module, x):
    return module(x), module.backward(np.ones_like(x))


def test_an_activation_module_trains_the_same_on_both_backends():
    x = np.random.default_rng(1).standard_normal((4, 3, 5, 5)).astype(np.float32)
    for module in (minidl.nn.GELU(), minidl.nn.Sigmoid(), minidl.nn.LeakyReLU(0.2), minidl.nn.ReLU6()):
        fast, ref = (run_on(b, _forward_backward, module, x) for b in ("numba", "numpy"))
        close(fast[0], ref[0], np.float32, f"{module!r}: output")
        close(fast[1], ref[1], np.float32, f"{module!r}: dx")


# ---------------------------------------------------------------------------------------------------- cross-entropy
@given(
    N=st.integers(1, 300),
    C=st.integers(1, 1200),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    weighted=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.1, 0.35, 1.0]),
    ignored=st.sampled_from([0.0, 0.3, 1.0]),
    ignore_index=st.sampled_from([-100, 0, 3]),
    scale=st.sampled_from([1.0, 30.0]),
    dtype=dtypes,
    seed=seeds,
)
def test_fused_cross_entropy_matches_the_reference(
    N, C, reduction, weighted, smoothing, ignored, ignore_index, scale, dtype, seed
):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((N, C)) * scale).astype(dtype)
    target = rng.integers(0, C, N)
    target[rng.random(N) < ignored] = ignore_index
    weight = rng.uniform(0.1, 2.0, C).astype(dtype) if weighted else None
    args = (smoothing, weight, ignore_index, reduction)
    loss, cache = run_on("numba", L.softmax_cross_entropy_forward, logits, target, *args)
    ref_loss, ref_cache = run_on("numpy", L.softmax_cross_entropy_forward, logits, target, *args)
    assert isinstance(cache, L._RowsCache), "the fused kernel should handle 2-D logits with class indices"
    what = f"N {N} C {C} {args} scale {scale} {np.dtype(dtype).name}"
    close(np.asarray(loss), np.asarray(ref_loss), dtype, f"{what}: loss")
    dout = rng.standard_normal(N).astype(dtype) if reduction == "none" else 0.7
    dx = run_on("numba", L.softmax_cross_entropy_backward, dout, cache)
    close(dx, run_on("numpy", L.softmax_cross_entropy_backward, dout, ref_cache), dtype, f"{what}: backward")


def test_fused_cross_entropy_nan_and_inf_like_the_reference():
    logits = np.array(
        [[1.0, 2.0, 3.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0], [-np.inf] * 3, [5.0, 5.0, 5.0]],
        np.float32,
    )
    target = np.array([2, 1, 0, 1, 0, -100])
    for reduction in ("none", "sum"):
        for smoothing in (0.0, 0.2):
            loss, cache = run_on(
                "numba", L.softmax_cross_entropy_forward, logits, target, smoothing, None, -100, reduction
            )
            ref_loss, ref_cache = run_on(
                "numpy", L.softmax_cross_entropy_forward, logits, target, smoothing, None, -100, reduction
            )
            close(np.asarray(loss), np.asarray(ref_loss), np.float32, f"{reduction} {smoothing}: loss")
            dout = np.ones(6, np.float32) if reduction == "none" else 1.0
            close(
                run_on("numba", L.softmax_cross_entropy_backward, dout, cache),
                run_on("numpy", L.softmax_cross_entropy_backward, dout, ref_cache),
                np.float32,
                "backward",
            )


def test_cross_entropy_cases_without_the_fused_kernel_still_match():
    """Probabilities, spatial targets, 1-D logits and an all-ignored mean go to the reference (or give NaN alike)."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    probs = rng.dirichlet(np.ones(4), 5).astype(np.float32)
    spatial = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    cases = [
        (logits, probs),
        (spatial, rng.integers(0, 4, (2, 3, 3))),
        (logits[0], np.array(2)),
        (logits, np.full(5, -100)),  # every sample ignored: the mean is NaN, the gradient 0
    ]
    for x, target in cases:
        loss, cache = run_on("numba", L.softmax_cross_entropy_forward, x, target)
        ref_loss, ref_cache = run_on("numpy", L.softmax_cross_entropy_forward, x, target)
        close(np.asarray(loss), np.asarray(ref_loss), np.float32, f"loss {x.shape} {target.dtype}")
        close(
            run_on("numba", L.softmax_cross_entropy_backward, 1.0, cache),
            run_on("numpy", L.softmax_cross_entropy_backward, 1.0, ref_cache),
            np.float32,
            "backward",
        )


def test_fused_cross_entropy_reports_bad_targets_like_the_reference():
    logits = np.zeros((3, 4), np.float32)
    for target, error in [(np.array([0, 4, 1]), ValueError), (np.array([0, 1]), ValueError)]:
        with pytest.raises(error) as fast, minidl.use_backend("numba"):
            L.softmax_cross_entropy_forward(logits, target)
        with pytest.raises(error) as ref, minidl.use_backend("numpy"):
            L.softmax_cross_entropy_forward(logits, target)
        assert str(fast.value) == str(ref.value)


def _loss_and_gradient(loss_fn, args):
    return loss_fn(*args), loss_fn.backward()


def test_cross_entropy_module_and_distillation_on_numba():
    rng = np.random.default_rng(6)
    z, y = rng.standard_normal((8, 10)).astype(np.float32), rng.integers(0, 10, 8)
    teacher = rng.standard_normal((8, 10)).astype(np.float32)
    for make, args in (
        (lambda: minidl.nn.CrossEntropyLoss(label_smoothing=0.1), (z, y)),
        (lambda: minidl.nn.DistillationLoss(), (z, y, teacher)),
    ):
        results = []
        for backend in ("numba", "numpy"):
            loss_fn = make()
            results.append(run_on(backend, _loss_and_gradient, loss_fn, args))
        (fast_loss, fast_dx), (ref_loss, ref_dx) = results
        assert math.isclose(fast_loss, ref_loss, rel_tol=1e-5)
        close(fast_dx, ref_dx, np.float32, "dlogits")
