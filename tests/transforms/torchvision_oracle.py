"""torchvision as an optional test oracle: ``tv = torchvision_or_skip()`` returns the module, or skips the test.

torchvision 0.28 registers meta kernels for torch operators at import time, which fails against the installed torch;
those registrations only serve tracing, so an empty stand-in module is put in their place before the import.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest


def torchvision_or_skip():
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision (an optional test oracle) is not installed")
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torchvision
        from torchvision.transforms import autoaugment  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the installed versions
        pytest.skip(f"torchvision cannot be imported here: {exc}")
    return torchvision
