"""Saving and loading state dicts and whole checkpoints, without pickle.

A file can hold a model's ``state_dict()`` (name -> array) or a nested checkpoint such as
``{"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": 7,
"rng": minidl.get_rng_state(), "meta": {...}}``. Arrays go into the file as arrays; everything else (numbers,
strings, booleans, None, lists, tuples and dicts, also with int keys as in an optimizer's state) is written as
JSON beside them. Loading never unpickles anything, so opening a file can never execute code.

Formats, chosen by the file name:

* ``.npz`` (default): a NumPy zip archive, read with ``allow_pickle=False``;
* ``.safetensors``: Hugging Face's format (needs the ``safetensors`` package; ``pip install minidl[safetensors]``).

Writes are atomic: the data goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a crash mid-save leaves the previous file intact.

Examples:
    >>> import os, tempfile
    >>> import numpy as np, minidl
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> minidl.save({"model": {"w": np.ones((2, 2), np.float32)}, "epoch": 3, "opt": {"state": {0: {"step": 5}}}}, path)
    >>> ckpt = minidl.load(path)
    >>> ckpt["epoch"], ckpt["model"]["w"].dtype, ckpt["opt"]["state"][0]["step"]
    (3, dtype('float32'), 5)
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minidl.backend import to_numpy
from minidl.nn.module import Parameter

__all__ = ["load", "save"]

_META_KEY = "__minidl__"
_FORMAT = "minidl-checkpoint"
_VERSION = 1


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic)


def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """A JSON-able description of ``value``; arrays are moved into ``arrays`` and referenced by key."""
    if _is_array(value):
        host = to_numpy(value.data if isinstance(value, Parameter) else value)
        if host.dtype == object:
            raise TypeError(f"minidl.save: {path or 'value'} is an object array, which cannot be saved without pickle")
        key = path or "value"
        while key in arrays or key == _META_KEY:  # e.g. {"a.b": x, "a": {"b": y}} flatten to the same path
            key += "#"
        arrays[key] = host if host.flags.c_contiguous else np.copy(host, order="C")  # keeps 0-d arrays 0-d
        return {"__array__": key}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"__float__": repr(value)}
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"minidl.save: dict keys must be str or int, got {k!r} at {path or 'top level'}")
            items.append([k, _encode(v, arrays, f"{path}.{k}" if path else str(k))])
        if all(isinstance(k, str) for k, _ in items):
            return {"__dict__": items}
        return {"__dict__": items, "__int_keys__": [isinstance(k, int) for k, _ in items]}
    raise TypeError(
        f"minidl.save: cannot save a {type(value).__name__} at {path or 'top level'} without pickle; save arrays, "
        "numbers, strings, booleans, None, and lists/tuples/dicts of them"
    )


def _decode(node: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    if "__array__" in node:
        return arrays[node["__array__"]]
    if "__float__" in node:
        return float(node["__float__"])
    if "__tuple__" in node:
        return tuple(_decode(v, arrays) for v in node["__tuple__"])
    if "__dict__" in node:
        int_keys = node.get("__int_keys__") or [False] * len(node["__dict__"])
        return OrderedDict(
            (int(k) if is_int else k, _decode(v, arrays))
            for (k, v), is_int in zip(node["__dict__"], int_keys, strict=False)
        )
    raise ValueError(f"unknown entry in the checkpoint's description: {sorted(node)}")


def _format_of(path: Path) -> str:
    return "safetensors" if path.suffix == ".safetensors" else "npz"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write a state dict or a nested checkpoint to ``path`` (``.npz`` or ``.safetensors``), atomically.

    Args:
        obj: a mapping of name -> array (``model.state_dict()``), or nested dicts/lists/tuples of arrays, numbers,
            strings, booleans and None (a whole checkpoint). Arrays of any backend are copied to the host.
        path: the file; its suffix chooses the format (``.safetensors``, else ``.npz``).

    Raises:
        TypeError: a value that could only be saved with pickle (an object, a set, an object array).

    Examples:
        >>> import os, tempfile, numpy as np, minidl
        >>> from minidl import nn
        >>> path = os.path.join(tempfile.mkdtemp(), "linear.npz")
        >>> minidl.save(nn.Linear(2, 3).state_dict(), path)
        >>> sorted(minidl.load(path))
        ['bias', 'weight']
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, arrays, "")
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "tree": tree})
    if _format_of(path) == "safetensors":
        try:
            from safetensors.numpy import save as st_save
        except ImportError:
            raise ImportError(
                "saving .safetensors needs the safetensors package: pip install minidl[safetensors]"
            ) from None
        data = st_save(arrays, metadata={_META_KEY: meta})
    else:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{_META_KEY: np.frombuffer(meta.encode(), np.uint8)})
        data = buffer.getvalue()
    _atomic_write(path, data)


def load(path: str | os.PathLike[str], backend: str | None = None) -> Any:
    """Read what :func:`save` wrote. Arrays come back as NumPy arrays, or on ``backend`` when given.

    A plain ``.npz`` or ``.safetensors`` of arrays (e.g. converted PyTorch weights) loads as a flat dict.

    Args:
        path: the file.
        backend: put the arrays on this backend (e.g. ``"cupy"``). Default: None (NumPy arrays).

    Examples:
        >>> import os, tempfile, numpy as np, minidl
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
        >>> minidl.save({"epoch": 4, "w": np.eye(2)}, path)
        >>> ckpt = minidl.load(path)
        >>> ckpt["epoch"], ckpt["w"].shape
        (4, (2, 2))

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, not an ``.npz``/``.safetensors`` file, or holds pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"minidl.load: no file at {path}")
    if _format_of(path) == "safetensors":
        arrays, meta = _read_safetensors(path)
    else:
        arrays, meta = _read_npz(path)
    if meta is None:
        result: Any = OrderedDict(arrays)
    else:
        try:
            info = json.loads(meta)
        except json.JSONDecodeError as err:
            raise ValueError(f"minidl.load: {path} has a damaged description ({err})") from None
        if info.get("format") != _FORMAT:
            raise ValueError(f"minidl.load: {path} is not a minidl checkpoint")
        if info.get("version", 0) > _VERSION:
            raise ValueError(f"minidl.load: {path} was written by a newer minidl (format {info['version']})")
        result = _decode(info["tree"], arrays)
    if backend is not None:
        from minidl.backend import get_backend

        be = get_backend(backend)
        result = _map_arrays(result, be.asarray)
    return result


def _map_arrays(node: Any, fn: Any) -> Any:
    if isinstance(node, np.ndarray):
        return fn(node)
    if isinstance(node, dict):
        return type(node)((k, _map_arrays(v, fn)) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return type(node)(_map_arrays(v, fn) for v in node)
    return node


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise ValueError(f"minidl.load: refused {path}: it holds pickled objects, which could run code") from None
        raise ValueError(f"minidl.load: {path} is not a readable .npz file ({err})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"minidl.load: {path} is truncated or not an .npz file ({err})") from None
    meta = arrays.pop(_META_KEY, None)
    return arrays, None if meta is None else meta.tobytes().decode()


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ImportError(
            "loading .safetensors needs the safetensors package: pip install minidl[safetensors]"
        ) from None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = (f.metadata() or {}).get(_META_KEY)
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"minidl.load: {path} is truncated or not a .safetensors file ({err})") from None
    return arrays, meta
