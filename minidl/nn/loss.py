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

The elementwise losses (MSE, L1, smooth L1, binary cross-entropy, KL divergence) live in
:mod:`minidl.nn.loss_elementwise` and are re-exported here; the shared Module protocol is in
:mod:`minidl.nn._loss_common`.

The loss Modules are called as ``loss = loss_fn(input, target)``, which returns a Python float (an array for
``reduction="none"``), and ``loss_fn.backward(dout=None)`` returns the gradient with respect to ``input`` (``dout``
defaults to 1.0 for a scalar loss).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from minidl.nn._checks import check_array, check_float, check_int
from minidl.nn._loss_common import _as_target, _check_reduction, _Loss, _reduce, _reduced_dout, _WeightedLoss, _xp
from minidl.nn.dispatch import F
from minidl.nn.loss_elementwise import *  # noqa: F403  (re-exported: one place to import every loss)
from minidl.nn.loss_elementwise import __all__ as _elementwise_all

__all__ = [
    "CrossEntropyLoss",
    "DistillationLoss",
    "NLLLoss",
    "distillation_loss_backward",
    "distillation_loss_forward",
    "nll_loss_backward",
    "nll_loss_forward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
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
    per_sample = -(a * log_p).sum(axis=1)
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
    """Cross-entropy of ``softmax(logits)`` against class indices or class probabilities, with PyTorch's options.

    Args:
        logits: (N, C), (N, C, d1, ...) or (C,) unnormalized scores.
        target: class indices (N,) / (N, d1, ...) / () of an integer dtype, or probabilities of the logits' shape
            (mixup, cutmix, distillation), each row summing to 1.
        label_smoothing: epsilon in [0, 1]: the target becomes (1 - eps) target + eps / C. Default: 0.0.
        weight: (C,) class weights, or None. Default: None.
        ignore_index: class-index value that contributes neither loss nor gradient. Default: -100.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.

    Returns:
        ``(loss, cache)``: a 0-d array (an array of the target's shape for ``"none"``) and the cache.
    """
    return _cross_entropy_forward(
        "softmax_cross_entropy_forward", logits, target, label_smoothing, weight, ignore_index, reduction
    )


def softmax_cross_entropy_backward(dout: Any, cache: Any) -> Any:
    """``dlogits = g * (sum_c(a) * softmax(logits) - a)`` per row, g the reduced ``dout`` (see the module docs)."""
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
    """Negative log-likelihood ``-w_y log_probs[y]`` of class-index targets (pair it with ``log_softmax``).

    Args:
        log_probs: (N, C), (N, C, d1, ...) or (C,) log-probabilities.
        target: integer class indices of shape (N,), (N, d1, ...) or ().
        weight, ignore_index, reduction: as in :func:`softmax_cross_entropy_forward`.
    """
    where = "nll_loss_forward"
    _check_reduction(where, reduction)
    a, denominator, sample_shape = _class_coefficients(
        where, log_probs, target, weight, ignore_index, 0.0, allow_probabilities=False
    )
    per_sample = -(a * _rows(log_probs)).sum(axis=1)
    loss = _reduce(_xp(a), per_sample.reshape(sample_shape), reduction, denominator)
    return loss, NllLossCache(a, denominator, reduction, tuple(log_probs.shape), sample_shape)


def nll_loss_backward(dout: Any, cache: Any) -> Any:
    """``dlog_probs[n, y_n] = -g_n w_{y_n}``, zero elsewhere (and for ignored samples)."""
    a, denominator, reduction, shape, sample_shape = cache
    g = _reduced_dout("nll_loss_backward", dout, reduction, denominator, sample_shape)
    return _unrows(-a * (g.reshape(-1, 1) if reduction == "none" else g), shape)


def distillation_loss_forward(
    student_logits: Any, target: Any, teacher_logits: Any, temperature: float = 4.0, alpha: float = 0.5
) -> tuple[Any, Any]:
    r"""Knowledge distillation (Hinton et al. 2015):
    :math:`(1 - \alpha)\, CE(z_s, y) + \alpha T^2\, KL(\mathrm{softmax}(z_t / T) \,\|\, \mathrm{softmax}(z_s / T))`.

    The KL term is averaged over the batch; the :math:`T^2` keeps its gradient, :math:`\alpha T (p_s^T - p_t^T) / N`,
    on the scale of the hard-label term's as T changes.

    Args:
        student_logits: (N, C).  target: class indices (N,) or probabilities (N, C) for the CE term.
        teacher_logits: (N, C), the (frozen) teacher's logits.
        temperature: T > 0. Default: 4.0.  alpha: weight of the soft term in [0, 1]. Default: 0.5.
    """
    where = "distillation_loss_forward"
    be = check_array(where, student_logits, ndim=2, what="student logits")
    check_array(where, teacher_logits, ndim=2, what="teacher logits")
    if tuple(teacher_logits.shape) != tuple(student_logits.shape):
        raise ValueError(
            f"{where}: teacher logits of shape {tuple(teacher_logits.shape)} do not match the student's "
            f"{tuple(student_logits.shape)}"
        )
    T = check_float(where, "temperature", temperature, low=0.0, low_open=True)
    alpha = check_float(where, "alpha", alpha, low=0.0, high=1.0)
    ce, ce_cache = F.softmax_cross_entropy_forward(student_logits, target)  # the hard-label term
    teacher = be.asarray(teacher_logits).astype(student_logits.dtype, copy=False)
    log_ps, _ = F.log_softmax_forward(student_logits / T, dim=1)
    log_pt, _ = F.log_softmax_forward(teacher / T, dim=1)
    p_t = be.xp.exp(log_pt)
    N = student_logits.shape[0]
    kl = (p_t * (log_pt - log_ps)).sum() / N
    loss = (1 - alpha) * ce + alpha * T * T * kl
    soft_grad = (alpha * T / N) * (be.xp.exp(log_ps) - p_t)
    return loss, DistillationCache(ce_cache, 1 - alpha, soft_grad)


class DistillationCache(NamedTuple):
    """The cache of :func:`distillation_loss_forward`."""

    cross_entropy: Any  # the hard-label term's cache
    hard_weight: float  # 1 - alpha
    soft_grad: Any  # alpha T (softmax(z_s / T) - softmax(z_t / T)) / N


def distillation_loss_backward(dout: Any, cache: Any) -> Any:
    """``dstudent = dout * ((1 - alpha) dCE + alpha T (softmax(z_s/T) - softmax(z_t/T)) / N)``."""
    ce_cache, hard_weight, soft_grad = cache
    g = _reduced_dout("distillation_loss_backward", dout, "sum", 1.0, ())
    return (hard_weight * F.softmax_cross_entropy_backward(1.0, ce_cache) + soft_grad) * g


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy on logits, with class weights, ``ignore_index``, label smoothing and soft targets.

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
    """Negative log-likelihood of class indices, on log-probabilities (use after ``LogSoftmax(dim=1)``).

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


class DistillationLoss(_Loss):
    r"""Knowledge distillation (Hinton, Vinyals & Dean 2015): hard labels plus the teacher's softened predictions.

    .. math:: L = (1 - \alpha)\, CE(z_s, y) + \alpha T^2\, KL(\mathrm{softmax}(z_t/T) \,\|\, \mathrm{softmax}(z_s/T))

    Called as ``loss_fn(student_logits, labels, teacher_logits)``; backward returns the gradient with respect to the
    student's logits only (the teacher is fixed). The KL term is the batch mean.

    Args:
        temperature: T > 0; larger T softens both distributions. Default: 4.0.
        alpha: weight of the soft (teacher) term in [0, 1]. Default: 0.5.
    Shape:
        - Student and teacher logits: (N, C).  - Labels: class indices (N,) or probabilities (N, C).
    Backward:
        dz_s = dout ((1 - alpha) (softmax(z_s) - onehot(y)) / N + alpha T (softmax(z_s/T) - softmax(z_t/T)) / N)
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> loss_fn = nn.DistillationLoss(temperature=2.0, alpha=0.5)
        >>> z = np.zeros((2, 4))
        >>> round(loss_fn(z, np.array([0, 1]), z), 4)  # the KL term is 0 when student == teacher
        0.6931
        >>> loss_fn.backward().shape
        (2, 4)
    """

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.distillation_loss_backward(dout, cache)

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5) -> None:
        super().__init__("mean")
        self.temperature = check_float("DistillationLoss", "temperature", temperature, low=0.0, low_open=True)
        self.alpha = check_float("DistillationLoss", "alpha", alpha, low=0.0, high=1.0)

    def _arguments(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "alpha": self.alpha}

    def forward(self, student_logits: Any, target: Any, teacher_logits: Any) -> float:  # type: ignore[override]
        loss, cache = F.distillation_loss_forward(student_logits, target, teacher_logits, self.temperature, self.alpha)
        self.save_for_backward(cache, tuple(loss.shape))
        return float(loss)
