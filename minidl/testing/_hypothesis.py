"""hypothesis, imported when a check runs (it is a dependency of :mod:`minidl.testing` only, not of minidl)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

#: the configurations a quick check draws (``python -m minidl.assignments grade --quick``); a longer check draws
#: these too, first
QUICK_EXAMPLES = 4


def require_hypothesis() -> ModuleType:
    """The ``hypothesis`` package, or an ImportError that says how to install it."""
    try:
        import hypothesis
    except ImportError:
        raise ImportError(
            "minidl.testing draws its test configurations with hypothesis, which is not installed: "
            "pip install 'minidl[test]' (or pip install hypothesis)"
        ) from None
    return hypothesis


def strategies() -> ModuleType:
    """``hypothesis.strategies``."""
    require_hypothesis()
    from hypothesis import strategies as st

    return st


def run_examples(test: Callable[..., None], strategy: Any, *, max_examples: int, seed: int) -> None:
    """Run ``test(config, data_seed)`` over ``max_examples`` drawn configurations; on a failure, hypothesis shrinks
    it to the smallest failing configuration and re-raises that run's exception.

    More than :data:`QUICK_EXAMPLES` run the quick check's draws too, first (so ``max_examples`` + 4 in all):
    hypothesis adapts what it draws to the number asked for, so 20 configurations need not include the 4 a quick
    check tries (a grade passed a bug its ``--quick`` run caught)."""
    if max_examples > QUICK_EXAMPLES:
        run_examples(test, strategy, max_examples=QUICK_EXAMPLES, seed=seed)
    hypothesis = require_hypothesis()
    st = strategies()
    checks = [hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much]
    checks += [getattr(hypothesis.HealthCheck, n) for n in ("nested_given", "differing_executors") if hasattr(
        hypothesis.HealthCheck, n)]  # fmt: skip
    settings = hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,  # nothing written to the student's folder
        derandomize=False,
        report_multiple_bugs=False,  # one failure, the smallest, not an ExceptionGroup
        suppress_health_check=checks,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
        print_blob=False,
    )
    wrapped = hypothesis.seed(seed)(settings(hypothesis.given(strategy, st.integers(0, 2**32 - 1))(test)))
    wrapped()
