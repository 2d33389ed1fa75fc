"""check_pair: correct candidates pass; planted bugs fail with the function, configuration and error named."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import minidl
from minidl import gradcheck
from minidl.nn import functional as F
from minidl.testing import ConformanceError, check_pair, registered_ops
from minidl.testing._hypothesis import QUICK_EXAMPLES
from tests.testing import bugs

EXAMPLES = 8
OPS = ["linear", "relu", "softmax_cross_entropy", "conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "dropout"]


def test_the_ops_the_assignments_need_are_registered():
    assert set(OPS) <= set(registered_ops())


@pytest.mark.parametrize("op", OPS)
def test_the_reference_pairs_conform_to_themselves(op):
    def forward(*args, **kwargs):  # a different function object than the reference, with its signature's names
        return getattr(F, f"{op}_forward")(*args, **kwargs)

    forward.__signature__ = __import__("inspect").signature(getattr(F, f"{op}_forward"))
    report = check_pair(forward, getattr(F, f"{op}_backward"), op, max_examples=EXAMPLES)
    assert report.examples == EXAMPLES + QUICK_EXAMPLES  # (the quick check's draws first)
    assert report.max_abs_error == 0.0


def test_a_forward_only_bug_that_gradcheck_passes_is_caught():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
    # the wrong-padding convolution has a self-consistent gradient: gradcheck alone cannot see the bug
    assert gradcheck.check_function(bugs.conv_wrong_padding_forward, F.conv2d_backward, [x, w]).passed
    with pytest.raises(ConformanceError) as info:
        check_pair(bugs.conv_wrong_padding_forward, F.conv2d_backward, "conv2d", max_examples=EXAMPLES)
    err = info.value
    assert err.function == "conv_wrong_padding_forward"
    assert err.what == "the output"
    message = str(err)
    assert message.startswith("conv_wrong_padding_forward: the output has shape (1, 1, 3, 3), but the reference has "
                              "shape (1, 1, 1, 1)")  # fmt: skip
    # the smallest configuration: hypothesis shrinks every size to its least value
    assert "configuration (smallest failing): N=1, C=1, H=1, W=1, O=1, KH=1, KW=1, bias=False, stride=1, padding=0" in (
        message
    )
    assert err.config["dilation"] == 1 and err.config["groups"] == 1  # held: the candidate has no such argument


@pytest.mark.parametrize(
    ("forward", "backward", "op", "function", "what"),
    [
        (F.conv2d_forward, bugs.conv_no_bias_grad_backward, "conv2d", "conv_no_bias_grad_backward",
         "the gradient of bias"),
        (F.linear_forward, bugs.linear_transposed_weight_grad_backward, "linear",
         "linear_transposed_weight_grad_backward", "the gradient of weight"),
        (F.relu_forward, bugs.relu_wrong_mask_backward, "relu", "relu_wrong_mask_backward", "the gradient of x"),
        (F.max_pool2d_forward, bugs.max_pool_all_window_backward, "max_pool2d", "max_pool_all_window_backward",
         "the gradient of x"),
        (bugs.softmax_ce_no_shift_forward, bugs.softmax_ce_backward, "softmax_cross_entropy",
         "softmax_ce_no_shift_forward", "the output"),
        (bugs.dropout_not_rescaled_forward, F.dropout_backward, "dropout", "dropout_not_rescaled_forward",
         "the output (kept values must be x / (1 - p))"),
        (bugs.batch_norm_biased_running_var_forward, F.batch_norm_backward, "batch_norm",
         "batch_norm_biased_running_var_forward", "running_var after the forward pass"),
    ],
)  # fmt: skip
def test_a_planted_bug_names_the_function_and_what_differs(forward, backward, op, function, what):
    with pytest.raises(ConformanceError) as info:
        check_pair(forward, backward, op, max_examples=EXAMPLES)
    err = info.value
    assert (err.function, err.what) == (function, what)
    first = str(err).splitlines()[0]
    assert first.startswith(f"{function}: {what} ")
    assert "configuration (smallest failing): " in str(err)
    if "differs" in first:
        assert re.search(r"worst absolute error \d\.\d{3}e[+-]\d+, worst relative error", first)
        assert err.max_abs_error > 0


def test_the_softmax_overflow_is_reported_on_large_logits_only():
    with pytest.raises(ConformanceError) as info:
        check_pair(bugs.softmax_ce_no_shift_forward, bugs.softmax_ce_backward, "softmax_cross_entropy",
                   max_examples=EXAMPLES)  # fmt: skip
    assert info.value.config["scale"] == 1000.0
    assert "non-finite value" in str(info.value)
    # held at small logits, the same candidate conforms
    check_pair(bugs.softmax_ce_no_shift_forward, bugs.softmax_ce_backward, "softmax_cross_entropy",
               max_examples=EXAMPLES, fixed={"scale": 1.0})  # fmt: skip


def test_an_exception_in_the_candidate_is_reported_with_the_function_and_configuration():
    def conv_forward(x, weight, bias=None, stride=1, padding=0):
        return F.conv2d_forward(x[0], weight, bias, stride, padding)  # drops the batch axis

    with pytest.raises(ConformanceError) as info:
        check_pair(conv_forward, F.conv2d_backward, "conv2d", max_examples=EXAMPLES)
    message = str(info.value)
    assert message.startswith("conv_forward: raised ValueError: conv2d_forward: expected a 4-D (N, C, H, W) input, "
                              "got shape (1, 1, 1) (3-D) (in ")  # fmt: skip
    assert "configuration (smallest failing): N=1, C=1, H=1, W=1" in message


def test_a_stub_raises_its_own_not_implemented_error():
    def conv_forward(x, weight, bias=None, stride=1, padding=0):
        raise NotImplementedError("conv_forward: your code here")

    with pytest.raises(NotImplementedError, match=r"^conv_forward: your code here\n"):
        check_pair(conv_forward, F.conv2d_backward, "conv2d", max_examples=EXAMPLES)


def test_a_backward_returning_too_few_gradients_is_named():
    with pytest.raises(
        ConformanceError, match=r"^<lambda>: the return value should hold 3 gradients \(x, weight, bias"
    ):
        check_pair(F.linear_forward, lambda dout, cache: F.linear_backward(dout, cache)[:2], "linear",
                   max_examples=EXAMPLES)  # fmt: skip


def test_an_unknown_op_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"no op named 'conv3d'; the registered ops are \['avg_pool2d'"):
        check_pair(F.conv2d_forward, F.conv2d_backward, "conv3d")


def test_without_hypothesis_the_error_says_what_to_install(monkeypatch):
    from minidl.testing._hypothesis import require_hypothesis

    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError, match=r"pip install 'minidl\[test\]'"):
        require_hypothesis()


def test_the_check_runs_on_numpy_in_float64_and_restores_the_caller_settings():
    seen = []

    def relu_forward(x):
        seen.append((minidl.get_backend().name, x.dtype, minidl.get_default_dtype()))
        return F.relu_forward(x)

    with minidl.use_backend("numba" if "numba" in minidl.available_backends() else "numpy") as before:
        check_pair(relu_forward, F.relu_backward, "relu", max_examples=3)
        assert minidl.get_backend() is before
    assert minidl.get_default_dtype() == np.float32
    assert set(seen) == {("numpy", np.dtype(np.float64), np.dtype(np.float64))}


def test_the_candidate_is_also_gradchecked(monkeypatch):
    from minidl.testing import _check

    calls = []
    real = _check._gradcheck.check_function

    def counting(forward, backward, inputs, **kwargs):
        calls.append([tuple(a.shape) for a in inputs])
        return real(forward, backward, inputs, **kwargs)

    monkeypatch.setattr(_check._gradcheck, "check_function", counting)
    check_pair(F.linear_forward, F.linear_backward, "linear", max_examples=3, fixed={"bias": True})
    assert len(calls) == 3 and all(len(shapes) == 3 for shapes in calls)  # x, weight and bias, every example
    calls.clear()
    check_pair(F.linear_forward, F.linear_backward, "linear", max_examples=3, gradcheck=False)
    assert calls == []


def relu_inplace(x):
    """Right output and a right backward, but it overwrites its input."""
    np.maximum(x, 0, out=x)
    return x.copy(), x > 0


def test_a_forward_that_modifies_its_input_is_reported_before_its_backward():
    with pytest.raises(ConformanceError) as info:
        check_pair(relu_inplace, lambda dout, mask: dout * mask, "relu", max_examples=4)
    assert info.value.function == "relu_inplace"
    assert str(info.value).startswith("relu_inplace: modified its input x in place; a forward must leave its inputs")


def relu_float32(x):
    return np.maximum(x, 0).astype(np.float32), x > 0


def test_an_output_in_another_dtype_than_the_references_is_named():
    with pytest.raises(ConformanceError) as info:
        check_pair(relu_float32, None, "relu", max_examples=4)
    assert str(info.value).startswith("relu_float32: the output has dtype float32, but the reference returns float64")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_examples_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=re.escape(f"check_pair: max_examples must be a positive int, got {bad!r}")):
        check_pair(F.relu_forward, F.relu_backward, "relu", max_examples=bad)


def max_pool_every_tie_backward(dout, cache):
    """Sends each gradient to every tied maximum of its window (the reference: to the first one only)."""
    x = cache[0]
    g = cache[1]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * g : i * g + g, j * g : j * g + g]
            is_max = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * g : i * g + g, j * g : j * g + g] += is_max * dout[:, :, i, j][:, :, None, None]
    return dx


def max_pool_saving_x(x, kernel_size=2):
    out, _ = F.max_pool2d_forward(x, kernel_size)
    return out, (x, kernel_size)


def test_max_pool_is_compared_on_inputs_with_ties_too():
    """Distinct inputs alone cannot tell the first maximum from every tied one; the tie configurations can."""
    with pytest.raises(ConformanceError) as info:
        check_pair(max_pool_saving_x, max_pool_every_tie_backward, "max_pool2d", max_examples=4)
    assert info.value.config["ties"] is True and info.value.what == "the gradient of x"
    assert info.value.function == "max_pool_every_tie_backward"


def test_a_longer_check_catches_what_the_quick_one_does():
    # linear's bias gradient as a mean: only configurations with a bias and more than one sample show it; 20
    # configurations drawn at once missed them while the quick check's 4 had one
    def mean_bias_backward(dout, cache):
        dx, dw, db = F.linear_backward(dout, cache)
        return dx, dw, None if db is None else dout.mean(axis=0)

    for examples in (4, 20):
        with pytest.raises(ConformanceError, match="the gradient of bias"):
            check_pair(F.linear_forward, mean_bias_backward, "linear", max_examples=examples)
