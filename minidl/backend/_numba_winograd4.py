r"""Winograd's F(4x4, 3x3): a 3 x 3 convolution (stride 1) with 4x fewer multiplications, for wide enough images.

The same algorithm as ``_numba_winograd.py``'s F(2x2, 3x3) (read that first), with bigger tiles: each 4 x 4 output
tile needs a 6 x 6 input tile ``d`` (Lavin and Gray 2016, interpolation points 0, 1, -1, 2, -2 and infinity),

.. math:: Y = A^T \big[ (G g G^T) \odot (B^T d B) \big] A

    B^T = [[4,  0, -5,  0, 1, 0],        G = [[ 1/4,     0,    0],        A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],             [-1/6, -1/6, -1/6],               [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],             [-1/6,  1/6, -1/6],               [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],             [1/24, 1/12,  1/6],               [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],             [1/24, -1/12, 1/6],
           [0,  4,  0, -5, 0, 1]]             [   0,    0,    1]]

36 multiplications give 16 outputs, 2.25 per output (F(2x2, 3x3): 4; direct: 9). Summed over the input channels
these are 36 GEMMs M_xi = V_xi U_xi, (tiles, C) @ (C, O), with 1.78x fewer multiplications than F(2x2, 3x3)'s 16
and 1.78x fewer values in V and M per output pixel (the transforms are memory-bound: they get cheaper too). The weight
gradient runs the adjoint transforms (the last section), as F(2x2, 3x3)'s does.

Accuracy: the transforms multiply by up to 8 and 1/24, so roundings grow more than in F(2x2, 3x3): for float32
2e-6 to 8e-6 relative to the largest output on 64-channel layers (F(2x2, 3x3): 2e-7 to 5e-7), float64 about 1e-14
(1e-15), far inside the test tolerances; the weight gradient likewise (float32 up to about 6e-6 of the largest
value against F(2x2, 3x3)'s 2.4e-6, float64 1e-14, over 1,456 random shapes). The transforms also scale values up
(B^T d B by up to 100x, the output transform by up to 361x before the sums cancel), so huge finite float32 inputs
(above about 1e35) can overflow where a direct convolution would not; an inf or NaN turns its tiles' outputs into
NaN, as in F(2x2, 3x3).

Layouts as in ``_numba_winograd.py``, with 4 column phases instead of 2: the padded channels-last scratch image is
xt[row, column % 4, column // 4, c], so along a tile row the values of column j of every tile form one contiguous run
of TW C values (the loops below run over such runs, which LLVM vectorizes). Each transform is two passes of a 1-D
transform: over the 6 columns of the tile (into a scratch ``t``), then over its rows. From 24 channels on, a
channels-last image is not copied: the first pass reads the image's rows and writes t in that layout itself
(``_columns_from_image``). V, M and U are 36 planes, ``plane`` values apart (see
``_numba_winograd_conv.WinogradKernelsMixin._wino_planes``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minidl.backend._numba_batchnorm import _bn_y
from minidl.backend._numba_blas import gemm_planes, gemm_planes_sum
from minidl.backend._numba_kernels import (
    _relu,
    _u,
    _zero,
    add_parts_in_order,
    fold_tiles,
    image_copy,
    image_dims,
    row_into_phases,
    shifted_sums_rows,
    tile_row_out,
)
from minidl.backend._numba_tasks import atomic_add, next_task


# The 1-D transforms. Their constants come in as arguments of the data's dtype (``k`` below): a Python int literal
# times a float32 would be a float64 in Numba, and the loops would convert every value twice.
@njit(inline="always")
def _bt(d0, d1, d2, d3, d4, d5, k2, k4, k5):
    """B^T d for a column d of 6 values (the rows of B^T above); k2, k4, k5 = 2, 4, 5 in d's dtype."""
    return (
        k4 * d0 - k5 * d2 + d4,
        d3 + d4 - k4 * (d1 + d2),
        k4 * (d1 - d2) - d3 + d4,
        k2 * (d3 - d1) - d2 + d4,
        k2 * (d1 - d3) - d2 + d4,
        k4 * d1 - k5 * d3 + d5,
    )


@njit(inline="always")
def _at(m0, m1, m2, m3, m4, m5, k2, k4, k8):
    """A^T m for a column m of 6 values (4 values); k2, k4, k8 = 2, 4, 8 in m's dtype."""
    return m0 + m1 + m2 + m3 + m4, m1 - m2 + k2 * (m3 - m4), m1 + m2 + k4 * (m3 + m4), m1 - m2 + k8 * (m3 - m4) + m5


_SIXTH, _TWELFTH, _TWENTYFOURTH = 1.0 / 6.0, 1.0 / 12.0, 1.0 / 24.0


@njit(inline="always")
def _g(g0, g1, g2):
    """G g for a column g of 3 values (6 values), in float64 for float32 g too (1/6, 1/12 and 1/24 are not exact in
    binary); multiplications by the reciprocals (divisions made the transform 2.6x slower)."""
    g0, g1, g2 = g0 + 0.0, g1 + 0.0, g2 + 0.0  # float64
    s = g0 + g2
    a = g0 * _TWENTYFOURTH + g2 * _SIXTH
    return g0 * 0.25, -(s + g1) * _SIXTH, -(s - g1) * _SIXTH, a + g1 * _TWELFTH, a - g1 * _TWELFTH, g2


@njit(cache=True, nogil=True)
def transform_weight(weight, c0, c1, U, plane):
    """U[(6 i + j) plane + c O + o] = (G weight[o, c] G^T)[i, j] for input channels [c0, c1) of a (O, C, 3, 3)
    weight: 36 (C, O) planes, ``plane`` values apart."""
    O, C = weight.shape[0], weight.shape[1]
    wf, P = weight.reshape(-1), _u(plane)
    for c in range(c0, c1):
        for o in range(O):
            s = _u(9 * (o * C + c))
            # G g, column by column: gg[i][j] for the 6 rows i and 3 columns j
            a = _g(wf[s], wf[s + _u(3)], wf[s + _u(6)])
            b = _g(wf[s + _u(1)], wf[s + _u(4)], wf[s + _u(7)])
            e = _g(wf[s + _u(2)], wf[s + _u(5)], wf[s + _u(8)])
            u = _u(c * O + o)
            for i in range(6):  # then (.) G^T: row i of G g through G
                r = _g(a[i], b[i], e[i])
                for j in range(6):
                    U[_u(6 * i + j) * P + u] = r[j]


# Below 24 channels the copy pays: ``_columns_from_image``'s loop over a pixel's C values is too short (slower than the
# copy at 16 channels); from 24 channels on, reading x straight is 1.3-1.7x faster (see input_tiles).
_FROM_IMAGE_CHANNELS = 24


@njit(nogil=True, inline="always")
def _image_row(xf, n, h, H, WC, zrow):
    """Row h of image n of the flat channels-last batch ``xf`` (its W C values, a view), or the zeros ``zrow`` for a
    row of the padding (h outside [0, H))."""
    if 0 <= h < H:
        s = (n * H + h) * WC
        return xf[s : s + WC]
    return zrow


@njit(nogil=True, inline="always")
def _put6(t, i, step, v):
    """t[i + k step] = v[k] for the 6 values of the tuple v (a 1-D transform's column, into 6 rows of t)."""
    t[i] = v[0]
    t[i + step] = v[1]
    t[i + _u(2) * step] = v[2]
    t[i + _u(3) * step] = v[3]
    t[i + _u(4) * step] = v[4]
    t[i + _u(5) * step] = v[5]


@njit(nogil=True, inline="always")
def _bn_relu_row(xf, s, pt, dst, d):
    """dst[d + i] = relu((x - mean) scale + offset) for the W C values x = xf[s + i] of one channels-last image row,
    ``pt`` the (3, W C) rows mean, scale, offset tiled along the row (:func:`_tiled_pre`): the BatchNorm+ReLU before
    a convolution, applied as the convolution reads its input (``conv2d_forward`` of a
    :class:`~minidl.nn.BatchNormReLUOutput`), with the BatchNorm kernels' arithmetic
    (:func:`~minidl.backend._numba_batchnorm._bn_y`, whose y their backward's mask recomputes). One loop over the
    row, which LLVM vectorizes (a loop over each pixel's 16 values went scalar)."""
    zero = dst.dtype.type(0)
    for i in range(_u(pt.shape[1])):
        dst[d + i] = _relu(_bn_y(xf[s + i], pt[0, i], pt[1, i], pt[2, i]), zero)


@njit(nogil=True, inline="always")
def _tiled_pre(pre, W):
    """``pre`` ((3, C): mean, scale, offset) tiled W times along its rows, (3, W C): a channels-last row's vectors."""
    C = pre.shape[1]
    pt = np.empty((3, W * C), dtype=pre.dtype)
    for i in range(W * C):
        pt[0, i], pt[1, i], pt[2, i] = pre[0, i % C], pre[1, i % C], pre[2, i % C]
    return pt


@njit(nogil=True, inline="always")
def _columns_from_image(xh, n, r, PW, Wq, zrow, t, k2, k4, k5):
    """Pass 1 of :func:`input_tiles` straight from image n of a channels-last batch ``xh`` (N, H, W, C), without the
    padded copy: B^T d of the 6 image rows r .. r + 5 (``zrow`` for those outside the image) for every column,
    t[i, column % 4, column // 4, c] with column = w + PW (the scratch's layout; columns of the padding are never
    written, so they keep the zeros the caller put there)."""
    H, W, C = xh.shape[1], xh.shape[2], xh.shape[3]
    xf = xh.reshape(-1)
    WC = W * C
    r0, r1 = _image_row(xf, n, r, H, WC, zrow), _image_row(xf, n, r + 1, H, WC, zrow)
    r2, r3 = _image_row(xf, n, r + 2, H, WC, zrow), _image_row(xf, n, r + 3, H, WC, zrow)
    r4, r5 = _image_row(xf, n, r + 4, H, WC, zrow), _image_row(xf, n, r + 5, H, WC, zrow)
    Q = _u(4 * Wq * C)  # row i of t
    for w in range(W):
        col = w + PW
        d = _u(((col % 4) * Wq + col // 4) * C)
        s = _u(w * C)
        for c in range(_u(C)):
            _put6(t, d + c, Q, _bt(r0[s + c], r1[s + c], r2[s + c], r3[s + c], r4[s + c], r5[s + c], k2, k4, k5))


@njit(nogil=True, inline="always")
def _bn_relu_image(xh, n, PH, PW, Hp, Wq, xt, zero, pt, row):
    """:func:`~minidl.backend._numba_kernels.padded_image_nhwc` of image n (4 column phases) with every value through
    the BatchNorm+ReLU (``pt``, tiled): each image row into the scratch ``row`` first (:func:`_bn_relu_row`), then
    copied pixel by pixel as the plain copy does; the padding stays zero."""
    H, W, C = xh.shape[1], xh.shape[2], xh.shape[3]
    if zero:
        _zero(xt, _u(0), _u(Hp * 4 * Wq * C))
    xf = xh.reshape(-1)
    for h in range(H):
        _bn_relu_row(xf, _u((n * H + h) * W * C), pt, row, _u(0))
        row_into_phases(row, _u(0), h, W, C, PH, PW, 4, Wq, xt)


@njit(cache=True, nogil=True)
def input_tiles(x, nhwc, n0, n1, first, PH, PW, TH, TW, xt, t, V, plane):
    """:func:`input_tiles_of` of x itself (no BatchNorm+ReLU before it)."""
    input_tiles_of(x, nhwc, n0, n1, first, PH, PW, TH, TW, xt, t, V, plane, np.empty((3, 1), xt.dtype), False)


@njit(cache=True, nogil=True)
def input_tiles_of(x, nhwc, n0, n1, first, PH, PW, TH, TW, xt, t, V, plane, pre, has_pre):
    """V[(6 i + j) plane + tile C + c] = (B^T d B)[i, j] for every tile = ((n - first) TH + th) TW + tw of images n
    in [n0, n1) of x (N, C, H, W) and channel c, d the 6 x 6 input tile at rows 4 th - PH + (0..5), columns
    4 tw - PW + (0..5) (zero outside x). With ``nhwc``, x is the (N, H, W, C) view of a ``channels_last`` input.

    ``xt`` is scratch for one zero-padded image, (4 TH + 2) 4 (TW + 1) C values, xt[row, column % 4, column // 4, c];
    ``t`` scratch for one tile row's B^T d, 36 TW C values (24 (TW + 1) C from 24 channels on).

    A channels-last x of 24 channels or more is read straight, without the padded copy: pass 1 combines 6 rows of the
    image itself into t[i, column % 4, column // 4, c] (:func:`_columns_from_image`, a loop over each pixel's C
    values), and pass 2 reads t there (``xt`` then only holds a row of zeros for the padding). The input tiles of a
    whole batch of 128 on one thread, copy against straight (Intel Xeon (Emerald Rapids)): 24 x 32 x 32 2.02 -> 1.53
    ms, 32 x 32 x 32 3.80 -> 2.29, 32 x 16 x 16 0.84 -> 0.62, 64 x 16 x 16 1.85 -> 1.17, 64 x 8 x 8 0.41 -> 0.31,
    128 x 8 x 8 0.93 -> 0.61, 256 x 8 x 8 2.12 -> 1.48 ms. At 16 channels a prototype of the straight read took 1.12x
    (32 x 32) and 1.22x (16 x 16) the copy's time, so there the copy stays.

    With ``has_pre`` (a ``channels_last`` x only), the tiles are those of relu((x - mean_c) scale_c + offset_c), ``pre``
    the (3, C) rows mean, scale and offset: the BatchNorm+ReLU before the convolution, applied as its input is read
    (``conv2d_forward`` of a :class:`~minidl.nn.BatchNormReLUOutput`; the padding stays zero), in the copy
    (:func:`_bn_relu_image`) at every channel count. (Applied to the straight read's 6 rows per row of tiles instead,
    it cost 1.4x more at 32 and 64 channels: rows normalized 1.5 times each.)"""
    C = image_dims(x, nhwc)[0]
    Wq = TW + 1
    L = _u(TW * C)
    P = _u(plane)
    tf = xt.reshape(-1)
    k2, k4, k5 = tf.dtype.type(2), tf.dtype.type(4), tf.dtype.type(5)
    straight = nhwc and C >= _FROM_IMAGE_CHANNELS and not has_pre
    pt = _tiled_pre(pre, x.shape[2] if has_pre else 0)  # (a BatchNorm+ReLU's vectors along an image row)
    if straight:  # the padding: a row of zeros, and t's columns outside the image
        W = x.shape[2]
        _zero(tf, _u(0), _u(W * C))
        zrow = tf[: W * C]
        _zero(t, _u(0), _u(24 * Wq * C))
        rows, cols = _u(4 * Wq * C), _u(Wq * C)  # pass 2 below: t[i, j % 4, tw + j // 4, c]
    else:
        zrow = tf[:0]
        rows, cols = _u(6) * L, L  # t[i, j, tw, c]
    for n in range(n0, n1):
        if not straight:
            if has_pre:
                _bn_relu_image(x, n, PH, PW, 4 * TH + 2, Wq, tf, n == n0, pt, t)  # (t: scratch until pass 1)
            else:
                image_copy(x, nhwc, n, PH, PW, 4, 4 * TH + 2, Wq, tf, n == n0)
        for th in range(TH):
            if straight:
                _columns_from_image(x, n, 4 * th - PH, PW, Wq, zrow, t, k2, k4, k5)
            else:
                # pass 1, B^T d: per tile column j, the 6 image rows 4 th + p combined into t[i, j] (6 runs of L)
                for j in range(6):
                    col = _u((j % 4) * Wq * C + (j // 4) * C)
                    r = _u(4 * th * 4 * Wq * C) + col  # row 4 th + p is r + p 4 Wq C
                    step = _u(4 * Wq * C)
                    o = _u(j) * L  # t[i, j] at (6 i + j) L
                    for k in range(L):
                        _put6(t, o + k, _u(6) * L, _bt(
                            tf[r + k], tf[r + step + k], tf[r + _u(2) * step + k], tf[r + _u(3) * step + k],
                            tf[r + _u(4) * step + k], tf[r + _u(5) * step + k], k2, k4, k5,
                        ))  # fmt: skip
            # pass 2, (.) B: per row i of t, its 6 columns combined into planes 6 i .. 6 i + 5 of V, one loop per
            # plane m (each computes the whole B^T column and keeps value m; LLVM drops the other five). With the six
            # planes written in one loop, as pass 1 writes t, LLVM left the loop scalar: the two passes took 2.6x as
            # long (7 images of 16 x 32 x 32: 126 against 49 us on one thread, AMD Zen 4; 2.5x at 32 and 64 channels).
            # Column j of row i starts at i rows + j cols (copied) or i rows + (j % 4) cols + (j // 4) C (straight).
            dst = _u(((n - first) * TH + th) * TW * C)
            for i in range(6):
                s0 = _u(i) * rows
                s1 = s0 + cols
                s2, s3 = s0 + _u(2) * cols, s0 + _u(3) * cols
                s4 = s0 + (_u(C) if straight else _u(4) * cols)
                s5 = s1 + (_u(C) if straight else _u(4) * cols)
                for m in range(6):
                    v = _u(6 * i + m) * P + dst
                    for k in range(L):
                        V[v + k] = _bt(t[s0 + k], t[s1 + k], t[s2 + k], t[s3 + k], t[s4 + k], t[s5 + k], k2, k4, k5)[m]


@njit(cache=True, nogil=True)
def output_tiles(
    M, plane, n0, n1, first, TH, TW, bias, has_bias, relu, relu_max, t, out, nhwc, res, has_res, shift, s1, s2,
    has_sums,
):  # fmt: skip
    """out[n, o, 4 th + i, 4 tw + j] = (A^T m A)[i, j] (+ bias[o]; + res at the same place with ``has_res``, ``res``
    laid out as ``out``; then min(relu, relu_max) with ``relu``) for
    images [n0, n1), m the 6 x 6 tile of output tile ((n - first) TH + th) TW + tw and channel o (m[r, l] =
    M[(6 r + l) plane + tile O + o]); tiles sticking out of OH or OW are cut. With ``has_sums`` (a ``channels_last``
    output) it also adds each row of tiles' output values, just written and still in the cache, to the shifted sums
    s1, s2 (:func:`~minidl.backend._numba_kernels.shifted_sums_rows`, ``shift`` tiled): a BatchNorm's statistics
    without a pass of its own (the pair ``conv2d_forward``'s ``channel_sums``).

    ``t`` is scratch for one tile row: A^T m (24 TW O values), then the 4 output rows (16 TW O values,
    y[i, j, tw O + o]) copied into the (N, O, OH, OW) output (with ``nhwc``, ``out`` is the (N, OH, OW, O) view of a
    ``channels_last`` output)."""
    O, OH, OW = image_dims(out, nhwc)
    L = _u(TW * O)
    P = _u(plane)
    of, rf = out.reshape(-1), res.reshape(-1)
    k2, k4, k8 = out.dtype.type(2), out.dtype.type(4), out.dtype.type(8)
    y = _u(24) * L  # where the output rows start in t
    for n in range(n0, n1):
        for th in range(TH):
            src = _u(((n - first) * TH + th) * TW * O)
            # pass 1, A^T m: per tile column, its 6 rows combined into t[i, col] (4 runs of L)
            for col in range(6):
                m = _u(col) * P + src  # row r of this column: plane 6 r + col
                o = _u(col) * L  # t[i, col] at (6 i + col) L
                for k in range(L):
                    a0, a1, a2, a3 = _at(
                        M[m + k], M[m + _u(6) * P + k], M[m + _u(12) * P + k], M[m + _u(18) * P + k],
                        M[m + _u(24) * P + k], M[m + _u(30) * P + k], k2, k4, k8,
                    )  # fmt: skip
                    t[o + k] = a0
                    t[o + _u(6) * L + k] = a1
                    t[o + _u(12) * L + k] = a2
                    t[o + _u(18) * L + k] = a3
            # pass 2, (.) A: per row i, its 6 columns combined into the 4 output values y[i, j]
            for i in range(4):
                s = _u(6 * i) * L
                d = y + _u(4 * i) * L
                for k in range(L):
                    a0, a1, a2, a3 = _at(
                        t[s + k], t[s + L + k], t[s + _u(2) * L + k], t[s + _u(3) * L + k], t[s + _u(4) * L + k],
                        t[s + _u(5) * L + k], k2, k4, k8,
                    )  # fmt: skip
                    t[d + k] = a0
                    t[d + L + k] = a1
                    t[d + _u(2) * L + k] = a2
                    t[d + _u(3) * L + k] = a3
            rows = min(4, OH - 4 * th)
            for i in range(rows):  # y[i, j, tw O + o] -> out[n, o, 4 th + i, 4 tw + j]
                tile_row_out(
                    t, y + _u(4 * i) * L, 4, TW, n, 4 * th + i, bias, has_bias, relu, relu_max, of, O, OH, OW, nhwc,
                    rf, has_res,
                )  # fmt: skip
            if has_sums:  # the rows just written: out[n, 4 th : 4 th + rows, :, :], contiguous channels_last
                e0 = (n * OH + 4 * th) * OW * O
                shifted_sums_rows(of, shift, e0, e0 + rows * OW * O, s1, s2)


# ---------------------------------------------------------------------------------------------------- weight gradient
# The adjoint of the forward above, as in ``_numba_winograd.py``'s last section. The forward is, per tile and output
# channel, Y = A^T m A with m_xi = sum_c V_xi,c U_xi,c (the GEMMs M_xi = V_xi U_xi) and U = G g G^T per filter. Each
# step is linear, so its adjoint is its transpose:
#
# * Y = A^T m A, i.e. Y_ij = sum_rl A^T_ir m_rl A_lj: dL/dm_rl = sum_ij A^T_ir dY_ij A_lj = (A dY A^T)_rl, so
#   dm = A dY A^T per tile (dY its 4 x 4 output gradient; zero past OH or OW, where the forward cut the tile);
# * M_xi = V_xi U_xi: dU_xi = V_xi^T dM_xi, a GEMM per position xi summed over all tiles of the batch;
# * U = G g G^T: dg = G^T dU G per filter (G^T is 3 x 6).
#
# 36 GEMMs of (C, tiles) @ (tiles, O) on 2.25 values of V and dM per output pixel, against F(2x2, 3x3)'s 16 on 4.
@njit(inline="always")
def _a(y0, y1, y2, y3, k2, k4):
    """A y for a column y of 4 values (6 values; A's rows are the columns of A^T above):
    (y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3, y0 + 2 y1 + 4 y2 + 8 y3, y0 - 2 y1 + 4 y2 - 8 y3, y3), the sums
    shared; k2, k4 = 2, 4 in y's dtype."""
    e, f = y0 + y2, y1 + y3
    e4, f4 = y0 + k4 * y2, k2 * (y1 + k4 * y3)
    return y0, e + f, e - f, e4 + f4, e4 - f4, y3


@njit(nogil=True, inline="always")
def _rows_from_gradient(dh, n, r, TW, zrow, t, k2, k4):
    """Pass 1 of :func:`output_gradient_tiles` straight from image n of a channels-last gradient ``dh``
    (N, OH, OW, O), as :func:`_columns_from_image` for :func:`input_tiles`: A dY of the 4 rows r .. r + 3 (``zrow``
    past OH) for every column w, t[i, w % 4, w // 4, o] (the columns past OW keep the caller's zeros)."""
    OH, OW, O = dh.shape[1], dh.shape[2], dh.shape[3]
    df = dh.reshape(-1)
    WO = OW * O
    r0, r1 = _image_row(df, n, r, OH, WO, zrow), _image_row(df, n, r + 1, OH, WO, zrow)
    r2, r3 = _image_row(df, n, r + 2, OH, WO, zrow), _image_row(df, n, r + 3, OH, WO, zrow)
    R = _u(4 * TW * O)  # row i of t
    for w in range(OW):
        d = _u(((w % 4) * TW + w // 4) * O)
        s = _u(w * O)
        for o in range(_u(O)):
            _put6(t, d + o, R, _a(r0[s + o], r1[s + o], r2[s + o], r3[s + o], k2, k4))


@njit(cache=True, nogil=True)
def output_gradient_tiles(dout, nhwc, n0, n1, first, TH, TW, yt, t, dM, plane):
    """dM[(6 i + j) plane + tile O + o] = (A dY A^T)[i, j] for every output tile = ((n - first) TH + th) TW + tw of
    images n in [n0, n1) of dout (N, O, OH, OW) (numbered as in :func:`input_tiles`) and channel o, dY its 4 x 4
    gradient dout[n, o, 4 th + (0..3), 4 tw + (0..3)] (zero past OH or OW), A = (A^T)^T (6 x 4).

    ``yt`` is scratch for one image of dout, (4 TH, 4, TW O) values (``padded_image`` of ``_numba_kernels.py``, no
    padding): yt[4 th + i, j, tw O + o] = dY[i, j] of tile (th, tw), zero past OH or OW; ``t`` scratch for one tile
    row's A dY (24 TW O values). With ``nhwc``, dout is the (N, OH, OW, O) view of a ``channels_last`` gradient.

    A channels-last dout of 24 channels or more is read straight, as :func:`input_tiles` reads x
    (:func:`_rows_from_gradient`; ``yt`` then only holds a row of zeros): the tiles of a whole batch on one thread,
    copy against straight (Intel Xeon (Emerald Rapids)), 24 x 32 x 32 2.77 -> 2.28 ms, 32 x 16 x 16 0.87 -> 0.82,
    64 x 16 x 16 1.57 -> 1.42, 64 x 8 x 8 0.37 -> 0.32, 256 x 8 x 8 1.67 -> 1.48 ms."""
    O = image_dims(dout, nhwc)[0]
    L = _u(TW * O)
    P = _u(plane)
    k2, k4 = t.dtype.type(2), t.dtype.type(4)
    yf = yt.reshape(-1)
    straight = nhwc and O >= _FROM_IMAGE_CHANNELS  # as input_tiles: read dout itself, pass 1 in _rows_from_gradient
    if straight:  # dY's zero rows past OH, and t's columns past OW
        OW = dout.shape[2]
        _zero(yf, _u(0), _u(OW * O))
        zrow = yf[: OW * O]
        _zero(t, _u(0), _u(24) * L)
    else:
        zrow = yf[:0]
    for n in range(n0, n1):
        if not straight:
            image_copy(dout, nhwc, n, 0, 0, 4, 4 * TH, TW, yf, n == n0)
        for th in range(TH):
            if straight:
                _rows_from_gradient(dout, n, 4 * th, TW, zrow, t, k2, k4)
            else:
                y = _u(16 * th) * L  # the tile row's 4 rows of dout: yf[y + (4 i + j) L + tw O + o]
                # pass 1, A dY: per tile column j, its 4 rows combined into t[r, j] (6 runs of L)
                for j in range(4):
                    s = y + _u(j) * L  # dY[i, j] at y + (4 i + j) L
                    d = _u(j) * L  # t[r, j] at (4 r + j) L
                    for k in range(L):
                        _put6(
                            t, d + k, _u(4) * L,
                            _a(yf[s + k], yf[s + _u(4) * L + k], yf[s + _u(8) * L + k], yf[s + _u(12) * L + k], k2, k4),
                        )  # fmt: skip
            # pass 2, (.) A^T: per row r of A dY, its 4 columns combined into planes 6 r .. 6 r + 5 of dM
            dst = _u(((n - first) * TH + th) * TW * O)
            for r in range(6):
                s = _u(4 * r) * L
                m = _u(6 * r) * P + dst
                for k in range(L):
                    a0, a1, a2, a3, a4, a5 = _a(
                        t[s + k], t[s + L + k], t[s + _u(2) * L + k], t[s + _u(3) * L + k], k2, k4
                    )
                    dM[m + k] = a0
                    dM[m + P + k] = a1
                    dM[m + _u(2) * P + k] = a2
                    dM[m + _u(3) * P + k] = a3
                    dM[m + _u(4) * P + k] = a4
                    dM[m + _u(5) * P + k] = a5


@njit(inline="always")
def _gt(u0, u1, u2, u3, u4, u5):
    """G^T u for a column u of 6 values (3 values; G's columns above as rows): (u0 / 4 - (u1 + u2) / 6 +
    (u3 + u4) / 24, (u2 - u1) / 6 + (u3 - u4) / 12, (u3 + u4 - u1 - u2) / 6 + u5), in float64 as :func:`_g`."""
    u0, u1, u2, u3, u4, u5 = u0 + 0.0, u1 + 0.0, u2 + 0.0, u3 + 0.0, u4 + 0.0, u5 + 0.0  # float64
    s, d, e, f = u1 + u2, u2 - u1, u3 + u4, u3 - u4
    return u0 * 0.25 - s * _SIXTH + e * _TWENTYFOURTH, d * _SIXTH + f * _TWELFTH, (e - s) * _SIXTH + u5


@njit(inline="always")
def _gt_column(dU, P, u, j):
    """G^T u for column j of the tile u[i, j] = dU[(6 i + j) P + u]."""
    s = _u(j) * P + u
    return _gt(dU[s], dU[s + _u(6) * P], dU[s + _u(12) * P], dU[s + _u(18) * P], dU[s + _u(24) * P], dU[s + _u(30) * P])


@njit(cache=True, nogil=True)
def weight_gradient(dU, plane, c0, c1, dW):
    """dW[o, c] = G^T u G for input channels [c0, c1), u the 6 x 6 tile u[i, j] = dU[(6 i + j) plane + c O + o]
    (36 (C, O) planes, ``plane`` values apart, as :func:`transform_weight` writes U): its adjoint. Computed in float64
    (as :func:`transform_weight`), then stored in dW's dtype; the loop over o is the inner one (contiguous in every
    plane)."""
    O, C = dW.shape[0], dW.shape[1]
    P = _u(plane)
    df = dW.reshape(-1)
    for c in range(c0, c1):
        for o in range(O):
            u = _u(c * O + o)
            # G^T u, column by column: q_j = column j of the 3 x 6 result
            q0, q1, q2 = _gt_column(dU, P, u, 0), _gt_column(dU, P, u, 1), _gt_column(dU, P, u, 2)
            q3, q4, q5 = _gt_column(dU, P, u, 3), _gt_column(dU, P, u, 4), _gt_column(dU, P, u, 5)
            d = _u(9 * (o * C + c))  # dW[o, c]
            for i in range(3):  # then (.) G: row i of G^T u through G^T
                r = _gt(q0[i], q1[i], q2[i], q3[i], q4[i], q5[i])
                for j in range(3):
                    df[d + _u(3 * i + j)] = r[j]


# ---------------------------------------------------------------------------------------------------- one call a chunk
# A chunk's steps in one compiled call, the GEMMs by ``gemm`` (``_numba_blas.cblas_gemm``): no GIL between them.
@njit(cache=True, nogil=True)
def forward_chunk(
    gemm, x, nhwc, n0, n1, PH, PW, TH, TW, xt, t, V, v_plane, U, u_plane, M, m_plane, bias, has_bias, relu, relu_max,
    out, res, has_res, shift, s1, s2, has_sums, pre, has_pre,
):  # fmt: skip
    """A chunk of images [n0, n1) of the forward: :func:`input_tiles_of` x (with ``has_pre``, through the
    BatchNorm+ReLU ``pre``) into V, the 36 GEMMs M_xi = V_xi U_xi (U: 36 (C, O) planes, :func:`transform_weight`),
    :func:`output_tiles` from M into ``out`` (laid out as x; with ``has_sums``, its values also added to the shifted
    sums s1, s2)."""
    C, O = image_dims(x, nhwc)[0], image_dims(out, nhwc)[0]
    input_tiles_of(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, t, V, v_plane, pre, has_pre)
    gemm_planes(gemm, 36, False, (n1 - n0) * TH * TW, O, C, V, v_plane, U, u_plane, M, m_plane)
    output_tiles(
        M, m_plane, n0, n1, n0, TH, TW, bias, has_bias, relu, relu_max, t, out, nhwc, res, has_res, shift, s1, s2,
        has_sums,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def weight_gradient_chunk(
    gemm, x, nhwc, dout, dout_nhwc, n0, n1, PH, PW, TH, TW, xt, t, V, v_plane, yt, dM, m_plane, total, scratch, first,
    pre, has_pre,
):  # fmt: skip
    """A chunk of images [n0, n1) of the weight gradient: :func:`input_tiles_of` x (with ``has_pre``, through the
    BatchNorm+ReLU ``pre``, as the forward read it) into V,
    :func:`output_gradient_tiles` of dout into dM, then dU_xi = V_xi^T dM_xi into ``total`` (36 (C, O) matrices, the
    chunk's group's partial sum: written by the group's ``first`` chunk, added to by the others)."""
    C, O = image_dims(x, nhwc)[0], image_dims(dout, dout_nhwc)[0]
    input_tiles_of(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, t, V, v_plane, pre, has_pre)
    output_gradient_tiles(dout, dout_nhwc, n0, n1, n0, TH, TW, yt, t, dM, m_plane)
    gemm_planes_sum(gemm, 36, C, O, (n1 - n0) * TH * TW, V, v_plane, dM, m_plane, total, scratch, first)


# ---------------------------------------------------------------------------------------------------- a thread's chunks
# One call per thread and region (``_threads.parallel_loops``): the thread takes chunk numbers from the shared
# ``counter`` (:func:`~minidl.backend._numba_tasks.next_task`) and runs each chunk's kernel, with no Python between
# two chunks. Chunk k holds images [k nb, min(N, (k + 1) nb)); the scratch buffers are the thread's, sized for nb
# images. Each chunk computes what it computes in a task of its own (the same kernel on the same images), so the
# results are the same bits.
@njit(cache=True, nogil=True)
def filters_in_blocks(weight, blocks, sync, U, u_plane):
    """A thread's share of U: :func:`transform_weight` of ``weight`` by the blocks of input channels ``blocks``
    (n, 2), each taken once (counter sync[3]; sync[4] counts the blocks done, which the region's threads wait for
    before their chunks' GEMMs)."""
    b = atomic_add(sync, 3, 1)
    while b < blocks.shape[0]:
        transform_weight(weight, blocks[b, 0], blocks[b, 1], U, u_plane)
        atomic_add(sync, 4, 1)
        b = atomic_add(sync, 3, 1)


@njit(cache=True, nogil=True)
def forward_chunks(
    counter, N, nb, gemm, x, nhwc, PH, PW, TH, TW, xt, t, V, v_plane, U, u_plane, M, m_plane, bias, has_bias, relu,
    relu_max, out, res, has_res, shift, parts, has_sums, pre, has_pre,
):  # fmt: skip
    """:func:`forward_chunk` for each chunk this thread takes: its share of a forward. With ``has_sums``, chunk k's
    output values' shifted sums (``shift`` tiled to T values) go to parts[k] (2, O), folded to the channels
    (:func:`~minidl.backend._numba_kernels.fold_tiles`)."""
    chunks = (N + nb - 1) // nb
    O = image_dims(out, nhwc)[0]
    s1, s2 = np.empty(shift.size), np.empty(shift.size)
    k = next_task(counter)
    while k < chunks:
        n0 = k * nb
        s1[:] = 0.0
        s2[:] = 0.0
        forward_chunk(
            gemm, x, nhwc, n0, min(N, n0 + nb), PH, PW, TH, TW, xt, t, V, v_plane, U, u_plane, M, m_plane, bias,
            has_bias, relu, relu_max, out, res, has_res, shift, s1, s2, has_sums, pre, has_pre,
        )  # fmt: skip
        if has_sums:
            fold_tiles(s1, s2, O, parts[k])
        k = next_task(counter)


@njit(cache=True, nogil=True)
def weight_gradient_from_parts(parts, c0, c1, dU, plane, dW):
    """dW[:, c0:c1] from the chunks' partial sums ``parts`` (chunks, 36, C, O) of dU: for input channels [c0, c1)
    their sum in chunk order into dU's planes (``plane`` values apart), by
    :func:`~minidl.backend._numba_kernels.add_parts_in_order` (the backend's ``_add_in_order``: the same bits), then
    :func:`weight_gradient`."""
    K, C, O = parts.shape[0], parts.shape[2], parts.shape[3]
    flat = parts.reshape(K, -1)
    pad = plane - C * O  # plane i of dU starts i pad values further than in parts
    for i in range(36):
        add_parts_in_order(flat, (i * C + c0) * O, (i * C + c1) * O, dU[i * pad :])
    weight_gradient(dU, plane, c0, c1, dW)


@njit(cache=True, nogil=True)
def backward_chunks(
    counter, N, nb, gemm, dout, dout_nhwc, x, nhwc, PH, PW, U, u_plane, bias, relu_max, res, has_res, dx, DTH, DTW,
    xt_dx, t_dx, V_dx, v_dx_plane, M_dx, m_dx_plane, TH, TW, xt, t, V, v_plane, yt, dM, dm_plane, parts, sync, pre,
    has_pre,
):  # fmt: skip
    """For each chunk k this thread takes: its dx (:func:`forward_chunk` of dout with the flipped filters U and
    padding 2 - P, DTH x DTW tiles, scratch ``xt_dx``, ``t_dx``, ``V_dx``, ``M_dx``; with ``has_res``, plus ``res``,
    laid out as dx, in the output pass: another gradient of x, ``conv2d_backward``'s ``dx_add``; ``bias`` and
    ``relu_max`` are placeholders: no bias or activation), then its share of dW
    (:func:`weight_gradient_chunk`, TH x TW tiles, into its own partial sum ``parts[k]``). dW reads the chunk of dout
    that dx has just read, from the caches; the two steps may share scratch buffers (one runs after the other). With
    ``has_pre``, dW's input tiles are those of x through the BatchNorm+ReLU ``pre`` (the input the forward read).
    sync[0] counts the chunks done (dW's last steps, :func:`weight_gradient_blocks`, wait for all)."""
    chunks = (N + nb - 1) // nb
    unsummed = np.zeros(1)  # dx's output pass takes no sums (dx is no BatchNorm's input)
    k = next_task(counter)
    while k < chunks:
        n0, n1 = k * nb, min(N, (k + 1) * nb)
        forward_chunk(
            gemm, dout, dout_nhwc, n0, n1, 2 - PH, 2 - PW, DTH, DTW, xt_dx, t_dx, V_dx, v_dx_plane, U, u_plane, M_dx,
            m_dx_plane, bias, False, False, relu_max, dx, res, has_res, unsummed, unsummed, unsummed, False, pre, False,
        )  # fmt: skip
        weight_gradient_chunk(
            gemm, x, nhwc, dout, dout_nhwc, n0, n1, PH, PW, TH, TW, xt, t, V, v_plane, yt, dM, dm_plane, parts[k],
            parts[k], True, pre, has_pre,
        )  # fmt: skip
        atomic_add(sync, 0, 1)
        k = next_task(counter)


@njit(cache=True, nogil=True)
def weight_gradient_blocks(sync, parts, blocks, dU, du_plane, dW):
    """A thread's share of dW once every chunk of :func:`backward_chunks` is done: the blocks of input channels
    ``blocks`` (n, 2) it takes (counter sync[2]), each :func:`weight_gradient_from_parts`."""
    b = atomic_add(sync, 2, 1)
    while b < blocks.shape[0]:
        weight_gradient_from_parts(parts, blocks[b, 0], blocks[b, 1], dU, du_plane, dW)
        b = atomic_add(sync, 2, 1)
