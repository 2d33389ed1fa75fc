"""The pages of the README and of docs/ stay true: every Python block runs as written, every fenced block says what
it is, and every relative link points at a file of the repository.

The Python blocks of a page run in order in one namespace, as a reader who copies them one after the other would run
them, in a temporary working directory (the snippets that write files write there). A page needs nothing from
outside itself: no data set but the embedded CIFAR-10 sample, no GPU (the GPU page runs on the CPU stand-in for
CuPy, ``tests/gpu/fake_cupy.py``, where CuPy is not installed).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import minidl
from minidl import backend as backend_module
from tests.gpu.fake_cupy import make_fake_cupy

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")),
]

# A fence opens with ``` (indented or not) and an info string; "python" blocks run, the others are shown only.
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`\n]*)$")
SHOWN_ONLY = {"bash", "text", "console"}  # shell commands and program output
SPHINX_DIRECTIVES = re.compile(r"^\{(toctree|include|eval-rst)\}")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def fenced_blocks(path: Path) -> list[tuple[int, str, str]]:
    """The fenced blocks of a Markdown page: (line number, info string, code with the fence's indentation removed)."""
    blocks, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, start = opening["indent"], opening["fence"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: the block opened here is never closed")
        blocks.append((start + 1, opening["info"].strip(), "\n".join(body) + "\n"))
        i += 1
    return blocks


def python_blocks(path: Path) -> list[tuple[int, str]]:
    return [(line, code) for line, info, code in fenced_blocks(path) if info == "python"]


def test_the_pages_and_their_python_blocks_are_found():
    assert {"README.md", "docs/training.md", "docs/models.md", "docs/gpu.md"} <= set(PAGES)
    total = sum(len(python_blocks(ROOT / page)) for page in PAGES)
    assert total >= 19, f"only {total} python blocks found in {PAGES}: has the fence parser broken?"


@pytest.mark.parametrize("page", PAGES)
def test_every_fenced_block_names_what_it_is(page):
    """A block without "python" is not run: it must say what it is instead (bash, text, a Sphinx directive)."""
    for line, info, _ in fenced_blocks(ROOT / page):
        assert info == "python" or info in SHOWN_ONLY or SPHINX_DIRECTIVES.match(info), (
            f"{page}:{line}: a fenced block with info string {info!r}: write ```python for code that runs, "
            f"```bash for commands, ```text for output (only python blocks are run by tests/test_docs.py)"
        )


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_point_at_files_of_the_repository(page):
    path = ROOT / page
    for match in LINK.finditer(path.read_text()):
        target = (match[1] or match[2]).split("#")[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):  # an anchor on the same page, or a URL
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{page}: the link {target!r} leaves the repository ({resolved})"
        assert resolved.exists(), f"{page}: the link {target!r} points at {resolved}, which does not exist"


@pytest.fixture
def cupy_for_the_gpu_page(monkeypatch):
    """The real CuPy where it is installed, else the CPU stand-in (and a cupy backend built for this test only)."""
    try:
        import cupy

        if cupy.is_available():
            return
    except ImportError:
        pass
    monkeypatch.setitem(sys.modules, "cupy", make_fake_cupy())
    fresh = {k: v for k, v in backend_module._INSTANCES.items() if k != "cupy"}
    monkeypatch.setattr(backend_module, "_INSTANCES", fresh)


@pytest.mark.parametrize("page", [page for page in PAGES if python_blocks(ROOT / page)])
def test_the_python_blocks_of_a_page_run(page, tmp_path, monkeypatch, capsys, request):
    if page in ("docs/training.md", "docs/visualization.md"):
        pytest.importorskip("matplotlib")  # they draw plots
        monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    if page == "docs/gpu.md":
        request.getfixturevalue("cupy_for_the_gpu_page")
    if page == "docs/distributed.md":
        pytest.importorskip("mpi4py", reason='needs the dist extra: pip install "minidl[dist]"', exc_type=ImportError)
    namespace: dict = {"__name__": "docs_snippet"}
    backend = minidl.get_backend().name
    try:
        for line, code in python_blocks(ROOT / page):
            code = "\n" * line + code  # so that a traceback gives the line number in the page
            exec(compile(code, str(ROOT / page), "exec"), namespace)  # noqa: S102  (our own docs)
    finally:
        minidl.set_backend(backend)
    capsys.readouterr()
