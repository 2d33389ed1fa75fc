"""Array comparison for the conformance checks, and the messages a mismatch raises."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


class ConformanceError(AssertionError):
    """A candidate disagrees with minidl's reference (or with finite differences of itself).

    Attributes:
        function: the name of the candidate function (or module class) at fault.
        what: which output, gradient or state differed (``"the output"``, ``"the gradient of weight"``, ...).
        config: the configuration that failed (after shrinking: the smallest one found).
        max_abs_error, max_rel_error: the worst errors (NaN when the shapes differ or the candidate raised).
    """

    def __init__(
        self, message: str, *, function: str, what: str, config: dict[str, Any], abs_err: float, rel_err: float
    ) -> None:
        super().__init__(message)
        self.function = function
        self.what = what
        self.config = dict(config)
        self.max_abs_error = abs_err
        self.max_rel_error = rel_err


@dataclasses.dataclass
class ConformanceReport:
    """What a passing check covered: the op, how many configurations, and the largest errors seen."""

    reference: str
    candidate: str
    examples: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.candidate} conforms to {self.reference} on {self.examples} configurations "
            f"(max abs error {self.max_abs_error:.2e}, max rel error {self.max_rel_error:.2e})"
        )


def describe(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())


def fail(function: str, what: str, config: dict[str, Any], detail: str, abs_err: float = np.nan,
         rel_err: float = np.nan) -> ConformanceError:  # fmt: skip
    message = f"{function}: {what} {detail}\n  configuration (smallest failing): {describe(config)}"
    return ConformanceError(message, function=function, what=what, config=config, abs_err=abs_err, rel_err=rel_err)


def compare(
    function: str,
    what: str,
    config: dict[str, Any],
    candidate: Any,
    reference: Any,
    *,
    atol: float,
    rtol: float,
    report: ConformanceReport | None = None,
    versus: str = "the reference",
) -> None:
    """Raise a :class:`ConformanceError` unless ``|candidate - reference| <= atol + rtol |reference|`` everywhere."""
    if reference is None:
        if candidate is not None:
            raise fail(function, what, config, f"should be None ({versus} returns None), got {_kind(candidate)}")
        return
    if candidate is None:
        raise fail(function, what, config, f"is None, but {versus} returns an array of shape {np.shape(reference)}")
    try:
        cand = np.asarray(candidate, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(function, what, config, f"is not an array of numbers: got {_kind(candidate)}") from None
    ref = np.asarray(reference, dtype=np.float64)
    if cand.shape != ref.shape:
        raise fail(function, what, config, f"has shape {cand.shape}, but {versus} has shape {ref.shape}")
    if not np.all(np.isfinite(cand)) and np.all(np.isfinite(ref)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(cand))[0])
        raise fail(function, what, config, f"has a non-finite value {cand[bad]} at index {bad} ({versus} is finite: "
                   f"{ref[bad]:.6g}); an overflow, e.g. exp of a large number?")  # fmt: skip
    if cand.size == 0:
        return
    with np.errstate(invalid="ignore"):  # equal infinities (a max-pool window all in the padding) differ by 0
        abs_err = np.where(cand == ref, 0.0, np.abs(cand - ref))
    rel_err = abs_err / np.maximum(np.abs(ref), atol)
    max_abs, max_rel = float(abs_err.max()), float(rel_err.max())
    ok = abs_err <= atol + rtol * np.abs(ref)
    if not ok.all():
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(ok, 0, abs_err))), cand.shape))
        raise fail(
            function, what, config,
            f"differs from {versus}: worst absolute error {max_abs:.3e}, worst relative error {max_rel:.3e}; "
            f"at index {worst}: got {cand[worst]:.6g}, expected {ref[worst]:.6g}",
            max_abs, max_rel,
        )  # fmt: skip
    if report is not None:
        report.max_abs_error = max(report.max_abs_error, max_abs)
        report.max_rel_error = max(report.max_rel_error, max_rel)


def _kind(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else repr(value)[:80]
