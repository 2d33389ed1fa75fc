"""benchmarks/bench_gpu.py without a GPU: argument parsing, the no-GPU messages, the PyTorch twins (on the CPU) and
the whole run on the CPU stand-in for CuPy (structure only: nothing is timed or compared to a time here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.backend.cupy_backend import INSTALL_MESSAGE
from tests.gpu.fake_cupy import make_fake_cupy
from tests.gpu.test_cupy_backend import GPU, _forget_cupy_instance, _start_on_numpy  # noqa: F401 (autouse)
from tests.helpers import torch_or_skip

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_are_both_models_both_frameworks_batch_128_and_512(bench):
    args = bench.parse_args([])
    assert args.models == ["cifar_cnn", "resnet20"] and args.frameworks == ["minidl", "torch"]
    assert args.batch_sizes == [128, 512] and (args.warmup, args.repeats) == (5, 20)
    assert not args.no_layers and not args.torch_tf32 and args.json is None
    args = bench.parse_args(["--models", "resnet20", "--batch-sizes", "64", "--frameworks", "minidl", "--json", "o.j"])
    assert (args.models, args.batch_sizes, args.frameworks, args.json) == (["resnet20"], [64], ["minidl"], Path("o.j"))


@pytest.mark.parametrize(
    "argv", [["--batch-sizes", "0"], ["--repeats", "x"], ["--models", "vgg99"], ["--frameworks", "jax"]]
)
def test_bad_arguments_exit_with_usage(bench, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.skipif(GPU, reason="checks the messages given without a GPU")
def test_without_cupy_main_stops_with_the_install_message(bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)
    _forget_cupy_instance(monkeypatch)
    assert bench.main(["--frameworks", "minidl"]) == 2
    assert capsys.readouterr().err.strip() == f"bench_gpu: minidl cannot use the GPU: {INSTALL_MESSAGE}"


@pytest.mark.skipif(GPU, reason="checks the messages given without a GPU")
def test_without_a_device_main_names_what_is_missing(bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", make_fake_cupy(RuntimeError("cudaErrorNoDevice")))
    _forget_cupy_instance(monkeypatch)
    assert bench.main([]) == 2
    err = capsys.readouterr().err
    assert "no usable CUDA GPU (RuntimeError: cudaErrorNoDevice)" in err and "getDeviceCount" in err


def test_without_cuda_torch_main_says_so(bench, capsys):
    torch = torch_or_skip()
    if torch.cuda.is_available():
        pytest.skip("PyTorch sees a GPU here")
    assert bench.main(["--frameworks", "torch"]) == 2
    assert "sees no CUDA device (torch.cuda.is_available() is False)" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cifar_cnn", "resnet20"])
def test_torch_twins_compute_the_same_network(bench, name):
    torch = torch_or_skip()
    model = bench.build_minidl(name)  # on the NumPy backend (autouse fixture)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    for m in model.modules():  # non-trivial running statistics, so eval mode uses them
        if hasattr(m, "running_var") and m.running_var is not None:
            m.running_mean[...] = np.linspace(-0.2, 0.2, m.running_mean.shape[0])
            m.running_var[...] = np.linspace(0.5, 1.5, m.running_var.shape[0])
    twin = bench.torch_twin(name, model, "cpu").eval()
    with minidl.no_grad():
        ours = model.eval()(x)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_the_whole_run_on_the_cpu_stand_in_writes_json(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "cupy", make_fake_cupy())
    _forget_cupy_instance(monkeypatch)
    out = tmp_path / "gpu.json"
    argv = ["--frameworks", "minidl", "--batch-sizes", "2", "--warmup", "1", "--repeats", "1", "--json", str(out)]
    assert bench.main(argv) == 0  # it switches to the cupy backend; the autouse fixture restores the backend after
    results = json.loads(out.read_text())
    assert [(r["model"], r["batch"]) for r in results["runs"]] == [("cifar_cnn", 2), ("resnet20", 2)]
    for run in results["runs"]:
        assert set(run["minidl"]) == {"train", "infer"}
        assert set(run["minidl"]["train"]) == {"median_ms", "min_ms", "img_per_s"}
    rows = results["layers"]["resnet20@2"]["minidl"]
    names = [r["layer"] for r in rows]
    assert "conv1" in names and "layer3.2.conv2" in names and "fc" in names and "layer1" not in names
    assert results["info"]["device"] == "fake GPU (NumPy on the CPU)"
    text = capsys.readouterr().out
    assert "per-layer times, cifar_cnn, batch 2" in text and "features.0" in text
