"""random_search and grid_search: they find the optimum region, enumerate exactly, halve correctly, resume without
rerunning finished trials, and refuse bad spaces with clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from minidl.train import (
    SuccessiveHalving,
    choice,
    grid_search,
    loguniform,
    narrow,
    randint,
    random_search,
    uniform,
)
from minidl.train.search_space import grid_configs, sample_config


def _objective(config):
    """A valley at lr = 1e-2 (on a log scale), dropout = 0.3; "adam" better than "sgd"."""
    penalty = 0.0 if config["opt"] == "adam" else 0.5
    return (math.log10(config["lr"]) + 2) ** 2 + 20 * (config["dropout"] - 0.3) ** 2 + penalty


SPACE = {"lr": loguniform(1e-5, 1e1), "dropout": uniform(0.0, 0.6), "opt": choice(["sgd", "adam"]), "depth": 3}


def test_random_search_finds_the_optimum_region(capsys):
    result = random_search(_objective, SPACE, n_trials=60, seed=0)
    best = result.best
    assert best.status == "completed" and best.config["opt"] == "adam" and best.config["depth"] == 3
    assert 10**-2.7 < best.config["lr"] < 10**-1.3 and abs(best.config["dropout"] - 0.3) < 0.15
    assert best.score == min(t.score for t in result.trials)
    assert len(result.trials) == 60 and len(result.records) == 60
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 60 and lines[0].startswith("random_search: trial 1/60 (lr=")
    # log-uniform: every decade gets about the same share of the trials
    decades = np.histogram([math.log10(t.config["lr"]) for t in result.trials], bins=6, range=(-5, 1))[0]
    assert decades.min() >= 4, decades
    # coarse to fine: a search in the narrowed space does at least as well
    fine = random_search(_objective, narrow(SPACE, best.config, factor=10), n_trials=20, seed=1, verbose=False)
    assert fine.best.score <= best.score + 0.05


def test_random_configs_are_reproducible_from_the_seed():
    a = random_search(_objective, SPACE, 5, seed=3, verbose=False)
    b = random_search(_objective, SPACE, 5, seed=3, verbose=False)
    c = random_search(_objective, SPACE, 5, seed=4, verbose=False)
    assert [t.config for t in a.trials] == [t.config for t in b.trials] != [t.config for t in c.trials]


def test_grid_enumerates_exactly():
    calls = []

    def fn(config):
        calls.append(dict(config))
        return config["lr"] * config["width"]

    space = {"lr": loguniform(1e-3, 1e-1), "width": choice([8, 16]), "layers": randint(1, 3), "act": "relu"}
    result = grid_search(fn, space, num=3, verbose=False)
    lrs = [1e-3, 1e-2, 1e-1]
    expected = [
        {"lr": lr, "width": w, "layers": n, "act": "relu"} for lr in lrs for w in (8, 16) for n in (1, 2)
    ]  # the last dimension varies fastest
    assert len(calls) == 12
    for got, want in zip(calls, expected, strict=True):
        assert got.keys() == want.keys() and got["lr"] == pytest.approx(want["lr"], rel=1e-12)
        assert (got["width"], got["layers"], got["act"]) == (want["width"], want["layers"], want["act"])
    assert result.best.config["width"] == 8 and result.best.config["lr"] == pytest.approx(1e-3)
    assert grid_configs({"p": uniform(0, 1)}, num={"p": 3}) == [{"p": 0.0}, {"p": 0.5}, {"p": 1.0}]
    assert [c["n"] for c in grid_configs({"n": randint(0, 100)}, num=3)] == [0, 50, 99]


def test_grid_of_a_continuous_dimension_needs_points():
    with pytest.raises(
        ValueError,
        match=r"^grid_search: space\['lr'\] is loguniform\(0.0001, 0.1\), a continuous range with no grid; give its "
        r"values as choice\(\[...\]\) or pass num=5 \(or num=\{'lr': 5\}\) for 5 log-spaced points",
    ):
        grid_search(lambda c: 0.0, {"lr": loguniform(1e-4, 1e-1)}, verbose=False)


def test_successive_halving_drops_the_worst_and_raises_the_budget():
    calls = []

    def fn(config, budget):
        calls.append((config["x"], budget))
        return config["x"] / budget  # lower is better; the ranking of x does not change with the budget

    space = {"x": choice(list(range(9, 0, -1)))}  # trial i has x = 9 - i
    result = grid_search(fn, space, halving=SuccessiveHalving(1, 9, eta=3), verbose=False)
    assert SuccessiveHalving(1, 9, eta=3).budgets == [1, 3, 9]
    assert [b for _, b in calls] == [1] * 9 + [3] * 3 + [9]
    assert sorted(x for x, b in calls if b == 3) == [1, 2, 3]  # the best third of rung 0
    assert [x for x, b in calls if b == 9] == [1]
    by_x = {t.config["x"]: t for t in result.trials}
    assert by_x[1].status == "completed" and by_x[1].budget == 9 and by_x[1].score == pytest.approx(1 / 9)
    assert by_x[2].status == "stopped" and by_x[2].budget == 3
    assert by_x[9].status == "stopped" and by_x[9].budget == 1
    assert result.best.config["x"] == 1
    assert "stopped" in result.table()


def test_halving_keeps_the_best_for_mode_max_and_ranks_diverged_trials_last():
    def fn(config, budget):
        return float("nan") if config["x"] == 5 else config["x"] * budget  # accuracy-like: higher is better

    result = grid_search(
        fn, {"x": choice([1, 2, 3, 4, 5])}, halving=SuccessiveHalving(1, 2, eta=2), mode="max", verbose=False
    )
    by_x = {t.config["x"]: t for t in result.trials}
    assert by_x[5].status == "diverged" and by_x[5].budget == 1
    assert by_x[4].status == "completed" and by_x[3].status == "completed" and by_x[2].status == "stopped"
    assert result.best.config["x"] == 4 and result.ranked()[-1].config["x"] == 5


def test_halving_needs_a_budget_argument():
    with pytest.raises(
        TypeError, match=r"^random_search: with halving, train_fn is called as train_fn\(config, budget\)"
    ):
        random_search(lambda config: 0.0, SPACE, 3, halving=SuccessiveHalving(1, 3), verbose=False)
    with pytest.raises(ValueError, match=r"^SuccessiveHalving: max_budget must be min_budget times a power of eta"):
        SuccessiveHalving(1, 10, eta=3)


def test_resume_after_an_interruption_does_not_rerun_finished_trials(tmp_path, capsys):
    path = tmp_path / "search.jsonl"
    calls = []

    def failing_at(n):
        def fn(config, budget):
            if len(calls) == n:
                raise KeyboardInterrupt  # the run is interrupted during call n
            calls.append((json.dumps(config, sort_keys=True), budget))
            return _objective(config) / budget

        return fn

    halving = SuccessiveHalving(1, 4, eta=2)
    with pytest.raises(KeyboardInterrupt):
        random_search(failing_at(10), SPACE, 8, seed=5, results_path=path, halving=halving)
    assert len(calls) == 10 and len(path.read_text().splitlines()) == 1 + 10  # a header and one line per call
    first = list(calls)
    result = random_search(failing_at(-1), SPACE, 8, seed=5, results_path=path, halving=halving)
    assert calls[:10] == first and len(calls) == 8 + 4 + 2  # only the missing calls ran
    assert len(set(calls)) == len(calls)  # no call was made twice
    assert "(from the results file)" in capsys.readouterr().out
    # the resumed result equals an uninterrupted one
    calls.clear()
    fresh = random_search(failing_at(-1), SPACE, 8, seed=5, halving=halving, verbose=False)
    assert [(t.config, t.score, t.budget, t.status) for t in result.trials] == [
        (t.config, t.score, t.budget, t.status) for t in fresh.trials
    ]
    # running again calls nothing; a larger n_trials without halving adds trials
    calls.clear()
    random_search(failing_at(-1), SPACE, 8, seed=5, results_path=path, halving=halving, verbose=False)
    assert calls == []


def test_more_trials_extend_a_finished_search(tmp_path):
    path, calls = tmp_path / "s.jsonl", []

    def fn(config):
        calls.append(config)
        return _objective(config)

    random_search(fn, SPACE, 4, seed=0, results_path=path, verbose=False)
    result = random_search(fn, SPACE, 6, seed=0, results_path=path, verbose=False)
    assert len(calls) == 6 and len(result.trials) == 6  # 4, then the 2 new ones


def test_a_results_file_of_another_search_is_refused(tmp_path):
    path = tmp_path / "s.jsonl"
    random_search(_objective, SPACE, 2, seed=0, results_path=path, verbose=False)
    with pytest.raises(ValueError, match=r"^random_search: .*s\.jsonl was written by a different search \(the file has "
                       r"\{'seed': 0\}, this search \{'seed': 1\}\); pass another results_path"):  # fmt: skip
        random_search(_objective, SPACE, 2, seed=1, results_path=path, verbose=False)
    with pytest.raises(ValueError, match=r"^grid_search: .*s\.jsonl is not the results file of a grid_search"):
        grid_search(_objective, {"lr": choice([1e-3]), "dropout": 0.3, "opt": "adam"}, results_path=path)


def test_a_damaged_results_file_is_named(tmp_path):
    path = tmp_path / "s.jsonl"
    random_search(_objective, SPACE, 2, seed=0, results_path=path, verbose=False)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], '{"trial": 0}', lines[2]]) + "\n")
    with pytest.raises(
        ValueError, match=r"^random_search: .*s\.jsonl line 2 is not a call record \(expected an object"
    ):
        random_search(_objective, SPACE, 2, seed=0, results_path=path, verbose=False)
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(ValueError, match=r"^random_search: .*s\.jsonl is not a search results file \(invalid JSON"):
        random_search(_objective, SPACE, 2, seed=0, results_path=path, verbose=False)


def test_non_finite_scores_are_recorded_and_resumed(tmp_path):
    path = tmp_path / "s.jsonl"
    scores = {0: 1.0, 1: float("inf"), 2: float("nan")}
    result = grid_search(lambda c: scores[c["x"]], {"x": choice([0, 1, 2])}, results_path=path, verbose=False)
    again = grid_search(lambda c: 0.0, {"x": choice([0, 1, 2])}, results_path=path, verbose=False)
    assert [t.status for t in result.trials] == ["completed", "diverged", "diverged"]
    assert [t.status for t in again.trials] == ["completed", "diverged", "diverged"]
    assert again.trials[0].score == 1.0 and math.isinf(again.trials[1].score) and math.isnan(again.trials[2].score)
    assert result.best.config == {"x": 0} and "NaN" not in path.read_text()  # strict JSON: "nan" as a string
    with pytest.raises(ValueError, match=r"^choice: each value must be finite"):
        choice([1.0, float("nan")])


def test_table_and_plot(tmp_path):
    result = random_search(_objective, SPACE, 12, seed=0, verbose=False)
    table = result.table(top=3).splitlines()
    assert table[0].split() == ["rank", "trial", "lr", "dropout", "opt", "depth", "budget", "score", "status", "time"]
    assert len(table) == 2 + 3 and table[2].split()[0] == "1"
    pytest.importorskip("matplotlib")
    path = result.plot(tmp_path / "search.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = result.plot()
    assert [ax.get_xscale() for ax in fig.axes] == ["log", "linear", "linear"]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: loguniform(0, 1), ValueError, r"^loguniform: expected 0 < low < high, got low=0, high=1"),
        (lambda: uniform(1, 1), ValueError, r"^uniform: expected low < high, got low=1, high=1"),
        (lambda: choice([]), ValueError, r"^choice: expected a non-empty list of values, got \[\]"),
        (lambda: choice([[1, 2]]), TypeError, r"^choice: each value must be a number, string, bool or None"),
        (lambda: randint(1.5, 3), TypeError, r"^randint: low must be an int, got float 1.5"),
        (lambda: randint(3, 3), ValueError, r"^randint: expected low < high \(high excluded\), got low=3, high=3"),
        (lambda: loguniform(1e-3, "1"), TypeError, r"^loguniform: high must be a number, got str '1'"),
        (
            lambda: random_search(_objective, {"lr": [1e-3, 1e-2]}, 2),
            TypeError,
            r"^random_search: space\['lr'\] is a list \[0.001, 0.01\]; write choice\(\[0.001, 0.01\]\) to search",
        ),
        (
            lambda: random_search(_objective, {"lr": object()}, 2),
            TypeError,
            r"^random_search: space\['lr'\] must be loguniform\(...\), uniform\(...\), choice\(\[...\]\), randint",
        ),
        (lambda: random_search(_objective, {}, 2), TypeError, r"^random_search: space must be a non-empty dict"),
        (lambda: random_search(_objective, SPACE, 0), ValueError, r"^random_search: n_trials must be a positive int"),
        (lambda: random_search(_objective, SPACE, 2, mode="best", verbose=False), ValueError, r"mode must be 'min'"),
        (
            lambda: random_search(lambda c: {"loss": 1.0}, SPACE, 1, verbose=False),
            TypeError,
            r"^random_search: train_fn must return a number \(the score\), got dict",
        ),
        (lambda: grid_search(_objective, SPACE, num=0), ValueError, r"^grid_search: num must be a positive int"),
        (lambda: narrow(SPACE, {"lr": 1e-3}), KeyError, r"narrow: config has no value for 'dropout'"),
    ],
)
def test_bad_definitions_give_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_sample_config_respects_each_dimension():
    rng = np.random.default_rng(0)
    space = {"a": loguniform(1e-3, 1e-1), "b": uniform(-1, 1), "c": choice(["x", None]), "d": randint(2, 4), "e": 7}
    for _ in range(200):
        c = sample_config(space, rng)
        assert 1e-3 <= c["a"] < 1e-1 and -1 <= c["b"] < 1 and c["c"] in ("x", None) and c["d"] in (2, 3)
        assert c["e"] == 7 and type(c["a"]) is float and type(c["d"]) is int
    fine = narrow(space, {"a": 1e-3, "b": 0.9}, factor=4)
    assert fine["a"].low == 1e-3 and fine["a"].high == pytest.approx(2e-3)  # clipped at the original range
    assert fine["b"].low == pytest.approx(0.65) and fine["b"].high == 1 and fine["c"] is space["c"]


def test_best_refuses_when_every_trial_diverged(tmp_path):
    result = random_search(lambda c: float("nan"), {"x": loguniform(1e-3, 1.0)}, 3, verbose=False)
    assert [t.status for t in result.trials] == ["diverged"] * 3
    with pytest.raises(ValueError, match=r"^SearchResult\.best: no trial completed with a finite score \(3 diverged\)"):
        result.best
    assert "diverged" in result.table()
    halved = random_search(
        lambda c, budget: float("nan") if budget == 9 else c["x"],
        {"x": loguniform(1e-3, 1.0)},
        3,
        halving=SuccessiveHalving(1, 9),
        verbose=False,
    )
    with pytest.raises(ValueError, match=r"\(1 diverged, 2 stopped by successive halving\)"):
        halved.best
    pytest.importorskip("matplotlib")
    assert result.plot(tmp_path / "s.png").exists() and halved.plot(tmp_path / "h.png").exists()  # no star, no error
