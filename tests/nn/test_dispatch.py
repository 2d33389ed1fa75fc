"""What a student reads is what runs: every Module computes through its pair in ``minidl.nn.functional`` (replace a
pair and the module computes what the replacement returns), and fast kernels come in through one seam only."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.nn import dispatch, functional
from minidl.nn.dispatch import F, KernelCache, declared_ops, kernel_for
from tests.helpers import arr, host


def images(*shape: int) -> Callable[[], Any]:
    return lambda: arr(np.random.default_rng(0).uniform(0.1, 1.0, shape).astype(np.float32))


def fused(module: nn.Module, eval_mode: bool = False) -> Callable[[], nn.Module]:
    """A factory of ``nn.fuse(module)``'s fused module at index 0 or 1 (for the fused module classes)."""

    def make() -> nn.Module:
        model = nn.fuse(module.eval() if eval_mode else module)
        return next(m for m in model if type(m).__module__ == "minidl.nn.fusion")

    return make


def classes_targets(n: int, c: int) -> Callable[[], Any]:
    return lambda: np.arange(n) % c


# module factory, input factories, the pairs it computes through
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[Callable[[], Any], ...], tuple[str, ...]]] = {
    "ReLU": (nn.ReLU, (images(2, 3),), ("relu",)),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.1), (images(2, 3),), ("leaky_relu",)),
    "Hardtanh": (nn.Hardtanh, (images(2, 3),), ("hardtanh",)),
    "ReLU6": (nn.ReLU6, (images(2, 3),), ("relu6",)),
    "Hardswish": (nn.Hardswish, (images(2, 3),), ("hardswish",)),
    "Sigmoid": (nn.Sigmoid, (images(2, 3),), ("sigmoid",)),
    "Tanh": (nn.Tanh, (images(2, 3),), ("tanh",)),
    "Softmax": (lambda: nn.Softmax(dim=1), (images(2, 3),), ("softmax",)),
    "LogSoftmax": (lambda: nn.LogSoftmax(dim=1), (images(2, 3),), ("log_softmax",)),
    "ELU": (nn.ELU, (images(2, 3),), ("elu",)),
    "GELU": (nn.GELU, (images(2, 3),), ("gelu",)),
    "SiLU": (nn.SiLU, (images(2, 3),), ("silu",)),
    "Softplus": (nn.Softplus, (images(2, 3),), ("softplus",)),
    "Mish": (nn.Mish, (images(2, 3),), ("mish",)),
    "Add": (nn.Add, (images(2, 3), images(2, 3)), ("add",)),
    "AddReLU": (nn.AddReLU, (images(2, 3), images(2, 3)), ("add_relu", "add", "relu")),
    "ChannelMul": (nn.ChannelMul, (images(2, 3, 4, 4), images(2, 3, 1, 1)), ("channel_mul",)),
    "ChannelShuffle": (lambda: nn.ChannelShuffle(2), (images(2, 4, 3, 3),), ("channel_shuffle",)),
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1), (images(2, 2, 5, 5),), ("conv2d",)),
    "Conv2d(padding_mode)": (
        lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
        (images(2, 2, 5, 5),),
        ("conv2d", "pad2d"),
    ),
    "Linear": (lambda: nn.Linear(3, 2), (images(4, 3),), ("linear",)),
    "Flatten": (nn.Flatten, (images(2, 3, 4),), ("flatten",)),
    "Permute": (lambda: nn.Permute([0, 2, 1]), (images(2, 3, 4),), ("permute",)),
    "Mul": (lambda: nn.Mul(0.5), (images(2, 3, 4),), ("mul",)),
    "Dropout": (lambda: nn.Dropout(0.5), (images(4, 6),), ("dropout",)),
    "Dropout2d": (lambda: nn.Dropout2d(0.5), (images(4, 6, 2, 2),), ("dropout2d",)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (images(2, 2, 4, 4),), ("max_pool2d",)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), (images(2, 2, 4, 4),), ("avg_pool2d",)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d(1), (images(2, 2, 4, 4),), ("adaptive_avg_pool2d",)),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), (images(2, 2, 4, 4),), ("adaptive_max_pool2d",)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), (images(4, 3),), ("batch_norm",)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), (images(2, 3, 2, 2),), ("batch_norm",)),
    "LayerNorm": (lambda: nn.LayerNorm(3), (images(2, 3),), ("layer_norm",)),
    "GroupNorm": (lambda: nn.GroupNorm(1, 2), (images(2, 2, 2, 2),), ("group_norm",)),
    "InstanceNorm2d": (lambda: nn.InstanceNorm2d(2), (images(2, 2, 3, 3),), ("instance_norm",)),
    "LocalResponseNorm": (lambda: nn.LocalResponseNorm(2), (images(2, 3, 2, 2),), ("local_response_norm",)),
    "BatchNormReLU1d": (
        fused(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU())),
        (images(4, 3),),
        ("batch_norm_relu", "batch_norm", "relu"),
    ),
    "BatchNormReLU2d": (
        fused(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())),
        (images(2, 3, 2, 2),),
        ("batch_norm_relu", "batch_norm", "relu"),
    ),
    "ConvBn2d": (fused(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))), (images(2, 2, 4, 4),), ("conv2d",)),
    "FoldedBatchNorm2d": (
        lambda: nn.fuse(nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU()))[1],
        (images(2, 3, 2, 2),),
        ("batch_norm_relu", "batch_norm", "relu"),
    ),
    "FoldedBatchNorm2d(ReLU6)": (
        lambda: nn.fuse(nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU6()))[1],
        (images(2, 3, 2, 2),),
        ("batch_norm_relu6", "batch_norm", "relu6", "hardtanh"),
    ),
    "CrossEntropyLoss": (nn.CrossEntropyLoss, (images(4, 3), classes_targets(4, 3)), ("softmax_cross_entropy",)),
    "NLLLoss": (nn.NLLLoss, (images(4, 3), classes_targets(4, 3)), ("nll_loss",)),
    "DistillationLoss": (
        nn.DistillationLoss,
        (images(4, 3), classes_targets(4, 3), images(4, 3)),
        ("distillation_loss",),
    ),
    "MSELoss": (nn.MSELoss, (images(4, 3), images(4, 3)), ("mse_loss",)),
    "L1Loss": (nn.L1Loss, (images(4, 3), images(4, 3)), ("l1_loss",)),
    "SmoothL1Loss": (nn.SmoothL1Loss, (images(4, 3), images(4, 3)), ("smooth_l1_loss",)),
    "BCELoss": (nn.BCELoss, (images(4, 3), images(4, 3)), ("binary_cross_entropy",)),
    "BCEWithLogitsLoss": (
        nn.BCEWithLogitsLoss,
        (images(4, 3), images(4, 3)),
        ("binary_cross_entropy_with_logits",),
    ),
    "KLDivLoss": (nn.KLDivLoss, (images(4, 3), images(4, 3)), ("kl_div",)),
    # issue 14 (small and up-sampling layers)
    "DropPath": (lambda: nn.DropPath(0.5), (images(8, 3),), ("drop_path",)),
    "StochasticDepth": (lambda: nn.StochasticDepth(0.5, "row"), (images(8, 3),), ("drop_path",)),
    "LayerScale": (lambda: nn.LayerScale(3, init_values=0.5), (images(2, 3),), ("layer_scale",)),
    "PReLU": (lambda: nn.PReLU(3), (images(2, 3, 2),), ("prelu",)),
    "Hardsigmoid": (nn.Hardsigmoid, (images(2, 3),), ("hardsigmoid",)),
    "Maxout": (lambda: nn.Maxout(2), (images(2, 6, 2),), ("maxout",)),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2), (images(2, 2, 3, 3),), ("conv_transpose2d",)),
    "Upsample": (lambda: nn.Upsample(scale_factor=1.5, mode="bilinear"), (images(2, 2, 4, 4),), ("interpolate",)),
    "UpsamplingNearest2d": (lambda: nn.UpsamplingNearest2d(size=5), (images(2, 2, 3, 3),), ("interpolate",)),
    "UpsamplingBilinear2d": (lambda: nn.UpsamplingBilinear2d(scale_factor=2), (images(2, 2, 3, 3),), ("interpolate",)),
}


class _SelfAttentionCase(nn.Module):
    """``mha(x, x, x)[0]`` with one gradient (the sum of the three): the output and dx the test scales. Without
    biases, doubling the attention doubles the output."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(4, 2, bias=False)

    def forward(self, x: Any) -> Any:
        return self.mha(x, x, x)[0]

    def backward(self, dout: Any) -> Any:
        return sum(self.mha.backward(dout))


class _EmbeddingCase(nn.Module):
    """An Embedding whose backward returns the table's gradient (its integer input has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(5, 3)

    def forward(self, x: Any) -> Any:
        return self.embedding(x)

    def backward(self, dout: Any) -> Any:
        self.embedding.backward(dout)
        return self.embedding.weight.grad


CASES.update(
    {
        "MultiheadAttention": (_SelfAttentionCase, (images(3, 2, 4),), ("scaled_dot_product_attention",)),
        "Embedding": (_EmbeddingCase, (lambda: arr(np.array([[0, 4, 4], [1, 2, 0]])),), ("embedding",)),
    }
)


# modules with no pair of their own: they only wire other modules (a sum or a concatenation in plain array code)
WIRING = {"Module", "Identity", "Sequential", "ModuleList", "ModuleDict", "Residual", "Concat"}


def test_every_module_in_minidl_nn_has_a_case():
    modules = {
        name for name in dir(nn) if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)
    }
    covered = {name.split("(")[0] for name in CASES}
    assert modules - WIRING - covered == set(), "add these modules to CASES"
    assert covered - modules == set()


def _scaled(value: Any, factor: float) -> Any:
    """``value`` times ``factor``: an array, a tuple of arrays (None kept), or a Python float."""
    if isinstance(value, tuple):
        return tuple(None if v is None else v * factor for v in value)
    return value * factor


def _run(make: Callable[[], nn.Module], inputs: tuple[Callable[[], Any], ...]) -> tuple[Any, Any]:
    """Output and input gradient of a new module (seeded: the same weights and dropout masks every time)."""
    minidl.manual_seed(0)
    module = make()
    args = [f() for f in inputs]
    minidl.manual_seed(1)
    out = module(*args)
    if not (hasattr(out, "shape") and out.shape):  # a scalar loss: backward's dout defaults to 1
        return out, module.backward()
    dout = np.random.default_rng(2).uniform(0.5, 1.5, out.shape).astype(out.dtype)
    return out, module.backward(arr(dout))


def _replace_pair(monkeypatch: Any, op: str, out_factor: float, grad_factor: float, calls: list[str]) -> None:
    """``F.<op>_forward``/``_backward`` replaced by the originals with their results scaled."""
    forward, backward = getattr(functional, f"{op}_forward"), getattr(functional, f"{op}_backward")

    def scaled_forward(*a: Any, **k: Any) -> Any:
        calls.append("forward")
        out, cache = forward(*a, **k)
        return _scaled(out, out_factor), cache

    def scaled_backward(*a: Any, **k: Any) -> Any:
        calls.append("backward")
        return _scaled(backward(*a, **k), grad_factor)

    monkeypatch.setattr(functional, f"{op}_forward", scaled_forward)
    monkeypatch.setattr(functional, f"{op}_backward", scaled_backward)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_module_computes_through_its_pairs(case, monkeypatch):
    """Replace each pair the module uses by its original with the results scaled: the module's forward and backward
    change accordingly, so they ran through ``minidl.nn.functional`` at call time. (On every backend: a pair that is
    not the original is never replaced by a kernel, so both runs below compute with the reference pair.)"""
    make, inputs, ops = CASES[case]
    for op in ops:
        calls: list[str] = []
        _replace_pair(monkeypatch, op, 1.0, 1.0, calls)
        out, dx = _run(make, inputs)
        assert calls == ["forward", "backward"], (case, op, calls)
        monkeypatch.undo()
        calls.clear()
        _replace_pair(monkeypatch, op, 2.0, 3.0, calls)
        new_out, new_dx = _run(make, inputs)
        assert calls == ["forward", "backward"], (case, op, calls)
        monkeypatch.undo()
        if op == "pad2d":  # the doubled padded image goes through the convolution (and its bias)
            assert not np.allclose(host(new_out), host(out)), case
        else:
            np.testing.assert_allclose(host(new_out), 2.0 * host(out), rtol=1e-6, err_msg=case)
        for g, new_g in zip(_grads(dx), _grads(new_dx), strict=True):  # (ChannelMul returns (dx, dscale))
            scale = float(np.abs(host(g)).max(initial=1.0))  # (a BatchNorm's dx cancels: float32 rounding of ~1e-7 x)
            np.testing.assert_allclose(host(new_g), 3.0 * host(g), rtol=1e-5, atol=1e-6 * scale, err_msg=case)


def _grads(dx: Any) -> tuple[Any, ...]:
    """A module's backward result as a tuple of gradients."""
    return dx if isinstance(dx, tuple) else (dx,)


# ---------------------------------------------------------------------------------------------- the seam
def test_f_is_minidl_nn_functional_read_at_call_time(monkeypatch):
    assert F.relu_forward is functional.relu_forward
    replacement = object()
    monkeypatch.setattr(functional, "relu_forward", replacement)
    assert F.relu_forward is replacement


def test_the_numba_table_replaces_only_declared_pairs_and_the_numpy_backend_none():
    table = minidl.get_backend("numba").kernels
    declared = declared_ops()
    assert set(table) <= set(declared), set(table) - set(declared)
    assert set(table) == set(declared), "a pair marked @kernel that no backend accelerates"
    assert dict(minidl.get_backend("numpy").kernels) == {}
    for op, (forward, backward) in declared.items():
        assert getattr(functional, f"{op}_forward").__wrapped__ is forward
        assert getattr(functional, f"{op}_backward").__wrapped__ is backward


def test_the_numpy_backend_runs_the_reference_and_numba_its_kernel():
    x = np.array([-1.0, 2.0])
    with minidl.use_backend("numpy"):
        assert kernel_for("relu") is None
        out, cache = F.relu_forward(x)
        assert not isinstance(cache, KernelCache)
    with minidl.use_backend("numba"):
        out_k, cache_k = F.relu_forward(x)
        assert isinstance(cache_k, KernelCache) and cache_k.op == "relu"
        np.testing.assert_array_equal(out_k, out)
        np.testing.assert_array_equal(F.relu_backward(np.ones(2), cache_k), [0.0, 1.0])
        with pytest.raises(ValueError, match=r"relu_backward: the gradient has shape \(3,\)"):
            F.relu_backward(np.ones(3), cache_k)


@pytest.mark.parametrize("half", ["forward", "backward"])
def test_a_replaced_half_turns_the_kernel_off_for_the_whole_pair(half, monkeypatch):
    calls = []
    original = getattr(functional, f"relu_{half}")
    monkeypatch.setattr(functional, f"relu_{half}", lambda *a: calls.append(half) or original(*a))
    with minidl.use_backend("numba"):
        assert kernel_for("relu") is None
        relu = nn.ReLU()
        y = relu(np.array([-1.0, 2.0]))
        assert not isinstance(relu._saved[-1][0], KernelCache), "the reference pair ran, as written"
        np.testing.assert_array_equal(relu.backward(np.ones(2)), [0.0, 1.0])
    assert calls == [half] and y.tolist() == [0.0, 2.0]


def test_a_kernel_may_decline_a_case_and_the_reference_runs():
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((4, 2, 2, 2)).astype(np.float32)
    with minidl.use_backend("numba"):
        _, cache = F.conv2d_relu_forward(x, w, None, 1, 1, 1, 2)  # the fused kernel declines groups > 1
        assert not isinstance(cache, KernelCache)
        _, cache = F.conv2d_forward(x, w, None, 1, 1, 1, 2)
        assert isinstance(cache, KernelCache)


def test_a_composed_pair_declares_every_pair_its_reference_calls():
    """``@composes`` (a pair without a kernel: relu6) names what its reference calls through ``F``, like ``uses``."""
    assert dispatch._COMPOSED, "relu6 is marked"
    for op, uses in dispatch._COMPOSED.items():
        assert op not in dispatch._DECLARED, f"{op}: a kernel's pair declares its uses with @kernel"
        source = inspect.getsource(getattr(functional, f"{op}_forward")) + inspect.getsource(
            getattr(functional, f"{op}_backward")
        )
        called = set(re.findall(r"\bF\.([a-z0-9_]+?)_(?:forward|backward)\b", source)) - {op}
        assert set(uses) == called, op


def test_is_reference_follows_a_pair_marked_after_its_first_call(monkeypatch):
    """``is_reference`` works out an op's chain of pairs at its first call and keeps it; marking a function with
    ``@composes`` (or ``@kernel``) afterwards empties what it kept, so the new chain counts from then on."""
    monkeypatch.setattr(dispatch, "_COMPOSED", dict(dispatch._COMPOSED))  # (the mark below goes away with the test)
    monkeypatch.setattr(dispatch, "_CHAINS", {})

    def mine_forward(x: Any) -> Any:  # an op of the user's, built on relu
        return F.relu_forward(x)

    assert dispatch.is_reference("mine")  # nothing replaced: its chain is its own two halves
    dispatch.composes("mine", uses=("relu",))(mine_forward)
    monkeypatch.setattr(functional, "relu_forward", lambda x: functional.relu_forward(x))
    assert not dispatch.is_reference("mine"), "relu, which it now uses, was replaced"
    monkeypatch.undo()
    assert dispatch.is_reference("relu6") and "mine" not in dispatch._COMPOSED


def test_composes_marks_a_forward_by_its_name():
    with pytest.raises(ValueError, match=r"@composes\('gelu'\) decorates gelu_forward, got relu6_forward"):
        dispatch.composes("gelu", uses=("hardtanh",))(functional.relu6_forward)


def test_a_kernel_declares_every_pair_its_reference_calls():
    """``uses`` is what the reference pair calls through ``F`` (read from its source), and each is a pair of F."""
    for op, (forward, backward) in declared_ops().items():
        source = inspect.getsource(forward) + inspect.getsource(backward)
        called = set(re.findall(r"\bF\.([a-z0-9_]+?)_(?:forward|backward)\b", source)) - {op}
        assert set(dispatch._DECLARED[op].uses) == called, op
        for used in called:
            assert callable(getattr(functional, f"{used}_forward")) and callable(
                getattr(functional, f"{used}_backward")
            )


@pytest.mark.parametrize(
    ("replaced", "composite"),
    [("relu", "add_relu"), ("add", "add_relu"), ("relu", "batch_norm_relu"), ("batch_norm", "batch_norm_relu"),
     ("relu", "conv2d_relu"), ("conv2d", "conv2d_relu"), ("pad2d", "conv2d"), ("pad2d", "conv2d_relu"),
     ("hardtanh", "conv2d_relu6"), ("conv2d", "conv2d_relu6"), ("relu6", "batch_norm_relu6"),
     ("hardtanh", "batch_norm_relu6"), ("batch_norm", "batch_norm_relu6"), ("conv2d", "conv2d_add_relu"),
     ("add_relu", "conv2d_add_relu"), ("relu", "conv2d_add_relu"), ("batch_norm", "batch_norm_add_relu"),
     ("add_relu", "batch_norm_add_relu"), ("relu", "batch_norm_add_relu")],
)  # fmt: skip
def test_replacing_a_pair_turns_off_the_kernels_of_the_pairs_built_from_it(replaced, composite, monkeypatch):
    """A student's ``relu_forward`` must run inside ``batch_norm_relu`` too: its kernel would skip it."""
    with minidl.use_backend("numba"):
        assert kernel_for(composite) is not None
        original = getattr(functional, f"{replaced}_forward")
        monkeypatch.setattr(functional, f"{replaced}_forward", lambda *a, **k: original(*a, **k))
        assert kernel_for(composite) is None
        assert kernel_for(replaced) is None
        assert not dispatch.is_reference(composite) and not dispatch.is_reference(replaced)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_replaced_pad2d_runs_inside_a_same_convolution(backend, monkeypatch):
    """'same' with an even kernel pads the extra row and column with F.pad2d_forward: a replacement runs there."""
    minidl.manual_seed(0)
    conv = nn.Conv2d(3, 4, 4, padding="same")
    x = arr(np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 6, 6)).astype(np.float32))
    with minidl.use_backend(backend):
        expected = host(conv(x))
        original = functional.pad2d_forward
        monkeypatch.setattr(functional, "pad2d_forward", lambda *a, **k: (lambda o, c: (o * 0, c))(*original(*a, **k)))
        blanked = host(conv(x))
    assert not np.allclose(blanked, expected)
    with minidl.use_backend("numpy"):
        np.testing.assert_allclose(host(conv(x)), blanked, rtol=1e-5, atol=1e-5)


def test_f_from_dispatch_sets_and_deletes_in_minidl_nn_functional():
    original = functional.relu_forward
    replacement = lambda x: original(x)  # noqa: E731
    try:
        F.relu_forward = replacement
        assert functional.relu_forward is replacement and not dispatch.is_reference("relu")
    finally:
        F.relu_forward = original
    assert dispatch.is_reference("relu")


def test_a_kernel_cache_explains_that_it_is_not_the_reference_cache():
    with minidl.use_backend("numba"):
        _, cache = F.relu_forward(np.array([-1.0, 2.0]))
    with pytest.raises(AttributeError, match=r"KernelCache has no attribute 'mask': the relu pair ran as the backend"):
        cache.mask


def test_a_kernel_validates_its_input_as_the_reference_does():
    with minidl.use_backend("numba"):
        with pytest.raises(ValueError, match=r"^conv2d_forward: expected 3 channels in dimension 1 of the input"):
            F.conv2d_forward(np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 3, 3, 3), np.float32))
        with pytest.raises(TypeError, match=r"^batch_norm_forward: the input has dtype float64 but"):
            F.batch_norm_forward(np.zeros((2, 3)), np.zeros(3, np.float32), np.ones(3, np.float32))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(
    "pair, args, match",
    [
        (
            "conv2d_relu",
            (np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 3, 3, 3), np.float32)),
            "expected 3 channels",
        ),
        (
            "conv2d_relu6",
            (np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 3, 3, 3), np.float32)),
            "expected 3 channels",
        ),
        (
            "conv2d_add_relu",
            (np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 1, 2, 2), np.float32), np.zeros((1, 3, 3, 3), "f4")),
            "expected 3 channels",
        ),
        (
            "conv2d_add_relu",
            (np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 3, 3, 3), "f4")),
            r"residual of the convolution's output shape \(1, 1, 2, 2\) and dtype float32, got \(1, 1, 4, 4\)",
        ),
        ("batch_norm_relu", (np.zeros((2, 3), np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)), "shape"),
        ("batch_norm_relu6", (np.zeros((2, 3), np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)), "shape"),
        (
            "batch_norm_add_relu",
            (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), np.zeros(4, np.float32), np.ones(4, "f4")),
            "shape",
        ),
        (
            "batch_norm_add_relu",
            (np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), None, None, None, None, True),
            r"residual of the input's shape \(2, 3\) and dtype float32, got \(2, 4\) float32",
        ),
    ],
)
def test_a_fused_pair_names_itself_in_its_argument_errors(backend, pair, args, match):
    # not the pair its reference calls first (conv2d_forward, batch_norm_forward): the user called this one
    with minidl.use_backend(backend), pytest.raises(ValueError, match=rf"^{pair}_forward: .*{match}"):
        getattr(F, f"{pair}_forward")(*args)


@pytest.mark.parametrize("dim", [2, -3, 1.0, True, "a", None, float("inf"), float("nan"), np.float64(-np.inf)])
def test_a_bad_softmax_dim_gives_the_reference_error_on_every_backend(dim):
    # the kernel's accepts reads dim first: a dim it cannot read (int(inf) raises OverflowError) goes to the setup
    x = np.ones((2, 3), np.float32)
    messages = []
    for backend in ("numpy", "numba"):
        with minidl.use_backend(backend), pytest.raises((TypeError, ValueError), match=r"^softmax_forward: ") as err:
            F.softmax_forward(x, dim)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    "forward, setup",
    [
        ("minidl.nn.conv.conv2d_forward", "minidl.nn.conv._conv2d_setup"),
        ("minidl.nn.conv_fused.conv2d_relu_forward", "minidl.nn.conv._conv2d_setup"),
        ("minidl.nn.conv_fused.conv2d_add_relu_forward", "minidl.nn.conv_fused._conv2d_add_relu_setup"),
        ("minidl.nn.merge.batch_norm_add_relu_forward", "minidl.nn.merge._batch_norm_add_relu_setup"),
        ("minidl.nn.normalization.batch_norm_forward", "minidl.nn.normalization._batch_norm_setup"),
        ("minidl.nn.activation_softmax.softmax_forward", "minidl.nn.activation_softmax._softmax_setup"),
        (
            "minidl.nn.attention_pairs.scaled_dot_product_attention_forward",
            "minidl.nn.attention_pairs._sdpa_setup",
        ),
    ],
)
def test_a_setup_takes_its_forwards_arguments_with_the_same_defaults(forward, setup):
    # the seam calls the setup with the caller's arguments: a default missing or different there would break a
    # call that the reference accepts, or check a value the reference would not use
    import importlib

    def load(path):
        module, name = path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)

    def positional(fn):
        params = inspect.signature(inspect.unwrap(fn)).parameters.values()
        return [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]

    assert positional(load(setup)) == positional(load(forward))
