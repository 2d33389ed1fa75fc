"""Gradient mode: whether layers keep what their backward needs, as ``torch.no_grad`` switches off the graph.

minidl has no graph, but every layer saves what its backward needs (``Module.save_for_backward``). With gradients
disabled (for evaluation and inference) layers save nothing, which saves the memory of every activation; calling
``backward`` afterwards raises a clear error.

* ``with minidl.no_grad(): ...`` disables them inside the block.
* ``minidl.set_grad_enabled(False)`` disables them from now on, as a plain call (``set_grad_enabled(True)`` turns
  them back on); used as ``with minidl.set_grad_enabled(mode): ...`` it restores the previous mode at the end of the
  block. Both are PyTorch's semantics.

Examples:
    >>> import minidl
    >>> with minidl.no_grad():
    ...     minidl.is_grad_enabled()
    False
    >>> _ = minidl.set_grad_enabled(False); minidl.is_grad_enabled()
    False
    >>> _ = minidl.set_grad_enabled(True); minidl.is_grad_enabled()
    True
"""

from __future__ import annotations

from typing import Any

# anomaly detection (torch.autograd.set_detect_anomaly) lives in its own file; its names are here too
from minidl.anomaly_mode import detect_anomaly, is_anomaly_enabled, set_detect_anomaly  # noqa: F401

_enabled = True


def is_grad_enabled() -> bool:
    """True unless gradients were disabled (inside :func:`no_grad`, or after ``set_grad_enabled(False)``)."""
    return _enabled


def _check_mode(mode: Any) -> bool:
    if not isinstance(mode, bool):
        raise TypeError(f"set_grad_enabled(mode) expects a bool, got {mode!r} ({type(mode).__name__})")
    return mode


class set_grad_enabled:  # noqa: N801  (PyTorch's name: a function to call, or a context manager)
    """Turn saving for backward on or off now; as a context manager, restore the previous mode on exit.

    Args:
        mode: True to save for backward (the default state), False to save nothing.
    """

    def __init__(self, mode: bool) -> None:
        global _enabled
        self.previous = _enabled
        _enabled = _check_mode(mode)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        global _enabled
        _enabled = self.previous


class no_grad:  # noqa: N801  (PyTorch's name)
    """``with minidl.no_grad(): model(x)`` runs forward without saving anything for backward."""

    def __enter__(self) -> None:
        global _enabled
        self.previous = _enabled
        _enabled = False

    def __exit__(self, *exc: object) -> None:
        global _enabled
        _enabled = self.previous
