"""Solution markers: the student edition keeps signatures and docstrings, and stubs raise NotImplementedError."""

from __future__ import annotations

import pytest

from minidl.assignments import has_markers, strip_solutions

SOURCE = '''import numpy as np


def relu_forward(x):
    """ReLU. Returns (out, cache)."""
    # BEGIN SOLUTION
    return np.maximum(x, 0), x > 0
    # END SOLUTION


class Net:
    def forward(self, x):
        h = x * 2
        # BEGIN SOLUTION
        h = h + 1
        # END SOLUTION
        return h


# %% [markdown]
# A notebook cell outside any function:

# %%
# BEGIN SOLUTION
answer = 42
# END SOLUTION

# BEGIN HIDDEN
SECRET_CASES = [1, 2, 3]
# END HIDDEN
'''


def test_solutions_become_stubs_that_name_their_function():
    student = strip_solutions(SOURCE, "notebook.py")
    assert (
        '    """ReLU. Returns (out, cache)."""\n    raise NotImplementedError("relu_forward: your code here")\n'
        in student
    )
    assert (
        '        h = x * 2\n        raise NotImplementedError("forward: your code here")\n        return h\n' in student
    )
    assert '# %%\nraise NotImplementedError("notebook: your code here")\n' in student  # a cell: the file's name
    assert "np.maximum" not in student and "answer = 42" not in student and "h + 1" not in student
    assert "SECRET_CASES" not in student and "HIDDEN" not in student
    compile(student, "notebook.py", "exec")


def test_a_file_without_markers_is_unchanged():
    text = "def f(x):\n    return x\n"
    assert not has_markers(text) and strip_solutions(text) == text
    assert has_markers(SOURCE)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# BEGIN SOLUTION\nx = 1\n", r"f.py:1: BEGIN SOLUTION is never closed by END SOLUTION"),
        ("x = 1\n# END SOLUTION\n", r"f.py:2: END SOLUTION without a matching BEGIN SOLUTION"),
        ("# BEGIN SOLUTION\n# BEGIN HIDDEN\n", r"f.py:2: BEGIN HIDDEN inside the SOLUTION block opened at line 1"),
        ("# BEGIN HIDDEN\n# END SOLUTION\n", r"f.py:2: END SOLUTION without a matching BEGIN SOLUTION"),
    ],
)
def test_unmatched_markers_name_the_file_and_line(text, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(text, "f.py")
