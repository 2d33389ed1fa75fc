"""``History``: the metrics of every epoch (train/val loss and accuracy, learning rate, time), saved as JSON or CSV.

A history is a list of records, one per epoch, each a flat dict such as ``{"epoch": 3, "train_loss": 0.91,
"train_accuracy": 0.68, "val_loss": 1.02, "val_accuracy": 0.64, "lr": 0.05}``. ``history["val_loss"]`` is the
column as a list (NaN where an epoch did not record it), which is what :func:`minidl.train.plot_history` draws: the
overfitting picture is the gap between ``train_accuracy`` and ``val_accuracy`` growing while ``val_loss`` turns up.

Files are written atomically (a temporary file in the same folder, flushed, then renamed over the target), so a
crash mid-write leaves the previous file intact. JSON stores NaN/inf as ``null``/``"inf"`` (JSON has no NaN); CSV
writes floats with ``repr`` (exact) and a metric an epoch did not record as an empty cell. Numbers, bools, NaN and
inf load back equal from both; what a file cannot tell apart does not: a None value loads as NaN from JSON (both are
``null``) and as not recorded from CSV (both are empty), and in CSV a string that reads as a number or a bool
(``"007"``, ``"True"``) loads as that number or bool.

Examples:
    >>> import os, tempfile
    >>> h = History()
    >>> h.append({"epoch": 1, "train_loss": 1.5, "val_loss": 1.6})
    >>> h.append({"epoch": 2, "train_loss": 1.1, "val_loss": 1.3})
    >>> h["val_loss"], h.best("val_loss")
    ([1.6, 1.3], (2, 1.3))
    >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
    >>> h.save(path); History.load(path) == h
    True
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minidl._atomic import atomic_write

__all__ = ["History", "atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, where: str = "atomic_write_bytes") -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename); makes the folder.

    ``where`` names the caller in error messages. See :mod:`minidl._atomic` (stale temporary files, permissions).
    """
    atomic_write(path, data, where)


def atomic_write_text(path: str | os.PathLike[str], text: str, where: str = "atomic_write_text") -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), where)


def _plain_value(where: str, key: str, value: Any) -> Any:
    """A record value as an int, float, str, bool or None (NumPy scalars and 0-d arrays become Python numbers)."""
    if isinstance(value, np.generic):
        value = value.item()
    elif hasattr(value, "shape") and hasattr(value, "dtype") and tuple(value.shape) == ():
        value = float(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where}: the value of {key!r} must be a number or a string, got {type(value).__name__}")


def _to_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _from_json(value: Any) -> Any:
    if value is None:
        return float("nan")
    if value in ("inf", "-inf"):
        return float(value)
    return value


def _to_csv(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back bit-exactly ("nan" and "inf" included)
    return value


def _from_csv(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


class History:
    """Per-epoch metrics of a training run.

    Args:
        records: initial records (dicts), e.g. from a checkpoint. Default: None (empty).

    Attributes:
        records: the list of per-epoch dicts, in order.

    Examples:
        >>> h = History([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0, "lr": 0.1}])
        >>> len(h), h.keys(), h["lr"]
        (2, ['epoch', 'loss', 'lr'], [nan, 0.1])
    """

    def __init__(self, records: Iterable[Mapping[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        for record in records or ():
            self.append(record)

    def append(self, record: Mapping[str, Any]) -> None:
        """Add the metrics of one epoch (a flat dict of numbers/strings; copied)."""
        if not isinstance(record, Mapping):
            raise TypeError(f"History.append: expected a dict of metrics, got {type(record).__name__}")
        clean = {}
        for key, value in record.items():
            if not isinstance(key, str):
                raise TypeError(f"History.append: metric names must be strings, got {key!r}")
            clean[key] = _plain_value("History.append", key, value)
        self.records.append(clean)

    def update_last(self, values: Mapping[str, Any]) -> None:
        """Add metrics to the last record (what a callback measured during that epoch), checked as in
        :meth:`append`."""
        if not self.records:
            raise IndexError("History.update_last: the history has no record yet")
        if not isinstance(values, Mapping):
            raise TypeError(f"History.update_last: expected a dict of metrics, got {type(values).__name__}")
        for key, value in values.items():
            if not isinstance(key, str):
                raise TypeError(f"History.update_last: metric names must be strings, got {key!r}")
            self.records[-1][key] = _plain_value("History.update_last", key, value)

    def series(self, prefix: str) -> dict[str, list[Any]]:
        """The per-layer columns under ``prefix``: ``{"0": [...], "2": [...]}`` for the keys ``"prefix/0"``,
        ``"prefix/2"`` (how the training monitors name their metrics), in order of first appearance.

        Examples:
            >>> h = History([{"epoch": 1, "grad_norm/0": 0.5, "grad_norm/2": 0.1}, {"epoch": 2, "grad_norm/0": 0.4}])
            >>> h.series("grad_norm")
            {'0': [0.5, 0.4], '2': [0.1, nan]}
        """
        head = prefix + "/"
        return {key[len(head) :]: self[key] for key in self.keys() if key.startswith(head)}

    def keys(self) -> list[str]:
        """Every metric name, in order of first appearance."""
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return list(seen)

    def __getitem__(self, key: str) -> list[Any]:
        if key not in self.keys():
            raise KeyError(f"History has no metric {key!r}; it has {self.keys()}")
        return [record.get(key, float("nan")) for record in self.records]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History) or len(self) != len(other):
            return False
        for a, b in zip(self.records, other.records, strict=True):
            if a.keys() != b.keys() or not all(_same(a[k], b[k]) for k in a):
                return False
        return True

    def __repr__(self) -> str:
        return f"History(epochs={len(self)}, keys={self.keys()})"

    def best(self, monitor: str, mode: str = "min") -> tuple[Any, float]:
        """``(epoch, value)`` of the best epoch for ``monitor`` (``mode`` "min" or "max"), ignoring NaN; the epoch
        is the record's ``"epoch"`` entry, else its 1-based position."""
        if mode not in ("min", "max"):
            raise ValueError(f"History.best: mode must be 'min' or 'max', got {mode!r}")
        values = self[monitor]
        finite = [(i, float(v)) for i, v in enumerate(values) if isinstance(v, (int, float)) and not math.isnan(v)]
        if not finite:
            raise ValueError(f"History.best: {monitor!r} has no numeric value")
        pick = min if mode == "min" else max
        i, value = pick(finite, key=lambda item: item[1])
        return self.records[i].get("epoch", i + 1), value

    # ------------------------------------------------------------------ files
    def state_dict(self) -> dict[str, Any]:
        """The records as plain data (for a checkpoint)."""
        return {"records": [{k: _to_json(v) for k, v in r.items()} for r in self.records]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the records with those of :meth:`state_dict`."""
        self.records = []
        for record in state["records"]:
            self.append({k: _from_json(v) for k, v in dict(record).items()})

    def to_json(self) -> str:
        return json.dumps(self.state_dict()["records"], indent=1, allow_nan=False)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.keys(), lineterminator="\n")
        writer.writeheader()
        for record in self.records:
            writer.writerow({k: _to_csv(v) for k, v in record.items()})
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the history atomically: CSV when ``path`` ends in ``.csv``, JSON otherwise."""
        path = Path(path)
        atomic_write_text(path, self.to_csv() if path.suffix.lower() == ".csv" else self.to_json(), "History.save")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a history written by :meth:`save` (``.csv`` or JSON)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"History.load: no file at {path}")
        text = path.read_text(encoding="utf-8")
        history = cls()
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(io.StringIO(text))
            for line, row in enumerate(reader, start=2):
                if None in row or None in row.values():  # (csv's marks of a row longer or shorter than the header)
                    raise ValueError(
                        f"History.load: {path}, line {line}: the row has more or fewer values than the header's "
                        f"{len(reader.fieldnames or ())} columns"
                    )
                history.append({k: _from_csv(v) for k, v in row.items() if v != ""})
        else:
            try:
                records = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"History.load: {path} is not valid JSON ({err})") from None
            if not isinstance(records, list):
                raise ValueError(f"History.load: {path} must hold a JSON list of per-epoch records")
            try:
                history.load_state_dict({"records": records})
            except (TypeError, ValueError) as err:
                raise ValueError(f"History.load: {path}, record {len(history)}: {err}") from None
        return history
