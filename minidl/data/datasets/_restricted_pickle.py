"""A pickle reader for dataset files that rebuilds only plain data and NumPy arrays, within a memory budget.

A pickle is a program: its opcodes call any global it names. :class:`RestrictedUnpickler` allows only plain data
(dict, list, tuple, set, bytes, str, int, float, ...) and NumPy arrays, so loading an untrusted pickle cannot run
code. The allowed callables can still allocate: ``bytes(10**12)``, ``_reconstruct(ndarray, (10**12,), b"b")``, or
one memoized string decoded a million times. So each of them is replaced by a wrapper that charges what it is about
to allocate to a budget (by default 8 x the pickle's size + 1 MiB: a genuine pickle holds the bytes of its arrays),
and refuses before allocating once the budget is spent. Arrays and scalars are rebuilt through checks that refuse
object and structured dtypes, rebuild every dtype from its type string (a pickled dtype state can forge the flags
that say whether it holds pointers), and refuse a state whose data does not match its shape: NumPy would crash on
these, or read memory it does not own.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
from typing import Any

import numpy as np

__all__ = ["RestrictedUnpickler", "restricted_loads"]

_SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float", "bool"}
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
# a view of a buffer already in the pickle: allocates nothing
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


def _numpy_attr(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; pickles written by either name the old or the new path
    for m in (module, module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
        try:
            return getattr(importlib.import_module(m), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot find {module}.{name}")


def _latin1_encode(text: Any, encoding: Any = None, *rest: Any) -> bytes:
    """``_codecs.encode`` as pickles use it: ``(str, "latin1")``. Other codecs (``"hex"``, ``"zlib_codec"``, ...)
    are refused; a genuine pickle never needs them."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
        raise pickle.UnpicklingError(
            f"RestrictedUnpickler: expected _codecs.encode(str, 'latin1'), got _codecs.encode({type(text).__name__}, "
            f"{encoding!r:.40})"
        )
    return text.encode("latin1")


class _Budget:
    def __init__(self, limit: int, size: int | None) -> None:
        self.limit, self.size, self.used = limit, size, 0

    def charge(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.limit:
            size = "" if self.size is None else f" (the pickle holds {self.size} bytes)"
            raise pickle.UnpicklingError(
                f"RestrictedUnpickler: {what} would bring the memory the pickle asks for to {self.used} bytes, over "
                f"the limit of {self.limit} bytes{size}; pass max_bytes= to allow more for a file you trust"
            )


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)) else 0


_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, str: no object pointers anywhere


def _clean_dtype(dtype: Any) -> np.dtype:
    """``dtype`` rebuilt from its type string, so that flags forged in its pickled state (claiming an object dtype
    holds no pointers, or a wrong item size) are dropped; object and structured dtypes are refused."""
    try:
        if not isinstance(dtype, np.dtype) or dtype.kind not in _KINDS or dtype.fields or dtype.subdtype:
            raise TypeError
        clean = np.dtype(dtype.str)
        if clean.itemsize != dtype.itemsize:
            raise TypeError
    except TypeError:
        raise pickle.UnpicklingError(
            f"RestrictedUnpickler: expected an array of numbers, bytes or str, got dtype {dtype!r:.60} (object and "
            "structured arrays are refused)"
        ) from None
    return clean


def _scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _clean_dtype(dtype)
    if not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(
            f"RestrictedUnpickler: a {dtype} scalar needs {dtype.itemsize} bytes, got {type(data).__name__} of "
            f"length {_sized(data)}"
        )
    return _numpy_attr("numpy._core.multiarray", "scalar")(dtype, data)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _numpy_attr("numpy._core.numeric", "_frombuffer")(buf, _clean_dtype(dtype), shape, order)


class _CheckedArray(np.ndarray):
    """What ``_reconstruct`` builds while unpickling: its ``__setstate__`` checks the state before NumPy sees it.
    :meth:`RestrictedUnpickler.load` turns these back into plain ndarrays."""

    _budget: _Budget

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError(
                f"RestrictedUnpickler: expected an array state (version, shape, dtype, is_fortran, data), got "
                f"{type(state).__name__} of length {_sized(state)}"
            )
        version, shape, dtype, is_fortran, data = state
        dtype = _clean_dtype(dtype)
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise pickle.UnpicklingError(
                f"RestrictedUnpickler: expected an array shape of ints >= 0, got {shape!r:.60}"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if not isinstance(data, (bytes, bytearray, str)) or len(data) != nbytes:  # str: Python 2, latin1
            raise pickle.UnpicklingError(
                f"RestrictedUnpickler: an array of shape {shape} and dtype {dtype} needs {nbytes} bytes of data, got "
                f"{type(data).__name__} of length {_sized(data)}"
            )
        self._budget.charge(nbytes, f"an array of shape {shape} and dtype {dtype}")
        np.ndarray.__setstate__(self, (version, shape, dtype, bool(is_fortran), data))


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` in a pickle: the only use a genuine pickle makes of it is as ``_reconstruct``'s
    first argument; called directly it would allocate any shape it is given, so it refuses."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("RestrictedUnpickler: refusing to call numpy.ndarray directly")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only plain data (dict, list, tuple, bytes, str, int, float, ...) and NumPy arrays.

    Any other global (``os.system``, ``builtins.eval``, a class of any module, ...) raises
    ``pickle.UnpicklingError`` before it is called, so loading an untrusted pickle cannot run code; and the allowed
    callables refuse before allocating more than ``max_bytes`` in all.

    Args:
        file: a binary file.
        max_bytes: memory budget. Default: None (8 x the bytes left in ``file`` + 1 MiB when it is seekable,
            else 1 GiB).
        **kwargs: passed to ``pickle.Unpickler`` (``encoding="latin1"`` for Python 2 pickles).
    """

    def __init__(self, file: Any, *, max_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        size = None
        try:
            here = file.tell()
            size = file.seek(0, io.SEEK_END) - here
            file.seek(here)
        except (AttributeError, OSError, ValueError):
            pass
        if max_bytes is None:
            max_bytes = 8 * size + (1 << 20) if size is not None else 1 << 30
        self._budget = _Budget(int(max_bytes), size)
        self._checked = type("_CheckedArray", (_CheckedArray,), {"_budget": self._budget})
        self._marker = _NdarrayMarker()

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return self._charged(getattr(__import__("builtins"), name), name)
        if module == "_codecs" and name == "encode":  # how protocol-2 pickles written by Python 3 store bytes
            return self._charged(_latin1_encode, "_codecs.encode", factor=1)
        if (module, name) == ("numpy", "ndarray"):
            return self._marker
        if (module, name) in _RECONSTRUCT:
            return self._reconstruct
        if (module, name) in _SCALAR:
            return _scalar
        if (module, name) in _FROMBUFFER:
            return _frombuffer
        if (module, name) == ("numpy", "dtype"):
            return np.dtype  # its forged state can only lie about flags: every use goes through _clean_dtype
        raise pickle.UnpicklingError(
            f"RestrictedUnpickler: refusing to load global {module}.{name}: only plain data and NumPy arrays are "
            "allowed in a dataset pickle"
        )

    def _charged(self, fn: Any, name: str, factor: int = 8) -> Any:
        def call(*args: Any) -> Any:
            first = args[0] if args else None
            if isinstance(first, int) and name in ("bytes", "bytearray"):
                self._budget.charge(first, f"{name}({first})")
            else:
                self._budget.charge(factor * _sized(first), f"{name}() of a {type(first).__name__}")
            return fn(*args)

        return call

    def _reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
        if subtype is not self._marker:
            raise pickle.UnpicklingError(f"RestrictedUnpickler: expected numpy.ndarray to rebuild, got {subtype!r:.60}")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise pickle.UnpicklingError(
                f"RestrictedUnpickler: expected an array shape of ints >= 0, got {shape!r:.60}"
            )
        try:
            dtype = _clean_dtype(np.dtype(typecode))
        except TypeError:
            raise pickle.UnpicklingError(
                f"RestrictedUnpickler: expected a numeric typecode, got {typecode!r:.60}"
            ) from None
        self._budget.charge(math.prod(shape) * dtype.itemsize, f"an array of shape {shape}")
        out = np.ndarray.__new__(self._checked, shape, dtype)
        out.fill(0)  # a pickle that never sets the state must not read this process's leftover memory
        return out

    def load(self) -> Any:
        result = super().load()
        try:
            return _plain(result)
        except RecursionError:
            raise pickle.UnpicklingError(
                "RestrictedUnpickler: the data is nested too deeply (or holds a cycle)"
            ) from None


def _plain(value: Any) -> Any:
    """``value`` with every checked array turned back into a plain ``np.ndarray`` (a view, no copy)."""
    if isinstance(value, _CheckedArray):
        return value.view(np.ndarray)
    if isinstance(value, np.dtype):
        return _clean_dtype(value)
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = _plain(v)
    elif isinstance(value, list):
        value[:] = [_plain(v) for v in value]
    elif isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def restricted_loads(data: bytes, encoding: str = "latin1", max_bytes: int | None = None) -> Any:
    """``pickle.loads`` with :class:`RestrictedUnpickler` (``latin1`` decodes Python 2 pickles such as CIFAR's).

    Args:
        data: the pickle.  encoding: for Python 2 str objects. Default: "latin1".
        max_bytes: memory budget. Default: None (8 x ``len(data)`` + 1 MiB).
    """
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding, max_bytes=max_bytes).load()
