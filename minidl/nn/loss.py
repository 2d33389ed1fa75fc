r"""Loss functions: a scalar that measures how wrong the predictions are, and its gradient.

Cross-entropy over C classes works on *logits* z (unnormalized scores) through the log-softmax, computed with the
log-sum-exp trick (:math:`\log\sum_j e^{z_j} = m + \log\sum_j e^{z_j - m}`, :math:`m = \max_j z_j`, which never
overflows). Every target form (a class index, label smoothing, class weights, soft probabilities from mixup)
becomes a row of coefficients :math:`a_c \ge 0` and a per-sample loss

.. math:: \ell = -\sum_c a_c \log p_c, \qquad p = \mathrm{softmax}(z), \qquad
          \frac{\partial \ell}{\partial z} = \Big(\sum_c a_c\Big)\, p - a

(because :math:`\partial(-\log p_c)/\partial z = p - e_c`). For a class index y with smoothing :math:`\varepsilon` and
weights w: :math:`a = (1 - \varepsilon) w_y e_y + \varepsilon w / C`; for probabilities q: :math:`a = w \odot ((1 -
\varepsilon) q + \varepsilon / C)`. With one-hot a and no weights the gradient is the familiar :math:`p - e_y`.

Reductions follow PyTorch: ``"none"`` (per sample), ``"sum"``, ``"mean"`` (for class indices divided by the total
weight :math:`\sum_n w_{y_n}` of the non-ignored samples, for probabilities and elementwise losses by the count).
The backward of a reduction passes ``dout`` (times 1/denominator for the mean) to every term.

The elementwise losses (MSE, L1, smooth L1, KL divergence) live in :mod:`minidl.nn.loss_elementwise`, binary
cross-entropy in :mod:`minidl.nn.loss_binary` and knowledge distillation in :mod:`minidl.nn.loss_distillation`, all
re-exported here; the shared Module protocol is in :mod:`minidl.nn._loss_common`.

The loss Modules are called as ``loss = loss_fn(input, target)``, which returns a Python float (an array for
``reduction="none"``), and ``loss_fn.backward(dout=None)`` returns the gradient with respect to ``input`` (``dout``
defaults to 1.0 for a scalar loss).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from minidl.nn._checks import check_array, check_float, check_int
from minidl.nn._loss_common import _as_target, _check_reduction, _reduce, _reduced_dout, _WeightedLoss, _xp
from minidl.nn.dispatch import F
from minidl.nn.loss_binary import *  # noqa: F403  (re-exported: one place to import every loss)
from minidl.nn.loss_binary import __all__ as _binary_all
from minidl.nn.loss_distillation import *  # noqa: F403
from minidl.nn.loss_distillation import __all__ as _distillation_all
from minidl.nn.loss_elementwise import *  # noqa: F403
from minidl.nn.loss_elementwise import __all__ as _elementwise_all

__all__ = [
    "CrossEntropyLoss",
    "NLLLoss",
    "nll_loss_backward",
    "nll_loss_forward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    *_binary_all,
    *_distillation_all,
    *_elementwise_all,
]

_PROBABILITY_TOLERANCE = 1e-3  # probability targets must sum to 1 within this (float32 mixup targets do)


def _class_weight(where: str, be: Any, weight: Any, num_classes: int, dtype: Any) -> Any:
    if weight is None:
        return None
    weight = _as_target(where, be, weight)
    if tuple(weight.shape) != (num_classes,):
        raise ValueError(f"{where}: weight must have shape ({num_classes},), one per class, got {tuple(weight.shape)}")
    return weight.astype(dtype, copy=False)


def _rows(x: Any) -> Any:
    """(C,) -> (1, C); (N, C) as is; (N, C, d1, ...) -> (N d1 ..., C): one row of class scores per prediction."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    if x.ndim == 2:
        return x
    return _xp(x).moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _minus_weighted_sum(a: Any, log_p: Any) -> Any:
    """-sum_c a_c log p_c per row, with 0 log p = 0 where a_c = 0 (the convention of an entropy): a class whose
    log-probability is -inf (logits masked with -inf, log(0) fed to NLLLoss, an ignored row) adds nothing unless
    the target puts weight on it (0 * -inf would be NaN, and a mean over the rows NaN too; PyTorch reads only the
    target's entries)."""
    xp = _xp(a)
    return -(a * xp.where(a != 0, log_p, 0)).sum(axis=1)


def _unrows(g: Any, shape: tuple[int, ...]) -> Any:
    """Inverse of :func:`_rows`: (M, C) back to the input's layout."""
    if len(shape) <= 2:
        return g.reshape(shape)
    g = g.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return _xp(g).ascontiguousarray(_xp(g).moveaxis(g, -1, 1))


def _class_indices(
    where: str, input: Any, target: Any, w: Any, ignore_index: int, sample_shape: tuple[int, ...]
) -> tuple[Any, Any, Any]:
    """Validated class-index targets as flat ``(t_safe, valid, w_t)``: the indices with ignored ones set to 0,
    whether each is counted, and its weight w_{t} (0 if ignored; 1 without class weights) in the input's dtype."""
    xp = _xp(input)
    C = input.shape[0] if input.ndim == 1 else input.shape[1]
    if tuple(target.shape) != sample_shape:
        raise ValueError(
            f"{where}: class-index targets must have shape {sample_shape} for an input of shape "
            f"{tuple(input.shape)} (C = {C} classes), got {tuple(target.shape)}"
        )
    t = target.reshape(-1).astype(np.int64)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= C))
    if bool(bad.any()):
        value = int(t[bad][0])
        raise ValueError(
            f"{where}: target class {value} is out of range for an input with {C} classes "
            f"(expected 0..{C - 1}, or ignore_index={ignore_index})"
        )
    t_safe = xp.where(valid, t, 0)
    w_t = (xp.ones(t.shape[0], dtype=input.dtype) if w is None else w[t_safe]) * valid
    return t_safe, valid, w_t


def _class_coefficients(
    where: str,
    input: Any,
    target: Any,
    weight: Any,
    ignore_index: int,
    label_smoothing: float,
    allow_probabilities: bool,
) -> tuple[Any, Any, Any, tuple[int, ...]]:
    """The coefficient rows ``a`` (M, C) of the module docstring, the mean's denominator and the per-sample shape."""
    be = check_array(where, input, min_ndim=1)
    xp = be.xp
    C = input.shape[0] if input.ndim == 1 else input.shape[1]
    sample_shape = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    target = _as_target(where, be, target)
    w = _class_weight(where, be, weight, C, input.dtype)
    kind = np.dtype(target.dtype)
    if np.issubdtype(kind, np.integer):
        t_safe, valid, w_t = _class_indices(where, input, target, w, ignore_index, sample_shape)
        M = t_safe.shape[0]
        a = xp.zeros((M, C), dtype=input.dtype)
        a[xp.arange(M), t_safe] = (1.0 - label_smoothing) * w_t
        if label_smoothing > 0:
            smooth = xp.ones(C, dtype=input.dtype) if w is None else w
            a += (label_smoothing / C) * smooth[None, :] * valid[:, None]
        denominator = w_t.sum()
    elif np.issubdtype(kind, np.floating):
        if not allow_probabilities:
            raise TypeError(f"{where}: expected integer class indices as the target, got dtype {target.dtype}")
        if tuple(target.shape) != tuple(input.shape):
            if tuple(target.shape) == sample_shape:
                raise TypeError(
                    f"{where}: a target of shape {tuple(target.shape)} holds class indices and must be an integer "
                    f"array, got dtype {target.dtype}; use target.astype(np.int64) (or give probabilities of the "
                    f"input's shape {tuple(input.shape)})"
                )
            raise ValueError(
                f"{where}: probability targets must have the input's shape {tuple(input.shape)} (C = {C} classes), "
                f"got {tuple(target.shape)}"
            )
        q = _rows(target.astype(input.dtype, copy=False))
        sums = q.sum(axis=1)
        if bool((q < -_PROBABILITY_TOLERANCE).any()) or bool((xp.abs(sums - 1) > _PROBABILITY_TOLERANCE).any()):
            worst = float(sums[int(xp.argmax(xp.abs(sums - 1)))])
            raise ValueError(
                f"{where}: probability targets must be non-negative and sum to 1 over the {C} classes "
                f"(dimension {0 if input.ndim == 1 else 1}); got a row summing to {worst:.6g} and minimum "
                f"{float(q.min()):.6g}. For class indices pass an integer array."
            )
        a = (1.0 - label_smoothing) * q + label_smoothing / C
        if w is not None:
            a = a * w[None, :]
        denominator = xp.asarray(float(q.shape[0]), dtype=input.dtype)
    else:
        raise TypeError(
            f"{where}: the target must be integer class indices or floating-point probabilities, "
            f"got dtype {target.dtype}"
        )
    return a, denominator, sample_shape


class CrossEntropyCache(NamedTuple):
    """The cache of :func:`softmax_cross_entropy_forward`."""

    p: Any  # softmax of the logits, one row per prediction (M, C)
    a: Any  # the target coefficients (M, C) of the module docstring
    denominator: Any  # of the mean
    reduction: str
    shape: tuple[int, ...]  # of the logits
    sample_shape: tuple[int, ...]  # of the per-sample losses


def _cross_entropy_forward(where, logits, target, label_smoothing, weight, ignore_index, reduction):
    _check_reduction(where, reduction)
    label_smoothing = check_float(where, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    a, denominator, sample_shape = _class_coefficients(
        where, logits, target, weight, ignore_index, label_smoothing, allow_probabilities=True
    )
    log_p, _ = F.log_softmax_forward(_rows(logits), dim=1)
    per_sample = _minus_weighted_sum(a, log_p)
    loss = _reduce(_xp(logits), per_sample.reshape(sample_shape), reduction, denominator)
    cache = CrossEntropyCache(_xp(log_p).exp(log_p), a, denominator, reduction, tuple(logits.shape), sample_shape)
    return loss, cache


def softmax_cross_entropy_forward(
    logits: Any,
    target: Any,
    label_smoothing: float = 0.0,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Any, Any]:
    r"""Cross-entropy of ``softmax(logits)`` against class indices or class probabilities, with PyTorch's options.

    Each prediction (row) n of logits :math:`z_n` gets target coefficients :math:`a_n \ge 0` (see the module docs):
    :math:`a_n = (1 - \varepsilon) w_{y_n} e_{y_n} + \varepsilon w / C` for a class index :math:`y_n` (0 if ignored),
    :math:`a_n = w \odot ((1 - \varepsilon) q_n + \varepsilon / C)` for probabilities :math:`q_n` (w = 1 without
    weights), and

    .. math:: \ell_n = -\sum_c a_{n,c} \log p_{n,c}, \qquad p_n = \mathrm{softmax}(z_n), \qquad
              L = \frac{1}{D} \sum_n \ell_n \ (\text{mean}), \quad \sum_n \ell_n \ (\text{sum}),

    with D the total weight :math:`\sum_n w_{y_n}` of the non-ignored samples for class indices, and the number
    of rows for probabilities.

    Args:
        logits: (N, C), (N, C, d1, ...) or (C,) unnormalized scores.
        target: class indices (N,) / (N, d1, ...) / () of an integer dtype, or probabilities of the logits' shape
            (mixup, cutmix, distillation), each row summing to 1.
        label_smoothing: epsilon in [0, 1]: the target becomes (1 - eps) target + eps / C. Default: 0.0.
        weight: (C,) class weights, or None. Default: None.
        ignore_index: class-index value that contributes neither loss nor gradient. Default: -100.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.

    Returns:
        ``(loss, cache)``: a scalar (an array of the per-sample shape for ``"none"``) and the cache.

    Shape:
        - Logits: (N, C), (N, C, d1, ...) or (C,).
        - Target: class indices (N,), (N, d1, ...) or (), or probabilities of the logits' shape.
        - Output: a scalar; for ``"none"`` the per-sample shape (N,), (N, d1, ...) or ().
    Backward:
        dlogits_n = g_n (sum_c(a_n) softmax(z_n) - a_n) (= softmax(z_n) - onehot(y_n) for plain class indices),
        g = dout / D (mean), dout (sum) or dout itself (none).
    Examples:
        >>> loss, cache = softmax_cross_entropy_forward(np.zeros((2, 4)), np.array([1, 3]))
        >>> round(float(loss), 4)  # log 4
        1.3863
    """
    return _cross_entropy_forward(
        "softmax_cross_entropy_forward", logits, target, label_smoothing, weight, ignore_index, reduction
    )


def softmax_cross_entropy_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of softmax cross-entropy: ``g * (sum_c(a) * softmax(logits) - a)`` per row, g the reduced
    ``dout`` (see the module docs).

    .. math:: \frac{\partial L}{\partial z_n} = g_n \Big(\Big(\sum_c a_{n,c}\Big) p_n - a_n\Big), \qquad
              g = \frac{dout}{D} \ (\text{mean}), \quad dout \ (\text{sum, none})

    Shape:
        - dout: a scalar, or the per-sample shape for ``"none"``.  - dlogits: the logits' shape.
    Examples:
        >>> _, cache = softmax_cross_entropy_forward(np.zeros((2, 4)), np.array([1, 3]))
        >>> softmax_cross_entropy_backward(1.0, cache)  # (softmax - onehot) / 2
        array([[ 0.125, -0.375,  0.125,  0.125],
               [ 0.125,  0.125,  0.125, -0.375]])
    """
    p, a, denominator, reduction, shape, sample_shape = cache
    g = _reduced_dout("softmax_cross_entropy_backward", dout, reduction, denominator, sample_shape)
    g_rows = g.reshape(-1, 1) if reduction == "none" else g
    return _unrows((a.sum(axis=1, keepdims=True) * p - a) * g_rows, shape)


class NllLossCache(NamedTuple):
    """The cache of :func:`nll_loss_forward`."""

    a: Any  # the target coefficients: w_{y_n} at (n, y_n), else 0
    denominator: Any
    reduction: str
    shape: tuple[int, ...]  # of the log-probabilities
    sample_shape: tuple[int, ...]


def nll_loss_forward(
    log_probs: Any, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"
) -> tuple[Any, Any]:
    r"""Negative log-likelihood ``-w_y log_probs[y]`` of class-index targets (pair it with ``log_softmax``).

    .. math:: \ell_n = -w_{y_n} \log p_{n, y_n} \ (0 \text{ if } y_n = \mathrm{ignore\_index}), \qquad
              L = \frac{\sum_n \ell_n}{\sum_n w_{y_n}} \ (\text{mean}), \quad \sum_n \ell_n \ (\text{sum})

    with :math:`\log p` the input and the sum in the mean's denominator over the non-ignored samples (w = 1
    without class weights).

    Args:
        log_probs: (N, C), (N, C, d1, ...) or (C,) log-probabilities.
        target: integer class indices of shape (N,), (N, d1, ...) or ().
        weight, ignore_index, reduction: as in :func:`softmax_cross_entropy_forward`.

    Shape:
        - Input: (N, C), (N, C, d1, ...) or (C,).  - Target: integer (N,), (N, d1, ...) or ().
        - Output: a scalar; for ``"none"`` the target's shape.
    Backward:
        dlog_probs[n, y_n] = -g_n w_{y_n}, zero elsewhere; g = dout / sum_n w_{y_n} (mean), dout (sum, none).
    Examples:
        >>> loss, cache = nll_loss_forward(np.log(np.array([[0.25, 0.75]])), np.array([1]))
        >>> round(float(loss), 4)  # -log 0.75
        0.2877
    """
    where = "nll_loss_forward"
    _check_reduction(where, reduction)
    a, denominator, sample_shape = _class_coefficients(
        where, log_probs, target, weight, ignore_index, 0.0, allow_probabilities=False
    )
    per_sample = _minus_weighted_sum(a, _rows(log_probs))
    loss = _reduce(_xp(a), per_sample.reshape(sample_shape), reduction, denominator)
    return loss, NllLossCache(a, denominator, reduction, tuple(log_probs.shape), sample_shape)


def nll_loss_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of the NLL loss: ``dlog_probs[n, y_n] = -g_n w_{y_n}``, zero elsewhere (and for ignored samples).

    .. math:: \frac{\partial L}{\partial \log p_{n,c}} = -g_n\, w_{y_n} [c = y_n], \qquad
              g = \frac{dout}{\sum_n w_{y_n}} \ (\text{mean}), \quad dout \ (\text{sum, none})

    Shape:
        - dout: a scalar, or the target's shape for ``"none"``.  - dlog_probs: the input's shape.
    Examples:
        >>> _, cache = nll_loss_forward(np.log(np.array([[0.25, 0.75]])), np.array([1]))
        >>> nll_loss_backward(1.0, cache)  # (-0. is -(0 * g): zero)
        array([[-0., -1.]])
    """
    a, denominator, reduction, shape, sample_shape = cache
    g = _reduced_dout("nll_loss_backward", dout, reduction, denominator, sample_shape)
    return _unrows(-a * (g.reshape(-1, 1) if reduction == "none" else g), shape)


class CrossEntropyLoss(_WeightedLoss):
    r"""Softmax cross-entropy on logits, with class weights, ``ignore_index``, label smoothing and soft targets.

    .. math:: L = -\frac{1}{\sum_n w_{y_n}} \sum_n w_{y_n} \log \frac{e^{z_{n, y_n}}}{\sum_c e^{z_{n,c}}}

    for class indices without smoothing (the mean over the non-ignored samples; the general form, with smoothing and
    probability targets, is in :func:`~minidl.nn.loss.softmax_cross_entropy_forward`).

    Args:
        weight: (C,) weight of each class, or None. Default: None.
        ignore_index: class-index target value to skip (no loss, no gradient). Default: -100.
        reduction: ``"mean"`` (divided by the total weight of the counted samples), ``"sum"`` or ``"none"``.
            Default: ``"mean"``.
        label_smoothing: epsilon in [0, 1] (Szegedy et al. 2016). Default: 0.0.
        (Keyword-only after ``weight``: PyTorch's deprecated ``size_average``/``reduce`` are not accepted.)

    Shape:
        - Input: (N, C), (N, C, d1, ...) or (C,) logits.
        - Target: class indices (N,) / (N, d1, ...) / () of an integer dtype, or probabilities of the input's shape.
        - Output: a Python float; with ``reduction="none"`` an array of the class-index shape.

    Backward:
        dlogits = g (sum_c(a) softmax(z) - a), a the target coefficients (a = one-hot(y): softmax(z) - one-hot(y)),
        g = dout / denominator for the mean.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> loss_fn = nn.CrossEntropyLoss()
        >>> round(loss_fn(np.zeros((2, 4), np.float32), np.array([1, 3])), 4)  # ln 4
        1.3863
        >>> loss_fn.backward()
        array([[ 0.125, -0.375,  0.125,  0.125],
               [ 0.125,  0.125,  0.125, -0.375]], dtype=float32)
    """

    def __init__(
        self, weight: Any = None, *, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = check_int("CrossEntropyLoss", "ignore_index", ignore_index, minimum=-(2**62))
        self.label_smoothing = check_float("CrossEntropyLoss", "label_smoothing", label_smoothing, low=0.0, high=1.0)

    def _arguments(self) -> dict[str, Any]:
        return {
            "label_smoothing": self.label_smoothing,
            "weight": self.weight,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
        }

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.softmax_cross_entropy_forward(
            input, target, self.label_smoothing, self.weight, self.ignore_index, self.reduction
        )

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.softmax_cross_entropy_backward(dout, cache)


class NLLLoss(_WeightedLoss):
    r"""Negative log-likelihood of class indices, on log-probabilities (use after ``LogSoftmax(dim=1)``).

    .. math:: L = -\frac{\sum_n w_{y_n} x_{n, y_n}}{\sum_n w_{y_n}} \quad (\text{mean over the non-ignored } n)

    Args:
        weight: (C,) class weights, or None. Default: None.
        ignore_index: target value to skip. Default: -100.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.

    Shape:
        - Input: (N, C), (N, C, d1, ...) or (C,).  - Target: integer (N,), (N, d1, ...) or ().

    Backward:
        dinput[n, y_n] = -g w_{y_n}; zero elsewhere.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> nn.NLLLoss()(np.log(np.full((1, 4), 0.25)), np.array([2]))
        1.3862943611198906
    """

    def __init__(self, weight: Any = None, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)
        self.ignore_index = check_int("NLLLoss", "ignore_index", ignore_index, minimum=-(2**62))

    def _arguments(self) -> dict[str, Any]:
        return {"weight": self.weight, "ignore_index": self.ignore_index, "reduction": self.reduction}

    def _pair_forward(self, input: Any, target: Any) -> tuple[Any, Any]:
        return F.nll_loss_forward(input, target, self.weight, self.ignore_index, self.reduction)

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.nll_loss_backward(dout, cache)
