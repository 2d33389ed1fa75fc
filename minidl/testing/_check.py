"""check_pair and check_layer: run a candidate beside minidl's reference over drawn configurations."""

from __future__ import annotations

import contextlib
import inspect
import os
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import minidl
from minidl import gradcheck as _gradcheck
from minidl.nn import dispatch
from minidl.testing._compare import ConformanceReport, compare, fail
from minidl.testing._hypothesis import run_examples
from minidl.testing._ops import OpSpec, get_op, registered_ops

__all__ = ["check_layer", "check_pair"]


def _name(f: Any) -> str:
    return getattr(f, "__name__", None) or repr(f)


@contextlib.contextmanager
def _reference_mode() -> Iterator[None]:
    """The NumPy backend (the code in the docstrings), float64 by default, saving for backward on."""
    dtype = minidl.get_default_dtype()
    grad = minidl.is_grad_enabled()
    with minidl.use_backend("numpy"):
        minidl.set_default_dtype("float64")
        minidl.set_grad_enabled(True)
        try:
            yield
        finally:
            minidl.set_default_dtype(dtype)
            minidl.set_grad_enabled(grad)


def _accepted(function: Callable[..., Any], names: Any) -> set[str]:
    """The keyword names among ``names`` that ``function`` accepts."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return set(names)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return set(names)
    return {n for n in names if n in params and params[n].kind is not inspect.Parameter.POSITIONAL_ONLY}


def _as_tuple(grads: Any) -> tuple[Any, ...]:
    return grads if isinstance(grads, tuple) else (grads,)


def _copy(a: Any) -> Any:
    return None if a is None else np.array(a, copy=True)


def _call(function: str, config: dict[str, Any], f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``f(*args, **kwargs)``, with any exception but NotImplementedError (a stub: it says so itself) turned into
    a ConformanceError naming ``function``."""
    try:
        return f(*args, **kwargs)
    except (AssertionError, NotImplementedError):
        raise
    except Exception as err:
        frames = traceback.extract_tb(err.__traceback__)[1:]  # [0] is this function
        last = frames[-1] if frames else None
        where = f" (in {last.name}, {os.path.basename(last.filename)}:{last.lineno})" if last else ""
        raise fail(function, "raised", config, f"{type(err).__name__}: {err}{where}") from err


def _positive_examples(where: str, max_examples: Any) -> None:
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise ValueError(f"{where}: max_examples must be a positive int, got {max_examples!r}")


def _unchanged_inputs(function: str, config: dict[str, Any], given: dict[str, Any], original: dict[str, Any]) -> None:
    """A ConformanceError when the forward changed one of the arrays it was given (``given``, after the call)."""
    for name, array in given.items():
        before = original[name]
        if before is not None and not np.array_equal(np.asarray(array), before, equal_nan=True):
            raise fail(function, f"modified its input {name} in place;", config, "a forward must leave its inputs "
                       "unchanged (the caller and the backward still need them): compute into a new array, e.g. "
                       "np.maximum(x, 0) rather than x[x < 0] = 0")  # fmt: skip


def _same_dtype(function: str, what: str, config: dict[str, Any], candidate: Any, reference: Any) -> None:
    """A ConformanceError when an array result (ndim > 0) has another dtype than the reference's."""
    ref_dtype = getattr(reference, "dtype", None)
    if ref_dtype is None or np.ndim(reference) == 0 or candidate is None:
        return
    dtype = np.asarray(candidate).dtype
    if dtype != ref_dtype:
        raise fail(function, what, config, f"has dtype {dtype}, but the reference returns {ref_dtype} for float64 "
                   "inputs: compute in the inputs' dtype (no float32 casts)")  # fmt: skip


def _upstream(rng: np.random.Generator, out: Any) -> Any:
    return rng.standard_normal(np.shape(out)) if np.ndim(out) else float(rng.standard_normal())


def check_pair(
    candidate_forward: Callable[..., Any],
    candidate_backward: Callable[..., Any] | None,
    reference: str = "conv2d",
    *,
    max_examples: int = 20,
    seed: int = 0,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    gradcheck: bool = True,
    fixed: dict[str, Any] | None = None,
    check_state: bool = True,
) -> ConformanceReport:
    """Check a forward/backward pair against minidl's reference pair ``F.<reference>_forward/_backward``.

    Over ``max_examples`` configurations drawn by hypothesis (shapes and the op's hyperparameters), in float64 on
    the NumPy backend, it compares the candidate's forward output, the state it updates in place (BatchNorm's
    running statistics) and every gradient its backward returns with the reference's, then runs
    :func:`minidl.gradcheck.check_function` on the candidate. Dropout, being random, is checked by its properties:
    each output is 0 or ``x / (1 - p)``, the backward uses the same mask, about ``1 - p`` of the values are kept,
    and eval mode is the identity.

    A hyperparameter the candidate's signature lacks (``dilation``, ``groups``, ``ceil_mode``, ...) is held at its
    default. The arrays are passed positionally in the reference's order, the hyperparameters by keyword.

    Args:
        candidate_forward: ``forward(*arrays, **hyperparameters) -> (out, cache)``.
        candidate_backward: ``backward(dout, cache) -> gradients`` in the reference's order, or None to check the
            forward pass only (its output and the state it updates).
        reference: the op's name (:func:`~minidl.testing.registered_ops`). Default: ``"conv2d"``.
        max_examples: how many configurations hypothesis tries (more on a failure, to shrink it). Default: 20.
        seed: hypothesis's seed, so a run repeats exactly. Default: 0.
        atol, rtol: passed where ``|candidate - reference| <= atol + rtol |reference|``.
        gradcheck: also run the numerical gradient check on the candidate. Default: True.
        fixed: configuration keys held at a value, e.g. ``{"bias": True}`` for a candidate that needs a bias.
        check_state: compare the state the forward updates in place (BatchNorm's running statistics). False when
            grading a backward apart from its forward, so that a bug in the running statistics (which the backward
            never reads) is not charged to it. Default: True.

    Returns:
        A :class:`~minidl.testing.ConformanceReport` (how many configurations, the largest errors).

    Raises:
        ConformanceError: (an AssertionError) naming the candidate function, the smallest failing configuration,
            which output or gradient differed, and the worst absolute and relative errors.
    """
    _positive_examples("check_pair", max_examples)
    spec = get_op(reference)
    accepted = _accepted(candidate_forward, spec.hyper)
    held = {k: v for k, v in spec.hyper.items() if k not in accepted}
    held.update(fixed or {})
    ref_forward, ref_backward = dispatch.reference_pair(spec.name)
    fwd_name = _name(candidate_forward)
    bwd_name = "" if candidate_backward is None else _name(candidate_backward)
    report = ConformanceReport(f"{spec.name}_forward/_backward", f"{fwd_name}/{bwd_name}".rstrip("/"))

    def one(config: dict[str, Any], data_seed: int) -> None:
        rng = np.random.default_rng(data_seed)
        arrays = spec.inputs(config, rng)
        ref_kwargs = {k: config[k] for k in spec.hyper}
        kwargs = {k: v for k, v in ref_kwargs.items() if k in accepted}
        ref_args = [_copy(arrays[n]) for n in spec.arrays]
        cand_args = [_copy(arrays[n]) for n in spec.arrays]
        with _reference_mode():
            with dispatch.using_reference_pairs(), minidl.fork_rng(data_seed):
                ref_out, ref_cache = ref_forward(*ref_args, **ref_kwargs)
            with minidl.fork_rng(data_seed):
                result = _call(fwd_name, config, candidate_forward, *cand_args, **kwargs)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise fail(fwd_name, "the return value", config, f"should be a pair (out, cache), got {type(result)}")
            out, cache = result
            inputs = {n: a for n, a in zip(spec.arrays, cand_args, strict=True) if n not in spec.state}
            _unchanged_inputs(fwd_name, config, inputs, arrays)
            if not spec.stochastic:
                compare(fwd_name, "the output", config, out, ref_out, atol=atol, rtol=rtol, report=report)
                _same_dtype(fwd_name, "the output", config, out, ref_out)
            for name in spec.state if check_state else ():
                i = spec.arrays.index(name)
                compare(fwd_name, f"{name} after the forward pass", config, cand_args[i], ref_args[i], atol=atol,
                        rtol=rtol, report=report)  # fmt: skip
            if candidate_backward is None:  # the forward pass only
                if spec.stochastic:
                    _dropout_properties(fwd_name, bwd_name, config, arrays["x"], out, None, None)
                    _dropout_rate(fwd_name, config, lambda x: candidate_forward(x, **kwargs)[0], data_seed)
                report.examples += 1
                return
            dout = _upstream(rng, ref_out)
            with dispatch.using_reference_pairs():
                ref_grads = _as_tuple(ref_backward(_copy(dout), ref_cache))
            grads = _as_tuple(_call(bwd_name, config, candidate_backward, _copy(dout), cache))
            if spec.stochastic:
                _dropout_properties(fwd_name, bwd_name, config, arrays["x"], out, dout, grads[0])
                saved: list[Any] = []

                def big_forward(x: Any) -> Any:
                    out, cache = candidate_forward(x, **kwargs)
                    saved.append(cache)
                    return out

                def big_backward(dout: Any) -> Any:
                    return _as_tuple(candidate_backward(dout, saved[-1]))[0]

                _dropout_rate(fwd_name, config, big_forward, data_seed, (bwd_name, big_backward))
            if len(grads) != len(ref_grads):
                raise fail(bwd_name, "the return value", config, f"should hold {len(ref_grads)} gradients "
                           f"({', '.join(spec.grads)}), got {len(grads)}")  # fmt: skip
            if not spec.stochastic:
                for name, g, ref_g in zip(spec.grads, grads, ref_grads, strict=True):
                    compare(bwd_name, f"the gradient of {name}", config, g, ref_g, atol=atol, rtol=rtol, report=report)
                    _same_dtype(bwd_name, f"the gradient of {name}", config, g, ref_g)
            if gradcheck and not spec.stochastic and spec.gradcheck(config):
                _pair_gradcheck(spec, config, arrays, kwargs, candidate_forward, candidate_backward, data_seed)
        report.examples += 1

    run_examples(one, spec.configs(held), max_examples=max_examples, seed=seed)
    return report


def _pair_gradcheck(
    spec: OpSpec,
    config: dict[str, Any],
    arrays: dict[str, Any],
    kwargs: dict[str, Any],
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    seed: int,
) -> None:
    """gradcheck the candidate with respect to each array it returns a gradient for."""
    diff = [n for n in spec.grads if arrays.get(n) is not None]

    def fwd(*values: Any) -> Any:
        full = {n: _copy(arrays[n]) for n in spec.arrays}  # fresh state (running statistics) on every call
        full.update(zip(diff, values, strict=True))
        return forward(*[full[n] for n in spec.arrays], **kwargs)

    def bwd(dout: Any, cache: Any) -> Any:
        by_name = dict(zip(spec.grads, _as_tuple(backward(dout, cache)), strict=False))
        return tuple(by_name.get(n) for n in diff)

    inputs = [_copy(arrays[n]) for n in diff]
    result = _gradcheck.check_function(fwd, bwd, inputs, names=diff, seed=seed, raise_on_failure=False)
    if not result.passed:
        worst = result.worst
        what = (
            f"is wrong: {worst.problem}"
            if worst.problem
            else (
                f"disagrees with finite differences of {_name(forward)} (gradcheck): worst absolute error "
                f"{worst.max_abs_error:.3e}, worst relative error {worst.max_rel_error:.3e}"
            )
        )
        raise fail(
            _name(backward), f"the gradient of {worst.name}", config, f"{what}\n{result}",
            worst.max_abs_error, worst.max_rel_error,
        )  # fmt: skip


def _dropout_properties(fwd: str, bwd: str, config: dict[str, Any], x: Any, out: Any, dout: Any, dx: Any) -> None:
    """What every correct inverted dropout satisfies, whatever random numbers it draws."""
    p, training = config["p"], config["training"]
    out = np.asarray(out, dtype=np.float64)
    if out.shape != x.shape:
        raise fail(fwd, "the output", config, f"has shape {out.shape}, but the input has shape {x.shape}")
    if dx is not None:
        dx = np.asarray(dx, dtype=np.float64)
        if dx.shape != x.shape:
            raise fail(bwd, "the gradient of x", config, f"has shape {dx.shape}, but the input has shape {x.shape}")
    if not training or p == 0:
        compare(fwd, "the output (the identity when not training or p = 0)", config, out, x, atol=0, rtol=0)
        if dx is not None:
            compare(bwd, "the gradient of x (the identity when not training or p = 0)", config, dx, dout, atol=0,
                    rtol=0)  # fmt: skip
        return
    kept = out != 0  # the inputs are away from 0, so a zero output is a dropped unit
    expected = np.where(kept, x / (1 - p), 0.0)
    compare(fwd, "the output (kept values must be x / (1 - p))", config, out, expected, atol=1e-12, rtol=1e-12)
    if dx is not None:
        compare(bwd, "the gradient of x (dout * mask / (1 - p), the forward's mask)", config, dx,
            np.where(kept, dout / (1 - p), 0.0), atol=1e-12, rtol=1e-12)  # fmt: skip


def _dropout_rate(
    function: str,
    config: dict[str, Any],
    forward: Callable[[Any], Any],
    seed: int,
    backward: tuple[str, Callable[[Any], Any]] | None = None,
) -> None:
    """About 1 - p of 20,000 values are kept (6 standard deviations of slack); with ``backward`` (its name and a
    function of dout, called after forward), its gradient on that input is dout * mask / (1 - p)."""
    p = config["p"]
    if not config["training"] or p == 0:
        return
    n = 20_000
    with minidl.fork_rng(seed + 1):
        out = np.asarray(forward(np.ones((100, n // 100))))
    if backward is not None:
        dout = np.random.default_rng(seed).standard_normal(out.shape)
        dx = backward[1](dout)
        compare(backward[0], "the gradient of x (dout * mask / (1 - p), the forward's mask) on a 100x200 input", config,
                dx, np.where(out != 0, dout / (1 - p), 0.0), atol=1e-12, rtol=1e-12)  # fmt: skip
    rate = float((out != 0).mean())
    slack = 6 * np.sqrt(p * (1 - p) / n)
    if abs(rate - (1 - p)) > slack:
        raise fail(function, "the fraction of kept values", config,
                   f"is {rate:.3f} on a 100x200 input of ones, expected {1 - p:.3f} +- {slack:.3f} (p={p} is the "
                   "probability of dropping a value)")  # fmt: skip


def _spec_for_module(reference: Any) -> OpSpec:
    name = reference if isinstance(reference, str) else getattr(reference, "__name__", repr(reference))
    for op in registered_ops():
        spec = get_op(op)
        if spec.module == name:
            return spec
    modules = sorted(get_op(op).module for op in registered_ops() if get_op(op).module)
    raise ValueError(f"check_layer: no checks registered for the module {name}; known modules: {modules}")


def _default_dtype(name: str, config: dict[str, Any], module: Any) -> None:
    """The candidate's parameters and buffers must follow minidl.get_default_dtype() (float64 in the check), as the
    reference's do; a module that hard-codes float32 would pass every comparison by luck and fail gradcheck."""
    expected = np.dtype(minidl.get_default_dtype())
    for key, value in module.state_dict().items():
        dtype = getattr(value, "dtype", None)
        if dtype is not None and np.issubdtype(dtype, np.floating) and dtype != expected:
            raise fail(name, key, config, f"has dtype {dtype}, but parameters and buffers must follow "
                       f"minidl.get_default_dtype() ({expected} during the check): create them with "
                       "dtype=minidl.get_default_dtype(), not a fixed np.float32")  # fmt: skip


def check_layer(
    candidate_module_class: type,
    reference: Any = None,
    *,
    max_examples: int = 20,
    seed: int = 0,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    gradcheck: bool = True,
    fixed: dict[str, Any] | None = None,
) -> ConformanceReport:
    """Check a Module class against minidl's (``reference``, e.g. ``nn.Conv2d``; default: ``minidl.nn.Conv2d``).

    Each drawn configuration builds both classes with the same PyTorch-style arguments
    (``Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)``), copies the
    reference's parameters and buffers into the candidate with ``load_state_dict`` (so the names must be
    PyTorch's: ``weight``, ``bias``, ``running_mean``, ...), sets train or eval mode, then compares the output,
    the buffers after forward, the input gradient and every parameter's ``.grad``, and runs
    :func:`minidl.gradcheck.check_module` on the candidate. Arguments as in :func:`check_pair`.
    """
    from minidl import nn

    _positive_examples("check_layer", max_examples)
    reference = nn.Conv2d if reference is None else reference
    spec = _spec_for_module(reference)
    ref_class = getattr(nn, spec.module)  # type: ignore[arg-type]
    held = dict(fixed or {})
    name = _name(candidate_module_class)
    report = ConformanceReport(ref_class.__name__, name)

    def one(config: dict[str, Any], data_seed: int) -> None:
        rng = np.random.default_rng(data_seed)
        arrays = spec.inputs(config, rng)
        kwargs = spec.module_kwargs(config)  # type: ignore[misc]
        training = bool(config.get("training", True))
        with _reference_mode():
            ref = ref_class(**kwargs)
            cand = _call(name, config, candidate_module_class, **kwargs)
            state = ref.state_dict()
            for key, value in state.items():
                if arrays.get(key) is not None:
                    value[...] = arrays[key]
            try:
                cand.load_state_dict({k: np.array(v, copy=True) for k, v in state.items()})
            except Exception as err:
                raise fail(name, "the parameters and buffers", config, f"must be named and shaped as in "
                           f"{ref_class.__name__}: {err}") from err  # fmt: skip
            ref.train(training)
            cand.train(training)
            _default_dtype(name, config, cand)
            x = arrays[spec.arrays[0]]
            x_given = _copy(x)
            with dispatch.using_reference_pairs(), minidl.fork_rng(data_seed):
                ref_out = ref(_copy(x))
            with minidl.fork_rng(data_seed):
                out = _call(f"{name}.forward", config, cand, x_given)
            _unchanged_inputs(f"{name}.forward", config, {"x": x_given}, {"x": x})
            if not spec.stochastic:  # the forward first: a wrong output is reported as such, not as its backward
                compare(f"{name}.forward", "the output", config, out, ref_out, atol=atol, rtol=rtol, report=report)
                _same_dtype(f"{name}.forward", "the output", config, out, ref_out)
                cand_state = cand.state_dict()
                for key in spec.state:
                    compare(f"{name}.forward", f"{key} after the forward pass", config, cand_state[key], state[key],
                            atol=atol, rtol=rtol, report=report)  # fmt: skip
            dout = _upstream(rng, ref_out)
            with dispatch.using_reference_pairs():
                ref_dx = ref.backward(_copy(dout))
            dx = _call(f"{name}.backward", config, cand.backward, _copy(dout))
            if spec.stochastic:
                _dropout_properties(f"{name}.forward", f"{name}.backward", {**config, "training": training}, x, out,
                                    dout, dx)  # fmt: skip
                _dropout_rate(f"{name}.forward", config, cand, data_seed)
                report.examples += 1
                return
            compare(f"{name}.backward", "the gradient of the input", config, dx, ref_dx, atol=atol, rtol=rtol,
                    report=report)  # fmt: skip
            cand_params = dict(cand.named_parameters())
            for key, p in ref.named_parameters():
                compare(f"{name}.backward", f"{key}.grad", config, cand_params[key].grad, p.grad, atol=atol,
                        rtol=rtol, report=report)  # fmt: skip
            if gradcheck and spec.gradcheck(config):
                cand.zero_grad()
                result = _gradcheck.check_module(cand, _copy(x), seed=data_seed, raise_on_failure=False)
                if not result.passed:
                    worst = result.worst
                    what = (
                        f"is wrong: {worst.problem}"
                        if worst.problem
                        else f"disagrees with finite differences of {name}.forward"
                    )
                    raise fail(
                        f"{name}.backward", f"the gradient of {worst.name}", config, f"{what} (gradcheck)\n{result}",
                        worst.max_abs_error, worst.max_rel_error,
                    )  # fmt: skip
        report.examples += 1

    run_examples(one, spec.configs(held), max_examples=max_examples, seed=seed)
    return report
