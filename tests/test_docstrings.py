"""Every public layer and every functional pair documents its math, shapes, backward and a runnable example.

The rule (issue 12): a layer's class docstring has a ``.. math::`` block, a ``Shape:`` section, a ``Backward:``
section and an ``Examples:`` section with a ``>>>`` doctest; a pair's ``<op>_forward`` has the same four, with an
example that calls the forward; its ``<op>_backward`` has ``.. math::`` (the gradient), ``Shape:`` and an
``Examples:`` doctest that calls the forward and then the backward. The doctests themselves run under
``--doctest-modules``; this file checks that they exist. The lists come from ``__all__``, so a new layer or pair is
covered the moment it is exported.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

from minidl import nn
from minidl.nn import functional as F

# Modules that hold other modules and compute nothing of their own, and the base class: no math to document.
HOLDERS = {"Module", "ModuleList", "ModuleDict"}
# Names in F.__all__ that are helpers, not halves of a pair.
NOT_PAIRS = {"pool_output_size"}


def public_layers() -> list[str]:
    return sorted(
        name
        for name in nn.__all__
        if inspect.isclass(getattr(nn, name)) and issubclass(getattr(nn, name), nn.Module) and name not in HOLDERS
    )


def public_pairs() -> list[str]:
    return sorted(name[: -len("_forward")] for name in F.__all__ if name.endswith("_forward"))


def sections(doc: str) -> dict[str, str]:
    """The text of each Google-style section (``Heading:`` alone on its line), keyed by heading; '' is the intro."""
    out: dict[str, str] = {"": ""}
    current = ""
    for line in inspect.cleandoc(doc).splitlines():
        match = re.fullmatch(r"\s*([A-Z][A-Za-z ]*):\s*", line)
        if match:
            current = match.group(1)
            out.setdefault(current, "")
            continue
        out[current] = out.get(current, "") + line + "\n"
    return out


def missing(doc: str | None, required: tuple[str, ...], example_calls: tuple[str, ...]) -> list[str]:
    """The required parts ``doc`` lacks, named as the rule names them."""
    if not doc:
        return ["the whole docstring"]
    found = sections(doc)
    lacks = []
    if "math" in required and ".. math::" not in doc:
        lacks.append("a '.. math::' block")
    for heading in ("Shape", "Backward"):
        if heading in required and not found.get(heading, "").strip():
            lacks.append(f"a '{heading}:' section")
    examples = found.get("Examples", "")
    if ">>>" not in examples:
        lacks.append("an 'Examples:' section with a '>>>' doctest")
    else:
        code = "\n".join(line.split(">>>", 1)[1] for line in examples.splitlines() if ">>>" in line)
        lacks += [f"an example calling {call}(...)" for call in example_calls if not re.search(rf"\b{call}\(", code)]
    return lacks


def collected_examples(obj) -> int:
    """How many examples ``--doctest-modules`` collects from ``obj``'s own docstring (0 if it is not found there,
    e.g. when a wrapper hides it from the module it is defined in)."""
    module = importlib.import_module(obj.__module__)
    name = f"{module.__name__}.{obj.__qualname__}"
    return sum(len(t.examples) for t in doctest.DocTestFinder().find(module) if t.name == name)


@pytest.mark.parametrize("name", public_layers())
def test_a_public_layer_documents_math_shape_backward_and_an_example(name):
    cls = getattr(nn, name)
    lacks = missing(cls.__doc__, ("math", "Shape", "Backward"), ())
    if not lacks and not collected_examples(cls):
        lacks.append("an example that --doctest-modules collects")
    assert not lacks, f"nn.{name} ({cls.__module__}): its class docstring lacks " + "; ".join(lacks)


@pytest.mark.parametrize("op", public_pairs())
def test_a_forward_documents_math_shape_backward_and_an_example(op):
    fn = getattr(F, f"{op}_forward")
    lacks = missing(fn.__doc__, ("math", "Shape", "Backward"), (f"{op}_forward",))
    if not lacks and not collected_examples(fn):
        lacks.append("an example that --doctest-modules collects")
    assert not lacks, f"F.{op}_forward ({fn.__module__}): its docstring lacks " + "; ".join(lacks)


@pytest.mark.parametrize("op", public_pairs())
def test_a_backward_documents_its_gradient_shape_and_an_example(op):
    fn = getattr(F, f"{op}_backward")
    lacks = missing(fn.__doc__, ("math", "Shape"), (f"{op}_forward", f"{op}_backward"))
    if not lacks and not collected_examples(fn):
        lacks.append("an example that --doctest-modules collects")
    assert not lacks, f"F.{op}_backward ({fn.__module__}): its docstring lacks " + "; ".join(lacks)


def test_every_exported_functional_is_half_of_a_pair_or_a_known_helper():
    names = set(F.__all__)
    stray = sorted(n for n in names - NOT_PAIRS if not n.endswith(("_forward", "_backward")))
    assert not stray, f"minidl.nn.functional exports {stray}: neither a pair half nor in NOT_PAIRS"
    for suffix, other in (("_forward", "_backward"), ("_backward", "_forward")):
        alone = sorted(n for n in names if n.endswith(suffix) and n[: -len(suffix)] + other not in names)
        assert not alone, f"minidl.nn.functional exports {alone} without the matching {other} half"
    assert NOT_PAIRS <= names, f"NOT_PAIRS names {sorted(NOT_PAIRS - names)}, which F no longer exports"


def test_every_exported_module_is_a_checked_layer_or_a_named_holder():
    modules = {n for n in nn.__all__ if inspect.isclass(getattr(nn, n)) and issubclass(getattr(nn, n), nn.Module)}
    assert HOLDERS <= modules, f"HOLDERS names {sorted(HOLDERS - modules)}, which nn no longer exports"
    assert modules - HOLDERS == set(public_layers())
    assert len(public_layers()) > 0 and len(public_pairs()) > 0


def test_the_checker_names_what_is_missing():
    doc = """One line.

    .. math:: y = x

    Shape:
        - Input: (N,)
    Examples:
        >>> relu_forward(x)
    """
    assert missing(doc, ("math", "Shape", "Backward"), ("relu_forward",)) == ["a 'Backward:' section"]
    calls = ("relu_forward", "relu_backward")
    assert missing(doc, ("math", "Shape"), calls) == ["an example calling relu_backward(...)"]
    assert missing(None, ("math",), ()) == ["the whole docstring"]
    assert "a '.. math::' block" in missing("Examples:\n    >>> 1\n", ("math",), ())


class _Undocumented:
    """A docstring with no example."""


def test_the_collection_check_sees_examples_and_their_absence():
    assert collected_examples(nn.Linear) > 0
    assert collected_examples(_Undocumented) == 0
