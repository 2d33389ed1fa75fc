r"""Memory formats: the order in which a 4-D (N, C, H, W) array's values lie in memory (PyTorch's names).

* ``contiguous_format``: (N, C, H, W) in memory too, each channel's H x W plane one run (NumPy's C order, what every
  reference pair returns).
* ``channels_last``: the shape is still (N, C, H, W), but memory holds (N, H, W, C): a pixel's C values are one run.
  It is ``x.transpose(0, 2, 3, 1)`` made contiguous and transposed back, a view with other strides: same values,
  same indexing, and the same results from every function up to the order of float additions (a kernel may sum a
  channel's values in another order; the convolutions' outputs are the same bits).

Only speed differs. A convolution as GEMMs works on rows of a pixel's channels (im2row, Winograd's tiles): from a
``contiguous_format`` input each layer first copies its input into that order and its output back, 20-33 % of a 3 x 3
layer's forward at 16 to 64 channels (``benchmarks/bench_winograd_parts.py``). The Numba backend's kernels that
list ``channels_last`` in :mod:`minidl.backend.numba_backend`'s docstring read such an input without that copy and
return a ``channels_last`` output, so a network fed ``channels_last`` batches stays so from layer to layer; the other
kernels, and the NumPy reference, accept it as any array and may return ``contiguous_format``. Nothing converts on
its own: you choose the format of the batches you feed (``contiguous(x, channels_last)``), as with PyTorch's
``x.contiguous(memory_format=torch.channels_last)``. The weights' layout does not matter (the kernels transform them).
In your own loop, convert each batch; with :func:`minidl.train.fit`, ``batch_transform=lambda x, y:
(minidl.contiguous(x, minidl.channels_last), y)`` converts the training batches (the validation ones keep their
layout: the same results, a little slower). ``benchmarks/bench_train.py --channels-last`` measures the difference.

Examples:
    >>> import numpy as np
    >>> import minidl
    >>> x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    >>> y = minidl.contiguous(x, minidl.channels_last)
    >>> y.shape, y.strides, bool((y == x).all())
    ((1, 2, 3, 4), (96, 4, 32, 8), True)
    >>> minidl.is_contiguous(y, minidl.channels_last), minidl.is_contiguous(y)
    (True, False)
    >>> minidl.suggest_memory_format(y), minidl.suggest_memory_format(x)
    ('channels_last', 'contiguous_format')
"""

from __future__ import annotations

from typing import Any

import numpy as np

contiguous_format = "contiguous_format"  #: (N, C, H, W) in memory: NumPy's C order
channels_last = "channels_last"  #: (N, H, W, C) in memory, shape (N, C, H, W)

_FORMATS = (contiguous_format, channels_last)
_TO_NHWC = (0, 2, 3, 1)
_TO_NCHW = (0, 3, 1, 2)


def _check(memory_format: Any, where: str) -> None:
    if memory_format not in _FORMATS:
        raise ValueError(
            f"{where}: memory_format must be minidl.contiguous_format or minidl.channels_last, got {memory_format!r}"
        )


def _array(x: Any, where: str) -> Any:
    """x itself when it is an array (anything with ``shape``, ``strides`` and ``flags``: NumPy, CuPy), else a clear
    TypeError (lists and scalars have no memory layout to speak of)."""
    if type(x) is not np.ndarray and not all(hasattr(x, name) for name in ("shape", "strides", "flags", "transpose")):
        raise TypeError(f"{where}: expected a NumPy or CuPy array, got {type(x).__name__}")
    return x


def _check_4d(x: Any, where: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{where}: channels_last is a layout of 4-D (N, C, H, W) arrays, got shape {tuple(x.shape)}")


def _channels_last_strides(x: Any) -> bool:
    """For a 4-D array whose (N, H, W, C) view is C-contiguous: whether its strides are channels last's. They are
    unless x is C-contiguous too; then only a one-channel array whose channel stride is one value (what
    :func:`contiguous` makes of it, as PyTorch does) counts, not a plain (N, 1, H, W) one."""
    if not x.flags.c_contiguous:
        return True
    N, C, H, W = x.shape
    return C == 1 and H * W > 1 and x.strides[1] == x.itemsize


def is_contiguous(x: Any, memory_format: str = contiguous_format) -> bool:
    """Whether the array ``x`` is laid out in ``memory_format`` with no gaps (an array of one channel, or of 1 x 1
    images, is in both). ``channels_last`` needs a 4-D array.

    Examples:
        >>> import numpy as np
        >>> import minidl
        >>> minidl.is_contiguous(np.zeros((2, 3, 4, 5))), minidl.is_contiguous(np.zeros((2, 3, 4, 5)), "channels_last")
        (True, False)
    """
    _check(memory_format, "is_contiguous")
    x = _array(x, "is_contiguous")
    if memory_format == contiguous_format:
        return bool(x.flags.c_contiguous)
    _check_4d(x, "is_contiguous")
    return bool(x.transpose(_TO_NHWC).flags.c_contiguous)


def contiguous(x: Any, memory_format: str = contiguous_format) -> Any:
    """``x`` laid out in ``memory_format``: ``x`` itself when it already is, else a copy (same shape, same values).

    Args:
        x: an array (NumPy or CuPy); 4-D (N, C, H, W) for ``channels_last``.
        memory_format: ``minidl.contiguous_format`` (the default) or ``minidl.channels_last``.

    Examples:
        >>> import numpy as np
        >>> import minidl
        >>> x = np.ones((8, 3, 32, 32), np.float32)
        >>> y = minidl.contiguous(x, minidl.channels_last)
        >>> y.strides, minidl.contiguous(y, minidl.channels_last) is y, minidl.contiguous(y).strides
        ((12288, 4, 384, 12), True, (12288, 4096, 128, 4))
    """
    _check(memory_format, "contiguous")
    from minidl.backend import get_array_module

    x = _array(x, "contiguous")
    xp = get_array_module(x)
    if memory_format == contiguous_format:
        return x if x.flags.c_contiguous else xp.ascontiguousarray(x)
    _check_4d(x, "contiguous")
    if suggest_memory_format(x) == channels_last or (is_contiguous(x, channels_last) and x.shape[2] * x.shape[3] == 1):
        return x  # (1 x 1 images: both layouts are one)
    nhwc = xp.empty(
        x.transpose(_TO_NHWC).shape, dtype=x.dtype
    )  # (a new array: a copy could keep one channel's strides)
    nhwc[...] = x.transpose(_TO_NHWC)
    return nhwc.transpose(_TO_NCHW)


def suggest_memory_format(x: Any) -> str:
    """``channels_last`` for a 4-D array laid out so, else ``contiguous_format``: the format the Numba kernels give
    their output. An array in both layouts is told apart by its strides: one channel made ``channels_last`` by
    :func:`contiguous` counts as ``channels_last`` (a plain C-contiguous one does not), 1 x 1 images as
    ``contiguous_format``.

    Examples:
        >>> import numpy as np
        >>> import minidl
        >>> minidl.suggest_memory_format(np.zeros((2, 4, 5, 3)).transpose(0, 3, 1, 2))  # (N, H, W, C) memory
        'channels_last'
        >>> minidl.suggest_memory_format(np.zeros((2, 3, 4, 5))[:, :, ::2])  # neither (gaps): what NumPy copies
        'contiguous_format'
    """
    x = _array(x, "suggest_memory_format")
    if x.ndim == 4 and x.transpose(_TO_NHWC).flags.c_contiguous and _channels_last_strides(x):
        return channels_last
    return contiguous_format
