"""Learning-rate schedulers: the same lr (and momentum) sequences as torch.optim.lr_scheduler, state_dict, errors."""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import nn, optim
from minidl.optim import lr_scheduler as ours_module
from tests.helpers import arr, torch_or_skip

STEPS = 120


def _decay(epoch):
    return 0.97**epoch


def _bump(epoch):
    return 1.0 + 0.5 * math.sin(epoch / 5.0)


# name -> (optimizer kind, factory(lr_scheduler module, optimizer) -> scheduler)
CONFIGS = {
    "StepLR": ("sgd", lambda m, o: m.StepLR(o, step_size=7, gamma=0.5)),
    "StepLR-default-gamma": ("sgd", lambda m, o: m.StepLR(o, 30)),
    "MultiStepLR": ("sgd", lambda m, o: m.MultiStepLR(o, milestones=[10, 30, 30, 80], gamma=0.3)),
    "ExponentialLR": ("sgd", lambda m, o: m.ExponentialLR(o, gamma=0.97)),
    "CosineAnnealingLR": ("sgd", lambda m, o: m.CosineAnnealingLR(o, T_max=100)),
    "CosineAnnealingLR-past-T_max": ("sgd", lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=1e-3)),
    "LinearLR-default": ("sgd", lambda m, o: m.LinearLR(o)),
    "LinearLR-warmup": ("sgd", lambda m, o: m.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=20)),
    "LinearLR-decay": ("adam", lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=50)),
    "ConstantLR": ("sgd", lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=10)),
    "PolynomialLR": ("sgd", lambda m, o: m.PolynomialLR(o, total_iters=60, power=2.0)),
    "LambdaLR": ("sgd", lambda m, o: m.LambdaLR(o, _decay)),
    "LambdaLR-per-group": ("sgd", lambda m, o: m.LambdaLR(o, [_decay, _bump])),
    "MultiplicativeLR": ("sgd", lambda m, o: m.MultiplicativeLR(o, lambda e: 0.98)),
    "SequentialLR-warmup-cosine": (
        "sgd",
        lambda m, o: m.SequentialLR(
            o,
            [m.LinearLR(o, start_factor=0.01, total_iters=10), m.CosineAnnealingLR(o, T_max=110, eta_min=1e-4)],
            milestones=[10],
        ),
    ),
    "SequentialLR-three": (
        "adam",
        lambda m, o: m.SequentialLR(
            o,
            [m.ConstantLR(o, factor=0.2, total_iters=5), m.ExponentialLR(o, gamma=0.9), m.StepLR(o, 10)],
            milestones=[5, 40],
        ),
    ),
    "ChainedScheduler": (
        "sgd",
        lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.5, total_iters=5), m.ExponentialLR(o, gamma=0.95)]),
    ),
    "CosineAnnealingWarmRestarts": ("sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7)),
    "CosineAnnealingWarmRestarts-mult": (
        "sgd",
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-4),
    ),
    "OneCycleLR-sgd-momentum": ("sgd", lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.1], total_steps=STEPS)),
    "OneCycleLR-three-phase-linear": (
        "sgd",
        lambda m, o: m.OneCycleLR(
            o,
            max_lr=0.5,
            epochs=10,
            steps_per_epoch=12,
            three_phase=True,
            anneal_strategy="linear",
            base_momentum=0.8,
            max_momentum=[0.9, 0.99],
        ),
    ),
    "OneCycleLR-adam-beta1": ("adam", lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=STEPS, pct_start=0.25)),
    "OneCycleLR-no-momentum": (
        "adam",
        lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=STEPS, cycle_momentum=False, div_factor=10.0),
    ),
}

rng = np.random.default_rng(0)
# a validation loss that improves, plateaus, gets noisy: exercises patience, cooldown and the threshold
METRIC = list(np.concatenate([np.linspace(2.0, 1.0, 30), np.full(30, 1.0), 1.0 + 0.01 * rng.standard_normal(60)]))

PLATEAU = {
    "min-rel": {"patience": 3, "cooldown": 2},
    "min-abs": {"mode": "min", "threshold_mode": "abs", "threshold": 0.01, "patience": 2, "factor": 0.5},
    "max-rel": {"mode": "max", "patience": 4, "factor": 0.7, "min_lr": [0.05, 0.001]},
    "max-abs-eps": {"mode": "max", "threshold_mode": "abs", "threshold": 0.0, "patience": 0, "eps": 1e-3},
}


def _make_optimizer(module, kind):
    """The same two-group optimizer in minidl or torch (lrs 0.1 and 0.01)."""
    if module is optim:
        a, b = nn.Parameter(arr(np.zeros(2))), nn.Parameter(arr(np.zeros(3)))
    else:
        a, b = module.zeros(2, requires_grad=True), module.zeros(3, requires_grad=True)
        module = module.optim
    groups = [{"params": [a]}, {"params": [b], "lr": 0.01}]
    if kind == "sgd":
        return module.SGD(groups, lr=0.1, momentum=0.9)
    return module.Adam(groups, lr=0.1)


def _trace(opt, sched, steps, metric=None):
    rows = []
    for t in range(steps):
        rows.append(
            (
                sched.get_last_lr(),
                [g["lr"] for g in opt.param_groups],
                [g.get("momentum") for g in opt.param_groups],
                [tuple(g["betas"]) if "betas" in g else None for g in opt.param_groups],
            )
        )
        opt.step()
        sched.step() if metric is None else sched.step(metric[t])
    return rows


def _compare(ours, theirs, what):
    assert len(ours) == len(theirs)
    for t, (row_a, row_b) in enumerate(zip(ours, theirs, strict=True)):
        for a, b in zip(row_a, row_b, strict=True):
            a = np.asarray([np.nan if v is None else v for v in a], dtype=np.float64)
            b = np.asarray([np.nan if v is None else v for v in b], dtype=np.float64)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, equal_nan=True, err_msg=f"{what}, step {t}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_lr_sequence_matches_torch(name):
    torch = torch_or_skip()
    kind, factory = CONFIGS[name]
    opt, topt = _make_optimizer(optim, kind), _make_optimizer(torch, kind)
    ours, theirs = (
        _trace(opt, factory(ours_module, opt), STEPS),
        _trace(topt, factory(torch.optim.lr_scheduler, topt), STEPS),
    )
    _compare(ours, theirs, name)
    assert len({tuple(row[0]) for row in ours}) > 1 or name.startswith("StepLR-default"), "the lr never changed"


@pytest.mark.parametrize("name", list(PLATEAU))
def test_reduce_lr_on_plateau_matches_torch(name):
    torch = torch_or_skip()
    opt, topt = _make_optimizer(optim, "sgd"), _make_optimizer(torch, "sgd")
    metric = METRIC if not name.startswith("max") else [-m for m in METRIC]
    ours = _trace(opt, ours_module.ReduceLROnPlateau(opt, **PLATEAU[name]), STEPS, metric)
    theirs = _trace(topt, torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **PLATEAU[name]), STEPS, metric)
    _compare(ours, theirs, name)
    assert ours[-1][0] != ours[0][0], "the lr was never reduced"


@given(
    T_max=st.integers(1, 40),
    eta_min=st.sampled_from([0.0, 1e-4, 0.005]),
    step_size=st.integers(1, 15),
    gamma=st.floats(0.1, 0.99),
    start_factor=st.floats(0.01, 1.0),
    total_iters=st.integers(1, 30),
)
def test_random_hyperparameters_match_torch(T_max, eta_min, step_size, gamma, start_factor, total_iters):
    torch = torch_or_skip()
    for factory in (
        lambda m, o: m.CosineAnnealingLR(o, T_max=T_max, eta_min=eta_min),
        lambda m, o: m.StepLR(o, step_size=step_size, gamma=gamma),
        lambda m, o: m.SequentialLR(
            o,
            [m.LinearLR(o, start_factor=start_factor, total_iters=total_iters), m.CosineAnnealingLR(o, T_max)],
            milestones=[total_iters],
        ),
        lambda m, o: m.OneCycleLR(
            o, max_lr=0.3, total_steps=60, pct_start=min(0.9, gamma), div_factor=1 / start_factor
        ),
    ):
        opt, topt = _make_optimizer(optim, "sgd"), _make_optimizer(torch, "sgd")
        _compare(
            _trace(opt, factory(ours_module, opt), 60), _trace(topt, factory(torch.optim.lr_scheduler, topt), 60), ""
        )


STATEFUL = [
    "StepLR",
    "MultiStepLR",
    "CosineAnnealingLR-past-T_max",
    "LinearLR-warmup",
    "LambdaLR",
    "MultiplicativeLR",
    "SequentialLR-warmup-cosine",
    "ChainedScheduler",
    "CosineAnnealingWarmRestarts-mult",
    "OneCycleLR-sgd-momentum",
    "OneCycleLR-adam-beta1",
    "PolynomialLR",
    "ConstantLR",
]


@pytest.mark.parametrize("name", STATEFUL + ["ReduceLROnPlateau"])
def test_state_dict_round_trip(name):
    def build():
        if name == "ReduceLROnPlateau":
            opt = _make_optimizer(optim, "sgd")
            return opt, ours_module.ReduceLROnPlateau(opt, patience=3, cooldown=2)
        kind, factory = CONFIGS[name]
        opt = _make_optimizer(optim, kind)
        return opt, factory(ours_module, opt)

    metric = METRIC if name == "ReduceLROnPlateau" else None
    opt, sched = build()
    uninterrupted = _trace(opt, sched, STEPS, metric)
    opt, sched = build()
    _trace(opt, sched, 50, metric)
    # plain data: survives JSON (what a checkpoint without pickle stores)
    saved_sched = json.loads(json.dumps(sched.state_dict()))
    saved_opt = copy.deepcopy(opt.state_dict())
    opt, sched = build()
    opt.load_state_dict(saved_opt)
    sched.load_state_dict(saved_sched)
    resumed = _trace(opt, sched, STEPS - 50, None if metric is None else metric[50:])
    _compare(resumed, uninterrupted[50:], f"{name} resumed at step 50")


def test_lambda_state_dict_skips_functions():
    opt = _make_optimizer(optim, "sgd")
    sched = ours_module.LambdaLR(opt, _decay)
    assert sched.state_dict()["lr_lambdas"] == [None, None]
    assert "optimizer" not in sched.state_dict()


def test_construction_sets_initial_lr_and_resume_needs_it():
    opt = _make_optimizer(optim, "sgd")
    sched = ours_module.ExponentialLR(opt, gamma=0.5)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.01] and sched.last_epoch == 0
    fresh = _make_optimizer(optim, "sgd")
    with pytest.raises(KeyError, match=r"param_groups\[0\] has no 'initial_lr'"):
        ours_module.ExponentialLR(fresh, gamma=0.5, last_epoch=3)


def test_warnings_on_wrong_order_and_get_lr():
    opt = _make_optimizer(optim, "sgd")
    sched = ours_module.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"before `optimizer.step\(\)`"):
        sched.step()
    with pytest.warns(UserWarning, match=r"get_last_lr\(\)"):
        sched.get_lr()
    opt = _make_optimizer(optim, "sgd")
    sched = ours_module.StepLR(opt, step_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
        sched.step()


def test_one_cycle_too_many_steps():
    opt = _make_optimizer(optim, "sgd")
    sched = ours_module.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="tried to step 4 times, but the cycle has total_steps=3"):
        sched.step()


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda o: ours_module.StepLR(o, step_size=0), ValueError, "StepLR: step_size must be >= 1, got 0"),
        (lambda o: ours_module.StepLR(o, step_size=2.5), TypeError, "step_size must be an int"),
        (lambda o: ours_module.StepLR(object(), 3), TypeError, "StepLR: expected a minidl.optim.Optimizer, got object"),
        (lambda o: ours_module.LinearLR(o, start_factor=0.0), ValueError, "start_factor must be > 0.0"),
        (lambda o: ours_module.LinearLR(o, end_factor=1.5), ValueError, "end_factor must be <= 1.0"),
        (lambda o: ours_module.ConstantLR(o, factor=2.0), ValueError, "factor must be <= 1.0"),
        (lambda o: ours_module.CosineAnnealingLR(o, T_max=0), ValueError, "T_max must be >= 1"),
        (lambda o: ours_module.MultiStepLR(o, milestones=[3, -1]), ValueError, "each milestone must be >= 0"),
        (lambda o: ours_module.LambdaLR(o, [_decay]), ValueError, r"one value per param group \(2\), got 1"),
        (lambda o: ours_module.LambdaLR(o, 0.5), TypeError, "lr_lambda must be a function"),
        (lambda o: ours_module.OneCycleLR(o, max_lr=0.1), ValueError, "either total_steps or both epochs"),
        (
            lambda o: ours_module.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"),
            ValueError,
            "anneal_strategy must be 'cos' or 'linear'",
        ),
        (lambda o: ours_module.OneCycleLR(o, 0.1, total_steps=10, pct_start=1.5), ValueError, "pct_start must be <="),
        (
            lambda o: ours_module.OneCycleLR(optim.Adagrad([nn.Parameter(arr(np.zeros(1)))]), 0.1, total_steps=10),
            ValueError,
            "needs an optimizer with a momentum or betas",
        ),
        (lambda o: ours_module.ReduceLROnPlateau(o, mode="avg"), ValueError, "mode must be 'min' or 'max', got 'avg'"),
        (lambda o: ours_module.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor must be < 1.0"),
        (lambda o: ours_module.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
        (lambda o: ours_module.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lr must have one value per"),
        (lambda o: ours_module.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "T_0 must be >= 1"),
        (
            lambda o: ours_module.SequentialLR(o, [ours_module.StepLR(o, 3)], milestones=[2]),
            ValueError,
            "one milestone fewer than schedulers",
        ),
        (
            lambda o: ours_module.SequentialLR(o, [ours_module.StepLR(_make_optimizer(optim, "sgd"), 3)], []),
            ValueError,
            "same optimizer",
        ),
        (
            lambda o: ours_module.ChainedScheduler([ours_module.ReduceLROnPlateau(o)]),
            ValueError,
            "does not support ReduceLROnPlateau",
        ),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make(_make_optimizer(optim, "sgd"))


def test_plateau_step_needs_a_number():
    opt = _make_optimizer(optim, "sgd")
    with pytest.raises(TypeError, match="expects the monitored metric"):
        ours_module.ReduceLROnPlateau(opt).step("loss")
