"""Shared pieces of the loss files: argument checks, reductions and the loss Module protocol.

A loss Module is called as ``loss = loss_fn(input, target)``, which returns a Python float (an array for
``reduction="none"``); ``loss_fn.backward(dout=None)`` returns the gradient with respect to ``input`` (``dout``
defaults to 1.0 for a scalar loss and is required for ``"none"``).

Reductions: ``"none"`` keeps one loss per term; ``"sum"`` adds them, so every term receives ``dout``; ``"mean"``
divides by a denominator D (the count, or a total weight), so every term receives ``dout / D``.

The elementwise losses (:mod:`minidl.nn.loss_elementwise`, :mod:`minidl.nn.loss_binary`) share one cache,
:class:`ElementwiseLossCache`: the local derivative of each term, so each backward is one line.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._calls import _under_module_name
from minidl.nn._checks import check_array, check_grad_output
from minidl.nn.module import Module


def _check_reduction(where: str, reduction: Any, allowed: tuple[str, ...] = ("none", "mean", "sum")) -> str:
    if reduction not in allowed:
        raise ValueError(f"{where}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


def _as_target(where: str, be: Any, target: Any) -> Any:
    if isinstance(target, (list, tuple, int, float)) and not isinstance(target, bool):
        target = np.asarray(target)
    if not hasattr(target, "shape") or not hasattr(target, "dtype"):
        raise TypeError(f"{where}: expected the target to be an array, got {type(target).__name__}")
    return be.asarray(target)


def _float_target(where: str, be: Any, input: Any, target: Any) -> Any:
    """A floating target of exactly the input's shape, in the input's dtype (the loss computes in it); a target that
    this cast would overflow (a float64 1e5 in a float16 loss) is refused rather than turned into inf."""
    target = _as_target(where, be, target)
    if not np.issubdtype(np.dtype(target.dtype), np.floating):
        raise TypeError(f"{where}: expected a floating-point target, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"{where}: the target has shape {tuple(target.shape)} but the input has shape {tuple(input.shape)}; "
            "they must match exactly (minidl does not broadcast losses)"
        )
    with np.errstate(over="ignore"):  # (an overflow is refused below, with the loss's name)
        cast = target.astype(input.dtype, copy=False)
    if cast is not target:
        xp = _xp(cast)
        overflow = xp.isinf(cast) & xp.isfinite(target)
        if bool(overflow.any()):
            largest = float(xp.abs(target[overflow]).max())
            raise ValueError(
                f"{where}: the {target.dtype} target holds values beyond the range of the input's dtype {input.dtype} "
                f"(up to {largest:g}), which the loss computes in; use a wider input dtype or rescale the target"
            )
    return cast


def _xp(x: Any) -> Any:
    return get_array_module(x)


def _reduce(xp: Any, per_sample: Any, reduction: str, denominator: Any) -> Any:
    """Apply the reduction; the mean of nothing (every target ignored) is NaN, as in PyTorch."""
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    if reduction == "sum":
        return total
    return total / denominator if float(denominator) != 0 else xp.asarray(xp.nan, dtype=per_sample.dtype)


def _reduced_dout(where: str, dout: Any, reduction: str, denominator: Any, shape: tuple[int, ...]) -> Any:
    """The gradient each term receives: dout (sum), dout / denominator (mean), dout itself ("none").

    Args:
        where: the backward's name, e.g. ``"mse_loss_backward"``.
    """
    if reduction == "none":
        check_grad_output(where, dout, shape)
        return dout
    if hasattr(dout, "shape") and int(np.prod(dout.shape)) != 1:
        raise ValueError(f"{where}: the loss is a scalar, so dout must be a scalar, got shape {dout.shape}")
    # a Python float, so a float64 dout (np.float64(1.0)) does not turn a float32 model's gradients into float64
    dout = float(dout.reshape(())) if hasattr(dout, "reshape") else float(dout)
    if reduction == "sum":
        return dout
    return dout / denominator if float(denominator) != 0 else 0.0 * dout


# ---------------------------------------------------------------------------------------------- elementwise losses
def _elementwise(where: str, input: Any, target: Any, reduction: str, allowed=("none", "mean", "sum")):
    _check_reduction(where, reduction, allowed)
    be = check_array(where, input)
    return be.xp, _float_target(where, be, input, target)


def _finish(xp: Any, losses: Any, local_grad: Any, reduction: str, denominator: float | None = None):
    denominator = float(losses.size) if denominator is None else denominator
    cache = ElementwiseLossCache(local_grad, reduction, denominator, tuple(losses.shape))
    return _reduce(xp, losses, reduction, denominator), cache


class ElementwiseLossCache(NamedTuple):
    """The cache of an elementwise loss: its local derivative and how it was reduced."""

    local_grad: Any  # d loss_i / d input_i
    reduction: str
    denominator: float  # of the mean
    shape: tuple[int, ...]  # of the per-term losses (what reduction "none" returns)


def _elementwise_backward(where: str, dout: Any, cache: Any) -> Any:
    local_grad, reduction, denominator, shape = cache
    return local_grad * _reduced_dout(where, dout, reduction, denominator, shape)


# ---------------------------------------------------------------------------------------------- the Module protocol
class _Loss(Module):
    """Shared call protocol: ``loss_fn(input, target) -> float`` and ``loss_fn.backward(dout=None) -> dinput``.

    A subclass names its pair in ``_pair_forward(input, target)`` (e.g. ``F.mse_loss_forward(input, target,
    self.reduction)``) and ``_pair_backward(dout, cache)``, and its options (for the repr) in ``_arguments()``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(type(self).__name__, reduction, self._reductions())

    def _reductions(self) -> tuple[str, ...]:
        return ("none", "mean", "sum")

    def _arguments(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def _where(self) -> str:
        return type(self).__name__

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        raise NotImplementedError

    def forward(self, input: Any, target: Any) -> Any:
        loss, cache = self._pair_forward(input, target)
        self.save_for_backward(cache, tuple(loss.shape))
        return loss if self.reduction == "none" else float(loss)

    def backward(self, dout: Any = None) -> Any:
        cache, shape = self.pop_saved()
        if dout is None:
            if self.reduction == "none":
                raise ValueError(
                    f"{type(self).__name__}.backward: with reduction='none' the loss is an array of shape {shape}; "
                    "pass dout of that shape"
                )
            dout = 1.0
        try:
            return self._pair_backward(dout, cache)
        except (TypeError, ValueError) as err:  # the pair's message, under the loss's name
            renamed = _under_module_name(err, self, ".backward")
            if renamed is None:
                raise
            raise renamed.with_traceback(err.__traceback__) from None

    def extra_repr(self) -> str:
        return ", ".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
            for k, v in self._arguments().items()
            if k not in ("weight", "pos_weight")
        )


def _buffer(where: str, value: Any) -> Any:
    """A weight argument as an array of the current backend (integers become the default float dtype)."""
    if value is None:
        return None
    import minidl

    value = np.asarray(value) if not hasattr(value, "dtype") else value
    floating = np.issubdtype(np.dtype(value.dtype), np.floating)
    return minidl.get_backend().asarray(value, dtype=value.dtype if floating else minidl.get_default_dtype())


class _WeightedLoss(_Loss):
    """A loss with an optional (C,) class-weight buffer ``weight`` (saved in the state_dict, as in PyTorch)."""

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        weight = _buffer(type(self).__name__, weight)
        if weight is not None and weight.ndim != 1:
            raise ValueError(f"{type(self).__name__}: weight must be 1-D, one per class, got shape {weight.shape}")
        self.register_buffer("weight", weight)
