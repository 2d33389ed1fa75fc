"""Helpers shared by the tests: arrays on the backend under test, PyTorch as an oracle, comparisons."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import minidl

#: The backend the suite runs on: ``MINIDL_TEST_BACKEND`` (numpy by default); the root conftest.py selects it.
TEST_BACKEND = os.environ.get("MINIDL_TEST_BACKEND", "numpy")


def arr(a: Any, dtype: Any = None) -> Any:
    """``a`` as an array of the backend under test."""
    return minidl.get_backend().asarray(np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype))


def host(a: Any) -> np.ndarray:
    """A NumPy copy of a backend array."""
    return minidl.to_numpy(a)


def randn(rng: np.random.Generator, *shape: int, dtype: Any = np.float64) -> Any:
    """Standard normal values of ``shape`` on the backend under test."""
    return arr(rng.standard_normal(shape).astype(dtype))


def torch_or_skip() -> Any:
    """The torch module, or skip the test cleanly when PyTorch is not installed."""
    return pytest.importorskip("torch", reason="PyTorch is the parity oracle; install torch==2.13.0 to run this")


def to_torch(a: Any, requires_grad: bool = False) -> Any:
    """A float64 torch tensor with the values of ``a`` (leaf, optionally requiring grad)."""
    torch = torch_or_skip()
    return torch.tensor(host(a), dtype=torch.float64, requires_grad=requires_grad)


def assert_close(actual: Any, expected: Any, *, atol: float = 1e-10, rtol: float = 1e-8, what: str = "") -> None:
    """allclose with a message that shows the shapes and the worst error."""
    a = host(actual) if not hasattr(actual, "detach") else actual.detach().numpy()
    e = host(expected) if not hasattr(expected, "detach") else expected.detach().numpy()
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    np.testing.assert_allclose(a, e, atol=atol, rtol=rtol, err_msg=f"{what} (shape {a.shape})")


class JoinSpy:
    """Counts the calls of ``cls._forward_joined`` (a fused module's joined pass: ``ConvBn2d``'s in inference,
    ``FoldedBatchNorm2d``'s in training), patched on the class so that the instances stay plain."""

    def __init__(self, monkeypatch: Any, cls: Any) -> None:
        self.calls = 0
        original = cls._forward_joined

        def spy(module: Any, x: Any, residual: Any, *sums: Any) -> Any:  # (FoldedBatchNorm2d's: the channel sums)
            self.calls += 1
            return original(module, x, residual, *sums)

        monkeypatch.setattr(cls, "_forward_joined", spy)
