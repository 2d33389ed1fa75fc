"""The model zoo without PyTorch: registry, published parameter counts, FLOPs, init, shapes and error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidl
from minidl import models, nn
from tests.helpers import arr, host


def n_params(model) -> int:
    return sum(p.size for p in model.parameters())


# (name, kwargs, parameters): the published figures (torchvision's for the ImageNet models, He et al. 2015 for
# resnet20 with projection shortcuts, LeCun et al. 1998 for LeNet-5).
KNOWN_COUNTS = [
    ("lenet5", {}, 61_706),
    ("cifar_cnn", {}, 160_234),
    ("resnet20", {}, 272_474),
    ("resnet18", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("resnet50", {}, 25_557_032),
    ("mobilenet_v2", {}, 3_504_872),
    ("mobilenet_v2", {"width_mult": 0.5}, 1_968_680),
    pytest.param("resnet101", {}, 44_549_160, marks=pytest.mark.slow),
    pytest.param("resnet152", {}, 60_192_808, marks=pytest.mark.slow),
    pytest.param("vgg11", {}, 132_863_336, marks=pytest.mark.slow),
    pytest.param("vgg13", {}, 133_047_848, marks=pytest.mark.slow),
    pytest.param("vgg16", {}, 138_357_544, marks=pytest.mark.slow),
    pytest.param("vgg19", {}, 143_667_240, marks=pytest.mark.slow),
    pytest.param("vgg11_bn", {}, 132_868_840, marks=pytest.mark.slow),
    pytest.param("vgg16_bn", {}, 138_365_992, marks=pytest.mark.slow),
    pytest.param("vgg19", {"batch_norm": True}, 143_678_248, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, kwargs, expected", KNOWN_COUNTS)
def test_published_parameter_counts(name, kwargs, expected):
    model = models.get_model(name, **kwargs)
    assert n_params(model) == expected, f"{name}({kwargs}): {n_params(model):,} parameters, expected {expected:,}"


def test_cifar_resnet_depths_follow_6n_plus_2():
    # every CIFAR ResNet has 6n + 2 weight layers (convs + fc), not counting the projection shortcuts' 1x1 convs
    for name, n in [("resnet20", 3), ("resnet32", 5), ("resnet44", 7), ("resnet56", 9), ("resnet110", 18)]:
        model = models.get_model(name)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) + 1 == 6 * n + 2 == int(name[6:]), name
        # each extra block of a stage with c channels adds 2 (9 c^2 + 2 c) parameters
    extra = sum(2 * (9 * c * c + 2 * c) for c in (16, 32, 64))
    assert n_params(models.resnet32()) - n_params(models.resnet20()) == 2 * extra


def test_cifar_cnn_parameters_and_flops():
    model = models.cifar_cnn()
    s = minidl.summary(model, (3, 32, 32))
    assert s.total_params == 160_234
    # hand count of multiply-adds: OH * OW * O * C * 9 per conv, 2048 * 10 for the linear layer
    macs = 32 * 32 * 32 * 27 + 32 * 32 * 32 * 288 + 16 * 16 * 64 * 288 + 16 * 16 * 64 * 576 + 8 * 8 * 128 * 576
    macs += 2048 * 10
    assert s.total_macs == macs
    assert round(s.total_flops / 1e6, 1) == 58.4


def test_resnet20_macs_match_a_hand_count():
    s = minidl.summary(models.resnet20(), (3, 32, 32))
    macs = 32 * 32 * 16 * 27  # stem
    macs += 6 * 32 * 32 * 16 * 144  # stage 1: 6 convs 16 -> 16 at 32x32
    macs += 16 * 16 * 32 * 144 + 5 * 16 * 16 * 32 * 288 + 16 * 16 * 32 * 16  # stage 2 (+ 1x1 projection)
    macs += 8 * 8 * 64 * 288 + 5 * 8 * 8 * 64 * 576 + 8 * 8 * 64 * 32  # stage 3
    macs += 64 * 10
    assert s.total_macs == macs
    assert s.total_params == 272_474


@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("lenet5", {}, (2, 1, 32, 32)),
        ("lenet5", {"padding": 2, "classic": True, "in_channels": 3}, (2, 3, 28, 28)),
        ("cifar_cnn", {}, (2, 3, 32, 32)),
        ("airbench94", {}, (2, 3, 32, 32)),
        ("vgg11", {"cifar": True, "batch_norm": True}, (2, 3, 32, 32)),
        ("resnet20", {}, (2, 3, 32, 32)),
        ("resnet18", {"num_classes": 10, "cifar": True}, (2, 3, 32, 32)),
        ("resnet50", {"num_classes": 7}, (2, 3, 64, 64)),
        ("mobilenet_v2", {"num_classes": 10, "cifar": True, "width_mult": 0.5}, (2, 3, 32, 32)),
        ("mobilenet_v2", {"num_classes": 5, "width_mult": 0.35}, (2, 3, 64, 64)),
    ],
)
def test_forward_backward_shapes_and_every_parameter_gets_a_gradient(name, kwargs, shape):
    model = models.get_model(name, **kwargs)
    x = arr(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    y = model(x)
    assert y.shape == (
        shape[0],
        kwargs.get("num_classes", 10 if name in ("lenet5", "cifar_cnn", "resnet20", "airbench94") else 1000),
    )
    assert y.dtype == np.float32
    dx = model.backward(arr(np.ones(y.shape, np.float32)))
    assert dx.shape == x.shape and np.isfinite(host(dx)).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None and p.requires_grad]  # frozen: no grad
    assert not missing, f"{name}: no gradient for {missing[:5]}"


def test_list_and_get_model():
    names = models.list_models()
    assert names == sorted(names)
    expected = {
        "airbench94",
        "lenet5",
        "cifar_cnn",
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "vgg16_bn",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "mobilenet_v2",
    }
    assert expected <= set(names)
    for name in names:
        assert callable(getattr(models, name)) and name in models.__all__
    assert models.get_model("ResNet20", num_classes=3).fc.out_features == 3


def test_get_model_unknown_name_lists_the_names():
    with pytest.raises(
        ValueError,
        match=r"unknown model 'resnet19' \(did you mean 'resnet18'\?\); available: "
        r"airbench94, alexnet, cifar_cnn, convnext_cifar",
    ) as info:
        models.get_model("resnet19")
    for name in models.list_models():
        assert name in str(info.value)
    with pytest.raises(ValueError, match="unknown model 'lenet'.*available: airbench94, alexnet, cifar_cnn"):
        models.get_model("lenet")
    with pytest.raises(TypeError, match="get_model: name must be a str"):
        models.get_model(18)


def test_state_dict_keys_are_torchvisions():
    keys = list(models.resnet18().state_dict())
    assert keys[:6] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
    ]
    assert "layer1.0.conv1.weight" in keys and "layer2.0.downsample.0.weight" in keys
    assert "layer2.0.downsample.1.running_var" in keys and "layer1.0.downsample.0.weight" not in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert "layer1.0.conv3.weight" in models.resnet50().state_dict()
    mb = list(models.mobilenet_v2().state_dict())
    assert mb[0] == "features.0.0.weight" and "features.1.conv.0.0.weight" in mb and "features.2.conv.3.bias" in mb
    assert mb[-2:] == ["classifier.1.weight", "classifier.1.bias"]
    vgg = models.vgg11(cifar=True, batch_norm=True).state_dict()
    assert "features.0.weight" in vgg and "features.1.running_mean" in vgg and "classifier.weight" in vgg


def test_torchvision_style_init():
    minidl.manual_seed(0)
    net = models.resnet50()
    w = host(net.layer3[0].conv2.weight.data)  # (256, 256, 3, 3): fan_out = 256 * 9
    assert abs(w.std() - math.sqrt(2 / (256 * 9))) < 0.02 * math.sqrt(2 / (256 * 9))
    assert np.all(host(net.layer1[0].bn3.weight.data) == 1) and np.all(host(net.bn1.bias.data) == 0)
    zero = models.resnet18(zero_init_residual=True)
    assert all(np.all(host(b.bn2.weight.data) == 0) for stage in zero.stages() for b in stage)
    assert np.all(host(zero.layer1[0].bn1.weight.data) == 1)
    zero50 = models.resnet50(zero_init_residual=True)
    assert np.all(host(zero50.layer4[2].bn3.weight.data) == 0) and np.all(host(zero50.layer4[2].bn2.weight.data) == 1)
    mb = models.mobilenet_v2()
    lin = host(mb.classifier[1].weight.data)
    assert abs(lin.std() - 0.01) < 0.001 and np.all(host(mb.classifier[1].bias.data) == 0)
    vgg = models.vgg11(cifar=True)
    assert abs(host(vgg.classifier.weight.data).std() - 0.01) < 0.003
    assert np.all(host(vgg.features[0].bias.data) == 0)
    # init_weights=False keeps PyTorch's layer defaults: U(+-1/sqrt(fan_in)) conv biases
    assert np.any(host(models.vgg11(cifar=True, init_weights=False).features[0].bias.data) != 0)


def test_model_input_errors():
    net = models.resnet20()
    stem = r"Conv2d\(3, 16, kernel_size=\(3, 3\)\)"  # the layer that meets the input names the problem
    with pytest.raises(ValueError, match=stem + r": expected 3 channels in dimension 1 of the input, got 1"):
        net(arr(np.zeros((2, 1, 32, 32), np.float32)))
    with pytest.raises(ValueError, match=stem + r": expected a 4-D \(N, C, H, W\) input, got shape \(3, 32, 32\)"):
        net(arr(np.zeros((3, 32, 32), np.float32)))
    with pytest.raises(TypeError, match=r"the input has dtype float64 but the layer's parameters are float32"):
        net(arr(np.zeros((2, 3, 32, 32))))
    with pytest.raises(ValueError, match=r"LeNet5\(padding=0\): expected 32x32 images, got shape \(1, 1, 28, 28\)"):
        models.lenet5()(arr(np.zeros((1, 1, 28, 28), np.float32)))
    with pytest.raises(ValueError, match=r"CifarCNN: expected 32x32 images"):
        models.cifar_cnn()(arr(np.zeros((1, 3, 64, 64), np.float32)))
    with pytest.raises(ValueError, match=r"VGG\(cifar=True\): expected 32x32 inputs"):
        models.vgg11(cifar=True)(arr(np.zeros((1, 3, 64, 64), np.float32)))
    with pytest.raises(RuntimeError, match="Linear.backward\\(\\) was called without a matching forward"):
        net.backward(arr(np.zeros((2, 10), np.float32)))
    y = net(arr(np.zeros((2, 3, 32, 32), np.float32)))
    with pytest.raises(ValueError, match=r"linear_backward: the gradient has shape \(2, 9\) but the forward output"):
        net.backward(arr(np.zeros((2, 9), np.float32)))
    assert y.shape == (2, 10)


def test_constructor_errors():
    with pytest.raises(ValueError, match="ResNet: num_classes must be >= 1, got 0"):
        models.resnet18(num_classes=0)
    with pytest.raises(ValueError, match="ResNet: stem must be 'imagenet' or 'cifar', got 'tiny'"):
        models.ResNet(models.BasicBlock, [1], stem="tiny", widths=(8,))
    with pytest.raises(ValueError, match="layers \\[1, 1\\] and widths \\[8\\] must be non-empty and of the same"):
        models.ResNet(models.BasicBlock, [1, 1], widths=(8,))
    with pytest.raises(ValueError, match="BasicBlock only supports groups=1"):
        models.resnet18(groups=2)
    with pytest.raises(ValueError, match="MobileNetV2: width_mult must be > 0.0, got -1.0"):
        models.mobilenet_v2(width_mult=-1.0)
    with pytest.raises(ValueError, match="InvertedResidual: stride must be 1 or 2, got 3"):
        models.InvertedResidual(4, 4, stride=3, expand_ratio=6)
    with pytest.raises(ValueError, match="make_layers: a configuration entry must be a positive int or 'M', got 'X'"):
        models.make_layers([8, "X"])
    with pytest.raises(TypeError, match="LeNet5: in_channels must be an int"):
        models.lenet5(in_channels=1.5)
    with pytest.raises(TypeError, match="BasicBlock: downsample must be a Module or None, got int"):
        models.BasicBlock(4, 4, downsample=3)
    block = models.BasicBlock(4, 8, stride=2)  # no projection although the shape changes
    with pytest.raises(
        ValueError,
        match=r"BasicBlock\(4, 8, stride=2\): the residual branch gives shape "
        r"\(1, 8, 2, 2\) but the shortcut gives \(1, 4, 4, 4\)",
    ):
        block(arr(np.zeros((1, 4, 4, 4), np.float32)))


def test_repr_mentions_the_structure():
    text = repr(models.resnet20())
    assert text.startswith("ResNet(stem='cifar', num_classes=10")
    assert "(layer3): Sequential(" in text and "BasicBlock(32, 64, stride=2\n" in text
    assert "InvertedResidual(16, 24, stride=2, expand_ratio=6\n" in repr(models.mobilenet_v2())
