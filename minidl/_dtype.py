"""The default floating dtype of new parameters (float32, as in PyTorch)."""

from __future__ import annotations

from typing import Any

import numpy as np

_default = np.dtype(np.float32)


def get_default_dtype() -> np.dtype:
    """The dtype new layers create their parameters in (float32 unless changed)."""
    return _default


def set_default_dtype(dtype: Any) -> None:
    """Set the dtype of parameters created from now on: ``np.float32`` (default) or ``np.float64`` (gradient checks)."""
    global _default
    d = np.dtype(dtype)
    if d not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"set_default_dtype expects float32 or float64, got {d}")
    _default = d
