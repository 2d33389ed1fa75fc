"""Saving and loading state dicts and whole checkpoints, without pickle.

A file can hold a model's ``state_dict()`` (name -> array) or a nested checkpoint such as
``{"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": 7,
"rng": minidl.get_rng_state(), "meta": {...}}``. Arrays go into the file as arrays; everything else (numbers,
strings, booleans, None, lists, tuples and dicts, also with int keys as in an optimizer's state) is written as
JSON beside them. Loading never unpickles anything, so opening a file can never execute code.

Formats, chosen by the file name:

* ``.npz`` (default): a NumPy zip archive, read with ``allow_pickle=False``;
* ``.safetensors``: Hugging Face's format (needs the ``safetensors`` package; ``pip install minidl[safetensors]``).

Writes are atomic (:mod:`minidl._atomic`): the data goes to a temporary file in the same folder, is flushed to disk,
then renamed over the target, so a crash mid-save leaves the previous file intact; the temporary files a killed
writer left behind are removed by the next save to the same file. A new file gets the permissions ``open()`` gives
(``0o666`` minus the umask); a replaced one keeps its own.

Every file :func:`save` writes records a reproducibility manifest (:mod:`minidl._manifest`): the minidl, NumPy,
Numba and Python versions, the backend, the seed given to :func:`minidl.manual_seed`, the git commit (and whether
the tree was dirty) when saved inside a repository, the command line and the time. :func:`checkpoint_info` returns it
without reading the arrays; ``minidl.load(path, verbose=True)`` prints it. Files written before the manifest existed
load as before (their manifest is None).

Loading checks before it allocates and validates everything it reads (:mod:`minidl._serialization_read`): the format
is recognised from the file's first bytes, each array's header is checked against the bytes the file holds, and a
damaged description raises one ``ValueError`` naming the file.

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
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minidl._atomic import atomic_write
from minidl._manifest import collect_manifest, format_manifest
from minidl._serialization_read import (
    FORMAT,
    META_KEY,
    VERSION,
    decode_description,
    decode_manifest,
    read_npz,
    read_npz_description,
    read_safetensors,
    read_safetensors_description,
    sniff,
)
from minidl.backend import to_numpy
from minidl.nn.module import Parameter

__all__ = ["checkpoint_info", "load", "save"]

_META_KEY = META_KEY
_FORMAT = FORMAT
_VERSION = VERSION


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


def _format_of(path: Path) -> str:
    return "safetensors" if path.suffix == ".safetensors" else "npz"


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write a state dict or a nested checkpoint to ``path`` (``.npz`` or ``.safetensors``), atomically.

    Args:
        obj: a mapping of name -> array (``model.state_dict()``), or nested dicts/lists/tuples of arrays, numbers,
            strings, booleans and None (a whole checkpoint). Arrays of any backend are copied to the host.
        path: the file; its suffix chooses the format (``.safetensors``, else ``.npz``).

    Raises:
        TypeError: a value that could only be saved with pickle (an object, a set, an object array).
        IsADirectoryError: ``path`` is a folder.

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
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "tree": tree, "manifest": collect_manifest()})
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
    atomic_write(path, data, "minidl.save")


def _check_file(path: Path, where: str) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{where}: {path} is a folder; expected an .npz or .safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no file at {path}")


def checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The reproducibility manifest :func:`save` recorded in ``path``, without reading its arrays.

    Returns:
        ``{"minidl", "numpy", "numba", "python", "backend", "seed", "git_commit", "git_dirty", "command",
        "created"}`` (see :mod:`minidl._manifest`), or None for a file written without one (an older minidl, a plain
        ``.npz`` of arrays, converted PyTorch weights).

    Raises:
        FileNotFoundError, IsADirectoryError, ValueError: as :func:`load`, the message naming
            ``minidl.checkpoint_info``.

    Examples:
        >>> import os, tempfile, numpy as np, minidl
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
        >>> _ = minidl.manual_seed(3)
        >>> minidl.save({"w": np.eye(2)}, path)
        >>> info = minidl.checkpoint_info(path)
        >>> info["seed"], info["backend"] == minidl.get_backend().name
        (3, True)
    """
    where = "minidl.checkpoint_info"
    path = Path(path)
    _check_file(path, where)
    if sniff(path, where) == "safetensors":
        meta = read_safetensors_description(path, where)
    else:
        meta = read_npz_description(path, where)
    return decode_manifest(path, meta, where)


def load(path: str | os.PathLike[str], backend: str | None = None, verbose: bool = False) -> Any:
    """Read what :func:`save` wrote. Arrays come back as NumPy arrays, or on ``backend`` when given.

    A plain ``.npz`` or ``.safetensors`` of arrays (e.g. converted PyTorch weights) loads as a flat dict.

    Args:
        path: the file.
        backend: put the arrays on this backend (e.g. ``"cupy"``). Default: None (NumPy arrays).
        verbose: print the file's reproducibility manifest (versions, backend, seed, git commit, command; see
            :func:`checkpoint_info`, which returns it). Default: False.

    Examples:
        >>> import os, tempfile, numpy as np, minidl
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
        >>> minidl.save({"epoch": 4, "w": np.eye(2)}, path)
        >>> ckpt = minidl.load(path)
        >>> ckpt["epoch"], ckpt["w"].shape
        (4, (2, 2))

    Raises:
        TypeError: ``verbose`` is not a bool.
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a folder.
        ValueError: the file is truncated or damaged, not an ``.npz``/``.safetensors`` file (a text file, a lone
            ``.npy``), holds pickled objects, claims arrays larger than its own bytes, or has a damaged checkpoint
            description; the message names the file.
    """
    if not isinstance(verbose, bool):
        raise TypeError(f"minidl.load: verbose must be a bool, got {verbose!r} ({type(verbose).__name__})")
    path = Path(path)
    _check_file(path, "minidl.load")
    if sniff(path) == "safetensors":
        arrays, meta = read_safetensors(path)
    else:
        arrays, meta = read_npz(path)
    result: Any = OrderedDict(arrays) if meta is None else decode_description(path, meta, arrays)
    if verbose:
        print(f"{path}:\n{format_manifest(decode_manifest(path, meta))}")
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
