"""benchmarks/torch_twins.py: each PyTorch twin that bench_train.py times is the minidl model's network: same
parameter count, same state_dict keys in the same order, and, with the minidl model's (randomized) state_dict copied
in by name, the same logits in float64 in eval mode. (airbench94's twin is checked in test_airbench.py.)"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import models
from tests.helpers import arr, assert_close, host, torch_or_skip

ROOT = Path(__file__).resolve().parents[2]

# the minidl side of each benchmark model, as benchmarks/_common.py's BENCH_MODELS builds it
MINIDL = {
    "cifar_cnn": lambda: models.cifar_cnn(num_classes=10),
    "resnet20": lambda: models.resnet20(num_classes=10),
    "resnet56": lambda: models.resnet56(num_classes=10),
    "vgg11_bn": lambda: models.vgg11_bn(num_classes=10, cifar=True),
    "mobilenet_v2": lambda: models.mobilenet_v2(num_classes=10, cifar=True),
    "vit_cifar": lambda: models.vit_cifar(num_classes=10),
}


def _twins():
    torch_or_skip()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module("torch_twins")


def _randomized_state(model, seed: int) -> dict[str, np.ndarray]:
    """The model's state_dict with random values, so that equal logits cannot come from zero biases or unit
    statistics: weights N(0, 1/fan_in), biases N(0, 0.1^2), norm weights near 1, running_var positive."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        v = host(value)
        if key.endswith("num_batches_tracked"):
            state[key] = v.copy()
        elif key.endswith("running_var"):
            state[key] = 0.5 + rng.random(v.shape)
        elif v.ndim == 1 and key.endswith("weight"):
            state[key] = 1 + 0.2 * rng.standard_normal(v.shape)
        elif v.ndim >= 2 and "pos_embedding" not in key and "class_token" not in key:
            state[key] = rng.standard_normal(v.shape) / np.sqrt(np.prod(v.shape[1:]))
        else:
            state[key] = 0.1 * rng.standard_normal(v.shape)
    return state


@pytest.mark.parametrize("name", list(MINIDL))
def test_twin_is_the_same_network(name):
    torch = torch_or_skip()
    twins = _twins()
    ours = MINIDL[name]().to(np.float64)
    theirs = twins.build(name).double()
    ours_keys = [(k, tuple(np.shape(host(v)))) for k, v in ours.state_dict().items()]
    theirs_keys = [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert ours_keys == theirs_keys, f"{name}: first difference at " + str(
        next((a, b) for a, b in zip(ours_keys + [None], theirs_keys + [None], strict=False) if a != b)
    )
    assert sum(p.size for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())

    state = _randomized_state(ours, seed=0)
    ours.load_state_dict({k: arr(v) for k, v in state.items()})
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})  # the same numbers, by name
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
    ours.eval()
    theirs.eval()
    with minidl.no_grad():
        y = ours(arr(x))
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    assert host(y).dtype == np.float64
    scale = max(1.0, float(np.abs(expected).max()))
    assert_close(y, expected, atol=1e-10 * scale, rtol=1e-9, what=f"{name} eval logits, twin vs minidl")


def test_every_benchmark_model_has_a_twin_and_an_unknown_name_is_refused():
    twins = _twins()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    bench_models = importlib.import_module("_common").BENCH_MODELS
    assert set(bench_models) == set(twins.TWINS) == set(MINIDL) | {"airbench94"}
    for name, spec in bench_models.items():
        if name in MINIDL:  # the test builds what the benchmark builds
            expected = {"vgg11_bn": {"cifar": True}, "mobilenet_v2": {"cifar": True}}.get(name, {})
            assert spec["kwargs"] == expected, name
    with pytest.raises(ValueError, match=r"torch_twins.build: no PyTorch twin of 'resnet18'; the twins are cifar_cnn"):
        twins.build("resnet18")
