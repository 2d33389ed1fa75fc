"""``Assignment.forbid_imports``: find where a submitted file imports or reaches a module it must not use.

A deterrent, not a sandbox: it reads the file's syntax tree (nothing is run) and finds ``import m``, ``from m
import x``, ``__import__("m")`` / ``importlib.import_module("m")``, a dotted name such as ``minidl.nn.functional``
in the code, and a string naming the module (``sys.modules["minidl.nn"]``). Code determined to hide what it calls
(``getattr`` on a computed string, ``exec``) is not found; a person reading the submission is the last line.
"""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["defined_functions", "forbidden_uses"]


def _matches(name: str, forbidden: tuple[str, ...]) -> str | None:
    """The forbidden dotted name that ``name`` is or lies under (``minidl.nn.functional`` under ``minidl.nn``)."""
    return next((f for f in forbidden if name == f or name.startswith(f + ".")), None)


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for an attribute chain on a plain name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def forbidden_uses(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    """Each use of a ``forbidden`` module in the Python file ``path``, as ``"line N: <what>"``; ``[]`` if none or
    the file is missing or does not parse (the checks report those themselves)."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return []
    uses: list[tuple[int, str]] = []

    def found(node: ast.AST, name: str, how: str) -> None:
        hit = _matches(name, forbidden)
        if hit is not None:
            uses.append((getattr(node, "lineno", 0), f"{how} {name} (under {hit})" if hit != name else f"{how} {name}"))

    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # a.b inside a.b.c: once
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found(node, alias.name, "import")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name == "*":  # everything a parent of a forbidden module exports
                    parents = [f for f in forbidden if f.startswith(node.module + ".") or f == node.module]
                    if parents:
                        uses.append((node.lineno, f"from {node.module} import * (it exports {parents[0]})"))
                    continue
                if _matches(node.module, forbidden):
                    found(node, node.module, "import from")
                else:
                    found(node, f"{node.module}.{alias.name}", "import")
        elif isinstance(node, ast.Attribute) and id(node) not in inner:
            name = _dotted(node)
            if name is not None:
                found(node, name, "use of")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found(node, node.value, "the string")
    unique = sorted(set(uses))
    return [f"line {line}: {what}" for line, what in unique]


def defined_functions(path: Path) -> set[str]:
    """The functions of the file ``path`` a check may grade: top-level ``name`` and ``Class.method``."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}.{n.name}" for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    return names
