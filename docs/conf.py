"""Sphinx configuration of the minidl documentation (``make docs`` builds it into ``site/``).

The pages are the Markdown files of this folder (MyST, read by myst-nb) and an API reference generated from the
docstrings (Google style with RST math, read by napoleon and autodoc).

Notebooks: the tutorials are jupytext "percent" files in ``notebooks/``; ``make notebooks`` (and ``make docs``, for
those missing or older than their source) executes them with jupytext into ``docs/tutorials/*.ipynb``, quick
settings by default, and myst-nb renders those with their outputs. Nothing is executed during the build itself
(``nb_execution_mode = "off"``), so that a build takes the same time whatever the notebooks do. The code blocks of
the Markdown pages are run by ``tests/test_docs.py``, the notebooks by ``tests/test_notebooks.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout this file belongs to, not another installed minidl

import minidl  # noqa: E402

project = "minidl"
author = "the minidl developers"
copyright = "the minidl developers (MIT License)"
release = minidl.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]

exclude_patterns = ["_build", "img/*.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# Markdown pages: $...$ and $$...$$ math, heading anchors for links like design.md#3-functional-pairs.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Notebooks: none is executed during the build (see the module docstring); their pages are made by `make notebooks`.
nb_execution_mode = "off"
nb_merge_streams = True  # a cell's printed lines in one block, not one block per write

# Docstrings: Google style, with two sections of our own (STYLE.md): Shape and Backward.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shape", "Backward", "Notation"]
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields: a NamedTuple's fields are documented once, by autodoc

autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autosummary_generate = False

html_theme = "furo"
html_title = f"minidl {release}"
html_static_path: list[str] = []


# The shape notation of the docstrings writes "any number of dimensions" as a bare star, as PyTorch does:
# ``(N, *)``, ``(N, C, *)``, ``(*, *normalized_shape)``. In RST a star opens emphasis, so each such star (one that
# follows "(" or ", ") is escaped before the docstring is parsed, outside inline literals, roles and doctest blocks.
_SPANS = re.compile(r"(``.+?``|:[\w:.-]+:`[^`]*`|`[^`]*`_?)")
_SHAPE_STAR = re.compile(r"(?<=\()\*|(?<=, )\*")


def _escape_shape_stars(app, what, name, obj, options, lines: list[str]) -> None:
    in_doctest = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            in_doctest = True
        elif not stripped:
            in_doctest = False
        if in_doctest or "*" not in line:
            continue
        parts = _SPANS.split(line)
        lines[i] = "".join(p if k % 2 else _SHAPE_STAR.sub(r"\\*", p) for k, p in enumerate(parts))


def setup(app):
    app.connect("autodoc-process-docstring", _escape_shape_stars, priority=400)  # before napoleon (500)
