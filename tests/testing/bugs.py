"""Planted bugs: pairs that each get one thing wrong, built on the reference pairs (minidl.nn.functional)."""

from __future__ import annotations

import numpy as np

from minidl.nn import functional as F


def conv_wrong_padding_forward(x, weight, bias=None, stride=1, padding=0):
    """Pads one more than asked: the output is wrong, but its backward (the reference's) is self-consistent."""
    return F.conv2d_forward(x, weight, bias, stride, padding + 1)


def conv_no_bias_grad_backward(dout, cache):
    dx, dw, db = F.conv2d_backward(dout, cache)
    return dx, dw, None if db is None else np.zeros_like(db)


def linear_transposed_weight_grad_backward(dout, cache):
    dx, dw, db = F.linear_backward(dout, cache)
    return dx, dw.T, db


def relu_wrong_mask_backward(dout, cache):
    return dout * (~cache.mask)


def max_pool_all_window_backward(dout, cache):
    """Routes each gradient to every element of its window, as average pooling with divisor 1 would."""
    g = cache.geometry
    _, cache_avg = F.avg_pool2d_forward(np.zeros(cache.x_shape), (g.KH, g.KW), (g.SH, g.SW), (g.PH, g.PW),
                                        divisor_override=1)  # fmt: skip
    return F.avg_pool2d_backward(dout, cache_avg)


def softmax_ce_no_shift_forward(logits, target, reduction="mean"):
    """Exponentiates the raw logits: right for small ones, inf/nan for large ones."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(logits)
        p = e / e.sum(axis=1, keepdims=True)
        losses = -np.log(p[np.arange(len(target)), target])
    loss = losses.mean() if reduction == "mean" else losses.sum()
    return loss, (p, target, reduction)


def softmax_ce_backward(dout, cache):
    p, target, reduction = cache
    d = p.copy()
    d[np.arange(len(target)), target] -= 1
    return d * dout / (len(target) if reduction == "mean" else 1)


def dropout_not_rescaled_forward(x, p=0.5, training=True):
    out, cache = F.dropout_forward(x, p, training)
    if cache.mask is None:
        return out, cache
    return x * cache.mask, cache._replace(scale=1.0)


def batch_norm_biased_running_var_forward(x, running_mean, running_var, weight=None, bias=None, training=False,
                                          momentum=0.1, eps=1e-5):  # fmt: skip
    """Updates running_var with the biased batch variance (PyTorch uses the unbiased one)."""
    saved = None if running_var is None else running_var.copy()
    out, cache = F.batch_norm_forward(x, running_mean, running_var, weight, bias, training, momentum, eps)
    if training and saved is not None:
        running_var[...] = (1 - momentum) * saved + momentum * x.var(axis=(0, 2, 3))
    return out, cache
