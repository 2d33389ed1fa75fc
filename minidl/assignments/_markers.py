"""Solution markers: the instructor's file is the solution; the student edition is derived from it.

Two kinds of block, each a pair of comment lines at the indentation of the code they enclose::

    def relu_forward(x):
        \"\"\"The docstring stays.\"\"\"
        # BEGIN SOLUTION
        out = np.maximum(x, 0)
        return out, x > 0
        # END SOLUTION

becomes, in the student edition::

    def relu_forward(x):
        \"\"\"The docstring stays.\"\"\"
        raise NotImplementedError("relu_forward: your code here")

and ``# BEGIN HIDDEN`` ... ``# END HIDDEN`` blocks (hidden test cases of a grading file) are removed entirely. The
same markers work in jupytext ``.py`` notebooks (``# %%`` cells): a solution outside a function is named after
the file. A marker that is unmatched or nested raises a ValueError naming the file and line.
"""

from __future__ import annotations

import re

__all__ = ["has_markers", "strip_solutions"]

_MARKER = re.compile(r"^(?P<indent>[ \t]*)# (?P<edge>BEGIN|END) (?P<kind>SOLUTION|HIDDEN)\s*$")
_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async\s+)?def\s+(?P<name>\w+)")


def has_markers(text: str) -> bool:
    """Whether ``text`` holds any solution or hidden block."""
    return any(_MARKER.match(line) for line in text.splitlines())


def _enclosing_function(lines: list[str], index: int, indent: str, default: str) -> str:
    """The name of the innermost ``def`` above line ``index`` whose body contains that indentation."""
    for line in reversed(lines[:index]):
        m = _DEF.match(line)
        if m and len(m["indent"]) < len(indent):
            return m["name"]
    return default


def strip_solutions(text: str, filename: str = "<string>") -> str:
    """The student edition of ``text``: solution blocks become ``raise NotImplementedError("<function>: your code
    here")`` at the block's indentation, hidden blocks disappear, everything else is kept byte for byte.

    Examples:
        >>> src = 'def f(x):\\n    "Double x."\\n    # BEGIN SOLUTION\\n    return 2 * x\\n    # END SOLUTION\\n'
        >>> print(strip_solutions(src), end="")
        def f(x):
            "Double x."
            raise NotImplementedError("f: your code here")
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    open_block: tuple[str, int, str] | None = None  # (kind, line number, indent)
    stem = filename.rsplit("/", 1)[-1].removesuffix(".py")
    for i, line in enumerate(lines):
        m = _MARKER.match(line.rstrip("\r\n"))
        if m is None:
            if open_block is None:
                out.append(line)
            continue
        kind, edge, indent = m["kind"], m["edge"], m["indent"]
        if edge == "BEGIN":
            if open_block is not None:
                raise ValueError(
                    f"{filename}:{i + 1}: BEGIN {kind} inside the {open_block[0]} block opened at line {open_block[1]}"
                )
            open_block = (kind, i + 1, indent)
            if kind == "SOLUTION":
                name = _enclosing_function(lines, i, indent, stem)
                out.append(f'{indent}raise NotImplementedError("{name}: your code here")\n')
        else:
            if open_block is None or open_block[0] != kind:
                raise ValueError(f"{filename}:{i + 1}: END {kind} without a matching BEGIN {kind}")
            open_block = None
    if open_block is not None:
        raise ValueError(f"{filename}:{open_block[1]}: BEGIN {open_block[0]} is never closed by END {open_block[0]}")
    return "".join(out)
