"""Every kernel of the Numba backend's table against its reference pair, through :mod:`minidl.nn.functional`.

One parametrized test, :func:`test_kernel_matches_its_reference_pair`, runs every entry of
``minidl.get_backend("numba").kernels`` (``NumbaBackend._kernel_table``): for hypothesis-drawn configurations
(shapes, hyperparameters, float32 and float64; arguments passed by position or by keyword; the input and ``dout``
C-contiguous, in Fortran order or strided) it calls ``F.<op>_forward`` on the Numba backend, checks that the kernel
really ran (the cache is a :class:`~minidl.nn.dispatch.KernelCache`) and that it took the algorithm the case is about
(convolutions: im2row, Winograd, 1 x 1, grouped, depthwise), runs ``F.<op>_backward`` with a random ``dout``, and
compares the output, every gradient and every buffer the forward updates in place (running statistics, from fresh
copies on each side) with the reference pair run under ``minidl.use_backend("numpy")``. Nothing else it is given may
change.

Tolerances (:data:`TOL`): float64 to about 1e-10 relative; float32 atol 5e-4 / rtol 5e-3 for convolutions (Winograd
and the im2row GEMMs add in other orders than the reference's single GEMM), about 1e-5 relative for the rest, with
an absolute term where float32 rounding of the reference itself needs one (each says why). Inputs stay away from the
kinks where an exact gradient comparison would be ill-posed: max-pool windows have no ties, and where a ReLU follows
a sum that the two sides round differently (``conv2d_relu``, ``batch_norm_relu``) ``dout`` is 0 within a rounding of
the kink. The cases are in ``kernel_cases.py``. The tests after it check that the table and the cases stay complete
and that declined cases run the reference.

Algorithm-specific tests live next to it: ``test_numba_conv.py``, ``test_numba_pool.py``, ``test_numba_norm.py``,
``test_numba_elementwise.py``, ``test_numba_backend.py``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl.backend.numpy_backend import NumpyBackend
from minidl.nn import functional as F
from minidl.nn.dispatch import KernelCache, declared_ops
from tests.backend.kernel_cases import CASES, Case, case_op, in_layout

pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")

BUFFERS = ("running_mean", "running_var")  # arguments the forwards update in place

_F64 = {"rtol": 1e-10, "atol": 1e-12}  # float64: a few roundings of sums of O(1) values, for every op
_EXACT = {"rtol": 0.0, "atol": 0.0}
#: op kind (TOL_KIND) -> {dtype: tolerance}, the same for the output, every gradient and the updated buffers.
TOL: dict[str, dict[Any, dict[str, float]]] = {
    # the kernels add the same products in other orders than the reference's one GEMM (in chunks of images; Winograd
    # transforms the tiles first, which changes the roundings most: measured up to ~3e-5 absolute)
    "conv2d": {np.float32: {"rtol": 5e-3, "atol": 5e-4}, np.float64: _F64},
    # the backward adds overlapping windows' gradients in another order (measured below 1e-8)
    "pool": {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: _F64},
    # statistics: the kernels sum in float64, the reference in float32; the backward's sums cancel. Measured up to
    # ~4e-5 absolute: rows of one value (zero variance), where inv_std = 1 / sqrt(eps) (up to 316) magnifies one
    # float32 rounding of dout * gamma (the kernels' fused multiply-add drops it, the reference keeps it), and batch
    # norm of 2 values per channel, where the reference itself is ~2e-5 from the float64 result
    "norm": {np.float32: {"rtol": 1e-5, "atol": 1e-4}, np.float64: _F64},
    # one IEEE operation per element, in the same order as the reference's: bit for bit
    "exact": {np.float32: _EXACT, np.float64: _EXACT},
    # the kernels' own exp/expm1/erfc/tanh (_numba_math.py) against NumPy's, each a few ulp from exact; the absolute
    # term covers cancellations in float32 (1 - y of y (1 - y), the tanh-form GELU slope crossing 0 near x = -0.75:
    # measured up to ~4e-6, where the reference is that far from the float64 result too)
    "smooth": {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: _F64},
    # the same products as the reference's one GEMM, in blocks of rows (BLAS may pick other kernels for a block):
    # float32 kernel and reference differ by up to 2.2e-7 of the array's largest value, as the reference differs
    # from the float64 result by up to 3.4e-7 of it (300 random cases, inputs of scale 1 to 10: up to 5e-4 absolute
    # at scale 10, where a gradient's element that cancels over 300 rows is far below the array's largest): the atol
    # is relative to that value (_ATOL_TIMES_LARGEST)
    "gemm": {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: _F64},
    # the kernels' softmax (their exponential; sums in float64) between the products, and the backward's
    # rowsum(dP P), which cancels over up to 65 keys: float32 kernel and reference differ by up to 2.6e-5 of the
    # array's largest value, as the reference differs from the float64 result by up to 2e-5 of it (600 random
    # cases; the largest values reach ~250 with inputs of scale 3 and scale=2): the atol is relative to that value
    # (_ATOL_TIMES_LARGEST)
    "attention": {np.float32: {"rtol": 1e-5, "atol": 1e-4}, np.float64: _F64},
}
#: tolerance kinds whose atol multiplies max(1, the largest |value| of the reference's array)
_ATOL_TIMES_LARGEST = {"attention", "gemm"}
TOL_KIND = {
    "conv2d": "conv2d",
    "conv2d_relu": "conv2d",
    "conv2d_relu6": "conv2d",
    "conv2d_add_relu": "conv2d",
    "max_pool2d": "pool",
    "avg_pool2d": "pool",
    "adaptive_avg_pool2d": "pool",
    "batch_norm": "norm",
    "batch_norm_relu": "norm",
    "batch_norm_relu6": "norm",
    "batch_norm_add_relu": "norm",
    "layer_norm": "norm",
    "group_norm": "norm",
    "instance_norm": "norm",
    "relu": "exact",
    "add": "exact",
    "add_relu": "exact",
    "leaky_relu": "exact",
    "hardtanh": "exact",
    "hardswish": "exact",
    "linear": "gemm",
    "scaled_dot_product_attention": "attention",
}


# ---------------------------------------------------------------------------------------------------- running a case
#: the Numba backend's convolution methods, one per algorithm (``_conv2d_dense`` runs im2row unless it hands over
#: to Winograd, the direct 3 x 3 or the 1 x 1 product)
_ALGORITHM_METHODS = {
    "_winograd_conv": "winograd",
    "_direct_conv": "direct",
    "_pointwise_conv": "pointwise",
    "_grouped_conv2d": "grouped",
    "_depthwise_conv2d": "depthwise",
    "_conv2d_dense": "dense",
}


@contextlib.contextmanager
def _algorithm_spy(be: Any) -> Any:
    """Record which convolution algorithm the Numba backend runs (instance attributes shadow its methods)."""
    missing = [method for method in _ALGORITHM_METHODS if not hasattr(type(be), method)]
    assert not missing, f"the Numba backend has no {missing}: update _ALGORITHM_METHODS"
    seen: list[str] = []
    for method, name in _ALGORITHM_METHODS.items():
        original = getattr(be, method)

        def spy(*args: Any, _original: Callable[..., Any] = original, _name: str = name, **kwargs: Any) -> Any:
            seen.append(_name)
            return _original(*args, **kwargs)

        setattr(be, method, spy)
    try:
        yield seen
    finally:
        for method in _ALGORITHM_METHODS:
            delattr(be, method)


def _algorithm(seen: list[str]) -> str:
    """The algorithm a forward ran, from the spied calls: im2row is the dense path without Winograd or 1 x 1."""
    for name in ("grouped", "depthwise"):
        if name in seen:
            return name
    for name in ("winograd", "direct", "pointwise"):
        if name in seen:
            return name
    return "im2row" if "dense" in seen else "none"


def _as_tuple(grads: Any) -> tuple[Any, ...]:
    return grads if isinstance(grads, tuple) else (grads,)


def _run(backend: str, case: Case, dout: Any = None) -> dict[str, Any]:
    """Forward (and backward with ``dout``) of ``case`` on ``backend``: the results by name, the cache, the
    algorithm seen (Numba), and the in-place buffers after the forward."""
    args, kwargs = case.call()
    inputs = {name: value.copy() for name, value in case.params if isinstance(value, np.ndarray)}
    be = minidl.get_backend(backend)
    forward, backward = getattr(F, f"{case.op}_forward"), getattr(F, f"{case.op}_backward")
    with minidl.use_backend(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the reference's NaN/inf warnings
        spy = _algorithm_spy(be) if backend == "numba" and case.algorithm else contextlib.nullcontext([])
        with spy as seen:
            out, cache = forward(*args, **kwargs)
        results = {"out": out}
        if dout is not None:
            for i, grad in enumerate(_as_tuple(backward(dout, cache, **case.backward_kwargs))):
                results[f"grad {i}"] = grad
    passed = dict(zip((name for name, _ in case.params), (*args, *kwargs.values()), strict=True))
    for name in BUFFERS:
        if passed.get(name) is not None:
            results[name] = passed[name]
    for name, before in inputs.items():  # the call may update its buffers, nothing else
        if name not in BUFFERS:
            np.testing.assert_array_equal(passed[name], before, err_msg=f"{backend}: {case.op} changed {name}")
    return {"results": results, "cache": cache, "algorithm": _algorithm(seen)}


def _dout(case: Case, out: Any) -> Any:
    """A random gradient of ``out``, 0 within a rounding of the ReLU's kink (and the ReLU6's at 6) for the fused
    ReLU ops (there the two sides' sums may round to opposite sides, and the gradient jumps)."""
    rng = np.random.default_rng(case.seed)
    dout = np.asarray(rng.standard_normal(out.shape), dtype=out.dtype)
    if case.kink in ("conv2d_add", "batch_norm_add"):  # the convolution's (BatchNorm's) output plus the residual
        residual = dict(case.params)["residual"]
        op = case.kink.removesuffix("_add")
        before = case._replace(op=op, params=tuple(p for p in case.params if p[0] != "residual"))
        positional = case.positional - (case.positional > 1)  # (the residual was passed by position)
        pre = _run("numpy", before._replace(positional=positional))["results"]["out"] + residual
    elif case.kink is not None:
        pre = _run("numpy", case._replace(op=case.kink))["results"]["out"]  # the output before the ReLU
    if case.kink is not None:
        margin = (1e-3 if case.dtype == np.float32 else 1e-9) * max(1.0, float(np.abs(pre).max(initial=0.0)))
        kinks = (0.0, 6.0) if case.op.endswith("relu6") else (0.0,)
        for kink in kinks:
            dout[np.abs(pre - kink) < margin] = 0
    return in_layout(dout, case.layout)


def assert_same(actual: Any, expected: Any, tol: dict[str, float], what: str) -> None:
    """None for None; else the same dtype and shape, NaN and +-inf at the same places, finite values within tol."""
    assert (actual is None) == (expected is None), f"{what}: {actual!r} where the reference gives {expected!r}"
    if expected is None:
        return
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions")
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(actual[infinite], expected[infinite], err_msg=f"{what}: inf values")
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], **tol, err_msg=what)


def compare(case: Case, tol: dict[str, float] | None = None) -> None:
    """``case`` on the Numba backend (which must run its kernel) against the reference pair on NumPy, within ``tol``
    (default: :data:`TOL` for the op and dtype)."""
    first = _run("numpy", case)
    assert not isinstance(first["cache"], KernelCache), "the NumPy backend runs the reference"
    dout = _dout(case, first["results"]["out"])
    reference = _run("numpy", case, dout)
    # Both reference runs stay alive while the kernel runs: were one freed, the kernel's ``empty`` buffers could reuse
    # its memory and a kernel that skipped some elements would find the right values already there.
    fast = _run("numba", case, dout)
    del first
    cache = fast["cache"]
    assert isinstance(cache, KernelCache) and cache.op == case.op, f"{case}: the kernel did not run ({cache!r})"
    if case.algorithm is not None:
        assert fast["algorithm"] == case.algorithm, f"{case}: ran {fast['algorithm']}, not {case.algorithm}"
    kind = TOL_KIND.get(case.op, "smooth")
    tol = tol or TOL[kind][case.dtype]
    assert fast["results"].keys() == reference["results"].keys(), case
    for name, expected in reference["results"].items():
        assert_same(fast["results"][name], expected, _for_array(tol, kind, expected), f"{case}: {name}")


def _for_array(tol: dict[str, float], kind: str | None, expected: Any) -> dict[str, float]:
    """``tol`` for the array ``expected``: for a kind of :data:`_ATOL_TIMES_LARGEST`, its atol times max(1, the
    largest finite |value| of ``expected``); else ``tol`` as it is."""
    if kind not in _ATOL_TIMES_LARGEST:
        return tol
    finite = np.abs(expected[np.isfinite(expected)]) if expected is not None else np.zeros(0)
    return {**tol, "atol": tol["atol"] * max(1.0, float(finite.max(initial=0.0)))}


def assert_independent_of_the_thread_count(op: str, *args: Any) -> None:
    """``F.<op>_forward(*args)`` and its backward (of ones) on the Numba backend, which must run its kernel, give the
    same bits with 1 and 3 threads (kernels split work by shape only)."""
    results = []
    before = minidl.get_num_threads()
    try:
        with minidl.use_backend("numba"):
            for threads in (1, 3):
                minidl.set_num_threads(threads)
                out, cache = getattr(F, f"{op}_forward")(*args)
                assert isinstance(cache, KernelCache), f"{op}: the kernel did not run ({cache!r})"
                grads = getattr(F, f"{op}_backward")(np.ones_like(out), cache)
                results.append([out, *(g for g in _as_tuple(grads) if g is not None)])
    finally:
        minidl.set_num_threads(before)
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        what = "the output" if i == 0 else f"gradient {i} of the backward's (non-None) results"
        np.testing.assert_array_equal(a, b, err_msg=f"{op}: {what}, shape {a.shape}, 1 against 3 threads")


# ---------------------------------------------------------------------------------------------------- the test
@pytest.mark.parametrize("case_id", sorted(CASES))
@given(data=st.data())
def test_kernel_matches_its_reference_pair(case_id, data):
    compare(data.draw(CASES[case_id], label="case"))


# ---------------------------------------------------------------------------------------------------- completeness
def test_every_kernel_of_the_table_is_a_declared_op():
    table = minidl.get_backend("numba").kernels
    declared = declared_ops()
    assert set(table) <= set(declared), f"kernels for pairs not marked @kernel: {set(table) - set(declared)}"
    for op in table:  # the declared pair is what minidl.nn.functional runs
        forward, backward = declared[op]
        assert getattr(F, f"{op}_forward").__wrapped__ is forward, op
        assert getattr(F, f"{op}_backward").__wrapped__ is backward, op


def test_every_kernel_of_the_table_has_cases():
    table = set(minidl.get_backend("numba").kernels)
    covered = {case_op(case_id) for case_id in CASES}
    assert table <= covered, f"no cases in test_kernel_matches_its_reference_pair for {sorted(table - covered)}"
    assert covered <= table, f"cases for ops the table does not have: {sorted(covered - table)}"


def test_the_numpy_backend_has_no_kernels_and_numba_overrides_none_of_its_primitives():
    assert dict(minidl.get_backend("numpy").kernels) == {}
    numba_backend = type(minidl.get_backend("numba"))
    public = [name for name in vars(NumpyBackend) if not name.startswith("_") and callable(vars(NumpyBackend)[name])]
    assert {"im2col", "col2im", "max_pool2d_forward", "avg_pool2d_backward"} <= set(public)
    questions = {"conv2d_takes_channel_sums", "conv2d_reads_bn_relu"}  # what fused modules ask: no pair primitives
    for name in set(public) - questions:  # the reference pairs' primitives stay the NumPy ones on every CPU backend
        assert getattr(numba_backend, name) is getattr(NumpyBackend, name), f"NumbaBackend overrides {name}"


def _declined_cases() -> dict[str, Case]:
    """Cases a kernel leaves to the reference (its ``accepts`` says False)."""
    rng = np.random.default_rng(0)
    x8 = rng.standard_normal((2, 4, 5, 4)).astype(np.float32)
    w_grouped = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    bn16 = rng.standard_normal((4, 3, 2, 2)).astype(np.float16)
    stats16 = [("running_mean", np.zeros(3, np.float16)), ("running_var", np.ones(3, np.float16))]
    image = rng.standard_normal((2, 3, 4, 4))
    stats = [("running_mean", rng.standard_normal(3)), ("running_var", rng.uniform(0.5, 2, 3))]

    def case(op, params, backward_kwargs=None):
        return Case(op, tuple(params), 1, backward_kwargs or {}, params[0][1].dtype.type, seed=1)

    return {
        "conv2d_relu grouped": case("conv2d_relu", [("x", x8), ("weight", w_grouped), ("padding", 1), ("groups", 2)]),
        "conv2d_relu6 grouped": case("conv2d_relu6", [("x", x8), ("weight", w_grouped), ("padding", 1), ("groups", 2)]),
        "conv2d_add_relu grouped": case(
            "conv2d_add_relu",
            [
                ("x", x8),
                ("residual", np.ones((2, 4, 5, 4), np.float32)),
                ("weight", w_grouped),
                ("padding", 1),
                ("groups", 2),
            ],
        ),  # fmt: skip
        "batch_norm float16": case("batch_norm", [("input", bn16), *stats16, ("training", True)]),
        "batch_norm_relu float16": case("batch_norm_relu", [("input", bn16), *stats16]),
        "batch_norm_relu6 float16": case("batch_norm_relu6", [("input", bn16), *stats16, ("training", True)]),
        "batch_norm empty": case("batch_norm", [("input", np.zeros((0, 3))), *stats]),
        "batch_norm_add_relu C-contiguous": case(
            "batch_norm_add_relu", [("input", image), ("residual", rng.standard_normal(image.shape)), *stats]
        ),
        "batch_norm_add_relu C-contiguous residual": case(
            "batch_norm_add_relu",
            [("input", minidl.contiguous(image, minidl.channels_last)), ("residual", image + 1), *stats],
        ),
        "instance_norm use_input_stats=False": case(
            "instance_norm", [("input", image), *stats, ("use_input_stats", False)]
        ),
        "instance_norm float16": case("instance_norm", [("input", image.astype(np.float16))]),
        "layer_norm empty": case("layer_norm", [("input", np.zeros((0, 4, 3))), ("normalized_shape", 3)]),
        "group_norm empty": case("group_norm", [("input", np.zeros((0, 4, 3))), ("num_groups", 2)]),
        "softmax along dim 1 of 3": case("softmax", [("x", rng.standard_normal((2, 4, 3))), ("dim", 1)]),
        "softmax empty": case("softmax", [("x", np.zeros((0, 3))), ("dim", -1)]),
        **{
            f"scaled_dot_product_attention {name}": case("scaled_dot_product_attention", [*qkv, *extra])
            for qkv in [[(n, rng.standard_normal((2, 4, 3, 5))) for n in ("query", "key", "value")]]
            for name, extra in (
                ("with a bool mask", [("attn_mask", rng.random((3, 3)) > 0.3)]),
                ("causal", [("attn_mask", None), ("dropout_p", 0.0), ("is_causal", True)]),
            )
        },
        "scaled_dot_product_attention grouped heads": case(
            "scaled_dot_product_attention",
            [("query", image), ("key", image[:, :1]), ("value", image[:, :1]), ("enable_gqa", True)],
        ),
    }


@pytest.mark.parametrize("name", sorted(_declined_cases()))
def test_a_declined_case_runs_the_reference_and_matches(name):
    case = _declined_cases()[name]
    args, kwargs = case.call()
    kernel = minidl.get_backend("numba").kernels[case.op]
    assert kernel.accepts is not None and not kernel.accepts(*args, **kwargs), f"{name}: the kernel accepts it"
    results = []
    for backend in ("numpy", "numba"):
        run = _run(backend, case)
        assert not isinstance(run["cache"], KernelCache), f"{name}: the kernel ran on {backend}"
        results.append(_run(backend, case, _dout(case, run["results"]["out"]))["results"])
    assert results[1].keys() == results[0].keys()
    # the reference on both backends: the same code, the same values; only attention's reference calls a pair whose
    # Numba kernel is not exact (its softmax: the kernels' exponential, a few ulp from NumPy's)
    kind = TOL_KIND[case.op] if case.op == "scaled_dot_product_attention" else None
    tol = TOL[kind][case.dtype] if kind else _EXACT
    for key, expected in results[0].items():
        assert_same(results[1][key], expected, _for_array(tol, kind, expected), f"{name}: {key}")


def test_every_kernel_that_may_decline_has_a_declined_case():
    table = minidl.get_backend("numba").kernels
    may_decline = {op for op, kernel in table.items() if kernel.accepts is not None}
    covered = {case.op for case in _declined_cases().values()}
    assert may_decline <= covered, f"no declined case for {sorted(may_decline - covered)}"
