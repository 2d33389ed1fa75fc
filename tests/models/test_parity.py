"""The model zoo against PyTorch reference models written after torchvision (tests/models/torch_reference.py):
parameter counts, state_dict keys and shapes, eval outputs with the same weights (float64, identical within 1e-10),
and a training-mode forward + backward (outputs, input gradient, every parameter gradient, running statistics)."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import models
from tests.helpers import arr, assert_close, host
from tests.models import torch_reference as ref

torch = ref.torch


def n_params(model) -> int:
    return sum(p.size for p in model.parameters())


# (minidl factory + kwargs, torch reference builder, input shape for the output comparison or None)
CASES = {
    "lenet5": (lambda: models.lenet5(), lambda: ref.LeNet5(), (2, 1, 32, 32)),
    "lenet5_classic_mnist": (
        lambda: models.lenet5(classic=True, padding=2, in_channels=3),
        lambda: ref.LeNet5(classic=True, padding=2, in_channels=3),
        (2, 3, 28, 28),
    ),
    "cifar_cnn": (lambda: models.cifar_cnn(), lambda: ref.CifarCNN(), (2, 3, 32, 32)),
    "vgg11_cifar": (lambda: models.vgg11(10, cifar=True), lambda: ref.vgg("vgg11", 10, cifar=True), (2, 3, 32, 32)),
    "vgg13_bn_cifar": (
        lambda: models.vgg13(num_classes=10, batch_norm=True, cifar=True),
        lambda: ref.vgg("vgg13", 10, batch_norm=True, cifar=True),
        (2, 3, 32, 32),
    ),
    "resnet20": (lambda: models.resnet20(), lambda: ref.cifar_resnet(3), (2, 3, 32, 32)),
    "resnet32": (lambda: models.resnet32(num_classes=100), lambda: ref.cifar_resnet(5, 100), None),
    "resnet44": (lambda: models.resnet44(), lambda: ref.cifar_resnet(7), None),
    "resnet56": (lambda: models.resnet56(), lambda: ref.cifar_resnet(9), None),
    "resnet110": (lambda: models.resnet110(), lambda: ref.cifar_resnet(18), None),
    "resnet18": (lambda: models.resnet18(), lambda: ref.resnet18(), (2, 3, 64, 64)),
    "resnet18_cifar": (
        lambda: models.resnet18(num_classes=10, cifar=True),
        lambda: ref.resnet18(10, cifar=True),
        (2, 3, 32, 32),
    ),
    "resnet34": (lambda: models.resnet34(), lambda: ref.resnet34(), None),
    "resnet50": (lambda: models.resnet50(), lambda: ref.resnet50(), (2, 3, 64, 64)),
    "resnext_like": (
        lambda: models.ResNet(models.Bottleneck, [1, 1], 10, groups=4, width_per_group=8, widths=(16, 32)),
        lambda: ref.ResNet(ref.Bottleneck, [1, 1], 10, groups=4, width_per_group=8, widths=(16, 32)),
        (2, 3, 48, 48),
    ),
    "mobilenet_v2": (lambda: models.mobilenet_v2(), lambda: ref.MobileNetV2(), (2, 3, 64, 64)),
    "mobilenet_v2_w05": (
        lambda: models.mobilenet_v2(num_classes=10, width_mult=0.5),
        lambda: ref.MobileNetV2(num_classes=10, width_mult=0.5),
        None,
    ),
    "mobilenet_v2_cifar": (
        lambda: models.mobilenet_v2(num_classes=10, cifar=True),
        lambda: ref.MobileNetV2(num_classes=10, cifar=True),
        None,
    ),  # outputs: training test
}
SLOW_CASES = {
    "resnet101": (lambda: models.resnet101(), lambda: ref.resnet101(), None),
    "vgg16_imagenet": (lambda: models.vgg16(num_classes=10), lambda: ref.vgg("vgg16", 10), (1, 3, 64, 64)),
    "vgg11_bn_imagenet": (lambda: models.vgg11_bn(num_classes=10), lambda: ref.vgg("vgg11", 10, batch_norm=True), None),
}
ALL = [*CASES, *(pytest.param(k, marks=pytest.mark.slow) for k in SLOW_CASES)]


def _case(name):
    return {**CASES, **SLOW_CASES}[name]


@pytest.mark.parametrize("name", ALL)
def test_same_parameters_keys_and_shapes_as_torch(name):
    build, build_ref, _ = _case(name)
    ours, theirs = build(), build_ref()
    assert n_params(ours) == sum(p.numel() for p in theirs.parameters())
    ours_layout = ref.key_shapes(ours.state_dict())
    theirs_layout = ref.key_shapes(ref.numpy_state_dict(theirs))
    assert ours_layout == theirs_layout, f"{name}: first difference at " + str(
        next((a, b) for a, b in zip(ours_layout + [None], theirs_layout + [None], strict=False) if a != b)
    )


def _paired(case, seed=0):
    """The minidl model holding the torch model's (randomized) weights, both in float64."""
    build, build_ref, shape = case
    torch.manual_seed(seed)
    theirs = ref.randomize_(build_ref(), seed).double()
    ours = build().to(np.float64)
    ours.load_state_dict(ref.numpy_state_dict(theirs))
    return ours, theirs, shape


@pytest.mark.parametrize(
    "name", [k for k, v in CASES.items() if v[2] is not None] + [pytest.param("vgg16_imagenet", marks=pytest.mark.slow)]
)
def test_eval_outputs_match_torch(name):
    ours, theirs, shape = _paired(_case(name))
    x = np.random.default_rng(1).standard_normal(shape)
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    out = ours(arr(x))
    assert out.dtype == np.float64
    scale = max(1.0, float(np.abs(expected).max()))
    assert_close(out, expected, atol=1e-10 * scale, rtol=0, what=f"{name} eval output")


def _train_step_matches(name, case, checked_bn):
    ours, theirs, shape = _paired(case, seed=3)
    ours.train()
    theirs.train()
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    expected = theirs(xt)
    out = ours(arr(x))
    assert_close(out, expected, atol=1e-10, rtol=1e-9, what=f"{name} training output")
    dout = rng.standard_normal(tuple(expected.shape))
    expected.backward(torch.from_numpy(dout))
    ours.zero_grad()
    dx = ours.backward(arr(dout))
    assert_close(dx, xt.grad, atol=1e-10, rtol=1e-8, what=f"{name} dx")
    torch_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {key}"
        assert_close(p.grad, torch_params[key].grad, atol=1e-10, rtol=1e-8, what=f"{name} grad of {key}")
    torch_state = theirs.state_dict()
    ours_state = ours.state_dict()
    for key in checked_bn:
        assert_close(ours_state[key], torch_state[key], atol=1e-12, rtol=1e-10, what=f"{name} {key}")
    assert int(host(ours_state[checked_bn[0].rsplit(".", 1)[0] + ".num_batches_tracked"])) == 4


def test_resnet20_training_step_matches_torch():
    checked = ["layer2.0.downsample.1.running_mean", "layer3.2.bn2.running_var"]
    _train_step_matches("resnet20", CASES["resnet20"], checked)


def test_mobilenet_v2_cifar_training_step_matches_torch():
    case = (
        lambda: models.mobilenet_v2(num_classes=10, cifar=True, dropout=0.0),
        lambda: ref.MobileNetV2(num_classes=10, cifar=True, dropout=0.0),
        (2, 3, 32, 32),
    )
    checked = ["features.3.conv.1.1.running_mean", "features.18.1.running_var"]
    _train_step_matches("mobilenet_v2(cifar=True)", case, checked)


def test_bottleneck_resnet_training_step_matches_torch():
    # the Bottleneck path (stride on the 3x3 conv, projection shortcuts, identity blocks) at a small size
    case = (
        lambda: models.ResNet(models.Bottleneck, [2, 1], 6, widths=(8, 16)),
        lambda: ref.ResNet(ref.Bottleneck, [2, 1], 6, widths=(8, 16)),
        (3, 3, 32, 32),
    )
    checked = ["layer2.0.downsample.1.running_mean", "layer1.1.bn3.running_var"]
    _train_step_matches("small Bottleneck ResNet", case, checked)
