"""``Parameter``: an array the optimizer updates, with the gradient backward accumulates for it (PyTorch's
``torch.nn.Parameter``; :mod:`minidl.nn.module` registers them on modules).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import backend as _backend

__all__ = ["Parameter"]


class Parameter:
    """An array the optimizer updates, with the gradient backward accumulated for it.

    Attributes:
        data: the array (of the current backend). Optimizers update it in place.
        grad: array of the same shape and dtype, or None before the first backward (and after ``zero_grad()``).
        requires_grad: False freezes the parameter: backward leaves ``grad`` at None and optimizers skip it.

    Examples:
        >>> p = Parameter(np.zeros((2, 3), np.float32))
        >>> p
        Parameter(shape=(2, 3), dtype=float32, requires_grad=True)
        >>> p.accumulate_grad(np.ones((2, 3), np.float32)); p.accumulate_grad(np.ones((2, 3), np.float32))
        >>> float(p.grad.sum())
        12.0
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        if isinstance(data, Parameter):
            data = data.data
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            raise TypeError(f"Parameter expects an array, got {type(data).__name__}")
        if not isinstance(requires_grad, bool):
            raise TypeError(
                f"Parameter: requires_grad must be a bool, got {requires_grad!r} ({type(requires_grad).__name__})"
            )
        if requires_grad and not np.issubdtype(np.dtype(data.dtype), np.floating):
            raise TypeError(
                f"Parameter: only floating-point arrays can require gradients, got dtype {data.dtype} "
                "(use requires_grad=False, or a buffer via register_buffer, for integer state)"
            )
        self.data = data
        self.grad: Any = None
        self.requires_grad = requires_grad

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    @property
    def size(self) -> int:
        return int(self.data.size)

    def accumulate_grad(self, grad: Any) -> None:
        """Add ``grad`` to ``self.grad`` (allocating it on first use); a frozen parameter ignores it."""
        if not self.requires_grad:
            return
        if tuple(grad.shape) != self.shape:
            raise ValueError(
                f"Parameter.accumulate_grad: expected a gradient of the parameter's shape {self.shape}, "
                f"got shape {tuple(grad.shape)}"
            )
        if self.grad is None:
            self.grad = grad.astype(self.data.dtype, copy=True)
            return
        if tuple(self.grad.shape) != self.shape or self.grad.dtype != self.data.dtype:  # a .grad set by hand
            raise ValueError(
                f"Parameter.accumulate_grad: the parameter's .grad has shape {tuple(self.grad.shape)} and dtype "
                f"{self.grad.dtype}, expected the parameter's shape {self.shape} and dtype {self.data.dtype}; "
                "set it to None (or call zero_grad()) before backward"
            )
        self.grad += grad

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the accumulated gradient (``None``), or fill it with zeros when ``set_to_none=False``."""
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad[...] = 0

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(_backend.to_numpy(self.data), dtype=dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={np.dtype(self.dtype).name}, requires_grad={self.requires_grad})"
