"""Winograd convolutions of the Numba backend: a mixin of :class:`~minidl.backend._numba_conv.ConvKernelsMixin`.

The drivers of the kernels in ``_numba_winograd.py`` (F(2x2, 3x3)) and ``_numba_winograd4.py`` (F(4x4, 3x3)), for 3 x 3
stride-1 convolutions with 8 or more channels in and out (see ``_numba_conv.py`` for when they run):

* **chunks of images** (the usual case): per chunk, input tiles V (16, tiles, C), 16 GEMMs M = V @ U (BLAS, one
  thread per call), output tiles into the (N, O, OH, OW) output; dW from the same tiles, dU = V^T dM, with a partial
  sum per chunk (or fixed group of chunks) added in order. With NumPy's OpenBLAS a chunk's steps are one compiled
  call (``forward_chunk``, ``weight_gradient_chunk``; the GEMMs by ``_numba_blas.py``), else (another BLAS, or
  ``MINIDL_KERNEL_GEMM=0``) one by one from Python, the GEMMs by ``numpy.matmul``: the same bits either way. F(4x4,
  3x3)'s forward, and its backward where dx and dW run in one region, then run each thread's chunks in one compiled
  loop (``forward_chunks``, ``backward_chunks``; :func:`~minidl.backend._threads.parallel_loops`), no Python between
  two chunks; elsewhere (dW alone, F(2x2, 3x3)) each chunk is a task of its own;
* **batch-wide** (:meth:`WinogradKernelsMixin._winograd_batched`: fewer than 128 tiles per chunk): the transforms
  over the whole batch, then each GEMM once over all its tiles, one task per tile position;
* **F(4x4, 3x3)** (:meth:`WinogradKernelsMixin._winograd4_applies`: 16+ channels, outputs of 7 x 7 or more, 128+
  tiles in the batch) for the forward, dx and dW: 36 GEMMs per chunk.

V, M and U (and dM, dU) are :class:`Planes`: 16 (or 36) matrices stored a little further apart than their size, so
the transforms' many streams do not fall in the same cache sets (see :meth:`WinogradKernelsMixin._wino_planes`).
The split depends on the shapes only, so results do not depend on the number of threads.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy

from minidl.backend import _numba_winograd as _wino
from minidl.backend import _numba_winograd4 as _wino4
from minidl.backend import _threads
from minidl.backend._numba_blas import cblas_gemm
from minidl.backend._numba_common import (
    _CHUNK_BYTES,
    _DW_BYTES,
    _MIN_CHUNKS,
    _ceil_div,
    _dims,
    _empty_nchw,
    _kernel_view,
    _nhwc,
)
from minidl.backend._numba_kernels import bias_arguments, epilogue, residual_arguments
from minidl.backend._numba_tasks import failing_stops_waits, wait_for

_WINOGRAD_MIN_CHANNELS = 8  # Winograd convolutions need this many input and output channels (see _winograd_applies)
_WINOGRAD_MIN_ROWS = 128  # tiles per chunk below which Winograd runs batch-wide (see _winograd_batched; measured)
_WINOGRAD_BATCH_BYTES = 128 << 20  # ... and at most this much V and M for the whole batch
_WINOGRAD4_MIN_SIZE = 7  # F(4x4, 3x3) for outputs at least this big (see _winograd4_applies) ...
_WINOGRAD4_MIN_CHANNELS = 16  # ... and at least this many channels in and out (see _winograd4_applies)
_WINOGRAD4_MIN_TILES = 128  # ... and at least this many 4 x 4 tiles in the batch (measured: 32 images of 8 x 8 pay)
_WINOGRAD4_MIN_CHUNKS = 8  # F(4x4, 3x3) chunks grow for wide layers, but leave at least this many (_winograd_tiles)
_WINOGRAD4_SPLIT = 24  # F(4x4, 3x3) cuts a batch into at least this many chunks where it can (_winograd_tiles)
_PLANE_PAD = 16  # values between two of the planes of a Winograd array (see _wino_planes)
# the F(4x4, 3x3) kernels' arguments for an output pass that takes no channel sums (see _winograd4_conv): shift, s1,
# s2 and has_sums of forward_chunk and output_tiles; shift, parts and has_sums of forward_chunks
_UNSUMMED = (numpy.zeros(1), numpy.zeros(1), numpy.zeros(1), False)
_UNSUMMED_CHUNKS = (numpy.zeros(1), numpy.zeros((1, 2, 1)), False)


def _pre_arguments(pre: Any, dtype: Any) -> tuple[Any, bool]:
    """The ``(pre, has_pre)`` arguments of F(4x4, 3x3)'s input tiles (``input_tiles_of`` of ``_numba_winograd4.py``):
    ``pre``, the (3, C) rows mean, scale and offset (in ``dtype``, contiguous) of a deferred BatchNorm+ReLU whose
    output the convolution reads (:class:`~minidl.nn.BatchNormReLUOutput`), or a placeholder and False without
    one."""
    if pre is None:
        return numpy.empty((3, 1), dtype=dtype), False
    return pre, True


_WEIGHT_SERIAL_VALUES = 1 << 17  # weight transforms of at most this many values run in one thread (_weight_blocks)


class Planes(NamedTuple):
    """16 (or 36) matrices of a Winograd convolution (V, M, U or their gradients), ``plane`` values apart."""

    view: Any  #: (count, rows, cols): what the GEMMs take
    flat: Any  #: the 1-D storage the kernels index: matrix i starts at i * plane
    plane: int  #: the distance between two matrices in ``flat``


class WinogradKernelsMixin:
    """The Winograd methods of the Numba backend's convolutions (they use its ``_buffer``, ``_split``,
    ``_channel_tasks`` and ``_gemm_threads``, and for a ``channel_sums`` the BatchNorm mixin's ``_tiled_shift``,
    ``_channel_sums``, and the backend's ``_add_in_order``)."""

    #: run 3 x 3 stride-1 convolutions as Winograd's F(2x2, 3x3) or F(4x4, 3x3) (``_numba_winograd.py``,
    #: ``_numba_winograd4.py``); False: im2row + GEMM
    winograd: bool = True
    _winograd_tile = 4

    @property
    def winograd_tile(self) -> int:
        """Output tile of the Winograd convolutions: 4 for F(4x4, 3x3) where :meth:`_winograd4_applies` (else
        F(2x2, 3x3)), 2 for F(2x2, 3x3) everywhere."""
        return self._winograd_tile

    @winograd_tile.setter
    def winograd_tile(self, value: int) -> None:
        if value not in (2, 4):
            raise ValueError(
                f"NumbaBackend.winograd_tile: expected 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3) where it pays), got {value!r}"
            )
        self._winograd_tile = value

    # ------------------------------------------------------------------ F(2x2, 3x3) (see _numba_winograd.py)
    def _winograd_applies(
        self, C: int, O: int, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int
    ) -> bool:
        """Whether a convolution runs as Winograd's (F(2x2, 3x3), or F(4x4, 3x3) where :meth:`_winograd4_applies`):
        3 x 3, stride 1, no dilation, padding 0 to 2 (what the backward's dx convolution needs), and at least
        ``_WINOGRAD_MIN_CHANNELS`` channels in and out (with fewer, the 16 small GEMMs do not pay for the
        transforms). ``self.winograd = False`` turns it off."""
        return (
            self.winograd
            and (KH, KW, SH, SW, DH, DW) == (3, 3, 1, 1, 1, 1)
            and 0 <= PH <= 2
            and 0 <= PW <= 2
            and min(C, O) >= _WINOGRAD_MIN_CHANNELS
        )

    @staticmethod
    def _winograd_tiles(N: int, C: int, O: int, OH: int, OW: int, itemsize: int, tile: int = 2) -> tuple[int, int, int]:
        """``(TH, TW, images per chunk)``: ``tile`` x ``tile`` output tiles per column and row, and chunks with
        about _CHUNK_BYTES of V and M ((tile + 2)^2 planes each; at least _MIN_CHUNKS chunks when possible, for F(4x4,
        3x3) _WINOGRAD4_SPLIT: its chunks run in compiled loops (:meth:`_in_loops`), where a smaller chunk costs
        no Python, and a region's threads then finish closer together. 24 against 16 chunks, ``resnet56`` with
        batch 128, 2 threads, Intel Xeon (Emerald Rapids), medians of 5 x 3 interleaved steps in two runs: training
        445-455 -> 436-446 ms, inference 92.8-93.0 -> 88.3-90.6 ms; 20 and 28 chunks about the same as 24. Not
        measured where the chunks run as tasks, one by one from Python (another BLAS, ``MINIDL_KERNEL_GEMM=0``),
        nor on AMD. The split also sets dW's partial sums, one per chunk: results differ from 16 chunks' in the last
        bits, and still not with the thread count).

        For F(4x4, 3x3) (``tile`` 4) with a U bigger than two chunks (36 C O values: in float32 256 x 256 channels,
        or 128 x 256; in float64 also 128 x 128, not measured) a chunk also gets at least C O / (C + O) tiles, but at
        most N / _WINOGRAD4_MIN_CHUNKS images (so that at least that many chunks remain): each chunk's
        36 GEMMs read all of U from memory for its tiles' 36 (C + O) values of V and M, so with fewer tiles than
        C O / (C + O) reading U costs more than the work. 256 -> 256 channels at 7 x 7, batch 128, had 7 images
        (28 tiles) per chunk in the cache budget and ran 22.8 ms; with 16 images, 19-20 ms (8 x 8: 5-13 % faster;
        512 channels at 7 x 7: 136 -> 69 ms). With a smaller U the cache budget wins (128 channels at 16 x 16 ran
        13 % slower with the bigger chunks). Measured at 2 threads, AMD Zen 4. F(2x2, 3x3) has its batch-wide mode
        for this (:meth:`_winograd_batched`)."""
        TH, TW = _ceil_div(OH, tile), _ceil_div(OW, tile)
        per_image = (tile + 2) ** 2 * TH * TW * (C + O) * itemsize
        nb = min(max(1, _CHUNK_BYTES // per_image), max(1, N // (_WINOGRAD4_SPLIT if tile == 4 else _MIN_CHUNKS)))
        if tile == 4 and 36 * C * O * itemsize > 2 * _CHUNK_BYTES:
            nb = max(nb, min(_ceil_div(C * O // (C + O), TH * TW), max(1, N // _WINOGRAD4_MIN_CHUNKS)))
        return TH, TW, nb

    def _wino_planes(self, worker: int | None, tag: str, rows: int, cols: int, dtype: Any, count: int = 16) -> Planes:
        """:class:`Planes`: ``count`` (rows, cols) matrices (V, M, U or their gradients; 16 for F(2x2, 3x3), 36 for
        F(4x4, 3x3)) stored ``plane`` values apart in ``flat``, and the (count, rows, cols) view of them the
        GEMMs take. The planes are _PLANE_PAD values further apart than their size: the transforms read or write 4
        to 16 planes in one loop, and at a distance of a power of two (64 KB, 1 MB) those streams all fall in the
        same few cache sets (U's transform ran 4x slower). A per-worker scratch buffer with ``worker``, else a new
        array."""
        plane = rows * cols + _PLANE_PAD
        if worker is None:
            flat = numpy.empty(count * plane, dtype=dtype)
        else:
            flat = self._buffer(worker, tag, (count * plane,), dtype)
        return Planes(flat.reshape(count, plane)[:, : rows * cols].reshape(count, rows, cols), flat, plane)

    def _weight_blocks(self, C: int, O: int, count: int) -> list[tuple[int, int]]:
        """The blocks of input channels the weight transforms (U from W, dW from dU) run in parallel; one block, run in
        the calling thread, when they write (U) or read (dU) at most _WEIGHT_SERIAL_VALUES values (``count`` planes
        of C O): handing a region to the pool's threads costs about 70 us, more than such a transform takes in one
        thread (medians, 2 threads, AMD Zen 4: F(4x4, 3x3) at 32 x 32 channels 19 against 105 us, dW from dU 26
        against 91 us; F(2x2, 3x3) at 64 x 64 19 against 62 us; at F(4x4)'s 64 x 64 and F(2x2)'s 128 x 128 the two
        are even, at 256 x 256 the threads win, 1281 against 713 us)."""
        if count * C * O <= _WEIGHT_SERIAL_VALUES:
            return [(0, C)]
        return self._channel_tasks(C)

    def _winograd_weight(self, weight: Any, dtype: Any, tile: int = 2) -> Planes:
        """U: the transformed filters in ``dtype`` as :meth:`_wino_planes` of (C, O), in parallel over blocks of input
        channels (``transform_weight`` of ``_numba_winograd.py``, or of ``_numba_winograd4.py`` for ``tile`` 4)."""
        O, C = weight.shape[0], weight.shape[1]
        weight = numpy.ascontiguousarray(weight, dtype=dtype)
        U = self._wino_planes(None, "", C, O, dtype, (tile + 2) ** 2)
        transform = (_wino4 if tile == 4 else _wino).transform_weight
        blocks = self._weight_blocks(C, O, (tile + 2) ** 2)
        _threads.parallel_for(lambda worker, i: transform(weight, *blocks[i], U.flat, U.plane), len(blocks))
        return U

    def _winograd_weight_from(self, dU: Any, w_shape: tuple[int, ...]) -> Any:
        """dW (O, C, 3, 3) from dU, :meth:`_wino_planes` of (C, O) (``weight_gradient`` of ``_numba_winograd.py`` for
        its 16 planes, of ``_numba_winograd4.py`` for 36), in parallel over blocks of input channels."""
        dw = numpy.empty(w_shape, dtype=dU.view.dtype)
        blocks = self._weight_blocks(w_shape[1], w_shape[0], dU.view.shape[0])
        gradient = (_wino4 if dU.view.shape[0] == 36 else _wino).weight_gradient
        _threads.parallel_for(lambda worker, i: gradient(dU.flat, dU.plane, *blocks[i], dw), len(blocks))
        return dw

    @staticmethod
    def _in_one_call(gemm: Any, rows: int) -> bool:
        """Whether a chunk of ``rows`` tiles runs its steps in one compiled call (``forward_chunk``,
        ``weight_gradient_chunk``): with a kernel GEMM (``_numba_blas.cblas_gemm``, else None), and more than one tile,
        as ``numpy.matmul`` makes a product of one-row matrices a matrix-vector one, which adds in another order (a
        chunk of one tile runs step by step, with the same bits as ever)."""
        return gemm is not None and rows > 1

    def _winograd_xt(self, worker: int, C: int, TH: int, TW: int, dtype: Any) -> Any:
        """A worker's scratch for one padded image of C channels, F(2x2, 3x3)'s ``input_tiles``' ``xt``."""
        return self._buffer(worker, "wino_x", ((2 * TH + 2) * 2 * (TW + 1) * C,), dtype)

    def _input_tiles(
        self, worker: int, x: Any, nhwc: bool, n0: int, n1: int, first: int, PH: int, PW: int, TH: int, TW: int,
        V: Planes,
    ) -> None:  # fmt: skip
        """:func:`_numba_winograd.input_tiles` of images [n0, n1) into V (tiles numbered from image ``first``)."""
        xt = self._winograd_xt(worker, _dims(x, nhwc)[0], TH, TW, x.dtype)
        _wino.input_tiles(x, nhwc, n0, n1, first, PH, PW, TH, TW, xt, V.flat, V.plane)

    # Layers with few tiles per chunk (small images, many channels: VGG's 512 channels at 4 x 4 or 2 x 2) have a big U
    # for few rows: a chunk's GEMMs would read the whole U (16 C O values) for a few rows. There the transforms run
    # over the whole batch, in chunks of images, and each of the 16 GEMMs once over all the batch's tiles, one task
    # per tile position xi (dW: dU_xi = V_xi^T dM_xi summed over the batch inside the GEMM, no partial sums).
    def _winograd_batched(self, N: int, C: int, O: int, TH: int, TW: int, nb: int, itemsize: int) -> bool:
        """Whether a Winograd convolution runs batch-wide: when a chunk of ``nb`` images would have fewer than
        _WINOGRAD_MIN_ROWS tiles (rows of its GEMMs), the batch has more than one chunk, and the batch's V and M
        take at most _WINOGRAD_BATCH_BYTES (else they would not stay in the caches either). Shapes only decide."""
        batch_bytes = 16 * N * TH * TW * (C + O) * itemsize
        return nb * TH * TW < _WINOGRAD_MIN_ROWS and N > nb and batch_bytes <= _WINOGRAD_BATCH_BYTES

    def _winograd_batch_input(self, x: Any, nhwc: bool, nb: int, PH: int, PW: int, TH: int, TW: int) -> Planes:
        """V of the whole batch (tiles numbered from image 0), :meth:`_wino_planes` of (N TH TW, C), in parallel over
        chunks of ``nb`` images."""
        N = x.shape[0]
        V = self._wino_planes(None, "", N * TH * TW, _dims(x, nhwc)[0], x.dtype)
        self._over_images(
            N, nb, lambda worker, n0, n1: self._input_tiles(worker, x, nhwc, n0, n1, 0, PH, PW, TH, TW, V)
        )
        return V

    def _over_images(self, N: int, nb: int, body: Any, max_threads: int | None = None) -> None:
        """Run ``body(worker, n0, n1)`` over the batch's chunks of ``nb`` images in parallel (``max_threads``:
        :meth:`_gemm_threads` for a body that calls BLAS)."""
        _threads.parallel_for(
            lambda worker, task: body(worker, task * nb, min(N, (task + 1) * nb)), _ceil_div(N, nb), max_threads
        )

    def _per_tile_position(self, a: Any, b: Any, out: Any) -> None:
        """out[xi] = a[xi] @ b[xi] for the 16 tile positions, one task (one BLAS call) each."""
        _threads.parallel_for(
            lambda worker, xi: numpy.matmul(a[xi], b[xi], out=out[xi]), 16, max_threads=self._gemm_threads()
        )

    def _winograd_conv(
        self, x: Any, weight: Any, bias: Any, PH: int, PW: int, relu_max: float | None = None, residual: Any = None,
        tile: int | None = None, sums: Any = None, pre: Any = None,
    ) -> Any:  # fmt: skip
        """``conv2d(x, weight, bias)`` for a 3 x 3 stride-1 weight (O, C, 3, 3) and padding (PH, PW), as F(2x2, 3x3)
        in chunks of images: input tiles V (16, tiles, C), 16 GEMMs M = V @ U, output tiles into (N, O, OH, OW)
        (batch-wide for few tiles per chunk, see :meth:`_winograd_batched`); as F(4x4, 3x3) where
        :meth:`_winograd4_applies` (:meth:`_winograd4_conv`), or as ``tile`` says when given (2 or 4: the
        autotuner's choice, ``_numba_conv.py``). The output pass also adds ``residual`` (the output's shape) if
        given, then applies min(relu(out), relu_max) with ``relu_max``
        (:func:`~minidl.backend._numba_kernels.epilogue`). ``sums``: the pair's ``channel_sums``, filled in
        F(4x4, 3x3)'s output pass where it takes them, else in one pass after (:meth:`_channel_sums`). ``pre``: the
        (3, C) vectors of a deferred BatchNorm+ReLU of x (the pair's input a :class:`~minidl.nn.BatchNormReLUOutput`),
        applied as F(4x4, 3x3) reads x (where :meth:`_winograd4_reads_bn_relu`)."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
        tile = self._winograd_tile_for(tile, N, C, O, OH, OW)
        assert pre is None or tile == 4, "the BatchNorm+ReLU before a convolution is read by F(4x4, 3x3) only"
        if sums is not None and tile != 4:
            out = self._winograd_conv(x, weight, bias, PH, PW, relu_max, residual, tile)
            self._channel_sums(out, sums)
            return out
        x, nhwc = _kernel_view(x)  # a channels_last x is read as it lies, and the output is channels_last too
        b, has_bias = bias_arguments(bias, dtype)
        out, out_nhwc = _empty_nchw((N, O, OH, OW), dtype, nhwc)
        target = out_nhwc if nhwc else out  # what the kernels write
        res = residual_arguments(residual, nhwc, dtype)  # (res, has_res): laid out as target
        if tile == 4:
            if not self._winograd4_conv(x, nhwc, weight, b, has_bias, PH, PW, relu_max, target, res, sums, pre) and (
                sums is not None
            ):
                self._channel_sums(out, sums)
            return out
        TH, TW, nb = self._winograd_tiles(N, C, O, OH, OW, x.itemsize)
        U = self._winograd_weight(weight, dtype)  # 16 (C, O) planes
        relu, cap = epilogue(relu_max, dtype)

        def row_scratch(worker: int) -> Any:  # output_tiles' yt: one tile row's 2 output rows
            return self._buffer(worker, "wino_y", (2 * TW * O,), dtype)

        def output(worker: int, M: Any, n0: int, n1: int, first: int) -> None:
            yt = row_scratch(worker)
            _wino.output_tiles(M.flat, M.plane, n0, n1, first, TH, TW, b, has_bias, relu, cap, yt, target, nhwc, *res)

        if self._winograd_batched(N, C, O, TH, TW, nb, x.itemsize):
            V = self._winograd_batch_input(x, nhwc, nb, PH, PW, TH, TW)
            M = self._wino_planes(None, "", N * TH * TW, O, dtype)
            self._per_tile_position(V.view, U.view, M.view)
            del V
            self._over_images(N, nb, lambda worker, n0, n1: output(worker, M, n0, n1, 0))
            return out

        gemm = cblas_gemm(dtype)

        def body(worker: int, n0: int, n1: int) -> None:
            xt = self._winograd_xt(worker, C, TH, TW, dtype)
            V = self._wino_planes(worker, "wino_v", (n1 - n0) * TH * TW, C, dtype)
            M = self._wino_planes(worker, "wino_m", (n1 - n0) * TH * TW, O, dtype)
            if self._in_one_call(gemm, (n1 - n0) * TH * TW):  # the three steps in one compiled call
                _wino.forward_chunk(
                    gemm, x, nhwc, n0, n1, PH, PW, TH, TW, xt, V.flat, V.plane, U.flat, U.plane, M.flat, M.plane, b,
                    has_bias, relu, cap, row_scratch(worker), target, *res,
                )  # fmt: skip
                return
            _wino.input_tiles(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, V.flat, V.plane)  # else one by one
            numpy.matmul(V.view, U.view, out=M.view)
            output(worker, M, n0, n1, n0)

        self._over_images(N, nb, body, self._gemm_threads())
        return out

    def _winograd_weight_gradient(
        self, x: Any, dout: Any, w_shape: tuple[int, ...], PH: int, PW: int, tile: int | None = None
    ) -> Any:  # fmt: skip
        """dW of :meth:`_winograd_conv` (the adjoint of its U): per chunk of images, V = input tiles of x (as in the
        forward), dM = A dY A^T of the output gradient's tiles, dU += V_xi^T @ dM_xi (16 GEMMs); then
        dW = G^T dU G. Each chunk (or fixed group of chunks, for big layers) keeps its dU partial sum, added in order
        (thread-count independent, :meth:`_winograd_dU`); batch-wide (see :meth:`_winograd_batched`), one GEMM per xi
        over all tiles. As F(4x4, 3x3) where :meth:`_winograd4_applies` (:meth:`_winograd4_weight_gradient`), or as
        ``tile`` says when given."""
        N, C, H, W = x.shape
        O, dtype = w_shape[0], x.dtype
        OH, OW = dout.shape[2], dout.shape[3]
        # each read as it lies when channels_last (the kernels' copies into tiles take either layout)
        (x, nhwc), (dout, dout_nhwc) = _kernel_view(x), _kernel_view(dout.astype(dtype, copy=False))
        if self._winograd_tile_for(tile, N, C, O, OH, OW) == 4:
            return self._winograd4_weight_gradient(x, nhwc, dout, dout_nhwc, w_shape, PH, PW)
        TH, TW, nb = self._winograd_tiles(N, C, O, OH, OW, x.itemsize)

        def dout_scratch(worker: int) -> Any:  # output_gradient_tiles' yt: one image of dout
            return self._buffer(worker, "wino_dy", (4 * TH * TW * O,), dtype)

        def gradient_tiles(worker: int, dM: Any, n0: int, n1: int, first: int) -> None:
            yt = dout_scratch(worker)
            _wino.output_gradient_tiles(dout, dout_nhwc, n0, n1, first, TH, TW, yt, dM.flat, dM.plane)

        dU = self._wino_planes(None, "", C, O, dtype)
        if self._winograd_batched(N, C, O, TH, TW, nb, x.itemsize):
            V = self._winograd_batch_input(x, nhwc, nb, PH, PW, TH, TW)
            dM = self._wino_planes(None, "", N * TH * TW, O, dtype)
            self._over_images(N, nb, lambda worker, n0, n1: gradient_tiles(worker, dM, n0, n1, 0))
            self._per_tile_position(V.view.transpose(0, 2, 1), dM.view, dU.view)
            return self._winograd_weight_from(dU, w_shape)

        def buffers(worker: int, n0: int, n1: int) -> tuple[Any, Planes, Planes]:
            V = self._wino_planes(worker, "wino_v", (n1 - n0) * TH * TW, C, dtype)
            dM = self._wino_planes(worker, "wino_m", (n1 - n0) * TH * TW, O, dtype)
            return self._winograd_xt(worker, C, TH, TW, dtype), V, dM

        def tiles(worker: int, n0: int, n1: int) -> tuple[Planes, Planes]:
            xt, V, dM = buffers(worker, n0, n1)
            _wino.input_tiles(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, V.flat, V.plane)
            gradient_tiles(worker, dM, n0, n1, n0)
            return V, dM

        gemm = cblas_gemm(dtype)

        def chunk(worker: int, n0: int, n1: int, total: Any, scratch: Any, first: bool) -> bool:
            if not self._in_one_call(gemm, (n1 - n0) * TH * TW):
                return False
            xt, V, dM = buffers(worker, n0, n1)
            _wino.weight_gradient_chunk(
                gemm, x, nhwc, dout, dout_nhwc, n0, n1, PH, PW, TH, TW, xt, V.flat, V.plane, dout_scratch(worker),
                dM.flat, dM.plane, total, scratch, first,
            )  # fmt: skip
            return True

        self._winograd_dU(N, nb, tiles, dU, None if gemm is None else chunk)
        return self._winograd_weight_from(dU, w_shape)

    def _winograd_dU(
        self, N: int, nb: int, tiles: Any, dU: Planes, chunk: Any = None, before: Any = None
    ) -> None:  # fmt: skip
        """dU = sum over the batch's chunks of ``nb`` images of V_xi^T @ dM_xi, for each of dU's 16 or 36 planes
        (``tiles(worker, n0, n1)`` gives a chunk's V and dM). Each chunk keeps its own partial sum, or each fixed group
        of chunks when the partial sums would need more than _DW_BYTES; the partial sums are added in order at the
        end, so dU does not depend on the thread count. ``chunk(worker, n0, n1, total, scratch, first)``, when given,
        does a chunk's whole share in one compiled call (``weight_gradient_chunk``, see ``_numba_blas.py``), as the
        steps here do: its GEMMs into its group's partial sum ``total`` if ``first``, else into ``scratch`` then added
        to it; it returns False where the chunk runs step by step instead (:meth:`_in_one_call`).
        ``before(worker, n0, n1)``, when given, runs first for each chunk, in the same task (the dx of the same
        images: :meth:`_winograd4_backward`)."""
        count, C, O = dU.view.shape
        dtype = dU.view.dtype
        groups = self._dU_groups(N, nb, count, C, O, dtype.itemsize)
        # each group's first chunk writes its partial sum whole (zeros only for an empty batch: no chunk writes)
        dU_parts = (numpy.empty if N else numpy.zeros)((max(len(groups), 1), count, C, O), dtype=dtype)

        def body(worker: int, group: int) -> None:
            for index in range(*groups[group]):
                n0, n1 = index * nb, min(N, (index + 1) * nb)
                if before is not None:
                    before(worker, n0, n1)
                first, total = index == groups[group][0], dU_parts[group]
                # the group's first chunk writes its partial sum whole (no scratch: it is not read then)
                scratch = total if first else self._buffer(worker, "wino_du", (count, C, O), dtype)
                if chunk is not None and chunk(worker, n0, n1, total, scratch, first):
                    continue
                V, dM = tiles(worker, n0, n1)
                numpy.matmul(V.view.transpose(0, 2, 1), dM.view, out=scratch)
                if not first:
                    total += scratch

        _threads.parallel_for(body, len(groups), max_threads=self._gemm_threads())
        numpy.copyto(dU.view, self._add_in_order(dU_parts))

    def _dU_groups(self, N: int, nb: int, count: int, C: int, O: int, itemsize: int) -> list[tuple[int, int]]:
        """The groups of :meth:`_winograd_dU`'s chunks of ``nb`` images that share a dU partial sum: one chunk each,
        unless the partial sums (``count`` (C, O) planes each) would need more than _DW_BYTES."""
        chunks = _ceil_div(N, nb)
        return self._split(chunks, max(1, min(chunks, _DW_BYTES // (count * C * O * itemsize))))

    # ------------------------------------------------------------------ F(4x4, 3x3) (see _numba_winograd4.py)
    def _winograd4_applies(self, N: int, C: int, O: int, OH: int, OW: int) -> bool:
        """Whether a Winograd convolution (see :meth:`_winograd_applies`) uses 4 x 4 output tiles: with
        ``self.winograd_tile == 4``, outputs of at least _WINOGRAD4_MIN_SIZE in both directions (on smaller ones the
        6 x 6 tiles are mostly padding: at 7 x 7, 2 x 2 tiles of 36 products against F(2x2, 3x3)'s 4 x 4 tiles of
        16, 1.78x fewer, and 256 channels at batch 128 ran 33 -> 20 ms; at 6 x 6 and 5 x 5 both need 144 and
        F(2x2, 3x3)'s smaller transforms win), _WINOGRAD4_MIN_CHANNELS in and out (16, the CIFAR ResNets' first
        stage: its V and M are 2.25x the input and output instead of 4x, and at 16 and 32 channels the layers are
        bound by that traffic more than by the GEMMs; ``benchmarks/bench_winograd.py`` has the figures, 1.2-1.35x
        forward and 1.15-1.25x backward against F(2x2, 3x3) at 16 to 32 channels) and _WINOGRAD4_MIN_TILES tiles in
        the batch (with fewer, its bigger weight transform, done at every call, costs more than the GEMMs save: 8
        images of 8 x 8 at 256 channels ran 1.9x slower). Shapes only decide."""
        tiles = N * _ceil_div(OH, 4) * _ceil_div(OW, 4)
        return (
            self.winograd_tile == 4
            and min(OH, OW) >= _WINOGRAD4_MIN_SIZE
            and min(C, O) >= _WINOGRAD4_MIN_CHANNELS
            and tiles >= _WINOGRAD4_MIN_TILES
        )

    def _winograd_tile_for(self, tile: int | None, N: int, C: int, O: int, OH: int, OW: int) -> int:
        """The output tile a Winograd convolution runs with: ``tile`` when given (2 or 4), else 4 where
        :meth:`_winograd4_applies`, 2 elsewhere."""
        if tile is not None:
            return tile
        return 4 if self._winograd4_applies(N, C, O, OH, OW) else 2

    def _winograd4_conv(
        self, x: Any, nhwc: bool, weight: Any, b: Any, has_bias: bool, PH: int, PW: int, relu_max: float | None,
        out: Any, res: tuple[Any, bool], sums: Any = None, pre: Any = None,
    ) -> bool:  # fmt: skip
        """:meth:`_winograd_conv` with F(4x4, 3x3): per chunk of images, input tiles V (36, tiles, C), 36 GEMMs
        M = V @ U, output tiles into ``out`` (x and out as the kernels index them: (N, C, H, W) and (N, O, OH, OW), or
        with ``nhwc`` both channels last, (N, H, W, C) and (N, OH, OW, O)); ``res`` the output pass's
        ``(res, has_res)`` (:func:`~minidl.backend._numba_kernels.residual_arguments`).

        Where :meth:`_in_loops`, each thread runs its chunks in one compiled loop (``forward_chunks``, which takes
        chunk numbers from a shared counter: :func:`~minidl.backend._threads.parallel_loops`), else one task per
        chunk (:meth:`_winograd4_chunk`); the same bits either way. Against a task per chunk, channels_last, batch
        128, 2 threads, Intel Xeon (Emerald Rapids), medians of 30: 16 -> 16 channels at 32 x 32 2.30 -> 2.05 ms,
        32 -> 32 at 16 x 16 1.33 -> 1.17 ms, 64 -> 64 at 8 x 8 1.07 -> 0.95 ms. In the same region each thread
        first transforms its share of the filters, by blocks of input channels (``filters_in_blocks``, then
        :func:`~minidl.backend._numba_tasks.wait_for` the other threads' blocks: a region of its own before).

        With ``sums`` (the pair's ``channel_sums``, (3, O) float64) and a ``channels_last`` output in the compiled
        loops, each chunk also adds its output's values, row of tiles by row of tiles as they are written, to
        shifted sums around sums[0] (``output_tiles``), which go to sums[1:] in chunk order: the statistics of the
        BatchNorm after the convolution without its own pass over the output (a ResNet-56 training step, batch
        128, 2 threads, Intel Xeon (Emerald Rapids): about 14 ms of 430 in the prototype). Returns whether it took
        them (else the caller sums the output in one pass after).

        With ``pre`` (a deferred BatchNorm+ReLU's vectors, (3, C): where :meth:`_winograd4_reads_bn_relu`, which callers
        ask first), the input tiles are those of relu((x - mean) scale + offset), computed as the chunks read x."""
        N = x.shape[0]
        C, H, W = _dims(x, nhwc)
        O, dtype = weight.shape[0], x.dtype
        TH, TW, nb = self._winograd_tiles(N, C, O, H + 2 * PH - 2, W + 2 * PW - 2, x.itemsize, tile=4)
        relu, cap = epilogue(relu_max, dtype)
        gemm = cblas_gemm(dtype)
        if not self._in_loops(gemm, N, nb, TH * TW):
            assert pre is None, "the BatchNorm+ReLU before a convolution is read in the compiled loops only"
            U = self._winograd_weight(weight, dtype, tile=4)
            body = self._winograd4_chunk(x, nhwc, U, TH, TW, gemm, b, has_bias, PH, PW, relu, cap, out, res)
            self._over_images(N, nb, body, self._gemm_threads())
            return False
        # U is transformed in the region too, by blocks of input channels, before any chunk's GEMMs
        U, filters = self._wino_planes(None, "", C, O, dtype, 36), self._filters_in_blocks(weight, dtype)
        sync = numpy.zeros(5, dtype=numpy.int64)
        chunks, summed = _ceil_div(N, nb), sums is not None and nhwc  # (in the loops: _winograd4_takes_sums)
        shift, parts = (self._tiled_shift(sums), numpy.empty((chunks, 2, O))) if summed else _UNSUMMED_CHUNKS[:2]
        pre_args = _pre_arguments(pre, dtype)

        def loop(worker: int, counter: Any) -> None:
            V, xt, t, M = self._winograd4_scratch(worker, C, O, nb, TH, TW, dtype)
            with failing_stops_waits(sync):
                if self._filters_ready(filters, sync, U):
                    _wino4.forward_chunks(
                        counter, N, nb, gemm, x, nhwc, PH, PW, TH, TW, xt, t, V.flat, V.plane, U.flat, U.plane,
                        M.flat, M.plane, b, has_bias, relu, cap, out, *res, shift, parts, summed, *pre_args,
                    )  # fmt: skip

        _threads.parallel_loops(loop, chunks, self._gemm_threads())
        if summed:
            sums[1:] = self._add_in_order(parts)  # (in chunk order: the same for any thread count)
        return summed

    @staticmethod
    def _filters_ready(filters: tuple[Any, Any], sync: Any, U: Planes) -> bool:
        """A thread's share of U in a region (``filters_in_blocks``: ``filters`` as :meth:`_filters_in_blocks` gives
        them), then the wait until every block is done (:func:`~minidl.backend._numba_tasks.wait_for`): True, or
        False if another thread failed."""
        weight, blocks = filters
        _wino4.filters_in_blocks(weight, blocks, sync, U.flat, U.plane)
        return wait_for(sync, 4, blocks.shape[0])

    def _filters_in_blocks(self, weight: Any, dtype: Any) -> tuple[Any, Any]:
        """``(weight, blocks)`` for ``filters_in_blocks`` of ``_numba_winograd4.py``, which transforms the filters
        inside a region: ``weight`` contiguous in ``dtype``, and blocks of its input channels ((n, 2) int64; more
        than :meth:`_weight_blocks`' own region would pay for, as they cost no region here)."""
        blocks = numpy.array(self._channel_tasks(weight.shape[1]), dtype=numpy.int64)
        return numpy.ascontiguousarray(weight, dtype=dtype), blocks

    def _in_loops(self, gemm: Any, N: int, nb: int, tiles_per_image: int) -> bool:
        """Whether a Winograd region runs its chunks of ``nb`` images in compiled loops (``forward_chunks``,
        ``backward_chunks`` of ``_numba_winograd4.py``): where every chunk runs its steps in one compiled call
        (:meth:`_in_one_call`; the last chunk, the smallest, too)."""
        last = N - (_ceil_div(N, nb) - 1) * nb
        return self._in_one_call(gemm, last * tiles_per_image)

    def _winograd4_takes_sums(self, N: int, C: int, O: int, OH: int, OW: int, dtype: Any) -> bool:
        """Whether :meth:`_winograd4_conv` of these sizes runs in its compiled loops (:meth:`_in_loops`), where its
        output pass takes ``channel_sums`` (into a ``channels_last`` output; else the output is summed after)."""
        TH, TW, nb = self._winograd_tiles(N, C, O, OH, OW, numpy.dtype(dtype).itemsize, tile=4)
        return self._in_loops(cblas_gemm(dtype), N, nb, TH * TW)

    def _winograd4_reads_bn_relu(self, x: Any, O: int, PH: int, PW: int) -> bool:
        """Whether an F(4x4, 3x3) forward of x (3 x 3, stride 1, padding (PH, PW)) and its backward, dx and dW in one
        region (:meth:`_winograd4_in_one_region`), both run in the compiled loops, which apply ``conv2d_forward``'s
        deferred BatchNorm+ReLU (:class:`~minidl.nn.BatchNormReLUOutput`) as they read x: a ``channels_last`` x
        (float32 or float64)."""
        if _nhwc(x) is None:
            return False
        N, C, H, W = x.shape
        OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
        if not self._winograd4_takes_sums(N, C, O, OH, OW, x.dtype):  # the forward in its loops
            return False
        TH, TW, nb = self._winograd4_dw_tiles(N, C, O, OH, OW, x.itemsize)
        dx_tiles = _ceil_div(H, 4) * _ceil_div(W, 4)
        return self._winograd4_in_one_region(N, C, O, OH, OW, x.itemsize) and self._in_loops(
            cblas_gemm(x.dtype), N, nb, min(TH * TW, dx_tiles)
        )

    def _winograd4_chunk(
        self, x: Any, nhwc: bool, U: Planes, TH: int, TW: int, gemm: Any, b: Any, has_bias: bool, PH: int, PW: int,
        relu: bool, cap: Any, out: Any, res: tuple[Any, bool],
    ) -> Any:  # fmt: skip
        """``body(worker, n0, n1)``, which computes images [n0, n1) of :meth:`_winograd4_conv`'s output (arguments as
        there; U the transformed filters, computed once for all chunks; ``relu``, ``cap`` the output pass's
        :func:`~minidl.backend._numba_kernels.epilogue`): input tiles, GEMMs and output tiles, in one compiled call
        (``forward_chunk``) where :meth:`_in_one_call`."""
        C = _dims(x, nhwc)[0]
        O, dtype = U.view.shape[2], x.dtype

        def body(worker: int, n0: int, n1: int) -> None:
            V, xt, t, M = self._winograd4_scratch(worker, C, O, n1 - n0, TH, TW, dtype)
            if self._in_one_call(gemm, (n1 - n0) * TH * TW):  # the three steps in one compiled call
                _wino4.forward_chunk(
                    gemm, x, nhwc, n0, n1, PH, PW, TH, TW, xt, t, V.flat, V.plane, U.flat, U.plane, M.flat, M.plane, b,
                    has_bias, relu, cap, out, *res, *_UNSUMMED, *_pre_arguments(None, dtype),
                )  # fmt: skip
                return
            _wino4.input_tiles(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, t, V.flat, V.plane)  # else one by one
            numpy.matmul(V.view, U.view, out=M.view)
            _wino4.output_tiles(
                M.flat, M.plane, n0, n1, n0, TH, TW, b, has_bias, relu, cap, t, out, nhwc, *res, *_UNSUMMED
            )  # fmt: skip

        return body

    def _winograd4_scratch(
        self, worker: int, C: int, O: int, images: int, TH: int, TW: int, dtype: Any
    ) -> tuple[Planes, Any, Any, Planes]:  # fmt: skip
        """``(V, xt, t, M)``: a worker's buffers for an F(4x4, 3x3) chunk of ``images`` images, C channels in and O
        out: V as :meth:`_wino_planes` of (tiles, C), ``xt`` one padded image, ``t`` the transforms' scratch
        (max(40 TW, 24 (TW + 1)) max(C, O) values: also what ``output_tiles`` and ``output_gradient_tiles`` of
        ``_numba_winograd4.py`` need for O output channels, and ``input_tiles`` reading a channels-last image
        straight), and M (the GEMMs' products, or dW's dM) as :meth:`_wino_planes` of (tiles, O)."""
        V = self._wino_planes(worker, "wino_v", images * TH * TW, C, dtype, 36)
        xt = self._buffer(worker, "wino_x", ((4 * TH + 2) * 4 * (TW + 1) * C,), dtype)
        t = self._buffer(worker, "wino_t", (max(40 * TW, 24 * (TW + 1)) * max(C, O),), dtype)
        M = self._wino_planes(worker, "wino_m", images * TH * TW, O, dtype, 36)
        return V, xt, t, M

    def _winograd4_dw_scratch(
        self, worker: int, C: int, O: int, images: int, TH: int, TW: int, dtype: Any
    ) -> tuple[Planes, Any, Any, Planes, Any]:  # fmt: skip
        """``(V, xt, t, dM, yt)``: :meth:`_winograd4_scratch`'s buffers for dW's chunk, and ``yt``, the scratch of
        ``output_gradient_tiles`` (16 TH TW O values)."""
        return *self._winograd4_scratch(worker, C, O, images, TH, TW, dtype), self._buffer(
            worker, "wino_dy", (16 * TH * TW * O,), dtype
        )

    def _winograd4_weight_gradient(
        self, x: Any, nhwc: bool, dout: Any, dout_nhwc: bool, w_shape: tuple[int, ...], PH: int, PW: int,
        before: Any = None,
    ) -> Any:  # fmt: skip
        """:meth:`_winograd_weight_gradient` with F(4x4, 3x3) (x and dout of one dtype, as the kernels index them:
        C-contiguous, or channels last with ``nhwc`` / ``dout_nhwc``): per chunk of
        images, V = input tiles of x (as in :meth:`_winograd4_conv`), dM = A dY A^T of dout's 4 x 4 tiles,
        dU += V_xi^T @ dM_xi (36 GEMMs, partial sums as :meth:`_winograd_dU`); then dW = G^T dU G.

        It runs wherever the forward runs as F(4x4, 3x3): against F(2x2, 3x3)'s dW, 1.08-1.21x faster on all 9 shapes
        measured (batch 128, padding 1, 2 threads, AMD Zen 4, float32; C -> O at H x H): 16 -> 16 at 32: 1.13,
        32 -> 32 at 16: 1.08, 32 -> 32 at 32: 1.10, 16 -> 32 at 16: 1.13, 64 -> 32 at 16: 1.16, 64 -> 16 at 16: 1.16,
        24 -> 32 at 31: 1.14, 32 -> 48 at 16: 1.13, 64 -> 64 at 8: 1.21. (With an input transform 1.2-1.4x slower,
        as ``_numba_winograd4.input_tiles`` was before its second pass wrote one V plane per loop, F(2x2, 3x3)'s dW
        won below 48 output channels.)

        ``before(worker, n0, n1)``, when given, runs first for each chunk of images, in the same task
        (:meth:`_winograd_dU`)."""
        N, C = x.shape[0], _dims(x, nhwc)[0]
        O, dtype = w_shape[0], x.dtype
        OH, OW = _dims(dout, dout_nhwc)[1:]
        TH, TW, nb = self._winograd4_dw_tiles(N, C, O, OH, OW, x.itemsize)

        def tiles(worker: int, n0: int, n1: int) -> tuple[Planes, Planes]:
            V, xt, t, dM, yt = self._winograd4_dw_scratch(worker, C, O, n1 - n0, TH, TW, dtype)
            _wino4.input_tiles(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, t, V.flat, V.plane)
            _wino4.output_gradient_tiles(dout, dout_nhwc, n0, n1, n0, TH, TW, yt, t, dM.flat, dM.plane)
            return V, dM

        gemm = cblas_gemm(dtype)

        def chunk(worker: int, n0: int, n1: int, total: Any, scratch: Any, first: bool) -> bool:
            if not self._in_one_call(gemm, (n1 - n0) * TH * TW):
                return False
            V, xt, t, dM, yt = self._winograd4_dw_scratch(worker, C, O, n1 - n0, TH, TW, dtype)
            _wino4.weight_gradient_chunk(
                gemm, x, nhwc, dout, dout_nhwc, n0, n1, PH, PW, TH, TW, xt, t, V.flat, V.plane, yt, dM.flat, dM.plane,
                total, scratch, first, *_pre_arguments(None, dtype),
            )  # fmt: skip
            return True

        dU = self._wino_planes(None, "", C, O, dtype, 36)
        self._winograd_dU(N, nb, tiles, dU, None if gemm is None else chunk, before)
        return self._winograd_weight_from(dU, w_shape)

    def _winograd4_dw_tiles(self, N: int, C: int, O: int, OH: int, OW: int, itemsize: int) -> tuple[int, int, int]:
        """``(TH, TW, images per chunk)`` of :meth:`_winograd4_weight_gradient`: :meth:`_winograd_tiles`' chunks, but
        at least _WINOGRAD_MIN_ROWS tiles per chunk where _WINOGRAD4_MIN_CHUNKS chunks remain: each chunk's 36 GEMMs
        write a (36, C, O) partial sum, summed over its tiles only (64 -> 64 channels at 8 x 8, batch 128: 8 images
        (32 tiles) per chunk ran 2.8 ms, 16 images 2.2 ms, measured at 2 threads, AMD Zen 4)."""
        TH, TW, nb = self._winograd_tiles(N, C, O, OH, OW, itemsize, tile=4)
        return TH, TW, max(nb, min(_ceil_div(_WINOGRAD_MIN_ROWS, TH * TW), max(1, N // _WINOGRAD4_MIN_CHUNKS)))

    def _winograd4_in_one_region(self, N: int, C: int, O: int, OH: int, OW: int, itemsize: int) -> bool:
        """Whether :meth:`_winograd4_backward` may run a layer's dx and dW (both F(4x4, 3x3)) in one region: where
        each of dW's chunks keeps its own partial sum. Where they share partial sums in groups (:meth:`_dU_groups`:
        wide layers, 512 channels at 7 x 7), dW's tasks are the groups, too few for dx (one at 512 channels on 7 x 7,
        batch 128): there dx and dW run apart, each in its own region."""
        nb = self._winograd4_dw_tiles(N, C, O, OH, OW, itemsize)[2]
        return len(self._dU_groups(N, nb, 36, C, O, itemsize)) == _ceil_div(N, nb)

    @staticmethod
    def _dx_filters(weight: Any) -> Any:
        """The filters of dx as a convolution of dout (stride 1, 3 x 3; Winograd's and the direct 3 x 3's): ``weight``
        (O, C, 3, 3) flipped in both spatial axes and transposed, (C, O, 3, 3), contiguous."""
        return numpy.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))

    def _winograd4_backward(
        self, dout: Any, x: Any, weight: Any, PH: int, PW: int, dx_add: Any = None, pre: Any = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``(dx, dW)`` of a convolution whose dx and dW both run as F(4x4, 3x3), in one parallel region: for each
        chunk of images, its dx (the convolution of dout with :meth:`_dx_filters` and padding 2 - P), then its share
        of dW (the chunk's own partial sum of dU, as :meth:`_winograd4_weight_gradient`'s, added in order at the end).
        The chunk's dout, which dx has just read from memory, is still in the caches when dW reads it, and one region
        replaces two. Where :meth:`_in_loops`, each thread runs its chunks in one compiled loop (``backward_chunks``,
        :func:`~minidl.backend._threads.parallel_loops`), else one task per chunk (:meth:`_winograd4_chunk`, then
        :meth:`_winograd4_weight_gradient`'s step); the same bits either way. In the same region each thread also
        transforms its share of dx's filters first and, once every chunk is done (``wait_for``), finishes its blocks
        of dW last (the partial sums added in chunk order, then dW = G^T dU G): compiled calls around the chunk loop,
        where three regions of a few tens of microseconds ran before and after (the pool's hand-off alone costs
        about 15 us, and one thread waited for the other).

        dx's chunks are then dW's: the same images per chunk for the CIFAR ResNets' 16 and 32 channels, 16 instead
        of 8 at 64 channels on 8 x 8. Each tile's arithmetic does not depend on the chunk it is in, so the results
        are the same bits as :meth:`_winograd_conv` and :meth:`_winograd_weight_gradient` run one after the other
        (tested). Measured against those two, medians of 15 alternating runs, channels_last, batch 128, 2 threads,
        Intel Xeon (Emerald Rapids): 16 -> 16 channels at 32 x 32 10.65 -> 10.32 ms, 32 -> 32 at 16 x 16 5.75 ->
        5.50 ms, 64 -> 64 at 8 x 8 5.11 -> 4.72 ms (3-8 %).

        With ``dx_add`` (of x's shape and dtype: ``conv2d_backward``'s, another gradient of x), dx's output pass adds
        it as it writes dx, as a forward's adds a residual: dx + dx_add without a pass of its own over memory (the
        same bits as the sum after). It runs where :meth:`_winograd4_in_one_region`.

        With ``pre`` (the forward's deferred BatchNorm+ReLU vectors, where :meth:`_winograd4_reads_bn_relu`), x is the
        BatchNorm's input, and dW's input tiles are those of relu((x - mean) scale + offset), the input the forward
        read: dx is the gradient of that input."""
        N, C, H, W = x.shape
        O, dtype = weight.shape[0], x.dtype
        (x, nhwc), (dout, dout_nhwc) = _kernel_view(x), _kernel_view(dout.astype(dtype, copy=False))
        dx, dx_nhwc = _empty_nchw((N, C, H, W), dtype, dout_nhwc)  # laid out as dout, as _winograd_conv's output
        out = dx_nhwc if dout_nhwc else dx
        (b, _), (res, has_res) = bias_arguments(None, dtype), residual_arguments(dx_add, dout_nhwc, dtype)
        cap = epilogue(None, dtype)[1]
        gemm = cblas_gemm(dtype)
        DTH, DTW = _ceil_div(H, 4), _ceil_div(W, 4)  # dx's tiles
        TH, TW, nb = self._winograd4_dw_tiles(N, C, O, *_dims(dout, dout_nhwc)[1:], x.itemsize)  # dW's, and the chunks
        if not self._in_loops(gemm, N, nb, min(TH * TW, DTH * DTW)):
            assert pre is None, "the BatchNorm+ReLU before a convolution is read in the compiled loops only"
            U = self._winograd_weight(self._dx_filters(weight), dtype, tile=4)  # dx's filters, (O, C) planes
            dx_chunk = self._winograd4_chunk(dout, dout_nhwc, U, DTH, DTW, gemm, b, False, 2 - PH, 2 - PW, False, cap,
                                             out, (res, has_res))  # fmt: skip
            dw = self._winograd4_weight_gradient(x, nhwc, dout, dout_nhwc, weight.shape, PH, PW, before=dx_chunk)
            return dx, dw
        # each chunk's dU, written whole by the chunk; their sum in chunk order and dW from it in the same region,
        # blocks of input channels (sync: chunks done, failed, next block of dW, next block of U, blocks of U done).
        # An empty batch has no chunk, and runs no region: its dW is zeros
        chunks = _ceil_div(N, nb)
        parts = numpy.empty((max(chunks, 1), 36, C, O), dtype=dtype)
        dU, dw = self._wino_planes(None, "", C, O, dtype, 36), (numpy.empty if N else numpy.zeros)(weight.shape, dtype)
        blocks, sync = numpy.array(self._channel_tasks(C), dtype=numpy.int64), numpy.zeros(5, dtype=numpy.int64)
        # dx's filters, transformed in the region too (U: (O, C) planes, before any chunk's GEMMs)
        U, filters = (
            self._wino_planes(None, "", O, C, dtype, 36),
            self._filters_in_blocks(self._dx_filters(weight), dtype),
        )
        pre_args = _pre_arguments(pre, dtype)

        def loop(worker: int, counter: Any) -> None:
            # dx's scratch, then dW's: views of the same per-worker buffers (used one after the other; where dW's
            # needs more, its buffer grows, and this first call's dx views keep the old one)
            V_dx, xt_dx, t_dx, M_dx = self._winograd4_scratch(worker, O, C, nb, DTH, DTW, dtype)
            V, xt, t, dM, yt = self._winograd4_dw_scratch(worker, C, O, nb, TH, TW, dtype)
            with failing_stops_waits(sync):
                if not self._filters_ready(filters, sync, U):
                    return
                _wino4.backward_chunks(
                    counter, N, nb, gemm, dout, dout_nhwc, x, nhwc, PH, PW, U.flat, U.plane, b, cap, res, has_res, out,
                    DTH, DTW, xt_dx, t_dx, V_dx.flat, V_dx.plane, M_dx.flat, M_dx.plane, TH, TW, xt, t, V.flat, V.plane,
                    yt, dM.flat, dM.plane, parts, sync, *pre_args,
                )  # fmt: skip
                if wait_for(sync, 0, chunks):  # every chunk's partial sum, then this thread's blocks of dW
                    _wino4.weight_gradient_blocks(sync, parts, blocks, dU.flat, dU.plane, dw)

        _threads.parallel_loops(loop, chunks, self._gemm_threads())
        return dx, dw
