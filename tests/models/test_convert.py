"""scripts/convert_torch_weights.py end to end: a PyTorch model saved with torch.save, converted to .npz /
.safetensors, loaded with ``model.load_state_dict(minidl.load(path))``, gives the PyTorch model's outputs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import models
from tests.helpers import arr, assert_close
from tests.models import torch_reference as ref

torch = ref.torch
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "convert_torch_weights.py"


@pytest.fixture(scope="module")
def convert_module():
    spec = importlib.util.spec_from_file_location("convert_torch_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torch_resnet20():
    torch.manual_seed(0)
    return ref.randomize_(ref.cifar_resnet(3), seed=1)


def _compare(model, torch_model, shape=(2, 3, 32, 32)):
    x = np.random.default_rng(0).standard_normal(shape)
    model.to(np.float64).eval()
    torch_model.double().eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    with minidl.no_grad():
        out = model(arr(x))
    assert_close(out, expected, atol=1e-10, rtol=0, what="converted model output")


def test_script_end_to_end(tmp_path):
    torch_model = _torch_resnet20()
    torch.save(torch_model.state_dict(), tmp_path / "resnet20.pt")
    out_path = tmp_path / "resnet20.npz"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "resnet20.pt"), str(out_path), "--model", "resnet20"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"to {out_path}" in result.stdout
    assert "resnet20(num_classes=10) with strict=True" in result.stdout
    state = minidl.load(out_path)
    assert list(state) == list(torch_model.state_dict())
    assert state["conv1.weight"].dtype == np.float32 and state["bn1.num_batches_tracked"].dtype == np.int64
    model = models.resnet20()
    model.load_state_dict(state)
    _compare(model, torch_model)


def test_checkpoint_with_wrapper_prefix_to_safetensors(tmp_path, convert_module):
    pytest.importorskip("safetensors")
    torch_model = ref.randomize_(ref.MobileNetV2(num_classes=10, width_mult=0.25, cifar=True), seed=2)
    wrapped = {f"module.{k}": v for k, v in torch_model.state_dict().items()}  # as saved from DataParallel
    torch.save({"epoch": 7, "state_dict": wrapped, "best_acc": 0.9}, tmp_path / "ckpt.pth")
    out_path = tmp_path / "mobilenet.safetensors"
    arrays = convert_module.convert(
        str(tmp_path / "ckpt.pth"),
        out_path,
        dtype="float64",
        model="mobilenet_v2",
        model_kwargs=convert_module.parse_options(["width_mult=0.25", "cifar=True"]),
    )
    assert list(arrays) == list(torch_model.state_dict())
    state = minidl.load(out_path)
    assert state["features.0.0.weight"].dtype == np.float64
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    model = models.mobilenet_v2(num_classes=10, width_mult=0.25, cifar=True)
    model.load_state_dict(state)
    _compare(model, torch_model)


def test_lenet_classic_round_trip_in_process(tmp_path, convert_module, capsys):
    torch_model = ref.randomize_(ref.LeNet5(num_classes=4, classic=True), seed=3)
    torch.save(torch_model.state_dict(), tmp_path / "lenet.pt")
    assert convert_module.main([str(tmp_path / "lenet.pt"), str(tmp_path / "lenet.npz")]) == 0
    assert "wrote 10 arrays" in capsys.readouterr().out
    model = models.lenet5(num_classes=4, classic=True)
    model.load_state_dict(minidl.load(tmp_path / "lenet.npz"))
    _compare(model, torch_model, (3, 1, 32, 32))


def test_helpers(convert_module):
    sd = {"module.a.weight": torch.ones(2, 3, dtype=torch.bfloat16), "module.a.n": torch.tensor(3)}
    arrays = convert_module.to_numpy_state_dict(convert_module.strip_prefixes(sd))
    assert list(arrays) == ["a.weight", "a.n"]
    assert arrays["a.weight"].dtype == np.float32 and arrays["a.n"].dtype == np.int64  # bfloat16 -> float32
    assert convert_module.infer_num_classes({"fc.weight": np.zeros((7, 4)), "fc.bias": np.zeros(7)}) == 7
    assert convert_module.find_state_dict({"model": {"w": torch.zeros(1)}, "opt": {}})["w"].shape == (1,)
    assert convert_module.parse_options(["cifar=True", "width_mult=0.5", "stem=cifar"]) == {
        "cifar": True,
        "width_mult": 0.5,
        "stem": "cifar",
    }
    with pytest.raises(SystemExit, match="expected KEY=VALUE for --option, got 'cifar'"):
        convert_module.parse_options(["cifar"])


def test_errors(tmp_path, convert_module):
    with pytest.raises(SystemExit, match="no file at"):
        convert_module.convert(str(tmp_path / "missing.pt"), tmp_path / "out.npz")
    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(SystemExit, match="the output must end in .npz or .safetensors, got 'out.pkl'"):
        convert_module.convert(str(tmp_path / "w.pt"), tmp_path / "out.pkl")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"no state_dict found.*the file holds the keys \['epoch', 'optimizer'\]"):
        convert_module.convert(str(tmp_path / "ckpt.pt"), tmp_path / "out.npz")
    with pytest.raises(SystemExit, match="expected torchvision:NAME or torchvision:NAME:WEIGHTS"):
        convert_module.convert("torchvision:", tmp_path / "out.npz")
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(SystemExit, match="torchvision is not installed"):
            convert_module.convert("torchvision:resnet18", tmp_path / "out.npz")
    torch.save(ref.LeNet5().state_dict(), tmp_path / "lenet.pt")
    with pytest.raises(RuntimeError, match="missing key"):  # names that do not fit the model are refused
        convert_module.convert(str(tmp_path / "lenet.pt"), tmp_path / "out.npz", model="cifar_cnn")
