"""Optimizers: trajectories against torch.optim, state_dict round trips, in-place updates, bad input."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import nn, optim
from minidl.nn.regularization import l2_penalty
from minidl.nn.utils import clip_grad_norm_
from minidl.optim.lr_scheduler import OneCycleLR
from tests.helpers import arr, host, torch_or_skip

SHAPES = [(4, 3), (5,), (2, 3, 2), (3,)]  # params[3] is frozen; params[1] has no gradient every 4th step
STEPS = 60

# (optimizer, constructor kwargs, param groups: None or [(indices, overrides)])
CONFIGS = [
    ("SGD", {"lr": 0.05}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.05}, None),
    ("SGD", {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True}, None),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, [([0, 3], {"lr": 0.005}), ([1, 2], {"momentum": 0.5})]),
    ("Adam", {}, None),
    ("Adam", {"lr": 0.01}, None),
    ("Adam", {"lr": 0.01, "amsgrad": True}, None),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}, None),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}, None),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}, None),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6}, None),
    ("Adam", {"lr": 0.01}, [([0], {"lr": 0.001}), ([1, 2, 3], {"betas": (0.5, 0.9), "weight_decay": 0.01})]),
    ("AdamW", {}, None),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}, None),
    ("AdamW", {"lr": 0.01, "amsgrad": True, "maximize": True}, None),
    ("AdamW", {"lr": 0.01}, [([2, 0], {"lr": 0.001, "weight_decay": 0.0}), ([1, 3], {})]),
    ("RMSprop", {}, None),
    ("RMSprop", {"lr": 0.001, "centered": True}, None),
    ("RMSprop", {"lr": 0.001, "momentum": 0.9}, None),
    ("RMSprop", {"lr": 0.001, "momentum": 0.5, "centered": True, "weight_decay": 0.1}, None),
    ("RMSprop", {"lr": 0.002, "alpha": 0.9, "eps": 1e-6, "maximize": True}, None),
    ("RMSprop", {"lr": 0.001}, [([0, 1], {"lr": 0.0001, "centered": True}), ([2, 3], {"momentum": 0.9})]),
    ("Adagrad", {}, None),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01}, None),
    ("Adagrad", {"lr": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.1}, None),
    ("Adagrad", {"lr": 0.05, "eps": 1e-6, "maximize": True}, None),
    ("Adagrad", {"lr": 0.05}, [([3, 1], {"lr": 0.1}), ([0, 2], {"lr_decay": 0.05})]),
    ("Adadelta", {}, None),
    ("Adadelta", {"lr": 0.5, "rho": 0.5, "weight_decay": 0.1}, None),
    ("Adadelta", {"eps": 1e-4, "maximize": True}, None),
    ("Adadelta", {}, [([0, 1, 2], {"lr": 0.1}), ([3], {"rho": 0.95})]),
    ("Adamax", {}, None),
    ("Adamax", {"lr": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.99)}, None),
    ("Adamax", {"lr": 0.01, "maximize": True}, None),
    ("Adamax", {"lr": 0.01}, [([0], {"lr": 0.02}), ([1, 2, 3], {"eps": 1e-3})]),
    ("NAdam", {}, None),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1}, None),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}, None),
    ("NAdam", {"lr": 0.01, "momentum_decay": 0.01, "maximize": True}, None),
    ("NAdam", {"lr": 0.01}, [([1], {"lr": 0.001}), ([0, 2, 3], {"betas": (0.7, 0.95)})]),
]


def _problem(seed: int = 0, shapes=SHAPES, steps: int = STEPS):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in shapes]
    noise = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return init, noise


def _grad(noise, t: int, i: int, w: np.ndarray) -> np.ndarray:
    """A deterministic gradient that depends on the current parameters (nonconvex: the sin term)."""
    return noise[t][i] + 0.3 * np.sin(3 * w) + 0.2 * w


def _has_grad(t: int, i: int) -> bool:
    return not (i == 1 and t % 4 == 3)


def _groups(params, spec):
    if spec is None:
        return list(params)
    return [{"params": [params[j] for j in idx], **overrides} for idx, overrides in spec]


def run_minidl(name, kwargs, spec, init, noise, steps=STEPS, dtype=np.float64, opt_out=None):
    params = [nn.Parameter(arr(x.astype(dtype))) for x in init]
    params[-1].requires_grad = False
    opt = getattr(optim, name)(_groups(params, spec), **kwargs)
    ids = [id(p.data) for p in params]
    frozen_before = host(params[-1].data).copy()
    for t in range(steps):
        opt.zero_grad()
        for i, p in enumerate(params):
            if _has_grad(t, i):  # the frozen parameter gets a gradient too: the optimizer must skip it
                p.grad = arr(_grad(noise, t, i, host(p.data)).astype(dtype))
        grads_before = [None if p.grad is None else host(p.grad).copy() for p in params]
        opt.step()
        for p, g in zip(params, grads_before, strict=True):
            assert (p.grad is None) == (g is None)
            if g is not None:
                np.testing.assert_array_equal(host(p.grad), g, err_msg=f"{name}.step changed p.grad")
    assert [id(p.data) for p in params] == ids, f"{name}.step reallocated p.data"
    assert all(p.data.dtype == dtype for p in params)
    np.testing.assert_array_equal(host(params[-1].data), frozen_before, err_msg="a frozen parameter moved")
    if opt_out is not None:
        opt_out.append(opt)
    return [host(p.data) for p in params]


@contextlib.contextmanager
def _torch_float64(torch):
    # NAdam keeps mu_product in torch's default dtype: float64 makes torch compute it as minidl does
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def run_torch(name, kwargs, spec, init, noise, steps=STEPS, dtype=np.float64):
    torch = torch_or_skip()
    with _torch_float64(torch):
        tdtype = torch.float64 if dtype == np.float64 else torch.float32
        params = [torch.tensor(x.astype(dtype), dtype=tdtype, requires_grad=True) for x in init]
        params[-1].requires_grad_(False)
        opt = getattr(torch.optim, name)(_groups(params, spec), **kwargs)
        for t in range(steps):
            opt.zero_grad()
            for i, p in enumerate(params[:-1]):
                if _has_grad(t, i):
                    p.grad = torch.tensor(_grad(noise, t, i, p.detach().numpy().astype(np.float64)).astype(dtype))
            opt.step()
        return [p.detach().numpy().copy() for p in params]


def rel_error(actual, expected) -> float:
    return max(
        float(np.max(np.abs(a - e)) / max(np.max(np.abs(e)), 1e-300)) for a, e in zip(actual, expected, strict=True)
    )


@pytest.mark.parametrize(("name", "kwargs", "spec"), CONFIGS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CONFIGS)])
def test_trajectory_matches_torch(name, kwargs, spec):
    init, noise = _problem(seed=len(name))
    ours = run_minidl(name, kwargs, spec, init, noise)
    theirs = run_torch(name, kwargs, spec, init, noise)
    err = rel_error(ours, theirs)
    assert err < 1e-10, f"{name}({kwargs}, groups={spec}): worst relative error {err:.3g} after {STEPS} steps"
    assert rel_error(ours, init) > 1e-3, "the parameters barely moved: the test would not see a wrong update"


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_float32_trajectory(name):
    kwargs = {"lr": 0.01, "momentum": 0.9} if name != "Adam" else {"lr": 0.01, "amsgrad": True}
    init, noise = _problem(seed=3)
    out = []
    ours = run_minidl(name, kwargs, None, init, noise, steps=20, dtype=np.float32, opt_out=out)
    theirs = run_torch(name, kwargs, None, init, noise, steps=20, dtype=np.float32)
    assert rel_error(ours, theirs) < 1e-5
    for state in out[0].state.values():
        for value in state.values():
            if hasattr(value, "dtype"):
                assert value.dtype == np.float32


_OPTS = st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam"])


@given(
    name=_OPTS,
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    lr=st.floats(1e-4, 0.05),
    weight_decay=st.sampled_from([0.0, 0.01, 0.3]),
    flag=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_configurations_match_torch(name, shape, lr, weight_decay, flag, seed):
    extra = {
        "SGD": {"momentum": 0.9, "nesterov": flag},
        "Adam": {"amsgrad": flag},
        "AdamW": {"amsgrad": flag},
        "RMSprop": {"centered": flag, "momentum": 0.5 * flag},
        "Adagrad": {"lr_decay": 0.01 * flag},
        "Adadelta": {"maximize": flag},
        "Adamax": {"maximize": flag},
        "NAdam": {"decoupled_weight_decay": flag},
    }[name]
    kwargs = {"lr": lr, "weight_decay": weight_decay, **extra}
    shapes = [shape, (2,), (3,), (1,)]
    init, noise = _problem(seed, shapes, steps=12)
    ours = run_minidl(name, kwargs, None, init, noise, steps=12)
    theirs = run_torch(name, kwargs, None, init, noise, steps=12)
    assert rel_error(ours, theirs) < 1e-10, f"{name}({kwargs}), shape {shape}"


ROUND_TRIP = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    ("AdamW", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.001, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01}),
    ("Adadelta", {"rho": 0.8}),
    ("Adamax", {"lr": 0.01}),
    ("NAdam", {"lr": 0.01}),
]


def _save_without_pickle(state_dict):
    """Arrays to an .npz (allow_pickle=False), everything else to JSON, as a checkpoint would."""
    arrays, plain = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for index, entries in state_dict["state"].items():
        plain["state"][index] = {}
        for key, value in entries.items():
            if hasattr(value, "shape"):
                arrays[f"{index}.{key}"] = host(value)
                plain["state"][index][key] = "@array"
            else:
                plain["state"][index][key] = value
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return json.dumps(plain), buffer.getvalue()


def _load_without_pickle(text, blob):
    plain = json.loads(text)  # int keys become strings, tuples lists: load_state_dict must accept both
    with np.load(io.BytesIO(blob), allow_pickle=False) as files:
        for index, entries in plain["state"].items():
            for key, value in entries.items():
                if value == "@array":
                    entries[key] = files[f"{index}.{key}"]
    return plain


@pytest.mark.parametrize(("name", "kwargs"), ROUND_TRIP, ids=[c[0] for c in ROUND_TRIP])
@pytest.mark.parametrize("through_files", [False, True])
def test_state_dict_round_trip_mid_trajectory(name, kwargs, through_files):
    init, noise = _problem(seed=7)
    spec = [([0, 3], {"lr": kwargs.get("lr", 1.0) / 10}), ([1, 2], {})]
    uninterrupted = run_minidl(name, kwargs, spec, init, noise, steps=40)
    # first 20 steps, save, then a new optimizer on new parameters loads it and runs the remaining 20
    out = []
    noise_a = noise[:20]
    part = run_minidl(name, kwargs, spec, init, noise_a, steps=20, opt_out=out)
    saved = copy.deepcopy(out[0].state_dict())
    if through_files:
        saved = _load_without_pickle(*_save_without_pickle(saved))
    params = [nn.Parameter(arr(x)) for x in part]
    params[-1].requires_grad = False
    opt = getattr(optim, name)(_groups(params, spec), **kwargs)
    opt.load_state_dict(saved)
    for t in range(20, 40):
        opt.zero_grad()
        for i, p in enumerate(params):
            if _has_grad(t, i):
                p.grad = arr(_grad(noise, t, i, host(p.data)))
        opt.step()
    resumed = [host(p.data) for p in params]
    for a, b in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "kwargs"), ROUND_TRIP, ids=[c[0] for c in ROUND_TRIP])
def test_load_torch_state_dict_and_continue(name, kwargs):
    torch = torch_or_skip()
    init, noise = _problem(seed=11)
    with _torch_float64(torch):
        tparams = [torch.tensor(x, requires_grad=True) for x in init]
        topt = getattr(torch.optim, name)(tparams, **kwargs)
        for t in range(40):
            if t == 20:
                params = [nn.Parameter(arr(p.detach().numpy().copy())) for p in tparams]
                opt = getattr(optim, name)(params, **kwargs)
                opt.load_state_dict(copy.deepcopy(topt.state_dict()))
            topt.zero_grad()
            for i, p in enumerate(tparams):
                p.grad = torch.tensor(_grad(noise, t, i, p.detach().numpy()))
                if t >= 20:
                    params[i].grad = arr(_grad(noise, t, i, host(params[i].data)))
            topt.step()
            if t >= 20:
                opt.step()
    assert rel_error([host(p.data) for p in params], [p.detach().numpy() for p in tparams]) < 1e-10
    assert sorted(opt.state_dict()["state"][0]) == sorted(topt.state_dict()["state"][0])


def test_state_dict_layout():
    a, b, c = (nn.Parameter(arr(np.ones(n))) for n in (2, 3, 4))
    opt = optim.Adam([{"params": [a, b], "lr": 0.1}, {"params": [c]}], lr=0.01)
    for p in (a, c):
        p.grad = arr(np.ones(p.shape))
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert [g["lr"] for g in sd["param_groups"]] == [0.1, 0.01]
    assert sorted(sd["state"]) == [0, 2]  # b had no gradient: no state
    assert sd["state"][0]["step"] == 1 and sorted(sd["state"][0]) == ["exp_avg", "exp_avg_sq", "step"]
    assert "Adam (" in repr(opt) and "Parameter Group 1" in repr(opt)


def test_zero_grad_closure_and_add_param_group():
    w = nn.Parameter(arr(np.array([1.0, -2.0])))
    opt = optim.SGD([w], lr=0.1)
    w.grad = arr(np.ones(2))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(host(w.grad), 0.0)
    opt.zero_grad()
    assert w.grad is None

    def closure():
        opt.zero_grad()
        w.grad = 2 * w.data
        return float((host(w.data) ** 2).sum())

    assert opt.step(closure) == 5.0
    np.testing.assert_allclose(host(w.data), [0.8, -1.6])
    v = nn.Parameter(arr(np.array([1.0])))
    opt.add_param_group({"params": v, "lr": 1.0})
    v.grad = arr(np.array([0.5]))
    opt.step()
    np.testing.assert_allclose(host(v.data), [0.5])
    ada = optim.Adagrad([w], lr=0.1)
    ada.add_param_group({"params": [v]})
    v.grad = arr(np.array([0.5]))
    ada.step()
    assert ada.state[v]["step"] == 1


def test_named_parameters_are_accepted():
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: optim.SGD(p, lr=0.1), TypeError, "iterable of Parameters"),
        (lambda p: optim.SGD(nn.Linear(2, 2), lr=0.1), TypeError, r"model\.parameters\(\)"),
        (lambda p: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
        (lambda p: optim.SGD([p, p], lr=0.1), ValueError, "more than once"),
        (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1), ValueError, "more than one parameter group"),
        (lambda p: optim.SGD({p}, lr=0.1), TypeError, "not a set"),
        (lambda p: optim.SGD([np.zeros(3)], lr=0.1), TypeError, r"params\[0\] is a ndarray"),
        (lambda p: optim.SGD([p], lr=-0.1), ValueError, r"SGD: lr must be >= 0.0, got -0.1"),
        (lambda p: optim.Adam([p], lr=float("nan")), ValueError, "lr must be finite"),
        (lambda p: optim.Adam([p], lr="0.1"), TypeError, "lr must be a real number"),
        (lambda p: optim.SGD([p], lr=0.1, momentum=-0.5), ValueError, "momentum must be >= 0"),
        (lambda p: optim.SGD([p], lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires a momentum > 0"),
        (lambda p: optim.SGD([p], momentum=0.9, dampening=0.1, nesterov=True), ValueError, "zero dampening"),
        (lambda p: optim.SGD([{"params": [p], "lr": -1}], lr=0.1), ValueError, r"SGD \(param group 0\): lr"),
        (lambda p: optim.Adam([p], betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be < 1.0, got 1.0"),
        (lambda p: optim.Adam([p], betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be >= 0.0"),
        (lambda p: optim.Adam([p], betas=0.9), TypeError, "betas must be a pair"),
        (lambda p: optim.AdamW([p], eps=-1e-8), ValueError, "eps must be >= 0"),
        (lambda p: optim.Adam([p], weight_decay=-1e-4), ValueError, "weight_decay must be >= 0"),
        (lambda p: optim.Adam([p], amsgrad="yes"), TypeError, "amsgrad must be True or False"),
        (lambda p: optim.RMSprop([p], alpha=-0.1), ValueError, "alpha must be >= 0"),
        (lambda p: optim.Adagrad([p], lr_decay=-1), ValueError, "lr_decay must be >= 0"),
        (lambda p: optim.Adadelta([p], rho=1.5), ValueError, "rho must be <= 1.0"),
        (lambda p: optim.NAdam([p], momentum_decay=-1), ValueError, "momentum_decay must be >= 0"),
        (lambda p: optim.SGD([{"lr": 0.1}]), ValueError, "needs a 'params' entry"),
    ],
)
def test_bad_arguments(make, error, match):
    p = nn.Parameter(arr(np.zeros(3)))
    with pytest.raises(error, match=match):
        make(p)


def test_bad_state_dict_and_gradient():
    p, q = nn.Parameter(arr(np.zeros(3))), nn.Parameter(arr(np.zeros(2)))
    opt = optim.Adam([p, q])
    other = optim.Adam([p])
    with pytest.raises(ValueError, match="group 0 has 1 parameters in the state dict but 2 in the optimizer"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="2 parameter groups, the optimizer has 1"):
        opt.load_state_dict({"state": {}, "param_groups": [{"params": [0]}, {"params": [1]}]})
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"params": []})
    bad = {
        "state": {0: {"step": 1, "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(3)}},
        "param_groups": opt.state_dict()["param_groups"],
    }
    with pytest.raises(ValueError, match=r"state 'exp_avg' has shape \(4,\), the parameter \(3,\)"):
        opt.load_state_dict(bad)
    p.grad = arr(np.zeros(4))
    with pytest.raises(ValueError, match=r"gradient of shape \(4,\) was set on a parameter of shape \(3,\)"):
        opt.step()
    with pytest.raises(TypeError, match="closure must be callable"):
        opt.step(closure=1.0)


def test_training_loop_matches_torch():
    """A whole step of the training stack, 30 times: forward, backward, L2 penalty, gradient clipping, AdamW,
    OneCycleLR; the weights follow PyTorch's."""
    torch = torch_or_skip()
    minidl.set_default_dtype(np.float64)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((32, 6)), rng.standard_normal((32, 2))
    model, tmodel = nn.Linear(6, 2), torch.nn.Linear(6, 2).double()
    with torch.no_grad():
        tmodel.weight.copy_(torch.tensor(host(model.weight.data)))
        tmodel.bias.copy_(torch.tensor(host(model.bias.data)))
    loss_fn = nn.MSELoss()
    opt = optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    topt = torch.optim.AdamW(tmodel.parameters(), lr=0.05, weight_decay=0.1)
    sched, tsched = OneCycleLR(opt, 0.1, total_steps=30), torch.optim.lr_scheduler.OneCycleLR(topt, 0.1, total_steps=30)
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(model(arr(x)), arr(y))
        model.backward(loss_fn.backward())
        loss += l2_penalty([model.weight], 0.01)
        norm = clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        sched.step()
        topt.zero_grad()
        tloss = torch.nn.functional.mse_loss(tmodel(torch.tensor(x)), torch.tensor(y))
        tloss = tloss + 0.005 * (tmodel.weight**2).sum()
        tloss.backward()
        tnorm = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.5)
        topt.step()
        tsched.step()
        np.testing.assert_allclose(loss, float(tloss.detach()), rtol=1e-10)
        np.testing.assert_allclose(norm, float(tnorm), rtol=1e-10)
    for p, t in ((model.weight, tmodel.weight), (model.bias, tmodel.bias)):
        np.testing.assert_allclose(host(p.data), t.detach().numpy(), rtol=1e-10, atol=1e-12)
