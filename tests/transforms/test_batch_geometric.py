"""RandomTranslate, translate, AlternatingFlip and airbench's flip_translate TTA."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import nn
from minidl import transforms as T
from tests.helpers import arr, host


def _images(n=6, c=2, h=5, w=7):
    return np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)


def test_random_translate_is_a_crop_of_the_reflect_padded_image():
    x = _images()
    t = T.RandomTranslate(pad=2, generator=np.random.default_rng(3))
    shifts = t.get_params(len(x), np.random.default_rng(3))
    y = host(T.RandomTranslate(pad=2, generator=np.random.default_rng(3))(arr(x)))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    for n, (dy, dx) in enumerate(shifts):
        assert -2 <= dy <= 2 and -2 <= dx <= 2
        np.testing.assert_array_equal(y[n], padded[n, :, 2 + dy : 2 + dy + 5, 2 + dx : 2 + dx + 7])


def test_random_translate_shifts_cover_the_range_and_torch_reflect_agrees():
    torch = pytest.importorskip("torch")
    t = T.RandomTranslate(pad=2, generator=np.random.default_rng(0))
    shifts = t.get_params(5000)
    assert set(map(tuple, shifts.tolist())) == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}
    x = _images(n=2)
    y = host(t(arr(x), shifts=np.array([[1, -2], [0, 0]])))
    ref = torch.nn.functional.pad(torch.tensor(x), (2, 2, 2, 2), mode="reflect").numpy()
    np.testing.assert_array_equal(y[0], ref[0, :, 3:8, 0:7])
    np.testing.assert_array_equal(y[1], x[1])


def test_translate_one_shift_for_the_whole_batch():
    x = _images(n=2)
    y = host(T.translate(arr(x), -1, 1))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    np.testing.assert_array_equal(y, padded[:, :, 0:5, 2:9])
    with pytest.raises(ValueError, match="translate: shift"):
        T.translate(arr(x), 5, 0)


def test_random_translate_errors():
    with pytest.raises(ValueError, match="RandomTranslate: padding_mode must be one of"):
        T.RandomTranslate(2, padding_mode="mirror")
    t = T.RandomTranslate(2)
    with pytest.raises(
        ValueError, match=r"RandomTranslate: shifts must be an \(6, 2\) int array with values in \[-2, 2\]"
    ):
        t(arr(_images()), shifts=np.full((6, 2), 3))
    with pytest.raises(ValueError, match="RandomTranslate: expected a 4-D"):
        t(arr(np.zeros((3, 5, 5), np.float32)))


def test_alternating_flip_flips_each_image_every_other_epoch():
    flip = T.AlternatingFlip(100, generator=np.random.default_rng(0))
    assert 30 < flip.base.sum() < 70
    x = _images(n=100, h=2, w=3)
    idx = np.random.default_rng(1).permutation(100)[:40]
    for epoch in range(4):
        flip.set_epoch(epoch)
        y = host(flip(arr(x[idx]), idx))
        for k, i in enumerate(idx):
            mirrored = bool(flip.base[i]) ^ (epoch % 2 == 1)
            np.testing.assert_array_equal(y[k], x[i, :, :, ::-1] if mirrored else x[i])
    with pytest.raises(ValueError, match=r"AlternatingFlip: indices must lie in \[0, 99\], got values from 0 to 100"):
        flip(arr(x[:2]), np.array([0, 100]))
    with pytest.raises(ValueError, match="AlternatingFlip: the batch has 3 images but 2 indices were given"):
        flip(arr(x[:3]), np.array([0, 1]))


def test_flip_translate_tta_is_airbenchs_weighted_logit_average():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 7, 3)).eval()
    x = arr(_images(n=4))
    z = host(T.tta_predict(model, x, "flip_translate", average="logits"))

    def mirror(v):
        return 0.5 * host(model(v)) + 0.5 * host(model(v[..., ::-1].copy()))

    padded = np.pad(host(x), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    shifted = [arr(padded[:, :, 0:5, 0:7].copy()), arr(padded[:, :, 2:7, 2:9].copy())]
    ref = 0.5 * mirror(x) + 0.5 * (mirror(shifted[0]) + mirror(shifted[1])) / 2
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-6)
    p = host(T.tta_predict(model, x, "flip_translate"))
    assert np.allclose(p.sum(axis=1), 1, atol=1e-6)
    with pytest.raises(ValueError, match="tta_predict: weights must be 2 non-negative numbers"):
        T.tta_predict(model, x, "flip", weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="tta_predict: average must be 'probs' or 'logits'"):
        T.tta_predict(model, x, average="mean")
