"""Assignment 2's graded checks (100 points) and the planted bugs ``python -m minidl.assignments check`` must catch.

Each layer function is compared with minidl's reference pair by :func:`minidl.testing.check_pair`: a forward
function on its own (``candidate_backward=None``), a backward function together with its forward (its cache is
the forward's). ``sub.load("layers")`` imports the submission's layers.py.
"""

from __future__ import annotations

import numpy as np

import minidl
from minidl.assignments import Assignment, Bug, Check
from minidl.testing import check_pair

# what layers.py may not import or reach: the implementations it is graded against (docs/assignments.md)
FORBIDDEN = ("minidl.nn", "minidl.backend", "minidl.get_backend", "minidl.testing", "minidl.models", "torch")

CONV = {"bias": True}  # the submission's conv functions take a bias array; None is also allowed by the docstring


def pair(function, backward, op, fixed=None):
    """A check of ``layers.<function>`` (forward only when ``backward`` is None) against minidl's ``op``; a
    backward's check leaves the running statistics to its forward's (a bug there costs the forward's points only)."""

    def run(sub):
        layers = sub.load("layers")
        forward_fn = getattr(layers, function if backward is None else backward[0])
        backward_fn = None if backward is None else getattr(layers, backward[1])
        check_pair(forward_fn, backward_fn, op, max_examples=sub.examples, fixed=fixed, check_state=backward is None)

    return run


def im2col_check(sub):
    layers = sub.load("layers")
    be = minidl.get_backend("numpy")
    rng = np.random.default_rng(0)
    for N, C, H, W, K, S, P in [(1, 1, 3, 3, 2, 1, 0), (2, 3, 5, 4, 3, 2, 1), (1, 2, 6, 6, 3, 1, 2)]:
        x = rng.standard_normal((N, C, H, W))
        expected = be.im2col(x, K, K, S, S, P, P, 1, 1)
        got = np.asarray(layers.im2col(x, K, K, S, P))
        config = f"x {x.shape}, KH=KW={K}, stride={S}, padding={P}"
        assert got.shape == expected.shape, f"im2col: shape {got.shape}, expected {expected.shape} for {config}"
        worst = float(np.abs(got - expected).max())
        assert worst < 1e-12, f"im2col: wrong values for {config} (worst absolute error {worst:.3e})"


def col2im_check(sub):
    """col2im is the adjoint of im2col: <col2im(c), x> = <c, im2col(x)> for every x and c."""
    layers = sub.load("layers")
    be = minidl.get_backend("numpy")
    rng = np.random.default_rng(1)
    for N, C, H, W, K, S, P in [(1, 1, 3, 3, 2, 1, 0), (2, 3, 5, 4, 3, 2, 1), (1, 2, 6, 6, 3, 1, 2)]:
        x = rng.standard_normal((N, C, H, W))
        cols = rng.standard_normal(be.im2col(x, K, K, S, S, P, P, 1, 1).shape)
        got = np.asarray(layers.col2im(cols, x.shape, K, K, S, P))
        config = f"x {x.shape}, KH=KW={K}, stride={S}, padding={P}"
        assert got.shape == x.shape, f"col2im: shape {got.shape}, expected {x.shape} for {config}"
        expected = be.col2im(cols, x.shape, K, K, S, S, P, P, 1, 1)
        worst = float(np.abs(got - expected).max())
        assert worst < 1e-12, (
            f"col2im: wrong values for {config} (worst absolute error {worst:.3e}): it must add "
            "every column back onto its window (overlapping windows add up) and crop the padding"
        )


def build_cnn_check(sub):
    from minidl import nn

    model = sub.load("cnn").build_cnn()
    kinds = [type(m).__name__ for m in model.modules()]
    for kind, count in (("Conv2d", 3), ("BatchNorm2d", 3), ("MaxPool2d", 3), ("Dropout", 1), ("Linear", 1)):
        assert kinds.count(kind) >= count, f"build_cnn: expected {count} {kind} layer(s), found {kinds.count(kind)}"
    n_params = sum(p.size for p in model.parameters())
    assert n_params == 113_962, f"build_cnn: {n_params:,} parameters, the architecture in the docstring has 113,962"
    with minidl.no_grad():
        out = model.eval()(np.zeros((2, 3, 32, 32), np.float32))
    assert out.shape == (2, 10), f"build_cnn: the output has shape {out.shape} for 2 images, expected (2, 10)"
    assert isinstance(model, nn.Module)


ASSIGNMENT = Assignment(
    title="A2: CNN layers (conv, pooling, batch norm, dropout) and a small CNN",
    forbid_imports=FORBIDDEN,
    forbid_in=("layers.py",),
    student_files=("layers.py", "cnn.py", "train_cnn.py"),
    checks=(
        Check("conv_forward_naive", 10, pair("conv_forward_naive", None, "conv2d", CONV)),
        Check("conv_backward_naive", 10, pair("", ("conv_forward_naive", "conv_backward_naive"), "conv2d", CONV)),
        Check("im2col", 5, im2col_check),
        Check("col2im", 5, col2im_check),
        Check("conv_forward_im2col", 8, pair("conv_forward_im2col", None, "conv2d", CONV)),
        Check("conv_backward_im2col", 8, pair("", ("conv_forward_im2col", "conv_backward_im2col"), "conv2d", CONV)),
        Check("max_pool_forward", 6, pair("max_pool_forward", None, "max_pool2d")),
        Check("max_pool_backward", 6, pair("", ("max_pool_forward", "max_pool_backward"), "max_pool2d")),
        Check("avg_pool_forward", 5, pair("avg_pool_forward", None, "avg_pool2d")),
        Check("avg_pool_backward", 5, pair("", ("avg_pool_forward", "avg_pool_backward"), "avg_pool2d")),
        Check("batchnorm_forward", 9, pair("batchnorm_forward", None, "batch_norm")),
        Check("batchnorm_backward", 9, pair("", ("batchnorm_forward", "batchnorm_backward"), "batch_norm")),
        Check("dropout_forward", 5, pair("dropout_forward", None, "dropout")),
        Check("dropout_backward", 5, pair("", ("dropout_forward", "dropout_backward"), "dropout")),
        Check("build_cnn", 4, build_cnn_check),
    ),
    bugs=(
        Bug(
            "calls minidl's own convolution",
            "layers.py",
            "    N, C, H, W = x.shape\n    O, _, KH, KW = weight.shape\n",
            "    return minidl.nn.functional.conv2d_forward(x, weight, bias, stride, padding)\n",
            "conv_forward_naive",
        ),
        Bug(
            "wrong padding",
            "layers.py",
            "x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))\n"
            "    OH = (H + 2 * padding - KH) // stride + 1",
            "x_padded = np.pad(x, ((0, 0), (0, 0), (padding + 1, padding + 1), (padding + 1, padding + 1)))\n"
            "    OH = (H + 2 * padding - KH) // stride + 1",
            "conv_forward_naive",
        ),
        Bug(
            "padding not cropped from dx",
            "layers.py",
            "dx = dx_padded[:, :, padding : padding + H, padding : padding + W]\n    dbias",
            "dx = dx_padded[:, :, : H, : W]\n    dbias",
            "conv_backward_naive",
        ),
        Bug(
            "missing bias gradient",
            "layers.py",
            "grad_bias = dout_col.sum(axis=1) if has_bias else None",
            "grad_bias = np.zeros(O) if has_bias else None",
            "conv_backward_im2col",
        ),
        Bug(
            "transposed weight gradient",
            "layers.py",
            "dweight = (dout_col @ cols.T).reshape(weight.shape)",
            "dweight = (dout_col @ cols.T).T.reshape(weight.shape)",
            "conv_backward_im2col",
        ),
        Bug(
            "off-by-one output size",
            "layers.py",
            "    OW = (W + 2 * padding - KW) // stride + 1\n    x_padded = np.pad(x",
            "    OW = (W + 2 * padding - KW) // stride\n    x_padded = np.pad(x",
            "im2col",
        ),
        Bug(
            "col2im overwrites overlapping windows",
            "layers.py",
            "dx_padded[:, :, rows, columns] += cols",
            "dx_padded[:, :, rows, columns] = cols",
            "col2im",
        ),
        Bug(
            "off-by-one stride",
            "layers.py",
            "out[:, :, i, j] = x[:, :, i * S : i * S + K, j * S : j * S + K].max(axis=(2, 3))",
            "out[:, :, i, j] = x[:, :, i * (S - 1) : i * (S - 1) + K, j * (S - 1) : j * (S - 1) + K].max(axis=(2, 3))",
            "max_pool_forward",
        ),
        Bug(
            "max-pool gradient routed to the window's corner",
            "layers.py",
            "p, q = np.divmod(first, K)",
            "p, q = 0 * first, 0 * first",
            "max_pool_backward",
        ),
        Bug(
            "max-pool gradient sent to the last of tied maxima",
            "layers.py",
            "first = window.argmax(axis=2)",
            "first = K * K - 1 - window[:, :, ::-1].argmax(axis=2)",
            "max_pool_backward",
        ),
        Bug(
            "avg-pool divides by the wrong count",
            "layers.py",
            ".sum(axis=(2, 3)) / (K * K)",
            ".sum(axis=(2, 3)) / K",
            "avg_pool_forward",
        ),
        Bug(
            "running variance updated with the biased variance",
            "layers.py",
            "momentum * var * M / (M - 1)",
            "momentum * var",
            "batchnorm_forward",
        ),
        Bug(
            "eval mode normalizes with the batch statistics",
            "layers.py",
            "mean, var = running_mean, running_var",
            "mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))",
            "batchnorm_forward",
        ),
        Bug(
            "BN backward with the unbiased count M - 1",
            "layers.py",
            "dx = scale / M * (M * dxhat",
            "dx = scale / (M - 1) * (M * dxhat",
            "batchnorm_backward",
        ),
        Bug("dropout not rescaled", "layers.py", "out = x * mask / (1 - p)", "out = x * mask", "dropout_forward"),
        Bug(
            "dropout backward ignores the mask",
            "layers.py",
            "return dout * mask / (1 - p)",
            "return dout / (1 - p)",
            "dropout_backward",
        ),
        Bug(
            "CNN without batch norm",
            "cnn.py",
            "nn.BatchNorm2d(c_out), ",
            "",
            "build_cnn",
        ),
    ),
)
