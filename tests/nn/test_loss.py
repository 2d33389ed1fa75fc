"""Cross-entropy, NLL and distillation losses: gradient checks, PyTorch parity for every option, stability, target
validation. The elementwise losses: ``test_loss_elementwise.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn
from minidl.nn import loss as L
from tests.helpers import arr, assert_close, host, to_torch, torch_or_skip
from tests.nn.loss_checks import check_loss_module, torch_loss_and_grad
from tests.strategies import seeds

reductions = st.sampled_from(["mean", "sum", "none"])
smoothing = st.sampled_from([0.0, 0.0, 0.1, 0.35])


def _class_problem(seed: int, n: int, c: int, spatial: tuple[int, ...], with_ignored: bool):
    """Logits (N, C, *spatial) and integer targets (N, *spatial), some set to ignore_index=-100 when asked."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c) + spatial) * 2
    target = rng.integers(0, c, (n,) + spatial)
    if with_ignored:
        target[rng.random(target.shape) < 0.3] = -100
    return logits, target


# ------------------------------------------------------------------ cross-entropy
@given(
    seed=seeds,
    n=st.integers(1, 4),
    c=st.integers(2, 5),
    spatial=st.sampled_from([(), (), (3,), (2, 2)]),
    label_smoothing=smoothing,
    weighted=st.booleans(),
    with_ignored=st.booleans(),
    reduction=reductions,
)
def test_cross_entropy_index_targets_torch_parity_and_gradcheck(
    seed, n, c, spatial, label_smoothing, weighted, with_ignored, reduction
):
    torch = torch_or_skip()
    logits, target = _class_problem(seed, n, c, spatial, with_ignored)
    assume(reduction != "mean" or (target != -100).any())
    weight = np.random.default_rng(seed + 1).uniform(0.2, 2.0, c) if weighted else None
    loss_fn = nn.CrossEntropyLoss(
        None if weight is None else arr(weight), reduction=reduction, label_smoothing=label_smoothing
    )
    loss = loss_fn(arr(logits), arr(target))
    dout = np.random.default_rng(seed + 2).standard_normal(target.shape) if reduction == "none" else np.array(0.7)
    grad = loss_fn.backward(arr(dout) if reduction == "none" else 0.7)
    ref, ref_grad = torch_loss_and_grad(
        torch,
        lambda t: torch.nn.functional.cross_entropy(
            t,
            torch.tensor(target),
            weight=None if weight is None else torch.tensor(weight),
            reduction=reduction,
            label_smoothing=label_smoothing,
        ),
        logits,
        dout,
        reduction,
    )
    if reduction == "none":
        assert_close(loss, ref, what="loss")
    else:
        assert isinstance(loss, float)
        assert math.isclose(loss, ref.item(), rel_tol=1e-10, abs_tol=1e-12)
    assert_close(grad, ref_grad, what="dlogits")
    check_loss_module(loss_fn, logits, arr(target), reduction, seed)


@given(
    seed=seeds,
    n=st.integers(1, 4),
    c=st.integers(2, 5),
    spatial=st.sampled_from([(), (2,)]),
    label_smoothing=smoothing,
    weighted=st.booleans(),
    reduction=reductions,
)
def test_cross_entropy_probability_targets_torch_parity_and_gradcheck(
    seed, n, c, spatial, label_smoothing, weighted, reduction
):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c) + spatial) * 2
    q = rng.dirichlet(np.ones(c), size=(n,) + spatial)  # (n, *spatial, c): mixup-like soft labels
    q = np.moveaxis(q, -1, 1).copy()
    weight = rng.uniform(0.2, 2.0, c) if weighted else None
    loss_fn = nn.CrossEntropyLoss(weight, reduction=reduction, label_smoothing=label_smoothing)
    loss = loss_fn(arr(logits), arr(q))
    dout = rng.standard_normal((n,) + spatial) if reduction == "none" else np.array(1.0)
    grad = loss_fn.backward(arr(dout) if reduction == "none" else None)
    ref, ref_grad = torch_loss_and_grad(
        torch,
        lambda t: torch.nn.functional.cross_entropy(
            t,
            torch.tensor(q),
            weight=None if weight is None else torch.tensor(weight),
            reduction=reduction,
            label_smoothing=label_smoothing,
        ),
        logits,
        dout,
        reduction,
    )
    assert_close(np.asarray(loss), ref, what="loss")
    assert_close(grad, ref_grad, what="dlogits")
    check_loss_module(loss_fn, logits, arr(q), reduction, seed)


@given(seed=seeds, c=st.integers(2, 6), label_smoothing=smoothing)
def test_cross_entropy_functional_gradcheck_and_unbatched_input(seed, c, label_smoothing):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(c)
    target = np.array(rng.integers(0, c))
    kw = {"label_smoothing": label_smoothing}
    gradcheck.check_function(
        L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward, [arr(logits)], {"target": arr(target), **kw}
    )
    loss, _ = L.softmax_cross_entropy_forward(arr(logits), arr(target), **kw)
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(target), **kw)
    assert math.isclose(float(loss), ref.item(), rel_tol=1e-12)


def test_initial_loss_on_small_random_logits_is_ln_c():
    rng = np.random.default_rng(0)
    for c in (2, 10, 100):
        logits = arr((rng.standard_normal((256, c)) * 1e-3).astype(np.float32))
        loss = nn.CrossEntropyLoss()(logits, arr(rng.integers(0, c, 256)))
        assert abs(loss - math.log(c)) < 1e-3, f"C={c}: {loss} vs ln C = {math.log(c)}"


def test_cross_entropy_is_stable_for_huge_logits():
    logits = arr(np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]], np.float32))
    loss_fn = nn.CrossEntropyLoss()
    assert loss_fn(logits, arr(np.array([0, 1]))) == 0.0
    assert_close(loss_fn.backward(), np.zeros((2, 3), np.float32))
    assert loss_fn(logits, arr(np.array([1, 0]))) == 1.5e4  # mean of 1e4 and 2e4


def test_cross_entropy_all_targets_ignored_gives_nan_and_zero_gradient_like_torch():
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(arr(np.zeros((2, 3))), arr(np.array([-100, -100])))
    assert math.isnan(loss)
    assert (host(loss_fn.backward()) == 0).all()
    loss_fn = nn.CrossEntropyLoss(ignore_index=1, reduction="sum")
    assert loss_fn(arr(np.zeros((2, 3))), arr(np.array([1, 1]))) == 0.0


def test_cross_entropy_module_protocol():
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    per_sample = loss_fn(arr(np.zeros((3, 4))), arr(np.array([0, 1, 2])))
    assert per_sample.shape == (3,)
    with pytest.raises(
        ValueError,
        match=r"CrossEntropyLoss.backward: with reduction='none' the loss is an array of "
        r"shape \(3,\); pass dout of that shape",
    ):
        loss_fn.backward()
    loss_fn(arr(np.zeros((3, 4))), arr(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss.backward: the gradient has shape \(2,\)"):
        loss_fn.backward(arr(np.ones(2)))
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss.backward\(\) was called without a matching forward"):
        loss_fn.backward()
    loss_fn(arr(np.zeros((3, 4))), arr(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss.backward: the loss is a scalar, so dout must be a scalar"):
        loss_fn.backward(arr(np.ones(3)))
    logits32 = arr(np.zeros((3, 4), np.float32))
    for dout in (None, 1.0, np.float64(1.0), np.array(1.0), np.array([1.0])):
        loss_fn(logits32, arr(np.array([0, 1, 2])))
        assert loss_fn.backward(dout).dtype == np.float32, f"dout={dout!r} changed the gradient's dtype"
    assert not list(loss_fn.parameters()) and loss_fn.state_dict() == {}
    assert list(nn.CrossEntropyLoss(weight=np.ones(3)).state_dict()) == ["weight"]
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss(label_smoothing=0.0, ignore_index=-100, reduction='mean')"


def test_cross_entropy_bad_targets():
    logits4 = arr(np.zeros((2, 4), np.float32))
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(
        ValueError,
        match=r"CrossEntropyLoss: target class 4 is out of range for an input with 4 "
        r"classes \(expected 0..3, or ignore_index=-100\)",
    ):
        loss_fn(logits4, arr(np.array([0, 4])))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: target class -1 is out of range"):
        loss_fn(logits4, arr(np.array([-1, 0])))
    with pytest.raises(
        ValueError,
        match=r"CrossEntropyLoss: probability targets must have the input's shape "
        r"\(2, 4\) \(C = 4 classes\), got \(2, 3\)",
    ):
        loss_fn(logits4, arr(np.full((2, 3), 1 / 3, np.float32)))  # 3-class targets, 4-class logits
    with pytest.raises(
        ValueError,
        match=r"CrossEntropyLoss: class-index targets must have shape \(2,\) for an input "
        r"of shape \(2, 4\) \(C = 4 classes\), got \(3,\)",
    ):
        loss_fn(logits4, arr(np.array([0, 1, 2])))
    with pytest.raises(
        TypeError,
        match=r"CrossEntropyLoss: a target of shape \(2,\) holds class indices and must be "
        r"an integer array, got dtype float32",
    ):
        loss_fn(logits4, arr(np.array([0.0, 1.0], np.float32)))
    with pytest.raises(
        ValueError,
        match=r"CrossEntropyLoss: probability targets must be non-negative and sum to 1 "
        r"over the 4 classes \(dimension 1\); got a row summing to 2",
    ):
        loss_fn(logits4, arr(np.array([[1.0, 1, 0, 0], [0.25, 0.25, 0.25, 0.25]], np.float32)))
    with pytest.raises(
        TypeError,
        match=r"CrossEntropyLoss: the target must be integer class indices or "
        r"floating-point probabilities, got dtype bool",
    ):
        loss_fn(logits4, arr(np.array([True, False])))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: expected a floating-point input .* int64"):
        loss_fn(arr(np.zeros((2, 4), np.int64)), arr(np.array([0, 1])))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: weight must have shape \(4,\), one per class, got \(3,\)"):
        nn.CrossEntropyLoss(weight=np.ones(3, np.float32))(logits4, arr(np.array([0, 1])))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be <= 1.0, got 1.5"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(
        ValueError, match=r"CrossEntropyLoss: reduction must be one of 'none', 'mean', 'sum', got 'avg'"
    ):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"softmax_cross_entropy_forward: target class 9 is out of range"):
        L.softmax_cross_entropy_forward(logits4, arr(np.array([9, 0])))


# ------------------------------------------------------------------ NLL
@given(
    seed=seeds,
    n=st.integers(1, 4),
    c=st.integers(2, 5),
    spatial=st.sampled_from([(), (3,)]),
    weighted=st.booleans(),
    with_ignored=st.booleans(),
    reduction=reductions,
)
def test_nll_loss_torch_parity_and_gradcheck(seed, n, c, spatial, weighted, with_ignored, reduction):
    torch = torch_or_skip()
    logits, target = _class_problem(seed, n, c, spatial, with_ignored)
    assume(reduction != "mean" or (target != -100).any())
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    weight = np.random.default_rng(seed + 1).uniform(0.2, 2.0, c) if weighted else None
    loss_fn = nn.NLLLoss(weight, reduction=reduction)
    loss = loss_fn(arr(log_probs), arr(target))
    dout = np.random.default_rng(seed + 2).standard_normal(target.shape) if reduction == "none" else np.array(1.0)
    grad = loss_fn.backward(arr(dout) if reduction == "none" else None)
    ref, ref_grad = torch_loss_and_grad(
        torch,
        lambda t: torch.nn.functional.nll_loss(
            t, torch.tensor(target), weight=None if weight is None else torch.tensor(weight), reduction=reduction
        ),
        log_probs,
        dout,
        reduction,
    )
    assert_close(np.asarray(loss), ref, what="loss")
    assert_close(grad, ref_grad, what="dinput")
    check_loss_module(loss_fn, log_probs, arr(target), reduction, seed)


def test_nll_rejects_probability_targets():
    with pytest.raises(TypeError, match=r"NLLLoss: expected integer class indices as the target, got dtype float64"):
        nn.NLLLoss()(arr(np.zeros((2, 3))), arr(np.full((2, 3), 1 / 3)))


# ------------------------------------------------------------------ distillation
def _torch_distillation(torch, student, labels, teacher, T, alpha):
    F = torch.nn.functional
    soft = F.kl_div(F.log_softmax(student / T, dim=1), F.softmax(teacher / T, dim=1), reduction="batchmean")
    return (1 - alpha) * F.cross_entropy(student, labels) + alpha * T * T * soft


@given(seed=seeds, n=st.integers(1, 5), c=st.integers(2, 6), T=st.floats(0.5, 8.0), alpha=st.floats(0.0, 1.0))
def test_distillation_torch_parity_and_gradcheck(seed, n, c, T, alpha):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    student, teacher = rng.standard_normal((n, c)) * 2, rng.standard_normal((n, c)) * 2
    labels = rng.integers(0, c, n)
    loss_fn = nn.DistillationLoss(temperature=T, alpha=alpha)
    loss = loss_fn(arr(student), arr(labels), arr(teacher))
    grad = loss_fn.backward(2.0)
    t = to_torch(student, requires_grad=True)
    ref = _torch_distillation(torch, t, torch.tensor(labels), torch.tensor(teacher), T, alpha)
    (2.0 * ref).backward()
    assert math.isclose(loss, ref.item(), rel_tol=1e-10, abs_tol=1e-12)
    assert_close(grad, t.grad, what="dstudent")
    gradcheck.check_function(
        L.distillation_loss_forward,
        L.distillation_loss_backward,
        [arr(student)],
        {"target": arr(labels), "teacher_logits": arr(teacher), "temperature": T, "alpha": alpha},
    )


def test_distillation_limits_and_bad_input():
    rng = np.random.default_rng(0)
    student, teacher = arr(rng.standard_normal((4, 3))), arr(rng.standard_normal((4, 3)))
    labels = arr(np.array([0, 1, 2, 0]))
    ce = nn.CrossEntropyLoss()(student, labels)
    assert math.isclose(nn.DistillationLoss(alpha=0.0)(student, labels, teacher), ce, rel_tol=1e-12)
    assert abs(nn.DistillationLoss(alpha=1.0)(student, labels, student)) < 1e-12  # KL(p || p) = 0
    assert repr(nn.DistillationLoss()) == "DistillationLoss(temperature=4.0, alpha=0.5)"
    with pytest.raises(
        ValueError,
        match=r"DistillationLoss: teacher logits of shape \(4, 2\) do not match the "
        r"student's \(4, 3\)",
    ):
        nn.DistillationLoss()(student, labels, arr(np.zeros((4, 2))))
    with pytest.raises(ValueError, match=r"DistillationLoss: temperature must be > 0.0, got 0.0"):
        nn.DistillationLoss(temperature=0)
    with pytest.raises(ValueError, match=r"DistillationLoss: alpha must be <= 1.0, got 1.5"):
        nn.DistillationLoss(alpha=1.5)
    with pytest.raises(ValueError, match=r"DistillationLoss: target class 3 is out of range"):
        nn.DistillationLoss()(student, arr(np.array([0, 1, 2, 3])), teacher)


def test_training_step_through_a_model():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = arr(np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32))
    y = arr(np.array([0, 1, 2, 0, 1, 2]))
    loss = loss_fn(model(x), y)
    model.zero_grad()
    dx = model.backward(loss_fn.backward())
    assert isinstance(loss, float) and dx.shape == (6, 4) and dx.dtype == np.float32
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_minus_inf_entry_the_target_puts_no_weight_on_adds_nothing(backend):
    # logits masked with -inf, log(0) fed to NLLLoss, an ignored row: 0 * -inf made the loss NaN (PyTorch reads only
    # the target's entries: 0.3133, 0.6803, 0.9163)
    if backend == "numba":
        pytest.importorskip("numba")
    with minidl.use_backend(backend):
        assert nn.CrossEntropyLoss()(np.array([[-np.inf, 0.0, 1.0]]), np.array([2])) == pytest.approx(0.31326168751822)
        masked = np.array([[-np.inf, 0.0, 1.0], [0.5, 0.0, 1.0]])
        assert nn.CrossEntropyLoss()(masked, np.array([-100, 2])) == pytest.approx(0.68026967064173)
        with np.errstate(divide="ignore"):
            log_probs = np.log(np.array([[0.0, 0.4, 0.6]]))
        assert nn.NLLLoss()(log_probs, np.array([1])) == pytest.approx(0.91629073187415)
        assert nn.CrossEntropyLoss(label_smoothing=0.1)(np.array([[-np.inf, 0.0, 1.0]]), np.array([2])) == np.inf


def test_a_target_the_cast_to_the_inputs_dtype_would_overflow_is_refused():
    with pytest.raises(
        ValueError, match=r"MSELoss: the float64 target holds values beyond the range of the input's dtype"
    ):
        nn.MSELoss()(np.zeros(2, np.float16), np.array([1e5, 1.0]))  # (it became inf)
    assert nn.MSELoss()(np.zeros(2, np.float32), np.array([1.0, 2.0])) == pytest.approx(2.5)
