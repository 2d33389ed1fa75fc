"""The "build minidl" track: students write chosen pairs of minidl's own ``nn/``, graded by minidl's own tests.

In MiniTorch's style the tests are the curriculum. The student edition is minidl's ``nn/`` files below, with the
bodies of the listed pairs blanked (signature and docstring kept). Nothing is copied into this folder:
:func:`materialize` marks the bodies in the current minidl source, so the track follows minidl as it changes.

Grading copies minidl into a scratch folder, puts the submission's files in its ``nn/``, and runs minidl's test
files for those pairs on the NumPy backend (the reference mode: the student's code is what runs); a pair scores
the fraction of its tests that pass. It needs minidl's test suite, i.e. a repository checkout.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import minidl
from minidl.assignments import Assignment, Bug, Check

PACKAGE = Path(minidl.__file__).resolve().parent
REPOSITORY = PACKAGE.parent

# file of minidl/nn -> the pairs blanked in it, and the test file (with a -k expression) that grades them
BLANKS = {
    "linear.py": (("linear_forward", "linear_backward"), "tests/nn/test_linear.py", "test_linear"),
    "activation.py": (
        ("relu_forward", "relu_backward"),
        "tests/nn/test_activation.py",
        "relu and not leaky and not relu6",
    ),
    "dropout.py": (("dropout_forward", "dropout_backward"), "tests/nn/test_dropout.py", "test_dropout"),
    "normalization.py": (
        ("batch_norm_forward", "batch_norm_backward"),
        "tests/nn/test_normalization.py",
        "batch and not relu and not fuse",
    ),
}


def add_markers(source: str, names: tuple[str, ...]) -> str:
    """``source`` with ``# BEGIN SOLUTION`` / ``# END SOLUTION`` around the body (after the docstring) of each
    module-level function in ``names``."""
    lines = source.splitlines(keepends=True)
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            found[node.name] = (body[0].lineno, node.end_lineno, " " * body[0].col_offset)
    missing = sorted(set(names) - set(found))
    if missing:
        raise ValueError(f"build_minidl: no function {missing} in the minidl source")
    for first, last, indent in sorted(found.values(), reverse=True):
        lines.insert(last, f"{indent}# END SOLUTION\n")
        lines.insert(first - 1, f"{indent}# BEGIN SOLUTION\n")
    return "".join(lines)


def materialize(folder: Path) -> None:
    for name, (pairs, _, _) in BLANKS.items():
        (folder / name).write_text(add_markers((PACKAGE / "nn" / name).read_text(), pairs))


def run_suite(sub) -> dict[str, list[tuple[str, str]]]:
    """minidl's tests of the blanked pairs, run once per submission: test file -> [(test name, failure or "")]."""
    if "suite" in sub.cache:
        return sub.cache["suite"]
    if not (REPOSITORY / "tests" / "nn").is_dir():
        raise RuntimeError("the build-minidl track runs minidl's own tests: grade from a repository checkout")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__", "_sample")
        shutil.copytree(PACKAGE, root / "minidl", ignore=ignore)
        shutil.copytree(REPOSITORY / "tests", root / "tests", ignore=ignore)
        shutil.copy2(REPOSITORY / "pyproject.toml", root / "pyproject.toml")
        for name in BLANKS:
            shutil.copy2(sub.root / name, root / "minidl" / "nn" / name)
        files = sorted({test for _, test, _ in BLANKS.values()})
        keywords = " or ".join(f"({k})" for _, _, k in BLANKS.values())
        if sub.examples < 20:  # quick mode: without the PyTorch parity tests (importing torch takes seconds)
            keywords = f"({keywords}) and not torch and not pytorch"
        env = {**os.environ, "PYTHONPATH": str(root), "MINIDL_TEST_BACKEND": "numpy", "CI": "true"}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-k", keywords,
                   f"--junitxml={root / 'results.xml'}", *files]  # fmt: skip
        subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        if not (root / "results.xml").is_file():
            raise RuntimeError("minidl's test suite did not run on the submission")
        results: dict[str, list[tuple[str, str]]] = {}
        for case in ET.parse(root / "results.xml").getroot().iter("testcase"):
            module = case.get("classname", "").split(".")[-1]
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            message = "" if failure is None else (failure.get("message") or "failed").strip()
            results.setdefault(f"tests/nn/{module}.py", []).append((case.get("name", "?"), message))
    sub.cache["suite"] = results
    return results


def pair_check(file: str):
    pairs, test_file, _ = BLANKS[file]

    def run(sub):
        selected = run_suite(sub).get(test_file, [])  # the tests pytest's -k expression picked
        if not selected:
            raise AssertionError(
                f"{'/'.join(pairs)}: none of the tests of {test_file} ran (the module fails to import?)"
            )
        failed = [(n, m) for n, m in selected if m]
        if failed:
            first = failed[0][1].splitlines()[0][:300]
            names = ", ".join(n for n, _ in failed[:5])
            raise AssertionError(
                f"{' / '.join(pairs)}: {len(failed)} of {len(selected)} tests of minidl's {test_file} fail "
                f"({names}{', ...' if len(failed) > 5 else ''}); the first says: {first}"
            )

    return run


ASSIGNMENT = Assignment(
    title="Build minidl: write minidl's own linear, ReLU, dropout and batch-norm pairs",
    student_files=tuple(BLANKS),
    checks=(
        Check("linear_forward / linear_backward", 25, pair_check("linear.py"), function="linear_forward"),
        Check("relu_forward / relu_backward", 20, pair_check("activation.py"), function="relu_forward"),
        Check("dropout_forward / dropout_backward", 20, pair_check("dropout.py"), function="dropout_forward"),
        Check("batch_norm_forward / batch_norm_backward", 35, pair_check("normalization.py"),
              function="batch_norm_forward"),  # fmt: skip
    ),
    bugs=(
        Bug("missing bias gradient", "linear.py", "db = dout_2d.sum(axis=0) if has_bias and bias_grad else None",
            "db = 0 * dout_2d.sum(axis=0) if has_bias and bias_grad else None", "linear_backward"),
        Bug("ReLU mask inverted", "activation.py", "mask = ~(x <= 0)", "mask = x <= 0", "relu_forward"),
        Bug("dropout not rescaled", "dropout.py", "    out *= scale\n", "", "dropout_forward"),
        Bug("BN backward treats the batch statistics as constants", "normalization.py",
            "dx = _normalize_backward(dxhat, xhat, inv_std, axes)", "dx = dxhat * inv_std", "batch_norm_backward"),
    ),
    materialize=materialize,
)  # fmt: skip
