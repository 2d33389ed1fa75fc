"""Transforms on float arrays (RandomErasing, GaussianNoise, Lighting) and the dataset-fitted ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minidl import transforms as T
from minidl.transforms import fitted
from tests.helpers import arr, host
from tests.strategies import seeds


@given(
    seed=seeds,
    H=st.integers(4, 40),
    W=st.integers(4, 40),
    scale=st.tuples(st.floats(0.01, 0.6), st.floats(0.01, 0.6)).map(sorted),
    ratio=st.tuples(st.floats(0.3, 3.3), st.floats(0.3, 3.3)).map(sorted),
)
def test_random_erasing_area_fraction_is_within_scale(seed, H, W, scale, ratio):
    x = np.ones((3, H, W))
    rng = np.random.default_rng(seed)
    rng.random()  # __call__ first draws the coin for p, then the box
    i, j, h, w, v = T.RandomErasing.get_params(x, scale, ratio, 0, rng)
    assume(v is not x)  # no box fitted in 10 attempts: nothing erased
    area = H * W
    # h, w are sqrt(s A r), sqrt(s A / r) rounded, s in scale, r in ratio: the area s A is within scale up to rounding
    lo = max(math.sqrt(scale[0] * area * ratio[0]) - 0.5, 0) * max(math.sqrt(scale[0] * area / ratio[1]) - 0.5, 0)
    hi = (math.sqrt(scale[1] * area * ratio[1]) + 0.5) * (math.sqrt(scale[1] * area / ratio[0]) + 0.5)
    assert lo - 1e-9 <= h * w <= hi + 1e-9
    assert 0 <= i <= H - h and 0 <= j <= W - w and h < H and w < W
    out = T.RandomErasing(p=1.0, scale=tuple(scale), ratio=tuple(ratio), generator=np.random.default_rng(seed))(arr(x))
    erased = host(out) == 0
    assert erased.sum() == 3 * h * w
    assert erased[:, i : i + h, j : j + w].all()


def test_random_erasing_values_probability_and_input_kept():
    x = np.ones((3, 16, 16), np.float32)
    out = T.RandomErasing(p=1.0, value=(0.1, 0.2, 0.3), generator=np.random.default_rng(0))(arr(x))
    changed = host(out) != 1
    assert changed.any() and (host(out)[0][changed[0]] == np.float32(0.1)).all()
    assert (x == 1).all()  # not in place by default
    noise = T.RandomErasing(p=1.0, value="random", generator=np.random.default_rng(0))(arr(x))
    assert host(noise).dtype == np.float32 and (host(noise) != 1).any()
    assert T.RandomErasing(p=0.0)(x) is x
    with pytest.raises(ValueError, match="scale must be <= 1.0"):
        T.RandomErasing(scale=(0.1, 1.5))
    with pytest.raises(ValueError, match="value must be a number, a tuple or 'random'"):
        T.RandomErasing(value="noise")
    with pytest.raises(TypeError, match="RandomErasing: expected a floating \\(C, H, W\\) array"):
        T.RandomErasing()(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="value has 2 entries but the input has 3 channels"):
        T.RandomErasing(p=1.0, value=(0, 1))(x)


def test_gaussian_noise_statistics_clip_and_seed():
    x = np.full((3, 64, 64), 0.5)
    out = host(T.GaussianNoise(mean=0.1, std=0.05, clip=False, generator=np.random.default_rng(0))(arr(x)))
    noise = out - 0.5
    assert abs(noise.mean() - 0.1) < 3 * 0.05 / np.sqrt(noise.size) * 3
    assert abs(noise.std() - 0.05) < 0.003
    clipped = host(T.GaussianNoise(std=2.0)(arr(x)))
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    a, b = (host(T.GaussianNoise(generator=np.random.default_rng(3))(arr(x))) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="std must be >= 0"):
        T.GaussianNoise(std=-1)


def test_lighting_adds_the_pca_offset_of_the_definition():
    x = np.random.default_rng(0).random((3, 5, 6))
    out = host(T.Lighting(0.1, generator=np.random.default_rng(7))(arr(x)))
    alpha = np.random.default_rng(7).normal(0.0, 0.1, size=3)
    offset = T.IMAGENET_EIGVEC @ (alpha * T.IMAGENET_EIGVAL)
    np.testing.assert_allclose(out - x, np.broadcast_to(offset[:, None, None], x.shape), atol=1e-12)
    assert T.Lighting(0.0)(x) is x
    with pytest.raises(ValueError, match="expected 3 \\(RGB\\) channels"):
        T.Lighting()(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="eigval must have shape \\(3,\\)"):
        T.Lighting(eigval=[1.0, 2.0])


def test_fit_pca_lighting_recovers_the_colour_covariance():
    rng = np.random.default_rng(0)
    mix = np.array([[0.3, 0.0, 0.0], [0.1, 0.1, 0.0], [0.05, 0.02, 0.01]])
    pixels = rng.standard_normal((20 * 8 * 8, 3)) @ mix.T + 0.5
    data = pixels.reshape(20, 8, 8, 3).transpose(0, 3, 1, 2)  # float (N, C, H, W)
    eigval, eigvec = T.fit_pca_lighting(data)
    np.testing.assert_allclose(eigvec @ np.diag(eigval) @ eigvec.T, np.cov(pixels.T, bias=True), atol=1e-12)
    assert (np.diff(eigval) <= 0).all()
    np.testing.assert_allclose(eigvec.T @ eigvec, np.eye(3), atol=1e-12)
    fitted_lighting = T.Lighting.from_data(data, alphastd=0.2)
    np.testing.assert_allclose(fitted_lighting.eigval, eigval)


@given(seed=seeds, n=st.integers(2, 9), C=st.integers(1, 4), H=st.integers(1, 5), as_uint8=st.booleans())
def test_featurewise_standardize_gives_zero_mean_unit_std_per_channel(seed, n, C, H, as_uint8):
    rng = np.random.default_rng(seed)
    if as_uint8:
        raw = rng.integers(0, 256, (n, H, H + 1, C), dtype=np.uint8)
        data = raw.transpose(0, 3, 1, 2) / 255.0
    else:
        raw = data = rng.random((n, C, H, H + 1)) * 3 + rng.random((1, C, 1, 1)) * 10
    assume(data.transpose(1, 0, 2, 3).reshape(C, -1).std(axis=1).min() > 1e-3)
    fs = T.FeaturewiseStandardize().fit(raw)
    y = fs(arr(data))
    np.testing.assert_allclose(host(y).mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(host(y).std(axis=(0, 2, 3)), 1, atol=1e-10)
    np.testing.assert_allclose(host(T.Normalize(fs.mean.tolist(), fs.std.tolist())(arr(data))), host(y))
    np.testing.assert_allclose(host(fs(arr(data[0]))), host(y)[0])


def test_featurewise_statistics_merge_across_chunks(monkeypatch):
    data = np.random.default_rng(1).random((10, 2, 3, 3))
    whole = T.FeaturewiseStandardize().fit(data)
    monkeypatch.setattr(fitted, "_CHUNK", 3)
    chunked = T.FeaturewiseStandardize().fit(data)
    from_list = T.FeaturewiseStandardize().fit(list(data))
    for fs in (chunked, from_list):
        np.testing.assert_allclose(fs.mean, whole.mean, atol=1e-14)
        np.testing.assert_allclose(fs.std, whole.std, atol=1e-14)
    assert repr(whole.to_normalize()).startswith("Normalize(mean=[")
    with pytest.raises(RuntimeError, match="call fit"):
        T.FeaturewiseStandardize()(data[0])
    with pytest.raises(ValueError, match="expected \\(N, H, W, C\\) uint8 or \\(N, C, H, W\\) float"):
        T.FeaturewiseStandardize().fit(data[0])


def test_zca_whitened_data_has_identity_covariance():
    rng = np.random.default_rng(0)
    D = 12
    A = rng.standard_normal((D, D))
    data = (rng.standard_normal((4000, D)) @ A.T + 3.0).reshape(4000, 3, 2, 2)
    zca = T.ZCAWhitening(eps=1e-9).fit(data)
    y = host(zca(arr(data))).reshape(4000, D)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(D), atol=1e-6)
    np.testing.assert_allclose(zca.matrix, zca.matrix.T, atol=1e-10)  # symmetric: ZCA, not PCA whitening
    np.testing.assert_allclose(host(zca(arr(data[5]))), y[5].reshape(3, 2, 2), atol=1e-9)  # one image at a time


def test_zca_eps_shrinks_the_small_directions():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((500, 1, 2, 3)) * np.array([1.0, 0.5, 0.1, 0.2, 2.0, 0.05]).reshape(1, 1, 2, 3)
    eps = 0.01
    zca = T.ZCAWhitening(eps=eps).fit(data)
    flat = data.reshape(500, 6)
    S, U = np.linalg.eigh(np.cov(flat.T, bias=True))
    expected = U @ np.diag(S / (S + eps)) @ U.T
    y = host(zca(arr(data))).reshape(500, 6)
    np.testing.assert_allclose(np.cov(y.T, bias=True), expected, atol=1e-10)
    with pytest.raises(ValueError, match="fitted on images of shape \\(1, 2, 3\\)"):
        zca(np.zeros((1, 3, 2)))
    with pytest.raises(RuntimeError, match="call fit"):
        T.ZCAWhitening()(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="eps must be > 0"):
        T.ZCAWhitening(eps=0)
    with pytest.raises(ValueError, match="needs at least 2 images"):
        T.ZCAWhitening().fit(np.zeros((1, 1, 2, 2)))
