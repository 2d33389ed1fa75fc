"""Module hooks (minidl.nn.hooks): PyTorch's call order and arguments on a nested model, changing values through
hooks, handles, fusion and copies."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import minidl
from minidl import nn
from tests.helpers import TEST_BACKEND


def _nested_pair():
    """The same nested model in minidl and (when installed) PyTorch, with the same float64 weights."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    tmodel = tnn.Sequential(
        tnn.Linear(3, 4), tnn.ReLU(), tnn.Sequential(tnn.Linear(4, 4), tnn.Tanh()), tnn.Linear(4, 2)
    ).double()
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 2))
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    return torch, model.double(), tmodel


def _record(model, events, named_modules, *, torch_grads=False):
    """Register all four kinds of hooks on every module, appending (kind, name, arrays) to events."""
    as_np = (lambda t: None if t is None else t.detach().numpy().copy()) if torch_grads else (lambda a: a)
    handles = []
    for name, module in named_modules(model):
        name = name or "root"
        handles += [
            module.register_forward_pre_hook(
                lambda m, args, n=name: events.append(("pre", n, [as_np(a) for a in args]))
            ),
            module.register_forward_hook(lambda m, args, out, n=name: events.append(("fwd", n, [as_np(out)]))),
            module.register_full_backward_pre_hook(
                lambda m, gout, n=name: events.append(("bpre", n, [as_np(g) for g in gout]))
            ),
            module.register_full_backward_hook(
                lambda m, gin, gout, n=name: events.append(("bwd", n, [as_np(g) for g in gin + gout]))
            ),
        ]
    return handles


def test_hooks_match_pytorch_call_order_and_arguments_on_a_nested_model():
    torch, model, tmodel = _nested_pair()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3))
    dout = rng.standard_normal((5, 2))

    ours: list = []
    _record(model, ours, lambda m: m.named_modules())
    model(x)
    model.backward(dout)

    theirs: list = []
    _record(tmodel, theirs, lambda m: m.named_modules(), torch_grads=True)
    tx = torch.tensor(x, requires_grad=True)
    tmodel(tx).backward(torch.tensor(dout))

    assert [(kind, name) for kind, name, _ in ours] == [(kind, name) for kind, name, _ in theirs]
    assert ours[0][:2] == ("pre", "root") and ours[-1][:2] == ("bwd", "root")
    for (kind, name, a), (_, _, b) in zip(ours, theirs, strict=True):
        assert len(a) == len(b), (kind, name)
        for u, v in zip(a, b, strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14, err_msg=f"{kind} hook of {name}")


def test_values_returned_by_hooks_replace_inputs_outputs_and_gradients_as_in_pytorch():
    torch, model, tmodel = _nested_pair()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3))
    dout = rng.standard_normal((4, 2))

    def attach(m):
        m[0].register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
        m[1].register_forward_hook(lambda mod, args, out: out + 1)
        m[2].register_full_backward_pre_hook(lambda mod, gout: (gout[0] * 3,))
        m[2][0].register_full_backward_hook(lambda mod, gin, gout: (gin[0] * -1,))

    attach(model)
    attach(tmodel)
    out = model(x)
    dx = model.backward(dout)
    tx = torch.tensor(x, requires_grad=True)
    tout = tmodel(tx)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12)
    # minidl has no tape: the pre-hook's x * 2 is not differentiated, so dx is the gradient with respect to the
    # doubled input, where PyTorch's chain rule also multiplies by the hook's 2
    np.testing.assert_allclose(dx, tx.grad.numpy() / 2, rtol=1e-12)
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12, err_msg=name)


def _model():
    minidl.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_remove_prepend_context_manager_and_with_kwargs():
    model = _model()
    calls = []
    h1 = model[1].register_forward_hook(lambda m, a, o: calls.append("first"))
    h2 = model[1].register_forward_hook(lambda m, a, o: calls.append("prepended"), prepend=True)
    x = np.ones((2, 3), np.float32)
    model(x)
    assert calls == ["prepended", "first"]
    h1.remove()
    h1.remove()  # a second remove does nothing
    model(x)
    assert calls == ["prepended", "first", "prepended"]
    h2.remove()
    with model[1].register_forward_hook(lambda m, a, o: calls.append("scoped")):
        model(x)
    model(x)
    assert calls[-1] == "scoped" and len(calls) == 4
    seen = {}
    model[0].register_forward_pre_hook(lambda m, args, kwargs: seen.update(kwargs=dict(kwargs)), with_kwargs=True)
    model[0].register_forward_hook(lambda m, args, kwargs, out: seen.update(out=out.shape), with_kwargs=True)
    model(x)
    assert seen == {"kwargs": {}, "out": (2, 4)}


def test_with_kwargs_pre_hook_replaces_args_and_kwargs():
    model = _model()
    model[0].register_forward_pre_hook(lambda m, args, kwargs: ((args[0] * 0,), kwargs), with_kwargs=True)
    out = model[0](np.ones((2, 3), np.float32))
    np.testing.assert_allclose(out, np.broadcast_to(model[0].bias.data, (2, 4)))


def test_always_call_runs_the_hook_when_forward_raises():
    model = _model()
    seen = []
    model[0].register_forward_hook(lambda m, a, o: seen.append(o), always_call=True)
    model[0].register_forward_hook(lambda m, a, o: seen.append("not always"))
    with pytest.raises(ValueError, match="Linear"):
        model[0](np.ones((2, 5), np.float32))
    assert seen == [None]


def test_backward_hooks_see_parameter_gradients_and_stop_after_remove():
    model = _model()
    norms = []
    handle = model[0].register_full_backward_hook(lambda m, gin, gout: norms.append(float(np.abs(m.weight.grad).sum())))
    x = np.ones((2, 3), np.float32)
    model(x)
    model.backward(np.ones((2, 2), np.float32))
    assert len(norms) == 1 and norms[0] > 0
    handle.remove()
    model(x)
    model.backward(np.ones((2, 2), np.float32))
    assert len(norms) == 1
    assert "backward" not in model[0].__dict__  # the last backward hook gone: the class's backward runs directly


def test_a_hooked_module_is_not_fused_and_its_hooks_still_run_in_the_fused_copy():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(8, 8))
    net2 = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4), nn.ReLU())
    assert type(nn.fuse(net)[0]).__name__ == "ConvBn2d"
    seen = []
    net[2].register_forward_hook(lambda m, a, o: seen.append(float(o.min())))
    fused = nn.fuse(net)
    assert type(fused[0]).__name__ == "ConvBn2d" and type(fused[1]).__name__ == "FoldedBatchNorm2d"
    assert type(fused[2]) is nn.ReLU  # kept: its hook needs it
    net2[1].register_full_backward_hook(lambda m, gin, gout: seen.append("backward"))
    fused2 = nn.fuse(net2)
    assert [type(m).__name__ for m in fused2] == ["BatchNorm2d", "ReLU", "BatchNormReLU2d", "Identity"]
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)
    fused2(x)
    fused2.backward(np.ones_like(x))
    assert seen == ["backward"]


def _double_grad_input(module, grad_input, grad_output):  # module level, so that it pickles
    return tuple(2 * g for g in grad_input)


def test_deepcopy_and_pickle_keep_hooks_working_on_the_copy():
    model = _model()
    model[2].register_full_backward_hook(_double_grad_input)
    x = np.ones((2, 3), np.float32)
    dout = np.ones((2, 2), np.float32)
    model(x)
    expected = model.backward(dout)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone[2].backward.__self__ is clone[2]
        clone(x)
        np.testing.assert_allclose(clone.backward(dout), expected)


def test_hooks_run_on_every_backend():
    model = _model().to(TEST_BACKEND)
    seen = []
    model[1].register_full_backward_hook(lambda m, gin, gout: seen.append(type(gin[0]).__module__))
    x = minidl.backend.get_backend(TEST_BACKEND).asarray(np.ones((2, 3), np.float32))
    model(x)
    model.backward(minidl.backend.get_backend(TEST_BACKEND).asarray(np.ones((2, 2), np.float32)))
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("register", "hook", "message"),
    [
        ("register_forward_hook", 3, r"Linear.register_forward_hook: expected a callable hook, got int 3"),
        ("register_full_backward_hook", None, r"register_full_backward_hook: expected a callable hook, got NoneType"),
    ],
)
def test_a_hook_that_is_not_callable_is_refused(register, hook, message):
    with pytest.raises(TypeError, match=message):
        getattr(nn.Linear(2, 2), register)(hook)


def test_a_flag_that_is_not_a_bool_is_refused():
    with pytest.raises(TypeError, match=r"register_forward_pre_hook: prepend must be a bool, got 'yes' \(str\)"):
        nn.ReLU().register_forward_pre_hook(lambda m, a: None, prepend="yes")


def test_a_backward_hook_returning_the_wrong_number_of_gradients_is_refused():
    model = _model()
    model[1].register_full_backward_hook(lambda m, gin, gout: (gin[0], gin[0]))
    model(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"backward hook .* of ReLU returned 2 gradient\(s\), expected 1"):
        model.backward(np.ones((2, 2), np.float32))


def test_a_backward_hook_changing_a_gradient_shape_is_refused_by_name():
    model = _model()
    model[2].register_full_backward_hook(lambda m, gin, gout: (np.ones((5, 5), np.float32),))
    model(np.ones((2, 3), np.float32))
    with pytest.raises(
        ValueError,
        match=r"backward hook .* of Linear.* returned grad_input\[0\] of shape \(5, 5\), expected .* \(2, 4\)",
    ):
        model.backward(np.ones((2, 2), np.float32))
