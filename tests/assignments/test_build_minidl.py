"""The build-minidl track's student edition: minidl's own nn files with the chosen pairs blanked.

(Grading it runs minidl's test files; ``test_check_assignments.py`` does that under ``-m slow``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

from minidl.assignments import build, load_assignment

ROOT = Path(__file__).resolve().parents[2] / "assignments" / "build_minidl"


def test_the_student_edition_blanks_exactly_the_chosen_pairs(tmp_path):
    assignment = load_assignment(ROOT)
    build(assignment, tmp_path / "edition")
    blanks = {name: pairs for name, (pairs, _, _) in load_blanks().items()}
    for name, pairs in blanks.items():
        source = (tmp_path / "edition" / name).read_text()
        tree = ast.parse(source)
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        for pair in pairs:
            body = functions[pair].body
            assert ast.get_docstring(functions[pair]), f"{pair} lost its docstring"
            assert len(body) == 2 and isinstance(body[1], ast.Raise), f"{pair} is not blanked"
            assert f'raise NotImplementedError("{pair}: your code here")' in source
        original = (Path(__import__("minidl").nn.__file__).parent / name).read_text()
        kept = [n for n in functions if n not in pairs]
        originals = {n.name: n for n in ast.parse(original).body if isinstance(n, ast.FunctionDef)}
        for other in kept:  # every other function is minidl's own, unchanged
            assert ast.dump(functions[other]) == ast.dump(originals[other]), other


def load_blanks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_build_minidl_grading", ROOT / "grading.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BLANKS
