"""History: columns, best epoch, JSON/CSV round trips (NaN, inf, missing values), atomic writes, bad input."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl.train import History

names = st.sampled_from(["train_loss", "val_loss", "val_accuracy", "lr", "time"])
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.sampled_from(["SGD", "warm-up"]),
)
records = st.lists(st.dictionaries(names, values, max_size=5), min_size=0, max_size=6)


def _history(recs):
    h = History()
    for e, rec in enumerate(recs, start=1):
        h.append({"epoch": e, **rec})
    return h


@given(recs=records, suffix=st.sampled_from([".json", ".csv"]))
def test_round_trip(tmp_path_factory, recs, suffix):
    h = _history(recs)
    path = tmp_path_factory.mktemp("h") / f"history{suffix}"
    h.save(path)
    back = History.load(path)
    assert back == h, (h.records, back.records)
    for a, b in zip(h.records, back.records, strict=True):  # the exact bits and types, not only equality
        for k in a:
            assert type(a[k]) is type(b[k])
            if isinstance(a[k], float) and not math.isnan(a[k]):
                assert a[k] == b[k]


def test_columns_best_and_numpy_values(tmp_path):
    h = History()
    h.append({"epoch": 1, "train_loss": np.float32(2.0), "val_loss": np.float64(1.5)})
    h.append({"epoch": 2, "train_loss": 1.0, "val_loss": 1.2, "val_accuracy": 0.6})
    h.append({"epoch": 3, "train_loss": 0.5, "val_loss": 1.4, "val_accuracy": 0.7})
    assert h.keys() == ["epoch", "train_loss", "val_loss", "val_accuracy"]
    assert type(h["train_loss"][0]) is float
    assert math.isnan(h["val_accuracy"][0]) and h["val_accuracy"][1:] == [0.6, 0.7]
    assert h.best("val_loss") == (2, 1.2)
    assert h.best("val_accuracy", mode="max") == (3, 0.7)
    assert len(h) == 3 and "lr" not in h
    with pytest.raises(KeyError, match="History has no metric 'lr'"):
        h["lr"]


def test_files_are_standard_and_atomic(tmp_path, monkeypatch):
    h = History([{"epoch": 1, "val_loss": float("nan"), "train_loss": float("inf")}])
    path = tmp_path / "history.json"
    h.save(path)
    data = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert data == [{"epoch": 1, "val_loss": None, "train_loss": "inf"}]
    csv_text = (h.save(tmp_path / "h.csv"), (tmp_path / "h.csv").read_text())[1]
    assert csv_text.splitlines() == ["epoch,val_loss,train_loss", "1,nan,inf"]
    assert sorted(os.listdir(tmp_path)) == ["h.csv", "history.json"]  # no temporary file left behind
    # a failing write leaves the old file intact
    h2 = History([{"epoch": 1, "val_loss": 0.5}])

    def boom(*a, **k):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", boom)
        with pytest.raises(OSError, match="disk full"):
            h2.save(path)
    assert json.loads(path.read_text()) == data
    assert sorted(os.listdir(tmp_path)) == ["h.csv", "history.json"]


def test_bad_input(tmp_path):
    h = History()
    with pytest.raises(TypeError, match="History.append: expected a dict"):
        h.append([1, 2])
    with pytest.raises(TypeError, match="the value of 'w' must be a number or a string, got ndarray"):
        h.append({"w": np.zeros(3)})
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        History([{"a": 1.0}]).best("a", mode="lowest")
    with pytest.raises(FileNotFoundError, match="History.load: no file"):
        History.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        History.load(tmp_path / "bad.json")


def test_update_last_adds_checked_metrics_and_series_groups_them():
    h = History([{"epoch": 1, "loss": 1.0}])
    h.update_last({"grad_norm/0": np.float32(0.5), "grad_norm/conv.1": 2})
    assert h.records[-1] == {"epoch": 1, "loss": 1.0, "grad_norm/0": 0.5, "grad_norm/conv.1": 2}
    assert h.series("grad_norm") == {"0": [0.5], "conv.1": [2]} and h.series("nothing") == {}
    with pytest.raises(TypeError, match="History.update_last: the value of 'x' must be a number or a string"):
        h.update_last({"x": [1, 2]})
    with pytest.raises(IndexError, match="History.update_last: the history has no record yet"):
        History().update_last({"x": 1.0})


def test_a_damaged_file_names_itself_and_the_row(tmp_path):
    longer, shorter, nested = tmp_path / "longer.csv", tmp_path / "shorter.csv", tmp_path / "nested.json"
    longer.write_text("epoch,loss\n1,2,3\n")
    shorter.write_text("epoch,loss\n1,2\n2\n")
    nested.write_text('[{"epoch": 1}, {"epoch": [1]}]')
    for path, line in ((longer, 2), (shorter, 3)):
        with pytest.raises(ValueError, match=rf"History.load: .*{path.name}, line {line}: the row has more or fewer"):
            History.load(path)
    with pytest.raises(
        ValueError, match=r"History.load: .*nested.json, record 1: History.append: the value of 'epoch'"
    ):
        History.load(nested)
