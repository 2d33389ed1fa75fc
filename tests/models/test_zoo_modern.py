"""MobileNetV3, EfficientNet-B0, ConvNeXt and the Vision Transformer: torchvision's parameter counts, shapes, and
gradient checks of small configurations (the torchvision parity of the full models is in
``test_torchvision_parity_lectures.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import gradcheck, models
from minidl.models.convnext import CNBlockConfig, ConvNeXt, LayerNorm2d
from minidl.models.mobilenet_v3 import EfficientNet, MBConvConfig
from minidl.models.vit import VisionTransformer
from tests.helpers import TEST_BACKEND, arr, assert_close, host, to_torch, torch_or_skip

COUNTS = {
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "efficientnet_b0": 5_288_548,
    "convnext_tiny": 28_589_128,
    "vit_b_16": 86_567_656,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_count_at_1000_classes_equals_torchvision(name):
    model = models.get_model(name)
    assert sum(p.size for p in model.parameters()) == COUNTS[name]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mobilenet_v3_small", {"num_classes": 10}),
        ("efficientnet_b0", {"num_classes": 10}),
        ("convnext_cifar", {"widths": (16, 32), "depths": (1, 1)}),
        ("vit_cifar", {"num_layers": 2, "hidden_dim": 32, "mlp_dim": 64}),
    ],
)
def test_a_cifar_batch_runs_forward_and_backward(name, kwargs):
    minidl.manual_seed(0)
    model = models.get_model(name, **kwargs)
    x = arr(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32))
    y = model(x)
    assert y.shape == (2, 10)
    dx = model.backward(arr(np.ones((2, 10), np.float32)))
    assert dx.shape == x.shape and np.isfinite(host(dx)).all()
    assert all(p.grad is not None for p in model.parameters())


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.normal(scale=0.5, size=p.shape)
    return model


def test_vision_transformer_gradcheck():
    net = VisionTransformer(image_size=8, patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=8)
    net = _randomize(net.to(TEST_BACKEND).double())
    gradcheck.check_module(net, arr(np.random.default_rng(1).normal(size=(2, 3, 8, 8))), mode="random_direction")


def test_convnext_gradcheck():
    minidl.manual_seed(0)
    net = ConvNeXt([CNBlockConfig(4, 8, 1), CNBlockConfig(8, None, 1)], layer_scale=0.5, num_classes=3, stem_kernel=2)
    net = _randomize(net.to(TEST_BACKEND).double())
    gradcheck.check_module(net, arr(np.random.default_rng(1).normal(size=(2, 3, 8, 8))), mode="random_direction")


def test_efficientnet_block_gradcheck_in_eval_mode():
    minidl.manual_seed(0)
    net = EfficientNet([MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(2, 3, 2, 8, 8, 2)], 0.0, num_classes=3)
    net = net.to(TEST_BACKEND).double().eval()  # (stochastic depth is the identity in eval)
    gradcheck.check_module(net, arr(np.random.default_rng(1).normal(size=(2, 3, 8, 8))), mode="random_direction")


def test_layer_norm_2d_matches_torchvision_and_its_gradcheck():
    torch = torch_or_skip()
    rng = np.random.default_rng(0)
    ln = LayerNorm2d(5, eps=1e-6).double()
    ln.weight.data[...] = rng.normal(size=5)
    ln.bias.data[...] = rng.normal(size=5)
    ln = ln.to(TEST_BACKEND)
    x = arr(rng.normal(size=(2, 5, 3, 4)))
    dout = arr(rng.normal(size=(2, 5, 3, 4)))
    out = ln(x)
    dx = ln.backward(dout)
    tx = to_torch(x, True)
    tw, tb = to_torch(ln.weight.data, True), to_torch(ln.bias.data, True)
    tout = torch.nn.functional.layer_norm(tx.permute(0, 2, 3, 1), (5,), tw, tb, 1e-6).permute(0, 3, 1, 2)
    tout.backward(to_torch(dout))
    assert_close(out, tout.detach().numpy())
    assert_close(dx, tx.grad.numpy())
    assert_close(ln.weight.grad, tw.grad.numpy())
    assert_close(ln.bias.grad, tb.grad.numpy())


def test_vision_transformer_refuses_another_image_size():
    net = models.vit_cifar(num_layers=1)
    with pytest.raises(ValueError, match=r"expected images of 32x32 pixels .* got input shape \(1, 3, 28, 28\)"):
        net(arr(np.zeros((1, 3, 28, 28), np.float32)))
