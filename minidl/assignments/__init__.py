"""Course assignments on minidl: solution markers, student editions, an autograder and its self-check.

An assignment is a folder (see ``assignments/`` in the repository) holding the instructor's solution files, with
``# BEGIN SOLUTION`` / ``# END SOLUTION`` around each answer, and a ``grading.py`` that declares
``ASSIGNMENT = Assignment(...)``: the student files, one :class:`Check` per graded function (usually a
:func:`minidl.testing.check_pair` against minidl's reference), and planted :class:`Bug` s. One command does the rest::

    python -m minidl.assignments build   assignments/a2_cnn  student/a2_cnn   # the student edition
    python -m minidl.assignments grade   assignments/a2_cnn --submission DIR --results results.json
    python -m minidl.assignments check   assignments/a2_cnn [--quick]        # solutions 100 %, stubs 0, bugs caught
    python -m minidl.assignments autograder assignments/a2_cnn out/           # Gradescope's autograder.zip

``docs/assignments.md`` walks through authoring, hidden test cases and deployment.
"""

from minidl.assignments._commands import CheckOutcome, build, build_autograder, check, grade_folder
from minidl.assignments._grade import (
    Assignment,
    Bug,
    Check,
    CheckResult,
    Grade,
    Submission,
    grade,
    load_assignment,
)
from minidl.assignments._markers import has_markers, strip_solutions

__all__ = [
    "Assignment",
    "Bug",
    "Check",
    "CheckOutcome",
    "CheckResult",
    "Grade",
    "Submission",
    "build",
    "build_autograder",
    "check",
    "grade",
    "grade_folder",
    "has_markers",
    "load_assignment",
    "strip_solutions",
]
