r"""Winograd's minimal filtering F(2x2, 3x3): a 3 x 3 convolution (stride 1) with 2.25x fewer multiplications.

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). The output is cut into 2 x 2 tiles;
each needs a 4 x 4 tile ``d`` of the (zero padded) input. For one input channel and one output channel, with ``g``
the 3 x 3 filter,

.. math:: Y = A^T \big[ (G g G^T) \odot (B^T d B) \big] A

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

gives the 2 x 2 outputs of the tile: 16 multiplications instead of 4 * 9 = 36. Summed over input channels, the
elementwise product becomes 16 matrix products, one per position xi of the 4 x 4 tile:

.. math:: M_\xi = V_\xi U_\xi, \qquad V_\xi: (\text{tiles}, C), \quad U_\xi: (C, O), \quad M_\xi: (\text{tiles}, O)

with ``V = B^T d B`` of every tile and channel and ``U = G g G^T`` of every (input, output) channel pair. So a
convolution becomes: transform the input tiles (this file), 16 GEMMs (BLAS, in ``_numba_conv.py``), transform back
(this file). The weight gradient uses the same tiles (see the last section). For 16 channels, where an im2row GEMM
has only 16 output columns and runs far below the CPU's peak, this is about twice as fast.

Accuracy: the transforms only add, subtract and halve, so for finite inputs the result differs from a direct
convolution by a few roundings (float32: relative error around 1e-6; float64: 1e-15). An infinite input differs
more: the transforms subtract neighbouring values, so an inf turns its tiles' outputs into NaN (inf - inf) where a
direct convolution gives +-inf (either way the output is no longer finite, and a NaN still propagates).

Layouts: the input is copied channels-last into a zero-padded scratch image ``xt`` (Hp, Wp, C), so every tile is in
bounds and every transform loops over contiguous channels (which LLVM vectorizes). Tiles of a chunk of images
[n0, n1) are numbered t = ((n - n0) TH + th) TW + tw, with TH = ceil(OH / 2) and TW = ceil(OW / 2) tiles per column
and row (from image ``first`` = 0 instead of n0 when one array holds the whole batch's tiles); ``V`` is 16 (T, C)
planes, ``M`` 16 (T, O) planes, and ``U`` 16 (C, O) planes. The kernels take each as a flat array and the distance
``plane`` between two planes, which the caller makes a little more than a plane's size: a transform reads or writes
4 to 16 planes in one loop, and at a power-of-two distance all those streams fall in the same cache sets (see
``_numba_winograd_conv.WinogradKernelsMixin._wino_planes``). Kernels follow the conventions of
``_numba_kernels.py`` (serial, ``nogil``, unsigned flat indices).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minidl.backend._numba_blas import gemm_planes, gemm_planes_sum
from minidl.backend._numba_kernels import _u, image_copy, image_dims, tile_row_out

# the rows of B^T d as d[p] + sign d[q]: (p, q, sign) for rows 0..3
_ROWS_BT = ((0, 2, -1.0), (1, 2, 1.0), (2, 1, -1.0), (1, 3, -1.0))
# G of F(2x2, 3x3): U = G g G^T turns a 3 x 3 filter into the 4 x 4 tile of weights
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


@njit(inline="always")
def _g(r0, r1, r2, half):
    """G r for a column r of 3 values: (r0, (r0 + r1 + r2) / 2, (r0 - r1 + r2) / 2, r2)."""
    return r0, (r0 + r1 + r2) * half, (r0 - r1 + r2) * half, r2


@njit(cache=True, nogil=True)
def transform_weight(weight, c0, c1, U, plane):
    """U[(4 i + j) plane + c O + o] = (G weight[o, c] G^T)[i, j] for input channels [c0, c1) of a (O, C, 3, 3)
    weight: U holds 16 (C, O) planes, ``plane`` values apart, the GEMMs' right-hand sides. The loop over o is the
    inner one (each plane written contiguously)."""
    O, C = weight.shape[0], weight.shape[1]
    half = U.dtype.type(0.5)
    wf, P = weight.reshape(-1), _u(plane)
    for c in range(c0, c1):
        for o in range(O):
            u = _u(c * O + o)
            s = _u(9 * (o * C + c))  # weight[o, c]
            # G g: column j of g (values s + j, s + 3 + j, s + 6 + j) gives column j of the 4 x 3 result
            a0, b0, c0_, d0 = _g(wf[s], wf[s + _u(3)], wf[s + _u(6)], half)
            a1, b1, c1_, d1 = _g(wf[s + _u(1)], wf[s + _u(4)], wf[s + _u(7)], half)
            a2, b2, c2_, d2 = _g(wf[s + _u(2)], wf[s + _u(5)], wf[s + _u(8)], half)
            # then (.) G^T: the same on each row (a, b, c, d) of G g, into planes 4 i .. 4 i + 3
            U[u], U[P + u], U[_u(2) * P + u], U[_u(3) * P + u] = _g(a0, a1, a2, half)
            U[_u(4) * P + u], U[_u(5) * P + u], U[_u(6) * P + u], U[_u(7) * P + u] = _g(b0, b1, b2, half)
            U[_u(8) * P + u], U[_u(9) * P + u], U[_u(10) * P + u], U[_u(11) * P + u] = _g(c0_, c1_, c2_, half)
            U[_u(12) * P + u], U[_u(13) * P + u], U[_u(14) * P + u], U[_u(15) * P + u] = _g(d0, d1, d2, half)


@njit(cache=True, nogil=True)
def input_tiles(x, nhwc, n0, n1, first, PH, PW, TH, TW, xt, V, plane):
    """V[4 i + j, t, c] = (B^T d B)[i, j] for every tile t = ((n - first) TH + th) TW + tw of images n in [n0, n1)
    of x (N, C, H, W) and channel c (``first``: the image whose tiles start V, n0 for a chunk's own V), d the 4 x 4
    input tile at rows 2 th - PH + (0..3), columns 2 tw - PW + (0..3) (zero outside x). With ``nhwc``, x is the
    (N, H, W, C) view of a ``channels_last`` input.

    ``xt`` is scratch for one zero-padded image, (2 TH + 2) 2 (TW + 1) C values, in the layout
    xt[row, column % 2, column // 2, c]: the even and odd columns apart, channels last. Then a tile's column
    2 tw + j sits at (j % 2, tw + j // 2), so along one tile row the values every tile needs are ``tw C + c`` away
    from those of tile 0: each loop below runs over the TW C values of a whole tile row (long enough for LLVM to
    vectorize; a loop over 16 channels alone is not)."""
    C = image_dims(x, nhwc)[0]
    Wh = TW + 1
    Hp = 2 * TH + 2
    L = _u(TW * C)
    tf = xt.reshape(-1)  # V[xi plane + t C + c]
    for n in range(n0, n1):
        image_copy(x, nhwc, n, PH, PW, 2, Hp, Wh, tf, n == n0)
        for th in range(TH):
            dst = _u(((n - first) * TH + th) * TW * C)  # V offset of the row's first tile
            for i in range(4):
                # row i of B^T d is d[p] + sign d[q]: d0 - d2, d1 + d2, d2 - d1, d1 - d3 (one loop per row: with
                # all 16 outputs in one loop, LLVM finds too many arrays to check for overlap and does not vectorize)
                p, q, sign = _ROWS_BT[i]
                sg = tf.dtype.type(sign)
                # columns 0, 1, 2, 3 of the tile = (parity 0, +0), (1, +0), (0, +1), (1, +1)
                p0, q0 = _u(((2 * th + p) * 2) * Wh * C), _u(((2 * th + q) * 2) * Wh * C)
                p1, q1 = p0 + _u(Wh * C), q0 + _u(Wh * C)
                p2, q2 = p0 + _u(C), q0 + _u(C)
                p3, q3 = p1 + _u(C), q1 + _u(C)
                v0 = _u(4 * i * plane) + dst  # planes 4 i .. 4 i + 3
                v1, v2, v3 = v0 + _u(plane), v0 + _u(2 * plane), v0 + _u(3 * plane)
                for k in range(L):
                    b0 = tf[p0 + k] + sg * tf[q0 + k]
                    b1 = tf[p1 + k] + sg * tf[q1 + k]
                    b2 = tf[p2 + k] + sg * tf[q2 + k]
                    b3 = tf[p3 + k] + sg * tf[q3 + k]
                    V[v0 + k] = b0 - b2  # then (.) B: the same combinations of the row's 4 values
                    V[v1 + k] = b1 + b2
                    V[v2 + k] = b2 - b1
                    V[v3 + k] = b1 - b3


@njit(cache=True, nogil=True)
def output_tiles(M, plane, n0, n1, first, TH, TW, bias, has_bias, relu, relu_max, yt, out, nhwc, res, has_res):
    """out[n, o, 2 th + i, 2 tw + j] = (A^T m A)[i, j] (+ bias[o]; + res[n, o, 2 th + i, 2 tw + j] with ``has_res``,
    ``res`` laid out as ``out``; then min(relu, relu_max) with ``relu``) for
    images [n0, n1), m the 4 x 4 tile of output tile t = ((n - first) TH + th) TW + tw and channel o (m[i, j] =
    M[(4 i + j) plane + t O + o]); a last tile sticking out of an odd OH or OW is cut.

    ``yt`` is scratch for one output row, (2, TW O) values: yt[j, tw O + o], filled by loops over tw O + o (long,
    vectorized), then copied into the (N, O, OH, OW) output (with ``nhwc``, ``out`` is the (N, OH, OW, O) view of a
    ``channels_last`` output)."""
    O, OH, OW = image_dims(out, nhwc)
    L = _u(TW * O)
    yf, of, rf = yt.reshape(-1), out.reshape(-1), res.reshape(-1)  # M[xi plane + t O + o]
    for n in range(n0, n1):
        for th in range(TH):
            src = _u(((n - first) * TH + th) * TW * O)
            for i in range(min(2, OH - 2 * th)):
                # row i of A^T m: m_row0 + m_row1 + m_row2 (i = 0) or m_row1 - m_row2 - m_row3 (i = 1), as
                # r0 + s1 r1 + s2 r2 over rows (r0, r1, r2) = (0, 1, 2) or (1, 2, 3)
                r0, r1, r2 = _u(4 * i * plane) + src, _u(4 * (i + 1) * plane) + src, _u(4 * (i + 2) * plane) + src
                c1, c2, c3 = _u(plane), _u(2 * plane), _u(3 * plane)  # columns 1, 2, 3 of a tile row's planes
                s = M.dtype.type(1 - 2 * i)
                for k in range(L):
                    a0 = M[r0 + k] + s * (M[r1 + k] + M[r2 + k])
                    a1 = M[r0 + c1 + k] + s * (M[r1 + c1 + k] + M[r2 + c1 + k])
                    a2 = M[r0 + c2 + k] + s * (M[r1 + c2 + k] + M[r2 + c2 + k])
                    a3 = M[r0 + c3 + k] + s * (M[r1 + c3 + k] + M[r2 + c3 + k])
                    yf[k] = a0 + a1 + a2  # then (.) A: columns 0 + 1 + 2 and 1 - 2 - 3
                    yf[L + k] = a1 - a2 - a3
                # yt[j, tw O + o] -> out[n, o, 2 th + i, 2 tw + j]
                tile_row_out(
                    yf, _u(0), 2, TW, n, 2 * th + i, bias, has_bias, relu, relu_max, of, O, OH, OW, nhwc, rf, has_res
                )


# ---------------------------------------------------------------------------------------------------- weight gradient
# The forward is M = V U per tile position xi, Y = A^T m A per tile. Its adjoint with respect to U gives the weight
# gradient with the same transforms: dm = A dY A^T per tile (dY the tile's 2 x 2 output gradient), dU_xi = V_xi^T dM_xi
# (a GEMM per xi, summed over the tiles), then dW = G^T dU G per filter (the adjoint of U = G g G^T): 2.25x fewer
# multiplications than dW = dout @ im2row(x), and no patch matrix.
@njit(cache=True, nogil=True)
def output_gradient_tiles(dout, nhwc, n0, n1, first, TH, TW, yt, dM, plane):
    """dM[4 i + j, t, o] = (A dY A^T)[i, j] for every output tile t (numbered as in :func:`input_tiles`) of images
    [n0, n1) of dout (N, O, OH, OW), dY its
    2 x 2 gradient (zero past an odd OH or OW), A = [[1, 0], [1, 1], [1, -1], [0, -1]].

    ``yt`` is scratch for one image of dout, (2 TH, 2, TW O) values
    (:func:`~minidl.backend._numba_kernels.padded_image`, no padding): yt[2 th + i, j, tw O + o] =
    dout[n, o, 2 th + i, 2 tw + j], zero past OH or OW; so each loop below runs over the TW O values of a tile row
    (vectorized). With ``nhwc``, dout is the (N, OH, OW, O) view of a ``channels_last`` gradient."""
    O = image_dims(dout, nhwc)[0]
    L = _u(TW * O)
    yf = yt.reshape(-1)
    for n in range(n0, n1):
        image_copy(dout, nhwc, n, 0, 0, 2, 2 * TH, TW, yf, n == n0)
        for th in range(TH):
            y = _u(4 * th) * L  # the tile row's 2 rows of dout: yf[y + (2 i + j) L + tw O + o]
            dst = _u(((n - first) * TH + th) * TW * O)
            for i in range(4):
                # row i of A dY: y0 (i = 0), y0 + y1, y0 - y1, -y1 (i = 3), each a row of 2: a y0 + b y1
                a = yt.dtype.type(1 if i < 3 else 0)
                b = yt.dtype.type((0, 1, -1, -1)[i])
                m0 = _u(4 * i * plane) + dst  # planes 4 i .. 4 i + 3
                m1, m2, m3 = m0 + _u(plane), m0 + _u(2 * plane), m0 + _u(3 * plane)
                for k in range(L):
                    r0 = a * yf[y + k] + b * yf[y + _u(2) * L + k]  # column 0 of the row (dY[0, 0], dY[1, 0] combined)
                    r1 = a * yf[y + L + k] + b * yf[y + _u(3) * L + k]  # column 1
                    dM[m0 + k] = r0  # then (.) A^T: r0, r0 + r1, r0 - r1, -r1
                    dM[m1 + k] = r0 + r1
                    dM[m2 + k] = r0 - r1
                    dM[m3 + k] = -r1


@njit(inline="always")
def _gt(u0, u1, u2, u3, half):
    """G^T u for a column u of 4 values: (u0 + (u1 + u2) / 2, (u1 - u2) / 2, (u1 + u2) / 2 + u3)."""
    return u0 + (u1 + u2) * half, (u1 - u2) * half, (u1 + u2) * half + u3


@njit(cache=True, nogil=True)
def weight_gradient(dU, plane, c0, c1, dW):
    """dW[o, c] = G^T u G for input channels [c0, c1), u the 4 x 4 tile u[i, j] = dU[(4 i + j) plane + c O + o]
    (16 (C, O) planes, ``plane`` values apart, as :func:`transform_weight` writes U): its adjoint. The loop over o
    is the inner one (contiguous in every plane)."""
    O, C = dW.shape[0], dW.shape[1]
    half = dW.dtype.type(0.5)
    P = _u(plane)
    df = dW.reshape(-1)
    for c in range(c0, c1):
        for o in range(O):
            u = _u(c * O + o)
            # G^T u: column j of u (planes j, 4 + j, 8 + j, 12 + j) gives column j of the 3 x 4 result
            a0, b0, e0 = _gt(dU[u], dU[_u(4) * P + u], dU[_u(8) * P + u], dU[_u(12) * P + u], half)
            a1, b1, e1 = _gt(dU[P + u], dU[_u(5) * P + u], dU[_u(9) * P + u], dU[_u(13) * P + u], half)
            a2, b2, e2 = _gt(dU[_u(2) * P + u], dU[_u(6) * P + u], dU[_u(10) * P + u], dU[_u(14) * P + u], half)
            a3, b3, e3 = _gt(dU[_u(3) * P + u], dU[_u(7) * P + u], dU[_u(11) * P + u], dU[_u(15) * P + u], half)
            d = _u(9 * (o * C + c))  # dW[o, c]; then (.) G: the same on each row (a, b, e) of G^T u
            df[d], df[d + _u(1)], df[d + _u(2)] = _gt(a0, a1, a2, a3, half)
            df[d + _u(3)], df[d + _u(4)], df[d + _u(5)] = _gt(b0, b1, b2, b3, half)
            df[d + _u(6)], df[d + _u(7)], df[d + _u(8)] = _gt(e0, e1, e2, e3, half)


# ---------------------------------------------------------------------------------------------------- one call a chunk
# A chunk's steps in one compiled call, the GEMMs by ``gemm`` (``_numba_blas.cblas_gemm``): no GIL between them.
@njit(cache=True, nogil=True)
def forward_chunk(
    gemm, x, nhwc, n0, n1, PH, PW, TH, TW, xt, V, v_plane, U, u_plane, M, m_plane, bias, has_bias, relu, relu_max, yt,
    out, res, has_res,
):  # fmt: skip
    """A chunk of images [n0, n1) of the forward: :func:`input_tiles` into V, the 16 GEMMs M_xi = V_xi U_xi
    (U: 16 (C, O) planes, :func:`transform_weight`), :func:`output_tiles` from M into ``out`` (laid out as x)."""
    C, O = image_dims(x, nhwc)[0], image_dims(out, nhwc)[0]
    input_tiles(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, V, v_plane)
    gemm_planes(gemm, 16, False, (n1 - n0) * TH * TW, O, C, V, v_plane, U, u_plane, M, m_plane)
    output_tiles(M, m_plane, n0, n1, n0, TH, TW, bias, has_bias, relu, relu_max, yt, out, nhwc, res, has_res)


@njit(cache=True, nogil=True)
def weight_gradient_chunk(
    gemm, x, nhwc, dout, dout_nhwc, n0, n1, PH, PW, TH, TW, xt, V, v_plane, yt, dM, m_plane, total, scratch, first,
):  # fmt: skip
    """A chunk of images [n0, n1) of the weight gradient: :func:`input_tiles` of x into V,
    :func:`output_gradient_tiles` of dout into dM, then dU_xi = V_xi^T dM_xi into ``total`` (16 (C, O) matrices, the
    chunk's group's partial sum: written by the group's ``first`` chunk, added to by the others)."""
    C, O = image_dims(x, nhwc)[0], image_dims(dout, dout_nhwc)[0]
    input_tiles(x, nhwc, n0, n1, n0, PH, PW, TH, TW, xt, V, v_plane)
    output_gradient_tiles(dout, dout_nhwc, n0, n1, n0, TH, TW, yt, dM, m_plane)
    gemm_planes_sum(gemm, 16, C, O, (n1 - n0) * TH * TW, V, v_plane, dM, m_plane, total, scratch, first)
