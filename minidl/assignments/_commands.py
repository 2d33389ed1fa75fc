"""build, grade, check and autograder: what ``python -m minidl.assignments`` runs."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from minidl._atomic import atomic_open, atomic_write
from minidl.assignments._grade import Assignment, Grade, Submission, grade
from minidl.assignments._markers import strip_solutions
from minidl.testing._hypothesis import QUICK_EXAMPLES

__all__ = ["CheckOutcome", "build", "build_autograder", "check", "grade_folder"]

FULL_EXAMPLES = 20  # (QUICK_EXAMPLES: the testing kit's, whose full checks run the quick draws too)


MARKER = ".minidl-assignment-output"  # written into every folder build/autograder fill; --force removes only those


def _write(path: Path, text: str) -> None:
    """Write atomically: a new temporary file beside ``path``, flushed to disk, then a rename."""
    atomic_write(path, text.encode(), "minidl.assignments")


def _fresh_folder(assignment: Assignment, out: Path, force: bool, command: str) -> None:
    """Make ``out`` an empty folder for ``command``'s output, refusing to touch the instructor's files: ``out`` may
    not be, hold or lie inside the assignment's folder, and ``--force`` only replaces a previous output (a folder
    with the marker file)."""
    assert assignment.root is not None
    source, target = assignment.root.resolve(), out.resolve()
    where = (
        "is the assignment folder" if target == source
        else "contains the assignment folder" if target in source.parents
        else "is inside the assignment folder" if source in target.parents
        else None
    )  # fmt: skip
    if where is not None:
        raise ValueError(
            f"{command}: the output folder {out} {where} {source}; choose a folder outside it (nothing was written)"
        )
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{command}: {out} exists and is not a folder")
    if target.exists() and any(target.iterdir()):
        if not force:
            raise FileExistsError(f"{out} exists and is not empty (pass --force to replace it)")
        if not (target / MARKER).is_file():
            raise FileExistsError(
                f"{command}: {out} is not empty and is not an earlier output of build or autograder (it has no "
                f"{MARKER} file), so --force does not delete it; empty it yourself or choose another folder"
            )
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)
    _write(target / MARKER, f"written by python -m minidl.assignments {command}; --force may replace this folder\n")


@contextlib.contextmanager
def solution_folder(assignment: Assignment) -> Iterator[Path]:
    """The folder holding the solution files: the assignment's own, or a temporary one ``materialize`` fills."""
    assert assignment.root is not None
    if assignment.materialize is None:
        yield assignment.root
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "solution"
        folder.mkdir()
        assignment.materialize(folder)
        yield folder


def build(assignment: Assignment, out: str | Path, *, force: bool = False) -> list[Path]:
    """Write the student edition into ``out``: each student file with its solutions replaced by
    ``raise NotImplementedError``, ``grading.py`` without its hidden blocks, and README.md if there is one.
    Returns the files written."""
    assert assignment.root is not None
    out = Path(out)
    _fresh_folder(assignment, out, force, "build")
    written = []
    with solution_folder(assignment) as solutions:
        for name in (*assignment.student_files, "grading.py"):
            source = (assignment.root if name == "grading.py" else solutions) / name
            text = strip_solutions(source.read_text(), str(source))
            compile(text, str(out / name), "exec")  # the student edition must stay valid Python
            _write(out / name, text)
            written.append(out / name)
    readme = assignment.root / "README.md"
    if readme.is_file():
        _write(out / "README.md", readme.read_text())
        written.append(out / "README.md")
    return written


def grade_folder(
    assignment: Assignment,
    submission: str | Path,
    *,
    quick: bool = False,
    time_limit: float | None = None,
    on_result: Callable[[Grade], None] | None = None,
) -> Grade:
    """Grade the submission folder (its student files) with the assignment's checks (hidden ones included);
    ``time_limit`` and ``on_result`` as in :func:`~minidl.assignments.grade`."""
    examples = QUICK_EXAMPLES if quick else FULL_EXAMPLES
    return grade(assignment, Submission(submission, examples=examples), time_limit=time_limit, on_result=on_result)


_RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this with the student's files in /autograder/submission.
set -euo pipefail
cd /autograder/source
python -m minidl.assignments grade assignment --submission /autograder/submission \\
    --results /autograder/results/results.json
"""

_SETUP = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image. MINIDL_SPEC: what pip installs (a git URL, a
# version); else a minidl wheel you added next to this file; else minidl from the package index.
set -euo pipefail
cd /autograder/source
if [ -n "${MINIDL_SPEC:-}" ]; then
    pip install "$MINIDL_SPEC"
elif ls minidl-*.whl >/dev/null 2>&1; then
    pip install "$(ls minidl-*.whl | head -n 1)"
else
    pip install minidl
fi
pip install "hypothesis>=6.100"   # the [assignments] extra: minidl.testing draws its configurations with it
"""


def build_autograder(
    assignment: Assignment, out: str | Path, *, force: bool = False, wheel: str | Path | None = None
) -> Path:
    """Write Gradescope's autograder zip (``setup.sh``, ``run_autograder``, and the assignment with its hidden
    checks but without solutions, and ``wheel``, a minidl wheel for setup.sh to install) into ``out``; returns
    the zip's path."""
    assert assignment.root is not None
    out = Path(out)
    _fresh_folder(assignment, out, force, "autograder")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "assignment"
        build(assignment, folder)
        _write(folder / "grading.py", (assignment.root / "grading.py").read_text())  # with the hidden checks
        zip_path = out / "autograder.zip"
        with atomic_open(zip_path, "autograder") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in (("run_autograder", _RUN_AUTOGRADER), ("setup.sh", _SETUP)):
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFREG | 0o755) << 16
                z.writestr(info, text)
            if wheel is not None:
                z.write(wheel, Path(wheel).name)
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.name != MARKER:
                    z.write(path, f"assignment/{path.relative_to(folder)}")
    return zip_path


@dataclasses.dataclass
class CheckOutcome:
    """What ``check`` found: one line per graded edition and per planted bug, and whether all were right."""

    lines: list[str]
    ok: bool
    bug_reports: dict[str, str]  # bug name -> the grader's console report on it

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _copy_solution(assignment: Assignment, solutions: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in assignment.student_files:
        shutil.copy2(solutions / name, dest / name)


def check(assignment: Assignment, *, quick: bool = False) -> CheckOutcome:
    """Grade the solutions (must score 100 %), the student edition (must score 0) and every planted bug (each
    must lose points on a check whose message names the bug's function)."""
    with solution_folder(assignment) as solutions:
        return _check(assignment, solutions, quick)


def _check(assignment: Assignment, solutions: Path, quick: bool) -> CheckOutcome:
    lines, ok, reports = [f"check {assignment.title}"], True, {}
    solution = grade_folder(assignment, solutions, quick=quick)
    good = solution.score == solution.max_score
    ok &= good
    verdict = "ok" if good else "WRONG: expected 100 %"
    lines.append(f"  solutions  {solution.score:g} / {solution.max_score:g}  {verdict}")
    if not good:
        lines.append(solution.report())
    with tempfile.TemporaryDirectory() as tmp:
        stubs_dir = Path(tmp) / "student"
        build(assignment, stubs_dir)
        stubs = grade_folder(assignment, stubs_dir, quick=quick)
        good = stubs.score == 0
        ok &= good
        lines.append(f"  stubs      {stubs.score:g} / {stubs.max_score:g}  {'ok' if good else 'WRONG: expected 0'}")
        if not good:
            lines.append(stubs.report())
        for i, bug in enumerate(assignment.bugs):
            mutant = Path(tmp) / f"bug{i}"
            _copy_solution(assignment, solutions, mutant)
            target = mutant / bug.file
            target.write_text(bug.apply(target.read_text()))
            result = grade_folder(assignment, mutant, quick=quick)
            reports[bug.name] = result.report()
            lost = [r for r in result.results if r.score < r.max_score]
            named = [r for r in lost if re.search(rf"\b{re.escape(bug.function)}\b", r.output)]
            good = bool(named)
            ok &= good
            verdict = "caught" if good else ("lost points, but no message names it" if lost else "NOT CAUGHT")
            lines.append(f"  bug {bug.name!r} in {bug.function}: {result.score:g} / {result.max_score:g}  {verdict}")
            if not good:
                lines.append(result.report())
    lines.append("check passed" if ok else "check FAILED")
    return CheckOutcome(lines, ok, reports)
