"""restricted_loads on genuine pickles: every protocol, every plain dtype, Python 2 pickles such as CIFAR-10's; the
arrays come back as plain ndarrays, and the memory budget follows the pickle's size. (Hostile pickles are in
tests/bad_input/test_bad_input_io.py.)"""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pytest

from minidl.data.datasets import RestrictedUnpickler, restricted_loads

_ARRAYS = {
    "uint8": np.arange(12, dtype=np.uint8).reshape(3, 4),
    "float32": np.linspace(-1, 1, 6, dtype=np.float32),
    "int64": np.array([-(2**40), 0, 2**40]),
    "bool": np.array([True, False]),
    "complex": np.array([1 + 2j]),
    "str": np.array(["ab", "cde"]),
    "bytes": np.array([b"x", b"yz"]),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "big-endian": np.arange(3, dtype=">i4"),
    "0-d": np.array(2.5),
    "empty": np.zeros((0, 3)),
}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_genuine_pickles_round_trip_as_plain_arrays(protocol):
    obj = {
        "arrays": _ARRAYS,
        "scalars": [np.float64(1.5), np.int64(-3), np.bool_(True)],
        "plain": (1, 2.5, "s", b"b", None, {1, 2}, frozenset({3}), bytearray(b"ba"), [[]]),
        "dtype": np.dtype("<f4"),
    }
    blob = pickle.dumps(obj, protocol=protocol)
    back, trusted = restricted_loads(blob), pickle.loads(blob)  # plain pickle is the reference for genuine data
    for name in _ARRAYS:
        got, expected = back["arrays"][name], trusted["arrays"][name]
        assert type(got) is np.ndarray, name  # not the checked subclass used while unpickling
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert got.flags.f_contiguous == expected.flags.f_contiguous, name
        np.testing.assert_array_equal(got, _ARRAYS[name])
    assert back["scalars"] == [1.5, -3, True] and [type(v) for v in back["scalars"]] == [np.float64, np.int64, np.bool_]
    assert back["plain"] == obj["plain"] and back["dtype"] == np.dtype("<f4")


def test_a_python2_cifar_batch_loads():
    """CIFAR-10's python batches were written by Python 2's cPickle: arrays hold their bytes as Python 2 str."""
    data = bytes(range(256)) * 12  # 3072 bytes: one 32x32x3 image
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01K\x01M\x00\x0c\x86"
        b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
        + struct.pack("<i", len(data)) + data + b"tb"
    )  # fmt: skip
    blob = b"\x80\x02}(U\x04data" + array + b"U\x06labels]K\x07aU\x09filenamesX\x05\x00\x00\x00a.pngu."
    back = restricted_loads(blob)
    assert type(back["data"]) is np.ndarray and back["data"].shape == (1, 3072)
    assert back["data"].tobytes() == data and back["labels"] == [7]


def test_the_budget_follows_the_pickle_size_and_can_be_raised():
    blob = pickle.dumps(np.zeros(1_000_000, np.uint8), protocol=2)  # 1 MB of data in a ~1 MB pickle: within 8x
    assert restricted_loads(blob).shape == (1_000_000,)
    with pytest.raises(pickle.UnpicklingError, match=r"over the limit of 1000 bytes"):
        restricted_loads(blob, max_bytes=1000)
    unpickler = RestrictedUnpickler(io.BytesIO(blob), max_bytes=10**7, encoding="latin1")
    assert unpickler.load().shape == (1_000_000,)


def _py2_array(data_op: bytes, n: int) -> bytes:
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01J" + struct.pack("<i", n)
        + b"\x85cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + data_op + b"tb"
    )  # fmt: skip


def test_arrays_sharing_one_memoized_buffer_are_charged_for_every_copy():
    """NumPy copies an array's bytes out of the pickle; one string memoized once and reused by 500 arrays would be
    copied 500 times (2.5 MB from 50 KB), so each copy is charged to the budget."""
    n = 5000
    first = _py2_array(b"T" + struct.pack("<i", n) + bytes(n) + b"q\x01", n)
    blob = b"\x80\x02(" + first + _py2_array(b"h\x01", n) * 499 + b"l."
    with pytest.raises(
        pickle.UnpicklingError, match=r"an array of shape \(5000,\) and dtype uint8 would bring .* over the limit"
    ):
        restricted_loads(blob, max_bytes=100 * n)
    back = restricted_loads(blob, max_bytes=500 * n)  # exactly the 500 copies
    assert len(back) == 500 and all(type(a) is np.ndarray and a.shape == (n,) for a in back)
