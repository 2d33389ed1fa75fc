"""The autograder: run an assignment's graded checks on a submission folder, with partial credit per function.

An assignment is a folder with a ``grading.py`` that defines ``ASSIGNMENT``, an :class:`Assignment`: the student
files, the :class:`Check` of each graded function (points, and a function that raises AssertionError on a wrong
answer) and the planted :class:`Bug` s that ``check`` must see caught.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from minidl._atomic import atomic_write
from minidl.assignments._forbid import defined_functions, forbidden_uses

__all__ = ["Assignment", "Bug", "Check", "CheckResult", "Grade", "Submission", "grade", "load_assignment"]

DEFAULT_TIME_LIMIT = 60.0  # seconds per check, unless the assignment, the check or the command line says otherwise
STUCK_GRACE = 10.0  # seconds after the time limit before a run stuck outside Python code is ended


@dataclasses.dataclass(frozen=True)
class Check:
    """One graded item: ``run(submission)`` raises AssertionError (or any exception) when the function is wrong.

    ``run`` may return a fraction in [0, 1] for partial credit; returning None means full marks.

    Attributes:
        name: shown in the report and in results.json (usually the function's name).
        points: the most it can score.
        run: the check.
        function: the student function it grades (default: ``name``); a planted bug in it must cost points here.
        time_limit: seconds this check may run before it fails (default: the assignment's ``time_limit``).
    """

    name: str
    points: float
    run: Callable[[Submission], float | None]
    function: str = ""
    time_limit: float | None = None

    @property
    def target(self) -> str:
        return self.function or self.name


@dataclasses.dataclass(frozen=True)
class Bug:
    """A planted bug: inside ``function`` of the solution file ``file``, replace ``old`` by ``new``.

    ``old`` must occur exactly once in that function's body (its code after the docstring), so a bug keeps
    applying while the rest of the file changes, and stops with a ValueError naming the bug and the function when it
    no longer does. With ``regex=True``, ``old`` is a regular expression and ``new`` its replacement, as for
    :func:`re.sub` (``\\g<0>`` is the matched text). ``function`` may be a method, ``"Class.method"``.

    ``check`` grades the mutated solution and requires that a check of ``function`` loses points and that its
    message names ``function``.

    Examples:
        >>> src = "def f(x):\\n    return x + 1\\n\\n\\ndef g(x):\\n    'x + 1.'\\n    return x + 1\\n"
        >>> print(Bug("off by two", "m.py", "x + 1", "x + 2", "g").apply(src), end="")
        def f(x):
            return x + 1
        <BLANKLINE>
        <BLANKLINE>
        def g(x):
            'x + 1.'
            return x + 2
        >>> Bug("gone", "m.py", r"y \\+ 1", "y", "g", regex=True).apply(src)
        Traceback (most recent call last):
        ValueError: planted bug 'gone': the pattern 'y \\\\+ 1' occurs 0 times in g (m.py), expected exactly once
    """

    name: str
    file: str
    old: str
    new: str
    function: str
    regex: bool = False

    def apply(self, text: str) -> str:
        start, end = _function_body(text, self.function, f"planted bug {self.name!r}", self.file)
        source = text[start:end]
        count = len(re.findall(self.old, source)) if self.regex else source.count(self.old)
        if count != 1:
            what = "the pattern" if self.regex else "the text"
            raise ValueError(
                f"planted bug {self.name!r}: {what} {self.old!r} occurs {count} times in {self.function} "
                f"({self.file}), expected exactly once"
            )
        source = re.sub(self.old, self.new, source) if self.regex else source.replace(self.old, self.new)
        return text[:start] + source + text[end:]


def _function_body(text: str, function: str, where: str, filename: str) -> tuple[int, int]:
    """The character range of the body of ``function`` (``"name"`` or ``"Class.method"``) in the Python source
    ``text``, after its docstring: from its first statement to the end of its last line. A ValueError naming
    ``where`` if there is none."""
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        raise ValueError(f"{where}: {filename} is not valid Python ({err.msg}, line {err.lineno})") from None
    scope: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for part in function.split("."):
        node = next((n for n in scope if isinstance(n, _DEFINITIONS) and n.name == part), None)
        if node is None:
            raise ValueError(f"{where}: no function {function} in {filename}")
        scope = node.body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ValueError(f"{where}: {function} in {filename} is a class, not a function")
    body = node.body[1:] if ast.get_docstring(node) is not None else node.body
    if not body:
        raise ValueError(f"{where}: {function} in {filename} has no code after its docstring")
    lines = re.split("(?<=\n)", text)  # as ast counts lines (str.splitlines also splits at form feeds)
    first, last = body[0].lineno, node.end_lineno or body[-1].lineno
    line_start = sum(len(line) for line in lines[: first - 1])
    shares_a_line = first == (node.body[0].end_lineno if body is not node.body else node.lineno)
    start = line_start + body[0].col_offset if shares_a_line else line_start  # whole lines where it can
    return start, line_start + sum(len(line) for line in lines[first - 1 : last])


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclasses.dataclass(frozen=True)
class Assignment:
    """What ``grading.py`` declares: ``ASSIGNMENT = Assignment(...)``."""

    title: str
    student_files: tuple[str, ...]
    checks: tuple[Check, ...]
    bugs: tuple[Bug, ...] = ()
    root: Path | None = None  # set by load_assignment: the instructor's folder
    # writes the solution files into a folder, for an assignment whose solutions are generated (the "build
    # minidl" track derives them from minidl's own source); None: they are the files in ``root``
    materialize: Callable[[Path], None] | None = None
    time_limit: float = DEFAULT_TIME_LIMIT  # seconds per check (a Check's own time_limit overrides it)
    # dotted module names (``"minidl.nn"``) the files ``forbid_in`` (default: every student .py file) may not import
    # or reach; a check of a function defined in such a file then scores 0 (a deterrent, not a sandbox)
    forbid_imports: tuple[str, ...] = ()
    forbid_in: tuple[str, ...] | None = None


class Submission:
    """A folder of student files; :meth:`load` imports one of them as a module, isolated from other submissions.

    Attributes:
        root: the folder.
        examples: how many configurations the conformance checks draw (fewer in ``--quick`` mode).
    """

    def __init__(self, root: str | os.PathLike[str], *, examples: int = 20) -> None:
        self.root = Path(root).resolve()
        self.examples = examples
        self.cache: dict[str, Any] = {}  # for checks that share work (one test-suite run for several functions)
        self._modules: dict[str, Any] = {}

    def load(self, name: str) -> Any:
        """The submission's module ``name`` (its file ``<root>/<name>.py``), imported once per grading run."""
        if name not in self._modules:
            path = self.root / f"{name}.py"
            if not path.is_file():
                raise FileNotFoundError(f"the submission has no {name}.py (looked in {self.root})")
            self._modules[name] = importlib.import_module(name)
        return self._modules[name]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """While grading: the submission folder first on sys.path, and its modules imported fresh."""
        own = {p.stem for p in self.root.glob("*.py")}
        saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] in own}
        sys.path.insert(0, str(self.root))
        importlib.invalidate_caches()
        try:
            yield
        finally:
            sys.path.remove(str(self.root))
            for n in [n for n in sys.modules if n.split(".")[0] in own]:
                del sys.modules[n]
            sys.modules.update(saved)
            self._modules.clear()


@dataclasses.dataclass
class CheckResult:
    name: str
    function: str
    score: float
    max_score: float
    output: str
    seconds: float

    def line(self, width: int = 20) -> str:
        """This check's lines in the console report: its score, and the reason under lost points."""
        status = "ok" if self.score == self.max_score else ("partial" if self.score > 0 else "FAILED")
        lines = [f"  {self.name:<{width}} {self.score:6.1f} / {self.max_score:<5g} {status:<7} ({self.seconds:.1f} s)"]
        if self.score < self.max_score:
            lines.extend("      " + line for line in self.output.splitlines()[:12])
        return "\n".join(lines)


@dataclasses.dataclass
class Grade:
    """The result of grading one submission."""

    title: str
    results: list[CheckResult]
    width: int = 20  # the check names' column in the report (at least the longest name)

    def __post_init__(self) -> None:
        self.width = max([self.width] + [len(r.name) for r in self.results])

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_score for r in self.results)

    def to_gradescope(self) -> dict[str, Any]:
        """Gradescope's results.json: ``{"score", "max_score", "tests": [{"name", "score", "max_score",
        "output"}]}``."""
        return {
            "score": round(self.score, 4),
            "max_score": round(self.max_score, 4),
            "tests": [
                {"name": r.name, "score": round(r.score, 4), "max_score": r.max_score, "output": r.output}
                for r in self.results
            ],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write results.json atomically (a new temporary file beside it, flushed to disk, then a rename)."""
        atomic_write(path, (json.dumps(self.to_gradescope(), indent=2) + "\n").encode(), "grade")

    def report(self) -> str:
        """The console report: one line per check, the reason under each lost point."""
        return "\n".join([self.title, *(r.line(self.width) for r in self.results), self.total_line()])

    def total_line(self) -> str:
        """The report's last line: the total and the percentage."""
        percent = 100 * self.score / self.max_score if self.max_score else 0.0
        return f"  {'total':<{self.width}} {self.score:6.1f} / {self.max_score:g}  ({percent:.0f} %)"


def load_assignment(folder: str | os.PathLike[str]) -> Assignment:
    """Import ``<folder>/grading.py`` (the instructor's own code) and return its ``ASSIGNMENT``."""
    folder = Path(folder).resolve()
    path = folder / "grading.py"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an assignment: it has no grading.py")
    module_name = f"_minidl_grading_{abs(hash(str(folder)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        sys.path.remove(str(folder))
    assignment = getattr(module, "ASSIGNMENT", None)
    if not isinstance(assignment, Assignment):
        raise TypeError(f"{path} must define ASSIGNMENT = minidl.assignments.Assignment(...)")
    return dataclasses.replace(assignment, root=folder)


class CheckTimeout(BaseException):  # not an Exception: a student's ``except Exception`` must not swallow it
    """Raised in the main thread when a check runs past its time limit."""


def _failure_text(err: BaseException) -> str:
    if isinstance(err, NotImplementedError):
        return f"not implemented yet: {err}"
    if isinstance(err, AssertionError):
        text = str(err)
        notes = getattr(err, "__notes__", None)  # hypothesis's "Failing test case" is noise for a student
        return text if text or not notes else "\n".join(notes)
    if isinstance(err, SystemExit):
        where = where_raised(err)
        return f"the code called sys.exit({err.code!r}) (or raised SystemExit){where}: a graded function must return"
    return f"{type(err).__name__}: {err}{where_raised(err)}"


def where_raised(err: BaseException) -> str:
    """`` (in <function>, <file>:<line>)`` of the innermost frame that raised ``err``."""
    frames = traceback.extract_tb(err.__traceback__)
    return f" (in {frames[-1].name}, {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _timeout_text(check: Check, limit: float) -> str:
    return (
        f"{check.target}: stopped after the time limit of {limit:g} s (an infinite loop, or far too slow?); "
        "this check scores 0"
    )


@contextlib.contextmanager
def _time_limit(check: Check, limit: float, on_stuck: Callable[[], None]) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the block after ``limit`` seconds (SIGALRM, main thread on POSIX only).

    Code that never returns to the interpreter (a long loop inside a C extension) does not see the signal: after
    ``STUCK_GRACE`` more seconds a watchdog thread calls ``on_stuck`` (it records what it can) and ends the process.
    """
    if limit <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise CheckTimeout(_timeout_text(check, limit))

    def stuck() -> None:
        on_stuck()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)

    watchdog = threading.Timer(limit + STUCK_GRACE, stuck)
    watchdog.daemon = True
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)  # a caller's own timer, re-armed after
    previous = signal.signal(signal.SIGALRM, alarm)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, limit)
    watchdog.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        watchdog.cancel()
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - start), 1e-3), outer_interval)


def _blocked_functions(assignment: Assignment, submission: Submission) -> dict[str, str]:
    """Each function defined in a file that uses a module of ``assignment.forbid_imports``, with the message."""
    if not assignment.forbid_imports:
        return {}
    files = assignment.forbid_in if assignment.forbid_in is not None else assignment.student_files
    blocked = {}
    for name in (f for f in files if f.endswith(".py")):
        uses = forbidden_uses(submission.root / name, assignment.forbid_imports)
        if not uses:
            continue
        shown = "\n".join(f"  {use}" for use in uses[:5]) + ("\n  ..." if len(uses) > 5 else "")
        for function in defined_functions(submission.root / name):
            blocked[function] = (
                f"{function}: {name} uses a module this assignment forbids ({', '.join(assignment.forbid_imports)}),"
                f" so every function of {name} scores 0; write them with NumPy yourself:\n{shown}"
            )
    return blocked


def grade(
    assignment: Assignment,
    submission: Submission,
    *,
    time_limit: float | None = None,
    on_result: Callable[[Grade], None] | None = None,
) -> Grade:
    """Run every check of ``assignment`` on ``submission``; an exception in one check costs only its points.

    Args:
        time_limit: seconds per check, overriding the assignment's and the checks' own. Default: None (theirs).
        on_result: called with the grade so far after each check (the console line, results.json), and, should a
            check hang where it cannot be stopped, once more with that check failed and the rest not run, just
            before the process exits with status 3.
    """
    result = Grade(assignment.title, [], width=max([20] + [len(c.name) for c in assignment.checks]))
    blocked = _blocked_functions(assignment, submission)
    with submission.active():
        for index, check in enumerate(assignment.checks):
            if check.target in blocked:
                result.results.append(
                    CheckResult(check.name, check.target, 0.0, check.points, blocked[check.target], 0)
                )
                if on_result is not None:
                    on_result(result)
                continue
            limit = time_limit if time_limit is not None else (check.time_limit or assignment.time_limit)
            start = time.perf_counter()

            def on_stuck(check: Check = check, index: int = index, limit: float = limit, start: float = start) -> None:
                seconds = time.perf_counter() - start
                stuck = CheckResult(check.name, check.target, 0.0, check.points, _timeout_text(check, limit), seconds)
                rest = [
                    CheckResult(c.name, c.target, 0.0, c.points, f"not run: the grading stopped at {check.name}", 0.0)
                    for c in assignment.checks[index + 1 :]
                ]
                if on_result is not None:
                    on_result(Grade(assignment.title, [*result.results, stuck, *rest], width=result.width))

            try:
                with _time_limit(check, limit, on_stuck), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a student's overflows would bury the report
                    fraction = check.run(submission)
                fraction = 1.0 if fraction is None else min(max(float(fraction), 0.0), 1.0)
                output = "passed" if fraction == 1 else f"partial credit: {fraction:.0%}"
            except (KeyboardInterrupt, GeneratorExit):
                raise
            except CheckTimeout as err:
                fraction, output = 0.0, str(err)
            except BaseException as err:  # the student's code may raise anything (sys.exit too): it costs this check
                fraction, output = 0.0, _failure_text(err)
            seconds = time.perf_counter() - start
            score = fraction * check.points
            result.results.append(CheckResult(check.name, check.target, score, check.points, output, seconds))
            if on_result is not None:
                on_result(result)
    return result
