"""The Numba backend's activation kernels (``minidl/backend/_numba_elementwise.py``) and the vectorizable elementary
functions they are built on (``minidl/backend/_numba_math.py``).

The table-wide test (``test_kernels.py``) compares every activation pair with its reference, NaN, +-inf, +-0 and
saturated values included. Here: the kernels' own exp, expm1, tanh and erfc against float64 libm/NumPy over their
whole range (down to subnormal results), ReLU6 (a pair that is not in the table) running the hardtanh kernel, float16
computed in float32, and activation modules trained on both backends.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import minidl
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")


def run_on(name, fn, *args, **kwargs):
    with minidl.use_backend(name), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the reference's NaN/inf warnings
        return fn(*args, **kwargs)


def close(actual, expected, what, atol=5e-4, rtol=5e-3):
    """Same dtype and shape, NaN and +-inf at the same places, finite values within the tolerance."""
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions")
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(actual[infinite], expected[infinite], err_msg=f"{what}: inf values")
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], atol=atol, rtol=rtol, err_msg=what)


def kernel_pair(op, x, *args):
    """``F.<op>_forward`` on the Numba backend, which must run its kernel: ``(out, cache)``."""
    out, cache = run_on("numba", getattr(F, f"{op}_forward"), x, *args)
    assert isinstance(cache, KernelCache), f"{op}: the kernel did not run"
    return out, cache


# ---------------------------------------------------------------------------------------------------- _numba_math
def test_exact_gelu_kernel_agrees_with_the_reference_erf_in_float64():
    """The kernels' vectorized erfc (Cody's approximations) against the reference's: relative 1e-10 over the whole
    range, forward and backward (whose exp(-x^2/2) is the kernels' exp too)."""
    x = np.concatenate([np.linspace(-40, 40, 200_001), [-1e-300, 1e-300, 5e-5, -5e-5]])
    out, cache = kernel_pair("gelu", x, "none")
    ref_out, ref_cache = run_on("numpy", F.gelu_forward, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-300)
    dout = np.ones_like(x)
    np.testing.assert_allclose(
        run_on("numba", F.gelu_backward, dout, cache),
        run_on("numpy", F.gelu_backward, dout, ref_cache),
        rtol=1e-10,
        atol=1e-300,
    )


def test_float32_gelu_kernel_is_accurate_over_the_whole_range():
    """GELU's float32 kernels (_normal_cdf_float32: Numerical Recipes' erfc fit in float32 arithmetic) against the
    reference in float64: forward relative 2e-6 down to float32's smallest normal results (x = -13), backward
    2e-6 relative where |GELU'(x)| > 0.1 and 3e-7 absolute everywhere (GELU' crosses 0 at x = -0.75)."""
    x = np.concatenate([np.linspace(-16, 16, 400_001), np.geomspace(1e-30, 1e-2, 500), -np.geomspace(1e-30, 1e-2, 500)])
    x = x.astype(np.float32)
    x64 = x.astype(np.float64)
    out, cache = kernel_pair("gelu", x, "none")
    ref_out, ref_cache = run_on("numpy", F.gelu_forward, x64)
    tiny = np.finfo(np.float32).tiny
    normal = np.abs(ref_out) > tiny
    relative = np.abs(out[normal] - ref_out[normal]) / np.abs(ref_out[normal])
    assert relative.max() < 2e-6, f"forward: worst relative {relative.max():.3g}"
    np.testing.assert_array_less(np.abs(out[~normal]), 2 * tiny)
    dx = run_on("numba", F.gelu_backward, np.ones_like(x), cache)
    ref_dx = run_on("numpy", F.gelu_backward, np.ones_like(x64), ref_cache)
    np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=3e-7)
    steep = np.abs(ref_dx) > 0.1
    np.testing.assert_allclose(dx[steep], ref_dx[steep], rtol=2e-6, atol=0)


def test_the_fused_multiply_add_gives_a_products_rounding_error_exactly():
    """_fma_float32(a, b, -h), h = a b rounded to float32, is that rounding's error: h plus it is a b exactly (float32
    products are exact in float64); GELU's float32 kernels split x^2 this way."""
    from numba import njit

    from minidl.backend._numba_math import _fma_float32

    @njit
    def errors(a, b, out):
        for i in range(a.size):
            h = a[i] * b[i]
            out[i] = _fma_float32(a[i], b[i], -h)

    rng = np.random.default_rng(0)
    a = (rng.standard_normal(10_000) * 10.0 ** rng.integers(-6, 6, 10_000)).astype(np.float32)
    b = np.concatenate([a[:5000], rng.standard_normal(5000).astype(np.float32)])
    error = np.empty_like(a)
    errors(a, b, error)
    h = a * b
    np.testing.assert_array_equal(h.astype(np.float64) + error.astype(np.float64), a.astype(np.float64) * b)


def test_the_exponential_of_a_sum_is_not_rounded_through_the_sum():
    """_exp_sum_nonpositive_float32(a, b) = e^(a + b) to about 1e-7 relative for a large in magnitude and b small
    (normal results: a + b above -87), where rounding a + b to float32 first would cost up to 4e-6 (half an ulp of 85,
    times the exponential's slope); a sum below about -104 gives 0, a NaN gives NaN."""
    from numba import njit

    from minidl.backend._numba_math import _exp_sum_nonpositive_float32

    @njit
    def exp_sums(a, b, out):
        for i in range(a.size):
            out[i] = _exp_sum_nonpositive_float32(a[i], b[i])

    rng = np.random.default_rng(1)
    a = -rng.uniform(0.0, 85.0, 100_000).astype(np.float32)
    b = rng.uniform(-1.5, 0.0, 100_000).astype(np.float32)
    out = np.empty_like(a)
    exp_sums(a, b, out)
    exact = np.exp(a.astype(np.float64) + b.astype(np.float64))
    relative = np.abs(out - exact) / exact
    assert relative.max() < 5e-7, f"worst relative {relative.max():.3g}"
    edge = np.array([-110.0, np.nan, -50.0], dtype=np.float32)
    out = np.empty_like(edge)
    exp_sums(edge, np.array([0.0, 0.0, np.nan], dtype=np.float32), out)
    assert out[0] == 0.0 and np.isnan(out[1]) and np.isnan(out[2])


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
        out = _tanh_of(x) if name == "tanh" else kernel_pair(name, x)[0]
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


def test_softplus_and_mish_kernels_are_float64_accurate():
    """log1p(e^{-|x|}) (_log1p_unit) and tanh(softplus(x)) (_tanh_softplus) against NumPy's float64 functions."""
    x = np.concatenate([np.linspace(-60, 60, 100_001), np.geomspace(1e-30, 1e-3, 500), -np.geomspace(1e-30, 1e-3, 500)])
    softplus = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    out = kernel_pair("softplus", x, 1.0, 100.0)[0]
    np.testing.assert_allclose(out, softplus, rtol=1e-14, atol=0)
    np.testing.assert_allclose(kernel_pair("mish", x)[0], x * np.tanh(softplus), rtol=1e-14, atol=1e-300)


# ---------------------------------------------------------------------------------------------------- the pairs
def test_relu6_runs_the_hardtanh_kernel():
    x = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float32) * 5
    x.reshape(-1)[:4] = [0.0, 6.0, np.nan, np.inf]
    out, cache = run_on("numba", F.relu6_forward, x)
    assert isinstance(cache, KernelCache) and cache.op == "hardtanh"
    ref_out, ref_cache = run_on("numpy", F.relu6_forward, x)
    np.testing.assert_array_equal(out, ref_out)
    dout = np.ones_like(x)
    np.testing.assert_array_equal(run_on("numba", F.relu6_backward, dout, cache), F.relu6_backward(dout, ref_cache))


def test_activation_kernels_keep_float16():
    x = np.linspace(-5, 5, 101).astype(np.float16)
    for name in ("relu", "leaky_relu", "sigmoid", "silu", "gelu", "elu", "hardswish", "mish", "softplus", "tanh"):
        out, cache = kernel_pair(name, x)
        dx = run_on("numba", getattr(F, f"{name}_backward"), x, cache)
        assert out.dtype == dx.dtype == np.float16, name
        ref, ref_cache = run_on("numpy", getattr(F, f"{name}_forward"), x.astype(np.float32))
        ref_dx = run_on("numpy", getattr(F, f"{name}_backward"), x.astype(np.float32), ref_cache)
        np.testing.assert_allclose(out.astype(np.float32), ref, atol=1e-2, rtol=1e-2, err_msg=name)
        np.testing.assert_allclose(dx.astype(np.float32), ref_dx, atol=1e-2, rtol=1e-2, err_msg=name)


def _forward_backward(module, x):
    return module(x), module.backward(np.ones_like(x))


def test_an_activation_module_trains_the_same_on_both_backends():
    x = np.random.default_rng(1).standard_normal((4, 3, 5, 5)).astype(np.float32)
    for module in (minidl.nn.GELU(), minidl.nn.Sigmoid(), minidl.nn.LeakyReLU(0.2), minidl.nn.ReLU6()):
        fast, ref = (run_on(b, _forward_backward, module, x) for b in ("numba", "numpy"))
        close(fast[0], ref[0], f"{module!r}: output")
        close(fast[1], ref[1], f"{module!r}: dx")
