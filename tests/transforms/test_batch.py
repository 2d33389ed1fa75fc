"""Mixup and CutMix: the inputs and the targets are the same convex combination."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import nn
from minidl import transforms as T
from tests.helpers import arr, host
from tests.strategies import seeds

alphas = st.sampled_from([0.2, 1.0, 4.0])


@given(
    seed=seeds,
    n=st.integers(1, 6),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
    alpha=alphas,
    K=st.integers(2, 5),
)
def test_mixup_inputs_and_targets_are_the_same_convex_combination(seed, n, shape, alpha, K):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape))
    y = rng.integers(0, K, n)
    mix = T.Mixup(alpha=alpha, num_classes=K, generator=np.random.default_rng(seed))
    x_mix, y_mix = mix(arr(x), arr(y))
    lam, perm = T.Mixup(alpha=alpha, num_classes=K).get_params(n, np.random.default_rng(seed))
    assert 0.0 <= lam <= 1.0
    onehot = np.eye(K)[y]
    np.testing.assert_allclose(host(x_mix), lam * x + (1 - lam) * x[perm], atol=1e-12)
    np.testing.assert_allclose(host(y_mix), lam * onehot + (1 - lam) * onehot[perm], atol=1e-12)
    np.testing.assert_allclose(host(y_mix).sum(axis=1), 1.0, atol=1e-12)
    assert host(x_mix).dtype == x.dtype and host(y_mix).dtype == x.dtype


@given(seed=seeds, n=st.integers(2, 6), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9), alpha=alphas)
def test_cutmix_target_weight_equals_the_pasted_area(seed, n, C, H, W, alpha):
    rng = np.random.default_rng(seed)
    x = (np.arange(n) + 1.0).reshape(n, 1, 1, 1) + 0.01 * rng.random((n, C, H, W))  # images differ everywhere
    y = np.arange(n)  # distinct labels, K = n: the target row shows both weights
    x_mix, y_mix = T.CutMix(alpha=alpha, num_classes=n, generator=np.random.default_rng(seed))(arr(x), arr(y))
    x_mix, y_mix = host(x_mix), host(y_mix)
    lam, perm = T.CutMix(alpha=alpha).get_params(n, np.random.default_rng(seed))
    np.testing.assert_allclose(y_mix.sum(axis=1), 1.0, atol=1e-12)
    for i in range(n):
        j = perm[i]
        pasted = (x_mix[i] == x[j]).all(axis=0) & (x_mix[i] != x[i]).all(axis=0) if j != i else None
        if pasted is None:  # paired with itself: unchanged
            np.testing.assert_array_equal(x_mix[i], x[i])
            assert y_mix[i, i] == pytest.approx(1.0)
            continue
        kept = (x_mix[i] == x[i]).all(axis=0)
        assert (pasted | kept).all(), "every pixel comes from x_i or from x_j"
        rows, cols = np.nonzero(pasted)
        if rows.size:  # the pasted region is one axis-aligned box
            box = pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            assert box.all()
        fraction = pasted.mean()
        assert y_mix[i, j] == pytest.approx(fraction, abs=1e-12)
        assert y_mix[i, i] == pytest.approx(1 - fraction, abs=1e-12)


def test_cutmix_box_follows_lambda():
    rng = np.random.default_rng(0)
    x1, y1, x2, y2 = T.CutMix.box(0.75, 32, 32, rng)
    assert x2 - x1 <= 16 and y2 - y1 <= 16  # half-side int(0.5 sqrt(0.25) 32) = 8
    bx1, by1, bx2, by2 = T.CutMix.box(1.0, 10, 10, rng)  # lambda = 1: an empty box, nothing pasted
    assert bx2 - bx1 == 0 and by2 - by1 == 0
    full = [T.CutMix.box(0.0, 10, 10, rng) for _ in range(20)]  # lambda = 0: half-sides 5, clipped at the border
    assert all(x2 - x1 <= 10 and y2 - y1 <= 10 for x1, y1, x2, y2 in full)
    assert (0, 0, 10, 10) in full or any((x2 - x1) * (y2 - y1) >= 25 for x1, y1, x2, y2 in full)


def test_soft_labels_chain_and_cross_entropy_accepts_the_targets():
    rng = np.random.default_rng(0)
    x = arr(rng.standard_normal((8, 3, 6, 6)).astype(np.float32))
    y = arr(rng.integers(0, 4, 8))
    x1, y1 = T.Mixup(alpha=0.4, num_classes=4)(x, y)
    x2, y2 = T.CutMix(alpha=1.0)(x1, y1)  # soft labels in, soft labels out
    np.testing.assert_allclose(host(y2).sum(axis=1), 1.0, rtol=1e-6)
    assert host(x2).dtype == np.float32 and host(y2).dtype == np.float32
    choice = T.RandomChoice([T.Mixup(num_classes=4), T.CutMix(num_classes=4)])
    assert choice(x, y)[1].shape == (8, 4)
    logits = rng.standard_normal((8, 4)).astype(np.float32)
    loss = nn.CrossEntropyLoss()(arr(logits), y2)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert float(loss) == pytest.approx(float(-(host(y2) * log_p).sum(axis=1).mean()), rel=1e-5)


def test_mix_seeded_by_the_global_generator():
    x, y = arr(np.random.default_rng(0).random((5, 2, 4, 4))), arr(np.array([0, 1, 2, 0, 1]))
    minidl.manual_seed(3)
    a = T.CutMix(num_classes=3)(x, y)
    minidl.manual_seed(3)
    b = T.CutMix(num_classes=3)(x, y)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(host(u), host(v))


def test_bad_batches_are_rejected():
    x = arr(np.zeros((4, 3, 5, 5)))
    with pytest.raises(ValueError, match="labels must lie in \\[0, 2\\], got values from 0 to 3"):
        T.Mixup(num_classes=3)(x, arr(np.array([0, 1, 2, 3])))
    with pytest.raises(ValueError, match="integer labels need num_classes"):
        T.CutMix()(x, arr(np.array([0, 1, 2, 3])))
    with pytest.raises(ValueError, match="the batch has 4 examples but the labels have shape \\(3,\\)"):
        T.Mixup(num_classes=3)(x, arr(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="CutMix: expected a 4-D \\(N, C, H, W\\) input"):
        T.CutMix(num_classes=3)(arr(np.zeros((4, 5))), arr(np.array([0, 1, 2, 0])))
    with pytest.raises(TypeError, match="Mixup: expected a floating-point input"):
        T.Mixup(num_classes=3)(arr(np.zeros((4, 3), np.uint8)), arr(np.array([0, 1, 2, 0])))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        T.Mixup(alpha=0.0, num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        T.CutMix(num_classes=0)
