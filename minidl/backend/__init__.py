"""The array backend: which array library and which kernels the layers run on.

A *backend* is one object that owns

* ``xp``: the array module (``numpy`` or ``cupy``), used by layer code for everything that is plain array math;
* the *kernels* the layers need and that are worth a fast implementation (im2col/col2im, pooling, ...).

Layer code never imports numba or cupy; it asks ``get_backend()`` for the kernels and ``backend.xp`` for the rest,
so the same model code runs on every backend. Only the files in this folder know which library sits underneath.

The default backend is ``"numba"`` when Numba is installed (the reference kernels compiled, for fast CPU training),
else ``"numpy"``; the environment variable ``MINIDL_BACKEND`` (e.g. ``MINIDL_BACKEND=numpy``) chooses another one.
Numba is imported when the default backend is first needed, not by ``import minidl``.

Examples:
    >>> import minidl
    >>> minidl.get_backend("numpy").name
    'numpy'
    >>> with minidl.use_backend("numpy") as be:
    ...     be.xp.__name__
    'numpy'
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from minidl.backend.numpy_backend import NumpyBackend

__all__ = [
    "NumpyBackend",
    "available_backends",
    "backend_for",
    "get_array_module",
    "get_backend",
    "is_cupy_array",
    "register_backend",
    "set_backend",
    "to_numpy",
    "use_backend",
]

# name -> (module path, class name). Imported lazily so that a missing optional package (numba, cupy) only matters
# when someone asks for that backend.
_REGISTRY: dict[str, tuple[str, str]] = {
    "numpy": ("minidl.backend.numpy_backend", "NumpyBackend"),
}
_ALIASES = {"cpu": "numpy", "np": "numpy"}
_INSTANCES: dict[str, Any] = {}
_current: Any = None


def register_backend(name: str, module: str, class_name: str, *aliases: str) -> None:
    """Make a backend class known under ``name`` (and ``aliases``); it is imported on first use."""
    _REGISTRY[name] = (module, class_name)
    for alias in aliases:
        _ALIASES[alias] = name


register_backend("numba", "minidl.backend.numba_backend", "NumbaBackend")
register_backend("cupy", "minidl.backend.cupy_backend", "CupyBackend", "cuda", "gpu")


def _default_backend() -> Any:
    """``MINIDL_BACKEND`` if set, else Numba when it is installed (looked up without importing it), else NumPy."""
    name = os.environ.get("MINIDL_BACKEND", "").strip()
    if name:
        return _instance(name)
    if importlib.util.find_spec("numba") is not None:
        try:
            return _instance("numba")
        except ImportError as err:  # installed but unusable (e.g. a NumPy it does not support)
            warnings.warn(f"minidl: falling back to the NumPy backend: {err}", RuntimeWarning, stacklevel=3)
    return _instance("numpy")


def available_backends() -> list[str]:
    """Names of the registered backends (whether or not their optional package is installed)."""
    return sorted(_REGISTRY)


def _resolve_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str such as 'numpy', got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of {available_backends()}")
    return key


def _instance(name: str) -> Any:
    key = _resolve_name(name)
    if key not in _INSTANCES:
        module_path, class_name = _REGISTRY[key]
        cls: Callable[[], Any] = getattr(importlib.import_module(module_path), class_name)
        _INSTANCES[key] = cls()  # a backend's __init__ raises a clear ImportError/RuntimeError if unusable
    return _INSTANCES[key]


def get_backend(name: str | None = None) -> Any:
    """The current backend, or the backend called ``name``."""
    global _current
    if name is not None:
        return _instance(name)
    if _current is None:
        _current = _default_backend()
    return _current


def set_backend(name: str) -> Any:
    """Make ``name`` the current backend and return it.

    New parameters and the arrays layers allocate live on the current backend; move a model with ``model.to(name)``.

    Args:
        name: ``"numpy"`` (the readable reference), ``"numba"`` (fast CPU kernels), ``"cupy"`` (GPU; aliases
            ``"cuda"``, ``"gpu"``), or ``"cpu"`` (= ``"numpy"``).

    Raises:
        ValueError: an unknown name. ImportError/RuntimeError: the backend's package or device is missing (the
            message says what to install).

    Examples:
        >>> import minidl
        >>> previous = minidl.get_backend().name
        >>> minidl.set_backend("numpy").name
        'numpy'
        >>> _ = minidl.set_backend(previous)
    """
    global _current
    _current = _instance(name)
    return _current


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Any]:
    """Context manager: switch to backend ``name`` inside the block, restore the previous one after it.

    Args:
        name: a backend name, as for :func:`set_backend`.

    Examples:
        >>> import minidl
        >>> with minidl.use_backend("numpy") as be:
        ...     be.name
        'numpy'
    """
    global _current
    previous = get_backend()
    _current = _instance(name)
    try:
        yield _current
    finally:
        _current = previous


def is_cupy_array(a: Any) -> bool:
    """Whether ``a`` lives on the GPU as a CuPy array, told by its type's module (so CuPy is never imported to ask).

    Examples:
        >>> import numpy as np
        >>> is_cupy_array(np.zeros(3))
        False
    """
    return type(a).__module__.startswith("cupy")


def get_array_module(*arrays: Any) -> Any:
    """``numpy`` or ``cupy``, whichever the arrays belong to (``numpy`` for plain Python values)."""
    for a in arrays:
        if is_cupy_array(a):
            return importlib.import_module("cupy")
    return sys.modules["numpy"]  # (imported with minidl)


def to_numpy(a: Any) -> Any:
    """A NumPy array with the values of ``a`` (copied to the host if it lives on a GPU)."""
    if is_cupy_array(a):
        return a.get()
    import numpy as np

    return np.asarray(a)


def backend_for(x: Any) -> Any:
    """The backend that runs an op on array ``x``: the current backend if ``x`` lives on its device, else an error.

    Raises:
        TypeError: ``x`` is not an array (a list, a Parameter, ...).
        RuntimeError: ``x`` lives on another device than the current backend (e.g. a NumPy array while the CuPy
            backend is current).
    """
    be = get_backend()
    if be.is_array(x):
        return be
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"expected an array of the {be.name!r} backend, got {type(x).__name__}")
    from minidl._deferred import BatchNormReLUOutput

    if isinstance(x, BatchNormReLUOutput):
        raise TypeError(
            "expected an array, got a BatchNormReLUOutput (a BatchNorm+ReLU's output described, not computed), which "
            "only conv2d_forward takes; its .computed() is the array"
        )
    import numpy as np

    if isinstance(x, np.generic):  # e.g. what x + y gives for two 0-d arrays
        raise TypeError(f"expected an array, got the NumPy scalar {x!r} ({type(x).__name__}); use numpy.asarray(x)")
    where = "GPU (cupy)" if is_cupy_array(x) else f"CPU ({type(x).__module__})"
    raise RuntimeError(
        f"the array lives on the {where} but the current backend is {be.name!r} ({be.device}); move the data with "
        f"minidl.get_backend().asarray(x) or switch with minidl.set_backend(...)"
    )
