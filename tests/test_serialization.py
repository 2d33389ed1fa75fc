"""minidl.save / minidl.load: round trips, no pickle, atomic writes, clear errors."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

import minidl
from tests.helpers import arr, host


def _checkpoint():
    return {
        "model": {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "0.num_batches_tracked": np.array(4)},
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": np.ones(2)}, 1: {}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "nesterov": False}],
        },
        "epoch": 7,
        "best": float("inf"),
        "rng": minidl.get_rng_state(),
        "meta": {"version": minidl.__version__, "note": None, "tags": ["a", "b"]},
    }


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_nested_checkpoint_round_trip(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    ckpt = _checkpoint()
    path = tmp_path / f"ckpt{suffix}"
    minidl.save(ckpt, path)
    back = minidl.load(path)
    assert back["epoch"] == 7 and back["best"] == float("inf")
    assert back["meta"] == ckpt["meta"]
    np.testing.assert_array_equal(back["model"]["0.weight"], ckpt["model"]["0.weight"])
    assert back["model"]["0.weight"].dtype == np.float32
    assert back["model"]["0.num_batches_tracked"].dtype == ckpt["model"]["0.num_batches_tracked"].dtype
    assert list(back["optimizer"]["state"]) == [0, 1]  # int keys survive
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["rng"] == ckpt["rng"]


def test_rng_state_round_trip_reproduces_draws(tmp_path):
    minidl.manual_seed(123)
    minidl.save({"rng": minidl.get_rng_state()}, tmp_path / "r.npz")
    first = minidl.default_generator().normal(size=3)
    minidl.manual_seed(999)
    minidl.set_rng_state(minidl.load(tmp_path / "r.npz")["rng"])
    np.testing.assert_array_equal(minidl.default_generator().normal(size=3), first)


def test_flat_npz_of_arrays_loads_as_a_dict(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3), b=np.zeros(1))
    back = minidl.load(tmp_path / "plain.npz")
    assert sorted(back) == ["b", "w"]


def test_colliding_flattened_names_stay_distinct(tmp_path):
    obj = {"a.b": np.ones(1), "a": {"b": np.zeros(1)}}
    minidl.save(obj, tmp_path / "c.npz")
    back = minidl.load(tmp_path / "c.npz")
    assert back["a.b"].tolist() == [1.0] and back["a"]["b"].tolist() == [0.0]


def test_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([{"x": 1}], dtype=object))  # an object array is stored as a pickle
    with pytest.raises(ValueError, match="refused .* pickled objects"):
        minidl.load(path)


def test_every_damaged_byte_gives_an_error_naming_the_file_or_loads_the_same(tmp_path):
    # a flipped bit inside a member's header or data raised zipfile.BadZipFile ("Bad CRC-32", "Bad magic number"),
    # which named no file; a flip the zip format does not check (a timestamp) loads what was saved
    path, damaged = tmp_path / "ckpt.npz", tmp_path / "damaged.npz"
    minidl.save({"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3, np.float32)}, path)
    data = path.read_bytes()
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        damaged.write_bytes(bytes(flipped))
        try:
            loaded = minidl.load(damaged)
        except ValueError as err:
            assert str(damaged) in str(err), f"byte {position}: {err}"
            continue
        np.testing.assert_array_equal(loaded["w"], np.arange(6.0).reshape(2, 3))
        np.testing.assert_array_equal(loaded["b"], np.ones(3, np.float32))


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps({"w": np.ones(2)}))
    with pytest.raises(ValueError, match="refused .* pickled objects, which could run code"):
        minidl.load(path)


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "ckpt.npz"
    minidl.save(_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not an .npz file"):
        minidl.load(path)


def test_foreign_npz_member_named_like_ours_is_rejected(tmp_path):
    path = tmp_path / "foreign.npz"
    buffer = io.BytesIO()
    np.savez(buffer, __minidl__=np.frombuffer(b'{"format": "other"}', np.uint8))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="not a minidl checkpoint"):
        minidl.load(path)


def test_interrupted_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    minidl.save({"w": np.ones(3)}, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr("minidl.serialization.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        minidl.save({"w": np.zeros(3)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left behind
    assert zipfile.is_zipfile(path)


def test_unsaveable_values_are_named():
    with pytest.raises(TypeError, match=r"cannot save a set at opt.x without pickle"):
        minidl.save({"opt": {"x": {1, 2}}}, "/tmp/never-written.npz")
    with pytest.raises(TypeError, match="object array"):
        minidl.save({"w": np.array([None])}, "/tmp/never-written.npz")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no file at"):
        minidl.load("/nonexistent/ckpt.npz")


# ----------------------------------------------------------------------------------------- every layer, every optimizer
def _layers():
    """One configured instance of every layer with parameters or buffers, and an input for it."""
    from minidl import nn

    img = (2, 4, 6, 6)
    return [
        (nn.Linear(4, 3), (2, 4)),
        (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), img),
        (nn.Conv2d(4, 4, 3, padding="same", groups=4, bias=False), img),
        (nn.BatchNorm1d(4), (5, 4)),
        (nn.BatchNorm2d(4, momentum=None), img),
        (nn.LayerNorm((6, 6)), img),
        (nn.GroupNorm(2, 4), img),
        (nn.InstanceNorm2d(4, affine=True, track_running_stats=True), img),
        (nn.PReLU(4) if hasattr(nn, "PReLU") else nn.LeakyReLU(0.1), img),
        (
            nn.Sequential(
                nn.Conv2d(4, 4, 1),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.AvgPool2d(1),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Dropout(0.3),
                nn.Linear(4, 2),
            ),
            img,
        ),
        (nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.GELU()), nn.Conv2d(4, 4, 1)), img),
        (nn.Concat(nn.Conv2d(4, 2, 1), nn.Identity()), img),
    ]


@pytest.mark.parametrize("index", range(12))
def test_every_layer_round_trips_through_a_file(tmp_path, index):
    layer, shape = _layers()[index]
    x = arr(np.random.default_rng(index).normal(size=shape).astype(np.float32))
    layer.train()
    layer(x)  # move running statistics away from their initial values
    for p in layer.parameters():
        p.data[...] = arr(np.random.default_rng(index + 1).normal(size=p.shape).astype(np.float32))
    layer.eval()
    expected = host(layer(x))
    path = tmp_path / "layer.npz"
    minidl.save(layer.state_dict(), path)
    fresh, _ = _layers()[index]
    fresh.load_state_dict(minidl.load(path))
    fresh.eval()
    np.testing.assert_array_equal(host(fresh(x)), expected)
    assert list(fresh.state_dict()) == list(layer.state_dict())


_OPTIMIZERS = {
    "SGD": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "Adam": dict(lr=0.01, amsgrad=True),
    "AdamW": dict(lr=0.01),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adagrad": dict(lr=0.1),
    "Adadelta": dict(lr=1.0),
    "Adamax": dict(lr=0.01),
    "NAdam": dict(lr=0.01),
}


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
def test_every_optimizer_resumes_exactly_from_a_checkpoint(tmp_path, name):
    """Train 6 steps; or 3 steps, checkpoint model + optimizer + scheduler + RNG to a file, reload, 3 more steps."""
    from minidl import nn, optim

    def run(split: bool) -> np.ndarray:
        minidl.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 2))
        opt = getattr(optim, name)(model.parameters(), **_OPTIMIZERS[name])
        sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        x = arr(np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32))
        for step in range(6):
            if split and step == 3:
                path = tmp_path / f"{name}.npz"
                minidl.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "rng": minidl.get_rng_state(),
                    },
                    path,
                )
                ckpt = minidl.load(path)
                minidl.manual_seed(12345)  # a fresh process would start from anywhere
                model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2), nn.Linear(4, 2))
                opt = getattr(optim, name)(model.parameters(), **_OPTIMIZERS[name])
                sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
                minidl.set_rng_state(ckpt["rng"])
            out = model(x)
            model.zero_grad()
            model.backward(2 * out / out.size)  # gradient of mean(out ** 2)
            opt.step()
            sched.step()
        return np.concatenate([host(p.data).ravel() for p in model.parameters()])

    np.testing.assert_array_equal(run(split=True), run(split=False))


@pytest.mark.parametrize("value", [np.array(3), np.array(2.5, np.float32), np.zeros((0, 3)), np.ones((2, 3)).T])
def test_array_shapes_and_dtypes_survive_exactly(tmp_path, value):
    minidl.save({"v": value}, tmp_path / "v.npz")
    back = minidl.load(tmp_path / "v.npz")["v"]
    assert back.shape == value.shape and back.dtype == value.dtype
    np.testing.assert_array_equal(back, value)
