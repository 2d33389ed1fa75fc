r"""Assignment 2: the layers of a convolutional network, forward and backward, in NumPy.

Every layer is a pair, as in minidl itself: ``<layer>_forward(x, ...) -> (out, cache)`` keeps in ``cache`` what the
backward needs, and ``<layer>_backward(dout, cache)`` returns the gradient of the loss with respect to each input.
The grader compares your functions with minidl's reference (``minidl.testing.check_pair``) on many small random
configurations, float64, then runs a numerical gradient check on yours. Run it yourself at any time::

    python -m minidl.assignments grade . --quick

Notation: N images, C input channels, H x W input, O output channels (filters), KH x KW kernel, stride S, zero
padding P on every side, OH x OW output, OH = (H + 2 P - KH) // S + 1 (likewise OW).

Do not change the signatures; write your code where ``raise NotImplementedError`` stands.
"""

from __future__ import annotations

import numpy as np

import minidl


# ------------------------------------------------------------------------------------ 1. convolution, with loops
def conv_forward_naive(x, weight, bias=None, stride=1, padding=0):
    """Convolution (cross-correlation, as in every deep-learning framework) with explicit loops.

    out[n, o, i, j] = bias[o] + sum over c, p, q of weight[o, c, p, q] * xpad[n, c, i S + p, j S + q]

    Args:
        x: (N, C, H, W).
        weight: (O, C, KH, KW).
        bias: (O,) or None.
        stride, padding: ints S and P.

    Returns:
        ``(out, cache)`` with out of shape (N, O, OH, OW).
    """
    # BEGIN SOLUTION
    N, C, H, W = x.shape
    O, _, KH, KW = weight.shape
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    out = np.zeros((N, O, OH, OW), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    window = x_padded[n, :, i * stride : i * stride + KH, j * stride : j * stride + KW]
                    out[n, o, i, j] = np.sum(window * weight[o])
            if bias is not None:
                out[n, o] += bias[o]
    return out, (x, weight, bias is not None, stride, padding)
    # END SOLUTION


def conv_backward_naive(dout, cache):
    """Gradients of :func:`conv_forward_naive`, with loops.

    Each output element out[n, o, i, j] touched one window of the padded input and all of weight[o]: send
    dout[n, o, i, j] back to both. Crop the padding off the input gradient at the end.

    Returns:
        ``(dx, dweight, dbias)``; dbias is None when the forward had no bias.
    """
    # BEGIN SOLUTION
    x, weight, has_bias, stride, padding = cache
    N, C, H, W = x.shape
    O, _, KH, KW = weight.shape
    _, _, OH, OW = dout.shape
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dx_padded = np.zeros_like(x_padded)
    dweight = np.zeros_like(weight)
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    rows = slice(i * stride, i * stride + KH)
                    cols = slice(j * stride, j * stride + KW)
                    dweight[o] += dout[n, o, i, j] * x_padded[n, :, rows, cols]
                    dx_padded[n, :, rows, cols] += dout[n, o, i, j] * weight[o]
    dx = dx_padded[:, :, padding : padding + H, padding : padding + W]
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
    # END SOLUTION


# ------------------------------------------------------------------------------------ 2. convolution as a GEMM
def im2col(x, KH, KW, stride, padding):
    """Unfold every KH x KW window of the padded input into a column.

    Returns:
        cols of shape (C KH KW, N OH OW): row (c, kh, kw) (row-major order: c * KH * KW + kh * KW + kw), column
        (n, i, j) (n * OH * OW + i * OW + j) holds xpad[n, c, i S + kh, j S + kw]. Loop over (kh, kw) only and
        slice with a step of S: KH * KW array operations instead of N * OH * OW.
    """
    # BEGIN SOLUTION
    N, C, H, W = x.shape
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            patch = x_padded[:, :, kh : kh + stride * OH : stride, kw : kw + stride * OW : stride]
            cols[:, kh, kw] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(C * KH * KW, N * OH * OW)
    # END SOLUTION


def col2im(cols, x_shape, KH, KW, stride, padding):
    """The adjoint of :func:`im2col`: add every column back onto the window it came from (windows overlap when
    S < K, so values add up), then crop the padding. Returns an array of shape ``x_shape``."""
    # BEGIN SOLUTION
    N, C, H, W = x_shape
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    cols = cols.reshape(C, KH, KW, N, OH, OW)
    dx_padded = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    for kh in range(KH):
        for kw in range(KW):
            rows, columns = slice(kh, kh + stride * OH, stride), slice(kw, kw + stride * OW, stride)
            dx_padded[:, :, rows, columns] += cols[:, kh, kw].transpose(1, 0, 2, 3)
    return dx_padded[:, :, padding : padding + H, padding : padding + W]
    # END SOLUTION


def conv_forward_im2col(x, weight, bias=None, stride=1, padding=0):
    """The same convolution as one matrix product: out_col = weight.reshape(O, C KH KW) @ im2col(x)."""
    # BEGIN SOLUTION
    N = x.shape[0]
    O, C, KH, KW = weight.shape
    cols = im2col(x, KH, KW, stride, padding)
    OH = (x.shape[2] + 2 * padding - KH) // stride + 1
    OW = (x.shape[3] + 2 * padding - KW) // stride + 1
    out_col = weight.reshape(O, C * KH * KW) @ cols
    if bias is not None:
        out_col += bias[:, None]
    out = out_col.reshape(O, N, OH, OW).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(out), (cols, weight, bias is not None, x.shape, stride, padding)
    # END SOLUTION


def conv_backward_im2col(dout, cache):
    """Gradients of :func:`conv_forward_im2col`: dweight = dout_col @ cols^T, dcols = W_col^T @ dout_col, dx =
    col2im(dcols). Returns ``(dx, dweight, dbias)``."""
    # BEGIN SOLUTION
    cols, weight, has_bias, x_shape, stride, padding = cache
    O, C, KH, KW = weight.shape
    dout_col = dout.transpose(1, 0, 2, 3).reshape(O, -1)
    dweight = (dout_col @ cols.T).reshape(weight.shape)
    dcols = weight.reshape(O, -1).T @ dout_col
    dx = col2im(dcols, x_shape, KH, KW, stride, padding)
    grad_bias = dout_col.sum(axis=1) if has_bias else None
    return dx, dweight, grad_bias
    # END SOLUTION


# ----------------------------------------------------------------------------------------------------- 3. pooling
def max_pool_forward(x, kernel_size, stride=None):
    """Max over each kernel_size x kernel_size window (no padding); stride None means stride = kernel_size.

    Returns ``(out, cache)``, out of shape (N, C, OH, OW), OH = (H - K) // S + 1.
    """
    # BEGIN SOLUTION
    K, S = kernel_size, kernel_size if stride is None else stride
    N, C, H, W = x.shape
    OH, OW = (H - K) // S + 1, (W - K) // S + 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            out[:, :, i, j] = x[:, :, i * S : i * S + K, j * S : j * S + K].max(axis=(2, 3))
    return out, (x, K, S)
    # END SOLUTION


def max_pool_backward(dout, cache):
    """Gradient of :func:`max_pool_forward`: each dout goes to the position of its window's maximum only; when
    several values tie for the maximum, to the first of them (row by row), as in minidl and PyTorch."""
    # BEGIN SOLUTION
    x, K, S = cache
    N, C, _, _ = x.shape
    dx = np.zeros_like(x)
    n, c = np.indices((N, C))
    _, _, OH, OW = dout.shape
    for i in range(OH):
        for j in range(OW):
            window = x[:, :, i * S : i * S + K, j * S : j * S + K].reshape(N, C, K * K)
            first = window.argmax(axis=2)  # (N, C): the flat position of the first maximum in each window
            p, q = np.divmod(first, K)
            dx[n, c, i * S + p, j * S + q] += dout[:, :, i, j]
    return dx
    # END SOLUTION


def avg_pool_forward(x, kernel_size, stride=None):
    """Mean over each kernel_size x kernel_size window (no padding); stride None means stride = kernel_size."""
    # BEGIN SOLUTION
    K, S = kernel_size, kernel_size if stride is None else stride
    N, C, H, W = x.shape
    OH, OW = (H - K) // S + 1, (W - K) // S + 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            out[:, :, i, j] = x[:, :, i * S : i * S + K, j * S : j * S + K].sum(axis=(2, 3)) / (K * K)
    return out, (x.shape, K, S)
    # END SOLUTION


def avg_pool_backward(dout, cache):
    """Gradient of :func:`avg_pool_forward`: each window's cells receive dout / K^2; overlapping windows add."""
    # BEGIN SOLUTION
    x_shape, K, S = cache
    dx = np.zeros(x_shape, dtype=dout.dtype)
    _, _, OH, OW = dout.shape
    for i in range(OH):
        for j in range(OW):
            dx[:, :, i * S : i * S + K, j * S : j * S + K] += dout[:, :, i, j][:, :, None, None] / (K * K)
    return dx
    # END SOLUTION


# ------------------------------------------------------------------------------------------------ 4. batch norm
def batchnorm_forward(x, running_mean, running_var, gamma, beta, training=False, momentum=0.1, eps=1e-5):
    r"""Spatial batch normalization of x (N, C, H, W): statistics per channel over the M = N H W values.

    Training: normalize with the batch mean and the *biased* variance (divide by M), and update the running
    statistics in place (``running_mean[...] = ...``) with the *unbiased* variance (divide by M - 1), as PyTorch:
    running = (1 - momentum) running + momentum batch_statistic. Eval: normalize with the running statistics and
    leave them alone. Then out = gamma xhat + beta (gamma, beta of shape (C,)).
    """
    # BEGIN SOLUTION
    C = x.shape[1]
    M = x.size // C
    if training:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        running_var[...] = (1 - momentum) * running_var + momentum * var * M / (M - 1)
    else:
        mean, var = running_mean, running_var
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]
    out = gamma[None, :, None, None] * xhat + beta[None, :, None, None]
    return out, (xhat, inv_std, gamma, training)
    # END SOLUTION


def batchnorm_backward(dout, cache):
    """Gradients of :func:`batchnorm_forward`: ``(dx, dgamma, dbeta)``.

    Training: dx = (1/M) gamma inv_std (M dout - sum(dout) - xhat sum(dout xhat)), sums over (N, H, W) per channel.
    Eval: the statistics are constants, so dx = dout gamma inv_std.
    """
    # BEGIN SOLUTION
    xhat, inv_std, gamma, training = cache
    axes = (0, 2, 3)
    M = dout.size // dout.shape[1]
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dxhat = dout * gamma[None, :, None, None]
    scale = inv_std[None, :, None, None]
    if training:
        sum_dxhat = dxhat.sum(axis=axes, keepdims=True)
        sum_dxhat_xhat = (dxhat * xhat).sum(axis=axes, keepdims=True)
        dx = scale / M * (M * dxhat - sum_dxhat - xhat * sum_dxhat_xhat)
    else:
        dx = dxhat * scale
    return dx, dgamma, dbeta
    # END SOLUTION


# ---------------------------------------------------------------------------------------------------- 5. dropout
def dropout_forward(x, p=0.5, training=True):
    """Inverted dropout: drop each value with probability p, scale the kept ones by 1 / (1 - p); the identity when
    not training or p = 0. Draw the mask with minidl's generator, ``minidl.default_generator().random(x.shape)``,
    so that ``minidl.manual_seed`` makes it reproducible."""
    # BEGIN SOLUTION
    if not training or p == 0:
        return x, (None, p)
    mask = minidl.default_generator().random(x.shape) >= p
    out = x * mask / (1 - p)
    return out, (mask, p)
    # END SOLUTION


def dropout_backward(dout, cache):
    """Gradient of :func:`dropout_forward`: the same mask, the same scale."""
    # BEGIN SOLUTION
    mask, p = cache
    if mask is None:
        return dout
    return dout * mask / (1 - p)
    # END SOLUTION
