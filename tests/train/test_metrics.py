"""Metrics against hand-computed values, hypothesis properties, soft targets, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl.train import (
    AverageMeter,
    TopKAccuracy,
    accuracy,
    confusion_matrix,
    per_class_metrics,
    precision_recall,
    top_k_accuracy,
)
from tests.helpers import arr
from tests.strategies import seeds

# 6 samples, 3 classes; argmax per row: 0, 2, 1, 1, 0, 2
LOGITS = np.array(
    [
        [3.0, 1.0, 0.0],
        [0.0, 1.0, 2.0],
        [0.5, 2.0, 0.1],
        [0.2, 0.9, 0.3],
        [2.5, 2.0, 1.0],
        [0.0, 0.0, 0.4],
    ]
)
TARGETS = np.array([0, 1, 1, 2, 0, 2])


def test_accuracy_hand_computed():
    # correct: samples 0, 2, 4, 5 -> 4/6
    assert accuracy(arr(LOGITS), arr(TARGETS)) == pytest.approx(4 / 6)
    assert accuracy(np.array([0, 2, 1, 1, 0, 2]), TARGETS) == pytest.approx(4 / 6)
    assert accuracy(np.zeros((0, 3)), np.zeros(0, np.int64)) == 0.0


def test_accuracy_soft_targets_use_argmax():
    soft = np.eye(3)[TARGETS] * 0.6 + 0.4 / 3  # mixup-like rows, argmax = TARGETS
    assert accuracy(LOGITS, soft) == pytest.approx(4 / 6)
    mixed = np.array([[0.3, 0.7, 0.0], [0.5, 0.2, 0.3]])  # classes 1 and 0
    assert accuracy(np.array([1, 1]), mixed) == 0.5


def test_one_binary_column_is_thresholded_not_argmaxed():
    # an argmax over one column made every prediction and target class 0: accuracy 1.0 for any binary model
    logits, targets = np.array([[-5.0], [5.0], [0.3], [-0.1]]), np.array([[1.0], [0.0], [1.0], [0.0]])
    assert accuracy(logits, targets) == 0.5  # logits (values outside [0, 1]): above 0 is class 1
    assert accuracy(np.array([[0.2], [0.9]]), np.array([0, 1])) == 1.0  # probabilities: above 0.5
    assert confusion_matrix(logits, targets, num_classes=2).tolist() == [[1, 1], [1, 1]]


def test_top_k_hand_computed():
    # ranks of the target in each row: sample 1 target 1 is 2nd; sample 3 target 2 is 2nd (0.3 > 0.2)
    assert top_k_accuracy(LOGITS, TARGETS, k=1) == pytest.approx(4 / 6)
    assert top_k_accuracy(LOGITS, TARGETS, k=2) == pytest.approx(1.0)
    logits = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    assert top_k_accuracy(logits, np.array([0, 0]), k=3) == 0.5  # row 0: class 0 is last
    assert top_k_accuracy(logits, np.array([0, 0]), k=4) == 1.0
    assert TopKAccuracy(3)(logits, np.array([0, 0])) == 0.5


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix(LOGITS, TARGETS, 3)
    expected = np.array(
        [
            [2, 0, 0],  # true 0: predicted 0, 0
            [0, 1, 1],  # true 1: predicted 2, 1
            [0, 1, 1],  # true 2: predicted 1, 2
        ]
    )
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64


def test_precision_recall_f1_hand_computed():
    cm = np.array([[5, 2, 1], [0, 3, 3], [1, 0, 4]])
    p, r = precision_recall(cm)
    np.testing.assert_allclose(p, [5 / 6, 3 / 5, 4 / 8])
    np.testing.assert_allclose(r, [5 / 8, 3 / 6, 4 / 5])
    m = per_class_metrics(cm)
    np.testing.assert_allclose(m["f1"], 2 * p * r / (p + r))
    np.testing.assert_array_equal(m["support"], [8, 6, 5])


def test_precision_recall_zero_division_is_zero():
    cm = np.array([[2, 0], [1, 0]])  # class 1 never predicted; and a class absent from the targets:
    p, r = precision_recall(cm)
    np.testing.assert_allclose(p, [2 / 3, 0.0])
    np.testing.assert_allclose(r, [1.0, 0.0])
    p2, r2 = precision_recall(np.array([[1, 0], [0, 0]]))
    np.testing.assert_allclose(r2, [1.0, 0.0])
    assert per_class_metrics(np.array([[0, 0], [0, 0]]))["f1"].tolist() == [0.0, 0.0]


@given(seed=seeds, n=st.integers(0, 60), c=st.integers(2, 7), soft=st.booleans())  # (one column is binary: above)
def test_confusion_matrix_properties(seed, n, c, soft):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c))
    targets = rng.integers(0, c, n)
    target_arg = rng.dirichlet(np.ones(c), n) if soft and n else targets
    true = np.argmax(target_arg, 1) if soft and n else targets
    cm = confusion_matrix(logits, target_arg, c)
    assert cm.shape == (c, c) and cm.sum() == n
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(true, minlength=c))  # rows: true-class counts
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(logits.argmax(1) if n else [], minlength=c))
    assert accuracy(logits, target_arg) == pytest.approx(np.trace(cm) / n if n else 0.0)
    p, r = precision_recall(cm)
    assert np.all((0 <= p) & (p <= 1)) and np.all((0 <= r) & (r <= 1))
    # recall weighted by support is the accuracy
    if n:
        assert float((r * cm.sum(axis=1)).sum() / n) == pytest.approx(np.trace(cm) / n)


@given(seed=seeds, n=st.integers(1, 40), c=st.integers(2, 8), k=st.integers(1, 9))
def test_top_k_properties(seed, n, c, k):
    rng = np.random.default_rng(seed)
    logits = rng.permutation(n * c).reshape(n, c).astype(np.float64)  # distinct scores: no ties
    targets = rng.integers(0, c, n)
    top = top_k_accuracy(logits, targets, k)
    rank = (logits > logits[np.arange(n), targets][:, None]).sum(1)  # 0 = the largest
    assert top == pytest.approx(np.mean(rank < k))
    assert top >= top_k_accuracy(logits, targets, max(1, k - 1))  # monotone in k
    if k == 1:
        assert top == accuracy(logits, targets)
    if k >= c:
        assert top == 1.0


@given(values=st.lists(st.tuples(st.floats(-1e3, 1e3), st.integers(0, 50)), min_size=1, max_size=20))
def test_average_meter_is_the_weighted_mean(values):
    meter = AverageMeter()
    for v, n in values:
        meter.update(v, n)
    total = sum(n for _, n in values)
    assert meter.count == total
    expected = sum(v * n for v, n in values) / total if total else 0.0
    assert meter.avg == pytest.approx(expected, rel=1e-9, abs=1e-9)
    meter.reset()
    assert (meter.avg, meter.count) == (0.0, 0)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"accuracy: logits_or_preds has 3 samples but targets has 2"):
        accuracy(np.zeros((3, 2)), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"class indices \(N,\) or scores/probabilities \(N, C\), got shape"):
        accuracy(np.zeros((2, 2, 2)), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 3\), got values in \[0, 5\]"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), 3)
    with pytest.raises(ValueError, match="integer class indices"):
        accuracy(np.array([0, 1]), np.array([0.5, 1.0]))
    with pytest.raises(TypeError, match="top_k_accuracy: k must be an int"):
        top_k_accuracy(LOGITS, TARGETS, k=1.5)
    with pytest.raises(ValueError, match=r"top_k_accuracy: logits must be scores of shape \(N, C\)"):
        top_k_accuracy(np.zeros(3), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"precision_recall: cm must be a square confusion matrix"):
        precision_recall(np.zeros((2, 3)))
