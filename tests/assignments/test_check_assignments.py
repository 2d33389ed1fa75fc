"""CI runs ``check`` on every assignment: solutions 100 %, stubs 0, every planted bug caught with its function named.

Quick mode (4 drawn configurations per conformance check; for the build-minidl track, the graded tests of minidl
without the PyTorch parity ones, one pytest run per graded edition) keeps it short; ``python -m minidl.assignments
check assignments/*/`` without ``--quick`` grades as students are graded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from minidl.assignments import check, load_assignment

ROOT = Path(__file__).resolve().parents[2] / "assignments"
ASSIGNMENTS = sorted(p.parent.name for p in ROOT.glob("*/grading.py"))


def test_there_are_assignments():
    assert ASSIGNMENTS


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_check_passes(name):
    assignment = load_assignment(ROOT / name)
    outcome = check(assignment, quick=True)
    assert outcome.ok, str(outcome)
    assert len(assignment.bugs) >= 3
    assert f"solutions  {assignment_max(assignment):g} / " in str(outcome)


def assignment_max(assignment):
    return sum(c.points for c in assignment.checks)
