"""Every Python snippet of the theory pages (docs/theory/*.md) runs as written: in order, one namespace per page,
from minidl's generator seeded with 0 (its state and the backend are restored afterwards)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import minidl

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory"
PAGES = sorted(p.name for p in THEORY.glob("*.md"))


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_every_page_of_the_sequence_exists():
    expected = {
        "index.md", "convolution.md", "pooling.md", "normalization.md", "dropout.md", "activations.md",
        "softmax-and-losses.md", "linear.md", "optimizers.md", "initialization.md", "conventions.md",
    }  # fmt: skip
    assert expected <= set(PAGES), f"missing theory pages: {sorted(expected - set(PAGES))}"


@pytest.mark.parametrize("page", [p for p in PAGES if p != "index.md"])
def test_the_python_snippets_of_a_theory_page_run(page, capsys):
    blocks = python_blocks(THEORY / page)
    assert blocks, f"docs/theory/{page} has no python snippet"
    namespace: dict = {"__name__": "docs_snippet"}
    backend, rng_state = minidl.get_backend().name, minidl.get_rng_state()
    minidl.manual_seed(0)
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"docs/theory/{page} snippet {i + 1}", "exec"), namespace)  # noqa: S102  (our docs)
    finally:
        minidl.set_backend(backend)
        minidl.set_rng_state(rng_state)
    capsys.readouterr()


@pytest.mark.parametrize("page", PAGES)
def test_the_images_a_theory_page_shows_exist(page):
    text = (THEORY / page).read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
        assert (THEORY / target).resolve().is_file(), f"docs/theory/{page} shows {target}, which does not exist"
