"""The build-minidl track: its student edition (minidl's own nn files with the chosen pairs blanked), its planted bugs,
and which of minidl's tests grade each pair.

(``test_check_assignments.py`` runs its full ``check``: solutions 100 %, stubs 0, every bug caught.)
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

import minidl
from minidl.assignments import build, grade_folder, load_assignment

ROOT = Path(__file__).resolve().parents[2] / "assignments" / "build_minidl"
NN = Path(minidl.__file__).resolve().parent / "nn"


def load_grading():
    spec = importlib.util.spec_from_file_location("_build_minidl_grading", ROOT / "grading.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def functions_of(source: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    folder = tmp_path_factory.mktemp("build_minidl") / "edition"
    build(load_assignment(ROOT), folder)
    return folder


def test_the_student_edition_blanks_exactly_the_chosen_pairs(edition):
    for name, pairs in load_grading().BLANKS.items():
        source = (edition / name).read_text()
        functions = functions_of(source)
        for pair in pairs:
            body = functions[pair].body
            assert ast.get_docstring(functions[pair]), f"{pair} lost its docstring"
            assert len(body) == 2 and isinstance(body[1], ast.Raise), f"{pair} is not blanked"
            assert f'raise NotImplementedError("{pair}: your code here")' in source
        originals = functions_of((NN / name).read_text())
        for other in set(functions) - set(pairs):  # every other function is minidl's own, unchanged
            assert ast.dump(functions[other]) == ast.dump(originals[other]), other
        for pair in pairs:  # and the blanked ones keep their signature and decorators
            blank, original = functions[pair], originals[pair]
            assert ast.dump(blank.args) == ast.dump(original.args), pair
            assert [ast.dump(d) for d in blank.decorator_list] == [ast.dump(d) for d in original.decorator_list]


def test_blanking_finds_the_functions_by_name_and_fails_loudly_when_one_is_gone():
    grading = load_grading()
    source = '"""Module."""\n\n\ndef f(x):\n    """Doc.\n\n    More."""\n    y = x + 1\n    return y\n'
    marked = grading.add_markers(source, ("f",), "m.py")
    assert marked.splitlines()[7:11] == ["    # BEGIN SOLUTION", "    y = x + 1", "    return y", "    # END SOLUTION"]
    with pytest.raises(ValueError, match=r"build_minidl: no module-level function g in m.py: update PAIRS"):
        grading.add_markers(source, ("f", "g"), "m.py")


def test_each_planted_bug_changes_only_its_function_and_says_when_it_no_longer_applies(tmp_path):
    grading = load_grading()
    grading.materialize(tmp_path)
    for bug in grading.ASSIGNMENT.bugs:
        before = (tmp_path / bug.file).read_text()
        after = bug.apply(before)
        old, new = functions_of(before), functions_of(after)
        changed = [n for n in old if ast.dump(old[n]) != ast.dump(new[n])]
        assert changed == [bug.function], (bug.name, changed)
        gutted = before.replace(ast.get_source_segment(before, old[bug.function]), f"def {bug.function}():\n    pass")
        name, where = re.escape(repr(bug.name)), rf"{bug.function} \({re.escape(bug.file)}\)"
        with pytest.raises(
            ValueError, match=rf"planted bug {name}: the pattern .* occurs 0 times in {where}, expected"
        ):
            bug.apply(gutted)
        with pytest.raises(ValueError, match=rf"planted bug {name}: no function {bug.function} in {bug.file}"):
            bug.apply(before.replace(f"def {bug.function}(", f"def renamed_{bug.function}("))


def test_every_graded_test_calls_its_pair_on_the_numpy_backend(edition, monkeypatch):
    """On the stubs each graded test fails with the pair's NotImplementedError, even when the environment asks for
    the Numba backend (whose kernels would replace the pairs)."""
    monkeypatch.setenv("MINIDL_TEST_BACKEND", "numba")
    monkeypatch.setenv("MINIDL_BACKEND", "numba")
    grading = load_grading()
    result = grade_folder(load_assignment(ROOT), edition, quick=True)
    assert result.score == 0
    for pair, check in zip(grading.PAIRS, result.results, strict=True):
        assert re.search(r": (\d+) of \1 graded tests of minidl fail", check.output), check.output
        assert int(re.search(r"of (\d+) graded tests", check.output)[1]) >= len(pair.tests), check.output
        assert f"NotImplementedError: {pair.functions[0]}: your code here" in check.output, check.output


def test_a_file_that_does_not_compile_costs_every_pair_with_the_reason(tmp_path):
    grading = load_grading()
    grading.materialize(tmp_path)
    source = (tmp_path / "dropout.py").read_text()
    (tmp_path / "dropout.py").write_text(source.replace("def dropout_forward(", "def dropout_forward(:", 1))
    result = grade_folder(load_assignment(ROOT), tmp_path, quick=True)
    assert result.score == 0
    assert all(r.output.startswith("dropout.py does not compile: invalid syntax (line ") for r in result.results)


def test_a_graded_test_that_minidl_no_longer_has_is_an_error_naming_it(tmp_path, monkeypatch):
    assignment = load_assignment(ROOT)
    namespace = assignment.checks[0].run.__globals__  # grading.py's, as loaded
    first = namespace["PAIRS"][0]
    renamed = first._replace(tests=(*first.tests, "tests/nn/test_linear.py::test_renamed"))
    monkeypatch.setitem(namespace, "PAIRS", (renamed, *namespace["PAIRS"][1:]))
    namespace["materialize"](tmp_path)
    result = grade_folder(assignment, tmp_path, quick=True)
    expected = (
        "RuntimeError: build_minidl: minidl has no test tests/nn/test_linear.py::test_renamed: update PAIRS in "
        "assignments/build_minidl/grading.py"
    )
    assert all(r.output.startswith(expected) for r in result.results), result.report()
