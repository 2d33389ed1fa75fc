"""Input and hyperparameter validation shared by every layer.

Every message names the layer (or function), what was expected and what was received, so a student reading
the traceback knows what to fix. Nothing is silently broadcast, truncated or cast.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl._deferred import BatchNormReLUOutput
from minidl.backend import backend_for, is_cupy_array

_LAYOUTS = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)"}


def check_array(
    where: str,
    x: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    channels: int | None = None,
    channel_axis: int = 1,
    dtype: Any = None,
    what: str = "input",
    dtype_of: str | None = None,
) -> Any:
    """Validate a floating-point array argument; return the backend that owns it.

    Args:
        where: the layer or function name used in the message, e.g. ``"Conv2d(3, 8, kernel_size=(3, 3))"``.
        ndim: the allowed number of dimensions (an int or several).
        min_ndim: the least number of dimensions, when any larger number is fine.
        channels: the size ``x.shape[channel_axis]`` must have.
        dtype: the exact dtype required (the layer's parameter dtype), else any floating dtype.
        dtype_of: what ``dtype`` is the dtype of, when not a layer's parameters (``"query"``: the message then asks
            for one dtype, not for a converted layer).
    """
    try:
        be = backend_for(x)
    except TypeError as err:
        if isinstance(x, BatchNormReLUOutput):  # (which only a convolution takes: the error says so)
            raise TypeError(f"{where}: {err}") from None
        raise TypeError(f"{where}: expected the {what} to be an array, got {type(x).__name__}") from None
    except RuntimeError as err:
        raise RuntimeError(f"{where}: {err}") from None
    if type(x) is not np.ndarray and _on_host(x) and not isinstance(x, np.memmap):  # a plain array: one test
        _refuse_subclass(where, x, what)
    shape = tuple(x.shape)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            layouts = " or ".join(f"{n}-D {_LAYOUTS.get(n, '')}".strip() for n in allowed)
            raise ValueError(f"{where}: expected a {layouts} {what}, got shape {shape} ({x.ndim}-D)")
    if min_ndim is not None and x.ndim < min_ndim:
        article = "an" if what[:1] in "aeiou" else "a"
        raise ValueError(
            f"{where}: expected {article} {what} with at least {min_ndim} "
            f"dimension{'s' if min_ndim != 1 else ''}, got shape {shape}"
        )
    if channels is not None and shape[channel_axis] != channels:
        raise ValueError(
            f"{where}: expected {channels} channels in dimension {channel_axis} of the {what}, "
            f"got {shape[channel_axis]} (shape {shape})"
        )
    if np.dtype(x.dtype).kind != "f":  # float16, float32, float64 (np.issubdtype(dtype, np.floating))
        raise TypeError(
            f"{where}: expected a floating-point {what} (float32 or float64), got dtype {x.dtype}; "
            "convert it with x.astype(np.float32)"
        )
    _check_parameter_dtype(where, x, dtype, what, dtype_of)
    return be


def _refuse_subclass(where: str, x: Any, what: str) -> None:
    """A NumPy array subclass other than ``np.memmap`` (which computes as a plain array) is refused: ``np.matrix``
    keeps every result 2-D and makes ``*`` a matrix product, a masked array's mask would be ignored, so either would
    silently change what a layer computes."""
    name = f"{type(x).__module__}.{type(x).__name__}"
    why = {
        np.matrix: "its * is a matrix product and its results stay 2-D",
        np.ma.MaskedArray: "its mask would be ignored",
    }.get(type(x), "a subclass may change what the operators compute")
    raise TypeError(
        f"{where}: expected the {what} to be a plain numpy.ndarray, got a {name} ({why}); convert it with np.asarray(x)"
    )


def _check_parameter_dtype(where: str, x: Any, dtype: Any, what: str = "input", dtype_of: str | None = None) -> None:
    """``x`` must have ``dtype`` when given: the layer's parameters' dtype, or with ``dtype_of`` that of another
    argument (then the message asks for one dtype, not for a converted layer)."""
    if dtype is None or x.dtype is dtype or np.dtype(x.dtype) == np.dtype(dtype):
        return
    if dtype_of is not None:
        raise TypeError(
            f"{where}: the {what} has dtype {x.dtype} but the {dtype_of} has {np.dtype(dtype)}; they must have one "
            f"dtype: convert it with x.astype(np.{np.dtype(dtype).name})"
        )
    raise TypeError(
        f"{where}: the {what} has dtype {x.dtype} but the layer's parameters are {np.dtype(dtype)}; "
        f"convert the input with x.astype(np.{np.dtype(dtype).name}) "
        f"or the layer with .to(np.{np.dtype(x.dtype).name})"
    )


def check_layout(where: str, x: Any, *, ndim: int | Sequence[int] | None = None, channels: int | None = None) -> None:
    """What a layer, and not its functional pair, knows about its input: the number of dimensions (BatchNorm1d vs
    BatchNorm2d) and the channel count. Anything that is not an array passes: the pair reports it."""
    if not hasattr(x, "ndim") or not hasattr(x, "shape"):
        return
    allowed = () if ndim is None else (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if allowed and x.ndim not in allowed:
        layouts = " or ".join(f"{n}-D {_LAYOUTS.get(n, '')}".strip() for n in allowed)
        raise ValueError(f"{where}: expected a {layouts} input, got shape {tuple(x.shape)} ({x.ndim}-D)")
    if channels is not None and x.ndim >= 2 and x.shape[1] != channels:
        raise ValueError(
            f"{where}: expected {channels} channels in dimension 1 of the input, got {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )


def check_params(where: str, x: Any, shape: tuple[int, ...], **params: Any) -> None:
    """The parameter and statistics arrays of a functional (each may be None) must have ``shape``, one dtype, and
    the input's device; the input (already checked with :func:`check_array`) must have that dtype (a float64 input
    into float32 parameters is refused, with the conversion to make)."""
    given = {name: a for name, a in params.items() if a is not None}
    check_same_device(where, x, *given.values())
    dtype = None
    for name, a in given.items():
        check_array(where, a, what=name)
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"{where}: expected {name} of shape {tuple(shape)}, got shape {tuple(a.shape)}")
        if dtype is None:
            dtype, first = a.dtype, name
        elif a.dtype != dtype:
            raise TypeError(f"{where}: {first} has dtype {dtype} but {name} has dtype {a.dtype}; give them one dtype")
    _check_parameter_dtype(where, x, dtype)


def _on_host(a: Any) -> bool:
    """A NumPy array or subclass (``np.memmap``, ...) and not a CuPy array (the tests' CPU stand-in for CuPy is a
    NumPy subclass; :func:`minidl.backend.is_cupy_array` tells them apart as everywhere else)."""
    return isinstance(a, np.ndarray) and not is_cupy_array(a)


def check_same_device(where: str, x: Any, *arrays: Any) -> None:
    """Raise if a parameter array lives on another device than the input ``x`` (NumPy arrays and their subclasses,
    such as ``np.memmap``, all live on the host)."""
    for a in arrays:
        if a is not None and type(a) is not type(x) and not (_on_host(a) and _on_host(x)):
            raise RuntimeError(
                f"{where}: the input is a {type(x).__module__}.{type(x).__name__} but the layer's parameters are "
                f"{type(a).__module__}.{type(a).__name__}; move the model with model.to(<backend>) first"
            )


def check_residual(where: str, x: Any, residual: Any, shape: Sequence[int], whose: str) -> None:
    """A fused pair's residual (the other term of its sum): an array on ``x``'s device of ``shape`` and ``x``'s dtype
    (a sum never broadcasts here), else an error naming ``where``; ``whose`` says whose shape that is ("the
    input's")."""
    check_array(where, residual, what="residual")
    check_same_device(where, x, residual)
    if tuple(residual.shape) != tuple(shape) or residual.dtype != x.dtype:
        raise ValueError(
            f"{where}: expected a residual of {whose} shape {tuple(shape)} and dtype {x.dtype}, got "
            f"{tuple(residual.shape)} {residual.dtype}"
        )


def check_grad_output_of(where: str, dout: Any, last: Any) -> None:
    """:func:`check_grad_output` for a pair built from others, named ``where``, against the output of the pair that
    computed its output (``last``: that pair's cache, whose ``out_shape`` and ``out_dtype`` say it; a cache that does
    not, such as a replaced pair's, is left to that pair's backward). Its error then names the pair called, not the
    pair inside it that checks first."""
    shape = getattr(last, "out_shape", None)
    if shape is not None:
        check_grad_output(where, dout, shape, getattr(last, "out_dtype", None))


def check_grad_output(where: str, dout: Any, shape: Sequence[int], dtype: Any = None) -> None:
    """A backward's ``dout`` must be a floating array of exactly the forward output's shape (and of ``dtype`` when
    given: a float64 gradient into a float32 layer would silently turn every gradient below it into float64).

    Args:
        where: the backward's name in the message, e.g. ``"relu_backward"``.
    """
    if not hasattr(dout, "shape") or not hasattr(dout, "dtype"):
        raise TypeError(f"{where}: expected an array for the gradient, got {type(dout).__name__}")
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(
            f"{where}: the gradient has shape {tuple(dout.shape)} but the forward output had shape {tuple(shape)}"
        )
    if not np.issubdtype(np.dtype(dout.dtype), np.floating):
        raise TypeError(f"{where}: expected a floating-point gradient, got dtype {dout.dtype}")
    if dtype is not None and np.dtype(dout.dtype) != np.dtype(dtype):
        raise TypeError(
            f"{where}: the gradient has dtype {dout.dtype} but the forward computed in {np.dtype(dtype)}; "
            f"convert it with dout.astype(np.{np.dtype(dtype).name})"
        )


def check_dx_add(where: str, dx_add: Any, shape: Sequence[int], dtype: Any) -> None:
    """A backward's ``dx_add``, another gradient of its input x that it adds to dx, must be an array of x's
    ``shape`` and of the gradient's ``dtype`` (nothing broadcast or cast)."""
    if not hasattr(dx_add, "shape") or not hasattr(dx_add, "dtype"):
        raise TypeError(f"{where}: dx_add (a gradient of x, added to dx) must be an array, got {type(dx_add).__name__}")
    got_shape, got_dtype = tuple(dx_add.shape), dx_add.dtype
    if got_shape != tuple(shape) or got_dtype != np.dtype(dtype):
        raise ValueError(
            f"{where}: dx_add (a gradient of x, added to dx) has shape {got_shape} and dtype {got_dtype}, expected "
            f"x's shape {tuple(shape)} and the gradient's dtype {np.dtype(dtype)}"
        )


def check_channel_sums(where: str, sums: Any, channels: int, x: Any, *, writable: bool) -> None:
    """``channel_sums`` (of :func:`~minidl.nn.conv.conv2d_forward`, which fills it: ``writable``, and of the
    BatchNorm pairs, which take their statistics from it): a C-contiguous float64 array of shape (3, ``channels``) on
    ``x``'s device (row 0 the shifts, rows 1 and 2 the sums of (y - shift) and (y - shift)^2 per channel)."""
    what = f"channel_sums (3, {channels}) float64: the shifts, the sums of (y - shift) and of (y - shift)^2"
    if not hasattr(sums, "shape") or not hasattr(sums, "dtype") or not hasattr(sums, "flags"):
        raise TypeError(f"{where}: {what}, must be an array, got {type(sums).__name__}")
    if tuple(sums.shape) != (3, channels) or sums.dtype != np.float64:
        raise ValueError(f"{where}: {what}, got shape {tuple(sums.shape)} and dtype {sums.dtype}")
    if not sums.flags.c_contiguous:
        raise ValueError(f"{where}: {what}, must be C-contiguous (got a strided view)")
    if writable and not getattr(sums.flags, "writeable", True):
        raise ValueError(f"{where}: {what}, must be writable: the pair fills rows 1 and 2 (got a read-only array)")
    check_same_device(where, x, sums)


def check_bn_relu_output(where: str, a: Any) -> Any:
    """A :class:`~minidl.nn.BatchNormReLUOutput` given as a convolution's input: its x a 4-D floating
    array, its mean, scale and offset 1-D arrays of x's channels (axis 1) and dtype on x's device. Returns x."""
    x = a.x
    check_array(where, x, ndim=4)
    C = x.shape[1]
    for name in ("mean", "scale", "offset"):
        v = getattr(a, name)
        if not hasattr(v, "shape") or tuple(v.shape) != (C,) or getattr(v, "dtype", None) != x.dtype:
            got = f"shape {tuple(v.shape)} and dtype {v.dtype}" if hasattr(v, "shape") else type(v).__name__
            raise ValueError(
                f"{where}: the BatchNorm+ReLU output's {name} must be ({C},) of x's dtype {x.dtype}, got {got}"
            )
        check_same_device(where, x, v)
    return x


def _is_int(value: Any) -> bool:
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def check_int(where: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int, which must be at least ``minimum``."""
    if not _is_int(value):
        raise TypeError(f"{where}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return int(value)


def pair(where: str, name: str, value: Any, *, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints as ``(height, width)``; each at least ``minimum``."""
    if _is_int(value):
        values = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        values = tuple(value)
    else:
        raise TypeError(f"{where}: {name} must be an int or a pair of ints, got {value!r}")
    return check_int(where, name, values[0], minimum=minimum), check_int(where, name, values[1], minimum=minimum)


def check_float(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within [low, high] (open ends where asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{where}: {name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{where}: {name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value
