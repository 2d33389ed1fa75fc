"""The reproducibility manifest every file :func:`minidl.save` writes carries: what made it, where and how.

``{"minidl": "0.1.0", "numpy": "2.1.0", "numba": "0.60.0" or None, "python": "3.12.3", "backend": "numpy",
"seed": 0 or None, "git_commit": "3f2a..." or None, "git_dirty": False or None, "command": "train.py --lr 0.1",
"created": "2026-12-03T09:30:00+00:00"}``

* ``seed`` is the last seed given to :func:`minidl.manual_seed` in this process (None when it was never called);
* ``git_commit`` is ``git rev-parse HEAD`` of the current working directory when it is inside a git repository,
  and ``git_dirty`` whether tracked files differ from that commit (both None outside a repository, when git is not
  installed or does not answer within two seconds: saving never fails because of git);
* ``command`` is ``sys.argv`` as a shell would quote it (:func:`shlex.join`);
* ``created`` is the UTC time of the save, ISO 8601.

The versions are read from the installed packages' metadata: numba is not imported to learn its version.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from typing import Any

import numpy as np

__all__ = ["MANIFEST_KEYS", "collect_manifest", "format_manifest", "git_state"]

MANIFEST_KEYS = (
    "minidl",
    "numpy",
    "numba",
    "python",
    "backend",
    "seed",
    "git_commit",
    "git_dirty",
    "command",
    "created",
)
_GIT_TIMEOUT_S = 2.0


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(args: list[str], cwd: str) -> str | None:
    """The stripped output of ``git <args>`` in ``cwd``, or None when git is absent, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(cwd: str | os.PathLike[str] | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git repository holding ``cwd`` (default: the working directory), or
    ``(None, None)`` outside a repository or without git. ``dirty``: tracked files differ from the commit."""
    try:
        where = os.fspath(cwd) if cwd is not None else os.getcwd()
    except OSError:  # the working directory was deleted
        return None, None
    commit = _git(["rev-parse", "HEAD"], where)
    if not commit:
        return None, None
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return commit, (None if status is None else status != "")


def collect_manifest() -> dict[str, Any]:
    """The manifest of a save happening now (see the module docstring for each field)."""
    from minidl import __version__
    from minidl._random import initial_seed
    from minidl.backend import get_backend

    commit, dirty = git_state()
    return {
        "minidl": __version__,
        "numpy": np.__version__,
        "numba": _package_version("numba"),
        "python": platform.python_version(),
        "backend": get_backend().name,
        "seed": initial_seed(),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": shlex.join(getattr(sys, "argv", None) or []),  # an embedded interpreter may have no argv
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def format_manifest(manifest: dict[str, Any] | None) -> str:
    """A few readable lines: ``minidl 0.1.0, numpy 2.1.0, numba 0.60.0, python 3.12.3, backend numpy, seed 0`` ..."""
    if manifest is None:
        return "no reproducibility manifest (written by a minidl older than the manifest, or by another program)"
    m = manifest
    lines = [
        f"minidl {m.get('minidl')}, numpy {m.get('numpy')}, numba {m.get('numba')}, python {m.get('python')}",
        f"backend {m.get('backend')}, seed {m.get('seed')}",
    ]
    commit = m.get("git_commit")
    if commit:
        lines.append(f"git commit {commit}" + (" (with uncommitted changes)" if m.get("git_dirty") else ""))
    else:
        lines.append("git commit: none (not saved inside a git repository)")
    lines.append(f"command: {m.get('command')}")
    lines.append(f"created: {m.get('created')}")
    return "\n".join(lines)
