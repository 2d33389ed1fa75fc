"""Every Python snippet of the pages below runs as written (in order, one namespace per page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import minidl

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/design.md", "docs/gradcheck.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_the_python_snippets_of_a_page_run(page, capsys):
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no python snippet"
    namespace: dict = {"__name__": "docs_snippet"}
    backend = minidl.get_backend().name
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"{page} snippet {i + 1}", "exec"), namespace)  # noqa: S102  (our own docs)
    finally:
        minidl.set_backend(backend)
    capsys.readouterr()
