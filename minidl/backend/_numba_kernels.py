"""The compiled convolution loops of the Numba backend: im2col/col2im, im2row/row2im and their layout helpers
(``numba_backend.py`` and ``_numba_conv.py`` call them; pooling, BatchNorm and the activations have their own files).

Notation (as in ``numpy_backend.py``):
    N: batch size.  C: channels.  H, W: input height and width.
    KH, KW: kernel height and width.  SH, SW: strides.  PH, PW: zero padding on each side.
    DH, DW: dilation.  OH, OW: output height and width, OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1.
    O: output channels of a convolution.  K = C KH KW: rows of the im2col matrix.  OHW = OH OW.

Every kernel is a serial ``@njit(cache=True, nogil=True)`` function that

* takes C-contiguous arrays and ints only (flags such as ``has_bias`` are ints) and writes into preallocated outputs;
* works on a slice of the problem (``[n0, n1)`` images or ``[c0, c1)`` channels here; ``[p0, p1)`` planes,
  ``[i0, i1)`` flat elements in the other files), so that :func:`minidl.backend._threads.parallel_for` can run the
  slices in parallel threads (the GIL is released) without two threads ever writing the same element;
* accumulates sums over many elements (BatchNorm statistics and gradients) in float64.

The other kernel files follow the same rules: ``_numba_pool.py``, ``_numba_batchnorm.py``, ``_numba_batchnorm_cl.py``,
``_numba_norm.py``, ``_numba_elementwise.py``, ``_numba_winograd.py``, ``_numba_winograd4.py``, ``_numba_direct.py``.

Speed note: the inner loops index flat views (``a.reshape(-1)``) with *unsigned* integers (``_u``). Numba accepts
negative indices like Python (``a[-1]``), so for a signed index it emits a "wrap around if negative" test on every
access, which also stops LLVM from vectorizing the loop; with an unsigned index there is nothing to test, and a copy
loop runs about 10x faster. Every index is computed as a non-negative signed int first, then converted.

Together they compute what the reference pairs compute (``minidl/nn``, with the NumPy backend's im2col/col2im);
``tests/backend/test_kernels.py`` checks every kernel pair against its reference.
Compiled code is cached on disk (``cache=True``): the first use compiles for a few seconds, later runs load it.
Numba recompiles a kernel when its own file changes, not when an ``@njit`` function it calls or inlines from another
file does: after editing one (``move4x4``, ``transpose4``, ``padded_image``, ``_column``, ``_clamp``, ``_zero`` here;
``gemm_planes`` and ``gemm_planes_sum`` of ``_numba_blas.py``, which the Winograd chunk kernels call; the counters of
``_numba_tasks.py``; see CONTRIBUTING.md for the others), ``make clean-kernels``.
Set ``NUMBA_DISABLE_JIT=1`` to run (slowly) the same code as plain Python, e.g. in a debugger.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from minidl.backend._numba_common import _as_nhwc

_u = np.uint64  # unsigned flat indices (see the module docstring)
# fastmath without "nnan"/"ninf": float64 sums may be reordered (vectorized); NaN and inf still propagate
_REDUCE = {"reassoc", "contract", "nsz"}


@njit(cache=True, nogil=True, inline="always")
def _valid_range(offset: int, stride: int, size: int, out_size: int) -> tuple[int, int]:
    """The output positions o in [lo, hi) whose input position o * stride + offset lies in [0, size)."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (size - 1 - offset) // stride + 1 if size - 1 - offset >= 0 else 0
    lo = min(lo, out_size)
    hi = max(lo, min(hi, out_size))
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _zero(a, start, count):
    """a[start : start + count] = 0 (a flat, start and count unsigned)."""
    for i in range(count):
        a[start + i] = 0


# ---------------------------------------------------------------------------------------------------- im2col
@njit(cache=True, nogil=True)
def im2col(x, n0, n1, c0, c1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, cols):
    """cols[(c KH + kh) KW + kw, (n - n0) OHW + oh OW + ow] = x_pad[n, c, oh SH + kh DH, ow SW + kw DW]
    for n in [n0, n1), c in [c0, c1); zero where the window reaches into the padding."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P, OHW = cols.shape[1], OH * OW
    xf, cf = x.reshape(-1), cols.reshape(-1)
    for n in range(n0, n1):
        for c in range(c0, c1):
            plane = (n * C + c) * H * W
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    w_offset = kw * DW - PW
                    lo, hi = _valid_range(w_offset, SW, W, OW)
                    for oh in range(OH):
                        h = oh * SH + kh * DH - PH
                        d = _u(row * P + (n - n0) * OHW + oh * OW)
                        if h < 0 or h >= H:
                            _zero(cf, d, _u(OW))
                            continue
                        _zero(cf, d, _u(lo))
                        s = _u(plane + h * W + lo * SW + w_offset)
                        dd = d + _u(lo)
                        if SW == 1:
                            for i in range(_u(hi - lo)):
                                cf[dd + i] = xf[s + i]
                        else:
                            for i in range(_u(hi - lo)):
                                cf[dd + i] = xf[s + i * _u(SW)]
                        _zero(cf, d + _u(hi), _u(OW - hi))


@njit(cache=True, nogil=True)
def col2im(cols, n0, n1, c0, c1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, dx):
    """dx[n, c] = the sum of every column entry that im2col copied from (n, c, h, w), for n in [n0, n1) and c in
    [c0, c1) (overwrites those planes of dx; entries that came from the padding are dropped)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    P, OHW = cols.shape[1], OH * OW
    df, cf = dx.reshape(-1), cols.reshape(-1)
    for n in range(n0, n1):
        for c in range(c0, c1):
            plane = (n * C + c) * H * W
            _zero(df, _u(plane), _u(H * W))
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    w_offset = kw * DW - PW
                    lo, hi = _valid_range(w_offset, SW, W, OW)
                    for oh in range(OH):
                        h = oh * SH + kh * DH - PH
                        if h < 0 or h >= H:
                            continue
                        d = _u(plane + h * W + lo * SW + w_offset)
                        s = _u(row * P + (n - n0) * OHW + oh * OW + lo)
                        if SW == 1:
                            for i in range(_u(hi - lo)):
                                df[d + i] += cf[s + i]
                        else:
                            for i in range(_u(hi - lo)):
                                df[d + i * _u(SW)] += cf[s + i]


@njit(nogil=True, inline="always")
def move4x4(src, s, S, dst, d0, d1, d2, d3):
    """dst[d_j + k] = src[s + k S + j] for j, k in 0..3: a 4 x 4 block transposed, its 4 source runs (of 4 values,
    S apart) becoming the 4 destination runs starting at d0, d1, d2, d3. Written as 16 loads then 16 stores (scalar
    moves: Numba leaves LLVM's SLP vectorizer off, and with ``NUMBA_SLP_VECTORIZE=1`` the copies measured no
    faster), with the block's addresses computed once: a transposition copied value by value ran 1.3-2x slower
    (:func:`transpose4`, :func:`padded_image`). All indices unsigned."""
    a0, a1, a2, a3 = src[s], src[s + _u(1)], src[s + _u(2)], src[s + _u(3)]
    s1 = s + S
    b0, b1, b2, b3 = src[s1], src[s1 + _u(1)], src[s1 + _u(2)], src[s1 + _u(3)]
    s2 = s1 + S
    c0, c1, c2, c3 = src[s2], src[s2 + _u(1)], src[s2 + _u(2)], src[s2 + _u(3)]
    s3 = s2 + S
    e0, e1, e2, e3 = src[s3], src[s3 + _u(1)], src[s3 + _u(2)], src[s3 + _u(3)]
    dst[d0], dst[d0 + _u(1)], dst[d0 + _u(2)], dst[d0 + _u(3)] = a0, b0, c0, e0
    dst[d1], dst[d1 + _u(1)], dst[d1 + _u(2)], dst[d1 + _u(3)] = a1, b1, c1, e1
    dst[d2], dst[d2 + _u(1)], dst[d2 + _u(2)], dst[d2 + _u(3)] = a2, b2, c2, e2
    dst[d3], dst[d3 + _u(1)], dst[d3 + _u(2)], dst[d3 + _u(3)] = a3, b3, c3, e3


@njit(nogil=True, inline="always")
def transpose4(src, s0, R, Cc, dst, d0):
    """dst[d0 + c R + r] = src[s0 + r Cc + c]: an (R, Cc) block of a flat array into (Cc, R), in 4 x 4 blocks
    (:func:`move4x4`); the rows and columns past a multiple of 4 value by value. Used by the depthwise kernels'
    channels-last copies (1.3-1.6x faster kernels than with value-by-value copies). :func:`_transpose` keeps its
    value-by-value tiles for the copies back from channels last (row2im, rows_to_nchw); im2row's copy used them too,
    the blocks row by row measuring no faster in whole models and 2x slower on (1024, 16) (a 4 KiB stride maps a
    block's 4 stores to one cache set), until :func:`padded_image`, 4 channels at a time over whole planes."""
    R4, C4 = R - R % 4, Cc - Cc % 4
    for r in range(0, R4, 4):
        for c in range(0, C4, 4):
            d = _u(d0 + c * R + r)
            move4x4(src, _u(s0 + r * Cc + c), _u(Cc), dst, d, d + _u(R), d + _u(2 * R), d + _u(3 * R))
    for r in range(R4, R):
        for c in range(Cc):
            dst[_u(d0 + c * R + r)] = src[_u(s0 + r * Cc + c)]
    for r in range(R4):
        for c in range(C4, Cc):
            dst[_u(d0 + c * R + r)] = src[_u(s0 + r * Cc + c)]


@njit(nogil=True, inline="always")
def _load8(a, i):
    """The 8 values a[i : i + 8] (a flat, i unsigned), as a tuple: with :func:`_store8`, a copy of 8 values that LLVM
    turns into one 8-wide load and store (see :func:`padded_image_nhwc`)."""
    return a[i], a[i + _u(1)], a[i + _u(2)], a[i + _u(3)], a[i + _u(4)], a[i + _u(5)], a[i + _u(6)], a[i + _u(7)]


@njit(nogil=True, inline="always")
def _in_eights(C):
    """Whether runs of C values are copied 8 at a time (:func:`_load8`, :func:`_store8`): 8, 16, 24 or 32 (from 64
    on LLVM's own loop was as fast; see :func:`padded_image_nhwc`)."""
    return C % 8 == 0 and C <= 32


@njit(nogil=True, inline="always")
def _store8(a, i, v):
    """a[i : i + 8] = v, the tuple :func:`_load8` gives."""
    a[i] = v[0]
    a[i + _u(1)] = v[1]
    a[i + _u(2)] = v[2]
    a[i + _u(3)] = v[3]
    a[i + _u(4)] = v[4]
    a[i + _u(5)] = v[5]
    a[i + _u(6)] = v[6]
    a[i + _u(7)] = v[7]


@njit(nogil=True, inline="always")
def _column(row, col, phases, Wp, C):
    """Where column ``col`` of row ``row`` starts in a channels-last, phase-split scratch (:func:`padded_image`)."""
    return _u(((row * phases + col % phases) * Wp + col // phases) * C)


@njit(nogil=True, inline="always")
def padded_image(x, n, PH, PW, phases, Hp, Wp, xt, zero=True):
    """Image n of x (N, C, H, W) into the flat scratch ``xt``, zero padded (PH rows on top, PW columns on the left) to
    Hp rows of phases x Wp columns, channels last, the columns split by phase: x[n, c, h, w] -> xt[row, col % phases,
    col // phases, c] with row = h + PH, col = w + PW (``phases``: 1 for :func:`im2row`, a plain padded image; for
    Winograd the tile's stride, 2 or 4: then a tile's column j of every tile along a row is one run, see
    :func:`~minidl.backend._numba_winograd.input_tiles`; :func:`~minidl.backend._numba_winograd.output_gradient_tiles`
    reads dout in this layout too, unpadded).

    ``zero``: first set the whole scratch to zero (the padding, and the columns of the last phases past the image).
    The copy writes every position inside the image and none outside it, so the next image of the same shape finds
    those zeros still in place: the callers zero for the first image of each chunk only. Copies of a chunk of
    channels-last images into F(4x4, 3x3)'s scratch, zeroing for every image against for the first only (fastest of
    60 runs, one thread, Intel Xeon (Emerald Rapids)): 7 images of 16 x 32 x 32 83 -> 76 us, 8 of 32 x 16 x 16
    28 -> 22 us, 8 of 64 x 8 x 8 6.7 -> 4.5 us.

    A transposition ((C, W) values become (W, C)), done in blocks of 4 channels x 4 columns
    (:func:`move4x4`): value by value, the copy ran 1.65x slower (7 images of
    16 x 32 x 32: 61 against 37 us on one thread, AMD Zen 4; 1.7x at 32 and 64 channels). The blocks go channels
    first: 4 channels, all their rows, then the next 4, so the copy reads 4 planes of x at a time, each from its
    start to its end. It used to go row by row across all C channels, reading C planes at once, more streams than
    the hardware prefetcher follows (it works within 4 KiB pages, one 32 x 32 float32 plane): with this order, and
    dW reading dout through this copy an image at a time (it copied 2 or 4 rows of every channel per tile row),
    layers of 32 to 128 channels run 1.05-1.23x faster (forward, dx and dW, F(2x2, 3x3) and F(4x4, 3x3), batch
    128, 2 threads, AMD Zen 4), 16 channels about the same. Copying dout one tile row at a time in this order
    instead measured 0.94-1.04x (also on 56 x 56 x 64 images, whose whole dout image no longer fits in a core's
    cache). Channels and columns past a multiple of 4 go value by value."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    if zero:
        _zero(xt, _u(0), _u(Hp * phases * Wp * C))
    xf = x.reshape(-1)
    HW = _u(H * W)
    C4, W4 = C - C % 4, W - W % 4
    for c in range(0, C4, 4):
        for h in range(H):
            src = _u(((n * C + c) * H + h) * W)
            row = h + PH
            for w in range(0, W4, 4):  # channels c .. c + 3 of columns w .. w + 3
                d = _column(row, w + PW, phases, Wp, C) + _u(c)
                d1 = _column(row, w + 1 + PW, phases, Wp, C) + _u(c)
                d2 = _column(row, w + 2 + PW, phases, Wp, C) + _u(c)
                d3 = _column(row, w + 3 + PW, phases, Wp, C) + _u(c)
                move4x4(xf, src + _u(w), HW, xt, d, d1, d2, d3)
            for w in range(W4, W):  # the last W % 4 columns of these 4 channels
                t = _column(row, w + PW, phases, Wp, C) + _u(c)
                for k in range(4):
                    xt[t + _u(k)] = xf[src + _u(k) * HW + _u(w)]
    for c in range(C4, C):  # the last C % 4 channels
        for h in range(H):
            src = _u(((n * C + c) * H + h) * W)
            for w in range(W):
                xt[_column(h + PH, w + PW, phases, Wp, C) + _u(c)] = xf[src + _u(w)]


@njit(nogil=True, inline="always")
def padded_image_nhwc(xh, n, PH, PW, phases, Hp, Wp, xt, zero=True):
    """:func:`padded_image` of an image stored channels last: ``xh`` is the (N, H, W, C) view of a ``channels_last``
    array (:mod:`minidl.memory_format`), so each pixel's C values are already one run, copied as one (no
    transposition).

    Up to 32 channels (a multiple of 8), a pixel's run goes 8 values at a time (:func:`_load8`, :func:`_store8`,
    which LLVM turns into one 8-wide load and store): LLVM vectorizes a loop over C values 32 at a time, so a
    16-value run went through its scalar remainder. The whole batch of 128 images copied on one thread (Intel Xeon
    (Emerald Rapids)): 16 x 32 x 32 0.70-0.85 -> 0.48-0.58 ms; from 64 channels on, the loop was as fast."""
    H, W, C = xh.shape[1], xh.shape[2], xh.shape[3]
    if zero:
        _zero(xt, _u(0), _u(Hp * phases * Wp * C))
    xf = xh.reshape(-1)
    for h in range(H):
        row_into_phases(xf, _u((n * H + h) * W * C), h, W, C, PH, PW, phases, Wp, xt)


@njit(nogil=True, inline="always")
def row_into_phases(src, s0, h, W, C, PH, PW, phases, Wp, xt):
    """Image row h, its W C channels-last values src[s0 : s0 + W C], into the padded, phase-split scratch ``xt``
    (row h + PH, column w + PW: :func:`padded_image`'s layout): each pixel's C values are one run, copied 8 at a time
    where :func:`_in_eights` (see :func:`padded_image_nhwc`)."""
    eights = _in_eights(C)
    for w in range(W):
        d = _column(h + PH, w + PW, phases, Wp, C)
        s = s0 + _u(w * C)
        if eights:
            for c in range(0, C, 8):
                _store8(xt, d + _u(c), _load8(src, s + _u(c)))
        else:
            for c in range(C):
                xt[d + _u(c)] = src[s + _u(c)]


@njit(nogil=True, inline="always")
def image_copy(x, nhwc, n, PH, PW, phases, Hp, Wp, xt, zero):
    """:func:`padded_image` of image n of x, (N, C, H, W); or, with ``nhwc``, :func:`padded_image_nhwc` of x stored
    (N, H, W, C); the scratch zeroed first with ``zero`` (for a chunk's first image, see :func:`padded_image`)."""
    if nhwc:
        padded_image_nhwc(x, n, PH, PW, phases, Hp, Wp, xt, zero)
    else:
        padded_image(x, n, PH, PW, phases, Hp, Wp, xt, zero)


@njit(nogil=True, inline="always")
def image_dims(x, nhwc):
    """``(C, H, W)`` of a batch x stored (N, C, H, W), or (N, H, W, C) with ``nhwc``."""
    if nhwc:
        return x.shape[3], x.shape[1], x.shape[2]
    return x.shape[1], x.shape[2], x.shape[3]


@njit(cache=True, nogil=True, inline="always")
def _transpose(src, s0, R, Cc, dst, d0):
    """dst[d0 + c R + r] = src[s0 + r Cc + c]: an (R, Cc) block of a flat array into (Cc, R), in 16 x 16 tiles.

    Inside a tile the loop that touches memory contiguously goes innermost on the side whose other stride is large:
    a power-of-two stride such as 1024 floats (4 KiB) maps every access of the other loop to the same cache set."""
    T = 16
    for r0 in range(0, R, T):
        r1 = min(R, r0 + T)
        for c0 in range(0, Cc, T):
            c1 = min(Cc, c0 + T)
            if R > 4 * Cc:
                for c in range(c0, c1):
                    for r in range(r0, r1):
                        dst[_u(d0 + c * R + r)] = src[_u(s0 + r * Cc + c)]
            else:
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        dst[_u(d0 + c * R + r)] = src[_u(s0 + r * Cc + c)]


# ---------------------------------------------------------------------------------------------------- im2row
# The fused convolution uses the transposed layout, one *row* per output pixel: (images OHW, K) with K ordered
# (kh, kw, c). Built from a zero-padded channels-last copy of each image (``xp``, (H + 2 PH, W + 2 PW, C)), every
# (kh, kw) tap is one contiguous run of C values, and the GEMMs (rows @ W^T, dout @ rows, dout^T @ W) all have a
# long first dimension, which OpenBLAS runs at near peak (a 32-row W @ cols runs about 30% slower).
@njit(cache=True, nogil=True)
def im2row(x, nhwc, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xp, rows):
    """rows[(n - n0) OHW + oh OW + ow, (kh KW + kw) C + c] = x_pad[n, c, oh SH + kh DH, ow SW + kw DW] for n in
    [n0, n1); ``xp`` is scratch for one zero-padded image, (H + 2 PH) (W + 2 PW) C values.

    Each image is copied channels last and zero padded (:func:`padded_image`), so that every tap reads inside the
    copy (no bounds tests) and the C values of a pixel are one run; with DW = 1 a kernel row's KW taps are one run of
    KW C values. Against a plain channels-last copy and runs cut at the image's border: 1.16-1.34x faster on 3 x 3
    stride-2 layers of 16 to 128 channels, 1.7x on an RGB image (one thread, 8 images, AMD Zen 4). With ``nhwc``, x
    is the (N, H, W, C) view of a ``channels_last`` input, copied without a transposition."""
    C, H, W = image_dims(x, nhwc)
    Hp, Wp = H + 2 * PH, W + 2 * PW
    K, OHW = rows.shape[1], OH * OW
    rf = rows.reshape(-1)
    L = _u(KW * C if DW == 1 else C)  # values per run: a kernel row, or one tap
    for n in range(n0, n1):
        image_copy(x, nhwc, n, PH, PW, 1, Hp, Wp, xp, n == n0)
        for oh in range(OH):
            for ow in range(OW):
                d = _u(((n - n0) * OHW + oh * OW + ow) * K)
                for kh in range(KH):
                    start = ((oh * SH + kh * DH) * Wp + ow * SW) * C
                    for kw in range(KW if DW != 1 else 1):
                        s = _u(start + kw * DW * C)
                        for i in range(L):
                            rf[d + i] = xp[s + i]
                        d += L


@njit(cache=True, nogil=True)
def row2im(rows, n0, n1, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, xt, dx, nhwc):
    """The adjoint of :func:`im2row`: dx[n] (overwritten, n in [n0, n1)) = the sum of every row entry copied from
    each input position; ``xt`` is scratch (H W C values), summed channels last, then transposed into dx, or copied
    with ``nhwc`` (dx the (N, H, W, C) view of a ``channels_last`` gradient)."""
    C, H, W = image_dims(dx, nhwc)
    K, OHW = rows.shape[1], OH * OW
    df, tf, rf = dx.reshape(-1), xt.reshape(-1), rows.reshape(-1)
    for n in range(n0, n1):
        _zero(tf, _u(0), _u(H * W * C))
        for oh in range(OH):
            for ow in range(OW):
                r = _u(((n - n0) * OHW + oh * OW + ow) * K)
                w0 = ow * SW - PW
                for kh in range(KH):
                    h = oh * SH + kh * DH - PH
                    if h < 0 or h >= H:
                        continue
                    s = r + _u(kh * KW * C)
                    if DW == 1 and w0 >= 0 and w0 + KW <= W:  # one run of KW C values
                        d = _u((h * W + w0) * C)
                        for i in range(_u(KW * C)):
                            tf[d + i] += rf[s + i]
                        continue
                    for kw in range(KW):
                        w = w0 + kw * DW
                        if 0 <= w < W:
                            d = _u((h * W + w) * C)
                            for c in range(_u(C)):
                                tf[d + c] += rf[s + _u(kw * C) + c]
        if nhwc:  # xt is dx[n]'s layout
            d = _u(n * H * W * C)
            for i in range(_u(H * W * C)):
                df[d + i] = tf[i]
        else:
            _transpose(tf, 0, H * W, C, df, n * C * H * W)  # xt (H W, C) -> dx[n] (C, H W)


@njit(cache=True, nogil=True)
def rows_to_nchw(y, n0, n1, bias, has_bias, relu, relu_max, out):
    """out[n, o, p] = y[(n - n0) OHW + p, o] (+ bias[o]) (then min(relu, relu_max), with ``relu``: see
    :func:`_clamp`): the GEMM result (images OHW, O) into (N, O, OHW)."""
    O, OHW = out.shape[1], out.shape[2]
    yf, of = y.reshape(-1), out.reshape(-1)
    for n in range(n0, n1):
        _transpose(yf, (n - n0) * OHW * O, OHW, O, of, n * O * OHW)
        bias_epilogue(out, n, n + 1, bias, has_bias, relu, relu_max)


@njit(nogil=True, inline="always")
def tile_row_to_nchw(t, y, m, TW, n, oh, bias, has_bias, relu, relu_max, of, O, OH, OW, res, has_res):
    """of[((n O + o) OH + oh) OW + m tw + j] = t[y + (j TW + tw) O + o] (+ bias[o]; + res at the same place of the
    flat residual ``res`` with ``has_res``; then min(relu, relu_max) with ``relu``: see :func:`_clamp`) for every
    channel o and column m tw + j < OW: one output row of a Winograd
    F(m x m, 3 x 3) layer (``m`` = 2 or 4, a literal at each call) from its output transform's row, channels last
    (j, tw, o), into the flat (N, O, OH, OW) output ``of``. The last transposition of the layer: it reads with a
    stride of O values and runs at about one value per clock cycle (0.38 ns a value, AMD Zen 4; 44 of the 71 us of
    ``_numba_winograd4.output_tiles`` on 7 images of 16 x 32 x 32, ``benchmarks/bench_winograd_parts.py``); 4 x 4
    blocks (:func:`move4x4`) measured no faster here. (It takes the output flat, with its shape, because it runs once
    per output row: reshaping ``out`` at each call made the output pass 3-10 % slower.)"""
    zero = of.dtype.type(0)
    L = TW * O
    for o in range(O):
        b = bias[o] if has_bias else zero
        row = _u(((n * O + o) * OH + oh) * OW)
        for ow in range(OW):
            v = t[y + _u((ow % m) * L + (ow // m) * O + o)] + b
            if has_res:
                v += res[row + _u(ow)]
            of[row + _u(ow)] = _clamp(v, zero, relu_max) if relu else v


@njit(nogil=True, inline="always")
def tile_row_to_nhwc(t, y, m, TW, n, oh, bias, has_bias, relu, relu_max, of, O, OH, OW, res, has_res):
    """:func:`tile_row_to_nchw` into an output stored channels last, the flat (N, OH, OW, O) ``of`` (and ``res``
    likewise): of[((n OH + oh) OW + m tw + j) O + o] = t[y + (j TW + tw) O + o] (+ bias[o], + res, then the
    activation). Each output pixel's O values are one run on both sides: a copy, no transposition.

    Without a bias, residual or activation (a training forward, dx), 8, 16, 24 or 32 channels go 8 values at a
    time, as in :func:`padded_image_nhwc`: 7 output images of 16 x 32 x 32, 18.8 -> 10.1 us on one thread (Intel Xeon
    (Emerald Rapids)). With them, LLVM leaves those blocks scalar (it does not vectorize the epilogue across the 8
    values): they stay a loop."""
    zero = of.dtype.type(0)
    L = TW * O
    eights = _in_eights(O) and not (has_bias or relu or has_res)  # a plain copy, 8 values at a time
    for ow in range(OW):
        s = y + _u((ow % m) * L + (ow // m) * O)
        d = _u(((n * OH + oh) * OW + ow) * O)
        if eights:
            for o in range(0, O, 8):
                _store8(of, d + _u(o), _load8(t, s + _u(o)))
            continue
        for o in range(O):
            v = t[s + _u(o)] + (bias[o] if has_bias else zero)
            if has_res:
                v += res[d + _u(o)]
            of[d + _u(o)] = _clamp(v, zero, relu_max) if relu else v


@njit(nogil=True, inline="always")
def tile_row_out(t, y, m, TW, n, oh, bias, has_bias, relu, relu_max, of, O, OH, OW, nhwc, res, has_res):
    """:func:`tile_row_to_nchw`, or with ``nhwc`` :func:`tile_row_to_nhwc`."""
    if nhwc:
        tile_row_to_nhwc(t, y, m, TW, n, oh, bias, has_bias, relu, relu_max, of, O, OH, OW, res, has_res)
    else:
        tile_row_to_nchw(t, y, m, TW, n, oh, bias, has_bias, relu, relu_max, of, O, OH, OW, res, has_res)


@njit(cache=True, nogil=True)
def bias_epilogue(out, n0, n1, bias, has_bias, relu, relu_max):
    """out[n, o, p] = out[n, o, p] (+ bias[o]) (then min(relu, relu_max), with ``relu``: see :func:`_clamp`) for
    images [n0, n1) of out (N, O, OHW), in place, in one pass (nothing to do without a bias or an activation)."""
    if not (has_bias or relu):
        return
    O, OHW = out.shape[1], out.shape[2]
    of = out.reshape(-1)
    zero = out.dtype.type(0)
    for n in range(n0, n1):
        for o in range(O):
            b = bias[o] if has_bias else zero
            d = _u((n * O + o) * OHW)
            if relu:
                for i in range(_u(OHW)):
                    of[d + i] = _clamp(of[d + i] + b, zero, relu_max)
            else:
                for i in range(_u(OHW)):
                    of[d + i] += b


@njit(cache=True, nogil=True)
def rows_epilogue(y, bias, has_bias, relu, relu_max, res, has_res, r0):
    """y[p, o] = y[p, o] (+ bias[o]) (+ the residual's value with ``has_res``: res's flat [r0 + p O + o]) (then
    min(relu, relu_max), with ``relu``: see :func:`_clamp`), in place: a GEMM result (pixels, O) that is already its
    part of a ``channels_last`` output, whose residual is laid out likewise (nothing to do without a bias, a
    residual or an activation)."""
    if not (has_bias or relu or has_res):
        return
    P, O = y.shape
    yf, rf = y.reshape(-1), res.reshape(-1)
    zero = y.dtype.type(0)
    for p in range(P):
        d = _u(p * O)
        for o in range(O):
            v = yf[d + _u(o)] + (bias[o] if has_bias else zero)
            if has_res:
                v += rf[_u(r0) + d + _u(o)]
            yf[d + _u(o)] = _clamp(v, zero, relu_max) if relu else v


@njit(cache=True, nogil=True)
def add_relu_into(res, i0, i1, out):
    """out[i] = max(0, out[i] + res[i]) over the flat [i0, i1) of two arrays of one layout, in place (a NaN stays, as
    in :func:`~minidl.backend._numba_elementwise.add_relu_forward`): a residual and the ReLU after a convolution
    whose output pass does not take them."""
    of, rf = out.reshape(-1), res.reshape(-1)
    zero = of.dtype.type(0)
    for i in range(_u(i0), _u(i1)):
        v = of[i] + rf[i]
        of[i] = zero if v <= zero else v


@njit(cache=True, nogil=True)
def nchw_to_cols(dout, n0, n1, g):
    """g[o, (n - n0) OHW + p] = dout[n, o, p]: images [n0, n1) of an (N, O, OHW) array as one (O, images OHW)
    matrix, a run of OHW values per image and channel (the inverse of :func:`cols_to_nchw`)."""
    O, OHW = dout.shape[1], dout.shape[2]
    P = g.shape[1]
    df, gf = dout.reshape(-1), g.reshape(-1)
    for n in range(n0, n1):
        for o in range(O):
            s = _u((n * O + o) * OHW)
            d = _u(o * P + (n - n0) * OHW)
            for i in range(_u(OHW)):
                gf[d + i] = df[s + i]


@njit(cache=True, nogil=True)
def cols_to_nchw(y, n0, n1, bias, has_bias, relu, relu_max, out):
    """out[n, o, p] = y[o, (n - n0) OHW + p] (+ bias[o]) (then min(relu, relu_max), with ``relu``: see
    :func:`_clamp`) for images [n0, n1) of out (N, O, OHW): a GEMM result (O, images OHW) back into NCHW, a run of
    OHW values per image and channel (the inverse of :func:`nchw_to_cols`)."""
    O, OHW = out.shape[1], out.shape[2]
    P = y.shape[1]
    yf, of = y.reshape(-1), out.reshape(-1)
    zero = out.dtype.type(0)
    for n in range(n0, n1):
        for o in range(O):
            s = _u(o * P + (n - n0) * OHW)
            d = _u((n * O + o) * OHW)
            b = bias[o] if has_bias else zero
            if relu:
                for i in range(_u(OHW)):
                    of[d + i] = _clamp(yf[s + i] + b, zero, relu_max)
            elif has_bias:
                for i in range(_u(OHW)):
                    of[d + i] = yf[s + i] + b
            else:
                for i in range(_u(OHW)):
                    of[d + i] = yf[s + i]


# ---------------------------------------------------------------------------------------------------- relu
@njit(cache=True, nogil=True, inline="always")
def _relu(v, zero):
    """v where not (v <= 0) (v > 0 or NaN), else zero (+0): ReLU with NaN propagating, as relu_forward."""
    return v if not (v <= 0) else zero


@njit(cache=True, nogil=True, inline="always")
def _clamp(v, zero, relu_max):
    """min(relu(v), relu_max), NaN propagating: the ReLU (relu_max = +inf, which no value exceeds) or the ReLU6
    (relu_max = 6) that a convolution applies in its output pass (``conv2d_relu``, ``conv2d_relu6``)."""
    v = _relu(v, zero)
    return relu_max if v > relu_max else v


def bias_arguments(bias: Any, dtype: Any) -> tuple[Any, bool]:
    """The ``(bias, has_bias)`` arguments of the convolution kernels' output pass: the bias as a contiguous array of
    ``dtype``, or without one a single zero that the kernels never read (they take an array either way)."""
    if bias is None:
        return np.zeros(1, dtype=dtype), False
    return np.ascontiguousarray(bias, dtype=dtype), True


def residual_arguments(residual: Any, nhwc: bool, dtype: Any) -> tuple[Any, bool]:
    """The ``(res, has_res)`` arguments of the convolution kernels' output pass: the residual laid out as they write
    the output (its C-contiguous (N, H, W, C) view with ``nhwc``, else (N, C, H, W) C-contiguous; a copy if it came in
    the other layout), or without one a (1, 1, 1, 1) zero that the kernels never read."""
    if residual is None:
        return np.zeros((1, 1, 1, 1), dtype=dtype), False
    residual = residual.astype(dtype, copy=False)
    return (_as_nhwc(residual) if nhwc else np.ascontiguousarray(residual)), True


def epilogue(relu_max: float | None, dtype: Any) -> tuple[bool, Any]:
    """The ``(relu, relu_max)`` arguments of the convolution kernels' output pass for an activation bound
    ``relu_max``: None (no activation), +inf (ReLU) or 6.0 (ReLU6). The bound is a scalar of the output's ``dtype``,
    so that the kernels' arithmetic stays in it (a Python float would make every float32 output value a float64)."""
    return relu_max is not None, np.dtype(dtype).type(math.inf if relu_max is None else relu_max)


# ---------------------------------------------------------------------------------------------------- partial sums
_PARTS_BLOCK = 1 << 12  # values of the total a block of add_parts_in_order keeps in L1 while it adds the parts


@njit(cache=True, nogil=True)
def add_parts_in_order(parts, i0, i1, out):
    """out[i] = parts[0, i] + parts[1, i] + ... for i in [i0, i1), added one part after the other (the order of
    ``total += part`` for each part in turn), in blocks of _PARTS_BLOCK values: one pass over the parts. The
    backend's ``_add_in_order`` runs it over slices of the total on the pool's threads."""
    size = _u(parts.shape[1])  # unsigned indices: vectorized loops
    pf = parts.reshape(-1)
    for b0 in range(i0, i1, _PARTS_BLOCK):
        b = _u(b0)
        n = _u(min(i1, b0 + _PARTS_BLOCK) - b0)
        for i in range(n):
            out[b + i] = pf[b + i]
        for k in range(1, parts.shape[0]):
            src = _u(k) * size + b
            for i in range(n):
                out[b + i] += pf[src + i]


# ---------------------------------------------------------------------------------------------------- channel sums
# A BatchNorm's statistics come from two sums per channel c, around a shift s_c near the channel's values (so that
# var = S2 / M - (S1 / M)^2 keeps its digits): S1 = sum (y - s_c), S2 = sum (y - s_c)^2, in float64. The BatchNorm's
# first pass takes them over its input (``_numba_batchnorm_cl.py``); a convolution handed ``channel_sums`` takes them
# over its output as it writes it (``_numba_winograd4.py``), or in one pass after (``_numba_batchnorm_rows.py``).
# Rows of C values (a channels_last array's memory) are summed a tile of T = k C values at a time (k whole rows, T
# about 256): the flat value e0 + i T + j, e0 a multiple of C, belongs to channel j mod C, so the inner loop runs over
# T values with one float64 accumulator each (no dependency from one row to the next: vectorized), folded to the C
# channels at the end (:func:`fold_tiles`).
@njit(cache=True, nogil=True, inline="always")
def _d_d2(xf, i, s):
    """(d, d^2) for d = x[i] - s in float64: a value's terms of the shifted sums."""
    d = np.float64(xf[i]) - s
    return d, d * d


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def shifted_sums_rows(xf, shift, e0, e1, s1, s2):
    """s1[j] += sum (x - shift[j]), s2[j] += sum (x - shift[j])^2, in float64, over the flat values [e0, e1) of the
    rows ``xf`` (e0 a multiple of C), value e0 + i T + j at tile position j (T = shift.size, a multiple of C;
    ``shift`` tiled: shift[j] is channel j mod C's). Each accumulator takes the terms of 4 tiles at a time (the
    accumulators' loads and stores bound a loop over one tile: 4 ran it 1.7 times faster), the last tile may be
    partial. The order depends on [e0, e1) and T only."""
    T = shift.size
    b0 = e0
    while b0 + 4 * T <= e1:
        i0, i1, i2, i3 = _u(b0), _u(b0 + T), _u(b0 + 2 * T), _u(b0 + 3 * T)
        for j in range(_u(T)):
            s = shift[j]
            d0, q0 = _d_d2(xf, i0 + j, s)
            d1, q1 = _d_d2(xf, i1 + j, s)
            d2, q2 = _d_d2(xf, i2 + j, s)
            d3, q3 = _d_d2(xf, i3 + j, s)
            s1[j] += (d0 + d1) + (d2 + d3)
            s2[j] += (q0 + q1) + (q2 + q3)
        b0 += 4 * T
    for b in range(b0, e1, T):  # the last (up to 4) tiles, the last one maybe partial
        for j in range(_u(min(T, e1 - b))):
            d, q = _d_d2(xf, _u(b) + j, shift[j])
            s1[j] += d
            s2[j] += q


@njit(cache=True, nogil=True)
def fold_tiles(s1, s2, C, part):
    """part[0, c] = the sum of s1 at channel c's tile positions (c, c + C, ...) in that order, part[1, c] the same
    of s2: :func:`shifted_sums_rows`' accumulators folded to the C channels."""
    for c in range(C):
        part[0, c] = 0.0
        part[1, c] = 0.0
    for j0 in range(0, s1.size, C):
        for c in range(C):
            part[0, c] += s1[j0 + c]
            part[1, c] += s2[j0 + c]


@njit(cache=True, nogil=True)
def shifted_sums_chunk(xf, shift, C, e0, e1, part):
    """part[0, c], part[1, c] = the shifted sums of channel c's values in the chunk [e0, e1) of the rows ``xf`` of C
    values: :func:`shifted_sums_rows` (around ``shift``, tiled) from zero, folded (:func:`fold_tiles`)."""
    s1 = np.zeros(shift.size)
    s2 = np.zeros(shift.size)
    shifted_sums_rows(xf, shift, e0, e1, s1, s2)
    fold_tiles(s1, s2, C, part)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def shifted_sums_planes(x3, shift, c0, c1, part):
    """part[0, c] = sum (x - shift[c]), part[1, c] = sum (x - shift[c])^2 in float64 over the values of channel c
    of the (N, C, S) ``x3`` (a C-order array), for the channels [c0, c1): the sums of :func:`shifted_sums_rows` for
    an array whose channels are planes, one channel at a time."""
    N, S = x3.shape[0], x3.shape[2]
    xf = x3.reshape(-1)
    for c in range(c0, c1):
        s = np.float64(shift[c])
        a1 = 0.0
        a2 = 0.0
        for n in range(N):
            base = _u((n * x3.shape[1] + c) * S)
            for i in range(_u(S)):
                d, q = _d_d2(xf, base + i, s)
                a1 += d
                a2 += q
        part[0, c] = a1
        part[1, c] = a2
