"""The theory sequence (docs/theory/) is complete. Its Python snippets, links and images are checked with every other
page by tests/test_docs.py."""

from __future__ import annotations

from pathlib import Path

THEORY = Path(__file__).resolve().parents[1] / "docs" / "theory"


def test_every_page_of_the_sequence_exists():
    expected = {
        "index.md", "convolution.md", "pooling.md", "normalization.md", "dropout.md", "activations.md",
        "softmax-and-losses.md", "linear.md", "optimizers.md", "initialization.md", "conventions.md", "attention.md",
    }  # fmt: skip
    pages = {p.name for p in THEORY.glob("*.md")}
    assert expected <= pages, f"missing theory pages: {sorted(expected - pages)}"
