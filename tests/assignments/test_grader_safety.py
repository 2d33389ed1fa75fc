"""What a hostile or broken submission cannot do to a grading run, and what build/autograder never delete."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minidl.assignments import Assignment, Check, Submission, build, build_autograder, grade, load_assignment
from minidl.assignments.__main__ import main

REPOSITORY = Path(__file__).resolve().parents[2]

LAYERS = '''import sys


def loops():
    """Never returns."""
    while True:
        pass


def exits():
    """Ends the interpreter."""
    sys.exit(3)


def fine():
    """Returns."""
    # BEGIN SOLUTION
    return 1
    # END SOLUTION
'''

GRADING = """from minidl.assignments import Assignment, Check


def call(name):
    def run(sub):
        getattr(sub.load("layers"), name)()

    return run


def fine(sub):
    assert sub.load("layers").fine() == 1, "fine: should return 1"


ASSIGNMENT = Assignment(
    title="hostile",
    student_files=("layers.py",),
    checks=(
        Check("exits", 1, call("exits")),
        Check("loops", 1, call("loops"), time_limit=0.3),
        Check("fine", 1, fine),
    ),
    time_limit=30,
)
"""


@pytest.fixture
def hostile(tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "layers.py").write_text(LAYERS)
    (folder / "grading.py").write_text(GRADING)
    return folder


def test_sys_exit_and_an_endless_loop_cost_only_their_own_check(hostile):
    seen = []
    result = grade(load_assignment(hostile), Submission(hostile, examples=2), on_result=lambda g: seen.append(
        len(g.results)))  # fmt: skip
    assert [(r.name, r.score) for r in result.results] == [("exits", 0.0), ("loops", 0.0), ("fine", 1.0)]
    assert result.results[0].output.startswith("the code called sys.exit(3) (or raised SystemExit) (in exits, ")
    assert result.results[1].output == (
        "loops: stopped after the time limit of 0.3 s (an infinite loop, or far too slow?); this check scores 0"
    )
    assert seen == [1, 2, 3]  # one call per finished check


def test_the_command_line_time_limit_overrides_the_assignments(hostile, tmp_path, capsys):
    results = tmp_path / "out" / "results.json"
    assert main(["grade", str(hostile), "--time-limit", "0.2", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "loops: stopped after the time limit of 0.2 s" in out and "(33 %)" in out
    assert [t["score"] for t in json.loads(results.read_text())["tests"]] == [0, 0, 1]
    with pytest.raises(SystemExit):
        main(["grade", str(hostile), "--time-limit", "0"])
    assert "expected a positive number of seconds, got '0'" in capsys.readouterr().err


def test_a_check_stuck_where_no_signal_reaches_still_leaves_results_json(hostile, tmp_path):
    """A loop the alarm cannot interrupt (here: the code ignores SIGALRM; a long C call is alike): the watchdog
    writes results.json with that check failed and the rest not run, and the process exits with status 3."""
    stubborn = "    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:"
    (hostile / "layers.py").write_text(LAYERS.replace("    while True:", stubborn))
    results = tmp_path / "results.json"
    script = textwrap.dedent(f"""
        import sys
        from minidl.assignments import _grade
        from minidl.assignments.__main__ import main
        _grade.STUCK_GRACE = 0.3
        sys.exit(main(["grade", {str(hostile)!r}, "--results", {str(results)!r}]))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stdout + run.stderr
    tests = json.loads(results.read_text())["tests"]
    assert [(t["name"], t["score"]) for t in tests] == [("exits", 0), ("loops", 0), ("fine", 0)]
    assert tests[1]["output"].startswith("loops: stopped after the time limit of 0.3 s")
    assert tests[2]["output"] == "not run: the grading stopped at loops"


def test_the_command_line_exits_non_zero_when_results_json_cannot_be_written(hostile, tmp_path, capsys):
    (tmp_path / "results.json").mkdir()
    assert main(["grade", str(hostile), "--time-limit", "0.2", "--results", str(tmp_path / "results.json")]) == 1
    assert "error: could not write" in capsys.readouterr().err


def test_results_json_does_not_follow_a_planted_symlink(hostile, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "student"
    out.mkdir()
    (out / "results.json.tmp").symlink_to(victim)
    result = grade(Assignment("none", (), (Check("one", 1, lambda sub: None),)), Submission(out))
    result.write_json(out / "results.json")
    assert victim.read_text() == "precious"
    assert json.loads((out / "results.json").read_text())["score"] == 1


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_build_and_autograder_refuse_an_output_folder_overlapping_the_assignment(hostile, where):
    out = {"same": hostile, "parent": hostile.parent, "inside": hostile / "student"}[where]
    relation = {"same": "is", "parent": "contains", "inside": "is inside"}[where]
    assignment = load_assignment(hostile)
    for command in (build, build_autograder):
        with pytest.raises(ValueError, match=f"the output folder .* {relation} the assignment folder"):
            command(assignment, out, force=True)
    assert sorted(p.name for p in hostile.iterdir()) == ["grading.py", "layers.py"]


def test_force_replaces_only_an_earlier_output(hostile, tmp_path, capsys):
    assignment = load_assignment(hostile)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not an earlier output of build or autograder"):
        build(assignment, other, force=True)
    assert (other / "mine.txt").read_text() == "keep me"
    assert main(["autograder", str(hostile), str(other), "--force"]) == 2
    assert "--force does not delete it" in capsys.readouterr().err
    edition = tmp_path / "edition"
    build(assignment, edition)
    (edition / "stale.py").write_text("")
    build(assignment, edition, force=True)  # its own earlier output: replaced
    assert not (edition / "stale.py").exists() and (edition / "layers.py").is_file()


CHEAT = '''import sys

import minidl
from minidl.nn import functional as F


def relu_forward(x):
    """Calls minidl's own pair."""
    return F.relu_forward(x)


def seeded(shape):
    """Allowed: minidl's generator."""
    return minidl.default_generator().random(shape)
'''


@pytest.mark.parametrize(
    "line, found",
    [
        ("from minidl.nn import functional as F", "import from minidl.nn"),
        ("from minidl import nn", "import minidl.nn"),
        ("import minidl.backend.numpy_backend as be", "import minidl.backend.numpy_backend (under minidl.backend)"),
        ("from minidl import *", "from minidl import * (it exports minidl.nn)"),
        ("y = minidl.nn.functional.conv2d_forward", "use of minidl.nn.functional.conv2d_forward (under minidl.nn)"),
        ("y = sys.modules['minidl.nn.functional']", "the string minidl.nn.functional (under minidl.nn)"),
        ("y = __import__('torch')", "the string torch"),
    ],
)
def test_each_way_of_reaching_a_forbidden_module_is_found(tmp_path, line, found):
    from minidl.assignments._forbid import forbidden_uses

    path = tmp_path / "layers.py"
    path.write_text(f"import sys\nimport minidl\n\n{line}\nz = minidl.default_generator()\n")
    assert forbidden_uses(path, ("minidl.nn", "minidl.backend", "torch")) == [f"line 4: {found}"]


def test_a_file_that_uses_a_forbidden_module_scores_0_on_each_of_its_functions(tmp_path):
    (tmp_path / "layers.py").write_text(CHEAT)
    (tmp_path / "other.py").write_text("import minidl.nn\n\n\ndef other():\n    return 1\n")

    def relu(sub):
        assert sub.load("layers").relu_forward(__import__("numpy").ones(2))[0].sum() == 2

    checks = (Check("relu_forward", 2, relu), Check("seeded", 1, lambda sub: None), Check("other", 1, lambda s: None))
    assignment = Assignment("cheat", ("layers.py", "other.py"), checks, forbid_imports=("minidl.nn",),
                            forbid_in=("layers.py",))  # fmt: skip
    result = grade(assignment, Submission(tmp_path))
    assert [(r.name, r.score) for r in result.results] == [("relu_forward", 0), ("seeded", 0), ("other", 1)]
    assert result.results[0].output == (
        "relu_forward: layers.py uses a module this assignment forbids (minidl.nn), so every function of layers.py "
        "scores 0; write them with NumPy yourself:\n  line 4: import from minidl.nn"
    )
    allowed = grade(dataclasses.replace(assignment, forbid_imports=()), Submission(tmp_path))
    assert allowed.score == 4


def test_a_callers_own_interval_timer_is_re_armed_after_each_check(hostile):
    import signal

    previous = signal.signal(signal.SIGALRM, lambda *args: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        grade(Assignment("t", (), (Check("one", 1, lambda sub: None),)), Submission(hostile))
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 100.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
