r"""Classification metrics: accuracy, top-k accuracy, the confusion matrix, per-class precision/recall, averages.

Notation: N samples, C classes. A model's output is ``logits`` of shape (N, C); the predicted class of sample n is
:math:`\hat y_n = \arg\max_c \text{logits}_{n,c}`. Targets are class indices (N,) or, after Mixup/CutMix or label
smoothing, probability rows (N, C); a probability row counts as the class with the largest probability (argmax).

.. math::
    \text{accuracy} = \frac{1}{N} \sum_n [\hat y_n = y_n] \qquad
    \text{top-}k = \frac{1}{N} \sum_n [y_n \in \text{the } k \text{ largest logits of } n]

The confusion matrix :math:`M` (C, C) counts :math:`M_{ij}` = samples of true class i predicted as j (rows are the
truth, columns the prediction, as in scikit-learn), so :math:`\sum_{ij} M_{ij} = N` and accuracy = trace(M) / N.
From it, per class c:

.. math::
    \text{precision}_c = \frac{M_{cc}}{\sum_i M_{ic}} \;(\text{column}) \qquad
    \text{recall}_c = \frac{M_{cc}}{\sum_j M_{cj}} \;(\text{row}) \qquad
    F_1 = \frac{2\, P R}{P + R}

(0 where the denominator is 0, as scikit-learn's ``zero_division=0``). Every function works on arrays of any backend
and returns Python floats or NumPy arrays.

Examples:
    >>> import numpy as np
    >>> logits = np.array([[2.0, 1.0, 0.0], [0.1, 0.2, 3.0], [1.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    >>> targets = np.array([0, 2, 0, 1])
    >>> accuracy(logits, targets)
    0.5
    >>> confusion_matrix(logits, targets, num_classes=3)
    array([[1, 1, 0],
           [0, 0, 1],
           [0, 0, 1]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.backend import to_numpy
from minidl.nn._checks import check_int

__all__ = [
    "AverageMeter",
    "TopKAccuracy",
    "accuracy",
    "as_class_indices",
    "confusion_matrix",
    "per_class_metrics",
    "precision_recall",
    "top_k_accuracy",
]


def _host(where: str, name: str, a: Any) -> np.ndarray:
    if not hasattr(a, "shape"):
        a = np.asarray(a)
    a = to_numpy(a.data if hasattr(a, "requires_grad") else a)
    if a.dtype == object:
        raise TypeError(f"{where}: {name} must be a numeric array, got an object array")
    return np.asarray(a)


def as_class_indices(where: str, name: str, a: Any) -> np.ndarray:
    """Class indices (N,) int64 from indices (N,), from scores/probabilities (N, C) (their argmax), or from one
    binary column (N, 1): class 1 where it is above 0.5 if all its values lie in [0, 1] (probabilities, or 0/1
    targets), else above 0 (logits, as ``BCEWithLogitsLoss`` takes them; torchmetrics' ``BinaryAccuracy`` rule).
    (An argmax over one column would make every sample class 0.)

    Examples:
        >>> as_class_indices("demo", "targets", np.array([[0.2, 0.8], [0.7, 0.3]])).tolist()
        [1, 0]
        >>> as_class_indices("demo", "logits", np.array([[-5.0], [5.0], [0.2]])).tolist()
        [0, 1, 1]
    """
    a = _host(where, name, a)
    if a.ndim == 2:
        if a.shape[1] == 0:
            raise ValueError(f"{where}: {name} of shape {a.shape} has no classes")
        if a.shape[1] == 1:
            column = a[:, 0].astype(np.float64)
            threshold = 0.5 if column.size and column.min() >= 0 and column.max() <= 1 else 0.0
            return (column > threshold).astype(np.int64)
        return a.argmax(axis=1).astype(np.int64)
    if a.ndim != 1:
        raise ValueError(
            f"{where}: {name} must be class indices (N,) or scores/probabilities (N, C), got shape {a.shape}"
        )
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(
                f"{where}: {name} (N,) must hold integer class indices, got dtype {a.dtype} with fractions"
            )
    return a.astype(np.int64)


def _pair(where: str, outputs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    preds = as_class_indices(where, "logits_or_preds", outputs)
    true = as_class_indices(where, "targets", targets)
    if preds.shape[0] != true.shape[0]:
        raise ValueError(
            f"{where}: logits_or_preds has {preds.shape[0]} samples but targets has {true.shape[0]} "
            f"(shapes {tuple(np.shape(outputs))} and {tuple(np.shape(targets))})"
        )
    return preds, true


def accuracy(logits_or_preds: Any, targets: Any) -> float:
    """The fraction of samples whose predicted class is the target class.

    Args:
        logits_or_preds: scores (N, C) (logits or probabilities; argmax is the prediction), one binary column
            (N, 1) (a logit, or a probability: see :func:`as_class_indices`) or predicted classes (N,).
        targets: class indices (N,), probability rows (N, C) (Mixup/CutMix; argmax is the class) or (N, 1) 0/1.

    Returns:
        A float in [0, 1]; 0.0 for an empty batch.

    Examples:
        >>> accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
        0.5
        >>> accuracy(np.array([1, 0, 1]), np.array([[0.3, 0.7], [0.6, 0.4], [0.9, 0.1]]))   # soft targets
        0.6666666666666666
    """
    preds, true = _pair("accuracy", logits_or_preds, targets)
    if preds.size == 0:
        return 0.0
    return float(np.mean(preds == true))


def top_k_accuracy(logits: Any, targets: Any, k: int = 5) -> float:
    """The fraction of samples whose target class is among the ``k`` highest scores.

    Ties are broken like a stable sort of the negated scores (the lower class index ranks first). ``k = 1`` is
    :func:`accuracy`; ``k >= C`` gives 1.0.

    Args:
        logits: scores (N, C).
        targets: class indices (N,) or probability rows (N, C).
        k: how many top classes count. Default: 5.

    Examples:
        >>> logits = np.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
        >>> top_k_accuracy(logits, np.array([1, 0]), k=2)
        0.5
    """
    where = "top_k_accuracy"
    k = check_int(where, "k", k, minimum=1)
    scores = _host(where, "logits", logits)
    if scores.ndim != 2:
        raise ValueError(f"{where}: logits must be scores of shape (N, C), got shape {scores.shape}")
    true = as_class_indices(where, "targets", targets)
    if true.shape[0] != scores.shape[0]:
        raise ValueError(f"{where}: logits has {scores.shape[0]} samples but targets has {true.shape[0]}")
    if scores.shape[0] == 0:
        return 0.0
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == true[:, None], axis=1)))


class TopKAccuracy:
    """``top_k_accuracy`` with ``k`` fixed, to use as a metric of the training loop: ``metrics={"top5":
    TopKAccuracy(5)}``.

    Examples:
        >>> TopKAccuracy(2)(np.array([[0.5, 0.3, 0.2]]), np.array([1]))
        1.0
    """

    def __init__(self, k: int = 5) -> None:
        self.k = check_int("TopKAccuracy", "k", k, minimum=1)

    def __call__(self, logits: Any, targets: Any) -> float:
        return top_k_accuracy(logits, targets, self.k)

    def __repr__(self) -> str:
        return f"TopKAccuracy(k={self.k})"


def confusion_matrix(preds: Any, targets: Any, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs: ``M[i, j]`` = samples of class i predicted as j.

    Args:
        preds: predicted classes (N,) or scores (N, C).
        targets: class indices (N,) or probability rows (N, C).
        num_classes: C.

    Returns:
        An int64 array (C, C) whose entries sum to N and whose trace is the number of correct predictions.

    Raises:
        ValueError: a class index outside [0, C).

    Examples:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), num_classes=2)
        array([[1, 1],
               [0, 1]])
    """
    where = "confusion_matrix"
    num_classes = check_int(where, "num_classes", num_classes, minimum=1)
    p, t = _pair(where, preds, targets)
    for name, a in (("preds", p), ("targets", t)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(
                f"{where}: {name} must be class indices in [0, {num_classes}), got values in [{a.min()}, {a.max()}]"
            )
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _check_cm(where: str, cm: Any) -> np.ndarray:
    cm = _host(where, "cm", cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"{where}: cm must be a square confusion matrix (C, C), got shape {cm.shape}")
    if cm.size and cm.min() < 0:
        raise ValueError(f"{where}: cm holds counts, which must be >= 0; got a minimum of {cm.min()}")
    return cm.astype(np.float64)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision_recall(cm: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision (diagonal / column sums) and recall (diagonal / row sums) of a confusion matrix.

    A class never predicted has precision 0; a class absent from the targets has recall 0.

    Examples:
        >>> p, r = precision_recall(np.array([[3, 1], [2, 4]]))
        >>> p.round(3).tolist(), r.round(3).tolist()
        ([0.6, 0.8], [0.75, 0.667])
    """
    cm = _check_cm("precision_recall", cm)
    tp = np.diag(cm)
    return _safe_divide(tp, cm.sum(axis=0)), _safe_divide(tp, cm.sum(axis=1))


def per_class_metrics(cm: Any) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support (true samples) per class, from a confusion matrix (C, C).

    Returns:
        ``{"precision": (C,), "recall": (C,), "f1": (C,), "support": (C,) int64}``.

    Examples:
        >>> m = per_class_metrics(np.array([[3, 1], [2, 4]]))
        >>> m["f1"].round(3).tolist(), m["support"].tolist()
        ([0.667, 0.727], [4, 6])
    """
    cm = _check_cm("per_class_metrics", cm)
    precision, recall = precision_recall(cm)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1).astype(np.int64)}


class AverageMeter:
    """A running average of a per-batch value, weighted by the batch size (the epoch's mean loss or accuracy).

    ``update(value, n)`` adds a batch of ``n`` samples whose mean is ``value``; ``avg`` is then the mean over all
    samples seen, exactly what one pass over the whole epoch would give.

    Attributes:
        val: the last value. sum: the weighted sum. count: samples seen. avg: sum / count (0.0 before any update).

    Examples:
        >>> meter = AverageMeter("loss")
        >>> meter.update(1.0, n=3); meter.update(2.0, n=1)
        >>> meter.avg, meter.count
        (1.25, 4)
        >>> meter
        AverageMeter(loss: val=2, avg=1.25, count=4)
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        """Forget everything (start of an epoch)."""
        self.val = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        """Add ``n`` samples whose mean is ``value``."""
        n = check_int("AverageMeter.update", "n", n, minimum=0)
        value = float(value)
        self.val = value
        self.sum += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def __repr__(self) -> str:
        return f"AverageMeter({self.name}: val={self.val:.4g}, avg={self.avg:.4g}, count={self.count})"
