"""Bad input to saving, loading, the RNG state, dataset pickles and image decoding, one case per line: each raises a
clear error (never a silent acceptance), and the message names the function, what was expected and what was received.
Damaged files are built by hand; nothing here is allowed to allocate what a file merely claims."""

# One case per line, so a new case is one line and a failing id points at it: the long lines are deliberate.
# ruff: noqa: E501

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl import transforms as T
from minidl.data import TensorDataset
from minidl.data.datasets import (
    CIFAR10,
    MNIST,
    CIFAR10Sample,
    CorruptImageError,
    DogsVsCats,
    FashionMNIST,
    ImageFolder,
    UnsupportedImageError,
    pil_loader,
    restricted_loads,
)
from minidl.train import History

try:
    import safetensors  # noqa: F401

    HAS_SAFETENSORS = True
except ImportError:
    HAS_SAFETENSORS = False


# ---------------------------------------------------------------------------------------------- files built by hand
def write(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


def npz(d: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED, name: str = "bad.npz") -> Path:
    with zipfile.ZipFile(d / name, "w", compression=compression) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return d / name


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], payload: bytes, descr: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def checkpoint(d: Path, description: bytes | dict, arrays: dict | None = None) -> Path:
    """An .npz holding ``arrays`` and ``description`` as the __minidl__ member (raw bytes, or a dict as JSON)."""
    meta = description if isinstance(description, bytes) else json.dumps(description).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **(arrays or {}), __minidl__=np.frombuffer(meta, np.uint8))
    return write(d, "ckpt.npz", buffer.getvalue())


def tree(node) -> dict:
    return {"format": "minidl-checkpoint", "version": 1, "tree": node}


def duplicate_members(d: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("w.npy", npy_bytes(np.ones(2)))
        zf.writestr("w.npy", npy_bytes(np.zeros(2)))
    return write(d, "dup.npz", buffer.getvalue())


def forged_sizes(d: Path, compression: int, compressed: int | None = None, uncompressed: int | None = None) -> Path:
    """An .npz of one small member whose sizes in the central directory (the ones zipfile reads) are forged."""
    header = npy_header((2**29,), b"\0" * 32) if uncompressed else npy_header((4,), b"\0" * 32)
    path = npz(d, {"w.npy": header}, compression)
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    if compressed is not None:
        data[central + 20 : central + 24] = compressed.to_bytes(4, "little")
    if uncompressed is not None:
        data[central + 24 : central + 28] = uncompressed.to_bytes(4, "little")
    return write(d, "forged.npz", bytes(data))


def truncated(d: Path) -> Path:
    minidl.save({"w": np.ones(1000)}, d / "t.npz")
    return write(d, "t.npz", (d / "t.npz").read_bytes()[:700])


def safetensors_damaged(d: Path) -> Path:
    header = b'{"w": {"dtype": "F64", "shape": [1000000], "data_offsets": [0, 8000000]}}'
    return write(d, "w.safetensors", struct.pack("<Q", len(header)) + header + b"\0" * 8)


def safetensors_with_description(d: Path, description: str) -> Path:
    from safetensors.numpy import save_file

    save_file({"w": np.ones(2)}, str(d / "ckpt.safetensors"), metadata={"__minidl__": description})
    return d / "ckpt.safetensors"


def a_file(d: Path) -> Path:
    return write(d, "occupied", b"")


def rng_state(**changes) -> dict:
    state = minidl.get_rng_state()
    state = {**state, "state": dict(state["state"])}
    for key, value in changes.items():
        if key in ("state", "inc"):
            state["state"][key] = value
        elif value is KeyError:
            del state[key]
        else:
            state[key] = value
    return state


# pickles assembled opcode by opcode (protocol 2), as an attacker would
def py2_array_state(shape: tuple[int, ...], descr: bytes, data: bytes) -> bytes:
    dims = b"(" + b"".join(b"J" + struct.pack("<i", n) for n in shape) + b"t"
    return (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01" + dims
        + b"cnumpy\ndtype\nU" + bytes([len(descr)]) + descr + b"K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
        + struct.pack("<i", len(data)) + data + b"tb."
    )  # fmt: skip


BYTES_1GIB = b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R."
RECONSTRUCT_1GIB = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x40\x85U\x01b\x87R."
NDARRAY_CALL = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x40\x85\x85R."
MEMO_AMPLIFIED = (
    b"\x80\x02c_codecs\nencode\nq\x00X"
    + struct.pack("<I", 100_000)
    + b"a" * 100_000
    + b"q\x01("
    + b"h\x00h\x01U\x06latin1\x86R" * 100
    + b"l."
)

DTYPE_O_FLAGS_0 = (
    b"cnumpy\ndtype\nU\x01OK\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # flags forged to 0
)
FROMBUFFER_OBJECT = (
    b"\x80\x02cnumpy._core.numeric\n_frombuffer\n(C\x10" + b"A" * 16 + DTYPE_O_FLAGS_0 + b"K\x02\x85U\x01Ct" + b"R."
)
SCALAR_SHORT = b"\x80\x02cnumpy._core.multiarray\nscalar\ncnumpy\ndtype\nU\x02f8K\x00K\x01\x87RC\x02ab\x86R."


def trainer_resumes_from(d: Path, changes: dict):
    """Save a real training checkpoint with ``changes`` applied (None deletes an entry), then load it back."""
    from minidl import nn, optim
    from minidl.train import Trainer

    with minidl.fork_rng(0):  # initialize without drawing from the global generator (the test checks it is untouched)
        model = nn.Linear(2, 2)
    trainer = Trainer(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), progress=False, verbose=False)
    ckpt = trainer.checkpoint()
    for key, value in changes.items():
        ckpt.pop(key) if value is None else ckpt.__setitem__(key, value)
    minidl.save(ckpt, d / "train.npz")
    return trainer.load_checkpoint(d / "train.npz")


def image(d: Path, name: str, img: Image.Image) -> Path:
    img.save(d / name)
    return d / name


FLOAT_IMAGE = Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4), mode="F")
IMAGE_16BIT = Image.new("I;16", (4, 4), 40000)
INT32_IMAGE = Image.fromarray(np.arange(16, dtype=np.int32).reshape(4, 4) * 100_000, mode="I")
NEEDS_ST = pytest.mark.skipif(not HAS_SAFETENSORS, reason="needs safetensors")

# fmt: off
CASES = [
    # minidl.save: where the file goes, and what cannot be written without pickle
    pytest.param(lambda d: minidl.save({"w": np.ones(2)}, d), IsADirectoryError, r"^minidl\.save: expected the path of a file, got the folder /", id="save-to-a-folder"),
    pytest.param(lambda d: minidl.save({"w": np.ones(2)}, a_file(d) / "ckpt.npz"), NotADirectoryError, r"^minidl\.save: cannot create the folder .*occupied for ckpt\.npz: a part of that path is a file", id="save-under-a-file"),
    pytest.param(lambda d: minidl.save({"opt": {"x": {1, 2}}}, d / "c.npz"), TypeError, r"^minidl\.save: cannot save a set at opt\.x without pickle", id="save-a-set"),
    pytest.param(lambda d: minidl.save({"w": np.array([None])}, d / "c.npz"), TypeError, r"^minidl\.save: w is an object array, which cannot be saved without pickle", id="save-an-object-array"),
    pytest.param(lambda d: minidl.save({(1, 2): 3}, d / "c.npz"), TypeError, r"^minidl\.save: dict keys must be str or int, got \(1, 2\) at top level", id="save-a-tuple-key"),
    pytest.param(lambda d: History().save(d), IsADirectoryError, r"^History\.save: expected the path of a file, got the folder /", id="history-save-to-a-folder"),
    # minidl.load: what the file is
    pytest.param(lambda d: minidl.load(d / "missing.npz"), FileNotFoundError, r"^minidl\.load: no file at .*missing\.npz", id="load-missing"),
    pytest.param(lambda d: minidl.load(d), IsADirectoryError, r"^minidl\.load: .* is a folder; expected an \.npz or \.safetensors file", id="load-a-folder"),
    pytest.param(lambda d: minidl.load(write(d, "notes.npz", b"hello world\n")), ValueError, r"^minidl\.load: .*notes\.npz is not an \.npz or \.safetensors file \(expected a zip archive or a safetensors header; it starts with b'hello world\\n'\)", id="load-a-text-file"),
    pytest.param(lambda d: minidl.load(write(d, "empty.npz", b"")), ValueError, r"^minidl\.load: .*empty\.npz is empty; expected an \.npz or \.safetensors file", id="load-an-empty-file"),
    pytest.param(lambda d: minidl.load(write(d, "model.npz", pickle.dumps({"w": [1.0]}))), ValueError, r"^minidl\.load: refused .*model\.npz: it holds pickled objects, which could run code", id="load-a-pickle"),
    pytest.param(lambda d: minidl.load(write(d, "w.npz", npy_bytes(np.ones(3)))), ValueError, r"^minidl\.load: .*w\.npz is a single \.npy array, not an \.npz or \.safetensors file; read it with numpy\.load", id="load-a-lone-npy"),
    pytest.param(lambda d: minidl.load(truncated(d)), ValueError, r"^minidl\.load: .*t\.npz is truncated or not an \.npz file", id="load-truncated-npz"),
    pytest.param(lambda d: minidl.load(safetensors_damaged(d)), ValueError, r"^minidl\.load: .*w\.safetensors is truncated or not a \.safetensors file", id="load-damaged-safetensors", marks=NEEDS_ST),
    # minidl.load: the members of an .npz, checked before anything is allocated
    pytest.param(lambda d: minidl.load(npz(d, {"w.npy": npy_bytes(np.array([{"x": 1}], dtype=object))})), ValueError, r"^minidl\.load: refused .*bad\.npz: it holds pickled objects", id="npz-object-member"),
    pytest.param(lambda d: minidl.load(npz(d, {"w.npy": npy_header((2**39,), b"\0" * 64)})), ValueError, r"^minidl\.load: .*bad\.npz: member 'w\.npy' claims an array of shape \(549755813888,\) and dtype float64 \(4398046511104 bytes\), but holds only 64 bytes after its header", id="npy-header-claims-4-tib"),
    pytest.param(lambda d: minidl.load(npz(d, {"w.npy": npy_header((3, 4), b"\0" * 95, "<i8")})), ValueError, r"^minidl\.load: .*member 'w\.npy' claims an array of shape \(3, 4\) and dtype int64 \(96 bytes\), but holds only 95 bytes", id="npy-one-byte-short"),
    pytest.param(lambda d: minidl.load(forged_sizes(d, zipfile.ZIP_DEFLATED, uncompressed=2**32 - 1)), ValueError, r"^minidl\.load: .*forged\.npz: member 'w\.npy' claims 4294967295 bytes from \d+ compressed bytes, more than deflate can expand to \(at most 1032:1\)", id="deflated-claims-4-gib"),
    pytest.param(lambda d: minidl.load(forged_sizes(d, zipfile.ZIP_STORED, uncompressed=2**32 - 1)), ValueError, r"^minidl\.load: .*forged\.npz: member 'w\.npy' is stored uncompressed, so its size should equal its stored size \d+, got 4294967295", id="stored-claims-4-gib"),
    pytest.param(lambda d: minidl.load(forged_sizes(d, zipfile.ZIP_DEFLATED, compressed=2**32 - 1, uncompressed=2**32 - 1)), ValueError, r"^minidl\.load: .*forged\.npz: member 'w\.npy' claims 4294967295 stored bytes, but the whole file holds only \d+", id="deflated-claims-4-gib-stored"),
    pytest.param(lambda d: minidl.load(npz(d, {"w.npy": npy_bytes(np.ones(2))}, zipfile.ZIP_BZIP2)), ValueError, r"^minidl\.load: .*member 'w\.npy' uses zip compression method 12; expected stored \(0\) or deflated \(8\)", id="bzip2-member"),
    pytest.param(lambda d: minidl.load(npz(d, {"readme.txt": b"hello"})), ValueError, r"^minidl\.load: .*member 'readme\.txt' is not a \.npy array", id="non-npy-member"),
    pytest.param(lambda d: minidl.load(duplicate_members(d)), ValueError, r"^minidl\.load: .*dup\.npz holds two members named 'w\.npy'; expected one", id="duplicate-members"),
    # minidl.load: the JSON description of a checkpoint
    pytest.param(lambda d: minidl.load(npz(d, {"__minidl__.npy": npy_bytes(np.ones(3))})), ValueError, r"^minidl\.load: .* has a damaged checkpoint description: member '__minidl__' should be a 1-D uint8 array of UTF-8 JSON, got dtype float64 and shape \(3,\)", id="description-wrong-dtype"),
    pytest.param(lambda d: minidl.load(checkpoint(d, b"\xff\xfe{}")), ValueError, r"^minidl\.load: .*ckpt\.npz has a damaged checkpoint description: not UTF-8", id="description-not-utf8"),
    pytest.param(lambda d: minidl.load(checkpoint(d, b"{'format': 1")), ValueError, r"^minidl\.load: .*ckpt\.npz has a damaged checkpoint description: not valid JSON", id="description-not-json"),
    pytest.param(lambda d: minidl.load(checkpoint(d, b"[1, 2]")), ValueError, r"^minidl\.load: .* damaged checkpoint description: expected a JSON object, got list", id="description-a-list"),
    pytest.param(lambda d: minidl.load(checkpoint(d, {"format": "other"})), ValueError, r"^minidl\.load: .*ckpt\.npz is not a minidl checkpoint \(format 'other', expected 'minidl-checkpoint'\)", id="description-other-format"),
    pytest.param(lambda d: minidl.load(checkpoint(d, {"format": "minidl-checkpoint", "version": "1", "tree": 1})), ValueError, r"^minidl\.load: .* damaged checkpoint description: expected a positive int 'version', got '1'", id="description-version-str"),
    pytest.param(lambda d: minidl.load(checkpoint(d, {"format": "minidl-checkpoint", "version": 99, "tree": 1})), ValueError, r"^minidl\.load: .* was written by a newer minidl \(format 99, this one reads up to 1\)", id="description-version-newer"),
    pytest.param(lambda d: minidl.load(checkpoint(d, {"format": "minidl-checkpoint", "version": 1})), ValueError, r"^minidl\.load: .* damaged checkpoint description: expected the keys 'format', 'version' and 'tree', got \['format', 'version'\]", id="description-no-tree"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__dict__": [["w", {"__array__": "nope"}]]}), {"w": np.ones(2)})), ValueError, r"^minidl\.load: .* damaged checkpoint description: at tree\.w: expected the name of one of the file's 1 arrays, got 'nope'", id="description-unknown-array"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__array__": 3}))), ValueError, r"^minidl\.load: .* at tree: expected the name of one of the file's 0 arrays, got 3", id="description-array-name-int"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__float__": "1e999999"}))), ValueError, r"^minidl\.load: .* at tree: expected __float__ 'nan', 'inf' or '-inf', got '1e999999'", id="description-bad-float"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__tuple__": 7}))), ValueError, r"^minidl\.load: .* at tree: expected a list in __tuple__, got int", id="description-tuple-not-list"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__dict__": [["a"]]}))), ValueError, r"^minidl\.load: .* at tree: expected __dict__ to be a list of \[key, value\] pairs, got \[\['a'\]\]", id="description-dict-not-pairs"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__dict__": [["a", 1], ["b", 2]], "__int_keys__": [True]}))), ValueError, r"^minidl\.load: .* at tree: expected __int_keys__ to be 2 booleans, got \[True\]", id="description-int-keys-short"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__dict__": [["a", 1]], "__int_keys__": [True]}))), ValueError, r"^minidl\.load: .* at tree: expected a key of type int, got 'a'", id="description-int-key-is-str"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__dict__": [[1, 1]]}))), ValueError, r"^minidl\.load: .* at tree: expected a key of type str, got 1", id="description-str-key-is-int"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__dict__": [["a", 1], ["a", 2]]}))), ValueError, r"^minidl\.load: .* at tree: the key 'a' appears twice", id="description-duplicate-key"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__set__": [1]}))), ValueError, r"^minidl\.load: .* at tree: expected an entry __array__, __float__, __tuple__ or __dict__, got the keys \['__set__'\]", id="description-unknown-entry"),
    pytest.param(lambda d: minidl.load(checkpoint(d, tree({"__array__": "w", "extra": 1}), {"w": np.ones(2)})), ValueError, r"^minidl\.load: .* at tree: expected an entry __array__, __float__, __tuple__ or __dict__, got the keys \['__array__', 'extra'\]", id="description-array-extra-key"),
    pytest.param(lambda d: minidl.load(checkpoint(d, b'{"format": "minidl-checkpoint", "version": 1, "tree": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")), ValueError, r"^minidl\.load: .*ckpt\.npz has a damaged checkpoint description: nested too deeply", id="description-nested-100000-deep"),
    pytest.param(lambda d: minidl.load(safetensors_with_description(d, "{not json")), ValueError, r"^minidl\.load: .*ckpt\.safetensors has a damaged checkpoint description: not valid JSON", id="safetensors-description-not-json", marks=NEEDS_ST),
    pytest.param(lambda d: minidl.load(safetensors_with_description(d, json.dumps(tree({"__array__": "v"})))), ValueError, r"^minidl\.load: .*ckpt\.safetensors has a damaged checkpoint description: at tree: expected the name of one of the file's 1 arrays, got 'v'", id="safetensors-description-unknown-array", marks=NEEDS_ST),
    # Trainer.load_checkpoint: every entry checked before anything is restored
    pytest.param(lambda d: trainer_resumes_from(d, {"format": None}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz is not a training checkpoint \(was it a bare state dict\?\)", id="trainer-bare-dict"),
    pytest.param(lambda d: trainer_resumes_from(d, {"rng": None, "history": None}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz lacks the entries \['rng', 'history'\]; expected a checkpoint written by Trainer\.save_checkpoint or ModelCheckpoint", id="trainer-missing-entries"),
    pytest.param(lambda d: trainer_resumes_from(d, {"epoch": "3"}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz: entry 'epoch' should be int, got str \('3'\)", id="trainer-epoch-str"),
    pytest.param(lambda d: trainer_resumes_from(d, {"model": [1, 2]}), ValueError, r"^Trainer\.load_checkpoint: .*: entry 'model' should be dict, got list \(\[1, 2\]\)", id="trainer-model-list"),
    pytest.param(lambda d: trainer_resumes_from(d, {"rng": {"bit_generator": "PCG64"}}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz: the 'rng' entry cannot be restored \(ValueError: set_rng_state: got the keys \{'bit_generator': '\.\.\.'\}, expected", id="trainer-rng-damaged"),
    pytest.param(lambda d: trainer_resumes_from(d, {"epoch": -3}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz: entry 'epoch' should be >= 0, got -3", id="trainer-epoch-negative"),
    pytest.param(lambda d: trainer_resumes_from(d, {"loaders": {"train": {"epoch": "x", "seed": None}}}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz: entry 'loaders' should map 'train' and 'val' to None or \{'epoch': int >= 0, 'seed': int or None\}, got 'train': \{'epoch': 'x'", id="trainer-loader-epoch-str"),
    pytest.param(lambda d: trainer_resumes_from(d, {"loaders": {"train": 5}}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz: entry 'loaders' should map .*, got 'train': 5", id="trainer-loader-int"),
    pytest.param(lambda d: trainer_resumes_from(d, {"history": {"rows": []}}), ValueError, r"^Trainer\.load_checkpoint: .*train\.npz: the 'history' entry cannot be restored \(KeyError: 'records'\)", id="trainer-history-damaged"),
    pytest.param(lambda d: trainer_resumes_from(d, {"model": {"weight": np.zeros((3, 3), np.float32)}}), RuntimeError, r"^Trainer\.load_checkpoint: .*train\.npz: the 'model' entry cannot be restored: error\(s\) loading state_dict into Linear:\n  missing key\(s\): bias\n  size mismatch for weight: the file has shape \(3, 3\), the model expects \(2, 2\)", id="trainer-model-wrong-shape"),
    # set_rng_state: checked field by field before the generator changes
    pytest.param(lambda d: minidl.set_rng_state(5), TypeError, r"^set_rng_state: got a value of type int, not a dict; expected a state as get_rng_state\(\) returns: \{'bit_generator': 'PCG64'", id="rng-state-int"),
    pytest.param(lambda d: minidl.set_rng_state({}), ValueError, r"^set_rng_state: got bit_generator None, but minidl's generator is 'PCG64'; expected a state as get_rng_state\(\) returns", id="rng-state-empty"),
    pytest.param(lambda d: minidl.set_rng_state(np.random.MT19937(0).state), ValueError, r"^set_rng_state: got bit_generator 'MT19937', but minidl's generator is 'PCG64'", id="rng-state-mt19937"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(has_uint32=KeyError)), ValueError, r"^set_rng_state: got the keys \{'bit_generator': '\.\.\.', 'state': \{'state': '\.\.\.', 'inc': '\.\.\.'\}, 'uinteger': '\.\.\.'\}, expected \{.*'has_uint32'", id="rng-state-missing-key"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(extra=1)), ValueError, r"^set_rng_state: got the keys \{.*'extra': '\.\.\.'\}, expected", id="rng-state-extra-key"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(inc="x")), ValueError, r"^set_rng_state: state\['state'\]\['inc'\] is a str \('x'\), expected an int", id="rng-state-inc-str"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(state=-1)), ValueError, r"^set_rng_state: state\['state'\]\['state'\] is -1, outside \[0, 340282366920938463463374607431768211456\)", id="rng-state-negative"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(state=2**128)), ValueError, r"^set_rng_state: state\['state'\]\['state'\] is 340282366920938463463374607431768211456, outside \[0, 340282366920938463463374607431768211456\)", id="rng-state-2-pow-128"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(has_uint32=2)), ValueError, r"^set_rng_state: state\['has_uint32'\] is 2, outside \[0, 2\)", id="rng-state-has-uint32-2"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(uinteger=True)), ValueError, r"^set_rng_state: state\['uinteger'\] is a bool \(True\), expected an int", id="rng-state-bool"),
    pytest.param(lambda d: minidl.set_rng_state(rng_state(uinteger=1.5)), ValueError, r"^set_rng_state: state\['uinteger'\] is a float \(1\.5\), expected an int", id="rng-state-float"),
    # restricted_loads (CIFAR-10's python batches): no code, and nothing allocated beyond what the pickle can hold
    pytest.param(lambda d: restricted_loads(pickle.dumps(print)), pickle.UnpicklingError, r"^RestrictedUnpickler: refusing to load global builtins\.print: only plain data and NumPy arrays are allowed", id="pickle-global-print"),
    pytest.param(lambda d: restricted_loads(BYTES_1GIB), pickle.UnpicklingError, r"^RestrictedUnpickler: bytes\(1073741824\) would bring the memory the pickle asks for to 1073741824 bytes, over the limit of 1048808 bytes \(the pickle holds 29 bytes\)", id="pickle-bytes-1-gib"),
    pytest.param(lambda d: restricted_loads(RECONSTRUCT_1GIB), pickle.UnpicklingError, r"^RestrictedUnpickler: an array of shape \(1073741824,\) would bring the memory the pickle asks for to 1073741824 bytes, over the limit of \d+ bytes", id="pickle-reconstruct-1-gib"),
    pytest.param(lambda d: restricted_loads(NDARRAY_CALL), pickle.UnpicklingError, r"^RestrictedUnpickler: refusing to call numpy\.ndarray directly", id="pickle-ndarray-call"),
    pytest.param(lambda d: restricted_loads(MEMO_AMPLIFIED), pickle.UnpicklingError, r"^RestrictedUnpickler: _codecs\.encode\(\) of a str would bring the memory the pickle asks for to \d+ bytes, over the limit of \d+ bytes \(the pickle holds 101430 bytes\)", id="pickle-memo-amplified"),
    pytest.param(lambda d: restricted_loads(b"\x80\x02c_codecs\nencode\nC\x02abU\x03hex\x86R."), pickle.UnpicklingError, r"^RestrictedUnpickler: expected _codecs\.encode\(str, 'latin1'\), got _codecs\.encode\(bytes, 'hex'\)", id="pickle-codec-hex"),
    pytest.param(lambda d: restricted_loads(py2_array_state((3,), b"O", b"")), pickle.UnpicklingError, r"^RestrictedUnpickler: expected an array of numbers, bytes or str, got dtype dtype\(.O.\) \(object and structured arrays are refused\)", id="pickle-object-array"),
    pytest.param(lambda d: restricted_loads(py2_array_state((3,), b"i4", b"abc")), pickle.UnpicklingError, r"^RestrictedUnpickler: an array of shape \(3,\) and dtype int32 needs 12 bytes of data, got str of length 3", id="pickle-array-data-short"),
    pytest.param(lambda d: restricted_loads(py2_array_state((-1,), b"u1", b"")), pickle.UnpicklingError, r"^RestrictedUnpickler: expected an array shape of ints >= 0, got \(-1,\)", id="pickle-array-negative-shape"),
    pytest.param(lambda d: restricted_loads(FROMBUFFER_OBJECT), pickle.UnpicklingError, r"^RestrictedUnpickler: expected an array of numbers, bytes or str, got dtype dtype\(.O.\)", id="pickle-frombuffer-object-dtype"),
    pytest.param(lambda d: restricted_loads(SCALAR_SHORT), pickle.UnpicklingError, r"^RestrictedUnpickler: a float64 scalar needs 8 bytes, got bytes of length 2", id="pickle-scalar-short"),
    # pil_loader: images whose pixels cannot become 8-bit RGB by a known rule, and broken files
    pytest.param(lambda d: pil_loader(image(d, "depth.tif", FLOAT_IMAGE)), UnsupportedImageError, r"^pil_loader: .*depth\.tif has 32-bit float pixels \(PIL mode 'F'\); expected an 8-bit or 16-bit image", id="image-float-tiff"),
    pytest.param(lambda d: pil_loader(image(d, "counts.tif", INT32_IMAGE)), UnsupportedImageError, r"^pil_loader: .*counts\.tif has 32-bit integer pixels \(PIL mode 'I'\); expected an 8-bit or 16-bit image", id="image-int32-tiff"),
    pytest.param(lambda d: pil_loader(write(d, "broken.png", b"\x89PNG\r\n\x1a\nnot really")), CorruptImageError, r"^pil_loader: cannot decode image .*broken\.png: ", id="image-broken-png"),
    pytest.param(lambda d: pil_loader(123), TypeError, r"^pil_loader: expected a path \(str, bytes or os\.PathLike\) or a binary file object, got int 123$", id="image-source-int"),
    # datasets: flags are bools (bool('test') is True: it would pick the training split), roots are folders
    pytest.param(lambda d: CIFAR10Sample("test"), TypeError, r"^CIFAR10Sample: train must be a bool, got str 'test'$", id="cifar-sample-train-str"),
    pytest.param(lambda d: MNIST(d, train="no"), TypeError, r"^MNIST: train must be a bool, got str 'no'$", id="mnist-train-str"),
    pytest.param(lambda d: FashionMNIST(d, download=1), TypeError, r"^FashionMNIST: download must be a bool, got int 1$", id="fashion-mnist-download-int"),
    pytest.param(lambda d: DogsVsCats(d, train=0), TypeError, r"^DogsVsCats: train must be a bool, got int 0$", id="dogs-vs-cats-train-int"),
    pytest.param(lambda d: DogsVsCats(d, skip_corrupt="yes"), TypeError, r"^DogsVsCats: skip_corrupt must be a bool, got str 'yes'$", id="dogs-vs-cats-skip-corrupt-str"),
    pytest.param(lambda d: ImageFolder(d, allow_empty=None), TypeError, r"^ImageFolder: allow_empty must be a bool, got NoneType None$", id="image-folder-allow-empty-none"),
    pytest.param(lambda d: MNIST(write(d, "file.png", b"png")), NotADirectoryError, r"^MNIST: root .*file\.png is a file \(expected the folder that holds the dataset's files, or where to put them\)$", id="mnist-root-a-file"),
    pytest.param(lambda d: CIFAR10(write(d, "cifar.tar.gz", b"x")), NotADirectoryError, r"^CIFAR10: root .*cifar\.tar\.gz is a file \(expected the folder", id="cifar-root-a-file"),
    pytest.param(lambda d: ImageFolder(write(d, "a.jpg", b"x")), NotADirectoryError, r"^ImageFolder: root .*a\.jpg is a file \(expected the folder", id="image-folder-root-a-file"),
    pytest.param(lambda d: DogsVsCats(write(d, "train.zip", b"not a zip")), NotADirectoryError, r"^DogsVsCats: root .*train\.zip is a file but not a zip archive \(expected a folder, or Kaggle's train\.zip", id="dogs-vs-cats-root-not-a-zip"),
    pytest.param(lambda d: TensorDataset([1, 2, 3]), TypeError, r"^TensorDataset: argument 0 must be an array \(NumPy or of a backend\) with a first \(sample\) dimension, got a list \(convert it with np\.asarray\)$", id="tensor-dataset-list"),
    pytest.param(lambda d: TensorDataset(np.zeros(3), np.float32(1)), TypeError, r"^TensorDataset: argument 1 must be an array with a first \(sample\) dimension, got a 0-d float32 \(shape \(\)\)$", id="tensor-dataset-scalar"),
    # colour transforms on PIL images: 8-bit values only (PIL would clip 16/32-bit ones), modes PIL can adjust
    pytest.param(lambda d: T.ColorJitter(0.4)(IMAGE_16BIT), TypeError, r"^ColorJitter: expected an 8-bit image \(a PIL image of mode L, RGB, RGBA, \.\.\. or a uint8 array\), got a 16-bit PIL image \(mode 'I;16'\), whose values PIL would clip to 0\.\.255", id="colorjitter-16-bit"),
    pytest.param(lambda d: T.Grayscale()(FLOAT_IMAGE), TypeError, r"^rgb_to_grayscale: expected an 8-bit image .*, got a 32-bit float PIL image \(mode 'F'\)", id="grayscale-float"),
    pytest.param(lambda d: T.functional.adjust_brightness(Image.new("P", (4, 4)), 1.5), ValueError, r"^adjust_brightness: expected a PIL image of mode L, LA, RGB or RGBA, got mode 'P', which PIL cannot adjust", id="brightness-palette"),
    pytest.param(lambda d: T.Grayscale()(Image.new("LAB", (4, 4))), ValueError, r"^rgb_to_grayscale: expected a PIL image that converts to L \(.*\), got mode 'LAB'", id="grayscale-lab"),
]
# fmt: on


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_bad_io_input_is_refused_with_a_message_naming_the_function_expected_and_received(tmp_path, call, error, match):
    state = minidl.get_rng_state()
    with pytest.raises(error, match=match):
        call(tmp_path)
    assert minidl.get_rng_state() == state  # a refused RNG state never reached the generator
