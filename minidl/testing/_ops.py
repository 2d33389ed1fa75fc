"""The ops :mod:`minidl.testing` knows: for each, how to draw a configuration and the arrays to call it on.

An :class:`OpSpec` describes one functional pair of :mod:`minidl.nn.functional` (and the module built on it):

* ``arrays``: the forward's positional array arguments, in order (``("x", "weight", "bias")``);
* ``grads``: the arrays whose gradients the backward returns, in order (``("x", "weight", "bias")``);
* ``hyper``: the keyword hyperparameters, with the default a candidate gets when its signature lacks one;
* ``configs(fixed)``: a hypothesis strategy of configuration dicts (shape symbols and hyperparameters), with the
  keys of ``fixed`` held at the given values;
* ``inputs(config, rng)``: the float64 arrays for that configuration, drawn away from kinks (ReLU at 0, max-pool
  ties), so that finite differences are meaningful; max-pool also draws ``ties`` configurations, compared with the
  reference only (``gradcheck(config)`` is False for them).

Add an op with :func:`register_op`; the strategies shrink towards the smallest shapes, so a failure is reported
on the smallest configuration that shows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from minidl.testing._hypothesis import strategies

__all__ = ["OpSpec", "get_op", "register_op", "registered_ops"]


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """How to check one op; see the module docstring."""

    name: str
    arrays: tuple[str, ...]
    grads: tuple[str, ...]
    hyper: dict[str, Any]
    configs: Callable[[dict[str, Any]], Any]
    inputs: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]
    state: tuple[str, ...] = ()  # arrays the forward updates in place (BatchNorm's running statistics)
    module: str | None = None  # the minidl.nn class built on the pair
    module_kwargs: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    gradcheck: Callable[[dict[str, Any]], bool] = lambda config: True
    stochastic: bool = False  # compared by properties, not value by value (dropout)


_OPS: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    """Add (or replace) the spec of ``spec.name``."""
    _OPS[spec.name] = spec
    return spec


def registered_ops() -> list[str]:
    """The names :func:`~minidl.testing.check_pair` accepts as ``reference``."""
    return sorted(_OPS)


def get_op(name: str) -> OpSpec:
    if name not in _OPS:
        raise ValueError(f"minidl.testing: no op named {name!r}; the registered ops are {registered_ops()}")
    return _OPS[name]


def _picker(draw: Callable[[Any], Any], fixed: dict[str, Any]) -> Callable[[str, Any], Any]:
    return lambda key, strategy: fixed[key] if key in fixed else draw(strategy)


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], margin: float = 1e-2) -> np.ndarray:
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.copysign(2 * margin, x), x)


def _distinct(rng: np.random.Generator, shape: tuple[int, ...], gap: float = 1e-2) -> np.ndarray:
    n = int(np.prod(shape))
    return rng.permutation((np.arange(n) - n / 2) * gap).reshape(shape)


# ----------------------------------------------------------------------------------------------- linear, relu
def _linear_configs(fixed: dict[str, Any]) -> Any:
    st = strategies()

    @st.composite
    def draw_config(draw: Any) -> dict[str, Any]:
        pick = _picker(draw, fixed)
        return {
            "N": pick("N", st.integers(1, 4)),
            "in_features": pick("in_features", st.integers(1, 5)),
            "out_features": pick("out_features", st.integers(1, 5)),
            "bias": pick("bias", st.booleans()),
        }

    return draw_config()


def _linear_inputs(c: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        "x": rng.standard_normal((c["N"], c["in_features"])),
        "weight": rng.standard_normal((c["out_features"], c["in_features"])),
        "bias": rng.standard_normal(c["out_features"]) if c["bias"] else None,
    }


register_op(
    OpSpec(
        "linear", ("x", "weight", "bias"), ("x", "weight", "bias"), {}, _linear_configs, _linear_inputs,
        module="Linear", module_kwargs=lambda c: {"in_features": c["in_features"], "out_features": c["out_features"],
                                                  "bias": c["bias"]},
    )
)  # fmt: skip


def _elementwise_configs(fixed: dict[str, Any]) -> Any:
    st = strategies()

    @st.composite
    def draw_config(draw: Any) -> dict[str, Any]:
        pick = _picker(draw, fixed)
        return {"shape": pick("shape", st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))}

    return draw_config()


register_op(
    OpSpec(
        "relu", ("x",), ("x",), {}, _elementwise_configs, lambda c, rng: {"x": _away_from_zero(rng, c["shape"])},
        module="ReLU", module_kwargs=lambda c: {},
    )
)  # fmt: skip


# ----------------------------------------------------------------------------------------- softmax cross-entropy
def _cross_entropy_configs(fixed: dict[str, Any]) -> Any:
    st = strategies()

    @st.composite
    def draw_config(draw: Any) -> dict[str, Any]:
        pick = _picker(draw, fixed)
        return {
            "N": pick("N", st.integers(1, 5)),
            "C": pick("C", st.integers(2, 6)),
            "scale": pick("scale", st.sampled_from([1000.0, 10.0, 1.0])),  # 1000 first: exp overflows without max-shift
            "reduction": pick("reduction", st.sampled_from(["mean", "sum"])),
        }

    return draw_config()


def _cross_entropy_inputs(c: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        "logits": c["scale"] * rng.standard_normal((c["N"], c["C"])),
        "target": rng.integers(0, c["C"], size=c["N"]).astype(np.int64),
    }


register_op(
    OpSpec(
        "softmax_cross_entropy", ("logits", "target"), ("logits",), {"reduction": "mean"}, _cross_entropy_configs,
        _cross_entropy_inputs, gradcheck=lambda c: c["scale"] <= 10,  # finite differences of saturated logits are noise
    )
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------- conv2d
def _conv2d_configs(fixed: dict[str, Any]) -> Any:
    st = strategies()

    @st.composite
    def draw_config(draw: Any) -> dict[str, Any]:
        pick = _picker(draw, fixed)
        groups = pick("groups", st.sampled_from([1, 2]))
        KH, KW = pick("KH", st.integers(1, 3)), pick("KW", st.integers(1, 3))
        stride, padding = pick("stride", st.integers(1, 3)), pick("padding", st.integers(0, 2))
        dilation = pick("dilation", st.integers(1, 2))
        low_h = max(1, dilation * (KH - 1) + 1 - 2 * padding)
        low_w = max(1, dilation * (KW - 1) + 1 - 2 * padding)
        return {
            "N": pick("N", st.integers(1, 2)),
            "C": groups * pick("C_per_group", st.integers(1, 2)),
            "H": pick("H", st.integers(low_h, low_h + 4)),
            "W": pick("W", st.integers(low_w, low_w + 4)),
            "O": groups * pick("O_per_group", st.integers(1, 2)),
            "KH": KH,
            "KW": KW,
            "bias": pick("bias", st.booleans()),
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
        }

    return draw_config()


def _conv2d_inputs(c: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        "x": rng.standard_normal((c["N"], c["C"], c["H"], c["W"])),
        "weight": rng.standard_normal((c["O"], c["C"] // c["groups"], c["KH"], c["KW"])),
        "bias": rng.standard_normal(c["O"]) if c["bias"] else None,
    }


register_op(
    OpSpec(
        "conv2d", ("x", "weight", "bias"), ("x", "weight", "bias"),
        {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}, _conv2d_configs, _conv2d_inputs,
        module="Conv2d",
        module_kwargs=lambda c: {
            "in_channels": c["C"], "out_channels": c["O"], "kernel_size": (c["KH"], c["KW"]), "stride": c["stride"],
            "padding": c["padding"], "dilation": c["dilation"], "groups": c["groups"], "bias": c["bias"],
        },
    )
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- pooling
def _pool_configs(dilation: bool, avg: bool) -> Callable[[dict[str, Any]], Any]:
    def configs(fixed: dict[str, Any]) -> Any:
        st = strategies()

        @st.composite
        def draw_config(draw: Any) -> dict[str, Any]:
            pick = _picker(draw, fixed)
            k = pick("kernel_size", st.integers(1, 3))
            d = pick("dilation", st.integers(1, 2)) if dilation else 1
            padding = pick("padding", st.integers(0, k // 2))
            low = max(1, d * (k - 1) + 1 - 2 * padding)
            config = {
                "N": pick("N", st.integers(1, 2)),
                "C": pick("C", st.integers(1, 2)),
                "H": pick("H", st.integers(low, low + 4)),
                "W": pick("W", st.integers(low, low + 4)),
                "kernel_size": k,
                "stride": pick("stride", st.integers(1, 3)),
                "padding": padding,
                "ceil_mode": pick("ceil_mode", st.booleans()),
            }
            if dilation:
                config["dilation"] = d
            if avg:
                config["count_include_pad"] = pick("count_include_pad", st.booleans())
            else:  # inputs with tied maxima (first, as hypothesis starts from the first choice): compared with the
                config["ties"] = pick("ties", st.sampled_from((True, False)))  # reference, not gradchecked
            return config

        # a window wholly in the padding has no value to pool (max: -inf); PyTorch's shapes do not exclude it
        return draw_config().filter(lambda c: not _a_window_in_padding(c, "H") and not _a_window_in_padding(c, "W"))

    return configs


def _a_window_in_padding(c: dict[str, Any], axis: str) -> bool:
    """Whether some window along ``axis`` ("H" or "W") covers only padding."""
    size, k, p, d = c[axis], c["kernel_size"], c["padding"], c.get("dilation", 1)
    s = k if c["stride"] is None else c["stride"]
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if c["ceil_mode"] else span // s) + 1
    if c["ceil_mode"] and (out - 1) * s >= size + p:  # the last window must start inside the input or left padding
        out -= 1
    return any(all(not 0 <= i * s + q * d - p < size for q in range(k)) for i in range(out))


def _pool_inputs(c: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Distinct values (the max, and its gradient, unique: what gradcheck needs); with ``ties``, values drawn from
    {-1, 0, 1}, so windows hold tied maxima (all-equal ones too) and the gradient must go to the first of them,
    as in minidl and PyTorch."""
    shape = (c["N"], c["C"], c["H"], c["W"])
    if c.get("ties"):
        return {"x": rng.integers(-1, 2, shape).astype(np.float64)}
    return {"x": _distinct(rng, shape)}


def _pool_kwargs(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda c: {k: c[k] for k in keys}


_MAX_KEYS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
_AVG_KEYS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
register_op(
    OpSpec(
        "max_pool2d", ("x",), ("x",),
        {"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
        _pool_configs(True, False), _pool_inputs, module="MaxPool2d", module_kwargs=_pool_kwargs(_MAX_KEYS),
        gradcheck=lambda config: not config.get("ties"),  # finite differences are meaningless at a tie
    )
)  # fmt: skip
register_op(
    OpSpec(
        "avg_pool2d", ("x",), ("x",),
        {"kernel_size": 2, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
        _pool_configs(False, True), _pool_inputs, module="AvgPool2d", module_kwargs=_pool_kwargs(_AVG_KEYS),
    )
)  # fmt: skip


# ------------------------------------------------------------------------------------------------- batch norm
def _batch_norm_configs(fixed: dict[str, Any]) -> Any:
    st = strategies()

    @st.composite
    def draw_config(draw: Any) -> dict[str, Any]:
        pick = _picker(draw, fixed)
        return {
            "N": pick("N", st.integers(2, 4)),  # at least two values per channel in training
            "C": pick("C", st.integers(1, 3)),
            "H": pick("H", st.integers(1, 3)),
            "W": pick("W", st.integers(1, 3)),
            "training": pick("training", st.sampled_from([True, False])),  # shrinks towards training
            "momentum": pick("momentum", st.sampled_from([0.1, 0.5])),
            "eps": pick("eps", st.just(1e-5)),
        }

    return draw_config()


def _batch_norm_inputs(c: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    C = c["C"]
    return {
        "x": 2.0 * rng.standard_normal((c["N"], C, c["H"], c["W"])) + 1.0,
        "running_mean": rng.standard_normal(C),
        "running_var": rng.uniform(0.5, 2.0, C),
        "weight": rng.uniform(0.5, 1.5, C) * rng.choice([-1.0, 1.0], C),
        "bias": rng.standard_normal(C),
    }


register_op(
    OpSpec(
        "batch_norm", ("x", "running_mean", "running_var", "weight", "bias"), ("x", "weight", "bias"),
        {"training": False, "momentum": 0.1, "eps": 1e-5}, _batch_norm_configs, _batch_norm_inputs,
        state=("running_mean", "running_var"), module="BatchNorm2d",
        module_kwargs=lambda c: {"num_features": c["C"], "eps": c["eps"], "momentum": c["momentum"]},
    )
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- dropout
def _dropout_configs(fixed: dict[str, Any]) -> Any:
    st = strategies()

    @st.composite
    def draw_config(draw: Any) -> dict[str, Any]:
        pick = _picker(draw, fixed)
        return {
            "shape": pick("shape", st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)),
            "p": pick("p", st.sampled_from([0.5, 0.25, 0.8, 0.0])),  # shrinks towards the first: a real dropout
            "training": pick("training", st.sampled_from([True, False])),
        }

    return draw_config()


register_op(
    OpSpec(
        "dropout", ("x",), ("x",), {"p": 0.5, "training": True}, _dropout_configs,
        lambda c, rng: {"x": _away_from_zero(rng, c["shape"], 0.1)}, module="Dropout",
        module_kwargs=lambda c: {"p": c["p"]}, stochastic=True,
    )
)  # fmt: skip
