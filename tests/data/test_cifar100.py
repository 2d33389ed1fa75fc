"""CIFAR-100 on small fakes in the official python format (pickled dicts, an MD5 table patched to match them): the
folder and the archive, labels and class names, checksums, missing and incomplete copies, corrupt and malicious
files, and the download path. The real dataset is not in ../shared/data, so nothing here reads it."""

from __future__ import annotations

import os
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from minidl.data.datasets import CIFAR100, cifar100
from minidl.data.download import ChecksumError, DownloadError, md5sum
from tests.data.archives import write_files, write_tar_files

FINE = [f"fine_{k}" for k in range(100)]
COARSE = [f"coarse_{k}" for k in range(20)]


def _fake(n_train: int = 7, n_test: int = 3, seed: int = 0, **overrides) -> dict[str, bytes]:
    """Member name -> bytes of a small CIFAR-100 in the official format; ``overrides`` replace a split's dict
    entries, e.g. ``train={b"fine_labels": [...]}``."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        d = {
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
            b"batch_label": b"fake " + split.encode(),
            b"fine_labels": rng.integers(0, 100, n).tolist(),
            b"coarse_labels": rng.integers(0, 20, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        d.update(overrides.get(split, {}))
        files[f"cifar-100-python/{split}"] = pickle.dumps(d, protocol=2)
    meta = {b"fine_label_names": FINE, b"coarse_label_names": COARSE}
    meta.update(overrides.get("meta", {}))
    files["cifar-100-python/meta"] = pickle.dumps(meta, protocol=2)
    return files


@pytest.fixture
def fake_md5(monkeypatch):
    """Point the MD5 table at the fake files: call it with the files to accept."""
    table = dict(cifar100._FILES)
    monkeypatch.setattr(cifar100, "_FILES", table)

    def accept(files):
        table.update({name.split("/")[-1]: md5sum(data) for name, data in files.items()})

    return accept


@pytest.mark.parametrize("packed", [True, False])
def test_cifar100_loads_fine_and_coarse_labels_and_names(tmp_path, fake_md5, packed):
    files = _fake()
    fake_md5(files)
    if packed:
        write_tar_files(tmp_path / "cifar-100-python.tar.gz", files)
    else:
        write_files(tmp_path, files)
    train = pickle.loads(files["cifar-100-python/train"])
    ds = CIFAR100(tmp_path, train=True, target_transform=lambda t: t + 1000)
    assert len(ds) == 7 and ds.data.shape == (7, 32, 32, 3) and ds.data.dtype == np.uint8
    np.testing.assert_array_equal(ds.data, train[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert ds.targets == train[b"fine_labels"] and ds.coarse_targets == train[b"coarse_labels"]
    assert ds.classes == FINE and ds.coarse_classes == COARSE and ds.class_to_idx["fine_7"] == 7
    img, target = ds[2]
    assert img.shape == (32, 32, 3) and target == train[b"fine_labels"][2] + 1000
    assert ds.source == (tmp_path / "cifar-100-python.tar.gz" if packed else tmp_path / "cifar-100-python")
    test = CIFAR100(tmp_path, train=False)
    assert len(test) == 3 and test.targets == pickle.loads(files["cifar-100-python/test"])[b"fine_labels"]
    assert "Split: Test" in repr(test)


def test_cifar100_flipped_byte_and_real_md5_table(tmp_path, fake_md5):
    files = _fake()
    write_tar_files(tmp_path / "cifar-100-python.tar.gz", files)
    with pytest.raises(
        ChecksumError, match="expected (7973b15100ade9c7d40fb424638fde48|16019d7e3df5f24257cddd939b257f8d)"
    ):
        CIFAR100(tmp_path)
    fake_md5(files)
    raw = bytearray(files["cifar-100-python/meta"])
    raw[-3] ^= 0x01
    bad = write_files(tmp_path / "bad", {**files, "cifar-100-python/meta": bytes(raw)})
    with pytest.raises(ChecksumError, match=r"meta has MD5 \w+, expected " + md5sum(files["cifar-100-python/meta"])):
        CIFAR100(bad)


def test_cifar100_missing_incomplete_and_offline_messages(tmp_path, fake_md5, monkeypatch):
    with pytest.raises(FileNotFoundError) as info:
        CIFAR100(tmp_path, train=False)
    message = str(info.value)
    assert str(tmp_path / "cifar-100-python" / "test") in message and "f0ef6b0ae62326f3e7ffdfab6717acfc" in message
    assert str(tmp_path / "cifar-100-python" / "meta") in message and "7973b15100ade9c7d40fb424638fde48" in message
    assert "cifar-100-python.tar.gz (md5 eb9058c3a382ffc7106e4002c42a8d85)" in message
    files = _fake()
    fake_md5(files)
    del files["cifar-100-python/meta"]
    write_files(tmp_path, files)
    with pytest.raises(
        FileNotFoundError, match=r"no complete copy: found the folder .*cifar-100-python, which lacks meta"
    ):
        CIFAR100(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    write_tar_files(other / "cifar-100-python.tar.gz", files)
    with pytest.raises(FileNotFoundError, match=r"which lacks cifar-100-python/meta"):
        CIFAR100(other)

    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    empty = tmp_path / "empty"
    with pytest.raises(DownloadError, match=r"(?s)network is unreachable.*cifar-100-python/train"):
        CIFAR100(empty, download=True)


def test_cifar100_corrupt_archive_and_bad_contents(tmp_path, fake_md5):
    files = _fake()
    archive = write_tar_files(tmp_path / "cifar-100-python.tar.gz", files)
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])  # truncated
    fake_md5(files)
    with pytest.raises((EOFError, tarfile.TarError, OSError), match="truncated or corrupt"):
        CIFAR100(tmp_path)
    cases = {
        "label": (
            {"train": {b"fine_labels": [100] * 7}},
            r"\['fine_labels'\] must lie in \[0, 100\), got \[100, 100\]",
        ),
        "coarse": ({"train": {b"coarse_labels": [0] * 6}}, r"has 7 images but \(6,\) coarse_labels"),
        "data": (
            {"train": {b"data": np.zeros((7, 3000), np.uint8)}},
            r"\['data'\] should be a uint8 array \(N, 3072\)",
        ),
        "names": ({"meta": {b"fine_label_names": FINE[:99]}}, r"\['fine_label_names'\] should list 100 names"),
    }
    for name, (overrides, message) in cases.items():
        bad = _fake(**overrides)
        fake_md5(bad)
        with pytest.raises(ValueError, match=message):
            CIFAR100(write_files(tmp_path / name, bad))


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar100_pickle_cannot_run_code(tmp_path, fake_md5):
    files = _fake()
    files["cifar-100-python/meta"] = pickle.dumps({b"fine_label_names": _Boom()}, protocol=2)
    fake_md5(files)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        CIFAR100(write_files(tmp_path, files))


def test_cifar100_download_from_file_url(tmp_path, fake_md5, monkeypatch):
    files = _fake(seed=3)
    fake_md5(files)
    server = write_tar_files(tmp_path / "server.tar.gz", files)
    monkeypatch.setattr(CIFAR100, "url", server.as_uri())
    monkeypatch.setattr(CIFAR100, "tgz_md5", md5sum(server))
    cache = tmp_path / "cache"
    ds = CIFAR100(cache, download=True)
    assert (cache / "cifar-100-python.tar.gz").is_file() and len(ds) == 7
    monkeypatch.setattr(CIFAR100, "tgz_md5", "f" * 32)  # already there: no new download, reads the cached file
    assert len(CIFAR100(cache, download=True, train=False)) == 3


def test_cifar100_argument_checks(tmp_path):
    with pytest.raises(TypeError, match="CIFAR100: train must be a bool, got str 'test'"):
        CIFAR100(tmp_path, train="test")
