"""Anomaly detection: name the first module whose output or gradient holds nan or inf (PyTorch's
``torch.autograd.set_detect_anomaly`` / ``detect_anomaly``).

**The NaN policy.** minidl, like PyTorch, lets nan and inf flow through the layers: no layer checks its values, so
one overflow turns every later activation, the loss and every gradient into nan. The training loop
(:func:`minidl.train.fit`) stops with a ``FloatingPointError`` on the first non-finite loss. To find *where* the
first nan or inf appeared, turn anomaly detection on: every module call then checks its output, and every module
backward the gradient it returns (and its parameters' gradients), and the first that is not finite raises a
``FloatingPointError`` naming the module by its place in the model (``features.3 (Conv2d(...))``), the pass
(forward or backward) and how many values are nan or inf. The innermost module reports first, so the named module
is the one that produced them (or, when its input was already non-finite, the message says so).

* ``with minidl.detect_anomaly(): ...`` turns it on inside the block.
* ``minidl.set_detect_anomaly(True)`` turns it on from now on (``False`` turns it off); used as ``with
  minidl.set_detect_anomaly(mode): ...`` it restores the previous mode at the end of the block.

Off (the default) it costs one flag test per module call. On, it costs a pass over every output and gradient,
and ``backward`` of every Module class runs through a checking wrapper (installed on the classes when the mode
is switched on, removed when it is switched off): use it to debug, not to train.

Examples:
    >>> import numpy as np
    >>> import minidl
    >>> from minidl import nn
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> model[0].weight.data[0, 0] = np.nan  # one bad weight
    >>> with minidl.detect_anomaly():
    ...     model(np.ones((1, 2), np.float32))
    Traceback (most recent call last):
    ...
    FloatingPointError: detect_anomaly: the forward output of 0 (Linear(...)) holds 1 non-finite values (1 nan, 0 inf)
    out of 2 (shape (1, 2)); its inputs held no nan or inf, so this module made them
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from minidl.backend import get_array_module

__all__ = ["detect_anomaly", "is_anomaly_enabled", "set_detect_anomaly"]

_enabled = False
_wrapped: dict[type, Callable[..., Any]] = {}  # Module class -> its own backward, while the mode is on


class _BackwardCalls(threading.local):
    def __init__(self) -> None:
        self.calls: list[Any] = []  # the module backward calls running now, outermost first


_backward_calls = _BackwardCalls()


def is_anomaly_enabled() -> bool:
    """True while anomaly detection is on (inside :func:`detect_anomaly`, or after ``set_detect_anomaly(True)``)."""
    return _enabled


def _set(mode: bool) -> None:
    global _enabled
    _enabled = mode
    if mode:
        from minidl.nn.module import Module  # (not at the top: minidl.nn.module imports this file)

        classes, seen = [Module], set()
        while classes:
            cls = classes.pop()
            if cls not in seen:
                seen.add(cls)
                _watch(cls)
                classes.extend(cls.__subclasses__())
    else:
        for cls, backward in _wrapped.items():
            cls.backward = backward
        _wrapped.clear()


def _check_mode(mode: Any) -> bool:
    if not isinstance(mode, bool):
        raise TypeError(f"set_detect_anomaly(mode) expects a bool, got {mode!r} ({type(mode).__name__})")
    return mode


class set_detect_anomaly:  # noqa: N801  (PyTorch's name: a function to call, or a context manager)
    """Turn anomaly detection on or off now; as a context manager, restore the previous mode on exit.

    Args:
        mode: True to check every module's output and gradient, False (the default state) to check nothing.
    """

    def __init__(self, mode: bool) -> None:
        self.previous = _enabled
        _set(_check_mode(mode))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        _set(self.previous)


class detect_anomaly:  # noqa: N801  (PyTorch's name)
    """``with minidl.detect_anomaly(): ...`` checks every module's output and gradient inside the block."""

    def __enter__(self) -> None:
        self.previous = _enabled
        _set(True)

    def __exit__(self, *exc: object) -> None:
        _set(self.previous)


# ---------------------------------------------------------------------- the checks (only run while the mode is on)
def _watch(cls: type) -> None:
    """Wrap the ``backward`` that ``cls`` (and each class it inherits from) defines with the gradient check."""
    for klass in cls.__mro__:
        if "backward" in klass.__dict__ and klass not in _wrapped:
            original = klass.__dict__["backward"]
            _wrapped[klass] = original
            klass.backward = _checked_backward(original)


def _checked_backward(backward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(backward)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls = _backward_calls.calls
        calls.append(self)
        try:
            grad = backward(self, *args, **kwargs)
            if _enabled:
                _check_backward(self, grad, args, calls[0])
        finally:
            calls.pop()
        return grad

    return checked


def _count(value: Any) -> tuple[int, int, int] | None:
    """``(nan count, inf count, size)`` of a floating array or a float, or None for anything else."""
    if isinstance(value, float):
        return int(math.isnan(value)), int(math.isinf(value)), 1
    if not hasattr(value, "dtype") or not hasattr(value, "shape") or not np.issubdtype(value.dtype, np.floating):
        return None
    xp = get_array_module(value)
    if bool(xp.isfinite(value).all()):
        return 0, 0, int(value.size)
    return int(xp.isnan(value).sum()), int(xp.isinf(value).sum()), int(value.size)


def _bad(value: Any) -> int:
    """How many values of ``value`` (an array, a float, or a tuple/list of them) are nan or inf."""
    if isinstance(value, (tuple, list)):
        return sum(_bad(v) for v in value)
    counts = _count(value)
    return 0 if counts is None else counts[0] + counts[1]


def _name(root: Any, module: Any, parameter: str = "") -> str:
    """``module`` as "place in the model (its repr)", e.g. ``"features.3 (Conv2d(...))"``; with ``parameter``, that
    parameter's dotted name in the model, e.g. ``"the parameter features.3.weight (Conv2d(...))"``."""
    where = module._where()
    place = next((name for name, m in root.named_modules() if m is module), "")
    if parameter:
        return f"the parameter {'.'.join(filter(None, (place, parameter)))} ({where})"
    return f"{place} ({where})" if place else where


def _report(what: str, subject: str, value: Any, given: Any, given_name: str, cause: str) -> None:
    """Raise for the first entry of ``value`` (an array, a float, a tuple of them) that is not finite."""
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    for k, item in enumerate(items):
        counts = _count(item)
        if counts is None or counts[0] + counts[1] == 0:
            continue
        nan, inf, size = counts
        label = what if len(items) == 1 else f"{what} (item {k})"
        shape = f"shape {tuple(item.shape)}" if hasattr(item, "shape") else "a float"
        earlier = _bad(given)
        origin = (
            f"its {given_name} already held {earlier} non-finite value(s), so they were made before it"
            if earlier
            else f"its {given_name} held no nan or inf, so {cause}"
        )
        raise FloatingPointError(
            f"detect_anomaly: the {label} of {subject} holds {nan + inf} non-finite values "
            f"({nan} nan, {inf} inf) out of {size} ({shape}); {origin}"
        )


def _check_forward(module: Any, out: Any, args: tuple[Any, ...]) -> None:
    """Called by ``Module.__call__`` after ``forward``, while the mode is on."""
    from minidl.nn._calls import _pass_state

    _watch(type(module))  # (a class defined after the mode was switched on)
    _report("forward output", _name(_pass_state.calls[0], module), out, args, "inputs", "this module made them")


def _check_backward(module: Any, grad: Any, args: tuple[Any, ...], root: Any) -> None:
    """Called by the wrapped ``backward``: the gradient it returns, then its own parameters' gradients."""
    dout = args[0] if args else None
    cause = "its backward made them"
    _report("gradient returned by backward", _name(root, module), grad, dout, "incoming gradient (dout)", cause)
    for name, p in module._parameters.items():
        if p is not None and p.grad is not None:
            _report("gradient", _name(root, module, name), p.grad, dout, "incoming gradient (dout)", cause)
