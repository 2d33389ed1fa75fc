"""A stand-in for CuPy that runs on the CPU, so the CuPy backend's code paths can be tested without a GPU.

``make_fake_cupy()`` returns a module to put into ``sys.modules["cupy"]``. Its arrays are a NumPy subclass whose
class claims to live in ``cupy`` (so minidl treats them as device arrays: ``get_array_module``, ``to_numpy``,
``backend_for``, the device checks) and which enforces two rules of real CuPy that NumPy does not:

* **no mixing with host arrays**: a ufunc or array function that gets a plain ``numpy.ndarray`` next to a device
  array raises ``TypeError`` (as CuPy does: ``Unsupported type <class 'numpy.ndarray'>``);
* **every device -> host read is recorded**: ``float()``, ``int()``, ``bool()``, ``.item()``, ``.tolist()``,
  ``.get()`` and ``cupy.asnumpy`` append an entry (kind and caller) to ``module.syncs``, because each of them waits
  for the GPU. Host -> device copies (``cupy.asarray`` of host data) are recorded in ``module.uploads``.

Limits: the arithmetic is NumPy's (so this checks plumbing and synchronizations, never GPU numerics or speed), and
``numpy.asarray(device_array)`` silently works here while CuPy raises.
"""

from __future__ import annotations

import sys
import threading
import traceback
import types
from typing import Any

import numpy as np

_MODULE: types.ModuleType | None = None  # the fake module the arrays report to (set by make_fake_cupy)
_INSIDE = threading.local()  # depth of NumPy implementations running on our arrays (their inner calls are NumPy's)


def _caller() -> str:
    """``file:line`` of the innermost minidl frame that asked for the value (else the innermost outside this file)."""
    frames = [f for f in traceback.extract_stack()[:-2] if not f.filename.endswith("fake_cupy.py")]
    for f in reversed(frames):
        if "/minidl/" in f.filename.replace("\\", "/"):
            return f"{f.filename.split('minidl/', 1)[-1]}:{f.lineno}"
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _record(kind: str) -> None:
    if _MODULE is not None:
        _MODULE.syncs.append((kind, _caller()))


def _host_arrays(args: Any) -> list[np.ndarray]:
    """Plain NumPy arrays (not device arrays) among ``args``, looking inside lists and tuples."""
    found = []
    for a in args:
        if type(a) is np.ndarray:
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(_host_arrays(a))
    return found


def _plain(a: Any) -> Any:
    if isinstance(a, ndarray):
        return a.view(np.ndarray)
    if isinstance(a, (list, tuple)):
        return type(a)(_plain(v) for v in a)
    return a


def _device(a: Any) -> Any:
    """Results as device arrays; NumPy scalars become 0-d arrays, as CuPy returns them."""
    if type(a) is np.ndarray:
        return a.view(ndarray)
    if isinstance(a, np.generic):
        return np.asarray(a).view(ndarray)
    if isinstance(a, tuple):
        return tuple(_device(v) for v in a)
    if isinstance(a, list):
        return [_device(v) for v in a]
    return a


class ndarray(np.ndarray):  # noqa: N801  (CuPy's name)
    """A NumPy array that behaves like a ``cupy.ndarray`` for minidl's purposes (see the module docstring)."""

    __module__ = "cupy"

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, out: Any = None, **kwargs: Any) -> Any:
        host = _host_arrays(inputs) + _host_arrays(out or ()) if getattr(_INSIDE, "depth", 0) == 0 else []
        if host:
            raise TypeError(
                f"fake cupy: {ufunc.__name__}.{method} mixes a device array with a host numpy.ndarray of shape "
                f"{host[0].shape} (CuPy raises: Unsupported type <class 'numpy.ndarray'>)"
            )
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _device(result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        depth = getattr(_INSIDE, "depth", 0)
        host = _host_arrays(args) + _host_arrays(tuple(kwargs.values())) if depth == 0 else []
        if host:
            raise TypeError(
                f"fake cupy: numpy.{func.__name__} mixes a device array with a host numpy.ndarray of shape "
                f"{host[0].shape} (CuPy cannot compute on host arrays)"
            )
        _INSIDE.depth = depth + 1  # NumPy's own implementation may use host temporaries: not checked
        try:
            return _device(super().__array_function__(func, types_, args, kwargs))
        finally:
            _INSIDE.depth = depth

    def __getitem__(self, key: Any) -> Any:
        return _device(super().__getitem__(key))  # a[i] of a 1-D array is a 0-d array in CuPy, not a scalar

    def argmax(self, *args: Any, **kwargs: Any) -> Any:
        return _device(super().argmax(*args, **kwargs))

    def argmin(self, *args: Any, **kwargs: Any) -> Any:
        return _device(super().argmin(*args, **kwargs))

    # ---- device -> host reads: each one waits for the GPU
    def __float__(self) -> float:
        _record("float")
        return float(self.view(np.ndarray))

    def __int__(self) -> int:
        _record("int")
        return int(self.view(np.ndarray))

    def __index__(self) -> int:
        _record("index")
        return self.view(np.ndarray).__index__()

    def __bool__(self) -> bool:
        _record("bool")
        return bool(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        _record("item")
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        _record("tolist")
        return self.view(np.ndarray).tolist()

    def get(self) -> np.ndarray:
        """Device -> host copy, as ``cupy.ndarray.get``."""
        _record("get")
        return np.array(self.view(np.ndarray), copy=True)


class _Device:
    def __init__(self, device: int = 0) -> None:
        self.id = device

    def synchronize(self) -> None:
        _record("synchronize")

    def use(self) -> None:
        pass


class _Pool:
    def free_all_blocks(self) -> None:
        pass


def make_fake_cupy(device_count: int | Exception = 1) -> types.ModuleType:
    """A module that can stand in for ``cupy``: NumPy underneath, device arrays of the class above.

    Args:
        device_count: what ``cupy.cuda.runtime.getDeviceCount()`` returns, or an exception it raises.
    """
    global _MODULE
    mod = types.ModuleType("cupy")
    mod.__dict__["syncs"] = []
    mod.__dict__["uploads"] = []
    mod.ndarray = ndarray  # type: ignore[attr-defined]
    mod.__version__ = "0.0-fake"  # type: ignore[attr-defined]

    def get_device_count() -> int:
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    runtime = types.SimpleNamespace(
        getDeviceCount=get_device_count,
        getDeviceProperties=lambda device: {"name": b"fake GPU (NumPy on the CPU)"},
        runtimeGetVersion=lambda: 0,
    )
    mod.cuda = types.SimpleNamespace(runtime=runtime, Device=_Device)  # type: ignore[attr-defined]
    mod.is_available = lambda: not isinstance(device_count, Exception) and device_count > 0  # type: ignore[attr-defined]

    def asarray(a: Any, dtype: Any = None) -> ndarray:
        if isinstance(a, ndarray):
            return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
        mod.uploads.append((tuple(np.shape(a)), _caller()))
        return np.array(a, dtype=dtype, copy=True).view(ndarray)

    def asnumpy(a: Any) -> np.ndarray:
        return a.get() if isinstance(a, ndarray) else np.asarray(a)

    def array(a: Any, dtype: Any = None, copy: bool = True, **kwargs: Any) -> ndarray:
        if not isinstance(a, ndarray):
            mod.uploads.append((tuple(np.shape(a)), _caller()))
        return np.array(_plain(a), dtype=dtype, copy=copy, **kwargs).view(ndarray)

    mod.asarray = asarray  # type: ignore[attr-defined]
    mod.asnumpy = asnumpy  # type: ignore[attr-defined]
    mod.array = array  # type: ignore[attr-defined]
    mod.get_default_memory_pool = _Pool  # type: ignore[attr-defined]
    mod.get_default_pinned_memory_pool = _Pool  # type: ignore[attr-defined]

    def __getattr__(name: str) -> Any:  # everything else: NumPy's, with results on the "device"
        value = getattr(np, name)
        if isinstance(value, (type, np.ufunc, types.ModuleType)) or not callable(value):
            return value  # dtypes, ufuncs (their results follow their inputs), constants

        def on_device(*args: Any, **kwargs: Any) -> Any:
            return _device(value(*args, **kwargs))

        on_device.__name__ = name
        return on_device

    mod.__getattr__ = __getattr__  # type: ignore[attr-defined]
    _MODULE = mod
    return mod


def installed() -> bool:
    """True when the module in ``sys.modules["cupy"]`` is a fake one."""
    return getattr(sys.modules.get("cupy"), "__version__", "") == "0.0-fake"
