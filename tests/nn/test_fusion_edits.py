"""A fused model stays exact when it is edited, sliced, called layer by layer, patched, or its pairs replaced: a
ConvBn2d folds its BatchNorm only inside the module it was fused in, with both slots as fuse left them, and only
while the BatchNorm pair is minidl's."""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest

import minidl
from minidl import models, nn
from minidl.nn import functional
from minidl.nn.fusion import ConvBn2d
from tests.helpers import arr, host


def randomize_statistics(model, rng):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean[...] = arr(rng.standard_normal(module.num_features))
            module.running_var[...] = arr(rng.uniform(0.5, 2.0, module.num_features))
            module.weight.data[...] = arr(rng.uniform(0.5, 1.5, module.num_features))
    return model


def net():
    minidl.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)
    )
    return randomize_statistics(model, np.random.default_rng(1)).eval()


X = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)


def infer(model, x=X):
    with minidl.no_grad():
        return host(model(arr(x)))


def test_a_fused_model_folds_in_inference(monkeypatch):
    calls = []
    original = ConvBn2d.folded_parameters
    monkeypatch.setattr(ConvBn2d, "folded_parameters", lambda self: calls.append(self) or original(self))
    model = net()
    fused = nn.fuse(model)
    np.testing.assert_allclose(infer(fused), infer(model), rtol=1e-5, atol=1e-5)
    assert calls == [fused[0], fused[3]]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_folded_inference_runs_a_replaced_batch_norm_pair(backend, monkeypatch):
    """An instructor's BatchNorm pair runs in a fused model's evaluation too (fit evaluates that way)."""
    reference = functional.batch_norm_forward

    def always_batch_statistics(input, running_mean, running_var, weight=None, bias=None, training=False, *rest):
        return reference(input, None, None, weight, bias, True)  # a student's bug: eval uses the batch statistics

    model = net()
    with minidl.use_backend(backend):
        monkeypatch.setattr(functional, "batch_norm_forward", always_batch_statistics)
        expected = infer(model)
        np.testing.assert_allclose(infer(nn.fuse(model)), expected, rtol=1e-5, atol=1e-5)
        calls = []
        monkeypatch.setattr(functional, "batch_norm_forward", lambda *a: calls.append(1) or reference(*a))
        resnet = nn.fuse(models.resnet20(num_classes=10).eval())
        infer(resnet, np.zeros((1, 3, 32, 32), np.float32))
    assert len(calls) == sum(isinstance(m, nn.BatchNorm2d) for m in resnet.modules()) == 21


def edits():
    """name -> (edit the fused copy of net(), the same edit of net() itself)."""

    def plain_conv(model, fused):  # a fresh Conv2d with the original's weights in slot 0
        conv = copy.deepcopy(model[0])
        fused[0] = conv
        return fused, model

    def plain_bn(model, fused):  # the original BatchNorm back in slot 4 (slot 1's also took the ReLU after it)
        fused[4] = copy.deepcopy(model[4])
        return fused, model

    def insert(model, fused):
        fused.insert(1, nn.Identity())
        model.insert(1, nn.Identity())
        return fused, model

    return {
        "conv replaced": plain_conv,
        "BatchNorm replaced": plain_bn,
        "module inserted between": insert,
        "slice [:1]": lambda model, fused: (fused[:1], model[:1]),
        "slice [0:3]": lambda model, fused: (fused[0:3], model[0:3]),
        "slice [:4]": lambda model, fused: (fused[:4], model[:4]),
    }


@pytest.mark.parametrize("edit", sorted(edits()))
def test_an_edited_fused_model_computes_what_the_same_edit_of_the_original_does(edit):
    model = net()
    fused, original = edits()[edit](model, nn.fuse(model))
    np.testing.assert_allclose(infer(fused), infer(original), rtol=1e-5, atol=1e-5)


def test_a_slice_that_starts_at_the_batch_norm_and_layer_by_layer_calls_are_exact():
    model, fused = net(), nn.fuse(net())
    y = infer(model[:1])
    np.testing.assert_allclose(infer(fused[1:], y), infer(model[1:], y), rtol=1e-5, atol=1e-5)
    y = infer(model[:3])  # a slice that holds a whole fused pair, with its own keys: it folds
    np.testing.assert_allclose(infer(fused[3:5], y), infer(model[3:5], y), rtol=1e-5, atol=1e-5)
    out = arr(X)
    with minidl.no_grad():
        for layer in fused:  # each layer on its own: the ConvBn2d is a Conv2d, the FoldedBatchNorm2d a BatchNorm2d
            out = layer(out)
    np.testing.assert_allclose(host(out), infer(model), rtol=1e-5, atol=1e-5)


def test_replacing_a_resnet_convolution_after_fit_fused_it_in_place():
    minidl.manual_seed(0)
    model = randomize_statistics(models.resnet20(num_classes=10), np.random.default_rng(3)).eval()
    original_conv = copy.deepcopy(model.conv1)
    nn.fuse(model, inplace=True)  # what fit does on a fast backend
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    expected = infer(model, x)
    model.conv1 = original_conv  # e.g. a new stem for other inputs, with the same weights here
    np.testing.assert_allclose(infer(model, x), expected, rtol=1e-4, atol=1e-4)


def test_a_module_with_a_replaced_forward_is_not_fused():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.ReLU())
    model[0].forward = types.MethodType(lambda self, x: nn.BatchNorm1d.forward(self, x), model[0])
    fused = nn.fuse(model)
    assert [type(m) for m in fused] == [nn.BatchNorm1d, nn.ReLU]
    x = arr(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    assert host(fused(x)).min() >= 0
    np.testing.assert_array_equal(host(fused(x)), host(model(x)))


def test_a_module_in_several_slots_is_left_as_it_is():
    bn, relu = nn.BatchNorm2d(3), nn.ReLU()
    model = nn.Sequential(bn, relu, bn, relu)
    fused = nn.fuse(model)
    assert list(fused.state_dict()) == list(model.state_dict()) == [
        "0.weight", "0.bias", "0.running_mean", "0.running_var", "0.num_batches_tracked"
    ]  # fmt: skip
    assert fused[0] is fused[2]
    x = arr(np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32))
    np.testing.assert_allclose(host(fused(x)), host(model(x)), rtol=1e-6)


def _hook_or_replace(module, how, seen):
    """Give ``module`` what ``how`` names, each of which changes (or records) what flows through it."""
    if how == "forward hook replacing the output":
        module.register_forward_hook(lambda m, inputs, out: seen.append(host(out).copy()) or out * 2.0)
    elif how == "forward pre-hook replacing the input":
        module.register_forward_pre_hook(lambda m, inputs: seen.append(host(inputs[0]).copy()) or (inputs[0] * 2.0,))
    else:  # a forward set on the instance (a profiler's, a student's)
        original = module.forward
        module.forward = lambda *args: seen.append(host(args[0]).copy()) or original(*args) * 2.0


@pytest.mark.parametrize("slot", [0, 1])  # the ConvBn2d, its FoldedBatchNorm2d
@pytest.mark.parametrize(
    "how", ["forward hook replacing the output", "forward pre-hook replacing the input", "instance forward"]
)
def test_a_hook_or_forward_added_after_fuse_turns_the_folding_off(slot, how, monkeypatch):
    """Added after ``fuse`` (as minidl.viz does to a model fit fused): folded, the convolution's hook would see the
    BatchNorm's output, and an output it replaced would go through the BatchNorm again."""
    model = net()
    fused = nn.fuse(model)
    folds = []
    original = ConvBn2d.folded_parameters
    monkeypatch.setattr(ConvBn2d, "folded_parameters", lambda self: folds.append(self) or original(self))
    seen_model, seen_fused = [], []
    _hook_or_replace(model[slot], how, seen_model)
    _hook_or_replace(fused[slot], how, seen_fused)
    np.testing.assert_allclose(infer(fused), infer(model), rtol=1e-5, atol=1e-5)
    assert len(seen_fused) == len(seen_model) == 1
    expected = seen_model[0]
    if slot == 1 and how == "forward hook replacing the output":
        expected = np.maximum(expected, 0)  # the one documented move: the BatchNorm's slot now applies the ReLU
    np.testing.assert_allclose(seen_fused[0], expected, rtol=1e-5, atol=1e-5)  # what it saw, as unfused
    assert folds == [fused[3]]  # the other pair still folds


def test_a_resnet_block_whose_batch_norm_forward_was_replaced_runs_unfolded_and_unjoined():
    minidl.manual_seed(0)
    block = randomize_statistics(models.resnet.BasicBlock(4, 4), np.random.default_rng(5)).eval()
    fused = nn.fuse(block)
    for module in (block, fused):
        original = module.bn2.forward
        module.bn2.forward = lambda x, original=original: original(x) * 0.5
    x = np.random.default_rng(6).standard_normal((2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(infer(fused, x), infer(block, x), rtol=1e-5, atol=1e-5)
