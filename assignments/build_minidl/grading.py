"""The "build minidl" track: students write chosen pairs of minidl's own ``nn/``, graded by minidl's own tests.

In MiniTorch's style the tests are the curriculum. The student edition is minidl's ``nn/`` files below, with the
bodies of the listed pairs blanked (signature and docstring kept). Nothing is copied into this folder:
:func:`materialize` finds the pairs by name (with :mod:`ast`) in the current minidl source and marks their bodies,
so the track follows minidl as it changes, and stops with an error naming a pair that is no longer there.

Grading copies minidl and its tests into a scratch folder, puts the submission's files in its ``nn/``, and runs,
in one pytest process per submission, the tests of ``tests/nn`` that call each pair, on the NumPy backend (the
reference mode: Numba's kernels would replace a whole pair, so the student's code would not run). A pair scores
its points when all its tests pass. It needs minidl's test suite, i.e. a repository checkout.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import minidl
from minidl.assignments import Assignment, Bug, Check

PACKAGE = Path(minidl.__file__).resolve().parent
REPOSITORY = PACKAGE.parent


class Pair(NamedTuple):
    """One graded pair: where it lives, its points, and the tests (pytest node ids) of minidl that call it."""

    file: str  # in minidl/nn
    functions: tuple[str, str]
    points: float
    tests: tuple[str, ...]  # graded in both modes
    full_tests: tuple[str, ...] = ()  # also graded without --quick (PyTorch parity: importing torch takes seconds)


LINEAR, ACTIVATION, DROPOUT, NORMALIZATION = (
    f"tests/nn/test_{name}.py" for name in ("linear", "activation", "dropout", "normalization")
)
# Each test here calls its pair (the stubs fail all of them) and no other blanked pair, so a pair's score
# depends on its own code only.
PAIRS = (
    Pair(
        "linear.py", ("linear_forward", "linear_backward"), 25,
        tests=tuple(f"{LINEAR}::{t}" for t in (
            "test_functional_gradcheck", "test_module_gradcheck", "test_one_dimensional_input",
            "test_gradients_accumulate_over_two_backwards", "test_frozen_layer_leaves_grad_none_but_returns_dx",
            "test_functional_can_skip_parameter_gradients",
        )),
        full_tests=(f"{LINEAR}::test_torch_parity_with_leading_dims",),
    ),
    Pair(
        "activation.py", ("relu_forward", "relu_backward"), 20,
        tests=tuple(f"{ACTIVATION}::{t}" for t in (
            "test_functional_gradcheck[relu]", "test_module_gradcheck[relu]",
            "test_relu_mask_cache_is_bool_and_dx_zero_on_negatives",
            "test_float32_in_float32_out_and_no_warning_at_extremes[relu]",
        )),
        full_tests=(f"{ACTIVATION}::test_torch_parity[relu]",),
    ),
    Pair(
        "dropout.py", ("dropout_forward", "dropout_backward"), 20,
        tests=tuple(f"{DROPOUT}::{t}" for t in (
            "test_train_drops_and_scales_eval_is_identity", "test_gradient_flows_only_through_kept_units",
            "test_dropout_gradcheck", "test_p_zero_and_p_one",
        )),
        full_tests=tuple(f"{DROPOUT}::{t}" for t in (
            "test_mean_is_preserved_statistically", "test_same_seed_same_mask_and_different_seed_different_mask",
            "test_no_grad_keeps_no_mask",
        )),
    ),
    Pair(
        "normalization.py", ("batch_norm_forward", "batch_norm_backward"), 35,
        tests=tuple(f"{NORMALIZATION}::{t}" for t in (
            "test_batch_norm_backward_in_training_and_in_eval[True]",  # batch statistics: their terms in dx
            "test_batch_norm_backward_in_training_and_in_eval[False]",
            "test_batch_norm_functional_gradcheck", "test_batchnorm_gradcheck_train_and_eval",
            "test_batchnorm_train_vs_eval", "test_batchnorm_momentum_none_is_the_cumulative_average",
            "test_batchnorm_without_running_stats_uses_batch_statistics_in_eval",
        )),
        full_tests=(f"{NORMALIZATION}::test_batchnorm_matches_pytorch",),
    ),
)  # fmt: skip
BLANKS = {pair.file: pair.functions for pair in PAIRS}  # file of minidl/nn -> the functions blanked in it


def add_markers(source: str, names: tuple[str, ...], filename: str = "<source>") -> str:
    """``source`` with ``# BEGIN SOLUTION`` / ``# END SOLUTION`` around the body (after the docstring) of each
    module-level function in ``names``, found by name; a ValueError names any that is missing."""
    lines = source.splitlines(keepends=True)
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if not body or body[0].lineno == node.lineno:
                raise ValueError(f"build_minidl: {node.name} in {filename} has no body on its own lines to blank")
            found[node.name] = (body[0].lineno, node.end_lineno, " " * body[0].col_offset)
    missing = sorted(set(names) - set(found))
    if missing:
        raise ValueError(
            f"build_minidl: no module-level function {', '.join(missing)} in {filename}: update PAIRS in "
            "assignments/build_minidl/grading.py"
        )
    for first, last, indent in sorted(found.values(), reverse=True):
        lines.insert(last, f"{indent}# END SOLUTION\n")
        lines.insert(first - 1, f"{indent}# BEGIN SOLUTION\n")
    return "".join(lines)


def materialize(folder: Path) -> None:
    """Write the solution files: minidl's own, with each blanked pair's bodies between solution markers."""
    for name, functions in BLANKS.items():
        path = PACKAGE / "nn" / name
        (folder / name).write_text(add_markers(path.read_text(), functions, f"minidl/nn/{name}"))


# A pytest plugin, loaded in the grading run: every test's outcome (and the first line of a failure) as JSON, and
# hypothesis's profile for grading: conftest.py's "ci" (bounded and derandomized: the same grade on every run),
# without shrinking a failing example (the grade needs only that it fails).
_RESULTS_PLUGIN = """
import json
import re
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "build_minidl_grading", max_examples=12, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow], phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
RESULTS = {}


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    text = re.split(r"\\n\\s*(?:Falsifying example|Failing test case|You can reproduce)", text)[0]  # hypothesis's notes
    lines = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != "AssertionError:"]
    return " ".join(lines[:3])[:300] or "failed"


def pytest_runtest_logreport(report):
    if report.failed:
        RESULTS.setdefault(report.nodeid, ("failed", _message(report)))
    elif report.when == "call" or report.skipped:
        RESULTS.setdefault(report.nodeid, (report.outcome, ""))


def pytest_collectreport(report):
    if report.failed:
        RESULTS.setdefault(report.nodeid, ("failed", _message(report)))


def pytest_sessionfinish(session):
    Path(__file__).with_name("results.json").write_text(json.dumps(RESULTS))
"""


def run_suite(sub) -> dict[str, tuple[str, str]]:
    """The graded tests of every pair, run once per submission: node id -> (outcome, first line of the failure)."""
    if "suite" not in sub.cache:  # (an error too is kept: one run per submission)
        try:
            sub.cache["suite"] = _run_suite(sub)
        except Exception as err:
            sub.cache["suite"] = err
    if isinstance(sub.cache["suite"], Exception):
        raise sub.cache["suite"]
    return sub.cache["suite"]


def _run_suite(sub) -> dict[str, tuple[str, str]]:
    if not (REPOSITORY / "tests" / "nn").is_dir() or not (REPOSITORY / "conftest.py").is_file():
        raise RuntimeError("the build-minidl track runs minidl's own tests: grade from a repository checkout")
    quick = sub.examples < 20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(PACKAGE, root / "minidl", ignore=shutil.ignore_patterns("__pycache__", "_sample"))
        shutil.copytree(REPOSITORY / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("conftest.py", "pyproject.toml"):  # the backend under test, hypothesis's profiles
            shutil.copy2(REPOSITORY / name, root / name)
        for name in BLANKS:
            source = (sub.root / name).read_text()
            try:  # a file that does not compile stops minidl's import, so every pair's tests
                compile(source, name, "exec")
            except SyntaxError as err:
                raise AssertionError(f"{name} does not compile: {err.msg} (line {err.lineno})") from None
            (root / "minidl" / "nn" / name).write_text(source)
        (root / "_build_minidl_results.py").write_text(_RESULTS_PLUGIN)
        tests = [t for pair in PAIRS for t in (pair.tests if quick else pair.tests + pair.full_tests)]
        env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "MINIDL_TEST_BACKEND": "numpy",  # the suite's backend (conftest.py); on Numba a kernel replaces a pair
            "MINIDL_BACKEND": "numpy",
            "CI": "true",
            "HYPOTHESIS_PROFILE": "build_minidl_grading",  # (registered by the plugin)
        }
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_build_minidl_results",
                   "-o", "addopts=", "--continue-on-collection-errors", *tests]  # fmt: skip
        run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        results_file = root / "results.json"
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}
        if not results:  # minidl did not import, or a graded test is not there: pytest's error lines
            output = (run.stdout + run.stderr).replace(f"{root}{os.sep}", "").splitlines()
            errors = [
                line[2:].strip() if line.startswith("E ") else line for line in output if line[:2] in ("E ", "ER")
            ]
            missing = [line.split("not found: ", 1)[1] for line in errors if "not found: " in line]
            if missing:
                raise RuntimeError(
                    f"build_minidl: minidl has no test {', '.join(missing)}: update PAIRS in "
                    "assignments/build_minidl/grading.py"
                )
            said = "\n".join(errors[-8:] or output[-12:])
            raise RuntimeError(f"minidl's tests did not run on the submission; pytest said:\n{said}")
    return results


def pair_check(pair: Pair):
    def run(sub):
        results = run_suite(sub)
        selected = pair.tests if sub.examples < 20 else pair.tests + pair.full_tests
        outcomes, absent = {}, []
        for test in selected:
            # a node id without parameters stands for each of its parametrized cases
            mine = {n: r for n, r in results.items() if n == test or (n.startswith(f"{test}[") and "[" not in test)}
            if not mine:
                file = test.split("::")[0]
                if file in results:  # the test file itself failed to import
                    raise AssertionError(f"{' / '.join(pair.functions)}: {file} fails: {results[file][1]}")
                absent.append(test)
            outcomes.update(mine)
        if absent:
            raise RuntimeError(f"build_minidl: the graded tests {', '.join(absent)} did not run (renamed?)")
        ran = {n: r for n, r in outcomes.items() if r[0] != "skipped"}
        if not ran:
            raise AssertionError(f"{' / '.join(pair.functions)}: every graded test was skipped")
        failed = [(n.split("::")[-1], message) for n, (outcome, message) in ran.items() if outcome != "passed"]
        if failed:
            names = ", ".join(n for n, _ in failed[:5])
            raise AssertionError(
                f"{' / '.join(pair.functions)}: {len(failed)} of {len(ran)} graded tests of minidl fail "
                f"({names}{', ...' if len(failed) > 5 else ''}); the first says: {failed[0][1]}"
            )

    return run


ASSIGNMENT = Assignment(
    title="Build minidl: write minidl's own linear, ReLU, dropout and batch-norm pairs",
    student_files=tuple(BLANKS),
    checks=tuple(
        Check(" / ".join(pair.functions), pair.points, pair_check(pair), function=pair.functions[0])
        for pair in PAIRS
    ),
    # each a substitution inside one function of the solution (Bug.apply stops, naming the bug and the function,
    # when it no longer matches exactly once)
    bugs=(
        Bug("missing bias gradient", "linear.py", r"(?m)^(?P<indent>[ \t]*)db = .*$",
            r"\g<0>\n\g<indent>db = None if db is None else 0 * db", "linear_backward", regex=True),
        Bug("ReLU mask inverted", "activation.py", r"(?m)^(?P<indent>[ \t]*)mask = .*$",
            r"\g<0>\n\g<indent>mask = ~mask", "relu_forward", regex=True),
        Bug("dropout applied in eval mode", "dropout.py", r"\bnot training\b", "False", "dropout_forward",
            regex=True),
        Bug("BN backward treats the batch statistics as constants", "normalization.py",
            r"_normalize_backward\([^()]*\)", "dxhat * inv_std", "batch_norm_backward", regex=True),
    ),
    materialize=materialize,
    time_limit=660,  # the first check runs minidl's graded tests (pytest stops them after 600 s); the rest reuse it
)  # fmt: skip
