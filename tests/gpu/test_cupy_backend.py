"""The CuPy backend: errors without CuPy or without a GPU, device moves, and parity with the NumPy reference.

Three kinds of test, so that most of this file runs on a CPU-only CI that does not even install CuPy:

* error sentences, with ``cupy`` made unimportable (``sys.modules["cupy"] = None``) or replaced by a stand-in that
  reports no GPU; plus one test with the real CuPy on a machine without a GPU (skipped elsewhere);
* the plumbing (``Module.to``, ``to_numpy``, ``DataLoader(device=...)``, save/load, optimizers, mixed-device errors,
  layer parity, a training step) on ``tests/gpu/fake_cupy.py``: NumPy arrays that minidl sees as CuPy arrays, which
  refuse to mix with host arrays and record every device -> host read (a GPU synchronization);
* the same parity and training tests on the real CuPy, marked ``gpu`` and skipped unless CuPy sees a GPU
  (run them with ``python -m pytest -m gpu``).
"""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest

import minidl
from minidl import backend as backend_module
from minidl import nn, optim
from minidl.backend.cupy_backend import INSTALL_MESSAGE
from tests.gpu.fake_cupy import installed as fake_installed
from tests.gpu.fake_cupy import make_fake_cupy
from tests.helpers import assert_close


def _cupy_importable() -> bool:
    """True when the real CuPy can be imported (not when the CPU stand-in has taken its place)."""
    if "cupy" in sys.modules:
        return sys.modules["cupy"] is not None and not fake_installed()
    return importlib.util.find_spec("cupy") is not None


def _gpu_available() -> bool:
    if not _cupy_importable():
        return False
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:  # a broken CUDA install: treat as no GPU (the backend's own error is tested below)
        return False


GPU = _gpu_available()
requires_gpu = pytest.mark.skipif(not GPU, reason="needs CuPy and a CUDA GPU (cupy.is_available() is False)")
# "fake": the CPU stand-in (always runs); "real": CuPy on a GPU (marker gpu, skipped without one)
KINDS = ["fake", pytest.param("real", marks=[pytest.mark.gpu, requires_gpu])]


@pytest.fixture(autouse=True)
def _start_on_numpy():
    """Each test starts on the NumPy backend, also when the suite runs with MINIDL_TEST_BACKEND=cupy: these tests
    move things to the device themselves and compare with NumPy."""
    with minidl.use_backend("numpy"):
        yield


def _forget_cupy_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the registry build a new cupy backend in this test (and forget it afterwards)."""
    fresh = {k: v for k, v in backend_module._INSTANCES.items() if k != "cupy"}
    monkeypatch.setattr(backend_module, "_INSTANCES", fresh)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """The CPU stand-in for CuPy installed as ``cupy`` for one test."""
    module = make_fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", module)
    _forget_cupy_instance(monkeypatch)
    return module


@pytest.fixture(params=KINDS)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The fake CuPy module (kind "fake") or None (kind "real": the installed CuPy and its GPU)."""
    if request.param == "real":
        return None
    return request.getfixturevalue("fake")


def _syncs(fake_module, start: int = 0) -> list:
    return [] if fake_module is None else fake_module.syncs[start:]


# ---------------------------------------------------------------------------------------------------- errors
def test_without_cupy_set_backend_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" raises ImportError
    _forget_cupy_instance(monkeypatch)
    before = minidl.get_backend()
    for name in ("cupy", "cuda", "gpu"):
        with pytest.raises(ImportError, match=re.escape(INSTALL_MESSAGE)):
            minidl.set_backend(name)
    assert minidl.get_backend() is before  # a failed switch keeps the current backend
    with pytest.raises(ImportError, match=r"pip install minidl\[gpu\] \(cupy-cuda12x for CUDA 12"):
        nn.Linear(2, 2).to("cuda")


@pytest.mark.parametrize(
    ("device_count", "reason"),
    [
        (RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"), r"RuntimeError: cudaErrorNoDevice"),
        (OSError("libcuda.so.1: cannot open shared object file"), r"OSError: libcuda\.so\.1"),
        (0, r"CUDA reports 0 devices"),
    ],
)
def test_cupy_without_gpu_says_what_is_missing_and_how_to_check(monkeypatch, device_count, reason):
    monkeypatch.setitem(sys.modules, "cupy", make_fake_cupy(device_count))
    _forget_cupy_instance(monkeypatch)
    pattern = (
        rf"the cupy backend found no usable CUDA GPU \({reason}.*\).*driver.*check with python -c .*getDeviceCount"
    )
    with pytest.raises(RuntimeError, match=pattern):
        minidl.set_backend("cupy")
    with pytest.raises(RuntimeError, match=pattern):
        nn.Linear(2, 2).to("cuda")


@pytest.mark.skipif(not _cupy_importable() or GPU, reason="needs the real CuPy installed on a machine without a GPU")
def test_real_cupy_without_gpu_raises_the_runtime_error(monkeypatch):
    _forget_cupy_instance(monkeypatch)
    with pytest.raises(RuntimeError, match=r"no usable CUDA GPU \(CUDARuntimeError: .*getDeviceCount"):
        minidl.set_backend("cupy")


def test_names_and_aliases_resolve_to_one_backend(fake):
    assert "cupy" in minidl.available_backends()
    be = minidl.get_backend("cuda")
    assert be is minidl.get_backend("cupy") is minidl.get_backend("GPU")
    assert (be.name, be.device, be.xp) == ("cupy", "gpu", fake)
    assert repr(be) == "<minidl backend 'cupy' (cupy, gpu)>"
    with minidl.use_backend("cuda") as current:
        assert minidl.get_backend() is current is be
    assert minidl.get_backend() is not be


# ---------------------------------------------------------------------------------------------------- moving data
def test_module_to_cuda_and_back_moves_parameters_buffers_and_grads(fake):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    model[3].weight.grad = np.ones_like(model[3].weight.data)
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    model.to("cuda")
    for key, value in model.state_dict().items():
        assert type(value).__module__ == "cupy", key
        assert value.dtype == before[key].dtype, key  # float32 weights, int64 num_batches_tracked
    assert type(model[3].weight.grad).__module__ == "cupy"
    for target in ("cpu", "numpy"):
        model.to("cuda").to(target)
        for key, value in model.state_dict().items():
            assert type(value) is np.ndarray, key
            np.testing.assert_array_equal(value, before[key])
        np.testing.assert_array_equal(model[3].weight.grad, 1.0)


def test_to_numpy_and_backend_asarray_copy_between_host_and_device(fake):
    be = minidl.get_backend("cupy")
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    dev = be.asarray(host)
    assert be.is_array(dev) and not be.is_array(host)
    dev[0, 0] = 100.0
    assert host[0, 0] == 0.0  # a copy, not a view of the host array
    back = minidl.to_numpy(dev)
    assert type(back) is np.ndarray and back[0, 0] == 100.0
    assert type(be.to_numpy(dev)) is np.ndarray
    assert be.asarray(dev) is dev  # already on the device: no copy
    assert be.asarray([1, 2], dtype=np.float64).dtype == np.float64
    assert minidl.get_backend("numpy").is_array(minidl.get_backend("numpy").asarray(dev))


def test_dataloader_puts_batches_on_the_device(fake):
    from minidl.data import DataLoader, TensorDataset

    ds = TensorDataset(np.arange(12, dtype=np.float32).reshape(6, 2), np.arange(6))
    for loader in (DataLoader(ds, batch_size=4, device="cupy"), DataLoader(ds, batch_size=4, device="cuda")):
        batches = list(loader)
        assert [tuple(x.shape) for x, _ in batches] == [(4, 2), (2, 2)]
        assert all(type(x).__module__ == "cupy" and type(y).__module__ == "cupy" for x, y in batches)
        assert minidl.to_numpy(batches[1][1]).tolist() == [4, 5]
    with minidl.use_backend("cupy"):
        x, _ = next(iter(DataLoader(ds, batch_size=2, device="current")))
    assert type(x).__module__ == "cupy"
    x, _ = next(iter(DataLoader(ds, batch_size=2)))
    assert type(x) is np.ndarray  # device=None keeps host arrays


def test_save_writes_host_arrays_and_load_puts_them_back_on_the_device(fake, tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).to("cuda")
    opt = optim.Adam(model.parameters(), lr=0.1)
    model.train()
    with minidl.use_backend("cupy") as be:
        loss_fn = nn.MSELoss()
        loss_fn(model(be.asarray(np.ones((5, 3), np.float32))), be.asarray(np.zeros((5, 4), np.float32)))
        model.backward(loss_fn.backward())
        opt.step()
    path = tmp_path / "ckpt.npz"
    minidl.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
    on_host = minidl.load(path)
    assert all(type(v) is np.ndarray for v in on_host["model"].values())
    on_device = minidl.load(path, backend="cupy")
    assert all(type(v).__module__ == "cupy" for v in on_device["model"].values())
    assert type(on_device["optimizer"]["state"][0]["exp_avg"]).__module__ == "cupy"
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(on_host["model"][key], minidl.to_numpy(value))
    cpu_model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    cpu_model.load_state_dict(on_device["model"])  # device values into a host model
    cpu_opt = optim.Adam(cpu_model.parameters(), lr=0.1)
    cpu_opt.load_state_dict(on_device["optimizer"])
    assert type(cpu_opt.state[cpu_model[0].weight]["exp_avg"]) is np.ndarray
    model.load_state_dict(on_host["model"])  # host values into a device model stay on the device
    assert type(model[0].weight.data).__module__ == "cupy"


def test_mixing_devices_names_both(fake):
    cpu_model = nn.Linear(3, 2)
    with minidl.use_backend("cupy") as be:
        x_dev = be.asarray(np.ones((4, 3), np.float32))
        with pytest.raises(RuntimeError, match=r"Linear.*cupy\.ndarray.*parameters are numpy\.ndarray.*model\.to"):
            cpu_model(x_dev)
        gpu_model = nn.Linear(3, 2).to("cuda")
        with pytest.raises(RuntimeError, match=r"lives on the CPU \(numpy\).*current backend is 'cupy' \(gpu\)"):
            gpu_model(np.ones((4, 3), np.float32))
    with minidl.use_backend("numpy"):
        # real CuPy: backend_for's message; the stand-in is a NumPy subclass, so check_same_device's message
        both = r"lives on the GPU \(cupy\).*backend is 'numpy' \(cpu\)|input is a cupy\.ndarray.*are numpy\.ndarray"
        with pytest.raises(RuntimeError, match=both):
            cpu_model(x_dev)


# ---------------------------------------------------------------------------------------------------- parity
def _run(factory, x: np.ndarray, dout: np.ndarray | None, name: str, fake_module=None, train: bool = True):
    """Build the layer with seed 0 on NumPy, move it to backend ``name``, run forward and backward there."""
    with minidl.use_backend("numpy"):
        minidl.manual_seed(0)
        layer = factory()
    layer.to(name).train(train)
    with minidl.use_backend(name) as be:
        minidl.manual_seed(1)  # dropout masks: the same host draw on every backend
        start = len(fake_module.syncs) if fake_module is not None else 0
        out = layer(be.asarray(x))
        dout = np.random.default_rng(2).standard_normal(out.shape).astype(x.dtype) if dout is None else dout
        dx = layer.backward(be.asarray(dout))
        syncs = _syncs(fake_module, start)
        grads = {k: minidl.to_numpy(p.grad) for k, p in layer.named_parameters() if p.grad is not None}
        buffers = {k: minidl.to_numpy(b) for k, b in layer.named_buffers()}
    return minidl.to_numpy(out), minidl.to_numpy(dx), grads, buffers, dout, syncs


LAYERS = {
    "conv": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1), (2, 4, 9, 9)),
    "conv_groups_dilation": (lambda: nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), (2, 4, 8, 8)),
    "conv_depthwise_same": (lambda: nn.Conv2d(4, 4, 4, padding="same", groups=4, bias=False), (2, 4, 7, 7)),
    "conv_reflect": (lambda: nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect"), (2, 3, 6, 6)),
    "linear": (lambda: nn.Linear(12, 5), (3, 12)),
    "max_pool": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 9, 9)),
    "max_pool_ceil_dilated": (lambda: nn.MaxPool2d(2, ceil_mode=True, dilation=2), (2, 3, 8, 7)),
    "avg_pool": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 9, 9)),
    "adaptive_avg": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "adaptive_avg_global": (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    "adaptive_max": (lambda: nn.AdaptiveMaxPool2d((3, 2)), (2, 3, 7, 5)),
    "adaptive_max_blocks": (lambda: nn.AdaptiveMaxPool2d(2), (2, 3, 8, 8)),
    "batch_norm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    "batch_norm1d": (lambda: nn.BatchNorm1d(6), (5, 6)),
    "layer_norm": (lambda: nn.LayerNorm([5, 5]), (2, 3, 5, 5)),
    "group_norm": (lambda: nn.GroupNorm(2, 4), (2, 4, 5, 5)),
    "instance_norm": (lambda: nn.InstanceNorm2d(3, affine=True), (2, 3, 5, 5)),
    "local_response_norm": (lambda: nn.LocalResponseNorm(3), (2, 5, 4, 4)),
    "dropout": (lambda: nn.Dropout(0.3), (4, 10)),
    "dropout2d": (lambda: nn.Dropout2d(0.5), (2, 6, 3, 3)),
    "relu": (nn.ReLU, (3, 7)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), (3, 7)),
    "relu6_hardtanh": (lambda: nn.Sequential(nn.ReLU6(), nn.Hardtanh()), (3, 7)),
    "elu": (nn.ELU, (3, 7)),
    "gelu": (nn.GELU, (3, 7)),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), (3, 7)),
    "silu_mish_hardswish": (lambda: nn.Sequential(nn.SiLU(), nn.Mish(), nn.Hardswish()), (3, 7)),
    "sigmoid_tanh_softplus": (lambda: nn.Sequential(nn.Sigmoid(), nn.Tanh(), nn.Softplus()), (3, 7)),
    "softmax": (lambda: nn.Softmax(dim=1), (3, 7)),
    "log_softmax": (lambda: nn.LogSoftmax(dim=1), (3, 7)),
    "flatten": (nn.Flatten, (2, 3, 4, 4)),
    "residual": (lambda: nn.Residual(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())), (2, 3, 5, 5)),
    "concat": (lambda: nn.Concat(nn.Conv2d(3, 2, 1), nn.Identity(), dim=1), (2, 3, 4, 4)),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_parity_with_the_numpy_reference(request, kind, layer):
    fake_module = request.getfixturevalue("fake") if kind == "fake" else None
    factory, shape = LAYERS[layer]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out, dx, grads, buffers, dout, _ = _run(factory, x, None, "numpy")
    d_out, d_dx, d_grads, d_buffers, _, syncs = _run(factory, x, dout, "cupy", fake_module)
    atol, rtol = (5e-4, 5e-3) if "conv" in layer or "residual" in layer or "concat" in layer else (1e-4, 1e-3)
    assert_close(d_out, out, atol=atol, rtol=rtol, what=f"{layer} forward")
    assert_close(d_dx, dx, atol=atol, rtol=rtol, what=f"{layer} dx")
    assert sorted(d_grads) == sorted(grads)
    for name in grads:
        assert_close(d_grads[name], grads[name], atol=atol, rtol=rtol, what=f"{layer} grad {name}")
    for name in buffers:
        assert_close(d_buffers[name], buffers[name], atol=atol, rtol=rtol, what=f"{layer} buffer {name}")
    assert syncs == [], f"{layer}: forward/backward read device values on the host: {syncs}"


def test_eval_mode_batch_norm_and_dropout_parity(fake):
    factory = lambda: nn.Sequential(nn.BatchNorm2d(3), nn.Dropout(0.5))  # noqa: E731
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    out, dx, *_ = _run(factory, x, None, "numpy", train=False)
    d_out, d_dx, *_, syncs = _run(factory, x, None, "cupy", fake, train=False)
    assert_close(d_out, out, atol=1e-5, rtol=1e-4, what="eval forward")
    assert_close(d_dx, dx, atol=1e-5, rtol=1e-4, what="eval dx")
    assert syncs == []


LOSSES = {
    "cross_entropy": (lambda: nn.CrossEntropyLoss(), "indices"),
    "cross_entropy_smoothing_weight": (lambda: nn.CrossEntropyLoss(weight=np.arange(1.0, 6.0), label_smoothing=0.1),
                                       "indices"),
    "cross_entropy_probabilities": (lambda: nn.CrossEntropyLoss(), "probabilities"),
    "nll": (lambda: nn.NLLLoss(), "indices"),
    "mse": (lambda: nn.MSELoss(), "values"),
    "smooth_l1": (lambda: nn.SmoothL1Loss(beta=0.5), "values"),
    "bce_with_logits": (lambda: nn.BCEWithLogitsLoss(), "unit"),
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_loss_parity_and_where_it_reads_the_device(request, kind, loss):
    fake_module = request.getfixturevalue("fake") if kind == "fake" else None
    factory, target_kind = LOSSES[loss]
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5)).astype(np.float32)
    target = {
        "indices": rng.integers(0, 5, 6),
        "probabilities": rng.dirichlet(np.ones(5), 6).astype(np.float32),
        "values": rng.standard_normal((6, 5)).astype(np.float32),
        "unit": rng.random((6, 5)).astype(np.float32),
    }[target_kind]
    results = {}
    for name in ("numpy", "cupy"):
        with minidl.use_backend(name) as be:
            loss_fn = factory().to(name)
            start = len(fake_module.syncs) if fake_module is not None else 0
            value = loss_fn(be.asarray(logits), be.asarray(target))
            grad = loss_fn.backward()
            syncs = _syncs(fake_module, start) if name == "cupy" else []
            results[name] = (value, minidl.to_numpy(grad), syncs)
    assert isinstance(results["cupy"][0], float)
    assert results["cupy"][0] == pytest.approx(results["numpy"][0], rel=1e-5, abs=1e-6)
    assert_close(results["cupy"][1], results["numpy"][1], atol=1e-6, rtol=1e-4, what=f"{loss} grad")
    # a loss returns a Python float, so it reads the device; every read must come from the loss code itself
    outside = [s for s in results["cupy"][2] if not re.match(r"nn/_?loss\w*\.py:", s[1])]
    assert outside == [], f"{loss}: device reads outside the loss code: {outside}"


# ---------------------------------------------------------------------------------------------------- training
def _train(model_factory, batches, name: str, fake_module=None, opt_factory=None):
    with minidl.use_backend("numpy"):
        minidl.manual_seed(0)
        model = model_factory()
    model.to(name).train()
    opt = (opt_factory or (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4)))(model.parameters())
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    losses, outside_loss = [], []
    with minidl.use_backend(name) as be:
        minidl.manual_seed(1)
        for x, y in batches:
            x, y = be.asarray(x), be.asarray(y)
            start = len(fake_module.syncs) if fake_module is not None else 0
            logits = model(x)
            outside_loss += _syncs(fake_module, start)
            losses.append(loss_fn(logits, y))
            dout = loss_fn.backward()
            start = len(fake_module.syncs) if fake_module is not None else 0
            model.zero_grad()
            model.backward(dout)
            opt.step()
            sched.step()
            outside_loss += _syncs(fake_module, start)
    state = {k: minidl.to_numpy(v) for k, v in model.state_dict().items()}
    return losses, state, outside_loss


def _cifar_batches(n_batches: int, batch: int, size: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        (rng.standard_normal((batch, 3, size, size)).astype(np.float32), rng.integers(0, 10, batch))
        for _ in range(n_batches)
    ]


OPTIMIZERS = {
    "sgd_nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam_amsgrad": lambda p: optim.Adam(p, lr=1e-3, amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=1e-3),
    "rmsprop_centered": lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.01),
    "adadelta": lambda p: optim.Adadelta(p),
    "adamax": lambda p: optim.Adamax(p, lr=1e-3),
    "nadam": lambda p: optim.NAdam(p, lr=1e-3),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_update_device_parameters_like_the_reference(fake, name):
    def model():
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((5, 6)).astype(np.float32), rng.integers(0, 3, 5)) for _ in range(3)]
    ref_losses, ref_state, _ = _train(model, batches, "numpy", opt_factory=OPTIMIZERS[name])
    losses, state, syncs = _train(model, batches, "cupy", fake, opt_factory=OPTIMIZERS[name])
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    for key in ref_state:
        assert_close(state[key], ref_state[key], atol=1e-6, rtol=1e-5, what=f"{name}: {key}")
    assert syncs == [], f"{name}: the model or the optimizer read device values on the host: {syncs}"


@pytest.mark.parametrize("kind", KINDS)
def test_cifar_cnn_training_steps_match_the_reference(request, kind):
    from minidl.models import cifar_cnn

    fake_module = request.getfixturevalue("fake") if kind == "fake" else None
    batches = _cifar_batches(3, 8)
    ref_losses, ref_state, _ = _train(cifar_cnn, batches, "numpy")
    losses, state, syncs = _train(cifar_cnn, batches, "cupy", fake_module)
    assert losses == pytest.approx(ref_losses, rel=1e-3, abs=1e-4)
    for key in ref_state:
        assert_close(state[key], ref_state[key], atol=5e-4, rtol=5e-3, what=f"cifar_cnn {key}")
    assert syncs == [], f"the training step read device values outside the loss: {syncs}"


@pytest.mark.parametrize("kind", KINDS)
def test_resnet20_training_step_matches_the_reference(request, kind):
    from minidl.models import resnet20

    fake_module = request.getfixturevalue("fake") if kind == "fake" else None
    batches = _cifar_batches(1, 4, size=16)
    ref_losses, ref_state, _ = _train(resnet20, batches, "numpy")
    losses, state, syncs = _train(resnet20, batches, "cupy", fake_module)
    assert losses == pytest.approx(ref_losses, rel=1e-3, abs=1e-4)
    for key in ref_state:
        assert_close(state[key], ref_state[key], atol=5e-4, rtol=5e-3, what=f"resnet20 {key}")
    assert syncs == [], f"the training step read device values outside the loss: {syncs}"


@pytest.mark.gpu
@requires_gpu
def test_real_gpu_arrays_live_on_the_device():
    import cupy

    be = minidl.get_backend("cupy")
    model = nn.Linear(4, 3).to("cuda")
    assert isinstance(model.weight.data, cupy.ndarray) and be.is_array(model.weight.data)
    with minidl.use_backend("cupy"):
        out = model(be.asarray(np.ones((2, 4), np.float32)))
    be.synchronize()
    assert isinstance(out, cupy.ndarray) and out.device.id == cupy.cuda.Device().id
    be.free_memory()


def test_the_stand_in_enforces_cupys_rules(fake):
    """The CPU checks above mean something only if the stand-in refuses what CuPy refuses and records reads."""
    dev = fake.asarray(np.arange(3.0))
    with pytest.raises(TypeError, match="mixes a device array with a host numpy.ndarray"):
        dev + np.ones(3)
    with pytest.raises(TypeError, match="mixes a device array with a host numpy.ndarray"):
        fake.copyto(dev, np.zeros(3))
    assert type(dev * 2.0 + fake.zeros_like(dev)).__module__ == "cupy"
    assert type(dev.sum()).__module__ == "cupy" and dev.sum().ndim == 0  # 0-d arrays, not NumPy scalars
    float(dev.sum()), bool(dev[0] > 1), int(dev.argmax()), dev.get()
    assert [kind for kind, _ in fake.syncs] == ["float", "bool", "int", "get"]
    assert len(fake.uploads) == 1
