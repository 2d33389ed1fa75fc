"""The lecture architectures without PyTorch: torchvision's parameter counts, output shapes on small inputs, the
CIFAR variants training (forward, backward, finite-difference spot checks of parameter gradients), GoogLeNet's
auxiliary outputs, torchvision's state_dict names, and the error messages."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import models, nn, optim
from tests.helpers import arr, host


def n_params(model) -> int:
    return sum(p.size for p in model.parameters())


# torchvision's counts at 1000 classes (torchvision.models.<name>(weights=None), aux heads off for GoogLeNet);
# the SE-ResNets have no torchvision counterpart: ResNet's count plus the SE blocks' (C * C/16 + C/16 + C/16 * C + C)
COUNTS = [
    ("alexnet", {}, 61_100_840),
    ("googlenet", {"aux_logits": False}, 6_624_904),
    ("googlenet", {"aux_logits": True}, 13_004_888),
    ("densenet121", {}, 7_978_856),
    ("resnext50_32x4d", {}, 25_028_904),
    ("wide_resnet50_2", {}, 68_883_240),
    ("squeezenet1_0", {}, 1_248_424),
    ("squeezenet1_1", {}, 1_235_496),
    ("shufflenet_v2_x1_0", {}, 2_278_604),
    ("shufflenet_v2_x0_5", {}, 1_366_792),
    ("se_resnet18", {}, 11_778_592),
    ("densenet_cifar", {}, 769_162),  # DenseNet-BC-100, k = 12 (the paper: 0.8M)
    ("wide_resnet_cifar", {}, 2_748_890),  # WRN-16-4 (the paper: 2.7M)
    ("se_resnet20", {}, 274_847),
    pytest.param("densenet161", {}, 28_681_000, marks=pytest.mark.slow),
    pytest.param("densenet169", {}, 14_149_480, marks=pytest.mark.slow),
    pytest.param("densenet201", {}, 20_013_928, marks=pytest.mark.slow),
    pytest.param("resnext101_32x8d", {}, 88_791_336, marks=pytest.mark.slow),
    pytest.param("wide_resnet101_2", {}, 126_886_696, marks=pytest.mark.slow),
    pytest.param("shufflenet_v2_x1_5", {}, 3_503_624, marks=pytest.mark.slow),
    pytest.param("shufflenet_v2_x2_0", {}, 7_393_996, marks=pytest.mark.slow),
    pytest.param("se_resnet50", {}, 28_088_024, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, kwargs, expected", COUNTS)
def test_torchvision_parameter_counts(name, kwargs, expected):
    model = models.get_model(name, **kwargs)
    assert n_params(model) == expected, f"{name}({kwargs}): {n_params(model):,} parameters, expected {expected:,}"


def test_se_resnet18_adds_exactly_the_se_blocks_parameters():
    # 2 blocks per stage at C = 64, 128, 256, 512, each SE block: fc1 (C/16 x C + C/16) and fc2 (C x C/16 + C)
    se = sum(2 * (2 * c * (c // 16) + c // 16 + c) for c in (64, 128, 256, 512))
    assert 11_778_592 - 11_689_512 == se


@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        # (alexnet: its class docstring runs forward and backward at 63x63, the smallest size it takes)
        ("googlenet", {"num_classes": 10, "aux_logits": False}, (2, 3, 32, 32)),
        ("densenet121", {"num_classes": 10}, (2, 3, 32, 32)),
        ("resnext50_32x4d", {"num_classes": 10}, (2, 3, 32, 32)),
        ("squeezenet1_0", {"num_classes": 10}, (2, 3, 32, 32)),
        ("squeezenet1_1", {"num_classes": 10}, (2, 3, 32, 32)),
        ("shufflenet_v2_x0_5", {"num_classes": 10}, (2, 3, 64, 64)),
        ("se_resnet18", {"num_classes": 10, "cifar": True}, (2, 3, 16, 16)),
    ],
)
def test_small_input_forward_backward_shapes(name, kwargs, shape):
    minidl.manual_seed(0)
    model = models.get_model(name, **kwargs)
    x = arr(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    y = model(x)
    assert y.shape == (shape[0], 10) and y.dtype == np.float32
    dx = model.backward(arr(np.ones(y.shape, np.float32)))
    assert dx.shape == x.shape and np.isfinite(host(dx)).all()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"


def _spot_check(model, x, keys, rng, count=1, eps=1e-8):
    """Central differences of sum(model(x) * dout) for ``count`` random entries of each parameter in ``keys``,
    against the gradients backward accumulated (float64, training mode: batch statistics; every forward draws the
    same dropout masks). The small step keeps the thousands of ReLU inputs from crossing 0 between the two
    evaluations; float64 round-off then stays near 1e-16 * |loss| / eps."""
    minidl.manual_seed(0)
    out = model(x)
    dout = rng.standard_normal(out.shape)
    model.zero_grad()
    dx = model.backward(arr(dout))
    assert dx.shape == x.shape
    params = dict(model.named_parameters())
    for key in keys:
        p = params[key]
        analytic = host(p.grad).ravel()
        for flat in rng.choice(p.size, size=min(count, p.size), replace=False):
            index = np.unravel_index(flat, p.shape)
            original = float(p.data[index])
            values = []
            for step in (eps, -eps):
                p.data[index] = original + step
                minidl.manual_seed(0)
                with minidl.no_grad():
                    values.append(float((host(model(x)) * dout).sum()))
            p.data[index] = original
            numeric = (values[0] - values[1]) / (2 * eps)
            assert abs(analytic[flat] - numeric) <= 1e-5 + 1e-3 * abs(numeric), (
                f"{key}{tuple(int(i) for i in index)}: backward {analytic[flat]:.8g}, finite differences {numeric:.8g}"
            )


# (factory, kwargs, parameters to spot-check)
CIFAR = {
    "densenet_cifar(depth=40)": (
        "densenet_cifar",
        {"depth": 40},
        ["features.conv0.weight", "features.denseblock1.denselayer6.conv2.weight", "features.transition2.norm.weight"],
    ),
    "wide_resnet_cifar(dropout=0.3)": (
        "wide_resnet_cifar",
        {"dropout": 0.3},
        ["conv1.weight", "block1.0.shortcut.weight", "block2.1.bn2.weight", "fc.weight"],
    ),
    "se_resnet20": (
        "se_resnet20",
        {},
        ["conv1.weight", "layer1.0.se.fc1.weight", "layer2.0.se.fc2.bias", "fc.bias"],
    ),
    "densenet_cifar": (  # DenseNet-BC-100: 48 dense layers, about a minute on a busy 2-core machine
        "densenet_cifar",
        {},
        ["features.conv0.weight", "features.denseblock1.denselayer16.conv2.weight", "classifier.bias"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "densenet_cifar" else c
                                  for c in CIFAR])  # fmt: skip
def test_cifar_variants_train_with_correct_parameter_gradients(case):
    """The 32x32 models as they train: forward + backward on (2, 3, 32, 32) in float64, every parameter gets a
    gradient, and a few entries of parameters at the start, middle and end agree with finite differences.
    (DenseNet-BC-100 itself is in the slow set; its blocks and a small DenseNet are gradient-checked in
    test_blocks_lectures.py.)"""
    name, kwargs, keys = CIFAR[case]
    minidl.manual_seed(0)
    model = models.get_model(name, **kwargs).to(np.float64).train()
    rng = np.random.default_rng(1)
    x = arr(rng.standard_normal((2, 3, 32, 32)))
    _spot_check(model, x, keys, rng)
    assert all(p.grad is not None for p in model.parameters())


def test_googlenet_returns_the_aux_outputs_only_in_training():
    minidl.manual_seed(0)
    net = models.googlenet(num_classes=5)
    x = arr(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32))
    out = net(x)
    assert isinstance(out, models.GoogLeNetOutputs) and out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert [o.shape for o in out] == [(2, 5)] * 3
    with pytest.raises(TypeError, match=r"GoogLeNet.backward: the training-mode forward returned GoogLeNetOutputs\("
                       r"logits, aux_logits2, aux_logits1\), so expected a tuple of 3 gradients in that order, "
                       r"got ndarray"):  # fmt: skip
        net.backward(arr(np.ones((2, 5), np.float32)))
    net(x)
    dx = net.backward(models.GoogLeNetOutputs(*[arr(np.ones((2, 5), np.float32))] * 3))
    assert dx.shape == x.shape and net.aux1.fc1.weight.grad is not None and net.aux2.fc2.bias.grad is not None
    net.zero_grad()
    net(x)
    dx_main_only = net.backward(models.GoogLeNetOutputs(arr(np.ones((2, 5), np.float32)), None, None))
    assert dx_main_only.shape == x.shape and net.aux1.fc1.weight.grad is None and net.fc.weight.grad is not None
    net.eval()
    logits = net(x)
    assert logits.shape == (2, 5)
    with pytest.raises(TypeError, match=r"expected one gradient array, got a tuple of 3"):
        net.backward(models.GoogLeNetOutputs(*[arr(np.ones((2, 5), np.float32))] * 3))
    assert net.train()(x).__class__ is models.GoogLeNetOutputs
    assert models.googlenet(num_classes=5, aux_logits=False)(x).shape == (2, 5)  # no heads: the logits only


def test_torchvision_state_dict_names():
    g = models.googlenet(aux_logits=True).state_dict()
    assert "conv1.conv.weight" in g and "inception3a.branch2.1.bn.running_var" in g and "aux2.fc2.bias" in g
    assert "inception5b.branch4.1.conv.weight" in g and list(g)[-2:] == ["fc.weight", "fc.bias"]
    d = models.densenet121().state_dict()
    assert list(d)[0] == "features.conv0.weight"
    assert (
        "features.denseblock1.denselayer1.norm1.weight" in d and "features.denseblock4.denselayer16.conv2.weight" in d
    )
    assert "features.transition3.conv.weight" in d and "features.norm5.running_mean" in d
    s = models.squeezenet1_0().state_dict()
    assert "features.3.squeeze.weight" in s and "features.12.expand3x3.bias" in s and "classifier.1.weight" in s
    sh = models.shufflenet_v2_x1_0().state_dict()
    assert (
        "stage2.0.branch1.0.weight" in sh
        and "stage2.1.branch2.3.weight" in sh
        and "stage2.1.branch1.0.weight" not in sh
    )
    assert "conv5.1.running_var" in sh and list(sh)[-1] == "fc.bias"


def test_densenet_block_grows_by_the_growth_rate():
    net = models.densenet121()
    block = net.features.denseblock1
    assert [layer.num_input_features for layer in block] == [64 + 32 * i for i in range(6)]
    assert net.features.transition1.conv.out_channels == (64 + 6 * 32) // 2
    assert net.classifier.in_features == 1024


def test_summary_counts_and_receptive_field_of_wrn_16_4():
    s = minidl.summary(models.wide_resnet_cifar(), (3, 32, 32))
    assert s.total_params == 2_748_890
    # r += (k - 1) * jump per 3x3 conv: stem 3; block1 (jump 1) 4 convs: 11; block2: its first conv has stride 2
    # (+2 at jump 1, then jump 2), 3 more at jump 2: 13 + 12 = 25; block3 likewise: 25 + 4 + 3 * 8 = 53
    assert s.receptive_field == (53, 53)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: models.densenet_cifar(depth=50), r"densenet_cifar: depth must be 6n \+ 4 with n >= 1 \(e.g. 40, 100, "
                                                  r"190\), got 50"),
        (lambda: models.wide_resnet_cifar(depth=15), r"WideResNet: depth must be 6n \+ 4 with n >= 1 \(10, 16, 22, 28, "
                                                     r"40, ...\), got 15"),
        (lambda: models.ShuffleUnit(24, 48, 1), r"ShuffleUnit: expected an even oup and, with stride 1, inp == oup "
                                                r"\(the halves pass through\), got inp=24, oup=48, stride=1"),
        (lambda: models.ShuffleNetV2([4, 8], [24, 48, 96, 192, 1024]), r"ShuffleNetV2: expected stages_repeats as a "
                                                                      r"list of 3 ints, got \[4, 8\]"),
        (lambda: models.SqueezeNet("1_2"), r"SqueezeNet: version must be '1_0' or '1_1', got '1_2'"),
        (lambda: models.DenseNet(stem="tiny"), r"DenseNet: stem must be 'imagenet' or 'cifar', got 'tiny'"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_input_names_the_layer():
    net = models.squeezenet1_1(num_classes=3)
    with pytest.raises(ValueError, match=r"expected 3 channels in dimension 1 of the input, got 1"):
        net(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"GoogLeNet\(transform_input=True\): expected 3 channels"):
        models.googlenet(num_classes=3, aux_logits=False, transform_input=True)(np.zeros((1, 4, 32, 32), np.float32))
    with pytest.raises(TypeError, match=r"GoogLeNet: aux_logits must be a bool, got 1"):
        models.GoogLeNet(aux_logits=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["se_resnet20", "wide_resnet_cifar", "densenet_cifar"])
def test_cifar_variants_fit_a_fixed_batch(name):
    """Six SGD steps on one batch of 32 CIFAR-sized images: the loss falls (about 2.3 -> 1.7-2.0 for all three)."""
    rng = np.random.default_rng(0)
    x = arr(rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    y = arr(rng.integers(0, 10, 32))
    minidl.manual_seed(0)
    model = models.get_model(name)
    loss = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        losses.append(float(loss(model(x), y)))
        model.backward(loss.backward())
        opt.step()
    assert losses[-1] < 0.9 * losses[0], f"{name}: losses {losses}"


def test_the_cifar_factories_take_num_classes_first_too():
    # (depth came first: wide_resnet_cifar(100) built a 100-layer network with 10 classes)
    for factory in (models.wide_resnet_cifar, models.densenet_cifar):
        assert factory.__code__.co_varnames[0] == "num_classes"
    net = models.densenet_cifar(100, depth=10, growth_rate=4)
    assert net(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 100)
