"""The cases of ``test_kernels.py``: a :class:`Case` is one call of ``F.<op>_forward`` and its backward, and
:data:`CASES` maps a case id to a hypothesis strategy of Cases for every op of the Numba backend's kernel table (a
convolution has one per algorithm). The algorithm-specific tests (``test_numba_conv.py``, ``test_numba_norm.py``)
draw from the same strategies."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import minidl
from minidl.backend._numba_conv import _DIRECT_MAX_C
from minidl.nn.conv import _conv2d_setup
from minidl.nn.pooling import pool_output_size
from tests.strategies import distinct_values, seeds

DTYPES = st.sampled_from([np.float32, np.float64])
# Values that must come out (NaN, +-inf, +-0, saturated) exactly where the reference's do.
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 200.0, -200.0, 3.0, -3.0, 20.0]


class Case(NamedTuple):
    """One call of ``F.<op>_forward`` and its backward."""

    op: str
    params: tuple[tuple[str, Any], ...]  # the forward's arguments in the reference's order
    positional: int  # how many of them are passed by position (the rest by keyword)
    backward_kwargs: dict[str, Any]
    dtype: Any
    seed: int  # of dout
    algorithm: str | None = None  # convolutions: which of the kernel's algorithms must run
    kink: str | None = None  # the op whose output goes through a ReLU (ReLU6): dout is 0 near its kinks
    # ("conv2d_add": the convolution's output plus the residual)
    layout: str = "C"  # of the first array argument and of dout: C-contiguous, "F" (Fortran order), "strided" or
    # "channels_last" (4-d)

    def call(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` with fresh copies of every array (so each side updates its own buffers; each laid out
        as given), the first one in ``layout``."""
        values = [(name, v.copy(order="K") if isinstance(v, np.ndarray) else v) for name, v in self.params]
        values[0] = (values[0][0], in_layout(values[0][1], self.layout))
        return tuple(v for _, v in values[: self.positional]), dict(values[self.positional :])

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'array' + str(v.shape) + ' ' + v.dtype.name if isinstance(v, np.ndarray) else repr(v)}"
            for name, v in self.params
        )
        return (
            f"{self.op}({shown}; {self.positional} positional, layout {self.layout}; backward {self.backward_kwargs}"
            f" [{self.algorithm}])"
        )


def in_layout(a: Any, layout: str) -> Any:
    """A copy of array ``a`` with its values, C-contiguous, in Fortran order ("F"), a view of every other column
    of a bigger array ("strided"), or for a 4-d ``a`` ``channels_last``: the kernels must not depend on the memory
    layout of what they are given."""
    if a.ndim == 0:
        return a.copy()  # (np.ascontiguousarray would make it 1-d)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "channels_last" and a.ndim == 4:
        return minidl.contiguous(a, minidl.channels_last)
    if layout == "strided":
        wide = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------------- strategies
@st.composite
def _call(draw, op, params, dtype, seed, backward_kwargs=None, algorithm=None, kink=None):
    """A :class:`Case` of ``params``, the first ``positional`` of them (any number) passed by position, the first
    array and dout in some memory layout."""
    positional = draw(st.integers(0, len(params)))
    layout = draw(st.sampled_from(["C", "C", "F", "strided"]))
    return Case(op, tuple(params), positional, backward_kwargs or {}, dtype, seed, algorithm, kink, layout)


def _pair_or_int(draw, a, b):
    """``a`` when a == b (sometimes as a pair), else the pair (a, b)."""
    return a if a == b and draw(st.booleans()) else (a, b)


BATCH = st.one_of(st.sampled_from([0, 1]), st.integers(2, 24))


@st.composite
def conv_cases(draw, op, algorithm):
    """A convolution that the kernel runs as ``algorithm`` (im2row, winograd, direct, pointwise, grouped, dilated, or
    im2row after padding ``'same'``, which pads one side more than the other when a dilated kernel extent is even)."""
    groups = 1
    if algorithm == "direct":  # 3 x 3, stride 1, no dilation, any padding, at most _DIRECT_MAX_C channels in
        KH = KW = 3
        SH = SW = DH = DW = 1
        PH, PW = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        C, O = draw(st.integers(1, _DIRECT_MAX_C)), draw(st.integers(1, 7))
    elif algorithm == "same":  # stride 1, kernels 1-4 (at least one side even), dilation 1-2, fewer than 8 channels
        KH, KW = draw(st.integers(1, 4)), draw(st.integers(2, 4))
        if draw(st.booleans()):
            KH, KW = KW, KH
        SH = SW = 1
        DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        PH = PW = "same"
        C, O = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    elif algorithm == "winograd":  # 3 x 3, stride 1, no dilation, padding 0-2, >= 8 channels in and out
        KH = KW = 3
        SH = SW = DH = DW = 1
        PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        C, O = draw(st.integers(8, 16)), draw(st.integers(8, 16))
    elif algorithm == "pointwise":  # 1 x 1 without padding, strides 1-3
        KH = KW = 1
        PH = PW = 0
        SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        C, O = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    else:  # im2row (fewer than 8 channels: not Winograd), grouped, depthwise, dilated (im2row, dilation 2-3)
        low = 2 if algorithm == "dilated" else 1
        KH, KW = draw(st.integers(low, 3)), draw(st.integers(low, 3))
        SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        PH, PW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        DH, DW = draw(st.integers(low, 3)), draw(st.integers(low, 3))
        if algorithm == "grouped":  # groups > 1, at least 2 input channels per group (1 is depthwise)
            groups = draw(st.integers(2, 4))
            C, O = groups * draw(st.integers(2, 3)), groups * draw(st.integers(1, 3))
        elif algorithm == "depthwise":  # groups == C, one input channel per group, depth multiplier O / C of 1-3
            groups = C = draw(st.integers(2, 6))
            O = C * draw(st.integers(1, 3))
        else:
            C, O = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    pad_h, pad_w = (DH * (KH - 1), DW * (KW - 1)) if PH == "same" else (2 * PH, 2 * PW)
    if algorithm == "pointwise":  # outputs of _POINTWISE_MIN_OHW or more pixels (stacked products) and fewer (columns)
        OH, OW = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        H, W = (OH - 1) * SH + 1 + draw(st.integers(0, SH - 1)), (OW - 1) * SW + 1 + draw(st.integers(0, SW - 1))
    else:
        H = draw(st.integers(max(1, DH * (KH - 1) + 1 - pad_h), 9))
        W = draw(st.integers(max(1, DW * (KW - 1) + 1 - pad_w), 9))
    if algorithm == "im2row":  # a 1 x 1 without padding runs pointwise
        assume((KH, KW, PH, PW) != (1, 1, 0, 0))
    if algorithm in ("im2row", "same"):  # not a 3 x 3 stride-1 with few channels (those run direct)
        assume((KH, KW, SH, SW, DH, DW) != (3, 3, 1, 1, 1, 1) or C > _DIRECT_MAX_C)
    N = draw(BATCH if algorithm != "pointwise" else st.one_of(st.sampled_from([0, 1]), st.integers(2, 40)))
    dtype, seed = draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    weight = rng.standard_normal((O, C // groups, KH, KW)).astype(dtype)
    bias = rng.standard_normal(O).astype(dtype) if draw(st.booleans()) else None
    params = [
        ("x", x),
        ("weight", weight),
        ("bias", bias),
        ("stride", _pair_or_int(draw, SH, SW)),
        ("padding", "same" if PH == "same" else _pair_or_int(draw, PH, PW)),
        ("dilation", _pair_or_int(draw, DH, DW)),
        ("groups", groups),
    ]
    if op == "conv2d_add_relu":  # the residual: the output's shape, values of both signs around the sum's kink
        g = _conv2d_setup(x, weight, None, params[3][1], params[4][1], params[5][1], groups)
        params.insert(1, ("residual", rng.standard_normal((N, O, g.OH, g.OW)).astype(dtype)))
    backward = draw(st.sampled_from([{}, {"compute_dw": True}, {"compute_dw": False}]))
    kink = {"conv2d_relu": "conv2d", "conv2d_relu6": "conv2d", "conv2d_add_relu": "conv2d_add"}.get(op)
    expected = "im2row" if algorithm in ("dilated", "same") else algorithm
    return draw(_call(op, params, dtype, seed + 1, backward, expected, kink))


@st.composite
def max_pool_cases(draw, fast_path=False):
    """Max pooling over distinct values (no ties); ``fast_path``: the 2 x 2 / stride 2 kernel's geometry."""
    if fast_path:
        KH = KW = SH = SW = 2
        PH = PW = 0
        DH = DW = 1
        H, W = draw(st.integers(2, 9)), draw(st.integers(2, 9))
        ceil_mode = False
    else:
        KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
        DH, DW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 8))
        W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 8))
        ceil_mode = draw(st.booleans())
    assume(pool_output_size(H, KH, SH, PH, DH, ceil_mode) >= 1 and pool_output_size(W, KW, SW, PW, DW, ceil_mode) >= 1)
    N, C = draw(st.integers(0, 3)), draw(st.integers(1, 4))
    dtype, seed = draw(DTYPES), draw(seeds)
    x = distinct_values(np.random.default_rng(seed), (N, C, H, W)).astype(dtype)
    stride = None if (SH, SW) == (KH, KW) and draw(st.booleans()) else _pair_or_int(draw, SH, SW)
    params = [
        ("x", x),
        ("kernel_size", _pair_or_int(draw, KH, KW)),
        ("stride", stride),
        ("padding", "same" if PH == "same" else _pair_or_int(draw, PH, PW)),
        ("dilation", _pair_or_int(draw, DH, DW)),
        ("ceil_mode", ceil_mode),
    ]
    return draw(_call("max_pool2d", params, dtype, seed + 1))


@st.composite
def avg_pool_cases(draw):
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    H, W = draw(st.integers(max(1, KH - 2 * PH), 8)), draw(st.integers(max(1, KW - 2 * PW), 8))
    ceil_mode = draw(st.booleans())
    assume(pool_output_size(H, KH, SH, PH, 1, ceil_mode) >= 1 and pool_output_size(W, KW, SW, PW, 1, ceil_mode) >= 1)
    N, C = draw(st.integers(0, 3)), draw(st.integers(1, 4))
    dtype, seed = draw(DTYPES), draw(seeds)
    x = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    params = [
        ("x", x),
        ("kernel_size", _pair_or_int(draw, KH, KW)),
        ("stride", _pair_or_int(draw, SH, SW)),
        ("padding", "same" if PH == "same" else _pair_or_int(draw, PH, PW)),
        ("ceil_mode", ceil_mode),
        ("count_include_pad", draw(st.booleans())),
        ("divisor_override", draw(st.sampled_from([None, None, 1, 5]))),
    ]
    return draw(_call("avg_pool2d", params, dtype, seed + 1))


def _offset(draw, dtype, offset=None):
    """``offset``, else 0 or a mean far from 0 next to the spread 2 (the kernels' shifted one-pass variance): 100 in
    float64, 10 in float32. (At 100 the inputs' own float32 rounding, 2^-24 100, puts the float32 reference up to ~3e-4
    away from the float64 result on rows of a few values: test_numba_norm.py compares the per-row norms in float32 at
    offset 100 with the float64 result within a float32 error bound, BatchNorm with the float32 reference and
    tolerances to match, and the float32 statistics at 1e4 with float64 ones.)"""
    if offset is not None:
        return offset
    return draw(st.sampled_from([0.0, 10.0 if dtype == np.float32 else 100.0]))


EPS = st.sampled_from([1e-5, 1e-3, 0.1])
MOMENTUM = st.sampled_from([0.0, 0.1, 0.5, 1.0])


def _affine(draw, rng, shape, dtype):
    """(weight, bias), each an array of ``shape`` or None."""
    weight = (rng.standard_normal(shape) + 1).astype(dtype) if draw(st.booleans()) else None
    bias = rng.standard_normal(shape).astype(dtype) if draw(st.booleans()) else None
    return weight, bias


def _batch_norm_params(draw, shape, dtype, seed, offset=None, residual=False):
    """The arguments of a ``batch_norm`` pair (in its order; with ``residual``, ``batch_norm_add_relu``'s: a
    ``channels_last`` residual after the input): training or not, with or without running statistics and affine."""
    training = draw(st.booleans())
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + _offset(draw, dtype, offset)).astype(dtype)
    weight, bias = _affine(draw, rng, (C,), dtype)
    mean = (rng.standard_normal(C) * 3).astype(dtype)
    var = rng.uniform(0.5, 4.0, C).astype(dtype)
    if training and not draw(st.sampled_from([True, True, False])):  # training without running statistics
        mean = var = None
    params = [("input", x), ("running_mean", mean), ("running_var", var), ("weight", weight), ("bias", bias)]
    if residual:
        r = minidl.contiguous(rng.standard_normal(shape).astype(dtype), minidl.channels_last)
        params.insert(1, ("residual", r))
    return [*params, ("training", training), ("momentum", draw(MOMENTUM)), ("eps", draw(EPS))]


@st.composite
def batch_norm_cases(draw, op, dtype=None, offset=None):
    shape = draw(st.sampled_from([(4, 3), (3, 2, 5), (2, 3, 4, 5), (5, 1, 2, 2), (2, 6, 1, 1), (40, 3, 6, 6)]))
    dtype, seed = dtype or draw(DTYPES), draw(seeds)
    params = _batch_norm_params(draw, shape, dtype, seed, offset)
    kink = "batch_norm" if op in ("batch_norm_relu", "batch_norm_relu6") else None
    return draw(_call(op, params, dtype, seed + 1, kink=kink))


@st.composite
def batch_norm_add_relu_cases(draw):
    """relu(batch_norm(x) + residual), x and the residual ``channels_last`` (the inputs the kernel takes; it leaves
    the others to the reference: a declined case in ``test_kernels.py``)."""
    # (C > 1 and H W > 1: else channels_last is C-contiguous too)
    shape = draw(st.sampled_from([(2, 3, 4, 5), (5, 2, 2, 2), (40, 3, 6, 6), (3, 17, 9, 7)]))
    dtype, seed = draw(DTYPES), draw(seeds)
    params = _batch_norm_params(draw, shape, dtype, seed, residual=True)
    positional = draw(st.integers(0, len(params)))
    op = "batch_norm_add_relu"
    return Case(op, tuple(params), positional, {}, dtype, seed + 1, kink="batch_norm_add", layout="channels_last")


@st.composite
def layer_norm_cases(draw, dtype=None, offset=None):
    leading = tuple(draw(st.lists(st.integers(1, 6), min_size=0, max_size=3)))
    normalized = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=3)))
    dtype, seed = dtype or draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(leading + normalized) * 2 + _offset(draw, dtype, offset)).astype(dtype)
    weight, bias = _affine(draw, rng, normalized, dtype)
    forms = [normalized, list(normalized)] + ([normalized[0]] if len(normalized) == 1 else [])  # int for one dim
    params = [("input", x), ("normalized_shape", draw(st.sampled_from(forms))), ("weight", weight), ("bias", bias)]
    params.append(("eps", draw(EPS)))
    return draw(_call("layer_norm", params, dtype, seed + 1))


@st.composite
def group_norm_cases(draw, dtype=None, offset=None):
    N, G, per_group = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.integers(1, 6), min_size=0, max_size=2)))
    dtype, seed = dtype or draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    C = G * per_group
    x = (rng.standard_normal((N, C, *spatial)) * 2 + _offset(draw, dtype, offset)).astype(dtype)
    weight, bias = _affine(draw, rng, (C,), dtype)
    params = [("input", x), ("num_groups", G), ("weight", weight), ("bias", bias), ("eps", draw(EPS))]
    return draw(_call("group_norm", params, dtype, seed + 1))


@st.composite
def instance_norm_cases(draw, dtype=None, offset=None):
    N, C = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    spatial = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=2)))
    assume(math.prod(spatial) > 1)
    dtype, seed = dtype or draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C, *spatial)) * 2 + _offset(draw, dtype, offset)).astype(dtype)
    weight, bias = _affine(draw, rng, (C,), dtype)
    mean, var = (rng.standard_normal(C)).astype(dtype), rng.uniform(0.5, 2.0, C).astype(dtype)
    if draw(st.booleans()):  # without running statistics (both, as PyTorch asks)
        mean = var = None
    params = [
        ("input", x),
        ("running_mean", mean),
        ("running_var", var),
        ("weight", weight),
        ("bias", bias),
        ("use_input_stats", True),
        ("momentum", draw(MOMENTUM)),
        ("eps", draw(EPS)),
    ]
    return draw(_call("instance_norm", params, dtype, seed + 1))


def _activation_input(draw, rng, dtype):
    """Normal values (scale 1 or 8) of a batch-like or a flat shape (up to 3 chunks of the flat kernels), with
    :data:`SPECIAL` values in some."""
    shapes = st.sampled_from([(3, 4, 5, 6), (2, 7), (1,), (), (2, 0, 3)])  # () and empty ones too
    shape = draw(st.one_of(shapes, st.integers(1, 150_000).map(lambda n: (n,))))
    x = np.asarray(rng.standard_normal(shape) * draw(st.sampled_from([1.0, 8.0])), dtype=dtype)
    if draw(st.booleans()) and x.size >= len(SPECIAL):
        x.reshape(-1)[rng.choice(x.size, len(SPECIAL), replace=False)] = SPECIAL
    return x


#: elementwise op -> strategy of its hyperparameters (name, value) after x
HYPERPARAMETERS = {
    "relu": st.just(()),
    "leaky_relu": st.tuples(st.tuples(st.just("negative_slope"), st.floats(-2.0, 2.0))),
    "hardtanh": st.tuples(
        st.tuples(st.just("min_val"), st.floats(-3.0, 0.0)), st.tuples(st.just("max_val"), st.floats(0.0, 7.0))
    ),
    "hardswish": st.just(()),
    "sigmoid": st.just(()),
    "tanh": st.just(()),
    "elu": st.tuples(st.tuples(st.just("alpha"), st.floats(0.1, 2.0))),
    "silu": st.just(()),
    "gelu": st.tuples(st.tuples(st.just("approximate"), st.sampled_from(["none", "tanh"]))),
    "softplus": st.tuples(
        st.tuples(st.just("beta"), st.floats(0.25, 4.0)), st.tuples(st.just("threshold"), st.floats(1.0, 30.0))
    ),
    "mish": st.just(()),
}


@st.composite
def elementwise_cases(draw, op):
    dtype, seed = draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    x = _activation_input(draw, rng, dtype)
    if op in ("add", "add_relu"):
        b = np.asarray(rng.standard_normal(x.shape) * 2, dtype=dtype)
        return draw(_call(op, [("a", x), ("b", b)], dtype, seed + 1))
    return draw(_call(op, [("x", x), *draw(HYPERPARAMETERS[op])], dtype, seed + 1))


@st.composite
def softmax_cases(draw):
    """Rows of 1 to 300 values under 0 to 3 leading dimensions (one task of the kernel, or several: more than
    _ROW_CHUNK values), ``dim`` given as -1 or as the last index, :data:`SPECIAL` values in some (a NaN or +inf
    makes its row NaN, a -inf gets 0) and rows all -inf."""
    dtype, seed = draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 5), (4, 3, 2), (300,)]))
    D = draw(st.sampled_from([1, 2, 7, 65, 300]))
    x = np.asarray(rng.standard_normal((*lead, D)) * draw(st.sampled_from([1.0, 8.0])), dtype=dtype)
    if draw(st.booleans()) and x.size >= len(SPECIAL):
        x.reshape(-1)[rng.choice(x.size, len(SPECIAL), replace=False)] = SPECIAL
    if draw(st.booleans()) and x.ndim > 1:
        x[(0,) * (x.ndim - 1)] = -np.inf
    dim = draw(st.sampled_from([-1, x.ndim - 1]))
    return draw(_call("softmax", [("x", x), ("dim", dim)], dtype, seed + 1))


@st.composite
def attention_cases(draw):
    """Queries, keys and values under 0 to 2 leading (batch, head) dimensions, L and S from 1 (one query, one key)
    to 65, several tasks of the kernel for the bigger ones; the default scale or another; attn_mask None, dropout_p 0
    and is_causal False passed by position or keyword (the cases with a mask, dropout or grouped heads are the
    reference's: the declined cases)."""
    dtype, seed = draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 4), (16, 4)]))
    L, S = draw(st.sampled_from([1, 5, 65])), draw(st.sampled_from([1, 7, 65]))
    E, Ev = draw(st.sampled_from([1, 4, 32])), draw(st.sampled_from([1, 3, 32]))
    spread = draw(st.sampled_from([1.0, 3.0]))
    q, k, v = (
        np.asarray(rng.standard_normal((*lead, n, d)) * spread, dtype=dtype) for n, d in ((L, E), (S, E), (S, Ev))
    )
    params = [("query", q), ("key", k), ("value", v), ("attn_mask", None), ("dropout_p", 0.0), ("is_causal", False)]
    params.append(("scale", draw(st.sampled_from([None, 0.5, 2.0]))))
    return draw(_call("scaled_dot_product_attention", params, dtype, seed + 1))


@st.composite
def linear_cases(draw):
    """x of 1-3 leading dimensions (a single vector, an empty batch, and more rows than one task of the kernel,
    _LINEAR_MIN_ROWS), weights of more input or output features than one task's columns (_LINEAR_COLUMNS), with or
    without a bias; the backward with or without dW and db (frozen parameters). Fixed cases of several blocks:
    ``test_numba_linear.py``."""
    dtype, seed = draw(DTYPES), draw(seeds)
    rng = np.random.default_rng(seed)
    lead = draw(st.sampled_from([(), (0,), (1,), (5,), (3, 7), (2, 3, 4), (300,), (2, 150)]))
    in_features = draw(st.one_of(st.integers(1, 40), st.just(130)))
    out_features = draw(st.sampled_from([1, 3, 10, 64, 65, 130]))
    x = np.asarray(rng.standard_normal((*lead, in_features)), dtype=dtype)
    w = np.asarray(rng.standard_normal((out_features, in_features)), dtype=dtype)
    b = np.asarray(rng.standard_normal(out_features), dtype=dtype) if draw(st.booleans()) else None
    grads = {"weight_grad": draw(st.booleans()), "bias_grad": draw(st.booleans())}
    return draw(_call("linear", [("x", x), ("weight", w), ("bias", b)], dtype, seed + 1, grads))


@st.composite
def adaptive_avg_pool_cases(draw):
    """Global pooling, blocks (OH divides H, OW divides W) and uneven bins (the reference's matrices)."""
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["global", "blocks", "bins"]))
    if kind == "global":
        size = draw(st.sampled_from([1, (1, 1), (1, None)])) if W == 1 else draw(st.sampled_from([1, (1, 1)]))
    elif kind == "blocks":
        size = (draw(st.sampled_from([d for d in range(1, H + 1) if H % d == 0])),
                draw(st.sampled_from([d for d in range(1, W + 1) if W % d == 0])))  # fmt: skip
    else:
        size = (draw(st.integers(1, H + 2)), draw(st.one_of(st.none(), st.integers(1, W + 2))))
    N, C = draw(st.integers(0, 3)), draw(st.integers(1, 40))
    dtype, seed = draw(DTYPES), draw(seeds)
    x = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    return draw(_call("adaptive_avg_pool2d", [("x", x), ("output_size", size)], dtype, seed + 1))


#: case id -> strategy of Cases. Every op of the Numba backend's table has at least one (see
#: test_every_kernel_of_the_table_has_cases); a convolution has one per algorithm.
CASES: dict[str, Any] = {
    **{
        f"conv2d-{a}": conv_cases("conv2d", a)
        for a in ("im2row", "winograd", "direct", "pointwise", "grouped", "depthwise", "dilated", "same")
    },
    **{
        f"{op}-{a}": conv_cases(op, a)
        for op in ("conv2d_relu", "conv2d_relu6", "conv2d_add_relu")
        for a in ("im2row", "winograd", "direct", "pointwise", "depthwise", "dilated", "same")
    },
    "max_pool2d": max_pool_cases(),
    "max_pool2d-2x2": max_pool_cases(fast_path=True),
    "avg_pool2d": avg_pool_cases(),
    "adaptive_avg_pool2d": adaptive_avg_pool_cases(),
    "batch_norm": batch_norm_cases("batch_norm"),
    "batch_norm_relu": batch_norm_cases("batch_norm_relu"),
    "batch_norm_relu6": batch_norm_cases("batch_norm_relu6"),
    "batch_norm_add_relu": batch_norm_add_relu_cases(),
    "layer_norm": layer_norm_cases(),
    "group_norm": group_norm_cases(),
    "instance_norm": instance_norm_cases(),
    **{op: elementwise_cases(op) for op in ("add", "add_relu", *HYPERPARAMETERS)},
    "softmax": softmax_cases(),
    "scaled_dot_product_attention": attention_cases(),
    "linear": linear_cases(),
}


def case_op(case_id: str) -> str:
    return case_id.split("-")[0]
