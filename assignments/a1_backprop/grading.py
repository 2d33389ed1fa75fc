"""Assignment 1's graded checks (100 points) and its planted bugs.

Each pair is compared with minidl's reference by :func:`minidl.testing.check_pair` (a forward alone with
``candidate_backward=None``; a backward together with its forward, whose cache it reads). TwoLayerNet.loss is
compared with the same network computed by minidl's reference pairs.
"""

from __future__ import annotations

import numpy as np

from minidl.assignments import Assignment, Bug, Check
from minidl.nn.dispatch import reference_pair
from minidl.testing import check_pair

# what layers.py may not import or reach: the implementations it is graded against (docs/assignments.md)
FORBIDDEN = ("minidl.nn", "minidl.backend", "minidl.get_backend", "minidl.testing", "minidl.models", "torch")


def pair(forward, backward, op, fixed=None):
    def run(sub):
        layers = sub.load("layers")
        backward_fn = None if backward is None else getattr(layers, backward)
        check_pair(getattr(layers, forward), backward_fn, op, max_examples=sub.examples, fixed=fixed)

    return run


def reference_loss(params, x, target):
    """The two-layer net's loss and gradients with minidl's reference pairs."""
    linear_forward, linear_backward = reference_pair("linear")
    relu_forward, relu_backward = reference_pair("relu")
    ce_forward, ce_backward = reference_pair("softmax_cross_entropy")
    a, c1 = linear_forward(x, params["W1"], params["b1"])
    h, cr = relu_forward(a)
    s, c2 = linear_forward(h, params["W2"], params["b2"])
    loss, cl = ce_forward(s, target)
    dh, dW2, db2 = linear_backward(ce_backward(1.0, cl), c2)
    _, dW1, db1 = linear_backward(relu_backward(dh, cr), c1)
    return float(loss), {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def two_layer_net_check(sub):
    layers = sub.load("layers")
    rng = np.random.default_rng(0)
    for N, D, H, C in [(1, 2, 3, 2), (4, 5, 6, 3), (7, 3, 4, 5)]:
        net = layers.TwoLayerNet(D, H, C, std=1.0, seed=int(rng.integers(1000)))
        net.params["b1"] = rng.standard_normal(H)
        net.params["b2"] = rng.standard_normal(C)
        x, target = rng.standard_normal((N, D)), rng.integers(0, C, N)
        loss, grads = net.loss(x, target)
        expected_loss, expected = reference_loss(net.params, x, target)
        config = f"N={N}, D={D}, H={H}, C={C}"
        assert abs(loss - expected_loss) <= 1e-8 * max(1, abs(expected_loss)), (
            f"TwoLayerNet.loss: the loss is {loss:.8g}, expected {expected_loss:.8g} ({config})"
        )
        for key, value in expected.items():
            got = np.asarray(grads.get(key))
            assert got.shape == value.shape, (
                f"TwoLayerNet.loss: grads[{key!r}] has shape {got.shape}, expected {value.shape}"
            )
            worst = float(np.abs(got - value).max())
            assert worst <= 1e-8, (
                f"TwoLayerNet.loss: grads[{key!r}] is wrong, worst absolute error {worst:.3e} ({config})"
            )


ASSIGNMENT = Assignment(
    title="A1: backpropagation by hand (linear, ReLU, softmax cross-entropy, a two-layer net)",
    forbid_imports=FORBIDDEN,
    forbid_in=("layers.py",),
    student_files=("layers.py", "train_two_layer.py"),
    checks=(
        Check("linear_forward", 12, pair("linear_forward", None, "linear")),
        Check("linear_backward", 16, pair("linear_forward", "linear_backward", "linear")),
        Check("relu_forward", 8, pair("relu_forward", None, "relu")),
        Check("relu_backward", 8, pair("relu_forward", "relu_backward", "relu")),
        Check(
            "softmax_cross_entropy_forward", 14, pair("softmax_cross_entropy_forward", None, "softmax_cross_entropy")
        ),
        Check(
            "softmax_cross_entropy_backward",
            14,
            pair("softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "softmax_cross_entropy"),
        ),
        Check("TwoLayerNet.loss", 28, two_layer_net_check),
    ),
    bugs=(
        Bug("ReLU gradient through the wrong mask", "layers.py", "return dout * mask", "return dout * ~mask",
            "relu_backward"),
        Bug("missing bias gradient", "layers.py", "dbias = dout.sum(axis=0) if has_bias else None",
            "dbias = np.zeros(weight.shape[0]) if has_bias else None", "linear_backward"),
        Bug("transposed weight gradient", "layers.py", "dweight = dout.T @ x", "dweight = x.T @ dout",
            "linear_backward"),
        Bug("softmax without subtracting the maximum", "layers.py",
            "shifted = logits - logits.max(axis=1, keepdims=True)", "shifted = logits",
            "softmax_cross_entropy_forward"),
        Bug("mean gradient not divided by N", "layers.py", "        dlogits /= N\n", "        pass\n",
            "softmax_cross_entropy_backward"),
        Bug("ReLU skipped in the net's backward", "layers.py", "da = relu_backward(dh, cache_relu)", "da = dh",
            "TwoLayerNet.loss"),
    ),
)  # fmt: skip
