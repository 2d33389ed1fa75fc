"""Convolution kernels of the Numba backend: a mixin of :class:`~minidl.backend.numba_backend.NumbaBackend`.

Notation as in ``numpy_backend.py`` (N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW; O output channels;
K = C KH KW; OHW = OH OW). The NumPy reference builds one (K, N OHW) column matrix for the whole batch (151 MB for
the second layer of ``cifar_cnn`` at batch 128) and keeps it for the backward pass. Here no batch-sized matrix
exists, only x is cached, and one of the algorithms below runs, chosen by rules on the shapes in
:meth:`ConvKernelsMixin._conv2d_dense` (or, with ``NumbaBackend.autotune``, by timing them: the section "which
algorithm runs" of the class):

* **im2row + GEMM per chunk** (any convolution with groups 1). Chunks of a few images (about 2 MB of patch rows,
  at least 16 chunks per batch): *im2row* of the chunk (one row per output pixel, K ordered (kh, kw, c), built from
  a channels-last copy of each image so that each kernel row is one contiguous run) into a per-thread buffer that
  stays in the core's cache, one GEMM ``rows @ W_row^T`` (NumPy's matmul, i.e. BLAS; with the long dimension first
  OpenBLAS runs it near its peak), and a transposed copy into the (N, O, OH, OW) output. The backward rebuilds each
  chunk's rows (cheap next to the two GEMMs) for dW_row += dout_chunk @ rows, then drows = dout_chunk^T @ W_row
  and row2im into dx.
* **Winograd's F(2x2, 3x3)** (``_numba_winograd.py``) for a 3 x 3 stride-1 convolution with 8 or more channels in
  and out (every 3 x 3 layer of the CIFAR ResNets but the first): 16 GEMMs of (tiles, C) @ (C, O), 2.25x fewer
  multiplications than im2row and no patch matrix. For 16 channels this halves the time of the layer: the im2row
  GEMM there has only 16 output columns and runs at a third of the core's peak. Its backward takes dx the same way
  (a stride-1 3 x 3 convolution of dout with the flipped filters) and dW through the adjoint transforms
  (dU = V^T dM per tile position, dW = G^T dU G), 2-2.5x faster than from im2row chunks. The results differ
  from im2row's by float32 roundings; ``backend.winograd = False`` goes back to im2row. Layers with few tiles per
  chunk (small images, many channels: VGG's 512 channels at 4 x 4 and 2 x 2) would re-read a big transformed weight
  for a few rows each; they run *batch-wide*: the transforms over the whole batch, then each of the 16 GEMMs once
  over all its tiles (see :meth:`~minidl.backend._numba_winograd_conv.WinogradKernelsMixin._winograd_batched`).
* **Winograd's F(4x4, 3x3)** (``_numba_winograd4.py``) instead, for such a convolution with 16 or more channels in and
  out, outputs of 7 x 7 or more and 128 or more 4 x 4 tiles in the batch (every stage of the CIFAR ResNets, VGG's 128
  and 256 channels, airbench's 256 channels at 7 x 7, at batch 32 and up): 36 GEMMs with 1.78x fewer
  multiplications than F(2x2, 3x3)'s 16, 1.3-1.9x faster on the wide layers at batch 128, 1.2-1.35x forward and
  1.15-1.25x backward on 16 to 32 channels (``benchmarks/bench_winograd.py``, AMD Zen 4). Its roundings are larger
  (float32: 2e-6 to 8e-6 of the largest output against 2e-7 to 5e-7; float64: 1e-14 against 1e-15).
  ``backend.winograd_tile = 2`` keeps F(2x2, 3x3) only. The weight gradient is F(4x4, 3x3)'s too wherever the
  forward is (1.08-1.21x faster than F(2x2, 3x3)'s, ``_numba_winograd_conv.py``).
* **direct 3 x 3** (``_numba_direct.py``) for a 3 x 3 stride-1 convolution with at most 6 input channels (the RGB
  first layer): each output plane accumulated in place from a zero-padded copy of the image, two output channels per
  pass, no patch matrix and no transposed copy (1.5-2.3x faster than im2row's rows 27 values long). Its backward
  too (padding up to 2): dx is the direct convolution of dout with the flipped filters (few output channels), dW
  nine dot products per filter (the stem of the CIFAR ResNets: backward 11.5 -> 2.8 ms at batch 128).
* **1 x 1 without padding** (ResNet's projection shortcuts, MobileNet's pointwise layers; ``_numba_pointwise.py``)
  with 32 or more output pixels per image: one stacked product (O, C) @ (images, C, OH OW) per chunk of images,
  already in NCHW layout (x subsampled first for a stride). On smaller outputs (MobileNetV2's 4 x 4 layers) products
  16 columns wide are too thin for BLAS; there the chunk's images are laid side by side, X = x_chunk as
  (C, images OH OW) (a copy of runs of OH OW values, no transposition), one product W @ X, and the same columns in
  the backward (dW += G @ X^T, dX = W^T @ G).
* **depthwise** (``groups == C``, weight (O, 1, KH, KW): MobileNet's 3 x 3 layers): direct loops over the output
  planes, KH KW shifted multiply-adds of whole rows, no column matrix; on small outputs channels last, one
  multiply-add over all channels per pixel and tap (``_numba_depthwise.py``). Other grouped convolutions run the
  reference's per-group GEMMs with the compiled im2col.

Each chunk keeps its own dW partial sum (a fixed group of chunks does, for a big weight), added in order at the
end, and the chunking depends on the shapes only, so (by the rules) results do not depend on the number of
threads. In inference the forward can also apply a ReLU or a ReLU6 in its output pass (``relu_max``: the pairs
``conv2d_relu`` and ``conv2d_relu6``, which ``minidl/nn/fusion.py`` runs for a folded Conv-BatchNorm-activation).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy

from minidl._deferred import BatchNormReLUOutput
from minidl.backend import _numba_direct as _direct
from minidl.backend import _numba_kernels as _k
from minidl.backend import _threads
from minidl.backend._numba_common import (
    _CHUNK_BYTES,
    _DW_BYTES,
    _MIN_CHUNKS,
    _NATIVE,
    _ceil_div,
    _empty_nchw,
    _kernel_view,
    _native_dtypes,
    _nhwc,
)
from minidl.backend._numba_depthwise import DepthwiseKernelsMixin
from minidl.backend._numba_pointwise import PointwiseKernelsMixin
from minidl.backend._numba_winograd_conv import WinogradKernelsMixin
from minidl.memory_format import contiguous, suggest_memory_format

_WINOGRAD_TILES = {"winograd2": 2, "winograd4": 4}  # the Winograd algorithms' names and output tiles
# the autotuner (ConvKernelsMixin._tuned): each algorithm timed at least this many times and this long (after one
# untimed run), and the rules' choice kept unless another is faster by this fraction
_AUTOTUNE_RUNS, _AUTOTUNE_SECONDS, _AUTOTUNE_MARGIN = 2, 0.01, 0.05
_DIRECT_TUNE_MAX_C = 16  # input channels up to which the autotuner tries the direct 3 x 3 (its rule: _DIRECT_MAX_C)
_SMALL_O_BLOCK = 256  # rows per backward GEMM call when O <= 16 (measured: the best block for such thin GEMMs)
# a convolution with fewer values than this in its input and in its output, and fewer multiply-adds than
# _ONE_THREAD_MACS, runs in the calling thread (see ConvKernelsMixin._one_thread_if_small)
_ONE_THREAD_VALUES = 1 << 16
_ONE_THREAD_MACS = 1 << 25
# 3 x 3 stride-1 forwards with at most this many input channels run direct (``_numba_direct.py``; measured at
# batch 128, 2 threads: 3 to 6 channels 1.5-2.3x faster than im2row, 8 even, 16 slower)
_DIRECT_MAX_C = 6


class _OutputSize(NamedTuple):
    """The output's height and width, what :meth:`ConvKernelsMixin._one_thread_if_small` reads of a geometry."""

    OH: int
    OW: int


def _about(direction: str, x: Any, weight: Any, geometry: tuple[int, ...], **more: Any) -> dict[str, Any]:
    """What the autotuner keys a convolution by (see ``ConvKernelsMixin.autotune_results``): the direction, shapes,
    geometry, x's layout and dtype, and ``more`` (the forward's epilogue, the backward's dout layout and
    ``compute_dw``)."""
    return {
        "direction": direction, "x": x.shape, "weight": weight.shape, "geometry": geometry,
        "channels_last": _nhwc(x) is not None, "dtype": x.dtype.name, **more,
    }  # fmt: skip


def autotune_from_environment() -> bool:
    """``MINIDL_AUTOTUNE``: 1 turns the convolutions' autotuner on (``NumbaBackend.autotune``), 0 or unset leaves it
    off."""
    value = os.environ.get("MINIDL_AUTOTUNE", "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"MINIDL_AUTOTUNE must be 0 or 1, got {value!r}")
    return value == "1"


def _check_dx_add(dx_add: Any, x_shape: tuple[int, ...], dtype: Any) -> None:
    """``conv2d_backward``'s ``dx_add`` must be an array of x's shape and the gradient's dtype (as the reference's
    :func:`~minidl.nn.conv.conv2d_backward` checks it): the kernels read it without bounds checks."""
    if not hasattr(dx_add, "shape") or not hasattr(dx_add, "dtype"):
        raise TypeError(
            f"conv2d_backward: dx_add (a gradient of x, added to dx) must be an array, got {type(dx_add).__name__}"
        )
    shape, kind = tuple(dx_add.shape), dx_add.dtype
    if shape != tuple(x_shape) or kind != dtype:
        raise ValueError(
            f"conv2d_backward: dx_add (a gradient of x, added to dx) has shape {shape} and dtype {kind}, expected "
            f"x's shape {x_shape} and the gradient's dtype {numpy.dtype(dtype)}"
        )


class ConvCache(NamedTuple):
    """The Numba ``conv2d`` pair's cache (the forward's, what its backward reads)."""

    x: Any  # the input as the kernels saw it (with an uneven 'same' padding's extra rows and columns), or im2col's
    # x_col for groups other than depthwise
    weight: Any
    has_bias: bool
    g: Any  # the setup's ConvGeometry
    x_shape: tuple[int, ...]  # the input's shape as the kernels saw it
    crop: Any  # the input's (H, W) to crop dx back to, or None
    pre: Any = None  # a deferred BatchNorm+ReLU's (3, C) vectors (a copy): x is its input, the convolution's its output


class ConvKernelsMixin(PointwiseKernelsMixin, DepthwiseKernelsMixin, WinogradKernelsMixin):
    """The convolution methods of the Numba backend (they use its ``_buffer``, ``_split``, ``_gemm_threads``, ``_flat``
    and compiled ``_im2col``/``_col2im``); the Winograd ones are :class:`WinogradKernelsMixin`'s."""

    _autotune: bool
    _autotuned: dict[tuple[Any, ...], tuple[str, dict[str, float]]]

    # ------------------------------------------------------------------ the kernel pairs
    @staticmethod
    def _symmetric(x: Any, g: Any) -> tuple[Any, Any]:
        """``(x, crop)``: x with the extra bottom rows / right columns of an uneven ``'same'`` padding added (then
        padding top/left on both sides is the geometry's), and the input's (H, W) to crop dx back to (else None)."""
        extra_h, extra_w = g.bottom - g.top, g.right - g.left
        if (extra_h, extra_w) == (0, 0):
            return x, None
        return numpy.pad(x, ((0, 0), (0, 0), (0, extra_h), (0, extra_w))), tuple(x.shape[2:])

    def _conv2d_forward(
        self, g: Any, x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
        groups: int = 1, *, channel_sums: Any = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """The ``conv2d`` pair's forward, ``g`` its geometry (the setup's; stride, padding, dilation and groups are
        in it). Cache: a :class:`ConvCache`.
        ``channel_sums`` (checked by the setup) is filled in F(4x4, 3x3)'s output pass into a ``channels_last``
        output, else in one pass over the output after the convolution (:meth:`_channel_sums`).

        x may be a :class:`~minidl.nn.BatchNormReLUOutput` (a deferred BatchNorm+ReLU): where
        :meth:`conv2d_reads_bn_relu`, F(4x4, 3x3) applies it as its compiled loops read x (never writing the
        BatchNorm's output) and the cache holds x and a copy of the vectors, (3, C) (``pre``), for the backward to
        read x the same way; elsewhere it is computed first (:meth:`~minidl.nn.BatchNormReLUOutput.computed`)."""
        if isinstance(x, BatchNormReLUOutput):
            padding = (g.top, g.bottom, g.left, g.right)
            if not self.conv2d_reads_bn_relu(x.x, weight, (g.SH, g.SW), padding, (g.DH, g.DW), g.groups):
                return self._conv2d(g, x.computed(), weight, bias, sums=channel_sums)
            z = x.x  # its vectors, copied (the backward reads them: the running mean, the bias may change before)
            pre = numpy.ascontiguousarray(numpy.stack([x.mean, x.scale, x.offset]), dtype=z.dtype)
            with self._one_thread_if_small(tuple(z.shape), weight, g):
                out = self._winograd_conv(z, weight, bias, g.top, g.left, tile=4, sums=channel_sums, pre=pre)
            return out, ConvCache(z, weight, bias is not None, g, tuple(z.shape), None, pre)
        return self._conv2d(g, x, weight, bias, sums=channel_sums)

    def conv2d_takes_channel_sums(
        self, x: Any, weight: Any, stride: tuple[int, int], padding: tuple[int, int, int, int],
        dilation: tuple[int, int], groups: int,
    ) -> bool:  # fmt: skip
        """Whether ``conv2d_forward``'s ``channel_sums`` are added up in the output pass here (see
        :meth:`~minidl.backend.numpy_backend.NumpyBackend.conv2d_takes_channel_sums`): a float32 or float64
        ``channels_last`` x, groups 1, and the algorithm the layer runs (the rules', or the one :attr:`autotune` chose
        for it) F(4x4, 3x3) in its compiled loops (:meth:`_winograd4_takes_sums`). The other algorithms sum their
        output in one pass after, which a BatchNorm's own two-pass region does as cheaply."""
        top, bottom, left, right = padding
        if not self.is_array(x) or x.ndim != 4 or x.dtype not in _NATIVE or _nhwc(x) is None:
            return False
        if groups != 1 or (top, left) != (bottom, right) or numpy.ndim(weight) != 4:
            return False
        O, _, KH, KW = weight.shape
        geometry = (KH, KW, *stride, top, left, *dilation)
        N, C, H, W = x.shape
        OH = (H + 2 * top - dilation[0] * (KH - 1) - 1) // stride[0] + 1
        OW = (W + 2 * left - dilation[1] * (KW - 1) - 1) // stride[1] + 1
        if min(OH, OW) < 1:
            return False
        # (a small layer runs in one thread, and the autotuner chose its algorithm for one thread: ask likewise)
        with self._one_thread_if_small(tuple(x.shape), weight, _OutputSize(OH, OW)):
            name = self._dense_algorithm(x, weight, geometry)
        return name == "winograd4" and self._winograd4_takes_sums(N, C, O, H + 2 * top - 2, W + 2 * left - 2, x.dtype)

    def conv2d_reads_bn_relu(
        self, x: Any, weight: Any, stride: tuple[int, int], padding: tuple[int, int, int, int],
        dilation: tuple[int, int], groups: int,
    ) -> bool:  # fmt: skip
        """Whether ``conv2d_forward`` of a BatchNorm+ReLU's deferred output with input x
        (:class:`~minidl.nn.BatchNormReLUOutput`) applies it as it reads x, here in the compiled loops of
        F(4x4, 3x3), forward and backward (see
        :meth:`~minidl.backend.numpy_backend.NumpyBackend.conv2d_reads_bn_relu`): where it takes the ``channel_sums``
        there (:meth:`conv2d_takes_channel_sums`: a float32 or float64 ``channels_last`` x, groups 1, F(4x4, 3x3) the
        algorithm) and its backward runs dx and dW in one region of compiled loops too
        (:meth:`_winograd4_reads_bn_relu`). Elsewhere the output is computed first, in a pass of its own."""
        if not self.conv2d_takes_channel_sums(x, weight, stride, padding, dilation, groups):
            return False
        return self._winograd4_reads_bn_relu(x, weight.shape[0], padding[0], padding[2])

    def _one_thread_if_small(self, x_shape: tuple[int, ...], weight: Any, g: Any) -> Any:
        """``_threads.serial()`` for a convolution too small to pay for the pool's threads, else nothing: fewer than
        _ONE_THREAD_VALUES values in its input and in its output, and fewer than _ONE_THREAD_MACS multiply-adds.
        Handing tasks to a worker costs some 50 us per parallel region (waking the thread, passing the GIL), and a
        convolution runs one to four regions: measured on 2 threads (AMD Zen 4, a 3 x 3 layer between idle gaps, as
        in a model), 16 channels at 32 x 32 ran faster on one thread up to 2 images (32 K values), 32 channels at
        16 x 16 and 64 at 8 x 8 up to 8 (64 K values; 1 thread 337 and 347 us, 2 threads 337 and 422 us), and the
        other way from 4, 16 and 32 images. The multiply-adds keep layers of many channels at few pixels on the
        threads (VGG's 512 channels at 2 x 2 from 4 images). The results are the same either way (the work is cut by
        shape only). ``x_shape`` is the input as the kernels see it (with an uneven ``'same'`` padding's extra rows
        and columns), the same for the forward and the backward."""
        out_values = x_shape[0] * weight.shape[0] * g.OH * g.OW
        macs = out_values * math.prod(weight.shape[1:])
        small = max(math.prod(x_shape), out_values) < _ONE_THREAD_VALUES and macs < _ONE_THREAD_MACS
        return _threads.serial() if small else contextlib.nullcontext()

    def _conv2d(
        self, g: Any, x: Any, weight: Any, bias: Any, relu_max: float | None = None, residual: Any = None,
        sums: Any = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """:meth:`_conv2d_forward`; the output pass also adds ``residual`` (the output's shape) if given, then with
        ``relu_max`` (+inf: ``conv2d_relu`` and ``conv2d_add_relu``, 6: ``conv2d_relu6``) applies
        min(relu(out), relu_max) (groups 1 or depthwise only); ``sums``: ``channel_sums`` to fill (of the plain
        convolution's output: no residual or activation). A small one in one thread (:meth:`_one_thread_if_small`)."""
        assert residual is None or relu_max == math.inf, "a residual comes with a ReLU (conv2d_add_relu)"
        assert sums is None or (relu_max is None and residual is None), "channel sums are conv2d's alone"
        x, crop = self._symmetric(x, g)
        with self._one_thread_if_small(tuple(x.shape), weight, g):
            # the dense convolutions of float32 and float64 fill the sums themselves; the others sum their output
            dense = g.groups == 1 and x.dtype in _NATIVE
            out, cache = self._conv2d_with_threads(
                g, x, crop, weight, bias, relu_max, residual, sums if dense else None
            )
            if sums is not None and not dense:
                self._channel_sums(out, sums)
            return out, cache

    def _conv2d_with_threads(
        self, g: Any, x: Any, crop: Any, weight: Any, bias: Any, relu_max: float | None, residual: Any,
        sums: Any = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        if self._is_depthwise(tuple(x.shape), weight, g.groups):
            geometry = (g.SH, g.SW, g.top, g.left, g.DH, g.DW, g.OH, g.OW)
            if residual is None:
                out = self._depthwise_conv2d(x, weight, bias, *geometry, relu_max=relu_max)
            else:  # (its output pass takes no residual: one more pass)
                out = self._add_relu_into(self._depthwise_conv2d(x, weight, bias, *geometry), residual)
            return out, ConvCache(x, weight, bias is not None, g, tuple(x.shape), crop)
        if g.groups != 1:
            assert relu_max is None and residual is None, "the activation pairs decline grouped convolutions"
            return self._grouped_conv2d(x, weight, bias, g, crop)
        geometry = (g.KH, g.KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
        out = self._conv2d_dense(x, weight, bias, *geometry, relu_max=relu_max, residual=residual, sums=sums)
        return out, ConvCache(x, weight, bias is not None, g, tuple(x.shape), crop)

    @_native_dtypes
    def _add_relu_into(self, out: Any, residual: Any) -> Any:
        """``out = relu(out + residual)`` in place, in one pass (for the algorithms whose output pass does not add a
        residual); returns ``out`` (float16 and other dtypes: a new array, computed in float32). The residual is read
        in ``out``'s layout (a copy if it has the other)."""
        view, nhwc = _kernel_view(out)
        res, _ = _k.residual_arguments(residual, nhwc, out.dtype)
        self._flat(_k.add_relu_into, view.size, (res,), (view,))
        return out

    def _conv2d_backward(
        self, dout: Any, cache: Any, *, compute_dw: bool = True, dx_add: Any = None
    ) -> tuple[Any, Any, Any]:  # fmt: skip
        """``(dx, dw, db)`` of :meth:`_conv2d_forward` (``dw`` None when not ``compute_dw``; with ``dx_add``, dx +
        dx_add: added in dx's output pass where dx and dW run as F(4x4, 3x3) in one region, else in one more pass); a
        small one in one thread (:meth:`_one_thread_if_small`)."""
        if dx_add is not None:  # checked before a kernel reads it, as the reference checks it
            x_shape, crop = cache.x_shape, cache.crop  # (the input as the kernels saw it: with a crop, padded)
            _check_dx_add(dx_add, x_shape if crop is None else (*x_shape[:2], *crop), dout.dtype)
        with self._one_thread_if_small(cache.x_shape, cache.weight, cache.g):
            return self._conv2d_backward_with_threads(dout, cache, compute_dw, dx_add)

    def _conv2d_backward_with_threads(
        self, dout: Any, cache: Any, compute_dw: bool, dx_add: Any
    ) -> tuple[Any, Any, Any]:  # fmt: skip
        x, weight, has_bias, g, crop = cache.x, cache.weight, cache.has_bias, cache.g, cache.crop
        pre = cache.pre  # (a deferred BatchNorm+ReLU's vectors: x is its input)
        db = dout.sum(axis=(0, 2, 3)) if has_bias else None
        if self._is_depthwise(cache.x_shape, weight, g.groups):  # the cache holds x, not x_col
            geometry = (g.SH, g.SW, g.top, g.left, g.DH, g.DW)
            dx, dw = self._depthwise_conv2d_backward(dout, x, weight, *geometry, compute_dw)
        elif g.groups != 1:
            dx, dw = self._grouped_conv2d_backward(dout, cache, compute_dw)
        else:
            geometry = (g.KH, g.KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
            into = dx_add if crop is None else None  # (with a crop, dx_add has the cropped dx's shape)
            dx, dw, added = self._conv2d_dense_backward(dout, x, weight, *geometry, compute_dw, dx_add=into, pre=pre)
            dx_add = None if added else dx_add
            # dx laid out as x, for every algorithm here (Winograd's and the direct 3 x 3's dx, convolutions of dout,
            # come as dout is: a channels_last dout into a C-order x, or the reverse, is copied here)
            if suggest_memory_format(dx) != suggest_memory_format(x):
                dx = contiguous(dx, suggest_memory_format(x))
        if crop is not None:  # the extra rows / columns of an uneven 'same' were padding
            dx = numpy.ascontiguousarray(dx[:, :, : crop[0], : crop[1]])
        if dx_add is not None:  # the algorithm's output pass did not add it: one more pass (dx keeps its layout)
            dx = self._add_forward(None, dx, contiguous(dx_add, suggest_memory_format(dx)))[0]
        return dx, dw, db

    @classmethod
    def _conv2d_relu_accepts(
        cls, x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
        groups: int = 1,
    ) -> bool:  # fmt: skip
        """Groups 1 or depthwise: the activation is applied by those kernels' output pass (``conv2d_relu`` and
        ``conv2d_relu6``; other grouped convolutions run the reference pairs)."""
        if groups == 1:
            return True
        shapes_ok = numpy.ndim(x) == 4 and numpy.ndim(weight) == 4  # (else the reference's setup says what is wrong)
        return shapes_ok and cls._is_depthwise(tuple(numpy.shape(x)), numpy.asarray(weight), groups)

    @classmethod
    def _conv2d_add_relu_accepts(
        cls, x: Any, residual: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
        dilation: Any = 1, groups: int = 1,
    ) -> bool:  # fmt: skip
        """As :meth:`_conv2d_relu_accepts`: groups 1 or depthwise."""
        return cls._conv2d_relu_accepts(x, weight, bias, stride, padding, dilation, groups)

    def _conv2d_relu_forward(
        self, g: Any, x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
        groups: int = 1,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``relu(conv2d(x))`` with the ReLU in the convolution's output pass. Cache: the convolution's and the
        output (whose positive entries are the ReLU's mask)."""
        out, conv_cache = self._conv2d(g, x, weight, bias, relu_max=math.inf)
        return out, (conv_cache, out)

    def _conv2d_relu_backward(self, dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any]:
        """``(dx, dw, db)`` of :meth:`_conv2d_relu_forward`: the ReLU's mask from the output, then the conv's."""
        conv_cache, out = cache
        return self._conv2d_backward(numpy.where(out <= 0, 0, dout), conv_cache, compute_dw=compute_dw)

    def _conv2d_relu6_forward(
        self, g: Any, x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
        groups: int = 1,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``relu6(conv2d(x))`` with the ReLU6 in the convolution's output pass. Cache: the convolution's and the
        output (0 < out < 6 exactly where 0 < conv2d(x) < 6: the ReLU6's mask)."""
        out, conv_cache = self._conv2d(g, x, weight, bias, relu_max=6.0)
        return out, (conv_cache, out)

    def _conv2d_relu6_backward(self, dout: Any, cache: Any, *, compute_dw: bool = True) -> tuple[Any, Any, Any]:
        """``(dx, dw, db)`` of :meth:`_conv2d_relu6_forward`: the ReLU6's mask from the output, then the conv's."""
        conv_cache, out = cache
        return self._conv2d_backward(numpy.where((out > 0) & (out < 6), dout, 0), conv_cache, compute_dw=compute_dw)

    def _conv2d_add_relu_forward(
        self, g: Any, x: Any, residual: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
        dilation: Any = 1, groups: int = 1,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``relu(conv2d(x) + residual)`` with the sum and the ReLU in the convolution's output pass (Winograd, and
        the im2row and 1 x 1 products into a ``channels_last`` output; the other algorithms add them in one more
        pass). Cache: the convolution's and the output (whose positive entries are the ReLU's mask)."""
        out, conv_cache = self._conv2d(g, x, weight, bias, relu_max=math.inf, residual=residual)
        return out, (conv_cache, out)

    def _conv2d_add_relu_backward(
        self, dout: Any, cache: Any, *, compute_dw: bool = True
    ) -> tuple[Any, Any, Any, Any]:  # fmt: skip
        """``(dx, dresidual, dw, db)`` of :meth:`_conv2d_add_relu_forward`: dz = dout where the output is positive
        (the ReLU's mask), which is the residual's gradient, then the convolution's gradients of dz."""
        conv_cache, out = cache
        dz = numpy.where(out <= 0, 0, dout)
        dx, dw, db = self._conv2d_backward(dz, conv_cache, compute_dw=compute_dw)
        return dx, dz, dw, db

    # ------------------------------------------------------------------ grouped convolution (the reference's GEMMs)
    def _grouped_conv2d(self, x: Any, weight: Any, bias: Any, g: Any, crop: Any) -> tuple[Any, Any]:
        """Per group, W_col @ x_col as in ``conv.py``'s reference, with the compiled im2col."""
        N = x.shape[0]
        O, Cg, KH, KW = weight.shape
        G, M = g.groups, N * g.OH * g.OW
        x_col = self._im2col(x, KH, KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
        out = (weight.reshape(G, O // G, Cg * KH * KW) @ x_col.reshape(G, Cg * KH * KW, M)).reshape(O, M)
        if bias is not None:
            out += bias[:, None]
        out = numpy.ascontiguousarray(out.reshape(O, N, g.OH, g.OW).transpose(1, 0, 2, 3))
        return out, ConvCache(x_col, weight, bias is not None, g, tuple(x.shape), crop)

    def _grouped_conv2d_backward(self, dout: Any, cache: Any, compute_dw: bool) -> tuple[Any, Any]:
        """``(dx, dw)`` of :meth:`_grouped_conv2d`: dW = dout_col @ x_col^T and dx = col2im(W_col^T @ dout_col)."""
        x_col, weight, g, x_shape = cache.x, cache.weight, cache.g, cache.x_shape
        O, Cg, KH, KW = weight.shape
        G, K, M = g.groups, Cg * KH * KW, x_shape[0] * g.OH * g.OW
        dout_col = numpy.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(G, O // G, M)
        dw = (dout_col @ x_col.reshape(G, K, M).transpose(0, 2, 1)).reshape(weight.shape) if compute_dw else None
        dx_col = weight.reshape(G, O // G, K).transpose(0, 2, 1) @ dout_col
        dx = self._col2im(dx_col.reshape(G * K, M), x_shape, KH, KW, g.SH, g.SW, g.top, g.left, g.DH, g.DW)
        return dx, dw

    # ------------------------------------------------------------------ which algorithm runs (groups == 1)
    # The shapes pick one by the rules of the module docstring: the first name of each list below. With ``autotune``
    # (off by default, MINIDL_AUTOTUNE=1) the first time a convolution's shapes come, every algorithm of its list is
    # timed on the call's own arrays, and the fastest runs from then on, as ``torch.backends.cudnn.benchmark`` does
    # on a GPU. The rules were measured on one CPU (AMD Zen 4; benchmarks/README.md); another (an Intel core with two
    # AVX-512 FMA units, where BLAS runs twice as fast beside the memory-bound transforms) may be served better by
    # another choice, which the autotuner finds there. The lists hold every algorithm that computes the layer, also
    # outside the rules' thresholds (the direct 3 x 3 up to _DIRECT_TUNE_MAX_C input channels, Winograd's with
    # fewer than 8 channels).
    @property
    def autotune(self) -> bool:
        """Time the algorithms that can run each convolution shape the first time it comes, then run the fastest
        (:meth:`autotune_results` says what it chose). False (the default, also ``MINIDL_AUTOTUNE=0``): the rules,
        which give the same bits on every run and any thread count."""
        return self._autotune

    @autotune.setter
    def autotune(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"NumbaBackend.autotune: expected True or False, got {value!r}")
        self._autotune = value

    def autotune_results(self) -> list[dict[str, Any]]:
        """What the autotuner chose so far, one dict per convolution shape and direction (each new shape is tuned once,
        a last smaller batch too; the table lives as long as the backend): ``direction`` ('forward'; 'backward' for
        both gradients in one pass; 'dx' and 'dw' where Winograd can run the layer, its two gradients tuned apart),
        ``x`` and ``weight`` shapes, ``geometry`` (KH, KW, SH, SW, PH, PW, DH, DW), ``channels_last`` (x's layout),
        ``dtype``, what else the pass does (``epilogue``: forward 'relu' or 'add_relu', else None; ``compute_dw``:
        backward), ``threads``, ``algorithm`` (the one that runs) and ``ms`` (each algorithm's fastest timed run)."""
        return [
            {**dict(key[:-2]), "algorithm": name, "ms": {k: round(1e3 * v, 3) for k, v in times.items()}}
            for key, (name, times) in self._autotuned.items()
        ]

    def _forward_algorithms(self, x_shape: tuple[int, ...], O: int, geometry: tuple[int, ...]) -> tuple[str, ...]:
        """The algorithms that can run a forward (groups 1), the rules' choice first: ``pointwise`` (1 x 1 without
        padding), ``winograd2`` / ``winograd4`` (F(2x2, 3x3) / F(4x4, 3x3), 3 x 3 stride 1, padding up to 2; the
        second only with ``winograd_tile`` 4, neither with ``winograd`` False), ``direct`` (3 x 3 stride 1, up to
        _DIRECT_TUNE_MAX_C input channels), ``im2row`` (any)."""
        return self._algorithms(x_shape, O, geometry, math.inf)

    def _backward_algorithms(self, x_shape: tuple[int, ...], O: int, geometry: tuple[int, ...]) -> tuple[str, ...]:
        """As :meth:`_forward_algorithms`, for the backward: ``winograd2`` / ``winograd4`` (dx, a stride-1 3 x 3
        convolution of dout with padding 2 - P, also 0 to 2, as Winograd's; dW by the adjoint transforms), ``direct``
        only up to padding 2. In this order the Winograd names are dW's (the rules: the forward's tile);
        :meth:`_conv2d_dense_backward` orders dx's by its own convolution's."""
        return self._algorithms(x_shape, O, geometry, 2)

    def _algorithms(
        self, x_shape: tuple[int, ...], O: int, geometry: tuple[int, ...], direct_max_padding: float
    ) -> tuple[str, ...]:  # fmt: skip
        """:meth:`_forward_algorithms` and :meth:`_backward_algorithms`, which differ by the padding the direct 3 x 3
        takes. The rules' Winograd (8+ channels) and direct (few input channels) never both apply."""
        N, C, H, W = x_shape
        KH, KW, SH, SW, PH, PW, DH, DW = geometry
        if (KH, KW, PH, PW) == (1, 1, 0, 0):
            return ("pointwise", "im2row")
        winograd = self._winograd_names(N, C, O, geometry, H + 2 * PH - 2, W + 2 * PW - 2)
        direct = ("direct",) if self._direct_possible(C, geometry, direct_max_padding) else ()
        if winograd and self._winograd_applies(C, O, *geometry):
            return (*winograd, *direct, "im2row")
        if direct and self._direct_applies(C, KH, KW, SH, SW, DH, DW):
            return (*direct, *winograd, "im2row")
        return ("im2row", *winograd, *direct)

    def _winograd_names(
        self, N: int, C: int, O: int, geometry: tuple[int, ...], OH: int, OW: int
    ) -> tuple[str, ...]:  # fmt: skip
        """The Winograd algorithms that can run a layer (3 x 3, stride 1, no dilation, padding 0 to 2, and so is the
        backward's dx padding 2 - P; ``winograd`` on), the rules' tile first (F(4x4, 3x3) only with
        ``winograd_tile`` 4); () for other layers."""
        KH, KW, SH, SW, PH, PW, DH, DW = geometry
        if not self.winograd or (KH, KW, SH, SW, DH, DW) != (3, 3, 1, 1, 1, 1) or not (0 <= PH <= 2 and 0 <= PW <= 2):
            return ()
        rule = self._winograd_tile_for(None, N, C, O, OH, OW)
        other = 2 if rule == 4 else 4
        if other == 4 and self.winograd_tile != 4:
            return (f"winograd{rule}",)
        return (f"winograd{rule}", f"winograd{other}")

    @staticmethod
    def _direct_possible(C: int, geometry: tuple[int, ...], max_padding: float) -> bool:
        """Whether the direct 3 x 3 can run a layer for the autotuner: 3 x 3, stride 1, no dilation, at most
        _DIRECT_TUNE_MAX_C input channels, padding up to ``max_padding`` (the forward: any; the backward's dx: 2)."""
        KH, KW, SH, SW, PH, PW, DH, DW = geometry
        return (KH, KW, SH, SW, DH, DW) == (3, 3, 1, 1, 1, 1) and C <= _DIRECT_TUNE_MAX_C and max(PH, PW) <= max_padding

    def _tuning_key(self, about: dict[str, Any]) -> tuple[Any, ...]:
        """The key of the autotuner's choice for ``about`` (its shapes, layout, dtype, epilogue), the thread count
        and the Winograd settings added."""
        threads = 1 if _threads.in_region() else _threads.get_num_threads()
        return (*{**about, "threads": threads}.items(), self.winograd, self.winograd_tile)

    def _tuned_choice(self, about: dict[str, Any]) -> str | None:
        """The algorithm :meth:`_tuned` chose for ``about``, or None before it has tuned it."""
        chosen = self._autotuned.get(self._tuning_key(about))
        return None if chosen is None else chosen[0]

    def _tuned(
        self, about: dict[str, Any], names: tuple[str, ...], run: Callable[[str], Any], result: bool = True
    ) -> Any:  # fmt: skip
        """``run(name)`` of the algorithm :attr:`autotune` chose for the convolution ``about`` describes (its shapes,
        layout, dtype, epilogue; the thread count and the Winograd settings are added), tuned the first time it comes:
        each of ``names`` runs once untimed (its kernels loaded, its buffers sized), then timed at least
        _AUTOTUNE_RUNS times and for at least _AUTOTUNE_SECONDS; the fastest runs from then on, but the rules'
        choice (``names[0]``) stays unless another is faster by _AUTOTUNE_MARGIN (timings vary by a few per cent:
        the choice should not). This call returns the chosen algorithm's last result (with ``result`` False, its
        name: ``run`` then runs only to be timed). The scratch buffers the others sized are given back."""
        key = self._tuning_key(about)
        chosen = self._autotuned.get(key)
        if chosen is not None:
            return run(chosen[0]) if result else chosen[0]
        workspace = dict(self._workspace)  # the scratch buffers before: the others' are given back below
        times: dict[str, float] = {}
        for name in names:
            run(name)
            times[name], runs, spent = math.inf, 0, 0.0
            while runs < _AUTOTUNE_RUNS or spent < _AUTOTUNE_SECONDS:
                start = time.perf_counter()
                run(name)
                took = time.perf_counter() - start
                times[name], runs, spent = min(times[name], took), runs + 1, spent + took
        best = min(names, key=times.__getitem__)
        if times[best] > times[names[0]] * (1 - _AUTOTUNE_MARGIN):
            best = names[0]
        self._autotuned[key] = (best, times)
        # the tried algorithms' scratch, new or grown (the algorithms share some buffers' names), as it was before
        # (the chosen one sizes its own again)
        for name in set(self._workspace) - set(workspace):
            del self._workspace[name]
        self._workspace.update(workspace)
        return run(best) if result else best

    # ------------------------------------------------------------------ fused convolution (groups == 1)
    def _images_per_chunk(self, N: int, K: int, OHW: int, itemsize: int) -> int:
        """Images per chunk: the im2row buffer near _CHUNK_BYTES, and at least _MIN_CHUNKS chunks when possible (to
        share them among threads). It does not depend on the thread count, so neither do the results."""
        by_cache = max(1, _CHUNK_BYTES // max(1, K * OHW * itemsize))
        return min(by_cache, max(1, N // _MIN_CHUNKS))

    @_native_dtypes
    def _conv2d_dense(
        self, x: Any, weight: Any, bias: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int,
        relu_max: float | None = None, residual: Any = None, sums: Any = None,
    ) -> Any:  # fmt: skip
        """``out = conv2d(x, weight, bias)`` (groups 1) by the algorithm the shapes pick
        (:meth:`_forward_algorithms`; with :attr:`autotune`, the fastest of them, :meth:`_tuned`).

        Args:
            x: (N, C, H, W).  weight: (O, C, KH, KW).  bias: (O,) or None.
            relu_max: apply min(relu(out), relu_max) in the same pass: +inf a ReLU, 6 a ReLU6 (inference: see
                ``minidl/nn/fusion.py``); None (the default) none.
            residual: (N, O, OH, OW) or None: added before the activation (``conv2d_add_relu``), in the output pass
                of Winograd and of the products into a ``channels_last`` output, else in one pass after.
            sums: the pair's ``channel_sums`` ((3, O) float64; x float32 or float64, whose arrays this method does
                not copy) or None: filled in F(4x4, 3x3)'s output pass where it takes them, else in one pass after.
        Returns:
            out: (N, O, OH, OW), what ``conv.py``'s reference (``W_col @ im2col(x) + b``) computes.
        """
        geometry = (KH, KW, SH, SW, PH, PW, DH, DW)
        names = self._forward_algorithms(x.shape, weight.shape[0], geometry)
        if not self._autotune or len(names) == 1:
            return self._forward_with(names[0], x, weight, bias, geometry, relu_max, residual, sums)
        about = self._forward_about(x, weight, geometry, relu_max, residual)
        run = functools.partial(self._forward_with, x=x, weight=weight, bias=bias, geometry=geometry, relu_max=relu_max,
                                residual=residual)  # fmt: skip
        if sums is not None:  # the candidates are timed without them (the first time), the chosen one runs with them
            return self._forward_with(self._tuned(about, names, run, result=False), x, weight, bias, geometry,
                                      relu_max, residual, sums)  # fmt: skip
        return self._tuned(about, names, run)

    @staticmethod
    def _forward_about(x: Any, weight: Any, geometry: tuple[int, ...], relu_max: float | None, residual: Any) -> Any:
        """The autotuner's description of a forward (:meth:`_tuned`'s ``about``)."""
        epilogue = None if relu_max is None else ("relu" if residual is None else "add_relu")
        residual_nhwc = residual is not None and _nhwc(residual) is not None
        return _about("forward", x, weight, geometry, epilogue=epilogue, residual_channels_last=residual_nhwc)

    def _dense_algorithm(self, x: Any, weight: Any, geometry: tuple[int, ...]) -> str | None:
        """The algorithm a plain forward of x (groups 1, no epilogue) runs: the rules' choice, or the one
        :attr:`autotune` chose for it (None where it has not tuned that layer yet)."""
        names = self._forward_algorithms(x.shape, weight.shape[0], geometry)
        if not self._autotune or len(names) == 1:
            return names[0]
        return self._tuned_choice(self._forward_about(x, weight, geometry, None, None))

    def _forward_with(
        self, algorithm: str, x: Any, weight: Any, bias: Any, geometry: tuple[int, ...], relu_max: float | None,
        residual: Any, sums: Any = None,
    ) -> Any:  # fmt: skip
        """:meth:`_conv2d_dense` by ``algorithm`` (one of :meth:`_forward_algorithms`'s names)."""
        KH, KW, SH, SW, PH, PW, DH, DW = geometry
        if algorithm in _WINOGRAD_TILES:
            tile = _WINOGRAD_TILES[algorithm]
            return self._winograd_conv(x, weight, bias, PH, PW, relu_max, residual, tile=tile, sums=sums)
        if sums is not None:  # the other algorithms' output passes take no sums: one pass after
            out = self._forward_with(algorithm, x, weight, bias, geometry, relu_max, residual)
            self._channel_sums(out, sums)
            return out
        if residual is not None and (_nhwc(x) is None or algorithm == "direct"):
            # the output passes that add a residual: Winograd's, and the products' into a channels_last output
            # (1 x 1 and im2row); the direct 3 x 3 and the C-order copy-out take it in one more pass, with the ReLU
            return self._add_relu_into(self._forward_with(algorithm, x, weight, bias, geometry, None, None), residual)
        if algorithm == "direct":
            return self._direct_conv(x, weight, bias, PH, PW, relu_max)
        if algorithm == "pointwise":
            return self._pointwise_conv(x, weight, bias, SH, SW, relu_max, residual)
        assert algorithm == "im2row", f"not a convolution algorithm: {algorithm}"
        return self._im2row_conv(x, weight, bias, *geometry, relu_max, residual)

    def _im2row_conv(
        self, x: Any, weight: Any, bias: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int,
        relu_max: float | None, residual: Any,
    ) -> Any:  # fmt: skip
        """:meth:`_conv2d_dense` as im2row + GEMM per chunk of images; no batch-sized matrix (``residual`` only into a
        ``channels_last`` output).

        Per chunk: rows = im2row(x_chunk) (images OHW, K) with K in (kh, kw, c) order; y = rows @ W_row^T
        (images OHW, O), W_row the weight as (O, KH KW C); out_chunk = y^T (+ b) in (N, O, OH, OW) layout."""
        N, C, H, W = x.shape
        O = weight.shape[0]
        OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
        OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        K, OHW, dtype = C * KH * KW, OH * OW, x.dtype
        x, nhwc = _kernel_view(x)
        res, has_res = _k.residual_arguments(residual, nhwc, dtype)
        w_row_t = numpy.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(K, O)  # W_row^T, contiguous: faster
        b, has_bias = _k.bias_arguments(bias, dtype)
        out, out_nhwc = _empty_nchw((N, O, OH, OW), dtype, nhwc)
        nb = self._images_per_chunk(N, K, OHW, x.itemsize)
        relu, cap = _k.epilogue(relu_max, dtype)

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            rows = self._buffer(worker, "rows", ((n1 - n0) * OHW, K), dtype)
            xp = self._buffer(worker, "xt", (C * (H + 2 * PH) * (W + 2 * PW),), dtype)  # (padded)
            _k.im2row(x, nhwc, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xp, rows)
            if nhwc:  # the GEMM's (pixels, O) result is the chunk's part of the channels_last output
                y = out_nhwc[n0:n1].reshape((n1 - n0) * OHW, O)
                numpy.matmul(rows, w_row_t, out=y)
                _k.rows_epilogue(y, b, has_bias, relu, cap, res, has_res, n0 * OHW * O)
                return
            y = self._buffer(worker, "y", ((n1 - n0) * OHW, O), dtype)
            numpy.matmul(rows, w_row_t, out=y)
            _k.rows_to_nchw(y, n0, n1, b, has_bias, relu, cap, out.reshape(N, O, OHW))

        _threads.parallel_for(body, _ceil_div(N, nb), max_threads=self._gemm_threads())
        return out

    # ------------------------------------------------------------------ direct 3 x 3 (few input channels)
    @staticmethod
    def _direct_applies(C: int, KH: int, KW: int, SH: int, SW: int, DH: int, DW: int) -> bool:
        """Whether a forward (groups 1) runs :func:`~minidl.backend._numba_direct.direct3x3_forward`: 3 x 3,
        stride 1, no dilation, at most _DIRECT_MAX_C input channels (an RGB image). Shapes only decide."""
        return (KH, KW, SH, SW, DH, DW) == (3, 3, 1, 1, 1, 1) and C <= _DIRECT_MAX_C

    def _direct_conv(self, x: Any, weight: Any, bias: Any, PH: int, PW: int, relu_max: float | None) -> Any:
        """``conv2d(x, weight, bias)`` for a 3 x 3 stride-1 weight and padding (PH, PW), computed directly per
        output plane (``_numba_direct.py``), in parallel over chunks of images."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        HP, WP = H + 2 * PH, W + 2 * PW
        OH, OW = HP - 2, WP - 2
        x, nhwc = _kernel_view(x)  # a channels_last x is read as it lies, and the output is channels_last too
        w = numpy.ascontiguousarray(weight, dtype=dtype)
        b, has_bias = _k.bias_arguments(bias, dtype)
        out, out_nhwc = _empty_nchw((N, O, OH, OW), dtype, nhwc)
        relu, cap = _k.epilogue(relu_max, dtype)

        def body(worker: int, n0: int, n1: int) -> None:
            xp = self._buffer(worker, "direct_x", (C * HP * WP,), dtype)
            acc = self._buffer(worker, "direct_acc", (2 * ((OH - 1) * WP + OW),), dtype)
            ot = self._buffer(worker, "direct_out", (O * OH * OW if nhwc else 1,), dtype)  # (channels_last's scratch)
            target = out_nhwc if nhwc else out
            _direct.direct3x3_forward(x, nhwc, w, b, has_bias, n0, n1, PH, PW, relu, cap, xp, acc, target, nhwc, ot)

        self._over_images(N, max(1, N // _MIN_CHUNKS), body)
        return out

    def _direct_conv_backward(
        self, dout: Any, x: Any, weight: Any, PH: int, PW: int, compute_dw: bool, compute_dx: bool = True
    ) -> tuple[Any, Any]:  # fmt: skip
        """``(dx, dw)`` of :meth:`_direct_conv` (padding at most 2; ``dx`` None when not ``compute_dx``): dx is the
        direct convolution of dout with the flipped, transposed filters and padding 2 - P (C, at most _DIRECT_MAX_C
        by the rules, output channels); dW :func:`~minidl.backend._numba_direct.direct3x3_weight_gradient` per chunk
        of images, one float64 partial sum per chunk, added in chunk order (thread-count independent)."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        dout = dout.astype(dtype, copy=False)
        dx = None
        if compute_dx:
            # laid out as dout (the caller lays it out as x)
            dx = self._direct_conv(dout, self._dx_filters(weight), None, 2 - PH, 2 - PW, None)
        if not compute_dw:
            return dx, None
        HP, WP = H + 2 * PH, W + 2 * PW
        L = (dout.shape[2] - 1) * WP + dout.shape[3]
        x, nhwc = _kernel_view(x)  # (each read as it lies: channels_last or C order)
        dout, dout_nhwc = _kernel_view(dout)
        nb = max(1, N // _MIN_CHUNKS)
        parts = numpy.zeros((max(1, _ceil_div(N, nb)), O, C, 9))  # zeros: an empty batch

        def body(worker: int, task: int) -> None:
            n0, n1 = task * nb, min(N, (task + 1) * nb)
            xp = self._buffer(worker, "direct_x", (C * HP * WP,), dtype)
            dp = self._buffer(worker, "direct_dout", (O * L,), dtype)
            _direct.direct3x3_weight_gradient(x, nhwc, dout, dout_nhwc, n0, n1, PH, PW, False, xp, dp, parts[task])
            if not numpy.isfinite(parts[task]).all():  # an inf or NaN in the chunk: sum its output pixels only
                parts[task][...] = 0
                _direct.direct3x3_weight_gradient(x, nhwc, dout, dout_nhwc, n0, n1, PH, PW, True, xp, dp, parts[task])

        _threads.parallel_for(body, _ceil_div(N, nb))
        return dx, self._add_in_order(parts).reshape(O, C, 3, 3).astype(dtype)

    @_native_dtypes
    def _conv2d_dense_backward(
        self,
        dout: Any,
        x: Any,
        weight: Any,
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        DH: int,
        DW: int,
        compute_dw: bool = True,
        dx_add: Any = None,
        pre: Any = None,
    ) -> tuple[Any, Any, bool]:
        """``(dx, dw, added)`` of :meth:`_conv2d_dense` (``dw`` None when not ``compute_dw``; the bias gradient is
        the layer's, a sum of ``dout``) by the algorithm the shapes pick (:meth:`_backward_algorithms`; with
        :attr:`autotune`, the fastest of them). ``added``: whether dx already holds ``dx_add`` (x's shape), which
        F(4x4, 3x3)'s dx and dW in one region add in dx's output pass; the caller adds it otherwise. With ``pre``
        (the forward's input a deferred BatchNorm+ReLU of x: its vectors), dW is that of the input
        relu((x - mean) scale + offset), which F(4x4, 3x3) in one region computes as it reads x, the others first."""
        geometry = (KH, KW, SH, SW, PH, PW, DH, DW)
        names = self._backward_algorithms(x.shape, weight.shape[0], geometry)
        if not any(name in _WINOGRAD_TILES for name in names):  # pointwise, direct or im2row: dx and dW in one pass
            if pre is not None:  # (these read the convolution's input itself)
                x = BatchNormReLUOutput(x, *pre).computed()
            if not self._autotune or len(names) == 1:
                return *self._backward_with(names[0], dout, x, weight, geometry, compute_dw), False
            run = functools.partial(self._backward_with, dout=dout, x=x, weight=weight, geometry=geometry,
                                    compute_dw=compute_dw)  # fmt: skip
            dout_nhwc = _nhwc(dout) is not None
            about = _about("backward", x, weight, geometry, dout_channels_last=dout_nhwc, compute_dw=compute_dw)
            return *self._tuned(about, names, run), False
        # where Winograd's can run it, dx (a convolution of dout) and dW (the adjoint transforms) are two passes, so
        # each is tuned on its own; one algorithm for both runs as one pass. The rules: dW's Winograd tile is the
        # forward's, dx's its own convolution's (the same but for padding 0 or 2 around 7 x 7 outputs)
        N, C, H, W = x.shape
        dx_winograd = iter(self._winograd_names(N, weight.shape[0], C, geometry, H, W))
        dx_names = tuple(next(dx_winograd) if name in _WINOGRAD_TILES else name for name in names)
        dx_name, dw_name = dx_names[0], names[0] if compute_dw else None
        if self._autotune:
            dout_nhwc = _nhwc(dout) is not None
            dx_run = functools.partial(self._dx_with, dout=dout, x=x, weight=weight, geometry=geometry)
            dx_about = _about("dx", x, weight, geometry, dout_channels_last=dout_nhwc)
            dx_name = self._tuned(dx_about, dx_names, dx_run, result=False)
            if compute_dw:
                dw_run = functools.partial(self._dw_with, dout=dout, x=x, weight=weight, geometry=geometry)
                dw_about = _about("dw", x, weight, geometry, dout_channels_last=dout_nhwc)
                dw_name = self._tuned(dw_about, names, dw_run, result=False)
        both4 = dx_name == dw_name == "winograd4"  # both as F(4x4, 3x3): chunk by chunk, in one region where it fits
        one_region = both4 and self._winograd4_in_one_region(N, C, weight.shape[0], *dout.shape[2:], x.itemsize)
        if pre is not None:
            if one_region and self._winograd4_reads_bn_relu(x, weight.shape[0], PH, PW):
                return *self._winograd4_backward(dout, x, weight, PH, PW, dx_add, pre=pre), dx_add is not None
            x = BatchNormReLUOutput(x, *pre).computed()  # (the other paths read the convolution's input itself)
        if dx_name in ("im2row", "direct") and dw_name in (dx_name, None):
            return *self._backward_with(dx_name, dout, x, weight, geometry, compute_dw), False
        if one_region:
            return *self._winograd4_backward(dout, x, weight, PH, PW, dx_add), dx_add is not None
        dx = self._dx_with(dx_name, dout, x, weight, geometry)
        dw = self._dw_with(dw_name, dout, x, weight, geometry) if compute_dw else None
        return dx, dw, False

    def _backward_with(
        self, algorithm: str, dout: Any, x: Any, weight: Any, geometry: tuple[int, ...], compute_dw: bool
    ) -> tuple[Any, Any]:  # fmt: skip
        """:meth:`_conv2d_dense_backward` by one algorithm for both gradients: ``pointwise``, ``direct`` or
        ``im2row``."""
        KH, KW, SH, SW, PH, PW, DH, DW = geometry
        if algorithm == "pointwise":
            return self._pointwise_conv_backward(dout, x, weight, SH, SW, compute_dw)
        if algorithm == "direct":
            return self._direct_conv_backward(dout, x, weight, PH, PW, compute_dw)
        assert algorithm == "im2row", f"not an algorithm for both gradients in one pass: {algorithm}"
        return self._im2row_conv_backward(dout, x, weight, *geometry, compute_dw)

    def _dx_with(self, algorithm: str, dout: Any, x: Any, weight: Any, geometry: tuple[int, ...]) -> Any:
        """dx alone, by ``winograd2`` / ``winograd4`` (dx of a stride-1 3 x 3 convolution is itself one, of dout with
        the flipped, transposed filters and padding 2 - P; laid out as dout) or ``im2row``."""
        PH, PW = geometry[4], geometry[5]
        if algorithm in _WINOGRAD_TILES:
            dout, tile = dout.astype(x.dtype, copy=False), _WINOGRAD_TILES[algorithm]
            return self._winograd_conv(dout, self._dx_filters(weight), None, 2 - PH, 2 - PW, tile=tile)
        if algorithm == "direct":
            return self._direct_conv_backward(dout, x, weight, PH, PW, False)[0]
        assert algorithm == "im2row", f"not an algorithm for dx: {algorithm}"
        return self._im2row_conv_backward(dout, x, weight, *geometry, compute_dw=False)[0]

    def _dw_with(self, algorithm: str, dout: Any, x: Any, weight: Any, geometry: tuple[int, ...]) -> Any:
        """dW alone, by ``winograd2`` / ``winograd4`` (the adjoint transforms), ``direct`` or ``im2row``."""
        PH, PW = geometry[4], geometry[5]
        if algorithm in _WINOGRAD_TILES:
            return self._winograd_weight_gradient(x, dout, weight.shape, PH, PW, tile=_WINOGRAD_TILES[algorithm])
        if algorithm == "direct":
            return self._direct_conv_backward(dout, x, weight, PH, PW, True, compute_dx=False)[1]
        assert algorithm == "im2row", f"not an algorithm for dW: {algorithm}"
        return self._im2row_conv_backward(dout, x, weight, *geometry, compute_dw=True, compute_dx=False)[1]

    def _im2row_conv_backward(
        self, dout: Any, x: Any, weight: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int,
        compute_dw: bool, compute_dx: bool = True,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``(dx, dw)`` of :meth:`_im2row_conv` (``dx`` None when not ``compute_dx``, ``dw`` when not
        ``compute_dw``).

        Per chunk, with G = dout_chunk as (O, images OHW): rows = im2row(x_chunk); dW_row += G @ rows;
        drows = G^T @ W_row; dx_chunk = row2im(drows). Each chunk (or fixed group of chunks, for a big weight)
        has its own dW partial sum, added in order at the end, so dW does not depend on which thread ran what.
        """
        N, C, H, W = x.shape
        O = weight.shape[0]
        OH, OW = dout.shape[2], dout.shape[3]
        K, OHW, dtype = C * KH * KW, OH * OW, x.dtype
        x, nhwc = _kernel_view(x)
        dout, dout_nhwc = _kernel_view(dout.astype(dtype, copy=False))
        w_row = numpy.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(O, K)
        dx, dx_nhwc = _empty_nchw((N, C, H, W) if compute_dx else (0, C, H, W), dtype, nhwc)  # laid out as x is
        nb = self._images_per_chunk(N, K, OHW, x.itemsize)
        chunks = _ceil_div(N, nb)
        # one dW partial sum per chunk when they fit in _DW_BYTES (fine-grained tasks), else per group of chunks;
        # the grouping follows from the shapes only, and the partials are added in order: deterministic
        groups = self._split(chunks, max(1, min(chunks, _DW_BYTES // (O * K * x.itemsize))))
        dw_parts = numpy.zeros((len(groups), O, K), dtype=dtype) if compute_dw else None  # zeros: an empty batch
        # OpenBLAS runs the two backward GEMMs of a 16-channel layer ~20% faster on blocks of 256 rows than whole
        block = _SMALL_O_BLOCK if O <= 16 else max(1, nb * OHW)

        def body(worker: int, group: int) -> None:
            for chunk in range(*groups[group]):
                n0, n1 = chunk * nb, min(N, (chunk + 1) * nb)
                P = (n1 - n0) * OHW
                if dout_nhwc:
                    g = dout[n0:n1].reshape(P, O).T  # G^T (pixels, O) is the chunk of a channels_last dout
                elif n1 - n0 == 1:
                    g = dout[n0].reshape(O, OHW)  # (O, OHW): already the chunk's G
                else:
                    g = self._buffer(worker, "g", (O, P), dtype)
                    _k.nchw_to_cols(dout.reshape(N, O, OHW), n0, n1, g)
                rows = self._buffer(worker, "rows", (P, K), dtype)
                # im2row's padded image, also row2im's (H W C) scratch
                xt = self._buffer(worker, "xt", (C * (H + 2 * PH) * (W + 2 * PW),), dtype)
                if compute_dw:
                    _k.im2row(x, nhwc, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, rows)
                    for s in range(0, P, block):  # dW += G @ rows, block by block
                        e = min(P, s + block)
                        if chunk == groups[group][0] and s == 0:
                            numpy.matmul(g[:, s:e], rows[s:e], out=dw_parts[group])
                        else:
                            part = self._buffer(worker, "dw", (O, K), dtype)
                            numpy.matmul(g[:, s:e], rows[s:e], out=part)
                            dw_parts[group] += part
                if not compute_dx:
                    continue
                for s in range(0, P, block):  # drows = G^T @ W_row, reusing the rows' buffer
                    e = min(P, s + block)
                    numpy.matmul(g[:, s:e].T, w_row, out=rows[s:e])
                target = dx_nhwc if nhwc else dx
                _k.row2im(rows, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, target, nhwc)

        _threads.parallel_for(body, len(groups), max_threads=self._gemm_threads())
        dw = None
        if compute_dw:
            dw = numpy.ascontiguousarray(self._add_in_order(dw_parts).reshape(O, KH, KW, C).transpose(0, 3, 1, 2))
        return (dx if compute_dx else None), dw
