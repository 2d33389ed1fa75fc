"""Reading what :func:`minidl.save` wrote, defensively: the reading half of :mod:`minidl.serialization`.

A file is recognised by its first bytes, not its name: a zip archive is read as ``.npz``, an 8-byte header length
followed by ``{`` as ``.safetensors``. Anything else (a text file, a pickle, a lone ``.npy``) is refused with a
message saying what it is.

Nothing is allocated on the file's word alone. Every ``.npy`` member's header (shape x itemsize) is checked against
the bytes the member holds before its array is allocated; the member's sizes in the zip directory are checked too:
its stored bytes fit in the file, a stored member is as large as its stored bytes, and a deflated one claims at most
what deflate can expand them to (1032:1). So a 100-byte file cannot ask for a 4 TiB array. The JSON
description of a checkpoint is validated node by node; every way it can be damaged (a missing or unknown key, a
wrong type, a reference to an array the file does not hold, invalid UTF-8, nesting too deep) becomes one
``ValueError`` that names the file and the node.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

META_KEY = "__minidl__"
FORMAT = "minidl-checkpoint"
VERSION = 1
_DEFLATE_MAX_RATIO = 1032  # the most deflate can expand one compressed byte to


class _Damaged(Exception):
    """A damaged checkpoint description; load turns it into a ValueError naming the file."""


def sniff(path: Path, where: str = "minidl.load") -> str:
    """``"npz"`` or ``"safetensors"`` from the first bytes of ``path``; a ``ValueError`` saying what it is otherwise.

    ``where`` (in this function and the others that take it) is the public function named in the messages."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1:
        return "safetensors"
    if not head:
        raise ValueError(f"{where}: {path} is empty; expected an .npz or .safetensors file")
    if head[:1] == b"\x80":  # the PROTO opcode every pickle of protocol 2 or later starts with
        raise ValueError(f"{where}: refused {path}: it holds pickled objects, which could run code")
    if head[:6] == b"\x93NUMPY":
        raise ValueError(
            f"{where}: {path} is a single .npy array, not an .npz or .safetensors file; read it with numpy.load"
        )
    raise ValueError(f"{where}: {path} is not an .npz or .safetensors file (expected a zip archive or a "
                     f"safetensors header; it starts with {head!r})")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- .npz
def _npy_header(fp: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _ = np.lib.format.read_magic(fp)
    if major == 1:
        return np.lib.format.read_array_header_1_0(fp)
    if major == 2:
        return np.lib.format.read_array_header_2_0(fp)
    raise ValueError(f"unsupported .npy format version {major}")


def _check_member(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int, where: str = "minidl.load"
) -> None:
    """Raise unless ``info``'s array fits in the bytes it holds (before anything is allocated for it)."""
    name = info.filename
    if info.compress_size > archive_size:
        raise ValueError(
            f"{where}: {path}: member {name!r} claims {info.compress_size} stored bytes, but the whole file holds "
            f"only {archive_size}"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise ValueError(
            f"{where}: {path}: member {name!r} is stored uncompressed, so its size should equal its stored size "
            f"{info.compress_size}, got {info.file_size}"
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(
            f"{where}: {path}: member {name!r} uses zip compression method {info.compress_type}; expected "
            f"stored ({zipfile.ZIP_STORED}) or deflated ({zipfile.ZIP_DEFLATED}), as numpy.savez writes"
        )
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > info.compress_size * _DEFLATE_MAX_RATIO + 64:
        raise ValueError(
            f"{where}: {path}: member {name!r} claims {info.file_size} bytes from {info.compress_size} "
            f"compressed bytes, more than deflate can expand to (at most {_DEFLATE_MAX_RATIO}:1)"
        )
    try:
        with zf.open(info) as fp:
            try:
                shape, _, dtype = _npy_header(fp)
            except ValueError as err:
                raise ValueError(f"{where}: {path}: member {name!r} is not a .npy array ({err})") from None
            if dtype.hasobject:
                raise ValueError(f"{where}: refused {path}: it holds pickled objects, which could run code")
            needed = math.prod(shape) * dtype.itemsize
            available = info.file_size - fp.tell()
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:  # (a damaged header, or a small member's CRC)
        raise ValueError(f"{where}: {path} is damaged: member {name!r} cannot be read ({err})") from None
    if needed > available:
        raise ValueError(
            f"{where}: {path}: member {name!r} claims an array of shape {shape} and dtype {dtype} "
            f"({needed} bytes), but holds only {available} bytes after its header"
        )


def _check_entry_count(path: Path, zf: zipfile.ZipFile, where: str = "minidl.load") -> None:
    """Raise when the zip's end record declares more (or fewer) members than its directory yielded: a damaged
    directory entry can hide the members after it without any error from ``zipfile`` (a member silently lost).
    Only for a plain end record (no archive comment, no zip64: what ``numpy.savez`` writes)."""
    with open(path, "rb") as fp:
        fp.seek(max(0, path.stat().st_size - 22))
        end = fp.read(22)
    if len(end) != 22 or end[:4] != b"PK\x05\x06" or end[20:22] != b"\x00\x00":
        return
    declared = int.from_bytes(end[10:12], "little")
    if declared != 0xFFFF and declared != len(zf.infolist()):
        raise ValueError(
            f"{where}: {path} is damaged: its end record declares {declared} members, its directory lists "
            f"{len(zf.infolist())}"
        )


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"minidl.load: {path} is truncated or not an .npz file ({err})") from None
    arrays: dict[str, np.ndarray] = {}
    archive_size = path.stat().st_size
    with zf:
        _check_entry_count(path, zf)
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in arrays:
                raise ValueError(f"minidl.load: {path} holds two members named {info.filename!r}; expected one")
            _check_member(path, zf, info, archive_size)
            try:
                with zf.open(info) as fp:
                    arrays[key] = np.lib.format.read_array(fp, allow_pickle=False)
            except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as err:
                raise ValueError(f"minidl.load: {path} is truncated or not an .npz file ({err})") from None
    meta = arrays.pop(META_KEY, None)
    if meta is None:
        return arrays, None
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise ValueError(
            f"minidl.load: {path} has a damaged checkpoint description: member {META_KEY!r} should be a 1-D uint8 "
            f"array of UTF-8 JSON, got dtype {meta.dtype} and shape {meta.shape}"
        )
    return arrays, _utf8(path, meta.tobytes())


def read_npz_description(path: Path, where: str = "minidl.load") -> str | None:
    """Only the JSON description of an ``.npz`` (None when it has none): its arrays are not read."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{where}: {path} is truncated or not an .npz file ({err})") from None
    with zf:
        try:
            info = zf.getinfo(META_KEY + ".npy")
        except KeyError:
            return None
        _check_member(path, zf, info, path.stat().st_size, where)
        try:
            with zf.open(info) as fp:
                meta = np.lib.format.read_array(fp, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(f"{where}: {path} is truncated or not an .npz file ({err})") from None
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise ValueError(
            f"{where}: {path} has a damaged checkpoint description: member {META_KEY!r} should be a 1-D uint8 "
            f"array of UTF-8 JSON, got dtype {meta.dtype} and shape {meta.shape}"
        )
    return _utf8(path, meta.tobytes(), where)


def _utf8(path: Path, data: bytes, where: str = "minidl.load") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: {path} has a damaged checkpoint description: not UTF-8 ({err})") from None


# --------------------------------------------------------------------------------------------------- .safetensors
def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ImportError(
            "loading .safetensors needs the safetensors package: pip install minidl[safetensors]"
        ) from None
    try:  # the library checks every tensor's offsets against the file size before reading it
        with safe_open(str(path), framework="numpy") as f:
            meta = (f.metadata() or {}).get(META_KEY)
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"minidl.load: {path} is truncated or not a .safetensors file ({err})") from None
    return arrays, meta


def read_safetensors_description(path: Path, where: str = "minidl.load") -> str | None:
    """Only the JSON description of a ``.safetensors`` file (None when it has none): its tensors are not read."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise ImportError(
            "loading .safetensors needs the safetensors package: pip install minidl[safetensors]"
        ) from None
    try:
        with safe_open(str(path), framework="numpy") as f:
            return (f.metadata() or {}).get(META_KEY)
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"{where}: {path} is truncated or not a .safetensors file ({err})") from None


# --------------------------------------------------------------------------------------------- the JSON description
def decode_manifest(path: Path, meta: str | None, where: str = "minidl.load") -> dict[str, Any] | None:
    """The reproducibility manifest in the description ``meta`` (None for a file written without one)."""
    if meta is None:
        return None
    try:
        info = json.loads(meta)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: {path} has a damaged checkpoint description: not valid JSON ({err})") from None
    if not isinstance(info, dict) or "manifest" not in info:
        return None
    manifest = info["manifest"]
    if not isinstance(manifest, dict) or not all(
        isinstance(v, (str, int, float, bool)) or v is None for v in manifest.values()
    ):
        raise ValueError(
            f"{where}: {path} has a damaged checkpoint description: expected 'manifest' to be an object of "
            f"strings, numbers, booleans and nulls, got {manifest!r:.80}"
        )
    return manifest


def decode_description(path: Path, meta: str, arrays: dict[str, np.ndarray]) -> Any:
    """The object :func:`minidl.save` described in ``meta``, its arrays taken from ``arrays``."""
    try:
        try:
            info = json.loads(meta)
        except json.JSONDecodeError as err:
            raise _Damaged(f"not valid JSON ({err})") from None
        if not isinstance(info, dict):
            raise _Damaged(f"expected a JSON object, got {type(info).__name__}")
        if info.get("format") != FORMAT:
            raise ValueError(f"minidl.load: {path} is not a minidl checkpoint (format {info.get('format')!r:.60}, "
                             f"expected {FORMAT!r})")  # fmt: skip
        version = info.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _Damaged(f"expected a positive int 'version', got {version!r:.60}")
        if version > VERSION:
            raise ValueError(
                f"minidl.load: {path} was written by a newer minidl (format {version}, this one reads up to {VERSION})"
            )
        if "tree" not in info:
            raise _Damaged(f"expected the keys 'format', 'version' and 'tree', got {sorted(info)}")
        return _decode(info["tree"], arrays, "tree")
    except _Damaged as err:
        raise ValueError(f"minidl.load: {path} has a damaged checkpoint description: {err}") from None
    except RecursionError:
        raise ValueError(f"minidl.load: {path} has a damaged checkpoint description: nested too deeply") from None


def _decode(node: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, arrays, f"{where}[{i}]") for i, v in enumerate(node)]
    keys = sorted(node)  # JSON has no other types: node is a dict
    if keys == ["__array__"]:
        name = node["__array__"]
        if not isinstance(name, str) or name not in arrays:
            raise _Damaged(f"at {where}: expected the name of one of the file's {len(arrays)} arrays, got {name!r:.80}")
        return arrays[name]
    if keys == ["__float__"]:
        text = node["__float__"]
        if text not in ("nan", "inf", "-inf"):
            raise _Damaged(f"at {where}: expected __float__ 'nan', 'inf' or '-inf', got {text!r:.80}")
        return float(text)
    if keys == ["__tuple__"]:
        items = node["__tuple__"]
        if not isinstance(items, list):
            raise _Damaged(f"at {where}: expected a list in __tuple__, got {type(items).__name__}")
        return tuple(_decode(v, arrays, f"{where}[{i}]") for i, v in enumerate(items))
    if keys in (["__dict__"], ["__dict__", "__int_keys__"]):
        return _decode_dict(node, arrays, where)
    raise _Damaged(f"at {where}: expected an entry __array__, __float__, __tuple__ or __dict__, got the keys {keys}")


def _decode_dict(node: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> OrderedDict:
    items = node["__dict__"]
    if not isinstance(items, list) or not all(isinstance(it, list) and len(it) == 2 for it in items):
        raise _Damaged(f"at {where}: expected __dict__ to be a list of [key, value] pairs, got {items!r:.80}")
    int_keys = node.get("__int_keys__", [False] * len(items))
    if not isinstance(int_keys, list) or len(int_keys) != len(items) or not all(isinstance(b, bool) for b in int_keys):
        raise _Damaged(f"at {where}: expected __int_keys__ to be {len(items)} booleans, got {int_keys!r:.80}")
    out: OrderedDict = OrderedDict()
    for (key, value), is_int in zip(items, int_keys, strict=True):
        expected = int if is_int else str
        if not isinstance(key, expected) or isinstance(key, bool):
            raise _Damaged(f"at {where}: expected a key of type {expected.__name__}, got {key!r:.80}")
        if key in out:
            raise _Damaged(f"at {where}: the key {key!r:.80} appears twice")
        out[key] = _decode(value, arrays, f"{where}.{key}")
    return out
