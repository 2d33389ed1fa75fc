"""Elementwise losses (MSE, L1, SmoothL1, BCE, BCEWithLogits, KLDiv): gradient checks, PyTorch parity for every
option, stability and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import nn
from tests.helpers import arr, assert_close, torch_or_skip
from tests.nn.loss_checks import check_loss_module, torch_loss_and_grad
from tests.strategies import seeds

reductions = st.sampled_from(["mean", "sum", "none"])


def _pair(seed, shape, kinks=()):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    for k in kinks:  # keep input - target away from the kinks of L1 / smooth L1
        for sign in (1, -1):
            d = x - y - sign * k
            near = np.abs(d) < 1e-3
            x[near] += np.where(d[near] >= 0, 2e-3, -2e-3)
    return x, y


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@pytest.mark.parametrize("name", ["mse", "l1", "smooth_l1", "smooth_l1_beta0", "smooth_l1_beta2"])
@given(seed=seeds, shape=shapes, reduction=reductions)
def test_regression_losses_torch_parity_and_gradcheck(name, seed, shape, reduction):
    torch = torch_or_skip()
    beta = {"smooth_l1": 1.0, "smooth_l1_beta0": 0.0, "smooth_l1_beta2": 2.0}.get(name)
    x, y = _pair(seed, shape, kinks=(0.0,) if beta is None else (0.0, beta))
    if name == "mse":
        module, ref_fn = nn.MSELoss(reduction), torch.nn.functional.mse_loss
    elif name == "l1":
        module, ref_fn = nn.L1Loss(reduction), torch.nn.functional.l1_loss
    else:
        module = nn.SmoothL1Loss(reduction, beta=beta)

        def ref_fn(a, b, reduction):
            return torch.nn.functional.smooth_l1_loss(a, b, reduction=reduction, beta=beta)

    loss = module(arr(x), arr(y))
    dout = np.random.default_rng(seed + 1).standard_normal(shape) if reduction == "none" else np.array(1.3)
    grad = module.backward(arr(dout) if reduction == "none" else 1.3)
    ref, ref_grad = torch_loss_and_grad(
        torch, lambda t: ref_fn(t, torch.tensor(y), reduction=reduction), x, dout, reduction
    )
    assert_close(np.asarray(loss), ref, what=f"{name} loss")
    assert_close(grad, ref_grad, what=f"{name} grad")
    check_loss_module(module, x, arr(y), reduction, seed)


@given(seed=seeds, shape=shapes, reduction=reductions, weighted=st.booleans(), pos_weighted=st.booleans())
def test_bce_with_logits_torch_parity_and_gradcheck(seed, shape, reduction, weighted, pos_weighted):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    y = rng.uniform(0, 1, shape)
    weight = rng.uniform(0.5, 2, shape) if weighted else None
    pos_weight = rng.uniform(0.5, 3, shape[-1:]) if pos_weighted else None
    module = nn.BCEWithLogitsLoss(weight, reduction=reduction, pos_weight=pos_weight)
    loss = module(arr(x), arr(y))
    dout = rng.standard_normal(shape) if reduction == "none" else np.array(1.0)
    grad = module.backward(arr(dout) if reduction == "none" else None)
    ref, ref_grad = torch_loss_and_grad(
        torch,
        lambda t: torch.nn.functional.binary_cross_entropy_with_logits(
            t,
            torch.tensor(y),
            weight=None if weight is None else torch.tensor(weight),
            pos_weight=None if pos_weight is None else torch.tensor(pos_weight),
            reduction=reduction,
        ),
        x,
        dout,
        reduction,
    )
    assert_close(np.asarray(loss), ref, what="loss")
    assert_close(grad, ref_grad, what="grad")
    check_loss_module(module, x, arr(y), reduction, seed)


@given(seed=seeds, shape=shapes, reduction=reductions, weighted=st.booleans())
def test_bce_torch_parity_and_gradcheck(seed, shape, reduction, weighted):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, shape)
    y = rng.uniform(0, 1, shape)
    weight = rng.uniform(0.5, 2, shape) if weighted else None
    module = nn.BCELoss(weight, reduction=reduction)
    loss = module(arr(p), arr(y))
    dout = rng.standard_normal(shape) if reduction == "none" else np.array(1.0)
    grad = module.backward(arr(dout) if reduction == "none" else None)
    ref, ref_grad = torch_loss_and_grad(
        torch,
        lambda t: torch.nn.functional.binary_cross_entropy(
            t, torch.tensor(y), weight=None if weight is None else torch.tensor(weight), reduction=reduction
        ),
        p,
        dout,
        reduction,
    )
    assert_close(np.asarray(loss), ref, what="loss")
    assert_close(grad, ref_grad, what="grad")
    check_loss_module(module, p, arr(y), reduction, seed)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")  # torch's own warning
@given(
    seed=seeds,
    n=st.integers(1, 4),
    c=st.integers(2, 5),
    reduction=st.sampled_from(["batchmean", "sum", "mean", "none"]),
    log_target=st.booleans(),
)
def test_kl_div_torch_parity_and_gradcheck(seed, n, c, reduction, log_target):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    log_q = np.log(rng.dirichlet(np.ones(c), size=n))
    p = rng.dirichlet(np.ones(c), size=n)
    p[0, 0] = 0.0  # a zero-probability term contributes 0
    target = np.log(p + 1e-3) if log_target else p
    module = nn.KLDivLoss(reduction=reduction, log_target=log_target)
    loss = module(arr(log_q), arr(target))
    dout = rng.standard_normal((n, c)) if reduction == "none" else np.array(1.0)
    grad = module.backward(arr(dout) if reduction == "none" else None)
    ref, ref_grad = torch_loss_and_grad(
        torch,
        lambda t: torch.nn.functional.kl_div(t, torch.tensor(target), reduction=reduction, log_target=log_target),
        log_q,
        dout,
        reduction,
    )
    assert_close(np.asarray(loss), ref, what="loss")
    assert_close(grad, ref_grad, what="grad")
    check_loss_module(module, log_q, arr(target), reduction, seed)


def test_bce_with_logits_is_stable_for_huge_logits():
    x = arr(np.array([1000.0, -1000.0, 1000.0, -1000.0]))
    y = arr(np.array([1.0, 0.0, 0.0, 1.0]))
    module = nn.BCEWithLogitsLoss(reduction="none")
    assert_close(module(x, y), [0.0, 0.0, 1000.0, 1000.0])
    assert_close(module.backward(arr(np.ones(4))), [0.0, 0.0, 1.0, -1.0])
    bce = nn.BCELoss(reduction="none")
    assert_close(bce(arr(np.array([0.0, 1.0])), arr(np.array([1.0, 0.0]))), [100.0, 100.0])  # log clamped at -100


def test_elementwise_losses_defaults_and_bad_input():
    assert nn.KLDivLoss().reduction == "batchmean" and nn.SmoothL1Loss().beta == 1.0
    assert repr(nn.MSELoss()) == "MSELoss(reduction='mean')"
    with pytest.raises(
        ValueError,
        match=r"MSELoss: the target has shape \(3,\) but the input has shape \(2, 3\); they "
        r"must match exactly",
    ):
        nn.MSELoss()(arr(np.zeros((2, 3))), arr(np.zeros(3)))
    with pytest.raises(TypeError, match=r"L1Loss: expected a floating-point target, got dtype int64"):
        nn.L1Loss()(arr(np.zeros(3)), arr(np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match=r"BCELoss: the input must hold probabilities in \[0, 1\] \(got min -0.5"):
        nn.BCELoss()(arr(np.array([-0.5, 0.5])), arr(np.array([0.0, 1.0])))
    with pytest.raises(
        ValueError,
        match=r"BCEWithLogitsLoss: pos_weight of shape \(3,\) does not broadcast to the "
        r"input's shape \(2, 4\)",
    ):
        nn.BCEWithLogitsLoss(pos_weight=np.ones(3))(arr(np.zeros((2, 4))), arr(np.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"KLDivLoss: reduction must be one of 'none', 'batchmean', 'mean', 'sum'"):
        nn.KLDivLoss(reduction="max")
    with pytest.raises(ValueError, match=r"SmoothL1Loss: beta must be >= 0.0, got -1.0"):
        nn.SmoothL1Loss(beta=-1.0)
    with pytest.raises(RuntimeError, match=r"MSELoss.backward\(\) was called without a matching forward"):
        nn.MSELoss().backward()
    loss = nn.MSELoss()(arr(np.ones(3, np.float32)), arr(np.zeros(3)))  # a float64 target follows the input's dtype
    assert isinstance(loss, float) and loss == 1.0
    assert list(nn.BCEWithLogitsLoss(pos_weight=np.ones(2)).state_dict()) == ["pos_weight"]
