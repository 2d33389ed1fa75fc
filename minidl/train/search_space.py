"""Search spaces for :func:`~minidl.train.random_search` and :func:`~minidl.train.grid_search`.

A space is a dict ``name -> dimension``; a dimension is one of

* :class:`loguniform` ``(low, high)``: ``exp(uniform(log low, log high))`` -- learning rates, weight decay: every
  factor of 10 gets the same share of the trials (Bergstra and Bengio 2012 explain why random beats grid);
* :class:`uniform` ``(low, high)``: a float in ``[low, high)`` -- dropout, momentum;
* :class:`choice` ``([a, b, ...])``: one of the values, equally likely -- optimizer name, batch size, width;
* :class:`randint` ``(low, high)``: an int in ``[low, high)`` (NumPy's and Ray Tune's convention);
* a plain number, string, bool or None: a constant, passed to every trial as is.

The names follow Ray Tune and Hyperopt (``loguniform``, ``uniform``, ``choice``, ``randint``). :func:`narrow` is the
"coarse to fine" step: a space centred on the best configuration of a coarse search, ``factor`` times narrower.

Examples:
    >>> import numpy as np
    >>> space = {"lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5), "width": choice([32, 64])}
    >>> config = sample_config(space, np.random.default_rng(0))
    >>> sorted(config), 1e-4 <= config["lr"] < 1e-1
    (['dropout', 'lr', 'width'], True)
    >>> narrow(space, {"lr": 1e-3, "dropout": 0.2, "width": 64}, factor=10)["lr"]
    loguniform(0.000316228, 0.00316228)
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Dimension",
    "choice",
    "grid_configs",
    "loguniform",
    "narrow",
    "randint",
    "sample_config",
    "uniform",
]

_CONSTANT_TYPES = (int, float, str, bool, type(None))


def _number(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__} {value!r:.60}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value!r}")
    return float(value)


class Dimension(abc.ABC):
    """One axis of a search space: how to sample it, its grid, and whether to plot it on a log scale."""

    log = False

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn from ``rng``."""

    @abc.abstractmethod
    def grid(self, name: str, num: int | None) -> list[Any]:
        """The grid values (``num`` points for a continuous range; ``[]`` when it needs ``num`` and has none)."""


class loguniform(Dimension):  # noqa: N801 - the name users know from Ray Tune and SciPy
    """A float whose logarithm is uniform in ``[log low, log high)``; ``0 < low < high``."""

    log = True

    def __init__(self, low: float, high: float) -> None:
        self.low = _number("loguniform", "low", low)
        self.high = _number("loguniform", "high", high)
        if not 0 < self.low < self.high:
            raise ValueError(f"loguniform: expected 0 < low < high, got low={low!r}, high={high!r}")

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def grid(self, name: str, num: int | None) -> list[float]:
        return [float(v) for v in np.geomspace(self.low, self.high, num)] if num else []

    def __repr__(self) -> str:
        return f"loguniform({self.low:.6g}, {self.high:.6g})"


class uniform(Dimension):  # noqa: N801
    """A float uniform in ``[low, high)``; ``low < high``."""

    def __init__(self, low: float, high: float) -> None:
        self.low = _number("uniform", "low", low)
        self.high = _number("uniform", "high", high)
        if not self.low < self.high:
            raise ValueError(f"uniform: expected low < high, got low={low!r}, high={high!r}")

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def grid(self, name: str, num: int | None) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, num)] if num else []

    def __repr__(self) -> str:
        return f"uniform({self.low:.6g}, {self.high:.6g})"


class choice(Dimension):  # noqa: N801
    """One of ``values`` (numbers, strings, bools or None), each equally likely; the grid is all of them."""

    def __init__(self, values: Sequence[Any]) -> None:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"choice: expected a non-empty list of values, got {values!r:.80}")
        for v in values:
            if not isinstance(v, (*_CONSTANT_TYPES, np.generic)):
                raise TypeError(
                    f"choice: each value must be a number, string, bool or None (a results file stores it as JSON), "
                    f"got {type(v).__name__} {v!r:.60}"
                )
            if isinstance(v, (float, np.floating)) and not math.isfinite(v):
                raise ValueError(f"choice: each value must be finite (a results file must match it again), got {v!r}")
        self.values = [v.item() if isinstance(v, np.generic) else v for v in values]

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def grid(self, name: str, num: int | None) -> list[Any]:
        return list(self.values)

    def __repr__(self) -> str:
        return f"choice({self.values!r})"


class randint(Dimension):  # noqa: N801
    """An int in ``[low, high)`` (``high`` excluded, as ``numpy.random.Generator.integers``); the grid is all of
    them, or ``num`` evenly spaced ones."""

    def __init__(self, low: int, high: int) -> None:
        for name, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"randint: {name} must be an int, got {type(v).__name__} {v!r:.60}")
        if not low < high:
            raise ValueError(f"randint: expected low < high (high excluded), got low={low!r}, high={high!r}")
        self.low, self.high = int(low), int(high)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high))

    def grid(self, name: str, num: int | None) -> list[int]:
        values = list(range(self.low, self.high))
        if num and num < len(values):
            values = sorted({int(round(v)) for v in np.linspace(self.low, self.high - 1, num)})
        return values

    def __repr__(self) -> str:
        return f"randint({self.low}, {self.high})"


def check_space(where: str, space: Any) -> dict[str, Any]:
    """``space`` as a dict, each dimension checked; a clear error for anything else."""
    if not isinstance(space, Mapping) or not space:
        raise TypeError(f"{where}: space must be a non-empty dict of name -> dimension, got {space!r:.80}")
    for name, dim in space.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: space names must be strings, got {name!r}")
        if isinstance(dim, (list, tuple)):
            raise TypeError(
                f"{where}: space[{name!r}] is a {type(dim).__name__} {dim!r:.60}; write choice({list(dim)!r:.60}) "
                "to search over these values"
            )
        if not isinstance(dim, (Dimension, *_CONSTANT_TYPES, np.generic)):
            raise TypeError(
                f"{where}: space[{name!r}] must be loguniform(...), uniform(...), choice([...]), randint(...) or a "
                f"constant number/string/bool/None, got {type(dim).__name__} {dim!r:.60}"
            )
        if isinstance(dim, (float, np.floating)) and not math.isfinite(dim):
            raise ValueError(f"{where}: space[{name!r}] must be finite (a results file must match it again), got {dim}")
    return dict(space)


def describe(space: Mapping[str, Any]) -> dict[str, str]:
    """``{name: repr(dimension)}``: what a results file records to recognise its space."""
    return {name: repr(dim) for name, dim in space.items()}


def sample_config(space: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One configuration: each dimension sampled in the space's order from ``rng``, constants as they are."""
    check_space("sample_config", space)
    return {
        name: dim.sample(rng) if isinstance(dim, Dimension) else (dim.item() if isinstance(dim, np.generic) else dim)
        for name, dim in space.items()
    }


def grid_configs(space: Mapping[str, Any], num: int | Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Every combination of the dimensions' grid values, the last dimension varying fastest.

    ``choice`` and ``randint`` give their values; ``loguniform`` (log-spaced) and ``uniform`` (evenly spaced) need
    ``num`` points: an int for all of them, or ``{name: points}``.
    """
    where = "grid_search"
    space = check_space(where, space)
    if num is not None and not isinstance(num, Mapping):
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"{where}: num must be a positive int or a dict name -> int, got {num!r}")
    axes = []
    for name, dim in space.items():
        if not isinstance(dim, Dimension):
            axes.append([dim.item() if isinstance(dim, np.generic) else dim])
            continue
        points = num.get(name) if isinstance(num, Mapping) else num
        if points is not None and (isinstance(points, bool) or not isinstance(points, int) or points < 1):
            raise ValueError(f"{where}: num[{name!r}] must be a positive int, got {points!r}")
        values = dim.grid(name, points)
        if not values:
            spacing = "log-spaced" if dim.log else "evenly spaced"
            raise ValueError(
                f"{where}: space[{name!r}] is {dim!r}, a continuous range with no grid; give its values as "
                f"choice([...]) or pass num=5 (or num={{{name!r}: 5}}) for 5 {spacing} points"
            )
        axes.append(values)
    return [dict(zip(space, combo, strict=True)) for combo in itertools.product(*axes)]


def narrow(space: Mapping[str, Any], config: Mapping[str, Any], factor: float = 10.0) -> dict[str, Any]:
    """The "fine" space after a coarse search: each continuous range ``factor`` times narrower, centred on
    ``config`` (on a log scale for ``loguniform``) and kept inside the original range; other dimensions unchanged.

    Args:
        space: the coarse space. config: its best configuration (e.g. ``result.best.config``).
        factor: how much narrower (> 1). Default: 10.
    """
    space = check_space("narrow", space)
    if not (isinstance(factor, (int, float)) and factor > 1):
        raise ValueError(f"narrow: factor must be a number greater than 1, got {factor!r}")
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, (loguniform, uniform)):
            if name not in config:
                raise KeyError(f"narrow: config has no value for {name!r}; expected one of the space's {list(space)}")
            v = float(config[name])
            if isinstance(dim, loguniform):
                half = math.sqrt(factor)
                low, high = max(dim.low, v / half), min(dim.high, v * half)
                out[name] = loguniform(low, high) if low < high else dim
            else:
                half = (dim.high - dim.low) / factor / 2
                low, high = max(dim.low, v - half), min(dim.high, v + half)
                out[name] = uniform(low, high) if low < high else dim
        else:
            out[name] = dim
    return out
