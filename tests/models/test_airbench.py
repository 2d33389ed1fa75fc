"""airbench94: size, names, frozen parameters, the identity init, and the PyTorch twin computes the same function."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import models, nn
from tests.helpers import arr, host, torch_or_skip

ROOT = Path(__file__).resolve().parents[2]


def _twin():
    torch_or_skip()
    path = ROOT / "benchmarks" / "airbench_torch.py"
    spec = importlib.util.spec_from_file_location("airbench_torch", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("airbench_torch", module)
    spec.loader.exec_module(module)
    return module


def test_parameter_count_and_frozen_parameters():
    net = models.airbench94()
    total = sum(p.size for p in net.parameters())
    frozen = {k: p.size for k, p in net.named_parameters() if not p.requires_grad}
    # whiten 24*3*2*2 + 24; groups 24->64->64, 64->256->256, 256->256->256 (3x3, no bias) + BN; linear 256*10
    expected = (
        288 + 24 + (24 * 64 + 64 * 64 + 64 * 256 + 256 * 256 + 256 * 256 + 256 * 256) * 9 + 2 * 2 * (64 + 256 + 256)
    )
    assert total == expected + 2560 == 1972792
    assert frozen["whiten.weight"] == 288 and sum(frozen.values()) == 288 + 2 * (64 + 256 + 256)
    assert all(k == "whiten.weight" or k.endswith(".weight") and ".norm" in k for k in frozen)
    wide = models.get_model("airbench94", widths=(128, 384, 384))
    assert wide.linear.in_features == 384 and wide.block1.conv1.out_channels == 128


def test_state_dict_keys_follow_airbench_names():
    keys = list(models.airbench94().state_dict())
    assert keys[:3] == ["whiten.weight", "whiten.bias", "block1.conv1.weight"]
    assert "block3.norm2.running_var" in keys and keys[-1] == "linear.weight"
    net = models.airbench94()
    assert net.block1.norm1.momentum == 0.4 and net.block1.norm1.eps == 1e-12
    assert net.linear.bias is None and net.scale.scale == pytest.approx(1 / 9)


def test_convs_start_as_the_identity_on_their_first_channels():
    minidl.manual_seed(0)
    net = models.airbench94()
    w = host(net.block2.conv1.weight.data)  # (256, 64, 3, 3): filters 0..63 are Dirac deltas
    eye = np.zeros((64, 64, 3, 3))
    eye[np.arange(64), np.arange(64), 1, 1] = 1
    assert np.array_equal(w[:64], eye) and np.abs(w[64:]).max() > 0
    assert np.all(host(net.whiten.bias.data) == 0)


def test_forward_backward_and_bad_input():
    net = models.airbench94(widths=(8, 16, 16))
    y = net(arr(np.random.default_rng(0).standard_normal((2, 3, 32, 32)), np.float32))
    assert y.shape == (2, 10)
    assert net.backward(arr(np.ones((2, 10), np.float32))).shape == (2, 3, 32, 32)
    running = host(net.block1.norm1.running_mean).copy()
    with pytest.raises(ValueError, match=r"AirbenchNet: expected images of 25 to 48 pixels a side .* \(2, 3, 64, 64\)"):
        net(arr(np.zeros((2, 3, 64, 64), np.float32)))
    assert np.array_equal(host(net.block1.norm1.running_mean), running)  # refused before anything ran
    y32 = host(net(arr(np.random.default_rng(1).standard_normal((2, 3, 32, 32)), np.float32)))
    net.pool = nn.AdaptiveMaxPool2d(1)  # a global max-pool: the same at 32x32, and any larger size works
    assert np.allclose(host(net(arr(np.random.default_rng(1).standard_normal((2, 3, 32, 32)), np.float32))), y32)
    y = net(arr(np.zeros((2, 3, 64, 64), np.float32)))
    assert y.shape == (2, 10) and net.backward(arr(np.ones((2, 10), np.float32))).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="AirbenchNet: expected 3 channels"):
        net(arr(np.zeros((2, 1, 32, 32), np.float32)))
    with pytest.raises(ValueError, match="widths must be three ints"):
        models.airbench94(widths=(8, 16))


def test_the_torch_twin_is_the_same_network():
    twin = _twin()
    torch = torch_or_skip()
    minidl.set_default_dtype(np.float64)
    try:
        net = models.airbench94(widths=(8, 16, 16))
    finally:
        minidl.set_default_dtype(np.float32)
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32))
    nn.init.patch_whitening_(net.whiten.weight, arr(x))
    ref = twin.AirbenchTorch(widths=(8, 16, 16)).double()
    ref.load_state_dict({k: torch.tensor(host(v)) for k, v in net.state_dict().items()})
    for train in (True, False):
        net.train(train)
        ref.train(train)
        y = host(net(arr(x)))
        with torch.no_grad():
            y_ref = ref(torch.tensor(x)).numpy()
        np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-12)
    # the running statistics moved alike (momentum 0.4 in both conventions)
    np.testing.assert_allclose(host(net.block3.norm2.running_var), ref.block3.norm2.running_var.numpy(), rtol=1e-9)
