"""Per-sample normalization kernels of the Numba backend (LayerNorm, GroupNorm, InstanceNorm): a mixin of
:class:`~minidl.backend.numba_backend.NumbaBackend`."""

from __future__ import annotations


class NormKernelsMixin:
    """Methods the per-sample normalization layers look up with ``getattr(backend, name, None)``."""
