"""The lectures' architectures against torchvision itself: the same state_dict keys and shapes, and, with a
torchvision state_dict copied in by name, the same logits (float64, eval mode, one random 224x224 image).

torchvision's models get random weights and random BatchNorm statistics (``torch_reference.randomize_``), so equal
outputs cannot come from zero biases or unit statistics. Skipped cleanly without torch or torchvision.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from minidl import models
from tests.helpers import arr, assert_close
from tests.models import torch_reference as ref

torch = ref.torch


def _import_torchvision() -> types.ModuleType:
    """torchvision, or skip the module. Its ``_meta_registrations`` registers fake kernels for its compiled ops
    (nms, roi_align), which fails where those ops do not match the installed torch ("operator torchvision::nms does
    not exist"); the models need none of them, so that one submodule is replaced by an empty module first."""
    name = "torchvision._meta_registrations"
    if "torchvision" not in sys.modules and name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
    try:
        return pytest.importorskip("torchvision", reason="torchvision is the parity oracle of these tests")
    finally:
        if "torchvision" not in sys.modules:  # not installed: leave nothing behind
            sys.modules.pop(name, None)


torchvision = _import_torchvision()

# name: (minidl factory kwargs, torchvision builder kwargs)
CASES = {
    "alexnet": ({}, {}),
    "googlenet": ({"aux_logits": False}, {"aux_logits": False, "init_weights": False}),
    "googlenet_aux_transform": (
        {"aux_logits": True, "transform_input": True},
        {"aux_logits": True, "transform_input": True, "init_weights": False},
    ),
    "densenet121": ({}, {}),
    "resnext50_32x4d": ({}, {}),
    "wide_resnet50_2": ({}, {}),
    "squeezenet1_0": ({}, {}),
    "squeezenet1_1": ({}, {}),
    "shufflenet_v2_x1_0": ({}, {}),
    "shufflenet_v2_x0_5": ({}, {}),
    # the earlier zoo, checked against reference copies in test_parity.py, here against torchvision itself
    "resnet18": ({}, {}),
    "mobilenet_v2": ({}, {}),
    "resnet50": ({}, {}),
    "vgg11_bn": ({}, {}),
    # the later architectures: squeeze-and-excitation, hard-swish, stochastic depth, LayerScale, attention
    "mobilenet_v3_large": ({}, {}),
    "mobilenet_v3_small": ({}, {}),
    "efficientnet_b0": ({}, {}),
    "convnext_tiny": ({}, {}),
    "vit_b_16": ({}, {}),
}
# over 10 s each on a 2-core machine
SLOW = {"wide_resnet50_2", "resnext50_32x4d", "densenet121", "vgg11_bn", "convnext_tiny", "vit_b_16"}


def _names(case: str) -> str:
    return case.split("_aux")[0]


def _param(case: str) -> object:
    return pytest.param(case, marks=pytest.mark.slow) if case in SLOW else case


def _pair(case: str) -> tuple[object, object]:
    """(minidl model, torchvision model) holding the same random weights, both float64."""
    ours_kwargs, theirs_kwargs = CASES[case]
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, _names(case))(weights=None, **theirs_kwargs)
    theirs = ref.randomize_(theirs, seed=1).double()
    ours = models.get_model(_names(case), **ours_kwargs).to(np.float64)
    ours_layout = ref.key_shapes(ours.state_dict())
    theirs_layout = ref.key_shapes(ref.numpy_state_dict(theirs))
    assert ours_layout == theirs_layout, f"{case}: first difference at " + str(
        next((a, b) for a, b in zip(ours_layout + [None], theirs_layout + [None], strict=False) if a != b)
    )
    ours.load_state_dict(ref.numpy_state_dict(theirs))
    return ours, theirs


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_same_logits_as_torchvision(case):
    ours, theirs = _pair(case)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224))
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    out = ours(arr(x))
    assert out.dtype == np.float64 and out.shape == expected.shape == (1, 1000)
    scale = float(np.abs(expected).max())
    assert_close(out, expected, atol=1e-10 * scale, rtol=1e-8, what=f"{case} eval logits")


def test_googlenet_training_outputs_and_backward_match_torchvision():
    """Training mode with the auxiliary heads: GoogLeNetOutputs(logits, aux_logits2, aux_logits1) as torchvision's,
    and the backward of the tuple of three gradients gives torch's input gradient (dropout off: p = 0)."""
    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(
        weights=None, aux_logits=True, init_weights=False, dropout=0.0, dropout_aux=0.0
    )
    theirs = ref.randomize_(theirs, seed=1).double().train()
    ours = models.googlenet(aux_logits=True, dropout=0.0, dropout_aux=0.0).to(np.float64).train()
    ours.load_state_dict(ref.numpy_state_dict(theirs))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 32, 32))
    xt = torch.tensor(x, requires_grad=True)
    expected = theirs(xt)
    out = ours(arr(x))
    assert type(out).__name__ == "GoogLeNetOutputs" and out._fields == expected._fields
    douts = [rng.standard_normal(tuple(e.shape)) for e in expected]
    for field, o, e in zip(out._fields, out, expected, strict=True):
        assert_close(o, e, atol=1e-10, rtol=1e-8, what=f"googlenet training {field}")
    torch.autograd.backward(list(expected), [torch.from_numpy(d) for d in douts])
    dx = ours.backward(models.GoogLeNetOutputs(*[arr(d) for d in douts]))
    scale = float(xt.grad.abs().max())  # (round-off of 1e-10 x the largest entry, on the small entries)
    assert_close(dx, xt.grad, atol=1e-10 * scale, rtol=1e-8, what="googlenet dx")
    theirs_params, ours_params = dict(theirs.named_parameters()), dict(ours.named_parameters())
    for key in ("aux1.fc1.weight", "aux2.conv.conv.weight", "inception4a.branch3.1.conv.weight", "conv1.conv.weight"):
        expected_grad = theirs_params[key].grad
        atol = 1e-10 * float(expected_grad.abs().max())
        assert_close(ours_params[key].grad, expected_grad, atol=atol, rtol=1e-8, what=f"grad of {key}")
