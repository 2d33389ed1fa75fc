"""Atomic writes under crashes (kill -9 mid-save, stale temporary files), permissions, and the checks that run
before ``minidl.load`` allocates anything."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import _atomic

ROOT = Path(__file__).resolve().parents[1]


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(_atomic.TEMP_SUFFIX))


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _orphan(folder: Path, target: str, pid: int, host: str = _atomic._HOST) -> Path:
    path = folder / f".{target}.{host}.{pid}.0123abcd{_atomic.TEMP_SUFFIX}"
    path.write_bytes(b"half a checkpoint")
    return path


def _child(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE, text=True, env=env
    )


# ------------------------------------------------------------------------------------------------- kill -9 mid-save
_STALLED_SAVER = """
    import os, sys, time
    import numpy as np, minidl
    path = sys.argv[1]
    minidl.save({"w": np.zeros(4), "epoch": 1}, path)  # a complete checkpoint first

    def stall(src, dst):  # the temporary file is complete and synced: stop here, just before the rename
        print("writing", flush=True)
        time.sleep(120)

    os.replace = stall
    minidl.save({"w": np.ones(200_000), "epoch": 2}, path)
"""


def test_kill_9_mid_save_leaves_an_orphan_that_the_next_save_removes(tmp_path):
    path = tmp_path / "last.npz"
    proc = _child(_STALLED_SAVER, str(path))
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert len(_temps(tmp_path)) == 1  # the killed writer's temporary file is on disk
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait()
    assert _temps(tmp_path) == [_temps(tmp_path)[0]]  # nothing removed it yet
    assert minidl.load(path)["epoch"] == 1  # the previous checkpoint is intact
    minidl.save({"w": np.full(3, 7.0), "epoch": 3}, path)
    assert _temps(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]
    assert minidl.load(path)["epoch"] == 3


_LOOPING_SAVER = """
    import sys
    import numpy as np, minidl
    path = sys.argv[1]
    for i in range(10_000):
        minidl.save({"w": np.full(1_000_000, float(i)), "epoch": i}, path)
        print(i, flush=True)
"""


def test_kill_9_during_repeated_saves_never_leaves_a_broken_file(tmp_path):
    """Kill a process that saves 8 MB over and over after its 3rd save: wherever the kill lands, every file on disk
    loads, and the next save leaves no temporary file behind."""
    path = tmp_path / "ckpt.npz"
    proc = _child(_LOOPING_SAVER, str(path))
    try:
        for _ in range(3):
            assert proc.stdout.readline().strip().isdigit()
    finally:
        proc.kill()
        proc.wait()
    for p in tmp_path.iterdir():
        if not p.name.endswith(_atomic.TEMP_SUFFIX):
            ckpt = minidl.load(p)
            assert ckpt["w"].shape == (1_000_000,) and (ckpt["w"] == ckpt["epoch"]).all()
    minidl.save({"w": np.zeros(2), "epoch": -1}, path)
    assert _temps(tmp_path) == []
    assert minidl.load(path)["epoch"] == -1


# --------------------------------------------------------------------------------------------- stale temporary files
def test_only_temporary_files_of_dead_writers_on_this_host_are_removed(tmp_path):
    dead = _orphan(tmp_path, "ckpt.npz", _dead_pid())
    live = _orphan(tmp_path, "ckpt.npz", os.getppid())  # a live process (the test runner's parent)
    mine = _orphan(tmp_path, "ckpt.npz", os.getpid())  # another thread of this process may be writing it
    elsewhere = _orphan(tmp_path, "ckpt.npz", _dead_pid(), host="ffffffff" if _atomic._HOST != "ffffffff" else "0")
    other_target = _orphan(tmp_path, "other.npz", _dead_pid())
    foreign = tmp_path / ".ckpt.npz.notours.tmp"
    foreign.write_bytes(b"")
    minidl.save({"w": np.ones(2)}, tmp_path / "ckpt.npz")
    assert not dead.exists()
    assert live.exists() and mine.exists() and elsewhere.exists() and foreign.exists()
    assert other_target.exists()  # a save cleans only its own target's leftovers
    assert _atomic.remove_stale_temp_files(tmp_path) == [other_target]


@pytest.mark.parametrize("name", ["a" * 246 + ".npz", "é" * 125 + ".npz"], ids=["250-ascii", "254-bytes-utf8"])
def test_a_long_name_that_fits_is_saved_and_its_stale_temporary_files_are_found(tmp_path, name):
    """The temporary name shortens a long target (prefix, ~, hash), so a name the file system takes can be saved."""
    orphan = _orphan(tmp_path, _atomic._temp_target(name), _dead_pid())
    assert len(os.fsencode(orphan.name)) <= 255 and orphan.name.startswith("." + name[:80])
    minidl.save({"w": np.arange(3)}, tmp_path / name)
    assert minidl.load(tmp_path / name)["w"].tolist() == [0, 1, 2]
    assert not orphan.exists() and _temps(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_saving_to_a_symlink_replaces_the_file_it_points_to_and_keeps_the_link(tmp_path):
    (tmp_path / "store").mkdir()
    real = tmp_path / "store" / "ckpt.npz"
    minidl.save({"w": np.zeros(2)}, real)
    os.symlink("store/ckpt.npz", tmp_path / "latest.npz")
    minidl.save({"w": np.ones(2)}, tmp_path / "latest.npz")
    assert os.readlink(tmp_path / "latest.npz") == "store/ckpt.npz"
    assert minidl.load(real)["w"].tolist() == [1.0, 1.0]
    assert _temps(tmp_path) == [] and _temps(tmp_path / "store") == []
    os.symlink("store/new.npz", tmp_path / "dangling.npz")  # as open(path, "w") would, it creates the target
    minidl.save({"w": np.full(2, 2.0)}, tmp_path / "dangling.npz")
    assert os.path.islink(tmp_path / "dangling.npz") and minidl.load(tmp_path / "store" / "new.npz")["w"][0] == 2.0


def test_resume_removes_stale_temporary_files_of_the_checkpoint_folder(tmp_path):
    from minidl import nn, optim
    from minidl.train import Trainer
    from tests.train.toy import loaders

    train, val = loaders()
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), checkpoint_dir=tmp_path,
                      progress=False, verbose=False)  # fmt: skip
    trainer.fit(train, val, epochs=1)
    orphans = [_orphan(tmp_path, "last.npz", _dead_pid()), _orphan(tmp_path, "best.npz", _dead_pid())]
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), checkpoint_dir=tmp_path,
                      progress=False, verbose=False)  # fmt: skip
    trainer.fit(train, val, epochs=1, resume=True)  # nothing left to train: only the resume runs
    assert not any(p.exists() for p in orphans)
    assert trainer.epoch == 1


# -------------------------------------------------------------------------------------------------------- permissions
@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_get_the_permissions_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        minidl.save({"w": np.ones(2)}, tmp_path / "saved.npz")
        with open(tmp_path / "opened", "w"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "saved.npz").st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "saved.npz").st_mode) == stat.S_IMODE(os.stat(tmp_path / "opened").st_mode)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "ckpt.npz"
    minidl.save({"w": np.ones(2)}, path)
    os.chmod(path, 0o640)
    minidl.save({"w": np.zeros(2)}, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_every_atomic_writer_uses_the_shared_one(tmp_path):
    """History.save, plots and minidl.save go through minidl._atomic: their leftovers are cleaned the same way."""
    from minidl.train import History

    h = History()
    h.append({"epoch": 1, "train_loss": 1.0})
    orphan = _orphan(tmp_path, "history.csv", _dead_pid())
    h.save(tmp_path / "history.csv")
    assert not orphan.exists() and History.load(tmp_path / "history.csv") == h


def test_an_error_inside_the_block_leaves_the_target_and_no_temporary_file(tmp_path):
    path = tmp_path / "f.bin"
    _atomic.atomic_write(path, b"old", "test")
    with pytest.raises(RuntimeError, match="checksum"):
        with _atomic.atomic_open(path, "test") as f:
            f.write(b"new")
            raise RuntimeError("checksum mismatch")
    assert path.read_bytes() == b"old" and _temps(tmp_path) == []


# ------------------------------------------------------------------------------------ no allocation on a file's word
def _npz_with_member(path: Path, header_shape: tuple[int, ...], payload: bytes, compress: int = zipfile.ZIP_STORED):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": header_shape})
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        zf.writestr("w.npy", buf.getvalue() + payload)


def test_an_npy_header_larger_than_its_member_is_refused_before_allocating(tmp_path, monkeypatch):
    path = tmp_path / "huge.npz"
    _npz_with_member(path, (2**39,), b"\0" * 64)  # claims 4 TiB

    def no_read(*args, **kwargs):
        raise AssertionError("read_array was called: the array would have been allocated")

    monkeypatch.setattr(np.lib.format, "read_array", no_read)
    with pytest.raises(ValueError, match=r"huge.npz: member 'w.npy' claims an array of shape \(549755813888,\)"):
        minidl.load(path)


def test_compressed_members_within_the_deflate_ratio_still_load(tmp_path):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, w=np.zeros(1_000_000))  # 8 MB of zeros deflate about 1000:1
    assert minidl.load(path)["w"].shape == (1_000_000,)


def test_a_member_claiming_more_than_deflate_can_expand_to_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    _npz_with_member(path, (4,), b"\0" * 32, compress=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("w.npy")
    # forge the uncompressed size in the central directory (the one zipfile reads) to 1 TiB
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = (2**32 - 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert info.compress_size < 2**32 // 1032
    with pytest.raises(ValueError, match=r"claims 4294967295 bytes from \d+ compressed bytes, more than deflate"):
        minidl.load(path)


def test_a_checkpoint_that_fails_halfway_leaves_the_trainer_as_it_was(tmp_path):
    """The model and optimizer entries are fine, the history entry is damaged: nothing may stay half restored."""
    from minidl import nn, optim
    from minidl.train import Trainer

    def make():
        model = nn.Linear(3, 2)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return Trainer(model, nn.MSELoss(), opt, progress=False, verbose=False)

    source = make()
    ckpt = source.checkpoint()
    ckpt["epoch"] = 5
    ckpt["history"] = {"rows": []}  # damaged
    minidl.save(ckpt, tmp_path / "bad.npz")
    target = make()
    before = {k: v.copy() for k, v in target.model.state_dict().items()}
    rng_before = minidl.get_rng_state()
    with pytest.raises(ValueError, match=r"bad\.npz: the 'history' entry cannot be restored \(KeyError: 'records'\)"):
        target.load_checkpoint(tmp_path / "bad.npz")
    for k, v in target.model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(before[k]))
    assert target.epoch == 0 and minidl.get_rng_state() == rng_before
