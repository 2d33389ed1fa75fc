"""Import an assignment's solution modules by file (the assignments are folders, not packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "assignments"


def load_solution(assignment: str, name: str):
    """The module ``assignments/<assignment>/<name>.py``, imported under a private name."""
    path = ROOT / assignment / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_solution_{assignment}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
