"""Seeded randomness: every random draw in minidl comes from a ``numpy.random.Generator`` held here.

``minidl.manual_seed(0)`` makes parameter initialization, dropout masks, data shuffling and augmentation
reproducible. The legacy global ``numpy.random`` state is never touched.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

_generator: np.random.Generator = np.random.default_rng()
_seed: int | None = None
_local = threading.local()  # .generator: a per-thread override set by use_generator (DataLoader batches)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed minidl's global generator and return it, like ``torch.manual_seed``.

    Afterwards parameter initialization, dropout masks, DataLoader shuffling and augmentation repeat exactly.

    Args:
        seed: a non-negative int.

    Examples:
        >>> import minidl
        >>> a = minidl.manual_seed(0).normal()
        >>> b = minidl.manual_seed(0).normal()
        >>> a == b
        True
    """
    global _generator, _seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed expects a non-negative int, got {seed}")
    _seed = int(seed)
    _generator = np.random.default_rng(_seed)
    return _generator


def initial_seed() -> int | None:
    """The seed last given to :func:`manual_seed` (None if it was never called)."""
    return _seed


def default_generator() -> np.random.Generator:
    """The generator layers, initializers and transforms draw from: this thread's override (see
    :func:`use_generator`) if one is set, else the global one that :func:`manual_seed` reseeds."""
    override = getattr(_local, "generator", None)
    return _generator if override is None else override


@contextlib.contextmanager
def use_generator(generator: np.random.Generator) -> Iterator[np.random.Generator]:
    """Inside the block, in the calling thread only, :func:`default_generator` returns ``generator``.

    The DataLoader uses it to give each batch its own seeded generator, in the main thread, worker threads and
    worker processes alike, so augmentation is reproducible whatever the number and kind of workers.
    """
    saved = getattr(_local, "generator", None)
    _local.generator = generator
    try:
        yield generator
    finally:
        _local.generator = saved


def get_rng_state() -> dict[str, Any]:
    """The global generator's state as plain data (for checkpoints)."""
    return _generator.bit_generator.state


# The PCG64 state (NumPy's default bit generator): each field and the ints it may hold, [low, high)
_PCG64_FIELDS = {("state", "state"): 2**128, ("state", "inc"): 2**128, ("has_uint32",): 2, ("uinteger",): 2**32}
_PCG64_FORM = (
    "{'bit_generator': 'PCG64', 'state': {'state': int in [0, 2**128), 'inc': int in [0, 2**128)}, "
    "'has_uint32': 0 or 1, 'uinteger': int in [0, 2**32)}"
)


def _state_problem(state: Any, template: dict[str, Any]) -> str | None:
    """What is wrong with ``state`` compared to ``template`` (a state of the same bit generator), or None."""
    if not isinstance(state, dict):
        return f"got a value of type {type(state).__name__}, not a dict"
    if state.get("bit_generator") != template["bit_generator"]:
        got = state.get("bit_generator")
        return f"got bit_generator {got!r:.60}, but minidl's generator is {template['bit_generator']!r}"
    if template["bit_generator"] != "PCG64":
        return None  # another bit generator (set through numpy): NumPy's own checks below
    if set(state) != set(template) or not isinstance(state["state"], dict) or set(state["state"]) != {"state", "inc"}:
        return f"got the keys {_keys(state)}, expected {_keys(template)}"
    for field, high in _PCG64_FIELDS.items():
        value = state[field[0]] if len(field) == 1 else state[field[0]][field[1]]
        name = "".join(f"[{k!r}]" for k in field)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            return f"state{name} is a {type(value).__name__} ({value!r:.60}), expected an int"
        if not 0 <= int(value) < high:
            return f"state{name} is {int(value)}, outside [0, {high})"
    return None


def _keys(state: dict[str, Any]) -> Any:
    return {k: _keys(v) if isinstance(v, dict) else "..." for k, v in state.items()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state returned by :func:`get_rng_state` into the global generator.

    The state is checked before anything changes; a state of another bit generator, a missing or extra key, or a
    value of the wrong type or range raises a ``ValueError`` (``TypeError`` when it is not a dict) that names the
    field, what was expected and what was given.

    Examples:
        >>> import minidl
        >>> state = minidl.get_rng_state()
        >>> a = minidl.default_generator().random()
        >>> minidl.set_rng_state(state)
        >>> minidl.default_generator().random() == a
        True
    """
    template = _generator.bit_generator.state
    form = _PCG64_FORM if template["bit_generator"] == "PCG64" else f"a {template['bit_generator']} state"
    problem = _state_problem(state, template)
    if problem is not None:
        error = TypeError if not isinstance(state, dict) else ValueError
        raise error(f"set_rng_state: {problem}; expected a state as get_rng_state() returns: {form}")
    try:
        _generator.bit_generator.state = {k: dict(v) if isinstance(v, dict) else v for k, v in state.items()}
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise ValueError(
            f"set_rng_state: NumPy refused the state ({type(err).__name__}: {err}); expected {form}"
        ) from None


def fork_rng(seed: int) -> contextlib.AbstractContextManager[np.random.Generator]:
    """Inside the block :func:`default_generator` is a fresh generator seeded with ``seed`` (in this thread);
    afterwards the previous one is back, its state untouched."""
    return use_generator(np.random.default_rng(seed))
