r"""Hyperparameter search: :func:`random_search` and :func:`grid_search`, with successive halving and resume.

The training function is yours; the search only chooses configurations and keeps score:

.. code-block:: python

    def train_fn(config):                      # config: {"lr": 0.0123, "weight_decay": 3e-5, ...}
        model = make_model()
        ...train a few epochs with config["lr"] ...
        return val_loss                        # the score; lower is better (mode="max" for an accuracy)

    space = {"lr": loguniform(1e-4, 1e-1), "weight_decay": loguniform(1e-6, 1e-3), "batch_size": choice([64, 128])}
    result = random_search(train_fn, space, n_trials=20, seed=0, results_path="search.jsonl")
    print(result.table()); result.plot("search.png")
    fine = random_search(train_fn, narrow(space, result.best.config), n_trials=20, seed=1)   # coarse to fine

**Successive halving** (Jamieson and Talwalkar 2016) stops bad trials early. With
``halving=SuccessiveHalving(min_budget=1, max_budget=9, eta=3)`` the budgets are 1, 3, 9 (epochs, say) and
``train_fn(config, budget)`` takes the budget as a second argument. Every trial is first run with budget 1; the best
third (``n // eta``, at least one) is run again with budget 3; the best third of those with budget 9. Each call
should train from scratch for ``budget`` epochs (or continue from a checkpoint you keep per configuration): the
search only compares the scores that come back. A trial's score is the one of its last (largest) budget; only trials
of the final rung compete for :attr:`SearchResult.best`.

**Resume.** With ``results_path`` every call's result is appended to a JSON-lines file (rewritten atomically after
each call, so an interrupted run loses at most the call in progress). Running the same search again with the same
file re-creates the same configurations (from ``seed``, or the grid), takes the scores it finds in the file and calls
``train_fn`` only for the missing ones; a random search without halving may be rerun with a larger ``n_trials`` to add
trials (the first ones are the same). A file written by a different search (another space, seed, grid or halving) is
refused rather than mixed in.

A score that is not finite (a diverged run: NaN, inf) ranks last, and the trial is marked ``"diverged"``; a diverged
trial is never :attr:`SearchResult.best`, which raises a ``ValueError`` when no trial completed with a finite score.
An exception in ``train_fn`` stops the search (what finished is in the results file).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minidl._atomic import atomic_write
from minidl.train.search_space import Dimension, check_space, describe, grid_configs, sample_config

__all__ = ["SearchResult", "SuccessiveHalving", "Trial", "grid_search", "random_search"]


class SuccessiveHalving:
    """Budgets ``min_budget * eta**k`` up to ``max_budget``; after each rung the best ``n // eta`` trials go on.

    Args:
        min_budget: the first rung's budget (e.g. epochs). max_budget: the last's; it must be ``min_budget`` times a
            power of ``eta``. eta: the reduction factor (>= 2). Default: 3.

    Examples:
        >>> SuccessiveHalving(1, 9).budgets
        [1, 3, 9]
    """

    def __init__(self, min_budget: int, max_budget: int, eta: int = 3) -> None:
        for name, v in (("min_budget", min_budget), ("max_budget", max_budget), ("eta", eta)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SuccessiveHalving: {name} must be a positive int, got {v!r}")
        if eta < 2:
            raise ValueError(f"SuccessiveHalving: eta must be at least 2, got {eta}")
        budgets = [min_budget]
        while budgets[-1] < max_budget:
            budgets.append(budgets[-1] * eta)
        if budgets[-1] != max_budget:
            raise ValueError(
                f"SuccessiveHalving: max_budget must be min_budget times a power of eta ({budgets[:-1]} for "
                f"min_budget={min_budget}, eta={eta}), got {max_budget}"
            )
        self.min_budget, self.max_budget, self.eta, self.budgets = min_budget, max_budget, eta, budgets

    def __repr__(self) -> str:
        return f"SuccessiveHalving(min_budget={self.min_budget}, max_budget={self.max_budget}, eta={self.eta})"


@dataclass
class Trial:
    """One configuration's outcome: ``status`` is ``"completed"`` (ran with the final budget), ``"stopped"``
    (dropped by successive halving after ``budget``) or ``"diverged"`` (a non-finite score). ``time``: seconds over
    all its calls (those of this run; resumed calls count their recorded time)."""

    trial: int
    config: dict[str, Any]
    score: float
    budget: int | None
    status: str
    time: float


@dataclass
class SearchResult:
    """The trials of a search, the best one, a table and a plot.

    Attributes:
        trials: one :class:`Trial` per configuration, in order. records: every call ``{"trial", "config", "budget",
            "score", "time"}``. space: the space searched. mode: ``"min"`` or ``"max"``.
    """

    trials: list[Trial]
    records: list[dict[str, Any]] = field(repr=False)
    space: dict[str, Any] = field(repr=False)
    mode: str = "min"

    def _key(self, trial: Trial) -> tuple[int, float, int]:
        finite = math.isfinite(trial.score)
        rung = -1 if trial.budget is None else trial.budget
        return (-rung, (trial.score if self.mode == "min" else -trial.score) if finite else math.inf, trial.trial)

    def ranked(self) -> list[Trial]:
        """The trials best first: the furthest rung first, then by score (non-finite last), then by trial number."""
        return sorted(self.trials, key=self._key)

    def _best(self) -> Trial | None:
        return next((t for t in self.ranked() if t.status == "completed"), None)

    @property
    def best(self) -> Trial:
        """The best completed trial (a :class:`Trial`; ``.config`` is its configuration): the best score among the
        trials that ran with the final budget and returned a finite score.

        Raises:
            ValueError: no trial completed with a finite score (every one diverged, or was stopped before).
        """
        best = self._best()
        if best is None:
            diverged = sum(t.status == "diverged" for t in self.trials)
            stopped = sum(t.status == "stopped" for t in self.trials)
            counts = f"{diverged} diverged" + (f", {stopped} stopped by successive halving" if stopped else "")
            raise ValueError(
                f"SearchResult.best: no trial completed with a finite score ({counts}); result.table() lists every "
                "trial's status and score"
            )
        return best

    def table(self, top: int | None = None) -> str:
        """A plain-text table of the trials, best first (``top`` rows at most)."""
        names = list(self.space)
        rows = [["rank", "trial", *names, "budget", "score", "status", "time"]]
        for rank, t in enumerate(self.ranked()[:top], start=1):
            values = [_fmt(t.config.get(n)) for n in names]
            budget = "-" if t.budget is None else str(t.budget)
            rows.append([str(rank), str(t.trial), *values, budget, _fmt(t.score), t.status, f"{t.time:.1f}s"])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])

    def plot(self, path: str | os.PathLike[str] | None = None, dpi: int = 120) -> Any:
        """The score against each searched hyperparameter, one panel each (log x for ``loguniform``; categories
        for ``choice``); with halving one colour per budget a trial reached (its score is that budget's), the
        best one starred (no star when no trial completed with a finite score; diverged trials are not drawn).

        Returns:
            ``path`` as a ``Path`` when given, else the matplotlib Figure.
        """
        from minidl.train.plots import _figure, _write

        names = [n for n, d in self.space.items() if isinstance(d, Dimension)]
        fig = _figure("SearchResult.plot", (3.2 * max(1, len(names)), 3.0))
        axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
        best = self._best()
        for ax, name in zip(axes, names, strict=False):
            dim = self.space[name]
            categories = getattr(dim, "values", None)
            shown = [t for t in self.trials if math.isfinite(t.score)]
            budgets = sorted({t.budget for t in shown}, key=lambda b: -1 if b is None else b)
            for k, budget in enumerate(budgets):  # a trial's score is that of its last budget: one colour per budget
                group = [t for t in shown if t.budget == budget]
                label = "score" if budget is None else f"budget {budget}"
                xs, ys = [_position(t.config[name], categories) for t in group], [t.score for t in group]
                ax.scatter(xs, ys, color=f"C{k}", s=18, label=label)
            if best is not None:
                ax.scatter(
                    [_position(best.config[name], categories)],
                    [best.score],
                    marker="*",
                    s=150,
                    color="C3",
                    zorder=3,
                    label="best",
                )
            if getattr(dim, "log", False):
                ax.set_xscale("log")
            if categories is not None:
                ax.set_xticks(range(len(categories)), [str(c) for c in categories])
            ax.set_xlabel(name)
        axes[0].set_ylabel(f"score ({'lower' if self.mode == 'min' else 'higher'} is better)")
        if axes[0].get_legend_handles_labels()[0]:  # nothing to label when every trial diverged
            axes[0].legend()
        return _write(fig, path, dpi) if path is not None else fig


def _position(value: Any, categories: list[Any] | None) -> Any:
    """Where ``value`` goes on the x axis: its index among a ``choice``'s values, else itself."""
    return categories.index(value) if categories is not None and value in categories else value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _accepts_budget(where: str, train_fn: Callable[..., Any]) -> None:
    try:
        inspect.signature(train_fn).bind({}, 1)
    except TypeError:
        raise TypeError(
            f"{where}: with halving, train_fn is called as train_fn(config, budget); {train_fn!r:.80} does not "
            "take a second argument"
        ) from None
    except ValueError:  # a builtin without a signature: let the call itself tell
        pass


class _Run:
    """The bookkeeping of one search: the cache of recorded calls, the results file, the printing."""

    def __init__(self, where: str, header: dict[str, Any], path: Any, verbose: bool, mode: str) -> None:
        self.where, self.header, self.verbose, self.mode = where, header, verbose, mode
        self.path = None if path is None else Path(path)
        self.records: list[dict[str, Any]] = []
        self.cache: dict[tuple[int, int | None], dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            entries = [json.loads(line) for line in lines]
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.where}: {self.path} is not a search results file (invalid JSON: {err})") from None
        if not entries or not isinstance(entries[0], dict) or entries[0].get("search") != self.header["search"]:
            raise ValueError(f"{self.where}: {self.path} is not the results file of a {self.header['search']}")
        if entries[0] != self.header:
            diff = sorted(k for k in set(entries[0]) | set(self.header) if entries[0].get(k) != self.header.get(k))
            theirs = {k: entries[0].get(k) for k in diff}
            ours = {k: self.header.get(k) for k in diff}
            raise ValueError(
                f"{self.where}: {self.path} was written by a different search (the file has {theirs!r:.200}, this "
                f"search {ours!r:.200}); pass another results_path or delete the file to start afresh"
            )
        for number, entry in enumerate(entries[1:], start=2):
            if not isinstance(entry, dict) or not {"trial", "config", "budget", "score", "time"} <= set(entry):
                raise ValueError(
                    f"{self.where}: {self.path} line {number} is not a call record (expected an object with 'trial', "
                    f"'config', 'budget', 'score' and 'time'), got {entry!r:.120}"
                )
            self.cache[(entry["trial"], entry["budget"])] = entry

    def _save(self) -> None:
        if self.path is None:
            return
        done = {(r["trial"], r["budget"]) for r in self.records}
        lines = [json.dumps(self.header)] + [json.dumps(r) for r in self.records]
        lines += [json.dumps(r) for key, r in self.cache.items() if key not in done]  # kept until this run gets there
        atomic_write(self.path, ("\n".join(lines) + "\n").encode("utf-8"), self.where)

    def call(self, train_fn: Callable[..., Any], trial: int, total: int, config: dict[str, Any], budget: Any) -> float:
        recorded = self.cache.get((trial, budget))
        if recorded is not None:
            if recorded["config"] != config:
                raise ValueError(
                    f"{self.where}: {self.path} records trial {trial} with the config {recorded['config']!r:.120}, "
                    f"but this search gives {config!r:.120}; pass another results_path or delete the file"
                )
            self.records.append(recorded)
            self._print(trial, total, config, budget, _score_of(recorded["score"]), "from the results file")
            return _score_of(recorded["score"])
        start = time.perf_counter()
        value = train_fn(config) if budget is None else train_fn(config, budget)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self.where}: train_fn must return a number (the score), got {type(value).__name__}")
        score = float(value)
        record = {"trial": trial, "config": config, "budget": budget, "time": time.perf_counter() - start}
        record["score"] = score if math.isfinite(score) else repr(score)  # JSON has no nan or inf
        self.records.append(record)
        self._save()
        self._print(trial, total, config, budget, score, f"{record['time']:.1f}s")
        return score

    def _print(self, trial: int, total: int, config: dict[str, Any], budget: Any, score: float, note: str) -> None:
        if self.verbose:
            settings = ", ".join(f"{k}={_fmt(v)}" for k, v in config.items())
            at = "" if budget is None else f" budget {budget}"
            print(f"{self.where}: trial {trial + 1}/{total}{at} ({settings}): score {score:.4g} ({note})")


def _score_of(value: Any) -> float:
    return float(value)  # a float, or "nan"/"inf"/"-inf" as written by repr


def _ranked_for_mode(scores: dict[int, float], mode: str) -> list[int]:
    def key(i: int) -> tuple[float, int]:
        s = scores[i]
        return ((s if mode == "min" else -s) if math.isfinite(s) else math.inf, i)

    return sorted(scores, key=key)


def _run(
    where: str,
    train_fn: Callable[..., Any],
    space: dict[str, Any],
    configs: list[dict[str, Any]],
    header: dict[str, Any],
    results_path: Any,
    halving: SuccessiveHalving | None,
    mode: str,
    verbose: bool,
) -> SearchResult:
    if not callable(train_fn):
        raise TypeError(f"{where}: train_fn must be a function train_fn(config) -> score, got {train_fn!r:.80}")
    if mode not in ("min", "max"):
        raise ValueError(f"{where}: mode must be 'min' (a loss) or 'max' (an accuracy), got {mode!r}")
    if halving is not None and not isinstance(halving, SuccessiveHalving):
        raise TypeError(f"{where}: halving must be a SuccessiveHalving(min_budget, max_budget, eta) or None")
    if halving is not None:
        _accepts_budget(where, train_fn)
    run = _Run(where, header, results_path, verbose, mode)
    times = [0.0] * len(configs)
    scores: dict[int, float] = {}
    reached: dict[int, Any] = {}
    alive = list(range(len(configs)))
    budgets: list[Any] = [None] if halving is None else halving.budgets
    for rung, budget in enumerate(budgets):
        scores_now = {}
        for i in alive:
            scores_now[i] = run.call(train_fn, i, len(configs), configs[i], budget)
            scores[i], reached[i] = scores_now[i], budget
            times[i] += float(run.records[-1]["time"])
        if halving is not None and rung < len(budgets) - 1:
            alive = sorted(_ranked_for_mode(scores_now, mode)[: max(1, len(alive) // halving.eta)])
    final = budgets[-1]
    trials = []
    for i, config in enumerate(configs):
        if not math.isfinite(scores[i]):
            status = "diverged"
        else:
            status = "completed" if reached[i] == final else "stopped"
        trials.append(Trial(i, config, scores[i], reached[i], status, times[i]))
    return SearchResult(trials, run.records, space, mode)


def random_search(
    train_fn: Callable[..., Any],
    space: Mapping[str, Any],
    n_trials: int,
    seed: int = 0,
    results_path: str | os.PathLike[str] | None = None,
    halving: SuccessiveHalving | None = None,
    mode: str = "min",
    verbose: bool = True,
) -> SearchResult:
    """Try ``n_trials`` configurations drawn at random from ``space`` (see the module docstring).

    Args:
        train_fn: ``train_fn(config) -> score`` (``train_fn(config, budget)`` with ``halving``).
        space: ``{name: loguniform(...) | uniform(...) | choice([...]) | randint(...) | constant}``
            (:mod:`minidl.train.search_space`).
        n_trials: how many configurations.
        seed: the seed of the configurations' generator (independent of :func:`minidl.manual_seed`). Default: 0.
        results_path: a JSON-lines file to record every call in and resume from. Default: None.
        halving: a :class:`SuccessiveHalving`, or None to run every trial once. Default: None.
        mode: ``"min"`` (the score is a loss) or ``"max"`` (an accuracy). Default: "min".
        verbose: print one line per call. Default: True.

    Returns:
        A :class:`SearchResult`.

    Examples:
        >>> from minidl.train.search_space import loguniform
        >>> result = random_search(lambda c: (c["x"] - 0.1) ** 2, {"x": loguniform(1e-3, 10)}, 30, verbose=False)
        >>> round(result.best.config["x"], 1)
        0.1
    """
    where = "random_search"
    space = check_space(where, space)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"{where}: n_trials must be a positive int, got {n_trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{where}: seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng(seed)
    configs = [sample_config(space, rng) for _ in range(n_trials)]
    header = {"search": where, "space": describe(space), "seed": seed, "halving": repr(halving)}
    if halving is not None:  # the rungs depend on the number of trials; without halving a rerun may add trials
        header["n_trials"] = n_trials
    return _run(where, train_fn, space, configs, header, results_path, halving, mode, verbose)


def grid_search(
    train_fn: Callable[..., Any],
    space: Mapping[str, Any],
    num: int | Mapping[str, int] | None = None,
    results_path: str | os.PathLike[str] | None = None,
    halving: SuccessiveHalving | None = None,
    mode: str = "min",
    verbose: bool = True,
) -> SearchResult:
    """Try every combination of the dimensions' grid values (see :func:`~minidl.train.search_space.grid_configs`).

    A continuous dimension (``loguniform``, ``uniform``) needs ``num`` points (log-spaced for ``loguniform``) or its
    values as a ``choice``. Other arguments as in :func:`random_search`.

    Examples:
        >>> from minidl.train.search_space import choice
        >>> result = grid_search(lambda c: c["a"] * c["b"], {"a": choice([1, 2]), "b": choice([3, -1])}, verbose=False)
        >>> [t.config for t in result.trials], result.best.config
        ([{'a': 1, 'b': 3}, {'a': 1, 'b': -1}, {'a': 2, 'b': 3}, {'a': 2, 'b': -1}], {'a': 2, 'b': -1})
    """
    where = "grid_search"
    space = check_space(where, space)
    configs = grid_configs(space, num)
    header = {"search": where, "space": describe(space), "num": num, "n_trials": len(configs), "halving": repr(halving)}
    return _run(where, train_fn, space, configs, header, results_path, halving, mode, verbose)
