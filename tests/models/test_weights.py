"""Shipped pretrained weights: files, checksums, torchvision's ``weights=`` API, and the accuracies they claim.

The accuracy on the 500 CIFAR-10 test images embedded in minidl is checked on every run; the accuracy on the full
test set when CIFAR-10 is present (MINIDL_DATA_DIR, else ../shared/data). Both must reproduce what
``scripts/make_weights.py`` recorded in the manifest (within one image in 500 and ten in 10,000: another backend
may round a borderline logit the other way).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import models, nn
from minidl import transforms as T
from minidl.data.sample import load_cifar10_sample
from minidl.models import weights as W

ALL = [member for enum in W._BY_MODEL.values() for member in enum if member.name != "DEFAULT"]
IDS = [repr(m) for m in ALL]
REPO = Path(__file__).resolve().parents[2]


def _data_dir() -> Path | None:
    env = os.environ.get("MINIDL_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "cifar-10").is_dir() else None


def _model(member: W.WeightsEnum) -> nn.Module:
    return models.get_model(member.meta["model"], num_classes=10, weights=member)


def _correct(model: nn.Module, member: W.WeightsEnum, images: np.ndarray, labels: np.ndarray, tta: bool) -> int:
    preprocess = member.transforms()
    x = np.stack([preprocess(img) for img in images])
    model.eval()
    logits = T.tta_predict(model, x, "flip_translate" if tta else "none", batch_size=500, average="logits")
    return int((minidl.to_numpy(logits).argmax(axis=1) == labels).sum())


def _metric_cases(prefix: str) -> list:
    return [
        pytest.param(m, key, id=f"{m!r}-{key}")
        for m in ALL
        for key in m.meta["metrics"]
        if key.startswith(prefix) and not key.endswith("_tta")
    ] + [
        pytest.param(m, key, id=f"{m!r}-{key}", marks=pytest.mark.slow)
        for m in ALL
        for key in m.meta["metrics"]
        if key.startswith(prefix) and key.endswith("_tta")
    ]


@pytest.mark.parametrize("member", ALL, ids=IDS)
def test_the_file_is_shipped_with_its_recorded_sha256_and_holds_no_pickles(member):
    assert member.path.is_file() and member.path.parent == W.WEIGHTS_DIR
    assert hashlib.sha256(member.path.read_bytes()).hexdigest() == member.value.sha256
    with np.load(member.path, allow_pickle=False) as npz:  # plain arrays only: loading runs no code
        assert all(npz[k].dtype != object for k in npz.files)
    assert member.path.stat().st_size == member.meta["file_bytes"] < 5_000_000  # small package data


@pytest.mark.parametrize("member", ALL, ids=IDS)
def test_loading_gives_the_model_the_file_s_values(member):
    model = _model(member)
    assert sum(p.size for p in model.parameters()) == member.meta["num_params"]
    state = member.get_state_dict()
    for key, value in model.state_dict().items():
        value = minidl.to_numpy(value)
        np.testing.assert_array_equal(value, np.asarray(state[key]).astype(value.dtype))
    assert member.meta["categories"][:3] == ["airplane", "automobile", "bird"] and len(member.meta["categories"]) == 10


@pytest.mark.parametrize(("member", "key"), _metric_cases("sample_test"))
def test_the_recorded_accuracy_on_the_embedded_test_images_is_reproduced(member, key):
    _, _, images, labels, _ = load_cifar10_sample()
    recorded = member.meta["metrics"][key]
    got = _correct(_model(member), member, images, labels, tta=key.endswith("_tta"))
    assert recorded["images"] == len(labels) and abs(got - recorded["correct"]) <= 1, (got, recorded)


@pytest.mark.parametrize(("member", "key"), _metric_cases("cifar10_test"))
def test_the_recorded_accuracy_on_the_cifar10_test_set_is_reproduced(member, key):
    data = _data_dir()
    if data is None:
        pytest.skip("CIFAR-10 not found; set MINIDL_DATA_DIR to the folder holding it")
    test = minidl.data.datasets.CIFAR10(str(data), train=False)
    recorded = member.meta["metrics"][key]
    # 10,000 images: on the fast backend where it is installed (the 500 images above run on the test backend)
    fast = "numba" if "numba" in minidl.available_backends() else minidl.get_backend().name
    with minidl.use_backend(fast):
        got = _correct(_model(member), member, test.data, np.asarray(test.targets), tta=key.endswith("_tta"))
    assert recorded["images"] == 10000 and abs(got - recorded["correct"]) <= 10, (got, recorded)


@pytest.mark.parametrize("member", ALL, ids=IDS)
def test_weights_are_named_as_in_torchvision(member):
    enum_class, enum_name = type(member), type(member).__name__
    assert enum_class.DEFAULT is member and getattr(models, enum_name) is enum_class
    for name in ("cifar10", "CIFAR10", "DEFAULT", f"{enum_name}.CIFAR10", member):
        assert enum_class.verify(name) is member
    assert enum_class.verify(None) is None
    assert models.get_weight(f"{enum_name}.CIFAR10") is member
    assert models.get_model_weights(member.meta["model"]) is enum_class
    assert repr(member) == f"{enum_name}.CIFAR10"
    x = member.transforms()(np.full((32, 32, 3), 255, np.uint8))
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], (1 - np.array(member.meta["mean"])) / np.array(member.meta["std"]), 1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: models.airbench94(weights="imagenet"), ValueError,
         r"^airbench94: weights must be None or one of 'CIFAR10', 'DEFAULT', got 'imagenet'$"),
        (lambda: models.airbench94(weights=1), ValueError, r"^airbench94: weights must be None or one of .* got 1$"),
        (lambda: models.airbench94(num_classes=2, weights="cifar10"), ValueError,
         r"^airbench94: Airbench94_Weights.CIFAR10 has 10 classes, got num_classes=2; .* replace the head"),
        (lambda: models.airbench94(widths=(8, 16, 16), weights="cifar10"), ValueError,
         r"^airbench94: Airbench94_Weights.CIFAR10 was trained with widths=\[64, 256, 256\], got widths=\(8, 16, 16\)"),
        (lambda: models.get_weight("Airbench94_Weights.IMAGENET"), ValueError,
         r"^get_weight: unknown weights 'Airbench94_Weights.IMAGENET'; valid: \['Airbench94_Weights.CIFAR10'"),
        (lambda: models.get_model_weights("resnet9"), ValueError,
         r"^get_model_weights: 'resnet9' has no shipped weights; models with weights: \['airbench94', 'cifar_cnn', "),
        (lambda: models.resnet20(weights="imagenet1k_v1"), ValueError,
         r"^resnet20: weights must be None or one of 'CIFAR10', 'DEFAULT', got 'imagenet1k_v1'$"),
        (lambda: models.resnet20(num_classes=100, weights="cifar10"), ValueError,
         r"^resnet20: ResNet20_Weights.CIFAR10 has 10 classes, got num_classes=100; "),
        (lambda: models.cifar_cnn(in_channels=1, weights="cifar10"), ValueError,
         r"^cifar_cnn: CifarCNN_Weights.CIFAR10 was trained with in_channels=3, got in_channels=1$"),
        (lambda: models.resnet20(in_channels=1, weights="cifar10"), ValueError,
         r"^resnet20: ResNet20_Weights.CIFAR10 was trained with in_channels=3, got in_channels=1$"),
        (lambda: models.get_model("resnet32", weights="cifar10"), ValueError,
         r"^get_model: 'resnet32' has no shipped weights, got weights='cifar10'; models with weights: \['airbench94'"),
    ],
    ids=["unknown-name", "not-a-name", "num-classes", "widths", "get-weight", "get-model-weights", "resnet20-name",
         "resnet20-classes", "cifar-cnn-channels", "resnet20-channels", "get-model-no-weights"],
)  # fmt: skip
def test_bad_weights_arguments_are_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_changed_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    member = models.Airbench94_Weights.CIFAR10
    damaged = tmp_path / member.value.file
    shutil.copyfile(member.path, damaged)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(RuntimeError, match=r"^Airbench94_Weights.CIFAR10: .* has SHA-256 [0-9a-f]{64}, expected "):
        models.airbench94(weights="cifar10")
    damaged.unlink()
    with pytest.raises(FileNotFoundError, match=r"^Airbench94_Weights.CIFAR10: the weights file .* is missing"):
        models.airbench94(weights="cifar10")


def test_get_model_takes_weights_none_for_every_model_as_torchvision_does():
    assert models.get_model("resnet32", weights=None).num_classes == 10
    assert isinstance(models.get_model("resnet20", weights="DEFAULT"), nn.Module)


def test_meta_is_a_copy_changing_it_changes_nothing_loaded():
    member = models.ResNet20_Weights.CIFAR10
    member.meta["categories"].append("zebra")
    member.meta["builder_kwargs"]["in_channels"] = 1
    assert len(member.meta["categories"]) == 10 and member.meta["builder_kwargs"] == {"in_channels": 3}
    assert models.resnet20(weights=member).num_classes == 10


def test_a_manifest_that_is_not_json_is_refused_by_name(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text("{not json")
    monkeypatch.setattr(W, "MANIFEST", tmp_path / "manifest.json")
    W._manifest.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"^minidl.models.weights: .*manifest.json is not valid JSON"):
            models.cifar_cnn(weights="cifar10")
    finally:
        W._manifest.cache_clear()


def test_minidl_imports_without_the_manifest_and_says_so_when_weights_need_it(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "MANIFEST", tmp_path / "manifest.json")
    W._manifest.cache_clear()
    try:
        assert models.airbench94().num_classes == 10  # no weights asked for: the manifest is not read
        with pytest.raises(FileNotFoundError, match=r"^minidl.models.weights: the manifest .* is missing"):
            models.resnet20(weights="cifar10")
    finally:
        W._manifest.cache_clear()


def test_the_manifest_records_how_each_file_was_made():
    manifest = json.loads(W.MANIFEST.read_text())
    assert set(manifest) == {f"{type(m).__name__}.{m.name}" for m in ALL}
    for entry in manifest.values():
        assert entry["recipe"].startswith("python examples/") and entry["cpu"] and entry["built"]
        assert entry["metrics"]["cifar10_test"]["images"] == 10000
