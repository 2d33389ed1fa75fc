"""The public gradient checker: it must pass right gradients, catch wrong ones, and explain what it found."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import gradcheck, nn
from minidl.gradcheck import GradcheckError, check_function, check_module, numerical_gradient
from tests.helpers import arr


def _square_forward(x):
    return x * x, x


def _square_backward(dout, x):
    return 2 * x * dout


def test_numerical_gradient_of_a_known_function():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = numerical_gradient(lambda: float((np.sin(x) * x).sum()), x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-8)


def test_numerical_gradient_restores_the_input():
    x = np.random.default_rng(0).normal(size=(3, 3))
    before = x.copy()
    numerical_gradient(lambda: float(x.sum()), x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("mode", ["full", "random_direction"])
def test_correct_backward_passes(mode):
    x = np.random.default_rng(1).normal(size=(4, 5))
    report = check_function(_square_forward, _square_backward, [x], mode=mode)
    assert report.passed and report.worst.max_rel_error < 1e-6


@pytest.mark.parametrize("mode", ["full", "random_direction"])
def test_wrong_factor_is_caught_and_explained(mode):
    x = np.random.default_rng(2).normal(size=(3, 4))
    with pytest.raises(GradcheckError) as info:
        check_function(_square_forward, lambda dout, x: x * dout, [x], mode=mode)
    text = str(info.value)
    assert "FAILED" in text and "input 0" in text
    assert "0.5 x numeric" in text  # the least-squares ratio points at the missing factor 2
    assert info.value.report.worst.scale == pytest.approx(0.5, rel=1e-6)


def test_sign_error_is_named():
    x = np.random.default_rng(3).normal(size=(5,))
    report = check_function(_square_forward, lambda dout, x: -2 * x * dout, [x], raise_on_failure=False)
    assert not report.passed
    assert "sign error" in str(report)


def test_zero_gradient_hint():
    x = np.random.default_rng(4).normal(size=(2, 2)) + 3.0
    report = check_function(_square_forward, lambda dout, x: 0 * x, [x], raise_on_failure=False)
    assert "is 0 where it should not be" in str(report)


def test_float32_inputs_are_refused_with_advice():
    x = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match="need float64"):
        check_function(_square_forward, _square_backward, [x])


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be 'full' or 'random_direction'"):
        check_function(_square_forward, _square_backward, [np.ones(2)], mode="exact")


class _BrokenScale(nn.Module):
    """y = w * x with a bug in the weight gradient (forgets x)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(np.array([1.5]))

    def forward(self, x):
        self.save_for_backward(x)
        return self.weight.data * x

    def backward(self, dout):
        self.pop_saved()
        self.weight.accumulate_grad(np.array([dout.sum()]))  # bug: should be (dout * x).sum()
        return self.weight.data * dout


def test_check_module_names_the_wrong_parameter():
    x = np.random.default_rng(5).normal(size=(6,))
    report = check_module(_BrokenScale(), x, raise_on_failure=False)
    entries = {e.name: e for e in report.entries}
    assert entries["input"].passed
    assert not entries["weight"].passed
    assert report.worst.name == "weight"


def test_check_module_keeps_existing_gradients_and_buffers():
    m = _BrokenScale()
    m.weight.grad = np.array([7.0])
    m.register_buffer("counter", np.zeros(1))
    check_module(m, np.ones(3), raise_on_failure=False)
    assert m.weight.grad.tolist() == [7.0]
    assert m.counter.tolist() == [0.0]


def test_module_must_be_float64():
    m = _BrokenScale().to(np.float32)
    with pytest.raises(TypeError, match=r"parameter 'weight' has dtype float32.*module.to\(np.float64\)"):
        check_module(m, np.ones(3))


def test_report_table_lists_every_tensor():
    x = np.random.default_rng(6).normal(size=(3,))
    text = str(gradcheck.check_module(_BrokenScale(), x, raise_on_failure=False))
    assert "input" in text and "weight" in text and "max rel err" in text


def test_check_loss_with_extra_inputs_and_unreduced_losses():
    rng = np.random.default_rng(7)
    logits, teacher = arr(rng.normal(size=(4, 5))), arr(rng.normal(size=(4, 5)))
    labels = arr(np.array([0, 3, 1, 4]))
    gradcheck.check_loss(nn.DistillationLoss(temperature=3.0, alpha=0.7), logits, labels, teacher)
    gradcheck.check_loss(nn.MSELoss(reduction="none"), logits, teacher)
    gradcheck.check_loss(nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1), logits, labels)


def test_check_loss_catches_a_wrong_loss_gradient():
    class HalfGradMSE(nn.MSELoss):
        def backward(self, dout=None):
            return 0.5 * super().backward(dout)

    x, y = (arr(a) for a in np.random.default_rng(8).normal(size=(2, 3, 2)))
    report = gradcheck.check_loss(HalfGradMSE(), x, y, raise_on_failure=False)
    assert not report.passed and report.worst.scale == pytest.approx(0.5, rel=1e-6)


def test_backward_gets_its_own_dout():
    # a correct backward that works in place on dout passed as wrong (and a wrong one could pass): the finite
    # differences read the same upstream gradient afterwards
    def in_place(dout, x):
        dout *= 2 * x
        return dout

    x = np.random.default_rng(8).normal(size=(3, 4))
    assert check_function(_square_forward, in_place, [x]).passed

    class Square(nn.Module):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, dout):
            dout *= 2 * self.x
            return dout

    assert check_module(Square(), x).passed


def test_a_float64_input_without_a_gradient_fails_where_the_output_depends_on_it():
    from minidl.nn import functional as F

    rng = np.random.default_rng(9)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(2, 3)), rng.normal(size=2)
    for partial in (lambda d, c: F.linear_backward(d, c)[0], lambda d, c: F.linear_backward(d, c)[:2]):
        report = check_function(F.linear_forward, partial, [x, w, b], raise_on_failure=False)
        assert [e.name for e in report.entries] == ["input 0", "input 1", "input 2"] and not report.passed
        assert "is 0 where it should not be" in str(report)
    assert check_function(F.linear_forward, lambda d, c: list(F.linear_backward(d, c)), [x.T.copy().T, w, b]).passed


def test_a_gradient_of_the_wrong_shape_is_a_failed_entry():
    x = np.random.default_rng(10).normal(size=(3, 4))
    report = check_function(_square_forward, lambda dout, x: (2 * x * dout)[:, :2], [x], raise_on_failure=False)
    assert not report.passed
    assert "worst: input 0: backward returned a gradient of shape (3, 2) for input 0 of shape (3, 4)" in str(report)
    with pytest.raises(GradcheckError, match="of shape"):
        check_function(_square_forward, lambda dout, x: (2 * x * dout)[:, :2], [x])


def test_check_module_catches_a_backward_that_replaces_grad_instead_of_adding():
    class OverwritingLinear(nn.Linear):
        def forward(self, x):
            self.x = x
            return x @ self.weight.data.T + self.bias.data

        def backward(self, dout):
            self.weight.grad = dout.T @ self.x  # PyTorch's rule (and nn.Linear's) adds to .grad
            self.bias.grad = dout.sum(0)
            return dout @ self.weight.data

    x = np.random.default_rng(11).normal(size=(4, 3))
    report = check_module(OverwritingLinear(3, 2).to(np.float64), x, raise_on_failure=False)
    assert [e.name for e in report.entries if not e.passed] == ["weight (accumulated)", "bias (accumulated)"]
    assert "a second backward left weight.grad at 1 x the first's gradient instead of 2 x" in str(report)
    layer = nn.Linear(3, 2).to(np.float64)
    assert check_module(layer, x).passed and layer.weight.grad is None  # (its .grad as it was)
