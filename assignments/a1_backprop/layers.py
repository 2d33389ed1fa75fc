r"""Assignment 1: backpropagation by hand. A linear (affine) layer, ReLU, softmax cross-entropy, a two-layer net.

Every layer is a pair, as in minidl itself: ``<layer>_forward(...) -> (out, cache)`` and
``<layer>_backward(dout, cache) -> gradients``. The grader compares each with minidl's reference
(``minidl.testing.check_pair``) on many small random inputs in float64, then runs a numerical gradient check on
yours. Grade yourself with ``python -m minidl.assignments grade . --quick``.

Shapes: N samples, D input features, M outputs, C classes. Weights use PyTorch's layout: (out_features,
in_features), so a linear layer computes x @ W.T + b.

Do not change the signatures; write your code where ``raise NotImplementedError`` stands.
"""

from __future__ import annotations

import numpy as np


def linear_forward(x, weight, bias=None):
    """out = x @ weight.T + bias.

    Args:
        x: (N, D).  weight: (M, D).  bias: (M,) or None.

    Returns:
        ``(out, cache)``, out of shape (N, M).
    """
    # BEGIN SOLUTION
    out = x @ weight.T
    if bias is not None:
        out = out + bias
    return out, (x, weight, bias is not None)
    # END SOLUTION


def linear_backward(dout, cache):
    """Gradients of :func:`linear_forward`: ``(dx, dweight, dbias)`` (dbias None without a bias).

    dx = dout @ W (N, D);  dW = dout.T @ x (M, D);  db = dout summed over the batch (M,).
    """
    # BEGIN SOLUTION
    x, weight, has_bias = cache
    dx = dout @ weight
    dweight = dout.T @ x
    dbias = dout.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
    # END SOLUTION


def relu_forward(x):
    """out = max(x, 0), elementwise, any shape. Returns ``(out, cache)``."""
    # BEGIN SOLUTION
    mask = x > 0
    return x * mask, mask
    # END SOLUTION


def relu_backward(dout, cache):
    """Gradient of :func:`relu_forward`: dout where x > 0, else 0."""
    # BEGIN SOLUTION
    mask = cache
    return dout * mask
    # END SOLUTION


def softmax_cross_entropy_forward(logits, target, reduction="mean"):
    r"""Cross-entropy of softmax(logits) against integer class labels.

    loss_n = -log softmax(logits_n)[target_n] = logsumexp(logits_n) - logits_n[target_n]; the mean (or the sum,
    ``reduction="sum"``) over the batch. Subtract each row's maximum before exponentiating: the result is the same,
    and exp never overflows (the grader uses logits as large as 1000).

    Args:
        logits: (N, C).  target: (N,) integers in [0, C).  reduction: "mean" or "sum".

    Returns:
        ``(loss, cache)`` with loss a float.
    """
    # BEGIN SOLUTION
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = logits.shape[0]
    losses = -log_probs[np.arange(N), target]
    loss = losses.mean() if reduction == "mean" else losses.sum()
    return float(loss), (np.exp(log_probs), target, reduction)
    # END SOLUTION


def softmax_cross_entropy_backward(dout, cache):
    """Gradient of :func:`softmax_cross_entropy_forward` with respect to the logits: dout * (softmax - one_hot),
    divided by N for the mean. ``dout`` is a float (1.0 when the loss is the last step)."""
    # BEGIN SOLUTION
    probs, target, reduction = cache
    N = probs.shape[0]
    dlogits = probs.copy()
    dlogits[np.arange(N), target] -= 1
    if reduction == "mean":
        dlogits /= N
    return dlogits * dout
    # END SOLUTION


class TwoLayerNet:
    """linear (D -> H) - ReLU - linear (H -> C), trained with softmax cross-entropy.

    Attributes:
        params: ``{"W1": (H, D), "b1": (H,), "W2": (C, H), "b2": (C,)}``, weights N(0, std^2), biases 0.
    """

    def __init__(self, input_dim, hidden_dim, num_classes, std=1e-2, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": std * rng.standard_normal((hidden_dim, input_dim)),
            "b1": np.zeros(hidden_dim),
            "W2": std * rng.standard_normal((num_classes, hidden_dim)),
            "b2": np.zeros(num_classes),
        }

    def scores(self, x):
        """The class scores (N, C) of x (N, D)."""
        h, _ = relu_forward(linear_forward(x, self.params["W1"], self.params["b1"])[0])
        return linear_forward(h, self.params["W2"], self.params["b2"])[0]

    def loss(self, x, target):
        """The mean cross-entropy of the batch and the gradient of every parameter: ``(loss, grads)``, grads a dict
        with the keys of ``params``. Chain your pairs: forward through all four, then backward in reverse."""
        # BEGIN SOLUTION
        a, cache1 = linear_forward(x, self.params["W1"], self.params["b1"])
        h, cache_relu = relu_forward(a)
        s, cache2 = linear_forward(h, self.params["W2"], self.params["b2"])
        loss, cache_loss = softmax_cross_entropy_forward(s, target)
        ds = softmax_cross_entropy_backward(1.0, cache_loss)
        dh, dW2, db2 = linear_backward(ds, cache2)
        da = relu_backward(dh, cache_relu)
        _, dW1, db1 = linear_backward(da, cache1)
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
        # END SOLUTION
