"""``python -m pytest -p tests.gpu.fake_cupy_plugin ...``: run tests on the CuPy backend with the CPU stand-in.

Before the root ``conftest.py`` is loaded, it puts :mod:`tests.gpu.fake_cupy` in place of ``cupy`` and sets
``MINIDL_TEST_BACKEND=cupy``, so a test file written with ``arr()``/``host()`` runs through the CuPy backend's code
paths on a machine without a GPU: host/device mixing raises, as it would on a GPU. (Numerics are NumPy's; a real GPU
run is ``MINIDL_TEST_BACKEND=cupy python -m pytest -m "not slow"``.) Importing this file does nothing by itself.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tests.gpu.fake_cupy import make_fake_cupy


def pytest_load_initial_conftests(early_config: Any, parser: Any, args: Any) -> None:
    sys.modules["cupy"] = make_fake_cupy()
    os.environ["MINIDL_TEST_BACKEND"] = "cupy"
