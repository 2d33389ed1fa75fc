"""The CuPy backend: the reference kernels of ``numpy_backend.py``, run on an NVIDIA GPU through CuPy.

Notation (as in ``numpy_backend.py``):
    N: batch size.  C: channels.  H, W: input height and width.
    KH, KW: kernel height and width.  SH, SW: strides.  PH, PW: zero padding on each side.
    DH, DW: dilation.  OH, OW: output height and width, OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1.

Arrays are ``cupy.ndarray`` in GPU memory (``xp`` is ``cupy``). The kernels are inherited unchanged from
:class:`~minidl.backend.numpy_backend.NumpyBackend`: they are written against ``self.xp`` with strided slices, ``where``
and matrix products only, so with ``xp = cupy`` every one of them runs on the device (a few CUDA kernel launches per
kernel offset) without copying anything back to the host. No hand-written CUDA kernel is used yet; fused
``RawKernel`` versions (im2col, pooling, BatchNorm) are future work, to be checked against these references on a GPU.

What still goes through the host (see ``docs/gpu.md``):

* random draws (dropout masks, data augmentation) come from minidl's NumPy generator, so that ``manual_seed`` gives
  the same masks on every backend; each mask is drawn on the CPU and copied to the GPU (N x C x H x W bytes);
* a loss returns a Python float (``float(loss)``), which waits for the forward pass to finish, once per step;
* ``minidl.to_numpy``, ``minidl.save`` and printing copy device arrays to the host.

Device choice: arrays go to CuPy's current device (``cupy.cuda.Device(i).use()`` or ``CUDA_VISIBLE_DEVICES``).

Examples:
    >>> import minidl
    >>> try:
    ...     be = minidl.get_backend("cuda")   # "cuda" and "gpu" are aliases of "cupy"
    ... except (ImportError, RuntimeError):   # no CuPy, or no usable GPU: the message says what to install / check
    ...     be = None
    >>> be is None or (be.name, be.device) == ("cupy", "gpu")
    True
"""

from __future__ import annotations

from typing import Any

import numpy

from minidl.backend.numpy_backend import NumpyBackend

__all__ = ["CHECK_COMMAND", "INSTALL_MESSAGE", "CupyBackend"]

#: the ImportError's sentence when CuPy is not installed
INSTALL_MESSAGE = (
    "the cupy backend needs CuPy: pip install minidl[gpu] (cupy-cuda12x for CUDA 12 / cupy-cuda13x for CUDA 13)"
)
#: the command that shows whether CuPy sees a GPU (it prints the number of GPUs, or raises the CUDA error)
CHECK_COMMAND = 'python -c "import cupy; print(cupy.cuda.runtime.getDeviceCount())"'


def _import_cupy() -> Any:
    """The ``cupy`` module, or the ImportError that says how to install it."""
    try:
        import cupy
    except ImportError as err:
        raise ImportError(INSTALL_MESSAGE) from err
    return cupy


def _device_problem(cupy: Any) -> str | None:
    """Why CuPy cannot use a GPU here (no device, no driver, a driver too old for the wheel), or None if it can."""
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except (RuntimeError, OSError, ImportError) as err:  # CUDARuntimeError is a RuntimeError; missing libs raise others
        return f"{type(err).__name__}: {err}"
    return None if count > 0 else "CUDA reports 0 devices"


class CupyBackend(NumpyBackend):
    """CuPy arrays on the current CUDA device, with the reference kernels (written against ``self.xp``).

    Raises:
        ImportError: CuPy is not installed (the message gives the pip command).
        RuntimeError: CuPy is installed but finds no usable CUDA GPU (no device, no NVIDIA driver, or a driver too
            old for the CuPy wheel); the message names the CUDA error and the command to check.
    """

    name = "cupy"
    device = "gpu"

    def __init__(self) -> None:
        cupy = _import_cupy()
        problem = _device_problem(cupy)
        if problem is not None:
            raise RuntimeError(
                f"the cupy backend found no usable CUDA GPU ({problem}): it needs an NVIDIA GPU and a driver that "
                f"supports the installed CuPy wheel's CUDA version; check with {CHECK_COMMAND}"
            )
        self.xp: Any = cupy

    # ------------------------------------------------------------------ arrays
    def is_array(self, a: Any) -> bool:
        """True if ``a`` is a ``cupy.ndarray`` (NumPy arrays are not: they live on the host)."""
        return isinstance(a, self.xp.ndarray)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as a ``cupy.ndarray``: host data (NumPy arrays, lists, scalars) is copied to the GPU; a CuPy array
        is returned as it is (cast when ``dtype`` differs)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> numpy.ndarray:
        """A NumPy copy of ``a`` (device -> host; this waits for the GPU work that produces ``a``)."""
        return self.xp.asnumpy(a)

    def synchronize(self) -> None:
        """Wait until the current device has finished all queued work (call it before reading a clock)."""
        self.xp.cuda.Device().synchronize()

    def free_memory(self) -> None:
        """Return the cached blocks of CuPy's memory pools to the driver (the pools otherwise keep them)."""
        self.xp.get_default_memory_pool().free_all_blocks()
        self.xp.get_default_pinned_memory_pool().free_all_blocks()
