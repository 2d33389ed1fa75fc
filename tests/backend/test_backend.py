"""The backend seam: selection, context manager, errors, array ownership."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl.backend import backend_for, get_array_module, to_numpy


def test_default_backend_is_numpy_reference():
    with minidl.use_backend("numpy") as be:
        assert minidl.get_backend() is be
        assert be.name == "numpy" and be.xp is np and be.device == "cpu"


def test_use_backend_restores_previous_even_on_error():
    before = minidl.get_backend()
    with pytest.raises(KeyError):
        with minidl.use_backend("numpy"):
            raise KeyError("boom")
    assert minidl.get_backend() is before


def test_set_backend_accepts_aliases_case_insensitively():
    before = minidl.get_backend()
    try:
        assert minidl.set_backend("CPU").name == "numpy"
    finally:
        minidl.set_backend(before.name)


@pytest.mark.parametrize("bad", ["tensorflow", "", "numpyy"])
def test_unknown_backend_names_the_choices(bad):
    with pytest.raises(ValueError, match=r"unknown backend .*choose one of \[.*'numpy'"):
        minidl.set_backend(bad)


def test_backend_name_must_be_a_string():
    with pytest.raises(TypeError, match="backend name must be a str"):
        minidl.set_backend(3)


def test_backend_for_rejects_non_arrays():
    name = minidl.get_backend().name
    with pytest.raises(TypeError, match=f"expected an array of the '{name}' backend, got list"):
        backend_for([1.0, 2.0])


def test_backend_for_rejects_arrays_of_another_device():
    class FakeGpuArray:  # looks like an array of another library
        shape = (2,)
        dtype = np.float32

    with minidl.use_backend("numpy"), pytest.raises(RuntimeError, match="current backend is 'numpy'"):
        backend_for(FakeGpuArray())


def test_get_array_module_and_to_numpy_on_host_arrays():
    a = np.arange(3.0)
    assert get_array_module(a) is np
    assert get_array_module(1.0) is np
    assert to_numpy(a) is a or np.array_equal(to_numpy(a), a)


def test_asarray_keeps_values_and_casts_when_asked():
    be = minidl.get_backend("numpy")
    out = be.asarray([1, 2, 3], dtype=np.float32)
    assert out.dtype == np.float32 and out.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_a_backends_kernel_table_is_read_only(name):
    # backend.kernels is what minidl.nn.dispatch reads (op -> KernelPair): empty on the NumPy reference backend
    if name == "numba":
        pytest.importorskip("numba", reason="the Numba backend needs numba: pip install numba")
    table = minidl.get_backend(name).kernels
    assert (len(table) == 0) == (name == "numpy")
    with pytest.raises(TypeError):
        table["relu"] = None


def test_the_numba_backend_without_numba_says_how_to_get_it():
    # a fresh interpreter where `import numba` fails: the backend's own message, not a bare ModuleNotFoundError from
    # one of its helper modules
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\nsys.modules['numba'] = None\nimport minidl\n"
        "try:\n    minidl.set_backend('numba')\nexcept ImportError as err:\n    print(err)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "the 'numba' backend needs Numba" in proc.stdout and "minidl.set_backend('numpy')" in proc.stdout
