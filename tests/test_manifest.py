"""The reproducibility manifest every file minidl.save writes: its content, git inside and outside a repository,
files without one, and how minidl.load and minidl.checkpoint_info show it."""

from __future__ import annotations

import datetime
import io
import json
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import minidl
from minidl import _manifest, nn


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A fresh git repository with one commit, as the working directory."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "train.py").write_text("print('hi')\n")
    _git(root, "add", "train.py")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    return root, head.stdout.strip()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_manifest_records_versions_backend_seed_command_and_time(tmp_path, monkeypatch, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    monkeypatch.chdir(tmp_path)  # not a repository: the git fields are None
    monkeypatch.setattr(sys, "argv", ["train.py", "--lr", "0.1", "--name", "my run"])
    minidl.manual_seed(1234)
    path = tmp_path / f"ckpt{suffix}"
    minidl.save({"model": nn.Linear(2, 3).state_dict(), "epoch": 1}, path)
    info = minidl.checkpoint_info(path)
    assert list(info) == list(_manifest.MANIFEST_KEYS)
    assert info["minidl"] == minidl.__version__ and info["numpy"] == np.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["backend"] == minidl.get_backend().name
    assert info["seed"] == 1234
    assert info["command"] == "train.py --lr 0.1 --name 'my run'"
    assert shlex.split(info["command"]) == sys.argv
    assert info["git_commit"] is None and info["git_dirty"] is None
    created = datetime.datetime.fromisoformat(info["created"])
    assert abs((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()) < 600
    try:
        import numba
    except ImportError:
        assert info["numba"] is None
    else:
        assert info["numba"] == numba.__version__
    # the manifest is metadata: the checkpoint itself loads exactly as before
    ckpt = minidl.load(path)
    assert sorted(ckpt) == ["epoch", "model"] and ckpt["epoch"] == 1


def test_manifest_follows_the_seed_and_the_backend(tmp_path):
    minidl.manual_seed(7)
    minidl.save({"w": np.ones(2)}, tmp_path / "a.npz")
    assert minidl.checkpoint_info(tmp_path / "a.npz")["seed"] == 7
    minidl.manual_seed(8)
    minidl.save({"w": np.ones(2)}, tmp_path / "b.npz")
    assert minidl.checkpoint_info(tmp_path / "b.npz")["seed"] == 8
    with minidl.use_backend("numpy"):
        minidl.save({"w": np.ones(2)}, tmp_path / "c.npz")
    assert minidl.checkpoint_info(tmp_path / "c.npz")["backend"] == "numpy"


def test_git_commit_and_dirty_flag_inside_a_repository(repo, monkeypatch):
    root, head = repo
    monkeypatch.chdir(root)
    minidl.save({"w": np.ones(2)}, root / "clean.npz")  # an untracked file does not make the tree dirty
    info = minidl.checkpoint_info(root / "clean.npz")
    assert info["git_commit"] == head and info["git_dirty"] is False
    (root / "train.py").write_text("print('changed')\n")
    minidl.save({"w": np.ones(2)}, root / "dirty.npz")
    info = minidl.checkpoint_info(root / "dirty.npz")
    assert info["git_commit"] == head and info["git_dirty"] is True


def test_git_absent_leaves_the_fields_empty_and_the_save_succeeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))  # no git executable to be found
    assert _manifest.git_state() == (None, None)
    minidl.save({"w": np.ones(2)}, tmp_path / "a.npz")
    info = minidl.checkpoint_info(tmp_path / "a.npz")
    assert info["git_commit"] is None and info["git_dirty"] is None


def test_a_deleted_working_directory_or_no_argv_does_not_stop_a_save(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    monkeypatch.delattr(sys, "argv")
    minidl.save({"w": np.ones(2)}, tmp_path / "a.npz")
    info = minidl.checkpoint_info(tmp_path / "a.npz")
    assert info["git_commit"] is None and info["command"] == ""


def test_git_that_hangs_is_given_up(tmp_path, monkeypatch):
    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))

    monkeypatch.setattr(subprocess, "run", hang)
    assert _manifest.git_state(tmp_path) == (None, None)


def _old_checkpoint(path, tree_value):
    """A checkpoint as minidl wrote it before the manifest: the description has no 'manifest' key."""
    meta = json.dumps({"format": "minidl-checkpoint", "version": 1, "tree": tree_value}).encode()
    buffer = io.BytesIO()
    np.savez(buffer, w=np.arange(3.0), __minidl__=np.frombuffer(meta, np.uint8))
    path.write_bytes(buffer.getvalue())
    return path


def test_files_without_a_manifest_still_load(tmp_path, capsys):
    old = _old_checkpoint(tmp_path / "old.npz", {"__dict__": [["w", {"__array__": "w"}], ["epoch", 2]]})
    assert minidl.checkpoint_info(old) is None
    ckpt = minidl.load(old, verbose=True)
    assert ckpt["epoch"] == 2 and ckpt["w"].tolist() == [0.0, 1.0, 2.0]
    assert "no reproducibility manifest" in capsys.readouterr().out
    plain = tmp_path / "plain.npz"  # a plain archive of arrays (converted weights)
    np.savez(plain, weight=np.ones((2, 2)))
    assert minidl.checkpoint_info(plain) is None and sorted(minidl.load(plain)) == ["weight"]


def test_load_verbose_prints_the_manifest(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fit.py", "--epochs", "3"])
    minidl.manual_seed(5)
    minidl.save({"w": np.ones(2)}, tmp_path / "a.npz")
    minidl.load(tmp_path / "a.npz")
    assert capsys.readouterr().out == ""  # quiet by default
    minidl.load(tmp_path / "a.npz", verbose=True)
    out = capsys.readouterr().out
    assert f"minidl {minidl.__version__}, numpy {np.__version__}" in out
    assert "seed 5" in out and "command: fit.py --epochs 3" in out


def test_trainer_checkpoints_carry_the_manifest(tmp_path):
    from minidl import optim
    from minidl.data import DataLoader, TensorDataset
    from minidl.train import ModelCheckpoint, Trainer

    minidl.manual_seed(11)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.arange(8) % 2), batch_size=4)
    model = nn.Linear(3, 2)
    trainer = Trainer(
        model,
        nn.CrossEntropyLoss(),
        optim.SGD(model.parameters(), lr=0.1),
        callbacks=[ModelCheckpoint(tmp_path / "ckpt")],
        progress=False,
        verbose=False,
    )
    trainer.fit(loader, loader, epochs=1)
    info = minidl.checkpoint_info(tmp_path / "ckpt" / "last.npz")
    assert info["seed"] == 11 and info["minidl"] == minidl.__version__


def test_a_damaged_manifest_is_named(tmp_path):
    meta = json.dumps({"format": "minidl-checkpoint", "version": 1, "tree": 1, "manifest": [1, 2]}).encode()
    buffer = io.BytesIO()
    np.savez(buffer, __minidl__=np.frombuffer(meta, np.uint8))
    (tmp_path / "bad.npz").write_bytes(buffer.getvalue())
    assert minidl.load(tmp_path / "bad.npz") == 1  # the manifest is not needed to load
    with pytest.raises(
        ValueError,
        match=r"^minidl\.checkpoint_info: .*bad\.npz has a damaged checkpoint description: expected 'manifest' to be",
    ):
        minidl.checkpoint_info(tmp_path / "bad.npz")


def test_checkpoint_info_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^minidl\.checkpoint_info: no file at "):
        minidl.checkpoint_info(tmp_path / "nothing.npz")
    with pytest.raises(IsADirectoryError, match=r"^minidl\.checkpoint_info: .* is a folder"):
        minidl.checkpoint_info(tmp_path)


def test_checkpoint_info_names_itself_for_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "res.jsonl").write_text('{"search": "random_search"}\n')
    with pytest.raises(
        ValueError, match=r"^minidl\.checkpoint_info: .*res\.jsonl is not an \.npz or \.safetensors file"
    ):
        minidl.checkpoint_info(tmp_path / "res.jsonl")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(ValueError, match=r"^minidl\.checkpoint_info: .*cut\.npz is truncated or not an \.npz file"):
        minidl.checkpoint_info(tmp_path / "cut.npz")
    with pytest.raises(ValueError, match=r"^minidl\.load: .*res\.jsonl is not an \.npz or \.safetensors file"):
        minidl.load(tmp_path / "res.jsonl")  # load still names load


@pytest.mark.parametrize("verbose", ["yes", 1, None])
def test_load_verbose_must_be_a_bool(tmp_path, verbose):
    minidl.save({"w": np.ones(2)}, tmp_path / "a.npz")
    with pytest.raises(
        TypeError, match=rf"^minidl\.load: verbose must be a bool, got {verbose!r} \({type(verbose).__name__}\)$"
    ):
        minidl.load(tmp_path / "a.npz", verbose=verbose)
