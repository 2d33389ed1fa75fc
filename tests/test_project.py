"""Project metadata stays consistent: one version, the license pyproject names, the files a contributor looks for."""

from __future__ import annotations

from pathlib import Path

import pytest

import minidl

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_has_one_source():
    meta = pyproject()
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "minidl.__version__"}
    assert minidl.__version__.count(".") == 2 and all(part.isdigit() for part in minidl.__version__.split("."))
    assert f"[{minidl.__version__}]" in (ROOT / "CHANGELOG.md").read_text()  # the released version has its entry


def test_license_file_is_the_license_pyproject_names():
    assert pyproject()["project"]["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert "## Adding a layer" in (ROOT / "CONTRIBUTING.md").read_text()
