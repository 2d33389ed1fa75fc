"""Elementwise activation and softmax-cross-entropy kernels of the Numba backend: a mixin of
:class:`~minidl.backend.numba_backend.NumbaBackend`."""

from __future__ import annotations


class ElementwiseKernelsMixin:
    """Methods the activation and loss layers look up with ``getattr(backend, name, None)``."""
