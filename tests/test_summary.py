"""minidl.summary: parameters, MACs, activation memory and receptive field against published figures."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import models, nn
from tests.helpers import torch_or_skip


def vgg16(num_classes: int = 1000) -> nn.Sequential:
    """VGG16 (configuration D of Simonyan & Zisserman), torchvision's layout without batch norm."""
    layers: list[nn.Module] = []
    c = 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d(7),
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(),
        nn.Linear(4096, num_classes),
    )


def basic_block(c_in: int, c_out: int, stride: int) -> nn.Residual:
    body = nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
    )
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
    return nn.Residual(body, shortcut)


def resnet18(num_classes: int = 1000) -> nn.Sequential:
    """ResNet-18 (He et al. 2015), torchvision's layout (each block followed by ReLU)."""
    stages, c = [], 64
    for c_out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        stages += [basic_block(c, c_out, stride), nn.ReLU(), basic_block(c_out, c_out, 1), nn.ReLU()]
        c = c_out
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        *stages,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, num_classes),
    )


@pytest.fixture(scope="module")
def vgg16_summary():
    minidl.manual_seed(0)
    return minidl.summary(vgg16(), (3, 224, 224))


def test_vgg16_parameters_macs_and_memory_match_the_published_figures(vgg16_summary):
    s = vgg16_summary
    assert s.total_params == 138_357_544  # torchvision's vgg16
    assert s.total_macs / 1e9 == pytest.approx(15.5, rel=0.01)  # 15.47 GMAC per 224x224 image
    # The lecture's VGG16 table (CS231n) lists the input and every conv/pool/FC output; its rows add up to
    # 15.2M values = 61 MB in float32. (The slide's "TOTAL memory: 24M * 4 bytes ~= 96MB" does not equal the sum
    # of its own rows; we reproduce the rows.)
    lecture_rows = (
        224 * 224 * 3
        + 2 * 224 * 224 * 64
        + 112 * 112 * 64
        + 2 * 112 * 112 * 128
        + 56 * 56 * 128
        + 3 * 56 * 56 * 256
        + 28 * 28 * 256
        + 3 * 28 * 28 * 512
        + 14 * 14 * 512
        + 3 * 14 * 14 * 512
        + 7 * 7 * 512
        + 4096
        + 4096
        + 1000
    )
    # + the AdaptiveAvgPool2d(7) output, which torchvision's VGG16 has and the slide's does not
    assert s.activation_bytes == 4 * (lecture_rows + 7 * 7 * 512)
    assert s.activation_bytes / 1e6 == pytest.approx(61.1, abs=0.1)
    assert s.receptive_field == (212, 212)  # 13 3x3 convs and 4 2x2/2 pools before the last pool
    text = str(s)
    assert "138,357,544" in text and "GMAC" in text and "receptive field" in text


def test_resnet18_parameters_and_macs():
    minidl.manual_seed(0)
    s = minidl.summary(resnet18(), (3, 224, 224))
    assert s.total_params == 11_689_512  # torchvision's resnet18
    assert s.total_macs / 1e9 == pytest.approx(1.8, rel=0.02)  # "1.8 x 10^9 FLOPs" (multiply-adds) in the paper
    assert s.total_flops == 2 * s.total_macs


def test_summary_matches_pytorch_parameter_count_for_the_same_network():
    torch = torch_or_skip()
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, groups=1),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, groups=8, bias=False),
        nn.Flatten(),
        nn.Linear(8 * 22 * 22, 10),
    )
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5),
        torch.nn.BatchNorm2d(8),
        torch.nn.Conv2d(8, 8, 3, groups=8, bias=False),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 22 * 22, 10),
    )
    s = minidl.summary(net, (3, 28, 28))
    assert s.total_params == sum(p.numel() for p in tnet.parameters())
    assert [r.output_shape for r in s.rows][-1] == (1, 10)


def test_frozen_parameters_rows_and_batch_size():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    net[0].requires_grad_(False)
    s = minidl.summary(net, (4,), batch_size=5)
    assert (s.trainable_params, s.frozen_params) == (8, 15)
    assert [r.type for r in s.rows] == ["Linear", "ReLU", "Linear"]
    assert s.rows[0].frozen_params == 15 and s.rows[0].output_shape == (5, 3)
    assert s.total_macs == 5 * (4 * 3 + 3 * 2)
    assert s.rows[1].output_bytes == 0  # ReLU runs in place in the memory count
    assert s.receptive_field is None  # no spatial input


def test_summary_restores_modes_and_leaves_no_wrappers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout())
    net.train()
    minidl.summary(net, (1, 8, 8))
    assert all(m.training for m in net.modules())
    assert all("forward" not in m.__dict__ for m in net.modules())


def test_receptive_field_through_residual_and_dilation():
    block = nn.Residual(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=2, dilation=2)))
    s = minidl.summary(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), block), (1, 16, 16))
    # 3 -> +2 (3x3 at jump 2: +4) -> 7 -> dilated 3x3 (extent 5) at jump 2: +8 -> 15
    assert s.receptive_field == (15, 15)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape must be a tuple of positive ints"):
        minidl.summary(nn.Linear(2, 2), 2)
    with pytest.raises(ValueError, match="without the batch size"):
        minidl.summary(nn.Linear(2, 2), (0, 2))


def test_float64_model_is_summarized_in_float64():
    s = minidl.summary(nn.Linear(3, 2).to(np.float64), (3,))
    assert s.input_bytes == 3 * 8


def test_receptive_field_of_zoo_resnet_equals_the_residual_built_one():
    """minidl.models' BasicBlock declares its branches, so the zoo resnet18 and the Residual-built one agree."""
    from minidl import models

    zoo = minidl.summary(models.resnet18(), (3, 64, 64))
    built = minidl.summary(resnet18(), (3, 64, 64))
    assert zoo.receptive_field == built.receptive_field
    assert zoo.total_params == built.total_params and zoo.total_macs == built.total_macs
    # conv7/2 (7) -> maxpool3/2 at jump 2 (+4 = 11) -> 16 3x3 convs, the first 4 at jump 4 ... as in the literature
    assert zoo.receptive_field == (435, 435)


def test_a_fused_model_has_the_same_parameters_macs_and_receptive_field():
    plain = models.resnet20()
    fused = nn.fuse(plain)
    a, b = minidl.summary(plain, (3, 32, 32)), minidl.summary(fused, (3, 32, 32))
    assert (a.total_params, a.total_macs, a.receptive_field) == (b.total_params, b.total_macs, b.receptive_field)
    # the summary's forward hooks turn the folding off (a hook on a ConvBn2d sees the convolution's output, as in the
    # model as built): the same layer outputs, so the same activation memory
    assert b.activation_bytes == a.activation_bytes
