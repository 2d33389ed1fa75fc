"""Loop-based naive references for convolution and pooling, written from the definitions only.

They share no code with minidl (no im2col, no backend kernels) and are slow on purpose: every output element is one
explicit sum or max over its window, so a reader can check them against the formulas. Inputs are host NumPy arrays.
"""

from __future__ import annotations

import math

import numpy as np


def conv2d_naive(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct 7-loop cross-correlation; ``padding`` is (top, bottom, left, right) of zeros."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = weight.shape
    SH, SW = stride
    DH, DW = dilation
    top, bottom, left, right = padding
    OH = (H + top + bottom - DH * (KH - 1) - 1) // SH + 1
    OW = (W + left + right - DW * (KW - 1) - 1) // SW + 1
    Og = O // groups
    out = np.zeros((N, O, OH, OW), dtype=np.float64)
    for n in range(N):
        for o in range(O):
            g = o // Og
            for i in range(OH):
                for j in range(OW):
                    total = 0.0 if bias is None else float(bias[o])
                    for c in range(Cg):
                        for p in range(KH):
                            for q in range(KW):
                                h = i * SH + p * DH - top
                                w = j * SW + q * DW - left
                                if 0 <= h < H and 0 <= w < W:
                                    total += weight[o, c, p, q] * x[n, g * Cg + c, h, w]
                    out[n, o, i, j] = total
    return out


def im2col_naive(x, KH, KW, SH, SW, PH, PW, DH, DW):
    """cols[(c, kh, kw), (n, oh, ow)] = x[n, c, oh SH + kh DH - PH, ow SW + kw DW - PW] (0 outside)."""
    N, C, H, W = x.shape
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    cols = np.zeros((C * KH * KW, N * OH * OW), dtype=x.dtype)
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                for n in range(N):
                    for i in range(OH):
                        for j in range(OW):
                            h, w = i * SH + kh * DH - PH, j * SW + kw * DW - PW
                            if 0 <= h < H and 0 <= w < W:
                                cols[row, (n * OH + i) * OW + j] = x[n, c, h, w]
    return cols


def pool_out_size(size, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's pooling output length, written with float floor/ceil."""
    exact = (size + 2 * padding - dilation * (kernel - 1) - 1) / stride
    out = (math.ceil(exact) if ceil_mode else math.floor(exact)) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def max_pool2d_naive(x, kernel, stride, padding, dilation, ceil_mode):
    """Returns (out, indices): the first maximum of each window (strict >) and its flat position h * W + w."""
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    OH = pool_out_size(H, KH, SH, PH, DH, ceil_mode)
    OW = pool_out_size(W, KW, SW, PW, DW, ceil_mode)
    out = np.full((N, C, OH, OW), -np.inf)
    indices = np.full((N, C, OH, OW), -1, dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    for p in range(KH):
                        for q in range(KW):
                            h, w = i * SH + p * DH - PH, j * SW + q * DW - PW
                            if 0 <= h < H and 0 <= w < W and x[n, c, h, w] > out[n, c, i, j]:
                                out[n, c, i, j] = x[n, c, h, w]
                                indices[n, c, i, j] = h * W + w
    return out, indices


def avg_pool2d_naive(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override=None):
    """PyTorch's average pooling: the window clipped to [-P, H + P) for the count with padding, to [0, H) without."""
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = kernel, stride, padding
    OH = pool_out_size(H, KH, SH, PH, 1, ceil_mode)
    OW = pool_out_size(W, KW, SW, PW, 1, ceil_mode)
    out = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    h0, w0 = i * SH - PH, j * SW - PW
                    h1, w1 = min(h0 + KH, H + PH), min(w0 + KW, W + PW)
                    padded_count = (h1 - h0) * (w1 - w0)
                    total, inside = 0.0, 0
                    for h in range(max(h0, 0), min(h1, H)):
                        for w in range(max(w0, 0), min(w1, W)):
                            total += x[n, c, h, w]
                            inside += 1
                    if divisor_override is not None:
                        divisor = divisor_override
                    else:
                        divisor = padded_count if count_include_pad else inside
                    out[n, c, i, j] = total / divisor
    return out


def adaptive_bins_naive(size, out_size):
    return [(math.floor(i * size / out_size), math.ceil((i + 1) * size / out_size)) for i in range(out_size)]


def adaptive_pool2d_naive(x, out_h, out_w, reduce):
    """reduce is "mean" or "max"; for "max" also returns the flat index of the first maximum."""
    N, C, H, W = x.shape
    out = np.zeros((N, C, out_h, out_w))
    indices = np.zeros((N, C, out_h, out_w), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i, (h0, h1) in enumerate(adaptive_bins_naive(H, out_h)):
                for j, (w0, w1) in enumerate(adaptive_bins_naive(W, out_w)):
                    best, where, total = -np.inf, -1, 0.0
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            total += x[n, c, h, w]
                            if x[n, c, h, w] > best:
                                best, where = x[n, c, h, w], h * W + w
                    out[n, c, i, j] = total / ((h1 - h0) * (w1 - w0)) if reduce == "mean" else best
                    indices[n, c, i, j] = where
    return (out, indices) if reduce == "max" else out
