"""Helpers shared by the Numba backend's class (``numba_backend.py``) and its kernel mixins.

* :func:`_native_dtypes`: the kernels are compiled for float32 and float64; a method wrapped with it computes other
  floating dtypes (float16, say) in float32 (float64 if wider) and casts the results back.
* :func:`_ceil_div`, for chunk counts;
* the chunking constants the convolution kernels share (``_numba_conv.py``, ``_numba_winograd_conv.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy

from minidl.memory_format import channels_last, contiguous, suggest_memory_format

_CHUNK_BYTES = 1 << 21  # target size of one chunk's im2row buffer (or Winograd tiles): about a core's L2 cache
_MIN_CHUNKS = 16  # chunks a batch is cut into at least (when it has that many images)
_DW_BYTES = 32 << 20  # memory for the per-chunk dW partial sums (chunks are grouped when they would need more)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


_NATIVE = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))  # the dtypes the kernels are compiled for


def _cast_back(result: Any, dtype: Any) -> Any:
    if isinstance(result, tuple):  # a NamedTuple (a kernel's cache) stays one: KernelCache reads its fields
        items = (_cast_back(r, dtype) for r in result)
        return type(result)(*items) if hasattr(result, "_fields") else tuple(items)
    if isinstance(result, numpy.ndarray) and result.dtype.kind == "f":
        return result.astype(dtype)
    return result


def _native_dtypes(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a kernel method in float32 or float64, the dtypes the kernels are compiled for: other floating arrays
    (float16 through a functional, say) are computed in float32 (float64 if wider) and the results cast back."""

    def floating(a: Any) -> bool:
        return isinstance(a, numpy.ndarray) and a.dtype.kind == "f"

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        for a in (*args, *kwargs.values()):  # arrays may come by keyword too (inlined: this runs on every kernel call)
            if isinstance(a, numpy.ndarray) and a.dtype.kind == "f" and a.dtype not in _NATIVE:
                other = a.dtype
                break
        else:
            return method(self, *args, **kwargs)
        work = numpy.float32 if other.itemsize <= 4 else numpy.float64
        args = tuple(a.astype(work) if floating(a) else a for a in args)
        kwargs = {k: a.astype(work) if floating(a) else a for k, a in kwargs.items()}
        return _cast_back(method(self, *args, **kwargs), other)

    return wrapper


def _nhwc(x: Any) -> Any:
    """The (N, H, W, C) C-contiguous view of ``x`` when it is laid out ``channels_last`` (see
    :func:`minidl.suggest_memory_format`), else None: the kernels that keep that format read and write such views."""
    return x.transpose(0, 2, 3, 1) if suggest_memory_format(x) == channels_last else None


def _as_nhwc(x: Any) -> Any:
    """The (N, H, W, C) C-contiguous view of x laid out ``channels_last``: of x itself when it is, else of a copy
    (:func:`minidl.contiguous`): what a kernel that runs channels last takes for an array that came in either layout."""
    return contiguous(x, channels_last).transpose(0, 2, 3, 1)


def _dims(a: Any, nhwc: bool) -> tuple[int, int, int]:
    """``(C, H, W)`` of a batch as the kernels index it: (N, C, H, W), or (N, H, W, C) with ``nhwc`` (what
    :func:`~minidl.backend._numba_kernels.image_dims` gives inside a kernel)."""
    return (a.shape[3], a.shape[1], a.shape[2]) if nhwc else (a.shape[1], a.shape[2], a.shape[3])


def _kernel_view(x: Any) -> tuple[Any, bool]:
    """``(a, nhwc)``: the array the kernels index for a batch x (N, C, H, W): its (N, H, W, C) view when x is laid out
    ``channels_last`` (``nhwc`` True), else x C-contiguous (a copy if it was not)."""
    xh = _nhwc(x)
    return (xh, True) if xh is not None else (numpy.ascontiguousarray(x), False)


def _empty_nchw(shape: tuple[int, ...], dtype: Any, channels_last: bool) -> tuple[Any, Any]:
    """``(out, out_nhwc)``: a new (N, C, H, W) array of ``shape``, laid out ``channels_last`` (then ``out_nhwc`` is its
    (N, H, W, C) C-contiguous view, which the kernels write) or C-contiguous (``out_nhwc`` None)."""
    if not channels_last:
        return numpy.empty(shape, dtype=dtype), None
    N, C, H, W = shape
    out_nhwc = numpy.empty((N, H, W, C), dtype=dtype)
    return out_nhwc.transpose(0, 3, 1, 2), out_nhwc
