"""The tutorial notebooks (``notebooks/*.py``, jupytext percent format) run as written, in quick mode.

Each notebook is executed as a plain script in a fresh interpreter (no Jupyter needed: CI installs ``.[test]``),
with ``MINIDL_NOTEBOOK_QUICK=1`` (small data, few epochs), the Agg matplotlib backend and a temporary working
directory, so it reads nothing from the checkout but minidl and the embedded CIFAR-10 sample (a notebook that can use
a real dataset falls back to the sample when ``MINIDL_DATA_DIR`` does not hold it). Where jupytext is installed
(the ``docs`` extra), each file must also read as a notebook and be written back unchanged, so that its diffs stay
the reviewable text of the cells.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
TUTORIALS_INDEX = ROOT / "docs" / "tutorials" / "index.md"


def test_the_notebooks_are_found():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{k:02d}" for k in range(1, len(NOTEBOOKS) + 1)], NOTEBOOKS
    assert len(NOTEBOOKS) >= 7, f"expected the seven tutorials of notebooks/, found {[p.name for p in NOTEBOOKS]}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_has_a_quick_switch_and_a_title(notebook):
    text = notebook.read_text()
    assert 'QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"' in text, f"{notebook.name}: no QUICK switch"
    title = re.search(r"^# %% \[markdown\]\n# # (\d+)\. ", text, flags=re.MULTILINE)
    assert title is not None, f"{notebook.name}: the first markdown cell must open with '# <number>. <title>'"
    assert int(title.group(1)) == int(notebook.name[:2]), f"{notebook.name}: title number {title.group(1)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_in_quick_mode(notebook, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", MINIDL_NOTEBOOK_QUICK="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(notebook)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{notebook.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert done.stdout.strip(), f"{notebook.name} printed nothing: its results are its printed tables"
    assert "Traceback" not in done.stderr, done.stderr[-6000:]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_is_a_stable_jupytext_percent_file(notebook):
    jupytext = pytest.importorskip("jupytext")
    text = notebook.read_text()
    nb = jupytext.reads(text, fmt="py:percent")
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds[0] == "markdown" and "code" in kinds, f"{notebook.name}: cells {kinds}"
    # jupytext stamps its own version in the header it writes; the files leave it out (it would change with every
    # jupytext release), and everything else must come back as it is
    written = jupytext.writes(nb, fmt="py:percent")
    written = re.sub(r"^#\s+(format_version|jupytext_version): .*\n", "", written, flags=re.MULTILINE)
    assert written == text, f"{notebook.name}: jupytext would rewrite this file"


def test_every_notebook_is_in_the_tutorials_toctree():
    listed = re.findall(r"^(\d\d_\w+)$", TUTORIALS_INDEX.read_text(), flags=re.MULTILINE)
    assert listed == [p.stem for p in NOTEBOOKS], f"{TUTORIALS_INDEX.name} lists {listed}"
