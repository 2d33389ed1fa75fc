r"""Gradient checking: prove a hand-written backward right by comparing it with finite differences.

For a scalar :math:`L(x)` the central difference

.. math:: \frac{\partial L}{\partial x_i} \approx \frac{L(x + \varepsilon e_i) - L(x - \varepsilon e_i)}{2 \varepsilon}

has error :math:`O(\varepsilon^2)`. To check a layer with output :math:`y = f(x, W)` we pick a random upstream
gradient :math:`g` and use :math:`L = \sum y \odot g`: its exact gradient is what ``backward(g)`` must return.
Checks run in float64 (float32 rounding would swamp the :math:`10^{-12}` truncation error).

Two modes:

* ``mode="full"``: one pair of forward passes per element of every input and parameter (exact, slow).
* ``mode="random_direction"``: compare the directional derivative along a few random unit vectors :math:`v`,
  :math:`\langle \nabla L, v \rangle \approx (L(x + \varepsilon v) - L(x - \varepsilon v)) / 2 \varepsilon`
  (two forward passes per direction, whatever the size: use it for big layers).

Examples:
    >>> import numpy as np
    >>> from minidl import gradcheck
    >>> def square_forward(x):
    ...     return x * x, x
    >>> def square_backward(dout, x):
    ...     return 2 * x * dout
    >>> x = np.random.default_rng(0).normal(size=(3, 4))
    >>> gradcheck.check_function(square_forward, square_backward, [x]).passed
    True
    >>> def wrong_backward(dout, x):
    ...     return x * dout  # forgot the 2
    >>> report = gradcheck.check_function(square_forward, wrong_backward, [x], raise_on_failure=False)
    >>> report.passed, report.worst.name
    (False, 'input 0')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl._random import fork_rng
from minidl.backend import get_array_module, to_numpy
from minidl.grad_mode import no_grad

__all__ = [
    "GradcheckEntry",
    "GradcheckError",
    "GradcheckReport",
    "check_function",
    "check_loss",
    "check_module",
    "numerical_gradient",
]


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one; ``.report`` has the details."""

    def __init__(self, report: GradcheckReport) -> None:
        super().__init__(str(report))
        self.report = report


@dataclasses.dataclass
class GradcheckEntry:
    """The comparison for one tensor (an input or a parameter)."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...] | None  # None in random-direction mode: the entries are directions
    analytic: float  # the value at the worst index (or the worst direction)
    numeric: float
    passed: bool
    scale: float | None = None  # least-squares ratio analytic/numeric: 2.0 or -1.0 point at a factor or sign bug
    problem: str | None = None  # what made it fail before any comparison (a gradient of the wrong shape)


@dataclasses.dataclass
class GradcheckReport:
    """Result of a check: one entry per tensor, and whether all passed."""

    entries: list[GradcheckEntry]
    mode: str
    eps: float
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.entries)

    @property
    def worst(self) -> GradcheckEntry:
        """The entry with the largest relative error (failing entries first)."""
        return max(self.entries, key=lambda e: (not e.passed, e.max_rel_error))

    def __str__(self) -> str:
        status = "passed" if self.passed else "FAILED"
        lines = [f"gradcheck ({self.mode}, eps={self.eps:g}, atol={self.atol:g}, rtol={self.rtol:g}): {status}"]
        lines.append(f"  {'tensor':<20} {'shape':<18} {'max abs err':>12} {'max rel err':>12}  ok")
        for e in self.entries:
            lines.append(
                f"  {e.name:<20} {str(e.shape):<18} {e.max_abs_error:>12.3e} {e.max_rel_error:>12.3e}  "
                f"{'yes' if e.passed else 'NO'}"
            )
        if self.entries:
            w = self.worst
            if w.problem is not None:
                lines.append(f"worst: {w.name}: {w.problem}")
            else:
                where = f"at index {w.worst_index}" if w.worst_index is not None else "along a random direction"
                lines.append(
                    f"worst: {w.name}, relative error {w.max_rel_error:.3e} {where}: "
                    f"analytic {w.analytic:.6g} vs numeric {w.numeric:.6g}"
                )
                if not self.passed:
                    lines.extend("hint: " + h for h in _hints(w))
        return "\n".join(lines)


def _hints(e: GradcheckEntry) -> list[str]:
    hints = []
    if e.analytic == 0 and e.numeric != 0:
        hints.append(
            f"the analytic gradient of {e.name} is 0 where it should not be: does backward accumulate into "
            ".grad (or return the input gradient) for this tensor?"
        )
    if e.scale is not None and np.isfinite(e.scale) and abs(e.scale - 1) > 1e-3:
        if abs(e.scale + 1) < 1e-2:
            hints.append("analytic = -numeric everywhere: a sign error in backward")
        elif abs(e.scale) > 1e-6:
            hints.append(
                f"analytic is about {e.scale:.4g} x numeric: a missing or extra constant factor (1/N of a mean, "
                "2 of a square, a stride or a scale?)"
            )
    hints.append(
        "if only a few elements fail, the input may sit at a kink (ReLU at 0, a max-pool tie, |x| at 0) where "
        "the derivative does not exist: draw inputs away from it"
    )
    hints.append("make sure the inputs and parameters are float64, and that forward is deterministic (seeded)")
    return hints


def _failed(name: str, shape: tuple[int, ...], problem: str) -> GradcheckEntry:
    """A failed entry for what made a tensor fail before any comparison (``problem``, which the report prints)."""
    return GradcheckEntry(name, shape, math.inf, math.inf, None, math.nan, math.nan, False, problem=problem)


def _is_array(a: Any) -> bool:
    """A NumPy or backend array (not a Python or NumPy scalar)."""
    return hasattr(a, "shape") and hasattr(a, "flags") and hasattr(a, "dtype") and not isinstance(a, np.generic)


def _require_float64(what: str, a: Any) -> None:
    if not hasattr(a, "dtype") or a.dtype != np.float64:
        dtype = getattr(a, "dtype", type(a).__name__)
        raise TypeError(
            f"gradcheck: {what} has dtype {dtype}; gradient checks need float64 (float32 rounding errors of ~1e-4 "
            "would hide real bugs). Use x.astype(np.float64) for arrays and module.to(np.float64) for layers."
        )


def numerical_gradient(f: Callable[[], float], x: Any, eps: float = 1e-6) -> Any:
    """Central-difference gradient of the scalar ``f()`` with respect to array ``x``, perturbed in place.

    ``f`` takes no arguments and must read ``x`` (which is modified and restored element by element).

    Examples:
        >>> x = np.array([1.0, 2.0, 3.0])
        >>> np.round(numerical_gradient(lambda: float((x ** 2).sum()), x), 6)
        array([2., 4., 6.])
    """
    xp = get_array_module(x)
    grad = xp.zeros(x.shape, dtype=np.float64)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous array it can perturb in place")
    flat_x = x.reshape(-1)
    flat_g = grad.reshape(-1)
    for i in range(x.size):
        old = flat_x[i].item()
        flat_x[i] = old + eps
        plus = f()
        flat_x[i] = old - eps
        minus = f()
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * eps)
    return grad


def _directional(f: Callable[[], float], x: Any, v: Any, eps: float) -> float:
    saved = x.copy()
    x += eps * v
    plus = f()
    x[...] = saved - eps * v
    minus = f()
    x[...] = saved
    return (plus - minus) / (2 * eps)


def _compare(
    name: str,
    analytic: Any,
    targets: Any,
    f: Callable[[], float],
    *,
    mode: str,
    eps: float,
    atol: float,
    rtol: float,
    directions: int,
    rng: np.random.Generator,
) -> GradcheckEntry:
    shape = tuple(targets.shape)
    if analytic is None:
        analytic_host = np.zeros(shape)
    else:
        if tuple(getattr(analytic, "shape", ())) != shape:
            got = getattr(analytic, "shape", type(analytic).__name__)
            return _failed(name, shape, f"backward returned a gradient of shape {got} for {name} of shape {shape}")
        analytic_host = to_numpy(analytic).astype(np.float64)
    if mode == "full":
        numeric = to_numpy(numerical_gradient(f, targets, eps))
        a_vals, n_vals = analytic_host.reshape(-1), numeric.reshape(-1)
    else:
        xp = get_array_module(targets)
        a_list, n_list = [], []
        for _ in range(directions):
            v = rng.standard_normal(shape)
            v /= max(np.linalg.norm(v), 1e-300)
            a_list.append(float((analytic_host * v).sum()))
            n_list.append(_directional(f, targets, xp.asarray(v), eps))
        a_vals, n_vals = np.array(a_list), np.array(n_list)
    abs_err = np.abs(a_vals - n_vals)
    # relative to the larger magnitude, but never to less than atol: tiny values give no meaningful ratio
    rel_err = abs_err / np.maximum(np.maximum(np.abs(a_vals), np.abs(n_vals)), max(atol, 1e-300))
    ok = abs_err <= atol + rtol * np.abs(n_vals)
    if a_vals.size == 0:
        return GradcheckEntry(name, shape, 0.0, 0.0, None, 0.0, 0.0, True)
    # the worst element: failing ones first, then the largest relative error
    worst = int(np.argmax(rel_err + np.where(ok, 0.0, 2.0)))
    denom = float(n_vals @ n_vals)
    scale = float(a_vals @ n_vals) / denom if denom > 0 else None
    index = tuple(int(i) for i in np.unravel_index(worst, shape)) if mode == "full" else None
    return GradcheckEntry(
        name=name,
        shape=shape,
        max_abs_error=float(abs_err.max()),
        max_rel_error=float(rel_err.max()),
        worst_index=index,
        analytic=float(a_vals[worst]),
        numeric=float(n_vals[worst]),
        passed=bool(ok.all()),
        scale=scale,
    )


def _check_mode(mode: str) -> None:
    if mode not in ("full", "random_direction"):
        raise ValueError(f"gradcheck: mode must be 'full' or 'random_direction', got {mode!r}")


def _finish(report: GradcheckReport, raise_on_failure: bool) -> GradcheckReport:
    if raise_on_failure and not report.passed:
        raise GradcheckError(report)
    return report


def check_function(
    forward: Callable[..., tuple[Any, Any]],
    backward: Callable[[Any, Any], Any],
    inputs: Sequence[Any],
    kwargs: dict[str, Any] | None = None,
    *,
    wrt: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    mode: str = "full",
    directions: int = 4,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradcheckReport:
    """Check a functional pair ``forward(*inputs, **kwargs) -> (out, cache)``, ``backward(dout, cache) -> grads``.

    ``grads`` is one array (for a single input) or a tuple (or list) aligned with ``inputs`` (``None`` for an input
    without a gradient, e.g. a missing bias). Forward runs with the global generator reseeded to ``seed`` each time,
    so random ops (dropout) draw the same mask on every call. ``backward`` gets its own copy of ``dout`` (it may work
    in place on it); pass what is not differentiated (targets, masks, hyperparameters) in ``kwargs``.

    Args:
        inputs: the positional arrays (float64); the ones named by ``wrt`` are checked (default: every float64 array
            among them: one that backward returns no gradient for, or None, is compared as a zero gradient, which
            fails wherever the output depends on it). A non-contiguous one is copied first.
        names: names for the report (default ``"input 0"``, ``"input 1"``, ...).
        eps, atol, rtol: step and tolerances: passed where ``|analytic - numeric| <= atol + rtol * |numeric|``.
        mode: ``"full"`` or ``"random_direction"`` (``directions`` random unit vectors per tensor).
        raise_on_failure: raise :class:`GradcheckError` (an AssertionError) with the report when a check fails.

    Returns:
        A :class:`GradcheckReport`; ``print(report)`` shows a table with the worst error per tensor.
    """
    _check_mode(mode)
    kwargs = dict(kwargs or {})
    inputs = [a.copy() if _is_array(a) and not a.flags.c_contiguous else a for a in inputs]  # (perturbed in place)
    rng = np.random.default_rng(seed)

    def run() -> Any:
        with fork_rng(seed):
            return forward(*inputs, **kwargs)

    out, cache = run()
    dout_host = rng.standard_normal(np.shape(out))
    xp = get_array_module(out)
    dout = xp.asarray(dout_host.copy()) if np.ndim(out) else float(dout_host)  # (the loss below reads dout_host)
    grads = backward(dout, cache)
    if isinstance(grads, list):
        grads = tuple(grads)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if wrt is None:
        returned = {i for i, g in enumerate(grads) if g is not None}
        if returned and max(returned) >= len(inputs):
            raise ValueError(
                f"gradcheck: backward returned a gradient at position {max(returned)} for {len(inputs)} inputs (one "
                "per positional input, None for an input without one)"
            )
        floats = {i for i, a in enumerate(inputs) if _is_array(a) and a.dtype == np.float64}
        indices = sorted(returned | floats)
    else:
        indices = list(wrt)

    def loss() -> float:
        y, _ = run()
        return float((to_numpy(y) * dout_host).sum())

    entries = []
    for i in indices:
        missing = i >= len(grads) or grads[i] is None
        if missing and wrt is not None:
            raise ValueError(f"gradcheck: backward returned no gradient for input {i}")
        _require_float64(f"input {i}", inputs[i])
        name = names[i] if names is not None else f"input {i}"
        entries.append(
            _compare(
                name,
                None if missing else grads[i],
                inputs[i],
                loss,
                mode=mode,
                eps=eps,
                atol=atol,
                rtol=rtol,
                directions=directions,
                rng=rng,
            )
        )
    return _finish(GradcheckReport(entries, mode, eps, atol, rtol), raise_on_failure)


def check_module(
    module: Any,
    x: Any,
    *,
    params: bool = True,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    mode: str = "full",
    directions: int = 4,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradcheckReport:
    """Check ``module.backward`` for the input and (with ``params``) every trainable parameter.

    The module and ``x`` must be float64 (``module.to(np.float64)``). Buffers (BatchNorm's running statistics) are
    restored afterwards; forward runs with the global generator reseeded to ``seed`` each time.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, gradcheck
        >>> layer = nn.Linear(3, 2).to(np.float64)
        >>> x = np.random.default_rng(0).normal(size=(4, 3))
        >>> print(gradcheck.check_module(layer, x))  # doctest: +ELLIPSIS
        gradcheck (full, eps=1e-06, atol=1e-05, rtol=0.001): passed
        ...
    """
    _check_mode(mode)
    _require_float64("the input", x)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad] if params else []
    for n, p in named:
        _require_float64(f"parameter {n!r}", p.data)
    saved_buffers = {n: b.copy() for n, b in module.named_buffers()}
    rng = np.random.default_rng(seed)
    x = x.copy()
    try:
        with fork_rng(seed):
            out = module(x)
        dout_host = rng.standard_normal(tuple(out.shape))
        dout = get_array_module(out).asarray(dout_host.copy())  # (backward may work in place on it)
        saved_grads = [p.grad for _, p in named]
        for _, p in named:
            p.grad = None
        dx = module.backward(dout)
        analytic = [p.grad for _, p in named]
        twice = _second_backward(module, x, named, analytic, get_array_module(out).asarray(dout_host.copy()), seed)
        for (_, p), g in zip(named, saved_grads, strict=False):
            p.grad = g

        def loss() -> float:
            with fork_rng(seed), no_grad():
                return float((to_numpy(module(x)) * dout_host).sum())

        kw = dict(mode=mode, eps=eps, atol=atol, rtol=rtol, directions=directions, rng=rng)
        entries = [_compare("input", dx, x, loss, **kw)]
        for (n, p), g in zip(named, analytic, strict=False):
            entries.append(_compare(n, g, p.data, loss, **kw))
        entries.extend(_accumulation_entries(named, analytic, twice))
    finally:
        state = dict(module.named_buffers())
        for n, b in saved_buffers.items():
            state[n][...] = b
    return _finish(GradcheckReport(entries, mode, eps, atol, rtol), raise_on_failure)


def _second_backward(module: Any, x: Any, named: list[Any], first: list[Any], dout: Any, seed: int) -> list[Any]:
    """The parameters' ``.grad`` after a second forward and backward (the same ``dout``) on top of the first's."""
    if not named:
        return []
    with fork_rng(seed):
        module(x)
    for (_, p), g in zip(named, first, strict=True):
        p.grad = None if g is None else g.copy()
    module.backward(dout)
    return [p.grad for _, p in named]


def _accumulation_entries(named: list[Any], first: list[Any], twice: list[Any]) -> list[GradcheckEntry]:
    """A failed entry for each parameter whose second backward replaced ``.grad`` instead of adding to it (PyTorch's
    rule, which lets a step sum the gradients of several losses or micro-batches)."""
    entries = []
    for (n, p), g, g2 in zip(named, first, twice, strict=True):
        if g is None or g2 is None:
            continue
        a, b = to_numpy(g).astype(np.float64), to_numpy(g2).astype(np.float64)
        if not np.allclose(b, 2 * a, rtol=1e-9, atol=1e-12):
            problem = (
                f"a second backward left {n}.grad at {_ratio(b, a)} x the first's gradient instead of 2 x: backward "
                "must add to .grad (p.grad = g if p.grad is None else p.grad + g), not replace it"
            )
            entries.append(_failed(f"{n} (accumulated)", tuple(p.data.shape), problem))
    return entries


def _ratio(b: Any, a: Any) -> str:
    """|b| / |a| as text (how many times the first gradient the accumulated one is)."""
    norm = float(np.linalg.norm(a))
    return f"{float(np.linalg.norm(b)) / norm:.3g}" if norm > 0 else "?"


def check_loss(
    loss_module: Any,
    input: Any,
    target: Any,
    *extra: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    mode: str = "full",
    directions: int = 4,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradcheckReport:
    """Check a loss module: ``loss_module(input, target, *extra)`` and ``loss_module.backward(...)``.

    ``extra`` holds further arguments that are not differentiated (e.g. a teacher's logits for a distillation
    loss). With a scalar reduction ('mean', 'sum') backward is called without arguments; with
    ``reduction='none'`` a random upstream gradient is drawn and passed to it.
    """
    _check_mode(mode)
    _require_float64("the input", input)
    input = input.copy()
    rng = np.random.default_rng(seed)
    out = loss_module(input, target, *extra)
    if np.ndim(out) == 0:
        dout_host = None
        analytic = loss_module.backward()
    else:
        dout_host = rng.standard_normal(np.shape(out))
        analytic = loss_module.backward(get_array_module(out).asarray(dout_host.copy()))

    def loss() -> float:
        with no_grad():
            value = loss_module(input, target, *extra)
        return float(value) if dout_host is None else float((to_numpy(value) * dout_host).sum())

    entry = _compare(
        "input", analytic, input, loss, mode=mode, eps=eps, atol=atol, rtol=rtol, directions=directions, rng=rng
    )
    return _finish(GradcheckReport([entry], mode, eps, atol, rtol), raise_on_failure)
