"""``no_grad``: switch off caching for backward, as ``torch.no_grad`` switches off the autograd graph.

minidl has no graph, but every layer keeps in ``self._cache`` what its backward needs. Under ``no_grad()`` (for
evaluation and inference) layers keep nothing, which saves the memory of every activation; calling ``backward``
afterwards raises a clear error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_enabled = True


def is_grad_enabled() -> bool:
    """True unless inside a :func:`no_grad` block."""
    return _enabled


@contextlib.contextmanager
def set_grad_enabled(mode: bool) -> Iterator[None]:
    """Context manager that sets caching for backward on or off inside the block."""
    global _enabled
    previous = _enabled
    _enabled = bool(mode)
    try:
        yield
    finally:
        _enabled = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    """``with minidl.no_grad(): model(x)`` runs forward without keeping anything for backward."""
    return set_grad_enabled(False)
