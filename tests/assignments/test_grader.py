"""The autograder on a tiny assignment written here: partial credit, results.json, the report, build, check."""

from __future__ import annotations

import json
import zipfile

import pytest

from minidl.assignments import build, build_autograder, check, grade_folder, load_assignment
from minidl.assignments.__main__ import main

LAYERS = '''import numpy as np


def relu_forward(x):
    """ReLU."""
    # BEGIN SOLUTION
    return np.maximum(x, 0), x > 0
    # END SOLUTION


def relu_backward(dout, cache):
    """Gradient of relu_forward."""
    # BEGIN SOLUTION
    return dout * cache
    # END SOLUTION
'''

GRADING = """from minidl.assignments import Assignment, Bug, Check
from minidl.testing import check_pair


def forward(sub):
    check_pair(sub.load("layers").relu_forward, None, "relu", max_examples=sub.examples)


def backward(sub):
    layers = sub.load("layers")
    check_pair(layers.relu_forward, layers.relu_backward, "relu", max_examples=sub.examples)


# BEGIN HIDDEN
def hidden(sub):
    assert sub.load("layers").relu_forward(__import__("numpy").array([-1.0]))[0][0] == 0, "relu_forward: hidden case"
# END HIDDEN


ASSIGNMENT = Assignment(
    title="tiny",
    student_files=("layers.py",),
    checks=(
        Check("relu_forward", 3, forward),
        Check("relu_backward", 2, backward),
        # BEGIN HIDDEN
        Check("hidden relu_forward", 1, hidden, function="relu_forward"),
        # END HIDDEN
    ),
    bugs=(
        Bug("wrong mask", "layers.py", "return dout * cache", "return dout * ~cache", "relu_backward"),
        Bug("harmless", "layers.py", "np.maximum(x, 0)", "np.maximum(x, 0.0)", "relu_forward"),
    ),
)
"""


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "layers.py").write_text(LAYERS)
    (folder / "grading.py").write_text(GRADING)
    return folder


def test_the_solution_scores_full_marks_and_writes_gradescope_results(tiny, tmp_path):
    result = grade_folder(load_assignment(tiny), tiny, quick=True)
    assert (result.score, result.max_score) == (6, 6)
    result.write_json(tmp_path / "out" / "results.json")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["score"] == 6 and data["max_score"] == 6
    assert [t["name"] for t in data["tests"]] == ["relu_forward", "relu_backward", "hidden relu_forward"]
    assert all(set(t) == {"name", "score", "max_score", "output"} for t in data["tests"])


def test_partial_credit_per_function_with_the_reason(tiny, tmp_path):
    submission = tmp_path / "student"
    submission.mkdir()
    (submission / "layers.py").write_text(LAYERS.replace("return dout * cache", "return dout"))
    result = grade_folder(load_assignment(tiny), submission, quick=True)
    assert [r.score for r in result.results] == [3, 0, 1]
    report = result.report()
    assert "relu_backward" in report and "FAILED" in report and "total" in report and "(67 %)" in report
    assert "relu_backward: the gradient of x differs from the reference" in result.results[1].output


def test_build_strips_solutions_and_hidden_checks(tiny, tmp_path):
    written = build(load_assignment(tiny), tmp_path / "edition")
    assert sorted(p.name for p in written) == ["grading.py", "layers.py"]
    layers = (tmp_path / "edition" / "layers.py").read_text()
    assert 'raise NotImplementedError("relu_forward: your code here")' in layers and "np.maximum" not in layers
    grading = (tmp_path / "edition" / "grading.py").read_text()
    assert "hidden" not in grading
    student = load_assignment(tmp_path / "edition")  # the student edition grades itself with the public checks
    result = grade_folder(student, tmp_path / "edition", quick=True)
    assert result.score == 0 and result.max_score == 5
    assert result.results[0].output == "not implemented yet: relu_forward: your code here"
    with pytest.raises(FileExistsError, match="pass --force"):
        build(load_assignment(tiny), tmp_path / "edition")


def test_check_flags_a_planted_bug_that_costs_nothing(tiny):
    outcome = check(load_assignment(tiny), quick=True)
    assert not outcome.ok
    text = str(outcome)
    assert "solutions  6 / 6  ok" in text and "stubs      0 / 6  ok" in text
    assert "bug 'wrong mask' in relu_backward: 4 / 6  caught" in text
    assert "bug 'harmless' in relu_forward: 6 / 6  NOT CAUGHT" in text
    assert text.endswith("check FAILED")


def test_the_autograder_zip_holds_the_hidden_checks_but_no_solution(tiny, tmp_path):
    wheel = tmp_path / "minidl-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not a real wheel")
    path = build_autograder(load_assignment(tiny), tmp_path / "ag", wheel=wheel)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"run_autograder", "setup.sh", "assignment/layers.py", "assignment/grading.py"} <= names
        assert wheel.name in names and z.getinfo("run_autograder").external_attr >> 16 & 0o111
        assert "hidden" in z.read("assignment/grading.py").decode()
        assert "np.maximum" not in z.read("assignment/layers.py").decode()
        assert "--results /autograder/results/results.json" in z.read("run_autograder").decode()


def test_the_command_line_grades_and_writes_results(tiny, tmp_path, capsys):
    assert main(["grade", str(tiny), "--quick", "--results", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "relu_forward" in out and "(100 %)" in out
    assert json.loads((tmp_path / "r.json").read_text())["score"] == 6


def test_the_command_line_says_what_is_wrong_with_a_folder(tmp_path, capsys):
    assert main(["grade", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path.resolve()} is not an assignment: it has no grading.py\n"


def test_a_check_may_return_a_fraction_for_partial_credit(tmp_path):
    from minidl.assignments import Assignment, Check, Submission, grade

    assignment = Assignment("fractions", (), (Check("half", 4, lambda sub: 0.5), Check("clamped", 2, lambda sub: 3.0)))
    result = grade(assignment, Submission(tmp_path))
    assert [(r.score, r.output) for r in result.results] == [(2.0, "partial credit: 50%"), (2.0, "passed")]
    assert "  half                    2.0 / 4     partial" in result.report()
