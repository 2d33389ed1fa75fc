"""Datasets: the real files when present (MINIDL_DATA_DIR, else ../shared/data), plus small fakes in the real formats
for checksums, the restricted unpickler, corrupt images and the download path."""

from __future__ import annotations

import copy
import gzip
import io
import os
import pickle
import re
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minidl.data import DataLoader, Subset
from minidl.data.datasets import (
    CIFAR10,
    MNIST,
    CIFAR10Sample,
    CorruptImageError,
    DogsVsCats,
    FashionMNIST,
    ImageFolder,
    cifar,
    restricted_loads,
)
from minidl.data.download import ChecksumError, DownloadError, md5sum
from tests.data.archives import write_files, write_tar_files

REPO = Path(__file__).resolve().parents[2]


def _data_dir() -> Path | None:
    env = os.environ.get("MINIDL_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


DATA = _data_dir()
CIFAR_ARCHIVE = DATA / "cifar-10" / "cifar-10-binary-rebuilt.tar.gz" if DATA else None
DOGS_ZIP = DATA / "dogs-vs-cats" / "cats_and_dogs_filtered_subset.zip" if DATA else None


def need(path: Path | None) -> Path:
    if path is None or not path.exists():
        pytest.skip(f"real data not found ({path}); set MINIDL_DATA_DIR to the folder holding it")
    return path


# ------------------------------------------------------------------------------------------------- real CIFAR-10
# per-class label counts of data_batch_1 (from the data README)
BATCH1_COUNTS = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]


def test_cifar10_real_first_member_fast():
    archive = need(CIFAR_ARCHIVE)
    with tarfile.open(archive, "r|gz") as tf:
        for member in tf:
            if member.name.endswith("data_batch_1.bin"):
                raw = tf.extractfile(member).read()
                break
    assert md5sum(raw) == "5dd7e06a14cb22eb9f671a540d1b7c25"
    images, labels = cifar._parse_binary_batch(raw, "data_batch_1.bin")
    assert images.shape == (10000, 3072) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == BATCH1_COUNTS


def test_cifar10_real_test_split():
    ds = CIFAR10(need(DATA), train=False)
    assert len(ds) == 10000 and ds.data.shape == (10000, 32, 32, 3) and ds.data.dtype == np.uint8
    assert np.bincount(ds.targets).tolist() == [1000] * 10 and min(ds.targets) == 0 and max(ds.targets) == 9
    img, label = ds[0]
    assert img.shape == (32, 32, 3) and isinstance(label, int) and ds.classes[label] == "cat"  # the first test image
    assert ds.data.flags.c_contiguous and 40 < ds.data.mean() < 200


@pytest.mark.slow
def test_cifar10_real_train_split():
    ds = CIFAR10(need(DATA), train=True)
    assert len(ds) == 50000 and ds.data.shape == (50000, 32, 32, 3)
    assert np.bincount(ds.targets).tolist() == [5000] * 10
    assert np.bincount(ds.targets[:10000], minlength=10).tolist() == BATCH1_COUNTS
    assert ds.classes[ds.targets[0]] == "frog"  # the first training image


# ------------------------------------------------------------------------------------------------- real MNIST
def test_mnist_real():
    root = need(DATA)
    need(root / "mnist" / "t10k-images-idx3-ubyte.gz")
    train, test = MNIST(root, train=True), MNIST(root, train=False)
    assert len(train) == 60000 and len(test) == 10000
    assert train.data.shape == (60000, 28, 28) and train.data.dtype == np.uint8 and test.data.shape == (10000, 28, 28)
    assert np.bincount(train.targets).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test.targets).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    img, label = train[0]
    assert img.shape == (28, 28) and label == 5 and train.data.max() == 255


def test_mnist_flipped_byte_detected(tmp_path):
    src = need(DATA) / "mnist"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(need(src / name).read_bytes())
    raw = bytearray((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte.gz has MD5 \w+, expected ec29112d"):
        MNIST(tmp_path, train=False)


def test_fashion_mnist_format_and_missing_message(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.gz  \(md5 8d4fb7e6c68d591d4c3dfef9ec88bf0d"):
        FashionMNIST(tmp_path)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)
    files = {
        "t10k-images-idx3-ubyte.gz": gzip.compress(bytes([0, 0, 8, 3]) + np.array([7, 28, 28], ">i4").tobytes()
                                                   + images.tobytes()),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(bytes([0, 0, 8, 1]) + np.array([7], ">i4").tobytes()
                                                   + labels.tobytes()),
    }  # fmt: skip
    folder = tmp_path / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    resources = FashionMNIST.resources[:2] + [(n, md5sum(d)) for n, d in files.items()]
    monkeypatch.setattr(FashionMNIST, "resources", resources)
    ds = FashionMNIST(tmp_path, train=False)
    np.testing.assert_array_equal(ds.data, images)
    assert ds.targets.tolist() == labels.tolist() and ds.classes[9] == "Ankle boot" and ds[3][1] == labels[3]


# ------------------------------------------------------------------------------------------------- fake CIFAR archives
def _fake_cifar(fmt: str, n: int = 6, seed: int = 0) -> tuple[dict[str, bytes], dict[str, list], np.ndarray]:
    """Member name -> bytes for a small CIFAR in the real format, the md5 table, and all train images (N, 3072)."""
    rng = np.random.default_rng(seed)
    files, table, train = {}, {"train": [], "test": []}, []
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for name in names:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        if fmt == "bin":
            name += ".bin"
            data = np.concatenate([y[:, None].astype(np.uint8), x], axis=1).tobytes()
        else:
            data = pickle.dumps({b"batch_label": b"fake", b"labels": y.tolist(), b"data": x}, protocol=2)
        files[f"cifar-10-batches-{fmt}/{name}"] = data
        table["test" if name.startswith("test") else "train"].append((name, md5sum(data)))
        if not name.startswith("test"):
            train.append((x, y))
    return files, table, np.concatenate([x for x, _ in train])


@pytest.fixture
def fake_table(monkeypatch):
    table = copy.deepcopy(cifar._FILES)
    monkeypatch.setattr(cifar, "_FILES", table)
    return table


@pytest.mark.parametrize("fmt", ["bin", "py"])
@pytest.mark.parametrize("packed", [True, False])
def test_cifar10_formats_and_flipped_byte(tmp_path, fake_table, fmt, packed):
    files, md5s, train_images = _fake_cifar(fmt)
    fake_table[fmt].update(md5s)
    if packed:
        write_tar_files(tmp_path / ("cifar-10-binary.tar.gz" if fmt == "bin" else "cifar-10-python.tar.gz"), files)
    else:
        write_files(tmp_path, files)
    ds = CIFAR10(tmp_path, train=True)
    assert len(ds) == 30 and ds.data.shape == (30, 32, 32, 3)
    expected = train_images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(ds.data, expected)  # the CHW planes become HWC
    assert len(CIFAR10(tmp_path, train=False)) == 6
    # one flipped byte in one member
    key = f"cifar-10-batches-{fmt}/data_batch_3" + (".bin" if fmt == "bin" else "")
    corrupted = dict(files)
    raw = bytearray(files[key])
    raw[-5] ^= 0x10
    corrupted[key] = bytes(raw)
    bad = tmp_path / "bad"
    bad.mkdir()
    if packed:
        write_tar_files(bad / "cifar-10-binary.tar.gz", corrupted)
    else:
        write_files(bad, corrupted)
    with pytest.raises(ChecksumError, match=r"data_batch_3(\.bin)? has MD5 \w+, expected " + md5s["train"][2][1]):
        CIFAR10(bad, train=True)


def test_cifar10_real_md5_table_rejects_fake(tmp_path):
    files, _, _ = _fake_cifar("bin")
    write_tar_files(tmp_path / "cifar-10-binary.tar.gz", files)
    with pytest.raises(ChecksumError, match="expected 5dd7e06a14cb22eb9f671a540d1b7c25"):
        CIFAR10(tmp_path)


@pytest.mark.parametrize("packed", [True, False])
def test_cifar10_python_batch_checks_name_the_file(tmp_path, fake_table, packed):
    """A python-format batch that is not a dict, or lacks its labels, is refused with a message that names the file
    (the folder's path, or archive:member) as the MD5 error does."""
    cases = {
        "list": ([1, 2], r"test_batch should hold a dict, got list$"),
        "no labels": ({b"data": np.zeros((2, 3072), np.uint8)}, r"test_batch has 2 images but \(0,\) labels$"),
    }
    for case, (content, message) in cases.items():
        data = pickle.dumps(content, protocol=2)
        fake_table["py"]["test"] = [("test_batch", md5sum(data))]
        root = tmp_path / case
        root.mkdir()
        files = {"cifar-10-batches-py/test_batch": data}
        if packed:
            write_tar_files(root / "cifar-10-python.tar.gz", files)
            where = f"{root / 'cifar-10-python.tar.gz'}:cifar-10-batches-py/test_batch"
        else:
            where = str(write_files(root, files) / "cifar-10-batches-py" / "test_batch")
        with pytest.raises(ValueError, match=r"^CIFAR10: ") as info:
            CIFAR10(root, train=False)
        assert str(info.value).startswith(f"CIFAR10: {where} ") and re.search(message, str(info.value)), info.value


def test_cifar10_archive_without_a_cifar_folder_is_named_in_the_missing_message(tmp_path):
    write_tar_files(tmp_path / "cifar-10-other.tar.gz", {"readme.txt": b"not CIFAR-10"})
    with pytest.raises(FileNotFoundError, match=r"^CIFAR10: no complete copy: found the archive .*cifar-10-other\.tar"):
        CIFAR10(tmp_path, train=False)


def test_cifar10_missing_and_offline_messages(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as info:
        CIFAR10(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin") in message
    assert "5dd7e06a14cb22eb9f671a540d1b7c25" in message and "cifar-10-binary.tar.gz" in message

    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError, match=r"(?s)network is unreachable.*data_batch_1.bin.*c32a1d4ab5d03f1284b"):
        CIFAR10(tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_cifar10_download_from_file_url(tmp_path, fake_table, monkeypatch):
    files, md5s, train_images = _fake_cifar("bin", seed=3)
    fake_table["bin"].update(md5s)
    server = write_tar_files(tmp_path / "server.tar.gz", files)
    monkeypatch.setattr(CIFAR10, "url", server.as_uri())
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5sum(server))
    cache = tmp_path / "cache"
    ds = CIFAR10(cache, download=True)
    assert (cache / "cifar-10-binary.tar.gz").is_file() and len(ds) == 30
    monkeypatch.setattr(CIFAR10, "tgz_md5", "f" * 32)  # already there: no new download, reads the cached file
    assert len(CIFAR10(cache, download=True, train=False)) == 6


def test_cifar10_sample():
    ds = CIFAR10Sample(train=True)
    assert len(ds) == 2000 and ds.data.shape == (2000, 32, 32, 3) and np.bincount(ds.targets).tolist() == [200] * 10


# ------------------------------------------------------------------------------------------------- restricted unpickler
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Evil(marker)}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|os|nt)\.system"):
        restricted_loads(payload)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        restricted_loads(pickle.dumps(_Reduce(eval, ("1+1",))))
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        import collections

        restricted_loads(pickle.dumps(collections.OrderedDict(a=1)))
    # plain data and arrays (new and numpy-1 module paths) load
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    raw = pickle.dumps({b"data": arr, "labels": [1, 2]}, protocol=2)
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    for blob in (raw, old):
        out = restricted_loads(blob)
        np.testing.assert_array_equal(out[b"data"], arr)
        assert out["labels"] == [1, 2]


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


# ------------------------------------------------------------------------------------------------- image folders
def _jpeg(seed: int, size=(40, 30)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_image_folder_and_corrupt_files(tmp_path):
    for cls, n in (("zebra", 2), ("ant", 3)):
        (tmp_path / cls).mkdir()
        for k in range(n):
            (tmp_path / cls / f"{k}.jpg").write_bytes(_jpeg(k))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["ant", "zebra"] and ds.class_to_idx == {"ant": 0, "zebra": 1}
    assert len(ds) == 5 and ds.targets == [0, 0, 0, 1, 1] and ds.samples[0][0].endswith(os.path.join("ant", "0.jpg"))
    img, label = ds[4]
    assert img.mode == "RGB" and img.size == (40, 30) and label == 1
    truncated = tmp_path / "zebra" / "broken.jpg"
    truncated.write_bytes(_jpeg(7, size=(200, 150))[:600])
    ds = ImageFolder(tmp_path)
    index = [p for p, _ in ds.samples].index(str(truncated))
    with pytest.raises(CorruptImageError, match=r"ImageFolder: cannot decode image .*zebra.broken\.jpg"):
        ds[index]
    with pytest.warns(UserWarning, match=r"skipped 1 corrupt or unreadable image\(s\) of 6: .*broken\.jpg"):
        ds = ImageFolder(tmp_path, skip_corrupt=True)
    assert ds.num_skipped == 1 and len(ds) == 5 and str(truncated) not in [p for p, _ in ds.samples]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no valid file for the classes \['empty'\]"):
        ImageFolder(tmp_path)


def _real_members(n_per_class: int) -> dict[str, bytes]:
    with zipfile.ZipFile(need(DOGS_ZIP)) as zf:
        return {
            f"{split}/{cls}s/{cls}.{k}.jpg": zf.read(f"{split}/{cls}s/{cls}.{k}.jpg")
            for split, start in (("train", 0), ("validation", 2000))
            for cls in ("cat", "dog")
            for k in range(start, start + n_per_class)
        }


def test_dogs_vs_cats_real_zip():
    root = need(DATA)
    need(DOGS_ZIP)
    train, val = DogsVsCats(root, train=True), DogsVsCats(root, train=False)
    assert len(train) == 1700 and len(val) == 850 and train.source == DOGS_ZIP
    assert np.bincount(train.targets).tolist() == [850, 850] and np.bincount(val.targets).tolist() == [425, 425]
    img, label = val[0]
    assert img.mode == "RGB" and min(img.size) >= 50 and label == 0 and val.samples[0][0].endswith("cat.2000.jpg")
    assert DogsVsCats(DOGS_ZIP, train=False).samples == val.samples  # root may be the zip itself


def test_dogs_vs_cats_layouts(tmp_path):
    members = _real_members(2)
    folder = tmp_path / "dogs-vs-cats" / "cats_and_dogs_filtered"  # class-folder layout under a top folder
    for name, data in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    ds = DogsVsCats(tmp_path / "dogs-vs-cats", train=False)
    assert len(ds) == 4 and ds.targets == [0, 0, 1, 1] and ds[2][0].mode == "RGB"
    kaggle = tmp_path / "kaggle.zip"  # Kaggle's flat layout inside a zip with a top-level folder
    with zipfile.ZipFile(kaggle, "w") as zf:
        for name, data in members.items():
            if name.startswith("train/"):
                zf.writestr("dogs-vs-cats/train/" + name.split("/")[-1], data)
        zf.writestr("dogs-vs-cats/test1/1.jpg", data)
    ds = DogsVsCats(kaggle, train=True)
    assert len(ds) == 4 and ds.targets == [0, 0, 1, 1] and ds[3][1] == 1
    with pytest.raises(FileNotFoundError, match="no labelled validation images"):
        DogsVsCats(kaggle, train=False)


def test_dogs_vs_cats_corrupt_member_in_zip(tmp_path):
    members = _real_members(2)
    members["train/dogs/dog.1.jpg"] = members["train/dogs/dog.1.jpg"][:3000]
    path = tmp_path / "subset.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    ds = DogsVsCats(tmp_path)
    with pytest.raises(CorruptImageError, match=r"subset\.zip:train/dogs/dog\.1\.jpg"):
        ds[3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = DogsVsCats(tmp_path, skip_corrupt=True)
    assert ds.num_skipped == 1 and len(ds) == 3 and "dog.1.jpg" in str(caught[0].message)


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_dogs_vs_cats_zip_through_workers(worker_type):
    transforms = pytest.importorskip("minidl.transforms")
    ds = DogsVsCats(need(DOGS_ZIP), train=False)
    ds.transform = transforms.Compose([transforms.RandomResizedCrop(48), transforms.ToArray()])
    subset = Subset(ds, list(range(0, 850, 53)))
    batches = list(DataLoader(subset, batch_size=4, num_workers=2, worker_type=worker_type, seed=0))
    reference = list(DataLoader(subset, batch_size=4, seed=0))
    for (x, y), (rx, ry) in zip(batches, reference, strict=True):
        assert x.shape[1:] == (3, 48, 48) and x.dtype == np.float32
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)


def test_flags_take_numpy_bools_and_bytes_paths_load_images(tmp_path):
    """``np.bool_`` is a bool (a flag read from an array); a bytes path opens as ``open`` would open it."""
    from PIL import Image

    from minidl.data.datasets import pil_loader

    assert len(CIFAR10Sample(np.bool_(False))) == len(CIFAR10Sample(train=False)) == 500
    Image.new("RGB", (3, 2), (10, 20, 30)).save(tmp_path / "a.png")
    img = pil_loader(os.fsencode(tmp_path / "a.png"))
    assert img.size == (3, 2) and img.getpixel((0, 0)) == (10, 20, 30)
