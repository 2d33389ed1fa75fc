"""Checks shared by the loss tests: PyTorch's loss and input gradient, and a gradient check of a loss module."""

from __future__ import annotations

import numpy as np

import minidl
from minidl import gradcheck
from tests.helpers import arr, assert_close, host, to_torch


def torch_loss_and_grad(torch, fn, logits_np, dout_np, reduction):
    t = to_torch(logits_np, requires_grad=True)
    out = fn(t)
    out.backward(torch.tensor(np.asarray(dout_np, dtype=np.float64)).reshape(out.shape))
    return out, t.grad


def check_loss_module(module, x_np, target, reduction, seed):
    """Gradient check of a loss module: check_loss for a scalar loss; for 'none', L = sum(loss * dout)."""
    if reduction != "none":
        gradcheck.check_loss(module, arr(x_np), target)
        return
    x = arr(x_np.copy())
    dout = arr(np.random.default_rng(seed).standard_normal(module(x, target).shape))
    analytic = host(module.backward(dout))

    def scalar():
        with minidl.no_grad():
            return float((host(module(x, target)) * host(dout)).sum())

    numeric = host(gradcheck.numerical_gradient(scalar, x))
    assert_close(analytic, numeric, atol=1e-6, rtol=1e-4, what=f"{type(module).__name__} reduction='none'")
