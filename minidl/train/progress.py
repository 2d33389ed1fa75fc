"""A tqdm progress bar for one epoch, showing the running loss, accuracy, throughput (images/s) and learning rate.

::

    epoch 3/20 train:  45%|████▌     | 176/391 [00:41<00:50, loss=0.912, accuracy=0.683, img/s=2.7e+03, lr=0.05]

The bar is shown only where someone watches it: ``enabled=True`` shows it when the output stream is a terminal (a TTY)
or in a Jupyter notebook (as a widget: the bar is ``tqdm.auto``'s) and stays silent in log files, CI and pipes
(tqdm's ``disable=None``); ``enabled="always"`` forces it (for logs that want it) and ``enabled=False`` switches it
off.

Examples:
    >>> import io
    >>> stream = io.StringIO()                         # not a terminal: the bar stays silent
    >>> with EpochProgress(total=3, desc="train", enabled=True, file=stream) as bar:
    ...     for _ in range(3):
    ...         bar.update(32, loss=0.5, accuracy=0.75, lr=0.1)
    >>> stream.getvalue()
    ''
    >>> bar.samples
    96
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm.auto import tqdm  # a widget in a Jupyter notebook, text elsewhere

__all__ = ["EpochProgress", "format_metrics"]

# True inside a Jupyter kernel with ipywidgets, where tqdm.auto draws a widget: the notebook is watched, although its
# output stream is not a terminal.
_NOTEBOOK = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)


def _fmt(name: str, value: Any) -> str:
    if isinstance(value, float):
        if "throughput" in name:
            return f"{value:.0f}"
        if name == "time":
            return f"{value:.1f}s"
        if name == "lr" or name.startswith("lr_") or (value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4)):
            return f"{value:.3g}"
        return f"{value:.4f}"
    return str(value)


def format_metrics(logs: dict[str, Any]) -> str:
    """``"train_loss 0.9120  val_accuracy 0.6830  lr 0.05"``: a one-line summary of an epoch's metrics.

    Examples:
        >>> format_metrics({"epoch": 2, "train_loss": 0.91234, "lr": 0.05, "time": 12.34})
        'epoch 2  train_loss 0.9123  lr 0.05  time 12.3s'
    """
    return "  ".join(f"{k} {_fmt(k, v)}" for k, v in logs.items())


class EpochProgress:
    """A progress bar over the batches of one epoch (a thin wrapper of ``tqdm``), also usable when disabled.

    Args:
        total: the number of batches (``len(loader)``), or None when unknown.
        desc: the text before the bar, e.g. ``"epoch 3/20 train"``. Default: "".
        enabled: True (shown when ``file`` is a terminal or in a notebook), ``"always"`` (shown anyway) or False.
            Default: True.
        file: the output stream. Default: None (``sys.stderr``).
        leave: keep the finished bar on screen. Default: True.

    Attributes:
        samples: samples seen so far. throughput: samples per second since the bar was created.
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        enabled: bool | str = True,
        file: IO[str] | None = None,
        leave: bool = True,
    ) -> None:
        if enabled not in (True, False, "always"):
            raise ValueError(f"EpochProgress: enabled must be True, False or 'always', got {enabled!r}")
        if enabled is True:
            disable = False if _NOTEBOOK and file is None else None  # None: tqdm shows it only on a terminal
        else:
            disable = enabled is False
        self._bar = tqdm(
            total=total,
            desc=desc,
            disable=disable,
            file=sys.stderr if file is None else file,
            leave=leave,
            dynamic_ncols=True,
            unit="batch",
        )
        self.samples = 0
        self._start = time.perf_counter()

    @property
    def disabled(self) -> bool:
        """Whether nothing is drawn (neither a terminal nor a notebook, or ``enabled=False``)."""
        return bool(self._bar.disable)

    @property
    def throughput(self) -> float:
        """Samples per second since the bar was created."""
        elapsed = time.perf_counter() - self._start
        return self.samples / elapsed if elapsed > 0 else 0.0

    def update(self, batch_size: int, **metrics: Any) -> None:
        """One batch of ``batch_size`` samples done; show ``metrics`` (running values) and the throughput."""
        self.samples += int(batch_size)
        if self.disabled:
            return
        postfix = {name: _fmt(name, value) for name, value in metrics.items() if name != "lr"}
        postfix["img/s"] = f"{self.throughput:.3g}"
        if "lr" in metrics:
            postfix["lr"] = _fmt("lr", metrics["lr"])
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
